//! The client's side of a session: buffered socket halves and the packets rwsplit itself sends.

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::ClientError;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::packets;

const BUF_SIZE: usize = 16 * 1024;

pub struct ClientIo {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: BufWriter<OwnedWriteHalf>,
    /// The client negotiated CLIENT_SESSION_TRACK (else session-state data is removed from
    /// the OK packets it gets).
    pub session_track: bool,
}

impl ClientIo {
    pub fn new(r: OwnedReadHalf, w: OwnedWriteHalf) -> ClientIo {
        ClientIo {
            reader: BufReader::with_capacity(BUF_SIZE, r),
            writer: BufWriter::with_capacity(BUF_SIZE * 4, w),
            session_track: false,
        }
    }

    /// Sends one packet and flushes.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<u8, FrameError> {
        let next = frame::write_packet(&mut self.writer, seq, payload).await?;
        self.writer.flush().await?;
        Ok(next)
    }

    pub async fn send_error(&mut self, seq: u8, e: &ClientError) -> Result<u8, FrameError> {
        self.send(seq, &e.payload()).await
    }

    pub async fn send_ok(&mut self, seq: u8, status: u16) -> Result<u8, FrameError> {
        self.send(seq, &packets::ok_payload(0, 0, status, 0)).await
    }
}
