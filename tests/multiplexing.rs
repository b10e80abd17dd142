//! Connection multiplexing: sessions share backend connections between statements, each
//! keeping its own state, and stay on one connection only while something pins them.

mod common;

use std::time::{Duration, Instant};

use common::{
    Proxy, direct, pool_settings, primary_thread, raw_client, server_code, unique, wait_sync,
};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

/// One connection to each backend: sessions can only take turns.
fn one_connection_per_server() -> Proxy {
    Proxy::start_with(|t| pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1"))
}

/// What the session's `/sessions` entry says pins it, once it settles (the proxy releases or
/// keeps its connection just after sending the response).
async fn wait_pinned(proxy: &Proxy, id: u32, want: Option<&str>) {
    let what = format!("session {id}");
    let pinned = async || {
        let sessions = proxy.shared.sessions.lock().expect("sessions");
        let now = sessions
            .get(&id)
            .and_then(|i| i.lock().expect("info").pinned);
        if now == want {
            Ok(())
        } else {
            Err(format!("pinned {now:?}, want {want:?}"))
        }
    };
    common::eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        &what,
        pinned,
    )
    .await;
}

type Settings = (String, String, String, Option<String>, String);

async fn settings(c: &mut Conn) -> Settings {
    let row: Row = c
        .query_first(
            "SELECT @@session.sql_mode, @@session.time_zone, CAST(@@session.autocommit AS CHAR), \
             DATABASE(), @@session.character_set_client",
        )
        .await
        .expect("settings")
        .expect("row");
    let (a, b, c2, d, e): Settings = mysql_async::from_row(row);
    (a, b, c2, d, e)
}

#[tokio::test]
async fn an_idle_connection_past_its_idle_timeout_is_not_lent_again() {
    let proxy = Proxy::start_with(|t| pool_settings(t, "idle_timeout = \"300ms\""));
    let mut c = proxy.conn().await;
    let first = primary_thread(&mut c).await;
    // Back to back: the connection just returned is lent again.
    assert_eq!(primary_thread(&mut c).await, first);
    // Idle past its timeout: closed, by the checkout or by the reaper, whichever comes first.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let later = primary_thread(&mut c).await;
    assert_ne!(
        later, first,
        "a connection idle past idle_timeout was reused"
    );
}

/// `pool.max_lifetime`: a connection that old is not lent again, however busy it is, but one
/// is never taken from a transaction that outlives it: it goes after the COMMIT.
#[tokio::test]
async fn a_connection_past_its_max_lifetime_is_retired_but_never_mid_transaction() {
    let proxy = Proxy::start_with(|t| pool_settings(t, "max_lifetime = \"1s\""));
    let mut c = proxy.conn().await;
    let first = primary_thread(&mut c).await;
    // Busy all along (never idle long): still retired once a second old.
    let started = std::time::Instant::now();
    let mut seen = vec![first];
    while started.elapsed() < Duration::from_millis(1600) {
        let id = primary_thread(&mut c).await;
        if seen.last() != Some(&id) {
            seen.push(id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 2,
        "a connection past max_lifetime was kept: {seen:?}"
    );
    // A transaction keeps its connection past the lifetime.
    c.query_drop("BEGIN").await.expect("begin");
    let in_trx = primary_thread(&mut c).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        primary_thread(&mut c).await,
        in_trx,
        "the transaction moved"
    );
    c.query_drop("COMMIT").await.expect("commit");
    assert_ne!(
        primary_thread(&mut c).await,
        in_trx,
        "kept past max_lifetime after COMMIT"
    );
}

/// How a `stalling_forwarder` treats the connections it takes once `stall` is set.
#[derive(Clone, Copy)]
enum Stall {
    /// Never answered: a server whose listener still accepts but whose threads are stuck.
    Silent,
    /// Through the login (the server's greeting, the client's login packet and the server's
    /// answer), then heard no more: a server that logs a connection in and then hangs. Only
    /// for a login of one round trip (`mysql_native_password`, as on this topology): an auth
    /// switch's second packet would be swallowed and the login itself would stall.
    AfterLogin,
}

/// A TCP forwarder to `to` that, once `stall` is set, stalls new connections as `how` says;
/// connections made before go on working.
async fn stalling_forwarder(
    to: &'static str,
    how: Stall,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the forwarder");
    let addr = listener.local_addr().expect("forwarder address");
    let stall = std::sync::Arc::new(AtomicBool::new(false));
    let stalled = stall.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let stalling = stalled.load(Ordering::SeqCst);
            if stalling && matches!(how, Stall::Silent) {
                held.push(client);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                if !stalling {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut head = [0u8; 4];
                if cr.read_exact(&mut head).await.is_ok() {
                    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
                    let mut body = vec![0u8; len];
                    if cr.read_exact(&mut body).await.is_ok() {
                        let _ = sw.write_all(&head).await;
                        let _ = sw.write_all(&body).await;
                    }
                }
                // Whatever the client sends after its login is swallowed.
                let _ = tokio::io::copy(&mut cr, &mut tokio::io::sink()).await;
                drop(sw);
                let _ = down.await;
            });
        }
    });
    (addr, stall)
}

/// `pool.connect_timeout`: a replica that accepts connections but never greets them costs a
/// read the timeout, not the checkout timeout or forever; the read goes to the primary, and
/// the replica is marked down at once so the next reads do not wait on it.
#[tokio::test]
async fn a_replica_that_never_answers_a_new_connection_costs_one_read_its_connect_timeout() {
    let (forwarder, stall) = stalling_forwarder("127.0.0.1:3307", Stall::Silent).await;
    stalled_replica_costs_one_read_its_connect_timeout(forwarder, stall).await;
}

/// The same for a replica that logs a new connection in and then hangs: turning session
/// tracking on is part of connecting and within `pool.connect_timeout` too.
#[tokio::test]
async fn a_replica_that_hangs_after_the_login_costs_one_read_its_connect_timeout() {
    let (forwarder, stall) = stalling_forwarder("127.0.0.1:3307", Stall::AfterLogin).await;
    stalled_replica_costs_one_read_its_connect_timeout(forwarder, stall).await;
}

async fn stalled_replica_costs_one_read_its_connect_timeout(
    forwarder: std::net::SocketAddr,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let proxy = Proxy::start_with(|t| {
        t.replace(
            "connect_timeout = \"1s\"",
            "connect_timeout = \"300ms\"\nidle_timeout = \"100ms\"",
        )
        .replace("127.0.0.1:3307", &forwarder.to_string())
        .replace(
            "address = \"127.0.0.1:3308\"",
            "address = \"127.0.0.1:3308\"\nweight = 0",
        )
    });
    let replica1_up = || proxy.shared.health.snapshot.load().backends[1].up;
    common::eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "replica1 checked and up",
        async || match proxy.shared.health.checked_once() && replica1_up() {
            true => Ok(()),
            false => Err("not yet"),
        },
    )
    .await;
    let mut c = proxy.conn().await;
    let replica1 = common::server_id(3307).await;
    let primary = common::server_id(3306).await;
    let read = async |c: &mut Conn| -> (u64, Duration) {
        let t = Instant::now();
        let id: u64 =
            tokio::time::timeout(Duration::from_secs(10), c.query_first("SELECT @@server_id"))
                .await
                .expect("a read waited for a stalled replica past any timeout")
                .expect("read")
                .expect("row");
        (id, t.elapsed())
    };
    assert_eq!(read(&mut c).await.0, replica1, "reads go to replica1");
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    // Past idle_timeout: the pool's connection to replica1 is not lent again, a new one is due.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (id, took) = read(&mut c).await;
    assert_eq!(
        id, primary,
        "the read went to the primary after replica1 timed out"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "the read took {took:?}: it should wait about connect_timeout (300ms) for replica1"
    );
    assert!(!replica1_up(), "replica1 was not marked down");
    let (id, took) = read(&mut c).await;
    assert_eq!(id, primary);
    assert!(
        took < Duration::from_millis(250),
        "the next read waited on replica1 again ({took:?})"
    );
}

#[tokio::test]
async fn two_sessions_taking_turns_on_one_connection_per_server_keep_their_own_state() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+01:00'")
        .await
        .expect("set a");
    a.query_drop("SET autocommit = 0")
        .await
        .expect("autocommit a");
    a.query_drop("COMMIT").await.expect("commit a");
    b.query_drop("SET SESSION sql_mode = 'NO_ZERO_DATE'")
        .await
        .expect("set b");
    b.query_drop("SET time_zone = '-03:00'")
        .await
        .expect("tz b");
    b.query_drop("SET NAMES latin1").await.expect("names b");
    b.query_drop("USE information_schema").await.expect("use b");
    let want_a: Settings = (
        "ANSI_QUOTES".into(),
        "+01:00".into(),
        "OFF".into(),
        Some("app".into()),
        "utf8mb4".into(),
    );
    let want_b: Settings = (
        "NO_ZERO_DATE".into(),
        "-03:00".into(),
        "ON".into(),
        Some("information_schema".into()),
        "latin1".into(),
    );
    let sa = a.prep("SELECT ? + 1").await.expect("prepare a");
    let sb = b.prep("SELECT CONCAT(?, 'b')").await.expect("prepare b");
    let mut threads = std::collections::HashSet::new();
    for round in 0..10i64 {
        assert_eq!(settings(&mut a).await, want_a, "round {round}");
        a.query_drop("COMMIT").await.expect("commit");
        assert_eq!(settings(&mut b).await, want_b, "round {round}");
        let x: Option<i64> = a.exec_first(&sa, (round,)).await.expect("exec a");
        assert_eq!(x, Some(round + 1));
        a.query_drop("COMMIT").await.expect("commit");
        let y: Option<String> = b.exec_first(&sb, (round,)).await.expect("exec b");
        assert_eq!(y, Some(format!("{round}b")));
        threads.insert(primary_thread(&mut a).await);
        a.query_drop("COMMIT").await.expect("commit");
        threads.insert(primary_thread(&mut b).await);
    }
    // Both sessions ran on the one primary connection the pool may open.
    assert_eq!(threads.len(), 1, "{threads:?}");
    let stats = proxy.shared.pools.stats();
    assert!(stats.iter().all(|s| s.open <= 1), "{stats:?}");
}

#[tokio::test]
async fn last_insert_id_follows_the_session_across_shared_connections() {
    let proxy = one_connection_per_server();
    let t = unique("mux_lid");
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    ))
    .await
    .expect("create");
    a.query_drop(format!("INSERT INTO {t} (v) VALUES (1)"))
        .await
        .expect("insert a");
    let a_id = a.last_insert_id().expect("id");
    a.query_drop("SELECT 1").await.expect("select");
    let mut b_id = 0;
    for _ in 0..3 {
        b.query_drop(format!("INSERT INTO {t} (v) VALUES (2)"))
            .await
            .expect("insert b");
        b_id = b.last_insert_id().expect("id");
        b.query_drop("SELECT 1").await.expect("select");
    }
    assert_ne!(a_id, b_id);
    let got: Option<u64> = a
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("lid a");
    assert_eq!(got, Some(a_id));
    let got: Option<u64> = b
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("lid b");
    assert_eq!(got, Some(b_id));
}

