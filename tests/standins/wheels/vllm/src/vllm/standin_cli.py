"""STAND-IN `vllm` command line (test double, not vLLM).

`vllm serve MODEL --port N ...` starts a tiny HTTP server on the given port that answers
GET /health, GET /v1/models, POST /v1/completions (plain or streaming) and
GET /standin/info (what the process received: arguments, the parsed --kv-transfer-config,
the LMCache config file named by LMCACHE_CONFIG_FILE, selected environment variables and
whether the Prometheus and shared LMCache directories are writable). No model is loaded.

SIMULATED prefix cache: the prompt's words stand for tokens, cut into chunks of LMCache's
chunk_size. A chunk whose prefix hash was seen before is a hit; every missed token costs
STANDIN_PREFILL_SECONDS_PER_TOKEN (default 0.0002 s) before the first streamed token. Hashes of
stored chunks are kept in memory and, in Mode B (remote_url fs://PATH), as empty marker files
under PATH, so a "warm" prompt is fast across restarts and nodes, like LMCache's shared tier.
GET /metrics exposes lmcache:num_hit_tokens_total and lmcache:num_requested_tokens_total.
The speedup this produces is a property of the stand-in, not a measurement of vLLM.

It fails the way a misconfigured server would: exit 2 for an unparsable
--kv-transfer-config, 3 for an unreadable LMCACHE_CONFIG_FILE and 4 for an unwritable
PROMETHEUS_MULTIPROC_DIR, so systemd, the readiness wait and the tests see real failures.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vllm import __version__

ENV_KEYS = (
    "PT_HPU_LAZY_MODE",
    "PT_HPU_ENABLE_LAZY_COLLECTIVES",
    "PYTHONHASHSEED",
    "PROMETHEUS_MULTIPROC_DIR",
    "LMCACHE_CONFIG_FILE",
    "HF_HOME",
)


def parse_lmcache_yaml(text):
    """Top-level `key: value` pairs of a YAML file (enough for flat LMCache configs)."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] in " #\t-" or ":" not in line:
            continue
        key, _sep, value = line.partition(":")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def probe_writable(directory):
    try:
        path = os.path.join(directory, ".standin-write-probe-%d" % os.getpid())
        with open(path, "w") as fh:
            fh.write("ok")
        os.unlink(path)
        return True
    except OSError:
        return False


def build_state(args, extra):
    state = {
        "standin": True,
        "version": __version__,
        "model": args.model,
        "port": args.port,
        "host": args.host,
        "tensor_parallel_size": args.tensor_parallel_size,
        "max_model_len": args.max_model_len,
        "extra_args": extra,
        "kv_transfer_config": None,
        "lmcache_config": None,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "hf_token_set": bool(os.environ.get("HF_TOKEN")),
        "uid": os.getuid(),
        "started": time.time(),
    }
    if args.kv_transfer_config:
        try:
            state["kv_transfer_config"] = json.loads(args.kv_transfer_config)
        except ValueError as exc:
            sys.stderr.write("standin vllm: invalid --kv-transfer-config: %s\n" % exc)
            sys.exit(2)
    cfg_path = os.environ.get("LMCACHE_CONFIG_FILE")
    if cfg_path:
        try:
            with open(cfg_path) as fh:
                state["lmcache_config"] = parse_lmcache_yaml(fh.read())
        except OSError as exc:
            sys.stderr.write("standin vllm: cannot read LMCACHE_CONFIG_FILE: %s\n" % exc)
            sys.exit(3)
        remote = (state["lmcache_config"] or {}).get("remote_url", "")
        if remote.startswith("fs://"):
            path = "/" + remote[len("fs://") :].split("/", 1)[1] if "/" in remote[len("fs://") :] else ""
            state["shared_tier_path"] = path
            state["shared_tier_writable"] = bool(path) and probe_writable(path)
    prom = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if prom and not probe_writable(prom):
        sys.stderr.write("standin vllm: PROMETHEUS_MULTIPROC_DIR %s is not writable\n" % prom)
        sys.exit(4)
    return state


