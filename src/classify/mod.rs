//! Statement classification: what kind of statement is this, and what does it mean for routing.
//!
//! A lexical classifier: it reads the first keywords and scans the rest for the few things that
//! change routing. It errs toward the primary: whatever it does not recognise is a `Write`.
//! sqlparser is not used on the hot path (a full parse costs 30-450 us per statement, see
//! DESIGN.md, and it rejects MySQL syntax routing must handle); `fallback` uses it only where the
//! lexical pass is unsure: a SELECT naming `REPLACE(`/`INSERT(`, which may be string functions.

pub mod fallback;
pub mod functions;
mod lexer;

pub use functions::Flavor;

use lexer::{Lexer, Token, is};

/// What a statement is, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// A plain read that is safe to run on a replica.
    Read,
    /// Anything that must run on the primary (see [`PrimaryReason`]).
    Write,
    /// `SET ...` of session-scope state that every backend connection of the session must carry
    /// (`SET NAMES`, `SET CHARACTER SET`, `SET [SESSION|@@session.|@@]var = ...`, `SET autocommit`,
    /// `SET SESSION TRANSACTION ...`, `SET sql_mode ...`). A `SET` that assigns only user variables
    /// (`SET @a = 1`) is `Write` with reason `UserVariable`. `SET TRANSACTION ...` (next transaction
    /// only, no SESSION) is `Write` with reason `TransactionControl`. `SET GLOBAL` is `Write`.
    SessionCommand,
    /// `USE db`; the schema name is in [`Classification::schema`].
    Use,
    /// `BEGIN`, `START TRANSACTION [READ ONLY|READ WRITE|WITH CONSISTENT SNAPSHOT]`, `XA START`.
    TransactionBegin,
    /// `COMMIT`, `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`), `XA COMMIT/ROLLBACK`.
    TransactionEnd,
    /// `KILL [QUERY|CONNECTION] n`: the connection id the client knows is the proxy's, so the
    /// session must handle it itself rather than forward it.
    Kill,
}

/// Why a statement must go to the primary (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrimaryReason {
    /// INSERT/UPDATE/DELETE/REPLACE/LOAD DATA ...
    Dml,
    /// CREATE/ALTER/DROP/TRUNCATE/RENAME/GRANT ...
    Ddl,
    /// `SELECT ... FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`.
    LockingRead,
    /// `SELECT ... INTO @v | OUTFILE | DUMPFILE`.
    SelectInto,
    /// A function with side effects or session-local results: `GET_LOCK`, `RELEASE_LOCK`,
    /// `IS_FREE_LOCK`, `IS_USED_LOCK`, `RELEASE_ALL_LOCKS`, `LAST_INSERT_ID`, `FOUND_ROWS`,
    /// `ROW_COUNT`, `NEXTVAL`/`NEXT VALUE FOR`/`seq.nextval`, `SETVAL`, `LASTVAL`/`seq.currval`
    /// (not `SLEEP`: a read).
    SideEffectFunction,
    /// Calls a stored or loadable function (`CREATE FUNCTION`) in a read: its body may write.
    /// A `/* rwsplit:replica */` hint says it only reads, and lets the read go to a replica.
    StoredFunction,
    /// Reads a value only the session's own primary connection holds: `@@last_insert_id`,
    /// `@@identity`, `@@insert_id`, `@@last_gtid`, `@@gtid_seq_no`; or the primary's GTID
    /// position (`@@gtid_binlog_pos`, `@@gtid_current_pos`, MySQL's `@@gtid_executed`).
    SessionValue,
    /// Reads what a server says of itself and of the session there: its variables and status
    /// (`SHOW [GLOBAL | SESSION] VARIABLES | STATUS`, `SHOW USER_VARIABLES`, the
    /// `information_schema` and `performance_schema` tables behind them, the processlist
    /// table): the primary's, where the session writes. In a READ ONLY transaction on a
    /// replica, that replica's, as every read there.
    ServerValue,
    /// Reads or assigns a user variable (`@v`, not `@@v`): user variables live on the primary.
    UserVariable,
    /// More than one statement in one COM_QUERY.
    MultiStatement,
    /// `CALL proc(...)`.
    Call,
    /// `LOCK TABLES`, `UNLOCK TABLES`, `FLUSH ... WITH READ LOCK`.
    TableLock,
    /// `PREPARE`, `EXECUTE`, `DEALLOCATE PREPARE` (SQL-level prepared statements live on one connection).
    SqlPrepare,
    /// `SAVEPOINT`, `ROLLBACK TO`, `RELEASE SAVEPOINT`, `SET TRANSACTION`, `COMMIT AND CHAIN`.
    TransactionControl,
    /// A statement not known to be a read (includes anything the classifier could not understand).
    Other,
    /// Internal to `classify`: the lexical pass could not tell; the fallback decides.
    Unsure,
}

/// A routing hint given in a comment: `/* rwsplit:primary */` or `/* rwsplit:replica */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    Primary,
    Replica,
}

/// What a statement changes in the session beyond its own result, so later routing can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEffect {
    /// `CREATE TEMPORARY TABLE`: from now on the session's reads must see it (primary).
    CreatesTemporaryTable,
    /// `DROP TEMPORARY TABLE`: unlike other DDL, no implicit commit. (The session's reads stay
    /// on the primary: rwsplit does not count the temporary tables left.)
    DropsTemporaryTable,
    /// `LOCK TABLES`, `FLUSH TABLES ... WITH READ LOCK`.
    LocksTables,
    /// `UNLOCK TABLES`.
    UnlocksTables,
    /// Assigns a user variable (`SET @a`, `SELECT @a := ...`, `... INTO @a`).
    SetsUserVariable,
    /// Takes a named lock (`GET_LOCK`).
    TakesNamedLock,
    /// `RELEASE_LOCK`.
    ReleasesNamedLock,
    /// `RELEASE_ALL_LOCKS`.
    ReleasesAllNamedLocks,
    /// `LAST_INSERT_ID(expr)`: sets the value the next `LAST_INSERT_ID()` returns.
    SetsLastInsertId,
    /// `HANDLER t OPEN`: the handler lives on the primary connection until `HANDLER t CLOSE`.
    OpensHandler,
    /// `SET insert_id`, `last_insert_id`, `rand_seed1`/`2`, `gtid_seq_no`: a value for the
    /// session's next statement (the next insert, `RAND()`, commit) on its connection, used
    /// once there; replayed elsewhere it would be used again.
    SetsOneShotVariable,
    /// `HANDLER t CLOSE`.
    ClosesHandler,
    /// `NEXTVAL(s)`, `NEXT VALUE FOR s` in a read: the value `LASTVAL(s)` / `PREVIOUS VALUE
    /// FOR s` return next is this connection's.
    TakesSequenceValue,
    /// `SQL_CALC_FOUND_ROWS`: the next `FOUND_ROWS()` must run on the same connection.
    CalcFoundRows,
    /// SQL-level `PREPARE`.
    PreparesSqlStatement,
    /// `SET TRANSACTION ...` without a scope: sets the next transaction's characteristics.
    SetsNextTransaction,
    /// `SET ROLE`: the session's privileges change on its connection, where no replay of
    /// `SET`s can carry them (and the schema check relies on that).
    SetsRole,
    /// MariaDB's `BACKUP STAGE ...`: held by the connection from `START` until `END`.
    BackupStage { ends: bool },
    /// MariaDB's `BACKUP LOCK t` / `BACKUP UNLOCK`, MySQL's `LOCK INSTANCE FOR BACKUP` /
    /// `UNLOCK INSTANCE`: held by the connection until released (`UNLOCK TABLES` does not).
    BackupLock { releases: bool },
    /// A multi-statement of which more than one statement has an effect above, or one statement
    /// that takes two named locks: rwsplit keeps count of one, so the session keeps its
    /// connections for good (`untracked_state`).
    Several,
    /// `COMMIT RELEASE`, `ROLLBACK RELEASE`: the server ends the connection after its OK.
    EndsConnection,
    /// `XA ...`: an XA transaction that reached `XA PREPARE` outlives a reset, after which its
    /// connection refuses writes: the connection is closed, never pooled again. In a
    /// multi-statement it also stands for `Several`.
    Xa,
}

