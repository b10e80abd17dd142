//! The admin API and the metrics it exposes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use mysql_async::prelude::*;

#[tokio::test]
async fn metrics_count_a_known_mix_of_statements_per_route() {
    let proxy = Proxy::start();
    let mut c = proxy.conn().await;
    let t = common::create_table(&mut c, "metrics", "id INT PRIMARY KEY").await;
    // A statement is counted just after its answer reaches the client: the counts are read
    // once they stop moving, and again until the new statements are all in.
    let statements = async || {
        let (_, m) = proxy.admin_get("/metrics", None).await;
        (metric_sum(&m, "rwsplit_statements_total", &[]), m)
    };
    let before = common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "the counts settle",
        async || {
            let (n, m) = statements().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (again, _) = statements().await;
            if n == again {
                Ok(m)
            } else {
                Err(format!("{n} then {again}"))
            }
        },
    )
    .await;
    for i in 0..3 {
        c.query_drop(format!("INSERT INTO {t} VALUES ({i})"))
            .await
            .expect("insert");
    }
    for _ in 0..5 {
        c.query_drop("SELECT 1").await.expect("select");
    }
    let err = c.query_drop("SELECT * FROM no_such_table_xyz").await;
    assert!(err.is_err());
    let base = metric_sum(&before, "rwsplit_statements_total", &[]);
    let after = common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "the 9 statements counted",
        async || {
            let (n, m) = statements().await;
            if n >= base + 9.0 {
                Ok(m)
            } else {
                Err(format!("{} counted", n - base))
            }
        },
    )
    .await;
    let delta = |metric: &str, filter: &[&str]| {
        metric_sum(&after, metric, filter) - metric_sum(&before, metric, filter)
    };
    let st = "rwsplit_statements_total";
    assert_eq!(
        delta(st, &["route=\"primary\"", "outcome=\"ok\""]),
        3.0,
        "{after}"
    );
    assert_eq!(delta(st, &["route=\"replica\"", "outcome=\"ok\""]), 5.0);
    assert_eq!(delta(st, &["route=\"replica\"", "outcome=\"error\""]), 1.0);
    assert_eq!(delta(st, &["command=\"query\""]), 9.0);
    assert_eq!(
        delta(
            "rwsplit_statement_duration_seconds_count",
            &["route=\"replica\""]
        ),
        6.0
    );
    assert_eq!(delta("rwsplit_classified_total", &["path=\"fast\""]), 9.0);
    assert!(delta("rwsplit_client_bytes_sent_total", &[]) > 0.0);
    // Gauges mirrored from the monitor and the pools.
    assert_eq!(metric_sum(&after, "rwsplit_backend_up", &[]), 3.0);
    assert_eq!(
        metric_sum(
            &after,
            "rwsplit_backend_role",
            &["backend=\"primary\"", "role=\"primary\""]
        ),
        1.0
    );
    assert_eq!(metric_sum(&after, "rwsplit_backend_takes_reads", &[]), 2.0);
    assert_eq!(metric_sum(&after, "rwsplit_split_brain", &[]), 0.0);
    // With multiplexing the session's primary connection went back to the pool, idle.
    let primary = ["backend=\"primary\""];
    let open = metric_sum(&after, "rwsplit_pool_connections_in_use", &primary)
        + metric_sum(&after, "rwsplit_pool_connections_idle", &primary);
    assert!(open >= 1.0, "{after}");
    assert_eq!(
        metric_sum(
            &after,
            "rwsplit_pool_connections_max",
            &["backend=\"primary\""]
        ),
        200.0
    );
    assert!(metric_sum(&after, "rwsplit_client_connections", &[]) >= 1.0);
    // Latency buckets go down to 50 us.
    assert!(
        after.contains(
            "rwsplit_statement_duration_seconds_bucket{route=\"replica\",le=\"0.00005\"}"
        )
    );
    c.query_drop(format!("DROP TABLE {t}")).await.expect("drop");
}

