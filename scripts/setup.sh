#!/usr/bin/env bash
# Installs, idempotently and with retries, what a Debian 12 machine needs to
# build (and run) the dozen targets rustle-cross supports here. One missing
# package degrades one target, never the whole set-up: the summary at the end
# says what is there and `rustle-cross targets` says what each target lacks.
#
# Which Debian packages each target needs comes from
# scripts/packages/debian.txt, generated from the rules table
# (`rustle-cross targets --packages`) and also read by the Ansible role
# (ansible/roles/rustle_agent): one list, not two copies. This script runs
# before anything is compiled, so it reads the checked-in file.
#
# Usage: scripts/setup.sh [--minimal]
#   --minimal   only the host toolchain pieces (no foreign arches, no wine)
# Env: RUSTLE_TOOLS_DIR (default /opt/rustle-tools) holds the zig venv.
#      RUSTLE_PACKAGES_FILE (default scripts/packages/debian.txt beside this script).
set -uo pipefail

TOOLS_DIR="${RUSTLE_TOOLS_DIR:-/opt/rustle-tools}"
MINIMAL=0
[ "${1:-}" = "--minimal" ] && MINIMAL=1
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*" >&2; }
SUMMARY=()
note() { SUMMARY+=("$*"); }

retry() { # retry N cmd...
  local n=$1; shift; local i
  for ((i = 1; i <= n; i++)); do
    "$@" && return 0
    log "attempt $i/$n failed: $*"; sleep $((i * 3))
  done
  return 1
}

apt_update() { retry 3 apt-get update -qq -o Acquire::Retries=3; }

# Installs packages, falling back to one at a time so one unavailable package
# only loses itself.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if retry 2 apt-get install -y -qq --no-install-recommends -o Acquire::Retries=3 "${missing[@]}" >/dev/null; then
    return 0
  fi
  local failed=0
  for p in "${missing[@]}"; do
    if ! apt-get install -y -qq --no-install-recommends -o Acquire::Retries=3 "$p" >/dev/null 2>&1; then
      log "could not install $p"; failed=1
    fi
  done
  return $failed
}

# The packages file: `build-host PACKAGE...`, then `TRIPLE PACKAGE...` per
# target; PACKAGE:ARCH is a multiarch package of a foreign architecture.
PACKAGES_FILE="${RUSTLE_PACKAGES_FILE:-$(cd "$(dirname "$0")" && pwd)/packages/debian.txt}"
if [ ! -r "$PACKAGES_FILE" ]; then
  log "ERROR: the packages list $PACKAGES_FILE is missing or unreadable;"
  log "restore it from git, or regenerate it: rustle-cross targets --packages > scripts/packages/debian.txt"
  exit 1
fi
BUILD_HOST=()
C_LIBRARIES=()
TARGET_NAMES=()
declare -A TARGET_PACKAGES=()
MULTIARCH=()
while read -r name rest; do
  case "$name" in '' | '#'*) continue ;; esac
  if [ "$name" = build-host ]; then
    read -r -a BUILD_HOST <<<"$rest"
    continue
  fi
  if [ "$name" = c-libraries ]; then
    read -r -a C_LIBRARIES <<<"$rest"
    continue
  fi
  TARGET_NAMES+=("$name")
  plain=()
  for p in $rest; do
    case "$p" in
      *:*) [[ " ${MULTIARCH[*]} " == *" $p "* ]] || MULTIARCH+=("$p") ;;
      *) plain+=("$p") ;;
    esac
  done
  TARGET_PACKAGES[$name]="${plain[*]}"
done <"$PACKAGES_FILE"
target_package_count=0
for t in "${TARGET_NAMES[@]}"; do
  [ -n "${TARGET_PACKAGES[$t]}" ] && target_package_count=$((target_package_count + 1))
