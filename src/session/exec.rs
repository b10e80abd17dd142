//! Running one client command on a backend: pick the target, check out and sync the
//! connection, send, stream the response back; retry a failed replica read once elsewhere.

use super::forward::{self, ForwardError};
use super::prepared::{self, Slot};
use super::state;
use super::{Session, SessionError};
use crate::classify::{Classification, StatementKind};
use crate::error::ClientError;
use crate::monitor::replication::Flavor;
use crate::pool::{BackendConn, BackendError, BackendId, PoolError, PoolKey, Pooled};
use crate::protocol::connect::Credentials;
use crate::protocol::response::{Outcome, ResponseKind};
use crate::route::{self, Decision, RouteError, SessionView, Target, Why};

/// The command to send, which may differ per connection.
pub enum Cmd<'a> {
    /// Sent as is.
    Raw(&'a [u8]),
    /// COM_STMT_PREPARE; the response carries the proxy's statement id.
    Prepare { packet: &'a [u8], proxy_id: u32 },
    /// COM_STMT_EXECUTE of a registered statement.
    Execute { packet: &'a [u8], id: u32 },
}

/// Whether a forwarded response counts as a success (the `outcome` label).
fn o_ok(r: &Result<Outcome, ForwardError>) -> bool {
    matches!(r, Ok(o) if o.error.is_none())
}

/// Counts a statement and its latency.
fn record(
    shared: &super::Shared,
    kind: ResponseKind,
    target: Target,
    ok: bool,
    elapsed: std::time::Duration,
) {
    use crate::metrics::Command as C;
    let command = match kind {
        ResponseKind::Query => C::Query,
        ResponseKind::StmtExecute { .. } => C::Execute,
        ResponseKind::StmtPrepare => C::Prepare,
        ResponseKind::StmtFetch => C::Fetch,
        _ => C::Other,
    };
    if let Some(b) = shared.backends.load().get(target.backend()) {
        b.statements
            .get(command, target.is_primary(), ok)
            .increment(1);
    }
    let hot = crate::metrics::hot();
    let seconds = if target.is_primary() {
        &hot.seconds_primary
    } else {
        &hot.seconds_replica
    };
    seconds.record(elapsed.as_secs_f64());
}

/// Where and as whom to open a connection that kills a statement running too long; built
/// only when a statement does.
pub(super) struct Killer {
    address: String,
    /// The backend's configured address (the name its TLS certificate bears) and TLS settings.
    configured: String,
    tls: crate::tls::BackendTls,
    user: String,
    password: String,
    backend: &'static str,
    /// The killing session's span, the parent of what the kill logs (it may run in a task of
    /// its own).
    span: tracing::Span,
}

impl Killer {
    /// `at`: the server the statement runs on (`BackendConn::reached`).
    pub(super) fn new(
        shared: &super::Shared,
        user: &str,
        (backend, at): (usize, &str),
        span: &tracing::Span,
    ) -> Killer {
        let (configured, tls) = shared
            .backends
            .load()
            .get(backend)
            .map(|b| (b.config.address.clone(), b.config.tls.clone()))
            .unwrap_or_default();
        Killer {
            address: at.to_string(),
            configured,
            tls,
            user: user.to_string(),
            password: shared
                .config()
                .user(user)
                .map(|u| u.password.clone())
                .unwrap_or_default(),
            backend: shared.name(backend),
            span: span.clone(),
        }
    }
}

impl Killer {
    /// `KILL QUERY thread` over a connection of its own (at most a few seconds).
    pub(super) async fn kill_query(self, thread: u32) {
        let creds = Credentials {
            user: &self.user,
            password: &self.password,
            database: None,
            capabilities: mysql_common::constants::CapabilityFlags::empty(),
            collation: 45,
        };
        let kill = format!("KILL QUERY {thread}");
        let timeout = std::time::Duration::from_secs(5);
        match BackendConn::connect(&self.address, &creds, timeout, &self.tls, &self.configured)
            .await
        {
            Ok(mut c) => match tokio::time::timeout(timeout, c.query_scalar(&kill)).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(parent: &self.span, code = e.code(), thread, "KILL QUERY refused")
                }
                Ok(Err(e)) => tracing::warn!(parent: &self.span, error = %e, "KILL QUERY failed"),
                Err(_) => tracing::warn!(parent: &self.span, thread, "KILL QUERY timed out"),
            },
            Err(e) => {
                tracing::warn!(parent: &self.span, error = %e, "cannot connect to kill a statement")
            }
        }
    }
}

/// Awaits a response; past `limit`, kills the statement on its backend (`KILL QUERY` over a
/// separate connection) and goes on awaiting: the server then ends the response with its
/// "query execution was interrupted" error, which the client gets.
async fn with_timeout<F: std::future::Future<Output = Result<Outcome, ForwardError>>>(
    fwd: F,
    limit: std::time::Duration,
    (shared, user, backend, span): (&super::Shared, &str, (usize, &str), &tracing::Span),
    thread: u32,
    info: &std::sync::Mutex<super::SessionInfo>,
) -> Result<Outcome, ForwardError> {
    tokio::pin!(fwd);
    tokio::select! {
        r = &mut fwd => r,
        _ = tokio::time::sleep(limit) => {
            error("query_timeout");
            info.lock().unwrap_or_else(|p| p.into_inner()).kill_sent = true;
            let killer = Killer::new(shared, user, backend, span);
            tracing::warn!(parent: span, backend = killer.backend, thread, ?limit, "statement ran past its query_timeout; killing it");
            tokio::spawn(killer.kill_query(thread));
            fwd.await
        }
    }
}

/// Records that `conn` has the statement of `key` prepared as server statement `id`, in `context`. A
/// statement prepared there before under the same text is closed (the new id replaces it), and
/// past the connection's `statement_cap` one other is closed, so a connection holds a bounded
/// number.
/// Server statements in `keep` (an open cursor's, long data's: another client statement of the
/// session still uses them) are never closed: one replaced stays open, out of the map, and the
/// return is true: the connection goes back to its pool reset, which closes it.
pub(super) async fn remember_prepared(
    conn: &mut BackendConn,
    key: &crate::pool::conn::StatementKey,
    context: u64,
    id: u32,
    keep: &[u32],
) -> bool {
    let close = conn
        .statements
        .insert(*key, (context, id))
        .map(|(_, old)| old);
    let orphaned = close.is_some_and(|old| keep.contains(&old));
    let mut closing: Vec<u32> = close
        .filter(|&old| old != id && !keep.contains(&old))
        .into_iter()
        .collect();
    // Past its share (which shrinks as its backend's pool grows): down to it, one per prepare
    // would leave a connection filled while few were open above it for good.
    let cap = conn.statement_cap();
    while conn.statements.len() > cap {
        let victim = conn
            .statements
            .iter()
            .find(|(k, (_, b))| *k != key && !keep.contains(b))
            .map(|(k, _)| *k);
        match victim.and_then(|k| conn.statements.remove(&k)) {
            Some((_, old)) => closing.push(old),
            None => break,
        }
    }
    if close.is_some() || !closing.is_empty() {
        conn.statements_dropped();
    }
    // A failure shows on the next command.
    if queue_closes(conn, &closing).await {
        let _ = conn.flush_commands().await;
    }
    orphaned
}

/// Queues a COM_STMT_CLOSE (which has no response) for each of `ids`; false when writing
/// failed (the connection is broken then).
async fn queue_closes(conn: &mut BackendConn, ids: &[u32]) -> bool {
    for id in ids {
        let close = crate::protocol::Command::StmtClose.packet(&id.to_le_bytes());
        if conn.queue_command(&close).await.is_err() {
            return false;
        }
    }
    !ids.is_empty()
}

