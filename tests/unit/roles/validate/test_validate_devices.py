# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""devices and kv_offload tiers: the hl-smi stand-in, torch on CPU, failure paths."""

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()

DOC_SAMPLE = "0, HL-325L, 0000:3b:00.0, 1.24.1-b336d5e, 131072 MiB"


def test_parse_csv_with_units():
    (dev,), warnings = gv.parse_devices(DOC_SAMPLE)
    assert warnings == []
    assert dev == {
        "index": 0,
        "name": "HL-325L",
        "bus_id": "0000:3b:00.0",
        "driver_version": "1.24.1-b336d5e",
        "memory_total_mib": 131072,
    }


def test_parse_csv_without_units_and_header_tolerated():
    text = (
        "index, name, bus_id, driver_version, memory.total [MiB]\n"
        "0, HL-225, 0000:4d:00.0, 1.18.0-ee698fb, 98304\n"
        "1, HL-225, 0000:4e:00.0, 1.18.0-ee698fb, 96 GiB\n"
    )
    devs, dummy = gv.parse_devices(text)
    assert [d["memory_total_mib"] for d in devs] == [98304, 98304]
    assert [d["index"] for d in devs] == [0, 1]


def test_parse_csv_rejects_wrong_field_count():
    with pytest.raises(gv.TierError, match="expected 5 fields"):
        gv.parse_devices("0, HL-325L, 0000:3b:00.0")


def test_parse_csv_skips_a_bad_line_with_a_warning():
    devs, warnings = gv.parse_devices(DOC_SAMPLE + "\n1, HL-325L\n")
    assert [d["index"] for d in devs] == [0]
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_the_collection_parser_is_the_one_used():
    """The package parses hl-smi with the collection's module_utils/hl_smi.py, not a copy of its own."""
    assert gv.hl_smi.__name__ == "gaudi_validate._collection.hl_smi"
    with open(gv.hl_smi.__file__, "rb") as installed, open(
        lib.os.path.join(lib.ROOT, "plugins", "module_utils", "hl_smi.py"), "rb"
    ) as shipped:
        assert installed.read() == shipped.read()


def test_firmware_from_list_and_header():
    text = "        Firmware [SPI] Version          : Preboot version hl-gaudi2-1.20.0-fw-58.0.0-sec-9\n" * 2
    assert gv.firmware_versions(text) == ["Preboot version hl-gaudi2-1.20.0-fw-58.0.0-sec-9"]
    assert gv.firmware_versions("| HL-SMI Version:   hl-1.18.0-fw-53.1.1.1   |") == ["hl-1.18.0-fw-53.1.1.1"]


def _devices(tmp_path, *extra, env=None):
    out = str(tmp_path / "r.json")
    rc, report, stdout, stderr = lib.run_script(
        ["--tiers", "devices", "--required", "devices", "--output", out, "--format", "table", *extra], env=env
    )
    assert "Traceback" not in stdout + stderr
    return rc, report["tiers"]["devices"], report


def test_hpu_through_fake_hl_smi_matches_expected(tmp_path):
    rc, tier, report = _devices(tmp_path, "--hl-smi", lib.FAKE_HL_SMI, "--expected-devices", "8")
    assert (rc, tier["status"], report["device"]) == (0, "pass", "hpu")
    figs = tier["figures"]
    assert figs["count"] == 8 and figs["source"] == "hl-smi"
    assert figs["names"] == ["HL-325L"] and figs["driver_versions"] == ["1.22.1-97ec1a4"]
    assert figs["devices"][7]["bus_id"] == "0000:b4:00.0"
    assert figs["devices"][0]["memory_total_mib"] == 131072
    assert figs["firmware_versions"][0].startswith("Preboot version hl-gaudi3-1.22.1")


def test_hpu_count_below_expected_fails(tmp_path):
    rc, tier, dummy = _devices(
        tmp_path, "--hl-smi", lib.FAKE_HL_SMI, "--expected-devices", "8", env={"HL_SMI_STANDIN_COUNT": "6"}
    )
    assert rc == 1 and tier["status"] == "fail"
    assert "6 x HL-325L" in tier["reason"] and "expected 8" in tier["reason"]


