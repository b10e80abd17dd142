//! What rwsplit adds per statement besides forwarding: the metrics observation (the labelled
//! statement counter looked up, the latency histogram and the byte and classifier counters
//! through registered handles, with the Prometheus recorder installed), the query-insight update and
//! the digest it needs. `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rwsplit::insight::{Insight, Sample};

fn bench(c: &mut Criterion) {
    let _handle = rwsplit::metrics::handle();
    c.bench_function("metrics/statement_counter_and_histogram", |b| {
        b.iter(|| {
            metrics::counter!(rwsplit::metrics::STATEMENTS, "command" => "query", "route" => "replica", "backend" => "replica1", "outcome" => "ok")
                .increment(1);
            rwsplit::metrics::hot()
                .seconds_replica
                .record(black_box(0.000_21));
        })
    });
    c.bench_function("metrics/hot_counters", |b| {
        b.iter(|| {
            let hot = rwsplit::metrics::hot();
            hot.bytes_from_clients.increment(black_box(40));
            hot.classified_fast.increment(1);
            hot.bytes_to_clients.increment(black_box(120));
        })
    });
    let insight = Insight::new(5000);
    // The key comes with the digest (`session::digests`), hashed when the digest is new to
    // the session.
    let digests: Vec<(String, u64)> = (0..200)
        .map(|i| format!("SELECT c{i} FROM sbtest1 WHERE id = ?"))
        .map(|d| {
            let k = rwsplit::insight::key(&d);
            (d, k)
        })
        .collect();
    let mut n = 0usize;
    c.bench_function("insight/record", |b| {
        b.iter(|| {
            n = (n + 1) % digests.len();
            insight.record(&Sample {
                digest: &digests[n].0,
                key: digests[n].1,
                elapsed: Duration::from_micros(210),
                rows: 1,
                error: false,
                primary: false,
            })
        })
    });
    let mut buf = Vec::new();
    c.bench_function("classify_digest/point_select", |b| {
        b.iter(|| {
            rwsplit::classify::classify_digest(
                black_box(b"SELECT c FROM sbtest1 WHERE id = 4242"),
                &mut buf,
                rwsplit::classify::Dialect {
                    flavor: Some(rwsplit::classify::Flavor::MariaDb),
                    no_backslash_escapes: false,
                },
            )
        })
    });
    c.bench_function("digest/point_select", |b| {
        b.iter(|| rwsplit::classify::digest(black_box(b"SELECT c FROM sbtest1 WHERE id = 4242")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
