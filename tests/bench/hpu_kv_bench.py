"""Bandwidth of the pure-PyTorch KV connector next to a plain copy and LMCache's own
native HPU connector (a benchmark, not a timed test).

    python -m tests.bench.hpu_kv_bench --device cpu|cuda|hpu [--runs N] [--lmcache 0.4.3,0.4.5,0.5.6]

Runs from the repository root without the collection being installed: the connector
file (plugins/module_utils/hpu_kv_transfer.py) is loaded by path. LMCache's native
connector (``lmcache/v1/gpu_connector/hpu_connector.py``, LMCache 0.4.3 and later) is
taken from the real wheel, downloaded once with ``pip download --no-deps`` into
``${GVL_CACHE_DIR:-~/.cache/gaudi-vllm-lmcache}/lmcache-wheels``; only that file is
loaded, with stand-ins for the few LMCache objects it imports (and for
``habana_frameworks`` off Gaudi). Its layout discovery is bypassed by setting the
attributes it would discover; its ``to_gpu`` / ``from_gpu`` run unchanged.

One process, one thread (``torch.set_num_threads(1)``), vLLM-Gaudi layout (per layer
a (K, V) pair of ``[num_blocks, block_size, num_kv_heads, head_size]``), one LMCache
chunk of a Llama-3.1-8B-sized model (256 tokens, 32 layers, 8 KV heads, head size 128,
bf16: 32 MiB in KV_2LTD). Every round times, interleaved, a plain ``copy_`` of the same
bytes and each connector's from_gpu (paged -> memory object) and to_gpu (memory object ->
paged), for random slots and for block-granular slots (whole blocks in random order,
slots in order inside a block: how vLLM allocates). The table shows the median over
the rounds after warm-up and each ratio to the plain copy's median. Every connector's
round trip is checked for exactness against ``index_select`` first.

Two clocks time every call: wall time (``time.perf_counter``) and, on ``--device cpu``,
the thread's CPU time (``time.thread_time``). On a machine shared with other work the
wall time also counts the time the thread waited for a core; the CPU time does not
(memory bandwidth shared with other processes slows both). A table is printed per clock,
then the targets for block-granular slots: this connector at least 0.7 of the plain copy
in both directions and ahead of every native connector measured.
"""

import argparse
import enum
import importlib.util
import os
import statistics
import sys
import time
import types
import zipfile

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py")
WHEELS = os.path.join(ROOT, "tests", "unit", "plugins", "module_utils", "lmcache_wheels.py")
NATIVE_PATH = "lmcache/v1/gpu_connector/hpu_connector.py"


def load_connector():
    spec = importlib.util.spec_from_file_location("hpu_kv_transfer", SRC)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def native_source(version):
    """Text of LMCache ``version``'s hpu_connector.py from its wheel, fetched and cached by the
    unit tests' lmcache_wheels helper (one cache, one download path)."""
    spec = importlib.util.spec_from_file_location("lmcache_wheels", WHEELS)
    wheels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheels)
    wheel = wheels.wheel_path(version)
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(NATIVE_PATH).decode()
        except KeyError:
            raise RuntimeError("LMCache %s has no %s (native HPU support starts at 0.4.3)" % (version, NATIVE_PATH))


class MemoryFormat(enum.Enum):
    """Stand-in for lmcache.v1.memory_management.MemoryFormat (the members used)."""

    UNDEFINED = 0
    KV_2LTD = 1
    KV_MLA_FMT = 5


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def load_native(version, device):
    """LMCache ``version``'s VLLMPagedMemHPUConnectorV2 class, loaded with stand-ins."""
    source = native_source(version)

    def unused(*_args, **_kwargs):
        raise AssertionError("layout discovery is bypassed in this benchmark")

    logger = types.SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None, debug=lambda *a, **k: None)
    gpu_utils = _module(
        "lmcache.v1.gpu_connector.utils",
        **{
            n: unused
            for n in (
                "discover_gpu_kv_format",
                "normalize_kv_and_discover_format",
                "get_block_size",
                "get_dtype",
                "get_head_size",
                "get_hidden_dim_size",
                "get_num_blocks",
                "get_num_heads",
                "get_num_layers",
                "get_page_buffer_size",
                "is_mla",
            )
        },
    )

    class GPUConnectorInterface:
        """Stand-in for LMCache's interface: the one method the native connector inherits
        (``permute_kv_caches_to_contiguous`` is a no-op on the contiguous caches here)."""

        def initialize_kvcaches_ptr(self, **kwargs):
            if "kvcaches" in kwargs:
                self.kvcaches = kwargs["kvcaches"]

    stand_ins = {
        "lmcache": _module("lmcache"),
        "lmcache.logging": _module("lmcache.logging", init_logger=lambda name: logger),
        "lmcache.utils": _module("lmcache.utils", EngineType=enum.Enum("EngineType", "VLLM SGLANG")),
        "lmcache.v1": _module("lmcache.v1"),
        "lmcache.v1.gpu_connector": _module("lmcache.v1.gpu_connector", GPUConnectorInterface=GPUConnectorInterface),
        "lmcache.v1.gpu_connector.utils": gpu_utils,
        "lmcache.v1.memory_management": _module(
            "lmcache.v1.memory_management", MemoryFormat=MemoryFormat, MemoryObj=object
        ),
        "lmcache.v1.metadata": _module("lmcache.v1.metadata", LMCacheMetadata=object),
        "lmcache.lmcache_native": _module("lmcache.lmcache_native", is_mla=unused),
    }
    if device.type != "hpu":
        core = _module("habana_frameworks.torch.core", mark_step=lambda: None)
        htorch = _module("habana_frameworks.torch", core=core)
        stand_ins.update(
            {
                "habana_frameworks": _module("habana_frameworks", torch=htorch),
                "habana_frameworks.torch": htorch,
                "habana_frameworks.torch.core": core,
            }
        )
    saved = {n: sys.modules.get(n) for n in stand_ins}
    sys.modules.update(stand_ins)
    try:
        mod = types.ModuleType("lmcache_%s_hpu_connector" % version.replace(".", "_"))
        mod.__file__ = "lmcache-%s/%s" % (version, NATIVE_PATH)
        exec(compile(source, mod.__file__, "exec"), mod.__dict__)  # pylint: disable=exec-used
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    return mod.VLLMPagedMemHPUConnectorV2


