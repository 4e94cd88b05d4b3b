# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Detect LMCache's HPU support per version; apply or revert the HPU patch.

Standard library only, so that this file can also be copied next to a script and
imported as a plain module (``import lmcache_hpu_patch``); see :func:`classify`.

How an install is recognised (never by importing LMCache, which pulls in torch
and vLLM): the version comes from ``lmcache-<v>.dist-info/METADATA`` (or an
``.egg-info``), the files are read by path. Every LMCache release that needs the
patch (0.3.6 to 0.4.2) has its pristine files listed below by sha256; each
release maps to one *shape*, a list of exact-text edits whose anchors must occur
exactly as often as expected. The edits are reversible, so a patched file is
recognised by undoing the edits and finding the pristine sha256 again, and a
revert is byte-exact with or without a backup.

Classifications:

* ``native``      LMCache 0.4.3 or later (``lmcache/v1/gpu_connector/hpu_connector.py``).
* ``patchable``   a known pristine shape (or a partial / connector-less patch).
* ``patched``     this collection's patch in place, connector file intact.
* ``unsupported`` older than 0.3.6 (0.3.0 to 0.3.5: no startup line and device
                  block this patch is anchored on), or files that match no known
                  shape (edited by hand, unknown build).
* ``missing``     no LMCache in the given directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

PATCH_NAME = "gaudi.vllm_lmcache hpu_patch"
CONNECTOR_RELPATH = "lmcache/v1/gaudi_hpu_connector.py"
# sha256 of plugins/module_utils/hpu_kv_transfer.py, installed byte for byte as
# CONNECTOR_RELPATH (a unit test keeps the two in step).
CONNECTOR_SHA256 = "f4b788dfe9d070505055a791a5b06fcbd9579e92f97acbdeafa011b9ab44474c"
NATIVE_CONNECTOR_RELPATH = "lmcache/v1/gpu_connector/hpu_connector.py"
BACKUP_SUFFIX = ".hpu_patch.orig"
OLDEST_SUPPORTED = (0, 3, 6)
FIRST_NATIVE = (0, 4, 3)

ADAPTER = "lmcache/integration/vllm/vllm_v1_adapter.py"
UTILS = "lmcache/integration/vllm/utils.py"
MANAGER = "lmcache/v1/manager.py"
CONNECTOR_INIT = "lmcache/v1/gpu_connector/__init__.py"

# Module-level block added after ``import torch`` in every patched file.
_HELPERS = '''import torch

# >>> gaudi.vllm_lmcache hpu_patch: Intel Gaudi (HPU) support >>>
try:  # present only on Intel Gaudi hosts
    import habana_frameworks.torch.core as htcore
except ImportError:
    htcore = None


def _gvl_hpu_is_available():
    # HPU is checked before CUDA: with PT_HPU_GPU_MIGRATION=1,
    # torch.cuda.is_available() is True on Gaudi hosts as well.
    hpu = getattr(torch, "hpu", None)
    try:
        return hpu is not None and bool(hpu.is_available())
    except Exception:
        return False


def _gvl_device_type():
    return "hpu" if _gvl_hpu_is_available() else "cuda"


def _gvl_mark_step():
    if htcore is not None and _gvl_hpu_is_available():
        htcore.mark_step()


def _gvl_hpu_connector_cls():
    # First Party
    from lmcache.v1.gaudi_hpu_connector import VLLMPagedMemHPUConnectorV2

    return VLLMPagedMemHPUConnectorV2


# <<< gaudi.vllm_lmcache hpu_patch <<<
'''


def _insert_after(anchor, text):
    return (anchor, anchor + text)


def _insert_before(anchor, text):
    return (anchor, text + anchor)


def _elif_before(anchor, branch):
    """Put an ``if`` branch before the ``if`` that starts ``anchor`` (now ``elif``)."""
    stripped = anchor.lstrip(" ")
    indent = anchor[:len(anchor) - len(stripped)]
    return (anchor, branch + indent + "el" + stripped)


