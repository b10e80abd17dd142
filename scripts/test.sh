#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need (MariaDB, sysbench, promtool, and the
# client libraries: PyMySQL, node mysql2, mysqlclient, go-sql-driver, MariaDB Connector/J),
# starts the project's replication topology, then lints and runs every test.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool (Debian's prometheus) checks the alert rules under deploy/.
scripts/need.sh mariadbd=mariadb-server,mariadb-client sysbench node=nodejs npm promtool=prometheus openssl \
  go=golang-go /usr/share/gocode/src/github.com/go-sql-driver/mysql=golang-github-go-sql-driver-mysql-dev \
  javac=default-jdk-headless /usr/share/java/mariadb-java-client.jar=libmariadb-java \
  /usr/lib/python3/dist-packages/MySQLdb=python3-mysqldb
python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install --quiet 'PyMySQL==1.1.1' \
  || python3 -m pip install --quiet --break-system-packages 'PyMySQL==1.1.1' \
  || scripts/apt-install.sh python3-pymysql
(cd tests/clients/node && npm ci --no-audit --no-fund --silent)
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# The restart test (tests/cli.rs) hands the port from one rwsplit to another: with this set,
# Linux moves the connections queued on the old listener to the new one instead of resetting
# them (README, "Zero-downtime restart").
sysctl -qw net.ipv4.tcp_migrate_req=1 2>/dev/null \
  || echo "warning: cannot set net.ipv4.tcp_migrate_req=1; the restart test may see a reset" >&2

echo "== topology"
scripts/topology.sh up

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== tests"
cargo nextest run --no-fail-fast "$@"
