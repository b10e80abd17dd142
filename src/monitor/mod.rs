//! Watches every backend and publishes an immutable snapshot that routing reads without locks.
//!
//! Each backend has one task with two connections, both logged in as `[monitor] user`:
//! - liveness: rwsplit's own backend client answering COM_PING within the timeout (a check
//!   that reads the greeting and hangs up would count as a connect error on the server, and
//!   `max_connect_errors` would soon block the proxy's host). Its greeting also gives the server
//!   version that rwsplit's own greeting mirrors. Health uses rise/fall counts so one slow check
//!   does not flap routing.
//! - replication: a second connection of the same client (`probe`; rows are decoded there,
//!   never on the data path) reading `@@read_only`, GTID positions and `SHOW SLAVE STATUS` /
//!   `SHOW REPLICA STATUS`. A replica takes reads only while its lag is known and within
//!   `max_replica_lag` (see [`replication::LagGate`]).
//!
//! Both go over TLS as `[backend_tls]` says, as every connection to the servers does.

pub mod probe;
pub mod replication;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use mysql_common::constants::CapabilityFlags as C;

use crate::config::{Config, MonitorConfig, Role};
use crate::pool::BackendConn;
use crate::protocol::connect::Credentials;
use crate::protocol::handshake::ServerIdentity;
use crate::route::BackendView;
use crate::session::Slots;
use crate::tls::BackendTls;
use replication::{Exclusion, Flavor, Lag, LagGate};

/// What the monitor knows about one backend beyond what routing needs (for logs and, later,
/// the admin API and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStatus {
    pub read_only: Option<bool>,
    /// How far behind the primary, in milliseconds, when known.
    pub lag_ms: Option<u64>,
    /// Transactions behind the primary by GTID, when known.
    pub gtid_behind: Option<u64>,
    /// Why a replica takes no reads (None: it does, or it is the primary).
    pub excluded: Option<Exclusion>,
    /// The GTID position this backend has applied (binlog position on the primary).
    pub gtid: Option<String>,
    /// When `gtid` was read. A replica's exact match with the primary's position says "0
    /// behind" only while the primary's reading is fresh: one its probe could no longer
    /// renew (the ping answers, the status query fails) would admit a replica stuck there.
    pub gtid_at: Option<std::time::Instant>,
}

/// The latest view of all backends, in config order.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub backends: Vec<BackendView>,
    pub status: Vec<BackendStatus>,
}

/// Shared, lock-free-readable state the monitor writes.
pub struct Health {
    pub snapshot: ArcSwap<Snapshot>,
    /// What rwsplit's greeting says about "the server", from the primary's greeting.
    pub identity: ArcSwap<ServerIdentity>,
    /// Backends whose first replication check is done.
    probed: AtomicUsize,
    first_round: tokio::sync::Notify,
    /// The backends by id (names for logs, removed ones).
    slots: Slots,
    /// The heartbeat row is being written on the primary (`monitor.heartbeat_table`): its age
    /// on a replica measures lag only then. False until the first write, and while writing
    /// fails or is held back (a read-only primary, a split brain): the row only ages then,
    /// and lag falls back to GTID positions and `Seconds_Behind_Master`.
    heartbeat_written: std::sync::atomic::AtomicBool,
    /// The status flags the primary gives a new connection (its global `autocommit` and
    /// `sql_mode`), which a new or reset session starts with.
    session_status: std::sync::atomic::AtomicU16,
}

impl Health {
    /// The status flags a new session starts with, as the primary gives a new connection
    /// (autocommit on, and no NO_BACKSLASH_ESCAPES, until it has been read).
    pub fn session_status(&self) -> u16 {
        self.session_status.load(Ordering::Relaxed)
    }

    /// Backends start up (routing tries them and the first checks correct it within `fall`
    /// intervals); replicas start without reads until their replication has been read once.
    pub fn new(config: &Config, slots: Slots) -> Arc<Health> {
        let backends: Vec<BackendView> = config
            .backends
            .iter()
            .map(|b| BackendView {
                role: b.role,
                up: true,
                weight: b.weight,
                read_only: false,
                lag_ok: b.role == Role::Primary,
            })
            .collect();
        let status = vec![BackendStatus::default(); backends.len()];
        Arc::new(Health {
            snapshot: ArcSwap::from_pointee(Snapshot { backends, status }),
            identity: ArcSwap::from_pointee(ServerIdentity::default()),
            probed: AtomicUsize::new(0),
            first_round: tokio::sync::Notify::new(),
            slots,
            heartbeat_written: std::sync::atomic::AtomicBool::new(false),
            session_status: std::sync::atomic::AtomicU16::new(
                crate::protocol::packets::SERVER_STATUS_AUTOCOMMIT,
            ),
        })
    }

