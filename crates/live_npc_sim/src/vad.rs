//! Server-side voice-activity detection, as the Live API's automatic activity detection does it.
//!
//! The detector is the earshot neural VAD, which scores 16 ms frames (256 samples at 16 kHz)
//! between 0 (no voice) and 1 (voice). Input at any other rate is first resampled to 16 kHz (the
//! workspace's one resampler). On top of the per-frame scores sits the shared speech gate
//! ([`SpeechGate`]), with these rules:
//!
//! | sensitivity | `HIGH` (also unspecified) | `LOW` |
//! |---|---|---|
//! | start: a frame is voiced when its score is at least | 0.7 | 0.8 |
//! | start: consecutive voiced frames needed (P = `prefix_padding_ms`, at least 32 ms) | P | P + 64 ms |
//! | end: a frame counts as silence when its score is below | 0.5 | 0.35 |
//!
//! Start of speech is committed once enough consecutive voiced frames arrived *and* at least one of
//! them is periodic (a pitch between 70 and 400 Hz, measured by normalized autocorrelation). The
//! periodicity check keeps loud broadband noise out: earshot scores white noise above about
//! -15 dBFS as high as quiet speech, but noise never has a pitch. End of speech is committed after
//! `silence_duration_ms` of consecutive silence frames.
//!
//! All positions count received input samples at the input rate; wall-clock time plays no part.

use live_npc_client::dsp::{FRAME, GateChange, GateFrame, GateRules, MonoResampler, SpeechGate};
use live_npc_client::protocol::{AutomaticActivityDetection, EndSensitivity, StartSensitivity};

/// The rate earshot works at.
const VAD_RATE: u32 = 16_000;
/// Milliseconds per frame.
const FRAME_MS: u32 = 16;
/// Input rates are clamped into this range so that the resampler can always be built.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 384_000;
/// Default `prefix_padding_ms`: 20 ms, i.e. two 16 ms frames of detected speech.
const DEFAULT_PREFIX_PADDING_MS: u32 = 20;
/// Default `silence_duration_ms`. Longer than the pauses at commas and between short sentences
/// (up to ~400 ms in the test phrases), short enough that a turn ends promptly.
const DEFAULT_SILENCE_DURATION_MS: u32 = 600;
/// Frames kept to date the start of speech back to its real onset.
const HISTORY: usize = 10;
/// A frame before the committed run still belongs to the utterance when its score is at least this.
const ONSET_THRESHOLD: f32 = 0.4;

/// Settings, from `realtimeInputConfig.automaticActivityDetection`.
#[derive(Clone, Debug)]
pub struct VadConfig {
    /// How readily speech starts (`Unspecified` and unknown values act as `High`).
    pub start_sensitivity: StartSensitivity,
    /// How readily speech ends (`Unspecified` and unknown values act as `High`).
    pub end_sensitivity: EndSensitivity,
    /// The required duration of detected speech before start of speech is committed (ms).
    pub prefix_padding_ms: u32,
    /// The required duration of silence before end of speech is committed (ms).
    pub silence_duration_ms: u32,
}

impl VadConfig {
    /// Settings from the setup message; missing or negative values take the defaults. `disabled` is
    /// not looked at here: whether to run the detector at all is the caller's decision.
    pub fn from_setup(aad: Option<&AutomaticActivityDetection>) -> VadConfig {
        let default = VadConfig::default();
        let Some(aad) = aad else {
            return default;
        };
        let ms = |v: Option<i32>, fallback: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(fallback);
        VadConfig {
            start_sensitivity: aad.start_of_speech_sensitivity.clone().unwrap_or(default.start_sensitivity),
            end_sensitivity: aad.end_of_speech_sensitivity.clone().unwrap_or(default.end_sensitivity),
            prefix_padding_ms: ms(aad.prefix_padding_ms, default.prefix_padding_ms),
            silence_duration_ms: ms(aad.silence_duration_ms, default.silence_duration_ms),
        }
    }
}

