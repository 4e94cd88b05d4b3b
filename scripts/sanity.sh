#!/usr/bin/env bash
# Run `ansible-test sanity --local` on a copy of the working tree laid out as
# ansible_collections/gaudi/vllm_lmcache (ansible-test needs that path).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
activate_venv

# ansible-test bootstraps pip in its sanity virtualenvs with a get-pip script that it would
# download from a CI file host. An offline stand-in: ensurepip, then pip install the arguments.
bootstrap_dir="$HOME/.ansible/test/cache"
mkdir -p "$bootstrap_dir"
# Versions: the pip that ansible-core 2.16 (23.1.2) to 2.19 (24.2 to 25.x) bootstrap.
for ver in 23_1_2 24_0 24_2 25_0 25_1 25_2 25_3; do
  cat > "$bootstrap_dir/get_pip_$ver.py" <<'PY'
"""Offline replacement for get-pip.py used by ansible-test's virtualenv bootstrap."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
done

# A fresh copy per run, so concurrent runs do not share a tree.
mkdir -p "$CACHE_DIR/sanity"
tree="$(mktemp -d "$CACHE_DIR/sanity/run.XXXXXX")"
trap 'rm -rf "$tree"' EXIT
dest="$tree/ansible_collections/gaudi/vllm_lmcache"
mkdir -p "$dest"
cd "$ROOT"
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e "$f" ]] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$dest"

cd "$dest"
ansible-test sanity --local --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no "$@"
