//! Changing the config of a running rwsplit without dropping sessions.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::*;

/// The test config with both listeners on ephemeral ports (as the harness runs them, so a
/// reload sees no listener change), replica1 taking no reads, and replica2 only if `replica2`.
fn config_text(replica2: bool) -> String {
    let base = std::fs::read_to_string(format!("{}/config/test.toml", repo_root())).expect("read");
    let (head, _) = base
        .split_once("[[backends]]\nname = \"replica2\"")
        .expect("replica2 in test.toml");
    let mut t = head
        .replace("listen = \"127.0.0.1:6034\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "address = \"127.0.0.1:3307\"\nrole = \"replica\"\n",
            "address = \"127.0.0.1:3307\"\nrole = \"replica\"\nweight = 0\n",
        );
    if replica2 {
        t +=
            "[[backends]]\nname = \"replica2\"\naddress = \"127.0.0.1:3308\"\nrole = \"replica\"\n";
    }
    t + "\n[admin]\nlisten = \"127.0.0.1:0\"\n"
}

/// A proxy started from `config_text(replica2)`, with that text also in a file of its own
/// (named after `name`) that reloads read.
fn reloadable(name: &str, replica2: bool) -> (Proxy, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.toml", unique(name)));
    std::fs::write(&path, config_text(replica2)).expect("write");
    let proxy = Proxy::start_with(|_| config_text(replica2));
    proxy.shared.config_path.set(path.clone()).expect("path");
    (proxy, path)
}

async fn read_from(c: &mut mysql_async::Conn) -> u64 {
    c.query_first::<u64, _>("SELECT @@server_id")
        .await
        .expect("read")
        .unwrap_or(0)
}

/// Waits until `c`'s reads come from `server`.
async fn wait_reads_from(c: &mut mysql_async::Conn, server: u64) {
    let from = async || match read_from(c).await {
        got if got == server => Ok(()),
        got => Err(format!("reads still from {got}, want {server}")),
    };
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "reload",
        from,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_a_replica_under_open_sessions_and_a_bad_one_changes_nothing() {
    let (proxy, path) = reloadable("reload", false);

    // Only the primary takes reads (replica1 has weight 0).
    let mut c = proxy.conn().await;
    assert_eq!(read_from(&mut c).await, 1);
    c.query_drop("SET @@session.sql_mode = 'ANSI_QUOTES'")
        .await
        .expect("session state");

    // Add replica2: the same session's reads reach it, without reconnecting.
    std::fs::write(&path, config_text(true)).expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("added [\"replica2\"]"), "{body}");
    wait_reads_from(&mut c, 3).await;
    let mode: Option<String> = c.query_first("SELECT @@sql_mode").await.expect("mode");
    assert_eq!(
        mode.as_deref(),
        Some("ANSI_QUOTES"),
        "session state followed to replica2"
    );

    // A bad file is refused with the reason; the old config keeps serving.
    std::fs::write(
        &path,
        config_text(true).replace("[pool]\n", "[pool]\nmax_conections = 1\n"),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("max_conections"), "{body}");
    assert_eq!(read_from(&mut c).await, 3);
    let (_, cfg) = proxy.admin_get("/config", None).await;
    assert!(cfg.contains("replica2"), "{cfg}");

    // A listener change needs a restart: refused, nothing applied. So does adding a Unix
    // socket for clients.
    let text = config_text(true);
    for (changed, key) in [
        (
            text.replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1),
            "proxy.listen",
        ),
        (
            text.replacen(
                "[proxy]\n",
                "[proxy]\nsocket = \"/tmp/rwsplit-reload.sock\"\n",
                1,
            ),
            "proxy.socket",
        ),
        // Set up once at startup: refused rather than accepted and ignored.
        (
            text.replacen("[proxy]\n", "[proxy]\nmax_client_connections = 7\n", 1),
            "proxy.max_client_connections",
        ),
        (
            text.replacen("level = \"warn\"", "level = \"debug\"", 1),
            "logging",
        ),
    ] {
        std::fs::write(&path, changed).expect("write");
        let (code, body) = proxy.admin_request("POST", "/reload", None).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(key), "{body}");
        assert_eq!(read_from(&mut c).await, 3);
    }

    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    assert!(
        metrics.contains("rwsplit_backend_up{backend=\"replica2\"} 1"),
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "rwsplit_client_connections", &[]) >= 1.0,
        "{metrics}"
    );

    // Remove replica2 again: the session moves off it on its next read.
    std::fs::write(&path, config_text(false)).expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("removed [\"replica2\"]"), "{body}");
    assert_eq!(read_from(&mut c).await, 1);
    let (_, backends) = proxy.admin_get("/backends", None).await;
    assert!(!backends.contains("replica2"), "{backends}");
    // Its gauges leave /metrics (an `rwsplit_backend_up` left at its last value would keep
    // an alert on it firing); its counters stay, as counters do.
    let gone = async || match proxy.admin_get("/metrics", None).await {
        (200, m) if gauge_lines(&m, "replica2").is_empty() => Ok(()),
        (code, m) => Err(format!("{code}: {}", gauge_lines(&m, "replica2"))),
    };
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(500),
        "removed backend's gauges",
        gone,
    )
    .await;
    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    assert!(
        metrics.contains("rwsplit_backend_up{backend=\"primary\"} 1"),
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "rwsplit_client_connections", &[]) >= 1.0,
        "{metrics}"
    );
    let _ = std::fs::remove_file(path);
}

