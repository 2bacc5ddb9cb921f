//! `live-sim`: the embedded Gemini Live API simulator as a program.
//!
//! Prints `listening on ws://127.0.0.1:PORT` (or `listening on wss://127.0.0.1:PORT ca=PATH`)
//! as its first stdout line, logs to stderr, and serves until killed. See `docs/SIMULATOR.md`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use live_npc_sim::{Fault, FaultAction, LiveSim, LiveSimBuilder, Scenario, VoiceEngine};
use tracing_subscriber::EnvFilter;

const HELP: &str = "\
live-sim: a local, deterministic Gemini Live API (BidiGenerateContent) simulator

USAGE:
    live-sim [OPTIONS]

OPTIONS:
    --addr ADDR             Address to listen on [default: 127.0.0.1:9000]; port 0 picks a free port
    --api-key KEY           Require this API key (missing: close 1008, wrong: close 1007);
                            without it any key or none is accepted
    --pace F                Playback clock speed: 1 = real time [default: 1], 0.1 = 10x faster,
                            0 = unpaced
    --seed N                Seed of the model's choices and voice [default: 0]
    --script FILE           Scenario file (JSON): scripted replies, tool calls, faults
    --tls                   Serve wss:// with a generated certificate for 127.0.0.1 and localhost;
                            the CA certificate is written to a file named on the first line
    --lifetime SECS         Connection lifetime before close 1011 [default: 600]
    --go-away-notice SECS   goAway is sent this long before the end [default: 50]
    --lenient               Ignore unknown fields and enum values instead of closing with 1007
    --session-limit SECS    Session length without contextWindowCompression, audio only [default: 900]
    --video-session-limit SECS
                            Session length once video was sent [default: 120]
    --voice-engine NAME     builtin (default) or espeak (intelligible espeak-ng speech when
                            installed; falls back to builtin)
    --stats-every SECS      Print the counters (sessions, messages, bytes, turn timing) to stderr
                            every SECS seconds

FAULTS (every connection, from its start; a --script adds its own):
    --delay-ms MS           Delay every server message by MS ...
    --jitter-ms MS          ... plus a random 0..=MS
    --split-chunks N        Send each audio chunk as N messages (2-16)
    --merge-chunks N        Send N audio chunks as one message (2-32)
    --oversized-frame-after N
                            After N messages, send one 16 MiB + 1 byte frame
    --slow-reader-after N   After N messages, stop reading the client for good
    --no-setup-complete     Never answer setup
    --slow-pongs-ms MS      Answer pings MS late
    -h, --help              Print this help
    -V, --version           Print the version

The first line on stdout is `listening on ws://127.0.0.1:PORT` (with --tls:
`listening on wss://127.0.0.1:PORT ca=PATH`). Logs go to stderr (RUST_LOG filters them).
";

/// Default address: the port the crate's docs use for `LIVE_NPC_ENDPOINT`.
const DEFAULT_ADDR: &str = "127.0.0.1:9000";

enum Command {
    Run(Box<LiveSimBuilder>, Option<Duration>),
    Help,
    Version,
}

fn secs(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{flag} must be a non-negative number of seconds"))
}

/// The value of `flag`, parsed.
fn value<T>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = parser.value().map_err(|e| format!("{flag}: {e}"))?;
    let text = raw.to_str().ok_or_else(|| format!("{flag}: the value is not valid UTF-8"))?;
    text.parse().map_err(|e| format!("{flag} {text:?}: {e}"))
}

