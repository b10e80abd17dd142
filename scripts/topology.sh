#!/usr/bin/env bash
# A local MariaDB replication topology for the demo and the tests: a primary and two GTID
# replicas on 127.0.0.1 (ports 3306, 3307, 3308; base port from RWSPLIT_TOPO_PORT).
#
#   scripts/topology.sh up | down [--purge] | status | wait-sync
#   scripts/topology.sh stop-sql|start-sql|lag SECONDS|unlag  REPLICA
#   scripts/topology.sh stop|start|kill NAME        (NAME: primary, replica1, replica2)
#   scripts/topology.sh sql NAME "statement"
#
# Data, sockets, logs and pid files live under $RWSPLIT_TOPO_DIR (default /tmp/rwsplit-topology).
# `down` stops exactly the servers this script started, by the pid in their pid files.
set -euo pipefail

DIR=${RWSPLIT_TOPO_DIR:-/tmp/rwsplit-topology}
BASE=${RWSPLIT_TOPO_PORT:-3306}
NAMES=(primary replica1 replica2)
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

die() { echo "topology: $*" >&2; exit 1; }
port_of() { case $1 in primary) echo "$BASE";; replica1) echo $((BASE + 1));; replica2) echo $((BASE + 2));; *) die "unknown instance '$1' (primary, replica1, replica2)";; esac; }
sid_of() { case $1 in primary) echo 1;; replica1) echo 2;; replica2) echo 3;; esac; }
pid_of() { local f="$DIR/$1/mariadbd.pid"; [ -s "$f" ] && cat "$f" || true; }
# Alive = the pid file's process exists, is not a zombie (a killed server whose parent
# does not reap it) and is a mariadbd (not a reused pid).
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] \
  && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q mariadbd; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && alive "$p"; }
