//! # `bevy_live_npc`
//!
//! Voiced NPCs for Bevy: each entity with a `LiveNpc` component holds its own real-time voice
//! conversation through a Gemini Live API session, and an embedded Live API simulator makes
//! everything work offline.
//!
//! This release contains the complete wire protocol ([`protocol`]); the session client, the
//! plugin, spatial voices and the microphone build on it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod protocol;
#[cfg(feature = "sim")]
pub mod sim;

/// Commonly used items.
pub mod prelude {
    pub use crate::protocol::{ClientMessage, LiveError, ServerMessage, ServerPayload};
}
