# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure-PyTorch KV-cache transfer for LMCache on Intel Gaudi (HPU) and CPU.

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
device pointers) on ``torch.cuda`` streams. None of that exists on Gaudi or on a
CPU-only PyTorch. LMCache 0.4.3 added a native HPU connector
(``lmcache/v1/gpu_connector/hpu_connector.py``, ``index_select`` /
``index_copy_`` per layer); this module does the equivalent for the older
releases, for more cache layouts and with fewer graph flushes.

LMCache's connector interface (``GPUConnectorInterface``)::

    to_gpu(memory_obj, start, end, **kwargs)      # memory object -> paged KV
    from_gpu(memory_obj, start, end, **kwargs)    # paged KV -> memory object
    batched_to_gpu(memory_objs, starts, ends, **kwargs)
    batched_from_gpu(memory_objs, starts, ends, **kwargs)
    get_shape(num_tokens) -> torch.Size
    initialize_kvcaches_ptr(**kwargs)             # stores kwargs["kvcaches"]

``kwargs`` carry ``kvcaches`` (the whole paged cache of the worker),
``slot_mapping`` and, on retrieve, ``vllm_cached_tokens``. The slot mapping is a
*full* slot mapping: one slot per token of the whole token sequence, and
``[start:end]`` selects the chunk. In LMCache 0.4.2 the vLLM adapter builds it
from the request's block ids for every token
(``block_ids * block_size + arange(block_size)``, flattened, in
``lmcache/integration/vllm/vllm_v1_adapter.py``; on retrieve it is moved to the
engine's device, so this connector copies it to the host once per batch): there are no ``-1`` entries,
and a slot of a token that vLLM already holds in its own prefix cache is a real
slot of a block that other requests may share. The adapter rounds the retrieve
mask down to a chunk boundary, so the first retrieved chunk often covers such
tokens; like LMCache's CUDA connector, ``to_gpu`` therefore skips the first
``min(end - start, max(0, vllm_cached_tokens - start))`` tokens of a chunk and
never rewrites a block that vLLM already holds (``from_gpu`` reads every token).
Slots outside ``[0, num_blocks * block_size)`` are refused with an error.

A memory object (``MemoryObj``) has ``.tensor`` and ``.metadata.fmt``
(``MemoryFormat``)::

    KV_2LTD     [2, num_layers, num_tokens, num_kv_heads * head_size]   (K, V)
    KV_MLA_FMT  [1, num_layers, num_tokens, head_size]                  (MLA)

Connectors are built either as ``cls(hidden_dim_size, num_layers, use_gpu=...,
chunk_size=..., dtype=..., device=..., use_mla=...)`` (0.3.6 to 0.3.10) or
through ``cls.from_metadata(metadata, use_gpu, device)`` where
``metadata.kv_shape == (num_layers, 2 or 1, chunk_size, num_kv_heads,
head_size)`` (0.3.11 to 0.4.2).

Paged KV-cache layouts accepted (``kvcaches`` is a list over layers; slot ``s``
is block ``s // block_size``, offset ``s % block_size``):

* vLLM-Gaudi (``vllm_gaudi/v1/worker/hpu_model_runner.py``,
  ``initialize_kv_cache``; LMCache 0.4.3's ``hpu_connector.py`` documents the
  same): each layer a ``(key_cache, value_cache)`` pair -- a tuple, list,
  ``TensorTuple`` or any object indexable by ``[0]`` and ``[1]`` -- of
  ``[num_blocks, block_size, num_kv_heads, head_size]`` tensors;
* upstream vLLM CUDA style: one tensor per layer,
  ``[2, num_blocks, block_size, num_kv_heads, head_size]``;
* vLLM CPU / FlashAttention packed style (``kv_cache.transpose(1, 2).split(
  head_size, dim=-1)`` in ``vllm/v1/attention/backends/flash_attn.py``): one
  tensor per layer, ``[num_blocks, num_kv_heads, block_size, 2 * head_size]``;
  in every row the first ``head_size`` values are K, the last ``head_size`` V;
* MLA: one latent tensor per layer ``[num_blocks, block_size, head_size]`` (or a
  ``(latent, None)`` pair).

How the bytes move: the flat per-layer views (``[num_slots, width]`` and
``[num_blocks, block_size * width]``) are built once per cache and reused. Each
chunk's slots are read on the host once; runs of consecutive slots inside one
block (vLLM allocates slots block by block) are copied as slices, whole blocks
through one block-granular ``index_select`` / ``index_copy_`` per layer, and
scattered slots through one slot-granular ``index_select`` / ``index_copy_`` per
layer. A memory object on another device or dtype goes through a staging buffer
on the cache device that is kept and reused across calls and chunk lengths.

On an HPU a transfer calls ``htcore.mark_step()`` once before the first chunk of
a batch and once after each chunk (not per layer), and ``torch.hpu.synchronize()``
once per batch, so the memory objects are complete when LMCache stores them.

MLA: LMCache's engine (``LMCacheEngine.__init__`` in ``lmcache/v1/cache_engine.py``,
0.4.2 to 0.5.6) sets ``save_only_first_rank`` to ``use_mla`` by default and then
takes ``gpu_connector.load_stream`` when the connector has that attribute, else
creates ``torch.cuda.Stream()`` (which fails without CUDA). This class has
``load_stream = None``; ``torch.cuda.stream(None)`` is a no-op context.

Not provided: layerwise transfer (``VLLMPagedMemLayerwiseGPUConnector``), the
GPU intermediate buffer of the CUDA connector, CUDA streams, P/D (NIXL) and the
cachegen serde.

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

# one call for many slice copies (PyTorch 2.1+); a loop of copy_() otherwise and on HPU
_FOREACH_COPY = getattr(torch, "_foreach_copy_", None) if torch is not None else None

# On CPU the index kernels (index_select, and index_copy_ even more) move one element at a
# time; the same bytes reinterpreted as the widest element that divides a row move in
# 16-byte units: measured on one thread, a block-granular index_copy_ of bf16 rows went from
# 0.35 to 1.0 of a plain copy_. Only a reinterpretation (Tensor.view(dtype)): no
# arithmetic touches the values, so every bit pattern is preserved. Not used on HPU.
_WIDE_DTYPES = (
    tuple(d for d in (getattr(torch, n, None) for n in ("complex128", "int64", "int32")) if d is not None)
    if torch is not None
    else ()
)

# Reading whole blocks on CPU: from this block size in bytes (block_size * width * element
# size) one torch.cat of the block rows into the chunk (a memcpy per block; measured on one
# thread with cold caches: 1.0 of a plain copy_, index_select 0.85) beats the index kernel,
# whose per-row work outgrows the cost of building one view per block and layer.
_CAT_MIN_ROW_BYTES = 128 * 1024

FMT_KV = "KV_2LTD"
FMT_MLA = "KV_MLA_FMT"

LAYOUT_PAIRS = "kv_pairs"  # per layer (K, V), each [blocks, block_size, heads, head]
LAYOUT_STACKED = "kv_stacked"  # per layer [2, blocks, block_size, heads, head]
LAYOUT_PACKED = "kv_packed"  # per layer [blocks, heads, block_size, 2 * head]
LAYOUT_MLA = "mla"  # per layer [blocks, block_size, head]

__all__ = [
    "VLLMPagedMemHPUConnectorV2",
    "CachePlan",
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


def _is_tensor(x):
    return torch is not None and isinstance(x, torch.Tensor)


def _pair(layer, index):
    """``(K, V)`` of a layer that is not a tensor (tuple, TensorTuple, ``__getitem__`` only)."""
    try:
        return layer[0], layer[1]
    except (TypeError, IndexError, KeyError):
        raise ValueError(
            "kvcaches[%d] must be a tensor or a (key_cache, value_cache) pair, got %s" % (index, type(layer).__name__)
        )


def _layer_parts(layer, use_mla, index):
    """Return ``(layout, parts)``; ``parts`` are the layer's tensors in their own shapes."""
    if use_mla:
        if not _is_tensor(layer):
            layer = _pair(layer, index)[0]
        if not _is_tensor(layer) or layer.dim() != 3:
            raise ValueError(
                "with use_mla, kvcaches[%d] must be a latent tensor [num_blocks, block_size, "
                "head_size] or a (latent, None) pair, got %s"
                % (index, tuple(layer.shape) if _is_tensor(layer) else type(layer).__name__)
            )
        return LAYOUT_MLA, (layer,)
    if _is_tensor(layer):
        if layer.dim() == 5 and layer.shape[0] == 2:
            return LAYOUT_STACKED, (layer[0], layer[1])
        if layer.dim() == 4 and layer.shape[3] % 2 == 0:
            return LAYOUT_PACKED, (layer,)
        raise ValueError(
            "kvcaches[%d] has shape %s; a KV cache layer tensor must be "
            "[2, num_blocks, block_size, num_kv_heads, head_size] or "
            "[num_blocks, num_kv_heads, block_size, 2 * head_size] (an MLA latent cache "
            "[num_blocks, block_size, head_size] needs use_mla=True)" % (index, tuple(layer.shape))
        )
    k, v = _pair(layer, index)
    if not (_is_tensor(k) and _is_tensor(v)) or k.dim() != 4 or tuple(k.shape) != tuple(v.shape):
        raise ValueError(
            "kvcaches[%d] must be (key_cache, value_cache) of equal shape [num_blocks, "
            "block_size, num_kv_heads, head_size], got %s and %s"
            % (index, tuple(getattr(k, "shape", ())), tuple(getattr(v, "shape", ())))
        )
    return LAYOUT_PAIRS, (k, v)


def _view(t, shape, what):
    try:
        return t.view(*shape)
    except RuntimeError as exc:
        raise ValueError("%s cannot be viewed as %s without a copy (not contiguous): %s" % (what, tuple(shape), exc))


def _index_all(caches, idx, mems, to_cache):
    """One index op per (cache view, memory-object view) pair: rows ``idx`` of each cache
    view to or from the memory-object view."""
    if to_cache:
        for c, m in zip(caches, mems):
            c.index_copy_(0, idx, m)
    else:
        select = torch.index_select
        for c, m in zip(caches, mems):
            select(c, 0, idx, out=m)


class CachePlan:
    """Geometry and reusable views of one paged KV cache (built once per cache).

    Attributes: ``layout``, ``num_layers``, ``num_blocks``, ``block_size``,
    ``num_heads``, ``head_size``, ``width`` (values per token and part),
    ``parts`` (2 for K/V, 1 for MLA), ``dtype``, ``device``, ``num_slots``.
    """

    def __init__(self, kvcaches, use_mla=False):
        _require_torch()
        if kvcaches is None or len(kvcaches) == 0:
            raise ValueError("'kvcaches' is empty or missing")
        layers = [_layer_parts(layer, use_mla, i) for i, layer in enumerate(kvcaches)]
        layout = layers[0][0]
        first = layers[0][1][0]
        for i, (lay, parts) in enumerate(layers):
            if lay != layout or any(
                tuple(p.shape) != tuple(first.shape) or p.dtype != first.dtype or p.device != first.device
                for p in parts
            ):
                raise ValueError(
                    "kvcaches[%d] differs from kvcaches[0] in layout, shape, dtype or device "
                    "(%s %s vs %s %s)" % (i, lay, tuple(parts[0].shape), layout, tuple(first.shape))
                )
        self.layout = layout
        self.num_layers = len(layers)
        self.dtype = first.dtype
        self.device = first.device
        shape = tuple(int(n) for n in first.shape)
        if layout == LAYOUT_MLA:
            self.num_blocks, self.block_size, self.head_size = shape
            self.num_heads = 1
        elif layout == LAYOUT_PACKED:
            self.num_blocks, self.num_heads, self.block_size, two_head = shape
            self.head_size = two_head // 2
        else:
            self.num_blocks, self.block_size, self.num_heads, self.head_size = shape
        self.parts = 1 if layout == LAYOUT_MLA else 2
        self.width = self.num_heads * self.head_size
        self.num_slots = self.num_blocks * self.block_size
        self.tensors = [parts for _lay, parts in layers]
        nb, bs, w = self.num_blocks, self.block_size, self.width
        if layout == LAYOUT_PACKED:
            # rows of head_size values: row ((b * heads + h) * block_size + o) * 2 + part
            self.rows = [
                _view(p[0], (nb * self.num_heads * bs * 2, self.head_size), "kvcaches[%d]" % i)
                for i, p in enumerate(self.tensors)
            ]
            self.head_offsets = torch.arange(self.num_heads, dtype=torch.long) * bs
            self.flat = self.blocks = None
        else:
            self.flat = [
                tuple(_view(t, (nb * bs, w), "kvcaches[%d]" % i) for t in p) for i, p in enumerate(self.tensors)
            ]
            self.blocks = [
                tuple(_view(t, (nb, bs * w), "kvcaches[%d]" % i) for t in p) for i, p in enumerate(self.tensors)
            ]
            self.rows = None
        # index-op operands in memory-object order (part-major, then layer), reinterpreted
        # as the widest element type when the cache is on the CPU (see _WIDE_DTYPES)
        self.wide = self._wide_dtype(first)
        if layout == LAYOUT_PACKED:
            self.idx_rows = [self._widen(r) for r in self.rows]
            self.idx_flat = self.idx_blocks = None
        else:
            self.blk_rows = [views[p] for p in range(self.parts) for views in self.blocks]
            self.flat_rows = [views[p] for p in range(self.parts) for views in self.flat]
            self.idx_blocks = [self._widen(v) for v in self.blk_rows]
            self.idx_flat = [self._widen(v) for v in self.flat_rows]
            self.idx_rows = None
        self.element_size = first.element_size()

    def _wide_dtype(self, first):
        """The widest element type whose size divides one row (head_size values for the
        packed layout, a token's width otherwise) and every view's offset; None off CPU."""
        if self.device.type != "cpu":
            return None
        row = self.head_size if self.layout == LAYOUT_PACKED else self.width
        size = first.element_size()
        for dtype in _WIDE_DTYPES:
            wsize = torch.empty((), dtype=dtype).element_size()
            if wsize > size and (row * size) % wsize == 0:
                try:
                    for parts in self.tensors:
                        for t in parts:
                            t.view(-1).view(dtype)  # raises on a misaligned storage offset
                except RuntimeError:
                    continue
                return dtype
        return None

    def _widen(self, t):
        return t if self.wide is None else t.view(self.wide)

    def mem_index_views(self, mem, t0, t1, nrows):
        """``mem[:, :, t0:t1]`` as ``parts * layers`` views of ``nrows`` rows (one unbind),
        in the element type of the index-op operands (native when the offset forbids it)."""
        v = mem[:, :, t0:t1].view(self.parts * self.num_layers, nrows, -1)
        if self.wide is not None:
            try:
                return v.view(self.wide).unbind(0), True
            except RuntimeError:  # memory object at an offset that the wide type cannot address
                pass
        return v.unbind(0), False

    @staticmethod
    def key(kvcaches):
        """Identity of a cache: the list object, its length and the first/last storage."""

        def ptr(layer):
            t = layer if _is_tensor(layer) else layer[0]
            return t.data_ptr() if _is_tensor(t) else id(t)

        return (id(kvcaches), len(kvcaches), ptr(kvcaches[0]), ptr(kvcaches[-1]))

    # -- per-chunk slot analysis (host side) ---------------------------------------------

    def chunk(self, host_slots):
        """Split one chunk's slots (a host LongTensor) into transfer pieces.

        Returns a list of ``(kind, t0, t1, arg)`` over token ranges of the chunk:
        ``("run", t0, t1, first_slot)`` for consecutive slots (inside one block for the
        packed layout), ``("blocks", t0, t1, block_ids)`` for whole blocks in any order,
        ``("slots", t0, t1, None)`` for scattered slots.

        A block-granular chunk (how vLLM allocates: a partial first block, whole blocks in
        any order, a partial last block) becomes ``run``, ``blocks``, ``run`` (each
        optional); a chunk of consecutive slots one ``run``; one pass over the slots (on
        one thread a pass over 256 host integers measured a third of the cost of the
        dozen small tensor ops that do the same test).
        """
        n = int(host_slots.shape[0])
        if n == 0:
            return []
        vals = host_slots.tolist()
        lo, hi = min(vals), max(vals)
        if lo < 0 or hi >= self.num_slots:
            raise ValueError(
                "slot_mapping holds slot %d for this chunk; slots must be in [0, %d) "
                "(num_blocks %d * block_size %d)"
                % (lo if lo < 0 else hi, self.num_slots, self.num_blocks, self.block_size)
            )
        bs = self.block_size
        packed = self.layout == LAYOUT_PACKED
        off0 = vals[0] % bs
        granular = True  # every break so far is at a block boundary, into a block start
        breaks = []
        prev = vals[0]
        for t in range(1, n):
            s = vals[t]
            if s != prev + 1 or (packed and s % bs == 0):
                breaks.append(t)
                if granular and ((t + off0) % bs or s % bs):
                    granular = False
                if not granular and len(breaks) * 8 >= n:  # short runs on average: slot by slot
                    return [("slots", 0, n, None)]
            prev = s
        if not breaks:
            return [("run", 0, n, vals[0])]
        if granular and not packed:
            head = min(n, (bs - off0) % bs)
            whole = ((n - head) // bs) * bs
            pieces = []
            if head:
                pieces.append(("run", 0, head, vals[0]))
            if whole:
                ids = torch.tensor(vals[head : head + whole : bs], dtype=torch.long) // bs
                pieces.append(("blocks", head, head + whole, ids))
            if head + whole < n:
                pieces.append(("run", head + whole, n, vals[head + whole]))
            return pieces
        bounds = [0] + breaks + [n]
        if len(bounds) - 1 <= 4:
            return [("run", bounds[i], bounds[i + 1], vals[bounds[i]]) for i in range(len(bounds) - 1)]
        return [("slots", 0, n, None)]

    def packed_rows(self, host_slots):
        """Row indices of the packed layout: ``[T * heads]`` for K; V rows are K rows + 1."""
        bs = self.block_size
        base = (host_slots // bs) * (self.num_heads * bs) + host_slots % bs
        return ((base[:, None] + self.head_offsets[None, :]) * 2).reshape(-1)

    # -- data movement -------------------------------------------------------------------

    def _moves(self, pieces, host_slots, dev_slots, mem, to_cache):
        """Slice copies as ``(destinations, sources)`` lists, index ops run directly.

        ``mem`` is the chunk in memory-object layout on the cache device
        ([parts, layers, T, width], every [T, width] row block contiguous).
        """
        heads, hs = self.num_heads, self.head_size
        mem_rows = None
        dsts, srcs = [], []
        for kind, t0, t1, arg in pieces:
            n = t1 - t0
            if kind == "run" and self.layout == LAYOUT_PACKED:
                if mem_rows is None:
                    mem_rows = [part.unbind(0) for part in mem.unbind(0)]  # [p][i] -> [T, width]
                b, o = arg // self.block_size, arg % self.block_size
                for i, (x,) in enumerate(self.tensors):
                    page = x[b, :, o : o + n]  # [heads, n, 2 * head]
                    for p in range(2):
                        cache_v = page[:, :, p * hs : (p + 1) * hs].transpose(0, 1)
                        mem_v = mem_rows[p][i][t0:t1].view(n, heads, hs)
                        dsts.append(cache_v if to_cache else mem_v)
                        srcs.append(mem_v if to_cache else cache_v)
            elif kind == "run":
                for p in range(self.parts):
                    mem_vs = mem[p, :, t0:t1].unbind(0)
                    cache_vs = [views[p].narrow(0, arg, n) for views in self.flat]
                    dsts.extend(cache_vs if to_cache else mem_vs)
                    srcs.extend(mem_vs if to_cache else cache_vs)
            elif self.layout == LAYOUT_PACKED:
                rows = self.packed_rows(host_slots[t0:t1]).to(self.device)
                mems, wide = self.mem_index_views(mem, t0, t1, n * heads)
                caches = self.idx_rows if wide else self.rows
                layers = self.num_layers
                for p, idx in enumerate((rows, rows + 1)):
                    _index_all(caches, idx, mems[p * layers : (p + 1) * layers], to_cache)
            elif kind == "blocks":
                if to_cache or not self._cat_blocks(mem, t0, t1, arg):
                    mems, wide = self.mem_index_views(mem, t0, t1, int(arg.shape[0]))
                    caches = self.idx_blocks if wide else self.blk_rows
                    _index_all(caches, arg.to(self.device), mems, to_cache)
            else:
                mems, wide = self.mem_index_views(mem, t0, t1, n)
                caches = self.idx_flat if wide else self.flat_rows
                _index_all(caches, dev_slots[t0:t1], mems, to_cache)
        return dsts, srcs

    def _cat_blocks(self, mem, t0, t1, block_ids):
        """Whole blocks -> ``mem[:, :, t0:t1]`` with one ``torch.cat`` (memcpy per block row)
        when the cache is on the CPU, the rows are large and the target is contiguous.
        Returns False (nothing done) otherwise."""
        if self.device.type != "cpu" or self.block_size * self.width * self.element_size < _CAT_MIN_ROW_BYTES:
            return False
        region = mem[:, :, t0:t1]
        if not region.is_contiguous():
            return False
        ids = block_ids.tolist()
        torch.cat([c[b] for c in self.blk_rows for b in ids], out=region.view(-1))
        return True

    def _copy_all(self, dsts, srcs):
        if not dsts:
            return
        if _FOREACH_COPY is not None and not _is_hpu(self.device):
            _FOREACH_COPY(dsts, srcs)
        else:
            for d, s in zip(dsts, srcs):
                d.copy_(s)

    def gather(self, pieces, host_slots, dev_slots, buf):
        """Paged KV -> ``buf`` ([parts, layers, T, width], contiguous per layer)."""
        self._copy_all(*self._moves(pieces, host_slots, dev_slots, buf, False))

    def scatter(self, pieces, host_slots, dev_slots, src):
        """``src`` ([parts, layers, T, width] on the cache device) -> paged KV."""
        self._copy_all(*self._moves(pieces, host_slots, dev_slots, src, True))


def kv_geometry(kvcaches, use_mla=False):
    """Describe ``kvcaches``: dict with layout, num_layers, num_slots, width, dtype, device."""
    plan = CachePlan(kvcaches, use_mla)
    return {
        "layout": plan.layout,
        "num_layers": plan.num_layers,
        "num_slots": plan.num_slots,
        "block_size": plan.block_size,
        "width": plan.width,
        "dtype": plan.dtype,
        "device": plan.device,
    }


def _host_slots(slot_mapping):
    """The slot mapping as a host LongTensor (one device-to-host copy when on a device)."""
    if slot_mapping is None:
        raise ValueError("'slot_mapping' should be provided in kwargs.")
    if not _is_tensor(slot_mapping):
        return torch.as_tensor(slot_mapping, dtype=torch.long)
    if slot_mapping.device.type != "cpu" or slot_mapping.dtype != torch.long:
        return slot_mapping.to(device="cpu", dtype=torch.long)
    return slot_mapping


def _dev_slots(slot_mapping, host, device):
    if _is_tensor(slot_mapping) and slot_mapping.device == device and slot_mapping.dtype == torch.long:
        return slot_mapping
    return host.to(device)


def _check_range(host, start, end):
    if start < 0 or end < start or end > host.shape[0]:
        raise ValueError("token range [%d, %d) is outside the slot mapping of %d tokens" % (start, end, host.shape[0]))


def _check_shape(tensor, plan, num_tokens):
    want = (plan.parts, plan.num_layers, num_tokens, plan.width)
    if tuple(tensor.shape) != want:
        raise ValueError(
            "memory object tensor has shape %s, expected %s (parts, layers, tokens, width) "
            "for this chunk" % (tuple(tensor.shape), want)
        )


class _Staging:
    """A device buffer [parts, layers, capacity, width] reused across calls and lengths."""

    def __init__(self):
        self.buf = None

    def get(self, plan, num_tokens):
        b = self.buf
        if (
            b is None
            or b.shape[0] != plan.parts
            or b.shape[1] != plan.num_layers
            or b.shape[3] != plan.width
            or b.dtype != plan.dtype
            or b.device != plan.device
            or b.shape[2] < num_tokens
        ):
            self.buf = b = torch.empty(
                (plan.parts, plan.num_layers, max(num_tokens, 1), plan.width), dtype=plan.dtype, device=plan.device
            )
        return b[:, :, :num_tokens]


def _run_gather(plan, slot_mapping, jobs, staging):
    """``jobs``: list of ``(out_tensor, start, end)``. One batch: marks and one sync."""
    host = _host_slots(slot_mapping)
    dev = plan.device
    for out, start, end in jobs:
        _check_range(host, start, end)
        _check_shape(out, plan, end - start)
    dev_slots = None
    mark_step(dev)
    for out, start, end in jobs:
        hs = host[start:end]
        pieces = plan.chunk(hs)
        if any(k == "slots" for k, _a, _b, _c in pieces) and dev_slots is None:
            dev_slots = _dev_slots(slot_mapping, host, dev)
        ds = dev_slots[start:end] if dev_slots is not None else None
        direct = out.device == dev and out.dtype == plan.dtype and out.is_contiguous()
        buf = out if direct else staging.get(plan, end - start)
        plan.gather(pieces, hs, ds, buf)
        if not direct:
            out.copy_(buf, non_blocking=_is_hpu(dev))
        mark_step(dev)
    synchronize(dev)


def _run_scatter(plan, slot_mapping, jobs, staging, vllm_cached_tokens=0):
    """``jobs``: list of ``(src_tensor, start, end)``; tokens before ``vllm_cached_tokens``
    are not written (LMCache's CUDA connector: ``skip_prefix_n_tokens``)."""
    host = _host_slots(slot_mapping)
    dev = plan.device
    for src, start, end in jobs:
        _check_range(host, start, end)
        _check_shape(src, plan, end - start)
    cached = int(vllm_cached_tokens or 0)
    dev_slots = None
    mark_step(dev)
    for src, start, end in jobs:
        skip = min(end - start, max(0, cached - start))
        if skip == end - start:
            continue
        lo = start + skip
        hs = host[lo:end]
        pieces = plan.chunk(hs)
        if any(k == "slots" for k, _a, _b, _c in pieces) and dev_slots is None:
            dev_slots = _dev_slots(slot_mapping, host, dev)
        ds = dev_slots[lo:end] if dev_slots is not None else None
        part = src[:, :, skip:] if skip else src
        # the index ops and slice copies address the chunk as [parts * layers, tokens, width]
        if part.device != dev or part.dtype != plan.dtype or not src.is_contiguous():
            buf = staging.get(plan, end - lo)
            buf.copy_(part, non_blocking=_is_hpu(dev))
            part = buf
        plan.scatter(pieces, hs, ds, part)
        mark_step(dev)
    synchronize(dev)


def gather_kv(kvcaches, slot_mapping, start, end, out, use_mla=False, staging=None):
    """Paged KV -> ``out`` (``KV_2LTD`` or ``KV_MLA_FMT`` layout) for tokens ``[start, end)``.

    ``out`` may live on another device or dtype (e.g. pinned host memory): the slots are
    gathered on the cache device (into ``staging``, a tensor of ``out``'s shape on the cache
    device, when given) and copied once. Returns ``out``.
    """
    plan = CachePlan(kvcaches, use_mla)
    st = _Staging()
    if staging is not None:
        st.buf = staging
    _run_gather(plan, slot_mapping, [(out, start, end)], st)
    return out


def scatter_kv(kvcaches, slot_mapping, start, end, src, use_mla=False, vllm_cached_tokens=0):
    """``src`` (``KV_2LTD`` / ``KV_MLA_FMT``) -> paged KV at the slots of ``[start, end)``.

    Only the slots of ``[max(start, vllm_cached_tokens), end)`` are written; every other
    slot stays untouched.
    """
    plan = CachePlan(kvcaches, use_mla)
    _run_scatter(plan, slot_mapping, [(src, start, end)], _Staging(), vllm_cached_tokens)


def _fmt_name(memory_obj):
    fmt = getattr(getattr(memory_obj, "metadata", None), "fmt", None)
    return getattr(fmt, "name", fmt)


class VLLMPagedMemHPUConnectorV2:
    """LMCache GPU connector for paged KV caches on HPU or CPU (pure PyTorch).

    Same contract as LMCache's ``VLLMPagedMemGPUConnectorV2``: it produces and
    consumes memory objects in ``KV_2LTD`` format (``KV_MLA_FMT`` with MLA).
    """

    # LMCache's engine takes this as its MLA broadcast stream instead of creating a
    # CUDA stream (see the module docstring); None makes the stream context a no-op.
    load_stream = None

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
        self._plan = None
        self._plan_key = None
        self._staging = _Staging()

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

    def plan(self, **kwargs):
        """The :class:`CachePlan` of the current cache (rebuilt only when the cache changes)."""
        self.initialize_kvcaches_ptr(**kwargs)
        if self.kvcaches is None or len(self.kvcaches) == 0:
            raise ValueError("'kvcaches' should be provided in kwargs or initialized beforehand.")
        key = CachePlan.key(self.kvcaches)
        if self._plan is None or self._plan_key != key:
            self._plan = CachePlan(self.kvcaches, self.use_mla)
            self._plan_key = key
            if self.hidden_dim_size is None:
                self.hidden_dim_size = self._plan.width
            if self.num_layers is None:
                self.num_layers = self._plan.num_layers
        return self._plan

    def _check_fmt(self, memory_obj):
        want = FMT_MLA if self.use_mla else FMT_KV
        got = _fmt_name(memory_obj)
        if got != want:
            raise ValueError(
                "The memory object should be in %s format in order to be processed "
                "by VLLMPagedMemHPUConnectorV2 (got %s)" % (want, got)
            )

    @staticmethod
    def _tensor(memory_obj):
        if memory_obj.tensor is None:
            raise ValueError("the memory object has no tensor")
        return memory_obj.tensor

    def _slot_mapping(self, kwargs):
        if "slot_mapping" not in kwargs:
            raise ValueError("'slot_mapping' should be provided in kwargs.")
        return kwargs["slot_mapping"]

    def batched_to_gpu(self, memory_objs, starts, ends, **kwargs):
        """Memory objects -> paged KV; tokens below ``vllm_cached_tokens`` are skipped."""
        jobs = []
        for memory_obj, start, end in zip(memory_objs, starts, ends):
            self._check_fmt(memory_obj)
            jobs.append((self._tensor(memory_obj), int(start), int(end)))
        slot_mapping = self._slot_mapping(kwargs)
        plan = self.plan(**kwargs)
        _run_scatter(plan, slot_mapping, jobs, self._staging, kwargs.get("vllm_cached_tokens", 0))

    def batched_from_gpu(self, memory_objs, starts, ends, **kwargs):
        """Paged KV -> memory objects (``KV_2LTD``; ``KV_MLA_FMT`` with MLA)."""
        memory_objs = list(memory_objs)
        jobs = [(self._tensor(m), int(s), int(e)) for m, s, e in zip(memory_objs, starts, ends)]
        slot_mapping = self._slot_mapping(kwargs)
        plan = self.plan(**kwargs)
        _run_gather(plan, slot_mapping, jobs, self._staging)
        if self.use_mla:
            for memory_obj in memory_objs:
                fmt = getattr(memory_obj.metadata, "fmt", None)
                if fmt is not None and hasattr(type(fmt), "__members__"):
                    memory_obj.metadata.fmt = type(fmt)[FMT_MLA]

    def to_gpu(self, memory_obj, start, end, **kwargs):
        """Memory object -> paged KV for ``slot_mapping[start:end]``."""
        self.batched_to_gpu([memory_obj], [start], [end], **kwargs)

    def from_gpu(self, memory_obj, start, end, **kwargs):
        """Paged KV for ``slot_mapping[start:end]`` -> memory object."""
        self.batched_from_gpu([memory_obj], [start], [end], **kwargs)

    def get_shape(self, num_tokens):
        kv_size = 1 if self.use_mla else 2
        hidden = self.hidden_dim_size
        layers = self.num_layers
        if (hidden is None or layers is None) and self.kvcaches is not None:
            plan = self.plan()
            hidden, layers = plan.width, plan.num_layers
        return torch.Size([kv_size, layers, num_tokens, hidden])
