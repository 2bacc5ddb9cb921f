//! Where sessions connect: the backend a game chooses, and the session runtime (with the
//! embedded simulator when there is no key and no endpoint).

use std::time::Duration;

use bevy::prelude::*;

use crate::session::{Auth, BackendSpec, LiveRuntime, ResolvedBackend, Secret, resolve_spec_from_env};

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
    #[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
    Simulator(SimulatorSettings),
}

/// Settings of the embedded simulator when the plugin starts it.
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
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

    pub(crate) fn start(backend: &LiveBackend) -> LiveNpcRuntime {
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