def _layerwise_guard(indent, cond):
    return (
        indent + "if " + cond + ":\n"
        + indent + "    raise ValueError(\n"
        + indent + '        "LMCache layerwise mode (use_layerwise) is not supported on HPU "\n'
        + indent + '        "by the gaudi.vllm_lmcache HPU patch; set use_layerwise to false"\n'
        + indent + "    )\n"
    )


_OP_IMPORT = ("\nimport torch\n", "\n" + _HELPERS)

_OP_WAIT_FOR_SAVE = _insert_after(
    '        """Blocking until the KV cache is saved to the connector buffer."""\n',
    "        _gvl_mark_step()  # gaudi.vllm_lmcache hpu_patch\n",
)

_OP_WAIT_FOR_LAYER_LOAD = _insert_after(
    '        Args:\n            layer_name: the name of that layer\n        """\n',
    "        _gvl_mark_step()  # gaudi.vllm_lmcache hpu_patch\n",
)

_OP_LOG_LINE = _insert_after(
    '            f"LMCache initialized for role {role} with version {utils.get_version()}, "\n',
    '            f"device type {_gvl_device_type()}, "  # gaudi.vllm_lmcache hpu_patch\n',
)

# --- shape "adapter_cuda" (0.3.6 - 0.3.9): torch.cuda hard-coded in the adapter
_S1_DEVICE_OLD = (
    "    num_gpus = torch.cuda.device_count()\n"
    "    local_rank = parallel_config.rank % num_gpus\n"
    "    torch.cuda.set_device(local_rank)\n"
    '    device = torch.device(f"cuda:{local_rank}")\n'
)
_S1_DEVICE_NEW = (
    "    # gaudi.vllm_lmcache hpu_patch: HPU first, CUDA exactly as upstream\n"
    "    if _gvl_hpu_is_available():\n"
    "        num_gpus = torch.hpu.device_count()\n"
    "        local_rank = parallel_config.rank % num_gpus\n"
    "        torch.hpu.set_device(local_rank)\n"
    '        device = torch.device(f"hpu:{local_rank}")\n'
    + _layerwise_guard("        ", "lmcache_config.use_layerwise")
    + "    else:\n"
    "        num_gpus = torch.cuda.device_count()\n"
    "        local_rank = parallel_config.rank % num_gpus\n"
    "        torch.cuda.set_device(local_rank)\n"
    '        device = torch.device(f"cuda:{local_rank}")\n'
)
_S1_CONNECTOR = (
    "        vllm_gpu_connector = VLLMPagedMemGPUConnectorV2(\n",
    "        vllm_gpu_connector = (  # gaudi.vllm_lmcache hpu_patch\n"
    "            _gvl_hpu_connector_cls()\n"
    '            if device.type == "hpu"\n'
    "            else VLLMPagedMemGPUConnectorV2\n"
    "        )(\n",
)
_S1_INIT = _insert_after(
    "        self._stats_monitor = LMCStatsMonitor.GetOrCreate()\n",
    "        self.device_type = _gvl_device_type()  # gaudi.vllm_lmcache hpu_patch\n",
)
_S1_LOG_LINE = _insert_after(
    '            f"LMCache initialized for role {role} with version {utils.get_version()}, "\n',
    '            f"device type {self.device_type}, "  # gaudi.vllm_lmcache hpu_patch\n',
)
_S1_SLOT = ("slot_mapping.cuda()", "slot_mapping.to(_gvl_device_type())")


def _platform_device_branch(indent):
    return _elif_before(
        indent + "if current_platform.is_cuda_alike():\n"
        + indent + '    logger.info("CUDA device is available. Using CUDA for LMCache engine.")\n',
        indent + "if _gvl_hpu_is_available():  # gaudi.vllm_lmcache hpu_patch\n"
        + indent + '    logger.info("HPU device is available. Using HPU for LMCache engine.")\n'
        + indent + "    torch_dev = torch.hpu\n"
        + indent + '    dev_name = "hpu"\n',
    )


