//! Load run for the simulator: N sessions with real-time audio both ways.
//!
//! Each session streams 16 kHz microphone audio in real time (40 ms messages): a speech sample
//! from `tests/fixtures/speech/` followed by silence, looped, with a random start offset. The
//! simulator's VAD ends each utterance, the model answers with paced 24 kHz audio, and the
//! client reads everything. After a ramp-up the run measures, over the steady part: sessions
//! held, messages per second both ways, CPU (simulator threads and client threads separately,
//! from `/proc/self/task/*/stat`) and memory (RSS from `/proc/self/status`).
//!
//! ```sh
//! cargo run --release --example sim_load -- --sessions 256 --secs 45
//! # Against a separate live-sim process (its CPU and RSS sampled from /proc/PID):
//! live-sim --addr 127.0.0.1:9000 & cargo run --release --example sim_load -- \
//!     --endpoint ws://127.0.0.1:9000 --sim-pid $!
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy_live_npc::protocol::{ClientMessage, ServerMessage, ServerPayload, ws_path};
use bevy_live_npc::sim::LiveSim;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const MODEL: &str = "models/gemini-2.5-flash-native-audio-preview-12-2025";
const CHUNK: usize = 640; // 40 ms at 16 kHz
const SILENCE_SECS: f64 = 6.0;
/// Clock ticks per second of `/proc` times (Linux's `USER_HZ`).
const TICKS: f64 = 100.0;

struct Args {
    sessions: usize,
    secs: u64,
    ramp: u64,
    endpoint: Option<String>,
    sim_pid: Option<u32>,
}

