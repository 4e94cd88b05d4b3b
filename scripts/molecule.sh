#!/usr/bin/env bash
# Run Molecule scenarios: all of them (default) or those named as arguments.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
activate_venv
cd "$ROOT"

if (($#)); then
  scenarios=("$@")
else
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
fi

failed=()
declare -A took
for s in "${scenarios[@]}"; do
  header "molecule test -s $s"
  start=$SECONDS
  if molecule test -s "$s"; then
    took[$s]="ok $((SECONDS - start))s"
  else
    took[$s]="FAILED $((SECONDS - start))s"
    failed+=("$s")
  fi
  # make test prints these with the other stages' times (scripts/test.sh).
  if [[ -n "${GVL_STAGE_TIMES:-}" ]]; then
    printf '  %-32s %s\n' "molecule $s" "${took[$s]}" >>"$GVL_STAGE_TIMES"
  fi
done

header "Molecule summary"
for s in "${scenarios[@]}"; do
  printf '  %-24s %s\n' "$s" "${took[$s]}"
done
if ((${#failed[@]})); then
  die "Molecule scenarios failed: ${failed[*]}"
fi
echo "${#scenarios[@]} passed, 0 failed"
