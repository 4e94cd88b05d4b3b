"""Make the working tree importable as ``ansible_collections.gaudi.vllm_lmcache``.

The collection is developed outside an ``ansible_collections/<ns>/<name>`` tree, so the
tests link it into ``.collections/`` at the repository root (the same link that the
Makefile creates) and put that directory on ``sys.path``.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "gaudi", "vllm_lmcache")

if not os.path.islink(LINK) and not os.path.isdir(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# Shared test helpers (e.g. lmcache_wheels, the cached real LMCache releases) are imported by
# name from their directory instead of being loaded by path in every test module.
HELPERS = os.path.join(ROOT, "tests", "unit", "plugins", "module_utils")
if HELPERS not in sys.path:
    sys.path.insert(1, HELPERS)
