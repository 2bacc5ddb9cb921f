//! Session configuration: endpoint and auth resolution, secrets, model capabilities.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{AuthToken, Behavior, CloseCode, LiveError, Modality, Setup, model_resource, ws_path};
pub use crate::secret::Secret;
use crate::token::{TokenClient, TokenError};

/// The real service's base URL.
pub const GEMINI_BASE_URL: &str = "wss://generativelanguage.googleapis.com";
/// The newest stable Live model (live-protocol.md §7).
pub const DEFAULT_MODEL: &str = "gemini-3.8-live";
/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "GEMINI_API_KEY";
/// Environment variable holding a base endpoint URL.
pub const ENV_ENDPOINT: &str = "LIVE_NPC_ENDPOINT";
/// Environment variable holding the model id.
pub const ENV_MODEL: &str = "LIVE_NPC_MODEL";

/// How the client authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials (a local simulator).
    #[default]
    None,
    /// An API key, sent as `x-goog-api-key`.
    ApiKey(Secret),
    /// An ephemeral token (`auth_tokens/...`), sent as `Authorization: Token ...` to the
    /// `...Constrained` method.
    Token(Secret),
    /// Ephemeral tokens fetched on the session runtime (never on the game thread): a new one
    /// before each new session; resumptions reuse it until it is within 10 s of its
    /// `expireTime`. Sent like [`Auth::Token`].
    Provider(TokenProvider),
}

/// What a [`TokenProvider`] returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<AuthToken, TokenError>> + Send>>;

/// An async source of ephemeral tokens (e.g. a game backend's token server, see
/// [`TokenProvider::token_server`]). Compared by identity.
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenProvider {
    /// A provider calling `fetch` for each token.
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AuthToken, TokenError>> + Send + 'static,
    {
        TokenProvider(Arc::new(move || Box::pin(fetch())))
    }

    /// Tokens from a token server: `POST url` answering with a token (see
    /// [`crate::token::TokenServer`]).
    pub fn token_server(url: impl Into<String>, client: TokenClient) -> Self {
        let url: Arc<str> = url.into().into();
        TokenProvider::new(move || {
            let (url, client) = (url.clone(), client.clone());
            async move { client.fetch(&url).await }
        })
    }

    /// Fetches a token.
    pub fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider(..)")
    }
}

impl PartialEq for TokenProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TokenProvider {}

/// Where the configured endpoint came from (for diagnostics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    /// A command-line flag.
    Flag,
    /// `LIVE_NPC_ENDPOINT`.
    Environment,
    /// The plugin or session configuration.
    Config,
    /// The real service, because `GEMINI_API_KEY` is set.
    RealService,
    /// The embedded simulator, because no key and no endpoint are set.
    Simulator,
}

/// The backend a session talks to, after applying the precedence rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedBackend {
    /// A concrete base URL (`ws://...` or `wss://...`) with its auth.
    Endpoint {
        /// Base URL without a trailing `/`.
        base_url: String,
        /// Credentials.
        auth: Auth,
        /// Where the URL came from.
        source: EndpointSource,
    },
    /// Start (or reuse) the embedded simulator.
    Simulator,
}

/// Applies the endpoint precedence: flag > environment > config > default. An explicit
/// endpoint always wins and receives the API key, if one is set. With no endpoint: a key
/// means the real service, no key the embedded simulator.
pub fn resolve_backend(
    flag: Option<&str>,
    env_endpoint: Option<&str>,
    config_endpoint: Option<&str>,
    api_key: Option<&str>,
) -> ResolvedBackend {
    let nonempty = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let key = nonempty(api_key).map(|k| Auth::ApiKey(Secret::new(k))).unwrap_or_default();
    let explicit = nonempty(flag)
        .map(|u| (u, EndpointSource::Flag))
        .or_else(|| nonempty(env_endpoint).map(|u| (u, EndpointSource::Environment)))
        .or_else(|| nonempty(config_endpoint).map(|u| (u, EndpointSource::Config)));
    match explicit {
        Some((url, source)) => ResolvedBackend::Endpoint { base_url: normalize_base(&url), auth: key, source },
        None if key != Auth::None => ResolvedBackend::Endpoint {
            base_url: GEMINI_BASE_URL.to_owned(),
            auth: key,
            source: EndpointSource::RealService,
        },
        None => ResolvedBackend::Simulator,
    }
}

/// [`resolve_backend`] with the environment variables read from the process.
pub fn resolve_backend_from_env(flag: Option<&str>, config_endpoint: Option<&str>) -> ResolvedBackend {
    let env_endpoint = std::env::var(ENV_ENDPOINT).ok();
    let key = std::env::var(ENV_API_KEY).ok();
    resolve_backend(flag, env_endpoint.as_deref(), config_endpoint, key.as_deref())
}

