//! One authenticated backend connection, with the session state it carries.

use std::time::{Duration, Instant};

use mysql_common::constants::CapabilityFlags as C;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};

use crate::net::{Endpoint, ReadHalf, Stream, WriteHalf};
use crate::protocol::connect::{self, ConnectError, Credentials};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::handshake::ServerIdentity;
use crate::protocol::packets;
use crate::protocol::response::{Outcome, PEEK_LEN, ResponseKind, ResponseTracker, Step};
use crate::protocol::{Command, frame::FrameHeader};
use crate::tls::{BackendTls, BackendTlsMode};

/// Buffer sizes for backend sockets: large enough that a typical result set is one read.
const BUF_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out after {after:?}")]
    ConnectTimeout { address: String, after: Duration },
    #[error("login to {address} failed: {source}{}", if *.plain_offered_tls {
        " (over a plain connection, though the server offers TLS: if the account REQUIREs SSL \
         or X509, set backend_tls)"
    } else { "" })]
    Login {
        address: String,
        source: ConnectError,
        /// Refused as a wrong login on a plain connection to a server that offers TLS.
        plain_offered_tls: bool,
    },
    #[error(
        "{address} does not offer TLS, which backend_tls.mode = \"{mode}\" requires (set ssl_cert and ssl_key on the server)"
    )]
    TlsUnavailable { address: String, mode: &'static str },
    #[error("TLS with {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("backend connection failed: {0}")]
    Io(#[from] FrameError),
    #[error("backend sent a malformed response: {0}")]
    Protocol(#[from] crate::protocol::response::ResponseError),
}

/// A result as `BackendConn::query_rows` reads it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TextRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// The length-encoded strings of a text row or column definition, in order (`None` for NULL,
/// 0xFB); stops at the first one cut short.
fn text_values(mut frame: &[u8]) -> impl Iterator<Item = Option<String>> + '_ {
    std::iter::from_fn(move || {
        if frame.first() == Some(&0xFB) {
            frame = &frame[1..];
            return Some(None);
        }
        let (len, k) = packets::read_lenenc_int(frame)?;
        let end = k.checked_add(usize::try_from(len).ok()?)?;
        let v = frame.get(k..end)?;
        frame = &frame[end..];
        Some(Some(String::from_utf8_lossy(v).into_owned()))
    })
}

/// An ERR packet a backend sent, kept whole so it can be passed on to the client as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerErr {
    pub payload: Vec<u8>,
}

/// What a connection's kept statements are known by: the SHA-256 of the COM_STMT_PREPARE
/// packet. Not the packet itself, which a connection would hold for as long as it lives, long
/// after the sessions that prepared it (256 statements of 4 MiB kept a gigabyte per
/// connection); nor a short hash, whose collision would run another statement.
pub type StatementKey = [u8; 32];

/// The key of the statement `packet` (a COM_STMT_PREPARE) prepares.
pub fn statement_key(packet: &[u8]) -> StatementKey {
    use sha2::Digest;
    sha2::Sha256::digest(packet).into()
}

/// Whether the server closes the connection (or stops reading it) after sending this error:
/// a network error of its own (ER_NET_*, 1152 to 1161: a packet over its `max_allowed_packet`
/// (1153), or out of order (1156), as a client's LOAD DATA LOCAL file may be), the connection killed
/// (ER_CONNECTION_KILLED, 1927; MySQL's ER_SESSION_WAS_KILLED, 3169), the server shutting
/// down (ER_SERVER_SHUTDOWN, 1053) or going offline (MySQL's ER_SERVER_OFFLINE_MODE, 3032),
/// or MySQL's idle timeout (ER_CLIENT_INTERACTION_TIMEOUT, 4031).
/// (MariaDB numbers other errors 3032, 3169 and 4031: a missing trigger is 4031 there.)
pub fn closes_connection(code: u16, flavor: crate::monitor::replication::Flavor) -> bool {
    matches!(code, 1053 | 1152..=1161 | 1927)
        || flavor == crate::monitor::replication::Flavor::MySql
            && matches!(code, 3032 | 3169 | 4031)
}

/// Statements a connection keeps prepared for reuse unless its pool says otherwise.
pub const STATEMENT_CAP: usize = 256;

impl ServerErr {
    pub fn code(&self) -> u16 {
        packets::parse_err(&self.payload).map_or(0, |e| e.code)
    }
}

