"""Bandwidth check of the pure-PyTorch HPU KV connector (a benchmark, not a timed test).

    python -m tests.bench.hpu_kv_bench --device cpu|cuda|hpu [--iters N]

Runs from the repository root without the collection being installed: the
connector file (plugins/module_utils/hpu_kv_transfer.py) is loaded by path.
It round-trips one LMCache chunk of a Llama-3.1-8B-sized model (256 tokens,
32 layers, 8 KV heads, head size 128, bf16: 32 MiB in KV_2LTD format) between
paged K/V caches on the device and a memory object on the same device, checks
the round trip is exact, and prints GB/s of from_gpu (paged -> chunk) and
to_gpu (chunk -> paged) next to a plain ``tensor.copy_`` of the same bytes on
the same device, with the ratios.
"""

import argparse
import importlib.util
import os
import time
import types

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py")


def load_connector():
    spec = importlib.util.spec_from_file_location("hpu_kv_transfer", SRC)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Fmt:
    name = "KV_2LTD"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "hpu":
        torch.hpu.synchronize()


def timeit(fn, device, iters):
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _iteration in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "hpu"])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-size", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--num-blocks", type=int, default=64)
    a = p.parse_args(argv)
    if a.device == "hpu":
        import habana_frameworks.torch.core  # noqa: F401  (registers torch.hpu)
    dev = torch.device(a.device)
    kt = load_connector()
    dtype = torch.bfloat16
    width = a.kv_heads * a.head_size
    slots_total = a.num_blocks * a.block_size
    if a.tokens > slots_total:
        p.error("--tokens exceeds num_blocks * block_size")
    g = torch.Generator().manual_seed(0)
    shape = (a.num_blocks, a.block_size, a.kv_heads, a.head_size)
    caches = [(torch.randn(shape, generator=g).to(dtype).to(dev),
               torch.randn(shape, generator=g).to(dtype).to(dev)) for _layer in range(a.layers)]
    slot_mapping = torch.randperm(slots_total, generator=g)[: a.tokens].to(dev)
    conn = kt.VLLMPagedMemHPUConnectorV2(width, a.layers, device=dev)
    mem = types.SimpleNamespace(
        tensor=torch.empty(tuple(conn.get_shape(a.tokens)), dtype=dtype, device=dev),
        metadata=types.SimpleNamespace(fmt=_Fmt()))
    nbytes = mem.tensor.numel() * mem.tensor.element_size()

    def from_gpu():
        conn.from_gpu(mem, 0, a.tokens, kvcaches=caches, slot_mapping=slot_mapping)

    fresh = [(torch.zeros_like(k), torch.zeros_like(v)) for k, v in caches]

    def to_gpu():
        conn.to_gpu(mem, 0, a.tokens, kvcaches=fresh, slot_mapping=slot_mapping)

    # correctness of the round trip on this device
    from_gpu()
    to_gpu()
    sync(dev)
    for (k, v), (fk, fv) in zip(caches, fresh):
        for x, y in ((k, fk), (v, fv)):
            xs = x.view(slots_total, width).index_select(0, slot_mapping)
            ys = y.view(slots_total, width).index_select(0, slot_mapping)
            assert torch.equal(xs, ys), "round trip mismatch"

    src = torch.randn(mem.tensor.shape, generator=g).to(dtype).to(dev)
    dst = torch.empty_like(src)
    t_from = timeit(from_gpu, dev, a.iters)
    t_to = timeit(to_gpu, dev, a.iters)
    t_copy = timeit(lambda: dst.copy_(src), dev, a.iters)

    def gbs(seconds):
        return nbytes / seconds / 1e9

    print("device=%s torch=%s chunk=%d tokens x %d layers x %d hidden bf16 = %.1f MiB, iters=%d"
          % (dev, torch.__version__, a.tokens, a.layers, width, nbytes / 2**20, a.iters))
    print("round trip: exact")
    print("%-22s %8.2f GB/s  (%.3f ms)" % ("tensor.copy_", gbs(t_copy), t_copy * 1e3))
    print("%-22s %8.2f GB/s  (%.3f ms)  ratio to copy_ %.2f"
          % ("from_gpu (paged->obj)", gbs(t_from), t_from * 1e3, t_copy / t_from))
    print("%-22s %8.2f GB/s  (%.3f ms)  ratio to copy_ %.2f"
          % ("to_gpu (obj->paged)", gbs(t_to), t_to * 1e3, t_copy / t_to))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
