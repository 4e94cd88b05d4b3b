"""Import LMCache's engine modules as on Gaudi under PT_HPU_GPU_MIGRATION=1 (helper script).

Run as ``python lmcache_migration_probe.py SITE MODULE[,MODULE...] [pick]`` in a fresh
interpreter. Real torch (CPU build) with the two things GPU migration changes:
``torch.cuda.is_available()`` returns True and ``torch.hpu`` exists (a stand-in with
is_available/device_count/set_device/synchronize). ``lmcache.c_ops`` fails to import the way
the CUDA extension fails on Gaudi (no libcudart.so.12) and ``torch.cuda.Stream`` raises; both
are counted. LMCache's third-party dependencies that the test environment lacks are
permissive stand-ins (STUBS); habana_frameworks.torch.core and vllm.platforms (vLLM-Gaudi's
HpuPlatform: neither CUDA-alike nor XPU) are stand-ins too. With ``pick`` it calls
``CreateGPUConnector`` (LMCache 0.3.14 and later) and hands the connector vLLM-Gaudi's
(K, V) layers. PROBE_GPU_MIGRATION=0 leaves torch.cuda.is_available() as it is.
Prints one JSON line.
"""

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types

site = sys.argv[1]
mods = sys.argv[2].split(",")
events = {"c_ops": 0, "cuda_stream": 0, "stubbed": []}


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stand_in(name)

    def __or__(cls, other):
        return cls

    __ror__ = __or__

    def __getitem__(cls, item):
        return cls

    def __iter__(cls):
        return iter(())


def _stand_in(name):
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]  # used as a decorator
        return _stand_in("call")()

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _stand_in(attr)()

    def __init_subclass__(cls, **kwargs):
        pass

    return _Meta(
        str(name),
        (object,),
        {
            "__init__": __init__,
            "__call__": __call__,
            "__getattr__": __getattr__,
            "__init_subclass__": classmethod(__init_subclass__),
        },
    )


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stand_in(name)


# LMCache's third-party dependencies that this test environment does not install
STUBS = {
    "prometheus_client",
    "msgspec",
    "zmq",
    "sortedcontainers",
    "nvtx",
    "psutil",
    "cpuinfo",
    "redis",
    "safetensors",
    "transformers",
    "infinistore",
    "cufile",
    "nixl",
    "xxhash",
    "pynvml",
    "cupy",
    "aiohttp",
    "fastapi",
    "uvicorn",
    "starlette",
    "pydantic",
    "httpx",
    "requests",
    "numba",
    "awscrt",
    "lmcache_ascend",
    "mooncake",
    "valkey",
    "setproctitle",
    "cachetools",
    "blake3",
    "ray",
    "sglang",
    "vllm",
    "pandas",
    "cbor2",
    "hf_xet",
    "huggingface_hub",
    "tqdm",
    "boto3",
    "botocore",
    "aiofile",
    "aiofiles",
    "caio",
    "lmcache_ext",
    "pyzmq",
    "torchac_cuda",
    "hiredis",
    "grpc",
    "google",
    "uvloop",
    "kvikio",
    "zstandard",
    "lz4",
}


class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "lmcache.c_ops":
            events["c_ops"] += 1
            raise ImportError("libcudart.so.12: cannot open shared object file: No such file or directory")
        top = name.split(".")[0]
        if top not in STUBS:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                spec = None
            if spec is not None:
                return spec
        events["stubbed"].append(name)
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


import torch  # noqa: E402

sys.meta_path.insert(0, Finder())

if os.environ.get("PROBE_GPU_MIGRATION", "1") == "1":
    torch.cuda.is_available = lambda: True  # what PT_HPU_GPU_MIGRATION=1 reports on Gaudi


def _no_stream(*a, **k):
    events["cuda_stream"] += 1
    raise RuntimeError("torch.cuda.Stream on Gaudi")


torch.cuda.Stream = _no_stream
hpu = types.ModuleType("torch.hpu")
hpu.is_available = lambda: True
hpu.device_count = lambda: 8
hpu.set_device = lambda i: None
hpu.synchronize = lambda *a: None
hpu.current_device = lambda: 0
torch.hpu = hpu
sys.modules["torch.hpu"] = hpu
marks = []
hf = types.ModuleType("habana_frameworks")
hf.__path__ = []
hft = types.ModuleType("habana_frameworks.torch")
hft.__path__ = []
core = types.ModuleType("habana_frameworks.torch.core")
core.mark_step = lambda: marks.append(1)
hft.core = core
hf.torch = hft
sys.modules.update({"habana_frameworks": hf, "habana_frameworks.torch": hft, "habana_frameworks.torch.core": core})
# vLLM-Gaudi's platform (HpuPlatform) is neither CUDA-alike nor XPU
vllm = types.ModuleType("vllm")
vllm.__path__ = []
platforms = types.ModuleType("vllm.platforms")
platforms.current_platform = types.SimpleNamespace(is_cuda_alike=lambda: False, is_xpu=lambda: False)
vllm.platforms = platforms
sys.modules.update({"vllm": vllm, "vllm.platforms": platforms})
sys.path.insert(0, site)
out = {}
for m in mods:
    try:
        importlib.import_module(m)
        out[m] = "ok"
    except BaseException as exc:
        out[m] = "%s: %s" % (type(exc).__name__, exc)
pick = None
if len(sys.argv) > 3 and sys.argv[3] == "pick":
    try:
        from lmcache.v1.gpu_connector import CreateGPUConnector

        try:
            from lmcache.utils import EngineType

            engine = EngineType.VLLM
        except ImportError:
            engine = "vllm"

        class Config(types.SimpleNamespace):
            def __getattr__(self, name):  # every other switch of LMCacheEngineConfig: off
                return None

        config = Config(use_layerwise=False, enable_blending=False, use_gpu_connector_v3=False)
        meta = types.SimpleNamespace(
            local_worker_id=3, kv_shape=(2, 2, 16, 2, 4), kv_dtype=torch.float32, use_mla=False, chunk_size=16
        )
        conn = CreateGPUConnector(config, meta, engine)
        pick = {"class": type(conn).__name__, "module": type(conn).__module__}
        k, v = torch.zeros(4, 16, 2, 4), torch.zeros(4, 16, 2, 4)

        class TensorTuple(tuple):
            pass  # vLLM-Gaudi's (K, V) layer: a tuple, no .is_contiguous()

        layers = [TensorTuple((k, v)), TensorTuple((k, v))]
        try:
            conn.initialize_kvcaches_ptr(kvcaches=layers)
            pick["kvcaches"] = "kept" if conn.kvcaches is layers else "replaced"
        except Exception as exc:
            pick["kvcaches"] = "%s: %s" % (type(exc).__name__, exc)
    except BaseException as exc:
        import traceback

        pick = {"error": "%s: %s" % (type(exc).__name__, exc), "tb": traceback.format_exc()[-1500:]}
print(json.dumps({"imports": out, "events": events, "pick": pick}))
