# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print the LMCache configuration keys each release accepts, as YAML for
roles/lmcache/vars/known_keys.yml.

Reads `_CONFIG_DEFINITIONS` and `_CONFIG_ALIASES` from `lmcache/v1/config.py`
inside the real PyPI wheels (downloaded with `pip download --no-deps` into a
cache directory outside the repository; nothing is imported or executed).

Usage: scripts/vllm-lmcache-known-keys.py 0.3.9 0.4.1 0.4.2 ...
"""

import ast
import os
import subprocess
import sys
import zipfile

CACHE = os.path.join(
    os.environ.get("GVL_CACHE_DIR")
    or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gaudi-vllm-lmcache"),
    "vllm-wheelhouse",
    "lmcache-pypi",
)


def wheel_for(version):
    os.makedirs(CACHE, exist_ok=True)
    for name in os.listdir(CACHE):
        if name.startswith("lmcache-%s-" % version) and name.endswith(".whl"):
            return os.path.join(CACHE, name)
    subprocess.check_call(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "lmcache==%s" % version,
            "-d",
            CACHE,
        ]
    )
    return wheel_for(version)


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
