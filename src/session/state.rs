//! What a session has changed on the server side, so every backend connection it uses carries
//! the same state before running its next statement, and what keeps it on one connection.
//!
//! The replayable state is the schema, the multi-statement option, `LAST_INSERT_ID()` and a
//! log of the session's `SET` statements. The log is compacted: a `SET` with the same digest
//! as an earlier one (`SET autocommit = ?`, `SET sql_mode = ?`) replaces it, so a client that
//! toggles autocommit per transaction keeps a short log. Each prefix of the log has a chained
//! hash; a connection remembers the hash of what it ran, so the pool can hand a session a
//! connection that already carries its state (most checkouts replay nothing), and a connection
//! that ran another session's log is reset and brought up with one replay.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::pool::{BackendConn, BackendError, ServerErr};
use crate::protocol::Command;
use crate::protocol::packets::SERVER_STATUS_AUTOCOMMIT;
use crate::protocol::response::ResponseKind;

/// One replayed session command: its digest (the compaction key) and its COM_QUERY packet.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub key: Arc<str>,
    pub packet: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub schema: Option<String>,
    pub multi_statements: bool,
    /// Session commands in the order they succeeded (compacted).
    replay: Vec<Replayed>,
    /// `chains[i]`: the hash of the first `i` entries of `replay` (`chains[0] == 0`).
    chains: Vec<u64>,
    pub autocommit: bool,
    /// The session's `sql_mode` has `NO_BACKSLASH_ESCAPES` (the server's status flag, as of
    /// the last statement): the classifier reads strings as the server does.
    pub no_backslash_escapes: bool,
    /// What `LAST_INSERT_ID()` returns in this session.
    pub last_insert_id: u64,
    /// What MariaDB's `@@last_gtid` returns in this session: the GTID of its last commit, as
    /// the server reported it (empty for none yet); `None` once a commit's GTID may have gone
    /// unseen. The primary connection a statement reading it runs on may have committed
    /// another session's since: `Session::query` writes this value in (`classify::with_last_gtid`).
    pub last_gtid: Option<String>,
    /// The session set a `session_track_*` variable itself: the server may no longer report
    /// every commit's GTID, so `last_gtid` is not known after a write that reported none.
    pub own_tracking: bool,
    /// The session's own `wait_timeout`, once it set one (the server reported it): a client
    /// idle this long is disconnected, when that is sooner than `proxy.client_idle_timeout`.
    pub wait_timeout: Option<std::time::Duration>,
    /// `CREATE TEMPORARY TABLE` ran: the table exists only on the primary connection.
    pub temporary_tables: bool,
    /// `LOCK TABLES` is in force on the primary connection.
    pub table_locks: bool,
    /// A user variable was assigned (it lives on the primary connection).
    pub user_variables: bool,
    /// `GET_LOCK` calls not yet matched by a `RELEASE_LOCK`.
    pub named_locks: u32,
    /// `HANDLER ... OPEN`s not yet matched by a `HANDLER ... CLOSE`.
    pub handlers: u32,
    /// A `SET` of a one-shot variable (`insert_id`, ...) waits for the next statement on the
    /// primary connection that is not a `SET`.
    pub one_shot: bool,
    /// A SQL-level `PREPARE` ran.
    pub sql_prepared: bool,
    /// `LAST_INSERT_ID(expr)` set the value on the server, where rwsplit cannot see it.
    pub last_insert_id_set: bool,
    /// A statement rwsplit cannot see into (a procedure, a trigger, a stored function)
    /// changed session state the server does not name (a user variable, a temporary table,
    /// a prepared statement).
    pub untracked_state: bool,
    /// `SET TRANSACTION ...` (no scope) applies to the next transaction on the primary
    /// connection, and only there.
    pub next_transaction: bool,
    /// `SET ROLE`: the role's privileges live on the primary connection (reads too).
    pub role: bool,
    /// A `BACKUP STAGE` is in progress on the primary connection.
    pub backup_stage: bool,
    /// A backup lock (`BACKUP LOCK`, `LOCK INSTANCE FOR BACKUP`) is held there.
    pub backup_lock: bool,
}

