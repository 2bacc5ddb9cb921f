//! The optional espeak-ng voice: intelligible speech for people listening to the simulator.
//! `espeak-ng --stdout` renders a WAV (22.05 kHz mono), parsed with hound and resampled to
//! 24 kHz with rubato. When the program cannot run (not installed, fails, bad output) the
//! built-in synthesizer is used instead, with one warning per simulator process.

use std::io::Cursor;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

use super::voice::{VOICE_SAMPLE_RATE, Voice};

/// Which synthesizer speaks the model's replies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoiceEngine {
    /// The built-in formant synthesizer: deterministic, no words (the default; what tests use).
    #[default]
    Builtin,
    /// espeak-ng, when it can run: intelligible words. `program` is its path or name.
    Espeak {
        /// The program (`espeak-ng`).
        program: String,
    },
}

impl VoiceEngine {
    /// espeak-ng from the `PATH`.
    pub fn espeak() -> VoiceEngine {
        VoiceEngine::Espeak { program: "espeak-ng".to_owned() }
    }
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Speech for `text` with `engine`, or `None` for the built-in voice (also when espeak-ng
/// cannot be used).
pub(crate) fn synthesize(engine: &VoiceEngine, voice: &Voice, language: Option<&str>, text: &str) -> Option<Vec<i16>> {
    let VoiceEngine::Espeak { program } = engine else {
        return None;
    };
    let run = || espeak(program, voice, language, text);
    // espeak-ng blocks for tens of milliseconds: keep the runtime's other tasks going.
    let result = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
        _ => run(),
    };
    match result {
        Ok(samples) => Some(samples),
        Err(why) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                warn!("live-sim: espeak-ng cannot be used ({why}); using the built-in voice");
            }
            None
        }
    }
}

/// The espeak-ng voice for a BCP-47 code: `en-US` → `en-us`, `de` → `de` (default `en`).
fn espeak_language(language: Option<&str>) -> String {
    let lang = language.map(str::trim).filter(|l| !l.is_empty()).unwrap_or("en");
    let lang: String = lang
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    if lang.is_empty() { "en".to_owned() } else { lang }
}

fn espeak(program: &str, voice: &Voice, language: Option<&str>, text: &str) -> Result<Vec<i16>, String> {
    let f0 = voice.f0_hz();
    // A low voice gets a male variant, a high one a female variant; pitch 0–99 from 85–260 Hz.
    let variant = if f0 < 165.0 { "m3" } else { "f3" };
    let pitch = (((f0 - 85.0) / 175.0) * 99.0).clamp(0.0, 99.0).round() as u32;
    let voice_arg = format!("{}+{variant}", espeak_language(language));
    let output = Command::new(program)
        .args(["--stdout", "-v", &voice_arg, "-p", &pitch.to_string(), "-s", "165", "--"])
        .arg(text)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{program} exited with {}", output.status));
    }
    let reader = hound::WavReader::new(Cursor::new(output.stdout)).map_err(|e| format!("bad WAV: {e}"))?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int || spec.channels == 0 {
        return Err("espeak-ng's WAV is not 16-bit PCM".to_owned());
    }
    // espeak-ng writes 22.05 kHz; a rate far from speech rates would make the output huge.
    if !(8_000..=192_000).contains(&spec.sample_rate) {
        return Err(format!("espeak-ng's WAV has an unexpected rate of {} Hz", spec.sample_rate));
    }
    let channels = usize::from(spec.channels);
    // Written to a pipe, the WAV's sizes say 0x7fffffff: read samples until the data ends.
    let samples: Vec<i16> = reader.into_samples::<i16>().step_by(channels).map_while(Result::ok).collect();
    if samples.is_empty() {
        return Err("espeak-ng produced no audio".to_owned());
    }
    resample(&samples, spec.sample_rate, VOICE_SAMPLE_RATE)
}

/// Resamples 16-bit mono audio with the workspace's one resampler (exact output length).
fn resample(x: &[i16], from: u32, to: u32) -> Result<Vec<i16>, String> {
    if from == to || x.is_empty() {
        return Ok(x.to_vec());
    }
    let mut r = live_npc_client::dsp::MonoResampler::new(from, to).map_err(|e| e.to_string())?;
    let want = u64::try_from(x.len()).unwrap_or(u64::MAX).saturating_mul(u64::from(to)) / u64::from(from);
    let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0).saturating_add(1));
    let mut keep = |s: &[f32]| out.extend(s.iter().map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16));
    r.push_i16(x, &mut keep);
    r.finish(&mut keep);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_falls_back() {
        let engine = VoiceEngine::Espeak { program: "/nonexistent/espeak-ng-for-a-test".to_owned() };
        assert!(synthesize(&engine, &Voice::for_name("Puck"), None, "hello").is_none());
        assert!(synthesize(&VoiceEngine::Builtin, &Voice::for_name("Puck"), None, "hello").is_none());
    }

    #[test]
    fn espeak_when_installed() {
        // Only where espeak-ng is installed (it is optional); elsewhere the fallback test covers it.
        if Command::new("espeak-ng").arg("--version").output().is_err() {
            return;
        }
        let samples = synthesize(&VoiceEngine::espeak(), &Voice::for_name("Kore"), Some("en-US"), "Hello there.");
        let samples = samples.unwrap_or_default();
        let secs = samples.len() as f64 / f64::from(VOICE_SAMPLE_RATE);
        assert!((0.4..3.0).contains(&secs), "{secs} s");
        assert!(samples.iter().any(|s| s.unsigned_abs() > 1000));
    }

    #[test]
    fn languages_and_resampling() {
        assert_eq!(espeak_language(Some("en-US")), "en-us");
        assert_eq!(espeak_language(Some("  ")), "en");
        assert_eq!(espeak_language(Some("de; rm -rf")), "derm-rf");
        let tone: Vec<i16> = (0..22_050).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect();
        let out = resample(&tone, 22_050, 24_000).unwrap_or_default();
        assert_eq!(out.len(), 24_000);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((7000..=9000).contains(&peak), "{peak}");
    }
}
