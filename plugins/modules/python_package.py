#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: python_package
short_description: Install a directory of Python files (a package) on the managed node in one call
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Makes the directory O(dest) hold a given set of text files, in one module call instead of
    one M(ansible.builtin.copy) task per file. Idempotent; runs in check mode and shows a diff.
  - The files come from three sources, merged on the control node by the action plugin of the
    same name. O(src) is a directory of the calling role's C(files/), copied recursively.
    O(module_utils) names modules of this collection's C(plugins/module_utils) (for example
    C(hl_smi), C(lmcache_hpu_patch), C(hpu_kv_transfer), C(lmcache_cpu_connector)), read through
    the collection's import machinery, so a role needs no relative path into the collection.
    O(files) gives files inline. The same path from two sources is an error.
  - Files are compared byte for byte. Each file that changes is written atomically (a temporary
    file in the same directory, then a rename), so a process importing the package never sees
    a half-written module.
  - With O(purge=true), files below O(dest) that are not in the set are removed, with the
    C(__pycache__/<stem>.*.pyc) caches of each removed C(<stem>.py); directories that the
    removals leave empty are removed too. Nothing else in a C(__pycache__) directory is touched.
  - Paths are relative to O(dest), with C(/) separators. They must be normalized (no C(./), no
    trailing or doubled C(/)), must not be absolute, have no C(..) component and no
    C(__pycache__) component; the action fails naming the path otherwise.
