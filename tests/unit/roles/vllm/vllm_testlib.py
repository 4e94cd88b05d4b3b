# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the vllm role's unit tests: a playbook that runs the role's checks and
writes its environment files into a temporary directory, and the ansible-playbook runner."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
BIN = os.path.dirname(sys.executable)

# The LMCache and vLLM checks, then the environment files (tasks_from: env_files); a test adds
# its own tasks after them.
PLAYBOOK = """---
- name: %(name)s
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load the LMCache defaults and check its inputs
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.lmcache
        tasks_from: validate
        public: true
      vars:
        lmcache_configs: "{{ test_lmcache_configs }}"
    - name: Load the vLLM compatibility matrix and OS settings
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.vllm
        tasks_from: load_vars
        public: true
    - name: Check the vLLM inputs
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.vllm
        tasks_from: validate
        public: true
    - name: Write the environment files
      ansible.builtin.include_role:
        name: gaudi.vllm_lmcache.vllm
        tasks_from: env_files
"""


def playbook(name, extra_tasks=""):
    return PLAYBOOK % {"name": name} + extra_tasks


def with_lmcache_configs(data):
    """Add test_lmcache_configs: what the vllm role passes to the lmcache role per instance."""
    data["test_lmcache_configs"] = [
        {"name": i["name"], "mode": i.get("lmcache_mode", "cpu"), "overrides": i.get("lmcache_overrides", {})}
        for i in data["vllm_instances"]
    ]
    return data


def play(tmp_path, book_text, variables, *args):
    """Run book_text against localhost with variables as extra vars; (rc, stdout + stderr)."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    book = tmp_path / "play.yml"
    book.write_text(book_text)
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps(variables))
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    env.pop("ANSIBLE_CONFIG", None)
    res = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-e", "@" + str(varfile), str(book)] + list(args),
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    return res.returncode, res.stdout + res.stderr
