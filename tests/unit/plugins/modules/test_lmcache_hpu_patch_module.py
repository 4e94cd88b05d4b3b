"""The thin lmcache_hpu_patch module: arguments, results, failures (real LMCache 0.3.9 wheel)."""

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import lmcache_hpu_patch as mod

HERE = os.path.dirname(os.path.abspath(__file__))


import lmcache_wheels as W  # noqa: E402  (on sys.path through tests/unit/conftest.py)


def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            mod.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = exc.value.code
    return out


def test_connector_source_is_shipped_data():
    data = mod._connector_source()
    assert data.startswith(b"# -*- coding: utf-8 -*-") and b"class VLLMPagedMemHPUConnectorV2" in data


def test_apply_check_idempotent_revert(tmp_path, capsys):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    pristine = W.tree_digest(site)
    r = run_module(capsys, site_packages=site, _ansible_check_mode=True, _ansible_diff=True)
    assert r["_rc"] == 0 and r["changed"] is True and r["classification"] == "patchable"
    assert W.tree_digest(site) == pristine
    assert any("gaudi.vllm_lmcache hpu_patch" in d["after"] for d in r["diff"])
    r = run_module(capsys, site_packages=site)
    assert r["changed"] is True and r["classification"] == "patched" and r["lmcache_version"] == "0.3.9"
    assert {"path", "original_sha256", "current_sha256", "backup"} <= set(r["files"][0])
    r = run_module(capsys, site_packages=site)
    assert r["changed"] is False and r["patch_needed"] is False
    r = run_module(capsys, site_packages=site, state="absent")
    assert r["changed"] is True
    assert W.tree_digest(site) == pristine


def test_unsupported_fails_and_names_version(tmp_path, capsys):
    site = W.make_site("0.3.5", str(tmp_path / "site"))
    r = run_module(capsys, site_packages=site)
    assert r["_rc"] == 1 and r["failed"] is True
    assert r["classification"] == "unsupported" and "0.3.5" in r["msg"]


def test_missing_names_where_it_looked(tmp_path, capsys):
    r = run_module(capsys, site_packages=str(tmp_path))
    assert r["_rc"] == 1 and str(tmp_path) in r["msg"]
