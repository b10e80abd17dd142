//! Sockets of either kind: how rwsplit reaches a backend, TCP (`host:port`) or the server's Unix
//! socket (an absolute path, when rwsplit runs on the database host, as ProxySQL takes a hostname
//! starting with `/` and MaxScale a server's `socket`); and where clients reach rwsplit, its TCP
//! address and optionally a Unix socket of its own (`proxy.socket`).
//!
//! A Unix socket is the cheaper hop: on this project's benchmark machine, HAProxy forwarding
//! point selects to the primary's socket instead of its TCP port used 12 % to 23 % less CPU per
//! statement and made 8 % to 21 % more QPS (`docs/benchmarks.md`), because a local stream
//! socket skips the TCP/IP stack and its loopback softirq on every send.
//!
//! The halves are enums rather than boxed trait objects: the match costs a branch per read or
//! write, a `Box<dyn>` an indirect call, and both kinds are `Unpin`.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream, tcp, unix};

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
            Endpoint::Unix(p) => p.file_name().is_some() && fits_sun_path(p),
            Endpoint::Tcp(a) => a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
        }
    }
}

/// Whether `path` fits `sockaddr_un.sun_path` (108 bytes on Linux, with the closing NUL): a
/// longer one fails only at connect or bind time, so the config refuses it up front.
pub fn fits_sun_path(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().len() < 108
}

/// An open stream of either kind; split it to read and write.
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

/// Who a client is: a TCP peer, or a local process on rwsplit's Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    /// The host of `user@host` in error messages: MySQL calls a socket client `localhost`.
    pub fn host(&self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Unix => "localhost".to_string(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Unix => f.write_str("localhost"),
        }
    }
}

/// rwsplit's own Unix socket. Its file is removed when this is dropped, unless another process
/// has put its own socket there since (a new rwsplit taking over while this one drains).
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file this bound.
    file: (u64, u64),
    /// `<path>.rwsplit-lock`, locked shared for as long as this process serves the socket: it
    /// tells a successor that the live socket at `path` is an rwsplit's, not some other
    /// program's (a server's socket must never be taken over).
    _lock: std::fs::File,
}

impl UnixSocket {
    /// Binds `path`. A socket file already there is replaced when nothing answers on it (left by
    /// a process that died), or, with `take_over`, when another rwsplit serves it (a new
    /// rwsplit starting while the old one drains: the old one keeps the clients it has). A live
    /// socket of any other program, and any file that is not a socket, are left alone and
    /// make this an error.
    pub fn bind(path: &Path, take_over: bool) -> io::Result<UnixSocket> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".rwsplit-lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_name)?;
        // Exclusive while deciding; it fails only while another rwsplit holds its shared lock.
        let rwsplit_there = match lock.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                let live = std::os::unix::net::UnixStream::connect(path).is_ok();
                if live && !rwsplit_there {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another program (not rwsplit) is listening on it",
                    ));
                }
                if live && !take_over {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another rwsplit is listening on it (proxy.reuse_port = false)",
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        // Like mysqld's socket: any local user may connect, and then has to log in.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        let m = std::fs::metadata(path)?;
        // From exclusive (or none) to shared: a successor may now take over.
        lock.lock_shared()?;
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
            file: (m.dev(), m.ino()),
            _lock: lock,
        })
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where clients connect: the TCP listener and, if configured, the Unix socket.
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixSocket>,
}

impl Listeners {
    /// The next client from either listener.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        let unix = async {
            match &self.unix {
                Some(u) => u.listener.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.tcp.accept() => r.map(|(s, a)| {
                // Responses are written whole: never hold a segment back for an ACK.
                let _ = s.set_nodelay(true);
                (Stream::Tcp(s), Peer::Tcp(a))
            }),
            r = unix => r.map(|(s, _)| (Stream::Unix(s), Peer::Unix)),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
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

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rwsplit-net-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn a_socket_replaces_a_dead_one_or_an_rwsplits_and_leaves_anything_else_alone() {
        let path = temp_path("bind.sock");
        let _ = std::fs::remove_file(&path);
        // Left by a process that died: the file stays, nothing listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = UnixSocket::bind(&path, false).expect("a dead socket is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        // A live rwsplit's is kept unless taking over.
        let e = UnixSocket::bind(&path, false)
            .err()
            .expect("a live socket is kept");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let new = UnixSocket::bind(&path, true).expect("taken over");
        // The old listener going away leaves the new one's file.
        drop(live);
        assert!(
            path.exists(),
            "the drained process removed its successor's socket"
        );
        drop(new);
        assert!(!path.exists(), "the socket outlived its listener");
        // Another program's live socket (a server's) is never taken over.
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = UnixSocket::bind(&path, true)
            .err()
            .expect("another program's socket is kept");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(server);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"data").unwrap();
        let e = UnixSocket::bind(&path, true)
            .err()
            .expect("a plain file is in the way");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        std::fs::remove_file(&path).unwrap();
        let mut lock = path.into_os_string();
        lock.push(".rwsplit-lock");
        let _ = std::fs::remove_file(lock);
    }

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
        let longest = format!("/{}", "s".repeat(106));
        let too_long = format!("/{}", "s".repeat(107));
        // 107 bytes and the NUL fill sun_path.
        assert!(Endpoint::of(&longest).is_valid());
        assert!(!Endpoint::of(&too_long).is_valid());
    }
}
