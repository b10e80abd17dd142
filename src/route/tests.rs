use super::*;
use crate::classify::classify;

const P: usize = 0;
const R1: usize = 1;
const R2: usize = 2;

fn topology(primary_up: bool, r1_up: bool, r2_up: bool) -> Vec<BackendView> {
    let b = |role, up| BackendView {
        role,
        up,
        weight: 1,
        lag_ok: true,
        read_only: false,
    };
    vec![
        b(Role::Primary, primary_up),
        b(Role::Replica, r1_up),
        b(Role::Replica, r2_up),
    ]
}

fn idle() -> SessionView {
    SessionView {
        autocommit: true,
        ..SessionView::default()
    }
}

fn in_trx() -> SessionView {
    SessionView {
        in_transaction: true,
        ..idle()
    }
}

fn no_autocommit() -> SessionView {
    SessionView {
        autocommit: false,
        ..SessionView::default()
    }
}

fn pinned() -> SessionView {
    SessionView {
        reads_pinned_to_primary: true,
        ..idle()
    }
}

/// Where a statement goes: "P" primary, "R" a replica, "E" an error.
fn place(sql: &str, s: &SessionView, b: &[BackendView], policy: NoReplicaPolicy) -> &'static str {
    match route(&classify(sql.as_bytes()), s, b, policy, 0.3) {
        Ok(d) if d.target.is_primary() => "P",
        Ok(_) => "R",
        Err(_) => "E",
    }
}

const READS: &[&str] = &[
    "SELECT 1",
    "select * from t where id = 5",
    "SELECT @@server_id",
    "SHOW TABLES",
    "SELECT a FROM t JOIN u ON t.id = u.id WHERE u.x > 3 ORDER BY a LIMIT 10",
    "/* comment */ SELECT 'FOR UPDATE' FROM t",
    "SELECT COUNT(*) FROM t",
    "DESCRIBE t",
    "SELECT * FROM t WHERE c = 'a;b'",
    "SELECT NOW()",
];

const PRIMARY_ONLY: &[&str] = &[
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "REPLACE INTO t VALUES (1)",
    "CREATE TABLE x (i int)",
    "DROP TABLE x",
    "ALTER TABLE t ADD c INT",
    "TRUNCATE t",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t LOCK IN SHARE MODE",
    "SELECT * FROM t FOR SHARE",
    "SELECT a INTO @x FROM t LIMIT 1",
    "SELECT GET_LOCK('l', 1)",
    "SELECT RELEASE_LOCK('l')",
    "SELECT LAST_INSERT_ID()",
    "SELECT FOUND_ROWS()",
    "SELECT ROW_COUNT()",
    "SELECT @@last_insert_id",
    "SELECT @@last_gtid",
    "SELECT @a",
    "SET @a = 1",
    "CALL p()",
    "SELECT 1; SELECT 2",
    "CREATE TEMPORARY TABLE tmp (i int)",
    "LOCK TABLES t WRITE",
    "UNLOCK TABLES",
    "BACKUP STAGE START",
    "BACKUP LOCK t",
    "LOCK INSTANCE FOR BACKUP",
    "BEGIN",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "PREPARE s FROM 'SELECT 1'",
    "garbage that is not sql",
    "",
];

#[test]
fn plain_reads_go_to_a_replica_when_idle() {
    let b = topology(true, true, true);
    for sql in READS {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "R",
            "{sql}"
        );
    }
}

#[test]
fn writes_and_primary_only_reads_go_to_the_primary() {
    let b = topology(true, true, true);
    for sql in PRIMARY_ONLY {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "P",
            "{sql:?}"
        );
    }
}

#[test]
fn everything_inside_a_transaction_goes_to_the_primary() {
    let b = topology(true, true, true);
    for s in [in_trx(), no_autocommit()] {
        for sql in READS.iter().chain(PRIMARY_ONLY) {
            assert_eq!(
                place(sql, &s, &b, NoReplicaPolicy::Primary),
                "P",
                "{sql:?} {s:?}"
            );
        }
    }
}

