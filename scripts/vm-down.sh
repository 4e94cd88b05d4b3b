#!/usr/bin/env bash
# Stop the VMs that scripts/vm-up.sh started in STATE_DIR and delete their overlays.
#
#   scripts/vm-down.sh STATE_DIR [NAME...]
#
# Only the qemu processes recorded in STATE_DIR/<name>.pid are stopped.
set -euo pipefail

state="${1:?usage: vm-down.sh STATE_DIR [NAME...]}"
shift
[[ -d "$state" ]] || exit 0
if (($#)); then names=("$@"); else
  names=()
  for f in "$state"/*.pid; do [[ -e "$f" ]] && names+=("$(basename "$f" .pid)"); done
fi
for name in "${names[@]}"; do
  pidfile="$state/$name.pid"
  if [[ -s "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null && grep -q qemu "/proc/$pid/comm" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "Stopped VM $name (pid $pid)"
    fi
  fi
  rm -f "$pidfile" "$state/$name.qcow2"
done
