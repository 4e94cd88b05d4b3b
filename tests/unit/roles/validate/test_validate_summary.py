# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet summary (tasks_from: summary) against reports in a temporary directory: a report
whose run_id is not the one this run passed to its host is marked STALE and fails the summary."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

PLAYBOOK = """---
- name: Hosts that ran the validation in this run
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Record the run id the role would have passed
      ansible.builtin.set_fact:
        __validate_run_id: "{{ run_ids[inventory_hostname] }}"
      when: inventory_hostname in run_ids

- name: Summary
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Print the summary
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.validate
        tasks_from: summary
      vars:
        validate_summary_hosts: [node-a, node-b]
"""


def report(node, run_id):
    tier = {"status": "pass", "reason": "ok", "required": True, "duration_s": 0.0, "figures": {}}
    return {
        "node": node,
        "overall": "pass",
        "device": "hpu",
        "run_id": run_id,
        "started_at": "2026-01-01T00:00:00Z",
        "tiers": {n: dict(tier) for n in ("devices", "stack", "storage", "kv_offload", "serving")},
    }


def summarise(tmp_path, reports, run_ids):
    rdir = tmp_path / "validation"
    rdir.mkdir()
    for node, run_id in reports.items():
        (rdir / (node + ".json")).write_text(json.dumps(report(node, run_id)))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({"run_ids": run_ids, "validate_report_dir": str(rdir)}))
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
    )
    res = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            "node-a,node-b,",
            "-e",
            "@" + str(tmp_path / "vars.json"),
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    return res.returncode, res.stdout + res.stderr


def test_current_reports_pass(tmp_path):
    rc, out = summarise(tmp_path, {"node-a": "run-2", "node-b": "run-2"}, {"node-a": "run-2", "node-b": "run-2"})
    assert rc == 0, out
    assert "0 STALE" in out


def test_report_from_an_earlier_run_is_stale(tmp_path):
    # node-b's copy failed in this run: its file is yesterday's.
    rc, out = summarise(tmp_path, {"node-a": "run-2", "node-b": "run-1"}, {"node-a": "run-2", "node-b": "run-2"})
    assert rc != 0, out
    assert "1 STALE (report from an earlier run: node-b)" in out, out
    row = [line for line in out.splitlines() if line.strip().startswith('"node-b ')]
    assert row and "STALE" in row[0], out
    assert "STALE validation report(s)" in out


def test_report_of_a_host_not_validated_in_this_run_is_stale(tmp_path):
    rc, out = summarise(tmp_path, {"node-a": "run-2", "node-b": None}, {"node-a": "run-2"})
    assert rc != 0 and "earlier run: node-b" in out, out