#[tokio::test]
async fn health_ready_and_backends_describe_the_topology() {
    let proxy = Proxy::start();
    // Serving MySQL clients starts after the first round of checks.
    proxy.conn().await.ping().await.expect("ping");
    assert_eq!(proxy.admin_get("/health", None).await.0, 200);
    assert_eq!(proxy.admin_get("/ready", None).await.0, 200);
    let (code, body) = proxy.admin_get("/backends", None).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 3);
    let by_name: HashMap<&str, &serde_json::Value> = list
        .iter()
        .map(|b| (b["name"].as_str().unwrap_or(""), b))
        .collect();
    assert_eq!(by_name["primary"]["role"], "primary");
    assert_eq!(by_name["primary"]["read_only"], false);
    for r in ["replica1", "replica2"] {
        assert_eq!(by_name[r]["role"], "replica");
        assert_eq!(by_name[r]["takes_reads"], true, "{body}");
        assert_eq!(by_name[r]["excluded"], serde_json::Value::Null);
        assert!(by_name[r]["lag_seconds"].as_f64().is_some());
        assert!(
            by_name[r]["gtid"]
                .as_str()
                .is_some_and(|g| g.starts_with("0-1-"))
        );
    }
    assert_eq!(proxy.admin_get("/nope", None).await.0, 404);
}

#[tokio::test]
async fn a_token_protects_everything_but_the_probes_and_config_hides_secrets() {
    let proxy = Proxy::start_with(|t| format!("{t}\n[admin]\ntoken = \"s3cret-token\"\n"));
    proxy.conn().await.ping().await.expect("ping");
    assert_eq!(proxy.admin_get("/metrics", None).await.0, 401);
    assert_eq!(proxy.admin_get("/metrics", Some("wrong")).await.0, 401);
    assert_eq!(
        proxy.admin_get("/metrics", Some("s3cret-token")).await.0,
        200
    );
    assert_eq!(proxy.admin_get("/health", None).await.0, 200);
    assert_eq!(proxy.admin_get("/ready", None).await.0, 200);
    let (code, body) = proxy.admin_get("/config", Some("s3cret-token")).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["users"][0]["name"], "app");
    assert_eq!(v["users"][0]["password"], "<redacted>");
    assert_eq!(v["monitor"]["password"], "<redacted>");
    assert!(!body.contains("s3cret-token"), "the token leaked: {body}");
    assert!(
        !body.contains(":\"monitor\""),
        "the monitor password leaked: {body}"
    );
}

#[tokio::test]
async fn sessions_show_a_running_statement_and_queries_aggregate_digests() {
    let proxy = Proxy::start();
    let mut sleeper = proxy.conn().await;
    let running = tokio::spawn(async move {
        sleeper.query_drop("SELECT SLEEP(2)").await.expect("sleep");
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = proxy.admin_get("/sessions", None).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let s = v
        .as_array()
        .and_then(|l| l.iter().find(|s| s["state"] == "executing"))
        .unwrap_or_else(|| panic!("no executing session in {body}"));
    assert_eq!(s["user"], "app");
    assert_eq!(s["schema"], "app");
    assert_eq!(s["digest"], "SELECT SLEEP(?)");
    assert!(
        s["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("replica")),
        "{body}"
    );
    assert!(s["seconds"].as_f64().is_some_and(|x| x >= 0.4), "{body}");
    running.await.expect("sleep task");

    // Right after a USE, the session's entry shows the new schema.
    let mut u = proxy.conn().await;
    u.query_drop("USE information_schema").await.expect("use");
    let (_, body) = proxy.admin_get("/sessions", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let s = v
        .as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == u.id()))
        .unwrap_or_else(|| panic!("no session {} in {body}", u.id()));
    assert_eq!(s["schema"], "information_schema", "{body}");

    let mut c = proxy.conn().await;
    for i in 0..7 {
        c.query_drop(format!("SELECT {i} AS n FROM seq_1_to_3"))
            .await
            .expect("select");
    }
    let (_, body) = proxy.admin_get("/queries?limit=100", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let d = v["top"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|d| d["digest"] == "SELECT ? AS n FROM seq_1_to_3")
        })
        .unwrap_or_else(|| panic!("digest missing from {body}"));
    assert_eq!(d["count"], 7);
    assert_eq!(d["rows"], 21);
    assert_eq!(d["on_replica"], 7);
    assert_eq!(d["errors"], 0);
    let sleep = v["top"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["digest"] == "SELECT SLEEP(?)"))
        .expect("the sleep's digest");
    assert!(sleep["total_us"].as_u64().is_some_and(|us| us >= 2_000_000));
}