# --- shape "adapter_platform" (0.3.10 - 0.3.12): current_platform in the adapter
_S2_DEVICE = _platform_device_branch("    ")
_S2_LAYERWISE = _insert_after(
    '    device = torch.device(f"{dev_name}:{local_rank}")\n',
    _layerwise_guard("    ", 'dev_name == "hpu" and lmcache_config.use_layerwise'),
)
_S2A_CONNECTOR = _elif_before(
    "        if current_platform.is_cuda_alike():\n"
    "            connector_cls = VLLMPagedMemGPUConnectorV2\n",
    '        if dev_name == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    "            connector_cls = _gvl_hpu_connector_cls()\n",
)
_S2B_CONNECTOR = _elif_before(
    "        if current_platform.is_cuda_alike():\n"
    "            vllm_gpu_connector = VLLMPagedMemGPUConnectorV2.from_metadata(\n",
    '        if dev_name == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    "            vllm_gpu_connector = _gvl_hpu_connector_cls().from_metadata(\n"
    "                metadata, use_gpu, device\n"
    "            )\n",
)
_S2C_CONNECTOR = _elif_before(
    "        if current_platform.is_cuda_alike():\n"
    "            # TODO(chunxiaozheng): unify use VLLMPagedMemGPUConnectorV3 after stable\n",
    '        if dev_name == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    "            vllm_gpu_connector = _gvl_hpu_connector_cls().from_metadata(\n"
    "                metadata, use_gpu, device\n"
    "            )\n",
)

# --- shape "manager_platform" (0.3.13): device choice in LMCacheManager
_S3_DEVICE = _platform_device_branch("        ")
_S3_CONNECTOR = _insert_before(
    "        if self._config.use_layerwise:\n"
    "            if self._config.enable_blending:\n"
    "                return VLLMBufferLayerwiseGPUConnector.from_metadata(\n",
    '        if device is not None and device.type == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    + _layerwise_guard("            ", "self._config.use_layerwise")
    + "            return _gvl_hpu_connector_cls().from_metadata(metadata, use_gpu, device)\n",
)

# --- shape "utils_platform" (0.3.14 - 0.4.2): get_vllm_torch_dev() in utils.py,
# connector choice in CreateGPUConnector()
_S4_DEVICE = _platform_device_branch("    ")
_S4_CONNECTOR = _insert_after(
    "        torch_dev.set_device(local_worker_id)\n"
    '        device = torch.device(f"{dev_name}:{local_worker_id}")\n',
    '        if dev_name == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    + _layerwise_guard("            ", "config.use_layerwise")
    + "            return _gvl_hpu_connector_cls().from_metadata(metadata, use_gpu, device)\n",
)

# Each op: (old, new, count). Ops run in order; revert runs them backwards.
SHAPES = {
    "adapter_cuda": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            (_S1_DEVICE_OLD, _S1_DEVICE_NEW, 1),
            _S1_CONNECTOR + (1,),
            _S1_INIT + (1,),
            _S1_LOG_LINE + (1,),
            _S1_SLOT + (3,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
    },
    "adapter_platform_cls": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            _S2_DEVICE + (1,),
            _S2_LAYERWISE + (1,),
            _S2A_CONNECTOR + (1,),
            _OP_LOG_LINE + (1,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
    },
    "adapter_platform_meta": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            _S2_DEVICE + (1,),
            _S2_LAYERWISE + (1,),
            _S2B_CONNECTOR + (1,),
            _OP_LOG_LINE + (1,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
    },
    "adapter_platform_v3": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            _S2_DEVICE + (1,),
            _S2_LAYERWISE + (1,),
            _S2C_CONNECTOR + (1,),
            _OP_LOG_LINE + (1,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
    },
    "manager_platform": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
        MANAGER: [
            _OP_IMPORT + (1,),
            _S3_DEVICE + (1,),
            _S3_CONNECTOR + (1,),
        ],
    },
    "utils_platform": {
        ADAPTER: [
            _OP_IMPORT + (1,),
            _OP_WAIT_FOR_LAYER_LOAD + (1,),
            _OP_WAIT_FOR_SAVE + (1,),
        ],
        UTILS: [
            _OP_IMPORT + (1,),
            _S4_DEVICE + (1,),
        ],
        CONNECTOR_INIT: [
            _OP_IMPORT + (1,),
            _S4_CONNECTOR + (1,),
        ],
    },
}

