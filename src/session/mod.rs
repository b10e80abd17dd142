//! One task per client: login, then the command loop. Decisions live in pure functions
//! (`classify`, `route`); this module only sequences I/O and tracks the session's state.

mod buffers;
pub mod client;
mod commands;
pub mod consistency;
mod digests;
mod exec;
mod forward;
mod login;
mod prepared;
mod state;
mod wakeup;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mysql_common::constants::CapabilityFlags as C;
use tracing::Instrument;

use crate::classify::{Classification, StatementKind};
use crate::config::Config;
use crate::error::ClientError;
use crate::monitor::Health;
use crate::net::{Peer, Stream};
use crate::pool::{Pooled, Pools};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::handshake::ServerIdentity;
use crate::protocol::{Command, auth};
use client::ClientIo;
use exec::Cmd;
use prepared::{Registry, Slot};
use state::State;

/// Backends an rwsplit process can know over its life (reloads add ids, never reuse them).
pub const MAX_BACKENDS: usize = 64;

/// One backend as rwsplit knows it, by id (its index). Ids are stable across reloads: a
/// backend removed from the config keeps its id, marked removed; a new one gets a new id.
#[derive(Debug, Clone)]
pub struct BackendSlot {
    /// Leaked once per name: metric label values must be `'static` to record without
    /// allocating, and the set is small.
    pub name: &'static str,
    pub config: crate::config::BackendConfig,
    pub removed: bool,
    /// Its statement counters (shared by the slot's copies a reload makes).
    pub statements: Arc<crate::metrics::StatementCounters>,
    /// Who the monitor logs in as (user, password), as the config now says: a reload that
    /// changes it reaches the backend's monitor tasks through the slot.
    pub monitor_login: Arc<(String, String)>,
}

impl BackendSlot {
    pub fn new(
        config: crate::config::BackendConfig,
        monitor_login: Arc<(String, String)>,
    ) -> BackendSlot {
        let name: &'static str = Box::leak(config.name.clone().into_boxed_str());
        BackendSlot {
            name,
            config,
            removed: false,
            statements: Arc::new(crate::metrics::StatementCounters::new(name)),
            monitor_login,
        }
    }
}

/// Replica reads a sequence's connection is kept past, waiting for the session's `LASTVAL`.
const SEQUENCE_KEPT_FOR_READS: u8 = 8;

/// Session ids (the connection id of the handshake, which `KILL` takes) start here, far above
/// the servers' thread ids that `CONNECTION_ID()` and `SHOW PROCESSLIST` show through rwsplit,
/// so that a `KILL` of one is not taken for the other. They stay below 2^31 for clients that
/// keep the id in a signed 32-bit integer, and wrap back to the base.
pub const SESSION_ID_BASE: u32 = 1 << 30;

/// The backend slots, shared with the monitor.
pub type Slots = Arc<arc_swap::ArcSwap<Vec<BackendSlot>>>;

/// What every session shares: read-mostly, swapped whole when it changes.
pub struct Shared {
    config: arc_swap::ArcSwap<Config>,
    /// Backends by id.
    pub backends: Slots,
    /// The config file reloads read (unset when built from a config in memory).
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    pub pools: Arc<Pools>,
    pub health: Arc<Health>,
    next_id: AtomicU32,
    /// Statements in flight per backend id, for least-outstanding replica choice.
    pub outstanding: Vec<AtomicU32>,
    /// Per-digest statement statistics.
    pub insight: crate::insight::Insight,
    /// Set when rwsplit shuts down (`Shared::stop`): idle sessions end, busy ones after their
    /// statement or transaction. A flag each session reads, and a wakeup through each
    /// session's own `Wakeup`: waiting on a shared channel instead cost every statement a
    /// registration on it, a lock shared by all sessions.
    stopping: std::sync::atomic::AtomicBool,
    /// Live sessions for `/sessions`: touched on connect and disconnect only; each session
    /// updates its own entry.
    pub sessions:
        std::sync::Mutex<std::collections::HashMap<u32, Arc<std::sync::Mutex<SessionInfo>>>>,
    /// Serializes reloads.
    pub reloading: tokio::sync::Mutex<()>,
    /// Prepared statements registered over all sessions (`proxy.max_prepared_statements`).
    pub prepared_total: Arc<std::sync::atomic::AtomicUsize>,
    /// Client connections open (logging in or logged in), for `rwsplit_client_connections`.
    pub clients_open: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// An id no live session has (ids wrap after 2^30 sessions).
    fn new_session_id(&self) -> u32 {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let id = SESSION_ID_BASE + n % SESSION_ID_BASE;
            if !sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// The session `KILL id` means: the session with that id, else, for `KILL QUERY`
    /// (`query_only`), the one session whose statement runs on backend thread `id` now and
    /// that read that id there with `CONNECTION_ID()`; the second of the pair says which.
    /// Never a whole session by thread, nor one that runs on the thread without having read
    /// its id: with multiplexing, the thread the killer was told of may serve another session
    /// by now.
    pub(crate) fn session_for_kill(
        &self,
        id: u32,
        query_only: bool,
    ) -> Option<(Arc<std::sync::Mutex<SessionInfo>>, bool)> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = sessions.get(&id) {
            return Some((i.clone(), false));
        }
        if !query_only {
            return None;
        }
        let mut running = sessions.values().filter(|i| {
            let i = i.lock().unwrap_or_else(|p| p.into_inner());
            i.running_on.is_some_and(|b| {
                i.backend_thread == Some(id) && i.connection_ids.contains(&(b, id))
            })
        });
        match (running.next(), running.next()) {
            (Some(i), None) => Some((i.clone(), true)),
            // None, or the same thread id on two servers: which one is meant is unknown.
            _ => None,
        }
    }

    pub fn new(
        config: Arc<Config>,
        backends: Slots,
        pools: Arc<Pools>,
        health: Arc<Health>,
    ) -> Arc<Shared> {
        let outstanding = (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect();
        let insight = crate::insight::Insight::new(config.insight.max_digests);
        Arc::new(Shared {
            config: arc_swap::ArcSwap::new(config),
            backends,
            config_path: std::sync::OnceLock::new(),
            pools,
            health,
            next_id: AtomicU32::new(1),
            outstanding,
            reloading: tokio::sync::Mutex::new(()),
            insight,
            stopping: std::sync::atomic::AtomicBool::new(false),
            sessions: std::sync::Mutex::new(std::collections::HashMap::new()),
            prepared_total: Arc::default(),
            clients_open: Default::default(),
        })
    }
}

impl Shared {
    /// Shutdown: every session is told (idle ones end after a grace, busy ones after their
    /// statement or transaction). Sessions that log in later see the flag.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for info in sessions {
            let wake = info.lock().unwrap_or_else(|p| p.into_inner()).wake.clone();
            wake.wake();
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The config in force now.
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// Puts a new config in force (the reload has updated everything else first).
    pub fn set_config(&self, c: Arc<Config>) {
        self.config.store(c);
    }

    /// A backend's name (metric label).
    pub fn name(&self, id: usize) -> &'static str {
        self.backends.load().get(id).map_or("unknown", |b| b.name)
    }
}

