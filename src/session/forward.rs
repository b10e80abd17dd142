//! Copying one response from a backend to the client as it arrives.
//! Only each frame's first bytes are looked at (by the response tracker), and OK packets that
//! carry session state. Frames already whole in the backend read buffer are checked and copied
//! in one batch; a frame that straddles the buffer's end is copied frame by frame through the
//! buffer, so a result of any size passes in bounded memory.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::client::ClientIo;
use crate::error::ClientError;
use crate::pool::BackendConn;
use crate::protocol::frame::{self, FrameError, FrameHeader};
use crate::protocol::packets::{self, SERVER_SESSION_STATE_CHANGED};
use crate::protocol::response::{
    MAX_FRAME, Outcome, PEEK_LEN, ResponseKind, ResponseTracker, Step,
};

/// Which side failed while a response was being copied.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The backend failed. `started` says whether any byte already reached the client (if not,
    /// the statement may be retried elsewhere or answered with an error packet).
    #[error("backend failed: {error}")]
    Backend { error: String, started: bool },
    /// The client went away or sent garbage; the session ends.
    #[error("client failed: {0}")]
    Client(FrameError),
}

fn backend<E: std::fmt::Display>(started: bool) -> impl FnOnce(E) -> ForwardError {
    move |e| ForwardError::Backend {
        error: e.to_string(),
        started,
    }
}

/// Forwards the response to a command already sent to `conn`. With `stmt_id`, the statement id
/// in a COM_STMT_PREPARE response's first packet is replaced by the proxy's own.
/// `seq_shift`: how many frames more the command took to the server than from the client (an
/// execute lengthened past a 16 MiB frame): the server's sequence ids are that much ahead of
/// the client's, and are set back frame by frame.
/// On any failure the backend connection is marked broken: it may be mid-response; otherwise
/// the response is noted on it (`BackendConn::after_response`).
pub async fn response(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    kind: ResponseKind,
    stmt_id: Option<u32>,
    seq_shift: u8,
) -> Result<Outcome, ForwardError> {
    let r = copy(conn, client, kind, stmt_id, seq_shift).await;
    match &r {
        Err(_) => conn.broken = true,
        Ok(o) => conn.after_response(kind, o),
    }
    r
}

/// What one response's copy has seen so far.
struct Progress {
    tracker: ResponseTracker,
    /// The client did not negotiate session tracking but the backend sends it: OK packets are
    /// rewritten without it.
    strip: bool,
    /// Some byte of the response is already on its way to the client (in its write buffer or
    /// written).
    started: bool,
    bytes: u64,
    gtid: Option<String>,
    sysvars: Vec<(String, String)>,
    state_changed: bool,
    schema: Option<String>,
    /// The sequence id the client saw on the server's request for a `LOAD DATA LOCAL` file.
    file_request_seq: u8,
}

impl Progress {
    /// For a frame not whole in the buffer, from its first bytes: whether the frame just fed to
    /// the tracker is an OK packet to read whole: when it carries session-state data (the
    /// commit's GTID, changed variables), or when the client did not negotiate session
    /// tracking and must get it in its own format. OK packets are small.
    fn whole_ok(&self, len: usize, peek: &[u8]) -> bool {
        self.tracker.ok_packet()
            && len < MAX_FRAME
            && (self.strip || (peek_status(peek) & SERVER_SESSION_STATE_CHANGED != 0))
    }

