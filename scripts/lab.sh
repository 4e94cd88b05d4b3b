#!/usr/bin/env bash
# The local lab: `lab.sh up` creates (or reuses) three systemd containers - lab-gaudi-1 and
# lab-gaudi-2 (gaudi_nodes, STAND-IN hardware) and lab-prefill-1 (prefill_nodes) - with one
# host directory bind-mounted into all three in place of the VAST mount, prepares the
# stand-ins (molecule/cluster/prepare.yml), runs `ansible-playbook -i inventories/lab site.yml`
# and prints the validation summary. A repeated `up` on a converged lab must report 0 changed.
# `lab.sh down` removes the containers and the lab state. See docs/lab.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

LAB_DIR="$CACHE_DIR/lab"
SHARED_DIR="$LAB_DIR/shared"
STATE_DIR="$LAB_DIR/state"
REPORT_DIR="$LAB_DIR/validation"
SHARED_MOUNT=/mnt/kvcache
IMAGE="${GVL_MOLECULE_IMAGE:-$IMAGE_REPO:latest}"
NODES=(lab-gaudi-1 lab-gaudi-2 lab-prefill-1)
LABEL=gaudi-vllm-lmcache.lab=1

usage() {
  echo "usage: $0 up|down" >&2
  exit 2
}

# Name of the container state: running, exited, ... or "absent".
container_state() {
  local out
  if out="$(docker inspect -f '{{.State.Status}}' "$1" 2>/dev/null)"; then
    echo "$out"
  else
    echo absent
  fi
}

is_lab_container() {
  [[ "$(docker inspect -f '{{index .Config.Labels "gaudi-vllm-lmcache.lab"}}' "$1" 2>/dev/null)" == 1 ]]
}

# The container settings of molecule/default/molecule.yml, plus the shared directory.
start_node() {
  local name="$1"
  docker run -d --name "$name" --hostname "$name" --label "$LABEL" \
    --cgroupns=host --cap-add SYS_ADMIN \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    -v "$SHARED_DIR:$SHARED_MOUNT:rw" \
    --tmpfs /run --tmpfs /run/lock \
    --network host \
    "$IMAGE" /lib/systemd/systemd >/dev/null
}

wait_for_systemd() {
  local name="$1" state="" try
  for ((try = 0; try < 60; try++)); do
    state="$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in
      running | degraded) return 0 ;;
    esac
    sleep 1
  done
  die "systemd in $name did not come up (state: ${state:-unknown})"
}

lab_up() {
  local start=$SECONDS created=0 name state
  activate_venv
  cd "$ROOT"
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is missing; run 'make image'"
  mkdir -p "$SHARED_DIR" "$STATE_DIR" "$REPORT_DIR"

  header "lab containers"
  for name in "${NODES[@]}"; do
    state="$(container_state "$name")"
    if [[ "$state" != absent ]] && ! is_lab_container "$name"; then
      die "a container named $name exists and was not created by the lab; remove or rename it"
    fi
    case "$state" in
      running) echo "$name: running, reused" ;;
      absent)
        start_node "$name"
        created=1
        echo "$name: created"
        ;;
      *)
        docker start "$name" >/dev/null
        echo "$name: was $state, started"
        ;;
    esac
  done
  for name in "${NODES[@]}"; do
    wait_for_systemd "$name"
  done
  # New containers are not converged, whatever an earlier lab reported.
  if ((created)); then
    rm -f "$STATE_DIR/converged"
  fi

  export GVL_VALIDATE_REPORT_DIR="$REPORT_DIR"
  export ANSIBLE_CALLBACKS_ENABLED="${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.profile_tasks}"

  header "prepare the stand-ins (molecule/cluster/prepare.yml)"
  ansible-playbook -i inventories/lab molecule/cluster/prepare.yml

  header "ansible-playbook -i inventories/lab site.yml"
  local log="$STATE_DIR/site.log" rc=0
  ansible-playbook -i inventories/lab site.yml 2>&1 | tee "$log" || rc=$?
  if ((rc)); then
    rm -f "$STATE_DIR/converged"
    die "site.yml failed (exit $rc); the log is $log"
  fi

  header "validation summary"
  # The table site.yml's summary play printed (roles/validate tasks_from summary).
  awk '/Print the fleet validation summary/ {found = 1}
       found && /"msg": \[/ {inside = 1; next}
       inside && /^ *\]/ {exit}
       inside {sub(/^ *"/, ""); sub(/",?$/, ""); print}' "$log"

  header "PLAY RECAP"
  local recap changed
  recap="$(sed -n '/^PLAY RECAP/,/^$/p' "$log" | grep -E '^lab-')"
  echo "$recap"
  changed="$(sed -nE 's/.* changed=([0-9]+) .*/\1/p' <<<"$recap" | awk '{s += $1} END {print s + 0}')"
  if [[ -e "$STATE_DIR/converged" ]]; then
    if ((changed == 0)); then
      echo "Repeated run on a converged lab: changed=0 on every node (idempotent)."
    else
      die "repeated run on a converged lab reported $changed change(s); site.yml is not idempotent here"
    fi
  else
    echo "First run on these containers: $changed change(s). Run 'make lab' again to check idempotence."
  fi
  touch "$STATE_DIR/converged"
  echo "Reports: $REPORT_DIR; shared directory: $SHARED_DIR (at $SHARED_MOUNT in the nodes)."
  echo "make lab took $((SECONDS - start))s"
}

lab_down() {
  local name
  header "remove the lab"
  for name in "${NODES[@]}"; do
    if [[ "$(container_state "$name")" == absent ]]; then
      echo "$name: absent"
    elif is_lab_container "$name"; then
      docker rm -f "$name" >/dev/null
      echo "$name: removed"
    else
      echo "$name: not a lab container, left alone" >&2
    fi
  done
  if [[ -d "$LAB_DIR" ]]; then
    # Files the nodes wrote into the shared directory belong to their users: remove them
    # from a container when this user cannot.
    if ! rm -rf "$LAB_DIR" 2>/dev/null; then
      docker run --rm -v "$LAB_DIR:/lab" "$IMAGE" find /lab -mindepth 1 -delete
      rm -rf "$LAB_DIR"
    fi
    echo "$LAB_DIR: removed"
  fi
}

case "${1:-}" in
  up) lab_up ;;
  down) lab_down ;;
  *) usage ;;
esac
