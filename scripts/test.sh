#!/usr/bin/env bash
# make test: every stage - lint, sanity and unit on both ends of the ansible-core range, build,
# each Molecule scenario - stopping at the first failure, then the wall time of each stage
# (also when one failed).
#
# The machine this is written for has two cores and most stages are single-threaded, so the
# stages run in two lanes:
#   foreground  venv, lint, sanity (newest, oldest), build, then Molecule
#   background  the host packages, the Docker engine, the Molecule base image and the VM image
#               (network- and IO-bound; chain "system")
#   background  .venv-oldest, the real LMCache releases of the unit tests, unit (newest,
#               oldest) (chain "unit"; unit waits for the host packages first), joined after
#               Molecule
# A foreground stage that needs a background step joins it first. A background step's output
# goes to $GVL_CACHE_DIR/test-setup.*/NAME.log and is printed when it is joined; a failed step
# fails make test there with the end of its log, and the rest of its chain does not run.
# Each setup target runs once, in its own step: the others run with it marked done (make -o),
# so no two lanes run the same setup script at once.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
: "${ANSIBLE_CORE_OLDEST:?run it as make test}" "${ANSIBLE_CORE_NEWEST:?run it as make test}"

make=("${MAKE:-make}" --no-print-directory)
# Setup targets that a step's own prerequisites would otherwise run again (each once, in its
# own step): make_step TARGET runs TARGET with the others marked done.
setup_targets=(venv venv-oldest host-deps docker image vm-image lmcache-wheels)
make_step() {
  local t old=()
  for t in "${setup_targets[@]}"; do
    [[ "$t" == "$1" ]] || old+=(-o "$t")
  done
  "${make[@]}" "${old[@]}" "$1"
}
GVL_STAGE_TIMES="$(mktemp "$CACHE_DIR/stage-times.XXXXXX")"
export GVL_STAGE_TIMES
# One directory per run (runs from two clones may overlap); those of earlier days are removed.
find "$CACHE_DIR" -maxdepth 1 -name 'test-setup.*' -type d -mtime +0 -exec rm -rf {} + 2>/dev/null || true
BG_DIR="$(mktemp -d "$CACHE_DIR/test-setup.XXXXXX")"
system_pid="" unit_pid=""
started=$SECONDS

print_times() {
  local rc=$?
  # The unit chain is test work: stop it. The system chain fills caches for the next run: let
  # it finish rather than leave half an image.
  if [[ -n "$unit_pid" ]] && kill -0 "$unit_pid" 2>/dev/null; then
    echo "make test: stopping the unit lane"
    kill_tree "$unit_pid"
  fi
  if [[ -n "$system_pid" ]] && kill -0 "$system_pid" 2>/dev/null; then
    echo "make test: waiting for the background setup to finish (logs: $BG_DIR)"
    wait "$system_pid" 2>/dev/null || true
  fi
  header "make test: wall time per stage"
  sort -s -k1,1 "$GVL_STAGE_TIMES" | cut -d' ' -f2-
  printf '  %-40s %s\n' "total" "$((SECONDS - started))s"
  rm -f "$GVL_STAGE_TIMES"
  if ((rc)); then
    echo "make test FAILED (exit $rc)"
  else
    echo "make test: all stages passed"
  fi
}
trap print_times EXIT

# record ORDER NAME RESULT: one line of the final table (ORDER sorts the lanes' lines).
record() {
  printf '%s   %-40s %s\n' "$1" "$2" "$3" >>"$GVL_STAGE_TIMES"
}

# wait_step NAME: block until background step NAME has ended; sets step_rc and step_secs and
# returns step_rc.
wait_step() {
  until [[ -e "$BG_DIR/$1.rc" ]]; do sleep 1; done
  read -r step_rc step_secs <"$BG_DIR/$1.rc"
  return "$step_rc"
}

# background VAR NAME TARGET|@STEP ...: run the steps one after the other in a background
# chain and store its pid in VAR. NAME TARGET runs make TARGET (log BG_DIR/NAME.log; when it
# ends BG_DIR/NAME.rc holds "rc seconds"); @STEP waits for a step of another chain. After a
# failure the rest of the chain is not run (rc 125).
background() {
  local var="$1"
  shift
  (
    failed=""
    while (($#)); do
      if [[ "$1" == @* ]]; then
        wait_step "${1#@}" || failed="${1#@}"
        shift
        continue
      fi
      name="$1" target="$2" t0=$SECONDS rc=0
      shift 2
      if [[ -n "$failed" ]]; then
        echo "not run: $failed failed first (see $BG_DIR/$failed.log)" >"$BG_DIR/$name.log"
        rc=125
      else
        make_step "$target" >"$BG_DIR/$name.log" 2>&1 </dev/null || rc=$?
        ((rc == 0)) || failed="$name"
      fi
      echo "$rc $((SECONDS - t0))" >"$BG_DIR/$name.rc.tmp"
      mv "$BG_DIR/$name.rc.tmp" "$BG_DIR/$name.rc"
    done
  ) &
  printf -v "$var" '%s' "$!"
}

# join ORDER NAME: wait for a background step, record its time (and how long the foreground
# waited for it), print its log; fail with the end of the log when it failed.
join() {
  local order="$1" name="$2" t0=$SECONDS rc=0 secs
  wait_step "$name" || rc=$?
  secs=$step_secs
  record "$order" "$name" "$( ((rc)) && echo FAILED || echo ok) ${secs}s (background; waited $((SECONDS - t0))s)"
  if ((rc)); then
    header "background step $name FAILED (exit $rc): end of $BG_DIR/$name.log"
    tail -n 80 "$BG_DIR/$name.log" >&2
    return "$rc"
  fi
  header "background step $name: ok in ${secs}s"
  cat "$BG_DIR/$name.log"
}

# stage ORDER NAME MAKE-TARGET: run the target in the foreground and record its wall time.
# Molecule records one line per scenario itself (scripts/molecule.sh).
stage() {
  local order="$1" name="$2" target="$3" t0=$SECONDS rc=0
  make_step "$target" || rc=$?
  if [[ "$target" != molecule ]]; then
    record "$order" "$name" "$( ((rc)) && echo FAILED || echo ok) $((SECONDS - t0))s"
  fi
  return "$rc"
}

# Both lanes need .venv; nothing else runs while it is made.
stage 00 venv venv
background system_pid host-deps host-deps docker docker image image vm-image vm-image
background unit_pid venv-oldest venv-oldest lmcache-wheels lmcache-wheels @host-deps \
  "unit-$ANSIBLE_CORE_NEWEST" unit-newest "unit-$ANSIBLE_CORE_OLDEST" unit-oldest
# lint needs shellcheck from the host packages.
join 01 host-deps
stage 02 lint lint
stage 03 "sanity (ansible-core $ANSIBLE_CORE_NEWEST)" sanity-newest
join 04 venv-oldest
stage 05 "sanity (ansible-core $ANSIBLE_CORE_OLDEST)" sanity-oldest
stage 06 build build
join 07 docker
join 08 image
join 09 vm-image
# The hpu_patch scenario downloads into the same LMCache wheel cache.
join 10 lmcache-wheels
# Molecule does not wait for the unit tests: they run on beside the first scenarios.
GVL_STAGE_ORDER=11 stage 11 molecule molecule
join 12 "unit-$ANSIBLE_CORE_NEWEST"
join 13 "unit-$ANSIBLE_CORE_OLDEST"