# Pristine sha256 of every file a shape edits, per released LMCache version
# (taken from the PyPI wheels).
KNOWN_RELEASES = {
    "0.3.6": ("adapter_cuda", {
        ADAPTER: "a6dd4218ca1de1eba8149bab42a6f4f3c504d1990948b8a2a67007854eaab4b3"}),
    "0.3.7": ("adapter_cuda", {
        ADAPTER: "b8c3464b03040b8e623900b614312d95a962bb1a973dd332768937c8ef9937bc"}),
    "0.3.9": ("adapter_cuda", {
        ADAPTER: "b128ccf10b6fb6d34f9624f16291e0f518f443ee94a1f3936534653141e25db7"}),
    "0.3.10": ("adapter_platform_cls", {
        ADAPTER: "e79f4a1951ad51fd5d86e3a1544363fb31b1961349e9cb7ccfe79674b251bc90"}),
    "0.3.11": ("adapter_platform_meta", {
        ADAPTER: "ee10fd3a20f036394a5e6f78d4159a72380942216c16fda6a519d83cfa555ace"}),
    "0.3.12": ("adapter_platform_v3", {
        ADAPTER: "0d48f43c925b0ad0efd532cd658df47edafcb3d2590a71efb048b569f549f22c"}),
    "0.3.13": ("manager_platform", {
        ADAPTER: "96de295fd5269c3f30521527319e55e38c98da4d235ae72a3a68e525b865f577",
        MANAGER: "87d46e5f74975d5fa8256d1439f25e226a71604a14a6270095cd837023f409da"}),
    "0.3.14": ("utils_platform", {
        ADAPTER: "f999e0dbf842fb24a97208dc66bf5f856ea69a49dea011f533e0011085054313",
        UTILS: "9cf914054ac8be65c77aeeaec993a2a3e7b0f50129aa5d5b179c940a514d72ef",
        CONNECTOR_INIT: "c7e2c1fa82504845730d22c38504acfa98f7b5d9a9aad8d9f3818e5af55f2c33"}),
    "0.3.15": ("utils_platform", {
        ADAPTER: "b4305ae22b6f53278bfcb94cae6f4c823251a17f21cf3d58fc964466b089c1fe",
        UTILS: "9cf914054ac8be65c77aeeaec993a2a3e7b0f50129aa5d5b179c940a514d72ef",
        CONNECTOR_INIT: "f1262282cc848a1f0ec18dca65d6330ea1868186093fc00773bb330c81e8e1ed"}),
    "0.4.1": ("utils_platform", {
        ADAPTER: "e09cf8f9fc5ca5186d8e06f267292cf0d8ebf91cd723094209e0ce71c444919b",
        UTILS: "9cf914054ac8be65c77aeeaec993a2a3e7b0f50129aa5d5b179c940a514d72ef",
        CONNECTOR_INIT: "f1262282cc848a1f0ec18dca65d6330ea1868186093fc00773bb330c81e8e1ed"}),
    "0.4.2": ("utils_platform", {
        ADAPTER: "ae02f31e4e4921c0a3cd5e57182cede4396310ebbf13d4dafe4c6bdb651d3248",
        UTILS: "9cf914054ac8be65c77aeeaec993a2a3e7b0f50129aa5d5b179c940a514d72ef",
        CONNECTOR_INIT: "f1262282cc848a1f0ec18dca65d6330ea1868186093fc00773bb330c81e8e1ed"}),
}


class PatchError(Exception):
    """A refusal or failure; the message is meant for the user."""

    def __init__(self, msg, details=None):
        super(PatchError, self).__init__(msg)
        self.details = details or {}


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    try:
        with open(path, "rb") as f:
            return sha256_bytes(f.read())
    except (IOError, OSError):
        return None