/// The result of classifying one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    /// Set when `kind == Write`; also `TransactionControl` on an `XA START`.
    pub reason: Option<PrimaryReason>,
    pub hint: Option<Hint>,
    pub effect: Option<SessionEffect>,
    /// `START TRANSACTION READ ONLY` (set on no other statement).
    pub read_only_transaction: bool,
    /// For `USE db`: the schema name, unquoted.
    pub schema: Option<String>,
    /// A `SELECT` or `VALUES` read with no `FROM` anywhere in it (`SELECT @@max_allowed_packet`,
    /// `SELECT 1`): it reads no table, so any server answers it alike (a stored function in it
    /// may still read one). Drivers send such reads when they connect.
    pub reads_no_table: bool,
    /// True when the fast lexical path decided; false when the sqlparser fallback was needed.
    pub fast_path: bool,
    /// A session command that changes nothing when run again on a connection that already
    /// ran it: `SET NAMES`, or `SET`s of system variables to values that read no variable and
    /// call no function (`SET sql_mode = CONCAT(@@sql_mode, ...)` is not).
    pub idempotent: bool,
    /// Reads the diagnostics of the session's last statement, which live on the connection it
    /// ran on: `SHOW WARNINGS`, `SHOW ERRORS`, `SHOW COUNT(*) WARNINGS`, `@@warning_count`,
    /// `@@error_count`.
    pub diagnostics: bool,
    /// `SET STATEMENT var = value FOR stmt`: the rest classifies `stmt`; the variables are the
    /// statement's alone (the server puts them back after it), not the session's.
    pub scoped_set: bool,
    /// Calls `CONNECTION_ID()`: the client learns the backend thread the statement ran on, an
    /// id a `KILL QUERY` of its may name later.
    pub reads_connection_id: bool,
}

impl Classification {
    /// What may go to a replica by its text: a read, or a `START TRANSACTION READ ONLY`
    /// (`routing.read_only_transactions_on_replica`).
    pub fn may_read_a_replica(&self) -> bool {
        self.kind == StatementKind::Read || self.read_only_transaction
    }

    /// Whether the statement opens a table, which matters to what the server keeps for the
    /// session's next statements: opening one clears the warnings of the last statement, and
    /// in autocommit mode takes the characteristics a `SET TRANSACTION` left for the next
    /// transaction. `Some(false)` for what opens none (a read with no `FROM`, a `SET`, `USE`,
    /// `BEGIN`, `COMMIT`), `Some(true)` for a read of a table, DML, DDL, a locking read or
    /// `SELECT ... INTO`, `None` when the text does not say (`DO`, `SET @v`, `CALL`, ...).
    pub fn opens_tables(&self) -> Option<bool> {
        match (self.kind, self.reason) {
            (StatementKind::Read, _) => Some(!self.reads_no_table),
            (
                StatementKind::SessionCommand
                | StatementKind::Use
                | StatementKind::TransactionBegin
                | StatementKind::TransactionEnd,
                _,
            ) => Some(false),
            (
                StatementKind::Write,
                Some(
                    PrimaryReason::Dml
                    | PrimaryReason::Ddl
                    | PrimaryReason::LockingRead
                    | PrimaryReason::SelectInto,
                ),
            ) => Some(true),
            _ => None,
        }
    }

    /// A read of a table that reads no diagnostics: running, it clears the warnings and errors
    /// the connection held (and raises only its own).
    pub fn clears_diagnostics(&self) -> bool {
        self.kind == StatementKind::Read && !self.reads_no_table && !self.diagnostics
    }

    /// A `CALL` or a multi-statement: it may do more than rwsplit sees in its text (change
    /// state, commit, open a transaction), even when it fails.
    pub fn opaque(&self) -> bool {
        matches!(
            self.reason,
            Some(PrimaryReason::Call | PrimaryReason::MultiStatement)
        )
    }
}

/// Functions whose result depends on the connection or that change state: such a statement must
/// run on the primary connection of the session.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "LAST_INSERT_ID",
    "FOUND_ROWS",
    "ROW_COUNT",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "SQL_CALC_FOUND_ROWS",
];

fn write(reason: PrimaryReason) -> Classification {
    Classification {
        kind: StatementKind::Write,
        reason: Some(reason),
        hint: None,
        effect: None,
        read_only_transaction: false,
        schema: None,
        reads_no_table: false,
        fast_path: true,
        idempotent: false,
        diagnostics: false,
        scoped_set: false,
        reads_connection_id: false,
    }
}

/// A classification of `kind` with nothing else to it (also for commands that are not SQL).
pub(crate) fn of(kind: StatementKind) -> Classification {
    Classification {
        kind,
        reason: None,
        ..write(PrimaryReason::Other)
    }
}

/// Classify one statement (the payload of a COM_QUERY or COM_STMT_PREPARE, without the command
/// byte). Never panics, whatever the bytes; unrecognised SQL is `Write`/`Other`.
/// While the server family is not known, only the functions both families have are taken
/// for the server's own (`functions`).
pub fn classify(sql: &[u8]) -> Classification {
    classify_lexed(sql, None, Dialect::default())
}

/// [`classify`] for a server of family `flavor`: its own functions are known by name.
pub fn classify_for(sql: &[u8], flavor: Flavor) -> Classification {
    let dialect = Dialect {
        flavor: Some(flavor),
        ..Dialect::default()
    };
    classify_lexed(sql, None, dialect)
}

/// What the classifier must know of the server and the session to read a statement as they do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dialect {
    /// The backends' server family, whose own functions are known by name (`None`: not known
    /// yet; only the functions both families have count).
    pub flavor: Option<Flavor>,
    /// The session's `sql_mode` has `NO_BACKSLASH_ESCAPES` (the server's status flag says so):
    /// a backslash in a string is a backslash, and `'C:\' FOR UPDATE` locks.
    pub no_backslash_escapes: bool,
}

/// [`classify`], also writing the statement's digest (see [`digest`]) into `digest`, cleared
/// first, as bytes: its words are the statement's own, so it is UTF-8 only when the statement
/// is (`String::from_utf8_lossy` of it is what [`digest`] returns; the digest's separators are
/// ASCII, so replacing invalid bytes over the whole gives what replacing word by word did).
/// Every statement a session runs needs both; one pass of the lexer serves them (two passes
/// were about 1,000 instructions of a point select's 19,000 in rwsplit;
/// `scripts/instructions.sh`).
pub fn classify_digest(sql: &[u8], digest: &mut Vec<u8>, dialect: Dialect) -> Classification {
    classify_lexed(sql, Some(digest), dialect)
}

/// Tokens the classifier looks at; a digest takes them all. A longer statement is `Write`
/// (`Other`): what comes past them (a `FOR UPDATE` after a long `IN` list) is not seen. At
/// 24 bytes a token, at most 384 KiB for a moment; an `IN` list of about 8,000 values fits.
const MAX_TOKENS: usize = 16384;

