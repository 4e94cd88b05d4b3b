#!/usr/bin/env bash
# make test: every stage in order - lint, sanity and unit on both ends of the ansible-core
# range, build, each Molecule scenario - stopping at the first failure, then the wall time of
# each stage (also when one failed).
#
# The network- and IO-bound setup runs in the background while the foreground stages run:
# .venv-oldest in one chain; the host packages, the Docker engine, the Molecule base image and
# the VM image in a second; the real LMCache releases of the unit tests (once .venv exists) in
# a third. Each stage that needs one of them joins it first; a
# failed background step fails make test there and prints the end of its log (all logs are
# kept under $GVL_CACHE_DIR/test-setup/ until the next run).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
: "${ANSIBLE_CORE_OLDEST:?run it as make test}" "${ANSIBLE_CORE_NEWEST:?run it as make test}"

make=("${MAKE:-make}" --no-print-directory)
GVL_STAGE_TIMES="$(mktemp "$CACHE_DIR/stage-times.XXXXXX")"
export GVL_STAGE_TIMES
BG_DIR="$CACHE_DIR/test-setup"
rm -rf "$BG_DIR"
mkdir -p "$BG_DIR"
bg_pids=()
started=$SECONDS

print_times() {
  local rc=$?
  local pid
  for pid in "${bg_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      # Setup steps are cached for the next run: let them finish rather than leave half a build.
      echo "make test: waiting for the background setup to finish (logs: $BG_DIR)"
      wait "$pid" 2>/dev/null || true
    fi
  done
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

# background NAME MAKE-TARGET [NAME MAKE-TARGET...]: run the targets one after the other in a
# background chain; each writes BG_DIR/NAME.log and, when it ends, BG_DIR/NAME.rc ("rc seconds").
# After a failure the rest of the chain is not run (rc 125).
background() {
  (
    failed=""
    while (($#)); do
      name="$1" target="$2" t0=$SECONDS rc=0
      shift 2
      if [[ -n "$failed" ]]; then
        echo "not run: $failed failed first (see $BG_DIR/$failed.log)" >"$BG_DIR/$name.log"
        rc=125
      else
        "${make[@]}" "$target" >"$BG_DIR/$name.log" 2>&1 </dev/null || rc=$?
        ((rc == 0)) || failed="$name"
      fi
      echo "$rc $((SECONDS - t0))" >"$BG_DIR/$name.rc.tmp"
      mv "$BG_DIR/$name.rc.tmp" "$BG_DIR/$name.rc"
    done
  ) &
  bg_pids+=("$!")
}

# join NAME: wait for a background step, record its time (and how long the foreground waited
# for it), print its log; fail with the end of the log when it failed.
join() {
  local name="$1" t0=$SECONDS rc secs
  until [[ -e "$BG_DIR/$name.rc" ]]; do sleep 1; done
  read -r rc secs <"$BG_DIR/$name.rc"
  printf '  %-32s %s %ss (background; waited %ss)\n' "setup $name" "$( ((rc)) && echo FAILED || echo ok)" \
    "$secs" "$((SECONDS - t0))" >>"$GVL_STAGE_TIMES"
  if ((rc)); then
    header "background setup step $name FAILED (exit $rc): end of $BG_DIR/$name.log"
    tail -n 60 "$BG_DIR/$name.log" >&2
    return "$rc"
  fi
  header "background setup step $name: ok in ${secs}s"
  cat "$BG_DIR/$name.log"
}

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

background venv-oldest venv-oldest
background host-deps host-deps docker docker image image vm-image vm-image
stage venv venv
# lint needs shellcheck from the host packages (and its own apt use must not meet theirs).
join host-deps
background lmcache-wheels lmcache-wheels
stage lint lint
stage "sanity (ansible-core $ANSIBLE_CORE_NEWEST)" sanity-newest
join venv-oldest
stage "sanity (ansible-core $ANSIBLE_CORE_OLDEST)" sanity-oldest
join lmcache-wheels
stage "unit (ansible-core $ANSIBLE_CORE_NEWEST)" unit-newest
stage "unit (ansible-core $ANSIBLE_CORE_OLDEST)" unit-oldest
stage build build
join docker
join image
join vm-image
stage molecule molecule