pub struct BackendConn {
    pub reader: BufReader<ReadHalf>,
    pub writer: BufWriter<WriteHalf>,
    pub identity: ServerIdentity,
    pub connection_id: u32,
    /// The server this connection reached: its IP and port over TCP (a host name may resolve
    /// to another server next time: a DNS name that spreads, a failover), the socket path
    /// otherwise. A KILL of its thread must go there.
    pub reached: std::sync::Arc<str>,
    /// The collation it logged in with (its pool's: the client's handshake collation).
    pub collation: u8,
    pub capabilities: C,
    /// When its pool retires it (`pool.max_lifetime` after the pool began to open it); `None`
    /// outside a pool or when that is past what the clock can count.
    pub retire_at: Option<Instant>,
    /// Set when the connection failed or was left mid-response: never reuse it.
    pub broken: bool,
    /// An `XA` statement ran here: closed rather than pooled (`SessionEffect::Xa`).
    pub xa: bool,
    /// Schema currently selected on this connection.
    pub schema: Option<String>,
    /// Whether multi-statements are currently enabled on this connection.
    pub multi_statements: bool,
    /// The session-state log (replayed `SET`s) this connection carries, as the chained hash
    /// after each entry: `[0]` for none (fresh or just reset), empty for a log it no longer
    /// carries whole (the next sync resets it). A session whose log hashes the same at that
    /// length uses the connection by replaying only the rest (see `session::state::sync`).
    pub log: Vec<u64>,
    /// What `LAST_INSERT_ID()` returns on this connection (from the OK packets it sent).
    pub last_insert_id: u64,
    /// Statements prepared on this connection, by their COM_STMT_PREPARE packet's
    /// [`statement_key`], with the `context` they were prepared in: any session that runs the
    /// same statement here in the same context reuses the server's statement id. (A statement
    /// finds its tables in the schema it was prepared in, and was parsed in that `sql_mode`: in
    /// another context it is prepared again.) Cleared by a reset.
    pub statements: std::collections::HashMap<StatementKey, (u64, u32)>,
    /// Its backend's limit on open connections and that limit's size, when pooled: how many
    /// `statements` it keeps depends on how many connections are open (`statement_cap`).
    pub open_limit: Option<(std::sync::Arc<tokio::sync::Semaphore>, usize)>,
    /// Changes whenever a statement leaves `statements` (`statements_dropped`): a session that
    /// remembers a server statement id it found here (`Statement::on`) trusts it only while
    /// `statements_version` is what it was.
    statements_epoch: u32,
    /// Unique to this connection in the process (connection ids are per server and reused).
    serial: u64,
    /// Server status flags from the last OK/EOF this connection sent.
    pub status: u16,
    /// A warning or an error may be in its diagnostics area (`SHOW WARNINGS`, `GET
    /// DIAGNOSTICS`, `@@warning_count`): set by every response that raised one; cleared by a
    /// reset, by a clean read of a table, or by the statement a session runs to clear them
    /// before any statement of its own runs here (`Session::checkout_as`), since the messages
    /// can quote another session's data.
    pub diagnostics: bool,
    /// A reusable buffer for whole packets (internal responses, OK packets being rewritten).
    pub scratch: Vec<u8>,
}

impl BackendConn {
    /// Whether the server closed this idle connection (it restarted, `wait_timeout`, a KILL)
    /// or sent something unasked (MySQL 8 sends an error before it closes an inactive one):
    /// lent, it would fail the next statement. Costs no system call while the socket is quiet.
    pub fn dead_while_idle(&mut self) -> bool {
        !self.reader.buffer().is_empty() || self.reader.get_mut().hung_up_or_spoke()
    }
}

/// What restores a connection's login collation after COM_RESET_CONNECTION: `SET NAMES` on
/// MySQL, whose reset goes back to the server's default character set; nothing on MariaDB,
/// whose reset keeps the login's (nor for a collation id unknown here).
pub fn names_after_reset(
    flavor: crate::monitor::replication::Flavor,
    collation: u8,
) -> Option<String> {
    use mysql_common::collations::{Collation, CollationId};
    if flavor == crate::monitor::replication::Flavor::MariaDb {
        return None;
    }
    let c = Collation::resolve(CollationId::from(u16::from(collation)));
    (c.id() != CollationId::UNKNOWN_COLLATION_ID)
        .then(|| format!("SET NAMES {} COLLATE {}", c.charset(), c.collation()))
}