fn classify_lexed(
    sql: &[u8],
    mut digest_out: Option<&mut Vec<u8>>,
    dialect: Dialect,
) -> Classification {
    let mut lx = Lexer::with_escapes(sql, !dialect.no_backslash_escapes);
    let mut toks = Tokens::new();
    // The hint as of the last token kept: a comment past the classifier's tokens does not count.
    let mut hint = None;
    // Tokens came past the ones kept.
    let mut past = false;
    if let Some(d) = digest_out.as_deref_mut() {
        d.clear();
    }
    while let Some(t) = lx.next() {
        past |= toks.len() >= MAX_TOKENS;
        match digest_out.as_deref_mut() {
            Some(d) => push_digest_token(d, t),
            None if past => break,
            None => {}
        }
        if !past {
            toks.push(t);
            hint = lx.hint;
        }
    }
    if !past {
        // Past the last token: a trailing comment counts.
        hint = lx.hint;
    }
    if lx.primary_only {
        // Read here perhaps not as on the server (a versioned comment it may skip, a
        // backslash that may end a multi-byte character): the primary, whatever a hint says.
        hint = Some(Hint::Primary);
    }
    let reading = Reading {
        trust_functions: hint == Some(Hint::Replica),
        flavor: dialect.flavor,
    };
    let mut c = classify_tokens(sql, &toks, reading);
    if past && (c.may_read_a_replica() || c.reason == Some(PrimaryReason::Unsure)) {
        c = write(PrimaryReason::Other);
    }
    if c.reason == Some(PrimaryReason::Unsure) {
        // sqlparser reads a backslash as an escape: with NO_BACKSLASH_ESCAPES it may read a
        // string where the server reads SQL, so it does not decide then.
        c = if dialect.no_backslash_escapes {
            write(PrimaryReason::Other)
        } else {
            let d = match digest_out {
                Some(d) => String::from_utf8_lossy(d).into_owned(),
                None => digest(sql),
            };
            let plain = fallback::is_plain_query(sql, d);
            Classification {
                fast_path: false,
                ..if plain {
                    of(StatementKind::Read)
                } else {
                    write(PrimaryReason::Dml)
                }
            }
        };
    }
    // A class may carry its own hint (`classify_set`); a comment's says more.
    c.hint = hint.or(c.hint);
    c
}

/// A statement's tokens: on the stack for the usual short statement, so classifying one
/// allocates nothing; longer ones spill to the heap.
type Tokens<'a> = smallvec::SmallVec<[Token<'a>; 32]>;

fn word(t: Option<&Token<'_>>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if is(w, kw))
}

/// Whether a top-level `;` is followed by another statement.
fn is_multi(toks: &[Token<'_>]) -> bool {
    toks.iter()
        .position(|t| *t == Token::Punct(b';'))
        .is_some_and(|p| toks[p + 1..].iter().any(|t| *t != Token::Punct(b';')))
}

/// What a multi-statement's statements do to the session: a lock or a handler taken there is
/// not reported by session tracking (which covers the rest: the session treats a multi-statement
/// as opaque). One effect is that effect; more than one is `Several`, unless one is an `XA`
/// statement: then `Xa`, which keeps the session on its connections as `Several` does and closes
/// the connection at the end. A routine's definition
/// (`CREATE PROCEDURE ... BEGIN ...; ... END`) ends the count: what follows is its body, which
/// does not run now.
fn multi_effect(sql: &[u8], toks: &[Token<'_>], reading: Reading) -> Option<SessionEffect> {
    // A compound statement run directly (MariaDB: `BEGIN NOT ATOMIC ... END`, `IF`, `CASE`,
    // `LOOP`, `REPEAT`, `WHILE`, `FOR`, or a labelled one): which of its statements ran is
    // the server's to know, so whatever they leave keeps the session on its connections.
    let compound = match toks {
        [Token::Word(w), Token::Word(n), ..] if is(w, "BEGIN") && is(n, "NOT") => true,
        [Token::Word(_), Token::Punct(b':'), ..] => true,
        [Token::Word(w), ..] => ["IF", "CASE", "LOOP", "REPEAT", "WHILE", "FOR"]
            .iter()
            .any(|k| is(w, k)),
        _ => false,
    };
    if compound {
        return Some(SessionEffect::Several);
    }
    let mut effects = statements_run(toks).filter_map(|s| classify_tokens(sql, s, reading).effect);
    let first = effects.next()?;
    let mut xa = first == SessionEffect::Xa;
    let mut several = false;
    for e in effects {
        several = true;
        xa |= e == SessionEffect::Xa;
    }
    Some(match (xa, several) {
        (true, _) => SessionEffect::Xa,
        (false, true) => SessionEffect::Several,
        (false, false) => first,
    })
}

/// The statements of a multi-statement that run now: up to a routine's definition
/// (`CREATE PROCEDURE ... BEGIN ...; ... END`), whose body does not.
fn statements_run<'t, 'a>(toks: &'t [Token<'a>]) -> impl Iterator<Item = &'t [Token<'a>]> {
    toks.split(|t| *t == Token::Punct(b';'))
        .filter(|s| !s.is_empty())
        .take_while(|s| !defines_routine(s))
}

