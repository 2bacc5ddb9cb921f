//! The plugin's own kira `AudioManager` (a sound card or the offline backend), its listener,
//! voice creation, and the echo reference tap on the final mix.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use kira::backend::cpal::CpalBackend;
use kira::effect::filter::FilterBuilder;
use kira::effect::{Effect, EffectBuilder};
use kira::info::Info;
use kira::listener::ListenerHandle;
use kira::track::{MainTrackBuilder, SpatialTrackBuilder, SpatialTrackHandle};
use kira::{AudioManager, AudioManagerSettings, Decibels, Frame, Mix, ResourceLimitReached, Tween};
use rtrb::{Consumer, Producer, RingBuffer};

use super::components::{NpcVoice, NpcVoiceSettings};
use super::offline::{OfflineBackend, OfflineOutput};
use super::settings::NpcAudioSettings;
use super::voice::{VoiceShared, VoiceSink, VoiceSound, VoiceSoundData, VoiceTiming, voice_pair};
use super::voice::{mint_quat, mint_vec};
use crate::npc::LiveNpc;
use crate::protocol::Modality;
use crate::schedule::AudioSinkFactory;
use crate::session::{AudioSink, NullSink};

/// Where the NPC voices go.
#[derive(Clone, Debug, Default)]
pub enum AudioBackendChoice {
    /// The default output device. Without one: one warning, and NPCs talk in text only.
    #[default]
    Device,
    /// Rendered in memory by an [`OfflineOutput`] (tests, headless programs, WAV recording).
    Offline(OfflineOutput),
    /// No audio output (text only), without a warning.
    Disabled,
}

/// Whether the plugin's audio output works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioStatus {
    /// Voices play at this output rate.
    Running {
        /// Output sample rate (Hz).
        sample_rate: u32,
    },
    /// No usable output device (or the offline backend failed); NPCs talk in text only.
    Unavailable(String),
    /// Turned off by [`AudioBackendChoice::Disabled`].
    Disabled,
}

enum Manager {
    Device(AudioManager<CpalBackend>),
    Offline(AudioManager<OfflineBackend>),
}

impl Manager {
    fn add_listener(&mut self) -> Result<ListenerHandle, ResourceLimitReached> {
        let (p, q) = (mint_vec(Vec3::ZERO), mint_quat(Quat::IDENTITY));
        match self {
            Manager::Device(m) => m.add_listener(p, q),
            Manager::Offline(m) => m.add_listener(p, q),
        }
    }

    fn add_spatial_sub_track(
        &mut self,
        listener: &ListenerHandle,
        position: Vec3,
        builder: SpatialTrackBuilder,
    ) -> Result<SpatialTrackHandle, ResourceLimitReached> {
        match self {
            Manager::Device(m) => m.add_spatial_sub_track(listener, mint_vec(position), builder),
            Manager::Offline(m) => m.add_spatial_sub_track(listener, mint_vec(position), builder),
        }
    }
}

/// Shared between the echo tap (audio thread) and its reader.
#[derive(Debug, Default)]
struct EchoShared {
    /// Written only once someone has taken the reference.
    enabled: AtomicBool,
    dropped: AtomicU64,
    frames: AtomicU64,
    rate: AtomicU32,
}

/// An effect on kira's main track that copies the final mix (mono) into a ring.
struct EchoTap {
    ring: Producer<f32>,
    shared: Arc<EchoShared>,
}

impl Effect for EchoTap {
    fn init(&mut self, sample_rate: u32, _internal_buffer_size: usize) {
        self.shared.rate.store(sample_rate, Ordering::Relaxed);
    }

    fn on_change_sample_rate(&mut self, sample_rate: u32) {
        self.shared.rate.store(sample_rate, Ordering::Relaxed);
    }

