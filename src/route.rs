//! The routing policy: a pure function from (statement, session, backends) to a target.

use crate::classify::{Classification, Hint, StatementKind};
use crate::config::{NoReplicaPolicy, Role};
use crate::pool::BackendId;

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary(BackendId),
    Replica(BackendId),
}

impl Target {
    pub fn backend(self) -> BackendId {
        match self {
            Target::Primary(b) | Target::Replica(b) => b,
        }
    }
    pub fn is_primary(self) -> bool {
        matches!(self, Target::Primary(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no primary backend is available for this statement")]
    NoPrimary,
    #[error("more than one backend is writable (split brain)")]
    SplitBrain,
    #[error("no replica is available and routing.when_no_replica = \"error\"")]
    NoReplica,
    #[error("the primary is read-only")]
    PrimaryReadOnly,
}

/// One backend as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendView {
    pub role: Role,
    pub up: bool,
    pub weight: u32,
    /// For a replica: its replication is running and within `max_replica_lag` (always true
    /// for the primary).
    pub lag_ok: bool,
    /// Its last check read `@@read_only = ON`: a primary in that state takes no writes.
    pub read_only: bool,
}

/// What routing needs to know about the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionView {
    /// The server says a transaction is open (SERVER_STATUS_IN_TRANS).
    pub in_transaction: bool,
    /// The replica holding this session's open transaction: a `START TRANSACTION READ ONLY`
    /// that `read_only_on_replica` sent there.
    pub replica_transaction: Option<BackendId>,
    /// `routing.read_only_transactions_on_replica`.
    pub read_only_on_replica: bool,
    /// autocommit is on (SERVER_STATUS_AUTOCOMMIT).
    pub autocommit: bool,
    /// Reads must see something that exists only on the primary (temporary tables, table locks).
    pub reads_pinned_to_primary: bool,
    /// The replica this session already holds a connection to, preferred while it qualifies.
    pub current_replica: Option<BackendId>,
    /// Replicas that failed for this session and must not be chosen again for this statement.
    pub avoid: Option<BackendId>,
    /// Replicas (bit per backend id) that do not have this session's last write yet
    /// (read-your-writes).
    pub blocked: u64,
    /// Statements in flight on each backend (by id; ids past the array count as idle). When
    /// set, a new replica is chosen by least outstanding requests per unit of weight, ties
    /// broken by weighted chance; otherwise by weighted chance alone.
    pub outstanding: Option<[u32; MAX_LOAD_TRACKED]>,
    /// Replicas (bit per backend id) whose every allowed connection is checked out by other
    /// sessions: a new read there would wait for one to come back, so another eligible
    /// replica is preferred.
    pub saturated: u64,
}

/// Backends whose outstanding requests routing compares.
pub const MAX_LOAD_TRACKED: usize = 32;

/// Why a statement went where it went (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Transaction,
    Hint,
    Pinned,
    Write,
    Read,
    NoReplicaFallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub why: Why,
}

/// Picks the backend for a statement. `pick` is a number in [0, 1) used for the weighted replica
/// choice, passed in so the function stays pure.
pub fn route(
    c: &Classification,
    s: &SessionView,
    backends: &[BackendView],
    when_no_replica: NoReplicaPolicy,
    pick: f64,
) -> Result<Decision, RouteError> {
    // Two writable backends (the monitor marks both primary): refuse rather than guess.
    let primary = || sole_primary(backends);
    let to_primary = |why| {
        primary().map(|p| Decision {
            target: Target::Primary(p),
            why,
        })
    };

    // Never split a transaction: everything stays where it began until it ends. A read-only
    // one on a replica takes only what `in_replica_transaction` lets through.
    if let Some(r) = s.replica_transaction {
        return Ok(Decision {
            target: Target::Replica(r),
            why: Why::Transaction,
        });
    }
    if s.in_transaction || !s.autocommit {
        return to_primary(Why::Transaction);
    }
    if c.hint == Some(Hint::Primary) {
        return to_primary(Why::Hint);
    }
    if c.kind != StatementKind::Read && !begins_on_replica(c, s) {
        return to_primary(Why::Write);
    }
    let hinted = c.hint == Some(Hint::Replica);
    // A hint lets a read past the pins, never a transaction: the pinned state (table locks, a
    // temporary table) is on the primary, and the transaction could not reach it.
    if s.reads_pinned_to_primary && (!hinted || begins_on_replica(c, s)) {
        return to_primary(Why::Pinned);
    }
    match pick_replica(s, backends, pick) {
        Some(r) => Ok(Decision {
            target: Target::Replica(r),
            why: if hinted { Why::Hint } else { Why::Read },
        }),
        // Replicas held back only for read-your-writes: the primary has the write. Not when
        // they are down or behind anyway: then it is `when_no_replica`'s call.
        None if held_back_for_writes(s, backends) => to_primary(Why::NoReplicaFallback),
        None => match when_no_replica {
            NoReplicaPolicy::Primary => to_primary(Why::NoReplicaFallback),
            // A read of no table needs no replica, and refusing it would refuse the drivers
            // that send one when they connect (mysql_async, JDBC): writes could not go on.
            NoReplicaPolicy::Error if c.reads_no_table => to_primary(Why::NoReplicaFallback),
            NoReplicaPolicy::Error => Err(RouteError::NoReplica),
        },
    }
}

