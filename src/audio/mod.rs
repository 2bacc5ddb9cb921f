//! NPC voices in 3D (feature `audio`): each speaking NPC's voice streams from its session into
//! a kira sound on its own spatial track, at the NPC's position, heard from the listener.
//!
//! ```text
//! session task ── VoiceSink (24 kHz → output rate, rubato) ──► rtrb ring ──► VoiceSound (audio thread)
//!                                                                   jitter buffer, fades, meters
//!     NPC GlobalTransform ──► spatial sub-track (distance, pan, occlusion low-pass) ──► main track ──► device
//!     NpcListener GlobalTransform ──► kira listener                      echo reference tap ◄──┘
//! ```
//!
//! - [`NpcAudioPlugin`] (added by [`LiveNpcPlugin`](crate::plugin::LiveNpcPlugin) when the
//!   feature is on) opens the plugin's own kira `AudioManager` on the default device, or on an
//!   [`OfflineOutput`], or none ([`AudioBackendChoice`]). With no device it logs one warning and
//!   NPCs talk in text only.
//! - When a conversation opens, the NPC gets an [`NpcVoice`] (and [`NpcLipSync`]); its track
//!   follows the NPC's `GlobalTransform` (plus [`NpcVoiceSettings::mouth_offset`]), the listener
//!   follows the [`NpcListener`]'s, both after transform propagation.
//! - Playback starts after a pre-buffer ([`NpcAudioSettings::prebuffer`]); a buffer that runs dry
//!   fades to silence and is counted; a flush (barge-in) fades out within one audio block.
//!   [`NpcSpeechStarted`],
//!   [`NpcSpeechEnded`] and the `Speaking` state follow what
//!   is heard.
//! - [`VoiceControl`] ducks or flushes a voice from any thread;
//!   [`NpcAudioOutput::echo_reference`] gives the final mix for echo cancellation.
//!
//! See `docs/AUDIO.md` for threads, timing, and running next to `bevy_kira_audio`.

/// The player's microphone: [`crate::mic`], at its old path.
#[cfg(feature = "mic")]
#[cfg_attr(docsrs, doc(cfg(feature = "mic")))]
pub use crate::mic as capture;
mod components;
#[cfg(feature = "mic")]
mod mic_link;
mod offline;
mod output;
mod resample;
mod settings;
mod voice;

use std::time::Duration;

use bevy::app::AppExit;
use bevy::prelude::*;
use bevy::transform::TransformSystems;

pub use components::{MouthShape, NpcLipSync, NpcOcclusion, NpcVoice, NpcVoiceSettings, VoiceAttenuation};
pub use offline::{OfflineBackend, OfflineClock, OfflineError, OfflineOutput, OfflineSettings};
pub use output::{AudioBackendChoice, AudioStatus, NpcAudioOutput};
pub use resample::SpeechResampler;
pub use settings::NpcAudioSettings;
pub use voice::{MODEL_RATE, VoiceControl, VoiceSink, VoiceStats, VoiceStatus};

use crate::conversation::PlaybackDrivenSpeech;
use crate::messages::{NpcSpeechEnded, NpcSpeechStarted, NpcStateChanged, announce};
use crate::npc::{NpcListener, NpcState};
pub use crate::schedule::NpcAudioSystems;
use crate::schedule::{LiveNpcSystems, first_instance};
use voice::VoiceEvent;

/// NPC voice playback. Added by [`LiveNpcPlugin`](crate::plugin::LiveNpcPlugin) (choose the
/// backend with [`LiveNpcPlugin::audio`](crate::plugin::LiveNpcPlugin::audio)); add it yourself
/// only to use the voices without the rest.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_live_npc::audio::{AudioBackendChoice, NpcAudioOutput, OfflineOutput};
/// use bevy_live_npc::prelude::*;
///
/// let output = OfflineOutput::manual(48_000);
/// let mut app = App::new();
/// app.add_plugins((MinimalPlugins, LiveNpcPlugin::default().audio(AudioBackendChoice::Offline(output.clone()))));
/// assert!(app.world().resource::<NpcAudioOutput>().is_available());
/// assert_eq!(output.render(256).len(), 512);
/// ```
#[derive(Clone, Debug, Default)]
pub struct NpcAudioPlugin {
    /// Where voices go.
    pub backend: AudioBackendChoice,
    /// Jitter-buffer timing.
    pub settings: NpcAudioSettings,
}