impl Default for VadConfig {
    /// `HIGH` start and end sensitivity (what the API does when they are unspecified), 20 ms prefix
    /// padding and 600 ms silence duration.
    fn default() -> Self {
        VadConfig {
            start_sensitivity: StartSensitivity::High,
            end_sensitivity: EndSensitivity::High,
            prefix_padding_ms: DEFAULT_PREFIX_PADDING_MS,
            silence_duration_ms: DEFAULT_SILENCE_DURATION_MS,
        }
    }
}

/// What the detector found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VadEvent {
    /// Speech started; `at` = position in received input samples (at the input rate) where speech
    /// began: the start of the first frame of the utterance, dated back over the frames that led up
    /// to the committed run of voiced frames.
    SpeechStart {
        /// Input sample position of the onset.
        at: u64,
    },
    /// Speech ended after `silence_duration_ms` of non-speech (or a flush); `at` = input sample
    /// position where the end was committed (after the silence); `speech_samples` = input samples
    /// of speech in this utterance (from its start to the end of its last voiced frame).
    SpeechEnd {
        /// Input sample position where the end was committed.
        at: u64,
        /// Input samples from the onset to the end of the last voiced frame.
        speech_samples: u64,
    },
}

/// The gate's rules for a [`VadConfig`] (see the module docs).
fn gate_rules(config: &VadConfig) -> GateRules {
    let padding_frames = config.prefix_padding_ms.div_ceil(FRAME_MS).max(2);
    let (start_threshold, onset_frames) = match config.start_sensitivity {
        StartSensitivity::Low => (0.8, padding_frames.saturating_add(4)),
        _ => (0.7, padding_frames),
    };
    let stay_threshold = match config.end_sensitivity {
        EndSensitivity::Low => 0.35,
        _ => 0.5,
    };
    GateRules {
        start_threshold,
        stay_threshold,
        onset_frames,
        hangover_frames: config.silence_duration_ms.div_ceil(FRAME_MS).max(1),
        // The server scores every frame, however quiet.
        floor: 0.0,
    }
}

/// Turns input at any rate into a 16 kHz stream, through the workspace's one resampler
/// ([`MonoResampler`]: FFT for common rates, 128-tap sinc otherwise). Latency: up to one chunk
/// (10 ms) of input waits in it; its delay is removed at the start of a stream, so 16 kHz sample
/// `k` lines up with input time `k / 16000` s of the segment.
struct Front {
    rate: u32,
    /// `None` at 16 kHz (and, were it ever to fail, for a rate it cannot convert: that input is
    /// ignored rather than panicking).
    resampler: Option<MonoResampler>,
    /// The resampler's output as 16-bit samples (reused).
    pcm: Vec<i16>,
}

impl Front {
    fn new(rate: u32) -> Front {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        let resampler = if rate == VAD_RATE { None } else { MonoResampler::new(rate, VAD_RATE).ok() };
        let pcm = Vec::with_capacity(resampler.as_ref().map_or(0, MonoResampler::latency_frames));
        Front { rate, resampler, pcm }
    }

    /// Drops pending input and restarts the resampler (keeping its buffers).
    fn restart(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
    }
}

/// The 16 kHz side: the shared speech gate (framing, earshot, pitch, onset and hangover), and
/// the positions of what it finds in received input samples.
struct Detect {
    gate: SpeechGate,
    track: Track,
}

/// Where the gate's frames lie in the input, and the dating of an utterance's start.
struct Track {
    /// Input rate of the current segment (for position mapping).
    rate: u32,
    /// Input position where the current segment (constant rate, continuous stream) starts.
    seg_input_base: u64,
    /// The gate's frame index of the segment's first frame.
    seg_first_frame: u64,
    /// Score a frame needs to extend an utterance (for the end of its last voiced frame).
    stay_threshold: f32,
    /// Recent frames (start position, score), oldest first once full; `hist_len` valid entries
    /// ending at `hist_head`.
    hist: [(u64, f32); HISTORY],
    hist_head: usize,
    hist_len: usize,
    run_start: u64,
    speech_start: u64,
    last_voiced_end: u64,
}

