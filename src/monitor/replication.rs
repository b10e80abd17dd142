//! What a backend's replication state means for reads: replica status rows of both server
//! families, GTID distance, and the lag gate with hysteresis. Pure functions, no sockets.

use std::time::Duration;

/// The server family, from the version string of the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// Called per statement by read-your-writes routing: no allocation.
    pub fn of(version: &str) -> Flavor {
        let mariadb = version
            .as_bytes()
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"mariadb"));
        if mariadb {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }
}

/// The parts of `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` that lag depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub io_running: bool,
    pub sql_running: bool,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; NULL when the SQL thread is stopped.
    pub seconds_behind: Option<u64>,
}

impl ReplicaStatus {
    /// Reads a status row given as (column name, value) pairs. Accepts MariaDB's and MySQL's
    /// column names (`Slave_IO_Running`/`Replica_IO_Running`, `Seconds_Behind_Master`/
    /// `Seconds_Behind_Source`). `None` when the row has none of them.
    pub fn from_row(cols: &[(String, Option<String>)]) -> Option<ReplicaStatus> {
        let get = |names: &[&str]| {
            cols.iter()
                .find(|(n, _)| names.iter().any(|x| n.eq_ignore_ascii_case(x)))
                .map(|(_, v)| v.as_deref())
        };
        let io = get(&["Slave_IO_Running", "Replica_IO_Running"])?;
        let sql = get(&["Slave_SQL_Running", "Replica_SQL_Running"])?;
        let behind = get(&["Seconds_Behind_Master", "Seconds_Behind_Source"]).flatten();
        Some(ReplicaStatus {
            // "Connecting" is not running: the replica is not receiving events.
            io_running: io.is_some_and(|v| v.eq_ignore_ascii_case("Yes")),
            sql_running: sql.is_some_and(|v| v.eq_ignore_ascii_case("Yes")),
            seconds_behind: behind.and_then(|v| v.trim().parse().ok()),
        })
    }
}

impl ReplicaStatus {
    /// A replica's channels as one: running only if every one runs, as far behind as the
    /// furthest (unknown if any is). `None` for no channel.
    pub fn worst(channels: impl IntoIterator<Item = ReplicaStatus>) -> Option<ReplicaStatus> {
        channels.into_iter().reduce(|a, b| ReplicaStatus {
            io_running: a.io_running && b.io_running,
            sql_running: a.sql_running && b.sql_running,
            seconds_behind: a
                .seconds_behind
                .zip(b.seconds_behind)
                .map(|(x, y)| x.max(y)),
        })
    }
}

/// How many transactions the replica's executed GTID set lacks from the primary's. MariaDB
/// positions are `domain-server-seq` lists (`0-1-601,1-2-7`); MySQL sets are
/// `uuid:1-100:105,uuid2:1-5` (`gtid_executed`, possibly with newlines). `None` when a position
/// cannot be read, or the primary's is empty (MySQL with `gtid_mode = OFF`, a server with no
/// transaction yet): nothing to compare, rather than "0 behind".
pub fn gtid_distance(flavor: Flavor, primary: &str, replica: &str) -> Option<u64> {
    if primary.trim().is_empty() {
        return None;
    }
    match flavor {
        Flavor::MariaDb => {
            let p = parse_mariadb(primary)?;
            let r = parse_mariadb(replica)?;
            Some(
                p.iter()
                    .map(|&(domain, seq)| {
                        let have = r.iter().find(|(d, _)| *d == domain).map_or(0, |&(_, s)| s);
                        seq.saturating_sub(have)
                    })
                    .sum(),
            )
        }
        Flavor::MySql => {
            let p = parse_mysql(primary)?;
            let r = parse_mysql(replica)?;
            let mut missing = 0u64;
            for (uuid, ranges) in &p {
                let have: &[(u64, u64)] = r
                    .iter()
                    .find(|(u, _)| u == uuid)
                    .map_or(&[], |(_, v)| v.as_slice());
                for &(a, b) in ranges {
                    let covered: u64 = have
                        .iter()
                        .map(|&(x, y)| {
                            let lo = a.max(x);
                            let hi = b.min(y);
                            if lo <= hi { hi - lo + 1 } else { 0 }
                        })
                        .sum();
                    missing += (b - a + 1).saturating_sub(covered);
                }
            }
            Some(missing)
        }
    }
}

/// `domain-server-seq,...` as (domain, seq) pairs; the empty string is the empty position.
fn parse_mariadb(s: &str) -> Option<Vec<(u32, u64)>> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            let mut it = g.split('-');
            let domain = it.next()?.parse().ok()?;
            let _server: u32 = it.next()?.parse().ok()?;
            let seq = it.next()?.parse().ok()?;
            it.next().is_none().then_some((domain, seq))
        })
        .collect()
}

/// One source's transactions in a MySQL GTID set: (`uuid` or `uuid:tag`, inclusive ranges).
type UuidSet = (String, Vec<(u64, u64)>);

