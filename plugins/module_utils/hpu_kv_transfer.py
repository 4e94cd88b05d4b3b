# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure-PyTorch KV-cache transfer for LMCache on Intel Gaudi (HPU).

This file has two lives:

* it is a plain module of the ``gaudi.vllm_lmcache`` collection, importable and
  testable with nothing but PyTorch (no LMCache, no vLLM, no device);
* the ``gaudi.vllm_lmcache.lmcache_hpu_patch`` module installs it, byte for byte,
  as ``lmcache/v1/gaudi_hpu_connector.py`` into LMCache 0.3.6 to 0.4.2, whose
  patched vLLM integration creates :class:`VLLMPagedMemHPUConnectorV2` instead
  of the CUDA connector when the engine runs on an HPU.

Why: in LMCache 0.3.6 to 0.4.2 the paged-memory connector
(``VLLMPagedMemGPUConnectorV2`` in ``lmcache/v1/gpu_connector.py``, from 0.3.14
``lmcache/v1/gpu_connector/gpu_connectors.py``) moves KV data with the CUDA
kernels of ``lmcache.c_ops`` (``multi_layer_kv_transfer`` over a table of raw
device pointers) on ``torch.cuda`` streams. None of that exists on Gaudi.
LMCache 0.4.3 added a native HPU connector built on ``index_select`` /
``index_copy_``; this module does the equivalent for the older releases.

LMCache's connector interface in those releases (``GPUConnectorInterface``)::

    to_gpu(memory_obj, start, end, **kwargs)      # memory object -> paged KV
    from_gpu(memory_obj, start, end, **kwargs)    # paged KV -> memory object
    batched_to_gpu(memory_objs, starts, ends, **kwargs)
    batched_from_gpu(memory_objs, starts, ends, **kwargs)
    get_shape(num_tokens) -> torch.Size
    initialize_kvcaches_ptr(**kwargs)             # stores kwargs["kvcaches"]

``kwargs`` carry ``kvcaches`` (the whole paged cache of the worker) and
``slot_mapping`` (a *full* slot mapping: one slot per token of the whole token
sequence; ``[start:end]`` selects the chunk; prefix-cache hits are ``-1`` and
lie outside every ``[start, end)`` LMCache asks for). A memory object
(``MemoryObj``) has ``.tensor`` and ``.metadata.fmt`` (``MemoryFormat``).
Connectors are built either as ``cls(hidden_dim_size, num_layers, use_gpu=...,
chunk_size=..., dtype=..., device=..., use_mla=...)`` (0.3.6 to 0.3.10) or
through ``cls.from_metadata(metadata, use_gpu, device)`` where
``metadata.kv_shape == (num_layers, 2 or 1, chunk_size, num_kv_heads,
head_size)`` (0.3.11 to 0.4.2). The engine reads ``gpu_connector.kvcaches``
and probes ``hasattr(gpu_connector, "load_stream")`` (CUDA streams; this class
has none).

