//! Helpers for testing games that use this crate: the in-process simulator with a scenario,
//! and bounded update loops that wait for a message.
//!
//! ```
//! use bevy::prelude::*;
//! use bevy_live_npc::prelude::*;
//! use bevy_live_npc::testing::{TestApp, sim_plugin};
//!
//! let mut app = App::new();
//! app.add_plugins((MinimalPlugins, sim_plugin(None)));
//! let npc = app.world_mut().spawn(LiveNpc::new("Ada")).id();
//! app.finish();
//! app.cleanup();
//! app.world_mut().write_message(SayToNpc { npc, text: "Hello!".into() });
//! let line = app.update_until::<NpcTranscript>(|t| t.speaker == Speaker::Npc && t.is_final).unwrap();
//! assert!(!line.text.is_empty());
//! ```

use std::time::{Duration, Instant};

use bevy::ecs::message::MessageCursor;
use bevy::prelude::*;

use crate::plugin::{LiveNpcPlugin, SimulatorSettings};
use crate::sim::Scenario;

/// The plugin on the embedded simulator, unpaced (replies arrive as fast as the machine
/// allows), with an optional scenario. No audio output (tests behave the same with or without
/// a sound card); choose one with `.audio(..)`.
pub fn sim_plugin(scenario: Option<Scenario>) -> LiveNpcPlugin {
    let plugin = LiveNpcPlugin::default().simulator(SimulatorSettings { pace: 0.0, seed: 7, scenario });
    #[cfg(feature = "audio")]
    let plugin = plugin.audio(crate::audio::AudioBackendChoice::Disabled);
    plugin
}

/// How long the update loops wait at most (a failure guard, not a timing assertion).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// Bounded update loops for tests.
pub trait TestApp {
    /// Updates until a message `M` matching `pred` is written (returns it), or until
    /// [`DEFAULT_WAIT`] has passed (returns `None`).
    fn update_until<M: Message + Clone>(&mut self, pred: impl FnMut(&M) -> bool) -> Option<M>;

    /// [`update_until`](TestApp::update_until) with an explicit limit.
    fn update_until_within<M: Message + Clone>(&mut self, limit: Duration, pred: impl FnMut(&M) -> bool) -> Option<M>;

    /// Updates until `done(world)` is true, or the wait limit passes; returns whether it became true.
    fn update_while_not(&mut self, limit: Duration, done: impl FnMut(&mut World) -> bool) -> bool;

    /// Updates for `duration` of wall-clock time, returning every `M` written meanwhile.
    fn collect_for<M: Message + Clone>(&mut self, duration: Duration) -> Vec<M>;
}

impl TestApp for App {
    fn update_until<M: Message + Clone>(&mut self, pred: impl FnMut(&M) -> bool) -> Option<M> {
        self.update_until_within(DEFAULT_WAIT, pred)
    }

    fn update_until_within<M: Message + Clone>(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&M) -> bool,
    ) -> Option<M> {
        let mut cursor: MessageCursor<M> = self.world().resource::<Messages<M>>().get_cursor_current();
        let start = Instant::now();
        while start.elapsed() < limit {
            self.update();
            let messages = self.world().resource::<Messages<M>>();
            if let Some(m) = cursor.read(messages).find(|m| pred(m)) {
                return Some(m.clone());
            }
            // The simulator answers on other threads; give them the core.
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    fn update_while_not(&mut self, limit: Duration, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.update();
            if done(self.world_mut()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    fn collect_for<M: Message + Clone>(&mut self, duration: Duration) -> Vec<M> {
        let mut cursor: MessageCursor<M> = self.world().resource::<Messages<M>>().get_cursor_current();
        let mut out = Vec::new();
        let start = Instant::now();
        while start.elapsed() < duration {
            self.update();
            let messages = self.world().resource::<Messages<M>>();
            out.extend(cursor.read(messages).cloned());
            std::thread::sleep(Duration::from_millis(1));
        }
        out
    }
}
