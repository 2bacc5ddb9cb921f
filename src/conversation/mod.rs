//! Conversations: who the player talks to ([`focus`]), when sessions open and close
//! ([`lifecycle`]), session events as state and messages ([`receive`]), tool dispatch
//! ([`tools`]), player input and context updates ([`send`]). Each part registers its own
//! systems; [`NpcConversationPlugin`] adds them all but the tools ([`NpcToolsPlugin`]).

mod components;
pub mod focus;
pub mod lifecycle;
pub mod receive;
pub mod send;
pub mod tools;

use bevy::prelude::*;

pub use components::{
    ConversationRequested, InEngageRange, MicRoute, NpcConversation, NpcFocus, PendingSay, PendingToolCalls,
    PlaybackDrivenSpeech,
};
pub use focus::update_focus;
pub use lifecycle::{NpcCommandsExt, close_idle_sessions, open_sessions};
pub use receive::receive_events;
pub use send::{PlayerInput, publish_diagnostics, send_context_updates, send_player_input};
pub use tools::{NpcToolsPlugin, answer_deferred_calls, dispatch_tool_calls};

/// Conversations: focus, session lifecycle, session events, player input and context updates,
/// diagnostics. Part of [`LiveNpcPlugins`](crate::plugin::LiveNpcPlugins).
#[derive(Clone, Copy, Debug, Default)]
pub struct NpcConversationPlugin;

impl Plugin for NpcConversationPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<crate::tools::NpcToolRegistry>().add_plugins((
            focus::plugin,
            lifecycle::plugin,
            receive::plugin,
            send::plugin,
        ));
    }

    // In `finish`: whether the tools plugin was added is known only once every plugin is.
    fn finish(&self, app: &mut App) {
        tools::fallback_without_tools(app);
    }
}
