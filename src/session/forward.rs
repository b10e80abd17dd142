//! Copying one response from a backend to the client, frame by frame, as it arrives.
//! Only each frame's first bytes are looked at (by the response tracker); the rest is copied
//! through a fixed buffer, so a result of any size passes in bounded memory.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::client::ClientIo;
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
/// On any failure the backend connection is marked broken: it may be mid-response.
pub async fn response(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    kind: ResponseKind,
    stmt_id: Option<u32>,
) -> Result<Outcome, ForwardError> {
    let r = copy(conn, client, kind, stmt_id).await;
    if r.is_err() {
        conn.broken = true;
    } else if let Ok(o) = &r {
        if o.error.is_none() && kind.reports_status() {
            conn.status = o.status;
        }
    }
    r
}

async fn copy(
    conn: &mut BackendConn,
    client: &mut ClientIo,
    kind: ResponseKind,
    mut stmt_id: Option<u32>,
) -> Result<Outcome, ForwardError> {
    let mut tracker = ResponseTracker::new(kind, conn.deprecate_eof());
    let strip = !client.session_track
        && conn
            .capabilities
            .contains(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK);
    let mut started = false;
    let mut bytes = 0u64;
    let mut peek = [0u8; PEEK_LEN];
    let (mut gtid, mut sysvars, mut state_changed) = (None, Vec::new(), false);
    loop {
        let h = frame::read_header(&mut conn.reader)
            .await
            .map_err(backend(started))?;
        let n = h.len.min(PEEK_LEN);
        conn.reader
            .read_exact(&mut peek[..n])
            .await
            .map_err(backend(started))?;
        let step = tracker
            .on_frame(h.len, &peek[..n])
            .map_err(backend(started))?;
        if let Some(id) = stmt_id.take() {
            if n >= 5 && peek[0] == 0 {
                peek[1..5].copy_from_slice(&id.to_le_bytes());
            }
        }
        // An OK packet may carry session-state data (the commit's GTID, changed variables):
        // read whole when it says so, or when the client did not negotiate session tracking
        // and must get it in its own format. OK packets are small.
        let whole_ok = tracker.ok_packet()
            && h.len < MAX_FRAME
            && (strip || (peek_status(&peek[..n]) & SERVER_SESSION_STATE_CHANGED != 0));
        if whole_ok {
            // Into the connection's reused buffer: no allocation per OK packet.
            let whole = &mut conn.scratch;
            whole.clear();
            whole.extend_from_slice(&peek[..n]);
            whole.resize(h.len, 0);
            conn.reader
                .read_exact(&mut whole[n..])
                .await
                .map_err(backend(started))?;
            if let Some(c) = packets::session_changes(whole) {
                if matches!(step, Step::Done(_)) {
                    gtid = c.gtid;
                }
                sysvars.extend(c.sysvars);
                state_changed |= c.state_changed;
            }
            if strip {
                packets::strip_session_track(whole);
            }
            let header = FrameHeader {
                len: whole.len(),
                seq: h.seq,
            };
            let w = &mut client.writer;
            let wr = async {
                w.write_all(&header.encode()).await?;
                w.write_all(whole).await
            };
            wr.await.map_err(|e| ForwardError::Client(e.into()))?;
            bytes += whole.len() as u64 + 4;
        } else {
            let w = &mut client.writer;
            let wr = async {
                w.write_all(&h.encode()).await?;
                w.write_all(&peek[..n]).await
            };
            wr.await.map_err(|e| ForwardError::Client(e.into()))?;
            copy_rest(conn, client, h.len - n).await?;
            bytes += h.len as u64 + 4;
        }
        started = true;
        match step {
            Step::More => {}
            Step::LocalInfile => {
                flush_client(client).await?;
                relay_file(conn, client).await?;
                tracker.local_infile_sent();
            }
            Step::Done(mut o) => {
                flush_client(client).await?;
                crate::metrics::hot().bytes_to_clients.increment(bytes);
                o.gtid = gtid;
                o.sysvars = sysvars;
                o.state_changed = state_changed;
                return Ok(o);
            }
        }
    }
}

/// The status flags of an OK packet, from its first bytes (0 if they do not parse).
fn peek_status(peek: &[u8]) -> u16 {
    packets::parse_ok(peek).map_or(0, |ok| ok.status)
}

async fn flush_client(client: &mut ClientIo) -> Result<(), ForwardError> {
    client
        .writer
        .flush()
        .await
        .map_err(|e| ForwardError::Client(e.into()))
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
            .map_err(|e| ForwardError::Client(e.into()))?;
        conn.reader.consume(k);
        left -= k;
    }
    Ok(())
}

/// LOAD DATA LOCAL INFILE: copies the client's file packets to the backend up to and including
/// the empty packet that ends the file.
async fn relay_file(conn: &mut BackendConn, client: &mut ClientIo) -> Result<(), ForwardError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut continues = false;
    loop {
        let h: FrameHeader = frame::read_header(&mut client.reader)
            .await
            .map_err(ForwardError::Client)?;
        conn.writer
            .write_all(&h.encode())
            .await
            .map_err(backend(true))?;
        let mut left = h.len;
        while left > 0 {
            let k = left.min(buf.len());
            client
                .reader
                .read_exact(&mut buf[..k])
                .await
                .map_err(|e| ForwardError::Client(e.into()))?;
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