/// `uuid:a-b:c,...` as (uuid, inclusive ranges). MySQL 8.3's tagged GTIDs
/// (`uuid:1-5:tag:1-3:other:7`, tags case-insensitive) are sets of their own, one per uuid and
/// tag: the ranges after a tag are that tag's.
fn parse_mysql(s: &str) -> Option<Vec<UuidSet>> {
    let mut sets: Vec<UuidSet> = Vec::new();
    for g in s.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut parts = g.split(':').map(str::trim);
        let uuid = parts.next()?.to_ascii_lowercase();
        // The ranges of the current uuid or uuid:tag, from the first range on.
        let mut key = uuid.clone();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for r in parts {
            if is_gtid_tag(r) {
                // A tag with no range before the next tag or the end is malformed.
                if key != uuid && ranges.is_empty() {
                    return None;
                }
                if !ranges.is_empty() {
                    sets.push((key, std::mem::take(&mut ranges)));
                }
                key = format!("{uuid}:{}", r.to_ascii_lowercase());
                continue;
            }
            let (a, b) = match r.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = r.parse().ok()?;
                    (n, n)
                }
            };
            if a > b || a == 0 {
                return None;
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() {
            return None;
        }
        sets.push((key, ranges));
    }
    // A source named twice (a repeated element) is one set, its ranges sorted and joined where
    // they overlap: counted twice, a replica's range would cover a transaction it lacks.
    let mut merged: Vec<UuidSet> = Vec::with_capacity(sets.len());
    for (key, ranges) in sets {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some((_, have)) => have.extend(ranges),
            None => merged.push((key, ranges)),
        }
    }
    for (_, ranges) in &mut merged {
        ranges.sort_unstable();
        let mut joined: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges.iter() {
            match joined.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => joined.push((a, b)),
            }
        }
        *ranges = joined;
    }
    Some(merged)
}

/// A GTID tag (MySQL 8.3): a letter or underscore, then up to 31 letters, digits or
/// underscores.
fn is_gtid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A replica's lag as far as the monitor can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Replicating, this far behind (0 when its GTID position equals the primary's).
    Behind(Duration),
    /// Replication threads stopped, or not configured: its data may be any age.
    Stopped,
    /// Status could not be read (no privilege, a failed query).
    Unknown,
}

/// Combines what was read, best source first: stopped threads win, then the heartbeat table's
/// age (a direct, sub-second measure), then an exact GTID match with the primary's last known
/// position (0 behind, whatever else says), then `Seconds_Behind_Master`.
///
/// With the primary down, a replica's I/O thread cannot run, and no newer data is reachable
/// anywhere: a replica that has applied everything the primary last reported (`gtid_behind`
/// against the primary's last known position) is as fresh as data can be, and keeps reads.
pub fn lag(
    status: Option<ReplicaStatus>,
    gtid_behind: Option<u64>,
    heartbeat: Option<Duration>,
    primary_down: bool,
) -> Lag {
    match status {
        None => Lag::Stopped,
        Some(s) if !s.sql_running => Lag::Stopped,
        Some(_) if primary_down && gtid_behind == Some(0) => Lag::Behind(Duration::ZERO),
        Some(_) if primary_down => Lag::Unknown,
        Some(s) if !s.io_running => Lag::Stopped,
        Some(_) if heartbeat.is_some() => heartbeat.map_or(Lag::Unknown, Lag::Behind),
        Some(_) if gtid_behind == Some(0) => Lag::Behind(Duration::ZERO),
        Some(s) => s
            .seconds_behind
            .map_or(Lag::Unknown, |n| Lag::Behind(Duration::from_secs(n))),
    }
}

/// Why a replica is not taking reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// Lag over the bound (and not yet back under the re-admit mark).
    Lagging,
    ReplicationStopped,
    StatusUnknown,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exclusion::Lagging => "replication lag over max_replica_lag",
            Exclusion::ReplicationStopped => "replication is stopped",
            Exclusion::StatusUnknown => "replication status cannot be read",
        })
    }
}

/// Admits a replica to reads when its lag is known and within the bound; with hysteresis, a
/// replica that was excluded for lag comes back only at or under 80 % of the bound, so one near
/// the bound does not flap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagGate {
    pub excluded: Option<Exclusion>,
}

impl LagGate {
    /// A replica starts excluded until its first status is read.
    pub fn new() -> LagGate {
        LagGate {
            excluded: Some(Exclusion::StatusUnknown),
        }
    }

    pub fn admitted(&self) -> bool {
        self.excluded.is_none()
    }

    /// Records one reading; returns true when admission changed.
    pub fn update(&mut self, lag: Lag, bound: Duration) -> bool {
        let before = self.excluded;
        self.excluded = match lag {
            Lag::Stopped => Some(Exclusion::ReplicationStopped),
            Lag::Unknown => Some(Exclusion::StatusUnknown),
            Lag::Behind(d) => {
                let ms = d.as_millis() as u64;
                let bound_ms = bound.as_millis() as u64;
                let over = ms > bound_ms;
                // Excluded for lag: back only at or under 80 % of the bound.
                let not_back_yet =
                    self.excluded == Some(Exclusion::Lagging) && ms > 0 && ms * 10 > bound_ms * 8;
                if over || not_back_yet {
                    Some(Exclusion::Lagging)
                } else {
                    None
                }
            }
        };
        before.is_none() != self.excluded.is_none()
    }
}

impl Default for LagGate {
    fn default() -> Self {
        LagGate::new()
    }
}

#[cfg(test)]
mod tests;
