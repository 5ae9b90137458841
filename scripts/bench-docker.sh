#!/usr/bin/env bash
# Benchmark: Docker builds against this machine's toolchains, same target,
# same template, same run. Starts the project's dockerd
# (scripts/start-dockerd.sh), builds the images if they are missing, warms
# both sides, then times RUNS no-op builds and RUNS one-line changes per
# target, alternating which side goes first. Times are the wall time of the
# whole `rustle-cross build --no-cache` (container start and removal
# included). Bars (issue 9): a Docker no-op at most 1.0 s more than the
# local no-op; a Docker one-line change at most 1.3x the local one.
#
# Usage: scripts/bench-docker.sh [TARGET ...]
#   default targets: x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu.
#   BENCH_DIR (default $TMPDIR/rustle-cross-bench-docker) holds the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench-docker}")"
RUNS=${RUNS:-3}

cargo build --release -q -p rustle-cross
RC="${CARGO_TARGET_DIR:-$PWD/target}/release/rustle-cross"
eval "$(scripts/start-dockerd.sh | tail -n 1)"
export DOCKER_HOST
export RUSTLE_TARGET_CACHE_DIR="$BENCH_DIR/cache"

mkdir -p "$BENCH_DIR"
rm -rf "$BENCH_DIR/template"
cp -r examples/hello-template "$BENCH_DIR/template"
rm -rf "$BENCH_DIR/template/target"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
fmt() { printf '%.2f' "$1"; }

"$RC" images build >/dev/null 2>"$BENCH_DIR/images.err" || { cat "$BENCH_DIR/images.err" >&2; exit 1; }
build() { # build EXECUTOR TARGET
  "$RC" build "$BENCH_DIR/template" --executor "$1" --no-cache -q -t "$2" --out "$BENCH_DIR/out-$1"
}
change=0
bump() {
  change=$((change + 1))
  sed -i "s#^    let runtime = tokio.*#    let runtime = tokio::runtime::Builder::new_multi_thread() // bench $change#" "$BENCH_DIR/template/src/main.rs"
}

echo "| target | no-op: local | no-op: docker | docker - local | one-line change: local | one-line change: docker | docker / local |"
echo "|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  bump
  build local "$t" >/dev/null 2>&1 || { echo "$t: local build failed" >&2; exit 1; }
  build docker "$t" >/dev/null 2>&1 || { echo "$t: docker build failed" >&2; exit 1; }
  noop_l=() noop_d=() line_l=() line_d=()
  for i in $(seq "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then
      noop_l+=("$(elapsed build local "$t")"); noop_d+=("$(elapsed build docker "$t")")
    else
      noop_d+=("$(elapsed build docker "$t")"); noop_l+=("$(elapsed build local "$t")")
    fi
  done
  for i in $(seq "$RUNS"); do
    bump
    if [ $((i % 2)) = 1 ]; then
      line_l+=("$(elapsed build local "$t")"); line_d+=("$(elapsed build docker "$t")")
    else
      line_d+=("$(elapsed build docker "$t")"); line_l+=("$(elapsed build local "$t")")
    fi
  done
  nl=$(median "${noop_l[@]}") nd=$(median "${noop_d[@]}") ll=$(median "${line_l[@]}") ld=$(median "${line_d[@]}")
  echo "| $t | $(fmt "$nl") s | $(fmt "$nd") s | +$(fmt "$(echo "$nd - $nl" | bc -l)") s | $(fmt "$ll") s | $(fmt "$ld") s | $(fmt "$(echo "$ld / $ll" | bc -l)")x |"
done
