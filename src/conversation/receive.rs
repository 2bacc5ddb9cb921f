//! Session events become state, messages, stats and queued tool calls.

use bevy::prelude::*;

use super::components::{
    ConversationRequested, MAX_CALLS_PER_MESSAGE, MAX_PENDING_CALLS, NpcConversation, PendingToolCalls,
    PlaybackDrivenSpeech, now, set_state,
};
use crate::messages::*;
use crate::npc::{NpcState, NpcStats};
use crate::protocol::{FunctionResponse, LiveError};
use crate::schedule::LiveNpcSystems;
use crate::session::{ConnectionState, SessionCommand, SessionEvent};
use crate::settings::LiveNpcSettings;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<PendingToolCalls>().add_systems(PreUpdate, receive_events.in_set(LiveNpcSystems::Receive));
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
            let error = LiveError::dropped("the conversation could not be resumed; it starts over");
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
            for (i, call) in calls.into_iter().enumerate() {
                if i >= MAX_CALLS_PER_MESSAGE || pending.0.len() >= MAX_PENDING_CALLS {
                    // Answered (never dropped silently), not run, counted.
                    conv.refused_calls += 1;
                    let reason = format!(
                        "too many tool calls: at most {MAX_CALLS_PER_MESSAGE} per message and {MAX_PENDING_CALLS} waiting"
                    );
                    let response = FunctionResponse::error(call.id.clone(), &call.name, reason);
                    conv.send_or_queue(SessionCommand::ToolResponse(vec![response]));
                    continue;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npc::LiveNpc;
    use crate::protocol::FunctionCall;
    use crate::session::{SessionHandle, SessionPeer};

    fn app(events_per_frame: usize) -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(LiveNpcSettings { events_per_frame, ..Default::default() })
            .init_resource::<PendingToolCalls>()
            .add_message::<NpcTranscript>()
            .add_message::<NpcSpeechStarted>()
            .add_message::<NpcSpeechEnded>()
            .add_message::<NpcTurnComplete>()
            .add_message::<NpcInterrupted>()
            .add_message::<NpcToolCancelled>()
            .add_message::<NpcStateChanged>()
            .add_message::<NpcError>()
            .add_message::<NpcUsage>()
            .add_systems(Update, receive_events);
        app
    }

    fn npc(app: &mut App) -> (Entity, SessionPeer) {
        let (handle, peer) = SessionHandle::pair(16);
        let live = LiveNpc::new("Mira");
        let conv = NpcConversation::new(handle, &live, 0.0, false);
        let e = app.world_mut().spawn((live, conv, NpcState::Connecting, ConversationRequested)).id();
        (e, peer)
    }

    fn send(app: &mut App, peer: &SessionPeer, events: impl IntoIterator<Item = SessionEvent>) {
        for e in events {
            assert!(peer.send_event(e));
        }
        app.update();
    }

    fn drain<M: Message>(app: &mut App) -> Vec<M> {
        app.world_mut().resource_mut::<Messages<M>>().drain().collect()
    }

    fn state(app: &App, e: Entity) -> NpcState {
        app.world().get::<NpcState>(e).cloned().unwrap_or_default()
    }

    fn npc_lines(app: &mut App) -> Vec<(String, bool)> {
        drain::<NpcTranscript>(app)
            .into_iter()
            .filter(|t| t.speaker == Speaker::Npc)
            .map(|t| (t.text, t.is_final))
            .collect()
    }

    #[test]
    fn a_turn_goes_listening_speaking_listening_with_its_messages() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        send(&mut app, &peer, [SessionEvent::State(ConnectionState::Open)]);
        assert_eq!(state(&app, e), NpcState::Listening);
        let changes: Vec<NpcState> = drain::<NpcStateChanged>(&mut app).into_iter().map(|c| c.state).collect();
        assert_eq!(changes, [NpcState::Listening]);

        send(
            &mut app,
            &peer,
            [
                SessionEvent::ModelTurnStarted,
                SessionEvent::OutputTranscript { text: "Hello ".into(), finished: false },
                SessionEvent::OutputTranscript { text: "there.".into(), finished: false },
            ],
        );
        assert_eq!(state(&app, e), NpcState::Speaking);
        assert_eq!(drain::<NpcSpeechStarted>(&mut app).len(), 1);
        assert_eq!(npc_lines(&mut app), [("Hello".to_owned(), false), ("Hello there.".to_owned(), false)]);

        send(&mut app, &peer, [SessionEvent::TurnComplete { reason: None }]);
        assert_eq!(state(&app, e), NpcState::Listening);
        assert_eq!(npc_lines(&mut app), [("Hello there.".to_owned(), true)]);
        let ended = drain::<NpcSpeechEnded>(&mut app);
        assert!(ended.len() == 1 && !ended[0].interrupted);
        let complete = drain::<NpcTurnComplete>(&mut app);
        assert!(complete.len() == 1 && !complete[0].interrupted);
        assert_eq!(app.world().get::<NpcStats>(e).map(|s| s.turns), Some(1));
    }

    #[test]
    fn a_barge_in_ends_the_speech_as_interrupted() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        send(&mut app, &peer, [SessionEvent::State(ConnectionState::Open), SessionEvent::ModelTurnStarted]);
        send(&mut app, &peer, [SessionEvent::Interrupted]);
        assert_eq!(drain::<NpcInterrupted>(&mut app).len(), 1);
        let ended = drain::<NpcSpeechEnded>(&mut app);
        assert!(ended.len() == 1 && ended[0].interrupted);
        assert_eq!(state(&app, e), NpcState::Listening);
        send(&mut app, &peer, [SessionEvent::TurnComplete { reason: None }]);
        let complete = drain::<NpcTurnComplete>(&mut app);
        assert!(complete.len() == 1 && complete[0].interrupted, "{complete:?}");
    }

    #[test]
    fn the_player_speaking_makes_the_npc_think() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        send(
            &mut app,
            &peer,
            [
                SessionEvent::State(ConnectionState::Open),
                SessionEvent::InputTranscript { text: "Open the ".into(), finished: false },
                SessionEvent::InputTranscript { text: "gate".into(), finished: true },
            ],
        );
        assert_eq!(state(&app, e), NpcState::Thinking);
        let player: Vec<(String, bool)> = drain::<NpcTranscript>(&mut app)
            .into_iter()
            .filter(|t| t.speaker == Speaker::Player)
            .map(|t| (t.text, t.is_final))
            .collect();
        assert_eq!(player, [("Open the".to_owned(), false), ("Open the gate".to_owned(), true)]);
    }

    #[test]
    fn with_playback_driven_speech_the_audio_layer_announces_speaking() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        app.world_mut().entity_mut(e).insert(PlaybackDrivenSpeech);
        send(&mut app, &peer, [SessionEvent::State(ConnectionState::Open), SessionEvent::ModelTurnStarted]);
        assert!(drain::<NpcSpeechStarted>(&mut app).is_empty());
        assert_eq!(state(&app, e), NpcState::Listening);
        send(&mut app, &peer, [SessionEvent::TurnComplete { reason: None }]);
        assert!(drain::<NpcSpeechEnded>(&mut app).is_empty());
    }

    #[test]
    fn errors_and_closes_end_the_conversation_request() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        let error = LiveError::fatal(crate::protocol::CloseCode::PolicyViolation, "no");
        send(&mut app, &peer, [SessionEvent::Error { error: error.clone(), fatal: true }]);
        assert!(matches!(state(&app, e), NpcState::Failed(_)));
        let errors = drain::<NpcError>(&mut app);
        assert!(errors.len() == 1 && errors[0].fatal);
        send(&mut app, &peer, [SessionEvent::State(ConnectionState::Failed(error))]);
        assert!(app.world().get::<ConversationRequested>(e).is_none());

        let (e, peer) = npc(&mut app);
        send(&mut app, &peer, [SessionEvent::State(ConnectionState::Closed)]);
        assert_eq!(state(&app, e), NpcState::Idle);
        assert!(app.world().get::<ConversationRequested>(e).is_none());
    }

    #[test]
    fn tool_calls_queue_and_a_cancellation_takes_them_back() {
        let mut app = app(256);
        let (e, peer) = npc(&mut app);
        let call = |id: &str| FunctionCall { id: Some(id.into()), name: "open_gate".into(), args: None };
        send(&mut app, &peer, [SessionEvent::ToolCall(vec![call("a"), call("b")])]);
        assert_eq!(app.world().resource::<PendingToolCalls>().0.len(), 2);
        send(&mut app, &peer, [SessionEvent::ToolCallCancellation(vec!["a".into()])]);
        let pending: Vec<Option<String>> =
            app.world().resource::<PendingToolCalls>().0.iter().map(|(_, c)| c.id.clone()).collect();
        assert_eq!(pending, [Some("b".to_owned())]);
        let cancelled = drain::<NpcToolCancelled>(&mut app);
        assert_eq!(cancelled.len(), 1);
        assert!(cancelled[0].entity == e && cancelled[0].name == "open_gate" && !cancelled[0].already_ran);
    }

    #[test]
    fn calls_beyond_the_per_message_cap_are_answered_with_an_error_and_counted() {
        let mut app = app(256);
        let (e, mut peer) = npc(&mut app);
        let calls = (0..MAX_CALLS_PER_MESSAGE + 3)
            .map(|i| FunctionCall { id: Some(format!("c{i}")), name: "open_gate".into(), args: None })
            .collect();
        send(&mut app, &peer, [SessionEvent::ToolCall(calls)]);
        assert_eq!(app.world().resource::<PendingToolCalls>().0.len(), MAX_CALLS_PER_MESSAGE);
        let mut refused = Vec::new();
        while let Some(cmd) = peer.try_command() {
            if let SessionCommand::ToolResponse(r) = cmd {
                refused.extend(r.into_iter().map(|r| r.id));
            }
        }
        let expected: Vec<Option<String>> =
            (MAX_CALLS_PER_MESSAGE..MAX_CALLS_PER_MESSAGE + 3).map(|i| Some(format!("c{i}"))).collect();
        assert_eq!(refused, expected);
        assert_eq!(app.world().get::<NpcConversation>(e).map(NpcConversation::refused_calls), Some(3));
    }

    #[test]
    fn events_beyond_the_per_frame_cap_wait_for_the_next_frame() {
        let mut app = app(2);
        let (e, peer) = npc(&mut app);
        send(
            &mut app,
            &peer,
            [
                SessionEvent::State(ConnectionState::Open),
                SessionEvent::ModelTurnStarted,
                SessionEvent::TurnComplete { reason: None },
            ],
        );
        assert_eq!(state(&app, e), NpcState::Speaking, "the third event waits");
        app.update();
        assert_eq!(state(&app, e), NpcState::Listening);
    }
}