fn parse_args() -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut builder = LiveSim::builder();
    let mut addr: SocketAddr = DEFAULT_ADDR.parse().map_err(|e| format!("{e}"))?;
    let mut parser = lexopt::Parser::from_env();
    let mut scenario: Option<Scenario> = None;
    let mut faults: Vec<FaultAction> = Vec::new();
    let mut after: Vec<(u64, FaultAction)> = Vec::new();
    let (mut delay, mut jitter) = (0u64, 0u64);
    let (mut limit_audio, mut limit_video) = (Duration::from_secs(900), Duration::from_secs(120));
    let mut stats = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => addr = value(&mut parser, "--addr")?,
            Long("api-key") => builder = builder.api_key(Some(value(&mut parser, "--api-key")?)),
            Long("pace") => builder = builder.pace(value(&mut parser, "--pace")?),
            Long("seed") => builder = builder.seed(value(&mut parser, "--seed")?),
            Long("script") => {
                let path: String = value(&mut parser, "--script")?;
                scenario = Some(Scenario::from_file(&path).map_err(|e| e.to_string())?);
            }
            Long("session-limit") => limit_audio = secs(value(&mut parser, "--session-limit")?, "--session-limit")?,
            Long("video-session-limit") => {
                limit_video = secs(value(&mut parser, "--video-session-limit")?, "--video-session-limit")?;
            }
            Long("voice-engine") => {
                let name: String = value(&mut parser, "--voice-engine")?;
                let engine = match name.as_str() {
                    "builtin" => VoiceEngine::Builtin,
                    "espeak" | "espeak-ng" => VoiceEngine::espeak(),
                    other => return Err(format!("--voice-engine {other:?}: expected builtin or espeak")),
                };
                builder = builder.voice_engine(engine);
            }
            Long("stats-every") => {
                let v: f64 = value(&mut parser, "--stats-every")?;
                let d = secs(v, "--stats-every")?;
                if d.is_zero() {
                    return Err("--stats-every must be positive".to_owned());
                }
                stats = Some(d);
            }
            Long("delay-ms") => delay = value(&mut parser, "--delay-ms")?,
            Long("jitter-ms") => jitter = value(&mut parser, "--jitter-ms")?,
            Long("split-chunks") => {
                faults.push(FaultAction::SplitChunks { parts: value(&mut parser, "--split-chunks")? })
            }
            Long("merge-chunks") => {
                faults.push(FaultAction::MergeChunks { count: value(&mut parser, "--merge-chunks")? })
            }
            Long("oversized-frame-after") => {
                after.push((
                    value(&mut parser, "--oversized-frame-after")?,
                    FaultAction::OversizedFrame { bytes: None },
                ));
            }
            Long("slow-reader-after") => {
                after.push((value(&mut parser, "--slow-reader-after")?, FaultAction::SlowReader { pause_ms: None }));
            }
            Long("no-setup-complete") => faults.push(FaultAction::NoSetupComplete),
            Long("slow-pongs-ms") => {
                faults.push(FaultAction::SlowPongs { delay_ms: value(&mut parser, "--slow-pongs-ms")? })
            }
            Long("tls") => builder = builder.tls(true),
            Long("lifetime") => {
                let v = value(&mut parser, "--lifetime")?;
                builder = builder.connection_lifetime(secs(v, "--lifetime")?);
            }
            Long("go-away-notice") => {
                let v = value(&mut parser, "--go-away-notice")?;
                builder = builder.go_away_notice(secs(v, "--go-away-notice")?);
            }
            Long("lenient") => builder = builder.strict(false),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if delay > 0 || jitter > 0 {
        faults.push(FaultAction::Delay { ms: delay, jitter_ms: jitter });
    }
    if !faults.is_empty() || !after.is_empty() {
        let s = scenario.get_or_insert_with(Scenario::default);
        s.faults.extend(faults.into_iter().map(Fault::at_start));
        s.faults
            .extend(after.into_iter().map(|(n, action)| Fault { after_messages: Some(n), ..Fault::at_start(action) }));
        s.validate().map_err(|e| e.to_string())?;
    }
    if let Some(s) = scenario {
        builder = builder.script(s);
    }
    builder = builder.session_limits(limit_audio, limit_video);
    Ok(Command::Run(Box::new(builder.addr(addr)), stats))
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

fn main() -> ExitCode {
    let (builder, stats) = match parse_args() {
        Ok(Command::Run(builder, stats)) => (builder, stats),
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("live-sim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("live-sim: {e}\nTry `live-sim --help`.");
            return ExitCode::from(1);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("live-sim: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let sim = match builder.start().await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("live-sim: {e}");
                return ExitCode::from(1);
            }
        };
        let line = match sim.ca_path() {
            Some(ca) => format!("listening on {} ca={}", sim.base_url(), ca.display()),
            None => format!("listening on {}", sim.base_url()),
        };
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            eprintln!("live-sim: {line}");
        }
        drop(stdout);
        match stats {
            // Serve until killed, printing the counters.
            Some(every) => {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    eprintln!("live-sim: stats: {}", sim.metrics());
                }
            }
            // Serve until killed.
            None => std::future::pending::<ExitCode>().await,
        }
    })
}
