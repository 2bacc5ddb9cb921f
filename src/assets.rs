//! NPC definitions as asset files (`*.npc.json`): persona, voice, tools, hot-reloaded.
//!
//! ```json
//! {
//!   "name": "Mira",
//!   "persona": "You are Mira, the village blacksmith.",
//!   "voice": "Kore",
//!   "tools": ["open_gate"]
//! }
//! ```
//!
//! Spawn an entity with [`NpcDefinitionHandle`]; the plugin inserts (and on every change of the
//! file, updates) its [`LiveNpc`]. An open conversation picks up persona and tool changes
//! through `contextUpdate`. Needs `AssetPlugin` (part of `DefaultPlugins`).

use bevy::asset::io::Reader;
use bevy::asset::{AssetLoader, LoadContext};
use bevy::prelude::*;
use serde::Deserialize;

use crate::npc::{LiveNpc, VadSettings};
use crate::protocol::Modality;

/// An NPC definition loaded from JSON.
#[derive(Asset, TypePath, Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpcDefinition {
    /// Display name.
    pub name: String,
    /// Persona (system instruction).
    pub persona: String,
    /// Prebuilt voice.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// Language hint.
    #[serde(default)]
    pub language: Option<String>,
    /// Tools the NPC may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Text replies instead of audio.
    #[serde(default)]
    pub text_only: bool,
    /// Proactive audio.
    #[serde(default)]
    pub proactive_audio: bool,
    /// Affective dialog.
    #[serde(default)]
    pub affective_dialog: bool,
    /// Manual VAD (push-to-talk) instead of the server's automatic VAD.
    #[serde(default)]
    pub push_to_talk: bool,
}

fn default_voice() -> String {
    "Kore".into()
}

impl NpcDefinition {
    /// Writes this definition into an NPC component, keeping fields the file does not set.
    pub fn apply(&self, npc: &mut LiveNpc) {
        npc.name = self.name.clone();
        npc.persona = self.persona.clone();
        npc.voice = self.voice.clone();
        npc.language = self.language.clone();
        npc.tools = self.tools.clone();
        npc.modality = if self.text_only { Modality::Text } else { Modality::Audio };
        npc.proactive_audio = self.proactive_audio;
        npc.affective_dialog = self.affective_dialog;
        if self.push_to_talk == npc.vad.automatic {
            npc.vad = if self.push_to_talk { VadSettings::manual() } else { VadSettings::default() };
        }
    }

    /// A new NPC component from this definition.
    pub fn to_npc(&self) -> LiveNpc {
        let mut npc = LiveNpc::new(&self.name);
        self.apply(&mut npc);
        npc
    }
}

/// Points an entity at an NPC definition file; the plugin keeps its [`LiveNpc`] in sync.
#[derive(Component, Clone, Debug, Default)]
pub struct NpcDefinitionHandle(pub Handle<NpcDefinition>);

/// Why an NPC definition did not load.
#[derive(Debug, thiserror::Error)]
pub enum NpcDefinitionError {
    /// The file could not be read.
    #[error("could not read the NPC definition: {0}")]
    Io(#[from] std::io::Error),
    /// The JSON is not a valid definition.
    #[error("invalid NPC definition: {0}")]
    Json(#[from] serde_json::Error),
}

/// Loads `*.npc.json` files.
#[derive(Default, TypePath)]
pub struct NpcDefinitionLoader;

impl AssetLoader for NpcDefinitionLoader {
    type Asset = NpcDefinition;
    type Settings = ();
    type Error = NpcDefinitionError;

    async fn load(
        &self,
        reader: &mut dyn Reader,
        _settings: &(),
        _load_context: &mut LoadContext<'_>,
    ) -> Result<NpcDefinition, NpcDefinitionError> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn extensions(&self) -> &[&str] {
        &["npc.json"]
    }
}

/// Applies loaded and changed definitions to their NPCs.
pub fn apply_definitions(
    mut commands: Commands,
    mut events: MessageReader<AssetEvent<NpcDefinition>>,
    definitions: Res<Assets<NpcDefinition>>,
    mut npcs: Query<(Entity, &NpcDefinitionHandle, Option<&mut LiveNpc>)>,
) {
    let changed: Vec<AssetId<NpcDefinition>> = events
        .read()
        .filter_map(|e| match e {
            AssetEvent::Added { id } | AssetEvent::Modified { id } | AssetEvent::LoadedWithDependencies { id } => {
                Some(*id)
            }
            _ => None,
        })
        .collect();
    if changed.is_empty() {
        return;
    }
    for (entity, handle, npc) in &mut npcs {
        if !changed.contains(&handle.0.id()) {
            continue;
        }
        let Some(def) = definitions.get(&handle.0) else {
            continue;
        };
        match npc {
            Some(mut npc) => {
                let mut next = npc.clone();
                def.apply(&mut next);
                if next.name != npc.name
                    || next.persona != npc.persona
                    || next.tools != npc.tools
                    || next.voice != npc.voice
                {
                    info!("NPC definition of {} changed; updating", def.name);
                }
                *npc = next;
            }
            None => {
                commands.entity(entity).insert(def.to_npc());
            }
        }
    }
}

/// NPC definitions from `*.npc.json` asset files, hot-reloaded (needs an `AssetPlugin`; without
/// one, nothing happens). Part of [`LiveNpcPlugins`](crate::plugin::LiveNpcPlugins).
#[derive(Clone, Copy, Debug, Default)]
pub struct NpcAssetsPlugin;

impl Plugin for NpcAssetsPlugin {
    fn build(&self, _app: &mut App) {}

    // In `finish`: the `AssetPlugin` may be added after this one.
    fn finish(&self, app: &mut App) {
        register(app);
    }
}

/// Registers the asset type and loader when the app has an `AssetPlugin`.
fn register(app: &mut App) {
    if !app.world().contains_resource::<AssetServer>() {
        debug!("no AssetPlugin: NPC definition files are not available");
        return;
    }
    app.init_asset::<NpcDefinition>()
        .init_asset_loader::<NpcDefinitionLoader>()
        .add_systems(PreUpdate, apply_definitions);
}
