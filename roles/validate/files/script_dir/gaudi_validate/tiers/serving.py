# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""serving tier: health, models, cold vs warm streamed time to first token of one long prompt
sent again, the same text both times, KV hit tokens, LMCache's degraded (recompute) mode, the
Mode B cross-node hit, and optionally a restart."""

from __future__ import absolute_import, division, print_function

import json
import shlex
import statistics
import time
import uuid

from ..common import TierError, _round, _run
from ..cross_node import cross_node_read
from ..http import _describe_error, http_get, stream_completion, wait_healthy
from ..metrics import hit_figures, lmcache_activity, scrape_counters, settle_counters
from ..prompt import build_prompt, load_prompt_words


def tier_serving(args, ctx):
    figures = {
        "endpoint": args.endpoint,
        "prompt_tokens_requested": args.prompt_tokens,
        "speedup_threshold": args.speedup_threshold,
    }
    if not args.endpoint:
        return "skip", "no --endpoint given", figures
    try:
        status, dummy = http_get(args, "/health", args.request_timeout)
        figures["health"] = status
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "health check %s/health failed: %s" % (args.endpoint.rstrip("/"), _describe_error(exc)), figures
    try:
        dummy, text = http_get(args, "/v1/models", args.request_timeout)
        models = [m.get("id") for m in json.loads(text).get("data", [])]
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "/v1/models failed: %s" % _describe_error(exc), figures
    figures["models"] = models
    if args.model and args.model not in models:
        return "fail", "model %s not served (served: %s)" % (args.model, ", ".join(models)), figures
    if not models:
        return "fail", "/v1/models lists no model", figures
    model = args.model or models[0]
    figures["model"] = model

    try:
        vocabulary = load_prompt_words(args.prompt_words)
    except TierError as exc:
        return "fail", str(exc), figures
    problems = []
    if args.cross_node_seeded:
        try:
            with open(args.cross_node_seeded, "r", encoding="utf-8") as handle:
                seeded = json.load(handle)
        except (OSError, ValueError) as exc:
            seeded = {
                "mode": "seed",
                "status": "fail",
                "reason": "no seed result %s: %s" % (args.cross_node_seeded, exc),
            }
        figures["cross_node"] = seeded
        if seeded.get("status") != "pass":
            problems.append("cross-node seed: %s" % seeded.get("reason"))
    if args.cross_node_expect:
        figures["cross_node"] = cross_node = cross_node_read(args, model)
        if cross_node.get("error"):
            problems.append("cross-node: %s" % cross_node["error"])
        elif cross_node["hit_tokens"] is None or cross_node["hit_tokens"] <= 0:
            problems.append(
                "cross-node: the prompt %s stored on the shared tier got no hit tokens here (%s)"
                % (cross_node.get("writer"), cross_node.get("metric") or "no hit metric exposed")
            )

    nonce = uuid.uuid4().hex
    figures["nonce"] = nonce
    # One long prompt, sent cold and then again: the same tokens, so the warm runs can reuse every
    # full chunk and, at temperature 0, must produce the same text.
    prompt = build_prompt(nonce, args.prompt_tokens, "Question: name one word above.", vocabulary)
    before = scrape_counters(args)
    try:
        cold = stream_completion(args, model, prompt)
        warm = [stream_completion(args, model, prompt) for dummy in range(args.warm_repeats)]
    except TierError as exc:
        return "fail", "completion request: %s" % exc, figures
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "completion request failed: %s" % _describe_error(exc), figures
    after = scrape_counters(args)
    hits = hit_figures(before, after)
    # Evidence that LMCache works, known without waiting: tokens vLLM loaded through the connector
    # (counted at once), or this node's cross-node seed that LMCache stored on the shared tier in
    # this run. Only without either is it worth waiting for LMCache's own counters, which it
    # flushes every 10 s, to tell a working LMCache from its degraded (recompute) mode.
    seeded = figures.get("cross_node", {})
    working_by = None
    if hits.get("exposed") and hits["delta"] > 0:
        working_by = "hit tokens (%s)" % hits["metric"]
    elif seeded.get("mode") == "seed" and seeded.get("status") == "pass":
        working_by = "cross-node seed stored on the shared tier"
    elif after.get("exposed"):
        after = settle_counters(args, before, after)
        hits = hit_figures(before, after)
    cold_ttft = cold["ttft_s"]
    warm_ttft = statistics.median([w["ttft_s"] for w in warm])
    speedup = cold_ttft / max(warm_ttft, 1e-6)
    text_equal = all(w["text"] == cold["text"] for w in warm)
    figures.update(
        {
            "prompt_tokens_reported": cold["prompt_tokens"],
            "cold_ttft_s": _round(cold_ttft, 4),
            "warm_ttft_s": [_round(w["ttft_s"], 4) for w in warm],
            "warm_ttft_median_s": _round(warm_ttft, 4),
            "speedup": _round(speedup, 2),
            "text_equal": text_equal,
        }
    )
    figures["lmcache_hits"] = hits
    activity = lmcache_activity(before, after)
    figures["lmcache_activity"] = activity
    if working_by is None and activity:
        working_by = "LMCache activity counters"
    figures["lmcache_working_by"] = working_by
    if speedup < args.speedup_threshold:
        problems.append("warm TTFT speedup %.2fx below %.2fx" % (speedup, args.speedup_threshold))
    if args.require_same_text and not text_equal:
        different = next(w["text"] for w in warm if w["text"] != cold["text"])
        problems.append(
            "the warm text differs from the cold text (cold %r, warm %r): the reused KV cache does not "
            "reproduce the computed one" % (cold["text"][:80], different[:80])
        )
    degraded = activity == 0 and working_by is None
    if degraded:
        problems.append(
            "LMCache counted no lookup, store or retrieve for %d prompt tokens within %.0fs: it runs in its "
            "degraded (recompute) mode and caches nothing (look for 'degraded mode' or 'No supported' in the "
            "vLLM journal)"
            % ((cold["prompt_tokens"] or args.prompt_tokens) * (1 + len(warm)), args.lmcache_metrics_wait)
        )
    elif args.require_lmcache_hits:
        if not hits["exposed"]:
            problems.append("KV hit metrics not exposed: %s" % hits.get("reason"))
        elif hits["delta"] <= 0:
            problems.append(
                "no KV hit tokens counted (%s): the warm runs recomputed the prompt; if LMCache is "
                "enabled it may run in degraded (recompute) mode"
                % ", ".join("%s +%d" % (n, v) for n, v in sorted(hits["counters"].items()))
            )

    if args.restart_command:
        restart = {"command": args.restart_command}
        figures["restart"] = restart
        try:
            rc, out, err = _run(shlex.split(args.restart_command), args.restart_timeout)
            restart["rc"] = rc
            if rc != 0:
                raise TierError("restart command exited %d: %s" % (rc, (err or out).strip()[:300]))
            start = time.monotonic()
            ok, why = wait_healthy(args, args.restart_wait)
            restart["healthy_after_s"] = _round(time.monotonic() - start) if ok else None
            if not ok:
                raise TierError("not healthy within %ss after restart: %s" % (args.restart_wait, why))
            again = stream_completion(args, model, prompt)
            restart["ttft_s"] = _round(again["ttft_s"], 4)
            restart["speedup"] = _round(cold_ttft / max(again["ttft_s"], 1e-6), 2)
            if restart["speedup"] < args.speedup_threshold:
                problems.append("after restart the warm prompt is only %.2fx faster than cold" % (restart["speedup"]))
        except TierError as exc:
            restart["error"] = str(exc)
            problems.append("restart check: %s" % exc)
        except Exception as exc:  # pylint: disable=broad-except
            restart["error"] = _describe_error(exc)
            problems.append("restart check: %s" % _describe_error(exc))

    summary = "%s: cold %.3fs, warm %.3fs, %.1fx (threshold %.1fx)" % (
        model,
        cold_ttft,
        warm_ttft,
        speedup,
        args.speedup_threshold,
    )
    if hits["exposed"]:
        summary += ", +%d hit tokens (%s)" % (hits["delta"], hits["metric"])
    if not text_equal:
        summary += ", warm text differs"
    if figures.get("cross_node", {}).get("mode") == "seed":
        summary += ", cross-node seed: %s" % figures["cross_node"].get("reason")
    if figures.get("cross_node", {}).get("hit_tokens") is not None:
        summary += ", cross-node +%d hit tokens from %s" % (
            figures["cross_node"]["hit_tokens"],
            figures["cross_node"].get("writer"),
        )
    if figures.get("restart", {}).get("speedup") is not None:
        summary += ", after restart %.1fx" % figures["restart"]["speedup"]
    if problems:
        return "fail", "; ".join(problems) + " [" + summary + "]", figures
    return "pass", summary, figures