def test_hl_smi_error_exit_is_a_failed_tier(tmp_path):
    rc, tier, dummy = _devices(tmp_path, "--hl-smi", lib.FAKE_HL_SMI, env={"HL_SMI_STANDIN_FAIL": "1"})
    assert rc == 1 and tier["status"] == "fail"
    assert "exited 1" in tier["reason"] and "failed to open device" in tier["reason"]


def test_hl_smi_garbage_is_a_failed_tier(tmp_path):
    rc, tier, dummy = _devices(tmp_path, "--hl-smi", lib.FAKE_HL_SMI, env={"HL_SMI_STANDIN_GARBAGE": "1"})
    assert rc == 1 and "could be parsed" in tier["reason"] and "Usage: hl-smi" in tier["reason"]


def test_hl_smi_absent_with_forced_hpu_fails_with_reason(tmp_path):
    rc, tier, dummy = _devices(tmp_path, "--device", "hpu", "--hl-smi", str(tmp_path / "no-such-hl-smi"))
    assert rc == 1 and tier["status"] == "fail"
    assert "hl-smi not found" in tier["reason"]


def test_no_accelerator_skips_or_fails_on_expectation(monkeypatch):
    monkeypatch.setattr(gv.glob, "glob", lambda pattern: [])
    args = gv.parse_args(["--hl-smi", "/nonexistent/hl-smi"])
    ctx = {"device": "none", "device_how": "nothing found"}
    status, reason, dummy = gv.tier_devices(args, ctx)
    assert status == "skip" and "no accelerator" in reason
    args = gv.parse_args(["--expected-devices", "8"])
    status, reason, dummy = gv.tier_devices(args, ctx)
    assert status == "fail" and "expected 8 accelerators" in reason


def test_resolve_device_auto_prefers_hl_smi():
    args = gv.parse_args(["--hl-smi", lib.FAKE_HL_SMI])
    assert gv.resolve_device(args)[0] == "hpu"
    args = gv.parse_args(["--device", "cuda"])
    assert gv.resolve_device(args) == ("cuda", "forced with --device")


def test_cuda_forced_without_cuda_fails_devices_and_skips_kv(monkeypatch):
    pytest.importorskip("torch")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = gv.parse_args(["--device", "cuda"])
    report = gv.build_report(args)
    assert report["tiers"]["devices"]["status"] == "fail"
    assert "is_available() is false" in report["tiers"]["devices"]["reason"]
    assert report["tiers"]["kv_offload"]["status"] == "skip"


def test_kv_offload_forced_cpu_measures_host_copies():
    pytest.importorskip("torch")
    args = gv.parse_args(["--device", "cpu", "--chunk-bytes", str(4 * 1024 * 1024), "--kv-iterations", "3"])
    status, reason, figs = gv.tier_kv_offload(args, {"device": "cpu", "device_how": "forced"})
    assert status == "pass" and "host copies" in reason
    assert figs["h2d_gbps"] > 0 and figs["d2h_gbps"] > 0
    assert figs["pcie_gen5_x16_limit_gbps"] == 63.0 and figs["pinned"] is False


def test_kv_offload_threshold_fails():
    pytest.importorskip("torch")
    args = gv.parse_args(
        ["--device", "cpu", "--chunk-bytes", "1048576", "--kv-iterations", "2", "--kv-min-gbps", "1e9"]
    )
    status, reason, dummy = gv.tier_kv_offload(args, {"device": "cpu", "device_how": "forced"})
    assert status == "fail" and "below" in reason


def test_kv_offload_without_torch_skips(monkeypatch):
    real = gv.importlib.util.find_spec
    monkeypatch.setattr(gv.importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    args = gv.parse_args(["--device", "cuda"])
    status, reason, dummy = gv.tier_kv_offload(args, {"device": "cuda", "device_how": "forced"})
    assert status == "skip" and "torch is not importable" in reason


def test_kv_offload_without_device_skips():
    args = gv.parse_args([])
    status, reason, dummy = gv.tier_kv_offload(args, {"device": "none", "device_how": "none seen"})
    assert status == "skip" and "--device cpu" in reason
