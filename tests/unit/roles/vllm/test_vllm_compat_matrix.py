"""Consistency of the collection's stack matrix (meta/gaudi_stack.yml), the view the vllm role
checks against (roles/vllm/vars/compat.yml), the role defaults and the LMCache known-keys table."""

import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
LOOKUP = "lookup('gaudi.vllm_lmcache.gaudi_stack', '%s', stack=gaudi_stack | default(''))"

# Facts read from upstream (see the sources in meta/gaudi_stack.yml):
# vllm-project/vllm-gaudi VLLM_STABLE_COMMIT at each release tag.
STABLE_COMMIT = {
    "v0.11.2": "275de34170654274616082721348b7edd9741d32",
    "v0.13.0": "72506c98349d6bcd32b4e33eec7b5513453c1502",
    "v0.14.1": "d7de043d55d1dd629554467e23874097e1c48993",
    "v0.15.1": "1892993bc18e243e2c05841314c5e9c06a80c70d",
    "v0.16.0": "89a77b10846fd96273cce78d86d2556ea582d26e",
    "v0.17.1": "95c0f928cdeeaa21c4906e73cee6a156e1b3b995",
    "v0.19.0": "2a69949bdadf0e8942b7a1619b229cb475beef20",
    "v0.19.1": "b1388b1fbf5aaef47937fabe98931211684666a6",
    "v0.21.0": "ad7125a431e176d4161099480a66f0169609a690",
    "v0.24.0": "ee0da84ab9e04ac7610e28580af62c365e898389",
    "v0.26.0": "568afb3a13806beb53bb2e6bd518269357b237c0",
}
# HabanaAI/Setup_and_Install dockerfiles/common.mk: RELEASE_VERSION -> RELEASE_BUILD_ID, PT_VERSION.
GAUDI_BUILDS = {
    "1.21.3": ("57", "2.6.0"),
    "1.22.0": ("740", "2.7.1"),
    "1.22.2": ("32", "2.7.1"),
    "1.23.0": ("695", "2.9.0"),
    "1.24.0": ("1007", "2.10.0"),
    "1.24.1": ("482", "2.11.0"),
}
# vllm-gaudi docs/getting_started/compatibility_matrix.md at v0.26.0: releases per Gaudi software.
VALIDATED = {
    "0.11.2": {"1.22.2", "1.23.0"},
    "0.13.0": {"1.23.0"},
    "0.14.1": {"1.23.0"},
    "0.15.1": {"1.23.0"},
    "0.16.0": {"1.23.0"},
    "0.17.1": {"1.23.0", "1.24.0"},
    "0.19.0": {"1.24.0"},
    "0.19.1": {"1.24.0"},
    "0.21.0": {"1.24.0"},
    "0.24.0": {"1.24.1"},
    "0.26.0": {"1.24.1"},
}


def load(*parts):
    with open(os.path.join(ROOT, *parts)) as fh:
        return yaml.safe_load(fh)


def ver(text):
    return tuple(int(x) for x in text.split("."))


@pytest.fixture(scope="module")
def matrix():
    return load("meta", "gaudi_stack.yml")


@pytest.fixture(scope="module")
def rows(matrix):
    return matrix["rows"]


def test_vllm_role_checks_against_the_one_matrix():
    compat = load("roles", "vllm", "vars", "compat.yml")
    assert compat["vllm_compat_matrix"] == "{{ query('gaudi.vllm_lmcache.gaudi_stack', all_rows=true) }}"
    assert compat["vllm_compat_default_id"] == "{{ lookup('gaudi.vllm_lmcache.gaudi_stack', 'id') }}"


def test_role_defaults_read_the_selected_row():
    d = load("roles", "vllm", "defaults", "main.yml")
    expected = {
        "vllm_install_method": "install_method",
        "vllm_wheelhouse_flavor": "install_method",
        "vllm_gaudi_release": "gaudi_release",
        "vllm_gaudi_build": "gaudi_build",
        "vllm_torch_version": "pytorch",
        "vllm_version": "vllm_version",
        "vllm_ref": "vllm_ref",
        "vllm_gaudi_version": "vllm_gaudi_version",
        "vllm_gaudi_ref": "vllm_gaudi_ref",
    }
    for var, field in expected.items():
        assert d[var] == "{{ %s }}" % (LOOKUP % field), var
    assert load("roles", "lmcache", "defaults", "main.yml")["lmcache_version"] == "{{ %s }}" % (
        LOOKUP % "lmcache_version"
    )
    hd = load("roles", "habana_driver", "defaults", "main.yml")
    assert hd["habana_driver_version"] == "{{ %s }}" % (LOOKUP % "habana_driver_version")
    # gaudi_stack itself is one inventory variable for every role, never a role default.
    for role in os.listdir(os.path.join(ROOT, "roles")):
        assert "gaudi_stack" not in (load("roles", role, "defaults", "main.yml") or {}), role


