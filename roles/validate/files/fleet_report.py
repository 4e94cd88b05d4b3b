"""Fleet validation report as Markdown and/or HTML, from the per-node JSON reports.

Reads the reports gaudi_validate writes (one JSON file per node, schema report.schema.json)
and writes, for people who would rather look than read:

- fleet-report.md: a table of per-node figures (overall, tier states, devices, storage
  throughput, host/device copy bandwidth, cold and warm time to first token, speedup, LMCache
  hit tokens) and a cold/warm TTFT bar per node (text bars);
- fleet-report.html: the same table and an inline SVG bar chart of cold vs warm TTFT per node.
  One self-contained file: no scripts, no external styles or fonts.

Standard library only, Python 3.6+. Usage:

    python3 fleet_report.py --out-dir DIR --format md --format html REPORT.json [REPORT.json ...]
    python3 fleet_report.py --out-dir DIR --format html --reports-dir DIR [--nodes a,b,c]

Prints a JSON object {"written": [paths], "nodes": n, "failed": [nodes], "missing": [nodes]}.
--stale a,b marks those nodes' reports as left over from an earlier run (overall STALE).
A node named in --nodes without a report in --reports-dir is listed as missing in the reports.
Exit status 0 when the files were written (whatever the nodes' verdicts), 2 on bad usage.
"""

from __future__ import print_function

import argparse
import html
import json
import os
import statistics
import sys

TIERS = ("devices", "stack", "storage", "kv_offload", "serving")
FORMATS = ("md", "html")
BAR_WIDTH_CHARS = 40


def _get(obj, *path):
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def node_row(report):
    """The figures of one report that the fleet report shows (None where absent)."""
    tiers = report.get("tiers") or {}
    warm = _get(tiers, "serving", "figures", "warm_ttft_s")
    warm = [w for w in warm if _num(w) is not None] if isinstance(warm, list) else []
    warm_median = _num(_get(tiers, "serving", "figures", "warm_ttft_median_s"))
    if warm_median is None and warm:
        warm_median = statistics.median(warm)
    cold = _num(_get(tiers, "serving", "figures", "cold_ttft_s"))
    speedup = _num(_get(tiers, "serving", "figures", "speedup"))
    if speedup is None and cold is not None and warm_median:
        speedup = cold / warm_median
    return {
        "node": str(report.get("node") or report.get("hostname") or "?"),
        "overall": report.get("overall") or "?",
        "device": report.get("device") or "?",
        "started_at": report.get("started_at") or "",
        "run_id": report.get("run_id"),
        "tiers": {t: (_get(tiers, t, "status") or "-") for t in TIERS},
        "reasons": {t: _get(tiers, t, "reason") for t in TIERS if _get(tiers, t, "status") == "fail"},
        "device_count": _num(_get(tiers, "devices", "figures", "count")),
        "write_gbps": _num(_get(tiers, "storage", "figures", "io", "write_gbps")),
        "read_gbps": _num(_get(tiers, "storage", "figures", "io", "read_gbps")),
        "h2d_gbps": _num(_get(tiers, "kv_offload", "figures", "h2d_gbps")),
        "d2h_gbps": _num(_get(tiers, "kv_offload", "figures", "d2h_gbps")),
        "cold_ttft_s": cold,
        "warm_ttft_s": warm,
        "warm_ttft_median_s": warm_median,
        "speedup": speedup,
        "speedup_threshold": _num(_get(tiers, "serving", "figures", "speedup_threshold")),
        "lmcache_hit_tokens": _num(_get(tiers, "serving", "figures", "lmcache_hits", "delta")),
    }


def fmt(value, digits=2, unit=""):
    if value is None:
        return "-"
    if isinstance(value, int):
        return "%d%s" % (value, unit)
    return "%.*f%s" % (digits, value, unit)


COLUMNS = (
    ("Node", lambda r: r["node"]),
    ("Overall", lambda r: r["overall"].upper()),
    ("Device", lambda r: r["device"]),
    ("Devices", lambda r: fmt(r["device_count"])),
    ("devices", lambda r: r["tiers"]["devices"]),
    ("stack", lambda r: r["tiers"]["stack"]),
    ("storage", lambda r: r["tiers"]["storage"]),
    ("kv_offload", lambda r: r["tiers"]["kv_offload"]),
    ("serving", lambda r: r["tiers"]["serving"]),
    ("Write GB/s", lambda r: fmt(r["write_gbps"])),
    ("Read GB/s", lambda r: fmt(r["read_gbps"])),
    ("H2D GB/s", lambda r: fmt(r["h2d_gbps"])),
    ("D2H GB/s", lambda r: fmt(r["d2h_gbps"])),
    ("Cold TTFT s", lambda r: fmt(r["cold_ttft_s"], 3)),
    ("Warm TTFT s (median)", lambda r: fmt(r["warm_ttft_median_s"], 3)),
    ("Speedup", lambda r: fmt(r["speedup"], 1, "x")),
    ("LMCache hit tokens", lambda r: fmt(r["lmcache_hit_tokens"], 0)),
    ("Started", lambda r: r["started_at"]),
)


