"""Behaviour of the *patched* LMCache code, run with a stand-in ``torch`` namespace.

The patched functions are taken from real LMCache releases (patched by the module)
and executed with stand-ins for torch's device API (``torch.hpu`` / ``torch.cuda``),
vLLM's config objects and LMCache's engine classes. The HPU connector that the
patched code imports is the real file the module installed into the patched tree.
"""

import ast
import builtins
import inspect
import os
import sys
import types

import pytest

torch = pytest.importorskip("torch")

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import lmcache_hpu_patch as hp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
with open(os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py"), "rb") as _f:
    CONNECTOR = _f.read()


import lmcache_wheels as W  # noqa: E402  (on sys.path through tests/unit/conftest.py)


class StandInDeviceModule:
    """Stand-in for ``torch.hpu`` / ``torch.cuda``: availability, count, set_device."""

    def __init__(self, available, count):
        self.available = available
        self.count = count
        self.current = None

    def is_available(self):
        return self.available

    def device_count(self):
        return self.count

    def set_device(self, idx):
        self.current = idx

    def synchronize(self):
        pass


def stand_in_torch(hpu, cuda):
    """A stand-in ``torch`` namespace: real torch.device, stand-in device modules."""
    t = types.SimpleNamespace(
        device=torch.device, cuda=cuda, bool=torch.bool, long=torch.long, ones=torch.ones, Size=torch.Size
    )
    if hpu is not None:
        t.hpu = hpu
    return t


class Anything:
    """Permissive stand-in for names the tested function touches only incidentally."""

    def __init__(self, *a, **kw):
        self.args, self.kwargs = a, kw

    def __call__(self, *a, **kw):
        return Anything(*a, **kw)

    def __getattr__(self, name):
        return Anything()


class Namespace(dict):
    def __missing__(self, key):
        if hasattr(builtins, key):
            return getattr(builtins, key)
        return Anything()


def init_engine(fn, cfg, vllm_config):
    """Call _init_lmcache_engine; 0.3.9.post2 added a ``role`` argument (a worker here)."""
    if "role" in inspect.signature(fn).parameters:
        return fn(cfg, vllm_config, "worker")
    return fn(cfg, vllm_config)


def load_patched(path, func_name, namespace):
    """Exec the patch's helper block and ``func_name`` from the patched file in ``namespace``."""
    with open(path) as f:
        source = f.read()
    start = source.index("# >>> gaudi.vllm_lmcache hpu_patch")
    end = source.index("# <<< gaudi.vllm_lmcache hpu_patch <<<")
    exec(compile(source[start:end], path, "exec"), namespace)
    tree = ast.parse(source)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == func_name]
    assert len(nodes) == 1
    node = nodes[0]
    node.decorator_list = []
    exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)
    return namespace[func_name]


@pytest.fixture
def lmcache_packages(monkeypatch):
    """Make ``lmcache`` / ``lmcache.v1`` stand-in packages whose path is a patched tree."""

    def install(site):
        for name, rel in (("lmcache", "lmcache"), ("lmcache.v1", "lmcache/v1")):
            mod = types.ModuleType(name)
            mod.__path__ = [os.path.join(site, rel)]
            monkeypatch.setitem(sys.modules, name, mod)
        monkeypatch.delitem(sys.modules, "lmcache.v1.gaudi_hpu_connector", raising=False)

    return install


def patched_site(version, tmp_path):
    site = W.make_site(version, str(tmp_path / ("site-" + version)))
    hp.run(site, "present", connector_source=CONNECTOR)
    assert hp.classify(site)["classification"] == "patched"
    return site


class Recorder:
    """Stand-in for LMCache's CUDA connector classes: records how it was built."""

    def __init__(self, *a, **kw):
        self.args, self.kwargs = a, kw


