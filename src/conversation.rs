//! Conversations: focus, when sessions open and close, session events → state and messages,
//! tool dispatch, player input.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bevy::diagnostic::Diagnostics;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::messages::*;
use crate::npc::{LiveNpc, NpcListener, NpcState, NpcStats};
use crate::plugin::{AudioSinkFactory, LiveNpcRuntime, LiveNpcSettings, diagnostics};
use crate::protocol::{
    AudioTranscriptionConfig, AutomaticActivityDetection, Content, ContextUpdate, FunctionCall, GenerationConfig,
    Modality, ProactivityConfig, RealtimeInputConfig, Setup, SpeechConfig, Tool, ToolsUpdate,
};
use crate::session::{
    ConnectionState, MicHandle, SessionCommand, SessionConfig, SessionEvent, SessionHandle, SessionMetrics,
};
use crate::tools::{NpcToolRegistry, dispatch};

/// An open conversation: the session of one NPC. Removing it (or despawning the NPC) closes
/// the session.
#[derive(Component)]
pub struct NpcConversation {
    pub(crate) session: SessionHandle,
    /// `Time<Real>` elapsed seconds of the last input or output.
    last_activity: f64,
    player_text: String,
    npc_text: String,
    /// The player's current line came from typed text: the server's transcript of it is not
    /// shown again.
    typed_turn: bool,
    speaking: bool,
    /// The NPC has [`PlaybackDrivenSpeech`]: the audio layer announces speech start/end.
    audio_announces: bool,
    /// The current turn was interrupted (`turnComplete` follows).
    interrupted_turn: bool,
    /// The player's speech is marked open (manual VAD) and must be closed on focus loss.
    pub(crate) activity_open: bool,
    ready: bool,
    /// Commands the session's queue had no room for, in order.
    queued: VecDeque<SessionCommand>,
    /// Commands dropped because the session stopped taking them.
    dropped_commands: u64,
    /// Times (real seconds) of recent tool calls, for the rate limit.
    recent_calls: VecDeque<f64>,
    /// Calls dispatched in this turn (so a cancellation can say whether they ran).
    ran_calls: Vec<(String, String)>,
    /// Calls whose tool answers later: (id, name, args JSON).
    deferred: Vec<(String, String, String)>,
    /// Persona and tools the session was configured with, to detect changes.
    sent_persona: String,
    sent_tools: Vec<String>,
}

impl std::fmt::Debug for NpcConversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpcConversation").field("ready", &self.ready).field("speaking", &self.speaking).finish()
    }
}

/// Commands kept for the session when its queue is full; beyond this the oldest that is not a
/// tool response is dropped (tool responses are never dropped).
const MAX_QUEUED_COMMANDS: usize = 128;

impl NpcConversation {
    /// Sends a command now, or keeps it (in order) for the next frame when the session's queue
    /// is full.
    pub(crate) fn send_or_queue(&mut self, cmd: SessionCommand) {
        if self.queued.is_empty() {
            match self.session.send(cmd) {
                Ok(()) | Err(crate::session::SendError::Closed) => {}
                Err(crate::session::SendError::Full(cmd)) => self.enqueue(*cmd),
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
                Err(crate::session::SendError::Full(cmd)) => {
                    self.queued.push_front(*cmd);
                    return;
                }
                Err(crate::session::SendError::Closed) => {
                    self.queued.clear();
                    return;
                }
            }
        }
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
    current: Option<Entity>,
    forced: Option<Entity>,
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

    fn set(&self, target: Option<(Entity, MicHandle)>) {
        if let Ok(mut g) = self.0.write() {
            *g = target;
        }
    }
}

/// Text said to an NPC before its conversation was open.
#[derive(Component, Debug, Default)]
pub struct PendingSay(Vec<SessionCommand>);

/// Tool calls received and not yet run, in order.
#[derive(Resource, Default, Debug)]
pub struct PendingToolCalls(VecDeque<(Entity, FunctionCall)>);

/// `Commands` extension to open, close and focus conversations.
pub trait NpcCommandsExt {
    /// Opens this NPC's conversation (also out of range), until the idle timeout.
    fn start_conversation(&mut self) -> &mut Self;
    /// Closes this NPC's conversation now.
    fn end_conversation(&mut self) -> &mut Self;
    /// Sends the player's voice to this NPC regardless of distance.
    fn focus_npc(&mut self) -> &mut Self;
}

impl NpcCommandsExt for EntityCommands<'_> {
    fn start_conversation(&mut self) -> &mut Self {
        self.insert(ConversationRequested)
    }