/// The one primary that is up; two or more writable backends (the monitor marks each primary)
/// are a split brain. Routing, `/ready` and the heartbeat writer all ask this.
pub fn sole_primary(backends: &[BackendView]) -> Result<BackendId, RouteError> {
    let mut up =
        (0..backends.len()).filter(|&i| backends[i].role == Role::Primary && backends[i].up);
    match (up.next(), up.next()) {
        (Some(p), None) => Ok(p),
        (Some(_), Some(_)) => Err(RouteError::SplitBrain),
        (None, _) => Err(RouteError::NoPrimary),
    }
}

/// Whether a statement about to run on a primary known to be read-only (the first step of a
/// failover: the old primary demoted, none promoted yet) is refused: a change (DML, DDL), which
/// a user with SUPER or READ ONLY ADMIN would make there, and which would be lost with that
/// server. Not what the server allows under `read_only` to everyone: temporary tables (their
/// DDL, and DML when the session has some, which may be theirs). A prepare runs nothing.
pub fn refused_on_read_only_primary(c: &Classification, has_temporary_tables: bool) -> bool {
    use crate::classify::{PrimaryReason as R, SessionEffect as E};
    match c.reason {
        Some(R::Ddl) => !matches!(
            c.effect,
            Some(E::CreatesTemporaryTable | E::DropsTemporaryTable)
        ),
        Some(R::Dml) => !has_temporary_tables,
        _ => false,
    }
}

/// `START TRANSACTION READ ONLY` with `routing.read_only_transactions_on_replica`: the
/// transaction goes where a read would (a replica that has the session's last write, else the
/// primary).
pub fn begins_on_replica(c: &Classification, s: &SessionView) -> bool {
    c.read_only_transaction && s.read_only_on_replica
}

/// What a statement does inside a READ ONLY transaction open on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InReplicaTransaction {
    /// Runs on the transaction's replica: reads, session commands, savepoints, the end.
    Stay,
    /// Would write: refused with the server's own error for it (1792), the transaction going
    /// on, as the server does in a READ ONLY transaction.
    ReadOnlyError,
    /// Ends the transaction on the server before it runs (DDL, `LOCK TABLES`, a `BEGIN` that
    /// is not read-only): rwsplit commits it on the replica, then routes the statement anew.
    EndsTransaction,
    /// Needs the primary's session (user variables, named locks, `LAST_INSERT_ID()`, a
    /// temporary table, ...) or may write (`CALL`, several statements, a locking read):
    /// refused, since the transaction cannot move; the text says what it was.
    Refused(&'static str),
}

