//! Ephemeral tokens for shipping games without shipping the API key (live-protocol.md §1).
//!
//! A game backend holds the API key and mints short-lived tokens (`auth_tokens/...`) with
//! [`mint_token`] (`POST /v1alpha/auth_tokens` on the real service or on a `live-sim`); game
//! clients get a token from the backend ([`fetch_token`], or the plugin's
//! `LiveBackend::TokenServer`) and open sessions on `...BidiGenerateContentConstrained` with it.
//! [`TokenServer`] is such a backend, ready to run (see `examples/token_server.rs`): `POST`
//! only, a `Host` allow-list, a caller-authentication hook, a per-caller rate limit,
//! `Cache-Control: no-store`, and tokens locked to the game's model and setup by default
//! ([`TokenPolicy`]). `docs/TOKENS.md` gives the threat model.
//!
//! ```no_run
//! # async fn demo() -> Result<(), live_npc_client::token::TokenError> {
//! use live_npc_client::protocol::CreateAuthTokenRequest;
//! use live_npc_client::session::Secret;
//! use live_npc_client::token::{GEMINI_REST_URL, mint_token};
//!
//! let key = Secret::new(std::env::var("GEMINI_API_KEY").unwrap_or_default());
//! let request = CreateAuthTokenRequest { uses: Some(1), ..Default::default() };
//! let token = mint_token(GEMINI_REST_URL, &key, &request).await?;
//! // Hand `token.name` to one game client; it never sees the key.
//! # let _ = token;
//! # Ok(()) }
//! ```
//!
//! Secrets never appear in errors, logs or `Debug` output: [`AuthToken`]'s `Debug` hides the
//! token, and error texts are scrubbed of `key=`, `access_token=` and `auth_tokens/...`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tracing::{debug, error, info, warn};

use crate::http::{self, HttpError, Url};
use crate::protocol::{AuthToken, CreateAuthTokenRequest, Setup, model_resource, scrub_secrets};
pub use crate::rfc3339::{format_rfc3339, parse_rfc3339};
use crate::secret::Secret;
use crate::server::ServerTask;

/// The real service's REST base URL (tokens are minted at `{base}/v1alpha/auth_tokens`).
pub const GEMINI_REST_URL: &str = "https://generativelanguage.googleapis.com";
/// The path of the minting method.
pub const AUTH_TOKENS_PATH: &str = "/v1alpha/auth_tokens";
/// Default time allowed for one HTTP exchange.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a token could not be minted or fetched. Never contains a key or a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The URL is not usable (`http://` or `https://` with a host).
    #[error("invalid URL: {0}")]
    Url(String),
    /// The server could not be reached or the connection failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// TLS failed (certificate, handshake), or `https://` without the `tls` feature.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The server answered with an error status; `message` is its error message.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The server's error message (scrubbed of secrets).
        message: String,
    },
    /// The answer is not a token.
    #[error("invalid response: {0}")]
    Response(String),
    /// No complete answer in time.
    #[error("timed out")]
    Timeout,
}

impl TokenError {
    /// Whether trying again later can help (network trouble, timeouts, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            TokenError::Connect(_) | TokenError::Timeout => true,
            TokenError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<HttpError> for TokenError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Url(m) => TokenError::Url(m),
            HttpError::Connect(m) => TokenError::Connect(m),
            HttpError::Tls(m) => TokenError::Tls(m),
            HttpError::Response(m) => TokenError::Response(m),
            HttpError::Timeout => TokenError::Timeout,
        }
    }
}

/// HTTP settings for minting and fetching tokens.
#[derive(Clone, Debug)]
pub struct TokenClient {
    /// Time allowed for one exchange (connect, request, whole response).
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM) for `https://`, e.g. a TLS simulator's CA.
    pub extra_root_pem: Vec<Vec<u8>>,
    /// Headers [`fetch`](Self::fetch) sends to the token server, e.g. `Authorization` with the
    /// player's session ticket for the server's authentication hook. Values never show in
    /// `Debug`.
    pub fetch_headers: Vec<(String, Secret)>,
}

impl Default for TokenClient {
    fn default() -> Self {
        TokenClient { timeout: DEFAULT_HTTP_TIMEOUT, extra_root_pem: Vec::new(), fetch_headers: Vec::new() }
    }
}

impl TokenClient {
    /// Adds a header to [`fetch_headers`](Self::fetch_headers).
    pub fn with_fetch_header(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.fetch_headers.push((name.into(), value));
        self
    }

    /// `POST {base_url}/v1alpha/auth_tokens` with the key in `x-goog-api-key`: mints a token.
    /// `base_url` is `https://generativelanguage.googleapis.com` ([`GEMINI_REST_URL`]) or a
    /// simulator's `http://127.0.0.1:PORT` (its `ws://` URL works too).
    pub async fn mint(
        &self,
        base_url: &str,
        api_key: &Secret,
        request: &CreateAuthTokenRequest,
    ) -> Result<AuthToken, TokenError> {
        let url = Url::parse(base_url)?.with_path(AUTH_TOKENS_PATH);
        let body = serde_json::to_vec(request).map_err(|e| TokenError::Response(e.to_string()))?;
        let headers = [("x-goog-api-key", api_key.expose())];
        let resp = http::post_json(&url, &headers, &body, self.timeout, &self.extra_root_pem).await?;
        token_from(resp)
    }

    /// `POST url` with an empty JSON object and [`fetch_headers`](Self::fetch_headers): asks a
    /// token server (such as [`TokenServer`]) for a token. The answer is an [`AuthToken`] as
    /// the minting method returns it; refusals are [`TokenError::Http`] (401/403 from the
    /// authentication hook, 429 from the rate limit).
    pub async fn fetch(&self, url: &str) -> Result<AuthToken, TokenError> {
        let url = Url::parse(url)?;
        let headers: Vec<(&str, &str)> = self.fetch_headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        let resp = http::post_json(&url, &headers, b"{}", self.timeout, &self.extra_root_pem).await?;
        token_from(resp)
    }
}