    /// For a client that did not negotiate session tracking, an EOF packet (`payload`, whole)
    /// whose status says the session state changed, with that flag cleared: the client gets
    /// the status it would get from the server (the state-change data itself only comes in OK
    /// packets, which are rewritten whole). `None` for any other frame, and for an EOF to pass
    /// as it is.
    fn eof_to_rewrite(&self, len: usize, payload: &[u8]) -> Option<[u8; 8]> {
        if !self.strip
            || self.tracker.ok_packet()
            || len >= 9
            || len != payload.len()
            || payload.first() != Some(&0xFE)
        {
            return None;
        }
        let (_, status) = packets::parse_eof(payload)?;
        if status & SERVER_SESSION_STATE_CHANGED == 0 {
            return None;
        }
        let mut eof = [0u8; 8];
        eof[..len].copy_from_slice(payload);
        eof[3..5].copy_from_slice(&(status & !SERVER_SESSION_STATE_CHANGED).to_le_bytes());
        Some(eof)
    }

    /// Takes the session changes (if its status flags say there are any) out of a whole OK
    /// packet. The GTID is the last one any OK of the response carried: in a multi-statement
    /// an earlier statement's commit counts even when a later one fails or commits nothing.
    fn absorb(&mut self, ok: &[u8]) {
        if let Some(c) = packets::session_changes(ok) {
            if c.gtid.is_some() {
                self.gtid = c.gtid;
            }
            self.sysvars.extend(c.sysvars);
            self.state_changed |= c.state_changed;
            if c.schema.is_some() {
                self.schema = c.schema;
            }
        }
    }
}

async fn copy(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    kind: ResponseKind,
    mut stmt_id: Option<u32>,
    seq_shift: u8,
) -> Result<Outcome, ForwardError> {
    let mut p = Progress {
        tracker: ResponseTracker::new(kind, conn.deprecate_eof()),
        strip: !client.session_track
            && conn
                .capabilities
                .contains(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK),
        started: false,
        bytes: 0,
        gtid: None,
        sysvars: Vec::new(),
        state_changed: false,
        schema: None,
        file_request_seq: 0,
    };
    loop {
        // The batch copies frames as they are, sequence ids included.
        let batched = if stmt_id.is_none() && seq_shift == 0 {
            if conn.reader.buffer().is_empty() {
                // An end of stream is reported by the frame-by-frame path below.
                conn.reader.fill_buf().await.map_err(backend(p.started))?;
            }
            copy_buffered(conn, client, &mut p).await?
        } else {
            None
        };
        let step = match batched {
            Some(step) => step,
            None => copy_frame(conn, client, &mut p, stmt_id.take(), seq_shift).await?,
        };
        match step {
            Step::More => {}
            Step::LocalInfile => {
                flush_client(client).await?;
                relay_file(conn, client, p.file_request_seq, seq_shift).await?;
                p.tracker.local_infile_sent();
            }
            Step::Done => {
                flush_client(client).await?;
                let mut o = p.tracker.outcome();
                crate::metrics::hot().bytes_to_clients.increment(p.bytes);
                o.gtid = p.gtid;
                o.sysvars = p.sysvars;
                o.state_changed = p.state_changed;
                o.schema = p.schema;
                return Ok(o);
            }
        }
    }
}

