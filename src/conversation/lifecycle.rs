//! When sessions open (in range, asked for by code, within the cap) and close (idle, finished,
//! `end_conversation`, `AppExit`), and what each session is set up with.

use bevy::app::AppExit;
use bevy::prelude::*;

use super::components::{ConversationRequested, InEngageRange, NpcConversation, NpcFocus, PendingSay, now};
use crate::messages::{NpcError, NpcStateChanged, announce};
use crate::npc::{LiveNpc, NpcState};
use crate::protocol::{
    AudioTranscriptionConfig, AutomaticActivityDetection, CloseCode, Content, GenerationConfig, LiveError, Modality,
    ProactivityConfig, RealtimeInputConfig, Setup, SpeechConfig, Tool,
};
use crate::runtime::LiveNpcRuntime;
use crate::schedule::{AudioSinkFactory, LiveNpcSystems};
use crate::session::SessionConfig;
use crate::settings::LiveNpcSettings;
use crate::tools::NpcToolRegistry;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, (open_sessions, close_idle_sessions).chain().in_set(LiveNpcSystems::Lifecycle))
        .add_systems(Last, shutdown_on_exit);
}

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
        context_window_compression: npc.context_compression.to_setup(),
        ..Default::default()
    }
}

type WantedNpc = (
    Entity,
    &'static LiveNpc,
    &'static NpcState,
    Has<ConversationRequested>,
    Has<InEngageRange>,
    Option<&'static PendingSay>,
);

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
                let error = LiveError::fatal(
                    CloseCode::Other(0),
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
                let error = LiveError::fatal(CloseCode::Other(0), reason);
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
        let mut conversation = NpcConversation::new(session, npc, now(&time), said.is_some());
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

/// On `AppExit`: every conversation ends (its session closes) and the runtime stops.
fn shutdown_on_exit(
    mut exits: MessageReader<AppExit>,
    mut commands: Commands,
    runtime: Option<ResMut<LiveNpcRuntime>>,
) {
    if exits.read().next().is_none() {
        return;
    }
    commands.queue(|world: &mut World| {
        let npcs: Vec<Entity> = world.query_filtered::<Entity, With<NpcConversation>>().iter(world).collect();
        for npc in npcs {
            world.entity_mut(npc).remove::<NpcConversation>();
        }
    });
    if let Some(mut rt) = runtime {
        rt.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npc::VadSettings;
    use crate::session::{SessionEvent, SessionHandle};

    #[test]
    fn an_npcs_setup_carries_its_persona_voice_vad_and_transcription() {
        let npc = LiveNpc::new("Mira").persona("You are Mira.");
        let setup = npc_setup(&npc, "models/gemini-3.8-live", &NpcToolRegistry::default());
        assert_eq!(setup.model, "models/gemini-3.8-live");
        assert!(setup.system_instruction.is_some());
        assert!(setup.tools.is_none(), "no tools declared");
        assert!(setup.input_audio_transcription.is_some() && setup.output_audio_transcription.is_some());
        let aad = setup.realtime_input_config.and_then(|r| r.automatic_activity_detection).expect("vad");
        assert_eq!(aad.disabled, Some(false));

        let manual = LiveNpc { vad: VadSettings { automatic: false, ..Default::default() }, ..npc.clone() };
        let setup = npc_setup(&manual, "models/gemini-3.8-live", &NpcToolRegistry::default());
        let aad = setup.realtime_input_config.and_then(|r| r.automatic_activity_detection).expect("vad");
        assert_eq!(aad.disabled, Some(true), "push-to-talk NPCs send their own activity markers");

        let own_model = npc.clone().model("gemini-2.5-flash-native-audio-preview-12-2025");
        let setup = npc_setup(&own_model, "models/gemini-3.8-live", &NpcToolRegistry::default());
        assert_eq!(setup.model, "models/gemini-2.5-flash-native-audio-preview-12-2025");
    }

    #[test]
    fn context_compression_is_on_by_default_and_can_be_changed_or_disabled() {
        use crate::npc::ContextCompression;
        let registry = NpcToolRegistry::default();
        let json = |npc: &LiveNpc| serde_json::to_value(npc_setup(npc, "models/gemini-3.8-live", &registry)).unwrap();
        let npc = LiveNpc::new("Mira");
        // The service ends uncompressed audio sessions after 15 minutes.
        assert_eq!(json(&npc)["contextWindowCompression"], serde_json::json!({"slidingWindow": {}}));
        let custom = npc
            .clone()
            .context_compression(ContextCompression::Custom { trigger_tokens: 20_000, target_tokens: 8_000 });
        assert_eq!(
            json(&custom)["contextWindowCompression"],
            serde_json::json!({"triggerTokens": "20000", "slidingWindow": {"targetTokens": "8000"}})
        );
        let off = npc.context_compression(ContextCompression::Off);
        assert!(json(&off).get("contextWindowCompression").is_none());
    }

    fn idle_app(idle: std::time::Duration) -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(LiveNpcSettings { idle_timeout: idle, ..Default::default() })
            .add_message::<NpcStateChanged>()
            .add_systems(Update, close_idle_sessions);
        app
    }

    #[test]
    fn idle_and_finished_conversations_close() {
        let mut app = idle_app(std::time::Duration::ZERO);
        let (handle, _peer) = SessionHandle::pair(4);
        let live = LiveNpc::new("Mira");
        let conv = NpcConversation::new(handle, &live, 0.0, false);
        let idle = app.world_mut().spawn((live, conv, NpcState::Listening, ConversationRequested)).id();
        app.update();
        assert!(app.world().get::<NpcConversation>(idle).is_none());
        assert!(app.world().get::<ConversationRequested>(idle).is_none());
        assert_eq!(app.world().get::<NpcState>(idle), Some(&NpcState::Idle));

        let mut app = idle_app(std::time::Duration::from_secs(3600));
        let (handle, peer) = SessionHandle::pair(4);
        let live = LiveNpc::new("Ada");
        let conv = NpcConversation::new(handle, &live, 0.0, false);
        let e = app.world_mut().spawn((live, conv, NpcState::Listening)).id();
        app.update();
        assert!(app.world().get::<NpcConversation>(e).is_some(), "busy and alive: stays open");
        // The session ends, but its last event has not been read: it stays until it is.
        assert!(peer.send_event(SessionEvent::State(crate::session::ConnectionState::Closed)));
        drop(peer);
        app.update();
        assert!(app.world().get::<NpcConversation>(e).is_some());
        let _ = app.world().get::<NpcConversation>(e).and_then(|c| c.session.try_event());
        app.update();
        assert!(app.world().get::<NpcConversation>(e).is_none(), "a finished session closes");
    }
}
