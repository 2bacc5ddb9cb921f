//! The integration tests: one binary, since each test binary re-links Bevy.

use std::sync::{Arc, Mutex, OnceLock};

#[cfg(all(feature = "audio", feature = "sim"))]
mod audio;
#[cfg(feature = "sim")]
mod examples;
#[cfg(all(feature = "mic", feature = "sim"))]
mod mic;
#[cfg(feature = "sim")]
mod plugin;
mod protocol;
#[cfg(feature = "sim")]
mod session;
#[cfg(feature = "sim")]
mod sim;

/// Reads a speech sample from `tests/fixtures/speech/` as 16-bit mono samples.
#[allow(dead_code)]
pub fn wav(name: &str) -> Vec<i16> {
    let path = format!("{}/tests/fixtures/speech/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    reader.samples::<i16>().map(|s| s.expect("valid sample")).collect()
}

/// Captures every log line of the process (installed once; shared by all tests).
#[allow(dead_code)]
pub fn capture_logs() -> Arc<Mutex<String>> {
    static LOGS: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(String::new()));
        let writer = LogWriter(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = bevy::log::tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<String>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut s) = self.0.lock() {
            s.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
