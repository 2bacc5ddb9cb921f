//! The demo: a small 3D village where you walk up to NPCs and talk to them.
//!
//! - WASD or arrow keys to walk, mouse to look (click to capture the mouse, Esc to release).
//! - Walk up to an NPC to engage it; the one you face listens (a marker floats over it).
//! - Hold `V` to talk (push-to-talk), `M` toggles the open microphone, `Enter` opens a text box.
//! - Bram the guard opens the gate, Mira the blacksmith gives you items, Elsa the innkeeper lights
//!   the lanterns (while she keeps talking) and tells the time from the game clock.
//!
//! Without `GEMINI_API_KEY` the NPCs run on the embedded Live API simulator (a banner says so);
//! with it, on the real Gemini Live API; `--endpoint URL` points them anywhere else.
//!
//! `--screenshot FILE --frames N` runs a scripted visit instead (walk to Bram, ask him to open the
//! gate, wait for his reply and the gate), saves a screenshot and exits 0 only if every step
//! happened; otherwise exit 1 naming the missing step. `N` bounds the frames; steps advance on
//! events.

#[path = "shared/inventory.rs"]
mod inventory;

use std::f32::consts::{FRAC_PI_2, PI};
use std::path::PathBuf;
use std::process::ExitCode;

use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::input::mouse::AccumulatedMouseMotion;
use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::settings::WgpuSettings;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy::window::{CursorGrabMode, CursorOptions, PrimaryWindow};
use bevy_kira_audio::prelude::{Audio, AudioControl, AudioPlugin as KiraAudioPlugin};
use bevy_live_npc::assets::NpcDefinitionHandle;
use bevy_live_npc::audio::capture::{MicLevel, MicMode, MicState, MicStatus, PlayerMic};
use bevy_live_npc::audio::{NpcAudioOutput, NpcLipSync};
use bevy_live_npc::plugin::LiveNpcRuntime;
use bevy_live_npc::prelude::*;
use bevy_live_npc::session::ENV_API_KEY;
use inventory::Inventory;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

// ---------- command line ----------

#[derive(Resource, Clone, Debug, Default)]
struct DemoArgs {
    endpoint: Option<String>,
    screenshot: Option<PathBuf>,
    frames: u32,
}

const USAGE: &str = "usage: demo [--endpoint URL] [--screenshot FILE --frames N]";

fn parse_args() -> Result<DemoArgs, String> {
    use lexopt::prelude::*;
    let mut args = DemoArgs { frames: 3000, ..default() };
    let mut parser = lexopt::Parser::from_env();
    fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
        parser.value().map_err(|e| e.to_string())?.into_string().map_err(|_| "arguments must be UTF-8".into())
    }
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("endpoint") => args.endpoint = Some(value(&mut parser)?),
            Long("screenshot") => args.screenshot = Some(PathBuf::from(value(&mut parser)?)),
            Long("frames") => {
                args.frames = value(&mut parser)?.parse().map_err(|_| "--frames takes a number".to_string())?
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(args)
}

// ---------- world ----------

/// The village gate; the guard's tool opens it.
#[derive(Component, Default)]
struct Gate {
    open: bool,
    /// 0 closed … 1 open, animated.
    progress: f32,
}

/// A gate wing, pivoting around its hinge.
#[derive(Component)]
struct GateWing {
    closed: Quat,
    open: Quat,
}

/// A lantern the innkeeper lights.
#[derive(Component)]
struct Lantern {
    material: Handle<StandardMaterial>,
    light: Entity,
}

/// Whether the lanterns are lit.
#[derive(Resource, Default)]
struct Lanterns {
    lit: bool,
}

/// Game time of day in hours; runs 60× faster than real time.
#[derive(Resource)]
struct GameClock {
    hours: f32,
}

/// A character's mouth, scaled by the lip-sync level.
#[derive(Component)]
struct Mouth {
    npc: Entity,
}

/// The marker over the NPC that listens.
#[derive(Component)]
struct FocusMarker;

/// A floating label with an NPC's name and session state.
#[derive(Component)]
struct StateLabel {
    npc: Entity,
}

#[derive(Component)]
struct SubtitleText;

#[derive(Component)]
struct HudText;

#[derive(Component)]
struct InventoryText;

#[derive(Component)]
struct InputBox;

#[derive(Component)]
struct ErrorText;

#[derive(Component)]
struct Player {
    yaw: f32,
    pitch: f32,
}

/// The text box opened with Enter.
#[derive(Resource, Default)]
struct TextEntry {
    open: bool,
    text: String,
}

