# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's rolling serving play, run for real on local hosts with every stage left out: the
batch size comes from site_serial (default 25%, at least one node), read from extra vars or
from the inventory's group_vars, and each batch is its own pass of the play."""

import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PLAY = "LMCache and vLLM, HPU patch, rolling gates"


def batches(tmp_path, all_vars, extra=()):
    node = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"n%d" % i: dict(node) for i in range(1, 5)}
    inventory = {
        "all": {
            "vars": dict({"site_stages": []}, **all_vars),
            "children": {"gaudi_nodes": {"hosts": {}}, "prefill_nodes": {"hosts": hosts}},
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_GATHER_TIMEOUT="20",
    )
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.access(playbook, os.X_OK):
        pytest.skip("ansible-playbook not found")
    res = subprocess.run(
        [playbook, "-i", str(tmp_path / "hosts.yml"), os.path.join(ROOT, "playbooks", "site.yml")]
        + ["--skip-tags", "validate_summary"]
        + list(extra),
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out.count("PLAY [%s]" % PLAY), out


def test_default_is_a_quarter_of_the_nodes(tmp_path):
    count, out = batches(tmp_path, {})
    assert count == 4, out


def test_site_serial_from_group_vars(tmp_path):
    count, out = batches(tmp_path, {"site_serial": 2})
    assert count == 2, out


def test_site_serial_from_extra_vars_wins(tmp_path):
    count, out = batches(tmp_path, {"site_serial": 1}, ["-e", "site_serial=100%"])
    assert count == 1, out