def native_instance(cls, caches, device, a):
    """A native connector with the attributes its _initialize_attributes would set."""
    conn = cls(use_gpu=False)
    conn.kvcaches = caches
    conn.device = device
    conn.num_layers = a.layers
    conn.num_blocks = a.num_blocks
    conn.block_size = a.block_size
    conn.page_buffer_size = a.num_blocks * a.block_size
    conn.num_heads = a.kv_heads
    conn.head_size = a.head_size
    conn.hidden_dim_size = a.kv_heads * a.head_size
    conn.use_mla = False
    conn.dtype = torch.bfloat16
    conn._attributes_initialized = True  # pylint: disable=protected-access
    return conn


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "hpu":
        torch.hpu.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "hpu"])
    p.add_argument("--runs", type=int, default=15, help="timed rounds (median; at least 10)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-size", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--num-blocks", type=int, default=32)
    p.add_argument(
        "--lmcache",
        default="0.4.3,0.4.5,0.5.6",
        help="LMCache releases whose native HPU connector to compare ('' for none)",
    )
    p.add_argument("--target", type=float, default=0.7, help="block-granular ratio to the plain copy to reach")
    a = p.parse_args(argv)
    if a.runs < 10:
        p.error("--runs must be at least 10")
    if a.tokens > a.num_blocks * a.block_size:
        p.error("--tokens exceeds num_blocks * block_size")
    if a.device == "hpu":
        import habana_frameworks.torch.core  # noqa: F401 pylint: disable=import-outside-toplevel
    torch.set_num_threads(1)
    dev = torch.device(a.device)
    if dev.type != "hpu" and not hasattr(torch, "hpu"):
        # LMCache's native connector ends with torch.hpu.synchronize()
        torch.hpu = types.SimpleNamespace(synchronize=lambda: sync(dev))
    kt = load_connector()
    dtype = torch.bfloat16
    width = a.kv_heads * a.head_size
    nslots = a.num_blocks * a.block_size
    g = torch.Generator().manual_seed(0)
    shape = (a.num_blocks, a.block_size, a.kv_heads, a.head_size)

    def new_caches():
        return [
            (torch.randn(shape, generator=g).to(dtype).to(dev), torch.randn(shape, generator=g).to(dtype).to(dev))
            for _layer in range(a.layers)
        ]

    caches, fresh = new_caches(), new_caches()
    blocks = torch.randperm(a.num_blocks, generator=g)
    mappings = [
        ("random", torch.randperm(nslots, generator=g)[: a.tokens].to(dev)),
        (
            "block",
            (blocks[:, None] * a.block_size + torch.arange(a.block_size)[None, :]).reshape(-1)[: a.tokens].to(dev),
        ),
    ]
    chunk_shape = (2, a.layers, a.tokens, width)

    def mem():
        return types.SimpleNamespace(
            tensor=torch.empty(chunk_shape, dtype=dtype, device=dev),
            metadata=types.SimpleNamespace(fmt=MemoryFormat.KV_2LTD),
        )

    # one connector per direction and peer, each on one cache (as in serving, where a
    # connector only ever sees the worker's cache): reading from ``caches`` and writing into
    # ``fresh`` with one instance would make this connector rebuild its per-cache plan on
    # every call
    peers = [("collection", [kt.VLLMPagedMemHPUConnectorV2(width, a.layers, device=dev) for _d in range(2)])]
    notes = []
    for version in [v.strip() for v in a.lmcache.split(",") if v.strip()]:
        try:
            cls = load_native(version, dev)
        except Exception as exc:  # pylint: disable=broad-except
            notes.append("LMCache %s native connector not measured: %s" % (version, exc))
            continue
        peers.append(("lmcache-%s native" % version, [native_instance(cls, kv, dev, a) for kv in (caches, fresh)]))

    def gathered(kv, sm):
        return torch.stack(
            [torch.stack([t.view(nslots, width).index_select(0, sm) for t in layer]) for layer in kv]
        ).transpose(0, 1)

    # exactness of every connector's round trip, on the same data
    for _name, sm in mappings:
        want = gathered(caches, sm)
        for pname, (c_from, c_to) in peers:
            m = mem()
            c_from.from_gpu(m, 0, a.tokens, kvcaches=caches, slot_mapping=sm)
            sync(dev)
            assert torch.equal(m.tensor, want), "%s from_gpu mismatch" % pname
            c_to.to_gpu(m, 0, a.tokens, kvcaches=fresh, slot_mapping=sm)
            sync(dev)
            assert torch.equal(gathered(fresh, sm), want), "%s to_gpu mismatch" % pname

    src = torch.randn(chunk_shape, generator=g).to(dtype).to(dev)
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    ops = [("copy", lambda: dst.copy_(src))]
    for mname, sm in mappings:
        for pname, (c_from, c_to) in peers:
            m = mem()

            def f_from(conn=c_from, m=m, sm=sm):
                conn.from_gpu(m, 0, a.tokens, kvcaches=caches, slot_mapping=sm)

            def f_to(conn=c_to, m=m, sm=sm):
                conn.to_gpu(m, 0, a.tokens, kvcaches=fresh, slot_mapping=sm)

            ops.append(((mname, pname, "from"), f_from))
            ops.append(((mname, pname, "to"), f_to))
    clocks = [("wall", time.perf_counter)]
    if dev.type == "cpu":  # a device's work is not on this thread's CPU clock
        clocks.append(("thread cpu", time.thread_time))
    times = {(c, key): [] for c, _clk in clocks for key, _fn in ops}
    for rnd in range(a.warmup + a.runs):
        for key, fn in ops:
            sync(dev)
            t0 = [clk() for _c, clk in clocks]
            fn()
            sync(dev)
            t1 = [clk() for _c, clk in clocks]
            if rnd >= a.warmup:
                for (c, _clk), x, y in zip(clocks, t0, t1):
                    times[(c, key)].append(y - x)
    med = {key: statistics.median(v) for key, v in times.items()}

    def gbs(seconds):
        return nbytes / seconds / 1e9

    print(
        "device=%s torch=%s threads=%d chunk=%d tokens x %d layers x %d hidden bf16 = %.1f MiB, "
        "block_size=%d, num_blocks=%d, median of %d rounds after %d warm-up, interleaved"
        % (
            dev,
            torch.__version__,
            torch.get_num_threads(),
            a.tokens,
            a.layers,
            width,
            nbytes / 2**20,
            a.block_size,
            a.num_blocks,
            a.runs,
            a.warmup,
        )
    )
    print("round trips: exact for every connector")
    ratios = {}
    for c, _clk in clocks:
        t_copy = med[(c, "copy")]
        print()
        print("clock: %s; plain copy_ (%s): %.2f GB/s (%.3f ms)" % (c, a.device, gbs(t_copy), t_copy * 1e3))
        print("%-7s %-22s %10s %6s %10s %6s" % ("slots", "connector", "from GB/s", "ratio", "to GB/s", "ratio"))
        for mname, _sm in mappings:
            for pname, _conn in peers:
                tf, tt = med[(c, (mname, pname, "from"))], med[(c, (mname, pname, "to"))]
                ratios[(c, mname, pname)] = (t_copy / tf, t_copy / tt)
                print(
                    "%-7s %-22s %10.2f %6.2f %10.2f %6.2f" % (mname, pname, gbs(tf), t_copy / tf, gbs(tt), t_copy / tt)
                )
    print()
    for c, _clk in clocks:
        own = ratios[(c, "block", "collection")]
        natives = [ratios[(c, "block", pname)] for pname, _conn in peers[1:]]
        reached = all(r >= a.target for r in own)
        ahead = all(own[d] > nat[d] for nat in natives for d in (0, 1))
        print(
            "targets (%s clock, block slots): from/to %.2f/%.2f of copy, >= %.2f: %s; ahead of %d native "
            "connector(s) in both directions: %s"
            % (c, own[0], own[1], a.target, "yes" if reached else "NO", len(natives), "yes" if ahead else "NO")
        )
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
