//! What every connection of one simulator shares: its settings, the resumption store, the
//! token store and the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::espeak::VoiceEngine;
use crate::metrics::Metrics;
use crate::script::Scenario;
use crate::store::Store;
use crate::tokens::TokenStore;

/// The Live model ids the simulator accepts (with or without `models/`), live-protocol.md §7.
pub const MODELS: &[&str] = &[
    "gemini-3.8-live",
    "gemini-3.8-live-extended-thinking",
    "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-preview-09-2025",
];

/// Settings shared by every connection.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub pace: f64,
    pub seed: u64,
    pub api_key: Option<String>,
    pub scenario: Option<Scenario>,
    pub lifetime: Duration,
    pub go_away_notice: Duration,
    pub strict: bool,
    pub chunk: Duration,
    pub lead: Duration,
    /// Session length without `contextWindowCompression`: audio only.
    pub limit_audio: Duration,
    /// Session length without `contextWindowCompression`: once video has been sent.
    pub limit_video: Duration,
    pub voice_engine: VoiceEngine,
}

/// State shared by the connections of one simulator.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub store: Store,
    pub tokens: TokenStore,
    pub metrics: Metrics,
    pub(crate) connections: AtomicU64,
    /// Milliseconds the token clock runs ahead of the system clock (`LiveSim::advance_clock`).
    pub(crate) clock_offset_ms: AtomicU64,
}

impl Shared {
    /// The simulator's wall clock (token times): the system clock plus any test offset.
    pub fn wall_now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Counts a new WebSocket connection; returns its number (1-based).
    pub fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("connections", &self.connections).finish_non_exhaustive()
    }
}
