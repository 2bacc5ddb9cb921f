//! One NPC's voice: the ring from the session task to the audio thread, the kira `Sound` that
//! plays it (jitter buffer, fades, metering), and the thread-safe control handle.
//!
//! Threads: [`VoiceSink`] runs on the network task (resamples, writes the ring); [`VoiceSound`]
//! runs on the audio thread (reads the ring and atomics only: no allocation, lock or log);
//! everything else reads and writes atomics in [`VoiceShared`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use kira::Frame;
use kira::info::Info;
use kira::sound::{Sound, SoundData};
use rtrb::{Consumer, Producer, RingBuffer};

use super::resample::SpeechResampler;
use crate::session::AudioSink;

/// Sample rate of Live API model audio.
pub const MODEL_RATE: u32 = 24_000;

/// What the audio thread reports to the game, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoiceEvent {
    /// The first sample of a turn was output.
    Started,
    /// The turn stopped being heard (`interrupted`: by a flush).
    Ended { interrupted: bool },
}

/// Where a voice's playback is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, bevy::reflect::Reflect)]
pub enum VoiceStatus {
    /// Nothing queued.
    #[default]
    Idle,
    /// A turn is arriving; waiting for the pre-buffer to fill.
    Buffering,
    /// Audio is being output.
    Playing,
    /// The buffer ran dry mid-turn: silence until the pre-buffer fills again.
    Rebuffering,
}

impl VoiceStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => VoiceStatus::Buffering,
            2 => VoiceStatus::Playing,
            3 => VoiceStatus::Rebuffering,
            _ => VoiceStatus::Idle,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            VoiceStatus::Idle => 0,
            VoiceStatus::Buffering => 1,
            VoiceStatus::Playing => 2,
            VoiceStatus::Rebuffering => 3,
        }
    }
}

/// An `f32` in an atomic (bit pattern), for values the audio thread publishes.
#[derive(Debug, Default)]
pub(crate) struct AtomicF32(AtomicU32);

