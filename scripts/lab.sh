#!/usr/bin/env bash
# The local lab: `lab.sh up` creates (or reuses) four systemd containers - lab-gaudi-1 and
# lab-gaudi-2 (gaudi_nodes, STAND-IN hardware and serving stack) and lab-prefill-1 and
# lab-prefill-2 (prefill_nodes, REAL CPU serving: vLLM's CPU build, LMCache, a tiny model) -
# with one host directory bind-mounted into all four in place of the VAST mount, builds the CPU
# nodes' wheelhouse and model once on this machine (molecule/serving_cpu/prepare.yml, mounted
# read-only into those two), prepares the stand-ins (molecule/cluster/prepare.yml), runs
# `ansible-playbook -i inventories/lab site.yml` and prints the validation summary. The containers are started by molecule/shared/create.yml
# with the settings of molecule/shared/vars/platform.yml, as in the Molecule scenarios. On new
# containers site.yml runs twice: the first converge, then a re-converge that must report
# 0 changed; both wall times and their ratio are printed. On a converged lab it runs once
# and that run must report 0 changed. `lab.sh down` removes the containers and the lab
# state. See docs/lab.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

LAB_DIR="$CACHE_DIR/lab"
SHARED_DIR="$LAB_DIR/shared"
STATE_DIR="$LAB_DIR/state"
REPORT_DIR="$LAB_DIR/validation"
SHARED_MOUNT=/mnt/kvcache
IMAGE="${GVL_MOLECULE_IMAGE:-$IMAGE_REPO:latest}"
NODES=(lab-gaudi-1 lab-gaudi-2 lab-prefill-1 lab-prefill-2)
# The real CPU serving nodes (inventories/lab group lab_cpu_nodes): they also mount the
# serving-cpu cache (wheelhouse and model) read-only and get a larger /dev/shm for vLLM.
CPU_NODES=(lab-prefill-1 lab-prefill-2)
SERVING_DIR="$CACHE_DIR/serving-cpu"
SERVING_MOUNT=/opt/gvl-serving
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

is_cpu_node() {
  local n
  for n in "${CPU_NODES[@]}"; do
    [[ "$n" == "$1" ]] && return 0
  done
  return 1
}

# Whether container $1 has a bind mount at $2 (a lab from before the CPU nodes has none).
has_mount() {
  docker inspect -f '{{range .Mounts}}{{println .Destination}}{{end}}' "$1" 2>/dev/null | grep -qxF "$2"
}

is_lab_container() {
  [[ "$(docker inspect -f '{{index .Config.Labels "gaudi-vllm-lmcache.lab"}}' "$1" 2>/dev/null)" == 1 ]]
}

# Start (or reuse) the nodes with the shared platform definition of the Molecule scenarios,
# plus the shared directory and the lab label; waits for systemd in each.
start_nodes() {
  local platforms="$STATE_DIR/platforms.json" name sep="" cpu
  {
    printf '{"gvl_platform_labels": {}, "gvl_platforms": ['
    for name in "${NODES[@]}"; do
      cpu=""
      if is_cpu_node "$name"; then
        cpu="$(printf ', "%s:%s:ro"], "shm_size": "1g"' "$SERVING_DIR" "$SERVING_MOUNT")"
      else
        cpu="]"
      fi
      printf '%s{"name": "%s", "image": "%s", "volumes": ["%s:%s:rw"%s, "labels": {"%s": "%s"}}' \
        "$sep" "$name" "$IMAGE" "$SHARED_DIR" "$SHARED_MOUNT" "$cpu" "${LABEL%%=*}" "${LABEL#*=}"
      sep=", "
    done
    printf ']}\n'
  } >"$platforms"
  ansible-playbook -i localhost, molecule/shared/create.yml -e "@$platforms" >"$STATE_DIR/create.log" 2>&1 \
    || { tail -n 40 "$STATE_DIR/create.log" >&2; die "starting the lab containers failed; the log is $STATE_DIR/create.log"; }
}

