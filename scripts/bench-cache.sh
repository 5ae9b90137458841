#!/usr/bin/env bash
# Benchmark of the binary cache, in one run on one machine:
#   - all hits: one `rustle-cross build` of every target this machine can
#     build, nothing changed, every binary in the cache, against the sum of
#     plain cargo's no-op builds of the same targets (the exact command of
#     `rustle-cross build --print-command`, in rustle-cross's own warm
#     target dirs);
#   - a miss: `rustle-cross build -t T` after `cache clear` (key, lookup,
#     cargo's no-op, store) against the same build with `--no-cache`
#     (cargo's no-op alone): the difference is what a miss adds.
#   - shared stores (Redis and WebDAV, private servers started by
#     scripts/start-cache-stores.sh under BENCH_DIR/stores): every target
#     fetched from the store into an empty local cache ("another
#     machine"), and a miss with the store behind (key, two lookups,
#     cargo's no-op, two stores) against --no-cache. SHARED=0 leaves them out.
# Prints Markdown lines for the README. Medians of RUNS (default 5) runs.
#
# Usage: scripts/bench-cache.sh [TARGET ...]    (default: every available target)
# Env:   BENCH_DIR (default $TMPDIR/rustle-cross-bench-cache) holds the template
#        copy and, unless RUSTLE_TARGET_CACHE_DIR is set, the cache (the first
#        run builds every target cold: many minutes). TEMPLATE picks another
#        template directory (its warm target dirs are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench-cache}")"
RUNS="${RUNS:-5}"
cargo build --release -q -p rustle-cross
RC="${CARGO_TARGET_DIR:-$PWD/target}/release/rustle-cross"
mkdir -p "$BENCH_DIR/out"
if [ -z "${TEMPLATE:-}" ]; then
  TEMPLATE="$BENCH_DIR/template"
  [ -d "$TEMPLATE" ] || cp -r examples/hello-template "$TEMPLATE"
fi
export RUSTLE_TARGET_CACHE_DIR="${RUSTLE_TARGET_CACHE_DIR:-$BENCH_DIR/rustle-cache}"

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <("$RC" targets --json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["availability"]["status"] == "available":
        print(r["target"]["triple"])')
fi
all_args=()
for t in "${TARGETS[@]}"; do all_args+=(--target "$t"); done

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh  # the script has cd-ed to the repository root
fmt() { printf '%.3f' "$1"; }

# Plain cargo's exact command per target, in rustle-cross's own target dir.
plain_script() {
  local t=$1 script="$BENCH_DIR/plain-$t.sh"
  { echo "#!/bin/sh"; echo "cd '$TEMPLATE'"; "$RC" build "$TEMPLATE" --target "$t" --print-command | grep -v '^#'; } >"$script"
  chmod +x "$script"
  echo "$script"
}

echo "bench-cache: bringing ${#TARGETS[@]} targets up to date (cold the first time)" >&2
"$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null
SUM_PLAIN=0
for t in "${TARGETS[@]}"; do
  script=$(plain_script "$t")
  "$script" >/dev/null 2>&1
  p=()
  for _ in $(seq "$RUNS"); do p+=("$(elapsed "$script")"); done
  SUM_PLAIN=$(echo "$SUM_PLAIN + $(median "${p[@]}")" | bc -l)
done
r=()
for _ in $(seq "$RUNS"); do r+=("$(elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out")"); done
ALL_HIT=$(median "${r[@]}")

T="${TARGETS[0]}"
miss=(); nocache=()
for _ in $(seq "$RUNS"); do
  "$RC" cache clear >/dev/null
  miss+=("$(elapsed "$RC" build "$TEMPLATE" --target "$T" --out "$BENCH_DIR/out")")
  nocache+=("$(elapsed "$RC" build "$TEMPLATE" --target "$T" --out "$BENCH_DIR/out" --no-cache)")
done
MISS=$(median "${miss[@]}")
NOCACHE=$(median "${nocache[@]}")
"$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null

SHARED_LINES=()
if [ "${SHARED:-1}" != 0 ]; then
  scripts/start-cache-stores.sh "$BENCH_DIR/stores" >/dev/null
  # shellcheck disable=SC1091
  source "$BENCH_DIR/stores/stores.env"
  redis_port=${REDIS_URL##*:}
  for store in redis webdav; do
    if [ $store = redis ]; then url="$REDIS_URL/5"; else url="${WEBDAV_URL}bench/"; fi
    empty_store() {
      if [ $store = redis ]; then redis-cli -p "$redis_port" -n 5 flushdb >/dev/null
      else rm -rf "$BENCH_DIR/stores/webdav/root/cache/bench"; fi
    }
    empty_store
    "$RC" cache clear >/dev/null
    RUSTLE_BINARY_CACHE_SHARED=$url "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null
    fetch=()
    for _ in $(seq "$RUNS"); do
      "$RC" cache clear >/dev/null
      fetch+=("$(RUSTLE_BINARY_CACHE_SHARED=$url elapsed "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out")")
    done
    smiss=(); snocache=()
    for _ in $(seq "$RUNS"); do
      "$RC" cache clear >/dev/null; empty_store
      smiss+=("$(RUSTLE_BINARY_CACHE_SHARED=$url elapsed "$RC" build "$TEMPLATE" --target "$T" --out "$BENCH_DIR/out")")
      snocache+=("$(elapsed "$RC" build "$TEMPLATE" --target "$T" --out "$BENCH_DIR/out" --no-cache)")
    done
    SHARED_LINES+=("Shared store, $store ($url): all ${#TARGETS[@]} targets fetched into an empty local cache: $(fmt "$(median "${fetch[@]}")") s; a miss ($T) with the store behind: $(fmt "$(median "${smiss[@]}")") s against $(fmt "$(median "${snocache[@]}")") s with --no-cache: it adds $(fmt "$(echo "$(median "${smiss[@]}") - $(median "${snocache[@]}")" | bc -l)") s.")
  done
  "$RC" build "$TEMPLATE" "${all_args[@]}" --out "$BENCH_DIR/out" >/dev/null
fi

echo
echo "All ${#TARGETS[@]} targets cached, one \`rustle-cross build\`: $(fmt "$ALL_HIT") s; plain cargo's no-op builds of the same targets, summed: $(fmt "$SUM_PLAIN") s (bars: 0.3 s, and a third of cargo's = $(fmt "$(echo "$SUM_PLAIN / 3" | bc -l)") s)."
echo "A miss ($T, warm target dir): $(fmt "$MISS") s with the cache, $(fmt "$NOCACHE") s with --no-cache: the cache adds $(fmt "$(echo "$MISS - $NOCACHE" | bc -l)") s (bar: 0.050 s)."
for line in "${SHARED_LINES[@]}"; do echo "$line"; done
