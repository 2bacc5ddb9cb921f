//! The embedded Live API simulator: a real WebSocket server on loopback speaking the Gemini
//! Live protocol (`BidiGenerateContent`), with a deterministic "model", a synthetic voice,
//! server-side voice-activity detection, tool calls, barge-in, `goAway`, session resumption and
//! fault injection. It is what the test suite talks to, the default backend when no API key is
//! set, and the `live-sim` program. Behaviour and differences from the real service are
//! documented in `docs/SIMULATOR.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), live_npc_sim::SimError> {
//! use live_npc_sim::LiveSim;
//!
//! let sim = LiveSim::builder().pace(0.0).seed(7).start().await?;
//! let url = sim.url("v1beta"); // ws://127.0.0.1:PORT/ws/google.ai.generativelanguage.v1beta...
//! # let _ = url;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod brain;
mod conn;
mod error;
mod espeak;
mod handshake;
mod metrics;
mod output;
pub mod script;
mod session;
mod shared;
mod store;
mod stream;
mod tls;
mod tokens;
pub mod tools;
pub mod vad;
pub mod voice;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use live_npc_client::server::ServerTask;
use tracing::{info, warn};

pub use error::SimError;
pub use espeak::VoiceEngine;
pub use metrics::{SimMetrics, TimingStats};
pub use script::{Fault, FaultAction, Rule, Scenario, ScriptError, ScriptedCall};
pub use session::DEFAULT_VOICE;
pub use shared::MODELS;
pub use tokens::{TOKEN_EXPIRED, TOKEN_NEW_SESSIONS_EXPIRED, TOKEN_USED_UP};

use metrics::Metrics;
use shared::{Shared, SimConfig};
use store::Store;
use stream::Io;
use tls::CaFile;
use tokens::TokenStore;

/// Largest accepted pace (100 = a hundred times slower than real time).
const MAX_PACE: f64 = 100.0;
/// Longest accepted lifetime, notice, send-ahead or handle lifetime (30 days).
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Configures and starts a [`LiveSim`]. Every setting has a default that behaves like the
/// real service.
#[derive(Clone, Debug)]
pub struct LiveSimBuilder {
    addr: SocketAddr,
    tls: bool,
    handle_ttl: Duration,
    config: SimConfig,
}

impl Default for LiveSimBuilder {
    fn default() -> Self {
        LiveSimBuilder {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: false,
            handle_ttl: Duration::from_secs(2 * 3600),
            config: SimConfig {
                pace: 1.0,
                seed: 0,
                api_key: None,
                scenario: None,
                lifetime: Duration::from_secs(600),
                go_away_notice: Duration::from_secs(50),
                strict: true,
                chunk: Duration::from_millis(40),
                lead: Duration::from_millis(200),
                limit_audio: Duration::from_secs(15 * 60),
                limit_video: Duration::from_secs(2 * 60),
                voice_engine: VoiceEngine::Builtin,
            },
        }
    }
}

impl LiveSimBuilder {
    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Speed of the model's playback clock: 1 = real time (default), 0.1 = ten times faster,
    /// 0 = unpaced (everything is sent at once and speaking ends with the last chunk).
    pub fn pace(mut self, pace: f64) -> Self {
        self.config.pace = pace;
        self
    }

    /// Seed of the model's choices and voice (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Require this API key (default: any key or none is accepted). A missing key closes the
    /// session with 1008, a wrong one with 1007, when the client sends `setup`.
    pub fn api_key(mut self, key: Option<String>) -> Self {
        self.config.api_key = key;
        self
    }

    /// Scripted replies, tool calls and faults.
    pub fn script(mut self, scenario: Scenario) -> Self {
        self.config.scenario = Some(scenario);
        self
    }

