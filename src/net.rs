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
            Endpoint::Tcp(a) => host_port(a).is_some_and(|(_, port)| port > 0),
        }
    }
}

/// `host:port` split at its last colon (an IPv6 host keeps its brackets).
pub fn host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

/// Whether `path` fits `sockaddr_un.sun_path` (108 bytes on Linux, with the closing NUL): a
/// longer one fails only at connect or bind time, so the config refuses it up front.
pub fn fits_sun_path(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().len() < 108
}

/// Whether rwsplit can bind its own socket at `path`: the name it binds first
/// (`UnixSocket::bind_name`, with the longest pid Linux gives) must fit too.
pub fn fits_own_socket(path: &Path) -> bool {
    const LONGEST_PID: u32 = 4_194_304;
    path.is_absolute()
        && path.file_name().is_some()
        && fits_sun_path(&UnixSocket::bind_name(path, LONGEST_PID))
}

/// An open stream of either kind; split it to read and write.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Whether a connect failed for this host's own shortage (out of file descriptors, memory or
/// local ports): it says nothing of the backend, which is not marked down for it.
pub fn local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// A backend host that dies or drops off the network without a reset leaves a read waiting
/// on it forever (a session mid-response, a reset on release): keepalive probes after 30 s of
/// silence (a statement running long is silent too, and the server's kernel answers them)
/// find it gone within about a minute, and data it never acknowledges fails the socket after
/// 60 s (`TCP_USER_TIMEOUT`).
fn backend_liveness(s: &TcpStream) {
    use std::time::Duration;
    let sock = socket2::SockRef::from(s);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(60)));
}

impl Stream {
    pub async fn connect(endpoint: Endpoint<'_>) -> io::Result<Stream> {
        Ok(match endpoint {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                // Commands and responses are small and sent whole: never wait for an ACK.
                let _ = s.set_nodelay(true);
                backend_liveness(&s);
                Stream::Tcp(s)
            }
            Endpoint::Unix(p) => {
                // A full listen backlog fails a Unix connect at once with EAGAIN, where TCP
                // would retry the SYN: retry too (the caller bounds it by connect_timeout).
                let mut pause = std::time::Duration::from_millis(1);
                loop {
                    match UnixStream::connect(p).await {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_millis(50));
                        }
                        r => break Stream::Unix(r?),
                    }
                }
            }
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

/// rwsplit's own Unix socket.
///
/// It is bound at `<path>.<pid>` and renamed over `path` by `publish` once rwsplit is ready to
/// serve: a predecessor keeps the path until then, so a new rwsplit that fails to start leaves
/// it alone, and the swap itself is atomic (no moment without a socket at `path`). Its file is
/// removed when this is dropped, unless another process has put its own there since.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Where the socket file is now: `<path>.<pid>` until published, then `path`.
    at: PathBuf,
    /// (device, inode) of the file this bound.
    file: (u64, u64),
    /// `<path>.rwsplit-lock`, locked shared for as long as this process serves the socket: it
    /// tells a successor that a live socket at `path` is an rwsplit's, not another program's
    /// (a server's socket must never be taken over).
    _lock: std::fs::File,
}

/// How long a start waits for another rwsplit deciding about the same socket.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `e` with the file it is about, for a message a DBA can act on.
fn about(file: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", file.display()))
}

