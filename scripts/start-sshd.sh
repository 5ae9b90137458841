#!/usr/bin/env bash
# Starts sshd test hosts on 127.0.0.1, each with its own port and host key,
# plus one client key, a pinned known_hosts and an ssh config naming every
# host, all inside DIR. Idempotent: a host whose sshd still runs with the
# same configuration is left alone. Installs openssh-server if missing.
#
# Usage: scripts/start-sshd.sh DIR [NAME[:MODE] ...]      (default: host1)
#        scripts/start-sshd.sh --stop DIR
# MODE:
#   normal    a plain sshd (the default)
#   garbage   a forced command that answers garbage to every command
#   musl      a forced command that runs the given command with a PATH whose
#             `ldd` and `getconf` answer like musl's (this machine has no
#             musl userland)
#   windows   a forced command that answers like Windows OpenSSH with cmd.exe:
#             `sh` is not recognized, `powershell ... -EncodedCommand` gives
#             a Windows-shaped probe answer (no Windows here)
#   wrongkey  a plain sshd whose known_hosts entry pins a different key
#             (host key mismatch)
#
# Writes: DIR/ssh_config (Host NAME entries), DIR/known_hosts, DIR/client_key,
# DIR/hosts.tsv (name, mode, port per line) and prints hosts.tsv.
# Tests connect with `ssh -F DIR/ssh_config NAME`.
set -euo pipefail

log() { printf '[start-sshd] %s\n' "$*" >&2; }

