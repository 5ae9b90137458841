#!/usr/bin/env bash
# Starts the shared binary cache stores the tests use, on 127.0.0.1 and
# free ports, all state inside DIR: a Redis server (Debian's redis-server)
# and a WebDAV server (Debian's apache2 with mod_dav and mod_dav_fs).
# Idempotent: a store whose process still runs is left alone. Installs the
# two packages when they are missing (needs root for that).
#
# Usage: scripts/start-cache-stores.sh DIR           start both, print DIR/stores.env
#        scripts/start-cache-stores.sh --stop DIR [redis|webdav]
#
# Writes DIR/stores.env with
#   REDIS_URL=redis://127.0.0.1:PORT
#   WEBDAV_URL=webdav+http://127.0.0.1:PORT/cache/
# which is what `binary_cache_shared` takes.
set -euo pipefail

log() { printf '[start-cache-stores] %s\n' "$*" >&2; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_one() {
  local pidfile=$1
  if pid_alive "$pidfile"; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = "--stop" ]; then
  DIR=${2:?usage: start-cache-stores.sh --stop DIR [redis|webdav]}
  which=${3:-all}
  if [ "$which" = all ] || [ "$which" = redis ]; then stop_one "$DIR/redis/redis.pid"; fi
  if [ "$which" = all ] || [ "$which" = webdav ]; then stop_one "$DIR/webdav/httpd.pid"; fi
  exit 0
fi

DIR=${1:?usage: start-cache-stores.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

need=()
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/sbin/apache2 ] && [ -f /usr/lib/apache2/modules/mod_dav_fs.so ] || need+=(apache2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "ERROR: ${need[*]} missing and this is not root; install them: apt-get install ${need[*]}"
    exit 1
  fi
  log "installing ${need[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    log "ERROR: apt-get install ${need[*]} failed; run it by hand to see why"
    exit 1
  fi
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_port() {
  local port=$1 what=$2 log_file=$3
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  log "ERROR: $what did not start listening on 127.0.0.1:$port; its log ($log_file):"
  tail -n 20 "$log_file" >&2 || true
  exit 1
}

# --- Redis -------------------------------------------------------------------
mkdir -p "$DIR/redis"
if pid_alive "$DIR/redis/redis.pid" && [ -f "$DIR/redis/port" ]; then
  redis_port=$(cat "$DIR/redis/port")
else
  redis_port=$(free_port)
  echo "$redis_port" > "$DIR/redis/port"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$DIR/redis" \
    --save '' --appendonly no --protected-mode yes \
    --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log"
  wait_for_port "$redis_port" redis-server "$DIR/redis/redis.log"
  for _ in $(seq 50); do [ -s "$DIR/redis/redis.pid" ] && break; sleep 0.1; done
  log "redis-server on 127.0.0.1:$redis_port (pid $(cat "$DIR/redis/redis.pid"))"
fi

# --- WebDAV (apache2 + mod_dav_fs) --------------------------------------------
W=$DIR/webdav
mkdir -p "$W/root/cache" "$W/lock" "$W/logs"
# apache2 drops to www-data: it must write the DAV tree and its lock database.
chown -R www-data:www-data "$W/root" "$W/lock" 2>/dev/null || chmod -R a+rwX "$W/root" "$W/lock"
if pid_alive "$W/httpd.pid" && [ -f "$W/port" ]; then
  webdav_port=$(cat "$W/port")
else
  webdav_port=$(free_port)
  echo "$webdav_port" > "$W/port"
  M=/usr/lib/apache2/modules
  cat > "$W/httpd.conf" <<EOF
ServerRoot "$W"
ServerName 127.0.0.1
Listen 127.0.0.1:$webdav_port
PidFile "$W/httpd.pid"
ErrorLog "$W/logs/error.log"
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule dav_module $M/mod_dav.so
LoadModule dav_fs_module $M/mod_dav_fs.so
DocumentRoot "$W/root"
DAVLockDB "$W/lock/DAVLock"
LimitRequestBody 0
<Directory "$W/root">
  Dav On
  Require all granted
</Directory>
EOF
  if ! /usr/sbin/apache2 -f "$W/httpd.conf" -k start 2>"$W/logs/start.log"; then
    log "ERROR: apache2 did not start:"
    cat "$W/logs/start.log" >&2
    exit 1
  fi
  wait_for_port "$webdav_port" "apache2 (WebDAV)" "$W/logs/error.log"
  for _ in $(seq 50); do [ -s "$W/httpd.pid" ] && break; sleep 0.1; done
  log "apache2 WebDAV on 127.0.0.1:$webdav_port (pid $(cat "$W/httpd.pid"))"
fi

# Renamed into place: a reader never sees half a file.
cat > "$DIR/stores.env.tmp" <<EOF
REDIS_URL=redis://127.0.0.1:$redis_port
WEBDAV_URL=webdav+http://127.0.0.1:$webdav_port/cache/
EOF
mv -f "$DIR/stores.env.tmp" "$DIR/stores.env"
cat "$DIR/stores.env"
