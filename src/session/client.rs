//! The client's side of a session: buffered socket halves and the packets rwsplit itself sends.

use tokio::io::AsyncWriteExt;

use super::buffers::{Reader, Stalls, Writer};

use crate::error::ClientError;
use crate::net::{ReadHalf, WriteHalf};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::packets;

pub struct ClientIo {
    /// Buffered only while bytes move (see `buffers`): idle clients hold no buffers.
    pub reader: Reader<ReadHalf>,
    /// Writes fail once the client has read nothing for `proxy.net_timeout`.
    pub writer: Writer<Stalls<WriteHalf>>,
    /// `proxy.net_timeout`: the longest the client may stall a packet or a file it is sending.
    pub net_timeout: std::time::Duration,
    /// The client negotiated CLIENT_SESSION_TRACK (else session-state data is removed from
    /// the OK packets it gets).
    pub session_track: bool,
}

impl ClientIo {
    pub fn new(r: ReadHalf, w: WriteHalf, net_timeout: std::time::Duration) -> ClientIo {
        ClientIo {
            reader: Reader::new(r),
            writer: Writer::new(Stalls::new(w, net_timeout)),
            net_timeout,
            session_track: false,
        }
    }

    /// Upgrades the connection to TLS after the client's SSL request (`crate::tls`): the
    /// handshake runs over the plain halves, with what the reader already holds of it first.
    pub async fn into_tls(
        self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<ClientIo, std::io::Error> {
        let (prefix, r) = self.reader.into_inner();
        let w = self.writer.into_inner().into_inner();
        let plain = crate::net::Plain { prefix, r, w };
        let stream = acceptor.accept(plain).await?;
        let (r, w) = tokio::io::split(tokio_rustls::TlsStream::Server(stream));
        let mut io = ClientIo::new(ReadHalf::Tls(r), WriteHalf::Tls(w), self.net_timeout);
        io.session_track = self.session_track;
        Ok(io)
    }

    /// Upgraded to TLS (`into_tls`; only clients' streams are here).
    pub fn is_tls(&self) -> bool {
        matches!(self.reader.get_ref(), ReadHalf::Tls(_))
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
