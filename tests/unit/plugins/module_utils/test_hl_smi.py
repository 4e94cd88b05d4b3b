# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the hl-smi parsers on the real output formats."""

import pytest

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hl_smi
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils.hl_smi import (
    HlSmiParseError,
    driver_release,
    family_from_name,
    firmware_build,
    firmware_number,
    parse_csv,
    parse_firmware,
    parse_table,
    summarize,
)

MIB = 1024 * 1024

# Real default output of hl-smi on Gaudi2 (HabanaAI/Setup_and_Install, triton sample log), verbatim.
TABLE_GAUDI2 = """\
+-----------------------------------------------------------------------------+
| HL-SMI Version:                              hl-1.18.0-fw-53.1.1.1          |
| Driver Version:                                     1.18.0-ee698fb          |
|-------------------------------+----------------------+----------------------+
| AIP  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | AIP-Util  Compute M. |
|===============================+======================+======================|
|   0  HL-225              N/A  | 0000:4d:00.0     N/A |                   0  |
| N/A   31C   N/A    81W / 600W |    768MiB / 98304MiB |     0%           N/A |
|-------------------------------+----------------------+----------------------+
| Compute Processes:                                               AIP Memory |
|  AIP       PID   Type   Process name                             Usage      |
|=============================================================================|
|   0        N/A   N/A    N/A                                      N/A        |
+=============================================================================+
"""

# Real CSV with header and units: -Q index,name,bus_id,driver_version,uuid,module_id,
# memory.total,memory.free,memory.used -f csv (Gaudi3).
CSV_HEADER_UNITS = """\
index, name, bus_id, driver_version, uuid, module_id, memory.total [MiB], memory.free [MiB], memory.used [MiB]
0, HL-325L, 0000:3b:00.0, 1.24.1-b336d5e, 01P4-HL3090A0-18-UAN071-12-03-01, 1, 131072 MiB, 130400 MiB, 672 MiB
"""
CSV_HEADER_UNITS_FIELDS = [
    'index',
    'name',
    'bus_id',
    'driver_version',
    'uuid',
    'module_id',
    'memory.total',
    'memory.free',
    'memory.used',
]

# Real noheader line with units (the shape lablup/all-smi parses from hl-smi).
CSV_NOHEADER_FIELDS = [
    'index',
    'uuid',
    'name',
    'driver_version',
    'memory.total',
    'memory.used',
    'memory.free',
    'power.draw',
    'power.max',
    'temperature.aip',
    'utilization.aip',
]
CSV_NOHEADER = (
    "0, 01P4-HL3090A0-18-U4V193-22-07-00, HL-325L, 1.22.1-97ec1a4, 131072 MiB, 672 MiB, "
    "130400 MiB, 226 W, 850 W, 36 C, 0 %\n"
)

# The vendor health screen's query, -f csv,noheader (values keep their units).
HEALTH_FIELDS = ['index', 'module_id', 'bus_id', 'memory.used', 'temperature.aip', 'name']
HEALTH_NOHEADER = "0, 1, 0000:4d:00.0, 768 MiB, 31 C, HL-225\n1, 0, 0000:4e:00.0, 768 MiB, 30 C, HL-225\n"

# The first CSV sample with -f csv,noheader,nounits.
CSV_NOUNITS = "0, HL-325L, 0000:3b:00.0, 1.24.1-b336d5e, 01P4-HL3090A0-18-UAN071-12-03-01, 1, 131072, 130400, 672\n"

# Real firmware line from `hl-smi -L | grep SPI`.
SPI_LINE = "Firmware [SPI] Version : Preboot version hl-gaudi2-1.20.0-fw-58.0.0-sec-9 (Jan 16 2025 - 17:51:04)"


def test_csv_with_header_and_units():
    devices, warnings = parse_csv(CSV_HEADER_UNITS)
    assert warnings == []
    assert devices == [
        {
            'index': 0,
            'name': 'HL-325L',
            'bus_id': '0000:3b:00.0',
            'driver_version': '1.24.1-b336d5e',
            'uuid': '01P4-HL3090A0-18-UAN071-12-03-01',
            'module_id': 1,
            'memory_total_bytes': 131072 * MIB,
            'memory_free_bytes': 130400 * MIB,
            'memory_used_bytes': 672 * MIB,
        }
    ]


def test_header_wins_over_the_requested_field_order():
    devices, dummy = parse_csv(CSV_HEADER_UNITS, fields=list(reversed(CSV_HEADER_UNITS_FIELDS)))
    assert devices[0]['name'] == 'HL-325L'
    assert devices[0]['module_id'] == 1


