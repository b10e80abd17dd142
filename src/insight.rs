//! Query insight: statistics per statement digest (the statement with literals replaced),
//! bounded in memory, and the slow query log.
//!
//! Digests are kept in shards under plain mutexes, each held for one small update: the hot
//! path locks one of 16 shards by the digest's key and bumps a few counters. The key comes
//! with the digest: a session hashes a digest only when it is not among its 8 most recent ones
//! (`session::digests`), not once per statement. The number of distinct digests is capped
//! (`[insight] max_digests`); past it, new shapes are counted under one "(other)" entry, so a
//! workload of ad-hoc literals-in-identifiers cannot grow memory.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

const SHARDS: usize = 16;
/// The digest the overflow is counted under.
pub const OTHER: &str = "(other)";

/// Totals for one digest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DigestStats {
    pub digest: String,
    pub count: u64,
    pub errors: u64,
    pub total_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub rows: u64,
    pub on_primary: u64,
    pub on_replica: u64,
}

impl DigestStats {
    fn add(&mut self, s: &Sample<'_>, us: u64) {
        self.count += 1;
        self.errors += u64::from(s.error);
        self.total_us = self.total_us.saturating_add(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        self.rows = self.rows.saturating_add(s.rows);
        if s.primary {
            self.on_primary += 1;
        } else {
            self.on_replica += 1;
        }
    }
}

/// One finished statement.
pub struct Sample<'a> {
    pub digest: &'a str,
    /// `key(digest)`.
    pub key: u64,
    pub elapsed: Duration,
    pub rows: u64,
    pub error: bool,
    pub primary: bool,
}

pub struct Insight {
    shards: Vec<Mutex<HashMap<u64, DigestStats, foldhash::fast::RandomState>>>,
    distinct: AtomicUsize,
    max_digests: usize,
}

/// Seeded once per process at random, so which digests share a key cannot be worked out offline.
/// (foldhash is only minimally resistant to a client that studies a running process; what such
/// a collision could do is file two digests' statistics under one.)
static KEY_SEED: std::sync::LazyLock<foldhash::quality::RandomState> =
    std::sync::LazyLock::new(Default::default);

/// A digest's key in the insight (its entry is found by this alone). foldhash rather than std's
/// SipHash: SipHash over a digest cost about 550 instructions per statement.
pub fn key(digest: &str) -> u64 {
    KEY_SEED.hash_one(digest)
}

impl Insight {
    pub fn new(max_digests: usize) -> Insight {
        Insight {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            distinct: AtomicUsize::new(0),
            max_digests: max_digests.max(1),
        }
    }

    /// Adds one statement to its digest's totals.
    pub fn record(&self, s: &Sample<'_>) {
        let mut k = s.key;
        let mut digest = s.digest;
        let shard = |k: u64| &self.shards[(k % SHARDS as u64) as usize];
        let mut map = shard(k).lock().unwrap_or_else(|p| p.into_inner());
        let us = s.elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(e) = map.get_mut(&k) {
            // The usual case, a digest seen before: one lookup.
            e.add(s, us);
            return;
        }
        if self.distinct.fetch_add(1, Ordering::Relaxed) >= self.max_digests {
            self.distinct.fetch_sub(1, Ordering::Relaxed);
            drop(map);
            digest = OTHER;
            k = key(OTHER);
            map = shard(k).lock().unwrap_or_else(|p| p.into_inner());
            if !map.contains_key(&k) {
                self.distinct.fetch_add(1, Ordering::Relaxed);
            }
        }
        map.entry(k)
            .or_insert_with(|| DigestStats {
                digest: digest.to_string(),
                min_us: u64::MAX,
                ..DigestStats::default()
            })
            .add(s, us);
    }

    /// The `n` digests with the most total time, most first.
    pub fn top(&self, n: usize) -> Vec<DigestStats> {
        let mut all: Vec<DigestStats> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.total_us.cmp(&a.total_us).then(b.count.cmp(&a.count)));
        all.truncate(n);
        all
    }

    /// Distinct digests held.
    pub fn len(&self) -> usize {
        self.distinct.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(digest: &str, ms: u64) -> Sample<'_> {
        Sample {
            digest,
            key: key(digest),
            elapsed: Duration::from_millis(ms),
            rows: 2,
            error: false,
            primary: false,
        }
    }

    #[test]
    fn totals_per_digest_and_the_top_by_total_time() {
        let i = Insight::new(100);
        i.record(&sample("SELECT a FROM t WHERE id = ?", 5));
        i.record(&sample("SELECT a FROM t WHERE id = ?", 1));
        i.record(&Sample {
            error: true,
            primary: true,
            ..sample("UPDATE t SET a = ?", 20)
        });
        let top = i.top(10);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].digest, "UPDATE t SET a = ?");
        assert_eq!((top[0].errors, top[0].on_primary), (1, 1));
        let s = &top[1];
        assert_eq!(
            (s.count, s.total_us, s.min_us, s.max_us, s.rows),
            (2, 6000, 1000, 5000, 4)
        );
        assert_eq!(s.on_replica, 2);
        assert_eq!(i.top(1).len(), 1);
    }

    #[test]
    fn distinct_digests_are_capped_and_the_rest_counted_as_other() {
        let i = Insight::new(10);
        for n in 0..1000 {
            i.record(&sample(&format!("SELECT * FROM t{n}"), 1));
        }
        assert!(i.len() <= 11, "{} digests held", i.len());
        let top = i.top(100);
        let other = top
            .iter()
            .find(|d| d.digest == OTHER)
            .expect("an (other) entry");
        assert_eq!(other.count, 990);
        assert_eq!(top.iter().map(|d| d.count).sum::<u64>(), 1000);
    }
}