sql() { mariadb --socket="$DIR/$1/mysqld.sock" -uroot -N -B -e "$2"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# TLS for the servers (tests of rwsplit's [backend_tls]): a CA, a server certificate for
# 127.0.0.1 and the name rwsplit-backend, and a client certificate, all under $DIR/tls and made
# once. Without openssl the servers run without TLS.
make_tls() {
  local t="$DIR/tls"
  [ -s "$t/client.pem" ] && return 0
  command -v openssl >/dev/null || { echo "topology: no openssl; servers without TLS" >&2; return 0; }
  mkdir -p "$t"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$t/ca-key.pem" -out "$t/ca.pem" -days 3650 \
    -subj "/CN=rwsplit test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  local who ext
  for who in server client; do
    openssl req "${ec[@]}" -keyout "$t/$who-key.pem" -out "$t/$who.csr" -subj "/CN=rwsplit-$who" 2>/dev/null
    if [ $who = server ]; then ext="subjectAltName=IP:127.0.0.1,DNS:rwsplit-backend
extendedKeyUsage=serverAuth"; else ext="extendedKeyUsage=clientAuth"; fi
    printf '%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' "$ext" > "$t/$who.ext"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$t/$who.ext" -out "$t/$who.pem.new" 2>/dev/null
    mv "$t/$who.pem.new" "$t/$who.pem"
  done
  chown -R mysql:mysql "$t"
}

write_cnf() {
  local name=$1 port sid ro=OFF
  port=$(port_of "$name"); sid=$(sid_of "$name")
  [ "$name" = primary ] || ro=ON
  cat > "$DIR/$name/my.cnf" <<CNF
[mariadbd]
datadir=$DIR/$name/data
socket=$DIR/$name/mysqld.sock
pid-file=$DIR/$name/mariadbd.pid
log-error=$DIR/$name/error.log
bind-address=127.0.0.1
port=$port
user=mysql
server_id=$sid
log_bin=$DIR/$name/binlog
relay_log=$DIR/$name/relay
binlog_format=ROW
log_slave_updates=ON
gtid_strict_mode=ON
gtid_domain_id=0
read_only=$ro
userstat=1
max_allowed_packet=1G
local_infile=ON
skip-name-resolve
performance_schema=OFF
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
innodb_flush_log_at_trx_commit=2
sync_binlog=0
# Tests and benchmarks write a few GB of binary log an hour (20 MiB blobs, sysbench): purge
# logs older than an hour, in files small enough that a purge comes often. A replica stopped
# for longer may not catch up: 'down --purge', then 'up'.
max_binlog_size=256M
binlog_expire_logs_seconds=3600
max_connections=2000
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
slave_parallel_threads=0
CNF
  if [ -s "$DIR/tls/client.pem" ]; then
    printf 'ssl_ca=%s\nssl_cert=%s\nssl_key=%s\n' "$DIR/tls/ca.pem" "$DIR/tls/server.pem" \
      "$DIR/tls/server-key.pem" >> "$DIR/$name/my.cnf"
  fi
}

start_one() {
  local name=$1 port
  port=$(port_of "$name")
  if running "$name"; then return 0; fi
  if port_busy "$port"; then
    die "port $port is in use by another process (is the system MariaDB running? 'systemctl stop mariadb', or set RWSPLIT_TOPO_PORT)"
  fi
  mkdir -p "$DIR/$name"
  write_cnf "$name"
  if [ ! -d "$DIR/$name/data/mysql" ]; then
    mariadb-install-db --defaults-file="$DIR/$name/my.cnf" --auth-root-authentication-method=socket \
      --skip-test-db > "$DIR/$name/install.log" 2>&1 || { tail -20 "$DIR/$name/install.log"; die "mariadb-install-db failed for $name"; }
  fi
  chown -R mysql:mysql "$DIR/$name"
  # 9>&-: the server must not inherit (and hold) the lock `up` takes.
  "$MARIADBD" --defaults-file="$DIR/$name/my.cnf" >/dev/null 2>&1 9>&- &
  for _ in $(seq 1 300); do
    if [ -S "$DIR/$name/mysqld.sock" ] && sql "$name" "SELECT 1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  tail -20 "$DIR/$name/error.log" >&2 || true
  die "$name did not start within 30 s (log: $DIR/$name/error.log)"
}

setup_primary() {
  sql primary "
    CREATE DATABASE IF NOT EXISTS app;
    CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
    GRANT ALL ON app.* TO 'app'@'%';
    CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
    GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
    CREATE USER IF NOT EXISTS 'rwsplit_monitor'@'%' IDENTIFIED BY 'monitor';
    GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'rwsplit_monitor'@'%';
    GRANT ALL ON rwsplit.* TO 'rwsplit_monitor'@'%';
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'root';
    GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
}

setup_replica() {
  local name=$1
  if [ -z "$(sql "$name" "SHOW SLAVE STATUS")" ]; then
    sql "$name" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$BASE, MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
  fi
}

# Waits until each running replica has applied everything the primary had logged when called
# (or more: other writers may go on meanwhile, so "equal" could never come).
wait_sync() {
  local want r
  want=$(sql primary "SELECT @@gtid_binlog_pos")
  for name in replica1 replica2; do
    running "$name" || continue
    r=$(sql "$name" "SELECT MASTER_GTID_WAIT('$want', 60)")
    [ "$r" = 0 ] || die "$name did not catch up within 60 s (has '$(sql "$name" "SELECT @@gtid_slave_pos")', primary had '$want')"
  done
}

stop_one() {
  local name=$1 pid
  pid=$(pid_of "$name")
  [ -n "$pid" ] && alive "$pid" || return 0
  kill "$pid"
  for _ in $(seq 1 300); do alive "$pid" || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

cmd=${1:-}; shift || true
case $cmd in
  up)
    # Test processes call `up` concurrently: one at a time.
    mkdir -p "$DIR"; exec 9>"$DIR/.lock"; flock 9
    id mysql >/dev/null 2>&1 || die "no 'mysql' user: install mariadb-server first"
    make_tls
    for n in "${NAMES[@]}"; do start_one "$n"; done
    # Idempotent: also brings an older data dir up to the current users and grants.
    setup_primary
    for n in replica1 replica2; do setup_replica "$n"; done
    wait_sync
    echo "topology up: primary :$BASE, replica1 :$((BASE + 1)), replica2 :$((BASE + 2)) (dir $DIR)"
    ;;
  down)
    for n in replica2 replica1 primary; do stop_one "$n"; done
    [ "${1:-}" = --purge ] && rm -rf "$DIR"
    echo "topology down"
    ;;
  status)
    for n in "${NAMES[@]}"; do
      if running "$n"; then
        line="$n :$(port_of "$n") pid $(pid_of "$n") read_only=$(sql "$n" "SELECT @@read_only")"
        if [ "$n" = primary ]; then
          line+=" gtid_binlog_pos=$(sql "$n" "SELECT @@gtid_binlog_pos")"
        else
          line+=" $(mariadb --socket="$DIR/$n/mysqld.sock" -uroot -E -e "SHOW SLAVE STATUS" | awk '/Slave_IO_Running:|Slave_SQL_Running:|Seconds_Behind_Master:|Gtid_Slave_Pos:/ {printf "%s%s ", $1, $2}')gtid_slave_pos=$(sql "$n" "SELECT @@gtid_slave_pos")"
        fi
        echo "$line"
      else
        echo "$n :$(port_of "$n") down"
      fi
    done
    ;;
  wait-sync) wait_sync ;;
  stop-sql) sql "${1:?replica}" "STOP SLAVE SQL_THREAD" ;;
  start-sql) sql "${1:?replica}" "START SLAVE SQL_THREAD" ;;
  lag) sql "${1:?replica}" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=${2:?seconds}; START SLAVE" ;;
  unlag) sql "${1:?replica}" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE" ;;
  stop) port_of "${1:?name}" >/dev/null; stop_one "$1" ;;
  kill)
    port_of "${1:?name}" >/dev/null; p=$(pid_of "$1")
    if [ -n "$p" ] && alive "$p"; then
      kill -9 "$p"
      for _ in $(seq 1 100); do alive "$p" || break; sleep 0.05; done
    fi
    ;;
  start) port_of "${1:?name}" >/dev/null; rm -f "$DIR/$1/mysqld.sock"; start_one "$1" ;;
  sql) sql "${1:?name}" "${2:?statement}" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
