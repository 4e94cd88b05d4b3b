# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of gaudi.vllm_lmcache.input_contract: the checks need nothing from the node,
so they run on the control node (like ansible.builtin.assert) instead of shipping the module
to every host. The module documents the arguments and runs the same code when called
directly."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils._input_contract import check

ARGUMENT_SPEC = dict(
    argument_spec=dict(type='dict', default={}),
    values=dict(type='dict', default={}),
    instances=dict(type='raw'),
    serving=dict(type='dict'),
    fail_on_violation=dict(type='bool', default=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validated = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validated.error_messages:
            raise AnsibleActionFail('; '.join(validated.error_messages))
        params = validated.validated_parameters
        violations = check(
            argument_spec=params['argument_spec'],
            values=params['values'],
            instances=params['instances'],
            serving=params['serving'],
        )
        result['changed'] = False
        result['violations'] = violations
        if violations and params['fail_on_violation']:
            result['failed'] = True
            result['msg'] = (
                violations[0]['msg']
                if len(violations) == 1
                else '%d input problems: %s' % (len(violations), ' | '.join(v['msg'] for v in violations))
            )
        # Unlike a module result, an action result carries no copy of the task's arguments, so
        # the values of no_log options appear nowhere (violations show them as (hidden)).
        return result
