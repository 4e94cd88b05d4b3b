# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input contract, as one table: each bad input is refused by site.yml's preflight play,
before any stage changes anything, with a message that names the variable.

One ``ansible-playbook site.yml --check`` run holds every case: one inventory host per case (all
of them the controller, through the local connection), each with the good base values of its
group plus the case's bad value, and for Gaudi nodes its own fake sysfs tree, Secure Boot EFI
variable and mokutil. The preflight play checks every host before it stops the run, so one run
answers for the whole table. The JSON callback tells, per host, which task failed and why.

For every case the test asserts that the host failed, that each expected fragment is in its
failure message, that the failure came from the preflight play (no later play started), and
that nothing changed. Cases without fragments are good inputs that must pass the contract.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.collections')
SB_GUID = 'SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'
PREFLIGHT_PLAY = 'Preflight checks'


def instances(**override):
    """One good instance, with some fields replaced (or removed when the value is None)."""
    entry = {'name': 'alpha', 'model': 'org/model-a', 'port': 8000}
    entry.update(override)
    return [{k: v for k, v in entry.items() if v is not None}]


TWO = [{'name': 'alpha', 'model': 'org/model-a', 'port': 8000}, {'name': 'beta', 'model': 'org/model-a', 'port': 8001}]
MODE_B = {'lmcache_mode': 'shared'}

# Good values of every host; the groups add theirs.
BASE = {
    'preflight_min_free_disk_gb': 0,
    'kv_storage_type': 'nfs',
    'kv_storage_nfs_server': '192.0.2.100',
    'kv_storage_nfs_export': '/kvcache',
    'vllm_instances': instances(),
    # Each case is its own cache domain, so Mode B cases do not disagree with each other.
    'preflight_cache_domain': '{{ inventory_hostname }}',
}
# Stages of a case unless it sets site_stages: the good cases run every stage with inputs
# (without the preflight role's node checks, which have their own cases); the other cases
# only the stages their input belongs to, by name prefix, to keep the run short.
STAGES = {
    'prefill_nodes': ['kv_storage', 'vllm', 'lmcache', 'validate'],
    'gaudi_nodes': ['habana_driver', 'kv_storage', 'vllm', 'lmcache', 'hpu_patch', 'validate'],
}
STAGES_BY_PREFIX = {
    'driver_': ['habana_driver'],
    'storage_': ['kv_storage'],
    'hpu_patch_': ['vllm', 'lmcache', 'hpu_patch'],
    'validate_': ['validate'],
    'good_': None,
}
SERVING_STAGES = ['vllm', 'lmcache']


def stages_of(name, group):
    for prefix, stages in STAGES_BY_PREFIX.items():
        if name.startswith(prefix):
            return list(stages or STAGES[group])
    return list(SERVING_STAGES)