/// Locks with `attempt`, retrying while another process holds the lock exclusively (another
/// rwsplit deciding about the same socket, for a moment), up to `LOCK_WAIT`.
async fn lock_within<T>(
    lock_path: &Path,
    mut attempt: impl FnMut() -> Result<T, std::fs::TryLockError>,
) -> io::Result<T> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match attempt() {
            Ok(got) => return Ok(got),
            Err(std::fs::TryLockError::Error(e)) => return Err(about(lock_path, e)),
            Err(std::fs::TryLockError::WouldBlock) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} stayed locked for {LOCK_WAIT:?} (another rwsplit starting on this socket?)",
                    lock_path.display()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl UnixSocket {
    /// The lock file beside socket `path` (see `_lock`).
    pub fn lock_path(path: &Path) -> PathBuf {
        suffixed(path, ".rwsplit-lock")
    }

    /// Where the process `pid` binds its socket for `path` before `publish`.
    fn bind_name(path: &Path, pid: u32) -> PathBuf {
        suffixed(path, &format!(".{pid}"))
    }

    /// Binds the socket for `path`. What is at `path` now may be replaced later (`publish`)
    /// when it is a socket nothing answers on (left by a process that died), or, with
    /// `take_over`, one an rwsplit serves (a new rwsplit starting while the old one drains: the
    /// old one keeps the clients it has). A socket another program answers on, and any file that
    /// is not a socket, make this an error and are left alone.
    pub async fn bind(path: &Path, take_over: bool) -> io::Result<UnixSocket> {
        use std::os::unix::fs::OpenOptionsExt;
        let lock_path = Self::lock_path(path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| about(&lock_path, e))?;
        // Exclusive: no rwsplit serves this socket. Shared: one or more do (each holds it shared
        // while it serves). Neither: another rwsplit is deciding right now; wait for it.
        let rwsplit_there = lock_within(&lock_path, || match lock.try_lock() {
            Ok(()) => Ok(false),
            Err(std::fs::TryLockError::WouldBlock) => lock.try_lock_shared().map(|()| true),
            Err(e) => Err(e),
        })
        .await?;
        check_replaceable(path, &lock_path, rwsplit_there, take_over).await?;
        let at = Self::bind_name(path, std::process::id());
        // Left by a process that had this pid and died: nobody else binds this name.
        let _ = std::fs::remove_file(&at);
        let listener = UnixListener::bind(&at).map_err(|e| about(&at, e))?;
        // Like mysqld's socket: any local user may connect, and then has to log in.
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o777))?;
        let m = std::fs::metadata(&at)?;
        if !rwsplit_there {
            // From exclusive to shared: a successor may now take over.
            lock_within(&lock_path, || lock.try_lock_shared()).await?;
        }
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
            at,
            file: (m.dev(), m.ino()),
            _lock: lock,
        })
    }

    /// Moves the socket to its path (an atomic rename over the socket there, if any).
    pub fn publish(&mut self) -> io::Result<()> {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && !m.file_type().is_socket()
        {
            return Err(not_a_socket(&self.path));
        }
        std::fs::rename(&self.at, &self.path).map_err(|e| about(&self.path, e))?;
        self.at = self.path.clone();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn not_a_socket(path: &Path) -> io::Error {
    let e = io::Error::new(
        io::ErrorKind::AlreadyExists,
        "a file that is not a socket is in the way",
    );
    about(path, e)
}

/// Whether the socket at `path` (if any) may be replaced: see `UnixSocket::bind`.
async fn check_replaceable(
    path: &Path,
    lock_path: &Path,
    rwsplit_there: bool,
    take_over: bool,
) -> io::Result<()> {
    let in_use = |why: String| Err(about(path, io::Error::new(io::ErrorKind::AddrInUse, why)));
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if rwsplit_there {
                if take_over {
                    return Ok(());
                }
                return in_use("another rwsplit serves it (proxy.reuse_port = false)".into());
            }
            // No rwsplit holds the lock: a stale file, or another program's live socket. Only
            // ECONNREFUSED means nothing listens; a full backlog (EAGAIN) or a slow accept is a
            // live listener, and any other error stops the start rather than delete the file.
            let probe = tokio::net::UnixStream::connect(path);
            match tokio::time::timeout(std::time::Duration::from_secs(1), probe).await {
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Ok(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => Err(about(path, e)),
                _ => in_use(format!(
                    "another program listens on it (no rwsplit holds {})",
                    lock_path.display()
                )),
            }
        }
        Ok(_) => Err(not_a_socket(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(about(path, e)),
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.at).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.at);
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
    /// A client's connection after it asked for TLS, or a backend connection rwsplit upgraded
    /// (`crate::tls`).
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// A TLS stream (a client's or to a server), over the plain halves it was split into before
/// the upgrade.
pub type TlsStream = tokio_rustls::TlsStream<Plain>;

/// The plain halves under a TLS stream, rejoined, and the bytes already read from the client
/// that belong to the TLS handshake (a client sends its ClientHello right behind its SSL
/// request, and the login reader may have taken both at once): read before the socket.
pub struct Plain {
    pub prefix: Vec<u8>,
    pub r: ReadHalf,
    pub w: WriteHalf,
}

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.prefix.is_empty() {
            let n = me.prefix.len().min(buf.remaining());
            buf.put_slice(&me.prefix[..n]);
            me.prefix.drain(..n);
            if me.prefix.is_empty() {
                // Read once; not kept for the life of the connection.
                me.prefix = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.r).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().w).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_shutdown(cx)
    }
}

