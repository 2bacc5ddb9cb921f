//! The conversation's data: the open session and its turn state, focus, the microphone route,
//! and what waits for a session (text said early, tool calls not yet run).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use bevy::prelude::*;

use crate::messages::{NpcStateChanged, announce};
use crate::npc::{LiveNpc, NpcState};
use crate::protocol::{FunctionCall, FunctionResponse};
use crate::session::{MicHandle, SendError, SessionCommand, SessionHandle, SessionMetrics};

/// An open conversation: the session of one NPC. Removing it (or despawning the NPC) closes
/// the session.
#[derive(Component)]
pub struct NpcConversation {
    pub(crate) session: SessionHandle,
    /// `Time<Real>` elapsed seconds of the last input or output.
    pub(super) last_activity: f64,
    pub(super) player_text: String,
    pub(super) npc_text: String,
    /// The player's current line came from typed text: the server's transcript of it is not
    /// shown again.
    pub(super) typed_turn: bool,
    pub(super) speaking: bool,
    /// The NPC has [`PlaybackDrivenSpeech`]: the audio layer announces speech start/end.
    pub(super) audio_announces: bool,
    /// The current turn was interrupted (`turnComplete` follows).
    pub(super) interrupted_turn: bool,
    /// The player's speech is marked open (manual VAD) and must be closed on focus loss.
    pub(crate) activity_open: bool,
    pub(super) ready: bool,
    /// Commands the session's queue had no room for, in order.
    pub(super) queued: VecDeque<SessionCommand>,
    /// Commands dropped because the session stopped taking them.
    pub(super) dropped_commands: u64,
    /// Times (real seconds) of recent tool calls, for the rate limit.
    pub(super) recent_calls: VecDeque<f64>,
    /// Calls dispatched in this turn (so a cancellation can say whether they ran).
    pub(super) ran_calls: Vec<(String, String)>,
    /// Calls whose tool answers later: (id, name, args JSON).
    pub(super) deferred: Vec<(String, String, String)>,
    /// The last answers sent, by call id: a call id the server delivers again (after a
    /// resumption, say) gets its answer again and the tool does not run twice.
    pub(super) answered: VecDeque<(String, FunctionResponse<'static>)>,
    /// Calls delivered again and answered from `answered` (or already running, deferred).
    pub(super) repeated_calls: u64,
    /// Calls refused (answered with an error) because a message or the queue held too many.
    pub(super) refused_calls: u64,
    /// Persona and tools the session was configured with, to detect changes.
    pub(super) sent_persona: String,
    pub(super) sent_tools: Vec<String>,
}

impl std::fmt::Debug for NpcConversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpcConversation").field("ready", &self.ready).field("speaking", &self.speaking).finish()
    }
}

/// Commands kept for the session when its queue is full; beyond this the oldest that is not a
/// tool response is dropped (tool responses are never dropped).
pub(super) const MAX_QUEUED_COMMANDS: usize = 128;
/// Tool calls taken from one server message; more are answered with an error.
pub(super) const MAX_CALLS_PER_MESSAGE: usize = 32;
/// Tool calls waiting to run, all NPCs; more are answered with an error.
pub(super) const MAX_PENDING_CALLS: usize = 256;
/// Answers remembered per conversation for repeated call ids (the oldest is forgotten first).
pub(super) const MAX_ANSWERED_CALLS: usize = 256;

impl NpcConversation {
    /// A conversation over `session` with `npc`, opened at `now` (real seconds); `typed_turn`:
    /// text said before it opened goes first.
    pub(crate) fn new(session: SessionHandle, npc: &LiveNpc, now: f64, typed_turn: bool) -> Self {
        NpcConversation {
            session,
            last_activity: now,
            player_text: String::new(),
            npc_text: String::new(),
            typed_turn,
            speaking: false,
            audio_announces: false,
            interrupted_turn: false,
            activity_open: false,
            ready: false,
            queued: VecDeque::new(),
            dropped_commands: 0,
            recent_calls: VecDeque::new(),
            ran_calls: Vec::new(),
            deferred: Vec::new(),
            answered: VecDeque::new(),
            repeated_calls: 0,
            refused_calls: 0,
            sent_persona: npc.persona.clone(),
            sent_tools: npc.tools.clone(),
        }
    }

    /// Sends a command now, or keeps it (in order) for the next frame when the session's queue
    /// is full.
    pub(crate) fn send_or_queue(&mut self, cmd: SessionCommand) {
        if self.queued.is_empty() {
            match self.session.send(cmd) {
                Ok(()) | Err(SendError::Closed) => {}
                Err(SendError::Full(cmd)) => self.enqueue(*cmd),
            }
        } else {
            self.enqueue(cmd);
        }
    }