#[tokio::test]
async fn each_pin_holds_while_its_state_lives_and_ends_with_it() {
    let proxy = Proxy::start();
    let t = unique("mux_pin");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    ))
    .await
    .expect("create");
    wait_pinned(&proxy, c.id(), None).await;

    c.query_drop("BEGIN").await.expect("begin");
    wait_pinned(&proxy, c.id(), Some("transaction")).await;
    c.query_drop(format!("INSERT INTO {t} (v) VALUES (1)"))
        .await
        .expect("insert");
    c.query_drop("COMMIT").await.expect("commit");
    wait_pinned(&proxy, c.id(), None).await;

    // ROW_COUNT() and FOUND_ROWS() need the connection that ran the statement before.
    c.query_drop(format!("INSERT INTO {t} (v) VALUES (2), (3)"))
        .await
        .expect("insert");
    wait_pinned(&proxy, c.id(), Some("row_count")).await;
    let n: Option<i64> = c
        .query_first("SELECT ROW_COUNT()")
        .await
        .expect("row_count");
    assert_eq!(n, Some(2));
    wait_pinned(&proxy, c.id(), None).await;
    wait_sync();
    c.query_drop(format!("SELECT SQL_CALC_FOUND_ROWS * FROM {t} LIMIT 1"))
        .await
        .expect("calc");
    wait_pinned(&proxy, c.id(), Some("found_rows")).await;
    let n: Option<i64> = c.query_first("SELECT FOUND_ROWS()").await.expect("found");
    assert_eq!(n, Some(3));
    wait_pinned(&proxy, c.id(), None).await;

    // SHOW WARNINGS is about the last statement that raised them, on its connection, until
    // one opens a table (reading them leaves them).
    c.query_drop("SELECT CAST('12abc' AS SIGNED)")
        .await
        .expect("warning");
    wait_pinned(&proxy, c.id(), Some("warnings")).await;
    let w: Vec<Row> = c.query("SHOW WARNINGS").await.expect("show warnings");
    assert_eq!(w.len(), 1);
    wait_pinned(&proxy, c.id(), Some("warnings")).await;
    c.query_drop(format!("SELECT * FROM {t}"))
        .await
        .expect("a table");
    wait_pinned(&proxy, c.id(), None).await;

    c.query_drop(format!("LOCK TABLES {t} READ"))
        .await
        .expect("lock");
    wait_pinned(&proxy, c.id(), Some("lock_tables")).await;
    c.query_drop("UNLOCK TABLES").await.expect("unlock");
    wait_pinned(&proxy, c.id(), None).await;

    let got: Option<i64> = c
        .query_first("SELECT GET_LOCK('mux_pin_lock', 1)")
        .await
        .expect("get_lock");
    assert_eq!(got, Some(1));
    wait_pinned(&proxy, c.id(), Some("get_lock")).await;
    c.query_drop("SELECT RELEASE_LOCK('mux_pin_lock')")
        .await
        .expect("release");
    wait_pinned(&proxy, c.id(), None).await;
    // The same in a write.
    c.query_drop(format!(
        "UPDATE {t} SET v = GET_LOCK('mux_pin_lock', 1) WHERE id = 1"
    ))
    .await
    .expect("update get_lock");
    wait_pinned(&proxy, c.id(), Some("get_lock")).await;
    c.query_drop("DO RELEASE_LOCK('mux_pin_lock')")
        .await
        .expect("do release");
    wait_pinned(&proxy, c.id(), None).await;
    // The same by DO, which evaluates and discards.
    c.query_drop("DO GET_LOCK('mux_pin_lock', 1)")
        .await
        .expect("do get_lock");
    wait_pinned(&proxy, c.id(), Some("get_lock")).await;
    c.query_drop("DO RELEASE_LOCK('mux_pin_lock')")
        .await
        .expect("do release");
    wait_pinned(&proxy, c.id(), None).await;

    // State rwsplit cannot replay lives until the client resets the session.
    for (sql, reason, check) in [
        (
            format!("CREATE TEMPORARY TABLE {t}_tmp (x INT)"),
            "temporary_table",
            format!("SELECT COUNT(*) FROM {t}_tmp"),
        ),
        (
            "SET @mux_var = 41".to_string(),
            "user_variable",
            "SELECT @mux_var + 1".to_string(),
        ),
        (
            "PREPARE mux_stmt FROM 'SELECT 42'".to_string(),
            "sql_prepare",
            "EXECUTE mux_stmt".to_string(),
        ),
        (
            "SELECT LAST_INSERT_ID(77)".to_string(),
            "last_insert_id_expr",
            "SELECT LAST_INSERT_ID()".to_string(),
        ),
    ] {
        c.query_drop(&sql).await.expect("pinning statement");
        wait_pinned(&proxy, c.id(), Some(reason)).await;
        for _ in 0..3 {
            c.query_drop(&check).await.expect("state still there");
        }
        wait_pinned(&proxy, c.id(), Some(reason)).await;
        c.reset().await.expect("reset");
        wait_pinned(&proxy, c.id(), None).await;
    }
    // A role's privileges live on the connection that ran SET ROLE; reads stay there too.
    let role = unique("mux_role");
    let mut root = direct(3306).await;
    root.query_drop(format!("CREATE ROLE {role}"))
        .await
        .expect("create role");
    root.query_drop(format!("GRANT {role} TO 'app'@'%'"))
        .await
        .expect("grant role");
    wait_sync();
    c.query_drop(format!("SET ROLE {role}"))
        .await
        .expect("set role");
    wait_pinned(&proxy, c.id(), Some("role")).await;
    for _ in 0..3 {
        let r: Option<String> = c
            .query_first("SELECT CURRENT_ROLE()")
            .await
            .expect("current role");
        assert_eq!(r.as_deref(), Some(role.as_str()));
    }
    c.reset().await.expect("reset");
    wait_pinned(&proxy, c.id(), None).await;
    root.query_drop(format!("DROP ROLE {role}"))
        .await
        .expect("drop role");

    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    for reason in [
        "transaction",
        "row_count",
        "user_variable",
        "get_lock",
        "role",
    ] {
        let line = format!("rwsplit_session_pins_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
}

/// The session's time zone, read on the primary or (as a plain read) a replica.
async fn tz(c: &mut Conn, primary: bool) -> String {
    let sql = if primary {
        "/* rwsplit:primary */ SELECT @@session.time_zone"
    } else {
        "SELECT @@session.time_zone"
    };
    c.query_first(sql).await.expect("time_zone").expect("row")
}

/// `SET profiling = 1` (SHOW PROFILES lists the connection's statements) and a client's own
/// `session_track_state_change` (what rwsplit relies on to see state it cannot replay) keep the
/// session on its connections until a reset.
#[tokio::test]
async fn sets_of_the_connections_own_history_keep_the_session_on_its_connections() {
    let proxy = one_connection_per_server();
    for set in ["SET profiling = 1", "SET session_track_state_change = OFF"] {
        let mut c = proxy.conn().await;
        c.query_drop(set).await.expect("set");
        wait_pinned(&proxy, c.id(), Some("untracked_state")).await;
        c.reset().await.expect("reset");
        wait_pinned(&proxy, c.id(), None).await;
        c.disconnect().await.expect("disconnect");
    }
}

/// `LASTVAL(s)` is the last value this connection took from `s`: after the session's
/// `NEXTVAL(s)` it keeps its primary connection until its next statement there, so another
/// session's `NEXTVAL` in between cannot change what it reads, also with a read on a replica
/// in between.
#[tokio::test]
async fn lastval_after_nextval_is_the_sessions_own() {
    lastval_is_the_sessions_own(false).await;
}

#[tokio::test]
async fn lastval_after_a_replica_read_is_still_the_sessions_own() {
    lastval_is_the_sessions_own(true).await;
}

/// Not for ever: a session that only reads after its `NEXTVAL` gives the primary connection
/// back after a few reads.
#[tokio::test]
async fn a_sequences_connection_is_not_kept_past_many_reads() {
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_seq_many").await;
    let s = unique("mux_seq3");
    let mut a = proxy.conn().await;
    a.query_drop(format!("CREATE SEQUENCE {s}"))
        .await
        .expect("create");
    a.query_drop(format!("SELECT NEXTVAL({s})"))
        .await
        .expect("nextval");
    for _ in 0..10 {
        a.query_drop(format!("SELECT COUNT(*) FROM {t}"))
            .await
            .expect("read");
    }
    wait_pinned(&proxy, a.id(), None).await;
    a.query_drop(format!("DROP SEQUENCE {s}"))
        .await
        .expect("drop");
}

async fn lastval_is_the_sessions_own(read_between: bool) {
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_seq_read").await;
    let s = unique("mux_seq");
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop(format!("CREATE SEQUENCE {s}"))
        .await
        .expect("create");
    let first: Option<i64> = a
        .query_first(format!("SELECT NEXTVAL({s})"))
        .await
        .expect("a's nextval");
    assert_eq!(first, Some(1));
    wait_pinned(&proxy, a.id(), Some("sequence")).await;
    if read_between {
        let n: Option<i64> = a
            .query_first(format!("SELECT COUNT(*) FROM {t}"))
            .await
            .expect("a's read");
        assert_eq!(n, Some(5));
    }
    let next = format!("SELECT NEXTVAL({s})");
    let other = tokio::spawn(async move {
        let v: Option<i64> = b.query_first(next).await.expect("b's nextval");
        (b, v)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last: Option<i64> = a
        .query_first(format!("SELECT LASTVAL({s})"))
        .await
        .expect("a's lastval");
    assert_eq!(last, Some(1), "a read another session's value");
    let (mut b, v) = other.await.expect("join");
    assert_eq!(v, Some(2));
    let last: Option<i64> = b
        .query_first(format!("SELECT LASTVAL({s})"))
        .await
        .expect("b's lastval");
    assert_eq!(last, Some(2));
    a.query_drop(format!("DROP SEQUENCE {s}"))
        .await
        .expect("drop");
}

/// A connection's warnings are its last statement's: another session given the connection
/// must not see them (`SHOW WARNINGS`, `@@warning_count` as its first statement show none).
#[tokio::test]
async fn a_sessions_warnings_are_not_shown_to_the_next_one() {
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1").replace(
            "address = \"127.0.0.1:3308\"",
            "address = \"127.0.0.1:3308\"\nweight = 0",
        )
    });
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_warn", "id INT PRIMARY KEY").await;
    wait_sync();
    // A warning on replica1's one connection, then a write: a's reads are no longer held there.
    let v: Option<i64> = a
        .query_first("SELECT CONVERT('secret_of_a', SIGNED)")
        .await
        .expect("a's read");
    assert_eq!(v, Some(0));
    wait_pinned(&proxy, a.id(), Some("warnings")).await;
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("a's write");
    a.query_drop("SELECT 1").await.expect("a's read");
    let mut b = proxy.conn().await;
    let warnings: Vec<Row> = b.query("SHOW WARNINGS").await.expect("b's SHOW WARNINGS");
    assert!(warnings.is_empty(), "b saw a's warnings: {warnings:?}");
    let count: Option<u64> = b
        .query_first("SELECT @@warning_count")
        .await
        .expect("b's count");
    assert_eq!(count, Some(0));
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Warnings and errors stay readable until a statement that opens a table or raises its own, as
/// on the server: reading them again, `SELECT 1`, `SELECT @@x`, `SET NAMES` or a transaction
/// boundary in between leaves them (they were read from a connection given back meanwhile).
#[tokio::test]
async fn warnings_stay_readable_past_statements_that_leave_them() {
    async fn shown(c: &mut Conn, sql: &str) -> Vec<u16> {
        let rows: Vec<(String, u16, String)> = c.query(sql).await.expect(sql);
        rows.into_iter().map(|(_, code, _)| code).collect()
    }
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "diag", "id INT PRIMARY KEY").await;
    // A warning on a read.
    let v: Option<i64> = c
        .query_first("SELECT CAST('12abc' AS SIGNED)")
        .await
        .expect("cast");
    assert_eq!(v, Some(12));
    assert_eq!(shown(&mut c, "SHOW WARNINGS").await, [1292]);
    assert_eq!(shown(&mut c, "SHOW WARNINGS").await, [1292], "read again");
    for between in [
        "SELECT 1",
        "SELECT @@autocommit",
        "SET NAMES utf8mb4",
        "BEGIN",
        "COMMIT",
    ] {
        c.query_drop(between).await.expect(between);
        assert_eq!(
            shown(&mut c, "SHOW WARNINGS").await,
            [1292],
            "after {between}"
        );
    }
    let count: Option<u64> = c
        .query_first("SELECT @@warning_count")
        .await
        .expect("count");
    assert_eq!(count, Some(1));
    // A statement that reads a table clears them.
    c.query_drop(format!("SELECT * FROM {t}"))
        .await
        .expect("read");
    assert!(shown(&mut c, "SHOW WARNINGS").await.is_empty());
    // A note on the primary, and an error.
    c.query_drop(format!("DROP TABLE IF EXISTS {t}_none"))
        .await
        .expect("drop if exists");
    c.query_drop("SELECT 1").await.expect("no table");
    assert_eq!(shown(&mut c, "SHOW WARNINGS").await, [1051]);
    c.query_drop("SELECT * FROM no_such_table_xyz")
        .await
        .expect_err("error");
    c.query_drop("SELECT 1").await.expect("no table");
    assert_eq!(shown(&mut c, "SHOW ERRORS").await, [1146]);
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Diagnostics read and made through prepared statements (PDO with native prepares sends
/// `SHOW WARNINGS` so; DBD with `server_prepare`) answer as directly: a prepared `SHOW
/// WARNINGS` or `@@warning_count` reads the last statement's, wherever that ran, and a prepare
/// that failed is the error `SHOW ERRORS` shows next.
#[tokio::test]
async fn prepared_statements_read_and_make_diagnostics_as_directly() {
    async fn codes(c: &mut Conn, sql: &str, prepared: bool) -> Vec<u16> {
        let rows: Vec<(String, u16, String)> = if prepared {
            c.exec(sql, ()).await.expect(sql)
        } else {
            c.query(sql).await.expect(sql)
        };
        rows.into_iter().map(|(_, code, _)| code).collect()
    }
    async fn run(c: &mut Conn, t: &str) -> Vec<String> {
        let mut seen = Vec::new();
        // Warnings of a write, on the primary.
        c.query_drop(format!(
            "INSERT IGNORE INTO {t} VALUES (1, 1000), (1, 5), (2, NULL)"
        ))
        .await
        .expect("insert ignore");
        seen.push(format!("{:?}", codes(c, "SHOW WARNINGS", true).await));
        let n: Option<u64> = c
            .exec_first("SELECT @@warning_count", ())
            .await
            .expect("count");
        seen.push(format!("{n:?}"));
        // A warning of a read (a replica through rwsplit).
        let v: Option<i64> = c
            .query_first("SELECT CAST('12abc' AS SIGNED)")
            .await
            .expect("cast");
        seen.push(format!("{v:?}"));
        seen.push(format!("{:?}", codes(c, "SHOW WARNINGS", true).await));
        // A prepare the server refuses: its error is the session's last.
        let e = c
            .prep("SELECT * FROM no_such_table_diag")
            .await
            .expect_err("no such table");
        seen.push(format!("{:?}", common::server_code(&e)));
        seen.push(format!("{:?}", codes(c, "SHOW ERRORS", false).await));
        seen
    }
    let proxy = Proxy::start();
    proxy.replica_ready().await;
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "pdiag", "id INT PRIMARY KEY, v TINYINT NOT NULL").await;
    let mut d = direct(common::PRIMARY_PORT).await;
    d.query_drop("USE app").await.expect("use");
    let direct_seen = run(&mut d, &t).await;
    c.query_drop(format!("DELETE FROM {t}"))
        .await
        .expect("empty");
    let proxied = run(&mut c, &t).await;
    assert_eq!(proxied, direct_seen);
    assert_eq!(direct_seen[0], "[1264, 1062, 1048]", "{direct_seen:?}");
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Another session's warnings never show: a connection lent with warnings a session left
/// there (it moved on to a replica) is cleared before a `SHOW WARNINGS` of a session that has
/// run only statements that leave diagnostics alone on it (`BEGIN`).
#[tokio::test]
async fn warnings_left_on_a_lent_connection_are_not_shown() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_warn_lent", "id INT PRIMARY KEY").await;
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    a.query_drop(format!("INSERT IGNORE INTO {t} VALUES (1)"))
        .await
        .expect("a duplicate, ignored with a warning");
    wait_sync();
    // A table read elsewhere: a's warnings are gone for a, and its primary connection goes back.
    a.query_drop(format!("SELECT * FROM {t}"))
        .await
        .expect("read");
    wait_pinned(&proxy, a.id(), None).await;
    let mut b = proxy.conn().await;
    b.query_drop("BEGIN").await.expect("begin");
    let shown: Vec<Row> = b.query("SHOW WARNINGS").await.expect("show warnings");
    assert!(shown.is_empty(), "b saw a's warnings: {shown:?}");
    let count: Option<u64> = b
        .query_first("SELECT @@warning_count")
        .await
        .expect("count");
    assert_eq!(count, Some(0));
    b.query_drop("COMMIT").await.expect("commit");
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Another session's error never shows, whatever form reads it: `GET DIAGNOSTICS` and
/// `SET @w = @@warning_count` are writes (they set a user variable) and a multi-statement is
/// one too, so none of them is the diagnostics read that is routed to the connection holding
/// them; the message quotes the value the other session sent. Nor do a session's own warnings
/// outlive a statement elsewhere that replaced them.
#[tokio::test]
async fn no_form_of_diagnostics_read_shows_another_sessions() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_diag_forms", "id INT PRIMARY KEY").await;
    wait_sync();
    let reads: [(&str, &str); 3] = [
        ("GET DIAGNOSTICS @n = NUMBER", "SELECT @n"),
        ("SET @w = @@warning_count + @@error_count", "SELECT @w"),
        ("DO 1; GET DIAGNOSTICS @m = NUMBER", "SELECT @m"),
    ];
    for (read, value) in reads {
        // An error on the primary's one connection that quotes a's value; a table read on a
        // replica then replaces a's diagnostics, and the connection goes back.
        a.query_drop(format!("INSERT INTO {t} VALUES ('secret_of_a')"))
            .await
            .expect_err("not an integer");
        a.query_drop(format!("SELECT * FROM {t}"))
            .await
            .expect("read");
        wait_pinned(&proxy, a.id(), None).await;
        let mut b = proxy.conn().await;
        b.query_iter(read)
            .await
            .expect(read)
            .drop_result()
            .await
            .expect(read);
        let n: Option<u64> = b.query_first(value).await.expect(value);
        assert_eq!(n, Some(0), "{read} showed a's error to b");
        b.disconnect().await.expect("b's quit");
    }
    // a's own, on a primary connection it keeps (a user variable): a table read on a replica
    // replaced them.
    a.query_drop("SET @keep = 1").await.expect("set");
    for (read, value) in reads {
        a.query_drop(format!("INSERT INTO {t} VALUES ('again')"))
            .await
            .expect_err("not an integer");
        a.query_drop(format!("SELECT * FROM {t}"))
            .await
            .expect("read");
        a.query_iter(read)
            .await
            .expect(read)
            .drop_result()
            .await
            .expect(read);
        let n: Option<u64> = a.query_first(value).await.expect(value);
        assert_eq!(n, Some(0), "{read} showed a's replaced error");
    }
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// MariaDB's `@@last_gtid` is the session's own commit, read in any form, whichever
/// connection the statement gets: the one primary connection has committed another session's
/// write since, and a new session has committed nothing.
#[tokio::test]
async fn last_gtid_is_the_sessions_own_commit() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_last_gtid", "id INT PRIMARY KEY").await;
    let mut fresh = proxy.conn().await;
    let none: Option<String> = fresh
        .query_first("SELECT @@last_gtid")
        .await
        .expect("fresh");
    assert_eq!(
        none.as_deref(),
        Some(""),
        "a session that committed nothing"
    );
    fresh.disconnect().await.expect("quit");
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("a's insert");
    let mine: Option<String> = a.query_first("SELECT @@last_gtid").await.expect("gtid");
    let mine = mine.expect("a gtid");
    assert!(!mine.is_empty());
    // A read elsewhere lets the primary connection go; b commits on it.
    a.query_drop(format!("SELECT * FROM {t}"))
        .await
        .expect("read");
    wait_pinned(&proxy, a.id(), None).await;
    let mut b = proxy.conn().await;
    b.query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect("b's insert");
    let theirs: Option<String> = b.query_first("SELECT @@last_gtid").await.expect("gtid");
    assert_ne!(theirs.as_deref(), Some(mine.as_str()));
    b.disconnect().await.expect("quit");
    let rows: Vec<Row> = a.query("SELECT @@last_gtid").await.expect("again");
    assert_eq!(rows[0].columns_ref()[0].name_str(), "@@last_gtid");
    assert_eq!(rows[0].get::<String, _>(0).as_deref(), Some(mine.as_str()));
    for sql in [
        "SELECT @@session.last_gtid AS g",
        "SELECT CONCAT(@@LAST_GTID)",
    ] {
        let got: Option<String> = a.query_first(sql).await.expect(sql);
        assert_eq!(got.as_deref(), Some(mine.as_str()), "{sql}");
    }
    a.query_drop("SET @g = @@last_gtid").await.expect("set");
    let got: Option<String> = a.query_first("SELECT @g").await.expect("@g");
    assert_eq!(got.as_deref(), Some(mine.as_str()), "SET @g = @@last_gtid");
    // In a multi-statement the server has the commit made before it: not rewritten. And the
    // session's own is that commit's from then on.
    let mut results = a
        .query_iter(format!("INSERT INTO {t} VALUES (3); SELECT @@last_gtid"))
        .await
        .expect("multi-statement");
    let _: Vec<Row> = results.collect().await.expect("the insert");
    let later: Vec<String> = results.collect().await.expect("the gtid");
    drop(results);
    assert_eq!(later.len(), 1);
    assert_ne!(later[0], mine, "the multi-statement's own commit");
    let again: Option<String> = a.query_first("SELECT @@last_gtid").await.expect("again");
    assert_eq!(again.as_deref(), Some(later[0].as_str()));
    // A session that narrows what the server reports: its commits' GTIDs may go unseen, so the
    // server's value is read.
    a.query_drop("SET SESSION session_track_system_variables = ''")
        .await
        .expect("narrow tracking");
    a.query_drop(format!("INSERT INTO {t} VALUES (4)"))
        .await
        .expect("insert");
    let unreported: Option<String> = a.query_first("SELECT @@last_gtid").await.expect("gtid");
    assert_ne!(
        unreported.as_deref(),
        Some(later[0].as_str()),
        "a stale GTID"
    );
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A session that ends with an XA transaction prepared leaves it prepared on the server, as
/// directly, and its connection is closed: reset and pooled, it refused every later session's
/// writes (1031).
#[tokio::test]
async fn a_prepared_xa_transaction_does_not_break_the_next_sessions_writes() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_xa", "id INT PRIMARY KEY").await;
    let xid = format!("'{t}'");
    // Once statement by statement, once in one multi-statement.
    for sql in [
        format!("XA START {xid}"),
        format!("INSERT INTO {t} VALUES (1)"),
        format!("XA END {xid}"),
        format!("XA PREPARE {xid}"),
    ] {
        a.query_drop(&sql).await.expect(&sql);
    }
    a.disconnect().await.expect("quit");
    let xid2 = format!("'{t}_2'");
    let mut a = proxy.conn().await;
    a.query_drop(format!(
        "XA START {xid2}; INSERT INTO {t} VALUES (3); XA END {xid2}; XA PREPARE {xid2}"
    ))
    .await
    .expect("multi-statement XA");
    a.disconnect().await.expect("quit");
    // In a compound statement, and through EXECUTE IMMEDIATE.
    let xid3 = format!("'{t}_3'");
    let mut a = proxy.conn().await;
    a.query_drop(format!(
        "BEGIN NOT ATOMIC XA START {xid3}; INSERT INTO {t} VALUES (4); XA END {xid3}; \
         XA PREPARE {xid3}; END"
    ))
    .await
    .expect("compound XA");
    a.disconnect().await.expect("quit");
    let xid4 = format!("'{t}_4'");
    let mut a = proxy.conn().await;
    for sql in [
        format!("EXECUTE IMMEDIATE \"XA START {xid4}\""),
        format!("INSERT INTO {t} VALUES (5)"),
        format!("EXECUTE IMMEDIATE \"XA END {xid4}\""),
        format!("EXECUTE IMMEDIATE \"XA PREPARE {xid4}\""),
    ] {
        a.query_drop(&sql).await.expect(&sql);
    }
    a.disconnect().await.expect("quit");
    // In a procedure's body, which rwsplit does not see: the transaction it leaves open is
    // what the server reports. Once as the session leaves it, once ended by the client's own
    // COM_RESET_CONNECTION before it leaves.
    let (xid5, xid6) = (format!("'{t}_5'"), format!("'{t}_6'"));
    for (n, x, reset) in [(5, &xid5, false), (6, &xid6, true)] {
        let mut a = proxy.conn().await;
        a.query_drop(format!(
            "CREATE PROCEDURE {t}_p{n}() BEGIN XA START {x}; INSERT INTO {t} VALUES ({n}0); \
             XA END {x}; XA PREPARE {x}; END"
        ))
        .await
        .expect("create procedure");
        a.query_drop(format!("CALL {t}_p{n}()"))
            .await
            .expect("call");
        if reset {
            a.reset().await.expect("COM_RESET_CONNECTION");
        }
        a.disconnect().await.expect("quit");
    }
    let mut b = proxy.conn().await;
    b.query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect("the next session's write");
    let prepared: Vec<(i64, i64, i64, String)> = b.query("XA RECOVER").await.expect("recover");
    assert!(
        prepared.iter().any(|(_, _, _, data)| *data == t),
        "a's XA transaction stays prepared: {prepared:?}"
    );
    // The server may not have seen a's connection close yet: the transaction is then still
    // attached to it.
    for x in [&xid, &xid2, &xid3, &xid4, &xid5, &xid6] {
        let rollback = format!("XA ROLLBACK {x}");
        common::eventually(
            Duration::from_secs(5),
            Duration::from_millis(100),
            &rollback,
            async || b.query_drop(&rollback).await,
        )
        .await;
    }
    for n in [5, 6] {
        b.query_drop(format!("DROP PROCEDURE {t}_p{n}"))
            .await
            .expect("drop procedure");
    }
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A schema selected where rwsplit does not follow it (a `USE` in a multi-statement) is
/// known from the server's report: the session has it, and a connection of a session without
/// a schema that selected one this way does not go back to serve such sessions.
#[tokio::test]
async fn a_schema_selected_out_of_sight_is_followed() {
    let proxy = one_connection_per_server();
    let on_primary = "/* rwsplit:primary */ SELECT DATABASE()";
    let mut b = Conn::new(proxy.opts().db_name(None::<String>))
        .await
        .expect("b: connect without a schema");
    b.query_drop("USE app; SELECT 1")
        .await
        .expect("a multi-statement with a USE");
    let db: Option<Option<String>> = b.query_first(on_primary).await.expect("b");
    assert_eq!(db.flatten().as_deref(), Some("app"));
    b.disconnect().await.expect("b leaves");
    let mut c = Conn::new(proxy.opts().db_name(None::<String>))
        .await
        .expect("c: connect without a schema");
    let db: Option<Option<String>> = c.query_first(on_primary).await.expect("c");
    assert_eq!(db.flatten(), None, "c got b's schema");
}

/// A `SET TRANSACTION` (no scope) is for the session's next transaction, which it waits for on
/// its connection across statements that open no table or fail (`SELECT 1`, `DO`, an error):
/// the session stays on that connection until a transaction takes the characteristics, and
/// another session is never lent the connection while they may still wait there (it would
/// begin its own transaction READ ONLY, or READ UNCOMMITTED and read rows not committed).
#[tokio::test]
async fn a_pending_set_transaction_stays_with_its_session() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let t = common::create_table(&mut a, "nexttrx", "id INT PRIMARY KEY").await;
    a.query_drop("SET TRANSACTION READ ONLY")
        .await
        .expect("set transaction");
    a.query_drop("SELECT 1").await.expect("no table");
    a.query_drop("DO 0").await.expect("no table either");
    a.query_drop("SELECT * FROM no_such_table_xyz")
        .await
        .expect_err("a failed statement");
    wait_pinned(&proxy, a.id(), Some("next_transaction")).await;
    // This read is the next transaction (autocommit): it takes the characteristics, as on the
    // server, and the session's write after it is not read-only.
    let n: Option<u64> = a
        .query_first(format!("SELECT COUNT(*) FROM {t}"))
        .await
        .expect("read");
    assert_eq!(n, Some(0));
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("the session's write after its read-only transaction");
    // (A write keeps its connection for one more statement, for `ROW_COUNT()`.)
    let n: Option<u64> = a
        .query_first(format!("SELECT COUNT(*) FROM {t}"))
        .await
        .expect("read");
    assert_eq!(n, Some(1));
    wait_pinned(&proxy, a.id(), None).await;
    // Another session on the same single primary connection: nothing pending there.
    b.query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect("another session's write");
    b.query_drop("SELECT 1").await.expect("read");
    wait_pinned(&proxy, b.id(), None).await;
    // Directly too: a pending READ ONLY is used by an explicit transaction.
    a.query_drop("SET TRANSACTION READ ONLY")
        .await
        .expect("set transaction");
    a.query_drop("SELECT 1").await.expect("no table");
    a.query_drop("BEGIN").await.expect("begin");
    let e = a
        .query_drop(format!("INSERT INTO {t} VALUES (3)"))
        .await
        .expect_err("a write in the READ ONLY transaction");
    assert_eq!(server_code(&e), Some(1792), "{e}");
    a.query_drop("COMMIT").await.expect("commit");
    // (Its error stays readable until a statement opens a table.)
    a.query_drop(format!("SELECT * FROM {t}"))
        .await
        .expect("a table");
    wait_pinned(&proxy, a.id(), None).await;
    b.query_drop(format!("INSERT INTO {t} VALUES (3)"))
        .await
        .expect("after the read-only transaction ended");
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A session that selected no schema never gets another session's: the server's reset keeps
/// the schema, so pooled connections that carry one are not lent to it (directly,
/// `DATABASE()` is NULL and an unqualified table is refused with 1046, not created in the
/// schema the last session on that connection used).
#[tokio::test]
async fn a_session_without_a_schema_never_gets_another_sessions() {
    /// `DATABASE()` as `sql` reads it.
    async fn schema(c: &mut Conn, sql: &str) -> Option<String> {
        let db: Option<Option<String>> = c.query_first(sql).await.expect(sql);
        db.flatten()
    }
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let on_primary = "/* rwsplit:primary */ SELECT DATABASE()";
    let read = "SELECT DATABASE()";
    assert_eq!(schema(&mut a, on_primary).await.as_deref(), Some("app"));
    assert_eq!(schema(&mut a, read).await.as_deref(), Some("app"));
    // A `USE` of a session that has a schema keeps to the pools of connections with one.
    a.query_drop("USE app").await.expect("a: USE app");
    a.query_drop("/* rwsplit:primary */ USE app")
        .await
        .expect("a: USE app on the primary");
    let keys = proxy.shared.pools.keys();
    assert!(keys.iter().all(|k| !k.schemaless), "{keys:?}");

    let mut b = Conn::new(proxy.opts().db_name(None::<String>))
        .await
        .expect("b: connect without a schema");
    for round in 0..2 {
        assert_eq!(schema(&mut b, on_primary).await, None, "round {round}");
        assert_eq!(schema(&mut b, read).await, None, "round {round}");
        let e = b
            .query_drop(format!("CREATE TABLE {} (a INT)", unique("nodb")))
            .await
            .expect_err("an unqualified table with no schema");
        assert_eq!(server_code(&e), Some(1046), "round {round}: {e}");
        // (The error's diagnostics keep the connection until a statement opens a table.)
        b.query_drop("/* rwsplit:primary */ SELECT 1 FROM information_schema.ENGINES LIMIT 0")
            .await
            .expect("b: a table");
        assert_eq!(schema(&mut b, on_primary).await, None, "round {round}");
        // The other session still has its own, on the same single connection per server.
        let db = schema(&mut a, on_primary).await;
        assert_eq!(db.as_deref(), Some("app"), "round {round}");
    }
    // A `USE` that fails takes a connection from the pools with a schema: it is not kept.
    let e = b
        .query_drop("USE no_such_db_xyz")
        .await
        .expect_err("an unknown schema");
    assert!(matches!(server_code(&e), Some(1044 | 1049)), "{e}");
    let e = b
        .query_drop(format!("CREATE TABLE {} (a INT)", unique("nodb")))
        .await
        .expect_err("still no schema after a failed USE");
    assert_eq!(server_code(&e), Some(1046), "{e}");
    b.query_drop("/* rwsplit:primary */ SELECT 1 FROM information_schema.ENGINES LIMIT 0")
        .await
        .expect("b: a table");
    // Once it selects one, it is the session's as usual.
    b.query_drop("USE app").await.expect("b: USE app");
    assert_eq!(schema(&mut b, on_primary).await.as_deref(), Some("app"));
    assert_eq!(schema(&mut b, read).await.as_deref(), Some("app"));
    let mut c = Conn::new(proxy.opts().db_name(None::<String>))
        .await
        .expect("c: connect without a schema");
    let db = schema(&mut c, on_primary).await;
    assert_eq!(db, None, "after a schemaless session's USE");
}

/// A statement prepared on a shared connection is used again there only in the context it
/// was prepared in (schema, replayed `SET`s): the server finds a statement's tables in the
/// schema of its prepare, so a session in another schema prepares it anew rather than read
/// the other session's tables.
#[tokio::test]
async fn a_statement_prepared_in_another_schema_is_not_reused() {
    let proxy = one_connection_per_server();
    // On the one primary connection, for both sessions.
    let sql = "/* rwsplit:primary */ SELECT DATABASE()";
    let mut a = proxy.conn().await;
    let mut b = Conn::new(proxy.opts().db_name(Some("information_schema")))
        .await
        .expect("connect in information_schema");
    let in_app = a.prep(sql).await.expect("prepare in app");
    let db: Option<String> = a.exec_first(&in_app, ()).await.expect("a");
    assert_eq!(db.as_deref(), Some("app"));
    let in_is = b.prep(sql).await.expect("prepare in information_schema");
    for round in 0..2 {
        let db: Option<String> = b.exec_first(&in_is, ()).await.expect("b");
        assert_eq!(db.as_deref(), Some("information_schema"), "round {round}");
        let db: Option<String> = a.exec_first(&in_app, ()).await.expect("a");
        assert_eq!(db.as_deref(), Some("app"), "round {round}");
    }
}

/// A statement keeps reading the schema it was prepared in after the session's `USE`, as on
/// the server: on a new connection it is prepared with that schema selected for it, then the
/// session's is selected again; on the connection that has it, it runs there.
#[tokio::test]
async fn a_prepared_statement_reads_the_schema_it_was_prepared_in_after_use() {
    let proxy = one_connection_per_server();
    let t = unique("mux_ps_use");
    let other = format!("{t}_db");
    let mut root = direct(3306).await;
    root.query_drop(format!("CREATE DATABASE {other}"))
        .await
        .expect("create db");
    root.query_drop(format!("GRANT ALL ON {other}.* TO 'app'@'%'"))
        .await
        .expect("grant");
    let mut a = proxy.conn().await;
    for (db, v) in [("app", "app"), (other.as_str(), "other")] {
        a.query_drop(format!("CREATE TABLE {db}.{t} (v VARCHAR(10))"))
            .await
            .expect("create");
        a.query_drop(format!("INSERT INTO {db}.{t} VALUES ('{v}')"))
            .await
            .expect("insert");
    }
    // On the primary, so no replica's lag decides what it reads.
    let sql = format!("/* rwsplit:primary */ SELECT v FROM {t}");
    let s = a.prep(&sql).await.expect("prepare in app");
    let v: Option<String> = a.exec_first(&s, ()).await.expect("exec in app");
    assert_eq!(v.as_deref(), Some("app"));
    a.query_drop(format!("USE {other}")).await.expect("use");
    // The one primary connection, where `s` is prepared, dies while no session holds it.
    let mut b = proxy.conn().await;
    let thread = primary_thread(&mut b).await;
    wait_pinned(&proxy, a.id(), None).await;
    wait_pinned(&proxy, b.id(), None).await;
    common::kill_thread(3306, thread).await;
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}");
    common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the killed thread ends",
        async || match root.query_first::<u64, _>(&gone).await {
            Ok(Some(0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let v: Option<String> = a
        .exec_first(&s, ())
        .await
        .expect("exec on a new connection");
    assert_eq!(v.as_deref(), Some("app"), "after USE, on a new connection");
    assert_ne!(
        primary_thread(&mut a).await,
        thread,
        "the connection was not replaced"
    );
    let db: Option<String> = a.query_first("SELECT DATABASE()").await.expect("db");
    assert_eq!(db.as_deref(), Some(other.as_str()), "the session's schema");
    // Prepared after the USE, the same query reads the other schema; the old one still not.
    let fresh = a.prep(format!("{sql} ")).await.expect("prepare after USE");
    for round in 0..2 {
        let v: Option<String> = a.exec_first(&fresh, ()).await.expect("exec fresh");
        assert_eq!(
            v.as_deref(),
            Some("other"),
            "round {round}: the new statement"
        );
        let v: Option<String> = a.exec_first(&s, ()).await.expect("exec old");
        assert_eq!(
            v.as_deref(),
            Some("app"),
            "round {round}: the old statement"
        );
    }
    drop(b);
    root.query_drop(format!("REVOKE ALL ON {other}.* FROM 'app'@'%'"))
        .await
        .expect("revoke");
    root.query_drop(format!("DROP DATABASE {other}"))
        .await
        .expect("drop db");
    root.query_drop(format!("DROP TABLE app.{t}"))
        .await
        .expect("drop");
}

/// `SET insert_id = n` is for the session's next insert only: once that insert has used it,
/// a connection the session moves to must not be given it again (the insert after would reuse
/// the id).
#[tokio::test]
async fn set_insert_id_is_used_once_whatever_connection_follows() {
    let proxy = one_connection_per_server();
    let t = unique("mux_insert_id");
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    ))
    .await
    .expect("create");
    a.query_drop("SET insert_id = 1000")
        .await
        .expect("set insert_id");
    a.query_drop(format!("INSERT INTO {t} (v) VALUES (1)"))
        .await
        .expect("insert 1");
    assert_eq!(a.last_insert_id(), Some(1000));
    // A read ends the insert's `row_count` pin.
    a.query_drop("SELECT 1").await.expect("read");
    wait_pinned(&proxy, a.id(), None).await;
    for round in 0..2 {
        // b takes the one primary connection in between: a gets it back with its state synced.
        b.query_drop(format!("/* rwsplit:primary */ SELECT COUNT(*) FROM {t}"))
            .await
            .expect("b");
        a.query_drop(format!("INSERT INTO {t} (v) VALUES (2)"))
            .await
            .unwrap_or_else(|e| panic!("insert after b, round {round}: {e}"));
        assert_ne!(a.last_insert_id(), Some(1000), "round {round}");
        a.query_drop("SELECT 1").await.expect("read");
        wait_pinned(&proxy, a.id(), None).await;
    }
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A statement that takes a named lock and assigns a user variable keeps the connection for
/// the variable, which outlives the lock's release.
#[tokio::test]
async fn a_user_variable_set_beside_a_named_lock_outlives_its_release() {
    let proxy = one_connection_per_server();
    let lock = unique("mux_lock_var");
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop(format!("SELECT @mux_v := 5, GET_LOCK('{lock}', 1)"))
        .await
        .expect("lock and variable");
    a.query_drop(format!("SELECT RELEASE_LOCK('{lock}')"))
        .await
        .expect("release");
    wait_pinned(&proxy, a.id(), Some("user_variable")).await;
    let v: Option<i64> = a.query_first("SELECT @mux_v").await.expect("read @mux_v");
    assert_eq!(v, Some(5));
    drop(a);
    // a's end hands the connection back reset: b does not see the variable.
    let v: Option<Option<i64>> = b.query_first("SELECT @mux_v").await.expect("b's @mux_v");
    assert_eq!(v, Some(None));
}

/// A statement that fails may still leave a transaction open (an error packet carries no
/// status flags): a multi-statement that began one, or any statement under autocommit off.
/// The session keeps that connection, its next read sees the transaction's rows, and a
/// session that ends there hands the connection back rolled back, not to the next session
/// with the same settings.
#[tokio::test]
async fn a_transaction_a_failed_statement_left_open_stays_with_its_session() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_err_trx", "id INT PRIMARY KEY").await;
    a.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("insert");
    let e = a
        .query_drop(format!(
            "START TRANSACTION; INSERT INTO {t} VALUES (2); INSERT INTO {t} VALUES (1)"
        ))
        .await
        .expect_err("a duplicate key");
    assert_eq!(server_code(&e), Some(1062), "{e}");
    let n: Option<i64> = a
        .query_first(format!("SELECT COUNT(*) FROM {t} WHERE id = 2"))
        .await
        .expect("read");
    assert_eq!(n, Some(1), "the read left the open transaction");
    a.query_drop("ROLLBACK").await.expect("rollback");

    let mut b = proxy.conn().await;
    b.query_drop("SET autocommit = 0")
        .await
        .expect("b's autocommit");
    for (i, sql) in [
        format!("START TRANSACTION; INSERT INTO {t} VALUES (3); INSERT INTO {t} VALUES (1)"),
        format!("INSERT INTO {t} VALUES (1)"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = proxy.conn().await;
        c.query_drop("SET autocommit = 0")
            .await
            .expect("c's autocommit");
        c.query_drop(&sql).await.expect_err("a duplicate key");
        drop(c);
        let open: Option<i64> = b
            .query_first("/* rwsplit:primary */ SELECT @@in_transaction")
            .await
            .expect("b's read");
        assert_eq!(open, Some(0), "case {i}: b was given c's open transaction");
        b.query_drop("ROLLBACK").await.expect("b's rollback");
    }
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A lock taken in a multi-statement pins the session as alone, even when a later statement
/// of it fails (the lock was taken all the same); session tracking does not report locks.
#[tokio::test]
async fn a_lock_taken_in_a_multi_statement_pins_the_session() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_multi_lock", "id INT PRIMARY KEY").await;
    a.query_drop(format!("SELECT GET_LOCK('{t}', 1); SELECT 1"))
        .await
        .expect("lock in a multi-statement");
    wait_pinned(&proxy, a.id(), Some("get_lock")).await;
    a.query_drop(format!("SELECT RELEASE_LOCK('{t}')"))
        .await
        .expect("release");
    wait_pinned(&proxy, a.id(), None).await;
    let e = a
        .query_drop(format!(
            "LOCK TABLES {t} WRITE; INSERT INTO {t}_none VALUES (1)"
        ))
        .await
        .expect_err("a table not locked");
    assert!(matches!(server_code(&e), Some(1100 | 1146)), "{e}");
    wait_pinned(&proxy, a.id(), Some("lock_tables")).await;
    a.query_drop("UNLOCK TABLES").await.expect("unlock");
    wait_pinned(&proxy, a.id(), None).await;
    // Two locks in one multi-statement: rwsplit counts one, so the session keeps its
    // connections for good rather than release one still holding the other.
    a.query_drop(format!("LOCK TABLES {t} WRITE; DO GET_LOCK('{t}', 1)"))
        .await
        .expect("two locks");
    wait_pinned(&proxy, a.id(), Some("untracked_state")).await;
    a.query_drop(format!("DO RELEASE_LOCK('{t}')"))
        .await
        .expect("release");
    wait_pinned(&proxy, a.id(), Some("untracked_state")).await;
    a.query_drop("UNLOCK TABLES").await.expect("unlock");
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A HANDLER opened on a connection is that session's until it closes it: the session keeps
/// the connection (pin `handler`), and no other session reads through its handler.
#[tokio::test]
async fn an_open_handler_pins_its_session_until_it_closes() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let t = common::create_table(&mut a, "mux_handler", "id INT PRIMARY KEY").await;
    a.query_drop(format!("INSERT INTO {t} VALUES (1), (2)"))
        .await
        .expect("insert");
    a.query_drop(format!("HANDLER {t} OPEN"))
        .await
        .expect("open");
    wait_pinned(&proxy, a.id(), Some("handler")).await;
    let first: Option<i32> = a
        .query_first(format!("HANDLER {t} READ `PRIMARY` FIRST"))
        .await
        .expect("read first");
    assert_eq!(first, Some(1));
    // b needs the one primary connection: it waits until a closes its handler, and then
    // finds no handler of its own.
    let read = format!("HANDLER {t} READ `PRIMARY` FIRST");
    let stolen = tokio::spawn(async move { b.query_first::<i32, _>(read).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next: Option<i32> = a
        .query_first(format!("HANDLER {t} READ `PRIMARY` NEXT"))
        .await
        .expect("read next");
    assert_eq!(next, Some(2));
    a.query_drop(format!("HANDLER {t} CLOSE"))
        .await
        .expect("close");
    let stolen = stolen.await.expect("join");
    let e = stolen.expect_err("another session read through a's handler");
    assert_eq!(server_code(&e), Some(1109), "{e}");
    wait_pinned(&proxy, a.id(), None).await;
    a.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// MariaDB's backup stages and locks belong to the connection that took them and block DDL
/// or commits for everyone until released: the session keeps that connection (pin `backup`)
/// until it lets go, so none is left on a pooled connection for another session.
#[tokio::test]
async fn a_backup_stage_or_lock_pins_its_session_until_released() {
    let proxy = Proxy::start_with(|t| {
        common::with_root_user(pool_settings(
            t,
            "checkout_timeout = \"5s\"\nmax_connections = 1",
        ))
    });
    let root = || Conn::new(proxy.opts().user(Some("root")).pass(Some("root")));
    let mut r = root().await.expect("root session r");
    let mut s = root().await.expect("root session s");
    let t = common::create_table(&mut r, "mux_backup", "id INT").await;
    r.query_drop("BACKUP STAGE START").await.expect("start");
    wait_pinned(&proxy, r.id(), Some("backup")).await;
    r.query_drop("BACKUP STAGE FLUSH").await.expect("flush");
    wait_pinned(&proxy, r.id(), Some("backup")).await;
    // s's own backup waits for r's to end (for the one connection, or on the server), and is
    // then its own: on r's connection it would fail with 4147 (a stage already started).
    let theirs = tokio::spawn(async move {
        s.query_drop("BACKUP STAGE START").await?;
        s.query_drop("BACKUP STAGE END").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!theirs.is_finished(), "s's backup ran during r's");
    r.query_drop("BACKUP STAGE END").await.expect("end");
    theirs
        .await
        .expect("join")
        .expect("s's backup after r's ended");
    wait_pinned(&proxy, r.id(), None).await;
    r.query_drop(format!("BACKUP LOCK {t}"))
        .await
        .expect("backup lock");
    wait_pinned(&proxy, r.id(), Some("backup")).await;
    r.query_drop("UNLOCK TABLES").await.expect("unlock tables");
    wait_pinned(&proxy, r.id(), Some("backup")).await;
    r.query_drop("BACKUP UNLOCK").await.expect("backup unlock");
    wait_pinned(&proxy, r.id(), None).await;
    r.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A user variable a procedure or stored function sets by `SELECT ... INTO @v`, which the
/// server does not report as a state change (unlike `SET @v`), is still there for the
/// session's next statement: the session stays on that connection. A routine that leaves no
/// variable pins nothing.
#[tokio::test]
async fn a_user_variable_a_routine_selects_into_stays_the_sessions() {
    let proxy = one_connection_per_server();
    let t = unique("mux_into");
    let mut root = direct(3306).await;
    for sql in [
        format!("CREATE PROCEDURE app.{t}_p() BEGIN SELECT 5 INTO @mux_into_p; END"),
        format!(
            "CREATE FUNCTION app.{t}_f() RETURNS INT NOT DETERMINISTIC READS SQL DATA \
             BEGIN SELECT 7 INTO @mux_into_f; RETURN 1; END"
        ),
        format!("CREATE PROCEDURE app.{t}_none() BEGIN DECLARE x INT; SELECT 3 INTO x; END"),
    ] {
        root.query_drop(sql).await.expect("setup");
    }
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    a.query_drop(format!("CALL app.{t}_p()"))
        .await
        .expect("call");
    wait_pinned(&proxy, a.id(), Some("user_variable")).await;
    let v: Option<i64> = a.query_first("SELECT @mux_into_p").await.expect("read");
    assert_eq!(v, Some(5), "the procedure's variable");
    a.reset().await.expect("reset");
    let one: Option<i64> = a
        .query_first(format!("SELECT app.{t}_f()"))
        .await
        .expect("function");
    assert_eq!(one, Some(1));
    wait_pinned(&proxy, a.id(), Some("user_variable")).await;
    let v: Option<i64> = a.query_first("SELECT @mux_into_f").await.expect("read");
    assert_eq!(v, Some(7), "the function's variable");
    a.reset().await.expect("reset");
    // Nothing left: the connection goes back, and the next session there sees no variable.
    a.query_drop(format!("CALL app.{t}_none()"))
        .await
        .expect("call");
    wait_pinned(&proxy, a.id(), None).await;
    let v: Option<Option<i64>> = b.query_first("SELECT @mux_into_p").await.expect("b's read");
    assert_eq!(v, Some(None), "another session's variable");
    for sql in [
        format!("DROP PROCEDURE app.{t}_p"),
        format!("DROP FUNCTION app.{t}_f"),
        format!("DROP PROCEDURE app.{t}_none"),
    ] {
        root.query_drop(sql).await.expect("cleanup");
    }
}

#[tokio::test]
async fn state_changed_out_of_sight_is_carried_by_session_tracking_or_pins() {
    let proxy = one_connection_per_server();
    let t = unique("mux_track");
    let mut root = direct(3306).await;
    for sql in [
        format!("CREATE TABLE app.{t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"),
        // A stored function that changes a session variable: invisible in the statement.
        format!(
            "CREATE FUNCTION app.{t}_tz() RETURNS INT NOT DETERMINISTIC NO SQL \
             BEGIN SET SESSION time_zone = '+05:00'; RETURN 1; END"
        ),
        format!("CREATE PROCEDURE app.{t}_dml() INSERT INTO app.{t} (v) VALUES (1)"),
        format!("CREATE PROCEDURE app.{t}_var() SET @mux_proc = 7"),
    ] {
        root.query_drop(sql).await.expect("setup");
    }
    wait_sync();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let one: Option<i64> = a
        .query_first(format!("SELECT app.{t}_tz()"))
        .await
        .expect("function");
    assert_eq!(one, Some(1));
    // The server named the variable: carried like a SET, nothing pinned.
    wait_pinned(&proxy, a.id(), None).await;
    for round in 0..3 {
        assert_eq!(tz(&mut b, true).await, "SYSTEM", "round {round}");
        assert_eq!(tz(&mut a, true).await, "+05:00", "round {round}");
        assert_eq!(tz(&mut b, false).await, "SYSTEM", "round {round}");
        assert_eq!(tz(&mut a, false).await, "+05:00", "round {round}");
    }

    // A procedure that changes nothing in the session does not pin it.
    a.query_drop(format!("CALL app.{t}_dml()"))
        .await
        .expect("call dml");
    wait_pinned(&proxy, a.id(), None).await;
    // One that leaves state the server does not name (here a user variable) does (rwsplit
    // then finds the variable, and names it).
    a.query_drop(format!("CALL app.{t}_var()"))
        .await
        .expect("call var");
    wait_pinned(&proxy, a.id(), Some("user_variable")).await;
    for _ in 0..3 {
        let v: Option<i64> = a.query_first("SELECT @mux_proc").await.expect("var");
        assert_eq!(v, Some(7));
        assert_eq!(tz(&mut a, false).await, "+05:00");
    }
    a.reset().await.expect("reset");
    wait_pinned(&proxy, a.id(), None).await;

    // SET TRANSACTION (no scope) is for the next transaction, on the connection it ran on.
    a.query_drop("SET TRANSACTION READ ONLY")
        .await
        .expect("set transaction");
    wait_pinned(&proxy, a.id(), Some("next_transaction")).await;
    // b's write needs the one primary connection: it waits for a's transaction.
    let write = format!("INSERT INTO app.{t} (v) VALUES (2)");
    let bw = tokio::spawn(async move { b.query_drop(write).await.map(|_| b) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.query_drop("START TRANSACTION").await.expect("begin");
    let e = a
        .query_drop(format!("INSERT INTO app.{t} (v) VALUES (3)"))
        .await
        .expect_err("a read-only transaction refuses writes");
    assert!(e.to_string().contains("1792"), "{e}");
    a.query_drop("ROLLBACK").await.expect("rollback");
    // (Its error stays readable until a statement opens a table.)
    a.query_drop(format!("SELECT * FROM app.{t}"))
        .await
        .expect("a table");
    wait_pinned(&proxy, a.id(), None).await;
    let mut b = bw
        .await
        .expect("join")
        .expect("b's write, outside a's transaction");
    let n: Option<i64> = b
        .query_first(format!(
            "/* rwsplit:primary */ SELECT COUNT(*) FROM app.{t} WHERE v = 2"
        ))
        .await
        .expect("count");
    assert_eq!(n, Some(1));
    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    for reason in ["user_variable", "next_transaction"] {
        let line = format!("rwsplit_session_pins_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "{line} missing");
    }
}

async fn open_cursor(
    raw: &mut rwsplit::pool::BackendConn,
    execute: &[u8],
) -> rwsplit::protocol::response::Outcome {
    use rwsplit::protocol::response::ResponseKind as K;
    raw.run_internal(execute, K::StmtExecute { cursor: true })
        .await
        .expect("execute")
        .expect("execute ok")
}

/// Long data sent for a statement keeps its connection until the statement runs, whatever
/// keeps the other connection meanwhile: after a read on a replica with a warning (the next
/// statement would go there), the primary connection holding an insert's long data is not
/// handed to another session.
#[tokio::test]
async fn long_data_keeps_its_connection_while_the_other_one_is_pinned() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let t = unique("mux_long_data");
    let mut b = proxy.conn().await;
    b.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v BLOB)"
    ))
    .await
    .expect("create");
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let id = raw.connection_id;
    let stmt = common::raw_prepare(&mut raw, &format!("INSERT INTO {t} (v) VALUES (?)")).await;
    // COM_STMT_SEND_LONG_DATA for parameter 0: no response.
    let long = common::long_data(&stmt, b"long");
    raw.send_command(&long).await.expect("long data");
    wait_pinned(&proxy, id, Some("long_data")).await;
    let o = raw
        .run_internal(b"\x03SELECT CAST('12abc' AS SIGNED)", K::Query)
        .await
        .expect("read")
        .expect("read ok");
    assert_eq!(o.warnings, 1);
    wait_pinned(&proxy, id, Some("warnings")).await;
    // b needs the one primary connection: it waits until the insert has run.
    let write = format!("INSERT INTO {t} (v) VALUES ('b')");
    let theirs = tokio::spawn(async move { b.query_drop(write).await.map(|()| b) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !theirs.is_finished(),
        "another session was given the connection holding the long data"
    );
    // COM_STMT_EXECUTE: no cursor, one iteration, null bitmap 0, types bound (BLOB), and no
    // value for the parameter sent as long data.
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0xfc, 0],
    ]
    .concat();
    raw.run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .expect("execute ok");
    // A read ends the insert's `row_count` pin.
    raw.run_internal(b"\x03SELECT 1", K::Query)
        .await
        .expect("read")
        .expect("read ok");
    let mut b = theirs.await.expect("join").expect("b's insert");
    let rows: Vec<Vec<u8>> = b
        .query(format!(
            "/* rwsplit:primary */ SELECT v FROM {t} ORDER BY id"
        ))
        .await
        .expect("rows");
    assert_eq!(rows, vec![b"long".to_vec(), b"b".to_vec()]);
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// Pools of one backend (one per user and client capabilities) share its `max_connections`:
/// a connection that comes back idle to one pool serves a checkout waiting in another, which
/// closes it to open its own, rather than wait out its checkout timeout.
#[tokio::test]
async fn a_connection_idle_in_one_pool_serves_a_checkout_waiting_in_another() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let lock = unique("mux_pools");
    let mut a = proxy.conn().await;
    // Another pool of the primary: the raw client asks for other capabilities.
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let take = format!("\x03SELECT GET_LOCK('{lock}', 0)");
    raw.run_internal(take.as_bytes(), K::Query)
        .await
        .expect("lock")
        .expect("lock ok");
    wait_pinned(&proxy, raw.connection_id, Some("get_lock")).await;
    let theirs = tokio::spawn(async move {
        let r = a
            .query_first::<i64, _>("/* rwsplit:primary */ SELECT 1")
            .await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!theirs.is_finished(), "the pool of one had room for two");
    let release = format!("\x03SELECT RELEASE_LOCK('{lock}')");
    raw.run_internal(release.as_bytes(), K::Query)
        .await
        .expect("release")
        .expect("release ok");
    let released = Instant::now();
    let (r, done) = theirs.await.expect("join");
    assert_eq!(r.expect("the waiting read"), Some(1));
    assert!(
        done - released < Duration::from_secs(2),
        "the waiting checkout took {:?} after the other pool's connection went idle",
        done - released
    );
}

/// Long data a session leaves on a shared server statement (it closes the statement, or
/// disconnects, without executing) never reaches another session's execute of the same
/// statement on that connection: the connection goes back to its pool reset.
#[tokio::test]
async fn long_data_left_behind_never_reaches_another_sessions_execute() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let t = unique("mux_long_left");
    let mut setup = proxy.conn().await;
    setup
        .query_drop(format!(
            "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v BLOB)"
        ))
        .await
        .expect("create");
    let insert = format!("INSERT INTO {t} (v) VALUES (?)");
    // One pool for both raw sessions: the same capabilities.
    let raw = || raw_client(&proxy, C::CLIENT_DEPRECATE_EOF);
    for (case, close) in [("COM_STMT_CLOSE", true), ("a disconnect", false)] {
        // b prepares first; a's prepare of the same text then replaces b's server statement
        // on the connection, and b's execute finds a's.
        let mut b = raw().await;
        let b_stmt = common::raw_prepare(&mut b, &insert).await;
        let mut a = raw().await;
        let stmt = common::raw_prepare(&mut a, &insert).await;
        let long = common::long_data(&stmt, b"leaked");
        a.send_command(&long).await.expect("long data");
        if close {
            a.send_command(&[&[Command::StmtClose as u8][..], &stmt].concat())
                .await
                .expect("close");
            a.query_scalar("SELECT 1").await.expect("read").expect("ok");
        }
        drop(a);
        let stmt = b_stmt;
        // One iteration, null bitmap 0, types bound (VAR_STRING), the value 'b'.
        let execute = [
            &[Command::StmtExecute as u8][..],
            &stmt,
            &[0, 1, 0, 0, 0, 0, 1, 0xfd, 0, 1, b'b'],
        ]
        .concat();
        b.run_internal(&execute, K::StmtExecute { cursor: false })
            .await
            .expect("b's execute")
            .expect("b's execute ok");
        let last = b
            .query_scalar(&format!(
                "/* rwsplit:primary */ SELECT v FROM {t} ORDER BY id DESC LIMIT 1"
            ))
            .await
            .expect("read")
            .expect("read ok");
        assert_eq!(
            last.as_deref(),
            Some("b"),
            "after {case}: b's execute got a's long data"
        );
    }
    setup
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// A new table `t` with ids 1 to 5, on the replicas too; and the session that made it.
async fn five_rows(proxy: &Proxy, prefix: &str) -> (String, Conn) {
    let t = unique(prefix);
    let mut setup = proxy.conn().await;
    setup
        .query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY); INSERT INTO {t} VALUES (1), (2), (3), (4), (5)"
        ))
        .await
        .expect("setup");
    wait_sync();
    (t, setup)
}

/// Two statements with cursors open at once, as JDBC's `useCursorFetch` leaves one per result
/// set still being read: each fetch reads its own cursor, and the session stays pinned until
/// both are done.
#[tokio::test]
async fn two_cursors_open_at_once_are_fetched_each_from_its_own() {
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_cursors").await;
    let mut raw = raw_client(&proxy, common::EOF_STYLES[0]).await;
    let id = raw.connection_id;
    let a = common::raw_prepare(&mut raw, &format!("SELECT id FROM {t} ORDER BY id")).await;
    let b = common::raw_prepare(&mut raw, &format!("SELECT id FROM {t} WHERE id > 2")).await;
    let execute = |s: &[u8]| [&[Command::StmtExecute as u8][..], s, &[1, 1, 0, 0, 0]].concat();
    let fetch = |s: &[u8], n: u32| [&[Command::StmtFetch as u8][..], s, &n.to_le_bytes()].concat();
    open_cursor(&mut raw, &execute(&a)).await;
    open_cursor(&mut raw, &execute(&b)).await;
    for (stmt, want) in [(&a, 5), (&b, 3)] {
        let o = raw
            .run_internal(&fetch(stmt, 1), K::StmtFetch)
            .await
            .expect("fetch")
            .unwrap_or_else(|e| panic!("fetch from the first of two cursors: {e:?}"));
        assert_eq!(o.rows, 1);
        wait_pinned(&proxy, id, Some("cursor")).await;
        let o = raw
            .run_internal(&fetch(stmt, 10), K::StmtFetch)
            .await
            .expect("fetch")
            .expect("fetch ok");
        assert_eq!(o.rows, want - 1, "the rest of that cursor");
    }
    wait_pinned(&proxy, id, None).await;
    // A fetch with no cursor open, and one for a statement never prepared, get the server's
    // errors in its words.
    let a_id = u32::from_le_bytes(a);
    for (stmt, code, message) in [
        (
            a,
            1421,
            format!("The statement ({a_id}) has no open cursor"),
        ),
        (
            999u32.to_le_bytes(),
            1243,
            "Unknown prepared statement handler (999) given to mysqld_stmt_fetch".to_string(),
        ),
    ] {
        let e = raw
            .run_internal(&fetch(&stmt, 1), K::StmtFetch)
            .await
            .expect("fetch")
            .expect_err("no cursor");
        let err = rwsplit::protocol::packets::parse_err(&e.payload).expect("an error packet");
        assert_eq!(
            (err.code, String::from_utf8_lossy(err.message).into_owned()),
            (code, message)
        );
    }
}

#[tokio::test]
async fn an_open_cursor_pins_until_its_last_row_or_a_reset() {
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let (t, mut setup) = five_rows(&proxy, "mux_cursor").await;
    for caps in common::EOF_STYLES {
        let mut raw = raw_client(&proxy, caps).await;
        let id = raw.connection_id;
        let stmt = common::raw_prepare(&mut raw, &format!("SELECT id FROM {t} ORDER BY id")).await;
        // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, one iteration, no parameters.
        let execute = [&[Command::StmtExecute as u8][..], &stmt, &[1, 1, 0, 0, 0]].concat();
        let fetch = |n: u32| [&[Command::StmtFetch as u8][..], &stmt, &n.to_le_bytes()].concat();
        let o = open_cursor(&mut raw, &execute).await;
        assert_eq!(o.rows, 0, "rows come by fetch");
        wait_pinned(&proxy, id, Some("cursor")).await;
        // Other sessions go on reading meanwhile, on the other servers: not waiting for the
        // cursor's connection (that would take the 5 s checkout timeout).
        for _ in 0..5 {
            let read = setup.query_first(format!("SELECT COUNT(*) FROM {t}"));
            let n: Option<i64> = match tokio::time::timeout(Duration::from_secs(2), read).await {
                Ok(r) => r.expect("bystander read"),
                Err(_) => panic!(
                    "a bystander read waited for the cursor's connection: {:?} {:?}",
                    proxy.shared.health.snapshot.load().backends,
                    proxy.shared.pools.stats()
                ),
            };
            assert_eq!(n, Some(5));
        }
        let o = raw
            .run_internal(&fetch(2), K::StmtFetch)
            .await
            .expect("fetch")
            .expect("fetch ok");
        assert_eq!(o.rows, 2);
        wait_pinned(&proxy, id, Some("cursor")).await;
        let o = raw
            .run_internal(&fetch(10), K::StmtFetch)
            .await
            .expect("fetch")
            .expect("fetch ok");
        assert_eq!(o.rows, 3, "the rest, from the same cursor");
        wait_pinned(&proxy, id, None).await;

        // COM_STMT_RESET closes the cursor: the pin ends, a fetch is an error.
        open_cursor(&mut raw, &execute).await;
        wait_pinned(&proxy, id, Some("cursor")).await;
        let reset = [&[Command::StmtReset as u8][..], &stmt].concat();
        raw.run_internal(&reset, K::Single)
            .await
            .expect("reset")
            .expect("reset ok");
        wait_pinned(&proxy, id, None).await;
        let r = raw
            .run_internal(&fetch(1), K::StmtFetch)
            .await
            .expect("fetch after reset");
        assert!(r.is_err(), "no cursor after COM_STMT_RESET");
        // The statement itself still works, without a cursor too.
        let o = raw
            .run_internal(
                &[&[Command::StmtExecute as u8][..], &stmt, &[0, 1, 0, 0, 0]].concat(),
                K::StmtExecute { cursor: false },
            )
            .await
            .expect("execute")
            .expect("execute ok");
        assert_eq!(o.rows, 5);
        wait_pinned(&proxy, id, None).await;
    }
}

#[tokio::test]
async fn a_failed_sync_reports_the_servers_error_and_leaves_both_sessions_sound() {
    let proxy = one_connection_per_server();
    let db = unique("mux_gone");
    let mut root = direct(common::PRIMARY_PORT).await;
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!("GRANT ALL ON {db}.* TO 'app'@'%'"),
    ] {
        root.query_drop(sql).await.expect("setup");
    }
    wait_sync();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    // Each of a's statements needs its schema and its SETs brought to the one connection b
    // also uses: a reset and several commands, pipelined.
    a.query_drop(format!("USE {db}")).await.expect("use");
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+02:00'")
        .await
        .expect("set a");
    b.query_drop("SET time_zone = '-05:00'")
        .await
        .expect("set b");
    for _ in 0..3 {
        assert_eq!(tz(&mut a, true).await, "+02:00");
        assert_eq!(tz(&mut b, true).await, "-05:00");
    }
    root.query_drop(format!("DROP DATABASE {db}"))
        .await
        .expect("drop");
    wait_sync();
    let e = a
        .query_drop("/* rwsplit:primary */ SELECT 1")
        .await
        .expect_err("the session's schema is gone");
    assert!(
        e.to_string().contains("1049") || e.to_string().contains("1044"),
        "{e}"
    );
    // b's state was not disturbed by a's failed sync on the same connection: neither its own
    // setting, nor one of a's (replayed after the failed schema, on that connection).
    assert_eq!(tz(&mut b, true).await, "-05:00");
    let mode: Option<String> = b
        .query_first("/* rwsplit:primary */ SELECT @@session.sql_mode")
        .await
        .expect("b's sql_mode");
    assert!(
        !mode.as_deref().unwrap_or_default().contains("ANSI_QUOTES"),
        "a's sql_mode reached b: {mode:?}"
    );
    // a moves on with its variables intact.
    a.query_drop("USE app").await.expect("use app");
    let (mode, zone): (String, String) = a
        .query_first("/* rwsplit:primary */ SELECT @@session.sql_mode, @@session.time_zone")
        .await
        .expect("settings")
        .expect("row");
    assert_eq!((mode.as_str(), zone.as_str()), ("ANSI_QUOTES", "+02:00"));
    assert_eq!(tz(&mut b, true).await, "-05:00");
}

#[tokio::test]
async fn kill_query_from_another_client_stops_a_running_statement_and_only_it() {
    let proxy = Proxy::start();
    let mut victim = proxy.conn().await;
    let mut bystander = proxy.conn().await;
    let mut killer = proxy.conn().await;
    let victim_id = victim.id();
    let started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (r.map_err(|e| e.to_string()), started.elapsed(), victim)
    });
    let other = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = bystander.query_first("SELECT SLEEP(2)").await;
        r.expect("the bystander's statement is not killed")
    });
    running_on_a_backend(&proxy, victim_id).await;
    let kill_at = Instant::now();
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .expect("kill query");
    let (result, _, mut victim) = sleeping.await.expect("join");
    assert!(
        kill_at.elapsed() < Duration::from_secs(1),
        "the statement ran {:?} after KILL QUERY",
        kill_at.elapsed()
    );
    // MariaDB ends an interrupted SLEEP() early with 1 (MySQL too); some versions send 1317.
    match result {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert!(e.contains("1317") || e.contains("interrupted"), "{e}"),
    }
    assert_eq!(other.await.expect("join"), Some(0));
    // The session goes on.
    let one: Option<i64> = victim.query_first("SELECT 1").await.expect("after kill");
    assert_eq!(one, Some(1));

    // Unknown ids are refused as the server refuses them.
    let e = killer
        .query_drop("KILL QUERY 999999999")
        .await
        .expect_err("unknown id");
    assert!(e.to_string().contains("1094"), "{e}");

    // KILL CONNECTION ends the session.
    killer
        .query_drop(format!("KILL {victim_id}"))
        .await
        .expect("kill connection");
    let gone = victim.query_drop("SELECT 1").await;
    assert!(gone.is_err(), "the killed session still answers");
    let mut d = direct(common::PRIMARY_PORT).await;
    d.query_drop("SELECT 1").await.expect("primary fine");
}

