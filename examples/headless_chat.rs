//! A terminal conversation with one NPC: no window, a Bevy `App` with `MinimalPlugins`.
//!
//! Each line on stdin is one player turn, sent once the NPC has finished answering the previous
//! one. stdout carries only `NAME: text` (one line per NPC turn) and `[tool] name(ARGS) ->
//! RESPONSE`; logs go to stderr.
//!
//! ```sh
//! cargo run --example headless_chat                       # the embedded simulator (no key)
//! cargo run --example headless_chat -- --endpoint ws://127.0.0.1:9000 --npc Bram --voice Charon
//! ```

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

#[path = "shared/inventory.rs"]
mod inventory;

use bevy::app::ScheduleRunnerPlugin;
use bevy::log::LogPlugin;
use bevy::prelude::*;
use bevy::transform::TransformPlugin;
use bevy_live_npc::audio::{AudioBackendChoice, NpcVoice, OfflineClock, OfflineOutput, OfflineSettings, VoiceStatus};
use bevy_live_npc::prelude::*;
use crossbeam_channel::{Receiver, TryRecvError};

const USAGE: &str = "usage: headless_chat [--endpoint URL] [--npc NAME] [--persona TEXT] [--voice VOICE]
                     [--wav FILE] [--listener-offset X,Y,Z]

  --endpoint URL   base URL of a Live API endpoint (ws:// or wss://); default: LIVE_NPC_ENDPOINT,
                   else the real service when GEMINI_API_KEY is set, else the embedded simulator
  --npc NAME       the NPC's name (default Mira)
  --persona TEXT   the NPC's persona (default: a village blacksmith)
  --voice VOICE    a prebuilt voice (default Kore)
  --wav FILE       record the NPC's voice as the listener hears it (stereo, 16-bit, output rate)
  --listener-offset X,Y,Z
                   the listener's position relative to the NPC (default 0,0,2); the listener
                   looks along -Z, so 3,0,0 puts the NPC on its left";

struct Args {
    endpoint: Option<String>,
    npc: String,
    persona: Option<String>,
    voice: String,
    wav: Option<std::path::PathBuf>,
    listener_offset: Vec3,
}

fn parse_vec3(s: &str) -> Result<Vec3, String> {
    let bad = || format!("--listener-offset wants X,Y,Z, got {s:?}");
    let v: Vec<f32> = s.split(',').map(|p| p.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    match v[..] {
        [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok(Vec3::new(x, y, z)),
        _ => Err(bad()),
    }
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut args = Args {
        endpoint: None,
        npc: "Mira".into(),
        persona: None,
        voice: "Kore".into(),
        wav: None,
        listener_offset: Vec3::new(0.0, 0.0, 2.0),
    };
    let mut parser = lexopt::Parser::from_env();
    let text = |v: std::ffi::OsString| v.into_string().map_err(|_| "arguments must be UTF-8".to_string());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("endpoint") => args.endpoint = Some(text(parser.value().map_err(|e| e.to_string())?)?),
            Long("npc") => args.npc = text(parser.value().map_err(|e| e.to_string())?)?,
            Long("persona") => args.persona = Some(text(parser.value().map_err(|e| e.to_string())?)?),
            Long("voice") => args.voice = text(parser.value().map_err(|e| e.to_string())?)?,
            Long("wav") => args.wav = Some(text(parser.value().map_err(|e| e.to_string())?)?.into()),
            Long("listener-offset") => {
                args.listener_offset = parse_vec3(&text(parser.value().map_err(|e| e.to_string())?)?)?;
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if let Some(url) = &args.endpoint
        && !(url.starts_with("ws://") || url.starts_with("wss://"))
    {
        return Err(format!("--endpoint must be a ws:// or wss:// URL, got {url:?}"));
    }
    if args.npc.trim().is_empty() {
        return Err("--npc must not be empty".into());
    }
    Ok(args)
}

/// A line from stdin, or its end.
enum Input {
    Line(String),
    Eof,
}

/// The offline output recording `--wav`, finished before a fatal exit.
#[derive(Resource, Clone)]
struct Recording(OfflineOutput);

#[derive(Resource)]
struct Chat {
    npc: Entity,
    name: String,
    input: Receiver<Input>,
    /// A player turn is waiting for the NPC's answer.
    waiting: bool,
    eof: bool,
}

fn read_stdin() -> Receiver<Input> {
    // Bounded: stdin is read no faster than the conversation consumes it.
    let (tx, rx) = crossbeam_channel::bounded(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Input::Line(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Input::Eof);
    });
    rx
}

fn send_lines(
    mut chat: ResMut<Chat>,
    mut say: MessageWriter<SayToNpc>,
    mut exit: MessageWriter<AppExit>,
    voices: Query<&NpcVoice>,
) {
    while !chat.waiting && !chat.eof {
        match chat.input.try_recv() {
            Ok(Input::Line(line)) => {
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                say.write(SayToNpc { npc: chat.npc, text: text.to_owned() });
                chat.waiting = true;
            }
            Ok(Input::Eof) | Err(TryRecvError::Disconnected) => chat.eof = true,
            Err(TryRecvError::Empty) => break,
        }
    }
    // With --wav, the last reply must be heard to the end before the file is closed.
    let quiet = voices.iter().all(|v| v.status() == VoiceStatus::Idle);
    if chat.eof && !chat.waiting && quiet {
        exit.write(AppExit::Success);
    }
}

fn print_output(
    recording: Option<Res<Recording>>,
    mut chat: ResMut<Chat>,
    mut lines: MessageReader<NpcTranscript>,
    mut tools: MessageReader<NpcToolFinished>,
    mut turns: MessageReader<NpcTurnComplete>,
    mut errors: MessageReader<NpcError>,
) {
    for t in tools.read() {
        println!("[tool] {}({}) -> {}", t.name, t.args, t.response);
    }
    for line in lines.read().filter(|t| t.speaker == Speaker::Npc && t.is_final && !t.text.is_empty()) {
        println!("{}: {}", chat.name, line.text);
    }
    if turns.read().count() > 0 {
        chat.waiting = false;
    }
    for e in errors.read() {
        if e.fatal {
            eprintln!("error: {} {}", e.error.code, e.error.reason);
            if let Some(r) = &recording {
                let _ = r.0.finish();
            }
            std::process::exit(2);
        }
        warn!("{}", e.error);
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("headless_chat: {e}\n\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let mut plugin = LiveNpcPlugin::default().auto_engage(false);
    if let Some(url) = &args.endpoint {
        plugin = plugin.backend(LiveBackend::explicit_endpoint(url));
    }
    let recording = match &args.wav {
        Some(path) => {
            let settings = OfflineSettings {
                clock: OfflineClock::RealTime { speed: 1.0 },
                record: Some(path.clone()),
                ..default()
            };
            match OfflineOutput::new(settings) {
                Ok(o) => Some(o),
                Err(e) => {
                    eprintln!("headless_chat: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        None => None,
    };
    // Without --wav the voice goes to the sound card; without one: a warning, text only.
    plugin = plugin.audio(match &recording {
        Some(o) => AudioBackendChoice::Offline(o.clone()),
        None => AudioBackendChoice::Device,
    });
    let persona = args.persona.clone().unwrap_or_else(|| {
        format!("You are {}, the village blacksmith. You are gruff but kind and proud of your forge.", args.npc)
    });

    let mut app = App::new();
    inventory::add_inventory_tools(&mut app);
    app.add_plugins((
        MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_millis(5))),
        LogPlugin { level: bevy::log::Level::WARN, ..default() },
        // Positions matter for the voice heard with --wav / --listener-offset.
        TransformPlugin,
        plugin,
    ))
    .insert_resource(inventory::Inventory(vec![("torch".into(), 1), ("bread".into(), 2), ("coins".into(), 12)]))
    .add_systems(Update, (print_output, send_lines).chain());

    let npc = app
        .world_mut()
        .spawn((
            LiveNpc::new(&args.npc).persona(persona).voice(&args.voice).tools(["check_inventory", "give_item"]),
            Transform::default(),
        ))
        .id();
    app.world_mut().spawn((NpcListener, Transform::from_translation(args.listener_offset)));
    if let Some(o) = recording {
        app.insert_resource(Recording(o));
    }
    app.insert_resource(Chat { npc, name: args.npc, input: read_stdin(), waiting: false, eof: false });

    match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}
