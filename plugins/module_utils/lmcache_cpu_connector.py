# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vLLM KV connector that lets real LMCache cache KV on a vLLM CPU node.

This is the ``gaudi.vllm_lmcache`` collection's own addition: no LMCache release
supports vLLM's CPU KV-cache layout. LMCache's connector factory
(``CreateGPUConnector`` in ``lmcache/v1/gpu_connector/__init__.py``, 0.5.x) picks a
connector for ``cuda``, ``xpu``, ``musa`` and ``hpu`` and otherwise raises
``RuntimeError("No supported cpu connector found.")``; LMCache's manager
(``lmcache/v1/manager.py``) catches that, logs "System will operate in degraded
mode (recompute)" and vLLM then serves without any KV caching.

What this module does, without editing LMCache or vLLM on disk:

* :func:`install` wraps ``lmcache.v1.gpu_connector.CreateGPUConnector`` in the
  running process. LMCache's vLLM service factory imports that name at call time
  (``from lmcache.v1.gpu_connector import CreateGPUConnector`` inside
  ``VllmServiceFactory.get_or_create_lmcache_engine`` in
  ``lmcache/integration/vllm/vllm_service_factory.py``), so it gets the wrapper.
  For the vLLM engine on a ``cpu`` device the wrapper returns the collection's
  pure-PyTorch connector :class:`VLLMPagedMemHPUConnectorV2` (module
  ``hpu_kv_transfer``), which moves KV between LMCache's ``KV_2LTD`` memory
  objects and vLLM's CPU cache (one tensor per layer,
  ``[num_blocks, num_kv_heads, block_size, 2 * head_size]``) with ``index_select``
  / ``index_copy_``, restricted to whole vLLM blocks (:class:`VLLMCPUPagedConnector`,
  :func:`check_whole_blocks`: inside a block vLLM's CPU kernels store K transposed, so
  a chunk's bytes are exact only block by block; LMCache's ``chunk_size`` must be a
  multiple of vLLM's ``block_size``, 128 by default on CPU, and ``save_unfull_chunk``
  false, LMCache's default). Chunks stored this way hold the block bytes, not
  LMCache's token-major K/V: share them only among CPU nodes that run the same vLLM
  build. Every other device and engine goes to LMCache's own factory.
* :class:`LMCacheCPUConnectorV1` is a subclass of vLLM's ``LMCacheConnectorV1``
  (``vllm/distributed/kv_transfer/kv_connector/v1/lmcache_connector.py``) that
  calls :func:`install` before LMCache's adapter is built. vLLM loads it by name
  from ``kv_connector_module_path`` in ``--kv-transfer-config``
  (``KVConnectorFactory`` in ``vllm/distributed/kv_transfer/kv_connector/factory.py``
  imports the module and takes the class named ``kv_connector``); it is created
  in the scheduler and in every worker process, so each process is wrapped.

Install: copy this file and ``hpu_kv_transfer.py`` into one package on the serving
virtualenv's ``sys.path`` (e.g. ``site-packages/gaudi_vllm_lmcache_kv/`` with an
``__init__.py``) and start vLLM with :func:`kv_transfer_config`'s JSON::

    {"kv_connector": "LMCacheCPUConnectorV1",
     "kv_connector_module_path": "gaudi_vllm_lmcache_kv.lmcache_cpu_connector",
     "kv_role": "kv_both"}

Not supported on CPU (refused with an error naming the setting): LMCache's
layerwise mode (``use_layerwise``), blending and the v3 GPU connector.

