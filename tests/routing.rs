//! Routing through rwsplit against the real topology: reads on replicas, everything that must
//! be on the primary on the primary.

mod common;

use common::*;
use mysql_async::prelude::*;

async fn primary_id() -> u64 {
    server_id(PRIMARY_PORT).await
}

#[tokio::test]
async fn plain_select_lands_on_a_replica() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    let primary = primary_id().await;
    for _ in 0..5 {
        let id: u64 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(id, primary, "a plain read went to the primary");
    }
}

#[tokio::test]
async fn backends_reached_by_their_unix_sockets_route_as_over_tcp() {
    let proxy = Proxy::start_with(|t| {
        t.replace("127.0.0.1:3306", &socket_path("primary"))
            .replace("127.0.0.1:3307", &socket_path("replica1"))
            .replace("127.0.0.1:3308", &socket_path("replica2"))
    });
    let primary = primary_id().await;
    let table = unique("over_socket");
    let mut c = proxy.conn().await;
    // The server names a socket client's host `localhost`, a TCP client's `127.0.0.1`.
    // (Not the processlist's: a read of that table goes to the primary.)
    let host = "SELECT SUBSTRING_INDEX(USER(), '@', -1)";
    // A replica takes reads only once the monitor's checks, over the sockets too, saw it up and
    // caught up, and clients are served only after the first round of checks.
    let (id, h): (u64, String) = c
        .query_first(format!("SELECT @@server_id, ({host})"))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(id, primary, "a plain read went to the primary");
    assert_eq!(
        h, "localhost",
        "the replica was not reached over its socket"
    );

    c.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT)"))
        .await
        .unwrap();
    c.exec_drop(
        format!("INSERT INTO {table} VALUES (?, ?)"),
        (1, "over a socket"),
    )
    .await
    .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    let (id, h, v): (u64, String, String) = c
        .exec_first(
            format!("SELECT @@server_id, ({host}), v FROM {table} WHERE id = ?"),
            (1,),
        )
        .await
        .unwrap()
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(id, primary, "a read in a transaction left the primary");
    assert_eq!(
        h, "localhost",
        "the primary was not reached over its socket"
    );
    assert_eq!(v, "over a socket");
    c.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test]
async fn primary_only_statements_land_on_the_primary() {
    let proxy = Proxy::start();
    let primary = primary_id().await;
    let cases: &[(&str, &str)] = &[
        ("", "SELECT @@server_id FOR UPDATE"),
        ("", "SELECT @@server_id, GET_LOCK('rwsplit_test', 1)"),
        ("", "/* rwsplit:primary */ SELECT @@server_id"),
        ("BEGIN", "SELECT @@server_id"),
        ("SET autocommit = 0", "SELECT @@server_id"),
        ("START TRANSACTION READ ONLY", "SELECT @@server_id"),
    ];
    for (setup, sql) in cases {
        let mut c = proxy.conn().await;
        if !setup.is_empty() {
            c.query_drop(*setup).await.unwrap();
        }
        let row: mysql_async::Row = c.query_first(*sql).await.unwrap().unwrap();
        let id: u64 = row.get(0).unwrap();
        assert_eq!(id, primary, "{setup}; {sql} did not run on the primary");
        c.disconnect().await.unwrap();
    }
}

/// What a server says of itself, in every form: an "am I on the writer" check through rwsplit
/// sees the primary (the replicas are `read_only`), and the session's user variables are
/// listed where they are.
#[tokio::test]
async fn the_servers_variables_and_the_sessions_user_variables_are_the_primarys() {
    let proxy = Proxy::start();
    let primary = primary_id().await;
    let mut c = proxy.conn().await;
    for sql in [
        "SHOW VARIABLES LIKE 'read_only'",
        "SHOW GLOBAL VARIABLES LIKE 'read_only'",
        "SELECT 'read_only', VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES \
         WHERE VARIABLE_NAME = 'READ_ONLY'",
        "SELECT 'read_only', GLOBAL_VALUE FROM information_schema.SYSTEM_VARIABLES \
         WHERE VARIABLE_NAME = 'READ_ONLY'",
    ] {
        let row: Option<(String, String)> = c.query_first(sql).await.expect(sql);
        assert_eq!(row, Some(("read_only".into(), "OFF".into())), "{sql}");
    }
    let id: Option<(String, u64)> = c
        .query_first("SHOW VARIABLES LIKE 'server_id'")
        .await
        .expect("server_id");
    assert_eq!(id, Some(("server_id".into(), primary)));
    c.query_drop("SET @mine = 1").await.expect("set");
    let listed: Vec<String> = c
        .query("SELECT VARIABLE_NAME FROM information_schema.USER_VARIABLES")
        .await
        .expect("user variables");
    assert_eq!(listed, ["mine"]);
    let shown: Vec<(String, String)> = c.query("SHOW USER_VARIABLES").await.expect("show");
    assert_eq!(shown, [("mine".to_string(), "1".to_string())]);
}