    /// Serve `wss://` with a generated certificate (see [`LiveSim::ca_path`]).
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// How long a connection lasts before it is closed with 1011 (default 10 minutes).
    pub fn connection_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.lifetime = lifetime;
        self
    }

    /// How long before the end of a connection `goAway` is sent (default 50 s; not scaled by
    /// the pace).
    pub fn go_away_notice(mut self, notice: Duration) -> Self {
        self.config.go_away_notice = notice;
        self
    }

    /// Reject unknown fields and enum values as the real server does (default `true`).
    pub fn strict(mut self, strict: bool) -> Self {
        self.config.strict = strict;
        self
    }

    /// Duration of each audio chunk, 20–100 ms (default 40 ms).
    pub fn chunk_duration(mut self, chunk: Duration) -> Self {
        self.config.chunk = chunk;
        self
    }

    /// How far ahead of the playback clock audio is sent, before pacing (default 200 ms).
    pub fn send_ahead(mut self, lead: Duration) -> Self {
        self.config.lead = lead;
        self
    }

    /// How long a resumption handle stays valid (default 2 hours).
    pub fn handle_ttl(mut self, ttl: Duration) -> Self {
        self.handle_ttl = ttl;
        self
    }

    /// Session-length limits of sessions without `contextWindowCompression`: `audio` for
    /// audio-only sessions (default 15 minutes), `video` once the client has sent video (default
    /// 2 minutes), counted from the session's start across its connections (not scaled by the
    /// pace). At the limit the session ends: close 1011 `Deadline expired before operation could
    /// complete.`, and its handles stop working.
    pub fn session_limits(mut self, audio: Duration, video: Duration) -> Self {
        self.config.limit_audio = audio;
        self.config.limit_video = video;
        self
    }

    /// The model's voice: the built-in formant synthesizer (default, what tests use) or espeak-ng
    /// when installed (intelligible; falls back to the built-in voice when it cannot run).
    pub fn voice_engine(mut self, engine: VoiceEngine) -> Self {
        self.config.voice_engine = engine;
        self
    }

    fn validate(&self) -> Result<(), SimError> {
        let c = &self.config;
        if !c.pace.is_finite() || !(0.0..=MAX_PACE).contains(&c.pace) {
            return Err(SimError::Config(format!("pace must be between 0 and {MAX_PACE}, not {}", c.pace)));
        }
        for (what, d) in [
            ("connection lifetime", c.lifetime),
            ("go-away notice", c.go_away_notice),
            ("send-ahead", c.lead),
            ("handle lifetime", self.handle_ttl),
            ("audio session limit", c.limit_audio),
            ("video session limit", c.limit_video),
        ] {
            if d > MAX_DURATION {
                return Err(SimError::Config(format!("the {what} must be at most 30 days, not {d:?}")));
            }
        }
        if !(Duration::from_millis(20)..=Duration::from_millis(100)).contains(&c.chunk) {
            return Err(SimError::Config(format!("chunk duration must be 20–100 ms, not {:?}", c.chunk)));
        }
        if c.lifetime.is_zero() || c.limit_audio.is_zero() || c.limit_video.is_zero() {
            return Err(SimError::Config("the connection lifetime and the session limits must be positive".to_owned()));
        }
        if let Some(s) = &c.scenario {
            s.validate().map_err(|e| SimError::Config(e.to_string()))?;
        }
        Ok(())
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<LiveSim, SimError> {
        self.validate()?;
        let listener =
            TcpListener::bind(self.addr).await.map_err(|source| SimError::Bind { addr: self.addr, source })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: self.addr, source })?;
        let (acceptor, ca) = if self.tls {
            let setup = tls::generate()?;
            let ca = CaFile::write(setup.ca_pem, addr.port())?;
            (Some(setup.acceptor), Some(ca))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            config: self.config,
            store: Store::new(self.handle_ttl),
            tokens: TokenStore::default(),
            metrics: Metrics::default(),
            connections: AtomicU64::new(0),
            clock_offset_ms: AtomicU64::new(0),
        });
        let server = ServerTask::spawn(|stopped| accept_loop(listener, shared.clone(), acceptor, stopped));
        let sim = LiveSim { addr, ca, shared, server, thread: None };
        info!("live-sim: listening on {}", sim.base_url());
        Ok(sim)
    }

    /// Starts on a runtime of its own, in a background thread: for callers without tokio
    /// (Bevy systems, plain tests). Dropping the [`LiveSim`] stops it.
    pub fn start_in_background(self) -> Result<LiveSim, SimError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("live-sim-worker")
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("live-sim".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match self.start().await {
                        Ok(mut sim) => {
                            let task = sim.server.take_task();
                            let _ = tx.send(Ok(sim));
                            if let Some(task) = task {
                                let _ = task.await;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(SimError::Runtime)?;
        let mut sim =
            rx.recv().map_err(|_| SimError::Runtime(std::io::Error::other("the simulator thread ended early")))??;
        sim.thread = Some(thread);
        Ok(sim)
    }
}

/// A running simulator. Dropping it stops the server and ends every connection.
#[derive(Debug)]
pub struct LiveSim {
    addr: SocketAddr,
    ca: Option<CaFile>,
    shared: Arc<Shared>,
    server: ServerTask,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveSim {
    /// A builder with the default settings.
    pub fn builder() -> LiveSimBuilder {
        LiveSimBuilder::default()
    }

    /// Starts `builder` on a background runtime (see [`LiveSimBuilder::start_in_background`]).
    pub fn start_in_background(builder: LiveSimBuilder) -> Result<LiveSim, SimError> {
        builder.start_in_background()
    }

    /// The base URL, `ws://127.0.0.1:PORT` (or `wss://...`), with no path and no trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca.is_some() { "wss" } else { "ws" };
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The full URL of the service for API `version` (`v1beta`), without credentials.
    pub fn url(&self, version: &str) -> String {
        format!("{}{}", self.base_url(), live_npc_client::protocol::ws_path(version, false))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) to trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|c| c.pem.as_str())
    }

    /// The file holding [`LiveSim::ca_pem`], when serving TLS (removed when the simulator is
    /// dropped).
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(CaFile::path)
    }

    /// How many WebSocket connections have been accepted so far (token requests do not count).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The REST base URL for minting tokens: `http://127.0.0.1:PORT` (or `https://`), to which
    /// `/v1alpha/auth_tokens` is appended.
    pub fn rest_url(&self) -> String {
        let base = self.base_url();
        match base.strip_prefix("wss://") {
            Some(rest) => format!("https://{rest}"),
            None => format!("http://{}", base.trim_start_matches("ws://")),
        }
    }

    /// A snapshot of the counters: connections, sessions, messages, bytes, turns, timing, tokens.
    pub fn metrics(&self) -> SimMetrics {
        self.shared.metrics.snapshot(self.connections())
    }

    /// Moves the simulator's wall clock forward by `by` (for tests of token expiry; the
    /// playback clock, lifetimes and session limits are not affected).
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .shared
            .clock_offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(ms)));
    }

    /// Stops accepting, ends every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

impl Drop for LiveSim {
    fn drop(&mut self) {
        // Stop (and abort) the accept loop first: a background thread ends with it.
        drop(std::mem::take(&mut self.server));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut stop: oneshot::Receiver<()>,
) {
    // Dropping the set (when the loop ends or the task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(tcp, shared.clone(), tls.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    warn!("live-sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if joined.is_err_and(|e| e.is_panic()) {
                    warn!("live-sim: a connection task panicked; other sessions go on");
                }
            }
        }
    }
}

async fn connection(tcp: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let stream: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(acceptor) => match timeout(conn::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => return tracing::debug!("live-sim: TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!("live-sim: TLS handshake timed out"),
        },
    };
    conn::serve(stream, shared).await;
}