/// Marks an app whose voices are set up (a second `NpcAudioPlugin` is skipped).
#[derive(Resource, Default)]
struct AudioPluginBuilt;

impl Plugin for NpcAudioPlugin {
    fn build(&self, app: &mut App) {
        if !first_instance::<AudioPluginBuilt>(app, "NpcAudioPlugin") {
            return;
        }
        let output = NpcAudioOutput::new(&self.backend, &self.settings);
        let factory = output.sink_factory();
        app.insert_resource(output)
            .insert_resource(factory)
            .insert_resource(self.settings.clone())
            .add_message::<NpcSpeechStarted>()
            .add_message::<NpcSpeechEnded>()
            .add_message::<NpcStateChanged>()
            .register_type::<NpcVoiceSettings>()
            .register_type::<NpcOcclusion>()
            .register_type::<NpcLipSync>()
            .register_type::<NpcAudioSettings>()
            .register_type::<PlaybackDrivenSpeech>()
            .configure_sets(PreUpdate, NpcAudioSystems::Playback.after(LiveNpcSystems::Receive))
            .configure_sets(PostUpdate, NpcAudioSystems::Spatial.after(TransformSystems::Propagate))
            .add_systems(
                PreUpdate,
                (sync_settings, poll_voices).chain().in_set(NpcAudioSystems::Playback).run_if(audio_available),
            )
            .add_systems(
                PostUpdate,
                (attach_voices, sync_listener, sync_voices)
                    .chain()
                    .in_set(NpcAudioSystems::Spatial)
                    .run_if(audio_available),
            )
            .add_systems(Last, finish_on_exit);
        // The microphone links to the voices (ducking, echo reference) when both are built.
        #[cfg(feature = "mic")]
        app.add_systems(
            PostUpdate,
            mic_link::adopt_audio_output.in_set(crate::mic::NpcMicSystems::Control).before(crate::mic::sync_target),
        );
    }

    // Added by the plugin group and possibly by the app too: the first one runs.
    fn is_unique(&self) -> bool {
        false
    }
}

/// Run condition: NPC voices play (an output device or the offline backend works).
pub fn audio_available(output: Option<Res<NpcAudioOutput>>) -> bool {
    output.is_some_and(|o| o.is_available())
}

/// How long a position change glides: one frame, so motion is continuous between frames.
fn glide(time: &Time<Real>) -> Duration {
    time.delta().clamp(Duration::from_millis(5), Duration::from_millis(100))
}

fn set_npc_state(commands: &mut Commands, entity: Entity, state: &mut NpcState, next: NpcState) {
    if *state != next {
        *state = next.clone();
        announce(commands, NpcStateChanged { entity, state: next });
    }
}

/// Copies changed settings to the sink factory and the live voices.
fn sync_settings(settings: Res<NpcAudioSettings>, output: Res<NpcAudioOutput>, voices: Query<&NpcVoice>) {
    if !settings.is_changed() {
        return;
    }
    output.config.set(&settings);
    for voice in &voices {
        voice.control().set_prebuffer(settings.prebuffer);
    }
}

/// Playback events → `NpcSpeechStarted` / `NpcSpeechEnded` and the `Speaking` state; meters →
/// [`NpcLipSync`]; spent voices (session gone, everything played) are removed.
fn poll_voices(mut commands: Commands, mut voices: Query<(Entity, &NpcVoice, &mut NpcLipSync, Option<&mut NpcState>)>) {
    for (entity, voice, mut lip, mut state) in &mut voices {
        while let Some(event) = voice.pop_event() {
            match event {
                VoiceEvent::Started => {
                    announce(&mut commands, NpcSpeechStarted { entity });
                    if let Some(state) = state.as_deref_mut()
                        && state.is_active()
                    {
                        set_npc_state(&mut commands, entity, state, NpcState::Speaking);
                    }
                }
                VoiceEvent::Ended { interrupted } => {
                    announce(&mut commands, NpcSpeechEnded { entity, interrupted });
                    if let Some(state) = state.as_deref_mut()
                        && *state == NpcState::Speaking
                    {
                        set_npc_state(&mut commands, entity, state, NpcState::Listening);
                    }
                }
            }
        }
        lip.set_if_neq(voice.lip_sync());
        if voice.is_spent() {
            commands.entity(entity).remove::<(NpcVoice, PlaybackDrivenSpeech)>();
            lip.set_if_neq(NpcLipSync::default());
        }
    }
}

