//! Speech DSP shared by servers and games (feature `dsp`): the speech gate of the simulator's
//! VAD and of a game's open-mic gate (earshot scores, a pitch check against noise, onset and
//! hangover), the pitch check itself, and the one resampler every audio path uses.

mod gate;
mod pitch;
mod resample;

pub use gate::{GateChange, GateFrame, GateRules, SpeechGate};
pub use pitch::{FRAME, PitchCheck};
pub use resample::{MAX_RATE, MonoResampler, ResampleError, to_i16};
