#!/usr/bin/env bash
# The load benchmark: sysbench against the primary directly, through HAProxy in TCP mode (the
# floor any proxy is compared to) and through rwsplit, interleaved in one run, bounded in time.
# Workloads that only read also run through a second HAProxy that spreads connections over the
# two replicas, as rwsplit spreads reads: what spreading costs on this host, apart from parsing.
# Writes a Markdown report (default docs/benchmarks.md).
#
#   scripts/bench.sh [--quick] [--time SECONDS] [--out FILE | --no-write]
#                    [--workload oltp_point_select ...] [--threads 32 ...] [--repeat N]
#                    [--backend-socket]
#
# --quick runs oltp_point_select / oltp_read_only / oltp_read_write at 32 threads only;
# the full run adds 8 and 128 threads (and 1 for point selects) and both prepared-statement
# and text modes.
# --workload / --threads narrow the run (repeatable); --no-write prints without a report.
# --repeat N runs each case N rounds (the targets in turn, each round starting one
# later) and reports medians with the spread of rwsplit/HAProxy: on a noisy machine one round
# says little.
# --backend-socket: the proxies (both HAProxys and rwsplit) reach the servers by their Unix
# sockets, as when the proxy runs on the database host (report: docs/benchmarks-socket.md
# unless --out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/need.sh sysbench haproxy mariadbd=mariadb-server,mariadb-client
scripts/topology.sh up
cargo build --release --quiet
exec python3 scripts/bench.py "$@"
