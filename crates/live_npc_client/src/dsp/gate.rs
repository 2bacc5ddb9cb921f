//! The speech gate both voice-activity detectors run: earshot scores 16 ms frames at 16 kHz; a
//! run of voiced frames that has a pitch opens the gate (noise has none), a run of silent frames
//! closes it. The simulator's server-side VAD and a game's open-mic gate differ only in their
//! rules and in what they do with the results.

use earshot::Detector;

use super::pitch::{FRAME, PitchCheck};

/// When the gate opens and closes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateRules {
    /// Score (0–1) a frame needs to count toward an opening.
    pub start_threshold: f32,
    /// Score below which a frame counts as silence while open.
    pub stay_threshold: f32,
    /// Consecutive voiced frames needed to open (at least one of them with a pitch).
    pub onset_frames: u32,
    /// Consecutive silent frames that close it.
    pub hangover_frames: u32,
    /// Frames quieter than this (linear RMS, full scale 1) score 0 without asking earshot, so
    /// silence costs nothing; 0 scores every frame.
    pub floor: f32,
}

/// What a frame changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateChange {
    /// The gate opened: speech started `run` frames before the end of this frame.
    Opened {
        /// Frames of the run that opened it (this one included).
        run: u32,
    },
    /// The gate closed after the hangover.
    Closed,
}

/// One scored frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateFrame {
    /// This frame's number since the last [`reset`](SpeechGate::reset), from 0.
    pub index: u64,
    /// Earshot's score (0 below the floor).
    pub score: f32,
    /// Voiced frames of the current run, this one included: while closed, and on the frame that
    /// opens the gate (0 while open and after a silent frame).
    pub run: u32,
    /// Whether the gate is open after this frame.
    pub open: bool,
    /// What it changed.
    pub change: Option<GateChange>,
}

/// The gate: framing, scoring, the onset/hangover state machine. Allocates only in
/// [`new`](SpeechGate::new).
pub struct SpeechGate {
    rules: GateRules,
    detector: Box<Detector>,
    frame: [i16; FRAME],
    prev: [i16; FRAME],
    len: usize,
    frames: u64,
    open: bool,
    run: u32,
    run_periodic: bool,
    silence: u32,
    pitch: PitchCheck,
}

impl std::fmt::Debug for SpeechGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechGate").field("rules", &self.rules).field("open", &self.open).finish_non_exhaustive()
    }
}

impl SpeechGate {
    /// A closed gate with these rules.
    pub fn new(rules: GateRules) -> Self {
        SpeechGate {
            rules,
            detector: Detector::default_boxed(),
            frame: [0; FRAME],
            prev: [0; FRAME],
            len: 0,
            frames: 0,
            open: false,
            run: 0,
            run_periodic: false,
            silence: 0,
            pitch: PitchCheck::default(),
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> GateRules {
        self.rules
    }

    /// New rules, from the next frame on.
    pub fn set_rules(&mut self, rules: GateRules) {
        self.rules = rules;
    }

    /// Whether speech is on.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Frames completed since the last [`reset`](SpeechGate::reset) (the next frame's index).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Takes 16 kHz samples; calls `on_frame` for each frame they complete, with the number of
    /// this call's samples that come after that frame.
    pub fn push(&mut self, samples: &[i16], mut on_frame: impl FnMut(&GateFrame, usize)) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.len).min(rest.len());
            self.frame[self.len..self.len + take].copy_from_slice(&rest[..take]);
            self.len += take;
            rest = &rest[take..];
            if self.len == FRAME {
                self.len = 0;
                let report = self.score_frame();
                self.prev = self.frame;
                on_frame(&report, rest.len());
            }
        }
    }

    /// Drops the samples of an incomplete frame (the stream restarts; speech state stays).
    pub fn drop_partial(&mut self) {
        self.len = 0;
    }

    /// Closes the gate without a [`GateChange`] and forgets the current run (a flush).
    pub fn close(&mut self) {
        self.open = false;
        self.run = 0;
        self.run_periodic = false;
        self.silence = 0;
    }

    /// Back to a new gate's state (same rules): a new stream.
    pub fn reset(&mut self) {
        self.close();
        self.detector.reset();
        self.len = 0;
        self.frames = 0;
        self.prev = [0; FRAME];
    }

    fn score_frame(&mut self) -> GateFrame {
        let r = self.rules;
        let index = self.frames;
        self.frames = self.frames.saturating_add(1);
        let score =
            if r.floor > 0.0 && rms(&self.frame) < r.floor { 0.0 } else { self.detector.predict_i16(&self.frame) };
        let mut change = None;
        if self.open {
            if score >= r.stay_threshold {
                self.silence = 0;
            } else {
                self.silence = self.silence.saturating_add(1);
                if self.silence >= r.hangover_frames {
                    self.close();
                    change = Some(GateChange::Closed);
                }
            }
        } else if score >= r.start_threshold {
            self.run = self.run.saturating_add(1);
            // Only computed while an opening is pending: nothing in silence or speech.
            if !self.run_periodic {
                self.run_periodic = self.pitch.periodic(&self.prev, &self.frame);
            }
            if self.run >= r.onset_frames && self.run_periodic {
                change = Some(GateChange::Opened { run: self.run });
                self.open = true;
                self.silence = 0;
            }
        } else {
            self.run = 0;
            self.run_periodic = false;
        }
        let run = if self.open && change.is_none() { 0 } else { self.run };
        GateFrame { index, score, run, open: self.open, change }
    }
}

fn rms(x: &[i16]) -> f32 {
    let sum: f32 = x.iter().map(|&s| f32::from(s) * f32::from(s)).sum();
    (sum / x.len().max(1) as f32).sqrt() / 32768.0
}
