//! Where microphone audio comes from: the capture callback side (a lock-free ring), the
//! [`MicBackend`] trait, the cpal backend and a test source that feeds buffers like a callback.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

/// The native format of an opened input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Reflect)]
pub struct InputFormat {
    /// The device's name.
    pub device: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

/// Why an input could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MicError {
    /// The system has no input device (or no default one).
    #[error("no input device")]
    NoDevice,
    /// No input device has this name.
    #[error("no input device named `{0}`")]
    NotFound(String),
    /// The backend refused (busy, unsupported format, permission, ...).
    #[error("{0}")]
    Backend(String),
}

const OK: u8 = 0;
const LOST: u8 = 1;
const FAILED: u8 = 2;

/// State shared by a capture callback and the capture thread.
#[derive(Debug, Default)]
pub(crate) struct CaptureShared {
    pub(crate) dropped: AtomicU64,
    pub(crate) written: AtomicU64,
    status: AtomicU8,
}

impl CaptureShared {
    /// `Some(true)`: the device is gone; `Some(false)`: the stream failed otherwise.
    pub(crate) fn fault(&self) -> Option<bool> {
        match self.status.load(Ordering::Acquire) {
            OK => None,
            LOST => Some(true),
            _ => Some(false),
        }
    }
}

/// The capture callback's end of the ring: copies interleaved samples in, never blocking,
/// allocating, locking or logging. What does not fit is dropped (whole frames) and counted.
pub struct CaptureWriter {
    producer: rtrb::Producer<f32>,
    channels: usize,
    shared: Arc<CaptureShared>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl CaptureWriter {
    pub(crate) fn new(producer: rtrb::Producer<f32>, channels: u16, shared: Arc<CaptureShared>) -> Self {
        CaptureWriter { producer, channels: usize::from(channels).max(1), shared }
    }

    /// Copies interleaved `f32` samples (−1..1) into the ring.
    pub fn write(&mut self, samples: &[f32]) {
        self.write_iter(samples.iter().copied());
    }

    /// Copies interleaved samples, converted on the fly, into the ring (for integer formats).
    pub fn write_iter(&mut self, samples: impl ExactSizeIterator<Item = f32>) {
        let len = samples.len();
        let fit = self.producer.slots().min(len);
        // Whole frames only, so the ring never loses its channel alignment.
        let fit = fit - fit % self.channels;
        if fit > 0
            && let Ok(chunk) = self.producer.write_chunk_uninit(fit)
        {
            chunk.fill_from_iter(samples.take(fit));
        }
        self.shared.written.fetch_add(fit as u64, Ordering::Relaxed);
        if fit < len {
            self.shared.dropped.fetch_add((len - fit) as u64, Ordering::Relaxed);
        }
    }

    /// A handle for the stream's error callback.
    pub fn fault_handle(&self) -> CaptureFault {
        CaptureFault(self.shared.clone())
    }
}

/// Reports stream failures to the capture thread (from a backend's error callback).
#[derive(Clone, Debug)]
pub struct CaptureFault(Arc<CaptureShared>);

impl CaptureFault {
    /// The device went away (unplugged, disabled): the capture thread reopens.
    pub fn device_lost(&self) {
        self.0.status.store(LOST, Ordering::Release);
    }

    /// The stream failed for another reason: the capture thread reopens.
    pub fn failed(&self) {
        self.0.status.store(FAILED, Ordering::Release);
    }
}

/// An open input stream; dropping it stops capture.
pub struct MicStream {
    /// What was opened.
    pub format: InputFormat,
    _guard: Box<dyn Any>,
}

impl std::fmt::Debug for MicStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicStream").field("format", &self.format).finish_non_exhaustive()
    }
}

impl MicStream {
    /// Wraps whatever keeps a backend's stream alive (it is dropped, on the capture thread, to
    /// stop capture; it need not be `Send`).
    pub fn new(format: InputFormat, guard: impl Any) -> Self {
        MicStream { format, _guard: Box::new(guard) }
    }
}

/// A source of microphone audio. Its methods run on the capture thread, which also owns the
/// streams it opens.
pub trait MicBackend: Send + 'static {
    /// Opens `device` (`None`: the default input) and starts capture. `writer` makes the ring's
    /// writing end once the format is known; the stream's callback copies into it.
    fn open(
        &mut self,
        device: Option<&str>,
        writer: &mut dyn FnMut(&InputFormat) -> CaptureWriter,
    ) -> Result<MicStream, MicError>;

    /// The current default input's name, to notice when the system switches it (`None`: none or
    /// unknown). Called every couple of seconds.
    fn default_device(&mut self) -> Option<String> {
        None
    }
}

/// Makes the capture thread's backend (the default uses cpal; tests install a [`TestMic`]).
#[derive(Resource, Clone)]
pub struct MicBackendFactory(pub Arc<dyn Fn() -> Box<dyn MicBackend> + Send + Sync>);

