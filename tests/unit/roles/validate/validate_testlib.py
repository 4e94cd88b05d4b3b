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
# What the role installs as validate_script_dir (tasks/install.yml).
SCRIPT_DIR = os.path.join(ROOT, "roles", "validate", "files", "script_dir")
SCHEMA = os.path.join(SCRIPT_DIR, "report.schema.json")
MODULE = "gaudi.vllm_lmcache.python_package"
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


def install_package(directory):
    """Install validate_script_dir as the role does: the arguments of the python_package task in
    tasks/install.yml (its module_utils from vars/main.yml), gathered and written by
    python_package's own code. Only settings.json, which the role renders, is left out."""
    import yaml  # pylint: disable=import-outside-toplevel

    from ansible_collections.gaudi.vllm_lmcache.plugins.action.python_package import (  # pylint: disable=import-outside-toplevel
        read_module_utils,
    )
    from ansible_collections.gaudi.vllm_lmcache.plugins.module_utils import (  # pylint: disable=import-outside-toplevel
        _python_package as pp,
    )

    role = os.path.join(ROOT, "roles", "validate")
    with open(os.path.join(role, "tasks", "install.yml")) as handle:
        (args,) = [t[MODULE] for t in yaml.safe_load(handle) if MODULE in t]
    with open(os.path.join(role, "vars", "main.yml")) as handle:
        role_vars = yaml.safe_load(handle)
    assert args["module_utils"] == "{{ __validate_collection_modules }}", args["module_utils"]
    files = pp.collect(
        src_dir=os.path.join(role, "files", args["src"]),
        module_utils=role_vars["__validate_collection_modules"],
        module_utils_dir=args["module_utils_dir"],
        files={},
        read_module_utils=read_module_utils,
    )
    mode = pp.parse_mode(args["mode"], "mode")
    modes = pp.parse_modes(args["modes"], files)
    pp.apply(directory, files, pp.plan(directory, files, mode=mode, modes=modes), mode=mode, modes=modes)
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
    import pkgutil  # pylint: disable=import-outside-toplevel
    import types  # pylint: disable=import-outside-toplevel

    if INSTALL_DIR not in sys.path:
        sys.path.insert(0, INSTALL_DIR)
    package = importlib.import_module("gaudi_validate")
    names = {}
    for info in pkgutil.walk_packages(package.__path__, "gaudi_validate."):
        if info.name.endswith("__main__") or info.name.startswith("gaudi_validate._collection"):
            continue  # __main__ runs main() when imported; _collection is the collection's code
        for key, value in vars(importlib.import_module(info.name)).items():
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
