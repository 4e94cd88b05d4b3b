# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-IN OpenAI-compatible vLLM + LMCache server (a test double, not vLLM): the one server
stand-in of the tests.

Two ways to run it:

* as the stand-in wheel's ``vllm`` command (tests/standins/wheels/vllm packs this file as
  ``vllm/standin_cli.py``): ``vllm serve MODEL --port N ...`` like vLLM's CLI. It parses
  --kv-transfer-config, reads the LMCache config file named by LMCACHE_CONFIG_FILE (chunk_size,
  remote_url fs://HOST:PORT/PATH) and fails the way a misconfigured server would: exit 2 for an
  unparsable --kv-transfer-config, 3 for an unreadable LMCACHE_CONFIG_FILE, 4 for an unwritable
  PROMETHEUS_MULTIPROC_DIR. GET /standin/info shows what the process received;
* as a plain test double: ``python3 openai_server.py --port N [--cold-delay S --warm-delay S
  --persist-dir DIR --chunk-tokens N --degraded --text-drift]``, or in-process with
  ``start(**knobs)`` (unit tests), which returns ``(server, base_url)``; ``server.state`` holds
  the knobs and the requests seen.

Both answer GET /health, GET /v1/models, POST /v1/completions (plain or streamed, with
``stream_options.include_usage``), GET /metrics and (stand-in only) POST /reset_prefix_cache.

SIMULATED prefix cache: the prompt's words stand for tokens, cut into chunks (LMCache's
chunk_size). A chunk whose prefix hash was seen before is a hit. Stored chunk hashes are kept in
memory and, with a shared directory (Mode B: remote_url fs://..., or --persist-dir), as empty
marker files in it, so a prompt stored by one process hits in another (a restart, another node).
The first token is delayed by ``cold_delay`` when nothing hit and ``warm_delay`` when something
did (test double), or by STANDIN_PREFILL_SECONDS_PER_TOKEN (default 0.0002 s) per missed token
(``vllm serve``). /metrics exposes lmcache:num_hit_tokens_total, lmcache:num_requested_tokens_total,
lmcache:num_stored_tokens_total and vLLM's vllm:external_prefix_cache_hits_total. The speedup
this produces is a property of the stand-in, not a measurement of vLLM.

The generated text is a function of the prompt and the seed (temperature 0 in effect), so cold
and warm runs give the same text. Knobs for failure paths: ``degraded`` (LMCache's degraded mode:
logs "No supported cpu connector found", stores and hits nothing), ``text_drift`` (a request that
hit gets different text, like a cache returning wrong KV), ``hit_metrics`` (which hit counters
/metrics shows), ``metrics=False``, ``health_status``, ``hang_s``.
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:  # inside the stand-in vllm wheel
    from vllm import __version__ as VERSION
except ImportError:  # run from the source tree
    VERSION = "0.0.0+standin"

DEGRADED_LOG_LINE = "No supported cpu connector found"
TEXT_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


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
        "version": VERSION,
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


class StandinState(object):
    """Behaviour knobs, the simulated prefix cache and counters shared by the request handlers."""

    def __init__(
        self,
        model="test-double/llama-3.1-8b",
        max_model_len=None,
        chunk_tokens=16,
        shared_dir=None,
        cold_delay=None,
        warm_delay=0.0,
        cost_per_token=0.0002,
        metrics=True,
        health_status=200,
        hang_s=0.0,
        tokens=2,
        degraded=False,
        text_drift=False,
        hit_metrics=("lmcache", "external"),
        info=None,
    ):
        self.model = model
        self.max_model_len = max_model_len
        self.chunk = max(1, int(chunk_tokens))
        self.shared_dir = shared_dir
        self.cold_delay = cold_delay
        self.warm_delay = warm_delay
        self.cost = cost_per_token
        self.metrics = metrics
        self.health_status = health_status
        self.hang_s = hang_s
        self.tokens = tokens
        self.degraded = degraded
        self.text_drift = text_drift
        self.hit_metrics = tuple(hit_metrics)
        self.info = info or {}
        self.seen = set()
        self.requests = []
        self.hit_tokens = 0
        self.requested_tokens = 0
        self.stored_tokens = 0
        self.lock = threading.Lock()
        if shared_dir:
            os.makedirs(shared_dir, exist_ok=True)

    def _marker(self, digest):
        return os.path.join(self.shared_dir, "standin-%s.chunk" % digest)

    def _known(self, digest):
        if digest in self.seen:
            return True
        return bool(self.shared_dir) and os.path.exists(self._marker(digest))

    def _store(self, digest):
        self.seen.add(digest)
        if self.shared_dir:
            try:
                with open(self._marker(digest), "w"):
                    pass
            except OSError:
                pass

    def lookup_and_store(self, tokens):
        """Return how many leading tokens were cached; store every full chunk."""
        hits, prefix_hit, prev, stored = 0, True, self.model, 0
        with self.lock:
            for start in range(0, len(tokens) - len(tokens) % self.chunk, self.chunk):
                piece = " ".join(tokens[start : start + self.chunk])
                prev = hashlib.sha256((prev + "\x00" + piece).encode()).hexdigest()
                if self.degraded:
                    continue  # recompute: nothing looked up, nothing stored
                if prefix_hit and self._known(prev):
                    hits += self.chunk
                else:
                    prefix_hit = False
                    self._store(prev)
                    stored += self.chunk
            self.hit_tokens += hits
            self.requested_tokens += len(tokens)
            self.stored_tokens += stored
        return hits

    def delay(self, tokens, hits):
        if self.cold_delay is not None:
            return self.warm_delay if hits else self.cold_delay
        return min(60.0, (len(tokens) - hits) * self.cost)

    def text(self, prompt, seed, count, hits):
        digest = hashlib.sha256(("%s\x00%s" % (seed, prompt)).encode()).digest()
        words = [TEXT_WORDS[digest[i % len(digest)] % len(TEXT_WORDS)] for i in range(count)]
        if self.text_drift and hits:
            words[-1] = "drift%d" % len(self.requests)
        return words

    def metrics_text(self):
        lines = ["# stand-in vllm (simulated prefix cache)", "vllm_standin_up 1"]
        label = '{model_name="%s",worker_id="0"}' % self.model
        if "lmcache" in self.hit_metrics:
            lines += [
                "# TYPE lmcache:num_hit_tokens_total counter",
                "lmcache:num_hit_tokens_total%s %.1f" % (label, self.hit_tokens),
                "lmcache:num_requested_tokens_total%s %.1f" % (label, self.requested_tokens),
                "lmcache:num_stored_tokens_total%s %.1f" % (label, self.stored_tokens),
            ]
        if "external" in self.hit_metrics:
            lines.append('vllm:external_prefix_cache_hits_total{model_name="%s"} %.1f' % (self.model, self.hit_tokens))
        lines.append('vllm:num_requests_running{model_name="%s"} 0.0' % self.model)
        return "\n".join(lines) + "\n"


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-standin/1"

    def log_message(self, *args):  # keep the journal and the test output quiet
        pass

    @property
    def state(self):
        return self.server.state

    def _send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        state = self.state
        if state.hang_s:
            time.sleep(state.hang_s)
        if self.path == "/health":
            self._send(state.health_status, b"", "text/plain")
        elif self.path == "/v1/models":
            model = {"id": state.model, "object": "model", "owned_by": "vllm-standin"}
            if state.max_model_len:
                model["max_model_len"] = state.max_model_len
            self._send(200, {"object": "list", "data": [model]})
        elif self.path == "/standin/info" and state.info:
            self._send(200, state.info)
        elif self.path == "/metrics" and state.metrics:
            self._send(200, state.metrics_text().encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):  # noqa: N802
        state = self.state
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": "invalid JSON"})
            return
        if self.path == "/reset_prefix_cache":
            self._send(200, b"", "text/plain")  # the stand-in has no device prefix cache
            return
        if self.path != "/v1/completions":
            self._send(404, {"error": "not found"})
            return
        if req.get("model") not in (None, state.model):
            self._send(404, {"error": "model %s not found" % req.get("model")})
            return
        prompt = str(req.get("prompt", ""))
        tokens = prompt.split()
        hits = state.lookup_and_store(tokens)
        state.requests.append({"hit": hits > 0, "hit_tokens": hits, "prompt_tokens": len(tokens)})
        time.sleep(state.delay(tokens, hits))
        count = max(1, int(req.get("max_tokens") or state.tokens))
        words = state.text(prompt, req.get("seed"), count, hits)
        base = {"id": "cmpl-standin", "object": "text_completion", "model": state.model}
        usage = {"prompt_tokens": len(tokens), "completion_tokens": len(words)}
        if not req.get("stream"):
            body = dict(base, choices=[{"index": 0, "text": " ".join(words), "finish_reason": "length"}], usage=usage)
            self._send(200, body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for i, word in enumerate(words):
            chunk = dict(base, choices=[{"index": 0, "text": (" " if i else "") + word, "finish_reason": None}])
            self.wfile.write(("data: %s\n\n" % json.dumps(chunk)).encode())
            self.wfile.flush()
        if (req.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(("data: %s\n\n" % json.dumps(dict(base, choices=[], usage=usage))).encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def serve(host, port, state):
    server = ThreadingHTTPServer((host, port), StandinHandler)
    server.daemon_threads = True
    server.state = state
    if state.degraded:
        sys.stderr.write("[standin] LMCache WARNING: %s, falling back to recompute\n" % DEGRADED_LOG_LINE)
        sys.stderr.flush()
    return server


def start(host="127.0.0.1", port=0, **kwargs):
    """Start the stand-in in a daemon thread; return (server, base_url)."""
    server = serve(host, port, StandinState(**kwargs))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, "http://%s:%d" % (host, server.server_address[1])


def _run_forever(server, banner):
    sys.stderr.write(banner + "\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def vllm_serve(argv):
    """`vllm serve MODEL ...`, the stand-in wheel's CLI."""
    parser = argparse.ArgumentParser(prog="vllm serve", description="STAND-IN vllm serve")
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--kv-transfer-config", default=None)
    args, extra = parser.parse_known_args(argv)
    info = build_state(args, extra)
    cfg = info.get("lmcache_config") or {}
    try:
        chunk = max(1, int(cfg.get("chunk_size", 256)))
    except ValueError:
        chunk = 256
    state = StandinState(
        model=args.model,
        max_model_len=args.max_model_len,
        chunk_tokens=chunk,
        shared_dir=info.get("shared_tier_path") if info.get("shared_tier_writable") else None,
        cost_per_token=float(os.environ.get("STANDIN_PREFILL_SECONDS_PER_TOKEN", "0.0002")),
        tokens=6,
        info=info,
    )
    server = serve(args.host, args.port, state)
    return _run_forever(server, "stand-in vllm %s serving %s on %s:%d" % (VERSION, args.model, args.host, args.port))


def test_double(argv):
    """The plain test double (e.g. a systemd unit in the validate scenario)."""
    parser = argparse.ArgumentParser(description="STAND-IN OpenAI-compatible server (test double)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--model", default="test-double/llama-3.1-8b")
    parser.add_argument("--cold-delay", type=float, default=0.5)
    parser.add_argument("--warm-delay", type=float, default=0.02)
    parser.add_argument("--persist-dir", help="shared directory of stored chunks (Mode B, across restarts)")
    parser.add_argument("--chunk-tokens", type=int, default=16)
    parser.add_argument("--degraded", action="store_true", help="LMCache's degraded mode: cache nothing")
    parser.add_argument("--text-drift", action="store_true", help="requests that hit generate other text")
    args = parser.parse_args(argv)
    state = StandinState(
        model=args.model,
        chunk_tokens=args.chunk_tokens,
        shared_dir=args.persist_dir,
        cold_delay=args.cold_delay,
        warm_delay=args.warm_delay,
        degraded=args.degraded,
        text_drift=args.text_drift,
    )
    server = serve(args.host, args.port, state)
    return _run_forever(server, "stand-in OpenAI server for %s on %s:%d" % (args.model, args.host, args.port))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-v"]):
        print(VERSION)
        return 0
    if argv[:1] == ["serve"]:
        return vllm_serve(argv[1:])
    if os.path.basename(sys.argv[0]) == "vllm":
        sys.stderr.write("stand-in vllm: only `vllm serve MODEL ...` and `--version` exist\n")
        return 2
    return test_double(argv)


if __name__ == "__main__":
    sys.exit(main())
