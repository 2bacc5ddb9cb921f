//! The Bevy plugin, headless: `MinimalPlugins`, the in-process simulator, bounded update loops.

use std::time::Duration;

use bevy::prelude::*;
use bevy::transform::TransformPlugin;
use bevy_live_npc::audio::AudioBackendChoice;
use bevy_live_npc::conversation::NpcConversation;
use bevy_live_npc::plugin::LiveNpcRuntime;
use bevy_live_npc::prelude::*;
use bevy_live_npc::sim::{LiveSim, Scenario};
use bevy_live_npc::testing::{TestApp, sim_plugin};
use schemars::JsonSchema;
use serde::Deserialize;

const WAIT: Duration = Duration::from_secs(20);

fn app(plugin: LiveNpcPlugin) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, plugin));
    app
}

fn finish(app: &mut App) {
    app.finish();
    app.cleanup();
}

fn state(app: &App, npc: Entity) -> NpcState {
    app.world().get::<NpcState>(npc).cloned().unwrap_or_default()
}

fn wait_state(app: &mut App, npc: Entity, want: impl Fn(&NpcState) -> bool) -> bool {
    app.update_while_not(WAIT, |w| w.get::<NpcState>(npc).is_some_and(&want))
}

fn say(app: &mut App, npc: Entity, text: &str) {
    app.world_mut().write_message(SayToNpc { npc, text: text.into() });
}

fn reply(app: &mut App, npc: Entity) -> NpcTranscript {
    app.update_until::<NpcTranscript>(|t| t.entity == npc && t.speaker == Speaker::Npc && t.is_final)
        .expect("the NPC answers")
}

#[derive(Component, Default)]
struct Gate {
    open: bool,
    name: String,
}

/// Which gate to open.
#[derive(Deserialize, JsonSchema)]
struct OpenGate {
    /// The gate's name.
    gate: String,
}

fn open_gate(In(input): In<ToolInput<OpenGate>>, mut gates: Query<&mut Gate>) -> ToolResult {
    for mut g in &mut gates {
        g.open = true;
        g.name = input.args.gate.clone();
    }
    Ok(format!("the {} gate is open", input.args.gate).into())
}

#[derive(Resource, Default)]
struct GiveCount(u32);

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GiveItem {
    item: String,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    count: u32,
}

fn one() -> u32 {
    1
}

fn give_item(In(input): In<ToolInput<GiveItem>>, mut given: ResMut<GiveCount>) -> ToolResult {
    given.0 += input.args.count;
    Ok(serde_json::json!({"gave": input.args.item, "count": input.args.count}))
}

fn with_tools(app: &mut App) {
    app.init_resource::<GiveCount>()
        .add_npc_tool(NpcTool::new("open_gate", "Opens a village gate.").run(open_gate))
        .add_npc_tool(NpcTool::new("give_item", "Gives the player an item.").run(give_item));
}

#[test]
fn plugin_state_is_send_and_sync() {
    // Resources and components must stay Send + Sync for Bevy's multithreaded executor.
    fn check<T: Send + Sync + 'static>() {}
    check::<LiveNpcRuntime>();
    check::<NpcConversation>();
    check::<MicRoute>();
    check::<bevy_live_npc::plugin::AudioSinkFactory>();
}

#[test]
fn proximity_opens_and_idle_timeout_closes() {
    let mut app = app(sim_plugin(None).engage_radius(3.0).idle_timeout(Duration::from_millis(400)));
    let npc = app.world_mut().spawn((LiveNpc::new("Mira"), Transform::default())).id();
    let listener = app.world_mut().spawn((NpcListener, Transform::from_xyz(0.0, 0.0, 10.0))).id();
    finish(&mut app);
    for _ in 0..10 {
        app.update();
    }
    assert_eq!(state(&app, npc), NpcState::Idle, "out of range: no session");
    assert!(app.world().get::<NpcConversation>(npc).is_none());

    app.world_mut().get_mut::<Transform>(listener).unwrap().translation = Vec3::new(0.0, 0.0, 2.0);
    assert!(wait_state(&mut app, npc, |s| *s == NpcState::Listening), "{:?}", state(&app, npc));
    assert_eq!(app.world().resource::<NpcFocus>().current(), Some(npc));

    app.world_mut().get_mut::<Transform>(listener).unwrap().translation = Vec3::new(0.0, 0.0, 50.0);
    assert!(wait_state(&mut app, npc, |s| *s == NpcState::Idle));
    assert!(app.world().get::<NpcConversation>(npc).is_none());
    assert!(app.update_while_not(WAIT, |w| w.resource::<LiveNpcRuntime>().live_sessions() == 0));
}

