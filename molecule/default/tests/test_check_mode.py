"""Check mode tells the truth (issue 15, item 4): on the converged node ``site.yml --check
--diff`` reports 0 changed and plans no restart; with one cache input changed it reports
exactly the files that input changes and the restart of the instance that reads them.

Runs ansible-playbook with the JSON callback against the Molecule inventory and reads every
task result."""

import json
import os
import subprocess

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SITE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "site.yml")
NODE = "default-gaudi-node"
# What a chunk_size change must change, and nothing else.
CHUNK_SIZE_CHANGES = {
    "Render the LMCache configuration files",
    "Write the instance environment files",
    "Collect the instances to restart",
    "Restart the instance",
}


def check_run(*extra):
    cmd = ["ansible-playbook", "-i", INVENTORY, SITE, "--check", "--diff"]
    for value in extra:
        cmd += ["-e", json.dumps(value)]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    report = json.loads(res.stdout)
    changed = []
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(NODE)
            if result and result.get("changed"):
                changed.append(task["task"]["name"].split(" : ", 1)[-1])
    return res.returncode, report, changed


def node_state(host):
    return host.check_output(
        "systemctl show -P ExecMainStartTimestampMonotonic vllm@gamma.service;"
        " md5sum /etc/vllm/gamma.env /etc/lmcache/gamma.yaml /etc/systemd/system/vllm@.service"
    )


def test_converged_node_check_diff_reports_nothing(host):
    before = node_state(host)
    rc, report, changed = check_run({"site_stages": ["preflight", "vllm", "lmcache"]})
    assert rc == 0, report["stats"]
    assert report["stats"][NODE]["changed"] == 0, changed
    assert changed == []
    assert node_state(host) == before


def test_one_cache_input_changes_exactly_its_files_and_restart(host):
    before = node_state(host)
    rc, report, changed = check_run({"site_stages": ["preflight", "vllm", "lmcache"], "lmcache_chunk_size": 512})
    assert rc == 0, report["stats"]
    assert set(changed) == CHUNK_SIZE_CHANGES, changed
    # check mode changed nothing on the node
    assert node_state(host) == before
    assert "chunk_size: 256" in host.file("/etc/lmcache/gamma.yaml").content_string
