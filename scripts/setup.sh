#!/usr/bin/env bash
# Installs, idempotently and with retries, what a Debian 12 machine needs to
# build (and run) the dozen targets rustle-cross supports here. One missing
# package degrades one target, never the whole set-up: the summary at the end
# says what is there and `rustle-cross targets` says what each target lacks.
#
# Usage: scripts/setup.sh [--minimal]
#   --minimal   only the host toolchain pieces (no foreign arches, no wine)
# Env: RUSTLE_TOOLS_DIR (default /opt/rustle-tools) holds the zig venv.
set -uo pipefail

TOOLS_DIR="${RUSTLE_TOOLS_DIR:-/opt/rustle-tools}"
MINIMAL=0
[ "${1:-}" = "--minimal" ] && MINIMAL=1
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*" >&2; }
SUMMARY=()
note() { SUMMARY+=("$*"); }

if [ "$(id -u)" != 0 ]; then
  log "needs root (apt-get, dpkg --add-architecture); run it as root or with sudo"
  exit 1
fi

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

log "apt-get update"
apt_update || log "apt-get update failed; trying with the lists we have"

# Host pieces: Debian's rustc-web (a second toolchain with multiarch std and a
# matching rust-src for build-std), C toolchains, runners.
BASE=(rustc-web cargo-web rust-web-src build-essential pkg-config file
  qemu-user libc6-i386 lib32gcc-s1 python3-venv openssh-client bc)
apt_install "${BASE[@]}" && note "base: ok (rustc-web, rust-web-src, qemu-user)" || note "base: some packages missing"

if [ $MINIMAL = 0 ]; then
  # Cross C compilers and libcs from the main archive (no foreign arch needed).
  declare -A CROSS=(
    [aarch64]="gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    [armhf]="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"
    [i686]="gcc-i686-linux-gnu libc6-dev-i386-cross"
    [ppc64el]="gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross"
    [s390x]="gcc-s390x-linux-gnu libc6-dev-s390x-cross"
    [riscv64]="gcc-riscv64-linux-gnu libc6-dev-riscv64-cross"
    [mingw]="gcc-mingw-w64-x86-64"
    [wine]="wine64"
  )
  for k in "${!CROSS[@]}"; do
    # shellcheck disable=SC2086
    if apt_install ${CROSS[$k]}; then note "$k: ok"; else note "$k: MISSING (${CROSS[$k]})"; fi
  done

  # Prebuilt std for foreign arches (multiarch). A foreign arch whose index
  # cannot be fetched is removed again so later apt runs stay clean; those
  # targets fall back to build-std.
  for arch in arm64 armhf i386 ppc64el; do
    if dpkg-query -W -f='${Status}' "libstd-rust-web-dev:$arch" 2>/dev/null | grep -q 'install ok installed'; then
      note "std:$arch: ok (multiarch)"; continue
    fi
    dpkg --add-architecture "$arch"
    if apt_update && apt_install "libstd-rust-web-dev:$arch"; then
      note "std:$arch: ok (multiarch)"
    else
      log "multiarch std for $arch unavailable; that target uses build-std"
      apt-get remove -y -qq "libstd-rust-web-dev:$arch" "libc6:$arch" >/dev/null 2>&1
      dpkg --remove-architecture "$arch" 2>/dev/null
      note "std:$arch: build-std (multiarch index unavailable)"
    fi
  done
  apt_update >/dev/null 2>&1 || true

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
