//! The digests of a session's recent statements (text and prepared), shared rather than
//! allocated per statement.

use std::sync::Arc;

use crate::classify::Classification;

/// Recent digests a session keeps.
const RECENT: usize = 8;
/// Longer digests are not kept: a session's memory stays small (idle clients count).
const MAX_KEPT_LEN: usize = 256;

/// Classifies a statement and writes its digest into a buffer it keeps, in one pass of the
/// lexer, and hands back the `Arc` of a recent statement with the same digest, so an
/// application repeating a handful of statements allocates nothing for them. Each digest comes
/// with its key in the query insight (`insight::key`), hashed once per digest kept here rather
/// than once per statement.
#[derive(Debug, Default)]
pub struct Digests {
    buf: Vec<u8>,
    recent: Vec<(Arc<str>, u64)>,
}

impl Digests {
    pub fn classify(&mut self, sql: &[u8]) -> (Classification, Digest) {
        let class = crate::classify::classify_digest(sql, &mut self.buf);
        // `classify_digest` leaves it valid UTF-8; the fallback is never taken.
        let d = std::str::from_utf8(&self.buf).unwrap_or("?");
        let found = self.recent.iter().position(|(r, _)| &**r == d);
        let digest = match found {
            Some(i) => {
                // Most recent first.
                self.recent[..=i].rotate_right(1);
                let (text, key) = &self.recent[0];
                Digest {
                    text: text.clone(),
                    key: *key,
                }
            }
            None => {
                let text: Arc<str> = d.into();
                let key = crate::insight::key(&text);
                if text.len() <= MAX_KEPT_LEN {
                    self.recent.truncate(RECENT - 1);
                    self.recent.insert(0, (text.clone(), key));
                }
                Digest { text, key }
            }
        };
        if self.buf.capacity() > 4 * MAX_KEPT_LEN {
            self.buf = Vec::new();
        }
        (class, digest)
    }
}

/// A statement's digest and its key in the query insight.
#[derive(Debug, Clone)]
pub struct Digest {
    pub text: Arc<str>,
    pub key: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(d: &mut Digests, sql: &[u8]) -> Arc<str> {
        let (class, digest) = d.classify(sql);
        // One pass for both: the same classification and key as computed apart.
        assert_eq!(class, crate::classify::classify(sql));
        assert_eq!(digest.key, crate::insight::key(&digest.text));
        assert_eq!(*digest.text, crate::classify::digest(sql));
        digest.text
    }

    #[test]
    fn a_repeated_digest_is_shared_and_the_list_stays_bounded() {
        let mut d = Digests::default();
        let a = of(&mut d, b"SELECT c FROM t1 WHERE id = 5");
        assert_eq!(&*a, "SELECT c FROM t1 WHERE id = ?");
        let b = of(&mut d, b"SELECT c FROM t2 WHERE id = 6");
        assert_eq!(&*b, "SELECT c FROM t2 WHERE id = ?");
        assert!(!Arc::ptr_eq(
            &a,
            &of(&mut d, b"select c from t1 where id=7")
        ));
        // Same text as `a` (digests keep the statement's case): shared.
        assert!(Arc::ptr_eq(
            &a,
            &of(&mut d, b"SELECT c FROM t1 WHERE id = 8")
        ));
        for i in 0..20 {
            of(&mut d, format!("SELECT {i} FROM x{i}").as_bytes());
        }
        assert_eq!(d.recent.len(), RECENT);
        // `a` was pushed out: a new Arc with the same text.
        let again = of(&mut d, b"SELECT c FROM t1 WHERE id = 9");
        assert!(!Arc::ptr_eq(&a, &again));
        assert_eq!(again, a);
        // A long digest is returned but not kept.
        let long = format!("SELECT {} FROM t", "c, ".repeat(200));
        let l = of(&mut d, long.as_bytes());
        assert!(l.len() > MAX_KEPT_LEN);
        assert!(d.recent.iter().all(|(r, _)| r.len() <= MAX_KEPT_LEN));
    }

    #[test]
    fn classifying_with_the_digest_gives_what_each_gives_alone() {
        let mut d = Digests::default();
        let invalid_utf8: &[u8] = b"SELECT \xff\xfe FROM t WHERE a = 'x' /* rwsplit:replica */";
        for sql in [
            &b"SELECT c FROM sbtest1 WHERE id=5 /* rwsplit:primary */"[..],
            b"/* rwsplit:replica */ SELECT 1",
            b"UPDATE t SET a = @v, b = @@session.sql_mode WHERE id IN (1, 2, 3)",
            b"SELECT REPLACE(a, 'x', 'y') FROM t",
            b"SET NAMES utf8mb4; SELECT 1",
            b"",
            b"-- only a comment",
            invalid_utf8,
        ] {
            of(&mut d, sql);
        }
        // Past the classifier's 4096 tokens, a hint no longer counts, as in `classify`.
        let mut long = "SELECT 1".to_string() + &" + 1".repeat(3000);
        long += " /* rwsplit:primary */ + 1";
        of(&mut d, long.as_bytes());
        let mut short = "SELECT 1".to_string() + &" + 1".repeat(100);
        short += " /* rwsplit:primary */";
        of(&mut d, short.as_bytes());
    }
}
