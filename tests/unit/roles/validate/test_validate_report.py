# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole script: JSON report against its schema, table, exit codes, --help, Python 3.8."""

import ast
import copy
import json
import subprocess
import sys

import jsonschema
import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

double = lib.load_test_double()


@pytest.fixture
def endpoint():
    srv, url = double.start(cold_delay=1.0, warm_delay=0.01)
    yield url
    srv.shutdown()
    srv.server_close()


def full_run(tmp_path, url, *extra):
    kv = tmp_path / "kv"
    kv.mkdir(exist_ok=True)
    out = str(tmp_path / "report.json")
    rc, report, stdout, stderr = lib.run_script(
        [
            "--output",
            out,
            "--node",
            "node-a",
            "--hl-smi",
            lib.FAKE_HL_SMI,
            "--expected-devices",
            "8",
            "--storage-path",
            str(kv),
            "--storage-files",
            "2",
            "--chunk-bytes",
            "1048576",
            "--endpoint",
            url,
            "--prompt-tokens",
            "256",
            "--tiers",
            "devices,stack,storage,serving",
            "--visibility-write",
            "m1",
        ]
        + list(extra)
    )
    assert "Traceback" not in stdout + stderr
    return rc, report, stdout


def test_report_matches_schema_and_table(tmp_path, endpoint):
    rc, report, stdout = full_run(tmp_path, endpoint, "--required", "devices,storage,serving")
    jsonschema.Draft7Validator(lib.schema()).validate(report)
    assert rc == 0 and report["overall"] == "pass"
    assert report["node"] == "node-a" and report["device"] == "hpu"
    statuses = dict((n, t["status"]) for n, t in report["tiers"].items())
    assert statuses == {"devices": "pass", "stack": "skip", "storage": "pass", "kv_offload": "skip", "serving": "pass"}
    assert report["tiers"]["kv_offload"]["reason"] == "not selected with --tiers"
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["TIER", "STATUS", "REQ", "SECONDS"]
    assert [line.split()[0] for line in lines[1:6]] == list(lib.load_script().TIERS)
    assert lines[-1] == "node node-a (hpu): PASS"


def test_run_id_recorded(tmp_path, endpoint):
    rc, report, dummy = full_run(tmp_path, endpoint, "--run-id", "20260101T000000Z-42")
    jsonschema.Draft7Validator(lib.schema()).validate(report)
    assert report["run_id"] == "20260101T000000Z-42" and report["schema_version"] == "1.1"
    dummy, report, dummy = full_run(tmp_path, endpoint)
    assert report["run_id"] is None


def test_failing_required_tier_exits_1(tmp_path, endpoint):
    rc, report, dummy = full_run(tmp_path, endpoint, "--required", "devices", "--expected-devices", "16")
    jsonschema.Draft7Validator(lib.schema()).validate(report)
    assert rc == 1 and report["overall"] == "fail"
    assert report["failed_required_tiers"] == ["devices"]


def test_failing_optional_tier_exits_0(tmp_path, endpoint):
    rc, report, dummy = full_run(tmp_path, endpoint, "--required", "storage", "--expected-devices", "16")
    assert rc == 0 and report["tiers"]["devices"]["status"] == "fail"
    assert report["tiers"]["devices"]["required"] is False


def test_failure_paths_make_a_valid_report(tmp_path):
    out = str(tmp_path / "r.json")
    rc, report, stdout, stderr = lib.run_script(
        [
            "--output",
            out,
            "--format",
            "json",
            "--device",
            "hpu",
            "--hl-smi",
            str(tmp_path / "absent-hl-smi"),
            "--storage-path",
            str(tmp_path / "gone"),
            "--endpoint",
            "http://127.0.0.1:9",
            "--request-timeout",
            "2",
            "--venv",
            str(tmp_path),
            "--tiers",
            "devices,stack,storage,serving",
        ]
    )
    assert rc == 1 and "Traceback" not in stdout + stderr
    assert json.loads(stdout) == report
    jsonschema.Draft7Validator(lib.schema()).validate(report)
    for name in ("devices", "stack", "storage", "serving"):
        assert report["tiers"][name]["status"] == "fail", name
        assert report["tiers"][name]["reason"]


def test_schema_rejects_bad_reports(tmp_path, endpoint):
    dummy, report, dummy = full_run(tmp_path, endpoint)
    validator = jsonschema.Draft7Validator(lib.schema())
    bad = copy.deepcopy(report)
    bad["tiers"]["storage"]["status"] = "ok"
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(report)
    del bad["tiers"]["serving"]
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(report)
    bad["tiers"]["serving"]["figures"]["speedup"] = "fast"
    assert not validator.is_valid(bad)


def test_help_and_bad_arguments():
    proc = subprocess.run(
        [sys.executable, lib.SCRIPT, "--help"], stdout=subprocess.PIPE, universal_newlines=True, check=False
    )
    assert proc.returncode == 0
    for flag in (
        "--device",
        "--venv",
        "--storage-path",
        "--visibility-expect",
        "--endpoint",
        "--prompt-tokens",
        "--speedup-threshold",
        "--restart-command",
        "--tp",
    ):
        assert flag in proc.stdout
    rc, dummy, dummy, stderr = lib.run_script(["--tiers", "gpu"])
    assert rc == 2 and "unknown tier" in stderr
    rc, dummy, dummy, stderr = lib.run_script(["--visibility-write", "../escape"])
    assert rc == 2


def test_script_parses_as_python_38():
    with open(lib.SCRIPT) as handle:
        source = handle.read()
    ast.parse(source, feature_version=(3, 8))
    assert "import torch" not in source.split("def _import_torch")[0]


def test_format_both_prints_the_report_on_stdout_and_the_table_on_stderr(tmp_path):
    """What the role runs: it reads the report from stdout and shows the table."""
    out = str(tmp_path / "r.json")
    common = ["--device", "hpu", "--hl-smi", str(tmp_path / "absent-hl-smi"), "--tiers", "devices"]
    rc, report, stdout, stderr = lib.run_script(["--output", out, "--format", "both"] + common)
    assert rc == 1 and report["tiers"]["devices"]["status"] == "fail"
    with open(out) as handle:
        assert stdout == handle.read()
    assert json.loads(stdout) == report
    rc, dummy, table, dummy = lib.run_script(["--output", str(tmp_path / "t.json"), "--format", "table"] + common)
    assert rc == 1 and "devices" in table
    # the same table (its timings aside) on stderr
    assert [line.split()[:1] for line in stderr.splitlines()] == [line.split()[:1] for line in table.splitlines()]
    assert stderr.splitlines()[0] == table.splitlines()[0]
