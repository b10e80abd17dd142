-- Runs once, on the primary's first start (/docker-entrypoint-initdb.d). Binary logging is on
-- here, so the replica replays all of it from the primary's first GTID: the replica creates no
-- users of its own, and every statement is written to be safe to run twice.

CREATE DATABASE IF NOT EXISTS app;
-- rwsplit's heartbeat table (monitor.heartbeat_table) lives here; the monitor creates the table.
CREATE DATABASE IF NOT EXISTS rwsplit;

-- Clients log in to rwsplit as app/app, and rwsplit logs in to each backend as the same user.
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
GRANT ALL ON app.* TO 'app'@'%';

-- The replica's I/O thread.
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';

-- rwsplit's monitor: REPLICATION CLIENT (gtid_binlog_pos) and SLAVE MONITOR (SHOW SLAVE STATUS,
-- split from REPLICATION CLIENT in MariaDB 10.5.9), PROCESS for the process list, and the
-- heartbeat table in rwsplit.*.
CREATE USER IF NOT EXISTS 'rwsplit_monitor'@'%' IDENTIFIED BY 'monitor';
GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'rwsplit_monitor'@'%';
GRANT ALL ON rwsplit.* TO 'rwsplit_monitor'@'%';