/// `CREATE [OR REPLACE] [DEFINER = ...] PROCEDURE|FUNCTION|TRIGGER|EVENT|PACKAGE ... BEGIN`.
fn defines_routine(s: &[Token<'_>]) -> bool {
    matches!(s.first(), Some(Token::Word(w)) if is(w, "CREATE") || is(w, "ALTER"))
        && s.iter().take(12).any(|t| {
            matches!(t, Token::Word(w) if ["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"].iter().any(|k| is(w, k)))
        })
        && s.iter()
            .any(|t| matches!(t, Token::Word(w) if is(w, "BEGIN")))
}

/// How a read's function calls are read.
#[derive(Clone, Copy)]
struct Reading {
    /// A `rwsplit:replica` hint says the stored functions it calls only read.
    trust_functions: bool,
    /// The server family, whose own functions are known by name.
    flavor: Option<Flavor>,
}

fn classify_tokens(sql: &[u8], toks: &[Token<'_>], reading: Reading) -> Classification {
    use PrimaryReason as R;
    use StatementKind as K;
    if is_multi(toks) {
        // A `KILL` among the statements that run (or in a compound statement): the server
        // would take the id for one of its threads, which may serve any session. rwsplit
        // answers `KILL` itself, only as a statement of its own (`kill_target`).
        if statements_run(toks)
            .flatten()
            .any(|t| matches!(t, Token::Word(w) if is(w, "KILL")))
        {
            return of(K::Kill);
        }
        let effect = multi_effect(sql, toks, reading);
        return Classification {
            effect,
            ..write(R::MultiStatement)
        };
    }
    // Uppercased on the stack: no keyword below is longer than this, so a longer first word
    // is no keyword either.
    let mut upper = [0u8; 16];
    let first: &[u8] = match toks.iter().find(|t| **t != Token::Punct(b'(')) {
        Some(Token::Word(w)) if w.len() <= upper.len() => {
            let u = &mut upper[..w.len()];
            u.copy_from_slice(w);
            u.make_ascii_uppercase();
            u
        }
        Some(Token::Word(_)) => b"",
        _ => return write(R::Other),
    };
    let second = toks.get(1);
    match first {
        b"SELECT" | b"VALUES" => read_or_write(toks, true, reading),
        b"WITH" | b"SHOW" | b"DESC" | b"DESCRIBE" | b"EXPLAIN" | b"HELP" | b"TABLE" => {
            read_or_write(toks, false, reading)
        }
        b"INSERT" | b"UPDATE" | b"DELETE" | b"REPLACE" | b"LOAD" => Classification {
            effect: dml_effect(toks),
            ..write(R::Dml)
        },
        // MariaDB's `CREATE OR REPLACE TEMPORARY TABLE` too.
        b"CREATE"
            if word(second, "TEMPORARY")
                || word(second, "OR")
                    && word(toks.get(2), "REPLACE")
                    && word(toks.get(3), "TEMPORARY") =>
        {
            Classification {
                effect: Some(SessionEffect::CreatesTemporaryTable),
                ..write(R::Ddl)
            }
        }
        b"DROP" if word(second, "TEMPORARY") => Classification {
            effect: Some(SessionEffect::DropsTemporaryTable),
            ..write(R::Ddl)
        },
        // MariaDB's `ANALYZE SELECT|UPDATE|DELETE ...` runs the statement: not DDL (which commits
        // implicitly), whatever it runs.
        b"ANALYZE"
            if !(word(second, "TABLE")
                || word(second, "TABLES")
                || word(second, "NO_WRITE_TO_BINLOG")
                || word(second, "LOCAL")) =>
        {
            write(R::Other)
        }
        b"CREATE" | b"ALTER" | b"DROP" if word(second, "PREPARE") => write(R::SqlPrepare),
        b"CREATE" | b"ALTER" | b"DROP" | b"TRUNCATE" | b"RENAME" | b"GRANT" | b"REVOKE"
        | b"ANALYZE" | b"OPTIMIZE" | b"REPAIR" => write(R::Ddl),
        b"SET" if word(second, "STATEMENT") => set_statement(sql, toks, reading),
        b"SET" => classify_set(toks, reading.flavor),
        b"USE" => {
            let schema = match second {
                Some(Token::Word(w)) => Some(String::from_utf8_lossy(w).into_owned()),
                Some(Token::Quoted | Token::Ident(_)) => quoted_name(sql),
                _ => None,
            };
            Classification {
                schema,
                ..of(K::Use)
            }
        }
        b"BEGIN" if !word(second, "NOT") => of(K::TransactionBegin),
        b"START" if word(second, "TRANSACTION") => {
            let ro = toks
                .windows(2)
                .any(|w| word(w.first(), "READ") && word(w.get(1), "ONLY"));
            Classification {
                read_only_transaction: ro,
                ..of(K::TransactionBegin)
            }
        }
        b"COMMIT" | b"ROLLBACK" => {
            // `AND CHAIN` opens the next transaction (not `AND NO CHAIN`); `RELEASE` ends the
            // connection (not `NO RELEASE`).
            let not_after =
                |i: usize, w: &str| word(toks.get(i), w) && !(i > 0 && word(toks.get(i - 1), "NO"));
            if (0..toks.len()).any(|i| word(toks.get(i), "TO") || not_after(i, "CHAIN")) {
                write(R::TransactionControl)
            } else if (0..toks.len()).any(|i| not_after(i, "RELEASE")) {
                Classification {
                    effect: Some(SessionEffect::EndsConnection),
                    ..of(K::TransactionEnd)
                }
            } else {
                of(K::TransactionEnd)
            }
        }
        // Marked apart from `BEGIN` (reason `TransactionControl`): inside a transaction the
        // server refuses it rather than committing first.
        b"XA" if word(second, "START") || word(second, "BEGIN") => Classification {
            reason: Some(R::TransactionControl),
            effect: Some(SessionEffect::Xa),
            ..of(K::TransactionBegin)
        },
        // Other XA commands act on XA transactions by id, which replicas hold too (replicated
        // XA PREPARE): `Other`, never let through to a replica.
        b"XA" => Classification {
            effect: Some(SessionEffect::Xa),
            ..write(R::Other)
        },
        b"SAVEPOINT" | b"RELEASE" => write(R::TransactionControl),
        b"KILL" => of(K::Kill),
        // Backup locks and stages block DDL or commits for every session until the connection
        // that took them lets go: it must stay the session's.
        b"BACKUP" if word(second, "STAGE") => {
            let ends = word(toks.get(2), "END");
            Classification {
                effect: Some(SessionEffect::BackupStage { ends }),
                ..write(R::TableLock)
            }
        }
        b"BACKUP" if word(second, "LOCK") || word(second, "UNLOCK") => {
            let releases = word(second, "UNLOCK");
            Classification {
                effect: Some(SessionEffect::BackupLock { releases }),
                ..write(R::TableLock)
            }
        }
        b"LOCK" | b"UNLOCK" if word(second, "INSTANCE") => {
            let releases = first == b"UNLOCK";
            Classification {
                effect: Some(SessionEffect::BackupLock { releases }),
                ..write(R::TableLock)
            }
        }
        b"LOCK" => Classification {
            effect: Some(SessionEffect::LocksTables),
            ..write(R::TableLock)
        },
        b"UNLOCK" => Classification {
            effect: Some(SessionEffect::UnlocksTables),
            ..write(R::TableLock)
        },
        // `FLUSH TABLES ... WITH READ LOCK` and `FLUSH TABLES t FOR EXPORT` hold their locks
        // until `UNLOCK TABLES`, on the connection that took them.
        b"FLUSH"
            if toks.windows(2).any(|w| {
                word(w.first(), "READ") && word(w.get(1), "LOCK")
                    || word(w.first(), "FOR") && word(w.get(1), "EXPORT")
            }) =>
        {
            Classification {
                effect: Some(SessionEffect::LocksTables),
                ..write(R::TableLock)
            }
        }
        b"PREPARE" | b"EXECUTE" if prepares_kill(sql) => of(K::Kill),
        b"PREPARE" => Classification {
            effect: Some(SessionEffect::PreparesSqlStatement),
            ..write(R::SqlPrepare)
        },
        // `EXECUTE IMMEDIATE` runs SQL rwsplit does not see (a string, a variable): what it
        // leaves on the connection (a lock, a variable) is unknown, so the session keeps it.
        b"EXECUTE" if word(second, "IMMEDIATE") => Classification {
            effect: Some(SessionEffect::Several),
            ..write(R::SqlPrepare)
        },
        b"EXECUTE" | b"DEALLOCATE" => write(R::SqlPrepare),
        b"CALL" => write(R::Call),
        // `DO expr`: evaluated for its effects, on the primary; they count as in a `SELECT`
        // (`DO GET_LOCK('l', 1)` takes a lock the session must keep, `DO @v := 1` sets one).
        b"DO" => {
            let c = read_or_write(toks, false, reading);
            Classification {
                effect: c.effect,
                ..write(c.reason.unwrap_or(R::Other))
            }
        }
        b"HANDLER" => {
            // `HANDLER [db.]t OPEN|READ|CLOSE ...`: the word after the name.
            let after_name = if toks.get(2) == Some(&Token::Punct(b'.')) {
                4
            } else {
                2
            };
            let effect = match toks.get(after_name) {
                Some(Token::Word(w)) if is(w, "OPEN") => Some(SessionEffect::OpensHandler),
                Some(Token::Word(w)) if is(w, "CLOSE") => Some(SessionEffect::ClosesHandler),
                _ => None,
            };
            Classification {
                effect,
                ..write(R::Other)
            }
        }
        _ => write(R::Other),
    }
}

/// The scopes a system variable or `SHOW` can name.
const SCOPES: [&str; 3] = ["SESSION", "LOCAL", "GLOBAL"];

/// A SELECT-like statement: a read unless it locks, writes into something, uses a side-effect
/// function, a user variable or (unless `reading` trusts them) a stored function, or (for
/// `WITH`) wraps a write. `plain`: a `SELECT` or `VALUES`, which reads no table when no `FROM`
/// is in it.
fn read_or_write(toks: &[Token<'_>], plain: bool, reading: Reading) -> Classification {
    use PrimaryReason as R;
    let mut reason = None;
    let mut from = false;
    let mut effect = None;
    let mut diagnostics = false;
    let mut connection_id = false;
    let show = word(toks.first(), "SHOW");
    // `REPLACE(`/`INSERT(` inside a SELECT: string functions, or a write the full parse finds.
    let mut unsure = false;
    let rank = |r: R| match r {
        // Below the reasons that need the primary's session, which a READ ONLY transaction on a
        // replica refuses (`route::in_replica_transaction`); a stored function it lets run.
        R::LockingRead => 5,
        R::SelectInto => 4,
        R::SideEffectFunction | R::SessionValue => 3,
        R::UserVariable => 2,
        R::StoredFunction | R::ServerValue => 1,
        _ => 0,
    };
    let note = |r: R, reason: &mut Option<R>| {
        if reason.is_none_or(|old| rank(r) > rank(old)) {
            *reason = Some(r);
        }
    };
    for (i, t) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        match t {
            Token::Word(w) if is(w, "FOR") && (word(next, "UPDATE") || word(next, "SHARE")) => {
                note(R::LockingRead, &mut reason)
            }
            Token::Word(w) if is(w, "LOCK") && word(next, "IN") => {
                note(R::LockingRead, &mut reason)
            }
            Token::Word(w) if is(w, "INTO") => {
                note(R::SelectInto, &mut reason);
                if matches!(next, Some(Token::UserVar)) {
                    effect = keep(effect, Some(SessionEffect::SetsUserVariable));
                }
            }
            Token::Word(w) if (is(w, "NEXT") || is(w, "PREVIOUS")) && word(next, "VALUE") => {
                note(R::SideEffectFunction, &mut reason);
                if is(w, "NEXT") {
                    effect = keep(effect, Some(SessionEffect::TakesSequenceValue));
                }
            }
            // `seq.nextval`, `seq.currval`: sequences in MariaDB's Oracle mode.
            Token::Word(w)
                if (is(w, "NEXTVAL") || is(w, "CURRVAL"))
                    && i > 0
                    && toks.get(i - 1) == Some(&Token::Punct(b'.')) =>
            {
                note(R::SideEffectFunction, &mut reason);
            }
            Token::Word(w)
                if (is(w, "INSERT") || is(w, "REPLACE")) && next == Some(&Token::Punct(b'(')) =>
            {
                unsure = true;
            }
            Token::Word(w)
                if (is(w, "UPDATE") || is(w, "DELETE") || is(w, "INSERT") || is(w, "REPLACE"))
                    && i > 0
                    && !matches!(toks.get(i - 1), Some(Token::Word(p)) if is(p, "FOR") || is(p, "ON")) =>
            {
                return write(R::Dml);
            }
            // A backticked name is the function too: `` `get_lock`('l', 1) `` takes the lock.
            Token::Word(w) | Token::Ident(w)
                if (next == Some(&Token::Punct(b'(')) || is(w, "SQL_CALC_FOUND_ROWS"))
                    && SIDE_EFFECT_FUNCTIONS.iter().any(|f| is(w, f)) =>
            {
                note(R::SideEffectFunction, &mut reason);
                let called = if is(w, "SQL_CALC_FOUND_ROWS") {
                    Some(SessionEffect::CalcFoundRows)
                } else {
                    call_effect(w, with_argument(toks, i))
                };
                effect = keep(effect, called);
            }
            Token::Word(w) if next == Some(&Token::Punct(b'(')) && is(w, "CONNECTION_ID") => {
                connection_id = true
            }
            // MariaDB's `BINLOG_GTID_POS()`: a position in the primary's binary log.
            Token::Word(w) if is(w, "BINLOG_GTID_POS") && next == Some(&Token::Punct(b'(')) => {
                note(R::SessionValue, &mut reason)
            }
            Token::Word(w) if is(w, "FROM") => from = true,
            Token::Word(_) | Token::Quoted | Token::Ident(_)
                if !reading.trust_functions
                    && next == Some(&Token::Punct(b'('))
                    && calls_stored_function(toks, i, reading.flavor) =>
            {
                note(R::StoredFunction, &mut reason);
            }
            // `@@session . x`, `` @@session.`x` ``, `@@session/**/.x`: the name is not in the
            // token; whichever it is, the primary's session has it.
            Token::SysVar(v) if v.ends_with(b".") || SCOPES.iter().any(|s| is(v, s)) => {
                note(R::SessionValue, &mut reason)
            }
            // What only the primary can say about itself: its binary log, whether it is the
            // writer, what runs on it (a replica would answer for itself).
            Token::Word(w)
                if i == 1
                    && show
                    && ([
                        "MASTER",
                        "BINLOG",
                        "BINARY",
                        "PROCESSLIST",
                        "ENGINE",
                        "REPLICAS",
                    ]
                    .iter()
                    .any(|k| is(w, k))
                        || (is(w, "FULL") && word(next, "PROCESSLIST"))
                        || (is(w, "SLAVE") && word(next, "HOSTS"))) =>
            {
                note(R::SessionValue, &mut reason)
            }
            // `SHOW [GLOBAL | SESSION] VARIABLES | STATUS`, `SHOW USER_VARIABLES` and the
            // tables behind them: the server's own values (`read_only`, its GTID position,
            // which server it is) and the session's user variables. A replica would answer for
            // itself, and has none of the session's user variables.
            Token::Word(w)
                if show
                    && (i == 1 || i == 2 && SCOPES.iter().any(|s| word(toks.get(1), s)))
                    && ["VARIABLES", "STATUS", "USER_VARIABLES"]
                        .iter()
                        .any(|k| is(w, k)) =>
            {
                note(R::ServerValue, &mut reason)
            }
            Token::Word(w) | Token::Ident(w)
                if i >= 2 && toks[i - 1] == Token::Punct(b'.') && server_table(&toks[i - 2], w) =>
            {
                note(R::ServerValue, &mut reason)
            }
            Token::SysVar(v) => match session_variable(v) {
                Some(SessionVariable::Primary) => note(R::SessionValue, &mut reason),
                Some(SessionVariable::Diagnostics) => diagnostics = true,
                None => {}
            },
            Token::Word(w) if !plain && (is(w, "WARNINGS") || is(w, "ERRORS")) && show => {
                diagnostics = true;
            }
            Token::UserVar => {
                note(R::UserVariable, &mut reason);
                if next == Some(&Token::Punct(b':')) {
                    effect = keep(effect, Some(SessionEffect::SetsUserVariable));
                }
            }
            _ => {}
        }
    }
    let class = match reason {
        Some(r) => Classification { effect, ..write(r) },
        None if unsure => write(R::Unsure),
        None => Classification {
            effect,
            reads_no_table: plain && !from,
            diagnostics,
            ..of(StatementKind::Read)
        },
    };
    Classification {
        reads_connection_id: connection_id,
        ..class
    }
}

/// Whether `schema.w` names a table of `information_schema` or `performance_schema` that shows
/// the server's variables or status, its threads, or the session's user variables (qualified
/// by its schema: `threads` or `processlist` alone may be the application's).
fn server_table(schema: &Token<'_>, w: &[u8]) -> bool {
    const TABLES: [&str; 12] = [
        "GLOBAL_VARIABLES",
        "SESSION_VARIABLES",
        "SYSTEM_VARIABLES",
        "USER_VARIABLES",
        "GLOBAL_STATUS",
        "SESSION_STATUS",
        "PROCESSLIST",
        "VARIABLES_BY_THREAD",
        "USER_VARIABLES_BY_THREAD",
        "STATUS_BY_THREAD",
        "VARIABLES_INFO",
        "THREADS",
    ];
    matches!(schema, Token::Word(s) | Token::Ident(s)
            if is(s, "information_schema") || is(s, "performance_schema"))
        && TABLES.iter().any(|t| is(w, t))
}

/// What a read of a session's system variable needs beyond any connection of the session.
enum SessionVariable {
    /// Only the session's primary connection holds it (the last insert, the last commit).
    Primary,
    /// It is about the last statement, on the connection that ran it.
    Diagnostics,
}

/// `v`: the name of `@@v`, with its scope if it has one (`session.x`).
fn session_variable(v: &[u8]) -> Option<SessionVariable> {
    let one_of = |name: &[u8], names: &[&str]| names.iter().any(|n| is(name, n));
    // The primary's GTID position, whatever the scope: a replica's lags (an application
    // that reads it after a write, to wait for it elsewhere, needs the primary's).
    // Likewise whether the server is the writer: a health check through rwsplit asks the
    // primary, not whichever replica a read would reach.
    if one_of(
        sysvar_name(v),
        &[
            "gtid_binlog_pos",
            "gtid_current_pos",
            "gtid_executed",
            "read_only",
            "innodb_read_only",
            "super_read_only",
        ],
    ) {
        return Some(SessionVariable::Primary);
    }
    let name = session_sysvar(v)?;
    let primary = [
        "last_insert_id",
        "identity",
        "insert_id",
        "last_gtid",
        "gtid_seq_no",
    ];
    if one_of(name, &primary) {
        Some(SessionVariable::Primary)
    } else if one_of(name, &["warning_count", "error_count"]) {
        Some(SessionVariable::Diagnostics)
    } else {
        None
    }
}

/// Whether `toks[i]`, a name followed by `(`, calls a stored or loadable function: a name
/// qualified by its schema (`app.f(`, whatever `f` is), or one that is none of the server's
/// functions and keywords (`functions`), nor a column list (`AS d (a, b)` or `) d (a, b)`
/// after a derived table, `WITH c (a, b) AS (...)`), nor a type (`CAST(x AS DECIMAL(10,
/// 2))`). A quoted name (`` `f`( ``) counts as a stored function's.
/// Out of line: rare next to the statement's other tokens, and kept out of the loop's code.
#[inline(never)]
fn calls_stored_function(toks: &[Token<'_>], i: usize, flavor: Option<Flavor>) -> bool {
    let prev = i.checked_sub(1).and_then(|p| toks.get(p));
    match prev {
        Some(Token::Punct(b'.')) => return true,
        Some(Token::Word(w)) if is(w, "AS") => return false,
        // No call follows a `)` straight away: `MATCH (a) AGAINST (`, a derived table's alias
        // and columns without `AS` (`FROM (SELECT 1, 2) d (a, b)`).
        Some(Token::Punct(b')')) => return false,
        _ => {}
    }
    if let Some(Token::Word(w)) = toks.get(i) {
        if functions::is_servers(w, flavor) {
            return false;
        }
        // Words a stored function may be named by, told by what comes before them:
        // `'$' COLUMNS (` in `JSON_TABLE`, `MEMBER OF (`.
        let keyword_here = match prev {
            Some(Token::Quoted) => is(w, "COLUMNS"),
            Some(Token::Word(p)) => is(p, "MEMBER") && is(w, "OF"),
            _ => false,
        };
        if keyword_here {
            return false;
        }
    }
    !names_cte_columns(toks, i)
}

/// Whether the `(` after `toks[i]` opens a common table expression's column list:
/// `c (a, b) AS (`.
fn names_cte_columns(toks: &[Token<'_>], i: usize) -> bool {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(i + 1) {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return word(toks.get(j + 1), "AS")
                        && toks.get(j + 2) == Some(&Token::Punct(b'('));
                }
            }
            _ => {}
        }
    }
    false
}

