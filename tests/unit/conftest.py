"""Make the working tree importable as ``ansible_collections.gaudi.vllm_lmcache``.

The collection is developed outside an ``ansible_collections/<ns>/<name>`` tree, so the
tests link it into ``.collections/`` at the repository root (the same link that the
Makefile creates) and put that directory on ``sys.path``.
"""

import importlib.util
import os
import sys

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


def pytest_collection_modifyitems(config, items):
    """Tests in a module that uses the real LMCache releases carry the ``network`` marker.

    A module that marks some of its tests itself is left alone (its other tests need no
    download); the others get the marker on every test.
    """
    by_module = {}
    for item in items:
        module = getattr(item, "module", None)
        if module is not None:
            by_module.setdefault(module, []).append(item)
    for module, module_items in by_module.items():
        uses_wheels = any(getattr(v, "__name__", None) == "lmcache_wheels" for v in vars(module).values())
        if uses_wheels and not any(i.get_closest_marker("network") for i in module_items):
            for item in module_items:
                item.add_marker("network")