if [ "${1:-}" = "--stop" ]; then
  DIR=${2:?usage: start-sshd.sh --stop DIR}
  for pidfile in "$DIR"/*/sshd.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  exit 0
fi

DIR=${1:?usage: start-sshd.sh DIR [NAME[:MODE] ...]}
shift
SPECS=("$@")
[ ${#SPECS[@]} -eq 0 ] && SPECS=(host1)

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "openssh-server is not installed and this is not root; run: apt-get install openssh-server"
    exit 1
  fi
  log "installing openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  # Serialise concurrent installs (tests run in parallel).
  exec 9>/tmp/rustle-start-sshd-apt.lock
  flock 9
  if [ ! -x /usr/sbin/sshd ]; then
    apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1 || {
      apt-get update -qq -o Acquire::Retries=3 >/dev/null 2>&1 || true
      apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
    }
  fi
  flock -u 9
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# One set-up at a time per directory (parallel tests share it).
exec 8>"$DIR/.lock"
flock 8

[ -f "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C rustle-test-client -f "$DIR/client_key"
[ -f "$DIR/other_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C rustle-test-other -f "$DIR/other_host_key"
cp "$DIR/client_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/client_key" "$DIR/authorized_keys"

free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  log "no free port found"
  return 1
}

write_forced_commands() {
  local hdir=$1 mode=$2
  case "$mode" in
    garbage)
      cat >"$hdir/forced.sh" <<'SH'
#!/bin/sh
echo "Welcome to the appliance shell"
echo "%% unknown command, type help"
exit 0
SH
      ;;
    musl)
      mkdir -p "$hdir/fakebin"
      cat >"$hdir/fakebin/ldd" <<'SH'
#!/bin/sh
# musl's ldd is its loader; `ldd --version` prints this on stderr, exit 1.
echo "musl libc (x86_64)" >&2
echo "Version 1.2.4" >&2
echo "Dynamic Program Loader" >&2
exit 1
SH
      cat >"$hdir/fakebin/getconf" <<'SH'
#!/bin/sh
# musl's getconf knows no GNU_LIBC_VERSION.
echo "getconf: $1: unknown variable" >&2
exit 1
SH
      chmod +x "$hdir/fakebin/ldd" "$hdir/fakebin/getconf"
      cat >"$hdir/forced.sh" <<SH
#!/bin/sh
PATH="$hdir/fakebin:\$PATH"
export PATH
exec /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
SH
      ;;
    windows)
      cat >"$hdir/forced.sh" <<'SH'
#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  powershell*-EncodedCommand*)
    printf 'RUSTLE_PROBE_BEGIN 1\r\nos=Windows\r\nmachine=AMD64\r\nos_version_id=10.0.20348.0\r\nRUSTLE_PROBE_END\r\n'
    ;;
  *)
    word=${SSH_ORIGINAL_COMMAND%% *}
    printf "'%s' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n" "$word" >&2
    exit 1
    ;;
esac
SH
      ;;
  esac
  [ -f "$hdir/forced.sh" ] && chmod +x "$hdir/forced.sh"
  return 0
}

: >"$DIR/known_hosts.new"
: >"$DIR/ssh_config.new"
: >"$DIR/hosts.tsv.new"
for spec in "${SPECS[@]}"; do
  name=${spec%%:*}
  mode=normal
  [ "$spec" != "$name" ] && mode=${spec#*:}
  case "$mode" in normal|garbage|musl|windows|wrongkey) ;; *) log "unknown mode $mode for $name"; exit 2 ;; esac
  hdir="$DIR/$name"
  mkdir -p "$hdir"
  [ -f "$hdir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C "rustle-test-$name" -f "$hdir/host_key"
  rm -f "$hdir/forced.sh"
  write_forced_commands "$hdir" "$mode"

  running=0
  if [ -f "$hdir/sshd.pid" ] && [ -f "$hdir/port" ] && [ -f "$hdir/mode" ] && [ "$(cat "$hdir/mode")" = "$mode" ]; then
    pid=$(cat "$hdir/sshd.pid")
    if kill -0 "$pid" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$hdir/port")") 2>/dev/null; then
      running=1
    fi
  fi
  if [ $running = 0 ]; then
    if [ -f "$hdir/sshd.pid" ]; then kill "$(cat "$hdir/sshd.pid")" 2>/dev/null || true; fi
    port=$(free_port)
    {
      echo "Port $port"
      echo "ListenAddress 127.0.0.1"
      echo "HostKey $hdir/host_key"
      echo "PidFile $hdir/sshd.pid"
      echo "AuthorizedKeysFile $DIR/authorized_keys"
      echo "PasswordAuthentication no"
      echo "KbdInteractiveAuthentication no"
      echo "PubkeyAuthentication yes"
      echo "PermitRootLogin prohibit-password"
      echo "UsePAM no"
      echo "StrictModes no"
      echo "PrintMotd no"
      echo "LogLevel ERROR"
      [ -f "$hdir/forced.sh" ] && echo "ForceCommand $hdir/forced.sh"
    } >"$hdir/sshd_config"
    /usr/sbin/sshd -t -f "$hdir/sshd_config"
    /usr/sbin/sshd -f "$hdir/sshd_config" -E "$hdir/sshd.log"
    echo "$port" >"$hdir/port"
    echo "$mode" >"$hdir/mode"
    deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then log "sshd for $name did not listen on $port; see $hdir/sshd.log"; exit 1; fi
      sleep 0.1
    done
  fi
  port=$(cat "$hdir/port")
  if [ "$mode" = wrongkey ]; then
    pinned="$DIR/other_host_key.pub"
  else
    pinned="$hdir/host_key.pub"
  fi
  echo "rustle-test-$name $(cut -d' ' -f1,2 "$pinned")" >>"$DIR/known_hosts.new"
  {
    echo "Host $name"
    echo "  HostName 127.0.0.1"
    echo "  Port $port"
    echo "  User $(id -un)"
    echo "  IdentityFile $DIR/client_key"
    echo "  IdentitiesOnly yes"
    echo "  HostKeyAlias rustle-test-$name"
    echo "  UserKnownHostsFile $DIR/known_hosts"
    echo "  GlobalKnownHostsFile /dev/null"
    echo "  StrictHostKeyChecking yes"
    echo "  BatchMode yes"
    echo
  } >>"$DIR/ssh_config.new"
  printf '%s\t%s\t%s\n' "$name" "$mode" "$port" >>"$DIR/hosts.tsv.new"
done
mv "$DIR/known_hosts.new" "$DIR/known_hosts"
mv "$DIR/ssh_config.new" "$DIR/ssh_config"
mv "$DIR/hosts.tsv.new" "$DIR/hosts.tsv"
cat "$DIR/hosts.tsv"