    fn process(&mut self, input: &mut [Frame], _dt: f64, _info: &Info) {
        self.shared.frames.fetch_add(input.len() as u64, Ordering::Relaxed);
        if !self.shared.enabled.load(Ordering::Relaxed) || self.ring.is_abandoned() {
            return;
        }
        let n = input.len().min(self.ring.slots());
        if n > 0
            && let Ok(chunk) = self.ring.write_chunk_uninit(n)
        {
            // What the renderer outputs: kira clamps each channel after the main track.
            chunk.fill_from_iter(input[..n].iter().map(|f| (f.left.clamp(-1.0, 1.0) + f.right.clamp(-1.0, 1.0)) * 0.5));
        }
        if n < input.len() {
            self.shared.dropped.fetch_add((input.len() - n) as u64, Ordering::Relaxed);
        }
    }
}

struct EchoTapBuilder(EchoTap);

impl EffectBuilder for EchoTapBuilder {
    type Handle = ();

    fn build(self) -> (Box<dyn Effect>, Self::Handle) {
        (Box::new(self.0), ())
    }
}

/// A voice created by the sink factory, waiting for the game thread to give it a track.
pub(crate) struct PendingVoice {
    pub(crate) entity: Entity,
    pub(crate) sound: VoiceSound,
    pub(crate) shared: Arc<VoiceShared>,
}

/// Jitter-buffer timing read by the sink factory (updated when [`NpcAudioSettings`] changes).
#[derive(Debug)]
pub(crate) struct FactoryConfig {
    prebuffer_us: AtomicU64,
    fade_us: AtomicU64,
    stall_us: AtomicU64,
}

impl FactoryConfig {
    fn new(settings: &NpcAudioSettings) -> Self {
        let c =
            FactoryConfig { prebuffer_us: AtomicU64::new(0), fade_us: AtomicU64::new(0), stall_us: AtomicU64::new(0) };
        c.set(settings);
        c
    }

    pub(crate) fn set(&self, s: &NpcAudioSettings) {
        let us = |d: Duration| d.as_micros().min(u64::MAX as u128) as u64;
        self.prebuffer_us.store(us(s.prebuffer), Ordering::Relaxed);
        self.fade_us.store(us(s.flush_fade).max(100), Ordering::Relaxed);
        self.stall_us.store(us(s.stall_timeout), Ordering::Relaxed);
    }

    fn timing(&self) -> VoiceTiming {
        let d = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        VoiceTiming { prebuffer: d(&self.prebuffer_us), fade: d(&self.fade_us), stall_timeout: d(&self.stall_us) }
    }
}

/// The NPC voices' audio output: the plugin's own kira `AudioManager` (separate from any other
/// audio library's), its listener, and the echo reference. A resource.
#[derive(Resource)]
pub struct NpcAudioOutput {
    manager: Option<Manager>,
    listener: Option<ListenerHandle>,
    status: AudioStatus,
    sample_rate: u32,
    offline: Option<OfflineOutput>,
    echo: Mutex<Option<Consumer<f32>>>,
    echo_shared: Arc<EchoShared>,
    pending_tx: Sender<PendingVoice>,
    pub(crate) pending_rx: Receiver<PendingVoice>,
    pub(crate) config: Arc<FactoryConfig>,
    ring_capacity: usize,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for NpcAudioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpcAudioOutput").field("status", &self.status).field("offline", &self.offline).finish()
    }
}

/// Voices waiting for a track, at most (the factory refuses more and counts them).
const PENDING_VOICES: usize = 64;

