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

mod components;
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
use bevy::input::gamepad::Gamepad;
use bevy::input::keyboard::KeyCode;
use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender};

pub use components::{MicLevel, MicMode, MicState, MicStatus, NpcVoiceDuck, PlayerMic, VoiceDuck};
pub use convert::MIC_RATE;
pub use device::{
    CaptureFault, CaptureWriter, CpalBackend, EchoReference, InputFormat, MicBackend, MicBackendFactory,
    MicEchoReference, MicError, MicStream, ReferenceRing, TestMic, TestMicFeeder,
};
pub use pipeline::{MicFrame, MicPipeline};

use crate::conversation::{MicRoute, NpcConversation, NpcFocus};
use crate::messages::{ActivityKind, NpcActivity};
use crate::npc::{LiveNpc, NpcState};
pub use crate::schedule::NpcMicSystems;
use crate::schedule::{LiveNpcSystems, first_instance};
use worker::{Control, MicShared, Target, Worker, WorkerEvent, load_f32};

/// How long the ECS waits for the session to take `activityStart` (or to send the last audio
/// before `activityEnd`) before going ahead anyway.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(250);

/// Adds the microphone (part of [`LiveNpcPlugins`](crate::plugin::LiveNpcPlugins) when the
/// `mic` feature is on). Nothing is captured until a [`PlayerMic`] exists.
#[derive(Default, Debug, Clone, Copy)]
pub struct NpcMicPlugin;

/// Marks an app whose microphone is set up (a second `NpcMicPlugin` is skipped).
#[derive(Resource, Default)]
struct MicPluginBuilt;

impl Plugin for NpcMicPlugin {
    fn build(&self, app: &mut App) {
        if !first_instance::<MicPluginBuilt>(app, "NpcMicPlugin") {
            return;
        }
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
            .add_systems(PostUpdate, (handle_events, publish_levels).chain().in_set(NpcMicSystems::Report));
    }

    // Added by the plugin group and possibly by the app too: the first one runs.
    fn is_unique(&self) -> bool {
        false
    }
}

/// A capture thread's ECS side.
#[derive(Component)]
pub(crate) struct MicWorker {
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

pub(crate) fn sync_target(
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
