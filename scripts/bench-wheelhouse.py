# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a timed test): bytes fetched from the upstream index when N nodes install
the serving stack, with and without the shared wheelhouse.

A counting PEP 503 "simple" index on 127.0.0.1 stands in for upstream (PyPI / the vendor
repository) and serves the real LMCache wheel plus the stand-in wheels (tests/standins/wheels).
For N in --nodes (default 1 and 4) it starts N containers that share one host directory as
their kv_storage mount and runs the same pip commands as the roles:

  direct     : every node runs `pip install --index-url <upstream> ...`
  wheelhouse : node 1 runs `pip download --index-url <upstream> -d <shared>/wheelhouse ...`
               (roles/vllm/tasks/wheelhouse_build.yml), then every node runs
               `pip install --no-index --find-links <shared>/wheelhouse ...`
               (roles/vllm/tasks/install_wheelhouse.yml)

and prints the bytes the index served. With the wheelhouse the ratio N=4 : N=1 is about 1.
"""

import argparse
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(
    os.environ.get("GVL_CACHE_DIR")
    or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gaudi-vllm-lmcache"),
    "vllm-wheelhouse",
)
BASE_IMAGE = os.environ.get("GVL_MOLECULE_IMAGE", "gaudi-vllm-lmcache/debian12-systemd:latest")
BENCH_IMAGE = "gaudi-vllm-lmcache/vllm-bench:venv"
REQS = ["torch==2.10.0", "habana-torch-plugin==1.24.0.*", "vllm==0.17.1", "vllm-gaudi==0.17.1", "lmcache==0.4.2"]


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class Upstream:
    """Counting simple index over a directory of wheels."""

    def __init__(self, directory, port):
        self.dir = directory
        self.bytes = 0
        self.files = 0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, data, ctype):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with upstream.lock:
                    upstream.bytes += len(data)

            def do_GET(self):
                parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
                wheels = sorted(os.listdir(upstream.dir))
                if parts[:1] == ["simple"] and len(parts) == 2:
                    links = []
                    for fn in wheels:
                        if norm(fn.split("-")[0]) == norm(parts[1]):
                            with open(os.path.join(upstream.dir, fn), "rb") as fh:
                                digest = hashlib.sha256(fh.read()).hexdigest()
                            links.append(
                                '<a href="/files/%s#sha256=%s">%s</a><br>' % (quote(fn), digest, html.escape(fn))
                            )
                    if not links:
                        self.send_error(404)
                        return
                    self._send(("<html><body>%s</body></html>" % "".join(links)).encode(), "text/html")
                elif parts[:1] == ["files"] and len(parts) == 2 and parts[1] in wheels:
                    with open(os.path.join(upstream.dir, parts[1]), "rb") as fh:
                        data = fh.read()
                    with upstream.lock:
                        upstream.files += 1
                    self._send(data, "application/octet-stream")
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.bytes, self.files = 0, 0


def sh(*argv, **kw):
    res = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)
    if res.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(argv), res.returncode, res.stdout, res.stderr))
    return res.stdout


def prepare_upstream():
    up = os.path.join(CACHE, "bench-upstream")
    os.makedirs(up, exist_ok=True)
    sh(sys.executable, os.path.join(ROOT, "tests", "standins", "wheels", "build.py"), up)
    if not [f for f in os.listdir(up) if f.startswith("lmcache-0.4.2-")]:
        sh(
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "lmcache==0.4.2",
            "-d",
            up,
        )
    return up


def bench_image():
    if subprocess.run(["docker", "image", "inspect", BENCH_IMAGE], capture_output=True, check=False).returncode == 0:
        return
    name = "vllm-bench-image-build"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    sh("docker", "run", "-d", "--name", name, "--network", "host", BASE_IMAGE, "sleep", "infinity")
    try:
        sh(
            "docker",
            "exec",
            name,
            "sh",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null",
        )
        sh("docker", "commit", name, BENCH_IMAGE)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def run_case(n, mode, upstream, port):
    shared = tempfile.mkdtemp(prefix="vllm-bench-kv-")
    os.chmod(shared, 0o755)
    names = ["vllm-bench-%s-%d" % (mode, i) for i in range(n)]
    index = "http://127.0.0.1:%d/simple" % port
    try:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            sh(
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "host",
                "-v",
                "%s:/mnt/kv_storage" % shared,
                BENCH_IMAGE,
                "sleep",
                "infinity",
            )
            sh("docker", "exec", name, "python3", "-m", "venv", "/opt/vllm/venv")
        upstream.reset()
        pip = "/opt/vllm/venv/bin/pip"
        common = ["--no-cache-dir", "--disable-pip-version-check", "--no-deps"]
        if mode == "wheelhouse":
            sh(
                "docker",
                "exec",
                names[0],
                pip,
                "download",
                "-q",
                *common,
                "--index-url",
                index,
                "-d",
                "/mnt/kv_storage/wheelhouse",
                *REQS,
            )
            for name in names:
                sh(
                    "docker",
                    "exec",
                    name,
                    pip,
                    "install",
                    "-q",
                    *common,
                    "--no-index",
                    "--find-links",
                    "/mnt/kv_storage/wheelhouse",
                    *REQS,
                )
        else:
            for name in names:
                sh("docker", "exec", name, pip, "install", "-q", *common, "--index-url", index, *REQS)
        for name in names:
            got = sh(
                "docker",
                "exec",
                name,
                "/opt/vllm/venv/bin/python",
                "-c",
                "import importlib.metadata as m; print(m.version('lmcache'), m.version('vllm'))",
            ).split()
            assert got == ["0.4.2", "0.17.1+empty"], got
        return upstream.bytes, upstream.files
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-v",
                "%s:/mnt/kv_storage" % shared,
                BASE_IMAGE,
                "sh",
                "-c",
                "rm -rf /mnt/kv_storage/*",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(shared, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--port", type=int, default=18190)
    args = ap.parse_args()
    up_dir = prepare_upstream()
    bench_image()
    upstream = Upstream(up_dir, args.port)
    stack = sum(os.path.getsize(os.path.join(up_dir, f)) for f in os.listdir(up_dir))
    print(
        "Stack from upstream: %d wheels, %d bytes (real LMCache 0.4.2 wheel + stand-ins)"
        % (len(os.listdir(up_dir)), stack)
    )
    results = {}
    for mode in ("direct", "wheelhouse"):
        for n in args.nodes:
            results[(mode, n)] = run_case(n, mode, upstream, args.port)
    print("\n%-11s %5s %16s %10s %14s" % ("mode", "nodes", "upstream bytes", "files", "ratio to N=%d" % args.nodes[0]))
    for (mode, n), (nbytes, files) in sorted(results.items()):
        base = results[(mode, args.nodes[0])][0]
        print("%-11s %5d %16d %10d %14.2f" % (mode, n, nbytes, files, nbytes / float(base)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