#[test]
fn focus_follows_facing_and_closes_the_half_sent_turn() {
    let mut app = app(sim_plugin(None).engage_radius(5.0));
    let manual = LiveNpc::new("Ada").vad(VadSettings::manual());
    let a = app.world_mut().spawn((manual, Transform::from_xyz(-2.0, 0.0, 0.0))).id();
    let b = app.world_mut().spawn((LiveNpc::new("Bo"), Transform::from_xyz(2.0, 0.0, 0.0))).id();
    let facing_a = Transform::from_xyz(0.0, 0.0, 0.0).looking_at(Vec3::new(-1.0, 0.0, 0.0), Vec3::Y);
    let listener = app.world_mut().spawn((NpcListener, facing_a)).id();
    finish(&mut app);
    assert!(wait_state(&mut app, a, |s| *s == NpcState::Listening));
    assert!(wait_state(&mut app, b, |s| *s == NpcState::Listening));
    assert_eq!(app.world().resource::<NpcFocus>().current(), Some(a));
    let route = app.world().resource::<MicRoute>().clone();
    assert!(app.update_while_not(WAIT, |_| route.get().is_some_and(|(e, _)| e == a)));

    // The player starts talking to A (push-to-talk) ...
    app.world_mut().write_message(NpcActivity { npc: a, kind: ActivityKind::Start });
    app.update();
    let (_, mic) = route.get().unwrap();
    for chunk in crate::support::wav("player-hello-16k.wav").chunks(320) {
        mic.push(chunk);
        std::thread::sleep(Duration::from_micros(200));
    }
    // ... and turns to B mid-sentence: A's turn is closed, so A answers it.
    *app.world_mut().get_mut::<Transform>(listener).unwrap() =
        Transform::from_xyz(0.0, 0.0, 0.0).looking_at(Vec3::new(1.0, 0.0, 0.0), Vec3::Y);
    assert!(app.update_while_not(WAIT, |w| w.resource::<NpcFocus>().current() == Some(b)));
    assert!(route.get().is_some_and(|(e, _)| e == b));
    assert!(!reply(&mut app, a).text.is_empty());
}

#[test]
fn concurrency_cap_is_enforced_with_a_message() {
    let mut app = app(sim_plugin(None).max_sessions(1).auto_engage(false));
    let a = app.world_mut().spawn(LiveNpc::new("A")).id();
    let b = app.world_mut().spawn(LiveNpc::new("B")).id();
    finish(&mut app);
    app.world_mut().commands().entity(a).start_conversation();
    app.update();
    app.world_mut().commands().entity(b).start_conversation();
    let capped = app.update_until::<NpcError>(|e| e.entity == b).expect("the cap is reported");
    assert!(capped.error.reason.contains("concurrency cap"), "{}", capped.error);
    assert!(!capped.fatal);
    assert!(wait_state(&mut app, a, |s| *s == NpcState::Listening));
    assert_eq!(state(&app, b), NpcState::Idle);
    // When A's conversation ends, B's opens.
    app.world_mut().commands().entity(a).end_conversation();
    assert!(wait_state(&mut app, b, |s| *s == NpcState::Listening));
}