/// The lines of a backend's gauges in a /metrics text (its counters and histograms aside).
fn gauge_lines(metrics: &str, backend: &str) -> String {
    let label = format!("backend=\"{backend}\"");
    let gauges = [
        "rwsplit_backend_up",
        "rwsplit_backend_role",
        "rwsplit_backend_takes_reads",
        "rwsplit_backend_lag_seconds",
        "rwsplit_backend_gtid_behind",
        "rwsplit_pool_connections_",
        "rwsplit_pool_checkouts_waiting",
    ];
    metrics
        .lines()
        .filter(|l| l.contains(&label) && gauges.iter().any(|g| l.starts_with(g)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sessions keep the pools they looked up; a reload that gives a backend a new address
/// retires its old pools, and an open session's next read goes to the new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_follows_a_backend_to_its_new_address() {
    let (proxy, path) = reloadable("reload-addr", true);
    let mut c = proxy.conn().await;
    wait_reads_from(&mut c, 3).await;

    // replica2's entry now points at replica1's server.
    std::fs::write(
        &path,
        config_text(true).replace(
            // The same server by another name: one address listed twice is refused.
            "address = \"127.0.0.1:3308\"",
            "address = \"localhost:3307\"",
        ),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    wait_reads_from(&mut c, 2).await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_a_removed_primary_finishes_there_and_the_session_moves_after() {
    let (proxy, path) = reloadable("reload-tx", true);
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "rtx", "id INT PRIMARY KEY").await;
    c.query_drop("BEGIN").await.expect("begin");
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");

    // The primary's entry is replaced by one of another name (same server): the old one is
    // removed while the transaction is open on it.
    std::fs::write(
        &path,
        config_text(true).replace("name = \"primary\"", "name = \"primary-b\""),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("removed [\"primary\"]"), "{body}");
    c.query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect("the open transaction goes on where it started");
    c.query_drop("COMMIT").await.expect("commit");
    let n: Option<u64> = c
        .query_first(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM {t}"))
        .await
        .expect("count on the new entry");
    assert_eq!(n, Some(2));
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
    let _ = std::fs::remove_file(path);
}

/// A reload that changes a backend's pool settings retires its pools: their idle connections
/// close then (each held a place in the backend's `max_connections`), not when sessions that
/// used them happen to come back, and a new session gets a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_of_pools_a_reload_retires_are_closed() {
    let limited = |t: String| t.replace("[pool]\n", "[pool]\nmax_connections = 3\n");
    let path = std::env::temp_dir().join(format!("{}.toml", unique("reload-retire")));
    std::fs::write(&path, limited(config_text(true))).expect("write");
    let proxy = Proxy::start_with(|_| limited(config_text(true)));
    proxy.shared.config_path.set(path.clone()).expect("path");
    // Three sessions each hold a primary connection at once, then leave them idle.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = proxy.conn().await;
        c.query_drop("BEGIN").await.expect("begin");
        c.query_drop("SELECT 1").await.expect("on the primary");
        held.push(c);
    }
    for c in &mut held {
        c.query_drop("COMMIT").await.expect("commit");
    }
    std::fs::write(
        &path,
        limited(config_text(true)).replace("[pool]\n", "[pool]\nmax_lifetime = \"31m\"\n"),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let mut fresh = proxy.conn().await;
    let one: Option<u32> = fresh
        .query_first("/* rwsplit:primary */ SELECT 1")
        .await
        .expect("a connection for a new session after the reload");
    assert_eq!(one, Some(1));
    // The old sessions go on, on the new pools.
    for c in &mut held {
        c.query_drop("/* rwsplit:primary */ SELECT 1")
            .await
            .expect("an old session after the reload");
    }
    let _ = std::fs::remove_file(path);
}

/// A reload that changes the monitor's login (a rotated password) reaches the running monitor
/// tasks: their next connect uses it, rather than the old one that would fail then. Their open
/// connections stay, so a login not yet valid on the servers takes nothing down at once. Here
/// the new password is wrong: nothing changes until the monitor's connections to the primary
/// are cut, and then the primary goes down; put back, it comes back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_monitor_login_is_used_from_the_next_connect() {
    let (proxy, path) = reloadable("reload-monitor", true);
    // The monitor has its connections (its first checks are done).
    proxy.replica_ready().await;
    let up = |id: usize| proxy.shared.health.snapshot.load().backends[id].up;
    assert!(up(0), "the primary up to begin with");
    std::fs::write(
        &path,
        config_text(true).replace("password = \"monitor\"", "password = \"rotated\""),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert!(
            up(0),
            "the monitor's open connections were dropped for a login not yet valid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    direct(PRIMARY_PORT)
        .await
        .query_drop("KILL USER rwsplit_monitor")
        .await
        .expect("cut the monitor's connections");
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the monitor never logged in with the new password",
        async || {
            if up(0) {
                Err("primary still up")
            } else {
                Ok(())
            }
        },
    )
    .await;
    std::fs::write(&path, config_text(true)).expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the primary never came back with the right password",
        async || if up(0) { Ok(()) } else { Err("primary down") },
    )
    .await;
    let _ = std::fs::remove_file(path);
}

/// A KILL goes to the server the statement runs on, not to where the backend's address leads
/// now: a reload re-addressed the backend while the statement ran (a DNS name that spreads
/// or fails over does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_reaches_the_server_the_statement_runs_on_after_a_re_address() {
    let (proxy, path) = reloadable("reload-kill", true);
    let mut victim = proxy.conn().await;
    wait_reads_from(&mut victim, 3).await;
    let victim_id = victim.id();
    let started = std::time::Instant::now();
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(20)").await;
        (r.map_err(|e| e.to_string()), started.elapsed())
    });
    proxy
        .wait_session(victim_id, "the statement never started on a backend", |i| {
            i.backend_thread.is_some()
        })
        .await;
    // replica2's entry now leads to replica1's server.
    std::fs::write(
        &path,
        config_text(true).replace(
            "address = \"127.0.0.1:3308\"",
            "address = \"localhost:3307\"",
        ),
    )
    .expect("write");
    let (code, body) = proxy.admin_request("POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    let mut killer = proxy.conn().await;
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .expect("kill query");
    let (_, took) = sleeping.await.expect("join");
    assert!(
        took < Duration::from_secs(10),
        "the statement ran {took:?}: the KILL went to the backend's new address"
    );
    let _ = std::fs::remove_file(path);
}
