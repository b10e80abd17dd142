//! Watches every backend and publishes an immutable snapshot that routing reads without locks.
//!
//! Liveness here is "a logged-in connection answers COM_PING within the timeout". The monitor keeps
//! one connection per backend and logs in properly: a check that reads the greeting and hangs up
//! counts as a connect error on the server, and `max_connect_errors` would soon block the proxy's
//! host. It logs in as the first `[[users]]` entry (a dedicated monitor user comes with the
//! replication-aware monitor). The greeting also gives the server version that rwsplit's own
//! greeting mirrors. Health uses rise/fall counts so one slow check does not flap routing.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mysql_common::constants::CapabilityFlags as C;

use crate::config::{Config, MonitorConfig, Role};
use crate::pool::BackendConn;
use crate::protocol::connect::Credentials;
use crate::protocol::handshake::ServerIdentity;
use crate::route::BackendView;

/// The latest view of all backends, in config order.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub backends: Vec<BackendView>,
}

/// Shared, lock-free-readable state the monitor writes.
pub struct Health {
    pub snapshot: ArcSwap<Snapshot>,
    /// What rwsplit's greeting says about "the server", from the primary's greeting.
    pub identity: ArcSwap<ServerIdentity>,
}

impl Health {
    /// All backends start up: routing tries them, and the first checks correct it within
    /// `fall` intervals.
    pub fn new(config: &Config) -> Arc<Health> {
        let backends = config
            .backends
            .iter()
            .map(|b| BackendView {
                role: b.role,
                up: true,
                weight: b.weight,
            })
            .collect();
        Arc::new(Health {
            snapshot: ArcSwap::from_pointee(Snapshot { backends }),
            identity: ArcSwap::from_pointee(ServerIdentity::default()),
        })
    }

    fn set_up(&self, id: usize, up: bool) {
        self.snapshot.rcu(|s| {
            let mut s = Snapshot::clone(s);
            if let Some(b) = s.backends.get_mut(id) {
                b.up = up;
            }
            s
        });
    }

    /// Marks a backend down at once (a connect failure seen by a session); the monitor brings
    /// it back after `rise` good checks.
    pub fn report_failure(&self, id: usize) {
        self.set_up(id, false);
    }
}

/// Counts consecutive results and says when the state flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    pub up: bool,
    streak: u32,
}

impl RiseFall {
    pub fn new(up: bool) -> Self {
        RiseFall { up, streak: 0 }
    }

    /// Records one check; returns true when `up` changed.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let need = if ok { rise } else { fall };
        if self.streak >= need.max(1) {
            self.up = ok;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// Starts one task per backend.
pub fn spawn(config: &Config, health: Arc<Health>) {
    for (id, b) in config.backends.iter().enumerate() {
        let health = health.clone();
        let address = b.address.clone();
        let name = b.name.clone();
        let primary = b.role == Role::Primary;
        let mc = config.monitor.clone();
        let (user, password) = config
            .users
            .first()
            .map(|u| (u.name.clone(), u.password.clone()))
            .unwrap_or_default();
        let target = Watched {
            id,
            name,
            address,
            primary,
            user,
            password,
        };
        tokio::spawn(async move { watch(target, mc, health).await });
    }
}

struct Watched {
    id: usize,
    name: String,
    address: String,
    primary: bool,
    user: String,
    password: String,
}

async fn watch(w: Watched, mc: MonitorConfig, health: Arc<Health>) {
    let Watched {
        id,
        ref name,
        ref address,
        primary,
        ..
    } = w;
    let mut conn: Option<BackendConn> = None;
    let mut state = RiseFall::new(true);
    let mut tick = tokio::time::interval(mc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = check(&w, &mut conn, mc.timeout).await;
        let ok = result.is_ok();
        if let Ok(identity) = result {
            if primary && **health.identity.load() != identity {
                health.identity.store(Arc::new(identity));
            }
        }
        // A session may have marked it down in between; resync before counting.
        let published = health
            .snapshot
            .load()
            .backends
            .get(id)
            .is_some_and(|b| b.up);
        if published != state.up {
            state = RiseFall::new(published);
        }
        if state.record(ok, mc.rise, mc.fall) {
            health.set_up(id, state.up);
            if state.up {
                tracing::info!(backend = %name, %address, "backend is up");
            } else {
                tracing::warn!(backend = %name, %address, "backend is down");
            }
        }
    }
}

/// Pings over the kept connection, opening a new one when there is none or it failed.
async fn check(
    w: &Watched,
    conn: &mut Option<BackendConn>,
    timeout: Duration,
) -> Result<ServerIdentity, ()> {
    if conn.is_none() {
        let creds = Credentials {
            user: &w.user,
            password: &w.password,
            database: None,
            capabilities: C::empty(),
            collation: 45,
        };
        match BackendConn::connect(&w.address, &creds, timeout).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::debug!(backend = %w.name, error = %e, "monitor cannot connect");
                return Err(());
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return Err(());
    };
    match tokio::time::timeout(timeout, c.ping()).await {
        Ok(Ok(true)) => Ok(c.identity.clone()),
        _ => {
            *conn = None;
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_does_not_mark_a_backend_down() {
        let mut s = RiseFall::new(true);
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(true, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(s.up);
        assert!(s.record(false, 2, 3));
        assert!(!s.up);
    }

    #[test]
    fn a_down_backend_comes_back_after_rise_good_checks() {
        let mut s = RiseFall::new(false);
        assert!(!s.record(true, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(true, 2, 3));
        assert!(s.record(true, 2, 3));
        assert!(s.up);
    }
}
