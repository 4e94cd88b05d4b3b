# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""stack tier: torch / vllm / vllm-gaudi / lmcache versions from the service virtualenv's metadata
(nothing is imported) and the LMCache HPU patch state (patch.py)."""

from __future__ import absolute_import, division, print_function

import email.parser
import glob
import os
import re

from .patch import check_patch

STACK_PACKAGES = ("torch", "vllm", "vllm-gaudi", "lmcache", "habana-torch-plugin")


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

    patch, patch_problems = check_patch(args, ctx, site)
    problems.extend(patch_problems)
    figures["patch"] = patch
    shown = ", ".join("%s %s" % (n, v) for n, v in sorted(figures["packages"].items()) if v)
    summary = shown or "no tracked package installed"
    if patch.get("classification"):
        summary += "; patch %s" % patch["classification"]
    if problems:
        return "fail", "; ".join(problems), figures
    return "pass", summary, figures
