#!/usr/bin/env bash
# Inventory benchmark: parse + resolve one large inventory (100,000 hosts by
# default) in INI (ranges), YAML (every host listed) and JSON
# (`ansible-inventory --list` shape), each with group_vars/ and host_vars/,
# in a release build. Prints a Markdown table for the README: the time
# ParsedInventory::load takes (median of three runs), the whole process's
# wall time and its peak RSS (/usr/bin/time).
#
# Usage: scripts/bench-inventory.sh [HOSTS]
#   BENCH_DIR (default $TMPDIR/rustle-inventory-bench) holds the inventories.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

HOSTS=${1:-100000}
RUNS=3
BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-inventory-bench}")"
[ -x /usr/bin/time ] || { echo "bench-inventory: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

cargo build --release -q -p rustle-detect --example inventory_scale
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/inventory_scale"

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
"$BIN" generate "$BENCH_DIR" "$HOSTS" >"$BENCH_DIR/files"

median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

echo "| format | file | hosts | parse + resolve | process | peak RSS |"
echo "|---|---|---|---|---|---|"
while read -r format file; do
  echo "bench: $format" >&2
  load=(); wall=(); rss=0; hosts=0
  for _ in $(seq $RUNS); do
    # stdout: "N hosts G groups S s"; stderr (last line): "WALL RSS_KB".
    out=$(/usr/bin/time -f "%e %M" "$BIN" load "$file" 2>"$BENCH_DIR/time.err") ||
      { cat "$BENCH_DIR/time.err" >&2; exit 1; }
    read -r hosts _ _ _ seconds _ <<<"$out"
    read -r w kb < <(tail -n 1 "$BENCH_DIR/time.err")
    load+=("$seconds"); wall+=("$w")
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  size=$(du -h "$file" | cut -f1)
  printf '| %s | %s | %s | %.2f s | %.2f s | %d MB |\n' \
    "$format" "$size" "$hosts" "$(median "${load[@]}")" "$(median "${wall[@]}")" "$((rss / 1024))"
done <"$BENCH_DIR/files"