    fn end_conversation(&mut self) -> &mut Self {
        self.remove::<(ConversationRequested, NpcConversation)>();
        self.insert(NpcState::Idle)
    }

    fn focus_npc(&mut self) -> &mut Self {
        let id = self.id();
        self.commands().queue(move |world: &mut World| {
            world.resource_mut::<NpcFocus>().set(Some(id));
        });
        self
    }
}

fn now(time: &Time<Real>) -> f64 {
    time.elapsed_secs_f64()
}

/// Builds the setup of an NPC's session.
pub(crate) fn npc_setup(npc: &LiveNpc, model: &str, registry: &NpcToolRegistry) -> Setup<'static> {
    let decls = registry.declarations(npc.tools.iter());
    let aad = &npc.vad;
    Setup {
        model: crate::protocol::model_resource(npc.model.as_deref().unwrap_or(model)),
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec![npc.modality.clone()]),
            speech_config: Some(SpeechConfig {
                language_code: npc.language.clone(),
                ..SpeechConfig::voice(&npc.voice)
            }),
            enable_affective_dialog: npc.affective_dialog.then_some(true),
            ..Default::default()
        }),
        system_instruction: Some(Content::user_text(&npc.persona)),
        tools: (!decls.is_empty()).then(|| vec![Tool::functions(decls)]),
        realtime_input_config: Some(RealtimeInputConfig {
            automatic_activity_detection: Some(AutomaticActivityDetection {
                disabled: Some(!aad.automatic),
                start_of_speech_sensitivity: Some(aad.start_sensitivity.clone()),
                end_of_speech_sensitivity: Some(aad.end_sensitivity.clone()),
                prefix_padding_ms: Some(aad.prefix_padding_ms as i32),
                silence_duration_ms: Some(aad.silence_duration_ms as i32),
            }),
            activity_handling: Some(aad.activity_handling()),
            turn_coverage: None,
        }),
        input_audio_transcription: npc.transcription.then(AudioTranscriptionConfig::default),
        output_audio_transcription: (npc.transcription && npc.modality == Modality::Audio)
            .then(AudioTranscriptionConfig::default),
        proactivity: npc
            .proactive_audio
            .then_some(ProactivityConfig { proactive_audio: Some(true), proactive_video: None }),
        ..Default::default()
    }
}

