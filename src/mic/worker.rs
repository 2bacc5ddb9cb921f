//! The capture thread: opens (and reopens) the input, drains the capture ring through the
//! [`MicPipeline`], decides when the player is talking, ducks the NPC, and pushes 16 kHz chunks
//! straight into the focused session's mic handle — no ECS frame in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::Entity;
use crossbeam_channel::{Receiver, Sender};

use super::components::{MicMode, PlayerMic, VoiceDuck};
use super::device::{CaptureShared, CaptureWriter, EchoReference, InputFormat, MicBackend, MicError, MicStream};
use super::pipeline::{MicFrame, MicPipeline};
use crate::conversation::MicRoute;
use crate::session::MicHandle;

/// How often the thread wakes to drain the rings (the capture latency it adds at most).
const POLL: Duration = Duration::from_millis(5);
/// How often the default device is checked for a change.
const DEVICE_CHECK: Duration = Duration::from_secs(2);
/// Reopen back-off after a failure: from this, doubling, up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Capture ring: one second of input.
const RING_SECONDS: usize = 1;
/// Audio kept from before the gate opened: covers the gate's onset delay plus the pre-roll.
const PREROLL_SAMPLES: usize = 16_000;
/// Audio held while a manual-VAD session waits for `activityStart` to go out.
const PENDING_SAMPLES: usize = 3 * 16_000;
/// Scratch size for draining rings (samples).
const SCRATCH: usize = 4096;

/// The focused NPC, as the capture thread needs it.
#[derive(Clone)]
pub(crate) struct Target {
    pub npc: Entity,
    /// Manual VAD: speech must be marked with activity start/end.
    pub manual: bool,
    /// The player's speech interrupts this NPC: duck it at once.
    pub barge_in: bool,
    pub duck: Option<Arc<dyn VoiceDuck>>,
}

pub(crate) enum Control {
    Settings(Box<PlayerMic>),
    Target(Option<Target>),
    Ptt(bool),
    /// `activityStart` for talk `seq` is out: its audio may follow.
    Permit(u64),
    NpcSpeaking(bool),
    Reference(Box<dyn EchoReference>),
    Stop,
}

#[derive(Debug)]
pub(crate) enum WorkerEvent {
    Opened(InputFormat),
    Unavailable(String),
    Lost(String),
    DeviceChanged(String),
    TalkStarted { seq: u64, npc: Entity, manual: bool },
    TalkEnded { npc: Entity, manual: bool, sent: bool },
    EchoUnavailable,
}

/// Counters and levels the ECS reads each frame.
#[derive(Debug, Default)]
pub(crate) struct MicShared {
    pub rms: AtomicU32,
    pub peak: AtomicU32,
    pub speaking: AtomicBool,
    pub transmitting: AtomicBool,
    pub echo_cancelling: AtomicBool,
    pub erle_db: AtomicU32,
    pub input_dropped: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub samples_discarded: AtomicU64,
}

pub(crate) fn store_f32(a: &AtomicU32, v: f32) {
    a.store(v.to_bits(), Ordering::Relaxed);
}

pub(crate) fn load_f32(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Ordering::Relaxed))
}

struct Open {
    stream: MicStream,
    consumer: rtrb::Consumer<f32>,
    capture: Arc<CaptureShared>,
    pipeline: MicPipeline,
    channels: usize,
}

struct Talk {
    seq: u64,
    npc: Entity,
    manual: bool,
    permitted: bool,
    mic: MicHandle,
    ducked: Option<Arc<dyn VoiceDuck>>,
    sent: bool,
}

/// The talk state machine: when the player is talking, chunking, pushing, ducking.
struct Talker {
    settings: PlayerMic,
    route: MicRoute,
    events: Sender<WorkerEvent>,
    shared: Arc<MicShared>,
    target: Option<Target>,
    ptt: bool,
    npc_speaking: bool,
    has_reference: bool,
    talk: Option<Talk>,
    seq: u64,
    preroll: Vec<i16>,
    preroll_pos: usize,
    preroll_len: usize,
    pending: Vec<i16>,
    chunk: Vec<i16>,
    rms: f32,
    peak: f32,
    /// Half duplex: the current utterance began while the NPC was audible; it stays unsent.
    suppressed: bool,
}

pub(crate) struct Worker {
    backend: Box<dyn MicBackend>,
    control: Receiver<Control>,
    open: Option<Open>,
    reference: Option<Box<dyn EchoReference>>,
    next_open: Instant,
    backoff: Duration,
    unavailable_reported: bool,
    opened_default: Option<String>,
    next_device_check: Instant,
    scratch: Vec<f32>,
    ref_scratch: Vec<f32>,
    talker: Talker,
}

