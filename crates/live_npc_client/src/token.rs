//! Ephemeral tokens for shipping games without shipping the API key (live-protocol.md §1).
//!
//! A game backend holds the API key and mints short-lived tokens (`auth_tokens/...`) with
//! [`mint_token`] (`POST /v1alpha/auth_tokens` on the real service or on a `live-sim`); game
//! clients get a token from the backend ([`fetch_token`], or the plugin's
//! `LiveBackend::TokenServer`) and open sessions on `...BidiGenerateContentConstrained` with it.
//! [`TokenServer`] is such a backend, ready to run (see `examples/token_server.rs`).
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tracing::{debug, info, warn};

use crate::http::{self, HttpError, Url};
use crate::protocol::{AuthToken, CreateAuthTokenRequest, Setup, scrub_secrets};
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
}

impl Default for TokenClient {
    fn default() -> Self {
        TokenClient { timeout: DEFAULT_HTTP_TIMEOUT, extra_root_pem: Vec::new() }
    }
}

impl TokenClient {
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

    /// `POST url` with an empty JSON object: asks a token server (such as [`TokenServer`]) for a
    /// token. The answer is an [`AuthToken`] as the minting method returns it.
    pub async fn fetch(&self, url: &str) -> Result<AuthToken, TokenError> {
        let url = Url::parse(url)?;
        let resp = http::post_json(&url, &[], b"{}", self.timeout, &self.extra_root_pem).await?;
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

/// What each token a [`TokenServer`] mints allows. Times are relative to the request.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPolicy {
    /// Sessions a token may open (0 = unlimited; resumption is free). Default 1.
    pub uses: i32,
    /// The token's lifetime (default: the service's, 30 minutes).
    pub expire_after: Option<Duration>,
    /// How long new sessions may start (default: the service's, 60 s).
    pub new_session_after: Option<Duration>,
    /// A setup the token locks in (`bidiGenerateContentSetup`).
    pub setup: Option<Setup<'static>>,
    /// Which fields of `setup` override the client's (`model,generationConfig.temperature`);
    /// `None` with a setup: the whole setup replaces the client's.
    pub field_mask: Option<String>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy { uses: 1, expire_after: None, new_session_after: None, setup: None, field_mask: None }
    }
}

impl TokenPolicy {
    /// The minting request for a token issued at `now`.
    pub fn request(&self, now: SystemTime) -> CreateAuthTokenRequest {
        CreateAuthTokenRequest {
            uses: Some(self.uses),
            expire_time: self.expire_after.map(|d| format_rfc3339(now + d)),
            new_session_expire_time: self.new_session_after.map(|d| format_rfc3339(now + d)),
            bidi_generate_content_setup: self.setup.clone(),
            field_mask: self.field_mask.clone(),
        }
    }
}

/// What a [`TokenServer`] needs: where to mint, with which key, under which policy.
#[derive(Clone, Debug)]
pub struct TokenServerConfig {
    /// REST base URL of the Live service ([`GEMINI_REST_URL`], or a `live-sim`'s URL).
    pub endpoint: String,
    /// The API key (never leaves the server).
    pub api_key: Secret,
    /// What each token allows.
    pub policy: TokenPolicy,
    /// HTTP settings towards the endpoint.
    pub client: TokenClient,
    /// Requests served at once; more wait (default 64).
    pub max_concurrent: usize,
}

impl TokenServerConfig {
    /// A configuration with the default policy (one use, the service's default lifetimes).
    pub fn new(endpoint: impl Into<String>, api_key: Secret) -> Self {
        TokenServerConfig {
            endpoint: endpoint.into(),
            api_key,
            policy: TokenPolicy::default(),
            client: TokenClient::default(),
            max_concurrent: 64,
        }
    }
}

/// A tiny HTTP server a game backend runs: `POST /token` (or `GET /token`) mints a token from
/// the configured endpoint and answers with it ([`AuthToken`] JSON); every other path is 404.
/// Put it behind your own authentication (players' sessions) before shipping.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    server: ServerTask,
}

impl TokenServer {
    /// Binds `addr` and serves on the current tokio runtime.
    pub async fn start(addr: SocketAddr, config: TokenServerConfig) -> std::io::Result<TokenServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let config = Arc::new(config);
        let server = ServerTask::spawn(|stopped| serve(listener, config, stopped));
        info!("token server: listening on http://{addr}");
        Ok(TokenServer { addr, server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL game clients ask for tokens: `http://ADDR/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Stops serving and waits for the server task (dropping it stops it at once).
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

async fn serve(listener: TcpListener, config: Arc<TokenServerConfig>, mut stop: oneshot::Receiver<()>) {
    let permits = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let config = config.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let _ = tokio::time::timeout(Duration::from_secs(60), answer(tcp, &config)).await;
                    });
                }
                Err(e) => {
                    warn!("token server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn answer(mut tcp: TcpStream, config: &TokenServerConfig) {
    let mut buf = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(10), http::read_head(&mut tcp, &mut buf)).await;
    let Ok(Ok(Some(end))) = head else { return };
    let Some(mut req) = http::parse_request(&buf[..end]) else {
        let _ = http::write_json(&mut tcp, 400, &http::error_body(400, "Not an HTTP request.")).await;
        return;
    };
    let (status, body) = if req.path.trim_end_matches('/') != "/token" {
        (404, http::error_body(404, "Not found: ask POST /token."))
    } else if req.method != "POST" && req.method != "GET" {
        (405, http::error_body(405, "Use POST /token."))
    } else if let Err((status, message)) = http::read_body(&mut tcp, &mut req, &buf[end..]).await {
        (status, http::error_body(status, message))
    } else {
        let request = config.policy.request(SystemTime::now());
        match config.client.mint(&config.endpoint, &config.api_key, &request).await {
            Ok(token) => {
                debug!("token server: minted a token");
                (200, serde_json::to_vec(&token).unwrap_or_default())
            }
            Err(e) => {
                warn!("token server: minting failed: {e}");
                let status = match &e {
                    TokenError::Http { status, .. } if *status == 429 => 429,
                    _ => 502,
                };
                (status, http::error_body(status, &format!("minting failed: {e}")))
            }
        }
    };
    let _ = http::write_json(&mut tcp, status, &body).await;
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
}
