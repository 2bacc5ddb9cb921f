//! The interfaces between a session task and the rest of the program: commands in, events out,
//! microphone audio through its own queue, model audio to a sink, metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::Receiver;
use crossbeam_queue::ArrayQueue;
use tokio::sync::{Notify, mpsc};

use crate::protocol::{
    ClientContent, ContextUpdate, FunctionCall, FunctionResponse, LiveError, TurnCompleteReason, UsageMetadata,
};

/// Where decoded 24 kHz model audio goes: implemented by the audio layer with a ring buffer.
/// Every method must return at once (it runs on the network task).
pub trait AudioSink: Send + 'static {
    /// New samples (mono, 24 kHz unless the server says otherwise).
    fn push(&mut self, pcm: &[i16]);
    /// The user barged in: drop everything queued, now.
    fn flush(&mut self);
    /// The model's turn ended; play out what is queued.
    fn end_of_turn(&mut self);
}

impl AudioSink for Box<dyn AudioSink> {
    fn push(&mut self, pcm: &[i16]) {
        (**self).push(pcm);
    }
    fn flush(&mut self) {
        (**self).flush();
    }
    fn end_of_turn(&mut self) {
        (**self).end_of_turn();
    }
}

/// An audio sink that discards audio (text-only sessions).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl AudioSink for NullSink {
    fn push(&mut self, _pcm: &[i16]) {}
    fn flush(&mut self) {}
    fn end_of_turn(&mut self) {}
}

/// How a text turn is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
pub enum TextMode {
    /// `clientContent` with `turnComplete: true` (a complete user turn).
    #[default]
    ClientContent,
    /// `realtimeInput.text`.
    Realtime,
}

