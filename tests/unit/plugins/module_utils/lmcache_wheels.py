"""Real LMCache releases for the HPU patch tests (helper, not a test module).

Every release is fetched once from PyPI into
``${GVL_CACHE_DIR:-$HOME/.cache/gaudi-vllm-lmcache}/lmcache-wheels`` (wheels with
``pip download --no-deps``; 0.3.0 exists only as an sdist, which pip would build to read its
metadata, so it is fetched from PyPI's simple index and checked against the sha256 the index
lists) and unpacked once into ``.../lmcache-src/<version>/`` (``lmcache/`` and the dist-info,
with the wheel's RECORD). After the first run no network is needed.

Tests that use these releases carry the ``network`` marker (pytest.ini). They never skip:
when a release is neither cached nor downloadable the test fails and says so, so that an
offline CI cannot lose the guarantee silently (deselect with ``-m "not network"`` on purpose).
"""

import base64
import binascii
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile

ALL_RELEASES = (
    [
        "0.3.0",
        "0.3.1",
        "0.3.1.post1",
        "0.3.2",
        "0.3.3",
        "0.3.4",
        "0.3.5",
        "0.3.6",
        "0.3.7",
        "0.3.9",
        "0.3.9.post1",
        "0.3.9.post2",
        "0.3.10",
        "0.3.10.post1",
        "0.3.10.post2",
    ]
    + ["0.3.%d" % i for i in range(11, 16)]
    + ["0.4.%d" % i for i in range(1, 8)]
    + ["0.5.%d" % i for i in range(0, 7)]
)
NEWEST = ALL_RELEASES[-1]
SDIST_ONLY = ("0.3.0",)


def version_key(version):
    """'0.3.10.post2' -> (0, 3, 10, 2); '0.3.10' -> (0, 3, 10, 0)."""
    main, _sep, post = version.partition(".post")
    return tuple(int(x) for x in main.split(".")) + (int(post or 0),)


def cache_root():
    base = os.environ.get("GVL_CACHE_DIR")
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".cache", "gaudi-vllm-lmcache")
    return base


def _cached(d, version):
    return sorted(
        glob.glob(os.path.join(d, "lmcache-%s-*.whl" % version))
        + glob.glob(os.path.join(d, "lmcache-%s.tar.gz" % version))
    )


def _fetch_sdist(version, d):
    """Fetch lmcache-<version>.tar.gz through PyPI's simple index (JSON), sha256-checked."""
    req = urllib.request.Request(
        "https://pypi.org/simple/lmcache/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.loads(resp.read().decode("utf-8"))
    name = "lmcache-%s.tar.gz" % version
    entry = [f for f in index.get("files", []) if f.get("filename") == name]
    if not entry:
        raise AssertionError("PyPI's simple index lists no %s" % name)
    with urllib.request.urlopen(entry[0]["url"], timeout=300) as resp:
        data = resp.read()
    want = entry[0].get("hashes", {}).get("sha256")
    if hashlib.sha256(data).hexdigest() != want:
        raise AssertionError("%s: sha256 %s, PyPI lists %s" % (name, hashlib.sha256(data).hexdigest(), want))
    tmp = os.path.join(d, name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(d, name))


def wheel_path(version):
    """Path of the cached wheel (or sdist) of ``version``; downloads it when missing.

    Raises AssertionError (never skips) when the release cannot be had.
    """
    d = os.path.join(cache_root(), "lmcache-wheels")
    os.makedirs(d, exist_ok=True)
    found = _cached(d, version)
    if found:
        return found[0]
    detail = ""
    try:
        if version in SDIST_ONLY:
            _fetch_sdist(version, d)
        else:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--disable-pip-version-check",
                "lmcache==%s" % version,
                "-d",
                d,
            ]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900, check=False)
            detail = proc.stdout.decode("utf-8", "replace")[-2000:]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        detail = "%s: %s" % (type(exc).__name__, exc)
    found = _cached(d, version)
    if found:
        return found[0]
    raise AssertionError(
        "LMCache %s is not cached in %s and could not be downloaded from PyPI; these tests need "
        "the real releases (run once with network access, or deselect them with -m 'not network'):\n%s"
        % (version, d, detail)
    )


def sdist_path(version):
    """Path of the cached PyPI sdist ``lmcache-<version>.tar.gz``; downloads it when missing.

    Fetched through PyPI's simple index and checked against the sha256 it lists (``pip
    download`` of an sdist would run its build backend, which needs torch).
    """
    d = os.path.join(cache_root(), "lmcache-wheels")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "lmcache-%s.tar.gz" % version)
    if os.path.exists(path):
        return path
    detail = ""
    try:
        _fetch_sdist(version, d)
    except (OSError, ValueError, AssertionError) as exc:
        detail = "%s: %s" % (type(exc).__name__, exc)
    if os.path.exists(path):
        return path
    raise AssertionError(
        "The LMCache %s sdist is not cached in %s and could not be downloaded from PyPI; run once "
        "with network access, or deselect with -m 'not network':\n%s" % (version, d, detail)
    )


# How the collection builds LMCache for Gaudi and CPU nodes (roles/lmcache defaults
# lmcache_build_env / lmcache_build_requirements): vllm-gaudi's LMCache CI
# (tests/full_tests/ci_gsm8k_tests.sh of vllm-project/vllm-gaudi PR 778) installs LMCache with
# NO_CUDA_EXT=1 BUILD_WITH_HPU=1; setup.py of the 0.4.5 to 0.4.7 sdists reads NO_CUDA_EXT
# (no compiled extension) and not BUILD_WITH_HPU.
NOCUDA_ENV = {"NO_CUDA_EXT": "1", "BUILD_WITH_HPU": "1"}
BUILD_REQUIREMENTS = ["setuptools>=77.0.3,<81.0.0", "setuptools_scm>=8", "wheel", "packaging>=24.2"]


