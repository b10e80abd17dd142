//! Where does a server response end? A state machine over the frames of one response, fed the
//! first bytes of each frame, that never decodes rows (DESIGN.md: rows are copied through).
//!
//! Shapes, per the protocol docs (dev.mysql.com `page_protocol_com_query_response`,
//! `page_protocol_com_stmt_prepare_response`, `page_protocol_binary_resultset`; MariaDB KB
//! "Result set packets", "COM_STMT_EXECUTE"):
//!
//! ```text
//! result    := OK | ERR | LOCAL_INFILE <file from client> (OK | ERR) | result_set
//! result_set:= column_count column_def{count} [EOF] row* (terminator | ERR)
//! prepare   := ERR | PREPARE_OK [param_def{n} [EOF]] [column_def{m} [EOF]]
//! ```
//!
//! `[EOF]` is absent under CLIENT_DEPRECATE_EOF, and the terminator is then an OK packet with
//! header 0xFE instead of an EOF packet. A result whose OK/terminator has
//! SERVER_MORE_RESULTS_EXISTS is followed by another result; an ERR always ends the response.
//!
//! Cursors (COM_STMT_EXECUTE with a cursor flag): both servers send the column count and
//! definitions, then call `send_eof` with SERVER_STATUS_CURSOR_EXISTS set (MariaDB
//! `sql/sql_cursor.cc` `Materialized_cursor::open`; MySQL `sql/sql_cursor.cc`, same name).
//! `send_eof` writes an EOF packet, or under CLIENT_DEPRECATE_EOF an OK packet with header 0xFE
//! (MySQL `Protocol_classic::send_eof`, MariaDB `Protocol::net_send_eof`). So in both servers and
//! both modes the response ends with a terminator that directly follows the metadata and
//! carries CURSOR_EXISTS.

/// Frames of exactly this payload length are followed by a continuation frame of the same packet.
pub const MAX_FRAME: usize = 0xFF_FFFF;

/// How many leading payload bytes of a frame the caller must pass (fewer if the frame is shorter).
/// Enough for every header the tracker reads: OK/EOF/ERR headers, column counts, the
/// COM_STMT_PREPARE OK. (An OK packet's session-track data may be longer; it is not needed here.)
pub const PEEK_LEN: usize = 64;

/// The command whose response is being read; it decides the response's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// COM_QUERY: OK, ERR, LOCAL INFILE request, or text result sets; multi-results follow
    /// while the terminator's status has SERVER_MORE_RESULTS_EXISTS.
    Query,
    /// COM_STMT_EXECUTE: OK, ERR or binary result sets (multi-results for CALL). With
    /// `cursor` (the execute asked for a cursor), a result whose metadata terminator carries
    /// SERVER_STATUS_CURSOR_EXISTS ends after the metadata: rows come by COM_STMT_FETCH.
    StmtExecute { cursor: bool },
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    StmtFetch,
    /// COM_STMT_PREPARE: ERR, or PREPARE_OK then param defs [EOF] then column defs [EOF].
    StmtPrepare,
    /// COM_FIELD_LIST: column defs then a terminator, or ERR.
    FieldList,
    /// Exactly one packet (OK, ERR or EOF): COM_PING, COM_INIT_DB, COM_STMT_RESET,
    /// COM_RESET_CONNECTION, COM_SET_OPTION, COM_REFRESH ...
    Single,
    /// COM_STATISTICS: one packet of text (no header byte).
    Statistics,
}

impl ResponseKind {
    /// Whether the response ends in an OK/EOF that carries server status flags. A prepare and
    /// COM_STATISTICS carry none, so their `Outcome::status` must not replace a known status.
    pub fn reports_status(self) -> bool {
        !matches!(self, ResponseKind::StmtPrepare | ResponseKind::Statistics)
    }
}

/// What the caller must do after a frame. It carries no data, so the per-frame result stays a
/// few bytes: the finished response's facts are taken once with [`ResponseTracker::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward it; more frames of this response follow.
    More,
    /// Forward it; the server asked for a local file (0xFB). The client now sends the file as
    /// packets ending with an empty one; forward those to the server, call
    /// [`ResponseTracker::local_infile_sent`], then keep reading the response.
    LocalInfile,
    /// Forward it; the response is complete: [`ResponseTracker::outcome`] has its facts.
    Done,
}

/// The facts of a finished response that the session needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Server status flags of the last OK/EOF (0 if the response ended in ERR).
    pub status: u16,
    /// Error code if the (last) result was an ERR packet.
    pub error: Option<u16>,
    pub warnings: u16,
    /// From the final OK packet, when the response ended in a plain OK.
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// For COM_STMT_PREPARE: the PREPARE_OK.
    pub prepared: Option<PreparedInfo>,
    /// Number of result sets that carried rows/columns.
    pub result_sets: u32,
    /// The GTID the final OK reported through session tracking (filled in by the forwarder).
    pub gtid: Option<String>,
    /// System variables the response's OK packets reported changed, through session tracking
    /// (filled in by the forwarder).
    pub sysvars: Vec<(String, String)>,
    /// An OK packet of the response reported a session-state change.
    pub state_changed: bool,
    /// The schema an OK packet of the response reported selected (session tracking; filled
    /// in by the forwarder): `Some("")` for none.
    pub schema: Option<String>,
    /// Rows sent, over all result sets.
    pub rows: u64,
    /// Some result of the response raised a warning (or note) or an error: the connection's
    /// diagnostics area may hold them until a statement that opens a table.
    pub diagnostics: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedInfo {
    pub statement_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("malformed {what} packet from the server")]
    Malformed { what: &'static str },
    #[error("unexpected frame after the response ended")]
    AfterEnd,
}

use super::packets::{
    self, EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER, OK_HEADER, SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_CURSOR_EXISTS,
};

/// The most columns a result can carry: PREPARE_OK counts them in a u16. Anything above is a
/// desynchronised stream, not a result.
const MAX_COLUMNS: u64 = 0xFFFF;

/// An EOF packet is shorter than this; a text row starting with 0xFE is at least this long
/// (0xFE announces an 8-byte length).
const EOF_MAX_LEN: usize = 9;

/// Where in the response the next logical packet falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first packet of a result: OK, ERR, a column count, or (COM_QUERY) LOCAL INFILE.
    ResultStart,
    /// `left` more column (or parameter) definitions, then `after`.
    Defs {
        left: u64,
        after: AfterDefs,
    },
    /// The EOF closing a run of definitions (only without CLIENT_DEPRECATE_EOF).
    DefsEof {
        after: AfterDefs,
    },
    /// Rows until a terminator or ERR.
    Rows,
    /// COM_FIELD_LIST: column definitions until a terminator or ERR.
    FieldDefs,
    /// The server asked for a local file and the client has not finished sending it.
    AwaitingFile,
    /// The client's file is sent; the server answers OK or ERR.
    InfileResult,
    PrepareOk,
    SinglePacket,
    Statistics,
    Done,
}