    fn update(&self, id: usize, f: impl Fn(&mut BackendView, &mut BackendStatus)) {
        let slots = self.slots.load();
        let old = self.snapshot.rcu(|s| {
            let mut s = Snapshot::clone(s);
            if let (Some(b), Some(st)) = (s.backends.get_mut(id), s.status.get_mut(id)) {
                f(b, st);
            }
            apply_slots(&mut s, &slots);
            assign_roles(&mut s);
            s
        });
        let new = self.snapshot.load();
        let names: Vec<&str> = slots.iter().map(|s| s.name).collect();
        log_role_changes(&old, &new, &names);
    }

    /// Brings the snapshot in line with the backend slots after a reload: new backends start
    /// as the config says, removed ones are down for good, weights follow the config.
    pub fn reconfigure(&self) {
        let slots = self.slots.load();
        self.snapshot.rcu(|s| {
            let mut s = Snapshot::clone(s);
            for slot in slots.iter().skip(s.backends.len()) {
                let role = slot.config.role;
                s.backends.push(BackendView {
                    role,
                    up: true,
                    weight: slot.config.weight,
                    read_only: false,
                    lag_ok: role == Role::Primary,
                });
                s.status.push(BackendStatus::default());
            }
            apply_slots(&mut s, &slots);
            // A configured role applies where the server's own read_only is not known; where
            // it is, the observed role stands (assign_roles).
            for (i, slot) in slots.iter().enumerate() {
                let unknown = s.status.get(i).is_some_and(|st| st.read_only.is_none());
                if let Some(b) = s.backends.get_mut(i).filter(|_| unknown && !slot.removed) {
                    b.role = slot.config.role;
                }
            }
            assign_roles(&mut s);
            s
        });
    }

    fn set_up(&self, id: usize, up: bool) {
        self.update(id, |b, _| b.up = up);
    }

    /// Marks a backend down at once (a connect failure seen by a session); the monitor brings
    /// it back after `rise` good checks.
    pub fn report_failure(&self, id: usize) {
        self.set_up(id, false);
    }

