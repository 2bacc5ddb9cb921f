//! The socket side of a connection: the HTTP head decides between the token endpoint
//! (`POST /v1alpha/auth_tokens`, plain HTTP/1.1) and a WebSocket; then frames in and out of a
//! [`Core`] until one side closes.
//!
//! Output is written frame by frame and awaited, so the outbound queue is tungstenite's write
//! buffer (one frame at a time, at most [`MAX_WRITE_BUFFER`]) plus the kernel's socket buffer. A
//! client that stops reading stalls its own session only; after [`SEND_STALL`] the connection
//! is dropped. With the `delay` fault, frames wait in a queue bounded by [`MAX_DELAYED`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};
use tracing::{debug, info, warn};

use super::handshake::{self, ConnectInfo};
use super::metrics::{add, dec, inc};
use super::session::{Core, Out};
use super::shared::Shared;
use super::stream::{Io, SimStream, StreamControl};
use live_npc_client::http;
use live_npc_client::protocol::{reasons, truncate_reason};

/// Largest client message accepted.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// Most bytes waiting to be written: frames are sent one at a time, so this only bounds a single
/// frame (room for the largest `oversized_frame` fault).
const MAX_WRITE_BUFFER: usize = super::script::MAX_OVERSIZED_FRAME + (1 << 20);
/// Most frames waiting in the `delay` fault's queue; past it, output waits for the queue.
const MAX_DELAYED: usize = 4096;
/// The token endpoint's path.
const AUTH_TOKENS: &str = "/v1alpha/auth_tokens";
/// Time allowed for the TLS and WebSocket handshakes.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that cannot make progress this long drops the connection.
const SEND_STALL: Duration = Duration::from_secs(15);
/// How long a resuming setup waits for the old connection of its session to go away.
const RESUME_GRACE: Duration = Duration::from_millis(300);
/// How long to wait for the client's side of a close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<Box<dyn Io>>;

/// How the session ended.
enum End {
    /// The client went away (close frame, EOF or an error).
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
    /// Drop the connection without a close frame.
    Drop,
}

/// Serves one accepted connection to its end: the token endpoint or a WebSocket session.
pub(crate) async fn serve(mut stream: Box<dyn Io>, shared: Arc<Shared>) {
    let mut head = Vec::with_capacity(1024);
    let end = match timeout(HANDSHAKE_TIMEOUT, http::read_head(&mut stream, &mut head)).await {
        Ok(Ok(Some(end))) => end,
        Ok(Ok(None)) => return debug!("live-sim: no complete HTTP head"),
        Ok(Err(e)) => return debug!("live-sim: reading the HTTP head failed: {e}"),
        Err(_) => return debug!("live-sim: handshake timed out"),
    };
    if let Some(req) = http::parse_request(&head[..end])
        && req.path.trim_start_matches('/') == AUTH_TOKENS.trim_start_matches('/')
    {
        return auth_tokens(stream, req, &head[end..], &shared).await;
    }
    let extra = head.split_off(end);
    let ctl = Arc::new(StreamControl::default());
    let stream: Box<dyn Io> = Box::new(SimStream::new(stream, head, extra, ctl.clone()));
    let conn = shared.next_connection();
    inc(&shared.metrics.connections_open);
    websocket(stream, shared.clone(), conn, ctl).await;
    dec(&shared.metrics.connections_open);
}