Imports: PyTorch; vLLM and LMCache only when present (the module stays importable
and testable without them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# a sibling both as the collection's module_utils and in the installed package
from .hpu_kv_transfer import VLLMPagedMemHPUConnectorV2

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

CONNECTOR_NAME = "LMCacheCPUConnectorV1"
DEFAULT_PACKAGE = "gaudi_vllm_lmcache_kv"
DEFAULT_MODULE_PATH = DEFAULT_PACKAGE + ".lmcache_cpu_connector"
_MARK = "_gaudi_vllm_lmcache_cpu"

__all__ = [
    "CONNECTOR_NAME",
    "DEFAULT_MODULE_PATH",
    "install",
    "uninstall",
    "wrap_factory",
    "create_cpu_connector",
    "check_whole_blocks",
    "VLLMCPUPagedConnector",
    "kv_transfer_config",
]


def _name(value):
    """Enum member or string -> its name (``EngineType.VLLM`` -> ``"VLLM"``)."""
    return getattr(value, "name", value)


def create_cpu_connector(config, metadata):
    """The collection's connector for LMCache ``metadata`` on the host CPU.

    ``metadata.kv_shape`` is ``(num_layers, 2 or 1, chunk_size, num_kv_heads,
    head_size)`` (``LMCacheMetadata`` in ``lmcache/v1/metadata.py``).
    """
    for attr, what in (
        ("use_layerwise", "layerwise KV transfer"),
        ("enable_blending", "KV blending"),
        ("use_gpu_connector_v3", "the v3 GPU connector"),
    ):
        if getattr(config, attr, False):
            raise ValueError(
                "LMCache setting %s=True (%s) is not supported by the CPU KV connector; "
                "set %s to false for a vLLM CPU node" % (attr, what, attr)
            )
    if getattr(config, "save_unfull_chunk", False):
        raise ValueError(
            "LMCache setting save_unfull_chunk=True stores partial vLLM blocks, which the CPU KV "
            "connector cannot move (it moves whole blocks only); set save_unfull_chunk to false"
        )
    device = torch.device("cpu") if torch is not None else "cpu"
    return VLLMCPUPagedConnector.from_metadata(metadata, use_gpu=False, device=device)


def check_whole_blocks(slot_mapping, ranges, block_size):
    """Refuse token ranges that do not cover whole vLLM blocks.

    vLLM 0.32's CPU attention kernels keep each ``(block, head)`` slab of the cache in
    their own order: measured with ``_custom_ops.cpu_attn_reshape_and_cache`` (ISA
    ``vec``), V of token ``o`` is row ``o`` of the second half (``view(num_blocks, heads,
    2 * block_size, head_size).chunk(2, dim=2)`` in ``cpu_attn.py``) while K is stored
    transposed (``[head_size, block_size]``). The per-row copies of the packed layout
    therefore move the bytes of a *whole* block exactly (a bijection of the block's
    slab), but not one token's K. This connector only moves whole blocks: every range
    must start at a block boundary, cover a multiple of ``block_size`` tokens and map to
    consecutive slots within each block. ``ranges`` are ``(start, end)`` pairs into
    ``slot_mapping``.
    """
    host = torch.as_tensor(slot_mapping).to(device="cpu", dtype=torch.long)
    steps = torch.arange(block_size, dtype=torch.long)
    for start, end in ranges:
        n = end - start
        if n <= 0:
            continue
        sl = host[start:end]
        ok = n % block_size == 0
        if ok:
            rows = sl.view(-1, block_size)
            ok = bool((rows[:, 0] % block_size == 0).all()) and bool(
                torch.equal(rows - rows[:, :1], steps.expand_as(rows))
            )
        if not ok:
            raise ValueError(
                "the CPU KV connector moves whole vLLM blocks only, but tokens [%d, %d) do not "
                "cover whole blocks of %d slots (first slot %d); set LMCache chunk_size to a "
                "multiple of vLLM's block_size (%d) and keep save_unfull_chunk false"
                % (start, end, block_size, int(sl[0]), block_size)
            )


class VLLMCPUPagedConnector(VLLMPagedMemHPUConnectorV2):
    """:class:`VLLMPagedMemHPUConnectorV2` restricted to whole blocks (see :func:`check_whole_blocks`)."""

    def batched_to_gpu(self, memory_objs, starts, ends, **kwargs):
        memory_objs, starts, ends = list(memory_objs), list(starts), list(ends)
        if kwargs.get("slot_mapping") is not None:
            cached = int(kwargs.get("vllm_cached_tokens", 0) or 0)
            ranges = [(max(int(s), min(int(e), cached)), int(e)) for s, e in zip(starts, ends)]
            check_whole_blocks(kwargs["slot_mapping"], ranges, self.plan(**kwargs).block_size)
        return super().batched_to_gpu(memory_objs, starts, ends, **kwargs)

    def batched_from_gpu(self, memory_objs, starts, ends, **kwargs):
        memory_objs, starts, ends = list(memory_objs), list(starts), list(ends)
        if kwargs.get("slot_mapping") is not None:
            ranges = [(int(s), int(e)) for s, e in zip(starts, ends)]
            check_whole_blocks(kwargs["slot_mapping"], ranges, self.plan(**kwargs).block_size)
        return super().batched_from_gpu(memory_objs, starts, ends, **kwargs)


def wrap_factory(original, device_type):
    """Return a ``CreateGPUConnector`` that serves vLLM on CPU and delegates the rest.

    ``device_type`` is a string or a callable returning one (LMCache's
    ``lmcache.torch_device_type``).
    """
    if getattr(original, _MARK, False):
        return original

    def create_gpu_connector(config, metadata, engine, *args, **kwargs):
        dev = device_type() if callable(device_type) else device_type
        if dev == "cpu" and _name(engine) == "VLLM":
            return create_cpu_connector(config, metadata)
        return original(config, metadata, engine, *args, **kwargs)

    setattr(create_gpu_connector, _MARK, True)
    create_gpu_connector.__wrapped__ = original
    create_gpu_connector.__doc__ = original.__doc__
    return create_gpu_connector


def install(module=None, device_type=None):
    """Wrap ``CreateGPUConnector`` of ``module`` (default: ``lmcache.v1.gpu_connector``).

    Idempotent. Returns True when the wrapper is (now) in place.
    """
    if module is None:
        import lmcache.v1.gpu_connector as module  # pylint: disable=import-outside-toplevel
    if device_type is None:

        def device_type():
            import lmcache  # pylint: disable=import-outside-toplevel

            return getattr(lmcache, "torch_device_type", "cpu") or "cpu"

    current = module.CreateGPUConnector
    module.CreateGPUConnector = wrap_factory(current, device_type)
    return True


def uninstall(module=None):
    """Undo :func:`install` (tests, or to hand back LMCache's own factory)."""
    if module is None:
        import lmcache.v1.gpu_connector as module  # pylint: disable=import-outside-toplevel
    current = module.CreateGPUConnector
    if getattr(current, _MARK, False):
        module.CreateGPUConnector = current.__wrapped__
        return True
    return False


def kv_transfer_config(module_path=DEFAULT_MODULE_PATH, kv_role="kv_both", extra=None):
    """The ``--kv-transfer-config`` object for vLLM (``json.dumps`` it for the CLI)."""
    if kv_role not in ("kv_both", "kv_producer", "kv_consumer"):
        raise ValueError("kv_role must be kv_both, kv_producer or kv_consumer, got %r" % (kv_role,))
    cfg = {
        "kv_connector": CONNECTOR_NAME,
        "kv_connector_module_path": module_path,
        "kv_role": kv_role,
    }
    if extra:
        cfg["kv_connector_extra_config"] = dict(extra)
    return cfg


def kv_transfer_config_json(**kwargs):
    return json.dumps(kv_transfer_config(**kwargs), sort_keys=True)


try:  # the class vLLM loads; only where vLLM and LMCache are installed
    from vllm.distributed.kv_transfer.kv_connector.v1.lmcache_connector import (
        LMCacheConnectorV1 as _LMCacheConnectorV1,
    )
except ImportError:
    _LMCacheConnectorV1 = None

if _LMCacheConnectorV1 is not None:

    class LMCacheCPUConnectorV1(_LMCacheConnectorV1):
        """vLLM's LMCache connector with LMCache's factory wrapped for the CPU layout."""

        def __init__(self, *args, **kwargs):
            install()
            super().__init__(*args, **kwargs)

    __all__.append(CONNECTOR_NAME)
