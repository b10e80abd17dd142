//! Pools of authenticated backend connections, one per (backend, user, response-shaping
//! capabilities, collation). All pools of one backend share its `max_connections` limit; an
//! idle connection of one pool is closed to make room for another when the limit is reached.
//! Pools that have been used are kept topped up to `min_idle` idle connections.
//!
//! Hand-written rather than bb8: bb8 0.9 opens connections in a background task and reports
//! connect failures only to an error sink, so `get()` against a dead backend waits out the whole
//! checkout timeout and looks like pool exhaustion. Routing needs the connect error at once to go
//! around the dead backend, and the client needs "too many connections" only when the pool is
//! really full. The pool is an idle stack under a std `Mutex` (held for a push or pop, never
//! across an `.await`) and a semaphore that bounds open connections.

pub mod conn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mysql_common::constants::CapabilityFlags as C;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use conn::{BackendConn, BackendError, ServerErr, TextRows};

use crate::config::{Config, PoolConfig};
use crate::protocol::connect::Credentials;
use crate::protocol::handshake::RESPONSE_SHAPING;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no free connection to backend '{backend}' within {after:?} (pool of {max} is in use)")]
    Exhausted {
        backend: String,
        max: u32,
        after: Duration,
    },
    #[error("no backend #{0} or no such user in the config")]
    UnknownBackend(BackendId),
    #[error("backend '{backend}': {source}")]
    Backend {
        backend: String,
        source: BackendError,
    },
}

/// Index of a backend in the config's `[[backends]]` list.
pub type BackendId = usize;

/// What makes two backend connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub backend: BackendId,
    pub user: String,
    /// The client's response-shaping capabilities, plus whether it starts with multi-statements.
    pub capabilities: u32,
    pub collation: u8,
    /// For sessions that selected no schema. The server's reset keeps a connection's schema
    /// and nothing but a new login takes it away, so such a session is never lent a
    /// connection that carries one (it would read, and create, tables in another session's
    /// schema); a connection that selects one while lent from here is closed on its return.
    pub schemaless: bool,
}

impl PoolKey {
    /// Backend connections always ask for session tracking, whatever the client did: the
    /// commit's GTID then comes in the OK packet (read-your-writes needs no extra query), and
    /// every client shares the same pools. OK packets are converted back for clients that did
    /// not ask for it (`session::forward`).
    pub fn new(
        backend: BackendId,
        user: &str,
        client_caps: C,
        collation: u8,
        schemaless: bool,
    ) -> PoolKey {
        let caps = (client_caps | C::CLIENT_SESSION_TRACK)
            & (RESPONSE_SHAPING | C::CLIENT_MULTI_STATEMENTS);
        PoolKey {
            backend,
            user: user.to_string(),
            capabilities: caps.bits(),
            collation,
            schemaless,
        }
    }
}

/// Where and how a pool connects. The password is the pool's user's, filled in per pool.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub address: String,
    pub password: String,
    pub config: PoolConfig,
    pub tls: crate::tls::BackendTls,
}

impl From<&crate::config::BackendConfig> for Target {
    /// The password is filled in per pool, from its user.
    fn from(b: &crate::config::BackendConfig) -> Target {
        Target {
            name: b.name.clone(),
            address: b.address.clone(),
            password: String::new(),
            config: b.pool.clone(),
            tls: b.tls.clone(),
        }
    }
}

/// An idle connection keeps its permit: permits count open connections, not busy ones.
struct Idle {
    conn: Box<BackendConn>,
    /// When it may no longer be lent: the end of its idle timeout or of its lifetime, whichever
    /// comes first (`None`: past what the clock can count). A deadline, so that the checks
    /// at each lend compare two instants instead of subtracting them.
    expires: Option<Instant>,
    permit: OwnedSemaphorePermit,
}

