# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE of a vLLM + LMCache OpenAI-compatible server (not a model server).

It exists only to exercise the client logic of roles/validate/files/gaudi_validate.py:

* ``GET /health`` answers 200, ``GET /v1/models`` lists one model id;
* ``POST /v1/completions`` with ``stream: true`` streams server-sent events; the first
  token is delayed by ``cold_delay`` seconds when the prompt's shared prefix (the prompt
  without its last line) has not been seen before, and by ``warm_delay`` when it has;
* ``GET /metrics`` exposes ``lmcache:num_hit_tokens_total`` (words of prefixes served warm).

With ``--persist-dir`` the seen prefixes are kept on disk, so a restarted double still
serves them warm (a stand-in for a Mode B shared cache). Standard library only, so it can
run in a minimal container as a systemd unit as well as in-process in the unit tests.
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TestDoubleState(object):
    """Mutable behaviour knobs and counters shared by the request handlers."""

    def __init__(
        self,
        model="test-double/llama-3.1-8b",
        cold_delay=0.5,
        warm_delay=0.02,
        persist_dir=None,
        metrics=True,
        health_status=200,
        hang_s=0.0,
        tokens=2,
    ):
        self.model = model
        self.cold_delay = cold_delay
        self.warm_delay = warm_delay
        self.persist_dir = persist_dir
        self.metrics = metrics
        self.health_status = health_status
        self.hang_s = hang_s
        self.tokens = tokens
        self.hit_tokens = 0
        self.requests = []
        self.lock = threading.Lock()
        self.seen = set()
        if persist_dir:
            os.makedirs(persist_dir, exist_ok=True)
            self.seen.update(os.listdir(persist_dir))

    def lookup_and_store(self, prompt):
        prefix = prompt.rsplit("\n", 1)[0]
        key = hashlib.sha256(prefix.encode("utf-8")).hexdigest()
        with self.lock:
            hit = key in self.seen
            self.seen.add(key)
            if hit:
                self.hit_tokens += len(prefix.split())
            if self.persist_dir and not hit:
                with open(os.path.join(self.persist_dir, key), "w") as handle:
                    handle.write("1")
        return hit, len(prompt.split())


class TestDoubleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-test-double/0"

    def log_message(self, *args):  # keep test output quiet
        pass

    @property
    def state(self):
        return self.server.state

    def _send(self, status, body, ctype="application/json"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.state.hang_s:
            time.sleep(self.state.hang_s)
        if self.path == "/health":
            self._send(self.state.health_status, "")
        elif self.path == "/v1/models":
            self._send(
                200,
                json.dumps(
                    {"object": "list", "data": [{"id": self.state.model, "object": "model", "owned_by": "test-double"}]}
                ),
            )
        elif self.path == "/metrics" and self.state.metrics:
            text = (
                "# HELP lmcache:num_hit_tokens_total Number of hit tokens\n"
                "# TYPE lmcache:num_hit_tokens_total counter\n"
                'lmcache:num_hit_tokens_total{model_name="%s",worker_id="0"} %.1f\n'
                'vllm:num_requests_running{model_name="%s"} 0.0\n'
            ) % (self.state.model, self.state.hit_tokens, self.state.model)
            self._send(200, text, "text/plain; version=0.0.4")
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length).decode("utf-8"))
        except ValueError:
            self._send(400, json.dumps({"error": "bad json"}))
            return
        if self.path != "/v1/completions":
            self._send(404, json.dumps({"error": "not found"}))
            return
        if payload.get("model") != self.state.model:
            self._send(404, json.dumps({"error": "model not found"}))
            return
        prompt = payload.get("prompt") or ""
        hit, prompt_tokens = self.state.lookup_and_store(prompt)
        self.state.requests.append({"hit": hit, "prompt_tokens": prompt_tokens})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        time.sleep(self.state.warm_delay if hit else self.state.cold_delay)
        for i in range(int(payload.get("max_tokens") or self.state.tokens)):
            event = {
                "id": "cmpl-test-double",
                "object": "text_completion",
                "model": self.state.model,
                "choices": [{"index": 0, "text": " tok%d" % i, "finish_reason": None}],
            }
            self.wfile.write(("data: %s\n\n" % json.dumps(event)).encode("utf-8"))
            self.wfile.flush()
        if (payload.get("stream_options") or {}).get("include_usage"):
            event = {
                "id": "cmpl-test-double",
                "object": "text_completion",
                "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2},
            }
            self.wfile.write(("data: %s\n\n" % json.dumps(event)).encode("utf-8"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def start(host="127.0.0.1", port=0, **kwargs):
    """Start the test double in a daemon thread; return (server, base_url)."""
    server = ThreadingHTTPServer((host, port), TestDoubleHandler)
    server.daemon_threads = True
    server.state = TestDoubleState(**kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, "http://%s:%d" % (host, server.server_address[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--model", default="test-double/llama-3.1-8b")
    parser.add_argument("--cold-delay", type=float, default=0.5)
    parser.add_argument("--warm-delay", type=float, default=0.02)
    parser.add_argument("--persist-dir")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), TestDoubleHandler)
    server.daemon_threads = True
    server.state = TestDoubleState(
        model=args.model, cold_delay=args.cold_delay, warm_delay=args.warm_delay, persist_dir=args.persist_dir
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