/// What follows a run of definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterDefs {
    Rows,
    /// Parameter definitions of a PREPARE_OK ended; this many column definitions follow.
    PrepareColumns(u16),
    PrepareEnd,
}

/// Tracks one response.
#[derive(Debug)]
pub struct ResponseTracker {
    kind: ResponseKind,
    deprecate_eof: bool,
    state: State,
    /// The last frame was exactly MAX_FRAME long: the next one continues the same packet.
    continuing: bool,
    /// What to report once the current multi-frame packet has ended.
    pending: Step,
    /// Whether the current result set has sent a row (a cursor result never does).
    rows_seen: bool,
    /// The last frame was an OK packet (0x00, or the 0xFE-headed OK under DEPRECATE_EOF).
    ok_packet: bool,
    outcome: Outcome,
}

fn malformed(what: &'static str) -> ResponseError {
    ResponseError::Malformed { what }
}

impl ResponseTracker {
    /// `deprecate_eof`: whether CLIENT_DEPRECATE_EOF was negotiated on the connection (the proxy
    /// gives client and backend connection the same value, so frames pass through unchanged).
    pub fn new(kind: ResponseKind, deprecate_eof: bool) -> Self {
        let state = match kind {
            ResponseKind::Query | ResponseKind::StmtExecute { .. } => State::ResultStart,
            ResponseKind::StmtFetch => State::Rows,
            ResponseKind::StmtPrepare => State::PrepareOk,
            ResponseKind::FieldList => State::FieldDefs,
            ResponseKind::Single => State::SinglePacket,
            ResponseKind::Statistics => State::Statistics,
        };
        ResponseTracker {
            kind,
            deprecate_eof,
            state,
            continuing: false,
            pending: Step::More,
            rows_seen: false,
            ok_packet: false,
            outcome: Outcome::default(),
        }
    }

    /// Feed one frame: its payload length (from the 4-byte header) and its first
    /// `min(len, PEEK_LEN)` payload bytes.
    pub fn on_frame(&mut self, payload_len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        self.ok_packet = false;
        // Continuation frames carry no header: only the first frame of a packet is read, and
        // what that packet means is reported when its last frame has passed.
        if self.continuing {
            if payload_len == MAX_FRAME {
                return Ok(Step::More);
            }
            self.continuing = false;
            return Ok(self.pending);
        }
        let peek = peek.get(..payload_len.min(peek.len())).unwrap_or(peek);
        let step = match self.packet(payload_len, peek) {
            Ok(step) => step,
            Err(e) => {
                // The stream is out of step; nothing after this can be trusted.
                self.state = State::Done;
                return Err(e);
            }
        };
        if payload_len == MAX_FRAME {
            self.continuing = true;
            self.pending = step;
            return Ok(Step::More);
        }
        Ok(step)
    }

    /// Passes over the rows at the start of `buf` (wire bytes: whole frames with their
    /// headers) in a tight loop, counting them, and returns how many bytes they take: the
    /// per-frame [`Self::on_frame`] costs several times more, and rows are most of the frames
    /// a result brings. Stops, leaving it to `on_frame`, at anything else: a terminator, an
    /// ERR, a malformed or empty row, a row of more than one frame, a frame not whole in
    /// `buf`; and passes nothing outside a result's rows. The same as feeding each row to
    /// `on_frame`, which the tests check against it.
    #[inline]
    pub fn skip_rows(&mut self, buf: &[u8]) -> usize {
        if self.state != State::Rows || self.continuing {
            return 0;
        }
        self.pass_rows(buf)
    }

    fn pass_rows(&mut self, buf: &[u8]) -> usize {
        let binary = self.kind != ResponseKind::Query;
        let mut off = 0;
        let mut rows = 0;
        // What `row` takes for a plain row, without its special cases: a frame that is not
        // one of these goes to `on_frame`.
        while let Some(&[a, b, c, seq, first]) = buf.get(off..off + 5) {
            let len = super::frame::FrameHeader::decode([a, b, c, seq]).len;
            let row = if binary {
                first == OK_HEADER
            } else {
                first != ERR_HEADER && first != EOF_HEADER
            };
            if !row || len == 0 || len >= MAX_FRAME || buf.len() - off - 4 < len {
                break;
            }
            off += 4 + len;
            rows += 1;
        }
        if rows > 0 {
            self.rows_seen = true;
            self.ok_packet = false;
            self.outcome.rows += rows;
        }
        off
    }

    /// Whether the frame just fed was an OK packet: the only packets that carry session-state
    /// data, which the forwarder removes for clients that did not ask for it.
    pub fn ok_packet(&self) -> bool {
        self.ok_packet
    }

    /// The client's file (for a LOCAL INFILE request) has been forwarded in full.
    pub fn local_infile_sent(&mut self) {
        if self.state == State::AwaitingFile {
            self.state = State::InfileResult;
        }
    }

    /// The first frame of a logical packet.
    fn packet(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        match self.state {
            State::Done => Err(ResponseError::AfterEnd),
            State::ResultStart => self.result_start(len, peek),
            State::Defs { left, after } => self.definition(len, peek, left, after),
            State::DefsEof { after } => self.defs_eof(len, peek, after),
            State::Rows => self.row(len, peek),
            State::FieldDefs => self.field_def(len, peek),
            State::AwaitingFile => Err(malformed("LOCAL INFILE (server spoke before the file)")),
            State::InfileResult => match peek.first() {
                Some(&OK_HEADER) => self.on_ok(peek),
                Some(&ERR_HEADER) => self.on_err(peek),
                _ => Err(malformed("LOCAL INFILE result")),
            },
            State::PrepareOk => self.prepare_ok(peek),
            State::SinglePacket => self.single(len, peek),
            State::Statistics => Ok(self.finish()),
        }
    }

    fn result_start(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        match peek.first() {
            None => Err(malformed("result header")),
            Some(&OK_HEADER) => self.on_ok(peek),
            Some(&ERR_HEADER) => self.on_err(peek),
            // A prepared `LOAD DATA LOCAL` asks for its file too (MariaDB; MySQL refuses to
            // prepare it).
            Some(&LOCAL_INFILE_HEADER)
                if matches!(
                    self.kind,
                    ResponseKind::Query | ResponseKind::StmtExecute { cursor: false }
                ) =>
            {
                self.state = State::AwaitingFile;
                Ok(Step::LocalInfile)
            }
            Some(_) => {
                // The packet must be the count alone: a trailing byte would be the
                // "metadata follows" flag of MARIADB_CLIENT_CACHE_METADATA or MySQL's
                // CLIENT_OPTIONAL_RESULTSET_METADATA, whose shapes this tracker does not model.
                let (count, used) =
                    packets::read_lenenc_int(peek).ok_or(malformed("column count"))?;
                if count == 0 || count > MAX_COLUMNS || used != len {
                    return Err(malformed("column count"));
                }
                self.outcome.result_sets = self.outcome.result_sets.saturating_add(1);
                self.rows_seen = false;
                self.state = State::Defs {
                    left: count,
                    after: AfterDefs::Rows,
                };
                Ok(Step::More)
            }
        }
    }

