# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every tier uses: the tier list, the error a tier raises, commands, atomic writes."""

from __future__ import absolute_import, division, print_function

import importlib.util
import json
import os
import subprocess
import sys
import time

SCHEMA_VERSION = "1.1"
TIERS = ("devices", "stack", "storage", "kv_offload", "serving")
STATUSES = ("pass", "fail", "skip")
# Directories of the shared cache tier that belong to this tool, not to LMCache.
MARKER_DIR = ".gaudi-validate-visibility"
SCRATCH_DIR = ".gaudi-validate"


class TierError(Exception):
    """A tier could not complete; the message becomes the tier's reason."""


def _now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _round(value, digits=3):
    if value is None:
        return None
    return round(float(value), digits)


def _csv_list(text):
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        items = []
        for part in text:
            items.extend(_csv_list(part))
        return items
    return [item.strip() for item in str(text).split(",") if item.strip()]


def _run(argv, timeout):
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


def _import_torch():
    """Import torch if this interpreter has it; return (module, reason)."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not importable by %s" % sys.executable
    try:
        import torch  # noqa: F401 pylint: disable=import-outside-toplevel
    except Exception as exc:  # pylint: disable=broad-except
        return None, "importing torch failed: %s" % exc
    return torch, None


def _import_habana(torch):
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


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, text, durable=False):
    """Write `text` to `path` through a temporary file and a rename (readers never see half of
    it); durable: fsync the file and its directory first (markers other nodes read)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(directory)


def _wait_for_json(path, timeout, interval=0.2):
    """(content, seconds waited) of the JSON file `path` once it can be read, else (None, None)."""
    start = time.monotonic()
    while True:
        try:
            # Listing the directory revalidates it, defeating cached negative lookups (NFS).
            if os.path.basename(path) in os.listdir(os.path.dirname(path)) or os.path.exists(path):
                with open(path, "r", encoding="utf-8") as handle:
                    return json.load(handle), time.monotonic() - start
        except (OSError, ValueError):
            pass
        if time.monotonic() - start >= timeout:
            return None, None
        time.sleep(interval)
