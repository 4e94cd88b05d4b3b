"""Request loop across a serving fleet while a change rolls through it; judges the roll.

One thread per node sends OpenAI completion requests, one after another, to that node's
endpoint (loopback addresses only: run it where the endpoints are 127.0.0.1/::1/localhost),
until --stop-file exists, --duration seconds have passed or --max-requests were sent. The
restart timeline the vllm role writes (vllm_restart_timeline_dir: <dir>/<node>.jsonl, one JSON
object per line with node, instance, port, event drain|restart|healthy and an ISO UTC time)
says when each node was being restarted: from its "restart" event to its next "healthy" event
(--slack seconds either side for the clock of the recording step).

Verdict (exit 0 pass, 1 fail, 2 bad usage), printed as JSON and written to --out:
  - at every moment at least one node answered: the longest stretch of the run without a
    successful answer from any node is at most --max-gap seconds;
  - no request failed on a node outside that node's restart windows;
  - with --expect-restarts N: at least N nodes recorded a restart; with --expect-serial: no
    two nodes' restart windows overlap (a roll of serial 1).
It reports requests sent, failed (and how many of those were on a node being restarted), the
longest gap, each node's restart windows and the first unexpected failures.

Standard library only. Example:

    python3 scripts/rolling-check.py --endpoint gaudi-01=http://127.0.0.1:8000 \\
        --endpoint gaudi-02=http://127.0.0.1:8001 --timeline-dir /tmp/timeline \\
        --stop-file /tmp/stop --duration 1800 --out /tmp/rolling.json
"""

import argparse
import datetime
import glob
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def parse_endpoint(text):
    node, sep, url = text.partition("=")
    if not sep or not node or not url:
        raise ValueError("--endpoint %r: expected NODE=URL" % text)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in LOOPBACK:
        raise ValueError(
            "--endpoint %r: the URL must be http(s) on a loopback address (%s)" % (text, ", ".join(LOOPBACK))
        )
    return node, url.rstrip("/")


