//! One connection's protocol state machine. Synchronous and socket-free: frames and clock ticks
//! go in, frames and close decisions come out ([`Out`]); `conn.rs` moves them over the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tracing::debug;

use live_npc_client::protocol::{
    ActivityHandling, Behavior, Blob, ClientContent, ClientMessage, Content, ContextUpdate, DecodeError, FunctionCall,
    FunctionDeclaration, GoAway, INPUT_SAMPLE_RATE, Modality, ModalityTokenCount, Part, RealtimeInput, Role,
    Scheduling, ServerContent, ServerMessage, ServerPayload, SessionResumptionUpdate, Setup, SetupComplete, ToolCall,
    ToolCallCancellation, ToolResponse, Transcription, UsageMetadata, model_resource, reasons, truncate_reason,
};

use super::brain::{Brain, Persona, ToolOutcome, floor_char_boundary, splitmix, text_tokens};
use super::espeak::VoiceEngine;
use super::handshake::{Auth, ConnectInfo};
use super::metrics::{dec, inc};
use super::output::{Generation, Item, Phase};
use super::script::{DEFAULT_OVERSIZED_FRAME, Fault, FaultAction, Rule};
use super::shared::Shared;
use super::store::{ResumeError, Snapshot};
use super::tokens::constrain;
use super::tools::{self, PlannedCall};
use super::vad::{Vad, VadConfig, VadEvent};
use super::voice::{VOICE_SAMPLE_RATE, Voice};

/// The voice used when the setup names none.
pub const DEFAULT_VOICE: &str = "Puck";
/// A binary frame that is not JSON (the `malformed_frame` fault).
const MALFORMED: &[u8] = b"{\"serverContent\": {\"modelTurn\": {\"parts\": [";
/// Bounds on what a client can make a session hold.
const MAX_PENDING_CALLS: usize = 256;
const MAX_QUEUED_TURNS: usize = 8;
const MAX_QUEUED_RESULTS: usize = 32;
const MAX_PENDING_TEXT: usize = 64 * 1024;
/// Longest user text of a turn (bytes); the rest is ignored.
const MAX_USER_TEXT: usize = 16 * 1024;
/// Longest reply the voice synthesizes (characters); longer scripted replies are cut.
const MAX_REPLY_CHARS: usize = 4000;
/// Audio tokens per second (live-protocol.md §5).
const AUDIO_TOKENS_PER_SEC: f64 = 25.0;
/// The context window of the Live models (live-protocol.md §6.5): the default
/// `triggerTokens` is 80 % of it, the default `targetTokens` half of the trigger.
const CONTEXT_WINDOW: u64 = 131_072;

/// What the socket side must do.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    /// Send these bytes in a binary frame.
    Frame(Vec<u8>),
    /// Send this text in a text frame (`send_raw` fault).
    Text(String),
    /// Close the WebSocket with this code and reason.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// `delay` fault: delay every later frame by `delay` plus up to `jitter`.
    Latency {
        /// Fixed part.
        delay: Duration,
        /// Random part, up to this.
        jitter: Duration,
    },
    /// `slow_reader` fault: stop reading for this long (`None`: for good).
    PauseReading(Option<Duration>),
    /// `slow_pongs` fault: answer pings this late.
    SlowPongs(Duration),
}

/// How audio chunks are framed (`split_chunks` / `merge_chunks` faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunking {
    Normal,
    Split(u32),
    Merge(u32),
}

/// Everything the connection sends, its lifetime, and the faults that watch both.
pub(crate) struct Outbox {
    out: Vec<Out>,
    sent: u64,
    /// `toolCall` messages sent on this connection.
    tool_calls: u32,
    closing: bool,
    faults: Vec<Fault>,
    now: Instant,
    deadline: Instant,
    go_away_at: Option<Instant>,
    notice: Duration,
    chunking: Chunking,
    /// Merged audio waiting to go out.
    merge_buf: Vec<i16>,
    merged: u32,
    /// The session-length limit (none with `contextWindowCompression`).
    session_limit: Option<Instant>,
    /// The session ended at its length limit.
    session_over: bool,
    /// `no_setup_complete`: `setup` (and everything after) is ignored.
    ignore_setup: bool,
}

impl Outbox {
    fn send(&mut self, msg: ServerMessage<'_>) {
        if !self.closing {
            self.flush_audio();
            self.frame(msg.to_vec());
        }
    }

    /// One model audio chunk, framed as the chunking faults say.
    fn audio(&mut self, chunk: &[i16]) {
        match self.chunking {
            Chunking::Normal => self.content(audio_content(chunk)),
            Chunking::Split(parts) => {
                let size = chunk.len().div_ceil(parts.max(1) as usize).max(1);
                for part in chunk.chunks(size) {
                    self.content(audio_content(part));
                }
            }
            Chunking::Merge(count) => {
                self.merge_buf.extend_from_slice(chunk);
                self.merged += 1;
                if self.merged >= count {
                    self.flush_audio();
                }
            }
        }
    }

    /// Sends merged audio that is waiting.
    fn flush_audio(&mut self) {
        if self.merge_buf.is_empty() {
            return;
        }
        let pcm = std::mem::take(&mut self.merge_buf);
        self.merged = 0;
        if !self.closing {
            self.frame(ServerMessage::from(ServerPayload::ServerContent(audio_content(&pcm))).to_vec());
        }
    }

    fn payload(&mut self, payload: ServerPayload<'_>) {
        self.send(payload.into());
    }

    fn content(&mut self, content: ServerContent<'_>) {
        self.payload(ServerPayload::ServerContent(content));
    }

    fn frame(&mut self, bytes: Vec<u8>) {
        self.out.push(Out::Frame(bytes));
        self.sent += 1;
        let sent = self.sent;
        self.fire(|f| f.after_messages == Some(sent));
    }

    fn close(&mut self, code: u16, reason: &str) {
        if !self.closing {
            self.closing = true;
            self.out.push(Out::Close(code, truncate_reason(reason)));
        }
    }

    /// A `toolCall` message has been sent.
    fn tool_call_sent(&mut self) {
        self.tool_calls += 1;
        let n = self.tool_calls;
        self.fire(|f| f.after_tool_calls == Some(n));
    }

    /// A point in a model turn: `chunks` chunks of turn `turn` have been sent.
    fn turn_point(&mut self, turn: u32, chunks: u32) {
        self.fire(|f| f.turn == Some(turn) && f.after_chunks == chunks);
    }

