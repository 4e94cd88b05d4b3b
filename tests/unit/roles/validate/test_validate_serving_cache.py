# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""serving tier, cache behaviour against the stand-in (tests/standins/openai_server.py): hit tokens
and their fallback counter, LMCache's degraded mode, cold/warm text equality, the Mode B
cross-node hit, the log check. Behaviour only: no assertion depends on the machine's speed."""

import sys

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()
double = lib.load_test_double()


@pytest.fixture
def server():
    started = []

    def _start(**kwargs):
        kwargs.setdefault("cold_delay", 0.2)
        kwargs.setdefault("warm_delay", 0.0)
        srv, url = double.start(**kwargs)
        started.append(srv)
        return srv, url

    yield _start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def serving(url, *extra):
    args = gv.parse_args(
        [
            "--endpoint",
            url,
            "--prompt-tokens",
            "256",
            "--warm-repeats",
            "1",
            "--request-timeout",
            "10",
            "--speedup-threshold",
            "1.0",
            "--hits-settle-s",
            "0.5",
        ]
        + list(extra)
    )
    return gv.tier_serving(args, {"device": "cpu", "device_how": "test"})


def test_warm_hits_text_match_and_figures(server):
    srv, url = server()
    status, reason, figs = serving(url)
    assert status == "pass", reason
    assert figs["hit_tokens"]["warm"] == 256 and figs["hit_tokens"]["metric"] in (
        "lmcache:num_hit_tokens_total",
        "vllm:external_prefix_cache_hits_total",
    )
    assert figs["hit_tokens"]["cold"] == 0
    assert figs["text_match"] is True and figs["cold_text"] == figs["warm_texts"][0] and figs["cold_text"]
    assert figs["degraded"] == {"detected": False, "reasons": []}
    assert figs["prefix_cache_reset"]["status"] == 200
    assert "256 warm hit tokens" in reason
    # cold and warm requests send the same prompt, temperature 0 and the seed
    assert srv.state.requests[0]["prompt_tokens"] == srv.state.requests[1]["prompt_tokens"]


def test_hits_fall_back_to_vllm_external_prefix_cache_counter(server):
    dummy, url = server(hit_metrics=("external",))
    status, reason, figs = serving(url, "--require-lmcache-hits")
    assert status == "pass", reason
    assert figs["hit_tokens"]["metric"] == "vllm:external_prefix_cache_hits_total"
    assert figs["hit_tokens"]["warm_external"] == 256 and figs["hit_tokens"]["warm_lmcache"] is None


def test_degraded_server_that_caches_nothing_fails_with_a_message(server):
    dummy, url = server(degraded=True, cold_delay=0.0)
    status, reason, figs = serving(url)
    assert status == "fail"
    assert "LMCache degraded: the server runs but caches nothing" in reason
    assert "0 hit tokens on the warm request" in reason
    # the cold request stored nothing although LMCache saw the requested tokens
    assert any("num_stored_tokens" in r for r in figs["degraded"]["reasons"])
    assert figs["degraded"]["detected"] is True and figs["hit_tokens"]["warm"] == 0


def test_degraded_log_line_fails_even_with_hits(server, tmp_path):
    dummy, url = server()
    log = tmp_path / "journal.txt"
    log.write_text("INFO starting\n[lmcache] WARNING: No supported cpu connector found, recompute\n")
    status, reason, figs = serving(url, "--log-command", "cat %s" % log)
    assert status == "fail" and "the service log says 'No supported cpu connector found'" in reason
    assert figs["log_scan"]["found"] == ["No supported cpu connector found"]
    clean = tmp_path / "clean.txt"
    clean.write_text("INFO all good\n")
    status, reason, figs = serving(url, "--log-command", "cat %s" % clean)
    assert status == "pass", reason and figs["log_scan"]["found"] == []


def test_degraded_through_health_gauge(server):
    srv, url = server()
    original = srv.state.metrics_text
    srv.state.metrics_text = lambda: original() + "lmcache:lmcache_is_healthy 0\n"
    status, reason, dummy = serving(url)
    assert status == "fail" and "lmcache:lmcache_is_healthy is 0" in reason


def test_text_mismatch_between_cold_and_warm_fails(server):
    dummy, url = server(text_drift=True)
    status, reason, figs = serving(url)
    assert status == "fail"
    assert "generated text differs between the cold and warm run(s) 1 (temperature 0, seed 0)" in reason
    assert figs["text_match"] is False


def test_metrics_missing_hit_counters_is_not_degraded_unless_required(server):
    dummy, url = server(hit_metrics=())
    status, reason, figs = serving(url)
    assert status == "pass", reason
    status, reason, dummy = serving(url, "--require-lmcache-hits")
    assert status == "fail" and "not exposed" in reason


