//! The digests of a session's recent statements (text and prepared), shared rather than
//! allocated per statement.

use std::sync::Arc;

/// Recent digests a session keeps.
const RECENT: usize = 8;
/// Longer digests are not kept: a session's memory stays small (idle clients count).
const MAX_KEPT_LEN: usize = 256;

/// Computes a statement's digest into a buffer it keeps and hands back the `Arc` of a recent
/// statement with the same digest, so an application repeating a handful of statements
/// allocates nothing for them.
#[derive(Debug, Default)]
pub struct Digests {
    buf: String,
    recent: Vec<Arc<str>>,
}

impl Digests {
    pub fn of(&mut self, sql: &[u8]) -> Arc<str> {
        crate::classify::digest_into(sql, &mut self.buf);
        let d = self.buf.as_str();
        let found = self.recent.iter().position(|r| &**r == d);
        let digest = match found {
            Some(i) => {
                // Most recent first.
                self.recent[..=i].rotate_right(1);
                self.recent[0].clone()
            }
            None => {
                let digest: Arc<str> = d.into();
                if digest.len() <= MAX_KEPT_LEN {
                    self.recent.truncate(RECENT - 1);
                    self.recent.insert(0, digest.clone());
                }
                digest
            }
        };
        if self.buf.capacity() > 4 * MAX_KEPT_LEN {
            self.buf = String::new();
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_digest_is_shared_and_the_list_stays_bounded() {
        let mut d = Digests::default();
        let a = d.of(b"SELECT c FROM t1 WHERE id = 5");
        assert_eq!(&*a, "SELECT c FROM t1 WHERE id = ?");
        let b = d.of(b"SELECT c FROM t2 WHERE id = 6");
        assert_eq!(&*b, "SELECT c FROM t2 WHERE id = ?");
        assert!(!Arc::ptr_eq(&a, &d.of(b"select c from t1 where id=7")));
        // Same text as `a` (digests keep the statement's case): shared.
        assert!(Arc::ptr_eq(&a, &d.of(b"SELECT c FROM t1 WHERE id = 8")));
        for i in 0..20 {
            d.of(format!("SELECT {i} FROM x{i}").as_bytes());
        }
        assert_eq!(d.recent.len(), RECENT);
        // `a` was pushed out: a new Arc with the same text.
        let again = d.of(b"SELECT c FROM t1 WHERE id = 9");
        assert!(!Arc::ptr_eq(&a, &again));
        assert_eq!(again, a);
        // A long digest is returned but not kept.
        let long = format!("SELECT {} FROM t", "c, ".repeat(200));
        let l = d.of(long.as_bytes());
        assert!(l.len() > MAX_KEPT_LEN);
        assert!(d.recent.iter().all(|r| r.len() <= MAX_KEPT_LEN));
    }
}