# Run site.yml once; sets SITE_SECONDS and SITE_CHANGED (sum of changed= over the lab nodes).
run_site() {
  local log="$1" rc=0 started=$SECONDS recap
  ansible-playbook -i inventories/lab site.yml 2>&1 | tee "$log" || rc=$?
  SITE_SECONDS=$((SECONDS - started))
  if ((rc)); then
    rm -f "$STATE_DIR/converged"
    die "site.yml failed (exit $rc); the log is $log"
  fi
  recap="$(sed -n '/^PLAY RECAP/,/^$/p' "$log" | grep -E '^lab-' || true)"
  [[ -n "$recap" ]] || die "no PLAY RECAP for the lab nodes in $log"
  SITE_RECAP="$recap"
  SITE_CHANGED="$(sed -nE 's/.* changed=([0-9]+) .*/\1/p' <<<"$recap" | awk '{s += $1} END {print s + 0}')"
}

lab_up() {
  local start=$SECONDS created=0 name state
  activate_venv
  cd "$ROOT"
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is missing; run 'make image'"
  mkdir -p "$SHARED_DIR" "$STATE_DIR" "$REPORT_DIR" "$SERVING_DIR"

  # Before the containers: they mount it. Downloads the wheelhouse once (about 1 GB), then
  # reuses it; the model is rebuilt only when its recipe changes.
  header "real CPU nodes: wheelhouse and model (molecule/serving_cpu/prepare.yml, on this machine)"
  ansible-playbook -i localhost, molecule/serving_cpu/prepare.yml --limit localhost

  header "lab containers"
  for name in "${NODES[@]}"; do
    state="$(container_state "$name")"
    if [[ "$state" != absent ]] && ! is_lab_container "$name"; then
      die "a container named $name exists and was not created by the lab; remove or rename it"
    fi
    if [[ "$state" != absent ]] && is_cpu_node "$name" && ! has_mount "$name" "$SERVING_MOUNT"; then
      echo "$name: has no $SERVING_MOUNT mount (a lab from before the CPU nodes), to be created again"
      docker rm -f "$name" >/dev/null
      state=absent
    fi
    case "$state" in
      running) echo "$name: running, reused" ;;
      absent)
        created=1
        echo "$name: to be created"
        ;;
      *) echo "$name: was $state, to be started" ;;
    esac
  done
  start_nodes
  echo "systemd is up in ${NODES[*]}"
  # New containers are not converged, whatever an earlier lab reported.
  if ((created)); then
    rm -f "$STATE_DIR/converged"
  fi

  export GVL_VALIDATE_REPORT_DIR="$REPORT_DIR"
  export ANSIBLE_CALLBACKS_ENABLED="${ANSIBLE_CALLBACKS_ENABLED:-ansible.posix.profile_tasks}"

  header "prepare the stand-ins (molecule/cluster/prepare.yml)"
  ansible-playbook -i inventories/lab molecule/cluster/prepare.yml

  local first_s="" again_s log="$STATE_DIR/site.log"
  if [[ ! -e "$STATE_DIR/converged" ]]; then
    header "first converge: ansible-playbook -i inventories/lab site.yml"
    run_site "$STATE_DIR/site-first.log"
    first_s=$SITE_SECONDS
    echo "$first_s" >"$STATE_DIR/first-converge-seconds"
    echo "First converge: $SITE_CHANGED change(s) in ${first_s}s"
  fi
  header "re-converge: ansible-playbook -i inventories/lab site.yml"
  run_site "$log"
  again_s=$SITE_SECONDS

  header "validation summary"
  # The table site.yml's summary play printed (roles/validate tasks_from summary).
  awk '/Print the fleet validation summary/ {found = 1}
       found && /"msg": \[/ {inside = 1; next}
       inside && /^ *\]/ {exit}
       inside {sub(/^ *"/, ""); sub(/",?$/, ""); print}' "$log"

  header "PLAY RECAP (re-converge)"
  echo "$SITE_RECAP"
  if ((SITE_CHANGED != 0)); then
    die "the re-converge on a converged lab reported $SITE_CHANGED change(s); site.yml is not idempotent here"
  fi
  touch "$STATE_DIR/converged"
  [[ -n "$first_s" ]] || first_s="$(cat "$STATE_DIR/first-converge-seconds" 2>/dev/null || true)"

  header "converge times"
  if [[ -n "$first_s" ]]; then
    echo "first converge: ${first_s}s"
    echo "re-converge:    ${again_s}s, changed=0 on every node (idempotent)"
    awk -v a="$first_s" -v b="$again_s" 'BEGIN {printf "ratio re-converge/first converge: %.2f (target: at most 0.25)\n", (a > 0 ? b / a : 0)}'
  else
    echo "re-converge:    ${again_s}s, changed=0 on every node (idempotent)"
  fi
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
