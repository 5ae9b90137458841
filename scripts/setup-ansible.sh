#!/usr/bin/env bash
# Creates (idempotently) a Python venv with ansible-core and ansible-lint, so
# tests can gather real facts from this machine (`ansible localhost -m setup
# -c local`), converge the agent role (ansible/) over SSH and lint it. As
# root it also installs what the role's tests need from Debian:
# `systemd-analyze` (package systemd, to verify units offline; no systemd
# runs here) and python3-apt (the role's apt tasks on this host).
#
# Usage: scripts/setup-ansible.sh
# Env:   RUSTLE_TOOLS_DIR (default /opt/rustle-tools); the venv is
#        $RUSTLE_TOOLS_DIR/ansible-venv. Prints the path of its `ansible`
#        (ansible-playbook and ansible-lint are beside it).
set -euo pipefail

TOOLS_DIR="${RUSTLE_TOOLS_DIR:-/opt/rustle-tools}"
VENV="$TOOLS_DIR/ansible-venv"
log() { printf '[setup-ansible] %s\n' "$*" >&2; }

mkdir -p "$TOOLS_DIR"
exec 9>"$TOOLS_DIR/.ansible-venv.lock"
flock 9

# Debian packages the role's tests use on this host (only as root; each is
# installed only when missing, so a second run changes nothing).
if [ "$(id -u)" = 0 ]; then
  missing=()
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  /usr/bin/python3 -c 'import apt' >/dev/null 2>&1 || missing+=(python3-apt)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -qq -o Acquire::Retries=3 >/dev/null 2>&1 || true
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || log "could not install ${missing[*]}"
    }
  fi
fi

LINT_SPEC='ansible-lint>=25.1,<27'
if [ -x "$VENV/bin/ansible" ] && "$VENV/bin/ansible" --version >/dev/null 2>&1; then
  if [ ! -x "$VENV/bin/ansible-lint" ]; then
    log "adding ansible-lint to $VENV"
    for attempt in 1 2 3; do
      "$VENV/bin/pip" install -q --disable-pip-version-check "$LINT_SPEC" 'ansible-core>=2.16,<2.21' && break
      log "pip install ansible-lint failed (attempt $attempt/3)"
      [ $attempt = 3 ] && exit 1
      sleep $((attempt * 3))
    done
  fi
  echo "$VENV/bin/ansible"
  exit 0
fi

PYTHON=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    PYTHON=$candidate
    break
  fi
done
if [ -z "$PYTHON" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 || {
      apt-get update -qq -o Acquire::Retries=3 >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    }
    PYTHON=/usr/bin/python3
  else
    log "no python3 with venv; install python3-venv"
    exit 1
  fi
fi

log "creating $VENV with $PYTHON"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
for attempt in 1 2 3; do
  if "$VENV/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.16,<2.21' "$LINT_SPEC"; then
    break
  fi
  log "pip install failed (attempt $attempt/3)"
  [ $attempt = 3 ] && exit 1
  sleep $((attempt * 3))
done
"$VENV/bin/ansible" --version >/dev/null
"$VENV/bin/ansible-lint" --version >/dev/null
echo "$VENV/bin/ansible"
