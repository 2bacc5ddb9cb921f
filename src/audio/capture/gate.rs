//! The local voice-activity gate of open-mic mode: earshot scores 16 ms frames, a level floor
//! skips silence without running the network, and a pitch check keeps broadband noise out.

use earshot::Detector;

pub(crate) use live_npc_client::dsp::FRAME;
use live_npc_client::dsp::PitchCheck;

/// The gate's tuning (from [`PlayerMic`](super::PlayerMic)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateTuning {
    /// Earshot score a frame needs to count toward an onset.
    pub start_threshold: f32,
    /// Score below which a frame counts as silence once speech is on.
    pub stay_threshold: f32,
    /// Consecutive voiced frames needed for an onset.
    pub onset_frames: u32,
    /// Silence frames that end speech.
    pub hangover_frames: u32,
    /// Frames quieter than this (linear RMS) are silence without asking earshot.
    pub floor: f32,
}

/// What one frame changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateChange {
    /// Speech started; it began this many samples before the end of the current frame.
    Onset(usize),
    /// Speech ended (after the hangover).
    Offset,
}

pub(crate) struct VoiceGate {
    tuning: GateTuning,
    detector: Box<Detector>,
    frame: [i16; FRAME],
    prev: [i16; FRAME],
    len: usize,
    open: bool,
    run: u32,
    run_periodic: bool,
    silence: u32,
    pitch: PitchCheck,
}

impl VoiceGate {
    pub(crate) fn new(tuning: GateTuning) -> Self {
        VoiceGate {
            tuning,
            detector: Detector::default_boxed(),
            frame: [0; FRAME],
            prev: [0; FRAME],
            len: 0,
            open: false,
            run: 0,
            run_periodic: false,
            silence: 0,
            pitch: PitchCheck::default(),
        }
    }

    pub(crate) fn set_tuning(&mut self, tuning: GateTuning) {
        self.tuning = tuning;
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Closes the gate and forgets the current frame (a new stream starts).
    pub(crate) fn reset(&mut self) {
        self.detector.reset();
        self.len = 0;
        self.open = false;
        self.run = 0;
        self.run_periodic = false;
        self.silence = 0;
        self.prev = [0; FRAME];
    }

    /// Takes 16 kHz samples; returns the last change they caused, if any.
    pub(crate) fn push(&mut self, samples: &[i16]) -> Option<GateChange> {
        let mut change = None;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.len).min(rest.len());
            self.frame[self.len..self.len + take].copy_from_slice(&rest[..take]);
            self.len += take;
            rest = &rest[take..];
            if self.len == FRAME {
                self.len = 0;
                if let Some(c) = self.frame_done() {
                    // Samples of this call after the frame also lie after the onset.
                    change = Some(match c {
                        GateChange::Onset(back) => GateChange::Onset(back + rest.len()),
                        other => other,
                    });
                }
                self.prev = self.frame;
            }
        }
        change
    }

    fn frame_done(&mut self) -> Option<GateChange> {
        let t = self.tuning;
        let level = rms_i16(&self.frame);
        let score = if level < t.floor {
            // Below the floor nothing is speech, and earshot is not asked: silence costs nothing.
            0.0
        } else {
            self.detector.predict_i16(&self.frame)
        };
        if self.open {
            if score >= t.stay_threshold {
                self.silence = 0;
            } else {
                self.silence += 1;
                if self.silence >= t.hangover_frames {
                    self.open = false;
                    self.run = 0;
                    self.run_periodic = false;
                    return Some(GateChange::Offset);
                }
            }
            return None;
        }
        if score >= t.start_threshold {
            self.run += 1;
            if !self.run_periodic {
                self.run_periodic = self.periodic();
            }
            if self.run >= t.onset_frames && self.run_periodic {
                self.open = true;
                self.silence = 0;
                return Some(GateChange::Onset(self.run as usize * FRAME));
            }
        } else {
            self.run = 0;
            self.run_periodic = false;
        }
        None
    }

    /// Whether the last two frames have a pitch between 70 and 400 Hz.
    fn periodic(&mut self) -> bool {
        self.pitch.periodic(&self.prev, &self.frame)
    }
}

fn rms_i16(x: &[i16]) -> f32 {
    let sum: f32 = x.iter().map(|&s| f32::from(s) * f32::from(s)).sum();
    (sum / x.len().max(1) as f32).sqrt() / 32768.0
}
