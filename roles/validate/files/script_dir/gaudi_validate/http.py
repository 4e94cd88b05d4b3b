# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP to the OpenAI-compatible endpoint: GETs, streamed completions, /health waits."""

from __future__ import absolute_import, division, print_function

import json
import socket
import time
import urllib.error
import urllib.request

from . import __version__
from .common import TierError


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
