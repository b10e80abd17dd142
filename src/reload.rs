//! Applying a new config to a running rwsplit without dropping sessions (SIGHUP and
//! `POST /reload`): validated first, then applied as a whole, or refused with the reason while
//! the old config keeps serving.
//!
//! Backends are matched by name. A backend keeps its id across reloads; a removed one is marked
//! so (no routing, no monitoring; sessions using it move on their next statement, and a
//! transaction open there fails rather than moving); a new one gets a new id, a pool and a
//! monitor; a re-addressed one is checked (and its heartbeat written) at the new address from
//! the monitor's next round. Users, routing settings, weights, lag bounds and pool limits
//! apply to the next statement; sessions keep the consistency mode, query timeout, idle timeout
//! and packet limit they started with.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::pool::Target;
use crate::session::{BackendSlot, MAX_BACKENDS, Shared};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} cannot change without a restart (the running value is kept; nothing was applied)")]
    NeedsRestart(&'static str),
    #[error("more than {MAX_BACKENDS} backends over this process's life; restart to add more")]
    TooManyBackends,
    #[error("no config file to reload (rwsplit was started from a config in memory)")]
    NoFile,
}

/// Reads the config file rwsplit was started with and applies it.
pub async fn reload_file(shared: &Arc<Shared>) -> Result<String, ReloadError> {
    let path = shared
        .config_path
        .get()
        .cloned()
        .ok_or(ReloadError::NoFile)?;
    reload_from(shared, &path).await
}

pub async fn reload_from(shared: &Arc<Shared>, path: &Path) -> Result<String, ReloadError> {
    let new = Config::load(path)?;
    apply(shared, new).await
}

/// Applies `new`, or refuses it (and nothing changes). Returns a summary of what changed.
pub async fn apply(shared: &Arc<Shared>, new: Config) -> Result<String, ReloadError> {
    let _one_at_a_time = shared.reloading.lock().await;
    let old = shared.config().clone();
    if new.proxy.listen != old.proxy.listen {
        return Err(ReloadError::NeedsRestart("proxy.listen"));
    }
    if new.proxy.socket != old.proxy.socket {
        return Err(ReloadError::NeedsRestart("proxy.socket"));
    }
    if new.admin.listen != old.admin.listen {
        return Err(ReloadError::NeedsRestart("admin.listen"));
    }
    if new.admin.max_connections != old.admin.max_connections {
        return Err(ReloadError::NeedsRestart("admin.max_connections"));
    }
    if new.admin.idle_timeout != old.admin.idle_timeout {
        return Err(ReloadError::NeedsRestart("admin.idle_timeout"));
    }
    if new.proxy.reuse_port != old.proxy.reuse_port {
        return Err(ReloadError::NeedsRestart("proxy.reuse_port"));
    }
    // Set up once at startup (the client limit, the runtime, the logger, the query insight's
    // table): refused rather than accepted and not applied.
    if new.proxy.max_client_connections != old.proxy.max_client_connections {
        return Err(ReloadError::NeedsRestart("proxy.max_client_connections"));
    }
    if new.proxy.worker_threads != old.proxy.worker_threads {
        return Err(ReloadError::NeedsRestart("proxy.worker_threads"));
    }
    if new.logging != old.logging {
        return Err(ReloadError::NeedsRestart("logging"));
    }
    if new.insight.max_digests != old.insight.max_digests {
        return Err(ReloadError::NeedsRestart("insight.max_digests"));
    }
    let old_slots = shared.backends.load_full();
    let mut slots: Vec<BackendSlot> = old_slots.iter().cloned().collect();
    let (mut added, mut removed, mut changed, mut revived) = (vec![], vec![], vec![], vec![]);
    let login = Arc::new((new.monitor.user.clone(), new.monitor.password.clone()));
    for slot in slots.iter_mut() {
        slot.monitor_login = login.clone();
        match new.backends.iter().find(|b| b.name == slot.name) {
            Some(b) => {
                if slot.removed {
                    revived.push(slot.name);
                }
                if slot.config.address != b.address
                    || slot.config.weight != b.weight
                    || slot.config.pool != b.pool
                    || slot.config.max_replica_lag != b.max_replica_lag
                    || slot.config.tls != b.tls
                {
                    changed.push(slot.name);
                }
                slot.config = b.clone();
                slot.removed = false;
            }
            None if !slot.removed => {
                slot.removed = true;
                removed.push(slot.name);
            }
            None => {}
        }
    }
    for b in &new.backends {
        if !slots.iter().any(|s| s.name == b.name) {
            let s = BackendSlot::new(b.clone(), login.clone());
            added.push(s.name);
            slots.push(s);
        }
    }
    if slots.len() > MAX_BACKENDS {
        return Err(ReloadError::TooManyBackends);
    }
    let targets = slots.iter().map(|s| Target::from(&s.config)).collect();
    let gone: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].removed).collect();
    let new = Arc::new(new);
    // Order: pools and slots first (so a new backend is connectable before routing sees it),
    // then the snapshot routing reads, then the config itself.
    shared.pools.reconfigure(targets, &gone, new.clone());
    shared.backends.store(Arc::new(slots));
    shared.health.reconfigure();
    let mc = new.monitor.clone();
    let slots = shared.backends.load();
    for (id, s) in slots.iter().enumerate() {
        if added.contains(&s.name) || revived.contains(&s.name) {
            crate::monitor::spawn_one(id, &mc, &shared.backends, &shared.health);
        }
    }
    shared.set_config(new);
    let summary = format!(
        "config reloaded: backends added {added:?}, removed {removed:?}, changed {changed:?}, back {revived:?}"
    );
    tracing::info!("{summary}");
    Ok(summary)
}
