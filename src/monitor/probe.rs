//! Reads a backend's replication state over a `mysql_async` connection.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row};

use super::replication::{Flavor, ReplicaStatus};
use crate::net::{Endpoint, host_port};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Mysql(#[from] mysql_async::Error),
    #[error("timed out")]
    Timeout,
    #[error("bad address '{0}'")]
    Address(String),
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

/// One reading.
#[derive(Debug, Clone)]
pub struct Reading {
    pub read_only: bool,
    /// What this server has written to its binlog (the primary's position).
    pub binlog_gtid: String,
    /// What this server has applied from replication (MariaDB `gtid_slave_pos`, MySQL
    /// `gtid_executed`).
    pub applied_gtid: String,
    /// `None` when the server is not a replica (no replica status row).
    pub status: Option<ReplicaStatus>,
    /// Age of the newest heartbeat row, when a heartbeat table is configured and readable.
    pub heartbeat_age: Option<Duration>,
    /// The status flags a new connection starts with (`session_status`).
    pub session_status: u16,
}

/// The status flags the server gives a new connection, from its global `autocommit` and
/// `sql_mode`: SERVER_STATUS_AUTOCOMMIT, and SERVER_STATUS_NO_BACKSLASH_ESCAPES (drivers that
/// quote values themselves, such as go-sql-driver's `interpolateParams`, escape by it).
pub fn session_status(autocommit: i64, sql_mode: &str) -> u16 {
    use crate::protocol::packets::{SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_NO_BACKSLASH_ESCAPES};
    let mut s = 0;
    if autocommit != 0 {
        s |= SERVER_STATUS_AUTOCOMMIT;
    }
    if sql_mode
        .split(',')
        .any(|m| m.trim().eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES"))
    {
        s |= SERVER_STATUS_NO_BACKSLASH_ESCAPES;
    }
    s
}

/// Keeps a connection and reads through it; reconnects after a failure.
pub struct Prober {
    address: String,
    user: String,
    password: String,
    /// `db.table` of the heartbeat, when configured.
    heartbeat: Option<String>,
    conn: Option<Conn>,
}

impl Prober {
    pub fn new(address: &str, user: &str, password: &str, heartbeat: Option<&str>) -> Prober {
        Prober {
            address: address.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            heartbeat: heartbeat.map(str::to_string),
            conn: None,
        }
    }

    /// Logs in as `user` from the next connect on; the open connection, if any, stays.
    pub fn set_login(&mut self, user: &str, password: &str) {
        self.user = user.to_string();
        self.password = password.to_string();
    }

    /// Writes the heartbeat row (on the primary), creating the table the first time.
    pub async fn beat(&mut self, timeout: Duration) -> Result<(), ProbeError> {
        let Some(table) = self.heartbeat.clone() else {
            return Ok(());
        };
        let r = tokio::time::timeout(timeout, async {
            let conn = self.connection().await?;
            let sql = format!(
                "INSERT INTO {table} (id, ts) VALUES (1, UTC_TIMESTAMP(6)) \
                 ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
            );
            match conn.query_drop(&sql).await {
                // ER_NO_SUCH_TABLE / ER_BAD_DB_ERROR: create it, then write.
                Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1049 => {
                    if let Some((db, _)) = table.split_once('.') {
                        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
                            .await?;
                    }
                    conn.query_drop(format!(
                        "CREATE TABLE IF NOT EXISTS {table} \
                         (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL)"
                    ))
                    .await?;
                    conn.query_drop(&sql).await?;
                    Ok(())
                }
                r => r.map_err(ProbeError::from),
            }
        })
        .await
        .unwrap_or(Err(ProbeError::Timeout));
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn connection(&mut self) -> Result<&mut Conn, ProbeError> {
        if self.conn.is_none() {
            let opts = OptsBuilder::default()
                .user(Some(self.user.clone()))
                .pass(Some(self.password.clone()))
                .prefer_socket(false);
            let opts = match Endpoint::of(&self.address) {
                Endpoint::Unix(path) => opts.socket(Some(path.to_string_lossy())),
                Endpoint::Tcp(a) => {
                    let (host, port) =
                        host_port(a).ok_or_else(|| ProbeError::Address(self.address.clone()))?;
                    opts.ip_or_hostname(host).tcp_port(port)
                }
            };
            self.conn = Some(Conn::new(opts).await?);
        }
        self.conn.as_mut().ok_or(ProbeError::Unexpected("connect"))
    }

    pub async fn read(&mut self, flavor: Flavor, timeout: Duration) -> Result<Reading, ProbeError> {
        let r = tokio::time::timeout(timeout, self.read_inner(flavor))
            .await
            .unwrap_or(Err(ProbeError::Timeout));
        if r.is_err() {
            // A failed or cut-short read may leave the connection mid-response.
            self.conn = None;
        }
        r
    }

    async fn read_inner(&mut self, flavor: Flavor) -> Result<Reading, ProbeError> {
        let heartbeat = self.heartbeat.clone();
        let conn = self.connection().await?;
        let vars = match flavor {
            Flavor::MariaDb => {
                "SELECT @@global.read_only, @@global.innodb_read_only, @@global.gtid_binlog_pos, \
                 @@global.gtid_slave_pos, @@global.autocommit, @@global.sql_mode"
            }
            Flavor::MySql => {
                "SELECT @@global.read_only, @@global.innodb_read_only, @@global.gtid_executed, \
                 @@global.gtid_executed, @@global.autocommit, @@global.sql_mode"
            }
        };
        type Vars = (
            i64,
            i64,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let row: Option<Vars> = conn.query_first(vars).await?;
        let (ro, innodb_ro, binlog, applied, autocommit, sql_mode) =
            row.ok_or(ProbeError::Unexpected("variables"))?;
        let status_rows: Vec<Row> = match flavor {
            // Every connection of a multi-source replica: `SHOW SLAVE STATUS` shows only the
            // default (unnamed) one, and nothing when all are named.
            Flavor::MariaDb => conn.query("SHOW ALL SLAVES STATUS").await?,
            // MySQL 8.0.22+ has SHOW REPLICA STATUS; older servers only the old name.
            Flavor::MySql => match conn.query("SHOW REPLICA STATUS").await {
                Ok(rows) => rows,
                Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                    conn.query("SHOW SLAVE STATUS").await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        // Several channels (multi-source): the replica is as good as its worst one.
        let statuses = status_rows.iter().filter_map(|row| {
            let cols: Vec<(String, Option<String>)> = row
                .columns_ref()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let v = row.as_ref(i).and_then(|v| match v {
                        mysql_async::Value::NULL => None,
                        mysql_async::Value::Bytes(b) => {
                            Some(String::from_utf8_lossy(b).into_owned())
                        }
                        other => Some(other.as_sql(true)),
                    });
                    (c.name_str().into_owned(), v)
                })
                .collect();
            ReplicaStatus::from_row(&cols)
        });
        let status = ReplicaStatus::worst(statuses);
        // The heartbeat row's age; a missing table or row is no reading, not an error.
        let heartbeat_age = match heartbeat {
            Some(table) => {
                let sql = format!(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) FROM {table} WHERE id = 1"
                );
                match conn.query_first::<i64, _>(sql).await {
                    Ok(v) => v.map(|us| Duration::from_micros(us.max(0) as u64)),
                    Err(mysql_async::Error::Server(_)) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            None => None,
        };
        Ok(Reading {
            heartbeat_age,
            read_only: ro != 0 || innodb_ro != 0,
            binlog_gtid: binlog.unwrap_or_default(),
            applied_gtid: applied.unwrap_or_default(),
            status,
            session_status: session_status(autocommit, sql_mode.as_deref().unwrap_or("")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::{SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_NO_BACKSLASH_ESCAPES};

    #[test]
    fn a_new_connections_status_follows_the_global_autocommit_and_sql_mode() {
        let both = SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_NO_BACKSLASH_ESCAPES;
        for (autocommit, sql_mode, want) in [
            (
                1,
                "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION",
                SERVER_STATUS_AUTOCOMMIT,
            ),
            (1, "", SERVER_STATUS_AUTOCOMMIT),
            (0, "", 0),
            (1, "ANSI_QUOTES,NO_BACKSLASH_ESCAPES", both),
            (
                0,
                "no_backslash_escapes",
                SERVER_STATUS_NO_BACKSLASH_ESCAPES,
            ),
            // Another mode whose name contains it is not it.
            (1, "NO_BACKSLASH_ESCAPES_X", SERVER_STATUS_AUTOCOMMIT),
        ] {
            assert_eq!(
                session_status(autocommit, sql_mode),
                want,
                "{autocommit} {sql_mode}"
            );
        }
    }
}
