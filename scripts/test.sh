#!/usr/bin/env bash
# make test: every stage in order - lint, sanity and unit on both ends of the ansible-core
# range, build, each Molecule scenario - stopping at the first failure, then the wall time of
# each stage (also when one failed).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
: "${ANSIBLE_CORE_OLDEST:?run it as make test}" "${ANSIBLE_CORE_NEWEST:?run it as make test}"

make=("${MAKE:-make}" --no-print-directory)
GVL_STAGE_TIMES="$(mktemp "$CACHE_DIR/stage-times.XXXXXX")"
export GVL_STAGE_TIMES
started=$SECONDS

print_times() {
  local rc=$?
  header "make test: wall time per stage"
  cat "$GVL_STAGE_TIMES"
  printf '  %-32s %s\n' "total" "$((SECONDS - started))s"
  rm -f "$GVL_STAGE_TIMES"
  if ((rc)); then
    echo "make test FAILED (exit $rc)"
  else
    echo "make test: all stages passed"
  fi
}
trap print_times EXIT

# stage NAME MAKE-TARGET: run the target and record its wall time. Molecule records one line
# per scenario itself (scripts/molecule.sh).
stage() {
  local name="$1" target="$2" t0=$SECONDS rc=0
  "${make[@]}" "$target" || rc=$?
  if [[ "$target" != molecule ]]; then
    printf '  %-32s %s %ss\n' "$name" "$( ((rc)) && echo FAILED || echo ok)" "$((SECONDS - t0))" >>"$GVL_STAGE_TIMES"
  fi
  return "$rc"
}

stage lint lint
stage "sanity (ansible-core $ANSIBLE_CORE_NEWEST)" sanity-newest
stage "sanity (ansible-core $ANSIBLE_CORE_OLDEST)" sanity-oldest
stage "unit (ansible-core $ANSIBLE_CORE_NEWEST)" unit-newest
stage "unit (ansible-core $ANSIBLE_CORE_OLDEST)" unit-oldest
stage build build
stage molecule molecule
