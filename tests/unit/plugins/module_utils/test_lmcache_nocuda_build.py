# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LMCache built from its real PyPI sdist without CUDA (lmcache_install_source: sdist-nocuda).

Builds the sdist of the default stack row's LMCache release with NO_CUDA_EXT=1 BUILD_WITH_HPU=1
(cached by lmcache_wheels.nocuda_wheel, keyed by version + build environment), installs the
wheel with --no-deps into a fresh virtualenv plus the requirement set that
plugins/module_utils/_lmcache_requirements.py keeps, and imports LMCache's engine modules
(the HPU connector with the stand-in habana_frameworks) in that interpreter. It shows that no
CUDA library is mapped (/proc/self/maps), that lmcache.c_ops is LMCache's Python fallback and
no compiled extension, and that no installed distribution is a CUDA one.

The non-LMCache dependencies (torch 2.13.0, the CPU build from PyTorch's CPU index, and the
kept requirements) are
installed once into a cached layer next to the build and reached through a .pth file, so a
warm run builds and downloads nothing. Network-marked: fails, never skips, offline.
"""

import glob
import hashlib
import json
import os
import subprocess
import sys

import lmcache_wheels
import pytest
import yaml

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _lmcache_requirements as reqs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
STANDIN_HABANA = os.path.join(ROOT, "tests", "standins", "habana_frameworks_pkg")
TORCH_SPEC = os.environ.get("GVL_TORCH_SPEC", "torch==2.13.0")
# torch alone from PyTorch's CPU wheel index, as scripts/venv.sh installs it (PyPI's Linux torch
# wheels are CUDA builds that pull nvidia-* packages); its own requirements come from the
# ordinary index. GVL_TORCH_INDEX_URL: a mirror, or empty for the ordinary index only.
TORCH_INDEX = os.environ.get("GVL_TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")
TORCH_PIP_ARGS = ["--no-deps", "--retries", "1"] + (["--extra-index-url", TORCH_INDEX] if TORCH_INDEX else [])
TORCH_REQUIREMENTS = [
    "filelock",
    "typing-extensions>=4.10.0",
    "sympy>=1.13.3",
    "networkx>=2.5.1",
    "jinja2",
    "fsspec>=0.8.5",
]
ENGINE_MODULES = [
    "lmcache.v1.config",
    "lmcache.v1.memory_management",
    "lmcache.v1.storage_backend",
    "lmcache.v1.cache_engine",
    "lmcache.v1.manager",
    "lmcache.v1.gpu_connector",
    "lmcache.v1.gpu_connector.hpu_connector",
]
CUDA_LIBS = ("libcudart", "libtorch_cuda", "libcuda.so", "libnvrtc", "libcublas", "libcudnn", "libnccl")
PROBE = r"""
import importlib, json, sys
from importlib import metadata
mods = sys.argv[1].split(",")
failed = {}
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as exc:
        failed[m] = "%s: %s" % (type(exc).__name__, exc)
