#!/usr/bin/env bash
# SSH test "hosts" with their own addresses: one network namespace per host
# (rustle-h1..N), each joined to the root namespace by a veth pair (root side
# rustle-vI 10.200.I.1/30, host side eth0 10.200.I.2/30) and running its own
# sshd on 10.200.I.2:22 in its own UTS namespace (hostname rustle-hI).
# Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); installs openssh-server if
# missing. Idempotent: running `up` again repairs what is missing and leaves
# running hosts alone.
#
# Usage:
#   scripts/netns-hosts.sh up DIR N      create hosts 1..N (removes hosts > N)
#   scripts/netns-hosts.sh down          remove every rustle-hI namespace,
#                                        its veth pair and its sshd
#   scripts/netns-hosts.sh blackhole I   host I drops every packet (its eth0
#                                        is set down; the root side keeps a
#                                        permanent neighbour entry, so a
#                                        connect times out, never refused)
#   scripts/netns-hosts.sh restore I     undoes blackhole
#   scripts/netns-hosts.sh status        prints the hosts that exist
#
# `up` writes into DIR: client_key (one client key for all hosts),
# known_hosts (each host's key pinned under the alias rustle-hI),
# ssh_config (`Host rustle-hI 10.200.I.2` entries: HostName, User, the client
# key, the pinned known_hosts, BatchMode), hosts.tsv (name, address per line,
# also printed) and rustle-hI/ (host key, sshd_config, sshd.log at LogLevel
# INFO, so a test can see which host accepted a connection).
# Connect with `ssh -F DIR/ssh_config rustle-h1` or `... 10.200.1.2`.
#
# Traffic stays on this machine: the addresses exist only in the namespaces
# created here, `up` refuses to run if anything else on the machine uses
# 10.200.0.0/16, and while hosts exist an `unreachable 10.200.0.0/16` route
# keeps a packet for a removed host from ever leaving through the default
# route. Nothing is forwarded (the namespaces have no default route).
#
# Several users at once: every command takes a short lock; a caller that
# uses the hosts for a while (a test) should also hold an exclusive flock on
# /tmp/rustle-netns-hosts.session.lock from before `up` until after `down`.
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 10.200.0.0/16 is in use elsewhere
# on this machine, 77 network namespaces cannot be created here (no
# privileges: not root, or a container without CAP_SYS_ADMIN).
set -euo pipefail

NS_PREFIX=rustle-h
VETH_PREFIX=rustle-v
NET=10.200
GUARD_METRIC=4242
MAX_HOSTS=50
EXIT_NO_PRIVILEGES=77
EXIT_RANGE_IN_USE=3