impl Detect {
    fn new(rules: GateRules, rate: u32) -> Detect {
        Detect {
            gate: SpeechGate::new(rules),
            track: Track {
                rate,
                seg_input_base: 0,
                seg_first_frame: 0,
                stay_threshold: rules.stay_threshold,
                hist: [(0, 0.0); HISTORY],
                hist_head: 0,
                hist_len: 0,
                run_start: 0,
                speech_start: 0,
                last_voiced_end: 0,
            },
        }
    }

    fn rules(&self) -> GateRules {
        self.gate.rules()
    }

    /// Starts a new segment at input position `at` (after a rate change or flush): the partial
    /// frame is dropped because its samples belong to the old mapping.
    fn new_segment(&mut self, at: u64, rate: u32) {
        self.gate.drop_partial();
        self.track.seg_input_base = at;
        self.track.seg_first_frame = self.gate.frames();
        self.track.rate = rate;
    }

    fn feed(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) {
        let track = &mut self.track;
        self.gate.push(samples, |frame, _| track.frame(frame, events));
    }

    /// Ends speech at input position `at` if inside speech.
    fn end_now(&mut self, at: u64, events: &mut Vec<VadEvent>) {
        if self.gate.is_open() {
            events.push(VadEvent::SpeechEnd {
                at,
                speech_samples: self.track.last_voiced_end.saturating_sub(self.track.speech_start),
            });
        }
        self.gate.close();
        self.track.hist_len = 0;
    }
}

impl Track {
    /// Input position of 16 kHz sample `k` of the current segment.
    fn pos(&self, k: u64) -> u64 {
        let offset = u128::from(k) * u128::from(self.rate) / u128::from(VAD_RATE);
        self.seg_input_base.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    fn frame(&mut self, frame: &GateFrame, events: &mut Vec<VadEvent>) {
        let k = frame.index.saturating_sub(self.seg_first_frame).saturating_mul(FRAME as u64);
        let start = self.pos(k);
        let end = self.pos(k.saturating_add(FRAME as u64));
        // The first voiced frame of a run: date the run back over the frames leading up to it.
        if frame.run == 1 {
            self.run_start = self.onset_before(start);
        }
        match frame.change {
            Some(GateChange::Opened { .. }) => {
                self.speech_start = self.run_start;
                self.last_voiced_end = end;
                events.push(VadEvent::SpeechStart { at: self.run_start });
            }
            Some(GateChange::Closed) => {
                self.hist_len = 0;
                events.push(VadEvent::SpeechEnd {
                    at: end,
                    speech_samples: self.last_voiced_end.saturating_sub(self.speech_start),
                });
            }
            None if frame.open && frame.score >= self.stay_threshold => self.last_voiced_end = end,
            None => {}
        }
        self.remember(start, frame.score);
    }

    /// The start of the contiguous stretch of recent frames scoring at least [`ONSET_THRESHOLD`]
    /// right before a frame starting at `start` (or `start` itself).
    fn onset_before(&self, start: u64) -> u64 {
        let mut onset = start;
        for i in 0..self.hist_len {
            let idx = (self.hist_head + HISTORY - 1 - i) % HISTORY;
            let (pos, score) = self.hist[idx];
            if score < ONSET_THRESHOLD || pos > onset {
                break;
            }
            onset = pos;
        }
        onset
    }

    fn remember(&mut self, start: u64, score: f32) {
        self.hist[self.hist_head] = (start, score);
        self.hist_head = (self.hist_head + 1) % HISTORY;
        self.hist_len = (self.hist_len + 1).min(HISTORY);
    }
}

/// Server-side voice-activity detection over a stream of received PCM.
pub struct Vad {
    config: VadConfig,
    front: Front,
    detect: Detect,
    /// Total input samples received.
    received: u64,
}

impl Vad {
    /// A detector for mono i16 input at `input_rate` Hz (clamped into 1 kHz–384 kHz).
    pub fn new(config: VadConfig, input_rate: u32) -> Vad {
        let front = Front::new(input_rate);
        let detect = Detect::new(gate_rules(&config), front.rate);
        Vad { config, front, detect, received: 0 }
    }

    /// The settings in use.
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// The input rate in use (after clamping).
    pub fn input_rate(&self) -> u32 {
        self.front.rate
    }