    fn fire(&mut self, hit: impl Fn(&Fault) -> bool) {
        while let Some(i) = self.faults.iter().position(&hit) {
            let fault = self.faults.remove(i);
            debug!("live-sim: injecting fault {:?}", fault.action);
            self.apply(fault.action);
        }
    }

    fn apply(&mut self, action: FaultAction) {
        if self.closing {
            return;
        }
        match action {
            FaultAction::Drop => {
                self.closing = true;
                self.out.push(Out::Drop);
            }
            FaultAction::Close { code, reason } => self.close(code, &reason),
            FaultAction::GoAway { time_left_ms } => {
                let left = time_left_ms.map_or(self.notice, Duration::from_millis);
                self.deadline = self.now.checked_add(left).map_or(self.deadline, |t| self.deadline.min(t));
                self.go_away(left);
            }
            FaultAction::MalformedFrame => self.frame(MALFORMED.to_vec()),
            FaultAction::Delay { ms, jitter_ms } => self
                .out
                .push(Out::Latency { delay: Duration::from_millis(ms), jitter: Duration::from_millis(jitter_ms) }),
            FaultAction::SplitChunks { parts } => {
                self.flush_audio();
                self.chunking = Chunking::Split(parts);
            }
            FaultAction::MergeChunks { count } => self.chunking = Chunking::Merge(count),
            FaultAction::OversizedFrame { bytes } => self.frame(oversized(bytes.unwrap_or(DEFAULT_OVERSIZED_FRAME))),
            FaultAction::SlowReader { pause_ms } => {
                self.out.push(Out::PauseReading(pause_ms.map(Duration::from_millis)))
            }
            FaultAction::SendRaw { text } => {
                self.out.push(Out::Text(text));
                self.sent += 1;
                let sent = self.sent;
                self.fire(|f| f.after_messages == Some(sent));
            }
            FaultAction::NoSetupComplete => self.ignore_setup = true,
            FaultAction::SlowPongs { delay_ms } => self.out.push(Out::SlowPongs(Duration::from_millis(delay_ms))),
        }
    }

    fn go_away(&mut self, left: Duration) {
        self.go_away_at = None;
        self.payload(ServerPayload::GoAway(GoAway { time_left: Some(left) }));
    }

    /// Sends `goAway` when due (only once set up) and closes at the deadline or at the
    /// session-length limit.
    fn lifetime(&mut self, set_up: bool) {
        if self.closing {
            return;
        }
        if self.session_limit.is_some_and(|t| self.now >= t) {
            self.session_over = true;
            self.close(1011, reasons::DEADLINE_EXPIRED);
        } else if self.now >= self.deadline {
            self.close(1011, reasons::DEADLINE_EXPIRED);
        } else if set_up && self.go_away_at.is_some_and(|t| self.now >= t) {
            self.go_away(self.deadline - self.now);
        }
    }

    fn wakeup(&self, set_up: bool) -> Instant {
        let life = match self.go_away_at {
            Some(t) if set_up => t.min(self.deadline),
            _ => self.deadline,
        };
        self.session_limit.map_or(life, |l| l.min(life))
    }
}

/// A `serverContent` carrying one chunk of model audio.
fn audio_content(pcm: &[i16]) -> ServerContent<'static> {
    ServerContent {
        model_turn: Some(Content { role: None, parts: vec![Part::inline(Blob::pcm16(pcm, VOICE_SAMPLE_RATE))] }),
        ..Default::default()
    }
}

/// A valid JSON frame of exactly `bytes` bytes (at least the frame without padding).
fn oversized(bytes: usize) -> Vec<u8> {
    let open = br#"{"serverContent":{"modelTurn":{"parts":[{"text":""#;
    let close = br#""}]}}}"#;
    let pad = bytes.saturating_sub(open.len() + close.len());
    let mut out = Vec::with_capacity(open.len() + pad + close.len());
    out.extend_from_slice(open);
    out.resize(open.len() + pad, b' ');
    out.extend_from_slice(close);
    out
}

/// One connection: before setup, the handshake's facts; after, the [`Active`] session.
pub(crate) struct Core {
    shared: Arc<Shared>,
    conn: u64,
    info: ConnectInfo,
    ob: Outbox,
    active: Option<Active>,
    released: bool,
    /// The `expireTime` of the connection's ephemeral token.
    token_expire: Option<std::time::SystemTime>,
}

impl Core {
    pub fn new(shared: Arc<Shared>, conn: u64, info: ConnectInfo, now: Instant) -> Core {
        let cfg = &shared.config;
        let deadline = now + cfg.lifetime;
        let go_away_at = Some(deadline.checked_sub(cfg.go_away_notice).unwrap_or(now).max(now));
        let faults = cfg.scenario.as_ref().map(|s| s.faults_for(conn)).unwrap_or_default();
        let ob = Outbox {
            out: Vec::new(),
            sent: 0,
            tool_calls: 0,
            closing: false,
            faults,
            now,
            deadline,
            go_away_at,
            notice: cfg.go_away_notice,
            chunking: Chunking::Normal,
            merge_buf: Vec::new(),
            merged: 0,
            session_limit: None,
            session_over: false,
            ignore_setup: false,
        };
        let mut core = Core { shared, conn, info, ob, active: None, released: false, token_expire: None };
        // Faults that fire when the connection opens.
        core.ob.fire(|f| f.after_messages == Some(0));
        core
    }

    /// Handles one client frame (text or binary).
    pub fn on_frame(&mut self, bytes: &[u8], now: Instant) {
        self.ob.now = now;
        if self.ob.closing || self.ob.ignore_setup {
            return;
        }
        if self.token_expire.is_some_and(|t| self.shared.wall_now() >= t) {
            inc(&self.shared.metrics.token_refusals);
            return self.ob.close(1008, super::tokens::TOKEN_EXPIRED);
        }
        let Some(active) = &mut self.active else {
            return self.before_setup(bytes);
        };
        match parse(bytes, self.shared.config.strict) {
            Err(e) => self.ob.close(1007, &e.server_reason()),
            // A second setup: the service answers an invalid argument.
            Ok(ClientMessage::Setup(_)) => self.ob.close(1007, reasons::INVALID_ARGUMENT),
            Ok(msg) => active.on_message(msg, &mut self.ob),
        }
    }

