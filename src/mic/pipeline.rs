//! The microphone's signal chain, without threads: convert → DC block → echo cancellation →
//! level and voice gate, in 10 ms blocks of 16 kHz mono.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::components::PlayerMic;
use super::convert::ToMono16k;
use super::echo::{BLOCK, EchoCanceller, PlaybackDetector, rms};
use super::gate::{FRAME, GateChange, GateTuning, VoiceGate};

/// Reference level (dBFS) above which the speakers count as playing (half-duplex fallback).
const PLAYBACK_THRESHOLD_DBFS: f32 = -50.0;
/// How long "playing" lasts after the reference falls silent: output latency plus the room's tail.
const PLAYBACK_HOLD_MS: u32 = 250;
/// Reference audio (16 kHz) waiting to be paired with capture: one second.
const REF_FIFO: usize = 16_000;
/// Reference blocks allowed to wait beyond the one paired with each capture block; more are fed
/// at once (the reference runs ahead, e.g. capture stalled). 300 ms is within AEC3's delay range.
const MAX_LEAD_BLOCKS: usize = 30;

/// One 10 ms block of processed microphone audio and what the chain found in it.
#[derive(Debug)]
pub struct MicFrame<'a> {
    /// 160 samples of 16 kHz mono 16-bit PCM, after echo cancellation: what would be sent.
    pub pcm: &'a [i16],
    /// RMS (0–1) of the block before echo cancellation.
    pub input_rms: f32,
    /// RMS (0–1) of the block after echo cancellation.
    pub rms: f32,
    /// Peak magnitude (0–1) of the block after echo cancellation.
    pub peak: f32,
    /// The voice gate is open (the player is talking, as far as the local VAD can tell).
    pub speech: bool,
    /// Speech started in this block: it began this many samples (16 kHz) before the block's end.
    pub onset: Option<usize>,
    /// Speech ended in this block (after the hangover).
    pub offset: bool,
    /// The speakers are playing the NPC (the reference is active, with a short hold).
    pub playback: bool,
}

/// The microphone's signal chain for one input format, without threads or devices.
///
/// The capture thread of [`NpcMicPlugin`](super::NpcMicPlugin) runs one of these; it is public
/// for tests, benchmarks and games that capture audio themselves. Feed the speaker reference
/// (the mix being played) with [`push_reference`](MicPipeline::push_reference) as it is produced
/// and microphone input with [`push_capture`](MicPipeline::push_capture); every complete 10 ms
/// of 16 kHz output comes back as a [`MicFrame`]. Nothing allocates after construction except
/// inside the echo canceller (AEC3 copies each render frame into its queue).
pub struct MicPipeline {
    capture: ToMono16k,
    reference: Option<ToMono16k>,
    chain: Chain,
}

impl std::fmt::Debug for MicPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicPipeline")
            .field("input_rate", &self.capture.rate())
            .field("input_channels", &self.capture.channels())
            .field("reference_rate", &self.reference.as_ref().map(ToMono16k::rate))
            .field("echo_cancellation", &self.chain.aec.is_some())
            .finish()
    }
}

struct Chain {
    /// Collects 16 kHz capture samples into 10 ms blocks.
    block: [f32; BLOCK],
    filled: usize,
    /// Reference at 16 kHz waiting for its capture block (ring).
    ref_fifo: Box<[f32]>,
    ref_read: usize,
    ref_len: usize,
    ref_block: [f32; BLOCK],
    pcm: [i16; BLOCK],
    dc_x: f32,
    dc_y: f32,
    want_aec: bool,
    aec: Option<Box<EchoCanceller>>,
    aec_failed: bool,
    gate: VoiceGate,
    playback: PlaybackDetector,
}

fn tuning(mic: &PlayerMic) -> GateTuning {
    let frame_ms = (FRAME * 1000 / 16_000) as u32;
    GateTuning {
        start_threshold: mic.vad_threshold.clamp(0.05, 0.99),
        stay_threshold: (mic.vad_threshold - 0.2).clamp(0.05, 0.99),
        onset_frames: mic.onset_ms.div_ceil(frame_ms).max(1),
        hangover_frames: mic.hangover_ms.div_ceil(frame_ms).max(1),
        floor: 10f32.powf(mic.vad_floor_dbfs / 20.0),
    }
}

impl MicPipeline {
    /// A chain for interleaved input at `input_rate` Hz with `input_channels` channels, tuned by
    /// `mic` (echo cancellation, voice gate).
    pub fn new(mic: &PlayerMic, input_rate: u32, input_channels: u16) -> Self {
        MicPipeline {
            capture: ToMono16k::new(input_rate, input_channels),
            reference: None,
            chain: Chain {
                block: [0.0; BLOCK],
                filled: 0,
                ref_fifo: vec![0.0; REF_FIFO].into_boxed_slice(),
                ref_read: 0,
                ref_len: 0,
                ref_block: [0.0; BLOCK],
                pcm: [0; BLOCK],
                dc_x: 0.0,
                dc_y: 0.0,
                want_aec: mic.echo_cancellation,
                aec: None,
                aec_failed: false,
                gate: VoiceGate::new(tuning(mic)),
                playback: PlaybackDetector::new(PLAYBACK_THRESHOLD_DBFS, PLAYBACK_HOLD_MS),
            },
        }
    }

    /// Declares the format of the speaker reference (interleaved, `channels` at `rate` Hz). Echo
    /// cancellation runs only once a reference exists.
    pub fn set_reference_format(&mut self, rate: u32, channels: u16) {
        self.reference = Some(ToMono16k::new(rate, channels));
        self.chain.ref_len = 0;
        if self.chain.want_aec && !self.chain.aec_failed {
            self.chain.aec = Some(Box::new(EchoCanceller::new()));
        }
    }

