//! Components of a voiced NPC: how it is heard (settings, occlusion), what the game can read
//! (lip-sync), and the voice itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bevy::prelude::*;
use kira::effect::filter::FilterHandle;
use kira::track::SpatialTrackHandle;
use kira::{Decibels, Easing, Mix, Tween};

use super::voice::{VoiceControl, VoiceEvent, VoiceShared, VoiceStats, VoiceStatus};

/// How loudness falls between [`NpcVoiceSettings::min_distance`] and
/// [`NpcVoiceSettings::max_distance`] (kira's attenuation easing: 0 dB at the near distance,
/// −60 dB at the far one, shaped by the curve).
#[derive(Clone, Copy, Debug, PartialEq, Default, Reflect)]
pub enum VoiceAttenuation {
    /// No distance attenuation.
    None,
    /// Linear in decibels.
    #[default]
    Linear,
    /// Stays loud, then falls late (`x^n` on the loudness curve).
    InPowi(i32),
    /// Falls early, then levels off.
    OutPowi(i32),
    /// S-shaped.
    InOutPowi(i32),
}

impl VoiceAttenuation {
    pub(crate) fn easing(self) -> Option<Easing> {
        match self {
            VoiceAttenuation::None => None,
            VoiceAttenuation::Linear => Some(Easing::Linear),
            VoiceAttenuation::InPowi(n) => Some(Easing::InPowi(n)),
            VoiceAttenuation::OutPowi(n) => Some(Easing::OutPowi(n)),
            VoiceAttenuation::InOutPowi(n) => Some(Easing::InOutPowi(n)),
        }
    }
}

/// How one NPC's voice is heard. Optional: NPCs without it use [`Default`].
///
/// `min_distance`, `max_distance` and `attenuation` are fixed when the voice is created (at
/// the start of a conversation); the others apply at once.
#[derive(Component, Clone, Debug, PartialEq, Reflect)]
#[reflect(Component)]
pub struct NpcVoiceSettings {
    /// Full loudness up to this distance (metres).
    pub min_distance: f32,
    /// −60 dB (silence) from this distance.
    pub max_distance: f32,
    /// The loudness curve between the two.
    pub attenuation: VoiceAttenuation,
    /// 0 = the same in both ears, 1 = fully panned by direction (kira's default is 0.75).
    pub spatialization_strength: f32,
    /// Gain of this voice in dB.
    pub volume_db: f32,
    /// Where the mouth is, in the NPC's local space (the voice's position).
    pub mouth_offset: Vec3,
    /// Low-pass cutoff at full occlusion (Hz); open air is 20 kHz.
    pub occluded_cutoff_hz: f32,
    /// Gain at full occlusion, in dB (added to `volume_db`).
    pub occluded_volume_db: f32,
}

impl Default for NpcVoiceSettings {
    fn default() -> Self {
        NpcVoiceSettings {
            min_distance: 1.0,
            max_distance: 30.0,
            attenuation: VoiceAttenuation::Linear,
            spatialization_strength: 0.75,
            volume_db: 0.0,
            mouth_offset: Vec3::ZERO,
            occluded_cutoff_hz: 700.0,
            occluded_volume_db: -12.0,
        }
    }
}

impl NpcVoiceSettings {
    /// Sets the distance range.
    pub fn distances(mut self, min: f32, max: f32) -> Self {
        self.min_distance = min;
        self.max_distance = max;
        self
    }

    /// Sets the attenuation curve.
    pub fn attenuation(mut self, attenuation: VoiceAttenuation) -> Self {
        self.attenuation = attenuation;
        self
    }

    /// Sets the spatialization strength (0–1).
    pub fn spatialization_strength(mut self, strength: f32) -> Self {
        self.spatialization_strength = strength;
        self
    }

    /// The distance range kira accepts (positive, increasing).
    pub(crate) fn sane_distances(&self) -> (f32, f32) {
        let min = if self.min_distance.is_finite() { self.min_distance.max(0.01) } else { 1.0 };
        let max = if self.max_distance.is_finite() { self.max_distance.max(min + 0.01) } else { min + 30.0 };
        (min, max)
    }
}

/// How much of the voice's path to the listener is blocked (0 = open air, 1 = fully occluded).
/// The game sets it from its own raycasts; it drives a low-pass filter and a gain on the
/// voice's track (see [`NpcVoiceSettings::occluded_cutoff_hz`]).
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Reflect)]
#[reflect(Component)]
pub struct NpcOcclusion(pub f32);

/// A coarse mouth shape for lip-sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Reflect)]
pub enum MouthShape {
    /// Silent.
    #[default]
    Closed,
    /// Quiet voiced sound.
    Small,
    /// Loud, dark sound (open vowels).
    Open,
    /// Bright, hissy sound (`s`, `f`, `ee`): lips spread.
    Wide,
}

impl MouthShape {
    /// Classifies a shape from the heard level (RMS, linear), zero crossings per second and
    /// brightness (first-difference energy over energy; ≈ 0.05 for dark vowels, > 0.5 for
    /// hiss).
    pub fn classify(rms: f32, zero_crossings_per_sec: f32, brightness: f32) -> MouthShape {
        let db = 20.0 * rms.max(1e-9).log10();
        if db < -45.0 {
            MouthShape::Closed
        } else if brightness > 0.5 || zero_crossings_per_sec > 4000.0 {
            MouthShape::Wide
        } else if db > -24.0 {
            MouthShape::Open
        } else {
            MouthShape::Small
        }
    }
}