#[test]
fn a_replica_hint_never_moves_a_write_or_a_transaction() {
    let b = topology(true, true, true);
    for sql in PRIMARY_ONLY {
        let hinted = format!("/* rwsplit:replica */ {sql}");
        assert_eq!(
            place(&hinted, &idle(), &b, NoReplicaPolicy::Primary),
            "P",
            "{hinted}"
        );
    }
    for sql in READS {
        let hinted = format!("/* rwsplit:replica */ {sql}");
        assert_eq!(
            place(&hinted, &in_trx(), &b, NoReplicaPolicy::Primary),
            "P",
            "{hinted}"
        );
        assert_eq!(
            place(&hinted, &pinned(), &b, NoReplicaPolicy::Primary),
            "R",
            "{hinted}"
        );
    }
}

#[test]
fn a_stored_function_call_goes_to_the_primary_unless_a_replica_hint_trusts_it() {
    let b = topology(true, true, true);
    for sql in [
        "SELECT f(1)",
        "SELECT app.price(id) FROM t",
        "SELECT a FROM t WHERE b = `f`(2)",
    ] {
        let hinted = format!("/* rwsplit:replica */ {sql}");
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "P",
            "{sql}"
        );
        assert_eq!(
            place(&hinted, &idle(), &b, NoReplicaPolicy::Primary),
            "R",
            "{hinted}"
        );
        assert_eq!(
            place(&hinted, &in_trx(), &b, NoReplicaPolicy::Primary),
            "P",
            "{hinted}"
        );
    }
}

#[test]
fn a_primary_hint_sends_reads_to_the_primary() {
    let b = topology(true, true, true);
    for sql in READS {
        let hinted = format!("/* rwsplit:primary */ {sql}");
        assert_eq!(
            place(&hinted, &idle(), &b, NoReplicaPolicy::Primary),
            "P",
            "{hinted}"
        );
    }
}

#[test]
fn pinned_sessions_read_from_the_primary() {
    let b = topology(true, true, true);
    for sql in READS {
        assert_eq!(
            place(sql, &pinned(), &b, NoReplicaPolicy::Primary),
            "P",
            "{sql}"
        );
    }
}

#[test]
fn reads_fall_back_to_the_primary_or_fail_when_no_replica_is_up() {
    let b = topology(true, false, false);
    for sql in READS {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "P",
            "{sql}"
        );
        // A read of no table (`SELECT 1`, `SELECT @@server_id`, `SELECT NOW()`) goes to the
        // primary even with "error": drivers send such reads when they connect.
        let tableless = classify(sql.as_bytes()).reads_no_table;
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Error),
            if tableless { "P" } else { "E" },
            "{sql}"
        );
    }
    for sql in ["SELECT 1", "SELECT @@server_id", "SELECT NOW()"] {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Error),
            "P",
            "{sql}"
        );
    }
    for sql in ["SELECT * FROM t", "SHOW TABLES", "DESCRIBE t"] {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Error),
            "E",
            "{sql}"
        );
    }
}

#[test]
fn reads_held_back_for_read_your_writes_go_to_the_primary_only_while_a_replica_could_take_them() {
    let read = "SELECT * FROM t";
    let blocked = SessionView {
        blocked: bit(R1) | bit(R2),
        ..idle()
    };
    let up = topology(true, true, true);
    for policy in [NoReplicaPolicy::Primary, NoReplicaPolicy::Error] {
        assert_eq!(place(read, &blocked, &up, policy), "P");
    }
    // Both replicas down: no longer a matter of the session's write.
    let down = topology(true, false, false);
    assert_eq!(place(read, &blocked, &down, NoReplicaPolicy::Error), "E");
    assert_eq!(place(read, &blocked, &down, NoReplicaPolicy::Primary), "P");
}