/// Tracked system variables that are not carried from one connection to another: rwsplit's
/// own tracking settings, one-shot and per-connection values (the GTID of the last commit,
/// the next insert id, the next GTID's sequence number).
const NOT_CARRIED: &[&str] = &[
    "last_gtid",
    "session_track_system_variables",
    "session_track_state_change",
    "session_track_gtids",
    "session_track_schema",
    "session_track_transaction_info",
    "last_insert_id",
    "insert_id",
    "identity",
    "gtid_seq_no",
    "gtid_next",
    "pseudo_thread_id",
];

/// Variables whose effect is the connection's own: carried to shared connections they would
/// show one session's statements to another (`profiling`: `SHOW PROFILES`) or hide the state
/// changes rwsplit must see (`session_track_state_change`). A session that sets one keeps its
/// connections instead (`untracked_state`).
pub fn keeps_connections(name: &str) -> bool {
    ["profiling", "session_track_state_change"]
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k))
}

/// `SET @@SESSION.name = value` for a value the server reported through session tracking,
/// or `None` for a variable that is not carried (or a name that is not a plain identifier).
/// Numbers go bare (integer variables refuse strings); an empty character set or collation
/// is `NULL`; other values are quoted, or given as a hex string when they hold a quote, a
/// backslash or anything unprintable (safe whatever `sql_mode` says about backslashes).
pub fn tracked_set(name: &str, value: &str) -> Option<Vec<u8>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if name.is_empty() || !name.chars().all(plain) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if NOT_CARRIED.contains(&lower.as_str()) {
        return None;
    }
    let numeric = {
        let digits = value.strip_prefix('-').unwrap_or(value);
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|&c| c == '.').count() <= 1
            && !digits.starts_with('.')
            && !digits.ends_with('.')
    };
    let mut p = Vec::with_capacity(24 + name.len() + 2 * value.len());
    p.push(crate::protocol::Command::Query as u8);
    p.extend_from_slice(b"SET @@SESSION.");
    p.extend_from_slice(lower.as_bytes());
    p.extend_from_slice(b" = ");
    if numeric {
        p.extend_from_slice(value.as_bytes());
    } else if value.is_empty()
        && (lower.starts_with("character_set_") || lower.starts_with("collation_"))
    {
        p.extend_from_slice(b"NULL");
    } else if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\')
    {
        p.push(b'\'');
        p.extend_from_slice(value.as_bytes());
        p.push(b'\'');
    } else {
        p.extend_from_slice(b"X'");
        for b in value.bytes() {
            p.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        p.push(b'\'');
    }
    Some(p)
}

/// What a `pin_reason` (or "open_transaction") means, in words for a client's error message.
pub fn held_words(reason: &str) -> &'static str {
    match reason {
        "open_transaction" => "open transaction",
        "temporary_table" => "temporary tables",
        "lock_tables" => "table locks (LOCK TABLES)",
        "backup" => "a backup stage or lock (BACKUP STAGE, BACKUP LOCK)",
        "get_lock" => "named locks (GET_LOCK)",
        "handler" => "open HANDLERs",
        "one_shot_set" => "a SET for the next statement (insert_id, rand_seed, ...)",
        "user_variable" => "user variables",
        "sql_prepare" => "SQL prepared statements (PREPARE)",
        "last_insert_id_expr" => "LAST_INSERT_ID(expr) value",
        "role" => "role (SET ROLE)",
        "untracked_state" => "session settings rwsplit could not replay",
        "next_transaction" => "SET TRANSACTION characteristics",
        _ => "session state",
    }
}

/// Why a session keeps its primary connection between statements, for metrics and logs.
pub fn pin_reason(st: &State) -> Option<&'static str> {
    if st.temporary_tables {
        Some("temporary_table")
    } else if st.table_locks {
        Some("lock_tables")
    } else if st.backup_stage || st.backup_lock {
        Some("backup")
    } else if st.named_locks > 0 {
        Some("get_lock")
    } else if st.handlers > 0 {
        Some("handler")
    } else if st.one_shot {
        Some("one_shot_set")
    } else if st.user_variables {
        Some("user_variable")
    } else if st.sql_prepared {
        Some("sql_prepare")
    } else if st.last_insert_id_set {
        Some("last_insert_id_expr")
    } else if st.role {
        Some("role")
    } else if st.untracked_state {
        Some("untracked_state")
    } else if st.next_transaction {
        Some("next_transaction")
    } else {
        None
    }
}