def adapter_namespace(fake_torch, rank, use_layerwise=False):
    calls = {}

    class Builder:
        @staticmethod
        def get(name):
            return None

        @staticmethod
        def get_or_create(name, cfg, metadata, connector, *a):
            calls["connector"] = connector
            return connector

    class Cfg:
        chunk_size = 256
        enable_blending = False
        remote_serde = None

    cfg = Cfg()
    cfg.use_layerwise = use_layerwise
    model = types.SimpleNamespace(
        model="m", dtype="bf16", get_num_layers=lambda pc: 32, get_num_kv_heads=lambda pc: 8, get_head_size=lambda: 128
    )
    vllm_config = types.SimpleNamespace(
        model_config=model,
        parallel_config=types.SimpleNamespace(rank=rank, world_size=8),
        cache_config=types.SimpleNamespace(cache_dtype="auto"),
    )
    ns = Namespace(
        torch=fake_torch,
        LMCacheEngineBuilder=Builder,
        LMCacheEngineConfig=Cfg,
        ENGINE_NAME="e",
        get_kv_cache_torch_dtype=lambda *a: torch.bfloat16,
        mla_enabled=lambda mc: False,
        _calculate_draft_layers=lambda *a: 0,
        _calculate_mtp_layers=lambda *a: 0,
        need_gpu_interm_buffer=lambda c: False,
        LMCacheEngineMetadata=Recorder,
        VLLMPagedMemGPUConnectorV2=Recorder,
        VLLMPagedMemLayerwiseGPUConnector=Recorder,
        VLLMBufferLayerwiseGPUConnector=Recorder,
        logger=Anything(),
    )
    return ns, cfg, vllm_config, calls


@pytest.mark.parametrize("version", ["0.3.7", "0.3.9.post2"])
def test_patched_adapter_picks_hpu_under_gpu_migration(version, tmp_path, lmcache_packages):
    site = patched_site(version, tmp_path)
    lmcache_packages(site)
    hpu = StandInDeviceModule(True, 4)
    cuda = StandInDeviceModule(True, 8)  # PT_HPU_GPU_MIGRATION=1: cuda looks available too
    ns, cfg, vcfg, calls = adapter_namespace(stand_in_torch(hpu, cuda), rank=5)
    fn = load_patched(os.path.join(site, hp.ADAPTER), "_init_lmcache_engine", ns)
    init_engine(fn, cfg, vcfg)
    conn = calls["connector"]
    assert type(conn).__name__ == "VLLMPagedMemHPUConnectorV2"
    assert type(conn).__module__ == "lmcache.v1.gaudi_hpu_connector"
    assert sys.modules["lmcache.v1.gaudi_hpu_connector"].__file__ == os.path.join(site, hp.CONNECTOR_RELPATH)
    assert conn.device == torch.device("hpu:1")  # 5 % 4
    assert hpu.current == 1 and cuda.current is None
    assert ns["_gvl_device_type"]() == "hpu"


@pytest.mark.parametrize("version", ["0.3.7", "0.3.9.post2"])
def test_patched_adapter_on_cuda_host_is_upstream(version, tmp_path, lmcache_packages):
    site = patched_site(version, tmp_path)
    lmcache_packages(site)
    cuda = StandInDeviceModule(True, 8)
    ns, cfg, vcfg, calls = adapter_namespace(stand_in_torch(None, cuda), rank=5)
    fn = load_patched(os.path.join(site, hp.ADAPTER), "_init_lmcache_engine", ns)
    init_engine(fn, cfg, vcfg)
    conn = calls["connector"]
    assert isinstance(conn, Recorder)  # LMCache's own VLLMPagedMemGPUConnectorV2
    assert conn.kwargs["device"] == torch.device("cuda:5") and cuda.current == 5
    assert "lmcache.v1.gaudi_hpu_connector" not in sys.modules
    # Gaudi libraries present but no usable HPU: still CUDA
    ns2, cfg2, vcfg2, calls2 = adapter_namespace(stand_in_torch(StandInDeviceModule(False, 0), cuda), rank=3)
    init_engine(load_patched(os.path.join(site, hp.ADAPTER), "_init_lmcache_engine", ns2), cfg2, vcfg2)
    assert calls2["connector"].kwargs["device"] == torch.device("cuda:3")


