# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' defaults derive from one gaudi_stack row, and inventory values win over them.

Each role's real defaults/main.yml is loaded as the defaults of a probe role (same file, same
precedence: role defaults are the lowest), the probe prints the resolved values, and
ansible-playbook runs it against a local host of a temporary inventory. Nothing is contacted.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MATRIX = yaml.safe_load(open(os.path.join(ROOT, "meta", "gaudi_stack.yml")))
ROWS = {r["id"]: r for r in MATRIX["rows"]}

# Variables each probe prints (the ones that come from the stack row or from the inventory).
PROBED = {
    "habana_driver": ["habana_driver_version"],
    "vllm": [
        "vllm_install_method",
        "vllm_wheelhouse_flavor",
        "vllm_gaudi_release",
        "vllm_gaudi_build",
        "vllm_torch_version",
        "vllm_version",
        "vllm_ref",
        "vllm_gaudi_version",
        "vllm_gaudi_ref",
        "vllm_fork_ref",
        "vllm_lmcache_enabled",
    ],
    "lmcache": ["lmcache_version", "lmcache_apply_hpu_patch"],
    "hpu_patch": ["hpu_patch_python", "hpu_patch_restart_units"],
    "validate": [
        "validate_endpoint",
        "validate_model",
        "validate_venv",
        "validate_storage_path",
        "validate_stack_required_packages",
        "validate_report_dir",
    ],
}

PLAYBOOK = """---
- name: Resolve the role defaults
  hosts: gaudi_nodes
  gather_facts: false
  roles:
%s
"""


def tool(name):
    for directory in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    pytest.skip("%s not found" % name)
    return None


def resolve(tmp_path, group_vars=None, extra=None):
    """Run the probes; return {role: {var: value}} for the single host node1."""
    roles = tmp_path / "roles"
    for role, names in PROBED.items():
        (roles / ("probe_" + role) / "defaults").mkdir(parents=True, exist_ok=True)
        (roles / ("probe_" + role) / "tasks").mkdir(parents=True, exist_ok=True)
        shutil.copy(
            os.path.join(ROOT, "roles", role, "defaults", "main.yml"),
            str(roles / ("probe_" + role) / "defaults" / "main.yml"),
        )
        values = "{" + ", ".join("%r: %s" % (n, n) for n in names) + "}"
        (roles / ("probe_" + role) / "tasks" / "main.yml").write_text(
            "---\n- name: Print the resolved values\n  ansible.builtin.debug:\n"
            "    msg: \"PROBE %s {{ %s | to_json }}\"\n" % (role, values)
        )
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    gaudi_nodes:\n      hosts:\n        node1:\n"
        "          ansible_connection: local\n          ansible_python_interpreter: %s\n"
        "    prefill_nodes:\n      hosts: {}\n" % sys.executable
    )
    (inv / "group_vars" / "gaudi_nodes.yml").write_text("---\n" + yaml.safe_dump(group_vars or {}))
    playbook = tmp_path / "probe.yml"
    playbook.write_text(PLAYBOOK % "\n".join("    - probe_" + r for r in PROBED))
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
            "ANSIBLE_ROLES_PATH": str(roles),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_STDOUT_CALLBACK": "default",
        }
    )
    argv = [tool("ansible-playbook"), "-i", str(inv), str(playbook)]
    for key, value in (extra or {}).items():
        argv += ["-e", json.dumps({key: value})]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = {}
    for line in res.stdout.splitlines():
        line = line.strip()
        if line.startswith('"msg": "PROBE '):
            text = json.loads(line[len('"msg": ') :])
            role, payload = text[len("PROBE ") :].split(" ", 1)
            out[role] = json.loads(payload)
    assert set(out) == set(PROBED), res.stdout
    return out


def expect_row(got, row):
    assert got["habana_driver"]["habana_driver_version"] == row["habana_driver_version"]
    v = got["vllm"]
    assert v["vllm_install_method"] == v["vllm_wheelhouse_flavor"] == row["install_method"]
    assert v["vllm_gaudi_release"] == row["gaudi_release"]
    assert v["vllm_gaudi_build"] == row["gaudi_build"]
    assert v["vllm_torch_version"] == row["pytorch"]
    assert v["vllm_version"] == row["vllm_version"]
    assert v["vllm_ref"] == row["vllm_ref"]
    assert v["vllm_gaudi_version"] == row["vllm_gaudi_version"]
    assert v["vllm_gaudi_ref"] == row["vllm_gaudi_ref"]
    assert v["vllm_fork_ref"] == (row["vllm_ref"] if row["install_method"] == "fork" else "")
    assert got["lmcache"]["lmcache_version"] == row["lmcache_version"]