c_ops = sys.modules.get("lmcache.c_ops")
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "/" in l and ".so" in l})
print("PROBE " + json.dumps({
    "failed": failed,
    "c_ops": getattr(c_ops, "__name__", None),
    "libs": libs,
    "dists": sorted({(d.metadata["Name"] or "") for d in metadata.distributions()}),
    "lmcache": metadata.version("lmcache"),
    "lmcache_file": importlib.import_module("lmcache").__file__,
}))
"""


def default_version():
    with open(os.path.join(ROOT, "meta", "gaudi_stack.yml")) as fh:
        matrix = yaml.safe_load(fh)
    row = [r for r in matrix["rows"] if r["id"] == matrix["default"]][0]
    assert row["lmcache_install_source"] == "sdist-nocuda", row["id"]
    return row["lmcache_version"]


def run(cmd, what, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=3600, **kw)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "%s failed (rc %d):\n%s" % (what, proc.returncode, out[-4000:])
    return out


def site_packages(python):
    return run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "purelib").strip()


def deps_layer(requirements):
    """Cached virtualenv with torch and ``requirements`` (not LMCache); its site-packages."""
    key = hashlib.sha256(
        json.dumps([TORCH_SPEC, TORCH_PIP_ARGS, TORCH_REQUIREMENTS, requirements]).encode()
    ).hexdigest()[:12]
    path = os.path.join(lmcache_wheels.cache_root(), "lmcache-nocuda", "deps-%s" % key)
    if not os.path.exists(os.path.join(path, ".complete")):
        py = lmcache_wheels._venv(path + ".build", [])
        run([py, "-m", "pip", "install", "-q"] + TORCH_PIP_ARGS + [TORCH_SPEC], "pip install %s" % TORCH_SPEC)
        run(
            [py, "-m", "pip", "install", "-q"] + TORCH_REQUIREMENTS + requirements,
            "pip install torch's and LMCache's non-CUDA requirements",
        )
        os.rename(path + ".build", path)  # venv paths are absolute: reach it only through a .pth
        open(os.path.join(path, ".complete"), "w").close()
    return glob.glob(os.path.join(path, "lib", "python*", "site-packages"))[0]


@pytest.fixture(scope="module")
def built():
    version = default_version()
    wheel = lmcache_wheels.nocuda_wheel(version)
    return version, wheel


def test_wheel_is_pure_and_carries_no_extension(built):
    version, wheel = built
    assert os.path.basename(wheel) == "lmcache-%s-py3-none-any.whl" % version
    assert reqs.wheel_is_pure(wheel)
    name, got, requires = reqs.parse_metadata(reqs.wheel_metadata(wheel))
    assert (name, got) == ("lmcache", version)
    # setup.py still declares the CUDA requirements (requirements/common.txt + cuda13_core.txt) ...
    _kept, excluded, _skipped = reqs.split_requirements(requires)
    assert {reqs.requirement_name(r) for r in excluded} >= {"cupy-cuda13x", "nixl-cu13", "cufile-python", "torch"}


def test_engine_imports_without_cuda(built, tmp_path):
    version, wheel = built
    name, got, requires = reqs.parse_metadata(reqs.wheel_metadata(wheel))
    kept, _excluded, _skipped = reqs.split_requirements(requires)
    deps = deps_layer(kept)
    venv = str(tmp_path / "venv")
    run([sys.executable, "-m", "venv", venv], "venv")
    py = os.path.join(venv, "bin", "python")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], "pip install --no-deps %s" % wheel)
    with open(os.path.join(site_packages(py), "gvl-lmcache-deps.pth"), "w") as fh:
        fh.write(deps + "\n")
    env = dict(os.environ, PYTHONPATH=STANDIN_HABANA)
    env.pop("PT_HPU_GPU_MIGRATION", None)
    out = run(
        [py, "-c", PROBE, ",".join(ENGINE_MODULES)], "importing LMCache's engine modules", env=env, cwd=str(tmp_path)
    )
    probe = json.loads([line for line in out.splitlines() if line.startswith("PROBE ")][-1][len("PROBE ") :])
    assert probe["failed"] == {}
    assert probe["lmcache"] == version
    assert probe["lmcache_file"].startswith(venv)
    # torch was loaded (its CPU library is mapped), no CUDA library was
    assert any("libtorch_cpu" in lib for lib in probe["libs"]), probe["libs"]
    assert [lib for lib in probe["libs"] if any(c in os.path.basename(lib) for c in CUDA_LIBS)] == []
    # lmcache.c_ops is LMCache's Python fallback; no compiled extension is installed
    assert probe["c_ops"] == "lmcache.non_cuda_equivalents"
    assert glob.glob(os.path.join(site_packages(py), "lmcache", "*.so")) == []
    # no CUDA distribution among everything importable in that interpreter
    assert "lmcache" in [reqs.normalize(d) for d in probe["dists"]]
    assert "torch" in [reqs.normalize(d) for d in probe["dists"]]
    assert reqs.forbidden_distributions(probe["dists"]) == []
