//! A byte-level tokenizer that knows just enough SQL to never mistake a string, a quoted
//! identifier or a comment for a keyword. It allocates nothing.

/// One token. Words are returned as slices of the input; compare them case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    Word(&'a [u8]),
    /// A string literal (`'...'`, or `"..."`, an identifier only with `ANSI_QUOTES`): never a
    /// keyword.
    Quoted,
    /// A backtick-quoted identifier, without its backticks (a doubled backtick in it stays
    /// doubled): a name, never a keyword.
    Ident(&'a [u8]),
    Number,
    /// `@name`, `@'name'`, `` @`name` ``: a user variable.
    UserVar,
    /// `@@name`, `@@session.name`: a system variable, with its scope if it has one
    /// (`session.name`; see `sysvar_scope`).
    SysVar(&'a [u8]),
    Punct(u8),
}

/// The bytes that go on a word: ASCII letters and digits, `_`, `$`, and every byte of a
/// multi-byte UTF-8 character. A table: one load per byte instead of four tests.
const WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        i += 1;
    }
    t
};

pub struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Inside `/*! ... */` or `/*M! ... */`, whose content is SQL.
    in_exec_comment: bool,
    /// A backslash in a string escapes the next byte (not with `NO_BACKSLASH_ESCAPES`).
    backslash_escapes: bool,
    /// A routing hint seen in a comment so far.
    pub hint: Option<super::Hint>,
    /// The statement may not read here as it reads on the server, so it goes to the primary:
    /// - a versioned executable comment (`/*!50700 ... */`, `/*!100500 ... */`, `/*M! ... */`)
    ///   that one server runs and another skips as a comment: read here as SQL, which may be
    ///   wrong (a quote in a skipped one hides what follows). `/*!` without a version and
    ///   `/*!NNNNN` below 50700 run on MariaDB and MySQL alike;
    /// - a backslash right after a non-ASCII byte in a string: in sjis, cp932, big5, gbk and
    ///   gb18030 that byte pair is one character, not an escape, and the string ends where
    ///   the lexer thinks it goes on (`'表' FOR UPDATE` in sjis is `'\x95\x5c'`);
    /// - a backslash in a `"..."`, which is a name under `ANSI_QUOTES`.
    pub primary_only: bool,
}

/// Whitespace as the servers' lexers see it: ASCII whitespace and the vertical tab.
fn is_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0B
}

