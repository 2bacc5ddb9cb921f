//! The Gemini Live wire protocol (`BidiGenerateContent`) as Rust types.
//!
//! Pure serde: no tokio, no Bevy systems. Everything emitted is canonical proto3 JSON
//! (camelCase, standard base64, enums as strings, int64 as strings, durations as `"1.5s"`).
//! Everything parsed is what real peers send: both casings, both base64 alphabets, int64 as
//! a number or a string, JSON from text or binary frames.
//!
//! Client-side parsing is lenient (unknown fields ignored, unknown enum values kept as
//! `Other`, unknown message kinds as [`ServerPayload::Unknown`]); the simulator parses with
//! [`ClientMessage::from_slice_strict`], which rejects what the real server rejects and words
//! the error as it does.
//!
//! Audio stays base64 text borrowed from the frame until it is decoded, once, into the
//! caller's reused buffer:
//!
//! ```
//! use live_npc_client::protocol::{ServerMessage, ServerPayload};
//!
//! let frame = br#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQACAA=="}}]}}}"#;
//! let mut pcm = Vec::new();
//! let msg = ServerMessage::from_slice(frame).unwrap();
//! if let ServerPayload::ServerContent(content) = &msg.payload {
//!     content.append_audio(&mut pcm).unwrap();
//! }
//! assert_eq!(pcm, [1, 2]);
//! ```

mod client;
mod codec;
mod content;
mod enums;
mod error;
mod mode;
mod server;
/// Strict parsing as the real server does it (feature `strict`): used by the simulator.
#[cfg(feature = "strict")]
#[cfg_attr(docsrs, doc(cfg(feature = "strict")))]
pub mod strict;
mod token;

pub use client::*;
pub use codec::{Base64Data, MAX_DURATION, MimeType, format_duration, parse_duration};
pub use content::*;
pub use enums::*;
pub use error::{CloseCode, DecodeError, LiveError, Retry, reasons, scrub_secrets, truncate_reason};
pub use server::*;
pub use token::*;

/// Sample rate of microphone audio sent to the model.
pub const INPUT_SAMPLE_RATE: u32 = 16_000;
/// Sample rate of the model's voice.
pub const OUTPUT_SAMPLE_RATE: u32 = 24_000;
/// The API version in the default path.
pub const DEFAULT_API_VERSION: &str = "v1beta";

/// The WebSocket path of the service for an API `version` (`v1beta`), `constrained` for
/// ephemeral tokens.
pub fn ws_path(version: &str, constrained: bool) -> String {
    let method = if constrained { "BidiGenerateContentConstrained" } else { "BidiGenerateContent" };
    format!("/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}")
}

/// Adds the `models/` prefix when missing.
pub fn model_resource(model: &str) -> String {
    if model.starts_with("models/") { model.to_owned() } else { format!("models/{model}") }
}
