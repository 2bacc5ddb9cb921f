//! Any rate, any channel count → 16 kHz mono `f32`: the front of the microphone chain (and of
//! the echo reference).

use live_npc_client::dsp::MonoResampler;

/// The rate the Live API takes microphone audio at.
pub const MIC_RATE: u32 = 16_000;

/// Input rates are clamped into this range so that a resampler can always be built.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 384_000;
/// Channels beyond this are ignored (no real input device has more).
const MAX_CHANNELS: usize = 64;

/// Downmixes interleaved frames to mono and resamples them to 16 kHz with the workspace's one
/// resampler ([`MonoResampler`]): common rates (44.1, 48, 22.05, 96 kHz, ...) through rubato's
/// synchronous FFT resampler (Blackman-Harris windowed sinc, exact ratio, ~10 ms chunks); a rate
/// whose ratio to 16 kHz would need chunks longer than 40 ms through a 128-tap sinc resampler.
/// Either way the anti-aliasing filter's stop band starts below 8 kHz, so nothing above 8 kHz
/// folds back, and the filter's delay is dropped at the start. Every buffer is allocated in
/// [`ToMono16k::new`]: processing never allocates.
pub(crate) struct ToMono16k {
    rate: u32,
    channels: usize,
    /// `None` only if the resampler could not be built (ruled out by the clamped rates): input
    /// then passes through unconverted rather than panicking.
    resampler: Option<MonoResampler>,
    /// Downmixed input, a block at a time.
    mono: Vec<f32>,
}

/// Frames downmixed per block.
const BLOCK: usize = 160;

impl ToMono16k {
    /// A converter for interleaved input with `channels` channels at `rate` Hz.
    pub(crate) fn new(rate: u32, channels: u16) -> Self {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        let channels = usize::from(channels).clamp(1, MAX_CHANNELS);
        let resampler = MonoResampler::new(rate, MIC_RATE).ok();
        ToMono16k { rate, channels, resampler, mono: Vec::with_capacity(BLOCK) }
    }

    /// The input rate (after clamping).
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// The input channel count (after clamping).
    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Input frames held back at most before output appears (chunking plus filter delay).
    pub(crate) fn latency_frames(&self) -> usize {
        let out = self.resampler.as_ref().map_or(0, MonoResampler::latency_frames);
        out * self.rate as usize / MIC_RATE as usize
    }

    /// Converts interleaved `input` (a partial last frame is ignored) and hands 16 kHz mono
    /// output to `emit` as it is produced.
    pub(crate) fn process(&mut self, input: &[f32], mut emit: impl FnMut(&[f32])) {
        let channels = self.channels;
        let scale = 1.0 / channels as f32;
        for block in input.chunks(BLOCK * channels) {
            self.mono.clear();
            self.mono.extend(
                block.chunks_exact(channels).map(|f| if channels == 1 { f[0] } else { f.iter().sum::<f32>() * scale }),
            );
            match &mut self.resampler {
                Some(r) => r.push(&self.mono, &mut emit),
                None => emit(&self.mono),
            }
        }
    }

    /// Forgets buffered input (a new stream starts).
    pub(crate) fn reset(&mut self) {
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_follows_the_ratio() {
        for (rate, ch) in [(44_100, 2), (48_000, 1), (22_050, 2), (8_000, 1), (44_101, 1), (16_000, 2)] {
            let mut c = ToMono16k::new(rate, ch);
            let input = vec![0.1f32; rate as usize * usize::from(ch)];
            let mut n = 0;
            c.process(&input, |o| n += o.len());
            let lag = c.latency_frames() * 16_000 / rate as usize;
            assert!(n <= 16_000 && n + lag + 16 >= 16_000, "{rate}: {n} (lag {lag})");
        }
    }
}