    /// Advances time: pacing, turn completion, `goAway`, the connection deadline.
    pub fn on_tick(&mut self, now: Instant) {
        self.ob.now = now;
        self.ob.lifetime(self.active.is_some());
        if self.ob.session_over {
            self.ob.session_over = false;
            if let Some(active) = &self.active {
                // The session is over: its handles no longer resume it.
                self.shared.store.end_session(active.session);
                inc(&self.shared.metrics.session_limits);
                debug!("live-sim: #{} session length limit reached", self.conn);
            }
        }
        if let Some(active) = self.active.as_mut().filter(|_| !self.ob.closing) {
            active.tick(&mut self.ob);
        }
    }

    /// When [`Core::on_tick`] should run next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.ob.closing {
            return None;
        }
        let life = self.ob.wakeup(self.active.is_some());
        let turn = self.active.as_ref().and_then(|a| a.wakeup(self.ob.now));
        Some(turn.map_or(life, |t| t.min(life)))
    }

    /// Moves pending output into `into`.
    pub fn take_out(&mut self, into: &mut Vec<Out>) {
        into.append(&mut self.ob.out);
    }

    /// The resumption handle of a setup frame, while the connection is not yet set up.
    pub fn resume_handle(&self, bytes: &[u8]) -> Option<String> {
        if self.active.is_some() {
            return None;
        }
        match ClientMessage::from_slice(bytes).ok()? {
            ClientMessage::Setup(s) => s.session_resumption?.handle.filter(|h| !h.is_empty()),
            _ => None,
        }
    }

    /// Whether `handle`'s session is served by another connection right now.
    pub fn handle_busy(&self, handle: &str) -> bool {
        self.shared.store.is_busy(handle, self.conn)
    }

    /// Gives up this connection's hold on its session (idempotent; also on drop).
    pub fn release(&mut self) {
        if let (Some(active), false) = (&self.active, self.released) {
            self.shared.store.release(active.session, self.conn);
            dec(&self.shared.metrics.sessions_active);
        }
        self.released = true;
    }

    fn before_setup(&mut self, bytes: &[u8]) {
        let auth = match &self.info.token {
            // Tokens only work on `...Constrained`; elsewhere they are not a valid key.
            Some(_) if !self.info.constrained => Auth::Invalid,
            Some(t) if self.shared.tokens.knows(t) => Auth::Ok,
            Some(_) => Auth::Invalid,
            None => self.info.auth(self.shared.config.api_key.as_deref()),
        };
        match auth {
            Auth::Ok => {}
            Auth::Missing => return self.ob.close(1008, reasons::UNREGISTERED_CALLER),
            Auth::Invalid => {
                if self.info.token.is_some() {
                    inc(&self.shared.metrics.token_refusals);
                }
                return self.ob.close(1007, reasons::API_KEY_INVALID);
            }
        }
        match parse(bytes, self.shared.config.strict) {
            Err(e) => self.ob.close(1007, &e.server_reason()),
            Ok(ClientMessage::Setup(setup)) => self.setup(setup),
            // Anything before setup: the service answers an invalid argument.
            Ok(_) => self.ob.close(1007, reasons::INVALID_ARGUMENT),
        }
    }

    fn setup(&mut self, setup: Setup<'_>) {
        let constrained;
        let setup = match self.info.token.clone().filter(|_| self.info.constrained) {
            None => &setup,
            Some(token) => {
                let resuming =
                    setup.session_resumption.as_ref().and_then(|r| r.handle.as_deref()).is_some_and(|h| !h.is_empty());
                match self.shared.tokens.begin(&token, self.shared.wall_now(), !resuming) {
                    Err(refusal) => {
                        inc(&self.shared.metrics.token_refusals);
                        let (code, reason) = refusal.close();
                        return self.ob.close(code, reason);
                    }
                    Ok(constraint) => {
                        self.token_expire = Some(constraint.expire);
                        match constrain(&setup, &constraint) {
                            Some(s) => {
                                constrained = s;
                                &constrained
                            }
                            None => return self.ob.close(1007, reasons::INVALID_ARGUMENT),
                        }
                    }
                }
            }
        };
        let model = model_resource(&setup.model);
        let id = model.trim_start_matches("models/");
        if !super::shared::MODELS.contains(&id) {
            return self.ob.close(1008, &reasons::model_not_found(&model, &self.info.version));
        }
        let Some(text_mode) = text_modality(setup) else {
            return self.ob.close(1007, reasons::INVALID_ARGUMENT);
        };
        let handle = setup.session_resumption.as_ref().and_then(|r| r.handle.as_deref());
        let (session, memory) = match handle.filter(|h| !h.is_empty()) {
            None => (self.shared.store.open(self.conn), None),
            Some(h) => match self.shared.store.resume(h, self.conn, self.ob.now) {
                Ok((s, snap)) if snap.model == model => (s, Some(snap.memory.clone())),
                Ok((s, _)) => {
                    // The model of a session cannot change.
                    self.shared.store.release(s, self.conn);
                    return self.ob.close(1007, reasons::INVALID_ARGUMENT);
                }
                Err(ResumeError::NotFound) => return self.ob.close(1008, reasons::SESSION_NOT_FOUND),
                Err(ResumeError::Busy) => return self.ob.close(1011, reasons::INTERNAL),
            },
        };
        let resumed = memory.is_some();
        let active = Active::new(self.shared.clone(), setup, model, text_mode, session, memory);
        let metrics = &self.shared.metrics;
        inc(if resumed { &metrics.sessions_resumed } else { &metrics.sessions_started });
        inc(&metrics.sessions_active);
        self.ob.session_limit = active.session_limit();
        self.ob.payload(ServerPayload::SetupComplete(SetupComplete::default()));
        active.resumption_update(&mut self.ob, true);
        self.active = Some(active);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.release();
    }
}

fn parse(bytes: &[u8], strict: bool) -> Result<ClientMessage<'_>, DecodeError> {
    if strict { ClientMessage::from_slice_strict(bytes) } else { ClientMessage::from_slice(bytes) }
}

/// `Some(true)` for TEXT, `Some(false)` for AUDIO (the default), `None` for anything else.
fn text_modality(setup: &Setup<'_>) -> Option<bool> {
    let modalities = setup.generation_config.as_ref().and_then(|g| g.response_modalities.as_deref());
    match modalities.unwrap_or_default() {
        [] | [Modality::Audio] => Some(false),
        [Modality::Text] => Some(true),
        _ => None,
    }
}

