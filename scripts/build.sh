#!/usr/bin/env bash
# Build the collection tarball, install it offline into an empty collections path, and check
# that the installed copy is complete: every module's docs render and the site playbook loads.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
activate_venv
cd "$ROOT"

out="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
ansible-galaxy collection build --force --output-path "$out" .
tarball="$(ls "$out"/gaudi-vllm_lmcache-*.tar.gz)"
echo "Built $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
# The artefact ships the source tree only (what git tracks or would track): nothing from a
# virtualenv, a cache or a build output.
untracked="$(python - "$tarball" <<'PY'
import subprocess
import sys
import tarfile

tracked = set(subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], check=True, capture_output=True, text=True).stdout.split("\0"))
generated = {"MANIFEST.json", "FILES.json"}
with tarfile.open(sys.argv[1]) as tar:
    for member in tar.getmembers():
        if member.isfile() and member.name not in tracked and member.name not in generated:
            print(member.name)
PY
)"
[[ -z "$untracked" ]] || die "the tarball holds files outside the source tree (galaxy.yml build_ignore misses them): $(head -n 5 <<<"$untracked" | tr '\n' ' ')"
# Only the installed copy may be visible from here on, not the working tree.
export ANSIBLE_COLLECTIONS_PATH="$out/collections"
ansible-galaxy collection install --offline --no-deps --force -p "$out/collections" "$tarball"
test -f "$out/collections/ansible_collections/gaudi/vllm_lmcache/MANIFEST.json"
ansible-galaxy collection list gaudi.vllm_lmcache -p "$out/collections"
for module in plugins/modules/*.py; do
  [[ -e "$module" ]] || continue
  name="gaudi.vllm_lmcache.$(basename "$module" .py)"
  ansible-doc -j "$name" | python -c 'import json, sys; d = json.load(sys.stdin); sys.exit(0 if d else 1)' \
    || die "ansible-doc $name did not render from the installed collection"
  echo "ansible-doc $name renders"
done
ansible-playbook --syntax-check -i localhost, gaudi.vllm_lmcache.site
ansible-playbook --syntax-check -i localhost, gaudi.vllm_lmcache.wheelhouse
echo "Installed collection works: gaudi.vllm_lmcache.site and gaudi.vllm_lmcache.wheelhouse load"
