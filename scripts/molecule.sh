#!/usr/bin/env bash
# Run Molecule scenarios: all of them (default) or those named as arguments.
#
# The scenarios named in GVL_MOLECULE_ALONGSIDE (default: kv_storage_vm, the qemu VM, which
# shares nothing with the container scenarios: no Docker, its own ephemeral directory) run in
# the background while the others run one after the other, when more than one scenario is to
# run; their output goes to a log that is printed when they end. GVL_MOLECULE_ALONGSIDE=""
# runs everything in sequence.
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
read -r -a alongside_wanted <<<"${GVL_MOLECULE_ALONGSIDE-kv_storage_vm}"

failed=()
declare -A took
record() {
  local s="$1" result="$2"
  took[$s]="$result"
  # make test prints these with the other stages' times (scripts/test.sh).
  if [[ -n "${GVL_STAGE_TIMES:-}" ]]; then
    printf '%s   %-40s %s\n' "${GVL_STAGE_ORDER:-99}" "molecule $s" "$result" >>"$GVL_STAGE_TIMES"
  fi
}

# The background scenarios (only when something else runs beside them).
alongside=() sequence=()
for s in "${scenarios[@]}"; do
  if ((${#scenarios[@]} > 1)) && [[ " ${alongside_wanted[*]} " == *" $s "* ]]; then
    alongside+=("$s")
  else
    sequence+=("$s")
  fi
done
logdir="$CACHE_DIR/molecule-logs"
mkdir -p "$logdir"
declare -A bg_pid bg_start
stop_background() {
  local pid
  for pid in "${bg_pid[@]}"; do kill_tree "$pid"; done
}
trap 'stop_background; exit 130' INT TERM
for s in "${alongside[@]}"; do
  echo "molecule test -s $s runs in the background beside the other scenarios (log: $logdir/$s.log)"
  bg_start[$s]=$SECONDS
  molecule test -s "$s" >"$logdir/$s.log" 2>&1 </dev/null &
  bg_pid[$s]=$!
done

# failure_excerpt LOG: the failed tasks of a scenario's log, short enough to sit at the end of
# the output (a CI that keeps only the tail still says why): each "fatal:"/"failed:" line and
# the task heading before it, cut to 1200 characters, the last 16 lines.
failure_excerpt() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^TASK \[|^(fatal|failed): |FAILED!|^ERROR|CRITICAL' |
    grep -B1 -E '^(fatal|failed): |FAILED!|^ERROR|CRITICAL' | grep -v '^--$' |
    cut -c1-1200 | tail -n 16 || true
}

for s in "${sequence[@]}"; do
  header "molecule test -s $s"
  start=$SECONDS
  # The output goes to the terminal and to a log (for the excerpt at the end); pipefail keeps
  # molecule's exit status.
  if molecule test -s "$s" 2>&1 | tee "$logdir/$s.log"; then
    record "$s" "ok $((SECONDS - start))s"
  else
    record "$s" "FAILED $((SECONDS - start))s"
    failed+=("$s")
  fi
done

for s in "${alongside[@]}"; do
  rc=0
  wait "${bg_pid[$s]}" || rc=$?
  header "molecule test -s $s (ran in the background): $logdir/$s.log"
  cat "$logdir/$s.log"
  if ((rc)); then
    record "$s" "FAILED $((SECONDS - bg_start[$s]))s (background)"
    failed+=("$s")
  else
    record "$s" "ok $((SECONDS - bg_start[$s]))s (background)"
  fi
done

for s in "${failed[@]}"; do
  header "molecule $s FAILED: the failed tasks (whole log: $logdir/$s.log)"
  failure_excerpt "$logdir/$s.log"
done

header "Molecule summary"
for s in "${scenarios[@]}"; do
  printf '  %-24s %s\n' "$s" "${took[$s]}"
done
if ((${#failed[@]})); then
  die "Molecule scenarios failed: ${failed[*]}"
fi
echo "${#scenarios[@]} passed, 0 failed"
