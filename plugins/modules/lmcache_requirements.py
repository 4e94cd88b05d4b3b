#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: lmcache_requirements
short_description: Requirement set of an LMCache wheel without its CUDA-only distributions
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Reads the C(Requires-Dist) entries of a wheel's C(*.dist-info/METADATA) and returns those
    whose distribution name matches none of O(exclude), so that the wheel can be installed with
    C(--no-deps) plus this set and no CUDA package lands on a Gaudi or CPU node.
  - LMCache's C(setup.py) always adds C(requirements/common.txt) (with C(cufile-python),
    C(nvtx) and an unpinned C(torch)) and C(requirements/cuda13_core.txt) (C(cupy-cuda13x),
    C(nixl-cu13)) to its requirements, also when built with C(NO_CUDA_EXT=1).
  - With O(python), also lists the distributions installed for that interpreter and returns
    those matching O(forbid) in RV(installed_forbidden).
  - Read-only; never changes the host. Runs normally in check mode.
options:
  wheel:
    description: Path of the wheel file on the managed node.
    type: path
    required: true
  exclude:
    description:
      - fnmatch patterns over PEP 503 normalised distribution names to leave out of the set.
      - The default leaves out the CUDA-only distributions (C(nvidia-*), C(cupy-cuda*),
        C(cuda-*), C(cufile-python), C(nvtx), C(nixl), C(nixl-cu*), C(pynvml), C(xformers),
        C(triton)) and the ones the serving stack owns (C(torch), C(torchvision),
        C(torchaudio)).
    type: list
    elements: str
  extras:
    description: Extras of the wheel to include (requirements restricted to other extras are skipped).
    type: list
    elements: str
    default: []
  python:
    description: Interpreter whose installed distributions are checked against O(forbid).
    type: path
  forbid:
    description:
      - fnmatch patterns of distributions that must not be installed for O(python).
      - Default is the CUDA-only list of O(exclude) (without the stack-owned names).
    type: list
    elements: str
attributes:
  check_mode:
    description: Can run in check mode and return the same data as a normal run.
    support: full
  diff_mode:
    description: Reports no diff; it changes nothing.
    support: none
seealso:
  - name: LMCache setup.py
    description: How LMCache builds its install_requires (requirements/common.txt plus the vendor file).
    link: https://github.com/LMCache/LMCache/blob/dev/setup.py
'''

EXAMPLES = r'''
- name: Requirements of the LMCache wheel built without CUDA
  gaudi.vllm_lmcache.lmcache_requirements:
    wheel: /var/cache/gaudi-vllm-lmcache/lmcache/0.4.5-sdist-nocuda/lmcache-0.4.5-py3-none-any.whl
  register: lmcache_reqs

- name: Install them (the wheel itself goes in with --no-deps)
  ansible.builtin.pip:
    name: "{{ lmcache_reqs.requirements }}"
    virtualenv: /opt/vllm/venv

- name: Check that no CUDA distribution is installed in the serving virtualenv
  gaudi.vllm_lmcache.lmcache_requirements:
    wheel: /var/cache/gaudi-vllm-lmcache/lmcache/0.4.5-sdist-nocuda/lmcache-0.4.5-py3-none-any.whl
    python: /opt/vllm/venv/bin/python
  register: lmcache_check
  failed_when: lmcache_check.installed_forbidden | length > 0
'''

RETURN = r'''
name:
  description: Distribution name from the wheel's METADATA.
  returned: success
  type: str
  sample: lmcache
version:
  description: Version from the wheel's METADATA.
  returned: success
  type: str
  sample: 0.4.5
pure:
  description: Whether the wheel is pure Python (C(Root-Is-Purelib) and no compiled extension).
  returned: success
  type: bool
  sample: true
requirements:
  description: The requirements kept, as written in METADATA (markers included).
  returned: success
  type: list
  elements: str
  sample: ["aiofile", "numpy<=2.2.6", "transformers>=5.4"]
excluded:
  description: The requirements left out because they match O(exclude).
  returned: success
  type: list
  elements: str
  sample: ["cufile-python", "nvtx", "torch", "cupy-cuda13x", "nixl-cu13; python_version < \"3.13\""]
skipped_extras:
  description: Requirements that only apply to extras not asked for.
  returned: success
  type: list
  elements: str
  sample: []
installed_forbidden:
  description: Installed distributions of O(python) that match O(forbid) (empty without O(python)).
  returned: success
  type: list
  elements: str
  sample: []
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _lmcache_requirements as reqs

_LIST_SCRIPT = (
    'import json\n'
    'from importlib import metadata\n'
    'print(json.dumps(sorted({(d.metadata["Name"] or "") for d in metadata.distributions()})))\n'
)


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            wheel=dict(type='path', required=True),
            exclude=dict(type='list', elements='str'),
            extras=dict(type='list', elements='str', default=[]),
            python=dict(type='path'),
            forbid=dict(type='list', elements='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    exclude = reqs.DEFAULT_EXCLUDE if p['exclude'] is None else tuple(p['exclude'])
    forbid = reqs.CUDA_PATTERNS if p['forbid'] is None else tuple(p['forbid'])
    try:
        name, version, requires = reqs.parse_metadata(reqs.wheel_metadata(p['wheel']))
        kept, excluded, skipped = reqs.split_requirements(requires, exclude, p['extras'])
        pure = reqs.wheel_is_pure(p['wheel'])
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg='wheel=%s: cannot read its METADATA: %s' % (p['wheel'], to_native(exc)))
    installed_forbidden = []
    if p['python']:
        rc, out, err = module.run_command([p['python'], '-c', _LIST_SCRIPT])
        if rc != 0:
            module.fail_json(msg='python=%s: cannot list its distributions (rc %d): %s' % (p['python'], rc, err))
        try:
            installed = json.loads(out)
        except ValueError:
            module.fail_json(msg='python=%s: unexpected output listing distributions: %s' % (p['python'], out))
        installed_forbidden = reqs.forbidden_distributions(installed, forbid)
    module.exit_json(
        changed=False,
        name=name,
        version=version,
        pure=pure,
        requirements=kept,
        excluded=excluded,
        skipped_extras=skipped,
        installed_forbidden=installed_forbidden,
    )


def main():
    run_module()


if __name__ == '__main__':
    main()
