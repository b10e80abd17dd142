//! Reads a backend's replication state over a connection of rwsplit's own backend client
//! (`pool::BackendConn`, text protocol; rows decoded here, never on the data path), over TLS
//! as `[backend_tls]` says, like every other connection to the servers.

use std::time::Duration;

use mysql_common::constants::CapabilityFlags as C;

use super::replication::{Flavor, ReplicaStatus};
use crate::pool::{BackendConn, BackendError, ServerErr, TextRows};
use crate::protocol::connect::Credentials;
use crate::tls::BackendTls;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0} answered {1}")]
    Server(&'static str, String),
    #[error("timed out")]
    Timeout,
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

/// The server's error as a DBA reads it: code and message.
fn server_error(e: &ServerErr) -> String {
    match crate::protocol::packets::parse_err(&e.payload) {
        Some(i) => format!("{} {}", i.code, String::from_utf8_lossy(i.message)),
        None => "a malformed error".into(),
    }
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
    tls: BackendTls,
    user: String,
    password: String,
    /// `db.table` of the heartbeat, when configured.
    heartbeat: Option<String>,
    conn: Option<BackendConn>,
}

/// How long a connect may take inside a reading (the reading's own timeout bounds it first).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Prober {
    pub fn new(
        address: &str,
        tls: &BackendTls,
        user: &str,
        password: &str,
        heartbeat: Option<&str>,
    ) -> Prober {
        Prober {
            address: address.to_string(),
            tls: tls.clone(),
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
            match conn.query_rows(&sql).await? {
                // ER_NO_SUCH_TABLE / ER_BAD_DB_ERROR: create it, then write.
                Err(e) if e.code() == 1146 || e.code() == 1049 => {
                    let mut create = Vec::new();
                    if let Some((db, _)) = table.split_once('.') {
                        create.push(format!("CREATE DATABASE IF NOT EXISTS {db}"));
                    }
                    create.push(format!(
                        "CREATE TABLE IF NOT EXISTS {table} \
                         (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL)"
                    ));
                    create.push(sql);
                    for sql in create {
                        conn.query_rows(&sql)
                            .await?
                            .map_err(|e| ProbeError::Server("the heartbeat", server_error(&e)))?;
                    }
                    Ok(())
                }
                Err(e) => Err(ProbeError::Server("the heartbeat", server_error(&e))),
                Ok(_) => Ok(()),
            }
        })
        .await
        .unwrap_or(Err(ProbeError::Timeout));
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn connection(&mut self) -> Result<&mut BackendConn, ProbeError> {
        if self.conn.is_none() {
            let creds = Credentials {
                user: &self.user,
                password: &self.password,
                database: None,
                capabilities: C::empty(),
                collation: 45,
            };
            let conn = BackendConn::connect(
                &self.address,
                &creds,
                CONNECT_TIMEOUT,
                &self.tls,
                &self.address,
            )
            .await?;
            self.conn = Some(conn);
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
        let vars = conn
            .query_rows(vars)
            .await?
            .map_err(|e| ProbeError::Server("the variables", server_error(&e)))?;
        let row = vars
            .rows
            .first()
            .filter(|r| r.len() == 6)
            .ok_or(ProbeError::Unexpected("the variables"))?;
        let text = |i: usize| row[i].as_deref();
        let status = match flavor {
            // Every connection of a multi-source replica: `SHOW SLAVE STATUS` shows only the
            // default (unnamed) one, and nothing when all are named.
            Flavor::MariaDb => conn.query_rows("SHOW ALL SLAVES STATUS").await?,
            // MySQL 8.0.22+ has SHOW REPLICA STATUS; older servers only the old name.
            Flavor::MySql => match conn.query_rows("SHOW REPLICA STATUS").await? {
                Err(e) if e.code() == 1064 => conn.query_rows("SHOW SLAVE STATUS").await?,
                r => r,
            },
        }
        .map_err(|e| ProbeError::Server("the replica status", server_error(&e)))?;
        let status = ReplicaStatus::worst(replica_statuses(&status));
        // The heartbeat row's age; a missing table or row is no reading, not an error.
        let heartbeat_age = match heartbeat {
            Some(table) => {
                let sql = format!(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) FROM {table} WHERE id = 1"
                );
                match conn.query_rows(&sql).await? {
                    Ok(rows) => rows
                        .rows
                        .first()
                        .and_then(|r| r.first()?.as_deref()?.parse::<i64>().ok())
                        .map(|us| Duration::from_micros(us.max(0) as u64)),
                    Err(_) => None,
                }
            }
            None => None,
        };
        Ok(Reading {
            heartbeat_age,
            read_only: on(text(0)) || on(text(1)),
            binlog_gtid: text(2).unwrap_or_default().to_string(),
            applied_gtid: text(3).unwrap_or_default().to_string(),
            status,
            session_status: session_status(i64::from(on(text(4))), text(5).unwrap_or("")),
        })
    }
}

/// A boolean server variable as the server shows it: 1 or 0, or a word (ON, OFF).
fn on(v: Option<&str>) -> bool {
    match v.map(str::trim) {
        None | Some("") => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("OFF")),
    }
}

/// Each replication channel's status row, as (column, value) pairs.
fn replica_statuses(rows: &TextRows) -> impl Iterator<Item = ReplicaStatus> + '_ {
    rows.rows.iter().filter_map(|row| {
        let cols: Vec<(String, Option<String>)> = rows
            .columns
            .iter()
            .cloned()
            .zip(row.iter().cloned())
            .collect();
        ReplicaStatus::from_row(&cols)
    })
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