impl AtomicF32 {
    pub(crate) fn new(v: f32) -> Self {
        AtomicF32(AtomicU32::new(v.to_bits()))
    }
    pub(crate) fn load(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub(crate) fn store(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Timing of the jitter buffer, fixed when a voice is created.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VoiceTiming {
    pub(crate) prebuffer: Duration,
    pub(crate) fade: Duration,
    pub(crate) stall_timeout: Duration,
}

/// State shared by the producer, the audio thread and the game.
#[derive(Debug)]
pub(crate) struct VoiceShared {
    /// Samples committed to the ring (stream position).
    pub(crate) written: AtomicU64,
    /// Samples the audio thread has consumed (played or skipped).
    pub(crate) read: AtomicU64,
    /// Everything before this stream position is to be dropped (flush).
    pub(crate) flush_mark: AtomicU64,
    /// The stream position where the last finished turn ends.
    pub(crate) turn_end_mark: AtomicU64,
    /// The session dropped its sink: what is queued is all there will be.
    pub(crate) producer_closed: AtomicBool,
    /// The producer's turn: `number << 1 | open` (open = audio arrived since the last turn end
    /// or flush). One atomic, so a reader never pairs a number with another turn's flag.
    pub(crate) turn_state: AtomicU64,
    /// Drop incoming audio while `turn_state` equals this (a local barge-in on that turn).
    pub(crate) discard_turn: AtomicU64,
    /// Output rate the audio thread runs at (the producer resamples to it).
    pub(crate) out_rate: AtomicU32,
    /// Pre-buffer in microseconds (changeable at run time).
    pub(crate) prebuffer_us: AtomicU32,
    /// Linear gain target set by [`VoiceControl::duck`].
    pub(crate) duck: AtomicF32,
    pub(crate) status: AtomicU8,
    pub(crate) underruns: AtomicU64,
    pub(crate) overflow_samples: AtomicU64,
    pub(crate) discarded_samples: AtomicU64,
    pub(crate) played_frames: AtomicU64,
    pub(crate) events: ArrayQueue<VoiceEvent>,
    pub(crate) events_dropped: AtomicU64,
    /// Smoothed RMS of what was output.
    pub(crate) rms: AtomicF32,
    /// Peak with a short hold.
    pub(crate) peak: AtomicF32,
    /// Zero crossings per second (smoothed, while voiced).
    pub(crate) zcr: AtomicF32,
    /// Energy of the first difference over the energy (≈ high-frequency tilt), smoothed.
    pub(crate) tilt: AtomicF32,
}

impl VoiceShared {
    pub(crate) fn new(out_rate: u32, prebuffer: Duration) -> Self {
        VoiceShared {
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            flush_mark: AtomicU64::new(0),
            turn_end_mark: AtomicU64::new(0),
            producer_closed: AtomicBool::new(false),
            turn_state: AtomicU64::new(0),
            discard_turn: AtomicU64::new(u64::MAX),
            out_rate: AtomicU32::new(out_rate),
            prebuffer_us: AtomicU32::new(prebuffer.as_micros().min(u32::MAX as u128) as u32),
            duck: AtomicF32::new(1.0),
            status: AtomicU8::new(0),
            underruns: AtomicU64::new(0),
            overflow_samples: AtomicU64::new(0),
            discarded_samples: AtomicU64::new(0),
            played_frames: AtomicU64::new(0),
            events: ArrayQueue::new(64),
            events_dropped: AtomicU64::new(0),
            rms: AtomicF32::new(0.0),
            peak: AtomicF32::new(0.0),
            zcr: AtomicF32::new(0.0),
            tilt: AtomicF32::new(0.0),
        }
    }

    pub(crate) fn status(&self) -> VoiceStatus {
        VoiceStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    fn request_flush(&self) {
        let written = self.written.load(Ordering::Acquire);
        self.flush_mark.fetch_max(written, Ordering::AcqRel);
    }
}

/// Counters of one voice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bevy::reflect::Reflect)]
pub struct VoiceStats {
    /// Gaps inside a turn: the buffer ran dry and playback resumed after re-buffering.
    pub underruns: u64,
    /// Samples (at the output rate) that did not fit in the ring and were dropped.
    pub overflow_samples: u64,
    /// Samples dropped on purpose after [`VoiceControl::flush_turn`].
    pub discarded_samples: u64,
    /// Frames output while playing.
    pub played_frames: u64,
    /// Playback events lost because the game did not read them (bounded queue).
    pub events_dropped: u64,
}

/// A cloneable, thread-safe handle on one NPC's voice: duck it or flush it from any thread
/// (e.g. the microphone's capture thread on a barge-in) without waiting for a frame.
///
/// Every method is a few atomic operations; the audio thread applies them at its next block
/// (128 frames, under 3 ms).
#[derive(Clone, Debug)]
pub struct VoiceControl {
    pub(crate) shared: Arc<VoiceShared>,
}

impl VoiceControl {
    /// Sets the voice's gain (linear, 0–1; 1 = normal). The audio thread glides to it in
    /// about 2 ms, so ducking never clicks.
    pub fn duck(&self, gain: f32) {
        let gain = if gain.is_finite() { gain.clamp(0.0, 1.0) } else { 1.0 };
        self.shared.duck.store(gain);
    }

    /// Back to full gain.
    pub fn unduck(&self) {
        self.duck(1.0);
    }

    /// The gain set by [`duck`](Self::duck).
    pub fn gain(&self) -> f32 {
        self.shared.duck.load()
    }

    /// Drops everything queued: the voice fades out within one audio block and is silent.
    /// Audio that arrives afterwards plays as a new turn.
    pub fn flush(&self) {
        self.shared.request_flush();
    }

    /// Drops everything queued and, if the model is still sending a turn, the rest of that
    /// turn as it arrives (until the session reports its end or an interruption): a local
    /// barge-in that does not wait for the server. The next turn plays normally.
    pub fn flush_turn(&self) {
        let turn = self.shared.turn_state.load(Ordering::Acquire);
        if turn & 1 == 1 {
            self.shared.discard_turn.store(turn, Ordering::Release);
        }
        self.shared.request_flush();
    }

    /// Whether audio is being output right now.
    pub fn is_playing(&self) -> bool {
        self.shared.status() == VoiceStatus::Playing
    }

    /// Where playback is.
    pub fn status(&self) -> VoiceStatus {
        self.shared.status()
    }

    /// How much audio is queued (at the output rate).
    pub fn buffered(&self) -> Duration {
        let written = self.shared.written.load(Ordering::Acquire);
        let read = self.shared.read.load(Ordering::Acquire);
        let rate = self.shared.out_rate.load(Ordering::Relaxed).max(1);
        Duration::from_secs_f64(written.saturating_sub(read) as f64 / f64::from(rate))
    }

    /// The voice's counters.
    pub fn stats(&self) -> VoiceStats {
        let s = &self.shared;
        VoiceStats {
            underruns: s.underruns.load(Ordering::Relaxed),
            overflow_samples: s.overflow_samples.load(Ordering::Relaxed),
            discarded_samples: s.discarded_samples.load(Ordering::Relaxed),
            played_frames: s.played_frames.load(Ordering::Relaxed),
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Changes the pre-buffer (applies from the next turn or re-buffer).
    pub fn set_prebuffer(&self, prebuffer: Duration) {
        self.shared.prebuffer_us.store(prebuffer.as_micros().min(u32::MAX as u128) as u32, Ordering::Relaxed);
    }
}

/// The session's side of a voice: an [`AudioSink`] that resamples 24 kHz model audio to the
/// output rate and writes it into the voice's lock-free ring. Never blocks; audio that does not
/// fit is dropped and counted ([`VoiceStats::overflow_samples`]).
pub struct VoiceSink {
    ring: Producer<f32>,
    shared: Arc<VoiceShared>,
    resampler: Option<SpeechResampler>,
    in_rate: u32,
    written: u64,
    /// `number << 1 | open`, as published in [`VoiceShared::turn_state`].
    turn_state: u64,
}

impl std::fmt::Debug for VoiceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceSink").field("written", &self.written).finish()
    }
}

/// Writes as much of `samples` as fits; returns the new stream position.
fn write_ring(ring: &mut Producer<f32>, shared: &VoiceShared, written: &mut u64, samples: &[f32]) {
    let n = samples.len().min(ring.slots());
    if n > 0
        && let Ok(chunk) = ring.write_chunk_uninit(n)
    {
        let done = chunk.fill_from_iter(samples[..n].iter().copied());
        *written += done as u64;
        shared.written.store(*written, Ordering::Release);
        if done < samples.len() {
            shared.overflow_samples.fetch_add((samples.len() - done) as u64, Ordering::Relaxed);
        }
        return;
    }
    if !samples.is_empty() {
        shared.overflow_samples.fetch_add(samples.len() as u64, Ordering::Relaxed);
    }
}

impl VoiceSink {
    fn new(ring: Producer<f32>, shared: Arc<VoiceShared>, in_rate: u32) -> Self {
        let out_rate = shared.out_rate.load(Ordering::Relaxed);
        VoiceSink {
            ring,
            shared,
            resampler: SpeechResampler::new(in_rate, out_rate).ok(),
            in_rate,
            written: 0,
            turn_state: 0,
        }
    }

    /// A control handle on the same voice.
    pub fn control(&self) -> VoiceControl {
        VoiceControl { shared: self.shared.clone() }
    }

    /// Ends the current turn (its number moves on, so a pending `flush_turn` no longer applies).
    fn next_turn(&mut self) {
        self.turn_state = ((self.turn_state >> 1) + 1) << 1;
        self.shared.turn_state.store(self.turn_state, Ordering::Release);
    }

    /// Follows a change of the output rate (a new device): rebuilt off the audio thread.
    fn check_rate(&mut self) {
        let out_rate = self.shared.out_rate.load(Ordering::Relaxed);
        if self.resampler.as_ref().is_none_or(|r| r.output_rate() != out_rate) {
            self.resampler = SpeechResampler::new(self.in_rate, out_rate).ok();
        }
    }
}

impl AudioSink for VoiceSink {
    fn push(&mut self, pcm: &[i16]) {
        if self.ring.is_abandoned() {
            return;
        }
        if self.turn_state & 1 == 0 {
            self.turn_state |= 1;
            self.shared.turn_state.store(self.turn_state, Ordering::Release);
        }
        if self.shared.discard_turn.load(Ordering::Acquire) == self.turn_state {
            let rate = self.shared.out_rate.load(Ordering::Relaxed) as u64;
            let n = pcm.len() as u64 * rate / u64::from(self.in_rate.max(1));
            self.shared.discarded_samples.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.check_rate();
        let Some(resampler) = self.resampler.as_mut() else {
            return;
        };
        let (ring, shared, written) = (&mut self.ring, &*self.shared, &mut self.written);
        resampler.process(pcm, |out| write_ring(ring, shared, written, out));
    }

    fn flush(&mut self) {
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
        self.next_turn();
        self.shared.request_flush();
    }

    fn end_of_turn(&mut self) {
        let discarding = self.shared.discard_turn.load(Ordering::Acquire) == self.turn_state;
        if let Some(r) = self.resampler.as_mut() {
            if discarding {
                r.reset();
            } else {
                let (ring, shared, written) = (&mut self.ring, &*self.shared, &mut self.written);
                r.finish(|out| write_ring(ring, shared, written, out));
            }
        }
        self.shared.turn_end_mark.store(self.written, Ordering::Release);
        self.next_turn();
    }
}

impl Drop for VoiceSink {
    fn drop(&mut self) {
        self.shared.producer_closed.store(true, Ordering::Release);
    }
}

/// Creates the two ends of a voice: the sink for the session, and the sound for kira.
pub(crate) fn voice_pair(
    out_rate: u32,
    capacity: usize,
    timing: VoiceTiming,
) -> (VoiceSink, VoiceSound, Arc<VoiceShared>) {
    let shared = Arc::new(VoiceShared::new(out_rate, timing.prebuffer));
    let (producer, consumer) = RingBuffer::new(capacity.max(1024));
    let sink = VoiceSink::new(producer, shared.clone(), MODEL_RATE);
    let sound = VoiceSound::new(consumer, shared.clone(), timing, out_rate);
    (sink, sound, shared)
}

/// The voice as a kira [`Sound`]: a jitter buffer in front of the ring.
///
/// Runs on the audio thread. It reads the ring and atomics, writes atomics and pushes to a
/// lock-free queue; it never allocates, locks or logs.
pub(crate) struct VoiceSound {
    ring: Consumer<f32>,
    shared: Arc<VoiceShared>,
    state: VoiceStatus,
    /// Stream position consumed.
    read: u64,
    rate: u32,
    timing: VoiceTiming,
    fade_frames: usize,
    /// Per-sample multiplier of the decaying tail that replaces a missing sample stream.
    tail_decay: f32,
    /// The value the output decays from when the stream stops (continuity: no step).
    tail: f32,
    /// Fade-in progress in frames (`fade_frames` = done).
    fade_in: usize,
    gain: f32,
    gain_coeff: f32,
    /// Frames spent re-buffering.
    stalled: u64,
    prev_sample: f32,
    env_rms: f32,
    env_peak: f32,
    env_zcr: f32,
    env_tilt: f32,
}

impl VoiceSound {
    fn new(ring: Consumer<f32>, shared: Arc<VoiceShared>, timing: VoiceTiming, rate: u32) -> Self {
        let mut s = VoiceSound {
            ring,
            shared,
            state: VoiceStatus::Idle,
            read: 0,
            rate: 0,
            timing,
            fade_frames: 1,
            tail_decay: 0.0,
            tail: 0.0,
            fade_in: 0,
            gain: 1.0,
            gain_coeff: 0.0,
            stalled: 0,
            prev_sample: 0.0,
            env_rms: 0.0,
            env_peak: 0.0,
            env_zcr: 0.0,
            env_tilt: 0.0,
        };
        s.set_rate(rate);
        s
    }

    fn set_rate(&mut self, rate: u32) {
        let rate = rate.max(1);
        self.rate = rate;
        self.fade_frames = ((self.timing.fade.as_secs_f64() * f64::from(rate)) as usize).max(1);
        // The tail falls by 60 dB over the fade time.
        self.tail_decay = (-6.9 / self.fade_frames as f32).exp();
        // The duck gain glides with a ~1 ms time constant (settled within ~5 ms).
        self.gain_coeff = 1.0 - (-1.0 / (0.001 * rate as f32)).exp();
        self.shared.out_rate.store(rate, Ordering::Relaxed);
    }

    fn prebuffer_frames(&self) -> usize {
        let us = u64::from(self.shared.prebuffer_us.load(Ordering::Relaxed));
        (us * u64::from(self.rate) / 1_000_000) as usize
    }

    fn emit(&self, event: VoiceEvent) {
        if self.shared.events.push(event).is_err() {
            self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves `n` samples from the ring into `out` (as mono in `.left`), with a linear gain ramp
    /// `from → to` across them (1 → 1 for plain copy). Returns how many were copied.
    fn take(&mut self, out: &mut [Frame], ramp: Option<(f32, f32)>) -> usize {
        let n = out.len().min(self.ring.slots());
        if n == 0 {
            return 0;
        }
        let Ok(chunk) = self.ring.read_chunk(n) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        for (i, (o, s)) in out.iter_mut().zip(a.iter().chain(b)).enumerate() {
            let mut v = *s;
            if let Some((from, to)) = ramp {
                let t = (i + 1) as f32 / n as f32;
                v *= from + (to - from) * t;
            } else if self.fade_in < self.fade_frames {
                self.fade_in += 1;
                v *= self.fade_in as f32 / self.fade_frames as f32;
            }
            o.left = v;
        }
        chunk.commit_all();
        self.read += n as u64;
        n
    }

    /// Drops `n` queued samples without playing them.
    fn skip(&mut self, n: usize) {
        let n = n.min(self.ring.slots());
        if n > 0
            && let Ok(chunk) = self.ring.read_chunk(n)
        {
            chunk.commit_all();
            self.read += n as u64;
        }
    }

    /// Fills `out` with the decaying tail (silence once it has decayed).
    fn silence(&mut self, out: &mut [Frame]) {
        for o in out {
            o.left = self.tail;
            self.tail *= self.tail_decay;
            if self.tail.abs() < 1e-7 {
                self.tail = 0.0;
            }
        }
    }

    fn start_playing(&mut self) {
        self.state = VoiceStatus::Playing;
        self.fade_in = 0;
        self.stalled = 0;
    }

    /// Runs the jitter buffer for one block, writing mono samples into `out[..].left`.
    fn fill(&mut self, out: &mut [Frame]) {
        let n = out.len();
        let mut i = 0;
        // A flush: fade out over the next samples that would have played, skip the rest.
        let flush = self.shared.flush_mark.load(Ordering::Acquire);
        if flush > self.read {
            let pending = (flush - self.read).min(usize::MAX as u64) as usize;
            let heard = matches!(self.state, VoiceStatus::Playing | VoiceStatus::Rebuffering);
            if self.state == VoiceStatus::Playing {
                let k = self.fade_frames.min(n).min(pending);
                i = self.take(&mut out[..k], Some((1.0, 0.0)));
                self.tail = 0.0;
            }
            let consumed = i;
            self.skip(pending - consumed);
            if heard {
                self.emit(VoiceEvent::Ended { interrupted: true });
            }
            self.state = VoiceStatus::Idle;
        }
        while i < n {
            match self.state {
                VoiceStatus::Idle => {
                    if self.ring.slots() > 0 {
                        self.state = VoiceStatus::Buffering;
                        continue;
                    }
                    self.silence(&mut out[i..]);
                    i = n;
                }
                VoiceStatus::Buffering | VoiceStatus::Rebuffering => {
                    let available = self.ring.slots();
                    let end_queued = self.shared.turn_end_mark.load(Ordering::Acquire) > self.read
                        || self.shared.producer_closed.load(Ordering::Acquire);
                    if available > 0 && (available >= self.prebuffer_frames() || end_queued) {
                        if self.state == VoiceStatus::Buffering {
                            self.emit(VoiceEvent::Started);
                        } else {
                            self.shared.underruns.fetch_add(1, Ordering::Relaxed);
                        }
                        self.start_playing();
                        continue;
                    }
                    if self.state == VoiceStatus::Rebuffering {
                        self.stalled += (n - i) as u64;
                        let limit = self.timing.stall_timeout.as_secs_f64() * f64::from(self.rate);
                        if self.stalled as f64 >= limit {
                            self.emit(VoiceEvent::Ended { interrupted: false });
                            self.state = VoiceStatus::Idle;
                        }
                    }
                    self.silence(&mut out[i..]);
                    i = n;
                }
                VoiceStatus::Playing => {
                    let got = self.take(&mut out[i..], None);
                    i += got;
                    if i > 0 {
                        self.tail = out[i - 1].left;
                    }
                    if i < n {
                        // The ring ran dry: the turn's end, or a gap (re-buffer).
                        let turn_end = self.shared.turn_end_mark.load(Ordering::Acquire);
                        if turn_end >= self.read || self.shared.producer_closed.load(Ordering::Acquire) {
                            self.emit(VoiceEvent::Ended { interrupted: false });
                            self.state = VoiceStatus::Idle;
                        } else {
                            self.state = VoiceStatus::Rebuffering;
                            self.stalled = 0;
                        }
                        self.silence(&mut out[i..]);
                        i = n;
                    }
                }
            }
        }
    }

    /// Applies the duck gain and measures what is heard.
    fn finish_block(&mut self, out: &mut [Frame]) {
        let target = self.shared.duck.load();
        let (mut sum_sq, mut peak, mut diff_sq, mut crossings) = (0.0f32, 0.0f32, 0.0f32, 0u32);
        let mut prev = self.prev_sample;
        for o in out.iter_mut() {
            self.gain += (target - self.gain) * self.gain_coeff;
            let v = o.left * self.gain;
            *o = Frame::from_mono(v);
            sum_sq += v * v;
            peak = peak.max(v.abs());
            let d = v - prev;
            diff_sq += d * d;
            if (v >= 0.0) != (prev >= 0.0) {
                crossings += 1;
            }
            prev = v;
        }
        self.prev_sample = prev;
        let n = out.len().max(1) as f32;
        let block_secs = n / self.rate as f32;
        let rms = (sum_sq / n).sqrt();
        // Fast attack, slower release: a mouth opens quickly and closes softly.
        let tc = if rms > self.env_rms { 0.010 } else { 0.060 };
        self.env_rms += (rms - self.env_rms) * (1.0 - (-block_secs / tc).exp());
        if self.env_rms < 1e-6 {
            self.env_rms = 0.0;
        }
        self.env_peak = peak.max(self.env_peak * (-block_secs / 0.150).exp());
        if self.env_peak < 1e-6 {
            self.env_peak = 0.0;
        }
        // Spectral shape only while voiced: silence says nothing about the mouth.
        if rms > 1e-3 {
            let k = 1.0 - (-block_secs / 0.030).exp();
            self.env_zcr += (crossings as f32 / block_secs - self.env_zcr) * k;
            self.env_tilt += (diff_sq / sum_sq.max(1e-12) - self.env_tilt) * k;
        }
        let s = &self.shared;
        s.rms.store(self.env_rms);
        s.peak.store(self.env_peak);
        s.zcr.store(self.env_zcr);
        s.tilt.store(self.env_tilt);
        s.read.store(self.read, Ordering::Release);
        s.status.store(self.state.as_u8(), Ordering::Relaxed);
        if self.state == VoiceStatus::Playing {
            s.played_frames.fetch_add(out.len() as u64, Ordering::Relaxed);
        }
    }
}

impl Sound for VoiceSound {
    fn process(&mut self, out: &mut [Frame], dt: f64, _info: &Info) {
        let rate = if dt > 0.0 { (1.0 / dt).round() as u32 } else { self.rate };
        if rate != self.rate {
            self.set_rate(rate);
        }
        self.fill(out);
        self.finish_block(out);
    }

    fn finished(&self) -> bool {
        // The voice lives as long as its track; removing the track ends it.
        false
    }
}

/// Hands a [`VoiceSound`] to kira.
pub(crate) struct VoiceSoundData(pub(crate) VoiceSound);

impl SoundData for VoiceSoundData {
    type Error = std::convert::Infallible;
    type Handle = ();

    fn into_sound(self) -> Result<(Box<dyn Sound>, Self::Handle), Self::Error> {
        Ok((Box::new(self.0), ()))
    }
}

/// A Bevy vector as kira takes it.
pub(crate) fn mint_vec(v: bevy::math::Vec3) -> mint::Vector3<f32> {
    mint::Vector3 { x: v.x, y: v.y, z: v.z }
}

/// A Bevy rotation as kira takes it.
pub(crate) fn mint_quat(q: bevy::math::Quat) -> mint::Quaternion<f32> {
    mint::Quaternion { v: mint::Vector3 { x: q.x, y: q.y, z: q.z }, s: q.w }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn timing() -> VoiceTiming {
        VoiceTiming {
            prebuffer: Duration::from_millis(60),
            fade: Duration::from_millis(2),
            stall_timeout: Duration::from_millis(500),
        }
    }

    fn render(sound: &mut VoiceSound, frames: usize) -> Vec<f32> {
        let mut out = vec![Frame::ZERO; frames];
        sound.fill(&mut out);
        sound.finish_block(&mut out);
        out.iter().map(|f| f.left).collect()
    }

    fn tone(n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f32 * 0.1).sin() * 10000.0) as i16).collect()
    }

    fn events(shared: &VoiceShared) -> Vec<VoiceEvent> {
        std::iter::from_fn(|| shared.events.pop()).collect()
    }

    #[test]
    fn prebuffer_then_play_then_end() {
        let (mut sink, mut sound, shared) = voice_pair(RATE, RATE as usize, timing());
        sink.push(&tone(24 * 40)); // 40 ms < 60 ms pre-buffer
        assert!(render(&mut sound, 128).iter().all(|s| *s == 0.0));
        assert_eq!(shared.status(), VoiceStatus::Buffering);
        assert!(events(&shared).is_empty());
        sink.push(&tone(24 * 40));
        assert!(render(&mut sound, 128).iter().any(|s| *s != 0.0));
        assert_eq!(events(&shared), vec![VoiceEvent::Started]);
        sink.end_of_turn();
        for _ in 0..40 {
            render(&mut sound, 128);
        }
        assert_eq!(events(&shared), vec![VoiceEvent::Ended { interrupted: false }]);
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 0);
        assert_eq!(shared.read.load(Ordering::Relaxed), shared.written.load(Ordering::Relaxed));
    }

    #[test]
    fn short_turn_plays_without_full_prebuffer() {
        let (mut sink, mut sound, shared) = voice_pair(RATE, RATE as usize, timing());
        sink.push(&tone(24 * 10));
        sink.end_of_turn();
        assert!(render(&mut sound, 128).iter().any(|s| *s != 0.0));
        assert_eq!(events(&shared), vec![VoiceEvent::Started]);
    }

    #[test]
    fn flush_is_silent_within_one_block() {
        let (mut sink, mut sound, shared) = voice_pair(RATE, RATE as usize, timing());
        sink.push(&tone(24_000));
        render(&mut sound, 128);
        sink.flush();
        let block = render(&mut sound, 128);
        let fade = (0.002 * RATE as f64) as usize;
        assert!(block[fade..].iter().all(|s| *s == 0.0), "{:?}", &block[fade - 2..fade + 2]);
        // The fade is a ramp, not a step.
        let steps = block.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max);
        assert!(steps < 0.05, "step {steps}");
        assert!(render(&mut sound, 128).iter().all(|s| *s == 0.0));
        assert_eq!(events(&shared), vec![VoiceEvent::Started, VoiceEvent::Ended { interrupted: true }]);
        // Audio after the flush is a new turn.
        sink.push(&tone(24 * 100));
        render(&mut sound, 128);
        assert_eq!(events(&shared), vec![VoiceEvent::Started]);
    }

    #[test]
    fn underrun_decays_and_is_counted_once() {
        let (mut sink, mut sound, shared) = voice_pair(RATE, RATE as usize, timing());
        sink.push(&tone(24 * 70));
        let mut out = Vec::new();
        for _ in 0..40 {
            out.extend(render(&mut sound, 128));
        }
        // No step larger than the signal's own slope when the buffer runs dry.
        let max_step = out.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max);
        assert!(max_step < 0.05, "step {max_step}");
        assert_eq!(shared.status(), VoiceStatus::Rebuffering);
        sink.push(&tone(24 * 70));
        for _ in 0..5 {
            render(&mut sound, 128);
        }
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 1);
        assert_eq!(events(&shared), vec![VoiceEvent::Started]);
    }

