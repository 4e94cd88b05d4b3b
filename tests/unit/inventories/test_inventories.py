# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example inventories parse, define the groups site.yml targets, and pass (or, with one
node changed, fail) the preflight check that nodes sharing a cache agree on their cache keys.

The shared-cache check (roles/preflight/tasks/shared_cache.yml) only uses set_fact and assert,
so it runs against every inventory with ansible_connection=local: nothing is contacted.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
INVENTORIES = os.path.join(ROOT, "inventories")
NAMES = sorted(d for d in os.listdir(INVENTORIES) if os.path.isdir(os.path.join(INVENTORIES, d)))

PLAYBOOK = """---
- name: Check the shared-cache agreement
  hosts: gaudi_nodes:prefill_nodes
  gather_facts: false
  tasks:
    - name: Run the preflight shared-cache check
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.preflight
        tasks_from: shared_cache
"""

# Inventories whose nodes share one LMCache tier, and a node to give another chunk_size.
SHARED = {"cluster-mode-b": "gaudi-03", "disaggregated": "gaudi-02", "lab": "lab-gaudi-2"}


def tool(name):
    """The venv's ansible tool: next to this interpreter, else the repository's .venv."""
    for directory in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    pytest.skip("%s not found next to %s or in .venv" % (name, sys.executable))
    return None


def env(tmp_path):
    out = dict(os.environ)
    out.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        }
    )
    out.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return out


def inventory_list(name, tmp_path):
    res = subprocess.run(
        [tool("ansible-inventory"), "-i", os.path.join(INVENTORIES, name), "--list"],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[WARNING]" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def shared_cache_check(tmp_path, *inventories, extra=()):
    playbook = tmp_path / "shared_cache.yml"
    playbook.write_text(PLAYBOOK)
    argv = [tool("ansible-playbook")]
    for inv in inventories:
        argv += ["-i", str(inv)]
    argv += ["-e", "ansible_connection=local", "-e", "ansible_become=false", *extra, str(playbook)]
    res = subprocess.run(argv, capture_output=True, text=True, env=env(tmp_path), cwd=ROOT, check=False)
    return res.returncode, res.stdout + res.stderr


def test_every_inventory_is_found():
    assert {"single-node-mode-a", "cluster-mode-b", "disaggregated", "lab"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_inventory_parses_with_site_groups(name, tmp_path):
    data = inventory_list(name, tmp_path)
    children = data["all"]["children"]
    assert "gaudi_nodes" in children, children
    # An empty prefill_nodes group (single node, Mode B cluster) is dropped from --list;
    # it must still be declared, which `--graph` shows.
    res = subprocess.run(
        [tool("ansible-inventory"), "-i", os.path.join(INVENTORIES, name), "--graph"],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        cwd=ROOT,
        check=True,
    )
    assert "@prefill_nodes:" in res.stdout, res.stdout
    assert data["gaudi_nodes"]["hosts"], data["gaudi_nodes"]
    for host in data["gaudi_nodes"]["hosts"] + data.get("prefill_nodes", {}).get("hosts", []):
        assert host in data["_meta"]["hostvars"]


@pytest.mark.parametrize("name", NAMES)
def test_shared_cache_check_passes(name, tmp_path):
    rc, out = shared_cache_check(tmp_path, os.path.join(INVENTORIES, name))
    assert rc == 0, out
    # Mode B inventories really ran the comparison (one assert per key).
    if name in SHARED:
        assert "default: chunk_size" in out, out


def same_cache_domain(name, tmp_path, odd):
    """The other hosts of `odd`'s cache domain (the lab's CPU nodes have one of their own)."""
    hostvars = inventory_list(name, tmp_path)["_meta"]["hostvars"]
    domain = hostvars[odd].get("preflight_cache_domain", "default")
    return [h for h, hv in hostvars.items() if h != odd and hv.get("preflight_cache_domain", "default") == domain]


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_cache_check_names_the_node_with_another_chunk_size(name, tmp_path):
    odd = SHARED[name]
    override = tmp_path / "override.yml"
    override.write_text("all:\n  hosts:\n    %s:\n      lmcache_chunk_size: 512\n" % odd)
    rc, out = shared_cache_check(tmp_path, os.path.join(INVENTORIES, name), override)
    assert rc != 0, out
    assert "disagree on chunk_size" in out, out
    assert "%s=512" % odd in out, out
    others = same_cache_domain(name, tmp_path, odd)
    assert others
    for host in others:
        assert "%s=256" % host in out, out
    # Only the key that differs is reported.
    assert "disagree on model" not in out and "disagree on storage_path" not in out, out


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_cache_check_holds_under_limit(name, tmp_path):
    """`--limit` to the odd node still compares it with the rest of its cache domain."""
    odd = SHARED[name]
    override = tmp_path / "override.yml"
    override.write_text("all:\n  hosts:\n    %s:\n      lmcache_chunk_size: 512\n" % odd)
    rc, out = shared_cache_check(tmp_path, os.path.join(INVENTORIES, name), override, extra=("--limit", odd))
    assert rc != 0, out
    assert "disagree on chunk_size" in out, out
    assert "%s=512" % odd in out, out
    others = same_cache_domain(name, tmp_path, odd)
    assert any("%s=256" % host in out for host in others), out
