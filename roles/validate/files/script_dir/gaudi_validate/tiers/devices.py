# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""devices tier: accelerator type and count, driver and firmware versions.

HPU through hl-smi (parsed by the collection's hl_smi module, the same parser as the
hl_smi_info module) or habana_frameworks; CUDA and ROCm through torch.
"""

from __future__ import absolute_import, division, print_function

import glob
import importlib.util
import os
import shutil

from .._collection import hl_smi
from ..common import TierError, _import_habana, _import_torch, _run

DEFAULT_HL_SMI_FIELDS = "index,name,bus_id,driver_version,memory.total"


def _hl_smi_path(args):
    return shutil.which(args.hl_smi) if args.hl_smi else None


def resolve_device(args):
    """Return (device, how) for --device auto|hpu|cuda|rocm|cpu."""
    if args.device != "auto":
        return args.device, "forced with --device"
    if _hl_smi_path(args) or glob.glob("/dev/accel/accel*") or glob.glob("/dev/hl[0-9]*"):
        return "hpu", "hl-smi or /dev/accel present"
    if importlib.util.find_spec("habana_frameworks") is not None:
        return "hpu", "habana_frameworks importable"
    if importlib.util.find_spec("torch") is not None:
        torch, dummy = _import_torch()
        if torch is not None:
            try:
                if torch.cuda.is_available():
                    if getattr(torch.version, "hip", None):
                        return "rocm", "torch built for ROCm sees a device"
                    return "cuda", "torch.cuda sees a device"
            except Exception:  # pylint: disable=broad-except
                pass
    return "none", "no hl-smi, no habana_frameworks, no CUDA/ROCm device through torch"


def parse_devices(text, fields=DEFAULT_HL_SMI_FIELDS):
    """Devices from ``hl-smi -Q <fields> -f csv,noheader`` through the collection's parser.

    Returns (devices, warnings); each device has index, name, bus_id, driver_version and
    memory_total_mib. Raises TierError when no line can be read.
    """
    try:
        parsed, warnings = hl_smi.parse_csv(text, fields=[f.strip() for f in fields.split(",")])
    except hl_smi.HlSmiParseError as exc:
        raise TierError("hl-smi CSV: %s" % exc)
    devices = []
    for dev in parsed:
        memory = dev.get("memory_total_bytes")
        devices.append(
            {
                "index": dev.get("index"),
                "name": dev.get("name"),
                "bus_id": dev.get("bus_id"),
                "driver_version": dev.get("driver_version"),
                "memory_total_mib": None if memory is None else int(memory // (1024 * 1024)),
            }
        )
    return devices, warnings


def firmware_versions(text):
    """Distinct ``Firmware [SPI] Version`` values of ``hl-smi -L``, else the table's HL-SMI version."""
    found = []
    for components in hl_smi.parse_firmware(text).values():
        value = components.get("SPI")
        if value and value not in found:
            found.append(value)
    if not found:
        version = hl_smi.parse_table(text).get("hl_smi_version")
        if version:
            found.append(version)
    return found


def _devices_hpu(args, figures):
    exe = _hl_smi_path(args)
    if exe:
        figures["source"] = "hl-smi"
        rc, out, err = _run([exe, "-Q", DEFAULT_HL_SMI_FIELDS, "-f", "csv,noheader"], args.command_timeout)
        if rc != 0:
            raise TierError("hl-smi -Q exited %d: %s" % (rc, (err or out).strip()[:300]))
        devices, warnings = parse_devices(out)
        if warnings:
            figures["parse_warnings"] = warnings
        try:
            rc_fw, out_fw, dummy = _run([exe, "-L"], args.command_timeout)
            figures["firmware_versions"] = firmware_versions(out_fw) if rc_fw == 0 else []
        except TierError as exc:
            figures["firmware_versions"] = []
            figures["firmware_note"] = str(exc)
        return devices
    torch, reason = _import_torch()
    if torch is None:
        raise TierError("hl-smi not found (%s) and %s" % (args.hl_smi, reason))
    hthpu, reason = _import_habana(torch)
    if hthpu is None:
        raise TierError("hl-smi not found (%s) and %s" % (args.hl_smi, reason))
    figures["source"] = "habana_frameworks"
    count = int(hthpu.device_count())
    name = hthpu.get_device_name() if count else None
    return [{"index": i, "name": name, "bus_id": None, "driver_version": None} for i in range(count)]


def _devices_torch(args, device, figures):
    torch, reason = _import_torch()
    if torch is None:
        raise TierError(reason)
    figures["source"] = "torch"
    figures["torch_version"] = getattr(torch, "__version__", None)
    hip = getattr(torch.version, "hip", None)
    figures["runtime_version"] = hip if device == "rocm" else getattr(torch.version, "cuda", None)
    if device == "rocm" and not hip:
        raise TierError("--device rocm but this torch is not a ROCm build")
    if device == "cuda" and hip:
        raise TierError("--device cuda but this torch is a ROCm build")
    if not torch.cuda.is_available():
        raise TierError("torch.cuda.is_available() is false (torch %s)" % torch.__version__)
    driver = None
    smi = shutil.which("nvidia-smi") if device == "cuda" else None
    if smi:
        try:
            rc, out, dummy = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], args.command_timeout)
            if rc == 0 and out.strip():
                driver = out.strip().splitlines()[0].strip()
        except TierError:
            driver = None
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        bus = None
        if hasattr(props, "pci_bus_id"):
            bus = "%04x:%02x:%02x.0" % (
                getattr(props, "pci_domain_id", 0),
                props.pci_bus_id,
                getattr(props, "pci_device_id", 0),
            )
        devices.append(
            {
                "index": i,
                "name": props.name,
                "bus_id": bus,
                "driver_version": driver,
                "memory_total_mib": int(props.total_memory // (1024 * 1024)),
            }
        )
    return devices


def tier_devices(args, ctx):
    figures = {"device": ctx["device"], "detected_by": ctx["device_how"], "expected_count": args.expected_devices}
    device = ctx["device"]
    if device == "none":
        if args.expected_devices > 0:
            return (
                "fail",
                ("expected %d accelerators, found none (%s)" % (args.expected_devices, ctx["device_how"])),
                figures,
            )
        return "skip", "no accelerator found (%s)" % ctx["device_how"], figures
    if device == "cpu":
        figures["count"] = os.cpu_count()
        figures["devices"] = []
        return "pass", "--device cpu: no accelerator checked, %s CPUs" % os.cpu_count(), figures
    if device == "hpu":
        devices = _devices_hpu(args, figures)
    else:
        devices = _devices_torch(args, device, figures)
    figures["count"] = len(devices)
    figures["devices"] = devices
    names = sorted(set(d.get("name") or "?" for d in devices))
    drivers = sorted(set(d.get("driver_version") for d in devices if d.get("driver_version")))
    figures["names"] = names
    figures["driver_versions"] = drivers
    desc = "%d x %s (%s)" % (len(devices), "/".join(names) or "?", device)
    if drivers:
        desc += ", driver %s" % "/".join(drivers)
    if args.expected_devices > 0:
        if len(devices) < args.expected_devices:
            return "fail", "%s; expected %d" % (desc, args.expected_devices), figures
        if len(devices) > args.expected_devices:
            return "pass", "%s; more than the %d expected" % (desc, args.expected_devices), figures
        return "pass", "%s as expected" % desc, figures
    if not devices:
        return "fail", "%s: the %s tooling lists no device" % (desc, device), figures
    return "pass", desc, figures
