# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Detect LMCache's HPU support by content; apply or revert the HPU patch.

Standard library only, so that this file can also be copied next to a script and
imported as a plain module (``import lmcache_hpu_patch``); see :func:`classify`.

How an install is recognised (never by importing LMCache, which pulls in torch and vLLM):
files are read by path and the version (for messages only) comes from
``lmcache-<v>.dist-info/METADATA``. Each *shape* below is a list of exact-text edits whose
anchors must occur exactly as often as expected; the first shape whose edits all fit is the
one used, whatever the version string says (post releases, rebuilds). On top of the shape's
edits every code call of ``torch.cuda.is_available()`` in the package is guarded (see
CUDA_GUARD). The edits are reversible: a patched file is recognised by undoing them, and the
sha256 of the result must equal the pristine sha256 recorded at patch time in STATE_RELPATH
(or, before that, the wheel's RECORD entry), so a revert is byte-exact for any release.

Classifications:

* ``native``      the HPU connector ``lmcache/v1/gpu_connector/hpu_connector.py`` overrides
                  ``initialize_kvcaches_ptr`` (LMCache 0.4.5 and later).
* ``patchable``   a shape fits (0.3.7 to 0.4.4, post releases included), or a partial patch.
* ``patched``     this collection's patch in place, connector and state file intact.
* ``unsupported`` no shape fits (0.3.0 to 0.3.5, hand-edited files; the reason names the
                  shape, file and anchor), or a shape fits but the release cannot run on Gaudi
                  (0.3.6: module-level ``import lmcache.c_ops`` and no fallback).
* ``missing``     no LMCache in the given directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import difflib
import glob
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tokenize

PATCH_NAME = "gaudi.vllm_lmcache hpu_patch"
PATCH_MARK = "gaudi.vllm_lmcache hpu_patch"
CONNECTOR_RELPATH = "lmcache/v1/gaudi_hpu_connector.py"
# sha256 of plugins/module_utils/hpu_kv_transfer.py, installed byte for byte as
# CONNECTOR_RELPATH (a unit test keeps the two in step).
CONNECTOR_SHA256 = "3f6edc2c6b25b5bfada03e906e56fc61b3705cf0f55195b692ad9f720786a536"
NATIVE_CONNECTOR_RELPATH = "lmcache/v1/gpu_connector/hpu_connector.py"
BACKUP_SUFFIX = ".hpu_patch.orig"
OLDEST_SUPPORTED = (0, 3, 7)
FIRST_NATIVE = (0, 4, 5)

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
    indent = anchor[: len(anchor) - len(stripped)]
    return (anchor, branch + indent + "el" + stripped)


def _layerwise_guard(indent, cond):
    return (
        indent
        + "if "
        + cond
        + ":\n"
        + indent
        + "    raise ValueError(\n"
        + indent
        + '        "LMCache layerwise mode (use_layerwise) is not supported on HPU "\n'
        + indent
        + '        "by the gaudi.vllm_lmcache HPU patch; set use_layerwise to false"\n'
        + indent
        + "    )\n"
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
        indent
        + "if current_platform.is_cuda_alike():\n"
        + indent
        + '    logger.info("CUDA device is available. Using CUDA for LMCache engine.")\n',
        indent
        + "if _gvl_hpu_is_available():  # gaudi.vllm_lmcache hpu_patch\n"
        + indent
        + '    logger.info("HPU device is available. Using HPU for LMCache engine.")\n'
        + indent
        + "    torch_dev = torch.hpu\n"
        + indent
        + '    dev_name = "hpu"\n',
    )


# --- shape "adapter_platform" (0.3.10 - 0.3.12): current_platform in the adapter
_S2_DEVICE = _platform_device_branch("    ")
_S2_LAYERWISE = _insert_after(
    '    device = torch.device(f"{dev_name}:{local_rank}")\n',
    _layerwise_guard("    ", 'dev_name == "hpu" and lmcache_config.use_layerwise'),
)
_S2A_CONNECTOR = _elif_before(
    "        if current_platform.is_cuda_alike():\n            connector_cls = VLLMPagedMemGPUConnectorV2\n",
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
    "        torch_dev.set_device(local_worker_id)\n        device = torch.device(f\"{dev_name}:{local_worker_id}\")\n",
    '        if dev_name == "hpu":  # gaudi.vllm_lmcache hpu_patch\n'
    + _layerwise_guard("            ", "config.use_layerwise")
    + "            return _gvl_hpu_connector_cls().from_metadata(metadata, use_gpu, device)\n",
)

# --- shape "hpu_connector_kv_pairs" (LMCache 0.4.3, 0.4.4): the native HPU connector
# (lmcache/v1/gpu_connector/hpu_connector.py) inherits initialize_kvcaches_ptr() from
# GPUConnectorInterface (lmcache/v1/gpu_connector/gpu_connectors.py), which runs
# permute_kv_caches_to_contiguous() and so calls .is_contiguous() on every layer. vLLM-Gaudi
# registers each layer as a (K, V) TensorTuple that has no such method (AttributeError),
# and _initialize_attributes() reads kv_caches[0].device from that pair. LMCache 0.4.5's
# hpu_connector.py overrides initialize_kvcaches_ptr() and takes the device of the pair's
# first tensor; these edits do the same.
_S5_OVERRIDE = _insert_after(
    "    def batched_from_gpu(self, memory_objs, starts, ends, **kwargs):\n"
    "        for memory_obj, start, end in zip(memory_objs, starts, ends, strict=False):\n"
    "            self.from_gpu(memory_obj, start, end, **kwargs)\n",
    "\n"
    "    # gaudi.vllm_lmcache hpu_patch: vLLM-Gaudi registers every layer as a (K, V)\n"
    "    # TensorTuple without .is_contiguous(); keep the caches as given (LMCache 0.4.5).\n"
    "    def initialize_kvcaches_ptr(self, **kwargs) -> None:\n"
    '        if "kvcaches" in kwargs:\n'
    '            self.kvcaches = kwargs["kvcaches"]\n',
)
_S5_DEVICE = (
    "        self.device = kv_caches[0].device\n",
    "        first = kv_caches[0]  # gaudi.vllm_lmcache hpu_patch: a tensor or a (K, V) pair\n"
    "        self.device = first.device if isinstance(first, torch.Tensor) else first[0].device\n",
)

# Shapes, tried in this order. ``files``: relpath -> ops, each op (old, new, count): ``old``
# must occur exactly ``count`` times; ops run in order, revert runs them backwards.
# ``connector``: the patched code uses this collection's connector (CONNECTOR_RELPATH).
# ``requires_absent``: files whose presence rules the shape out.
SHAPES = {
    "adapter_cuda": {
        "description": "torch.cuda hard-coded in the vLLM v1 adapter (LMCache 0.3.7 - 0.3.9.post2)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "adapter_platform_cls": {
        "description": "current_platform and connector_cls in the adapter (LMCache 0.3.10 - 0.3.10.post2)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "adapter_platform_meta": {
        "description": "current_platform and from_metadata() in the adapter (LMCache 0.3.11)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "adapter_platform_v3": {
        "description": "current_platform and the GPU connector V3 switch in the adapter (LMCache 0.3.12)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "manager_platform": {
        "description": "device and connector choice in LMCacheManager (LMCache 0.3.13)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "utils_platform": {
        "description": "get_vllm_torch_dev() and CreateGPUConnector() (LMCache 0.3.14 - 0.4.2)",
        "connector": True,
        "requires_absent": [NATIVE_CONNECTOR_RELPATH],
        "files": {
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
    },
    "hpu_connector_kv_pairs": {
        "description": (
            "native HPU connector without the (K, V) TensorTuple override of "
            "initialize_kvcaches_ptr (LMCache 0.4.3, 0.4.4)"
        ),
        "connector": False,
        "requires_absent": [],
        "files": {
            NATIVE_CONNECTOR_RELPATH: [
                _S5_OVERRIDE + (1,),
                _S5_DEVICE + (1,),
            ],
        },
    },
}

# GPU migration (PT_HPU_GPU_MIGRATION=1, set by vLLM-Gaudi's LMCache examples) makes
# torch.cuda.is_available() return True on Gaudi. LMCache then takes its CUDA paths in
# files the shapes above do not touch: ``import lmcache.c_ops`` (a CUDA extension linked
# against libcudart.so.12 and libtorch_cuda.so, e.g. lmcache/v1/memory_management.py,
# lmcache/v1/gpu_connector.py; from 0.4.4 the backend choice in lmcache/__init__.py) and
# torch.cuda.Stream() (lmcache/v1/storage_backend/storage_manager.py through
# is_cuda_worker()). Every call of torch.cuda.is_available() in the code of the package
# (not in comments or strings) becomes CUDA_GUARD, which is False when an HPU is present,
# so LMCache takes the paths it takes on a host without CUDA.
CUDA_CALL = "torch.cuda.is_available()"
CUDA_GUARD = '(torch.cuda.is_available() and not getattr(getattr(torch, "hpu", None), "is_available", bool)())'

# A module-level ``import lmcache.c_ops`` in a file on the engine's import path cannot
# load on Gaudi unless lmcache/__init__.py substitutes the module (0.4.4 and later:
# sys.modules["lmcache.c_ops"] = lmcache.non_cuda_equivalents when CUDA is absent).
ENGINE_PATH_FILES = [
    "lmcache/v1/memory_management.py",
    "lmcache/v1/gpu_connector.py",
    "lmcache/v1/gpu_connector/gpu_connectors.py",
    "lmcache/v1/gpu_connector/utils.py",
]
C_OPS_SUBSTITUTE = 'sys.modules["lmcache.c_ops"]'
_C_OPS_IMPORT_RE = re.compile(
    r"^(?:import lmcache\.c_ops\b|from lmcache\.c_ops import |from lmcache import c_ops\b)[^\n]*", re.M
)

STATE_RELPATH = "lmcache/gaudi_hpu_patch.json"
STATE_FORMAT = 1


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

    Returns ``{"package_dir", "metadata", "version", "record"}`` or ``None``.
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
                    record = os.path.join(meta_dir, "RECORD")
                    return {
                        "package_dir": pkg,
                        "metadata": path,
                        "version": version,
                        "record": record if os.path.isfile(record) else None,
                    }
    return {"package_dir": pkg, "metadata": None, "version": None, "record": None}


def read_record(path):
    """{relpath: sha256 hex} from a wheel's RECORD (``path,sha256=<urlsafe b64>,size``)."""
    out = {}
    if not path:
        return out
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except (IOError, OSError):
        return out
    for line in lines:
        parts = line.rsplit(",", 2)
        if len(parts) != 3 or not parts[1].startswith("sha256="):
            continue
        digest = parts[1][len("sha256=") :]
        try:
            raw = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
        except (TypeError, ValueError):
            continue
        out[parts[0].strip('"')] = binascii.hexlify(raw).decode("ascii")
    return out


def _anchor_label(text):
    lines = [ln.strip() for ln in text.strip("\n").splitlines() if ln.strip()]
    return (lines[0] if lines else text)[:90]


def _apply_ops(text, ops, relpath):
    for old, new, count in ops:
        found = text.count(old)
        if found != count:
            raise PatchError(
                "%s: expected the anchor %r %d time(s), found it %d time(s)"
                % (relpath, _anchor_label(old), count, found)
            )
        text = text.replace(old, new)
    return text


def _revert_ops(text, ops, relpath):
    for old, new, count in reversed(ops):
        found = text.count(new)
        if found != count:
            raise PatchError(
                "%s: expected the patched text %r %d time(s), found it %d time(s)"
                % (relpath, _anchor_label(new), count, found)
            )
        text = text.replace(new, old)
    return text


_OFFSETS_CACHE = {}


def cuda_call_offsets(text):
    """Offsets of ``torch.cuda.is_available()`` in code (not comments, strings or f-strings)."""
    if CUDA_CALL not in text:
        return []
    key = hashlib.sha256(text.encode("utf-8")).digest()
    if key not in _OFFSETS_CACHE:
        if len(_OFFSETS_CACHE) > 512:
            _OFFSETS_CACHE.clear()
        _OFFSETS_CACHE[key] = _tokenize_cuda_calls(text)
    return list(_OFFSETS_CACHE[key])


def _tokenize_cuda_calls(text):
    offsets = []
    line_starts = [0]
    for line in text.splitlines(True):
        line_starts.append(line_starts[-1] + len(line))
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    depth = 0
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    for tok in tokens:
        if fstring_start is not None and tok.type == fstring_start:
            depth += 1
        elif fstring_end is not None and tok.type == fstring_end:
            depth -= 1
        elif depth == 0 and tok.type == tokenize.NAME and tok.string == "torch":
            off = line_starts[tok.start[0] - 1] + tok.start[1]
            prev = text[off - 1 : off] if off else ""
            if text.startswith(CUDA_CALL, off) and prev != ".":
                offsets.append(off)
    return offsets


def guard_cuda_calls(text):
    """-> (text with every code call of torch.cuda.is_available() guarded, count)."""
    offsets = cuda_call_offsets(text)
    out = []
    last = 0
    for off in offsets:
        out.append(text[last:off])
        out.append(CUDA_GUARD)
        last = off + len(CUDA_CALL)
    out.append(text[last:])
    return "".join(out), len(offsets)


def patch_text(text, shape, relpath):
    """Pristine file text -> patched text: the CUDA guards (found in LMCache's own, valid
    code), then the shape's edits (none of whose anchors holds a guarded call)."""
    text = guard_cuda_calls(text)[0]
    ops = SHAPES[shape]["files"].get(relpath)
    if ops:
        text = _apply_ops(text, ops, relpath)
    return text


def unpatch_text(text, shape, relpath):
    """Patched (or partly patched) text -> pristine text; PatchError on a mismatch."""
    text = text.replace(CUDA_GUARD, CUDA_CALL)
    ops = SHAPES[shape]["files"].get(relpath)
    if ops and any(new in text for _old, new, _n in ops):
        text = _revert_ops(text, ops, relpath)
    return text


def _version_str(version_tuple):
    return ".".join(str(p) for p in version_tuple)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def _package_py_files(site_packages):
    """Relative paths (posix) of LMCache's own .py files, sorted; the connector excluded."""
    out = []
    pkg = os.path.join(site_packages, "lmcache")
    for d, dirs, files in os.walk(pkg):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, name), site_packages).replace(os.sep, "/")
                if rel != CONNECTOR_RELPATH:
                    out.append(rel)
    return sorted(out)