/// What a DML statement does to the session beyond its rows, as in a read: a function called
/// in it (`INSERT ... SELECT GET_LOCK('l', 1)`, `LAST_INSERT_ID(expr)`), or a user variable
/// assigned (`UPDATE t SET a = @v := a + 1`). Only names before a `(` and user variables are
/// looked at.
fn dml_effect(toks: &[Token<'_>]) -> Option<SessionEffect> {
    toks.iter().enumerate().fold(None, |effect, (i, t)| {
        let next = toks.get(i + 1);
        match t {
            Token::Word(w) | Token::Ident(w) if next == Some(&Token::Punct(b'(')) => {
                keep(effect, call_effect(w, with_argument(toks, i)))
            }
            Token::UserVar if next == Some(&Token::Punct(b':')) => {
                keep(effect, Some(SessionEffect::SetsUserVariable))
            }
            _ => effect,
        }
    })
}

/// Whether the call `toks[i](` has something between its parentheses.
fn with_argument(toks: &[Token<'_>], i: usize) -> bool {
    toks.get(i + 2).is_some_and(|t| *t != Token::Punct(b')'))
}

/// What calling `name(` does to the session (`with_argument`: `LAST_INSERT_ID(5)` sets the
/// value, `LAST_INSERT_ID()` reads it), in a read or a write alike.
fn call_effect(name: &[u8], with_argument: bool) -> Option<SessionEffect> {
    use SessionEffect as E;
    if is(name, "GET_LOCK") {
        Some(E::TakesNamedLock)
    } else if is(name, "RELEASE_LOCK") {
        Some(E::ReleasesNamedLock)
    } else if is(name, "RELEASE_ALL_LOCKS") {
        Some(E::ReleasesAllNamedLocks)
    } else if is(name, "LAST_INSERT_ID") && with_argument {
        Some(E::SetsLastInsertId)
    } else if is(name, "NEXTVAL") {
        Some(E::TakesSequenceValue)
    } else {
        None
    }
}

/// Of two effects in one statement, the one the session keeps (it has room for one): the one
/// that keeps its connection longest, so the other's state stays with it too. A user variable
/// or a `LAST_INSERT_ID(expr)` value keeps it for the session's life, a named lock until its
/// release, a sequence's value for one statement; between equals, the later. Two named locks
/// are `Several`: the session counts one per statement, and releasing one would unpin it while
/// the other is held.
fn keep(old: Option<SessionEffect>, new: Option<SessionEffect>) -> Option<SessionEffect> {
    use SessionEffect as E;
    if old == Some(E::TakesNamedLock) && new == Some(E::TakesNamedLock) {
        return Some(E::Several);
    }
    let rank = |e: Option<E>| match e {
        None => 0,
        Some(E::TakesSequenceValue) => 1,
        Some(E::TakesNamedLock) => 3,
        Some(E::SetsUserVariable | E::SetsLastInsertId) => 4,
        Some(E::Several) => 5,
        Some(_) => 2,
    };
    if rank(new) >= rank(old) { new } else { old }
}

/// `SET STATEMENT var = value [, ...] FOR stmt` (MariaDB): `stmt` as it would be alone,
/// marked `scoped_set`. Without a `FOR` at the top level, `Other`.
fn set_statement(sql: &[u8], toks: &[Token<'_>], reading: Reading) -> Classification {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            Token::Word(w) if depth == 0 && is(w, "FOR") => {
                let rest = &toks[i + 1..];
                return match rest.first() {
                    Some(Token::Word(w)) if is(w, "SET") => write(PrimaryReason::Other),
                    Some(_) => Classification {
                        scoped_set: true,
                        ..classify_tokens(sql, rest, reading)
                    },
                    None => write(PrimaryReason::Other),
                };
            }
            _ => {}
        }
    }
    write(PrimaryReason::Other)
}