impl ReadHalf {
    /// Whether the peer closed the stream or sent something unasked, for a stream that should
    /// be quiet (an idle pooled connection). No system call unless the runtime has seen the
    /// socket readable since the last read; then a non-blocking read of one byte tells. Over
    /// TLS that read goes through the TLS layer (records without data, such as a session
    /// ticket, count as quiet); a byte it returns is lost, but the connection is then closed.
    pub fn hung_up_or_spoke(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self {
            ReadHalf::Tcp(r) => r.as_ref().poll_read_ready(&mut cx),
            ReadHalf::Unix(r) => r.as_ref().poll_read_ready(&mut cx),
            ReadHalf::Tls(r) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                // Ready: data, the end, or an error; pending: quiet.
                return Pin::new(r).poll_read(&mut cx, &mut buf).is_ready();
            }
        };
        match ready {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                let read = match self {
                    ReadHalf::Tcp(r) => r.try_read(&mut byte),
                    ReadHalf::Unix(r) => r.try_read(&mut byte),
                    // Answered above.
                    ReadHalf::Tls(_) => return false,
                };
                !matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// Forwards one `AsyncRead`/`AsyncWrite` method to whichever stream the enum holds.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            Self::Unix($s) => $e,
            Self::Tls($s) => $e,
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
            Self::Tls(s) => s.is_write_vectored(),
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

    #[tokio::test]
    async fn backend_sockets_find_a_silent_dead_peer() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let Stream::Tcp(s) = Stream::connect(Endpoint::of(&addr)).await.expect("connect") else {
            panic!("not TCP");
        };
        let sock = socket2::SockRef::from(&s);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            std::time::Duration::from_secs(30)
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            sock.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(std::time::Duration::from_secs(60))
        );
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rwsplit-net-{}-{name}", std::process::id()))
    }

    async fn answers(path: &Path) -> bool {
        tokio::net::UnixStream::connect(path).await.is_ok()
    }

    #[tokio::test]
    async fn a_socket_replaces_a_dead_one_or_an_rwsplits_and_leaves_anything_else_alone() {
        let path = temp_path("bind.sock");
        let lock = UnixSocket::lock_path(&path);
        let _ = std::fs::remove_file(&path);
        // Left by a process that died: the file stays, nothing listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut old = UnixSocket::bind(&path, false)
            .await
            .expect("a dead socket is replaced");
        // Not at the path until published: the dead file is still there.
        assert!(!answers(&path).await);
        old.publish().unwrap();
        assert!(answers(&path).await);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        let lock_mode = std::fs::metadata(&lock).unwrap().permissions().mode();
        assert_eq!(lock_mode & 0o777, 0o600);

        // A live rwsplit's is kept unless taking over.
        let e = UnixSocket::bind(&path, false)
            .await
            .err()
            .expect("a live socket is kept");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // A successor that never publishes (it failed to start) leaves the path to the old one.
        let failed = UnixSocket::bind(&path, true).await.expect("bound beside");
        drop(failed);
        assert!(
            answers(&path).await,
            "a failed successor took the socket away"
        );
        let mut new = UnixSocket::bind(&path, true).await.expect("taken over");
        new.publish().unwrap();
        // The old listener going away leaves the new one's file.
        drop(old);
        assert!(
            answers(&path).await,
            "the drained process removed its successor's socket"
        );
        drop(new);
        assert!(!path.exists(), "the socket outlived its listener");

        // Another program's live socket (a server's) is never taken over.
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = UnixSocket::bind(&path, true)
            .await
            .err()
            .expect("another program's is kept");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(".rwsplit-lock"), "{e}");
        assert!(answers(&path).await);
        drop(server);
        std::fs::remove_file(&path).unwrap();

        std::fs::write(&path, b"data").unwrap();
        let e = UnixSocket::bind(&path, true)
            .await
            .err()
            .expect("a plain file is in the way");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        std::fs::remove_file(&path).unwrap();
        let _ = std::fs::remove_file(lock);
    }

    #[tokio::test]
    async fn a_backend_socket_with_a_full_backlog_is_waited_for_not_failed() {
        use std::os::fd::AsRawFd;
        let path = temp_path("backlog.sock");
        let _ = std::fs::remove_file(&path);
        let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) on a socket this test owns; a second listen sets the backlog.
        assert_eq!(unsafe { libc::listen(server.as_raw_fd(), 0) }, 0);
        // Fill the queue until a connect fails at once with EAGAIN.
        let mut queued = Vec::new();
        let full = loop {
            match UnixStream::connect(&path).await {
                Ok(s) => queued.push(s),
                Err(e) => break e,
            }
            assert!(queued.len() < 64, "the backlog never filled");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        let connect = tokio::spawn({
            let path = path.clone();
            async move { Stream::connect(Endpoint::Unix(&path)).await.map(|_| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(
            !connect.is_finished(),
            "failed or got in while the queue was full"
        );
        // The server takes one: the waiting connect gets in.
        let _taken = server.accept().unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), connect).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn a_start_waits_while_another_rwsplit_decides_and_then_gives_up() {
        let path = temp_path("busy.sock");
        let lock_path = UnixSocket::lock_path(&path);
        let held = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap();
        held.lock().unwrap();
        let e = UnixSocket::bind(&path, true)
            .await
            .err()
            .expect("no decision while locked");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("stayed locked"), "{e}");
        drop(held);
        let _ = std::fs::remove_file(lock_path);
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