    fn definition(
        &mut self,
        len: usize,
        peek: &[u8],
        left: u64,
        after: AfterDefs,
    ) -> Result<Step, ResponseError> {
        match peek.first() {
            Some(&ERR_HEADER) => self.on_err(peek),
            // A definition starts with its catalog ("def"); a short 0xFE packet here means the
            // server sent fewer definitions than it announced.
            Some(&EOF_HEADER) if len < MAX_FRAME => Err(malformed("column definition")),
            None => Err(malformed("column definition")),
            Some(_) if left > 1 => {
                self.state = State::Defs {
                    left: left - 1,
                    after,
                };
                Ok(Step::More)
            }
            Some(_) if self.deprecate_eof => Ok(self.enter(after)),
            Some(_) => {
                self.state = State::DefsEof { after };
                Ok(Step::More)
            }
        }
    }

    fn defs_eof(
        &mut self,
        len: usize,
        peek: &[u8],
        after: AfterDefs,
    ) -> Result<Step, ResponseError> {
        if peek.first() == Some(&ERR_HEADER) {
            return self.on_err(peek);
        }
        if len >= EOF_MAX_LEN {
            return Err(malformed("EOF"));
        }
        let (warnings, status) = packets::parse_eof(peek).ok_or(malformed("EOF"))?;
        self.outcome.status = status;
        if after == AfterDefs::Rows {
            self.note_warnings(warnings);
            if self.cursor_opened(status) {
                return Ok(self.finish());
            }
        }
        Ok(self.enter(after))
    }

    fn enter(&mut self, after: AfterDefs) -> Step {
        match after {
            AfterDefs::Rows => {
                self.state = State::Rows;
                Step::More
            }
            AfterDefs::PrepareColumns(n) if n > 0 => {
                self.state = State::Defs {
                    left: u64::from(n),
                    after: AfterDefs::PrepareEnd,
                };
                Step::More
            }
            AfterDefs::PrepareColumns(_) | AfterDefs::PrepareEnd => self.finish(),
        }
    }

    fn row(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        let binary = self.kind != ResponseKind::Query;
        match peek.first() {
            Some(&ERR_HEADER) => self.on_err(peek),
            // A text row may start with 0xFE only when its first value is at least 16 MiB
            // long, so its first frame is full; a shorter 0xFE packet is the terminator.
            Some(&EOF_HEADER) if len < MAX_FRAME => self.result_terminator(len, peek),
            Some(&OK_HEADER) if binary => self.row_seen(),
            Some(_) if binary => Err(malformed("binary row")),
            Some(_) => self.row_seen(),
            // Every column of a text row takes at least one byte.
            None => Err(malformed("row")),
        }
    }

    fn row_seen(&mut self) -> Result<Step, ResponseError> {
        self.rows_seen = true;
        self.outcome.rows += 1;
        Ok(Step::More)
    }