/// Decides what a statement does inside a READ ONLY transaction on a replica. Nothing that
/// could write reaches the replica: the server would refuse a change in a READ ONLY
/// transaction, but a temporary table, or a statement that ends the transaction first, would
/// not be refused.
pub fn in_replica_transaction(c: &Classification) -> InReplicaTransaction {
    use crate::classify::{PrimaryReason as R, SessionEffect as E};
    use InReplicaTransaction::*;
    match (c.kind, c.reason) {
        (StatementKind::Read | StatementKind::TransactionEnd | StatementKind::Use, _) => Stay,
        _ if c.effect == Some(E::SetsRole) => Refused("SET ROLE"),
        // State that keeps the session on its primary connection for good (a SET that took a
        // named lock or a sequence's value, ...): made on the replica, it would be lost.
        _ if c.effect == Some(E::Several) => Refused("this statement"),
        (StatementKind::SessionCommand, _) if c.effect != Some(E::SetsUserVariable) => Stay,
        _ if c.read_only_transaction => Stay,
        // XA START: the server refuses it inside a transaction (1400 XAER_OUTSIDE), which goes
        // on; a BEGIN would commit it first.
        (StatementKind::TransactionBegin, Some(R::TransactionControl)) => Stay,
        (StatementKind::TransactionBegin, _) => EndsTransaction,
        (_, Some(R::Dml)) => ReadOnlyError,
        (_, Some(R::Ddl))
            if matches!(
                c.effect,
                Some(E::CreatesTemporaryTable | E::DropsTemporaryTable)
            ) =>
        {
            Refused("a temporary table")
        }
        (_, Some(R::Ddl)) => EndsTransaction,
        (_, Some(R::TableLock))
            if matches!(
                c.effect,
                Some(
                    E::LocksTables
                        | E::BackupStage { ends: false }
                        | E::BackupLock { releases: false }
                )
            ) =>
        {
            EndsTransaction
        }
        // UNLOCK TABLES with none locked (a session holding table locks never gets here).
        (_, Some(R::TableLock)) => Stay,
        // Savepoints, COMMIT AND CHAIN (the next transaction is READ ONLY too), and SET
        // TRANSACTION (which the server refuses inside a transaction).
        (_, Some(R::TransactionControl)) => Stay,
        (_, Some(R::LockingRead)) => Refused("a locking read"),
        (_, Some(R::UserVariable | R::SelectInto)) => Refused("a user variable or SELECT INTO"),
        (_, Some(R::SideEffectFunction)) => Refused("this function"),
        (_, Some(R::SessionValue)) => Refused("a variable of the primary's connection"),
        // The transaction's READ ONLY holds inside a function, which cannot commit: the server
        // refuses its writes as it would on the primary.
        (_, Some(R::StoredFunction)) => Stay,
        // What the server says of itself: the transaction's replica answers.
        (_, Some(R::ServerValue)) => Stay,
        (_, Some(R::Call)) => Refused("CALL"),
        (_, Some(R::MultiStatement)) => Refused("several statements in one query"),
        (_, Some(R::SqlPrepare)) => Refused("SQL PREPARE/EXECUTE"),
        _ => Refused("this statement"),
    }
}

/// A backend's bit in the per-backend masks (`blocked`, `saturated`); backends past the
/// 64th have none.
pub fn bit(id: BackendId) -> u64 {
    u32::try_from(id)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

/// A replica that may take reads: up, caught up, weighted.
pub fn eligible(b: &BackendView) -> bool {
    b.role == Role::Replica && b.up && b.lag_ok && b.weight > 0
}

/// A replica this statement may read from, read-your-writes aside.
fn may_read(s: &SessionView, backends: &[BackendView], i: BackendId) -> bool {
    Some(i) != s.avoid && backends.get(i).is_some_and(eligible)
}

/// Whether a replica that could take the read is held back only because it lacks the session's
/// last write.
fn held_back_for_writes(s: &SessionView, backends: &[BackendView]) -> bool {
    s.blocked != 0
        && (0..backends.len()).any(|i| s.blocked & bit(i) != 0 && may_read(s, backends, i))
}

fn pick_replica(s: &SessionView, backends: &[BackendView], pick: f64) -> Option<BackendId> {
    let blocked = |i: usize| s.blocked & bit(i) != 0;
    let candidate = |i: usize| may_read(s, backends, i);
    let free = |i: usize| s.saturated & bit(i) == 0;
    // Waiting for a connection only when every eligible replica is saturated. A free replica
    // held back only for read-your-writes counts: waiting on it for the write (bounded by
    // `read_your_writes_wait`) beats waiting for a connection (up to the checkout timeout).
    let any_free = (0..backends.len()).any(|i| candidate(i) && free(i));
    let ok = |i: usize| candidate(i) && !blocked(i) && (free(i) || !any_free);
    if let Some(cur) = s.current_replica.filter(|&i| ok(i)) {
        return Some(cur);
    }
    let load = |i: usize| {
        s.outstanding
            .as_ref()
            .and_then(|l| l.get(i).copied())
            .unwrap_or(0) as u64
    };
    // Least outstanding per unit of weight: compare load_i / w_i as cross products. Equal
    // (idle replicas, or no load given) is a tie, which the weighted chance decides.
    let better = |i: usize, j: usize| {
        load(i) * u64::from(backends[j].weight) < load(j) * u64::from(backends[i].weight)
    };
    let best =
        (0..backends.len())
            .filter(|&i| ok(i))
            .fold(None, |b: Option<usize>, i| match b {
                Some(b) if !better(i, b) => Some(b),
                _ => Some(i),
            })?;
    let tied = |i: usize| ok(i) && !better(best, i);
    let total: u64 = (0..backends.len())
        .filter(|&i| tied(i))
        .map(|i| backends[i].weight as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut at = (pick.clamp(0.0, 0.999_999) * total as f64) as u64;
    for i in (0..backends.len()).filter(|&i| tied(i)) {
        let w = backends[i].weight as u64;
        if at < w {
            return Some(i);
        }
        at -= w;
    }
    None
}

#[cfg(test)]
mod tests;
