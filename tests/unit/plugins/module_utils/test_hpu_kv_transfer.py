"""Pure-PyTorch HPU KV connector: round trips on CPU PyTorch against a reference gather/scatter."""

import enum
import types

import pytest

torch = pytest.importorskip("torch")

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hpu_kv_transfer as kt  # noqa: E402


class MemoryFormat(enum.Enum):
    """Stand-in for lmcache.v1.memory_management.MemoryFormat (same member names)."""

    UNDEFINED = 0
    KV_2LTD = 1
    KV_T2D = 2
    KV_MLA_FMT = 5


class MemObj:
    """Stand-in for LMCache's MemoryObj: ``.tensor`` and ``.metadata.fmt``."""

    def __init__(self, tensor, fmt):
        self.tensor = tensor
        self.metadata = types.SimpleNamespace(fmt=fmt)


NUM_BLOCKS, BLOCK, HEADS, HEAD = 12, 16, 2, 8
SLOTS = NUM_BLOCKS * BLOCK


def paged_caches(layers, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(NUM_BLOCKS, BLOCK, HEADS, HEAD, generator=g).to(dtype),
         torch.randn(NUM_BLOCKS, BLOCK, HEADS, HEAD, generator=g).to(dtype))
        for _layer in range(layers)
    ]


def slot_mapping(num_tokens, prefix, seed):
    """Full slot mapping: ``prefix`` leading -1 (prefix-cache hits), then distinct random slots."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.randperm(SLOTS, generator=g)[: num_tokens - prefix]
    return torch.cat([torch.full((prefix,), -1, dtype=torch.long), slots])


def reference_gather(caches, slots):
    """Plain-Python reference: token t of the chunk is block s // BLOCK, offset s % BLOCK."""
    layers = len(caches)
    out = torch.empty(2, layers, len(slots), HEADS * HEAD, dtype=caches[0][0].dtype)
    for i, (k, v) in enumerate(caches):
        for t, s in enumerate(slots.tolist()):
            out[0, i, t] = k[s // BLOCK, s % BLOCK].reshape(-1)
            out[1, i, t] = v[s // BLOCK, s % BLOCK].reshape(-1)
    return out


def reference_scatter(caches, slots, src):
    for i, (k, v) in enumerate(caches):
        for t, s in enumerate(slots.tolist()):
            k[s // BLOCK, s % BLOCK] = src[0, i, t].reshape(HEADS, HEAD)
            v[s // BLOCK, s % BLOCK] = src[1, i, t].reshape(HEADS, HEAD)


def clone(caches):
    return [(k.clone(), v.clone()) for k, v in caches]


def connector(layers, **kw):
    return kt.VLLMPagedMemHPUConnectorV2(HEADS * HEAD, layers, use_gpu=False, device="cpu", **kw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layers", [1, 3, 5])
def test_round_trip_matches_reference(dtype, layers):
    src = paged_caches(layers, dtype, seed=layers)
    num_tokens, prefix = 40, 9
    sm = slot_mapping(num_tokens, prefix, seed=7)
    start, end = prefix + 3, num_tokens - 5  # a partial chunk inside the non-prefix range
    conn = connector(layers)
    mem = MemObj(torch.zeros(conn.get_shape(end - start), dtype=dtype), MemoryFormat.KV_2LTD)
    conn.from_gpu(mem, start, end, kvcaches=src, slot_mapping=sm)
    assert torch.equal(mem.tensor, reference_gather(src, sm[start:end]))
    assert mem.metadata.fmt is MemoryFormat.KV_2LTD

    fresh = paged_caches(layers, dtype, seed=100 + layers)
    expected = clone(fresh)
    reference_scatter(expected, sm[start:end], mem.tensor)
    conn2 = connector(layers)
    conn2.to_gpu(mem, start, end, kvcaches=fresh, slot_mapping=sm)
    for (k, v), (ek, ev) in zip(fresh, expected):
        assert torch.equal(k, ek) and torch.equal(v, ev)
    # exactly the gathered slots changed, nothing else (the -1 prefix slots are never touched)
    before = paged_caches(layers, dtype, seed=100 + layers)
    mask = torch.ones(SLOTS, dtype=torch.bool)
    mask[sm[start:end]] = False
    for (k, v), (bk, bv) in zip(fresh, before):
        for new, old in ((k, bk), (v, bv)):
            assert torch.equal(new.view(SLOTS, -1)[mask], old.view(SLOTS, -1)[mask])
            assert not torch.equal(new.view(SLOTS, -1)[~mask], old.view(SLOTS, -1)[~mask])


def test_untouched_slots_bitwise_and_last_slot_not_written():
    """The -1 prefix entries are outside [start, end): slot SLOTS-1 (what -1 would hit) stays."""
    dtype = torch.bfloat16
    src = paged_caches(2, dtype, seed=1)
    sm = slot_mapping(24, 8, seed=3)
    sm[8:] = torch.where(sm[8:] == SLOTS - 1, torch.tensor(0), sm[8:])
    conn = connector(2)
    mem = MemObj(torch.empty(conn.get_shape(16), dtype=dtype), MemoryFormat.KV_2LTD)
    conn.from_gpu(mem, 8, 24, kvcaches=src, slot_mapping=sm)
    dst = paged_caches(2, dtype, seed=2)
    snapshot = clone(dst)
    conn.to_gpu(mem, 8, 24, kvcaches=dst, slot_mapping=sm)
    for (k, _v), (sk, _sv) in zip(dst, snapshot):
        assert torch.equal(k.view(SLOTS, -1)[SLOTS - 1], sk.view(SLOTS, -1)[SLOTS - 1])
    mask = torch.ones(SLOTS, dtype=torch.bool)
    mask[sm[8:24]] = False
    for (k, v), (sk, sv) in zip(dst, snapshot):
        assert torch.equal(k.view(SLOTS, -1)[mask], sk.view(SLOTS, -1)[mask])
        assert torch.equal(v.view(SLOTS, -1)[mask], sv.view(SLOTS, -1)[mask])


def test_batched_chunks_and_kvcaches_from_post_init():
    dtype = torch.float16
    src = paged_caches(3, dtype, seed=5)
    sm = slot_mapping(64, 0, seed=11)
    conn = connector(3)
    conn.initialize_kvcaches_ptr(kvcaches=src)
    starts, ends = [0, 16, 32, 48], [16, 32, 48, 61]
    mems = [MemObj(torch.empty(conn.get_shape(e - s), dtype=dtype), MemoryFormat.KV_2LTD)
            for s, e in zip(starts, ends)]
    conn.batched_from_gpu(mems, starts, ends, slot_mapping=sm)
    for m, s, e in zip(mems, starts, ends):
        assert torch.equal(m.tensor, reference_gather(src, sm[s:e]))
    dst = paged_caches(3, dtype, seed=6)
    expected = clone(dst)
    for m, s, e in zip(mems, starts, ends):
        reference_scatter(expected, sm[s:e], m.tensor)
    conn.batched_to_gpu(mems, starts, ends, kvcaches=dst, slot_mapping=sm)
    for (k, v), (ek, ev) in zip(dst, expected):
        assert torch.equal(k, ek) and torch.equal(v, ev)


def test_memory_object_on_other_dtype_layout_goes_through_staging():
    """A non-contiguous destination is filled through the staging buffer."""
    src = paged_caches(2, torch.bfloat16, seed=8)
    sm = slot_mapping(20, 0, seed=9)
    conn = connector(2)
    big = torch.zeros(2, 2, 20, HEADS * HEAD * 2, dtype=torch.bfloat16)
    view = big[..., ::2]
    assert not view.is_contiguous()
    mem = MemObj(view, MemoryFormat.KV_2LTD)
    conn.from_gpu(mem, 0, 20, kvcaches=src, slot_mapping=sm)
    assert torch.equal(view, reference_gather(src, sm))


def test_cuda_layout_single_tensor_per_layer_accepted():
    k_v = paged_caches(2, torch.float16, seed=12)
    stacked = [torch.stack([k, v]) for k, v in k_v]
    sm = slot_mapping(10, 0, seed=13)
    out = torch.empty(2, 2, 10, HEADS * HEAD, dtype=torch.float16)
    kt.gather_kv(stacked, sm, 0, 10, out)
    assert torch.equal(out, reference_gather(k_v, sm))


def test_mla_round_trip_sets_mla_format():
    g = torch.Generator().manual_seed(21)
    layers = [torch.randn(NUM_BLOCKS, BLOCK, 24, generator=g).to(torch.bfloat16) for _layer in range(3)]
    sm = slot_mapping(18, 2, seed=22)
    conn = kt.VLLMPagedMemHPUConnectorV2(24, 3, use_mla=True, device="cpu")
    assert tuple(conn.get_shape(16)) == (1, 3, 16, 24)
    mem = MemObj(torch.empty(1, 3, 16, 24, dtype=torch.bfloat16), MemoryFormat.KV_2LTD)
    conn.from_gpu(mem, 2, 18, kvcaches=layers, slot_mapping=sm)
    assert mem.metadata.fmt is MemoryFormat.KV_MLA_FMT
    for i, lat in enumerate(layers):
        ref = torch.stack([lat[s // BLOCK, s % BLOCK] for s in sm[2:18].tolist()])
        assert torch.equal(mem.tensor[0, i], ref)
    fresh = [torch.zeros_like(t) for t in layers]
    conn.to_gpu(mem, 2, 18, kvcaches=[(t, None) for t in fresh], slot_mapping=sm)
    for lat, f in zip(layers, fresh):
        idx = sm[2:18]
        assert torch.equal(f.view(SLOTS, 24)[idx], lat.view(SLOTS, 24)[idx])
        mask = torch.ones(SLOTS, dtype=torch.bool)
        mask[idx] = False
        assert int(f.view(SLOTS, 24)[mask].abs().sum()) == 0


def test_from_metadata():
    meta = types.SimpleNamespace(kv_shape=(32, 2, 256, 8, 128), kv_dtype=torch.bfloat16, use_mla=False)
    conn = kt.VLLMPagedMemHPUConnectorV2.from_metadata(meta, use_gpu=True, device=torch.device("cpu"))
    assert tuple(conn.get_shape(256)) == (2, 32, 256, 1024)
    assert conn.device == torch.device("cpu") and not hasattr(conn, "load_stream")


def test_errors_are_clear():
    caches = paged_caches(2, torch.float16, seed=30)
    sm = slot_mapping(8, 0, seed=31)
    conn = connector(2)
    good = MemObj(torch.empty(conn.get_shape(8), dtype=torch.float16), MemoryFormat.KV_2LTD)
    wrong = MemObj(torch.empty(conn.get_shape(8), dtype=torch.float16), MemoryFormat.KV_T2D)
    with pytest.raises(ValueError, match="KV_2LTD format"):
        conn.to_gpu(wrong, 0, 8, kvcaches=caches, slot_mapping=sm)
    with pytest.raises(ValueError, match="slot_mapping"):
        conn.to_gpu(good, 0, 8, kvcaches=caches)
    with pytest.raises(ValueError, match="slot_mapping"):
        conn.from_gpu(good, 0, 8, kvcaches=caches)
    with pytest.raises(ValueError, match="kvcaches"):
        connector(2).from_gpu(good, 0, 8, slot_mapping=sm)
    with pytest.raises(ValueError, match="expected"):
        conn.from_gpu(good, 0, 6, kvcaches=caches, slot_mapping=sm)
    with pytest.raises(ValueError, match="outside the slot mapping"):
        conn.from_gpu(good, 4, 12, kvcaches=caches, slot_mapping=sm)
    mla = kt.VLLMPagedMemHPUConnectorV2(24, 2, use_mla=True)
    with pytest.raises(ValueError, match="KV_MLA_FMT format"):
        mla.to_gpu(good, 0, 8, kvcaches=caches, slot_mapping=sm)


def test_no_cuda_only_calls_in_connector_source():
    import inspect

    src = inspect.getsource(kt)
    for bad in ("torch.cuda", ".cuda(", "c_ops", "import lmcache", "from lmcache"):
        assert bad not in src.split('"""', 2)[2], bad