def summary_line(rows, missing):
    failed = [r["node"] for r in rows if r["overall"] == "fail"]
    stale = [r["node"] for r in rows if r["overall"] == "stale"]
    text = "%d node(s) reported, %d failed" % (len(rows), len(failed))
    if failed:
        text += " (%s)" % ", ".join(failed)
    if stale:
        text += ", %d STALE (report from an earlier run: %s)" % (len(stale), ", ".join(stale))
    text += ", %d without a report" % len(missing)
    if missing:
        text += " (%s)" % ", ".join(missing)
    return text


def ttft_scale(rows):
    values = [v for r in rows for v in (r["cold_ttft_s"], r["warm_ttft_median_s"]) if v is not None]
    return max(values) if values else 0.0


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _text_bar(value, scale):
    if value is None or scale <= 0:
        return "(no figure)"
    return "#" * max(1, int(round(BAR_WIDTH_CHARS * value / scale))) if value > 0 else "|"


def render_markdown(rows, missing, title):
    out = ["# %s" % title, "", summary_line(rows, missing), ""]
    out.append("| " + " | ".join(c[0] for c in COLUMNS) + " |")
    out.append("|" + "|".join(" --- " for dummy in COLUMNS) + "|")
    for r in rows:
        out.append("| " + " | ".join(_md_cell(c[1](r)) for c in COLUMNS) + " |")
    for node in missing:
        out.append("| " + _md_cell(node) + " | NO REPORT |" + " |" * (len(COLUMNS) - 2))
    failures = [(r["node"], t, reason) for r in rows for t, reason in sorted(r["reasons"].items())]
    if failures:
        out += ["", "## Failed tiers", ""]
        out += ["- %s, %s: %s" % (n, t, _md_cell(reason or "")) for n, t, reason in failures]
    scale = ttft_scale(rows)
    out += ["", "## Time to first token, cold vs warm", ""]
    if scale <= 0:
        out.append("No node reported a time to first token.")
    else:
        out.append("Bars scaled to the longest TTFT of the fleet (%s s)." % fmt(scale, 3))
        out += ["", "```"]
        width = max(len(r["node"]) for r in rows)
        for r in rows:
            out.append(
                "%-*s cold %-*s %s s"
                % (width, r["node"], BAR_WIDTH_CHARS, _text_bar(r["cold_ttft_s"], scale), fmt(r["cold_ttft_s"], 3))
            )
            out.append(
                "%-*s warm %-*s %s s  speedup %s"
                % (
                    width,
                    "",
                    BAR_WIDTH_CHARS,
                    _text_bar(r["warm_ttft_median_s"], scale),
                    fmt(r["warm_ttft_median_s"], 3),
                    fmt(r["speedup"], 1, "x"),
                )
            )
        out.append("```")
    return "\n".join(out) + "\n"


