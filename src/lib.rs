//! # `bevy_live_npc`
//!
//! NPCs you can talk to out loud, for Bevy. An entity with a [`LiveNpc`](npc::LiveNpc)
//! component gets its own Gemini Live API session while the player talks to it: the player's
//! microphone (or typed text) goes to the model, the model's voice and subtitles come back, and
//! the model reads and changes the game through tools that are ordinary Bevy systems.
//!
//! With no `GEMINI_API_KEY` set, sessions go to an embedded Live API simulator — a real
//! WebSocket server speaking the same protocol — so everything works offline.
//!
//! ```
//! use bevy::prelude::*;
//! use bevy_live_npc::prelude::*;
//! use bevy_live_npc::testing::{TestApp, sim_plugin};
//!
//! #[derive(Component, Default)]
//! struct Gate { open: bool }
//!
//! fn open_gate(In(_): In<ToolInput>, mut gates: Query<&mut Gate>) -> ToolResult {
//!     gates.iter_mut().for_each(|mut g| g.open = true);
//!     Ok("the gate is open".into())
//! }
//!
//! let mut app = App::new();
//! app.add_plugins((MinimalPlugins, sim_plugin(None)))
//!     .add_npc_tool(NpcTool::new("open_gate", "Opens the village gate.").run(open_gate));
//! let gate = app.world_mut().spawn(Gate::default()).id();
//! let mira = app.world_mut().spawn(
//!     LiveNpc::new("Mira").persona("You are Mira, the gatekeeper.").tools(["open_gate"]),
//! ).id();
//! app.finish();
//! app.cleanup();
//!
//! app.world_mut().write_message(SayToNpc { npc: mira, text: "Please open the gate.".into() });
//! let reply = app.update_until::<NpcTranscript>(|t| t.speaker == Speaker::Npc && t.is_final);
//! assert!(reply.is_some());
//! assert!(app.world().get::<Gate>(gate).unwrap().open);
//! ```
//!
//! ## Layout
//! - [`plugin`]: [`LiveNpcPlugin`](plugin::LiveNpcPlugin), settings, system sets, run conditions.
//! - [`npc`]: components ([`LiveNpc`](npc::LiveNpc), [`NpcListener`](npc::NpcListener),
//!   [`NpcState`](npc::NpcState), [`NpcStats`](npc::NpcStats)).
//! - [`conversation`]: focus, session lifecycle, the commands extension.
//! - [`messages`]: messages in and out (also triggered as entity events).
//! - [`tools`]: tools as systems.
//! - [`assets`]: NPC definitions from JSON asset files, hot-reloaded.
//! - `audio` (feature `audio`): NPC voices on kira spatial tracks, lip-sync, offline rendering;
//!   `audio::capture` (feature `mic`): the player's microphone, push-to-talk, open mic, echo
//!   cancellation.
//! - [`session`]: the Live session client, [`protocol`]: the wire protocol, [`token`]: ephemeral
//!   tokens — re-exported from the Bevy-free [`live_npc_client`] crate.
//! - `sim` (feature `sim`): the embedded simulator, the [`live_npc_sim`] crate;
//!   [`testing`]: helpers for your own tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assets;
#[cfg(feature = "audio")]
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
pub mod audio;
/// NPC voices; with feature `mic` but not `audio`, only the microphone's old path `capture`.
#[cfg(all(feature = "mic", not(feature = "audio")))]
#[cfg_attr(docsrs, doc(cfg(feature = "mic")))]
pub mod audio {
    /// The player's microphone: [`crate::mic`], at its old path.
    pub use crate::mic as capture;
}
pub mod conversation;
pub mod messages;
#[cfg(feature = "mic")]
#[cfg_attr(docsrs, doc(cfg(feature = "mic")))]
pub mod mic;
pub mod npc;
pub mod plugin;
pub mod runtime;
pub mod schedule;
pub mod settings;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod testing;
pub mod tools;

/// The Bevy-free crates this one is built on.
pub use live_npc_client;
/// The wire protocol: the [`live_npc_client`] crate's `protocol`.
pub use live_npc_client::protocol;
/// The Live session client (no Bevy): the [`live_npc_client`] crate's `session`.
pub use live_npc_client::session;
/// Ephemeral tokens: the [`live_npc_client`] crate's `token`.
pub use live_npc_client::token;
/// The embedded Live API simulator (feature `sim`): the [`live_npc_sim`] crate.
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub use live_npc_sim as sim;
#[cfg(feature = "sim")]
pub use live_npc_sim;

/// Commonly used items.
pub mod prelude {
    pub use crate::assets::{NpcDefinition, NpcDefinitionHandle};
    #[cfg(feature = "audio")]
    pub use crate::audio::{
        AudioBackendChoice, MouthShape, NpcAudioPlugin, NpcLipSync, NpcOcclusion, NpcVoice, NpcVoiceSettings,
        VoiceControl,
    };
    pub use crate::conversation::{MicRoute, NpcCommandsExt, NpcConversation, NpcFocus};
    pub use crate::messages::*;
    #[cfg(feature = "mic")]
    pub use crate::mic::{MicLevel, MicMode, MicStatus, NpcMicPlugin, PlayerMic};
    pub use crate::npc::{ContextCompression, LiveNpc, NpcListener, NpcState, NpcStats, VadSettings};
    #[cfg(feature = "sim")]
    pub use crate::plugin::SimulatorSettings;
    pub use crate::plugin::{
        LiveBackend, LiveNpcPlugin, LiveNpcPlugins, LiveNpcSettings, LiveNpcSystems, npc_focused, npc_listening,
        npc_speaking,
    };
    pub use crate::protocol::LiveError;
    pub use crate::session::{Auth, Secret};
    pub use crate::tools::{AppNpcToolExt, NoArgs, NpcTool, ToolInput, ToolReply, ToolResult, ToolScheduling};
}