type FocusCandidate =
    (Entity, &'static GlobalTransform, Option<&'static InEngageRange>, Option<&'static mut NpcConversation>);

type WantedNpc = (
    Entity,
    &'static LiveNpc,
    &'static NpcState,
    Has<ConversationRequested>,
    Has<InEngageRange>,
    Option<&'static PendingSay>,
);

/// Chooses the focused NPC: the one code focused, else the NPC in range the listener faces
/// most directly, else the nearest in range. Marks NPCs in range.
pub fn update_focus(
    mut commands: Commands,
    settings: Res<LiveNpcSettings>,
    mut focus: ResMut<NpcFocus>,
    route: Res<MicRoute>,
    listeners: Query<&GlobalTransform, With<NpcListener>>,
    mut npcs: Query<FocusCandidate, With<LiveNpc>>,
) {
    let listener = listeners.iter().next();
    let mut best: Option<(Entity, f32)> = None;
    let cos_limit = settings.facing_angle_deg.to_radians().cos();
    for (entity, transform, in_range, _) in &npcs {
        let Some(listener) = listener else {
            break;
        };
        let to_npc = transform.translation() - listener.translation();
        let distance = to_npc.length();
        let inside = distance <= settings.engage_radius;
        match (inside, in_range.is_some()) {
            (true, false) => {
                commands.entity(entity).insert(InEngageRange);
            }
            // A little hysteresis so standing on the edge does not flap.
            (false, true) if distance > settings.engage_radius * 1.1 => {
                commands.entity(entity).remove::<InEngageRange>();
            }
            _ => {}
        }
        if !inside {
            continue;
        }
        let facing = if distance > 1e-3 { listener.forward().dot(to_npc / distance) } else { 1.0 };
        // Faced NPCs win over merely near ones; among faced ones the most central wins.
        let score = if facing >= cos_limit { 10.0 + facing } else { 1.0 / (1.0 + distance) };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((entity, score));
        }
    }
    if let Some(forced) = focus.forced
        && npcs.get(forced).is_err()
    {
        focus.forced = None;
    }
    let next = focus.forced.or(best.map(|(e, _)| e));
    let previous = focus.current;
    if next != previous {
        // Close the half-sent turn of the NPC losing focus.
        if let Some(prev) = previous
            && let Ok((_, _, _, Some(mut conv))) = npcs.get_mut(prev)
        {
            close_open_activity(&mut conv, prev);
        }
        focus.current = next;
    }
    let target = next.and_then(|e| npcs.get(e).ok()).and_then(|(e, _, _, c)| c.map(|c| (e, c.mic())));
    let current_route = route.get().map(|(e, _)| e);
    if current_route != target.as_ref().map(|(e, _)| *e) {
        route.set(target);
    }
}

fn close_open_activity(conv: &mut NpcConversation, npc: Entity) {
    if conv.activity_open {
        conv.activity_open = false;
        if conv.session.send(SessionCommand::ActivityEnd).is_err() {
            warn!("could not close the player's turn with {npc:?}: its command queue is full");
        }
    } else {
        let _ = conv.session.send(SessionCommand::AudioStreamEnd);
    }
}

/// Opens sessions for NPCs in range or requested by code, within the concurrency cap.
#[allow(clippy::too_many_arguments)]
pub fn open_sessions(
    mut commands: Commands,
    settings: Res<LiveNpcSettings>,
    runtime: Res<LiveNpcRuntime>,
    registry: Res<NpcToolRegistry>,
    sinks: Res<AudioSinkFactory>,
    time: Res<Time<Real>>,
    open: Query<(), With<NpcConversation>>,
    wanted: Query<WantedNpc, Without<NpcConversation>>,
    mut capped: Local<Vec<Entity>>,
) {
    let mut open_count = open.iter().count();
    capped.retain(|e| wanted.contains(*e));
    for (entity, npc, state, requested, in_range, said) in &wanted {
        if !(requested || (settings.auto_engage && in_range)) {
            continue;
        }
        // A failed NPC stays failed until code asks again.
        if matches!(state, NpcState::Failed(_)) && !requested {
            continue;
        }
        if open_count >= settings.max_sessions {
            if !capped.contains(&entity) {
                capped.push(entity);
                let error = crate::protocol::LiveError::fatal(
                    crate::protocol::CloseCode::Other(0),
                    format!(
                        "concurrency cap reached: {} sessions are open (LiveNpcPlugin::max_sessions); {} waits",
                        settings.max_sessions, npc.name
                    ),
                );
                warn!("{}", error.reason);
                announce(&mut commands, NpcError { entity, error, fatal: false });
            }
            continue;
        }
        let Some(rt) = runtime.runtime.as_ref() else {
            continue;
        };
        let base_url = match runtime.base_url() {
            Ok(u) => u.to_owned(),
            Err(reason) => {
                let error = crate::protocol::LiveError::fatal(crate::protocol::CloseCode::Other(0), reason);
                commands.entity(entity).insert(NpcState::failed(&error)).remove::<ConversationRequested>();
                announce(&mut commands, NpcError { entity, error, fatal: true });
                continue;
            }
        };
        let setup = npc_setup(npc, &settings.model, &registry);
        let mut config = SessionConfig::new(base_url, runtime.auth.clone(), setup);
        config.extra_root_pem = runtime.extra_root_pem.clone();
        config.jitter_seed = entity.to_bits();
        let session = rt.spawn(config, (sinks.0)(entity, npc));
        open_count += 1;
        let mut conversation = NpcConversation {
            session,
            last_activity: now(&time),
            player_text: String::new(),
            npc_text: String::new(),
            typed_turn: said.is_some(),
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
            sent_persona: npc.persona.clone(),
            sent_tools: npc.tools.clone(),
        };
        // Text said before the conversation existed goes first, in order.
        for cmd in said.map(|p| p.0.clone()).unwrap_or_default() {
            conversation.send_or_queue(cmd);
        }
        commands.entity(entity).insert((conversation, NpcState::Connecting)).remove::<PendingSay>();
        announce(&mut commands, NpcStateChanged { entity, state: NpcState::Connecting });
    }
}