#[test]
fn despawn_mid_sentence_closes_the_session() {
    let mut app = app(LiveNpcPlugin::default()
        .simulator(SimulatorSettings { pace: 0.3, seed: 1, scenario: None })
        .auto_engage(false)
        .audio(AudioBackendChoice::Disabled));
    let npc = app.world_mut().spawn(LiveNpc::new("Mira")).id();
    finish(&mut app);
    say(&mut app, npc, "Tell me everything about your forge, please.");
    app.update_until::<NpcSpeechStarted>(|e| e.entity == npc).expect("speech starts");
    app.world_mut().entity_mut(npc).despawn();
    assert!(app.update_while_not(WAIT, |w| w.resource::<LiveNpcRuntime>().live_sessions() == 0));
    for _ in 0..5 {
        app.update();
    }
}

#[test]
fn transcripts_arrive_in_order() {
    let mut app = app(sim_plugin(None).auto_engage(false));
    let npc = app.world_mut().spawn(LiveNpc::new("Mira").persona("You are Mira, the village blacksmith.")).id();
    finish(&mut app);
    let mut lines = Vec::new();
    for text in ["Hello there!", "What do you sell?"] {
        say(&mut app, npc, text);
        lines.extend(app.collect_until_final(npc).into_iter().filter(|t| t.is_final).map(|t| (t.speaker, t.text)));
    }
    let speakers: Vec<Speaker> = lines.iter().map(|(s, _)| *s).collect();
    assert_eq!(speakers, [Speaker::Player, Speaker::Npc, Speaker::Player, Speaker::Npc], "{lines:?}");
    assert_eq!(lines[0].1, "Hello there!");
    assert_eq!(lines[2].1, "What do you sell?");
    assert!(lines[1].1.contains("Mira"), "{lines:?}");
    let stats = app.world().get::<NpcStats>(npc).unwrap();
    assert_eq!(stats.turns, 2);
    assert!(stats.total_tokens > 0);
}

trait Collect {
    fn collect_until_final(&mut self, npc: Entity) -> Vec<NpcTranscript>;
}