/// `POST /v1alpha/auth_tokens`: mints an ephemeral token (plain HTTP/1.1, one request).
async fn auth_tokens(mut stream: Box<dyn Io>, mut req: http::Request, extra: &[u8], shared: &Shared) {
    let (status, body) = if req.method != "POST" {
        (405, http::error_body(405, "Method not allowed: use POST."))
    } else if let Err((status, message)) = http::read_body(&mut stream, &mut req, extra).await {
        (status, http::error_body(status, message))
    } else {
        let mut credentials = req.query_values("key");
        credentials.extend(req.header("x-goog-api-key").map(str::to_owned));
        credentials.retain(|c| !c.is_empty());
        let key = shared.config.api_key.as_deref();
        if credentials.iter().any(|c| c.starts_with("auth_tokens/")) {
            // A token cannot mint tokens.
            (400, http::error_body(400, reasons::API_KEY_INVALID))
        } else if key.is_some() && credentials.is_empty() {
            (403, http::error_body(403, reasons::UNREGISTERED_CALLER))
        } else if key.is_some_and(|k| !credentials.iter().any(|c| c == k)) {
            (400, http::error_body(400, reasons::API_KEY_INVALID))
        } else {
            match shared.tokens.mint_json(&req.body, shared.wall_now(), shared.config.strict) {
                Ok(token) => {
                    inc(&shared.metrics.tokens_minted);
                    info!("live-sim: minted a token (uses {:?})", token.uses);
                    (200, serde_json::to_vec(&token).unwrap_or_default())
                }
                Err(e) => (400, http::error_body(400, &e.0)),
            }
        }
    };
    if let Err(e) = http::write_json(&mut stream, status, &body).await {
        debug!("live-sim: writing the token response failed: {e}");
    }
    let _ = timeout(CLOSE_LINGER, stream.shutdown()).await;
}

async fn websocket(stream: Box<dyn Io>, shared: Arc<Shared>, conn: u64, ctl: Arc<StreamControl>) {
    let mut info: Option<ConnectInfo> = None;
    // The callback's error type is tungstenite's HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| match handshake::check(req) {
        Some(i) => {
            info = Some(i);
            Ok(resp)
        }
        None => {
            debug!("live-sim: #{conn} no such path: {}", req.uri().path());
            Err(handshake::not_found())
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .max_write_buffer_size(MAX_WRITE_BUFFER);
    let accepted = timeout(HANDSHAKE_TIMEOUT, accept_hdr_async_with_config(stream, callback, Some(config))).await;
    let mut ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return debug!("live-sim: #{conn} handshake failed: {e}"),
        Err(_) => return debug!("live-sim: #{conn} handshake timed out"),
    };
    let Some(info) = info else {
        return;
    };
    info!("live-sim: #{conn} connected ({})", info.version);
    let mut core = Core::new(shared.clone(), conn, info, Instant::now());
    let mut pump =
        Pump { shared, ctl, delay: None, delayed: VecDeque::new(), last_due: Instant::now(), paused_until: None };
    let end = pump.run(&mut ws, &mut core).await;
    // The session is free for resumption before the client can see the connection end.
    core.release();
    finish(ws, end, conn).await;
}

/// Socket-level state of a connection: its faults (latency, a paused reader, slow pongs).
struct Pump {
    shared: Arc<Shared>,
    ctl: Arc<StreamControl>,
    /// `delay` fault: (fixed, jitter).
    delay: Option<(Duration, Duration)>,
    /// Frames (and the final close) waiting for their delivery time.
    delayed: VecDeque<(Instant, Out)>,
    last_due: Instant,
    /// `slow_reader` fault: no reading until then (`None` = reading).
    paused_until: Option<Instant>,
}

