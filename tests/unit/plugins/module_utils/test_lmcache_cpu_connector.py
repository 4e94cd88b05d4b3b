"""CPU KV connector for real LMCache on vLLM CPU: factory wrapping and the CPU cache layout."""

import enum
import json
import types

import pytest

torch = pytest.importorskip("torch")

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hpu_kv_transfer as kt  # noqa: E402
from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import lmcache_cpu_connector as cc  # noqa: E402


class EngineType(enum.Enum):
    """Stand-in for lmcache.utils.EngineType (same member names)."""

    VLLM = 1
    SGLANG = 2
    MOCK = 4


class MemoryFormat(enum.Enum):
    KV_2LTD = 1


class MemObj:
    def __init__(self, tensor):
        self.tensor = tensor
        self.metadata = types.SimpleNamespace(fmt=MemoryFormat.KV_2LTD)


def config(**kw):
    base = dict(use_layerwise=False, enable_blending=False, use_gpu_connector_v3=False, save_unfull_chunk=False)
    base.update(kw)
    return types.SimpleNamespace(**base)


LAYERS, CHUNK, HEADS, HEAD, BLOCKS, BLOCK = 3, 32, 2, 8, 10, 16


def metadata():
    return types.SimpleNamespace(kv_shape=(LAYERS, 2, CHUNK, HEADS, HEAD), kv_dtype=torch.float32, use_mla=False)


def fake_factory_module():
    calls = []

    def CreateGPUConnector(cfg, md, engine, layout_hints=None):
        calls.append((engine, layout_hints))
        return "lmcache-own"

    return types.SimpleNamespace(CreateGPUConnector=CreateGPUConnector), calls


def test_cpu_vllm_gets_the_collection_connector():
    mod, calls = fake_factory_module()
    assert cc.install(mod, device_type="cpu")
    conn = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM, layout_hints={"kv_layout": "NHD"})
    assert isinstance(conn, kt.VLLMPagedMemHPUConnectorV2)
    assert calls == []
    assert tuple(conn.get_shape(5)) == (2, LAYERS, 5, HEADS * HEAD)
    assert conn.device == torch.device("cpu") and conn.use_gpu is False


@pytest.mark.parametrize(
    "device,engine",
    [("cuda", EngineType.VLLM), ("hpu", EngineType.VLLM), ("cpu", EngineType.SGLANG), ("cpu", EngineType.MOCK)],
)
def test_other_devices_and_engines_use_lmcache_factory(device, engine):
    mod, calls = fake_factory_module()
    cc.install(mod, device_type=device)
    assert mod.CreateGPUConnector(config(), metadata(), engine, layout_hints=None) == "lmcache-own"
    assert calls == [(engine, None)]


def test_device_type_is_read_at_call_time():
    mod, calls = fake_factory_module()
    state = {"dev": "cuda"}
    cc.install(mod, device_type=lambda: state["dev"])
    assert mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM) == "lmcache-own"
    state["dev"] = "cpu"
    assert isinstance(mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM), kt.VLLMPagedMemHPUConnectorV2)


def test_install_is_idempotent_and_uninstall_restores():
    mod, _calls = fake_factory_module()
    original = mod.CreateGPUConnector
    cc.install(mod, device_type="cpu")
    wrapped = mod.CreateGPUConnector
    cc.install(mod, device_type="cpu")
    assert mod.CreateGPUConnector is wrapped and wrapped is not original
    assert cc.uninstall(mod) is True
    assert mod.CreateGPUConnector is original
    assert cc.uninstall(mod) is False


@pytest.mark.parametrize("attr", ["use_layerwise", "enable_blending", "use_gpu_connector_v3"])
def test_unsupported_lmcache_settings_are_refused_by_name(attr):
    mod, _calls = fake_factory_module()
    cc.install(mod, device_type="cpu")
    with pytest.raises(ValueError, match=attr):
        mod.CreateGPUConnector(config(**{attr: True}), metadata(), EngineType.VLLM)