#[tokio::test]
async fn a_row_written_in_a_transaction_is_read_back_in_it() {
    let proxy = Proxy::start();
    let t = unique("trx");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await
    .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop(format!("INSERT INTO {t} VALUES (1, 'x')"))
        .await
        .unwrap();
    let v: Option<String> = c
        .query_first(format!("SELECT v FROM {t} WHERE id = 1"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("x"));
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
}

#[tokio::test]
async fn a_temporary_table_keeps_the_sessions_reads_on_the_primary() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    c.query_drop("CREATE TEMPORARY TABLE tmp_rw (i INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO tmp_rw VALUES (7)").await.unwrap();
    let v: Option<i32> = c.query_first("SELECT i FROM tmp_rw").await.unwrap();
    assert_eq!(v, Some(7));
    let id: u64 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, primary_id().await);
}

#[tokio::test]
async fn session_settings_follow_the_session_to_every_backend() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    // A read (replica) and a primary-hinted read must both see the session's settings.
    for sql in [
        "SELECT @@sql_mode, @@character_set_client",
        "/* rwsplit:primary */ SELECT @@sql_mode, @@character_set_client",
    ] {
        let (mode, cs): (String, String) = c.query_first(sql).await.unwrap().unwrap();
        assert_eq!(mode, "ANSI_QUOTES", "{sql}");
        assert_eq!(cs, "latin1", "{sql}");
    }
}

#[tokio::test]
async fn writes_never_reach_a_replica() {
    let proxy = Proxy::start();
    user_statistics_on().await;
    let t = unique("nowrite");
    let updates = |port| async move {
        let mut d = direct(port).await;
        let n: Option<u64> = d
            .query_first("SELECT COALESCE(SUM(UPDATE_COMMANDS), 0) FROM information_schema.USER_STATISTICS WHERE USER = 'app'")
            .await
            .unwrap();
        n.unwrap_or(0)
    };
    let before = [
        updates(REPLICA_PORTS[0]).await,
        updates(REPLICA_PORTS[1]).await,
    ];
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"
    ))
    .await
    .unwrap();
    for i in 0..50 {
        c.exec_drop(format!("INSERT INTO {t} (v) VALUES (?)"), (i,))
            .await
            .unwrap();
        c.query_drop(format!("UPDATE {t} SET v = v + 1 WHERE id = {}", i + 1))
            .await
            .unwrap();
        let _: Option<i64> = c
            .query_first(format!("SELECT v FROM {t} LIMIT 1"))
            .await
            .unwrap();
    }
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
    let after = [
        updates(REPLICA_PORTS[0]).await,
        updates(REPLICA_PORTS[1]).await,
    ];
    assert_eq!(before, after, "the app user ran writes on a replica");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_1045() {
    let proxy = Proxy::start();
    let opts = proxy.opts().pass(Some("wrong"));
    let err = mysql_async::Conn::new(opts).await.unwrap_err();
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1045);
            assert!(
                e.message.contains("Access denied for user 'app'"),
                "{}",
                e.message
            );
        }
        e => panic!("expected a server error, got {e}"),
    }
}

#[tokio::test]
async fn an_unknown_database_at_connect_is_refused_as_the_server_refuses_it() {
    let proxy = Proxy::start();
    let opts = proxy.opts().db_name(Some("no_such_db"));
    match mysql_async::Conn::new(opts).await.unwrap_err() {
        // As the server answers: 1049 for a user who may see it, 1044 for one who may not.
        mysql_async::Error::Server(e) => assert!(e.code == 1049 || e.code == 1044, "{e:?}"),
        e => panic!("expected a server error, got {e}"),
    }
}

#[tokio::test]
async fn prepared_statements_return_the_same_rows_as_direct() {
    let proxy = Proxy::start();
    let t = unique("ps");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20), n DOUBLE)"
    ))
    .await
    .unwrap();
    for i in 0..20 {
        c.exec_drop(
            format!("INSERT INTO {t} VALUES (?, ?, ?)"),
            (i, format!("n{i}"), i as f64 / 2.0),
        )
        .await
        .unwrap();
    }
    wait_sync();
    let sql = format!("SELECT id, name, n FROM {t} WHERE id >= ? ORDER BY id");
    let through: Vec<(i32, String, f64)> = c.exec(&sql, (5,)).await.unwrap();
    let mut d = direct(PRIMARY_PORT).await;
    let direct_rows: Vec<(i32, String, f64)> = d
        .exec(sql.replace("FROM ", "FROM app."), (5,))
        .await
        .unwrap();
    assert_eq!(through, direct_rows);
    assert_eq!(through.len(), 15);
    // The same statement inside a transaction runs on the primary.
    c.query_drop("BEGIN").await.unwrap();
    let in_trx: Vec<(i32, String, f64)> = c.exec(&sql, (5,)).await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(in_trx, direct_rows);
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
}

