# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""serving tier: an OpenAI-compatible vLLM endpoint with LMCache behind it.

What it checks, in order (each failure names what it saw):

* ``/health`` and ``/v1/models`` (the model is served);
* a cold request of a long prompt that starts with a fresh nonce, then ``warm_repeats`` requests
  of the same prompt: time to first token (TTFT) of each, and the speedup cold / median warm;
* hit tokens on the warm requests: ``lmcache:num_hit_tokens_total`` and vLLM's
  ``vllm:external_prefix_cache_hits_total`` (tokens the KV connector loaded; it also counts
  when LMCache's own metrics are not exported), the larger of the two;
* LMCache's degraded mode: a server that runs but caches nothing (0 hit tokens on the warm
  request, ``lmcache:lmcache_is_healthy`` 0, nothing stored by the cold request, or one of
  ``degraded_patterns`` such as "No supported cpu connector found" in the output of
  ``log_command``) fails with a message saying so;
* the generated text: temperature 0 and a fixed seed, so cold and warm runs must produce the
  same text (a cache that returns wrong KV changes the text);
* Mode B across nodes: ``cross_node_nonce`` is the nonce of a prompt another node stored in the
  shared tier (``prime_only`` on that node); this node's first request for it must hit;
* Mode B across a restart: ``restart_command`` restarts the service; the warm prompt must still
  be fast and give the same text.

