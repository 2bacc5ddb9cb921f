//! The token server against hostile callers, minting from a real simulator: every refusal
//! (method, `Host`, authentication, rate limit, malformed or slow requests, overload) mints
//! nothing, every answer is `no-store`, and the default token locks the model.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use live_npc_client::protocol::{
    AuthToken, Content, GenerationConfig, Modality, ProactivityConfig, SessionResumptionConfig, Setup,
};
use live_npc_client::session::{Auth, ConnectionState, LiveRuntime, NullSink, Secret, SessionConfig, SessionEvent};
use live_npc_client::token::{
    DEFAULT_TOKEN_MODEL, Refusal, TokenClient, TokenError, TokenPolicy, TokenServer, TokenServerConfig,
};
use live_npc_sim::LiveSim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "sim-key";
/// Generous bounds: behaviour, not a benchmark.
const PROMPT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(20);

fn sim() -> LiveSim {
    LiveSim::builder().pace(0.0).seed(11).api_key(Some(KEY.into())).start_in_background().expect("simulator starts")
}

fn config(sim: &LiveSim) -> TokenServerConfig {
    TokenServerConfig::new(sim.rest_url(), Secret::new(KEY))
}

async fn start(config: TokenServerConfig) -> TokenServer {
    TokenServer::start("127.0.0.1:0".parse().expect("addr"), config).await.expect("token server starts")
}

/// One raw answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn no_store(&self) -> bool {
        self.header("cache-control") == Some("no-store")
    }

    fn token(&self) -> AuthToken {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not a token ({e}): {self:?}"))
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_owned(), body: body.to_owned() }
}

/// Sends `raw` as it is and reads the whole answer.
async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("an answer in time");
    // A reset after a complete answer is fine; what was read is the answer.
    if read.is_err() && out.is_empty() {
        panic!("no answer: {read:?}");
    }
    parse_answer(&out)
}

/// `METHOD PATH` with a `Host` of the server's address and `extra` header lines.
async fn request(server: &TokenServer, method: &str, path: &str, extra: &str) -> Answer {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        server.addr()
    );
    send_raw(server.addr(), raw.as_bytes()).await
}