/// A stored function may write: a read that calls one runs on the primary (as MaxScale routes
/// it), unless a `rwsplit:replica` hint says the function only reads.
#[tokio::test]
async fn a_read_calling_a_stored_function_runs_on_the_primary() {
    let proxy = Proxy::start();
    let primary = primary_id().await;
    let (t, writes, where_am_i) = (unique("fnrows"), unique("fn_writes"), unique("fn_where"));
    let mut root = direct(PRIMARY_PORT).await;
    for ddl in [
        format!("CREATE TABLE app.{t} (id INT AUTO_INCREMENT PRIMARY KEY)"),
        // SQL SECURITY INVOKER: run as `app`, a write on a read-only replica fails (1290)
        // rather than landing there. DETERMINISTIC: binary logging wants it (or NO SQL, or
        // READS SQL DATA).
        format!(
            "CREATE FUNCTION app.{writes}() RETURNS INT DETERMINISTIC MODIFIES SQL DATA \
             SQL SECURITY INVOKER \
             BEGIN INSERT INTO app.{t} VALUES (NULL); RETURN LAST_INSERT_ID(); END"
        ),
        format!(
            "CREATE FUNCTION app.{where_am_i}() RETURNS BIGINT UNSIGNED READS SQL DATA \
             SQL SECURITY INVOKER RETURN @@server_id"
        ),
    ] {
        root.query_drop(ddl).await.unwrap();
    }
    wait_sync();
    let mut c = proxy.conn().await;
    for want in 1..=3 {
        let id: Option<i64> = c.query_first(format!("SELECT {writes}()")).await.unwrap();
        assert_eq!(id, Some(want));
    }
    let rows: Option<i64> = root
        .query_first(format!("SELECT COUNT(*) FROM app.{t}"))
        .await
        .unwrap();
    assert_eq!(rows, Some(3), "the function's rows are not on the primary");
    for sql in [
        format!("SELECT {where_am_i}()"),
        format!("SELECT app.{where_am_i}() FROM DUAL"),
        format!("SELECT 1 + `{where_am_i}`() - 1"),
    ] {
        let id: Option<u64> = c.query_first(&sql).await.unwrap();
        assert_eq!(id, Some(primary), "{sql} did not run on the primary");
    }
    // A new session: this one's writes could hold its reads on the primary (read-your-writes).
    let mut fresh = proxy.conn().await;
    let hinted = format!("/* rwsplit:replica */ SELECT {where_am_i}()");
    let id: Option<u64> = fresh.query_first(&hinted).await.unwrap();
    assert!(
        id.is_some_and(|id| id != primary),
        "{hinted} ran on the primary"
    );
    for ddl in [
        format!("DROP FUNCTION app.{writes}"),
        format!("DROP FUNCTION app.{where_am_i}"),
        format!("DROP TABLE app.{t}"),
    ] {
        root.query_drop(ddl).await.unwrap();
    }
}

/// Variables that hold the session's last insert or commit, or its last statement's
/// diagnostics, read as against the server: from the connection that made them.
#[tokio::test]
async fn session_values_are_read_from_the_connection_that_made_them() {
    let proxy = Proxy::start();
    let primary = primary_id().await;
    let t = unique("sessval");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v TINYINT)"
    ))
    .await
    .unwrap();
    c.query_drop(format!("INSERT INTO {t} (v) VALUES (1)"))
        .await
        .unwrap();
    let id = c.last_insert_id();
    assert!(id.is_some_and(|id| id > 0));
    for sql in ["SELECT @@last_insert_id", "SELECT @@session.identity"] {
        let got: Option<u64> = c.query_first(sql).await.unwrap();
        assert_eq!(got, id, "{sql}");
    }
    // MariaDB's GTID: domain-server_id-sequence, the primary's server id.
    let gtid: Option<String> = c.query_first("SELECT @@last_gtid").await.unwrap();
    let server = gtid.as_deref().and_then(|g| g.split('-').nth(1));
    assert_eq!(server, Some(primary.to_string().as_str()), "{gtid:?}");
    // Three values out of range: three warnings, on the primary's connection.
    c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    c.query_drop(format!("INSERT INTO {t} (v) VALUES (1000), (2000), (3000)"))
        .await
        .unwrap();
    let warnings: Option<u64> = c.query_first("SELECT @@warning_count").await.unwrap();
    assert_eq!(warnings, Some(3));
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
}

/// With `NO_BACKSLASH_ESCAPES` a backslash ends nothing: `'C:\'` is a whole string, so what
/// follows it is SQL, as the server reads it (here a locking read, for the primary).
#[tokio::test]
async fn with_no_backslash_escapes_strings_are_read_as_the_server_reads_them() {
    let proxy = Proxy::start();
    let primary = primary_id().await;
    let mut c = proxy.conn().await;
    let sql = r"SELECT @@server_id FROM DUAL WHERE 'C:\' = 'C:\' FOR UPDATE";
    c.query_drop("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
        .await
        .unwrap();
    for _ in 0..3 {
        let id: Option<u64> = c.query_first(sql).await.unwrap();
        assert_eq!(id, Some(primary), "{sql} did not run on the primary");
    }
    // Back to escapes: the same text is a string that never ends, which the server refuses.
    c.query_drop("SET SESSION sql_mode = DEFAULT")
        .await
        .unwrap();
    assert!(c.query_drop(sql).await.is_err());
}

/// `SET STATEMENT var = value FOR stmt` sets the variable for that statement only, on every
/// server the session uses afterwards too (the server reports the change; it is not the
/// session's to carry).
#[tokio::test]
async fn set_statement_sets_a_variable_for_its_statement_only() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    for scoped in [
        "SET STATEMENT max_statement_time = 123 FOR SELECT @@max_statement_time",
        "SET STATEMENT max_statement_time = 123 FOR SELECT @@max_statement_time FROM DUAL FOR UPDATE",
    ] {
        let v: Option<f64> = c.query_first(scoped).await.unwrap();
        assert_eq!(v, Some(123.0), "{scoped}");
        for sql in [
            "SELECT @@max_statement_time",
            "/* rwsplit:primary */ SELECT @@max_statement_time",
        ] {
            let v: Option<f64> = c.query_first(sql).await.unwrap();
            assert_eq!(v, Some(0.0), "{sql} after {scoped}");
        }
    }
}