def parse_version(text):
    """'0.3.10' -> (0, 3, 10); pre/post/local suffixes are kept out of the tuple."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _read_metadata_version(path):
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                if line.lower().startswith("version:"):
                    return line.split(":", 1)[1].strip()
    except (IOError, OSError):
        return None
    return None


def find_lmcache(site_packages):
    """Locate LMCache in ``site_packages`` without importing it.

    Returns ``{"package_dir", "metadata", "version"}`` or ``None``.
    """
    pkg = os.path.join(site_packages, "lmcache")
    if not os.path.isdir(pkg):
        return None
    candidates = []
    for pattern in ("lmcache-*.dist-info", "LMCache-*.dist-info", "lmcache-*.egg-info"):
        candidates.extend(sorted(glob.glob(os.path.join(site_packages, pattern))))
    for meta_dir in candidates:
        for name in ("METADATA", "PKG-INFO"):
            path = os.path.join(meta_dir, name)
            if os.path.isfile(path):
                version = _read_metadata_version(path)
                if version:
                    return {"package_dir": pkg, "metadata": path, "version": version}
    return {"package_dir": pkg, "metadata": None, "version": None}


def _apply_ops(text, ops, relpath):
    for old, new, count in ops:
        found = text.count(old)
        if found != count:
            raise PatchError(
                "%s: expected the anchor %r %d time(s), found it %d time(s)"
                % (relpath, old.strip().splitlines()[0][:80], count, found))
        text = text.replace(old, new)
    return text


def _revert_ops(text, ops, relpath):
    for old, new, count in reversed(ops):
        found = text.count(new)
        if found != count:
            raise PatchError(
                "%s: expected the patched text %r %d time(s), found it %d time(s)"
                % (relpath, new.strip().splitlines()[0][:80], count, found))
        text = text.replace(new, old)
    return text


def patch_text(text, shape, relpath):
    """Pristine file text -> patched text (raises PatchError on a shape mismatch)."""
    return _apply_ops(text, SHAPES[shape][relpath], relpath)


def unpatch_text(text, shape, relpath):
    """Patched file text -> pristine text (raises PatchError on a shape mismatch)."""
    return _revert_ops(text, SHAPES[shape][relpath], relpath)


def _file_state(path, relpath, shape, pristine_sha):
    """-> (state, data, pristine_bytes): state in pristine/patched/missing/unknown."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (IOError, OSError):
        return "missing", None, None
    if sha256_bytes(data) == pristine_sha:
        return "pristine", data, data
    try:
        text = data.decode("utf-8")
        original = unpatch_text(text, shape, relpath).encode("utf-8")
    except (UnicodeDecodeError, PatchError):
        return "unknown", data, None
    if sha256_bytes(original) != pristine_sha:
        return "unknown", data, None
    if patch_text(original.decode("utf-8"), shape, relpath).encode("utf-8") != data:
        return "unknown", data, None
    return "patched", data, original


def _version_str(version_tuple):
    return ".".join(str(p) for p in version_tuple)