impl<'a> Lexer<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Lexer::with_escapes(s, true)
    }

    /// `backslash_escapes`: false where the session's `sql_mode` has `NO_BACKSLASH_ESCAPES`,
    /// in which `'C:\'` is a whole string.
    pub fn with_escapes(s: &'a [u8], backslash_escapes: bool) -> Self {
        Lexer {
            s,
            i: 0,
            in_exec_comment: false,
            backslash_escapes,
            hint: None,
            primary_only: false,
        }
    }

    /// Where the next token starts (past whitespace and comments).
    pub fn next_token_at(&mut self) -> usize {
        self.skip_space_and_comments();
        self.i
    }

    fn at(&self, k: usize) -> u8 {
        self.s.get(self.i + k).copied().unwrap_or(0)
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            let c = self.at(0);
            if is_space(c) {
                self.i += 1;
            } else if c == b'#'
                // `--` starts a comment before whitespace or a control character (the
                // servers' rule), or at the end.
                || (c == b'-'
                    && self.at(1) == b'-'
                    && (self.at(2) <= b' ' || self.at(2) == 0x7F || self.i + 2 >= self.s.len()))
            {
                let end = self.s[self.i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.s.len(), |p| self.i + p);
                self.note_hint(self.i, end);
                self.i = end;
            } else if c == b'/' && self.at(1) == b'*' {
                let body = self.i + 2;
                let exec = self.at(2) == b'!' || (self.at(2) == b'M' && self.at(3) == b'!');
                if exec {
                    let mariadb_only = self.at(2) == b'M';
                    self.i = body + if mariadb_only { 2 } else { 1 };
                    let digits = self.i;
                    while self.at(0).is_ascii_digit() {
                        self.i += 1;
                    }
                    let version = &self.s[digits..self.i];
                    let runs_everywhere = !mariadb_only
                        && (version.is_empty() || (version.len() == 5 && version < &b"50700"[..]));
                    self.primary_only |= !runs_everywhere;
                    self.in_exec_comment = true;
                    continue;
                }
                let end = find(&self.s[body.min(self.s.len())..], b"*/")
                    .map_or(self.s.len(), |p| body + p);
                self.note_hint(body.min(end), end);
                self.i = (end + 2).min(self.s.len());
            } else if self.in_exec_comment && c == b'*' && self.at(1) == b'/' {
                self.in_exec_comment = false;
                self.i += 2;
            } else {
                return;
            }
        }
    }

    /// A hint is the word `rwsplit`, a colon (spaces around it allowed) and the word
    /// `primary` or `replica`, in any case, each a whole word: `rwsplit:replicas` or
    /// `myrwsplit:replica` is none.
    fn note_hint(&mut self, from: usize, to: usize) {
        let body = &self.s[from.min(self.s.len())..to.min(self.s.len())];
        for at in word_positions(body, b"rwsplit") {
            let rest = &body[at + 7..];
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let Some(rest) = rest.strip_prefix(b":") else {
                continue;
            };
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let name = &rest[..rest.iter().take_while(|&&b| WORD[usize::from(b)]).count()];
            if name.eq_ignore_ascii_case(b"primary") {
                self.hint = Some(super::Hint::Primary);
                return;
            }
            if name.eq_ignore_ascii_case(b"replica") && self.hint.is_none() {
                self.hint = Some(super::Hint::Replica);
            }
        }
    }

    fn skip_quoted(&mut self, q: u8) {
        self.i += 1;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c == b'\\' && q != b'`' && self.backslash_escapes {
                // With `ANSI_QUOTES` (which rwsplit does not track) `"..."` is a name, in
                // which a backslash escapes nothing: `"dir\" FROM t FOR UPDATE` locks.
                self.primary_only |= q == b'"' || (self.i > 0 && self.s[self.i - 1] >= 0x80);
                self.i += 2;
            } else if c == q {
                if self.at(1) == q {
                    self.i += 2;
                } else {
                    self.i += 1;
                    return;
                }
            } else {
                self.i += 1;
            }
        }
        self.i = self.s.len();
    }

    /// The name in the backticks at the current byte, without them (a doubled backtick in it
    /// stays doubled); to the end of the input if it never closes.
    fn backticked(&mut self) -> &'a [u8] {
        let start = (self.i + 1).min(self.s.len());
        self.skip_quoted(b'`');
        let closed = self.i > start && self.s.get(self.i - 1) == Some(&b'`');
        &self.s[start..if closed { self.i - 1 } else { self.i }]
    }

    /// A number (`12`, `1.5`, `1.`, `2e-3`, `0x1F`, `0b01`), or a name that starts with digits
    /// (`2fa_check`, which MySQL allows): digits that run into a letter are a word. A number
    /// stops where it ends: `1.INTO` is `1.` and `INTO`, as the server reads it.
    fn number_or_word(&mut self) -> Token<'a> {
        let word_at = |l: &Self, k: usize| WORD[usize::from(l.at(k))];
        if self.at(0) == b'0' && matches!(self.at(1), b'x' | b'X' | b'b' | b'B') {
            let hex = matches!(self.at(1), b'x' | b'X');
            let mut j = 2;
            while (hex && self.at(j).is_ascii_hexdigit())
                || (!hex && matches!(self.at(j), b'0' | b'1'))
            {
                j += 1;
            }
            if j > 2 && !word_at(self, j) {
                self.i += j;
                return Token::Number;
            }
        }
        let exponent = |l: &Self, k: usize| {
            matches!(l.at(k), b'e' | b'E')
                && (l.at(k + 1).is_ascii_digit()
                    || (matches!(l.at(k + 1), b'+' | b'-') && l.at(k + 2).is_ascii_digit()))
        };
        let mut j = 0;
        while self.at(j).is_ascii_digit() {
            j += 1;
        }
        if word_at(self, j) && !exponent(self, j) {
            return Token::Word(self.word());
        }
        if self.at(j) == b'.' {
            j += 1;
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
        }
        if exponent(self, j) {
            j += 2;
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
        }
        self.i += j;
        Token::Number
    }

    fn word(&mut self) -> &'a [u8] {
        let start = self.i.min(self.s.len());
        let rest = &self.s[start..];
        let len = rest
            .iter()
            .position(|&b| !WORD[usize::from(b)])
            .unwrap_or(rest.len());
        self.i = start + len;
        &self.s[start..self.i]
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_space_and_comments();
        let c = *self.s.get(self.i)?;
        Some(match c {
            b'`' => Token::Ident(self.backticked()),
            b'\'' | b'"' => {
                self.skip_quoted(c);
                Token::Quoted
            }
            b'@' if self.at(1) == b'@' => {
                self.i += 2;
                // `` @@`last_insert_id` ``: the name between the backticks.
                if self.at(0) == b'`' {
                    return Some(Token::SysVar(self.backticked()));
                }
                let start = self.i;
                let _ = self.word();
                if self.at(0) == b'.' {
                    self.i += 1;
                    let _ = self.word();
                }
                Token::SysVar(&self.s[start..self.i])
            }
            b'@' => {
                self.i += 1;
                match self.at(0) {
                    q @ (b'\'' | b'"' | b'`') => self.skip_quoted(q),
                    _ => {
                        let _ = self.word();
                    }
                }
                Token::UserVar
            }
            b'0'..=b'9' => self.number_or_word(),
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => Token::Word(self.word()),
            c => {
                self.i += 1;
                Token::Punct(c)
            }
        })
    }
}

