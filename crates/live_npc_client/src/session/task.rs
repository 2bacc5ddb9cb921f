//! The session task: connect, `setup`, pump both directions, switch connections on `goAway`,
//! resume after drops.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::config::{Auth, ModelCapabilities, SessionConfig};
use super::handle::{
    AudioSink, ConnectionState, EventSender, MicQueue, SessionCommand, SessionEvent, SessionMetrics, TextMode,
};
use super::transport::ws_error;
use crate::protocol::{
    ClientMessage, CloseCode, LiveError, OUTPUT_SAMPLE_RATE, Part, Retry, ServerContent, ServerMessage, ServerPayload,
    SessionResumptionConfig, ToolResponse, UsageMetadata,
};
use crate::secret::Secret;
use crate::tls::TlsConnector;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Outbound frames waiting for the writer; bounded by the writer channel.
const WRITER_CAPACITY: usize = 64;
/// The longest `goAway` notice taken from the server (connections last about 10 minutes; a
/// larger `timeLeft` is clamped to this).
pub(crate) const MAX_GO_AWAY: Duration = Duration::from_secs(15 * 60);
/// BLOCKING calls tracked at most (each one withholds mic audio until answered; a server that
/// sends more is answered with errors by the game and not tracked beyond this).
const MAX_PENDING_CALLS: usize = 1024;
/// How often the pump retries stalled events, flushes held input and checks timers.
const TICK: Duration = Duration::from_millis(10);
/// Tool responses and typed input kept until the server confirms reading them (a pong to the
/// ping sent after them); older ones are no longer kept for a replay (counted).
const MAX_UNCONFIRMED: usize = 64;
/// Longest resumption handle kept (real ones are well under 1 KiB).
const MAX_HANDLE_BYTES: usize = 4096;
/// A connection that stays up this long (or completes a model turn) resets the reconnect count.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// How a connection ended.
enum Exit {
    /// Closed on request.
    Closed,
    /// Cannot continue.
    Fatal(LiveError),
    /// The server asked us to move (`goAway`): reconnect now, with the handle.
    Switch,
    /// The connection dropped: reconnect with backoff.
    Dropped(LiveError),
    /// The resumption handle is gone (`session not found`): start a fresh session.
    Fresh(LiveError),
    /// The server refused the provider's token (expired, used up): fetch another and resume.
    Refresh(LiveError),
}

