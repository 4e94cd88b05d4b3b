# STAND-IN for Intel Gaudi hl-smi (not the vendor tool). The one hl-smi stand-in of the
# collection's tests: shipped in the stand-in habanalabs-firmware-tools package of the
# habana_driver scenario's local repository (scripts/build-standin-habana-repo.sh) and run from
# this tree by the validate role's unit tests and scenario. It talks to no hardware: it prints
# the output formats of the real hl-smi (default table, -Q ... -f csv[,noheader][,nounits],
# -L/-q firmware lines) for a configurable number of Gaudi3 (HL-325L) devices.
#
# Configuration (all optional; an environment variable wins over the file):
#   HL_SMI_STANDIN_COUNT  or /etc/habanalabs-standin/devices   devices (default 8, at most 8)
#   HL_SMI_STANDIN_FAIL=1 or /etc/habanalabs-standin/driver-not-loaded
#                                       fail like a host whose driver is not loaded
#   HL_SMI_STANDIN_NAME                 product name (default HL-325L)
#   HL_SMI_STANDIN_GARBAGE=1            answer -Q with a line that is not the requested CSV
# The versions below are replaced when the stand-in package is built; run from the source
# tree it reports the defaults given here.
"""hl-smi STAND-IN (not the vendor tool): prints sample output for fake Gaudi3 devices."""

import os
import sys


def _built(value, default):
    return default if value.startswith("@") else value


DRIVER_VERSION = _built("@DRIVER_VERSION@", "1.22.1-97ec1a4")
HL_SMI_VERSION = _built("@HL_SMI_VERSION@", "hl-1.22.1-fw-59.2.3.0")
SPI_VERSION = _built("@SPI_VERSION@", "Preboot version hl-gaudi3-1.22.1-fw-59.2.3-sec-2 (Jun 11 2025 - 10:00:00)")
CONF_DIR = os.environ.get("HL_SMI_STANDIN_DIR", "/etc/habanalabs-standin")
NAME = os.environ.get("HL_SMI_STANDIN_NAME", "HL-325L")

BUS_IDS = [
    "0000:19:00.0",
    "0000:1a:00.0",
    "0000:33:00.0",
    "0000:34:00.0",
    "0000:9a:00.0",
    "0000:9b:00.0",
    "0000:b3:00.0",
    "0000:b4:00.0",
]
MODULE_IDS = [1, 0, 3, 2, 5, 4, 7, 6]
MEM_TOTAL, MEM_USED = 131072, 672
POWER, POWER_CAP, TEMP, UTIL = 226, 900, 36, 0
# The CSV header carries the memory unit, as in the real output ("memory.total [MiB]").
HEADER_UNITS = {"memory.total": "MiB", "memory.used": "MiB", "memory.free": "MiB"}


def device_count():
    if os.environ.get("HL_SMI_STANDIN_COUNT"):
        return max(0, min(len(BUS_IDS), int(os.environ["HL_SMI_STANDIN_COUNT"])))
    try:
        with open(os.path.join(CONF_DIR, "devices")) as handle:
            return max(0, min(len(BUS_IDS), int(handle.read().strip() or 0)))
    except (OSError, ValueError):
        return 8


def devices():
    for idx in range(device_count()):
        yield {
            "index": str(idx),
            "module_id": str(MODULE_IDS[idx]),
            "name": NAME,
            "bus_id": BUS_IDS[idx],
            "driver_version": DRIVER_VERSION,
            "uuid": "01P4-HL3090A0-18-STANDIN-00-00-%02d" % idx,
            "serial": "STANDIN%04d" % idx,
            "memory.total": (MEM_TOTAL, "MiB"),
            "memory.used": (MEM_USED, "MiB"),
            "memory.free": (MEM_TOTAL - MEM_USED, "MiB"),
            "temperature.aip": (TEMP, "C"),
            "power.draw": (POWER, "W"),
            "utilization.aip": (UTIL, "%"),
        }


def usage(code):
    sys.stdout.write(
        "hl-smi STAND-IN for tests (not the Intel Gaudi tool)\n"
        "usage: hl-smi [-L|-q] [-Q FIELDS -f csv[,noheader][,nounits]]\n"
    )
    sys.exit(code)