KV-cache structure that vLLM-Gaudi hands to the connector (``kv_caches`` of
``vllm_gaudi/v1/worker/hpu_model_runner.py``, ``initialize_kv_cache``; the
shape comes from the HPU attention backend's ``get_kv_cache_shape``; LMCache
0.4.3's ``hpu_connector.py`` documents the same)::

    kvcaches: list over layers of (key_cache, value_cache)
    key_cache, value_cache: [num_blocks, block_size, num_kv_heads, head_size]
    slot s -> block s // block_size, offset s % block_size

Each K or V tensor is viewed as ``[num_blocks * block_size, num_kv_heads *
head_size]`` and indexed by slot. The CUDA layout of upstream vLLM (one tensor
per layer, ``[2, num_blocks, block_size, num_kv_heads, head_size]``) is
accepted too. With MLA a layer is one latent tensor ``[num_blocks, block_size,
head_size]`` (or a ``(latent, None)`` pair).

Memory-object formats (LMCache ``MemoryFormat``)::

    KV_2LTD     [2, num_layers, num_tokens, num_kv_heads * head_size]   (K, V)
    KV_MLA_FMT  [1, num_layers, num_tokens, head_size]                  (MLA)

On an HPU every transfer calls ``htcore.mark_step()`` at its boundaries and
per layer (lazy mode) and ``torch.hpu.synchronize()`` before returning, so the
memory object is complete when LMCache stores it.

Imports: PyTorch only (``habana_frameworks.torch.core`` when present).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    import torch

    HAS_TORCH = True
except ImportError:  # pragma: no cover - the module must stay importable without torch
    torch = None
    HAS_TORCH = False

try:  # Intel Gaudi only; absent everywhere else
    import habana_frameworks.torch.core as htcore
except ImportError:
    htcore = None

FMT_KV = "KV_2LTD"
FMT_MLA = "KV_MLA_FMT"

__all__ = [
    "VLLMPagedMemHPUConnectorV2",
    "gather_kv",
    "scatter_kv",
    "kv_geometry",
]


def _require_torch():
    if torch is None:
        raise RuntimeError("the HPU KV-cache connector needs PyTorch")


def _is_hpu(device):
    return getattr(device, "type", None) == "hpu"


def mark_step(device):
    """Flush the HPU lazy-mode graph (no-op on other devices)."""
    if htcore is not None and _is_hpu(device):
        htcore.mark_step()


def synchronize(device):
    """Wait for the device when it is an HPU (other devices: no-op here)."""
    if _is_hpu(device):
        torch.hpu.synchronize()


def _layer_tensors(layer, use_mla):
    """Return the per-layer tensors: ``(k, v)`` or ``(latent,)`` for MLA."""
    if use_mla:
        if isinstance(layer, (tuple, list)):
            if not layer or not hasattr(layer[0], "dim"):
                raise ValueError("MLA layer must be a tensor or a (latent, ...) tuple")
            layer = layer[0]
        if layer.dim() != 3:
            raise ValueError(
                "MLA KV cache layer must be [num_blocks, block_size, head_size], got %s"
                % (tuple(layer.shape),))
        return (layer,)
    if isinstance(layer, (tuple, list)):
        if len(layer) != 2:
            raise ValueError("a KV cache layer must be a (key_cache, value_cache) pair")
        k, v = layer[0], layer[1]
    elif hasattr(layer, "dim") and layer.dim() == 5 and layer.shape[0] == 2:
        k, v = layer[0], layer[1]
    else:
        raise ValueError(
            "a KV cache layer must be (key_cache, value_cache) of "
            "[num_blocks, block_size, num_kv_heads, head_size] or one "
            "[2, num_blocks, block_size, num_kv_heads, head_size] tensor")
    if k.dim() != 4 or tuple(k.shape) != tuple(v.shape):
        raise ValueError(
            "key and value caches must both be [num_blocks, block_size, "
            "num_kv_heads, head_size], got %s and %s" % (tuple(k.shape), tuple(v.shape)))
    return (k, v)


def _flat(t):
    """View a paged tensor as ``[num_blocks * block_size, width]`` (no copy)."""
    width = 1
    for n in t.shape[2:]:
        width *= int(n)
    try:
        return t.view(t.shape[0] * t.shape[1], width)
    except RuntimeError as exc:
        raise ValueError("paged KV tensor cannot be viewed by slot (not contiguous): %s" % exc)


def kv_geometry(kvcaches, use_mla=False):
    """Describe ``kvcaches``: dict with num_layers, num_slots, width, dtype, device."""
    if kvcaches is None or len(kvcaches) == 0:
        raise ValueError("'kvcaches' is empty or missing")
    first = _layer_tensors(kvcaches[0], use_mla)[0]
    flat = _flat(first)
    return {
        "num_layers": len(kvcaches),
        "num_slots": int(flat.shape[0]),
        "width": int(flat.shape[1]),
        "dtype": first.dtype,
        "device": first.device,
    }


def _flat_layers(kvcaches, use_mla):
    """List over layers of flat views: [(k_flat, v_flat)] or [(latent_flat,)]."""
    return [tuple(_flat(t) for t in _layer_tensors(layer, use_mla)) for layer in kvcaches]


def _slots(slot_mapping, start, end, device):
    if slot_mapping is None:
        raise ValueError("'slot_mapping' should be provided in kwargs.")
    if start < 0 or end < start or end > slot_mapping.shape[0]:
        raise ValueError(
            "token range [%d, %d) is outside the slot mapping of %d tokens"
            % (start, end, slot_mapping.shape[0]))
    slots = slot_mapping[start:end]
    if slots.device != device or slots.dtype != torch.long:
        slots = slots.to(device=device, dtype=torch.long)
    return slots


def _check_dst(tensor, parts, num_layers, num_tokens, width):
    want = (parts, num_layers, num_tokens, width)
    if tuple(tensor.shape) != want:
        raise ValueError(
            "memory object tensor has shape %s, expected %s for this chunk"
            % (tuple(tensor.shape), want))


def _prepare(kvcaches, slot_mapping, start, end, kv, use_mla):
    """Common start of a transfer: flat per-layer views, the cache device and the slots of
    ``[start, end)``; checks ``kv``'s shape against them and marks the step boundary."""
    _require_torch()
    layers = _flat_layers(kvcaches, use_mla)
    dev = layers[0][0].device
    slots = _slots(slot_mapping, start, end, dev)
    _check_dst(kv, len(layers[0]), len(layers), int(slots.shape[0]), int(layers[0][0].shape[1]))
    mark_step(dev)
    return layers, dev, slots


def gather_kv(kvcaches, slot_mapping, start, end, out, use_mla=False, staging=None):
    """Paged KV -> ``out`` (``KV_2LTD`` or ``KV_MLA_FMT`` layout) for tokens ``[start, end)``.

    ``out`` may live on another device (e.g. pinned host memory): the slots are
    gathered on the cache device (into ``staging`` when given) and copied once.
    Returns ``out``.
    """
    layers, dev, slots = _prepare(kvcaches, slot_mapping, start, end, out, use_mla)
    direct = out.device == dev and out.dtype == layers[0][0].dtype and out.is_contiguous()
    if direct:
        buf = out
    elif staging is not None:
        buf = staging
    else:
        buf = torch.empty(tuple(out.shape), dtype=layers[0][0].dtype, device=dev)
    for i, tensors in enumerate(layers):
        for p, flat in enumerate(tensors):
            torch.index_select(flat, 0, slots, out=buf[p, i])
        mark_step(dev)
    if not direct:
        out.copy_(buf, non_blocking=_is_hpu(dev))
        mark_step(dev)
    synchronize(dev)
    return out


def scatter_kv(kvcaches, slot_mapping, start, end, src, use_mla=False):
    """``src`` (``KV_2LTD`` / ``KV_MLA_FMT``) -> paged KV at the slots of ``[start, end)``.

    Only the slots of the range are written; every other slot (including the
    ``-1`` prefix-cache entries outside the range) stays untouched.
    """
    layers, dev, slots = _prepare(kvcaches, slot_mapping, start, end, src, use_mla)
    if src.device != dev or src.dtype != layers[0][0].dtype:
        src = src.to(device=dev, dtype=layers[0][0].dtype)
    for i, tensors in enumerate(layers):
        for p, flat in enumerate(tensors):
            flat.index_copy_(0, slots, src[p, i])
        mark_step(dev)
    synchronize(dev)


def _fmt_name(memory_obj):
    fmt = getattr(getattr(memory_obj, "metadata", None), "fmt", None)
    return getattr(fmt, "name", fmt)


class VLLMPagedMemHPUConnectorV2:
    """LMCache GPU connector for vLLM-Gaudi's paged KV caches (pure PyTorch).

    Same contract as LMCache's ``VLLMPagedMemGPUConnectorV2``: it produces and
    consumes memory objects in ``KV_2LTD`` format (``KV_MLA_FMT`` with MLA).
    """

    def __init__(self, hidden_dim_size=None, num_layers=None, use_gpu=False, **kwargs):
        _require_torch()
        self.hidden_dim_size = hidden_dim_size
        self.num_layers = num_layers
        self.use_gpu = use_gpu
        self.use_mla = bool(kwargs.get("use_mla", False))
        self.chunk_size = kwargs.get("chunk_size")
        self.dtype = kwargs.get("dtype")
        device = kwargs.get("device")
        self.device = torch.device(device) if device is not None else None
        self.kvcaches = None
        self._staging = {}

    @classmethod
    def from_metadata(cls, metadata, use_gpu=False, device=None):
        """Build from LMCache metadata (``kv_shape = (L, 2|1, chunk, heads, head_size)``)."""
        num_layers, _kv, chunk_size, num_kv_head, head_size = tuple(metadata.kv_shape)[:5]
        return cls(
            hidden_dim_size=num_kv_head * head_size,
            num_layers=num_layers,
            use_gpu=use_gpu,
            chunk_size=chunk_size,
            dtype=getattr(metadata, "kv_dtype", None),
            device=device,
            use_mla=getattr(metadata, "use_mla", False),
        )

    # LMCache calls this from engine.post_init(kvcaches=...)
    def initialize_kvcaches_ptr(self, **kwargs):
        if "kvcaches" in kwargs:
            self.kvcaches = kwargs["kvcaches"]

    def _caches(self, kwargs):
        self.initialize_kvcaches_ptr(**kwargs)
        if self.kvcaches is None or len(self.kvcaches) == 0:
            raise ValueError("'kvcaches' should be provided in kwargs or initialized beforehand.")
        return self.kvcaches

    def _check_fmt(self, memory_obj):
        want = FMT_MLA if self.use_mla else FMT_KV
        got = _fmt_name(memory_obj)
        if got != want:
            raise ValueError(
                "The memory object should be in %s format in order to be processed "
                "by VLLMPagedMemHPUConnectorV2 (got %s)" % (want, got))

    def _staging_for(self, shape, dtype, device):
        key = (tuple(shape), dtype, str(device))
        buf = self._staging.get(key)
        if buf is None:
            self._staging.clear()
            buf = torch.empty(tuple(shape), dtype=dtype, device=device)
            self._staging[key] = buf
        return buf

    def to_gpu(self, memory_obj, start, end, **kwargs):
        """Memory object (``KV_2LTD``) -> paged KV for ``slot_mapping[start:end]``."""
        if memory_obj.tensor is None:
            raise ValueError("the memory object has no tensor")
        self._check_fmt(memory_obj)
        caches = self._caches(kwargs)
        if "slot_mapping" not in kwargs:
            raise ValueError("'slot_mapping' should be provided in kwargs.")
        scatter_kv(caches, kwargs["slot_mapping"], start, end, memory_obj.tensor, self.use_mla)

    def from_gpu(self, memory_obj, start, end, **kwargs):
        """Paged KV for ``slot_mapping[start:end]`` -> memory object (``KV_2LTD``)."""
        if memory_obj.tensor is None:
            raise ValueError("the memory object has no tensor")
        caches = self._caches(kwargs)
        if "slot_mapping" not in kwargs:
            raise ValueError("'slot_mapping' should be provided in kwargs.")
        geo = kv_geometry(caches, self.use_mla)
        out = memory_obj.tensor
        staging = None
        if out.device != geo["device"] or out.dtype != geo["dtype"] or not out.is_contiguous():
            staging = self._staging_for(out.shape, geo["dtype"], geo["device"])
        gather_kv(caches, kwargs["slot_mapping"], start, end, out, self.use_mla, staging)
        fmt = getattr(memory_obj.metadata, "fmt", None)
        if self.use_mla and fmt is not None and hasattr(type(fmt), "__members__"):
            memory_obj.metadata.fmt = type(fmt)[FMT_MLA]

    def batched_to_gpu(self, memory_objs, starts, ends, **kwargs):
        for memory_obj, start, end in zip(memory_objs, starts, ends):
            self.to_gpu(memory_obj, start, end, **kwargs)

    def batched_from_gpu(self, memory_objs, starts, ends, **kwargs):
        for memory_obj, start, end in zip(memory_objs, starts, ends):
            self.from_gpu(memory_obj, start, end, **kwargs)

    def get_shape(self, num_tokens):
        kv_size = 1 if self.use_mla else 2
        return torch.Size([kv_size, self.num_layers, num_tokens, self.hidden_dim_size])
