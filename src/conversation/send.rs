//! Player input out (typed text, activity markers), context updates when an NPC's persona or
//! tools change, and the session metrics as stats and diagnostics.

use std::time::Duration;

use bevy::diagnostic::Diagnostics;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::components::{ConversationRequested, MAX_QUEUED_COMMANDS, NpcConversation, PendingSay, now, set_state};
use crate::messages::*;
use crate::npc::{LiveNpc, NpcState, NpcStats};
use crate::protocol::{Content, ContextUpdate, Tool, ToolsUpdate};
use crate::schedule::LiveNpcSystems;
use crate::session::{SessionCommand, SessionMetrics};
use crate::settings::diagnostics;
use crate::tools::NpcToolRegistry;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(
        PostUpdate,
        (send_player_input, send_context_updates, publish_diagnostics).in_set(LiveNpcSystems::Send),
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionHandle, SessionPeer};

    fn app() -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .init_resource::<NpcToolRegistry>()
            .add_message::<SayToNpc>()
            .add_message::<NpcActivity>()
            .add_message::<NpcTranscript>()
            .add_message::<NpcStateChanged>()
            .add_systems(Update, (send_player_input, send_context_updates));
        app
    }

    fn npc(app: &mut App) -> (Entity, SessionPeer) {
        let (handle, peer) = SessionHandle::pair(16);
        let live = LiveNpc::new("Mira").persona("You are Mira.");
        let conv = NpcConversation::new(handle, &live, 0.0, false);
        (app.world_mut().spawn((live, conv, NpcState::Listening)).id(), peer)
    }

    #[test]
    fn typed_text_goes_out_and_shows_as_the_players_line() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app);
        app.world_mut().write_message(SayToNpc { npc: e, text: "Hello!".into() });
        app.update();
        assert!(matches!(peer.try_command(), Some(SessionCommand::Text { text, .. }) if text == "Hello!"));
        assert_eq!(app.world().get::<NpcState>(e), Some(&NpcState::Thinking));
        let lines: Vec<NpcTranscript> = app.world_mut().resource_mut::<Messages<NpcTranscript>>().drain().collect();
        assert!(lines.len() == 1 && lines[0].speaker == Speaker::Player && lines[0].is_final);
    }

    #[test]
    fn text_for_an_npc_without_a_conversation_waits_for_one() {
        let mut app = app();
        let e = app.world_mut().spawn(LiveNpc::new("Ada")).id();
        for text in ["one", "two"] {
            app.world_mut().write_message(SayToNpc { npc: e, text: text.into() });
        }
        app.update();
        assert!(app.world().get::<ConversationRequested>(e).is_some());
        let pending = app.world().get::<PendingSay>(e).map(|p| p.0.len());
        assert_eq!(pending, Some(2), "both lines wait, in order");
    }

    #[test]
    fn activity_markers_go_out_and_track_the_open_turn() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app);
        app.world_mut().write_message(NpcActivity { npc: e, kind: ActivityKind::Start });
        app.update();
        assert!(matches!(peer.try_command(), Some(SessionCommand::ActivityStart)));
        assert!(app.world().get::<NpcConversation>(e).is_some_and(|c| c.activity_open));
        app.world_mut().write_message(NpcActivity { npc: e, kind: ActivityKind::End });
        app.update();
        assert!(matches!(peer.try_command(), Some(SessionCommand::ActivityEnd)));
        assert!(app.world().get::<NpcConversation>(e).is_some_and(|c| !c.activity_open));
    }

    #[test]
    fn a_persona_change_sends_a_context_update_once() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app);
        app.update();
        assert!(peer.try_command().is_none(), "nothing changed yet");
        app.world_mut().get_mut::<LiveNpc>(e).expect("npc").persona = "You are Mira, now the mayor.".into();
        app.update();
        match peer.try_command() {
            Some(SessionCommand::ContextUpdate(u)) => {
                assert!(u.system_instruction.is_some() && u.tools.is_none(), "{u:?}");
            }
            other => panic!("expected a context update, got {other:?}"),
        }
        app.update();
        assert!(peer.try_command().is_none());
    }
}
