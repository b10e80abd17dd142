use super::*;

fn secs(n: u64) -> Lag {
    Lag::Behind(Duration::from_secs(n))
}

fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
        .collect()
}

#[test]
fn mariadb_slave_status_is_read() {
    let r = row(&[
        ("Slave_IO_State", Some("Waiting for master to send event")),
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("Yes")),
        ("Seconds_Behind_Master", Some("3")),
        ("Gtid_Slave_Pos", Some("0-1-601")),
    ]);
    assert_eq!(
        ReplicaStatus::from_row(&r),
        Some(ReplicaStatus {
            io_running: true,
            sql_running: true,
            seconds_behind: Some(3)
        })
    );
}

/// MySQL 8.0.22+ `SHOW REPLICA STATUS` names, as documented.
#[test]
fn mysql_replica_status_is_read() {
    let r = row(&[
        ("Replica_IO_State", Some("Waiting for source to send event")),
        ("Replica_IO_Running", Some("Connecting")),
        ("Replica_SQL_Running", Some("Yes")),
        ("Seconds_Behind_Source", None),
    ]);
    let s = ReplicaStatus::from_row(&r).expect("status");
    assert!(!s.io_running, "Connecting is not running");
    assert!(s.sql_running);
    assert_eq!(s.seconds_behind, None);
}

#[test]
fn a_row_without_replication_columns_is_no_status() {
    assert_eq!(
        ReplicaStatus::from_row(&row(&[("File", Some("binlog.000001"))])),
        None
    );
    assert_eq!(ReplicaStatus::from_row(&[]), None);
}

#[test]
fn mariadb_gtid_distance_counts_per_domain() {
    let d = |p, r| gtid_distance(Flavor::MariaDb, p, r);
    assert_eq!(d("0-1-601", "0-1-601"), Some(0));
    assert_eq!(d("0-1-601", "0-1-590"), Some(11));
    assert_eq!(
        d("0-1-601,1-2-10", "0-1-600"),
        Some(11),
        "a missing domain counts whole"
    );
    assert_eq!(d("0-1-601", "0-1-700"), Some(0), "ahead is not behind");
    // An empty primary position (GTIDs off, or no transaction yet) is nothing to compare.
    assert_eq!(d("", ""), None);
    assert_eq!(d("0-1-x", "0-1-1"), None);
    assert_eq!(d("0-1", "0-1-1"), None);
}

#[test]
fn mysql_gtid_distance_counts_missing_transactions() {
    let u1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let u2 = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let d = |p: &str, r: &str| gtid_distance(Flavor::MySql, p, r);
    assert_eq!(d(&format!("{u1}:1-100"), &format!("{u1}:1-100")), Some(0));
    assert_eq!(d(&format!("{u1}:1-100"), &format!("{u1}:1-90")), Some(10));
    assert_eq!(
        d(
            &format!("{u1}:1-100:105,\n{u2}:1-5"),
            &format!("{u1}:1-50:60-100")
        ),
        Some(9 + 1 + 5)
    );
    assert_eq!(d(&format!("{u1}:1-5"), ""), Some(5));
    // An empty primary position (GTIDs off, or no transaction yet) is nothing to compare.
    assert_eq!(d("", ""), None);
    assert_eq!(d(&format!("{u1}:5-1"), ""), None);
    assert_eq!(d("garbage", ""), None);
    // MySQL 8.3's tagged GTIDs: each tag of a uuid is a source of its own, tags in any case.
    assert_eq!(
        d(
            &format!("{u1}:1-100:audit:1-7:_b2:3,{u2}:Job:1-2"),
            &format!("{u1}:1-100:AUDIT:1-5,{u2}:job:1-2")
        ),
        Some(2 + 1)
    );
    assert_eq!(
        d(&format!("{u1}:tag:1-10"), &format!("{u1}:1-10")),
        Some(10),
        "untagged transactions are not the tag's"
    );
    assert_eq!(
        d(&format!("{u1}:tag:1-3"), &format!("{u1}:tag:1-3")),
        Some(0)
    );
    assert_eq!(
        d(&format!("{u1}:1-3:tag"), ""),
        None,
        "a tag without a range"
    );
    assert_eq!(d(&format!("{u1}:tag:other:1"), ""), None);
    assert_eq!(
        d(&format!("{u1}:9tag:1"), ""),
        None,
        "a tag starts with a letter"
    );
    // A source named twice counts once: overlapping ranges cover nothing twice.
    assert_eq!(
        d(&format!("{u1}:1-10"), &format!("{u1}:1-5,{u1}:3-7")),
        Some(3)
    );
}