/// The latest subtitle lines, newest last.
#[derive(Resource, Default)]
struct Subtitles {
    lines: Vec<(String, String, bool)>,
}

/// The latest errors to show.
#[derive(Resource, Default)]
struct ErrorLog(Vec<String>);

// ---------- tools ----------

/// Which gate to open.
#[derive(Deserialize, JsonSchema)]
struct OpenGate {
    /// The gate's name (the village has one: the north gate).
    #[serde(default)]
    gate: Option<String>,
}

fn open_gate(In(input): In<ToolInput<OpenGate>>, mut gates: Query<&mut Gate>) -> ToolResult {
    let mut opened = false;
    for mut gate in &mut gates {
        opened |= !gate.open;
        gate.open = true;
    }
    let name = input.args.gate.unwrap_or_else(|| "north".into());
    Ok(json!({ "gate": name, "state": if opened { "opened" } else { "already open" } }))
}

fn light_lanterns(In(_): In<ToolInput>, mut lanterns: ResMut<Lanterns>) -> ToolResult {
    let was = lanterns.lit;
    lanterns.lit = true;
    Ok(json!({ "lanterns": if was { "already lit" } else { "lit" } }))
}

fn tell_time(In(_): In<ToolInput>, clock: Res<GameClock>) -> ToolResult {
    let h = clock.hours.floor() as u32 % 24;
    let m = ((clock.hours.fract()) * 60.0).floor() as u32;
    Ok(json!({ "time": format!("{h:02}:{m:02}") }))
}

// ---------- app ----------

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let scripted = args.screenshot.is_some();
    let mut plugin = LiveNpcPlugin::default().engage_radius(8.0).max_sessions(3);
    if let Some(url) = &args.endpoint {
        plugin = plugin.backend(LiveBackend::explicit_endpoint(url));
    } else if scripted && std::env::var(ENV_API_KEY).is_err() {
        // The scripted run only needs to be quick, not real-time.
        plugin = plugin.simulator(SimulatorSettings { pace: 0.25, seed: 1, scenario: None });
    }

    let mut app = App::new();
    inventory::add_inventory_tools(&mut app);
    let window = Window { title: "bevy_live_npc - village demo".into(), resolution: (1280, 720).into(), ..default() };
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin { primary_window: Some(window), ..default() })
            // Assets live in the crate, wherever the binary is run from.
            .set(AssetPlugin { file_path: concat!(env!("CARGO_MANIFEST_DIR"), "/assets").into(), ..default() })
            .set(RenderPlugin {
                // Screenshots must not catch half-compiled pipelines (all black).
                synchronous_pipeline_compilation: scripted,
                render_creation: WgpuSettings::default().into(),
                ..default()
            }),
    )
    .add_plugins((KiraAudioPlugin, plugin))
    .insert_resource(ClearColor(Color::srgb(0.55, 0.72, 0.9)))
    .insert_resource(GlobalAmbientLight { color: Color::WHITE, brightness: 400.0, ..default() })
    .insert_resource(args.clone())
    .insert_resource(Inventory(vec![("torch".into(), 1), ("bread".into(), 2)]))
    .insert_resource(GameClock { hours: 17.5 })
    .init_resource::<Lanterns>()
    .init_resource::<TextEntry>()
    .init_resource::<Subtitles>()
    .init_resource::<ErrorLog>()
    .add_npc_tool(NpcTool::new("open_gate", "Opens the village's north gate.").run(open_gate))
    .add_npc_tool(
        NpcTool::new("light_lanterns", "Lights the village lanterns.")
            .non_blocking(ToolScheduling::WhenIdle)
            .run(light_lanterns),
    )
    .add_npc_tool(NpcTool::new("tell_time", "Tells the time of day.").run(tell_time))
    .add_systems(Startup, (setup_world, setup_ui, play_ambience))
    .add_systems(
        Update,
        (
            (move_player, look_around, grab_cursor).run_if(not(text_entry_open)),
            text_entry,
            collect_subtitles,
            collect_errors,
            animate_gate,
            update_lanterns,
            tick_clock,
            animate_mouths,
            toggle_open_mic.run_if(not(text_entry_open)),
            update_focus_marker,
            update_labels,
            update_hud,
        ),
    );
    if scripted {
        app.add_systems(Update, script::run_script);
        app.insert_resource(script::Script::default());
    }
    match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}

fn text_entry_open(entry: Res<TextEntry>) -> bool {
    entry.open
}

