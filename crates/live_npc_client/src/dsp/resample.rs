//! The one way the workspace resamples mono audio: the voices (24 kHz → the output rate), the
//! microphone (any rate → 16 kHz), the simulator's VAD and its espeak voice all stream through a
//! [`MonoResampler`].
//!
//! Rates whose exact ratio fits chunks of at most 40 ms use rubato's synchronous FFT resampler
//! (`Fft`, both sides fixed, Blackman-Harris windowed sinc, 10 ms chunks); any other pair falls
//! back to rubato's 128-tap windowed-sinc resampler (`Async::new_sinc`, fixed input). Either way the filter's delay is removed at the start of a
//! stream, [`finish`](MonoResampler::finish) flushes the tail so that `n` input samples give
//! exactly `round(n × to / from)` output samples, aligned with the input, and every buffer is
//! allocated in [`new`](MonoResampler::new): processing never allocates.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Input chunk: 10 ms. Smaller chunks add FFT overhead; larger ones hold back more audio.
const CHUNK_MS: u32 = 10;
/// The FFT resampler is used while the exact ratio's smallest chunk is at most this long.
const MAX_FFT_CHUNK_MS: u32 = 40;
/// Highest rate accepted (rates can come from files and devices: larger ones are errors, so no
/// size computed from them overflows or allocates without bound).
pub const MAX_RATE: u32 = 1_536_000;
/// Largest block handed to the caller by the pass-through (same rates).
const PASS_BLOCK: usize = 1024;

/// Why a resampler could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResampleError(pub String);

impl std::fmt::Display for ResampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ResampleError {}

/// A streaming mono resampler (see the module docs).
pub struct MonoResampler {
    from: u32,
    to: u32,
    kind: Kind,
    /// Input samples of the current stream.
    in_total: u64,
    /// Output samples of the current stream handed to the caller.
    out_total: u64,
    /// `i16` input converted to `f32`, for [`push_i16`](MonoResampler::push_i16).
    scratch: Vec<f32>,
}

enum Kind {
    Pass,
    Fft(Box<Stage>),
    Sinc(Box<Stage>),
}

struct Stage {
    inner: Box<dyn Resampler<f32>>,
    input: Vec<f32>,
    filled: usize,
    output: Vec<f32>,
    /// Output frames still to drop at the start of a stream.
    skip: usize,
    /// The filter's delay in output frames, dropped at the start of each stream.
    delay: usize,
}