Prompts are built from a fixed word list, so the same nonce and length give the same prompt on
every node.
"""

from __future__ import absolute_import, division, print_function

import json
import random
import re
import shlex
import socket
import statistics
import time
import urllib.error
import urllib.request
import uuid

from .common import TierError, __version__
from .common import round_figure as _round
from .common import run as _run

METRIC_HIT_TOKENS = ("lmcache:num_hit_tokens_total", "lmcache:num_hit_tokens")
METRIC_EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"
METRIC_PREFIX_HITS = "vllm:prefix_cache_hits_total"
METRIC_STORED = ("lmcache:num_stored_tokens_total", "lmcache:num_stored_tokens")
METRIC_REQUESTED = ("lmcache:num_requested_tokens_total", "lmcache:num_requested_tokens")
METRIC_HEALTHY = "lmcache:lmcache_is_healthy"
# LMCache 0.5.6: CreateGPUConnector (lmcache/v1/gpu_connector/__init__.py) raises the first on a
# device it has no connector for; LMCacheManager (lmcache/v1/manager.py) then logs the second.
DEFAULT_DEGRADED_PATTERNS = ("No supported cpu connector found", "System will operate in degraded mode (recompute)")

# Words that common BPE tokenizers (Llama 3, Qwen, Mistral) encode as one token each
# when preceded by a space, so that N words make roughly N prompt tokens.
PROMPT_WORDS = (
    "the of and to in is was for on are with as by at from that this be or an have not "
    "but had they which one you were all we her she there been their has would more when "
    "will who if no out so up said what its about than into them can only other new some "
    "could time these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take "
    "three states himself few house use during without again place around however home small "
    "found thought went say part once general high upon school every don does got united left "
    "number course war until always away something fact though water less public put think "
    "almost hand enough far took head yet government system better set told nothing night end"
).split()
QUESTION = "Question: name one word above."


def _headers(args, extra=None):
    headers = {"User-Agent": "gaudi_validate/%s" % __version__}
    if args.api_key:
        headers["Authorization"] = "Bearer %s" % args.api_key
    if extra:
        headers.update(extra)
    return headers


def _describe_error(exc):
    if isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read(300).decode("utf-8", "replace").strip()
        except Exception:  # pylint: disable=broad-except
            body = ""
        return "HTTP %d %s%s" % (exc.code, exc.reason, (": " + body) if body else "")
    if isinstance(exc, urllib.error.URLError):
        return "%s" % (exc.reason,)
    if isinstance(exc, socket.timeout):
        return "timed out"
    return "%s: %s" % (type(exc).__name__, exc)


def http_get(args, path, timeout):
    req = urllib.request.Request(args.endpoint.rstrip("/") + path, headers=_headers(args))
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310 - URL from operator
        return resp.status, resp.read().decode("utf-8", "replace")


def http_post(args, path, payload, timeout):
    req = urllib.request.Request(
        args.endpoint.rstrip("/") + path,
        data=json.dumps(payload).encode("utf-8"),
        method="POST",
        headers=_headers(args, {"Content-Type": "application/json"}),
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310 - URL from operator
        return resp.status, resp.read().decode("utf-8", "replace")


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+([-+0-9.eEinfINFNa]+)")


def parse_metrics(text):
    """{metric name: sum of its samples} from Prometheus text."""
    out = {}
    for line in (text or "").splitlines():
        match = _SAMPLE.match(line)
        if match:
            try:
                out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(2))
            except ValueError:
                continue
    return out


def parse_metric_sum(text, names=METRIC_HIT_TOKENS):
    """(name, sum of all samples) of the first metric in `names` found in Prometheus text."""
    metrics = parse_metrics(text)
    for name in names:
        if name in metrics:
            return name, metrics[name]
    return None, None


def _first(metrics, names):
    for name in names:
        if name in metrics:
            return name, metrics[name]
    return None, None


def scrape(args):
    """{'exposed': bool, 'metrics': {...}} or {'exposed': False, 'reason': ...}."""
    try:
        dummy, text = http_get(args, "/metrics", args.request_timeout)
    except Exception as exc:  # pylint: disable=broad-except
        return {"exposed": False, "reason": "/metrics: %s" % _describe_error(exc), "metrics": {}}
    return {"exposed": True, "metrics": parse_metrics(text)}


def hit_counters(snapshot):
    """The hit counters a snapshot has: {'lmcache': (name, value), 'external': value}."""
    metrics = snapshot.get("metrics") or {}
    out = {}
    name, value = _first(metrics, METRIC_HIT_TOKENS)
    if name:
        out["lmcache"] = (name, value)
    if METRIC_EXTERNAL_HITS in metrics:
        out["external"] = (METRIC_EXTERNAL_HITS, metrics[METRIC_EXTERNAL_HITS])
    return out


def hit_delta(before, after):
    """Hit tokens between two snapshots: {'exposed', 'lmcache', 'external', 'tokens', 'metric'}."""
    b, a = hit_counters(before), hit_counters(after)
    out = {"exposed": bool(a) and bool(b)}
    best, metric = None, None
    for key in ("lmcache", "external"):
        if key in a and key in b:
            delta = a[key][1] - b[key][1]
            out[key] = delta
            if best is None or delta > best:
                best, metric = delta, a[key][0]
    out["tokens"] = best
    out["metric"] = metric
    if not out["exposed"]:
        out["reason"] = (
            after.get("reason")
            or before.get("reason")
            or ("/metrics has neither %s nor %s" % (METRIC_HIT_TOKENS[0], METRIC_EXTERNAL_HITS))
        )
    return out


def hits_after(args, before, min_tokens=1):
    """Scrape until the hit counters moved by min_tokens or hits_settle_s passed.

    LMCache publishes its counters from the previous interval's stats, so they can lag a
    request; vLLM's external counter moves at once.
    """
    deadline = time.monotonic() + max(0.0, args.hits_settle_s)
    while True:
        after = scrape(args)
        delta = hit_delta(before, after)
        if not delta["exposed"] or (delta["tokens"] or 0) >= min_tokens or time.monotonic() >= deadline:
            return after, delta
        time.sleep(0.5)


def build_prompt(nonce, words, question=QUESTION):
    rng = random.Random(20240917)
    body = " ".join(rng.choice(PROMPT_WORDS) for dummy in range(max(words, 1)))
    return "Request %s.\n%s\n%s" % (nonce, body, question)


def stream_completion(args, model, prompt, max_tokens=None):
    """POST a streamed completion; return {'ttft_s', 'total_s', 'prompt_tokens', 'text'}."""
    payload = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens or getattr(args, "completion_tokens", 8),
        "temperature": 0,
        "seed": getattr(args, "seed", 0),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(
        args.endpoint.rstrip("/") + "/v1/completions",
        data=body,
        method="POST",
        headers=_headers(args, {"Content-Type": "application/json", "Accept": "text/event-stream"}),
    )
    start = time.perf_counter()
    ttft = None
    usage = None
    text = []
    with urllib.request.urlopen(req, timeout=args.request_timeout) as resp:  # nosec B310
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if event.get("usage"):
                usage = event["usage"]
            choices = event.get("choices") or []
            if choices:
                if ttft is None:
                    ttft = time.perf_counter() - start
                text.append(choices[0].get("text") or "")
    total = time.perf_counter() - start
    if ttft is None:
        raise TierError("the stream ended without a token")
    return {
        "ttft_s": ttft,
        "total_s": total,
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "text": "".join(text),
    }


def wait_healthy(args, timeout):
    deadline = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < deadline:
        try:
            status, dummy = http_get(args, "/health", min(10.0, args.request_timeout))
            if status == 200:
                return True, "healthy"
            last = "HTTP %d" % status
        except Exception as exc:  # pylint: disable=broad-except
            last = _describe_error(exc)
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    return False, last


def reset_prefix_cache(args):
    """Best effort: ask vLLM to drop its own prefix cache so warm hits must come from LMCache.

    vLLM serves POST /reset_prefix_cache only with VLLM_SERVER_DEV_MODE=1; a 404 is recorded.
    """
    try:
        status, dummy = http_post(args, "/reset_prefix_cache", {}, args.request_timeout)
        return {"status": status}
    except Exception as exc:  # pylint: disable=broad-except
        return {"status": None, "reason": _describe_error(exc)}


def scan_log(args):
    """Run log_command and look for degraded_patterns; return figures (or None when unset)."""
    if not args.log_command:
        return None
    out = {"command": args.log_command, "found": []}
    try:
        rc, stdout, stderr = _run(shlex.split(args.log_command), args.command_timeout)
    except TierError as exc:
        out["error"] = str(exc)
        return out
    out["rc"] = rc
    text = (stdout or "") + (stderr or "")
    out["found"] = [pattern for pattern in args.degraded_patterns if pattern and pattern in text]
    return out


def detect_degraded(cold_delta, warm_delta, before, after, log):
    """Reasons why LMCache runs but caches nothing (empty list: not degraded)."""
    reasons = []
    if warm_delta["exposed"] and (warm_delta["tokens"] or 0) <= 0:
        reasons.append("0 hit tokens on the warm request (%s)" % warm_delta["metric"])
    metrics = after.get("metrics") or {}
    if METRIC_HEALTHY in metrics and metrics[METRIC_HEALTHY] <= 0:
        reasons.append("%s is %g" % (METRIC_HEALTHY, metrics[METRIC_HEALTHY]))
    stored_name, stored_after = _first(metrics, METRIC_STORED)
    stored_before = _first(before.get("metrics") or {}, METRIC_STORED)[1]
    req_name, req_after = _first(metrics, METRIC_REQUESTED)
    req_before = _first(before.get("metrics") or {}, METRIC_REQUESTED)[1]
    if (
        stored_name
        and req_name
        and stored_before is not None
        and req_before is not None
        and req_after - req_before > 0
        and stored_after - stored_before <= 0
    ):
        reasons.append("%s did not move while %s grew by %d" % (stored_name, req_name, req_after - req_before))
    if log and log.get("found"):
        reasons.append("the service log says %s" % "; ".join(repr(p) for p in log["found"]))
    return reasons


def _request(args, model, prompt, label):
    try:
        return stream_completion(args, model, prompt)
    except TierError as exc:
        raise TierError("%s request: %s" % (label, exc))
    except Exception as exc:  # pylint: disable=broad-except
        raise TierError("%s request failed: %s" % (label, _describe_error(exc)))


def _endpoint_model(args, figures):
    try:
        status, dummy = http_get(args, "/health", args.request_timeout)
        figures["health"] = status
    except Exception as exc:  # pylint: disable=broad-except
        raise TierError("health check %s/health failed: %s" % (args.endpoint.rstrip("/"), _describe_error(exc)))
    try:
        dummy, text = http_get(args, "/v1/models", args.request_timeout)
        models = [m.get("id") for m in json.loads(text).get("data", [])]
    except Exception as exc:  # pylint: disable=broad-except
        raise TierError("/v1/models failed: %s" % _describe_error(exc))
    figures["models"] = models
    if args.model and args.model not in models:
        raise TierError("model %s not served (served: %s)" % (args.model, ", ".join(models)))
    if not models:
        raise TierError("/v1/models lists no model")
    figures["model"] = args.model or models[0]
    return figures["model"]


def prime(args, model, figures):
    """prime_only: store the prompt of `nonce` (for the other nodes of a shared tier)."""
    before = scrape(args)
    cold = _request(args, model, build_prompt(args.nonce, args.prompt_tokens), "priming")
    after = scrape(args)
    figures["primed"] = {
        "nonce": args.nonce,
        "ttft_s": _round(cold["ttft_s"], 4),
        "text": cold["text"],
        "prompt_tokens_reported": cold["prompt_tokens"],
    }
    stored_name, stored = _first(after.get("metrics") or {}, METRIC_STORED)
    if stored_name and _first(before.get("metrics") or {}, METRIC_STORED)[1] is not None:
        figures["primed"]["stored_tokens"] = stored - _first(before["metrics"], METRIC_STORED)[1]
    return "pass", "stored the prompt of nonce %s for the other nodes (TTFT %.3fs)" % (args.nonce, cold["ttft_s"])


def tier_serving(args, ctx):
    figures = {
        "endpoint": args.endpoint,
        "prompt_tokens_requested": args.prompt_tokens,
        "speedup_threshold": args.speedup_threshold,
        "seed": args.seed,
        "completion_tokens": args.completion_tokens,
    }
    if not args.endpoint:
        return "skip", "no --endpoint given", figures
    try:
        model = _endpoint_model(args, figures)
        nonce = args.nonce or uuid.uuid4().hex
        figures["nonce"] = nonce
        if args.prime_only:
            args.nonce = nonce
            status, reason = prime(args, model, figures)
            return status, reason, figures
        prompt = build_prompt(nonce, args.prompt_tokens)
        before = scrape(args)
        cold = _request(args, model, prompt, "cold")
        after_cold = scrape(args)
        cold_delta = hit_delta(before, after_cold)
        if args.reset_prefix_cache:
            figures["prefix_cache_reset"] = reset_prefix_cache(args)
        warm = []
        for i in range(args.warm_repeats):
            warm.append(_request(args, model, prompt, "warm %d" % (i + 1)))
        after_warm, warm_delta = hits_after(args, after_cold)
    except TierError as exc:
        return "fail", str(exc), figures
    cold_ttft = cold["ttft_s"]
    warm_ttft = statistics.median([w["ttft_s"] for w in warm])
    speedup = cold_ttft / max(warm_ttft, 1e-6)
    figures.update(
        {
            "prompt_tokens_reported": cold["prompt_tokens"],
            "cold_ttft_s": _round(cold_ttft, 4),
            "warm_ttft_s": [_round(w["ttft_s"], 4) for w in warm],
            "warm_ttft_median_s": _round(warm_ttft, 4),
            "speedup": _round(speedup, 2),
            "cold_text": cold["text"],
            "warm_texts": [w["text"] for w in warm],
        }
    )
    # Hits over the whole run (cold included), in the shape of schema 1.1, and the warm ones.
    total = hit_delta(before, after_warm)
    hits = {"exposed": total["exposed"]}
    if total["exposed"]:
        name = total["metric"]
        hits.update(
            {
                "metric": name,
                "before": before["metrics"].get(name),
                "after": after_warm["metrics"].get(name),
                "delta": total["tokens"],
            }
        )
    else:
        hits["reason"] = total.get("reason")
    figures["lmcache_hits"] = hits
    figures["hit_tokens"] = {
        "cold": cold_delta.get("tokens"),
        "warm": warm_delta.get("tokens"),
        "warm_lmcache": warm_delta.get("lmcache"),
        "warm_external": warm_delta.get("external"),
        "metric": warm_delta.get("metric"),
    }
    prefix_hits = (after_warm.get("metrics") or {}).get(METRIC_PREFIX_HITS, 0) - (
        (after_cold.get("metrics") or {}).get(METRIC_PREFIX_HITS, 0)
    )
    figures["hit_tokens"]["warm_vllm_prefix_cache"] = prefix_hits
    log = scan_log(args)
    if log is not None:
        figures["log_scan"] = log
    degraded = detect_degraded(cold_delta, warm_delta, before, after_warm, log)
    figures["degraded"] = {"detected": bool(degraded), "reasons": degraded}
    problems = []
    if degraded:
        hint = ""
        if prefix_hits > 0 and warm_delta["exposed"] and (warm_delta["tokens"] or 0) <= 0:
            hint = (
                " (vLLM's own prefix cache served %d tokens; the warm request never reached LMCache: "
                "serve with --no-enable-prefix-caching or VLLM_SERVER_DEV_MODE=1 for validation)" % prefix_hits
            )
        problems.append("LMCache degraded: the server runs but caches nothing: %s%s" % ("; ".join(degraded), hint))
    elif not warm_delta["exposed"] and args.require_lmcache_hits:
        problems.append("LMCache hit metric not exposed: %s" % warm_delta.get("reason"))
    mismatched = [i + 1 for i, w in enumerate(warm) if w["text"] != cold["text"]]
    figures["text_match"] = not mismatched
    if mismatched:
        problems.append(
            "generated text differs between the cold and warm run(s) %s (temperature 0, seed %d): cold %r, warm %r"
            % (",".join(str(i) for i in mismatched), args.seed, cold["text"][:80], warm[mismatched[0] - 1]["text"][:80])
        )
    if speedup < args.speedup_threshold:
        problems.append("warm TTFT speedup %.2fx below %.2fx" % (speedup, args.speedup_threshold))

    if args.cross_node_nonce and args.cross_node_model and args.cross_node_model != model:
        # Cache keys include the model: a node serving another model cannot hit the peer's prompt.
        figures["cross_node"] = {
            "nonce": args.cross_node_nonce,
            "peer": args.cross_node_peer or None,
            "skipped": "the storing node serves %s, this node %s" % (args.cross_node_model, model),
        }
    elif args.cross_node_nonce:
        cross = {"nonce": args.cross_node_nonce, "peer": args.cross_node_peer or None}
        figures["cross_node"] = cross
        try:
            start = scrape(args)
            got = _request(args, model, build_prompt(args.cross_node_nonce, args.prompt_tokens), "cross-node")
            dummy, delta = hits_after(args, start)
            cross.update(
                {
                    "ttft_s": _round(got["ttft_s"], 4),
                    "speedup": _round(cold_ttft / max(got["ttft_s"], 1e-6), 2),
                    "hit_tokens": delta.get("tokens"),
                    "metric": delta.get("metric"),
                    "text": got["text"],
                }
            )
            if not delta["exposed"]:
                problems.append("cross-node hit not measurable: %s" % delta.get("reason"))
            elif (delta["tokens"] or 0) <= 0:
                problems.append(
                    "cross-node: 0 hit tokens for the prompt %s stored in the shared tier (nonce %s)"
                    % (
                        "node %s" % args.cross_node_peer if args.cross_node_peer else "another node",
                        args.cross_node_nonce,
                    )
                )
            if args.cross_node_text and got["text"] != args.cross_node_text:
                problems.append(
                    "cross-node: text %r differs from the text the storing node generated %r"
                    % (got["text"][:80], args.cross_node_text[:80])
                )
        except TierError as exc:
            cross["error"] = str(exc)
            problems.append("cross-node check: %s" % exc)

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
            again = _request(args, model, prompt, "after restart")
            restart["ttft_s"] = _round(again["ttft_s"], 4)
            restart["speedup"] = _round(cold_ttft / max(again["ttft_s"], 1e-6), 2)
            restart["text_match"] = again["text"] == cold["text"]
            if restart["speedup"] < args.speedup_threshold:
                problems.append("after restart the warm prompt is only %.2fx faster than cold" % (restart["speedup"]))
            if not restart["text_match"]:
                problems.append("after restart the text differs from the cold run: %r" % again["text"][:80])
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
    if warm_delta["exposed"]:
        summary += ", %d warm hit tokens" % (warm_delta["tokens"] or 0)
    if figures.get("cross_node", {}).get("hit_tokens") is not None:
        summary += ", cross-node %d hit tokens" % figures["cross_node"]["hit_tokens"]
    if figures.get("restart", {}).get("speedup") is not None:
        summary += ", after restart %.1fx" % figures["restart"]["speedup"]
    if problems:
        return "fail", "; ".join(problems) + " [" + summary + "]", figures
    return "pass", summary, figures
