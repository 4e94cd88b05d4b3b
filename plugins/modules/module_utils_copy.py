#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: module_utils_copy
short_description: Install the source of the collection's own parsers as plain Python modules on a host
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Writes the source of selected C(plugins/module_utils) files of this collection
    (C(hl_smi.py), the hl-smi output parser, and C(lmcache_hpu_patch.py), the LMCache HPU
    patch classifier) into a directory on the managed host, so that a script run there (the
    C(validate) role's C(gaudi_validate) package) imports the same code the collection's
    modules use, instead of a second copy.
  - The source travels inside this module's own payload, so it works the same from a source
    checkout and from an installed collection tarball; no path into the collection is needed.
  - A file is rewritten only when its content differs (idempotent); check mode reports what
    would change; diff mode shows the changed lines.
options:
  dest:
    description:
      - Absolute directory the files are written to (created when missing).
    type: path
    required: true
  names:
    description:
      - Which module_utils to install, each written as C(<name>.py).
    type: list
    elements: str
    choices: [hl_smi, lmcache_hpu_patch]
    default: [hl_smi, lmcache_hpu_patch]
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    description: Reports which files would be written.
  diff_mode:
    support: full
    description: Shows the old and new content of each changed file.
  platform:
    support: full
    platforms: posix
    description: Any POSIX host with Python 3.
notes:
  - O(mode) defaults to C(0644) for the files; O(owner) and O(group) apply to the files.
'''

EXAMPLES = r'''
- name: Install the hl-smi parser and the patch classifier next to the validation package
  gaudi.vllm_lmcache.module_utils_copy:
    dest: /opt/gaudi-validate
    owner: root
    group: root
    mode: "0644"
'''

RETURN = r'''
files:
  description: One entry per installed module_utils file.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The module_utils name.
      type: str
      sample: hl_smi
    path:
      description: The file written on the host.
      type: str
      sample: /opt/gaudi-validate/hl_smi.py
    sha256:
      description: SHA-256 of the content.
      type: str
    changed:
      description: Whether the file was (or in check mode would be) written.
      type: bool
'''

import hashlib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

# Imported so that the payload of this module carries them (and their source).
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hl_smi, lmcache_hpu_patch

SOURCES = {'hl_smi': hl_smi, 'lmcache_hpu_patch': lmcache_hpu_patch}
HEADER = (
    b'# Installed by gaudi.vllm_lmcache.module_utils_copy from the collection\'s '
    b'plugins/module_utils/%s.py; do not edit.\n'
)


def module_source(module):
    """The source text of an imported module, from its loader (also inside a zip payload)."""
    loader = getattr(module, '__loader__', None)
    source = None
    if loader is not None and hasattr(loader, 'get_source'):
        source = loader.get_source(module.__name__)
    if source is None:
        with open(module.__file__, 'rb') as handle:
            source = handle.read()
    return to_bytes(source)


def content_for(name):
    return HEADER % to_bytes(name) + module_source(SOURCES[name])


def read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def write_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            names=dict(type='list', elements='str', choices=sorted(SOURCES), default=sorted(SOURCES)),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    dest = module.params['dest']
    if not os.path.isabs(dest):
        module.fail_json(msg='dest must be an absolute path, got %r' % dest)
    if module.params['mode'] is None:
        module.params['mode'] = '0644'
    files, diffs, changed = [], [], False
    if not os.path.isdir(dest):
        if os.path.exists(dest):
            module.fail_json(msg='dest %s exists and is not a directory' % dest)
        changed = True
        if not module.check_mode:
            os.makedirs(dest, 0o755)
    for name in module.params['names']:
        path = os.path.join(dest, name + '.py')
        data = content_for(name)
        old = read(path)
        file_changed = old != data
        if file_changed:
            diffs.append(
                {
                    'before_header': path,
                    'after_header': path,
                    'before': to_text(old or b'', errors='surrogate_or_replace'),
                    'after': to_text(data, errors='surrogate_or_replace'),
                }
            )
            if not module.check_mode:
                write_atomic(path, data)
        if not module.check_mode or os.path.exists(path):
            file_args = module.load_file_common_arguments(module.params, path=path)
            file_changed = module.set_fs_attributes_if_different(file_args, file_changed)
        changed = changed or file_changed
        files.append({'name': name, 'path': path, 'sha256': hashlib.sha256(data).hexdigest(), 'changed': file_changed})
    result = dict(changed=changed, files=files)
    if module._diff:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
