//! Read-your-writes: the GTID of the session's last committed write, and which replicas
//! already have it.
//!
//! The GTID comes from the server: through session tracking on the commit's OK packet (backend
//! connections always negotiate it: MariaDB's tracked `last_gtid`, MySQL's
//! `session_track_gtids = OWN_GTID`), else, from a server that does not track, by asking the
//! primary connection after the commit (`SELECT @@last_gtid`, MySQL `@@global.gtid_executed`).
//! A read then goes to a replica whose applied position (from the monitor) covers it; if none
//! does yet, rwsplit waits on one (`MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET`) up to
//! `routing.read_your_writes_wait`, and otherwise reads from the primary. Once every replica
//! has the write, the requirement is dropped and reads spread as usual.

use crate::classify::StatementKind;
use crate::config::{Consistency, Role};
use crate::monitor::Snapshot;
use crate::monitor::replication::{Flavor, gtid_distance};
use crate::protocol::response::Outcome;

/// A session's consistency state.
#[derive(Debug, Clone)]
pub struct Causal {
    pub mode: Consistency,
    /// The position the session's reads must see.
    pub required: Option<String>,
    /// When `required` was taken (its write had committed by then).
    required_at: Option<std::time::Instant>,
    /// The primary's reading last compared with `required` (its `gtid_at`): a reading is
    /// compared once, not at every read.
    primary_checked: Option<std::time::Instant>,
    /// Replicas (bit per backend id) known to have `required`.
    pub verified: u64,
    /// A write ran on the primary whose GTID has not been taken yet (inside a transaction it is
    /// taken when the transaction ends).
    pub pending: bool,
    /// The last write's GTID could not be read: no replica is known to have it, so reads go
    /// to the primary until the next write gives a position, or it is forgotten. Since when (`None`: it is not). Forgotten after `blocked_replicas`'s `forget_after`:
    /// with no GTID to wait for (MySQL with `gtid_mode = OFF`), a replica within its lag
    /// bound has had the time to apply the write by then.
    unknown: Option<std::time::Instant>,
}

impl Causal {
    pub fn new(mode: Consistency) -> Causal {
        Causal {
            mode,
            required: None,
            required_at: None,
            primary_checked: None,
            verified: 0,
            pending: false,
            unknown: None,
        }
    }

    pub fn require(&mut self, gtid: String) {
        self.required = Some(gtid);
        self.required_at = Some(std::time::Instant::now());
        self.primary_checked = None;
        self.verified = 0;
        self.pending = false;
        self.unknown = None;
    }

    /// The last write's position could not be read.
    pub fn position_unknown(&mut self) {
        self.required = None;
        self.verified = 0;
        self.pending = false;
        self.unknown = Some(std::time::Instant::now());
    }

    /// Notes a statement that ran on the primary. Returns true when the GTID must be asked
    /// for (the write is committed and the OK did not carry it). `partial`: the statement
    /// may have committed part of its work before it failed (a multi-statement, a procedure).
    pub fn after_primary_statement(
        &mut self,
        kind: StatementKind,
        o: &Outcome,
        in_transaction: bool,
        partial: bool,
    ) -> bool {
        if self.mode != Consistency::ReadYourWrites {
            return false;
        }
        if let Some(g) = &o.gtid
            && !in_transaction
        {
            self.require(g.clone());
            return false;
        }
        let writes = !matches!(
            kind,
            StatementKind::Read | StatementKind::SessionCommand | StatementKind::Use
        );
        if writes && (o.error.is_none() || partial) {
            self.pending = true;
        }
        self.pending && !in_transaction
    }