def table():
    out = [
        "+-----------------------------------------------------------------------------+",
        "| HL-SMI Version:                              %-31s|" % HL_SMI_VERSION,
        "| Driver Version:                                     %-24s|" % DRIVER_VERSION,
        "| Nic Driver Version:                                 %-24s|" % DRIVER_VERSION,
        "|-------------------------------+----------------------+----------------------+",
        "| AIP  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | AIP-Util  Compute M. |",
        "|===============================+======================+======================|",
    ]
    for dev in devices():
        mem = "%dMiB / %dMiB" % (dev["memory.used"][0], dev["memory.total"][0])
        out.append("|%4s  %-20sN/A  | %s     N/A |                   0  |" % (dev["index"], dev["name"], dev["bus_id"]))
        out.append(
            "| N/A   %2dC   N/A   %3dW / %3dW | %20s | %5d%%           N/A |" % (TEMP, POWER, POWER_CAP, mem, UTIL)
        )
        out.append("|-------------------------------+----------------------+----------------------+")
    out += [
        "| Compute Processes:                                               AIP Memory |",
        "|  AIP       PID   Type   Process name                             Usage      |",
        "|=============================================================================|",
        "|   0        N/A   N/A    N/A                                      N/A        |",
        "+=============================================================================+",
    ]
    return "\n".join(out) + "\n"


def query(fields, fmt):
    opts = [o.strip() for o in fmt.split(",")]
    if "csv" not in opts:
        sys.stderr.write("hl-smi STAND-IN: only -f csv is implemented\n")
        sys.exit(2)
    lines = []
    if "noheader" not in opts:
        header = []
        for field in fields:
            unit = HEADER_UNITS.get(field)
            header.append("%s [%s]" % (field, unit) if unit else field)
        lines.append(", ".join(header))
    for dev in devices():
        row = []
        for field in fields:
            if field not in dev:
                sys.stderr.write('hl-smi STAND-IN: field "%s" is not valid\n' % field)
                sys.exit(2)
            value = dev[field]
            if isinstance(value, tuple):
                value = str(value[0]) if "nounits" in opts else "%s %s" % value
            row.append(value)
        lines.append(", ".join(row))
    return "\n".join(lines) + "\n"


def listing():
    out = [
        "================ HL-SMI LOG ================",
        "Driver Version                            : %s" % DRIVER_VERSION,
        "Nic Driver Version                        : %s" % DRIVER_VERSION,
        "",
    ]
    for dev in devices():
        out += [
            "[%s] AIP (accel%s) %s" % (dev["index"], dev["index"], dev["bus_id"]),
            "    Product Name                          : %s" % dev["name"],
            "    Serial Number                         : %s" % dev["serial"],
            "    Module ID                             : %s" % dev["module_id"],
            "    Firmware [SPI] Version                : %s" % SPI_VERSION,
            "    Firmware [FIT] Version                : %s (stand-in)" % HL_SMI_VERSION,
            "",
        ]
    return "\n".join(out)


def main(argv):
    if "-h" in argv or "--help" in argv:
        usage(0)
    if os.environ.get("HL_SMI_STANDIN_FAIL") or os.path.exists(os.path.join(CONF_DIR, "driver-not-loaded")):
        sys.stderr.write(
            "hl-smi: failed to open device: No such file or directory "
            "(STAND-IN: simulating a host where the habanalabs driver is not loaded)\n"
        )
        return 1
    if not argv:
        sys.stdout.write(table())
        return 0
    if argv[0] in ("-L", "--list-aips", "-q", "--query"):
        sys.stdout.write(listing())
        return 0
    fields, fmt = None, "csv"
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-Q", "--query-aip") and args:
            fields = [f.strip() for f in args.pop(0).split(",") if f.strip()]
        elif arg.startswith("--query-aip="):
            fields = [f.strip() for f in arg.split("=", 1)[1].split(",") if f.strip()]
        elif arg == "-f" and args:
            fmt = args.pop(0)
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
        else:
            usage(2)
    if not fields:
        usage(2)
    if os.environ.get("HL_SMI_STANDIN_GARBAGE"):
        sys.stdout.write("Usage: hl-smi [options]\n")
        return 0
    sys.stdout.write(query(fields, fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
