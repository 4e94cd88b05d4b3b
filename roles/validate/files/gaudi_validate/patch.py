# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""patch check (part of the stack tier): the LMCache HPU patch state of the service virtualenv.

The classifier is the collection's ``lmcache_hpu_patch`` module_utils (``classify(site_packages)``),
which recognises an install from its files, never by importing LMCache.
"""

from __future__ import absolute_import, division, print_function

import importlib.util
import os

from .common import support_dir

PATCH_MODULE_NAME = "lmcache_hpu_patch.py"
PATCH_CLASSIFICATIONS = ("native", "patchable", "patched", "unsupported", "missing")


def load_patch_classifier(path):
    """Import lmcache_hpu_patch.py from a file; return (classify, reason)."""
    if not os.path.isfile(path):
        return None, "%s is not installed (%s)" % (PATCH_MODULE_NAME, path)
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


def check_patch(args, ctx, site):
    """Return (patch figures, problems) for --patch-check auto|require|report|off."""
    problems = []
    if not args.patch_module:
        args.patch_module = os.path.join(support_dir(args), PATCH_MODULE_NAME)
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
    return patch, problems
