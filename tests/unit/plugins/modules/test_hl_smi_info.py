# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests of hl_smi_info against fake hl-smi executables."""

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import hl_smi_info

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
STANDIN_HL_SMI = os.path.join(ROOT, 'tests', 'standins', 'hl_smi.py')

CSV = """\
index, module_id, name, bus_id, driver_version, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB], temperature.aip, power.draw, utilization.aip
0, 1, HL-325L, 0000:3b:00.0, 1.22.0-ee698fb, 01P4-HL3090A0-18-UAN071-12-03-01, 131072 MiB, 672 MiB, 130400 MiB, 36 C, 226 W, 0 %
1, 0, HL-325L, 0000:3c:00.0, 1.22.0-ee698fb, 01P4-HL3090A0-18-UAN071-12-03-02, 131072 MiB, 672 MiB, 130400 MiB, 35 C, 221 W, 3 %
"""
TABLE = """\
| HL-SMI Version:                              hl-1.22.0-fw-61.3.2.1          |
| Driver Version:                                     1.22.0-ee698fb          |
"""
LISTING = """\
[0] AIP (accel0) 0000:3b:00.0
    Firmware [SPI] Version : Preboot version hl-gaudi3-1.22.0-fw-61.3.2-sec-9 (Jan 16 2025 - 17:51:04)
[1] AIP (accel1) 0000:3c:00.0
    Firmware [SPI] Version : Preboot version hl-gaudi3-1.22.0-fw-61.3.2-sec-9 (Jan 16 2025 - 17:51:04)
"""


