//! The player's microphone (feature `mic`): capture from the default or a named input device,
//! conversion to 16 kHz mono, echo cancellation against what the speakers play, a local voice
//! gate for open mic, push-to-talk, and a level meter for the UI.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_live_npc::prelude::*;
//! use bevy_live_npc::audio::capture::PlayerMic;
//!
//! fn setup(mut commands: Commands) {
//!     // The player's ears and voice (put them on your camera): hold V to talk to the NPC in front.
//!     commands.spawn((Transform::default(), NpcListener, PlayerMic::push_to_talk(KeyCode::KeyV)));
//! }
//! # let _ = setup;
//! ```
//!
//! Threads: the device callback only copies samples into a lock-free ring. A capture thread
//! drains it every 5 ms through [`MicPipeline`] and pushes 20–40 ms chunks straight into the
//! focused NPC's session ([`MicRoute`]); it ducks the NPC's voice the moment the player starts
//! talking. ECS systems ([`NpcMicSystems`]) read push-to-talk input, send the activity markers,
//! and publish [`MicLevel`] and [`MicStatus`].

mod convert;
mod device;
mod echo;
mod gate;
mod pipeline;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::input::ButtonInput;
use bevy::input::gamepad::{Gamepad, GamepadButton};
use bevy::input::keyboard::KeyCode;
use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender};

pub use convert::MIC_RATE;
pub use device::{
    CaptureFault, CaptureWriter, CpalBackend, EchoReference, InputFormat, MicBackend, MicBackendFactory,
    MicEchoReference, MicError, MicStream, ReferenceRing, TestMic, TestMicFeeder,
};
pub use pipeline::{MicFrame, MicPipeline};

use crate::conversation::{MicRoute, NpcConversation, NpcFocus};
use crate::messages::{ActivityKind, NpcActivity};
use crate::npc::{LiveNpc, NpcState};
use crate::plugin::LiveNpcSystems;
use worker::{Control, MicShared, Target, Worker, WorkerEvent, load_f32};

/// How long the ECS waits for the session to take `activityStart` (or to send the last audio
/// before `activityEnd`) before going ahead anyway.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(250);

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

/// System sets of the microphone, in `PostUpdate` before [`LiveNpcSystems::Send`].
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NpcMicSystems {
    /// Capture threads start and stop; settings, focus and push-to-talk reach them.
    Control,
    /// Activity markers are sent; levels and status are published.
    Report,
}

/// Adds the microphone (added by [`LiveNpcPlugin`](crate::plugin::LiveNpcPlugin) when the `mic`
/// feature is on). Nothing is captured until a [`PlayerMic`] exists.
#[derive(Default, Debug, Clone, Copy)]
pub struct NpcMicPlugin;

impl Plugin for NpcMicPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<MicBackendFactory>()
            .init_resource::<MicEchoReference>()
            .init_resource::<MicRoute>()
            .init_resource::<NpcFocus>()
            .add_message::<NpcActivity>()
            .register_type::<PlayerMic>()
            .register_type::<MicLevel>()
            .register_type::<MicStatus>()
            .configure_sets(
                PostUpdate,
                (NpcMicSystems::Control, NpcMicSystems::Report).chain().before(LiveNpcSystems::Send),
            )
            .add_systems(
                PostUpdate,
                (start_and_stop, sync_settings, sync_target, read_push_to_talk).chain().in_set(NpcMicSystems::Control),
            )
            .add_systems(PostUpdate, adopt_audio_output.in_set(NpcMicSystems::Control).before(sync_target))
            .add_systems(PostUpdate, (handle_events, publish_levels).chain().in_set(NpcMicSystems::Report));
    }
}

/// The audio layer's voices can be ducked.
#[cfg(feature = "audio")]
impl VoiceDuck for crate::audio::VoiceControl {
    fn duck(&self, gain: f32) {
        crate::audio::VoiceControl::duck(self, gain);
    }
}

/// Wires the audio layer in: each NPC voice becomes duckable, and the mix it plays becomes the
/// echo reference (taken once, when a microphone wants echo cancellation).
#[cfg(feature = "audio")]
fn adopt_audio_output(
    mut commands: Commands,
    output: Option<Res<crate::audio::NpcAudioOutput>>,
    reference: Res<MicEchoReference>,
    voices: Query<(Entity, &crate::audio::NpcVoice), Changed<crate::audio::NpcVoice>>,
    mics: Query<&PlayerMic>,
    mut taken: Local<bool>,
) {
    for (npc, voice) in &voices {
        commands.entity(npc).insert(NpcVoiceDuck(Arc::new(voice.control())));
    }
    let Some(output) = output.filter(|o| o.is_available()) else {
        return;
    };
    if *taken || !mics.iter().any(|m| m.echo_cancellation) {
        return;
    }
    *taken = true;
    let empty = reference.0.lock().is_ok_and(|r| r.is_none());
    if empty && let Some(consumer) = output.echo_reference() {
        let ring = ReferenceRing::new(consumer, output.sample_rate(), 1);
        if let Ok(mut r) = reference.0.lock() {
            *r = Some(Box::new(ring));
        }
    }
}

