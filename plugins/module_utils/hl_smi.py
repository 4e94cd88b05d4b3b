# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers for the output of Intel Gaudi ``hl-smi``.

Pure functions over text, so they can be unit-tested on captured output. Formats handled:

* CSV from ``hl-smi -Q <fields> -f csv[,noheader][,nounits]``. With a header the columns
  are mapped by name (``memory.total [MiB]``); without one the caller passes the field
  order it asked for. Values may carry units (``131072 MiB``, ``36 C``, ``226 W``, ``0 %``)
  or not (``nounits``).
* The default table that plain ``hl-smi`` prints (``HL-SMI Version``, ``Driver Version``,
  ``Nic Driver Version`` header rows and the per-device rows).
* ``Firmware [SPI] Version : ...`` lines from ``hl-smi -L`` / ``hl-smi -q``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import re

# The fields the hl_smi_info module asks for, in this order.
QUERY_FIELDS = (
    'index',
    'module_id',
    'name',
    'bus_id',
    'driver_version',
    'uuid',
    'memory.total',
    'memory.used',
    'memory.free',
    'temperature.aip',
    'power.draw',
    'utilization.aip',
)

# hl-smi field -> key in the returned device dict
FIELD_KEYS = {
    'index': 'index',
    'module_id': 'module_id',
    'name': 'name',
    'bus_id': 'bus_id',
    'driver_version': 'driver_version',
    'uuid': 'uuid',
    'serial': 'serial',
    'memory.total': 'memory_total_bytes',
    'memory.used': 'memory_used_bytes',
    'memory.free': 'memory_free_bytes',
    'temperature.aip': 'temperature_c',
    'power.draw': 'power_draw_w',
    'utilization.aip': 'utilization_percent',
    'timestamp': 'timestamp',
}

INT_FIELDS = ('index', 'module_id')
MEMORY_FIELDS = ('memory.total', 'memory.used', 'memory.free')
DEFAULT_UNITS = {
    'memory.total': 'MiB',
    'memory.used': 'MiB',
    'memory.free': 'MiB',
    'temperature.aip': 'C',
    'power.draw': 'W',
    'utilization.aip': '%',
}

UNIT_BYTES = {
    'B': 1,
    'KIB': 1024,
    'MIB': 1024**2,
    'GIB': 1024**3,
    'TIB': 1024**4,
    'KB': 1000,
    'MB': 1000**2,
    'GB': 1000**3,
    'TB': 1000**4,
}

NOT_AVAILABLE = ('', 'N/A', 'NA', '[N/A]', '[NOT SUPPORTED]', 'NOT SUPPORTED')

_HEADER_CELL = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\[([^\]]*)\])?\s*$')
_VALUE_UNIT = re.compile(r'^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z%]*)\s*$')


class HlSmiParseError(ValueError):
    """Raised when hl-smi output cannot be understood at all."""


def family_from_name(name):
    """Map a product name to the Gaudi generation.

    HL-3xx (HL-325L, HL-328, HL-338) is Gaudi3; HL-2xx (HL-225, HL-288) is Gaudi2, except the
    first-generation HL-205. Anything else is ``unknown``.
    """
    match = re.match(r'^\s*HL-?(\d)(\d)(\d)', name or '', re.IGNORECASE)
    if not match:
        return 'unknown'
    gen = match.group(1)
    if gen == '3':
        return 'Gaudi3'
    if gen == '2':
        if match.group(2) == '0':
            return 'Gaudi'
        return 'Gaudi2'
    return 'unknown'


def driver_release(version):
    """``1.22.0-ee698fb`` -> ``1.22.0`` (the driver reports a git sha, not the build)."""
    if not version:
        return None
    match = re.match(r'^\s*(\d+\.\d+\.\d+)', version)
    return match.group(1) if match else None


def _parse_header_cell(cell):
    match = _HEADER_CELL.match(cell)
    if not match:
        return None, None
    return match.group(1).lower(), match.group(2)


def _is_header(row):
    if not row:
        return False
    name, dummy = _parse_header_cell(row[0])
    return name in FIELD_KEYS and not re.match(r'^\s*\d', row[0])


