//! # `live_npc_client`
//!
//! A Gemini Live API client with no game engine in it: the wire protocol, a codec that decodes
//! server audio once with SIMD into a reused buffer, the session client (one tokio runtime for
//! every session; bounded queues; `goAway` switch-over and resumption), ephemeral tokens and a
//! token server. `bevy_live_npc` builds its NPCs on it; game backends, token servers and tools
//! use it directly.
//!
//! ```no_run
//! use live_npc_client::protocol::Setup;
//! use live_npc_client::session::{Auth, LiveRuntime, NullSink, SessionConfig, SessionEvent};
//!
//! let runtime = LiveRuntime::new().unwrap();
//! let setup = Setup { model: "models/gemini-3.8-live".into(), ..Default::default() };
//! let session = runtime.spawn(SessionConfig::new("ws://127.0.0.1:9000", Auth::None, setup), NullSink);
//! session.say("Hello!").unwrap();
//! ```
//!
//! ## Layout (each module imports only from the ones below it; see `docs/ARCHITECTURE.md`)
//! - [`session`]: the Live session client and the backend rules (key, endpoint, simulator).
//! - [`token`]: ephemeral tokens: minting for game backends, a token server, fetching.
//! - `http` (hidden): the small HTTP/1.1 the token endpoints speak.
//! - [`secret`], [`rfc3339`], `tls`: secrets, token times, TLS configuration.
//! - `dsp` (feature `dsp`): the pitch check shared by the simulator's VAD and microphone gates.
//! - [`protocol`]: the wire protocol (pure serde).
//!
//! ## Features
//! - `tls` (default): `wss://` and `https://` through rustls with the webpki roots.
//! - `strict`: [`protocol::ClientMessage::from_slice_strict`], parsing as the real server does.
//! - `dsp`: the speech DSP.
//! - `bevy_reflect`: `Reflect` on the public data types.
//!
//! Logs go through `tracing` (Bevy's `LogPlugin` shows them); keys and tokens never appear in
//! them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "dsp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dsp")))]
pub mod dsp;
#[doc(hidden)]
pub mod http;
pub mod protocol;
pub mod rfc3339;
pub mod secret;
#[doc(hidden)]
pub mod server;
pub mod session;
pub mod tls;
pub mod token;
