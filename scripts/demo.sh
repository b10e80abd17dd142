#!/usr/bin/env bash
# Sets up and runs rwsplit against a local demo topology (one primary, two replicas).
#   scripts/demo.sh            install MariaDB if missing, start the topology, build, run rwsplit
# Then: mariadb -h127.0.0.1 -P6033 -uapp -papp app
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/need.sh mariadbd=mariadb-server,mariadb-client

echo "== starting the demo topology (primary :3306, replicas :3307 :3308)"
scripts/topology.sh up

echo "== building rwsplit (release)"
cargo build --release --quiet

echo "== rwsplit on 127.0.0.1:6033 (Ctrl-C to stop; scripts/topology.sh down stops the servers)"
echo "   try: mariadb -h127.0.0.1 -P6033 -uapp -papp app"
exec target/release/rwsplit --config config/rwsplit.toml
