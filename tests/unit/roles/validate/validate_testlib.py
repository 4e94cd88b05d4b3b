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
PACKAGE = os.path.join(FILES, "gaudi_validate")
SCHEMA = os.path.join(FILES, "report.schema.json")
# The collection's parsers, which the role installs next to the package (validate_support_files).
SUPPORT_DIR = os.path.join(ROOT, "plugins", "module_utils")
STANDINS = os.path.join(ROOT, "tests", "standins")
FAKE_HL_SMI_PY = os.path.join(STANDINS, "hl_smi.py")
TEST_DOUBLE = os.path.join(STANDINS, "openai_server.py")
MODULES = ("common", "devices", "stack", "patch", "storage", "kv_offload", "serving", "report", "cli")
os.environ["GAUDI_VALIDATE_SUPPORT_DIR"] = SUPPORT_DIR
# The hl-smi stand-in reads its settings from here; a missing directory means the defaults.
os.environ["HL_SMI_STANDIN_DIR"] = os.path.join(HERE, "no-such-standin-dir")


def _make_fake_hl_smi():
    """An executable 'hl-smi' that runs the hl-smi STAND-IN with this interpreter."""
    directory = tempfile.mkdtemp(prefix="validate-fake-hl-smi-")
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, "hl-smi")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE_HL_SMI_PY))
    os.chmod(path, 0o755)
    return path


FAKE_HL_SMI = _make_fake_hl_smi()


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Facade(object):
    """Every public and private name of the package's modules, as one namespace."""

    def __init__(self, modules):
        self.modules = modules
        for module in modules.values():
            for name, value in vars(module).items():
                if not name.startswith("__"):
                    setattr(self, name, value)
        for name, module in modules.items():
            setattr(self, name, module)


def load_script():
    """The gaudi_validate package (imported from roles/validate/files) as one namespace."""
    if FILES not in sys.path:
        sys.path.insert(0, FILES)
    import importlib

    modules = dict((name, importlib.import_module("gaudi_validate." + name)) for name in MODULES)
    return _Facade(modules)


def load_test_double():
    return load(TEST_DOUBLE, "validate_openai_test_double_under_test")


def schema():
    with open(SCHEMA) as handle:
        return json.load(handle)


def run_script(args, env=None, timeout=120):
    """Run the script as operators do; return (rc, report or None, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = FILES
    proc = subprocess.run(
        [sys.executable, "-m", "gaudi_validate"] + list(args),
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
