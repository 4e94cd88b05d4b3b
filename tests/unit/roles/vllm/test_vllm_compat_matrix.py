"""Consistency of the vllm role's compatibility matrix with its defaults and the LMCache
known-keys table."""
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def load(*parts):
    with open(os.path.join(ROOT, *parts)) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compat():
    return load("roles", "vllm", "vars", "compat.yml")


def test_defaults_select_the_default_row(compat):
    d = load("roles", "vllm", "defaults", "main.yml")
    lm = load("roles", "lmcache", "defaults", "main.yml")
    row = [r for r in compat["vllm_compat_matrix"] if r["id"] == compat["vllm_compat_default_id"]]
    assert len(row) == 1
    row = row[0]
    assert row["install_method"] == d["vllm_install_method"] == "plugin"
    assert row["gaudi_release"] == d["vllm_gaudi_release"]
    assert row["pytorch"] == d["vllm_torch_version"]
    assert row["vllm_version"] == d["vllm_version"] and row["vllm_ref"] == d["vllm_ref"]
    assert row["vllm_gaudi_version"] == d["vllm_gaudi_version"] and row["vllm_gaudi_ref"] == d["vllm_gaudi_ref"]
    assert lm["lmcache_version"] in row["lmcache_versions"]


def test_default_is_newest_row_validated_by_both_matrices(compat):
    def key(r):
        return tuple(int(x) for x in r["vllm_version"].split(".")[:3]), tuple(int(x) for x in r["gaudi_release"].split("."))
    validated = [r for r in compat["vllm_compat_matrix"] if r["install_method"] == "plugin" and r["lmcache_versions"]]
    assert max(validated, key=key)["id"] == compat["vllm_compat_default_id"]


def test_rows_are_unique_and_complete(compat):
    rows = compat["vllm_compat_matrix"]
    assert len({r["id"] for r in rows}) == len(rows)
    fields = {"id", "install_method", "gaudi_release", "gaudi_build", "pytorch", "vllm_gaudi_version",
              "vllm_gaudi_ref", "vllm_version", "vllm_ref", "vllm_commit", "lmcache_versions", "lmcache_hpu", "notes"}
    for r in rows:
        assert set(r) == fields, r["id"]
        assert r["install_method"] in ("plugin", "fork")
        assert r["lmcache_hpu"] in ("patch", "native", "unsupported")
        # No invented commits: either empty (not found) or a full SHA.
        assert r["vllm_commit"] == "" or len(r["vllm_commit"]) == 40


def test_lmcache_hpu_class_matches_versions(compat):
    for r in compat["vllm_compat_matrix"]:
        versions = [tuple(int(x) for x in v.split(".")) for v in r["lmcache_versions"]]
        if r["lmcache_hpu"] == "patch":
            assert versions and all((0, 3, 6) <= v < (0, 4, 3) for v in versions), r["id"]
        if r["lmcache_hpu"] == "unsupported":
            assert all(v < (0, 3, 6) for v in versions), r["id"]


def test_known_keys_cover_patchable_matrix_versions(compat):
    known = load("roles", "lmcache", "vars", "known_keys.yml")["lmcache_known_keys"]
    for r in compat["vllm_compat_matrix"]:
        if r["lmcache_hpu"] == "patch":
            for v in r["lmcache_versions"]:
                assert v in known, (r["id"], v)
    for v, table in known.items():
        for key in ("chunk_size", "local_cpu", "max_local_cpu_size", "local_disk", "max_local_disk_size",
                    "remote_url", "remote_serde", "save_decode_cache", "extra_config"):
            assert key in table["keys"], (v, key)
