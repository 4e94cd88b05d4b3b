# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/validate/files/fleet_report.py: Markdown and HTML fleet reports from per-node JSON
reports (figures, cold/warm TTFT bars, failed, missing and stale nodes) and its command line."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

SCRIPT = os.path.join(lib.ROOT, "roles", "validate", "files", "fleet_report.py")
fr = lib.load(SCRIPT, "fleet_report_under_test")


def tier(status="pass", reason="ok", figures=None):
    return {"status": status, "reason": reason, "required": True, "duration_s": 0.1, "figures": figures or {}}


def report(node, cold=2.0, warm=(0.4, 0.2), overall="pass", serving_status="pass", **kw):
    serving = {"cold_ttft_s": cold, "warm_ttft_s": list(warm), "lmcache_hits": {"exposed": True, "delta": 4096}}
    if warm:
        serving["warm_ttft_median_s"] = sorted(warm)[len(warm) // 2] if len(warm) % 2 else sum(warm) / len(warm)
        serving["speedup"] = cold / serving["warm_ttft_median_s"]
    if cold is None:
        serving = {}
    tiers = {
        "devices": tier(figures={"count": 8}),
        "stack": tier(),
        "storage": tier(figures={"io": {"write_gbps": 1.25, "read_gbps": 3.5, "bytes_total": 1, "integrity_ok": True}}),
        "kv_offload": tier("skip", "not asked for"),
        "serving": tier(serving_status, kw.get("serving_reason", "ok"), serving),
    }
    return {
        "node": node,
        "overall": overall,
        "device": "hpu",
        "started_at": "2026-01-01T00:00:00Z",
        "run_id": "r1",
        "tiers": tiers,
    }


class _Collect(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.stack, self.cells, self.rects, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "rect", "br"):
            self.stack.append(tag)
        if tag == "rect":
            self.rects.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "rect":
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unbalanced </%s> (open: %s)" % (tag, self.stack[-3:]))
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)


def test_row_figures_from_a_report():
    row = fr.node_row(report("gaudi-01"))
    assert row["node"] == "gaudi-01"
    assert row["device_count"] == 8
    assert row["write_gbps"] == 1.25 and row["read_gbps"] == 3.5
    assert row["cold_ttft_s"] == 2.0
    assert row["warm_ttft_median_s"] == pytest.approx(0.3)
    assert row["speedup"] == pytest.approx(2.0 / 0.3)
    assert row["lmcache_hit_tokens"] == 4096
    assert row["tiers"]["kv_offload"] == "skip"


def test_row_tolerates_missing_tiers_and_figures():
    row = fr.node_row(
        {"node": "bare", "overall": "fail", "tiers": {"serving": {"status": "fail", "reason": "no endpoint"}}}
    )
    assert row["cold_ttft_s"] is None and row["warm_ttft_median_s"] is None and row["speedup"] is None
    assert row["tiers"]["devices"] == "-"
    assert row["reasons"] == {"serving": "no endpoint"}


def test_warm_median_and_speedup_derived_when_absent():
    rep = report("n", cold=1.0, warm=(0.5, 0.1, 0.2))
    del rep["tiers"]["serving"]["figures"]["warm_ttft_median_s"]
    del rep["tiers"]["serving"]["figures"]["speedup"]
    row = fr.node_row(rep)
    assert row["warm_ttft_median_s"] == 0.2
    assert row["speedup"] == pytest.approx(5.0)