/// A command for a session task.
#[derive(Clone, Debug)]
pub enum SessionCommand {
    /// Send a text turn.
    Text {
        /// The text.
        text: String,
        /// How to send it.
        mode: TextMode,
    },
    /// Send arbitrary `clientContent` (history, incomplete turns).
    ClientContent(ClientContent<'static>),
    /// Manual VAD: the user started talking.
    ActivityStart,
    /// Manual VAD: the user stopped talking.
    ActivityEnd,
    /// Automatic VAD: the microphone paused.
    AudioStreamEnd,
    /// Answer tool calls.
    ToolResponse(Vec<FunctionResponse<'static>>),
    /// Replace the persona and/or tools mid-session.
    ContextUpdate(ContextUpdate<'static>),
    /// Close the session cleanly.
    Close,
}

/// The connection state of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
pub enum ConnectionState {
    /// Opening the socket and waiting for `setupComplete`.
    Connecting,
    /// Ready for input.
    Open,
    /// Switching connections after `goAway` or a drop.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// Closed on request.
    Closed,
    /// Closed for good by an error.
    Failed(LiveError),
}

/// Something a session task reports.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The connection state changed.
    State(ConnectionState),
    /// `setupComplete` arrived on a connection; `resumed` when it continued an earlier one.
    Ready {
        /// Whether the conversation continues (resumption) rather than starting fresh.
        resumed: bool,
    },
    /// A reconnect had to start a fresh session: the conversation so far is gone.
    ContextLost,
    /// What the server heard the user say (incremental fragment).
    InputTranscript {
        /// Fragment text.
        text: String,
        /// Final for this turn.
        finished: bool,
    },
    /// What the model says (incremental fragment).
    OutputTranscript {
        /// Fragment text.
        text: String,
        /// Final for this turn.
        finished: bool,
    },
    /// Text output (TEXT modality), a fragment.
    Text(String),
    /// The first output of a model turn arrived.
    ModelTurnStarted,
    /// The model produced everything for this turn.
    GenerationComplete,
    /// The turn is closed.
    TurnComplete {
        /// Why, when the server says.
        reason: Option<TurnCompleteReason>,
    },
    /// The user barged in: audio was flushed.
    Interrupted,
    /// The model is idle, waiting for the user to continue.
    WaitingForInput,
    /// The model asks the game to run functions.
    ToolCall(Vec<FunctionCall>),
    /// The user's interruption cancelled these calls.
    ToolCallCancellation(Vec<String>),
    /// Token usage (cumulative totals are in the metrics).
    Usage(UsageMetadata),
    /// The server will close this connection after `time_left`; the task switches over.
    GoAway {
        /// Time left on the old connection.
        time_left: Duration,
    },
    /// A problem worth reporting; `fatal` ones end the session.
    Error {
        /// The error.
        error: LiveError,
        /// Whether the session has ended because of it.
        fatal: bool,
    },
}

/// Counters of one session, readable from any thread.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    /// Bytes sent (frame payloads).
    pub bytes_sent: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Messages sent.
    pub messages_sent: AtomicU64,
    /// Messages received.
    pub messages_received: AtomicU64,
    /// Mic audio chunks sent.
    pub audio_chunks_sent: AtomicU64,
    /// Model audio chunks received.
    pub audio_chunks_received: AtomicU64,
    /// Model audio samples received.
    pub audio_samples_received: AtomicU64,
    /// Mic chunks dropped because the queue was full (oldest first).
    pub mic_chunks_dropped: AtomicU64,
    /// Mic chunks not sent because a BLOCKING tool call was pending (the server closes
    /// sessions that stream audio then).
    pub mic_chunks_withheld: AtomicU64,
    /// Held messages dropped during a connection switch (oldest first).
    pub held_dropped: AtomicU64,
    /// Frames that failed to decode (skipped).
    pub decode_errors: AtomicU64,
    /// Times the event channel was full and the task paused reading.
    pub event_stalls: AtomicU64,
    /// Reconnections (resume or fresh).
    pub reconnects: AtomicU64,
    /// Time from the last input to the first output audio of the last turn, in µs (0 = none).
    pub last_reply_latency_us: AtomicU64,
    /// Prompt tokens, summed over turns.
    pub prompt_tokens: AtomicU64,
    /// Response tokens, summed.
    pub response_tokens: AtomicU64,
    /// Total tokens, summed.
    pub total_tokens: AtomicU64,
    /// Tool responses and typed input sent again on a new connection because the old one
    /// dropped before the server confirmed reading them.
    pub replayed: AtomicU64,
    /// Unconfirmed messages no longer kept for a replay: tool responses for a session whose
    /// context was lost, or the oldest beyond the bound.
    pub unconfirmed_dropped: AtomicU64,
    /// Ephemeral tokens fetched again because the server refused the current one.
    pub token_refreshes: AtomicU64,
    /// Connections ended because a write did not complete within the write timeout.
    pub write_stalls: AtomicU64,
}

impl SessionMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The last reply latency, if any turn has produced audio.
    pub fn last_reply_latency(&self) -> Option<Duration> {
        match self.last_reply_latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Microphone audio queue shared by the capture thread and the session task.
#[derive(Debug)]
pub(crate) struct MicQueue {
    pub(crate) chunks: ArrayQueue<Vec<i16>>,
    pub(crate) notify: Notify,
    pub(crate) metrics: Arc<SessionMetrics>,
}

/// A cloneable, thread-safe, non-blocking handle that sends 16 kHz mono PCM to a session.
/// When the session falls behind, the oldest chunk is dropped and counted.
#[derive(Clone, Debug)]
pub struct MicHandle {
    pub(crate) queue: Arc<MicQueue>,
}

impl MicHandle {
    pub(crate) fn new(capacity: usize, metrics: Arc<SessionMetrics>) -> Self {
        MicHandle {
            queue: Arc::new(MicQueue { chunks: ArrayQueue::new(capacity.max(1)), notify: Notify::new(), metrics }),
        }
    }

    /// Queues one chunk of 16 kHz mono PCM (20–40 ms is ideal). Never blocks.
    pub fn push(&self, pcm: &[i16]) {
        if pcm.is_empty() {
            return;
        }
        if self.queue.chunks.force_push(pcm.to_vec()).is_some() {
            SessionMetrics::add(&self.queue.metrics.mic_chunks_dropped, 1);
        }
        self.queue.notify.notify_one();
    }

    /// Chunks waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.chunks.len()
    }
}

/// The program's side of one session: send commands, push mic audio, read events.
/// Dropping it closes the session.
#[derive(Debug)]
pub struct SessionHandle {
    pub(crate) commands: mpsc::Sender<SessionCommand>,
    pub(crate) events: Receiver<SessionEvent>,
    pub(crate) mic: MicHandle,
    pub(crate) metrics: Arc<SessionMetrics>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
    /// Without a task: the [`SessionPeer`] standing in for it, while it lives.
    pub(crate) peer: Option<Weak<()>>,
}

/// Why a command could not be queued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The command queue is full; try again next frame.
    #[error("the session's command queue is full")]
    Full(Box<SessionCommand>),
    /// The session has ended.
    #[error("the session has ended")]
    Closed,
}

