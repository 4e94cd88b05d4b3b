# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the selected tiers and builds the JSON report (report.schema.json) and its table."""

from __future__ import absolute_import, division, print_function

import socket
import sys
import time

from . import __version__
from .common import SCHEMA_VERSION, TIERS, TierError, _now_iso, _round
from .tiers.devices import resolve_device, tier_devices
from .tiers.kv_offload import tier_kv_offload
from .tiers.serving import tier_serving
from .tiers.stack import tier_stack
from .tiers.storage import tier_storage

TIER_FUNCS = {
    "devices": tier_devices,
    "stack": tier_stack,
    "storage": tier_storage,
    "kv_offload": tier_kv_offload,
    "serving": tier_serving,
}


def run_tier(name, args, ctx):
    start = time.monotonic()
    try:
        status, reason, figures = TIER_FUNCS[name](args, ctx)
    except TierError as exc:
        status, reason, figures = "fail", str(exc), {}
    except Exception as exc:  # pylint: disable=broad-except
        status, reason, figures = "fail", "internal error: %s: %s" % (type(exc).__name__, exc), {}
    return {
        "status": status,
        "reason": reason,
        "required": name in args.required,
        "duration_s": _round(time.monotonic() - start),
        "figures": figures,
    }


def build_report(args):
    started = _now_iso()
    t0 = time.monotonic()
    device, how = resolve_device(args)
    ctx = {"device": device, "device_how": how}
    tiers = {}
    for name in TIERS:
        if name in args.tiers:
            tiers[name] = run_tier(name, args, ctx)
        else:
            tiers[name] = {
                "status": "skip",
                "reason": "not selected with --tiers",
                "required": name in args.required,
                "duration_s": 0.0,
                "figures": {},
            }
    failed_required = [n for n in TIERS if tiers[n]["required"] and tiers[n]["status"] == "fail"]
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "gaudi_validate",
        "tool_version": __version__,
        "node": args.node or socket.gethostname(),
        "hostname": socket.gethostname(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "device": device,
        "started_at": started,
        "run_id": args.run_id,
        "duration_s": _round(time.monotonic() - t0),
        "required_tiers": [n for n in TIERS if n in args.required],
        "failed_required_tiers": failed_required,
        "overall": "fail" if failed_required else "pass",
        "tiers": tiers,
    }


def format_table(report):
    rows = [("TIER", "STATUS", "REQ", "SECONDS", "DETAIL")]
    for name in TIERS:
        tier = report["tiers"][name]
        rows.append(
            (
                name,
                tier["status"],
                "yes" if tier["required"] else "no",
                "%.2f" % tier["duration_s"],
                tier["reason"] or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["%s  %s" % ("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])), row[4]) for row in rows]
    lines.append("node %s (%s): %s" % (report["node"], report["device"], report["overall"].upper()))
    return "\n".join(lines)