/// `start + limit`, or 30 years from now when that is past what an `Instant` holds (as tokio's
/// own `sleep` does with a huge duration).
fn deadline(start: tokio::time::Instant, limit: Duration) -> tokio::time::Instant {
    start
        .checked_add(limit)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365 * 30))
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client connection: {0}")]
    Client(#[from] FrameError),
    #[error("backend failed while its response was being sent: {0}")]
    BackendMidResponse(String),
    #[error("client was idle for longer than proxy.client_idle_timeout")]
    IdleTimeout,
    #[error("client began a packet and then sent nothing for proxy.net_timeout")]
    NetTimeout,
    #[error("killed by KILL CONNECTION")]
    Killed,
    /// A COM_CHANGE_USER that ends the connection, as the server ends it.
    #[error("COM_CHANGE_USER: {0}")]
    ChangeUser(&'static str),
    #[error(
        "a backend connection was lost while it held the session's {}; closed so the client does not go on without it",
        state::held_words(.0)
    )]
    StateLost(&'static str),
}

pub struct Session {
    shared: Arc<Shared>,
    client: ClientIo,
    host: String,
    nonce: [u8; 20],
    user: String,
    caps: C,
    collation: u8,
    state: State,
    primary: Option<Pooled>,
    replica: Option<Pooled>,
    stmts: Registry,
    /// Statements with COM_STMT_SEND_LONG_DATA sent since their last execute.
    long_data: Vec<u32>,
    /// Statements whose long data went with a connection the session had to give up: their
    /// next execute is refused (the client left the value out of it).
    lost_long_data: Vec<u32>,
    /// Per slot: a server statement on its connection may hold long data or an open cursor
    /// the session no longer tracks (closed, or the session ended): the connection is reset
    /// before it goes back to its pool, never handed to another session as it is.
    leftovers: [bool; 2],
    /// Sequence id for rwsplit's reply to the current command.
    seq: u8,
    /// Consistency mode and the session's last write (read-your-writes).
    causal: consistency::Causal,
    /// Digest of the statement being run (query insight, slow log, /sessions).
    digest: Option<digests::Digest>,
    /// This user's statement time limit.
    query_timeout: Option<Duration>,
    /// What `/sessions` shows of this session.
    info: Arc<std::sync::Mutex<SessionInfo>>,
    /// Backend connections go back to the pool between statements when nothing pins them.
    multiplex: bool,
    /// The replica the session last read from (reads stay there while it qualifies).
    last_replica: Option<usize>,
    /// A connection kept for the next statement only, and why: `ROW_COUNT()` after a write,
    /// `FOUND_ROWS()` after `SQL_CALC_FOUND_ROWS`, `SHOW WARNINGS` after warnings or an error.
    until_next: Option<(&'static str, Slot)>,
    /// `COMMIT RELEASE` ended the session's connection: the client's ends after the OK.
    released: bool,
    /// Replica reads since the `NEXTVAL` whose connection the session keeps (`until_next`).
    reads_since_sequence: u8,
    /// Replicas (a backend mask) found without the session's schema (that schema), and when.
    schema_missing: Option<(Option<String>, u64, std::time::Instant)>,
    /// Where the last statement ran (`SHOW WARNINGS` and `SHOW ERRORS` go there).
    last_slot: Option<Slot>,
    /// The statements with an open cursor, each with its slot (COM_STMT_FETCH reads from
    /// it). Several at once: JDBC's `useCursorFetch` opens one per result set still being read.
    cursors: Vec<(u32, Slot)>,
    /// What pins the session now (counted when a pin starts).
    pinned: Option<&'static str>,
    /// A KILL may be on its way to the backend thread of the last statement: that connection
    /// is closed rather than given to another session.
    kill_sent: Option<Slot>,
    /// Signalled by `KILL CONNECTION` from another session (`SessionInfo::killed` set) and by
    /// shutdown.
    wake: Arc<wakeup::Wakeup>,
    /// The primary connection must be asked for the GTID of the session's last commit.
    gtid_due: bool,
    /// The session's pool on each backend (by id), looked up on first use and kept until a
    /// reload retires it or the session changes user (`exec::pool_for`).
    pools: Vec<Option<Arc<crate::pool::Pool>>>,
    /// Per slot: the diagnostics its connection holds are the session's own (a statement of
    /// the session that sets them ran there since it was checked out).
    diagnostics_own: [bool; 2],
    /// The statement being run is a read of a table that reads no diagnostics: it clears
    /// them itself, so a connection holding another's needs no clearing first.
    clears_diagnostics: bool,
    /// COM_CHANGE_USER attempts refused for their password (`MAX_FAILED_CHANGE_USER`).
    failed_change_user: u8,
    /// A `USE` runs (the session's schema is taken out of `state` meanwhile): its connection
    /// comes from the pools for sessions with a schema, which it is about to have.
    selecting_schema: bool,
    /// Set when a backend connection was lost while it held what cannot be rebuilt on another
    /// (an open transaction, or state that pins the session): the client's connection is
    /// closed after the reply to the current command, as losing the server would close it.
    lost: Option<&'static str>,
    /// Text statements' digests, recent ones shared.
    digests: digests::Digests,
    /// The backends' server family, once a backend has been reached: the classifier knows
    /// its own functions by name.
    flavor: Option<crate::classify::Flavor>,
    /// The last COM_STMT_EXECUTE rewritten for a backend, kept for the next one's bytes (see
    /// `exec::bytes_for`).
    execute_buf: Vec<u8>,
    /// The session's span (id, user, client): the parent its events name. It is entered only
    /// while the session logs in and closes, not on every poll of the command loop: entering
    /// and leaving a span cost about 300 instructions per poll with the default `info` filter,
    /// two polls a statement. Events of the command loop say `parent: &self.span`.
    span: tracing::Span,
}

/// What a user's entry in the config sets for its sessions. Taken at login, and again after
/// COM_CHANGE_USER and COM_RESET_CONNECTION (which also undoes `SET rwsplit_consistency`, as
/// the server's reset undoes session variables).
struct UserSettings {
    multiplex: bool,
    query_timeout: Option<Duration>,
    consistency: crate::config::Consistency,
}

impl UserSettings {
    fn of(config: &Config, user: &str) -> UserSettings {
        let u = config.user(user);
        UserSettings {
            multiplex: u.map_or(config.routing.multiplexing, |u| u.multiplexing),
            query_timeout: u.map_or(config.proxy.query_timeout, |u| u.query_timeout),
            consistency: u.map_or(config.routing.consistency, |u| u.consistency),
        }
    }
}

/// How many `CONNECTION_ID()` answers a session's KILL-by-thread record keeps
/// (`SessionInfo::connection_ids`).
pub(crate) const CONNECTION_IDS_KEPT: usize = 8;

/// A session as the admin API shows it (like a SHOW PROCESSLIST row).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: u32,
    pub user: String,
    pub client: String,
    pub schema: Option<String>,
    /// "idle", "idle in transaction" or "executing".
    pub state: &'static str,
    /// Shared with the session (no copy per statement).
    #[serde(serialize_with = "serialize_digest")]
    pub digest: Option<Arc<str>>,
    pub backend: Option<&'static str>,
    /// The backend connection id running the session's statement now.
    pub backend_thread: Option<u32>,
    /// What keeps the session on its backend connection between statements, if anything.
    pub pinned: Option<&'static str>,
    /// The backend (id) of `backend_thread`.
    #[serde(skip)]
    pub running_on: Option<usize>,
    /// The server `backend_thread` is on (`BackendConn::reached`): where a KILL goes.
    #[serde(skip)]
    pub running_at: Option<Arc<str>>,
    /// Set by a KILL aimed at `backend_thread`; the session then does not reuse that connection.
    #[serde(skip)]
    pub kill_sent: bool,
    /// The backend threads (backend id, thread) the session's last `CONNECTION_ID()` calls
    /// ran on, newest last (at most `CONNECTION_IDS_KEPT`): the only threads a `KILL QUERY` by
    /// thread finds the session by, since with multiplexing another session may run there.
    #[serde(skip)]
    pub connection_ids: Vec<(usize, u32)>,
    /// Wakes the session (`KILL CONNECTION`, which sets `killed` first, or shutdown).
    #[serde(skip)]
    pub wake: Arc<wakeup::Wakeup>,
    /// Set by `KILL CONNECTION`: the session ends.
    #[serde(skip)]
    pub killed: bool,
    #[serde(skip)]
    pub since: std::time::Instant,
    /// Seconds in the current state (filled in when listed).
    pub seconds: f64,
}