/// `insight.max_digests`: past that many distinct statement shapes, new shapes are counted
/// together under "(other)", so a workload of ever-new statements cannot grow `/queries`.
#[tokio::test]
async fn statement_shapes_past_max_digests_are_counted_as_other() {
    let proxy = Proxy::start_with(|t| format!("{t}\n[insight]\nmax_digests = 3\n"));
    let mut c = proxy.conn().await;
    const SHAPES: usize = 6;
    const EACH: u64 = 4;
    for shape in 0..SHAPES {
        let columns = vec!["1"; shape + 1].join(", ");
        for _ in 0..EACH {
            c.query_drop(format!("SELECT {columns}"))
                .await
                .expect("select");
        }
    }
    let (_, body) = proxy.admin_get("/queries?limit=100", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["max_digests"], 3, "{body}");
    let top = v["top"].as_array().expect("top");
    // The cap, and "(other)" once past it.
    assert!(top.len() <= 4, "{} digests kept: {body}", top.len());
    let count = |d: &serde_json::Value| d["count"].as_u64().unwrap_or(0);
    let other = top
        .iter()
        .find(|d| d["digest"] == "(other)")
        .unwrap_or_else(|| panic!("no (other) digest: {body}"));
    let ours: u64 = top
        .iter()
        .filter(|d| {
            d["digest"]
                .as_str()
                .is_some_and(|s| s.starts_with("SELECT ?"))
        })
        .map(count)
        .sum();
    // At most three of the six shapes found a slot; every statement is still counted.
    assert!(ours <= 3 * EACH, "{body}");
    assert!(
        ours + count(other) >= SHAPES as u64 * EACH,
        "statements were lost: {body}"
    );
}

#[tokio::test]
async fn a_statement_past_its_query_timeout_is_killed_on_the_backend() {
    let proxy = Proxy::start_with(|t| {
        t.replace(
            "password = \"app\"\n",
            "password = \"app\"\nquery_timeout = \"500ms\"\n",
        )
    });
    let mut c = proxy.conn().await;
    let started = std::time::Instant::now();
    let err = c
        .query_drop("SELECT SUM(a.seq * b.seq) FROM seq_1_to_100000 a, seq_1_to_100000 b")
        .await
        .expect_err("the statement must be killed");
    let took = started.elapsed();
    eprintln!("killed after {took:?}: {err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(err.to_string().contains("1317"), "{err}");
    // The session goes on.
    let n: Option<u32> = c.query_first("SELECT 1").await.expect("after the kill");
    assert_eq!(n, Some(1));
    let (_, metrics) = proxy.admin_get("/metrics", None).await;
    assert!(
        metrics.contains("rwsplit_errors_total{kind=\"query_timeout\"} 1"),
        "{metrics}"
    );
}

/// Idle or half-sent admin connections cannot pile up until the process runs out of file
/// descriptors (and refuses MySQL clients): past `max_connections` new ones wait, and each is
/// closed after `idle_timeout` without traffic.
#[tokio::test]
async fn the_admin_api_bounds_its_connections_and_closes_idle_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::start_with(|t| {
        format!("{t}\n[admin]\nmax_connections = 3\nidle_timeout = \"1s\"\n")
    });
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::net::TcpStream::connect(proxy.admin)
                .await
                .expect("connect"),
        );
    }
    // A request begun and never finished holds its connection too.
    let mut half = tokio::net::TcpStream::connect(proxy.admin)
        .await
        .expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: rwsplit\r\n")
        .await
        .expect("half a request");
    idle.push(half);
    let started = std::time::Instant::now();
    let (code, _) = proxy.admin_get("/health", None).await;
    let waited = started.elapsed();
    assert_eq!(code, 200);
    assert!(
        waited >= Duration::from_millis(800),
        "served at once, past max_connections: {waited:?}"
    );
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an idle connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "an idle connection got {:?}", &buf[..n]);
    }
    // A client trickling its request a byte at a time is closed as well.
    let mut trickle = tokio::net::TcpStream::connect(proxy.admin)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: rwsplit\r\nX-Slow: ".repeat(4);
    let mut closed = false;
    for byte in request {
        if trickle.write_all(&[byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("an answer to a request not sent whole: {:?}", &buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still open");
    }
    assert!(closed, "the trickling client outlived its request");
    // Their permits are free again.
    let (code, _) = tokio::time::timeout(Duration::from_secs(5), proxy.admin_get("/health", None))
        .await
        .expect("served once the idle connections are gone");
    assert_eq!(code, 200);
}
