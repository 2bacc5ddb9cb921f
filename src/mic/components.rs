//! The microphone's components and settings: how the player's voice is sent ([`PlayerMic`],
//! [`MicMode`]), what it is doing ([`MicLevel`], [`MicStatus`]), and the handle it ducks a voice
//! through ([`NpcVoiceDuck`]).

use std::sync::Arc;

use bevy::input::gamepad::GamepadButton;
use bevy::input::keyboard::KeyCode;
use bevy::prelude::*;

use super::device::InputFormat;

/// When the player's voice is sent.
#[derive(Clone, Debug, PartialEq, Eq, Reflect)]
pub enum MicMode {
    /// Only while a key or gamepad button is held. NPCs with manual VAD get
    /// `activityStart`/`activityEnd` around it.
    PushToTalk {
        /// The key (if any).
        key: Option<KeyCode>,
        /// The gamepad button (if any), on any gamepad.
        button: Option<GamepadButton>,
    },
    /// Whenever the local voice gate hears speech; `audioStreamEnd` after each pause.
    OpenMic,
}

/// The player's microphone: put it on the camera or the player entity. The capture thread runs
/// while the component exists.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_live_npc::audio::capture::PlayerMic;
///
/// let ptt = PlayerMic::push_to_talk(KeyCode::KeyV).gamepad_button(GamepadButton::RightTrigger);
/// let open = PlayerMic::open_mic().device("USB Headset").chunk_ms(40).half_duplex(false);
/// assert!(open.echo_cancellation);
/// # let _ = ptt;
/// ```
#[derive(Component, Clone, Debug, PartialEq, Reflect)]
#[reflect(Component)]
#[require(MicLevel, MicStatus)]
pub struct PlayerMic {
    /// Push-to-talk or open mic.
    pub mode: MicMode,
    /// Input device by name (`None`: the system default, followed when it changes).
    pub device: Option<String>,
    /// Milliseconds of audio per chunk sent (clamped to 20–40).
    pub chunk_ms: u32,
    /// Cancel the echo of the NPC's voice (needs the audio layer's reference of what is played).
    pub echo_cancellation: bool,
    /// Fallback: keep the open mic closed while an NPC is audible (no barge-in by voice).
    pub half_duplex: bool,
    /// Gain applied to the focused NPC's voice the moment the player starts talking (0–1).
    pub duck_gain: f32,
    /// Local VAD: earshot score (0–1) that starts speech.
    pub vad_threshold: f32,
    /// Local VAD: quieter frames (dBFS RMS) are silence without running the detector.
    pub vad_floor_dbfs: f32,
    /// Local VAD: voiced time before speech is believed.
    pub onset_ms: u32,
    /// Local VAD: silence that ends speech (then `audioStreamEnd` is sent).
    pub hangover_ms: u32,
    /// Audio from before the detected onset that is sent with it.
    pub pre_roll_ms: u32,
    /// Send nothing.
    pub muted: bool,
}

impl Default for PlayerMic {
    /// Push-to-talk on V.
    fn default() -> Self {
        PlayerMic {
            mode: MicMode::PushToTalk { key: Some(KeyCode::KeyV), button: None },
            device: None,
            chunk_ms: 20,
            echo_cancellation: true,
            half_duplex: false,
            duck_gain: 0.2,
            vad_threshold: 0.7,
            vad_floor_dbfs: -50.0,
            onset_ms: 48,
            hangover_ms: 600,
            pre_roll_ms: 150,
            muted: false,
        }
    }
}

impl PlayerMic {
    /// Push-to-talk on `key`.
    pub fn push_to_talk(key: KeyCode) -> Self {
        PlayerMic { mode: MicMode::PushToTalk { key: Some(key), button: None }, ..Default::default() }
    }

    /// Open mic, gated by the local VAD.
    pub fn open_mic() -> Self {
        PlayerMic { mode: MicMode::OpenMic, ..Default::default() }
    }

