//! Fault injection on a topology of its own (`common::faults`): servers die and come back
//! while clients use rwsplit. Run one at a time (see `.config/nextest.toml`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::faults;
use common::*;
use mysql_async::prelude::*;

const REPLICA1_SERVER_ID: u64 = 2;

/// Reads from `sessions` clients in a loop until `stop`; counts reads, errors and reads
/// answered by replica1 after `killed` was set.
struct ReadLoad {
    reads: AtomicU64,
    errors: AtomicU64,
    errors_late: AtomicU64,
    from_dead_late: AtomicU64,
    killed_at: std::sync::Mutex<Option<Instant>>,
    stop: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_does_not_break_reads_and_rejoins_when_back() {
    faults::healthy();
    let proxy = faults::proxy();
    const SESSIONS: usize = 8;
    let load = Arc::new(ReadLoad {
        reads: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        errors_late: AtomicU64::new(0),
        from_dead_late: AtomicU64::new(0),
        killed_at: std::sync::Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let load = load.clone();
        let opts = proxy.opts();
        tasks.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts.clone()).await.expect("connect");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !load.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r: Result<Option<u64>, _> = conn.query_first("SELECT @@server_id").await;
                // "Late" means well after the kill: the monitor (500 ms x 2) has seen it.
                let late = load
                    .killed_at
                    .lock()
                    .expect("lock")
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(2500));
                match r {
                    Ok(id) => {
                        load.reads.fetch_add(1, Ordering::Relaxed);
                        if late && id == Some(REPLICA1_SERVER_ID) {
                            load.from_dead_late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        load.errors.fetch_add(1, Ordering::Relaxed);
                        if late {
                            load.errors_late.fetch_add(1, Ordering::Relaxed);
                        }
                        eprintln!("read failed: {e}");
                        // The session may be gone; a client reconnects.
                        if let Ok(c) = mysql_async::Conn::new(opts.clone()).await {
                            conn = c;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_kill = load.reads.load(Ordering::Relaxed);
    faults::topology(&["kill", "replica1"]);
    *load.killed_at.lock().expect("lock") = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(4500)).await;
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let reads = load.reads.load(Ordering::Relaxed);
    let errors = load.errors.load(Ordering::Relaxed);
    eprintln!(
        "reads: {before_kill} before the kill, {reads} in all; client errors: {errors} \
         (at most {SESSIONS} statements can be in flight on the dead replica)"
    );
    assert!(
        before_kill > 100,
        "the load did not run: {before_kill} reads"
    );
    assert!(reads > before_kill + 100, "reads stopped after the kill");
    assert!(
        errors <= SESSIONS as u64,
        "{errors} errors: more than the statements in flight at the kill"
    );
    assert_eq!(
        load.errors_late.load(Ordering::Relaxed),
        0,
        "errors long after the kill"
    );
    assert_eq!(
        load.from_dead_late.load(Ordering::Relaxed),
        0,
        "reads answered by the killed replica"
    );

    // Back up: new sessions reach it again once the monitor sees it.
    faults::topology(&["start", "replica1"]);
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_down_writes_fail_clearly_and_reads_still_work() {
    faults::healthy();
    let proxy = faults::proxy();
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "pdown", "id INT PRIMARY KEY").await;
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    faults::topology(&["wait-sync"]);

    faults::topology(&["kill", "primary"]);
    {
        let _heal = faults::Restart("primary");
        // Within a few monitor intervals: writes get a clear error, reads are served.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut fresh = proxy.conn().await;
        let err = fresh
            .query_drop(format!("INSERT INTO {t} VALUES (2)"))
            .await
            .expect_err("a write with the primary down must fail");
        let text = err.to_string();
        eprintln!("write with the primary down: {text}");
        assert!(text.contains("primary"), "unclear error: {text}");
        for _ in 0..20 {
            let n: Option<u64> = fresh
                .query_first(format!("SELECT COUNT(*) FROM {t}"))
                .await
                .expect("a read with the primary down");
            assert_eq!(n, Some(1));
        }
        // The old session too: its next read works.
        let n: Option<u64> = c
            .query_first(format!("SELECT COUNT(*) FROM {t}"))
            .await
            .expect("read in the old session");
        assert_eq!(n, Some(1));
    }
    // And once it is back, writes work again. (Connecting may fail too until then: the
    // login's own reads go to the primary while the replicas, cut off from it, take none.)
    let write = async || {
        let mut c = mysql_async::Conn::new(proxy.opts()).await?;
        c.query_drop(format!("INSERT INTO {t} VALUES (3)")).await
    };
    let what = "writes did not resume";
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        what,
        write,
    )
    .await;
    proxy
        .conn()
        .await
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// Server ids answering `n` reads, each from a new session.
async fn read_sources(proxy: &Proxy, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = proxy.conn().await;
        let id: Option<u64> = c.query_first("SELECT @@server_id").await.expect("read");
        ids.push(id.unwrap_or(0));
        drop(c);
    }
    ids
}

/// Waits until a new session's read lands on `server_id`.
async fn wait_reads_reach(proxy: &Proxy, server_id: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while !read_sources(proxy, 10).await.contains(&server_id) {
        assert!(
            Instant::now() < deadline,
            "reads did not reach server {server_id} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_replication_stopped_takes_no_reads_until_it_runs_again() {
    faults::healthy();
    let proxy = faults::proxy();
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(5)).await;
    // A session that already holds a connection to replica1 must leave it too.
    let mut held = proxy.conn().await;
    loop {
        let id: Option<u64> = held.query_first("SELECT @@server_id").await.expect("read");
        if id == Some(REPLICA1_SERVER_ID) {
            break;
        }
        held = proxy.conn().await;
    }

    faults::topology(&["stop-sql", "replica1"]);
    let _heal = faults::StartSql("replica1");
    // interval 500 ms: two checks and some slack.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids = read_sources(&proxy, 100).await;
    assert!(
        !ids.contains(&REPLICA1_SERVER_ID),
        "reads went to a replica whose SQL thread is stopped: {ids:?}"
    );
    assert!(ids.contains(&3), "reads should still use replica2: {ids:?}");
    for _ in 0..20 {
        let id: Option<u64> = held.query_first("SELECT @@server_id").await.expect("read");
        assert_ne!(
            id,
            Some(REPLICA1_SERVER_ID),
            "the held session stayed on replica1"
        );
    }

    faults::topology(&["start-sql", "replica1"]);
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_max_replica_lag_takes_no_reads_until_it_catches_up() {
    faults::healthy();
    let proxy = faults::proxy();
    let t = unique("lag");
    let mut w = proxy.conn().await;
    w.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(6))"
    ))
    .await
    .expect("create");
    faults::topology(&["wait-sync"]);
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(5)).await;

    // replica1 applies events 5 s late; test.toml's bound is 2 s.
    faults::topology(&["lag", "replica1", "5"]);
    let _heal = faults::Unlag("replica1");
    let started = Instant::now();
    let mut excluded_at = None;
    while started.elapsed() < Duration::from_secs(12) {
        w.query_drop(format!("INSERT INTO {t} (at) VALUES (NOW(6))"))
            .await
            .expect("write");
        let ids = read_sources(&proxy, 5).await;
        if started.elapsed() > Duration::from_secs(5) && !ids.contains(&REPLICA1_SERVER_ID) {
            if excluded_at.is_none() {
                excluded_at = Some(started.elapsed());
            }
        } else if let Some(at) = excluded_at
            && ids.contains(&REPLICA1_SERVER_ID)
        {
            panic!(
                "replica1 took reads again at {:?} after exclusion at {at:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        excluded_at.is_some(),
        "a replica 5 s behind kept taking reads"
    );
    eprintln!("replica1 excluded {excluded_at:?} after the delay started");

    faults::topology(&["unlag", "replica1"]);
    faults::topology(&["wait-sync"]);
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(10)).await;
    w.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Writes then reads its own row `n` times in one session; returns (reads that missed their
/// row, reads answered by a replica).
async fn write_then_read(c: &mut mysql_async::Conn, t: &str, from: u32, n: u32) -> (u32, u32) {
    let (mut missed, mut on_replica) = (0, 0);
    for i in from..from + n {
        c.query_drop(format!("INSERT INTO {t} (id) VALUES ({i})"))
            .await
            .expect("write");
        let row: Option<(u64, u64)> = c
            .query_first(format!(
                "SELECT @@server_id, COUNT(*) FROM {t} WHERE id = {i}"
            ))
            .await
            .expect("read");
        let (server, found) = row.expect("a row");
        if found == 0 {
            missed += 1;
        }
        if server != 1 {
            on_replica += 1;
        }
    }
    (missed, on_replica)
}

/// `routing.read_your_writes_wait`: with every replica behind the session's last write, a
/// read waits that long on one for the write to arrive, then goes to the primary. Both replicas
/// are delayed 2 s (the SQL thread applies an event 1 to 2 s after its commit, by whole
/// seconds): a 6 s wait is answered by a replica once the write is there, a 200 ms wait by the
/// primary without waiting for the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_waits_read_your_writes_wait_for_a_replica_then_takes_the_primary() {
    faults::healthy();
    let with_wait = |wait: &'static str| {
        faults::proxy_with(move |t| {
            t.replace(
                "max_replica_lag = \"2s\"",
                &format!("max_replica_lag = \"60s\"\nread_your_writes_wait = \"{wait}\""),
            )
        })
    };
    let patient = with_wait("6s");
    let hasty = with_wait("200ms");
    let mut c = patient.conn().await;
    let t = common::create_table(&mut c, "rywwait", "id INT PRIMARY KEY").await;
    faults::topology(&["wait-sync"]);
    let primary = server_id(faults::BASE).await;
    faults::topology(&["lag", "replica1", "2"]);
    let _heal1 = faults::Unlag("replica1");
    faults::topology(&["lag", "replica2", "2"]);
    let _heal2 = faults::Unlag("replica2");

    let write_then_timed_read = async |c: &mut mysql_async::Conn, id: u32| {
        c.query_drop(format!("INSERT INTO {t} (id) VALUES ({id})"))
            .await
            .expect("write");
        let started = Instant::now();
        let (server, found): (u64, u64) = c
            .query_first(format!(
                "SELECT @@server_id, COUNT(*) FROM {t} WHERE id = {id}"
            ))
            .await
            .expect("read")
            .expect("a row");
        (server, found, started.elapsed())
    };
    let (server, found, took) = write_then_timed_read(&mut c, 1).await;
    assert_eq!(found, 1, "the read missed the session's own write");
    assert_ne!(
        server, primary,
        "a 6 s wait gave up on the delayed replicas ({took:?})"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(6),
        "the read took {took:?}: it should wait for the delayed replica to apply the write"
    );

    let mut c = hasty.conn().await;
    let (server, found, took) = write_then_timed_read(&mut c, 2).await;
    assert_eq!(found, 1, "the read missed the session's own write");
    assert_eq!(
        server, primary,
        "a 200 ms wait was answered by a delayed replica"
    );
    assert!(
        took < Duration::from_millis(900),
        "the read took {took:?}: it should give up on the replicas after 200 ms"
    );
}

/// A multi-statement or a procedure that commits a write and then fails: the write counts for
/// read-your-writes all the same (the GTID an earlier OK of the response carried, or the one
/// asked for after it). Both replicas are 2 s behind but eligible, so only that protects the
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_before_its_command_failed_is_read_back() {
    faults::healthy();
    let proxy =
        faults::proxy_with(|t| t.replace("max_replica_lag = \"2s\"", "max_replica_lag = \"60s\""));
    let t = unique("rywfail");
    let p = format!("{t}_p");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
        .await
        .expect("create");
    c.query_drop(format!(
        "CREATE PROCEDURE {p}(i INT) BEGIN INSERT INTO {t} VALUES (i); \
         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'after the insert'; END"
    ))
    .await
    .expect("procedure");
    faults::topology(&["wait-sync"]);
    faults::topology(&["lag", "replica1", "2"]);
    let _heal1 = faults::Unlag("replica1");
    faults::topology(&["lag", "replica2", "2"]);
    let _heal2 = faults::Unlag("replica2");
    let count = async |c: &mut mysql_async::Conn, id: u32| -> u64 {
        // The statement after an error goes where the error was (for `SHOW WARNINGS`): one
        // in between, so the read is routed on its own.
        c.query_drop("SELECT 1")
            .await
            .expect("a statement in between");
        c.query_first(format!("SELECT COUNT(*) FROM {t} WHERE id = {id}"))
            .await
            .expect("read")
            .expect("a row")
    };
    for round in 0..3 {
        let id = 10 + round;
        let e = c
            .query_drop(format!(
                "INSERT INTO {t} VALUES ({id}); INSERT INTO {t} VALUES ({id})"
            ))
            .await
            .expect_err("a duplicate key");
        assert_eq!(server_code(&e), Some(1062), "{e}");
        assert_eq!(
            count(&mut c, id).await,
            1,
            "round {round}: the multi-statement's row"
        );
        let id = 100 + round;
        let e = c
            .query_drop(format!("CALL {p}({id})"))
            .await
            .expect_err("the procedure's SIGNAL");
        assert_eq!(server_code(&e), Some(1644), "{e}");
        assert_eq!(
            count(&mut c, id).await,
            1,
            "round {round}: the procedure's row"
        );
    }
    drop(_heal1);
    drop(_heal2);
    c.query_drop(format!("DROP PROCEDURE {p}"))
        .await
        .expect("drop procedure");
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Session commands follow read-your-writes too: `USE` of a schema the session just created,
/// and a `SET` whose value reads the session's own rows, do not run on a replica that lacks
/// them. Both replicas are 2 s behind but eligible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_and_set_after_a_write_see_it() {
    faults::healthy();
    let proxy = faults::proxy_with(|t| {
        with_root_user(t.replace("max_replica_lag = \"2s\"", "max_replica_lag = \"60s\""))
    });
    let db = unique("ryw_use");
    let mut c = mysql_async::Conn::new(proxy.opts().user(Some("root")).pass(Some("root")))
        .await
        .expect("root through rwsplit");
    faults::topology(&["lag", "replica1", "2"]);
    let _heal1 = faults::Unlag("replica1");
    faults::topology(&["lag", "replica2", "2"]);
    let _heal2 = faults::Unlag("replica2");
    for round in 0..3 {
        let name = format!("{db}_{round}");
        c.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        c.query_drop(format!("USE {name}"))
            .await
            .unwrap_or_else(|e| panic!("round {round}: USE of the database just created: {e}"));
        c.query_drop("CREATE TABLE t (i INT); INSERT INTO t VALUES (1), (2), (3)")
            .await
            .expect("rows");
        c.query_drop("SET SESSION sql_select_limit = (SELECT COUNT(*) FROM t)")
            .await
            .expect("set from a table");
        let limit: Option<u64> = c
            .query_first("/* rwsplit:primary */ SELECT @@sql_select_limit")
            .await
            .expect("read the limit");
        assert_eq!(
            limit,
            Some(3),
            "round {round}: the SET read a replica without the rows"
        );
        c.query_drop("SET SESSION sql_select_limit = DEFAULT")
            .await
            .expect("reset the limit");
        c.query_drop(format!("DROP DATABASE {name}"))
            .await
            .expect("drop database");
    }
}

/// With autocommit off, the COMMIT's OK carries the GTID of what it committed: a read after
/// `SET autocommit = 1` sees the row, even when that SET ran on another pooled connection
/// (whose own last GTID says nothing of the session's write). Both replicas are 2 s behind.
/// (This arrangement passes without the fix too: the session's `SET autocommit = 1` got the
/// GTID asked for on a connection that had it. The reviewer's failing one had a second
/// session of the same user take the committing connection at another moment.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_autocommit_off_is_read_back() {
    faults::healthy();
    let proxy =
        faults::proxy_with(|t| t.replace("max_replica_lag = \"2s\"", "max_replica_lag = \"60s\""));
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "ryw_ac0", "id INT PRIMARY KEY").await;
    let mut other = proxy.conn().await;
    faults::topology(&["lag", "replica1", "2"]);
    let _heal1 = faults::Unlag("replica1");
    faults::topology(&["lag", "replica2", "2"]);
    let _heal2 = faults::Unlag("replica2");
    // Restarted with the delay, the replicas take reads again after their next checks.
    wait_reads_reach(&proxy, REPLICA1_SERVER_ID, Duration::from_secs(10)).await;
    for id in 0..5 {
        c.query_drop("SET autocommit = 0")
            .await
            .expect("autocommit off");
        c.query_drop(format!("INSERT INTO {t} VALUES ({id})"))
            .await
            .expect("insert");
        c.query_drop("COMMIT").await.expect("commit");
        // Another session takes the connection that committed, so the next statement of this
        // one runs on another.
        other.query_drop("BEGIN").await.expect("begin");
        other
            .query_drop("/* rwsplit:primary */ SELECT 1")
            .await
            .expect("hold a primary connection");
        c.query_drop("SET autocommit = 1")
            .await
            .expect("autocommit on");
        other.query_drop("COMMIT").await.expect("release");
        let n: Option<u64> = c
            .query_first(format!("SELECT COUNT(*) FROM {t} WHERE id = {id}"))
            .await
            .expect("read back");
        assert_eq!(n, Some(1), "row {id}: the read missed the committed write");
    }
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Long data a session sent to a replica, when routing then moves its reads to the other
/// replica (the first is behind the session's write): the statement's execute is refused,
/// saying the long data was lost, rather than sent to the other replica without its value
/// (where the server reads the parameters from the wrong place). That the first connection
/// goes back to its pool reset is not seen here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_on_a_replica_the_session_moves_from_is_reported_lost() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    faults::healthy();
    let proxy =
        faults::proxy_with(|t| t.replace("max_replica_lag = \"2s\"", "max_replica_lag = \"60s\""));
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "long_moved", "id INT PRIMARY KEY").await;
    faults::topology(&["wait-sync"]);
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let stmt = raw_prepare(&mut raw, "SELECT CONCAT(?, '')").await;
    let long = common::long_data(&stmt, b"abc");
    raw.send_command(&long).await.expect("long data");
    // The read goes to the replica the session holds, with the long data.
    let held = raw
        .query_scalar("SELECT @@server_id")
        .await
        .expect("read")
        .expect("read ok");
    let (lagging, other) = match held.as_deref() {
        Some("2") => ("replica1", "3"),
        Some("3") => ("replica2", "2"),
        other => panic!("the long data's read went to server {other:?}"),
    };
    faults::topology(&["lag", lagging, "2"]);
    let _heal = faults::Unlag(lagging);
    raw.query_scalar(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("write")
        .expect("write ok");
    // Read-your-writes passes over the lagging replica: the read moves to the other one.
    let moved = common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "a read on the other replica",
        async || {
            let sid = raw
                .query_scalar("SELECT @@server_id")
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("error {}", e.code()))?;
            if sid.as_deref() == Some(other) {
                Ok(())
            } else {
                Err(format!("server {sid:?}"))
            }
        },
    )
    .await;
    let () = moved;
    // One iteration, null bitmap 0, types bound (BLOB), no value: it was sent as long data.
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0xfc, 0],
    ]
    .concat();
    let e = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .expect_err("the long data went with the first replica's connection");
    assert_eq!(e.code(), 1210);
    let message = String::from_utf8_lossy(&e.payload);
    assert!(message.contains("long data"), "{message}");
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_sees_every_own_write_and_still_reads_from_replicas() {
    faults::healthy();
    // A lag bound that keeps the delayed replica eligible: only read-your-writes protects us.
    let proxy =
        faults::proxy_with(|t| t.replace("max_replica_lag = \"2s\"", "max_replica_lag = \"60s\""));
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "ryw", "id INT PRIMARY KEY").await;

    faults::topology(&["lag", "replica1", "2"]);
    let _heal = faults::Unlag("replica1");
    let started = Instant::now();
    let (missed, on_replica) = write_then_read(&mut c, &t, 0, 1000).await;
    eprintln!(
        "read-your-writes with replica1 2 s behind: 1000 write+read pairs in {:?}, {missed} \
         missed, {on_replica} reads on replicas",
        started.elapsed()
    );
    assert_eq!(missed, 0, "a read did not see the session's own write");

    // A client without session tracking (the GTID is asked for after each write).
    let mut raw = common::raw_client_at(
        &proxy.addr.to_string(),
        mysql_common::constants::CapabilityFlags::CLIENT_DEPRECATE_EOF,
    )
    .await;
    assert!(
        !raw.capabilities
            .contains(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK)
    );
    let mut untracked_missed = 0;
    for i in 5000..5300 {
        let w = raw
            .query_scalar(&format!("INSERT INTO {t} (id) VALUES ({i})"))
            .await
            .expect("write");
        assert!(w.is_ok());
        let n = raw
            .query_scalar(&format!("SELECT COUNT(*) FROM {t} WHERE id = {i}"))
            .await
            .expect("read")
            .expect("ok");
        if n.as_deref() != Some("1") {
            untracked_missed += 1;
        }
    }
    eprintln!("untracked client: {untracked_missed} of 300 reads missed their write");
    assert_eq!(untracked_missed, 0);
    drop(raw);

    faults::topology(&["unlag", "replica1"]);
    faults::topology(&["wait-sync"]);
    let (missed, on_replica) = write_then_read(&mut c, &t, 1000, 200).await;
    eprintln!("caught up: 200 write+read pairs, {missed} missed, {on_replica} reads on replicas");
    assert_eq!(missed, 0);
    assert!(
        on_replica >= 100,
        "only {on_replica} of 200 reads went to replicas"
    );

    // The same session in eventual mode with both replicas delayed does read stale data: the
    // check above can fail.
    faults::topology(&["lag", "replica2", "2"]);
    let _heal2 = faults::Unlag("replica2");
    faults::topology(&["lag", "replica1", "2"]);
    c.query_drop("SET rwsplit_consistency = 'eventual'")
        .await
        .expect("set mode");
    let (missed, _) = write_then_read(&mut c, &t, 2000, 20).await;
    eprintln!("eventual with both replicas 2 s behind: {missed} of 20 reads missed their write");
    assert!(
        missed > 0,
        "eventual mode never read stale data from a delayed replica"
    );
    c.query_drop("SET rwsplit_consistency = 'strong'")
        .await
        .expect("set mode");
    let (missed, on_replica) = write_then_read(&mut c, &t, 3000, 20).await;
    assert_eq!(
        (missed, on_replica),
        (0, 0),
        "strong reads from the primary"
    );
    let err = c
        .query_drop("SET rwsplit_consistency = 'sometimes'")
        .await
        .expect_err("a bad mode is refused");
    assert!(err.to_string().contains("1231"), "{err}");
    drop(c);
    faults::topology(&["unlag", "replica1"]);
    faults::topology(&["unlag", "replica2"]);
    proxy
        .conn()
        .await
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// The server a fresh session's locking read (routed to the primary) runs on, or the error.
async fn primary_answer(proxy: &Proxy) -> Result<u64, String> {
    let mut c = proxy.conn().await;
    c.query_first::<u64, _>("SELECT @@server_id FOR UPDATE")
        .await
        .map(|v| v.unwrap_or(0))
        .map_err(|e| e.to_string())
}