fn serialize_digest<S: serde::Serializer>(d: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(d),
        None => s.serialize_none(),
    }
}

/// How long an idle session is kept, once rwsplit shuts down, for a statement already on its way.
const SHUTDOWN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// Serves one client connection until it quits or fails.
pub async fn run(stream: Stream, peer: Peer, shared: Arc<Shared>) {
    let id = shared.new_session_id();
    let (r, w) = stream.into_split();
    let config = shared.config().clone();
    let client = ClientIo::new(r, w, config.proxy.net_timeout);
    let host = peer.host();
    let nonce = auth::new_nonce();
    let mut identity = shared.health.identity.load_full();
    // What a new connection to the primary starts with (global autocommit, sql_mode).
    let defaults = shared.health.session_status();
    if let Some(v) = &config.proxy.server_version {
        identity = Arc::new(ServerIdentity {
            version: v.clone(),
            ..ServerIdentity::clone(&identity)
        });
    }
    let accepted = tokio::time::timeout(
        config.proxy.handshake_timeout,
        login::accept(client, &config, &identity, id, &nonce, &peer, defaults),
    )
    .await;
    let (mut client, accepted) = match accepted {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(id, client = %peer, error = %e, "login refused");
            let reason = match e {
                login::LoginError::Denied(_) => "auth",
                _ => "handshake",
            };
            metrics::counter!(crate::metrics::CLIENTS_REFUSED, "reason" => reason).increment(1);
            return;
        }
        Err(_) => {
            tracing::info!(id, client = %peer, "login timed out");
            metrics::counter!(crate::metrics::CLIENTS_REFUSED, "reason" => "handshake")
                .increment(1);
            return;
        }
    };
    let login = accepted.login;
    client.session_track = login.capabilities.contains(C::CLIENT_SESSION_TRACK);
    let span = tracing::info_span!("session", id, user = %login.user, client = %peer);
    let UserSettings {
        multiplex,
        query_timeout,
        consistency: mode,
    } = UserSettings::of(&config, &login.user);
    let wake = Arc::new(wakeup::Wakeup::default());
    let info = Arc::new(std::sync::Mutex::new(SessionInfo {
        id,
        user: login.user.clone(),
        client: peer.to_string(),
        schema: login.database.clone(),
        state: "idle",
        digest: None,
        backend: None,
        backend_thread: None,
        pinned: None,
        running_on: None,
        running_at: None,
        kill_sent: false,
        connection_ids: Vec::new(),
        wake: wake.clone(),
        killed: false,
        since: std::time::Instant::now(),
        seconds: 0.0,
    }));
    shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, info.clone());
    let registry = shared.clone();
    let stmts = Registry::new(shared.prepared_total.clone());
    async move {
        let mut s = Session {
            shared,
            client,
            host,
            nonce,
            user: login.user.clone(),
            caps: login.capabilities,
            collation: login.collation,
            state: State::new(
                None,
                login.capabilities.contains(C::CLIENT_MULTI_STATEMENTS),
                defaults,
            ),
            primary: None,
            replica: None,
            stmts,
            long_data: Vec::new(),
            lost_long_data: Vec::new(),
            leftovers: [false; 2],
            seq: accepted.seq,
            causal: consistency::Causal::new(mode),
            digest: None,
            query_timeout,
            info,
            multiplex,
            last_replica: None,
            until_next: None,
            released: false,
            reads_since_sequence: 0,
            schema_missing: None,
            last_slot: None,
            cursors: Vec::new(),
            pinned: None,
            kill_sent: None,
            wake,
            gtid_due: false,
            pools: Vec::new(),
            selecting_schema: false,
            diagnostics_own: [false; 2],
            clears_diagnostics: false,
            failed_change_user: 0,
            lost: None,
            digests: digests::Digests::default(),
            flavor: None,
            execute_buf: Vec::new(),
            span: span.clone(),
        };
        tracing::info!(parent: &span, "client connected");
        // Rare, deep paths are boxed: the task keeps only what a waiting session needs
        // (the future's size is resident for every idle client).
        let result = match Box::pin(s.start(login.database).instrument(span.clone())).await {
            Ok(true) => s.serve().await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        Box::pin(s.close().instrument(span.clone())).await;
        match result {
            Ok(()) => tracing::info!(parent: &span, "client disconnected"),
            Err(e) => tracing::info!(parent: &span, reason = %e, "client disconnected"),
        }
    }
    .await;
    registry
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}

impl Session {
    /// Finishes the login: checks the database the client asked for, then sends OK.
    async fn start(&mut self, database: Option<String>) -> Result<bool, SessionError> {
        if let Some(db) = database
            && !self.use_schema(db).await?
        {
            return Ok(false);
        }
        let seq = self.seq;
        let status = self.status();
        self.client.send(seq, &login::ok_payload(status)).await?;
        Ok(true)
    }

    /// Selects a schema on a connection (failing as the server would for an unknown one) and
    /// makes it the session's. Returns false after sending the client the error.
    async fn use_schema(&mut self, db: String) -> Result<bool, SessionError> {
        let class = use_class(&db);
        self.select_silently(&class).await
    }

