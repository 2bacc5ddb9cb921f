//! `LiveNpcPlugin`: configuration, resources, system sets, run conditions.

use std::sync::Arc;
use std::time::Duration;

use bevy::app::AppExit;
use bevy::diagnostic::{Diagnostic, RegisterDiagnostic};
use bevy::prelude::*;

use crate::conversation::{self, MicRoute, NpcFocus, PendingToolCalls};
use crate::messages::*;
use crate::npc::{LiveNpc, NpcListener, NpcState, NpcStats, VadSettings};
use crate::session::{
    AudioSink, Auth, BackendSpec, LiveRuntime, NullSink, ResolvedBackend, Secret, resolve_model, resolve_spec_from_env,
};
use crate::tools::NpcToolRegistry;

/// Which Live API backend sessions talk to.
#[derive(Clone, Debug, Default)]
pub enum LiveBackend {
    /// `GEMINI_API_KEY` set: the real service; unset: the embedded simulator.
    /// `LIVE_NPC_ENDPOINT` overrides both.
    #[default]
    Auto,
    /// The real Gemini Live API with this key.
    Gemini {
        /// The API key.
        api_key: Secret,
    },
    /// The real service with an ephemeral token (`auth_tokens/...`) minted by a game backend.
    EphemeralToken {
        /// The token.
        token: Secret,
    },
    /// Ephemeral tokens from the game's token server (e.g. `examples/token_server.rs`, or
    /// [`crate::token::TokenServer`]): before each new session the session runtime asks `url`
    /// (`POST`) for a token, then connects to `endpoint` with it. The game never holds the key.
    TokenServer {
        /// The token server's URL (`https://game.example/token`, `http://127.0.0.1:8787/token`).
        url: String,
        /// The Live endpoint the tokens are for (`ws://127.0.0.1:9000` for a `live-sim`;
        /// `http(s)://` works too); `None`: the real service.
        endpoint: Option<String>,
        /// Extra trusted root certificates (PEM) for both, e.g. a test simulator's CA.
        extra_root_pem: Vec<Vec<u8>>,
    },
    /// Any endpoint speaking the protocol (a `live-sim`, a proxy).
    Endpoint {
        /// Base URL, e.g. `ws://127.0.0.1:9000`.
        url: String,
        /// Credentials sent to it.
        auth: Auth,
        /// Extra trusted root certificates (PEM), e.g. a test simulator's CA.
        extra_root_pem: Vec<Vec<u8>>,
    },
    /// The embedded simulator, started by the plugin.
    #[cfg(feature = "sim")]
    Simulator(SimulatorSettings),
}

/// Settings of the embedded simulator when the plugin starts it.
#[cfg(feature = "sim")]
#[derive(Clone, Debug)]
pub struct SimulatorSettings {
    /// 1.0 = real time (what players hear); tests use 0 (unpaced) or small fractions.
    pub pace: f64,
    /// Seed of the simulated model.
    pub seed: u64,
    /// A scenario saying what to answer and which faults to inject.
    pub scenario: Option<crate::sim::Scenario>,
}

#[cfg(feature = "sim")]
impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings { pace: 1.0, seed: 0, scenario: None }
    }
}

/// System sets of the plugin, in the order they run.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LiveNpcSystems {
    /// `PreUpdate`: session events become state, messages and queued tool calls.
    Receive,
    /// `PreUpdate`, after `Receive`: tool systems run and their results go back.
    Tools,
    /// `Update`: who the player is talking to (proximity, facing, explicit focus).
    Targeting,
    /// `Update`, after `Targeting`: sessions open and close.
    Lifecycle,
    /// `PostUpdate`: player input and context updates are sent.
    Send,
}