impl Idle {
    /// Within its idle timeout and lifetime at `now` (one clock read for a whole idle list).
    fn fresh(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

pub struct Pool {
    key: PoolKey,
    target: Target,
    idle: Mutex<Vec<Idle>>,
    /// Shared by every pool of the same backend: at most `max_connections` open to it.
    permits: Arc<Semaphore>,
    /// Signalled when a connection comes back idle to this pool while checkouts wait on it.
    returned: tokio::sync::Notify,
    /// Checkouts waiting on this pool.
    waiters: Arc<std::sync::atomic::AtomicUsize>,
    /// Signalled when a connection comes back idle to a pool of the same backend that no
    /// checkout waits on: one waiting on another pool of the backend closes that connection
    /// to open its own (an idle connection holds a permit the others wait for). A waiter on
    /// the pool itself comes first: it reuses the connection rather than reconnect.
    backend_returned: Arc<tokio::sync::Notify>,
    /// Checked-out connections of every pool of the same backend (`Pools::in_use`).
    backend_in_use: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when a reload replaced this pool (its backend's address or pool settings, or its
    /// user's password, changed): whoever kept it looks the pool up again.
    retired: std::sync::atomic::AtomicBool,
}

impl Pool {
    pub fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The idle connection to hand out: the most recently returned one the caller `prefer`s
    /// (one that already carries its session's state: nothing to replay), else the most
    /// recent one. Ones that cannot be lent, met on the way, are closed: stale, or closed by
    /// the server meanwhile (`BackendConn::dead_while_idle`).
    fn pop_fresh(&self, prefer: &dyn Fn(&BackendConn) -> bool) -> Option<Idle> {
        let now = Instant::now();
        // Only the candidate is checked, not every idle connection (that was a walk of the
        // whole list, a cache miss each, on every checkout). The preference scan still walks
        // the list when no connection near the top carries the session's state: cheaper than
        // the reset and replay it saves. Stale connections further down are closed by `reap`,
        // every second. The candidate is checked after the lock is released (the liveness
        // check may read the socket), and dropped, closing it, when it cannot be lent.
        loop {
            let mut i = {
                let mut idle = self.lock_idle();
                let at = idle
                    .iter()
                    .rposition(|i| prefer(&i.conn))
                    .or_else(|| idle.len().checked_sub(1))?;
                idle.remove(at)
            };
            if !i.fresh(now) {
                continue;
            }
            if i.conn.dead_while_idle() {
                tracing::debug!(
                    backend = %self.target.name,
                    "an idle connection was closed by the server; not lent"
                );
                continue;
            }
            return Some(i);
        }
    }

    async fn open(&self) -> Result<Box<BackendConn>, PoolError> {
        let caps = C::from_bits_truncate(self.key.capabilities);
        let creds = Credentials {
            user: &self.key.user,
            password: &self.target.password,
            database: None,
            capabilities: caps,
            collation: self.key.collation,
        };
        let timeout = self.target.config.connect_timeout;
        let started = Instant::now();
        let failed = |source| PoolError::Backend {
            backend: self.target.name.clone(),
            source,
        };
        let t = &self.target;
        let mut conn = BackendConn::connect(&t.address, &creds, timeout, &t.tls, &t.address)
            .await
            .map_err(failed)?;
        conn.retire_at = started.checked_add(self.target.config.max_lifetime);
        conn.open_limit = Some((
            self.permits.clone(),
            self.target.config.max_connections as usize,
        ));
        // Turning session tracking on is part of connecting: within the same timeout, or a
        // server that logs in and then hangs would hold this checkout forever.
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, conn.track_session()).await {
            Ok(tracked) => tracked.map_err(failed)?,
            Err(_) => {
                return Err(failed(BackendError::ConnectTimeout {
                    address: self.target.address.clone(),
                    after: timeout,
                }));
            }
        }
        Ok(Box::new(conn))
    }

    fn put_back(&self, conn: Box<BackendConn>, permit: OwnedSemaphorePermit) {
        let now = Instant::now();
        if !self.may_keep(&conn) || conn.retire_at.is_some_and(|r| now >= r) {
            // The permit is freed: a waiter may open a new connection.
            return;
        }
        // The first of the two that the clock can count.
        let expires = now
            .checked_add(self.target.config.idle_timeout)
            .into_iter()
            .chain(conn.retire_at)
            .min();
        let mut idle = self.lock_idle();
        // A retired pool (a reload changed its backend or its user's password) is out of the
        // map, where nothing would reap its idle list: its connections close as they return.
        // Checked under the idle lock, which the reload's clearing takes after retiring it.
        if self.retired() {
            return;
        }
        idle.push(Idle {
            conn,
            expires,
            permit,
        });
        drop(idle);
        if self.waiters.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        } else {
            self.backend_returned.notify_one();
        }
    }

    /// Whether `conn` may go back idle into this pool: not broken, no XA statement ran on it, and
    /// without a schema if the pool is for sessions without one.
    fn may_keep(&self, conn: &BackendConn) -> bool {
        !conn.broken && !conn.xa && (!self.key.schemaless || conn.schema.is_none())
    }

    /// Whether this pool is for sessions that selected no schema.
    pub fn schemaless(&self) -> bool {
        self.key.schemaless
    }

    /// Closes the oldest idle connection, freeing its permit for another pool of the backend.
    fn evict_one(&self) -> bool {
        let mut idle = self.lock_idle();
        if idle.is_empty() {
            return false;
        }
        idle.remove(0);
        true
    }

    /// Idle connections of this pool.
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// Drops idle connections past their idle timeout or lifetime, `min_idle` ones too: kept,
    /// they could not be lent (`pop_fresh` refuses them), and a server may close them on its own
    /// `wait_timeout`. Also those the server closed meanwhile (a restart, its `wait_timeout`, a
    /// KILL): kept until a checkout met them, they held their permits and counted as idle in
    /// `/backends` and the metrics, in pools no session used any more for as long as their
    /// idle timeout. `top_up`, which runs right after, opens fresh ones up to `min_idle`.
    fn reap(&self) {
        let now = Instant::now();
        let (mut kept, stale): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *self.lock_idle())
            .into_iter()
            .partition(|i| i.fresh(now));
        // Checked with the lock released (the check may read the socket); sessions may return
        // connections meanwhile, which are newer: the kept ones go back before them.
        let dead: Vec<Idle> = kept.extract_if(.., |i| i.conn.dead_while_idle()).collect();
        self.lock_idle().splice(0..0, kept);
        if !dead.is_empty() {
            tracing::debug!(
                backend = %self.target.name,
                closed = dead.len(),
                "idle connections closed by the server; dropped"
            );
        }
        drop((stale, dead));
    }

