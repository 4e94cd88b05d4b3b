"""Real LMCache releases for the HPU patch tests (helper, not a test module).

Wheels (0.3.0 only exists as an sdist) are downloaded once with
``pip download --no-deps`` into
``${GVL_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/gaudi-vllm-lmcache}/lmcache-wheels``
and unpacked once into ``.../lmcache-src/<version>/`` (``lmcache/`` and the
dist-info). Tests build site-packages trees from that cache. A test is skipped
only when PyPI cannot be reached and the release is not cached yet.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile

import pytest

ALL_RELEASES = (
    ["0.3.%d" % i for i in range(0, 16) if i != 8]
    + ["0.4.%d" % i for i in range(1, 8)]
    + ["0.5.%d" % i for i in range(0, 7)]
)
NEWEST = ALL_RELEASES[-1]


def cache_root():
    base = os.environ.get("GVL_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "gaudi-vllm-lmcache")
    return base


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def wheel_path(version):
    """Path of the cached wheel (or sdist) of ``version``; downloads it when missing."""
    d = os.path.join(cache_root(), "lmcache-wheels")
    os.makedirs(d, exist_ok=True)
    found = sorted(glob.glob(os.path.join(d, "lmcache-%s-*.whl" % version))
                   + glob.glob(os.path.join(d, "lmcache-%s.tar.gz" % version)))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:",
           "--disable-pip-version-check", "lmcache==%s" % version, "-d", d]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900, check=False)
    found = sorted(glob.glob(os.path.join(d, "lmcache-%s-*.whl" % version))
                   + glob.glob(os.path.join(d, "lmcache-%s.tar.gz" % version)))
    if found:
        return found[0]
    if not _pypi_reachable():
        pytest.skip("PyPI is unreachable and LMCache %s is not cached in %s" % (version, d))
    raise AssertionError("pip download lmcache==%s failed:\n%s" % (version, proc.stdout.decode()))


def source_dir(version):
    """Unpacked release: a directory holding ``lmcache/`` and ``lmcache-<v>.dist-info/``."""
    dest = os.path.join(cache_root(), "lmcache-src", version)
    marker = os.path.join(dest, ".complete")
    if os.path.exists(marker):
        return dest
    archive = wheel_path(version)
    tmp = dest + ".tmp%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if archive.endswith(".whl"):
        with zipfile.ZipFile(archive) as zf:
            members = [n for n in zf.namelist()
                       if n.startswith("lmcache/") or ".dist-info/" in n.split("/", 1)[0] + "/"]
            zf.extractall(tmp, members)
    else:
        # sdist (0.3.0): take lmcache/ and turn PKG-INFO into a dist-info METADATA
        with tarfile.open(archive) as tf:
            tf.extractall(tmp)
        top = os.path.join(tmp, "lmcache-%s" % version)
        shutil.move(os.path.join(top, "lmcache"), os.path.join(tmp, "lmcache"))
        info = os.path.join(tmp, "lmcache-%s.dist-info" % version)
        os.makedirs(info)
        shutil.copy(os.path.join(top, "PKG-INFO"), os.path.join(info, "METADATA"))
        shutil.rmtree(top)
    open(os.path.join(tmp, ".complete"), "w").close()
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(tmp, dest)
    return dest


# Files the tests copy into a minimal site-packages (enough for classification,
# patching and revert; the full tree is used where byte-identity of the whole
# package matters).
_RELEVANT = [
    "lmcache/__init__.py",
    "lmcache/integration/vllm/vllm_v1_adapter.py",
    "lmcache/integration/vllm/utils.py",
    "lmcache/v1/manager.py",
    "lmcache/v1/gpu_connector/__init__.py",
    "lmcache/v1/gpu_connector/hpu_connector.py",
]


def make_site(version, dest, full=False):
    """Build a site-packages directory at ``dest`` with the real files of ``version``."""
    src = source_dir(version)
    os.makedirs(dest, exist_ok=True)
    for info in glob.glob(os.path.join(src, "*.dist-info")):
        shutil.copytree(info, os.path.join(dest, os.path.basename(info)))
    if full:
        shutil.copytree(os.path.join(src, "lmcache"), os.path.join(dest, "lmcache"))
        return dest
    for rel in _RELEVANT:
        s = os.path.join(src, rel)
        if os.path.isfile(s):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(s, os.path.join(dest, rel))
    os.makedirs(os.path.join(dest, "lmcache", "v1"), exist_ok=True)
    return dest


def tree_digest(root):
    """{relative path: bytes} of every file under ``root`` (for byte-identity checks)."""
    out = {}
    for d, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out
