//! The classifier's fast path, its sqlparser fallback, the digest and the routing decision, on
//! a corpus shaped like an OLTP mix. `cargo bench --bench classify`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rwsplit::classify::{self, fallback};
use rwsplit::config::{NoReplicaPolicy, Role};
use rwsplit::route::{self, BackendView, SessionView};

fn corpus() -> Vec<(&'static str, String)> {
    let cols: Vec<String> = (1..=20).map(|i| format!("c{i}")).collect();
    let vals: Vec<String> = (1..=20).map(|i| format!("'value number {i}'")).collect();
    let insert = format!(
        "INSERT INTO orders ({}) VALUES ({})",
        cols.join(", "),
        vals.join(", ")
    );
    let mut report = String::from(
        "SELECT o.id, o.created_at, c.name, c.email, SUM(l.qty * l.price) AS total \
         FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN order_lines l ON l.order_id = o.id WHERE o.created_at >= '2024-01-01' AND (",
    );
    let mut i = 0;
    while report.len() < 2000 {
        report.push_str(&format!("o.status = 'state{i}' OR "));
        i += 1;
    }
    report.push_str(
        "1 = 0) GROUP BY o.id, o.created_at, c.name, c.email ORDER BY total DESC LIMIT 50",
    );
    vec![
        ("point_select", "SELECT c FROM sbtest1 WHERE id = 4242".to_string()),
        ("insert_20_columns", insert),
        ("report_2kb", report),
        ("set_names", "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci".to_string()),
        (
            "hinted",
            "/* rwsplit:primary */ SELECT balance FROM accounts WHERE id = 7".to_string(),
        ),
        (
            "commented",
            "-- fetch the user\n/* app=web route=/profile */ SELECT * FROM users WHERE id = 99 # tail"
                .to_string(),
        ),
        (
            "replace_function",
            "SELECT REPLACE(name, 'a', 'b') FROM users WHERE id = 3".to_string(),
        ),
    ]
}

fn bench_classify(c: &mut Criterion) {
    let corpus = corpus();
    let mut g = c.benchmark_group("classify");
    for (name, sql) in &corpus {
        g.bench_function(*name, |b| {
            b.iter(|| classify::classify(black_box(sql.as_bytes())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sqlparser_full_parse");
    for (name, sql) in &corpus {
        g.bench_function(*name, |b| {
            b.iter(|| fallback::parse_is_plain_query(black_box(sql)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("digest");
    for (name, sql) in &corpus {
        g.bench_function(*name, |b| {
            b.iter(|| classify::digest(black_box(sql.as_bytes())))
        });
    }
    g.finish();
}

fn bench_route(c: &mut Criterion) {
    let backends = [
        BackendView {
            role: Role::Primary,
            up: true,
            weight: 1,
            lag_ok: true,
            read_only: false,
        },
        BackendView {
            role: Role::Replica,
            up: true,
            weight: 1,
            lag_ok: true,
            read_only: false,
        },
        BackendView {
            role: Role::Replica,
            up: true,
            weight: 2,
            lag_ok: true,
            read_only: false,
        },
    ];
    let read = classify::classify(b"SELECT c FROM sbtest1 WHERE id = 1");
    let session = SessionView {
        autocommit: true,
        ..SessionView::default()
    };
    c.bench_function("route/read", |b| {
        b.iter(|| {
            route::route(
                black_box(&read),
                black_box(&session),
                &backends,
                NoReplicaPolicy::Primary,
                0.42,
            )
        })
    });
}

criterion_group!(benches, bench_classify, bench_route);
criterion_main!(benches);
