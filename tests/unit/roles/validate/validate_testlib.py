# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the validate role's unit tests (loaded by file path, not a package)."""

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FILES = os.path.join(ROOT, "roles", "validate", "files")
SCHEMA = os.path.join(ROOT, "roles", "validate", "files", "report.schema.json")
STANDINS = os.path.join(ROOT, "tests", "standins")
HL_SMI_STANDIN = os.path.join(STANDINS, "hl_smi.py")
TEST_DOUBLE = os.path.join(STANDINS, "openai_server.py")


def _make_fake_hl_smi():
    """An executable 'hl-smi' that runs the hl-smi STAND-IN with this interpreter."""
    directory = tempfile.mkdtemp(prefix="validate-fake-hl-smi-")
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, "hl-smi")
    with open(path, "w") as handle:
        # Its configuration directory is an empty one: nothing on this host changes its answers.
        handle.write(
            '#!/bin/sh\nHL_SMI_STANDIN_DIR="%s" exec "%s" "%s" "$@"\n' % (directory, sys.executable, HL_SMI_STANDIN)
        )
    os.chmod(path, 0o755)
    return path


FAKE_HL_SMI = _make_fake_hl_smi()

# The collection's module_utils that the role installs into the package as _collection/ (with
# gaudi.vllm_lmcache.python_package; roles/validate/tasks/install.yml).
COLLECTION_MODULES = ("hl_smi", "lmcache_hpu_patch")


def install_package(directory):
    """Lay the package out as the role installs it: the launcher, gaudi_validate/ and its _collection/."""
    shutil.copy2(os.path.join(FILES, "gaudi-validate"), directory)
    package = os.path.join(directory, "gaudi_validate")
    shutil.copytree(
        os.path.join(FILES, "gaudi_validate"), package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    collection = os.path.join(package, "_collection")
    os.makedirs(collection)
    with open(os.path.join(collection, "__init__.py"), "w") as handle:
        handle.write("# copies of gaudi.vllm_lmcache's module_utils\n")
    for name in COLLECTION_MODULES:
        shutil.copy2(os.path.join(ROOT, "plugins", "module_utils", name + ".py"), collection)
    return os.path.join(directory, "gaudi-validate")


def _install_once():
    directory = tempfile.mkdtemp(prefix="validate-package-")
    atexit.register(shutil.rmtree, directory, True)
    return directory, install_package(directory)


INSTALL_DIR, SCRIPT = _install_once()


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script():
    """Every public and private name of the installed package's modules in one namespace."""
    import types  # pylint: disable=import-outside-toplevel

    if INSTALL_DIR not in sys.path:
        sys.path.insert(0, INSTALL_DIR)
    names = {}
    for sub in ("common", "prompt", "http", "metrics", "cross_node", "report", "cli") + tuple(
        "tiers." + t for t in ("devices", "stack", "storage", "kv_offload", "serving")
    ):
        module = importlib.import_module("gaudi_validate." + sub)
        for key, value in vars(module).items():
            if not key.startswith("__"):
                names.setdefault(key, value)
    return types.SimpleNamespace(**names)


def load_test_double():
    return load(TEST_DOUBLE, "openai_server_standin_under_test")


def schema():
    with open(SCHEMA) as handle:
        return json.load(handle)


def run_script(args, env=None, timeout=120):
    """Run the script as operators do; return (rc, report or None, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, SCRIPT] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    report = None
    if "--output" in args:
        path = args[args.index("--output") + 1]
        if os.path.exists(path):
            with open(path) as handle:
                report = json.load(handle)
    return proc.returncode, report, proc.stdout, proc.stderr
