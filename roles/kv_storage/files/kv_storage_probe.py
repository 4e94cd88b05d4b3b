"""Write, fsync, read back and delete a probe file in each cache directory.

Usage: python3 -c "<this file>" SIZE_KIB DIRECTORY [DIRECTORY...]
Prints a JSON list (one object per directory); exits 1 when any data read back differs
or any step fails.
"""

import hashlib
import json
import os
import socket
import sys
import time


def probe(directory, kib):
    name = os.path.join(directory, ".kv_storage_probe.%s.%d" % (socket.gethostname(), os.getpid()))
    data = os.urandom(kib * 1024)
    result = {"path": name, "bytes": len(data), "ok": False, "deleted": False}
    created = False
    try:
        start = time.monotonic()
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        result["write_fsync_s"] = round(time.monotonic() - start, 4)
        start = time.monotonic()
        with open(name, "rb") as handle:
            back = handle.read()
        result["read_s"] = round(time.monotonic() - start, 4)
        result["ok"] = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        if not result["ok"]:
            result["error"] = "data read back differs from data written (%d of %d bytes)" % (len(back), len(data))
    except OSError as exc:
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        if created:
            try:
                os.unlink(name)
                result["deleted"] = True
            except OSError as exc:
                result["ok"] = False
                result.setdefault("error", "cannot delete the probe file: %s" % exc)
        else:
            result["deleted"] = True
    return result


results = [probe(directory, int(sys.argv[1])) for directory in sys.argv[2:]]
print(json.dumps(results, sort_keys=True))
sys.exit(0 if all(r["ok"] for r in results) else 1)