/// `SET ...`: session state to replay, user variables, or something only the primary may see.
fn classify_set(toks: &[Token<'_>], flavor: Option<Flavor>) -> Classification {
    use PrimaryReason as R;
    let second = toks.get(1);
    if word(second, "TRANSACTION") {
        return Classification {
            effect: Some(SessionEffect::SetsNextTransaction),
            ..write(R::TransactionControl)
        };
    }
    if word(second, "ROLE") {
        return Classification {
            effect: Some(SessionEffect::SetsRole),
            ..write(R::Other)
        };
    }
    if word(second, "GLOBAL")
        || word(second, "PERSIST")
        || word(second, "PERSIST_ONLY")
        || word(second, "PASSWORD")
        || word(second, "DEFAULT")
    {
        return write(R::Other);
    }
    // Split into assignments at top-level commas; look at each target.
    let mut user_vars = 0;
    let mut others = 0;
    let mut one_shot = false;
    let mut reads_state = false;
    // A value that calls a stored function (its body may write) or reads the primary
    // connection's own values (`LAST_INSERT_ID()`): it runs on the primary, once (logged as the
    // value the server reports, not replayed as text). One with an effect that outlasts the
    // statement (a named lock, a sequence's value) keeps the session there.
    let mut once = false;
    let mut lasting = false;
    let mut depth = 0i32;
    let mut at_target = true;
    for (i, t) in toks.iter().enumerate().skip(1) {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            Token::Punct(b',') if depth == 0 => {
                at_target = true;
                continue;
            }
            Token::SysVar(w) | Token::Word(w)
                if at_target && {
                    let scope = sysvar_scope(w);
                    is(scope, "GLOBAL") || is(scope, "PERSIST") || is(scope, "PERSIST_ONLY")
                } =>
            {
                return write(R::Other);
            }
            Token::Word(w) if at_target && (is(w, "SESSION") || is(w, "LOCAL")) => continue,
            _ => {}
        }
        if at_target {
            match t {
                Token::UserVar => user_vars += 1,
                Token::Word(w) | Token::SysVar(w) => {
                    let name = sysvar_name(w);
                    one_shot |= ONE_SHOT_VARIABLES.iter().any(|v| is(name, v));
                    others += 1;
                }
                _ => others += 1,
            }
            at_target = false;
        } else {
            reads_state |= reads_at_run_time(t);
            let next = toks.get(i + 1);
            match t {
                Token::Word(w) if (is(w, "NEXT") || is(w, "PREVIOUS")) && word(next, "VALUE") => {
                    lasting = true
                }
                Token::Word(w) | Token::Ident(w) if next == Some(&Token::Punct(b'(')) => {
                    if LASTING_FUNCTIONS.iter().any(|f| is(w, f)) {
                        lasting = true;
                    } else if SIDE_EFFECT_FUNCTIONS.iter().any(|f| is(w, f))
                        || calls_stored_function(toks, i, flavor)
                    {
                        once = true;
                    }
                }
                Token::Quoted if next == Some(&Token::Punct(b'(')) => {
                    once |= calls_stored_function(toks, i, flavor)
                }
                _ => {}
            }
        }
    }
    // Only user variables: they live on the primary anyway (below).
    if (lasting || once && others + user_vars > 1) && others > 0 {
        // Several targets are replayed as text, which would call the function again: the
        // session stays on the primary connection that ran it instead.
        return Classification {
            effect: Some(SessionEffect::Several),
            ..write(R::StoredFunction)
        };
    }
    // (A one-shot variable's `SET` runs on the primary and is never replayed anyway, below.)
    if once && others == 1 && user_vars == 0 && !one_shot {
        // `StoredFunction`: the connection goes back reset (what the function's body did to
        // the session, a user variable or a lock, is not the next session's), and the value
        // is carried only as the server reports it.
        return Classification {
            hint: Some(Hint::Primary),
            reason: Some(R::StoredFunction),
            ..of(StatementKind::SessionCommand)
        };
    }
    match (user_vars, others) {
        (0, 0) => write(R::Other),
        (_, 0) => Classification {
            effect: Some(SessionEffect::SetsUserVariable),
            ..write(R::UserVariable)
        },
        (0, _) => Classification {
            idempotent: !reads_state && !one_shot,
            effect: one_shot.then_some(SessionEffect::SetsOneShotVariable),
            ..of(StatementKind::SessionCommand)
        },
        _ => Classification {
            effect: Some(SessionEffect::SetsUserVariable),
            ..of(StatementKind::SessionCommand)
        },
    }
}