fn chain(prev: u64, packet: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    prev.hash(&mut h);
    packet.hash(&mut h);
    // 0 is "nothing applied"; a real chain never takes that value.
    h.finish().max(1)
}

impl State {
    /// A new session's state; `status`: the flags a new server connection starts with (the
    /// server's global autocommit and NO_BACKSLASH_ESCAPES).
    pub fn new(schema: Option<String>, multi_statements: bool, status: u16) -> State {
        let mut st = State {
            schema,
            multi_statements,
            replay: Vec::new(),
            chains: vec![0],
            autocommit: true,
            no_backslash_escapes: false,
            last_insert_id: 0,
            last_gtid: Some(String::new()),
            own_tracking: false,
            wait_timeout: None,
            temporary_tables: false,
            table_locks: false,
            user_variables: false,
            named_locks: 0,
            handlers: 0,
            one_shot: false,
            sql_prepared: false,
            last_insert_id_set: false,
            untracked_state: false,
            next_transaction: false,
            role: false,
            backup_stage: false,
            backup_lock: false,
        };
        st.update_status(status);
        st
    }

    /// Whether the session's isolation level is SERIALIZABLE: its last logged setting of one
    /// (`SET SESSION TRANSACTION ISOLATION LEVEL ...`, `SET tx_isolation = ...`, a reported
    /// value) names it. The log is in the order the settings ran.
    pub fn serializable(&self) -> bool {
        let has = |packet: &[u8], word: &[u8]| {
            packet
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word))
        };
        self.replay
            .iter()
            .rev()
            .find(|r| has(&r.packet, b"ISOLATION"))
            .is_some_and(|r| has(&r.packet, b"SERIALIZABLE"))
    }

    /// The state after COM_RESET_CONNECTION: the schema stays, everything else is the default.
    pub fn reset(&mut self, status: u16) {
        *self = State::new(self.schema.take(), self.multi_statements, status);
    }

    pub fn update_status(&mut self, status: u16) {
        self.autocommit = status & SERVER_STATUS_AUTOCOMMIT != 0;
        self.no_backslash_escapes =
            status & crate::protocol::packets::SERVER_STATUS_NO_BACKSLASH_ESCAPES != 0;
    }

    /// The hash of the whole log: what a connection carrying this session's state has.
    pub fn chain(&self) -> u64 {
        self.chains.last().copied().unwrap_or(0)
    }

    /// Records a session command that succeeded; an earlier one with the same digest is
    /// dropped (this one overrides it).
    pub fn record(&mut self, key: Arc<str>, packet: &[u8]) {
        let before = self.replay.len();
        self.replay.retain(|r| r.key != key);
        let from = if self.replay.len() == before {
            self.replay.len()
        } else {
            self.chains.truncate(1);
            0
        };
        self.replay.push(Replayed {
            key,
            packet: packet.to_vec(),
        });
        for r in &self.replay[from..] {
            let prev = self.chains.last().copied().unwrap_or(0);
            self.chains.push(chain(prev, &r.packet));
        }
    }

    /// How long the log and what its hash would be once `packet` is recorded under `key`
    /// (as `record` would): what a connection that already ran it carries.
    pub fn after(&self, key: &str, packet: &[u8]) -> (usize, u64) {
        if !self.replay.iter().any(|r| &*r.key == key) {
            return (self.replay.len() + 1, chain(self.chain(), packet));
        }
        let (n, prev) = self
            .replay
            .iter()
            .filter(|r| &*r.key != key)
            .fold((0, 0), |(n, prev), r| (n + 1, chain(prev, &r.packet)));
        (n + 1, chain(prev, packet))
    }

    /// Records the system variables a statement changed where rwsplit cannot see (inside a
    /// procedure, a trigger, a function), as the server reported them, so they are carried
    /// like the session's own `SET`s. Returns whether anything was recorded.
    pub fn record_tracked(&mut self, sysvars: &[(String, String)]) -> bool {
        let mut any = false;
        // The values are the final ones, in the server's order, which is not the order they
        // were set in. A character set's `SET` resets its collation to the default, so the
        // collations go last: `SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci` (a prepared
        // statement, as Laravel sends it) reported collation first would be replayed as
        // utf8mb4_general_ci.
        let collation = |name: &str| {
            name.get(..10)
                .is_some_and(|p| p.eq_ignore_ascii_case("collation_"))
        };
        let ordered = sysvars
            .iter()
            .filter(|(n, _)| !collation(n))
            .chain(sysvars.iter().filter(|(n, _)| collation(n)));
        for (name, value) in ordered {
            if let Some(packet) = tracked_set(name, value) {
                self.record(var_key(&name.to_ascii_lowercase()), &packet);
                any = true;
            }
        }
        any
    }

    /// A connection that just ran the session's latest command carries the whole log.
    pub fn mark_synced(&self, conn: &mut BackendConn) {
        conn.log.clone_from(&self.chains);
    }

    /// Whether `conn` carries a prefix of this session's log (then only the rest is replayed).
    fn prefix_of(&self, conn: &BackendConn) -> bool {
        conn.log
            .len()
            .checked_sub(1)
            .is_some_and(|n| self.chains.get(n) == conn.log.last())
    }

    /// Whether `conn` carries exactly this session's log.
    fn carried_by(&self, conn: &BackendConn) -> bool {
        carries(conn, self.replay.len(), self.chain())
    }
}

