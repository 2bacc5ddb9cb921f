//! 24 kHz model speech → the output rate, on the network task (never on the audio thread).

use live_npc_client::dsp::MonoResampler;

/// Converts mono 16-bit speech to `f32` at the output rate: the workspace's one resampler
/// ([`MonoResampler`]: rubato's synchronous FFT resampler for these rates, exact for any pair
/// of integer rates). The filter's delay is removed at the start of each stream and
/// [`finish`](SpeechResampler::finish) flushes the tail, so a stream of `n` input samples yields
/// exactly `round(n × out / in)` output samples, aligned with the input. Every buffer is
/// allocated in [`new`](SpeechResampler::new); processing never allocates.
#[derive(Debug)]
pub struct SpeechResampler(MonoResampler);

impl SpeechResampler {
    /// A resampler from `in_rate` to `out_rate` (Hz).
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, String> {
        MonoResampler::new(in_rate, out_rate).map(SpeechResampler).map_err(|e| e.to_string())
    }

    /// The input rate.
    pub fn input_rate(&self) -> u32 {
        self.0.input_rate()
    }

    /// The output rate.
    pub fn output_rate(&self) -> u32 {
        self.0.output_rate()
    }

    /// Output frames the resampler holds back at most (its chunk plus its filter delay).
    pub fn latency_frames(&self) -> usize {
        self.0.latency_frames()
    }

    /// Resamples `pcm`, handing finished output to `emit` (possibly several times, possibly
    /// not at all while a chunk fills).
    pub fn process(&mut self, pcm: &[i16], emit: impl FnMut(&[f32])) {
        self.0.push_i16(pcm, emit);
    }

    /// Ends the stream: emits the held-back tail (exactly up to the input's length) and
    /// resets for the next stream.
    pub fn finish(&mut self, emit: impl FnMut(&[f32])) {
        self.0.finish(emit);
    }

    /// Drops everything held and starts a new stream.
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(in_rate: u32, out_rate: u32, input: &[i16], pieces: usize) -> Vec<f32> {
        let mut r = SpeechResampler::new(in_rate, out_rate).unwrap();
        let mut out = Vec::new();
        for part in input.chunks(input.len().div_ceil(pieces).max(1)) {
            r.process(part, |s| out.extend_from_slice(s));
        }
        r.finish(|s| out.extend_from_slice(s));
        out
    }

    fn sine(rate: u32, hz: f32, n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                ((i as f64 * f64::from(hz) * std::f64::consts::TAU / f64::from(rate)).sin() * f64::from(amp) * 32767.0)
                    .round() as i16
            })
            .collect()
    }

    #[test]
    fn output_length_is_exact() {
        for (out_rate, n) in [(48_000, 24_000), (44_100, 12_345), (16_000, 999), (24_000, 100), (96_000, 7)] {
            let out = run(24_000, out_rate, &vec![1000; n], 3);
            let want = (n as u64 * out_rate as u64 + 12_000) / 24_000;
            assert_eq!(out.len() as u64, want, "{out_rate}");
        }
    }

    /// The quality figure quoted in docs/AUDIO.md: a 1 kHz sine through 24 → 48 kHz and
    /// 24 → 44.1 kHz, compared with the ideal sine (amplitude and phase fitted), ignoring the
    /// edges. The residual is the resampler's error plus the 16-bit input's quantisation
    /// (measured: 92.0 dB at both rates, the 16-bit limit).
    #[test]
    fn sine_snr() {
        for out_rate in [48_000u32, 44_100] {
            let input = sine(24_000, 1000.0, 24_000, 0.5);
            let out = run(24_000, out_rate, &input, 37);
            let w = std::f64::consts::TAU * 1000.0 / out_rate as f64;
            let (lo, hi) = (out_rate as usize / 10, out.len() - out_rate as usize / 10);
            let (mut ss, mut sc, mut cc, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (i, y) in out.iter().enumerate().take(hi).skip(lo) {
                let (s, c) = ((w * i as f64).sin(), (w * i as f64).cos());
                ss += s * s;
                sc += s * c;
                cc += c * c;
                sy += s * *y as f64;
                cy += c * *y as f64;
            }
            let det = ss * cc - sc * sc;
            let a = (sy * cc - cy * sc) / det;
            let b = (cy * ss - sy * sc) / det;
            let (mut sig, mut err) = (0.0, 0.0);
            for (i, y) in out.iter().enumerate().take(hi).skip(lo) {
                let ideal = a * (w * i as f64).sin() + b * (w * i as f64).cos();
                sig += ideal * ideal;
                err += (*y as f64 - ideal).powi(2);
            }
            let snr = 10.0 * (sig / err).log10();
            let amp = (a * a + b * b).sqrt();
            assert!((amp - 0.5).abs() < 0.01, "{out_rate}: amplitude {amp}");
            // 16-bit input at −6 dBFS allows at most 92.1 dB: the resampler adds no measurable error.
            assert!(snr > 91.0, "{out_rate}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn aligned_with_the_input() {
        // An impulse at input sample 240 (10 ms) lands at output 480 (10 ms at 48 kHz).
        let mut input = vec![0i16; 2400];
        input[240] = 30000;
        let out = run(24_000, 48_000, &input, 5);
        let peak = out.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        assert!((peak as i64 - 480).abs() <= 1, "peak at {peak}");
    }
}
