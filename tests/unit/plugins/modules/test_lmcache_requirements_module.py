# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-level tests of lmcache_requirements on small wheels and fake interpreters."""

import json
import stat
import zipfile

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gaudi.vllm_lmcache.plugins.modules import lmcache_requirements

METADATA = (
    "Metadata-Version: 2.4\nName: lmcache\nVersion: 0.4.5\n"
    "Requires-Dist: numpy<=2.2.6\nRequires-Dist: torch\nRequires-Dist: cupy-cuda13x\n"
    "Requires-Dist: nvtx\nRequires-Dist: pytest; extra == 'test'\n\nbody\n"
)


def wheel(tmp_path):
    path = tmp_path / "lmcache-0.4.5-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("lmcache/__init__.py", "")
        zf.writestr("lmcache-0.4.5.dist-info/METADATA", METADATA)
        zf.writestr("lmcache-0.4.5.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
    return str(path)


def fake_python(tmp_path, names, rc=0):
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\necho '%s'\nexit %d\n" % (json.dumps(names), rc))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def run(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            lmcache_requirements.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_default_set(tmp_path, capsys):
    code, result = run(capsys, {"wheel": wheel(tmp_path), "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is False
    assert (result["name"], result["version"], result["pure"]) == ("lmcache", "0.4.5", True)
    assert result["requirements"] == ["numpy<=2.2.6"]
    assert result["excluded"] == ["torch", "cupy-cuda13x", "nvtx"]
    assert result["skipped_extras"] == ["pytest; extra == 'test'"]
    assert result["installed_forbidden"] == []


def test_custom_exclude_and_extras(tmp_path, capsys):
    code, result = run(capsys, {"wheel": wheel(tmp_path), "exclude": ["cupy-*"], "extras": ["test"]})
    assert code == 0
    assert result["requirements"] == ["numpy<=2.2.6", "torch", "nvtx", "pytest; extra == 'test'"]


def test_installed_forbidden(tmp_path, capsys):
    py = fake_python(tmp_path, ["numpy", "nvidia-cublas-cu12", "cupy_cuda12x", "torch"])
    code, result = run(capsys, {"wheel": wheel(tmp_path), "python": py})
    assert code == 0
    assert result["installed_forbidden"] == ["cupy-cuda12x", "nvidia-cublas-cu12"]


def test_failures_name_the_input(tmp_path, capsys):
    code, result = run(capsys, {"wheel": str(tmp_path / "missing.whl")})
    assert code == 1 and result["msg"].startswith("wheel=%s: cannot read" % (tmp_path / "missing.whl"))
    code, result = run(capsys, {"wheel": wheel(tmp_path), "python": fake_python(tmp_path, [], rc=3)})
    assert code == 1 and "python=" in result["msg"] and "rc 3" in result["msg"]
