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

# name: (host that carries the bad vars, bad vars, words the failure message must contain)
CASES = {
    # a late stage's input (validate) refused before the first stage (habana_driver) runs
    "validate_timeout": ("node-a", {"validate_timeout": 0}, ["validate_timeout=0", "positive"]),
    "validate_tier": ("node-a", {"validate_tiers": ["devices", "speed"]}, ["validate_tiers", "speed"]),
    # the vllm stage's instance rules
    "vllm_duplicate_port": (
        "node-b",
        {
            "vllm_instances": [
                {"name": "a", "model": "m", "port": 8000},
                {"name": "b", "model": "m", "port": 8000},
            ]
        },
        ["vllm_instances", "ports must be unique"],
    ),
    # the lmcache role's rules, reached through the vllm stage
    "lmcache_mode": ("node-b", {"lmcache_mode": "disk"}, ["lmcache_mode", "disk"]),
    "lmcache_install_source": (
        "node-a",
        {"lmcache_install_source": "conda"},
        ["lmcache_install_source", "conda"],
    ),
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
    _host, task, result = failures[0]
    assert "Check" in task or "Validating" in task or "validate_argument_spec" in task, task
    for word in words:
        assert word in result, (word, result)