def read_state(site_packages):
    """The state file written at patch time (dict) or None; ValueError when unreadable."""
    data = _read(os.path.join(site_packages, STATE_RELPATH))
    if data is None:
        return None
    state = json.loads(data.decode("utf-8"))
    if not isinstance(state, dict) or state.get("patch") != PATCH_NAME or not isinstance(state.get("files"), dict):
        raise ValueError("not a state file of the %s" % PATCH_NAME)
    return state


def _native_reason(site_packages):
    """Why the install needs nothing (str), or None when it is not natively supported."""
    data = _read(os.path.join(site_packages, NATIVE_CONNECTOR_RELPATH))
    if data is None:
        return None
    text = data.decode("utf-8", "replace")
    if (
        "class VLLMPagedMemHPUConnectorV2" in text
        and "    def initialize_kvcaches_ptr(" in text
        and PATCH_MARK not in text
    ):
        return (
            "%s defines VLLMPagedMemHPUConnectorV2 with its own initialize_kvcaches_ptr() "
            "for vLLM-Gaudi's (K, V) layers; nothing to patch" % NATIVE_CONNECTOR_RELPATH
        )
    return None


def _c_ops_blocker(site_packages):
    """A reason (str) when a module-level c_ops import on the engine path cannot be avoided."""
    init = (_read(os.path.join(site_packages, "lmcache/__init__.py")) or b"").decode("utf-8", "replace")
    if C_OPS_SUBSTITUTE in init:
        return None
    if os.path.isfile(os.path.join(site_packages, "lmcache/non_cuda_equivalents.py")):
        fallback = "no fallback for it in lmcache/__init__.py"
    else:
        fallback = "no lmcache/non_cuda_equivalents.py to fall back on"
    for rel in ENGINE_PATH_FILES:
        data = _read(os.path.join(site_packages, rel))
        if data is None:
            continue
        m = _C_OPS_IMPORT_RE.search(data.decode("utf-8", "replace"))
        if m:
            return (
                "%s imports lmcache.c_ops unconditionally (%r at module level) and the release "
                "has %s; lmcache.c_ops is a CUDA extension (libcudart.so.12, libtorch_cuda.so) "
                "that cannot load on Gaudi" % (rel, m.group(0), fallback)
            )
    return None