def test_cross_node_hit_through_a_shared_tier(server, tmp_path):
    shared = str(tmp_path / "shared")
    dummy, writer_url = server(shared_dir=shared)
    reader, reader_url = server(shared_dir=shared)
    status, reason, primed = serving(writer_url, "--prime-only", "--nonce", "peer-1")
    assert status == "pass" and "peer-1" in reason and primed["primed"]["text"]
    status, reason, figs = serving(
        reader_url,
        "--cross-node-nonce",
        "peer-1",
        "--cross-node-peer",
        "node-a",
        "--cross-node-text",
        primed["primed"]["text"],
    )
    assert status == "pass", reason
    assert figs["cross_node"]["hit_tokens"] == 256 and figs["cross_node"]["peer"] == "node-a"
    assert "cross-node 256 hit tokens" in reason
    # the reader's first request for that prompt was a hit
    assert [r["hit"] for r in reader.state.requests] == [False, True, True]


def test_cross_node_miss_fails(server, tmp_path):
    dummy, writer_url = server(shared_dir=str(tmp_path / "a"))
    dummy, reader_url = server(shared_dir=str(tmp_path / "b"))  # not shared
    serving(writer_url, "--prime-only", "--nonce", "peer-2")
    status, reason, figs = serving(reader_url, "--cross-node-nonce", "peer-2", "--cross-node-peer", "node-a")
    assert status == "fail"
    assert "cross-node: 0 hit tokens for the prompt node node-a stored in the shared tier (nonce peer-2)" in reason


def test_cross_node_check_skipped_for_another_model(server, tmp_path):
    shared = str(tmp_path / "shared")
    dummy, writer_url = server(shared_dir=shared, model="model-a")
    dummy, reader_url = server(shared_dir=shared, model="model-b")
    serving(writer_url, "--prime-only", "--nonce", "peer-4")
    status, reason, figs = serving(reader_url, "--cross-node-nonce", "peer-4", "--cross-node-model", "model-a")
    assert status == "pass", reason
    assert figs["cross_node"]["skipped"] == "the storing node serves model-a, this node model-b"


def test_cross_node_text_mismatch_fails(server, tmp_path):
    shared = str(tmp_path / "shared")
    dummy, writer_url = server(shared_dir=shared)
    dummy, reader_url = server(shared_dir=shared)
    serving(writer_url, "--prime-only", "--nonce", "peer-3")
    status, reason, dummy = serving(reader_url, "--cross-node-nonce", "peer-3", "--cross-node-text", "other words")
    assert status == "fail" and "differs from the text the storing node generated" in reason


def test_restart_text_must_match(server, tmp_path):
    srv, url = server(shared_dir=str(tmp_path / "kv"))
    cmd = "%s -c pass" % sys.executable
    status, reason, figs = serving(url, "--restart-command", cmd, "--restart-wait", "10")
    assert status == "pass", reason and figs["restart"]["text_match"] is True


def test_prime_only_needs_a_nonce():
    with pytest.raises(SystemExit):
        gv.parse_args(["--endpoint", "http://127.0.0.1:1", "--prime-only"])


def test_reports_with_the_new_figures_match_the_schema(server, tmp_path):
    import jsonschema

    shared = str(tmp_path / "shared")
    dummy, writer_url = server(shared_dir=shared)
    dummy, reader_url = server(shared_dir=shared, degraded=False)
    dummy, degraded_url = server(degraded=True, cold_delay=0.0)
    common = ["--tiers", "serving", "--required", "serving", "--prompt-tokens", "128", "--hits-settle-s", "0.2"]
    common += ["--speedup-threshold", "1.0", "--warm-repeats", "1"]
    validator = jsonschema.Draft7Validator(lib.schema())
    runs = [
        (writer_url, ["--prime-only", "--nonce", "peer-9"], 0),
        (reader_url, ["--cross-node-nonce", "peer-9", "--cross-node-peer", "node-a"], 0),
        (degraded_url, [], 1),
    ]
    for i, (url, extra, want_rc) in enumerate(runs):
        out = str(tmp_path / ("r%d.json" % i))
        rc, report, stdout, stderr = lib.run_script(["--endpoint", url, "--output", out] + common + extra)
        assert rc == want_rc, stdout + stderr
        validator.validate(report)
        assert report["schema_version"] == "1.2"
    figs = report["tiers"]["serving"]["figures"]
    assert figs["degraded"]["detected"] and "caches nothing" in report["tiers"]["serving"]["reason"]