/// Checks and copies the frames already whole in the backend connection's read buffer, as one
/// write: to the client's buffer, or for a response's last batch straight to the client when
/// nothing waits in that buffer (`Writer::write_through`). A result's rows usually arrive
/// together, and this spares the per-frame reads and writes of [`copy_frame`]; plain rows are
/// passed over by [`ResponseTracker::skip_rows`]. OK packets are read in place; only one to
/// strip of session tracking is written on its own. Stops after a frame that ends the response
/// or asks for a file, and before a frame that is not whole yet. `None`: no whole frame was
/// buffered.
async fn copy_buffered(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    p: &mut Progress,
) -> Result<Option<Step>, ForwardError> {
    let buf = conn.reader.buffer();
    // `buf[sent..off]`: checked frames not yet written to the client.
    let (mut sent, mut off) = (0, 0);
    let mut step = None;
    loop {
        let rows = p.tracker.skip_rows(&buf[off..]);
        if rows > 0 {
            off += rows;
            step = Some(Step::More);
        }
        let Some((h, payload)) = frame::buffered_frame(&buf[off..]) else {
            break;
        };
        let s = p
            .tracker
            .on_frame(h.len, &payload[..h.len.min(PEEK_LEN)])
            .map_err(backend(p.started))?;
        // A frame the client gets rewritten (its status, or an OK without session tracking) is
        // written on its own, after the frames checked before it.
        let eof = p.eof_to_rewrite(h.len, payload);
        let rewritten: Option<&[u8]> = if let Some(eof) = &eof {
            Some(&eof[..h.len])
        } else if p.tracker.ok_packet() {
            p.absorb(payload);
            p.strip.then(|| {
                let whole = &mut conn.scratch;
                whole.clear();
                whole.extend_from_slice(payload);
                packets::strip_session_track(whole);
                &whole[..]
            })
        } else {
            None
        };
        if let Some(packet) = rewritten {
            write_client(client, &buf[sent..off]).await?;
            write_packet(client, h.seq, packet).await?;
            p.bytes += (off - sent) as u64 + packet.len() as u64 + 4;
            p.started = true;
            sent = off + 4 + h.len;
        }
        off += 4 + h.len;
        step = Some(s);
        if s != Step::More {
            if s == Step::LocalInfile {
                p.file_request_seq = h.seq;
            }
            break;
        }
    }
    if off > sent {
        let bytes = &buf[sent..off];
        if step == Some(Step::More) {
            write_client(client, bytes).await?;
        } else {
            // The response's end (or a file request), which the caller flushes next: straight
            // from the backend's read buffer when nothing waits in the client's buffer (a
            // response read whole, the common case, is then never copied).
            client
                .writer
                .write_through(bytes)
                .await
                .map_err(client_error)?;
        }
        p.bytes += (off - sent) as u64;
        p.started = true;
    }
    conn.reader.consume(off);
    Ok(step)
}

/// Copies one frame that is not whole in the read buffer (or is the first of a prepare
/// response, whose statement id is replaced, or one whose sequence id is set back by
/// `seq_shift`): its first bytes are read for the tracker, and the rest is streamed through, so
/// a frame of any size passes in bounded memory.
async fn copy_frame(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    p: &mut Progress,
    stmt_id: Option<u32>,
    seq_shift: u8,
) -> Result<Step, ForwardError> {
    let mut peek = [0u8; PEEK_LEN];
    let mut h = frame::read_header(&mut conn.reader)
        .await
        .map_err(backend(p.started))?;
    h.seq = h.seq.wrapping_sub(seq_shift);
    let n = h.len.min(PEEK_LEN);
    conn.reader
        .read_exact(&mut peek[..n])
        .await
        .map_err(backend(p.started))?;
    let step = p
        .tracker
        .on_frame(h.len, &peek[..n])
        .map_err(backend(p.started))?;
    if step == Step::LocalInfile {
        p.file_request_seq = h.seq;
    }
    if let Some(id) = stmt_id
        && n >= 5
        && peek[0] == 0
    {
        peek[1..5].copy_from_slice(&id.to_le_bytes());
    }
    if let Some(eof) = p.eof_to_rewrite(h.len, &peek[..n]) {
        peek[..n].copy_from_slice(&eof[..n]);
    }
    if p.whole_ok(h.len, &peek[..n]) {
        // Into the connection's reused buffer: no allocation per OK packet.
        let whole = &mut conn.scratch;
        whole.clear();
        whole.extend_from_slice(&peek[..n]);
        whole.resize(h.len, 0);
        conn.reader
            .read_exact(&mut whole[n..])
            .await
            .map_err(backend(p.started))?;
        p.absorb(whole);
        if p.strip {
            packets::strip_session_track(whole);
        }
        write_packet(client, h.seq, whole).await?;
        p.bytes += whole.len() as u64 + 4;
    } else {
        write_client(client, &h.encode()).await?;
        write_client(client, &peek[..n]).await?;
        copy_rest(conn, client, h.len - n).await?;
        p.bytes += h.len as u64 + 4;
    }
    p.started = true;
    Ok(step)
}

