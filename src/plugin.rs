//! `LiveNpcPlugin` and the plugin group it stands for, `LiveNpcPlugins`: configuration, the
//! core plugin (runtime, settings, messages, diagnostics), run conditions.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bevy::app::PluginGroupBuilder;
use bevy::diagnostic::{Diagnostic, RegisterDiagnostic};
use bevy::prelude::*;

use crate::assets::NpcAssetsPlugin;
use crate::conversation::{NpcConversationPlugin, NpcFocus, NpcToolsPlugin};
use crate::messages::*;
use crate::npc::{LiveNpc, NpcListener, NpcState, NpcStats, VadSettings};
#[cfg(feature = "sim")]
pub use crate::runtime::SimulatorSettings;
pub use crate::runtime::{LiveBackend, LiveNpcRuntime};
use crate::schedule::AddingPluginGroup;
pub use crate::schedule::{AudioSinkFactory, LiveNpcSystems, MakeSink};
use crate::session::Auth;
pub use crate::settings::{LiveNpcSettings, diagnostics};

/// Makes sessions with the NPCs of a Bevy app: adds the whole [`LiveNpcPlugins`] group,
/// configured from these fields. Members added to the app before it keep their own
/// configuration (add `NpcAudioPlugin { .. }` first, or use the group's `.set(..)`).
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_live_npc::prelude::*;
///
/// App::new()
///     .add_plugins(MinimalPlugins)
///     .add_plugins(LiveNpcPlugin::default().engage_radius(4.0).max_sessions(2))
///     .run();
/// ```
#[derive(Clone, Debug, Default)]
pub struct LiveNpcPlugin {
    /// Which backend sessions use.
    pub backend: LiveBackend,
    /// Model id (else `LIVE_NPC_MODEL`, else the newest stable Live model). `LIVE_NPC_MODEL`
    /// wins over it.
    pub model: Option<String>,
    /// Engagement, focus, limits: also readable and writable as fields of the plugin
    /// (`plugin.engage_radius`), through `Deref`. Becomes the [`LiveNpcSettings`] resource.
    pub settings: LiveNpcSettings,
    /// Where NPC voices play (feature `audio`): the default device, an offline renderer, or
    /// nowhere (text only). Configures the group's [`NpcAudioPlugin`](crate::audio::NpcAudioPlugin).
    #[cfg(feature = "audio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
    pub audio: crate::audio::AudioBackendChoice,
}

impl Deref for LiveNpcPlugin {
    type Target = LiveNpcSettings;
    fn deref(&self) -> &LiveNpcSettings {
        &self.settings
    }
}

impl DerefMut for LiveNpcPlugin {
    fn deref_mut(&mut self) -> &mut LiveNpcSettings {
        &mut self.settings
    }
}

impl LiveNpcPlugin {
    /// Uses this backend.
    pub fn backend(mut self, backend: LiveBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Uses an endpoint (base URL) without credentials.
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        self.backend(LiveBackend::Endpoint { url: url.into(), auth: Auth::None, extra_root_pem: Vec::new() })
    }

    /// Uses ephemeral tokens from a token server (see [`LiveBackend::TokenServer`]) for the real
    /// service.
    pub fn token_server(self, url: impl Into<String>) -> Self {
        self.backend(LiveBackend::TokenServer { url: url.into(), endpoint: None, extra_root_pem: Vec::new() })
    }

    /// Uses the embedded simulator.
    #[cfg(feature = "sim")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
    pub fn simulator(self, settings: SimulatorSettings) -> Self {
        self.backend(LiveBackend::Simulator(settings))
    }