#[cfg(not(feature = "audio"))]
fn adopt_audio_output() {}

/// A capture thread's ECS side.
#[derive(Component)]
struct MicWorker {
    control: Sender<Control>,
    events: Receiver<WorkerEvent>,
    shared: Arc<MicShared>,
    thread: Option<std::thread::JoinHandle<()>>,
    last_target: Option<(Entity, bool, bool, bool)>,
    last_speaking: bool,
    ptt: bool,
    reference_sent: bool,
    warned_no_device: bool,
    warned_echo: bool,
    actions: VecDeque<Action>,
}

/// An activity marker waiting for its moment.
#[derive(Debug)]
enum Action {
    /// Talk `seq` started: mark the activity (manual VAD) and let its audio go.
    Start { seq: u64, npc: Entity, manual: bool, sent_at: Option<Instant> },
    /// Talk `seq` ended: close the activity / the stream once its audio is out.
    End { npc: Entity, manual: bool, sent: bool, since: Instant },
}

impl Drop for MicWorker {
    fn drop(&mut self) {
        let _ = self.control.try_send(Control::Stop);
        // The thread stops within one poll; it is not joined so a frame never waits for it.
        drop(self.thread.take());
    }
}

impl MicWorker {
    fn tell(&self, control: Control) {
        if self.control.try_send(control).is_err() {
            debug!("live npc mic: the capture thread's control queue is full");
        }
    }
}

fn start_and_stop(
    mut commands: Commands,
    factory: Res<MicBackendFactory>,
    route: Res<MicRoute>,
    added: Query<(Entity, &PlayerMic), Without<MicWorker>>,
    mut removed: RemovedComponents<PlayerMic>,
    workers: Query<(), With<MicWorker>>,
) {
    for entity in removed.read() {
        if workers.contains(entity) {
            commands.entity(entity).try_remove::<MicWorker>();
        }
    }
    for (entity, mic) in &added {
        let (control_tx, control_rx) = crossbeam_channel::bounded(256);
        let (event_tx, event_rx) = crossbeam_channel::bounded(256);
        let shared = Arc::new(MicShared::default());
        let (settings, backend, route, thread_shared) = (mic.clone(), (factory.0)(), route.clone(), shared.clone());
        // Built on its own thread: streams and the echo canceller never leave it.
        let spawned = std::thread::Builder::new()
            .name("live-npc-mic".into())
            .spawn(move || Worker::new(settings, backend, route, control_rx, event_tx, thread_shared).run());
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                warn!("live npc: could not start the microphone thread: {e}; typed text still works");
                None
            }
        };
        commands.entity(entity).insert(MicWorker {
            control: control_tx,
            events: event_rx,
            shared,
            thread,
            last_target: None,
            last_speaking: false,
            ptt: false,
            reference_sent: false,
            warned_no_device: false,
            warned_echo: false,
            actions: VecDeque::new(),
        });
    }
}

fn sync_settings(mics: Query<(&PlayerMic, &MicWorker), Changed<PlayerMic>>) {
    for (mic, worker) in &mics {
        worker.tell(Control::Settings(Box::new(mic.clone())));
    }
}

fn sync_target(
    focus: Res<NpcFocus>,
    reference: Res<MicEchoReference>,
    npcs: Query<(&LiveNpc, &NpcState, Option<&NpcVoiceDuck>)>,
    mut workers: Query<&mut MicWorker>,
) {
    let target = focus.current().and_then(|e| npcs.get(e).ok().map(|n| (e, n)));
    let key = target.map(|(e, (npc, _, duck))| (e, !npc.vad.automatic, npc.vad.barge_in, duck.is_some()));
    let speaking = target.is_some_and(|(_, (_, state, _))| *state == NpcState::Speaking);
    for mut worker in &mut workers {
        if worker.last_target != key {
            worker.last_target = key;
            let t = target.map(|(npc, (live, _, duck))| Target {
                npc,
                manual: !live.vad.automatic,
                barge_in: live.vad.barge_in,
                duck: duck.map(|d| d.0.clone()),
            });
            worker.tell(Control::Target(t));
        }
        if worker.last_speaking != speaking {
            worker.last_speaking = speaking;
            worker.tell(Control::NpcSpeaking(speaking));
        }
        if !worker.reference_sent
            && let Some(r) = reference.take()
        {
            worker.reference_sent = true;
            worker.tell(Control::Reference(r));
        }
    }
}

fn read_push_to_talk(
    keys: Option<Res<ButtonInput<KeyCode>>>,
    gamepads: Query<&Gamepad>,
    mut mics: Query<(&PlayerMic, &mut MicWorker)>,
) {
    for (mic, mut worker) in &mut mics {
        let held = match &mic.mode {
            MicMode::PushToTalk { key, button } => {
                key.is_some_and(|k| keys.as_ref().is_some_and(|keys| keys.pressed(k)))
                    || button.is_some_and(|b| gamepads.iter().any(|g| g.pressed(b)))
            }
            MicMode::OpenMic => false,
        };
        if held != worker.ptt {
            worker.ptt = held;
            worker.tell(Control::Ptt(held));
        }
    }
}

