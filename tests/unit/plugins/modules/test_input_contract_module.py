# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests of input_contract: one line per violation, nothing changed, check mode."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import input_contract

SPEC = {
    'vllm_host': {'type': 'str'},
    'vllm_hf_token': {'type': 'str', 'no_log': True},
    'vllm_service_enabled': {'type': 'bool'},
}


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            input_contract.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_good_values(capsys):
    code, result = run_module(
        capsys,
        {
            'argument_spec': SPEC,
            'values': {'vllm_host': '0.0.0.0', 'vllm_service_enabled': 'false'},
            '_ansible_check_mode': True,
        },
    )
    assert code == 0 and result['changed'] is False and result['violations'] == []


def test_one_violation(capsys):
    code, result = run_module(capsys, {'argument_spec': SPEC, 'values': {'vllm_host': ['a', 'b']}})
    assert code == 1 and result['failed']
    assert result['msg'] == 'vllm_host=["a", "b"]: must be a string (type str), got a list'


def test_several_violations_one_line_each(capsys):
    code, result = run_module(
        capsys,
        {
            'argument_spec': SPEC,
            'values': {'vllm_host': ['a'], 'vllm_hf_token': ['hf_secret_marker'], 'vllm_service_enabled': 'maybe'},
            'instances': [{'name': 'a', 'model': 'm', 'port': 1}, {'name': 'a', 'model': 'm', 'port': 2}],
        },
    )
    assert code == 1
    assert result['msg'].startswith('4 input problems: ')
    assert [v['var'] for v in result['violations']] == [
        'vllm_hf_token',
        'vllm_host',
        'vllm_service_enabled',
        'vllm_instances',
    ]
    assert 'hf_secret_marker' not in json.dumps(result)


def test_report_only(capsys):
    code, result = run_module(
        capsys,
        {
            'values': {},
            'serving': {'instances': [{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'kv_consumer'}]},
            'fail_on_violation': False,
        },
    )
    assert code == 0 and not result.get('failed')
    assert result['violations'][0]['var'] == 'vllm_instances[a].kv_role'