/// Whether `conn` carries a log of `len` entries whose hash is `chain`, and nothing more.
fn carries(conn: &BackendConn, len: usize, chain: u64) -> bool {
    conn.log.len() == len + 1 && conn.log.last() == Some(&chain)
}

/// The key a `SET` is logged under; a later entry under the same key replaces it. A `SET` of
/// one `variable` (`classify::set_target`) keys by that variable, so `SET x = ...`,
/// `SET @@SESSION.x = ...` and a value the server reported for `x` replace each other. Any
/// other keys by its digest, or by its text when it has a backquoted name (which the digest
/// folds to `?`). The session's digest, when cut (`digests::MAX_DIGEST_LEN`), is not used:
/// two `SET`s that differ past the cut would replace each other.
pub fn log_key(variable: Option<&str>, sql: &[u8], digest: Option<&Arc<str>>) -> Arc<str> {
    match (variable, digest) {
        (Some(v), _) => var_key(v),
        (None, Some(d)) if !sql.contains(&b'`') && !super::digests::is_cut(d) => d.clone(),
        (None, _) if !sql.contains(&b'`') => crate::classify::digest(sql).into(),
        (None, _) => String::from_utf8_lossy(sql).into(),
    }
}

/// The log key of variable `name` (lowercase).
fn var_key(name: &str) -> Arc<str> {
    format!("SET @@SESSION.{name} = ?").into()
}

/// What bringing a connection to a session's state took (`rwsplit_state_syncs_total`; the
/// discriminant indexes `metrics::Hot::state_syncs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Nothing: the connection already carried the state.
    None = 0,
    /// Some commands (schema, missed `SET`s, options).
    Replay = 1,
    /// A reset first: the connection carried another session's state.
    Reset = 2,
}

/// One command of a state sync.
enum Step {
    Reset,
    /// What the connection's login set and the reset undid
    /// (`BackendConn::login_settings_after_reset`).
    Restore(crate::pool::conn::Restore),
    Track(&'static str),
    InitDb,
    Replay(usize),
    MultiStatements(bool),
    LastInsertId(u64),
}

/// How much of a session's state a connection must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All of it, to run the session's statements (`sync`).
    Session { primary: bool },
    /// All of it, to run an idempotent session command (`Classification::idempotent`) whose
    /// resulting log would be `applied` entries long with hash `chain`: a connection that
    /// carries exactly that log already ran the command, and running it again changes nothing
    /// (the OK's status flags and warnings are the ones the session would get). Clients send
    /// the same `SET NAMES` or `SET`s at every connect; the pooled connections carry them from
    /// the last session, so the new session's `SET` costs no reset. A connection carrying
    /// more than that log is not taken: the extra state would show in the OK packet's status
    /// (`autocommit`, `NO_BACKSLASH_ESCAPES`) and could overlap the command's variables.
    Then {
        primary: bool,
        applied: usize,
        chain: u64,
    },
    /// Only the schema, to check that the session may use it (`USE`, login, COM_CHANGE_USER):
    /// the connection keeps the state it carries, saving the reset and replay a connection of
    /// another session would need. Sound because no state rwsplit replays decides access to
    /// a schema: `SET ROLE` pins the session and its connection is reset before reuse. Only for
    /// an ASCII name, which reads the same whatever `SET NAMES` the connection carries.
    Schema,
}