done
# Packages already installed here would hide a broken parse: refuse loudly.
if [ ${#BUILD_HOST[@]} -eq 0 ] || [ $target_package_count -eq 0 ] || [ ${#MULTIARCH[@]} -eq 0 ]; then
  log "ERROR: $PACKAGES_FILE parsed to nothing usable (build-host packages: ${#BUILD_HOST[@]},"
  log "targets with packages: $target_package_count, multiarch packages: ${#MULTIARCH[@]});"
  log "regenerate it: rustle-cross targets --packages > scripts/packages/debian.txt"
  exit 1
fi

if [ "$(id -u)" != 0 ]; then
  log "needs root (apt-get, dpkg --add-architecture); run it as root or with sudo"
  exit 1
fi

log "apt-get update"
apt_update || log "apt-get update failed; trying with the lists we have"

# Host pieces: Debian's rustc-web (a second toolchain with multiarch std and a
# matching rust-src for build-std) and a C toolchain (the packages file's
# build-host line), plus what this project's runs and tests use here
# (zlib1g-dev: the library check's tests link libz dynamically).
BASE=("${BUILD_HOST[@]}" file qemu-user libc6-i386 lib32gcc-s1 python3-venv openssh-client bc zlib1g-dev)
apt_install "${BASE[@]}" && note "base: ok (${BUILD_HOST[*]}, qemu-user)" || note "base: some packages missing"
# The shared binary cache's test stores (scripts/start-cache-stores.sh runs
# private instances; Debian's own services are not used).
STORES=(redis-server redis-tools apache2)
apt_install "${STORES[@]}" && note "cache stores: ok (${STORES[*]})" || note "cache stores: MISSING (${STORES[*]})"
# Docker build environments: Debian's engine (scripts/start-dockerd.sh runs
# a private daemon) and debootstrap for the base image without a registry.
DOCKER=(docker.io debootstrap curl)
apt_install "${DOCKER[@]}" && note "docker: ok (${DOCKER[*]})" || note "docker: MISSING (${DOCKER[*]})"

# The fault suite (scripts/faults.sh): network namespaces and tc netem
# (iproute2; iptables for random loss where the kernel has no netem),
# expired certificates issued in the past (faketime), a
# self-signed certificate (openssl); cargo-fuzz for the protocol's fuzz
# target, run on rustup's nightly toolchain.
FAULTS=(iproute2 iptables faketime openssl)
apt_install "${FAULTS[@]}" && note "fault suite: ok (${FAULTS[*]})" || note "fault suite: MISSING (${FAULTS[*]})"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
if [ -x "$CARGO_BIN/cargo-fuzz" ]; then
  note "cargo-fuzz: ok ($("$CARGO_BIN/cargo-fuzz" --version 2>/dev/null))"
elif [ -x "$CARGO_BIN/cargo" ] && retry 2 "$CARGO_BIN/cargo" install --locked -q cargo-fuzz; then
  note "cargo-fuzz: ok (installed)"
else
  note "cargo-fuzz: MISSING (cargo install --locked cargo-fuzz failed); the fault suite's R3 fails"
fi
if [ -x "$CARGO_BIN/rustup" ] && "$CARGO_BIN/rustup" run nightly rustc --version >/dev/null 2>&1; then
  note "nightly toolchain: ok (cargo fuzz)"
else
  note "nightly toolchain: MISSING (rustup toolchain install nightly); the fault suite's R3 fails"
fi

if [ $MINIMAL = 0 ]; then
  # Cross C compilers, libcs and runners from the main archive (no foreign
  # arch needed), per target; one target's missing package loses only it.
  for t in "${TARGET_NAMES[@]}"; do
    [ -n "${TARGET_PACKAGES[$t]}" ] || continue
    # shellcheck disable=SC2086
    if apt_install ${TARGET_PACKAGES[$t]}; then note "$t: ok"; else note "$t: MISSING (${TARGET_PACKAGES[$t]})"; fi
  done

  # Prebuilt std for foreign arches (multiarch). A foreign arch whose index
  # cannot be fetched is removed again so later apt runs stay clean; those
  # targets fall back to build-std.
  for entry in "${MULTIARCH[@]}"; do
    arch=${entry##*:}
    if dpkg-query -W -f='${Status}' "$entry" 2>/dev/null | grep -q 'install ok installed'; then
      note "std:$arch: ok (multiarch)"; continue
    fi
    dpkg --add-architecture "$arch"
    if apt_update && apt_install "$entry"; then
      note "std:$arch: ok (multiarch)"
    else
      log "multiarch $entry unavailable; that target uses build-std"
      apt-get remove -y -qq "$entry" "libc6:$arch" >/dev/null 2>&1
      dpkg --remove-architecture "$arch" 2>/dev/null
      note "std:$arch: build-std (multiarch index unavailable)"
    fi
  done
  apt_update >/dev/null 2>&1 || true

  # The C libraries rustle-deploy's runners link (OpenSSL), for the host and
  # each foreign architecture enabled above: the -sys crates link them
  # statically for those targets. One that cannot be had loses only itself
  # (`rustle-cross targets --template DIR` then names it).
  for lib in "${C_LIBRARIES[@]}"; do
    if apt_install "$lib"; then note "c-library $lib: ok"; else note "c-library $lib: MISSING"; fi
    for arch in $(dpkg --print-foreign-architectures); do
      if dpkg-query -W -f='${Status}' "$lib:$arch" 2>/dev/null | grep -q 'install ok installed' || apt_install "$lib:$arch"; then
        note "c-library $lib:$arch: ok"
      else
        note "c-library $lib:$arch: MISSING"
      fi
    done
  done

  # zig + cargo-zigbuild for musl, macOS and glibc-floor targets.
  if [ ! -x "$TOOLS_DIR/venv/bin/cargo-zigbuild" ] || [ ! -x "$TOOLS_DIR/venv/bin/python-zig" ] 2>/dev/null; then
    python3 -m venv "$TOOLS_DIR/venv" 2>/dev/null
    retry 3 "$TOOLS_DIR/venv/bin/pip" install -q 'ziglang==0.17.*' 'cargo-zigbuild==0.24.*' || true
  fi
  if [ -x "$TOOLS_DIR/venv/bin/cargo-zigbuild" ]; then
    # zig as a command: ziglang ships the binary inside the package.
    zigbin=$(find "$TOOLS_DIR/venv" -path '*ziglang/zig' -type f | head -n1)
    if [ -n "$zigbin" ]; then
      ln -sf "$zigbin" /usr/local/bin/zig
      ln -sf "$TOOLS_DIR/venv/bin/cargo-zigbuild" /usr/local/bin/cargo-zigbuild
      note "zig: ok ($(/usr/local/bin/zig version))"
    else
      note "zig: MISSING (ziglang wheel has no zig binary)"
    fi
  else
    note "zig: MISSING (pip install ziglang cargo-zigbuild failed)"
  fi
fi

log "summary:"
for s in "${SUMMARY[@]}"; do printf '  %s\n' "$s" >&2; done
exit 0