impl NpcAudioOutput {
    /// Opens the output. A missing device is not an error: the output is then unavailable
    /// (one warning) and sessions get text-only sinks.
    pub fn new(backend: &AudioBackendChoice, settings: &NpcAudioSettings) -> Self {
        let echo_shared = Arc::new(EchoShared::default());
        let (pending_tx, pending_rx) = crossbeam_channel::bounded(PENDING_VOICES);
        let mut out = NpcAudioOutput {
            manager: None,
            listener: None,
            status: AudioStatus::Disabled,
            sample_rate: 48_000,
            offline: None,
            echo: Mutex::new(None),
            echo_shared: echo_shared.clone(),
            pending_tx,
            pending_rx,
            config: Arc::new(FactoryConfig::new(settings)),
            ring_capacity: 0,
            refused: Arc::new(AtomicU64::new(0)),
        };
        let rate_guess = match backend {
            AudioBackendChoice::Offline(o) => o.sample_rate(),
            _ => 48_000,
        };
        // One second of the mix for the echo canceller to read from.
        let (echo_tx, echo_rx) = RingBuffer::new(rate_guess.max(8_000) as usize);
        let main = MainTrackBuilder::new().with_effect(EchoTapBuilder(EchoTap { ring: echo_tx, shared: echo_shared }));
        let manager = match backend {
            AudioBackendChoice::Disabled => {
                debug!("live npc audio: disabled; NPCs talk in text only");
                return out;
            }
            AudioBackendChoice::Device => AudioManager::<CpalBackend>::new(AudioManagerSettings {
                main_track_builder: main,
                ..Default::default()
            })
            .map(Manager::Device)
            .map_err(|e| format!("no audio output device ({e})")),
            AudioBackendChoice::Offline(o) => {
                out.offline = Some(o.clone());
                AudioManager::<OfflineBackend>::new(AudioManagerSettings {
                    main_track_builder: main,
                    capacities: Default::default(),
                    internal_buffer_size: 128,
                    backend_settings: o.clone(),
                })
                .map(Manager::Offline)
                .map_err(|e| format!("offline audio output: {e}"))
            }
        };
        let mut manager = match manager {
            Ok(m) => m,
            Err(reason) => {
                warn!("live npc audio: {reason}; NPC voices are off, NPCs talk in text only");
                out.status = AudioStatus::Unavailable(reason);
                return out;
            }
        };
        let listener = match manager.add_listener() {
            Ok(l) => l,
            Err(e) => {
                warn!("live npc audio: could not create the listener ({e}); NPCs talk in text only");
                out.status = AudioStatus::Unavailable(e.to_string());
                return out;
            }
        };
        let sample_rate = match &manager {
            Manager::Offline(_) => rate_guess,
            // kira reports the device rate to effects when the stream starts.
            Manager::Device(_) => match out.echo_shared.rate.load(Ordering::Relaxed) {
                0 => 48_000,
                r => r,
            },
        };
        out.sample_rate = sample_rate;
        out.ring_capacity = (settings.max_buffered.as_secs_f64() * f64::from(sample_rate)) as usize;
        out.status = AudioStatus::Running { sample_rate };
        out.manager = Some(manager);
        out.listener = Some(listener);
        out.echo = Mutex::new(Some(echo_rx));
        info!("live npc audio: NPC voices play at {sample_rate} Hz");
        out
    }

    /// Whether voices play.
    pub fn is_available(&self) -> bool {
        self.manager.is_some()
    }

    /// Whether the output works, and why not.
    pub fn status(&self) -> &AudioStatus {
        &self.status
    }

    /// The output sample rate (meaningful when available).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The offline output, when the plugin renders offline.
    pub fn offline(&self) -> Option<&OfflineOutput> {
        self.offline.as_ref()
    }

