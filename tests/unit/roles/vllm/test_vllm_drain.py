# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/vllm tasks_from: drain against a local HTTP server that plays vLLM's /metrics: it
waits while vllm:num_requests_running / vllm:num_requests_waiting are above 0, passes once they
are 0 or the instance does not answer, fails naming the instance at the timeout or when the
gauges are missing; the restart timeline writes one JSON line per step on the control node."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.vllm import vllm_testlib


class Metrics(object):
    """/metrics text: requests in flight for the first `busy_reads` reads, then idle."""

    def __init__(self, busy_reads=0, gauges=True):
        self.busy_reads = busy_reads
        self.gauges = gauges
        self.reads = 0

    def text(self):
        self.reads += 1
        busy = self.reads <= self.busy_reads
        if not self.gauges:
            return "# HELP vllm_standin_up\nvllm_standin_up 1\n"
        if self.gauges == "running":  # one gauge only: whether requests wait is unknown
            return 'vllm:num_requests_running{model_name="m"} 0.0\n'
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0",model_name="m"} %s\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            'vllm:num_requests_waiting{engine="0",model_name="m"} %s\n'
            % ("1.0" if busy else "0.0", "2.0" if busy else "0.0")
        )


def serve(metrics):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = metrics.text().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, port, extra, tasks_from="drain"):
    """The role's tasks_from (drain or timeline) on localhost through the shared runner."""
    book = [
        {
            "name": "Drain",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Drain",
                    "ansible.builtin.include_role": {"name": "gaudi.vllm_lmcache.vllm", "tasks_from": tasks_from},
                }
            ],
        }
    ]
    variables = {"vllm_instances": [{"name": "a", "model": "m", "port": port}], "vllm_drain_delay": 1}
    variables.update(extra)
    started = time.monotonic()
    rc, out = vllm_testlib.play(tmp_path, yaml.safe_dump(book), variables)
    return rc, out, time.monotonic() - started


def test_waits_until_no_request_is_in_flight(tmp_path):
    metrics = Metrics(busy_reads=2)
    server = serve(metrics)
    rc, out, _elapsed = run(tmp_path, server.server_address[1], {"vllm_drain_timeout": 120})
    server.shutdown()
    assert rc == 0, out
    # Read twice while busy, then once idle: the wait ended on the gauges, not at once.
    assert metrics.reads == 3, out


def test_fails_at_the_timeout_naming_the_instance(tmp_path):
    server = serve(Metrics(busy_reads=10**6))
    rc, out, _elapsed = run(tmp_path, server.server_address[1], {"vllm_drain_timeout": 2})
    server.shutdown()
    assert rc != 0, out
    assert (
        "a on localhost (port %d): still 3 running or waiting request(s) after vllm_drain_timeout=2 s"
        % server.server_address[1]
        in out
    ), out


def test_restart_anyway_on_timeout_when_asked(tmp_path):
    server = serve(Metrics(busy_reads=10**6))
    rc, out, _elapsed = run(
        tmp_path, server.server_address[1], {"vllm_drain_timeout": 2, "vllm_drain_on_timeout": "restart"}
    )
    server.shutdown()
    assert rc == 0, out


def test_missing_gauges_fail_unless_allowed(tmp_path):
    server = serve(Metrics(gauges=False))
    port = server.server_address[1]
    rc, out, _elapsed = run(tmp_path, port, {"vllm_drain_timeout": 60})
    assert rc != 0, out
    assert "has no vllm:num_requests_running / vllm:num_requests_waiting gauges" in out, out
    rc, out, _elapsed = run(tmp_path, port, {"vllm_drain_timeout": 60, "vllm_drain_require_metrics": False})
    server.shutdown()
    assert rc == 0, out
    server = serve(Metrics(gauges="running"))
    rc, out, _elapsed = run(tmp_path, server.server_address[1], {"vllm_drain_timeout": 60})
    server.shutdown()
    assert rc != 0 and "has no vllm:num_requests_running / vllm:num_requests_waiting gauges" in out, out


def test_an_instance_that_does_not_answer_has_nothing_to_drain(tmp_path):
    rc, out, _elapsed = run(tmp_path, free_port(), {"vllm_drain_timeout": 600})
    assert rc == 0, out
    assert "not serving" in out, out


def test_timeline_lines(tmp_path):
    timeline = tmp_path / "timeline"
    timeline.mkdir()
    variables = {
        "vllm_restart_timeline_dir": str(timeline),
        "__vllm_restart_name": "a",
        "__vllm_timeline_event": "restart",
    }
    rc, out, _elapsed = run(tmp_path, 8123, variables, tasks_from="timeline")
    assert rc == 0, out
    (line,) = (timeline / "localhost.jsonl").read_text().splitlines()
    event = json.loads(line)
    assert (
        event["node"] == "localhost"
        and event["instance"] == "a"
        and event["port"] == 8123
        and event["event"] == "restart"
    )
    assert event["time"].endswith("Z") and "T" in event["time"]