/// Makes sessions with the NPCs of a Bevy app.
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
#[derive(Clone, Debug)]
pub struct LiveNpcPlugin {
    /// Which backend sessions use.
    pub backend: LiveBackend,
    /// Model id (else `LIVE_NPC_MODEL`, else the newest stable Live model).
    pub model: Option<String>,
    /// The listener within this distance of an NPC engages it.
    pub engage_radius: f32,
    /// A conversation with no input or output for this long is closed.
    pub idle_timeout: Duration,
    /// At most this many sessions at once.
    pub max_sessions: usize,
    /// Open sessions automatically when the listener comes within `engage_radius`.
    pub auto_engage: bool,
    /// Half-angle (degrees) of the listener's view within which an NPC counts as faced.
    pub facing_angle_deg: f32,
    /// Session events handled per NPC per frame (the rest wait for the next frame).
    pub events_per_frame: usize,
    /// Where NPC voices play (feature `audio`): the default device, an offline renderer, or
    /// nowhere (text only).
    #[cfg(feature = "audio")]
    pub audio: crate::audio::AudioBackendChoice,
}

impl Default for LiveNpcPlugin {
    fn default() -> Self {
        LiveNpcPlugin {
            backend: LiveBackend::Auto,
            model: None,
            engage_radius: 4.0,
            idle_timeout: Duration::from_secs(120),
            max_sessions: 4,
            auto_engage: true,
            facing_angle_deg: 45.0,
            events_per_frame: 256,
            #[cfg(feature = "audio")]
            audio: crate::audio::AudioBackendChoice::Device,
        }
    }
}

impl LiveBackend {
    /// The simulator-free description the session layer resolves (see
    /// [`resolve_spec`](crate::session::resolve_spec)).
    pub fn spec(&self) -> BackendSpec {
        match self.clone() {
            LiveBackend::Auto => BackendSpec::Auto,
            LiveBackend::Gemini { api_key } => BackendSpec::Gemini { api_key },
            LiveBackend::EphemeralToken { token } => BackendSpec::EphemeralToken { token },
            LiveBackend::TokenServer { url, endpoint, extra_root_pem } => {
                BackendSpec::TokenServer { url, endpoint, extra_root_pem }
            }
            LiveBackend::Endpoint { url, auth, extra_root_pem } => BackendSpec::Endpoint { url, auth, extra_root_pem },
            #[cfg(feature = "sim")]
            LiveBackend::Simulator(_) => BackendSpec::Simulator,
        }
    }

    /// An endpoint named explicitly (a command-line flag): it wins over the environment and
    /// receives `GEMINI_API_KEY`, if set, as its key.
    pub fn explicit_endpoint(url: &str) -> LiveBackend {
        let auth = std::env::var(crate::session::ENV_API_KEY)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| Auth::ApiKey(Secret::new(k)))
            .unwrap_or_default();
        LiveBackend::Endpoint { url: crate::session::normalize_base(url), auth, extra_root_pem: Vec::new() }
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
    pub fn audio(mut self, audio: crate::audio::AudioBackendChoice) -> Self {
        self.audio = audio;
        self
    }

    /// Turns proximity engagement on or off (off: only `start_conversation` opens sessions).
    pub fn auto_engage(mut self, on: bool) -> Self {
        self.auto_engage = on;
        self
    }
}

/// The plugin's settings, as a resource (change them at run time).
#[derive(Resource, Clone, Debug, Reflect)]
#[reflect(Resource)]
pub struct LiveNpcSettings {
    /// Model id as `models/{id}`.
    pub model: String,
    /// Engage radius.
    pub engage_radius: f32,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Concurrency cap.
    pub max_sessions: usize,
    /// Proximity engagement.
    pub auto_engage: bool,
    /// Facing half-angle in degrees.
    pub facing_angle_deg: f32,
    /// Events per NPC per frame.
    pub events_per_frame: usize,
}

/// Creates the audio sink of each new session (the audio layer installs its own).
#[derive(Resource, Clone)]
pub struct AudioSinkFactory(pub Arc<MakeSink>);

/// Makes the audio sink of an NPC's new session.
pub type MakeSink = dyn Fn(Entity, &LiveNpc) -> Box<dyn AudioSink> + Send + Sync;

impl Default for AudioSinkFactory {
    fn default() -> Self {
        AudioSinkFactory(Arc::new(|_, _| Box::new(NullSink)))
    }
}