def cpu_cache(seed):
    """vLLM CPU layout: per layer [num_blocks, num_kv_heads, block_size, 2 * head_size]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(BLOCKS, HEADS, BLOCK, 2 * HEAD, generator=g) for _layer in range(LAYERS)]


def slots_of(block_ids, n):
    pos = torch.arange(n)
    return torch.tensor(block_ids)[pos // BLOCK] * BLOCK + pos % BLOCK


def transfer(src_blocks, dst_blocks, n, chunk=32, cached=0):
    mod, _calls = fake_factory_module()
    cc.install(mod, device_type="cpu")
    conn = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM)
    src, dst = cpu_cache(1), cpu_cache(2)
    before = [t.clone() for t in dst]
    src_slots, dst_slots = slots_of(src_blocks, n), slots_of(dst_blocks, n)
    starts = list(range(0, n, chunk))
    ends = [min(s + chunk, n) for s in starts]
    objs = [MemObj(torch.empty(tuple(conn.get_shape(e - s)))) for s, e in zip(starts, ends)]
    conn.batched_from_gpu(objs, starts, ends, kvcaches=src, slot_mapping=src_slots)
    conn2 = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM)
    conn2.batched_to_gpu(objs, starts, ends, kvcaches=dst, slot_mapping=dst_slots, vllm_cached_tokens=cached)
    return src, dst, before


def test_whole_blocks_round_trip_byte_exact():
    """Store 3 blocks from one cache, load them into other blocks of another: each destination
    block's whole (heads, block_size, 2 * head_size) slab equals its source block, whatever order
    the kernel keeps inside it; every other block is untouched."""
    src, dst, before = transfer([7, 2, 5], [1, 9, 4], 48)
    for layer in range(LAYERS):
        for sb, db in ((7, 1), (2, 9), (5, 4)):
            assert torch.equal(dst[layer][db], src[layer][sb])
        for b in set(range(BLOCKS)) - {1, 9, 4}:
            assert torch.equal(dst[layer][b], before[layer][b])


def test_stored_chunk_is_k_then_v_per_row():
    mod, _calls = fake_factory_module()
    cc.install(mod, device_type="cpu")
    conn = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM)
    src = cpu_cache(1)
    slots = slots_of([3, 6], 32)
    obj = MemObj(torch.empty(tuple(conn.get_shape(32))))
    conn.from_gpu(obj, 0, 32, kvcaches=src, slot_mapping=slots)
    for t in (0, 17, 31):
        b, o = int(slots[t]) // BLOCK, int(slots[t]) % BLOCK
        for layer in range(LAYERS):
            assert torch.equal(obj.tensor[0, layer, t], src[layer][b, :, o, :HEAD].reshape(-1))
            assert torch.equal(obj.tensor[1, layer, t], src[layer][b, :, o, HEAD:].reshape(-1))


def test_blocks_vllm_already_holds_are_not_rewritten():
    src, dst, before = transfer([7, 2, 5], [1, 9, 4], 48, cached=16)
    for layer in range(LAYERS):
        assert torch.equal(dst[layer][1], before[layer][1])
        assert torch.equal(dst[layer][9], src[layer][2])
        assert torch.equal(dst[layer][4], src[layer][5])


@pytest.mark.parametrize(
    "n,blocks,chunk,cached",
    [
        (40, [7, 2, 5], 32, 0),  # a partial last block
        (48, [7, 2, 5], 24, 0),  # chunks not aligned to blocks
        (48, [7, 2, 5], 32, 8),  # vLLM holds part of a block
    ],
)
def test_partial_blocks_are_refused(n, blocks, chunk, cached):
    with pytest.raises(ValueError, match="whole vLLM blocks"):
        transfer(blocks, [1, 9, 4], n, chunk=chunk, cached=cached)


def test_check_whole_blocks():
    bs = 4
    good = torch.tensor([8, 9, 10, 11, 0, 1, 2, 3])
    cc.check_whole_blocks(good, [(0, 8), (4, 8), (3, 3)], bs)
    for slots, rng in (
        (torch.tensor([9, 10, 11, 12]), (0, 4)),  # does not start at a block boundary
        (torch.tensor([8, 9, 11, 10]), (0, 4)),  # not consecutive within the block
        (good, (0, 6)),  # not a multiple of block_size
        (good, (2, 6)),  # starts inside a block
    ):
        with pytest.raises(ValueError, match="block_size"):
            cc.check_whole_blocks(slots, [rng], bs)


def test_save_unfull_chunk_is_refused():
    mod, _calls = fake_factory_module()
    cc.install(mod, device_type="cpu")
    with pytest.raises(ValueError, match="save_unfull_chunk"):
        mod.CreateGPUConnector(config(save_unfull_chunk=True), metadata(), EngineType.VLLM)


def test_kv_transfer_config():
    cfg = cc.kv_transfer_config()
    assert cfg == {
        "kv_connector": "LMCacheCPUConnectorV1",
        "kv_connector_module_path": "gaudi_vllm_lmcache_kv.lmcache_cpu_connector",
        "kv_role": "kv_both",
    }
    assert json.loads(cc.kv_transfer_config_json(module_path="x.y", extra={"a": 1})) == {
        "kv_connector": "LMCacheCPUConnectorV1",
        "kv_connector_module_path": "x.y",
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"a": 1},
    }
    with pytest.raises(ValueError, match="kv_role"):
        cc.kv_transfer_config(kv_role="both")