# name: (group, extra vars, fixture options (Gaudi nodes), expected fragments of the message;
#        [] for a good input)
CASES = {
    # Good inputs: they must pass every check.
    'good_prefill': ('prefill_nodes', {}, {}, []),
    'good_gaudi': ('gaudi_nodes', {}, {}, []),
    'good_mode_b': ('prefill_nodes', MODE_B, {}, []),
    'good_mode_b_consumer': ('prefill_nodes', dict(MODE_B, vllm_default_kv_role='kv_consumer'), {}, []),
    'good_two_instances': ('prefill_nodes', {'vllm_instances': TWO}, {}, []),
    'good_bool_from_extra_vars': ('prefill_nodes', {'vllm_service_enabled': 'false'}, {}, []),
    'good_preflight_stage': ('prefill_nodes', {'site_stages': ['preflight', 'vllm', 'lmcache']}, {}, []),
    # Stages
    'site_stages_string': (
        'prefill_nodes',
        {'site_stages': 'vllm'},
        {},
        ['site_stages="vllm"', 'a list of stage names'],
    ),
    'site_stages_unknown': (
        'prefill_nodes',
        {'site_stages': ['serving']},
        {},
        ['site_stages=', 'unknown stages serving'],
    ),
    'site_stages_lmcache_without_vllm': (
        'prefill_nodes',
        {'site_stages': ['lmcache']},
        {},
        ['site_stages=', 'add vllm'],
    ),
    # preflight
    'preflight_relative_disk_path': (
        'prefill_nodes',
        {'site_stages': ['preflight'], 'preflight_disk_path': 'opt'},
        {},
        ['preflight_disk_path="opt": must be an absolute path'],
    ),
    'preflight_negative_disk': (
        'prefill_nodes',
        {'site_stages': ['preflight'], 'preflight_min_free_disk_gb': -1},
        {},
        ['preflight_min_free_disk_gb=-1: must not be negative'],
    ),
    'preflight_disk_type': (
        'prefill_nodes',
        {'site_stages': ['preflight'], 'preflight_min_free_disk_gb': [1]},
        {},
        # The preflight role's own argument validation answers first.
        ['preflight_min_free_disk_gb', 'list'],
    ),
    # habana_driver (the table of the former habana_driver input test)
    'driver_version_no_build': (
        'gaudi_nodes',
        {'habana_driver_version': '1.22.0'},
        {},
        ['habana_driver_version', '1.22.0'],
    ),
    'driver_version_prefix': ('gaudi_nodes', {'habana_driver_version': 'v1.22.0-740'}, {}, ['habana_driver_version']),
    'driver_version_list': ('gaudi_nodes', {'habana_driver_version': ['1.22.0-740']}, {}, ['habana_driver_version']),
    'driver_count_mismatch': (
        'gaudi_nodes',
        {'habana_driver_expected_device_count': 3},
        {},
        ['habana_driver_expected_device_count', '2 Gaudi device(s)'],
    ),
    'driver_unsupported_os': (
        'gaudi_nodes',
        {'habana_driver_supported_distributions': ['Ubuntu 24.04']},
        {},
        ['habana_driver_supported_distributions'],
    ),
    'driver_no_devices': ('gaudi_nodes', {}, {'gaudi': 0}, ['habana_driver_require_devices']),
    'driver_no_devices_allowed': ('gaudi_nodes', {'habana_driver_require_devices': False}, {'gaudi': 0}, []),
    'driver_secure_boot_efivar': (
        'gaudi_nodes',
        {},
        {'secure_boot': True},
        ['Secure Boot is enabled', 'habana_driver_allow_secure_boot'],
    ),
    'driver_secure_boot_mokutil': (
        'gaudi_nodes',
        {},
        {'secure_boot': None, 'mokutil': 'SecureBoot enabled'},
        ['habana_driver_allow_secure_boot'],
    ),
    'driver_secure_boot_mokutil_off': ('gaudi_nodes', {}, {'secure_boot': None, 'mokutil': 'SecureBoot disabled'}, []),
    'driver_secure_boot_allowed': ('gaudi_nodes', {'habana_driver_allow_secure_boot': True}, {'secure_boot': True}, []),
    'driver_wrong_type_bool': (
        'gaudi_nodes',
        {'habana_driver_load_modules': 'maybe'},
        {},
        ['habana_driver_load_modules="maybe": must be true or false'],
    ),
    'driver_wrong_type_int': (
        'gaudi_nodes',
        {'habana_driver_expected_device_count': 'many'},
        {},
        ['habana_driver_expected_device_count="many": must be an integer'],
    ),
    'driver_wrong_choice': (
        'gaudi_nodes',
        {'habana_driver_container_runtime': 'podman'},
        {},
        ['habana_driver_container_runtime="podman": must be one of'],
    ),
    'driver_relative_sysfs_root': (
        'gaudi_nodes',
        {'habana_driver_sysfs_root': 'relative/sys'},
        {},
        ['habana_driver_sysfs_root must be an absolute path'],
    ),
    'driver_gaudi_release_apart': (
        'gaudi_nodes',
        {'vllm_gaudi_release': '1.21.0', 'site_stages': ['habana_driver', 'vllm', 'lmcache']},
        {},
        ['habana_driver_version=', 'vllm_gaudi_release=1.21.0', 'gaudi_stack_allow_driver_mismatch'],
    ),
    # kv_storage
    'storage_model_names_string': (
        'prefill_nodes',
        {'kv_storage_model_names': 'llama8b'},
        {},
        ['kv_storage_model_names="llama8b": must be a list of strings, got a string'],
    ),
    'storage_model_name_slash_start': (
        'prefill_nodes',
        {'kv_storage_model_names': ['.hidden']},
        {},
        ['kv_storage_model_names=[".hidden"]: may only use letters'],
    ),
    'storage_relative_mount': (
        'prefill_nodes',
        {'kv_storage_mount_path': 'mnt/kv'},
        {},
        ['kv_storage_mount_path', 'mnt/kv'],
    ),
    'storage_no_server': ('prefill_nodes', {'kv_storage_nfs_server': ''}, {}, ['kv_storage_nfs_server']),
    'storage_nconnect': (
        'prefill_nodes',
        {'kv_storage_nconnect': 99},
        {},
        ['kv_storage_nconnect must be between 1 and 16'],
    ),
    'storage_rsize_zero': (
        'prefill_nodes',
        {'kv_storage_rsize': 0},
        {},
        ['kv_storage_rsize=0: must be a positive integer'],
    ),
    'storage_type_choice': (
        'prefill_nodes',
        {'kv_storage_type': 'ceph'},
        {},
        ['kv_storage_type="ceph": must be one of'],
    ),
    # vllm
    'vllm_host_list': (
        'prefill_nodes',
        {'vllm_host': ['0.0.0.0', '::']},
        {},
        ['vllm_host=["0.0.0.0", "::"]: must be a string'],
    ),
    'vllm_instance_host_list': (
        'prefill_nodes',
        {'vllm_instances': instances(host=['a', 'b'])},
        {},
        ['vllm_instances[alpha].host=["a", "b"]: must be a string'],
    ),
    'vllm_instances_string': (
        'prefill_nodes',
        {'vllm_instances': 'alpha'},
        {},
        ['vllm_instances="alpha": must be a list'],
    ),
    'vllm_duplicate_names': (
        'prefill_nodes',
        {'vllm_instances': [dict(TWO[0]), dict(TWO[1], name='alpha')]},
        {},
        ['vllm_instances=["alpha", "alpha"]: the name alpha is used by 2 instances'],
    ),
    'vllm_duplicate_ports': (
        'prefill_nodes',
        {'vllm_instances': [dict(TWO[0]), dict(TWO[1], port=8000)]},
        {},
        ['vllm_instances=[8000, 8000]: port 8000 is used by alpha, beta'],
    ),
    'vllm_port_string': (
        'prefill_nodes',
        {'vllm_instances': instances(port='eighty')},
        {},
        ['vllm_instances[alpha].port="eighty": must be an integer'],
    ),
    'vllm_port_range': (
        'prefill_nodes',
        {'vllm_instances': instances(port=70000)},
        {},
        ['vllm_instances[alpha].port=70000'],
    ),
    'vllm_no_model': (
        'prefill_nodes',
        {'vllm_instances': instances(model=None)},
        {},
        ['vllm_instances[alpha].model', 'is required'],
    ),
    'vllm_bad_name': (
        'prefill_nodes',
        {'vllm_instances': instances(name='a b')},
        {},
        ['vllm_instances[a b].name="a b": must match'],
    ),
    'vllm_bad_kv_role': (
        'prefill_nodes',
        {'vllm_instances': instances(kv_role='kv_sideways')},
        {},
        ['vllm_instances[alpha].kv_role="kv_sideways": must be one of'],
    ),
    'vllm_extra_args_string': (
        'prefill_nodes',
        {'vllm_instances': instances(extra_args='--enforce-eager')},
        {},
        ['vllm_instances[alpha].extra_args="--enforce-eager": must be a list'],
    ),
    'vllm_extra_args_space': (
        'prefill_nodes',
        {'vllm_instances': instances(extra_args=['--max-num-seqs 8'])},
        {},
        ['vllm_instances[alpha]: extra_args=', 'must not contain whitespace'],
    ),
    'vllm_relative_venv': (
        'prefill_nodes',
        {'vllm_venv': 'opt/vllm/venv'},
        {},
        ['vllm_venv="opt/vllm/venv": must be an absolute path'],
    ),
    'vllm_health_timeout_zero': (
        'prefill_nodes',
        {'vllm_health_timeout': 0},
        {},
        ['vllm_health_timeout=0: must be a positive'],
    ),
    'vllm_service_enabled_maybe': (
        'prefill_nodes',
        {'vllm_service_enabled': 'maybe'},
        {},
        ['vllm_service_enabled="maybe": must be true or false'],
    ),
    'vllm_env_list': ('prefill_nodes', {'vllm_env': ['A=1']}, {}, ['vllm_env=["A=1"]: must be a dict']),
    'vllm_install_method_choice': (
        'prefill_nodes',
        {'vllm_install_method': 'pip'},
        {},
        ['vllm_install_method="pip": must be one of'],
    ),
    'vllm_incompatible_release': ('gaudi_nodes', {'vllm_gaudi_release': '1.23.0'}, {}, ['vllm_gaudi_release=1.23.0']),
    'vllm_hashseed_override': (
        'prefill_nodes',
        dict(MODE_B, vllm_env={'PYTHONHASHSEED': '7'}, site_stages=['kv_storage', 'vllm', 'lmcache']),
        {},
        ['vllm_env sets PYTHONHASHSEED=7 but the role sets PYTHONHASHSEED=0'],
    ),
    'vllm_chunk_size_override': (
        'prefill_nodes',
        {'vllm_instances': instances(env={'LMCACHE_CHUNK_SIZE': '512'})},
        {},
        ['vllm_instances[alpha].env sets LMCACHE_CHUNK_SIZE=512 but the role sets LMCACHE_CHUNK_SIZE=256'],
    ),
    # Cross-field rules of the serving stages
    'consumer_on_mode_a': (
        'prefill_nodes',
        {'vllm_instances': instances(kv_role='kv_consumer')},
        {},
        ['vllm_instances[alpha].kv_role="kv_consumer": needs lmcache_mode shared'],
    ),
    'producer_on_mode_a': (
        'prefill_nodes',
        {'vllm_default_kv_role': 'kv_producer'},
        {},
        ['vllm_instances[alpha].kv_role="kv_producer": needs lmcache_mode shared'],
    ),
    'consumer_without_lmcache': (
        'prefill_nodes',
        {'site_stages': ['kv_storage', 'vllm'], 'vllm_default_kv_role': 'kv_consumer'},
        {},
        ['vllm_instances[alpha].kv_role="kv_consumer": needs LMCache'],
    ),
    'mode_b_without_storage_stage': (
        'prefill_nodes',
        dict(MODE_B, site_stages=['vllm', 'lmcache', 'validate']),
        {},
        ['site_stages=["vllm", "lmcache", "validate"]: must hold kv_storage', 'lmcache_mode shared'],
    ),
    'mode_b_without_path': (
        'prefill_nodes',
        dict(MODE_B, lmcache_shared_path='', site_stages=['kv_storage', 'vllm', 'lmcache']),
        {},
        ['lmcache_shared_path="": must be an absolute path'],
    ),
    'cpu_cache_over_memory': (
        'prefill_nodes',
        {'lmcache_max_local_cpu_size': 4096},
        {},
        ['lmcache_max_local_cpu_size=4096: the LMCache CPU caches of this host take 4096 GB', 'GiB of memory'],
    ),
    'cpu_cache_over_memory_per_instance': (
        'prefill_nodes',
        {'vllm_instances': [dict(TWO[0]), dict(TWO[1], lmcache_overrides={'max_local_cpu_size': 8192})]},
        {},
        ['lmcache_max_local_cpu_size=', 'vllm_instances[beta] 8192 GB'],
    ),
    # lmcache
    'lmcache_unknown_mode': ('prefill_nodes', {'lmcache_mode': 'gpu'}, {}, ['lmcache_mode', 'gpu']),
    'lmcache_unknown_instance_mode': (
        'prefill_nodes',
        {'vllm_instances': instances(lmcache_mode='gpu')},
        {},
        ['vllm_instances[alpha].lmcache_mode="gpu": must be one of cpu, shared'],
    ),
    'lmcache_negative_cpu_cache': (
        'prefill_nodes',
        {'lmcache_max_local_cpu_size': -1.0},
        {},
        ['lmcache_max_local_cpu_size=-1.0: must not be negative'],
    ),
    'lmcache_negative_disk_cache': (
        'prefill_nodes',
        {'lmcache_max_local_disk_size': -5},
        {},
        ['lmcache_max_local_disk_size=-5: must not be negative'],
    ),
    'lmcache_chunk_size_zero': (
        'prefill_nodes',
        {'lmcache_chunk_size': 0},
        {},
        ['lmcache_chunk_size=0: must be a positive'],
    ),
    'lmcache_chunk_size_list': ('prefill_nodes', {'lmcache_chunk_size': [256]}, {}, ['lmcache_chunk_size']),
    'lmcache_relative_shared_path': (
        'prefill_nodes',
        {'lmcache_shared_path': 'kv_storage/lmcache'},
        {},
        ['lmcache_shared_path="kv_storage/lmcache": must be an absolute path'],
    ),
    'lmcache_incompatible_version': ('prefill_nodes', {'lmcache_version': '0.3.9'}, {}, ['lmcache_version=0.3.9']),
    'lmcache_unknown_key': (
        'prefill_nodes',
        {'lmcache_extra_keys': {'max_local_gpu_size': 1}},
        {},
        ['max_local_gpu_size'],
    ),
    'lmcache_overrides_chunk_size': (
        'prefill_nodes',
        {'vllm_instances': instances(lmcache_overrides={'chunk_size': 0})},
        {},
        ['vllm_instances[alpha]', 'lmcache_overrides.chunk_size=0 must be positive'],
    ),
    # hpu_patch
    'hpu_patch_python_list': (
        'gaudi_nodes',
        {'hpu_patch_python': ['/opt/vllm/venv/bin/python']},
        {},
        ['hpu_patch_python=["/opt/vllm/venv/bin/python"]: must be a string'],
    ),
    'hpu_patch_python_relative': (
        'gaudi_nodes',
        {'hpu_patch_python': 'venv/bin/python'},
        {},
        ['hpu_patch_python="venv/bin/python": must be empty or an absolute path'],
    ),
    'hpu_patch_state_choice': (
        'gaudi_nodes',
        {'hpu_patch_state': 'on'},
        {},
        ['hpu_patch_state="on": must be one of present, absent'],
    ),
    # validate
    'validate_timeout_zero': (
        'prefill_nodes',
        {'validate_timeout': 0},
        {},
        ['validate_timeout=0: must be a positive number of seconds'],
    ),
    'validate_tiers_unknown': (
        'prefill_nodes',
        {'validate_tiers': ['gpu']},
        {},
        ['validate_tiers[0]="gpu": must be one of devices'],
    ),
    'validate_tiers_string': (
        'prefill_nodes',
        {'validate_tiers': 'storage'},
        {},
        ['validate_tiers="storage": must be a list'],
    ),
    'validate_endpoint_scheme': (
        'prefill_nodes',
        {'validate_endpoint': 'localhost:8000'},
        {},
        ['validate_endpoint="localhost:8000": must be empty or an http'],
    ),
    'validate_relative_script_dir': (
        'prefill_nodes',
        {'validate_script_dir': 'gaudi-validate'},
        {},
        ['validate_script_dir="gaudi-validate": must be an absolute path'],
    ),
}


