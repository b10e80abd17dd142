//! Prometheus metrics: the names (one place, so the dashboard, the alert rules and the tests
//! agree), the recorder, and the gauges refreshed from the monitor and the pools at scrape
//! time. Counters and histograms are recorded where things happen, through the `metrics`
//! facade; label values are `&'static str` so recording does not allocate.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::config::Role;
use crate::session::Shared;

/// Statements run, by `command` (query, execute, prepare, other), `route` (primary, replica),
/// `backend` and `outcome` (ok, error: the server's ERR included).
pub const STATEMENTS: &str = "rwsplit_statements_total";
/// Client-observed statement latency in seconds, by `route`.
pub const STATEMENT_SECONDS: &str = "rwsplit_statement_duration_seconds";
/// Bytes of responses sent to clients, and of commands received from them.
pub const BYTES_TO_CLIENTS: &str = "rwsplit_client_bytes_sent_total";
pub const BYTES_FROM_CLIENTS: &str = "rwsplit_client_bytes_received_total";
/// Client connections open now, accepted in all, and refused by `reason`
/// (max_client_connections, auth, handshake).
pub const CLIENTS_OPEN: &str = "rwsplit_client_connections";
pub const CLIENTS_TOTAL: &str = "rwsplit_client_connections_total";
pub const CLIENTS_REFUSED: &str = "rwsplit_client_connections_refused_total";
/// Backend pool gauges by `backend`.
pub const POOL_IN_USE: &str = "rwsplit_pool_connections_in_use";
pub const POOL_IDLE: &str = "rwsplit_pool_connections_idle";
pub const POOL_MAX: &str = "rwsplit_pool_connections_max";
pub const POOL_WAITING: &str = "rwsplit_pool_checkouts_waiting";
/// Backend state by `backend`: up (1/0), role (1 for the current `role` label), taking reads,
/// lag and GTID distance.
pub const BACKEND_UP: &str = "rwsplit_backend_up";
pub const BACKEND_ROLE: &str = "rwsplit_backend_role";
pub const BACKEND_READS: &str = "rwsplit_backend_takes_reads";
pub const BACKEND_LAG: &str = "rwsplit_backend_lag_seconds";
pub const BACKEND_GTID_BEHIND: &str = "rwsplit_backend_gtid_behind";
/// 1 while more than one backend is writable (writes are refused).
pub const SPLIT_BRAIN: &str = "rwsplit_split_brain";
/// Statements classified, by `path` (fast: lexical, full: sqlparser fallback).
pub const CLASSIFIED: &str = "rwsplit_classified_total";
/// Sessions pinned to their backend connection (multiplexing paused), by `reason`, counted
/// as each pin starts.
pub const PINS: &str = "rwsplit_session_pins_total";
/// Backend connections brought to a session's state at checkout, by `kind`: none (it
/// already carried it), replay (some commands), reset (it carried another session's state).
pub const STATE_SYNCS: &str = "rwsplit_state_syncs_total";
/// Errors rwsplit itself answered or hit, by `kind`.
pub const ERRORS: &str = "rwsplit_errors_total";

/// Latency buckets: fine enough for p50/p95/p99 from 50 us to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_2, 0.000_35, 0.000_5, 0.000_75, 0.001, 0.002, 0.003_5, 0.005, 0.007_5,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long a gauge no refresh set stays exported.
const GAUGE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often histogram samples are drained into their buckets when nobody reads /metrics.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Gauges are set afresh before each render (`refresh`), for what exists then: one
            // left unset for 10 s belongs to a backend a reload removed, and goes (its
            // `rwsplit_backend_up` 0 would keep an alert firing).
            let builder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .set_buckets_for_metric(
                    Matcher::Full(STATEMENT_SECONDS.to_string()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist when rwsplit is embedded; keep ours rendering anyway.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples wait in the recorder until drained into their buckets, which
            // rendering /metrics does. Unscraped (the admin API off, or no Prometheus) they
            // piled up, about 18 bytes per statement: 9 to 26.5 MiB over 980k point selects.
            // A thread of its own, so it runs whatever runtime the process has.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("rwsplit-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are drained only when /metrics is read");
            }
            handle
        })
        .clone()
}

/// Handles of the counters every statement touches, registered once. A `counter!` call with
/// labels looks its key up in the registry (hashing and comparing name and labels) each time,
/// which the data path need not pay per statement.
pub struct Hot {
    pub bytes_to_clients: metrics::Counter,
    pub bytes_from_clients: metrics::Counter,
    pub classified_fast: metrics::Counter,
    pub classified_full: metrics::Counter,
    /// By `state::Sync` label: none, replay, reset.
    pub state_syncs: [metrics::Counter; 3],
    /// Statement latency on the primary and on a replica.
    pub seconds_primary: metrics::Histogram,
    pub seconds_replica: metrics::Histogram,
}

