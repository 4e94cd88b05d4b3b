"""Pure-PyTorch KV connector: exact round trips for every cache layout against a plain
per-token reference, the vLLM-cached-token skip, buffer and plan reuse, errors."""

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

    def __init__(self, tensor, fmt=MemoryFormat.KV_2LTD):
        self.tensor = tensor
        self.metadata = types.SimpleNamespace(fmt=fmt)


class TensorTuple(tuple):
    """Like vLLM-Gaudi's TensorTuple: a tuple subclass without tensor methods."""


class GetItemOnly:
    """A (K, V) holder with ``__getitem__`` only (no ``__len__``, no ``__iter__``)."""

    def __init__(self, k, v):
        self._kv = (k, v)

    def __getitem__(self, i):
        return self._kv[i]


NUM_BLOCKS, BLOCK, HEADS, HEAD = 12, 16, 2, 8
SLOTS = NUM_BLOCKS * BLOCK
WIDTH = HEADS * HEAD
MLA_HEAD = 24
LAYOUTS = ["pairs", "tensortuple", "getitem", "stacked", "packed", "mla", "mla_pair"]


def make_layers(layout, num_layers, dtype, seed):
    """Return (kvcaches as handed to the connector, plain tensors the reference reads)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    caches, raw = [], []
    for _layer in range(num_layers):
        if layout in ("mla", "mla_pair"):
            t = rnd(NUM_BLOCKS, BLOCK, MLA_HEAD)
            caches.append(t if layout == "mla" else (t, None))
            raw.append((t,))
        elif layout == "stacked":
            t = rnd(2, NUM_BLOCKS, BLOCK, HEADS, HEAD)
            caches.append(t)
            raw.append((t,))
        elif layout == "packed":
            t = rnd(NUM_BLOCKS, HEADS, BLOCK, 2 * HEAD)
            caches.append(t)
            raw.append((t,))
        else:
            k, v = rnd(NUM_BLOCKS, BLOCK, HEADS, HEAD), rnd(NUM_BLOCKS, BLOCK, HEADS, HEAD)
            wrap = {"pairs": tuple, "tensortuple": TensorTuple}.get(layout)
            caches.append(wrap((k, v)) if wrap else GetItemOnly(k, v))
            raw.append((k, v))
    return caches, raw


def token_rows(layout, tensors, s):
    """Reference: the per-part rows of slot ``s`` as views into the cache tensors."""
    b, o = s // BLOCK, s % BLOCK
    if layout in ("mla", "mla_pair"):
        return [tensors[0][b, o]]
    if layout == "stacked":
        return [tensors[0][0, b, o], tensors[0][1, b, o]]
    if layout == "packed":
        x = tensors[0]
        return [x[b, :, o, :HEAD], x[b, :, o, HEAD:]]
    return [tensors[0][b, o], tensors[1][b, o]]


def parts_of(layout):
    return 1 if layout.startswith("mla") else 2


def width_of(layout):
    return MLA_HEAD if layout.startswith("mla") else WIDTH


def reference_gather(layout, raw, slots):
    out = torch.empty(parts_of(layout), len(raw), len(slots), width_of(layout), dtype=raw[0][0].dtype)
    for i, tensors in enumerate(raw):
        for t, s in enumerate(slots.tolist()):
            for p, row in enumerate(token_rows(layout, tensors, s)):
                out[p, i, t] = row.reshape(-1)
    return out


def reference_scatter(layout, raw, slots, src):
    for i, tensors in enumerate(raw):
        for t, s in enumerate(slots.tolist()):
            for p, row in enumerate(token_rows(layout, tensors, s)):
                row.copy_(src[p, i, t].reshape(row.shape))


def clone_raw(raw):
    return [tuple(t.clone() for t in tensors) for tensors in raw]


def assert_raw_equal(a, b):
    for ta, tb in zip(a, b):
        for x, y in zip(ta, tb):
            assert torch.equal(x, y)


def slot_mapping(kind, num_tokens, seed):
    """Full slot mappings the way vLLM allocates them, and adversarial ones.

    random: distinct random slots; blocks: whole blocks in random order, slots in order
    inside each block (vLLM's allocation); runs: a few runs that start mid-block.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randperm(SLOTS, generator=g)[:num_tokens]
    if kind == "blocks":
        blocks = torch.randperm(NUM_BLOCKS, generator=g)
        full = (blocks[:, None] * BLOCK + torch.arange(BLOCK)[None, :]).reshape(-1)
        return full[:num_tokens]
    if kind == "runs":
        return torch.cat([torch.arange(5 * BLOCK + 3, 5 * BLOCK + 3 + 20), torch.arange(7, 7 + num_tokens - 20)])
    raise AssertionError(kind)


def connector(layout, num_layers, **kw):
    mla = layout.startswith("mla")
    return kt.VLLMPagedMemHPUConnectorV2(width_of(layout), num_layers, use_gpu=False, device="cpu", use_mla=mla, **kw)


def fmt_of(layout):
    return MemoryFormat.KV_MLA_FMT if layout.startswith("mla") else MemoryFormat.KV_2LTD


@pytest.mark.parametrize("kind", ["random", "blocks", "runs"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_every_layout(layout, kind):
    num_layers, dtype = 3, torch.bfloat16
    src, src_raw = make_layers(layout, num_layers, dtype, seed=1)
    sm = slot_mapping(kind, 100, seed=2)
    # batched, block-aligned chunks of 32 plus a short last chunk, and a partial chunk
    starts, ends = [0, 32, 64, 96], [32, 64, 96, 100]
    conn = connector(layout, num_layers)
    mems = [
        MemObj(torch.zeros(tuple(conn.get_shape(e - s)), dtype=dtype), MemoryFormat.KV_2LTD)
        for s, e in zip(starts, ends)
    ]
    conn.batched_from_gpu(mems, starts, ends, kvcaches=src, slot_mapping=sm)
    for m, s, e in zip(mems, starts, ends):
        assert torch.equal(m.tensor, reference_gather(layout, src_raw, sm[s:e]))
        assert m.metadata.fmt is fmt_of(layout)
    part = MemObj(torch.zeros(tuple(conn.get_shape(19)), dtype=dtype), fmt_of(layout))
    conn.from_gpu(part, 40, 59, kvcaches=src, slot_mapping=sm)
    assert torch.equal(part.tensor, reference_gather(layout, src_raw, sm[40:59]))

    dst, dst_raw = make_layers(layout, num_layers, dtype, seed=3)
    expected = clone_raw(dst_raw)
    for m, s, e in zip(mems, starts, ends):
        reference_scatter(layout, expected, sm[s:e], m.tensor)
    conn2 = connector(layout, num_layers)
    conn2.batched_to_gpu(mems, starts, ends, kvcaches=dst, slot_mapping=sm)
    assert_raw_equal(dst_raw, expected)
    conn2.to_gpu(part, 40, 59, kvcaches=dst, slot_mapping=sm)
    assert_raw_equal(dst_raw, expected)  # same data written again

    # one chunk over the whole sequence (many runs: whole blocks at once, then the tail)
    whole = MemObj(torch.zeros(tuple(conn.get_shape(100)), dtype=dtype), fmt_of(layout))
    conn.from_gpu(whole, 0, 100, kvcaches=src, slot_mapping=sm)
    assert torch.equal(whole.tensor, reference_gather(layout, src_raw, sm))
    dst3, dst3_raw = make_layers(layout, num_layers, dtype, seed=4)
    expected3 = clone_raw(dst3_raw)
    reference_scatter(layout, expected3, sm, whole.tensor)
    conn2.to_gpu(whole, 0, 100, kvcaches=dst3, slot_mapping=sm)
    assert_raw_equal(dst3_raw, expected3)


@pytest.mark.parametrize("kind", ["random", "blocks"])
@pytest.mark.parametrize("layout", ["pairs", "stacked", "packed", "mla"])
def test_vllm_cached_tokens_are_never_written(layout, kind):
    """Like LMCache's CUDA connector: skip min(end-start, max(0, vllm_cached - start))."""
    num_layers, dtype = 2, torch.float16
    src, src_raw = make_layers(layout, num_layers, dtype, seed=4)
    sm = slot_mapping(kind, 96, seed=5)
    starts, ends = [0, 32, 64], [32, 64, 96]
    conn = connector(layout, num_layers)
    mems = [MemObj(torch.empty(tuple(conn.get_shape(32)), dtype=dtype), fmt_of(layout)) for _c in starts]
    conn.batched_from_gpu(mems, starts, ends, kvcaches=src, slot_mapping=sm)
    for cached in (0, 5, 32, 40, 64, 95, 96, 200):
        dst, dst_raw = make_layers(layout, num_layers, dtype, seed=6)
        before = clone_raw(dst_raw)
        expected = clone_raw(dst_raw)
        for m, s, e in zip(mems, starts, ends):
            skip = min(e - s, max(0, cached - s))
            reference_scatter(layout, expected, sm[s + skip : e], m.tensor[:, :, skip:])
        conn.batched_to_gpu(mems, starts, ends, kvcaches=dst, slot_mapping=sm, vllm_cached_tokens=cached)
        assert_raw_equal(dst_raw, expected)
        # the vLLM-held slots are bitwise what they were
        held = sm[: min(cached, 96)]
        for s in held.tolist():
            for now, old in zip(dst_raw, before):
                for r_now, r_old in zip(token_rows(layout, now, s), token_rows(layout, old, s)):
                    assert torch.equal(r_now, r_old)


def test_cached_skip_single_chunk_and_module_functions():
    src, src_raw = make_layers("pairs", 2, torch.float32, seed=7)
    sm = slot_mapping("blocks", 48, seed=8)
    out = torch.empty(2, 2, 48, WIDTH)
    kt.gather_kv(src, sm, 0, 48, out)
    assert torch.equal(out, reference_gather("pairs", src_raw, sm))
    dst, dst_raw = make_layers("pairs", 2, torch.float32, seed=9)
    expected = clone_raw(dst_raw)
    reference_scatter("pairs", expected, sm[20:48], out[:, :, 20:])
    kt.scatter_kv(dst, sm, 0, 48, out, vllm_cached_tokens=20)
    assert_raw_equal(dst_raw, expected)


@pytest.mark.parametrize("layout", ["pairs", "packed", "mla"])
def test_other_dtype_and_non_contiguous_memory_objects_use_one_reused_staging_buffer(layout):
    num_layers = 2
    src, src_raw = make_layers(layout, num_layers, torch.bfloat16, seed=10)
    sm = slot_mapping("random", 64, seed=11)
    conn = connector(layout, num_layers)
    parts, width = parts_of(layout), width_of(layout)
    big = torch.zeros(parts, num_layers, 32, width * 2, dtype=torch.bfloat16)
    view = big[..., ::2]
    assert not view.is_contiguous()
    conn.from_gpu(MemObj(view, fmt_of(layout)), 0, 32, kvcaches=src, slot_mapping=sm)
    assert torch.equal(view, reference_gather(layout, src_raw, sm[0:32]))
    buf = conn._staging.buf
    assert buf is not None and buf.shape[2] == 32
    f32 = MemObj(torch.zeros(parts, num_layers, 20, width), fmt_of(layout))  # float32: other dtype
    conn.from_gpu(f32, 32, 52, kvcaches=src, slot_mapping=sm)  # short chunk: same buffer
    assert conn._staging.buf is buf
    assert torch.equal(f32.tensor, reference_gather(layout, src_raw, sm[32:52]).float())
    dst, dst_raw = make_layers(layout, num_layers, torch.bfloat16, seed=12)
    expected = clone_raw(dst_raw)
    reference_scatter(layout, expected, sm[32:52], f32.tensor.to(torch.bfloat16))
    conn.to_gpu(f32, 32, 52, kvcaches=dst, slot_mapping=sm)
    assert_raw_equal(dst_raw, expected)
    assert conn._staging.buf is buf


def test_plan_is_built_once_per_cache():
    src, _raw = make_layers("pairs", 2, torch.float16, seed=13)
    other, _raw2 = make_layers("pairs", 2, torch.float16, seed=14)
    sm = slot_mapping("blocks", 32, seed=15)
    conn = connector("pairs", 2)
    conn.initialize_kvcaches_ptr(kvcaches=src)
    mem = MemObj(torch.empty(2, 2, 32, WIDTH, dtype=torch.float16))
    conn.from_gpu(mem, 0, 32, slot_mapping=sm)
    plan = conn._plan
    conn.to_gpu(mem, 0, 32, slot_mapping=sm)
    conn.batched_from_gpu([mem], [0], [32], slot_mapping=sm)
    assert conn._plan is plan and plan.flat[0][0].data_ptr() == src[0][0].data_ptr()
    conn.from_gpu(mem, 0, 32, kvcaches=other, slot_mapping=sm)
    assert conn._plan is not plan


def test_chunk_pieces_follow_vllm_block_allocation():
    caches, _raw = make_layers("pairs", 1, torch.float16, seed=16)
    plan = kt.CachePlan(caches)
    blocks = slot_mapping("blocks", 100, seed=17)
    pieces = plan.chunk(blocks)
    assert [p[0] for p in pieces] == ["blocks", "run"]
    assert pieces[0][1:3] == (0, 96) and pieces[1][1:3] == (96, 100)
    assert torch.equal(pieces[0][3], blocks[0:96:BLOCK] // BLOCK)
    assert [p[0] for p in plan.chunk(torch.arange(40, 72))] == ["run"]
    assert [p[0] for p in plan.chunk(slot_mapping("random", 64, seed=18))] == ["slots"]
    packed = kt.CachePlan(make_layers("packed", 1, torch.float16, seed=19)[0])
    assert [p[0] for p in packed.chunk(torch.arange(40, 72))] == ["run", "run", "run"]


def test_from_metadata_and_mla_load_stream():
    meta = types.SimpleNamespace(kv_shape=(32, 2, 256, 8, 128), kv_dtype=torch.bfloat16, use_mla=False)
    conn = kt.VLLMPagedMemHPUConnectorV2.from_metadata(meta, use_gpu=True, device=torch.device("cpu"))
    assert tuple(conn.get_shape(256)) == (2, 32, 256, 1024)
    assert conn.device == torch.device("cpu")
    assert hasattr(conn, "load_stream") and conn.load_stream is None
    with torch.cuda.stream(conn.load_stream):  # what LMCache's engine does with it
        pass


def test_errors_are_clear():
    caches, _raw = make_layers("pairs", 2, torch.float16, seed=30)
    sm = slot_mapping("random", 8, seed=31)
    conn = connector("pairs", 2)
    good = MemObj(torch.empty(tuple(conn.get_shape(8)), dtype=torch.float16))
    wrong = MemObj(torch.empty(tuple(conn.get_shape(8)), dtype=torch.float16), MemoryFormat.KV_T2D)
    with pytest.raises(ValueError, match="KV_2LTD format"):
        conn.to_gpu(wrong, 0, 8, kvcaches=caches, slot_mapping=sm)
    with pytest.raises(ValueError, match="slot_mapping"):
        conn.to_gpu(good, 0, 8, kvcaches=caches)
    with pytest.raises(ValueError, match="slot_mapping"):
        conn.from_gpu(good, 0, 8, kvcaches=caches)
    with pytest.raises(ValueError, match="kvcaches"):
        connector("pairs", 2).from_gpu(good, 0, 8, slot_mapping=sm)
    with pytest.raises(ValueError, match="expected"):
        conn.from_gpu(good, 0, 6, kvcaches=caches, slot_mapping=sm)
    with pytest.raises(ValueError, match="outside the slot mapping"):
        conn.from_gpu(good, 4, 12, kvcaches=caches, slot_mapping=sm)
    bad = sm.clone()
    bad[3] = -1
    with pytest.raises(ValueError, match="slot -1"):
        conn.from_gpu(good, 0, 8, kvcaches=caches, slot_mapping=bad)
    bad[3] = SLOTS
    with pytest.raises(ValueError, match="slot %d" % SLOTS):
        conn.to_gpu(good, 0, 8, kvcaches=caches, slot_mapping=bad)
    mla = kt.VLLMPagedMemHPUConnectorV2(24, 2, use_mla=True)
    with pytest.raises(ValueError, match="KV_MLA_FMT format"):
        mla.to_gpu(good, 0, 8, kvcaches=caches, slot_mapping=sm)
    with pytest.raises(ValueError, match="use_mla"):
        kt.CachePlan([torch.zeros(NUM_BLOCKS, BLOCK, 24)])
    with pytest.raises(ValueError, match=r"kvcaches\[1\] differs"):
        kt.CachePlan([caches[0], (caches[1][0][:6], caches[1][1][:6])])


def test_no_cuda_only_calls_in_connector_source():
    import inspect

    src = inspect.getsource(kt)
    for bad in ("torch.cuda", ".cuda(", "c_ops", "import lmcache", "from lmcache"):
        assert bad not in src.split('"""', 2)[2], bad


# -- the CPU fast paths: wide element types, block-granular pieces ---------------------


def test_block_granular_chunks_split_into_head_run_whole_blocks_tail_run():
    plan = kt.CachePlan(make_layers("pairs", 1, torch.float16, seed=40)[0])
    # a chunk that starts 5 slots into block 7, then blocks 2 and 9, then 3 slots of block 4
    sm = torch.cat(
        [
            torch.arange(7 * BLOCK + 5, 8 * BLOCK),
            torch.arange(2 * BLOCK, 3 * BLOCK),
            torch.arange(9 * BLOCK, 10 * BLOCK),
            torch.arange(4 * BLOCK, 4 * BLOCK + 3),
        ]
    )
    pieces = plan.chunk(sm)
    assert [p[0] for p in pieces] == ["run", "blocks", "run"]
    head = BLOCK - 5
    assert pieces[0][1:] == (0, head, 7 * BLOCK + 5)
    assert pieces[1][1:3] == (head, head + 2 * BLOCK) and pieces[1][3].tolist() == [2, 9]
    assert pieces[2][1:] == (head + 2 * BLOCK, head + 2 * BLOCK + 3, 4 * BLOCK)
    # consecutive blocks are one run; a break inside a block is not block-granular
    assert [p[0] for p in plan.chunk(torch.arange(3 * BLOCK, 6 * BLOCK))] == ["run"]
    broken = torch.cat([torch.arange(2 * BLOCK, 2 * BLOCK + 4), torch.arange(9 * BLOCK, 10 * BLOCK)])
    assert [p[0] for p in plan.chunk(broken)] == ["run", "run"]


@pytest.mark.parametrize("layout", ["pairs", "stacked", "mla"])
def test_head_blocks_tail_round_trip_batched_and_cached_skip(layout):
    num_layers, dtype = 3, torch.bfloat16
    src, src_raw = make_layers(layout, num_layers, dtype, seed=41)
    blocks = torch.tensor([7, 2, 9, 4, 0, 11])
    full = (blocks[:, None] * BLOCK + torch.arange(BLOCK)[None, :]).reshape(-1)
    sm = full[5 : 5 + 70]  # a mapping that starts mid-block (a chunk after a prefix)
    starts, ends = [0, 27, 59], [27, 59, 70]
    conn = connector(layout, num_layers)
    mems = [
        MemObj(torch.zeros(tuple(conn.get_shape(e - s)), dtype=dtype), fmt_of(layout)) for s, e in zip(starts, ends)
    ]
    conn.batched_from_gpu(mems, starts, ends, kvcaches=src, slot_mapping=sm)
    for m, s, e in zip(mems, starts, ends):
        assert torch.equal(m.tensor, reference_gather(layout, src_raw, sm[s:e]))
    for cached in (0, 9, 33):
        dst, dst_raw = make_layers(layout, num_layers, dtype, seed=42)
        expected = clone_raw(dst_raw)
        for m, s, e in zip(mems, starts, ends):
            skip = min(e - s, max(0, cached - s))
            reference_scatter(layout, expected, sm[s + skip : e], m.tensor[:, :, skip:])
        connector(layout, num_layers).batched_to_gpu(
            mems, starts, ends, kvcaches=dst, slot_mapping=sm, vllm_cached_tokens=cached
        )
        assert_raw_equal(dst_raw, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("kind", ["random", "blocks"])
@pytest.mark.parametrize("layout", ["pairs", "packed", "mla"])
def test_wide_element_copies_keep_every_bit_pattern(layout, kind, dtype):
    """The CPU index ops run on the bytes reinterpreted as complex128: NaN payloads,
    signalling NaNs, -0.0, infinities and subnormals come back bit for bit."""
    num_layers = 2
    src, src_raw = make_layers(layout, num_layers, dtype, seed=43)
    bits = {2: torch.int16, 4: torch.int32}[torch.empty((), dtype=dtype).element_size()]
    g = torch.Generator().manual_seed(44)
    for tensors in src_raw:
        for t in tensors:
            iinfo = torch.iinfo(bits)
            t.view(bits).copy_(torch.randint(iinfo.min, iinfo.max, t.shape, generator=g, dtype=torch.int64).to(bits))
    conn = connector(layout, num_layers)
    plan = conn.plan(kvcaches=src)
    assert plan.wide is torch.complex128
    sm = slot_mapping(kind, 64, seed=45)
    mem = MemObj(torch.zeros(tuple(conn.get_shape(64)), dtype=dtype), fmt_of(layout))
    conn.from_gpu(mem, 0, 64, kvcaches=src, slot_mapping=sm)
    assert torch.equal(mem.tensor.view(bits), reference_gather(layout, src_raw, sm).view(bits))
    dst, dst_raw = make_layers(layout, num_layers, dtype, seed=46)
    expected = clone_raw(dst_raw)
    reference_scatter(layout, expected, sm, mem.tensor)
    connector(layout, num_layers).to_gpu(mem, 0, 64, kvcaches=dst, slot_mapping=sm)
    for now, want in zip(dst_raw, expected):
        for a, b in zip(now, want):
            assert torch.equal(a.view(bits), b.view(bits))


@pytest.mark.parametrize("kind", ["random", "blocks"])
def test_memory_object_at_an_odd_offset_falls_back_to_the_native_element_type(kind):
    num_layers, dtype = 2, torch.bfloat16
    src, src_raw = make_layers("pairs", num_layers, dtype, seed=47)
    sm = slot_mapping(kind, 48, seed=48)
    conn = connector("pairs", num_layers)
    shape = tuple(conn.get_shape(48))
    numel = 2 * num_layers * 48 * WIDTH
    odd = torch.zeros(numel + 1, dtype=dtype)[1:].view(shape)  # 2 bytes past a 16-byte boundary
    assert odd.is_contiguous() and odd.storage_offset() == 1
    conn.from_gpu(MemObj(odd), 0, 48, kvcaches=src, slot_mapping=sm)
    assert conn._plan.wide is torch.complex128
    assert torch.equal(odd, reference_gather("pairs", src_raw, sm))
    dst, dst_raw = make_layers("pairs", num_layers, dtype, seed=49)
    expected = clone_raw(dst_raw)
    reference_scatter("pairs", expected, sm, odd)
    conn.to_gpu(MemObj(odd), 0, 48, kvcaches=dst, slot_mapping=sm)
    assert_raw_equal(dst_raw, expected)


@pytest.mark.parametrize(
    "heads, head, dtype, wide",
    [
        (2, 8, torch.bfloat16, torch.complex128),  # 32-byte rows
        (1, 4, torch.bfloat16, torch.int64),  # 8-byte rows
        (3, 2, torch.bfloat16, torch.int32),  # 12-byte rows
        (1, 5, torch.bfloat16, None),  # 10-byte rows: native
        (1, 2, torch.float64, torch.complex128),
        (1, 3, torch.float64, None),  # 24-byte rows of 8-byte elements: nothing wider divides
    ],
)
def test_wide_type_follows_the_row_size_and_round_trips(heads, head, dtype, wide):
    g = torch.Generator().manual_seed(50)
    caches = [tuple(torch.randn(6, 4, heads, head, generator=g).to(dtype) for _p in range(2)) for _l in range(2)]
    plan = kt.CachePlan(caches)
    assert plan.wide is wide
    sm = torch.tensor([9, 3, 17, 8, 0, 23, 4, 5, 6, 7, 12, 13])
    out = torch.empty(2, 2, 12, heads * head, dtype=dtype)
    kt.gather_kv(caches, sm, 0, 12, out)
    want = torch.stack([torch.stack([t.view(24, -1)[sm] for t in layer]) for layer in caches]).transpose(0, 1)
    assert torch.equal(out, want)
    dst = [tuple(torch.zeros_like(t) for t in layer) for layer in caches]
    kt.scatter_kv(dst, sm, 0, 12, out)
    for layer, ref in zip(dst, caches):
        for t, r in zip(layer, ref):
            assert torch.equal(t.view(24, -1)[sm], r.view(24, -1)[sm])


def test_no_wide_types_off_the_cpu():
    caches = [tuple(torch.empty(6, 4, 2, 8, dtype=torch.bfloat16, device="meta") for _p in range(2))]
    plan = kt.CachePlan(caches)
    assert plan.wide is None and plan.idx_flat[0] is plan.flat[0][0]


@pytest.mark.parametrize("kind", ["random", "blocks", "runs"])
@pytest.mark.parametrize("layout", ["pairs", "packed", "mla"])
def test_non_contiguous_memory_object_of_the_cache_dtype_round_trips(layout, kind):
    num_layers, dtype = 2, torch.bfloat16
    src, src_raw = make_layers(layout, num_layers, dtype, seed=51)
    sm = slot_mapping(kind, 40, seed=52)
    conn = connector(layout, num_layers)
    parts, width = parts_of(layout), width_of(layout)
    view = torch.zeros(parts, num_layers, 40, width * 2, dtype=dtype)[..., ::2]
    conn.from_gpu(MemObj(view, fmt_of(layout)), 0, 40, kvcaches=src, slot_mapping=sm)
    assert torch.equal(view, reference_gather(layout, src_raw, sm))
    dst, dst_raw = make_layers(layout, num_layers, dtype, seed=53)
    expected = clone_raw(dst_raw)
    reference_scatter(layout, expected, sm[3:], view[:, :, 3:])
    connector(layout, num_layers).to_gpu(
        MemObj(view, fmt_of(layout)), 0, 40, kvcaches=dst, slot_mapping=sm, vllm_cached_tokens=3
    )
    assert_raw_equal(dst_raw, expected)


@pytest.mark.parametrize("layout", ["pairs", "stacked", "mla"])
def test_whole_blocks_read_with_one_cat(layout, monkeypatch):
    """Large blocks on CPU are read with one torch.cat into a contiguous chunk; a chunk with
    a partial block (not contiguous as a block region) keeps the index path."""
    monkeypatch.setattr(kt, "_CAT_MIN_ROW_BYTES", 0)
    calls = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda *a, **k: calls.append(1) or real_cat(*a, **k))
    num_layers, dtype = 3, torch.bfloat16
    src, src_raw = make_layers(layout, num_layers, dtype, seed=54)
    sm = slot_mapping("blocks", 100, seed=55)
    conn = connector(layout, num_layers)
    whole = MemObj(torch.zeros(tuple(conn.get_shape(64)), dtype=dtype), fmt_of(layout))
    conn.from_gpu(whole, 32, 96, kvcaches=src, slot_mapping=sm)
    assert torch.equal(whole.tensor, reference_gather(layout, src_raw, sm[32:96]))
    assert len(calls) == 1
    tail = MemObj(torch.zeros(tuple(conn.get_shape(36)), dtype=dtype), fmt_of(layout))
    conn.from_gpu(tail, 64, 100, kvcaches=src, slot_mapping=sm)
    assert torch.equal(tail.tensor, reference_gather(layout, src_raw, sm[64:100]))
    assert len(calls) == 1
    monkeypatch.setattr(kt, "_CAT_MIN_ROW_BYTES", 10**9)
    conn.from_gpu(whole, 32, 96, kvcaches=src, slot_mapping=sm)
    assert torch.equal(whole.tensor, reference_gather(layout, src_raw, sm[32:96])) and len(calls) == 1