def parse_time(text):
    """ISO 8601 UTC ('2026-01-02T03:04:05.678901Z') to epoch seconds."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


def read_timeline(directory):
    """Events of every <node>.jsonl under DIRECTORY, sorted by time."""
    events = []
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path) as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                    event["t"] = parse_time(event["time"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError("%s:%d: not a timeline event (%s)" % (path, number, exc))
                events.append(event)
    return sorted(events, key=lambda e: e["t"])


def restart_windows(events, end_time):
    """{node: [(start, end), ...]} from restart..healthy per instance; an open one ends at END_TIME."""
    open_at, windows = {}, {}
    for event in events:
        key = (event.get("node"), event.get("instance"))
        if event.get("event") == "restart":
            open_at.setdefault(key, event["t"])
        elif event.get("event") == "healthy" and key in open_at:
            windows.setdefault(key[0], []).append((open_at.pop(key), event["t"]))
    for key, start in open_at.items():
        windows.setdefault(key[0], []).append((start, end_time))
    return {node: sorted(w) for node, w in windows.items()}


def longest_gap(successes, start, end):
    """Longest stretch of [START, END] with no successful answer (answer times SUCCESSES)."""
    points = [start] + sorted(t for t in successes if start <= t <= end) + [end]
    best, where = 0.0, (start, start)
    for a, b in zip(points, points[1:]):
        if b - a > best:
            best, where = b - a, (a, b)
    return best, where


def windows_overlap(windows):
    """Pairs of different nodes whose restart windows overlap."""
    flat = sorted((s, e, node) for node, ws in windows.items() for s, e in ws)
    pairs = []
    for i, (_s1, e1, n1) in enumerate(flat):
        for s2, _e2, n2 in flat[i + 1 :]:
            if s2 >= e1:
                break
            if n1 != n2:
                pairs.append((n1, n2))
    return sorted(set(pairs))


def judge(requests, windows, start, end, max_gap, slack, expect_restarts=0, expect_serial=False):
    """The verdict over REQUESTS (dicts: node, start, end, ok, error) and restart WINDOWS."""

    def in_window(req):
        return any(s - slack <= req["end"] and req["start"] <= e + slack for s, e in windows.get(req["node"], []))

    failed = [r for r in requests if not r["ok"]]
    unexpected = [r for r in failed if not in_window(r)]
    gap, gap_at = longest_gap([r["end"] for r in requests if r["ok"]], start, end)
    overlaps = windows_overlap(windows)
    problems = []
    if not any(r["ok"] for r in requests):
        problems.append("no request was answered")
    if gap > max_gap:
        problems.append(
            "no node answered for %.2f s (from %.2f s to %.2f s into the run; --max-gap %.2f s)"
            % (gap, gap_at[0] - start, gap_at[1] - start, max_gap)
        )
    if unexpected:
        problems.append("%d request(s) failed on a node that was not being restarted" % len(unexpected))
    if len(windows) < expect_restarts:
        problems.append("%d node(s) recorded a restart, expected at least %d" % (len(windows), expect_restarts))
    if expect_serial and overlaps:
        problems.append("restart windows of different nodes overlap: %s" % ", ".join("%s+%s" % p for p in overlaps))
    nodes = sorted(set(r["node"] for r in requests))
    return {
        "verdict": "fail" if problems else "pass",
        "problems": problems,
        "duration_s": round(end - start, 3),
        "sent": len(requests),
        "answered": len(requests) - len(failed),
        "failed": len(failed),
        "failed_while_restarting": len(failed) - len(unexpected),
        "failed_unexpected": len(unexpected),
        "longest_gap_s": round(gap, 3),
        "per_node": {
            n: {
                "sent": sum(1 for r in requests if r["node"] == n),
                "failed": sum(1 for r in failed if r["node"] == n),
                "restart_windows_s": [[round(s - start, 3), round(e - start, 3)] for s, e in windows.get(n, [])],
            }
            for n in sorted(set(nodes) | set(windows))
        },
        "restart_overlaps": [list(p) for p in overlaps],
        "unexpected_failures": [
            {"node": r["node"], "at_s": round(r["start"] - start, 3), "error": r["error"]} for r in unexpected[:20]
        ],
    }


class Loop(object):
    def __init__(self, endpoints, model, prompt, max_tokens, timeout, interval, stop_file, deadline, max_requests):
        self.endpoints, self.model, self.prompt, self.max_tokens = endpoints, model, prompt, max_tokens
        self.timeout, self.interval, self.stop_file = timeout, interval, stop_file
        self.deadline, self.max_requests = deadline, max_requests
        self.requests, self.lock, self.stopped = [], threading.Lock(), threading.Event()

    def done(self):
        if self.stopped.is_set():
            return True
        if time.time() >= self.deadline or (self.stop_file and os.path.exists(self.stop_file)):
            self.stopped.set()
        with self.lock:
            if self.max_requests and len(self.requests) >= self.max_requests:
                self.stopped.set()
        return self.stopped.is_set()

    def model_of(self, url):
        if self.model:
            return self.model
        with urllib.request.urlopen(url + "/v1/models", timeout=self.timeout) as resp:
            return json.loads(resp.read().decode())["data"][0]["id"]

    def one(self, node, url, model):
        started, error = time.time(), None
        try:
            model = model or self.model_of(url)
            body = json.dumps({"model": model, "prompt": self.prompt, "max_tokens": self.max_tokens, "temperature": 0})
            req = urllib.request.Request(
                url + "/v1/completions", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read().decode())
            if not answer.get("choices"):
                error = "answer without choices"
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
            model = None
        with self.lock:
            self.requests.append(
                {"node": node, "start": started, "end": time.time(), "ok": error is None, "error": error}
            )
        return model

    def worker(self, node, url):
        model = None
        while not self.done():
            model = self.one(node, url, model)
            self.stopped.wait(self.interval)

    def run(self):
        threads = [threading.Thread(target=self.worker, args=item, daemon=True) for item in self.endpoints]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--endpoint", action="append", required=True, help="NODE=URL (loopback), once per node")
    parser.add_argument("--timeline-dir", required=True, help="the vllm role's vllm_restart_timeline_dir")
    parser.add_argument("--stop-file", default="", help="stop when this file exists")
    parser.add_argument("--ready-file", default="", help="written once the first round of requests was sent")
    parser.add_argument("--duration", type=float, default=600.0, help="stop after this many seconds (bound)")
    parser.add_argument("--max-requests", type=int, default=0, help="stop after this many requests (0: no bound)")
    parser.add_argument("--interval", type=float, default=0.2, help="pause between two requests to one node")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    parser.add_argument("--max-gap", type=float, default=5.0, help="longest allowed stretch with no answer")
    parser.add_argument("--slack", type=float, default=1.0, help="seconds around each restart window")
    parser.add_argument("--model", default="", help="model name (default: each node's first /v1/models entry)")
    parser.add_argument("--prompt", default="The rolling restart check says hello")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--expect-restarts", type=int, default=0, help="fail unless this many nodes restarted")
    parser.add_argument("--expect-serial", action="store_true", help="fail when two nodes' restarts overlap")
    parser.add_argument("--out", default="", help="also write the verdict JSON here")
    args = parser.parse_args(argv)
    try:
        endpoints = [parse_endpoint(e) for e in args.endpoint]
    except ValueError as exc:
        parser.error(str(exc))
    if len(set(n for n, _u in endpoints)) != len(endpoints):
        parser.error("--endpoint: a node is named twice")
    if args.duration <= 0 or args.interval < 0 or args.timeout <= 0 or args.max_gap <= 0:
        parser.error("--duration, --timeout and --max-gap must be > 0, --interval >= 0")
    if not os.path.isdir(args.timeline_dir):
        parser.error("--timeline-dir %s is not a directory" % args.timeline_dir)
    start = time.time()
    loop = Loop(
        endpoints,
        args.model,
        args.prompt,
        args.max_tokens,
        args.timeout,
        args.interval,
        args.stop_file,
        start + args.duration,
        args.max_requests,
    )
    if args.ready_file:

        def ready():
            while not loop.stopped.is_set():
                with loop.lock:
                    seen = set(r["node"] for r in loop.requests)
                if len(seen) == len(endpoints):
                    with open(args.ready_file, "w") as fh:
                        fh.write("%f\n" % time.time())
                    return
                time.sleep(0.05)

        threading.Thread(target=ready, daemon=True).start()
    loop.run()
    end = time.time()
    try:
        windows = restart_windows(read_timeline(args.timeline_dir), end)
    except (OSError, ValueError) as exc:
        sys.stderr.write("rolling-check: %s\n" % exc)
        return 2
    result = judge(
        loop.requests, windows, start, end, args.max_gap, args.slack, args.expect_restarts, args.expect_serial
    )
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0 if result["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