def inspect_install(site_packages):
    """Full classification with per-file detail (used by the module).

    Never raises for a missing or odd install; the result has ``classification``,
    ``reason``, ``lmcache_version``, ``patch_needed`` and, for known shapes,
    ``shape`` and ``files`` (relpath -> state dict).
    """
    result = {
        "site_packages": site_packages,
        "lmcache_version": None,
        "classification": "missing",
        "patch_needed": False,
        "reason": "",
        "shape": None,
        "files": {},
        "connector": None,
    }
    found = find_lmcache(site_packages)
    if found is None:
        result["reason"] = "no lmcache package directory in %s" % os.path.join(site_packages, "lmcache")
        return result
    result["package_dir"] = found["package_dir"]
    version = found["version"]
    result["lmcache_version"] = version
    if version is None:
        result["classification"] = "unsupported"
        result["reason"] = (
            "%s exists but no lmcache-*.dist-info/METADATA (or egg-info) with a Version "
            "was found in %s" % (found["package_dir"], site_packages))
        return result
    vt = parse_version(version)
    if vt is None:
        result["classification"] = "unsupported"
        result["reason"] = "cannot parse LMCache version %r from %s" % (version, found["metadata"])
        return result
    native_path = os.path.join(site_packages, NATIVE_CONNECTOR_RELPATH)
    if vt >= FIRST_NATIVE:
        if os.path.isfile(native_path):
            result["classification"] = "native"
            result["reason"] = (
                "LMCache %s supports HPU natively (%s); nothing to patch"
                % (version, NATIVE_CONNECTOR_RELPATH))
        else:
            result["classification"] = "unsupported"
            result["reason"] = (
                "LMCache %s should ship its native HPU connector but %s is missing"
                % (version, native_path))
        return result
    if vt < OLDEST_SUPPORTED:
        result["classification"] = "unsupported"
        result["reason"] = (
            "LMCache %s is older than the oldest shape this patch supports (%s); "
            "upgrade LMCache to 0.3.6 or later (0.4.3 or later has native HPU support)"
            % (version, _version_str(OLDEST_SUPPORTED)))
        return result
    known = KNOWN_RELEASES.get(_version_str(vt)) if version.strip() == _version_str(vt) else None
    if known is None:
        result["classification"] = "unsupported"
        result["reason"] = (
            "LMCache %s is not a known release shape (known: %s)"
            % (version, ", ".join(sorted(KNOWN_RELEASES, key=parse_version))))
        return result
    shape, pristine = known
    result["shape"] = shape
    states = []
    for relpath in sorted(pristine):
        path = os.path.join(site_packages, relpath)
        state, data, original = _file_state(path, relpath, shape, pristine[relpath])
        result["files"][relpath] = {
            "path": path,
            "state": state,
            "original_sha256": pristine[relpath],
            "current_sha256": sha256_bytes(data) if data is not None else None,
            "_data": data,
            "_original": original,
        }
        states.append(state)
        if state in ("missing", "unknown"):
            result["classification"] = "unsupported"
            if state == "missing":
                result["reason"] = "LMCache %s: %s is missing" % (version, path)
            else:
                result["reason"] = (
                    "LMCache %s: %s (sha256 %s) matches neither the pristine file "
                    "(sha256 %s) nor this collection's patch of it; it was changed by "
                    "hand or comes from another build; reinstall LMCache %s"
                    % (version, path, result["files"][relpath]["current_sha256"],
                       pristine[relpath], version))
            return result
    connector_path = os.path.join(site_packages, CONNECTOR_RELPATH)
    connector_sha = sha256_file(connector_path)
    result["connector"] = {
        "path": connector_path,
        "current_sha256": connector_sha,
        "expected_sha256": CONNECTOR_SHA256,
    }
    if all(s == "patched" for s in states) and connector_sha == CONNECTOR_SHA256:
        result["classification"] = "patched"
        result["reason"] = "LMCache %s carries the %s (shape %s)" % (version, PATCH_NAME, shape)
        return result
    result["classification"] = "patchable"
    result["patch_needed"] = True
    if all(s == "pristine" for s in states):
        result["reason"] = "LMCache %s is pristine (shape %s) and needs the HPU patch" % (version, shape)
    elif all(s == "patched" for s in states):
        result["reason"] = (
            "LMCache %s is patched but the HPU connector %s is %s"
            % (version, connector_path, "missing" if connector_sha is None else "altered"))
    else:
        result["reason"] = "LMCache %s is partially patched (shape %s)" % (version, shape)
    return result


def _public(info):
    out = dict(info)
    out["files"] = dict(
        (k, dict((kk, vv) for kk, vv in v.items() if not kk.startswith("_")))
        for k, v in info.get("files", {}).items())
    return out


def classify(site_packages):
    """Classify the LMCache install in ``site_packages``; never raises.

    Returns a dict with at least ``lmcache_version`` (str or None),
    ``classification`` (native/patchable/patched/unsupported/missing),
    ``patch_needed`` (bool) and ``reason`` (str).
    """
    try:
        return _public(inspect_install(site_packages))
    except Exception as exc:  # defensive: callers rely on "never raises"
        return {
            "site_packages": site_packages,
            "lmcache_version": None,
            "classification": "unsupported",
            "patch_needed": False,
            "reason": "could not inspect %s: %s" % (site_packages, exc),
            "files": {},
        }


# ---------------------------------------------------------------------------
# Target interpreter helpers