#[test]
fn stopped_threads_are_never_zero_lag() {
    let s = |io, sql, behind| {
        Some(ReplicaStatus {
            io_running: io,
            sql_running: sql,
            seconds_behind: behind,
        })
    };
    assert_eq!(
        lag(s(true, false, None), Some(0), None, false),
        Lag::Stopped
    );
    assert_eq!(
        lag(s(false, true, Some(0)), Some(0), None, false),
        Lag::Stopped
    );
    assert_eq!(
        lag(None, Some(0), None, false),
        Lag::Stopped,
        "not a replica at all"
    );
    assert_eq!(lag(s(true, true, Some(5)), Some(0), None, false), secs(0));
    assert_eq!(lag(s(true, true, Some(5)), Some(3), None, false), secs(5));
    assert_eq!(lag(s(true, true, None), None, None, false), Lag::Unknown);
}

#[test]
fn with_the_primary_down_a_caught_up_replica_keeps_reads() {
    let io_down = Some(ReplicaStatus {
        io_running: false,
        sql_running: true,
        seconds_behind: None,
    });
    assert_eq!(lag(io_down, Some(0), None, true), secs(0));
    assert_eq!(
        lag(io_down, Some(4), None, true),
        Lag::Unknown,
        "still applying"
    );
    assert_eq!(lag(io_down, None, None, true), Lag::Unknown);
    let sql_down = io_down.map(|s| ReplicaStatus {
        sql_running: false,
        ..s
    });
    assert_eq!(lag(sql_down, Some(0), None, true), Lag::Stopped);
}

#[test]
fn the_heartbeat_beats_every_other_source_but_stopped_threads() {
    let running = Some(ReplicaStatus {
        io_running: true,
        sql_running: true,
        seconds_behind: Some(0),
    });
    let hb = Some(Duration::from_millis(730));
    assert_eq!(
        lag(running, Some(3), hb, false),
        Lag::Behind(Duration::from_millis(730))
    );
    assert_eq!(
        lag(running, Some(0), hb, false),
        Lag::Behind(Duration::from_millis(730))
    );
    let stopped = running.map(|s| ReplicaStatus {
        sql_running: false,
        ..s
    });
    assert_eq!(lag(stopped, Some(0), hb, false), Lag::Stopped);
    assert_eq!(
        lag(running, Some(3), None, false),
        secs(0),
        "seconds behind master"
    );
    let mut g = LagGate::new();
    g.update(lag(running, Some(3), hb, false), Duration::from_millis(500));
    assert_eq!(
        g.excluded,
        Some(Exclusion::Lagging),
        "sub-second bound with sub-second lag"
    );
}

#[test]
fn the_lag_gate_has_hysteresis() {
    let bound = Duration::from_secs(10);
    let mut g = LagGate::new();
    assert!(!g.admitted(), "excluded until the first reading");
    assert!(g.update(secs(2), bound));
    assert!(g.admitted());
    assert!(!g.update(secs(10), bound), "at the bound is within it");
    assert!(g.update(secs(11), bound));
    assert_eq!(g.excluded, Some(Exclusion::Lagging));
    assert!(
        !g.update(secs(9), bound),
        "not back until 80 % of the bound"
    );
    assert!(!g.update(secs(10), bound));
    assert!(g.update(secs(8), bound));
    assert!(g.admitted());
    assert!(g.update(Lag::Stopped, bound));
    assert_eq!(g.excluded, Some(Exclusion::ReplicationStopped));
    assert!(
        g.update(secs(9), bound),
        "stopped, then running near the bound: admitted"
    );
    assert!(g.update(Lag::Unknown, bound));
    assert_eq!(g.excluded, Some(Exclusion::StatusUnknown));
}

#[test]
fn sub_second_bounds_need_zero_lag() {
    let bound = Duration::from_millis(500);
    let mut g = LagGate::new();
    g.update(secs(0), bound);
    assert!(g.admitted());
    g.update(secs(1), bound);
    assert!(!g.admitted());
    g.update(secs(0), bound);
    assert!(g.admitted());
}

#[test]
fn flavor_comes_from_the_version_string() {
    assert_eq!(
        Flavor::of("5.5.5-10.11.6-MariaDB-0+deb12u1"),
        Flavor::MariaDb
    );
    assert_eq!(Flavor::of("8.0.36"), Flavor::MySql);
}

#[test]
fn a_multi_source_replica_is_as_good_as_its_worst_channel() {
    let ch = |io, sql, behind| ReplicaStatus {
        io_running: io,
        sql_running: sql,
        seconds_behind: behind,
    };
    assert_eq!(ReplicaStatus::worst([]), None);
    assert_eq!(
        ReplicaStatus::worst([ch(true, true, Some(1)), ch(true, true, Some(7))]),
        Some(ch(true, true, Some(7)))
    );
    assert_eq!(
        ReplicaStatus::worst([ch(true, true, Some(0)), ch(false, true, Some(0))]),
        Some(ch(false, true, Some(0)))
    );
    assert_eq!(
        ReplicaStatus::worst([ch(true, true, Some(0)), ch(true, true, None)]),
        Some(ch(true, true, None))
    );
}
