#!/usr/bin/env bash
# Build the collection tarball and check that it installs offline and renders its docs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
activate_venv
cd "$ROOT"

out="$CACHE_DIR/build"
rm -rf "$out"
mkdir -p "$out/collections"
ansible-galaxy collection build --force --output-path "$out" .
tarball="$(ls "$out"/gaudi-vllm_lmcache-*.tar.gz)"
echo "Built $tarball ($(du -h "$tarball" | cut -f1))"
ansible-galaxy collection install --offline --no-deps -p "$out/collections" "$tarball"
export ANSIBLE_COLLECTIONS_PATH="$out/collections"
ansible-galaxy collection list gaudi.vllm_lmcache
for module in plugins/modules/*.py; do
  [[ -e "$module" ]] || continue
  name="$(basename "$module" .py)"
  ansible-doc "gaudi.vllm_lmcache.$name" >/dev/null
  echo "ansible-doc gaudi.vllm_lmcache.$name renders"
done
ansible-playbook --syntax-check -i localhost, gaudi.vllm_lmcache.site
