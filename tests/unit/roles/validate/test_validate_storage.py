# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage tier on a temp directory, with a mounts table written by the test."""

import os
import threading
import time

import pytest

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()
MIB = 1024 * 1024


def mounts_for(
    tmp_path, path, fstype="nfs4", options="rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,hard,nconnect=8"
):
    table = tmp_path / "mounts"
    table.write_text(
        "/dev/vda / ext4 rw,relatime 0 0\nvast:/kv %s %s %s 0 0\n" % (str(path).replace(" ", "\\040"), fstype, options)
    )
    return str(table)


def storage(argv):
    return gv.tier_storage(gv.parse_args(argv), {"device": "cpu", "device_how": "test"})


@pytest.mark.parametrize(
    "geometry,expected",
    [
        ((32, 8, 128, 2, 256, 1), 32 * MIB),  # Llama-3.1-8B TP1
        ((80, 8, 128, 2, 256, 1), 80 * MIB),  # Llama-3.1-70B TP1
        ((32, 8, 128, 2, 256, 4), 8 * MIB),  # Llama-3.1-8B TP4 per rank
        ((80, 8, 128, 2, 256, 8), 10 * MIB),  # Llama-3.1-70B TP8 per rank
    ],
)
def test_chunk_size_from_geometry(geometry, expected):
    assert gv.chunk_bytes_for(*geometry) == expected


def test_default_chunk_is_32_mib():
    args = gv.parse_args([])
    assert (
        gv.chunk_bytes_for(
            args.model_layers, args.model_kv_heads, args.model_head_dim, args.dtype_bytes, args.chunk_tokens, args.tp
        )
        == 33554432
    )


def test_io_on_temp_dir_with_expected_options(tmp_path):
    kv = tmp_path / "kv cache"
    kv.mkdir()
    status, reason, figs = storage(
        [
            "--storage-path",
            str(kv),
            "--mounts-file",
            mounts_for(tmp_path, kv),
            "--storage-options",
            "hard,vers=4.2,nconnect",
            "--storage-fstype",
            "nfs,nfs4",
            "--storage-files",
            "3",
            "--chunk-bytes",
            str(2 * MIB + 5),
        ]
    )
    assert status == "pass", reason
    assert figs["mount"]["mountpoint"] == str(kv) and figs["mount"]["fstype"] == "nfs4"
    io = figs["io"]
    assert io["bytes_total"] == 3 * (2 * MIB + 5) == io["bytes_read"]
    assert io["integrity_ok"] is True and io["write_gbps"] > 0 and io["read_gbps"] > 0
    assert "write" in reason and "GB/s" in reason
    assert os.listdir(str(kv)) == []  # scratch files removed


def test_missing_mount_options_fail_by_name(tmp_path):
    kv = tmp_path / "kv"
    kv.mkdir()
    status, reason, figs = storage(
        [
            "--storage-path",
            str(kv),
            "--mounts-file",
            mounts_for(tmp_path, kv, options="rw,soft"),
            "--storage-options",
            "hard,nconnect=8,rw",
        ]
    )
    assert status == "fail"
    assert figs["missing_options"] == ["hard", "nconnect=8"]
    assert "lacks option(s) hard,nconnect=8" in reason
    assert "io" not in figs


def test_path_on_root_fs_fails_fstype(tmp_path):
    status, reason, dummy = storage(
        [
            "--storage-path",
            str(tmp_path),
            "--storage-fstype",
            "nfs4",
            "--mounts-file",
            mounts_for(tmp_path, "/elsewhere"),
        ]
    )
    assert status == "fail" and "expected fstype nfs4" in reason


def test_missing_path_fails(tmp_path):
    status, reason, dummy = storage(["--storage-path", str(tmp_path / "not-mounted")])
    assert status == "fail" and "does not exist" in reason


def test_unreadable_mounts_table_fails(tmp_path):
    status, reason, dummy = storage(["--storage-path", str(tmp_path), "--mounts-file", str(tmp_path / "none")])
    assert status == "fail" and "cannot read" in reason


def test_no_path_skips():
    assert storage([])[0] == "skip"


def test_read_threshold_fails(tmp_path):
    status, reason, dummy = storage(
        [
            "--storage-path",
            str(tmp_path),
            "--storage-files",
            "1",
            "--chunk-bytes",
            str(MIB),
            "--storage-min-read-gbps",
            "1e6",
        ]
    )
    assert status == "fail" and "read" in reason and "below" in reason


def test_visibility_write_then_expect(tmp_path):
    status, reason, figs = storage(
        ["--storage-path", str(tmp_path), "--storage-files", "0", "--visibility-write", "run-1"]
    )
    assert status == "pass" and figs["visibility"]["mode"] == "write"
    status, reason, figs = storage(
        [
            "--storage-path",
            str(tmp_path),
            "--storage-files",
            "0",
            "--visibility-expect",
            "run-1",
            "--visibility-timeout",
            "2",
        ]
    )
    assert status == "pass" and figs["visibility"]["seen_after_s"] < 1
    assert "seen after" in reason


def test_visibility_marker_appearing_late_is_waited_for(tmp_path):
    def later():
        time.sleep(0.6)
        gv.visibility_write(str(tmp_path), "late")

    thread = threading.Thread(target=later)
    thread.start()
    result = gv.visibility_expect(str(tmp_path), "late", timeout=5, interval=0.05)
    thread.join()
    assert result["status"] == "pass" and 0.5 <= result["seen_after_s"] < 5


def test_visibility_timeout_fails(tmp_path):
    start = time.monotonic()
    status, reason, figs = storage(
        [
            "--storage-path",
            str(tmp_path),
            "--storage-files",
            "0",
            "--visibility-expect",
            "never",
            "--visibility-timeout",
            "0.5",
        ]
    )
    assert status == "fail" and "not visible within 0.5s" in reason
    assert 0.5 <= time.monotonic() - start < 5


def test_stale_markers_are_pruned(tmp_path):
    gv.visibility_write(str(tmp_path), "old")
    old = tmp_path / gv.MARKER_DIR / "old"
    os.utime(str(old), (time.time() - 7200, time.time() - 7200))
    gv.visibility_write(str(tmp_path), "new")
    assert sorted(os.listdir(str(tmp_path / gv.MARKER_DIR))) == ["new"]


def test_mount_escape_and_longest_prefix(tmp_path):
    table = tmp_path / "m"
    table.write_text(
        "/dev/vda / ext4 rw 0 0\nsrv:/a /mnt/with\\040space nfs4 rw,hard 0 0\n"
        "srv:/b /mnt/with\\040space/deeper nfs rw,soft 0 0\n"
    )
    found = gv.find_mount("/mnt/with space/deeper/x", str(table))
    assert found["fstype"] == "nfs" and found["mountpoint"] == "/mnt/with space/deeper"
    assert gv.find_mount("/mnt/with spacey", str(table))["mountpoint"] == "/"
