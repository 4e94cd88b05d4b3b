"""Pack the STAND-IN fixtures of the habana_driver Molecule scenario into one tarball.

The tarball is unpacked at / in the test container and holds:
  srv/habana-standin-repo/   the signed stand-in APT repository (from build-standin-habana-repo.sh)
  srv/habana-standin/sys/bus/pci/devices/<bdf>/{vendor,device,uevent}
                             a fake sysfs tree: N Gaudi3 devices (1da3:1060) plus two devices
                             the role must not count (an Intel NIC, a Habana FPGA id ff0d)
  srv/habana-standin/efivars/SecureBoot-<guid>
                             an EFI variable that says Secure Boot is disabled
  etc/habanalabs-standin/devices
                             the device count the stand-in hl-smi reports

Usage: python3 make_fixtures.py REPO_TARBALL DEVICE_COUNT OUTPUT_TARBALL
"""

import io
import sys
import tarfile

# The sysfs tree lists the devices the stand-in hl-smi reports, at the same bus IDs and in the
# same order (this script's directory is on sys.path when it runs).
from hl_smi import BUS_IDS

OTHERS = [("0000:18:00.0", "8086", "1593", "020000"), ("0000:c0:00.0", "1da3", "ff0d", "120000")]
SECURE_BOOT = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def main(repo_tarball, count, output):
    count = int(count)
    devices = [(bdf, "1da3", "1060", "120000") for bdf in BUS_IDS[:count]] + OTHERS
    with tarfile.open(output, "w:gz") as out:
        for path in (
            "srv",
            "srv/habana-standin-repo",
            "srv/habana-standin",
            "srv/habana-standin/efivars",
            "etc",
            "etc/habanalabs-standin",
        ):
            add_dir(out, path)
        with tarfile.open(repo_tarball, "r:gz") as repo:
            for member in repo.getmembers():
                name = member.name[2:] if member.name.startswith("./") else member.name
                if not name or name == ".":
                    continue
                member.name = "srv/habana-standin-repo/" + name
                member.uid = member.gid = 0
                member.uname = member.gname = "root"
                out.addfile(member, repo.extractfile(member) if member.isfile() else None)
        parts = "srv/habana-standin/sys/bus/pci/devices".split("/")
        for i in range(3, len(parts) + 1):
            add_dir(out, "/".join(parts[:i]))
        for bdf, vendor, device, cls in devices:
            base = "srv/habana-standin/sys/bus/pci/devices/" + bdf
            add_dir(out, base)
            add(out, base + "/vendor", ("0x%s\n" % vendor).encode())
            add(out, base + "/device", ("0x%s\n" % device).encode())
            add(
                out,
                base + "/uevent",
                (
                    "PCI_CLASS=%s\nPCI_ID=%s:%s\nPCI_SUBSYS_ID=%s:0001\nPCI_SLOT_NAME=%s\n"
                    % (cls, vendor.upper(), device.upper(), vendor.upper(), bdf)
                ).encode(),
            )
        # 4 attribute bytes (non-volatile, boot and runtime access) + value 0 = disabled
        add(out, "srv/habana-standin/efivars/" + SECURE_BOOT, b"\x06\x00\x00\x00\x00")
        add(out, "etc/habanalabs-standin/devices", ("%d\n" % count).encode())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