impl SessionHandle {
    /// Queues a command without blocking.
    pub fn send(&self, command: SessionCommand) -> Result<(), SendError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(c) => SendError::Full(Box::new(c)),
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Commands queued and not yet taken by the session task (0: everything sent so far, e.g.
    /// an `activityStart`, is on its way to the wire).
    pub fn commands_pending(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    /// Sends a complete text turn (`clientContent`, `turnComplete: true`).
    pub fn say(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.send(SessionCommand::Text { text: text.into(), mode: TextMode::ClientContent })
    }

    /// The next event, if one is waiting. Never blocks.
    pub fn try_event(&self) -> Option<SessionEvent> {
        self.events.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event (for tests and tools, not the game thread).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<SessionEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The event receiver (cloneable).
    pub fn events(&self) -> &Receiver<SessionEvent> {
        &self.events
    }

    /// The microphone handle.
    pub fn mic(&self) -> MicHandle {
        self.mic.clone()
    }

    /// The session's counters.
    pub fn metrics(&self) -> &Arc<SessionMetrics> {
        &self.metrics
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        match &self.task {
            Some(task) => task.is_finished(),
            None => self.peer.as_ref().is_none_or(|peer| peer.strong_count() == 0),
        }
    }

    /// A handle with no session task behind it, and its far end: what a task would see. For
    /// testing code that drives sessions (events in, commands out) without a server or a
    /// runtime. `capacity` bounds each queue as in [`SessionConfig`](super::SessionConfig).
    pub fn pair(capacity: usize) -> (SessionHandle, SessionPeer) {
        let capacity = capacity.max(1);
        let (cmd_tx, cmd_rx) = mpsc::channel(capacity);
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(capacity);
        let metrics = Arc::new(SessionMetrics::default());
        let mic = MicHandle::new(capacity, metrics.clone());
        let alive = Arc::new(());
        let handle = SessionHandle {
            commands: cmd_tx,
            events: ev_rx,
            mic: mic.clone(),
            metrics,
            task: None,
            peer: Some(Arc::downgrade(&alive)),
        };
        (handle, SessionPeer { events: ev_tx, commands: cmd_rx, mic, _alive: alive })
    }

    /// Asks the session to close cleanly (non-blocking).
    pub fn close(&self) {
        let _ = self.commands.try_send(SessionCommand::Close);
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        // A clean close if the queue has room; otherwise the task notices the closed channel.
        let _ = self.commands.try_send(SessionCommand::Close);
        if let Some(task) = self.task.take() {
            drop(task);
        }
    }
}

pub(crate) type EventSender = crossbeam_channel::Sender<SessionEvent>;

/// The far end of [`SessionHandle::pair`]: it sends the events a session task would send and
/// receives the commands and microphone audio the handle's owner sends. Dropping it ends the
/// "session" ([`SessionHandle::is_finished`]).
#[derive(Debug)]
pub struct SessionPeer {
    events: EventSender,
    commands: mpsc::Receiver<SessionCommand>,
    mic: MicHandle,
    _alive: Arc<()>,
}

impl SessionPeer {
    /// Delivers an event to the handle; `false` when its queue is full or the handle is gone.
    pub fn send_event(&self, event: SessionEvent) -> bool {
        self.events.try_send(event).is_ok()
    }

    /// The next command the handle's owner sent, if any.
    pub fn try_command(&mut self) -> Option<SessionCommand> {
        self.commands.try_recv().ok()
    }

    /// The next chunk of microphone audio pushed to the handle's [`MicHandle`], if any.
    pub fn try_mic_chunk(&self) -> Option<Vec<i16>> {
        self.mic.queue.chunks.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paired_handle_talks_to_its_peer_and_ends_with_it() {
        let (handle, mut peer) = SessionHandle::pair(2);
        assert!(!handle.is_finished());
        handle.say("hello").expect("queued");
        assert!(matches!(peer.try_command(), Some(SessionCommand::Text { text, .. }) if text == "hello"));
        assert!(peer.try_command().is_none());
        assert_eq!(handle.commands_pending(), 0);
        handle.send(SessionCommand::ActivityStart).expect("queued");
        assert_eq!(handle.commands_pending(), 1);

        assert!(peer.send_event(SessionEvent::ModelTurnStarted));
        assert!(peer.send_event(SessionEvent::Interrupted));
        // Bounded: a third event does not fit.
        assert!(!peer.send_event(SessionEvent::Interrupted));
        assert!(matches!(handle.try_event(), Some(SessionEvent::ModelTurnStarted)));

        handle.mic().push(&[1, 2, 3]);
        assert_eq!(peer.try_mic_chunk(), Some(vec![1, 2, 3]));

        drop(peer);
        assert!(handle.is_finished());
    }
}