def test_markdown_table_bars_and_summary(tmp_path):
    reports = [report("gaudi-02", cold=1.0, warm=(0.5,)), report("gaudi-01", cold=2.0, warm=(0.2,))]
    out = fr.build(reports, ["md"], str(tmp_path), missing=["gaudi-03"])
    assert out == {"written": [str(tmp_path / "fleet-report.md")], "nodes": 2, "failed": [], "missing": ["gaudi-03"]}
    text = (tmp_path / "fleet-report.md").read_text()
    lines = text.splitlines()
    header = [ln for ln in lines if ln.startswith("| Node |")][0]
    ncols = header.count("|")
    table = [ln for ln in lines if ln.startswith("| gaudi-")]
    # sorted by node, one row each, every row as wide as the header
    assert [ln.split("|")[1].strip() for ln in table] == ["gaudi-01", "gaudi-02", "gaudi-03"]
    assert all(ln.count("|") == ncols for ln in table), table
    assert "| gaudi-03 | NO REPORT |" in text
    assert "2 node(s) reported, 0 failed, 1 without a report (gaudi-03)" in text
    assert "| 2.000 | 0.200 | 10.0x | 4096 |" in text
    # text bars: the longest TTFT of the fleet (gaudi-01 cold, 2.0 s) is the full width
    bars = {
        ln.split()[0] + ":" + ln.split()[1] if not ln.startswith(" ") else "warm": ln for ln in lines if " cold #" in ln
    }
    assert any(ln.startswith("gaudi-01 cold " + "#" * fr.BAR_WIDTH_CHARS + " ") for ln in lines), bars
    assert any(ln.startswith("gaudi-02 cold " + "#" * (fr.BAR_WIDTH_CHARS // 2) + " ") for ln in lines)
    warm01 = [ln for ln in lines if "warm" in ln and "speedup 10.0x" in ln]
    assert warm01 and "#" * 4 in warm01[0] and "#" * 5 not in warm01[0]


def test_markdown_lists_failed_tiers_and_escapes_pipes(tmp_path):
    rep = report("gaudi-01", overall="fail", serving_status="fail", serving_reason="warm | cold ratio 1.2x < 5x")
    fr.build([rep], ["md"], str(tmp_path))
    text = (tmp_path / "fleet-report.md").read_text()
    assert "1 node(s) reported, 1 failed (gaudi-01)" in text
    assert "## Failed tiers" in text
    assert "- gaudi-01, serving: warm \\| cold ratio 1.2x < 5x" in text
    assert "| gaudi-01 | FAIL |" in text


def test_no_ttft_anywhere(tmp_path):
    fr.build([report("a", cold=None, warm=())], ["md", "html"], str(tmp_path))
    assert "No node reported a time to first token." in (tmp_path / "fleet-report.md").read_text()
    html_text = (tmp_path / "fleet-report.html").read_text()
    assert "No node reported a time to first token." in html_text and "<svg" not in html_text


def test_html_is_balanced_self_contained_and_has_bars(tmp_path):
    reports = [
        report("gaudi-01", cold=2.0, warm=(0.2,)),
        report("<evil&node>", cold=1.0, warm=(1.0,), overall="fail", serving_status="fail"),
    ]
    fr.build(reports, ["html"], str(tmp_path), missing=["gaudi-09"], stale=["gaudi-01"])
    text = (tmp_path / "fleet-report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    parser = _Collect()
    parser.feed(text)
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    # nothing fetched from elsewhere
    for needle in ("<script", "http://", "https://", "<link", "@import", "src="):
        assert needle not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), needle
    # node names are escaped, never markup
    assert "<evil&node>" not in text and "&lt;evil&amp;node&gt;" in text
    assert 'class="fail">FAIL<' in text and "STALE" in text and "no report" in text
    # the SVG parses as XML; two bars per node, the fleet's longest TTFT is the widest
    svg = text[text.index("<svg") : text.index("</svg>") + 6]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    widths = {r.find(ns + "title").text: int(r.get("width")) for r in bars}
    assert len(bars) == 4
    assert widths["gaudi-01 cold: 2.000 s"] == 420
    assert widths["gaudi-01 warm: 0.200 s"] == 42
    assert widths["<evil&node> cold: 1.000 s"] == 210


def test_stale_marked(tmp_path):
    fr.build([report("a"), report("b")], ["md"], str(tmp_path), stale=["b"])
    text = (tmp_path / "fleet-report.md").read_text()
    assert "| b | STALE |" in text and "1 STALE (report from an earlier run: b)" in text


def _cli(*args):
    res = subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True, check=False)
    return res.returncode, res.stdout, res.stderr


def test_cli_reports_dir_with_nodes(tmp_path):
    rdir = tmp_path / "validation"
    rdir.mkdir()
    (rdir / "a.json").write_text(json.dumps(report("a")))
    (rdir / "b.json").write_text(json.dumps(report("b", overall="fail")))
    rc, out, err = _cli(
        "--out-dir", str(rdir), "--format", "md", "--format", "html", "--reports-dir", str(rdir), "--nodes", "a,b,c"
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["nodes"] == 2 and result["failed"] == ["b"] and result["missing"] == ["c"]
    assert sorted(os.path.basename(p) for p in result["written"]) == ["fleet-report.html", "fleet-report.md"]
    assert not list(rdir.glob("*.tmp"))


def test_cli_reads_every_json_without_nodes(tmp_path):
    for n in ("x", "y"):
        (tmp_path / (n + ".json")).write_text(json.dumps(report(n)))
    rc, out, err = _cli("--out-dir", str(tmp_path), "--format", "md", "--reports-dir", str(tmp_path))
    assert rc == 0, err
    assert json.loads(out)["nodes"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out-dir", "/nonexistent-dir-fleet", "--format", "md", "x.json"], "is not a directory"),
        (["--out-dir", ".", "--format", "pdf", "x.json"], "invalid choice: 'pdf'"),
        (["--out-dir", "."], "--format"),
        (["--out-dir", ".", "--format", "md"], "no reports"),
    ],
)
def test_cli_bad_usage(args, message):
    rc, _out, err = _cli(*args)
    assert rc == 2 and message in err, err


def test_cli_unreadable_report(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    rc, _out, err = _cli("--out-dir", str(tmp_path), "--format", "md", str(tmp_path / "bad.json"))
    assert rc == 2 and "not a JSON object" in err