async fn wait_primary_answer(
    proxy: &Proxy,
    want: impl Fn(&Result<u64, String>) -> bool,
    what: &str,
) {
    let answer = async || match primary_answer(proxy).await {
        got if want(&got) => Ok(()),
        got => Err(format!("still {got:?} after 10 s")),
    };
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        what,
        answer,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica_and_two_writers_refuse_writes() {
    faults::healthy();
    let proxy = faults::proxy();
    assert_eq!(primary_answer(&proxy).await, Ok(1));
    let _heal = faults::Heal(vec![
        vec!["sql", "replica1", "SET GLOBAL read_only = 1"],
        vec!["sql", "primary", "SET GLOBAL read_only = 0"],
        vec!["sql", "replica1", "START SLAVE"],
    ]);
    // A session in a transaction on the old primary when it moves.
    let mut in_trx = proxy.conn().await;
    in_trx.query_drop("BEGIN").await.expect("begin");
    in_trx
        .query_drop("SELECT @@server_id FOR UPDATE")
        .await
        .expect("in transaction");
    // And one holding a named lock there (no transaction).
    let mut locked = proxy.conn().await;
    let got: Option<u32> = locked
        .query_first("SELECT GET_LOCK('failover_probe', 0)")
        .await
        .expect("get_lock");
    assert_eq!(got, Some(1));

    // Failover by hand: the primary turns read-only, replica1 stops replicating and is writable.
    faults::topology(&["sql", "primary", "SET GLOBAL read_only = 1"]);
    faults::topology(&["sql", "replica1", "STOP SLAVE; SET GLOBAL read_only = 0"]);
    wait_primary_answer(
        &proxy,
        |r| *r == Ok(REPLICA1_SERVER_ID),
        "writes to the new primary",
    )
    .await;
    // The open transaction is not moved: its next statement fails, and is retryable.
    let err = in_trx
        .query_drop("SELECT @@server_id FOR UPDATE")
        .await
        .expect_err("a transaction must not move to the new primary");
    eprintln!("transaction across the failover: {err}");
    assert!(err.to_string().contains("1213"), "{err}");
    // The lock stayed on the old primary: the session is told and closed, never carried on to
    // the new primary as if it still held the lock.
    let err = locked
        .query_drop("SELECT IS_USED_LOCK('failover_probe')")
        .await
        .expect_err("a named lock must not silently stay behind");
    eprintln!("named lock across the failover: {err}");
    assert!(
        err.to_string().contains("named locks (GET_LOCK)")
            && err.to_string().contains("closes this connection"),
        "{err}"
    );
    assert!(
        locked
            .query_drop("/* rwsplit:primary */ DO 1")
            .await
            .is_err(),
        "the session went on without its named lock"
    );

    // Two writable backends: writes are refused, reads go on.
    faults::topology(&["sql", "primary", "SET GLOBAL read_only = 0"]);
    wait_primary_answer(
        &proxy,
        |r| matches!(r, Err(e) if e.contains("split brain")),
        "writes refused on split brain",
    )
    .await;
    let mut c = proxy.conn().await;
    let n: Option<u32> = c
        .query_first("SELECT 1")
        .await
        .expect("reads during split brain");
    assert_eq!(n, Some(1));
    // Said loudly: readiness fails and the metric is up.
    let (code, body) = proxy.admin_get("/ready", None).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("split brain"), "{body}");
    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    assert!(
        metrics.lines().any(|l| l == "rwsplit_split_brain 1"),
        "no split-brain metric:\n{metrics}"
    );

    // Back to the original primary.
    faults::topology(&["sql", "replica1", "SET GLOBAL read_only = 1"]);
    faults::topology(&["sql", "replica1", "START SLAVE"]);
    wait_primary_answer(
        &proxy,
        |r| *r == Ok(1),
        "writes back on the original primary",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_go_to_the_replica_with_fewer_statements_in_flight() {
    faults::healthy();
    let proxy = faults::proxy();
    let mut tasks = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // What routing saw before each read, for a failure to show: statements in flight on each
    // replica and whether each could take reads (up, replication within the lag limit).
    let mut seen = Vec::new();
    for started in 1..=6u32 {
        let mut c = proxy.conn().await;
        let snap = proxy.shared.health.snapshot.load();
        seen.push(
            (1..3)
                .map(|i| {
                    let b = &snap.backends[i];
                    let n = proxy.shared.outstanding[i].load(std::sync::atomic::Ordering::Relaxed);
                    format!("r{i}: {n} in flight, up {} lag_ok {}", b.up, b.lag_ok)
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let id: Option<(u64, u64)> = c
                .query_first("SELECT @@server_id, SLEEP(2)")
                .await
                .expect("sleep");
            let _ = tx.send(id.map_or(0, |(s, _)| s));
        }));
        // Let the statement reach its replica before the next session picks one (a fixed pause
        // was too short once on a loaded CI machine).
        let in_flight = || {
            proxy.shared.outstanding[1..3]
                .iter()
                .map(|o| o.load(std::sync::atomic::Ordering::Relaxed))
                .sum::<u32>()
        };
        common::eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            "the long read is in flight on a replica",
            async || match in_flight() >= started {
                true => Ok(()),
                false => Err(format!("{} of {started} in flight", in_flight())),
            },
        )
        .await;
    }
    drop(tx);
    for t in tasks {
        t.await.expect("task");
    }
    let mut ids = Vec::new();
    while let Some(id) = rx.recv().await {
        ids.push(id);
    }
    ids.sort_unstable();
    eprintln!("six concurrent long reads ran on servers {ids:?}");
    assert_eq!(
        ids,
        [2, 2, 2, 3, 3, 3],
        "least outstanding requests should balance them; before each read: {seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_table_measures_lag_below_a_second() {
    faults::healthy();
    let proxy = faults::proxy_with(|t| {
        t.replace(
            "[routing]\n",
            "heartbeat_table = \"rwsplit.heartbeat\"\nheartbeat_interval = \"100ms\"\n\n[routing]\n",
        )
        .replace("max_replica_lag = \"2s\"", "max_replica_lag = \"500ms\"")
        // A backend's own bound beats [routing]'s.
        .replace(
            "address = \"127.0.0.1:3308\"",
            "address = \"127.0.0.1:3308\"\nmax_replica_lag = \"5s\"",
        )
    });
    let replica1_lag = || proxy.shared.health.snapshot.load().status[1].lag_ms;
    // Caught up: some readings fall strictly inside a second, which whole-second
    // Seconds_Behind_Master cannot give.
    let mut sub_second = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !sub_second {
        sub_second = replica1_lag().is_some_and(|ms| ms > 0 && ms < 1000);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sub_second,
        "no sub-second lag reading: {:?}",
        replica1_lag()
    );

    faults::topology(&["lag", "replica1", "1"]);
    let _heal = faults::Unlag("replica1");
    faults::topology(&["lag", "replica2", "1"]);
    let _heal2 = faults::Unlag("replica2");
    let deadline = Instant::now() + Duration::from_secs(8);
    let lagging = |ms: Option<u64>| ms.is_some_and(|ms| (900..3000).contains(&ms));
    loop {
        let snap = proxy.shared.health.snapshot.load();
        let (ms, excluded) = (snap.status[1].lag_ms, snap.status[1].excluded);
        let (ms2, excluded2) = (snap.status[2].lag_ms, snap.status[2].excluded);
        if lagging(ms) && excluded.is_some() && lagging(ms2) {
            eprintln!(
                "1 s delayed: replica1 heartbeat lag {ms:?} ms, excluded: {excluded:?}; \
                 replica2 (own bound 5 s) {ms2:?} ms, excluded: {excluded2:?}"
            );
            assert!(
                excluded2.is_none(),
                "replica2 was excluded within its own max_replica_lag: {excluded2:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {ms:?} ms, excluded {excluded:?}; replica2 {ms2:?} ms, excluded {excluded2:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A heartbeat row nobody writes only ages: while the primary is read-only (rwsplit holds
/// the heartbeat back there), lag falls back to GTID positions and replica status, and caught-up
/// replicas keep their reads rather than read as ever further behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_reads_while_the_heartbeat_is_not_written() {
    faults::healthy();
    let proxy = faults::proxy_with(|t| {
        t.replace(
            "[routing]\n",
            "heartbeat_table = \"rwsplit.heartbeat\"\nheartbeat_interval = \"100ms\"\n\n[routing]\n",
        )
        .replace("max_replica_lag = \"2s\"", "max_replica_lag = \"1s\"")
    });
    let admitted = |i: usize| {
        proxy.shared.health.snapshot.load().status[i]
            .excluded
            .is_none()
    };
    let measured = |i: usize| {
        proxy.shared.health.snapshot.load().status[i]
            .lag_ms
            .is_some()
    };
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "replicas measured and admitted to begin with",
        async || match measured(1) && measured(2) && admitted(1) && admitted(2) {
            true => Ok(()),
            false => Err("not yet"),
        },
    )
    .await;
    faults::topology(&["sql", "primary", "SET GLOBAL read_only = 1"]);
    let _writable = faults::Heal(vec![vec!["sql", "primary", "SET GLOBAL read_only = 0"]]);
    // Three times the bound: a row read as lag would have excluded both by now.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let snap = proxy.shared.health.snapshot.load();
        assert!(
            admitted(1) && admitted(2),
            "a replica was excluded while the heartbeat was held back: {:?}",
            snap.status
        );
        drop(snap);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reload_that_moves_a_backend_moves_its_monitoring_too() {
    faults::healthy();
    let proxy = faults::proxy();
    let (r1, r2) = (faults::BASE + 1, faults::BASE + 2);
    let up = |id: usize| proxy.shared.health.snapshot.load().backends[id].up;
    assert!(up(2), "replica2 up to begin with");
    // replica2's entry now names replica1's server; then replica2's server dies. The monitor
    // must check the entry where it points now, not where it pointed at startup (a monitor
    // measuring the old server could route reads to a lagging new one).
    let mut new = test_config(|t| {
        t.replace("127.0.0.1:3306", &format!("127.0.0.1:{}", faults::BASE))
            .replace("127.0.0.1:3307", &format!("127.0.0.1:{r1}"))
            // The same server by another name: one address listed twice is refused.
            .replace("127.0.0.1:3308", &format!("localhost:{r1}"))
    });
    let running = proxy.shared.config().clone();
    new.proxy.listen = running.proxy.listen;
    new.admin.listen = running.admin.listen;
    rwsplit::reload::apply(&proxy.shared, new)
        .await
        .expect("reload");
    faults::topology(&["kill", "replica2"]);
    // fall = 2 checks every 500 ms: the old address would be down within about 1.5 s.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            up(2),
            "replica2's entry went down with the server at its old address {r2}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A primary whose global `autocommit` is off and whose `sql_mode` has NO_BACKSLASH_ESCAPES:
/// a session through rwsplit starts as a direct connection would, and says so in its login's
/// status flags (drivers escape the values they quote themselves by that flag). With
/// autocommit off, its first statement opens a transaction, which stays on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_starts_with_the_primarys_autocommit_and_backslash_setting() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::packets::{
        SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_NO_BACKSLASH_ESCAPES,
    };
    faults::healthy();
    let mut root = direct(faults::BASE).await;
    let mode: Option<String> = root
        .query_first("SELECT @@global.sql_mode")
        .await
        .expect("sql_mode");
    let restore: &'static str = Box::leak(
        format!(
            "SET GLOBAL sql_mode = '{}', GLOBAL autocommit = 1",
            mode.unwrap_or_default()
        )
        .into_boxed_str(),
    );
    let _heal = faults::Heal(vec![vec!["sql", "primary", restore]]);
    root.query_drop(
        "SET GLOBAL sql_mode = CONCAT(@@global.sql_mode, ',NO_BACKSLASH_ESCAPES'), \
         GLOBAL autocommit = 0",
    )
    .await
    .expect("set the globals");
    let proxy = faults::proxy();
    let health = proxy.shared.health.clone();
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the primary's defaults read",
        async || match health.session_status() & SERVER_STATUS_NO_BACKSLASH_ESCAPES {
            0 => Err("not yet"),
            _ => Ok(()),
        },
    )
    .await;
    let raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    assert_eq!(
        raw.status & SERVER_STATUS_AUTOCOMMIT,
        0,
        "{:#x}",
        raw.status
    );
    assert_ne!(
        raw.status & SERVER_STATUS_NO_BACKSLASH_ESCAPES,
        0,
        "{:#x}",
        raw.status
    );
    drop(raw);

    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "session_defaults", "id INT").await;
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    let count = format!("SELECT COUNT(*) FROM app.{t}");
    let seen: Option<i64> = root.query_first(&count).await.expect("count");
    assert_eq!(seen, Some(0), "committed without a COMMIT");
    let mine: Option<i64> = c.query_first(&count).await.expect("count");
    assert_eq!(mine, Some(1), "the session's read left its transaction");
    c.query_drop("COMMIT").await.expect("commit");
    let seen: Option<i64> = root.query_first(&count).await.expect("count");
    assert_eq!(seen, Some(1));
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// The server counts every connection's prepared statements against one limit
/// (`max_prepared_stmt_count`). When a statement rwsplit prepares again (on another connection,
/// or after a `SET` changed how it parses) meets that limit, the statements its connection
/// keeps for reuse, which the client had closed, are closed and the prepare tried again:
/// the client's execute works, as it would on its own connection to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_at_the_servers_statement_limit_gives_back_the_kept_ones() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    faults::healthy();
    let mut root = direct(faults::BASE).await;
    let limit: Option<u64> = root
        .query_first("SELECT @@global.max_prepared_stmt_count")
        .await
        .expect("limit");
    let restore: &'static str = Box::leak(
        format!(
            "SET GLOBAL max_prepared_stmt_count = {}",
            limit.unwrap_or(16_382)
        )
        .into_boxed_str(),
    );
    let _heal = faults::Heal(vec![vec!["sql", "primary", restore]]);
    let proxy =
        faults::proxy_with(|t| pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1"));
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let stmts: Vec<[u8; 4]> = {
        let mut v = Vec::new();
        for n in 1..=4 {
            v.push(
                common::raw_prepare(&mut raw, &format!("/* rwsplit:primary */ SELECT {n}")).await,
            );
        }
        v
    };
    // The server is now at its limit, with the four statements the one primary connection has.
    let (_, in_use): (String, u64) = root
        .query_first("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
        .await
        .expect("count")
        .expect("row");
    root.query_drop(format!("SET GLOBAL max_prepared_stmt_count = {in_use}"))
        .await
        .expect("lower the limit");
    for s in &stmts[1..] {
        let close = [&[Command::StmtClose as u8][..], s].concat();
        raw.send_command(&close).await.expect("close");
    }
    // Parsed in another sql_mode now: prepared again on the primary connection.
    raw.run_internal(b"\x03SET SESSION sql_mode = 'ANSI'", K::Query)
        .await
        .expect("set")
        .expect("set ok");
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmts[0],
        &[0, 1, 0, 0, 0],
    ]
    .concat();
    let o = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .unwrap_or_else(|e| panic!("execute refused: {}", e.code()));
    assert_eq!(o.rows, 1);
}
