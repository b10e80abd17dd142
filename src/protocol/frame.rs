//! Packet framing: the 4-byte header (3-byte little-endian length, 1-byte sequence id).
//!
//! Hand-written rather than `mysql_common::proto::codec::PacketCodec` because the data path needs
//! two things the codec does not give: response frames copied through one at a time (so a 1 GiB
//! result never sits in memory), and a reassembly limit checked before the buffer grows.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::response::MAX_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("packet of {size} bytes is larger than the limit of {limit} bytes")]
    /// `seq`: the sequence id of the frame that went past the limit (an answer takes the next).
    TooLarge { size: u64, limit: u64, seq: u8 },
    #[error("packets out of order: expected sequence id {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
}

/// One frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
    pub seq: u8,
}

impl FrameHeader {
    pub fn encode(self) -> [u8; 4] {
        let l = self.len as u32;
        [l as u8, (l >> 8) as u8, (l >> 16) as u8, self.seq]
    }

    pub fn decode(b: [u8; 4]) -> Self {
        FrameHeader {
            len: b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16,
            seq: b[3],
        }
    }
}

/// Reads one frame header. A clean EOF before any byte is `Closed`.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<FrameHeader, FrameError> {
    let mut b = [0u8; 4];
    match r.read_exact(&mut b).await {
        Ok(_) => Ok(FrameHeader::decode(b)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// The frame `buf` starts with, header and payload, if it is whole in `buf`.
pub fn buffered_frame(buf: &[u8]) -> Option<(FrameHeader, &[u8])> {
    let &[a, b, c, seq] = buf.get(..4)? else {
        return None;
    };
    let h = FrameHeader::decode([a, b, c, seq]);
    Some((h, buf.get(4..4 + h.len)?))
}

/// Whether `buf` starts with a whole packet of one frame: reading it cannot wait.
pub fn whole_packet_buffered(buf: &[u8]) -> bool {
    buffered_frame(buf).is_some_and(|(h, _)| h.len < MAX_FRAME)
}

/// The most a packet's buffer grows ahead of the bytes that arrived.
const GROW: usize = 64 * 1024;

/// Reads one logical packet (reassembling continuation frames) into `buf`, which is cleared first.
/// Returns the sequence id of the last frame. Refuses packets over `limit` bytes before reading
/// their payload, so a hostile length cannot make the buffer grow; and the buffer grows as the
/// payload arrives (`GROW` at a time), so a header alone, declaring 16 MiB, commits 64 KiB.
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: u64,
) -> Result<u8, FrameError> {
    read_packet_within(r, buf, limit, None).await
}

/// Runs `f`, failing with `TimedOut` if it takes longer than `stall` (no limit: `None`): a
/// read from a peer that stopped sending in the middle of a packet.
pub async fn within<T>(
    stall: Option<std::time::Duration>,
    f: impl std::future::Future<Output = Result<T, FrameError>>,
) -> Result<T, FrameError> {
    match stall {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f).await.map_err(|_| {
            FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the peer sent nothing for {d:?} in the middle of a packet"),
            ))
        })?,
    }
}

/// `read_packet`, failing with `TimedOut` when the peer sends nothing for `stall` at any point
/// (the server's `net_read_timeout`): a slow upload goes on as long as bytes keep coming.
pub async fn read_packet_within<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: u64,
    stall: Option<std::time::Duration>,
) -> Result<u8, FrameError> {
    buf.clear();
    loop {
        let h = within(stall, read_header(r)).await?;
        let size = buf.len() as u64 + h.len as u64;
        if size > limit {
            return Err(FrameError::TooLarge {
                size,
                limit,
                seq: h.seq,
            });
        }
        let mut left = h.len;
        while left > 0 {
            let start = buf.len();
            let n = left.min(GROW);
            buf.resize(start + n, 0);
            let read = async {
                r.read_exact(&mut buf[start..]).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        FrameError::Closed
                    } else {
                        FrameError::Io(e)
                    }
                })
            };
            within(stall, read).await?;
            left -= n;
        }
        if h.len < MAX_FRAME {
            return Ok(h.seq);
        }
    }
}

/// Appends `payload` to `out` as one logical packet starting at sequence id `seq`, split into
/// frames as the protocol requires. Returns the next sequence id.
pub fn encode_packet(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.extend_from_slice(&FrameHeader { len: n, seq }.encode());
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return seq;
        }
    }
}

/// Writes `payload` as one logical packet (not flushed). Returns the next sequence id.
pub async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut seq: u8,
    payload: &[u8],
) -> Result<u8, FrameError> {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        w.write_all(&FrameHeader { len: n, seq }.encode()).await?;
        w.write_all(&rest[..n]).await?;
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return Ok(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_buffered_packet_is_told_from_a_partial_or_continued_one() {
        let mut wire = Vec::new();
        encode_packet(&mut wire, 0, b"\x03SELECT 1");
        assert!(whole_packet_buffered(&wire));
        // And with the next packet behind it.
        encode_packet(&mut wire, 0, b"\x0e");
        assert!(whole_packet_buffered(&wire));
        assert!(whole_packet_buffered(&[0, 0, 0, 0]));
        for cut in 0..13 {
            assert!(!whole_packet_buffered(&wire[..cut]), "cut at {cut}");
        }
        // A full-size frame is followed by a continuation: not whole.
        let mut big = vec![0xff, 0xff, 0xff, 0];
        big.resize(4 + MAX_FRAME, 0);
        assert!(!whole_packet_buffered(&big));
    }

    #[tokio::test]
    async fn a_packet_round_trips_through_encode_and_read() {
        let mut wire = Vec::new();
        let next = encode_packet(&mut wire, 3, b"hello");
        assert_eq!(next, 4);
        let mut buf = Vec::new();
        let seq = read_packet(&mut &wire[..], &mut buf, 1 << 20)
            .await
            .unwrap();
        assert_eq!((seq, &buf[..]), (3, &b"hello"[..]));
    }

    #[tokio::test]
    async fn a_packet_over_16_mib_is_split_and_reassembled() {
        let payload = vec![7u8; MAX_FRAME * 2 + 10];
        let mut wire = Vec::new();
        let next = encode_packet(&mut wire, 0, &payload);
        assert_eq!(next, 3, "three frames");
        let mut buf = Vec::new();
        let seq = read_packet(&mut &wire[..], &mut buf, 1 << 30)
            .await
            .unwrap();
        assert_eq!(seq, 2);
        assert_eq!(buf.len(), payload.len());
    }

    #[tokio::test]
    async fn a_packet_of_exactly_16_mib_ends_with_an_empty_frame() {
        let payload = vec![1u8; MAX_FRAME];
        let mut wire = Vec::new();
        assert_eq!(encode_packet(&mut wire, 0, &payload), 2);
        assert_eq!(wire.len(), MAX_FRAME + 8);
    }

    #[tokio::test]
    async fn a_packet_over_the_limit_is_refused_before_reading_it() {
        let wire = FrameHeader { len: 1000, seq: 0 }.encode();
        let mut buf = Vec::new();
        let err = read_packet(&mut &wire[..], &mut buf, 100)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 1000,
                limit: 100,
                seq: 0,
            }
        ));
        assert!(buf.capacity() < 1000);
    }

    #[tokio::test]
    async fn a_truncated_packet_is_a_closed_connection() {
        let mut wire = FrameHeader { len: 10, seq: 0 }.encode().to_vec();
        wire.extend_from_slice(b"abc");
        let mut buf = Vec::new();
        let err = read_packet(&mut &wire[..], &mut buf, 100)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Closed));
    }
}
