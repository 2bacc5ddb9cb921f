//! The pitch check shared by the simulator's VAD and the microphone's voice gate: earshot alone
//! scores broadband noise as voice, but noise has no pitch.

/// Earshot's frame: 256 samples (16 ms) at 16 kHz.
pub const FRAME: usize = 256;
/// Pitch lags at 16 kHz: 400 Hz down to 70 Hz.
const MIN_LAG: usize = 40;
const MAX_LAG: usize = 228;
/// Normalized autocorrelation at the pitch lag above which a frame counts as voiced. White noise
/// stays below ~0.25, voiced speech is mostly above 0.6.
const PERIODIC_THRESHOLD: f32 = 0.45;

/// Autocorrelation pitch detector over two consecutive 16 kHz frames. Its buffers are allocated
/// once; a check allocates nothing.
pub struct PitchCheck {
    scratch: Box<[f32; 2 * FRAME]>,
    /// Prefix sums of squares, for the normalization of every lag in O(1).
    energy: Box<[f32; 2 * FRAME + 1]>,
}

impl Default for PitchCheck {
    fn default() -> Self {
        PitchCheck { scratch: Box::new([0.0; 2 * FRAME]), energy: Box::new([0.0; 2 * FRAME + 1]) }
    }
}

impl PitchCheck {
    /// Whether `prev` followed by `frame` has a pitch between 70 and 400 Hz.
    pub fn periodic(&mut self, prev: &[i16; FRAME], frame: &[i16; FRAME]) -> bool {
        let x = &mut *self.scratch;
        for (dst, &s) in x.iter_mut().zip(prev.iter().chain(frame.iter())) {
            *dst = f32::from(s);
        }
        let e = &mut *self.energy;
        e[0] = 0.0;
        for i in 0..x.len() {
            e[i + 1] = e[i] + x[i] * x[i];
        }
        let n = x.len();
        (MIN_LAG..=MAX_LAG).any(|lag| {
            let m = n - lag;
            let denom = (e[m] * (e[n] - e[lag])).sqrt();
            denom > f32::EPSILON
                && x[..m].iter().zip(&x[lag..]).map(|(a, b)| a * b).sum::<f32>() / denom >= PERIODIC_THRESHOLD
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voice_has_a_pitch_and_noise_does_not() {
        let tone: Vec<i16> = (0..2 * FRAME)
            .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 150.0 / 16_000.0).sin() * 8000.0) as i16)
            .collect();
        let mut rng = fastrand::Rng::with_seed(3);
        let noise: Vec<i16> = (0..2 * FRAME).map(|_| rng.i16(-8000..8000)).collect();
        let mut check = PitchCheck::default();
        let split = |v: &[i16]| -> ([i16; FRAME], [i16; FRAME]) {
            (v[..FRAME].try_into().unwrap_or([0; FRAME]), v[FRAME..].try_into().unwrap_or([0; FRAME]))
        };
        let (a, b) = split(&tone);
        assert!(check.periodic(&a, &b));
        let (a, b) = split(&noise);
        assert!(!check.periodic(&a, &b));
        assert!(!check.periodic(&[0; FRAME], &[0; FRAME]), "silence has no pitch");
    }
}