    /// Selects `class.schema` on the connection a read would use, without forwarding an OK;
    /// errors go to the client.
    async fn select_silently(&mut self, class: &Classification) -> Result<bool, SessionError> {
        let db = class.schema.clone().unwrap_or_default();
        let old = self.state.schema.replace(db);
        // Checking out syncs the schema: an unknown one fails there with the server's error. A
        // replica that is down, whose pool is full or that lacks the schema (just created, or
        // not replicated there) is tried once more, on the primary.
        for attempt in 0..2 {
            let target = match attempt {
                0 => self.target_for(class, None),
                _ => self.primary_decision().map(|d| d.target),
            };
            let target = match target {
                Ok(t) => t,
                Err(e) => {
                    self.state.schema = old;
                    self.reply(&ClientError::from(e)).await?;
                    return Ok(false);
                }
            };
            let last = attempt == 1 || target.is_primary();
            let name = self.state.schema.as_deref().unwrap_or_default();
            let scope = state::Scope::schema_check(name, target.is_primary());
            if self.execute_sync_only(target, scope, last).await? {
                return Ok(true);
            }
            if last {
                break;
            }
        }
        self.state.schema = old;
        Ok(false)
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        use tokio::io::AsyncBufReadExt;
        let cfg = self.shared.config().clone();
        // Grows to the session's commands; a huge one is not kept.
        let mut packet = Vec::new();
        let wake = self.wake.clone();
        // One timer per session, not one per statement (arming a timer takes the runtime's
        // timer lock): armed for a whole idle limit, and when it fires after the session has
        // been busy meanwhile, moved to the limit counted from the current wait's start (or
        // sooner, when the session sets a shorter `wait_timeout`).
        let mut idle_timer = std::pin::pin!(tokio::time::sleep(cfg.proxy.client_idle_timeout));
        // Shutting down: until when a statement already on its way is still served.
        let mut stop_grace: Option<tokio::time::Instant> = None;
        loop {
            self.settle().await;
            // Shutting down: a session with no transaction open ends between statements (one
            // that is open gets until the drain timeout to finish). Not at once: a client that
            // just connected or just got a result may be sending its next statement already,
            // and closing under it would fail that statement; so statements keep being served
            // for a moment (`SHUTDOWN_IDLE_GRACE`), and the session ends at the first pause
            // after it, or the first statement boundary past it (a busy client would otherwise
            // be cut mid-statement by the drain timeout).
            let stopping = self.shared.stopping();
            if stopping && !self.in_transaction() && self.client.reader.buffer().is_empty() {
                let until = *stop_grace
                    .get_or_insert_with(|| tokio::time::Instant::now() + SHUTDOWN_IDLE_GRACE);
                let next = tokio::time::timeout_at(until, self.client.reader.fill_buf());
                if next.await.is_err() {
                    return Ok(());
                }
            }
            if self.client.reader.buffer().is_empty() && !stopping {
                // Wait for the client's next command, a KILL or a shutdown, whichever comes
                // first; `fill_buf` consumes nothing, so leaving it for the shutdown loses
                // nothing. A client silent for `client_idle_timeout` is disconnected, as the
                // server does after `wait_timeout`: without an ERR first, as MariaDB (a
                // client would read an ERR it did not ask for as its next command's answer).
                let idle_since = tokio::time::Instant::now();
                // Like the server's `wait_timeout`, which the session may set for itself
                // (only shorter than rwsplit's own limit: that one bounds every client).
                let idle_limit = self
                    .state
                    .wait_timeout
                    .map_or(cfg.proxy.client_idle_timeout, |w| {
                        w.min(cfg.proxy.client_idle_timeout)
                    });
                if idle_timer.deadline() > deadline(idle_since, idle_limit) {
                    idle_timer.as_mut().reset(deadline(idle_since, idle_limit));
                }
                let woken = loop {
                    tokio::select! {
                        // A KILL first: its OK may reach the killer, and the victim's client
                        // send its next command, before this session is polled; the server
                        // would not run that command.
                        biased;
                        _ = wake.woken() => break true,
                        _ = self.client.reader.fill_buf() => break false,
                        () = idle_timer.as_mut() => {
                            if idle_since.elapsed() >= idle_limit {
                                return Err(SessionError::IdleTimeout);
                            }
                            idle_timer.as_mut().reset(deadline(idle_since, idle_limit));
                        }
                    }
                };
                if woken {
                    if self.killed() {
                        return Err(SessionError::Killed);
                    }
                    continue;
                }
            } else if self.killed() {
                // The client sent this command before the last one's answer (pipelined), so
                // there was no wait to wake; a KILL CONNECTION still ends the session first,
                // as on the server. (A lock only for pipelined commands.)
                return Err(SessionError::Killed);
            }
            // A packet already whole in the buffer, the usual case, is read without a timer
            // (arming one reads the clock). Else its first bytes are here (the idle wait is
            // over): the rest must keep coming, each part within `net_timeout`, as with the
            // server's `net_read_timeout`.
            let whole = frame::whole_packet_buffered(self.client.reader.buffer());
            let stall = (!whole).then_some(self.client.net_timeout);
            let read = frame::read_packet_within(
                &mut self.client.reader,
                &mut packet,
                cfg.proxy.max_packet_size,
                stall,
            )
            .await;
            let seq = match read {
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(SessionError::NetTimeout);
                }
                Err(FrameError::Closed) => return Ok(()),
                Err(FrameError::TooLarge { seq, .. }) => {
                    let _ = self
                        .client
                        .send_error(seq.wrapping_add(1), &ClientError::packet_too_large())
                        .await;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
                Ok(seq) => seq,
            };
            // A command's frames are numbered from 0 (the last one's id is their count less
            // one): anything else gets the server's 1156, and the server closes the connection.
            let frames = packet.len() / crate::protocol::response::MAX_FRAME;
            if usize::from(seq) != frames % 256 {
                let error = ClientError::packets_out_of_order();
                let _ = self.client.send_error(0, &error).await;
                return Err(FrameError::Sequence {
                    expected: frames as u8,
                    got: seq,
                }
                .into());
            }
            crate::metrics::hot()
                .bytes_from_clients
                .increment(packet.len() as u64 + 4);
            self.seq = seq.wrapping_add(1);
            let Some(cmd) = packet.first().and_then(|&b| Command::from_byte(b)) else {
                self.reply(&ClientError::unknown_command()).await?;
                continue;
            };
            if cmd == Command::Quit {
                return Ok(());
            }
            self.command(cmd, &packet).await?;
            if self.released {
                return Ok(());
            }
            if let Some(what) = self.lost.take() {
                return Err(SessionError::StateLost(what));
            }
            if packet.capacity() > 1 << 20 {
                packet = Vec::new();
            }
        }
    }

