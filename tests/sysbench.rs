//! sysbench (Debian's package) through rwsplit: bounded runs. Any error the run does not
//! expect is fatal to it; concurrent `oltp_read_write` threads may deadlock each other on the
//! server (1213, retried by sysbench as against any server), which is reported and bounded.

mod common;

use common::*;
use mysql_async::prelude::*;

/// Runs sysbench with `args` against the proxy; returns its output, failing on a non-zero exit.
fn sysbench(proxy: &Proxy, args: &[&str]) -> String {
    let port = proxy.addr.port().to_string();
    let out = std::process::Command::new("sysbench")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=app",
            "--mysql-password=app",
            "--mysql-db=app",
            "--tables=2",
            "--table-size=10000",
        ])
        .args(args)
        .output()
        .expect("run sysbench (apt-get install sysbench)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sysbench {args:?} failed:\n{text}");
    text
}

/// The number after `label` in sysbench's report (`read:  1234`, `ignored errors: 0 ...`).
fn figure(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' in the sysbench report:\n{report}"))
}

async fn replica_selects() -> u64 {
    let mut total = 0;
    for port in REPLICA_PORTS {
        let n: Option<u64> = direct(port)
            .await
            .query_first(
                "SELECT COALESCE(SUM(SELECT_COMMANDS), 0) FROM information_schema.USER_STATISTICS \
                 WHERE USER = 'app'",
            )
            .await
            .expect("user statistics");
        total += n.unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_runs_through_the_proxy_with_no_errors_and_reads_on_replicas() {
    let proxy = Proxy::start();
    user_statistics_on().await;
    // The tables belong to this test alone (no other test uses sbtest*).
    let _ = std::process::Command::new("sysbench")
        .args([
            "oltp_read_write",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={}", proxy.addr.port()),
            "--mysql-user=app",
            "--mysql-password=app",
            "--mysql-db=app",
            "--tables=2",
            "cleanup",
        ])
        .output();
    sysbench(&proxy, &["oltp_read_write", "prepare"]);
    wait_sync();

    // Transactions with writes, all on the primary, in prepared-statement mode (the default).
    // One thread: no deadlock is possible, so no error of any kind is allowed.
    let rw = sysbench(
        &proxy,
        &[
            "oltp_read_write",
            "--threads=1",
            "--time=4",
            "--mysql-ignore-errors=none",
            "run",
        ],
    );
    let transactions = figure(&rw, "transactions:");
    eprintln!("oltp_read_write, 1 thread: {transactions} transactions, no errors");
    assert!(transactions > 50, "too few transactions:\n{rw}");
    assert_eq!(figure(&rw, "ignored errors:"), 0, "{rw}");
    assert_eq!(figure(&rw, "reconnects:"), 0, "{rw}");

    // Four threads: deadlocks between them are the server's (sysbench retries those); any other
    // error fails the run. They must stay rare.
    let rw = sysbench(
        &proxy,
        &["oltp_read_write", "--threads=4", "--time=6", "run"],
    );
    let transactions = figure(&rw, "transactions:");
    let deadlocks = figure(&rw, "ignored errors:");
    eprintln!(
        "oltp_read_write, 4 threads: {transactions} transactions, {} queries, \
         {deadlocks} deadlocks retried",
        figure(&rw, "queries:")
    );
    assert!(transactions > 100, "too few transactions:\n{rw}");
    assert!(
        deadlocks * 100 <= transactions,
        "too many retried errors:\n{rw}"
    );
    assert_eq!(figure(&rw, "reconnects:"), 0, "{rw}");

    // Reads without transactions, in text mode: on the replicas.
    wait_sync();
    let before = replica_selects().await;
    let ro = sysbench(
        &proxy,
        &[
            "oltp_read_only",
            "--skip-trx=on",
            "--db-ps-mode=disable",
            "--threads=4",
            "--time=5",
            "--mysql-ignore-errors=none",
            "run",
        ],
    );
    let reads = figure(&ro, "read:");
    let on_replicas = replica_selects().await - before;
    eprintln!(
        "oltp_read_only --skip-trx=on: {reads} reads, {on_replicas} SELECTs counted on the replicas"
    );
    assert_eq!(figure(&ro, "ignored errors:"), 0, "{ro}");
    assert!(reads > 1000, "too few reads:\n{ro}");
    assert!(
        on_replicas * 10 >= reads * 9,
        "only {on_replicas} of {reads} reads ran on replicas"
    );

    sysbench(&proxy, &["oltp_read_write", "cleanup"]);
}
