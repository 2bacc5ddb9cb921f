//! The smallest working program: one NPC, one line said to it, its answer printed.
//! Without `GEMINI_API_KEY` it talks to the embedded simulator.

use bevy::prelude::*;
use bevy_live_npc::prelude::*;

fn main() -> AppExit {
    App::new()
        .add_plugins((MinimalPlugins, LiveNpcPlugin::default()))
        .add_systems(Startup, setup)
        .add_systems(Update, print_reply)
        .run()
}

fn setup(mut commands: Commands, mut say: MessageWriter<SayToNpc>) {
    let npc = commands.spawn(LiveNpc::new("Mira").persona("You are Mira, the village blacksmith.")).id();
    say.write(SayToNpc { npc, text: "Hello! Who are you?".into() });
}

fn print_reply(
    mut lines: MessageReader<NpcTranscript>,
    mut errors: MessageReader<NpcError>,
    mut exit: MessageWriter<AppExit>,
) {
    for line in lines.read().filter(|l| l.speaker == Speaker::Npc && l.is_final) {
        println!("Mira: {}", line.text);
        exit.write(AppExit::Success);
    }
    for e in errors.read().filter(|e| e.fatal) {
        eprintln!("error: {}", e.error);
        exit.write(AppExit::error());
    }
}
