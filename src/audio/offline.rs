//! An offline kira backend: the same renderer, tracks and listener as on a sound card, rendered
//! into memory — pulled by hand (tests) or paced by a clock thread (headless programs) — and
//! optionally recorded to a WAV file.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kira::backend::{Backend, Renderer};
use rtrb::{Consumer, Producer, RingBuffer};

/// What drives an [`OfflineOutput`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OfflineClock {
    /// Nothing renders until you call [`OfflineOutput::render`] (deterministic tests).
    Manual,
    /// A clock thread renders `block_frames` at a time, `speed` × real time (1.0 = what a
    /// sound card would do).
    RealTime {
        /// Rendering speed relative to real time.
        speed: f64,
    },
}

/// Settings of an [`OfflineOutput`].
#[derive(Clone, Debug)]
pub struct OfflineSettings {
    /// Output sample rate (Hz).
    pub sample_rate: u32,
    /// What drives rendering.
    pub clock: OfflineClock,
    /// Frames per render on the clock thread (one "audio callback").
    pub block_frames: usize,
    /// Write the stereo mix to this WAV file (16-bit, at `sample_rate`).
    pub record: Option<PathBuf>,
    /// Keep up to this much of the rendered mix in memory ([`OfflineOutput::take_captured`]).
    pub capture: Option<Duration>,
}

impl Default for OfflineSettings {
    fn default() -> Self {
        OfflineSettings {
            sample_rate: 48_000,
            clock: OfflineClock::Manual,
            block_frames: 512,
            record: None,
            capture: None,
        }
    }
}

/// Why an offline output failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The WAV file could not be created or written.
    #[error("recording to {path}: {error}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// An output can feed only one `AudioManager`.
    #[error("this offline output is already attached to an audio manager")]
    AlreadyStarted,
    /// A setting is out of range.
    #[error("invalid offline output settings: {0}")]
    Settings(String),
}

/// Counters and flags shared with the threads.
#[derive(Debug, Default)]
struct ClockState {
    frames: AtomicU64,
    stop: AtomicBool,
    clock_done: AtomicBool,
    record_dropped: AtomicU64,
}

struct Recorder {
    wav: Option<hound::WavWriter<BufWriter<File>>>,
    path: Option<PathBuf>,
    error: Option<String>,
    capture: Vec<f32>,
    capture_limit: usize,
    capture_dropped: u64,
    recorded_frames: u64,
}

impl Recorder {
    fn wants(&self) -> bool {
        self.wav.is_some() || self.capture_limit > 0
    }

    fn write(&mut self, interleaved: &[f32]) {
        if self.capture_limit > 0 {
            let room = self.capture_limit.saturating_sub(self.capture.len());
            let n = room.min(interleaved.len());
            self.capture.extend_from_slice(&interleaved[..n]);
            self.capture_dropped += (interleaved.len() - n) as u64;
        }
        if let Some(wav) = self.wav.as_mut() {
            let mut failed = None;
            for s in interleaved {
                let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                if let Err(e) = wav.write_sample(v) {
                    failed = Some(e.to_string());
                    break;
                }
            }
            if let Some(e) = failed {
                self.error = Some(e);
                self.wav = None;
            }
        }
        self.recorded_frames += (interleaved.len() / 2) as u64;
    }
}

