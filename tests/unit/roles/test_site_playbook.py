# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's own checks, run for real on a local host: the stage vocabulary (site_stages values
are the tag names) and the driver/userspace agreement of the selected stack.

Only the preflight play runs (--tags preflight) and site_stages leaves the preflight role out,
so what runs is site.yml's stage resolution, its asserts and fact gathering on this machine.
"""

import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MATRIX = yaml.safe_load(open(os.path.join(ROOT, "meta", "gaudi_stack.yml")))


def tool(name):
    for directory in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    pytest.skip("%s not found" % name)
    return None


def site(tmp_path, host_vars):
    inv = tmp_path / "hosts.yml"
    node = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # The preflight disk check runs for real; what it needs must not depend on this machine's free disk.
        "preflight_disk_path": str(tmp_path),
        "preflight_min_free_disk_gb": 1,
    }
    node.update(host_vars)
    inv.write_text(
        yaml.safe_dump(
            {"all": {"children": {"gaudi_nodes": {"hosts": {"node1": node}}, "prefill_nodes": {"hosts": {}}}}}
        )
    )
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_GATHER_TIMEOUT": "20",
        }
    )
    res = subprocess.run(
        [tool("ansible-playbook"), "-i", str(inv), os.path.join(ROOT, "playbooks", "site.yml"), "--tags", "preflight"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    return res.returncode, res.stdout + res.stderr


def test_stage_names_are_the_tag_names():
    with open(os.path.join(ROOT, "playbooks", "site.yml")) as fh:
        plays = yaml.safe_load(fh)
    tags = set()
    for play in plays:
        tags.update(play.get("tags", []))
        # The rolling serving play tags its tasks, not itself.
        for task in play.get("tasks", []):
            tags.update(task.get("tags", []))
    tags.discard("validate_summary")
    tags.discard("always")
    stages = None
    for task in plays[0]["pre_tasks"]:
        if "vars" in task and "__site_all_stages" in task["vars"]:
            stages = task["vars"]["__site_all_stages"]
    assert stages == ["preflight", "habana_driver", "kv_storage", "vllm", "lmcache", "hpu_patch", "validate"]
    assert set(stages) == tags
    text = open(os.path.join(ROOT, "playbooks", "site.yml")).read()
    for stage in stages:
        assert "'%s' in site_run_stages" % stage in text, stage
    # site.yml hands no variables to the roles it includes: inventory values always win. The
    # exceptions: the driver play defers the reboot to the one-node-at-a-time play, and the
    # rolling gates run the validate role on the site_rolling_gates tiers.
    allowed = {
        "gaudi.vllm_lmcache.habana_driver": {"habana_driver_reboot_ok"},
        "gaudi.vllm_lmcache.validate": {
            "validate_tiers",
            "validate_required_tiers",
            "validate_fetch_report",
            "validate_visibility_check",
            "validate_cross_node",
        },
    }

    def walk(tasks):
        for task in tasks:
            yield task
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key, []))

    for play in plays:
        for task in walk(play.get("tasks", []) + play.get("pre_tasks", [])):
            if "ansible.builtin.include_role" in task:
                role = task["ansible.builtin.include_role"]["name"]
                assert set(task.get("vars", {})) <= allowed.get(role, set()), task["name"]
        assert "vars" not in play, play["name"]


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"site_serial": 0}, ["site_serial=0: a number of nodes (at least 1)"]),
        ({"site_serial": "150%"}, ["site_serial=", "150%", "a percentage of them"]),
        ({"site_max_fail_percentage": 101}, ["site_max_fail_percentage=101: a whole number from 0 to 100"]),
        ({"site_rolling_gates": ["serving", "speed"]}, ["site_rolling_gates=", "speed", "a list of validation tiers"]),
        ({"site_rolling_gates": "serving"}, ["site_rolling_gates=", "a list of validation tiers"]),
    ],
)
def test_rolling_settings_are_checked_before_any_change(tmp_path, extra, expected):
    rc, out = site(tmp_path, extra)
    assert rc != 0, out
    assert "Check the rolling converge settings" in out, out
    for text in expected:
        assert text in out, out


def test_valid_rolling_settings_pass(tmp_path):
    rc, out = site(tmp_path, {"site_serial": "50%", "site_max_fail_percentage": 25, "site_rolling_gates": []})
    assert rc == 0, out


def test_inventory_stage_lists_use_the_vocabulary():
    stages = {"preflight", "habana_driver", "kv_storage", "vllm", "lmcache", "hpu_patch", "validate"}
    for base, _dirs, files in os.walk(os.path.join(ROOT, "inventories")):
        for name in files:
            data = yaml.safe_load(open(os.path.join(base, name))) or {}
            if "site_stages" in data:
                assert set(data["site_stages"]) <= stages, os.path.join(base, name)


def test_old_stage_names_fail_naming_them(tmp_path):
    rc, out = site(tmp_path, {"site_stages": ["driver", "serving", "hpu_patch"]})
    assert rc != 0, out
    assert "unknown stages driver, serving" in out, out
    assert (
        "Valid stages (the tag names): preflight, habana_driver, kv_storage, vllm, lmcache, hpu_patch, validate" in out
    )


def test_lmcache_without_vllm_fails(tmp_path):
    rc, out = site(tmp_path, {"site_stages": ["lmcache"]})
    assert rc != 0, out
    assert "add vllm" in out, out


def test_default_stack_passes_the_driver_check(tmp_path):
    rc, out = site(tmp_path, {"site_stages": ["habana_driver", "vllm", "lmcache"]})
    assert rc == 0, out
    assert "Check that the Habana driver and the Gaudi software of the serving stack are one release" in out


def test_driver_pin_off_the_row_fails_naming_both_sides(tmp_path):
    default = [r for r in MATRIX["rows"] if r["id"] == MATRIX["default"]][0]
    rc, out = site(tmp_path, {"site_stages": ["habana_driver", "vllm"], "habana_driver_version": "1.22.0-740"})
    assert rc != 0, out
    assert "habana_driver_version=1.22.0-740" in out, out
    assert "vllm_gaudi_release=%s" % default["gaudi_release"] in out, out
    assert "gaudi_stack=%s has %s" % (default["id"], default["habana_driver_version"]) in out, out
    assert "gaudi_stack_allow_driver_mismatch=true" in out, out


def test_driver_and_userspace_moved_together_pass(tmp_path):
    rc, out = site(
        tmp_path,
        {
            "site_stages": ["habana_driver", "vllm"],
            "habana_driver_version": "1.23.0-695",
            "vllm_gaudi_release": "1.23.0",
            "vllm_gaudi_build": "695",
        },
    )
    assert rc == 0, out


def test_mismatch_allowed_on_purpose(tmp_path):
    rc, out = site(
        tmp_path,
        {
            "site_stages": ["habana_driver", "vllm"],
            "habana_driver_version": "1.22.0-740",
            "gaudi_stack_allow_driver_mismatch": True,
        },
    )
    assert rc == 0, out


def test_unknown_gaudi_stack_names_the_rows(tmp_path):
    rc, out = site(tmp_path, {"site_stages": ["habana_driver", "vllm"], "gaudi_stack": "plugin-0.0.0"})
    assert rc != 0, out
    assert "gaudi_stack=plugin-0.0.0 is not a row" in out, out
    assert MATRIX["default"] in out


def test_no_driver_check_on_hosts_without_both_stages(tmp_path):
    rc, out = site(tmp_path, {"site_stages": ["vllm"], "habana_driver_version": "1.22.0-740"})
    assert rc == 0, out
    json.dumps(out)
