//! Statement classification: what kind of statement is this, and what does it mean for routing.
//! STUB: the public API below is fixed; the implementation is being written.

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
    /// `ROW_COUNT`, `NEXTVAL`/`NEXT VALUE FOR`, `SETVAL`, `LASTVAL`, `SLEEP`? (no: SLEEP is a read).
    SideEffectFunction,
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
    /// `SAVEPOINT`, `ROLLBACK TO`, `RELEASE SAVEPOINT`, `SET TRANSACTION`, XA other than start/end.
    TransactionControl,
    /// A statement not known to be a read (includes anything the classifier could not understand).
    Other,
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
    /// `LOCK TABLES`, `FLUSH TABLES ... WITH READ LOCK`.
    LocksTables,
    /// `UNLOCK TABLES`.
    UnlocksTables,
    /// Assigns a user variable (`SET @a`, `SELECT @a := ...`, `... INTO @a`).
    SetsUserVariable,
    /// Takes a named lock (`GET_LOCK`).
    TakesNamedLock,
    /// SQL-level `PREPARE`.
    PreparesSqlStatement,
}

/// The result of classifying one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    /// Set when `kind == Write`.
    pub reason: Option<PrimaryReason>,
    pub hint: Option<Hint>,
    pub effect: Option<SessionEffect>,
    /// `START TRANSACTION READ ONLY`.
    pub read_only_transaction: bool,
    /// For `USE db`: the schema name, unquoted.
    pub schema: Option<String>,
    /// True when the fast lexical path decided; false when the sqlparser fallback was needed.
    pub fast_path: bool,
}

/// Classify one statement (the payload of a COM_QUERY or COM_STMT_PREPARE, without the command
/// byte). Never panics, whatever the bytes; invalid UTF-8 or unparseable SQL is `Write`/`Other`.
pub fn classify(sql: &[u8]) -> Classification {
    let _ = sql;
    Classification {
        kind: StatementKind::Write,
        reason: Some(PrimaryReason::Other),
        hint: None,
        effect: None,
        read_only_transaction: false,
        schema: None,
        fast_path: true,
    }
}

/// The statement with literals replaced by `?` and whitespace/comments folded, for stats and rules.
pub fn digest(sql: &[u8]) -> String {
    String::from_utf8_lossy(sql).into_owned()
}
