# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-IN for Habana's hl-smi, used only by the validate role's unit tests.

It answers the two calls gaudi_validate.py makes, with output in the vendor's formats:

* ``hl-smi -Q index,name,bus_id,driver_version,memory.total -f csv,noheader[,nounits]``
  prints one CSV line per device (``memory.total`` as ``131072 MiB``, or ``131072``
  with ``nounits``), the shape of the documented ``-f csv`` sample;
* ``hl-smi -L`` prints per-device blocks with ``Firmware [SPI] Version : ...`` lines.

Environment knobs: FAKE_HL_SMI_COUNT (devices, default 8), FAKE_HL_SMI_NAME (HL-325L),
FAKE_HL_SMI_FAIL=1 (exit 1 with an error like a missing driver), FAKE_HL_SMI_GARBAGE=1
(print a line that is not the requested CSV).
"""

import os
import sys


def main(argv):
    count = int(os.environ.get("FAKE_HL_SMI_COUNT", "8"))
    name = os.environ.get("FAKE_HL_SMI_NAME", "HL-325L")
    driver = "1.22.1-97ec1a4"
    if os.environ.get("FAKE_HL_SMI_FAIL"):
        sys.stderr.write("hl-smi: failed to open device: No such file or directory\n")
        return 1
    if "-Q" in argv:
        fields = argv[argv.index("-Q") + 1].split(",")
        fmt = argv[argv.index("-f") + 1] if "-f" in argv else "csv"
        nounits = "nounits" in fmt
        if os.environ.get("FAKE_HL_SMI_GARBAGE"):
            print("Usage: hl-smi [options]")
            return 0
        if "noheader" not in fmt:
            print(", ".join(f + ("" if nounits or not f.startswith("memory") else " [MiB]") for f in fields))
        for i in range(count):
            values = {
                "index": str(i),
                "name": name,
                "bus_id": "0000:%02x:00.0" % (0x3B + i),
                "driver_version": driver,
                "module_id": str((i + 3) % count),
                "memory.total": "131072" if nounits else "131072 MiB",
                "memory.used": "672" if nounits else "672 MiB",
            }
            print(", ".join(values.get(f, "N/A") for f in fields))
        return 0
    if "-L" in argv:
        for i in range(count):
            print("[%d] AIP (accel%d) 0000:%02x:00.0" % (i, i, 0x3B + i))
            print("        Product Name                    : %s" % name)
            print(
                "        Firmware [SPI] Version          : Preboot version "
                "hl-gaudi3-1.22.1-fw-59.2.3-sec-2 (Jun 11 2025 - 10:00:00)"
            )
        return 0
    print("HL-SMI Version:                              hl-1.22.1-fw-59.2.3.0")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
