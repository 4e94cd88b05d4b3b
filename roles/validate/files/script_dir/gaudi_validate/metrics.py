# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""KV hit and LMCache activity counters from the endpoint's Prometheus /metrics."""

from __future__ import absolute_import, division, print_function

import re
import time

from .http import _describe_error, http_get

METRIC_HIT_TOKENS = ("lmcache:num_hit_tokens_total", "lmcache:num_hit_tokens")
# Tokens vLLM loaded through its KV connector (LMCache) instead of computing them: counted by vLLM
# itself at once, where LMCache's own counters are flushed every 10 s (lmcache/observability.py).
METRIC_EXTERNAL_HITS = ("vllm:external_prefix_cache_hits_total", "vllm:external_prefix_cache_hits")
# LMCache's engine counts every lookup, store and retrieve; in its degraded (recompute) mode it
# returns before counting anything (lmcache/v1/cache_engine.py, 0.5.6).
METRIC_LMCACHE_ACTIVITY = (
    "lmcache:num_lookup_requests_total",
    "lmcache:num_store_requests_total",
    "lmcache:num_retrieve_requests_total",
)


def parse_metric_sum(text, names=METRIC_HIT_TOKENS):
    """Sum of all samples of the first metric name in `names` found in Prometheus text."""
    for name in names:
        total, seen = 0.0, False
        pattern = re.compile(r"^%s(?:\{[^}]*\})?\s+([-+0-9.eEinfINFNa]+)" % re.escape(name))
        for line in text.splitlines():
            match = pattern.match(line)
            if match:
                try:
                    total += float(match.group(1))
                    seen = True
                except ValueError:
                    continue
        if seen:
            return name, total
    return None, None


def scrape_counters(args):
    """The hit and LMCache activity counters of /metrics: {'exposed', 'values' or 'reason'}."""
    try:
        dummy, text = http_get(args, "/metrics", args.request_timeout)
    except Exception as exc:  # pylint: disable=broad-except
        return {"exposed": False, "reason": "/metrics: %s" % _describe_error(exc)}
    values = {}
    for names in (METRIC_HIT_TOKENS, METRIC_EXTERNAL_HITS) + tuple((n,) for n in METRIC_LMCACHE_ACTIVITY):
        name, value = parse_metric_sum(text, names)
        if name is not None:
            values[name] = value
    return {"exposed": True, "values": values}


def _delta(before, after, names):
    """(name, before, after) of the first of `names` present in both scrapes, else None."""
    for name in names:
        if name in before.get("values", {}) and name in after.get("values", {}):
            return name, before["values"][name], after["values"][name]
    return None


def hit_figures(before, after):
    """Hit tokens between two scrapes: vLLM's connector counter where it is exported, else LMCache's.

    vLLM's vllm:external_prefix_cache_hits counts the tokens vLLM loaded through the connector
    when it loads them. LMCache's own counter needs PROMETHEUS_MULTIPROC_DIR to be exported at all
    and lags (flushed every 10 s), so an earlier request's hits can land in a later window.
    """
    if not (before.get("exposed") and after.get("exposed")):
        return {"exposed": False, "reason": after.get("reason") or before.get("reason")}
    # LMCache's first, vLLM's last: the one used is the last found.
    found = [d for d in (_delta(before, after, METRIC_HIT_TOKENS), _delta(before, after, METRIC_EXTERNAL_HITS)) if d]
    if not found:
        return {
            "exposed": False,
            "reason": "/metrics has neither lmcache:num_hit_tokens nor vllm:external_prefix_cache_hits",
        }
    name, first, last = found[-1]
    return {
        "exposed": True,
        "metric": name,
        "before": first,
        "after": last,
        "delta": last - first,
        "counters": dict((d[0], d[2] - d[1]) for d in found),
    }


def lmcache_activity(before, after):
    """Lookups + stores + retrieves LMCache counted between two scrapes (None: not exported)."""
    found = [d for d in (_delta(before, after, (n,)) for n in METRIC_LMCACHE_ACTIVITY) if d]
    if not found:
        return None
    return sum(d[2] - d[1] for d in found)


def settle_counters(args, before, after):
    """Scrape again until LMCache's lagging counters show the requests (or --lmcache-metrics-wait)."""
    deadline = time.monotonic() + args.lmcache_metrics_wait
    while lmcache_activity(before, after) == 0 and time.monotonic() < deadline:
        time.sleep(1.0)
        again = scrape_counters(args)
        if not again.get("exposed"):
            break
        after = again
    return after
