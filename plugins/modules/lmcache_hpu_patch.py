#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: lmcache_hpu_patch
short_description: Detect LMCache's Intel Gaudi (HPU) support and apply or revert the HPU patch
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Finds the LMCache installed in a virtualenv without importing it and classifies it by its
    content, not by its version string. Each release shape is a list of exact-text edits whose
    anchors must each occur exactly the expected number of times; the first shape whose edits
    all fit is used, so post releases and rebuilds with the same code are handled.
  - C(native) means LMCache ships an HPU connector (C(lmcache/v1/gpu_connector/hpu_connector.py))
    that overrides C(initialize_kvcaches_ptr) for vLLM-Gaudi's (K, V) layers (0.4.5 and later).
    C(patchable) means a shape fits (0.3.7 to 0.4.4, post releases included). C(patched) means
    this collection's patch is in place. C(unsupported) means no shape fits (0.3.0 to 0.3.5, or
    files edited by hand; the reason names the shape, file and anchor that did not match) or a
    shape fits but the release cannot run on Gaudi (0.3.6 imports the CUDA extension
    C(lmcache.c_ops) unconditionally and has no fallback).
  - With O(state=present), for 0.3.7 to 0.4.2, it patches LMCache's vLLM integration for
    Intel Gaudi. The device choice checks HPU before CUDA and picks
    C(hpu:<rank % device_count>). The C(slot_mapping.cuda()) calls become device-neutral. The
    adapter calls C(htcore.mark_step()) where it waits for loads and saves. The patched code
    creates a pure-PyTorch HPU KV-cache connector, installed as
    C(lmcache/v1/gaudi_hpu_connector.py), instead of the CUDA connector on an HPU.
  - For 0.4.3 and 0.4.4 it adds to the native HPU connector the C(initialize_kvcaches_ptr)
    override of 0.4.5, which keeps vLLM-Gaudi's (K, V) C(TensorTuple) layers as they are (the
    inherited one calls C(.is_contiguous()) on each layer and fails).
  - For every patched release, each C(torch.cuda.is_available()) call in LMCache's code becomes
    a check that is false when an HPU is present. Under C(PT_HPU_GPU_MIGRATION=1),
    C(torch.cuda.is_available()) is true on Gaudi, and LMCache would otherwise import
    C(lmcache.c_ops) (needs C(libcudart.so.12) and C(libtorch_cuda.so)) or create CUDA streams.
    On CUDA hosts the behaviour is the same as upstream.
  - The sha256 of every file before the patch is recorded in C(lmcache/gaudi_hpu_patch.json)
    (and checked against the wheel's RECORD where it lists the file), so the revert is byte-exact
    for releases this collection has never seen.
  - Writes are atomic, and each original file is backed up first (unless O(backup=false)).
    Every patched file is compiled with the target interpreter before anything is written;
    a failure leaves the install untouched.
  - With O(state=absent) it restores the original files byte for byte and removes the
    connector and the state file.
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
  - The files of the installed wheel change, so RECORD hashes no longer match while the patch
    is in place. Revert before upgrading LMCache with pip.
seealso:
  - name: LMCache HPU connector (lmcache/v1/gpu_connector/hpu_connector.py)
    description: Native since 0.4.3; the (K, V) layer override of initialize_kvcaches_ptr since 0.4.5.
    link: https://github.com/LMCache/LMCache/blob/dev/lmcache/v1/gpu_connector/hpu_connector.py
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
  sample: "0.3.9.post2"
classification:
  description:
    - One of C(native), C(patchable), C(patched) (failures report C(unsupported) or
      C(missing)). After a successful run with
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
  sample: "LMCache 0.3.9.post2 fits shape adapter_cuda (torch.cuda hard-coded in the vLLM v1 adapter (LMCache 0.3.7 - 0.3.9.post2)) and needs the HPU patch"
shape:
  description:
    - The release shape that fits, one of C(adapter_cuda), C(adapter_platform_cls),
      C(adapter_platform_meta), C(adapter_platform_v3), C(manager_platform),
      C(utils_platform), C(hpu_connector_kv_pairs). It is null for native installs.
  returned: always
  type: str
  sample: adapter_cuda
state_file:
  description: Where the patch records the pristine sha256 of each file it edits.
  returned: always
  type: str
  sample: /opt/vllm/venv/lib/python3.10/site-packages/lmcache/gaudi_hpu_patch.json
site_packages:
  description: The directory that holds C(lmcache/).
  returned: always
  type: str
  sample: /opt/vllm/venv/lib/python3.10/site-packages
files:
  description:
    - The files the patch manages (the edited LMCache files, then this collection's connector
      for the shapes that use it).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path of the file.
      type: str
    original_sha256:
      description: sha256 of LMCache's own file before the patch (null for the connector).
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
