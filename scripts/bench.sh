#!/usr/bin/env bash
# Benchmark: build times per target for `rustle-cross build` (with
# --no-cache: what driving cargo costs; scripts/bench-cache.sh measures the
# binary cache) and for plain cargo running the very same command
# (`rustle-cross build --print-command`) in its own target dir, as
# rustle-deploy's upstream compiler runs it (std from source, `-Zbuild-std`,
# where the target has no prebuilt std), in the same run on the same machine:
#   - cold from nothing: all targets in one `rustle-cross build` from empty
#     caches, against the sum of plain cargo's cold builds per target;
#   - no-op and one-line change per target;
#   - a new template with the same dependencies (a copy in a new directory,
#     one string changed), all targets in one build, against the one-line
#     change of the same targets in one build and against plain cargo's cold
#     builds of it;
#   - a second template with other dependencies: the std crates compiled in
#     any target dir (`libcore-*.rlib`; 0 when std comes from the sysroot
#     built once per target).
# Prints Markdown for the README.
#
# Usage: scripts/bench.sh [--all-available | TARGET ...]
#   default targets: one per route (host, multiarch std + gcc, build-std +
#   mingw, zig); --all-available: every target `rustle-cross targets` says
#   this machine builds. BENCH_TEMPLATE (default examples/hello-template; e.g.
#   examples/runner-template, rustle-deploy's runner shape with reqwest's
#   OpenSSL) is the template measured; RUNS (default 3) the no-op and
#   one-line-change runs per side. BENCH_DIR (default
#   $TMPDIR/rustle-cross-bench, outside this repository: cargo refuses a
#   package inside another workspace's directory) holds everything it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench}")"
RUNS=${RUNS:-3}

cargo build --release -q -p rustle-cross
RC="${CARGO_TARGET_DIR:-$PWD/target}/release/rustle-cross"

if [ "${1:-}" = "--all-available" ]; then
  mapfile -t TARGETS < <("$RC" targets --json | python3 -c '
import json, sys
for report in json.load(sys.stdin):
    if report.get("buildable"):
        print(report["target"])')
else
  TARGETS=("$@")
fi
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-pc-windows-gnu x86_64-unknown-linux-musl)

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR/out"
cp -r "${BENCH_TEMPLATE:-examples/hello-template}" "$BENCH_DIR/template"
rm -rf "$BENCH_DIR/template/target"
TEMPLATE="$BENCH_DIR/template"
export RUSTLE_TARGET_CACHE_DIR="$BENCH_DIR/rustle-cache"

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh  # the script has cd-ed to the repository root
fmt() { printf '%.2f' "$1"; }

# The plain-cargo command for a target: rustle-cross's exact invocation
# with its own target dir, and std compiled from source where rustle-cross
# passes the sysroot it built once.
plain_script() {
  local t=$1 script="$BENCH_DIR/plain-$1.sh" command
  command=$("$RC" build "$TEMPLATE" --target "$t" --print-command | grep -v '^#' |
    sed "s#^CARGO_TARGET_DIR=.*#CARGO_TARGET_DIR=$BENCH_DIR/plain-target/$t \\\\#")
  if grep -q -- '--sysroot=' <<<"$command"; then
    command=$(sed -e "s# --sysroot=[^ ']*##" -e "s# rustc --target # rustc -Zbuild-std=std,panic_abort --target #" <<<"$command")
    command="RUSTC_BOOTSTRAP=1 \\
$command"
  fi
  { echo "#!/bin/sh"; echo "cd '$TEMPLATE'"; echo "$command"; } >"$script"
  chmod +x "$script"
  echo "$script"
}

change_line() { # a one-line change to a template's main.rs (default: the one measured)
  local main=${2:-$TEMPLATE}/src/main.rs
  if grep -q '^    let runtime = tokio' "$main"; then
    sed -i "s#^    let runtime = tokio.*#    let runtime = tokio::runtime::Builder::new_multi_thread() // bench $1#" "$main"
  else # another template: its last line, a comment, changes
    sed -i '/^\/\/ bench /d' "$main"
    echo "// bench $1" >>"$main"
  fi
}

all_args=()
for t in "${TARGETS[@]}"; do all_args+=(--target "$t"); done

# Cold from nothing: no cache of rustle-cross's at all (no target dirs, no
# sysroots, no toolchain discovery), every target in one build.
echo "bench: cold, all ${#TARGETS[@]} targets" >&2
COLD_ALL_R=$(elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)

declare -A COLD_P NOOP_R NOOP_P CHG_R CHG_P
for t in "${TARGETS[@]}"; do
  echo "bench: $t" >&2
  script=$(plain_script "$t")
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
"$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null 2>&1
for t in "${TARGETS[@]}"; do "$BENCH_DIR/plain-$t.sh" >/dev/null 2>&1; done
r=()
for _ in $(seq $RUNS); do r+=("$(elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)"); done
ALL_NOOP_R=$(median "${r[@]}")