/// Waits until session `id` has a statement running on a backend thread.
/// A client that read its id with `CONNECTION_ID()` (a backend thread) and kills it from
/// another connection, as tools that cancel long queries do, kills that session's statement.
/// Session ids start far above the servers' thread ids, so the one is not taken for the other.
#[tokio::test]
async fn kill_of_the_backend_thread_connection_id_gave_reaches_the_session_running_there() {
    let proxy = Proxy::start();
    let mut victim = proxy.conn().await;
    let mut killer = proxy.conn().await;
    for c in [&victim, &killer] {
        assert!(c.id() >= rwsplit::session::SESSION_ID_BASE, "{}", c.id());
    }
    // In a transaction the victim's statements run on one connection.
    victim.query_drop("BEGIN").await.expect("begin");
    let thread: u32 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .expect("connection id")
        .expect("row");
    let victim_id = victim.id();
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (r.map_err(|e| e.to_string()), victim)
    });
    // The SLEEP itself on its backend (not the statement before it, whose end the session
    // may not have noted yet).
    proxy
        .wait_session(victim_id, "the SLEEP never started on a backend", |i| {
            i.backend_thread.is_some() && i.digest.as_deref().is_some_and(|d| d.contains("SLEEP"))
        })
        .await;
    let kill_at = Instant::now();
    killer
        .query_drop(format!("KILL QUERY {thread}"))
        .await
        .expect("kill query by backend thread");
    let (result, mut victim) = sleeping.await.expect("join");
    assert!(
        kill_at.elapsed() < Duration::from_secs(5),
        "the statement ran {:?} after KILL QUERY",
        kill_at.elapsed()
    );
    match result {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert!(e.contains("1317") || e.contains("interrupted"), "{e}"),
    }
    // Nothing runs on that thread now (once the session has noted its statement's end, a
    // moment after the client got the answer): an unknown thread, as the server says of a
    // thread id it does not have.
    proxy
        .wait_session(victim_id, "the killed statement's end noted", |i| {
            i.backend_thread.is_none()
        })
        .await;
    let e = killer
        .query_drop(format!("KILL QUERY {thread}"))
        .await
        .expect_err("no statement runs there");
    assert!(e.to_string().contains("1094"), "{e}");
    victim
        .query_drop("ROLLBACK")
        .await
        .expect("the session goes on");
}