/// The hot counters (installing the recorder first, so the handles are live ones).
pub fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| {
        handle();
        Hot {
            bytes_to_clients: metrics::counter!(BYTES_TO_CLIENTS),
            bytes_from_clients: metrics::counter!(BYTES_FROM_CLIENTS),
            classified_fast: metrics::counter!(CLASSIFIED, "path" => "fast"),
            classified_full: metrics::counter!(CLASSIFIED, "path" => "full"),
            state_syncs: ["none", "replay", "reset"]
                .map(|kind| metrics::counter!(STATE_SYNCS, "kind" => kind)),
            seconds_primary: metrics::histogram!(STATEMENT_SECONDS, "route" => "primary"),
            seconds_replica: metrics::histogram!(STATEMENT_SECONDS, "route" => "replica"),
        }
    })
}

/// The `command` label of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Command {
    Query,
    Execute,
    Prepare,
    Fetch,
    Other,
}

impl Command {
    const ALL: usize = 5;

    fn label(self) -> &'static str {
        match self {
            Command::Query => "query",
            Command::Execute => "execute",
            Command::Prepare => "prepare",
            Command::Fetch => "fetch",
            Command::Other => "other",
        }
    }
}

/// One backend's `rwsplit_statements_total` handles, by command, route and outcome, each
/// registered on first use. A `counter!` call per statement hashed the labels and allocated a
/// new `Arc`. Kept with the backend's slot, whose id keeps its name for good (reloads match
/// backends by name).
#[derive(Debug)]
pub struct StatementCounters {
    backend: &'static str,
    handles: [OnceLock<metrics::Counter>; Command::ALL * 4],
}

impl StatementCounters {
    pub fn new(backend: &'static str) -> StatementCounters {
        StatementCounters {
            backend,
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn slot(command: Command, primary: bool, ok: bool) -> usize {
        (command as usize * 2 + usize::from(primary)) * 2 + usize::from(ok)
    }

    pub fn get(&self, command: Command, primary: bool, ok: bool) -> &metrics::Counter {
        self.handles[Self::slot(command, primary, ok)].get_or_init(|| {
            let route = if primary { "primary" } else { "replica" };
            let outcome = if ok { "ok" } else { "error" };
            metrics::counter!(STATEMENTS, "command" => command.label(), "route" => route, "backend" => self.backend, "outcome" => outcome)
        })
    }
}

/// Sets the gauges that mirror state kept elsewhere (monitor snapshot, pools).
pub fn refresh(shared: &Shared) {
    let snap = shared.health.snapshot.load();
    let slots = shared.backends.load();
    let mut writable = 0;
    for (i, b) in snap.backends.iter().enumerate() {
        let Some(name) = slots.get(i).filter(|s| !s.removed).map(|s| s.name) else {
            continue;
        };
        let st = snap.status.get(i);
        metrics::gauge!(BACKEND_UP, "backend" => name).set(f64::from(u8::from(b.up)));
        for (role, label) in [(Role::Primary, "primary"), (Role::Replica, "replica")] {
            metrics::gauge!(BACKEND_ROLE, "backend" => name, "role" => label)
                .set(f64::from(u8::from(b.role == role)));
        }
        let reads = b.role == Role::Replica && b.up && b.lag_ok && b.weight > 0;
        metrics::gauge!(BACKEND_READS, "backend" => name).set(f64::from(u8::from(reads)));
        // Unknown now (stopped, unreadable, not a replica) is NaN, not the last value seen.
        let lag = st
            .and_then(|s| s.lag_ms)
            .map_or(f64::NAN, |ms| ms as f64 / 1000.0);
        metrics::gauge!(BACKEND_LAG, "backend" => name).set(lag);
        let behind = st
            .and_then(|s| s.gtid_behind)
            .map_or(f64::NAN, |n| n as f64);
        metrics::gauge!(BACKEND_GTID_BEHIND, "backend" => name).set(behind);
        if b.role == Role::Primary && b.up {
            writable += 1;
        }
    }
    metrics::gauge!(SPLIT_BRAIN).set(f64::from(u8::from(writable > 1)));
    let open = shared
        .clients_open
        .load(std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!(CLIENTS_OPEN).set(open as f64);
    for (i, p) in shared.pools.stats().iter().enumerate() {
        let Some(name) = slots.get(i).filter(|s| !s.removed).map(|s| s.name) else {
            continue;
        };
        metrics::gauge!(POOL_IN_USE, "backend" => name).set(p.in_use as f64);
        metrics::gauge!(POOL_IDLE, "backend" => name).set(p.idle as f64);
        metrics::gauge!(POOL_MAX, "backend" => name).set(p.max as f64);
        metrics::gauge!(POOL_WAITING, "backend" => name).set(p.waiting as f64);
    }
}

/// Renders the exposition text, refreshing the mirrored gauges first.
pub fn render(shared: &Shared) -> String {
    let h = handle();
    refresh(shared);
    h.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_counter_label_set_has_its_own_slot() {
        use Command as C;
        let mut seen = std::collections::HashSet::new();
        for c in [C::Query, C::Execute, C::Prepare, C::Fetch, C::Other] {
            for primary in [false, true] {
                for ok in [false, true] {
                    let i = StatementCounters::slot(c, primary, ok);
                    assert!(i < Command::ALL * 4);
                    assert!(seen.insert(i), "slot {i} taken twice");
                }
            }
        }
    }
}