def test_rows_are_unique_and_complete(rows):
    assert len({r["id"] for r in rows}) == len(rows)
    fields = {
        "id",
        "install_method",
        "habana_driver_version",
        "gaudi_release",
        "gaudi_build",
        "pytorch",
        "vllm_gaudi_version",
        "vllm_gaudi_ref",
        "vllm_version",
        "vllm_ref",
        "vllm_commit",
        "lmcache_version",
        "lmcache_versions",
        "lmcache_hpu",
        "lmcache_install_source",
        "sources",
        "notes",
    }
    for r in rows:
        assert set(r) == fields, r["id"]
        assert r["install_method"] in ("plugin", "fork")
        assert r["lmcache_hpu"] in ("patch", "native", "unsupported")
        # LMCache reaches a Gaudi node built from its sdist without CUDA; the fork rows'
        # LMCache never reaches the HPU and keeps the release wheel.
        want = "pypi-wheel" if r["lmcache_hpu"] == "unsupported" else "sdist-nocuda"
        assert r["lmcache_install_source"] == want, r["id"]
        assert r["sources"], r["id"]
        # Driver release = userspace release, and a build number everywhere (vendor tarball URL).
        assert re.match(r"^\d+\.\d+\.\d+-\d+$", r["habana_driver_version"]), r["id"]
        assert r["habana_driver_version"] == "%s-%s" % (r["gaudi_release"], r["gaudi_build"]), r["id"]
        assert (r["gaudi_build"], r["pytorch"]) == GAUDI_BUILDS[r["gaudi_release"]], r["id"]
        assert r["lmcache_version"] in r["lmcache_versions"], r["id"]
        assert r["id"] == "%s-%s-sw%s" % (
            r["install_method"],
            r["vllm_gaudi_version"] or r["vllm_version"],
            r["gaudi_release"],
        ), r["id"]


def test_plugin_rows_are_upstream_facts(rows):
    for r in rows:
        if r["install_method"] != "plugin":
            assert r["vllm_commit"] == "" and r["vllm_gaudi_ref"] == "", r["id"]
            continue
        assert r["vllm_gaudi_ref"] == "v" + r["vllm_gaudi_version"], r["id"]
        assert r["vllm_version"] == r["vllm_gaudi_version"], r["id"]
        # vLLM is installed at the commit vllm-gaudi validated at that tag.
        assert r["vllm_commit"] == STABLE_COMMIT[r["vllm_gaudi_ref"]], r["id"]
        assert r["vllm_ref"] == r["vllm_commit"], r["id"]
        assert r["gaudi_release"] in VALIDATED[r["vllm_gaudi_version"]], r["id"]
    plugin = {(r["vllm_gaudi_version"], r["gaudi_release"]) for r in rows if r["install_method"] == "plugin"}
    assert plugin == {(v, g) for v, gs in VALIDATED.items() for g in gs}


def test_lmcache_hpu_class_matches_versions(rows):
    for r in rows:
        versions = [ver(v) for v in r["lmcache_versions"]]
        assert versions, r["id"]
        if r["lmcache_hpu"] == "patch":
            assert all((0, 3, 6) <= v < (0, 4, 3) for v in versions), r["id"]
        if r["lmcache_hpu"] == "native":
            # 0.4.3 and 0.4.4 fail on vLLM-Gaudi's (K, V) TensorTuple layout; 0.4.5 adds the override.
            assert all(v >= (0, 4, 5) for v in versions), r["id"]
            # vllm-gaudi's own LMCache hook exists from v0.19.0.
            assert ver(r["vllm_gaudi_version"]) >= (0, 19, 0), r["id"]
        if r["lmcache_hpu"] == "unsupported":
            assert all(v < (0, 3, 6) for v in versions), r["id"]
    # Sites pinned to older stacks keep the patch rows (LMCache 0.3.6 to 0.4.2).
    assert {r["lmcache_version"] for r in rows if r["lmcache_hpu"] == "patch"} >= {"0.4.2", "0.4.1"}


def test_default_is_newest_plugin_row_on_the_native_path(matrix, rows):
    def key(r):
        return ver(r["vllm_gaudi_version"]), ver(r["gaudi_release"])

    native = [r for r in rows if r["install_method"] == "plugin" and r["lmcache_hpu"] == "native"]
    assert max(native, key=key)["id"] == matrix["default"]
    default = [r for r in rows if r["id"] == matrix["default"]][0]
    assert ver(default["lmcache_version"]) >= (0, 4, 5)
    newest = max((r for r in rows if r["install_method"] == "plugin"), key=key)
    assert newest["id"] == matrix["default"]


def test_known_keys_cover_patchable_matrix_versions(rows):
    known = load("roles", "lmcache", "vars", "known_keys.yml")["lmcache_known_keys"]
    for r in rows:
        if r["lmcache_hpu"] == "patch":
            for v in r["lmcache_versions"]:
                assert v in known, (r["id"], v)
    for v, table in known.items():
        for key in (
            "chunk_size",
            "local_cpu",
            "max_local_cpu_size",
            "local_disk",
            "max_local_disk_size",
            "remote_url",
            "remote_serde",
            "save_decode_cache",
            "extra_config",
        ):
            assert key in table["keys"], (v, key)


def test_example_inventories_repeat_no_version_pins():
    pins = (
        "habana_driver_version",
        "vllm_gaudi_release",
        "vllm_gaudi_build",
        "vllm_torch_version",
        "vllm_version",
        "vllm_ref",
        "vllm_gaudi_version",
        "vllm_gaudi_ref",
        "vllm_fork_ref",
        "lmcache_version",
    )
    for base, _dirs, files in os.walk(os.path.join(ROOT, "inventories")):
        for name in files:
            if name.endswith(".yml"):
                data = load(base, name) or {}
                found = set(pins) & set(data)
                # The gaudi_stack row drives the hpu stack only: a group of non-Gaudi nodes (the
                # lab's CPU nodes) names the LMCache release of its own platform.
                if data.get("vllm_platform", "hpu") != "hpu":
                    found -= {"lmcache_version"}
                assert not found, os.path.join(base, name)
