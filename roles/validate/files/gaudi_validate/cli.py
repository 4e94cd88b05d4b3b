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
  serving     OpenAI-compatible endpoint: health, models, cold vs warm streamed time to
              first token, LMCache hit tokens, degraded mode, same text cold and warm,
              the cross-node hit of Mode B

Settings come from --settings FILE (JSON, what the role renders) and the command line; an
option given on the command line overrides the file. Only the Python standard library is
required (Python 3.8+); torch is imported only by the devices (CUDA/ROCm/HPU through torch)
and kv_offload tiers, and only when present.

Exit status: 0 when no required tier failed, 1 when a required tier failed,
2 on bad arguments or settings, 3 on an internal error of the script itself.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import sys

from .common import TIERS, __version__
from .common import csv_list as _csv_list
from .report import build_report, format_table
from .serving import DEFAULT_DEGRADED_PATTERNS


def _bool(text):
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("%r is not a boolean" % text)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m gaudi_validate",
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
    add(
        "--settings",
        default=None,
        help="JSON file of settings (keys: the long option names with '_', e.g. expected_devices); "
        "options given on the command line override it",
    )
    add(
        "--support-dir",
        default=None,
        help="directory holding the collection's hl_smi.py and lmcache_hpu_patch.py "
        "(default: $GAUDI_VALIDATE_SUPPORT_DIR, else the directory that holds this package)",
    )

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
        default=None,
        help="file providing classify(site_packages) (default: lmcache_hpu_patch.py in --support-dir)",
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
        "--restart-command", help="Mode B: command that restarts the service, e.g. 'systemctl restart vllm@llama'"
    )
    grp.add_argument("--restart-timeout", type=float, default=120.0)
    grp.add_argument("--restart-wait", type=float, default=900.0, help="seconds to wait for /health after the restart")
    grp.add_argument("--completion-tokens", type=int, default=8, help="tokens generated per request")
    grp.add_argument("--seed", type=int, default=0, help="sampling seed (with temperature 0) of every request")
    grp.add_argument(
        "--hits-settle-s",
        type=float,
        default=10.0,
        help="seconds to wait for the hit counters to move after the warm requests (LMCache's lag a request)",
    )
    grp.add_argument(
        "--reset-prefix-cache",
        type=_bool,
        default=True,
        help="POST /reset_prefix_cache before the warm requests, so warm hits come from LMCache (best effort)",
    )
    grp.add_argument(
        "--log-command",
        default=None,
        help="command whose output (e.g. the service journal) is searched for --degraded-patterns",
    )
    grp.add_argument(
        "--degraded-patterns",
        default=",".join(DEFAULT_DEGRADED_PATTERNS),
        help="comma-separated log lines that mean LMCache runs degraded (caches nothing)",
    )
    grp.add_argument("--nonce", default=None, help="nonce of the prompt (default: a fresh one per run)")
    grp.add_argument(
        "--prime-only",
        action="store_true",
        help="Mode B across nodes: only send the prompt of --nonce, so that other nodes can hit it",
    )
    grp.add_argument("--cross-node-nonce", default=None, help="nonce of a prompt another node stored (--prime-only)")
    grp.add_argument("--cross-node-peer", default=None, help="name of the node that stored it (for the messages)")
    grp.add_argument(
        "--cross-node-text", default=None, help="the text that node generated; this node's must be the same"
    )
    grp.add_argument(
        "--cross-node-model",
        default=None,
        help="the model that node serves; a node serving another model skips the cross-node check",
    )

    return parser


def parse_args(argv=None):
    """Defaults, then the --settings file, then the options given on the command line."""
    parser = build_parser()
    actions = dict((a.dest, a) for a in parser._actions if a.dest not in ("help", "version"))
    defaults = dict((dest, action.default) for dest, action in actions.items())
    for action in actions.values():
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    merged = dict(defaults)
    settings_file = given.get("settings")
    if settings_file:
        try:
            with open(settings_file, "r", encoding="utf-8") as handle:
                settings = json.load(handle)
        except (OSError, ValueError) as exc:
            parser.error("--settings %s: %s" % (settings_file, exc))
        if not isinstance(settings, dict):
            parser.error("--settings %s: the file must hold a JSON object" % settings_file)
        for key, value in settings.items():
            action = actions.get(key)
            if action is None or key == "settings":
                parser.error("--settings %s: unknown setting %r" % (settings_file, key))
            if value is None:
                continue
            if isinstance(value, list) and action.type is None:
                value = ",".join(str(v) for v in value)
            elif action.type is not None and not isinstance(value, bool):
                try:
                    value = action.type(value)
                except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                    parser.error("--settings %s: %s=%r: %s" % (settings_file, key, value, exc))
            elif action.type is None and action.nargs == 0 and not isinstance(value, bool):
                parser.error("--settings %s: %s must be true or false, got %r" % (settings_file, key, value))
            if action.choices and value not in action.choices:
                parser.error(
                    "--settings %s: %s=%r is not one of %s"
                    % (settings_file, key, value, ", ".join(str(c) for c in action.choices))
                )
            merged[key] = value
    merged.update(given)
    args = argparse.Namespace(**merged)
    return finish_args(parser, args)


def finish_args(parser, args):
    args.tiers = _csv_list(args.tiers)
    args.required = _csv_list(args.required)
    for name in args.tiers + args.required:
        if name not in TIERS:
            parser.error("unknown tier %r (choose from %s)" % (name, ", ".join(TIERS)))
    args.storage_options = _csv_list(args.storage_options)
    args.storage_fstype = _csv_list(args.storage_fstype)
    args.stack_require = _csv_list(args.stack_require)
    args.degraded_patterns = _csv_list(args.degraded_patterns)
    for name in ("expected_devices", "storage_files"):
        if getattr(args, name) < 0:
            parser.error("--%s must be >= 0" % name.replace("_", "-"))
    if args.prime_only and not args.nonce:
        parser.error("--prime-only needs --nonce")
    for name in ("kv_iterations", "prompt_tokens", "warm_repeats", "completion_tokens"):
        if getattr(args, name) < 1:
            parser.error("--%s must be >= 1" % name.replace("_", "-"))
    for name in ("model_layers", "model_kv_heads", "model_head_dim", "dtype_bytes", "chunk_tokens", "tp"):
        if getattr(args, name) < 1:
            parser.error("--%s must be >= 1" % name.replace("_", "-"))
    for name in ("visibility_write", "visibility_expect", "nonce", "cross_node_nonce"):
        value = getattr(args, name)
        if value is not None and not re.match(r"^[A-Za-z0-9._-]+$", value):
            parser.error("--%s takes letters, digits, '.', '_' and '-'" % name.replace("_", "-"))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        report = build_report(args)
    except Exception as exc:  # pylint: disable=broad-except
        print("gaudi_validate: internal error: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 3
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(directory, exist_ok=True)
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.output)
    if args.format == "json":
        print(text)
    elif args.format == "table":
        print(format_table(report))
    return 1 if report["overall"] == "fail" else 0