# A new template with the same dependencies: the measured one copied to a
# new directory with one string changed, every target in one build; against
# a one-line change of the measured one, every target in one build, and
# against plain cargo building it cold, each target in its own dir (the
# cold column: the new template differs from the measured one by a string).
NEW="$BENCH_DIR/new-template"
rm -rf "$NEW"
cp -r "$TEMPLATE" "$NEW"
change_line "new template" "$NEW"
change_line "all targets"
echo "bench: one-line change and a new template, all targets" >&2
ALL_CHG_R=$(elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)
NEW_R=$(elapsed "$RC" build "$NEW" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)

# A second template with other dependencies (none): std crates compiled
# in rustle-cross's target dirs for it, and sysroots there are.
OTHER="$BENCH_DIR/other-template"
rm -rf "$OTHER"
mkdir -p "$OTHER/src"
printf '[package]\nname = "other-template"\nversion = "0.1.0"\nedition = "2021"\n' >"$OTHER/Cargo.toml"
echo 'fn main() { println!("another plan"); }' >"$OTHER/src/main.rs"
std_rlibs() { find "$RUSTLE_TARGET_CACHE_DIR/targets" -name 'libcore-*.rlib' | wc -l; }
STD_BEFORE=$(std_rlibs)
OTHER_R=$(elapsed "$RC" build "$OTHER" "${all_args[@]}" --out "$BENCH_DIR/out" --no-cache)
STD_AFTER=$(std_rlibs)
SYSROOTS=$(find "$RUSTLE_TARGET_CACHE_DIR/sysroots" -name built 2>/dev/null | wc -l)

SUM_NOOP_P=0; SUM_CHG_R=0; SUM_CHG_P=0; SUM_COLD_P=0
for t in "${TARGETS[@]}"; do
  SUM_COLD_P=$(echo "$SUM_COLD_P + ${COLD_P[$t]}" | bc -l)
  SUM_NOOP_P=$(echo "$SUM_NOOP_P + ${NOOP_P[$t]}" | bc -l)
  SUM_CHG_R=$(echo "$SUM_CHG_R + ${CHG_R[$t]}" | bc -l)
  SUM_CHG_P=$(echo "$SUM_CHG_P + ${CHG_P[$t]}" | bc -l)
done
NOOP_BAR=$(echo "1.2 * $SUM_NOOP_P + 0.2" | bc -l)
CHG_BAR=$(echo "1.1 * $SUM_CHG_P" | bc -l)

echo
echo "No-op and one-line change: median of $RUNS runs each."
echo
echo "| target | cold: cargo | no-op: rustle-cross | no-op: cargo | one-line change: rustle-cross | one-line change: cargo |"
echo "|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  echo "| $t | $(fmt "${COLD_P[$t]}") s | $(fmt "${NOOP_R[$t]}") s | $(fmt "${NOOP_P[$t]}") s | $(fmt "${CHG_R[$t]}") s | $(fmt "${CHG_P[$t]}") s |"
done
echo
echo "- Cold from nothing, all ${#TARGETS[@]} targets in one \`rustle-cross build\`: $(fmt "$COLD_ALL_R") s wall, against the sum of plain cargo's cold builds $(fmt "$SUM_COLD_P") s: $(fmt "$(echo "$COLD_ALL_R / $SUM_COLD_P" | bc -l)")x (bar: 0.75x)."
echo "- A new template with the same dependencies, all targets in one build: $(fmt "$NEW_R") s, against the one-line change of the same targets in one build $(fmt "$ALL_CHG_R") s: $(fmt "$(echo "$NEW_R / $ALL_CHG_R" | bc -l)")x (bar: 2x); plain cargo building it cold, each target in its own dir (the cold column, summed): $(fmt "$SUM_COLD_P") s, $(fmt "$(echo "$SUM_COLD_P / $NEW_R" | bc -l)")x slower (bar: 10x)."
echo "- A second template with other dependencies, all targets: $(fmt "$OTHER_R") s; std crates compiled for it in any target dir: $((STD_AFTER - STD_BEFORE)) (sysroots built once: $SYSROOTS)."
echo "- All ${#TARGETS[@]} targets, one \`rustle-cross build\`, nothing changed: $(fmt "$ALL_NOOP_R") s (bar: 1.2 x $(fmt "$SUM_NOOP_P") s + 0.2 s = $(fmt "$NOOP_BAR") s)."
echo "- One-line change, sum over targets: rustle-cross $(fmt "$SUM_CHG_R") s, cargo $(fmt "$SUM_CHG_P") s (bar: 1.1 x = $(fmt "$CHG_BAR") s)."