/// Whether a call to a function with `behavior` holds the turn on `model` (live-protocol.md
/// §6.4): 3.1 has synchronous tools only, 3.8 extended thinking asynchronous only, 3.8 is
/// `NON_BLOCKING` unless `BLOCKING` is asked for, 2.5 `BLOCKING` unless `NON_BLOCKING` is asked for.
fn is_blocking(model: &str, behavior: Option<&Behavior>) -> bool {
    if model.contains("gemini-3.8-live-extended-thinking") {
        false
    } else if model.contains("gemini-3.1") {
        true
    } else if model.contains("gemini-3.8") {
        behavior == Some(&Behavior::Blocking)
    } else {
        behavior != Some(&Behavior::NonBlocking)
    }
}

/// A function call waiting for its response.
#[derive(Clone, Debug)]
struct PendingCall {
    id: String,
    name: String,
    blocking: bool,
}

/// A complete user turn.
#[derive(Clone, Debug)]
struct UserTurn {
    text: String,
    /// Seconds of speech (0 for text turns).
    audio_secs: f64,
    /// For audio turns: the index among this connection's audio turns (1-based).
    audio_index: Option<u32>,
}

impl UserTurn {
    fn text(mut text: String) -> UserTurn {
        text.truncate(floor_char_boundary(&text, MAX_USER_TEXT));
        UserTurn { text, audio_secs: 0.0, audio_index: None }
    }
}

/// What the model will do with a turn.
struct Plan {
    /// Exactly what to say (a scripted reply or a tool-result summary).
    speech: Option<String>,
    /// What the brain would say.
    brain: String,
    calls: Vec<PlannedCall>,
    prompt_audio: f64,
}

/// The user's side of the stream.
struct Input {
    /// The automatic detector; `None` when the client delimits activity itself.
    vad: Option<Vad>,
    /// Manual activity in progress: seconds of audio received since `activityStart`.
    activity: Option<f64>,
    pcm: Vec<i16>,
    events: Vec<VadEvent>,
    audio_turns: u32,
    /// User text of `clientContent` without `turnComplete`, waiting for it.
    text: Vec<String>,
    text_len: usize,
}

impl Input {
    fn push_text(&mut self, text: String) {
        self.text_len += text.len();
        self.text.push(text);
        while self.text_len > MAX_PENDING_TEXT && !self.text.is_empty() {
            let old = self.text.remove(0);
            self.text_len -= old.len();
        }
    }

    fn take_text(&mut self) -> String {
        self.text_len = 0;
        let parts: Vec<String> = std::mem::take(&mut self.text).into_iter().filter(|t| !t.is_empty()).collect();
        parts.join(" ")
    }
}

/// How the model speaks.
struct Speaker {
    voice: Voice,
    engine: VoiceEngine,
    /// BCP-47 language of the voice (for espeak-ng).
    language: Option<String>,
    text_mode: bool,
    transcripts: bool,
    chunk: usize,
    seed: u64,
}

impl Speaker {
    fn speak(&self, current: &mut Generation, text: &str, salt: u64) {
        let text = &text[..floor_char_boundary(text, MAX_REPLY_CHARS)];
        if self.text_mode {
            current.queue_text(text);
        } else {
            let samples = super::espeak::synthesize(&self.engine, &self.voice, self.language.as_deref(), text)
                .unwrap_or_else(|| self.voice.synthesize(text, splitmix(self.seed ^ salt)));
            current.queue_audio(text, &samples, self.chunk, self.transcripts);
        }
    }
}

/// A set-up session.
struct Active {
    shared: Arc<Shared>,
    session: u64,
    model: String,
    speaker: Speaker,
    input_transcripts: bool,
    resumption: bool,
    interrupts: bool,
    system_chars: usize,
    tools: Vec<FunctionDeclaration>,
    brain: Brain,
    input: Input,
    current: Option<Generation>,
    pending: Vec<PendingCall>,
    calls_made: u64,
    /// Recently cancelled call ids: their late responses are ignored.
    cancelled: VecDeque<String>,
    idle_results: Vec<(String, ToolOutcome)>,
    queued: VecDeque<UserTurn>,
    model_turns: u32,
    /// `proactivity.proactiveAudio`: silent for turns not addressed to the model.
    proactive: bool,
    /// `contextWindowCompression`: (trigger, target) tokens of the sliding window.
    compression: Option<(u64, u64)>,
    /// When the session started (across its connections).
    started: Instant,
    /// The client has sent video (the shorter session limit applies).
    saw_video: bool,
}

impl Active {
    fn new(
        shared: Arc<Shared>,
        setup: &Setup<'_>,
        model: String,
        text_mode: bool,
        session: u64,
        memory: Option<super::brain::Memory>,
    ) -> Active {
        let cfg = &shared.config;
        let system = setup.system_text();
        let mut brain = Brain::new(Persona::from_instruction(&system), cfg.seed);
        if let Some(memory) = memory {
            brain.memory = memory;
        }
        let calls_made = shared.store.calls_issued(session);
        let speech = setup.generation_config.as_ref().and_then(|g| g.speech_config.as_ref());
        let voice_name = speech.and_then(|s| s.voice_name()).unwrap_or(DEFAULT_VOICE);
        let ric = setup.realtime_input_config.as_ref();
        let aad = ric.and_then(|r| r.automatic_activity_detection.as_ref());
        let manual = aad.and_then(|a| a.disabled) == Some(true);
        let chunk = (cfg.chunk.as_secs_f64() * f64::from(VOICE_SAMPLE_RATE)).round().max(1.0) as usize;
        let compression = setup.context_window_compression.as_ref().map(|c| {
            let trigger = c
                .trigger_tokens
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(CONTEXT_WINDOW * 4 / 5);
            let target = c
                .sliding_window
                .as_ref()
                .and_then(|w| w.target_tokens)
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(trigger / 2)
                .min(trigger);
            (trigger, target)
        });
        let (started, saw_video) = shared.store.session_info(session);
        Active {
            proactive: setup.proactivity.as_ref().and_then(|p| p.proactive_audio) == Some(true),
            compression,
            started,
            saw_video,
            speaker: Speaker {
                voice: Voice::for_name(voice_name),
                engine: cfg.voice_engine.clone(),
                language: speech.and_then(|s| s.language_code.clone()),
                text_mode,
                transcripts: setup.output_audio_transcription.is_some(),
                chunk,
                seed: cfg.seed,
            },
            input_transcripts: setup.input_audio_transcription.is_some(),
            resumption: setup.session_resumption.is_some(),
            interrupts: ric.and_then(|r| r.activity_handling.as_ref()) != Some(&ActivityHandling::NoInterruption),
            system_chars: system.len(),
            tools: setup.function_declarations().cloned().collect(),
            brain,
            input: Input {
                vad: (!manual).then(|| Vad::new(VadConfig::from_setup(aad), INPUT_SAMPLE_RATE)),
                activity: None,
                pcm: Vec::new(),
                events: Vec::new(),
                audio_turns: 0,
                text: Vec::new(),
                text_len: 0,
            },
            current: None,
            pending: Vec::new(),
            cancelled: VecDeque::new(),
            calls_made,
            idle_results: Vec::new(),
            queued: VecDeque::new(),
            model_turns: 0,
            shared,
            session,
            model,
        }
    }

