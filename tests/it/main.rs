//! The plugin's integration tests: one binary, since each test binary re-links Bevy. The
//! protocol, session and simulator tests live in their own crates (no Bevy linked).

#[cfg(all(feature = "audio", feature = "sim"))]
mod audio;
#[cfg(feature = "sim")]
mod examples;
#[cfg(all(feature = "mic", feature = "sim"))]
mod mic;
mod paths;
#[cfg(feature = "sim")]
mod plugin;
mod support;
