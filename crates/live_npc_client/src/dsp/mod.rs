//! Speech DSP shared by servers and games (feature `dsp`): the pitch check that tells voiced
//! speech from broadband noise, used by the simulator's VAD and by a game's microphone gate.

mod pitch;

pub use pitch::{FRAME, PitchCheck};