/// The session runtime and where sessions connect.
#[derive(Resource)]
pub struct LiveNpcRuntime {
    pub(crate) runtime: Option<LiveRuntime>,
    pub(crate) base_url: Result<String, String>,
    pub(crate) auth: Auth,
    pub(crate) extra_root_pem: Vec<Vec<u8>>,
    #[cfg(feature = "sim")]
    pub(crate) sim: Option<crate::sim::LiveSim>,
}

impl std::fmt::Debug for LiveNpcRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveNpcRuntime").field("base_url", &self.base_url).field("auth", &self.auth).finish()
    }
}

impl LiveNpcRuntime {
    /// The base URL sessions connect to (or why there is none).
    pub fn base_url(&self) -> Result<&str, &str> {
        self.base_url.as_deref().map_err(String::as_str)
    }

    /// Whether sessions go to the embedded simulator.
    pub fn uses_simulator(&self) -> bool {
        #[cfg(feature = "sim")]
        {
            self.sim.is_some()
        }
        #[cfg(not(feature = "sim"))]
        {
            false
        }
    }

    /// Sessions currently running.
    pub fn live_sessions(&self) -> usize {
        self.runtime.as_ref().map_or(0, LiveRuntime::live_sessions)
    }

    fn start(backend: &LiveBackend) -> LiveNpcRuntime {
        let runtime = match LiveRuntime::new() {
            Ok(r) => Some(r),
            Err(e) => {
                error!("live npc: could not start the network runtime: {e}");
                None
            }
        };
        let mut rt = LiveNpcRuntime {
            runtime,
            base_url: Err("not configured".into()),
            auth: Auth::None,
            extra_root_pem: Vec::new(),
            #[cfg(feature = "sim")]
            sim: None,
        };
        let plan = resolve_spec_from_env(&backend.spec());
        rt.extra_root_pem = plan.extra_root_pem;
        match plan.backend {
            ResolvedBackend::Endpoint { base_url, auth, source } => {
                info!("live npc: sessions connect to {base_url} ({source:?})");
                rt.base_url = Ok(base_url);
                rt.auth = auth;
            }
            ResolvedBackend::Simulator => rt.start_simulator(backend),
        }
        rt
    }

    #[cfg(feature = "sim")]
    fn start_simulator(&mut self, backend: &LiveBackend) {
        let settings = match backend {
            LiveBackend::Simulator(s) => s.clone(),
            _ => SimulatorSettings::default(),
        };
        let mut builder = crate::sim::LiveSim::builder().pace(settings.pace).seed(settings.seed);
        if let Some(scenario) = settings.scenario {
            builder = builder.script(scenario);
        }
        let started = match self.runtime.as_ref().and_then(LiveRuntime::handle) {
            // Binding a loopback socket: done once at startup, never on a game frame.
            Some(handle) => handle.block_on(builder.start()),
            None => builder.start_in_background(),
        };
        match started {
            Ok(sim) => {
                info!("live npc: no GEMINI_API_KEY set; using the embedded Live API simulator at {}", sim.base_url());
                self.base_url = Ok(sim.base_url());
                self.sim = Some(sim);
            }
            Err(e) => {
                error!("live npc: could not start the embedded simulator: {e}");
                self.base_url = Err(format!("the embedded simulator could not start: {e}"));
            }
        }
    }

    #[cfg(not(feature = "sim"))]
    fn start_simulator(&mut self, _backend: &LiveBackend) {
        warn!("live npc: no GEMINI_API_KEY and no endpoint set, and the `sim` feature is off: NPCs cannot talk");
        self.base_url = Err("no GEMINI_API_KEY, no LIVE_NPC_ENDPOINT, and the simulator feature is off".into());
    }

    /// Closes every session and stops the runtime (done on `AppExit` and on drop).
    pub fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown(Duration::from_millis(500));
        }
        #[cfg(feature = "sim")]
        if let Some(sim) = self.sim.take() {
            drop(sim);
        }
    }
}

impl Drop for LiveNpcRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Diagnostic paths published by the plugin (summed over NPCs).
pub mod diagnostics {
    use bevy::diagnostic::DiagnosticPath;