    /// Uses this model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the engage radius.
    pub fn engage_radius(mut self, radius: f32) -> Self {
        self.engage_radius = radius;
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the concurrency cap.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// Chooses where NPC voices play (feature `audio`).
    #[cfg(feature = "audio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
    pub fn audio(mut self, audio: crate::audio::AudioBackendChoice) -> Self {
        self.audio = audio;
        self
    }

    /// Turns proximity engagement on or off (off: only `start_conversation` opens sessions).
    pub fn auto_engage(mut self, on: bool) -> Self {
        self.auto_engage = on;
        self
    }

    /// Sets the facing half-angle in degrees.
    pub fn facing_angle_deg(mut self, degrees: f32) -> Self {
        self.facing_angle_deg = degrees;
        self
    }

    /// Sets how many session events each NPC handles per frame.
    pub fn events_per_frame(mut self, n: usize) -> Self {
        self.events_per_frame = n;
        self
    }

    /// The plugin group this plugin adds, to customise before adding it:
    /// `app.add_plugins(LiveNpcPlugin::default().into_group().build().disable::<NpcMicPlugin>())`.
    pub fn into_group(self) -> LiveNpcPlugins {
        LiveNpcPlugins(self)
    }
}

/// Every plugin of the crate, configured from a [`LiveNpcPlugin`]:
///
/// - [`LiveNpcCorePlugin`]: the session runtime (and embedded simulator), [`LiveNpcSettings`],
///   the messages, the system sets' order, diagnostics;
/// - [`NpcConversationPlugin`]: focus, session lifecycle, session events, player input;
/// - [`NpcToolsPlugin`]: tools as systems (dispatch, deferred answers);
/// - [`NpcAssetsPlugin`]: NPC definitions from `*.npc.json` assets;
/// - `NpcAudioPlugin` (feature `audio`) and `NpcMicPlugin` (feature `mic`).
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_live_npc::audio::{AudioBackendChoice, NpcAudioPlugin};
/// use bevy_live_npc::prelude::*;
///
/// App::new()
///     .add_plugins(MinimalPlugins)
///     .add_plugins(
///         LiveNpcPlugins::default()
///             .set(NpcAudioPlugin { backend: AudioBackendChoice::Disabled, ..default() })
///             .disable::<NpcMicPlugin>(),
///     )
///     .run();
/// ```
///
/// The audio and microphone plugins may also be added on their own, before or after the
/// group: the first one added is the one that runs (a later one is skipped, with a warning).
#[derive(Clone, Debug, Default)]
pub struct LiveNpcPlugins(pub LiveNpcPlugin);

impl From<LiveNpcPlugin> for LiveNpcPlugins {
    fn from(config: LiveNpcPlugin) -> Self {
        LiveNpcPlugins(config)
    }
}

impl PluginGroup for LiveNpcPlugins {
    fn build(self) -> PluginGroupBuilder {
        let config = self.0;
        #[cfg(feature = "audio")]
        let audio = crate::audio::NpcAudioPlugin { backend: config.audio.clone(), ..Default::default() };
        let group = PluginGroupBuilder::start::<Self>()
            .add(GroupBegin)
            .add(LiveNpcCorePlugin(config))
            .add(NpcConversationPlugin)
            .add(NpcToolsPlugin)
            .add(NpcAssetsPlugin);
        #[cfg(feature = "audio")]
        let group = group.add(audio);
        #[cfg(feature = "mic")]
        let group = group.add(crate::mic::NpcMicPlugin);
        group.add(GroupEnd)
    }
}

impl Plugin for LiveNpcPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(LiveNpcPlugins(self.clone()));
    }
}

struct GroupBegin;

impl Plugin for GroupBegin {
    fn build(&self, app: &mut App) {
        app.insert_resource(AddingPluginGroup);
    }
}

struct GroupEnd;

impl Plugin for GroupEnd {
    fn build(&self, app: &mut App) {
        app.world_mut().remove_resource::<AddingPluginGroup>();
    }
}

/// The core of [`LiveNpcPlugins`]: the session runtime and where sessions connect (the embedded
/// simulator when there is no key and no endpoint), [`LiveNpcSettings`], the messages, the order
/// of [`LiveNpcSystems`], diagnostics, and closing every session on `AppExit`. Configured by a
/// [`LiveNpcPlugin`] (whose `audio` field configures `NpcAudioPlugin` instead).
#[derive(Clone, Debug, Default)]
pub struct LiveNpcCorePlugin(pub LiveNpcPlugin);

impl Plugin for LiveNpcCorePlugin {
    fn build(&self, app: &mut App) {
        let config = &self.0;
        app.insert_resource(config.settings.resolved(config.model.as_deref()))
            .init_resource::<AudioSinkFactory>()
            .insert_resource(LiveNpcRuntime::start(&config.backend))
            .add_message::<NpcTranscript>()
            .add_message::<NpcSpeechStarted>()
            .add_message::<NpcSpeechEnded>()
            .add_message::<NpcTurnComplete>()
            .add_message::<NpcInterrupted>()
            .add_message::<NpcToolCalled>()
            .add_message::<NpcToolFinished>()
            .add_message::<NpcToolCancelled>()
            .add_message::<NpcStateChanged>()
            .add_message::<NpcError>()
            .add_message::<NpcUsage>()
            .add_message::<SayToNpc>()
            .add_message::<NpcActivity>()
            .add_message::<AnswerToolCall>()
            .register_type::<LiveNpc>()
            .register_type::<NpcListener>()
            .register_type::<NpcState>()
            .register_type::<NpcStats>()
            .register_type::<VadSettings>()
            .register_type::<crate::npc::ContextCompression>()
            .register_type::<LiveNpcSettings>()
            .register_diagnostic(Diagnostic::new(diagnostics::REPLY_LATENCY_MS).with_suffix(" ms"))
            .register_diagnostic(Diagnostic::new(diagnostics::DROPPED_MIC_CHUNKS))
            .register_diagnostic(Diagnostic::new(diagnostics::TOTAL_TOKENS))
            .register_diagnostic(Diagnostic::new(diagnostics::SESSIONS))
            .configure_sets(PreUpdate, (LiveNpcSystems::Receive, LiveNpcSystems::Tools).chain())
            .configure_sets(Update, (LiveNpcSystems::Targeting, LiveNpcSystems::Lifecycle).chain());
    }
}

/// Run condition: some NPC is speaking.
pub fn npc_speaking(npcs: Query<&NpcState, With<LiveNpc>>) -> bool {
    npcs.iter().any(|s| *s == NpcState::Speaking)
}

/// Run condition: some NPC has an open session and is waiting for the player.
pub fn npc_listening(npcs: Query<&NpcState, With<LiveNpc>>) -> bool {
    npcs.iter().any(|s| *s == NpcState::Listening)
}

/// Run condition: the player is focused on an NPC.
pub fn npc_focused(focus: Res<NpcFocus>) -> bool {
    focus.current().is_some()
}