/// The id `CONNECTION_ID()` gave a session names its own connection to its client. With
/// multiplexing another session may run on that backend thread later: a `KILL QUERY` of the id
/// from the first session is its own KILL interrupted (1317, as directly), and from a third
/// session an unknown thread (1094); neither touches the statement running there, which that
/// session never read the id of.
#[tokio::test]
async fn kill_query_of_a_thread_id_never_hits_a_session_that_did_not_read_it() {
    let proxy = one_connection_per_server();
    let mut reader = proxy.conn().await;
    let mut bystander = proxy.conn().await;
    reader.query_drop("BEGIN").await.expect("begin");
    let thread: u32 = reader
        .query_first("SELECT CONNECTION_ID()")
        .await
        .expect("connection id")
        .expect("row");
    reader.query_drop("COMMIT").await.expect("commit");
    let mut runner = proxy.conn().await;
    let runner_id = runner.id();
    let sleeping = tokio::spawn(async move {
        runner.query_drop("BEGIN").await.expect("begin");
        let r: Result<Option<i64>, _> = runner.query_first("SELECT SLEEP(2)").await;
        r.map_err(|e| e.to_string())
    });
    proxy
        .wait_session(runner_id, "the SLEEP never started on a backend", |i| {
            i.backend_thread.is_some() && i.digest.as_deref().is_some_and(|d| d.contains("SLEEP"))
        })
        .await;
    // The primary's one connection: the thread the reader was told of.
    let running_on = proxy
        .shared
        .sessions
        .lock()
        .expect("sessions")
        .get(&runner_id)
        .and_then(|i| i.lock().expect("info").backend_thread);
    assert_eq!(running_on, Some(thread));
    let e = reader
        .query_drop(format!("KILL QUERY {thread}"))
        .await
        .expect_err("its own KILL is interrupted");
    assert!(e.to_string().contains("1317"), "{e}");
    let e = bystander
        .query_drop(format!("KILL QUERY {thread}"))
        .await
        .expect_err("a thread it knows nothing of");
    assert!(e.to_string().contains("1094"), "{e}");
    let slept = sleeping.await.expect("join");
    assert_eq!(slept, Ok(Some(0)), "the running statement was interrupted");
    reader
        .query_drop("SELECT 1")
        .await
        .expect("the reader goes on");
}

