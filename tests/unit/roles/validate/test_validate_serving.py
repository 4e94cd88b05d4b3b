# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""serving tier against the OpenAI-compatible TEST DOUBLE (tests/standins/openai_server.py)."""

import os
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


def test_warm_runs_repeat_the_cold_prompt_and_give_its_text(server):
    srv, url = server()
    status, reason, figs = serving(url, "--require-same-text")
    assert status == "pass", reason
    assert figs["text_equal"] is True
    assert len({r["prompt_tokens"] for r in srv.state.requests}) == 1


def test_different_warm_text_fails_when_required(server):
    dummy, url = server(vary_text=True)
    status, reason, figs = serving(url, "--require-same-text")
    assert status == "fail" and "warm text differs from the cold text" in reason
    assert figs["text_equal"] is False
    # without the flag it is reported, not failed
    status, reason, figs = serving(url)
    assert status == "pass" and "warm text differs" in reason


@pytest.mark.parametrize(
    "families, metric",
    [
        (("external",), "vllm:external_prefix_cache_hits_total"),
        (("lmcache_lagging", "external"), "vllm:external_prefix_cache_hits_total"),
        (("lmcache", "external"), "vllm:external_prefix_cache_hits_total"),
        (("lmcache",), "lmcache:num_hit_tokens_total"),
    ],
)
def test_hits_fall_back_to_vllm_connector_counter(server, families, metric):
    dummy, url = server(metric_families=families)
    status, reason, figs = serving(url, "--require-lmcache-hits")
    assert status == "pass", reason
    hits = figs["lmcache_hits"]
    assert hits["metric"] == metric and hits["delta"] >= 2 * 512
    assert set(hits["counters"]) <= {"lmcache:num_hit_tokens_total", "vllm:external_prefix_cache_hits_total"}


def test_no_hit_counter_at_all_is_not_exposed(server):
    dummy, url = server(metric_families=())
    status, reason, figs = serving(url, "--require-lmcache-hits")
    assert status == "fail" and "KV hit metrics not exposed" in reason
    assert "neither lmcache:num_hit_tokens nor vllm:external_prefix_cache_hits" in reason


def test_degraded_lmcache_fails_with_a_message_saying_so(server):
    # The server answers and streams, but LMCache counts no lookup or store: recompute mode.
    dummy, url = server(degraded=True, cold_delay=0.05, metric_families=("lmcache", "external", "activity"))
    status, reason, figs = serving(url, "--speedup-threshold", "0", "--lmcache-metrics-wait", "1")
    assert status == "fail" and "degraded (recompute) mode" in reason
    assert figs["lmcache_activity"] == 0 and figs["lmcache_hits"]["delta"] == 0


def test_counted_activity_is_not_degraded(server):
    dummy, url = server(metric_families=("lmcache", "activity"))
    status, reason, figs = serving(url, "--lmcache-metrics-wait", "1")
    assert status == "pass", reason
    assert figs["lmcache_activity"] == 2 * 3


def test_lagging_lmcache_counters_are_awaited_only_without_other_evidence(server, tmp_path):
    # Hit tokens counted by vLLM show LMCache at work at once: no wait for LMCache's own
    # (lagging) activity counters, so /metrics is read just before and after the requests.
    srv, url = server(metric_families=("external", "activity_lagging"))
    status, reason, figs = serving(url, "--lmcache-metrics-wait", "600")
    assert status == "pass", reason
    assert srv.state.scrapes == 2 and figs["lmcache_activity"] == 0
    assert figs["lmcache_working_by"] == "hit tokens (vllm:external_prefix_cache_hits_total)"
    # So does this node's cross-node seed stored on the shared tier (a kv_producer, no hit).
    seeded = tmp_path / "seed.json"
    seeded.write_text('{"mode": "seed", "status": "pass", "files_added": 3, "reason": "3 file(s)"}')
    srv, url = server(metric_families=("lmcache_lagging", "activity_lagging"))
    status, reason, figs = serving(url, "--lmcache-metrics-wait", "600", "--cross-node-seeded", str(seeded))
    assert status == "pass", reason
    assert srv.state.scrapes == 2
    assert figs["lmcache_working_by"] == "cross-node seed stored on the shared tier"
    # Neither: the tier scrapes again until the wait ends, then fails as degraded.
    srv, url = server(metric_families=("lmcache_lagging", "activity_lagging"))
    status, reason, figs = serving(url, "--lmcache-metrics-wait", "1.5")
    assert status == "fail" and "degraded (recompute) mode" in reason
    assert srv.state.scrapes > 2 and figs["lmcache_working_by"] is None


