#!/usr/bin/env bash
# Benchmark: cold, no-op and one-line-change build times per target (with
# --no-cache: what driving cargo costs; scripts/bench-cache.sh measures the
# binary cache), for
# `rustle-cross build` and for plain cargo running the very same command
# (`rustle-cross build --print-command`) in its own target dir, in the same
# run on the same machine. Prints a Markdown table for the README.
#
# Usage: scripts/bench.sh [TARGET ...]
#   default targets: one per route (host, multiarch std + gcc, build-std +
#   mingw, zig). BENCH_TEMPLATE (default examples/hello-template; e.g.
#   examples/runner-template, rustle-deploy's runner shape with reqwest's
#   OpenSSL) is the template measured; RUNS (default 3) the no-op and
#   one-line-change runs per side. BENCH_DIR (default
#   $TMPDIR/rustle-cross-bench, outside this repository: cargo refuses a
#   package inside another workspace's directory) holds everything it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-pc-windows-gnu x86_64-unknown-linux-musl)
BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench}")"
RUNS=${RUNS:-3}

cargo build --release -q -p rustle-cross
RC="${CARGO_TARGET_DIR:-$PWD/target}/release/rustle-cross"

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR/out"
cp -r "${BENCH_TEMPLATE:-examples/hello-template}" "$BENCH_DIR/template"
rm -rf "$BENCH_DIR/template/target"
TEMPLATE="$BENCH_DIR/template"
export RUSTLE_TARGET_CACHE_DIR="$BENCH_DIR/rustle-cache"

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh  # the script has cd-ed to the repository root
fmt() { printf '%.2f' "$1"; }

# The plain-cargo command for a target: rustle-cross's exact invocation with
# its own target dir.
plain_script() {
  local t=$1 script="$BENCH_DIR/plain-$t.sh"
  {
    echo "#!/bin/sh"
    echo "cd '$TEMPLATE'"
    "$RC" build "$TEMPLATE" --target "$t" --print-command |
      grep -v '^#' | sed "s#^CARGO_TARGET_DIR=.*#CARGO_TARGET_DIR=$BENCH_DIR/plain-target/$t \\\\#"
  } >"$script"
  chmod +x "$script"
  echo "$script"
}

change_line() { # a one-line change to the template's main.rs
  if grep -q '^    let runtime = tokio' "$TEMPLATE/src/main.rs"; then
    sed -i "s#^    let runtime = tokio.*#    let runtime = tokio::runtime::Builder::new_multi_thread() // bench $1#" "$TEMPLATE/src/main.rs"
  else # another template: its last line, a comment, changes
    sed -i '/^\/\/ bench /d' "$TEMPLATE/src/main.rs"
    echo "// bench $1" >>"$TEMPLATE/src/main.rs"
  fi
}

declare -A COLD_R COLD_P NOOP_R NOOP_P CHG_R CHG_P
for t in "${TARGETS[@]}"; do
  echo "bench: $t" >&2
  script=$(plain_script "$t")
  COLD_R[$t]=$(elapsed "$RC" build "$TEMPLATE" --target "$t" --out "$BENCH_DIR/out" --no-cache)
  COLD_P[$t]=$(elapsed "$script")
  r=(); p=()
  for _ in $(seq $RUNS); do
    r+=("$(elapsed "$RC" build "$TEMPLATE" --target "$t" --out "$BENCH_DIR/out" --no-cache)")
    p+=("$(elapsed "$script")")
  done
  NOOP_R[$t]=$(median "${r[@]}")
  NOOP_P[$t]=$(median "${p[@]}")
  # A one-line change, $RUNS times, each side rebuilding the same change,
  # alternating which side goes first.
  r=(); p=()
  for i in $(seq $RUNS); do
    change_line "$t-$i"
    if [ $((i % 2)) = 1 ]; then
      r+=("$(elapsed "$RC" build "$TEMPLATE" --target "$t" --out "$BENCH_DIR/out" --no-cache)")
      p+=("$(elapsed "$script")")
    else
      p+=("$(elapsed "$script")")
      r+=("$(elapsed "$RC" build "$TEMPLATE" --target "$t" --out "$BENCH_DIR/out" --no-cache)")
    fi
  done
  CHG_R[$t]=$(median "${r[@]}")
  CHG_P[$t]=$(median "${p[@]}")
done

# The whole set in one rustle-cross invocation, nothing changed, against
# the sum of plain cargo's no-op builds. Both sides are brought up to date
# with the current sources first.
all_args=()
for t in "${TARGETS[@]}"; do all_args+=(--target "$t"); done
"$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null 2>&1
for t in "${TARGETS[@]}"; do "$BENCH_DIR/plain-$t.sh" >/dev/null 2>&1; done
r=()
for _ in $(seq $RUNS); do r+=("$(elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)"); done
ALL_NOOP_R=$(median "${r[@]}")
SUM_NOOP_P=0; SUM_CHG_R=0; SUM_CHG_P=0
for t in "${TARGETS[@]}"; do
  SUM_NOOP_P=$(echo "$SUM_NOOP_P + ${NOOP_P[$t]}" | bc -l)
  SUM_CHG_R=$(echo "$SUM_CHG_R + ${CHG_R[$t]}" | bc -l)
  SUM_CHG_P=$(echo "$SUM_CHG_P + ${CHG_P[$t]}" | bc -l)
done
NOOP_BAR=$(echo "1.2 * $SUM_NOOP_P + 0.2" | bc -l)
CHG_BAR=$(echo "1.1 * $SUM_CHG_P" | bc -l)

echo
echo "No-op and one-line change: median of $RUNS runs each."
echo
echo "| target | cold: rustle-cross | cold: cargo | no-op: rustle-cross | no-op: cargo | one-line change: rustle-cross | one-line change: cargo |"
echo "|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  echo "| $t | $(fmt "${COLD_R[$t]}") s | $(fmt "${COLD_P[$t]}") s | $(fmt "${NOOP_R[$t]}") s | $(fmt "${NOOP_P[$t]}") s | $(fmt "${CHG_R[$t]}") s | $(fmt "${CHG_P[$t]}") s |"
done
echo
echo "All ${#TARGETS[@]} targets, one \`rustle-cross build\`, nothing changed: $(fmt "$ALL_NOOP_R") s (bar: 1.2 x $(fmt "$SUM_NOOP_P") s + 0.2 s = $(fmt "$NOOP_BAR") s)."
echo "One-line change, sum over targets: rustle-cross $(fmt "$SUM_CHG_R") s, cargo $(fmt "$SUM_CHG_P") s (bar: 1.1 x = $(fmt "$CHG_BAR") s)."
