# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify the validate scenario: the node's report and the controller's copy."""

import json
import os

REPORT = "/var/lib/gaudi-validate/report.json"


def _report(host):
    return json.loads(host.file(REPORT).content_string)


def test_package_settings_and_support_modules_installed(host):
    for name in ("__init__.py", "__main__.py", "cli.py", "devices.py", "stack.py", "patch.py", "serving.py"):
        assert host.file("/opt/gaudi-validate/gaudi_validate/" + name).mode == 0o644
    assert host.file("/opt/gaudi-validate/report.schema.json").is_file
    assert not host.file("/opt/gaudi-validate/gaudi_validate.py").exists
    # The collection's parsers, written by module_utils_copy (no path into the collection).
    for name in ("hl_smi.py", "lmcache_hpu_patch.py"):
        assert "module_utils_copy" in host.file("/opt/gaudi-validate/" + name).content_string
    settings = json.loads(host.file("/opt/gaudi-validate/settings.json").content_string)
    assert settings["expected_devices"] == 8 and settings["speedup_threshold"] == 1.0
    assert settings["support_dir"] == "/opt/gaudi-validate" and "run_id" not in settings
    assert host.run("cd /opt/gaudi-validate && python3 -m gaudi_validate --help").rc == 0
    # Flags override the settings file.
    out = host.run(
        "cd /opt/gaudi-validate && python3 -m gaudi_validate --settings settings.json --tiers devices "
        "--expected-devices 9 --format json"
    )
    assert out.rc == 1 and json.loads(out.stdout)["tiers"]["devices"]["figures"]["expected_count"] == 9


def test_report_tier_statuses(host):
    report = _report(host)
    statuses = dict((name, tier["status"]) for name, tier in report["tiers"].items())
    assert statuses == {"devices": "pass", "stack": "pass", "storage": "pass", "kv_offload": "skip", "serving": "pass"}
    assert report["overall"] == "pass" and report["node"] == "validate-node-a"


def test_report_figures(host):
    tiers = _report(host)["tiers"]
    assert tiers["devices"]["figures"]["count"] == 8
    assert tiers["stack"]["figures"]["packages"]["vllm-gaudi"] == "0.17.1"
    io = tiers["storage"]["figures"]["io"]
    assert io["integrity_ok"] and io["bytes_total"] == 4 * 4194304
    assert "rw" in tiers["storage"]["figures"]["mount"]["options"]
    # Behaviour, not speed: the warm prompt is served faster than the cold one (before and
    # after the restart) and the hit counter moved. The test double's delays are simulated,
    # the ratio depends on how busy the machine is, so the threshold is 1.0 (molecule.yml).
    serving = tiers["serving"]["figures"]
    assert serving["speedup_threshold"] == 1.0
    assert serving["warm_ttft_median_s"] < serving["cold_ttft_s"]
    assert serving["lmcache_hits"]["exposed"] and serving["lmcache_hits"]["delta"] > 0
    assert serving["restart"]["rc"] == 0 and serving["restart"]["ttft_s"] < serving["cold_ttft_s"]
    assert serving["restart"]["text_match"] and serving["text_match"]
    assert serving["hit_tokens"]["warm"] > 0 and serving["degraded"] == {"detected": False, "reasons": []}
    assert serving["log_scan"]["found"] == [] and serving["log_scan"]["rc"] == 0
    assert "torch is not importable" in tiers["kv_offload"]["reason"]


def test_report_fetched_to_controller(host):
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "validation", "validate-node-a.json")
    with open(path) as handle:
        fetched = json.load(handle)
    assert fetched["node"] == "validate-node-a"
    # The fetched copy validates against the shipped schema.
    import jsonschema

    schema_path = os.path.join(
        os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", "validate", "files", "report.schema.json"
    )
    with open(schema_path) as handle:
        jsonschema.Draft7Validator(json.load(handle)).validate(fetched)
