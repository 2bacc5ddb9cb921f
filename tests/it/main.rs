//! The integration tests: one binary, since each test binary re-links Bevy.

mod protocol;

