# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify the validate scenario: the node's report and the controller's copy."""

import json
import os

REPORT = "/var/lib/gaudi-validate/report.json"


def _report(host):
    return json.loads(host.file(REPORT).content_string)


def test_launcher_package_and_schema_installed(host):
    launcher = host.file("/opt/gaudi-validate/gaudi-validate")
    assert launcher.is_file and launcher.mode == 0o755
    assert host.file("/opt/gaudi-validate/report.schema.json").is_file
    for tier in ("devices", "stack", "storage", "kv_offload", "serving"):
        assert host.file("/opt/gaudi-validate/gaudi_validate/tiers/%s.py" % tier).is_file
    assert host.run("python3 /opt/gaudi-validate/gaudi-validate --help").rc == 0
    # What prepare.yml left as an older install's files is gone: 0.1's single-file script and
    # classifier copy, and a module the package no longer ships.
    for path in ("gaudi_validate.py", "lmcache_hpu_patch.py", "gaudi_validate/tiers/retired.py"):
        assert not host.file("/opt/gaudi-validate/" + path).exists, path


def test_collection_parser_and_classifier_installed_byte_for_byte(host):
    """The package uses the collection's own module_utils, installed as gaudi_validate/_collection."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    for name in ("hl_smi", "lmcache_hpu_patch"):
        installed = host.file("/opt/gaudi-validate/gaudi_validate/_collection/%s.py" % name)
        with open(os.path.join(root, "plugins", "module_utils", name + ".py")) as handle:
            assert installed.content_string == handle.read()


def test_settings_file_holds_the_role_settings_and_no_secret(host):
    settings = json.loads(host.file("/opt/gaudi-validate/settings.json").content_string)
    assert settings["node"] == "validate-node-a"
    assert settings["expected_devices"] == 8 and settings["speedup_threshold"] == 1.0
    assert "api_key" not in settings
    # The script reads it: run only the stack tier from it, flags winning over the file.
    result = host.run(
        "python3 /opt/gaudi-validate/gaudi-validate --settings /opt/gaudi-validate/settings.json "
        "--tiers stack --required stack --format json"
    )
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["tiers"]["stack"]["status"] == "pass"


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
    assert "torch is not importable" in tiers["kv_offload"]["reason"]


def test_report_fetched_to_controller(host):
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "validation", "validate-node-a.json")
    with open(path) as handle:
        fetched = json.load(handle)
    assert fetched["node"] == "validate-node-a"
    # The fetched copy validates against the shipped schema.
    import jsonschema

    schema_path = os.path.join(
        os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", "validate", "files", "script_dir", "report.schema.json"
    )
    with open(schema_path) as handle:
        jsonschema.Draft7Validator(json.load(handle)).validate(fetched)
