//! Reads a backend's replication state over a `mysql_async` connection.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row};

use super::replication::{Flavor, ReplicaStatus};

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
}

/// Keeps a connection and reads through it; reconnects after a failure.
pub struct Prober {
    address: String,
    user: String,
    password: String,
    conn: Option<Conn>,
}

impl Prober {
    pub fn new(address: &str, user: &str, password: &str) -> Prober {
        Prober {
            address: address.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            conn: None,
        }
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
        if self.conn.is_none() {
            let (host, port) = self
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| ProbeError::Address(self.address.clone()))?;
            let opts = OptsBuilder::default()
                .ip_or_hostname(host)
                .tcp_port(port)
                .user(Some(self.user.clone()))
                .pass(Some(self.password.clone()))
                .prefer_socket(false);
            self.conn = Some(Conn::new(opts).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(ProbeError::Unexpected("connect"));
        };
        let vars = match flavor {
            Flavor::MariaDb => {
                "SELECT @@global.read_only, @@global.innodb_read_only, @@global.gtid_binlog_pos, \
                 @@global.gtid_slave_pos"
            }
            Flavor::MySql => {
                "SELECT @@global.read_only, @@global.innodb_read_only, @@global.gtid_executed, \
                 @@global.gtid_executed"
            }
        };
        let row: Option<(i64, i64, Option<String>, Option<String>)> =
            conn.query_first(vars).await?;
        let (ro, innodb_ro, binlog, applied) = row.ok_or(ProbeError::Unexpected("variables"))?;
        let status_rows: Vec<Row> = match flavor {
            Flavor::MariaDb => conn.query("SHOW SLAVE STATUS").await?,
            // MySQL 8.0.22+ has SHOW REPLICA STATUS; older servers only the old name.
            Flavor::MySql => match conn.query("SHOW REPLICA STATUS").await {
                Ok(rows) => rows,
                Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                    conn.query("SHOW SLAVE STATUS").await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        let status = status_rows.first().and_then(|row| {
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
        Ok(Reading {
            read_only: ro != 0 || innodb_ro != 0,
            binlog_gtid: binlog.unwrap_or_default(),
            applied_gtid: applied.unwrap_or_default(),
            status,
        })
    }
}
