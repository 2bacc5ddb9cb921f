//! Any rate, any channel count → 16 kHz mono `f32`: the front of the microphone chain (and of
//! the echo reference).

use rubato::{
    FftFixedInOut, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
    calculate_cutoff,
};

/// The rate the Live API takes microphone audio at.
pub const MIC_RATE: u32 = 16_000;

/// Input rates are clamped into this range so that a resampler can always be built.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 384_000;
/// Channels beyond this are ignored (no real input device has more).
const MAX_CHANNELS: usize = 64;

/// Downmixes interleaved frames to mono and resamples them to 16 kHz.
///
/// Common rates (44.1, 48, 22.05, 96 kHz, ...) use rubato's synchronous FFT resampler
/// (Blackman-Harris windowed sinc, exact ratio, ~10 ms chunks); a rate whose ratio to 16 kHz
/// would need chunks longer than 40 ms falls back to a 128-tap sinc resampler. Either way the
/// anti-aliasing filter's stop band starts below 8 kHz, so nothing above 8 kHz folds back. The
/// resampler's own delay is dropped at the start. Every buffer is allocated in
/// [`ToMono16k::new`]: processing never allocates.
pub(crate) struct ToMono16k {
    rate: u32,
    channels: usize,
    kind: Kind,
}

enum Kind {
    /// 16 kHz input: downmix only.
    Pass,
    Fft(Box<Stage<FftFixedInOut<f32>>>),
    Sinc(Box<Stage<SincFixedIn<f32>>>),
}

struct Stage<R> {
    inner: R,
    input: [Vec<f32>; 1],
    filled: usize,
    output: [Vec<f32>; 1],
    /// Output samples still to drop (the filter's delay), at the start of a stream.
    skip: usize,
}

impl<R: Resampler<f32>> Stage<R> {
    fn new(inner: R) -> Self {
        let skip = inner.output_delay();
        let input = [vec![0.0; inner.input_frames_max()]];
        let output = [vec![0.0; inner.output_frames_max()]];
        Stage { inner, input, filled: 0, output, skip }
    }

    /// Takes one mono sample; when a chunk is complete, resamples it and emits the output.
    #[inline]
    fn push(&mut self, sample: f32, emit: &mut impl FnMut(&[f32])) {
        self.input[0][self.filled] = sample;
        self.filled += 1;
        if self.filled < self.inner.input_frames_next() {
            return;
        }
        self.filled = 0;
        // Sizes are fixed at construction, so this cannot fail; if it did, the chunk is dropped.
        let Ok((_, produced)) = self.inner.process_into_buffer(&self.input, &mut self.output, None) else {
            return;
        };
        let out = &self.output[0][..produced];
        let skip = self.skip.min(out.len());
        self.skip -= skip;
        if skip < out.len() {
            emit(&out[skip..]);
        }
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.filled = 0;
        self.skip = self.inner.output_delay();
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl ToMono16k {
    /// A converter for interleaved input with `channels` channels at `rate` Hz.
    pub(crate) fn new(rate: u32, channels: u16) -> Self {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        let channels = usize::from(channels).clamp(1, MAX_CHANNELS);
        let kind = if rate == MIC_RATE {
            Kind::Pass
        } else {
            let chunk = (rate / 100).max(16) as usize;
            let min_chunk = (rate / gcd(rate, MIC_RATE)) as usize;
            let fft = if min_chunk <= (rate / 25) as usize {
                FftFixedInOut::<f32>::new(rate as usize, MIC_RATE as usize, chunk, 1).ok()
            } else {
                None
            };
            match fft {
                Some(fft) => Kind::Fft(Box::new(Stage::new(fft))),
                None => {
                    let sinc_len = 128;
                    let window = WindowFunction::BlackmanHarris2;
                    let params = SincInterpolationParameters {
                        sinc_len,
                        f_cutoff: calculate_cutoff(sinc_len, window),
                        oversampling_factor: 256,
                        interpolation: SincInterpolationType::Linear,
                        window,
                    };
                    let ratio = f64::from(MIC_RATE) / f64::from(rate);
                    match SincFixedIn::<f32>::new(ratio, 1.0, params, chunk, 1) {
                        Ok(sinc) => Kind::Sinc(Box::new(Stage::new(sinc))),
                        // Unreachable with clamped rates; degrade to no conversion rather than panic.
                        Err(_) => Kind::Pass,
                    }
                }
            }
        };
        ToMono16k { rate, channels, kind }
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
        match &self.kind {
            Kind::Pass => 0,
            Kind::Fft(s) => s.inner.input_frames_max() * 3 / 2,
            Kind::Sinc(s) => s.inner.input_frames_max() + 64 * self.rate as usize / MIC_RATE as usize,
        }
    }

    /// Converts interleaved `input` (a partial last frame is ignored) and hands 16 kHz mono
    /// output to `emit` as it is produced.
    pub(crate) fn process(&mut self, input: &[f32], mut emit: impl FnMut(&[f32])) {
        let channels = self.channels;
        let scale = 1.0 / channels as f32;
        let frames =
            input.chunks_exact(channels).map(|f| if channels == 1 { f[0] } else { f.iter().sum::<f32>() * scale });
        match &mut self.kind {
            Kind::Pass => {
                // Pass-through in small blocks so the caller sees bounded slices.
                let mut block = [0.0f32; 160];
                let mut n = 0;
                for s in frames {
                    block[n] = s;
                    n += 1;
                    if n == block.len() {
                        emit(&block);
                        n = 0;
                    }
                }
                if n > 0 {
                    emit(&block[..n]);
                }
            }
            Kind::Fft(stage) => frames.for_each(|s| stage.push(s, &mut emit)),
            Kind::Sinc(stage) => frames.for_each(|s| stage.push(s, &mut emit)),
        }
    }

    /// Forgets buffered input (a new stream starts).
    pub(crate) fn reset(&mut self) {
        match &mut self.kind {
            Kind::Pass => {}
            Kind::Fft(s) => s.reset(),
            Kind::Sinc(s) => s.reset(),
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
