#!/usr/bin/env bash
# The fault suite: real rustle-agent processes, real QUIC with certificates
# from a fresh fleet CA (`rustle-cross ca init/issue/revoke`), real network
# namespaces and tc netem, bounded in time and count. Each row prints one
# line `FAULT <row> PASS|FAIL: <figures>` (trials passed, seconds to detect,
# executions, slowdown), so a regression shows as a number, and the script
# exits 1 when any row fails.
#
#   R1   SIGKILL the agent running a job (TRIALS times; two agents, one on
#        loopback, one in a network namespace): the job completes on
#        the other agent with the right binary (sha256 of the file = the
#        reported checksum = the .sha256 file; it runs and prints its trial).
#   R2   the link to an agent in a network namespace (shaped to FAULTS_RATE
#        with tc tbf) goes down (the veth) while its binary is arriving, a
#        third of it through (TRIALS times): the coordinator notices within 3 s
#        (its log's timestamp against the moment the link went down), the job
#        completes on this machine's fallback, nothing partial is kept.
#   R2b  30% loss and 200 ms delay each way on that link (tc netem; on a
#        kernel without sch_netem, the loss alone from iptables' statistic
#        match, and the figure says so): a build still completes; prints the
#        slowdown and who built it.
#   R3   cargo fuzz on protocol/fuzz (decode_frame): FUZZ_RUNS executions, no crash.
#   R4   bad certificates both ways (another CA, none, expired, revoked, a name
#        mismatch): each refused with a clear error on both sides, and the
#        agent keeps serving a good coordinator.
#   R5   garbage datagrams and half-open QUIC handshakes at an agent for
#        FLOOD_SECS: builds through it during the flood succeed.
#
# Usage: scripts/faults.sh [--short] [ROW ...]      (default: every row)
#   --short (or FAULTS_MODE=short): 3 trials, 100k fuzz runs, 3 s of flood;
#   what CI runs (coordinator/tests/faults_short.rs). Full: 20 trials, 10M
#   fuzz runs, 30 s of flood.
# Env: FAULTS_DIR (default $TMPDIR/rustle-cross-faults) holds everything;
#   FAULTS_TRIALS, FAULTS_FUZZ_RUNS, FAULTS_FLOOD_SECS override the mode;
#   FAULTS_BIN_DIR: take rustle-cross, rustle-agent and examples/fault_peer
#   from there instead of building them (debug profile) here.
# FAULTS_REUSE=1 keeps the agents' warm dirs and the cache of a previous run
#   in FAULTS_DIR (the untimed warm-up builds are then warm).
# Needs root (ip netns, tc), iproute2, iptables, faketime, python3, cargo-fuzz and a
# nightly toolchain (scripts/setup.sh installs them). Namespaces are named
# rcf-*, addresses 10.213.7.0/30; the trap removes them and every process
# the script started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

MODE=${FAULTS_MODE:-full}
ROWS=()
for arg in "$@"; do
  case "$arg" in
    --short) MODE=short ;;
    R1 | R2 | R2b | R3 | R4 | R5) ROWS+=("$arg") ;;
    *) echo "usage: scripts/faults.sh [--short] [R1 R2 R2b R3 R4 R5]" >&2; exit 2 ;;
  esac
