#!/usr/bin/env bash
# Benchmark: a repeated multi-target build on one agent is warm for every
# target. A real `rustle-agent` on loopback (mutual TLS with a fresh fleet
# CA) builds the bundled example for each target; after the cold build,
# RUNS one-line changes are built through the agent and, in the same run,
# by this machine alone (its own cache dir, also warm). Prints per-target
# compilation times (median, from `--json`) for the README: the agent's
# warm rebuild should stay within 1.2x of the local one.
#
# Usage: scripts/bench-fleet.sh [TARGET ...]
#   default targets: x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu.
#   BENCH_DIR (default $TMPDIR/rustle-cross-bench-fleet) holds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench-fleet}")"
RUNS=${RUNS:-3}

cargo build --release -q -p rustle-cross -p rustle-agent
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
RC="$BIN/rustle-cross"

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{out,ca,certs}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
fmt() { printf '%.2f' "$1"; }

"$RC" ca init --dir "$BENCH_DIR/ca" >/dev/null
"$RC" ca issue --agent bench-agent --san 127.0.0.1 --dir "$BENCH_DIR/ca" --out "$BENCH_DIR/certs" >/dev/null
"$RC" ca issue --coordinator bench --dir "$BENCH_DIR/ca" --out "$BENCH_DIR/certs" >/dev/null

allowed=$(printf '"%s",' "${TARGETS[@]}")
cat >"$BENCH_DIR/agent.toml" <<EOF
listen = "127.0.0.1:0"
ca = "$BENCH_DIR/ca/ca.pem"
cert = "$BENCH_DIR/certs/bench-agent.pem"
key = "$BENCH_DIR/certs/bench-agent-key.pem"
work_dir = "$BENCH_DIR/agent-work"
agent_id = "bench-agent"
max_concurrent_jobs = ${#TARGETS[@]}
allowed_targets = [${allowed%,}]
EOF
"$BIN/rustle-agent" --config "$BENCH_DIR/agent.toml" 2>"$BENCH_DIR/agent.log" &
AGENT=$!
trap 'kill $AGENT 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  ADDR=$(sed -n 's/^rustle-agent: listening on //p' "$BENCH_DIR/agent.log")
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "$ADDR" ] || { cat "$BENCH_DIR/agent.log" >&2; echo "the agent did not start" >&2; exit 1; }
cat >"$BENCH_DIR/fleet.toml" <<EOF
[cross_compilation.fleet]
agents = [{ name = "bench-agent", address = "$ADDR" }]
ca = "$BENCH_DIR/ca/ca.pem"
cert = "$BENCH_DIR/certs/bench.pem"
key = "$BENCH_DIR/certs/bench-key.pem"
EOF

# Two copies of the template: one built through the agent, one here.
for side in fleet local; do cp -r examples/hello-template "$BENCH_DIR/template-$side"; done
change_line() { # a one-line change to main.rs of template $1
  sed -i "s#^    let runtime = tokio.*#    let runtime = tokio::runtime::Builder::new_multi_thread() // bench $2#" "$BENCH_DIR/template-$1/src/main.rs"
}
target_args=()
for t in "${TARGETS[@]}"; do target_args+=(--target "$t"); done
# One build of every target; prints "TRIPLE SECONDS EXECUTOR" per target.
build() {
  local side=$1 config=()
  [ "$side" = fleet ] && config=(--config "$BENCH_DIR/fleet.toml")
  RUSTLE_TARGET_CACHE_DIR="$BENCH_DIR/cache-$side" "$RC" "${config[@]}" build "$BENCH_DIR/template-$side" \
    "${target_args[@]}" --out "$BENCH_DIR/out" --no-cache --json 2>"$BENCH_DIR/last.err" |
    python3 -c 'import json, sys
for r in json.load(sys.stdin)["results"]:
    print(r["target"], r.get("compilation_time_secs", "failed"), (r.get("executor") or {}).get("name", "none"))'
}

declare -A COLD TIMES
for side in fleet local; do
  echo "bench: cold ($side)" >&2
  while read -r t secs executor; do
    [ "$secs" != failed ] || { cat "$BENCH_DIR/last.err" >&2; echo "$t failed ($side)" >&2; exit 1; }
    if [ "$side" = fleet ] && [ "$executor" != bench-agent ]; then
      echo "$t was built by $executor, not the agent" >&2
      exit 1
    fi
    COLD[$side/$t]=$secs
  done < <(build "$side")
done
for i in $(seq "$RUNS"); do
  for side in fleet local; do
    echo "bench: one-line change $i ($side)" >&2
    change_line "$side" "$i"
    while read -r t secs _; do TIMES[$side/$t]="${TIMES[$side/$t]:-} $secs"; done < <(build "$side")
  done
done

echo
echo "One agent on loopback, ${#TARGETS[@]} targets per build, one-line change: median of $RUNS runs (compilation time per target)."
echo
echo "| target | cold: agent | cold: local | warm rebuild: agent | warm rebuild: local | agent / local |"
echo "|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  agent=$(median ${TIMES[fleet/$t]})
  # shellcheck disable=SC2086
  local_=$(median ${TIMES[local/$t]})
  echo "| $t | $(fmt "${COLD[fleet/$t]}") s | $(fmt "${COLD[local/$t]}") s | $(fmt "$agent") s | $(fmt "$local_") s | $(fmt "$(echo "$agent / $local_" | bc -l)")x |"
done
