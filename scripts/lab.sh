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
# and that run must report 0 changed. Before the re-converge playbooks/observability.yml puts
# Prometheus on the monitoring host (lab-gaudi-1); after it, the recorded LMCache hit rate of
# the real CPU nodes must come back from Prometheus. `lab.sh down` removes the containers and
# the lab state. See docs/lab.md.
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
  echo "usage: $0 up|rolling|down" >&2
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

# Prometheus on the monitoring host (inventories/lab group monitoring), before the re-converge,
# so the validation's requests of the re-converge land in its samples.
PROM_URL=http://127.0.0.1:19090
prometheus_up() {
  header "Prometheus: ansible-playbook -i inventories/lab playbooks/observability.yml (monitoring host)"
  # The node exporter on the monitoring host only: the containers share one network.
  ansible-playbook -i inventories/lab playbooks/observability.yml -e observability_server_hosts=monitoring \
    --limit monitoring >"$STATE_DIR/observability.log" 2>&1 ||
    { tail -n 40 "$STATE_DIR/observability.log" >&2; die "playbooks/observability.yml failed; the log is $STATE_DIR/observability.log"; }
  sed -n '/^PLAY RECAP/,/^$/p' "$STATE_DIR/observability.log"
}

# Query the recorded per-node LMCache hit rate until every real CPU node has a value (the
# rules need two samples around the re-converge's validation requests), at most $1 seconds.
prometheus_hit_rate() {
  local wait="$1"
  header "Prometheus: recorded LMCache hit rate (node:lmcache_hit_rate:ratio_rate5m)"
  python3 - "$PROM_URL" "$wait" "${CPU_NODES[@]}" <<'PY'
import json, sys, time, urllib.parse, urllib.request

url, wait, nodes = sys.argv[1], float(sys.argv[2]), sys.argv[3:]


def query(expr):
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen("%s/api/v1/query?%s" % (url, q), timeout=10) as resp:
        body = json.load(resp)
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def by_node(expr):
    return {m.get("node", "fleet"): v for m, v in query(expr)}


deadline = time.monotonic() + wait
rates, error = {}, None
while True:
    try:
        rates, error = by_node("node:lmcache_hit_rate:ratio_rate5m"), None
    except Exception as exc:  # not up yet
        error = exc
    if all(n in rates for n in nodes) or time.monotonic() > deadline:
        break
    time.sleep(5)
if error is not None:
    sys.exit("Prometheus at %s did not answer: %s" % (url, error))
up = query("up")
fleet = by_node("fleet:lmcache_hit_rate:ratio_rate5m").get("fleet")
external = by_node("node:vllm_external_prefix_cache_hit_rate:ratio_rate5m")
print("%-16s %-14s %s" % ("NODE", "LMCACHE HIT", "VLLM EXTERNAL HIT"))
for node in sorted(set(rates) | set(nodes)):
    print("%-16s %-14s %s" % (node, "%.3f" % rates[node] if node in rates else "-",
                              "%.3f" % external[node] if node in external else "-"))
print("fleet hit rate: %s; targets up: %d of %d" % ("-" if fleet is None else "%.3f" % fleet,
                                                  sum(1 for m, v in up if v == 1), len(up)))
missing = [n for n in nodes if n not in rates]
if missing:
    sys.exit("no recorded hit rate for %s within %.0fs" % (", ".join(missing), wait))
PY
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
  prometheus_up
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
  prometheus_hit_rate 120
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

# One roll of site.yml's serving play, one node at a time, with lab_rollout=$1 (a change of every
# instance's environment file, so every instance restarts: drained, restarted, waited for,
# then gated on the serving tier); the restart steps go to the timeline rolling-check.py reads.
roll() {
  local value="$1" log="$STATE_DIR/rolling-$1.log" rc=0
  header "rolling change lab_rollout=$value: site.yml --tags vllm,lmcache -e site_serial=1"
  ansible-playbook -i inventories/lab site.yml --tags vllm,lmcache -e site_serial=1 \
    -e "lab_rollout=$value" -e "vllm_restart_timeline_dir=$STATE_DIR/timeline" >"$log" 2>&1 || rc=$?
  sed -n '/^PLAY RECAP/,/^$/p' "$log"
  ((rc == 0)) || { tail -n 40 "$log" >&2; return "$rc"; }
}

# `lab.sh rolling` on a converged lab: a request loop against every node's endpoint
# (scripts/rolling-check.py, loopback; one request per node and second, so the loop itself
# does not starve a restarting CPU node of its two cores) while a configuration change rolls through the lab one
# node at a time and then rolls back; the loop's verdict: at every moment a node answered
# (longest gap at most 30 s), no request failed on a node outside its restart window, every
# node restarted, no two restarts overlapped.
lab_rolling() {
  local name endpoints=() port rc=0 loop_pid stop="$STATE_DIR/rolling.stop" out="$STATE_DIR/rolling.json"
  activate_venv
  cd "$ROOT"
  [[ -e "$STATE_DIR/converged" ]] || die "the lab is not converged; run 'make lab' first"
  for name in "${NODES[@]}"; do
    [[ "$(container_state "$name")" == running ]] || die "$name is not running; run 'make lab' first"
    port="$(sed -nE 's/^lab_vllm_port: *([0-9]+).*/\1/p' "inventories/lab/host_vars/$name.yml")"
    endpoints+=(--endpoint "$name=http://127.0.0.1:$port")
  done
  rm -rf "$STATE_DIR/timeline" "$stop" "$out" "$STATE_DIR/rolling.ready"
  mkdir -p "$STATE_DIR/timeline"
  header "request loop: scripts/rolling-check.py against ${NODES[*]}"
  python3 scripts/rolling-check.py "${endpoints[@]}" --timeline-dir "$STATE_DIR/timeline" \
    --stop-file "$stop" --ready-file "$STATE_DIR/rolling.ready" --duration 7200 --timeout 60 --interval 1 \
    --max-gap 30 --slack 2 --expect-restarts "${#NODES[@]}" --expect-serial --out "$out" \
    >"$STATE_DIR/rolling-check.log" 2>&1 &
  loop_pid=$!
  for _ in $(seq 1 120); do
    [[ -e "$STATE_DIR/rolling.ready" ]] && break
    kill -0 "$loop_pid" 2>/dev/null || break
    sleep 1
  done
  [[ -e "$STATE_DIR/rolling.ready" ]] || { cat "$STATE_DIR/rolling-check.log" >&2; die "the request loop did not start"; }
  local started=$SECONDS
  roll 1 && roll 0 || rc=$?
  touch "$stop"
  wait "$loop_pid" || rc=$((rc ? rc : $?))
  header "rolling check verdict ($((SECONDS - started))s of rolling)"
  cat "$STATE_DIR/rolling-check.log"
  ((rc == 0)) || die "the rolling change failed (exit $rc); logs: $STATE_DIR/rolling-*.log"
  echo "Verdict: $out; restart timeline: $STATE_DIR/timeline"
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
  rolling) lab_rolling ;;
  down) lab_down ;;
  *) usage ;;
esac
