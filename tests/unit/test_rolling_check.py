# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/rolling-check.py: the verdict logic on synthetic requests and timelines, and the
whole loop against three local OpenAI-style servers of which one restarts (recorded in a
timeline, as the vllm role writes it) and, in the failing case, another one breaks unannounced."""

import datetime
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

SCRIPT = os.path.join(lib.ROOT, "scripts", "rolling-check.py")
rc_mod = lib.load(SCRIPT, "rolling_check_under_test")
standin = lib.load_test_double()


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def req(node, start, ok=True, length=0.1):
    return {"node": node, "start": start, "end": start + length, "ok": ok, "error": None if ok else "refused"}


def test_endpoints_must_be_loopback():
    assert rc_mod.parse_endpoint("a=http://127.0.0.1:8000/") == ("a", "http://127.0.0.1:8000")
    assert rc_mod.parse_endpoint("b=http://localhost:1") == ("b", "http://localhost:1")
    for bad in ("http://127.0.0.1:8000", "a=http://10.0.0.5:8000", "a=ftp://127.0.0.1/", "a="):
        with pytest.raises(ValueError):
            rc_mod.parse_endpoint(bad)


def test_timeline_windows(tmp_path):
    lines = [
        {"node": "n1", "instance": "x", "event": "drain", "time": iso(100.0)},
        {"node": "n1", "instance": "x", "event": "restart", "time": iso(101.0)},
        {"node": "n1", "instance": "x", "event": "healthy", "time": iso(104.5)},
    ]
    (tmp_path / "n1.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "n2.jsonl").write_text(
        json.dumps({"node": "n2", "instance": "x", "event": "restart", "time": iso(110.0)})
    )
    windows = rc_mod.restart_windows(rc_mod.read_timeline(str(tmp_path)), end_time=120.0)
    assert windows == {"n1": [(101.0, 104.5)], "n2": [(110.0, 120.0)]}  # n2 never became healthy


def test_bad_timeline_line(tmp_path):
    (tmp_path / "n1.jsonl").write_text('{"node": "n1"}\n')
    with pytest.raises(ValueError, match="n1.jsonl:1"):
        rc_mod.read_timeline(str(tmp_path))


def test_longest_gap_counts_the_edges():
    assert rc_mod.longest_gap([1.0, 2.0, 6.0], 0.0, 7.0)[0] == 4.0
    assert rc_mod.longest_gap([], 0.0, 3.0)[0] == 3.0


def test_failures_inside_the_window_pass_outside_fail():
    windows = {"n1": [(10.0, 12.0)]}
    requests = [req("n2", t / 2.0) for t in range(0, 40)] + [req("n1", 10.5, ok=False), req("n1", 12.4, ok=False)]
    verdict = rc_mod.judge(requests, windows, 0.0, 20.0, max_gap=5.0, slack=0.5)
    assert verdict["verdict"] == "pass", verdict
    assert verdict["failed"] == 2 and verdict["failed_while_restarting"] == 2 and verdict["failed_unexpected"] == 0
    requests.append(req("n2", 11.0, ok=False))
    verdict = rc_mod.judge(requests, windows, 0.0, 20.0, max_gap=5.0, slack=0.5)
    assert verdict["verdict"] == "fail"
    assert verdict["problems"] == ["1 request(s) failed on a node that was not being restarted"]
    assert verdict["unexpected_failures"] == [{"node": "n2", "at_s": 11.0, "error": "refused"}]


def test_gap_restarts_and_overlap_are_judged():
    windows = {"n1": [(2.0, 6.0)], "n2": [(5.0, 8.0)]}
    requests = [req("n3", 1.0), req("n3", 9.0)]
    verdict = rc_mod.judge(requests, windows, 0.0, 10.0, max_gap=3.0, slack=0.0, expect_restarts=3, expect_serial=True)
    assert verdict["verdict"] == "fail"
    problems = " | ".join(verdict["problems"])
    assert "no node answered for 8.00 s (from 1.10 s to 9.10 s" in problems
    assert "2 node(s) recorded a restart, expected at least 3" in problems
    assert "restart windows of different nodes overlap: n1+n2" in problems
    assert rc_mod.judge([], {}, 0.0, 1.0, 5.0, 0.0)["problems"][0] == "no request was answered"


class Node(object):
    """The OpenAI stand-in server (tests/standins/openai_server.py) on a fixed port that can be
    stopped and started again; ``broken`` makes its completions fail with 500."""

    def __init__(self, port=0):
        self.port, self.server = port, None
        self.state = standin.ServerState(model="m", cold_delay=0.0, warm_delay=0.0, check_model=False)
        self.start()

    @property
    def broken(self):
        return self.state.completion_status != 200

    @broken.setter
    def broken(self, value):
        self.state.completion_status = 500 if value else 200

    def start(self):
        self.server = standin.make_server("127.0.0.1", self.port, self.state)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def record(timeline, node, event):
    with open(os.path.join(timeline, node + ".jsonl"), "a") as fh:
        fh.write(
            json.dumps({"node": node, "instance": "x", "port": 0, "event": event, "time": iso(time.time())}) + "\n"
        )


def roll(tmp_path, break_unannounced):
    nodes = {name: Node() for name in ("n1", "n2", "n3")}
    timeline = tmp_path / "timeline"
    timeline.mkdir()
    stop, ready, out = tmp_path / "stop", tmp_path / "ready", tmp_path / "verdict.json"
    args = [sys.executable, SCRIPT, "--timeline-dir", str(timeline), "--stop-file", str(stop)]
    args += ["--ready-file", str(ready), "--duration", "60", "--interval", "0.05", "--timeout", "5"]
    args += ["--max-gap", "2", "--slack", "0.2", "--expect-restarts", "2", "--expect-serial", "--out", str(out)]
    args += ["--endpoint=%s=http://127.0.0.1:%d" % (n, node.port) for n, node in nodes.items()]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        # A serial roll: n1, then n2, each down for a moment between its restart and healthy events.
        for name in ("n1", "n2"):
            record(str(timeline), name, "drain")
            record(str(timeline), name, "restart")
            nodes[name].stop()
            time.sleep(0.5)
            nodes[name].start()
            time.sleep(0.2)
            record(str(timeline), name, "healthy")
            time.sleep(0.3)
        if break_unannounced:
            nodes["n3"].broken = True
            time.sleep(0.5)
            nodes["n3"].broken = False
        stop.write_text("")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for node in nodes.values():
            node.stop()
    return proc.returncode, json.loads(out.read_text()), stdout + stderr


def test_loop_passes_a_serial_roll(tmp_path):
    code, verdict, output = roll(tmp_path, break_unannounced=False)
    assert code == 0, output
    assert verdict["verdict"] == "pass", verdict
    assert verdict["sent"] > 30 and verdict["answered"] > 0
    assert verdict["failed"] == verdict["failed_while_restarting"]
    assert verdict["failed_while_restarting"] > 0, verdict  # the stopped nodes did refuse requests
    assert verdict["longest_gap_s"] < 2
    assert [len(verdict["per_node"][n]["restart_windows_s"]) for n in ("n1", "n2", "n3")] == [1, 1, 0]


def test_loop_fails_when_a_node_breaks_outside_a_restart(tmp_path):
    code, verdict, output = roll(tmp_path, break_unannounced=True)
    assert code == 1, output
    assert verdict["failed_unexpected"] > 0
    assert {f["node"] for f in verdict["unexpected_failures"]} == {"n3"}
    assert "HTTPError" in verdict["unexpected_failures"][0]["error"]


def test_usage_errors(tmp_path):
    res = subprocess.run(
        [sys.executable, SCRIPT, "--endpoint", "a=http://192.0.2.1:80", "--timeline-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2 and "loopback" in res.stderr
    res = subprocess.run(
        [sys.executable, SCRIPT, "--endpoint", "a=http://127.0.0.1:1", "--timeline-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2 and "is not a directory" in res.stderr