    /// When the session must end (no limit with `contextWindowCompression`).
    fn session_limit(&self) -> Option<Instant> {
        if self.compression.is_some() {
            return None;
        }
        let cfg = &self.shared.config;
        let limit = if self.saw_video { cfg.limit_video } else { cfg.limit_audio };
        self.started.checked_add(limit)
    }

    /// Drops the oldest turns from the context when it has grown past the trigger.
    fn compress(&mut self) {
        let Some((trigger, target)) = self.compression else {
            return;
        };
        let system = u64::from(text_tokens(&"x".repeat(self.system_chars.min(1 << 20))));
        if system + self.brain.memory.history_tokens() > trigger {
            let dropped = self.brain.memory.slide(target.saturating_sub(system));
            debug!("live-sim: sliding window dropped {dropped} turns");
        }
    }

    fn on_message(&mut self, msg: ClientMessage<'_>, ob: &mut Outbox) {
        self.settle(ob);
        match msg {
            ClientMessage::ClientContent(c) => self.on_client_content(c, ob),
            ClientMessage::RealtimeInput(r) => self.on_realtime(r, ob),
            ClientMessage::ToolResponse(t) => self.on_tool_response(t, ob),
            ClientMessage::ContextUpdate(u) => self.on_context_update(u),
            ClientMessage::Setup(_) => {}
        }
    }

    /// Completes a turn whose playback has ended, before looking at new input.
    fn settle(&mut self, ob: &mut Outbox) {
        if self.current.as_ref().is_some_and(|g| g.phase == Phase::Finishing && ob.now >= g.play_end) {
            self.finish_turn(ob);
        }
    }