def _convert(field, raw, header_unit):
    """Convert one CSV cell; raises ValueError on a value that does not fit the field."""
    value = raw.strip()
    if value.upper() in NOT_AVAILABLE:
        return None
    if field in INT_FIELDS:
        return int(value)
    if field in DEFAULT_UNITS:
        match = _VALUE_UNIT.match(value)
        if not match:
            raise ValueError('%s: %r is not a number with an optional unit' % (field, raw))
        number = float(match.group(1))
        unit = match.group(2) or header_unit or DEFAULT_UNITS[field]
        if field in MEMORY_FIELDS:
            factor = UNIT_BYTES.get(unit.upper())
            if factor is None:
                raise ValueError('%s: unknown memory unit %r' % (field, unit))
            return int(round(number * factor))
        if number == int(number):
            return int(number)
        return number
    return value


def parse_csv(text, fields=None):
    """Parse ``hl-smi -Q ... -f csv[,noheader][,nounits]`` output.

    :arg text: the command's stdout.
    :arg fields: the field order that was requested; needed when the output has no header.
        When a header is present it wins.
    :returns: ``(devices, warnings)``. ``devices`` is a list of dicts keyed per
        ``FIELD_KEYS``; malformed lines are skipped and reported in ``warnings``.
    :raises HlSmiParseError: when no header and no ``fields`` are available, or when there
        were data lines but none of them could be parsed.
    """
    warnings = []
    devices = []
    lines = [(num, line) for num, line in enumerate((text or '').splitlines(), 1) if line.strip()]
    if not lines:
        return devices, warnings

    columns = None
    units = {}
    first_num, first_line = lines[0]
    first_row = next(csv.reader([first_line], skipinitialspace=True))
    if _is_header(first_row):
        columns = []
        for cell in first_row:
            name, unit = _parse_header_cell(cell)
            if name is None:
                raise HlSmiParseError('line %d: cannot read header cell %r' % (first_num, cell))
            columns.append(name)
            if unit:
                units[name] = unit
        lines = lines[1:]
    elif fields:
        columns = [f.lower() for f in fields]
    else:
        raise HlSmiParseError(
            'line %d: no CSV header and no field list to map the columns: %r' % (first_num, first_line)
        )

    bad = 0
    for num, line in lines:
        row = next(csv.reader([line], skipinitialspace=True))
        if len(row) != len(columns):
            bad += 1
            warnings.append(
                'hl-smi CSV line %d skipped: expected %d fields (%s), got %d: %r'
                % (num, len(columns), ', '.join(columns), len(row), line)
            )
            continue
        device = {}
        try:
            for field, raw in zip(columns, row):
                key = FIELD_KEYS.get(field, field.replace('.', '_'))
                device[key] = _convert(field, raw, units.get(field))
        except ValueError as exc:
            bad += 1
            warnings.append('hl-smi CSV line %d skipped: %s: %r' % (num, exc, line))
            continue
        devices.append(device)

    if bad and not devices:
        raise HlSmiParseError('none of the %d hl-smi CSV data line(s) could be parsed: %s' % (bad, '; '.join(warnings)))
    return devices, warnings


_TABLE_HEADER = {
    'hl_smi_version': re.compile(r'HL-SMI Version:\s*(\S+)'),
    'nic_driver_version': re.compile(r'Nic Driver Version:\s*(\S+)'),
    'driver_version': re.compile(r'(?<!Nic )Driver Version:\s*(\S+)'),
}
_TABLE_ROW1 = re.compile(
    r'^\|\s*(\d+)\s+(HL-\S+)\s+\S+\s*\|\s*([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+\S+\s*\|'
)
_TABLE_ROW2 = re.compile(r'^\|\s*\S+\s+(\S+)\s+\S+\s+(\S+)\s*/\s*(\S+)\s*\|\s*(\S+)\s*/\s*(\S+)\s*\|\s*(\S+)')


def _unit_value(field, raw):
    match = re.match(r'^(-?\d+(?:\.\d+)?)([A-Za-z%]*)$', raw)
    if not match:
        return None
    return _convert(field, '%s %s' % (match.group(1), match.group(2)), None)