/// Prepares `packet` on `conn`, in `schema` if it is not the connection's.
async fn prepare_on(
    conn: &mut BackendConn,
    schema: Option<&str>,
    packet: &[u8],
) -> Result<Result<Outcome, crate::pool::ServerErr>, BackendError> {
    match schema {
        Some(schema) => prepare_in(conn, schema, packet).await,
        None => conn.run_internal(packet, ResponseKind::StmtPrepare).await,
    }
}

/// Closes the statements `conn` keeps for reuse, except those in `keep`. Returns whether any
/// was closed.
async fn close_kept_statements(conn: &mut BackendConn, keep: &[u32]) -> bool {
    let ids: Vec<u32> = conn
        .statements
        .values()
        .map(|&(_, b)| b)
        .filter(|b| !keep.contains(b))
        .collect();
    if ids.is_empty() {
        return false;
    }
    conn.statements.retain(|_, (_, b)| keep.contains(b));
    conn.statements_dropped();
    // Sent with the prepare that follows.
    queue_closes(conn, &ids).await
}

/// Prepares `packet` on `conn` with `schema` selected for it, then selects the connection's own
/// schema again: a statement the client prepared before a `USE` finds its tables where the
/// server would. One command at a time, not pipelined: a prepare must never run in the wrong
/// schema because selecting the right one failed (it was dropped: the client gets that error).
/// If selecting the old schema fails, `conn.schema` says so and the next sync selects it.
async fn prepare_in(
    conn: &mut BackendConn,
    schema: &str,
    packet: &[u8],
) -> Result<Result<Outcome, crate::pool::ServerErr>, BackendError> {
    let back = conn.schema.clone();
    if let Err(e) = conn.init_db(schema).await? {
        return Ok(Err(e));
    }
    let r = conn.run_internal(packet, ResponseKind::StmtPrepare).await?;
    if let Some(back) = back {
        // A failure leaves `conn.schema` at `schema`; the next sync mends it.
        let _ = conn.init_db(&back).await?;
    }
    Ok(r)
}

/// A client's text in a log line with its control characters escaped: a newline in a quoted
/// name in a digest cannot start a forged line of the plain log.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Counts an error rwsplit answered or hit itself.
pub(super) fn error(kind: &'static str) {
    metrics::counter!(crate::metrics::ERRORS, "kind" => kind).increment(1);
}

/// Counts a statement in flight on a backend for as long as it lives.
struct InFlight<'a>(Option<&'a std::sync::atomic::AtomicU32>);

