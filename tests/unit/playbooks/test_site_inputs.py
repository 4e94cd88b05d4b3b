# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml checks the inputs of every stage a host runs before any stage changes anything.

Each case is one `ansible-playbook site.yml --check` run against local "hosts" (all the
controller) with one bad input on one host. The run must stop in the preflight play: the
failing task is an input check that names the variable (and its value), every host of the
run, the good ones included, stops there (no task of a later play runs anywhere), and nothing
is changed. Without the preflight input contract the bad value would only be found by its own
stage, after the earlier stages had changed the nodes.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".collections")
PREFLIGHT_PLAY = "Preflight checks"

GOOD = {
    # The Gaudi stage accepts the controller's own distribution, so only the case under test fails.
    "habana_driver_supported_distributions": [
        "{{ ansible_facts['distribution'] }} {{ ansible_facts['distribution_version'] }}"
    ],
    "kv_storage_type": "local",
    "lmcache_mode": "cpu",
}

# Two instances like a Gaudi node's (Mode A and Mode B), for the instance-level cases.
INSTANCES = [
    {"name": "alpha", "model": "m-a", "port": 18101, "kv_role": "kv_both", "lmcache_mode": "cpu"},
    {"name": "beta", "model": "m-b", "port": 18102, "kv_role": "kv_producer", "lmcache_mode": "shared"},
]


def instances_with(**override):
    return [dict(INSTANCES[0], **override)] + INSTANCES[1:]


# name: (host that carries the bad vars, bad vars, words the failure message must contain)
CASES = {
    # the node checks of the preflight role and site.yml's own stage list
    "disk_short": (
        "node-a",
        {"preflight_min_free_disk_gb": 999999},
        ["preflight_min_free_disk_gb", "Not enough free disk"],
    ),
    "unsupported_os": (
        "node-b",
        {"preflight_supported_os": {"Ubuntu": ["24.04"]}},
        ["is not supported", "preflight_allow_unsupported_os"],
    ),
    "disk_gb_type": ("node-a", {"preflight_min_free_disk_gb": "lots"}, ["preflight_min_free_disk_gb", "lots"]),
    "disk_path_relative": (
        "node-b",
        {"preflight_disk_path": "var/lib"},
        ["preflight_disk_path=", "var/lib", "absolute"],
    ),
    "site_stages_string": ("node-b", {"site_stages": "vllm"}, ["site_stages", "must be a list of stage names"]),
    "site_stages_unknown": ("node-a", {"site_stages": ["preflight", "serving"]}, ["unknown stages serving"]),
    # a late stage's input (validate) refused before the first stage (habana_driver) runs
    "validate_timeout": ("node-a", {"validate_timeout": 0}, ["validate_timeout=0", "positive"]),
    "validate_tier": ("node-a", {"validate_tiers": ["devices", "speed"]}, ["validate_tiers", "speed"]),
    # the role removes what it did not install in validate_script_dir: never a shared directory
    "validate_script_dir_shared": (
        "node-a",
        {"validate_script_dir": "/usr/local/bin/"},
        ["validate_script_dir=", "/usr/local/bin/", "a directory of its own"],
    ),
    "validate_script_dir_above_report": (
        "node-a",
        {"validate_script_dir": "/srv/gv", "validate_remote_report_dir": "/srv/gv/reports"},
        ["validate_script_dir=", "/srv/gv", "not validate_remote_report_dir or a directory above it"],
    ),
    # the vllm stage's instance rules
    "vllm_duplicate_port": (
        "node-b",
        {
            "vllm_instances": [
                {"name": "a", "model": "m", "port": 8000},
                {"name": "b", "model": "m", "port": 8000},
            ]
        },
        ["vllm_instances", "port 8000 is used by", "needs its own port"],
    ),
    # the lmcache role's rules, reached through the vllm stage
    "lmcache_mode": ("node-b", {"lmcache_mode": "disk"}, ["lmcache_mode", "disk"]),
    "lmcache_install_source": (
        "node-a",
        {"lmcache_install_source": "conda"},
        ["lmcache_install_source", "conda"],
    ),
    # strict types: Ansible's own argument validation would turn a list into a string
    "vllm_host_list": ("node-a", {"vllm_host": ["0.0.0.0", "::"]}, ["vllm_host", "must be a string", "a list"]),
    "model_names_string": (
        "node-b",
        {"kv_storage_model_names": "llama"},
        ["kv_storage_model_names", "must be a list", "a string"],
    ),
    "hpu_patch_python_list": (
        "node-a",
        {"hpu_patch_python": ["/opt/vllm/venv/bin/python"]},
        ["hpu_patch_python", "must be a string"],
    ),
    # cross-field serving rules
    "consumer_on_mode_a": (
        "node-b",
        {"vllm_instances": [{"name": "d", "model": "m", "port": 8000, "kv_role": "kv_consumer"}]},
        ["vllm_instances[d].kv_role", "lmcache_mode shared"],
    ),
    "mode_b_without_storage": (
        "node-a",
        {
            "lmcache_mode": "shared",
            "site_stages": ["preflight", "vllm", "lmcache", "validate"],
            "vllm_instances": [{"name": "s", "model": "m", "port": 8000}],
        },
        ["site_stages", "must hold kv_storage"],
    ),
    "cpu_cache_over_memory": (
        "node-b",
        {"lmcache_max_local_cpu_size": 100000, "vllm_instances": [{"name": "c", "model": "m", "port": 8000}]},
        ["lmcache_max_local_cpu_size", "memory"],
    ),
    "duplicate_instance_names": (
        "node-a",
        {
            "vllm_instances": [
                {"name": "a", "model": "m", "port": 8000},
                {"name": "a", "model": "m", "port": 8001},
            ]
        },
        ["vllm_instances", "each instance needs its own name"],
    ),
    # the lmcache role's settings and the stack pins
    "unknown_mode": ("node-a", {"lmcache_mode": "gpu"}, ["lmcache_mode", "gpu"]),
    "unknown_instance_mode": (
        "node-b",
        {"vllm_instances": instances_with(lmcache_mode="gpu")},
        ["vllm_instances[alpha]", "lmcache_mode", "gpu"],
    ),
    "negative_cpu_cache": ("node-a", {"lmcache_max_local_cpu_size": -1.0}, ["lmcache_max_local_cpu_size", "-1"]),
    "negative_disk_cache": ("node-b", {"lmcache_max_local_disk_size": -5}, ["lmcache_max_local_disk_size", "-5"]),
    "incompatible_lmcache": ("node-a", {"lmcache_version": "0.3.9"}, ["lmcache_version=0.3.9"]),
    "incompatible_release": ("node-b", {"vllm_gaudi_release": "1.23.0"}, ["vllm_gaudi_release", "1.23.0"]),
    "relative_venv": ("node-a", {"vllm_venv": "opt/vllm/venv"}, ['vllm_venv=\\"opt/vllm/venv\\"', "absolute path"]),
    "relative_shared_path": (
        "node-b",
        {"lmcache_shared_path": "kv_storage/lmcache", "vllm_instances": INSTANCES},
        ["lmcache_shared_path", "kv_storage/lmcache"],
    ),
    "unknown_lmcache_key": ("node-a", {"lmcache_extra_keys": {"max_local_gpu_size": 1}}, ["max_local_gpu_size"]),
    "bad_kv_role": (
        "node-b",
        {"vllm_instances": instances_with(kv_role="kv_sideways")},
        ["vllm_instances[alpha]", "kv_role", "kv_sideways"],
    ),
    # cache keys: vllm_env / env may repeat the role's value but not change it
    "hashseed_override": (
        "node-a",
        {"vllm_instances": INSTANCES, "vllm_env": {"PYTHONHASHSEED": "7"}},
        ["vllm_env sets PYTHONHASHSEED=7 but the role sets PYTHONHASHSEED=0"],
    ),
    "chunk_size_override": (
        "node-b",
        {"vllm_instances": instances_with(env={"LMCACHE_CHUNK_SIZE": "512"})},
        ["vllm_instances[alpha].env sets LMCACHE_CHUNK_SIZE=512 but the role sets LMCACHE_CHUNK_SIZE=256"],
    ),
    # the kv_storage role's rules
    "relative_mount_path": (
        "node-a",
        {"kv_storage_type": "nfs", "kv_storage_nfs_server": "127.0.0.1", "kv_storage_mount_path": "mnt/kvcache"},
        ["kv_storage_mount_path", "absolute"],
    ),
    "nfs_nconnect": (
        "node-b",
        {"kv_storage_type": "nfs", "kv_storage_nfs_server": "127.0.0.1", "kv_storage_nconnect": 17},
        ["kv_storage_nconnect", "16"],
    ),
    "vast_nconnect": (
        "node-a",
        {"kv_storage_type": "vast", "kv_storage_nfs_server": "127.0.0.1", "kv_storage_nconnect": 65},
        ["kv_storage_nconnect", "64"],
    ),
    "nfs_without_server": ("node-b", {"kv_storage_type": "nfs"}, ["kv_storage_nfs_server"]),
    # argument-spec types, for stages whose role checks nothing else about them
    "hpu_patch_state": ("node-a", {"hpu_patch_state": "maybe"}, ["hpu_patch_state", "maybe"]),
    "kv_storage_type": ("node-b", {"kv_storage_type": "ceph"}, ["kv_storage_type", "ceph"]),
}


