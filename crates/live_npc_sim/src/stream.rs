//! The byte stream under a simulator WebSocket: replays the HTTP head read while routing the
//! request, then follows the client's WebSocket frames so that pings can be held back (the
//! `slow_pongs` fault: tungstenite answers a ping as soon as it reads it, so a late pong is a
//! ping delivered late). Other frames pass through unchanged and in order.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A byte stream a connection runs on (TCP or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Settings a connection's faults change while it runs.
#[derive(Debug, Default)]
pub(crate) struct StreamControl {
    /// Pong delay in milliseconds (0 = none).
    pub pong_delay_ms: AtomicU64,
}

/// WebSocket opcode of a ping.
const PING: u8 = 0x9;
/// Compact the read buffer once this much of it has been consumed.
const COMPACT: usize = 16 * 1024;

pub(crate) struct SimStream {
    inner: Box<dyn Io>,
    /// The HTTP head, replayed first.
    head: Vec<u8>,
    head_pos: usize,
    /// Bytes read from `inner` (after the head) not yet handed out: `raw[start..]`.
    raw: Vec<u8>,
    start: usize,
    /// Bytes of the current frame still to pass through.
    pass: usize,
    /// Held pings (whole frames) and when they may be delivered.
    held: VecDeque<(Instant, Vec<u8>)>,
    /// A released ping being handed out.
    out: Vec<u8>,
    out_pos: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    eof: bool,
    ctl: Arc<StreamControl>,
}

impl SimStream {
    /// `head` is replayed first; `extra` (bytes read past the head) are the first frame bytes.
    pub fn new(inner: Box<dyn Io>, head: Vec<u8>, extra: Vec<u8>, ctl: Arc<StreamControl>) -> SimStream {
        SimStream {
            inner,
            head,
            head_pos: 0,
            raw: extra,
            start: 0,
            pass: 0,
            held: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            sleep: None,
            eof: false,
            ctl,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.raw[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.raw.len() {
            self.raw.clear();
            self.start = 0;
        } else if self.start > COMPACT {
            self.raw.drain(..self.start);
            self.start = 0;
        }
    }

    /// Length of the frame header at the front of `raw` and of its payload, if complete.
    fn header(&self) -> Option<(usize, usize)> {
        let b = self.pending();
        if b.len() < 2 {
            return None;
        }
        let masked = b[1] & 0x80 != 0;
        let len7 = usize::from(b[1] & 0x7f);
        let (ext, payload) = match len7 {
            126 => {
                let x = b.get(2..4)?;
                (2, usize::from(u16::from_be_bytes([x[0], x[1]])))
            }
            127 => {
                let x: [u8; 8] = b.get(2..10)?.try_into().ok()?;
                (8, usize::try_from(u64::from_be_bytes(x)).unwrap_or(usize::MAX))
            }
            n => (0, n),
        };
        let header = 2 + ext + if masked { 4 } else { 0 };
        (b.len() >= header).then_some((header, payload))
    }

    /// Moves due pings to `out` (only between frames).
    fn release_due(&mut self, now: Instant) {
        if self.pass == 0
            && self.out_pos >= self.out.len()
            && self.held.front().is_some_and(|(due, _)| *due <= now)
            && let Some((_, frame)) = self.held.pop_front()
        {
            self.out = frame;
            self.out_pos = 0;
        }
    }

    /// Tries to hand out bytes without reading; `true` if some were.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.remaining());
                buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return true;
            }
            if self.pending().is_empty() {
                return false;
            }
            if self.pass > 0 {
                let n = self.pass.min(self.pending().len()).min(buf.remaining());
                buf.put_slice(&self.raw[self.start..self.start + n]);
                self.pass -= n;
                self.consume(n);
                return true;
            }
            let Some((header, payload)) = self.header() else {
                return false;
            };
            let delay = self.ctl.pong_delay_ms.load(Ordering::Relaxed);
            let opcode = self.pending()[0] & 0x0f;
            if opcode == PING && delay > 0 && payload <= 125 {
                let total = header + payload;
                if self.pending().len() < total {
                    return false;
                }
                let frame = self.pending()[..total].to_vec();
                self.consume(total);
                let due = Instant::now() + Duration::from_millis(delay);
                if self.held.len() < 16 {
                    self.held.push_back((due, frame));
                }
                continue;
            }
            self.pass = header.saturating_add(payload);
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head_pos < this.head.len() {
            let n = (this.head.len() - this.head_pos).min(buf.remaining());
            buf.put_slice(&this.head[this.head_pos..this.head_pos + n]);
            this.head_pos += n;
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            this.release_due(Instant::now());
            if this.hand_out(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Held pings die with the connection.
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                        // Whatever is left is handed out as is.
                        this.pass = usize::MAX;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Wake up when the next held ping is due.
                    if let Some(&(due, _)) = this.held.front() {
                        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                        if sleep.deadline() != due {
                            sleep.as_mut().reset(due);
                        }
                        if sleep.as_mut().poll(cx).is_ready() {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn pings_are_held_other_frames_pass() -> io::Result<()> {
        let (mut client, server) = tokio::io::duplex(4096);
        let ctl = Arc::new(StreamControl::default());
        ctl.pong_delay_ms.store(150, Ordering::Relaxed);
        let mut s = SimStream::new(Box::new(server), b"GET / HTTP/1.1\r\n\r\n".to_vec(), Vec::new(), ctl);
        let mut head = [0u8; 18];
        s.read_exact(&mut head).await?;
        // A masked ping (payload "p"), then a masked text frame "hi".
        let ping = [0x89, 0x81, 0, 0, 0, 0, b'p'];
        let text = [0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
        client.write_all(&ping).await?;
        client.write_all(&text).await?;
        let mut got = [0u8; 8];
        s.read_exact(&mut got).await?;
        assert_eq!(got, text, "the text frame overtakes the held ping");
        let start = Instant::now();
        let mut got = [0u8; 7];
        s.read_exact(&mut got).await?;
        assert_eq!(got, ping);
        assert!(start.elapsed() >= Duration::from_millis(140));
        Ok(())
    }
}