def _run(cmd, what, env=None, timeout=1800):
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise AssertionError("%s: %s: %s" % (what, type(exc).__name__, exc))
    if proc.returncode != 0:
        raise AssertionError(
            "%s failed (rc %d): %s\n%s"
            % (what, proc.returncode, " ".join(cmd), proc.stdout.decode("utf-8", "replace")[-3000:])
        )
    return proc.stdout.decode("utf-8", "replace")


def nocuda_key(version, env=None, build_requirements=None):
    """Cache key of a no-CUDA build: LMCache version + build environment + Python version."""
    data = {
        "version": version,
        "env": dict(sorted((env or NOCUDA_ENV).items())),
        "build_requirements": list(build_requirements or BUILD_REQUIREMENTS),
        "python": "%d.%d" % sys.version_info[:2],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def _venv(path, packages, extra_args=()):
    """A virtualenv at ``path`` with ``packages`` (built once: a ``.complete`` marker)."""
    if os.path.exists(os.path.join(path, ".complete")):
        return os.path.join(path, "bin", "python")
    shutil.rmtree(path, ignore_errors=True)
    _run([sys.executable, "-m", "venv", path], "venv %s" % path)
    py = os.path.join(path, "bin", "python")
    if packages:
        _run(
            [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + list(extra_args) + list(packages),
            "pip install into %s" % path,
        )
    open(os.path.join(path, ".complete"), "w").close()
    return py


def nocuda_wheel(version, env=None):
    """LMCache ``version`` built from its PyPI sdist with ``env`` (default NOCUDA_ENV).

    Cached in ``<cache>/lmcache-nocuda/<version>-<key>/`` (key: nocuda_key), so a warm run
    does not rebuild. Built like roles/lmcache/tasks/install_sdist_nocuda.yml does: ``pip
    wheel --no-deps --no-build-isolation`` in a builder virtualenv that holds the build
    requirements only (no torch: with NO_CUDA_EXT=1 setup.py never imports it).
    """
    env = dict(env or NOCUDA_ENV)
    key = nocuda_key(version, env)
    base = os.path.join(cache_root(), "lmcache-nocuda")
    out = os.path.join(base, "%s-%s" % (version, key))
    found = glob.glob(os.path.join(out, "lmcache-%s-*.whl" % version))
    if found:
        return found[0]
    builder = _venv(os.path.join(base, "builder-%s" % key), BUILD_REQUIREMENTS)
    tmp = out + ".tmp%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    build_env = dict(os.environ, **env)
    _run(
        [builder, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"]
        + ["--wheel-dir", tmp, sdist_path(version)],
        "building LMCache %s from its sdist with %s" % (version, env),
        env=build_env,
    )
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return glob.glob(os.path.join(out, "lmcache-%s-*.whl" % version))[0]


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
            members = [
                n for n in zf.namelist() if n.startswith("lmcache/") or n.split("/", 1)[0].endswith(".dist-info")
            ]
            zf.extractall(tmp, members)
    else:
        # sdist (0.3.0): take lmcache/ and turn PKG-INFO into a dist-info METADATA (no RECORD)
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


def make_site(version, dest, full=False):
    """Build a site-packages directory at ``dest`` with the real files of ``version``.

    By default every ``.py`` file of the package and the dist-info (with RECORD) are copied,
    which is all that classification, patching and revert read; ``full`` copies the
    compiled extensions and data files too.
    """
    src = source_dir(version)
    os.makedirs(dest, exist_ok=True)
    for info in glob.glob(os.path.join(src, "*.dist-info")):
        shutil.copytree(info, os.path.join(dest, os.path.basename(info)))
    if full:
        shutil.copytree(os.path.join(src, "lmcache"), os.path.join(dest, "lmcache"))
        return dest
    shutil.copytree(
        os.path.join(src, "lmcache"),
        os.path.join(dest, "lmcache"),
        ignore=lambda d, names: [n for n in names if not n.endswith(".py") and not os.path.isdir(os.path.join(d, n))],
    )
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


def record_hashes(site):
    """{relpath: sha256 hex} for the package files listed in the wheel's RECORD."""
    out = {}
    for record in glob.glob(os.path.join(site, "lmcache-*.dist-info", "RECORD")):
        with open(record) as f:
            for line in f:
                parts = line.strip().rsplit(",", 2)
                if len(parts) == 3 and parts[0].startswith("lmcache/") and parts[1].startswith("sha256="):
                    b64 = parts[1][len("sha256=") :]
                    raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
                    out[parts[0]] = binascii.hexlify(raw).decode("ascii")
    return out


def record_mismatches(site):
    """Package files that are present and differ from RECORD, and files RECORD does not list."""
    record = record_hashes(site)
    changed, extra = [], []
    for rel, digest in sorted(record.items()):
        p = os.path.join(site, rel)
        if os.path.exists(p):
            with open(p, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    changed.append(rel)
    pkg = os.path.join(site, "lmcache")
    for d, dirs, files in os.walk(pkg):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for name in files:
            rel = os.path.relpath(os.path.join(d, name), site).replace(os.sep, "/")
            if rel not in record:
                extra.append(rel)
    return changed, sorted(extra)