impl Worker {
    pub(crate) fn new(
        settings: PlayerMic,
        backend: Box<dyn MicBackend>,
        route: MicRoute,
        control: Receiver<Control>,
        events: Sender<WorkerEvent>,
        shared: Arc<MicShared>,
    ) -> Self {
        let chunk = settings.chunk_samples();
        Worker {
            backend,
            control,
            open: None,
            reference: None,
            next_open: Instant::now(),
            backoff: MIN_BACKOFF,
            unavailable_reported: false,
            opened_default: None,
            next_device_check: Instant::now() + DEVICE_CHECK,
            scratch: vec![0.0; SCRATCH],
            ref_scratch: vec![0.0; SCRATCH],
            talker: Talker {
                settings,
                route,
                events,
                shared,
                target: None,
                ptt: false,
                npc_speaking: false,
                has_reference: false,
                talk: None,
                seq: 0,
                preroll: vec![0; PREROLL_SAMPLES],
                preroll_pos: 0,
                preroll_len: 0,
                pending: Vec::with_capacity(PENDING_SAMPLES),
                chunk: Vec::with_capacity(chunk),
                rms: 0.0,
                peak: 0.0,
                suppressed: false,
            },
        }
    }

    /// Runs until told to stop (or the plugin side is gone).
    pub(crate) fn run(mut self) {
        loop {
            if !self.controls() {
                break;
            }
            self.upkeep();
            self.drain();
            std::thread::sleep(POLL);
        }
        self.talker.end_talk();
    }