fn play_ambience(asset_server: Res<AssetServer>, audio: Res<Audio>) {
    audio.play(asset_server.load("sounds/ambience.wav")).looped().with_volume(-18.0);
}

fn setup_world(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    asset_server: Res<AssetServer>,
) {
    let mat = |materials: &mut Assets<StandardMaterial>, color: Color| {
        materials.add(StandardMaterial { base_color: color, perceptual_roughness: 0.9, ..default() })
    };
    let grass = mat(&mut materials, Color::srgb(0.33, 0.55, 0.28));
    let path = mat(&mut materials, Color::srgb(0.62, 0.55, 0.42));
    let wall = mat(&mut materials, Color::srgb(0.85, 0.8, 0.7));
    let roof = mat(&mut materials, Color::srgb(0.55, 0.22, 0.16));
    let wood = mat(&mut materials, Color::srgb(0.42, 0.28, 0.16));
    let stone = mat(&mut materials, Color::srgb(0.5, 0.5, 0.52));

    // Ground and a path to the gate.
    commands.spawn((Mesh3d(meshes.add(Plane3d::default().mesh().size(80.0, 80.0))), MeshMaterial3d(grass)));
    commands.spawn((
        Mesh3d(meshes.add(Cuboid::new(3.0, 0.02, 30.0))),
        MeshMaterial3d(path),
        Transform::from_xyz(0.0, 0.01, -5.0),
    ));

    // Houses, and a guardhouse and a stall by the gate.
    for (x, z, rot) in [
        (-7.0, -2.0, 0.3),
        (7.5, -4.0, -0.2),
        (-6.0, 8.0, 0.1),
        (8.0, 7.0, -0.4),
        (-5.8, -15.0, 0.0),
        (5.8, -15.0, 0.0),
    ] {
        let t = Transform::from_xyz(x, 1.5, z).with_rotation(Quat::from_rotation_y(rot));
        commands.spawn((Mesh3d(meshes.add(Cuboid::new(4.0, 3.0, 4.0))), MeshMaterial3d(wall.clone()), t));
        commands.spawn((
            Mesh3d(meshes.add(Cone { radius: 3.2, height: 2.0 })),
            MeshMaterial3d(roof.clone()),
            Transform::from_xyz(x, 4.0, z).with_rotation(Quat::from_rotation_y(rot + PI / 4.0)),
        ));
    }

    // The north gate: two stone posts and two wooden wings.
    let gate_z = -18.0;
    for x in [-2.2, 2.2] {
        commands.spawn((
            Mesh3d(meshes.add(Cuboid::new(0.8, 4.0, 0.8))),
            MeshMaterial3d(stone.clone()),
            Transform::from_xyz(x, 2.0, gate_z),
        ));
    }
    for x in [-8.0, 8.0] {
        commands.spawn((
            Mesh3d(meshes.add(Cuboid::new(11.0, 2.5, 0.6))),
            MeshMaterial3d(stone.clone()),
            Transform::from_xyz(x, 1.25, gate_z),
        ));
    }
    let gate = commands.spawn((Gate::default(), Transform::default(), Visibility::default())).id();
    for side in [-1.0f32, 1.0] {
        let closed = Quat::IDENTITY;
        let open = Quat::from_rotation_y(side * -1.6);
        let hinge = commands
            .spawn((
                GateWing { closed, open },
                Transform::from_xyz(side * 1.8, 0.0, gate_z),
                Visibility::default(),
                ChildOf(gate),
            ))
            .id();
        commands.spawn((
            Mesh3d(meshes.add(Cuboid::new(1.8, 3.0, 0.2))),
            MeshMaterial3d(wood.clone()),
            Transform::from_xyz(-side * 0.9, 1.5, 0.0),
            ChildOf(hinge),
        ));
    }

    // Lanterns along the path.
    for (x, z) in [(2.4, -13.0), (-2.4, -7.0), (2.4, -1.0), (-2.4, 5.0)] {
        commands.spawn((
            Mesh3d(meshes.add(Cylinder::new(0.08, 2.4))),
            MeshMaterial3d(wood.clone()),
            Transform::from_xyz(x, 1.2, z),
        ));
        let glass = materials.add(StandardMaterial { base_color: Color::srgb(0.3, 0.3, 0.25), ..default() });
        let light = commands
            .spawn((
                PointLight { intensity: 0.0, range: 8.0, color: Color::srgb(1.0, 0.8, 0.45), ..default() },
                Transform::from_xyz(x, 2.6, z),
            ))
            .id();
        commands.spawn((
            Mesh3d(meshes.add(Sphere::new(0.22))),
            MeshMaterial3d(glass.clone()),
            Transform::from_xyz(x, 2.6, z),
            Lantern { material: glass, light },
        ));
    }

    // Sun.
    commands.spawn((
        DirectionalLight { illuminance: 9000.0, shadow_maps_enabled: true, ..default() },
        Transform::from_xyz(10.0, 20.0, 8.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));

    // The three NPCs, defined by asset files.
    let npcs = [
        ("npcs/bram.npc.json", Vec3::new(1.2, 0.0, -15.5), Color::srgb(0.25, 0.3, 0.55)),
        ("npcs/mira.npc.json", Vec3::new(-5.0, 0.0, 1.5), Color::srgb(0.55, 0.3, 0.2)),
        ("npcs/elsa.npc.json", Vec3::new(5.0, 0.0, 3.5), Color::srgb(0.45, 0.55, 0.3)),
    ];
    let skin = mat(&mut materials, Color::srgb(0.93, 0.78, 0.65));
    let dark = mat(&mut materials, Color::srgb(0.08, 0.05, 0.05));
    for (file, at, clothes) in npcs {
        let body_mat = mat(&mut materials, clothes);
        let npc = commands
            .spawn((
                NpcDefinitionHandle(asset_server.load(file)),
                Transform::from_translation(at).looking_at(Vec3::new(0.0, 0.0, at.z + 4.0), Vec3::Y),
                Visibility::default(),
            ))
            .id();
        commands.spawn((
            Mesh3d(meshes.add(Capsule3d::new(0.35, 1.0))),
            MeshMaterial3d(body_mat),
            Transform::from_xyz(0.0, 0.85, 0.0),
            ChildOf(npc),
        ));
        commands.spawn((
            Mesh3d(meshes.add(Sphere::new(0.28))),
            MeshMaterial3d(skin.clone()),
            Transform::from_xyz(0.0, 1.72, 0.0),
            ChildOf(npc),
        ));
        for x in [-0.1, 0.1] {
            commands.spawn((
                Mesh3d(meshes.add(Sphere::new(0.04))),
                MeshMaterial3d(dark.clone()),
                Transform::from_xyz(x, 1.78, -0.25),
                ChildOf(npc),
            ));
        }
        commands.spawn((
            Mesh3d(meshes.add(Cuboid::new(0.14, 0.05, 0.04))),
            MeshMaterial3d(dark.clone()),
            Transform::from_xyz(0.0, 1.62, -0.26),
            Mouth { npc },
            ChildOf(npc),
        ));
    }

    // The focus marker.
    let marker = materials.add(StandardMaterial {
        base_color: Color::srgb(1.0, 0.85, 0.2),
        emissive: LinearRgba::rgb(2.0, 1.6, 0.3),
        ..default()
    });
    commands.spawn((
        Mesh3d(meshes.add(Cone { radius: 0.18, height: 0.35 })),
        MeshMaterial3d(marker),
        Transform::from_xyz(0.0, -10.0, 0.0).with_rotation(Quat::from_rotation_x(PI)),
        FocusMarker,
    ));

    // The player: the camera is the listener.
    commands.spawn((
        Camera3d::default(),
        Transform::from_xyz(0.0, 1.7, 13.0),
        Player { yaw: 0.0, pitch: -0.05 },
        NpcListener,
        PlayerMic::push_to_talk(KeyCode::KeyV),
    ));
}

/// A text panel at an absolute position.
fn panel(node: Node, size: f32, color: Color, background: Color) -> impl Bundle {
    (
        Node { position_type: PositionType::Absolute, ..node },
        Text::new(""),
        TextFont { font_size: FontSize::Px(size), ..default() },
        TextColor(color),
        BackgroundColor(background),
    )
}

fn setup_ui(mut commands: Commands, runtime: Res<LiveNpcRuntime>) {
    let backend = if runtime.uses_simulator() {
        "Embedded Live API simulator (no GEMINI_API_KEY set): replies are synthetic".to_owned()
    } else {
        format!("Live API at {}", runtime.base_url().unwrap_or("(not configured)"))
    };
    let at = |top: f32, left: f32| Node { top: Val::Px(top), left: Val::Px(left), ..default() };
    let shade = |alpha: f32| Color::srgba(0.0, 0.0, 0.0, alpha);
    commands.spawn(panel(at(8.0, 8.0), 16.0, Color::srgb(1.0, 0.95, 0.7), shade(0.45))).insert(Text::new(backend));
    commands.spawn((panel(at(36.0, 8.0), 15.0, Color::WHITE, shade(0.35)), HudText));
    let top_right = Node { top: Val::Px(8.0), right: Val::Px(8.0), ..default() };
    commands.spawn((panel(top_right, 15.0, Color::WHITE, Color::srgba(0.1, 0.07, 0.02, 0.6)), InventoryText));
    let subtitles = Node {
        bottom: Val::Px(70.0),
        left: Val::Percent(10.0),
        width: Val::Percent(80.0),
        justify_content: JustifyContent::Center,
        ..default()
    };
    commands.spawn((
        panel(subtitles, 20.0, Color::WHITE, shade(0.5)),
        TextLayout::justify(Justify::Center),
        SubtitleText,
    ));
    let input = Node { bottom: Val::Px(20.0), left: Val::Percent(25.0), ..default() };
    commands.spawn((panel(input, 18.0, Color::srgb(0.7, 1.0, 0.7), shade(0.6)), InputBox));
    commands.spawn((panel(at(120.0, 8.0), 15.0, Color::srgb(1.0, 0.45, 0.4), Color::NONE), ErrorText));
}

// ---------- player ----------

fn move_player(keys: Res<ButtonInput<KeyCode>>, time: Res<Time>, mut player: Query<(&mut Transform, &Player)>) {
    let Ok((mut t, p)) = player.single_mut() else {
        return;
    };
    let forward = Vec3::new(-p.yaw.sin(), 0.0, -p.yaw.cos());
    let right = Vec3::new(-forward.z, 0.0, forward.x);
    let mut dir = Vec3::ZERO;
    if keys.any_pressed([KeyCode::KeyW, KeyCode::ArrowUp]) {
        dir += forward;
    }
    if keys.any_pressed([KeyCode::KeyS, KeyCode::ArrowDown]) {
        dir -= forward;
    }
    if keys.pressed(KeyCode::KeyD) {
        dir += right;
    }
    if keys.pressed(KeyCode::KeyA) {
        dir -= right;
    }
    t.translation += dir.normalize_or_zero() * 4.0 * time.delta_secs();
    // Arrow keys turn as well, for players without a mouse.
    let turn = (keys.pressed(KeyCode::ArrowLeft) as i32 - keys.pressed(KeyCode::ArrowRight) as i32) as f32;
    if turn != 0.0 {
        t.rotate_y(turn * 1.8 * time.delta_secs());
    }
}

fn look_around(
    motion: Res<AccumulatedMouseMotion>,
    cursor: Query<&CursorOptions, With<PrimaryWindow>>,
    mut player: Query<(&mut Transform, &mut Player)>,
) {
    let Ok((mut t, mut p)) = player.single_mut() else {
        return;
    };
    let grabbed = cursor.single().is_ok_and(|c| c.grab_mode != CursorGrabMode::None);
    if grabbed {
        p.yaw -= motion.delta.x * 0.003;
        p.pitch = (p.pitch - motion.delta.y * 0.003).clamp(-FRAC_PI_2 + 0.1, FRAC_PI_2 - 0.1);
    } else {
        // Keep yaw in sync with arrow-key turning.
        let (yaw, _, _) = t.rotation.to_euler(EulerRot::YXZ);
        p.yaw = yaw;
    }
    t.rotation = Quat::from_euler(EulerRot::YXZ, p.yaw, p.pitch, 0.0);
}

fn grab_cursor(
    mouse: Res<ButtonInput<MouseButton>>,
    keys: Res<ButtonInput<KeyCode>>,
    mut cursor: Query<&mut CursorOptions, With<PrimaryWindow>>,
) {
    let Ok(mut c) = cursor.single_mut() else {
        return;
    };
    if mouse.just_pressed(MouseButton::Left) {
        c.grab_mode = CursorGrabMode::Locked;
        c.visible = false;
    }
    if keys.just_pressed(KeyCode::Escape) {
        c.grab_mode = CursorGrabMode::None;
        c.visible = true;
    }
}

/// Enter opens a text box; Enter again says it to the focused NPC.
fn text_entry(
    mut entry: ResMut<TextEntry>,
    mut keys: MessageReader<KeyboardInput>,
    focus: Res<NpcFocus>,
    mut say: MessageWriter<SayToNpc>,
    mut boxes: Query<&mut Text, With<InputBox>>,
) {
    for key in keys.read().filter(|k| k.state.is_pressed()) {
        match (&key.logical_key, entry.open) {
            (Key::Enter, false) => entry.open = true,
            (Key::Enter, true) => {
                let text = std::mem::take(&mut entry.text);
                entry.open = false;
                if let (Some(npc), false) = (focus.current(), text.trim().is_empty()) {
                    say.write(SayToNpc { npc, text: text.trim().to_owned() });
                }
            }
            (Key::Escape, true) => {
                entry.open = false;
                entry.text.clear();
            }
            (Key::Backspace, true) => {
                entry.text.pop();
            }
            (Key::Space, true) => entry.text.push(' '),
            (Key::Character(c), true) => entry.text.push_str(c),
            _ => {}
        }
    }
    if let Ok(mut t) = boxes.single_mut() {
        let shown = if entry.open { format!(" Say: {}_ ", entry.text) } else { String::new() };
        if t.0 != shown {
            t.0 = shown;
        }
    }
}

// ---------- world updates ----------

fn animate_gate(
    time: Res<Time>,
    mut gates: Query<(&mut Gate, &Children)>,
    mut wings: Query<(&GateWing, &mut Transform)>,
) {
    for (mut gate, children) in &mut gates {
        let target = if gate.open { 1.0 } else { 0.0 };
        gate.progress += (target - gate.progress).clamp(-1.0, 1.0) * (time.delta_secs() * 0.8).min(1.0);
        for child in children {
            if let Ok((wing, mut t)) = wings.get_mut(*child) {
                t.rotation = wing.closed.slerp(wing.open, gate.progress.clamp(0.0, 1.0));
            }
        }
    }
}

fn update_lanterns(
    lanterns: Res<Lanterns>,
    items: Query<&Lantern>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut lights: Query<&mut PointLight>,
) {
    if !lanterns.is_changed() {
        return;
    }
    for lantern in &items {
        if let Some(mut m) = materials.get_mut(&lantern.material) {
            m.emissive = if lanterns.lit { LinearRgba::rgb(6.0, 4.0, 1.5) } else { LinearRgba::BLACK };
        }
        if let Ok(mut light) = lights.get_mut(lantern.light) {
            light.intensity = if lanterns.lit { 60_000.0 } else { 0.0 };
        }
    }
}

fn tick_clock(time: Res<Time>, mut clock: ResMut<GameClock>) {
    clock.hours = (clock.hours + time.delta_secs() / 60.0) % 24.0;
}

/// The mouth opens with the level of the voice being heard right now (lip-sync); without a
/// sound card there is nothing heard, so it flaps while the NPC's turn lasts instead.
fn animate_mouths(
    npcs: Query<(&NpcState, Option<&NpcLipSync>)>,
    output: Option<Res<NpcAudioOutput>>,
    time: Res<Time>,
    mut mouths: Query<(&Mouth, &mut Transform)>,
) {
    let heard = output.is_some_and(|o| o.is_available());
    for (mouth, mut t) in &mut mouths {
        let Ok((state, lips)) = npcs.get(mouth.npc) else {
            continue;
        };
        let open = match lips {
            Some(l) if heard => (l.level * 2.5).min(1.0),
            _ if *state == NpcState::Speaking => 0.5 + 0.5 * (time.elapsed_secs() * 14.0).sin().abs(),
            _ => 0.0,
        };
        // Smooth a little so the mouth does not jitter between frames.
        let target = 1.0 + open * 3.0;
        t.scale.y += (target - t.scale.y) * 0.5;
    }
}

/// M switches between push-to-talk (V) and the open microphone.
fn toggle_open_mic(keys: Res<ButtonInput<KeyCode>>, mut mics: Query<&mut PlayerMic>) {
    if !keys.just_pressed(KeyCode::KeyM) {
        return;
    }
    for mut mic in &mut mics {
        mic.mode = match mic.mode {
            MicMode::OpenMic => MicMode::PushToTalk { key: Some(KeyCode::KeyV), button: None },
            MicMode::PushToTalk { .. } => MicMode::OpenMic,
        };
    }
}

fn update_focus_marker(
    focus: Res<NpcFocus>,
    time: Res<Time>,
    npcs: Query<&GlobalTransform, With<LiveNpc>>,
    mut marker: Query<&mut Transform, With<FocusMarker>>,
) {
    let Ok(mut t) = marker.single_mut() else {
        return;
    };
    match focus.current().and_then(|e| npcs.get(e).ok()) {
        Some(npc) => {
            let bob = (time.elapsed_secs() * 3.0).sin() * 0.08;
            t.translation = npc.translation() + Vec3::Y * (2.35 + bob);
        }
        None => t.translation = Vec3::new(0.0, -10.0, 0.0),
    }
}

fn update_labels(
    mut commands: Commands,
    npcs: Query<(Entity, &LiveNpc, &NpcState, &GlobalTransform)>,
    camera: Query<(&Camera, &GlobalTransform), With<Player>>,
    mut labels: Query<(Entity, &StateLabel, &mut Node, &mut Text, &mut Visibility)>,
) {
    let Ok((camera, cam_t)) = camera.single() else {
        return;
    };
    for (npc, live, state, t) in &npcs {
        if !labels.iter().any(|(_, l, ..)| l.npc == npc) {
            commands.spawn((
                Node { position_type: PositionType::Absolute, ..default() },
                Text::new(""),
                TextFont { font_size: FontSize::Px(14.0), ..default() },
                TextColor(Color::WHITE),
                BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.55)),
                StateLabel { npc },
            ));
            continue;
        }
        for (_, _, mut node, mut text, mut vis) in labels.iter_mut().filter(|(_, l, ..)| l.npc == npc) {
            let above = t.translation() + Vec3::Y * 2.2;
            match camera.world_to_viewport(cam_t, above) {
                Ok(p) if (cam_t.translation() - above).length() < 25.0 => {
                    node.left = Val::Px(p.x - 50.0);
                    node.top = Val::Px(p.y - 24.0);
                    let shown = format!(" {} - {} ", live.name, state.label());
                    if text.0 != shown {
                        text.0 = shown;
                    }
                    *vis = Visibility::Inherited;
                }
                _ => *vis = Visibility::Hidden,
            }
        }
    }
    for (label_entity, label, ..) in &labels {
        if npcs.get(label.npc).is_err() {
            commands.entity(label_entity).despawn();
        }
    }
}