log() { printf '[netns-hosts] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() {
  sed -n '/^# Usage:/,/^# *scripts.*status/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
no_privileges() {
  log "cannot create network namespaces here: $*"
  log "this needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN (ip netns add, unshare --uts);"
  log "run as root on a machine or VM, or skip the namespace tests with RUSTLE_SKIP_NETNS_TESTS=1"
  exit $EXIT_NO_PRIVILEGES
}

# Short lock around every command (two `up`s at once would race).
take_lock() {
  mkdir -p /run/lock 2>/dev/null || true
  local lock=/run/lock/rustle-netns-hosts.lock
  [ -w /run/lock ] || lock=/tmp/rustle-netns-hosts.lock
  exec 9>"$lock"
  flock -w 120 9 || die "another netns-hosts.sh held $lock for 120 s"
}

need_tools() {
  local missing=()
  for tool in ip unshare flock timeout; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (apt-get install iproute2 util-linux coreutils)"
}

install_ssh() {
  [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null && command -v ssh >/dev/null && return 0
  log "installing openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  # The same lock as scripts/start-sshd.sh (tests run in parallel).
  exec 8>/tmp/rustle-start-sshd-apt.lock
  flock -w 600 8 || die "waited 600 s for another apt-get"
  if [ ! -x /usr/sbin/sshd ]; then
    apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1 || {
      apt-get update -qq -o Acquire::Retries=3 >/dev/null 2>&1 || true
      apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
    }
  fi
  flock -u 8
}

ns_name() { echo "$NS_PREFIX$1"; }
veth_name() { echo "$VETH_PREFIX$1"; }
ns_exists() { [ -e "/run/netns/$1" ]; }

# Indices of the rustle-hI namespaces that exist.
existing_indices() {
  local f
  for f in /run/netns/"$NS_PREFIX"*; do
    [ -e "$f" ] || continue
    f=${f##*/}
    [[ ${f#"$NS_PREFIX"} =~ ^[0-9]+$ ]] && echo "${f#"$NS_PREFIX"}"
  done | sort -n
  return 0
}

# Kills every process in namespace $1 (only our sshds and their sessions
# live there) and waits, bounded, until they are gone.
kill_ns_processes() {
  local ns=$1 pids deadline
  ns_exists "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  deadline=$((SECONDS + 5))
  while [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ]; do
    if [ $SECONDS -ge $deadline ]; then
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  deadline=$((SECONDS + 5))
  while [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ]; do
    [ $SECONDS -lt $deadline ] || die "processes in $ns survived SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')"
    sleep 0.05
  done
}

remove_host() {
  local i=$1 ns veth
  ns=$(ns_name "$i")
  veth=$(veth_name "$i")
  kill_ns_processes "$ns"
  # Deleting the namespace destroys its end of the veth pair and with it ours.
  if ns_exists "$ns"; then ip netns del "$ns" || die "cannot delete namespace $ns"; fi
  if ip link show "$veth" >/dev/null 2>&1; then ip link del "$veth" 2>/dev/null || true; fi
}

# Refuses to touch 10.200.0.0/16 when anything but our veths uses it.
check_range_free() {
  local foreign
  foreign=$(
    {
      ip -o -4 addr show to "$NET.0.0/16" | awk '{print $2}'
      ip -4 route show root "$NET.0.0/16" table all | awk '
        $1 == "unreachable" && / metric '"$GUARD_METRIC"'/ { next }
        { for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); next } print "route:" $0 }'
    } | grep -v -E "^$VETH_PREFIX[0-9]+$" | sort -u || true
  )
  if [ -n "$foreign" ]; then
    log "$NET.0.0/16 is already used on this machine (by: $(echo "$foreign" | tr '\n' ' ')); refusing to add test hosts there"
    exit $EXIT_RANGE_IN_USE
  fi
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

write_sshd_config() {
  local hdir=$1 address=$2
  cat <<EOF
Port 22
ListenAddress $address
HostKey $hdir/host_key
PidFile $hdir/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel INFO
EOF
}

ensure_ns() {
  local err
  ns_exists "$1" && return 0
  err=$(ip netns add "$1" 2>&1) || no_privileges "ip netns add $1: $err"
}

up_host() {
  local i=$1 ns veth hdir address root_address mac running=0 pid
  ns=$(ns_name "$i")
  veth=$(veth_name "$i")
  address="$NET.$i.2"
  root_address="$NET.$i.1"
  hdir="$DIR/$ns"

  ensure_ns "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    # A half-made pair from an interrupted run: start the pair afresh.
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip -n "$ns" link show eth0 >/dev/null 2>&1 || die "$ns has no eth0 although $veth exists; run: $0 down"
  sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1" >/dev/null 2>&1 || true
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
  ip addr replace "$root_address/30" dev "$veth"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$address/30" dev eth0
  ip -n "$ns" link set eth0 up
  # Permanent neighbour entries: no ARP, so a blackholed host drops packets
  # (connect times out) instead of failing resolution ("No route to host").
  mac=$(ip -n "$ns" link show eth0 | awk '/link\/ether/ {print $2}')
  ip neigh replace "$address" lladdr "$mac" dev "$veth" nud permanent
  mac=$(ip link show "$veth" | awk '/link\/ether/ {print $2}')
  ip -n "$ns" neigh replace "$root_address" lladdr "$mac" dev eth0 nud permanent

  mkdir -p "$hdir"
  [ -f "$hdir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C "rustle-test-$ns" -f "$hdir/host_key"
  write_sshd_config "$hdir" "$address" >"$hdir/sshd_config.new"
  if [ -f "$hdir/sshd.pid" ] && cmp -s "$hdir/sshd_config.new" "$hdir/sshd_config"; then
    pid=$(cat "$hdir/sshd.pid")
    if ip netns pids "$ns" 2>/dev/null | grep -qx "$pid" && port_open "$address" 22 \
      && [ "$(nsenter --target "$pid" --uts hostname 2>/dev/null)" = "$ns" ]; then
      running=1
    fi
  fi
  mv "$hdir/sshd_config.new" "$hdir/sshd_config"
  if [ $running = 0 ]; then
    kill_ns_processes "$ns"
    rm -f "$hdir/sshd.pid"
    /usr/sbin/sshd -t -f "$hdir/sshd_config"
    # sshd daemonizes; it and every session keep the namespace's network and
    # its own hostname.
    ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$1" && exec /usr/sbin/sshd -f "$2" -E "$3"' \
      sh "$ns" "$hdir/sshd_config" "$hdir/sshd.log"
    local deadline=$((SECONDS + 10))
    until [ -s "$hdir/sshd.pid" ] && port_open "$address" 22; do
      [ $SECONDS -lt $deadline ] || die "sshd of $ns does not listen on $address:22 after 10 s; see $hdir/sshd.log"
      sleep 0.05
    done
  fi
  echo "$ns $(cut -d' ' -f1,2 "$hdir/host_key.pub")" >>"$DIR/known_hosts.new"
  cat >>"$DIR/ssh_config.new" <<EOF
Host $ns $address
  HostName $address
  Port 22
  User $(id -un)
  IdentityFile $DIR/client_key
  IdentitiesOnly yes
  HostKeyAlias $ns
  UserKnownHostsFile $DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes

EOF
  printf '%s\t%s\n' "$ns" "$address" >>"$DIR/hosts.tsv.new"
}

cmd_up() {
  DIR=${1:?usage: netns-hosts.sh up DIR N}
  local n=${2:?usage: netns-hosts.sh up DIR N} i
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAX_HOSTS ] || die "N must be 1..$MAX_HOSTS, not $n"
  need_tools
  install_ssh
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  check_range_free
  # The first namespace shows whether this machine allows them at all,
  # before anything else is changed.
  ensure_ns "$(ns_name 1)"
  ip route replace unreachable "$NET.0.0/16" metric $GUARD_METRIC

  [ -f "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C rustle-test-client -f "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  chmod 600 "$DIR/client_key" "$DIR/authorized_keys"

  for i in $(existing_indices); do
    [ "$i" -le "$n" ] || remove_host "$i"
  done
  : >"$DIR/known_hosts.new"
  : >"$DIR/ssh_config.new"
  : >"$DIR/hosts.tsv.new"
  for i in $(seq 1 "$n"); do
    up_host "$i"
  done
  mv "$DIR/known_hosts.new" "$DIR/known_hosts"
  mv "$DIR/ssh_config.new" "$DIR/ssh_config"
  mv "$DIR/hosts.tsv.new" "$DIR/hosts.tsv"
  cat "$DIR/hosts.tsv"
}

cmd_down() {
  local i
  for i in $(existing_indices); do
    remove_host "$i"
  done
  # Pairs whose namespace vanished some other way.
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$VETH_PREFIX[0-9]+$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip route del unreachable "$NET.0.0/16" metric $GUARD_METRIC 2>/dev/null || true
}

host_index() {
  local i=${1:?host index I required}
  [[ $i =~ ^[0-9]+$ ]] || die "host index must be a number, not $i"
  ns_exists "$(ns_name "$i")" || die "host $(ns_name "$i") does not exist; run: $0 up DIR N"
  echo "$i"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    [ $# -eq 2 ] || usage
    [ "$(id -u)" = 0 ] || no_privileges "not root (uid $(id -u))"
    take_lock
    cmd_up "$@"
    ;;
  down)
    [ $# -le 1 ] || usage
    [ "$(id -u)" = 0 ] || no_privileges "not root (uid $(id -u))"
    take_lock
    cmd_down
    ;;
  blackhole | restore)
    [ $# -eq 1 ] || usage
    [ "$(id -u)" = 0 ] || no_privileges "not root (uid $(id -u))"
    take_lock
    i=$(host_index "$1")
    if [ "$cmd" = blackhole ]; then
      ip -n "$(ns_name "$i")" link set eth0 down
    else
      ip -n "$(ns_name "$i")" link set eth0 up
    fi
    ;;
  status)
    for i in $(existing_indices); do
      ns=$(ns_name "$i")
      state=$(ip -n "$ns" -o link show eth0 2>/dev/null | grep -q 'state UP' && echo up || echo blackholed)
      printf '%s\t%s\t%s\t%s\n' "$ns" "$NET.$i.2" "$state" "$(ip netns pids "$ns" | wc -l) process(es)"
    done
    ;;
  *) usage ;;
esac