    fn speaking(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|g| g.speaking(now))
    }

    fn on_client_content(&mut self, c: ClientContent<'_>, ob: &mut Outbox) {
        for turn in &c.turns {
            let text = turn.joined_text();
            match turn.role {
                Some(Role::Model) => self.brain.memory.record(false, text),
                _ => self.input.push_text(text),
            }
        }
        if c.turn_complete == Some(true) {
            let text = self.input.take_text();
            self.user_turn(UserTurn::text(text), ob);
        } else if !c.turns.is_empty() && self.speaking(ob.now) {
            // Any clientContent interrupts the current generation.
            self.end_turn_interrupted(ob, true);
        }
    }

    fn on_realtime(&mut self, r: RealtimeInput<'_>, ob: &mut Outbox) {
        if r.video.is_some() && !self.saw_video {
            // Audio + video: the shorter session limit applies from now on.
            self.saw_video = true;
            self.shared.store.saw_video(self.session);
            ob.session_limit = self.session_limit();
            ob.lifetime(true);
            if ob.closing {
                return;
            }
        }
        if r.activity_start.is_some() {
            self.activity_start(ob);
        }
        if let Some(blob) = r.audio_blob() {
            self.on_audio(blob, ob);
            if ob.closing {
                return;
            }
        }
        if let Some(text) = r.text {
            self.user_turn(UserTurn::text(text), ob);
        }
        if r.activity_end.is_some() {
            self.activity_end(ob);
        }
        if let (Some(true), Some(vad)) = (r.audio_stream_end, &mut self.input.vad) {
            vad.flush(&mut self.input.events);
            self.vad_events(ob);
        }
    }

    fn on_audio(&mut self, blob: &Blob<'_>, ob: &mut Outbox) {
        if self.pending.iter().any(|c| c.blocking) {
            // What the service does to audio streamed while a BLOCKING call is pending.
            return ob.close(1008, reasons::NOT_IMPLEMENTED);
        }
        let mime = match blob.mime() {
            Ok(m) => m,
            Err(e) => return ob.close(1007, &e.server_reason()),
        };
        if !mime.is_pcm() {
            debug!("live-sim: ignoring {} audio (only PCM is understood)", mime.essence);
            return;
        }
        let input = &mut self.input;
        input.pcm.clear();
        if let Err(e) = blob.data.append_pcm16(&mut input.pcm) {
            return ob.close(1007, &e.server_reason());
        }
        let rate = mime.rate.unwrap_or(INPUT_SAMPLE_RATE);
        match &mut input.vad {
            None => {
                if let Some(secs) = &mut input.activity {
                    *secs += input.pcm.len() as f64 / f64::from(rate);
                }
            }
            Some(vad) => {
                if vad.input_rate() != rate {
                    vad.set_input_rate(rate);
                }
                vad.push(&input.pcm, &mut input.events);
                self.vad_events(ob);
            }
        }
    }

    fn vad_events(&mut self, ob: &mut Outbox) {
        let events = std::mem::take(&mut self.input.events);
        let rate = self.input.vad.as_ref().map_or(INPUT_SAMPLE_RATE, Vad::input_rate);
        for event in &events {
            match *event {
                VadEvent::SpeechStart { .. } => {
                    if self.interrupts && self.speaking(ob.now) {
                        self.end_turn_interrupted(ob, true);
                    }
                }
                VadEvent::SpeechEnd { speech_samples, .. } => {
                    self.audio_turn(speech_samples as f64 / f64::from(rate.max(1)), ob);
                }
            }
        }
        self.input.events = events;
        self.input.events.clear();
    }

    fn activity_start(&mut self, ob: &mut Outbox) {
        if self.input.vad.is_some() {
            debug!("live-sim: activityStart ignored: automatic activity detection is on");
            return;
        }
        if self.interrupts && self.speaking(ob.now) {
            self.end_turn_interrupted(ob, true);
        }
        self.input.activity = Some(0.0);
    }

    fn activity_end(&mut self, ob: &mut Outbox) {
        match self.input.activity.take() {
            Some(secs) if secs > 0.0 => self.audio_turn(secs, ob),
            Some(_) => debug!("live-sim: activity without audio: no turn"),
            None => debug!("live-sim: activityEnd without activityStart ignored"),
        }
    }

    fn audio_turn(&mut self, secs: f64, ob: &mut Outbox) {
        self.input.audio_turns += 1;
        let index = self.input.audio_turns;
        let scenario = self.shared.config.scenario.as_ref();
        let transcript = scenario.and_then(|s| s.audio_rule(index)).and_then(|r| r.audio_transcript.clone());
        let text = transcript.unwrap_or_else(|| format!("[speech {secs:.1}s]"));
        self.user_turn(UserTurn { text, audio_secs: secs, audio_index: Some(index) }, ob);
    }

    fn user_turn(&mut self, turn: UserTurn, ob: &mut Outbox) {
        if self.current.is_some() {
            if turn.audio_index.is_some() && !self.interrupts {
                if self.queued.len() < MAX_QUEUED_TURNS {
                    self.queued.push_back(turn);
                }
                return;
            }
            self.end_turn_interrupted(ob, true);
        }
        self.respond(turn, ob);
    }

    fn respond(&mut self, turn: UserTurn, ob: &mut Outbox) {
        if self.input_transcripts {
            let t = Transcription { text: Some(turn.text.clone()), finished: Some(true), language_code: None };
            ob.content(ServerContent { input_transcription: Some(t), ..Default::default() });
        }
        let tokens = if turn.audio_secs > 0.0 {
            tokens(turn.audio_secs * AUDIO_TOKENS_PER_SEC).max(1).unsigned_abs()
        } else {
            text_tokens(&turn.text)
        };
        self.brain.memory.record_tokens(true, turn.text.clone(), tokens);
        self.compress();
        if self.proactive && !self.brain.addressed(&turn.text) {
            return self.silent_turn(&turn, ob);
        }
        let brain = self.brain.reply(&turn.text);
        let plan = self.plan(&turn, brain);
        self.begin_turn(plan, ob);
    }

    /// Proactive audio: the turn was not addressed to the model. It is heard (facts are
    /// remembered, the turn is in the history) and answered with nothing but `turnComplete`.
    fn silent_turn(&mut self, turn: &UserTurn, ob: &mut Outbox) {
        self.brain.overhear(&turn.text);
        inc(&self.shared.metrics.turns_silent);
        let silent = Generation::new(0, ob.now, turn.audio_secs);
        let content = ServerContent { turn_complete: Some(true), ..Default::default() };
        ob.send(ServerMessage {
            payload: ServerPayload::ServerContent(content),
            usage_metadata: Some(self.usage(&silent)),
        });
        self.resumption_update(ob, self.pending.is_empty());
        if self.current.is_none() {
            self.follow_up(ob);
        }
    }

    fn plan(&self, turn: &UserTurn, brain: String) -> Plan {
        let scenario = self.shared.config.scenario.as_ref();
        let audio_rule = turn
            .audio_index
            .and_then(|i| scenario?.audio_rule(i))
            .filter(|r| r.reply.is_some() || !r.tool_calls.is_empty());
        let rule: Option<&Rule> = audio_rule.or_else(|| scenario?.text_rule(&turn.text));
        let calls = match rule {
            Some(r) if !r.tool_calls.is_empty() => {
                r.tool_calls.iter().map(|c| PlannedCall { name: c.name.clone(), args: c.args.clone() }).collect()
            }
            _ => tools::plan_calls(&self.tools, &turn.text),
        };
        Plan { speech: rule.and_then(|r| r.reply.clone()), brain, calls, prompt_audio: turn.audio_secs }
    }

    fn begin_turn(&mut self, plan: Plan, ob: &mut Outbox) {
        self.model_turns += 1;
        let mut current = Generation::new(self.model_turns, ob.now, plan.prompt_audio);
        self.resumption_update(ob, false);
        ob.turn_point(current.turn, 0);
        if ob.closing {
            return;
        }
        let salt = u64::from(current.turn) ^ (self.brain.memory.turns << 20);
        if plan.calls.is_empty() {
            let text = plan.speech.unwrap_or(plan.brain);
            self.speaker.speak(&mut current, &text, salt);
        } else {
            let first = plan.calls[0].name.clone();
            if self.issue_calls(plan.calls, &mut current, ob) {
                current.phase = Phase::AwaitingTools;
                current.after_tools = plan.speech;
            } else {
                let text = plan.speech.unwrap_or_else(|| self.brain.acknowledge(&first));
                self.speaker.speak(&mut current, &text, salt);
            }
        }
        self.current = Some(current);
    }

    /// Sends a `toolCall`; returns whether any of the calls is BLOCKING.
    fn issue_calls(&mut self, calls: Vec<PlannedCall>, current: &mut Generation, ob: &mut Outbox) -> bool {
        let mut any_blocking = false;
        let mut function_calls = Vec::with_capacity(calls.len());
        for call in calls {
            self.calls_made = self.shared.store.note_call(self.session);
            let id = format!("fc-{}", self.calls_made);
            let decl = self.tools.iter().find(|d| d.name == call.name);
            let blocking = is_blocking(&self.model, decl.and_then(|d| d.behavior.as_ref()));
            any_blocking |= blocking;
            if self.pending.len() >= MAX_PENDING_CALLS {
                self.pending.remove(0);
            }
            self.pending.push(PendingCall { id: id.clone(), name: call.name.clone(), blocking });
            current.calls.push(id.clone());
            function_calls.push(FunctionCall { id: Some(id), name: call.name, args: Some(call.args) });
        }
        ob.payload(ServerPayload::ToolCall(ToolCall { function_calls }));
        ob.tool_call_sent();
        any_blocking
    }

    fn on_tool_response(&mut self, response: ToolResponse<'_>, ob: &mut Outbox) {
        let mut interrupting = Vec::new();
        for fr in response.function_responses {
            let found = match fr.id.as_deref() {
                Some(id) => self.pending.iter().position(|c| c.id == id),
                None => self.pending.iter().position(|c| c.name == fr.name),
            };
            let Some(index) = found else {
                if self.is_late_result(fr.id.as_deref(), &fr.name) {
                    // A call of this session that was pending when an earlier connection ended:
                    // the result is not lost; the model speaks about it when idle.
                    if let Some(resp) = fr.response.as_ref().filter(|r| !r.is_empty())
                        && self.idle_results.len() < MAX_QUEUED_RESULTS
                    {
                        self.idle_results.push((fr.name.clone(), outcome_of(Some(resp))));
                    }
                    continue;
                }
                debug!("live-sim: toolResponse for no pending call ({:?}, {}) ignored", fr.id, fr.name);
                continue;
            };
            let outcome = outcome_of(fr.response.as_ref());
            if self.pending[index].blocking {
                // BLOCKING: the first response answers the call (scheduling, willContinue ignored).
                let call = self.pending.remove(index);
                if let Some(current) = self.current.as_mut().filter(|g| g.calls.contains(&call.id)) {
                    current.results.push((call.name, outcome));
                }
                continue;
            }
            let name = self.pending[index].name.clone();
            if fr.will_continue != Some(true) {
                self.pending.remove(index);
            }
            if fr.response.as_ref().is_none_or(Map::is_empty) {
                continue;
            }
            match fr.scheduling {
                Some(Scheduling::Silent) => self.brain.remember_result(&name, &outcome),
                Some(Scheduling::Interrupt) => interrupting.push((name, outcome)),
                _ => {
                    if self.idle_results.len() < MAX_QUEUED_RESULTS {
                        self.idle_results.push((name, outcome));
                    }
                }
            }
        }
        self.resume_after_tools();
        self.interrupt_for_results(interrupting, ob);
        if self.current.is_none() {
            self.follow_up(ob);
        }
    }

    /// Whether a response with no pending call answers a call this session made on an earlier
    /// connection (not a cancelled one, not an id it never issued) to a declared function.
    fn is_late_result(&self, id: Option<&str>, name: &str) -> bool {
        let Some(id) = id else {
            return false;
        };
        let issued =
            id.strip_prefix("fc-").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1 && n <= self.calls_made);
        issued && !self.cancelled.iter().any(|c| c == id) && self.tools.iter().any(|d| d.name == name)
    }

    /// Once every BLOCKING call of the turn is answered, the model speaks about the results.
    fn resume_after_tools(&mut self) {
        let Some(current) = self.current.as_mut().filter(|g| g.phase == Phase::AwaitingTools) else {
            return;
        };
        if self.pending.iter().any(|c| c.blocking && current.calls.contains(&c.id)) {
            return;
        }
        let text = current.after_tools.take().unwrap_or_else(|| self.brain.speak_results(&current.results));
        current.phase = Phase::Streaming;
        let salt = u64::from(current.turn) ^ 0x7001;
        self.speaker.speak(current, &text, salt);
    }

    /// `NON_BLOCKING` results with `INTERRUPT` scheduling: cut the current output, speak now.
    fn interrupt_for_results(&mut self, results: Vec<(String, ToolOutcome)>, ob: &mut Outbox) {
        if results.is_empty() {
            return;
        }
        if self.current.as_ref().is_some_and(|g| g.phase == Phase::AwaitingTools) {
            // Held by a BLOCKING call: the results wait like WHEN_IDLE ones.
            self.idle_results.extend(results);
            return;
        }
        if self.current.is_some() {
            self.end_turn_interrupted(ob, false);
        }
        self.result_turn(results, ob);
    }

    fn result_turn(&mut self, results: Vec<(String, ToolOutcome)>, ob: &mut Outbox) {
        let text = self.brain.speak_results(&results);
        let plan = Plan { speech: Some(text), brain: String::new(), calls: Vec::new(), prompt_audio: 0.0 };
        self.begin_turn(plan, ob);
    }

    /// After a turn: results waiting for idle time, then user turns that waited.
    fn follow_up(&mut self, ob: &mut Outbox) {
        if !self.idle_results.is_empty() {
            let results = std::mem::take(&mut self.idle_results);
            self.result_turn(results, ob);
        } else if let Some(turn) = self.queued.pop_front() {
            self.respond(turn, ob);
        }
    }

    fn on_context_update(&mut self, update: ContextUpdate<'_>) {
        if let Some(si) = update.system_instruction {
            let text = si.joined_text();
            self.system_chars = text.len();
            self.brain.persona = Persona::from_instruction(&text);
        }
        if let Some(t) = update.tools {
            self.tools = t.tools.into_iter().filter_map(|t| t.function_declarations).flatten().collect();
        }
    }

    fn tick(&mut self, ob: &mut Outbox) {
        let cfg = &self.shared.config;
        let lead = cfg.lead.mul_f64(cfg.pace.max(0.0));
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.phase == Phase::Streaming {
            // One chunk per tick (transcripts ride along), so input is read in between.
            while !current.drained() && current.due(lead) <= ob.now {
                let Some(item) = current.pop(ob.now, cfg.pace, VOICE_SAMPLE_RATE) else {
                    break;
                };
                let chunk = !matches!(item, Item::Transcript { .. });
                if chunk && !current.first_out {
                    current.first_out = true;
                    let latency = ob.now.saturating_duration_since(current.started);
                    self.shared.metrics.first_audio.record(latency);
                }
                emit(item, ob);
                if chunk {
                    ob.turn_point(current.turn, current.chunks_sent);
                    break;
                }
            }
            if ob.closing {
                return;
            }
            if current.drained() {
                current.phase = Phase::Finishing;
                ob.content(ServerContent { generation_complete: Some(true), ..Default::default() });
            }
        }
        if current.phase == Phase::Finishing && ob.now >= current.play_end {
            self.finish_turn(ob);
        }
    }

    fn wakeup(&self, now: Instant) -> Option<Instant> {
        let cfg = &self.shared.config;
        let current = self.current.as_ref()?;
        match current.phase {
            Phase::AwaitingTools => None,
            Phase::Streaming if current.drained() => Some(now),
            Phase::Streaming => Some(current.due(cfg.lead.mul_f64(cfg.pace.max(0.0)))),
            Phase::Finishing => Some(current.play_end),
        }
    }

    fn finish_turn(&mut self, ob: &mut Outbox) {
        let Some(current) = self.current.take() else {
            return;
        };
        let content = ServerContent { turn_complete: Some(true), ..Default::default() };
        ob.send(ServerMessage {
            payload: ServerPayload::ServerContent(content),
            usage_metadata: Some(self.usage(&current)),
        });
        let metrics = &self.shared.metrics;
        inc(&metrics.turns);
        metrics.turn_time.record(ob.now.saturating_duration_since(current.started));
        self.record_model_turn(current);
        self.resumption_update(ob, self.pending.is_empty());
        self.follow_up(ob);
    }

    /// Adds what the model actually sent to the history (and slides the window).
    fn record_model_turn(&mut self, current: Generation) {
        let tokens = if self.speaker.text_mode {
            text_tokens(&current.sent_text)
        } else {
            let secs = current.samples_sent as f64 / f64::from(VOICE_SAMPLE_RATE);
            tokens(secs * AUDIO_TOKENS_PER_SEC).unsigned_abs()
        };
        self.brain.memory.record_tokens(false, current.sent_text, tokens);
        self.compress();
    }

    /// Ends the current turn early: `interrupted`, `turnComplete`, and (for a barge-in,
    /// `cancel`) `toolCallCancellation` for the turn's calls still pending.
    fn end_turn_interrupted(&mut self, ob: &mut Outbox, cancel: bool) {
        let Some(current) = self.current.take() else {
            return;
        };
        ob.content(ServerContent { interrupted: Some(true), ..Default::default() });
        let content = ServerContent { turn_complete: Some(true), ..Default::default() };
        ob.send(ServerMessage {
            payload: ServerPayload::ServerContent(content),
            usage_metadata: Some(self.usage(&current)),
        });
        if cancel {
            let ids: Vec<String> =
                current.calls.iter().filter(|id| self.pending.iter().any(|c| &c.id == *id)).cloned().collect();
            self.pending.retain(|c| !ids.contains(&c.id));
            for id in &ids {
                if self.cancelled.len() >= MAX_PENDING_CALLS {
                    self.cancelled.pop_front();
                }
                self.cancelled.push_back(id.clone());
            }
            if !ids.is_empty() {
                ob.payload(ServerPayload::ToolCallCancellation(ToolCallCancellation { ids }));
            }
        }
        // Only what was sent stays in the history.
        inc(&self.shared.metrics.turns_interrupted);
        self.record_model_turn(current);
        self.resumption_update(ob, self.pending.is_empty());
    }

    /// `sessionResumptionUpdate`, when the setup asked for resumption.
    fn resumption_update(&self, ob: &mut Outbox, resumable: bool) {
        if !self.resumption {
            return;
        }
        let handle = resumable.then(|| {
            let snapshot = Snapshot { model: self.model.clone(), memory: self.brain.memory.clone() };
            self.shared.store.issue(self.session, snapshot, ob.now)
        });
        let update = SessionResumptionUpdate {
            new_handle: handle,
            resumable: Some(resumable),
            last_consumed_client_message_index: None,
        };
        ob.payload(ServerPayload::SessionResumptionUpdate(update));
    }

    /// Plausible token counts: ~25 tokens per second of audio, ~4 characters per text token.
    fn usage(&self, current: &Generation) -> UsageMetadata {
        let history: usize = self.brain.memory.history.iter().map(|t| t.text.len()).sum();
        let prompt_text = tokens((self.system_chars + history) as f64 / 4.0);
        let prompt_audio = tokens(current.prompt_audio * AUDIO_TOKENS_PER_SEC);
        let (response, modality) = if self.speaker.text_mode {
            (tokens(current.sent_text.len() as f64 / 4.0), Modality::Text)
        } else {
            let secs = current.samples_sent as f64 / f64::from(VOICE_SAMPLE_RATE);
            (tokens(secs * AUDIO_TOKENS_PER_SEC), Modality::Audio)
        };
        let count = |modality: Modality, n: i32| ModalityTokenCount { modality: Some(modality), token_count: Some(n) };
        let mut prompt_details = vec![count(Modality::Text, prompt_text)];
        if prompt_audio > 0 {
            prompt_details.push(count(Modality::Audio, prompt_audio));
        }
        let prompt = prompt_text.saturating_add(prompt_audio);
        UsageMetadata {
            prompt_token_count: Some(prompt),
            response_token_count: Some(response),
            total_token_count: Some(prompt.saturating_add(response)),
            prompt_tokens_details: Some(prompt_details),
            response_tokens_details: Some(vec![count(modality, response)]),
            ..Default::default()
        }
    }
}