/// `KILL` with a quoted id (what a client that quotes its parameters sends), comments or
/// `CONNECTION_ID()` is the plain form; in a prepared statement, a `PREPARE` or an `EXECUTE IMMEDIATE` it is refused
/// (1235), never passed to a server, which would take the id for one of its threads: whatever
/// session's connection that is.
#[tokio::test]
async fn kill_is_answered_by_rwsplit_in_every_form_or_refused() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    let id = c.id();
    let e = c
        .query_drop(format!("KILL /* cancel */ QUERY '{id}'"))
        .await
        .expect_err("its own KILL is interrupted");
    assert!(e.to_string().contains("1317"), "{e}");
    for sql in [
        format!("EXECUTE IMMEDIATE 'KILL QUERY {id}'"),
        format!("PREPARE s FROM 'KILL {id}'"),
        format!("SELECT 1; KILL QUERY {id}"),
        format!("BEGIN NOT ATOMIC KILL QUERY {id}; END"),
    ] {
        let e = c.query_drop(&sql).await.expect_err("refused");
        assert!(e.to_string().contains("1235"), "{sql}: {e}");
    }
    let e = c
        .exec_drop("KILL QUERY ?", (id,))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("1235"), "{e}");
    let e = c
        .query_drop("KILL QUERY CONNECTION_ID()")
        .await
        .expect_err("its own KILL is interrupted");
    assert!(e.to_string().contains("1317"), "{e}");
    let one: Option<i64> = c
        .query_first("SELECT 1")
        .await
        .expect("the session goes on");
    assert_eq!(one, Some(1));
    // As directly on MariaDB: 1927, and the connection ends.
    let e = c
        .query_drop("KILL CONNECTION_ID()")
        .await
        .expect_err("it kills itself");
    assert!(e.to_string().contains("1927"), "{e}");
    c.query_drop("SELECT 1")
        .await
        .expect_err("the connection is gone");
}

