#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: hl_smi_info
short_description: Report Intel Gaudi devices, driver and firmware versions from hl-smi
version_added: 0.1.0
author:
  - gaudi.vllm_lmcache maintainers (@gaudi-vllm-lmcache)
description:
  - Runs C(hl-smi -Q <fields> -f csv) and returns one entry per Gaudi device (index,
    module ID, name, PCI bus ID, driver version, memory in bytes, temperature, power,
    utilization) and a summary (device count, Gaudi family, driver and firmware versions).
  - Also runs plain C(hl-smi) for the C(HL-SMI Version) and C(Driver Version) header rows and
    C(hl-smi -L) for the C(Firmware [SPI] Version) lines. Failures of these two extra calls
    only produce warnings.
  - The CSV parser accepts output with or without a header and with or without units, so
    it also understands C(-f csv,noheader,nounits).
  - Read-only; never changes the host. Runs normally in check mode.
  - A missing C(hl-smi) and a C(habanalabs) driver that is not loaded fail with different
    messages (see O(driver_module_path)); the RV(failure) key says which.
options:
  executable:
    description:
      - Name or absolute path of the C(hl-smi) binary. A bare name is looked up in
        E(PATH) and in C(/usr/bin), C(/usr/local/bin) and C(/opt/habanalabs/bin).
    type: str
    default: hl-smi
  driver_module_path:
    description:
      - Path whose existence shows that the C(habanalabs) kernel module is loaded. Only
        consulted when C(hl-smi) fails or sees no device, to tell a missing driver apart
        from other hl-smi errors.
    type: path
    default: /sys/module/habanalabs
attributes:
  check_mode:
    description: Can run in check mode and return the same data as a normal run.
    support: full
  diff_mode:
    description: Reports no diff; it changes nothing.
    support: none
notes:
  - The driver reports a version with a git hash (C(1.22.0-ee698fb)), not the package build
    number (C(1.22.0-740)); compare RV(summary.driver_release) with the package release.
seealso:
  - name: hl-smi in the Intel Gaudi documentation
    description: System Management Interface Tool (hl-smi).
    link: https://docs.habana.ai/en/latest/Management_and_Monitoring/Embedded_System_Tools_Guide/System_Management_Interface_Tool.html
'''

EXAMPLES = r'''
- name: Read the Gaudi devices
  gaudi.vllm_lmcache.hl_smi_info:
  register: gaudi

- name: Expect eight Gaudi3 devices on the 1.22.0 driver
  ansible.builtin.assert:
    that:
      - gaudi.summary.count == 8
      - gaudi.summary.family == 'Gaudi3'
      - gaudi.summary.driver_release == '1.22.0'
      - gaudi.summary.firmware_version is truthy

- name: Use an hl-smi outside PATH
  gaudi.vllm_lmcache.hl_smi_info:
    executable: /opt/habanalabs/bin/hl-smi
'''

RETURN = r'''
devices:
  description: One entry per device, in hl-smi order. Values hl-smi prints as N/A are null.
  returned: success
  type: list
  elements: dict
  contains:
    index:
      description: hl-smi device index.
      type: int
      sample: 0
    module_id:
      description: Module (OAM) ID; not the same as the index.
      type: int
      sample: 1
    name:
      description: Product name.
      type: str
      sample: HL-325L
    family:
      description: Gaudi generation derived from the name.
      type: str
      sample: Gaudi3
    bus_id:
      description: PCI address.
      type: str
      sample: "0000:3b:00.0"
    driver_version:
      description: Driver version as the driver reports it.
      type: str
      sample: 1.22.0-ee698fb
    uuid:
      description: Device UUID.
      type: str
      sample: 01P4-HL3090A0-18-UAN071-12-03-01
    memory_total_bytes:
      description: Device memory in bytes.
      type: int
      sample: 137438953472
    memory_used_bytes:
      description: Used device memory in bytes.
      type: int
      sample: 704643072
    memory_free_bytes:
      description: Free device memory in bytes.
      type: int
      sample: 136734310400
    temperature_c:
      description: AIP temperature in degrees Celsius.
      type: int
      sample: 36
    power_draw_w:
      description: Power draw in watts.
      type: int
      sample: 226
    utilization_percent:
      description: AIP utilization in percent.
      type: int
      sample: 0
    firmware:
      description: Firmware components of this device from C(hl-smi -L), when reported.
      type: dict
      sample: {"SPI": "Preboot version hl-gaudi3-1.22.0-fw-61.3.2-sec-9 (Jan 16 2025 - 17:51:04)"}
