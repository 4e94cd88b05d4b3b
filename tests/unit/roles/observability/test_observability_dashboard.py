"""The shipped Grafana dashboard, checked the way Grafana's schema would (no Grafana binary
or JSON schema package is available offline): valid JSON, a schemaVersion Grafana migrates
from, unique panel ids inside a 24-column grid, every panel on the ${datasource} variable, and
every query reading only series the role records (or up/ALERTS)."""

import json
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ROLE = os.path.join(ROOT, "roles", "observability")
DASHBOARD = os.path.join(ROLE, "files", "grafana", "gaudi_vllm_lmcache_cache.json")
RULES = os.path.join(ROLE, "files", "rules", "lmcache_recording.rules.yml")
KEYWORDS = {"sum", "by", "rate", "and", "or", "on", "unless", "without", "le", "inf"}


def recorded():
    with open(RULES) as handle:
        groups = yaml.safe_load(handle)["groups"]
    return {r["record"] for g in groups for r in g["rules"]}


def series_in(expr):
    expr = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"', "", expr)
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', "", expr)
    return {m for m in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if m.lower() not in KEYWORDS}


def test_dashboard_structure():
    with open(DASHBOARD) as handle:
        dash = json.load(handle)
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["uid"] and len(dash["uid"]) <= 40
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["node"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    known = recorded() | {"up", "ALERTS"}
    queries = 0
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            unknown = series_in(target["expr"]) - known
            assert not unknown, (panel["title"], unknown)
            queries += 1
    assert queries >= 10


def test_every_recorded_family_is_on_the_dashboard():
    with open(DASHBOARD) as handle:
        text = handle.read()
    for name in (
        "lmcache_hit_rate:ratio_rate5m",
        "lmcache_hit_tokens:rate5m",
        "vllm_time_to_first_token_seconds:p99_rate5m",
        "lmcache_remote_read_bytes:rate5m",
    ):
        assert "node:" + name in text and "fleet:" + name in text, name


def test_series_filter_sees_unknown_names():
    assert series_in('sum by (node) (rate(vllm:bogus_total{node=~"$node"}[5m]))') == {"vllm:bogus_total"}