/// Closes conversations with no input or output for the idle timeout, and those no longer
/// wanted once idle.
pub fn close_idle_sessions(
    mut commands: Commands,
    settings: Res<LiveNpcSettings>,
    time: Res<Time<Real>>,
    convs: Query<(Entity, &NpcConversation, &NpcState)>,
) {
    let t = now(&time);
    for (entity, conv, state) in &convs {
        let idle = t - conv.last_activity;
        // A finished task's last events (its error, `Failed`) must be read before it counts as done.
        let finished =
            conv.session.is_finished() && conv.session.events().is_empty() && !matches!(state, NpcState::Failed(_));
        if idle >= settings.idle_timeout.as_secs_f64() && !conv.speaking || finished {
            info!("closing the conversation with {entity:?} after {idle:.0} s idle");
            commands.entity(entity).remove::<(NpcConversation, ConversationRequested)>().insert(NpcState::Idle);
            announce(&mut commands, NpcStateChanged { entity, state: NpcState::Idle });
        }
    }
}

/// Writes state changes only when the state really changes.
fn set_state(commands: &mut Commands, entity: Entity, state: &mut NpcState, next: NpcState) {
    if *state != next {
        *state = next.clone();
        announce(commands, NpcStateChanged { entity, state: next });
    }
}

/// An NPC with an open conversation, and whether its voice is heard ([`PlaybackDrivenSpeech`]).
type OpenConversation =
    (Entity, &'static mut NpcConversation, &'static mut NpcState, &'static mut NpcStats, Has<PlaybackDrivenSpeech>);

/// Turns session events into state, messages, stats and queued tool calls.
pub fn receive_events(
    mut commands: Commands,
    settings: Res<LiveNpcSettings>,
    time: Res<Time<Real>>,
    mut pending: ResMut<PendingToolCalls>,
    mut convs: Query<OpenConversation>,
) {
    let t = now(&time);
    for (entity, mut conv, mut state, mut stats, heard) in &mut convs {
        conv.audio_announces = heard;
        for _ in 0..settings.events_per_frame {
            let Some(event) = conv.session.try_event() else {
                break;
            };
            conv.last_activity = t;
            handle_event(&mut commands, entity, &mut conv, &mut state, &mut stats, &mut pending, event);
        }
        conv.flush_queued();
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_event(
    commands: &mut Commands,
    entity: Entity,
    conv: &mut NpcConversation,
    state: &mut NpcState,
    stats: &mut NpcStats,
    pending: &mut PendingToolCalls,
    event: SessionEvent,
) {
    match event {
        SessionEvent::State(s) => {
            // A turn cut off by a dropped connection is over; the resumed session starts clean.
            if matches!(s, ConnectionState::Reconnecting { .. } | ConnectionState::Failed(_) | ConnectionState::Closed)
                && conv.speaking
            {
                end_npc_turn(commands, entity, conv, state, stats, true);
            }
            let next = match s {
                ConnectionState::Connecting => NpcState::Connecting,
                ConnectionState::Open => {
                    if conv.speaking {
                        NpcState::Speaking
                    } else {
                        NpcState::Listening
                    }
                }
                ConnectionState::Reconnecting { .. } => NpcState::Reconnecting,
                ConnectionState::Closed => NpcState::Idle,
                ConnectionState::Failed(e) => NpcState::failed(&e),
            };
            if matches!(next, NpcState::Failed(_) | NpcState::Idle) {
                commands.entity(entity).remove::<ConversationRequested>();
            }
            set_state(commands, entity, state, next);
        }
        SessionEvent::Ready { .. } => {
            conv.ready = true;
            conv.flush_queued();
        }
        SessionEvent::ContextLost => {
            let error = crate::protocol::LiveError::dropped("the conversation could not be resumed; it starts over");
            announce(commands, NpcError { entity, error, fatal: false });
        }
        SessionEvent::InputTranscript { text, finished } => {
            if conv.typed_turn {
                return;
            }
            conv.player_text.push_str(&text);
            let line = conv.player_text.trim().to_owned();
            announce(
                commands,
                NpcTranscript { entity, speaker: Speaker::Player, text: line, delta: text, is_final: finished },
            );
            if finished {
                conv.player_text.clear();
            }
            if !conv.speaking {
                set_state(commands, entity, state, NpcState::Thinking);
            }
        }
        SessionEvent::ModelTurnStarted => {
            finish_player_line(commands, entity, conv);
            conv.speaking = true;
            if !conv.audio_announces {
                announce(commands, NpcSpeechStarted { entity });
                set_state(commands, entity, state, NpcState::Speaking);
            }
        }
        SessionEvent::OutputTranscript { text, .. } | SessionEvent::Text(text) => {
            conv.npc_text.push_str(&text);
            let line = conv.npc_text.trim().to_owned();
            announce(
                commands,
                NpcTranscript { entity, speaker: Speaker::Npc, text: line, delta: text, is_final: false },
            );
        }
        SessionEvent::Interrupted => {
            conv.interrupted_turn = true;
            announce(commands, NpcInterrupted { entity });
            end_npc_turn(commands, entity, conv, state, stats, true);
        }
        SessionEvent::TurnComplete { .. } => {
            end_npc_turn(commands, entity, conv, state, stats, false);
            let interrupted = std::mem::take(&mut conv.interrupted_turn);
            announce(commands, NpcTurnComplete { entity, interrupted });
        }
        SessionEvent::GenerationComplete | SessionEvent::WaitingForInput | SessionEvent::GoAway { .. } => {}
        SessionEvent::ToolCall(calls) => {
            for call in calls {
                pending.0.push_back((entity, call));
            }
        }
        SessionEvent::ToolCallCancellation(ids) => {
            for id in ids {
                let mut name = None;
                pending.0.retain(|(e, c)| {
                    let hit = *e == entity && c.id.as_deref() == Some(id.as_str());
                    if hit {
                        name = Some(c.name.clone());
                    }
                    !hit
                });
                let already_ran = name.is_none();
                if let Some(i) = conv.deferred.iter().position(|(i, _, _)| *i == id) {
                    name = Some(conv.deferred.remove(i).1);
                }
                if name.is_none() {
                    name = conv.ran_calls.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone());
                }
                let name = name.unwrap_or_default();
                announce(commands, NpcToolCancelled { entity, call_id: id, name, already_ran });
            }
        }
        SessionEvent::Usage(u) => {
            let total = u.total_token_count.unwrap_or(0).max(0) as u32;
            stats.total_tokens += u64::from(total);
            announce(
                commands,
                NpcUsage {
                    entity,
                    prompt_tokens: u.prompt_token_count.unwrap_or(0).max(0) as u32,
                    response_tokens: u.response_token_count.unwrap_or(0).max(0) as u32,
                    total_tokens: total,
                },
            );
        }
        SessionEvent::Error { error, fatal } => {
            if fatal {
                set_state(commands, entity, state, NpcState::failed(&error));
            }
            announce(commands, NpcError { entity, error, fatal });
        }
    }
}

fn finish_player_line(commands: &mut Commands, entity: Entity, conv: &mut NpcConversation) {
    if !conv.player_text.trim().is_empty() {
        let text = conv.player_text.trim().to_owned();
        announce(
            commands,
            NpcTranscript { entity, speaker: Speaker::Player, text, delta: String::new(), is_final: true },
        );
    }
    conv.player_text.clear();
    conv.typed_turn = false;
}

fn end_npc_turn(
    commands: &mut Commands,
    entity: Entity,
    conv: &mut NpcConversation,
    state: &mut NpcState,
    stats: &mut NpcStats,
    interrupted: bool,
) {
    finish_player_line(commands, entity, conv);
    let text = std::mem::take(&mut conv.npc_text).trim().to_owned();
    if conv.speaking || !text.is_empty() {
        announce(commands, NpcTranscript { entity, speaker: Speaker::Npc, text, delta: String::new(), is_final: true });
        if !conv.audio_announces {
            announce(commands, NpcSpeechEnded { entity, interrupted });
        }
        stats.turns += 1;
    }
    conv.speaking = false;
    conv.ran_calls.clear();
    // With playback-driven speech, the audio layer leaves `Speaking` when the voice goes quiet.
    if state.is_active() && !(conv.audio_announces && *state == NpcState::Speaking) {
        set_state(commands, entity, state, NpcState::Listening);
    }
}

/// Runs queued tool calls (an exclusive system: tools are systems) and answers the model.
pub fn dispatch_tool_calls(world: &mut World) {
    let calls: Vec<(Entity, FunctionCall)> = world.resource_mut::<PendingToolCalls>().0.drain(..).collect();
    if calls.is_empty() {
        return;
    }
    let t = world.resource::<Time<Real>>().elapsed_secs_f64();
    for (npc, call) in calls {
        let Some(allowed) = world.get::<LiveNpc>(npc).map(|n| (n.may_use(&call.name), n.tool_calls_per_minute)) else {
            continue;
        };
        let (allowed, per_minute) = allowed;
        let limited = world.get_mut::<NpcConversation>(npc).is_some_and(|mut conv| {
            conv.recent_calls.retain(|at| t - at < 60.0);
            let over = per_minute > 0 && conv.recent_calls.len() >= per_minute as usize;
            if !over {
                conv.recent_calls.push_back(t);
            }
            over
        });
        let args = serde_json::to_string(&call.args.clone().unwrap_or_default()).unwrap_or_default();
        let call_id = call.id.clone().unwrap_or_default();
        world.write_message(NpcToolCalled {
            entity: npc,
            call_id: call_id.clone(),
            name: call.name.clone(),
            args: args.clone(),
        });
        world.trigger(NpcToolCalled {
            entity: npc,
            call_id: call_id.clone(),
            name: call.name.clone(),
            args: args.clone(),
        });
        let outcome = if limited {
            crate::tools::Dispatched {
                response: Some(crate::protocol::FunctionResponse::error(
                    call.id.clone(),
                    &call.name,
                    format!("rate limit: at most {per_minute} tool calls per minute"),
                )),
                is_error: true,
            }
        } else {
            dispatch(world, npc, &call, allowed)
        };
        let Some(mut conv) = world.get_mut::<NpcConversation>(npc) else {
            continue;
        };
        conv.ran_calls.push((call_id.clone(), call.name.clone()));
        match outcome.response {
            None => conv.deferred.push((call_id, call.name.clone(), args)),
            Some(response) => {
                let finished = finish_call(&mut conv, npc, call_id, &call.name, args, response, outcome.is_error);
                world.write_message(finished.clone());
                world.trigger(finished);
            }
        }
    }
}

/// Sends a tool response (never lost: a full queue keeps it for the next frame) and describes it.
fn finish_call(
    conv: &mut NpcConversation,
    npc: Entity,
    call_id: String,
    name: &str,
    args: String,
    response: crate::protocol::FunctionResponse<'static>,
    is_error: bool,
) -> NpcToolFinished {
    let shown = serde_json::to_string(&response.response).unwrap_or_default();
    let cmd = SessionCommand::ToolResponse(vec![response]);
    conv.send_or_queue(cmd);
    NpcToolFinished { entity: npc, call_id, name: name.to_owned(), response: shown, args, is_error }
}

/// Sends the answers of deferred tools.
pub fn answer_deferred_calls(
    mut commands: Commands,
    mut answers: MessageReader<AnswerToolCall>,
    registry: Res<NpcToolRegistry>,
    mut convs: Query<&mut NpcConversation>,
) {
    for answer in answers.read() {
        let Ok(mut conv) = convs.get_mut(answer.npc) else {
            debug!("tool answer for {:?} dropped: no open conversation", answer.npc);
            continue;
        };
        let Some(i) = conv.deferred.iter().position(|(id, _, _)| *id == answer.call_id) else {
            debug!("tool answer {} dropped: the call was cancelled or already answered", answer.call_id);
            continue;
        };
        let (call_id, name, args) = conv.deferred.remove(i);
        let (response, is_error) =
            crate::tools::respond(Some(&registry), Some(call_id.clone()), &name, answer.result.clone());
        let finished = finish_call(&mut conv, answer.npc, call_id, &name, args, response, is_error);
        announce(&mut commands, finished);
    }
}

/// Sends typed text and activity markers; opens conversations for text said to idle NPCs.
#[derive(SystemParam)]
pub struct PlayerInput<'w, 's> {
    say: MessageReader<'w, 's, SayToNpc>,
    activity: MessageReader<'w, 's, NpcActivity>,
}

/// Sends the player's typed text and activity markers.
pub fn send_player_input(
    mut commands: Commands,
    mut input: PlayerInput,
    time: Res<Time<Real>>,
    mut convs: Query<(&LiveNpc, &mut NpcState, Option<&mut NpcConversation>)>,
) {
    let t = now(&time);
    for SayToNpc { npc, text } in input.say.read() {
        let Ok((live, mut state, conv)) = convs.get_mut(*npc) else {
            warn!("SayToNpc: {npc:?} is not a LiveNpc");
            continue;
        };
        let cmd = SessionCommand::Text { text: text.clone(), mode: live.text_mode };
        announce(
            &mut commands,
            NpcTranscript {
                entity: *npc,
                speaker: Speaker::Player,
                text: text.clone(),
                delta: text.clone(),
                is_final: true,
            },
        );
        match conv {
            Some(mut conv) => {
                conv.last_activity = t;
                conv.typed_turn = true;
                conv.send_or_queue(cmd);
                if !conv.speaking && state.is_active() {
                    set_state(&mut commands, *npc, &mut state, NpcState::Thinking);
                }
            }
            None => {
                // Open the conversation; the text goes out once it is ready.
                let npc = *npc;
                commands.entity(npc).insert(ConversationRequested);
                commands.queue(move |world: &mut World| {
                    if let Ok(mut e) = world.get_entity_mut(npc) {
                        match e.get_mut::<PendingSay>() {
                            // Bounded like the conversation's own queue.
                            Some(p) if p.0.len() >= MAX_QUEUED_COMMANDS => {
                                warn!("too much text for {npc:?}; dropped")
                            }
                            Some(mut p) => p.0.push(cmd),
                            None => {
                                e.insert(PendingSay(vec![cmd]));
                            }
                        }
                    }
                });
            }
        }
    }
    for NpcActivity { npc, kind } in input.activity.read() {
        let Ok((_, _, Some(mut conv))) = convs.get_mut(*npc) else {
            continue;
        };
        conv.last_activity = t;
        let cmd = match kind {
            ActivityKind::Start => {
                conv.activity_open = true;
                SessionCommand::ActivityStart
            }
            ActivityKind::End => {
                conv.activity_open = false;
                SessionCommand::ActivityEnd
            }
            ActivityKind::StreamEnd => SessionCommand::AudioStreamEnd,
        };
        conv.send_or_queue(cmd);
    }
}

/// Sends `contextUpdate` when an NPC's persona or tools change mid-session.
pub fn send_context_updates(
    registry: Res<NpcToolRegistry>,
    mut convs: Query<(&LiveNpc, &mut NpcConversation), Changed<LiveNpc>>,
) {
    for (npc, mut conv) in &mut convs {
        let persona_changed = conv.sent_persona != npc.persona;
        let tools_changed = conv.sent_tools != npc.tools;
        if !persona_changed && !tools_changed {
            continue;
        }
        let update = ContextUpdate {
            system_instruction: persona_changed.then(|| Content::user_text(&npc.persona)),
            tools: tools_changed
                .then(|| ToolsUpdate { tools: vec![Tool::functions(registry.declarations(npc.tools.iter()))] }),
        };
        conv.sent_persona = npc.persona.clone();
        conv.sent_tools = npc.tools.clone();
        let cmd = SessionCommand::ContextUpdate(update);
        conv.send_or_queue(cmd);
    }
}

/// Copies session metrics into [`NpcStats`] and the plugin's diagnostics.
pub fn publish_diagnostics(
    mut diagnostics: Diagnostics,
    mut convs: Query<(&NpcConversation, &mut NpcStats)>,
    mut last_latency: Local<Option<Duration>>,
) {
    let mut dropped = 0;
    let mut tokens = 0;
    let mut sessions = 0;
    for (conv, mut stats) in &mut convs {
        sessions += 1;
        let m = conv.metrics();
        let latency = m.last_reply_latency();
        if latency.is_some() && stats.last_reply_latency != latency {
            *last_latency = latency;
        }
        let next = NpcStats {
            last_reply_latency: latency,
            dropped_mic_chunks: SessionMetrics::get(&m.mic_chunks_dropped),
            decode_errors: SessionMetrics::get(&m.decode_errors),
            dropped_commands: conv.dropped_commands,
            total_tokens: stats.total_tokens,
            reconnects: SessionMetrics::get(&m.reconnects),
            turns: stats.turns,
        };
        dropped += next.dropped_mic_chunks;
        tokens += next.total_tokens;
        let changed = stats.last_reply_latency != next.last_reply_latency
            || stats.dropped_mic_chunks != next.dropped_mic_chunks
            || stats.decode_errors != next.decode_errors
            || stats.dropped_commands != next.dropped_commands
            || stats.reconnects != next.reconnects;
        if changed {
            *stats = next;
        }
    }
    if let Some(l) = *last_latency {
        diagnostics.add_measurement(&diagnostics::REPLY_LATENCY_MS, || l.as_secs_f64() * 1000.0);
    }
    diagnostics.add_measurement(&diagnostics::DROPPED_MIC_CHUNKS, || dropped as f64);
    diagnostics.add_measurement(&diagnostics::TOTAL_TOKENS, || tokens as f64);
    diagnostics.add_measurement(&diagnostics::SESSIONS, || f64::from(sessions));
}