    /// Opens connections until the pool has `min_idle` idle ones, while the backend has room.
    async fn top_up(&self) {
        let want = self.target.config.min_idle as usize;
        while self.lock_idle().len() < want {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            match self.open().await {
                Ok(conn) => {
                    let before = self.lock_idle().len();
                    self.put_back(conn, permit);
                    // Not kept (the pool was retired by a reload meanwhile, or the connection
                    // is past max_lifetime already): opening more would only close them too.
                    if self.lock_idle().len() <= before {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot top up the idle pool");
                    return;
                }
            }
        }
    }
}

/// A checked-out connection. It goes back to its pool only through [`Pooled::release`], after a
/// reset, or [`Pooled::give_back`], carrying replayable state only; dropped any other way (a
/// failure, a cancelled task) it is closed, never reused dirty.
pub struct Pooled {
    /// Boxed, here and idle: a connection (buffers, statement map, identity) is a few hundred
    /// bytes, and moving it between the pool and a session by value cost about a thousand
    /// instructions of `memcpy` per statement (callgrind, `scripts/instructions.sh`).
    conn: Option<Box<BackendConn>>,
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
    /// Counted in the pool's in-use gauge.
    counted: bool,
}

impl Pooled {
    fn new(conn: Box<BackendConn>, pool: Arc<Pool>, permit: OwnedSemaphorePermit) -> Pooled {
        pool.backend_in_use
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pooled {
            conn: Some(conn),
            pool,
            permit: Some(permit),
            counted: true,
        }
    }

    pub fn backend(&self) -> BackendId {
        self.pool.key.backend
    }

    pub fn backend_name(&self) -> &str {
        &self.pool.target.name
    }

    /// Resets the connection (`BackendConn::reset`) and returns it to the pool; a connection
    /// that fails the reset is closed instead.
    pub async fn release(mut self) {
        if let (Some(mut c), Some(permit)) = (self.conn.take(), self.permit.take()) {
            self.uncount();
            if !self.pool.may_keep(&c) {
                return;
            }
            let reset = matches!(c.reset().await, Ok(true));
            if reset && !c.broken {
                self.pool.put_back(c, permit);
            }
        }
    }

