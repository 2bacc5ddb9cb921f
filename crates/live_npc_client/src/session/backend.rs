//! From the backend a program configures to the endpoint its sessions connect to: one pure
//! function over a simulator-free description, so every engine (and every test) applies the same
//! rules.

use super::config::{Auth, EndpointSource, GEMINI_BASE_URL, ResolvedBackend, normalize_base, resolve_backend};
use super::config::{ENV_API_KEY, ENV_ENDPOINT, TokenProvider};
use crate::secret::Secret;
use crate::token::TokenClient;

/// A backend as a program configures it, before the precedence rules are applied. A game
/// engine's own backend type (with, say, simulator settings) maps onto this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BackendSpec {
    /// `LIVE_NPC_ENDPOINT` if set, else the real service if `GEMINI_API_KEY` is set, else the
    /// embedded simulator.
    #[default]
    Auto,
    /// The real service with this API key.
    Gemini {
        /// The API key.
        api_key: Secret,
    },
    /// The real service with an ephemeral token (`auth_tokens/...`).
    EphemeralToken {
        /// The token.
        token: Secret,
    },
    /// Ephemeral tokens fetched from a token server (`POST url`) before each new session.
    TokenServer {
        /// The token server's URL.
        url: String,
        /// The Live endpoint the tokens are for (`ws(s)://` or `http(s)://`); `None`: the real
        /// service.
        endpoint: Option<String>,
        /// Extra trusted root certificates (PEM) for both.
        extra_root_pem: Vec<Vec<u8>>,
    },
    /// Any endpoint speaking the protocol.
    Endpoint {
        /// Base URL, e.g. `ws://127.0.0.1:9000`.
        url: String,
        /// Credentials sent to it.
        auth: Auth,
        /// Extra trusted root certificates (PEM).
        extra_root_pem: Vec<Vec<u8>>,
    },
    /// The embedded simulator, which the caller starts.
    Simulator,
}

/// The environment variables [`BackendSpec::Auto`] reads (`LIVE_NPC_ENDPOINT`,
/// `GEMINI_API_KEY`), passed in so that resolving stays pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendEnv {
    /// `LIVE_NPC_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `GEMINI_API_KEY`.
    pub api_key: Option<Secret>,
}

impl BackendEnv {
    /// The variables as this process has them.
    pub fn from_process() -> BackendEnv {
        BackendEnv {
            endpoint: std::env::var(ENV_ENDPOINT).ok(),
            api_key: std::env::var(ENV_API_KEY).ok().map(Secret::new),
        }
    }
}

/// Where sessions go, and which extra roots their TLS trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPlan {
    /// The endpoint and its credentials, or the simulator.
    pub backend: ResolvedBackend,
    /// Extra trusted root certificates (PEM) for sessions and token requests.
    pub extra_root_pem: Vec<Vec<u8>>,
}

/// Applies the backend rules to `spec`: `Auto` follows [`resolve_backend`] over `env`; a token
/// server's `http(s)://` endpoint becomes `ws(s)://`; base URLs lose trailing slashes.
pub fn resolve_spec(spec: &BackendSpec, env: &BackendEnv) -> BackendPlan {
    let endpoint = |base_url: String, auth: Auth| ResolvedBackend::Endpoint {
        base_url: normalize_base(&base_url),
        auth,
        source: EndpointSource::Config,
    };
    let (backend, extra_root_pem) = match spec {
        BackendSpec::Auto => {
            (resolve_backend(None, env.endpoint.as_deref(), None, env.api_key.as_ref().map(Secret::expose)), Vec::new())
        }
        BackendSpec::Gemini { api_key } => {
            (endpoint(GEMINI_BASE_URL.into(), Auth::ApiKey(api_key.clone())), Vec::new())
        }
        BackendSpec::EphemeralToken { token } => {
            (endpoint(GEMINI_BASE_URL.into(), Auth::Token(token.clone())), Vec::new())
        }
        BackendSpec::TokenServer { url, endpoint: live, extra_root_pem } => {
            let client = TokenClient { extra_root_pem: extra_root_pem.clone(), ..Default::default() };
            let base_url = live.as_deref().map_or_else(|| GEMINI_BASE_URL.to_owned(), websocket_base);
            (
                endpoint(base_url, Auth::Provider(TokenProvider::token_server(url.clone(), client))),
                extra_root_pem.clone(),
            )
        }
        BackendSpec::Endpoint { url, auth, extra_root_pem } => {
            (endpoint(url.clone(), auth.clone()), extra_root_pem.clone())
        }
        BackendSpec::Simulator => (ResolvedBackend::Simulator, Vec::new()),
    };
    BackendPlan { backend, extra_root_pem }
}

