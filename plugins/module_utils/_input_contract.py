# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input contract of the collection's roles: strict types and cross-field rules.

Pure functions over plain data, so they can be tested table by table. Every check returns a
list of violations, each a dict with ``var`` (the variable, or ``vllm_instances[<name>].key``),
``value`` (what was given, JSON-able), ``rule`` (what the value must be) and ``msg`` (one line:
``<var>=<value as JSON>: <rule>``). Nothing raises on bad input.

Why not only ``meta/argument_specs.yml``: Ansible's role argument validation converts before
it checks, so a list passes ``type: str`` (it becomes the string ``"['a', 'b']"``), and a
string passes ``type: list`` (it becomes a one-item list). These checks take the same spec and
refuse such values:

* ``str``/``path``: a string or a number (a YAML number such as ``1.22`` is a valid string
  value); not a list, a dict, a bool or null (unless the default is null).
* ``list``: a list (``elements`` checked per item); not a string.
* ``dict``: a mapping.
* ``bool``: a bool, or one of the strings ``true``/``false``/``yes``/``no`` (what
  ``-e name=false`` gives).
* ``int``: an int (not a bool), or a string of digits; ``float``: a number or a numeric string.
* ``raw``: anything.
* ``choices``: the value (as a string for ``str``) must be one of them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

HIDDEN = '(hidden)'
BOOL_STRINGS = ('true', 'false', 'yes', 'no')
KV_ROLES = ('kv_both', 'kv_producer', 'kv_consumer', 'none')
LMCACHE_MODES = ('cpu', 'shared')
INSTANCE_NAME_RE = re.compile(r'^[A-Za-z0-9_.-]+$')


def _json(value):
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def violation(var, value, rule, hidden=False):
    shown = HIDDEN if hidden else value
    return {'var': var, 'value': shown, 'rule': rule, 'msg': '%s=%s: %s' % (var, _json(shown), rule)}


def kind(value):
    """A short English name of the type of a value, for messages."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'a bool'
    if isinstance(value, int):
        return 'an integer'
    if isinstance(value, float):
        return 'a number'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, dict):
        return 'a dict'
    if isinstance(value, (list, tuple)):
        return 'a list'
    return type(value).__name__


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_problem(value, type_name, elements=None):
    """The rule a value breaks for an argument-spec type, or None when it fits."""
    type_name = type_name or 'str'
    if type_name == 'raw':
        return None
    if type_name in ('str', 'path'):
        if isinstance(value, str) or _is_number(value):
            return None
        return 'must be a string (type %s), got %s' % (type_name, kind(value))
    if type_name == 'list':
        if not isinstance(value, (list, tuple)):
            return 'must be a list%s, got %s' % (
                (' of %s' % _plural(elements)) if elements else '',
                kind(value),
            )
        return None
    if type_name == 'dict':
        if isinstance(value, dict):
            return None
        return 'must be a dict (mapping), got %s' % kind(value)
    if type_name == 'bool':
        if isinstance(value, bool):
            return None
        if isinstance(value, str) and value.strip().lower() in BOOL_STRINGS:
            return None
        return 'must be true or false, got %s' % kind(value)
    if type_name == 'int':
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, str) and re.match(r'^\s*-?[0-9]+\s*$', value):
            return None
        return 'must be an integer, got %s' % kind(value)
    if type_name == 'float':
        if _is_number(value):
            return None
        if isinstance(value, str):
            try:
                float(value)
                return None
            except ValueError:
                pass
        return 'must be a number, got %s' % kind(value)
    return None


def _plural(type_name):
    return {'str': 'strings', 'path': 'paths', 'dict': 'dicts', 'int': 'integers', 'bool': 'bools'}.get(
        type_name, type_name
    )


def _choices_problem(value, choices, type_name):
    if not choices:
        return None
    given = value
    if type_name in (None, 'str', 'path') and _is_number(value):
        given = str(value)
    if given in choices or (isinstance(given, str) and given in [str(c) for c in choices]):
        return None
    return 'must be one of %s' % ', '.join(str(c) for c in choices)


def check_option(name, value, option):
    """The violations of one value against one option of an argument spec."""
    option = option or {}
    hidden = bool(option.get('no_log'))
    type_name = option.get('type', 'str')
    if value is None and (option.get('default', 'absent') is None or type_name == 'raw'):
        return []
    problem = type_problem(value, type_name, option.get('elements'))
    if problem:
        return [violation(name, value, problem, hidden)]
    out = []
    if type_name == 'list':
        elements = option.get('elements')
        for index, item in enumerate(value):
            label = '%s[%d]' % (name, index)
            if elements:
                item_problem = type_problem(item, elements)
                if item_problem:
                    out.append(violation(label, item, item_problem, hidden))
                    continue
                if elements == 'dict' and option.get('options'):
                    out.extend(check_values(option['options'], item, prefix=label + '.'))
            choice = _choices_problem(item, option.get('choices'), elements)
            if choice:
                out.append(violation(label, item, choice, hidden))
        return out
    choice = _choices_problem(value, option.get('choices'), type_name)
    if choice:
        out.append(violation(name, value, choice, hidden))
    if type_name == 'dict' and option.get('options') and isinstance(value, dict):
        out.extend(check_values(option['options'], value, prefix=name + '.'))
    return out


def check_values(options, values, prefix=''):
    """Check every value whose name is an option of the spec; unknown names are left alone."""
    out = []
    for name in sorted(values or {}):
        if name in (options or {}):
            out.extend(check_option(prefix + name, values[name], options[name]))
    for name in sorted(options or {}):
        if options[name].get('required') and name not in (values or {}):
            out.append(violation(prefix + name, None, 'is required'))
    return out


def strings_in(value):
    """Every non-empty string inside a value (to mask the values of no_log options)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return [str(value)] if value is not None else []