    /// Whether a `KILL CONNECTION` from another session ended this one.
    fn killed(&self) -> bool {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).killed
    }

    async fn command(&mut self, cmd: Command, packet: &[u8]) -> Result<(), SessionError> {
        use crate::protocol::response::ResponseKind as K;
        match cmd {
            Command::Query => self.query(packet).await,
            Command::InitDb => {
                let db = String::from_utf8_lossy(&packet[1..]).into_owned();
                let class = use_class(&db);
                if let Some((slot, o)) = self
                    .execute(&class, Cmd::Raw(packet), K::Single, None)
                    .await?
                {
                    self.after(&class, slot, &o, packet);
                }
                Ok(())
            }
            Command::Ping => {
                let status = self.status();
                self.client.send_ok(self.seq, status).await?;
                Ok(())
            }
            Command::FieldList => {
                let class = read_class();
                self.execute(&class, Cmd::Raw(packet), K::FieldList, None)
                    .await?;
                Ok(())
            }
            Command::Refresh => {
                let class = crate::classify::of(StatementKind::Write);
                self.execute(&class, Cmd::Raw(packet), K::Single, None)
                    .await?;
                Ok(())
            }
            Command::BinlogDump | Command::RegisterSlave | Command::BinlogDumpGtid => {
                self.reply(&ClientError::not_supported(
                    "replication connections (binlog dump); connect replicas and \
                     change-data-capture tools to the primary itself",
                ))
                .await
            }
            Command::Statistics => {
                let class = read_class();
                self.execute(&class, Cmd::Raw(packet), K::Statistics, None)
                    .await?;
                Ok(())
            }
            Command::StmtPrepare => self.stmt_prepare(packet).await,
            Command::StmtExecute => self.stmt_execute(packet).await,
            Command::StmtSendLongData => self.stmt_send_long_data(packet).await,
            Command::StmtClose => self.stmt_close(packet).await,
            Command::StmtReset => self.stmt_reset(packet).await,
            Command::StmtFetch => self.stmt_fetch(packet).await,
            Command::SetOption => self.set_option(packet).await,
            Command::ResetConnection => self.reset_connection().await,
            Command::ChangeUser => self.change_user(packet).await,
            Command::ProcessKill => match prepared::statement_id(packet) {
                Some(id) => self.kill_session(id, false).await,
                None => self.reply(&ClientError::unknown_command()).await,
            },
            Command::Quit => Ok(()),
        }
    }

    /// How the classifier reads this session's statements: the backends' server family,
    /// learned once a backend has been reached (the monitor's identity) and kept for the
    /// session, and the session's `NO_BACKSLASH_ESCAPES`.
    fn dialect(&mut self) -> crate::classify::Dialect {
        if self.flavor.is_none() {
            let id = self.shared.health.identity.load();
            if id.version != crate::protocol::handshake::UNREACHED_VERSION {
                self.flavor = Some(crate::classify::Flavor::of(&id.version));
            }
        }
        crate::classify::Dialect {
            flavor: self.flavor,
            no_backslash_escapes: self.state.no_backslash_escapes,
        }
    }

    async fn query(&mut self, packet: &[u8]) -> Result<(), SessionError> {
        use crate::classify::PrimaryReason as R;
        use crate::protocol::response::ResponseKind as K;
        let dialect = self.dialect();
        let (class, digest) = self.digests.classify(&packet[1..], dialect);
        // rwsplit's own session variable: only a SET can be one, so other statements skip the look.
        if class.kind == StatementKind::SessionCommand
            && let Some(mode) = consistency::parse_set_consistency(&packet[1..])
        {
            return self.set_consistency(mode, &packet[1..]).await;
        }
        // `@@last_gtid` is the session's own, which the connection the statement gets may not
        // carry (it was lent by a session that committed since): written in as a string. Only
        // in one statement that runs now and may name a variable: not in a multi-statement
        // (whose own commit the server reports to a later statement of it) nor in a definition
        // (a view or routine would keep the value).
        let rewritten;
        let (packet, class) = if self.flavor == Some(crate::classify::Flavor::MariaDb)
            && matches!(
                class.reason,
                Some(
                    R::SessionValue
                        | R::UserVariable
                        | R::SelectInto
                        | R::Dml
                        | R::SideEffectFunction
                        | R::LockingRead
                        | R::StoredFunction
                )
            )
            && let Some(own) = self.state.last_gtid.as_deref()
            && let Some(sql) =
                crate::classify::with_last_gtid(&packet[1..], own, !self.state.no_backslash_escapes)
        {
            rewritten = [&packet[..1], &sql[..]].concat();
            // Classified again: a read of a literal may go to a replica. Insight keeps the
            // client's statement.
            let (class, _) = self.digests.classify(&rewritten[1..], dialect);
            (&rewritten[..], class)
        } else {
            (packet, class)
        };
        self.digest = Some(digest);
        let hot = crate::metrics::hot();
        let path = if class.fast_path {
            &hot.classified_fast
        } else {
            &hot.classified_full
        };
        path.increment(1);
        if class.kind == StatementKind::Kill {
            // The id the client knows is rwsplit's session id; forwarding it would kill an
            // unrelated backend thread.
            use crate::classify::KillId;
            return match crate::classify::kill_target(&packet[1..]) {
                Some((KillId::Id(id), query_only)) => self.kill_session(id, query_only).await,
                Some((KillId::Own, query_only)) => self.kill_self(query_only).await,
                None => self.reply(&ClientError::not_supported(KILL_FORMS)).await,
            };
        }
        let forced = self.diagnostics_target(&class);
        let done = self
            .execute(&class, Cmd::Raw(packet), K::Query, forced)
            .await;
        if let Some((slot, o)) = done? {
            self.after_statement(&class, slot, &o, packet).await;
        }
        Ok(())
    }

    /// `SET rwsplit_consistency = ...`: rwsplit's own session variable, answered here.
    async fn set_consistency(
        &mut self,
        mode: Option<crate::config::Consistency>,
        sql: &[u8],
    ) -> Result<(), SessionError> {
        match mode {
            Some(m) => {
                self.causal.mode = m;
                let ok = crate::protocol::packets::ok_payload(0, 0, self.status(), 0);
                self.reply_raw(&ok).await
            }
            None => {
                let value = String::from_utf8_lossy(sql);
                let msg = format!(
                    "Variable 'rwsplit_consistency' can't be set to the value in '{}' (use eventual, read_your_writes or strong)",
                    value.trim()
                );
                self.reply(&ClientError::new(1231, "42000", &msg)).await
            }
        }
    }

    /// What follows a statement the client got the response to: the session's state
    /// (`after`), read-your-writes, and user variables a routine may have left.
    pub(super) async fn after_statement(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
        packet: &[u8],
    ) {
        self.after(class, slot, o, packet);
        self.after_for_consistency(class, slot, o).await;
        self.after_routine(class, slot, o).await;
    }

    /// A routine (a `CALL`, a read calling a stored function) may leave user variables the
    /// server does not report as a state change: `SELECT ... INTO @v`, `GET DIAGNOSTICS @v`,
    /// `FETCH ... INTO @v` in its body (only `SET @v` is reported). Its connection would go
    /// back to its pool reset, and the session's next `SELECT @v` read NULL. On MariaDB the
    /// primary connection is asked for its user variables first (it has none of its own: a
    /// session with any is pinned already), and any there keep the session on it. Not when the
    /// routine left warnings or failed: the question, which reads a table, would clear what
    /// `SHOW WARNINGS` is about to read.
    async fn after_routine(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
    ) {
        use crate::classify::PrimaryReason as R;
        if slot != Slot::Primary
            || !matches!(class.reason, Some(R::Call | R::StoredFunction))
            || o.error.is_some()
            || o.warnings > 0
            || self.state.user_variables
            || !self.multiplex
        {
            return;
        }
        let Some(conn) = self.primary.as_mut() else {
            return;
        };
        if conn.flavor() != crate::monitor::replication::Flavor::MariaDb {
            return;
        }
        match conn
            .query_scalar("SELECT 1 FROM information_schema.USER_VARIABLES LIMIT 1")
            .await
        {
            Ok(Ok(Some(_))) => self.state.user_variables = true,
            // None, or the server lacks the table (the plugin unloaded): reset as before.
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(parent: &self.span, error = %e, "cannot ask a routine's connection for user variables");
                self.drop_slot(Slot::Primary);
            }
        }
    }

    /// Read-your-writes bookkeeping after a statement on the primary: takes the GTID of a
    /// committed write from the OK packet, or notes that the primary connection must be asked
    /// for it. Asking is put off until a read needs it or the connection is released, so that
    /// `ROW_COUNT()`, `FOUND_ROWS()` and `SHOW WARNINGS` right after the write still see it.
    async fn after_for_consistency(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
    ) {
        if slot != Slot::Primary {
            return;
        }
        // What `@@last_gtid` says in this session, in any consistency mode.
        if let Some(g) = &o.gtid {
            self.state.last_gtid = Some(g.clone());
        } else if !matches!(
            class.kind,
            StatementKind::Read | StatementKind::SessionCommand | StatementKind::Use
        ) && (self.state.own_tracking
            || self
                .primary
                .as_ref()
                .is_none_or(|c| c.tracking_statements().is_none()))
        {
            // A write on a connection that reports no GTIDs (or maybe not all, once the
            // client set what is tracked): what it committed is not known.
            self.state.last_gtid = None;
        }
        // Whether the server says a transaction is still open after this statement: with
        // autocommit off, the COMMIT's OK carries the GTID of what it committed.
        let in_trx = self.in_transaction();
        if self
            .causal
            .after_primary_statement(class.kind, o, in_trx, class.opaque())
        {
            self.gtid_due = true;
        }
    }

    /// Asks the primary connection for the GTID of the session's last commit, if that is due.
    pub(super) async fn fetch_due_gtid(&mut self) {
        if !std::mem::take(&mut self.gtid_due) {
            return;
        }
        let Some(conn) = self.primary.as_mut() else {
            self.causal.position_unknown();
            return;
        };
        let flavor = conn.flavor();
        match conn
            .query_scalar(consistency::last_gtid_query(flavor))
            .await
        {
            Ok(Ok(Some(g))) if !g.is_empty() => {
                if flavor == crate::monitor::replication::Flavor::MariaDb {
                    self.state.last_gtid = Some(g.clone());
                }
                self.causal.require(g)
            }
            // MariaDB's `@@last_gtid` is empty on a connection that committed nothing: the
            // write was rolled back.
            Ok(Ok(_)) if flavor == crate::monitor::replication::Flavor::MariaDb => {
                self.causal.pending = false
            }
            // MySQL's `gtid_executed` is empty with `gtid_mode = OFF`: no position to wait
            // for, so reads go to the primary until the next write. A refused query likewise.
            Ok(_) => self.causal.position_unknown(),
            Err(e) => {
                // The connection broke after the commit: reads go to the primary until the
                // next write gives a position again.
                tracing::warn!(parent: &self.span, error = %e, "cannot read the last GTID from the primary");
                self.causal.position_unknown();
                self.drop_slot(Slot::Primary);
            }
        }
    }

    /// Updates the session after a statement ran on `slot`.
    fn after(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
        packet: &[u8],
    ) {
        use crate::classify::SessionEffect as E;
        let ok = o.error.is_none();
        if ok {
            self.state.update_status(o.status);
        }
        if let Some((_, v)) = o
            .sysvars
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("wait_timeout"))
            && !class.scoped_set
            && let Ok(secs) = v.trim().parse::<u64>()
        {
            self.state.wait_timeout = Some(Duration::from_secs(secs));
        }
        if o.last_insert_id != 0 {
            self.state.last_insert_id = o.last_insert_id;
            if let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot) {
                c.last_insert_id = o.last_insert_id;
            }
        }
        // A one-shot variable such as `insert_id` is used by the session's next statement on
        // the primary that is not a `SET` itself, whatever its outcome.
        if slot == Slot::Primary && class.kind != StatementKind::SessionCommand {
            self.state.one_shot = false;
        }
        if slot == Slot::Primary && self.state.next_transaction {
            self.next_transaction_after(class, o);
        }
        match class.kind {
            StatementKind::SessionCommand if ok => {
                self.record_set(class, o, packet);
                if let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot) {
                    self.state.mark_synced(c);
                }
            }
            StatementKind::Use if ok => {
                self.state.schema = class.schema.clone();
                if let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot) {
                    c.schema = class.schema.clone();
                }
            }
            // A schema changed where rwsplit does not follow it (a `USE` in a multi-statement,
            // a `DROP DATABASE` of the current one), as the server reported it: the
            // connection and the session have that schema now (a connection believed to
            // have another would be lent with the wrong one).
            _ => {
                if let Some(name) = &o.schema {
                    let schema = (!name.is_empty()).then(|| name.clone());
                    if let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot) {
                        c.schema.clone_from(&schema);
                    }
                    if schema != self.state.schema {
                        self.info
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .schema
                            .clone_from(&schema);
                        self.state.schema = schema;
                    }
                }
            }
        }
        // A multi-statement that failed may have run the part that took a lock or the like:
        // what takes state counts as taken (at worst the session is pinned for nothing), what
        // releases it only on success.
        let took = ok || class.opaque();
        // A routine may take a named lock (`GET_LOCK` in its body), which the server does not
        // report as session state: its connection goes back to the pool reset, so that no
        // other session gets it with the lock held (and the lock is not held forever).
        if matches!(
            class.reason,
            Some(
                crate::classify::PrimaryReason::Call
                    | crate::classify::PrimaryReason::StoredFunction
            )
        ) {
            self.leftovers[slot as usize] = true;
        }
        // An XA statement closes its connection at the end (`SessionEffect::Xa`), also where
        // the classifier does not take statements apart (a compound statement, `EXECUTE
        // IMMEDIATE`) and the text names it. (A procedure's body is not seen.)
        let ran_xa = class.effect == Some(E::Xa)
            || (class.opaque()
                || class.effect == Some(E::Several)
                || class.reason == Some(crate::classify::PrimaryReason::SqlPrepare))
                && crate::classify::names_xa(packet.get(1..).unwrap_or_default());
        if ran_xa && let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot) {
            c.xa = true;
        }
        match class.effect {
            Some(E::CreatesTemporaryTable) if took => self.state.temporary_tables = true,
            Some(E::LocksTables) if took => self.state.table_locks = true,
            Some(E::UnlocksTables) => self.state.table_locks = false,
            Some(E::SetsUserVariable) => self.state.user_variables = true,
            Some(E::TakesNamedLock) if took => self.state.named_locks += 1,
            Some(E::ReleasesNamedLock) if ok => {
                // The count is of GET_LOCKs, not of names: a RELEASE_LOCK of a lock not held
                // counts too. At zero the connection goes back to its pool reset, which
                // releases whatever it may still hold.
                if self.state.named_locks == 1 {
                    self.leftovers[slot as usize] = true;
                }
                self.state.named_locks = self.state.named_locks.saturating_sub(1)
            }
            Some(E::ReleasesAllNamedLocks) if ok => self.state.named_locks = 0,
            Some(E::OpensHandler) if took => self.state.handlers += 1,
            Some(E::SetsOneShotVariable) if ok => self.state.one_shot = true,
            Some(E::ClosesHandler) if ok => {
                self.state.handlers = self.state.handlers.saturating_sub(1)
            }
            Some(E::PreparesSqlStatement) if took => self.state.sql_prepared = true,
            Some(E::SetsLastInsertId) if took => self.state.last_insert_id_set = true,
            Some(E::SetsNextTransaction) if ok => self.state.next_transaction = true,
            Some(E::SetsRole) if took => self.state.role = true,
            Some(E::Several) if took => self.state.untracked_state = true,
            Some(E::BackupStage { ends: false }) if took => self.state.backup_stage = true,
            Some(E::BackupStage { ends: true }) if ok => self.state.backup_stage = false,
            Some(E::BackupLock { releases: false }) if took => self.state.backup_lock = true,
            Some(E::BackupLock { releases: true }) if ok => self.state.backup_lock = false,
            // The server closed that connection after its OK; the client's ends too, as it
            // would on the server.
            Some(E::EndsConnection) if ok => {
                self.discard_slot(slot);
                self.released = true;
            }
            // In a multi-statement it also stands for `Several`.
            Some(E::Xa)
                if took && class.reason == Some(crate::classify::PrimaryReason::MultiStatement) =>
            {
                self.state.untracked_state = true
            }
            _ => {}
        }
        self.after_tracked(class, slot, o);
        // Values only the connection that ran this statement can give the next one.
        self.last_slot = Some(slot);
        // A sequence's value (`LASTVAL`, `PREVIOUS VALUE FOR`) is the primary connection's:
        // kept past a few reads on a replica, for the next statement on the primary (not past
        // many: a session that only reads from then on would hold it for nothing).
        let sequence_held = slot == Slot::Replica
            && matches!(self.until_next, Some(("sequence", Slot::Primary)))
            && self.reads_since_sequence < SEQUENCE_KEPT_FOR_READS;
        self.reads_since_sequence = if sequence_held {
            self.reads_since_sequence + 1
        } else {
            0
        };
        // The server clears a session's warnings and errors only for a statement that opens
        // a table or raises its own: reading them (`SHOW WARNINGS`), `SELECT 1`, a `SET`, a
        // `USE` or a transaction boundary leave them to be read again.
        let keeps_diagnostics =
            class.diagnostics || ok && o.warnings == 0 && class.opens_tables() == Some(false);
        if !keeps_diagnostics {
            // The session's diagnostics are this statement's now; what its other connection
            // holds is no longer for it to read.
            self.diagnostics_own[slot as usize] = true;
            self.diagnostics_own[slot.other() as usize] = false;
        }
        // A clean read of a table left the connection with none.
        if !o.diagnostics
            && class.clears_diagnostics()
            && let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot)
        {
            c.diagnostics = false;
        }
        let diagnostics_held = match self.until_next {
            Some(("warnings", s)) if keeps_diagnostics => Some(s),
            _ => None,
        };
        self.until_next = if class.effect == Some(E::CalcFoundRows) {
            Some(("found_rows", slot))
        } else if let Some(s) = diagnostics_held {
            Some(("warnings", s))
        } else if !ok || o.warnings > 0 {
            Some(("warnings", slot))
        } else if ok && class.reason == Some(crate::classify::PrimaryReason::Dml) {
            Some(("row_count", slot))
        } else if ok && class.effect == Some(E::TakesSequenceValue) {
            Some(("sequence", slot))
        } else if sequence_held {
            Some(("sequence", Slot::Primary))
        } else {
            None
        };
    }

    /// A pending `SET TRANSACTION` waits on the server for the next transaction, across
    /// statements that open no table (`SELECT 1`, `DO 0`, `SELECT @@x`, a `SET`) and ones that
    /// fail: the session stays on that connection until a transaction takes it. One begun
    /// (the status says a transaction is open) or ended (`COMMIT` / `ROLLBACK`) takes it for
    /// sure; a statement that read or changed a table in autocommit mode takes it into its own
    /// transaction, if its tables are transactional, so that connection goes back to its pool
    /// reset rather than lend another session characteristics that may still wait there.
    fn next_transaction_after(
        &mut self,
        class: &Classification,
        o: &crate::protocol::response::Outcome,
    ) {
        if class.effect == Some(crate::classify::SessionEffect::SetsNextTransaction) {
            return;
        }
        let began = o.status & crate::protocol::packets::SERVER_STATUS_IN_TRANS != 0;
        let ok = o.error.is_none();
        let ended = ok && class.kind == StatementKind::TransactionEnd;
        let opened_tables = ok && class.opens_tables() == Some(true);
        if began || ended || opened_tables {
            self.state.next_transaction = false;
        }
        if opened_tables && !began {
            self.leftovers[Slot::Primary as usize] = true;
        }
    }

    /// Where a statement that reads the diagnostics of the session's last statement must run:
    /// they live on that statement's connection (or on the one kept for them, past statements
    /// that leave them alone). Any other connection's are cleared before it runs a statement
    /// of the session (`checkout_as`). `None` for other statements. For `SHOW WARNINGS` and
    /// the like in text, prepared (PDO's native prepares) and executed alike.
    fn diagnostics_target(&self, class: &Classification) -> Option<crate::route::Target> {
        if class.kind != StatementKind::Read || !class.diagnostics {
            return None;
        }
        let at = match self.until_next {
            Some(("warnings", s)) => Some(s),
            _ => self.last_slot,
        };
        at.and_then(|s| self.slot_target(s))
    }

    /// After a COM_STMT_PREPARE: its error or warnings are the session's diagnostics now, and
    /// preparing a statement clears the last one's, unless it prepared one that reads them
    /// (`SHOW WARNINGS`, which the server leaves them for, as when it runs).
    fn after_prepare(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
    ) {
        if class.diagnostics {
            return;
        }
        self.last_slot = Some(slot);
        self.diagnostics_own[slot as usize] = true;
        self.diagnostics_own[slot.other() as usize] = false;
        if o.error.is_some() || o.warnings > 0 {
            self.until_next = Some(("warnings", slot));
        } else if matches!(self.until_next, Some(("warnings", _))) {
            self.until_next = None;
        }
    }

    /// Adds a `SET` that succeeded to the session's log. A query whose value is fixed is
    /// logged as it is. One whose value is computed when it runs (`@@x + 1`, a function) is
    /// logged as the value the server reported it produced: replayed elsewhere it would
    /// compute again. That is only done for a single variable the server reported (a report
    /// narrowed by the client's own `session_track_system_variables` could leave some out);
    /// otherwise the statement is logged. A prepared `SET` (COM_STMT_EXECUTE) cannot be
    /// replayed from its packet: it is logged as its text when it has no parameters, else as
    /// the values reported, or it pins the session.
    fn record_set(
        &mut self,
        class: &Classification,
        o: &crate::protocol::response::Outcome,
        packet: &[u8],
    ) {
        if o.sysvars.iter().any(|(n, _)| state::keeps_connections(n)) {
            self.state.untracked_state = true;
        }
        if packet.first() != Some(&(Command::Query as u8)) {
            // Without parameters a prepared `SET` is its text, logged as a text one would be.
            // The report can miss what it set: MariaDB reports no `collation_connection` for
            // `SET NAMES ... COLLATE ...` (Laravel's connector prepares that one).
            let text = prepared::statement_id(packet)
                .filter(|_| packet.first() == Some(&(Command::StmtExecute as u8)))
                .and_then(|id| self.stmts.statements.get(&id))
                .filter(|s| s.num_params == 0)
                .map(|s| {
                    let mut q = s.prepare_packet.clone();
                    q[0] = Command::Query as u8;
                    q
                });
            if let Some(q) = text {
                return self.record_set(class, o, &q);
            }
            if !self.state.record_tracked(&o.sysvars) {
                self.state.untracked_state = true;
            }
            return;
        }
        // Used once, on this connection: never replayed. Other variables the same `SET`
        // assigns are carried as the server reported them (mysqlbinlog's output, the usual
        // source of such `SET`s, gives each its own statement).
        if class.effect == Some(crate::classify::SessionEffect::SetsOneShotVariable) {
            self.state.record_tracked(&o.sysvars);
            return;
        }
        let sql = &packet[1..];
        let variable = crate::classify::set_target(sql);
        if variable.as_deref().map_or_else(
            || {
                sql.windows(13)
                    .any(|w| w.eq_ignore_ascii_case(b"session_track"))
            },
            |n| n.starts_with("session_track"),
        ) {
            self.state.own_tracking = true;
        }
        if let Some(name) = variable.as_deref().filter(|_| !class.idempotent) {
            let reported: Vec<(String, String)> = o
                .sysvars
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .cloned()
                .collect();
            if self.state.record_tracked(&reported) {
                return;
            }
        }
        // Its text calls a function (stored, or reading the connection's own values): run
        // again by a replay, it would compute again. Unreported, the session stays here.
        if class.reason == Some(crate::classify::PrimaryReason::StoredFunction) {
            self.state.untracked_state = true;
            return;
        }
        let key = state::log_key(
            variable.as_deref(),
            sql,
            self.digest.as_ref().map(|d| d.text()),
        );
        self.state.record(key, packet);
    }

    /// What the server reported changed in the session, through session tracking, where
    /// rwsplit could not see it in the statement (a procedure, a trigger, a stored function,
    /// a multi-statement): changed system variables are carried like the session's own `SET`s;
    /// other state (user variables, temporary tables, ...) pins the session to the primary.
    fn after_tracked(
        &mut self,
        class: &Classification,
        slot: Slot,
        o: &crate::protocol::response::Outcome,
    ) {
        // A procedure or several statements may have changed more than the variables named,
        // and more than the one effect a multi-statement's classification keeps.
        let opaque = class.opaque();
        let understood = matches!(
            class.kind,
            StatementKind::SessionCommand | StatementKind::Use
        ) || class.effect.is_some();
        if understood && !opaque {
            return;
        }
        // `SET STATEMENT ... FOR`: the variables reported were the statement's alone.
        if !o.sysvars.is_empty()
            && !class.scoped_set
            && self.state.record_tracked(&o.sysvars)
            && let Some(c) = exec::slot_of(&mut self.primary, &mut self.replica, slot)
        {
            self.state.mark_synced(c);
        }
        if o.state_changed && (opaque || o.sysvars.is_empty()) {
            self.state.untracked_state = true;
            // What keeps the session then is its primary connection; state made on a replica
            // (a hinted read calling a function that sets a user variable) must not reach the
            // next session there: that connection goes back reset.
            if slot == Slot::Replica {
                self.leftovers[Slot::Replica as usize] = true;
            }
        }
    }

    /// The status flags of an OK or EOF rwsplit sends itself, as the server would set them:
    /// drivers take them from every OK (go-sql-driver's `interpolateParams` escapes quotes by
    /// `NO_BACKSLASH_ESCAPES`; a wrong flag there lets a value out of its string).
    fn status(&self) -> u16 {
        use crate::protocol::packets::{
            SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS, SERVER_STATUS_NO_BACKSLASH_ESCAPES,
        };
        let mut s = 0;
        if self.state.autocommit {
            s |= SERVER_STATUS_AUTOCOMMIT;
        }
        if self.in_transaction() {
            s |= SERVER_STATUS_IN_TRANS;
        }
        if self.state.no_backslash_escapes {
            s |= SERVER_STATUS_NO_BACKSLASH_ESCAPES;
        }
        s
    }

    async fn reply(&mut self, e: &ClientError) -> Result<(), SessionError> {
        self.reply_raw(&e.payload()).await
    }

    /// The error for a command that cannot run because a failed backend connection took the
    /// session's state with it (`lost`); `reply_raw` says what, and that the session ends.
    async fn reply_lost(&mut self) -> Result<(), SessionError> {
        self.reply(&ClientError::backend_failed(
            "the backend connection was lost",
        ))
        .await
    }

    /// Sends a whole reply payload (rwsplit's or a server's). When the session is about to end
    /// after it (see `drop_slot`), an ERR says so, and what went with the connection: else the
    /// client would only see its next command fail.
    async fn reply_raw(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let seq = self.seq;
        if let Some(what) = self.lost
            && let Some(e) = crate::protocol::packets::parse_err(payload)
        {
            let message = format!("{}{}", String::from_utf8_lossy(e.message), lost_note(what));
            let state = std::str::from_utf8(&e.sql_state).unwrap_or("HY000");
            let noted = crate::protocol::packets::err_payload(e.code, state, &message);
            self.client.send(seq, &noted).await?;
            return Ok(());
        }
        self.client.send(seq, payload).await?;
        Ok(())
    }

    /// Returns the session's connections to their pools: as they are when nothing pins them
    /// (multiplexing), else reset.
    async fn close(&mut self) {
        self.until_next = None;
        self.give_up_statement_state(Slot::Primary);
        self.give_up_statement_state(Slot::Replica);
        self.settle().await;
        self.release_slot(Slot::Primary).await;
        self.release_slot(Slot::Replica).await;
        if self.client.is_tls() {
            // TLS's own end (close_notify), as the server's SSL_shutdown: without it a strict
            // client reads the close as a truncation. Bounded: the client may not be reading.
            let shutdown = tokio::io::AsyncWriteExt::shutdown(&mut self.client.writer);
            let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
        }
    }
}

/// What a `KILL` rwsplit cannot answer itself is refused as (1235): a form it does not read, or
/// one a server would run (prepared, in `PREPARE` or `EXECUTE IMMEDIATE`, among other
/// statements), which would take the id for a backend thread that may serve any session.
pub(super) const KILL_FORMS: &str = "this form of KILL (send KILL [QUERY | CONNECTION] n as a query \
     of its own, not prepared nor among other statements)";

/// A synthetic classification for commands that are not SQL text.
fn read_class() -> Classification {
    crate::classify::of(StatementKind::Read)
}

fn use_class(db: &str) -> Classification {
    Classification {
        kind: StatementKind::Use,
        schema: Some(db.to_string()),
        ..read_class()
    }
}

/// What an error says when the session ends after it because a failed backend connection took
/// `what` (a `pin_reason`, or "open_transaction") with it.
fn lost_note(what: &str) -> String {
    format!(
        "; the session's {} went with that connection, so rwsplit closes this connection \
         (reconnect and start again)",
        state::held_words(what)
    )
}