def site_packages_of(python):
    """Ask ``python`` for its site-packages directories (purelib, platlib, site)."""
    code = (
        "import json, site, sysconfig\n"
        "p = sysconfig.get_paths()\n"
        "d = [p.get('purelib'), p.get('platlib')]\n"
        "try:\n    d += site.getsitepackages()\nexcept Exception:\n    pass\n"
        "print(json.dumps([x for x in d if x]))\n"
    )
    try:
        proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
    except OSError as exc:
        raise PatchError("cannot run the interpreter %s: %s" % (python, exc))
    if proc.returncode != 0:
        raise PatchError("%s could not report its site-packages: %s" % (python, err.decode("utf-8", "replace").strip()))
    seen = []
    for d in json.loads(out.decode("utf-8")):
        if d not in seen:
            seen.append(d)
    return seen


def resolve_site_packages(python=None, site_packages=None):
    """Return (site_packages, searched) for the given options; PatchError when absent."""
    if site_packages:
        return site_packages, [site_packages]
    dirs = site_packages_of(python or sys.executable)
    for d in dirs:
        if os.path.isdir(os.path.join(d, "lmcache")):
            return d, dirs
    raise PatchError(
        "LMCache is not installed for %s: no lmcache/ in %s"
        % (python or sys.executable, ", ".join(dirs) or "(no site-packages reported)"))


def compile_check(python, files):
    """Compile each ``{relpath: bytes}`` with ``python``; PatchError on failure."""
    tmpdir = tempfile.mkdtemp(prefix="gvl-hpu-patch-")
    try:
        paths = []
        for relpath, data in sorted(files.items()):
            p = os.path.join(tmpdir, relpath.replace("/", "__"))
            with open(p, "wb") as f:
                f.write(data)
            paths.append((relpath, p))
        code = (
            "import sys\n"
            "for p in sys.argv[1:]:\n"
            "    with open(p, 'rb') as f:\n"
            "        compile(f.read(), p, 'exec')\n"
        )
        try:
            proc = subprocess.Popen([python, "-c", code] + [p for _r, p in paths],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _out, err = proc.communicate()
        except OSError as exc:
            raise PatchError("cannot run %s to compile the patched files: %s" % (python, exc))
        if proc.returncode != 0:
            raise PatchError(
                "the patched files do not compile with %s; nothing was written: %s"
                % (python, err.decode("utf-8", "replace").strip()))
    finally:
        for name in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, name))
        os.rmdir(tmpdir)


