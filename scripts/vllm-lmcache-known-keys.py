# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print the LMCache configuration keys each release accepts, as YAML for
roles/lmcache/vars/known_keys.yml.

Reads `_CONFIG_DEFINITIONS` and `_CONFIG_ALIASES` from `lmcache/v1/config.py`
inside the real PyPI wheels, fetched and cached outside the repository by
tests/unit/plugins/module_utils/lmcache_wheels.py (the cache the unit tests use;
nothing is imported or executed).

Usage: scripts/vllm-lmcache-known-keys.py 0.3.9 0.4.1 0.4.2 ...
"""

import ast
import os
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit", "plugins", "module_utils"))
import lmcache_wheels  # noqa: E402


def wheel_for(version):
    """The cached PyPI wheel of ``version`` (downloaded once by lmcache_wheels)."""
    return lmcache_wheels.wheel_path(version)


def dict_keys(tree, name):
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    return []


def main(versions):
    print("---")
    print("# LMCache configuration keys per release, read from _CONFIG_DEFINITIONS and _CONFIG_ALIASES in")
    print("# lmcache/v1/config.py of the PyPI wheels by scripts/vllm-lmcache-known-keys.py.")
    print("# Releases not listed here (e.g. 0.3.2 and 0.3.3, whose config is a dataclass) are not checked.")
    print("lmcache_known_keys:")
    for version in versions:
        with zipfile.ZipFile(wheel_for(version)) as wheel:
            tree = ast.parse(wheel.read("lmcache/v1/config.py"))
        keys = dict_keys(tree, "_CONFIG_DEFINITIONS")
        if not keys:
            continue
        aliases = dict_keys(tree, "_CONFIG_ALIASES")
        print('  "%s":' % version)
        for label, items in (("keys", keys), ("aliases", aliases)):
            if items:
                print("    %s:" % label)
                for item in sorted(items):
                    print("      - %s" % item)
            else:
                print("    %s: []" % label)


if __name__ == "__main__":
    main(sys.argv[1:])