fn token_from(resp: http::Response) -> Result<AuthToken, TokenError> {
    if resp.status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned());
        return Err(TokenError::Http { status: resp.status, message: scrub_secrets(&message) });
    }
    let token: AuthToken =
        serde_json::from_slice(&resp.body).map_err(|e| TokenError::Response(format!("not a token: {e}")))?;
    if !token.name.starts_with("auth_tokens/") {
        return Err(TokenError::Response("the token name does not start with auth_tokens/".to_owned()));
    }
    Ok(token)
}

/// Mints a token with the default [`TokenClient`] (see [`TokenClient::mint`]).
pub async fn mint_token(
    base_url: &str,
    api_key: &Secret,
    request: &CreateAuthTokenRequest,
) -> Result<AuthToken, TokenError> {
    TokenClient::default().mint(base_url, api_key, request).await
}

/// Fetches a token from a token server with the default [`TokenClient`] (see
/// [`TokenClient::fetch`]).
pub async fn fetch_token(url: &str) -> Result<AuthToken, TokenError> {
    TokenClient::default().fetch(url).await
}

// ---------------------------------------------------------------- what a token allows

/// The model a [`TokenPolicy`] locks unless told otherwise: the session client's default model
/// (`crate::session::DEFAULT_MODEL`) in `models/` form. Set your game's model with
/// [`TokenPolicy::with_model`] or [`TokenPolicy::with_setup`].
pub const DEFAULT_TOKEN_MODEL: &str = "models/gemini-3.8-live";

/// The service refuses `expireTime` and `newSessionExpireTime` 20 hours ahead or more; longer
/// durations are clamped to this (and so refused by the service with a clear message) instead of
/// overflowing.
const MAX_AHEAD: Duration = Duration::from_secs(20 * 3600);

/// Top-level setup fields a derived field mask leaves to the client: the resumption handle
/// belongs to the connection.
const CLIENT_FIELDS: &[&str] = &["sessionResumption"];

/// How a policy's field mask is chosen.
#[derive(Clone, Debug, PartialEq)]
enum Mask {
    /// `model` plus every top-level field the setup sets.
    Derived,
    /// The game's own mask.
    Explicit(String),
    /// No mask: the token's setup replaces the client's whole.
    Whole,
}

/// What each token a [`TokenServer`] mints allows: how many sessions, for how long, and the lock
/// on the session's setup (`bidiGenerateContentSetup` + `fieldMask`, live-protocol.md §1).
///
/// The default locks the model to [`DEFAULT_TOKEN_MODEL`]: whatever setup a game client (or
/// whoever holds a leaked token) sends, the session runs on that model. With
/// [`with_setup`](Self::with_setup) the token carries the game's setup and the field mask is
/// `model` plus every top-level field that setup sets (`systemInstruction`, `tools`,
/// `generationConfig`, ...; `sessionResumption` excepted): those are overwritten with the game's
/// on every session the token opens, the fields the setup leaves out stay the client's.
///
/// ```
/// use live_npc_client::protocol::{Content, Setup};
/// use live_npc_client::token::TokenPolicy;
///
/// let persona = Setup {
///     model: "models/gemini-3.8-live".into(),
///     system_instruction: Some(Content::user_text("You are Bram, the ferryman.")),
///     ..Default::default()
/// };
/// let policy = TokenPolicy::default().with_setup(persona);
/// assert_eq!(policy.field_mask().as_deref(), Some("model,systemInstruction"));
/// assert_eq!(TokenPolicy::default().field_mask().as_deref(), Some("model"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPolicy {
    /// Sessions a token may open (0 = unlimited; resumption is free). Default 1.
    pub uses: i32,
    /// The token's lifetime (default: the service's, 30 minutes). Clamped to 20 hours, which the
    /// service refuses.
    pub expire_after: Option<Duration>,
    /// How long new sessions may start (default: the service's, 60 s). Clamped like
    /// `expire_after`.
    pub new_session_after: Option<Duration>,
    /// The locked setup; `None` only for [`TokenPolicy::unconstrained`].
    setup: Option<Setup<'static>>,
    mask: Mask,
}

impl Default for TokenPolicy {
    /// One use, the service's lifetimes, the model locked to [`DEFAULT_TOKEN_MODEL`].
    fn default() -> Self {
        TokenPolicy {
            uses: 1,
            expire_after: None,
            new_session_after: None,
            setup: Some(Setup { model: DEFAULT_TOKEN_MODEL.to_owned(), ..Default::default() }),
            mask: Mask::Derived,
        }
    }
}

impl TokenPolicy {
    /// Tokens that lock nothing: the client's setup is used as it is, so a leaked token opens
    /// sessions on **any** model with any persona, tools and limits, billed to your key, until
    /// it expires. Only for tests and tools that need that; a shipped game keeps a lock.
    pub fn unconstrained() -> Self {
        TokenPolicy { setup: None, mask: Mask::Whole, ..TokenPolicy::default() }
    }

    /// Locks `setup`, the one the game configured: the field mask becomes `model` plus every
    /// top-level field `setup` sets (`sessionResumption` excepted). An empty `model` is
    /// [`DEFAULT_TOKEN_MODEL`]; a bare id gets its `models/` prefix. Replaces an earlier
    /// [`with_field_mask`](Self::with_field_mask) or [`lock_whole_setup`](Self::lock_whole_setup).
    pub fn with_setup(mut self, mut setup: Setup<'static>) -> Self {
        setup.model = if setup.model.trim().is_empty() {
            DEFAULT_TOKEN_MODEL.to_owned()
        } else {
            model_resource(setup.model.trim())
        };
        self.setup = Some(setup);
        self.mask = Mask::Derived;
        self
    }

