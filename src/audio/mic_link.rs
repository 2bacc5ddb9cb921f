//! Voices and the microphone together (features `audio` and `mic`): each NPC voice can be ducked
//! while the player talks over it, and the mix the voices play is the microphone's echo
//! reference. The microphone knows nothing of the voices; this side wires them in.

use std::sync::Arc;

use bevy::prelude::*;

use super::components::NpcVoice;
use super::output::NpcAudioOutput;
use super::voice::VoiceControl;
use crate::mic::{MicEchoReference, NpcVoiceDuck, PlayerMic, ReferenceRing, VoiceDuck};

/// The audio layer's voices can be ducked.
impl VoiceDuck for VoiceControl {
    fn duck(&self, gain: f32) {
        VoiceControl::duck(self, gain);
    }
}

/// Wires the audio layer in: each NPC voice becomes duckable, and the mix it plays becomes the
/// echo reference (taken once, when a microphone wants echo cancellation). Does nothing without
/// the microphone plugin.
pub(super) fn adopt_audio_output(
    mut commands: Commands,
    output: Option<Res<NpcAudioOutput>>,
    reference: Option<Res<MicEchoReference>>,
    voices: Query<(Entity, &NpcVoice), Changed<NpcVoice>>,
    mics: Query<&PlayerMic>,
    mut taken: Local<bool>,
) {
    let Some(reference) = reference else {
        return;
    };
    for (npc, voice) in &voices {
        commands.entity(npc).insert(NpcVoiceDuck(Arc::new(voice.control())));
    }
    let Some(output) = output.filter(|o| o.is_available()) else {
        return;
    };
    if *taken || !mics.iter().any(|m| m.echo_cancellation) {
        return;
    }
    *taken = true;
    let empty = reference.0.lock().is_ok_and(|r| r.is_none());
    if empty && let Some(consumer) = output.echo_reference() {
        let ring = ReferenceRing::new(consumer, output.sample_rate(), 1);
        if let Ok(mut r) = reference.0.lock() {
            *r = Some(Box::new(ring));
        }
    }
}