#[test]
fn writes_fail_but_reads_work_when_the_primary_is_down() {
    let b = topology(false, true, true);
    for sql in PRIMARY_ONLY {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "E",
            "{sql:?}"
        );
    }
    for sql in READS {
        assert_eq!(
            place(sql, &idle(), &b, NoReplicaPolicy::Primary),
            "R",
            "{sql}"
        );
    }
}

#[test]
fn a_replica_with_no_connection_to_spare_is_passed_over_while_another_has_one() {
    let b = topology(true, true, true);
    let read = classify(b"SELECT 1");
    let full = |ids: &[usize]| ids.iter().fold(0u64, |m, &i| m | (1 << i));
    for pick in [0.0, 0.4, 0.9] {
        let s = SessionView {
            saturated: full(&[R1]),
            ..idle()
        };
        let d = route(&read, &s, &b, NoReplicaPolicy::Primary, pick).unwrap();
        assert_eq!(d.target, Target::Replica(R2), "pick {pick}");
        // Even the replica the session read from last.
        let s = SessionView {
            saturated: full(&[R2]),
            current_replica: Some(R2),
            ..idle()
        };
        let d = route(&read, &s, &b, NoReplicaPolicy::Primary, pick).unwrap();
        assert_eq!(d.target, Target::Replica(R1), "pick {pick}");
        // The free replica lacks the session's last write: not the saturated one either,
        // the session waits for the write instead (the caller's read-your-writes path).
        let s = SessionView {
            saturated: full(&[R1]),
            blocked: full(&[R2]),
            ..idle()
        };
        let d = route(&read, &s, &b, NoReplicaPolicy::Primary, pick).unwrap();
        assert_eq!(d.target, Target::Primary(P), "pick {pick}");
        // All saturated: the read still goes to a replica (and waits there), not the primary.
        let s = SessionView {
            saturated: full(&[R1, R2]),
            ..idle()
        };
        let d = route(&read, &s, &b, NoReplicaPolicy::Primary, pick).unwrap();
        assert!(matches!(d.target, Target::Replica(_)), "pick {pick}");
    }
}

#[test]
fn the_session_keeps_its_current_replica_while_it_is_up() {
    let b = topology(true, true, true);
    let s = SessionView {
        current_replica: Some(R2),
        ..idle()
    };
    for pick in [0.0, 0.4, 0.9] {
        let d = route(
            &classify(b"SELECT 1"),
            &s,
            &b,
            NoReplicaPolicy::Primary,
            pick,
        )
        .unwrap();
        assert_eq!(d.target, Target::Replica(R2));
    }
    let b = topology(true, true, false);
    let d = route(
        &classify(b"SELECT 1"),
        &s,
        &b,
        NoReplicaPolicy::Primary,
        0.9,
    )
    .unwrap();
    assert_eq!(d.target, Target::Replica(R1));
}

#[test]
fn a_replica_that_just_failed_is_avoided() {
    let b = topology(true, true, true);
    let s = SessionView {
        current_replica: Some(R1),
        avoid: Some(R1),
        ..idle()
    };
    for pick in [0.0, 0.5, 0.99] {
        let d = route(
            &classify(b"SELECT 1"),
            &s,
            &b,
            NoReplicaPolicy::Primary,
            pick,
        )
        .unwrap();
        assert_eq!(d.target, Target::Replica(R2));
    }
}

#[test]
fn replicas_are_chosen_by_weight() {
    let mut b = topology(true, true, true);
    b[R1].weight = 3;
    b[R2].weight = 1;
    let mut hits = [0u32; 3];
    for i in 0..100 {
        let pick = i as f64 / 100.0;
        let d = route(
            &classify(b"SELECT 1"),
            &idle(),
            &b,
            NoReplicaPolicy::Primary,
            pick,
        )
        .unwrap();
        hits[d.target.backend()] += 1;
    }
    assert_eq!(hits, [0, 75, 25]);
    b[R1].weight = 0;
    let d = route(
        &classify(b"SELECT 1"),
        &idle(),
        &b,
        NoReplicaPolicy::Primary,
        0.0,
    )
    .unwrap();
    assert_eq!(d.target, Target::Replica(R2), "weight 0 never gets reads");
    let _ = P;
}

