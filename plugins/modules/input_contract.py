#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: input_contract
short_description: Check role inputs against their argument spec with strict types and cross-field rules
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Takes the C(options) of an entry point of a role's C(meta/argument_specs.yml) and the values
    of those variables, and fails with one line per violation, each naming the variable, the
    value (as JSON) and the rule it breaks.
  - Stricter than Ansible's role argument validation, which converts before it checks (a list
    passes C(type=str) as the string of the list, a string passes C(type=list) as a one-item
    list). Here a list is not a string, a string is not a list, and a bool is a bool (or one of
    the strings C(true), C(false), C(yes), C(no) that C(-e name=value) gives).
  - With O(instances), checks the fields of each C(vllm_instances) entry and that names and
    ports are unique on the host. With O(serving), checks the cross-field rules of the vllm and
    lmcache stages (kv_role against the cache mode, Mode B needs the storage stage and a path,
    the LMCache CPU caches fit in the node's memory).
  - Values of options marked C(no_log) are never shown.
  - Changes nothing; runs the same in check mode.
  - An action plugin of the same name runs the checks on the control node (they need nothing
    from the managed node), like M(ansible.builtin.assert).
options:
  argument_spec:
    description: The C(options) mapping of one entry point of a role's C(meta/argument_specs.yml).
    type: dict
    default: {}
  values:
    description:
      - Variable name to value. Names that are not options of O(argument_spec) are ignored;
        options without a value are not checked (their defaults are).
    type: dict
    default: {}
  instances:
    description: The C(vllm_instances) list of the host; omit to skip the instance checks.
    type: raw
  serving:
    description:
      - Inputs of the cross-field rules of the vllm and lmcache stages; omit to skip them.
      - Keys C(instances), C(lmcache_enabled), C(default_kv_role), C(lmcache_mode),
        C(lmcache_max_local_cpu_size), C(lmcache_shared_path), C(stages) (the host's stages,
        null outside site.yml), C(memtotal_mb) (null when unknown) and C(max_cpu_cache_ratio).
    type: dict
  fail_on_violation:
    description: Fail when there is a violation; with V(false) only return them.
    type: bool
    default: true
attributes:
  check_mode:
    description: Changes nothing; returns the same result in check mode.
    support: full
  diff_mode:
    description: Reports no diff; it changes nothing.
    support: none
'''

EXAMPLES = r'''
- name: Check the vllm inputs with strict types
  gaudi.vllm_lmcache.input_contract:
    argument_spec: "{{ (lookup('ansible.builtin.file', role_path ~ '/meta/argument_specs.yml') | from_yaml).argument_specs.main.options }}"
    values:
      vllm_host: "{{ vllm_host }}"
      vllm_instances: "{{ vllm_instances }}"
    instances: "{{ vllm_instances }}"
'''

RETURN = r'''
violations:
  description: One entry per broken rule.
  returned: always
  type: list
  elements: dict
  contains:
    var:
      description: The variable, or C(vllm_instances[<name>].<key>) for a field of an instance.
      type: str
    value:
      description: The value given (V((hidden)) for no_log options).
      type: raw
    rule:
      description: What the value must be.
      type: str
    msg:
      description: 'One line: the variable, C(=), the value as JSON, C(: ) and the rule.'
      type: str
  sample:
    - var: vllm_host
      value: [a, b]
      rule: must be a string (type str), got a list
      msg: 'vllm_host=["a", "b"]: must be a string (type str), got a list'
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._input_contract import check, strings_in


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argument_spec=dict(type='dict', default={}),
            values=dict(type='dict', default={}),
            instances=dict(type='raw'),
            serving=dict(type='dict'),
            fail_on_violation=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # Values of no_log options never come back, not even in the invocation arguments.
    for name, option in (params['argument_spec'] or {}).items():
        if isinstance(option, dict) and option.get('no_log') and name in (params['values'] or {}):
            for secret in strings_in(params['values'][name]):
                module.no_log_values.add(secret)
    violations = check(
        argument_spec=params['argument_spec'],
        values=params['values'],
        instances=params['instances'],
        serving=params['serving'],
    )
    if violations and params['fail_on_violation']:
        module.fail_json(
            msg='; '.join(v['msg'] for v in violations)
            if len(violations) == 1
            else '%d input problems: %s' % (len(violations), ' | '.join(v['msg'] for v in violations)),
            violations=violations,
        )
    module.exit_json(changed=False, violations=violations)


if __name__ == '__main__':
    main()
