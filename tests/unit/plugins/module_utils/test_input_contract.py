# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-driven tests of the input contract: strict types against argument specs, the fields
of vllm_instances entries and the cross-field rules of the serving stages."""

import os

import pytest
import yaml

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _input_contract as ic

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))

# (option spec, value, expected rule fragment or None when the value fits)
TYPE_CASES = [
    ({'type': 'str'}, 'a', None),
    ({'type': 'str'}, 1.22, None),
    ({'type': 'str'}, ['a', 'b'], 'must be a string (type str), got a list'),
    ({'type': 'str'}, {'a': 1}, 'got a dict'),
    ({'type': 'str'}, True, 'got a bool'),
    ({'type': 'str'}, None, 'got null'),
    ({'type': 'str', 'default': None}, None, None),
    ({'type': 'path'}, ['/a'], 'must be a string (type path), got a list'),
    ({}, ['x'], 'must be a string (type str)'),
    ({'type': 'list', 'elements': 'str'}, ['a'], None),
    ({'type': 'list', 'elements': 'str'}, 'a', 'must be a list of strings, got a string'),
    ({'type': 'list'}, {'a': 1}, 'must be a list, got a dict'),
    ({'type': 'list', 'elements': 'str'}, ['a', ['b']], 'must be a string (type str), got a list'),
    ({'type': 'list', 'elements': 'str', 'choices': ['x', 'y']}, ['x', 'z'], 'must be one of x, y'),
    ({'type': 'dict'}, {}, None),
    ({'type': 'dict'}, [], 'must be a dict (mapping), got a list'),
    ({'type': 'bool'}, True, None),
    ({'type': 'bool'}, 'false', None),
    ({'type': 'bool'}, 'maybe', 'must be true or false, got a string'),
    ({'type': 'bool'}, [True], 'must be true or false, got a list'),
    ({'type': 'int'}, 3, None),
    ({'type': 'int'}, '12', None),
    ({'type': 'int'}, True, 'must be an integer, got a bool'),
    ({'type': 'int'}, 'many', 'must be an integer, got a string'),
    ({'type': 'int'}, 1.5, 'must be an integer, got a number'),
    ({'type': 'float'}, 5, None),
    ({'type': 'float'}, '5.5', None),
    ({'type': 'float'}, 'big', 'must be a number'),
    ({'type': 'raw'}, ['anything'], None),
    ({'type': 'str', 'choices': ['plugin', 'fork']}, 'plugin', None),
    ({'type': 'str', 'choices': ['plugin', 'fork']}, 'pip', 'must be one of plugin, fork'),
    ({'type': 'str', 'choices': ['0', '1']}, 1, None),
    ({'type': 'list', 'elements': 'dict', 'options': {'n': {'type': 'int'}}}, [{'n': 'x'}], 'must be an integer'),
]


@pytest.mark.parametrize('option,value,rule', TYPE_CASES)
def test_types(option, value, rule):
    out = ic.check_option('v', value, option)
    if rule is None:
        assert out == []
    else:
        assert len(out) == 1, out
        assert rule in out[0]['rule'], out
        assert out[0]['msg'].startswith(out[0]['var'] + '=')


def test_message_names_variable_value_and_rule():
    (v,) = ic.check_values({'vllm_host': {'type': 'str'}}, {'vllm_host': ['a', 'b']})
    assert v['msg'] == 'vllm_host=["a", "b"]: must be a string (type str), got a list'


def test_no_log_value_hidden():
    (v,) = ic.check_values({'tok': {'type': 'str', 'no_log': True}}, {'tok': ['hf_secret']})
    assert 'hf_secret' not in v['msg'] and '(hidden)' in v['msg']


def test_unknown_names_ignored_and_required_reported():
    out = ic.check_values({'a': {'type': 'str', 'required': True}}, {'b': []})
    assert [v['var'] for v in out] == ['a']
    assert 'is required' in out[0]['rule']


# (vllm_instances, expected (var, rule fragment) list)
INSTANCE_CASES = [
    ([{'name': 'a', 'model': 'm', 'port': 8000}], []),
    ('a', [('vllm_instances', 'must be a list of dicts')]),
    (['a'], [('vllm_instances[0]', 'must be a dict')]),
    ([{'name': 'a', 'model': 'm'}], [('vllm_instances[a].port', 'is required')]),
    ([{'name': 'a', 'model': 'm', 'port': 70000}], [('vllm_instances[a].port', 'between 1 and 65535')]),
    ([{'name': 'a', 'model': 'm', 'port': 'x'}], [('vllm_instances[a].port', 'must be an integer')]),
    ([{'name': 'a b', 'model': 'm', 'port': 1}], [('vllm_instances[a b].name', 'must match')]),
    ([{'name': 'a', 'model': 'm', 'port': 1, 'host': ['h1']}], [('vllm_instances[a].host', 'must be a string')]),
    ([{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'both'}], [('vllm_instances[a].kv_role', 'must be one of')]),
    (
        [{'name': 'a', 'model': 'm', 'port': 1, 'extra_args': '--x'}],
        [('vllm_instances[a].extra_args', 'must be a list')],
    ),
    ([{'name': 'a', 'model': 'm', 'port': 1, 'env': []}], [('vllm_instances[a].env', 'must be a dict')]),
    (
        [{'name': 'a', 'model': 'm', 'port': 1, 'tensor_parallel_size': 0}],
        [('vllm_instances[a].tensor_parallel_size', 'at least 1')],
    ),
    (
        [{'name': 'a', 'model': 'm', 'port': 1}, {'name': 'a', 'model': 'm', 'port': 2}],
        [('vllm_instances', 'the name a is used by 2 instances')],
    ),
    (
        [{'name': 'a', 'model': 'm', 'port': 8000}, {'name': 'b', 'model': 'm', 'port': 8000}],
        [('vllm_instances', 'port 8000 is used by a, b')],
    ),
]


@pytest.mark.parametrize('instances,expected', INSTANCE_CASES)
def test_instances(instances, expected):
    out = ic.check_instances(instances)
    assert [(v['var'], True) for v in out] == [(var, True) for var, dummy in expected], out
    for v, (dummy, rule) in zip(out, expected):
        assert rule in v['rule'], v


def serving(**kw):
    base = {
        'instances': [{'name': 'a', 'model': 'm', 'port': 8000}],
        'lmcache_enabled': True,
        'default_kv_role': 'kv_both',
        'lmcache_mode': 'cpu',
        'lmcache_max_local_cpu_size': 5.0,
        'lmcache_shared_path': '/mnt/kv_storage/lmcache',
        'stages': None,
        'memtotal_mb': 65536,
        'max_cpu_cache_ratio': 0.8,
    }
    base.update(kw)
    return base


# (serving inputs, expected (var, rule fragment) list)
SERVING_CASES = [
    (serving(), []),
    (
        serving(instances=[{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'kv_consumer'}]),
        [('vllm_instances[a].kv_role', 'needs lmcache_mode shared')],
    ),
    (
        serving(instances=[{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'kv_producer'}]),
        [('vllm_instances[a].kv_role', 'a producer')],
    ),
    (serving(default_kv_role='kv_consumer'), [('vllm_instances[a].kv_role', 'Mode A')]),
    (serving(lmcache_mode='shared', default_kv_role='kv_consumer', stages=['kv_storage']), []),
    (
        serving(
            instances=[{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'kv_consumer', 'lmcache_mode': 'shared'}],
            stages=['vllm', 'kv_storage'],
        ),
        [],
    ),
    (serving(lmcache_enabled=False, default_kv_role='kv_consumer'), [('vllm_instances[a].kv_role', 'needs LMCache')]),
    (serving(lmcache_enabled=False), []),
    (
        serving(lmcache_mode='shared', stages=['preflight', 'vllm', 'lmcache']),
        [('site_stages', 'must hold kv_storage')],
    ),
    (serving(lmcache_mode='shared', stages=None), []),
    # ansible-core < 2.19 renders a templated null as '': outside site.yml as well
    (serving(lmcache_mode='shared', stages=''), []),
    (serving(lmcache_mode='shared', stages=[]), [('site_stages', 'must hold kv_storage')]),
    (serving(lmcache_mode='shared', lmcache_shared_path=''), [('lmcache_shared_path', 'must be the absolute path')]),
    (serving(lmcache_max_local_cpu_size=4096, memtotal_mb=23 * 1024), [('lmcache_max_local_cpu_size', 'take 4096 GB')]),
    (serving(lmcache_max_local_cpu_size=4096, memtotal_mb=None), []),
    (serving(lmcache_max_local_cpu_size=4096, memtotal_mb=''), []),
    (serving(lmcache_max_local_cpu_size=18, memtotal_mb=23 * 1024), []),
    (
        serving(
            instances=[
                {'name': 'a', 'model': 'm', 'port': 1},
                {'name': 'b', 'model': 'm', 'port': 2, 'lmcache_overrides': {'max_local_cpu_size': 15}},
            ],
            lmcache_max_local_cpu_size=5,
            memtotal_mb=23 * 1024,
        ),
        [('lmcache_max_local_cpu_size', 'take 20 GB')],
    ),
    (
        serving(
            instances=[{'name': 'a', 'model': 'm', 'port': 1, 'kv_role': 'none'}],
            lmcache_max_local_cpu_size=4096,
            memtotal_mb=1024,
        ),
        [],
    ),
]


@pytest.mark.parametrize('inputs,expected', SERVING_CASES)
def test_serving(inputs, expected):
    out = ic.check_serving(inputs)
    assert [v['var'] for v in out] == [var for var, dummy in expected], out
    for v, (dummy, rule) in zip(out, expected):
        assert rule in v['rule'], v


def role_options():
    for role in sorted(os.listdir(os.path.join(ROOT, 'roles'))):
        path = os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml')
        if os.path.exists(path):
            with open(path) as handle:
                specs = yaml.safe_load(handle)['argument_specs']
            for entry, spec in specs.items():
                yield role, entry, spec.get('options') or {}


@pytest.mark.parametrize('role,entry,options', list(role_options()), ids=lambda x: x if isinstance(x, str) else '')
def test_literal_spec_defaults_pass(role, entry, options):
    """Every literal default of every role's argument spec fits its own type (templated
    defaults are checked when they are rendered)."""
    values = {
        k: v['default']
        for k, v in options.items()
        if 'default' in v and not (isinstance(v['default'], str) and '{{' in v['default'])
    }
    assert ic.check_values(options, values) == []