#[test]
fn a_replica_over_its_lag_bound_takes_no_reads() {
    let read = classify(b"SELECT 1");
    let mut backends = topology(true, true, true);
    backends[R1].lag_ok = false;
    for pick in [0.0, 0.3, 0.6, 0.99] {
        let d = route(&read, &idle(), &backends, NoReplicaPolicy::Primary, pick).unwrap();
        assert_eq!(d.target, Target::Replica(R2), "pick {pick}");
    }
    // The session's current replica is left when it falls behind.
    let s = SessionView {
        current_replica: Some(R1),
        ..idle()
    };
    let d = route(&read, &s, &backends, NoReplicaPolicy::Primary, 0.0).unwrap();
    assert_eq!(d.target, Target::Replica(R2));
    backends[R2].lag_ok = false;
    let d = route(&read, &idle(), &backends, NoReplicaPolicy::Primary, 0.5).unwrap();
    assert_eq!(d.target, Target::Primary(P));
    assert!(matches!(
        route(
            &classify(b"SELECT * FROM t"),
            &idle(),
            &backends,
            NoReplicaPolicy::Error,
            0.5
        ),
        Err(RouteError::NoReplica)
    ));
}

#[test]
fn two_writable_backends_refuse_writes_but_serve_reads() {
    let mut backends = topology(true, true, true);
    backends[R1].role = Role::Primary;
    let write = classify(b"INSERT INTO t VALUES (1)");
    assert!(matches!(
        route(&write, &idle(), &backends, NoReplicaPolicy::Primary, 0.5),
        Err(RouteError::SplitBrain)
    ));
    let read = classify(b"SELECT 1");
    let d = route(&read, &idle(), &backends, NoReplicaPolicy::Primary, 0.5).unwrap();
    assert_eq!(d.target, Target::Replica(R2));
}

fn loaded(loads: &[u32]) -> SessionView {
    let mut out = [0u32; MAX_LOAD_TRACKED];
    out[..loads.len()].copy_from_slice(loads);
    SessionView {
        outstanding: Some(out),
        ..idle()
    }
}

#[test]
fn a_busier_replica_gets_fewer_new_sessions() {
    let read = classify(b"SELECT 1");
    let backends = topology(true, true, true);
    for pick in [0.0, 0.5, 0.99] {
        let d = route(
            &read,
            &loaded(&[0, 5, 1]),
            &backends,
            NoReplicaPolicy::Primary,
            pick,
        );
        assert_eq!(d.unwrap().target, Target::Replica(R2), "pick {pick}");
    }
    // Equal loads: the weighted chance decides.
    let picks: Vec<_> = [0.1, 0.9]
        .iter()
        .map(|&p| {
            route(
                &read,
                &loaded(&[0, 2, 2]),
                &backends,
                NoReplicaPolicy::Primary,
                p,
            )
            .unwrap()
            .target
        })
        .collect();
    assert_eq!(picks, [Target::Replica(R1), Target::Replica(R2)]);
}

#[test]
fn load_is_weighed_against_weight() {
    let read = classify(b"SELECT 1");
    let mut backends = topology(true, true, true);
    backends[R1].weight = 4;
    // replica1 has 3 in flight on weight 4 (0.75 each), replica2 1 on weight 1.
    let d = route(
        &read,
        &loaded(&[0, 3, 1]),
        &backends,
        NoReplicaPolicy::Primary,
        0.99,
    );
    assert_eq!(d.unwrap().target, Target::Replica(R1));
    // A session keeps its replica even when another is less busy.
    let s = SessionView {
        current_replica: Some(R2),
        ..loaded(&[0, 0, 9])
    };
    let d = route(&read, &s, &backends, NoReplicaPolicy::Primary, 0.0);
    assert_eq!(d.unwrap().target, Target::Replica(R2));
}

fn read_only_on_replica() -> SessionView {
    SessionView {
        read_only_on_replica: true,
        ..idle()
    }
}