/// Gives the voices the sink factory created their tracks, at their NPC's position.
fn attach_voices(
    mut commands: Commands,
    mut output: ResMut<NpcAudioOutput>,
    npcs: Query<(&GlobalTransform, Option<&NpcVoiceSettings>, Option<&NpcOcclusion>)>,
) {
    let pending: Vec<_> = output.pending_rx.try_iter().collect();
    for p in pending {
        // A despawned NPC: dropping the sound ends the ring; the sink then discards.
        let Ok((transform, settings, occlusion)) = npcs.get(p.entity) else {
            continue;
        };
        let settings = settings.cloned().unwrap_or_default();
        let position = transform.transform_point(settings.mouth_offset);
        let occlusion = occlusion.map_or(0.0, |o| o.0);
        if let Some(voice) = output.attach(p.sound, p.shared, position, &settings, occlusion) {
            commands.entity(p.entity).try_insert((voice, NpcLipSync::default(), PlaybackDrivenSpeech));
        }
    }
}

/// The kira listener follows the `NpcListener` (else `bevy_kira_audio`'s `SpatialAudioReceiver`).
fn sync_listener(
    mut output: ResMut<NpcAudioOutput>,
    time: Res<Time<Real>>,
    listeners: Query<&GlobalTransform, With<NpcListener>>,
    #[cfg(feature = "bevy_kira_audio")] receivers: Query<
        &GlobalTransform,
        (With<bevy_kira_audio::SpatialAudioReceiver>, Without<NpcListener>),
    >,
    mut last: Local<Option<(Vec3, Quat)>>,
) {
    let transform = listeners.iter().next();
    #[cfg(feature = "bevy_kira_audio")]
    let transform = transform.or_else(|| receivers.iter().next());
    let Some(transform) = transform else {
        return;
    };
    let (_, rotation, position) = transform.to_scale_rotation_translation();
    if *last != Some((position, rotation)) {
        let glide = if last.is_some() { glide(&time) } else { Duration::ZERO };
        output.set_listener(position, rotation, glide);
        *last = Some((position, rotation));
    }
}

/// A voice and what it follows.
type VoiceItem = (
    &'static mut NpcVoice,
    Ref<'static, GlobalTransform>,
    Option<Ref<'static, NpcVoiceSettings>>,
    Option<&'static NpcOcclusion>,
);

/// Voices follow their NPC and its settings and occlusion.
fn sync_voices(time: Res<Time<Real>>, mut voices: Query<VoiceItem>) {
    let glide = glide(&time);
    for (mut voice, transform, settings, occlusion) in &mut voices {
        let voice = voice.bypass_change_detection();
        let moved = transform.is_changed() || settings.as_ref().is_some_and(Ref::is_changed);
        let default = NpcVoiceSettings::default();
        let settings = settings.as_deref().unwrap_or(&default);
        if moved {
            voice.set_position(transform.transform_point(settings.mouth_offset), glide);
        }
        voice.apply(settings, occlusion.map_or(0.0, |o| o.0));
    }
}

/// Completes the offline recording when the app exits.
fn finish_on_exit(mut exits: MessageReader<AppExit>, output: Option<Res<NpcAudioOutput>>) {
    if exits.read().next().is_none() {
        return;
    }
    let Some(offline) = output.as_ref().and_then(|o| o.offline()) else {
        return;
    };
    match offline.finish() {
        Ok(Some(path)) => {
            info!("live npc audio: wrote {:.1} s to {}", offline.seconds_rendered(), path.display());
        }
        Ok(None) => {}
        Err(e) => warn!("live npc audio: {e}"),
    }
}