def _shape_fit(site_packages, shape, texts):
    """None when every edit of ``shape`` applies (or is applied), else the first mismatch."""
    spec = SHAPES[shape]
    for rel in spec["requires_absent"]:
        if os.path.exists(os.path.join(site_packages, rel)):
            return "%s is present (this shape is for releases without it)" % rel
    for rel in sorted(spec["files"]):
        text = texts.get(rel)
        if text is None:
            data = _read(os.path.join(site_packages, rel))
            if data is None:
                return "%s is missing" % rel
            try:
                text = texts[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                return "%s is not UTF-8 text" % rel
        try:
            original = unpatch_text(text, shape, rel)
            _apply_ops(original, spec["files"][rel], rel)
        except PatchError as exc:
            return str(exc)
    return None


def _detect_shape(site_packages, state):
    """-> (shape, None) or (None, reason naming the shape, file and anchor that did not fit)."""
    if state is not None:
        shape = state.get("shape")
        if shape not in SHAPES:
            return None, "%s names the unknown shape %r" % (STATE_RELPATH, shape)
        miss = _shape_fit(site_packages, shape, {})
        if miss:
            return None, "shape %s recorded in %s does not fit any more: %s" % (shape, STATE_RELPATH, miss)
        return shape, None
    misses = []
    texts = {}
    for shape in SHAPES:
        miss = _shape_fit(site_packages, shape, texts)
        if miss is None:
            return shape, None
        misses.append((shape, miss))
    # name the mismatch of the shapes whose first file fits furthest (all, if none is closer)
    detail = "; ".join("%s: %s" % sm for sm in misses if "is present" not in sm[1] and "is missing" not in sm[1])
    return None, "no release shape fits (%s)" % (detail or "; ".join("%s: %s" % sm for sm in misses))


def inspect_install(site_packages):
    """Full classification with per-file detail (used by the module).

    Never raises for a missing or odd install; the result has ``classification``,
    ``reason``, ``lmcache_version``, ``patch_needed`` and, for a fitting shape,
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
        "state_file": os.path.join(site_packages, STATE_RELPATH),
        "_state": None,
    }
    found = find_lmcache(site_packages)
    if found is None:
        result["reason"] = "no lmcache package directory in %s" % os.path.join(site_packages, "lmcache")
        return result
    result["package_dir"] = found["package_dir"]
    version = found["version"]
    result["lmcache_version"] = version
    label = "LMCache %s" % (version or "(unknown version)")

    def refuse(reason):
        result["classification"] = "unsupported"
        result["patch_needed"] = False
        result["reason"] = "%s: %s" % (label, reason)
        vt = parse_version(version)
        if vt is not None and vt < OLDEST_SUPPORTED:
            result["reason"] += (
                "; releases older than %s are not supported (use %s or later; 0.4.5 and later "
                "support HPU natively)" % (_version_str(OLDEST_SUPPORTED), _version_str(OLDEST_SUPPORTED))
            )
        return result

    try:
        state = read_state(site_packages)
    except ValueError as exc:
        return refuse(
            "%s cannot be read (%s); remove it only after restoring LMCache's files" % (result["state_file"], exc)
        )
    result["_state"] = state
    if state is None:
        native = _native_reason(site_packages)
        if native:
            result["classification"] = "native"
            result["reason"] = "%s supports HPU natively: %s" % (label, native)
            return result
    shape, why = _detect_shape(site_packages, state)
    if shape is None:
        return refuse(why)
    result["shape"] = shape
    blocker = _c_ops_blocker(site_packages)
    if blocker:
        return refuse("shape %s fits, but %s" % (shape, blocker))

    record = read_record(found.get("record"))
    recorded = (state or {}).get("files", {})
    relpaths = set(SHAPES[shape]["files"]) | set(recorded)
    for rel in _package_py_files(site_packages):
        if rel in relpaths:
            continue
        data = _read(os.path.join(site_packages, rel))
        if data is not None and (CUDA_CALL.encode() in data):
            text = data.decode("utf-8", "replace")
            if CUDA_GUARD in text or cuda_call_offsets(text):
                relpaths.add(rel)
    states = []
    for rel in sorted(relpaths):
        path = os.path.join(site_packages, rel)
        data = _read(path)
        entry = {
            "path": path,
            "state": None,
            "original_sha256": None,
            "current_sha256": None,
            "reference": None,
            "_data": data,
            "_original": None,
            "_patched": None,
        }
        result["files"][rel] = entry
        if data is None:
            return refuse("%s is missing" % path)
        entry["current_sha256"] = sha256_bytes(data)
        if rel in recorded:
            reference, source = recorded[rel].get("pristine_sha256"), STATE_RELPATH
        elif rel in record:
            reference, source = record[rel], "the wheel's RECORD"
        else:
            reference, source = None, None
        try:
            text = data.decode("utf-8")
            original = unpatch_text(text, shape, rel)
            patched = patch_text(original, shape, rel)
        except (UnicodeDecodeError, PatchError, tokenize.TokenError, SyntaxError) as exc:
            return refuse("%s cannot be restored to LMCache's file (%s); reinstall LMCache" % (path, exc))
        if CUDA_GUARD in original:
            return refuse("%s already contains %r outside this patch" % (path, CUDA_GUARD))
        original_b = original.encode("utf-8")
        entry["original_sha256"] = sha256_bytes(original_b)
        entry["reference"] = source
        if reference is not None and entry["original_sha256"] != reference:
            return refuse(
                "%s (sha256 %s) matches neither LMCache's file (sha256 %s in %s) nor this "
                "collection's patch of it; it was changed by hand or comes from another build; "
                "reinstall LMCache %s" % (path, entry["current_sha256"], reference, source, version or "")
            )
        entry["_original"] = original_b
        entry["_patched"] = patched.encode("utf-8")
        if data == entry["_patched"]:
            entry["state"] = "patched"
        elif data == original_b:
            entry["state"] = "pristine"
        else:
            entry["state"] = "partial"
        states.append(entry["state"])

    uses_connector = SHAPES[shape]["connector"]
    connector_path = os.path.join(site_packages, CONNECTOR_RELPATH)
    connector_sha = sha256_file(connector_path)
    result["connector"] = {
        "path": connector_path,
        "current_sha256": connector_sha,
        "expected_sha256": CONNECTOR_SHA256 if uses_connector else None,
    }
    connector_ok = connector_sha == CONNECTOR_SHA256 if uses_connector else connector_sha is None
    state_ok = (
        state is not None
        and all(
            recorded.get(rel, {}).get("pristine_sha256") == f["original_sha256"] for rel, f in result["files"].items()
        )
        and set(recorded) == set(result["files"])
    )
    if all(s == "patched" for s in states) and connector_ok and state_ok:
        result["classification"] = "patched"
        result["reason"] = "%s carries the %s (shape %s, %d files)" % (label, PATCH_NAME, shape, len(states))
        return result
    result["classification"] = "patchable"
    result["patch_needed"] = True
    if all(s == "pristine" for s in states) and state is None:
        result["reason"] = "%s fits shape %s (%s) and needs the HPU patch" % (
            label,
            shape,
            SHAPES[shape]["description"],
        )
    elif all(s == "patched" for s in states) and not connector_ok:
        result["reason"] = "%s is patched but the HPU connector %s is %s" % (
            label,
            connector_path,
            "missing" if connector_sha is None else "altered",
        )
    elif all(s == "patched" for s in states):
        result["reason"] = "%s is patched but %s is missing or out of date" % (label, result["state_file"])
    else:
        result["reason"] = "%s is partially patched (shape %s): %s" % (
            label,
            shape,
            ", ".join(sorted(r for r, f in result["files"].items() if f["state"] != "patched")),
        )
    return result


def _public(info):
    out = dict((k, v) for k, v in info.items() if not k.startswith("_"))
    out["files"] = dict(
        (k, dict((kk, vv) for kk, vv in v.items() if not kk.startswith("_"))) for k, v in info.get("files", {}).items()
    )
    return out


def classify(site_packages):
    """Classify the LMCache install in ``site_packages``; never raises.

    Returns a dict with at least ``lmcache_version`` (str or None),
    ``classification`` (native/patchable/patched/unsupported/missing),
    ``patch_needed`` (bool), ``reason`` (str) and ``shape`` (str or None).
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
            "shape": None,
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
        % (python or sys.executable, ", ".join(dirs) or "(no site-packages reported)")
    )


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
            "import sys\nfor p in sys.argv[1:]:\n    with open(p, 'rb') as f:\n        compile(f.read(), p, 'exec')\n"
        )
        try:
            proc = subprocess.Popen(
                [python, "-c", code] + [p for _r, p in paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            _out, err = proc.communicate()
        except OSError as exc:
            raise PatchError("cannot run %s to compile the patched files: %s" % (python, exc))
        if proc.returncode != 0:
            raise PatchError(
                "the patched files do not compile with %s; nothing was written: %s"
                % (python, err.decode("utf-8", "replace").strip())
            )
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
    text = "".join(
        difflib.unified_diff(
            b.splitlines(True),
            a.splitlines(True),
            fromfile=path if before is not None else "/dev/null",
            tofile=path if after is not None else "/dev/null",
        )
    )
    return {
        "before_header": path if before is not None else "(absent)",
        "after_header": path if after is not None else "(absent)",
        "before": b,
        "after": a,
        "unified": text,
    }


def state_document(info, connector_source):
    """The JSON state file written next to the patched files (bytes, deterministic)."""
    doc = {
        "patch": PATCH_NAME,
        "format": STATE_FORMAT,
        "lmcache_version": info["lmcache_version"],
        "shape": info["shape"],
        "connector": {
            "path": CONNECTOR_RELPATH,
            "sha256": sha256_bytes(connector_source),
        }
        if SHAPES[info["shape"]]["connector"]
        else None,
        "files": dict(
            (
                rel,
                {
                    "pristine_sha256": f["original_sha256"],
                    "patched_sha256": sha256_bytes(f["_patched"]),
                    "pristine_reference": f["reference"] or "content (no RECORD entry)",
                },
            )
            for rel, f in sorted(info["files"].items())
        ),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def plan(site_packages, state, connector_source, backup=True):
    """Compute what ``state`` needs: returns (info, actions).

    ``actions`` is a list of dicts: ``{"op": "write"|"remove", "path", "data",
    "backup", "relpath", "before"}``. Raises PatchError for refusals.
    """
    info = inspect_install(site_packages)
    cls = info["classification"]
    if cls in ("missing", "unsupported"):
        details = dict((k, info[k]) for k in ("lmcache_version", "classification", "reason", "shape"))
        details["patch_needed"] = False
        if cls == "missing":
            raise PatchError("LMCache is not installed: %s" % info["reason"], details)
        raise PatchError(info["reason"], details)
    actions = []
    if cls == "native":
        return info, actions
    uses_connector = SHAPES[info["shape"]]["connector"]
    connector_path = os.path.join(site_packages, CONNECTOR_RELPATH)
    state_path = info["state_file"]
    current_state = _read(state_path)
    if state == "present":
        if cls == "patched":
            return info, actions
        if uses_connector and (connector_source is None or sha256_bytes(connector_source) != CONNECTOR_SHA256):
            raise PatchError(
                "the HPU connector source shipped with this collection does not match "
                "its recorded sha256 %s; the collection is damaged" % CONNECTOR_SHA256
            )
        for relpath, f in sorted(info["files"].items()):
            if f["state"] != "patched":
                actions.append(
                    {
                        "op": "write",
                        "relpath": relpath,
                        "path": f["path"],
                        "data": f["_patched"],
                        "before": f["_data"],
                        "backup_data": f["_original"],
                        "backup": f["path"] + BACKUP_SUFFIX if backup else None,
                    }
                )
        if uses_connector:
            current = _read(connector_path)
            if current != connector_source:
                actions.append(
                    {
                        "op": "write",
                        "relpath": CONNECTOR_RELPATH,
                        "path": connector_path,
                        "data": connector_source,
                        "before": current,
                        "backup": None,
                        "mode": 0o644,
                    }
                )
        doc = state_document(info, connector_source if uses_connector else b"")
        if current_state != doc:
            actions.append(
                {
                    "op": "write",
                    "relpath": STATE_RELPATH,
                    "path": state_path,
                    "data": doc,
                    "before": current_state,
                    "backup": None,
                    "mode": 0o644,
                }
            )
        return info, actions
    # state == absent: the files first, the state file last
    for relpath, f in sorted(info["files"].items()):
        if f["state"] != "pristine":
            actions.append(
                {
                    "op": "write",
                    "relpath": relpath,
                    "path": f["path"],
                    "data": f["_original"],
                    "before": f["_data"],
                    "backup": None,
                }
            )
    if uses_connector and os.path.lexists(connector_path):
        actions.append(
            {
                "op": "remove",
                "relpath": CONNECTOR_RELPATH,
                "path": connector_path,
                "data": None,
                "before": _read(connector_path),
                "backup": None,
            }
        )
    if current_state is not None:
        actions.append(
            {
                "op": "remove",
                "relpath": STATE_RELPATH,
                "path": state_path,
                "data": None,
                "before": current_state,
                "backup": None,
            }
        )
    return info, actions


def _backup_path_for(path):
    return path + BACKUP_SUFFIX


def run(
    site_packages, state="present", backup=True, check_mode=False, python=None, connector_source=None, want_diff=False
):
    """Apply (``present``) or revert (``absent``) the patch. Returns the result dict.

    Raises PatchError for refusals (unsupported, missing, compile failure); in
    that case nothing has been written.
    """
    info, actions = plan(site_packages, state, connector_source, backup)
    python = python or sys.executable
    changed = bool(actions)
    to_compile = dict((a["relpath"], a["data"]) for a in actions if a["op"] == "write" and a["relpath"].endswith(".py"))
    if to_compile:
        compile_check(python, to_compile)
    written = []
    if changed and not check_mode:
        current = None
        try:
            for a in actions:
                current = a
                if a["op"] == "write":
                    if a.get("backup") and not os.path.exists(a["backup"]):
                        atomic_write(a["backup"], a["backup_data"])
                    atomic_write(a["path"], a["data"], a.get("mode"))
                else:
                    os.unlink(a["path"])
                written.append(a)
            if state == "absent":
                for f in info["files"].values():
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
            raise PatchError(
                "writing %s failed (%s); the earlier writes were rolled back"
                % (current["path"] if current else site_packages, exc)
            )
    after = inspect_install(site_packages) if (changed and not check_mode) else info
    files = []
    after_files = after.get("files", {})
    for f in [after_files[key] for key in sorted(after_files)]:
        bpath = _backup_path_for(f["path"])
        files.append(
            {
                "path": f["path"],
                "original_sha256": f["original_sha256"],
                "current_sha256": f["current_sha256"],
                "backup": bpath if os.path.exists(bpath) else None,
            }
        )
    if info["shape"] and SHAPES[info["shape"]]["connector"]:
        conn = os.path.join(site_packages, CONNECTOR_RELPATH)
        files.append(
            {
                "path": conn,
                "original_sha256": None,
                "current_sha256": sha256_file(conn),
                "backup": None,
            }
        )
    result = {
        "changed": changed,
        "lmcache_version": info["lmcache_version"],
        "classification": after["classification"] if not check_mode else info["classification"],
        "patch_needed": info["patch_needed"] if state == "present" else False,
        "reason": info["reason"],
        "shape": info["shape"],
        "site_packages": site_packages,
        "state_file": info.get("state_file"),
        "files": files,
    }
    diffs = [_diff(a["path"], a["before"], a["data"]) for a in actions]
    result["diff"] = diffs if want_diff else [dict(d, before="", after="") for d in diffs]
    return result
