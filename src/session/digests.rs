//! The digests of a session's recent statements (text and prepared), shared rather than
//! allocated per statement.

use std::sync::Arc;

use crate::classify::Classification;

/// Recent digests a session keeps.
const RECENT: usize = 8;
/// Longer digests are not kept: a session's memory stays small (idle clients count).
const MAX_KEPT_LEN: usize = 256;
/// A digest is cut here (`...` marks the cut), as performance_schema cuts at
/// `max_digest_length` (1024): statements that differ only further on count as one, and the
/// query insight, which keeps every digest it counts, keeps at most this much of each.
pub const MAX_DIGEST_LEN: usize = 1024;

/// Classifies a statement and writes its digest into a buffer it keeps, in one pass of the
/// lexer, and hands back the `Arc` of a recent statement with the same digest, so an
/// application repeating a handful of statements allocates nothing for them. Each digest comes
/// with its key in the query insight (`insight::key`), kept with it: a statement whose digest is
/// among the session's recent ones is neither hashed nor allocated.
#[derive(Debug, Default)]
pub struct Digests {
    buf: Vec<u8>,
    recent: Vec<Digest>,
}

impl Digests {
    /// `dialect`: what the classifier must know of the server and the session.
    pub fn classify(
        &mut self,
        sql: &[u8],
        dialect: crate::classify::Dialect,
    ) -> (Classification, Digest) {
        let class = crate::classify::classify_digest(sql, &mut self.buf, dialect);
        cut(&mut self.buf);
        // Compared as bytes: a recent digest is valid UTF-8, so bytes equal to it are too, and a
        // repeated statement needs no UTF-8 check at all.
        // `Ok`: the index of the recent digest it is; `Err`: its text, new to the session.
        let found = match self
            .recent
            .iter()
            .position(|r| r.text.as_bytes() == self.buf.as_slice())
        {
            Some(i) => Ok(i),
            None => {
                // One UTF-8 check of the whole digest; borrowed when valid, as it almost always
                // is. Replaced bytes never equal their kept text: looked up by text then.
                let text = String::from_utf8_lossy(&self.buf);
                let at = match &text {
                    std::borrow::Cow::Owned(t) => self.recent.iter().position(|r| *r.text == **t),
                    std::borrow::Cow::Borrowed(_) => None,
                };
                at.ok_or(text)
            }
        };
        let digest = match found {
            Ok(i) => {
                // Most recent first.
                self.recent[..=i].rotate_right(1);
                self.recent[0].clone()
            }
            Err(text) => {
                let digest = Digest::new(text.into());
                if digest.text.len() <= MAX_KEPT_LEN {
                    self.recent.truncate(RECENT - 1);
                    self.recent.insert(0, digest.clone());
                }
                digest
            }
        };
        if self.buf.capacity() > 4 * MAX_KEPT_LEN {
            self.buf = Vec::new();
        }
        (class, digest)
    }
}

/// What ends a cut digest.
const CUT_MARK: &str = "...";

/// Cuts a digest at `MAX_DIGEST_LEN` bytes, at a character's start (the text stays UTF-8
/// where the statement was), and marks the cut with `CUT_MARK`.
fn cut(digest: &mut Vec<u8>) {
    if digest.len() > MAX_DIGEST_LEN {
        let mut at = MAX_DIGEST_LEN;
        while at > 0 && digest[at] & 0xC0 == 0x80 {
            at -= 1;
        }
        digest.truncate(at);
        digest.extend_from_slice(CUT_MARK.as_bytes());
    }
}

/// Whether `digest` was cut: it no longer tells its statement from others.
pub fn is_cut(digest: &str) -> bool {
    digest.ends_with(CUT_MARK)
}

/// A statement's digest and its key in the query insight, which always go together.
#[derive(Debug, Clone)]
pub struct Digest {
    text: Arc<str>,
    key: u64,
}

