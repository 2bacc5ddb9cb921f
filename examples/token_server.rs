//! A tiny token server for a game backend: it holds the API key and hands each game client an
//! ephemeral token (`POST /token` → `{"name": "auth_tokens/...", ...}`), minted from the real
//! Live API or from a local `live-sim`. Game clients use it with
//! `LiveBackend::TokenServer { url: "http://HOST:PORT/token", .. }` and never see the key.
//!
//! ```sh
//! # Against a local simulator (its key is whatever it was started with):
//! cargo run -p live_npc_sim --bin live-sim -- --addr 127.0.0.1:9000 --api-key dev-key &
//! cargo run --example token_server -- --endpoint http://127.0.0.1:9000 --api-key dev-key
//! curl -s -X POST http://127.0.0.1:8787/token
//! # Against the real service (key from GEMINI_API_KEY):
//! GEMINI_API_KEY=... cargo run --example token_server
//! ```
//!
//! The first stdout line is `listening on http://ADDR/token`.
//!
//! Only `POST /token` mints; requests need a `Host` of a loopback name, the bound address or an
//! `--allow-host` name (421 otherwise, against DNS rebinding); each caller gets `--burst`
//! tokens, then one per `--refill-secs` (429 with `Retry-After`); every answer is
//! `Cache-Control: no-store`; tokens lock the model (`--model`, default the crate's). See
//! `docs/TOKENS.md`.
//!
//! This example has **no player authentication**: the caller is the IP address. A shipped game
//! installs a hook that checks the player's session ticket, for instance:
//!
//! ```ignore
//! let config = config.authenticate(|head| {
//!     let ticket = head.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
//!     match ticket.map(verify_session_ticket) {
//!         Some(Ok(player_id)) => Ok(player_id),
//!         Some(Err(_)) => Err(Refusal::unauthorized("Your session has expired; sign in again.")),
//!         None => Err(Refusal::unauthorized("Sign in first.")),
//!     }
//! });
//! ```
//!
//! and serves behind HTTPS (a TLS-terminating reverse proxy).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bevy_live_npc::session::{ENV_API_KEY, Secret};
use bevy_live_npc::token::{DEFAULT_BURST, DEFAULT_REFILL, GEMINI_REST_URL, TokenServer, TokenServerConfig};

const HELP: &str = "\
token_server: mints ephemeral Live API tokens for game clients

USAGE:
    token_server [OPTIONS]

OPTIONS:
    --addr ADDR             Listen address [default: 127.0.0.1:8787]
    --endpoint URL          Live API REST base [default: https://generativelanguage.googleapis.com];
                            a live-sim: http://127.0.0.1:9000
    --api-key KEY           The API key [default: $GEMINI_API_KEY]
    --uses N                Sessions per token, 0 = unlimited [default: 1]
    --expire-secs S         Token lifetime [default: the service's, 30 min]
    --new-session-secs S    Time to start a session [default: the service's, 60 s]
    --model ID              Lock tokens to this model (fieldMask \"model\") [default: gemini-3.8-live]
    --allow-host NAME       Also accept this Host (the public name), repeatable
                            [always: localhost, 127.0.0.1, [::1], the bound address]
    --burst N               Tokens a caller may get at once [default: 5]
    --refill-secs S         One more token per caller every S seconds, 0 = no limit [default: 10]
    -h, --help              Print this help
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token_server: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let raw = parser.value().map_err(|e| format!("{flag}: {e}"))?;
    let text = raw.to_str().ok_or_else(|| format!("{flag}: not UTF-8"))?;
    text.parse().map_err(|e| format!("{flag} {text:?}: {e}"))
}

fn run() -> Result<(), String> {
    use lexopt::prelude::*;
    let mut addr: SocketAddr = ([127, 0, 0, 1], 8787).into();
    let mut endpoint = GEMINI_REST_URL.to_owned();
    let mut key = std::env::var(ENV_API_KEY).ok();
    let mut uses = 1;
    let mut expire = None;
    let mut new_session = None;
    let mut model: Option<String> = None;
    let mut hosts: Vec<String> = Vec::new();
    let mut burst = DEFAULT_BURST;
    let mut refill = DEFAULT_REFILL;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => addr = parse(&mut parser, "--addr")?,
            Long("endpoint") => endpoint = parse(&mut parser, "--endpoint")?,
            Long("api-key") => key = Some(parse(&mut parser, "--api-key")?),
            Long("uses") => uses = parse(&mut parser, "--uses")?,
            Long("expire-secs") => expire = Some(Duration::from_secs(parse(&mut parser, "--expire-secs")?)),
            Long("new-session-secs") => {
                new_session = Some(Duration::from_secs(parse(&mut parser, "--new-session-secs")?));
            }
            Long("model") => model = Some(parse(&mut parser, "--model")?),
            Long("allow-host") => hosts.push(parse(&mut parser, "--allow-host")?),
            Long("burst") => burst = parse(&mut parser, "--burst")?,
            Long("refill-secs") => refill = Duration::from_secs(parse(&mut parser, "--refill-secs")?),
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let key = key.filter(|k| !k.trim().is_empty()).ok_or("no API key: set GEMINI_API_KEY or pass --api-key")?;
    let mut config = TokenServerConfig::new(endpoint, Secret::new(key)).with_rate_limit(burst, refill);
    for host in &hosts {
        config = config.allow_host(host);
    }
    config.policy.uses = uses;
    config.policy.expire_after = expire;
    config.policy.new_session_after = new_session;
    if let Some(m) = model {
        config.policy = config.policy.with_model(&m);
    }
    eprintln!("token_server: no player authentication (callers are IP addresses): for development only");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let server = TokenServer::start(addr, config).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.url()).and_then(|()| out.flush());
        drop(out);
        std::future::pending::<()>().await;
        Ok(())
    })
}