    /// Locks the model (`gemini-3.8-live` or `models/gemini-3.8-live`), keeping the rest of the
    /// locked setup and the mask. On an [`unconstrained`](Self::unconstrained) policy it locks
    /// just the model.
    pub fn with_model(mut self, model: &str) -> Self {
        let model = if model.trim().is_empty() { DEFAULT_TOKEN_MODEL.to_owned() } else { model_resource(model.trim()) };
        match &mut self.setup {
            Some(setup) => setup.model = model,
            None => {
                self.setup = Some(Setup { model, ..Default::default() });
                self.mask = Mask::Derived;
            }
        }
        self
    }

    /// Sends this field mask (`model,generationConfig.temperature`) instead of the derived one.
    /// Masked fields the locked setup lacks are removed from the client's; fields left out of
    /// the mask are the client's to choose, so leave `model` out only on purpose.
    pub fn with_field_mask(mut self, mask: impl Into<String>) -> Self {
        self.mask = Mask::Explicit(mask.into());
        self
    }

    /// Sends no field mask: the locked setup replaces the client's whole setup (the strictest
    /// lock; the client's transcription, VAD and other settings are dropped too).
    pub fn lock_whole_setup(mut self) -> Self {
        if self.setup.is_some() {
            self.mask = Mask::Whole;
        }
        self
    }

    /// Sets [`uses`](Self::uses).
    pub fn with_uses(mut self, uses: i32) -> Self {
        self.uses = uses;
        self
    }

    /// Sets [`expire_after`](Self::expire_after).
    pub fn with_expire_after(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// Sets [`new_session_after`](Self::new_session_after).
    pub fn with_new_session_after(mut self, after: Duration) -> Self {
        self.new_session_after = Some(after);
        self
    }

    /// The locked setup (`None` for an unconstrained policy).
    pub fn setup(&self) -> Option<&Setup<'static>> {
        self.setup.as_ref()
    }

    /// The field mask each minting request carries (`None`: no mask).
    pub fn field_mask(&self) -> Option<String> {
        match (&self.mask, &self.setup) {
            (_, None) | (Mask::Whole, _) => None,
            (Mask::Explicit(m), _) => Some(m.clone()),
            (Mask::Derived, Some(setup)) => Some(derived_mask(setup)),
        }
    }

    /// The minting request for a token issued at `now`.
    pub fn request(&self, now: SystemTime) -> CreateAuthTokenRequest {
        let at = |d: Duration| format_rfc3339(now.checked_add(d.min(MAX_AHEAD)).unwrap_or(now));
        CreateAuthTokenRequest {
            uses: Some(self.uses),
            expire_time: self.expire_after.map(at),
            new_session_expire_time: self.new_session_after.map(at),
            bidi_generate_content_setup: self.setup.clone(),
            field_mask: self.field_mask(),
        }
    }
}

/// `model`, then the other top-level fields `setup` sets (camelCase, sorted).
fn derived_mask(setup: &Setup<'_>) -> String {
    let mut fields = vec!["model".to_owned()];
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(setup) {
        let set = map.into_iter().filter(|(k, v)| !v.is_null() && k != "model" && !CLIENT_FIELDS.contains(&k.as_str()));
        fields.extend(set.map(|(k, _)| k));
    }
    fields.join(",")
}

// ---------------------------------------------------------------- callers

/// A read-only view of a request's head, for the authentication hook
/// ([`TokenServerConfig::authenticate`]). Its `Debug` shows header names, never their values.
pub struct RequestHead<'a> {
    req: &'a http::Request,
    peer: SocketAddr,
}

impl RequestHead<'_> {
    /// The method (`POST`: other methods are refused before the hook runs).
    pub fn method(&self) -> &str {
        &self.req.method
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        &self.req.path
    }

    /// The query, without `?` (empty if none).
    pub fn query(&self) -> &str {
        &self.req.query
    }

    /// The first header called `name` (case-insensitive), its value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The TCP peer: the caller, or the reverse proxy in front of the server.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.req.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("RequestHead")
            .field("method", &self.req.method)
            .field("path", &self.req.path)
            .field("header_names", &names)
            .field("peer", &self.peer)
            .finish()
    }
}

/// The authentication hook's "no": a status (401 or 403) and the message the caller sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    message: String,
}

impl Refusal {
    /// 401 Unauthorized: no credentials, or ones that do not check out (expired ticket).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Refusal { status: 401, message: message.into() }
    }

    /// 403 Forbidden: a known caller who may not have a token (banned, no entitlement).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal { status: 403, message: message.into() }
    }

    /// The HTTP status: 401 or 403.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message shown to the caller (in the JSON error body).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The authentication hook: the caller's id (a player id), or a refusal.
