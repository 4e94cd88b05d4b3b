# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cli: settings from the JSON file the role renders; options on the command line override it."""

import json

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()


def write(tmp_path, settings):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return str(path)


def test_file_values_then_flags_override(tmp_path):
    path = write(
        tmp_path,
        {
            "tiers": ["devices", "serving"],
            "expected_devices": 4,
            "speedup_threshold": 1.5,
            "require_lmcache_hits": True,
            "storage_options": ["rw", "noatime"],
            "degraded_patterns": ["No supported cpu connector found", "recompute"],
            "endpoint": "",
            "venv": "",
        },
    )
    args = gv.parse_args(["--settings", path])
    assert args.tiers == ["devices", "serving"] and args.expected_devices == 4
    assert args.speedup_threshold == 1.5 and args.require_lmcache_hits is True
    assert args.storage_options == ["rw", "noatime"] and args.degraded_patterns[1] == "recompute"
    assert args.prompt_tokens == 8192  # not in the file: the default
    args = gv.parse_args(["--settings", path, "--expected-devices", "8", "--tiers", "stack"])
    assert args.expected_devices == 8 and args.tiers == ["stack"] and args.speedup_threshold == 1.5


def test_role_settings_keys_are_all_known(tmp_path):
    """Every key the role renders (vars/main.yml __validate_settings) is an option of the script."""
    import yaml

    with open(lib.ROOT + "/roles/validate/vars/main.yml") as handle:
        keys = yaml.safe_load(handle)["__validate_settings"].keys()
    dests = set(a.dest for a in gv.build_parser()._actions)
    assert set(keys) <= dests, set(keys) - dests


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"no_such_setting": 1}, "unknown setting 'no_such_setting'"),
        ({"expected_devices": "many"}, "expected_devices='many'"),
        ({"device": "tpu"}, "device='tpu' is not one of"),
        ({"prime_only": "yes please"}, "prime_only must be true or false"),
        ({"warm_repeats": 0}, "--warm-repeats must be >= 1"),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_bad_settings_exit_2_with_the_key(tmp_path, capsys, settings, message):
    path = write(tmp_path, settings)
    with pytest.raises(SystemExit) as exc:
        gv.parse_args(["--settings", path])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_settings_file_exits_2(tmp_path):
    rc, dummy, dummy, stderr = lib.run_script(["--settings", str(tmp_path / "none.json")])
    assert rc == 2 and "none.json" in stderr


def test_hl_smi_parser_is_the_collections(tmp_path):
    """The devices tier parses with plugins/module_utils/hl_smi.py, not a copy of its own."""
    from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import hl_smi

    module, reason = gv.load_support("hl_smi", lib.SUPPORT_DIR)
    assert reason is None and module.parse_csv.__code__.co_code == hl_smi.parse_csv.__code__.co_code
    assert not any(n.startswith("hl_smi") for n in __import__("os").listdir(lib.PACKAGE))
    missing, reason = gv.load_support("no_such_support", str(tmp_path))
    assert missing is None and "no_such_support.py is not installed" in reason