struct Inner {
    sample_rate: u32,
    clock: OfflineClock,
    block_frames: usize,
    renderer: Mutex<Option<Renderer>>,
    attached: AtomicBool,
    state: Arc<ClockState>,
    recorder: Arc<Mutex<Recorder>>,
    clock_thread: Mutex<Option<JoinHandle<Renderer>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

/// Renders kira's mix without a sound card. Cheap to clone (all clones are the same output).
///
/// Give it to the plugin with [`AudioBackendChoice::Offline`](super::AudioBackendChoice::Offline)
/// (or to a kira `AudioManager<OfflineBackend>` as its backend settings). With
/// [`OfflineClock::Manual`], call [`render`](Self::render) to pull audio; with
/// [`OfflineClock::RealTime`], a clock thread renders by itself. [`finish`](Self::finish)
/// stops the clock and completes the WAV file (also done when the app exits, and on drop).
///
/// ```
/// use bevy_live_npc::audio::{OfflineOutput, OfflineSettings};
///
/// let output = OfflineOutput::new(OfflineSettings::default()).unwrap();
/// assert_eq!(output.sample_rate(), 48_000);
/// assert!(output.render(128).is_empty(), "nothing to render before a manager is attached");
/// ```
#[derive(Clone)]
pub struct OfflineOutput {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OfflineOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineOutput")
            .field("sample_rate", &self.inner.sample_rate)
            .field("clock", &self.inner.clock)
            .field("frames_rendered", &self.frames_rendered())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OfflineOutput {
    /// An output with these settings; creates the WAV file now (so a bad path fails early).
    pub fn new(settings: OfflineSettings) -> Result<Self, OfflineError> {
        if !(8_000..=384_000).contains(&settings.sample_rate) {
            return Err(OfflineError::Settings(format!("sample rate {} Hz", settings.sample_rate)));
        }
        let clock = match settings.clock {
            OfflineClock::RealTime { speed } if !(speed.is_finite() && speed > 0.0) => {
                return Err(OfflineError::Settings(format!("speed {speed}")));
            }
            c => c,
        };
        let wav = match &settings.record {
            Some(path) => {
                let spec = hound::WavSpec {
                    channels: 2,
                    sample_rate: settings.sample_rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                Some(
                    hound::WavWriter::create(path, spec)
                        .map_err(|e| OfflineError::Wav { path: path.clone(), error: e.to_string() })?,
                )
            }
            None => None,
        };
        let capture_limit =
            settings.capture.map_or(0, |d| (d.as_secs_f64() * f64::from(settings.sample_rate)) as usize * 2);
        Ok(OfflineOutput {
            inner: Arc::new(Inner {
                sample_rate: settings.sample_rate,
                clock,
                block_frames: settings.block_frames.clamp(16, 16_384),
                renderer: Mutex::new(None),
                attached: AtomicBool::new(false),
                state: Arc::new(ClockState::default()),
                recorder: Arc::new(Mutex::new(Recorder {
                    wav,
                    path: settings.record,
                    error: None,
                    capture: Vec::with_capacity(capture_limit.min(48_000 * 2 * 60)),
                    capture_limit,
                    capture_dropped: 0,
                    recorded_frames: 0,
                })),
                clock_thread: Mutex::new(None),
                writer_thread: Mutex::new(None),
            }),
        })
    }

    /// A hand-driven output at `sample_rate` that keeps nothing.
    pub fn manual(sample_rate: u32) -> Self {
        let settings = OfflineSettings { sample_rate: sample_rate.clamp(8_000, 384_000), ..Default::default() };
        // Cannot fail with a clamped rate and no file; the default output is the safe answer.
        Self::new(settings).unwrap_or_default()
    }

    /// The output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.inner.sample_rate
    }

    /// What drives rendering.
    pub fn clock(&self) -> OfflineClock {
        self.inner.clock
    }

    /// Frames rendered so far.
    pub fn frames_rendered(&self) -> u64 {
        self.inner.state.frames.load(Ordering::Acquire)
    }

    /// Seconds of audio rendered so far.
    pub fn seconds_rendered(&self) -> f64 {
        self.frames_rendered() as f64 / f64::from(self.inner.sample_rate)
    }

    /// Renders `frames` frames now (one "audio callback") and returns them as interleaved
    /// stereo. Empty when no manager is attached or a clock thread owns the renderer.
    pub fn render(&self, frames: usize) -> Vec<f32> {
        let mut out = vec![0.0; frames * 2];
        let n = self.render_into(&mut out);
        out.truncate(n * 2);
        out
    }

    /// Renders into `out` (interleaved stereo, `out.len() / 2` frames); returns the frames
    /// rendered (0 when no manager is attached or a clock thread owns the renderer).
    pub fn render_into(&self, out: &mut [f32]) -> usize {
        let frames = out.len() / 2;
        let mut slot = lock(&self.inner.renderer);
        let Some(renderer) = slot.as_mut() else {
            return 0;
        };
        renderer.on_start_processing();
        renderer.process(&mut out[..frames * 2], 2);
        drop(slot);
        self.inner.state.frames.fetch_add(frames as u64, Ordering::AcqRel);
        let mut rec = lock(&self.inner.recorder);
        if rec.wants() {
            rec.write(&out[..frames * 2]);
        }
        frames
    }

    /// The captured mix so far (interleaved stereo), when capture is on.
    pub fn captured(&self) -> Vec<f32> {
        lock(&self.inner.recorder).capture.clone()
    }

    /// Takes the captured mix (interleaved stereo), leaving the capture empty.
    pub fn take_captured(&self) -> Vec<f32> {
        std::mem::take(&mut lock(&self.inner.recorder).capture)
    }

    /// Frames written to the WAV file or the capture so far.
    pub fn recorded_frames(&self) -> u64 {
        lock(&self.inner.recorder).recorded_frames
    }

    /// Frames the clock thread could not hand to the recorder (it fell behind).
    pub fn record_dropped_frames(&self) -> u64 {
        self.inner.state.record_dropped.load(Ordering::Relaxed) / 2
    }

    /// Stops the clock thread, writes what it rendered and completes the WAV file. Returns the
    /// file's path the first time a recording is completed. Safe to call more than once; after
    /// it, [`render`](Self::render) works by hand.
    pub fn finish(&self) -> Result<Option<PathBuf>, OfflineError> {
        let state = &self.inner.state;
        state.stop.store(true, Ordering::Release);
        if let Some(handle) = lock(&self.inner.clock_thread).take()
            && let Ok(renderer) = handle.join()
        {
            *lock(&self.inner.renderer) = Some(renderer);
        }
        state.clock_done.store(true, Ordering::Release);
        if let Some(handle) = lock(&self.inner.writer_thread).take() {
            let _ = handle.join();
        }
        let mut rec = lock(&self.inner.recorder);
        let path = rec.path.clone();
        if let Some(error) = rec.error.take() {
            return Err(OfflineError::Wav { path: path.unwrap_or_default(), error });
        }
        match rec.wav.take() {
            Some(wav) => {
                wav.finalize()
                    .map_err(|e| OfflineError::Wav { path: path.clone().unwrap_or_default(), error: e.to_string() })?;
                Ok(path)
            }
            None => Ok(None),
        }
    }

    /// Takes the renderer (kira calls this through [`OfflineBackend::start`]).
    fn attach(&self, renderer: Renderer) -> Result<(), OfflineError> {
        if self.inner.attached.swap(true, Ordering::AcqRel) {
            return Err(OfflineError::AlreadyStarted);
        }
        match self.inner.clock {
            OfflineClock::Manual => {
                *lock(&self.inner.renderer) = Some(renderer);
            }
            OfflineClock::RealTime { speed } => {
                let wants = lock(&self.inner.recorder).wants();
                let (producer, consumer) = if wants {
                    // Two seconds of slack between the clock and the writer.
                    let (p, c) = RingBuffer::new(self.inner.sample_rate as usize * 2 * 2);
                    (Some(p), Some(c))
                } else {
                    (None, None)
                };
                let (rate, block, state) = (self.inner.sample_rate, self.inner.block_frames, self.inner.state.clone());
                let clock = std::thread::Builder::new()
                    .name("live-npc-offline-audio".into())
                    .spawn(move || clock_loop(renderer, rate, speed, block, &state, producer));
                match clock {
                    Ok(h) => *lock(&self.inner.clock_thread) = Some(h),
                    Err(e) => return Err(OfflineError::Settings(format!("could not start the clock thread: {e}"))),
                }
                if let Some(consumer) = consumer {
                    let (recorder, state) = (self.inner.recorder.clone(), self.inner.state.clone());
                    if let Ok(h) = std::thread::Builder::new()
                        .name("live-npc-offline-writer".into())
                        .spawn(move || writer_loop(consumer, &recorder, &state))
                    {
                        *lock(&self.inner.writer_thread) = Some(h);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for OfflineOutput {
    fn default() -> Self {
        OfflineOutput {
            inner: Arc::new(Inner {
                sample_rate: 48_000,
                clock: OfflineClock::Manual,
                block_frames: 512,
                renderer: Mutex::new(None),
                attached: AtomicBool::new(false),
                state: Arc::new(ClockState::default()),
                recorder: Arc::new(Mutex::new(Recorder {
                    wav: None,
                    path: None,
                    error: None,
                    capture: Vec::new(),
                    capture_limit: 0,
                    capture_dropped: 0,
                    recorded_frames: 0,
                })),
                clock_thread: Mutex::new(None),
                writer_thread: Mutex::new(None),
            }),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(h) = lock(&self.clock_thread).take() {
            let _ = h.join();
        }
        self.state.clock_done.store(true, Ordering::Release);
        if let Some(h) = lock(&self.writer_thread).take() {
            let _ = h.join();
        }
        if let Some(wav) = lock(&self.recorder).wav.take() {
            let _ = wav.finalize();
        }
    }
}

/// The offline clock: renders a block whenever one is due. This thread is the offline
/// "audio thread": it renders and pushes to a lock-free ring, nothing else.
fn clock_loop(
    mut renderer: Renderer,
    rate: u32,
    speed: f64,
    block: usize,
    state: &ClockState,
    mut record: Option<Producer<f32>>,
) -> Renderer {
    let mut buf = vec![0.0f32; block * 2];
    let per_sec = f64::from(rate) * speed;
    let start = Instant::now();
    let mut done: u64 = 0;
    while !state.stop.load(Ordering::Acquire) {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        if done + block as u64 <= due {
            renderer.on_start_processing();
            renderer.process(&mut buf, 2);
            done += block as u64;
            state.frames.store(done, Ordering::Release);
            if let Some(p) = record.as_mut() {
                // Whole frames only, so the stereo interleave never slips.
                let n = buf.len().min(p.slots()) & !1;
                if let Ok(chunk) = p.write_chunk_uninit(n) {
                    chunk.fill_from_iter(buf[..n].iter().copied());
                }
                if n < buf.len() {
                    state.record_dropped.fetch_add((buf.len() - n) as u64, Ordering::Relaxed);
                }
            }
            continue;
        }
        let next = (done + block as u64) as f64 / per_sec;
        let wait = next - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait.min(0.05)));
        }
    }
    renderer
}

/// Moves rendered audio from the clock's ring to the WAV file and the capture.
fn writer_loop(mut ring: Consumer<f32>, recorder: &Mutex<Recorder>, state: &ClockState) {
    let mut buf = vec![0.0f32; 16_384];
    loop {
        // Read the flag first: once the clock is done, an empty ring means everything is out.
        let clock_done = state.clock_done.load(Ordering::Acquire);
        let n = ring.slots().min(buf.len()) & !1;
        if n > 0 {
            if let Ok(chunk) = ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
            }
            lock(recorder).write(&buf[..n]);
            continue;
        }
        if clock_done {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A kira [`Backend`] that hands the renderer to an [`OfflineOutput`].
#[derive(Debug)]
pub struct OfflineBackend {
    output: OfflineOutput,
}

impl OfflineBackend {
    /// The output this backend renders into.
    pub fn output(&self) -> &OfflineOutput {
        &self.output
    }
}

impl Backend for OfflineBackend {
    type Settings = OfflineOutput;
    type Error = OfflineError;

    fn setup(settings: Self::Settings, _internal_buffer_size: usize) -> Result<(Self, u32), Self::Error> {
        let rate = settings.sample_rate();
        Ok((OfflineBackend { output: settings }, rate))
    }

    fn start(&mut self, renderer: Renderer) -> Result<(), Self::Error> {
        self.output.attach(renderer)
    }
}