    /// Applies control messages; `false` to stop.
    fn controls(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(Control::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Ok(Control::Settings(s)) => {
                    let reopen = s.device != self.talker.settings.device;
                    if let Some(open) = &mut self.open {
                        open.pipeline.set_settings(&s);
                    }
                    if s.chunk_samples() != self.talker.settings.chunk_samples() {
                        self.talker.flush_chunk();
                    }
                    self.talker.settings = *s;
                    if reopen {
                        self.close();
                        self.next_open = Instant::now();
                    }
                }
                Ok(Control::Target(t)) => self.talker.target = t,
                Ok(Control::Ptt(p)) => self.talker.ptt = p,
                Ok(Control::NpcSpeaking(s)) => self.talker.npc_speaking = s,
                Ok(Control::Permit(seq)) => self.talker.permit(seq),
                Ok(Control::Reference(r)) => {
                    let (rate, channels) = r.format();
                    if let Some(open) = &mut self.open {
                        open.pipeline.set_reference_format(rate, channels);
                    }
                    self.reference = Some(r);
                    self.talker.has_reference = true;
                    self.discard_reference();
                }
            }
        }
    }

    /// Opens the input when due, notices failures and default-device changes.
    fn upkeep(&mut self) {
        let now = Instant::now();
        if let Some(open) = &self.open
            && let Some(lost) = open.capture.fault()
        {
            let name = open.stream.format.device.clone();
            self.close();
            let why = if lost { format!("`{name}` was disconnected") } else { format!("`{name}` failed") };
            self.talker.send(WorkerEvent::Lost(why));
            self.backoff = MIN_BACKOFF;
            self.next_open = now + self.backoff;
        }
        if self.open.is_none() && now >= self.next_open {
            self.try_open(now);
        }
        if self.open.is_some() && self.talker.settings.device.is_none() && now >= self.next_device_check {
            self.next_device_check = now + DEVICE_CHECK;
            let current = self.backend.default_device();
            if current.is_some() && current != self.opened_default {
                self.close();
                self.talker.send(WorkerEvent::DeviceChanged(current.unwrap_or_default()));
                self.try_open(now);
            }
        }
    }

    fn try_open(&mut self, now: Instant) {
        let mut made: Option<(rtrb::Consumer<f32>, Arc<CaptureShared>)> = None;
        let mut make = |format: &InputFormat| {
            let capacity = (format.sample_rate.clamp(1_000, 384_000) as usize)
                * usize::from(format.channels.clamp(1, 64))
                * RING_SECONDS;
            let (producer, consumer) = rtrb::RingBuffer::new(capacity);
            let shared = Arc::new(CaptureShared::default());
            made = Some((consumer, shared.clone()));
            CaptureWriter::new(producer, format.channels, shared)
        };
        let wanted = self.talker.settings.device.clone();
        let mut result = self.backend.open(wanted.as_deref(), &mut make);
        if let Err(MicError::NotFound(_)) = &result {
            // A named device that is not there: use the default rather than nothing.
            result = self.backend.open(None, &mut make);
        }
        match (result, made) {
            (Ok(stream), Some((consumer, capture))) => {
                let format = stream.format.clone();
                let mut pipeline = MicPipeline::new(&self.talker.settings, format.sample_rate, format.channels);
                if let Some(r) = &self.reference {
                    let (rate, channels) = r.format();
                    pipeline.set_reference_format(rate, channels);
                } else if self.talker.settings.echo_cancellation {
                    self.talker.send(WorkerEvent::EchoUnavailable);
                }
                self.opened_default = if wanted.is_none() { Some(format.device.clone()) } else { None };
                self.open =
                    Some(Open { stream, consumer, capture, pipeline, channels: usize::from(format.channels.max(1)) });
                self.backoff = MIN_BACKOFF;
                self.unavailable_reported = false;
                self.next_device_check = now + DEVICE_CHECK;
                // Reference audio from before capture began would pair with nothing.
                self.discard_reference();
                self.talker.send(WorkerEvent::Opened(format));
            }
            (Ok(_), None) => self.fail(now, "the backend opened a stream without a ring".into()),
            (Err(e), _) => self.fail(now, e.to_string()),
        }
    }

    fn fail(&mut self, now: Instant, why: String) {
        if !self.unavailable_reported {
            self.unavailable_reported = true;
            self.talker.send(WorkerEvent::Unavailable(why));
        }
        self.next_open = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            self.talker.shared.input_dropped.fetch_add(open.capture.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.talker.end_talk();
        self.talker.reset_preroll();
    }

    fn discard_reference(&mut self) {
        if let Some(r) = &mut self.reference {
            while r.read(&mut self.ref_scratch) > 0 {}
        }
    }

    /// Moves reference then capture audio through the pipeline.
    fn drain(&mut self) {
        let Some(open) = &mut self.open else {
            // Nothing to cancel echo from: keep the reference ring from filling with stale audio.
            self.discard_reference();
            return;
        };
        if let Some(r) = &mut self.reference {
            loop {
                let n = r.read(&mut self.ref_scratch);
                if n == 0 {
                    break;
                }
                open.pipeline.push_reference(&self.ref_scratch[..n]);
            }
        }
        let whole = SCRATCH - SCRATCH % open.channels;
        loop {
            let n = open.consumer.slots().min(whole);
            let n = n - n % open.channels;
            if n == 0 {
                break;
            }
            let (got, _) = open.consumer.pop_partial_slice(&mut self.scratch[..n]);
            let talker = &mut self.talker;
            open.pipeline.push_capture(got, |frame| talker.frame(frame));
        }
        self.talker.idle_check();
        let shared = &self.talker.shared;
        shared.echo_cancelling.store(open.pipeline.echo_cancelling(), Ordering::Relaxed);
        if let Some((erle, _)) = open.pipeline.echo_metrics() {
            store_f32(&shared.erle_db, erle);
        }
        let dropped = open.capture.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            open.capture.dropped.fetch_sub(dropped, Ordering::Relaxed);
            shared.input_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

impl Talker {
    fn send(&self, event: WorkerEvent) {
        // A full queue means the ECS side is gone or stalled; the event is not worth blocking for.
        let _ = self.events.try_send(event);
    }

    fn route_entity(&self) -> Option<Entity> {
        self.route.0.read().ok().and_then(|g| g.as_ref().map(|(e, _)| *e))
    }

    /// Whether the player should be heard right now, by mode and settings (not the gate).
    fn allowed(&self) -> bool {
        !self.settings.muted
    }

    fn frame(&mut self, f: &MicFrame<'_>) {
        // Levels for the UI: a fast-attack, slow-release meter.
        self.rms = if f.rms > self.rms { f.rms } else { self.rms * 0.9 + f.rms * 0.1 };
        self.peak = if f.peak > self.peak { f.peak } else { self.peak * 0.95 };
        store_f32(&self.shared.rms, self.rms);
        store_f32(&self.shared.peak, self.peak);
        self.push_preroll(f.pcm);
        let playing = if self.has_reference { f.playback } else { self.npc_speaking };
        // Half duplex: an utterance heard while the NPC is audible is echo (or talking over it)
        // and stays unsent to its end, even if the NPC falls silent meanwhile.
        self.suppressed =
            f.speech && (self.suppressed || (self.settings.half_duplex && playing && self.talk.is_none()));
        let want = self.allowed()
            && match self.settings.mode {
                MicMode::PushToTalk { .. } => self.ptt,
                MicMode::OpenMic => f.speech && !self.suppressed,
            };
        self.shared.speaking.store(want, Ordering::Relaxed);
        let route = self.route_entity();
        if let Some(talk) = &self.talk
            && (!want || route != Some(talk.npc))
        {
            self.end_talk();
        }
        if self.talk.is_none() {
            if want && let Some(npc) = route {
                let back = match self.settings.mode {
                    MicMode::PushToTalk { .. } => f.pcm.len(),
                    MicMode::OpenMic => f.onset.unwrap_or(f.pcm.len()) + self.settings.pre_roll_ms as usize * 16,
                };
                self.start_talk(npc, back);
            }
        } else {
            self.emit(f.pcm);
        }
    }

    /// Ends a talk whose reason went away while no audio arrives (PTT released with the device
    /// stalled, focus lost, muted).
    fn idle_check(&mut self) {
        let Some(talk) = &self.talk else {
            return;
        };
        let ptt_released = matches!(self.settings.mode, MicMode::PushToTalk { .. }) && !self.ptt;
        if ptt_released || !self.allowed() || self.route_entity() != Some(talk.npc) {
            self.end_talk();
        }
    }

    fn start_talk(&mut self, npc: Entity, back: usize) {
        let Some(target) = self.target.clone().filter(|t| t.npc == npc) else {
            // The ECS has not described this NPC yet (a frame behind the route): wait.
            return;
        };
        let Some(mic) = self.route.get().filter(|(e, _)| *e == npc).map(|(_, m)| m) else {
            return;
        };
        self.seq += 1;
        let ducked = if target.barge_in { target.duck.clone() } else { None };
        if let Some(d) = &ducked {
            d.duck(self.settings.duck_gain.clamp(0.0, 1.0));
        }
        self.pending.clear();
        self.chunk.clear();
        self.talk = Some(Talk {
            seq: self.seq,
            npc,
            manual: target.manual,
            permitted: !target.manual,
            mic,
            ducked,
            sent: false,
        });
        self.shared.transmitting.store(true, Ordering::Relaxed);
        self.send(WorkerEvent::TalkStarted { seq: self.seq, npc, manual: target.manual });
        // The start of the utterance, from the pre-roll (which already holds this frame).
        let back = back.min(self.preroll_len);
        let cap = self.preroll.len();
        let start = (self.preroll_pos + cap - back) % cap;
        for i in 0..back {
            let s = self.preroll[(start + i) % cap];
            self.emit_sample(s);
        }
    }

    fn permit(&mut self, seq: u64) {
        let Some(talk) = &mut self.talk else {
            return;
        };
        if talk.seq != seq || talk.permitted {
            return;
        }
        talk.permitted = true;
        let pending = std::mem::take(&mut self.pending);
        for &s in &pending {
            self.emit_sample(s);
        }
        self.pending = pending;
        self.pending.clear();
    }

    fn emit(&mut self, pcm: &[i16]) {
        for &s in pcm {
            self.emit_sample(s);
        }
    }

    #[inline]
    fn emit_sample(&mut self, s: i16) {
        let Some(talk) = &mut self.talk else {
            return;
        };
        if !talk.permitted {
            if self.pending.len() < PENDING_SAMPLES {
                self.pending.push(s);
            } else {
                self.shared.samples_discarded.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.chunk.push(s);
        if self.chunk.len() >= self.settings.chunk_samples() {
            talk.mic.push(&self.chunk);
            talk.sent = true;
            self.shared.chunks_sent.fetch_add(1, Ordering::Relaxed);
            self.chunk.clear();
        }
    }

    /// Sends a partial chunk now (the talk ends or the chunk size changes).
    fn flush_chunk(&mut self) {
        if let Some(talk) = &mut self.talk
            && talk.permitted
            && !self.chunk.is_empty()
        {
            talk.mic.push(&self.chunk);
            talk.sent = true;
            self.shared.chunks_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.chunk.clear();
    }

    fn end_talk(&mut self) {
        self.flush_chunk();
        let Some(talk) = self.talk.take() else {
            return;
        };
        if !talk.permitted {
            self.shared.samples_discarded.fetch_add(self.pending.len() as u64, Ordering::Relaxed);
        }
        self.pending.clear();
        if let Some(d) = &talk.ducked {
            d.duck(1.0);
        }
        self.shared.transmitting.store(false, Ordering::Relaxed);
        self.send(WorkerEvent::TalkEnded { npc: talk.npc, manual: talk.manual, sent: talk.sent });
    }

    fn push_preroll(&mut self, pcm: &[i16]) {
        let cap = self.preroll.len();
        for &s in pcm {
            self.preroll[self.preroll_pos] = s;
            self.preroll_pos = (self.preroll_pos + 1) % cap;
        }
        self.preroll_len = (self.preroll_len + pcm.len()).min(cap);
    }

    fn reset_preroll(&mut self) {
        self.preroll_len = 0;
    }
}