def write_exe(path, body):
    path.write_text('#!/bin/sh\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def fake_hl_smi(tmp_path, csv=CSV, csv_rc=0, stderr=''):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'csv').write_text(csv)
    (data / 'table').write_text(TABLE)
    (data / 'listing').write_text(LISTING)
    return write_exe(
        tmp_path / 'hl-smi',
        (
            'case "$1" in\n'
            '  -Q) printf "%s" "{err}" >&2; cat {d}/csv; exit {rc} ;;\n'
            '  -L) cat {d}/listing ;;\n'
            '  "") cat {d}/table ;;\n'
            '  *) exit 2 ;;\n'
            'esac\n'
        ).format(d=data, rc=csv_rc, err=stderr),
    )


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            hl_smi_info.main()
    result = json.loads(capsys.readouterr().out)
    return exc.value.code, result


def test_reports_devices_and_summary(tmp_path, capsys):
    code, result = run_module(capsys, {'executable': fake_hl_smi(tmp_path), '_ansible_check_mode': True})
    assert code == 0
    assert result['changed'] is False
    assert [d['bus_id'] for d in result['devices']] == ['0000:3b:00.0', '0000:3c:00.0']
    assert result['devices'][0]['memory_total_bytes'] == 131072 * 1024 * 1024
    assert result['devices'][1]['utilization_percent'] == 3
    assert result['devices'][0]['family'] == 'Gaudi3'
    assert result['devices'][0]['firmware']['SPI'].startswith('Preboot version hl-gaudi3-1.22.0')
    summary = result['summary']
    assert summary['count'] == 2
    assert summary['family'] == 'Gaudi3'
    assert summary['driver_release'] == '1.22.0'
    assert summary['hl_smi_version'] == 'hl-1.22.0-fw-61.3.2.1'
    assert summary['firmware_version'] == 'hl-gaudi3-1.22.0-fw-61.3.2-sec-9'


def test_missing_executable(tmp_path, capsys):
    code, result = run_module(capsys, {'executable': str(tmp_path / 'nowhere' / 'hl-smi')})
    assert code == 1
    assert result['failure'] == 'hl_smi_missing'
    assert 'hl-smi was not found' in result['msg']
    assert 'habanalabs-firmware-tools' in result['msg']


def test_missing_executable_by_name(capsys, monkeypatch):
    monkeypatch.setattr(hl_smi_info, 'EXTRA_PATHS', [])
    monkeypatch.setenv('PATH', '/nonexistent')
    code, result = run_module(capsys, {'executable': 'hl-smi-does-not-exist'})
    assert code == 1
    assert result['failure'] == 'hl_smi_missing'


def test_driver_not_loaded(tmp_path, capsys):
    exe = fake_hl_smi(tmp_path, csv='', csv_rc=1, stderr='cannot open device')
    code, result = run_module(capsys, {'executable': exe, 'driver_module_path': str(tmp_path / 'no-module')})
    assert code == 1
    assert result['failure'] == 'driver_not_loaded'
    assert 'driver is not loaded' in result['msg']
    assert 'cannot open device' in result['msg']


def test_no_device_and_no_driver_is_driver_not_loaded(tmp_path, capsys):
    exe = fake_hl_smi(tmp_path, csv='')
    code, result = run_module(capsys, {'executable': exe, 'driver_module_path': str(tmp_path / 'no-module')})
    assert code == 1
    assert result['failure'] == 'driver_not_loaded'


def test_hl_smi_failure_with_driver_loaded(tmp_path, capsys):
    module_dir = tmp_path / 'module'
    module_dir.mkdir()
    exe = fake_hl_smi(tmp_path, csv='', csv_rc=3, stderr='device busy')
    code, result = run_module(capsys, {'executable': exe, 'driver_module_path': str(module_dir)})
    assert code == 1
    assert result['failure'] == 'hl_smi_failed'
    assert 'although the habanalabs driver is loaded' in result['msg']


def test_unparseable_output(tmp_path, capsys):
    exe = fake_hl_smi(tmp_path, csv='this is not, csv at all\n')
    code, result = run_module(capsys, {'executable': exe})
    assert code == 1
    assert result['failure'] == 'parse_error'
    assert 'cannot parse' in result['msg']


def test_malformed_line_is_a_warning(tmp_path, capsys, monkeypatch):
    warnings = []
    # Collect the warnings directly: their rendering in the result differs between ansible-core versions.
    monkeypatch.setattr(hl_smi_info.AnsibleModule, 'warn', lambda self, msg: warnings.append(msg))
    exe = fake_hl_smi(tmp_path, csv=CSV + '2, 1, HL-325L\n')
    code, result = run_module(capsys, {'executable': exe})
    assert code == 0
    assert result['summary']['count'] == 2
    assert any('line 4 skipped' in w for w in warnings)


@pytest.mark.skipif(not os.path.exists('/usr/bin/python3'), reason='the stand-in hl-smi runs /usr/bin/python3')
def test_standin_hl_smi_agrees_with_the_parser(tmp_path, capsys, monkeypatch):
    """The hl-smi stand-in (tests/standins/hl_smi.py) prints what the parsers read."""
    with open(STANDIN_HL_SMI) as handle:
        text = '#!/usr/bin/python3\n' + handle.read()
    text = (
        text.replace('@DRIVER_VERSION@', '1.22.2-1a2b3c4')
        .replace('@HL_SMI_VERSION@', 'hl-1.22.2-fw-61.5.0.1')
        .replace('@SPI_VERSION@', 'Preboot version hl-gaudi3-1.22.2-fw-61.5.0-sec-9 (x)')
    )
    exe = tmp_path / 'hl-smi'
    exe.write_text(text)
    exe.chmod(0o755)
    conf = tmp_path / 'conf'
    conf.mkdir()
    (conf / 'devices').write_text('3\n')
    monkeypatch.setenv('HL_SMI_STANDIN_DIR', str(conf))
    code, result = run_module(capsys, {'executable': str(exe)})
    assert code == 0, result
    assert result['summary']['count'] == 3
    assert result['summary']['family'] == 'Gaudi3'
    assert result['summary']['driver_release'] == '1.22.2'
    assert result['summary']['firmware_version'] == 'hl-gaudi3-1.22.2-fw-61.5.0-sec-9'
    assert [d['module_id'] for d in result['devices']] == [1, 0, 3]
    (conf / 'driver-not-loaded').write_text('')
    code, result = run_module(capsys, {'executable': str(exe), 'driver_module_path': str(tmp_path / 'none')})
    assert result['failure'] == 'driver_not_loaded'