def render_svg(rows):
    """Inline SVG: one pair of horizontal bars (cold, warm median) per node."""
    scale = ttft_scale(rows)
    label_w, bar_w, bar_h, gap, top = 180, 420, 14, 10, 24
    row_h = 2 * bar_h + gap
    height = top + row_h * max(1, len(rows)) + 10
    esc = html.escape
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%d" height="%d" viewBox="0 0 %d %d">'
        % (label_w + bar_w + 120, height, label_w + bar_w + 120, height),
        "<title>Cold vs warm time to first token per node</title>",
        '<rect x="%d" y="4" width="12" height="12" class="cold"/><text x="%d" y="15">cold</text>'
        % (label_w, label_w + 16),
        '<rect x="%d" y="4" width="12" height="12" class="warm"/><text x="%d" y="15">warm (median)</text>'
        % (label_w + 70, label_w + 86),
    ]
    for i, r in enumerate(rows):
        y = top + i * row_h
        parts.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (label_w - 8, y + bar_h + 4, esc(r["node"])))
        for j, (key, cls) in enumerate((("cold_ttft_s", "cold"), ("warm_ttft_median_s", "warm"))):
            value = r[key]
            by = y + j * bar_h
            if value is None or scale <= 0:
                parts.append('<text x="%d" y="%d" class="none">no figure</text>' % (label_w, by + bar_h - 3))
                continue
            w = max(1, int(round(bar_w * value / scale)))
            parts.append(
                '<rect x="%d" y="%d" width="%d" height="%d" class="%s"><title>%s %s: %s s</title></rect>'
                % (label_w, by, w, bar_h - 2, cls, esc(r["node"]), cls, fmt(value, 3))
            )
            parts.append('<text x="%d" y="%d">%s s</text>' % (label_w + w + 6, by + bar_h - 3, fmt(value, 3)))
    parts.append("</svg>")
    return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.pass { background: #dff0d8; } td.fail { background: #f2dede; } td.skip { color: #888; }
tr.missing td { background: #fcf8e3; }
svg text { font-size: 12px; font-family: sans-serif; }
svg rect.cold { fill: #d9534f; } svg rect.warm { fill: #5cb85c; } svg text.none { fill: #888; }
"""


def render_html(rows, missing, title):
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>%s</title>' % esc(title),
        "<style>%s</style></head><body>" % STYLE,
        "<h1>%s</h1>" % esc(title),
        "<p>%s</p>" % esc(summary_line(rows, missing)),
        "<table><thead><tr>" + "".join("<th>%s</th>" % esc(c[0]) for c in COLUMNS) + "</tr></thead><tbody>",
    ]
    for r in rows:
        cells = []
        for name, get in COLUMNS:
            value = get(r)
            cls = value.lower() if name in TIERS + ("Overall",) and value.lower() in ("pass", "fail", "skip") else ""
            cells.append('<td class="%s">%s</td>' % (cls, esc(str(value))) if cls else "<td>%s</td>" % esc(str(value)))
        out.append("<tr>" + "".join(cells) + "</tr>")
    for node in missing:
        out.append(
            '<tr class="missing"><td>%s</td><td colspan="%d">no report</td></tr>' % (esc(node), len(COLUMNS) - 1)
        )
    out.append("</tbody></table>")
    failures = [(r["node"], t, reason) for r in rows for t, reason in sorted(r["reasons"].items())]
    if failures:
        out.append("<h2>Failed tiers</h2><ul>")
        out += ["<li>%s, %s: %s</li>" % (esc(n), esc(t), esc(reason or "")) for n, t, reason in failures]
        out.append("</ul>")
    out.append("<h2>Time to first token, cold vs warm</h2>")
    if ttft_scale(rows) <= 0:
        out.append("<p>No node reported a time to first token.</p>")
    else:
        out.append(render_svg(rows))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def load_reports(paths):
    reports = []
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("%s: not a JSON object" % path)
        reports.append(data)
    return reports


def build(reports, formats, out_dir, title="Fleet validation report", missing=(), stale=()):
    """Write the reports in FORMATS under OUT_DIR; return the result object.

    Nodes in STALE (a report left over from an earlier run) show STALE as their overall state.
    """
    rows = sorted((node_row(r) for r in reports), key=lambda r: r["node"])
    for r in rows:
        if r["node"] in stale:
            r["overall"] = "stale"
    missing = sorted(set(missing) - set(r["node"] for r in rows))
    written = []
    for form in formats:
        text = render_markdown(rows, missing, title) if form == "md" else render_html(rows, missing, title)
        path = os.path.join(out_dir, "fleet-report." + form)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        written.append(path)
    return {
        "written": written,
        "nodes": len(rows),
        "failed": [r["node"] for r in rows if r["overall"] == "fail"],
        "missing": missing,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("reports", nargs="*", help="per-node JSON reports")
    parser.add_argument("--reports-dir", help="read <node>.json for every node of --nodes (or every *.json) here")
    parser.add_argument("--nodes", default="", help="comma-separated node names (with --reports-dir)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--format", action="append", dest="formats", choices=FORMATS, required=True)
    parser.add_argument("--title", default="Fleet validation report")
    parser.add_argument("--stale", default="", help="comma-separated nodes whose report is from an earlier run")
    args = parser.parse_args(argv)
    paths, missing = list(args.reports), []
    if args.reports_dir:
        nodes = [n for n in args.nodes.split(",") if n]
        if nodes:
            for node in nodes:
                path = os.path.join(args.reports_dir, node + ".json")
                (paths if os.path.isfile(path) else missing).append(path if os.path.isfile(path) else node)
        else:
            paths += sorted(
                os.path.join(args.reports_dir, f) for f in os.listdir(args.reports_dir) if f.endswith(".json")
            )
    if not paths and not missing:
        parser.error("no reports: give report files or --reports-dir")
    if not os.path.isdir(args.out_dir):
        parser.error("--out-dir %s is not a directory" % args.out_dir)
    try:
        reports = load_reports(paths)
    except (OSError, ValueError) as exc:
        sys.stderr.write("fleet_report: %s\n" % exc)
        return 2
    stale = [n for n in args.stale.split(",") if n]
    result = build(reports, list(dict.fromkeys(args.formats)), args.out_dir, args.title, missing, stale)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