/// `SET TRANSACTION READ ONLY` is for the next transaction, and an autocommit read is one:
/// it uses the characteristics up, so a write after it is not refused.
#[tokio::test]
async fn set_transaction_is_used_up_by_the_next_read() {
    let proxy = Proxy::start();
    let t = unique("settrx");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    c.query_drop("SET TRANSACTION READ ONLY").await.unwrap();
    let n: Option<i64> = c
        .query_first(format!("SELECT COUNT(*) FROM {t}"))
        .await
        .unwrap();
    assert_eq!(n, Some(0));
    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
        .await
        .expect("a write after the read that used SET TRANSACTION READ ONLY up");
    c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
}

/// MariaDB's Oracle mode names a sequence's next value `seq.nextval`: it advances the
/// sequence, so it runs on the primary (a replica refuses it, being read-only).
#[tokio::test]
async fn an_oracle_mode_nextval_runs_on_the_primary() {
    let proxy = Proxy::start();
    let s = unique("seq");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE SEQUENCE {s}")).await.unwrap();
    wait_sync();
    c.query_drop("SET SESSION sql_mode = 'ORACLE'")
        .await
        .unwrap();
    for want in 1..=3 {
        let v: Option<i64> = c
            .query_first(format!("SELECT {s}.nextval FROM dual"))
            .await
            .unwrap();
        assert_eq!(v, Some(want));
    }
    let v: Option<i64> = c
        .query_first(format!("SELECT {s}.currval FROM dual"))
        .await
        .unwrap();
    assert_eq!(v, Some(3));
    c.query_drop("SET SESSION sql_mode = DEFAULT")
        .await
        .unwrap();
    c.query_drop(format!("DROP SEQUENCE {s}")).await.unwrap();
}

/// The function lists against this server (MariaDB): every name it lists as a function of its
/// own (`information_schema.SQL_FUNCTIONS`, the function topics of its help) is taken for the
/// server's own, and no name taken for the server's own calls a stored function here when a
/// statement names it unqualified (as a MySQL-only function's name, or a later version's,
/// would: `SELECT uuid_to_bin(x)` calls `app.uuid_to_bin`). Each name gets a stored function
/// of its name, in a database of its own that is not replicated; what `SELECT name()` reaches
/// tells which it calls.
#[tokio::test]
async fn the_function_lists_match_what_this_server_calls_its_own() {
    use rwsplit::classify::functions::{COMMON, KEYWORDS, MARIADB};
    use rwsplit::classify::{Flavor, PrimaryReason, classify_for};
    use std::collections::BTreeSet;
    let mut root = direct(PRIMARY_PORT).await;
    let listed: Vec<String> = root
        .query("SELECT FUNCTION FROM information_schema.SQL_FUNCTIONS")
        .await
        .unwrap();
    assert!(listed.len() > 200, "only {} functions listed", listed.len());
    // The help's function topics name the functions that are keywords too (`IF Function`,
    // `LEFT`, `DATE FUNCTION`), and the geometry ones; `\\_` is the help's escape of `_`.
    // (The help is newer than the server: some topics are no function of its own.)
    let topics: Vec<String> = root
        .query(
            "SELECT t.name FROM mysql.help_topic t JOIN mysql.help_category c \
             USING (help_category_id) WHERE c.name LIKE '%Functions%' \
             OR c.name LIKE 'Geographic%' OR c.name LIKE 'Control flow%'",
        )
        .await
        .unwrap();
    let from_help = topics.iter().map(|t| {
        let t = t.replace('\\', "").to_ascii_uppercase();
        t.strip_suffix(" FUNCTION")
            .map_or(t.clone(), str::to_string)
    });
    let mut names: BTreeSet<String> = listed.iter().cloned().chain(from_help).collect();
    names.extend(
        COMMON
            .iter()
            .chain(MARIADB)
            .chain(KEYWORDS)
            .map(|n| n.to_string()),
    );
    // Topics that are names; `Parentheses` is the operators' topic.
    names.retain(|n| {
        n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && n != "PARENTHESES"
    });
    // The server's own syntax, where a call of no arguments reaches a stored function of the
    // name: the geometry constructors, and JSON_TABLE (a table, only after FROM).
    for syntax in [
        "POINT",
        "LINESTRING",
        "POLYGON",
        "MULTIPOINT",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "GEOMETRYCOLLECTION",
        "JSON_TABLE",
    ] {
        names.remove(syntax);
    }
    let db = unique("fnprobe");
    root.query_drop("SET SESSION sql_log_bin = 0")
        .await
        .unwrap();
    root.query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    root.query_drop(format!("USE {db}")).await.unwrap();
    let mut wrong = Vec::new();
    for name in &names {
        let create =
            format!("CREATE FUNCTION `{name}`() RETURNS INT DETERMINISTIC NO SQL RETURN 4242");
        root.query_drop(create).await.unwrap();
        let rows: Result<Vec<mysql_async::Row>, _> = root.query(format!("SELECT {name}()")).await;
        let value = rows
            .ok()
            .and_then(|r| r.first().and_then(|r| r.get_opt::<String, _>(0)))
            .and_then(Result::ok);
        let servers = value.as_deref() != Some("4242");
        let sql = format!("SELECT {name}(1) FROM t");
        let taken = classify_for(sql.as_bytes(), Flavor::MariaDb).reason
            != Some(PrimaryReason::StoredFunction);
        if servers != taken {
            wrong.push(format!(
                "{name} (the server's: {servers}, taken so: {taken})"
            ));
        }
    }
    root.query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {} names: {wrong:#?}",
        wrong.len(),
        names.len()
    );
}

