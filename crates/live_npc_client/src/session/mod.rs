//! The Live session client: one task per conversation on a tokio runtime shared by all
//! sessions. No Bevy here; it talks through channels.
//!
//! - Commands in ([`SessionCommand`]) over a bounded channel, sent with `try_send`.
//! - Microphone audio through a [`MicHandle`]: cloneable, thread-safe, never blocks; when the
//!   session falls behind, the oldest chunk is dropped and counted.
//! - Events out ([`SessionEvent`]) over a bounded crossbeam channel. When it is full the task
//!   stops reading the socket until there is room; events are never dropped.
//! - Model audio goes straight to the caller's [`AudioSink`], decoded once into a reused buffer.
//!
//! The task survives `goAway` (it holds new input, waits for a resumable handle, resumes on a new
//! connection and replays the input) and drops (jittered exponential backoff, resumption). It
//! does not reconnect after errors retrying cannot fix: 1007, 1008 other than `session not
//! found`, quota.
//!
//! ```no_run
//! use live_npc_client::protocol::Setup;
//! use live_npc_client::session::{Auth, LiveRuntime, NullSink, SessionConfig, SessionEvent};
//!
//! let runtime = LiveRuntime::new().unwrap();
//! let setup = Setup { model: "models/gemini-3.8-live".into(), ..Default::default() };
//! let session = runtime.spawn(SessionConfig::new("ws://127.0.0.1:9000", Auth::None, setup), NullSink);
//! session.say("Hello!").unwrap();
//! while let Some(event) = session.recv_timeout(std::time::Duration::from_secs(10)) {
//!     if let SessionEvent::OutputTranscript { text, .. } = event {
//!         print!("{text}");
//!     }
//! }
//! ```

mod backend;
mod config;
mod handle;
mod task;
mod transport;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use crate::secret::Secret;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use crate::tls::tls_config;
pub use backend::{BackendEnv, BackendPlan, BackendSpec, resolve_spec, resolve_spec_from_env};
pub use config::{
    Auth, DEFAULT_MODEL, ENV_API_KEY, ENV_ENDPOINT, ENV_MODEL, EndpointSource, GEMINI_BASE_URL, ModelCapabilities,
    ResolvedBackend, SessionConfig, TokenFuture, TokenProvider, normalize_base, resolve_backend,
    resolve_backend_from_env, resolve_model, session_url,
};
pub use handle::{
    AudioSink, ConnectionState, MicHandle, NullSink, SendError, SessionCommand, SessionEvent, SessionHandle,
    SessionMetrics, SessionPeer, TextMode,
};

/// The tokio runtime all sessions share. Dropping it closes every session.
pub struct LiveRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    live: Arc<AtomicUsize>,
    closers: Mutex<Vec<mpsc::WeakSender<SessionCommand>>>,
}

impl std::fmt::Debug for LiveRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRuntime").field("live_sessions", &self.live_sessions()).finish()
    }
}

/// Decrements the live-session count when a task ends, however it ends.
struct LiveGuard(Arc<AtomicUsize>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LiveRuntime {
    /// A runtime with two worker threads (network work is light; the game needs the cores).
    pub fn new() -> std::io::Result<Self> {
        Self::with_workers(2)
    }

    /// A runtime with `workers` threads.
    pub fn with_workers(workers: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("live-npc-net")
            .enable_all()
            .build()?;
        Ok(LiveRuntime { runtime: Some(runtime), live: Arc::default(), closers: Mutex::new(Vec::new()) })
    }

    /// The tokio handle, for spawning related work (e.g. the embedded simulator).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// Starts a session task. Never blocks; connection progress arrives as events.
    pub fn spawn(&self, config: SessionConfig, sink: impl AudioSink) -> SessionHandle {
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity.max(1));
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(config.event_capacity.max(1));
        let metrics = Arc::new(SessionMetrics::default());
        let mic = MicHandle::new(config.mic_capacity, metrics.clone());
        let tls = prebuilt_tls(&config);
        let task =
            task::SessionTask::new(config, cmd_rx, ev_tx, mic.queue.clone(), Box::new(sink), metrics.clone(), tls);
        if let Ok(mut closers) = self.closers.lock() {
            closers.retain(|w| w.strong_count() > 0);
            closers.push(cmd_tx.downgrade());
        }
        let join = self.runtime.as_ref().map(|rt| {
            self.live.fetch_add(1, Ordering::AcqRel);
            let guard = LiveGuard(self.live.clone());
            rt.spawn(async move {
                let _guard = guard;
                task.run().await;
            })
        });
        SessionHandle { commands: cmd_tx, events: ev_rx, mic, metrics, task: join, peer: None }
    }

    /// Sessions whose task is still running.
    pub fn live_sessions(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Closes every session (clean close frames where the peer answers in time), then stops
    /// the runtime. Waits at most `timeout` in all.
    pub fn shutdown(mut self, timeout: Duration) {
        self.shutdown_inner(timeout);
    }

    fn shutdown_inner(&mut self, timeout: Duration) {
        let start = Instant::now();
        if let Ok(closers) = self.closers.lock() {
            for c in closers.iter().filter_map(mpsc::WeakSender::upgrade) {
                let _ = c.try_send(SessionCommand::Close);
            }
        }
        let grace = timeout / 2;
        while self.live_sessions() > 0 && start.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(timeout.saturating_sub(start.elapsed()));
        }
    }
}

impl Drop for LiveRuntime {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.shutdown_inner(Duration::from_millis(500));
        }
    }
}

#[cfg(feature = "tls")]
fn prebuilt_tls(config: &SessionConfig) -> Option<crate::tls::TlsConnector> {
    // Built per session only when needed; errors surface from the task as typed errors.
    if config.base_url.starts_with("wss://") { tls_config(&config.extra_root_pem).ok() } else { None }
}

#[cfg(not(feature = "tls"))]
fn prebuilt_tls(_config: &SessionConfig) -> Option<crate::tls::TlsConnector> {
    None
}