    /// Applies changed settings (echo cancellation on/off, gate tuning).
    pub fn set_settings(&mut self, mic: &PlayerMic) {
        self.chain.gate.set_tuning(tuning(mic));
        self.chain.want_aec = mic.echo_cancellation;
        if !mic.echo_cancellation {
            self.chain.aec = None;
        } else if self.chain.aec.is_none() && self.reference.is_some() && !self.chain.aec_failed {
            self.chain.aec = Some(Box::new(EchoCanceller::new()));
        }
    }

    /// Whether echo cancellation is running (on, with a reference, and not failed).
    pub fn echo_cancelling(&self) -> bool {
        self.chain.aec.is_some()
    }

    /// AEC3's own estimate of its echo return loss enhancement (dB) and echo delay (ms).
    pub fn echo_metrics(&self) -> Option<(f32, i32)> {
        self.chain.aec.as_ref().map(|a| a.metrics())
    }

    /// Input frames held back at most by resampling (for latency accounting).
    pub fn latency_frames(&self) -> usize {
        self.capture.latency_frames() + BLOCK * self.capture.rate() as usize / 16_000
    }

    /// Feeds speaker reference audio (interleaved, in the declared reference format).
    pub fn push_reference(&mut self, interleaved: &[f32]) {
        let Some(reference) = &mut self.reference else {
            return;
        };
        let chain = &mut self.chain;
        reference.process(interleaved, |out| chain.reference(out));
    }

    /// Feeds microphone input (interleaved, in the format given to [`MicPipeline::new`]); calls
    /// `out` for every complete 10 ms block.
    pub fn push_capture(&mut self, interleaved: &[f32], mut out: impl FnMut(&MicFrame<'_>)) {
        let chain = &mut self.chain;
        self.capture.process(interleaved, |samples| chain.capture(samples, &mut out));
    }

    /// Forgets buffered audio and closes the gate (a new input stream starts).
    pub fn reset(&mut self) {
        self.capture.reset();
        if let Some(r) = &mut self.reference {
            r.reset();
        }
        self.chain.filled = 0;
        self.chain.ref_len = 0;
        self.chain.gate.reset();
    }
}

impl Chain {
    /// Queues reference audio; it is fed to the echo canceller in step with capture, so bursts
    /// (a thread that woke late) never reach AEC3 as a jump in the echo path's delay.
    fn reference(&mut self, samples: &[f32]) {
        let cap = self.ref_fifo.len();
        for &s in samples {
            if self.ref_len == cap {
                // A full second ahead of capture: the oldest is stale.
                self.ref_read = (self.ref_read + 1) % cap;
                self.ref_len -= 1;
            }
            self.ref_fifo[(self.ref_read + self.ref_len) % cap] = s;
            self.ref_len += 1;
        }
    }

    /// Feeds the reference block that goes with the next capture block, plus any excess lead.
    fn feed_reference(&mut self) {
        let mut blocks = usize::from(self.ref_len >= BLOCK);
        blocks = blocks.max((self.ref_len / BLOCK).saturating_sub(MAX_LEAD_BLOCKS));
        let cap = self.ref_fifo.len();
        for _ in 0..blocks {
            for (i, d) in self.ref_block.iter_mut().enumerate() {
                *d = self.ref_fifo[(self.ref_read + i) % cap];
            }
            self.ref_read = (self.ref_read + BLOCK) % cap;
            self.ref_len -= BLOCK;
            self.playback.observe(&self.ref_block);
            if let Some(aec) = &mut self.aec {
                let block = &self.ref_block;
                if catch_unwind(AssertUnwindSafe(|| aec.render(block))).is_err() {
                    self.aec = None;
                    self.aec_failed = true;
                }
            }
        }
    }

    fn capture(&mut self, mut samples: &[f32], out: &mut impl FnMut(&MicFrame<'_>)) {
        while !samples.is_empty() {
            let take = (BLOCK - self.filled).min(samples.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&samples[..take]);
            self.filled += take;
            samples = &samples[take..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.block_done(out);
            }
        }
    }

    fn block_done(&mut self, out: &mut impl FnMut(&MicFrame<'_>)) {
        // DC blocker (a one-pole high-pass near 13 Hz): microphones often carry an offset that
        // would bias levels and the echo canceller.
        for s in &mut self.block {
            let y = *s - self.dc_x + 0.995 * self.dc_y;
            self.dc_x = *s;
            self.dc_y = y;
            *s = y;
        }
        let input_rms = rms(&self.block);
        self.feed_reference();
        if let Some(aec) = &mut self.aec {
            let block = &mut self.block;
            if catch_unwind(AssertUnwindSafe(|| aec.process(block))).is_err() {
                self.aec = None;
                self.aec_failed = true;
            }
        }
        let mut peak = 0.0f32;
        for (d, s) in self.pcm.iter_mut().zip(&self.block) {
            peak = peak.max(s.abs());
            *d = live_npc_client::dsp::to_i16(*s);
        }
        let change = self.gate.push(&self.pcm);
        self.playback.tick();
        out(&MicFrame {
            pcm: &self.pcm,
            input_rms,
            rms: rms(&self.block),
            peak: peak.min(1.0),
            speech: self.gate.is_open(),
            onset: match change {
                Some(GateChange::Onset(back)) => Some(back),
                _ => None,
            },
            offset: change == Some(GateChange::Offset),
            playback: self.playback.playing(),
        });
    }
}
