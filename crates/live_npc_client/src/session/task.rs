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
    ClientMessage, CloseCode, LiveError, Part, Retry, ServerContent, ServerMessage, ServerPayload,
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
            let connected = self.connect_and_setup().await;
            let exit = match connected {
                Ok(ws) => {
                    attempt = 0;
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
                    self.pump(ws).await
                }
                Err(e) => match e.retry {
                    Retry::Never => Exit::Fatal(e),
                    Retry::Fresh => {
                        // The handle is gone: one fresh session, and the game hears the context is lost.
                        warn!("session handle no longer valid; starting a fresh session");
                        self.handle = None;
                        self.had_conversation = true;
                        continue;
                    }
                    Retry::Resume => Exit::Dropped(e),
                },
            };
            match exit {
                Exit::Closed => {
                    self.emit(SessionEvent::State(ConnectionState::Closed)).await;
                    return;
                }
                Exit::Fatal(e) => {
                    self.fail(e).await;
                    return;
                }
                Exit::Switch => {
                    info!("switching connection after goAway");
                }
                Exit::Dropped(e) => {
                    attempt += 1;
                    if attempt > self.cfg.max_reconnect_attempts {
                        self.fail(e).await;
                        return;
                    }
                    warn!("live session dropped ({e}); reconnecting (attempt {attempt})");
                    self.emit(SessionEvent::Error { error: e, fatal: false }).await;
                    if self.backoff(attempt).await.is_err() {
                        self.emit(SessionEvent::State(ConnectionState::Closed)).await;
                        return;
                    }
                }
            }
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
            return Ok(Auth::Token(token.clone()));
        }
        let fetched = provider.fetch().await.map_err(|e| {
            let text = format!("fetching an ephemeral token failed: {e}");
            if e.is_retryable() { LiveError::dropped(text) } else { LiveError::fatal(CloseCode::PolicyViolation, text) }
        })?;
        let expire = fetched.expire_time.as_deref().and_then(crate::token::parse_rfc3339);
        let secret = Secret::new(fetched.name);
        self.token = Some((secret.clone(), expire));
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
        let mut writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                let closing = matches!(msg, Message::Close(_));
                let len = msg.len() as u64;
                write.send(msg).await?;
                SessionMetrics::add(&metrics.bytes_sent, len);
                if closing {
                    break;
                }
            }
            write.close().await
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
                        Ok(Err(e)) => ws_error(&e),
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
                        let _ = out.tx.try_send(Message::Ping(Default::default()));
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
        // Anything the writer still held is lost with the connection; the game's input since
        // the switch began is in `held`. A turn cut off here will not complete: let what was
        // received play out.
        if self.in_model_turn {
            self.sink.end_of_turn();
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
            Ok(()) => SessionMetrics::add(&self.metrics.messages_sent, 1),
            Err(mpsc::error::TrySendError::Full(_)) => self.hold(msg),
            Err(mpsc::error::TrySendError::Closed(_)) => self.hold(msg),
        }
    }

    fn flush_held(&mut self, out: &mut Outbound) {
        if out.switching {
            return;
        }
        while let Some(msg) = self.held.pop_front() {
            let json = msg.to_json();
            match out.tx.try_send(Message::text(json)) {
                Ok(()) => SessionMetrics::add(&self.metrics.messages_sent, 1),
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
                if let Some(h) = u.resumable_handle() {
                    self.handle = Some(h.to_owned());
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
            match c.append_audio(&mut self.pcm) {
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
            self.sink.end_of_turn();
            self.queue_event(SessionEvent::TurnComplete { reason: c.turn_complete_reason });
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