    /// Feed received PCM (mono i16 at `input_rate`; any rate, e.g. 8k, 16k, 24k, 44.1k, 48k).
    /// Appends events to `events`. Timing counts received samples, never wall-clock time.
    ///
    /// Up to 16 ms of 16 kHz audio (one earshot frame), plus 10 ms of input for resampled rates,
    /// waits inside until more arrives.
    pub fn push(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) {
        self.received = self.received.saturating_add(samples.len() as u64);
        let Some(resampler) = &mut self.front.resampler else {
            if self.front.rate == VAD_RATE {
                self.detect.feed(samples, events);
            }
            return;
        };
        let (pcm, detect) = (&mut self.front.pcm, &mut self.detect);
        resampler.push_i16(samples, |out| {
            pcm.clear();
            pcm.extend(out.iter().map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16));
            detect.feed(pcm, events);
        });
    }

    /// Flush (audioStreamEnd): if in speech, end it now (at the current input position) and emit
    /// `SpeechEnd`. Audio still waiting for a complete frame is dropped and the next audio starts
    /// a fresh stream.
    pub fn flush(&mut self, events: &mut Vec<VadEvent>) {
        self.detect.end_now(self.received, events);
        self.front.restart();
        self.detect.gate.reset();
        self.detect.new_segment(self.received, self.front.rate);
    }

    /// Whether currently inside speech.
    pub fn in_speech(&self) -> bool {
        self.detect.gate.is_open()
    }

    /// Change the input rate (a client may switch `rate=` mid-session); resets internal resampler
    /// state. Setting the current rate again does nothing. Speech state carries over; the few
    /// milliseconds of audio still buffered at the old rate are dropped.
    pub fn set_input_rate(&mut self, rate: u32) {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        if rate == self.front.rate {
            return;
        }
        self.front = Front::new(rate);
        self.detect.new_segment(self.received, self.front.rate);
    }

    /// Back to the state of a new detector (same settings and rate); positions restart at 0.
    pub fn reset(&mut self) {
        self.front.restart();
        self.detect = Detect::new(self.detect.rules(), self.front.rate);
        self.received = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};

    const PHRASES: [&str; 3] = ["player-hello-16k.wav", "player-open-gate-16k.wav", "player-interrupt-16k.wav"];

    fn fixture(name: &str) -> (Vec<i16>, u32) {
        live_npc_dev::speech(name)
    }

