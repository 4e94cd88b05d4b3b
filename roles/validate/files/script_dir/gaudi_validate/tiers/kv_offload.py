# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kv_offload tier: host<->device copy bandwidth of chunk-sized pinned tensors (needs torch)."""

from __future__ import absolute_import, division, print_function

import time

from ..common import _import_habana, _import_torch, _round, chunk_bytes_for

PCIE_GEN5_X16_GBPS = 63.0


def _timed_copies(torch, dst, src, iterations, sync):
    for dummy in range(2):
        dst.copy_(src, non_blocking=True)
    sync()
    start = time.perf_counter()
    for dummy in range(iterations):
        dst.copy_(src, non_blocking=True)
    sync()
    return time.perf_counter() - start


def _no_sync():
    """Host copies are synchronous: nothing to wait for."""


def tier_kv_offload(args, ctx):
    device = ctx["device"]
    chunk = args.chunk_bytes or chunk_bytes_for(
        args.model_layers, args.model_kv_heads, args.model_head_dim, args.dtype_bytes, args.chunk_tokens, args.tp
    )
    figures = {
        "device": device,
        "chunk_bytes": chunk,
        "iterations": args.kv_iterations,
        "pcie_gen5_x16_limit_gbps": PCIE_GEN5_X16_GBPS,
    }
    if device in ("none",):
        return "skip", "no accelerator (%s); use --device cpu to time host copies" % (ctx["device_how"]), figures
    torch, reason = _import_torch()
    if torch is None:
        return "skip", reason, figures
    figures["torch_version"] = torch.__version__
    if device == "hpu":
        hthpu, reason = _import_habana(torch)
        if hthpu is None:
            return "skip", reason, figures
        target = torch.device("hpu")
        sync = hthpu.synchronize
    elif device in ("cuda", "rocm"):
        if not torch.cuda.is_available():
            return "skip", "torch.cuda.is_available() is false", figures
        target = torch.device("cuda")
        sync = torch.cuda.synchronize
    else:
        target = torch.device("cpu")
        sync = _no_sync
    host = torch.empty(chunk, dtype=torch.uint8)
    pinned = False
    if device != "cpu":
        try:
            host = host.pin_memory() if device != "hpu" else host.pin_memory(device="hpu")
            pinned = True
        except Exception as exc:  # pylint: disable=broad-except
            figures["pin_note"] = "pin_memory failed, pageable memory used: %s" % exc
    host.fill_(7)
    dev = torch.empty(chunk, dtype=torch.uint8, device=target)
    figures["pinned"] = pinned
    total = chunk * args.kv_iterations
    h2d_s = _timed_copies(torch, dev, host, args.kv_iterations, sync)
    d2h_s = _timed_copies(torch, host, dev, args.kv_iterations, sync)
    h2d = total / h2d_s / 1e9
    d2h = total / d2h_s / 1e9
    figures.update(
        {
            "h2d_gbps": _round(h2d),
            "d2h_gbps": _round(d2h),
            "h2d_fraction_of_limit": _round(h2d / PCIE_GEN5_X16_GBPS),
            "d2h_fraction_of_limit": _round(d2h / PCIE_GEN5_X16_GBPS),
        }
    )
    if device == "cpu":
        figures["note"] = "--device cpu: host memory copies, not a PCIe measurement"
    summary = "%s %.1f MiB %s: H2D %.2f GB/s, D2H %.2f GB/s (PCIe Gen5 x16: %.0f GB/s)" % (
        device,
        chunk / 1048576.0,
        "pinned" if pinned else "pageable",
        h2d,
        d2h,
        PCIE_GEN5_X16_GBPS,
    )
    if device == "cpu":
        summary += "; host copies only"
    low = [name for name, value in (("H2D", h2d), ("D2H", d2h)) if args.kv_min_gbps and value < args.kv_min_gbps]
    if low:
        return "fail", "%s below %.2f GB/s: %s" % ("/".join(low), args.kv_min_gbps, summary), figures
    return "pass", summary, figures