fn client_error(e: std::io::Error) -> ForwardError {
    ForwardError::Client(e.into())
}

async fn write_client(client: &mut ClientIo, bytes: &[u8]) -> Result<(), ForwardError> {
    client.writer.write_all(bytes).await.map_err(client_error)
}

/// Writes a rewritten OK packet (not flushed).
async fn write_packet(client: &mut ClientIo, seq: u8, payload: &[u8]) -> Result<(), ForwardError> {
    frame::write_packet(&mut client.writer, seq, payload)
        .await
        .map(drop)
        .map_err(ForwardError::Client)
}

/// The status flags of an OK packet, from its first bytes (0 if they do not parse).
fn peek_status(peek: &[u8]) -> u16 {
    packets::parse_ok(peek).map_or(0, |ok| ok.status)
}

async fn flush_client(client: &mut ClientIo) -> Result<(), ForwardError> {
    client.writer.flush().await.map_err(client_error)
}

/// Copies `left` payload bytes from the backend to the client through the reader's buffer.
async fn copy_rest(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    mut left: usize,
) -> Result<(), ForwardError> {
    while left > 0 {
        let chunk = conn.reader.fill_buf().await.map_err(backend(true))?;
        if chunk.is_empty() {
            return Err(ForwardError::Backend {
                error: "connection closed mid-packet".into(),
                started: true,
            });
        }
        let k = chunk.len().min(left);
        client
            .writer
            .write_all(&chunk[..k])
            .await
            .map_err(client_error)?;
        conn.reader.consume(k);
        left -= k;
    }
    Ok(())
}

/// LOAD DATA LOCAL INFILE: copies the client's file packets to the backend up to and including
/// the empty packet that ends the file. `request_seq`: the sequence id of the file request as
/// the client saw it; `seq_shift` as in [`response`].
/// A client that stops sending its file for `proxy.net_timeout` fails the session (the server's
/// `net_read_timeout`), rather than hold the backend connection. A frame out of sequence (a
/// client that sent a command instead of its file) gets the server's 1156 and ends the session,
/// as the server ends the connection; the backend connection, mid-load, is closed, which
/// aborts the statement.
async fn relay_file(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    request_seq: u8,
    seq_shift: u8,
) -> Result<(), ForwardError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut continues = false;
    let stall = Some(client.net_timeout);
    let mut expected = request_seq.wrapping_add(1);
    loop {
        let mut h: FrameHeader = frame::within(stall, frame::read_header(&mut client.reader))
            .await
            .map_err(ForwardError::Client)?;
        if h.seq != expected {
            // The client is told if it still listens; the session ends either way.
            let _ = client
                .send_error(expected, &ClientError::packets_out_of_order())
                .await;
            return Err(ForwardError::Client(FrameError::Sequence {
                expected,
                got: h.seq,
            }));
        }
        expected = expected.wrapping_add(1);
        h.seq = h.seq.wrapping_add(seq_shift);
        conn.writer
            .write_all(&h.encode())
            .await
            .map_err(backend(true))?;
        let mut left = h.len;
        while left > 0 {
            let k = left.min(buf.len());
            let read = async {
                client
                    .reader
                    .read_exact(&mut buf[..k])
                    .await
                    .map_err(FrameError::Io)
            };
            frame::within(stall, read)
                .await
                .map_err(ForwardError::Client)?;
            conn.writer
                .write_all(&buf[..k])
                .await
                .map_err(backend(true))?;
            left -= k;
        }
        // An empty packet ends the file; an empty frame right after a full one is only the
        // end of a 16 MiB packet.
        if h.len == 0 && !continues {
            break;
        }
        continues = h.len == MAX_FRAME;
    }
    conn.writer.flush().await.map_err(backend(true))
}
