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
    base = dict(use_layerwise=False, enable_blending=False, use_gpu_connector_v3=False)
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
    return [torch.randn(BLOCKS, HEADS, BLOCK, 2 * HEAD, generator=g) for _ in range(LAYERS)]


def slots_of(block_ids, n):
    pos = torch.arange(n)
    return torch.tensor(block_ids)[pos // BLOCK] * BLOCK + pos % BLOCK


def test_round_trip_through_the_cpu_layout():
    """Store from one server's cache, load into another's blocks: the K and V of each token
    arrive at the new slots, and no other slot changes."""
    mod, _calls = fake_factory_module()
    cc.install(mod, device_type="cpu")
    conn = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM)
    n = 40  # 2.5 blocks: a chunk of 32 and a partial chunk of 8
    src = cpu_cache(1)
    src_slots = slots_of([7, 2, 5], n)
    objs = [MemObj(torch.empty(tuple(conn.get_shape(e - s)))) for s, e in ((0, 32), (32, n))]
    conn.batched_from_gpu(objs, [0, 32], [32, n], kvcaches=src, slot_mapping=src_slots)

    # the stored chunk holds K then V of every token, layer by layer
    for t in (0, 17, 39):
        obj, off = (objs[0], t) if t < 32 else (objs[1], t - 32)
        b, o = int(src_slots[t]) // BLOCK, int(src_slots[t]) % BLOCK
        for layer in range(LAYERS):
            k = src[layer][b, :, o, :HEAD].reshape(-1)
            v = src[layer][b, :, o, HEAD:].reshape(-1)
            assert torch.equal(obj.tensor[0, layer, off], k)
            assert torch.equal(obj.tensor[1, layer, off], v)

    dst = cpu_cache(2)
    before = [t.clone() for t in dst]
    dst_slots = slots_of([1, 9, 4], n)
    conn2 = mod.CreateGPUConnector(config(), metadata(), EngineType.VLLM)
    conn2.batched_to_gpu(objs, [0, 32], [32, n], kvcaches=dst, slot_mapping=dst_slots)
    touched = set()
    for t in range(n):
        sb, so = int(src_slots[t]) // BLOCK, int(src_slots[t]) % BLOCK
        db, do = int(dst_slots[t]) // BLOCK, int(dst_slots[t]) % BLOCK
        touched.add((db, do))
        for layer in range(LAYERS):
            assert torch.equal(dst[layer][db, :, do], src[layer][sb, :, so])
    for layer in range(LAYERS):
        for b in range(BLOCKS):
            for o in range(BLOCK):
                if (b, o) not in touched:
                    assert torch.equal(dst[layer][b, :, o], before[layer][b, :, o])


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