async fn running_on_a_backend(proxy: &Proxy, id: u32) {
    proxy
        .wait_session(id, "the statement never started on a backend", |i| {
            i.backend_thread.is_some()
        })
        .await;
}

/// A client that sends its next command before the running one's answer (pipelining) has it
/// queued in rwsplit's buffer, where no idle wait sees a KILL, or still in the socket. Either
/// way `KILL CONNECTION` ends the session before that command runs, as on the server.
#[tokio::test]
async fn kill_connection_stops_a_command_pipelined_behind_the_running_one() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = Proxy::start();
    let mut killer = proxy.conn().await;
    for together in [true, false] {
        let t = unique("kill_pipe");
        killer
            .query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
            .await
            .expect("setup");
        let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
        let victim_id = raw.connection_id;
        let query = |sql: String| [&[Command::Query as u8][..], sql.as_bytes()].concat();
        let insert = query(format!("INSERT INTO {t} VALUES (1)"));
        raw.queue_command(&query("SELECT SLEEP(30)".into()))
            .await
            .expect("queue");
        if together {
            // In one write: rwsplit reads both into its buffer at once.
            raw.queue_command(&insert).await.expect("queue");
        }
        raw.flush_commands().await.expect("send");
        running_on_a_backend(&proxy, victim_id).await;
        if !together {
            // Sent while the SLEEP runs: it waits in the socket, unread.
            raw.send_command(&insert).await.expect("send the INSERT");
        }
        killer
            .query_drop(format!("KILL {victim_id}"))
            .await
            .expect("kill connection");
        // The SLEEP's answer (cut short: 1, or error 1317), then nothing: the session ends.
        let answer = tokio::time::timeout(Duration::from_secs(5), raw.read_internal(K::Query))
            .await
            .expect("the interrupted SLEEP answers");
        match answer {
            Ok(Ok(o)) => assert_eq!(o.rows, 1, "together: {together}"),
            Ok(Err(e)) => assert_eq!(e.payload.get(1..3), Some(&1317u16.to_le_bytes()[..])),
            Err(e) => panic!("together: {together}: the SLEEP's answer did not come: {e}"),
        }
        let next = tokio::time::timeout(Duration::from_secs(5), raw.read_internal(K::Query))
            .await
            .expect("the session ends");
        assert!(
            next.is_err(),
            "together: {together}: the pipelined INSERT was answered: {next:?}"
        );
        let mut d = direct(common::PRIMARY_PORT).await;
        let n: Option<i64> = d
            .query_first(format!("SELECT COUNT(*) FROM app.{t}"))
            .await
            .expect("count");
        assert_eq!(
            n,
            Some(0),
            "together: {together}: the pipelined INSERT ran after KILL CONNECTION"
        );
    }
}

/// `KILL CONNECTION` of a session whose statement waits for a backend connection (none is
/// running yet, so there is nothing to interrupt) ends the session before that statement runs,
/// even when a connection frees up afterwards.
#[tokio::test]
async fn kill_connection_of_a_session_waiting_for_a_connection_stops_its_statement() {
    let proxy =
        Proxy::start_with(|t| pool_settings(t, "max_connections = 1\ncheckout_timeout = \"10s\""));
    let t = unique("kill_wait");
    let mut holder = proxy.conn().await;
    let mut victim = proxy.conn().await;
    let mut killer = proxy.conn().await;
    holder
        .query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
        .await
        .expect("setup");
    let victim_id = victim.id();
    // The primary's only connection, held by an open transaction.
    holder.query_drop("BEGIN").await.expect("begin");
    primary_thread(&mut holder).await;
    let insert = format!("INSERT INTO {t} VALUES (1)");
    let waiting = tokio::spawn(async move { victim.query_drop(insert).await });
    let queued = async || {
        let stats = proxy.shared.pools.stats();
        stats
            .iter()
            .any(|s| s.backend == "primary" && s.waiting > 0)
            .then_some(())
            .ok_or("no checkout waits")
    };
    common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the INSERT never waited for the primary",
        queued,
    )
    .await;
    killer
        .query_drop(format!("KILL {victim_id}"))
        .await
        .expect("kill connection");
    holder
        .query_drop("COMMIT")
        .await
        .expect("commit frees the connection");
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the killed session answers")
        .expect("join");
    assert!(r.is_err(), "the killed session's INSERT succeeded");
    let n: Option<i64> = holder
        .query_first(format!("SELECT COUNT(*) FROM {t} FOR UPDATE"))
        .await
        .expect("count");
    assert_eq!(n, Some(0), "the INSERT ran after KILL CONNECTION");
}

/// `pool.min_idle` connections are renewed once they pass `idle_timeout`, not kept stale: a
/// stale one is never lent, so a pool of them would make the next checkout pay a connect.
/// Seen from the server, the pool's connections (of a user of their own) are never idle much
/// longer than `idle_timeout` plus the reaper's second.
#[tokio::test]
async fn min_idle_connections_are_renewed_past_idle_timeout() {
    reader_user("minidle_u", "minidle").await;
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "min_idle = 2\nidle_timeout = \"1s\"").replace(
            "[[users]]",
            "[[users]]\nname = \"minidle_u\"\npassword = \"minidle\"\n\n[[users]]",
        )
    });
    let mut c = Conn::new(proxy.opts().user(Some("minidle_u")).pass(Some("minidle")))
        .await
        .expect("login");
    primary_thread(&mut c).await;
    c.disconnect().await.expect("disconnect");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut root = direct(common::PRIMARY_PORT).await;
    let (n, idle_ms): (u64, Option<f64>) = root
        .query_first(
            "SELECT COUNT(*), MAX(TIME_MS) FROM information_schema.PROCESSLIST \
             WHERE USER = 'minidle_u'",
        )
        .await
        .expect("processlist")
        .expect("row");
    assert!(n >= 2, "min_idle = 2, but the primary sees {n} connections");
    let idle_ms = idle_ms.unwrap_or(0.0);
    assert!(
        idle_ms < 3000.0,
        "a min_idle connection sat idle {idle_ms} ms, past idle_timeout (1 s) and the reaper"
    );
}

/// Creates a server user that may read `app`, on every server, for tests with a second user.
async fn reader_user(name: &str, password: &str) {
    let mut root = direct(common::PRIMARY_PORT).await;
    for sql in [
        format!("CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{password}'"),
        format!("GRANT SELECT ON app.* TO '{name}'@'%'"),
    ] {
        root.query_drop(sql).await.expect("setup");
    }
    wait_sync();
}

/// A user's own `multiplexing` and `consistency` beat `[routing]`'s. One connection to the
/// primary in all: a session of a user with `multiplexing = false` holds it while idle, so
/// another session waits for it in vain (1040, at its login's schema check) until the first
/// ends; that user's reads go to the primary (`consistency = "strong"`), the default user's to
/// replicas.
#[tokio::test]
async fn a_users_own_multiplexing_and_consistency_override_the_routing_defaults() {
    reader_user("mux_own", "own").await;
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"500ms\"\nmax_connections = 1").replace(
            "[[users]]",
            "[[users]]\nname = \"mux_own\"\npassword = \"own\"\nmultiplexing = false\n\
             consistency = \"strong\"\n\n[[users]]",
        )
    });
    let own = || Conn::new(proxy.opts().user(Some("mux_own")).pass(Some("own")));
    let primary = common::server_id(common::PRIMARY_PORT).await;

    // The default user multiplexes: two sessions take turns on the one primary connection.
    let mut c = proxy.conn().await;
    let mut d = proxy.conn().await;
    for _ in 0..3 {
        primary_thread(&mut c).await;
        primary_thread(&mut d).await;
    }
    let id: u64 = c
        .query_first("SELECT @@server_id")
        .await
        .expect("read")
        .expect("row");
    assert_ne!(id, primary, "the default user's read went to the primary");
    drop((c, d));

    let mut a = own().await.expect("login as mux_own");
    let held = primary_thread(&mut a).await;
    // The login's schema check needs the primary (strong): taken.
    let e = own()
        .await
        .expect_err("the only primary connection is held by an idle session");
    assert_eq!(common::server_code(&e), Some(1040), "{e}");
    for _ in 0..3 {
        let id: u64 = a
            .query_first("SELECT @@server_id")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(id, primary, "a read of a strong user went to a replica");
        assert_eq!(
            primary_thread(&mut a).await,
            held,
            "the session changed connection"
        );
    }
    a.disconnect().await.expect("disconnect");
    let mut b = own().await.expect("login once the first session ended");
    assert_ne!(primary_thread(&mut b).await, 0);
}

#[tokio::test]
async fn kill_of_another_users_session_is_refused_like_the_server_does() {
    reader_user("mux_other", "other").await;
    let proxy = Proxy::start_with(|t| {
        t.replace(
            "[[users]]",
            "[[users]]\nname = \"mux_other\"\npassword = \"other\"\n\n[[users]]",
        )
    });
    let mut victim = proxy.conn().await;
    let mut other = Conn::new(proxy.opts().user(Some("mux_other")).pass(Some("other")))
        .await
        .expect("login as another user");
    for kill in ["KILL QUERY", "KILL", "KILL CONNECTION"] {
        let e = other
            .query_drop(format!("{kill} {}", victim.id()))
            .await
            .expect_err("another user's session");
        assert!(e.to_string().contains("1095"), "{kill}: {e}");
    }
    let one: Option<i64> = victim.query_first("SELECT 1").await.expect("victim lives");
    assert_eq!(one, Some(1));
    // After COM_CHANGE_USER the session is the new user's: the old user may no longer kill
    // it, the new one may.
    let mut app = proxy.conn().await;
    victim
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("mux_other".into()))
                .with_pass(Some("other".into()))
                .with_db_name(Some("app".into())),
        )
        .await
        .expect("change user");
    let e = app
        .query_drop(format!("KILL QUERY {}", victim.id()))
        .await
        .expect_err("the session's user before COM_CHANGE_USER");
    assert!(e.to_string().contains("1095"), "{e}");
    other
        .query_drop(format!("KILL QUERY {}", victim.id()))
        .await
        .expect("the session's user since COM_CHANGE_USER");
    // Its own session a user may kill, with the server's answers: the KILL itself is what
    // gets interrupted.
    let own = other.id();
    let e = other
        .query_drop(format!("KILL QUERY {own}"))
        .await
        .expect_err("KILL QUERY of the session itself");
    assert!(e.to_string().contains("1317"), "{e}");
    let one: Option<i64> = other.query_first("SELECT 1").await.expect("still there");
    assert_eq!(one, Some(1));
    let e = other
        .query_drop(format!("KILL {own}"))
        .await
        .expect_err("KILL of the session itself");
    assert!(e.to_string().contains("1927"), "{e}");
    assert!(
        other.query_drop("SELECT 1").await.is_err(),
        "the session ended"
    );
}