fn tokens(x: f64) -> i32 {
    x.ceil().clamp(0.0, f64::from(i32::MAX)) as i32
}

/// Sends one output item.
fn emit(item: Item, ob: &mut Outbox) {
    let content = match item {
        Item::Audio(chunk) => return ob.audio(&chunk),
        Item::Text(text) => ServerContent {
            model_turn: Some(Content { role: None, parts: vec![Part::text(text)] }),
            ..Default::default()
        },
        Item::Transcript { text, finished } => ServerContent {
            output_transcription: Some(Transcription {
                text: Some(text),
                finished: finished.then_some(true),
                language_code: None,
            }),
            ..Default::default()
        },
    };
    ob.content(content);
}

/// What a function response says: `{"error": ...}` is a failure, `{"output": ...}` (or the
/// whole object) the result, summarised in a few words.
fn outcome_of(response: Option<&Map<String, Value>>) -> ToolOutcome {
    let Some(map) = response else {
        return ToolOutcome::Done("no result".to_owned());
    };
    if let Some(error) = map.get("error") {
        return ToolOutcome::Failed(summarize(error));
    }
    match map.get("output") {
        Some(output) => ToolOutcome::Done(summarize(output)),
        None => ToolOutcome::Done(summarize(&Value::Object(map.clone()))),
    }
}

