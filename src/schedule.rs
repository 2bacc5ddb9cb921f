//! What every plugin of the crate shares and none of them owns: the system sets, in the order
//! they run, and the hook through which the audio layer gives each session its sink.

use std::sync::Arc;

use bevy::prelude::*;

use crate::npc::LiveNpc;
use crate::session::{AudioSink, NullSink};

/// System sets of the plugin, in the order they run.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LiveNpcSystems {
    /// `PreUpdate`: session events become state, messages and queued tool calls.
    Receive,
    /// `PreUpdate`, after `Receive`: tool systems run and their results go back.
    Tools,
    /// `Update`: who the player is talking to (proximity, facing, explicit focus).
    Targeting,
    /// `Update`, after `Targeting`: sessions open and close.
    Lifecycle,
    /// `PostUpdate`: player input and context updates are sent.
    Send,
}

/// System sets of the audio plugin ([`NpcAudioPlugin`](crate::audio::NpcAudioPlugin), feature
/// `audio`).
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NpcAudioSystems {
    /// `PreUpdate`, after [`LiveNpcSystems::Receive`]: playback events become messages and
    /// state; lip-sync levels are updated.
    Playback,
    /// `PostUpdate`, after `TransformSystems::Propagate`: new voices get tracks; voices and the
    /// listener follow their entities.
    Spatial,
}

/// System sets of the microphone ([`NpcMicPlugin`](crate::mic::NpcMicPlugin), feature `mic`),
/// in `PostUpdate` before [`LiveNpcSystems::Send`].
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NpcMicSystems {
    /// Capture threads start and stop; settings, focus and push-to-talk reach them.
    Control,
    /// Activity markers are sent; levels and status are published.
    Report,
}

/// Creates the audio sink of each new session (the audio layer installs its own).
#[derive(Resource, Clone)]
pub struct AudioSinkFactory(pub Arc<MakeSink>);

/// Makes the audio sink of an NPC's new session.
pub type MakeSink = dyn Fn(Entity, &LiveNpc) -> Box<dyn AudioSink> + Send + Sync;

impl Default for AudioSinkFactory {
    fn default() -> Self {
        AudioSinkFactory(Arc::new(|_, _| Box::new(NullSink)))
    }
}

/// Present while [`LiveNpcPlugins`](crate::plugin::LiveNpcPlugins) adds its members, so that a
/// member the app already has is skipped quietly (it was added first on purpose) rather than
/// with a warning.
#[derive(Resource)]
pub(crate) struct AddingPluginGroup;

/// Whether a plugin that may be added more than once (audio, microphone) should build: the
/// first instance does; a later one is skipped, quietly inside the plugin group (the app's own
/// came first) and with a warning outside it (its configuration is not used).
#[cfg_attr(not(any(feature = "audio", feature = "mic")), allow(dead_code))]
pub(crate) fn first_instance<Built: Resource + Default>(app: &mut App, name: &str) -> bool {
    if !app.world().contains_resource::<Built>() {
        app.init_resource::<Built>();
        return true;
    }
    if !app.world().contains_resource::<AddingPluginGroup>() {
        warn!(
            "live npc: {name} was added twice; the first one runs and this one is ignored \
             (configure it with LiveNpcPlugins.set(..), or add it before LiveNpcPlugin)"
        );
    }
    false
}
