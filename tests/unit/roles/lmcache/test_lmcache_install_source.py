# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lmcache role's install source: defaults, argument spec, stack matrix and the module agree."""

import os

import yaml
from lmcache_wheels import BUILD_REQUIREMENTS, NOCUDA_ENV  # constants only: no download, no network marker

from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import _lmcache_requirements as reqs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ROLE = os.path.join(ROOT, "roles", "lmcache")
LOOKUP = "lookup('gaudi.vllm_lmcache.gaudi_stack', '%s', stack=gaudi_stack | default(''))"


def load(*parts):
    with open(os.path.join(*parts)) as fh:
        return yaml.safe_load(fh)


DEFAULTS = load(ROLE, "defaults", "main.yml")
VARS = load(ROLE, "vars", "main.yml")
SPEC = load(ROLE, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
MATRIX = load(ROOT, "meta", "gaudi_stack.yml")


def test_default_comes_from_the_stack_row():
    assert DEFAULTS["lmcache_install_source"] == "{{ %s }}" % (LOOKUP % "lmcache_install_source")


def test_sources_agree_between_spec_vars_and_matrix():
    sources = VARS["__lmcache_install_sources"]
    assert SPEC["lmcache_install_source"]["choices"] == sources == ["sdist-nocuda", "pypi-wheel"]
    for row in MATRIX["rows"]:
        assert row["lmcache_install_source"] in sources, row["id"]
    default = [r for r in MATRIX["rows"] if r["id"] == MATRIX["default"]][0]
    assert default["lmcache_install_source"] == "sdist-nocuda"


def test_every_new_variable_is_in_the_spec():
    for name in (
        "lmcache_install_source",
        "lmcache_sdist_url",
        "lmcache_build_env",
        "lmcache_build_requirements",
        "lmcache_build_venv",
        "lmcache_build_python",
        "lmcache_wheel_cache_dir",
        "lmcache_exclude_requirements",
        "lmcache_forbid_cuda",
    ):
        assert name in DEFAULTS, name
        assert name in SPEC, name


def test_exclusions_match_the_module_defaults():
    # The role passes lmcache_exclude_requirements to the lmcache_requirements module; its
    # defaults are the module's CUDA patterns plus the stack-owned torch distributions.
    assert tuple(DEFAULTS["lmcache_exclude_requirements"]) == reqs.DEFAULT_EXCLUDE


def test_build_matches_the_tested_build():
    # The network test builds the sdist the way the role does (same environment and build
    # requirements), so what it shows holds for the role's wheel.
    assert DEFAULTS["lmcache_build_env"] == NOCUDA_ENV == {"NO_CUDA_EXT": "1", "BUILD_WITH_HPU": "1"}
    assert DEFAULTS["lmcache_build_requirements"] == BUILD_REQUIREMENTS
    for req in DEFAULTS["lmcache_build_requirements"]:
        assert reqs.requirement_name(req) not in ("torch", "ninja"), req


def test_tasks_use_the_module_and_install_without_deps():
    with open(os.path.join(ROLE, "tasks", "install_sdist_nocuda.yml")) as fh:
        text = fh.read()
    tasks = yaml.safe_load(text)
    names = [t["name"] for t in tasks]
    assert names.index("Read the requirements of the LMCache wheel") < names.index(
        "Install the LMCache wheel without its dependencies"
    )
    wheel_task = [t for t in tasks if t["name"] == "Install the LMCache wheel without its dependencies"][0]
    assert "--no-deps" in wheel_task["ansible.builtin.pip"]["extra_args"]
    assert "gaudi.vllm_lmcache.lmcache_requirements" in text
    with open(os.path.join(ROLE, "tasks", "build.yml")) as fh:
        build = fh.read()
    assert "--no-build-isolation" in build and "environment: \"{{ lmcache_build_env }}\"" in build
