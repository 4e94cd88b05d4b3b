"""STAND-IN `vllm` command line (test double, not vLLM).

`vllm serve MODEL --port N ...` starts a tiny HTTP server on the given port that answers
GET /health, GET /v1/models, POST /v1/completions (plain or streaming) and
GET /standin/info (what the process received: arguments, the parsed --kv-transfer-config,
the LMCache config file named by LMCACHE_CONFIG_FILE, selected environment variables and
whether the Prometheus and shared LMCache directories are writable). No model is loaded.

It fails the way a misconfigured server would: exit 2 for an unparsable
--kv-transfer-config, 3 for an unreadable LMCACHE_CONFIG_FILE and 4 for an unwritable
PROMETHEUS_MULTIPROC_DIR, so systemd, the readiness wait and the tests see real failures.
"""
import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vllm import __version__

ENV_KEYS = ("PT_HPU_LAZY_MODE", "PT_HPU_ENABLE_LAZY_COLLECTIVES", "PYTHONHASHSEED",
            "PROMETHEUS_MULTIPROC_DIR", "LMCACHE_CONFIG_FILE", "HF_HOME")


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
            path = "/" + remote[len("fs://"):].split("/", 1)[1] if "/" in remote[len("fs://"):] else ""
            state["shared_tier_path"] = path
            state["shared_tier_writable"] = bool(path) and probe_writable(path)
    prom = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if prom and not probe_writable(prom):
        sys.stderr.write("standin vllm: PROMETHEUS_MULTIPROC_DIR %s is not writable\n" % prom)
        sys.exit(4)
    return state


def make_handler(state):
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
                self._send(200, {"object": "list", "data": [{
                    "id": state["model"], "object": "model", "owned_by": "vllm-standin",
                    "max_model_len": state["max_model_len"]}]})
            elif self.path == "/standin/info":
                self._send(200, state)
            elif self.path == "/metrics":
                self._send(200, b"# stand-in vllm\nvllm_standin_up 1\n", "text/plain")
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
            words = ["stand-in", "completion", "from", "a", "test", "double"]
            words = words[: max(1, min(len(words), int(req.get("max_tokens", 6))))]
            base = {"id": "cmpl-standin", "object": "text_completion", "model": state["model"]}
            if not req.get("stream"):
                body = dict(base, choices=[{"index": 0, "text": " ".join(words), "finish_reason": "length"}],
                            usage={"prompt_tokens": len(str(req.get("prompt", "")).split()),
                                   "completion_tokens": len(words)})
                self._send(200, body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, word in enumerate(words):
                chunk = dict(base, choices=[{"index": 0, "text": (" " if i else "") + word,
                                             "finish_reason": None}])
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