    /// Last reply latency of any NPC, in milliseconds.
    pub const REPLY_LATENCY_MS: DiagnosticPath = DiagnosticPath::const_new("live_npc/reply_latency_ms");
    /// Mic chunks dropped, all NPCs.
    pub const DROPPED_MIC_CHUNKS: DiagnosticPath = DiagnosticPath::const_new("live_npc/dropped_mic_chunks");
    /// Tokens used, all NPCs.
    pub const TOTAL_TOKENS: DiagnosticPath = DiagnosticPath::const_new("live_npc/total_tokens");
    /// Open sessions.
    pub const SESSIONS: DiagnosticPath = DiagnosticPath::const_new("live_npc/sessions");
}

impl Plugin for LiveNpcPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(LiveNpcSettings {
            model: resolve_model(self.model.as_deref()),
            engage_radius: self.engage_radius,
            idle_timeout: self.idle_timeout,
            max_sessions: self.max_sessions,
            auto_engage: self.auto_engage,
            facing_angle_deg: self.facing_angle_deg,
            events_per_frame: self.events_per_frame.max(1),
        })
        .init_resource::<NpcToolRegistry>()
        .init_resource::<AudioSinkFactory>()
        .init_resource::<NpcFocus>()
        .init_resource::<MicRoute>()
        .init_resource::<PendingToolCalls>()
        .insert_resource(LiveNpcRuntime::start(&self.backend))
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
        .register_type::<LiveNpcSettings>()
        .register_diagnostic(Diagnostic::new(diagnostics::REPLY_LATENCY_MS).with_suffix(" ms"))
        .register_diagnostic(Diagnostic::new(diagnostics::DROPPED_MIC_CHUNKS))
        .register_diagnostic(Diagnostic::new(diagnostics::TOTAL_TOKENS))
        .register_diagnostic(Diagnostic::new(diagnostics::SESSIONS))
        .configure_sets(PreUpdate, (LiveNpcSystems::Receive, LiveNpcSystems::Tools).chain())
        .configure_sets(Update, (LiveNpcSystems::Targeting, LiveNpcSystems::Lifecycle).chain())
        .add_systems(PreUpdate, conversation::receive_events.in_set(LiveNpcSystems::Receive))
        .add_systems(PreUpdate, conversation::dispatch_tool_calls.in_set(LiveNpcSystems::Tools))
        .add_systems(Update, conversation::update_focus.in_set(LiveNpcSystems::Targeting))
        .add_systems(
            Update,
            (conversation::open_sessions, conversation::close_idle_sessions).chain().in_set(LiveNpcSystems::Lifecycle),
        )
        .add_systems(
            PostUpdate,
            (
                conversation::send_player_input,
                conversation::answer_deferred_calls,
                conversation::send_context_updates,
                conversation::publish_diagnostics,
            )
                .in_set(LiveNpcSystems::Send),
        )
        .add_systems(Last, shutdown_on_exit);
        // After `init_resource::<AudioSinkFactory>` above: the audio plugin replaces it.
        #[cfg(feature = "audio")]
        if !app.is_plugin_added::<crate::audio::NpcAudioPlugin>() {
            app.add_plugins(crate::audio::NpcAudioPlugin { backend: self.audio.clone(), ..Default::default() });
        }
        #[cfg(feature = "mic")]
        if !app.is_plugin_added::<crate::audio::capture::NpcMicPlugin>() {
            app.add_plugins(crate::audio::capture::NpcMicPlugin);
        }
    }

    fn finish(&self, app: &mut App) {
        crate::assets::register(app);
    }
}

fn shutdown_on_exit(
    mut exits: MessageReader<AppExit>,
    mut commands: Commands,
    runtime: Option<ResMut<LiveNpcRuntime>>,
) {
    if exits.read().next().is_none() {
        return;
    }
    commands.queue(|world: &mut World| {
        let npcs: Vec<Entity> =
            world.query_filtered::<Entity, With<conversation::NpcConversation>>().iter(world).collect();
        for npc in npcs {
            world.entity_mut(npc).remove::<conversation::NpcConversation>();
        }
    });
    if let Some(mut rt) = runtime {
        rt.shutdown();
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