#[derive(Default)]
struct Counters {
    ready: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    audio_in: AtomicU64,
    turns: AtomicU64,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut a = Args { sessions: 256, secs: 45, ramp: 15, endpoint: None, sim_pid: None };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let v = |p: &mut lexopt::Parser| -> Result<String, String> {
            p.value().map_err(|e| e.to_string())?.into_string().map_err(|_| "not UTF-8".to_owned())
        };
        match arg {
            Long("sessions") => a.sessions = v(&mut p)?.parse().map_err(|e| format!("--sessions: {e}"))?,
            Long("secs") => a.secs = v(&mut p)?.parse().map_err(|e| format!("--secs: {e}"))?,
            Long("ramp") => a.ramp = v(&mut p)?.parse().map_err(|e| format!("--ramp: {e}"))?,
            Long("endpoint") => a.endpoint = Some(v(&mut p)?),
            Long("sim-pid") => a.sim_pid = Some(v(&mut p)?.parse().map_err(|e| format!("--sim-pid: {e}"))?),
            Long("help") | Short('h') => {
                return Err(
                    "usage: sim_load [--sessions N] [--secs S] [--ramp S] [--endpoint URL --sim-pid PID]".into()
                );
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.sessions == 0 || a.sessions > 4096 || a.secs == 0 || a.secs > 600 {
        return Err("--sessions must be 1-4096 and --secs 1-600".into());
    }
    Ok(a)
}

fn speech(name: &str) -> Result<Vec<i16>, String> {
    let path = format!("{}/tests/fixtures/speech/{name}", env!("CARGO_MANIFEST_DIR"));
    let reader = hound::WavReader::open(&path).map_err(|e| format!("{path}: {e}"))?;
    reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>().map_err(|e| format!("{path}: {e}"))
}

/// CPU ticks (user + system) per thread name, for the threads of `pid` ("self" for this one).
fn thread_ticks(pid: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in dir.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state is field 3; utime 14 and stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let group = if comm.starts_with("live-sim") {
            "sim"
        } else if comm.starts_with("load-client") {
            "client"
        } else {
            "other"
        };
        *out.entry(group.to_owned()).or_insert(0) += ticks;
    }
    out
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn session(url: String, index: usize, speech: Arc<Vec<Vec<i16>>>, c: Arc<Counters>, until: Instant) {
    let Ok((ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let setup = json!({"setup": {
        "model": MODEL,
        "systemInstruction": {"parts": [{"text": "You are Mira, the village blacksmith."}]},
        "outputAudioTranscription": {},
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 500}}
    }});
    if tx.send(Message::text(setup.to_string())).await.is_err() {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // The microphone: a speech sample, then silence, looped; a random phase per session.
    let sample = &speech[index % speech.len()];
    let mut mic: Vec<i16> = sample.clone();
    mic.resize(sample.len() + (SILENCE_SECS * 16_000.0) as usize, 0);
    let mut pos = fastrand::usize(..mic.len() / CHUNK) * CHUNK;
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    let mut ready = false;
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        tokio::select! {
            _ = tick.tick(), if ready => {
                if Instant::now() >= until {
                    let _ = tx.send(Message::Close(None)).await;
                    break;
                }
                buf.clear();
                for _ in 0..CHUNK {
                    buf.push(mic[pos]);
                    pos = (pos + 1) % mic.len();
                }
                let json = ClientMessage::audio(&buf, 16_000).to_json();
                if tx.send(Message::text(json)).await.is_err() {
                    break;
                }
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    c.received.fetch_add(1, Ordering::Relaxed);
                    match ServerMessage::from_slice(&b).map(|m| m.payload) {
                        Ok(ServerPayload::SetupComplete(_)) => {
                            ready = true;
                            c.ready.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ServerPayload::ServerContent(sc)) => {
                            if sc.model_turn.is_some() {
                                c.audio_in.fetch_add(1, Ordering::Relaxed);
                            }
                            if sc.turn_complete == Some(true) {
                                c.turns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    c.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim_load: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let speech = Arc::new(vec![
        speech("player-hello-16k.wav")?,
        speech("player-open-gate-16k.wav")?,
        speech("player-interrupt-16k.wav")?,
    ]);
    let rss_base = rss_kib("self");
    let ext_rss_base = args.sim_pid.map_or(0, |p| rss_kib(&p.to_string()));
    // The simulator on its own runtime (threads `live-sim-worker`), unless one is given.
    let sim = match &args.endpoint {
        Some(_) => None,
        None => Some(LiveSim::builder().pace(1.0).seed(1).start_in_background().map_err(|e| e.to_string())?),
    };
    let base = match (&args.endpoint, &sim) {
        (Some(e), _) => e.trim_end_matches('/').to_owned(),
        (None, Some(s)) => s.base_url(),
        (None, None) => return Err("no simulator".into()),
    };
    let url = format!("{base}{}", ws_path("v1beta", false));
    let sim_pid = args.sim_pid.map(|p| p.to_string());
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-client")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let until = start + Duration::from_secs(args.ramp + args.secs);
    println!(
        "sim_load: {} sessions, {} s ramp-up + {} s measured, {}",
        args.sessions,
        args.ramp,
        args.secs,
        if sim.is_some() { "in-process simulator" } else { "external simulator" }
    );
    clients.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.sessions {
            tasks.spawn(session(url.clone(), i, speech.clone(), counters.clone(), until));
            // Spread the connects over the first part of the ramp-up.
            if i % 16 == 15 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep_until((start + Duration::from_secs(args.ramp)).into()).await;
        let snap = |c: &Counters| {
            (
                c.sent.load(Ordering::Relaxed),
                c.received.load(Ordering::Relaxed),
                c.turns.load(Ordering::Relaxed),
            )
        };
        let t0 = Instant::now();
        let c0 = snap(&counters);
        let ticks0 = thread_ticks("self");
        let ext0 = sim_pid.as_deref().map(thread_ticks);
        let sim0 = sim.as_ref().map(LiveSim::metrics);
        let mut rss_peak = rss_kib("self");
        let mut ext_rss_peak = sim_pid.as_deref().map_or(0, rss_kib);
        while Instant::now() + Duration::from_millis(500) < until {
            tokio::time::sleep(Duration::from_secs(5).min(until - Instant::now())).await;
            rss_peak = rss_peak.max(rss_kib("self"));
            ext_rss_peak = ext_rss_peak.max(sim_pid.as_deref().map_or(0, rss_kib));
            let held = counters.ready.load(Ordering::Relaxed) - counters.closed.load(Ordering::Relaxed);
            println!(
                "  t={:>4.0}s held {held} sent {} received {}",
                start.elapsed().as_secs_f64(),
                counters.sent.load(Ordering::Relaxed),
                counters.received.load(Ordering::Relaxed)
            );
        }
        let dt = t0.elapsed().as_secs_f64();
        let c1 = snap(&counters);
        let ticks1 = thread_ticks("self");
        let cpu = |group: &str, a: &HashMap<String, u64>, b: &HashMap<String, u64>| {
            let d = b.get(group).copied().unwrap_or(0).saturating_sub(a.get(group).copied().unwrap_or(0));
            d as f64 / TICKS / dt * 100.0
        };
        let held = counters.ready.load(Ordering::Relaxed) - counters.closed.load(Ordering::Relaxed);
        let n = held.max(1) as f64;
        println!("sim_load: results over {dt:.1} s of steady state");
        println!(
            "  sessions held {held} / {} (failed to connect {}, closed early {})",
            args.sessions,
            counters.failed.load(Ordering::Relaxed),
            counters.closed.load(Ordering::Relaxed)
        );
        println!(
            "  client messages/s: sent {:.0} (mic audio), received {:.0}; model turns completed {}",
            (c1.0 - c0.0) as f64 / dt,
            (c1.1 - c0.1) as f64 / dt,
            c1.2 - c0.2
        );
        if let (Some(s0), Some(s)) = (sim0, sim.as_ref()) {
            let s1 = s.metrics();
            println!(
                "  simulator: {:.0} msg/s in, {:.0} msg/s out, {:.1} MB/s out; first audio mean {:.1} ms, max {:.1} ms",
                (s1.messages_in - s0.messages_in) as f64 / dt,
                (s1.messages_out - s0.messages_out) as f64 / dt,
                (s1.bytes_out - s0.bytes_out) as f64 / dt / 1e6,
                s1.first_audio.mean.as_secs_f64() * 1e3,
                s1.first_audio.max.as_secs_f64() * 1e3,
            );
            let sim_cpu = cpu("sim", &ticks0, &ticks1);
            let client_cpu = cpu("client", &ticks0, &ticks1);
            println!(
                "  CPU: simulator {sim_cpu:.0}% ({:.2}% per session), clients {client_cpu:.0}% ({:.2}% per session), of one core",
                sim_cpu / n,
                client_cpu / n
            );
        }
        if let (Some(pid), Some(e0)) = (sim_pid.as_deref(), ext0) {
            let e1 = thread_ticks(pid);
            let total = |m: &HashMap<String, u64>| m.values().sum::<u64>();
            let sim_cpu = total(&e1).saturating_sub(total(&e0)) as f64 / TICKS / dt * 100.0;
            println!(
                "  CPU: simulator process {sim_cpu:.0}% ({:.2}% per session); RSS {} MiB before, {} MiB peak ({:.0} KiB per session)",
                sim_cpu / n,
                ext_rss_base / 1024,
                ext_rss_peak / 1024,
                ext_rss_peak.saturating_sub(ext_rss_base) as f64 / n
            );
            println!("  CPU: clients {:.0}% of one core", cpu("client", &ticks0, &ticks1));
        }
        println!(
            "  RSS: {} MiB before, {} MiB peak: {:.0} KiB per session (simulator and clients together)",
            rss_base / 1024,
            rss_peak / 1024,
            rss_peak.saturating_sub(rss_base) as f64 / n
        );
        tasks.shutdown().await;
    });
    drop(sim);
    Ok(())
}