async fn post(server: &TokenServer, extra: &str) -> Answer {
    request(server, "POST", "/token", extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_post_mints() {
    let sim = sim();
    let server = start(config(&sim)).await;
    for method in ["GET", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"] {
        let a = request(&server, method, "/token", "").await;
        assert_eq!(a.status, 405, "{method}: {a:?}");
        assert_eq!(a.header("allow"), Some("POST"), "{method}: {a:?}");
        assert!(a.no_store(), "{a:?}");
    }
    let a = request(&server, "POST", "/elsewhere", "").await;
    assert_eq!(a.status, 404, "{a:?}");
    assert!(a.no_store());
    assert_eq!(sim.metrics().tokens_minted, 0, "no refusal mints");
    let a = post(&server, "").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.no_store(), "a token is never cached: {a:?}");
    assert!(a.token().name.starts_with("auth_tokens/"));
    let stats = server.stats();
    assert_eq!((stats.bad_method, stats.not_found, stats.minted), (6, 1, 1), "{stats:?}");
    assert_eq!(sim.metrics().tokens_minted, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_hosts_are_served() {
    let sim = sim();
    let server = start(config(&sim).allow_host("tokens.example.com")).await;
    let addr = server.addr();
    let with_host = |host: &str| {
        format!("POST /token HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // DNS rebinding: a web page on evil.example whose name now points here.
    for host in
        ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "tokens.example.com.evil", "[::2]:1", "::1"]
    {
        let a = send_raw(addr, &with_host(host)).await;
        assert_eq!(a.status, 421, "{host}: {a:?}");
        assert!(a.no_store());
    }
    let a = send_raw(addr, b"POST /token HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(a.status, 421, "a missing Host: {a:?}");
    let a = send_raw(addr, b"GET /token HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    assert_eq!(a.status, 421, "the Host is checked before the method: {a:?}");
    let two = b"POST /token HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n";
    let a = send_raw(addr, two).await;
    assert_eq!(a.status, 421, "two Hosts: {a:?}");
    assert_eq!(server.stats().bad_host, 9);
    assert_eq!(sim.metrics().tokens_minted, 0);
    let port = addr.port();
    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "LocalHost".into(), "tokens.example.com".into()]
    {
        let a = send_raw(addr, &with_host(&host)).await;
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    assert_eq!(sim.metrics().tokens_minted, 4);
    server.shutdown().await;
}

/// A hook accepting `Authorization: Bearer ticket-<player>`, refusing `ticket-banned` (403)
/// and everything else (401).
fn tickets(config: TokenServerConfig) -> TokenServerConfig {
    config.authenticate(|head| {
        let ticket = head.header("Authorization").and_then(|v| v.strip_prefix("Bearer ticket-"));
        match ticket {
            None => Err(Refusal::unauthorized("Sign in first.")),
            Some("banned") => Err(Refusal::forbidden("This account may not talk to NPCs.")),
            Some(player) => Ok(player.to_owned()),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_decides_who_gets_a_token() {
    let sim = sim();
    let server = start(tickets(config(&sim))).await;
    let a = post(&server, "").await;
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.body.contains("Sign in first."), "{a:?}");
    assert!(a.no_store());
    let a = post(&server, "Authorization: Basic dXNlcjpwYXNz\r\n").await;
    assert_eq!(a.status, 401, "{a:?}");
    let a = post(&server, "authorization: Bearer ticket-banned\r\n").await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("may not talk to NPCs"), "{a:?}");
    assert_eq!(sim.metrics().tokens_minted, 0, "no refusal mints");
    assert_eq!(server.stats().refused_auth, 3);

    // The game client sends its ticket with every fetch.
    let client = TokenClient::default().with_fetch_header("Authorization", Secret::new("Bearer ticket-ada"));
    let token = client.fetch(&server.url()).await.expect("a token for Ada");
    assert!(token.name.starts_with("auth_tokens/"));
    let refused = TokenClient::default().fetch(&server.url()).await;
    match refused {
        Err(TokenError::Http { status: 401, message }) => assert_eq!(message, "Sign in first."),
        other => panic!("expected a 401, got {other:?}"),
    }
    let stats = server.stats();
    assert_eq!((stats.minted, stats.refused_auth, sim.metrics().tokens_minted), (1, 4, 1), "{stats:?}");

    // A panicking hook answers 500 and the server keeps serving.
    server.shutdown().await;
    let server = start(config(&sim).authenticate(|head| {
        if head.header("x-boom").is_some() {
            panic!("the game's hook has a bug");
        }
        Ok("ok".to_owned())
    }))
    .await;
    assert_eq!(post(&server, "X-Boom: 1\r\n").await.status, 500);
    assert_eq!(post(&server, "").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_rate_limited_with_retry_after() {
    let sim = sim();
    let server = start(tickets(config(&sim)).with_rate_limit(2, Duration::from_secs(60))).await;
    for _ in 0..2 {
        assert_eq!(post(&server, "Authorization: Bearer ticket-ada\r\n").await.status, 200);
    }
    let a = post(&server, "Authorization: Bearer ticket-ada\r\n").await;
    assert_eq!(a.status, 429, "{a:?}");
    assert!(a.no_store());
    let retry: u64 = a.header("retry-after").and_then(|v| v.parse().ok()).expect("a Retry-After in seconds");
    assert!((55..=60).contains(&retry), "{retry}");
    // Another player is not affected.
    assert_eq!(post(&server, "Authorization: Bearer ticket-bram\r\n").await.status, 200);
    let stats = server.stats();
    assert_eq!((stats.minted, stats.rate_limited, stats.callers), (3, 1, 2), "{stats:?}");
    assert_eq!(sim.metrics().tokens_minted, 3, "the limited request minted nothing");
    // The client sees a retryable error.
    let client = TokenClient::default().with_fetch_header("Authorization", Secret::new("Bearer ticket-ada"));
    let e = client.fetch(&server.url()).await.expect_err("rate-limited");
    assert!(matches!(e, TokenError::Http { status: 429, .. }) && e.is_retryable(), "{e:?}");
    server.shutdown().await;

    // Without a hook the caller is the IP address; the default burst is 5.
    let server = start(config(&sim)).await;
    for i in 0..5 {
        assert_eq!(post(&server, "").await.status, 200, "request {i}");
    }
    let a = post(&server, "").await;
    assert_eq!(a.status, 429, "{a:?}");
    assert!(a.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| (1..=10).contains(&s))), "{a:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_map_stays_bounded() {
    let sim = sim();
    let config = config(&sim)
        .authenticate(|head| head.header("x-player").map(str::to_owned).ok_or(Refusal::unauthorized("who?")))
        .with_rate_limit(1, Duration::from_secs(3600))
        .with_max_callers(8);
    let server = start(config).await;
    for i in 0..40 {
        let a = post(&server, &format!("X-Player: flood-{i}-{}\r\n", "x".repeat(i * 100))).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(server.stats().callers <= 8, "{:?}", server.stats());
    }
    // The latest caller is still remembered, and limited.
    let last = format!("X-Player: flood-39-{}\r\n", "x".repeat(3900));
    assert_eq!(post(&server, &last).await.status, 429);
    assert_eq!(server.stats().callers, 8);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_mint_nothing() {
    let sim = sim();
    let server = start(config(&sim)).await;
    let addr = server.addr();
    let host = format!("Host: {addr}\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), 400),
        (format!("POST /token HTTP/1.1\r\n{host}Content-Length: 1000000000\r\n\r\n").into_bytes(), 413),
        (format!("POST /token HTTP/1.1\r\n{host}Content-Length: 5000\r\n\r\n{}", "x".repeat(5000)).into_bytes(), 413),
        (format!("POST /token HTTP/1.1\r\n{host}Content-Length: -1\r\n\r\n").into_bytes(), 400),
        (format!("POST /token HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(), 411),
        (format!("POST /token HTTP/1.1\r\n{host}X-Big: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(), 431),
    ];
    for (raw, status) in cases {
        let a = send_raw(addr, &raw).await;
        assert_eq!(a.status, status, "{:?}: {a:?}", String::from_utf8_lossy(&raw[..raw.len().min(80)]));
        assert!(a.no_store(), "{a:?}");
    }
    assert_eq!(server.stats().bad_request, 6);
    assert_eq!(sim.metrics().tokens_minted, 0);
    // A caller that closes early gets nothing and costs nothing.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"POST /tok").await.expect("write");
    drop(tcp);
    assert_eq!(post(&server, "").await.status, 200, "still serving");
    server.shutdown().await;
}

/// Waits for the first connection outcome of a session: ready, or failed with a message.
fn session_outcome(base_url: String, token: &AuthToken, setup: Setup<'static>) -> Result<(), String> {
    let runtime = LiveRuntime::new().expect("runtime");
    let auth = Auth::Token(Secret::new(token.name.clone()));
    let session = runtime.spawn(SessionConfig::new(base_url, auth, setup), NullSink);
    let start = Instant::now();
    while start.elapsed() < WAIT {
        match session.recv_timeout(Duration::from_millis(50)) {
            Some(SessionEvent::Ready { .. }) => return Ok(()),
            Some(SessionEvent::Error { error, .. }) => return Err(error.to_string()),
            Some(SessionEvent::State(ConnectionState::Failed(error))) => return Err(error.to_string()),
            _ => {}
        }
    }
    Err("no outcome in time".to_owned())
}

fn audio_setup(model: &str, persona: &str) -> Setup<'static> {
    Setup {
        model: model.into(),
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec![Modality::Audio]),
            ..Default::default()
        }),
        system_instruction: Some(Content::user_text(persona)),
        output_audio_transcription: Some(Default::default()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_token_locks_the_model() {
    let sim = sim();
    let server = start(config(&sim)).await;
    let token = TokenClient::default().fetch(&server.url()).await.expect("a token");
    // What the simulator minted (it echoes the request's constraints).
    assert_eq!(token.field_mask.as_deref(), Some("model"));
    let locked = token.bidi_generate_content_setup.as_ref().map(|s| s.model.as_str());
    assert_eq!(locked, Some(DEFAULT_TOKEN_MODEL));
    server.shutdown().await;

    // A client asking for a model the simulator does not have: the lock overrides it.
    let imaginary = audio_setup("models/gemini-9-imaginary", "You are Mira.");
    let base = sim.base_url();
    let outcome = tokio::task::spawn_blocking(move || session_outcome(base, &token, imaginary)).await.expect("join");
    assert_eq!(outcome, Ok(()), "the locked model was used");

    // The same client with an unconstrained token gets the model it asked for, and fails.
    let server = start(config(&sim).with_policy(TokenPolicy::unconstrained())).await;
    let open = TokenClient::default().fetch(&server.url()).await.expect("a token");
    assert_eq!((open.field_mask.as_deref(), open.bidi_generate_content_setup.is_none()), (None, true));
    let imaginary = audio_setup("models/gemini-9-imaginary", "You are Mira.");
    let base = sim.base_url();
    let outcome = tokio::task::spawn_blocking(move || session_outcome(base, &open, imaginary)).await.expect("join");
    let err = outcome.expect_err("the client's model is used");
    assert!(err.contains("gemini-9-imaginary"), "{err}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_games_setup_is_locked() {
    let sim = sim();
    let bram = audio_setup("gemini-2.5-flash-native-audio-preview-12-2025", "You are Bram, the ferryman.");
    let policy = TokenPolicy::default().with_setup(bram).with_uses(0);
    let server = start(config(&sim).with_policy(policy)).await;
    let token = TokenClient::default().fetch(&server.url()).await.expect("a token");
    assert_eq!(
        token.field_mask.as_deref(),
        Some("model,generationConfig,outputAudioTranscription,systemInstruction"),
        "the mask locks exactly what the game set"
    );
    server.shutdown().await;

    // The client asks for another model and another persona; the NPC is Bram.
    let base = sim.base_url();
    let heard = tokio::task::spawn_blocking(move || {
        let runtime = LiveRuntime::new().expect("runtime");
        let auth = Auth::Token(Secret::new(token.name.clone()));
        let setup = audio_setup("models/gemini-9-imaginary", "You are Mira, the blacksmith.");
        let session = runtime.spawn(SessionConfig::new(base, auth, setup), NullSink);
        let start = Instant::now();
        let mut said = false;
        let mut heard = String::new();
        while start.elapsed() < WAIT {
            match session.recv_timeout(Duration::from_millis(50)) {
                Some(SessionEvent::Ready { .. }) if !said => {
                    session.say("Who are you?").expect("say");
                    said = true;
                }
                Some(SessionEvent::OutputTranscript { text, .. }) => heard.push_str(&text),
                Some(SessionEvent::TurnComplete { .. }) => break,
                Some(SessionEvent::Error { error, fatal: true }) => panic!("the session failed: {error}"),
                _ => {}
            }
        }
        heard
    })
    .await
    .expect("join");
    assert!(heard.contains("Bram") && !heard.contains("Mira"), "{heard:?}");

    // Every field a setup can set is a mask path the simulator accepts.
    let everything = Setup {
        model: "models/gemini-3.8-live".into(),
        generation_config: Some(GenerationConfig::default()),
        system_instruction: Some(Content::user_text("x")),
        tools: Some(Vec::new()),
        realtime_input_config: Some(Default::default()),
        input_audio_transcription: Some(Default::default()),
        output_audio_transcription: Some(Default::default()),
        session_resumption: Some(SessionResumptionConfig::default()),
        context_window_compression: Some(Default::default()),
        proactivity: Some(ProactivityConfig::default()),
        history_config: Some(Default::default()),
        safety_settings: Some(Vec::new()),
        labels: Some(Default::default()),
    };
    let policy = TokenPolicy::default().with_setup(everything);
    let mask = policy.field_mask().unwrap_or_default();
    assert!(!mask.contains("sessionResumption"), "the resumption handle stays the client's: {mask}");
    let server = start(config(&sim).with_policy(policy)).await;
    let token = TokenClient::default().fetch(&server.url()).await.expect("the simulator accepts the mask");
    assert_eq!(token.field_mask, Some(mask));
    server.shutdown().await;
}

/// A connection sending a request head one byte per second, for as long as the server listens.
fn slow_loris(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut tcp) = TcpStream::connect(addr).await else { return };
        for b in b"POST /token HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if tcp.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_block_neither_callers_nor_shutdown() {
    let sim = sim();
    let server = start(config(&sim)).await;
    let slow: Vec<_> = (0..64).map(|_| slow_loris(server.addr())).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let asked = Instant::now();
    let token = tokio::time::timeout(PROMPT, TokenClient::default().fetch(&server.url())).await;
    assert!(matches!(token, Ok(Ok(_))), "{token:?}");
    assert!(asked.elapsed() < PROMPT, "served in {:?}", asked.elapsed());

    let stopping = Instant::now();
    tokio::time::timeout(PROMPT, server.shutdown()).await.expect("shutdown does not wait for slow callers");
    assert!(stopping.elapsed() < PROMPT, "stopped in {:?}", stopping.elapsed());
    // Their connections are closed: every writer stops soon.
    for task in slow {
        tokio::time::timeout(PROMPT, task).await.expect("the slow connection was closed").expect("join");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_callers_get_503_at_once() {
    let sim = sim();
    let config = config(&sim).with_max_concurrent(1).with_request_timeout(Duration::from_secs(1));
    let server = start(config).await;
    let mut slow = TcpStream::connect(server.addr()).await.expect("connect");
    slow.write_all(b"POST /token HTTP/1.1\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The only slot is taken: a refusal at once, not a wait.
    let asked = Instant::now();
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PROMPT, tcp.read_to_end(&mut out)).await.expect("an answer in time");
    let a = parse_answer(&out);
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.no_store() && a.header("retry-after").is_some(), "{a:?}");
    assert!(asked.elapsed() < Duration::from_millis(900), "before the slow request's deadline");
    assert_eq!(server.stats().overloaded, 1);

    // The slow request runs out of time (408), which frees the slot.
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PROMPT, slow.read_to_end(&mut out)).await.expect("the deadline closes it");
    let a = parse_answer(&out);
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.no_store());
    assert_eq!(server.stats().timed_out, 1);
    assert_eq!(post(&server, "").await.status, 200);
    server.shutdown().await;
}