/// Where `word` stands in `hay` as a whole word, in any case: neither byte beside it is one a
/// name may have (`WORD`, as the servers' lexers: `rwsplit:primary$`, `xa_col` hold none).
pub fn word_positions<'h>(hay: &'h [u8], word: &'static [u8]) -> impl Iterator<Item = usize> + 'h {
    let name = |b: Option<&u8>| b.is_some_and(|&b| WORD[usize::from(b)]);
    hay.windows(word.len())
        .enumerate()
        .filter(move |&(i, w)| {
            w.eq_ignore_ascii_case(word)
                && !name(i.checked_sub(1).and_then(|p| hay.get(p)))
                && !name(hay.get(i + word.len()))
        })
        .map(|(i, _)| i)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Case-insensitive keyword comparison. Always inlined: the length test first, against a
/// constant, rules most words out in one compare (out of line, the call cost more than that;
/// `benches/classify.rs`).
#[inline(always)]
pub fn is(w: &[u8], kw: &str) -> bool {
    w.eq_ignore_ascii_case(kw.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_take_letters_digits_underscore_dollar_and_utf8_and_end_at_anything_else() {
        let sql = "SELECT a$b,_x1 café.`q` FROM t1 WHERE é=@v+@@session.x-12.5e3 ok_";
        let toks: Vec<Token> = Lexer::new(sql.as_bytes()).collect();
        assert_eq!(
            toks,
            [
                Token::Word(b"SELECT"),
                Token::Word(b"a$b"),
                Token::Punct(b','),
                Token::Word(b"_x1"),
                Token::Word("café".as_bytes()),
                Token::Punct(b'.'),
                Token::Ident(b"q"),
                Token::Word(b"FROM"),
                Token::Word(b"t1"),
                Token::Word(b"WHERE"),
                Token::Word("é".as_bytes()),
                Token::Punct(b'='),
                Token::UserVar,
                Token::Punct(b'+'),
                Token::SysVar(b"session.x"),
                Token::Punct(b'-'),
                Token::Number,
                Token::Word(b"ok_"),
            ]
        );
    }

    #[test]
    fn numbers_end_where_the_server_ends_them_and_digits_may_begin_a_name() {
        use Token::{Number as N, Punct as P, Word as W};
        for (sql, want) in [
            ("12 1.5 1. 2e-3 4E+2 .5", &[N, N, N, N, N, P(b'.'), N][..]),
            ("0x1F 0b01 X'41'", &[N, N, W(b"X"), Token::Quoted]),
            ("2fa_check(5)", &[W(b"2fa_check"), P(b'('), N, P(b')')]),
            (
                "2db.f 0xZZ 1e",
                &[W(b"2db"), P(b'.'), W(b"f"), W(b"0xZZ"), W(b"1e")],
            ),
            ("1.INTO 3.LOCK", &[N, W(b"INTO"), N, W(b"LOCK")]),
            ("1.5abc", &[N, W(b"abc")]),
        ] {
            let toks: Vec<Token> = Lexer::new(sql.as_bytes()).collect();
            assert_eq!(toks, want, "{sql}");
        }
    }
}
