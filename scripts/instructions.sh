#!/usr/bin/env bash
# rwsplit's user-space instructions per statement, counted by valgrind's callgrind over a fixed
# number of sysbench events through it (see scripts/instructions.py): a figure that does not
# move with this machine's noise, for checking a change to rwsplit's own per-statement work.
#
#   scripts/instructions.sh [--workload oltp_point_select ...] [--mode auto|disable] [--top N]
#                           [--threads N] [--binary PATH] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
if [ ${#need[@]} -gt 0 ]; then scripts/apt-install.sh "${need[@]}"; fi
scripts/topology.sh up
cargo build --release --quiet
exec python3 scripts/instructions.py "$@"