/// What the server sets at login for a client's flags and its reset undoes (it goes back to
/// the global values, on MariaDB and MySQL alike), put back in one statement: `IGNORE_SPACE`
/// in `sql_mode` for CLIENT_IGNORE_SPACE (node mysql2 and Connector/J ask for it), and
/// `wait_timeout` from `interactive_timeout` for CLIENT_INTERACTIVE. Without it, a session
/// given a connection after a reset ran without them: `COUNT (*)` failed with 1064.
pub fn login_flags_after_reset(caps: C) -> Option<&'static str> {
    let space = caps.contains(C::CLIENT_IGNORE_SPACE);
    let interactive = caps.contains(C::CLIENT_INTERACTIVE);
    match (space, interactive) {
        (false, false) => None,
        (true, false) => Some(IGNORE_SPACE_AGAIN),
        (false, true) => Some(INTERACTIVE_AGAIN),
        (true, true) => Some(BOTH_AGAIN),
    }
}

/// The assignments of `login_flags_after_reset` (macros, so the combined statement is one
/// literal too).
macro_rules! ignore_space_again {
    () => {
        "SESSION sql_mode = CONCAT_WS(',', NULLIF(@@session.sql_mode, ''), 'IGNORE_SPACE')"
    };
}
macro_rules! interactive_again {
    () => {
        "SESSION wait_timeout = @@session.interactive_timeout"
    };
}
const IGNORE_SPACE_AGAIN: &str = concat!("SET ", ignore_space_again!());
const INTERACTIVE_AGAIN: &str = concat!("SET ", interactive_again!());
const BOTH_AGAIN: &str = concat!("SET ", ignore_space_again!(), ", ", interactive_again!());

/// One statement of `BackendConn::login_settings_after_reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// MySQL's reset sets the character set to the server's default (MariaDB's keeps the
    /// login's): the pool's collation again, or this connection would read and answer the next
    /// session's text in another charset.
    Names(String),
    LoginFlags(&'static str),
}

impl Restore {
    pub fn sql(&self) -> &str {
        match self {
            Restore::Names(s) => s,
            Restore::LoginFlags(s) => s,
        }
    }

    /// After the server's answer (`error`, if it refused): whether the connection may still be
    /// used. A collation this server does not know by name leaves the server's default, as it
    /// was before rwsplit sent this; login flags not restored would change how the next
    /// session's statements parse, so that connection is not used again.
    pub fn usable_after(&self, error: Option<&ServerErr>) -> bool {
        let Some(e) = error else {
            return true;
        };
        let (code, sql) = (e.code(), self.sql());
        match self {
            Restore::Names(_) => {
                tracing::debug!(code, sql, "the server refused SET NAMES after a reset");
                true
            }
            Restore::LoginFlags(_) => {
                tracing::warn!(
                    code,
                    sql,
                    "the server refused to restore a login setting after a reset; the connection is closed"
                );
                false
            }
        }
    }
}

/// The name a server's certificate is checked against (`verify_identity`): the host of its
/// address, a DNS name or an IP address (IPv6 without its brackets); `localhost` for a socket,
/// as the MySQL client checks.
fn server_name(address: &str) -> Result<rustls_pki_types::ServerName<'static>, std::io::Error> {
    let host = match Endpoint::of(address) {
        Endpoint::Unix(_) => "localhost",
        Endpoint::Tcp(a) => crate::net::host_port(a).map_or(a, |(h, _)| h),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("\"{host}\" is neither a DNS name nor an IP address"),
        )
    })
}