    /// Returns the connection to the pool as it is, carrying its session state (tagged by
    /// `chain`): multiplexing, where the next session to use it brings it to its own state.
    /// Only for a connection with nothing that cannot be replayed (no transaction, temporary
    /// table, lock, user variable).
    pub fn give_back(mut self) {
        if let (Some(c), Some(permit)) = (self.conn.take(), self.permit.take()) {
            self.uncount();
            self.pool.put_back(c, permit);
        }
    }
}

impl Pooled {
    /// No longer in use (before it shows as idle, so the gauges never count it twice).
    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.pool
                .backend_in_use
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl std::ops::Deref for Pooled {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        // Only `release` and `give_back` take the connection, and they consume `self`.
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("connection taken"))
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("connection taken"))
    }
}

/// Counts a checkout waiting for room for as long as it waits: on its backend (a counter the
/// pools own) and on its pool (`Pool::waiters`, held through the pool's `Arc`).
struct Waiting<C: std::ops::Deref<Target = std::sync::atomic::AtomicUsize>>(C);

impl<C: std::ops::Deref<Target = std::sync::atomic::AtomicUsize>> Waiting<C> {
    fn new(counter: C) -> Waiting<C> {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(counter)
    }
}

impl<C: std::ops::Deref<Target = std::sync::atomic::AtomicUsize>> Drop for Waiting<C> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Pool gauges of one backend, summed over its pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPoolStats {
    pub backend: String,
    pub idle: usize,
    pub in_use: usize,
    pub max: usize,
    /// Checkouts waiting for room.
    pub waiting: usize,
    /// Connections open (idle or in use), read in one step from the limit's permits: `idle`
    /// and `in_use` are read one after the other, so their sum can count a connection that
    /// moved between them twice.
    pub open: usize,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Grows or shrinks a backend's connection limit. Shrinking takes permits as connections are
/// returned (in the background), so nothing in use is cut.
fn resize(limit: &Arc<Semaphore>, from: u32, to: u32) {
    if to > from {
        limit.add_permits((to - from) as usize);
    } else if to < from {
        let limit = limit.clone();
        tokio::spawn(async move {
            if let Ok(p) = limit.acquire_many_owned(from - to).await {
                p.forget();
            }
        });
    }
}

/// All pools, created on first use. Connections to one backend share one limit
/// (`max_connections`), whatever pool they are in.
pub struct Pools {
    /// Where each backend id connects (a reload replaces it; ids are stable).
    targets: RwLock<Vec<Target>>,
    /// For users' passwords.
    config: RwLock<Arc<Config>>,
    /// Each backend's limit on open connections, shared by its pools.
    limits: RwLock<Vec<Arc<Semaphore>>>,
    /// Checkouts waiting for room, per backend id.
    waiting: Vec<std::sync::atomic::AtomicUsize>,
    /// Per backend id, signalled when a connection of any of its pools comes back idle.
    returned: Vec<Arc<tokio::sync::Notify>>,
    /// Checked-out connections per backend id, and each backend's `max_connections`, so
    /// routing can tell a replica with no connection to spare without taking a lock.
    in_use: Vec<Arc<std::sync::atomic::AtomicUsize>>,
    max: Vec<std::sync::atomic::AtomicUsize>,
    pools: RwLock<HashMap<PoolKey, Arc<Pool>>>,
}

impl Pools {
    pub fn new(targets: Vec<Target>, config: Arc<Config>) -> Arc<Pools> {
        let targets_max: Vec<usize> = targets
            .iter()
            .map(|t| t.config.max_connections as usize)
            .collect();
        let limits = targets
            .iter()
            .map(|t| Arc::new(Semaphore::new(t.config.max_connections as usize)))
            .collect();
        let pools = Arc::new(Pools {
            targets: RwLock::new(targets),
            config: RwLock::new(config),
            limits: RwLock::new(limits),
            waiting: (0..crate::session::MAX_BACKENDS)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            returned: (0..crate::session::MAX_BACKENDS)
                .map(|_| Arc::new(tokio::sync::Notify::new()))
                .collect(),
            in_use: (0..crate::session::MAX_BACKENDS)
                .map(|_| Arc::new(std::sync::atomic::AtomicUsize::new(0)))
                .collect(),
            max: (0..crate::session::MAX_BACKENDS)
                .map(|i| {
                    let m = targets_max.get(i).copied().unwrap_or(0);
                    std::sync::atomic::AtomicUsize::new(m)
                })
                .collect(),
            pools: RwLock::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pools);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                p.maintain().await;
            }
        });
        pools
    }

    pub fn target(&self, id: BackendId) -> Option<Target> {
        read(&self.targets).get(id).cloned()
    }

    /// Applies a reloaded config: `targets` by backend id (existing ids first, new ones
    /// appended). A backend whose address or pool settings changed, and a user whose password
    /// changed, get new pools: connections checked out from the old ones finish and are closed
    /// when returned; their idle ones are closed now. So are the pools of the backends in
    /// `removed` (no longer in the config). Limits are resized in place.
    pub fn reconfigure(&self, targets: Vec<Target>, removed: &[BackendId], config: Arc<Config>) {
        let old_config = read(&self.config).clone();
        let mut changed = Vec::new();
        {
            let mut cur = write(&self.targets);
            let mut limits = write(&self.limits);
            for (id, t) in targets.into_iter().enumerate() {
                if let Some(m) = self.max.get(id) {
                    m.store(
                        t.config.max_connections as usize,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                match cur.get_mut(id) {
                    Some(old) => {
                        if old.address != t.address || old.config != t.config || old.tls != t.tls {
                            changed.push(id);
                        }
                        if let Some(l) = limits.get(id) {
                            resize(l, old.config.max_connections, t.config.max_connections);
                        }
                        *old = t;
                    }
                    None => {
                        limits.push(Arc::new(Semaphore::new(t.config.max_connections as usize)));
                        cur.push(t);
                    }
                }
            }
        }
        let password_changed = |user: &str| {
            old_config.user(user).map(|u| &u.password) != config.user(user).map(|u| &u.password)
        };
        let mut retired = Vec::new();
        write(&self.pools).retain(|k, p| {
            let keep = !changed.contains(&k.backend)
                && !removed.contains(&k.backend)
                && !password_changed(&k.user);
            if !keep {
                p.retired.store(true, std::sync::atomic::Ordering::Release);
                retired.push(p.clone());
            }
            keep
        });
        *write(&self.config) = config;
        // Closed outside the map's lock: each frees its permit in the backend's limit.
        for p in retired {
            p.lock_idle().clear();
        }
    }

    /// The keys of the pools open now (for tests and diagnostics).
    pub fn keys(&self) -> Vec<PoolKey> {
        self.all().iter().map(|p| p.key.clone()).collect()
    }

    fn all(&self) -> Vec<Arc<Pool>> {
        let map = self.pools.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// The pool for `key`, created on first use. Sessions keep what this returns (until it
    /// is `retired`), so the lookup (a lock, a hash of the key) is not paid per statement.
    pub fn pool(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Some(p.clone());
        }
        let mut target = read(&self.targets).get(key.backend)?.clone();
        target.password = read(&self.config).user(&key.user)?.password.clone();
        let permits = read(&self.limits).get(key.backend)?.clone();
        let backend_in_use = self.in_use.get(key.backend)?.clone();
        let backend_returned = self.returned.get(key.backend)?.clone();
        let mut map = self.pools.write().unwrap_or_else(|p| p.into_inner());
        Some(
            map.entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Pool {
                        key: key.clone(),
                        target,
                        idle: Mutex::new(Vec::new()),
                        permits,
                        returned: tokio::sync::Notify::new(),
                        waiters: Arc::default(),
                        backend_returned,
                        backend_in_use,
                        retired: std::sync::atomic::AtomicBool::new(false),
                    })
                })
                .clone(),
        )
    }

    /// A connection from `pool` (see `Pools::pool`): a fresh idle one (preferring one the
    /// caller `prefer`s: that carries its session's state), else a new one. When the backend's
    /// limit is reached, an idle connection of another pool of that backend is closed to make
    /// room; failing that it waits, at most the checkout timeout, for a connection to come
    /// back or room to open one. A connect error comes back at once.
    pub async fn get(
        &self,
        pool: Arc<Pool>,
        prefer: &(dyn Fn(&BackendConn) -> bool + Sync),
    ) -> Result<Pooled, PoolError> {
        let key = &pool.key;
        let cfg = pool.target.config.clone();
        let mut deadline = None;
        let mut waiting = None;
        let permit = loop {
            if let Some(i) = pool.pop_fresh(prefer) {
                return Ok(Pooled::new(i.conn, pool, i.permit));
            }
            if let Ok(p) = pool.permits.clone().try_acquire_owned() {
                break p;
            }
            let evicted = self
                .all()
                .iter()
                .filter(|p| p.key.backend == key.backend && p.key != *key)
                .any(|p| p.evict_one());
            if evicted && let Ok(p) = pool.permits.clone().try_acquire_owned() {
                break p;
            }
            if waiting.is_none() {
                waiting = self
                    .waiting
                    .get(key.backend)
                    .map(|w| (Waiting::new(w), Waiting::new(pool.waiters.clone())));
            }
            let until = *deadline.get_or_insert_with(|| Instant::now() + cfg.checkout_timeout);
            tokio::select! {
                p = pool.permits.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => return Err(PoolError::UnknownBackend(key.backend)),
                },
                _ = pool.returned.notified() => {}
                _ = pool.backend_returned.notified() => {}
                _ = tokio::time::sleep_until(until.into()) => {
                    return Err(PoolError::Exhausted {
                        backend: pool.target.name.clone(),
                        max: cfg.max_connections,
                        after: cfg.checkout_timeout,
                    });
                }
            }
        };
        drop(waiting);
        let conn = pool.open().await?;
        Ok(Pooled::new(conn, pool, permit))
    }

    /// Of the first `backends` backends, those (bit per id) whose every allowed connection is
    /// checked out.
    pub fn saturated(&self, backends: usize) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_use
            .iter()
            .zip(&self.max)
            .take(backends.min(64))
            .enumerate()
            .filter(|(_, (u, m))| {
                let m = m.load(Relaxed);
                m > 0 && u.load(Relaxed) >= m
            })
            .fold(0u64, |acc, (i, _)| acc | (1u64 << i))
    }

    /// Idle, in-use and maximum connections per backend, in config order.
    pub fn stats(&self) -> Vec<BackendPoolStats> {
        let limits = read(&self.limits).clone();
        let mut out: Vec<BackendPoolStats> = read(&self.targets)
            .iter()
            .enumerate()
            .map(|(i, t)| BackendPoolStats {
                open: limits.get(i).map_or(0, |l| {
                    (t.config.max_connections as usize).saturating_sub(l.available_permits())
                }),
                backend: t.name.clone(),
                idle: 0,
                in_use: self
                    .in_use
                    .get(i)
                    .map_or(0, |u| u.load(std::sync::atomic::Ordering::Relaxed)),
                max: t.config.max_connections as usize,
                waiting: self
                    .waiting
                    .get(i)
                    .map_or(0, |w| w.load(std::sync::atomic::Ordering::Relaxed)),
            })
            .collect();
        for p in self.all() {
            if let Some(s) = out.get_mut(p.key.backend) {
                s.idle += p.idle_count();
            }
        }
        out
    }

    /// Closes stale idle connections and tops pools up to `min_idle`.
    async fn maintain(&self) {
        for p in self.all() {
            p.reap();
            p.top_up().await;
        }
    }
}

