# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input to the habana_driver role fails before any change, naming the variable.

One ansible-playbook run in check mode against several local "hosts" (all the controller,
each with its own variables and its own fake sysfs tree / EFI variable / mokutil), limited to
the stages before the first change (validation and detection, which are tagged always, plus
habana_driver_detect). The JSON callback tells which task failed for each host and why.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.collections')
SB_GUID = 'SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'
# Tasks that run before the role changes anything.
PRE_CHANGE_TASKS = {
    "Validating arguments against arg spec 'main'",
    'Check the semantic constraints of the input',
    'Check the operating system',
    'Check paths, counts and overrides',
    'Stop when the host has no Gaudi device',
    'Compare the device count with habana_driver_expected_device_count',
    'Refuse to install the unsigned driver while Secure Boot is enabled',
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


CASES = {
    # name: (extra vars, fixture options, expected failing task or None, words in the message)
    'good': ({}, {}, None, []),
    'bad_version_no_build': (
        {'habana_driver_version': '1.22.0'},
        {},
        'Check the semantic constraints of the input',
        ['habana_driver_version', '1.22.0'],
    ),
    'bad_version_prefix': (
        {'habana_driver_version': 'v1.22.0-740'},
        {},
        'Check the semantic constraints of the input',
        ['habana_driver_version'],
    ),
    'count_mismatch': (
        {'habana_driver_expected_device_count': 3},
        {},
        'Compare the device count with habana_driver_expected_device_count',
        ['habana_driver_expected_device_count', '2 Gaudi device(s)'],
    ),
    'unsupported_os': (
        {'habana_driver_supported_distributions': ['Ubuntu 24.04']},
        {},
        'Check the operating system',
        ['habana_driver_supported_distributions'],
    ),
    'no_devices': ({}, {'gaudi': 0}, 'Stop when the host has no Gaudi device', ['habana_driver_require_devices']),
    'no_devices_allowed': ({'habana_driver_require_devices': False}, {'gaudi': 0}, None, []),
    'secure_boot_efivar': (
        {},
        {'secure_boot': True},
        'Refuse to install the unsigned driver while Secure Boot is enabled',
        ['Secure Boot is enabled', 'habana_driver_allow_secure_boot'],
    ),
    'secure_boot_mokutil': (
        {},
        {'secure_boot': None, 'mokutil': 'SecureBoot enabled'},
        'Refuse to install the unsigned driver while Secure Boot is enabled',
        ['habana_driver_allow_secure_boot'],
    ),
    'secure_boot_mokutil_off': ({}, {'secure_boot': None, 'mokutil': 'SecureBoot disabled'}, None, []),
    'secure_boot_allowed': ({'habana_driver_allow_secure_boot': True}, {'secure_boot': True}, None, []),
    'wrong_type_bool': (
        {'habana_driver_load_modules': 'maybe'},
        {},
        "Validating arguments against arg spec 'main'",
        ['habana_driver_load_modules'],
    ),
    'wrong_type_int': (
        {'habana_driver_expected_device_count': 'many'},
        {},
        "Validating arguments against arg spec 'main'",
        ['habana_driver_expected_device_count'],
    ),
    'wrong_choice': (
        {'habana_driver_container_runtime': 'podman'},
        {},
        "Validating arguments against arg spec 'main'",
        ['habana_driver_container_runtime'],
    ),
    'relative_sysfs_root': (
        {'habana_driver_sysfs_root': 'relative/sys'},
        {},
        'Check paths, counts and overrides',
        ['habana_driver_sysfs_root must be an absolute path'],
    ),
}


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    if not shutil.which(
        'ansible-playbook', path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    ):
        pytest.skip('ansible-playbook is not available')
    base = tmp_path_factory.mktemp('habana_driver_inputs')
    hosts = {}
    for name, (extra, fixture, dummy, dummy2) in CASES.items():
        hbase = str(base / name)
        os.makedirs(hbase)
        hvars = {
            'ansible_connection': 'local',
            'ansible_python_interpreter': sys.executable,
            'habana_driver_sysfs_root': make_sysfs(hbase, fixture.get('gaudi', 2)),
            'habana_driver_secure_boot_efivar_path': os.path.join(hbase, 'absent-efivar'),
            'habana_driver_mokutil_path': os.path.join(hbase, 'absent-mokutil'),
            # accept the controller's own distribution, so only the cases under test fail
            'habana_driver_supported_distributions': [
                "{{ ansible_facts['distribution'] }} {{ ansible_facts['distribution_version'] }}"
            ],
        }
        secure_boot = fixture.get('secure_boot', False)
        if secure_boot is not None:
            hvars['habana_driver_secure_boot_efivar_path'] = make_efivar(hbase, secure_boot)
        if 'mokutil' in fixture:
            hvars['habana_driver_mokutil_path'] = make_mokutil(hbase, fixture['mokutil'])
        hvars.update(extra)
        hosts[name] = hvars
    inventory = base / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': hosts}}))
    playbook = base / 'play.yml'
    playbook.write_text(
        '- name: Run the habana_driver role up to the first change\n'
        '  hosts: all\n'
        '  gather_facts: true\n'
        '  gather_subset: ["!all", "!min", "distribution"]\n'
        '  roles:\n'
        '    - role: gaudi.vllm_lmcache.habana_driver\n'
    )
    env = dict(os.environ)
    env.update(
        {
            'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
            'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
            'ANSIBLE_FORKS': '8',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_LOCAL_TEMP': str(base / 'tmp'),
            'ANSIBLE_NOCOLOR': '1',
        }
    )
    env.pop('ANSIBLE_PYTHON_INTERPRETER', None)
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run(
        [
            os.path.join(bindir, 'ansible-playbook'),
            '-i',
            str(inventory),
            str(playbook),
            '--check',
            '--tags',
            'habana_driver_detect',
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(base),
        check=False,
        timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail('ansible-playbook printed no JSON: %s\n%s' % (proc.stdout[-2000:], proc.stderr[-2000:]))
    failures = {}
    for play in report['plays']:
        for task in play['tasks']:
            for host, result in task['hosts'].items():
                if result.get('failed') and host not in failures:
                    name = task['task']['name'].split(' : ', 1)[-1]
                    failures[host] = (name, json.dumps(result))
    return report['stats'], failures


@pytest.mark.parametrize('case', sorted(CASES))
def test_input(run, case):
    stats, failures = run
    dummy, dummy2, failing_task, words = CASES[case]
    assert stats[case]['changed'] == 0
    if failing_task is None:
        assert case not in failures, failures.get(case)
        assert stats[case]['failures'] == 0
        return
    assert case in failures, 'expected %s to fail' % case
    task, result = failures[case]
    assert task.startswith(failing_task), (task, result)
    assert task.split(' - ')[0] in PRE_CHANGE_TASKS or task.startswith("Validating arguments")
    for word in words:
        assert word in result, (word, result)
