#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
---
module: lmcache_hpu_patch
short_description: Detect LMCache's Intel Gaudi (HPU) support and apply or revert the HPU patch
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Finds the LMCache installed in a virtualenv without importing it (version from the
    C(lmcache-*.dist-info), files by path) and classifies it as C(native) (0.4.3 and later,
    HPU support built in), C(patchable) (a known pristine release shape, 0.3.6 to 0.4.2),
    C(patched) (this collection's patch is in place), or C(unsupported) (older than 0.3.6,
    or files that match no known shape, for example edited by hand).
  - With O(state=present) it patches LMCache's vLLM integration for Intel Gaudi. The device
    choice checks HPU before CUDA, so it stays right under C(PT_HPU_GPU_MIGRATION=1), and
    picks C(hpu:<rank % device_count>). The C(slot_mapping.cuda()) calls become
    device-neutral. The adapter calls C(htcore.mark_step()) where it waits for loads and
    saves. The device type goes into the connector's init and its startup log line. On
    CUDA hosts the behaviour is the same as upstream.
  - For every patched release it also installs a pure-PyTorch HPU KV-cache connector as
    C(lmcache/v1/gaudi_hpu_connector.py). The patched code creates that connector instead
    of the CUDA connector when the device is an HPU.
  - Writes are atomic, and each original file is backed up first (unless O(backup=false)).
    Every patched file is compiled with the target interpreter before anything is written;
    a failure leaves the install untouched.
  - With O(state=absent) it restores the original files byte for byte and removes the
    connector. The revert works with or without a backup, because the edits are reversible
    and checked against the pristine sha256 of the release.
  - C(unsupported) and C(missing) installs fail with a message naming the version, the file
    and what was expected; nothing is written.
options:
  python:
    description:
      - Interpreter of the virtualenv that holds LMCache. Its site-packages directories
        are searched for C(lmcache/), and it compiles the patched files.
      - Defaults to the Python running the module.
    type: path
  site_packages:
    description:
      - A directory that holds C(lmcache/) and its C(lmcache-*.dist-info). Overrides the
        search through O(python). O(python) is still used to compile when given.
    type: path
  state:
    description:
      - V(present) applies the patch where it is needed.
      - V(absent) restores the pristine LMCache files and removes the connector.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description:
      - Keep a copy of each original file next to it (suffix C(.hpu_patch.orig)) while the
        patch is in place. O(state=absent) removes the copies after restoring.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports what would change and writes nothing.
  diff_mode:
    support: full
    description: Shows a unified diff of each file that changes.
notes:
  - LMCache layerwise mode (C(use_layerwise)) is not supported on HPU by the patch; the
    patched code raises a clear error when it is enabled on an HPU.
  - The files of the installed wheel change, so C(pip check)-style RECORD hashes no longer
    match while the patch is in place. Revert before upgrading LMCache with pip.
seealso:
  - name: LMCache HPU support (upstream PR 2822, first released in 0.4.3)
    description: The native HPU connector that makes the patch unnecessary.
    link: https://github.com/LMCache/LMCache/pull/2822
'''

EXAMPLES = r'''
- name: Patch LMCache in the vLLM virtualenv for Intel Gaudi
  gaudi.vllm_lmcache.lmcache_hpu_patch:
    python: /opt/vllm/venv/bin/python
    state: present

- name: Only report what the install needs
  gaudi.vllm_lmcache.lmcache_hpu_patch:
    python: /opt/vllm/venv/bin/python
  check_mode: true
  register: lmcache_hpu

- name: Restore the pristine LMCache files
  gaudi.vllm_lmcache.lmcache_hpu_patch:
    site_packages: /opt/vllm/venv/lib/python3.10/site-packages
    python: /opt/vllm/venv/bin/python
    state: absent
'''

RETURN = r'''
lmcache_version:
  description: Version of the installed LMCache, from its dist-info.
  returned: always
  type: str
  sample: "0.3.9"
classification:
  description:
    - One of C(native), C(patchable), C(patched). After a successful run with
      O(state=present) it is C(patched) (or C(native)); after O(state=absent) it is
      C(patchable). In check mode it is the classification found before any change.
  returned: always
  type: str
  sample: patched
patch_needed:
  description: Whether the install needed the patch when the module started.
  returned: always
  type: bool
  sample: true
reason:
  description: Why the install was classified as it was.
  returned: always
  type: str
  sample: LMCache 0.3.9 is pristine (shape adapter_cuda) and needs the HPU patch
shape:
  description: The release shape the patch used. It is null for native installs.
  returned: always
  type: str
  sample: adapter_cuda
site_packages:
  description: The directory that holds C(lmcache/).
  returned: always
  type: str
  sample: /opt/vllm/venv/lib/python3.10/site-packages
files:
  description: The files the patch manages (the connector last).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path of the file.
      type: str
    original_sha256:
      description: sha256 of the pristine file of this release (null for the connector).
      type: str
    current_sha256:
      description: sha256 of the file now (null when absent).
      type: str
    backup:
      description: Path of the backup copy, or null.
      type: str
diff:
  description:
    - One entry per changed file, with C(before_header), C(after_header) and a
      C(unified) diff. C(before) and C(after) hold the full texts only in diff mode.
  returned: always
  type: list
  elements: dict
'''

import os
import pkgutil
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import lmcache_hpu_patch as _patch_utils
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils.lmcache_hpu_patch import (
    PatchError,
    resolve_site_packages,
    run,
)

# Never runs: the import makes AnsiballZ ship the connector source, which is read as data.
if False:  # pylint: disable=using-constant-test  # pragma: no cover
    from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hpu_kv_transfer  # noqa: F401 pylint: disable=unused-import

_CONNECTOR_PACKAGE = "ansible_collections.gaudi.vllm_lmcache.plugins.module_utils"


def _connector_source():
    """Bytes of the connector file shipped with the collection (AnsiballZ payload or tree)."""
    try:
        data = pkgutil.get_data(_CONNECTOR_PACKAGE, "hpu_kv_transfer.py")
    except (IOError, OSError, ImportError):
        data = None
    if data is None:
        path = os.path.join(os.path.dirname(os.path.abspath(_patch_utils.__file__)), "hpu_kv_transfer.py")
        with open(path, "rb") as f:
            data = f.read()
    return data


def main():
    module = AnsibleModule(
        argument_spec=dict(
            python=dict(type="path"),
            site_packages=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            backup=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    python = module.params["python"] or sys.executable
    try:
        site_packages, _searched = resolve_site_packages(python, module.params["site_packages"])
        source = _connector_source() if module.params["state"] == "present" else None
        result = run(
            site_packages,
            state=module.params["state"],
            backup=module.params["backup"],
            check_mode=module.check_mode,
            python=python,
            connector_source=source,
            want_diff=module._diff,
        )
    except PatchError as exc:
        module.fail_json(msg=to_native(exc), **exc.details)
    except (IOError, OSError) as exc:
        module.fail_json(msg="LMCache HPU patch failed: %s" % to_native(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