    /// Replicas that may not take this session's reads (bit per backend id): those not yet
    /// known to have the required position. Updates `verified` from the monitor's positions
    /// and drops the requirement once every replica has it. `read_within`: the monitor's
    /// timeout, how long before its arrival a reading of the primary may have been taken.
    pub fn blocked_replicas(
        &mut self,
        snap: &Snapshot,
        flavor: Flavor,
        forget_after: std::time::Duration,
        read_within: std::time::Duration,
    ) -> u64 {
        if let Some(since) = self.unknown {
            if since.elapsed() < forget_after {
                return u64::MAX;
            }
            self.unknown = None;
        }
        // A committed write whose GTID was not taken (it is fetched before a read that may go
        // to a replica; this is the net under that) counts as a position no replica has.
        if self.pending {
            return u64::MAX;
        }
        if self.required.is_none() {
            return 0;
        }
        if let Some(now_required) = self.lost_with_a_primary(snap, flavor, read_within) {
            // The write went with a primary that failed over before passing it on: no
            // replica will ever have it, and each read would wait `read_your_writes_wait` for
            // it. What the session can still see is what the primary has now.
            tracing::info!(
                lost = self.required.as_deref().unwrap_or_default(),
                required = %now_required,
                "the session's last write is not on the primary: it was lost in a failover"
            );
            self.require(now_required);
        }
        let Some(req) = &self.required else {
            return 0;
        };
        let mut all = 0u64;
        for (i, b) in snap.backends.iter().enumerate().take(64) {
            if b.role != Role::Replica {
                continue;
            }
            let bit = 1u64 << i;
            all |= bit;
            if self.verified & bit == 0 {
                let has = snap
                    .status
                    .get(i)
                    .and_then(|s| s.gtid.as_deref())
                    .and_then(|g| gtid_distance(flavor, req, g))
                    == Some(0);
                if has {
                    self.verified |= bit;
                }
            }
        }
        if all != 0 && self.verified & all == all {
            self.required = None;
            self.verified = 0;
            return 0;
        }
        all & !self.verified
    }

    /// The primary's position, when a reading of it taken after the session's write had
    /// committed lacks that write (`req`): the primary that committed it would have had it.
    fn lost_with_a_primary(
        &mut self,
        snap: &Snapshot,
        flavor: Flavor,
        read_within: std::time::Duration,
    ) -> Option<String> {
        let since = self.required_at?;
        // The one primary: with two writable servers (a split brain) the write may be on the
        // other.
        let p = crate::route::sole_primary(&snap.backends).ok()?;
        let status = snap.status.get(p)?;
        let at = status.gtid_at?;
        if self.primary_checked == Some(at) {
            return None;
        }
        self.primary_checked = Some(at);
        // Taken at most `read_within` before it arrived: after the commit only if it arrived
        // later than that.
        if at.checked_duration_since(since)? <= read_within {
            return None;
        }
        let primary = status.gtid.as_deref()?;
        match gtid_distance(flavor, self.required.as_deref()?, primary) {
            Some(missing) if missing > 0 => Some(primary.to_string()),
            _ => None,
        }
    }
}

/// The statement that asks the primary for the GTID of the session's last commit.
pub fn last_gtid_query(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::MariaDb => "SELECT @@last_gtid",
        Flavor::MySql => "SELECT @@global.gtid_executed",
    }
}

/// The statement that waits on a replica until it has applied `gtid`, at most `secs`; it
/// returns 0 when it has.
pub fn wait_query(flavor: Flavor, gtid: &str, secs: f64) -> String {
    let g = gtid.replace(['\'', '\\'], "");
    match flavor {
        Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT('{g}', {secs:.3})"),
        Flavor::MySql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{g}', {secs:.3})"),
    }
}

/// The statements that turn on session tracking on a backend connection, best first: every
/// system variable (so changes made inside procedures are carried to the session's other
/// connections), state changes (so what cannot be carried pins the session) and the commit's
/// GTID (read-your-writes); else, on a server that refuses that, the GTID alone.
pub fn tracking_statements(flavor: Flavor) -> [&'static str; 2] {
    match flavor {
        Flavor::MariaDb => [
            "SET SESSION session_track_system_variables = '*', \
             session_track_state_change = ON",
            "SET SESSION session_track_system_variables = \
             CONCAT(@@session.session_track_system_variables, ',last_gtid')",
        ],
        Flavor::MySql => [
            "SET SESSION session_track_gtids = OWN_GTID, \
             session_track_system_variables = '*', session_track_state_change = ON",
            "SET SESSION session_track_gtids = OWN_GTID",
        ],
    }
}