def parse_table(text):
    """Parse the default ``hl-smi`` table.

    :returns: dict with ``hl_smi_version``, ``driver_version``, ``nic_driver_version`` (each
        ``None`` when absent) and ``devices`` (index, name, bus_id, temperature_c,
        power_draw_w, power_cap_w, memory_used_bytes, memory_total_bytes, utilization_percent).
    """
    result = dict((key, None) for key in _TABLE_HEADER)
    for key, pattern in _TABLE_HEADER.items():
        match = pattern.search(text or '')
        if match:
            result[key] = match.group(1)
    devices = []
    lines = (text or '').splitlines()
    for pos, line in enumerate(lines):
        match = _TABLE_ROW1.match(line.strip())
        if not match:
            continue
        device = {
            'index': int(match.group(1)),
            'name': match.group(2),
            'bus_id': match.group(3),
        }
        if pos + 1 < len(lines):
            row2 = _TABLE_ROW2.match(lines[pos + 1].strip())
            if row2:
                device['temperature_c'] = _unit_value('temperature.aip', row2.group(1))
                device['power_draw_w'] = _unit_value('power.draw', row2.group(2))
                device['power_cap_w'] = _unit_value('power.draw', row2.group(3))
                device['memory_used_bytes'] = _unit_value('memory.used', row2.group(4))
                device['memory_total_bytes'] = _unit_value('memory.total', row2.group(5))
                device['utilization_percent'] = _unit_value('utilization.aip', row2.group(6))
        devices.append(device)
    result['devices'] = devices
    return result


_FW_LINE = re.compile(r'^\s*Firmware\s*\[([A-Za-z0-9_ -]+)\]\s*Version\s*:\s*(.*?)\s*$', re.MULTILINE)
_FW_BUILD = re.compile(r'(hl-[A-Za-z0-9]*-?\d+\.\d+\.\d+-fw-[0-9][0-9.]*(?:-sec-\d+)?)')
_FW_NUMBER = re.compile(r'-fw-(\d+(?:\.\d+)+)')
_DEVICE_SECTION = re.compile(r'^\s*\[(\d+)\]\s.*?([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s*$')


def parse_firmware(text):
    """Parse ``Firmware [<component>] Version : <value>`` lines (``hl-smi -L`` / ``-q``).

    Lines are attributed to the device section (``[0] AIP (accel0) 0000:19:00.0``) they
    follow; lines before any section go to device ``None``.

    :returns: dict ``{device_index_or_None: {component: value}}`` (first value wins).
    """
    result = {}
    current = None
    for line in (text or '').splitlines():
        section = _DEVICE_SECTION.match(line)
        if section:
            current = int(section.group(1))
            continue
        match = _FW_LINE.match(line)
        if match:
            components = result.setdefault(current, {})
            components.setdefault(match.group(1).strip().upper(), match.group(2))
    return result


def firmware_build(value):
    """``Preboot version hl-gaudi2-1.20.0-fw-58.0.0-sec-9 (Jan ...)`` -> the build token."""
    match = _FW_BUILD.search(value or '')
    return match.group(1) if match else None


def firmware_number(value):
    """``hl-1.18.0-fw-53.1.1.1`` -> ``53.1.1.1``."""
    match = _FW_NUMBER.search(value or '')
    return match.group(1) if match else None


def summarize(devices, table=None, firmware=None):
    """Build the summary dict from parsed devices, the table header and firmware lines."""
    table = table or {}
    firmware = firmware or {}
    names = sorted(set(d.get('name') for d in devices if d.get('name')))
    families = sorted(set(family_from_name(n) for n in names))
    if not families:
        family = None
    elif len(families) == 1:
        family = families[0]
    else:
        family = 'mixed'

    driver_versions = sorted(set(d.get('driver_version') for d in devices if d.get('driver_version')))
    driver_version = driver_versions[0] if len(driver_versions) == 1 else None
    if not driver_versions and table.get('driver_version'):
        driver_version = table['driver_version']
        driver_versions = [driver_version]

    components = {}
    for key in sorted(firmware, key=lambda k: (k is not None, k if k is not None else -1)):
        for comp, value in firmware[key].items():
            components.setdefault(comp, value)
    spi = sorted(set(firmware_build(c.get('SPI')) for c in firmware.values() if c.get('SPI')) - set([None]))

    firmware_version = None
    if len(spi) == 1:
        firmware_version = spi[0]
    elif not spi and table.get('hl_smi_version'):
        firmware_version = table['hl_smi_version']

    return {
        'count': len(devices),
        'names': names,
        'family': family,
        'families': families,
        'driver_version': driver_version,
        'driver_versions': driver_versions,
        'driver_release': driver_release(driver_version),
        'nic_driver_version': table.get('nic_driver_version'),
        'hl_smi_version': table.get('hl_smi_version'),
        'firmware_version': firmware_version,
        'firmware_spi_versions': spi,
        'firmware_versions': components,
    }