def test_csv_noheader_with_units():
    devices, warnings = parse_csv(CSV_NOHEADER, CSV_NOHEADER_FIELDS)
    assert warnings == []
    dev = devices[0]
    assert dev['index'] == 0
    assert dev['name'] == 'HL-325L'
    assert dev['memory_total_bytes'] == 131072 * MIB
    assert dev['memory_used_bytes'] == 672 * MIB
    assert dev['memory_free_bytes'] == 130400 * MIB
    assert dev['power_draw_w'] == 226
    assert dev['temperature_c'] == 36
    assert dev['utilization_percent'] == 0
    # unknown fields are kept as text under a dotless key
    assert dev['power_max'] == '850 W'


def test_health_screen_query_two_devices():
    devices, dummy = parse_csv(HEALTH_NOHEADER, HEALTH_FIELDS)
    assert [d['index'] for d in devices] == [0, 1]
    assert [d['module_id'] for d in devices] == [1, 0]
    assert devices[1]['bus_id'] == '0000:4e:00.0'
    assert devices[0]['memory_used_bytes'] == 768 * MIB
    assert devices[1]['temperature_c'] == 30


def test_csv_nounits_defaults_to_mib():
    devices, dummy = parse_csv(CSV_NOUNITS, CSV_HEADER_UNITS_FIELDS)
    assert devices[0]['memory_total_bytes'] == 131072 * MIB
    assert devices[0]['memory_used_bytes'] == 672 * MIB


def test_csv_nounits_with_header_uses_header_unit():
    text = "index, memory.total [GiB]\n0, 128\n"
    devices, dummy = parse_csv(text)
    assert devices[0]['memory_total_bytes'] == 128 * 1024 * MIB


def test_not_available_values_become_none():
    devices, dummy = parse_csv("0, N/A, [N/A], HL-325L\n", ['index', 'power.draw', 'temperature.aip', 'name'])
    assert devices[0]['power_draw_w'] is None
    assert devices[0]['temperature_c'] is None


def test_malformed_line_is_skipped_with_a_warning():
    text = (
        CSV_HEADER_UNITS
        + "1, HL-325L, 0000:3c:00.0\n"
        + CSV_HEADER_UNITS.splitlines()[1].replace('0, ', '2, ', 1)
        + "\n"
    )
    devices, warnings = parse_csv(text)
    assert [d['index'] for d in devices] == [0, 2]
    assert len(warnings) == 1
    assert 'line 3' in warnings[0]
    assert 'expected 9 fields' in warnings[0]


def test_bad_value_is_skipped_with_a_warning():
    text = "0, HL-225, lots MiB\n1, HL-225, 768 MiB\n"
    devices, warnings = parse_csv(text, ['index', 'name', 'memory.used'])
    assert [d['index'] for d in devices] == [1]
    assert 'line 1' in warnings[0] and 'memory.used' in warnings[0]


def test_unknown_memory_unit_is_rejected():
    devices, warnings = parse_csv("0, 5 furlongs\n1, 5 MiB\n", ['index', 'memory.total'])
    assert len(devices) == 1
    assert 'unknown memory unit' in warnings[0]


def test_only_malformed_lines_raise():
    with pytest.raises(HlSmiParseError, match='none of the 2'):
        parse_csv("garbage\nmore garbage, here\n", ['index', 'name', 'bus_id'])


def test_noheader_without_fields_raises():
    with pytest.raises(HlSmiParseError, match='no CSV header'):
        parse_csv(CSV_NOHEADER)


def test_empty_output_is_no_device():
    assert parse_csv("\n  \n", hl_smi.QUERY_FIELDS) == ([], [])


def test_default_table_versions_and_device():
    table = parse_table(TABLE_GAUDI2)
    assert table['hl_smi_version'] == 'hl-1.18.0-fw-53.1.1.1'
    assert table['driver_version'] == '1.18.0-ee698fb'
    assert table['nic_driver_version'] is None
    assert table['devices'] == [
        {
            'index': 0,
            'name': 'HL-225',
            'bus_id': '0000:4d:00.0',
            'temperature_c': 31,
            'power_draw_w': 81,
            'power_cap_w': 600,
            'memory_used_bytes': 768 * MIB,
            'memory_total_bytes': 98304 * MIB,
            'utilization_percent': 0,
        }
    ]


def test_default_table_with_nic_driver_row():
    text = TABLE_GAUDI2.replace(
        "|-------------------------------+----------------------+----------------------+\n| AIP",
        "| Nic Driver Version:                                 1.20.0-e4fe12d          |\n"
        "|-------------------------------+----------------------+----------------------+\n| AIP",
        1,
    )
    table = parse_table(text)
    assert table['driver_version'] == '1.18.0-ee698fb'
    assert table['nic_driver_version'] == '1.20.0-e4fe12d'


