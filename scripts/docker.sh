#!/usr/bin/env bash
# Ensure a Docker engine answers. Installs docker.io when dockerd is missing and starts it
# without a private-range bridge (containers use the host network). A running engine is left alone.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

if docker info >/dev/null 2>&1; then
  echo "Docker engine already running"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "Installing the Docker engine (docker.io)"
  apt_get_install docker.io >/dev/null
fi

log="$CACHE_DIR/dockerd.log"
echo "Starting dockerd (--bridge=none, log: $log)"
# setsid: the engine must outlive this script and the make process.
setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 < /dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "Docker engine is up: $(docker version --format '{{.Server.Version}}')"
    exit 0
  fi
  sleep 1
done
tail -20 "$log" >&2
die "dockerd did not answer within 60 s"