fn collect_subtitles(mut lines: MessageReader<NpcTranscript>, npcs: Query<&LiveNpc>, mut subs: ResMut<Subtitles>) {
    for t in lines.read() {
        let who = match t.speaker {
            Speaker::Player => "You".to_owned(),
            Speaker::Npc => npcs.get(t.entity).map(|n| n.name.clone()).unwrap_or_default(),
        };
        // Partial lines update in place: replace the open line of the same speaker.
        match subs.lines.last_mut() {
            Some((w, text, done)) if *w == who && !*done => {
                *text = t.text.clone();
                *done = t.is_final;
            }
            _ => subs.lines.push((who, t.text.clone(), t.is_final)),
        }
        let excess = subs.lines.len().saturating_sub(3);
        subs.lines.drain(..excess);
    }
}

fn collect_errors(mut errors: MessageReader<NpcError>, npcs: Query<&LiveNpc>, mut log: ResMut<ErrorLog>) {
    for e in errors.read() {
        let who = npcs.get(e.entity).map(|n| n.name.clone()).unwrap_or_else(|_| "NPC".into());
        log.0.push(format!("{who}: {}", e.error));
        let excess = log.0.len().saturating_sub(3);
        log.0.drain(..excess);
    }
}

#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn update_hud(
    subs: Res<Subtitles>,
    inventory: Res<Inventory>,
    clock: Res<GameClock>,
    errors: Res<ErrorLog>,
    focus: Res<NpcFocus>,
    npcs: Query<(&LiveNpc, &NpcState, &NpcStats)>,
    mic: Query<(&PlayerMic, &MicLevel, &MicStatus)>,
    output: Option<Res<NpcAudioOutput>>,
    mut texts: ParamSet<(
        Query<&mut Text, With<SubtitleText>>,
        Query<&mut Text, With<HudText>>,
        Query<&mut Text, With<InventoryText>>,
        Query<&mut Text, With<ErrorText>>,
    )>,
) {
    let subtitle: Vec<String> = subs.lines.iter().map(|(who, text, _)| format!("{who}: {text}")).collect();
    set_text(&mut texts.p0(), subtitle.join("\n"));
    let mut hud = format!(
        " Time {:02}:{:02} | walk up to someone | hold V to talk | M open mic | Enter to type ",
        clock.hours as u32,
        (clock.hours.fract() * 60.0) as u32
    );
    if let Some((npc, state, stats)) = focus.current().and_then(|e| npcs.get(e).ok()) {
        hud.push_str(&format!("\n Talking to {} ({})", npc.name, state.label()));
        if let Some(l) = stats.last_reply_latency {
            hud.push_str(&format!(" | last reply {} ms", l.as_millis()));
        }
    }
    if let Ok((mic, level, status)) = mic.single() {
        let mode = match mic.mode {
            MicMode::OpenMic => "open mic",
            MicMode::PushToTalk { .. } => "push-to-talk (V)",
        };
        let bars = (level.rms.sqrt() * 20.0).round().clamp(0.0, 20.0) as usize;
        let state = match status.state {
            MicState::NoDevice => " - no microphone found, press Enter to type".to_owned(),
            MicState::Reopening => " - reopening the microphone".to_owned(),
            MicState::Starting => " - starting".to_owned(),
            MicState::Capturing if level.transmitting => " - sending".to_owned(),
            MicState::Capturing => String::new(),
        };
        hud.push_str(&format!("\n Mic [{:<20}] {mode}{state}", "|".repeat(bars)));
    }
    if output.as_ref().is_some_and(|o| !o.is_available()) {
        hud.push_str("\n No sound card: NPC voices are shown as subtitles only");
    }
    set_text(&mut texts.p1(), hud);
    let mut inv = String::from(" Inventory ");
    for (item, count) in &inventory.0 {
        inv.push_str(&format!("\n  {count} x {item} "));
    }
    set_text(&mut texts.p2(), inv);
    set_text(&mut texts.p3(), errors.0.join("\n"));
}

