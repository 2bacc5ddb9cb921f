//! Test support for the `bevy_live_npc` workspace, shared by every crate's tests so that no
//! crate carries its own copy: the captured SDK messages and speech samples under
//! `tests/fixtures/`, a process-wide log capture, and the module-layer check of
//! `docs/ARCHITECTURE.md`. Not published.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub mod layers;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixtures directory: `tests/fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// The bytes of `tests/fixtures/{path}` (panics with the path when it cannot be read).
pub fn fixture(path: &str) -> Vec<u8> {
    let full = fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `tests/fixtures/{path}` parsed as JSON.
pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A speech sample from `tests/fixtures/speech/` as 16-bit mono samples and its sample rate.
pub fn speech(name: &str) -> (Vec<i16>, u32) {
    let path = fixtures_dir().join("speech").join(name);
    let reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{name}: 16-bit mono expected");
    let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>().expect("valid samples");
    (samples, spec.sample_rate)
}

/// A speech sample's samples only (see [`speech`]).
pub fn wav(name: &str) -> Vec<i16> {
    speech(name).0
}

/// Captures every log line of the process at `DEBUG` and above (installed once, shared by all
/// tests of the binary), so tests can check what was (and was not) logged.
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
        let _ = tracing::subscriber::set_global_default(subscriber);
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