/// Server statements all of a backend's pooled connections keep prepared at most, together.
/// The server counts every connection's statements against one limit,
/// `max_prepared_stmt_count` (16,382 by default), and refuses any prepare past it, to every
/// client (error 1461): rwsplit's reuse cache takes at most a quarter of it.
pub const SERVER_STATEMENTS: usize = 4_096;

/// How many statements each of `open` connections to a backend keeps for reuse:
/// `SERVER_STATEMENTS` shared out, at least 16 and at most `conn::STATEMENT_CAP`. (ProxySQL
/// keeps 20 per connection by default.) A pool that grows shrinks each one's share: a
/// connection past it closes statements down to it at its next prepare.
pub fn statement_cap(open: usize) -> usize {
    (SERVER_STATEMENTS / open.max(1)).clamp(16, conn::STATEMENT_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_connections_together_keep_at_most_a_share_of_the_servers_statement_limit() {
        // (connections open to the backend, statements each keeps)
        for (open, each) in [
            (1, 256),
            (16, 256),
            (20, 204),
            (200, 20),
            (1000, 16),
            (0, 256),
        ] {
            assert_eq!(statement_cap(open), each, "{open} open");
        }
        for open in [16, 20, 64, 200, 256] {
            assert!(open * statement_cap(open) <= SERVER_STATEMENTS);
        }
    }
}