    /// Also (or only, after [`PlayerMic::push_to_talk`]) talks while this gamepad button is held.
    pub fn gamepad_button(mut self, button: GamepadButton) -> Self {
        match &mut self.mode {
            MicMode::PushToTalk { button: b, .. } => *b = Some(button),
            MicMode::OpenMic => self.mode = MicMode::PushToTalk { key: None, button: Some(button) },
        }
        self
    }

    /// Uses the input device with this name.
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.device = Some(name.into());
        self
    }

    /// Sets the chunk length (20–40 ms).
    pub fn chunk_ms(mut self, ms: u32) -> Self {
        self.chunk_ms = ms;
        self
    }

    /// Turns echo cancellation on or off.
    pub fn echo_cancellation(mut self, on: bool) -> Self {
        self.echo_cancellation = on;
        self
    }

    /// Turns the half-duplex fallback on or off.
    pub fn half_duplex(mut self, on: bool) -> Self {
        self.half_duplex = on;
        self
    }

    /// Sets the duck gain (0–1).
    pub fn duck_gain(mut self, gain: f32) -> Self {
        self.duck_gain = gain;
        self
    }

    /// Sets the local VAD's start threshold (0–1).
    pub fn vad_threshold(mut self, threshold: f32) -> Self {
        self.vad_threshold = threshold;
        self
    }

    /// Sets the silence that ends the player's speech.
    pub fn hangover_ms(mut self, ms: u32) -> Self {
        self.hangover_ms = ms;
        self
    }

    /// Sets how much audio before the detected onset is sent.
    pub fn pre_roll_ms(mut self, ms: u32) -> Self {
        self.pre_roll_ms = ms;
        self
    }

    /// Mutes or unmutes.
    pub fn muted(mut self, muted: bool) -> Self {
        self.muted = muted;
        self
    }

    /// 16 kHz samples per chunk.
    pub(crate) fn chunk_samples(&self) -> usize {
        self.chunk_ms.clamp(20, 40) as usize * 16
    }
}

/// The microphone's level, for a UI meter (updated every frame, after echo cancellation).
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Reflect)]
#[reflect(Component)]
pub struct MicLevel {
    /// Smoothed RMS, 0–1.
    pub rms: f32,
    /// Peak with a short hold, 0–1.
    pub peak: f32,
    /// The player is talking (push-to-talk held, or the open-mic gate hears speech).
    pub speaking: bool,
    /// Audio is going to an NPC right now.
    pub transmitting: bool,
}

/// What the microphone is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Reflect)]
pub enum MicState {
    /// Opening the input.
    #[default]
    Starting,
    /// Capturing.
    Capturing,
    /// No usable input device (retrying in the background; typed text still works).
    NoDevice,
    /// The device went away or changed; reopening.
    Reopening,
}

/// The microphone's device and counters.
#[derive(Component, Clone, Debug, Default, PartialEq, Reflect)]
#[reflect(Component)]
pub struct MicStatus {
    /// State.
    pub state: MicState,
    /// The open device and its native format.
    pub format: Option<InputFormat>,
    /// Echo cancellation is running.
    pub echo_cancelling: bool,
    /// The echo canceller's own estimate of its echo reduction (dB).
    pub erle_db: f32,
    /// Input samples dropped because the capture thread fell behind.
    pub dropped_input_samples: u64,
    /// Chunks sent to NPCs.
    pub chunks_sent: u64,
    /// 16 kHz samples discarded (a manual-VAD session never took `activityStart`).
    pub discarded_samples: u64,
}

/// Lowers an NPC's voice from any thread, at once, without blocking (implemented by the audio
/// layer's voice handle; a game with its own playback can implement it too).
pub trait VoiceDuck: Send + Sync + 'static {
    /// Sets the voice's gain (1 = normal).
    fn duck(&self, gain: f32);
}

/// The handle the microphone ducks when the player talks over this NPC.
#[derive(Component, Clone)]
pub struct NpcVoiceDuck(pub Arc<dyn VoiceDuck>);

impl std::fmt::Debug for NpcVoiceDuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NpcVoiceDuck")
    }
}