impl std::fmt::Debug for MonoResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Pass => "pass",
            Kind::Fft(_) => "fft",
            Kind::Sinc(_) => "sinc",
        };
        f.debug_struct("MonoResampler").field("from", &self.from).field("to", &self.to).field("kind", &kind).finish()
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl MonoResampler {
    /// A resampler from `from` Hz to `to` Hz.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        if !(1..=MAX_RATE).contains(&from) || !(1..=MAX_RATE).contains(&to) {
            return Err(ResampleError(format!("invalid sample rates {from} → {to} (1 Hz to {MAX_RATE} Hz)")));
        }
        let err = |e: String| ResampleError(format!("resampler {from} → {to}: {e}"));
        let kind = if from == to {
            Kind::Pass
        } else {
            // Rates are at most MAX_RATE, so these products fit a u32.
            let chunk = (from * CHUNK_MS / 1000).max(16) as usize;
            let min_chunk = from / gcd(from, to);
            let fft = if min_chunk <= from * MAX_FFT_CHUNK_MS / 1000 {
                Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Both).ok()
            } else {
                None
            };
            match fft {
                Some(fft) => {
                    let delay = fft.output_delay();
                    Kind::Fft(Box::new(Stage::new(Box::new(fft), delay)))
                }
                None => {
                    let params = SincInterpolationParameters {
                        sinc_len: 128,
                        // The highest cutoff that keeps aliasing below the window's sidelobes.
                        f_cutoff: None,
                        oversampling_factor: 256,
                        interpolation: SincInterpolationType::Linear,
                        window: WindowFunction::BlackmanHarris2,
                    };
                    let ratio = f64::from(to) / f64::from(from);
                    let sinc = Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input)
                        .map_err(|e| err(e.to_string()))?;
                    let delay = sinc.output_delay();
                    Kind::Sinc(Box::new(Stage::new(Box::new(sinc), delay)))
                }
            }
        };
        Ok(MonoResampler { from, to, kind, in_total: 0, out_total: 0, scratch: vec![0.0; PASS_BLOCK] })
    }

    /// The input rate.
    pub fn input_rate(&self) -> u32 {
        self.from
    }

    /// The output rate.
    pub fn output_rate(&self) -> u32 {
        self.to
    }

    /// Whether rates differ (otherwise samples pass through).
    pub fn is_converting(&self) -> bool {
        !matches!(self.kind, Kind::Pass)
    }

    /// Output frames held back at most (a chunk plus the filter's delay).
    pub fn latency_frames(&self) -> usize {
        match &self.kind {
            Kind::Pass => 0,
            Kind::Fft(s) | Kind::Sinc(s) => s.output.len() + s.delay,
        }
    }

    /// Resamples `x`, handing finished output to `emit` (possibly several times, possibly not at
    /// all while a chunk fills).
    pub fn push(&mut self, x: &[f32], mut emit: impl FnMut(&[f32])) {
        self.in_total = self.in_total.saturating_add(x.len() as u64);
        let produced = match &mut self.kind {
            Kind::Pass => {
                for part in x.chunks(PASS_BLOCK) {
                    emit(part);
                }
                x.len()
            }
            Kind::Fft(s) | Kind::Sinc(s) => s.push(x, |v| v, &mut emit),
        };
        self.out_total = self.out_total.saturating_add(produced as u64);
    }

    /// [`push`](MonoResampler::push) for 16-bit samples (scaled to ±1), converted straight into
    /// the resampler's input.
    pub fn push_i16(&mut self, x: &[i16], mut emit: impl FnMut(&[f32])) {
        self.in_total = self.in_total.saturating_add(x.len() as u64);
        let to_f32 = |s: i16| f32::from(s) / 32768.0;
        let produced = match &mut self.kind {
            Kind::Pass => {
                for part in x.chunks(PASS_BLOCK) {
                    let buf = &mut self.scratch[..part.len()];
                    for (o, s) in buf.iter_mut().zip(part) {
                        *o = to_f32(*s);
                    }
                    emit(buf);
                }
                x.len()
            }
            Kind::Fft(s) | Kind::Sinc(s) => s.push(x, to_f32, &mut emit),
        };
        self.out_total = self.out_total.saturating_add(produced as u64);
    }

    /// Ends the stream: emits the held-back tail, exactly up to the input's length, and resets
    /// for the next stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[f32])) {
        let target =
            (u128::from(self.in_total) * u128::from(self.to) + u128::from(self.from / 2)) / u128::from(self.from);
        let target = u64::try_from(target).unwrap_or(u64::MAX);
        // Each zero-padded chunk pushes out about one chunk of output; the delay bounds how many.
        for _ in 0..8 {
            if self.out_total >= target {
                break;
            }
            let want = usize::try_from(target - self.out_total).unwrap_or(usize::MAX);
            let produced = match &mut self.kind {
                Kind::Pass => break,
                Kind::Fft(s) | Kind::Sinc(s) => s.pad(want, &mut emit),
            };
            self.out_total = self.out_total.saturating_add(produced as u64);
        }
        self.reset();
    }

    /// Drops everything held and starts a new stream.
    pub fn reset(&mut self) {
        match &mut self.kind {
            Kind::Pass => {}
            Kind::Fft(s) | Kind::Sinc(s) => s.reset(),
        }
        self.in_total = 0;
        self.out_total = 0;
    }
}

impl Stage {
    /// A stage whose first `delay` output frames of each stream are dropped.
    fn new(inner: Box<dyn Resampler<f32>>, delay: usize) -> Self {
        let input = vec![0.0; inner.input_frames_max()];
        let output = vec![0.0; inner.output_frames_max()];
        Stage { inner, input, filled: 0, output, skip: delay, delay }
    }

    /// Takes `x` (converted by `to_f32`) into chunks; returns the frames emitted.
    fn push<S: Copy>(&mut self, mut x: &[S], to_f32: impl Fn(S) -> f32, emit: &mut impl FnMut(&[f32])) -> usize {
        let mut emitted = 0;
        while !x.is_empty() {
            let chunk = self.inner.input_frames_next().min(self.input.len());
            if chunk == 0 {
                break;
            }
            let take = chunk.saturating_sub(self.filled).min(x.len());
            for (o, v) in self.input[self.filled..self.filled + take].iter_mut().zip(&x[..take]) {
                *o = to_f32(*v);
            }
            self.filled += take;
            x = &x[take..];
            if self.filled >= chunk {
                emitted += self.run_chunk(usize::MAX, emit);
            }
        }
        emitted
    }