    /// The EOF, or 0xFE-headed OK, that ends the rows of a result set.
    fn result_terminator(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        let status = self.terminator(len, peek)?;
        if self.cursor_opened(status) {
            return Ok(self.finish());
        }
        if self.is_multi_result() && status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.state = State::ResultStart;
            return Ok(Step::More);
        }
        Ok(self.finish())
    }

    /// Reads a terminator into the outcome; returns its status flags.
    fn terminator(&mut self, len: usize, peek: &[u8]) -> Result<u16, ResponseError> {
        let (warnings, status) = if self.deprecate_eof {
            let ok = packets::parse_ok(peek).ok_or(malformed("OK (0xFE)"))?;
            self.ok_packet = true;
            (ok.warnings, ok.status)
        } else if len < EOF_MAX_LEN {
            packets::parse_eof(peek).ok_or(malformed("EOF"))?
        } else {
            return Err(malformed("EOF"));
        };
        self.outcome.status = status;
        self.note_warnings(warnings);
        self.outcome.affected_rows = 0;
        self.outcome.last_insert_id = 0;
        Ok(status)
    }

    /// A COM_STMT_EXECUTE that asked for a cursor got one: its rows come by COM_STMT_FETCH.
    /// Checked only before any row, and never in a multi-result: a stored procedure's own
    /// cursor can leak the flag into the ordinary results of its `CALL` (mariadb-connector-c
    /// commit d09ac51, CONC-424), the metadata's EOF included, and each of those says more
    /// results follow; a cursor's own response is one result set.
    fn cursor_opened(&self, status: u16) -> bool {
        self.kind == (ResponseKind::StmtExecute { cursor: true })
            && !self.rows_seen
            && status & SERVER_STATUS_CURSOR_EXISTS != 0
            && status & SERVER_MORE_RESULTS_EXISTS == 0
    }

    fn field_def(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        match peek.first() {
            Some(&ERR_HEADER) => self.on_err(peek),
            Some(&EOF_HEADER) if len < MAX_FRAME => {
                self.terminator(len, peek)?;
                Ok(self.finish())
            }
            Some(_) => Ok(Step::More),
            None => Err(malformed("column definition")),
        }
    }

    fn prepare_ok(&mut self, peek: &[u8]) -> Result<Step, ResponseError> {
        match peek.first() {
            Some(&ERR_HEADER) => return self.on_err(peek),
            Some(&OK_HEADER) => {}
            _ => return Err(malformed("PREPARE_OK")),
        }
        let u16_at = |at: usize| -> Option<u16> {
            let b = peek.get(at..at + 2)?;
            Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
        };
        let id = peek
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let (Some(statement_id), Some(num_columns), Some(num_params)) = (id, u16_at(5), u16_at(7))
        else {
            return Err(malformed("PREPARE_OK"));
        };
        // Byte 9 is a filler; the warning count after it is absent in very old servers' packets.
        self.note_warnings(u16_at(10).unwrap_or(0));
        self.outcome.prepared = Some(PreparedInfo {
            statement_id,
            num_columns,
            num_params,
        });
        if num_params > 0 {
            self.state = State::Defs {
                left: u64::from(num_params),
                after: AfterDefs::PrepareColumns(num_columns),
            };
            return Ok(Step::More);
        }
        Ok(self.enter(AfterDefs::PrepareColumns(num_columns)))
    }

    fn single(&mut self, len: usize, peek: &[u8]) -> Result<Step, ResponseError> {
        match peek.first() {
            Some(&OK_HEADER) => self.on_ok(peek),
            Some(&ERR_HEADER) => self.on_err(peek),
            // COM_SET_OPTION and COM_DEBUG answer with an EOF (0xFE OK under DEPRECATE_EOF).
            Some(&EOF_HEADER) => {
                self.terminator(len, peek)?;
                Ok(self.finish())
            }
            _ => Err(malformed("OK/ERR/EOF")),
        }
    }

    fn on_ok(&mut self, peek: &[u8]) -> Result<Step, ResponseError> {
        let ok = packets::parse_ok(peek).ok_or(malformed("OK"))?;
        self.ok_packet = true;
        self.outcome.status = ok.status;
        self.note_warnings(ok.warnings);
        self.outcome.affected_rows = ok.affected_rows;
        self.outcome.last_insert_id = ok.last_insert_id;
        if self.is_multi_result() && ok.status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.state = State::ResultStart;
            return Ok(Step::More);
        }
        Ok(self.finish())
    }

    /// An ERR ends the whole response, even in the middle of a multi-result.
    fn on_err(&mut self, peek: &[u8]) -> Result<Step, ResponseError> {
        let err = packets::parse_err(peek).ok_or(malformed("ERR"))?;
        self.outcome.error = Some(err.code);
        self.outcome.diagnostics = true;
        self.outcome.status = 0;
        self.outcome.warnings = 0;
        self.outcome.affected_rows = 0;
        self.outcome.last_insert_id = 0;
        Ok(self.finish())
    }

    /// The warning count of the result that ends here (the outcome keeps the last one's).
    fn note_warnings(&mut self, warnings: u16) {
        self.outcome.warnings = warnings;
        self.outcome.diagnostics |= warnings > 0;
    }

    fn is_multi_result(&self) -> bool {
        matches!(
            self.kind,
            ResponseKind::Query | ResponseKind::StmtExecute { .. }
        )
    }

    fn finish(&mut self) -> Step {
        self.state = State::Done;
        Step::Done
    }

    /// The facts of the response, once a frame returned [`Step::Done`] (taken: a second call
    /// returns the defaults).
    pub fn outcome(&mut self) -> Outcome {
        std::mem::take(&mut self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::packets::{
        SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS, SERVER_STATUS_LAST_ROW_SENT, eof_payload,
        err_payload, ok_payload,
    };
    use super::*;

    const AC: u16 = SERVER_STATUS_AUTOCOMMIT;
    const MORE: u16 = SERVER_MORE_RESULTS_EXISTS;
    const CURSOR: u16 = SERVER_STATUS_CURSOR_EXISTS;

    /// One frame as the caller sees it: the payload length and (up to) its whole payload.
    type Frame = (usize, Vec<u8>);

    fn small(packets: Vec<Vec<u8>>) -> Vec<Frame> {
        packets.into_iter().map(|p| (p.len(), p)).collect()
    }

    /// A packet of `total` bytes starting with `head`, split as the server splits it. The
    /// continuation frames' bytes are 0xFE/0xFF so reading them as headers would show.
    fn big(total: usize, head: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut left = total;
        let mut first = true;
        loop {
            let len = left.min(MAX_FRAME);
            let bytes = if first {
                head.to_vec()
            } else {
                vec![0xFE, 0xFF, 0xFE, 0xFF]
            };
            frames.push((len, bytes));
            first = false;
            left -= len;
            if len < MAX_FRAME {
                return frames;
            }
        }
    }

    fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    fn column_count(n: u8) -> Vec<u8> {
        vec![n]
    }

    /// A Protocol::ColumnDefinition41 for an INT column.
    fn column_def(name: &str) -> Vec<u8> {
        let mut p = Vec::new();
        for part in ["def", "test", "t", "t", name, name] {
            lenenc_str(&mut p, part.as_bytes());
        }
        p.extend_from_slice(&[
            0x0C, 0x3F, 0x00, 0x0B, 0, 0, 0, 0x03, 0x00, 0x00, 0x00, 0, 0,
        ]);
        p
    }

    fn text_row(values: &[&str]) -> Vec<u8> {
        let mut p = Vec::new();
        for v in values {
            lenenc_str(&mut p, v.as_bytes());
        }
        p
    }

    /// A binary row of one INT column: header, null bitmap, value.
    fn binary_row(v: u32) -> Vec<u8> {
        let mut p = vec![0x00, 0x00];
        p.extend_from_slice(&v.to_le_bytes());
        p
    }

    /// The 0xFE-headed OK that ends a result set under CLIENT_DEPRECATE_EOF.
    fn ok_terminator(status: u16, warnings: u16) -> Vec<u8> {
        let mut p = ok_payload(0, 0, status, warnings);
        p[0] = 0xFE;
        p
    }

    fn terminator(deprecate_eof: bool, status: u16) -> Vec<u8> {
        if deprecate_eof {
            ok_terminator(status, 0)
        } else {
            eof_payload(0, status)
        }
    }

    fn err(code: u16) -> Vec<u8> {
        err_payload(code, "42S02", "Table 'test.nope' doesn't exist")
    }

    /// Column count, definitions, [EOF], then the given rows and terminator status.
    fn result_set(
        deprecate_eof: bool,
        columns: u8,
        rows: Vec<Vec<u8>>,
        status: u16,
    ) -> Vec<Vec<u8>> {
        let mut p = vec![column_count(columns)];
        p.extend((0..columns).map(|i| column_def(&format!("c{i}"))));
        if !deprecate_eof {
            p.push(eof_payload(0, AC));
        }
        p.extend(rows);
        p.push(terminator(deprecate_eof, status));
        p
    }

    /// Feeds every frame; the response must end exactly at the last one. When every frame's
    /// bytes are whole, also feeds them as the forwarder does from a buffer (rows passed over by
    /// `skip_rows`, the rest by `on_frame`), which must come to the same steps at the same
    /// places, and the same outcome.
    fn run(
        kind: ResponseKind,
        deprecate_eof: bool,
        frames: &[Frame],
    ) -> Result<Outcome, ResponseError> {
        let r = run_frames(kind, deprecate_eof, frames);
        // (A whole frame of MAX_FRAME bytes would be encoded with an empty frame after it; the
        // cases give those by `big`, whose bytes are never whole.)
        if frames.iter().all(|(len, bytes)| *len == bytes.len()) {
            let bytes: Vec<Vec<u8>> = frames.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(
                events_from_buffer(kind, deprecate_eof, &bytes),
                events_by_frame(kind, deprecate_eof, &bytes),
                "{kind:?} from a buffer"
            );
        }
        r
    }

    fn run_frames(
        kind: ResponseKind,
        deprecate_eof: bool,
        frames: &[Frame],
    ) -> Result<Outcome, ResponseError> {
        let mut t = ResponseTracker::new(kind, deprecate_eof);
        for (i, (len, bytes)) in frames.iter().enumerate() {
            let last = i + 1 == frames.len();
            match t.on_frame(*len, &bytes[..bytes.len().min(PEEK_LEN)])? {
                Step::More => assert!(!last, "{kind:?}: response not done after the last frame"),
                Step::LocalInfile => {
                    assert!(!last, "{kind:?}: LOCAL INFILE request was the last frame");
                    t.local_infile_sent();
                }
                Step::Done => {
                    assert!(last, "{kind:?}: done at frame {i} of {}", frames.len());
                    let outcome = t.outcome();
                    assert_eq!(
                        t.on_frame(5, &eof_payload(0, 0)),
                        Err(ResponseError::AfterEnd)
                    );
                    return Ok(outcome);
                }
            }
        }
        panic!("{kind:?}: no frames");
    }

    fn both_modes(mut check: impl FnMut(bool)) {
        check(false);
        check(true);
    }

    const QUERY: ResponseKind = ResponseKind::Query;
    const EXECUTE: ResponseKind = ResponseKind::StmtExecute { cursor: false };
    const EXECUTE_CURSOR: ResponseKind = ResponseKind::StmtExecute { cursor: true };

    #[test]
    fn ok_ends_a_query_and_reports_its_counts() {
        both_modes(|d| {
            let o = run(
                QUERY,
                d,
                &small(vec![ok_payload(3, 42, AC | SERVER_STATUS_IN_TRANS, 1)]),
            );
            let o = o.expect("outcome");
            assert_eq!(o.status, AC | SERVER_STATUS_IN_TRANS);
            assert_eq!((o.affected_rows, o.last_insert_id, o.warnings), (3, 42, 1));
            assert_eq!((o.error, o.result_sets), (None, 0));
        });
    }

    #[test]
    fn err_ends_a_query_and_reports_its_code() {
        both_modes(|d| {
            let o = run(QUERY, d, &small(vec![err(1146)])).expect("outcome");
            assert_eq!((o.error, o.status), (Some(1146), 0));
        });
    }

    #[test]
    fn text_result_set_ends_at_its_terminator() {
        both_modes(|d| {
            let rows = vec![
                text_row(&["1", "a"]),
                text_row(&["2", ""]),
                vec![0xFB, 0x00],
            ];
            let o = run(QUERY, d, &small(result_set(d, 2, rows, AC))).expect("outcome");
            assert_eq!((o.status, o.result_sets, o.error), (AC, 1, None));
        });
    }

    #[test]
    fn result_set_with_zero_rows_ends_at_its_terminator() {
        both_modes(|d| {
            let o = run(QUERY, d, &small(result_set(d, 1, vec![], AC))).expect("outcome");
            assert_eq!(o.result_sets, 1);
        });
    }

    #[test]
    fn terminator_warnings_reach_the_outcome() {
        both_modes(|d| {
            let mut packets = result_set(d, 1, vec![text_row(&["x"])], AC);
            *packets.last_mut().expect("terminator") = if d {
                ok_terminator(AC, 7)
            } else {
                eof_payload(7, AC)
            };
            assert_eq!(run(QUERY, d, &small(packets)).expect("outcome").warnings, 7);
        });
    }

    /// `warnings` is the last result's; `diagnostics` says whether any result raised some (a
    /// multi-statement's first result may leave them for a later `SHOW WARNINGS`).
    #[test]
    fn any_results_warnings_or_error_mark_the_diagnostics() {
        both_modes(|d| {
            let clean = vec![ok_payload(1, 0, AC | MORE, 0), ok_payload(1, 0, AC, 0)];
            let o = run(QUERY, d, &small(clean)).expect("outcome");
            assert!(!o.diagnostics);
            let first = vec![ok_payload(1, 0, AC | MORE, 2), ok_payload(1, 0, AC, 0)];
            let o = run(QUERY, d, &small(first)).expect("outcome");
            assert_eq!((o.warnings, o.diagnostics), (0, true));
            let mut rows = result_set(d, 1, vec![text_row(&["x"])], AC | MORE);
            *rows.last_mut().expect("terminator") = if d {
                ok_terminator(AC | MORE, 1)
            } else {
                eof_payload(1, AC | MORE)
            };
            rows.push(ok_payload(0, 0, AC, 0));
            let o = run(QUERY, d, &small(rows)).expect("outcome");
            assert_eq!((o.warnings, o.diagnostics), (0, true));
            let o = run(QUERY, d, &small(vec![err(1366)])).expect("outcome");
            assert!(o.diagnostics);
        });
    }

    #[test]
    fn call_style_result_sets_end_at_the_final_ok() {
        both_modes(|d| {
            let mut text = result_set(d, 1, vec![text_row(&["1"])], AC | MORE);
            text.extend(result_set(d, 2, vec![], AC | MORE));
            text.push(ok_payload(0, 0, AC, 0));
            let o = run(QUERY, d, &small(text)).expect("outcome");
            assert_eq!((o.result_sets, o.status), (2, AC));

            let mut binary = result_set(d, 1, vec![binary_row(1), binary_row(2)], AC | MORE);
            binary.push(ok_payload(1, 0, AC, 0));
            let o = run(EXECUTE, d, &small(binary)).expect("outcome");
            assert_eq!((o.result_sets, o.affected_rows), (1, 1));
        });
    }

    #[test]
    fn multi_statement_of_oks_ends_at_the_ok_without_more_results() {
        both_modes(|d| {
            let packets = vec![ok_payload(1, 5, AC | MORE, 0), ok_payload(2, 6, AC, 0)];
            let o = run(QUERY, d, &small(packets)).expect("outcome");
            assert_eq!((o.affected_rows, o.last_insert_id), (2, 6));
        });
    }

    #[test]
    fn multi_statement_whose_second_statement_errors_ends_at_the_err() {
        both_modes(|d| {
            let mut packets = result_set(d, 1, vec![text_row(&["1"])], AC | MORE);
            packets.push(err(1064));
            let o = run(QUERY, d, &small(packets)).expect("outcome");
            assert_eq!((o.error, o.status, o.result_sets), (Some(1064), 0, 1));
        });
    }

    #[test]
    fn err_in_the_middle_of_rows_ends_the_response() {
        both_modes(|d| {
            let mut packets = result_set(d, 1, vec![text_row(&["1"])], AC);
            *packets.last_mut().expect("terminator") = err(1317);
            assert_eq!(
                run(QUERY, d, &small(packets)).expect("outcome").error,
                Some(1317)
            );
        });
    }

    #[test]
    fn local_infile_request_then_ok_ends_after_the_ok() {
        both_modes(|d| {
            let request = b"\xFB/tmp/data.csv".to_vec();
            let o = run(QUERY, d, &small(vec![request, ok_payload(10, 0, AC, 0)]));
            assert_eq!(o.expect("outcome").affected_rows, 10);
        });
    }

    #[test]
    fn local_infile_ok_with_more_results_continues_to_the_next_result() {
        both_modes(|d| {
            let mut packets = vec![b"\xFBdata.csv".to_vec(), ok_payload(10, 0, AC | MORE, 0)];
            packets.extend(result_set(d, 1, vec![text_row(&["10"])], AC));
            let o = run(QUERY, d, &small(packets)).expect("outcome");
            assert_eq!((o.result_sets, o.affected_rows), (1, 0));
        });
    }

    #[test]
    fn local_infile_rejected_by_the_server_ends_at_the_err() {
        let o = run(QUERY, false, &small(vec![b"\xFBf".to_vec(), err(1148)]));
        assert_eq!(o.expect("outcome").error, Some(1148));
    }

    #[test]
    fn frame_before_the_local_file_is_sent_is_malformed() {
        let mut t = ResponseTracker::new(QUERY, false);
        assert_eq!(t.on_frame(2, b"\xFBf"), Ok(Step::LocalInfile));
        let ok = ok_payload(0, 0, AC, 0);
        assert!(matches!(
            t.on_frame(ok.len(), &ok),
            Err(ResponseError::Malformed { .. })
        ));
    }

    /// A text query or a prepared statement's execute (MariaDB prepares `LOAD DATA LOCAL`) may
    /// ask for a file; a cursor's execute, a fetch or a prepare may not.
    #[test]
    fn local_infile_request_is_valid_for_a_query_or_an_execute() {
        for kind in [QUERY, EXECUTE] {
            let mut t = ResponseTracker::new(kind, false);
            assert_eq!(t.on_frame(2, b"\xFBf"), Ok(Step::LocalInfile), "{kind:?}");
        }
        for kind in [
            EXECUTE_CURSOR,
            ResponseKind::StmtFetch,
            ResponseKind::StmtPrepare,
        ] {
            let r = run(kind, false, &small(vec![b"\xFBf".to_vec()]));
            assert!(
                matches!(r, Err(ResponseError::Malformed { .. })),
                "{kind:?}"
            );
        }
    }

    fn prepare_ok(id: u32, columns: u16, params: u16, warnings: u16) -> Vec<u8> {
        let mut p = vec![0x00];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&columns.to_le_bytes());
        p.extend_from_slice(&params.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&warnings.to_le_bytes());
        p
    }

    fn prepare_response(d: bool, columns: u16, params: u16) -> Vec<Vec<u8>> {
        let mut p = vec![prepare_ok(7, columns, params, 0)];
        for (n, name) in [(params, "?"), (columns, "c")] {
            if n > 0 {
                p.extend((0..n).map(|_| column_def(name)));
                if !d {
                    p.push(eof_payload(0, AC));
                }
            }
        }
        p
    }

    #[test]
    fn prepare_reads_params_and_columns_and_reports_the_statement() {
        both_modes(|d| {
            for (columns, params) in [(2, 3), (0, 2), (3, 0), (0, 0)] {
                let o = run(
                    ResponseKind::StmtPrepare,
                    d,
                    &small(prepare_response(d, columns, params)),
                );
                let o = o.expect("outcome");
                let expected = PreparedInfo {
                    statement_id: 7,
                    num_columns: columns,
                    num_params: params,
                };
                assert_eq!(
                    o.prepared,
                    Some(expected),
                    "{columns} columns, {params} params"
                );
            }
        });
    }

    #[test]
    fn prepare_ok_without_warning_count_is_accepted() {
        let mut p = prepare_ok(1, 0, 0, 0);
        p.truncate(10);
        let o = run(ResponseKind::StmtPrepare, true, &small(vec![p])).expect("outcome");
        assert_eq!(o.prepared.map(|p| p.statement_id), Some(1));
    }

    #[test]
    fn prepare_err_ends_the_response() {
        let o = run(ResponseKind::StmtPrepare, false, &small(vec![err(1064)]));
        assert_eq!(o.expect("outcome").error, Some(1064));
    }

    #[test]
    fn cursor_execute_ends_after_the_metadata_terminator() {
        both_modes(|d| {
            let mut packets = vec![column_count(2), column_def("a"), column_def("b")];
            packets.push(terminator(d, AC | CURSOR));
            let o = run(EXECUTE_CURSOR, d, &small(packets)).expect("outcome");
            assert_eq!((o.status & CURSOR, o.result_sets), (CURSOR, 1));
        });
    }

    #[test]
    fn cursor_execute_that_opened_no_cursor_streams_its_rows() {
        both_modes(|d| {
            let packets = result_set(d, 1, vec![binary_row(1)], AC);
            assert!(run(EXECUTE_CURSOR, d, &small(packets)).is_ok());
        });
    }

    #[test]
    fn cursor_flag_leaked_after_rows_does_not_end_a_multi_result() {
        both_modes(|d| {
            let mut packets = result_set(d, 1, vec![binary_row(1)], AC | MORE | CURSOR);
            packets.push(ok_payload(0, 0, AC, 0));
            assert!(run(EXECUTE_CURSOR, d, &small(packets)).is_ok());
        });
    }

    #[test]
    fn cursor_flag_leaked_into_a_calls_metadata_does_not_end_the_multi_result() {
        // A procedure that used a cursor of its own: its CALL's results carry the flag from
        // the metadata's EOF on, each with more results to follow.
        let packets = vec![
            column_count(1),
            column_def("a"),
            eof_payload(0, AC | MORE | CURSOR),
            binary_row(1),
            eof_payload(0, AC | MORE | CURSOR),
            ok_payload(0, 0, AC, 0),
        ];
        assert!(run(EXECUTE_CURSOR, false, &small(packets)).is_ok());
    }

    #[test]
    fn execute_without_a_cursor_ignores_cursor_exists_in_the_metadata_eof() {
        let mut packets = vec![
            column_count(1),
            column_def("a"),
            eof_payload(0, AC | CURSOR),
        ];
        packets.push(binary_row(1));
        packets.push(eof_payload(0, AC));
        assert!(run(EXECUTE, false, &small(packets)).is_ok());
    }

    #[test]
    fn fetch_rows_end_at_the_terminator() {
        both_modes(|d| {
            let packets = vec![binary_row(1), binary_row(2), terminator(d, AC | CURSOR)];
            let o = run(ResponseKind::StmtFetch, d, &small(packets)).expect("outcome");
            assert_eq!(o.status, AC | CURSOR);
            let last = vec![terminator(d, AC | SERVER_STATUS_LAST_ROW_SENT)];
            assert!(run(ResponseKind::StmtFetch, d, &small(last)).is_ok());
        });
    }

    #[test]
    fn fetch_err_ends_the_response() {
        let o = run(ResponseKind::StmtFetch, true, &small(vec![err(1421)]));
        assert_eq!(o.expect("outcome").error, Some(1421));
    }

    #[test]
    fn field_list_ends_at_its_terminator_or_err() {
        both_modes(|d| {
            let packets = vec![column_def("a"), column_def("b"), terminator(d, AC)];
            assert!(run(ResponseKind::FieldList, d, &small(packets)).is_ok());
            let o = run(ResponseKind::FieldList, d, &small(vec![err(1146)]));
            assert_eq!(o.expect("outcome").error, Some(1146));
        });
    }

    #[test]
    fn single_packet_commands_end_after_one_packet() {
        both_modes(|d| {
            for p in [ok_payload(0, 0, AC, 0), err(1049), terminator(d, AC)] {
                assert!(run(ResponseKind::Single, d, &small(vec![p])).is_ok());
            }
        });
    }

    #[test]
    fn statistics_is_one_packet_of_text_even_when_empty() {
        let text = b"Uptime: 5  Threads: 1".to_vec();
        assert!(run(ResponseKind::Statistics, false, &small(vec![text])).is_ok());
        assert!(run(ResponseKind::Statistics, false, &small(vec![vec![]])).is_ok());
    }

    #[test]
    fn row_of_20_mib_starting_with_0xfe_is_not_a_terminator() {
        both_modes(|d| {
            let value_len: u64 = 20 << 20;
            let mut head = vec![0xFE];
            head.extend_from_slice(&value_len.to_le_bytes());
            head.extend_from_slice(b"xxxx");
            let mut frames = small(vec![column_count(1), column_def("blob")]);
            if !d {
                frames.extend(small(vec![eof_payload(0, AC)]));
            }
            frames.extend(big(9 + value_len as usize, &head));
            assert_eq!(frames.len(), if d { 4 } else { 5 });
            frames.extend(small(vec![text_row(&["y"]), terminator(d, AC)]));
            let o = run(QUERY, d, &frames).expect("outcome");
            assert_eq!(o.result_sets, 1);
        });
    }

    #[test]
    fn packet_of_exactly_max_frame_bytes_is_followed_by_an_empty_frame() {
        both_modes(|d| {
            let mut frames = small(vec![column_count(1), column_def("blob")]);
            if !d {
                frames.extend(small(vec![eof_payload(0, AC)]));
            }
            frames.extend(big(MAX_FRAME, &binary_row(1)));
            assert_eq!(frames.last().map(|f| f.0), Some(0));
            frames.extend(small(vec![terminator(d, AC)]));
            assert!(run(EXECUTE, d, &frames).is_ok());
        });
    }

    #[test]
    fn done_is_reported_when_a_multi_frame_last_packet_ends() {
        let frames = big(MAX_FRAME + 10, b"Uptime: 1");
        assert!(run(ResponseKind::Statistics, false, &frames).is_ok());
    }

    fn assert_malformed(kind: ResponseKind, d: bool, frames: &[Frame]) {
        let r = run(kind, d, frames);
        assert!(
            matches!(r, Err(ResponseError::Malformed { .. })),
            "{kind:?}: {r:?}"
        );
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let truncated_ok = vec![0x00, 0x00, 0x00, 0x02];
        let truncated_eof = vec![0xFE, 0x00, 0x00];
        let cases: Vec<(ResponseKind, bool, Vec<Vec<u8>>)> = vec![
            (QUERY, false, vec![vec![]]),
            (QUERY, false, vec![truncated_ok.clone()]),
            (QUERY, false, vec![vec![0xFF, 0x01]]),
            (QUERY, false, vec![column_count(0)]),
            (QUERY, false, vec![vec![0xFD, 0xFF, 0xFF, 0xFF]]),
            (QUERY, false, vec![vec![0xFE, 1, 2, 3, 4, 5, 6, 7, 8]]),
            // A column count followed by MariaDB's "metadata follows" byte.
            (EXECUTE, true, vec![vec![0x01, 0x01]]),
            (
                QUERY,
                false,
                vec![column_count(1), column_def("a"), truncated_eof.clone()],
            ),
            (
                QUERY,
                false,
                vec![column_count(2), column_def("a"), eof_payload(0, AC)],
            ),
            (
                QUERY,
                true,
                vec![column_count(1), column_def("a"), truncated_eof.clone()],
            ),
            (
                QUERY,
                false,
                vec![column_count(1), column_def("a"), eof_payload(0, 2), vec![]],
            ),
            (
                EXECUTE,
                false,
                vec![column_count(1), column_def("a"), eof_payload(0, 2), vec![1]],
            ),
            // An empty row between rows: malformed, also when read from a buffer.
            (
                QUERY,
                false,
                vec![
                    column_count(1),
                    column_def("a"),
                    eof_payload(0, AC),
                    text_row(&["x"]),
                    vec![],
                    text_row(&["y"]),
                    eof_payload(0, AC),
                ],
            ),
            (
                ResponseKind::StmtPrepare,
                false,
                vec![vec![0x00, 1, 0, 0, 0, 1, 0]],
            ),
            (ResponseKind::StmtPrepare, false, vec![vec![]]),
            (ResponseKind::StmtPrepare, false, vec![vec![0x05; 12]]),
            (ResponseKind::StmtFetch, true, vec![truncated_eof.clone()]),
            (ResponseKind::FieldList, false, vec![vec![]]),
            (ResponseKind::Single, false, vec![vec![]]),
            (ResponseKind::Single, false, vec![b"hello".to_vec()]),
            (ResponseKind::Single, true, vec![truncated_eof]),
        ];
        for (kind, d, packets) in cases {
            assert_malformed(kind, d, &small(packets));
        }
    }

    #[test]
    fn skip_rows_passes_only_whole_single_frame_rows() {
        let mut t = ResponseTracker::new(QUERY, true);
        let mut wire = Vec::new();
        for p in [column_count(1), column_def("a")] {
            crate::protocol::frame::encode_packet(&mut wire, 0, &p);
        }
        assert_eq!(t.skip_rows(&wire), 0, "not at the rows yet");
        let mut off = 0;
        while let Some((h, payload)) = crate::protocol::frame::buffered_frame(&wire[off..]) {
            t.on_frame(h.len, payload).unwrap();
            off += 4 + h.len;
        }
        let mut rows = Vec::new();
        crate::protocol::frame::encode_packet(&mut rows, 3, &text_row(&["x"]));
        let one = rows.len();
        crate::protocol::frame::encode_packet(&mut rows, 4, &text_row(&["yy"]));
        // The second row cut short: only the first is passed.
        assert_eq!(t.skip_rows(&rows[..rows.len() - 1]), one);
        // A row of one full frame (more follow) is left to on_frame.
        let mut full = vec![0xFF, 0xFF, 0xFF, 5, 0x01];
        full.resize(4 + MAX_FRAME, b'z');
        assert_eq!(t.skip_rows(&full), 0);
        assert_eq!(t.outcome().rows, 1);
    }

    #[test]
    fn skip_rows_leaves_a_continued_packet_to_on_frame() {
        let mut t = ResponseTracker::new(EXECUTE, true);
        for p in [column_count(1), column_def("a")] {
            assert_eq!(t.on_frame(p.len(), &p), Ok(Step::More));
        }
        // A row of more than one frame: its last frame looks like a row but is not one.
        assert_eq!(t.on_frame(MAX_FRAME, &binary_row(1)), Ok(Step::More));
        let mut wire = Vec::new();
        crate::protocol::frame::encode_packet(&mut wire, 2, &binary_row(2));
        assert_eq!(t.skip_rows(&wire), 0);
        assert_eq!(t.on_frame(6, &binary_row(2)), Ok(Step::More));
        assert_eq!(
            t.skip_rows(&wire),
            wire.len(),
            "rows again after the packet's end"
        );
        assert_eq!(t.outcome().rows, 2);
    }

    #[test]
    fn frames_after_done_are_rejected() {
        let mut t = ResponseTracker::new(ResponseKind::Single, false);
        let ok = ok_payload(0, 0, AC, 0);
        assert!(matches!(t.on_frame(ok.len(), &ok), Ok(Step::Done)));
        assert_eq!(t.on_frame(ok.len(), &ok), Err(ResponseError::AfterEnd));
        assert_eq!(t.on_frame(0, &[]), Err(ResponseError::AfterEnd));
    }

    #[test]
    fn a_malformed_frame_ends_tracking() {
        let mut t = ResponseTracker::new(QUERY, false);
        assert!(t.on_frame(0, &[]).is_err());
        let ok = ok_payload(0, 0, AC, 0);
        assert_eq!(t.on_frame(ok.len(), &ok), Err(ResponseError::AfterEnd));
    }

    /// xorshift64*: deterministic, no crate needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn random_frame(rng: &mut Rng) -> Frame {
        let len = match rng.below(20) {
            0 => 0,
            1 | 2 => MAX_FRAME,
            3 => rng.below(MAX_FRAME as u64),
            _ => rng.below(80),
        };
        const HEADERS: [u8; 10] = [0x00, 0xFE, 0xFF, 0xFB, 0x01, 0x02, 0x03, 0xFC, 0xFD, 0x00];
        // Sometimes shorter than the caller contract says, to prove that cannot panic either.
        let peek_len = len.min(PEEK_LEN).saturating_sub(rng.below(20) / 19 * 3);
        let bytes = (0..peek_len)
            .map(|i| match (i, rng.below(4)) {
                (0, _) | (_, 0) => HEADERS[rng.below(HEADERS.len() as u64)],
                _ => rng.next() as u8,
            })
            .collect();
        (len, bytes)
    }

    /// A step that is not `More` (or an error), with the wire bytes fed up to it.
    type Event = (usize, Result<Step, ResponseError>);

    /// Keeps a step that is not `More`, answers a file request; false once the response ended.
    fn note_step(
        t: &mut ResponseTracker,
        off: usize,
        step: Result<Step, ResponseError>,
        events: &mut Vec<Event>,
    ) -> bool {
        if step == Ok(Step::LocalInfile) {
            t.local_infile_sent();
        }
        let end = matches!(step, Ok(Step::Done) | Err(_));
        if step != Ok(Step::More) {
            events.push((off, step));
        }
        !end
    }

    /// The non-`More` steps (and errors) frame by frame, then the outcome.
    fn events_by_frame(kind: ResponseKind, d: bool, frames: &[Vec<u8>]) -> (Vec<Event>, Outcome) {
        let mut t = ResponseTracker::new(kind, d);
        let mut events = Vec::new();
        let mut off = 0;
        for f in frames {
            off += 4 + f.len();
            let step = t.on_frame(f.len(), &f[..f.len().min(PEEK_LEN)]);
            if !note_step(&mut t, off, step, &mut events) {
                break;
            }
        }
        (events, t.outcome())
    }

    /// The same from the frames' wire bytes, as the forwarder reads them from its buffer.
    fn events_from_buffer(
        kind: ResponseKind,
        d: bool,
        frames: &[Vec<u8>],
    ) -> (Vec<Event>, Outcome) {
        let mut wire = Vec::new();
        for f in frames {
            crate::protocol::frame::encode_packet(&mut wire, 0, f);
        }
        let mut t = ResponseTracker::new(kind, d);
        let mut events = Vec::new();
        let mut off = 0;
        loop {
            off += t.skip_rows(&wire[off..]);
            let Some((h, payload)) = crate::protocol::frame::buffered_frame(&wire[off..]) else {
                break;
            };
            off += 4 + h.len;
            let step = t.on_frame(h.len, &payload[..h.len.min(PEEK_LEN)]);
            if !note_step(&mut t, off, step, &mut events) {
                break;
            }
        }
        (events, t.outcome())
    }

    #[test]
    fn random_rows_from_a_buffer_come_to_the_same_as_frame_by_frame() {
        const FIRST: [u8; 8] = [0x00, 0xFE, 0xFF, 0x01, 0x02, 0x03, 0xFB, 0x80];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let kinds = [QUERY, EXECUTE, EXECUTE_CURSOR, ResponseKind::StmtFetch];
        for kind in kinds {
            for d in [false, true] {
                for _ in 0..5_000 {
                    let mut frames = Vec::new();
                    if kind != ResponseKind::StmtFetch {
                        frames.push(column_count(1));
                        frames.push(column_def("a"));
                        if !d {
                            frames.push(eof_payload(0, AC));
                        }
                    }
                    for _ in 0..rng.below(30) {
                        let len = rng.below(12);
                        let f: Vec<u8> = (0..len)
                            .map(|i| match i {
                                0 => FIRST[rng.below(FIRST.len() as u64)],
                                _ => rng.next() as u8,
                            })
                            .collect();
                        frames.push(f);
                    }
                    assert_eq!(
                        events_from_buffer(kind, d, &frames),
                        events_by_frame(kind, d, &frames),
                        "{kind:?} deprecate_eof={d}: {frames:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_frame_sequences_never_panic_any_kind() {
        let kinds = [
            QUERY,
            EXECUTE,
            EXECUTE_CURSOR,
            ResponseKind::StmtFetch,
            ResponseKind::StmtPrepare,
            ResponseKind::FieldList,
            ResponseKind::Single,
            ResponseKind::Statistics,
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for kind in kinds {
            for d in [false, true] {
                for _ in 0..10_000 {
                    let mut t = ResponseTracker::new(kind, d);
                    let mut ended = false;
                    for _ in 0..rng.below(40) {
                        let (len, bytes) = random_frame(&mut rng);
                        let step = t.on_frame(len, &bytes);
                        if ended {
                            assert_eq!(step, Err(ResponseError::AfterEnd));
                            continue;
                        }
                        match step {
                            Ok(Step::More) => {}
                            Ok(Step::LocalInfile) => {
                                assert!(matches!(kind, QUERY | EXECUTE), "{kind:?}");
                                if rng.below(2) == 0 {
                                    t.local_infile_sent();
                                }
                            }
                            Ok(Step::Done) | Err(_) => ended = true,
                        }
                    }
                }
            }
        }
    }
}
