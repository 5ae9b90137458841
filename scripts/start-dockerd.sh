#!/usr/bin/env bash
# Starts a Docker daemon for rustle-cross (Debian's dockerd, no systemd):
# overlay2 storage, no iptables, no default bridge, its own data-root,
# exec-root and socket. Idempotent: a daemon already answering on the socket
# is reused. Installs docker.io if it is missing (as root).
#
# Containers of this daemon use `--network host` (image builds, dependency
# fetches) or `--network none` (compiles); there is no bridge to NAT.
#
# Usage: eval "$(scripts/start-dockerd.sh | tail -n 1)"
#        scripts/start-dockerd.sh --stop
# Environment:
#   RUSTLE_DOCKER_ROOT  where images, containers and volumes live
#                       (default /var/lib/rustle-cross/docker; kept between
#                       runs so built images are reused)
#   RUSTLE_DOCKER_RUN   socket, pid file and log (default /run/rustle-cross/docker)
# The last line printed is `DOCKER_HOST=unix://...`.
set -euo pipefail

log() { printf '[start-dockerd] %s\n' "$*" >&2; }

ROOT=${RUSTLE_DOCKER_ROOT:-/var/lib/rustle-cross/docker}
RUN=${RUSTLE_DOCKER_RUN:-/run/rustle-cross/docker}
SOCK="$RUN/docker.sock"
PIDFILE="$RUN/dockerd.pid"
LOG="$RUN/dockerd.log"
HOST="unix://$SOCK"

answers() { curl -sf --max-time 2 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  exit 0
fi

if answers; then
  log "reusing the daemon at $HOST"
  echo "DOCKER_HOST=$HOST"
  exit 0
fi

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "dockerd is not installed and this is not root; run: apt-get install docker.io"
    exit 1
  fi
  log "installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends -o Acquire::Retries=3 docker.io >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; }
fi
if [ "$(id -u)" != 0 ]; then
  log "dockerd needs root to start; run this script as root (or point DOCKER_HOST at a running daemon, e.g. podman system service)"
  exit 1
fi

mkdir -p "$ROOT/data" "$RUN/exec"
# A stale pid file of a dead daemon would stop the new one from starting.
if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then rm -f "$PIDFILE"; fi
rm -f "$SOCK"
log "starting dockerd (data-root $ROOT/data, socket $SOCK, log $LOG)"
# setsid: the daemon outlives the shell (and test process group) that started it.
setsid dockerd \
  --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
  --data-root "$ROOT/data" --exec-root "$RUN/exec" --pidfile "$PIDFILE" \
  -H "$HOST" >"$LOG" 2>&1 < /dev/null &
for _ in $(seq 1 300); do
  if answers; then
    log "dockerd answers at $HOST"
    echo "DOCKER_HOST=$HOST"
    exit 0
  fi
  sleep 0.1
done
log "dockerd did not answer within 30 s; its log ($LOG) ends with:"
tail -n 20 "$LOG" >&2 || true
exit 1