impl<'a> InFlight<'a> {
    fn new(shared: &'a super::Shared, backend: usize) -> InFlight<'a> {
        let c = shared.outstanding.get(backend);
        if let Some(c) = c {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Why a command did not run.
pub(super) enum Failure {
    /// Tell the client this error packet; the session goes on.
    Reply(Vec<u8>),
    /// The backend could not be used (connect or I/O failure before any byte reached the client).
    Down(String),
    /// The backend's pool stayed full for the checkout timeout: a read may go elsewhere, else
    /// the client gets this error packet (1040).
    Busy(Vec<u8>),
}

/// How long a replica found without the session's schema is passed over for its reads (a
/// database just created reaches it in that time, unless it is filtered out there).
const SCHEMA_MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a server error says the schema cannot be selected there: ER_BAD_DB_ERROR (1049),
/// or ER_DBACCESS_DENIED_ERROR (1044), which the server gives a user with no grant on a schema
/// that does not exist (a replica may also lack a new grant). Asked of replicas only: the
/// primary's answer is the one the client gets.
pub(super) fn unknown_schema(payload: &[u8]) -> bool {
    crate::protocol::packets::parse_err(payload).is_some_and(|e| matches!(e.code, 1044 | 1049))
}

pub(super) fn slot_of<'a>(
    primary: &'a mut Option<Pooled>,
    replica: &'a mut Option<Pooled>,
    slot: Slot,
) -> Option<&'a mut Pooled> {
    match slot {
        Slot::Primary => primary.as_mut(),
        Slot::Replica => replica.as_mut(),
    }
}

/// A transaction is open on this slot's connection.
fn open_transaction(c: &Option<Pooled>) -> bool {
    c.as_ref().is_some_and(|c| c.in_transaction())
}

pub(super) fn slot_for(t: Target) -> Slot {
    if t.is_primary() {
        Slot::Primary
    } else {
        Slot::Replica
    }
}

impl Session {
    /// The replica of the READ ONLY transaction open on it, if one is.
    pub(super) fn replica_transaction(&self) -> Option<usize> {
        self.replica
            .as_ref()
            .filter(|c| c.in_transaction())
            .map(|c| c.backend())
    }

    pub(super) fn in_transaction(&self) -> bool {
        open_transaction(&self.primary) || open_transaction(&self.replica)
    }

    /// What routing needs to know of the session. The replica-choosing parts (read-your-writes
    /// positions, loads, saturation) are filled in only when `replicas` says a replica may be
    /// chosen: in a transaction, for instance, every statement goes to the primary, and
    /// comparing GTID positions per statement there was measurable.
    /// `snap` and `cfg` are the caller's loads of the shared health snapshot and config: each
    /// load is an `arc-swap` read of about 50 instructions, and routing one statement used to
    /// make five. `begins_read_only`: the statement is a `START TRANSACTION READ ONLY` (the
    /// only one `read_only_on_replica` is asked for).
    fn view(
        &mut self,
        avoid: Option<usize>,
        replicas: bool,
        begins_read_only: bool,
        snap: &crate::monitor::Snapshot,
        cfg: &crate::config::Config,
    ) -> SessionView {
        use crate::config::Consistency;
        let mut view = SessionView {
            in_transaction: self.in_transaction(),
            replica_transaction: self.replica_transaction(),
            read_only_on_replica: false,
            autocommit: self.state.autocommit,
            // A pending `SET TRANSACTION` is for the next transaction, which an autocommit
            // read is too: it runs where the characteristics wait (and uses them up).
            reads_pinned_to_primary: self.state.temporary_tables
                || self.state.table_locks
                || self.state.next_transaction
                || self.state.untracked_state
                || self.state.role
                || self.causal.mode == Consistency::Strong,
            current_replica: self
                .replica
                .as_ref()
                .map(|c| c.backend())
                .or(self.last_replica),
            avoid,
            blocked: 0,
            saturated: 0,
            outstanding: None,
        };
        if !replicas || view.in_transaction || !view.autocommit {
            return view;
        }
        // Not while anything keeps the primary's connection (a pending `SET TRANSACTION`, user
        // variables, named locks, a cursor, long data, ...): with the transaction on a replica,
        // that connection would go back to its pool and lose it. Nor under SERIALIZABLE, where
        // InnoDB makes every read of a transaction a locking read: on a replica, its locks
        // would hold up replication.
        view.read_only_on_replica = begins_read_only
            && cfg.routing.read_only_transactions_on_replica
            && state::pin_reason(&self.state).is_none()
            && self.cursors.is_empty()
            && self.long_data.is_empty()
            && !self.state.serializable();
        if self.causal.mode == Consistency::ReadYourWrites {
            let flavor = Flavor::of(&self.shared.health.identity.load().version);
            let forget = cfg
                .routing
                .max_replica_lag
                .saturating_add(cfg.routing.read_your_writes_wait);
            view.blocked = self
                .causal
                .blocked_replicas(snap, flavor, forget, cfg.monitor.timeout);
        }
        // Replicas found without the session's schema lately: not asked again for a while.
        view.blocked |= self.schema_missing_mask();
        // A replica connection this session holds is no reason to look elsewhere.
        view.saturated = self.shared.pools.saturated(snap.backends.len())
            & !self.replica.as_ref().map_or(0, |c| route::bit(c.backend()));
        view.outstanding = cfg.routing.least_outstanding.then(|| {
            let mut loads = [0u32; route::MAX_LOAD_TRACKED];
            for (l, o) in loads.iter_mut().zip(&self.shared.outstanding) {
                *l = o.load(std::sync::atomic::Ordering::Relaxed);
            }
            loads
        });
        view
    }

    /// The replicas found without the session's schema in the last `SCHEMA_MISSING_FOR`.
    fn schema_missing_mask(&self) -> u64 {
        match &self.schema_missing {
            Some((schema, mask, since))
                if *schema == self.state.schema && since.elapsed() < SCHEMA_MISSING_FOR =>
            {
                *mask
            }
            _ => 0,
        }
    }

    /// Notes that replica `b` lacks the session's schema: its reads go elsewhere for
    /// `SCHEMA_MISSING_FOR` (each would otherwise try it first, and fail there).
    fn schema_missing_on(&mut self, b: usize) {
        let mask = self.schema_missing_mask() | route::bit(b);
        self.schema_missing = Some((self.state.schema.clone(), mask, std::time::Instant::now()));
    }

    /// The primary, for a read a replica cannot serve.
    pub(super) fn primary_decision(&self) -> Result<Decision, RouteError> {
        let snap = self.shared.health.snapshot.load();
        route::sole_primary(&snap.backends).map(|b| Decision {
            target: Target::Primary(b),
            why: Why::Read,
        })
    }

    /// Where a statement goes. Session commands run on a connection the session already holds
    /// (preferring the primary), so a read-only client never needs a primary connection for them.
    pub(super) fn target_for(
        &mut self,
        c: &Classification,
        avoid: Option<usize>,
    ) -> Result<Target, RouteError> {
        self.decide(c, avoid).map(|d| d.target)
    }

    fn decide(&mut self, c: &Classification, avoid: Option<usize>) -> Result<Decision, RouteError> {
        let snap = self.shared.health.snapshot.load();
        let cfg = self.shared.config();
        // A SET that also assigns a user variable runs where user variables live (primary);
        // one of a one-shot variable (`insert_id`) where the statement that uses it will run.
        let session_cmd = matches!(c.kind, StatementKind::SessionCommand | StatementKind::Use)
            && !matches!(
                c.effect,
                Some(
                    crate::classify::SessionEffect::SetsUserVariable
                        | crate::classify::SessionEffect::SetsOneShotVariable
                )
            );
        // Only a read (or a session command, routed as one, or a read-only transaction) can go
        // to a replica.
        let replicas = session_cmd || c.may_read_a_replica();
        let view = self.view(avoid, replicas, c.read_only_transaction, &snap, &cfg);
        if session_cmd && !view.in_transaction && view.autocommit && c.hint.is_none() {
            let up = |b: usize| snap.backends.get(b).is_some_and(|v| v.up);
            if let Some(p) = self.primary.as_ref().filter(|p| up(p.backend())) {
                return Ok(Decision {
                    target: Target::Primary(p.backend()),
                    why: Why::Read,
                });
            }
            // A session command reads no data, but `USE db` needs the schema and a `SET` may
            // read a table (`SET x = (SELECT ...)`): a replica behind the session's last write
            // (read-your-writes) is passed over as for a read.
            let current = |b: usize| view.blocked & route::bit(b) == 0;
            if let Some(r) = self
                .replica
                .as_ref()
                .filter(|r| up(r.backend()) && avoid != Some(r.backend()) && current(r.backend()))
            {
                return Ok(Decision {
                    target: Target::Replica(r.backend()),
                    why: Why::Read,
                });
            }
            // Any other replica that is current will do; with none, the primary at once,
            // whatever `when_no_replica` says (nothing to wait for).
            let read = Classification {
                kind: StatementKind::Read,
                reads_no_table: true,
                ..c.clone()
            };
            let d = route::route(
                &read,
                &view,
                &snap.backends,
                cfg.routing.when_no_replica,
                rand::random(),
            )?;
            return Ok(match d.why {
                Why::NoReplicaFallback => Decision {
                    why: Why::Read,
                    ..d
                },
                _ => d,
            });
        }
        route::route(
            c,
            &view,
            &snap.backends,
            cfg.routing.when_no_replica,
            rand::random(),
        )
    }

    /// A transaction open on a primary that a reload removed finishes there: the session
    /// moves only once it ends.
    fn removed_primary_in_transaction(&self) -> Option<Target> {
        let p = self.primary.as_ref()?;
        let b = p.backend();
        let removed = self
            .shared
            .backends
            .load()
            .get(b)
            .is_some_and(|s| s.removed);
        (removed && p.in_transaction()).then_some(Target::Primary(b))
    }

    /// Read-your-writes with no replica known to have the session's last write: waits on one
    /// (up to `routing.read_your_writes_wait`) and returns it if the write arrived in time.
    async fn wait_for_last_write(&mut self, avoid: Option<usize>) -> Option<usize> {
        let required = self.causal.required.clone()?;
        let snap = self.shared.health.snapshot.load();
        let flavor = Flavor::of(&self.shared.health.identity.load().version);
        // The eligible replica closest to the write, by the monitor's last positions; not one
        // with no connection to spare (waiting for one could outlast the wait itself: the
        // primary has the write anyway).
        let held = self.replica.as_ref().map(|c| c.backend());
        let saturated = self.shared.pools.saturated(snap.backends.len());
        let missing = self.schema_missing_mask();
        let r = snap
            .backends
            .iter()
            .enumerate()
            .filter(|(i, b)| {
                route::eligible(b)
                    && Some(*i) != avoid
                    && missing & route::bit(*i) == 0
                    && (Some(*i) == held || saturated & route::bit(*i) == 0)
            })
            .min_by_key(|(i, _)| {
                snap.status
                    .get(*i)
                    .and_then(|s| s.gtid.as_deref())
                    .and_then(|g| crate::monitor::replication::gtid_distance(flavor, &required, g))
                    .unwrap_or(u64::MAX)
            })
            .map(|(i, _)| i)?;
        let d = Decision {
            target: Target::Replica(r),
            why: Why::Read,
        };
        let slot = self.checkout(d.target).await.ok()?;
        let conn = slot_of(&mut self.primary, &mut self.replica, slot)?;
        let flavor = conn.flavor();
        let secs = self
            .shared
            .config()
            .routing
            .read_your_writes_wait
            .as_secs_f64();
        let sql = super::consistency::wait_query(flavor, &required, secs);
        match conn.query_scalar(&sql).await {
            Ok(Ok(Some(v))) if v.trim() == "0" => {
                self.causal.verified |= route::bit(r);
                Some(r)
            }
            Ok(_) => None,
            Err(_) => {
                self.drop_slot(slot);
                None
            }
        }
    }

    /// Checks out the connection for `t` (replacing the slot's connection if it is to another
    /// backend) and brings it to the session's state.
    async fn checkout(&mut self, t: Target) -> Result<Slot, Failure> {
        let scope = state::Scope::Session {
            primary: t.is_primary(),
        };
        self.checkout_as(t, scope).await
    }

    /// The session has no schema, and no `USE` is selecting one (`pool_for`'s key).
    fn schemaless(&self) -> bool {
        self.state.schema.is_none() && !self.selecting_schema
    }

    /// The session's pool on backend `b`: looked up by its key (user, capabilities,
    /// collation, whether the session has a schema) once, then kept until a reload retires it
    /// or the session selects its first schema.
    fn pool_for(&mut self, b: BackendId) -> Option<std::sync::Arc<crate::pool::Pool>> {
        let schemaless = self.schemaless();
        if let Some(Some(p)) = self.pools.get(b)
            && !p.retired()
            && p.schemaless() == schemaless
        {
            return Some(p.clone());
        }
        let key = PoolKey::new(b, &self.user, self.caps, self.collation, schemaless);
        let p = self.shared.pools.pool(&key)?;
        if self.pools.len() <= b {
            self.pools.resize(b + 1, None);
        }
        self.pools[b] = Some(p.clone());
        Some(p)
    }

    /// The server statements on `slot`'s connection that hold an open cursor or long data of
    /// this session: never closed while they do.
    pub(super) fn server_statements_with_state(&self, slot: Slot) -> Vec<u32> {
        // Every execute asks: most sessions have neither.
        if self.cursors.is_empty() && self.long_data.is_empty() {
            return Vec::new();
        }
        let on_slot = self
            .cursors
            .iter()
            .filter(|&&(_, s)| s == slot)
            .map(|&(id, _)| id)
            .chain(
                self.long_data
                    .iter()
                    .copied()
                    .filter(|&id| self.stmts.last(id) == Some(slot)),
            );
        on_slot
            .filter_map(|id| self.stmts.statements.get(&id)?.on.map(|(_, _, b)| b))
            .collect()
    }

    /// Whether `slot`'s connection holds an open cursor or long data of this session.
    pub(super) fn statement_state_on(&self, slot: Slot) -> bool {
        self.cursor_on(slot) || self.long_data_on_slot(slot)
    }

    fn cursor_on(&self, slot: Slot) -> bool {
        self.cursors.iter().any(|&(_, s)| s == slot)
    }

    fn long_data_on_slot(&self, slot: Slot) -> bool {
        self.long_data
            .iter()
            .any(|&id| self.stmts.last(id) == Some(slot))
    }

    /// The session gives up `slot`'s connection while a statement's long data or open cursor
    /// lives there (routing moved it to another server): the connection is reset on its way
    /// back to the pool, the cursor is gone (a fetch gets an error, as after a reset), and an
    /// execute of a statement whose long data went with it is refused.
    pub(super) fn give_up_statement_state(&mut self, slot: Slot) {
        let mut gone = false;
        if self.cursor_on(slot) {
            self.cursors.retain(|&(_, s)| s != slot);
            gone = true;
        }
        let stmts = &self.stmts;
        let (lost, kept): (Vec<u32>, Vec<u32>) = self
            .long_data
            .iter()
            .partition(|&&id| stmts.last(id).is_none_or(|s| s == slot));
        if !lost.is_empty() {
            gone = true;
            self.lost_long_data.extend(lost);
            self.long_data = kept;
        }
        if gone {
            self.leftovers[slot as usize] = true;
        }
    }

    /// `checkout`, bringing the connection to the given part of the session's state.
    async fn checkout_as(&mut self, t: Target, scope: state::Scope) -> Result<Slot, Failure> {
        let slot = slot_for(t);
        let b = t.backend();
        // A session without a schema keeps no connection that has one (taken for a `USE` or
        // a login schema that failed): one from its own pools replaces it.
        let schemaless = self.schemaless();
        let held = slot_of(&mut self.primary, &mut self.replica, slot).map(|c| {
            (
                c.backend(),
                schemaless && c.schema.is_some() && !c.in_transaction(),
            )
        });
        let foreign_schema = held.is_some_and(|(_, foreign)| foreign);
        let held = held.filter(|&(_, foreign)| !foreign).map(|(b, _)| b);
        if held != Some(b) {
            if held.is_some() || foreign_schema {
                self.give_up_statement_state(slot);
            }
            self.release_slot(slot).await;
            // Its diagnostics, and a pin kept for them, went with the old connection.
            self.diagnostics_own[slot as usize] = false;
            if self.until_next == Some(("warnings", slot)) {
                self.until_next = None;
            }
            let pool = self.pool_for(b);
            let st = &self.state;
            let ready = move |c: &crate::pool::BackendConn| scope.ready(c, st);
            let got = match pool {
                Some(pool) => self.shared.pools.get(pool, &ready).await,
                None => Err(PoolError::UnknownBackend(b)),
            };
            match got {
                Ok(c) => match slot {
                    Slot::Primary => self.primary = Some(c),
                    Slot::Replica => self.replica = Some(c),
                },
                Err(e @ PoolError::Exhausted { .. }) => {
                    tracing::warn!(parent: &self.span, error = %e, "backend pool exhausted");
                    return Err(Failure::Busy(ClientError::from(&e).payload()));
                }
                Err(e) => {
                    // A backend that refuses or does not answer is marked down at once, for
                    // every session (the monitor brings it back); this host's own shortage
                    // (out of file descriptors, memory or local ports) says nothing of the
                    // backend and is not counted.
                    match &e {
                        PoolError::Backend {
                            source: BackendError::Connect { source, .. },
                            ..
                        } if !crate::net::local_shortage(source) => {
                            self.shared.health.report_failure(b)
                        }
                        PoolError::Backend {
                            source: BackendError::ConnectTimeout { .. },
                            ..
                        } => self.shared.health.report_failure(b),
                        _ => {}
                    }
                    tracing::warn!(parent: &self.span, error = %e, "cannot open a backend connection");
                    return Err(Failure::Down(e.to_string()));
                }
            }
        }
        // A connection the session kept for its open cursor or long data is never reset.
        let keep = held == Some(b) && self.statement_state_on(slot);
        let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot) else {
            return Err(Failure::Down("connection slot empty".into()));
        };
        if slot == Slot::Replica {
            self.last_replica = Some(b);
        }
        let mut synced = state::sync(conn, &self.state, scope, keep).await;
        if scope == state::Scope::Schema && matches!(synced, Ok(Err(_))) {
            // The error as the server words it in the session's own state (`lc_messages`),
            // not in the state the connection carried.
            let full = state::Scope::Session {
                primary: slot == Slot::Primary,
            };
            synced = state::sync(conn, &self.state, full, keep).await;
        }
        // Warnings or an error the session did not raise here (another session's, lent with
        // the connection, or its own from before a statement elsewhere replaced them) are
        // cleared before any statement of the session runs on it: a `GET DIAGNOSTICS`, a
        // `SET @w = @@warning_count` or a multi-statement would read them, and their messages
        // can quote another session's data. Only a connection that raised some pays for it,
        // and not before a read of a table, which clears them itself.
        if let Ok(Ok(_)) = synced
            && conn.diagnostics
            && !self.diagnostics_own[slot as usize]
            && !self.clears_diagnostics
        {
            // A statement that reads a table clears them (MariaDB keeps them past one that
            // reads none, `DO 0` or `SELECT 1`); every user may read this one.
            let clear = crate::protocol::Command::Query
                .packet(b"DO (SELECT 1 FROM information_schema.ENGINES LIMIT 0)");
            match conn.run_internal(&clear, ResponseKind::Query).await {
                Ok(Ok(_)) => conn.diagnostics = false,
                // Refused (an XA transaction in the wrong state refuses every statement): the
                // client's statement runs and gets its own answer.
                Ok(Err(e)) => {
                    tracing::debug!(parent: &self.span, code = e.code(), "cannot clear a connection's diagnostics")
                }
                Err(e) => synced = Err(e),
            }
        }
        match synced {
            Ok(Ok(done)) => {
                if done != state::Sync::None || held != Some(b) {
                    crate::metrics::hot().state_syncs[done as usize].increment(1);
                }
                Ok(slot)
            }
            Ok(Err(server)) => Err(Failure::Reply(server.payload)),
            Err(e) => {
                self.drop_slot(slot);
                Err(Failure::Down(e.to_string()))
            }
        }
    }

    /// Updates what `/sessions` shows and keeps the entry locked for the caller's own fields.
    /// `now` is the caller's own clock read: a statement reads the clock once as it starts
    /// and once as it ends, for everything it times (a read is about 20 ns here, and a
    /// statement used to make ten).
    fn info_at(
        &self,
        state: &'static str,
        backend: Option<&'static str>,
        now: std::time::Instant,
    ) -> std::sync::MutexGuard<'_, super::SessionInfo> {
        let mut i = self.info.lock().unwrap_or_else(|p| p.into_inner());
        i.state = state;
        i.since = now;
        if i.schema != self.state.schema {
            i.schema.clone_from(&self.state.schema);
        }
        if state == "executing" {
            i.digest = self.digest.as_ref().map(|d| d.text().clone());
        }
        if backend.is_some() {
            i.backend = backend;
        }
        i
    }