/// The model id: environment (`LIVE_NPC_MODEL`) > config > [`DEFAULT_MODEL`], as `models/{id}`.
pub fn resolve_model(config_model: Option<&str>) -> String {
    let env = std::env::var(ENV_MODEL).ok();
    let chosen = env
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .or(config_model.map(str::trim).filter(|m| !m.is_empty()))
        .unwrap_or(DEFAULT_MODEL);
    model_resource(chosen)
}

/// Strips trailing slashes from a base URL.
pub fn normalize_base(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The full WebSocket URL for a base URL and auth (`v1alpha ... Constrained` for tokens).
pub fn session_url(base_url: &str, auth: &Auth) -> String {
    let path = match auth {
        Auth::Token(_) | Auth::Provider(_) => ws_path("v1alpha", true),
        _ => ws_path(crate::protocol::DEFAULT_API_VERSION, false),
    };
    format!("{}{path}", normalize_base(base_url))
}

/// How a model handles an option: what a session must not ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelCapabilities {
    /// `enableAffectiveDialog` is accepted.
    pub affective_dialog: bool,
    /// `proactivity.proactiveAudio: true` is accepted.
    pub proactive_audio: bool,
    /// Proactive audio is always on; asking for `false` is an error.
    pub proactive_audio_forced: bool,
    /// `thinkingConfig.thinkingBudget` is accepted.
    pub thinking_budget: bool,
    /// `thinkingConfig.thinkingLevel` is accepted.
    pub thinking_level: bool,
    /// `NON_BLOCKING` function behavior is accepted.
    pub non_blocking_tools: bool,
    /// `BLOCKING` function behavior is accepted.
    pub blocking_tools: bool,
    /// `TEXT` output modality is accepted.
    pub text_output: bool,
}

impl ModelCapabilities {
    /// The capabilities of a model id (with or without `models/`); unknown models get a
    /// permissive table so that new models are not blocked by this check.
    pub fn of(model: &str) -> ModelCapabilities {
        let id = model.strip_prefix("models/").unwrap_or(model);
        let permissive = ModelCapabilities {
            affective_dialog: true,
            proactive_audio: true,
            proactive_audio_forced: false,
            thinking_budget: true,
            thinking_level: true,
            non_blocking_tools: true,
            blocking_tools: true,
            text_output: true,
        };
        match id {
            "gemini-3.8-live" => ModelCapabilities {
                affective_dialog: false,
                proactive_audio_forced: true,
                thinking_budget: false,
                thinking_level: false,
                text_output: false,
                ..permissive
            },
            "gemini-3.8-live-extended-thinking" => ModelCapabilities {
                affective_dialog: false,
                thinking_budget: false,
                blocking_tools: false,
                text_output: false,
                ..permissive
            },
            "gemini-3.1-flash-live-preview" => ModelCapabilities {
                affective_dialog: false,
                proactive_audio: false,
                thinking_budget: false,
                non_blocking_tools: false,
                text_output: false,
                ..permissive
            },
            id if id.starts_with("gemini-2.5-flash-native-audio") => {
                ModelCapabilities { thinking_level: false, text_output: false, ..permissive }
            }
            _ => permissive,
        }
    }