impl Pump {
    async fn run(&mut self, ws: &mut Ws, core: &mut Core) -> End {
        let mut out = Vec::new();
        loop {
            core.take_out(&mut out);
            for o in out.drain(..) {
                match o {
                    Out::Latency { delay, jitter } => self.delay = Some((delay, jitter)),
                    Out::PauseReading(d) => {
                        let now = Instant::now();
                        self.paused_until = Some(d.map_or(now + Duration::from_secs(100 * 365 * 86_400), |d| now + d));
                    }
                    Out::SlowPongs(d) => {
                        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                        self.ctl.pong_delay_ms.store(ms, Ordering::Relaxed);
                    }
                    other => match self.delay {
                        None if self.delayed.is_empty() => {
                            if let Some(end) = self.send(ws, other).await {
                                return end;
                            }
                        }
                        _ => {
                            let (fixed, jitter) = self.delay.unwrap_or_default();
                            let extra = jitter.mul_f64(fastrand::f64());
                            let due = (Instant::now() + fixed + extra).max(self.last_due);
                            self.last_due = due;
                            if self.delayed.len() >= MAX_DELAYED {
                                // Bounded: wait for the oldest to be due and send it.
                                if let Some((t, o)) = self.delayed.pop_front() {
                                    sleep_until(t.into()).await;
                                    if let Some(end) = self.send(ws, o).await {
                                        return end;
                                    }
                                }
                            }
                            self.delayed.push_back((due, other));
                        }
                    },
                }
            }
            // Delayed frames that are due.
            while self.delayed.front().is_some_and(|(t, _)| *t <= Instant::now()) {
                if let Some((_, o)) = self.delayed.pop_front()
                    && let Some(end) = self.send(ws, o).await
                {
                    return end;
                }
            }
            if self.paused_until.is_some_and(|t| t <= Instant::now()) {
                self.paused_until = None;
            }
            let wake = [core.next_wakeup(), self.delayed.front().map(|(t, _)| *t), self.paused_until]
                .into_iter()
                .flatten()
                .min();
            let tick = async {
                match wake {
                    Some(t) => sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let reading = self.paused_until.is_none();
            tokio::select! {
                frame = ws.next(), if reading => match frame {
                    Some(Ok(Message::Text(text))) => {
                        self.count_in(text.len());
                        on_frame(core, text.as_bytes()).await;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.count_in(bytes.len());
                        on_frame(core, &bytes).await;
                    }
                    Some(Ok(Message::Close(_))) | None => return End::Gone,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return read_error(e),
                },
                () = tick => core.on_tick(Instant::now()),
            }
        }
    }

    fn count_in(&self, bytes: usize) {
        let m = &self.shared.metrics;
        inc(&m.messages_in);
        add(&m.bytes_in, bytes as u64);
    }

    /// Sends one output item; `Some` when the connection ends.
    async fn send(&mut self, ws: &mut Ws, out: Out) -> Option<End> {
        let message = match out {
            Out::Frame(bytes) => Message::binary(bytes),
            Out::Text(text) => Message::text(text),
            Out::Close(code, reason) => return Some(End::Close(code, reason)),
            Out::Drop => return Some(End::Drop),
            Out::Latency { .. } | Out::PauseReading(_) | Out::SlowPongs(_) => {
                warn!("live-sim: a connection setting reached the send queue");
                return None;
            }
        };
        let len = message.len() as u64;
        if !matches!(timeout(SEND_STALL, ws.send(message)).await, Ok(Ok(()))) {
            return Some(End::Gone);
        }
        let m = &self.shared.metrics;
        inc(&m.messages_out);
        add(&m.bytes_out, len);
        None
    }
}

async fn on_frame(core: &mut Core, bytes: &[u8]) {
    if let Some(handle) = core.resume_handle(bytes) {
        // Resuming right after the old connection dropped: give it a moment to be noticed.
        let until = Instant::now() + RESUME_GRACE;
        while core.handle_busy(&handle) && Instant::now() < until {
            sleep(Duration::from_millis(10)).await;
        }
    }
    core.on_frame(bytes, Instant::now());
}

fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(c) => End::Close(1009, c.to_string()),
        WsError::Utf8(_) => End::Close(1007, "Invalid UTF-8 in text frame.".to_owned()),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        WsError::Protocol(p) => End::Close(1002, p.to_string()),
        other => {
            debug!("live-sim: read error: {other}");
            End::Gone
        }
    }
}

async fn finish(mut ws: Ws, end: End, conn: u64) {
    match end {
        End::Gone => info!("live-sim: #{conn} client left"),
        End::Close(code, reason) => {
            info!("live-sim: #{conn} closing {code} {reason}");
            let frame = CloseFrame { code: CloseCode::from(code), reason: truncate_reason(&reason).into() };
            let _ = timeout(CLOSE_LINGER, ws.close(Some(frame))).await;
        }
        End::Drop => {
            info!("live-sim: #{conn} dropping the connection (no close frame)");
            let _ = timeout(CLOSE_LINGER, ws.get_mut().shutdown()).await;
        }
    }
    // Read until the client closes too, so nothing it has not read yet is reset away.
    let _ = timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