    /// Query insight and the slow log for a finished statement.
    fn observe(
        &mut self,
        target: Target,
        result: &Result<Outcome, ForwardError>,
        started: std::time::Instant,
        elapsed: std::time::Duration,
        backend: &'static str,
    ) {
        let idle = if self.in_transaction() {
            "idle in transaction"
        } else {
            "idle"
        };
        let killed = {
            let mut i = self.info_at(idle, Some(backend), started + elapsed);
            i.running_on = None;
            i.running_at = None;
            i.backend_thread = None;
            std::mem::take(&mut i.kill_sent)
        };
        if killed {
            self.kill_sent = Some(slot_for(target));
        }
        let Some(digest) = self.digest.clone() else {
            return;
        };
        let (rows, error) = match result {
            Ok(o) => (o.rows, o.error.is_some()),
            Err(_) => (0, true),
        };
        self.shared.insight.record(&crate::insight::Sample {
            digest: digest.text(),
            key: digest.key(),
            elapsed,
            rows,
            error,
            primary: target.is_primary(),
        });
        if elapsed >= self.shared.config().insight.slow_query_threshold {
            tracing::warn!(
                target: "rwsplit::slow",
                parent: &self.span,
                digest = %Escaped(digest.text()),
                duration_ms = elapsed.as_millis() as u64,
                backend,
                user = %self.user,
                schema = self.state.schema.as_deref().unwrap_or(""),
                rows,
                error,
                "slow query"
            );
        }
    }

