# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line and settings file: flags for manual use, --settings FILE for the role."""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import sys

from . import __doc__ as PACKAGE_DOC
from . import __version__
from .common import TIERS, _csv_list, _write_atomic
from .cross_node import cross_node_seed
from .report import build_report, format_table

# Settings that a settings file may not hold: per-run values and the secret.
NOT_SETTINGS = {
    "settings": "it names the settings file itself",
    "api_key": "the bearer token is read from $GAUDI_VALIDATE_API_KEY (or --api-key), never from a file",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gaudi-validate",
        description=PACKAGE_DOC.split("\n\n", maxsplit=1)[0],
        epilog=(
            "Tiers: %s. Exit 0: no required tier failed; 1: a required tier failed; "
            "2: bad arguments. A skipped tier never fails the run." % ", ".join(TIERS)
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--version", action="version", version="%(prog)s " + __version__)
    add(
        "--settings",
        metavar="FILE",
        help="JSON object of settings keyed by option name (tiers, expected_devices, ...; lists for "
        "the comma-separated ones); options given on the command line win over it",
    )
    add("--tiers", default=",".join(TIERS), help="comma-separated tiers to run")
    add("--required", default=",".join(TIERS), help="comma-separated tiers whose failure makes the exit status 1")
    add("--output", "-o", help="write the JSON report to this file")
    add(
        "--format",
        choices=("table", "json", "both", "none"),
        default="table",
        help="what to print: the table or the JSON report on stdout; both: the JSON report on stdout and the table on stderr",
    )
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
        help="file providing classify(site_packages) (default: the collection's lmcache_hpu_patch "
        "installed with this package)",
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
        help="seconds to wait for LMCache's counters (flushed every 10 s) to show the requests, when "
        "no hit token was counted and no cross-node seed of this node was stored",
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

    return parser


def load_settings(parser, path):
    """The settings file as parser defaults: {dest: value}, checked against the options."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, ValueError) as exc:
        parser.error("--settings %s: %s" % (path, exc))
    if not isinstance(settings, dict):
        parser.error("--settings %s: a JSON object is expected, not %s" % (path, type(settings).__name__))
    actions = dict((a.dest, a) for a in parser._actions if a.dest not in ("help", "version"))  # pylint: disable=protected-access
    checked = {}
    for key, value in sorted(settings.items()):
        dest = key.replace("-", "_")
        if dest in NOT_SETTINGS:
            parser.error("--settings %s: %s may not be set there: %s" % (path, key, NOT_SETTINGS[dest]))
        action = actions.get(dest)
        if action is None:
            parser.error("--settings %s: unknown setting %r" % (path, key))
        if value is None:
            checked[dest] = None
            continue
        if action.nargs == 0:  # a flag (store_true)
            if not isinstance(value, bool):
                parser.error("--settings %s: %s must be true or false, not %r" % (path, key, value))
        elif isinstance(value, list):
            if action.type is not None or not all(isinstance(v, str) for v in value):
                parser.error("--settings %s: %s takes one value, not a list" % (path, key))
        elif action.type is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                parser.error("--settings %s: %s must be a %s, not %r" % (path, key, action.type.__name__, value))
        elif not isinstance(value, str):
            value = str(value)
        if action.choices and value not in action.choices:
            parser.error(
                "--settings %s: %s %r is not one of %s" % (path, key, value, ", ".join(map(str, action.choices)))
            )
        checked[dest] = value
    return checked


def parse_args(argv=None):
    parser = build_parser()
    first, dummy = parser.parse_known_args(argv)
    if first.settings:
        parser.set_defaults(**load_settings(parser, first.settings))
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
    if args.format in ("json", "both"):
        print(text)
    if args.format == "table":
        print(format_table(report))
    elif args.format == "both":
        print(format_table(report), file=sys.stderr)
    return 1 if report["overall"] == "fail" else 0
