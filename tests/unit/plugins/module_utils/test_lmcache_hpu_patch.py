"""lmcache_hpu_patch over the real LMCache releases from PyPI (wheels cached outside the repo).

The tests marked ``network`` need the releases; they fail (never skip) when a release is
neither cached nor downloadable (see lmcache_wheels).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import lmcache_wheels as W  # noqa: E402  (on sys.path through tests/unit/conftest.py)
import pytest

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import lmcache_hpu_patch as hp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
CONNECTOR_SRC = os.path.join(ROOT, "plugins", "module_utils", "hpu_kv_transfer.py")
PATCH_SRC = os.path.join(ROOT, "plugins", "module_utils", "lmcache_hpu_patch.py")

with open(CONNECTOR_SRC, "rb") as _f:
    CONNECTOR = _f.read()

network = pytest.mark.network

ADAPTER_ANCHOR = "lmcache/integration/vllm/vllm_v1_adapter.py: expected the anchor"
C_OPS_REASON = (
    "lmcache/v1/memory_management.py imports lmcache.c_ops unconditionally "
    "('import lmcache.c_ops as lmc_ops' at module level) and the release has no "
    "lmcache/non_cuda_equivalents.py to fall back on"
)


def expected(version):
    """(classification, shape, words the reason must contain) for a PyPI release."""
    k = W.version_key(version)
    if k < (0, 3, 6, 0):
        return (
            "unsupported",
            None,
            ["LMCache %s:" % version, "no release shape fits", ADAPTER_ANCHOR, "older than 0.3.7"],
        )
    if k < (0, 3, 7, 0):
        return "unsupported", "adapter_cuda", ["LMCache 0.3.6:", C_OPS_REASON, "libcudart.so.12"]
    if k < (0, 3, 10, 0):
        shape = "adapter_cuda"
    elif k < (0, 3, 11, 0):
        shape = "adapter_platform_cls"
    elif k < (0, 3, 12, 0):
        shape = "adapter_platform_meta"
    elif k < (0, 3, 13, 0):
        shape = "adapter_platform_v3"
    elif k < (0, 3, 14, 0):
        shape = "manager_platform"
    elif k < (0, 4, 3, 0):
        shape = "utils_platform"
    elif k < (0, 4, 5, 0):
        shape = "hpu_connector_kv_pairs"
    else:
        return "native", None, ["LMCache %s supports HPU natively" % version, hp.NATIVE_CONNECTOR_RELPATH]
    return "patchable", shape, ["LMCache %s fits shape %s" % (version, shape)]


BOUNDARY_RELEASES = ["0.3.5", "0.3.6", "0.3.7", "0.3.9.post2", "0.3.10.post2", "0.4.2", "0.4.3", "0.4.5", W.NEWEST]


def test_connector_sha256_recorded():
    assert hashlib.sha256(CONNECTOR).hexdigest() == hp.CONNECTOR_SHA256


def test_connector_sha256_is_one_line_constant():
    with open(PATCH_SRC) as f:
        lines = [ln for ln in f if ln.startswith("CONNECTOR_SHA256 = ")]
    assert len(lines) == 1 and lines[0].count('"') == 2


def test_classify_missing_never_raises(tmp_path):
    r = hp.classify(str(tmp_path / "nowhere"))
    assert r["classification"] == "missing"
    assert r["lmcache_version"] is None and r["patch_needed"] is False
    assert "nowhere" in r["reason"]
    (tmp_path / "lmcache").mkdir()
    r = hp.classify(str(tmp_path))
    assert r["classification"] == "unsupported"
    assert "no release shape fits" in r["reason"] and "vllm_v1_adapter.py is missing" in r["reason"]


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


def test_cuda_guard_only_touches_code():
    src = (
        "import torch\n"
        "# torch.cuda.is_available() in a comment\n"
        "DOC = 'torch.cuda.is_available()'\n"
        "F = f\"{torch.cuda.is_available()}\"\n"
        "if torch.cuda.is_available():\n"
        "    x = not torch.cuda.is_available()\n"
        "y = mytorch.cuda.is_available()\n"
    )
    out, n = hp.guard_cuda_calls(src)
    assert n == 2
    assert out.count(hp.CUDA_GUARD) == 2
    assert "# torch.cuda.is_available() in a comment" in out and "'torch.cuda.is_available()'" in out
    assert out.replace(hp.CUDA_GUARD, hp.CUDA_CALL) == src
    compile(out, "x.py", "exec")


def test_cuda_guard_semantics():
    class Dev:
        def __init__(self, ok):
            self.ok = ok

        def is_available(self):
            return self.ok

    class T:
        cuda = Dev(True)

    ns = {"torch": T}
    assert eval(hp.CUDA_GUARD, ns) is True  # CUDA host: unchanged
    T.hpu = Dev(True)
    assert eval(hp.CUDA_GUARD, ns) is False  # Gaudi under PT_HPU_GPU_MIGRATION=1
    T.hpu = Dev(False)
    assert eval(hp.CUDA_GUARD, ns) is True
    T.cuda = Dev(False)
    assert eval(hp.CUDA_GUARD, ns) is False


@network
@pytest.mark.parametrize("version", BOUNDARY_RELEASES)
def test_release_lifecycle(version, tmp_path):
    site = W.make_site(version, str(tmp_path / "site"))
    pristine = W.tree_digest(site)
    cls, shape, words = expected(version)
    info = hp.classify(site)
    assert info["lmcache_version"] == version
    assert (info["classification"], info["shape"]) == (cls, shape), info["reason"]
    for w in words:
        assert w in info["reason"]
    assert info["patch_needed"] is (cls == "patchable")

    if cls == "unsupported":
        for state in ("present", "absent"):
            with pytest.raises(hp.PatchError) as exc:
                hp.run(site, state, connector_source=CONNECTOR)
            assert str(exc.value) == info["reason"]
            assert exc.value.details["classification"] == "unsupported"
        assert W.tree_digest(site) == pristine
        return
    if cls == "native":
        for state in ("present", "absent"):
            r = hp.run(site, state, connector_source=CONNECTOR)
            assert r["changed"] is False and r["classification"] == "native"
        assert W.tree_digest(site) == pristine
        return

    # check mode: reports the change, writes nothing, diff names every file
    r = hp.run(site, "present", connector_source=CONNECTOR, check_mode=True, want_diff=True)
    assert r["changed"] is True and r["patch_needed"] is True
    assert W.tree_digest(site) == pristine
    edited = set(info["files"])
    assert set(hp.SHAPES[shape]["files"]) <= edited
    diff_paths = {os.path.relpath(d["after_header"], site) for d in r["diff"]}
    expect_paths = edited | {hp.STATE_RELPATH}
    if hp.SHAPES[shape]["connector"]:
        expect_paths.add(hp.CONNECTOR_RELPATH)
    assert diff_paths == expect_paths
    for d in r["diff"]:
        assert d["unified"].startswith("---")

    # apply
    r = hp.run(site, "present", connector_source=CONNECTOR)
    assert r["changed"] is True and r["classification"] == "patched"
    assert hp.classify(site)["classification"] == "patched"
    by_path = {os.path.relpath(f["path"], site): f for f in r["files"]}
    for rel in edited:
        f = by_path[rel]
        assert f["original_sha256"] == hashlib.sha256(pristine[rel]).hexdigest()
        assert f["current_sha256"] != f["original_sha256"]
        with open(f["backup"], "rb") as fh:
            assert fh.read() == pristine[rel]
    with open(os.path.join(site, hp.STATE_RELPATH)) as fh:
        state = json.load(fh)
    assert state["shape"] == shape and set(state["files"]) == edited
    for rel in edited:
        assert state["files"][rel]["pristine_sha256"] == hashlib.sha256(pristine[rel]).hexdigest()
    if hp.SHAPES[shape]["connector"]:
        with open(os.path.join(site, hp.CONNECTOR_RELPATH), "rb") as fh:
            assert fh.read() == CONNECTOR
    else:
        assert not os.path.exists(os.path.join(site, hp.CONNECTOR_RELPATH))
    for rel in edited:
        subprocess.check_call([sys.executable, "-m", "py_compile", os.path.join(site, rel)])

    # idempotent
    r = hp.run(site, "present", connector_source=CONNECTOR)
    assert r["changed"] is False and r["classification"] == "patched" and r["patch_needed"] is False

    # revert: check mode writes nothing, then byte-exact restore, backups and state gone
    patched_tree = W.tree_digest(site)
    r = hp.run(site, "absent", check_mode=True)
    assert r["changed"] is True and W.tree_digest(site) == patched_tree
    r = hp.run(site, "absent")
    assert r["changed"] is True and r["classification"] == "patchable"
    assert {k: v for k, v in W.tree_digest(site).items() if "__pycache__" not in k} == pristine
    assert W.record_mismatches(site) == ([], [])
    assert hp.run(site, "absent")["changed"] is False


@network
@pytest.mark.parametrize("version", ["0.3.9", "0.4.2", "0.4.4"])
def test_hand_edited_file_refused_and_untouched(version, tmp_path):
    site = W.make_site(version, str(tmp_path / "site"))
    rel = sorted(hp.SHAPES[expected(version)[1]]["files"])[0]
    path = os.path.join(site, rel)
    with open(path, "ab") as f:
        f.write(b"\n# local tweak\n")
    before = W.tree_digest(site)
    info = hp.classify(site)
    assert info["classification"] == "unsupported"
    assert version in info["reason"] and rel in info["reason"] and "RECORD" in info["reason"]
    with pytest.raises(hp.PatchError) as exc:
        hp.run(site, "present", connector_source=CONNECTOR)
    assert exc.value.details["classification"] == "unsupported"
    with pytest.raises(hp.PatchError):
        hp.run(site, "absent")
    assert W.tree_digest(site) == before


@network
def test_anchor_mismatch_names_file_and_anchor(tmp_path):
    site = W.make_site("0.4.2", str(tmp_path / "site"))
    path = os.path.join(site, hp.UTILS)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("if current_platform.is_cuda_alike():", "if current_platform.is_cuda_alike() :"))
    info = hp.classify(site)
    assert info["classification"] == "unsupported"
    assert "utils_platform: %s: expected the anchor 'if current_platform.is_cuda_alike():'" % hp.UTILS in info["reason"]


@network
def test_unseen_release_without_record_reverts_from_state(tmp_path):
    """No RECORD (an unknown build): the state file written at patch time is the reference."""
    site = W.make_site("0.4.1", str(tmp_path / "site"))
    for d in os.listdir(site):
        if d.endswith(".dist-info"):
            os.unlink(os.path.join(site, d, "RECORD"))
    pristine = W.tree_digest(site)
    assert hp.classify(site)["classification"] == "patchable"
    hp.run(site, "present", backup=False, connector_source=CONNECTOR)
    state_path = os.path.join(site, hp.STATE_RELPATH)
    with open(state_path) as f:
        state = json.load(f)
    assert all(v["pristine_reference"] == "content (no RECORD entry)" for v in state["files"].values())
    # a recorded file edited after the patch is refused by its pristine hash, not guessed
    rel = sorted(state["files"])[0]
    p = os.path.join(site, rel)
    with open(p, "rb") as f:
        patched = f.read()
    with open(p, "ab") as f:
        f.write(b"# edited\n")
    info = hp.classify(site)
    assert info["classification"] == "unsupported" and rel in info["reason"] and hp.STATE_RELPATH in info["reason"]
    with open(p, "wb") as f:
        f.write(patched)
    hp.run(site, "absent")
    assert W.tree_digest(site) == pristine


@network
def test_patched_by_older_collection_is_completed(tmp_path):
    """An install patched without the CUDA guards and without a state file is partial."""
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    pristine = W.tree_digest(site)
    path = os.path.join(site, hp.ADAPTER)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(hp._apply_ops(text, hp.SHAPES["adapter_cuda"]["files"][hp.ADAPTER], hp.ADAPTER))
    info = hp.classify(site)
    assert info["classification"] == "patchable" and "partially patched" in info["reason"]
    assert info["files"][hp.ADAPTER]["state"] == "patched"
    assert "pristine" in {f["state"] for f in info["files"].values()}  # the CUDA guards are missing
    hp.run(site, "present", connector_source=CONNECTOR)
    assert hp.classify(site)["classification"] == "patched"
    hp.run(site, "absent")
    assert {k: v for k, v in W.tree_digest(site).items() if not k.endswith(hp.BACKUP_SUFFIX)} == pristine


@network
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


@network
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


@network
def test_revert_without_backup_is_byte_exact_full_tree(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"), full=True)
    pristine = W.tree_digest(site)
    r = hp.run(site, "present", backup=False, connector_source=CONNECTOR)
    assert all(f["backup"] is None for f in r["files"])
    assert not any(k.endswith(hp.BACKUP_SUFFIX) for k in W.tree_digest(site))
    changed, extra = W.record_mismatches(site)
    assert set(changed) == set(hp.classify(site)["files"])
    assert extra == sorted([hp.CONNECTOR_RELPATH, hp.STATE_RELPATH])
    hp.run(site, "absent")
    assert W.tree_digest(site) == pristine


@network
def test_compile_failure_leaves_install_untouched(tmp_path, monkeypatch):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    before = W.tree_digest(site)
    broken = dict(hp.SHAPES["adapter_cuda"], files=dict(hp.SHAPES["adapter_cuda"]["files"]))
    breaking_op = (
        "        _gvl_mark_step()  # gaudi.vllm_lmcache hpu_patch\n",
        "        _gvl_mark_step(  # gaudi.vllm_lmcache hpu_patch\n",
        2,
    )
    broken["files"][hp.ADAPTER] = broken["files"][hp.ADAPTER] + [breaking_op]
    monkeypatch.setitem(hp.SHAPES, "adapter_cuda", broken)
    with pytest.raises(hp.PatchError) as exc:
        hp.run(site, "present", connector_source=CONNECTOR)
    assert "do not compile" in str(exc.value)
    assert W.tree_digest(site) == before


@network
def test_damaged_connector_source_refused(tmp_path):
    site = W.make_site("0.3.9", str(tmp_path / "site"))
    with pytest.raises(hp.PatchError):
        hp.run(site, "present", connector_source=CONNECTOR + b"#")


def test_resolve_site_packages_via_python(tmp_path):
    with pytest.raises(hp.PatchError) as exc:
        hp.resolve_site_packages(sys.executable, None)
    assert "LMCache is not installed" in str(exc.value)
    assert hp.resolve_site_packages(None, str(tmp_path)) == (str(tmp_path), [str(tmp_path)])


@network
def test_sweep_every_release(tmp_path):
    """Every PyPI release 0.3.0 .. 0.5.6 (post releases included): classification and reason;
    where patchable: patch, idempotence, and a revert that matches the wheel's RECORD."""
    table = []
    for version in W.ALL_RELEASES:
        site = W.make_site(version, str(tmp_path / version))
        pristine = W.tree_digest(site)
        info = hp.classify(site)
        cls, shape, words = expected(version)
        row = "%-13s %-11s %-23s" % (version, info["classification"], info["shape"] or "-")
        assert (info["classification"], info["shape"]) == (cls, shape), (version, info["reason"])
        assert info["lmcache_version"] == version
        for w in words:
            assert w in info["reason"], (version, w, info["reason"])
        if cls != "patchable":
            if cls == "unsupported":
                with pytest.raises(hp.PatchError):
                    hp.run(site, "present", connector_source=CONNECTOR)
            else:
                assert hp.run(site, "present", connector_source=CONNECTOR)["changed"] is False
            assert W.tree_digest(site) == pristine, version
            table.append(row + " " + info["reason"][:100])
            continue
        assert W.record_mismatches(site) == ([], []), version
        assert hp.run(site, "present", backup=False, connector_source=CONNECTOR)["changed"] is True
        after = hp.classify(site)
        assert after["classification"] == "patched", (version, after["reason"])
        changed, extra = W.record_mismatches(site)
        assert set(changed) == set(after["files"]), version
        assert hp.run(site, "present", connector_source=CONNECTOR)["changed"] is False
        assert hp.run(site, "absent")["changed"] is True
        assert W.record_mismatches(site) == ([], []), version
        assert W.tree_digest(site) == pristine, version
        table.append(row + " patched %d files, reverted byte-exact" % len(changed))
    print("\n" + "\n".join(table))