/// A short spoken form of a JSON value.
fn summarize(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => "nothing".to_owned(),
        Value::Object(map) => {
            map.iter().take(3).map(|(k, v)| format!("{k} {}", summarize(v))).collect::<Vec<_>>().join(", ")
        }
        Value::Array(items) => items.iter().take(3).map(summarize).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    };
    text[..floor_char_boundary(&text, 120)].trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn blocking_per_model() {
        let m25 = "models/gemini-2.5-flash-native-audio-preview-12-2025";
        assert!(is_blocking(m25, None));
        assert!(!is_blocking(m25, Some(&Behavior::NonBlocking)));
        assert!(!is_blocking("models/gemini-3.8-live", None));
        assert!(is_blocking("models/gemini-3.8-live", Some(&Behavior::Blocking)));
        assert!(!is_blocking("models/gemini-3.8-live-extended-thinking", Some(&Behavior::Blocking)));
        assert!(is_blocking("models/gemini-3.1-flash-live-preview", Some(&Behavior::NonBlocking)));
    }

    #[test]
    fn outcomes() {
        let m = |v: Value| v.as_object().cloned();
        assert_eq!(outcome_of(m(json!({"output": "opened"})).as_ref()), ToolOutcome::Done("opened".into()));
        assert_eq!(outcome_of(m(json!({"error": "stuck."})).as_ref()), ToolOutcome::Failed("stuck".into()));
        assert_eq!(outcome_of(m(json!({"gold": 3})).as_ref()), ToolOutcome::Done("gold 3".into()));
    }
}