/// Functions whose effect outlasts the statement that calls them, on its connection.
const LASTING_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "NEXTVAL",
    "SETVAL",
];

/// Session variables a `SET` gives the next statement only (`SessionEffect::SetsOneShotVariable`).
const ONE_SHOT_VARIABLES: &[&str] = &[
    "insert_id",
    "last_insert_id",
    "identity",
    "rand_seed1",
    "rand_seed2",
    "gtid_seq_no",
];

/// `global` of `@@global.x`; the whole word when there is no dot.
fn sysvar_scope(w: &[u8]) -> &[u8] {
    w.split(|&b| b == b'.').next().unwrap_or(w)
}

/// `x` of `@@global.x`; the whole word when there is no dot.
fn sysvar_name(w: &[u8]) -> &[u8] {
    w.iter()
        .position(|&b| b == b'.')
        .map_or(w, |dot| &w[dot + 1..])
}

/// `x` of `@@x`, `@@session.x` or `@@local.x`; `None` for another scope (`@@global.x`).
fn session_sysvar(w: &[u8]) -> Option<&[u8]> {
    let name = sysvar_name(w);
    let scope = sysvar_scope(w);
    (name.len() == w.len() || is(scope, "SESSION") || is(scope, "LOCAL")).then_some(name)
}

/// `sql` with each read of MariaDB's `@@last_gtid` (also `@@session.`, `@@local.`, backquoted)
/// replaced by `own`, the session's own value, as a string. A select item that is only the
/// variable keeps its column name (`'0-1-5' AS `@@last_gtid``). `None` when there is none to
/// replace. Only for text `own` can hold (a GTID: digits and dashes).
pub fn with_last_gtid(sql: &[u8], own: &str, backslash_escapes: bool) -> Option<Vec<u8>> {
    // Most statements do not name it: no lexing for them.
    if !sql.contains(&b'@') || lexer::word_positions(sql, b"last_gtid").next().is_none() {
        return None;
    }
    if !own
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
    {
        return None;
    }
    let mut lx = Lexer::with_escapes(sql, backslash_escapes);
    let mut toks: Vec<(usize, Token<'_>)> = Vec::new();
    loop {
        let at = lx.next_token_at();
        match lx.next() {
            Some(t) => toks.push((at, t)),
            None => break,
        }
    }
    // An assignment to it is the server's to refuse (1238), not a string's (1064).
    if word(toks.first().map(|(_, t)| t), "SET")
        && toks.windows(2).any(|w| {
            matches!(w[0].1, Token::SysVar(v) if is(sysvar_name(v), "last_gtid"))
                && matches!(w[1].1, Token::Punct(b'=' | b':'))
        })
    {
        return None;
    }
    let ends_list = |t: Option<&(usize, Token<'_>)>| match t {
        None => true,
        Some((_, Token::Punct(b',' | b';' | b')'))) => true,
        Some((_, Token::Word(w))) => [
            "FROM",
            "INTO",
            "UNION",
            "WHERE",
            "LIMIT",
            "ORDER",
            "GROUP",
            "HAVING",
            "FOR",
            "LOCK",
            "WINDOW",
            "EXCEPT",
            "INTERSECT",
        ]
        .iter()
        .any(|k| is(w, k)),
        _ => false,
    };
    let starts_item = |t: &Token<'_>| match t {
        Token::Punct(b',') => true,
        Token::Word(w) => [
            "SELECT",
            "DISTINCT",
            "ALL",
            "DISTINCTROW",
            "HIGH_PRIORITY",
            "STRAIGHT_JOIN",
            "SQL_SMALL_RESULT",
            "SQL_BIG_RESULT",
            "SQL_BUFFER_RESULT",
            "SQL_CACHE",
            "SQL_NO_CACHE",
            "SQL_CALC_FOUND_ROWS",
        ]
        .iter()
        .any(|k| is(w, k)),
        _ => false,
    };
    let mut out = Vec::with_capacity(sql.len() + 32);
    // Per depth of parentheses: whether a select list is being read there (a derived table's
    // or a subquery's columns are named too).
    let mut in_list = vec![false];
    let mut copied = 0;
    for (i, (at, t)) in toks.iter().enumerate() {
        let depth = in_list.len() - 1;
        match t {
            Token::Punct(b'(') => in_list.push(false),
            Token::Punct(b')') if depth > 0 => {
                in_list.pop();
            }
            Token::Word(w) if is(w, "SELECT") => in_list[depth] = true,
            Token::Word(_) if in_list[depth] && ends_list(Some(&(*at, *t))) => {
                in_list[depth] = false
            }
            Token::SysVar(v)
                if session_sysvar(v).is_some_and(|n| is(n, "last_gtid")) && !v.ends_with(b".") =>
            {
                // The variable's whole text: `@@`, the name, and its backticks if quoted.
                let quoted = sql.get(at + 2) == Some(&b'`');
                let end = at + 2 + v.len() + if quoted { 2 } else { 0 };
                let text = sql.get(*at..end)?;
                out.extend_from_slice(&sql[copied..*at]);
                out.push(b'\'');
                out.extend_from_slice(own.as_bytes());
                out.push(b'\'');
                let whole_item = in_list[depth]
                    && i > 0
                    && starts_item(&toks[i - 1].1)
                    && ends_list(toks.get(i + 1));
                if whole_item && !text.contains(&b'`') {
                    out.extend_from_slice(b" AS `");
                    out.extend_from_slice(text);
                    out.push(b'`');
                }
                copied = end;
            }
            _ => {}
        }
    }
    if copied == 0 {
        return None;
    }
    out.extend_from_slice(&sql[copied..]);
    Some(out)
}

/// Whom a `KILL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillId {
    Id(u32),
    /// `CONNECTION_ID()`: the killing connection itself.
    Own,
}