fn set_text(query: &mut Query<&mut Text, impl bevy::ecs::query::QueryFilter>, value: String) {
    if let Ok(mut t) = query.single_mut()
        && t.0 != value
    {
        t.0 = value;
    }
}

// ---------- the scripted visit ----------

mod script {
    use super::*;

    /// The scripted steps, in order.
    const STEPS: [&str; 5] =
        ["walk to Bram", "Bram engaged", "ask Bram to open the gate", "Bram's reply subtitled", "the gate opened"];

    #[derive(Resource, Default)]
    pub struct Script {
        step: usize,
        frames: u32,
        asked_at: Option<u32>,
        shot_at: Option<u32>,
        done_frames: u32,
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run_script(
        mut commands: Commands,
        mut script: ResMut<Script>,
        args: Res<DemoArgs>,
        mut player: Query<(&mut Transform, &mut Player)>,
        npcs: Query<(Entity, &LiveNpc, &NpcState, &GlobalTransform)>,
        focus: Res<NpcFocus>,
        subs: Res<Subtitles>,
        gates: Query<&Gate>,
        mut say: MessageWriter<SayToNpc>,
        mut exit: MessageWriter<AppExit>,
    ) {
        script.frames += 1;
        let bram = npcs.iter().find(|(_, n, ..)| n.name == "Bram");
        match script.step {
            0 => {
                if let (Some((_, _, _, t)), Ok((mut pt, mut p))) = (bram, player.single_mut()) {
                    // Stand a few steps from the guard, so he, the gate and the village are in view.
                    let target = t.translation() + Vec3::new(-1.6, 2.4, 7.2);
                    pt.translation = target;
                    let look = (t.translation() + Vec3::new(-0.8, 1.0, -1.0) - target).normalize();
                    p.yaw = (-look.x).atan2(-look.z);
                    p.pitch = look.y.asin();
                    script.step = 1;
                }
            }
            1 => {
                if let Some((e, _, state, _)) = bram
                    && focus.current() == Some(e)
                    && *state == NpcState::Listening
                {
                    script.step = 2;
                }
            }
            2 => {
                if let Some((e, ..)) = bram {
                    say.write(SayToNpc {
                        npc: e,
                        text: "Good evening, Bram. Could you please open the north gate?".into(),
                    });
                    script.asked_at = Some(script.frames);
                    script.step = 3;
                }
            }
            3 => {
                if subs.lines.iter().any(|(who, text, _)| who == "Bram" && !text.is_empty()) {
                    script.step = 4;
                }
            }
            4 => {
                if gates.iter().any(|g| g.open && g.progress > 0.95) {
                    script.step = 5;
                }
            }
            _ => {
                // Let the subtitles and HUD settle, then take the picture.
                script.done_frames += 1;
                if script.done_frames == 10 && script.shot_at.is_none() {
                    if let Some(path) = args.screenshot.clone() {
                        commands.spawn(Screenshot::primary_window()).observe(save_to_disk(path));
                    }
                    script.shot_at = Some(script.frames);
                }
                if script.shot_at.is_some_and(|f| script.frames > f + 15) {
                    info!("scripted visit complete in {} frames", script.frames);
                    exit.write(AppExit::Success);
                }
            }
        }
        if script.frames >= args.frames && script.step < STEPS.len() {
            eprintln!("demo: scripted step missing after {} frames: {}", script.frames, STEPS[script.step]);
            exit.write(AppExit::error());
        }
    }
}