def _as_bool(value, default=False):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOL_STRINGS:
        return value.strip().lower() in ('true', 'yes')
    if value is None:
        return default
    return bool(value)


def _as_float(value, default=0.0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _instance_label(entry, index):
    if isinstance(entry, dict) and isinstance(entry.get('name'), str) and entry.get('name'):
        return 'vllm_instances[%s]' % entry['name']
    return 'vllm_instances[%d]' % index


INSTANCE_FIELDS = {
    'name': {'type': 'str', 'required': True},
    'model': {'type': 'str', 'required': True},
    'port': {'type': 'int', 'required': True},
    'host': {'type': 'str'},
    'tensor_parallel_size': {'type': 'int'},
    'max_model_len': {'type': 'int'},
    'kv_role': {'type': 'str', 'choices': list(KV_ROLES)},
    'kv_connector_extra_config': {'type': 'dict'},
    'extra_args': {'type': 'list', 'elements': 'str'},
    'env': {'type': 'dict'},
    'lmcache_enabled': {'type': 'bool'},
    'lmcache_mode': {'type': 'str', 'choices': list(LMCACHE_MODES)},
    'lmcache_overrides': {'type': 'dict'},
}


def check_instances(instances):
    """Types of the fields of each vllm_instances entry, names and ports unique on the host."""
    if not isinstance(instances, (list, tuple)):
        return [violation('vllm_instances', instances, 'must be a list of dicts, got %s' % kind(instances))]
    out = []
    names = {}
    ports = {}
    for index, entry in enumerate(instances):
        label = _instance_label(entry, index)
        if not isinstance(entry, dict):
            out.append(violation('vllm_instances[%d]' % index, entry, 'must be a dict, got %s' % kind(entry)))
            continue
        for problem in check_values(INSTANCE_FIELDS, entry, prefix=label + '.'):
            out.append(problem)
        name = entry.get('name')
        if isinstance(name, str) and name and not INSTANCE_NAME_RE.match(name):
            out.append(violation(label + '.name', name, 'must match [A-Za-z0-9_.-]+ (it names vllm@<name>.service)'))
        port = entry.get('port')
        if type_problem(port, 'int') is None and port is not None:
            if not 0 < int(port) < 65536:
                out.append(violation(label + '.port', port, 'must be between 1 and 65535'))
            ports.setdefault(int(port), []).append(name if isinstance(name, str) else str(index))
        tp = entry.get('tensor_parallel_size')
        if tp is not None and type_problem(tp, 'int') is None and int(tp) < 1:
            out.append(violation(label + '.tensor_parallel_size', tp, 'must be at least 1'))
        mml = entry.get('max_model_len')
        if mml is not None and type_problem(mml, 'int') is None and int(mml) < 1:
            out.append(violation(label + '.max_model_len', mml, 'must be positive'))
        if isinstance(name, str) and name:
            names[name] = names.get(name, 0) + 1
    for name in sorted(n for n, count in names.items() if count > 1):
        out.append(
            violation(
                'vllm_instances',
                [i.get('name') for i in instances if isinstance(i, dict)],
                'the name %s is used by %d instances; each instance needs its own name (one vllm@<name>.service each)'
                % (name, names[name]),
            )
        )
    for port in sorted(p for p, users in ports.items() if len(users) > 1):
        out.append(
            violation(
                'vllm_instances',
                [i.get('port') for i in instances if isinstance(i, dict)],
                'port %d is used by %s; each instance on a host needs its own port' % (port, ', '.join(ports[port])),
            )
        )
    return out


def check_serving(serving):
    """Cross-field rules of the vllm and lmcache stages on one host.

    ``serving`` holds: instances (vllm_instances), lmcache_enabled (vllm_lmcache_enabled),
    default_kv_role, lmcache_mode, lmcache_max_local_cpu_size (GB), lmcache_shared_path,
    stages (the host's site_stages; None when the role runs outside site.yml),
    memtotal_mb (the node's memory; None when unknown) and max_cpu_cache_ratio (the part of
    the memory the LMCache CPU caches of all instances may take).
    """
    instances = serving.get('instances') or []
    if not isinstance(instances, (list, tuple)):
        return []
    lm_enabled = _as_bool(serving.get('lmcache_enabled'), True)
    default_role = serving.get('default_kv_role') or 'kv_both'
    default_mode = serving.get('lmcache_mode') or 'cpu'
    stages = serving.get('stages')
    if stages == '':
        # ansible-core before 2.19 renders a templated null (site_run_stages | default(none))
        # as an empty string: the role runs outside site.yml.
        stages = None
    out = []
    shared_users = []
    cpu_total = 0.0
    cpu_parts = []
    for index, entry in enumerate(instances):
        if not isinstance(entry, dict):
            continue
        label = _instance_label(entry, index)
        kv_role = entry.get('kv_role', default_role)
        mode = entry.get('lmcache_mode', default_mode)
        lm_on = lm_enabled and _as_bool(entry.get('lmcache_enabled'), lm_enabled) and kv_role != 'none'
        if not lm_on:
            if kv_role in ('kv_producer', 'kv_consumer'):
                out.append(
                    violation(
                        label + '.kv_role',
                        kv_role,
                        'needs LMCache on this instance (the host runs no lmcache stage, or lmcache_enabled is false): '
                        'a producer or consumer exchanges KV chunks through LMCache',
                    )
                )
            continue
        if mode == 'cpu' and kv_role in ('kv_producer', 'kv_consumer'):
            out.append(
                violation(
                    label + '.kv_role',
                    kv_role,
                    'needs lmcache_mode shared (this instance has lmcache_mode cpu, Mode A): a %s exchanges KV '
                    'chunks with other nodes through the shared tier, which Mode A does not have; use kv_both '
                    'on Mode A' % ('consumer' if kv_role == 'kv_consumer' else 'producer'),
                )
            )
        if mode == 'shared':
            shared_users.append(label)
        overrides = entry.get('lmcache_overrides') if isinstance(entry.get('lmcache_overrides'), dict) else {}
        size = _as_float(overrides.get('max_local_cpu_size', serving.get('lmcache_max_local_cpu_size')), 0.0)
        cpu_total += size
        cpu_parts.append('%s %g GB' % (label, size))
    if shared_users:
        if stages is not None and 'kv_storage' not in stages:
            out.append(
                violation(
                    'site_stages',
                    list(stages),
                    'must hold kv_storage: %s use%s lmcache_mode shared (Mode B), whose chunks live on the '
                    'storage the kv_storage stage mounts (set lmcache_mode cpu for Mode A instead)'
                    % (', '.join(shared_users), 's' if len(shared_users) == 1 else ''),
                )
            )
        path = serving.get('lmcache_shared_path')
        if not isinstance(path, str) or not path.startswith('/'):
            out.append(
                violation(
                    'lmcache_shared_path',
                    path,
                    'must be the absolute path of the shared cache directory: %s use%s lmcache_mode shared'
                    % (', '.join(shared_users), 's' if len(shared_users) == 1 else ''),
                )
            )
    memtotal = serving.get('memtotal_mb') or None
    ratio = _as_float(serving.get('max_cpu_cache_ratio'), 0.8)
    if memtotal and cpu_total > 0:
        limit_gb = _as_float(memtotal) * ratio / 1024.0
        if cpu_total > limit_gb:
            out.append(
                violation(
                    'lmcache_max_local_cpu_size',
                    serving.get('lmcache_max_local_cpu_size'),
                    'the LMCache CPU caches of this host take %g GB (%s) but the node has %.1f GiB of memory; '
                    'they may take at most %g%% of it (%.1f GB); lower lmcache_max_local_cpu_size or '
                    'lmcache_overrides.max_local_cpu_size'
                    % (cpu_total, ', '.join(cpu_parts), _as_float(memtotal) / 1024.0, ratio * 100, limit_gb),
                )
            )
    return out


def check(argument_spec=None, values=None, instances=None, serving=None):
    """Every violation: types of ``values`` against ``argument_spec``, then the instance and
    serving rules when given."""
    out = check_values(argument_spec or {}, values or {})
    if instances is not None:
        out.extend(check_instances(instances))
    if serving is not None:
        out.extend(check_serving(serving))
    return out
