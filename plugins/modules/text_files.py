#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: text_files
short_description: Write a set of text files into one directory in one call
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Makes each of the given files below the directory O(dest) hold the given text, with the
    given mode, owner and group, in one module call. Several M(ansible.builtin.template) or
    M(ansible.builtin.copy) tasks cost two module calls per file; this module costs one for the
    whole set, which is what a converged node spends its time on.
  - Files are compared byte for byte (the text is encoded as UTF-8). Each file that changes is
    written atomically (a temporary file in the same directory, then a rename), so a service
    that reads it never sees a half-written file.
  - Other files in O(dest) are left as they are. Use M(gaudi.vllm_lmcache.python_package) for a
    directory that must hold exactly a set of files.
  - Render templates on the control node with the P(ansible.builtin.template#lookup) lookup and
    pass the text in O(files).
  - Paths are relative to O(dest), with C(/) separators. They must be normalized (no C(./), no
    trailing or doubled C(/)), must not be absolute and have no C(..) or C(__pycache__)
    component; the module fails naming the path otherwise.
options:
  dest:
    description:
      - The directory on the managed node. Created with its missing parents when it does not
        exist (owner and group as O(owner) and O(group), mode O(directory_mode)); the mode of an
        existing directory is not changed.
    type: path
    required: true
  files:
    description:
      - The files, relative path to text.
    type: dict
    required: true
  owner:
    description:
      - User name or numeric id that owns the files. An existing file owned by another user
        counts as a change.
      - When not set, a replaced file keeps its owner where possible, new files belong to the
        user the module runs as.
      - In check mode a name that does not exist yet (an account an earlier task of the run
        creates) counts as a change instead of an error; a real run fails on it.
    type: str
  group:
    description:
      - Group name or numeric id of the files, like O(owner).
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
        for example C(run.sh: '0755'). Each key must be one of O(files)."
    type: dict
    default: {}
  directory_mode:
    description:
      - Mode of the directories this module creates (O(dest), its missing parents and the
        subdirectories that O(files) need), an octal string or a number.
      - V(null) gives them C(0777) less the umask.
    type: raw
    default: '0755'
attributes:
  check_mode:
    description: Reports the same changed files and diff as a real run and writes nothing.
    support: full
  diff_mode:
    description: Shows the content of each created or updated file, and mode or owner changes.
    support: full
  platform:
    description: Runs on POSIX managed nodes.
    platforms: posix
    support: full
notes:
  - The texts travel in the module arguments and, in diff mode, in the diff. For files that
    hold secrets set C(no_log) and C(diff) to false on the task.
seealso:
  - module: ansible.builtin.template
  - module: gaudi.vllm_lmcache.python_package
'''

EXAMPLES = r'''
- name: Write one environment file per instance from the role's template
  gaudi.vllm_lmcache.text_files:
    dest: /etc/myapp
    files: >-
      {%- set out = {} -%}
      {%- for instance in myapp_instances -%}
      {%-   set _ = out.update({instance.name ~ '.env': lookup('ansible.builtin.template', 'instance.env.j2',
                                                           template_vars={'instance': instance})}) -%}
      {%- endfor -%}
      {{ out }}
    owner: root
    group: root
    mode: "0600"
  register: env_files
  # the files hold secrets
  no_log: true
  diff: false

- name: Write a systemd unit rendered from the role's template
  gaudi.vllm_lmcache.text_files:
    dest: /etc/systemd/system
    files:
      myapp.service: "{{ lookup('ansible.builtin.template', 'myapp.service.j2') }}"
  register: unit

- name: Reload systemd when the unit changed
  ansible.builtin.systemd_service:
    daemon_reload: true
  when: unit is changed
'''

RETURN = r'''
dest:
  description: The directory, as an absolute path.
  returned: always
  type: str
  sample: /etc/vllm
files:
  description: Every file of the set, relative to RV(dest), sorted.
  returned: always
  type: list
  elements: str
  sample: ["a.env", "b.env"]
changed_files:
  description: The files created or updated, or whose mode, owner or group changed; sorted, relative to RV(dest).
  returned: always
  type: list
  elements: str
  sample: ["b.env"]
created_dirs:
  description: Directories created (absolute paths, parents first).
  returned: always
  type: list
  elements: str
  sample: ["/etc/vllm"]
diff:
  description:
    - One entry per created or updated file, then one per file whose mode, owner or group
      changes (its C(before_header) and C(after_header) end with C((attributes))).
    - For a new file C(before) is empty and C(before_header) ends with C((absent)). An entry
      whose C(before) and C(after) are the same (an empty file created) also has C(prepared), a
      line that says so.
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
    changed_files,
    diff,
    is_changed,
    parse_mode,
    parse_modes,
    plan,
    resolve_owner,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            files=dict(type='dict', required=True),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw', default='0644'),
            modes=dict(type='dict', default={}),
            directory_mode=dict(type='raw', default='0755'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    dest = os.path.abspath(params['dest'])
    files = params['files']
    try:
        mode = parse_mode(params['mode'], 'mode')
        modes = parse_modes(params['modes'], files)
        directory_mode = parse_mode(params['directory_mode'], 'directory_mode')
        uid, gid = resolve_owner(params['owner'], params['group'], missing_ok=module.check_mode)
        todo = plan(dest, files, purge=False, mode=mode, uid=uid, gid=gid, want_content=module._diff, modes=modes)
    except PackageError as exc:
        module.fail_json(msg='text_files: %s' % to_native(exc), dest=dest)
    except (IOError, OSError) as exc:
        module.fail_json(msg='text_files: cannot read %s: %s' % (dest, to_native(exc)), dest=dest)

    result = dict(
        changed=is_changed(todo),
        dest=dest,
        files=todo['files'],
        changed_files=changed_files(todo),
        created_dirs=todo['create_dirs'],
    )
    if module._diff:
        result['diff'] = diff(dest, files, todo)
    if result['changed'] and not module.check_mode:
        try:
            apply(dest, files, todo, mode=mode, directory_mode=directory_mode, uid=uid, gid=gid, modes=modes)
        except (IOError, OSError) as exc:
            module.fail_json(msg='text_files: writing %s failed: %s' % (dest, to_native(exc)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