impl MicBackendFactory {
    /// A factory from a closure.
    pub fn new(make: impl Fn() -> Box<dyn MicBackend> + Send + Sync + 'static) -> Self {
        MicBackendFactory(Arc::new(make))
    }
}

impl Default for MicBackendFactory {
    fn default() -> Self {
        MicBackendFactory::new(|| Box::new(CpalBackend))
    }
}

impl std::fmt::Debug for MicBackendFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MicBackendFactory")
    }
}

/// Microphone input through cpal: the default or a named input device, in its native format
/// (any sample format, rate and channel count).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpalBackend;

fn device_name(device: &cpal::Device) -> String {
    device.description().map(|d| d.name().to_owned()).unwrap_or_else(|_| device.to_string())
}

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut writer: CaptureWriter,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let fault = writer.fault_handle();
    device.build_input_stream::<T, _, _>(
        config,
        // The real-time callback: convert and copy, nothing else.
        move |data: &[T], _| writer.write_iter(data.iter().map(|s| f32::from_sample_(*s))),
        move |e: cpal::Error| match e.kind() {
            // The backend rerouted the stream to the new default device: capture goes on.
            cpal::ErrorKind::DeviceChanged => {}
            cpal::ErrorKind::DeviceNotAvailable => fault.device_lost(),
            _ => fault.failed(),
        },
        None,
    )
}

impl MicBackend for CpalBackend {
    fn open(
        &mut self,
        name: Option<&str>,
        writer: &mut dyn FnMut(&InputFormat) -> CaptureWriter,
    ) -> Result<MicStream, MicError> {
        let host = cpal::default_host();
        let device = match name {
            Some(name) => host
                .input_devices()
                .map_err(|e| MicError::Backend(e.to_string()))?
                .find(|d| device_name(d) == name)
                .ok_or_else(|| MicError::NotFound(name.to_owned()))?,
            None => host.default_input_device().ok_or(MicError::NoDevice)?,
        };
        let supported = device.default_input_config().map_err(|e| MicError::Backend(e.to_string()))?;
        let format = InputFormat {
            device: device_name(&device),
            sample_rate: supported.sample_rate(),
            channels: supported.channels(),
        };
        let w = writer(&format);
        let config = supported.config();
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build::<f32>(&device, config, w),
            SampleFormat::F64 => build::<f64>(&device, config, w),
            SampleFormat::I8 => build::<i8>(&device, config, w),
            SampleFormat::I16 => build::<i16>(&device, config, w),
            SampleFormat::I24 => build::<cpal::I24>(&device, config, w),
            SampleFormat::I32 => build::<i32>(&device, config, w),
            SampleFormat::I64 => build::<i64>(&device, config, w),
            SampleFormat::U8 => build::<u8>(&device, config, w),
            SampleFormat::U16 => build::<u16>(&device, config, w),
            SampleFormat::U24 => build::<cpal::U24>(&device, config, w),
            SampleFormat::U32 => build::<u32>(&device, config, w),
            SampleFormat::U64 => build::<u64>(&device, config, w),
            other => return Err(MicError::Backend(format!("unsupported sample format {other}"))),
        }
        .map_err(|e| MicError::Backend(e.to_string()))?;
        stream.play().map_err(|e| MicError::Backend(e.to_string()))?;
        Ok(MicStream::new(format, stream))
    }

    fn default_device(&mut self) -> Option<String> {
        cpal::default_host().default_input_device().map(|d| device_name(&d))
    }
}

/// A microphone fed by code: tests (and tools) push interleaved `f32` buffers exactly as a
/// device callback would, at any rate and channel count. Install it with
/// [`TestMic::factory`]; push through the [`TestMicFeeder`].
#[derive(Clone, Debug)]
pub struct TestMic {
    inner: Arc<TestMicInner>,
}

#[derive(Debug)]
struct TestMicInner {
    format: InputFormat,
    writer: Mutex<Option<CaptureWriter>>,
    available: AtomicBool,
    default_name: Mutex<String>,
    opened: AtomicU64,
}

/// Pushes audio into a [`TestMic`] and simulates device loss and changes.
#[derive(Clone, Debug)]
pub struct TestMicFeeder {
    inner: Arc<TestMicInner>,
}

impl TestMic {
    /// A test input delivering `channels` interleaved channels at `sample_rate` Hz.
    pub fn new(sample_rate: u32, channels: u16) -> (TestMic, TestMicFeeder) {
        let inner = Arc::new(TestMicInner {
            format: InputFormat { device: "test mic".into(), sample_rate, channels },
            writer: Mutex::new(None),
            available: AtomicBool::new(true),
            default_name: Mutex::new("test mic".into()),
            opened: AtomicU64::new(0),
        });
        (TestMic { inner: inner.clone() }, TestMicFeeder { inner })
    }

    /// A backend factory for this input (insert it as a resource before the mic starts).
    pub fn factory(&self) -> MicBackendFactory {
        let mic = self.clone();
        MicBackendFactory::new(move || Box::new(mic.clone()))
    }
}