    /// Resampling for the tests: rubato's FFT resampler called directly (fixed input chunks,
    /// whole clip at once), not through the detector's streaming front.
    fn resample(x: &[i16], from: u32, to: u32) -> Vec<i16> {
        if from == to {
            return x.to_vec();
        }
        let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input).expect("resampler");
        let input: Vec<f32> = x.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let adapter = InterleavedSlice::new(&input, 1, input.len()).expect("adapter");
        let out = r.process_all(&adapter, input.len(), None).expect("resample").take_data();
        let want = (x.len() as u64 * u64::from(to) / u64::from(from)) as usize;
        out.iter().take(want).map(|v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16).collect()
    }

    /// Onset and offset (in samples) from the energy envelope: 10 ms windows above 5 % of the
    /// loudest window's RMS.
    fn energy_bounds(x: &[i16], rate: u32) -> (u64, u64) {
        let win = (rate / 100) as usize;
        let rms: Vec<f64> = x
            .chunks(win)
            .map(|c| (c.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
            .collect();
        let max = rms.iter().copied().fold(0.0, f64::max);
        let on = rms.iter().position(|&r| r > 0.05 * max).expect("onset");
        let off = rms.len() - rms.iter().rev().position(|&r| r > 0.05 * max).expect("offset");
        ((on * win) as u64, (off * win) as u64)
    }

    fn with_silence(x: &[i16], rate: u32, secs: f32) -> Vec<i16> {
        let mut v = x.to_vec();
        v.resize(x.len() + (rate as f32 * secs) as usize, 0);
        v
    }

    fn run_chunked(config: VadConfig, rate: u32, x: &[i16], chunk: usize) -> Vec<VadEvent> {
        let mut vad = Vad::new(config, rate);
        let mut events = Vec::new();
        for c in x.chunks(chunk) {
            vad.push(c, &mut events);
        }
        events
    }

    fn run(config: VadConfig, rate: u32, x: &[i16]) -> Vec<VadEvent> {
        run_chunked(config, rate, x, x.len().max(1))
    }

    /// Asserts a single utterance and returns `(start, end, speech_samples)`.
    fn single(events: &[VadEvent], what: &str) -> (u64, u64, u64) {
        match events {
            [VadEvent::SpeechStart { at: start }, VadEvent::SpeechEnd { at: end, speech_samples }] => {
                (*start, *end, *speech_samples)
            }
            other => panic!("{what}: expected one start and one end, got {other:?}"),
        }
    }

    fn white_noise(seed: u64, amplitude: i32, len: usize) -> Vec<i16> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.i32(-amplitude..=amplitude) as i16).collect()
    }

    #[test]
    fn each_phrase_is_one_utterance_starting_at_its_onset() {
        for name in PHRASES {
            let (x, rate) = fixture(name);
            assert_eq!(rate, 16_000);
            let (onset, offset) = energy_bounds(&x, rate);
            let events = run(VadConfig::default(), rate, &with_silence(&x, rate, 1.0));
            let (start, end, speech) = single(&events, name);
            assert!(start.abs_diff(onset) <= 1_600, "{name}: start {start} vs onset {onset}");
            // The end is committed 600 ms (38 frames) after the last voiced frame.
            assert_eq!(end - (start + speech), 38 * 256, "{name}");
            assert!(start + speech + 3_200 >= offset, "{name}: speech ends too early");
            assert!(start + speech <= offset + 3_200, "{name}: speech ends too late");
        }
    }

    #[test]
    fn phrases_are_detected_at_other_rates() {
        for name in PHRASES {
            let (x, _) = fixture(name);
            let (onset16, _) = energy_bounds(&x, 16_000);
            for rate in [8_000, 24_000, 44_100, 48_000] {
                let y = resample(&x, 16_000, rate);
                let events = run(VadConfig::default(), rate, &with_silence(&y, rate, 1.0));
                let (start, _, speech) = single(&events, &format!("{name} at {rate} Hz"));
                let onset = onset16 * u64::from(rate) / 16_000;
                let tolerance = u64::from(rate) / 8; // 125 ms
                assert!(start.abs_diff(onset) <= tolerance, "{name} at {rate}: start {start} vs {onset}");
                assert!(speech >= y.len() as u64 / 2, "{name} at {rate}: speech {speech} of {}", y.len());
            }
        }
    }

    #[test]
    fn silence_and_noise_never_start_speech() {
        for rate in [16_000, 48_000] {
            let mut vad = Vad::new(VadConfig::default(), rate);
            let mut events = Vec::new();
            vad.push(&vec![0; rate as usize * 3], &mut events);
            for (seed, amplitude) in [(1, 30), (2, 300), (3, 1_000), (4, 3_000), (5, 10_000), (6, 30_000)] {
                // Fresh detectors too: noise starting out of silence is what scores highest.
                let noise = white_noise(seed, amplitude, rate as usize * 3);
                let fresh = run(VadConfig::default(), rate, &noise);
                assert!(fresh.is_empty(), "noise {amplitude} at {rate} Hz: {fresh:?}");
                vad.push(&noise, &mut events);
                vad.push(&vec![0; rate as usize / 2], &mut events);
            }
            assert!(events.is_empty(), "{rate} Hz: {events:?}");
            assert!(!vad.in_speech());
        }
    }

    #[test]
    fn chunk_sizes_do_not_change_events() {
        let (x, _) = fixture("player-interrupt-16k.wav");
        for rate in [16_000, 48_000] {
            let y = with_silence(&resample(&x, 16_000, rate), rate, 1.0);
            let whole = run(VadConfig::default(), rate, &y);
            assert_eq!(whole.len(), 2);
            for chunk in [1, 7, 320, 4_000] {
                assert_eq!(run_chunked(VadConfig::default(), rate, &y, chunk), whole, "chunk {chunk} at {rate}");
            }
        }
    }

    #[test]
    fn silence_duration_sets_when_speech_ends() {
        let (x, rate) = fixture("player-open-gate-16k.wav");
        let y = with_silence(&x, rate, 2.0);
        let gap = |ms: u32| {
            let config = VadConfig { silence_duration_ms: ms, ..VadConfig::default() };
            let events = run(config, rate, &y);
            let Some(&VadEvent::SpeechEnd { at, speech_samples }) = events.last() else {
                panic!("{ms} ms: no end in {events:?}");
            };
            let starts: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    VadEvent::SpeechStart { at } => Some(*at),
                    VadEvent::SpeechEnd { .. } => None,
                })
                .collect();
            let last_start = *starts.last().expect("a start");
            (at, at - (last_start + speech_samples))
        };
        let (end_short, gap_short) = gap(100);
        let (end_long, gap_long) = gap(1_500);
        assert_eq!(gap_short, 7 * 256);
        assert_eq!(gap_long, 94 * 256);
        assert!(end_long >= end_short + 20_000, "{end_short} vs {end_long}");
    }

    #[test]
    fn flush_ends_speech() {
        let (x, rate) = fixture("player-open-gate-16k.wav");
        let mut vad = Vad::new(VadConfig::default(), rate);
        let mut events = Vec::new();
        vad.push(&x[..16_000], &mut events);
        assert!(vad.in_speech());
        assert!(matches!(events[..], [VadEvent::SpeechStart { .. }]));
        vad.flush(&mut events);
        assert!(!vad.in_speech());
        let [VadEvent::SpeechStart { at: start }, VadEvent::SpeechEnd { at, speech_samples }] = events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(at, 16_000);
        assert!(speech_samples > 0 && start + speech_samples <= 16_000);
        // Nothing more: flushing again, or silence afterwards.
        vad.flush(&mut events);
        vad.push(&vec![0; 32_000], &mut events);
        assert_eq!(events.len(), 2);
        // The stream resumes: the phrase again is a new utterance, positions keep counting.
        vad.push(&with_silence(&x, rate, 1.0), &mut events);
        let VadEvent::SpeechStart { at } = events[2] else {
            panic!("{events:?}");
        };
        assert!((48_000..48_000 + 3_200).contains(&at), "{at}");
    }

    #[test]
    fn npc_voice_at_24k_is_speech() {
        let (x, rate) = fixture("npc-mira-24k.wav");
        assert_eq!(rate, 24_000);
        let (onset, _) = energy_bounds(&x, rate);
        let mut vad = Vad::new(VadConfig::default(), rate);
        let mut events = Vec::new();
        vad.push(&x, &mut events);
        vad.flush(&mut events);
        let Some(&VadEvent::SpeechStart { at }) = events.first() else {
            panic!("{events:?}");
        };
        assert!(at.abs_diff(onset) <= 3_000, "{at} vs {onset}");
        assert_eq!(events.len() % 2, 0);
        let speech: u64 = events
            .iter()
            .map(|e| match e {
                VadEvent::SpeechEnd { speech_samples, .. } => *speech_samples,
                VadEvent::SpeechStart { .. } => 0,
            })
            .sum();
        assert!(speech >= x.len() as u64 * 6 / 10, "{speech} of {}", x.len());
    }

    /// Input position at which `SpeechStart` is emitted (pushing 10 ms at a time).
    fn commit_position(config: VadConfig, x: &[i16]) -> u64 {
        let mut vad = Vad::new(config, 16_000);
        let mut events = Vec::new();
        for (i, c) in x.chunks(160).enumerate() {
            vad.push(c, &mut events);
            if !events.is_empty() {
                return (i as u64 + 1) * 160;
            }
        }
        panic!("speech never started");
    }

    #[test]
    fn sensitivity_and_padding_delay_the_start() {
        let (x, _) = fixture("player-open-gate-16k.wav");
        let high = commit_position(VadConfig::default(), &x);
        let low = commit_position(VadConfig { start_sensitivity: StartSensitivity::Low, ..VadConfig::default() }, &x);
        let padded = commit_position(VadConfig { prefix_padding_ms: 300, ..VadConfig::default() }, &x);
        assert!(low >= high + 4 * 256, "high {high} low {low}");
        assert!(padded >= high + 16 * 256, "high {high} padded {padded}");
    }

    #[test]
    fn low_end_sensitivity_keeps_speech_longer() {
        let (x, rate) = fixture("player-interrupt-16k.wav");
        let y = with_silence(&x, rate, 1.0);
        let speech = |end_sensitivity| {
            let events = run(VadConfig { end_sensitivity, ..VadConfig::default() }, rate, &y);
            single(&events, "interrupt").2
        };
        assert!(speech(EndSensitivity::Low) >= speech(EndSensitivity::High));
    }

    #[test]
    fn rate_change_keeps_positions_in_received_samples() {
        let (x, _) = fixture("player-hello-16k.wav");
        let (onset16, _) = energy_bounds(&x, 16_000);
        let mut vad = Vad::new(VadConfig::default(), 16_000);
        let mut events = Vec::new();
        vad.push(&[0; 8_000], &mut events);
        vad.set_input_rate(16_000); // no-op
        vad.set_input_rate(48_000);
        assert_eq!(vad.input_rate(), 48_000);
        vad.push(&with_silence(&resample(&x, 16_000, 48_000), 48_000, 1.0), &mut events);
        let (start, _, _) = single(&events, "after rate change");
        let expected = 8_000 + onset16 * 3;
        assert!(start.abs_diff(expected) <= 6_000, "{start} vs {expected}");
    }

    #[test]
    fn reset_starts_over() {
        let (x, rate) = fixture("player-hello-16k.wav");
        let y = with_silence(&x, rate, 1.0);
        let fresh = run(VadConfig::default(), rate, &y);
        let mut vad = Vad::new(VadConfig::default(), rate);
        let mut events = Vec::new();
        vad.push(&y[..20_000], &mut events);
        vad.reset();
        events.clear();
        assert!(!vad.in_speech());
        vad.push(&y, &mut events);
        assert_eq!(events, fresh);
    }

    #[test]
    fn runs_on_any_thread() {
        fn send<T: Send + 'static>() {}
        send::<Vad>();
        send::<VadConfig>();
    }

    #[test]
    fn config_from_setup() {
        let d = VadConfig::from_setup(None);
        assert_eq!((d.prefix_padding_ms, d.silence_duration_ms), (20, 600));
        assert_eq!(d.start_sensitivity, StartSensitivity::High);
        let aad = AutomaticActivityDetection {
            start_of_speech_sensitivity: Some(StartSensitivity::Low),
            end_of_speech_sensitivity: Some(EndSensitivity::Unspecified),
            prefix_padding_ms: Some(-5),
            silence_duration_ms: Some(250),
            ..Default::default()
        };
        let c = VadConfig::from_setup(Some(&aad));
        assert_eq!(c.start_sensitivity, StartSensitivity::Low);
        assert_eq!((c.prefix_padding_ms, c.silence_duration_ms), (20, 250));
        let rules = gate_rules(&c);
        assert_eq!((rules.start_threshold, rules.onset_frames, rules.hangover_frames), (0.8, 6, 16));
        // Unspecified and unknown values behave as HIGH.
        assert_eq!(rules.stay_threshold, 0.5);
        let other = VadConfig { start_sensitivity: StartSensitivity::Other("X".into()), ..VadConfig::default() };
        assert_eq!(gate_rules(&other).start_threshold, 0.7);
    }

    #[test]
    fn odd_input_never_panics() {
        for rate in [0, 1, 7_999, 11_025, 22_050, 96_000, 1_000_000] {
            let mut vad = Vad::new(VadConfig::default(), rate);
            let mut events = Vec::new();
            vad.push(&[], &mut events);
            vad.push(&[i16::MAX, i16::MIN, i16::MAX, i16::MIN], &mut events);
            vad.push(&white_noise(9, 32_767, 5_000), &mut events);
            vad.flush(&mut events);
            vad.set_input_rate(rate.wrapping_add(1));
            vad.push(&[0; 100], &mut events);
            let extreme =
                VadConfig { prefix_padding_ms: u32::MAX, silence_duration_ms: u32::MAX, ..VadConfig::default() };
            let mut vad = Vad::new(extreme, rate);
            vad.push(&[1; 3_000], &mut events);
        }
    }
}