/// The session has taken every queued command (so `activityStart` is on the wire before audio).
fn commands_drained(conv: &NpcConversation) -> bool {
    conv.session.commands_pending() == 0
}

fn handle_events(
    mut activity: MessageWriter<NpcActivity>,
    convs: Query<&NpcConversation>,
    mut workers: Query<(&mut MicWorker, &mut MicStatus)>,
) {
    let now = Instant::now();
    for (mut worker, mut status) in &mut workers {
        while let Ok(event) = worker.events.try_recv() {
            match event {
                WorkerEvent::Opened(format) => {
                    info!(
                        "live npc: microphone `{}` ({} Hz, {} channels)",
                        format.device, format.sample_rate, format.channels
                    );
                    worker.warned_no_device = false;
                    status.state = MicState::Capturing;
                    status.format = Some(format);
                }
                WorkerEvent::Unavailable(why) => {
                    if !worker.warned_no_device {
                        worker.warned_no_device = true;
                        warn!("live npc: no microphone ({why}); voice input is off, typed text still works");
                    }
                    status.state = MicState::NoDevice;
                }
                WorkerEvent::Lost(why) => {
                    warn!("live npc: the microphone stopped: {why}; reopening");
                    status.state = MicState::Reopening;
                }
                WorkerEvent::DeviceChanged(name) => {
                    info!("live npc: the default microphone changed to `{name}`; switching");
                    status.state = MicState::Reopening;
                }
                WorkerEvent::EchoUnavailable => {
                    if !worker.warned_echo {
                        worker.warned_echo = true;
                        info!(
                            "live npc: echo cancellation is on but nothing provides the speaker mix \
                             (MicEchoReference); with open mic and speakers the NPC may hear itself"
                        );
                    }
                }
                WorkerEvent::TalkStarted { seq, npc, manual } => {
                    worker.actions.push_back(Action::Start { seq, npc, manual, sent_at: None });
                }
                WorkerEvent::TalkEnded { npc, manual, sent } => {
                    worker.actions.push_back(Action::End { npc, manual, sent, since: now });
                }
            }
        }
        // Markers go out in order; each waits for its moment.
        while let Some(action) = worker.actions.front_mut() {
            let (done, permit) = match action {
                Action::Start { seq, npc, manual, sent_at } => {
                    let done = match (convs.get(*npc).ok(), *sent_at) {
                        (Some(_), None) if *manual => {
                            activity.write(NpcActivity { npc: *npc, kind: ActivityKind::Start });
                            *sent_at = Some(now);
                            false
                        }
                        // Audio may follow once the session has taken the marker.
                        (Some(conv), Some(at)) => commands_drained(conv) || now.duration_since(at) > HANDSHAKE_TIMEOUT,
                        _ => true,
                    };
                    (done, done.then_some(*seq))
                }
                Action::End { npc, manual, sent, since } => {
                    let conv = convs.get(*npc).ok();
                    // The last chunk must leave before the marker that closes it.
                    let flushed = conv.is_none_or(|c| c.mic().queued() == 0);
                    let done = flushed || now.duration_since(*since) > HANDSHAKE_TIMEOUT;
                    if done && let Some(conv) = conv {
                        if *manual {
                            if conv.activity_open {
                                activity.write(NpcActivity { npc: *npc, kind: ActivityKind::End });
                            }
                        } else if *sent {
                            activity.write(NpcActivity { npc: *npc, kind: ActivityKind::StreamEnd });
                        }
                    }
                    (done, None)
                }
            };
            if let Some(seq) = permit {
                worker.tell(Control::Permit(seq));
            }
            if !done {
                break;
            }
            worker.actions.pop_front();
        }
    }
}

fn publish_levels(mut mics: Query<(&MicWorker, &mut MicLevel, &mut MicStatus)>) {
    for (worker, mut level, mut status) in &mut mics {
        let s = &worker.shared;
        let next = MicLevel {
            rms: load_f32(&s.rms),
            peak: load_f32(&s.peak),
            speaking: s.speaking.load(Ordering::Relaxed),
            transmitting: s.transmitting.load(Ordering::Relaxed),
        };
        level.set_if_neq(next);
        let echo_cancelling = s.echo_cancelling.load(Ordering::Relaxed);
        let erle_db = load_f32(&s.erle_db);
        let dropped = s.input_dropped.load(Ordering::Relaxed);
        let sent = s.chunks_sent.load(Ordering::Relaxed);
        let discarded = s.samples_discarded.load(Ordering::Relaxed);
        if status.echo_cancelling != echo_cancelling
            || status.erle_db != erle_db
            || status.dropped_input_samples != dropped
            || status.chunks_sent != sent
            || status.discarded_samples != discarded
        {
            status.echo_cancelling = echo_cancelling;
            status.erle_db = erle_db;
            status.dropped_input_samples = dropped;
            status.chunks_sent = sent;
            status.discarded_samples = discarded;
        }
    }
}