pub(crate) struct SessionTask {
    pub(crate) cfg: SessionConfig,
    pub(crate) commands: mpsc::Receiver<SessionCommand>,
    pub(crate) events: EventSender,
    pub(crate) mic: Arc<MicQueue>,
    pub(crate) sink: Box<dyn AudioSink>,
    pub(crate) metrics: Arc<SessionMetrics>,
    pub(crate) tls: Option<TlsConnector>,
    /// Last handle the server marked resumable.
    handle: Option<String>,
    /// Whether the latest resumption update said resumable.
    resumable_now: bool,
    /// Input held across a connection switch, replayed in order after `setupComplete`.
    held: VecDeque<ClientMessage<'static>>,
    /// Events the channel had no room for; the socket is not read until they are delivered.
    backlog: VecDeque<SessionEvent>,
    /// Reused PCM decode buffer.
    pcm: Vec<i16>,
    in_model_turn: bool,
    last_input_at: Option<Instant>,
    awaiting_first_audio: bool,
    ever_ready: bool,
    had_conversation: bool,
    warned_decode: bool,
    warned_stall: bool,
    rng: fastrand::Rng,
    /// Functions declared `NON_BLOCKING`.
    non_blocking: Vec<String>,
    /// BLOCKING calls not yet answered: streaming audio now would make the server close with
    /// 1008, so mic audio is withheld until they are answered.
    blocking_pending: HashSet<String>,
    /// With [`Auth::Provider`]: the token of the current session and its `expireTime`.
    token: Option<(Secret, Option<std::time::SystemTime>)>,
    /// The connection being opened has a token fetched for it: a refusal before it is open is
    /// not staleness.
    token_fresh: bool,
    /// Tool responses and typed input sent on this connection that the server has not yet
    /// confirmed reading, by sequence number; replayed if the connection ends first.
    unconfirmed: VecDeque<(u64, ClientMessage<'static>)>,
    /// Sequence number of the last tracked message.
    seq: u64,
    /// The current connection completed a model turn.
    turn_done: bool,
    /// Model audio declared at another rate than 24 kHz, converted for the sink.
    #[cfg(feature = "dsp")]
    resampler: Option<crate::dsp::MonoResampler>,
    /// Reused buffer of converted audio.
    converted: Vec<i16>,
}

impl SessionTask {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: SessionConfig,
        commands: mpsc::Receiver<SessionCommand>,
        events: EventSender,
        mic: Arc<MicQueue>,
        sink: Box<dyn AudioSink>,
        metrics: Arc<SessionMetrics>,
        tls: Option<TlsConnector>,
    ) -> Self {
        let rng = fastrand::Rng::with_seed(cfg.jitter_seed);
        let handle = cfg.setup.session_resumption.as_ref().and_then(|r| r.handle.clone());
        let non_blocking = cfg
            .setup
            .function_declarations()
            .filter(|d| d.behavior == Some(crate::protocol::Behavior::NonBlocking))
            .map(|d| d.name.clone())
            .collect();
        SessionTask {
            cfg,
            commands,
            events,
            mic,
            sink,
            metrics,
            tls,
            handle,
            resumable_now: false,
            held: VecDeque::new(),
            backlog: VecDeque::new(),
            pcm: Vec::with_capacity(4800),
            in_model_turn: false,
            last_input_at: None,
            awaiting_first_audio: false,
            ever_ready: false,
            had_conversation: false,
            warned_decode: false,
            warned_stall: false,
            rng,
            non_blocking,
            blocking_pending: HashSet::new(),
            token: None,
            token_fresh: false,
            unconfirmed: VecDeque::new(),
            seq: 0,
            turn_done: false,
            #[cfg(feature = "dsp")]
            resampler: None,
            converted: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        if let Err(e) = ModelCapabilities::of(&self.cfg.setup.model).check(&self.cfg.setup) {
            self.fail(e).await;
            return;
        }
        let mut attempt: u32 = 0;
        loop {
            let state =
                if self.ever_ready { ConnectionState::Reconnecting { attempt } } else { ConnectionState::Connecting };
            self.emit(SessionEvent::State(state)).await;
            let resuming = self.handle.is_some() && self.cfg.resumption;
            if !resuming {
                self.drop_stale_responses();
            }
            let connected = self.connect_and_setup().await;
            let exit = match connected {
                Ok(ws) => {
                    // Refused later, the token may have expired while in use.
                    self.token_fresh = false;
                    if self.ever_ready {
                        SessionMetrics::add(&self.metrics.reconnects, 1);
                        if !resuming && self.had_conversation {
                            self.emit(SessionEvent::ContextLost).await;
                            self.had_conversation = false;
                        }
                    }
                    self.ever_ready = true;
                    self.emit(SessionEvent::State(ConnectionState::Open)).await;
                    self.emit(SessionEvent::Ready { resumed: resuming }).await;
                    let opened = Instant::now();
                    self.turn_done = false;
                    let exit = self.pump(ws).await;
                    // Only a connection that held up resets the count: a server that ends every
                    // connection at once (a `goAway` storm) meets the backoff and the limit.
                    if self.turn_done || opened.elapsed() >= STABLE_CONNECTION {
                        attempt = 0;
                    }
                    exit
                }
                Err(e) => match e.retry {
                    Retry::Never => Exit::Fatal(e),
                    Retry::Fresh => Exit::Fresh(e),
                    Retry::Resume => Exit::Dropped(e),
                },
            };
            let exit = match exit {
                Exit::Fatal(e) if self.may_refresh_token(&e) => Exit::Refresh(e),
                other => other,
            };
            let (error, wait) = match exit {
                Exit::Closed => {
                    self.emit(SessionEvent::State(ConnectionState::Closed)).await;
                    return;
                }
                Exit::Fatal(e) => {
                    self.fail(e).await;
                    return;
                }
                // The first switch after a healthy connection is immediate; more in a row back off.
                Exit::Switch => {
                    info!("switching connection after goAway");
                    let e = LiveError::dropped("the server ended connection after connection with goAway");
                    (e, attempt > 0)
                }
                Exit::Fresh(e) => {
                    // The handle is gone: a fresh session, and the game hears the context is lost.
                    warn!("session handle no longer valid; starting a fresh session");
                    self.handle = None;
                    self.had_conversation = true;
                    (e, attempt > 0)
                }
                Exit::Refresh(e) => {
                    info!("the server refused the session's token ({e}); fetching a new one");
                    SessionMetrics::add(&self.metrics.token_refreshes, 1);
                    self.token = None;
                    (e, attempt > 0)
                }
                Exit::Dropped(e) => {
                    warn!("live session dropped ({e}); reconnecting (attempt {})", attempt + 1);
                    self.emit(SessionEvent::Error { error: e.clone(), fatal: false }).await;
                    (e, true)
                }
            };
            attempt += 1;
            if attempt > self.cfg.max_reconnect_attempts {
                let error = LiveError {
                    reason: format!("{} (after {} reconnect attempts)", error.reason, attempt - 1),
                    ..error
                };
                self.fail(error).await;
                return;
            }
            if wait && self.backoff(attempt).await.is_err() {
                self.emit(SessionEvent::State(ConnectionState::Closed)).await;
                return;
            }
        }
    }

    /// Whether a refusal may be a stale token that the provider can replace: only with a token
    /// provider, only for a token that was not fetched for this very connection, and only for
    /// an authentication refusal (1008, or HTTP 401/403 at the handshake).
    fn may_refresh_token(&self, e: &LiveError) -> bool {
        if !matches!(self.cfg.auth, Auth::Provider(_)) || self.token_fresh || e.code != CloseCode::PolicyViolation {
            return false;
        }
        let reason = e.reason.to_ascii_lowercase();
        ["token", "expired", "auth", "unregistered caller", "http 401", "http 403"].iter().any(|w| reason.contains(w))
    }

    /// Before a fresh session: tool responses answer calls of a context that is gone; typed
    /// input is kept for the new session.
    fn drop_stale_responses(&mut self) {
        let before = self.held.len();
        self.held.retain(|m| !matches!(m, ClientMessage::ToolResponse(_)));
        let dropped = before - self.held.len();
        if dropped > 0 {
            debug!("dropping {dropped} tool responses of a session whose context is lost");
            SessionMetrics::add(&self.metrics.unconfirmed_dropped, dropped as u64);
        }
    }

    async fn fail(&mut self, error: LiveError) {
        warn!("live session failed: {error}");
        self.emit(SessionEvent::Error { error: error.clone(), fatal: true }).await;
        self.emit(SessionEvent::State(ConnectionState::Failed(error))).await;
    }

    /// Jittered exponential backoff; the first retry comes within `backoff_initial`.
    /// Commands keep arriving meanwhile: input is held, `Close` ends the wait.
    async fn backoff(&mut self, attempt: u32) -> Result<(), ()> {
        let base = self.cfg.backoff_initial.saturating_mul(1 << (attempt - 1).min(16));
        let capped = base.min(self.cfg.backoff_max);
        let delay = capped.mul_f64(0.5 + 0.5 * self.rng.f64());
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                cmd = self.commands.recv() => match cmd {
                    None | Some(SessionCommand::Close) => return Err(()),
                    Some(cmd) => {
                        if let Some(msg) = self.command_message(cmd) {
                            self.hold(msg);
                        }
                    }
                },
            }
        }
    }

    fn setup_message(&self) -> ClientMessage<'static> {
        let mut setup = self.cfg.setup.clone();
        setup.session_resumption = if self.cfg.resumption {
            Some(SessionResumptionConfig { handle: self.handle.clone(), transparent: None })
        } else {
            None
        };
        ClientMessage::Setup(setup)
    }

    async fn connect_and_setup(&mut self) -> Result<Ws, LiveError> {
        let timeout = self.cfg.setup_timeout;
        match tokio::time::timeout(timeout, self.connect_and_setup_inner()).await {
            Ok(r) => r,
            Err(_) => Err(LiveError::dropped(format!("no setupComplete within {} ms", timeout.as_millis()))),
        }
    }

    /// The credentials of the next connection: with a token provider, a fresh token for a new
    /// session, the current one for a resumption (unless it is about to expire).
    async fn connection_auth(&mut self) -> Result<Auth, LiveError> {
        let Auth::Provider(provider) = &self.cfg.auth else {
            return Ok(self.cfg.auth.clone());
        };
        let resuming = self.cfg.resumption && self.handle.is_some();
        let soon = std::time::SystemTime::now() + Duration::from_secs(10);
        if resuming
            && let Some((token, expire)) = &self.token
            && expire.is_none_or(|t| t > soon)
        {
            self.token_fresh = false;
            return Ok(Auth::Token(token.clone()));
        }
        let fetched = provider.fetch().await.map_err(|e| {
            let text = format!("fetching an ephemeral token failed: {e}");
            if e.is_retryable() { LiveError::dropped(text) } else { LiveError::fatal(CloseCode::PolicyViolation, text) }
        })?;
        let expire = fetched.expire_time.as_deref().and_then(crate::token::parse_rfc3339);
        let secret = Secret::new(fetched.name);
        self.token = Some((secret.clone(), expire));
        self.token_fresh = true;
        debug!("fetched an ephemeral token for the session");
        Ok(Auth::Token(secret))
    }

    async fn connect_and_setup_inner(&mut self) -> Result<Ws, LiveError> {
        let auth = self.connection_auth().await?;
        let mut ws = super::transport::connect(&self.cfg, &auth, self.tls.clone()).await?;
        let setup = self.setup_message().to_json();
        SessionMetrics::add(&self.metrics.bytes_sent, setup.len() as u64);
        SessionMetrics::add(&self.metrics.messages_sent, 1);
        ws.send(Message::text(setup)).await.map_err(|e| ws_error(&e))?;
        loop {
            let frame = match ws.next().await {
                None => return Err(LiveError::dropped("connection closed before setupComplete")),
                Some(Err(e)) => return Err(ws_error(&e)),
                Some(Ok(frame)) => frame,
            };
            match frame {
                Message::Text(t) if self.is_setup_complete(t.as_bytes()) => return Ok(ws),
                Message::Binary(b) if self.is_setup_complete(&b) => return Ok(ws),
                Message::Close(frame) => return Err(close_error(frame)),
                _ => {}
            }
        }
    }

    fn is_setup_complete(&mut self, bytes: &[u8]) -> bool {
        SessionMetrics::add(&self.metrics.bytes_received, bytes.len() as u64);
        SessionMetrics::add(&self.metrics.messages_received, 1);
        match ServerMessage::from_slice(bytes) {
            Ok(m) => matches!(m.payload, ServerPayload::SetupComplete(_)),
            Err(e) => {
                self.decode_error(&e);
                false
            }
        }
    }

    /// Runs one open connection until it ends.
    async fn pump(&mut self, ws: Ws) -> Exit {
        let (mut write, mut read) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(WRITER_CAPACITY);
        let metrics = self.metrics.clone();
        let write_timeout = self.cfg.write_timeout;
        let mut writer = tokio::spawn(async move {
            // A server that stops reading while it keeps writing would otherwise stall input
            // for good: a write that cannot complete in time ends the connection.
            let stalled = || {
                SessionMetrics::add(&metrics.write_stalls, 1);
                LiveError::dropped(format!(
                    "write stalled: the server read nothing for {} ms",
                    write_timeout.as_millis()
                ))
            };
            while let Some(msg) = out_rx.recv().await {
                let closing = matches!(msg, Message::Close(_));
                let len = msg.len() as u64;
                match tokio::time::timeout(write_timeout, write.send(msg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(ws_error(&e)),
                    Err(_) => return Err(stalled()),
                }
                SessionMetrics::add(&metrics.bytes_sent, len);
                if closing {
                    break;
                }
            }
            match tokio::time::timeout(write_timeout, write.close()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ws_error(&e)),
                Err(_) => Err(stalled()),
            }
        });
        let mut out = Outbound { tx: out_tx, switching: false };

        // Input held during the switch goes first, in order.
        let held: Vec<_> = self.held.drain(..).collect();
        for msg in held {
            self.send(&mut out, msg);
        }

        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping_at = Instant::now() + self.cfg.keepalive_interval;
        let mut last_inbound = Instant::now();
        let mut switch_deadline: Option<Instant> = None;
        let mic = self.mic.clone();

        let exit = loop {
            tokio::select! {
                frame = read.next(), if self.backlog.is_empty() => {
                    last_inbound = Instant::now();
                    match frame {
                        None => break Exit::Dropped(LiveError::dropped("connection closed without a close frame")),
                        Some(Err(e)) => break classify(ws_error(&e)),
                        Some(Ok(Message::Close(frame))) => break classify(close_error(frame)),
                        Some(Ok(Message::Text(t))) => {
                            if let Some(d) = self.on_frame(t.as_bytes(), &mut out) {
                                switch_deadline = Some(d);
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            if let Some(d) = self.on_frame(&b, &mut out) {
                                switch_deadline = Some(d);
                            }
                        }
                        Some(Ok(Message::Pong(p))) => {
                            if let Ok(seq) = <[u8; 8]>::try_from(&p[..]) {
                                self.confirm(u64::from_be_bytes(seq));
                            }
                        }
                        Some(Ok(_)) => {}
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None | Some(SessionCommand::Close) => {
                        let _ = out.tx.try_send(Message::Close(None));
                        break Exit::Closed;
                    }
                    Some(cmd) => {
                        if let Some(msg) = self.command_message(cmd) {
                            self.send(&mut out, msg);
                        }
                    }
                },
                _ = mic.notify.notified() => {
                    while let Some(chunk) = mic.chunks.pop() {
                        if !self.blocking_pending.is_empty() {
                            SessionMetrics::add(&self.metrics.mic_chunks_withheld, 1);
                            continue;
                        }
                        SessionMetrics::add(&self.metrics.audio_chunks_sent, 1);
                        self.send(&mut out, ClientMessage::audio(&chunk, crate::protocol::INPUT_SAMPLE_RATE));
                    }
                }
                res = &mut writer => {
                    let err = match res {
                        Ok(Ok(())) => LiveError::dropped("writer closed"),
                        Ok(Err(e)) => e,
                        Err(_) => LiveError::dropped("writer task ended"),
                    };
                    break classify(err);
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if !self.backlog.is_empty() {
                        self.drain_backlog();
                        // Our own stall is not the server's silence.
                        last_inbound = now;
                    }
                    self.flush_held(&mut out);
                    if now >= ping_at {
                        let _ = out.tx.try_send(self.ping());
                        ping_at = now + self.cfg.keepalive_interval;
                    }
                    if now.duration_since(last_inbound) > self.cfg.keepalive_timeout {
                        break Exit::Dropped(LiveError::dropped("keepalive timeout: no frame or pong from the server"));
                    }
                    if out.switching && (self.resumable_now || switch_deadline.is_some_and(|d| now >= d)) {
                        let _ = out.tx.try_send(Message::Close(None));
                        break Exit::Switch;
                    }
                }
            }
        };
        // Let the writer send the close frame, briefly; never hang on a dead peer.
        if matches!(exit, Exit::Closed | Exit::Switch) {
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut writer).await;
        }
        writer.abort();
        // Tool responses and typed input the server has not confirmed (still in the writer,
        // in a socket buffer, or unread by the server) go again on the next connection, before
        // the input held since. A turn cut off here will not complete: let what was received
        // play out.
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        if !unconfirmed.is_empty() && !matches!(exit, Exit::Closed) {
            SessionMetrics::add(&self.metrics.replayed, unconfirmed.len() as u64);
            debug!("{} messages unconfirmed at the end of the connection; sending them again", unconfirmed.len());
            for (_, msg) in unconfirmed.into_iter().rev() {
                self.held.push_front(msg);
            }
        }
        if self.in_model_turn {
            self.sink.end_of_turn();
            self.finish_conversion();
        }
        self.in_model_turn = false;
        self.blocking_pending.clear();
        exit
    }

    /// Converts a command into a message (or nothing, for `Close`, handled by the caller).
    fn command_message(&mut self, cmd: SessionCommand) -> Option<ClientMessage<'static>> {
        Some(match cmd {
            SessionCommand::Text { text, mode: TextMode::ClientContent } => ClientMessage::user_turn(text),
            SessionCommand::Text { text, mode: TextMode::Realtime } => ClientMessage::realtime_text(text),
            SessionCommand::ClientContent(c) => ClientMessage::ClientContent(c),
            SessionCommand::ActivityStart => ClientMessage::activity_start(),
            SessionCommand::ActivityEnd => ClientMessage::activity_end(),
            SessionCommand::AudioStreamEnd => ClientMessage::audio_stream_end(),
            SessionCommand::ToolResponse(r) => {
                for id in r.iter().filter(|r| r.will_continue != Some(true)).filter_map(|r| r.id.as_ref()) {
                    self.blocking_pending.remove(id);
                }
                ClientMessage::ToolResponse(ToolResponse { function_responses: r })
            }
            SessionCommand::ContextUpdate(c) => ClientMessage::ContextUpdate(c),
            SessionCommand::Close => return None,
        })
    }

    /// Sends or holds a message, keeping order. During a switch only tool responses go out:
    /// the server cannot become resumable while a call is pending.
    fn send(&mut self, out: &mut Outbound, msg: ClientMessage<'static>) {
        let is_tool_response = matches!(msg, ClientMessage::ToolResponse(_));
        if !is_tool_response && (out.switching || !self.held.is_empty()) {
            self.hold(msg);
            return;
        }
        // Reply latency runs from the last input before the model answers to its first audio.
        if !self.in_model_turn
            && matches!(
                msg,
                ClientMessage::ClientContent(_) | ClientMessage::RealtimeInput(_) | ClientMessage::ToolResponse(_)
            )
        {
            self.last_input_at = Some(Instant::now());
            self.awaiting_first_audio = true;
        }
        if matches!(msg, ClientMessage::ClientContent(_) | ClientMessage::RealtimeInput(_)) {
            self.had_conversation = true;
        }
        let json = msg.to_json();
        match out.tx.try_send(Message::text(json)) {
            Ok(()) => {
                SessionMetrics::add(&self.metrics.messages_sent, 1);
                self.track(out, msg);
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.hold(msg),
            Err(mpsc::error::TrySendError::Closed(_)) => self.hold(msg),
        }
    }

    /// Keeps a sent tool response or typed input until the server confirms reading it: the
    /// pong to the ping queued right after it (a server answers pings in order, after reading
    /// everything before them).
    fn track(&mut self, out: &mut Outbound, msg: ClientMessage<'static>) {
        if !is_kept(&msg) {
            return;
        }
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            self.unconfirmed.pop_front();
            SessionMetrics::add(&self.metrics.unconfirmed_dropped, 1);
        }
        self.seq += 1;
        self.unconfirmed.push_back((self.seq, msg));
        // If the writer is full, the next keepalive ping confirms instead.
        let _ = out.tx.try_send(self.ping());
    }

    /// A ping carrying the last tracked sequence number.
    fn ping(&self) -> Message {
        Message::Ping(self.seq.to_be_bytes().to_vec().into())
    }

    /// The server is answering: typed turns sent so far count as taken. Sending one again
    /// could make the model act twice (a new call id runs the tool again); losing one in the
    /// round trip before this frame is the smaller harm. Tool responses wait for the pong: a
    /// repeated answer is harmless, a lost one leaves the model waiting.
    fn confirm_turns(&mut self) {
        if !self.unconfirmed.is_empty() {
            self.unconfirmed
                .retain(|(_, m)| matches!(m, ClientMessage::ToolResponse(_) | ClientMessage::ContextUpdate(_)));
        }
    }

    /// The server has read everything up to `seq`.
    fn confirm(&mut self, seq: u64) {
        while self.unconfirmed.front().is_some_and(|(s, _)| *s <= seq) {
            self.unconfirmed.pop_front();
        }
    }

    fn flush_held(&mut self, out: &mut Outbound) {
        if out.switching {
            return;
        }
        while let Some(msg) = self.held.pop_front() {
            let json = msg.to_json();
            match out.tx.try_send(Message::text(json)) {
                Ok(()) => {
                    SessionMetrics::add(&self.metrics.messages_sent, 1);
                    self.track(out, msg);
                }
                Err(_) => {
                    self.held.push_front(msg);
                    break;
                }
            }
        }
    }

    /// Holds a message for later; the oldest held audio is dropped first when full.
    fn hold(&mut self, msg: ClientMessage<'static>) {
        if self.held.len() >= self.cfg.hold_capacity {
            let victim = self
                .held
                .iter()
                .position(|m| matches!(m, ClientMessage::RealtimeInput(r) if r.audio.is_some()))
                .unwrap_or(0);
            self.held.remove(victim);
            SessionMetrics::add(&self.metrics.held_dropped, 1);
        }
        self.held.push_back(msg);
    }

    /// Handles one server frame; returns a switch deadline when the server sent `goAway`.
    fn on_frame(&mut self, bytes: &[u8], out: &mut Outbound) -> Option<Instant> {
        SessionMetrics::add(&self.metrics.bytes_received, bytes.len() as u64);
        SessionMetrics::add(&self.metrics.messages_received, 1);
        if bytes.len() > self.cfg.max_frame_bytes {
            self.decode_error(&crate::protocol::DecodeError::TooLarge {
                size: bytes.len(),
                limit: self.cfg.max_frame_bytes,
            });
            return None;
        }
        let msg = match ServerMessage::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.decode_error(&e);
                return None;
            }
        };
        let mut deadline = None;
        if matches!(msg.payload, ServerPayload::ServerContent(_) | ServerPayload::ToolCall(_)) {
            self.confirm_turns();
        }
        match msg.payload {
            ServerPayload::ServerContent(content) => self.on_content(content),
            ServerPayload::ToolCall(call) => {
                for c in &call.function_calls {
                    if let Some(id) = &c.id
                        && !self.non_blocking.contains(&c.name)
                        && self.blocking_pending.len() < MAX_PENDING_CALLS
                    {
                        self.blocking_pending.insert(id.clone());
                    }
                }
                self.queue_event(SessionEvent::ToolCall(call.function_calls));
            }
            ServerPayload::ToolCallCancellation(c) => {
                for id in &c.ids {
                    self.blocking_pending.remove(id);
                }
                self.queue_event(SessionEvent::ToolCallCancellation(c.ids));
            }
            ServerPayload::GoAway(g) => {
                // From the wire: a connection never has more than a few minutes left, and no
                // deadline computed from it may overflow.
                let time_left = g.time_left.unwrap_or(Duration::from_secs(10)).min(MAX_GO_AWAY);
                info!("server sent goAway ({} ms left)", time_left.as_millis());
                out.switching = self.cfg.resumption;
                deadline = Instant::now().checked_add(time_left.saturating_sub(Duration::from_secs(1)));
                self.queue_event(SessionEvent::GoAway { time_left });
            }
            ServerPayload::SessionResumptionUpdate(u) => {
                self.resumable_now = u.resumable == Some(true);
                match u.resumable_handle() {
                    // Sent back in every setup: a handle beyond any real one is not kept.
                    Some(h) if h.len() > MAX_HANDLE_BYTES => {
                        self.resumable_now = false;
                        self.decode_error(&crate::protocol::DecodeError::TooLarge {
                            size: h.len(),
                            limit: MAX_HANDLE_BYTES,
                        });
                    }
                    Some(h) => self.handle = Some(h.to_owned()),
                    None => {}
                }
            }
            ServerPayload::SetupComplete(_) => {}
            ServerPayload::VoiceActivity(_) | ServerPayload::VoiceActivityDetectionSignal(_) => {}
            ServerPayload::UsageOnly => {}
            ServerPayload::Unknown(kind) => debug!("ignoring unknown server message {kind:?}"),
        }
        if let Some(usage) = msg.usage_metadata {
            self.on_usage(usage);
        }
        deadline
    }

    fn on_content(&mut self, c: ServerContent<'_>) {
        if let Some(turn) = &c.model_turn {
            if !self.in_model_turn {
                self.in_model_turn = true;
                self.queue_event(SessionEvent::ModelTurnStarted);
            }
            self.pcm.clear();
            match self.model_audio(&c) {
                Ok(0) => {}
                Ok(n) => {
                    SessionMetrics::add(&self.metrics.audio_chunks_received, 1);
                    SessionMetrics::add(&self.metrics.audio_samples_received, n as u64);
                    if self.awaiting_first_audio {
                        self.awaiting_first_audio = false;
                        if let Some(t) = self.last_input_at {
                            let us = t.elapsed().as_micros().clamp(1, u64::MAX as u128) as u64;
                            self.metrics.last_reply_latency_us.store(us, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    self.sink.push(&self.pcm);
                }
                Err(e) => self.decode_error(&e),
            }
            let text: String =
                turn.parts.iter().filter(|p: &&Part<'_>| !p.is_thought()).filter_map(|p| p.text.as_deref()).collect();
            if !text.is_empty() {
                self.queue_event(SessionEvent::Text(text));
            }
        }
        if let Some(t) = c.input_transcription {
            self.queue_event(SessionEvent::InputTranscript {
                text: t.text.unwrap_or_default(),
                finished: t.finished == Some(true),
            });
        }
        if let Some(t) = c.output_transcription {
            if !self.in_model_turn {
                self.in_model_turn = true;
                self.queue_event(SessionEvent::ModelTurnStarted);
            }
            self.queue_event(SessionEvent::OutputTranscript {
                text: t.text.unwrap_or_default(),
                finished: t.finished == Some(true),
            });
        }
        if c.interrupted == Some(true) {
            self.blocking_pending.clear();
            #[cfg(feature = "dsp")]
            if let Some(r) = self.resampler.as_mut() {
                r.reset();
            }
            self.sink.flush();
            self.queue_event(SessionEvent::Interrupted);
        }
        if c.generation_complete == Some(true) {
            self.queue_event(SessionEvent::GenerationComplete);
        }
        if c.waiting_for_input == Some(true) {
            self.queue_event(SessionEvent::WaitingForInput);
        }
        if c.turn_complete == Some(true) {
            self.in_model_turn = false;
            self.awaiting_first_audio = false;
            self.turn_done = true;
            self.finish_conversion();
            self.sink.end_of_turn();
            self.queue_event(SessionEvent::TurnComplete { reason: c.turn_complete_reason });
        }
    }

    /// Decodes the turn's audio parts into `self.pcm` at the sink's 24 kHz, converting parts
    /// declared at another `rate=`. Returns the samples added.
    fn model_audio(&mut self, c: &ServerContent<'_>) -> Result<usize, crate::protocol::DecodeError> {
        let Some(turn) = &c.model_turn else {
            return Ok(0);
        };
        let mut added = 0;
        for blob in turn.parts.iter().filter_map(|p| p.inline_data.as_ref()) {
            let mime = blob.mime()?;
            if !mime.is_pcm() {
                continue;
            }
            let rate = mime.rate.unwrap_or(OUTPUT_SAMPLE_RATE);
            if rate == OUTPUT_SAMPLE_RATE {
                added += blob.data.append_pcm16(&mut self.pcm)?;
                continue;
            }
            self.converted.clear();
            blob.data.append_pcm16(&mut self.converted)?;
            added += self.convert(rate)?;
        }
        Ok(added)
    }

    /// Converts `self.converted` (audio at `rate`) to 24 kHz, appending to `self.pcm`.
    #[cfg(feature = "dsp")]
    fn convert(&mut self, rate: u32) -> Result<usize, crate::protocol::DecodeError> {
        let bad_rate = || crate::protocol::DecodeError::MimeType { text: crate::protocol::MimeType::pcm(rate) };
        let before = self.pcm.len();
        if self.resampler.as_ref().is_none_or(|r| r.input_rate() != rate) {
            if let Some(mut old) = self.resampler.take() {
                let pcm = &mut self.pcm;
                old.finish(|out| pcm.extend(out.iter().copied().map(crate::dsp::to_i16)));
            }
            let r = crate::dsp::MonoResampler::new(rate, OUTPUT_SAMPLE_RATE).map_err(|_| bad_rate())?;
            self.resampler = Some(r);
        }
        if let Some(r) = self.resampler.as_mut() {
            let pcm = &mut self.pcm;
            r.push_i16(&self.converted, |out| pcm.extend(out.iter().copied().map(crate::dsp::to_i16)));
        }
        Ok(self.pcm.len() - before)
    }

    /// Without the `dsp` feature, audio at another rate cannot be converted: a decode error.
    #[cfg(not(feature = "dsp"))]
    fn convert(&mut self, rate: u32) -> Result<usize, crate::protocol::DecodeError> {
        Err(crate::protocol::DecodeError::MimeType {
            text: format!("{} (converting needs the `dsp` feature)", crate::protocol::MimeType::pcm(rate)),
        })
    }

    /// At the end of a turn: the converter's last samples go to the sink.
    fn finish_conversion(&mut self) {
        #[cfg(feature = "dsp")]
        if let Some(r) = self.resampler.as_mut() {
            self.converted.clear();
            let tail = &mut self.converted;
            r.finish(|out| tail.extend(out.iter().copied().map(crate::dsp::to_i16)));
            if !self.converted.is_empty() {
                self.sink.push(&self.converted);
            }
        }
    }

    fn on_usage(&mut self, u: UsageMetadata) {
        let add = |c: &std::sync::atomic::AtomicU64, v: Option<i32>| {
            SessionMetrics::add(c, v.unwrap_or(0).max(0) as u64);
        };
        add(&self.metrics.prompt_tokens, u.prompt_token_count);
        add(&self.metrics.response_tokens, u.response_token_count);
        add(&self.metrics.total_tokens, u.total_token_count);
        self.queue_event(SessionEvent::Usage(u));
    }

    fn decode_error(&mut self, e: &crate::protocol::DecodeError) {
        SessionMetrics::add(&self.metrics.decode_errors, 1);
        if !self.warned_decode {
            self.warned_decode = true;
            warn!("skipping a server frame that failed to decode: {e} (further ones are counted in metrics)");
        } else {
            debug!("skipping a server frame that failed to decode: {e}");
        }
    }

    /// Queues an event behind any backlog; never drops it.
    fn queue_event(&mut self, event: SessionEvent) {
        if self.backlog.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(e)) => {
                    SessionMetrics::add(&self.metrics.event_stalls, 1);
                    if !self.warned_stall {
                        self.warned_stall = true;
                        warn!("live session events are not being read; pausing the socket until there is room");
                    }
                    self.backlog.push_back(e);
                    return;
                }
            }
        }
        self.backlog.push_back(event);
    }

    fn drain_backlog(&mut self) {
        while let Some(e) = self.backlog.pop_front() {
            match self.events.try_send(e) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
                Err(TrySendError::Full(e)) => {
                    self.backlog.push_front(e);
                    return;
                }
            }
        }
    }

    /// Delivers an event, waiting for room (outside the pump: state changes, errors).
    async fn emit(&mut self, event: SessionEvent) {
        self.backlog.push_back(event);
        while !self.backlog.is_empty() {
            self.drain_backlog();
            if self.backlog.is_empty() {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

struct Outbound {
    tx: mpsc::Sender<Message>,
    /// Between `goAway` and the switch: new input is held.
    switching: bool,
}

/// Whether a sent message is kept until the server confirms reading it: what the game cannot
/// send again by itself (tool responses, typed turns, context changes). Audio is not: a replay
/// of old speech would be worse than the gap.
fn is_kept(msg: &ClientMessage<'_>) -> bool {
    match msg {
        ClientMessage::ToolResponse(_) | ClientMessage::ClientContent(_) | ClientMessage::ContextUpdate(_) => true,
        ClientMessage::RealtimeInput(r) => r.text.is_some(),
        _ => false,
    }
}

/// A close frame as a typed error.
fn close_error(frame: Option<tungstenite::protocol::CloseFrame>) -> LiveError {
    match frame {
        Some(f) => LiveError::from_close(u16::from(f.code), f.reason.as_str()),
        None => LiveError::from_close(1005, "closed without a status"),
    }
}

/// What to do after an error on an open connection.
fn classify(e: LiveError) -> Exit {
    match e.retry {
        Retry::Never if e.code == CloseCode::Normal => Exit::Closed,
        Retry::Never => Exit::Fatal(e),
        // A stale handle mid-session: treat like a drop; the reconnect gets `session not found`
        // and then starts fresh.
        Retry::Fresh | Retry::Resume => Exit::Dropped(e),
    }
}