/// The login on a new connection: the greeting, then TLS as `tls` says (over a socket too: an
/// account that REQUIREs SSL needs it there as well), then the authentication.
async fn login(
    stream: Stream,
    address: &str,
    creds: &Credentials<'_>,
    tls: &BackendTls,
    tls_name: &str,
) -> Result<(ReadHalf, WriteHalf, connect::Session), BackendError> {
    let login_failed = |source, plain_offered_tls| BackendError::Login {
        address: address.to_string(),
        source,
        plain_offered_tls,
    };
    // What caching_sha2_password's full authentication may send the password in clear over.
    let secure = stream.is_secure();
    let (r, w) = stream.into_split();
    let mut plain = crate::net::Plain {
        prefix: Vec::new(),
        r,
        w,
    };
    let greeting = connect::read_greeting(&mut plain)
        .await
        .map_err(|e| login_failed(e, false))?;
    match tls.connector() {
        Some(c) if greeting.offers_tls() => {
            let tls_failed = |source| BackendError::Tls {
                address: address.to_string(),
                source,
            };
            let request = connect::ssl_request(creds, &greeting);
            frame::write_packet(&mut plain, greeting.seq.wrapping_add(1), &request).await?;
            plain.flush().await.map_err(tls_failed)?;
            let name = server_name(tls_name).map_err(tls_failed)?;
            let stream = c.connect(name, plain).await.map_err(tls_failed)?;
            let (mut r, mut w) = tokio::io::split(tokio_rustls::TlsStream::Client(stream));
            let mut both = tokio::io::join(&mut r, &mut w);
            let session = connect::authenticate(&mut both, creds, greeting, true, secure)
                .await
                .map_err(|e| login_failed(e, false))?;
            Ok((ReadHalf::Tls(r), WriteHalf::Tls(w), session))
        }
        Some(_) if tls.mode != BackendTlsMode::Preferred => Err(BackendError::TlsUnavailable {
            address: address.to_string(),
            mode: tls.mode.name(),
        }),
        _ => {
            let offered = greeting.offers_tls();
            let session = connect::authenticate(&mut plain, creds, greeting, false, secure)
                .await
                .map_err(|e| {
                    // ER_ACCESS_DENIED_ERROR: what an account that requires TLS gets.
                    let hint = offered && e.server_error().is_some_and(|e| e.0 == 1045);
                    login_failed(e, hint)
                })?;
            Ok((plain.r, plain.w, session))
        }
    }
}

