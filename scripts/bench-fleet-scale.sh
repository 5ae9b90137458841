#!/usr/bin/env bash
# Benchmark: one coordinator against AGENTS simulated agents on this
# machine, over real QUIC connections with real certificates. A fresh fleet
# CA (`rustle-cross ca init`) issues one certificate per agent (`ca issue
# --agent`) and one for the coordinator; `rustle-agent simulate` hosts the
# agents in one process, each its own QUIC endpoint on its own UDP port with
# its own certificate, answering every build with a canned binary (no cargo
# runs; they report themselves as simulated). The coordinator is the bench
# binary `coordinator/benches/fleet_scale.rs`: the real fleet library with
# a config listing every agent. It measures its own CPU (utime + stime from
# /proc/self/stat) and RSS (/proc/self/status) while idle with heartbeats
# only, then while JOBS builds flow, and prints the figures and jobs/s; the
# script adds the agents' process for comparison.
#
# Usage: scripts/bench-fleet-scale.sh
#   AGENTS (default 1000), JOBS (default 10000), IDLE_SECS (default 10),
#   DELAY_MS (each simulated build's duration, default 0), SLOTS (jobs per
#   agent at once, default 2), BASE_PORT (default 20000: agents use
#   BASE_PORT..BASE_PORT+AGENTS-1), BENCH_DIR (default
#   $TMPDIR/rustle-cross-bench-fleet-scale) holds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

AGENTS=${AGENTS:-1000}
JOBS=${JOBS:-10000}
IDLE_SECS=${IDLE_SECS:-10}
DELAY_MS=${DELAY_MS:-0}
SLOTS=${SLOTS:-2}
BASE_PORT=${BASE_PORT:-20000}
TARGET=x86_64-unknown-linux-gnu
BENCH_DIR="$(realpath -m "${BENCH_DIR:-${TMPDIR:-/tmp}/rustle-cross-bench-fleet-scale}")"
JOBS_FLAG=(-j "${CARGO_BUILD_JOBS:-1}")

# One UDP socket per agent, plus the runtime's own descriptors.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((AGENTS + 256)) ]; then
  echo "ulimit -n is $(ulimit -n): too few file descriptors for $AGENTS agents (raise the hard limit)" >&2
  exit 1
fi

cargo build --release -q "${JOBS_FLAG[@]}" -p rustle-cross -p rustle-agent
cargo bench -q "${JOBS_FLAG[@]}" -p rustle-cross --bench fleet_scale --no-run
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
RC="$BIN/rustle-cross"

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{ca,certs,work}

# The canned binary: as small as a real binary of the target gets.
if printf 'int main(void) { return 0; }\n' | cc -Os -s -x c - -o "$BENCH_DIR/canned" 2>/dev/null; then
  CANNED="$BENCH_DIR/canned"
else
  CANNED=/bin/true
fi

echo "bench: issuing $AGENTS agent certificates" >&2
"$RC" ca init --dir "$BENCH_DIR/ca" >/dev/null
"$RC" ca issue --coordinator bench --dir "$BENCH_DIR/ca" --out "$BENCH_DIR/certs" >/dev/null
for i in $(seq 0 $((AGENTS - 1))); do
  "$RC" ca issue --agent "sim-agent-$i" --san 127.0.0.1 --dir "$BENCH_DIR/ca" --out "$BENCH_DIR/certs" >/dev/null
done

RUST_LOG=${AGENT_LOG:-warn} "$BIN/rustle-agent" simulate --count "$AGENTS" --base-port "$BASE_PORT" \
  --certs "$BENCH_DIR/certs" --ca "$BENCH_DIR/ca/ca.pem" --work-dir "$BENCH_DIR/work" \
  --binary "$CANNED" --target "$TARGET" --delay-ms "$DELAY_MS" --slots "$SLOTS" 2>"$BENCH_DIR/agents.log" &
AGENTS_PID=$!
trap 'kill $AGENTS_PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  grep -q 'SIMULATED agents listening' "$BENCH_DIR/agents.log" && break
  kill -0 $AGENTS_PID 2>/dev/null || break
  sleep 0.1
done
grep -q 'SIMULATED agents listening' "$BENCH_DIR/agents.log" || {
  tail -20 "$BENCH_DIR/agents.log" >&2
  echo "the simulated agents did not start" >&2
  exit 1
}

{
  echo "[cross_compilation.fleet]"
  echo "ca = \"$BENCH_DIR/ca/ca.pem\""
  echo "cert = \"$BENCH_DIR/certs/bench.pem\""
  echo "key = \"$BENCH_DIR/certs/bench-key.pem\""
  echo "connect_timeout_secs = 60"
  echo "agents = ["
  for i in $(seq 0 $((AGENTS - 1))); do
    echo "  { name = \"sim-agent-$i\", address = \"127.0.0.1:$((BASE_PORT + i))\" },"
  done
  echo "]"
} >"$BENCH_DIR/fleet.toml"

agent_ticks() { awk '{ print $14 + $15 }' "/proc/$AGENTS_PID/stat"; }
echo "bench: $(nproc) cores, load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
before=$(agent_ticks)
start=$(date +%s.%N)
status=0
cargo bench -q "${JOBS_FLAG[@]}" -p rustle-cross --bench fleet_scale -- --config "$BENCH_DIR/fleet.toml" \
  --binary "$CANNED" --template "$PWD/examples/hello-template" --jobs "$JOBS" --idle-secs "$IDLE_SECS" \
  --target "$TARGET" | tee "$BENCH_DIR/coordinator.out" || status=$?
end=$(date +%s.%N)
after=$(agent_ticks)
hz=$(getconf CLK_TCK)
echo "bench: the simulated agents' process: $(echo "($after - $before) / $hz / ($end - $start)" | bc -l | xargs printf '%.2f') cores over the run, RSS $(awk '/VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$AGENTS_PID/status")"
echo "bench: load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
kill $AGENTS_PID 2>/dev/null || true
exit $status