/// Runs `clients` sessions, each a short mixed workload (point reads, a prepared read, writes,
/// a transaction), `at_once` of them at a time (all connected before any starts when that is
/// all of them), and returns (statements, errors, elapsed, peak backend connections).
async fn mixed_load(
    proxy: &Proxy,
    table: &str,
    clients: usize,
    at_once: usize,
) -> (usize, usize, Duration, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, shared) = (peak.clone(), done.clone(), proxy.shared.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let open: usize = shared.pools.stats().iter().map(|s| s.open).sum();
                peak.fetch_max(open, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let statements = Arc::new(AtomicUsize::new(0));
    let connect_gate = Arc::new(tokio::sync::Semaphore::new(64));
    let turns = Arc::new(tokio::sync::Semaphore::new(at_once));
    let all_open = Arc::new(tokio::sync::Barrier::new(if at_once >= clients {
        clients
    } else {
        1
    }));
    let started = Instant::now();
    let mut running = Vec::new();
    for n in 0..clients {
        let (table, statements, opts) = (table.to_string(), statements.clone(), proxy.opts());
        let (connect_gate, turns, all_open) =
            (connect_gate.clone(), turns.clone(), all_open.clone());
        running.push(tokio::spawn(async move {
            let _turn = turns.acquire().await.expect("turn");
            let connected = {
                let _p = connect_gate.acquire().await.expect("gate");
                Conn::new(opts).await
            };
            all_open.wait().await;
            let mut c = match connected {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("client {n}: connect: {e}");
                    return 1;
                }
            };
            let mut errors = 0;
            let mut ok = |r: Result<(), mysql_async::Error>| match r {
                Ok(()) => {
                    statements.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("client {n}: {e}");
                }
            };
            for i in 0..3 {
                let id = (n * 7 + i) % 100 + 1;
                ok(
                    c.query_drop(format!("SELECT v FROM {table} WHERE id = {id}"))
                        .await,
                );
                ok(
                    c.exec_drop(format!("SELECT v FROM {table} WHERE id = ?"), (id,))
                        .await,
                );
            }
            ok(
                c.query_drop(format!("INSERT INTO {table} (v) VALUES ({n})"))
                    .await,
            );
            ok(c.query_drop("BEGIN").await);
            ok(c.query_drop(format!(
                "UPDATE {table} SET v = v + 1 WHERE id = {}",
                n % 100 + 1
            ))
            .await);
            ok(c.query_drop("COMMIT").await);
            ok(c.disconnect().await);
            errors
        }));
    }
    let mut errors = 0;
    for r in running {
        errors += r.await.expect("join");
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    (
        statements.load(Ordering::Relaxed),
        errors,
        elapsed,
        peak.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_share_forty_backend_connections_without_errors() {
    const CLIENTS: usize = 2_000;
    const LIMIT: &str = "max_connections = 13"; // x 3 backends = 39
    let mux =
        Proxy::start_with(|t| pool_settings(t, &format!("checkout_timeout = \"20s\"\n{LIMIT}")));
    let t = unique("mux_scale");
    let mut setup = mux.conn().await;
    setup
        .query_drop(format!(
            "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
        ))
        .await
        .expect("create");
    setup
        .query_drop(format!("INSERT INTO {t} (v) SELECT seq FROM seq_1_to_100"))
        .await
        .expect("fill");
    setup.disconnect().await.expect("disconnect");
    wait_sync();
    let run = mixed_load(&mux, &t, CLIENTS, CLIENTS);
    let (n, errors, elapsed, peak) = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the load finished in time");
    // Session pooling, the same limit and the same work: a session holds its connections for
    // life, so only about as many clients as connections can be open at once.
    let pooled = Proxy::start_with(|t| {
        pool_settings(t, &format!("checkout_timeout = \"20s\"\n{LIMIT}"))
            .replace("[routing]", "[routing]\nmultiplexing = false")
    });
    let (pn, perrors, pelapsed, ppeak) = tokio::time::timeout(
        Duration::from_secs(240),
        mixed_load(&pooled, &t, CLIENTS, 13),
    )
    .await
    .expect("the pooled load finished in time");
    println!(
        "multiplexing: {CLIENTS} clients on at most {peak} backend connections ({:.0}:1), \
         {n} statements in {elapsed:.2?} ({:.0}/s), {errors} errors",
        CLIENTS as f64 / peak.max(1) as f64,
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "session pooling: {CLIENTS} clients, 13 at a time, on at most {ppeak} backend \
         connections, {pn} statements in {pelapsed:.2?} ({:.0}/s), {perrors} errors",
        pn as f64 / pelapsed.as_secs_f64()
    );
    assert_eq!(errors, 0);
    assert_eq!(perrors, 0);
    assert!(peak <= 40, "{peak} backend connections");
    assert_eq!(n, CLIENTS * 11);
    assert_eq!(pn, CLIENTS * 11);
}

/// One connection to each server, and reads (session commands too) on replica1 only: every
/// session of a test takes its turn on the same replica connection.
fn one_replica_connection() -> Proxy {
    Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1")
            .replace(
                "max_replica_lag = \"2s\"",
                "max_replica_lag = \"2s\"\nreplica_selection = \"weighted\"",
            )
            .replace(
                "address = \"127.0.0.1:3308\"",
                "address = \"127.0.0.1:3308\"\nweight = 0",
            )
    })
}

async fn resets(proxy: &Proxy) -> f64 {
    let (_, text) = proxy.admin_get("/metrics", None).await;
    common::metric_sum(&text, "rwsplit_state_syncs_total", &["kind=\"reset\""])
}

/// Runs `sql` on a raw client (CLIENT_DEPRECATE_EOF) and returns its one row: a client that
/// sends nothing but what the test says (drivers read settings at connect).
async fn raw_row(raw: &mut rwsplit::pool::BackendConn, sql: &str) -> Vec<String> {
    use rwsplit::protocol::frame::read_packet;
    let mut packet = vec![rwsplit::protocol::Command::Query as u8];
    packet.extend_from_slice(sql.as_bytes());
    raw.send_command(&packet).await.expect("send");
    let mut buf = Vec::new();
    read_packet(&mut raw.reader, &mut buf, 1 << 24)
        .await
        .expect("column count");
    assert!(buf[0] != 0xFF, "{sql}: {}", String::from_utf8_lossy(&buf));
    let columns = usize::from(buf[0]);
    if buf[0] == 0 {
        return Vec::new();
    }
    for _ in 0..columns {
        read_packet(&mut raw.reader, &mut buf, 1 << 24)
            .await
            .expect("column");
    }
    read_packet(&mut raw.reader, &mut buf, 1 << 24)
        .await
        .expect("row");
    let mut row = Vec::new();
    let mut at = 0;
    for _ in 0..columns {
        let len = usize::from(buf[at]);
        row.push(String::from_utf8_lossy(&buf[at + 1..at + 1 + len]).into_owned());
        at += 1 + len;
    }
    read_packet(&mut raw.reader, &mut buf, 1 << 24)
        .await
        .expect("end of rows");
    row
}

/// Runs `sql` on a raw client; returns the OK packet's status flags.
async fn raw_run(raw: &mut rwsplit::pool::BackendConn, sql: &str) -> u16 {
    let mut packet = vec![rwsplit::protocol::Command::Query as u8];
    packet.extend_from_slice(sql.as_bytes());
    raw.run_internal(&packet, rwsplit::protocol::response::ResponseKind::Query)
        .await
        .expect("send")
        .unwrap_or_else(|e| panic!("{sql}: error {}", e.code()))
        .status
}

#[tokio::test]
async fn a_session_repeating_the_set_of_the_last_one_takes_its_connection_without_a_reset() {
    use mysql_common::constants::CapabilityFlags as C;
    const AUTOCOMMIT: u16 = 0x0002;
    let proxy = one_replica_connection();
    let raw = || raw_client(&proxy, C::CLIENT_DEPRECATE_EOF);
    let names = "SET NAMES latin1";
    let settings =
        "SELECT @@time_zone, @@character_set_client, DATABASE(), @@autocommit, CONNECTION_ID()";
    // What every client of an application sends after connecting (login with schema `app`).
    let mut a = raw().await;
    raw_run(&mut a, names).await;
    let a_row = raw_row(&mut a, settings).await;
    assert_eq!(a_row[..4], ["SYSTEM", "latin1", "app", "1"]);
    drop(a);

    // The same login and SET: the connection already carries it, so no reset and no replay
    // (the login's schema check takes the connection as it is too).
    let before = resets(&proxy).await;
    let mut b = raw().await;
    assert_ne!(raw_run(&mut b, names).await & AUTOCOMMIT, 0);
    assert_eq!(
        raw_row(&mut b, settings).await,
        a_row,
        "same state, same connection"
    );
    assert_eq!(resets(&proxy).await - before, 0.0);
    // More state: autocommit off, then a time zone.
    assert_eq!(raw_run(&mut b, "SET autocommit = 0").await & AUTOCOMMIT, 0);
    raw_run(&mut b, "SET time_zone = '+05:00'").await;
    drop(b);

    // The connection now carries more than a session that sends only SET NAMES will have:
    // it is reset first, so the OK says autocommit is on (drivers believe it) and the
    // session does not get the others' settings.
    let before = resets(&proxy).await;
    let mut c = raw().await;
    assert_ne!(raw_run(&mut c, names).await & AUTOCOMMIT, 0);
    assert_eq!(resets(&proxy).await - before, 1.0);
    let c_row = raw_row(&mut c, settings).await;
    assert_eq!(c_row, a_row, "defaults again, same connection");
    drop(c);

    // A SET that reads a variable is never taken as already run: each session gets +1 once.
    let bump = "SET SESSION div_precision_increment = @@div_precision_increment + 1";
    for round in 0..2 {
        let mut d = raw().await;
        raw_run(&mut d, bump).await;
        let row = raw_row(&mut d, "SELECT @@div_precision_increment").await;
        assert_eq!(row, ["5"], "round {round}");
    }
}

/// A session keeps the server's id of its statement on the connection it last ran on, so an
/// execute need not look the statement up by its text. The id must not outlive the server's
/// statement: here another session prepares the same text on the one replica connection
/// (which closes the older id there), and then the connection is reset for the first session.
#[tokio::test]
async fn a_statement_runs_again_after_its_connection_closed_or_reset_the_servers_copy() {
    let proxy = one_replica_connection();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let sql = format!("SELECT ? + 10 AS {}", unique("v"));
    let sa = a.prep(sql.as_str()).await.expect("prepare a");
    let x: Option<i64> = a.exec_first(&sa, (1,)).await.expect("exec a");
    assert_eq!(x, Some(11));

    // The same text prepared by b on the same connection: the server's older id is closed.
    let sb = b.prep(sql.as_str()).await.expect("prepare b");
    let y: Option<i64> = b.exec_first(&sb, (2,)).await.expect("exec b");
    assert_eq!(y, Some(12));
    let x: Option<i64> = a
        .exec_first(&sa, (3,))
        .await
        .expect("exec a after b prepared the same text");
    assert_eq!(x, Some(13));

    // b leaves state on the connection that a does not have: a's next statement resets it,
    // which drops every statement prepared there.
    b.query_drop("SET time_zone = '+04:00'")
        .await
        .expect("set b");
    let _: Option<String> = b.query_first("SELECT @@time_zone").await.expect("read b");
    let before = resets(&proxy).await;
    let x: Option<i64> = a.exec_first(&sa, (4,)).await.expect("exec a after a reset");
    assert_eq!(x, Some(14));
    assert_eq!(
        resets(&proxy).await - before,
        1.0,
        "the connection was reset"
    );
}

/// Session settings as one string, read through the session.
async fn state_of(c: &mut Conn) -> String {
    let row: Row = c
        .query_first(
            "SELECT CONCAT_WS('|', @@time_zone, @@character_set_client, @@sql_mode, \
             @@div_precision_increment, @@autocommit)",
        )
        .await
        .expect("state")
        .expect("row");
    mysql_async::from_row(row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_with_overlapping_sets_on_three_connections_each_see_their_own_state() {
    use std::sync::Arc;
    // Sequences that share prefixes and repeat each other, so sessions often find a pooled
    // connection carrying exactly their next state, or more, or another order; and one SET
    // that must never be taken as already run.
    const PROFILES: [&[&str]; 6] = [
        &["SET NAMES latin1"],
        // What PyMySQL sends by default; the reads then run in a transaction.
        &["SET NAMES latin1", "SET autocommit = 0"],
        &["SET NAMES latin1", "SET time_zone = '+05:00'"],
        &["SET time_zone = '+05:00'", "SET NAMES latin1"],
        &["SET NAMES latin1", "SET sql_mode = 'ANSI_QUOTES'"],
        &["SET SESSION div_precision_increment = @@div_precision_increment + 2"],
    ];
    let proxy = Arc::new(Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"20s\"\nmax_connections = 3")
    }));
    let mut fresh = proxy.conn().await;
    let defaults = state_of(&mut fresh).await;
    fresh.disconnect().await.expect("quit");
    let want = |profile: &[&str]| {
        let mut v: Vec<String> = defaults.split('|').map(str::to_string).collect();
        for set in profile {
            if set.contains("NAMES") {
                v[1] = "latin1".into();
            } else if set.contains("time_zone") {
                v[0] = "+05:00".into();
            } else if set.contains("sql_mode") {
                v[2] = "ANSI_QUOTES".into();
            } else if set.contains("autocommit") {
                v[4] = "OFF".into();
            } else {
                let d: u32 = v[3].parse().expect("number");
                v[3] = (d + 2).to_string();
            }
        }
        v.join("|")
    };
    let turns = Arc::new(tokio::sync::Semaphore::new(24));
    let mut running = Vec::new();
    for n in 0..150usize {
        let (proxy, turns) = (proxy.clone(), turns.clone());
        let profile = PROFILES[n % PROFILES.len()];
        let want = want(profile);
        running.push(tokio::spawn(async move {
            let _turn = turns.acquire().await.expect("turn");
            let mut c = proxy.conn().await;
            let mut wrong = Vec::new();
            for round in 0..2 {
                // The second round sends the same SETs again: each is then already carried.
                for set in profile {
                    c.query_drop(*set).await.expect("set");
                }
                let want = if profile[0].contains("div_precision") && round == 1 {
                    let mut v: Vec<String> = want.split('|').map(str::to_string).collect();
                    v[3] = (v[3].parse::<u32>().expect("number") + 2).to_string();
                    v.join("|")
                } else {
                    want.clone()
                };
                for _ in 0..3 {
                    let got = state_of(&mut c).await;
                    if got != want {
                        wrong.push(format!("client {n} round {round}: {got} (want {want})"));
                    }
                }
            }
            c.disconnect().await.expect("quit");
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for r in running {
        wrong.extend(r.await.expect("join"));
    }
    assert!(
        wrong.is_empty(),
        "{} wrong reads: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let (_, text) = proxy.admin_get("/metrics", None).await;
    // The shortcut was taken: some SETs found a connection already carrying their state.
    let none = common::metric_sum(&text, "rwsplit_state_syncs_total", &["kind=\"none\""]);
    assert!(none > 0.0, "{text}");
}

#[tokio::test]
async fn prepared_scoped_and_mixed_sets_follow_the_session_to_every_connection() {
    let proxy = one_connection_per_server();
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    // Two scoped SETs of different variables: both stay in the log (they once shared a key).
    a.query_drop("SET @@SESSION.sql_mode = 'ANSI_QUOTES'")
        .await
        .expect("sql_mode");
    a.query_drop("SET @@SESSION.time_zone = '+02:00'")
        .await
        .expect("time_zone");
    // A prepared SET: carried as the value it set, not as its execute packet.
    a.exec_drop("SET SESSION div_precision_increment = ?", (7,))
        .await
        .expect("prepared set");
    // A SET that also assigns a user variable runs on the primary, where the variable is read.
    a.query_drop("SET NAMES latin1, @mux_mixed = 5")
        .await
        .expect("mixed set");
    for round in 0..4 {
        // The other session takes the connections in between: each read syncs again.
        b.query_drop("SET time_zone = '-01:00'").await.expect("b");
        let _: Option<String> = b.query_first("SELECT @@time_zone").await.expect("b read");
        let row: Row = a
            .query_first(
                "SELECT @@sql_mode, @@time_zone, @@div_precision_increment, \
                 @@character_set_client, @mux_mixed",
            )
            .await
            .expect("read")
            .expect("row");
        let got: (String, String, u32, String, Option<i64>) = mysql_async::from_row(row);
        assert_eq!(
            got,
            (
                "ANSI_QUOTES".into(),
                "+02:00".into(),
                7,
                "latin1".into(),
                Some(5)
            ),
            "round {round}"
        );
    }
}

/// `SET NAMES ... COLLATE ...` as a prepared statement (Laravel's connector with native
/// prepares): the server reports the character sets and the collation in an order of its own,
/// and the session's reads on other connections must have the collation, not the character
/// set's default (a character set replayed after the collation resets it).
#[tokio::test]
async fn a_prepared_set_names_with_a_collation_keeps_the_collation_on_every_connection() {
    let proxy = Proxy::start();
    proxy.replica_ready().await;
    let t = unique("mux_coll");
    let mut setup = proxy.conn().await;
    setup
        .query_drop(format!("CREATE TABLE {t} (x INT)"))
        .await
        .expect("create");
    // The order the server reports in differs between connections: several sessions.
    for session in 0..12 {
        let (names, collation) = [
            ("latin1' COLLATE 'latin1_german1_ci", "latin1_german1_ci"),
            ("utf8mb4' COLLATE 'utf8mb4_unicode_ci", "utf8mb4_unicode_ci"),
        ][session % 2];
        let mut c = proxy.conn().await;
        c.exec_drop(format!("SET NAMES '{names}'"), ())
            .await
            .expect("prepared SET NAMES");
        for i in 0..3 {
            c.query_drop(format!("INSERT INTO {t} VALUES ({i})"))
                .await
                .expect("write");
            let got: Option<String> = c
                .query_first(format!("SELECT @@collation_connection FROM {t} LIMIT 1"))
                .await
                .expect("read");
            assert_eq!(
                got.as_deref(),
                Some(collation),
                "session {session}, read {i}"
            );
        }
    }
    setup
        .query_drop(format!("DROP TABLE {t}"))
        .await
        .expect("drop");
}

/// A RELEASE_LOCK of a lock the session does not hold still counts down its named locks; at
/// zero the primary connection goes back to its pool reset, so a lock it still held is not
/// left on a pooled connection for whoever gets it next.
#[tokio::test]
async fn an_unmatched_release_lock_leaves_no_lock_on_a_pooled_connection() {
    let proxy = Proxy::start();
    let lock = unique("mux_lk");
    let mut c = proxy.conn().await;
    let got: Option<i64> = c
        .query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
        .await
        .expect("get_lock");
    assert_eq!(got, Some(1));
    let released: Option<Option<i64>> = c
        .query_first(format!("SELECT RELEASE_LOCK('{lock}_other')"))
        .await
        .expect("release another");
    assert_eq!(released, Some(None), "a lock never taken");
    let mut d = direct(common::PRIMARY_PORT).await;
    common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "the lock stayed on a pooled connection",
        async || match d
            .query_first::<i64, _>(format!("SELECT IS_FREE_LOCK('{lock}')"))
            .await
        {
            Ok(Some(1)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// State a hinted read makes on a replica (a function that sets a user variable, which the
/// server reports only as "state changed") keeps the session on its primary connection, and
/// the replica connection goes back to its pool reset: the next session there does not see it.
#[tokio::test]
async fn state_made_on_a_replica_does_not_reach_the_next_session_there() {
    // One replica takes reads, one connection to it: the next session's read gets the same.
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"5s\"\nmax_connections = 1").replace(
            "address = \"127.0.0.1:3307\"\nrole = \"replica\"\n",
            "address = \"127.0.0.1:3307\"\nrole = \"replica\"\nweight = 0\n",
        )
    });
    let f = unique("mux_fn");
    let mut root = direct(common::PRIMARY_PORT).await;
    root.query_drop(format!(
        "CREATE FUNCTION app.{f}() RETURNS INT DETERMINISTIC BEGIN SET @cache = 42; RETURN 1; END"
    ))
    .await
    .expect("create function");
    // What the connection's @cache is, read where a hinted read runs (a user variable read
    // directly goes to the primary).
    root.query_drop(format!(
        "CREATE FUNCTION app.{f}_get() RETURNS INT DETERMINISTIC RETURN @cache"
    ))
    .await
    .expect("create function");
    wait_sync();
    proxy.replica_ready().await;
    let mut a = proxy.conn().await;
    let one: Option<i64> = a
        .query_first(format!("/* rwsplit:replica */ SELECT app.{f}()"))
        .await
        .expect("hinted call");
    assert_eq!(one, Some(1));
    let mut b = proxy.conn().await;
    let (cache, server): (Option<i64>, u64) = b
        .query_first(format!(
            "/* rwsplit:replica */ SELECT app.{f}_get(), @@server_id"
        ))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(server, 3, "the read went to the one replica taking reads");
    assert_eq!(cache, None, "a's user variable reached b on the replica");
    for name in [f.clone(), format!("{f}_get")] {
        root.query_drop(format!("DROP FUNCTION app.{name}"))
            .await
            .expect("drop function");
    }
}

/// Long data that cannot reach a backend (its pool stays full for the checkout timeout) is
/// not dropped silently: the execute that follows is refused (1210), as the server refuses
/// one whose long data it lost, rather than run with its parameters read from the wrong bytes.
#[tokio::test]
async fn long_data_that_found_no_connection_makes_its_execute_fail() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = Proxy::start_with(|t| {
        pool_settings(t, "checkout_timeout = \"300ms\"\nmax_connections = 1")
    });
    let t = unique("mux_long_nowhere");
    let mut b = proxy.conn().await;
    b.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v BLOB, n INT)"
    ))
    .await
    .expect("create");
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let stmt =
        common::raw_prepare(&mut raw, &format!("INSERT INTO {t} (v, n) VALUES (?, ?)")).await;
    // b holds the one primary connection in a transaction while the long data is sent.
    b.query_drop("BEGIN").await.expect("begin");
    b.query_drop(format!("INSERT INTO {t} (v, n) VALUES ('b', 1)"))
        .await
        .expect("b's insert");
    let long = common::long_data(&stmt, b"long");
    raw.send_command(&long).await.expect("long data");
    tokio::time::sleep(Duration::from_millis(600)).await;
    b.query_drop("COMMIT").await.expect("commit");
    // COM_STMT_EXECUTE: no cursor, one iteration, null bitmap 0, types bound (BLOB, INT), no
    // value for the parameter sent as long data, n = 5.
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0xfc, 0, 0x03, 0, 5, 0, 0, 0],
    ]
    .concat();
    let err = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .expect_err("an execute whose long data was lost");
    let e = rwsplit::protocol::packets::parse_err(&err.payload).expect("an ERR packet");
    assert_eq!(e.code, 1210, "{}", String::from_utf8_lossy(e.message));
    assert!(
        String::from_utf8_lossy(e.message).contains("long data"),
        "{}",
        String::from_utf8_lossy(e.message)
    );
    let rows: Vec<i64> = b
        .query(format!(
            "/* rwsplit:primary */ SELECT n FROM {t} ORDER BY id"
        ))
        .await
        .expect("rows");
    assert_eq!(rows, vec![1]);
    b.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A named lock a procedure or stored function takes is not reported by the server as
