//! Client socket buffers that exist only while bytes move.
//!
//! A session spends nearly all its life waiting for the client's next command. Holding a read
//! and a write buffer through that wait is what makes idle clients expensive (tokio's
//! `BufReader`/`BufWriter` keep theirs for the life of the connection: about 12 KiB of touched
//! memory per client). These take a buffer from a per-thread free list when a read or write
//! starts and give it back once the read would block with nothing buffered, or once a flush
//! has written everything. Ten thousand idle clients then hold no buffers at all, while a busy
//! session reuses warm ones (no allocation, no page faults per statement) without a lock.
//!
//! Hand-written because tokio's buffered types cannot give their buffer up while idle.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

/// Read buffer size: a whole typical command in one read.
pub const READ_BUF: usize = 16 * 1024;
/// Write buffer size: a typical result set in one write.
pub const WRITE_BUF: usize = 64 * 1024;
/// Free buffers each thread keeps (more are freed).
const KEEP: usize = 64;

thread_local! {
    static FREE_READ: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static FREE_WRITE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_read() -> Box<[u8]> {
    FREE_READ
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; READ_BUF].into_boxed_slice())
}

fn give_read(b: Box<[u8]>) {
    FREE_READ.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(b);
        }
    });
}

fn take_write() -> Vec<u8> {
    FREE_WRITE
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(WRITE_BUF))
}

fn give_write(mut b: Vec<u8>) {
    if b.capacity() != WRITE_BUF {
        return;
    }
    b.clear();
    FREE_WRITE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(b);
        }
    });
}