/// What the NPC's voice sounds like *right now* (what the listener hears, not what was
/// received), updated every frame from the audio thread's meters. Zero while audio is
/// buffered but not yet playing. Present on NPCs whose voice has been created.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Reflect)]
#[reflect(Component)]
pub struct NpcLipSync {
    /// Mouth opening 0–1: the smoothed RMS level mapped from −50..−10 dBFS.
    pub level: f32,
    /// Smoothed RMS (linear, full scale = 1).
    pub rms: f32,
    /// Peak with a 150 ms release (linear).
    pub peak: f32,
    /// Zero crossings per second (a proxy for pitch and hiss), while voiced.
    pub zero_crossings_per_sec: f32,
    /// High-frequency tilt: energy of the sample-to-sample difference over the energy.
    pub brightness: f32,
    /// A coarse mouth shape from the above.
    pub mouth: MouthShape,
    /// Whether the voice is being heard.
    pub speaking: bool,
}

impl NpcLipSync {
    /// Reads a voice's meters.
    pub(crate) fn read(shared: &VoiceShared) -> NpcLipSync {
        let rms = shared.rms.load();
        let zcr = shared.zcr.load();
        let brightness = shared.tilt.load();
        let db = 20.0 * rms.max(1e-9).log10();
        NpcLipSync {
            level: ((db + 50.0) / 40.0).clamp(0.0, 1.0),
            rms,
            peak: shared.peak.load(),
            zero_crossings_per_sec: zcr,
            brightness,
            mouth: MouthShape::classify(rms, zcr, brightness),
            speaking: shared.status() == VoiceStatus::Playing,
        }
    }
}

/// An NPC's voice: a streaming kira sound on its own spatial sub-track, fed by the session.
/// Inserted by the audio plugin when a conversation opens (with a working output); removing it
/// (or despawning the NPC) removes the track.
#[derive(Component)]
pub struct NpcVoice {
    pub(crate) shared: Arc<VoiceShared>,
    pub(crate) track: SpatialTrackHandle,
    pub(crate) filter: FilterHandle,
    /// Last occlusion and volume sent to kira, to send only changes.
    pub(crate) applied: Option<(f32, f32, f32)>,
}

impl std::fmt::Debug for NpcVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpcVoice").field("status", &self.status()).field("stats", &self.stats()).finish()
    }
}

impl NpcVoice {
    /// A thread-safe handle to duck or flush this voice from any thread.
    pub fn control(&self) -> VoiceControl {
        VoiceControl { shared: self.shared.clone() }
    }

    /// Where playback is.
    pub fn status(&self) -> VoiceStatus {
        self.shared.status()
    }

    /// Whether the voice is being heard right now.
    pub fn is_playing(&self) -> bool {
        self.status() == VoiceStatus::Playing
    }

    /// The voice's counters.
    pub fn stats(&self) -> VoiceStats {
        self.control().stats()
    }

    /// Audio queued and not yet heard.
    pub fn buffered(&self) -> Duration {
        self.control().buffered()
    }

    /// The lip-sync meters now.
    pub fn lip_sync(&self) -> NpcLipSync {
        NpcLipSync::read(&self.shared)
    }

    /// Whether the session has gone and everything queued has been played.
    pub(crate) fn is_spent(&self) -> bool {
        self.shared.producer_closed.load(Ordering::Acquire)
            && self.status() == VoiceStatus::Idle
            && self.shared.written.load(Ordering::Acquire) <= self.shared.read.load(Ordering::Acquire)
    }

    pub(crate) fn pop_event(&self) -> Option<VoiceEvent> {
        self.shared.events.pop()
    }

    /// Moves the voice (world space), gliding over `glide`.
    pub fn set_position(&mut self, position: Vec3, glide: Duration) {
        self.track.set_position(super::voice::mint_vec(position), Tween { duration: glide, ..Default::default() });
    }

    /// Applies `settings`' strength and volume and an occlusion amount (0–1). Only changes
    /// are sent to the audio thread.
    pub fn apply(&mut self, settings: &NpcVoiceSettings, occlusion: f32) {
        let occlusion = if occlusion.is_finite() { occlusion.clamp(0.0, 1.0) } else { 0.0 };
        let strength = settings.spatialization_strength.clamp(0.0, 1.0);
        let volume = settings.volume_db + occlusion * settings.occluded_volume_db;
        let next = (occlusion, volume, strength);
        if self.applied == Some(next) {
            return;
        }
        let tween = Tween { duration: Duration::from_millis(50), ..Default::default() };
        let (was_occlusion, was_volume, was_strength) = self.applied.unwrap_or((-1.0, f32::NAN, f32::NAN));
        if was_occlusion != occlusion {
            let open: f64 = 20_000.0;
            let closed = f64::from(settings.occluded_cutoff_hz.clamp(20.0, 20_000.0));
            // Log-frequency interpolation: equal steps of occlusion sound like equal steps.
            let cutoff = (open.ln() + (closed.ln() - open.ln()) * f64::from(occlusion)).exp();
            // The filter is unstable at and above Nyquist.
            let nyquist_safe = 0.45 * f64::from(self.shared.out_rate.load(Ordering::Relaxed).max(8_000));
            let cutoff = cutoff.min(nyquist_safe);
            self.filter.set_cutoff(cutoff, tween);
            // Fully dry in open air (the filter is not quite transparent near Nyquist).
            self.filter.set_mix(Mix((occlusion * 20.0).min(1.0)), tween);
        }
        if was_volume != volume {
            self.track.set_volume(Decibels(volume.max(-60.0)), tween);
        }
        if was_strength != strength {
            self.track.set_spatialization_strength(strength, tween);
        }
        self.applied = Some(next);
    }
}