def test_patched_adapter_refuses_layerwise_on_hpu(tmp_path, lmcache_packages):
    site = patched_site("0.3.9", tmp_path)
    lmcache_packages(site)
    ns, cfg, vcfg, _calls = adapter_namespace(
        stand_in_torch(StandInDeviceModule(True, 8), StandInDeviceModule(True, 8)), rank=0, use_layerwise=True
    )
    fn = load_patched(os.path.join(site, hp.ADAPTER), "_init_lmcache_engine", ns)
    with pytest.raises(ValueError, match="layerwise"):
        init_engine(fn, cfg, vcfg)


def test_patched_adapter_slot_mapping_and_mark_step(tmp_path):
    site = patched_site("0.3.9", tmp_path)
    with open(os.path.join(site, hp.ADAPTER)) as f:
        text = f.read()
    assert ".cuda()" not in text
    assert text.count("slot_mapping.to(_gvl_device_type())") == 3
    assert text.count("_gvl_mark_step()  # gaudi.vllm_lmcache hpu_patch") == 2
    marks = []
    ns = Namespace(torch=stand_in_torch(StandInDeviceModule(True, 1), StandInDeviceModule(True, 1)))
    load_patched(os.path.join(site, hp.ADAPTER), "_gvl_mark_step", ns)
    ns["htcore"] = types.SimpleNamespace(mark_step=lambda: marks.append(1))
    ns["_gvl_mark_step"]()
    assert marks == [1]
    ns["torch"] = stand_in_torch(None, StandInDeviceModule(True, 1))
    ns["_gvl_mark_step"]()
    assert marks == [1]


