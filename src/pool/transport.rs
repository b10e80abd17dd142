//! How rwsplit reaches a backend: TCP (`host:port`) or the server's Unix socket (an absolute
//! path, when rwsplit runs on the database host, as ProxySQL takes a hostname starting with `/`
//! and MaxScale a server's `socket`).
//!
//! A Unix socket is the cheaper hop: on this project's benchmark machine, HAProxy forwarding
//! point selects to the primary's socket instead of its TCP port used 12 % to 22 % less CPU per
//! statement and made 8 % to 21 % more QPS (`docs/benchmarks.md`), because a local stream
//! socket skips the TCP/IP stack and its loopback softirq on every send.
//!
//! The halves are enums rather than boxed trait objects: the match costs a branch per read or
//! write, a `Box<dyn>` an indirect call, and both kinds are `Unpin`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// Where a backend listens, parsed from its configured `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `host:port`, resolved when connecting.
    Tcp(&'a str),
    /// The absolute path of the server's Unix socket.
    Unix(&'a Path),
}

impl<'a> Endpoint<'a> {
    /// An address starting with `/` is a socket path; anything else is `host:port`.
    pub fn of(address: &'a str) -> Endpoint<'a> {
        if address.starts_with('/') {
            Endpoint::Unix(Path::new(address))
        } else {
            Endpoint::Tcp(address)
        }
    }

    /// Whether the config's validation accepts this address.
    pub fn is_valid(&self) -> bool {
        match self {
            Endpoint::Unix(p) => p.file_name().is_some(),
            Endpoint::Tcp(a) => a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
        }
    }
}

/// An open backend stream of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub async fn connect(endpoint: Endpoint<'_>) -> io::Result<Stream> {
        Ok(match endpoint {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                // Commands and responses are small and sent whole: never wait for an ACK.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Endpoint::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
        })
    }

    /// Whether the server counts this transport as secure: MySQL's caching_sha2_password then
    /// takes the password in clear instead of RSA-encrypted (a Unix socket, like TLS, is not
    /// readable by others on the way).
    pub fn is_secure(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }
}

pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

/// Forwards one `AsyncRead`/`AsyncWrite` method to whichever stream the enum holds.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            Self::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_a_socket_path_only_when_absolute() {
        for (address, endpoint, valid) in [
            ("127.0.0.1:3306", Endpoint::Tcp("127.0.0.1:3306"), true),
            ("db.example:3306", Endpoint::Tcp("db.example:3306"), true),
            ("[::1]:3306", Endpoint::Tcp("[::1]:3306"), true),
            (
                "/run/mysqld/mysqld.sock",
                Endpoint::Unix(Path::new("/run/mysqld/mysqld.sock")),
                true,
            ),
            ("/", Endpoint::Unix(Path::new("/")), false),
            ("mysqld.sock", Endpoint::Tcp("mysqld.sock"), false),
            ("127.0.0.1", Endpoint::Tcp("127.0.0.1"), false),
            ("127.0.0.1:0", Endpoint::Tcp("127.0.0.1:0"), false),
            (":3306", Endpoint::Tcp(":3306"), false),
        ] {
            let e = Endpoint::of(address);
            assert_eq!(e, endpoint, "{address}");
            assert_eq!(e.is_valid(), valid, "{address}");
        }
    }
}