options:
  dest:
    description:
      - The package directory on the managed node. Created with its parents when missing.
    type: path
    required: true
  src:
    description:
      - A directory on the control node, looked up like the O(ansible.builtin.copy#module:src) of
        M(ansible.builtin.copy) (the role's C(files/) first). Its files are installed below
        O(dest) with their relative paths.
      - C(__pycache__) directories and C(*.pyc) files are skipped; symbolic links to
        directories are not followed. Every file must be UTF-8 text.
      - Handled by the action plugin; the module itself never receives it.
    type: str
  module_utils:
    description:
      - Names of this collection's module_utils modules (without C(.py)), each installed as
        C(<module_utils_dir>/<name>.py) with exactly the bytes of the collection's file.
      - A name that is not a module of C(gaudi.vllm_lmcache.plugins.module_utils) fails.
      - Handled by the action plugin; the module itself never receives it.
    type: list
    elements: str
    default: []
  module_utils_dir:
    description:
      - Directory below O(dest), relative, that receives the O(module_utils) files; empty for
        O(dest) itself.
      - When not empty, an C(__init__.py) holding one comment line is written there too, unless
        O(files) or O(src) provides one.
      - Handled by the action plugin; the module itself never receives it.
    type: str
    default: ''
  files:
    description:
      - Files given inline, relative path to text (for example an C(__init__.py)).
      - The action plugin passes the merged set of all sources here.
    type: dict
    default: {}
  purge:
    description:
      - Remove the files below O(dest) that are not in the set (and their C(.pyc) caches).
      - With V(false), other files in O(dest) are left as they are.
    type: bool
    default: true
  owner:
    description:
      - User name or numeric id that owns the files and the directories this module creates.
        An existing file owned by another user counts as a change.
      - When not set, a replaced file keeps its owner where possible, new files belong to the
        user the module runs as.
      - In check mode a name that does not exist yet (an account an earlier task of the run
        creates) counts as a change instead of an error; a real run fails on it.
    type: str
  group:
    description:
      - Group name or numeric id of the files and the directories this module creates, like
        O(owner).
    type: str
  mode:
    description:
      - Mode of every file, an octal string such as V('0644') or a number. A file with another
        mode counts as a change.
      - V(null) keeps the mode of existing files and gives new files C(0666) less the umask.
    type: raw
    default: '0644'
  modes:
    description:
      - "Modes of single files that differ from O(mode), keyed by their path relative to O(dest),
        for example C(bin/tool: '0755'). Each key must be one of the files installed."
    type: dict
    default: {}
  directory_mode:
    description:
      - Mode of the directories this module creates (O(dest), its missing parents and
        subdirectories), an octal string or a number. Existing directories keep their mode.
      - V(null) gives them C(0777) less the umask.
    type: raw
    default: '0755'
attributes:
  action:
    description: The action plugin reads O(src) and O(module_utils) on the control node and sends all files in one module call.
    support: full
  check_mode:
    description: Reports the same changed files and diff as a real run and writes nothing.
    support: full
  diff_mode:
    description: Shows the content of each created, updated or removed file, and mode or owner changes.
    support: full
  platform:
    description: Runs on POSIX managed nodes.
    platforms: posix
    support: full
notes:
  - The file contents travel in the module arguments; the result carries no copy of them
    (the action plugin drops the C(invocation) key), and only diff mode shows them.
  - Symbolic links below O(dest) are not followed by O(purge); one that stands where a file
    goes is replaced by a regular file.
seealso:
  - module: ansible.builtin.copy
'''

EXAMPLES = r'''
- name: Install the KV connector package with the collection's modules it needs
  gaudi.vllm_lmcache.python_package:
    dest: /opt/vllm/venv/lib/python3.10/site-packages/gaudi_kv_connector
    module_utils:
      - hpu_kv_transfer
      - lmcache_cpu_connector
    module_utils_dir: _collection
    files:
      __init__.py: |
        from ._collection.lmcache_cpu_connector import *  # noqa: F401,F403
    owner: vllm
    group: vllm

- name: Install a role's files/validate_pkg directory, keeping other files in place
  gaudi.vllm_lmcache.python_package:
    src: validate_pkg
    dest: /opt/validate/validate_pkg
    purge: false

- name: Show what would change
  gaudi.vllm_lmcache.python_package:
    dest: /opt/validate/lib
    module_utils: [hl_smi, lmcache_hpu_patch]
  check_mode: true
  diff: true
  register: pkg
'''

RETURN = r'''
dest:
  description: The package directory, as an absolute path.
  returned: always
  type: str
  sample: /opt/validate/lib
files:
  description: Every file of the set, relative to RV(dest), sorted.
  returned: always
  type: list
  elements: str
  sample: ["__init__.py", "_collection/__init__.py", "_collection/hl_smi.py"]
changed_files:
  description: The files created or updated, or whose mode, owner or group changed; sorted, relative to RV(dest).
  returned: always
  type: list
  elements: str
  sample: ["_collection/hl_smi.py"]
removed_files:
  description: The files removed by O(purge) (with the C(.pyc) caches of removed modules); sorted, relative to RV(dest).
  returned: always
  type: list
  elements: str
  sample: ["old.py", "__pycache__/old.cpython-310.pyc"]
removed_dirs:
  description: Directories below RV(dest) that the removals left empty and that were removed, deepest first.
  returned: always
  type: list
  elements: str
  sample: ["legacy/__pycache__", "legacy"]
created_dirs:
  description: Directories created (absolute paths, parents first).
  returned: always
  type: list
  elements: str
  sample: ["/opt/validate/lib", "/opt/validate/lib/_collection"]
diff:
  description:
    - One entry per created, updated or removed file, then one per file whose mode, owner or
      group changes (its C(before_header) and C(after_header) end with C((attributes))).
    - For a new file C(before) is empty and C(before_header) ends with C((absent)); for a removed
      one C(after) is empty and C(after_header) ends with C((removed)). Removed C(.pyc) caches
      have no entry. An entry whose C(before) and C(after) are the same (an empty file created
      or removed) also has C(prepared), a line that says so.
  returned: in diff mode
  type: list
  elements: dict
  contains:
    before_header:
      description: Path of the file.
      type: str
    after_header:
      description: Path of the file.
      type: str
    before:
      description: Content before (or the attributes that change, before).
      type: str
    after:
      description: Content after (or the attributes that change, after).
      type: str
    prepared:
      description: Only where C(before) and C(after) are the same; C(<before_header> -> <after_header>).
      type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._python_package import (
    PackageError,
    apply,
    argument_spec,
    changed_files,
    check_files,
    diff,
    is_changed,
    parse_mode,
    parse_modes,
    plan,
    resolve_owner,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
    )
    params = module.params
    dest = os.path.abspath(params['dest'])
    action_only = [name for name in ('src', 'module_utils', 'module_utils_dir') if params[name]]
    if action_only:
        module.fail_json(
            msg='%s: read on the control node by the python_package action plugin, which passes the files in files'
            % ', '.join(action_only)
        )
    files = params['files']
    try:
        check_files(files)
        mode = parse_mode(params['mode'], 'mode')
        modes = parse_modes(params['modes'], files)
        directory_mode = parse_mode(params['directory_mode'], 'directory_mode')
        uid, gid = resolve_owner(params['owner'], params['group'], missing_ok=module.check_mode)
        todo = plan(
            dest, files, purge=params['purge'], mode=mode, uid=uid, gid=gid, want_content=module._diff, modes=modes
        )
    except PackageError as exc:
        module.fail_json(msg=to_native(exc), dest=dest)
    except (IOError, OSError) as exc:
        module.fail_json(msg='python_package: cannot read %s: %s' % (dest, to_native(exc)), dest=dest)

    result = dict(
        changed=is_changed(todo),
        dest=dest,
        files=todo['files'],
        changed_files=changed_files(todo),
        removed_files=todo['remove'],
        removed_dirs=todo['remove_dirs'],
        created_dirs=todo['create_dirs'],
    )
    if module._diff:
        result['diff'] = diff(dest, files, todo)
    if result['changed'] and not module.check_mode:
        try:
            apply(dest, files, todo, mode=mode, directory_mode=directory_mode, uid=uid, gid=gid, modes=modes)
        except (IOError, OSError) as exc:
            module.fail_json(msg='python_package: writing %s failed: %s' % (dest, to_native(exc)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
