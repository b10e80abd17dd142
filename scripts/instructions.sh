#!/usr/bin/env bash
# rwsplit's user-space instructions per statement, counted by valgrind's callgrind over a fixed
# number of sysbench events through it (see scripts/instructions.py): a figure that does not
# move with this machine's noise, for checking a change to rwsplit's own per-statement work.
#
#   scripts/instructions.sh [--workload oltp_point_select ...] [--mode auto|disable] [--top N]
#                           [--threads N] [--binary PATH] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/need.sh sysbench valgrind mariadbd=mariadb-server,mariadb-client
scripts/topology.sh up
cargo build --release --quiet
exec python3 scripts/instructions.py "$@"
