"""The connector on an HPU (stand-in habana_frameworks that counts graph flushes and
synchronisations) and inside LMCache's real engine construction code (MLA defaults)."""

import ast
import importlib.util
import os
import sys
import types

import pytest

torch = pytest.importorskip("torch")

import lmcache_wheels  # noqa: E402  (tests/unit/plugins/module_utils, put on sys.path by conftest)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
SRC = os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py")
STANDIN = os.path.join(HERE, "..", "..", "..", "standins", "habana_frameworks_pkg")


@pytest.fixture
def hpu_kt(monkeypatch):
    """The connector file loaded as LMCache loads it, with the stand-in habana_frameworks.

    CPU tensors play the HPU: ``_is_hpu`` answers True and ``torch.hpu.synchronize``
    counts its calls. Returns (module, mark_step calls, synchronize calls).
    """
    for name in [m for m in sys.modules if m == "habana_frameworks" or m.startswith("habana_frameworks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(STANDIN)
    spec = importlib.util.spec_from_file_location("gvl_hpu_kv_transfer_on_hpu", SRC)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.htcore is not None and mod.htcore.__file__.startswith(STANDIN)
    marks = mod.htcore.MARK_STEPS
    del marks[:]
    syncs = []
    monkeypatch.setattr(torch, "hpu", types.SimpleNamespace(synchronize=lambda: syncs.append(1)), raising=False)
    monkeypatch.setattr(mod, "_is_hpu", lambda device: True)
    yield mod, marks, syncs
    for name in [m for m in sys.modules if m.startswith("habana_frameworks")]:
        sys.modules.pop(name, None)


class _Fmt:
    name = "KV_2LTD"


def _mem(shape, dtype=torch.bfloat16):
    return types.SimpleNamespace(tensor=torch.zeros(shape, dtype=dtype), metadata=types.SimpleNamespace(fmt=_Fmt()))


@pytest.mark.parametrize("kind", ["random", "blocks"])
def test_one_mark_step_per_transfer_boundary_and_one_sync_per_batch(hpu_kt, kind):
    mod, marks, syncs = hpu_kt
    layers, nb, bs, heads, head = 32, 8, 16, 2, 4
    caches = [
        (torch.randn(nb, bs, heads, head).bfloat16(), torch.randn(nb, bs, heads, head).bfloat16())
        for _layer in range(layers)
    ]
    if kind == "random":
        sm = torch.randperm(nb * bs)[:96]
    else:
        sm = (torch.randperm(nb)[:, None] * bs + torch.arange(bs)[None, :]).reshape(-1)[:96]
    conn = mod.VLLMPagedMemHPUConnectorV2(heads * head, layers, device="cpu")
    one = _mem((2, layers, 32, heads * head))
    conn.from_gpu(one, 0, 32, kvcaches=caches, slot_mapping=sm)
    assert (len(marks), len(syncs)) == (2, 1)  # LMCache 0.4.3 native: 2 marks; 34 before
    del marks[:], syncs[:]
    conn.to_gpu(one, 0, 32, kvcaches=caches, slot_mapping=sm)
    assert (len(marks), len(syncs)) == (2, 1)
    del marks[:], syncs[:]
    mems = [_mem((2, layers, 32, heads * head)) for _c in range(3)]
    conn.batched_from_gpu(mems, [0, 32, 64], [32, 64, 96], slot_mapping=sm)
    assert (len(marks), len(syncs)) == (4, 1)  # before the batch and after each chunk
    del marks[:], syncs[:]
    conn.batched_to_gpu(mems, [0, 32, 64], [32, 64, 96], slot_mapping=sm, vllm_cached_tokens=40)
    assert (len(marks), len(syncs)) == (3, 1)  # chunk [0, 32) is held by vLLM: nothing to do
    del marks[:], syncs[:]
    # a host memory object (other dtype) goes through the staging buffer: still 2 and 1
    host = _mem((2, layers, 32, heads * head), dtype=torch.float32)
    conn.from_gpu(host, 32, 64, kvcaches=caches, slot_mapping=sm)
    assert (len(marks), len(syncs)) == (2, 1)
    assert torch.equal(host.tensor.bfloat16(), mems[1].tensor)


# -- LMCache's engine: MLA with default config ----------------------------------------


def _engine_init_head(version):
    """The real ``LMCacheEngine.__init__`` statements of ``version``'s wheel, up to and
    including the ``save_only_first_rank`` / broadcast-stream block, as a function."""
    path = os.path.join(lmcache_wheels.source_dir(version), "lmcache", "v1", "cache_engine.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LMCacheEngine")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    body = []
    for stmt in init.body:
        body.append(stmt)
        if isinstance(stmt, ast.If) and "broadcast_stream" in ast.dump(stmt):
            break
    else:
        raise AssertionError("LMCache %s: no broadcast_stream block in LMCacheEngine.__init__" % version)
    fn = ast.FunctionDef(
        name="engine_init_head",
        args=init.args,
        body=body,
        decorator_list=[],
        returns=None,
        type_comment=None,
        type_params=[],
    )
    fn.args.defaults = []
    for a in fn.args.args:
        a.annotation = None
    mod = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    logger = types.SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    ns = {"torch": torch, "torch_dev": torch.cuda, "logger": logger}
    exec(compile(mod, path, "exec"), ns)  # pylint: disable=exec-used
    return ns["engine_init_head"], ast.get_source_segment(open(path).read(), body[-1])


class _DefaultConfig:
    """LMCacheEngineConfig with an empty extra_config: every extra key takes its default."""

    def get_extra_config_value(self, key, default=None):
        return default


@pytest.mark.parametrize("version", ["0.4.2", "0.4.3", "0.5.6"])
def test_mla_engine_construction_with_lmcache_defaults(version):
    from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hpu_kv_transfer as kt

    init, block = _engine_init_head(version)
    assert "load_stream" in block and "Stream()" in block
    metadata = types.SimpleNamespace(use_mla=True)
    conn = kt.VLLMPagedMemHPUConnectorV2(576, 2, use_mla=True, device="cpu")
    engine = types.SimpleNamespace()
    init(engine, _DefaultConfig(), metadata, None, conn, None, None)
    assert engine.save_only_first_rank is True  # LMCache's default for MLA
    assert engine.broadcast_stream is None  # the connector's load_stream, no CUDA stream
    with torch.cuda.stream(engine.broadcast_stream):  # the retrieve path's stream context
        pass
    if not torch.cuda.is_available():
        # without the attribute the same code needs CUDA (the failure this guards against)
        class NoStream:
            pass

        with pytest.raises((RuntimeError, AssertionError, AttributeError)):
            init(types.SimpleNamespace(), _DefaultConfig(), metadata, None, NoStream(), None, None)
