#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: directories
short_description: Create several directories, each with its owner, group and mode, in one call
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Makes each path of O(directories) a directory with the given owner, group and mode, like
    M(ansible.builtin.file) with O(ansible.builtin.file#module:state=directory), in one module
    call for the whole list instead of one per directory.
  - A missing directory is created with its missing parents; as with M(ansible.builtin.file),
    the parents it creates get the same owner, group and mode. The owner, group and mode of an
    existing directory are corrected; a symbolic link to a directory is followed.
  - The list is handled parents first, so a listed directory always gets its own attributes.
  - Something that is not a directory where a directory goes fails the module, naming the path,
    before anything is changed.
options:
  directories:
    description:
      - The directories.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - Absolute path of the directory. Each path may appear once.
        type: path
        required: true
      owner:
        description:
          - User name or numeric id that owns the directory. Not set, the owner is left alone
            (new directories belong to the user the module runs as).
          - In check mode a name that does not exist yet (an account an earlier task of the run
            creates) counts as a change instead of an error; a real run fails on it.
        type: str
      group:
        description:
          - Group name or numeric id of the directory, like O(directories[].owner).
        type: str
      mode:
        description:
          - Mode, an octal string such as V('0755') or V('2770'), or a number. Not set, the mode
            of an existing directory is left alone and a new one gets C(0777) less the umask.
        type: raw
attributes:
  check_mode:
    description: Reports the same changes and diff as a real run and changes nothing.
    support: full
  diff_mode:
    description: Shows each directory created and each change of mode, owner or group.
    support: full
  platform:
    description: Runs on POSIX managed nodes.
    platforms: posix
    support: full
notes:
  - SELinux contexts and file attributes are not managed; new directories get the defaults of
    the system.
seealso:
  - module: ansible.builtin.file
'''

EXAMPLES = r'''
- name: Create the virtualenv's directories
  gaudi.vllm_lmcache.directories:
    directories:
      - path: /opt/vllm
        owner: root
        group: root
        mode: "0755"
      - path: /opt/vllm/venv/.stamps
        owner: root
        group: root
        mode: "0755"
      - path: /srv/cache
        owner: vllm
        group: vllm
        mode: "2770"
'''

RETURN = r'''
directories:
  description: The listed directories, absolute and normalized, parents first.
  returned: always
  type: list
  elements: str
  sample: ["/opt/vllm", "/srv/cache", "/opt/vllm/venv/.stamps"]
changed_directories:
  description: The listed directories that are created or whose owner, group or mode changes.
  returned: always
  type: list
  elements: str
  sample: ["/srv/cache"]
created_dirs:
  description: Every directory created, the missing parents included, parents first.
  returned: always
  type: list
  elements: str
  sample: ["/srv", "/srv/cache"]
diff:
  description:
    - "One entry per directory created (C(before) is C(state: absent)) and one per directory
      whose mode, owner or group changes (its headers end with C((attributes)))."
  returned: in diff mode
  type: list
  elements: dict
  contains:
    before_header:
      description: Path of the directory.
      type: str
    after_header:
      description: Path of the directory.
      type: str
    before:
      description: The state or the attributes that change, before.
      type: str
    after:
      description: The state or the attributes that change, after.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._directories import (
    DirectoryError,
    apply,
    changed_paths,
    check,
    created_paths,
    diff,
    is_changed,
    plan,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(
                type='list',
                elements='dict',
                required=True,
                options=dict(
                    path=dict(type='path', required=True),
                    owner=dict(type='str'),
                    group=dict(type='str'),
                    mode=dict(type='raw'),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    try:
        wanted = check(module.params['directories'], missing_ok=module.check_mode)
        todo = plan(wanted)
    except DirectoryError as exc:
        module.fail_json(msg='directories: %s' % to_native(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='directories: cannot read %s: %s' % (getattr(exc, 'filename', ''), to_native(exc)))

    result = dict(
        changed=is_changed(todo),
        directories=[want['path'] for want in wanted],
        changed_directories=changed_paths(todo),
        created_dirs=created_paths(todo),
    )
    if module._diff:
        result['diff'] = diff(wanted, todo)
    if result['changed'] and not module.check_mode:
        try:
            apply(wanted, todo)
        except (IOError, OSError) as exc:
            module.fail_json(
                msg='directories: changing %s failed: %s' % (getattr(exc, 'filename', ''), to_native(exc)), **result
            )
    module.exit_json(**result)


if __name__ == '__main__':
    main()