    /// Commits the transaction open on `slot` with rwsplit's own COMMIT (the answer is not the
    /// client's). A server error comes back as the packet to send the client.
    async fn commit_on(&mut self, slot: Slot) -> Result<(), Failure> {
        let Some(c) = slot_of(&mut self.primary, &mut self.replica, slot) else {
            return Ok(());
        };
        let commit = crate::protocol::Command::Query.packet(b"COMMIT");
        match c.run_internal(&commit, ResponseKind::Query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure::Reply(e.payload)),
            Err(e) => {
                let msg = format!("backend '{}' failed: {e}", c.backend_name());
                self.drop_slot(slot);
                Err(Failure::Down(msg))
            }
        }
    }

    /// Inside a READ ONLY transaction on a replica, nothing that could write gets there
    /// (`route::in_replica_transaction`). Returns whether the statement goes on to routing:
    /// outside such a transaction, for one that stays in it, and once one that ends it has
    /// ended it; `false` when the client was answered instead. A prepare is let through: only
    /// its execution can write.
    async fn passes_replica_transaction(
        &mut self,
        class: &Classification,
        kind: ResponseKind,
        forced: Option<Target>,
    ) -> Result<bool, SessionError> {
        use route::InReplicaTransaction as I;
        let Some(r) = self.replica_transaction() else {
            return Ok(true);
        };
        if matches!(kind, ResponseKind::StmtPrepare) {
            return Ok(true);
        }
        // A connection forced by earlier commands (long data sent before the transaction, on
        // the primary) is not the transaction's: the statement cannot run there.
        let rule = match (forced, route::in_replica_transaction(class)) {
            (Some(t), _) if t != Target::Replica(r) => I::Refused("a statement bound elsewhere"),
            (Some(_), I::EndsTransaction) => I::Refused("a statement with long data"),
            (_, rule) => rule,
        };
        let answer = match rule {
            I::Stay => return Ok(true),
            I::ReadOnlyError => ClientError::read_only_transaction().payload(),
            I::Refused(what) => ClientError::not_supported(&format!(
                "{what} in a READ ONLY transaction on a replica \
                 (routing.read_only_transactions_on_replica)"
            ))
            .payload(),
            // What the server would do first: commit (nothing was written).
            I::EndsTransaction => match self.commit_on(Slot::Replica).await {
                Ok(()) => {
                    self.settle().await;
                    return Ok(true);
                }
                Err(Failure::Down(msg)) => ClientError::backend_failed(msg).payload(),
                Err(Failure::Reply(p) | Failure::Busy(p)) => p,
            },
        };
        self.reply_raw(&answer).await.map(|_| false)
    }

    /// Returns a slot's connection to its pool: as it is when multiplexing and nothing on it
    /// must stay with this session (the next user brings it to its own state), else reset.
    pub(super) async fn release_slot(&mut self, slot: Slot) {
        let c = match slot {
            Slot::Primary => self.primary.take(),
            Slot::Replica => self.replica.take(),
        };
        let leftovers = std::mem::take(&mut self.leftovers[slot as usize]);
        if let Some(c) = c {
            self.stmts.forget_slot(slot);
            if self.kill_sent == Some(slot) {
                // A KILL may still reach this connection's thread: never hand it to anyone.
                self.kill_sent = None;
                return;
            }
            let clean = slot == Slot::Replica || state::pin_reason(&self.state).is_none();
            if self.multiplex && clean && !leftovers && !c.in_transaction() {
                c.give_back();
            } else {
                c.release().await;
            }
        }
    }

    /// What keeps the session's connections after the statement that just ran, each with the
    /// slot it keeps, in the order `/sessions` and the pin metric name them (the first is the
    /// session's pin). Each slot is kept for its own reasons: a replica's open cursor or long
    /// data outlives a pin of the primary's, and the other way round. Collected once per
    /// command (`settle`).
    fn holds(&self) -> [Option<(&'static str, Slot)>; 8] {
        use Slot::{Primary, Replica};
        [
            open_transaction(&self.primary).then_some(("transaction", Primary)),
            open_transaction(&self.replica).then_some(("transaction", Replica)),
            state::pin_reason(&self.state).map(|r| (r, Primary)),
            self.until_next,
            self.cursor_on(Primary).then_some(("cursor", Primary)),
            self.cursor_on(Replica).then_some(("cursor", Replica)),
            self.long_data_on_slot(Primary)
                .then_some(("long_data", Primary)),
            self.long_data_on_slot(Replica)
                .then_some(("long_data", Replica)),
        ]
    }

    /// After a command: with multiplexing, every connection nothing pins goes back to its
    /// pool. Counts each pin as it starts.
    pub(super) async fn settle(&mut self) {
        if !self.multiplex {
            return;
        }
        let holds = self.holds();
        let reason = holds.iter().flatten().next().map(|&(r, _)| r);
        let kept = [Slot::Primary, Slot::Replica]
            .map(|slot| holds.iter().flatten().any(|&(_, s)| s == slot));
        if reason != self.pinned {
            if let Some(r) = reason {
                metrics::counter!(crate::metrics::PINS, "reason" => r).increment(1);
            }
            self.pinned = reason;
            self.info.lock().unwrap_or_else(|p| p.into_inner()).pinned = reason;
        }
        for slot in [Slot::Primary, Slot::Replica] {
            if kept[slot as usize] {
                continue;
            }
            if slot_of(&mut self.primary, &mut self.replica, slot).is_some() {
                if slot == Slot::Primary {
                    // The last commit's GTID is only known on this connection.
                    self.fetch_due_gtid().await;
                }
                self.release_slot(slot).await;
            }
        }
    }

    /// Closes a slot's connection after it failed (or mid-response). What it held that no other
    /// connection has is lost with it: the session then ends after this command's reply
    /// (`lost`). Going on would run the client's next statements outside the transaction it
    /// thinks is open, or without its locks.
    pub(super) fn drop_slot(&mut self, slot: Slot) {
        if let Some(what) = self.held_on(slot) {
            tracing::warn!(
                parent: &self.span,
                lost = what,
                "a backend connection failed while it held session state; closing the session"
            );
            self.lost = Some(what);
        }
        self.discard_slot(slot);
    }

    /// What a slot's connection holds that no other connection has: an open transaction, or
    /// (the primary) state that pins the session.
    fn held_on(&self, slot: Slot) -> Option<&'static str> {
        let conn = match slot {
            Slot::Primary => &self.primary,
            Slot::Replica => &self.replica,
        };
        if open_transaction(conn) {
            Some("open_transaction")
        } else if slot == Slot::Primary && conn.is_some() {
            state::pin_reason(&self.state)
        } else {
            None
        }
    }

    /// Closes a slot's connection on purpose (the client is told what that means, or nothing is
    /// lost).
    pub(super) fn discard_slot(&mut self, slot: Slot) {
        let c = match slot {
            Slot::Primary => self.primary.take(),
            Slot::Replica => self.replica.take(),
        };
        if let Some(mut c) = c {
            c.broken = true;
        }
        // Cursors and long data on it are gone with it (an execute of such a statement is
        // refused, not run without its long data); closed, not returned: nothing to reset.
        self.give_up_statement_state(slot);
        self.leftovers[slot as usize] = false;
        self.stmts.forget_slot(slot);
    }

    /// The bytes to send on `slot` for `cmd`, preparing a statement there first if needed.
    /// Only an execute is rewritten; any other command is sent as the client sent it.
    async fn bytes_for<'p>(
        &mut self,
        cmd: &Cmd<'p>,
        slot: Slot,
    ) -> Result<std::borrow::Cow<'p, [u8]>, Failure> {
        let (packet, id) = match cmd {
            Cmd::Raw(p) | Cmd::Prepare { packet: p, .. } => {
                return Ok(std::borrow::Cow::Borrowed(p));
            }
            Cmd::Execute { packet, id } => (*packet, *id),
        };
        let backend_id = self.prepared_on(id, slot).await?;
        let unknown =
            || Failure::Reply(ClientError::unknown_statement(id, "mysqld_stmt_execute").payload());
        let stmt = self.stmts.get_mut(id).ok_or_else(unknown)?;
        // The session's buffer, handed back by `keep_execute_buf` once sent.
        let mut out = std::mem::take(&mut self.execute_buf);
        prepared::rewrite_execute(packet, stmt, backend_id, &mut out)
            .map(|()| std::borrow::Cow::Owned(out))
            .ok_or_else(|| {
                Failure::Reply(
                    ClientError::new(1210, "HY000", "Incorrect arguments to mysqld_stmt_execute")
                        .payload(),
                )
            })
    }

    /// Takes back the buffer `bytes_for` lent an execute, unless a large one grew it: an idle
    /// session keeps at most `KEEP` bytes (an OLTP execute is tens to hundreds; 10,000 idle
    /// sessions then hold at most 10 MiB of them).
    fn keep_execute_buf(&mut self, bytes: std::borrow::Cow<'_, [u8]>) {
        const KEEP: usize = 1024;
        if let std::borrow::Cow::Owned(v) = bytes
            && v.capacity() <= KEEP
        {
            self.execute_buf = v;
        }
    }

    /// The server's id for statement `id` on `slot`'s connection, preparing it there first if
    /// that connection has not prepared it yet.
    pub(super) async fn prepared_on(&mut self, id: u32, slot: Slot) -> Result<u32, Failure> {
        let unknown =
            || Failure::Reply(ClientError::unknown_statement(id, "mysqld_stmt_execute").payload());
        // Long data sent or a cursor open lives on the server statement it was sent to: that
        // one is used whatever `SET` ran since (on the server, a statement keeps its parse).
        let pending = self.long_data.contains(&id) || self.cursor_slot(id) == Some(slot);
        let keep = self.server_statements_with_state(slot);
        let stmt = self.stmts.statements.get_mut(&id).ok_or_else(unknown)?;
        let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot) else {
            return Err(Failure::Down("connection slot empty".into()));
        };
        // The schema the client prepared it in, not the one selected now: on the server a
        // statement keeps finding its tables there after a `USE`.
        let want = stmt.schema.as_deref();
        let elsewhere = want.filter(|&w| conn.schema.as_deref() != Some(w));
        // Where the statement ran last, unless that connection closed or replaced statements
        // since: no hash and compare of its text per execute.
        let here = conn.statements_version();
        let context = conn.context_in(want.or(conn.schema.as_deref()));
        // One with an open cursor or long data: its own server statement, on this connection
        // (never closed meanwhile, nor the connection reset: `keep`), however many statements
        // were prepared there since (one of the same text replaces it in the connection's map).
        // Nor is one that holds another client statement's cursor or long data (the same text
        // prepared twice) shared: this one is prepared again, for itself.
        let theirs = |b: u32| !pending && keep.contains(&b);
        if let Some((at, c, b)) = stmt.on
            && (at == here && c == context && !theirs(b) || pending && at.0 == here.0)
        {
            return Ok(b);
        }
        if let Some(&(c, b)) = conn.statements.get(&stmt.key)
            && c == context
            && !theirs(b)
        {
            stmt.on = Some((here, context, b));
            return Ok(b);
        }
        let mut r = prepare_on(conn, elsewhere, &stmt.prepare_packet).await;
        // The server's `max_prepared_stmt_count` reached (it counts every connection's): the
        // statements this connection keeps for reuse are closed, and the prepare tried again.
        if matches!(&r, Ok(Err(e)) if e.code() == 1461) && close_kept_statements(conn, &keep).await
        {
            r = prepare_on(conn, elsewhere, &stmt.prepare_packet).await;
        }
        match r {
            Ok(Ok(Outcome {
                prepared: Some(p), ..
            })) => {
                if remember_prepared(conn, &stmt.key, context, p.statement_id, &keep).await {
                    self.leftovers[slot as usize] = true;
                }
                stmt.on = Some((conn.statements_version(), context, p.statement_id));
                Ok(p.statement_id)
            }
            Ok(Ok(_)) => Err(Failure::Down("prepare returned no statement".into())),
            Ok(Err(server)) => Err(Failure::Reply(server.payload)),
            Err(e) => {
                self.drop_slot(slot);
                Err(Failure::Down(e.to_string()))
            }
        }
    }

    /// Runs `cmd` where routing sends `class` (or on `forced`), streaming the response back.
    /// Returns the slot and outcome, or `None` when the client was sent an error instead.
    pub(super) async fn execute(
        &mut self,
        class: &Classification,
        cmd: Cmd<'_>,
        kind: ResponseKind,
        forced: Option<Target>,
    ) -> Result<Option<(Slot, Outcome)>, SessionError> {
        // `USE db` / COM_INIT_DB: the connection is not brought to the session's old schema
        // first (it may have been dropped, and the statement sets the schema anyway); `after`
        // records the new one, a failure restores the old.
        let old = match (class.kind, &class.schema) {
            (StatementKind::Use, Some(_)) => Some(self.state.schema.take()),
            _ => None,
        };
        self.selecting_schema = old.is_some();
        self.clears_diagnostics =
            matches!(kind, ResponseKind::Query | ResponseKind::StmtExecute { .. })
                && class.clears_diagnostics();
        let r = self.execute_routed(class, cmd, kind, forced).await;
        self.selecting_schema = false;
        self.clears_diagnostics = false;
        if let Some(old) = old {
            if matches!(&r, Ok(Some((_, o))) if o.error.is_none()) {
                self.state.schema.clone_from(&class.schema);
                let mut i = self.info.lock().unwrap_or_else(|p| p.into_inner());
                i.schema.clone_from(&class.schema);
            } else {
                self.state.schema = old;
            }
        }
        r
    }

    async fn execute_routed(
        &mut self,
        class: &Classification,
        cmd: Cmd<'_>,
        kind: ResponseKind,
        forced: Option<Target>,
    ) -> Result<Option<(Slot, Outcome)>, SessionError> {
        let started = std::time::Instant::now();
        drop(self.info_at("executing", None, started));
        if self.gtid_due && forced.is_none() && class.may_read_a_replica() {
            self.fetch_due_gtid().await;
            if self.lost.is_some() {
                // The primary connection died with the session's transaction or pins on it:
                // nothing more runs, the session closes after this error.
                return self.reply_lost().await.map(|_| None);
            }
        }
        // An idempotent SET may run on a connection that already carries the log it makes.
        let then = match cmd {
            Cmd::Raw(packet) if class.idempotent => {
                let sql = &packet[1..];
                let variable = crate::classify::set_target(sql);
                let key = state::log_key(
                    variable.as_deref(),
                    sql,
                    self.digest.as_ref().map(|d| d.text()),
                );
                Some(self.state.after(&key, packet))
            }
            _ => None,
        };
        if !self.passes_replica_transaction(class, kind, forced).await? {
            return Ok(None);
        }
        let in_replica_trx = self.replica_transaction().is_some();
        let mut avoid = None;
        // A replica without the session's schema (a database just created, or filtered out
        // of replication there) sends the statement to the primary, which has it.
        let mut to_primary = false;
        for attempt in 0..2 {
            let decision = match forced.or_else(|| self.removed_primary_in_transaction()) {
                Some(t) => Ok(Decision {
                    target: t,
                    why: Why::Hint,
                }),
                None if to_primary => self.primary_decision(),
                None => self.decide(class, avoid),
            };
            let mut target = match decision {
                Ok(d) => d.target,
                Err(e) => return self.reply(&ClientError::from(e)).await.map(|_| None),
            };
            if target.is_primary()
                && !matches!(cmd, Cmd::Prepare { .. })
                && route::refused_on_read_only_primary(class, self.state.temporary_tables)
                && self
                    .shared
                    .health
                    .snapshot
                    .load()
                    .backends
                    .get(target.backend())
                    .is_some_and(|b| b.read_only)
            {
                let e = route::RouteError::PrimaryReadOnly;
                return self.reply(&ClientError::from(e)).await.map(|_| None);
            }
            if matches!(
                decision,
                Ok(Decision {
                    why: Why::NoReplicaFallback,
                    ..
                })
            ) && self.causal.required.is_some()
                && let Some(r) = self.wait_for_last_write(avoid).await
            {
                target = Target::Replica(r);
            }
            // A transaction never moves: if the primary changed under an open one, it is lost
            // (dropping the connection makes the old primary roll it back) and the client is told.
            // (1213/40001 is the error applications already retry a transaction on.) State that
            // pins the session (locks, temporary tables, ...) cannot move either: it is lost
            // with the old connection, and the session closes after the error.
            let moved = self
                .primary
                .as_ref()
                .filter(|p| target.is_primary() && p.backend() != target.backend())
                .map(|p| p.backend_name().to_string());
            if let Some(name) = moved {
                let pin = state::pin_reason(&self.state);
                let in_trx = self.in_transaction();
                if in_trx || pin.is_some() {
                    self.discard_slot(Slot::Primary);
                    self.lost = pin;
                    let e = match pin {
                        None => ClientError::new(
                            1213,
                            "40001",
                            format!(
                                "rwsplit: the primary changed from '{name}' while your \
                                 transaction was open; the transaction was rolled back, retry it"
                            ),
                        ),
                        Some(_) => ClientError::backend_failed(format!(
                            "the primary changed from '{name}' while this session held state \
                             there{}",
                            if in_trx {
                                " and a transaction was open"
                            } else {
                                ""
                            }
                        )),
                    };
                    return self.reply(&e).await.map(|_| None);
                }
            }
            // A transaction never moves to another replica.
            let retry = attempt == 0 && !target.is_primary() && forced.is_none() && !in_replica_trx;
            let primary = target.is_primary();
            let scope = match then {
                Some((applied, chain)) => state::Scope::Then {
                    primary,
                    applied,
                    chain,
                },
                None => state::Scope::Session { primary },
            };
            // `USE db` on a replica selects `db` as the connection is synced, so that a replica
            // without it is known before the statement is sent (its error would go to the
            // client); `execute` took the session's schema for the statement, and has it back.
            let use_on_replica = retry && class.kind == StatementKind::Use;
            if use_on_replica {
                self.state.schema.clone_from(&class.schema);
            }
            let checked_out = self.checkout_as(target, scope).await;
            if use_on_replica {
                self.state.schema = None;
            }
            let slot = match checked_out {
                Ok(s) => s,
                Err(Failure::Reply(p)) if retry && unknown_schema(&p) => {
                    if !use_on_replica {
                        self.schema_missing_on(target.backend());
                    }
                    to_primary = true;
                    continue;
                }
                Err(Failure::Reply(p)) => return self.reply_raw(&p).await.map(|_| None),
                Err(Failure::Busy(_)) if retry => {
                    avoid = Some(target.backend());
                    continue;
                }
                Err(Failure::Busy(p)) => {
                    error("pool_exhausted");
                    return self.reply_raw(&p).await.map(|_| None);
                }
                Err(Failure::Down(_)) if retry => {
                    avoid = Some(target.backend());
                    continue;
                }
                Err(Failure::Down(msg)) => {
                    return self
                        .reply(&ClientError::backend_failed(msg))
                        .await
                        .map(|_| None);
                }
            };
            let bytes = match self.bytes_for(&cmd, slot).await {
                Ok(b) => b,
                // Re-prepared in a schema the replica lacks.
                Err(Failure::Reply(p)) if retry && unknown_schema(&p) => {
                    self.schema_missing_on(target.backend());
                    to_primary = true;
                    continue;
                }
                Err(Failure::Reply(p) | Failure::Busy(p)) => {
                    return self.reply_raw(&p).await.map(|_| None);
                }
                Err(Failure::Down(_)) if retry => {
                    avoid = Some(target.backend());
                    continue;
                }
                Err(Failure::Down(msg)) => {
                    return self
                        .reply(&ClientError::backend_failed(msg))
                        .await
                        .map(|_| None);
                }
            };
            let proxy_id = match cmd {
                Cmd::Prepare { proxy_id, .. } => Some(proxy_id),
                _ => None,
            };
            let name = self.shared.name(target.backend());
            let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot) else {
                continue;
            };
            let thread = conn.connection_id;
            let was_in_transaction = conn.in_transaction();
            {
                let mut i = self.info.lock().unwrap_or_else(|p| p.into_inner());
                if i.killed {
                    // KILL CONNECTION came while this statement was being routed or waited for
                    // a connection: it had no backend thread to interrupt, so it never runs.
                    return Err(SessionError::Killed);
                }
                i.running_on = Some(target.backend());
                i.running_at = Some(conn.reached.clone());
                i.backend_thread = Some(thread);
                if class.reads_connection_id {
                    let at = (target.backend(), thread);
                    i.connection_ids.retain(|&c| c != at);
                    if i.connection_ids.len() == super::CONNECTION_IDS_KEPT {
                        i.connection_ids.remove(0);
                    }
                    i.connection_ids.push(at);
                }
            }
            let result = {
                let _in_flight = InFlight::new(&self.shared, target.backend());
                match conn.send_command(&bytes).await {
                    Ok(()) => {
                        let at = conn.reached.clone();
                        let shift = match cmd {
                            Cmd::Execute { packet, .. } => extra_frames(packet.len(), bytes.len()),
                            _ => 0,
                        };
                        let fwd = forward::response(conn, &mut self.client, kind, proxy_id, shift);
                        match self.query_timeout {
                            None => fwd.await,
                            Some(limit) => {
                                let on = (
                                    &*self.shared,
                                    self.user.as_str(),
                                    (target.backend(), &*at),
                                    &self.span,
                                );
                                with_timeout(fwd, limit, on, thread, &self.info).await
                            }
                        }
                    }
                    Err(e) => Err(ForwardError::Backend {
                        error: e.to_string(),
                        started: false,
                    }),
                }
            };
            self.keep_execute_buf(bytes);
            let elapsed = started.elapsed();
            record(&self.shared, kind, target, o_ok(&result), elapsed);
            self.observe(target, &result, started, elapsed, name);
            match result {
                Ok(o) => {
                    // Its error broke the connection (`BackendConn::after_response`).
                    let closes = o.error.is_some()
                        && slot_of(&mut self.primary, &mut self.replica, slot)
                            .is_some_and(|c| c.broken);
                    if closes {
                        // The server closes the connection after this error: never pooled
                        // again, and what it held is lost (the session ends after it).
                        self.drop_slot(slot);
                    } else if o.error.is_some() && !was_in_transaction {
                        self.after_error(class, slot).await;
                    }
                    return Ok(Some((slot, o)));
                }
                Err(ForwardError::Client(e)) => {
                    self.discard_slot(slot);
                    return Err(SessionError::Client(e));
                }
                Err(ForwardError::Backend {
                    error: msg,
                    started: sent_any,
                }) => {
                    self.drop_slot(slot);
                    error("backend_failed");
                    let (error, started) = (msg, sent_any);
                    tracing::warn!(parent: &self.span, backend = %name, %error, started, "backend failed during a statement");
                    if started {
                        return Err(SessionError::BackendMidResponse(error));
                    }
                    if retry {
                        avoid = Some(target.backend());
                        continue;
                    }
                    let msg = format!("backend '{name}' failed: {error}");
                    return self
                        .reply(&ClientError::backend_failed(msg))
                        .await
                        .map(|_| None);
                }
            }
        }
        Ok(None)
    }

    /// After a statement failed on `slot`'s connection, which was in no transaction before it:
    /// an error packet carries no status flags, yet the statement may have left a transaction
    /// open (a multi-statement or procedure that began one, then failed; under autocommit off,
    /// any statement that got as far as a table). Taken as not in one, the connection would
    /// go back to the pool with it open. A COM_PING's OK carries the status (and keeps the
    /// error for `SHOW WARNINGS`), so it is asked there, at one round trip per such error;
    /// a plain statement under autocommit opens nothing and costs none.
    async fn after_error(&mut self, class: &Classification, slot: Slot) {
        let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot) else {
            return;
        };
        let autocommit = conn.status & crate::protocol::packets::SERVER_STATUS_AUTOCOMMIT != 0;
        if autocommit && !class.opaque() {
            return;
        }
        match conn.ping().await {
            Ok(true) => {
                let status = conn.status;
                self.state.update_status(status);
            }
            // Whether a transaction was left open is not known: the connection is never
            // reused, and the session ends as if it had held one (it may have).
            _ => {
                self.drop_slot(slot);
                self.lost.get_or_insert("open_transaction");
            }
        }
    }

    /// Checks out the connection for `t` and brings it to `scope` of the session's state,
    /// without running anything else. Returns whether it worked; a failure is reported to the
    /// client unless `report` is false and the failure is one another backend might not have
    /// (down, pool full).
    pub(super) async fn execute_sync_only(
        &mut self,
        t: Target,
        scope: state::Scope,
        report: bool,
    ) -> Result<bool, SessionError> {
        match self.checkout_as(t, scope).await {
            Ok(_) => Ok(true),
            // Unless the failed connection took the session's state with it: that is told now.
            Err(Failure::Busy(_) | Failure::Down(_)) if !report && self.lost.is_none() => Ok(false),
            // A replica that refused (it lacks the schema, or the name is one no server takes):
            // the caller asks the primary, whose answer is the one the client gets, once.
            Err(Failure::Reply(_)) if !report && !t.is_primary() => Ok(false),
            Err(Failure::Reply(p) | Failure::Busy(p)) => self.reply_raw(&p).await.map(|_| false),
            Err(Failure::Down(m)) => self
                .reply(&ClientError::backend_failed(m))
                .await
                .map(|_| false),
        }
    }

    /// Like `execute_sync_only`, for commands that have no response to report a failure in.
    pub(super) async fn checkout_quiet(&mut self, t: Target) -> bool {
        self.checkout(t).await.is_ok()
    }

    /// Sends a command that has a response to a slot that already holds a connection
    /// (cursor fetch, statement reset), streaming the response back.
    pub(super) async fn forward_on(
        &mut self,
        slot: Slot,
        bytes: &[u8],
        kind: ResponseKind,
    ) -> Result<Option<Outcome>, SessionError> {
        let Some(conn) = slot_of(&mut self.primary, &mut self.replica, slot) else {
            return self
                .reply(&ClientError::backend_failed(
                    "the statement's connection is gone",
                ))
                .await
                .map(|_| None);
        };
        let sent = conn.send_command(bytes).await;
        let result = match sent {
            Ok(()) => forward::response(conn, &mut self.client, kind, None, 0).await,
            Err(e) => Err(ForwardError::Backend {
                error: e.to_string(),
                started: false,
            }),
        };
        match result {
            Ok(o) => Ok(Some(o)),
            Err(ForwardError::Client(e)) => {
                self.discard_slot(slot);
                Err(SessionError::Client(e))
            }
            Err(ForwardError::Backend { error, started }) => {
                self.drop_slot(slot);
                if started {
                    return Err(SessionError::BackendMidResponse(error));
                }
                self.reply(&ClientError::backend_failed(error))
                    .await
                    .map(|_| None)
            }
        }
    }
}

/// How many frames more a command of `sent` bytes takes than the client's `client` bytes did
/// (each frame carries at most 0xFFFFFF; one of exactly that is followed by an empty one).
fn extra_frames(client: usize, sent: usize) -> u8 {
    let frames = |n: usize| n / crate::protocol::response::MAX_FRAME;
    u8::try_from(frames(sent).saturating_sub(frames(client))).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Escaped, extra_frames};

    #[test]
    fn a_command_lengthened_past_a_frame_takes_one_more() {
        const F: usize = 0xFF_FFFF;
        for (client, sent, more) in [
            (100, 120, 0),
            (F - 1, F - 1, 0),
            // A payload of exactly 0xFFFFFF is a full frame and an empty one.
            (F - 2, F, 1),
            (F - 1, F + 1, 1),
            (F, F + 2, 0),
            (2 * F - 1, 2 * F + 1, 1),
        ] {
            assert_eq!(extra_frames(client, sent), more, "{client} -> {sent}");
        }
    }

    #[test]
    fn a_digest_in_a_log_line_cannot_break_the_line() {
        let shown = Escaped("SELECT `a\nINFO forged` FROM t").to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("a\\nINFO"), "{shown}");
    }
}