#[test]
fn a_read_only_transaction_goes_where_a_read_would_when_asked() {
    let b = topology(true, true, true);
    let begin = "START TRANSACTION READ ONLY";
    let primary = NoReplicaPolicy::Primary;
    assert_eq!(place(begin, &idle(), &b, primary), "P", "off by default");
    let on = read_only_on_replica();
    assert_eq!(place(begin, &on, &b, primary), "R");
    assert_eq!(
        place(
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            &on,
            &b,
            primary
        ),
        "R"
    );
    for sql in [
        "BEGIN",
        "START TRANSACTION",
        "START TRANSACTION READ WRITE",
        "XA START 'x'",
    ] {
        assert_eq!(place(sql, &on, &b, primary), "P", "{sql}");
    }
    assert_eq!(
        place(&format!("/* rwsplit:primary */ {begin}"), &on, &b, primary),
        "P"
    );
    // A replica hint takes a read past the pins, never a transaction.
    let pinned_on = SessionView {
        read_only_on_replica: true,
        ..pinned()
    };
    let hinted = format!("/* rwsplit:replica */ {begin}");
    assert_eq!(place(&hinted, &pinned_on, &b, primary), "P");
    assert_eq!(
        place("/* rwsplit:replica */ SELECT 1", &pinned_on, &b, primary),
        "R"
    );
    // Wherever a read would not go to a replica, neither does it.
    let pinned = SessionView {
        read_only_on_replica: true,
        ..pinned()
    };
    let no_autocommit = SessionView {
        read_only_on_replica: true,
        ..no_autocommit()
    };
    let in_trx = SessionView {
        read_only_on_replica: true,
        ..in_trx()
    };
    for s in [pinned, no_autocommit, in_trx] {
        assert_eq!(place(begin, &s, &b, primary), "P", "{s:?}");
    }
    assert_eq!(
        place(begin, &on, &topology(true, false, false), primary),
        "P"
    );
    assert_eq!(
        place(
            begin,
            &on,
            &topology(true, false, false),
            NoReplicaPolicy::Error
        ),
        "E"
    );
    // Held back by read-your-writes on every replica: the primary has the write.
    let blocked = SessionView {
        blocked: bit(R1) | bit(R2),
        ..read_only_on_replica()
    };
    assert_eq!(place(begin, &blocked, &b, primary), "P");
}

#[test]
fn everything_in_a_replica_transaction_goes_to_its_replica() {
    let b = topology(true, true, true);
    let s = SessionView {
        in_transaction: true,
        replica_transaction: Some(R2),
        ..read_only_on_replica()
    };
    for sql in READS
        .iter()
        .chain(PRIMARY_ONLY)
        .chain(&["/* rwsplit:primary */ SELECT 1"])
    {
        let d = route(
            &classify(sql.as_bytes()),
            &s,
            &b,
            NoReplicaPolicy::Primary,
            0.3,
        );
        assert_eq!(d.map(|d| d.target), Ok(Target::Replica(R2)), "{sql:?}");
    }
}