/// [`resolve_spec`] with the environment as this process has it.
pub fn resolve_spec_from_env(spec: &BackendSpec) -> BackendPlan {
    resolve_spec(spec, &BackendEnv::from_process())
}

/// `http://host` → `ws://host`, `https://host` → `wss://host`; anything else as it is.
fn websocket_base(url: &str) -> String {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> BackendEnv {
        BackendEnv::default()
    }

    fn base_and_auth(plan: &BackendPlan) -> (&str, &Auth) {
        match &plan.backend {
            ResolvedBackend::Endpoint { base_url, auth, .. } => (base_url, auth),
            other => panic!("not an endpoint: {other:?}"),
        }
    }

    #[test]
    fn auto_without_key_or_endpoint_is_the_simulator() {
        assert_eq!(resolve_spec(&BackendSpec::Auto, &none()).backend, ResolvedBackend::Simulator);
    }

    #[test]
    fn auto_follows_the_environment() {
        let key = BackendEnv { endpoint: None, api_key: Some(Secret::new("k")) };
        let plan = resolve_spec(&BackendSpec::Auto, &key);
        assert_eq!(
            plan.backend,
            ResolvedBackend::Endpoint {
                base_url: GEMINI_BASE_URL.into(),
                auth: Auth::ApiKey(Secret::new("k")),
                source: EndpointSource::RealService
            }
        );
        let both = BackendEnv { endpoint: Some("ws://127.0.0.1:9000/".into()), api_key: Some(Secret::new("k")) };
        let plan = resolve_spec(&BackendSpec::Auto, &both);
        assert_eq!(
            plan.backend,
            ResolvedBackend::Endpoint {
                base_url: "ws://127.0.0.1:9000".into(),
                auth: Auth::ApiKey(Secret::new("k")),
                source: EndpointSource::Environment
            }
        );
        // An empty key counts as none.
        let empty = BackendEnv { endpoint: None, api_key: Some(Secret::new("  ")) };
        assert_eq!(resolve_spec(&BackendSpec::Auto, &empty).backend, ResolvedBackend::Simulator);
    }

    #[test]
    fn explicit_backends_ignore_the_environment() {
        let env = BackendEnv { endpoint: Some("ws://elsewhere".into()), api_key: Some(Secret::new("env-key")) };
        let plan = resolve_spec(&BackendSpec::Gemini { api_key: Secret::new("mine") }, &env);
        assert_eq!(base_and_auth(&plan), (GEMINI_BASE_URL, &Auth::ApiKey(Secret::new("mine"))));
        let plan = resolve_spec(&BackendSpec::EphemeralToken { token: Secret::new("auth_tokens/t") }, &env);
        assert_eq!(base_and_auth(&plan), (GEMINI_BASE_URL, &Auth::Token(Secret::new("auth_tokens/t"))));
        assert_eq!(resolve_spec(&BackendSpec::Simulator, &env).backend, ResolvedBackend::Simulator);
    }

    #[test]
    fn an_endpoint_keeps_its_auth_and_roots_without_trailing_slashes() {
        let spec = BackendSpec::Endpoint {
            url: " wss://proxy.example/// ".into(),
            auth: Auth::None,
            extra_root_pem: vec![b"PEM".to_vec()],
        };
        let plan = resolve_spec(&spec, &none());
        assert_eq!(base_and_auth(&plan), ("wss://proxy.example", &Auth::None));
        assert_eq!(plan.extra_root_pem, vec![b"PEM".to_vec()]);
    }

    #[test]
    fn a_token_server_endpoint_becomes_a_websocket_url() {
        for (given, expected) in [
            (Some("http://127.0.0.1:9000/"), "ws://127.0.0.1:9000"),
            (Some(" https://live.example "), "wss://live.example"),
            (Some("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000"),
            (None, GEMINI_BASE_URL),
        ] {
            let spec = BackendSpec::TokenServer {
                url: "http://127.0.0.1:8787/token".into(),
                endpoint: given.map(str::to_owned),
                extra_root_pem: vec![b"CA".to_vec()],
            };
            let plan = resolve_spec(&spec, &none());
            let (base, auth) = base_and_auth(&plan);
            assert_eq!(base, expected, "{given:?}");
            assert!(matches!(auth, Auth::Provider(_)), "{auth:?}");
            assert_eq!(plan.extra_root_pem, vec![b"CA".to_vec()]);
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let spec = BackendSpec::Gemini { api_key: Secret::new("AIzaSECRET") };
        let plan = resolve_spec(&spec, &none());
        let shown = format!("{spec:?} {plan:?}");
        assert!(!shown.contains("AIzaSECRET"), "{shown}");
    }
}
