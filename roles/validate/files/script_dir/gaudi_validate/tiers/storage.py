# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage tier: the Mode B shared cache directory's mount (fstype, options), fsync'd write and
read throughput of KV-chunk-sized files, and the cross-node visibility marker."""

from __future__ import absolute_import, division, print_function

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import time

from ..common import MARKER_DIR, SCRATCH_DIR, _fsync_dir, _round, _wait_for_json, _write_atomic, chunk_bytes_for


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