impl Digest {
    pub fn new(text: Arc<str>) -> Digest {
        let key = crate::insight::key(&text);
        Digest { text, key }
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    pub fn key(&self) -> u64 {
        self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(d: &mut Digests, sql: &[u8]) -> Arc<str> {
        let (class, digest) = d.classify(sql, Default::default());
        // One pass for both: the same classification and key as computed apart.
        assert_eq!(class, crate::classify::classify(sql));
        assert_eq!(digest.key, crate::insight::key(&digest.text));
        let mut alone = crate::classify::digest(sql).into_bytes();
        cut(&mut alone);
        assert!(digest.text.as_bytes() == alone, "the digests differ");
        digest.text
    }

    #[test]
    fn a_long_digest_is_cut_at_max_digest_length() {
        let mut d = Digests::default();
        let cols: Vec<String> = (0..400).map(|i| format!("col_{i}")).collect();
        let a = format!("SELECT {} FROM t WHERE x = 1", cols.join(", "));
        let b = format!("SELECT {} FROM u", cols.join(", "));
        let (_, da) = d.classify(a.as_bytes(), Default::default());
        let (_, db) = d.classify(b.as_bytes(), Default::default());
        assert!(
            da.text.len() <= MAX_DIGEST_LEN + 3,
            "{} bytes",
            da.text.len()
        );
        assert!(da.text.ends_with("..."));
        assert_eq!(da.text, db.text, "they differ only past the cut");
        assert_eq!(da.key, crate::insight::key(&da.text));
        // Cut at a character's start.
        let wide = format!("SELECT {}", "é, ".repeat(600));
        let (_, dw) = d.classify(wide.as_bytes(), Default::default());
        assert!(!dw.text.contains('\u{FFFD}'), "cut inside a character");
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
        assert!(d.recent.iter().all(|r| r.text.len() <= MAX_KEPT_LEN));
    }

    #[test]
    fn classifying_with_the_digest_gives_what_each_gives_alone() {
        use crate::classify::Hint;
        let mut d = Digests::default();
        for sql in [
            &b"SELECT c FROM sbtest1 WHERE id=5 /* rwsplit:primary */"[..],
            b"/* rwsplit:replica */ SELECT 1",
            b"UPDATE t SET a = @v, b = @@session.sql_mode WHERE id IN (1, 2, 3)",
            b"SELECT REPLACE(a, 'x', 'y') FROM t",
            b"SET NAMES utf8mb4; SELECT 1",
            b"",
            b"-- only a comment",
        ] {
            of(&mut d, sql);
        }
        // A hint after the last token counts.
        assert_eq!(
            d.classify(b"SELECT 1 /* rwsplit:primary */", Default::default())
                .0
                .hint,
            Some(Hint::Primary)
        );
        // The classifier reads 16384 tokens ("SELECT", then "+" and "1" in turn): a hint in a
        // comment read while lexing one of them counts, and a trailing one when nothing
        // follows; one before a token past them does not.
        let plus = |n: usize| "SELECT 1".to_string() + &" + 1".repeat(n);
        for (sql, hint) in [
            (plus(8190) + " /* rwsplit:primary */", Some(Hint::Primary)), // 16382 tokens
            (
                plus(8190) + " + /* rwsplit:primary */ 1",
                Some(Hint::Primary),
            ), // 16384th token
            (plus(8191) + " /* rwsplit:primary */", Some(Hint::Primary)), // after exactly 16384
            (plus(8191) + " /* rwsplit:primary */ + 1", None),            // before the 16385th
            (plus(12000) + " /* rwsplit:primary */ + 1", None),
        ] {
            assert_eq!(
                of_class(&mut d, sql.as_bytes()).hint,
                hint,
                "{} bytes",
                sql.len()
            );
        }
    }

    fn of_class(d: &mut Digests, sql: &[u8]) -> Classification {
        of(d, sql);
        d.classify(sql, Default::default()).0
    }

    #[test]
    fn invalid_utf8_in_a_digest_is_replaced_as_it_was_word_by_word() {
        let mut d = Digests::default();
        let (_, a) = d.classify(
            b"SELECT a\xe2\x82 FROM t WHERE b = '\xff'",
            Default::default(),
        );
        assert_eq!(&**a.text(), "SELECT a\u{FFFD} FROM t WHERE b = ?");
        // Its bytes are not those of the kept text; run again, it is found by text: shared,
        // and kept once.
        let (_, again) = d.classify(b"SELECT a\xe2\x82 FROM t WHERE b = 'x'", Default::default());
        assert!(Arc::ptr_eq(again.text(), a.text()));
        assert_eq!(again.key(), a.key());
        assert_eq!(d.recent.iter().filter(|r| r.text == a.text).count(), 1);
        let (_, b) = d.classify(b"SELECT \xff\xfe, c FROM t", Default::default());
        assert_eq!(&**b.text(), "SELECT \u{FFFD}\u{FFFD}, c FROM t");
        assert_eq!(
            crate::classify::digest(b"SELECT \xff\xfe, c FROM t"),
            &**b.text()
        );
    }
}
