# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mode B cross-node check: one node stores a prompt on the shared tier, the others must hit it."""

from __future__ import absolute_import, division, print_function

import json
import os
import socket
import time

from .common import MARKER_DIR, SCRATCH_DIR, TierError, _round, _wait_for_json, _write_atomic
from .http import _describe_error, http_get, stream_completion
from .metrics import hit_figures, scrape_counters
from .prompt import build_prompt, load_prompt_words


def count_cache_files(path):
    """Files below the shared cache directory, leaving out this script's own marker and scratch dirs."""
    total = 0
    for root, dirs, files in os.walk(path):
        if root == path:
            dirs[:] = [d for d in dirs if d not in (MARKER_DIR, SCRATCH_DIR)]
        total += len(files)
    return total


def _cross_node_marker(base, name):
    return os.path.join(base, MARKER_DIR, "%s.json" % name)


def cross_node_seed(args):
    """Mode B, on the node that stores (a kv_producer): send the cross-node prompt once, wait until
    the shared tier holds new files, then write a marker with the prompt for the other nodes."""
    result = {"mode": "seed", "name": args.cross_node_seed, "status": "fail"}
    if not (args.endpoint and args.storage_path):
        result["reason"] = "--cross-node-seed needs --endpoint and --storage-path"
        return result
    try:
        model = args.model
        if not model:
            dummy, text = http_get(args, "/v1/models", args.request_timeout)
            model = json.loads(text)["data"][0]["id"]
        prompt = build_prompt(
            args.cross_node_seed,
            args.prompt_tokens,
            "Question: name one word above.",
            load_prompt_words(args.prompt_words),
        )
        files_before = count_cache_files(args.storage_path)
        answer = stream_completion(args, model, prompt)
    except TierError as exc:
        result["reason"] = str(exc)
        return result
    except Exception as exc:  # pylint: disable=broad-except
        result["reason"] = "completion request failed: %s" % _describe_error(exc)
        return result
    # LMCache writes the chunks to its remote (fs://) backend after the request: wait for them and
    # for the count to stay put for a second.
    deadline = time.monotonic() + args.cross_node_timeout
    count, stable_since = count_cache_files(args.storage_path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = count_cache_files(args.storage_path)
        if again != count:
            count, stable_since = again, time.monotonic()
        elif count > files_before and time.monotonic() - stable_since >= 1.0:
            break
    result.update({"model": model, "ttft_s": _round(answer["ttft_s"], 4), "files_added": count - files_before})
    if count <= files_before:
        result["reason"] = "no new file in %s within %ss after the request: nothing was stored on the shared tier" % (
            args.storage_path,
            args.cross_node_timeout,
        )
        return result
    marker = _cross_node_marker(args.storage_path, args.cross_node_seed)
    record = {"writer": args.node or socket.gethostname(), "model": model, "prompt": prompt, "text": answer["text"]}
    _write_atomic(marker, json.dumps(record), durable=True)
    result.update(
        {"status": "pass", "marker": marker, "reason": "%d file(s) stored on the shared tier" % (count - files_before)}
    )
    return result


def cross_node_read(args, model):
    """Mode B, on another node: send the prompt the seeding node stored; count the hit tokens."""
    out = {"mode": "expect", "name": args.cross_node_expect, "hit_tokens": None}
    if not args.storage_path:
        out["error"] = "--cross-node-expect needs --storage-path"
        return out
    marker = _cross_node_marker(args.storage_path, args.cross_node_expect)
    content, dummy = _wait_for_json(marker, args.cross_node_timeout)
    if content is None:
        out["error"] = "no marker %s within %ss: the seeding node did not store its prompt" % (
            marker,
            args.cross_node_timeout,
        )
        return out
    out["writer"] = content.get("writer")
    if content.get("model") != model:
        out["error"] = "the seeding node %s served model %s, this node serves %s" % (
            out["writer"],
            content.get("model"),
            model,
        )
        return out
    before = scrape_counters(args)
    try:
        answer = stream_completion(args, model, content["prompt"])
    except Exception as exc:  # pylint: disable=broad-except
        out["error"] = "completion request failed: %s" % _describe_error(exc)
        return out
    after = scrape_counters(args)
    hits = hit_figures(before, after)
    out.update(
        {
            "ttft_s": _round(answer["ttft_s"], 4),
            "text_equal": answer["text"] == content.get("text"),
            "metric": hits.get("metric"),
            "hit_tokens": hits.get("delta") if hits.get("exposed") else None,
        }
    )
    return out