    /// Waits until every backend has been checked once (or `within` passes), so the first
    /// clients are routed on facts rather than defaults.
    pub async fn first_round(&self, within: Duration) {
        let n = self.snapshot.load().backends.len();
        let _ = tokio::time::timeout(within, async {
            loop {
                let notified = self.first_round.notified();
                if self.probed.load(Ordering::Acquire) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// Whether every backend has been checked at least once.
    pub fn checked_once(&self) -> bool {
        self.probed.load(Ordering::Acquire) >= self.snapshot.load().backends.len()
    }

    fn probed_once(&self) {
        self.probed.fetch_add(1, Ordering::AcqRel);
        self.first_round.notify_waiters();
    }
}

/// Removed backends are down and weightless; weights follow the config.
fn apply_slots(s: &mut Snapshot, slots: &[crate::session::BackendSlot]) {
    for (b, slot) in s.backends.iter_mut().zip(slots) {
        if slot.removed {
            b.up = false;
            b.lag_ok = false;
            b.weight = 0;
            b.role = Role::Replica;
        } else {
            b.weight = slot.config.weight;
        }
    }
}

/// Roles follow `@@read_only`: when exactly one backend that is up is writable, it is the
/// primary and every other backend a replica (the configured primary turned read-only and a
/// replica was promoted, or the primary died and a replica took over). Two or more writable
/// backends are all marked primary, and routing refuses writes (split brain). With none
/// writable (or not known yet), roles stay as they were.
pub fn assign_roles(s: &mut Snapshot) {
    let writers: Vec<usize> = (0..s.backends.len())
        .filter(|&i| {
            s.backends[i].up
                && s.status
                    .get(i)
                    .is_some_and(|st| st.read_only == Some(false))
        })
        .collect();
    if writers.is_empty() {
        return;
    }
    for (i, b) in s.backends.iter_mut().enumerate() {
        let was = b.role;
        b.role = if writers.contains(&i) {
            Role::Primary
        } else {
            Role::Replica
        };
        if b.role == Role::Primary {
            b.lag_ok = true;
        } else if was == Role::Primary {
            // A demoted primary takes reads once its replication check admits it, not before.
            b.lag_ok = false;
        }
    }
}

fn log_role_changes(old: &Snapshot, new: &Snapshot, names: &[&str]) {
    let primaries = |s: &Snapshot| -> Vec<usize> {
        (0..s.backends.len())
            .filter(|&i| s.backends[i].role == Role::Primary)
            .collect()
    };
    let (before, after) = (primaries(old), primaries(new));
    if before == after {
        return;
    }
    let named = |ids: &[usize]| {
        ids.iter()
            .filter_map(|&i| names.get(i).copied())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if after.len() > 1 {
        tracing::error!(
            writable = %named(&after),
            "SPLIT BRAIN: more than one backend is writable; writes are refused until exactly one is"
        );
    } else {
        tracing::warn!(from = %named(&before), to = %named(&after), "the primary moved");
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

/// Starts the tasks of every backend.
pub fn spawn(shared: &crate::session::Shared) {
    let mc = shared.config().monitor.clone();
    for id in 0..shared.backends.load().len() {
        spawn_one(id, &mc, &shared.backends, &shared.health);
    }
}

/// Starts the tasks of backend `id` (also for a backend a reload adds). They end when the
/// backend is removed.
pub fn spawn_one(id: usize, mc: &MonitorConfig, slots: &Slots, health: &Arc<Health>) {
    let Some(b) = slots.load().get(id).map(|s| s.config.clone()) else {
        return;
    };
    let target = Watched {
        id,
        name: b.name.clone(),
        address: b.address.clone(),
        tls: b.tls.clone(),
        user: mc.user.clone(),
        password: mc.password.clone(),
        slots: slots.clone(),
    };
    if mc.heartbeat_table.is_some() {
        let mc = mc.clone();
        let health = health.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            heartbeat(id, &mc, &health, &slots).await;
        });
    }
    let mc = mc.clone();
    let health = health.clone();
    tokio::spawn(async move { watch(target, mc, health).await });
}

struct Watched {
    id: usize,
    name: String,
    address: String,
    tls: BackendTls,
    user: String,
    password: String,
    slots: Slots,
}

/// Who the monitor logs in as now (a reload may change it).
fn login_now(slots: &Slots, id: usize) -> Option<Arc<(String, String)>> {
    slots.load().get(id).map(|s| s.monitor_login.clone())
}

/// Where backend `id` is now and how it is reached (a reload may change either); `None` once a
/// reload removed it. Both of a backend's monitor tasks follow it.
fn address_now(slots: &Slots, id: usize) -> Option<(String, BackendTls)> {
    slots
        .load()
        .get(id)
        .filter(|s| !s.removed)
        .map(|s| (s.config.address.clone(), s.config.tls.clone()))
}

impl Watched {
    /// This backend's lag bound now (a reload may change it).
    fn max_lag(&self) -> Duration {
        self.slots
            .load()
            .get(self.id)
            .map_or(Duration::ZERO, |s| s.config.max_replica_lag)
    }
}

async fn watch(mut w: Watched, mc: MonitorConfig, health: Arc<Health>) {
    let id = w.id;
    let mut conn: Option<BackendConn> = None;
    let heartbeat = mc.heartbeat_table.as_deref();
    let mut prober = probe::Prober::new(&w.address, &w.tls, &w.user, &w.password, heartbeat);
    let mut state = RiseFall::new(true);
    let mut gate = LagGate::new();
    let mut first = true;
    let mut tick = tokio::time::interval(mc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some((now, tls)) = address_now(&w.slots, w.id) else {
            tracing::info!(backend = %w.name, "backend removed from the config; no longer watched");
            return;
        };
        // Re-addressed by a reload, or new TLS settings or files: new connections. What was
        // measured at another address belongs to the old server.
        if now != w.address || tls != w.tls {
            if now != w.address {
                tracing::info!(backend = %w.name, from = %w.address, to = %now, "backend re-addressed; checking the new address");
                gate = LagGate::new();
            }
            (w.address, w.tls) = (now, tls);
            conn = None;
            prober = probe::Prober::new(&w.address, &w.tls, &w.user, &w.password, heartbeat);
        }
        // A reload changed the monitor's login (a rotated password): used from the next
        // connect on, instead of the old one that would fail then. The open connections stay:
        // a login not yet valid on the servers (a reload before the password change, a typo)
        // does not take every backend down at once.
        if let Some(l) = login_now(&w.slots, w.id)
            && (l.0 != w.user || l.1 != w.password)
        {
            tracing::info!(backend = %w.name, user = %l.0, "monitor login changed; used from the next connect");
            (w.user, w.password) = (l.0.clone(), l.1.clone());
            prober.set_login(&w.user, &w.password);
        }
        let result = check(&w, &mut conn, mc.timeout).await;
        let ok = result.is_ok();
        let failure = result.as_ref().err().cloned();
        let mut flavor = Flavor::MariaDb;
        let is_primary = health
            .snapshot
            .load()
            .backends
            .get(id)
            .is_some_and(|b| b.role == Role::Primary);
        if let Ok(identity) = result {
            flavor = Flavor::of(&identity.version);
            if is_primary && **health.identity.load() != identity {
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
                tracing::info!(backend = %w.name, address = %w.address, "backend is up");
            } else {
                let reason = failure.as_deref().unwrap_or("");
                tracing::warn!(backend = %w.name, address = %w.address, reason, "backend is down");
            }
        }
        if ok {
            replication_check(&w, is_primary, &mut prober, flavor, &mut gate, &mc, &health).await;
        }
        if first {
            first = false;
            health.probed_once();
        }
    }
}

/// Writes the heartbeat row every `heartbeat_interval` while this backend is the primary.
async fn heartbeat(id: usize, mc: &MonitorConfig, health: &Health, slots: &Slots) {
    let mut tick = tokio::time::interval(mc.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let table = mc.heartbeat_table.as_deref();
    // Where the backend is and how it is reached (`address_now`).
    let mut at = (String::new(), BackendTls::default());
    let mut login = Arc::new((String::new(), String::new()));
    let mut prober = probe::Prober::new(&at.0, &at.1, &login.0, &login.1, table);
    loop {
        tick.tick().await;
        let (Some(now), Some(l)) = (address_now(slots, id), login_now(slots, id)) else {
            return;
        };
        // First round, or re-addressed (or new TLS) by a reload; a new login from the next
        // connect on.
        if now != at {
            (at, login) = (now, l);
            prober = probe::Prober::new(&at.0, &at.1, &login.0, &login.1, table);
        } else if l != login {
            login = l;
            prober.set_login(&login.0, &login.1);
        }
        // Only the one writable primary: a heartbeat on a read-only old primary (by a monitor
        // user allowed past read_only) or on both sides of a split brain would be a
        // transaction of its own there, which the server's later rejoining would trip on.
        let snap = health.snapshot.load();
        let primary = snap
            .backends
            .get(id)
            .is_some_and(|b| b.role == Role::Primary && b.up);
        let held_back = snap.backends.get(id).is_some_and(|b| b.read_only)
            || crate::route::sole_primary(&snap.backends).is_err();
        drop(snap);
        if !primary {
            continue;
        }
        if held_back {
            health.heartbeat_written.store(false, Ordering::Relaxed);
            continue;
        }
        let beat = prober.beat(mc.timeout).await;
        health
            .heartbeat_written
            .store(beat.is_ok(), Ordering::Relaxed);
        match beat {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, table = ?mc.heartbeat_table, "cannot write the heartbeat; lag falls back to replica status");
            }
            Err(_) => {}
        }
    }
}

/// Reads the backend's replication state and publishes it; for a replica, admits or excludes
/// it from reads.
async fn replication_check(
    w: &Watched,
    is_primary: bool,
    prober: &mut probe::Prober,
    flavor: Flavor,
    gate: &mut LagGate,
    mc: &MonitorConfig,
    health: &Health,
) {
    let reading = prober.read(flavor, mc.timeout).await;
    // Two rounds: the primary's and the replica's checks are not in step.
    let fresh = mc.interval.saturating_mul(2).saturating_add(mc.timeout);
    let (primary_gtid, primary_down) = {
        let snap = health.snapshot.load();
        let p = snap.backends.iter().position(|b| b.role == Role::Primary);
        let down = p.and_then(|p| snap.backends.get(p)).is_none_or(|b| !b.up);
        // With the primary down its last position is the newest there is; up, only a reading
        // from its last rounds counts.
        let gtid = p
            .and_then(|p| snap.status.get(p))
            .filter(|s| down || s.gtid_at.is_some_and(|t| t.elapsed() <= fresh))
            .and_then(|s| s.gtid.clone());
        (gtid, down)
    };
    let (lag, read_only, gtid, behind) = match &reading {
        Ok(r) => {
            if is_primary {
                health
                    .session_status
                    .store(r.session_status, Ordering::Relaxed);
            }
            let behind = primary_gtid
                .as_deref()
                .filter(|_| !is_primary)
                .and_then(|p| replication::gtid_distance(flavor, p, &r.applied_gtid));
            let written = health.heartbeat_written.load(Ordering::Relaxed);
            let heartbeat = r.heartbeat_age.filter(|_| written);
            let lag = replication::lag(r.status, behind, heartbeat, primary_down);
            let gtid = if is_primary {
                r.binlog_gtid.clone()
            } else {
                r.applied_gtid.clone()
            };
            (lag, Some(r.read_only), Some(gtid), behind)
        }
        Err(e) => {
            tracing::debug!(backend = %w.name, error = %e, "cannot read replication state");
            (Lag::Unknown, None, None, None)
        }
    };
    let was = gate.excluded;
    let changed = !is_primary && gate.update(lag, w.max_lag());
    if !is_primary && (changed || was != gate.excluded) {
        match (gate.excluded, &reading) {
            (None, _) => tracing::info!(backend = %w.name, ?lag, "replica takes reads"),
            (Some(why), Err(e)) => {
                tracing::warn!(backend = %w.name, reason = %why, error = %e, "replica takes no reads")
            }
            (Some(why), Ok(_)) => {
                tracing::warn!(backend = %w.name, reason = %why, ?lag, max_replica_lag = ?w.max_lag(), "replica takes no reads")
            }
        }
    }
    let excluded = if is_primary { None } else { gate.excluded };
    let lag_ms = match lag {
        Lag::Behind(d) => Some(d.as_millis() as u64),
        _ => None,
    };
    let gate_ok = gate.admitted();
    health.update(w.id, |b, st| {
        // From the role it has now: another backend's check may have demoted it since this
        // round began, and a demoted primary waits for its own replication check.
        b.lag_ok = match (b.role, is_primary) {
            (Role::Primary, _) => true,
            (Role::Replica, true) => false,
            (Role::Replica, false) => gate_ok,
        };
        b.read_only = read_only == Some(true);
        st.read_only = read_only;
        st.lag_ms = lag_ms;
        st.gtid_behind = behind;
        st.excluded = excluded;
        if gtid.is_some() {
            st.gtid.clone_from(&gtid);
            st.gtid_at = Some(std::time::Instant::now());
        }
    });
}

/// Pings over the kept connection, opening a new one when there is none or it failed. The
/// error says why the check failed (logged when the backend is marked down).
async fn check(
    w: &Watched,
    conn: &mut Option<BackendConn>,
    timeout: Duration,
) -> Result<ServerIdentity, String> {
    if conn.is_none() {
        let creds = Credentials {
            user: &w.user,
            password: &w.password,
            database: None,
            capabilities: C::empty(),
            collation: 45,
        };
        match BackendConn::connect(&w.address, &creds, timeout, &w.tls, &w.address).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::debug!(backend = %w.name, error = %e, "monitor cannot connect");
                return Err(format!("the monitor cannot connect: {e}"));
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let failed = match tokio::time::timeout(timeout, c.ping()).await {
        Ok(Ok(true)) => return Ok(c.identity.clone()),
        Ok(Ok(false)) => "the server answered COM_PING with an error".to_string(),
        Ok(Err(e)) => format!("COM_PING failed: {e}"),
        Err(_) => format!("COM_PING took longer than {timeout:?}"),
    };
    *conn = None;
    Err(failed)
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

    fn snapshot(read_only: [Option<bool>; 3], up: [bool; 3]) -> Snapshot {
        let roles = [Role::Primary, Role::Replica, Role::Replica];
        Snapshot {
            backends: (0..3)
                .map(|i| BackendView {
                    role: roles[i],
                    up: up[i],
                    weight: 1,
                    lag_ok: i == 0,
                    read_only: false,
                })
                .collect(),
            status: read_only
                .iter()
                .map(|&ro| BackendStatus {
                    read_only: ro,
                    ..BackendStatus::default()
                })
                .collect(),
        }
    }

    fn roles(s: &Snapshot) -> Vec<Role> {
        s.backends.iter().map(|b| b.role).collect()
    }

    #[test]
    fn the_primary_role_follows_the_one_writable_backend() {
        use Role::{Primary as P, Replica as R};
        let mut s = snapshot([Some(false), Some(true), Some(true)], [true; 3]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [P, R, R]);
        // The primary turned read-only and replica1 was made writable.
        let mut s = snapshot([Some(true), Some(false), Some(true)], [true; 3]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [R, P, R]);
        assert!(s.backends[1].lag_ok);
        // The primary died and replica2 was promoted.
        let mut s = snapshot([Some(false), Some(true), Some(false)], [false, true, true]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [R, R, P]);
    }

    #[test]
    fn two_writable_backends_are_both_marked_and_none_writable_changes_nothing() {
        use Role::{Primary as P, Replica as R};
        let mut s = snapshot([Some(false), Some(false), Some(true)], [true; 3]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [P, P, R]);
        let mut s = snapshot([Some(true), Some(true), None], [true; 3]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [P, R, R], "roles stay when nothing is writable");
        let mut s = snapshot([None, None, None], [true; 3]);
        assign_roles(&mut s);
        assert_eq!(roles(&s), [P, R, R], "or not known yet");
    }
}