/// `SET rwsplit_consistency = 'mode'` (also `SET SESSION`, with `@@`): the mode, if the
/// statement is that.
pub fn parse_set_consistency(sql: &[u8]) -> Option<Option<Consistency>> {
    let s = std::str::from_utf8(sql)
        .ok()?
        .trim()
        .trim_end_matches(';')
        .trim();
    let lower = s.to_ascii_lowercase();
    let rest = lower.strip_prefix("set")?.trim_start();
    let rest = rest.strip_prefix("session").map_or(rest, str::trim_start);
    let rest = rest
        .strip_prefix("@@session.")
        .or_else(|| rest.strip_prefix("@@"))
        .unwrap_or(rest);
    let rest = rest.strip_prefix("rwsplit_consistency")?.trim_start();
    let value = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(":="))?
        .trim()
        .trim_matches(|c| c == '\'' || c == '"');
    Some(Consistency::parse(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::BackendStatus;
    use crate::route::BackendView;

    fn snap(gtids: [Option<&str>; 3]) -> Snapshot {
        let roles = [Role::Primary, Role::Replica, Role::Replica];
        Snapshot {
            backends: roles
                .iter()
                .map(|&role| BackendView {
                    role,
                    up: true,
                    weight: 1,
                    read_only: false,
                    lag_ok: true,
                })
                .collect(),
            status: gtids
                .iter()
                .map(|g| BackendStatus {
                    gtid: g.map(str::to_string),
                    ..BackendStatus::default()
                })
                .collect(),
        }
    }

    fn ok(gtid: Option<&str>) -> Outcome {
        Outcome {
            gtid: gtid.map(str::to_string),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_tracked_commit_sets_the_requirement_at_once() {
        let mut c = Causal::new(Consistency::ReadYourWrites);
        assert!(!c.after_primary_statement(StatementKind::Write, &ok(Some("0-1-9")), false, false));
        assert_eq!(c.required.as_deref(), Some("0-1-9"));
    }

    #[test]
    fn an_untracked_write_asks_after_the_transaction_ends() {
        let mut c = Causal::new(Consistency::ReadYourWrites);
        assert!(!c.after_primary_statement(StatementKind::Write, &ok(None), true, false));
        assert!(!c.after_primary_statement(StatementKind::Read, &ok(None), true, false));
        assert!(c.after_primary_statement(StatementKind::TransactionEnd, &ok(None), false, false));
        // A read-only session never asks.
        let mut c = Causal::new(Consistency::ReadYourWrites);
        assert!(!c.after_primary_statement(StatementKind::Read, &ok(None), false, false));
        // Nor does an eventual one.
        let mut c = Causal::new(Consistency::Eventual);
        assert!(!c.after_primary_statement(StatementKind::Write, &ok(None), false, false));
    }

    #[test]
    fn a_multi_statement_or_procedure_that_failed_may_have_committed() {
        let failed = Outcome {
            error: Some(Default::default()),
            ..Outcome::default()
        };
        let mut c = Causal::new(Consistency::ReadYourWrites);
        assert!(!c.after_primary_statement(StatementKind::Write, &failed, false, false));
        assert!(c.after_primary_statement(StatementKind::Write, &failed, false, true));
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    #[test]
    fn an_unknown_position_blocks_every_replica_until_it_is_forgotten() {
        let mut c = Causal::new(Consistency::ReadYourWrites);
        let s = snap([Some("0-1-10"), Some("0-1-10"), Some("0-1-10")]);
        c.position_unknown();
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR),
            u64::MAX
        );
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MariaDb, std::time::Duration::ZERO, HOUR),
            0
        );
        assert_eq!(c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR), 0);
    }

    #[test]
    fn a_write_whose_gtid_was_not_taken_blocks_every_replica() {
        let mut c = Causal::new(Consistency::ReadYourWrites);
        let s = snap([Some("0-1-10"), Some("0-1-10"), Some("0-1-10")]);
        assert_eq!(c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR), 0);
        c.after_primary_statement(StatementKind::Write, &ok(None), true, false);
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR),
            u64::MAX
        );
        c.require("0-1-10".into());
        assert_eq!(c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR), 0);
    }

    #[test]
    fn only_replicas_that_have_the_write_take_reads_and_the_requirement_ends() {
        let mut c = Causal::new(Consistency::ReadYourWrites);
        c.require("0-1-10".into());
        let s = snap([Some("0-1-10"), Some("0-1-10"), Some("0-1-9")]);
        assert_eq!(c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR), 0b100);
        let s = snap([Some("0-1-12"), Some("0-1-9"), Some("0-1-11")]);
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MariaDb, HOUR, HOUR),
            0,
            "replica1 was seen with it already; replica2 has it now"
        );
        assert_eq!(c.required, None);
    }

    #[test]
    fn a_write_the_primary_lacks_when_read_after_it_was_lost_in_a_failover() {
        const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        const B: &str = "4f22ab58-82db-22f2-af44-d91bba53a673";
        let read_within = std::time::Duration::from_secs(1);
        let now = std::time::Instant::now();
        let after = |secs: f64, primary: &str, replicas: &str| {
            let mut s = snap([Some(primary), Some(replicas), Some(replicas)]);
            s.status[0].gtid_at = Some(now + std::time::Duration::from_secs_f64(secs));
            s
        };
        let new_primary = format!("{A}:1-9,{B}:1-3");
        let mut c = Causal::new(Consistency::ReadYourWrites);
        c.require(format!("{A}:10"));
        // Read too soon after the commit to be sure it was taken after it: still waited for.
        let s = after(0.5, &new_primary, &new_primary);
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MySql, HOUR, read_within),
            0b110
        );
        assert_eq!(c.required, Some(format!("{A}:10")));
        // Read later, still without it: lost; the replicas that have what the primary has take
        // the reads.
        let s = after(1.5, &new_primary, &new_primary);
        assert_eq!(c.blocked_replicas(&s, Flavor::MySql, HOUR, read_within), 0);
        assert_eq!(
            c.required, None,
            "every replica has the new primary's position"
        );
        c.require(format!("{A}:10"));
        let s = after(2.5, &new_primary, &format!("{A}:1-9,{B}:1-2"));
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MySql, HOUR, read_within),
            0b110
        );
        assert_eq!(c.required.as_deref(), Some(new_primary.as_str()));
        // Two writable servers (a split brain): the write may be on the other one.
        let mut c = Causal::new(Consistency::ReadYourWrites);
        c.require(format!("{A}:10"));
        let mut s = after(1.5, &new_primary, &new_primary);
        s.backends[1].role = Role::Primary;
        c.blocked_replicas(&s, Flavor::MySql, HOUR, read_within);
        assert_eq!(c.required, Some(format!("{A}:10")), "split brain");
        // A primary that has the write: nothing changes.
        let mut c = Causal::new(Consistency::ReadYourWrites);
        c.require("0-1-10".into());
        let s = after(5.0, "0-1-12", "0-1-9");
        assert_eq!(
            c.blocked_replicas(&s, Flavor::MariaDb, HOUR, read_within),
            0b110
        );
        assert_eq!(c.required.as_deref(), Some("0-1-10"));
    }

    #[test]
    fn set_rwsplit_consistency_is_understood() {
        let p = |s: &str| parse_set_consistency(s.as_bytes());
        assert_eq!(
            p("SET rwsplit_consistency = 'strong'"),
            Some(Some(Consistency::Strong))
        );
        assert_eq!(
            p("set session rwsplit_consistency='eventual';"),
            Some(Some(Consistency::Eventual))
        );
        assert_eq!(
            p("SET @@session.rwsplit_consistency = \"read_your_writes\""),
            Some(Some(Consistency::ReadYourWrites))
        );
        assert_eq!(p("SET rwsplit_consistency = 'sometimes'"), Some(None));
        assert_eq!(p("SET autocommit = 0"), None);
        // The session only looks at statements the classifier calls session commands.
        for sql in [
            "SET rwsplit_consistency = 'strong'",
            "set session rwsplit_consistency='eventual';",
            "SET @@session.rwsplit_consistency = \"read_your_writes\"",
        ] {
            let kind = crate::classify::classify(sql.as_bytes()).kind;
            assert_eq!(kind, StatementKind::SessionCommand, "{sql}");
        }
    }

    #[test]
    fn the_wait_statement_cannot_be_broken_out_of() {
        assert_eq!(
            wait_query(Flavor::MariaDb, "0-1-5', SLEEP(9)", 0.5),
            "SELECT MASTER_GTID_WAIT('0-1-5, SLEEP(9)', 0.500)"
        );
    }
}
