#!/bin/bash
# Runs once, on the replica's first start (/docker-entrypoint-initdb.d), against the entrypoint's
# temporary server. It only points the replica at the primary: the users and databases arrive
# through replication (see primary-init.sql). The replication threads start when the real server
# starts, because the entrypoint's temporary server is stopped right after this script.
#
# MASTER_USE_GTID=slave_pos: the replica asks for everything after its own gtid_slave_pos (empty
# here, so from the primary's first transaction), which also lets it follow a promoted primary
# with a plain CHANGE MASTER TO MASTER_HOST=... later.
# No `set -u`: without its exec bit the entrypoint sources this file, and -u would leak into it.
set -eo pipefail

mariadb --protocol=socket -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
CHANGE MASTER TO
  MASTER_HOST = '${PRIMARY_HOST:-primary}',
  MASTER_PORT = ${PRIMARY_PORT:-3306},
  MASTER_USER = '${REPLICATION_USER:-repl}',
  MASTER_PASSWORD = '${REPLICATION_PASSWORD:-repl}',
  MASTER_CONNECT_RETRY = 5,
  MASTER_USE_GTID = slave_pos;
SQL