    /// Pads the current chunk with silence and runs it; emits at most `limit` frames.
    fn pad(&mut self, limit: usize, emit: &mut impl FnMut(&[f32])) -> usize {
        let chunk = self.inner.input_frames_next().min(self.input.len());
        self.input[self.filled.min(chunk)..chunk].fill(0.0);
        self.filled = chunk;
        self.run_chunk(limit, emit)
    }

    fn run_chunk(&mut self, limit: usize, emit: &mut impl FnMut(&[f32])) -> usize {
        let frames = std::mem::take(&mut self.filled);
        let capacity = self.output.len();
        // Sequential (channel-major) slices: for one channel the same layout as interleaved, and
        // rubato copies them with `copy_from_slice` instead of sample by sample.
        let (Ok(input), Ok(mut output)) = (
            SequentialSlice::new(&self.input[..frames], 1, frames),
            SequentialSlice::new_mut(&mut self.output[..], 1, capacity),
        ) else {
            return 0;
        };
        let processed = self.inner.process_into_buffer(&input, &mut output, None);
        let Ok((_, produced)) = processed else {
            // Buffers are sized by the resampler itself: an error would be a bug in the sizes,
            // and silence is the safe answer.
            return 0;
        };
        let skip = self.skip.min(produced);
        self.skip -= skip;
        let end = produced.min(skip.saturating_add(limit));
        if end > skip {
            emit(&self.output[skip..end]);
        }
        end.saturating_sub(skip)
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.filled = 0;
        self.skip = self.delay;
    }
}

/// A sample scaled to ±1 back to 16 bits (rounded, saturating).
pub fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: u32, to: u32, input: &[f32], pieces: usize) -> Vec<f32> {
        let mut r = MonoResampler::new(from, to).expect("resampler");
        let mut out = Vec::new();
        for part in input.chunks(input.len().div_ceil(pieces).max(1)) {
            r.push(part, |s| out.extend_from_slice(s));
        }
        r.finish(|s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn the_output_length_is_exact_for_fft_sinc_and_pass() {
        for (from, to, n) in [
            (24_000, 48_000, 24_000),
            (24_000, 44_100, 12_345),
            (44_101, 16_000, 9_999),
            (16_000, 16_000, 777),
            (8_000, 16_000, 5),
        ] {
            let out = run(from, to, &vec![0.1; n], 3);
            let want = (n as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
            assert_eq!(out.len() as u64, want, "{from} → {to}");
        }
    }

    #[test]
    fn odd_ratios_use_the_sinc_fallback_and_common_ones_the_fft() {
        assert!(format!("{:?}", MonoResampler::new(44_101, 16_000).expect("sinc")).contains("sinc"));
        assert!(format!("{:?}", MonoResampler::new(44_100, 16_000).expect("fft")).contains("fft"));
        assert!(!MonoResampler::new(16_000, 16_000).expect("pass").is_converting());
        assert!(MonoResampler::new(0, 16_000).is_err());
        // A rate from a hostile file header: an error, not an overflow.
        assert!(MonoResampler::new(u32::MAX, 16_000).is_err());
        assert!(MonoResampler::new(16_000, MAX_RATE + 1).is_err());
    }

    #[test]
    fn an_impulse_stays_aligned() {
        for (from, to) in [(24_000u32, 48_000u32), (44_101, 16_000)] {
            let n = from as usize / 5;
            let at = from as usize / 100;
            let mut input = vec![0.0f32; n];
            input[at] = 0.9;
            let out = run(from, to, &input, 4);
            let peak = out.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map_or(0, |p| p.0);
            let want = at as f64 * f64::from(to) / f64::from(from);
            assert!((peak as f64 - want).abs() <= 1.5, "{from} → {to}: peak at {peak}, want {want}");
        }
    }

    #[test]
    fn i16_input_is_scaled_and_streams_reset() {
        let mut r = MonoResampler::new(16_000, 16_000).expect("pass");
        let mut out = Vec::new();
        r.push_i16(&[16384, -32768], |s| out.extend_from_slice(s));
        assert_eq!(out, [0.5, -1.0]);
        let mut r = MonoResampler::new(24_000, 48_000).expect("fft");
        let mut first = 0;
        r.push(&[0.2; 2400], |s| first += s.len());
        r.reset();
        let mut n = 0;
        r.push(&[0.2; 2400], |s| n += s.len());
        assert_eq!(n, first, "a reset stream starts like a new one");
    }
}
