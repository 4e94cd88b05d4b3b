# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The non-CUDA requirement set of an LMCache wheel (plugins/module_utils/_lmcache_requirements.py)."""

import zipfile

import pytest

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _lmcache_requirements as reqs

# Requires-Dist of lmcache-0.4.5-py3-none-any.whl as the PyPI sdist builds it with
# NO_CUDA_EXT=1 BUILD_WITH_HPU=1 (requirements/common.txt + requirements/cuda13_core.txt).
REQUIRES_045 = [
    "aiofile",
    "aiofiles",
    "blake3",
    "aiohttp",
    "awscrt",
    "cufile-python",
    "fastapi",
    "httpx",
    "huggingface_hub>=1.5.0",
    "msgspec",
    "numpy<=2.2.6",
    "numba",
    "nvtx",
    "opentelemetry-api<=1.40.0,>=1.20.0",
    "opentelemetry-sdk>=1.20.0",
    "opentelemetry-exporter-otlp>=1.20.0",
    "opentelemetry-exporter-prometheus<=0.61b0,>=0.50b0",
    "prometheus_client<=0.24.1,>=0.18.0",
    "psutil",
    "py-cpuinfo",
    "pyyaml",
    "pyzmq>=25.0.0",
    "redis",
    "safetensors",
    "setuptools<81.0.0,>=77.0.3",
    "setuptools_scm>=8",
    "sortedcontainers",
    "torch",
    "transformers>=5.4",
    "uvicorn",
    "httptools",
    "cupy-cuda13x",
    'nixl-cu13; python_version < "3.13"',
]
METADATA = (
    "Metadata-Version: 2.4\nName: lmcache\nVersion: 0.4.5\nRequires-Python: <3.14,>=3.10\n"
    + "".join("Requires-Dist: %s\n" % r for r in REQUIRES_045)
    + "Requires-Dist: pytest; extra == 'test'\n"
    + "\nRequires-Dist: not-a-header-in-the-description\n"
)


def test_parse_metadata_reads_headers_only():
    name, version, requires = reqs.parse_metadata(METADATA)
    assert (name, version) == ("lmcache", "0.4.5")
    assert requires == REQUIRES_045 + ["pytest; extra == 'test'"]


def test_split_keeps_no_cuda_and_no_torch():
    kept, excluded, skipped = reqs.split_requirements(REQUIRES_045 + ["pytest; extra == 'test'"])
    assert excluded == ["cufile-python", "nvtx", "torch", "cupy-cuda13x", 'nixl-cu13; python_version < "3.13"']
    assert skipped == ["pytest; extra == 'test'"]
    assert kept == [r for r in REQUIRES_045 if r not in excluded]
    assert "numpy<=2.2.6" in kept and "transformers>=5.4" in kept


def test_split_with_extra_and_custom_exclude():
    kept, excluded, skipped = reqs.split_requirements(
        ["torch", "cupy-cuda12x", "pytest; extra == 'test'"], exclude=["cupy-*"], extras=["test"]
    )
    assert kept == ["torch", "pytest; extra == 'test'"]
    assert excluded == ["cupy-cuda12x"]
    assert skipped == []


@pytest.mark.parametrize(
    "name",
    [
        "nvidia-cuda-runtime-cu12",
        "nvidia_cublas_cu12",
        "nvidia-ml-py",
        "cupy-cuda12x",
        "CuPy_CUDA13x",
        "cuda-python",
        "cuda-bindings",
        "cufile-python",
        "nvtx",
        "nixl",
        "nixl-cu12",
        "nixl_cu13",
        "pynvml",
        "xformers",
        "triton",
    ],
)
def test_cuda_names(name):
    assert reqs.matches(name, reqs.CUDA_PATTERNS)
    assert reqs.forbidden_distributions([name, "numpy"]) == [reqs.normalize(name)]


@pytest.mark.parametrize("name", ["numpy", "numba", "torch", "nixlx", "cudatext", "transformers", "lmcache"])
def test_not_cuda_names(name):
    assert not reqs.matches(name, reqs.CUDA_PATTERNS)


def test_requirement_name_and_extras():
    assert reqs.requirement_name('nixl-cu13; python_version < "3.13"') == "nixl-cu13"
    assert reqs.requirement_name("huggingface_hub>=1.5.0") == "huggingface-hub"
    assert reqs.requirement_extras("x ; extra == \"cli\" or extra == 'Bench'") == ["bench", "cli"]
    with pytest.raises(ValueError):
        reqs.requirement_name(" ;")


def _wheel(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


def test_wheel_metadata_and_purity(tmp_path):
    pure = _wheel(
        tmp_path / "lmcache-0.4.5-py3-none-any.whl",
        {
            "lmcache/__init__.py": "",
            "lmcache-0.4.5.dist-info/METADATA": METADATA,
            "lmcache-0.4.5.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        },
    )
    assert reqs.parse_metadata(reqs.wheel_metadata(pure))[:2] == ("lmcache", "0.4.5")
    assert reqs.wheel_is_pure(pure)
    cuda = _wheel(
        tmp_path / "lmcache-0.4.5-cp311-cp311-manylinux_2_28_x86_64.whl",
        {
            "lmcache/c_ops.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
            "lmcache-0.4.5.dist-info/METADATA": METADATA,
            "lmcache-0.4.5.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n",
        },
    )
    assert not reqs.wheel_is_pure(cuda)
    broken = _wheel(tmp_path / "x-1-py3-none-any.whl", {"x/__init__.py": ""})
    with pytest.raises(ValueError, match="expected one"):
        reqs.wheel_metadata(broken)
