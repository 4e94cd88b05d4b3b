# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/vllm tasks/wait_health.yml, the one /health wait of service.yml, restart.yml and
healthy.yml, against a local HTTP server: it waits while /health answers 503, passes at the
first 200, and fails once vllm_health_timeout is used up."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.vllm import vllm_testlib


def serve(unhealthy_reads):
    reads = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            reads.append(self.path)
            self.send_response(503 if len(reads) <= unhealthy_reads else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, reads


def run(tmp_path, port, timeout):
    book = [
        {
            "name": "Wait for /health",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Wait",
                    "ansible.builtin.include_role": {"name": "gaudi.vllm_lmcache.vllm", "tasks_from": "wait_health"},
                }
            ],
        }
    ]
    instance = {"name": "a", "model": "m", "port": port}
    variables = {
        "vllm_instances": [instance],
        "__vllm_health_instances": [instance],
        "vllm_health_host": "127.0.0.1",
        "vllm_health_delay": 1,
        "vllm_health_timeout": timeout,
    }
    return vllm_testlib.play(tmp_path, yaml.safe_dump(book), variables)


def test_waits_through_unhealthy_answers_until_200(tmp_path):
    server, reads = serve(unhealthy_reads=2)
    rc, out = run(tmp_path, server.server_address[1], timeout=60)
    server.shutdown()
    assert rc == 0, out
    assert reads == ["/health"] * 3, out


def test_fails_when_health_stays_bad_past_the_timeout(tmp_path):
    server, reads = serve(unhealthy_reads=10**6)
    rc, out = run(tmp_path, server.server_address[1], timeout=2)
    server.shutdown()
    assert rc != 0, out
    assert "a :%d" % server.server_address[1] in out and 1 < len(reads) < 10, out