    /// Checks a setup against the model's capabilities, naming the first option it rejects.
    pub fn check(&self, setup: &Setup<'_>) -> Result<(), LiveError> {
        let model = &setup.model;
        let reject =
            |what: &str| Err(LiveError::fatal(CloseCode::InvalidArgument, format!("{model} does not support {what}")));
        if let Some(g) = &setup.generation_config {
            if g.enable_affective_dialog == Some(true) && !self.affective_dialog {
                return reject("affective dialog (enableAffectiveDialog)");
            }
            if let Some(t) = &g.thinking_config {
                if t.thinking_budget.is_some() && !self.thinking_budget {
                    return reject("thinkingConfig.thinkingBudget");
                }
                if t.thinking_level.is_some() && !self.thinking_level {
                    return reject("thinkingConfig.thinkingLevel");
                }
            }
            if let Some(m) = &g.response_modalities {
                if m.len() > 1 {
                    return reject("more than one response modality");
                }
                if m.contains(&Modality::Text) && !self.text_output {
                    return reject("TEXT output (native-audio models answer in AUDIO; use outputAudioTranscription)");
                }
            }
        }
        if let Some(p) = setup.proactivity.as_ref().and_then(|p| p.proactive_audio) {
            if p && !self.proactive_audio {
                return reject("proactive audio");
            }
            if !p && self.proactive_audio_forced {
                return reject("turning proactive audio off (it is always on)");
            }
        }
        for decl in setup.function_declarations() {
            match decl.behavior {
                Some(Behavior::NonBlocking) if !self.non_blocking_tools => {
                    return reject(&format!("NON_BLOCKING functions ({})", decl.name));
                }
                Some(Behavior::Blocking) if !self.blocking_tools => {
                    return reject(&format!("BLOCKING functions ({})", decl.name));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Everything a session task needs.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Base URL (`ws://127.0.0.1:9000`, `wss://generativelanguage.googleapis.com`).
    pub base_url: String,
    /// Credentials.
    pub auth: Auth,
    /// The setup sent on every connection (the resumption handle is filled in by the task).
    pub setup: Setup<'static>,
    /// Request resumption handles and resume after drops and `goAway`.
    pub resumption: bool,
    /// Extra trusted root certificates (PEM), e.g. a test simulator's CA.
    pub extra_root_pem: Vec<Vec<u8>>,
    /// Time allowed for connect + `setupComplete`.
    pub setup_timeout: Duration,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
    /// Ping interval.
    pub keepalive_interval: Duration,
    /// How long a pong (or any frame) may take before the connection counts as dropped.
    /// Real servers can take 8–30 s to answer a ping.
    pub keepalive_timeout: Duration,
    /// Capacity of the event channel (the task waits for room; events are never dropped).
    pub event_capacity: usize,
    /// Capacity of the command channel.
    pub command_capacity: usize,
    /// Mic chunks held; when full the oldest is dropped and counted.
    pub mic_capacity: usize,
    /// Messages held while switching connections (`goAway`, drops).
    pub hold_capacity: usize,
    /// How long one frame may take to write before the connection counts as stalled (a
    /// server that stops reading) and is replaced.
    pub write_timeout: Duration,
    /// Reconnect attempts in a row (after drops, `goAway` switches, fresh starts, token
    /// refreshes) before giving up; a connection that stays up resets the count.
    pub max_reconnect_attempts: u32,
    /// First reconnect delay (jittered); doubles per attempt.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Seed for backoff jitter (deterministic tests).
    pub jitter_seed: u64,
}

impl SessionConfig {
    /// A configuration with the defaults for `base_url`, `auth` and `setup`.
    pub fn new(base_url: impl Into<String>, auth: Auth, setup: Setup<'static>) -> Self {
        SessionConfig {
            base_url: normalize_base(&base_url.into()),
            auth,
            setup,
            resumption: true,
            extra_root_pem: Vec::new(),
            setup_timeout: Duration::from_secs(15),
            max_frame_bytes: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(45),
            event_capacity: 1024,
            command_capacity: 256,
            mic_capacity: 64,
            hold_capacity: 512,
            write_timeout: Duration::from_secs(10),
            max_reconnect_attempts: 8,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            jitter_seed: 0x5eed,
        }
    }

    /// The full WebSocket URL.
    pub fn url(&self) -> String {
        session_url(&self.base_url, &self.auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        use ResolvedBackend as R;
        let ep = |u: &str, auth: Auth, source| R::Endpoint { base_url: u.into(), auth, source };
        assert_eq!(resolve_backend(None, None, None, None), R::Simulator);
        assert_eq!(
            resolve_backend(None, None, None, Some("k")),
            ep(GEMINI_BASE_URL, Auth::ApiKey(Secret::new("k")), EndpointSource::RealService)
        );
        assert_eq!(
            resolve_backend(Some("ws://a/"), Some("ws://b"), Some("ws://c"), None),
            ep("ws://a", Auth::None, EndpointSource::Flag)
        );
        assert_eq!(
            resolve_backend(None, Some("ws://b//"), Some("ws://c"), Some("k")),
            ep("ws://b", Auth::ApiKey(Secret::new("k")), EndpointSource::Environment)
        );
        assert_eq!(
            resolve_backend(None, Some(""), Some("ws://c"), None),
            ep("ws://c", Auth::None, EndpointSource::Config)
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            session_url("ws://127.0.0.1:9/", &Auth::None),
            "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        );
        assert!(
            session_url("wss://x", &Auth::Token(Secret::new("t")))
                .ends_with("v1alpha.GenerativeService.BidiGenerateContentConstrained")
        );
        assert_eq!(format!("{:?}", Secret::new("AIzaXYZ")), "Secret(REDACTED)");
    }

    #[test]
    fn capabilities() {
        use crate::protocol::{GenerationConfig, ProactivityConfig};
        let mut s = Setup { model: "models/gemini-3.8-live".into(), ..Default::default() };
        s.generation_config = Some(GenerationConfig { enable_affective_dialog: Some(true), ..Default::default() });
        assert!(ModelCapabilities::of(&s.model).check(&s).is_err());
        s.model = "models/gemini-2.5-flash-native-audio-preview-12-2025".into();
        assert!(ModelCapabilities::of(&s.model).check(&s).is_ok());
        s.model = "gemini-3.8-live".into();
        s.generation_config = None;
        s.proactivity = Some(ProactivityConfig { proactive_audio: Some(false), proactive_video: None });
        let e = ModelCapabilities::of(&s.model).check(&s).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.reason.contains("proactive"), "{e}");
    }
}
