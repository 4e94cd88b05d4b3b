# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-IN / TEST DOUBLE of a vLLM + LMCache OpenAI-compatible server (not a model server).

The one OpenAI-compatible server of the collection's tests. It is used three ways:

* in-process by the validate role's and the rolling check's unit tests (``start()``,
  ``make_server()``) and as a systemd unit in the validate scenario (``main()``), with a
  whole-prefix cache (``PrefixCache``): the first
  token is delayed by ``cold_delay`` seconds when the prompt's shared prefix (the prompt
  without its last line) has not been seen before, and by ``warm_delay`` when it has;
* inside the stand-in ``vllm`` wheel (``tests/standins/wheels``, copied there as
  ``vllm/_openai_server.py``), whose ``vllm serve`` uses a chunked cache (``ChunkCache``)
  like LMCache's: the prompt's words stand for tokens, cut into chunks of ``chunk_size``; a
  chunk whose prefix hash was seen before is a hit and every missed token costs
  ``cost_per_token`` seconds before the first streamed token.

Endpoints: ``GET /health``, ``GET /v1/models``, ``GET /metrics`` (``lmcache:num_hit_tokens_total``,
``lmcache:num_requested_tokens_total`` and vLLM's ``vllm:num_requests_running`` /
``vllm:num_requests_waiting`` gauges), ``GET /standin/info`` (when the caller gave one),
``POST /v1/completions`` (streaming or not). With a persistence directory the seen prefixes or
chunks are kept on disk, so a restarted server still serves them warm (a stand-in for a Mode B
shared cache). The speedups this produces are properties of the stand-in, not measurements of
vLLM. Standard library only, so it runs in a minimal container as well as in the unit tests.
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PrefixCache(object):
    """Whole-prefix cache: a hit when the prompt without its last line was seen before."""

    def __init__(self, cold_delay=0.5, warm_delay=0.02, persist_dir=None):
        self.cold_delay = cold_delay
        self.warm_delay = warm_delay
        self.persist_dir = persist_dir
        self.seen = set()
        if persist_dir:
            os.makedirs(persist_dir, exist_ok=True)
            self.seen.update(os.listdir(persist_dir))

    def lookup_and_store(self, prompt):
        """(hit, hit tokens, delay in seconds) of one prompt; remembers its prefix."""
        prefix = prompt.rsplit("\n", 1)[0]
        key = hashlib.sha256(prefix.encode("utf-8")).hexdigest()
        hit = key in self.seen
        self.seen.add(key)
        if self.persist_dir and not hit:
            with open(os.path.join(self.persist_dir, key), "w") as handle:
                handle.write("1")
        return hit, (len(prefix.split()) if hit else 0), (self.warm_delay if hit else self.cold_delay)


class ChunkCache(object):
    """Chunk-hash prefix cache, like LMCache's (each chunk's hash covers every chunk before it)."""

    def __init__(self, model, chunk_size=256, cost_per_token=0.0002, persist_dir=None):
        self.model = model
        self.chunk = max(1, int(chunk_size))
        self.cost = float(cost_per_token)
        self.path = persist_dir
        self.seen = set()

    def _marker(self, digest):
        return os.path.join(self.path, "standin-%s.chunk" % digest)

    def _known(self, digest):
        return digest in self.seen or (bool(self.path) and os.path.exists(self._marker(digest)))

    def _store(self, digest):
        self.seen.add(digest)
        if self.path:
            try:
                with open(self._marker(digest), "w"):
                    pass
            except OSError:
                pass

    def lookup_and_store(self, prompt):
        """(hit, hit tokens, delay in seconds): leading chunks seen before; every full chunk stored."""
        tokens = prompt.split()
        hits, prefix_hit, prev = 0, True, self.model
        for start in range(0, len(tokens) - len(tokens) % self.chunk, self.chunk):
            prev = hashlib.sha256((prev + "\x00" + " ".join(tokens[start : start + self.chunk])).encode()).hexdigest()
            if prefix_hit and self._known(prev):
                hits += self.chunk
            else:
                prefix_hit = False
                self._store(prev)
        return hits > 0, hits, min(60.0, (len(tokens) - hits) * self.cost)