#[tokio::test]
async fn a_stored_procedure_returns_all_its_result_sets() {
    let proxy = Proxy::start();
    let p = unique("proc");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE PROCEDURE {p}() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END"
    ))
    .await
    .unwrap();
    let mut result = c.query_iter(format!("CALL {p}()")).await.unwrap();
    let first: Vec<i32> = result.collect().await.unwrap();
    let second: Vec<(i32, i32)> = result.collect().await.unwrap();
    drop(result);
    assert_eq!(first, vec![1]);
    assert_eq!(second, vec![(2, 3)]);
    c.query_drop(format!("DROP PROCEDURE {p}")).await.unwrap();
}

#[tokio::test]
async fn many_sessions_in_parallel_all_work() {
    let proxy = Proxy::start();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let opts = proxy.opts();
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            for i in 0..20 {
                let v: i64 = c
                    .query_first(format!("SELECT {i} + 1"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(v, i + 1);
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn four_byte_utf8_round_trips_in_the_clients_character_set() {
    let proxy = Proxy::start();
    let t = unique("utf8");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, s VARCHAR(20)) CHARACTER SET utf8mb4"
    ))
    .await
    .expect("create");
    let text = "caf\u{e9} \u{1F600} \u{4E2D}";
    c.exec_drop(format!("INSERT INTO {t} VALUES (1, ?)"), (text,))
        .await
        .expect("insert");
    c.query_drop(format!("INSERT INTO {t} VALUES (2, '{text}')"))
        .await
        .expect("insert text");
    let charset: Option<String> = c
        .query_first("SELECT @@character_set_client")
        .await
        .expect("charset");
    assert_eq!(charset.as_deref(), Some("utf8mb4"));
    let on_primary: Vec<String> = c
        .query(format!(
            "/* rwsplit:primary */ SELECT s FROM {t} ORDER BY id"
        ))
        .await
        .expect("select");
    assert_eq!(on_primary, [text, text]);
    wait_sync();
    let on_replica: Vec<String> = c
        .query(format!("SELECT s FROM {t} ORDER BY id"))
        .await
        .expect("select");
    assert_eq!(on_replica, [text, text]);
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// rwsplit with `routing.read_only_transactions_on_replica` on.
fn read_only_transactions_on_replica() -> Proxy {
    Proxy::start_with(|t| {
        t.replace(
            "[routing]",
            "[routing]\nread_only_transactions_on_replica = true",
        )
    })
}

/// Under SERIALIZABLE every read of a transaction takes shared locks (InnoDB), which on a
/// replica would hold up replication: a READ ONLY transaction then stays on the primary.
#[tokio::test]
async fn a_serializable_read_only_transaction_stays_on_the_primary() {
    let proxy = read_only_transactions_on_replica();
    proxy.replica_ready().await;
    let primary = primary_id().await;
    let mut c = proxy.conn().await;
    let in_read_only_transaction = async |c: &mut mysql_async::Conn| {
        c.query_drop("START TRANSACTION READ ONLY")
            .await
            .expect("start");
        let server: Option<u64> = c
            .query_first("SELECT @@server_id")
            .await
            .expect("read in the transaction");
        c.query_drop("COMMIT").await.expect("commit");
        server
    };
    assert_ne!(
        in_read_only_transaction(&mut c).await,
        Some(primary),
        "a READ ONLY transaction runs on a replica"
    );
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .expect("serializable");
    assert_eq!(in_read_only_transaction(&mut c).await, Some(primary));
    // Set back, the session's transactions may run on a replica again.
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .expect("read committed");
    assert_ne!(in_read_only_transaction(&mut c).await, Some(primary));
}

/// A READ ONLY transaction on a replica whose connection dies before the statement that ends it
/// (here a read-write `BEGIN`): the error says the transaction went with the connection and
/// that the connection closes, and the session ends.
#[tokio::test]
async fn a_read_only_transaction_that_loses_its_replica_connection_ends_the_session_saying_so() {
    let proxy = read_only_transactions_on_replica();
    let mut c = proxy.conn().await;
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("start");
    let (server, thread): (u64, u64) = c
        .query_first("SELECT @@server_id, CONNECTION_ID()")
        .await
        .expect("read in the transaction")
        .expect("row");
    let mut port = None;
    for p in REPLICA_PORTS {
        if server_id(p).await == server {
            port = Some(p);
        }
    }
    let port = port.expect("the transaction runs on a replica");
    kill_thread(port, thread).await;
    assert_lost_and_closed(&mut c, "BEGIN", "open transaction", "SELECT 1").await;
}

/// `routing.read_only_transactions_on_replica`: a `START TRANSACTION READ ONLY` runs whole on one
/// replica, in one snapshot there; a change in it gets the server's own 1792 and never reaches
/// the replica; a statement that ends a transaction first (DDL, a read-write BEGIN) ends it and
/// goes to the primary; a prepared write is refused as the text one; off, it stays on the primary.
#[tokio::test]
async fn read_only_transactions_run_whole_on_one_replica_when_asked() {
    let proxy = read_only_transactions_on_replica();
    let primary = primary_id().await;
    let t = unique("rotrx");
    let mut d = direct(PRIMARY_PORT).await;
    d.query_drop(format!("CREATE TABLE app.{t} (id INT PRIMARY KEY)"))
        .await
        .expect("create");
    d.query_drop(format!("INSERT INTO app.{t} VALUES (1)"))
        .await
        .expect("insert");
    let mut c = proxy.conn().await;
    let count = format!("SELECT COUNT(*) FROM {t}");
    let id = "SELECT @@server_id";
    // Read-your-writes: the session's own write is seen in the transaction that follows it.
    c.query_drop(format!("INSERT INTO {t} VALUES (2)"))
        .await
        .expect("own write");
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    let on: u64 = c.query_first(id).await.expect("id").expect("row");
    assert_ne!(on, primary, "a read-only transaction ran on the primary");
    assert_eq!(c.query_first(&count).await.expect("count"), Some(2u64));
    // A row committed meanwhile, replicated to every replica, is not in this snapshot.
    d.query_drop(format!("INSERT INTO app.{t} VALUES (3)"))
        .await
        .expect("insert 3");
    wait_sync();
    let err = c
        .query_drop(format!("INSERT INTO {t} VALUES (4)"))
        .await
        .expect_err("a write in a READ ONLY transaction");
    assert_eq!(server_code(&err), Some(1792), "{err}");
    let ps = c
        .exec_drop(format!("INSERT INTO {t} VALUES (?)"), (5,))
        .await
        .expect_err("a prepared write in a READ ONLY transaction");
    assert_eq!(server_code(&ps), Some(1792), "{ps}");
    let for_update = c
        .query_drop(format!("SELECT * FROM {t} FOR UPDATE"))
        .await
        .expect_err("a locking read");
    assert_eq!(server_code(&for_update), Some(1235), "{for_update}");
    // As the server says inside a transaction; the transaction goes on.
    let xa = c
        .query_drop("XA START 'rotrx'")
        .await
        .expect_err("XA START inside a transaction");
    assert_eq!(server_code(&xa), Some(1400), "{xa}");
    for _ in 0..3 {
        assert_eq!(
            c.query_first(id).await.expect("id"),
            Some(on),
            "the transaction moved"
        );
        assert_eq!(c.query_first(&count).await.expect("count"), Some(2u64));
        assert_eq!(
            c.exec_first(&count, ()).await.expect("prepared"),
            Some(2u64)
        );
    }
    c.query_drop("COMMIT").await.expect("commit");
    assert_eq!(
        c.query_first(format!("/* rwsplit:primary */ {count}"))
            .await
            .expect("count"),
        Some(3u64),
        "a write refused in the transaction reached a server"
    );
    // DDL ends the transaction (the server commits first) and runs on the primary.
    let t2 = unique("rotrx_ddl");
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    c.query_drop(format!("CREATE TABLE {t2} (id INT)"))
        .await
        .expect("DDL in a read-only transaction");
    let made: Option<String> = d
        .query_first(format!("SHOW TABLES FROM app LIKE '{t2}'"))
        .await
        .expect("show tables");
    assert_eq!(
        made.as_deref(),
        Some(t2.as_str()),
        "not made on the primary"
    );
    // So does a read-write BEGIN: the new transaction is on the primary and may write.
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    c.query_drop("BEGIN").await.expect("a read-write begin");
    assert_eq!(c.query_first(id).await.expect("id"), Some(primary));
    c.query_drop(format!("INSERT INTO {t2} VALUES (1)"))
        .await
        .expect("insert in the new transaction");
    c.query_drop("COMMIT").await.expect("commit");
    c.query_drop(format!("DROP TABLE {t}, {t2}"))
        .await
        .expect("drop");

    // Off (the default): on the primary.
    let off = Proxy::start();
    let mut c = off.conn().await;
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    assert_eq!(c.query_first(id).await.expect("id"), Some(primary));
    c.query_drop("COMMIT").await.expect("commit");
}

/// A session whose primary connection holds what cannot be replayed (a named lock, user
/// variables) keeps its read-only transactions there: on a replica, that connection would go
/// back to its pool and lose the lock.
#[tokio::test]
async fn a_read_only_transaction_stays_with_a_primary_that_holds_session_state() {
    let proxy = read_only_transactions_on_replica();
    let primary = primary_id().await;
    let lock = unique("rotrx_lock");
    let mut c = proxy.conn().await;
    let got: Option<i64> = c
        .query_first(format!("SELECT GET_LOCK('{lock}', 5)"))
        .await
        .expect("get_lock");
    assert_eq!(got, Some(1));
    c.query_drop("SET @v = 7").await.expect("set @v");
    c.query_drop("START TRANSACTION READ ONLY")
        .await
        .expect("begin");
    let on: Option<u64> = c.query_first("SELECT @@server_id").await.expect("id");
    assert_eq!(on, Some(primary));
    c.query_drop("COMMIT").await.expect("commit");
    let mut other = direct(PRIMARY_PORT).await;
    let free: Option<i64> = other
        .query_first(format!("SELECT IS_FREE_LOCK('{lock}')"))
        .await
        .expect("is_free_lock");
    assert_eq!(free, Some(0), "the session's named lock was lost");
    let v: Option<i64> = c.query_first("SELECT @v").await.expect("@v");
    assert_eq!(v, Some(7));
}

/// `routing.when_no_replica = "error"`: with no replica up, a read of a table is refused with a
/// message that names the setting (the DBA chose that over loading the primary), while writes,
/// transactions, reads that must be on the primary and reads of no table go on: mysql_async's
/// connect reads `@@max_allowed_packet`, and refusing that would refuse the connection. The
/// default sends the read to the primary instead.
#[tokio::test]
async fn with_when_no_replica_error_reads_fail_clearly_while_no_replica_is_up() {
    // Nothing listens on ports 1 and 2: both replicas are down from the first check.
    let no_replicas = |t: String| {
        t.replace("127.0.0.1:3307", "127.0.0.1:1")
            .replace("127.0.0.1:3308", "127.0.0.1:2")
    };
    let strict = Proxy::start_with(|t| {
        no_replicas(t).replace("[routing]", "[routing]\nwhen_no_replica = \"error\"")
    });
    let lenient = Proxy::start_with(no_replicas);
    let primary = primary_id().await;
    let table = unique("no_replica");

    let mut c = strict.conn().await;
    let id: u64 = c
        .query_first("SELECT @@server_id")
        .await
        .expect("a read of no table")
        .expect("row");
    assert_eq!(id, primary);
    c.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY)"))
        .await
        .expect("a write");
    c.query_drop(format!("INSERT INTO {table} VALUES (1)"))
        .await
        .expect("a write");
    for read in [format!("SELECT id FROM {table}"), "SHOW TABLES".to_string()] {
        let e = c
            .query_drop(&read)
            .await
            .expect_err("a read with no replica up");
        assert!(e.to_string().contains("when_no_replica"), "{read}: {e}");
    }
    let hinted: u64 = c
        .query_first("/* rwsplit:primary */ SELECT @@server_id")
        .await
        .expect("a read sent to the primary")
        .expect("row");
    assert_eq!(hinted, primary);
    c.query_drop("BEGIN").await.expect("begin");
    let n: u64 = c
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .expect("a read in a transaction")
        .expect("row");
    assert_eq!(n, 1);
    c.query_drop("COMMIT").await.expect("commit");

    let mut c = lenient.conn().await;
    let (id, n): (u64, u64) = c
        .query_first(format!("SELECT @@server_id, COUNT(*) FROM {table}"))
        .await
        .expect("a read falls back to the primary")
        .expect("row");
    assert_eq!((id, n), (primary, 1));
}

/// Parameter types come with a client's first execute only, whether it ran or not: rwsplit
/// remembers them even when it refuses that execute itself (here a write inside a READ ONLY
/// transaction on a replica, 1792), so the next execute, without types, binds the same.
#[tokio::test]
async fn parameter_types_of_a_refused_execute_are_kept_for_the_next() {
    use mysql_common::constants::CapabilityFlags as C;
    use rwsplit::protocol::Command;
    use rwsplit::protocol::response::ResponseKind as K;
    let proxy = read_only_transactions_on_replica();
    let t = unique("types_kept");
    let mut c = proxy.conn().await;
    c.query_drop(format!(
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))"
    ))
    .await
    .expect("create");
    wait_sync();
    let mut raw = raw_client(&proxy, C::CLIENT_DEPRECATE_EOF).await;
    let stmt = raw_prepare(&mut raw, &format!("INSERT INTO {t} (v) VALUES (?)")).await;
    raw.query_scalar("START TRANSACTION READ ONLY")
        .await
        .expect("start")
        .expect("start ok");
    // Types bound (VAR_STRING), the value 'abc'.
    let with_types = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 1, 0xfd, 0, 3],
        b"abc",
    ]
    .concat();
    let refused = raw
        .run_internal(&with_types, K::StmtExecute { cursor: false })
        .await
        .expect("execute");
    assert_eq!(
        refused
            .expect_err("a write in a READ ONLY transaction")
            .code(),
        1792
    );
    raw.query_scalar("COMMIT")
        .await
        .expect("commit")
        .expect("commit ok");
    // The same value without types, as client libraries send it the second time.
    let without = [
        &[Command::StmtExecute as u8][..],
        &stmt,
        &[0, 1, 0, 0, 0, 0, 0, 3],
        b"abc",
    ]
    .concat();
    raw.run_internal(&without, K::StmtExecute { cursor: false })
        .await
        .expect("execute")
        .expect("the execute without types");
    let v = raw
        .query_scalar(&format!("/* rwsplit:primary */ SELECT v FROM {t}"))
        .await
        .expect("read")
        .expect("read ok");
    assert_eq!(v.as_deref(), Some("abc"));
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

