//! The local voice-activity gate of open-mic mode: the shared speech gate
//! ([`SpeechGate`](live_npc_client::dsp::SpeechGate): earshot scores 16 ms frames, a level floor
//! skips silence without running the network, a pitch check keeps broadband noise out), reporting
//! where in the pushed audio speech began.

pub(crate) use live_npc_client::dsp::FRAME;
/// The gate's tuning (from [`PlayerMic`](super::PlayerMic)).
pub(crate) use live_npc_client::dsp::GateRules as GateTuning;
use live_npc_client::dsp::{GateChange as Change, SpeechGate};

/// What a push changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateChange {
    /// Speech started; it began this many samples before the end of the pushed audio.
    Onset(usize),
    /// Speech ended (after the hangover).
    Offset,
}

pub(crate) struct VoiceGate(SpeechGate);

impl VoiceGate {
    pub(crate) fn new(tuning: GateTuning) -> Self {
        VoiceGate(SpeechGate::new(tuning))
    }

    pub(crate) fn set_tuning(&mut self, tuning: GateTuning) {
        self.0.set_rules(tuning);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.0.is_open()
    }

    /// Closes the gate and forgets the current frame (a new stream starts).
    pub(crate) fn reset(&mut self) {
        self.0.reset();
    }

    /// Takes 16 kHz samples; returns the last change they caused, if any.
    pub(crate) fn push(&mut self, samples: &[i16]) -> Option<GateChange> {
        let mut change = None;
        self.0.push(samples, |frame, after| match frame.change {
            // Samples of this call after the frame also lie after the onset.
            Some(Change::Opened { run }) => change = Some(GateChange::Onset(run as usize * FRAME + after)),
            Some(Change::Closed) => change = Some(GateChange::Offset),
            None => {}
        });
        change
    }
}