impl Collect for App {
    fn collect_until_final(&mut self, npc: Entity) -> Vec<NpcTranscript> {
        let mut cursor = self.world().resource::<Messages<NpcTranscript>>().get_cursor_current();
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        while start.elapsed() < WAIT {
            self.update();
            let new: Vec<NpcTranscript> =
                cursor.read(self.world().resource::<Messages<NpcTranscript>>()).cloned().collect();
            let done = new.iter().any(|t| t.entity == npc && t.speaker == Speaker::Npc && t.is_final);
            out.extend(new);
            if done {
                return out;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no final NPC line: {out:?}");
    }
}

#[test]
fn a_tool_round_trip_changes_the_world() {
    let mut app = app(sim_plugin(None).auto_engage(false));
    with_tools(&mut app);
    let gate = app.world_mut().spawn(Gate::default()).id();
    let npc = app.world_mut().spawn(LiveNpc::new("Bram").tools(["open_gate"])).id();
    let observed = app
        .world_mut()
        .spawn(Observer::new(|ev: On<NpcToolFinished>, mut c: Commands| {
            c.insert_resource(SeenByObserver(ev.name.clone()));
        }))
        .id();
    finish(&mut app);
    say(&mut app, npc, "Could you please open the north gate?");
    let done = app.update_until::<NpcToolFinished>(|e| e.entity == npc).expect("the tool runs");
    assert!(!done.is_error, "{done:?}");
    assert_eq!(done.name, "open_gate");
    assert_eq!(done.args, r#"{"gate":"north"}"#);
    assert_eq!(done.response, r#"{"output":"the north gate is open"}"#);
    let g = app.world().get::<Gate>(gate).unwrap();
    assert!(g.open);
    assert_eq!(g.name, "north");
    assert!(!reply(&mut app, npc).text.is_empty());
    assert_eq!(app.world().resource::<SeenByObserver>().0, "open_gate", "observers see entity events");
    let _ = observed;
}

#[derive(Resource)]
struct SeenByObserver(String);

#[test]
fn tool_errors_answer_the_model_and_never_touch_the_game() {
    let scenario = Scenario::from_json_str(
        r#"{"rules": [
            {"when": "dragon", "tool_calls": [{"name": "summon_dragon", "args": {}}]},
            {"when": "many swords", "tool_calls": [{"name": "give_item", "args": {"item": "sword", "count": "many"}}]},
            {"when": "hundred swords", "tool_calls": [{"name": "give_item", "args": {"item": "sword", "count": 100}}]},
            {"when": "shield", "tool_calls": [{"name": "give_item", "args": {"item": "shield", "colour": "red"}}]},
            {"when": "gate", "tool_calls": [{"name": "open_gate", "args": {"gate": "north"}}]}
        ]}"#,
    )
    .unwrap();
    let mut app = app(sim_plugin(Some(scenario)).auto_engage(false));
    with_tools(&mut app);
    app.world_mut().spawn(Gate::default());
    // Mira may give items but not open gates.
    let npc = app.world_mut().spawn(LiveNpc::new("Mira").tools(["give_item"])).id();
    finish(&mut app);
    let cases = [
        ("Summon a dragon!", "unknown tool `summon_dragon`"),
        ("Give me many swords.", "must be of type integer"),
        ("Give me a hundred swords.", "must be at most 10"),
        ("Give me a shield.", "unknown argument `colour`"),
        ("Open the gate.", "not available to this character"),
    ];
    for (text, expected) in cases {
        say(&mut app, npc, text);
        let done = app.update_until::<NpcToolFinished>(|e| e.entity == npc).expect("answered");
        assert!(done.is_error, "{text}: {done:?}");
        assert!(done.response.contains(expected), "{text}: {}", done.response);
        assert!(done.response.starts_with(r#"{"error":"#), "{}", done.response);
        reply(&mut app, npc);
    }
    assert_eq!(app.world().resource::<GiveCount>().0, 0, "no tool system ran");
    let mut gates = app.world_mut().query::<&Gate>();
    assert!(gates.iter(app.world()).all(|g| !g.open));
}

#[derive(Resource, Default)]
struct Bells(u32);

fn ring_bell(In(_): In<ToolInput>, mut bells: ResMut<Bells>) -> ToolResult {
    bells.0 += 1;
    Ok("the bell rings".into())
}

fn fetch_water(In(_): In<ToolInput>) -> ToolReply {
    ToolReply::Later
}

#[test]
fn non_blocking_tools_and_cancellation() {
    let mut app = app(LiveNpcPlugin::default()
        .simulator(SimulatorSettings { pace: 0.2, seed: 2, scenario: None })
        .auto_engage(false)
        .audio(AudioBackendChoice::Disabled));
    app.init_resource::<Bells>()
        .add_npc_tool(
            NpcTool::new("ring_bell", "Rings the bell.").non_blocking(ToolScheduling::WhenIdle).run(ring_bell),
        )
        .add_npc_tool(NpcTool::new("fetch_water", "Fetches water from the well.").run(fetch_water));
    let npc = app.world_mut().spawn(LiveNpc::new("Elsa").tools(["ring_bell", "fetch_water"])).id();
    finish(&mut app);

    say(&mut app, npc, "Please ring the bell.");
    let done = app.update_until::<NpcToolFinished>(|e| e.entity == npc).expect("the bell tool runs");
    assert_eq!(done.name, "ring_bell");
    assert_eq!(app.world().resource::<Bells>().0, 1);
    reply(&mut app, npc);

    // A deferred BLOCKING call holds the turn; the player's interruption cancels it.
    say(&mut app, npc, "Could you fetch water for me?");
    let called = app.update_until::<NpcToolCalled>(|e| e.entity == npc).expect("fetch_water is called");
    assert_eq!(called.name, "fetch_water");
    say(&mut app, npc, "Never mind, stop.");
    let cancelled = app.update_until::<NpcToolCancelled>(|e| e.entity == npc).expect("the call is cancelled");
    assert_eq!((cancelled.call_id.as_str(), cancelled.name.as_str()), (called.call_id.as_str(), "fetch_water"));
    assert!(cancelled.already_ran);
    // A late answer for the cancelled call is dropped, not sent.
    app.world_mut().write_message(AnswerToolCall { npc, call_id: called.call_id, result: Ok("water".into()) });
    assert!(app.update_until_within::<NpcToolFinished>(Duration::from_millis(300), |e| e.entity == npc).is_none());
}

#[test]
fn persona_update_mid_session() {
    let mut app = app(sim_plugin(None).auto_engage(false));
    let npc = app.world_mut().spawn(LiveNpc::new("Mira").persona("You are Mira, the village blacksmith.")).id();
    finish(&mut app);
    say(&mut app, npc, "Who are you?");
    assert!(reply(&mut app, npc).text.contains("Mira"));
    app.world_mut().get_mut::<LiveNpc>(npc).unwrap().persona = "You are Bruno, the village baker.".into();
    app.update();
    say(&mut app, npc, "Who are you?");
    let line = reply(&mut app, npc).text;
    assert!(line.contains("Bruno"), "{line}");
}

#[test]
fn reconnects_after_a_drop_with_the_conversation_intact() {
    let scenario =
        Scenario::from_json_str(r#"{"faults": [{"connection": 1, "turn": 2, "after_chunks": 1, "action": "drop"}]}"#)
            .unwrap();
    let mut app = app(sim_plugin(Some(scenario)).auto_engage(false));
    let npc = app.world_mut().spawn(LiveNpc::new("Mira")).id();
    finish(&mut app);
    say(&mut app, npc, "Hello, my name is Ada.");
    reply(&mut app, npc);
    say(&mut app, npc, "Tell me about the village.");
    // States can pass within one frame: watch the messages, which are all kept.
    let reconnecting = app.update_until::<NpcStateChanged>(|s| s.entity == npc && s.state == NpcState::Reconnecting);
    assert!(reconnecting.is_some());
    assert!(wait_state(&mut app, npc, |s| *s == NpcState::Listening));
    say(&mut app, npc, "What is my name?");
    let line = reply(&mut app, npc).text;
    assert!(line.contains("Ada"), "{line}");
    assert!(app.update_while_not(WAIT, |w| w.get::<NpcStats>(npc).is_some_and(|s| s.reconnects == 1)));
}

#[test]
fn a_bad_key_fails_with_a_readable_error() {
    let sim = LiveSim::builder().pace(0.0).api_key(Some("right".into())).start_in_background().unwrap();
    let backend = LiveBackend::Endpoint {
        url: sim.base_url(),
        auth: Auth::ApiKey(Secret::new("wrong")),
        extra_root_pem: Vec::new(),
    };
    let mut app = app(LiveNpcPlugin::default().backend(backend).auto_engage(false).audio(AudioBackendChoice::Disabled));
    let npc = app.world_mut().spawn(LiveNpc::new("Mira")).id();
    finish(&mut app);
    say(&mut app, npc, "Hello?");
    let err = app.update_until::<NpcError>(|e| e.entity == npc && e.fatal).expect("an error");
    assert_eq!(err.error.code.code(), 1007);
    assert!(wait_state(&mut app, npc, |s| matches!(s, NpcState::Failed(_))));
    assert_eq!(state(&app, npc).label(), "failed: 1007 API key not valid. Please pass a valid API key.");
    assert_eq!(sim.connections(), 1);
}

#[test]
fn npcs_defined_by_asset_files_hot_reload() {
    use bevy_live_npc::assets::{NpcDefinition, NpcDefinitionHandle};
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, AssetPlugin::default(), sim_plugin(None).auto_engage(false)));
    finish(&mut app);
    let handle = app.world().resource::<AssetServer>().load::<NpcDefinition>("npcs/mira.npc.json");
    let npc = app.world_mut().spawn(NpcDefinitionHandle(handle.clone())).id();
    assert!(app.update_while_not(WAIT, |w| w.get::<LiveNpc>(npc).is_some()));
    let live = app.world().get::<LiveNpc>(npc).unwrap();
    assert_eq!((live.name.as_str(), live.voice.as_str()), ("Mira", "Kore"));
    assert!(live.may_use("give_item"));

    say(&mut app, npc, "Who are you?");
    assert!(reply(&mut app, npc).text.contains("Mira"));
    // The file changes (here: the asset is edited): the NPC and its open session follow.
    app.world_mut().resource_mut::<Assets<NpcDefinition>>().get_mut(&handle).unwrap().persona =
        "You are Mirabel, the village blacksmith's sister.".into();
    assert!(app.update_while_not(WAIT, |w| { w.get::<LiveNpc>(npc).is_some_and(|n| n.persona.contains("Mirabel")) }));
    say(&mut app, npc, "Who are you?");
    let line = reply(&mut app, npc).text;
    assert!(line.contains("Mirabel"), "{line}");
}

#[test]
fn plugin_fetches_a_token_per_session_from_a_token_server() {
    use bevy_live_npc::protocol::{Content, Part, Setup};
    use bevy_live_npc::token::{TokenServer, TokenServerConfig};
    const KEY: &str = "sim-key";

    let sim =
        LiveSim::start_in_background(LiveSim::builder().pace(0.0).seed(7).api_key(Some(KEY.into()))).expect("sim");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let mut config = TokenServerConfig::new(sim.rest_url(), Secret::new(KEY));
    config.policy.uses = 1;
    // Lock the persona: whatever the game asks for, the NPC is Bram.
    let bram = Setup {
        model: "models/gemini-3.8-live".into(),
        system_instruction: Some(Content { role: None, parts: vec![Part::text("You are Bram, the ferryman.")] }),
        ..Default::default()
    };
    config.policy = config.policy.clone().with_setup(bram);
    let server = rt.block_on(TokenServer::start("127.0.0.1:0".parse().expect("addr"), config)).expect("token server");

    let backend =
        LiveBackend::TokenServer { url: server.url(), endpoint: Some(sim.base_url()), extra_root_pem: Vec::new() };
    let plugin = LiveNpcPlugin::default().backend(backend).auto_engage(false);
    let plugin = plugin.audio(AudioBackendChoice::Disabled);
    let mut app = app(plugin);
    let a = app.world_mut().spawn(LiveNpc::new("Mira")).id();
    let b = app.world_mut().spawn(LiveNpc::new("Ada")).id();
    app.finish();
    app.cleanup();
    for npc in [a, b] {
        app.world_mut().write_message(SayToNpc { npc, text: "Who are you?".into() });
        let line = app
            .update_until::<NpcTranscript>(|t| t.entity == npc && t.speaker == Speaker::Npc && t.is_final)
            .expect("the NPC answers");
        assert!(line.text.contains("Bram"), "the token's persona: {}", line.text);
    }
    // One single-use token per session: two sessions, two tokens.
    let m = sim.metrics();
    assert_eq!((m.tokens_minted, m.sessions_started, m.token_refusals), (2, 2, 0), "{m}");
    drop(app);
    rt.block_on(server.shutdown());
}

// ---------------------------------------------------------------- the plugin group

mod group {
    use bevy::app::PluginGroup;
    use bevy::ecs::schedule::ScheduleLabel;
    use bevy::prelude::*;
    use bevy::transform::TransformPlugin;
    use bevy_live_npc::audio::{AudioBackendChoice, NpcAudioOutput, NpcAudioPlugin, NpcAudioSettings, OfflineOutput};
    use bevy_live_npc::conversation::NpcToolsPlugin;
    use bevy_live_npc::mic::{MicEchoReference, NpcMicPlugin};
    use bevy_live_npc::plugin::{LiveNpcPlugins, LiveNpcRuntime};
    use bevy_live_npc::prelude::{LiveNpcSettings, MicRoute, NpcFocus};
    use bevy_live_npc::testing::sim_plugin;
    use bevy_live_npc::tools::NpcToolRegistry;

    fn custom_audio() -> (NpcAudioPlugin, OfflineOutput) {
        let output = OfflineOutput::manual(48_000);
        let settings = NpcAudioSettings { prebuffer: std::time::Duration::from_millis(123), ..Default::default() };
        (NpcAudioPlugin { backend: AudioBackendChoice::Offline(output.clone()), settings }, output)
    }

    fn base() -> App {
        let mut app = App::new();
        app.add_plugins((MinimalPlugins, TransformPlugin));
        app
    }

    /// The plugin alone, its voices on an offline output.
    fn offline_app() -> App {
        let mut app = base();
        app.add_plugins(sim_plugin(None).audio(AudioBackendChoice::Offline(OfflineOutput::manual(48_000))));
        app
    }

    fn run(mut app: App) -> App {
        app.finish();
        app.cleanup();
        app.update();
        app
    }

    fn systems(app: &App, label: impl ScheduleLabel) -> usize {
        app.get_schedule(label).and_then(|s| s.systems().ok()).map_or(0, Iterator::count)
    }

    fn counts(app: &App) -> [usize; 3] {
        [systems(app, PreUpdate), systems(app, Update), systems(app, PostUpdate)]
    }

    fn prebuffer_ms(app: &App) -> u128 {
        app.world().resource::<NpcAudioSettings>().prebuffer.as_millis()
    }

    #[test]
    fn the_plugin_adds_the_whole_group() {
        let mut app = base();
        app.add_plugins(sim_plugin(None));
        let app = run(app);
        let w = app.world();
        assert!(w.contains_resource::<LiveNpcSettings>() && w.contains_resource::<LiveNpcRuntime>());
        assert!(w.contains_resource::<NpcToolRegistry>() && w.contains_resource::<NpcFocus>());
        assert!(w.contains_resource::<MicRoute>() && w.contains_resource::<NpcAudioOutput>());
        assert!(w.contains_resource::<MicEchoReference>(), "the microphone plugin is part of the group");
        assert!(app.is_plugin_added::<NpcAudioPlugin>() && app.is_plugin_added::<NpcMicPlugin>());
    }

    #[test]
    fn the_group_can_leave_the_microphone_out() {
        let mut app = base();
        app.add_plugins(sim_plugin(None).into_group().build().disable::<NpcMicPlugin>());
        let app = run(app);
        assert!(!app.is_plugin_added::<NpcMicPlugin>());
        assert!(!app.world().contains_resource::<MicEchoReference>());
        assert!(app.world().contains_resource::<NpcAudioOutput>(), "the rest is there");
    }

    #[test]
    fn the_group_runs_without_its_tools_plugin() {
        let mut app = base();
        app.add_plugins(sim_plugin(None).into_group().build().disable::<NpcToolsPlugin>());
        let mut app = run(app);
        app.update();
        assert!(!app.is_plugin_added::<NpcToolsPlugin>());
        assert!(app.world().contains_resource::<NpcToolRegistry>(), "conversations still set sessions up");
    }

    #[test]
    fn the_group_takes_a_configured_audio_plugin() {
        let (audio, output) = custom_audio();
        let mut app = base();
        app.add_plugins(LiveNpcPlugins::from(sim_plugin(None)).set(audio));
        let app = run(app);
        assert_eq!(prebuffer_ms(&app), 123);
        assert!(app.world().resource::<NpcAudioOutput>().is_available());
        assert_eq!(output.render(128).len(), 256, "voices go to the configured offline output");
    }

    #[test]
    fn an_audio_plugin_added_before_the_plugin_is_the_one_that_runs() {
        let reference = counts(&run(offline_app()));
        let (audio, output) = custom_audio();
        let mut app = base();
        app.add_plugins(audio).add_plugins(sim_plugin(None));
        let app = run(app);
        assert_eq!(prebuffer_ms(&app), 123, "the app's own configuration wins");
        assert_eq!(output.render(128).len(), 256, "and its output is the one that plays");
        assert_eq!(counts(&app), reference, "one instance of every system");
    }

    #[test]
    fn an_audio_plugin_added_after_the_group_is_skipped() {
        let reference = counts(&run(offline_app()));
        let (audio, output) = custom_audio();
        let mut app = offline_app();
        app.add_plugins(audio).add_plugins(NpcMicPlugin);
        let app = run(app);
        assert_eq!(prebuffer_ms(&app), NpcAudioSettings::default().prebuffer.as_millis(), "the first one runs");
        assert_eq!(counts(&app), reference, "one instance of every system");
        assert!(output.render(16).is_empty(), "the skipped plugin's output never got a mixer");
    }
}