/// A buffered reader whose buffer is lent only while data is buffered.
pub struct Reader<R> {
    inner: R,
    buf: Option<Box<[u8]>>,
    pos: usize,
    filled: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            buf: None,
            pos: 0,
            filled: 0,
        }
    }

    /// What is buffered and not yet consumed.
    pub fn buffer(&self) -> &[u8] {
        self.buf
            .as_deref()
            .and_then(|b| b.get(self.pos..self.filled))
            .unwrap_or(&[])
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The stream, and what was buffered from it and not consumed (the buffer goes back to the
    /// free list).
    pub fn into_inner(mut self) -> (Vec<u8>, R) {
        let rest = self.buffer().to_vec();
        if let Some(b) = self.buf.take() {
            give_read(b);
        }
        (rest, self.inner)
    }

    /// Holds a buffer now (for tests of the lending).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for Reader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let me = self.get_mut();
        if me.pos >= me.filled {
            let mut b = me.buf.take().unwrap_or_else(take_read);
            let mut rb = ReadBuf::new(&mut b);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    me.pos = 0;
                    me.filled = n;
                    if n == 0 {
                        give_read(b);
                        return Poll::Ready(Ok(&[]));
                    }
                    me.buf = Some(b);
                }
                Poll::Ready(Err(e)) => {
                    give_read(b);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    // Nothing buffered and nothing to read: wait without a buffer.
                    give_read(b);
                    me.pos = 0;
                    me.filled = 0;
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(me
            .buf
            .as_deref()
            .and_then(|b| b.get(me.pos..me.filled))
            .unwrap_or(&[])))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let me = self.get_mut();
        me.pos = me.pos.saturating_add(amt).min(me.filled);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos >= self.filled && out.remaining() >= READ_BUF {
            // A large read with nothing buffered goes straight to the caller's memory.
            if let Some(b) = self.buf.take() {
                give_read(b);
            }
            return Pin::new(&mut self.inner).poll_read(cx, out);
        }
        let have = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = have.len().min(out.remaining());
        out.put_slice(&have[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

/// A buffered writer whose buffer is lent from the first write until a flush empties it.
pub struct Writer<W> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes of `buf` already written by a flush in progress.
    written: usize,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(inner: W) -> Writer<W> {
        Writer {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// The stream; anything written and not flushed is dropped (flush first).
    pub fn into_inner(self) -> W {
        if self.buf.capacity() > 0 {
            give_write(self.buf);
        }
        self.inner
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes `data` after whatever is buffered (not flushed). With nothing buffered, `data`
    /// goes straight to the socket without a copy into a buffer: the end of a response,
    /// forwarded from the backend connection's read buffer, which the caller flushes next (a
    /// result read whole is one write either way).
    pub async fn write_through(&mut self, data: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if self.buf.is_empty() {
            self.inner.write_all(data).await
        } else {
            self.write_all(data).await
        }
    }

    /// Holds a buffer now (for tests of the lending).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Writer<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.buf.len() + data.len() > WRITE_BUF {
            ready!(me.poll_write_out(cx))?;
        }
        if data.len() >= WRITE_BUF {
            return Pin::new(&mut me.inner).poll_write(cx, data);
        }
        if me.buf.capacity() == 0 {
            me.buf = take_write();
        }
        me.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_write_out(cx))?;
        if me.buf.capacity() > 0 {
            give_write(std::mem::take(&mut me.buf));
        }
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_write_out(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

/// A writer that fails with `TimedOut` once writing has made no progress for `limit`: a client
/// that stops reading its results would otherwise hold the session, and the backend connection
/// the response comes from, forever (the server's `net_write_timeout`). The timer is armed
/// only when the socket is full, so a write that goes through at once reads no clock.
pub struct Stalls<W> {
    inner: W,
    limit: std::time::Duration,
    since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<W> Stalls<W> {
    pub fn new(inner: W, limit: std::time::Duration) -> Stalls<W> {
        Stalls {
            inner,
            limit,
            since: None,
        }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }

    /// After `Pending` from the socket: `Ready(Err)` once it has been so for `limit`.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let since = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match std::future::Future::poll(since.as_mut(), cx) {
            Poll::Ready(()) => {
                self.since = None;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?} (proxy.net_timeout)"),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Stalls<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.since = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.since = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn buffers_are_held_only_while_bytes_wait() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let mut w = Writer::new(aw);
        let mut r = Reader::new(br);
        assert!(!w.holds_buffer() && !r.holds_buffer());

        w.write_all(b"hello ").await.unwrap();
        assert!(w.holds_buffer(), "a write takes a buffer");
        w.write_all(b"world").await.unwrap();
        w.flush().await.unwrap();
        assert!(!w.holds_buffer(), "a flush gives it back");

        let mut got = [0u8; 5];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert!(r.holds_buffer(), "the rest is buffered");
        assert_eq!(r.buffer(), b" world");
        let mut rest = [0u8; 6];
        r.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b" world");
        // Waiting for more with nothing buffered: the buffer goes back.
        let wait = tokio::time::timeout(std::time::Duration::from_millis(20), r.fill_buf()).await;
        assert!(wait.is_err());
        assert!(!r.holds_buffer());

        // Large writes and reads go past the buffers, in order with what was buffered.
        let big: Vec<u8> = (0..3 * WRITE_BUF).map(|i| i as u8).collect();
        w.write_all(b"x").await.unwrap();
        w.write_all(&big).await.unwrap();
        w.flush().await.unwrap();
        let mut back = vec![0u8; big.len() + 1];
        r.read_exact(&mut back).await.unwrap();
        assert_eq!(back[0], b'x');
        assert_eq!(&back[1..], &big[..]);

        drop(w);
        drop(_keep(ar, bw));
        assert_eq!(r.fill_buf().await.unwrap(), b"", "end of stream");
    }

    /// Records where each write's bytes came from.
    #[derive(Default)]
    struct Sink {
        got: Vec<u8>,
        from: Vec<*const u8>,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            me.from.push(data.as_ptr());
            me.got.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_write_through_with_nothing_buffered_is_not_copied() {
        let mut w = Writer::new(Sink::default());
        let one = b"one".to_vec();
        w.write_through(&one).await.unwrap();
        assert_eq!(
            w.inner.from,
            [one.as_ptr()],
            "written from the caller's bytes"
        );
        assert!(!w.holds_buffer());
        // Behind buffered bytes it is buffered too: one write at the flush, in order.
        w.write_all(b" two").await.unwrap();
        let three = b" three".to_vec();
        w.write_through(&three).await.unwrap();
        assert_eq!(w.inner.from.len(), 1, "nothing written before the flush");
        w.flush().await.unwrap();
        assert_eq!(w.inner.from.len(), 2);
        assert_ne!(w.inner.from[1], three.as_ptr());
        assert_eq!(w.inner.got, b"one two three");
        assert!(!w.holds_buffer(), "flushed, and the buffer given back");
    }

    /// The session reads a client packet already whole in this buffer without a timeout
    /// (`frame::whole_packet_buffered`): that read must finish without waiting on the socket.
    #[tokio::test]
    async fn a_whole_buffered_packet_is_read_without_waiting_on_the_socket() {
        use crate::protocol::frame;
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut wire = Vec::new();
        frame::encode_packet(&mut wire, 0, b"\x03SELECT 1");
        frame::encode_packet(&mut wire, 0, b"\x03SELECT 2");
        client.write_all(&wire).await.unwrap();
        let mut r = Reader::new(server);
        r.fill_buf().await.unwrap();
        let mut packet = Vec::new();
        for want in [&b"\x03SELECT 1"[..], b"\x03SELECT 2"] {
            assert!(frame::whole_packet_buffered(r.buffer()));
            // Polled once: nothing more will come from the client (it stays open), so a read
            // that touched the socket would be pending.
            {
                let mut read = std::pin::pin!(frame::read_packet(&mut r, &mut packet, 1 << 20));
                let mut cx = Context::from_waker(std::task::Waker::noop());
                assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(0))));
            }
            assert_eq!(packet, want);
        }
        assert!(!frame::whole_packet_buffered(r.buffer()));
        drop(client);
    }

    fn _keep<A, B>(a: A, b: B) -> (A, B) {
        (a, b)
    }
}