/// A schema the replicas lack (just created and not replicated yet, or filtered out of
/// replication there) is used on the primary: at connect, by `USE`, by COM_INIT_DB-style
/// selection, and for the reads and prepared statements that follow.
#[tokio::test]
async fn a_schema_only_the_primary_has_is_used_on_the_primary() {
    let proxy = Proxy::start_with(with_root_user);
    proxy.replica_ready().await;
    let db = unique("only_primary");
    let mut root = direct(PRIMARY_PORT).await;
    root.query_drop("SET SESSION sql_log_bin = 0")
        .await
        .unwrap();
    root.query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    root.query_drop(format!("CREATE TABLE {db}.t (id INT)"))
        .await
        .unwrap();
    root.query_drop(format!("INSERT INTO {db}.t VALUES (7)"))
        .await
        .unwrap();
    let as_root = || proxy.opts().user(Some("root")).pass(Some("root"));

    let mut at_connect = mysql_async::Conn::new(as_root().db_name(Some(db.clone())))
        .await
        .expect("connect with a schema only the primary has");
    let id: Option<i64> = at_connect.query_first("SELECT id FROM t").await.unwrap();
    assert_eq!(id, Some(7));

    let mut c = mysql_async::Conn::new(as_root()).await.expect("connect");
    c.query_drop(format!("USE {db}")).await.expect("USE");
    let id: Option<i64> = c.query_first("SELECT id FROM t").await.unwrap();
    assert_eq!(id, Some(7));
    let id: Option<i64> = c
        .exec_first("SELECT id FROM t WHERE id = ?", (7,))
        .await
        .unwrap();
    assert_eq!(id, Some(7));
    let schema: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(schema.as_deref(), Some(db.as_str()));
    // A schema no server has is still refused as the primary refuses it.
    let err = c
        .query_drop("USE no_such_schema_anywhere")
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1049));
    let schema: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(schema.as_deref(), Some(db.as_str()));
    drop((at_connect, c));
    root.query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

