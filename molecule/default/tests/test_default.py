"""Verify the default scenario: site.yml's preflight stage on a systemd container.

Preflight changes nothing on the node, so these tests check the node it accepts, also with the
override for an unsupported OS. The refusals (short disk, unsupported OS, wrong types, every
stage's bad inputs) are cases of the site.yml bad-input table, tests/unit/playbooks.
"""

import os
import subprocess

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("gaudi_nodes")
SITE = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "site.yml")


def run_site(*extra_vars):
    # JSON, so site_stages is a list (key=value extra vars are strings, which site.yml refuses).
    cmd = ["ansible-playbook", "-i", INVENTORY, SITE, "-e", '{"site_stages": ["preflight"]}']
    for extra in extra_vars:
        cmd += ["-e", extra]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # ansible-core 2.19 prints task errors on stderr: check both streams.
    result.output = result.stdout + result.stderr
    return result


def test_node_runs_systemd(host):
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")


def test_node_is_accepted_os(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("12")
    assert host.exists("python3")


def test_preflight_accepts_the_node():
    result = run_site("preflight_min_free_disk_gb=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout


def test_preflight_override_for_unsupported_os():
    result = run_site(
        "{\"preflight_supported_os\": {\"Ubuntu\": [\"24.04\"]}, \"preflight_allow_unsupported_os\": true}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
