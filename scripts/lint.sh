#!/usr/bin/env bash
# make lint: ansible-lint (production profile), yamllint, shellcheck on every shell script of
# the tree, ruff (check and format --check) on every Python file, and the declared ansible-core
# range against meta/runtime.yml, the roles' meta and requirements-dev.txt.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
activate_venv
cd "$ROOT"

header "ansible-lint --profile production"
ansible-lint --profile production

header "yamllint"
yamllint --strict .
echo "yamllint: 0 problems"

header "shellcheck"
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "Installing shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
# Shell scripts: *.sh and files whose first line is a sh or bash shebang.
scripts=()
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] || continue
  first=""
  if [[ "$f" == *.sh ]]; then
    scripts+=("$f")
  elif IFS= read -r first <"$f" 2>/dev/null && [[ "$first" =~ ^\#!.*(/|[[:space:]])(ba)?sh([[:space:]]|$) ]]; then
    scripts+=("$f")
  fi
done < <(git ls-files -z -co --exclude-standard)
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts, 0 problems"

header "ruff check, ruff format --check"
ruff check .
ruff format --check .

header "ansible-core range"
oldest="${ANSIBLE_CORE_OLDEST:?set by the Makefile}" newest="${ANSIBLE_CORE_NEWEST:?set by the Makefile}"
minor="${oldest%.*}"
grep -qxF "requires_ansible: \">=$minor.0\"" meta/runtime.yml \
  || die "meta/runtime.yml: requires_ansible must be \">=$minor.0\" (ANSIBLE_CORE_OLDEST=$oldest in the Makefile)"
for meta in roles/*/meta/main.yml; do
  grep -qE "^  min_ansible_version: \"$minor\"$" "$meta" \
    || die "$meta: min_ansible_version must be \"$minor\" (ANSIBLE_CORE_OLDEST=$oldest in the Makefile)"
done
grep -qxF "ansible-core==$newest" requirements-dev.txt \
  || die "requirements-dev.txt must pin ansible-core==$newest (ANSIBLE_CORE_NEWEST in the Makefile)"
echo "ansible-core $oldest to $newest: meta/runtime.yml, roles' meta and requirements-dev.txt agree"
