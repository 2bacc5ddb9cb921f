//! Every public path the README, the docs and the examples use, through `bevy_live_npc::`: the
//! items that moved to the `live_npc_client` and `live_npc_sim` crates keep their old paths, as
//! the same types (not copies).

use std::any::TypeId;

#[allow(unused_imports)]
use bevy_live_npc::assets::NpcDefinitionHandle;
#[cfg(feature = "mic")]
#[allow(unused_imports)]
use bevy_live_npc::audio::capture::{MicLevel, MicMode, MicState, MicStatus, NpcMicPlugin, PlayerMic};
#[cfg(feature = "audio")]
#[allow(unused_imports)]
use bevy_live_npc::audio::{
    AudioBackendChoice, NpcAudioOutput, NpcLipSync, NpcVoice, OfflineClock, OfflineOutput, OfflineSettings, VoiceStatus,
};
#[allow(unused_imports)]
use bevy_live_npc::plugin::{LiveBackend, LiveNpcRuntime, LiveNpcSystems};
#[allow(unused_imports)]
use bevy_live_npc::prelude::*;
#[allow(unused_imports)]
use bevy_live_npc::protocol::{
    AuthToken, ClientMessage, CreateAuthTokenRequest, LiveError, ServerMessage, ServerPayload, Setup, model_resource,
    ws_path,
};
#[allow(unused_imports)]
use bevy_live_npc::session::{
    Auth, ENV_API_KEY, LiveRuntime, NullSink, Secret, SessionConfig, SessionEvent, SessionHandle, resolve_backend,
};
#[cfg(feature = "sim")]
#[allow(unused_imports)]
use bevy_live_npc::sim::{Fault, FaultAction, LiveSim, LiveSimBuilder, Scenario, VoiceEngine, voice::Voice};
#[cfg(feature = "sim")]
#[allow(unused_imports)]
use bevy_live_npc::testing::{TestApp, sim_plugin};
#[allow(unused_imports)]
use bevy_live_npc::token::{
    GEMINI_REST_URL, TokenClient, TokenError, TokenServer, TokenServerConfig, format_rfc3339, mint_token,
};

#[test]
fn moved_items_are_the_same_types_at_their_old_paths() {
    assert_eq!(TypeId::of::<Secret>(), TypeId::of::<live_npc_client::secret::Secret>());
    assert_eq!(TypeId::of::<bevy_live_npc::prelude::Secret>(), TypeId::of::<Secret>());
    assert_eq!(
        TypeId::of::<ServerMessage<'static>>(),
        TypeId::of::<live_npc_client::protocol::ServerMessage<'static>>()
    );
    assert_eq!(TypeId::of::<SessionHandle>(), TypeId::of::<live_npc_client::session::SessionHandle>());
    assert_eq!(TypeId::of::<TokenError>(), TypeId::of::<live_npc_client::token::TokenError>());
    assert_eq!(TypeId::of::<LiveError>(), TypeId::of::<bevy_live_npc::prelude::LiveError>());
    #[cfg(feature = "sim")]
    assert_eq!(TypeId::of::<LiveSim>(), TypeId::of::<live_npc_sim::LiveSim>());
}

#[test]
fn old_paths_still_work_as_values() {
    assert_eq!(ENV_API_KEY, "GEMINI_API_KEY");
    assert_eq!(model_resource("gemini-3.8-live"), "models/gemini-3.8-live");
    assert!(ws_path("v1beta", false).ends_with("GenerativeService.BidiGenerateContent"));
    assert_eq!(format!("{:?}", Secret::new("AIzaSECRET")), "Secret(REDACTED)");
    assert!(GEMINI_REST_URL.starts_with("https://"));
    assert_eq!(format_rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    // The plugin's backend maps onto the client crate's resolver.
    let spec = LiveBackend::Gemini { api_key: Secret::new("k") }.spec();
    assert_eq!(spec, bevy_live_npc::session::BackendSpec::Gemini { api_key: Secret::new("k") });
}
