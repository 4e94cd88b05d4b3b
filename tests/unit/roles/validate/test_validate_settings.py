# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The settings file (--settings, rendered by the role): its values, flags over it, its errors."""

import json

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()


def settings_file(tmp_path, data):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_values_lists_and_flags_come_from_the_file(tmp_path):
    path = settings_file(
        tmp_path,
        {
            "tiers": ["storage", "stack"],
            "required": ["stack"],
            "expected_devices": 8,
            "speedup_threshold": 1.5,
            "storage_options": ["hard", "nconnect=16"],
            "device": "cpu",
            "require_same_text": True,
            "venv": "/opt/vllm/venv",
        },
    )
    args = gv.parse_args(["--settings", path])
    assert (args.tiers, args.required) == (["storage", "stack"], ["stack"])
    assert (args.expected_devices, args.speedup_threshold, args.device) == (8, 1.5, "cpu")
    assert args.storage_options == ["hard", "nconnect=16"]
    assert args.require_same_text is True and args.venv == "/opt/vllm/venv"
    # What the file does not set keeps the option's default.
    assert args.warm_repeats == 3 and args.require_lmcache_hits is False


def test_command_line_wins_over_the_file(tmp_path):
    path = settings_file(tmp_path, {"tiers": ["storage"], "expected_devices": 8, "device": "cpu"})
    args = gv.parse_args(["--settings", path, "--tiers", "devices", "--expected-devices", "2"])
    assert (args.tiers, args.expected_devices, args.device) == (["devices"], 2, "cpu")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"tierz": ["stack"]}, "unknown setting 'tierz'"),
        ({"api_key": "s3cret"}, "api_key may not be set there"),
        ({"expected_devices": "eight"}, "expected_devices must be a int"),
        ({"device": "tpu"}, "device 'tpu' is not one of auto, hpu, cuda, rocm, cpu"),
        ({"require_same_text": "yes"}, "require_same_text must be true or false"),
        ({"expected_devices": [1, 2]}, "expected_devices takes one value, not a list"),
        ({"tiers": ["stack", "gpu"]}, "unknown tier 'gpu'"),
        ({"warm_repeats": 0}, "--warm-repeats must be >= 1"),
        (["stack"], "a JSON object is expected, not list"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(tmp_path, capsys, data, message):
    path = settings_file(tmp_path, data)
    with pytest.raises(SystemExit) as exc:
        gv.parse_args(["--settings", path])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "s3cret" not in err


def test_unreadable_settings_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        gv.parse_args(["--settings", str(tmp_path / "absent.json")])
    assert exc.value.code == 2 and "absent.json" in capsys.readouterr().err


def test_the_launcher_runs_a_settings_file_end_to_end(tmp_path):
    out = str(tmp_path / "report.json")
    path = settings_file(tmp_path, {"tiers": ["storage"], "required": ["storage"], "format": "none"})
    rc, report, stdout, stderr = lib.run_script(["--settings", path, "--output", out])
    assert rc == 0, stderr
    assert stdout == ""
    assert report["tiers"]["storage"]["status"] == "skip"
    assert report["tiers"]["stack"]["reason"] == "not selected with --tiers"