type AuthHook = dyn Fn(&RequestHead<'_>) -> Result<String, Refusal> + Send + Sync;

/// The caller id without a hook: the peer's IPv4 address, or its IPv6 `/64` (one host usually
/// has a whole `/64`).
fn peer_caller(peer: SocketAddr) -> String {
    match peer.ip().to_canonical() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

// ---------------------------------------------------------------- limits

/// Default burst of the per-caller rate limit: tokens a caller may get at once.
pub const DEFAULT_BURST: u32 = 5;
/// Default refill of the per-caller rate limit: one more token per this interval.
pub const DEFAULT_REFILL: Duration = Duration::from_secs(10);
/// Default number of callers the rate limit remembers; past it the stalest is forgotten.
pub const DEFAULT_MAX_CALLERS: usize = 10_000;
/// Default number of connections served at once; more are refused at once (503).
pub const DEFAULT_MAX_CONCURRENT: usize = 256;
/// Default deadline for receiving a request's head and body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request body the token server reads (it ignores the body; `{}` is what
/// [`TokenClient::fetch`] sends).
pub const MAX_REQUEST_BODY: usize = 4096;
/// Bounds of [`TokenServerConfig::with_request_timeout`].
const REQUEST_TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(300));

/// A per-caller token bucket (as GCRA: one "theoretical arrival time" per caller), keyed by a
/// keyed hash of the caller id so the map's memory does not depend on the ids' lengths.
#[derive(Debug)]
struct RateLimiter {
    /// One token per `interval` (zero: no limit).
    interval: Duration,
    /// `interval × (burst − 1)`: how far ahead of now a caller's arrival time may run.
    tolerance: Duration,
    max_callers: usize,
    epoch: Instant,
    keys: RandomState,
    callers: Mutex<HashMap<u64, Duration>>,
}

impl RateLimiter {
    fn new(burst: u32, interval: Duration, max_callers: usize) -> Self {
        RateLimiter {
            interval,
            tolerance: interval.checked_mul(burst.max(1) - 1).unwrap_or(Duration::MAX),
            max_callers: max_callers.max(1),
            epoch: Instant::now(),
            keys: RandomState::new(),
            callers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Duration>> {
        self.callers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token for `caller`, or says how long until one is there.
    fn check(&self, caller: &str) -> Result<(), Duration> {
        self.check_at(caller, self.epoch.elapsed())
    }

    /// [`check`](Self::check) at `now` (time since `epoch`).
    fn check_at(&self, caller: &str, now: Duration) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let key = self.keys.hash_one(caller);
        let mut callers = self.lock();
        let arrival = callers.get(&key).copied().unwrap_or(now).max(now);
        let ahead = arrival.saturating_sub(now);
        if ahead > self.tolerance {
            return Err(ahead.saturating_sub(self.tolerance));
        }
        if !callers.contains_key(&key) && callers.len() >= self.max_callers {
            // A caller whose bucket is full again is the same as an unknown one: forget those,
            // then the stalest (the fullest bucket) until there is room.
            callers.retain(|_, at| *at > now);
            while callers.len() >= self.max_callers {
                let Some(stalest) = callers.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) else { break };
                callers.remove(&stalest);
            }
        }
        callers.insert(key, arrival.saturating_add(self.interval));
        Ok(())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Whole seconds to wait, rounded up, at least 1 (for `Retry-After`).
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}

// ---------------------------------------------------------------- the server

/// What a [`TokenServer`] needs: where to mint, with which key, under which policy, and whom to
/// serve. Build it with [`new`](Self::new) and the `with_*` methods.
///
/// **A shipped game must install an [`authenticate`](Self::authenticate) hook** that checks
/// the player's session ticket (Steam, Epic, your own login): without one, anyone who can reach
/// the server gets tokens (rate-limited per IP address) and spends your quota.
#[derive(Clone)]
pub struct TokenServerConfig {
    /// REST base URL of the Live service ([`GEMINI_REST_URL`], or a `live-sim`'s URL).
    pub endpoint: String,
    /// The API key (never leaves the server).
    pub api_key: Secret,
    /// What each token allows.
    pub policy: TokenPolicy,
    /// HTTP settings towards the endpoint.
    pub client: TokenClient,
    /// Connections served at once; more are refused at once with 503 (default
    /// [`DEFAULT_MAX_CONCURRENT`], at least 1).
    pub max_concurrent: usize,
    auth: Option<Arc<AuthHook>>,
    burst: u32,
    refill: Duration,
    max_callers: usize,
    hosts: Vec<String>,
    request_timeout: Duration,
}

impl fmt::Debug for TokenServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServerConfig")
            .field("endpoint", &scrub_secrets(&self.endpoint))
            .field("api_key", &self.api_key)
            .field("policy", &self.policy)
            .field("client", &self.client)
            .field("max_concurrent", &self.max_concurrent)
            .field("authenticate", &if self.auth.is_some() { "a hook" } else { "none (callers are IP addresses)" })
            .field("burst", &self.burst)
            .field("refill", &self.refill)
            .field("max_callers", &self.max_callers)
            .field("hosts", &self.hosts)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl TokenServerConfig {
    /// A configuration with the default policy (one use, the service's lifetimes, the model
    /// locked to [`DEFAULT_TOKEN_MODEL`]), no authentication hook, a rate limit of
    /// [`DEFAULT_BURST`] tokens then one per [`DEFAULT_REFILL`] per caller, and the loopback
    /// names plus the bound address as the only accepted `Host`s.
    pub fn new(endpoint: impl Into<String>, api_key: Secret) -> Self {
        TokenServerConfig {
            endpoint: endpoint.into(),
            api_key,
            policy: TokenPolicy::default(),
            client: TokenClient::default(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            auth: None,
            burst: DEFAULT_BURST,
            refill: DEFAULT_REFILL,
            max_callers: DEFAULT_MAX_CALLERS,
            hosts: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Installs the caller-authentication hook. It sees each `POST /token` head that passed the
    /// `Host` check and returns the caller's id (a player id: the rate limit's key) or a
    /// [`Refusal`] (401/403, no token minted). Without a hook the caller id is the peer's IP
    /// address (its `/64` for IPv6), which is the reverse proxy's when there is one.
    ///
    /// A shipped game must install one: check the player's session ticket (e.g. an
    /// `Authorization` header the game client sends, see [`TokenClient::with_fetch_header`]).
    /// The hook runs on the server's runtime for every request: keep it quick (verify a
    /// signature, look up a cache), never block on the network. A panic in it answers 500.
    pub fn authenticate(
        mut self,
        hook: impl Fn(&RequestHead<'_>) -> Result<String, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// The per-caller rate limit: `burst` tokens at once (at least 1), then one per `refill`.
    /// `refill` zero turns the limit off. Excess requests get 429 with `Retry-After`.
    pub fn with_rate_limit(mut self, burst: u32, refill: Duration) -> Self {
        self.burst = burst.max(1);
        self.refill = refill;
        self
    }

    /// How many callers the rate limit remembers (default [`DEFAULT_MAX_CALLERS`], at least 1);
    /// past it the stalest is forgotten, so a flood of caller ids cannot grow the memory.
    pub fn with_max_callers(mut self, max: usize) -> Self {
        self.max_callers = max.max(1);
        self
    }

    /// Also accepts requests whose `Host` is `host` (the game backend's public name,
    /// `tokens.example.com`; a port is ignored, any port is accepted). Malformed names are
    /// ignored (with a warning). `localhost`, `127.0.0.1`, `[::1]` and the bound address are
    /// always accepted; every other `Host`, or none, gets 421.
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        match http::host_of(host.as_ref()) {
            Some(h) => self.hosts.push(h),
            None => warn!("token server: ignoring a malformed allowed host"),
        }
        self
    }

    /// The deadline for receiving a request's head and body (default
    /// [`DEFAULT_REQUEST_TIMEOUT`], clamped to 0.1–300 s); slower requests get 408. Writing the
    /// answer has the same deadline.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.clamp(REQUEST_TIMEOUT_RANGE.0, REQUEST_TIMEOUT_RANGE.1);
        self
    }

    /// Sets [`policy`](Self::policy).
    pub fn with_policy(mut self, policy: TokenPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets [`max_concurrent`](Self::max_concurrent).
    pub fn with_max_concurrent(mut self, max: usize) -> Self {
        self.max_concurrent = max;
        self
    }

    /// Whether an authentication hook is installed.
    pub fn has_authentication(&self) -> bool {
        self.auth.is_some()
    }
}

/// Counters of a [`TokenServer`] (see [`TokenServer::stats`]).
#[derive(Debug, Default)]
struct Counters {
    minted: AtomicU64,
    mint_failed: AtomicU64,
    refused_auth: AtomicU64,
    rate_limited: AtomicU64,
    bad_host: AtomicU64,
    bad_method: AtomicU64,
    not_found: AtomicU64,
    bad_request: AtomicU64,
    timed_out: AtomicU64,
    overloaded: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a [`TokenServer`] has answered so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenServerStats {
    /// Tokens minted and handed out (200).
    pub minted: u64,
    /// Minting failed at the endpoint (502, or 503 when the service is out of quota).
    pub mint_failed: u64,
    /// Refused by the authentication hook (401/403), or the hook panicked (500).
    pub refused_auth: u64,
    /// Refused by the per-caller rate limit (429).
    pub rate_limited: u64,
    /// Refused for a missing or unknown `Host` (421).
    pub bad_host: u64,
    /// A method other than `POST` on `/token` (405).
    pub bad_method: u64,
    /// A path other than `/token` (404).
    pub not_found: u64,
    /// Not HTTP, a bad or too large head or body (400, 411, 413, 431).
    pub bad_request: u64,
    /// Head or body not received within the deadline (408).
    pub timed_out: u64,
    /// Connections refused because [`TokenServerConfig::max_concurrent`] were being served (503).
    pub overloaded: u64,
    /// Callers the rate limit remembers now (at most the configured maximum).
    pub callers: u64,
}

/// What every connection task of one server shares.
struct Shared {
    config: TokenServerConfig,
    counters: Arc<Counters>,
    limiter: Arc<RateLimiter>,
    /// Accepted `Host` names (normalized, see [`http::host_of`]).
    names: Vec<String>,
    /// Accepted `Host` addresses.
    ips: Vec<IpAddr>,
    /// Bound to `0.0.0.0` or `::`: the address each connection reached is accepted too.
    any_local: bool,
}

impl Shared {
    /// Whether a `Host` header value names this server (any port).
    fn host_allowed(&self, value: Option<&str>, local: Option<SocketAddr>) -> bool {
        let Some(host) = value.and_then(http::host_of) else { return false };
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                self.ips.contains(&ip) || (self.any_local && local.is_some_and(|l| l.ip().to_canonical() == ip))
            }
            Err(_) => self.names.contains(&host),
        }
    }
}

/// A tiny HTTP server a game backend runs: `POST /token` mints a token from the configured
/// endpoint and answers with it ([`AuthToken`] JSON).
///
/// Every request is checked, in this order: received within the deadline (else 408),
/// well-formed with a body of at most [`MAX_REQUEST_BODY`] bytes (400/411/413/431), exactly one
/// accepted `Host` (421, which defeats DNS rebinding), path `/token` (404), method `POST` (405
/// with `Allow: POST`), the authentication hook (401/403), the caller's rate limit (429 with
/// `Retry-After`). Connections past [`TokenServerConfig::max_concurrent`] get 503 at once. Every
/// answer carries `Cache-Control: no-store`. See `docs/TOKENS.md` for the threat model.
///
/// It speaks plain HTTP: put it behind HTTPS (a TLS-terminating reverse proxy) in production,
/// and install an [authentication hook](TokenServerConfig::authenticate).
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    server: ServerTask,
    counters: Arc<Counters>,
    limiter: Arc<RateLimiter>,
}

impl TokenServer {
    /// Binds `addr` and serves on the current tokio runtime.
    pub async fn start(addr: SocketAddr, config: TokenServerConfig) -> std::io::Result<TokenServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let limiter = Arc::new(RateLimiter::new(config.burst, config.refill, config.max_callers));
        let mut names = vec!["localhost".to_owned()];
        let mut ips = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
        let bound = addr.ip().to_canonical();
        let any_local = bound.is_unspecified();
        if !any_local {
            ips.push(bound);
        }
        for host in &config.hosts {
            match host.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip.to_canonical()),
                Err(_) => names.push(host.clone()),
            }
        }
        if config.auth.is_none() {
            warn!(
                "token server: no authentication hook: anyone who reaches http://{addr}/token gets tokens (rate-limited per IP address); install one before shipping"
            );
        }
        let shared =
            Arc::new(Shared { config, counters: counters.clone(), limiter: limiter.clone(), names, ips, any_local });
        let server = ServerTask::spawn(|stopped| serve(listener, shared, stopped));
        info!("token server: listening on http://{addr}");
        Ok(TokenServer { addr, server, counters, limiter })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL game clients ask for tokens: `http://ADDR/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// What the server has answered so far.
    pub fn stats(&self) -> TokenServerStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TokenServerStats {
            minted: get(&c.minted),
            mint_failed: get(&c.mint_failed),
            refused_auth: get(&c.refused_auth),
            rate_limited: get(&c.rate_limited),
            bad_host: get(&c.bad_host),
            bad_method: get(&c.bad_method),
            not_found: get(&c.not_found),
            bad_request: get(&c.bad_request),
            timed_out: get(&c.timed_out),
            overloaded: get(&c.overloaded),
            callers: u64::try_from(self.limiter.len()).unwrap_or(u64::MAX),
        }
    }

    /// Stops serving: closes the listener and aborts the requests in flight (it does not wait
    /// for slow callers), then returns. Dropping the server stops it too.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let permits = Arc::new(Semaphore::new(shared.config.max_concurrent.clamp(1, Semaphore::MAX_PERMITS)));
    let overloaded = http::response_bytes(
        503,
        &[("Cache-Control", "no-store"), ("Retry-After", "1")],
        &http::error_body(503, "The token server is busy; try again shortly."),
    );
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        tasks.spawn(async move {
                            let _permit = permit;
                            answer(tcp, peer, &shared).await;
                        });
                    }
                    Err(_) => {
                        // Never wait for a permit: a slow caller must not hold up the others.
                        bump(&shared.counters.overloaded);
                        debug!("token server: busy, refusing a connection");
                        let _ = tcp.try_write(&overloaded);
                    }
                },
                Err(e) => {
                    warn!("token server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    debug!("token server: stopped");
}

/// An answer: status, extra headers, JSON body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: u16, message: &str) -> Reply {
        Reply { status, headers: Vec::new(), body: http::error_body(status, message) }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

async fn answer(mut tcp: TcpStream, peer: SocketAddr, shared: &Shared) {
    let timeout = shared.config.request_timeout;
    let Some(reply) = respond(&mut tcp, peer, shared, timeout).await else { return };
    let mut headers: Vec<(&str, &str)> = vec![("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")];
    headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
    let written = tokio::time::timeout(timeout, http::write_response(&mut tcp, reply.status, &headers, &reply.body));
    if !matches!(written.await, Ok(Ok(()))) {
        debug!("token server: could not write the answer to {peer}");
    }
}

/// Reads and checks one request; `None` when the peer went away before a complete head.
async fn respond(tcp: &mut TcpStream, peer: SocketAddr, shared: &Shared, timeout: Duration) -> Option<Reply> {
    let c = &shared.counters;
    let deadline = tokio::time::Instant::now().checked_add(timeout)?;
    let mut buf = Vec::with_capacity(1024);
    let end = match tokio::time::timeout_at(deadline, http::read_head(tcp, &mut buf)).await {
        Err(_) => {
            bump(&c.timed_out);
            debug!("token server: {peer} was too slow sending its request head");
            return Some(Reply::error(408, "The request took too long."));
        }
        Ok(Err(_)) => return None,
        Ok(Ok(None)) if buf.len() > http::MAX_HEAD => {
            bump(&c.bad_request);
            return Some(Reply::error(431, "The request head is too large."));
        }
        Ok(Ok(None)) => return None,
        Ok(Ok(Some(end))) => end,
    };
    let Some(mut req) = http::parse_request(&buf[..end]) else {
        bump(&c.bad_request);
        return Some(Reply::error(400, "Not an HTTP request."));
    };
    // The body is read (and ignored) first, so that no answer leaves unread bytes behind (a
    // reset that could destroy it).
    let rest = buf.get(end..).unwrap_or_default();
    match tokio::time::timeout_at(deadline, http::read_body_max(tcp, &mut req, rest, MAX_REQUEST_BODY)).await {
        Err(_) => {
            bump(&c.timed_out);
            return Some(Reply::error(408, "The request took too long."));
        }
        Ok(Err((status, message))) => {
            bump(&c.bad_request);
            return Some(Reply::error(status, message));
        }
        Ok(Ok(())) => {}
    }
    // Exactly one `Host`: with two, a proxy and this server could each read a different one.
    let single_host = req.headers.iter().filter(|(k, _)| k == "host").count() == 1;
    if !single_host || !shared.host_allowed(req.header("host"), tcp.local_addr().ok()) {
        bump(&c.bad_host);
        debug!("token server: refused a request from {peer} for an unknown Host");
        return Some(Reply::error(421, "This server does not answer for that Host."));
    }
    if req.path.trim_end_matches('/') != "/token" {
        bump(&c.not_found);
        return Some(Reply::error(404, "Not found: ask POST /token."));
    }
    if req.method != "POST" {
        bump(&c.bad_method);
        return Some(Reply::error(405, "Use POST /token.").with_header("Allow", "POST".to_owned()));
    }
    let caller = match &shared.config.auth {
        None => peer_caller(peer),
        Some(hook) => {
            let head = RequestHead { req: &req, peer };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&head))) {
                Ok(Ok(id)) => id,
                Ok(Err(refusal)) => {
                    bump(&c.refused_auth);
                    debug!("token server: the authentication hook refused {peer} ({})", refusal.status);
                    return Some(Reply::error(refusal.status, &refusal.message));
                }
                Err(_) => {
                    bump(&c.refused_auth);
                    error!("token server: the authentication hook panicked");
                    return Some(Reply::error(500, "Internal error."));
                }
            }
        }
    };
    if let Err(wait) = shared.limiter.check(&caller) {
        bump(&c.rate_limited);
        let secs = retry_secs(wait);
        debug!("token server: rate-limited a caller from {peer} for {secs} s");
        let message = format!("Too many token requests; try again in {secs} s.");
        return Some(Reply::error(429, &message).with_header("Retry-After", secs.to_string()));
    }
    let request = shared.config.policy.request(SystemTime::now());
    let minted = shared.config.client.mint(&shared.config.endpoint, &shared.config.api_key, &request).await;
    match minted.map(|token| serde_json::to_vec(&token)) {
        Ok(Ok(body)) => {
            bump(&c.minted);
            debug!("token server: minted a token for a caller from {peer}");
            Some(Reply { status: 200, headers: Vec::new(), body })
        }
        Ok(Err(e)) => {
            bump(&c.mint_failed);
            warn!("token server: cannot encode a minted token: {e}");
            Some(Reply::error(500, "Internal error."))
        }
        Err(e) => {
            bump(&c.mint_failed);
            // `TokenError` texts are scrubbed of keys and tokens.
            warn!("token server: minting failed: {e}");
            Some(match &e {
                TokenError::Http { status: 429, .. } => {
                    Reply::error(503, "The service is out of quota; try again later.")
                        .with_header("Retry-After", "30".to_owned())
                }
                _ => Reply::error(502, "Could not mint a token; try again later."),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2025-05-01T00:30:00+00:00");
        assert_eq!(t, parse_rfc3339("2025-05-01T02:30:00+02:00"));
        assert_eq!(t.map(format_rfc3339).as_deref(), Some("2025-05-01T00:30:00Z"));
        assert!(parse_rfc3339("2025-05-01T00:30:00.250Z").is_some());
        assert!(parse_rfc3339("2025-05-01 00:30").is_none());
        assert!(parse_rfc3339("").is_none());
    }

    #[test]
    fn errors_hide_secrets() {
        let e = token_from(http::Response {
            status: 400,
            body: br#"{"error":{"code":400,"message":"bad auth_tokens/SECRET1 key=SECRET2"}}"#.to_vec(),
        });
        let shown = format!("{e:?} {}", e.as_ref().err().map(ToString::to_string).unwrap_or_default());
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(TokenError::Http { status: 503, message: String::new() }.is_retryable());
        assert!(!TokenError::Http { status: 403, message: String::new() }.is_retryable());
    }

    #[test]
    fn the_default_model_is_the_session_clients() {
        assert_eq!(DEFAULT_TOKEN_MODEL, model_resource(crate::session::DEFAULT_MODEL));
    }

    #[test]
    fn the_default_policy_locks_the_model() {
        let now = SystemTime::now();
        let r = TokenPolicy::default().request(now);
        assert_eq!(r.uses, Some(1));
        assert_eq!(r.bidi_generate_content_setup.map(|s| s.model).as_deref(), Some(DEFAULT_TOKEN_MODEL));
        assert_eq!(r.field_mask.as_deref(), Some("model"));
        assert_eq!((r.expire_time, r.new_session_expire_time), (None, None));
    }

    #[test]
    fn a_games_setup_is_locked_field_by_field() {
        use crate::protocol::{Content, GenerationConfig, SessionResumptionConfig};
        let setup = Setup {
            model: "gemini-2.5-flash-native-audio-preview-12-2025".into(),
            generation_config: Some(GenerationConfig { temperature: Some(0.5), ..Default::default() }),
            system_instruction: Some(Content::user_text("You are Bram.")),
            session_resumption: Some(SessionResumptionConfig::default()),
            ..Default::default()
        };
        let policy = TokenPolicy::default().with_setup(setup);
        assert_eq!(policy.field_mask().as_deref(), Some("model,generationConfig,systemInstruction"));
        let locked = policy.setup().map(|s| s.model.clone());
        assert_eq!(locked.as_deref(), Some("models/gemini-2.5-flash-native-audio-preview-12-2025"));
        // An empty model is the default one, and is locked.
        let empty = TokenPolicy::default().with_setup(Setup::default());
        assert_eq!(empty.setup().map(|s| s.model.as_str()), Some(DEFAULT_TOKEN_MODEL));
        assert_eq!(empty.field_mask().as_deref(), Some("model"));
        // The other choices.
        assert_eq!(policy.clone().lock_whole_setup().field_mask(), None);
        assert!(policy.clone().lock_whole_setup().setup().is_some());
        assert_eq!(policy.clone().with_field_mask("tools").field_mask().as_deref(), Some("tools"));
        let model = policy.with_model("gemini-3.8-live");
        assert_eq!(model.setup().map(|s| s.model.as_str()), Some("models/gemini-3.8-live"));
        assert!(model.field_mask().is_some_and(|m| m.starts_with("model,")));
        let open = TokenPolicy::unconstrained();
        assert_eq!((open.setup(), open.field_mask()), (None, None));
        assert_eq!(open.clone().lock_whole_setup().setup(), None);
        assert_eq!(open.with_model("x").field_mask().as_deref(), Some("model"));
    }

    #[test]
    fn huge_lifetimes_do_not_overflow() {
        let now = SystemTime::now();
        let policy = TokenPolicy::default().with_expire_after(Duration::MAX).with_new_session_after(Duration::MAX);
        let r = policy.request(now);
        let expire = r.expire_time.as_deref().and_then(parse_rfc3339);
        assert!(expire.is_some_and(|t| t <= now + MAX_AHEAD && t > now), "{:?}", r.expire_time);
        assert_eq!(r.expire_time, r.new_session_expire_time);
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let limiter = RateLimiter::new(3, Duration::from_secs(10), 100);
        let t0 = Duration::from_secs(1000);
        for _ in 0..3 {
            assert_eq!(limiter.check_at("ada", t0), Ok(()));
        }
        assert_eq!(limiter.check_at("ada", t0), Err(Duration::from_secs(10)));
        assert_eq!(limiter.check_at("ada", t0 + Duration::from_secs(4)), Err(Duration::from_secs(6)));
        // Others are not affected.
        assert_eq!(limiter.check_at("bram", t0), Ok(()));
        // One more every 10 s; a full bucket after 30 s.
        assert_eq!(limiter.check_at("ada", t0 + Duration::from_secs(10)), Ok(()));
        assert!(limiter.check_at("ada", t0 + Duration::from_secs(10)).is_err());
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(limiter.check_at("ada", later), Ok(()));
        }
        assert!(limiter.check_at("ada", later).is_err());
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(10_001)), 11);
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn the_caller_map_stays_bounded() {
        let limiter = RateLimiter::new(1, Duration::from_secs(3600), 100);
        let now = Duration::from_secs(5);
        for i in 0..20_000 {
            assert_eq!(limiter.check_at(&format!("flood-{i}"), now), Ok(()));
            assert!(limiter.len() <= 100);
        }
        // The latest callers are still limited, and huge ids cost no more memory than small ones.
        assert!(limiter.check_at("flood-19999", now).is_err());
        assert_eq!(limiter.check_at(&"x".repeat(16 * 1024), now), Ok(()));
        assert_eq!(limiter.len(), 100);
        // Callers whose bucket refilled are forgotten first.
        let refilled = now + Duration::from_secs(3601);
        assert_eq!(limiter.check_at("late", refilled), Ok(()));
        assert_eq!(limiter.len(), 1);
        // No limit: nothing remembered. Extreme settings: no overflow.
        let off = RateLimiter::new(5, Duration::ZERO, 10);
        for i in 0..100 {
            assert_eq!(off.check_at(&i.to_string(), now), Ok(()));
        }
        assert_eq!(off.len(), 0);
        let extreme = RateLimiter::new(u32::MAX, Duration::MAX, 0);
        assert_eq!(extreme.check_at("a", Duration::MAX), Ok(()));
        assert_eq!(extreme.check_at("a", Duration::MAX), Ok(()));
        let strict = RateLimiter::new(0, Duration::MAX, 1);
        assert_eq!(strict.check_at("a", now), Ok(()));
        assert_eq!(strict.check_at("a", now), Err(Duration::MAX - now));
    }

    #[test]
    fn callers_without_a_hook_are_addresses() {
        let at = |s: &str| s.parse::<SocketAddr>().map(peer_caller).unwrap_or_default();
        assert_eq!(at("192.0.2.7:5000"), "192.0.2.7");
        assert_eq!(at("[::ffff:192.0.2.7]:5000"), "192.0.2.7");
        assert_eq!(at("[2001:db8:1:2:3:4:5:6]:80"), "2001:db8:1:2::/64");
        assert_eq!(at("[2001:db8:1:2:ffff::9]:80"), at("[2001:db8:1:2::1]:81"));
    }

    fn shared(bound: &str, hosts: &[&str]) -> Shared {
        let config =
            hosts.iter().fold(TokenServerConfig::new("http://127.0.0.1:1", Secret::new("k")), |c, h| c.allow_host(h));
        let ip: IpAddr = bound.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut ips = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
        let mut names = vec!["localhost".to_owned()];
        if !ip.is_unspecified() {
            ips.push(ip);
        }
        for h in &config.hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => names.push(h.clone()),
            }
        }
        Shared {
            limiter: Arc::new(RateLimiter::new(1, Duration::ZERO, 1)),
            counters: Arc::default(),
            config,
            names,
            ips,
            any_local: ip.is_unspecified(),
        }
    }

    #[test]
    fn hosts_are_checked() {
        let s = shared("192.0.2.1", &["Tokens.Example.com:443", "not a host"]);
        let local: Option<SocketAddr> = "192.0.2.1:8787".parse().ok();
        for ok in ["localhost", "LOCALHOST:1", "127.0.0.1:8787", "[::1]:8787", "192.0.2.1:9", "tokens.example.com"] {
            assert!(s.host_allowed(Some(ok), local), "{ok}");
        }
        for bad in ["evil.example", "192.0.2.2", "tokens.example.com.evil", "", "[::2]", "[::ffff:127.0.0.2]"] {
            assert!(!s.host_allowed(Some(bad), local), "{bad}");
        }
        assert!(!s.host_allowed(None, local), "a missing Host");
        assert!(s.host_allowed(Some("[::ffff:127.0.0.1]:1"), local), "a mapped loopback address");
        // Bound to every interface: the address the connection reached.
        let any = shared("0.0.0.0", &[]);
        let lan: Option<SocketAddr> = "10.1.2.3:8787".parse().ok();
        assert!(any.host_allowed(Some("10.1.2.3:8787"), lan));
        assert!(!any.host_allowed(Some("10.1.2.4:8787"), lan));
        assert!(!any.host_allowed(Some("0.0.0.0"), lan));
    }

    #[test]
    fn debug_shows_no_secret() {
        let client = TokenClient::default().with_fetch_header("Authorization", Secret::new("Bearer TICKET-SECRET"));
        let config = TokenServerConfig::new("http://127.0.0.1:1/?key=KEY-SECRET", Secret::new("KEY-SECRET"))
            .authenticate(|head| head.header("authorization").map(str::to_owned).ok_or(Refusal::unauthorized("no")));
        let config = TokenServerConfig { client, ..config };
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("a hook"), "{shown}");
        let req = http::parse_request(b"POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer HEAD-SECRET\r\n\r\n");
        let req = req.unwrap_or_default();
        let head = RequestHead { req: &req, peer: SocketAddr::from(([127, 0, 0, 1], 1)) };
        assert_eq!(head.header("AUTHORIZATION"), Some("Bearer HEAD-SECRET"));
        assert_eq!((head.method(), head.path(), head.query()), ("POST", "/token", ""));
        let shown = format!("{head:?}");
        assert!(!shown.contains("SECRET") && shown.contains("authorization"), "{shown}");
        let r = Refusal::forbidden("banned");
        assert_eq!((r.status(), r.message()), (403, "banned"));
        assert_eq!(Refusal::unauthorized("").status(), 401);
    }
}