class SimulatedPrefixCache(object):
    """Chunk-hash prefix cache of the stand-in (see the module docstring)."""

    def __init__(self, state):
        cfg = state.get("lmcache_config") or {}
        try:
            self.chunk = max(1, int(cfg.get("chunk_size", 256)))
        except ValueError:
            self.chunk = 256
        self.model = state["model"]
        self.path = state.get("shared_tier_path") if state.get("shared_tier_writable") else None
        self.seen = set()
        self.hit_tokens = 0
        self.requested_tokens = 0
        self.cost = float(os.environ.get("STANDIN_PREFILL_SECONDS_PER_TOKEN", "0.0002"))

    def _known(self, digest):
        if digest in self.seen:
            return True
        return bool(self.path) and os.path.exists(os.path.join(self.path, "standin-%s.chunk" % digest))

    def _store(self, digest):
        self.seen.add(digest)
        if self.path:
            try:
                with open(os.path.join(self.path, "standin-%s.chunk" % digest), "w"):
                    pass
            except OSError:
                pass

    def lookup_and_store(self, tokens):
        """Return how many leading tokens were cached; store every full chunk."""
        hits, prefix_hit, prev = 0, True, self.model
        for start in range(0, len(tokens) - len(tokens) % self.chunk, self.chunk):
            prev = hashlib.sha256((prev + "\x00" + " ".join(tokens[start : start + self.chunk])).encode()).hexdigest()
            if prefix_hit and self._known(prev):
                hits += self.chunk
            else:
                prefix_hit = False
                self._store(prev)
        self.hit_tokens += hits
        self.requested_tokens += len(tokens)
        return hits

    def prefill_delay(self, tokens, hits):
        return min(60.0, (len(tokens) - hits) * self.cost)


def make_handler(state):
    cache = SimulatedPrefixCache(state)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # keep the journal quiet
            pass

        def _send(self, code, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, b"", "text/plain")
            elif self.path == "/v1/models":
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": state["model"],
                                "object": "model",
                                "owned_by": "vllm-standin",
                                "max_model_len": state["max_model_len"],
                            }
                        ],
                    },
                )
            elif self.path == "/standin/info":
                self._send(200, state)
            elif self.path == "/metrics":
                text = (
                    "# stand-in vllm (simulated prefix cache)\nvllm_standin_up 1\n"
                    "lmcache:num_hit_tokens_total %d\nlmcache:num_requested_tokens_total %d\n"
                    % (cache.hit_tokens, cache.requested_tokens)
                )
                self._send(200, text.encode(), "text/plain")
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                req = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": "invalid JSON"})
                return
            if self.path != "/v1/completions":
                self._send(404, {"error": "not found"})
                return
            tokens = str(req.get("prompt", "")).split()
            time.sleep(cache.prefill_delay(tokens, cache.lookup_and_store(tokens)))
            words = ["stand-in", "completion", "from", "a", "test", "double"]
            words = words[: max(1, min(len(words), int(req.get("max_tokens", 6))))]
            base = {"id": "cmpl-standin", "object": "text_completion", "model": state["model"]}
            if not req.get("stream"):
                body = dict(
                    base,
                    choices=[{"index": 0, "text": " ".join(words), "finish_reason": "length"}],
                    usage={"prompt_tokens": len(str(req.get("prompt", "")).split()), "completion_tokens": len(words)},
                )
                self._send(200, body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, word in enumerate(words):
                chunk = dict(base, choices=[{"index": 0, "text": (" " if i else "") + word, "finish_reason": None}])
                self.wfile.write(("data: %s\n\n" % json.dumps(chunk)).encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-v"]):
        print(__version__)
        return 0
    if argv[:1] != ["serve"]:
        sys.stderr.write("stand-in vllm: only `vllm serve MODEL ...` and `--version` exist\n")
        return 2
    parser = argparse.ArgumentParser(prog="vllm serve", description="STAND-IN vllm serve")
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--kv-transfer-config", default=None)
    args, extra = parser.parse_known_args(argv[1:])
    state = build_state(args, extra)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    sys.stderr.write("stand-in vllm %s serving %s on %s:%d\n" % (__version__, args.model, args.host, args.port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
