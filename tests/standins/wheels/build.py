# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the STAND-IN wheels used by the Molecule scenarios and the wheelhouse benchmark.

The stand-ins carry the real distribution names and versions of packages that cannot be had
on a machine without Gaudi hardware or GitHub access (the Gaudi PyTorch build, the Habana
PyTorch plugin, vLLM built for an empty target device and vllm-gaudi). They contain only a
few lines of code; every one says it is a stand-in in its metadata Summary and in its code.

Only the standard library is used: each directory holding a standin.json is packed into a
py3-none-any wheel (PEP 427) under the output directory. Output is reproducible (fixed
timestamps), so rebuilding does not change the wheel bytes.

Usage: build.py OUTPUT_DIR [NAME=VERSION ...]
NAME=VERSION builds that stand-in at another version (e.g. the versions of the selected stack
row); its __version__ lines follow.
"""

import base64
import hashlib
import io
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCH = (2020, 1, 1, 0, 0, 0)


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def build(src_dir, out_dir, versions=None):
    with open(os.path.join(src_dir, "standin.json")) as fh:
        meta = json.load(fh)
    dist = meta["name"].replace("-", "_")
    version = (versions or {}).get(meta["name"], meta["version"])
    info = "%s-%s.dist-info" % (dist, version)
    files = []
    root = os.path.join(src_dir, "src")
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(base, name)
            with open(full, "rb") as fh:
                data = fh.read()
            if version != meta["version"]:
                data = data.replace(
                    ('__version__ = "%s"' % meta["version"]).encode(), ('__version__ = "%s"' % version).encode()
                )
            files.append((os.path.relpath(full, root).replace(os.sep, "/"), data))
    # "include": {"path in the wheel": "file relative to this stand-in's directory"}: shared
    # stand-in code (tests/standins) packed into the wheel.
    for path, rel in sorted(meta.get("include", {}).items()):
        with open(os.path.normpath(os.path.join(src_dir, rel)), "rb") as fh:
            files.append((path, fh.read()))
    files.sort()
    metadata = [
        "Metadata-Version: 2.1",
        "Name: %s" % meta["name"],
        "Version: %s" % version,
        "Summary: %s" % meta["summary"],
        "License: GPL-3.0-or-later",
    ]
    for req in meta.get("requires", []):
        metadata.append("Requires-Dist: %s" % req)
    files.append((info + "/METADATA", ("\n".join(metadata) + "\n\n" + meta["summary"] + "\n").encode()))
    files.append(
        (info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: standin-build\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    )
    eps = meta.get("entry_points", {})
    if eps:
        text = ""
        for group in sorted(eps):
            text += "[%s]\n" % group
            for key in sorted(eps[group]):
                text += "%s = %s\n" % (key, eps[group][key])
            text += "\n"
        files.append((info + "/entry_points.txt", text.encode()))
    tops = sorted({path.split("/")[0] for path, _data in files if not path.startswith(info)})
    files.append((info + "/top_level.txt", ("\n".join(tops) + "\n").encode()))
    record = [_record_line(path, data) for path, data in files] + [info + "/RECORD,,"]
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = os.path.join(out_dir, "%s-%s-py3-none-any.whl" % (dist, version))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files:
            zi = zipfile.ZipInfo(path, EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    data = buf.getvalue()
    if not (os.path.exists(wheel) and open(wheel, "rb").read() == data):
        with open(wheel, "wb") as fh:
            fh.write(data)
    return wheel


def main(argv):
    if len(argv) < 2 or not all("=" in arg for arg in argv[2:]):
        sys.stderr.write(__doc__)
        return 2
    out_dir = argv[1]
    versions = dict(arg.split("=", 1) for arg in argv[2:])
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(HERE)):
        src = os.path.join(HERE, name)
        if os.path.isfile(os.path.join(src, "standin.json")):
            print(build(src, out_dir, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