/// A `SET` whose value calls a stored function runs it once, on the primary (its body may
/// write): the session's other connections get the value the server reported, not the call.
#[tokio::test]
async fn a_set_calling_a_stored_function_runs_it_once_on_the_primary() {
    let proxy = Proxy::start();
    proxy.replica_ready().await;
    let name = unique("tz_probe");
    let mut root = direct(PRIMARY_PORT).await;
    root.query_drop(format!("CREATE TABLE app.{name}_calls (n INT)"))
        .await
        .expect("create table");
    root.query_drop(format!(
        "CREATE FUNCTION app.{name}() RETURNS VARCHAR(10) DETERMINISTIC MODIFIES SQL DATA \
         BEGIN INSERT INTO app.{name}_calls VALUES (1); RETURN '+03:00'; END"
    ))
    .await
    .expect("create function");
    wait_sync();
    let mut c = proxy.conn().await;
    c.query_drop(format!("SET time_zone = {name}()"))
        .await
        .expect("set through a stored function");
    for _ in 0..3 {
        let tz: Option<String> = c
            .query_first(format!("SELECT @@time_zone FROM app.{name}_calls LIMIT 1"))
            .await
            .expect("read");
        assert_eq!(tz.as_deref(), Some("+03:00"));
    }
    let calls: Option<i64> = root
        .query_first(format!("SELECT COUNT(*) FROM app.{name}_calls"))
        .await
        .expect("count");
    assert_eq!(calls, Some(1), "the function ran more than once");
    drop(c);
    root.query_drop(format!("DROP FUNCTION app.{name}"))
        .await
        .expect("drop function");
    root.query_drop(format!("DROP TABLE app.{name}_calls"))
        .await
        .expect("drop table");
}
