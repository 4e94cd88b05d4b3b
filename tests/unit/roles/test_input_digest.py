# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A role's input checks run once per set of values in a run: site.yml's preflight play checks
them (tasks_from: inputs), and the stage's own checks (tasks/validate.yml) are skipped when the
digest of the inputs is one already checked, and run again for any other value."""

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.vllm import vllm_testlib as lib

# The kv_storage checks (tasks/checks.yml) start with this task: one header per run of them.
CHECK_TASK = "TASK [gaudi.vllm_lmcache.kv_storage : Assert that the kv_storage variables are consistent]"

BOOK = """---
- name: Preflight, then the stage, as site.yml runs them
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    kv_storage_type: local
    kv_storage_mount_path: /mnt/kvcache
  tasks:
    - name: Preflight checks the inputs
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.kv_storage
        tasks_from: inputs
    - name: The stage with the same values
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.kv_storage
        tasks_from: validate
    - name: The stage with the same values, again
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.kv_storage
        tasks_from: validate
    - name: The stage with another cluster name
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.kv_storage
        tasks_from: validate
      vars:
        kv_storage_cluster_name: "%s"
"""


@pytest.mark.parametrize(
    "cluster, rc, runs",
    [
        ("default", 0, 1),  # the same values every time: checked once, by the preflight
        ("other", 0, 2),  # another value is checked again
        ("bad/name", 2, 2),  # and a bad one fails there
    ],
)
def test_checks_run_once_per_set_of_values(tmp_path, cluster, rc, runs):
    code, out = lib.play(tmp_path, BOOK % cluster, {})
    assert code == rc, out
    assert out.count(CHECK_TASK) == runs, out
    if rc:
        assert "kv_storage_cluster_name ('bad/name')" in out