    #[test]
    fn flush_turn_discards_until_turn_end() {
        let (mut sink, mut sound, shared) = voice_pair(RATE, RATE as usize, timing());
        let control = sink.control();
        sink.push(&tone(24 * 100));
        render(&mut sound, 128);
        control.flush_turn();
        sink.push(&tone(24 * 100));
        render(&mut sound, 128);
        assert!(render(&mut sound, 128).iter().all(|s| *s == 0.0));
        assert!(shared.discarded_samples.load(Ordering::Relaxed) > 0);
        sink.end_of_turn();
        sink.push(&tone(24 * 100));
        assert!(render(&mut sound, 128).iter().any(|s| *s != 0.0));
    }

    #[test]
    fn flush_turn_after_the_turn_ended_keeps_the_next_turn() {
        let (mut sink, mut sound, _shared) = voice_pair(RATE, RATE as usize, timing());
        let control = sink.control();
        sink.push(&tone(24 * 500));
        sink.end_of_turn();
        render(&mut sound, 128);
        // The model's turn is complete on the network but still playing: the player barges in.
        control.flush_turn();
        assert!(render(&mut sound, 256)[128..].iter().all(|s| *s == 0.0));
        // The model's answer to the barge-in plays.
        sink.push(&tone(24 * 100));
        assert!(render(&mut sound, 128).iter().any(|s| *s != 0.0));
    }

    #[test]
    fn duck_glides() {
        let (mut sink, mut sound, _shared) = voice_pair(RATE, RATE as usize, timing());
        let control = sink.control();
        sink.push(&vec![16384; 24 * 200]);
        for _ in 0..3 {
            render(&mut sound, 128);
        }
        control.duck(0.25);
        let block = render(&mut sound, 512);
        assert!(block[0] > 0.4 && (block[511] - 0.125).abs() < 0.01, "{} {}", block[0], block[511]);
    }
}
