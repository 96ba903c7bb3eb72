#!/usr/bin/env bash
# Make this machine ready for the workbench: the package, a Docker engine, the base image.
# Idempotent: each step is skipped when already done. Safe to run as a normal user (steps that
# need root are skipped with a note, and stages then run as local processes).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

PYTHON=${PYTHON:-python3}
# Install when missing, or when the installed package is another checkout's.
# The cluster extra (Dask) comes too: `--runner cluster` and its tests need it, and it is small.
installed=$(cd / && "$PYTHON" -c 'import workbench, duckdb, textual, lightgbm, distributed; print(workbench.__file__)' 2>/dev/null || true)
if [ "$installed" != "$PWD/workbench/__init__.py" ] || ! command -v workbench >/dev/null || ! command -v dask >/dev/null; then
  log "installing the workbench package and its dependencies (with the cluster extra)"
  "$PYTHON" -m pip install -q -e '.[cluster]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || true
fi

APT_UPDATED=
dockerd_alive() {
  if command -v pgrep >/dev/null; then pgrep -x dockerd >/dev/null; return; fi
  [ -r /var/run/docker.pid ] && [ -d "/proc/$(cat /var/run/docker.pid)" ]
}
start_dockerd() {
  as_root rm -f /var/run/docker.pid /var/run/docker.sock || true
  as_root sh -c "nohup dockerd $* >/var/log/dockerd.log 2>&1 &" || true
}
wait_for_engine() {  # up to $1 seconds; gives up early if the engine process is gone
  for _ in $(seq "$1"); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
    dockerd_alive || docker info >/dev/null 2>&1 || return 1
  done
  return 1
}
apt_install() {
  command -v apt-get >/dev/null || return 1
  [ -n "$APT_UPDATED" ] || { as_root apt-get update -qq && APT_UPDATED=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ "${WORKBENCH_SKIP_DOCKER:-}" != 1 ]; then
  if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null; then
      log "installing the Docker engine (docker.io)"
      apt_install docker.io || log "could not install Docker: stages will run as local processes"
    fi
    # A socket or pid file can outlive its engine (a machine image taken while dockerd ran):
    # decide on whether a dockerd process is alive, never on whether the socket file exists.
    if command -v dockerd >/dev/null && ! dockerd_alive; then
      log "starting dockerd"
      start_dockerd
      if ! wait_for_engine 90 && ! dockerd_alive; then
        # Some sandboxes refuse the engine its iptables rules; stages need no NAT by default
        # (network = false), so an engine without it is far better than none.
        log "dockerd exited; starting it again without iptables (stages with network = true get no NAT)"
        as_root cp /var/log/dockerd.log /var/log/dockerd.first.log || true
        start_dockerd --iptables=false --ip-masq=false
      fi
    fi
    wait_for_engine 90 || true
    if ! docker info >/dev/null 2>&1 && [ -r /var/log/dockerd.log ]; then
      log "dockerd did not come up; the end of /var/log/dockerd.log:"
      tail -n 15 /var/log/dockerd.log >&2 || true
    fi
  fi
  if docker info >/dev/null 2>&1; then
    base=${WORKBENCH_BASE_IMAGE:-python:3.11-slim}
    if ! docker image inspect "$base" >/dev/null 2>&1 \
       && ! docker image inspect workbench/python-base:bookworm >/dev/null 2>&1 \
       && ! docker pull -q "$base" >/dev/null 2>&1; then
      log "no registry reachable for $base: building the offline base image"
      command -v debootstrap >/dev/null || apt_install debootstrap
      as_root workbench env bootstrap
    fi
    log "Docker engine ready ($(docker info --format '{{.ServerVersion}}'))"
  else
    log "no Docker engine: stages will run as local processes (--runner local)"
  fi
fi

# A team's shared MLflow server on Postgres (docs/models.md, "Team setup"): its tests
# (tests/test_team_mlflow.py) start their own cluster and `mlflow server`, and need Debian's
# postgresql and psycopg 3. Off by default: WORKBENCH_SETUP_POSTGRES=1 installs them.
if [ "${WORKBENCH_SETUP_POSTGRES:-}" = 1 ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing PostgreSQL (postgresql)"
    apt_install postgresql || log "could not install postgresql: the team MLflow tests will skip"
  fi
  if ! "$PYTHON" -c 'import psycopg' >/dev/null 2>&1; then
    log "installing psycopg 3"
    "$PYTHON" -m pip install -q -e ".[team]" 2>&1 | grep -v -e '^WARNING: Running pip as' || true
  fi
fi
