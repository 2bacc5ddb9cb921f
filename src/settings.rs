//! The plugin's run-time settings (one declaration: the plugin's builder writes them, the
//! resource holds them) and its diagnostic paths.

use std::time::Duration;

use bevy::prelude::*;

use crate::session::{DEFAULT_MODEL, resolve_model};

/// The plugin's settings, as a resource (change them at run time).
/// [`LiveNpcPlugin`](crate::plugin::LiveNpcPlugin) holds one and reads and writes it through
/// `Deref`.
#[derive(Resource, Clone, Debug, Reflect)]
#[reflect(Resource)]
pub struct LiveNpcSettings {
    /// Model id as `models/{id}`: at start-up `LIVE_NPC_MODEL`, else the plugin's `model`, else
    /// the newest stable Live model.
    pub model: String,
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
    /// Session events handled per NPC per frame (the rest wait for the next frame; at least 1).
    pub events_per_frame: usize,
}

impl Default for LiveNpcSettings {
    fn default() -> Self {
        LiveNpcSettings {
            model: format!("models/{DEFAULT_MODEL}"),
            engage_radius: 4.0,
            idle_timeout: Duration::from_secs(120),
            max_sessions: 4,
            auto_engage: true,
            facing_angle_deg: 45.0,
            events_per_frame: 256,
        }
    }
}

impl LiveNpcSettings {
    /// These settings as the app runs them: the model resolved (`LIVE_NPC_MODEL` >
    /// `configured` > default), at least one event per frame.
    pub fn resolved(&self, configured_model: Option<&str>) -> LiveNpcSettings {
        LiveNpcSettings {
            model: resolve_model(configured_model),
            events_per_frame: self.events_per_frame.max(1),
            ..self.clone()
        }
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