def make_sysfs(base, gaudi=2):
    devices = os.path.join(base, 'sys', 'bus', 'pci', 'devices')
    os.makedirs(devices)
    entries = [('0000:%02x:00.0' % (0x19 + i), '1DA3:1060') for i in range(gaudi)]
    entries.append(('0000:00:1f.0', '8086:1593'))
    for bdf, pci_id in entries:
        os.makedirs(os.path.join(devices, bdf))
        with open(os.path.join(devices, bdf, 'uevent'), 'w') as handle:
            handle.write('PCI_ID=%s\nPCI_SLOT_NAME=%s\n' % (pci_id, bdf))
    return os.path.join(base, 'sys')


def make_efivar(base, enabled):
    path = os.path.join(base, SB_GUID)
    with open(path, 'wb') as handle:
        handle.write(b'\x06\x00\x00\x00' + (b'\x01' if enabled else b'\x00'))
    return path


def make_mokutil(base, text):
    path = os.path.join(base, 'mokutil')
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\necho "%s"\n' % text)
    os.chmod(path, 0o755)
    return path


def host_vars(name, base):
    group, extra, fixture, dummy = CASES[name]
    hvars = dict(BASE)
    hvars['site_stages'] = stages_of(name, group)
    if group == 'gaudi_nodes':
        hbase = os.path.join(base, name)
        os.makedirs(hbase)
        hvars.update(
            {
                'habana_driver_sysfs_root': make_sysfs(hbase, fixture.get('gaudi', 2)),
                'habana_driver_secure_boot_efivar_path': os.path.join(hbase, 'absent-efivar'),
                'habana_driver_mokutil_path': os.path.join(hbase, 'absent-mokutil'),
                # accept the controller's own distribution, so only the cases under test fail
                'habana_driver_supported_distributions': [
                    "{{ ansible_facts['distribution'] }} {{ ansible_facts['distribution_version'] }}"
                ],
            }
        )
        secure_boot = fixture.get('secure_boot', False)
        if secure_boot is not None:
            hvars['habana_driver_secure_boot_efivar_path'] = make_efivar(hbase, secure_boot)
        if 'mokutil' in fixture:
            hvars['habana_driver_mokutil_path'] = make_mokutil(hbase, fixture['mokutil'])
    hvars.update(extra)
    return group, hvars