struct TestGuard(Arc<TestMicInner>);

impl Drop for TestGuard {
    fn drop(&mut self) {
        if let Ok(mut w) = self.0.writer.lock() {
            *w = None;
        }
    }
}

impl MicBackend for TestMic {
    fn open(
        &mut self,
        device: Option<&str>,
        writer: &mut dyn FnMut(&InputFormat) -> CaptureWriter,
    ) -> Result<MicStream, MicError> {
        if !self.inner.available.load(Ordering::Acquire) {
            return Err(MicError::NoDevice);
        }
        if let Some(name) = device
            && name != self.inner.format.device
        {
            return Err(MicError::NotFound(name.to_owned()));
        }
        let mut format = self.inner.format.clone();
        if let Ok(name) = self.inner.default_name.lock() {
            format.device.clone_from(&name);
        }
        let w = writer(&format);
        if let Ok(mut slot) = self.inner.writer.lock() {
            *slot = Some(w);
        }
        self.inner.opened.fetch_add(1, Ordering::AcqRel);
        Ok(MicStream::new(format, TestGuard(self.inner.clone())))
    }

    fn default_device(&mut self) -> Option<String> {
        if !self.inner.available.load(Ordering::Acquire) {
            return None;
        }
        self.inner.default_name.lock().ok().map(|n| n.clone())
    }
}

impl TestMicFeeder {
    /// Pushes interleaved samples as a capture callback would; returns `false` when no stream is
    /// open (nothing was written). Samples that do not fit in the ring are dropped and counted.
    pub fn push(&self, samples: &[f32]) -> bool {
        match self.inner.writer.lock() {
            Ok(mut w) => match w.as_mut() {
                Some(w) => {
                    w.write(samples);
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Whether a stream is open.
    pub fn is_open(&self) -> bool {
        self.inner.writer.lock().is_ok_and(|w| w.is_some())
    }

    /// How many times the input was opened (reopens count).
    pub fn times_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Acquire)
    }

    /// Waits (polling) until a stream is open, at most `timeout`.
    pub fn wait_open(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.is_open() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Simulates unplugging (`false`: the open stream reports the device lost; opening fails) or
    /// plugging in (`true`).
    pub fn set_available(&self, available: bool) {
        self.inner.available.store(available, Ordering::Release);
        if !available && let Ok(mut w) = self.inner.writer.lock() {
            if let Some(w) = w.as_ref() {
                w.fault_handle().device_lost();
            }
            *w = None;
        }
    }

    /// Simulates the system switching its default input to a device called `name`.
    pub fn set_default_device(&self, name: &str) {
        if let Ok(mut n) = self.inner.default_name.lock() {
            *n = name.to_owned();
        }
    }
}

/// The mix the speakers play, as the echo canceller's reference.
pub trait EchoReference: Send + 'static {
    /// Sample rate (Hz) and channel count of the interleaved samples.
    fn format(&self) -> (u32, u16);
    /// Moves available samples (whole frames) into `out`; returns how many were written.
    fn read(&mut self, out: &mut [f32]) -> usize;
}

/// An [`EchoReference`] reading an `rtrb` ring that the output mixer writes.
pub struct ReferenceRing {
    consumer: rtrb::Consumer<f32>,
    rate: u32,
    channels: u16,
}

impl std::fmt::Debug for ReferenceRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceRing").field("rate", &self.rate).field("channels", &self.channels).finish()
    }
}

impl ReferenceRing {
    /// Reads interleaved `channels`-channel audio at `rate` Hz from `consumer`.
    pub fn new(consumer: rtrb::Consumer<f32>, rate: u32, channels: u16) -> Self {
        ReferenceRing { consumer, rate, channels: channels.max(1) }
    }
}

impl EchoReference for ReferenceRing {
    fn format(&self) -> (u32, u16) {
        (self.rate, self.channels)
    }

    fn read(&mut self, out: &mut [f32]) -> usize {
        let ch = usize::from(self.channels);
        let n = self.consumer.slots().min(out.len());
        let n = n - n % ch;
        if n == 0 {
            return 0;
        }
        let (written, _) = self.consumer.pop_partial_slice(&mut out[..n]);
        written.len()
    }
}

/// The speaker reference for the microphone's echo canceller, taken by the capture thread when
/// it starts (the audio layer installs the mix it plays; a game with its own output can too).
#[derive(Resource, Default)]
pub struct MicEchoReference(pub Mutex<Option<Box<dyn EchoReference>>>);

impl MicEchoReference {
    /// Wraps a reference.
    pub fn new(reference: impl EchoReference) -> Self {
        MicEchoReference(Mutex::new(Some(Box::new(reference))))
    }

    pub(crate) fn take(&self) -> Option<Box<dyn EchoReference>> {
        self.0.lock().ok().and_then(|mut r| r.take())
    }
}

impl std::fmt::Debug for MicEchoReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MicEchoReference")
    }
}