    /// Sessions that got a text-only sink because too many voices were waiting for a track.
    pub fn refused_voices(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The final mix the plugin plays (mono: the mean of left and right, at
    /// [`sample_rate`](Self::sample_rate)), for an echo canceller. Taken once (`None` after);
    /// samples are written from the moment it is taken, through a one-second lock-free ring
    /// whose overflow is counted in [`echo_dropped`](Self::echo_dropped). This is the plugin's
    /// own output only: other audio libraries' output is not in it.
    pub fn echo_reference(&self) -> Option<Consumer<f32>> {
        let taken = self.echo.lock().ok()?.take();
        if taken.is_some() {
            self.echo_shared.enabled.store(true, Ordering::Relaxed);
        }
        taken
    }

    /// Echo-reference samples lost because the reader fell more than a second behind.
    pub fn echo_dropped(&self) -> u64 {
        self.echo_shared.dropped.load(Ordering::Relaxed)
    }

    /// Frames the audio thread has mixed so far (the echo reference's clock).
    pub fn frames_mixed(&self) -> u64 {
        self.echo_shared.frames.load(Ordering::Relaxed)
    }

    /// Moves and turns the listener (world space; it looks along its local −Z, like Bevy's
    /// cameras), gliding over `glide`.
    pub fn set_listener(&mut self, position: Vec3, rotation: Quat, glide: Duration) {
        if let Some(l) = self.listener.as_mut() {
            let tween = Tween { duration: glide, ..Default::default() };
            l.set_position(mint_vec(position), tween);
            l.set_orientation(mint_quat(rotation), tween);
        }
    }

    /// Creates a voice outside the ECS (benchmarks, tools): its session sink and its
    /// component. `None` when the output is unavailable.
    pub fn spawn_voice(&mut self, position: Vec3, settings: &NpcVoiceSettings) -> Option<(VoiceSink, NpcVoice)> {
        let (sink, sound, shared) = voice_pair(self.sample_rate, self.ring_capacity, self.config.timing());
        let voice = self.attach(sound, shared, position, settings, 0.0)?;
        Some((sink, voice))
    }

    /// Gives a voice its spatial track and starts it.
    pub(crate) fn attach(
        &mut self,
        sound: VoiceSound,
        shared: Arc<VoiceShared>,
        position: Vec3,
        settings: &NpcVoiceSettings,
        occlusion: f32,
    ) -> Option<NpcVoice> {
        let (manager, listener) = (self.manager.as_mut()?, self.listener.as_ref()?);
        let strength = settings.spatialization_strength.clamp(0.0, 1.0);
        let mut builder = SpatialTrackBuilder::new()
            .distances(settings.sane_distances())
            .attenuation_function(settings.attenuation.easing())
            .spatialization_strength(strength)
            .volume(Decibels(settings.volume_db.max(-60.0)))
            .sound_capacity(2)
            .sub_track_capacity(1);
        // Open air: a dry filter; `NpcVoice::apply` moves it with the occlusion.
        let filter = builder
            .add_effect(FilterBuilder::new().cutoff(20_000.0f64.min(0.45 * self.sample_rate as f64)).mix(Mix::DRY));
        let mut track = match manager.add_spatial_sub_track(listener, position, builder) {
            Ok(t) => t,
            Err(e) => {
                warn!("live npc audio: no track for a voice ({e}); this NPC talks in text only");
                return None;
            }
        };
        if let Err(e) = track.play(VoiceSoundData(sound)) {
            warn!("live npc audio: could not start a voice ({e}); this NPC talks in text only");
            return None;
        }
        let mut voice = NpcVoice { shared, track, filter, applied: Some((0.0, settings.volume_db, strength)) };
        voice.apply(settings, occlusion);
        Some(voice)
    }

    /// The session sink factory: a voice ring for each NPC that talks in audio, sent to the
    /// game thread for its track; text-only sinks when the output is unavailable.
    pub(crate) fn sink_factory(&self) -> AudioSinkFactory {
        let available = self.is_available();
        let tx = self.pending_tx.clone();
        let config = self.config.clone();
        let (rate, capacity, refused) = (self.sample_rate, self.ring_capacity, self.refused.clone());
        AudioSinkFactory(Arc::new(move |entity: Entity, npc: &LiveNpc| -> Box<dyn AudioSink> {
            if !available || npc.modality != Modality::Audio {
                return Box::new(NullSink);
            }
            let (sink, sound, shared) = voice_pair(rate, capacity, config.timing());
            match tx.try_send(PendingVoice { entity, sound, shared }) {
                Ok(()) => Box::new(sink),
                Err(_) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    warn!("live npc audio: too many voices waiting for a track; {} talks in text only", npc.name);
                    Box::new(NullSink)
                }
            }
        }))
    }
}