def failure_text(result):
    """Every message of a failed result, loop items included."""
    parts = [str(result.get('msg', ''))]
    for item in result.get('results') or []:
        if item.get('failed'):
            parts.append(str(item.get('msg', '')))
    return ' '.join(parts)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    bindir = os.path.dirname(sys.executable)
    if not shutil.which('ansible-playbook', path=bindir + os.pathsep + os.environ.get('PATH', '')):
        pytest.skip('ansible-playbook is not available')
    base = str(tmp_path_factory.mktemp('bad_inputs'))
    groups = {'gaudi_nodes': {'hosts': {}}, 'prefill_nodes': {'hosts': {}}}
    for name in CASES:
        group, hvars = host_vars(name, base)
        groups[group]['hosts'][name] = hvars
    inventory = os.path.join(base, 'inventory.json')
    with open(inventory, 'w') as handle:
        json.dump(
            {
                'all': {
                    'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
                    'children': groups,
                }
            },
            handle,
        )
    env = dict(os.environ)
    env.update(
        {
            'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
            'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
            'ANSIBLE_FORKS': '16',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_LOCAL_TEMP': os.path.join(base, 'tmp'),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': '0',
        }
    )
    env.pop('ANSIBLE_PYTHON_INTERPRETER', None)
    proc = subprocess.run(
        [
            os.path.join(bindir, 'ansible-playbook'),
            '-i',
            inventory,
            os.path.join(ROOT, 'site.yml'),
            '--check',
            '--diff',
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=base,
        check=False,
        timeout=1200,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail('ansible-playbook printed no JSON: %s\n%s' % (proc.stdout[-3000:], proc.stderr[-3000:]))
    failures = {}
    plays = {}
    for play in report['plays']:
        for task in play['tasks']:
            for host, result in task['hosts'].items():
                plays.setdefault(host, set()).add(play['play']['name'])
                if result.get('failed'):
                    name = task['task']['name'].split(' : ', 1)[-1]
                    failures.setdefault(host, []).append((play['play']['name'], name, failure_text(result)))
    return proc.returncode, report, failures, plays


def test_the_run_stops_in_preflight(run):
    rc, report, dummy, dummy2 = run
    assert rc != 0
    # The run never gets past the preflight play: no stage ran anywhere.
    assert [p['play']['name'] for p in report['plays']] == [PREFLIGHT_PLAY]
    assert all(stats['changed'] == 0 for stats in report['stats'].values()), report['stats']


@pytest.mark.parametrize('case', sorted(CASES))
def test_input(run, case):
    dummy, report, failures, plays = run
    fragments = CASES[case][3]
    assert report['stats'][case]['changed'] == 0
    assert plays.get(case) == {PREFLIGHT_PLAY}, plays.get(case)
    if not fragments:
        assert case not in failures, failures.get(case)
        return
    assert case in failures, 'expected %s to be refused' % case
    text = ' '.join(msg for dummy, dummy2, msg in failures[case])
    for fragment in fragments:
        assert fragment in text, (fragment, failures[case])