/// session state: the connection the routine ran on goes back to its pool reset, so that no
/// other session is handed the lock and it is not held forever by a pooled connection.
#[tokio::test]
async fn a_named_lock_taken_inside_a_routine_does_not_stay_on_a_pooled_connection() {
    let proxy = one_connection_per_server();
    let name = unique("mux_routine_lock");
    // Created as root: a stored function needs SUPER with binary logging on.
    let mut root = direct(common::PRIMARY_PORT).await;
    root.query_drop(format!(
        "CREATE PROCEDURE app.{name}_p() DO GET_LOCK('{name}_p', 0)"
    ))
    .await
    .expect("create procedure");
    root.query_drop(format!(
        "CREATE FUNCTION app.{name}_f() RETURNS INT DETERMINISTIC NO SQL \
         RETURN GET_LOCK('{name}_f', 0)"
    ))
    .await
    .expect("create function");
    let mut a = proxy.conn().await;
    a.query_drop(format!("CALL {name}_p()"))
        .await
        .expect("call");
    let got: Option<i64> = a
        .query_first(format!("SELECT {name}_f()"))
        .await
        .expect("function");
    assert_eq!(got, Some(1));
    let id = a.id();
    // Settled (the connection goes back to its pool, reset just after the response), then
    // asked of the server directly.
    wait_pinned(&proxy, id, None).await;
    for lock in [format!("{name}_p"), format!("{name}_f")] {
        let sql = format!("SELECT IS_USED_LOCK('{lock}')");
        let root = &mut root;
        common::eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            "the routine's lock released",
            async || match root.query_first::<Option<u64>, _>(&sql).await {
                Ok(Some(None)) => Ok(()),
                other => Err(format!(
                    "{lock} is still held by a pooled connection: {other:?}"
                )),
            },
        )
        .await;
    }
    root.query_drop(format!("DROP PROCEDURE app.{name}_p"))
        .await
        .expect("drop");
    root.query_drop(format!("DROP FUNCTION app.{name}_f"))
        .await
        .expect("drop");
}

/// COM_STMT_RESET of a statement with both an open cursor and long data ends both pins: the
/// server closed the cursor too.
#[tokio::test]
async fn a_reset_of_a_statement_with_a_cursor_and_long_data_ends_both_pins() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_cursor_long").await;
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let id = raw.connection_id;
    let sql = format!("SELECT id FROM {t} WHERE CAST(id AS CHAR) > ? ORDER BY id");
    let stmt = common::raw_prepare(&mut raw, &sql).await;
    // CURSOR_TYPE_READ_ONLY, one iteration, null bitmap 0, types bound (VARCHAR), value "0".
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[1, 1, 0, 0, 0, 0, 1, 0x0f, 0, 1, b'0'],
    ]
    .concat();
    open_cursor(&mut raw, &execute).await;
    wait_pinned(&proxy, id, Some("cursor")).await;
    let long = common::long_data(&stmt, b"2");
    raw.send_command(&long).await.expect("long data");
    let reset = [&[Command::StmtReset as u8][..], &stmt].concat();
    raw.run_internal(&reset, K::Single)
        .await
        .expect("reset")
        .expect("reset ok");
    wait_pinned(&proxy, id, None).await;
}

/// A connection kept for an open cursor is never reset to bring it to the session's state:
/// after a `SET` of a variable the session had set before ran elsewhere (its log then no
/// longer starts with what that connection carries), the next read there replays the whole
/// log instead, and the cursor goes on where it was.
#[tokio::test]
async fn a_connection_kept_for_a_cursor_is_brought_up_to_date_without_a_reset() {
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_cursor_sync").await;
    let mut raw = raw_client(&proxy, common::EOF_STYLES[1]).await;
    let run = async |raw: &mut rwsplit::pool::BackendConn, sql: &str| {
        raw.run_internal(&Command::Query.packet(sql.as_bytes()), K::Query)
            .await
            .expect(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", e.code()))
    };
    run(&mut raw, "SET SESSION sql_mode = 'STRICT_ALL_TABLES'").await;
    let stmt = common::raw_prepare(&mut raw, &format!("SELECT id FROM {t} ORDER BY id")).await;
    let execute = [&[Command::StmtExecute as u8][..], &stmt, &[1, 1, 0, 0, 0]].concat();
    let fetch = |n: u32| [&[Command::StmtFetch as u8][..], &stmt, &n.to_le_bytes()].concat();
    open_cursor(&mut raw, &execute).await;
    let o = raw
        .run_internal(&fetch(2), K::StmtFetch)
        .await
        .expect("fetch")
        .expect("fetch ok");
    assert_eq!(o.rows, 2);
    // The SET runs on the primary, in the transaction.
    run(&mut raw, "BEGIN").await;
    run(&mut raw, "SET SESSION sql_mode = 'ANSI'").await;
    run(&mut raw, "COMMIT").await;
    // A read on the cursor's connection, in the session's new sql_mode.
    let o = run(
        &mut raw,
        &format!("SELECT id FROM {t} WHERE @@sql_mode LIKE '%ANSI%'"),
    )
    .await;
    assert_eq!(o.rows, 5, "the read did not see the session's sql_mode");
    let o = raw
        .run_internal(&fetch(10), K::StmtFetch)
        .await
        .expect("fetch")
        .unwrap_or_else(|e| panic!("the cursor was lost: {}", e.code()));
    assert_eq!(o.rows, 3, "the rest, from the same cursor");
}

/// COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY of `SELECT ... WHERE id > ?`: one iteration,
/// null bitmap 0, types bound (LONG), the value.
fn cursor_above(stmt: &[u8; 4], above: i32) -> Vec<u8> {
    use rwsplit::protocol::Command;
    [
        &[Command::StmtExecute as u8][..],
        stmt,
        &[1, 1, 0, 0, 0, 0, 1, 0x03, 0],
        &above.to_le_bytes(),
    ]
    .concat()
}

/// How many rows a COM_STMT_FETCH of `n` rows from `stmt`'s cursor returned.
async fn fetched(raw: &mut rwsplit::pool::BackendConn, stmt: &[u8; 4], n: u32) -> u64 {
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let fetch = [&[Command::StmtFetch as u8][..], stmt, &n.to_le_bytes()].concat();
    raw.run_internal(&fetch, K::StmtFetch)
        .await
        .expect("fetch")
        .unwrap_or_else(|e| panic!("fetch refused: {}", e.code()))
        .rows
}

/// Two client statements of the same text share nothing on the server once one holds a
/// cursor, in either order: preparing the text again does not close the first's server
/// statement (with its cursor), and a statement's execute never lands on the server statement
/// holding the other's cursor. Each fetch reads its own statement's rows.
#[tokio::test]
async fn two_statements_of_the_same_text_keep_their_own_cursors() {
    use rwsplit::protocol::Command;
    let proxy = one_connection_per_server();
    let (t, _setup) = five_rows(&proxy, "mux_same_text").await;
    let mut raw = raw_client(&proxy, common::EOF_STYLES[1]).await;
    let sql = format!("SELECT id FROM {t} WHERE id > ? ORDER BY id");

    // A's cursor first, then B prepared and its cursor opened.
    let a = common::raw_prepare(&mut raw, &sql).await;
    open_cursor(&mut raw, &cursor_above(&a, 0)).await;
    assert_eq!(fetched(&mut raw, &a, 1).await, 1);
    let b = common::raw_prepare(&mut raw, &sql).await;
    open_cursor(&mut raw, &cursor_above(&b, 3)).await;
    assert_eq!(fetched(&mut raw, &b, 1).await, 1);
    let close = [&[Command::StmtClose as u8][..], &b].concat();
    raw.send_command(&close).await.expect("close b");
    assert_eq!(
        fetched(&mut raw, &a, 10).await,
        4,
        "a's fetch read another cursor"
    );

    // Both prepared first, then B's cursor opened before A's.
    let c = common::raw_prepare(&mut raw, &sql).await;
    let d = common::raw_prepare(&mut raw, &sql).await;
    open_cursor(&mut raw, &cursor_above(&d, 3)).await;
    assert_eq!(fetched(&mut raw, &d, 1).await, 1);
    open_cursor(&mut raw, &cursor_above(&c, 0)).await;
    assert_eq!(fetched(&mut raw, &c, 10).await, 5);
    assert_eq!(
        fetched(&mut raw, &d, 10).await,
        1,
        "d's cursor was replaced by c's"
    );
}

/// A raw session with `sql` (one VARCHAR parameter) prepared and long data sent for it, once
/// the replicas take reads; with the long data packet and the execute that leaves the value
/// out (no cursor, one iteration, null bitmap 0, types bound).
async fn long_data_sent(
    proxy: &Proxy,
    sql: &str,
) -> (rwsplit::pool::BackendConn, Vec<u8>, Vec<u8>) {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    proxy.replica_ready().await;
    let mut raw = raw_client(proxy, C::CLIENT_DEPRECATE_EOF).await;
    let stmt = common::raw_prepare(&mut raw, sql).await;
    let long = common::long_data(&stmt, b"abc");
    let execute = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0x0f, 0],
    ]
    .concat();
    raw.send_command(&long).await.expect("long data");
    (raw, long, execute)
}

/// A client that retries after its execute failed with the backend connection (long data
/// sent again, then the execute): the retry runs, with the new long data.
#[tokio::test]
async fn long_data_sent_again_after_a_failed_execute_is_used() {
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = Proxy::start();
    let (mut raw, long, execute) = long_data_sent(&proxy, "SELECT CONCAT(?, '')").await;
    // The connection holding it (kept for it) dies before the execute.
    let (server, thread) = {
        let sid = raw
            .query_scalar("SELECT @@server_id")
            .await
            .expect("read")
            .expect("read ok");
        let thread = raw
            .query_scalar("SELECT CONNECTION_ID()")
            .await
            .expect("read")
            .expect("read ok");
        (sid, thread)
    };
    let port = match server.as_deref() {
        Some("1") => common::PRIMARY_PORT,
        Some("2") => common::REPLICA_PORTS[0],
        Some("3") => common::REPLICA_PORTS[1],
        other => panic!("server {other:?}"),
    };
    let thread: u64 = thread.expect("thread").parse().expect("a thread id");
    common::kill_thread(port, thread).await;
    let failed = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("answered");
    assert!(failed.is_err(), "the execute on a killed connection worked");
    raw.send_command(&long).await.expect("long data again");
    let o = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .unwrap_or_else(|e| {
            panic!(
                "the retry failed: {} {}",
                e.code(),
                String::from_utf8_lossy(&e.payload)
            )
        });
    assert_eq!(o.rows, 1);
}

/// Long data sent for a read (to a replica), then a transaction begun on the primary: the
/// execute must run in the transaction, where the long data is not; it is refused (1210,
/// send it again), never run outside the transaction on the replica.
#[tokio::test]
async fn long_data_on_a_replica_is_not_used_by_an_execute_inside_a_transaction() {
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = Proxy::start();
    let (mut raw, long, execute) = long_data_sent(&proxy, "SELECT CONCAT(?, @@server_id)").await;
    raw.run_internal(b"\x03BEGIN", K::Query)
        .await
        .expect("begin")
        .expect("begin ok");
    let err = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("answered")
        .expect_err("the execute ran outside the transaction");
    let e = rwsplit::protocol::packets::parse_err(&err.payload).expect("ERR");
    assert_eq!(e.code, 1210, "{}", String::from_utf8_lossy(e.message));
    // Sent again, inside the transaction: it runs there.
    raw.send_command(&long).await.expect("long data again");
    let o = raw
        .run_internal(&execute, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .unwrap_or_else(|e| panic!("the retry failed: {}", e.code()));
    assert_eq!(o.rows, 1);
    raw.run_internal(b"\x03COMMIT", K::Query)
        .await
        .expect("commit")
        .expect("commit ok");
}

/// What the server sets at login for a client's flags, and a reset undoes, is put back after
/// each reset of a pooled connection: `IGNORE_SPACE` for CLIENT_IGNORE_SPACE (node mysql2 and
/// Connector/J ask for it), without which `COUNT (*)` fails with 1064 in every session given
/// the connection after another session's state made it be reset.
#[tokio::test]
async fn the_logins_ignore_space_survives_a_reset_of_the_connection() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = one_connection_per_server();
    for round in 0..4 {
        let mut c = raw_client(&proxy, C::CLIENT_IGNORE_SPACE | C::CLIENT_INTERACTIVE).await;
        for sql in [
            "/* rwsplit:primary */ SELECT COUNT (*) FROM information_schema.ENGINES",
            "SELECT COUNT (*) FROM information_schema.ENGINES",
        ] {
            let q = [&[3u8][..], sql.as_bytes()].concat();
            let o = c.run_internal(&q, K::Query).await.expect(sql);
            assert!(
                o.is_ok(),
                "round {round}, {sql}: {:?}",
                o.err().map(|e| e.code())
            );
        }
        // Odd rounds: a user variable on both connections, so each goes back to its pool
        // reset. Even rounds: a `SET`, so each goes back carrying it, and the next session's
        // checkout resets it.
        let leave = if round % 2 == 1 {
            ["SET @x = 1", "/* rwsplit:replica */ SELECT @y := 1"]
        } else {
            ["SET time_zone = '+01:00'", "/* rwsplit:replica */ SELECT 1"]
        };
        for sql in leave {
            let q = [&[3u8][..], sql.as_bytes()].concat();
            c.run_internal(&q, K::Query).await.expect(sql).expect(sql);
        }
        let quit = [rwsplit::protocol::Command::Quit as u8];
        c.send_command(&quit).await.expect("quit");
    }
}