    fn enqueue(&mut self, cmd: SessionCommand) {
        if self.queued.len() >= MAX_QUEUED_COMMANDS
            && let Some(i) = self.queued.iter().position(|c| !matches!(c, SessionCommand::ToolResponse(_)))
        {
            self.queued.remove(i);
            self.dropped_commands += 1;
            if self.dropped_commands == 1 {
                warn!("a session is not taking commands; dropping the oldest (counted in NpcStats)");
            }
        }
        self.queued.push_back(cmd);
    }

    /// Sends kept commands while the session takes them.
    pub(crate) fn flush_queued(&mut self) {
        while let Some(cmd) = self.queued.pop_front() {
            match self.session.send(cmd) {
                Ok(()) => {}
                Err(SendError::Full(cmd)) => {
                    self.queued.push_front(*cmd);
                    return;
                }
                Err(SendError::Closed) => {
                    self.queued.clear();
                    return;
                }
            }
        }
    }

    /// Remembers the answer sent for a call, for a repeat of its id.
    pub(super) fn remember_answer(&mut self, response: &FunctionResponse<'static>) {
        let Some(id) = response.id.clone().filter(|id| !id.is_empty()) else {
            return;
        };
        if self.answered.len() >= MAX_ANSWERED_CALLS {
            self.answered.pop_front();
        }
        self.answered.push_back((id, response.clone()));
    }

    /// Calls refused because one message or the waiting queue held too many (each was answered
    /// with an error).
    pub fn refused_calls(&self) -> u64 {
        self.refused_calls
    }

    /// Calls delivered again (their tool did not run a second time).
    pub fn repeated_calls(&self) -> u64 {
        self.repeated_calls
    }

    /// The session's metrics.
    pub fn metrics(&self) -> &Arc<SessionMetrics> {
        self.session.metrics()
    }

    /// The session's microphone handle (16 kHz mono PCM).
    pub fn mic(&self) -> MicHandle {
        self.session.mic()
    }

    /// Whether `setupComplete` has arrived.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

/// Code asked for this NPC's conversation to be open (see [`NpcCommandsExt`]).
#[derive(Component, Clone, Copy, Debug, Default, Reflect)]
#[reflect(Component)]
pub struct ConversationRequested;

/// Set by the audio layer on an NPC whose voice is played: `NpcSpeechStarted`,
/// `NpcSpeechEnded` and the `Speaking` state then follow what is heard, not the session's
/// events (which arrive ahead of playback).
#[derive(Component, Clone, Copy, Debug, Default, Reflect)]
#[reflect(Component)]
pub struct PlaybackDrivenSpeech;

/// The listener is within the engage radius of this NPC.
#[derive(Component, Clone, Copy, Debug, Default, Reflect)]
#[reflect(Component)]
pub struct InEngageRange;

/// Which NPC the player's voice goes to.
#[derive(Resource, Debug, Default, Clone)]
pub struct NpcFocus {
    pub(super) current: Option<Entity>,
    pub(super) forced: Option<Entity>,
}

impl NpcFocus {
    /// The focused NPC.
    pub fn current(&self) -> Option<Entity> {
        self.current
    }

    /// Focuses `npc` regardless of distance and facing (`None` returns to automatic focus).
    pub fn set(&mut self, npc: Option<Entity>) {
        self.forced = npc;
    }

    /// The NPC code focused, if any.
    pub fn forced(&self) -> Option<Entity> {
        self.forced
    }
}

/// Where the microphone sends audio right now: the focused NPC's session. Shared with the
/// capture thread, which sends without waiting for a frame.
#[derive(Resource, Clone, Default, Debug)]
pub struct MicRoute(pub Arc<RwLock<Option<(Entity, MicHandle)>>>);

impl MicRoute {
    /// The current target.
    pub fn get(&self) -> Option<(Entity, MicHandle)> {
        self.0.read().ok().and_then(|g| g.clone())
    }

    pub(super) fn set(&self, target: Option<(Entity, MicHandle)>) {
        if let Ok(mut g) = self.0.write() {
            *g = target;
        }
    }
}

/// Text said to an NPC before its conversation was open.
#[derive(Component, Debug, Default)]
pub struct PendingSay(pub(super) Vec<SessionCommand>);

/// Tool calls received and not yet run, in order.
#[derive(Resource, Default, Debug)]
pub struct PendingToolCalls(pub(super) VecDeque<(Entity, FunctionCall)>);

/// Real seconds since start-up: when things happened in a conversation.
pub(super) fn now(time: &Time<Real>) -> f64 {
    time.elapsed_secs_f64()
}

/// Writes state changes only when the state really changes.
pub(super) fn set_state(commands: &mut Commands, entity: Entity, state: &mut NpcState, next: NpcState) {
    if *state != next {
        *state = next.clone();
        announce(commands, NpcStateChanged { entity, state: next });
    }
}
