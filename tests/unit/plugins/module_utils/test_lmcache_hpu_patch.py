"""lmcache_hpu_patch over the real LMCache releases from PyPI (wheels cached outside the repo)."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import lmcache_hpu_patch as hp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
CONNECTOR_SRC = os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py")
PATCH_SRC = os.path.join(ROOT, "plugins", "module_utils", "lmcache_hpu_patch.py")


import lmcache_wheels as W  # noqa: E402  (on sys.path through tests/unit/conftest.py)

with open(CONNECTOR_SRC, "rb") as _f:
    CONNECTOR = _f.read()


def expected_classification(version):
    vt = hp.parse_version(version)
    if vt < (0, 3, 6):
        return "unsupported"
    if vt < (0, 4, 3):
        return "patchable"
    return "native"


BOUNDARY_RELEASES = ["0.3.5", "0.3.6", "0.3.7", "0.3.9", "0.3.10", "0.4.2", "0.4.3", W.NEWEST]


def test_release_list_matches_known_shapes():
    patchable = [v for v in W.ALL_RELEASES if expected_classification(v) == "patchable"]
    assert sorted(patchable, key=hp.parse_version) == sorted(hp.KNOWN_RELEASES, key=hp.parse_version)


def test_connector_sha256_recorded():
    assert hashlib.sha256(CONNECTOR).hexdigest() == hp.CONNECTOR_SHA256


def test_classify_missing_never_raises(tmp_path):
    r = hp.classify(str(tmp_path / "nowhere"))
    assert r["classification"] == "missing"
    assert r["lmcache_version"] is None and r["patch_needed"] is False
    assert "nowhere" in r["reason"]
    (tmp_path / "lmcache").mkdir()
    r = hp.classify(str(tmp_path))
    assert r["classification"] == "unsupported" and "dist-info" in r["reason"]


def test_module_utils_is_stdlib_only_standalone(tmp_path):
    """The validation script copies the file next to itself and imports it plainly."""
    shutil.copy(PATCH_SRC, str(tmp_path / "lmcache_hpu_patch.py"))
    code = (
        "import sys, json\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import lmcache_hpu_patch as m\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('ansible', 'ansible_collections', 'torch')]\n"
        "r = m.classify(sys.argv[2])\n"
        "print(json.dumps([bad, r['classification'], r['patch_needed'], r['lmcache_version']]))\n"
    )
    out = subprocess.check_output([sys.executable, "-S", "-c", code, str(tmp_path), str(tmp_path / "x")])
    assert out.decode().strip() == '[[], "missing", false, null]'


@pytest.mark.parametrize("version", BOUNDARY_RELEASES)
def test_release_lifecycle(version, tmp_path):
    site = W.make_site(version, str(tmp_path / "site"))
    pristine = W.tree_digest(site)
    expected = expected_classification(version)
    info = hp.classify(site)
    assert info["lmcache_version"] == version
    assert info["classification"] == expected, info["reason"]
    assert info["patch_needed"] is (expected == "patchable")

    if expected == "unsupported":
        with pytest.raises(hp.PatchError) as exc:
            hp.run(site, "present", connector_source=CONNECTOR)
        assert version in str(exc.value) and "0.3.6" in str(exc.value)
        assert W.tree_digest(site) == pristine
        return
    if expected == "native":
        for state in ("present", "absent"):
            r = hp.run(site, state, connector_source=CONNECTOR)
            assert r["changed"] is False and r["classification"] == "native"
        assert W.tree_digest(site) == pristine
        return

    # check mode: reports the change, writes nothing, diff names every file
    r = hp.run(site, "present", connector_source=CONNECTOR, check_mode=True, want_diff=True)
    assert r["changed"] is True and r["patch_needed"] is True
    assert W.tree_digest(site) == pristine
    shape_files = set(hp.KNOWN_RELEASES[version][1])
    diff_paths = {os.path.relpath(d["after_header"], site) for d in r["diff"]}
    assert diff_paths == shape_files | {hp.CONNECTOR_RELPATH}
    for d in r["diff"]:
        assert d["unified"].startswith("---")
        assert "gaudi.vllm_lmcache hpu_patch" in d["after"] or "VLLMPagedMemHPUConnectorV2" in d["after"]

    # apply
    r = hp.run(site, "present", connector_source=CONNECTOR)
    assert r["changed"] is True and r["classification"] == "patched"
    assert hp.classify(site)["classification"] == "patched"
    by_path = {os.path.relpath(f["path"], site): f for f in r["files"]}
    for rel in shape_files:
        f = by_path[rel]
        assert f["original_sha256"] == hashlib.sha256(pristine[rel]).hexdigest()
        assert f["current_sha256"] != f["original_sha256"]
        with open(f["backup"], "rb") as fh:
            assert fh.read() == pristine[rel]
    with open(os.path.join(site, hp.CONNECTOR_RELPATH), "rb") as fh:
        assert fh.read() == CONNECTOR
    # every patched file compiles with this interpreter
    for rel in shape_files:
        subprocess.check_call([sys.executable, "-m", "py_compile", os.path.join(site, rel)])

    # idempotent
    r = hp.run(site, "present", connector_source=CONNECTOR)
    assert r["changed"] is False and r["classification"] == "patched" and r["patch_needed"] is False

    # revert: check mode writes nothing, then byte-exact restore, backups gone
    patched_tree = W.tree_digest(site)
    r = hp.run(site, "absent", check_mode=True)
    assert r["changed"] is True and W.tree_digest(site) == patched_tree
    r = hp.run(site, "absent")
    assert r["changed"] is True and r["classification"] == "patchable"
    assert {k: v for k, v in W.tree_digest(site).items() if "__pycache__" not in k} == pristine
    r = hp.run(site, "absent")
    assert r["changed"] is False


@pytest.mark.parametrize("version", ["0.3.9", "0.4.2"])
def test_hand_edited_file_refused_and_untouched(version, tmp_path):
    site = W.make_site(version, str(tmp_path / "site"))
    rel = sorted(hp.KNOWN_RELEASES[version][1])[0]
    path = os.path.join(site, rel)
    with open(path, "ab") as f:
        f.write(b"\n# local tweak\n")
    before = W.tree_digest(site)
    info = hp.classify(site)
    assert info["classification"] == "unsupported"
    assert version in info["reason"] and rel in info["reason"] and "pristine" in info["reason"]
    with pytest.raises(hp.PatchError) as exc:
        hp.run(site, "present", connector_source=CONNECTOR)
    assert exc.value.details["classification"] == "unsupported"
    with pytest.raises(hp.PatchError):
        hp.run(site, "absent")
    assert W.tree_digest(site) == before


def test_hand_edited_patched_file_refused(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    hp.run(site, "present", connector_source=CONNECTOR)
    path = os.path.join(site, hp.ADAPTER)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"htcore.mark_step()", b"htcore.mark_step()  # edited"))
    before = W.tree_digest(site)
    assert hp.classify(site)["classification"] == "unsupported"
    with pytest.raises(hp.PatchError):
        hp.run(site, "absent")
    assert W.tree_digest(site) == before


def test_missing_or_altered_connector_is_not_patched(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    hp.run(site, "present", connector_source=CONNECTOR)
    conn = os.path.join(site, hp.CONNECTOR_RELPATH)
    os.unlink(conn)
    info = hp.classify(site)
    assert info["classification"] == "patchable" and "missing" in info["reason"]
    r = hp.run(site, "present", connector_source=CONNECTOR)
    assert r["changed"] is True and hp.classify(site)["classification"] == "patched"
    with open(conn, "ab") as f:
        f.write(b"# altered\n")
    assert "altered" in hp.classify(site)["reason"]
    hp.run(site, "present", connector_source=CONNECTOR)
    with open(conn, "rb") as f:
        assert f.read() == CONNECTOR


def test_revert_without_backup_is_byte_exact_full_tree(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"), full=True)
    pristine = W.tree_digest(site)
    r = hp.run(site, "present", backup=False, connector_source=CONNECTOR)
    assert all(f["backup"] is None for f in r["files"])
    assert not any(k.endswith(hp.BACKUP_SUFFIX) for k in W.tree_digest(site))
    hp.run(site, "absent")
    assert W.tree_digest(site) == pristine


def test_compile_failure_leaves_install_untouched(tmp_path, monkeypatch):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    before = W.tree_digest(site)
    broken = dict(hp.SHAPES["adapter_cuda"])
    breaking_op = ("        _gvl_mark_step()  # gaudi.vllm_lmcache hpu_patch\n",
                   "        _gvl_mark_step(  # gaudi.vllm_lmcache hpu_patch\n", 2)
    broken[hp.ADAPTER] = broken[hp.ADAPTER] + [breaking_op]
    monkeypatch.setitem(hp.SHAPES, "adapter_cuda", broken)
    with pytest.raises(hp.PatchError) as exc:
        hp.run(site, "present", connector_source=CONNECTOR)
    assert "do not compile" in str(exc.value)
    assert W.tree_digest(site) == before


def test_damaged_connector_source_refused(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    with pytest.raises(hp.PatchError):
        hp.run(site, "present", connector_source=CONNECTOR + b"#")


def test_resolve_site_packages_via_python(tmp_path):
    with pytest.raises(hp.PatchError) as exc:
        hp.resolve_site_packages(sys.executable, None)
    assert "LMCache is not installed" in str(exc.value)
    assert hp.resolve_site_packages(None, str(tmp_path)) == (str(tmp_path), [str(tmp_path)])


def test_sweep_every_release(tmp_path):
    """Every release 0.3.0 .. 0.5.6: classification; patch/compile/idempotence/revert where patchable."""
    table = []
    for version in W.ALL_RELEASES:
        site = W.make_site(version, str(tmp_path / version))
        info = hp.classify(site)
        expected = expected_classification(version)
        table.append((version, info["classification"], info.get("shape")))
        assert info["classification"] == expected, (version, info["reason"])
        assert info["lmcache_version"] == version
        if expected != "patchable":
            continue
        pristine = W.tree_digest(site)
        assert hp.run(site, "present", connector_source=CONNECTOR)["changed"] is True
        assert hp.classify(site)["classification"] == "patched"
        assert hp.run(site, "present", connector_source=CONNECTOR)["changed"] is False
        assert hp.run(site, "absent")["changed"] is True
        assert W.tree_digest(site) == pristine, version
    print("\n".join("%-7s %-12s %s" % row for row in table))