impl Scope {
    /// Whether `conn` needs no reset and no replay for this scope of `st` (a pool checkout
    /// prefers such a connection).
    pub fn ready(self, conn: &BackendConn, st: &State) -> bool {
        match self {
            Scope::Schema => true,
            Scope::Session { .. } => st.carried_by(conn),
            Scope::Then { applied, chain, .. } => carries(conn, applied, chain),
        }
    }

    /// The narrowest scope that checks `schema` soundly on a connection to the primary or
    /// not.
    pub fn schema_check(schema: &str, primary: bool) -> Scope {
        if schema.is_ascii() {
            Scope::Schema
        } else {
            Scope::Session { primary }
        }
    }
}

/// Brings `conn` to `scope` of the session's state with the fewest commands: nothing when it
/// already matches (the common case), else a reset if it carries another log (with session
/// tracking turned on again), then the schema, the session commands it missed, the
/// multi-statement option and, on a primary connection (where `LAST_INSERT_ID()` is routed),
/// `LAST_INSERT_ID()`. `Scope::Schema` needs the schema alone; `Scope::Then` needs no reset or
/// replay on a connection that already carries the log its command makes. The commands are
/// pipelined: written at once and their responses read in order, so a sync costs one round
/// trip however many commands it takes. A server error (e.g. the schema was dropped) is
/// returned as is, after every response has been read.
///
/// `keep`: the connection holds this session's open cursor or long data, which a reset would
/// destroy. It has been the session's all along, so what it carries is an earlier version of
/// the session's own log (a later `SET` of a variable replaces the earlier entry): the whole
/// log, replayed on it without a reset, sets every variable it ever set again.
pub async fn sync(
    conn: &mut BackendConn,
    st: &State,
    scope: Scope,
    keep: bool,
) -> Result<Result<Sync, ServerErr>, BackendError> {
    let (primary, then) = match scope {
        Scope::Schema => {
            if st.schema.is_none() || conn.schema == st.schema {
                return Ok(Ok(Sync::None));
            }
            return run(conn, st, vec![Step::InitDb], false).await;
        }
        Scope::Session { primary } => (primary, false),
        Scope::Then { primary, .. } => (primary, scope.ready(conn, st)),
    };
    let prefix = then || st.prefix_of(conn);
    let reset = !prefix && !keep;
    if !prefix && keep {
        conn.log = vec![0];
    }
    let mut plan = Vec::new();
    if reset {
        plan.push(Step::Reset);
        plan.extend(conn.login_settings_after_reset().map(Step::Restore));
        if let Some(t) = conn.tracking_statements().map(|t| t[0]) {
            plan.push(Step::Track(t));
        }
    }
    if st.schema.is_some() && conn.schema != st.schema {
        plan.push(Step::InitDb);
    }
    if !then {
        let from = if reset {
            0
        } else {
            conn.log.len().saturating_sub(1)
        };
        plan.extend((from..st.replay.len()).map(Step::Replay));
    }
    if conn.multi_statements != st.multi_statements {
        plan.push(Step::MultiStatements(st.multi_statements));
    }
    let last_insert_id = if reset { 0 } else { conn.last_insert_id };
    if primary && last_insert_id != st.last_insert_id {
        plan.push(Step::LastInsertId(st.last_insert_id));
    }
    if plan.is_empty() {
        return Ok(Ok(Sync::None));
    }
    run(conn, st, plan, reset).await
}