def test_defaults_are_the_default_row(tmp_path):
    got = resolve(tmp_path)
    expect_row(got, ROWS[MATRIX["default"]])
    # Standalone (no site.yml): LMCache on, the lmcache role patches on gaudi_nodes hosts.
    assert got["vllm"]["vllm_lmcache_enabled"] is True
    assert got["lmcache"]["lmcache_apply_hpu_patch"] is True
    assert got["hpu_patch"] == {"hpu_patch_python": "/opt/vllm/venv/bin/python", "hpu_patch_restart_units": []}
    assert got["validate"]["validate_endpoint"] == ""
    assert got["validate"]["validate_storage_path"] == ""
    assert got["validate"]["validate_stack_required_packages"] == ["vllm", "vllm-gaudi", "lmcache"]


@pytest.mark.parametrize("stack", ["plugin-0.17.1-sw1.23.0", "fork-0.9.0.1-sw1.22.0"])
def test_one_group_var_moves_every_role(tmp_path, stack):
    expect_row(resolve(tmp_path, {"gaudi_stack": stack}), ROWS[stack])


def test_group_vars_values_reach_each_role(tmp_path):
    group_vars = {
        "gaudi_stack": "plugin-0.21.0-sw1.24.0",
        "habana_driver_version": "1.24.0-999",
        "vllm_gaudi_build": "999",
        "vllm_ref": "v0.21.0",
        "lmcache_version": "0.4.7",
        "lmcache_apply_hpu_patch": False,
        "hpu_patch_python": "/srv/venv/bin/python",
        "hpu_patch_restart_units": ["custom.service"],
        "validate_endpoint": "http://10.0.0.9:9000",
        "validate_model": "org/model-x",
        "validate_venv": "/srv/venv",
        "validate_storage_path": "/mnt/x",
        "validate_stack_required_packages": ["vllm"],
        "validate_report_dir": "/srv/reports",
    }
    got = resolve(tmp_path, group_vars)
    assert got["habana_driver"]["habana_driver_version"] == "1.24.0-999"
    assert got["vllm"]["vllm_gaudi_build"] == "999"
    assert got["vllm"]["vllm_ref"] == "v0.21.0"
    # Values not overridden still come from the selected row.
    assert got["vllm"]["vllm_gaudi_version"] == "0.21.0"
    assert got["lmcache"]["lmcache_version"] == "0.4.7"
    assert got["lmcache"]["lmcache_apply_hpu_patch"] is False
    assert got["hpu_patch"] == {
        "hpu_patch_python": "/srv/venv/bin/python",
        "hpu_patch_restart_units": ["custom.service"],
    }
    for key in (
        "validate_endpoint",
        "validate_model",
        "validate_venv",
        "validate_storage_path",
        "validate_stack_required_packages",
        "validate_report_dir",
    ):
        assert got["validate"][key] == group_vars[key], key


def test_values_site_yml_used_to_pass_are_derived_in_the_defaults(tmp_path):
    # What site.yml computed per host is now each role's default: first instance's port and
    # model, Mode B storage path, the stages' effect on LMCache, the venv and the patch owner.
    group_vars = {
        "vllm_instances": [
            {"name": "a", "model": "org/a", "port": 8123},
            {"name": "b", "model": "org/b", "port": 8124},
        ],
        "vllm_venv": "/srv/vllm",
        "lmcache_mode": "shared",
        "lmcache_shared_path": "/mnt/kv/lmcache",
        "site_validation_dir": "/srv/validation",
    }
    got = resolve(tmp_path, group_vars, extra={"site_run_stages": ["habana_driver", "kv_storage", "vllm", "validate"]})
    assert got["validate"]["validate_endpoint"] == "http://127.0.0.1:8123"
    assert got["validate"]["validate_model"] == "org/a"
    assert got["validate"]["validate_venv"] == "/srv/vllm"
    assert got["validate"]["validate_storage_path"] == "/mnt/kv/lmcache"
    assert got["validate"]["validate_report_dir"] == "/srv/validation"
    # No lmcache stage: LMCache is neither installed nor required.
    assert got["vllm"]["vllm_lmcache_enabled"] is False
    assert got["validate"]["validate_stack_required_packages"] == ["vllm", "vllm-gaudi"]
    # Under site.yml the hpu_patch stage owns the patch, with the service venv and units.
    assert got["lmcache"]["lmcache_apply_hpu_patch"] is False
    assert got["hpu_patch"] == {
        "hpu_patch_python": "/srv/vllm/bin/python",
        "hpu_patch_restart_units": ["vllm@a", "vllm@b"],
    }

    got = resolve(tmp_path, group_vars, extra={"site_run_stages": ["vllm", "lmcache", "validate"]})
    assert got["validate"]["validate_storage_path"] == ""  # no kv_storage stage
    assert got["vllm"]["vllm_lmcache_enabled"] is True
    got = resolve(tmp_path, group_vars, extra={"site_run_stages": ["validate"]})
    assert got["validate"]["validate_venv"] == ""  # no vllm stage: stack tier skipped
