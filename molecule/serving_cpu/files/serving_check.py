# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send one long prompt twice to a vLLM server and print TTFT, hits and text as JSON.

Run on the node (standard library only). The prompt is built from the tiny model's word list
(one word is one token). Hit tokens are the increase of LMCache's lmcache:num_hit_tokens_total
and of vLLM's vllm:external_prefix_cache_hits_total (tokens loaded from the KV connector) over
each request; LMCache's counter can lag by a request, so the larger is reported.
"""

import argparse
import json
import os
import random
import re
import sys
import time
import urllib.request

LMCACHE_HITS = "lmcache:num_hit_tokens_total"
EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=60) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return {k: int(out.get(k, 0)) for k in (LMCACHE_HITS, EXTERNAL_HITS)}


def complete(url, model, prompt, max_tokens, timeout):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True, "stream": True}).encode()  # fmt: skip
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    ttft, parts = None, []
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            text = "".join(c.get("text", "") for c in json.loads(line[5:]).get("choices", []))
            if ttft is None and text:
                ttft = time.monotonic() - t0
            parts.append(text)
    return ttft, time.monotonic() - t0, "".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--model-dir", required=True, help="model directory (its words.json builds the prompt)")
    ap.add_argument("--served-model", default="tiny")
    ap.add_argument("--prompt-tokens", type=int, default=3000)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args(argv)
    with open(os.path.join(args.model_dir, "words.json")) as f:
        words = [w for w in json.load(f) if not w.startswith("<")]
    rng = random.Random(args.seed)
    prompt = " ".join(rng.choice(words) for _word in range(args.prompt_tokens))
    runs = []
    for label in ("cold", "warm"):
        before = metrics(args.url)
        ttft, total, text = complete(args.url, args.served_model, prompt, args.max_tokens, args.timeout)
        after = metrics(args.url)
        delta = {k: after[k] - before[k] for k in after}
        runs.append({"run": label, "ttft_s": round(ttft or 0.0, 3), "total_s": round(total, 3),
                     "hit_tokens": max(delta.values()), "hit_counters": delta, "text": text})  # fmt: skip
    cold, warm = runs
    print(json.dumps({
        "prompt_tokens": args.prompt_tokens,
        "cold": cold,
        "warm": warm,
        "speedup": round(cold["ttft_s"] / warm["ttft_s"], 2) if warm["ttft_s"] else None,
        "text_equal": cold["text"] == warm["text"],
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