/// Runs a sync's commands, pipelined.
async fn run(
    conn: &mut BackendConn,
    st: &State,
    plan: Vec<Step>,
    reset: bool,
) -> Result<Result<Sync, ServerErr>, BackendError> {
    for step in &plan {
        let bytes: std::borrow::Cow<'_, [u8]> = match step {
            Step::Reset => (&[Command::ResetConnection as u8][..]).into(),
            Step::Restore(r) => Command::Query.packet(r.sql().as_bytes()).into(),
            Step::Track(sql) => Command::Query.packet(sql.as_bytes()).into(),
            Step::InitDb => {
                let db = st.schema.as_deref().unwrap_or_default();
                Command::InitDb.packet(db.as_bytes()).into()
            }
            Step::Replay(i) => st.replay.get(*i).map_or(&[][..], |r| &r.packet[..]).into(),
            Step::MultiStatements(on) => Command::SetOption
                .packet(&u16::from(!*on).to_le_bytes())
                .into(),
            Step::LastInsertId(id) => Command::Query
                .packet(format!("SET last_insert_id = {id}").as_bytes())
                .into(),
        };
        conn.queue_command(&bytes).await?;
    }
    conn.flush_commands().await?;
    let mut first_err = None;
    // The log the connection carries stays known until a replay fails (a schema that failed
    // to be selected changes nothing the replays set).
    let mut replay_failed = false;
    let mut track_refused = false;
    for step in plan {
        let kind = match step {
            Step::Track(_) | Step::Restore(_) | Step::Replay(_) | Step::LastInsertId(_) => {
                ResponseKind::Query
            }
            _ => ResponseKind::Single,
        };
        let r = conn.read_internal(kind).await?;
        match (step, r) {
            (Step::Reset, Ok(_)) => conn.after_reset(),
            (Step::Reset, Err(_)) => {
                // The rest was meant for a clean connection: this one is not reused.
                conn.broken = true;
                return Err(BackendError::Io(crate::protocol::frame::FrameError::Closed));
            }
            (Step::Track(_), r) => track_refused = r.is_err(),
            (Step::Restore(r), answer) => {
                if !r.usable_after(answer.as_ref().err()) {
                    // As for a failed reset: the session's statement does not run here.
                    conn.broken = true;
                    return Err(BackendError::Io(crate::protocol::frame::FrameError::Closed));
                }
            }
            (Step::InitDb, Ok(_)) => conn.schema = st.schema.clone(),
            (Step::Replay(i), Ok(_)) if !replay_failed => {
                conn.log.truncate(i + 1);
                conn.log.push(st.chains.get(i + 1).copied().unwrap_or(0));
            }
            (Step::Replay(_), Ok(_)) => {}
            (Step::MultiStatements(on), Ok(_)) => conn.multi_statements = on,
            (Step::LastInsertId(id), Ok(_)) => conn.last_insert_id = id,
            (step, Err(e)) => {
                if let Step::Replay(_) = step {
                    // Later entries ran without this one: the connection carries no prefix
                    // of the log any more, so the next sync resets it.
                    conn.log.clear();
                    replay_failed = true;
                }
                first_err.get_or_insert(e);
            }
        }
    }
    if track_refused {
        // An older server: the fallback statements, one at a time (rare).
        conn.track_session().await?;
    }
    if let Some(e) = first_err {
        // The replays after a failed one ran on the server without being recorded: what the
        // connection carries is not known, so the next sync resets it (another session would
        // have been given the failed one's settings). After a failed schema they were.
        if replay_failed {
            conn.log.clear();
        }
        return Ok(Err(e));
    }
    Ok(Ok(if reset { Sync::Reset } else { Sync::Replay }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_digest_is_no_log_key() {
        // Two SETs of several variables that differ only past the digest's cut.
        let names: Vec<String> = (0..150).map(|i| format!("@@session.v{i} = 1")).collect();
        let head = format!("SET {}", names.join(", "));
        let a = format!("{head}, sql_mode = 'A'");
        let b = format!("{head}, time_zone = '+01:00'");
        let cut: Arc<str> = format!("{}...", &head[..1000]).into();
        let ka = log_key(None, a.as_bytes(), Some(&cut));
        let kb = log_key(None, b.as_bytes(), Some(&cut));
        assert_ne!(ka, kb, "they would replace each other in the log");
        // An uncut digest is the key as it is.
        let d: Arc<str> = "SET sql_mode = ?".into();
        assert_eq!(log_key(None, b"SET sql_mode = 'x'", Some(&d)), d);
    }

    #[test]
    fn a_set_with_the_same_digest_replaces_the_earlier_one() {
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        st.record("SET autocommit = ?".into(), b"\x03SET autocommit=0");
        st.record("SET sql_mode = ?".into(), b"\x03SET sql_mode=''");
        let two = st.chain();
        st.record("SET autocommit = ?".into(), b"\x03SET autocommit=1");
        st.record("SET autocommit = ?".into(), b"\x03SET autocommit=0");
        assert_eq!(st.replay.len(), 2);
        assert_eq!(st.replay[1].packet, b"\x03SET autocommit=0");
        // Same statements, other order: another state, another hash.
        assert_ne!(st.chain(), two);
        assert_eq!(st.chains.len(), 3);
    }

    #[test]
    fn after_predicts_what_record_makes_of_the_log() {
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        for (key, packet) in [
            ("SET NAMES ?", &b"\x03SET NAMES latin1"[..]),
            ("SET time_zone = ?", b"\x03SET time_zone='+05:00'"),
            ("SET NAMES ?", b"\x03SET NAMES utf8mb4"),
            ("SET sql_mode = ?", b"\x03SET sql_mode=''"),
            ("SET sql_mode = ?", b"\x03SET sql_mode=''"),
        ] {
            let predicted = st.after(key, packet);
            st.record(key.into(), packet);
            assert_eq!(predicted, (st.replay.len(), st.chain()), "{key}");
        }
    }

    #[test]
    fn two_sessions_with_the_same_log_have_the_same_hash() {
        let mut a = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        let mut b = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        for st in [&mut a, &mut b] {
            st.record("SET NAMES utf8mb4".into(), b"\x03SET NAMES utf8mb4");
            st.record("SET time_zone = ?".into(), b"\x03SET time_zone='+00:00'");
        }
        assert_eq!(a.chain(), b.chain());
        b.record("SET time_zone = ?".into(), b"\x03SET time_zone='+01:00'");
        assert_ne!(a.chain(), b.chain());
        assert_ne!(
            State::new(None, false, SERVER_STATUS_AUTOCOMMIT).chain(),
            a.chain()
        );
        assert_eq!(State::new(None, false, SERVER_STATUS_AUTOCOMMIT).chain(), 0);
    }

    #[test]
    fn tracked_variables_become_set_statements_that_survive_any_sql_mode() {
        let sql = |n: &str, v: &str| {
            tracked_set(n, v).map(|p| String::from_utf8(p[1..].to_vec()).unwrap())
        };
        for (name, value, want) in [
            ("wait_timeout", "77", "SET @@SESSION.wait_timeout = 77"),
            (
                "long_query_time",
                "10.000000",
                "SET @@SESSION.long_query_time = 10.000000",
            ),
            ("Time_Zone", "+01:00", "SET @@SESSION.time_zone = '+01:00'"),
            ("sql_mode", "", "SET @@SESSION.sql_mode = ''"),
            (
                "character_set_results",
                "",
                "SET @@SESSION.character_set_results = NULL",
            ),
            (
                "lc_messages_dir",
                "a'b\\",
                "SET @@SESSION.lc_messages_dir = X'6127625c'",
            ),
        ] {
            assert_eq!(sql(name, value).as_deref(), Some(want), "{name}");
        }
        assert_eq!(sql("last_insert_id", "5"), None);
        assert_eq!(sql("session_track_system_variables", "*"), None);
        assert_eq!(sql("x; DROP TABLE t", "1"), None);
        assert_eq!(sql("", "1"), None);
        // Not numbers: these go quoted.
        for v in ["1.2.3", "-", ".5", "5.", "1e5"] {
            assert!(sql("v", v).unwrap().ends_with(&format!("'{v}'")), "{v}");
        }
    }

    #[test]
    fn tracked_variables_replace_each_other_and_keep_the_log_order() {
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        st.record("SET sql_mode = ?".into(), b"\x03SET sql_mode=''");
        assert!(st.record_tracked(&[
            ("sql_mode".into(), "ANSI".into()),
            ("last_gtid".into(), "0-1-1".into())
        ]));
        assert!(!st.record_tracked(&[("insert_id".into(), "9".into())]));
        st.record_tracked(&[("sql_mode".into(), "TRADITIONAL".into())]);
        let log: Vec<&[u8]> = st.replay.iter().map(|r| &r.packet[1..]).collect();
        assert_eq!(
            log,
            [
                &b"SET sql_mode=''"[..],
                b"SET @@SESSION.sql_mode = 'TRADITIONAL'"
            ]
        );
    }

    #[test]
    fn tracked_collations_are_replayed_after_their_character_sets() {
        // The order MariaDB may report a prepared `SET NAMES utf8mb4 COLLATE
        // utf8mb4_unicode_ci` in; replayed so, the character set would reset the collation.
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        st.record_tracked(&[
            ("collation_connection".into(), "utf8mb4_unicode_ci".into()),
            ("character_set_client".into(), "utf8mb4".into()),
            ("COLLATION_SERVER".into(), "latin1_german1_ci".into()),
            ("character_set_connection".into(), "utf8mb4".into()),
            ("character_set_server".into(), "latin1".into()),
        ]);
        let log: Vec<&[u8]> = st.replay.iter().map(|r| &r.packet[1..]).collect();
        assert_eq!(
            log,
            [
                &b"SET @@SESSION.character_set_client = 'utf8mb4'"[..],
                b"SET @@SESSION.character_set_connection = 'utf8mb4'",
                b"SET @@SESSION.character_set_server = 'latin1'",
                b"SET @@SESSION.collation_connection = 'utf8mb4_unicode_ci'",
                b"SET @@SESSION.collation_server = 'latin1_german1_ci'",
            ]
        );
    }

    #[test]
    fn sets_of_one_variable_replace_each_other_whatever_their_form() {
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        for sql in [
            &b"SET sql_mode = 'ANSI'"[..],
            b"SET @@SESSION.sql_mode = 'TRADITIONAL'",
            b"SET NAMES latin1",
            b"SET `sql_mode` = ''",
        ] {
            let variable = crate::classify::set_target(sql);
            let mut packet = vec![Command::Query as u8];
            packet.extend_from_slice(sql);
            st.record(log_key(variable.as_deref(), sql, None), &packet);
        }
        st.record_tracked(&[("SQL_MODE".into(), "STRICT_ALL_TABLES".into())]);
        let log: Vec<&[u8]> = st.replay.iter().map(|r| &r.packet[1..]).collect();
        assert_eq!(
            log,
            [
                &b"SET NAMES latin1"[..],
                b"SET `sql_mode` = ''",
                b"SET @@SESSION.sql_mode = 'STRICT_ALL_TABLES'"
            ]
        );
    }

    #[test]
    fn pins_are_named() {
        let mut st = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(pin_reason(&st), None);
        st.named_locks = 1;
        assert_eq!(pin_reason(&st), Some("get_lock"));
        assert_eq!(held_words("get_lock"), "named locks (GET_LOCK)");
        // Every pin has its own words in the error of a lost connection.
        let pins: [fn(&mut State); 11] = [
            |s| s.temporary_tables = true,
            |s| s.table_locks = true,
            |s| s.named_locks = 1,
            |s| s.handlers = 1,
            |s| s.one_shot = true,
            |s| s.user_variables = true,
            |s| s.sql_prepared = true,
            |s| s.last_insert_id_set = true,
            |s| s.role = true,
            |s| s.untracked_state = true,
            |s| s.next_transaction = true,
        ];
        for pin in pins {
            let mut one = State::new(None, false, SERVER_STATUS_AUTOCOMMIT);
            pin(&mut one);
            let reason = pin_reason(&one).expect("pinned");
            assert_ne!(held_words(reason), "session state", "{reason} has no words");
        }
        assert_ne!(held_words("open_transaction"), "session state");
        st.temporary_tables = true;
        assert_eq!(pin_reason(&st), Some("temporary_table"));
        st.reset(SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(pin_reason(&st), None);
    }
}
