//! Acoustic echo cancellation (WebRTC AEC3, through the `aec3` crate) at 16 kHz mono, and the
//! level tracker behind the half-duplex fallback.

use aec3::api::config::EchoCanceller3Config;
use aec3::api::control::EchoControl;
use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
use aec3::audio_processing::audio_buffer::AudioBuffer;

/// AEC3 works on 10 ms frames: 160 samples at 16 kHz.
pub(crate) const BLOCK: usize = 160;
/// AEC3 works at the scale of 16-bit samples.
const S16: f32 = 32768.0;

/// Removes the echo of the reference (what the speakers play) from the microphone signal.
///
/// Render and capture arrive independently, as in WebRTC: [`EchoCanceller::render`] whenever
/// reference audio is available, [`EchoCanceller::process`] for each capture block. AEC3
/// estimates the delay between them (its matched filters cover several hundred milliseconds) and
/// adapts a linear filter to the echo path, then suppresses the residual.
pub(crate) struct EchoCanceller {
    aec: EchoCanceller3,
    render: AudioBuffer,
    capture: AudioBuffer,
}

impl EchoCanceller {
    pub(crate) fn new() -> Self {
        EchoCanceller {
            aec: EchoCanceller3::new(EchoCanceller3Config::default(), 16_000, 1, 1),
            render: AudioBuffer::new(BLOCK, 1, BLOCK, 1, BLOCK),
            capture: AudioBuffer::new(BLOCK, 1, BLOCK, 1, BLOCK),
        }
    }

    /// Feeds one 10 ms block of the reference (16 kHz mono, -1..1).
    pub(crate) fn render(&mut self, block: &[f32; BLOCK]) {
        for (d, s) in self.render.channel_mut(0).iter_mut().zip(block) {
            *d = s * S16;
        }
        self.aec.analyze_render(&mut self.render);
    }

    /// Cancels echo in one 10 ms capture block (16 kHz mono, -1..1), in place.
    pub(crate) fn process(&mut self, block: &mut [f32; BLOCK]) {
        for (d, s) in self.capture.channel_mut(0).iter_mut().zip(block.iter()) {
            *d = s * S16;
        }
        self.aec.analyze_capture(&mut self.capture);
        self.aec.process_capture(&mut self.capture, false);
        for (d, s) in block.iter_mut().zip(self.capture.channel(0)) {
            *d = s / S16;
        }
    }

    /// AEC3's own estimate of its echo return loss enhancement (dB) and of the echo delay (ms).
    pub(crate) fn metrics(&self) -> (f32, i32) {
        let m = self.aec.metrics();
        (m.echo_return_loss_enhancement as f32, m.delay_ms)
    }
}

/// Whether the speakers are playing: the reference level, held for a while after it falls (the
/// room's echo tail and the output latency).
#[derive(Debug)]
pub(crate) struct PlaybackDetector {
    /// Blocks left in the hold.
    hold_left: u32,
    hold_blocks: u32,
    threshold: f32,
}

impl PlaybackDetector {
    /// `threshold_dbfs`: reference RMS above this counts as playing; `hold_ms`: how long it stays
    /// "playing" after the reference falls below it.
    pub(crate) fn new(threshold_dbfs: f32, hold_ms: u32) -> Self {
        PlaybackDetector {
            hold_left: 0,
            hold_blocks: hold_ms.div_ceil(10),
            threshold: 10f32.powf(threshold_dbfs / 20.0),
        }
    }

    pub(crate) fn observe(&mut self, block: &[f32]) {
        if rms(block) >= self.threshold {
            self.hold_left = self.hold_blocks;
        }
    }

    /// One capture block passed (the hold counts capture time).
    pub(crate) fn tick(&mut self) {
        self.hold_left = self.hold_left.saturating_sub(1);
    }

    pub(crate) fn playing(&self) -> bool {
        self.hold_left > 0
    }
}

/// Root mean square of `x` (0 for an empty slice).
pub(crate) fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}
