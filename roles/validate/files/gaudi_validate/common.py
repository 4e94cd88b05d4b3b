# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the tiers: errors, rounding, subprocesses, optional imports, support modules.

Support modules are the collection's own parsers (``hl_smi.py``, ``lmcache_hpu_patch.py`` from
``plugins/module_utils``). The role installs them next to this package with the collection's
``validate_support_files`` module; a manual run can point ``--support-dir`` (or
``$GAUDI_VALIDATE_SUPPORT_DIR``) at a directory holding them. In a source checkout the package
falls back to ``ansible_collections.gaudi.vllm_lmcache.plugins.module_utils`` when importable.
"""

from __future__ import absolute_import, division, print_function

import importlib
import importlib.util
import os
import subprocess
import sys
import time

__version__ = "0.2.0"
TIERS = ("devices", "stack", "storage", "kv_offload", "serving")
STATUSES = ("pass", "fail", "skip")
PCIE_GEN5_X16_GBPS = 63.0
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Where the role installs the support modules: the directory that holds this package.
DEFAULT_SUPPORT_DIR = os.path.dirname(PACKAGE_DIR)
SUPPORT_FALLBACK_PACKAGE = "ansible_collections.gaudi.vllm_lmcache.plugins.module_utils"


class TierError(Exception):
    """A tier could not complete; the message becomes the tier's reason."""


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def round_figure(value, digits=3):
    if value is None:
        return None
    return round(float(value), digits)


def csv_list(text):
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        items = []
        for part in text:
            items.extend(csv_list(part))
        return items
    return [item.strip() for item in str(text).split(",") if item.strip()]


def run(argv, timeout):
    """Run a command; return (rc, stdout, stderr). Raises TierError when it cannot start."""
    try:
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            universal_newlines=True,
            check=False,
        )
    except FileNotFoundError:
        raise TierError("%s: command not found" % argv[0])
    except subprocess.TimeoutExpired:
        raise TierError("%s timed out after %ss" % (" ".join(argv), timeout))
    except OSError as exc:
        raise TierError("%s could not run: %s" % (argv[0], exc))
    return proc.returncode, proc.stdout, proc.stderr


def import_torch():
    """Import torch if this interpreter has it; return (module, reason)."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not importable by %s" % sys.executable
    try:
        import torch  # noqa: F401 pylint: disable=import-outside-toplevel
    except Exception as exc:  # pylint: disable=broad-except
        return None, "importing torch failed: %s" % exc
    return torch, None


def import_habana(torch):
    """Load the Habana PyTorch bridge; return (hpu module, reason)."""
    if importlib.util.find_spec("habana_frameworks") is None:
        return None, "habana_frameworks is not importable by %s" % sys.executable
    try:
        import habana_frameworks.torch.core  # noqa: F401 pylint: disable=import-outside-toplevel
        import habana_frameworks.torch.hpu as hthpu  # pylint: disable=import-outside-toplevel
    except Exception as exc:  # pylint: disable=broad-except
        return None, "importing habana_frameworks.torch failed: %s" % exc
    return hthpu, None


def chunk_bytes_for(layers, kv_heads, head_dim, dtype_bytes, chunk_tokens, tp):
    """Bytes of one LMCache chunk file per TP rank (K and V, all layers)."""
    if min(layers, kv_heads, head_dim, dtype_bytes, chunk_tokens, tp) < 1:
        raise ValueError("model geometry values must be positive integers")
    per_token = 2 * layers * kv_heads * head_dim * dtype_bytes
    return per_token * chunk_tokens // tp


def support_dir(settings=None):
    """The directory searched for support modules (settings, then environment, then default)."""
    value = getattr(settings, "support_dir", None) if settings is not None else None
    return value or os.environ.get("GAUDI_VALIDATE_SUPPORT_DIR") or DEFAULT_SUPPORT_DIR


_LOADED = {}


def load_support(name, directory=None):
    """Import support module `name` (e.g. 'hl_smi'); return (module, reason).

    ``<directory>/<name>.py`` first, then the collection's module_utils package when it is
    importable (a source checkout or an installed collection on the controller).
    """
    directory = directory or support_dir()
    path = os.path.join(directory, name + ".py")
    key = (name, path)
    if key in _LOADED:
        return _LOADED[key], None
    reasons = []
    if os.path.isfile(path):
        try:
            spec = importlib.util.spec_from_file_location("gaudi_validate_support_%s" % name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _LOADED[key] = module
            return module, None
        except Exception as exc:  # pylint: disable=broad-except
            reasons.append("importing %s failed: %s: %s" % (path, type(exc).__name__, exc))
    else:
        reasons.append("%s is not installed (%s)" % (name + ".py", path))
    try:
        module = importlib.import_module("%s.%s" % (SUPPORT_FALLBACK_PACKAGE, name))
        _LOADED[key] = module
        return module, None
    except Exception:  # pylint: disable=broad-except
        pass
    return None, "; ".join(reasons)
