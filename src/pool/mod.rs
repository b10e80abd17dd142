//! Pools of authenticated backend connections, one per (backend, user, response-shaping
//! capabilities, collation).
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

pub use conn::{BackendConn, BackendError, ServerErr};

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
}

impl PoolKey {
    pub fn new(backend: BackendId, user: &str, client_caps: C, collation: u8) -> PoolKey {
        let caps = client_caps & (RESPONSE_SHAPING | C::CLIENT_MULTI_STATEMENTS);
        PoolKey {
            backend,
            user: user.to_string(),
            capabilities: caps.bits(),
            collation,
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
}

struct Idle {
    conn: BackendConn,
    since: Instant,
}

pub struct Pool {
    key: PoolKey,
    target: Target,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn new(key: PoolKey, target: Target) -> Pool {
        let permits = Arc::new(Semaphore::new(target.config.max_connections as usize));
        Pool {
            key,
            target,
            idle: Mutex::new(Vec::new()),
            permits,
        }
    }

    /// A connection: an idle one if there is a fresh one, else a new one. Waits at most the
    /// checkout timeout for room in the pool; a connect error comes back at once.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled, PoolError> {
        let cfg = &self.target.config;
        let permit =
            tokio::time::timeout(cfg.checkout_timeout, self.permits.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| PoolError::Exhausted {
                    backend: self.target.name.clone(),
                    max: cfg.max_connections,
                    after: cfg.checkout_timeout,
                })?;
        if let Some(conn) = self.pop_fresh() {
            return Ok(Pooled::new(conn, self.clone(), permit));
        }
        let conn = self.open().await?;
        Ok(Pooled::new(conn, self.clone(), permit))
    }

    fn pop_fresh(&self) -> Option<BackendConn> {
        let cfg = &self.target.config;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < cfg.idle_timeout && i.conn.created.elapsed() < cfg.max_lifetime {
                return Some(i.conn);
            }
        }
        None
    }

    async fn open(&self) -> Result<BackendConn, PoolError> {
        let caps = C::from_bits_truncate(self.key.capabilities);
        let creds = Credentials {
            user: &self.key.user,
            password: &self.target.password,
            database: None,
            capabilities: caps,
            collation: self.key.collation,
        };
        BackendConn::connect(
            &self.target.address,
            &creds,
            self.target.config.connect_timeout,
        )
        .await
        .map_err(|source| PoolError::Backend {
            backend: self.target.name.clone(),
            source,
        })
    }

    fn put_back(&self, conn: BackendConn) {
        if conn.broken || conn.created.elapsed() >= self.target.config.max_lifetime {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Idle and in-use connection counts.
    pub fn counts(&self) -> (usize, usize) {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or(0);
        let max = self.target.config.max_connections as usize;
        (idle, max - self.permits.available_permits())
    }

    /// Drops idle connections past their idle timeout or lifetime.
    fn reap(&self) {
        let cfg = &self.target.config;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|i| {
            i.since.elapsed() < cfg.idle_timeout && i.conn.created.elapsed() < cfg.max_lifetime
        });
    }
}

/// A checked-out connection. It goes back to its pool only through [`Pooled::release`], after a
/// reset; dropped any other way (a failure, a cancelled task) it is closed, never reused dirty.
pub struct Pooled {
    conn: Option<BackendConn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pooled {
    fn new(conn: BackendConn, pool: Arc<Pool>, permit: OwnedSemaphorePermit) -> Pooled {
        Pooled {
            conn: Some(conn),
            pool,
            _permit: permit,
        }
    }

    pub fn backend(&self) -> BackendId {
        self.pool.key.backend
    }

    pub fn backend_name(&self) -> &str {
        &self.pool.target.name
    }

    /// Resets the connection (COM_RESET_CONNECTION) and returns it to the pool; a connection
    /// that fails the reset is closed instead.
    pub async fn release(mut self) {
        if let Some(mut c) = self.conn.take() {
            if !c.broken && matches!(c.reset().await, Ok(true)) {
                c.status = crate::protocol::packets::SERVER_STATUS_AUTOCOMMIT;
                self.pool.put_back(c);
            }
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        // Only `release` takes the connection, and it consumes `self`.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken"))
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection taken"))
    }
}

/// All pools, created on first use.
pub struct Pools {
    targets: Vec<Target>,
    config: Arc<Config>,
    pools: RwLock<HashMap<PoolKey, Arc<Pool>>>,
}

impl Pools {
    pub fn new(targets: Vec<Target>, config: Arc<Config>) -> Arc<Pools> {
        let pools = Arc::new(Pools {
            targets,
            config,
            pools: RwLock::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pools);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                p.reap();
            }
        });
        pools
    }

    pub fn target(&self, id: BackendId) -> Option<&Target> {
        self.targets.get(id)
    }

    pub fn pool(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Some(p.clone());
        }
        let mut target = self.targets.get(key.backend)?.clone();
        target.password = self.config.user(&key.user)?.password.clone();
        let mut map = self.pools.write().unwrap_or_else(|p| p.into_inner());
        Some(
            map.entry(key.clone())
                .or_insert_with(|| Arc::new(Pool::new(key.clone(), target)))
                .clone(),
        )
    }

    /// (backend name, idle, in use) for every pool.
    pub fn stats(&self) -> Vec<(String, usize, usize)> {
        let map = self.pools.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .map(|p| {
                let (i, u) = p.counts();
                (p.target.name.clone(), i, u)
            })
            .collect()
    }

    fn reap(&self) {
        let map = self.pools.read().unwrap_or_else(|p| p.into_inner());
        for p in map.values() {
            p.reap();
        }
    }
}