def run_site(tmp_path, bad_host, bad_vars):
    hosts = {}
    for name in ("node-a", "node-b"):
        hvars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "preflight_disk_path": str(tmp_path),
            # The disk check runs for real; what it needs must not depend on this machine's free disk.
            "preflight_min_free_disk_gb": 1,
        }
        hvars.update(GOOD)
        if name == bad_host:
            hvars.update(bad_vars)
        hosts[name] = hvars
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": hosts,
                    "children": {"gaudi_nodes": {"hosts": {"node-a": {}, "node-b": {}}}},
                }
            }
        )
    )
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_FORKS": "4",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
    )
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    proc = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            str(inventory),
            os.path.join(ROOT, "playbooks", "site.yml"),
            "--check",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
        timeout=600,
    )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        pytest.fail("ansible-playbook printed no JSON: %s\n%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_every_host_before_any_change(case, tmp_path):
    if not shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)):
        pytest.skip("ansible-playbook is not available")
    bad_host, bad_vars, words = CASES[case]
    rc, report = run_site(tmp_path, bad_host, bad_vars)
    assert rc != 0
    failures = []
    later = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if play["play"]["name"] != PREFLIGHT_PLAY:
                    later.append((play["play"]["name"], task["task"]["name"], host))
                elif result.get("failed"):
                    failures.append((host, task["task"]["name"], json.dumps(result)))
    # Nothing of a later play ran on any host, and nothing changed.
    assert later == []
    for host, stats in report["stats"].items():
        assert stats["changed"] == 0, (host, stats)
    # The bad host failed an input check naming the variable and the value; the good host
    # did not fail a check of its own (the run stopped for it because of the other host).
    assert [f[0] for f in failures] == [bad_host], failures
    _host, _task, result = failures[0]
    for word in words:
        assert word in result, (word, result)
