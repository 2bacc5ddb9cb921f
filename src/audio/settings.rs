//! The timing of every voice's jitter buffer.

use std::time::Duration;

use bevy::prelude::*;

/// Timing of every voice's jitter buffer. A resource; changes apply to voices at once
/// (pre-buffer) or to the next conversation (the rest).
#[derive(Resource, Clone, Debug, PartialEq, Reflect)]
#[reflect(Resource)]
pub struct NpcAudioSettings {
    /// Audio queued before a turn starts playing (and again after a buffer underrun). Network
    /// jitter up to about this much causes no gap.
    pub prebuffer: Duration,
    /// Fade-out of a flush (barge-in), also the fade-in after a gap. At most one audio block
    /// (128 frames) is used.
    pub flush_fade: Duration,
    /// A turn whose audio stops arriving for this long counts as ended (the session broke
    /// off without ending the turn).
    pub stall_timeout: Duration,
    /// Most audio queued per voice; more is dropped and counted. Fixed at voice creation.
    pub max_buffered: Duration,
}

impl Default for NpcAudioSettings {
    fn default() -> Self {
        NpcAudioSettings {
            prebuffer: Duration::from_millis(60),
            flush_fade: Duration::from_millis(2),
            stall_timeout: Duration::from_millis(1500),
            max_buffered: Duration::from_secs(30),
        }
    }
}
