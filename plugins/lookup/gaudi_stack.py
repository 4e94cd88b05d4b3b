# -*- coding: utf-8 -*-
# Copyright: contributors to gaudi.vllm_lmcache
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a row of the collection's stack matrix (meta/gaudi_stack.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: gaudi_stack
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
version_added: 0.1.0
short_description: Read the versions of one Intel Gaudi serving stack from the collection's matrix
description:
  - Returns fields of one row of C(meta/gaudi_stack.yml), the matrix of Habana driver, Gaudi
    software build, PyTorch, vllm-gaudi, vLLM commit and LMCache releases that work together.
  - The matrix is read from the collection the plugin belongs to, so the lookup works from a
    clone and from an installed collection alike.
  - The role defaults of the collection derive their version pins from it, for example
    C(habana_driver_version) is
    C({{ lookup('gaudi.vllm_lmcache.gaudi_stack', 'habana_driver_version', stack=gaudi_stack) }}).
  - Fails naming the row id and the valid ids when O(stack) is not a row, and naming the field
    and the valid fields when a term is not a field.
options:
  _terms:
    description:
      - Field names of the row, for example V(habana_driver_version), V(gaudi_release),
        V(gaudi_build), V(pytorch), V(vllm_gaudi_ref), V(vllm_ref), V(lmcache_version),
        V(lmcache_versions), V(lmcache_hpu).
      - V(id) of the default row is the matrix's default when O(stack) is not given.
      - Without terms the whole row is returned as a dictionary.
    type: list
    elements: str
    required: false
  stack:
    description:
      - Row id. Empty or not given means the matrix's default row.
    type: str
    default: ''
  all_rows:
    description:
      - Return every row (a list of dictionaries) instead of fields of one row.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Driver version of the selected stack
  ansible.builtin.debug:
    msg: "{{ lookup('gaudi.vllm_lmcache.gaudi_stack', 'habana_driver_version', stack=gaudi_stack | default('')) }}"

- name: The default row id
  ansible.builtin.debug:
    msg: "{{ lookup('gaudi.vllm_lmcache.gaudi_stack', 'id') }}"

- name: LMCache releases accepted with a row (a list, so use query)
  ansible.builtin.debug:
    msg: "{{ query('gaudi.vllm_lmcache.gaudi_stack', 'lmcache_versions', stack='plugin-0.17.1-sw1.23.0') | flatten }}"

- name: Every row id
  ansible.builtin.debug:
    msg: "{{ query('gaudi.vllm_lmcache.gaudi_stack', all_rows=true) | map(attribute='id') | list }}"
'''

RETURN = r'''
_raw:
  description:
    - One value per term (a string, or a list for V(lmcache_versions) and V(sources)); the row
      as a dictionary without terms; every row with O(all_rows).
  type: list
  elements: raw
'''

import copy
import os

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None

# plugins/lookup/gaudi_stack.py -> collection root -> meta/gaudi_stack.yml
MATRIX_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'meta', 'gaudi_stack.yml'
)

_CACHE = {}


def load_matrix(path=MATRIX_PATH):
    """Return the parsed matrix ({'default': id, 'rows': [...]}); cached per file mtime."""
    if yaml is None:  # pragma: no cover
        raise AnsibleLookupError('gaudi_stack: PyYAML is required')
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise AnsibleLookupError('gaudi_stack: cannot read the stack matrix %s: %s' % (path, to_native(exc)))
    cached = _CACHE.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    with open(path) as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or not isinstance(data.get('rows'), list) or not data.get('default'):
        raise AnsibleLookupError('gaudi_stack: %s must hold "default" and a list "rows"' % path)
    _CACHE[path] = (mtime, data)
    return data


def find_row(matrix, stack=''):
    """The row whose id is stack (the default row when stack is empty)."""
    wanted = to_native(stack or matrix['default'])
    for row in matrix['rows']:
        if row.get('id') == wanted:
            return row
    raise AnsibleLookupError(
        'gaudi_stack=%s is not a row of the stack matrix (meta/gaudi_stack.yml); valid rows: %s'
        % (wanted, ', '.join(r.get('id', '?') for r in matrix['rows']))
    )


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        matrix = load_matrix()
        if self.get_option('all_rows'):
            return [copy.deepcopy(row) for row in matrix['rows']]
        row = find_row(matrix, self.get_option('stack') or '')
        if not terms:
            return [copy.deepcopy(row)]
        values = []
        for term in terms:
            name = to_native(term)
            if name not in row:
                raise AnsibleLookupError(
                    'gaudi_stack: %s is not a field of row %s; fields: %s' % (name, row['id'], ', '.join(sorted(row)))
                )
            values.append(copy.deepcopy(row[name]))
        return values
