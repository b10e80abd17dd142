#!/usr/bin/env bash
# The connection-scale harness (issue 5): rwsplit's memory with many idle clients held open, and
# a connect/login/SELECT 1/quit storm. Starts its own rwsplit on 127.0.0.1:6036 (admin on :6086)
# against the project's topology, kills exactly that process at the end, and writes the
# "## Connection scale" section of docs/benchmarks.md (after `<!-- notes -->`, which
# scripts/bench.py keeps; everything else in the file is left as it is).
#
#   scripts/conn_scale.sh [--clients 10000] [--holders 4] [--workers 4] [--seconds 10]
#                         [--out FILE | --no-write]
#
# --clients idle connections opened (by --holders processes) and held; --workers processes each
# loop connect + login + SELECT 1 + quit for --seconds. Needs an open-files limit a little above
# --clients (rwsplit holds one socket per client); the hard limit is raised to where it allows.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/need.sh mariadbd=mariadb-server,mariadb-client
python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install --quiet 'PyMySQL==1.1.1' \
  || python3 -m pip install --quiet --break-system-packages 'PyMySQL==1.1.1' \
  || scripts/apt-install.sh python3-pymysql
scripts/topology.sh up
cargo build --release --quiet
# One socket per client in rwsplit (and a share of them in each holder process): ask for plenty,
# else take what the hard limit allows; conn_scale.py checks it against --clients.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 scripts/conn_scale.py "$@"