def test_prompt_words_file_builds_the_prompt(server, tmp_path):
    words = tmp_path / "words.json"
    words.write_text('["<unk>", "<s>", "zai", "bou"]')
    srv, url = server()
    status, reason, figs = serving(url, "--prompt-words", str(words))
    assert status == "pass", reason
    body = gv.build_prompt("n1", 50, "q", gv.load_prompt_words(str(words))).splitlines()[1].split()
    assert len(body) == 50 and set(body) <= {"zai", "bou"}
    # another nonce, another prompt body (a tokenizer may not see the nonce line at all)
    assert gv.build_prompt("n1", 50, "q") != gv.build_prompt("n2", 50, "q")
    assert gv.build_prompt("n1", 50, "q").splitlines()[1] != gv.build_prompt("n2", 50, "q").splitlines()[1]
    empty = tmp_path / "empty.json"
    empty.write_text('["<unk>"]')
    status, reason, dummy = serving(url, "--prompt-words", str(empty))
    assert status == "fail" and "holds no usable word" in reason


def _chunk_server(server, shared, name):
    cache = double.ChunkCache("m", chunk_size=64, cost_per_token=0.0005, persist_dir=str(shared))
    return server(model="m", cache=cache, metric_families=("external",), info={"node": name})


def test_cross_node_seed_then_expect_hits_on_another_node(server, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    dummy, producer = _chunk_server(server, shared, "producer")
    dummy, consumer = _chunk_server(server, shared, "consumer")
    base = [
        "--storage-path",
        str(shared),
        "--prompt-tokens",
        "512",
        "--request-timeout",
        "5",
        "--cross-node-timeout",
        "5",
    ]
    seed = gv.cross_node_seed(
        gv.parse_args(["--endpoint", producer, "--cross-node-seed", "run-1", "--node", "p1"] + base)
    )
    assert seed["status"] == "pass", seed
    assert seed["files_added"] >= 512 // 64 and os.path.isfile(seed["marker"])
    status, reason, figs = serving(consumer, "--cross-node-expect", "run-1", *base)
    assert status == "pass", reason
    cross = figs["cross_node"]
    assert cross["writer"] == "p1" and cross["hit_tokens"] >= 512 - 64 and cross["text_equal"] is True
    assert "cross-node +%d hit tokens from p1" % cross["hit_tokens"] in reason


def test_cross_node_expect_without_the_seed_fails(server, tmp_path):
    dummy, consumer = _chunk_server(server, tmp_path, "consumer")
    status, reason, figs = serving(
        consumer, "--cross-node-expect", "never", "--storage-path", str(tmp_path), "--cross-node-timeout", "0.5"
    )
    assert status == "fail" and "cross-node: no marker" in reason
    assert figs["cross_node"]["hit_tokens"] is None


def test_cross_node_seed_fails_when_nothing_reaches_the_shared_tier(server, tmp_path):
    dummy, url = server()  # a prefix cache that keeps nothing on disk
    args = gv.parse_args(
        [
            "--endpoint",
            url,
            "--storage-path",
            str(tmp_path),
            "--cross-node-seed",
            "s",
            "--cross-node-timeout",
            "1",
            "--prompt-tokens",
            "64",
            "--request-timeout",
            "5",
        ]  # fmt: skip
    )
    seed = gv.cross_node_seed(args)
    assert seed["status"] == "fail" and "nothing was stored on the shared tier" in seed["reason"]
    assert not os.path.exists(os.path.join(str(tmp_path), gv.MARKER_DIR, "s.json"))


def test_cross_node_names_are_checked():
    with pytest.raises(SystemExit):
        gv.parse_args(["--cross-node-seed", "../x"])
    with pytest.raises(SystemExit):
        gv.parse_args(["--cross-node-seed", "a", "--cross-node-expect", "b"])