#[test]
fn nothing_that_could_write_runs_in_a_replica_transaction() {
    use InReplicaTransaction::*;
    let cases: &[(&str, InReplicaTransaction)] = &[
        ("SELECT * FROM t", Stay),
        ("SHOW TABLES", Stay),
        ("SELECT SLEEP(0)", Stay),
        ("/* rwsplit:primary */ SELECT 1", Stay),
        ("SET NAMES utf8mb4", Stay),
        ("SET SESSION sql_mode = ''", Stay),
        ("SET autocommit = 1", Stay),
        ("USE app", Stay),
        ("COMMIT", Stay),
        ("ROLLBACK", Stay),
        ("COMMIT AND CHAIN", Stay),
        ("SAVEPOINT s", Stay),
        ("ROLLBACK TO SAVEPOINT s", Stay),
        ("START TRANSACTION READ ONLY", Stay),
        ("UNLOCK TABLES", Stay),
        ("INSERT INTO t VALUES (1)", ReadOnlyError),
        ("UPDATE t SET a = 1", ReadOnlyError),
        ("DELETE FROM t", ReadOnlyError),
        ("REPLACE INTO t VALUES (1)", ReadOnlyError),
        ("LOAD DATA LOCAL INFILE 'f' INTO TABLE t", ReadOnlyError),
        ("CREATE TABLE x (i int)", EndsTransaction),
        ("DROP TABLE x", EndsTransaction),
        ("ALTER TABLE t ADD c INT", EndsTransaction),
        ("TRUNCATE t", EndsTransaction),
        ("BEGIN", EndsTransaction),
        ("START TRANSACTION", EndsTransaction),
        ("XA START 'x'", Stay),
        ("xa begin 'x'", Stay),
        ("LOCK TABLES t READ", EndsTransaction),
        ("FLUSH TABLES WITH READ LOCK", EndsTransaction),
        ("BACKUP STAGE START", EndsTransaction),
        ("BACKUP LOCK t", EndsTransaction),
        ("LOCK INSTANCE FOR BACKUP", EndsTransaction),
        ("BACKUP STAGE END", Stay),
        ("BACKUP UNLOCK", Stay),
        (
            "CREATE TEMPORARY TABLE tmp (i int)",
            Refused("a temporary table"),
        ),
        ("SELECT * FROM t FOR UPDATE", Refused("a locking read")),
        (
            "SELECT * FROM t LOCK IN SHARE MODE",
            Refused("a locking read"),
        ),
        ("SET @a = 1", Refused("a user variable or SELECT INTO")),
        ("SELECT @a", Refused("a user variable or SELECT INTO")),
        (
            "SELECT a INTO @x FROM t",
            Refused("a user variable or SELECT INTO"),
        ),
        (
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            Refused("a user variable or SELECT INTO"),
        ),
        ("SELECT GET_LOCK('l', 1)", Refused("this function")),
        ("SELECT f(1)", Stay),
        (
            "SELECT @@last_insert_id",
            Refused("a variable of the primary's connection"),
        ),
        ("SELECT f(@a)", Refused("a user variable or SELECT INTO")),
        ("SELECT LAST_INSERT_ID()", Refused("this function")),
        ("SHOW SESSION VARIABLES LIKE 'tx%'", Stay),
        ("SELECT * FROM information_schema.SESSION_STATUS", Stay),
        ("SHOW VARIABLES LIKE 'x' /* @v */", Stay),
        ("CALL p()", Refused("CALL")),
        (
            "SELECT 1; DELETE FROM t",
            Refused("several statements in one query"),
        ),
        ("PREPARE s FROM 'SELECT 1'", Refused("SQL PREPARE/EXECUTE")),
        ("SET ROLE r", Refused("SET ROLE")),
        // State kept on the primary connection for good, made on the replica, would be lost.
        ("SET max_join_size = NEXTVAL(s)", Refused("this statement")),
        ("garbage that is not sql", Refused("this statement")),
    ];
    for (sql, want) in cases {
        assert_eq!(
            in_replica_transaction(&classify(sql.as_bytes())),
            *want,
            "{sql}"
        );
    }
}

#[test]
fn a_read_only_primary_takes_no_change_but_what_the_server_allows_everyone() {
    let refused =
        |sql: &str, temp: bool| refused_on_read_only_primary(&classify(sql.as_bytes()), temp);
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "CREATE TABLE t2 (a INT)",
        "ALTER TABLE t ADD b INT",
    ] {
        assert!(refused(sql, false), "{sql}");
    }
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT 1 FROM t",
        "CREATE TEMPORARY TABLE tt (a INT)",
        "DROP TEMPORARY TABLE tt",
        "BEGIN",
        "COMMIT",
    ] {
        assert!(!refused(sql, false), "{sql}");
    }
    // With temporary tables, DML may be theirs, which the server allows.
    assert!(!refused("INSERT INTO tt VALUES (1)", true));
    assert!(refused("CREATE TABLE t3 (a INT)", true));
}
