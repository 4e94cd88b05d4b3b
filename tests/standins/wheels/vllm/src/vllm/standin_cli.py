"""STAND-IN `vllm` command line (test double, not vLLM).

`vllm serve MODEL --port N ...` starts the collection's OpenAI-compatible stand-in server
(tests/standins/openai_server.py, packed into this wheel as vllm/_openai_server.py) on the
given port: GET /health, GET /v1/models, POST /v1/completions (plain or streaming), GET
/metrics and GET /standin/info (what the process received: arguments, the parsed
--kv-transfer-config, the LMCache config file named by LMCACHE_CONFIG_FILE, selected
environment variables and whether the Prometheus and shared LMCache directories are
writable). No model is loaded.

SIMULATED prefix cache (the server's ChunkCache): the prompt's words stand for tokens, cut
into chunks of LMCache's chunk_size. A chunk whose prefix hash was seen before is a hit; every
missed token costs STANDIN_PREFILL_SECONDS_PER_TOKEN (default 0.0002 s) before the first
streamed token. Hashes of stored chunks are kept in memory and, in Mode B (remote_url
fs://PATH), as empty marker files under PATH, so a "warm" prompt is fast across restarts and
nodes, like LMCache's shared tier. The speedup this produces is a property of the stand-in,
not a measurement of vLLM.

It fails the way a misconfigured server would: exit 2 for an unparsable
--kv-transfer-config, 3 for an unreadable LMCACHE_CONFIG_FILE and 4 for an unwritable
PROMETHEUS_MULTIPROC_DIR, so systemd, the readiness wait and the tests see real failures.
"""

import argparse
import json
import os
import sys
import time

from vllm import __version__
from vllm import _openai_server as server_lib

ENV_KEYS = (
    "PT_HPU_LAZY_MODE",
    "PT_HPU_ENABLE_LAZY_COLLECTIVES",
    "PYTHONHASHSEED",
    "PROMETHEUS_MULTIPROC_DIR",
    "LMCACHE_CONFIG_FILE",
    "HF_HOME",
)


def parse_lmcache_yaml(text):
    """Top-level `key: value` pairs of a YAML file (enough for flat LMCache configs)."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] in " #\t-" or ":" not in line:
            continue
        key, _sep, value = line.partition(":")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def probe_writable(directory):
    try:
        path = os.path.join(directory, ".standin-write-probe-%d" % os.getpid())
        with open(path, "w") as fh:
            fh.write("ok")
        os.unlink(path)
        return True
    except OSError:
        return False


def build_state(args, extra):
    state = {
        "standin": True,
        "version": __version__,
        "model": args.model,
        "port": args.port,
        "host": args.host,
        "tensor_parallel_size": args.tensor_parallel_size,
        "max_model_len": args.max_model_len,
        "extra_args": extra,
        "kv_transfer_config": None,
        "lmcache_config": None,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "hf_token_set": bool(os.environ.get("HF_TOKEN")),
        "uid": os.getuid(),
        "started": time.time(),
    }
    if args.kv_transfer_config:
        try:
            state["kv_transfer_config"] = json.loads(args.kv_transfer_config)
        except ValueError as exc:
            sys.stderr.write("standin vllm: invalid --kv-transfer-config: %s\n" % exc)
            sys.exit(2)
    cfg_path = os.environ.get("LMCACHE_CONFIG_FILE")
    if cfg_path:
        try:
            with open(cfg_path) as fh:
                state["lmcache_config"] = parse_lmcache_yaml(fh.read())
        except OSError as exc:
            sys.stderr.write("standin vllm: cannot read LMCACHE_CONFIG_FILE: %s\n" % exc)
            sys.exit(3)
        remote = (state["lmcache_config"] or {}).get("remote_url", "")
        if remote.startswith("fs://"):
            path = "/" + remote[len("fs://") :].split("/", 1)[1] if "/" in remote[len("fs://") :] else ""
            state["shared_tier_path"] = path
            state["shared_tier_writable"] = bool(path) and probe_writable(path)
    prom = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if prom and not probe_writable(prom):
        sys.stderr.write("standin vllm: PROMETHEUS_MULTIPROC_DIR %s is not writable\n" % prom)
        sys.exit(4)
    return state


def make_state(state):
    """The stand-in server's state: LMCache's chunk size, the shared tier as marker store."""
    cfg = state.get("lmcache_config") or {}
    try:
        chunk = max(1, int(cfg.get("chunk_size", 256)))
    except ValueError:
        chunk = 256
    cache = server_lib.ChunkCache(
        state["model"],
        chunk_size=chunk,
        cost_per_token=float(os.environ.get("STANDIN_PREFILL_SECONDS_PER_TOKEN", "0.0002")),
        persist_dir=state.get("shared_tier_path") if state.get("shared_tier_writable") else None,
    )
    return server_lib.ServerState(
        model=state["model"],
        cache=cache,
        info=state,
        check_model=False,
        max_model_len=state["max_model_len"],
        owned_by="vllm-standin",
        tokens=6,
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-v"]):
        print(__version__)
        return 0
    if argv[:1] != ["serve"]:
        sys.stderr.write("stand-in vllm: only `vllm serve MODEL ...` and `--version` exist\n")
        return 2
    parser = argparse.ArgumentParser(prog="vllm serve", description="STAND-IN vllm serve")
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--kv-transfer-config", default=None)
    args, extra = parser.parse_known_args(argv[1:])
    state = build_state(args, extra)
    server = server_lib.make_server(args.host, args.port, make_state(state))
    sys.stderr.write("stand-in vllm %s serving %s on %s:%d\n" % (__version__, args.model, args.host, args.port))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