done
[ ${#ROWS[@]} -gt 0 ] || ROWS=(R1 R2 R2b R3 R4 R5)
if [ "$MODE" = short ]; then
  TRIALS=${FAULTS_TRIALS:-3} FUZZ_RUNS=${FAULTS_FUZZ_RUNS:-100000} FLOOD_SECS=${FAULTS_FLOOD_SECS:-3}
else
  TRIALS=${FAULTS_TRIALS:-20} FUZZ_RUNS=${FAULTS_FUZZ_RUNS:-10000000} FLOOD_SECS=${FAULTS_FLOOD_SECS:-30}
fi
RATE=${FAULTS_RATE:-16mbit}
TRIPLE=x86_64-unknown-linux-gnu
D="$(realpath -m "${FAULTS_DIR:-${TMPDIR:-/tmp}/rustle-cross-faults}")"
NS=rcf-a
VETH=rcf-v1
NS_ADDR=10.213.7.2
ROOT_ADDR=10.213.7.1

log() { printf '[faults %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for f in "$D"/*.pid; do
    if [ -f "$f" ]; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
  done
  if [ -e "/run/netns/$NS" ]; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
  fi
  ip link del "$VETH" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries ---------------------------------------------------------------
# R3 alone needs none of them.
NEED_FLEET=0
for r in "${ROWS[@]}"; do [ "$r" = R3 ] || NEED_FLEET=1; done
if [ $NEED_FLEET = 0 ]; then
  :
elif [ -n "${FAULTS_BIN_DIR:-}" ]; then
  BIN=$FAULTS_BIN_DIR
else
  log "building rustle-cross, rustle-agent and fault_peer (debug)"
  cargo build -q -p rustle-cross -p rustle-agent
  cargo build -q -p rustle-transport --example fault_peer
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug"
fi
RC="${BIN:-}/rustle-cross"
AGENT_BIN="${BIN:-}/rustle-agent"
PEER="${BIN:-}/examples/fault_peer"
if [ $NEED_FLEET = 1 ]; then
  for f in "$RC" "$AGENT_BIN" "$PEER"; do [ -x "$f" ] || die "missing $f (build it, or unset FAULTS_BIN_DIR)"; done
fi

if [ "${FAULTS_REUSE:-0}" = 1 ] && [ -d "$D" ]; then
  # Keep the agents' warm dirs and this machine's cache (the warm-up builds
  # are untimed; a cold one costs minutes here), nothing else.
  find "$D" -mindepth 1 -maxdepth 1 ! -name 'fault-agent-*' ! -name cache -exec rm -rf {} +
else
  rm -rf "$D"
fi
mkdir -p "$D"
FAILED=()
# row ID PASS|FAIL FIGURES: the one line per row the README and CI read.
row() {
  printf 'FAULT %s %s: %s\n' "$1" "$2" "$3"
  [ "$2" = PASS ] || FAILED+=("$1")
}

# --- the fleet CA -------------------------------------------------------------
issue() { "$RC" ca issue "$@" --dir "$D/ca" --out "$D/certs" >/dev/null; }
if [ $NEED_FLEET = 1 ]; then
  "$RC" ca init --dir "$D/ca" >/dev/null
  issue --coordinator fc
  for a in fa-1 fa-r4; do issue --agent "$a" --san 127.0.0.1; done
  issue --agent fa-ns --san "$NS_ADDR"
fi

# start_agent NAME CERT_STEM CA_DIR LISTEN [EXTRA_TOML] [NETNS]: starts an
# agent, prints its address; its log is $D/NAME.log, its pid $D/NAME.pid.
start_agent() {
  local name=$1 stem=$2 cadir=$3 listen=$4 extra=${5:-} netns=${6:-} addr
  mkdir -p "$D/fault-agent-$name"
  cat >"$D/$name.toml" <<EOF
listen = "$listen"
ca = "$cadir/ca.pem"
cert = "$cadir/$stem.pem"
key = "$cadir/$stem-key.pem"
work_dir = "$D/fault-agent-$name/work"
agent_id = "$name"
max_concurrent_jobs = 1
heartbeat_interval_ms = 1000
# Builds at the agent's own priority: on a loaded machine nice 10 starves them.
build_niceness = 0
allowed_targets = ["$TRIPLE"]
$extra
EOF
  : >"$D/$name.log"
  if [ -n "$netns" ]; then
    ip netns exec "$netns" "$AGENT_BIN" --config "$D/$name.toml" >/dev/null 2>>"$D/$name.log" &
  else
    "$AGENT_BIN" --config "$D/$name.toml" >/dev/null 2>>"$D/$name.log" &
  fi
  # Called in $( ): the pid goes to a file the trap reads.
  local pid=$!
  echo "$pid" >"$D/$name.pid"
  for _ in $(seq 200); do
    addr=$(sed -n 's/^rustle-agent: listening on //p' "$D/$name.log" | tail -n 1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    cat "$D/$name.log" >&2
    return 1
  fi
  echo "$addr"
}

# fleet_config FILE CERT_STEM CERT_DIR EXTRA_TOML NAME=ADDR...: a coordinator config.
fleet_config() {
  local file=$1 stem=$2 certdir=$3 extra=$4 agents="" pair
  shift 4
  for pair in "$@"; do agents+="{ name = \"${pair%%=*}\", address = \"${pair#*=}\" },"; done
  cat >"$file" <<EOF
[cross_compilation]
max_parallel_jobs = 1

[cross_compilation.fleet]
agents = [${agents%,}]
ca = "$D/ca/ca.pem"
cert = "$certdir/$stem.pem"
key = "$certdir/$stem-key.pem"
heartbeat_timeout_secs = 3
connect_timeout_secs = 10
$extra
EOF
}

# --- the template: the bundled example, plus a gate and a trial number -------
# build.rs: on an agent (its sources under fault-agent-*), the first build
# that finds $D/gate writes $D/started and waits until the gate is removed,
# so R1 kills an agent that is certainly mid-build. main prints the trial.
TEMPLATE="$D/template"
cp -r examples/hello-template "$TEMPLATE"
rm -rf "$TEMPLATE/target"
cat >>"$TEMPLATE/build.rs" <<EOF

/// The fault suite's gate (scripts/faults.sh).
#[allow(dead_code)]
fn fault_gate() {
    println!("cargo:rerun-if-changed=fault-trial.txt");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let gate = std::path::Path::new("$D/gate");
    if !dir.contains("/fault-agent-") || !gate.exists() {
        return;
    }
    let started = std::fs::OpenOptions::new().write(true).create_new(true).open("$D/started");
    if let Ok(mut file) = started {
        use std::io::Write;
        let _ = writeln!(file, "{} {dir}", std::process::id());
        let start = std::time::Instant::now();
        while gate.exists() && start.elapsed().as_secs() < 300 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
EOF
sed -i 's/^fn main() {$/fn main() {\n    fault_gate();/' "$TEMPLATE/build.rs"
sed -i 's/^fn main() {$/fn main() {\n    println!("fault-trial {}", include_str!("..\/fault-trial.txt").trim());/' "$TEMPLATE/src/main.rs"
if ! grep -q fault_gate "$TEMPLATE/build.rs" || ! grep -q fault-trial "$TEMPLATE/src/main.rs"; then
  die "patching the template failed"
fi
echo warm >"$TEMPLATE/fault-trial.txt"

# build CONFIG NAME [ARGS...]: one build of the template; the JSON goes to
# $D/NAME.json, stderr (with the coordinator's info log) to $D/NAME.err.
build() {
  local config=$1 name=$2
  shift 2
  mkdir -p "$D/out-$name"
  RUSTLE_TARGET_CACHE_DIR="$D/cache" RUSTLE_LOG=info "$RC" --config "$config" build "$TEMPLATE" -t "$TRIPLE" \
    --no-cache --json --quiet --out "$D/out-$name" "$@" >"$D/$name.json" 2>"$D/$name.err"
}

# check NAME TRIAL: prints the executor's name when the build NAME gave a
# whole, correct binary of trial TRIAL and nothing else in its out dir;
# fails saying why otherwise.
check() {
  python3 - "$D/$1.json" "$D/out-$1" "$2" <<'EOF'
import hashlib, json, os, subprocess, sys
report, out_dir, trial = sys.argv[1], sys.argv[2], sys.argv[3]
def fail(why):
    print(f"{report}: {why}", file=sys.stderr)
    sys.exit(1)
try:
    results = json.load(open(report))["results"]
except Exception as e:
    fail(f"no JSON report ({e})")
if len(results) != 1 or results[0].get("status") != "ok":
    fail(f"the build did not succeed: {results}")
r = results[0]
path = r["file"]
data = open(path, "rb").read()
digest = hashlib.sha256(data).hexdigest()
if digest != r["sha256"] or len(data) != r["size"]:
    fail(f"{path}: sha256 {digest} ({len(data)} bytes), the report says {r['sha256']} ({r['size']} bytes)")
side = open(path + ".sha256").read().split()[0]
if side != digest:
    fail(f"{path}.sha256 says {side}, the file is {digest}")
extra = sorted(set(os.listdir(out_dir)) - {os.path.basename(path), os.path.basename(path) + ".sha256"})
if extra:
    fail(f"unexpected files in {out_dir}: {extra}")
run = subprocess.run([path], capture_output=True, text=True, timeout=30)
if run.returncode != 0 or f"fault-trial {trial}" not in run.stdout:
    fail(f"{path} ran with {run.returncode}: {run.stdout!r} {run.stderr!r}")
print((r.get("executor") or {}).get("name") or "local")
EOF
}

# The moment the coordinator's log (RUSTLE_LOG=info, file $1) says the
# session with agent $2 ended, in seconds since the epoch.
session_end() {
  python3 - "$1" "$2" <<'EOF'
import datetime, re, sys
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if f"session with agent {sys.argv[2]} ended" in line:
        stamp = line.split()[0]
        print(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
        break
EOF
}

median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# Agents shared by the rows, each warmed once (a cold build of the example
# costs a minute or more here): fa-1 on loopback, fa-ns in the namespace.
ADDR1=""
loopback_agent() {
  [ -n "$ADDR1" ] && kill -0 "$(cat "$D/fa-1.pid")" 2>/dev/null && return 0
  ADDR1=$(start_agent fa-1 fa-1 "$D/certs" 127.0.0.1:0) || return 1
  fleet_config "$D/fa-1.toml" fc "$D/certs" "" "fa-1=$ADDR1"
  echo warm >"$TEMPLATE/fault-trial.txt"
  build "$D/fa-1.toml" fa-1-warm || { log "warm-up through fa-1 failed: $(tail -n 3 "$D/fa-1-warm.err")"; return 1; }
}

# --- R1: SIGKILL the agent running a job ---------------------------------------
r1() {
  log "R1: $TRIALS trials, agents fa-1 (loopback) and fa-ns (namespace $NS)"
  local passed=0 i who victim survivor t_kill t_end recoveries=() executor
  loopback_agent || { row R1 FAIL "agent fa-1 did not start or build"; return; }
  ns_agent || { row R1 FAIL "agent fa-ns did not start or build"; return; }
  for i in $(seq "$TRIALS"); do
    fleet_config "$D/r1.toml" fc "$D/certs" "" "fa-1=$ADDR1" "fa-ns=$NS_AGENT"
    echo "r1-$i" >"$TEMPLATE/fault-trial.txt"
    rm -f "$D/started"
    touch "$D/gate"
    build "$D/r1.toml" "r1-$i" &
    local coordinator=$!
    local deadline=$((SECONDS + 300))
    while [ ! -s "$D/started" ] && [ $SECONDS -lt $deadline ] && kill -0 "$coordinator" 2>/dev/null; do sleep 0.02; done
    if [ ! -s "$D/started" ]; then
      rm -f "$D/gate"
      wait "$coordinator" || true
      log "R1 trial $i: no agent started the build: $(tail -n 3 "$D/r1-$i.err")"
      continue
    fi
    who=$(awk '{print $2}' "$D/started")
    case "$who" in
      *fault-agent-fa-1/*) victim=fa-1 survivor=fa-ns ;;
      *fault-agent-fa-ns/*) victim=fa-ns survivor=fa-1 ;;
      *) rm -f "$D/gate"; wait "$coordinator" || true; log "R1 trial $i: built in $who?"; continue ;;
    esac
    t_kill=$(now)
    kill -KILL "$(cat "$D/$victim.pid")"
    wait "$(cat "$D/$victim.pid")" 2>/dev/null || true
    rm -f "$D/gate"
    if ! wait "$coordinator"; then
      log "R1 trial $i: the build failed: $(tail -n 5 "$D/r1-$i.err")"
    elif executor=$(check "r1-$i" "r1-$i") && [ "$executor" = "$survivor" ]; then
      passed=$((passed + 1))
      t_end=$(session_end "$D/r1-$i.err" "$victim")
      [ -n "$t_end" ] && recoveries+=("$(echo "$t_end - $t_kill" | bc -l)")
    else
      log "R1 trial $i: killed $victim, built by ${executor:-nothing} (wanted $survivor)"
    fi
    # The killed agent comes back (a new port) for the next trial.
    if [ "$victim" = fa-1 ]; then
      ADDR1=$(start_agent fa-1 fa-1 "$D/certs" 127.0.0.1:0) || break
    else
      NS_AGENT=$(start_agent fa-ns fa-ns "$D/certs" "$NS_ADDR:7878" "" "$NS") || break
    fi
  done
  local lost="n/a"
  # shellcheck disable=SC2046
  [ ${#recoveries[@]} -gt 0 ] && lost=$(printf '%.2f s median, %.2f s max' "$(median "${recoveries[@]}")" "$(maximum "${recoveries[@]}")")
  local verdict=FAIL
  [ "$passed" = "$TRIALS" ] && verdict=PASS
  row R1 "$verdict" "$passed/$TRIALS SIGKILLed jobs completed on the other agent with the right binary; killed agent's session ended after the kill: $lost"
}

# --- the namespace for R2 and R2b ---------------------------------------------
netns_up() {
  [ "$(id -u)" = 0 ] || return 1
  if ip -o -4 addr show to 10.213.7.0/30 | grep -v " $VETH " | grep -q .; then
    log "10.213.7.0/30 is in use here"
    return 1
  fi
  cleanup_ns
  ip netns add "$NS"
  ip link add "$VETH" type veth peer name eth0 netns "$NS"
  ip addr add "$ROOT_ADDR/30" dev "$VETH"
  ip link set "$VETH" up
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add "$NS_ADDR/30" dev eth0
  ip -n "$NS" link set eth0 up
  # Permanent neighbours: a link that is down drops packets, no ARP errors.
  ip neigh replace "$NS_ADDR" lladdr "$(ip -n "$NS" link show eth0 | awk '/link\/ether/ {print $2}')" dev "$VETH" nud permanent
  ip -n "$NS" neigh replace "$ROOT_ADDR" lladdr "$(ip link show "$VETH" | awk '/link\/ether/ {print $2}')" dev eth0 nud permanent
}
cleanup_ns() {
  if [ -e "/run/netns/$NS" ]; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
  fi
  ip link del "$VETH" 2>/dev/null || true
}
# shape QDISC ARGS...: the same qdisc on both ends of the link (none: clear,
# also the loss rules below).
shape() {
  tc qdisc del dev "$VETH" root 2>/dev/null || true
  ip netns exec "$NS" tc qdisc del dev eth0 root 2>/dev/null || true
  ip netns exec "$NS" iptables -F INPUT 2>/dev/null || true
  ip netns exec "$NS" iptables -F OUTPUT 2>/dev/null || true
  [ $# -gt 0 ] || return 0
  tc qdisc add dev "$VETH" root "$@" && ip netns exec "$NS" tc qdisc add dev eth0 root "$@"
}
# lose PERCENT: drop that share of packets each way at random (iptables'
# statistic match in the namespace), for kernels without sch_netem.
lose() {
  local p
  p=$(echo "scale=2; $1 / 100" | bc -l)
  ip netns exec "$NS" iptables -A INPUT -i eth0 -m statistic --mode random --probability "$p" -j DROP &&
    ip netns exec "$NS" iptables -A OUTPUT -o eth0 -m statistic --mode random --probability "$p" -j DROP
}
NS_AGENT=""
ns_agent() {
  [ -n "$NS_AGENT" ] && kill -0 "$(cat "$D/fa-ns.pid")" 2>/dev/null && return 0
  [ -e "/run/netns/$NS" ] || netns_up || return 1
  NS_AGENT=$(start_agent fa-ns fa-ns "$D/certs" "$NS_ADDR:7878" "" "$NS") || return 1
  fleet_config "$D/ns.toml" fc "$D/certs" "" "fa-ns=$NS_AGENT"
  echo warm >"$TEMPLATE/fault-trial.txt"
  # This machine's fallback takes R2's jobs: warm it too (untimed).
  build "$D/ns.toml" local-warm --executor local || { log "the local warm-up failed: $(tail -n 3 "$D/local-warm.err")"; return 1; }
  build "$D/ns.toml" ns-warm || { log "warm-up through fa-ns failed: $(tail -n 3 "$D/ns-warm.err")"; return 1; }
  [ "$(check ns-warm warm)" = fa-ns ] || { log "the warm-up was not built by fa-ns"; return 1; }
}

# --- R2: the link drops while the binary is arriving -----------------------------
r2() {
  log "R2: $TRIALS trials, agent fa-ns in namespace $NS, link shaped to $RATE"
  ns_agent || { row R2 FAIL "no agent in a network namespace (root, ip netns, veth)"; return; }
  local passed=0 i rx0 rx t_down t_end detect detects=() executor size
  size=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["size"])' "$D/ns-warm.json")
  for i in $(seq "$TRIALS"); do
    echo "r2-$i" >"$TEMPLATE/fault-trial.txt"
    fleet_config "$D/ns.toml" fc "$D/certs" "" "fa-ns=$NS_AGENT"
    shape tbf rate "$RATE" burst 32kbit latency 400ms || { row R2 FAIL "tc cannot shape the link (tbf)"; return; }
    rx0=$(cat "/sys/class/net/$VETH/statistics/rx_bytes")
    build "$D/ns.toml" "r2-$i" &
    local coordinator=$! deadline=$((SECONDS + 300)) dropped=0
    # The binary is the only large thing the agent sends: a third of it
    # through the link means it is arriving.
    while [ $SECONDS -lt $deadline ] && kill -0 "$coordinator" 2>/dev/null; do
      rx=$(cat "/sys/class/net/$VETH/statistics/rx_bytes")
      if [ $((rx - rx0)) -gt $((size / 3)) ]; then
        ip -n "$NS" link set eth0 down
        t_down=$(now)
        dropped=1
        break
      fi
      sleep 0.01
    done
    local built=0
    wait "$coordinator" && built=1
    ip -n "$NS" link set eth0 up
    shape
    if [ $dropped = 0 ]; then
      log "R2 trial $i: the link never carried the binary (built: $built): $(tail -n 3 "$D/r2-$i.err")"
      continue
    fi
    t_end=$(session_end "$D/r2-$i.err" fa-ns)
    detect=""
    [ -n "$t_end" ] && detect=$(echo "$t_end - $t_down" | bc -l) && detects+=("$detect")
    if [ $built = 0 ]; then
      log "R2 trial $i: the build failed: $(tail -n 5 "$D/r2-$i.err")"
    elif ! executor=$(check "r2-$i" "r2-$i"); then
      log "R2 trial $i: wrong result"
    elif [ "$executor" = fa-ns ]; then
      log "R2 trial $i: the binary still came from fa-ns: the drop was too late"
    elif [ -z "$detect" ] || [ "$(echo "$detect > 3.0" | bc -l)" = 1 ]; then
      log "R2 trial $i: loss detected after ${detect:-never} s"
    else
      passed=$((passed + 1))
    fi
  done
  local figure="n/a"
  [ ${#detects[@]} -gt 0 ] && figure=$(printf '%.2f s median, %.2f s max' "$(median "${detects[@]}")" "$(maximum "${detects[@]}")")
  local verdict=FAIL
  [ "$passed" = "$TRIALS" ] && verdict=PASS
  row R2 "$verdict" "$passed/$TRIALS links dropped mid-transfer ($size-byte binary at $RATE) completed here with the right binary, none partial; loss detected in $figure"
}

# --- R2b: a lossy, slow link ---------------------------------------------------
r2b() {
  log "R2b: 30% loss, 200 ms delay each way on the link to fa-ns"
  ns_agent || { row R2b FAIL "no agent in a network namespace"; return; }
  local t0 clean lossy executor
  echo r2b-clean >"$TEMPLATE/fault-trial.txt"
  t0=$(now)
  build "$D/ns.toml" r2b-clean || { row R2b FAIL "the clean build failed"; return; }
  clean=$(echo "$(now) - $t0" | bc -l)
  [ "$(check r2b-clean r2b-clean)" = fa-ns ] || { row R2b FAIL "the clean build did not run on fa-ns"; return; }
  echo r2b-lossy >"$TEMPLATE/fault-trial.txt"
  local impairment="30% loss + 200 ms delay each way (tc netem)"
  if ! shape netem delay 200ms loss 30% 2>/dev/null; then
    # This kernel has no sch_netem (Firecracker's here): the nearest real
    # thing is the loss alone, without the delay.
    shape
    lose 30 || { row R2b FAIL "neither tc netem nor iptables' statistic match works here"; return; }
    impairment="30% loss each way (iptables statistic; no delay: this kernel has no sch_netem for tc netem)"
  fi
  t0=$(now)
  if ! build "$D/ns.toml" r2b-lossy; then
    shape
    row R2b FAIL "the build over the lossy link failed: $(tail -n 3 "$D/r2b-lossy.err")"
    return
  fi
  lossy=$(echo "$(now) - $t0" | bc -l)
  shape
  if ! executor=$(check r2b-lossy r2b-lossy); then
    row R2b FAIL "the build over the lossy link gave a wrong binary"
    return
  fi
  row R2b PASS "$(printf 'a build over %s took %.1f s against %.1f s on the clean link (%.1fx), built by %s' "$impairment" "$lossy" "$clean" "$(echo "$lossy / $clean" | bc -l)" "$executor")"
}

# --- R3: the protocol decoder fuzzed -----------------------------------------------
r3() {
  log "R3: cargo fuzz, $FUZZ_RUNS executions"
  if ! command -v cargo-fuzz >/dev/null || ! rustup run nightly rustc --version >/dev/null 2>&1; then
    row R3 FAIL "cargo-fuzz or the nightly toolchain is missing (scripts/setup.sh installs cargo-fuzz)"
    return
  fi
  mkdir -p "$D/fuzz-corpus" "$D/fuzz-artifacts"
  local status=0
  (cd protocol/fuzz && cargo +nightly fuzz run decode_frame "$D/fuzz-corpus" -- \
    -runs="$FUZZ_RUNS" -artifact_prefix="$D/fuzz-artifacts/" -print_final_stats=1) >"$D/fuzz.log" 2>&1 || status=$?
  local done_line runs secs
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$D/fuzz.log" | tail -n 1 || true)
  runs=$(echo "$done_line" | awk '{print $2}')
  secs=$(echo "$done_line" | awk '{print $5}')
  local stats
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$D/fuzz.log" | tail -n 1 | sed 's/^#[0-9]*[[:space:]]*DONE[[:space:]]*//' || true)
  if [ $status != 0 ] || [ -z "$runs" ] || [ "$runs" -lt "$FUZZ_RUNS" ] || [ -n "$(ls -A "$D/fuzz-artifacts")" ]; then
    tail -n 30 "$D/fuzz.log" >&2
    row R3 FAIL "cargo fuzz exited $status after ${runs:-no} runs; artifacts: $(find "$D/fuzz-artifacts" -type f | tr '\n' ' ')"
    return
  fi
  row R3 PASS "$runs executions of decode_frame in $secs s ($((runs / (secs > 0 ? secs : 1))) exec/s), no crash; $stats"
}

# --- R4: bad certificates, both ways ------------------------------------------------
# status_of CONFIG NAME AGENT: how AGENT's connection stands in `fleet
# status --json`: `connected`, or `failed: REASON`.
status_of() {
  "$RC" --config "$1" fleet status --json >"$D/$2.status.json" 2>"$D/$2.status.err" || true
  python3 - "$D/$2.status.json" "$3" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
try:
    data = json.loads(text)
except Exception:
    print(f"no JSON: {text[:200]}")
    sys.exit()
agents = data.get("agents", data) if isinstance(data, dict) else data
for a in agents:
    if a.get("name") == sys.argv[2]:
        c = a.get("connection") or {}
        print(c.get("state", "?") + (": " + c["reason"] if "reason" in c else ""))
        break
else:
    print(f"agent {sys.argv[2]} not listed: {text[:200]}")
EOF
}
r4() {
  log "R4: bad certificates in both directions"
  local ok=0 total=0 notes=() line
  # Revoked names need a CRL, so issue and revoke them first.
  issue --coordinator fc-revoked
  issue --agent fa-revoked --san 127.0.0.1
  issue --coordinator fc-stranger
  issue --agent fa-elsewhere --san 127.0.0.1
  "$RC" ca revoke fc-revoked --dir "$D/ca" >/dev/null
  "$RC" ca revoke fa-revoked --dir "$D/ca" >/dev/null
  # Expired: the project's own `ca issue`, run four years in the past
  # (certificates last three).
  if command -v faketime >/dev/null; then
    faketime -f '-1500d' "$RC" ca issue --coordinator fc-expired --dir "$D/ca" --out "$D/certs" >/dev/null
    faketime -f '-1500d' "$RC" ca issue --agent fa-expired --san 127.0.0.1 --dir "$D/ca" --out "$D/certs" >/dev/null
  fi
  # Another fleet's CA.
  "$RC" ca init --dir "$D/other-ca" >/dev/null
  "$RC" ca issue --coordinator fc-other --dir "$D/other-ca" --out "$D/other-certs" >/dev/null
  "$RC" ca issue --agent fa-other --san 127.0.0.1 --dir "$D/other-ca" --out "$D/other-certs" >/dev/null
  # No certificate of any CA: self-signed.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=fa-self" \
    -addext "subjectAltName=DNS:fa-self,IP:127.0.0.1" -keyout "$D/certs/fa-self-key.pem" -out "$D/certs/fa-self.pem" 2>/dev/null

  local addr
  addr=$(start_agent fa-r4 fa-r4 "$D/certs" 127.0.0.1:0 "crl = \"$D/ca/crl.pem\"
allowed_coordinators = [\"fc\", \"fc-revoked\", \"fc-expired\", \"fc-other\"]") || { row R4 FAIL "agent fa-r4 did not start"; return; }
  fleet_config "$D/r4-good.toml" fc "$D/certs" "crl = \"$D/ca/crl.pem\"" "fa-r4=$addr"

  # check_case LABEL COORDINATOR_SAYS AGENT_LOG PATTERN_COORD PATTERN_AGENT
  check_case() {
    total=$((total + 1))
    local label=$1 said=$2 agent_log=$3 pc=$4 pa=$5 served
    served=$(status_of "$D/r4-good.toml" "r4-good-$total" fa-r4)
    if echo "$said" | grep -qiE "$pc" && echo "$agent_log" | grep -qiE "$pa" && [ "$served" = connected ]; then
      ok=$((ok + 1))
      log "R4 $label: refused; coordinator side: $(echo "$said" | head -c 300); agent side: $(echo "$agent_log" | tail -n 1 | head -c 300)"
    else
      notes+=("$label")
      log "R4 $label: NOT as expected; coordinator side: $said; agent side: $agent_log; good coordinator: $served"
    fi
  }
  # What the agent logged since line $1 of its log.
  since() { tail -n +"$(($1 + 1))" "$D/$2.log"; }

  # Coordinator -> agent: a bad coordinator certificate at the good agent.
  local case_name stem certdir n says
  for case_name in other-ca expired revoked name-mismatch; do
    case $case_name in
      other-ca) stem=fc-other certdir="$D/other-certs" ;;
      expired) stem=fc-expired certdir="$D/certs" ;;
      revoked) stem=fc-revoked certdir="$D/certs" ;;
      name-mismatch) stem=fc-stranger certdir="$D/certs" ;;
    esac
    if [ ! -f "$certdir/$stem.pem" ]; then
      total=$((total + 1)); notes+=("coordinator $case_name (no certificate: faketime missing?)"); continue
    fi
    fleet_config "$D/r4-$case_name.toml" "$stem" "$certdir" "" "fa-r4=$addr"
    n=$(wc -l <"$D/fa-r4.log")
    line=$(status_of "$D/r4-$case_name.toml" "r4-c-$case_name" fa-r4)
    sleep 0.3
    case $case_name in
      other-ca) says="not signed by the fleet CA" ;;
      expired) says="has expired" ;;
      revoked) says="is revoked" ;;
    esac
    if [ $case_name = name-mismatch ]; then
      check_case "coordinator $case_name" "$line" "$(since "$n" fa-r4)" \
        "does not accept this coordinator \\(coordinator fc-stranger is not on" "refused coordinator fc-stranger .*only accepts coordinators named"
    else
      check_case "coordinator $case_name" "$line" "$(since "$n" fa-r4)" \
        "rejected our certificate: it $says|rejected our certificate: it is $says" "refused the certificate of (a )?coordinator.*$says"
    fi
  done
  # Not the project's coordinator (it cannot be configured without a
  # certificate): which error quinn surfaces first on this side is a race
  # (the handshake's alert, or the connection lost at the first read).
  n=$(wc -l <"$D/fa-r4.log")
  line=$("$PEER" dial-without-certificate "$D/ca/ca.pem" "$addr" fa-r4 2>&1 || true)
  sleep 0.3
  check_case "coordinator none" "$line" "$(since "$n" fa-r4)" "^refused: .*(peer sent no certificates|connection lost|closed by peer)" \
    "refused the certificate of a coordinator .*: the coordinator presented no certificate"

  # Agent -> coordinator: real agents with bad certificates, dialled by the good coordinator.
  local bad
  for case_name in other-ca none expired revoked name-mismatch; do
    case $case_name in
      other-ca) bad=$(start_agent fa-bad-$case_name fa-other "$D/other-certs" 127.0.0.1:0 "" "") ;;
      none) bad=$(start_agent fa-bad-$case_name fa-self "$D/certs" 127.0.0.1:0 "" "") ;;
      expired) [ -f "$D/certs/fa-expired.pem" ] && bad=$(start_agent fa-bad-$case_name fa-expired "$D/certs" 127.0.0.1:0 "" "") ;;
      revoked) bad=$(start_agent fa-bad-$case_name fa-revoked "$D/certs" 127.0.0.1:0 "" "") ;;
      name-mismatch) bad=$(start_agent fa-bad-$case_name fa-elsewhere "$D/certs" 127.0.0.1:0 "" "") ;;
    esac || true
    if [ -z "${bad:-}" ]; then
      total=$((total + 1)); notes+=("agent $case_name (did not start: $(tail -n 2 "$D/fa-bad-$case_name.log" 2>/dev/null | tr '\n' ' '))"); continue
    fi
    # The good coordinator dials it under the name it expects there.
    local dial_name=fa-bad-$case_name
    [ $case_name = revoked ] && dial_name=fa-revoked
    [ $case_name = expired ] && dial_name=fa-expired
    [ $case_name = other-ca ] && dial_name=fa-other
    [ $case_name = none ] && dial_name=fa-self
    fleet_config "$D/r4-a-$case_name.toml" fc "$D/certs" "crl = \"$D/ca/crl.pem\"" "$dial_name=$bad" "fa-r4=$addr"
    line=$(status_of "$D/r4-a-$case_name.toml" "r4-a-$case_name" "$dial_name")
    sleep 0.3
    case $case_name in
      other-ca) says="is not signed by the fleet CA" ;;
      none) says="is not acceptable" ;;
      expired) says="has expired" ;;
      revoked) says="is revoked" ;;
      name-mismatch) says="does not carry the name that was dialled" ;;
    esac
    check_case "agent $case_name" "$line" "$(cat "$D/fa-bad-$case_name.log")" \
      "^failed: refused the certificate of agent $dial_name at .*: it $says" "rejected our certificate: it $says"
    kill -KILL "$(cat "$D/fa-bad-$case_name.pid")" 2>/dev/null || true
    bad=""
  done
  local verdict=FAIL
  [ "$ok" = "$total" ] && verdict=PASS
  local figure="$ok/$total bad certificates refused on both sides, the agent serving a good coordinator after each"
  [ ${#notes[@]} -gt 0 ] && figure+="; not as expected: ${notes[*]}"
  row R4 "$verdict" "$figure"
}

# --- R5: garbage and half-open handshakes ----------------------------------------------
r5() {
  log "R5: $FLOOD_SECS s of garbage datagrams and half-open QUIC handshakes"
  local addr garbage handshakes t0 base builds=0 good=0 times=() flood_pid
  loopback_agent || { row R5 FAIL "agent fa-1 did not start or build"; return; }
  addr=$ADDR1
  fleet_config "$D/r5.toml" fc "$D/certs" "" "fa-1=$addr"
  echo r5-base >"$TEMPLATE/fault-trial.txt"
  t0=$(now)
  build "$D/r5.toml" r5-base || { row R5 FAIL "baseline build failed"; return; }
  base=$(echo "$(now) - $t0" | bc -l)
  # 2,000 datagrams a second, a quarter of them handshakes.
  garbage=$((FLOOD_SECS * 1500))
  handshakes=$((FLOOD_SECS * 500))
  "$PEER" flood "$addr" "$garbage" "$handshakes" "$FLOOD_SECS" >"$D/flood.out" 2>&1 &
  flood_pid=$!
  PIDS+=("$flood_pid")
  sleep 0.5
  while kill -0 "$flood_pid" 2>/dev/null; do
    builds=$((builds + 1))
    echo "r5-$builds" >"$TEMPLATE/fault-trial.txt"
    t0=$(now)
    if build "$D/r5.toml" "r5-$builds" && [ "$(check "r5-$builds" "r5-$builds")" = fa-1 ]; then
      good=$((good + 1))
      times+=("$(echo "$(now) - $t0" | bc -l)")
    else
      log "R5 build $builds during the flood failed or ran elsewhere: $(tail -n 3 "$D/r5-$builds.err")"
    fi
  done
  wait "$flood_pid" || true
  local sent
  sent=$(cat "$D/flood.out")
  kill -0 "$(cat "$D/fa-1.pid")" 2>/dev/null || { row R5 FAIL "the agent died under the flood ($sent)"; return; }
  if [ "$good" = "$builds" ] && [ "$good" -gt 0 ]; then
    row R5 PASS "$(printf '%s; %d/%d builds through the agent during it succeeded (median %.1f s, %.1f s before the flood)' "$sent" "$good" "$builds" "$(median "${times[@]}")" "$base")"
  else
    row R5 FAIL "$sent; $good/$builds builds through the agent during it succeeded"
  fi
}

for r in "${ROWS[@]}"; do
  case $r in
    R1) r1 ;;
    R2) r2 ;;
    R2b) r2b ;;
    R3) r3 ;;
    R4) r4 ;;
    R5) r5 ;;
  esac
done

if [ ${#FAILED[@]} -gt 0 ]; then
  log "failed rows: ${FAILED[*]} (mode $MODE; logs in $D)"
  exit 1
fi
log "every row passed (mode $MODE)"
