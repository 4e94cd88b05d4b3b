"""Make the working tree importable as ``ansible_collections.gaudi.vllm_lmcache``.

The collection is developed outside an ``ansible_collections/<ns>/<name>`` tree, so the
tests link it into ``.collections/`` at the repository root (the same link that the
Makefile creates) and put that directory on ``sys.path``.
"""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "gaudi", "vllm_lmcache")

if not os.path.islink(LINK) and not os.path.isdir(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# Shared test helpers (e.g. lmcache_wheels, the cached real LMCache releases) are imported by
# name from their directory instead of being loaded by path in every test module.
HELPERS = os.path.join(ROOT, "tests", "unit", "plugins", "module_utils")
if HELPERS not in sys.path:
    sys.path.insert(1, HELPERS)


def _patch_module_args_polyfill():
    """ansible.module_utils.testing.patch_module_args on ansible-core < 2.19 (make unit-oldest).

    2.19 added the context manager; older releases read the module arguments from
    ``ansible.module_utils.basic._ANSIBLE_ARGS``, which this stand-in sets the same way.
    """
    import contextlib
    import json
    import types

    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args=None):
        args = dict(args or {})
        args.setdefault("_ansible_remote_tmp", "/tmp")
        args.setdefault("_ansible_keep_remote_files", False)
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode("utf-8")
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved

    module = types.ModuleType("ansible.module_utils.testing")
    module.patch_module_args = patch_module_args
    sys.modules["ansible.module_utils.testing"] = module


if importlib.util.find_spec("ansible.module_utils.testing") is None:
    _patch_module_args_polyfill()


# Test modules that do not exercise ansible-core: the module_utils (which import nothing from
# ansible), the KV connector, the real LMCache releases, the validation and rolling-check
# scripts (plain Python run on the nodes), the stack matrix and data files. They
# carry the ``no_ansible_core`` marker and run once, in the newest-core pass; make unit-oldest
# leaves them out with --ansible-core-only (not even imported: torch alone takes seconds).
# Paths are relative to tests/unit (a new test module runs in both passes until it is listed
# here). A listed module that imports ansible itself is an error.
NO_ANSIBLE_CORE = (
    "plugins/module_utils/test_hl_smi.py",
    "plugins/module_utils/test_hpu_kv_hpu_and_engine.py",
    "plugins/module_utils/test_hpu_kv_transfer.py",
    "plugins/module_utils/test_hpu_patch_behaviour.py",
    "plugins/module_utils/test_lmcache_cpu_connector.py",
    "plugins/module_utils/test_lmcache_hpu_patch.py",
    "plugins/module_utils/test_lmcache_nocuda_build.py",
    "plugins/module_utils/test_lmcache_requirements.py",
    "roles/observability/test_observability_dashboard.py",
    "roles/observability/test_observability_metric_names.py",
    "roles/validate/test_fleet_report.py",
    "roles/validate/test_validate_devices.py",
    "roles/validate/test_validate_report.py",
    "roles/validate/test_validate_serving.py",
    "roles/validate/test_validate_stack.py",
    "roles/validate/test_validate_storage.py",
    "roles/vllm/test_vllm_compat_matrix.py",
    "docs/test_variables_doc.py",
    "test_rolling_check.py",
)
UNIT = os.path.join(ROOT, "tests", "unit")


def _is_listed(path):
    rel = os.path.relpath(path, UNIT).replace(os.sep, "/")
    return rel in NO_ANSIBLE_CORE


def pytest_addoption(parser):
    parser.addoption(
        "--ansible-core-only",
        action="store_true",
        default=False,
        help="collect only the tests that exercise ansible-core (not the NO_ANSIBLE_CORE modules); make unit-oldest",
    )


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--ansible-core-only") and os.path.isfile(str(collection_path)):
        return True if _is_listed(str(collection_path)) else None
    return None


def _imported_ansible(module):
    names = [getattr(v, "__name__", "") for v in vars(module).values() if isinstance(v, type(os))]
    names += [getattr(v, "__module__", "") or "" for v in vars(module).values() if callable(v)]
    return sorted({n for n in names if n == "ansible" or n.startswith("ansible.")})


def pytest_collection_modifyitems(config, items):
    """Tests in a module that uses the real LMCache releases carry the ``network`` marker.

    A module that marks some of its tests itself is left alone (its other tests need no
    download); the others get the marker on every test. Tests in the modules of
    NO_ANSIBLE_CORE carry ``no_ansible_core``.
    """
    by_module = {}
    for item in items:
        module = getattr(item, "module", None)
        if module is not None:
            by_module.setdefault(module, []).append(item)
    for module, module_items in by_module.items():
        if _is_listed(module.__file__):
            imported = _imported_ansible(module)
            if imported:
                raise pytest.UsageError(
                    "%s is listed in NO_ANSIBLE_CORE (tests/unit/conftest.py) but uses %s: remove it from the list"
                    % (os.path.relpath(module.__file__, ROOT), ", ".join(imported))
                )
            for item in module_items:
                item.add_marker("no_ansible_core")
        uses_wheels = any(getattr(v, "__name__", None) == "lmcache_wheels" for v in vars(module).values())
        if uses_wheels and not any(i.get_closest_marker("network") for i in module_items):
            for item in module_items:
                item.add_marker("network")