def _vllm_platform(monkeypatch, cuda_alike, xpu=False):
    plat = types.SimpleNamespace(is_cuda_alike=lambda: cuda_alike, is_xpu=lambda: xpu)
    for name in ("vllm", "vllm.platforms"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["vllm.platforms"].current_platform = plat


def test_patched_utils_get_vllm_torch_dev_0_4_2(tmp_path, monkeypatch):
    site = patched_site("0.4.2", tmp_path)
    hpu, cuda = StandInDeviceModule(True, 8), StandInDeviceModule(True, 8)
    _vllm_platform(monkeypatch, cuda_alike=True)  # as under GPU migration
    ns = Namespace(torch=stand_in_torch(hpu, cuda), logger=Anything())
    fn = load_patched(os.path.join(site, hp.UTILS), "get_vllm_torch_dev", ns)
    assert fn() == (hpu, "hpu")
    ns["torch"] = stand_in_torch(None, cuda)
    assert fn() == (cuda, "cuda")
    _vllm_platform(monkeypatch, cuda_alike=False)
    with pytest.raises(RuntimeError, match="Unsupported device platform"):
        fn()


def test_patched_create_gpu_connector_0_4_2(tmp_path, monkeypatch, lmcache_packages):
    site = patched_site("0.4.2", tmp_path)
    lmcache_packages(site)
    # stand-ins for LMCache's own (CUDA) connector module imported inside the function
    pkg = types.ModuleType("lmcache.v1.gpu_connector")
    pkg.__path__ = []
    conns = types.ModuleType("lmcache.v1.gpu_connector.gpu_connectors")
    for name in (
        "VLLMBufferLayerwiseGPUConnector",
        "VLLMPagedMemGPUConnectorV2",
        "VLLMPagedMemGPUConnectorV3",
        "VLLMPagedMemLayerwiseGPUConnector",
    ):
        setattr(conns, name, Recorder)
    monkeypatch.setitem(sys.modules, "lmcache.v1.gpu_connector", pkg)
    monkeypatch.setitem(sys.modules, "lmcache.v1.gpu_connector.gpu_connectors", conns)
    hpu = StandInDeviceModule(True, 8)
    ns = Namespace(
        torch=stand_in_torch(hpu, StandInDeviceModule(True, 8)),
        get_vllm_torch_dev=lambda: (hpu, "hpu"),
        need_gpu_interm_buffer=lambda c: False,
        EngineType=types.SimpleNamespace(SGLANG="sglang", VLLM="vllm", MOCK="mock"),
    )
    fn = load_patched(os.path.join(site, hp.CONNECTOR_INIT), "CreateGPUConnector", ns)
    meta = types.SimpleNamespace(
        local_worker_id=3, kv_shape=(32, 2, 256, 8, 128), kv_dtype=torch.bfloat16, use_mla=False
    )
    conn = fn(types.SimpleNamespace(use_layerwise=False), meta, "vllm")
    assert type(conn).__module__ == "lmcache.v1.gaudi_hpu_connector"
    assert conn.device == torch.device("hpu:3") and hpu.current == 3
    assert tuple(conn.get_shape(256)) == (2, 32, 256, 1024)
    with pytest.raises(ValueError, match="layerwise"):
        fn(types.SimpleNamespace(use_layerwise=True), meta, "vllm")


# --- GPU migration: LMCache's own engine modules, imported for real --------------------------

PROBE = os.path.join(HERE, "lmcache_migration_probe.py")
ENGINE_MODULES = [
    "lmcache.v1.memory_management",
    "lmcache.v1.cache_engine",
    "lmcache.v1.storage_backend",
    "lmcache.v1.gpu_connector",
]


def probe(site, pick):
    import json
    import subprocess

    args = [sys.executable, PROBE, site, ",".join(ENGINE_MODULES)] + (["pick"] if pick else [])
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, check=False)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("version", ["0.3.7", "0.3.9.post2", "0.3.10.post2", "0.3.13", "0.4.2", "0.4.3", "0.4.4"])
def test_engine_modules_import_under_gpu_migration(version, tmp_path):
    """torch.cuda.is_available() True and torch.hpu present: the pristine release reaches for
    lmcache.c_ops; the patched one imports its engine modules without touching it and, where
    LMCache chooses the connector in CreateGPUConnector (0.3.14 and later), picks the HPU
    connector, which keeps vLLM-Gaudi's (K, V) layers as they are."""
    pristine = W.make_site(version, str(tmp_path / "pristine"))
    before = probe(pristine, pick=False)
    assert before["events"]["c_ops"] > 0, before

    site = patched_site(version, tmp_path)
    after = probe(site, pick=W.version_key(version) >= (0, 3, 14, 0))
    assert after["imports"] == dict((m, "ok") for m in ENGINE_MODULES), after
    assert after["events"]["c_ops"] == 0 and after["events"]["cuda_stream"] == 0, after
    if after["pick"] is not None:
        shape = hp.classify(site)["shape"]
        module = (
            "lmcache.v1.gpu_connector.hpu_connector"
            if shape == "hpu_connector_kv_pairs"
            else "lmcache.v1.gaudi_hpu_connector"
        )
        assert after["pick"] == {"class": "VLLMPagedMemHPUConnectorV2", "module": module, "kvcaches": "kept"}, after


def test_native_connector_of_0_4_3_fails_on_kv_pairs_until_patched(tmp_path):
    """LMCache 0.4.3's HPU connector inherits initialize_kvcaches_ptr(), which calls
    .is_contiguous() on each layer: vLLM-Gaudi's (K, V) TensorTuple has no such method."""
    import json
    import subprocess

    pristine = W.make_site("0.4.3", str(tmp_path / "pristine"))
    env = dict(os.environ, PROBE_GPU_MIGRATION="0")
    out = subprocess.check_output([sys.executable, PROBE, pristine, "lmcache.v1.gpu_connector", "pick"], env=env)
    pick = json.loads(out.decode().strip().splitlines()[-1])["pick"]
    assert pick["module"] == "lmcache.v1.gpu_connector.hpu_connector"
    assert pick["kvcaches"].startswith("AttributeError") and "is_contiguous" in pick["kvcaches"]
    site = patched_site("0.4.3", tmp_path)
    out = subprocess.check_output([sys.executable, PROBE, site, "lmcache.v1.gpu_connector", "pick"], env=env)
    assert json.loads(out.decode().strip().splitlines()[-1])["pick"]["kvcaches"] == "kept"
