//! The socket side of a connection: WebSocket handshake, then frames in and out of a
//! [`Core`] until one side closes.
//!
//! Output is written frame by frame and awaited, so the outbound queue is tungstenite's write
//! buffer (bounded by [`MAX_WRITE_BUFFER`]) plus the kernel's socket buffer. A client that
//! stops reading stalls its own session only; after [`SEND_STALL`] the connection is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::log::{debug, info};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

use super::Shared;
use super::handshake::{self, ConnectInfo};
use super::session::{Core, Out};
use crate::protocol::truncate_reason;

/// A byte stream a connection runs on (TCP or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Largest client message accepted.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// Most bytes waiting to be written before a send waits for the socket.
const MAX_WRITE_BUFFER: usize = 1 << 20;
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

/// Serves one accepted connection to its end.
pub(crate) async fn serve(stream: Box<dyn Io>, shared: Arc<Shared>, conn: u64) {
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
    let accepted = timeout(
        HANDSHAKE_TIMEOUT,
        accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await;
    let mut ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return debug!("live-sim: #{conn} handshake failed: {e}"),
        Err(_) => return debug!("live-sim: #{conn} handshake timed out"),
    };
    let Some(info) = info else {
        return;
    };
    info!("live-sim: #{conn} connected ({})", info.version);
    let mut core = Core::new(shared, conn, info, Instant::now());
    let end = pump(&mut ws, &mut core).await;
    // The session is free for resumption before the client can see the connection end.
    core.release();
    finish(ws, end, conn).await;
}

async fn pump(ws: &mut Ws, core: &mut Core) -> End {
    let mut out = Vec::new();
    loop {
        core.take_out(&mut out);
        for o in out.drain(..) {
            match o {
                Out::Frame(bytes) => {
                    if !matches!(timeout(SEND_STALL, ws.send(Message::binary(bytes))).await, Ok(Ok(()))) {
                        return End::Gone;
                    }
                }
                Out::Close(code, reason) => return End::Close(code, reason),
                Out::Drop => return End::Drop,
            }
        }
        let wake = core.next_wakeup();
        let tick = async {
            match wake {
                Some(t) => sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => on_frame(core, text.as_bytes()).await,
                Some(Ok(Message::Binary(bytes))) => on_frame(core, &bytes).await,
                Some(Ok(Message::Close(_))) | None => return End::Gone,
                Some(Ok(_)) => {}
                Some(Err(e)) => return read_error(e),
            },
            () = tick => core.on_tick(Instant::now()),
        }
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
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: truncate_reason(&reason).into(),
            };
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