class ServerState(object):
    """Behaviour knobs and counters shared by the request handlers."""

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
        cache=None,
        info=None,
        check_model=True,
        max_model_len=None,
        owned_by="test-double",
        completion_status=200,
        metric_families=("lmcache",),
        degraded=False,
        vary_text=False,
    ):
        self.model = model
        self.cache = cache or PrefixCache(cold_delay, warm_delay, persist_dir)
        self.metrics = metrics
        self.health_status = health_status
        self.hang_s = hang_s
        self.tokens = tokens
        self.info = info
        self.check_model = check_model
        self.max_model_len = max_model_len
        self.owned_by = owned_by
        # Another status makes every completion fail with it (a node that broke).
        self.completion_status = completion_status
        # Which hit counters /metrics exports: "lmcache" (lmcache:num_hit_tokens_total), "external"
        # (vLLM's vllm:external_prefix_cache_hits_total), "activity" (LMCache's lookup and store
        # request counters); "lmcache_lagging" and "activity_lagging" export those LMCache
        # counters stuck at 0 (the real LMCache flushes them every 10 s).
        self.metric_families = tuple(metric_families)
        # LMCache's degraded (recompute) mode: no hit, no lookup or store counted.
        self.degraded = degraded
        # Each completion's text differs (a cache that does not reproduce the computed KV).
        self.vary_text = vary_text
        self.lookups = 0
        self.stores = 0
        self.hit_tokens = 0
        self.requested_tokens = 0
        self.running = 0
        self.requests = []
        self.scrapes = 0
        self.lock = threading.Lock()

    def lookup_and_store(self, prompt):
        """(hit, prompt tokens, delay) of one request; counts it."""
        with self.lock:
            if self.degraded:
                hit, hits, delay = False, 0, getattr(self.cache, "cold_delay", 0.5)
            else:
                hit, hits, delay = self.cache.lookup_and_store(prompt)
                self.lookups += 1
                self.stores += 1
            prompt_tokens = len(prompt.split())
            self.hit_tokens += hits
            self.requested_tokens += prompt_tokens
            self.requests.append({"hit": hit, "prompt_tokens": prompt_tokens, "hit_tokens": hits})
        return hit, prompt_tokens, delay


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-standin/1"

    def log_message(self, *args):  # keep test output and the journal quiet
        pass

    @property
    def state(self):
        return self.server.state

    def _send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _metrics(self):
        st = self.state
        labels = 'model_name="%s"' % st.model
        families = st.metric_families
        extra = ""
        if "lmcache" in families or "lmcache_lagging" in families:
            extra += (
                "# HELP lmcache:num_hit_tokens_total Number of hit tokens\n"
                "# TYPE lmcache:num_hit_tokens_total counter\n"
                'lmcache:num_hit_tokens_total{%s,worker_id="0"} %.1f\n'
            ) % (labels, st.hit_tokens if "lmcache" in families else 0.0)
        if "external" in families:
            extra += (
                "# TYPE vllm:external_prefix_cache_hits_total counter\n"
                "vllm:external_prefix_cache_hits_total{%s,engine=\"0\"} %.1f\n"
            ) % (labels, st.hit_tokens)
        if "activity" in families or "activity_lagging" in families:
            lagging = "activity" not in families
            extra += (
                "# TYPE lmcache:num_lookup_requests_total counter\n"
                'lmcache:num_lookup_requests_total{%s,worker_id="0"} %.1f\n'
                "# TYPE lmcache:num_store_requests_total counter\n"
                'lmcache:num_store_requests_total{%s,worker_id="0"} %.1f\n'
            ) % (labels, 0 if lagging else st.lookups, labels, 0 if lagging else st.stores)
        return extra + (
            "# TYPE lmcache:num_requested_tokens_total counter\n"
            'lmcache:num_requested_tokens_total{%s,worker_id="0"} %.1f\n'
            "# TYPE vllm:num_requests_running gauge\n"
            "vllm:num_requests_running{%s} %.1f\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            "vllm:num_requests_waiting{%s} 0.0\n"
        ) % (labels, st.requested_tokens, labels, st.running, labels)

    def do_GET(self):  # noqa: N802
        st = self.state
        if st.hang_s:
            time.sleep(st.hang_s)
        if self.path == "/health":
            self._send(st.health_status, "", "text/plain")
        elif self.path == "/v1/models":
            entry = {"id": st.model, "object": "model", "owned_by": st.owned_by}
            if st.max_model_len is not None:
                entry["max_model_len"] = st.max_model_len
            self._send(200, json.dumps({"object": "list", "data": [entry]}))
        elif self.path == "/metrics" and st.metrics:
            with st.lock:
                st.scrapes += 1
            self._send(200, self._metrics(), "text/plain; version=0.0.4")
        elif self.path == "/standin/info" and st.info is not None:
            self._send(200, json.dumps(st.info))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def _event(self, body):
        self.wfile.write(("data: %s\n\n" % json.dumps(body)).encode("utf-8"))
        self.wfile.flush()

    def do_POST(self):  # noqa: N802
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length).decode("utf-8") or "{}")
        except ValueError:
            self._send(400, json.dumps({"error": "bad json"}))
            return
        if self.path != "/v1/completions":
            self._send(404, json.dumps({"error": "not found"}))
            return
        if st.check_model and payload.get("model") != st.model:
            self._send(404, json.dumps({"error": "model not found"}))
            return
        if st.completion_status != 200:
            self._send(st.completion_status, json.dumps({"error": "the server is broken"}))
            return
        prompt = str(payload.get("prompt") or "")
        with st.lock:
            st.running += 1
        try:
            self._complete(st, payload, prompt)
        finally:
            with st.lock:
                st.running -= 1

    def _complete(self, st, payload, prompt):
        dummy, prompt_tokens, delay = st.lookup_and_store(prompt)
        count = max(1, int(payload.get("max_tokens") or st.tokens))
        word = "tok%d-" % len(st.requests) if st.vary_text else "tok"
        base = {"id": "cmpl-standin", "object": "text_completion", "model": st.model}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count}
        if not payload.get("stream"):
            time.sleep(delay)
            text = "".join(" %s%d" % (word, i) for i in range(count))
            body = dict(base, choices=[{"index": 0, "text": text, "finish_reason": "length"}], usage=usage)
            self._send(200, json.dumps(body))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        time.sleep(delay)
        for i in range(count):
            self._event(dict(base, choices=[{"index": 0, "text": " %s%d" % (word, i), "finish_reason": None}]))
        if (payload.get("stream_options") or {}).get("include_usage"):
            self._event(dict(base, choices=[], usage=usage))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def make_server(host, port, state):
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.state = state
    return server


def start(host="127.0.0.1", port=0, **kwargs):
    """Start the server in a daemon thread; return (server, base_url)."""
    server = make_server(host, port, ServerState(**kwargs))
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
    state = ServerState(
        model=args.model, cold_delay=args.cold_delay, warm_delay=args.warm_delay, persist_dir=args.persist_dir
    )
    make_server(args.host, args.port, state).serve_forever()


if __name__ == "__main__":
    main()