fn next_serial() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl BackendConn {
    /// Opens a connection to the server at `address` and logs in, upgrading to TLS after the
    /// greeting as `tls` says; `tls_name` is the configured address, whose host the server's
    /// certificate must name (`address` may be what a name resolved to).
    pub async fn connect(
        address: &str,
        creds: &Credentials<'_>,
        timeout: Duration,
        tls: &BackendTls,
        tls_name: &str,
    ) -> Result<BackendConn, BackendError> {
        let fut = async {
            let stream = Stream::connect(Endpoint::of(address))
                .await
                .map_err(|source| BackendError::Connect {
                    address: address.to_string(),
                    source,
                })?;
            let reached: std::sync::Arc<str> = match &stream {
                crate::net::Stream::Tcp(s) => s
                    .peer_addr()
                    .map_or_else(|_| address.into(), |a| a.to_string().into()),
                _ => address.into(),
            };
            let (r, w, session) = login(stream, address, creds, tls, tls_name).await?;
            Ok::<_, BackendError>((r, w, session, reached))
        };
        let (r, w, session, reached) =
            tokio::time::timeout(timeout, fut).await.map_err(|_| {
                BackendError::ConnectTimeout {
                    address: address.to_string(),
                    after: timeout,
                }
            })??;
        Ok(BackendConn {
            reader: BufReader::with_capacity(BUF_SIZE, r),
            writer: BufWriter::with_capacity(BUF_SIZE, w),
            identity: session.identity,
            connection_id: session.connection_id,
            reached,
            collation: creds.collation,
            multi_statements: session.capabilities.contains(C::CLIENT_MULTI_STATEMENTS),
            capabilities: session.capabilities,
            retire_at: None,
            broken: false,
            schema: creds.database.map(str::to_string),
            log: vec![0],
            last_insert_id: 0,
            statements: std::collections::HashMap::new(),
            open_limit: None,
            statements_epoch: 0,
            serial: next_serial(),
            status: session.status,
            diagnostics: false,
            xa: false,
            scratch: Vec::new(),
        })
    }

    /// The schema and the session-state log this connection carries now, as one hash: what a
    /// statement prepared here depends on (FNV-1a over the schema, from the log's last hash).
    pub fn context(&self) -> u64 {
        self.context_in(self.schema.as_deref())
    }

    /// [`Self::context`] with `schema` in place of the connection's own: the context of a
    /// statement prepared here while `schema` was selected for it.
    pub fn context_in(&self, schema: Option<&str>) -> u64 {
        // A log no longer carried whole matches nothing until the next sync.
        let Some(&log) = self.log.last() else {
            return u64::MAX;
        };
        let schema = schema.unwrap_or("\0").as_bytes();
        schema.iter().fold(log ^ 0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// Names this connection's set of prepared statements: a server statement id found here
    /// stays valid while this is unchanged (`Statement::on`).
    pub fn statements_version(&self) -> (u64, u32) {
        (self.serial, self.statements_epoch)
    }

    /// A statement left `statements` (closed, replaced, or all of them by a reset): ids
    /// remembered with the old version are no longer trusted.
    pub fn statements_dropped(&mut self) {
        self.statements_epoch = self.statements_epoch.wrapping_add(1);
    }

    /// How many statements this connection keeps prepared for reuse: its share of
    /// `pool::SERVER_STATEMENTS` among the connections open to its backend now.
    pub fn statement_cap(&self) -> usize {
        let open = self.open_limit.as_ref().map_or(1, |(limit, max)| {
            max.saturating_sub(limit.available_permits())
        });
        crate::pool::statement_cap(open)
    }

    /// The server family this connection reached (from its greeting's version).
    pub fn flavor(&self) -> crate::monitor::replication::Flavor {
        crate::monitor::replication::Flavor::of(&self.identity.version)
    }

    /// The server's last status on this connection says a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.status & packets::SERVER_STATUS_IN_TRANS != 0
    }

    pub fn deprecate_eof(&self) -> bool {
        self.capabilities.contains(C::CLIENT_DEPRECATE_EOF)
    }

    /// Sends one command packet (sequence id 0) and flushes.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        let r = async {
            frame::write_packet(&mut self.writer, 0, payload).await?;
            self.writer.flush().await?;
            Ok::<_, FrameError>(())
        }
        .await;
        if r.is_err() {
            self.broken = true;
        }
        Ok(r?)
    }

    /// Writes one command packet without flushing: commands queued together go out in one
    /// write, and their responses are read in order with `read_internal` (pipelining).
    pub async fn queue_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        let r = frame::write_packet(&mut self.writer, 0, payload).await;
        if r.is_err() {
            self.broken = true;
        }
        r.map(|_| ()).map_err(BackendError::from)
    }

    /// Sends the queued commands.
    pub async fn flush_commands(&mut self) -> Result<(), BackendError> {
        let r = self.writer.flush().await;
        if r.is_err() {
            self.broken = true;
        }
        r.map_err(|e| BackendError::from(FrameError::from(e)))
    }

    /// Runs a command whose response rwsplit consumes itself (state sync, resets, pings).
    /// Returns the outcome, or the server's ERR packet.
    pub async fn run_internal(
        &mut self,
        payload: &[u8],
        kind: ResponseKind,
    ) -> Result<Result<Outcome, ServerErr>, BackendError> {
        self.send_command(payload).await?;
        self.read_internal(kind).await
    }

    /// Reads the response to a command rwsplit sent for itself.
    pub async fn read_internal(
        &mut self,
        kind: ResponseKind,
    ) -> Result<Result<Outcome, ServerErr>, BackendError> {
        let mut last_err = None;
        let o = self
            .read_response(kind, |_, frame| {
                if frame.first() == Some(&0xFF) && frame.len() < 0xFF_FFFF {
                    last_err = Some(ServerErr {
                        payload: frame.to_vec(),
                    });
                }
            })
            .await?;
        Ok(match (o.error, last_err) {
            (Some(_), Some(e)) => Err(e),
            _ => Ok(o),
        })
    }

    /// Runs a query rwsplit itself needs an answer from and returns the first column of its
    /// first row (`None` for no row or NULL), or the server's ERR packet.
    pub async fn query_scalar(
        &mut self,
        sql: &str,
    ) -> Result<Result<Option<String>, ServerErr>, BackendError> {
        let first = |r: TextRows| r.rows.into_iter().next()?.into_iter().next()?;
        Ok(self.query_rows(sql).await?.map(first))
    }

    /// Runs a query rwsplit itself reads whole (the monitor's): its column names and its rows,
    /// every value as text (`None` for NULL), or the server's ERR packet. For small results:
    /// everything is kept.
    pub async fn query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Result<TextRows, ServerErr>, BackendError> {
        self.send_command(&Command::Query.packet(sql.as_bytes()))
            .await?;
        let eof = u64::from(!self.deprecate_eof());
        let mut count = 0u64;
        let mut result = TextRows::default();
        let mut err = None;
        self.read_response(ResponseKind::Query, |n, frame| {
            let first = frame.first().copied();
            if first == Some(0xFF) && frame.len() < 0xFF_FFFF {
                err = Some(ServerErr {
                    payload: frame.to_vec(),
                });
            } else if n == 0 {
                count = packets::read_lenenc_int(frame).map_or(0, |(c, _)| c);
            } else if n <= count {
                // ColumnDefinition41: catalog, schema, table, org_table, then the name.
                let name = text_values(frame).nth(4).flatten().unwrap_or_default();
                result.columns.push(name);
            } else if n > count.saturating_add(eof)
                // EOF, or the OK that ends rows under CLIENT_DEPRECATE_EOF (a row starting
                // 0xFE holds a value of 16 MiB or more: a frame of that size).
                && !(first == Some(0xFE) && frame.len() < 0xFF_FFFF)
            {
                result.rows.push(text_values(frame).collect());
            }
        })
        .await?;
        Ok(match err {
            Some(e) => Err(e),
            None => Ok(result),
        })
    }

    /// Reads a whole response rwsplit consumes itself, showing each frame (its number and
    /// payload) to `seen`. Keeps the status; a failure marks the connection broken.
    async fn read_response(
        &mut self,
        kind: ResponseKind,
        mut seen: impl FnMut(u64, &[u8]),
    ) -> Result<Outcome, BackendError> {
        let mut tracker = ResponseTracker::new(kind, self.deprecate_eof());
        let mut frame_no = 0u64;
        let r = async {
            loop {
                let h = frame::read_header(&mut self.reader).await?;
                self.scratch.resize(h.len, 0);
                tokio::io::AsyncReadExt::read_exact(&mut self.reader, &mut self.scratch)
                    .await
                    .map_err(FrameError::from)?;
                seen(frame_no, &self.scratch);
                frame_no += 1;
                let peek = &self.scratch[..h.len.min(PEEK_LEN)];
                match tracker.on_frame(h.len, peek)? {
                    Step::More => {}
                    // rwsplit never sends LOAD DATA itself; answer with an empty file.
                    Step::LocalInfile => {
                        frame::write_packet(&mut self.writer, h.seq.wrapping_add(1), &[]).await?;
                        self.writer.flush().await.map_err(FrameError::from)?;
                        tracker.local_infile_sent();
                    }
                    Step::Done => return Ok::<_, BackendError>(tracker.outcome()),
                }
            }
        }
        .await;
        match r {
            Ok(o) => {
                self.after_response(kind, &o);
                Ok(o)
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// What a whole response (`kind`, forwarded or read by rwsplit) leaves on this connection:
    /// its status, whether its diagnostics area may hold something, and whether the server
    /// closes it after the error it sent (`closes_connection`).
    pub fn after_response(&mut self, kind: ResponseKind, o: &Outcome) {
        if o.error.is_none() && kind.reports_status() {
            self.status = o.status;
        }
        self.diagnostics |= o.diagnostics;
        // (The server family is read only for an error: not per statement.)
        if o.error.is_some_and(|e| closes_connection(e, self.flavor())) {
            self.broken = true;
        }
    }

    /// COM_INIT_DB.
    pub async fn init_db(&mut self, db: &str) -> Result<Result<(), ServerErr>, BackendError> {
        let p = Command::InitDb.packet(db.as_bytes());
        let r = self.run_internal(&p, ResponseKind::Single).await?;
        if r.is_ok() {
            self.schema = Some(db.to_string());
        }
        Ok(r.map(|_| ()))
    }

    /// COM_RESET_CONNECTION: rolls back, drops temporary tables, user variables, prepared
    /// statements and session variables, so the next session starts clean. The session
    /// tracking rwsplit asks for is set up again.
    ///
    /// A transaction left open is first rolled back: the server refuses that (1399) for an XA
    /// transaction, which no reset ends and which refuses every later session's writes on the
    /// connection (1031); one started where rwsplit cannot see it (in a procedure's body) is
    /// found this way, and the reset fails (the connection is not used again).
    pub async fn reset(&mut self) -> Result<bool, BackendError> {
        if self.in_transaction() && !self.rollback().await? {
            self.broken = true;
            return Ok(false);
        }
        let r = self
            .run_internal(&[Command::ResetConnection as u8], ResponseKind::Single)
            .await?;
        self.after_reset();
        if r.is_err() {
            return Ok(false);
        }
        for restore in self.login_settings_after_reset() {
            let p = Command::Query.packet(restore.sql().as_bytes());
            let r = self.run_internal(&p, ResponseKind::Query).await?;
            if !restore.usable_after(r.as_ref().err()) {
                return Ok(false);
            }
        }
        self.track_session().await?;
        Ok(true)
    }

    /// The statements that give this connection back, after a COM_RESET_CONNECTION, what its
    /// login set and the reset undid (`names_after_reset`, `login_flags_after_reset`). Run in
    /// order after the reset, here and in a session's state sync.
    pub fn login_settings_after_reset(&self) -> impl Iterator<Item = Restore> + use<> {
        let flavor = crate::monitor::replication::Flavor::of(&self.identity.version);
        names_after_reset(flavor, self.collation)
            .map(Restore::Names)
            .into_iter()
            .chain(login_flags_after_reset(self.capabilities).map(Restore::LoginFlags))
    }

    /// The statements that turn session tracking on here, best first; `None` when the
    /// connection did not negotiate it.
    pub fn tracking_statements(&self) -> Option<[&'static str; 2]> {
        if !self.capabilities.contains(C::CLIENT_SESSION_TRACK) {
            return None;
        }
        let flavor = crate::monitor::replication::Flavor::of(&self.identity.version);
        Some(crate::session::consistency::tracking_statements(flavor))
    }

    /// What a COM_RESET_CONNECTION cleared (the schema stays).
    pub fn after_reset(&mut self) {
        self.log.clear();
        self.log.push(0);
        self.last_insert_id = 0;
        self.statements.clear();
        self.statements_dropped();
        self.status = packets::SERVER_STATUS_AUTOCOMMIT;
        self.diagnostics = false;
    }

    /// Asks the server to report, in its OK packets, changed system variables, other session
    /// state changes and each commit's GTID (see `consistency::tracking_statements`). A server
    /// that refuses all of it only costs the GTID fallback query later, and tracked variables
    /// are then carried only when set by `SET`.
    pub async fn track_session(&mut self) -> Result<(), BackendError> {
        let Some(statements) = self.tracking_statements() else {
            return Ok(());
        };
        for sql in statements {
            let p = Command::Query.packet(sql.as_bytes());
            match self.run_internal(&p, ResponseKind::Query).await? {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::debug!(code = e.code(), sql, "the server refused session tracking")
                }
            }
        }
        Ok(())
    }

    /// ROLLBACK; false when the server refuses it.
    pub async fn rollback(&mut self) -> Result<bool, BackendError> {
        let p = Command::Query.packet(b"ROLLBACK");
        let r = self.run_internal(&p, ResponseKind::Query).await?;
        Ok(r.is_ok())
    }

    pub async fn ping(&mut self) -> Result<bool, BackendError> {
        let r = self
            .run_internal(&[Command::Ping as u8], ResponseKind::Single)
            .await?;
        Ok(r.is_ok())
    }

    /// Writes a frame header; used by the forwarding code.
    pub fn header(len: usize, seq: u8) -> [u8; 4] {
        FrameHeader { len, seq }.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::{closes_connection, names_after_reset};
    use crate::monitor::replication::Flavor;

    #[test]
    fn errors_that_close_the_connection_are_told_by_server_family() {
        for (code, flavor, closes) in [
            (1153, Flavor::MariaDb, true),
            (1927, Flavor::MariaDb, true),
            (1053, Flavor::MySql, true),
            (4031, Flavor::MySql, true),
            (3169, Flavor::MySql, true),
            // MariaDB's 4031 is a missing trigger in CREATE TRIGGER ... FOLLOWS.
            (4031, Flavor::MariaDb, false),
            (3032, Flavor::MariaDb, false),
            (1064, Flavor::MySql, false),
        ] {
            assert_eq!(closes_connection(code, flavor), closes, "{code} {flavor:?}");
        }
    }

    #[test]
    fn a_mysql_reset_is_followed_by_the_login_collation_again() {
        assert_eq!(names_after_reset(Flavor::MariaDb, 45), None);
        assert_eq!(
            names_after_reset(Flavor::MySql, 45).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci")
        );
        assert_eq!(
            names_after_reset(Flavor::MySql, 8).as_deref(),
            Some("SET NAMES latin1 COLLATE latin1_swedish_ci")
        );
        assert_eq!(
            names_after_reset(Flavor::MySql, 255).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_0900_ai_ci")
        );
        assert_eq!(names_after_reset(Flavor::MySql, 0), None);
    }
}
