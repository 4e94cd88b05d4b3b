# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""serving tier against the OpenAI-compatible TEST DOUBLE (tests/standins/openai_server.py)."""

import socket
import sys

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()
double = lib.load_test_double()


@pytest.fixture
def server():
    started = []

    def _start(**kwargs):
        # 1 s against 0.01 s: the default 5x threshold holds unless a warm request takes 0.2 s
        # longer than the double's own delay, far beyond what a loaded machine adds.
        kwargs.setdefault("cold_delay", 1.0)
        kwargs.setdefault("warm_delay", 0.01)
        srv, url = double.start(**kwargs)
        started.append(srv)
        return srv, url

    yield _start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def serving(url, *extra):
    args = gv.parse_args(
        ["--endpoint", url, "--prompt-tokens", "512", "--warm-repeats", "2", "--request-timeout", "5"] + list(extra)
    )
    return gv.tier_serving(args, {"device": "cpu", "device_how": "test"})


def test_cold_then_warm_passes_with_lmcache_hits(server):
    srv, url = server()
    status, reason, figs = serving(url)
    assert status == "pass", reason
    assert figs["model"] == "test-double/llama-3.1-8b" and figs["health"] == 200
    assert figs["cold_ttft_s"] >= 1.0 and figs["warm_ttft_median_s"] < figs["cold_ttft_s"]
    assert figs["speedup"] >= 5 and len(figs["warm_ttft_s"]) == 2
    hits = figs["lmcache_hits"]
    assert hits["exposed"] and hits["metric"] == "lmcache:num_hit_tokens_total"
    assert hits["delta"] >= 2 * 512
    # prompt length in words is what the test double counts as tokens
    assert 512 < figs["prompt_tokens_reported"] < 540
    assert [r["hit"] for r in srv.state.requests] == [False, True, True]


def test_cold_prompt_is_unique_per_run(server):
    srv, url = server()
    serving(url)
    serving(url)
    assert [r["hit"] for r in srv.state.requests] == [False, True, True, False, True, True]


def test_no_speedup_fails_with_figures(server):
    dummy, url = server(cold_delay=0.05, warm_delay=0.05)
    status, reason, figs = serving(url)
    assert status == "fail" and "below 5.00x" in reason
    assert figs["speedup"] < 5


def test_metrics_not_exposed_is_reported_not_failed(server):
    dummy, url = server(metrics=False)
    status, reason, figs = serving(url)
    assert status == "pass", reason
    assert figs["lmcache_hits"]["exposed"] is False and "404" in figs["lmcache_hits"]["reason"]
    status, reason, dummy = serving(url, "--require-lmcache-hits")
    assert status == "fail" and "not exposed" in reason


def test_unknown_model_fails(server):
    dummy, url = server()
    status, reason, dummy = serving(url, "--model", "meta-llama/Llama-3.1-70B")
    assert status == "fail" and "not served" in reason


def test_unhealthy_fails(server):
    dummy, url = server(health_status=503)
    status, reason, dummy = serving(url)
    assert status == "fail" and "HTTP 503" in reason


def test_unreachable_endpoint_fails_with_reason():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    status, reason, dummy = serving("http://127.0.0.1:%d" % port)
    assert status == "fail" and "health check" in reason and "refused" in reason.lower()


def test_timeout_fails_with_reason(server):
    dummy, url = server(hang_s=3)
    args = ["--request-timeout", "0.5"]
    status, reason, dummy = serving(url, *args)
    assert status == "fail" and "timed out" in reason


def test_restart_check_passes_when_cache_survives(server, tmp_path):
    srv, url = server(persist_dir=str(tmp_path / "kv"))
    cmd = "%s -c pass" % sys.executable
    status, reason, figs = serving(url, "--restart-command", cmd, "--restart-wait", "10")
    assert status == "pass", reason
    restart = figs["restart"]
    assert restart["rc"] == 0 and restart["speedup"] >= 5 and "after restart" in reason
    assert srv.state.requests[-1]["hit"] is True


def test_restart_command_failure_fails(server):
    dummy, url = server()
    cmd = "%s -c 'import sys; sys.exit(3)'" % sys.executable
    status, reason, figs = serving(url, "--restart-command", cmd)
    assert status == "fail" and "restart command exited 3" in reason
    assert figs["restart"]["rc"] == 3


def test_restarted_double_keeps_persisted_prefixes(tmp_path):
    persist = str(tmp_path / "kv")
    first = double.ServerState(persist_dir=persist)
    assert first.lookup_and_store("doc\nq1")[0] is False
    second = double.ServerState(persist_dir=persist)
    assert second.lookup_and_store("doc\nq2")[0] is True


def test_metric_parser_sums_label_sets_and_falls_back():
    text = (
        'lmcache:num_hit_tokens_total{worker_id="0"} 100.0\n'
        'lmcache:num_hit_tokens_total{worker_id="1"} 28\n'
        'lmcache:num_hit_tokens_created{worker_id="0"} 1.7e9\n'
    )
    assert gv.parse_metric_sum(text) == ("lmcache:num_hit_tokens_total", 128.0)
    assert gv.parse_metric_sum("lmcache:num_hit_tokens 5\n") == ("lmcache:num_hit_tokens", 5.0)
    assert gv.parse_metric_sum("vllm:foo 1\n") == (None, None)


def test_http_error_body_is_in_the_reason(server):
    srv, url = server()
    # the test double answers 404 with a JSON body for an unknown model id
    args = gv.parse_args(["--endpoint", url, "--request-timeout", "5"])
    with pytest.raises(Exception) as info:
        gv.stream_completion(args, "no-such-model", "doc\nq")
    assert gv._describe_error(info.value) == 'HTTP 404 Not Found: {"error": "model not found"}'