/// `KILL [HARD | SOFT] [CONNECTION | QUERY] n`: the id and whether only the query is killed.
/// The id may be quoted (`KILL QUERY '12'`, what a client that quotes its parameters sends) or
/// `CONNECTION_ID()`; comments may stand anywhere. `KILL QUERY ID` (a query id, MariaDB),
/// `KILL USER` and ids computed by other expressions are not supported (`None`).
pub fn kill_target(sql: &[u8]) -> Option<(KillId, bool)> {
    let mut lx = Lexer::new(sql);
    let mut toks = std::iter::from_fn(|| {
        let at = lx.next_token_at();
        lx.next().map(|t| (at, t))
    });
    let mut t = toks.next()?;
    if !matches!(t.1, Token::Word(w) if is(w, "KILL")) {
        return None;
    }
    t = toks.next()?;
    if matches!(t.1, Token::Word(w) if is(w, "HARD") || is(w, "SOFT")) {
        t = toks.next()?;
    }
    let mut query_only = false;
    if matches!(t.1, Token::Word(w) if is(w, "QUERY")) {
        query_only = true;
        t = toks.next()?;
    } else if matches!(t.1, Token::Word(w) if is(w, "CONNECTION")) {
        t = toks.next()?;
    }
    let (at, tok) = t;
    let target = if matches!(tok, Token::Word(w) if is(w, "CONNECTION_ID")) {
        match (toks.next(), toks.next()) {
            (Some((_, Token::Punct(b'('))), Some((_, Token::Punct(b')')))) => KillId::Own,
            _ => return None,
        }
    } else {
        KillId::Id(kill_id(sql.get(at..)?, tok)?)
    };
    // Nothing after it but a `;`.
    match (toks.next(), toks.next()) {
        (None, _) | (Some((_, Token::Punct(b';'))), None) => Some((target, query_only)),
        _ => None,
    }
}

/// The thread id a `KILL` names, from where its token `tok` starts: a number, or one quoted.
fn kill_id(rest: &[u8], tok: Token<'_>) -> Option<u32> {
    let digits = match tok {
        Token::Number => rest,
        // The same quote must close it right after the digits.
        Token::Quoted => {
            let quote = *rest.first()?;
            let inner = rest.get(1..)?;
            let n = inner.iter().take_while(|b| b.is_ascii_digit()).count();
            if inner.get(n) != Some(&quote) {
                return None;
            }
            inner
        }
        _ => return None,
    };
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    // A number that goes on past its digits (`12.5`, `12e3`, `0x1f`) is not an id.
    if matches!(digits.get(n), Some(b) if b.is_ascii_alphanumeric() || *b == b'.') {
        return None;
    }
    std::str::from_utf8(digits.get(..n)?).ok()?.parse().ok()
}

/// Whether a `PREPARE ... FROM '...'` or `EXECUTE IMMEDIATE '...'` runs a `KILL` (its string
/// starts with the word): classified as a `KILL`, which rwsplit answers only as a statement of
/// its own. SQL in a variable (`EXECUTE IMMEDIATE @sql`) is not seen.
fn prepares_kill(sql: &[u8]) -> bool {
    let mut lx = Lexer::new(sql);
    let (first, second) = (lx.next(), lx.next());
    let mut after = match (first, second) {
        (Some(Token::Word(p)), _) if is(p, "PREPARE") => false,
        (Some(Token::Word(e)), Some(Token::Word(i))) if is(e, "EXECUTE") && is(i, "IMMEDIATE") => {
            true
        }
        _ => return false,
    };
    // To the token after `FROM` (PREPARE) or `IMMEDIATE`: a string whose first word is KILL.
    loop {
        let at = lx.next_token_at();
        match lx.next() {
            Some(Token::Quoted) if after => {
                let inner = sql.get(at + 1..).unwrap_or_default();
                return matches!(Lexer::new(inner).next(), Some(Token::Word(w)) if is(w, "KILL"));
            }
            Some(Token::Word(w)) if !after && is(w, "FROM") => after = true,
            Some(_) if !after => {}
            _ => return false,
        }
    }
}

/// Whether `sql` has the word `XA` anywhere, strings included (`EXECUTE IMMEDIATE 'XA START
/// ...'`): for statements whose parts the classifier does not take apart.
pub fn names_xa(sql: &[u8]) -> bool {
    lexer::word_positions(sql, b"XA").next().is_some()
}

/// The one session variable a `SET` assigns, lowercased: `SET [SESSION] name = ...` or
/// `SET @@[SESSION.]name = ...`. None for several assignments, `SET NAMES`, `SET CHARACTER
/// SET`, user variables, or anything else.
pub fn set_target(sql: &[u8]) -> Option<String> {
    let toks: Vec<Token<'_>> = Lexer::new(sql).take(4096).collect();
    let mut it = toks.iter();
    if !matches!(it.next(), Some(Token::Word(w)) if is(w, "SET")) {
        return None;
    }
    let mut t = it.next()?;
    if matches!(t, Token::Word(w) if is(w, "SESSION") || is(w, "LOCAL")) {
        t = it.next()?;
    }
    let name = match t {
        Token::Word(w) if !is(w, "NAMES") && !is(w, "CHARACTER") && !is(w, "CHARSET") => *w,
        Token::SysVar(w) => session_sysvar(w)?,
        _ => return None,
    };
    if !matches!(it.next(), Some(Token::Punct(b'=' | b':'))) {
        return None;
    }
    let mut depth = 0i32;
    for t in it {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            Token::Punct(b',' | b';') if depth == 0 => return None,
            _ => {}
        }
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// A token in a `SET` value whose value is computed when the statement runs: a variable, a
/// call, or a function SQL lets one call without parentheses (`CURRENT_TIMESTAMP`).
fn reads_at_run_time(t: &Token<'_>) -> bool {
    match t {
        Token::UserVar | Token::SysVar(_) | Token::Punct(b'(') => true,
        Token::Word(w) => {
            let starts =
                |p: &str| w.len() >= p.len() && w[..p.len()].eq_ignore_ascii_case(p.as_bytes());
            starts("CURRENT_") || starts("LOCALTIME") || starts("UTC_") || is(w, "NOW")
        }
        _ => false,
    }
}

/// The quoted name right after `USE` (`` USE `a``b` `` is `` a`b ``): not the first quote of
/// the text, which may be in a comment before it.
fn quoted_name(sql: &[u8]) -> Option<String> {
    let mut lx = Lexer::new(sql);
    lx.next()?;
    let rest = sql.get(lx.next_token_at()..)?;
    let q = *rest.first()?;
    if !matches!(q, b'`' | b'"' | b'\'') {
        return None;
    }
    let mut name = Vec::new();
    let mut i = 1;
    while let Some(&b) = rest.get(i) {
        if b == q {
            if rest.get(i + 1) != Some(&q) {
                return Some(String::from_utf8_lossy(&name).into_owned());
            }
            i += 1;
        }
        name.push(b);
        i += 1;
    }
    None
}

/// The statement with literals replaced by `?` and whitespace and comments folded, for stats
/// and rules. Written straight into one buffer (no allocation per token). A session gets it
/// from the same lexer pass as the statement's classification (`classify_digest`).
pub fn digest(sql: &[u8]) -> String {
    let mut buf = Vec::with_capacity(sql.len().min(1024));
    for t in Lexer::new(sql) {
        push_digest_token(&mut buf, t);
    }
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends one token to a digest being written as bytes: words as they are (checked as UTF-8
/// once, for the whole digest, by whoever makes it a string), literals as `?`.
fn push_digest_token(out: &mut Vec<u8>, t: Token<'_>) {
    // No space before `,` `)` `;` `(` or after `(`.
    let tight = matches!(t, Token::Punct(b',' | b')' | b';' | b'('));
    if !out.is_empty() && !tight && out.last() != Some(&b'(') {
        out.push(b' ');
    }
    match t {
        Token::Word(w) => out.extend_from_slice(w),
        Token::Quoted | Token::Number => out.push(b'?'),
        Token::Ident(name) => {
            out.push(b'`');
            out.extend_from_slice(name);
            out.push(b'`');
        }
        Token::UserVar => out.extend_from_slice(b"@?"),
        Token::SysVar(w) => {
            out.extend_from_slice(b"@@");
            out.extend_from_slice(w);
        }
        Token::Punct(p) => out.push(p),
    }
}

#[cfg(test)]
mod tests;