def atomic_write(path, data, mode=None):
    """Write ``data`` to ``path`` through a temp file in the same directory + rename."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            try:
                mode = os.stat(path).st_mode & 0o7777
            except OSError:
                mode = 0o644
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _diff(path, before, after):
    b = before.decode("utf-8", "replace") if before is not None else ""
    a = after.decode("utf-8", "replace") if after is not None else ""
    text = "".join(difflib.unified_diff(
        b.splitlines(True), a.splitlines(True),
        fromfile=path if before is not None else "/dev/null",
        tofile=path if after is not None else "/dev/null"))
    return {
        "before_header": path if before is not None else "(absent)",
        "after_header": path if after is not None else "(absent)",
        "before": b,
        "after": a,
        "unified": text,
    }


def plan(site_packages, state, connector_source, backup=True):
    """Compute what ``state`` needs: returns (info, actions).

    ``actions`` is a list of dicts: ``{"op": "write"|"remove", "path", "data",
    "backup_from", "relpath", "before"}``. Raises PatchError for refusals.
    """
    info = inspect_install(site_packages)
    cls = info["classification"]
    if cls in ("missing", "unsupported"):
        details = dict((k, info[k]) for k in ("lmcache_version", "classification", "reason"))
        details["patch_needed"] = False
        if cls == "missing":
            raise PatchError("LMCache is not installed: %s" % info["reason"], details)
        raise PatchError(info["reason"], details)
    actions = []
    if cls == "native":
        return info, actions
    connector_path = os.path.join(site_packages, CONNECTOR_RELPATH)
    if state == "present":
        if cls == "patched":
            return info, actions
        if connector_source is None or sha256_bytes(connector_source) != CONNECTOR_SHA256:
            raise PatchError(
                "the HPU connector source shipped with this collection does not match "
                "its recorded sha256 %s; the collection is damaged" % CONNECTOR_SHA256)
        for relpath, f in sorted(info["files"].items()):
            if f["state"] == "pristine":
                new = patch_text(f["_data"].decode("utf-8"), info["shape"], relpath).encode("utf-8")
                actions.append({
                    "op": "write", "relpath": relpath, "path": f["path"], "data": new,
                    "before": f["_data"],
                    "backup": f["path"] + BACKUP_SUFFIX if backup else None,
                })
        current = None
        if os.path.isfile(connector_path):
            with open(connector_path, "rb") as fh:
                current = fh.read()
        if current != connector_source:
            actions.append({
                "op": "write", "relpath": CONNECTOR_RELPATH, "path": connector_path,
                "data": connector_source, "before": current, "backup": None, "mode": 0o644,
            })
        return info, actions
    # state == absent
    for relpath, f in sorted(info["files"].items()):
        if f["state"] == "patched":
            actions.append({
                "op": "write", "relpath": relpath, "path": f["path"], "data": f["_original"],
                "before": f["_data"], "backup": None,
            })
    if os.path.lexists(connector_path):
        with open(connector_path, "rb") as fh:
            current = fh.read()
        actions.append({"op": "remove", "relpath": CONNECTOR_RELPATH, "path": connector_path,
                        "data": None, "before": current, "backup": None})
    return info, actions


def _backup_path_for(path):
    return path + BACKUP_SUFFIX


def run(site_packages, state="present", backup=True, check_mode=False, python=None,
        connector_source=None, want_diff=False):
    """Apply (``present``) or revert (``absent``) the patch. Returns the result dict.

    Raises PatchError for refusals (unsupported, missing, compile failure); in
    that case nothing has been written.
    """
    info, actions = plan(site_packages, state, connector_source, backup)
    python = python or sys.executable
    changed = bool(actions)
    to_compile = dict((a["relpath"], a["data"]) for a in actions if a["op"] == "write")
    if to_compile:
        compile_check(python, to_compile)
    files = []
    written = []
    if changed and not check_mode:
        try:
            for a in actions:
                if a["op"] == "write":
                    if a.get("backup") and not os.path.exists(a["backup"]):
                        atomic_write(a["backup"], a["before"])
                    atomic_write(a["path"], a["data"], a.get("mode"))
                    written.append(a)
                else:
                    os.unlink(a["path"])
                    written.append(a)
            if state == "absent":
                for relpath, f in info["files"].items():
                    bpath = _backup_path_for(f["path"])
                    if os.path.exists(bpath) and sha256_file(bpath) == f["original_sha256"]:
                        os.unlink(bpath)
        except (IOError, OSError) as exc:
            for a in reversed(written):
                try:
                    if a["before"] is None:
                        os.unlink(a["path"])
                    else:
                        atomic_write(a["path"], a["before"])
                except (IOError, OSError):
                    pass
            raise PatchError("writing %s failed (%s); the earlier writes were rolled back"
                             % (a["path"], exc))
    after = inspect_install(site_packages) if (changed and not check_mode) else info
    for relpath, f in sorted(after.get("files", {}).items()):
        bpath = _backup_path_for(f["path"])
        files.append({
            "path": f["path"],
            "original_sha256": f["original_sha256"],
            "current_sha256": f["current_sha256"],
            "backup": bpath if os.path.exists(bpath) else None,
        })
    conn = os.path.join(site_packages, CONNECTOR_RELPATH)
    if info["classification"] != "native":
        files.append({
            "path": conn,
            "original_sha256": None,
            "current_sha256": sha256_file(conn),
            "backup": None,
        })
    result = {
        "changed": changed,
        "lmcache_version": info["lmcache_version"],
        "classification": after["classification"] if not check_mode else info["classification"],
        "patch_needed": info["patch_needed"] if state == "present" else False,
        "reason": info["reason"],
        "shape": info["shape"],
        "site_packages": site_packages,
        "files": files,
    }
    if state == "absent":
        result["patch_needed"] = False
    diffs = [_diff(a["path"], a["before"], a["data"]) for a in actions]
    result["diff"] = diffs if want_diff else [dict(d, before="", after="") for d in diffs]
    return result