summary:
  description: Aggregated view.
  returned: success
  type: dict
  contains:
    count:
      description: Number of devices hl-smi reports.
      type: int
      sample: 8
    family:
      description: C(Gaudi2), C(Gaudi3), C(mixed), C(unknown), or null without devices.
      type: str
      sample: Gaudi3
    names:
      description: Distinct product names.
      type: list
      elements: str
      sample: ["HL-325L"]
    driver_version:
      description: The driver version when all devices agree (else null).
      type: str
      sample: 1.22.0-ee698fb
    driver_versions:
      description: Distinct driver versions.
      type: list
      elements: str
    driver_release:
      description: The C(X.Y.Z) part of RV(summary.driver_version).
      type: str
      sample: 1.22.0
    nic_driver_version:
      description: C(Nic Driver Version) from the table header, when printed.
      type: str
    hl_smi_version:
      description: C(HL-SMI Version) from the table header.
      type: str
      sample: hl-1.22.0-fw-61.3.2.1
    firmware_version:
      description: >-
        The SPI firmware build when all devices agree, else the hl-smi tool/firmware version
        from the table header when no SPI line was printed, else null.
      type: str
      sample: hl-gaudi3-1.22.0-fw-61.3.2-sec-9
    firmware_spi_versions:
      description: Distinct SPI firmware builds.
      type: list
      elements: str
    firmware_versions:
      description: Firmware component versions of the first device (SPI, FIT, UBOOT, OS...).
      type: dict
failure:
  description: On failure, C(hl_smi_missing), C(driver_not_loaded), C(hl_smi_failed) or C(parse_error).
  returned: failure
  type: str
  sample: driver_not_loaded
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils.hl_smi import (
    QUERY_FIELDS,
    HlSmiParseError,
    family_from_name,
    parse_csv,
    parse_firmware,
    parse_table,
    summarize,
)

EXTRA_PATHS = ['/usr/bin', '/usr/local/bin', '/opt/habanalabs/bin']


def find_executable(module, executable):
    if os.path.sep in executable:
        if os.path.isfile(executable) and os.access(executable, os.X_OK):
            return executable
        return None
    return module.get_bin_path(executable, required=False, opt_dirs=EXTRA_PATHS)


def driver_failure(module, path, what, rc, out, err):
    detail = (err or out or '').strip()
    if not os.path.exists(path):
        module.fail_json(
            msg='hl-smi is installed but the habanalabs kernel driver is not loaded (%s does not '
            'exist); %s. Load it with "modprobe habanalabs" or install habanalabs-dkms for '
            'the running kernel. hl-smi said: %s' % (path, what, detail or '(nothing)'),
            failure='driver_not_loaded',
            rc=rc,
            stdout=out,
            stderr=err,
        )
    module.fail_json(
        msg='hl-smi failed although the habanalabs driver is loaded (%s exists); %s. hl-smi said: %s'
        % (path, what, detail or '(nothing)'),
        failure='hl_smi_failed',
        rc=rc,
        stdout=out,
        stderr=err,
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            executable=dict(type='str', default='hl-smi'),
            driver_module_path=dict(type='path', default='/sys/module/habanalabs'),
        ),
        supports_check_mode=True,
    )
    executable = module.params['executable']
    driver_path = module.params['driver_module_path']

    binary = find_executable(module, executable)
    if not binary:
        module.fail_json(
            msg='hl-smi was not found (executable=%s, searched PATH and %s); install the '
            'habanalabs-firmware-tools package or set the executable option' % (executable, ', '.join(EXTRA_PATHS)),
            failure='hl_smi_missing',
        )

    env = {'LC_ALL': 'C', 'LANG': 'C'}
    query = [binary, '-Q', ','.join(QUERY_FIELDS), '-f', 'csv']
    rc, out, err = module.run_command(query, environ_update=env)
    if rc != 0:
        driver_failure(module, driver_path, 'the device query exited with rc=%d' % rc, rc, out, err)
    try:
        devices, warnings = parse_csv(out, QUERY_FIELDS)
    except HlSmiParseError as exc:
        module.fail_json(
            msg='cannot parse the output of %s: %s' % (' '.join(query), to_native(exc)),
            failure='parse_error',
            stdout=out,
            stderr=err,
        )
    if not devices:
        if not os.path.exists(driver_path):
            driver_failure(module, driver_path, 'the device query listed no device', rc, out, err)
        warnings.append('hl-smi lists no Gaudi device although the driver is loaded')

    table = {}
    rc_t, out_t, err_t = module.run_command([binary], environ_update=env)
    if rc_t == 0:
        table = parse_table(out_t)
    else:
        warnings.append('plain hl-smi exited with rc=%d: %s' % (rc_t, (err_t or out_t).strip()))

    firmware = {}
    rc_l, out_l, err_l = module.run_command([binary, '-L'], environ_update=env)
    if rc_l == 0:
        firmware = parse_firmware(out_l)
    else:
        warnings.append('hl-smi -L exited with rc=%d: %s' % (rc_l, (err_l or out_l).strip()))

    for device in devices:
        device['family'] = family_from_name(device.get('name'))
        if device.get('index') in firmware:
            device['firmware'] = firmware[device['index']]

    summary = summarize(devices, table, firmware)
    if devices and not summary['firmware_version']:
        warnings.append('hl-smi reported no firmware version')
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, devices=devices, summary=summary, executable=binary)


if __name__ == '__main__':
    main()
