#!/usr/bin/env bash
# Shared helpers for the development scripts. Sourced, not executed.
# shellcheck disable=SC2034

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${GVL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gaudi-vllm-lmcache}"
VENV="${GVL_VENV:-$ROOT/.venv}"
# The second virtualenv, with the oldest supported ansible-core (make venv-oldest).
VENV_OLDEST="${GVL_VENV_OLDEST:-$ROOT/.venv-oldest}"
IMAGE_REPO="${GVL_IMAGE_REPO:-gaudi-vllm-lmcache/debian12-systemd}"
mkdir -p "$CACHE_DIR"
export GVL_CACHE_DIR="$CACHE_DIR"

header() {
  printf '\n\033[1m==================== %s ====================\033[0m\n' "$*"
}

die() {
  echo "ERROR: $*" >&2
  exit 1
}

activate_venv() {
  [[ -x "$VENV/bin/python" ]] || die "virtualenv $VENV is missing; run 'make venv'"
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  export ANSIBLE_COLLECTIONS_PATH="$ROOT/.collections"
  # Fewer round trips per task over the docker connection and ssh.
  export ANSIBLE_PIPELINING="${ANSIBLE_PIPELINING:-True}"
  export PY_COLORS="${PY_COLORS:-0}" ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
  link_collection
}

# Make the working tree resolvable as gaudi.vllm_lmcache for ansible, molecule and pytest.
link_collection() {
  local dir="$ROOT/.collections/ansible_collections/gaudi"
  mkdir -p "$dir"
  if [[ "$(readlink "$dir/vllm_lmcache" 2>/dev/null)" != "$ROOT" ]]; then
    ln -sfn "$ROOT" "$dir/vllm_lmcache"
  fi
}

# apt_get_install ARGS...: apt-get update, then apt-get install -y -qq ARGS, holding a lock in
# the cache so that the scripts make test runs side by side (scripts/test.sh) take turns, and
# waiting up to 10 minutes for any other dpkg user.
apt_get_install() {
  (
    flock 9
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@"
  ) 9>"$CACHE_DIR/apt.lock"
}

# kill_tree PID: TERM a process and all its descendants (the children found first, then killed).
kill_tree() {
  local child
  for child in $(pgrep -P "$1" || true); do
    kill_tree "$child"
  done
  kill -TERM "$1" 2>/dev/null || true
}