def test_default_table_gaudi3_row():
    text = (
        "|   3  HL-325L             N/A  | 0000:34:00.0     N/A |                   0  |\n"
        "| N/A   36C   N/A   226W / 900W |   672MiB / 131072MiB |     7%           N/A |\n"
    )
    dev = parse_table(text)['devices'][0]
    assert (dev['index'], dev['name'], dev['bus_id']) == (3, 'HL-325L', '0000:34:00.0')
    assert dev['power_cap_w'] == 900
    assert dev['memory_total_bytes'] == 131072 * MIB
    assert dev['utilization_percent'] == 7


def test_firmware_spi_line():
    fw = parse_firmware(SPI_LINE + "\n")
    assert fw == {None: {'SPI': 'Preboot version hl-gaudi2-1.20.0-fw-58.0.0-sec-9 (Jan 16 2025 - 17:51:04)'}}
    assert firmware_build(fw[None]['SPI']) == 'hl-gaudi2-1.20.0-fw-58.0.0-sec-9'


def test_firmware_lines_per_device_section():
    text = (
        "Driver Version : 1.22.0-abc1234\n"
        "[0] AIP (accel0) 0000:19:00.0\n"
        "    Firmware [SPI] Version                : Preboot version hl-gaudi3-1.22.0-fw-61.3.2-sec-9 (x)\n"
        "    Firmware [FIT] Version                : fit-a\n"
        "[1] AIP (accel1) 0000:1a:00.0\n"
        "    Firmware [SPI] Version                : Preboot version hl-gaudi3-1.22.0-fw-61.3.2-sec-9 (x)\n"
    )
    fw = parse_firmware(text)
    assert sorted(fw) == [0, 1]
    assert fw[0]['FIT'] == 'fit-a'
    assert 'FIT' not in fw[1]


def test_firmware_number_from_hl_smi_version():
    assert firmware_number('hl-1.18.0-fw-53.1.1.1') == '53.1.1.1'
    assert firmware_number('no firmware here') is None


@pytest.mark.parametrize(
    'name,family',
    [
        ('HL-225', 'Gaudi2'),
        ('HL-288', 'Gaudi2'),
        ('HL-325L', 'Gaudi3'),
        ('HL-338', 'Gaudi3'),
        ('HL-205', 'Gaudi'),
        ('Something', 'unknown'),
        (None, 'unknown'),
    ],
)
def test_family_from_name(name, family):
    assert family_from_name(name) == family


def test_driver_release():
    assert driver_release('1.22.0-ee698fb') == '1.22.0'
    assert driver_release('garbage') is None
    assert driver_release(None) is None


def test_summary_prefers_the_spi_build():
    devices, dummy = parse_csv(CSV_HEADER_UNITS)
    summary = summarize(devices, parse_table(TABLE_GAUDI2), parse_firmware(SPI_LINE))
    assert summary['count'] == 1
    assert summary['family'] == 'Gaudi3'
    assert summary['driver_version'] == '1.24.1-b336d5e'
    assert summary['driver_release'] == '1.24.1'
    assert summary['hl_smi_version'] == 'hl-1.18.0-fw-53.1.1.1'
    assert summary['firmware_version'] == 'hl-gaudi2-1.20.0-fw-58.0.0-sec-9'


def test_summary_falls_back_to_the_table():
    devices = parse_table(TABLE_GAUDI2)['devices']
    summary = summarize(devices, parse_table(TABLE_GAUDI2), {})
    assert summary['family'] == 'Gaudi2'
    assert summary['driver_version'] == '1.18.0-ee698fb'
    assert summary['firmware_version'] == 'hl-1.18.0-fw-53.1.1.1'


def test_summary_of_mixed_and_disagreeing_devices():
    devices = [{'name': 'HL-225', 'driver_version': '1.22.0-a'}, {'name': 'HL-325L', 'driver_version': '1.22.0-b'}]
    fw = {0: {'SPI': 'hl-gaudi2-1.22.0-fw-61.3.2-sec-9'}, 1: {'SPI': 'hl-gaudi3-1.22.0-fw-61.3.2-sec-9'}}
    summary = summarize(devices, {}, fw)
    assert summary['family'] == 'mixed'
    assert summary['driver_version'] is None
    assert summary['driver_versions'] == ['1.22.0-a', '1.22.0-b']
    assert summary['firmware_version'] is None
    assert len(summary['firmware_spi_versions']) == 2


def test_summary_without_devices():
    summary = summarize([], {}, {})
    assert summary['count'] == 0
    assert summary['family'] is None
    assert summary['firmware_version'] is None
