//! Simulator depth: session-length limits, the sliding context window, proactive audio, the
//! newer faults (each observed by a raw client), metrics and the espeak fallback. Limits are
//! scaled down; timing checks only assert lower bounds (something came *no earlier* than a
//! delay), never that nothing happened.

use std::time::{Duration, Instant};

use live_npc_sim::{Fault, FaultAction, VoiceEngine};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::*;

fn faults(list: Vec<Fault>) -> Scenario {
    Scenario { rules: Vec::new(), faults: list }
}

fn after(n: u64, action: FaultAction) -> Fault {
    Fault { after_messages: Some(n), ..Fault::at_start(action) }
}

// ---------------------------------------------------------------- session limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_session_limit_ends_the_session() {
    let limits = base().session_limits(Duration::from_millis(300), Duration::from_secs(60));
    let sim = start(limits).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let handle = c.setup(json!({"sessionResumption": {}})).await.expect("handle");
    // No goAway: the session is over at its limit.
    assert_eq!(c.closed().await, (1011, reasons::DEADLINE_EXPIRED.to_owned()));
    // Its handles are gone with it.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({"sessionResumption": {"handle": handle}}))).await;
    assert_eq!(c.closed().await, (1008, reasons::SESSION_NOT_FOUND.to_owned()));
    assert_eq!(sim.metrics().session_limits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_shortens_the_session_limit() {
    let limits = base().session_limits(Duration::from_secs(600), Duration::from_millis(300));
    let sim = start(limits).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    let frame = json!({"realtimeInput": {"video": {"data": "/9j/4AAQ", "mimeType": "image/jpeg"}}});
    let sent = Instant::now();
    c.send(&frame).await;
    assert_eq!(c.closed().await, (1011, reasons::DEADLINE_EXPIRED.to_owned()));
    assert!(sent.elapsed() < Duration::from_secs(60), "the 2-minute (scaled) cap, not the 15-minute one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_lifts_the_limit_and_slides_the_window() {
    let limits = base().session_limits(Duration::from_millis(200), Duration::from_millis(200));
    let sim = start(limits).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let compression = json!({"triggerTokens": 40, "slidingWindow": {"targetTokens": 20}});
    c.setup(json!({"contextWindowCompression": compression})).await;
    c.send(&text_turn("My name is Ada.")).await;
    let first = c.turn().await;
    assert!(first.transcript().contains("Ada"));
    // Past the (scaled) limit: with compression the session goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(&text_turn("What is my name?")).await;
    let turn = c.turn().await;
    // The reply (~3 s of audio = ~75 tokens) pushed the context past 40: the window slid to
    // 20 tokens, and the turn that stated the name went with it.
    assert!(turn.transcript().contains("haven't told me"), "{}", turn.transcript());
    let usage = turn.0.last().and_then(|m| m.usage_metadata.clone()).expect("usage");
    assert!(usage.prompt_token_count.unwrap_or(0) < 60, "{usage:?}");

    // Without compression the fact is remembered (control; default limits).
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("My name is Ada.")).await;
    c.turn().await;
    c.send(&text_turn("What is my name?")).await;
    assert!(c.turn().await.transcript().contains("Ada"));
}

// ---------------------------------------------------------------- proactive audio

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_audio_answers_only_what_is_addressed() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({"proactivity": {"proactiveAudio": true}, "sessionResumption": {}})).await;
    // Overheard: no name, no question, no greeting. The turn still ends, silently.
    c.send(&text_turn("The mill wheel broke again. My name is Ada.")).await;
    let silent = c.until("resumable").await;
    assert_eq!(silent.shape(), s(&["in", "turnComplete+usage", "resumable"]));
    // Named, asked, greeted: answered.
    for addressed in ["Mira, the mill wheel broke.", "where is the mill", "Hello there."] {
        c.send(&text_turn(addressed)).await;
        let turn = c.until("resumable").await;
        assert!(turn.shape().contains(&"speech".to_owned()), "{addressed}: {:?}", turn.shape());
    }
    // What was overheard was still heard.
    c.send(&text_turn("What is my name?")).await;
    assert!(c.turn().await.transcript().contains("Ada"));
    assert_eq!(sim.metrics().turns_silent, 1);
}

// ---------------------------------------------------------------- faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_and_jitter() {
    let delay = FaultAction::Delay { ms: 150, jitter_ms: 50 };
    let sim = start(base().script(faults(vec![Fault::at_start(delay)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let sent = Instant::now();
    c.send(&setup_value(json!({}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    assert!(sent.elapsed() >= Duration::from_millis(150));
    // Order is kept: the turn has its usual shape.
    c.send(&text_turn("Who are you?")).await;
    assert_eq!(c.turn().await.shape(), reply_shape());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_split_and_merge_audio_chunks() {
    let split = FaultAction::SplitChunks { parts: 2 };
    let sim = start(base().script(faults(vec![Fault::at_start(split)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let chunks = c.turn().await.chunks();
    assert!(chunks.len() > 10);
    assert!(chunks[..chunks.len() - 2].iter().all(|&n| n == 480), "{chunks:?}");

    // Merged audio is flushed before any other message; without transcripts in between, every
    // message but the last carries four chunks.
    let merge = FaultAction::MergeChunks { count: 4 };
    let sim = start(base().script(faults(vec![Fault::at_start(merge)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&json!({"setup": {"model": MODEL}})).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    let chunks = turn.chunks();
    assert!(chunks.len() > 2);
    assert!(chunks[..chunks.len() - 1].iter().all(|&n| n == 3840), "{chunks:?}");
    assert_eq!(turn.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_oversized_frame() {
    let big = FaultAction::OversizedFrame { bytes: Some(2 << 20) };
    let sim = start(base().script(faults(vec![after(1, big)]))).await;
    // A client with the default limits reads it: valid JSON of exactly that size.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    match c.raw().await {
        Some(Ok(Message::Binary(b))) => {
            assert_eq!(b.len(), 2 << 20);
            let m = ServerMessage::from_slice(&b).expect("valid JSON");
            assert!(m.server_content().is_some_and(|c| c.model_turn.is_some()));
        }
        other => panic!("expected the big frame, got {other:?}"),
    }
    // A client with a 1 MiB limit fails on it.
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20)).max_frame_size(Some(1 << 20));
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(sim.url("v1beta"), Some(config), false).await.expect("connect");
    let mut c = Client { ws };
    c.send(&setup_value(json!({}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    match c.raw().await {
        Some(Err(WsError::Capacity(_))) => {}
        other => panic!("expected a capacity error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_reader() {
    let pause = FaultAction::SlowReader { pause_ms: Some(400) };
    let sim = start(base().script(faults(vec![after(1, pause)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let before = Instant::now();
    c.send(&setup_value(json!({}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    // The server reads nothing for 400 ms after setupComplete: the turn is answered no earlier.
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert!(before.elapsed() >= Duration::from_millis(400));
    assert_eq!(turn.shape(), reply_shape());

    // For good: pings and turns go unanswered, yet the server still talks: its goAway and the
    // deadline close come, and nothing else before them.
    let stop = FaultAction::SlowReader { pause_ms: None };
    let builder = base()
        .connection_lifetime(Duration::from_millis(800))
        .go_away_notice(Duration::from_millis(400))
        .script(faults(vec![after(1, stop)]));
    let sim = start(builder).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    c.ws.send(Message::Ping(b"hi".to_vec().into())).await.expect("ping");
    c.send(&text_turn("Who are you?")).await;
    let mut seen = Vec::new();
    loop {
        match c.raw().await {
            Some(Ok(Message::Binary(b))) => {
                seen.push(token(&ServerMessage::from_slice(&b).expect("JSON")));
            }
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1011);
                break;
            }
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    }
    assert_eq!(seen, ["goAway"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_no_setup_complete() {
    let sim = start(base().script(faults(vec![Fault::at_start(FaultAction::NoSetupComplete)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({}))).await;
    c.send(&text_turn("Hello?")).await;
    // The server is alive (it answers a ping), but setup was swallowed: the pong comes first.
    c.ws.send(Message::Ping(b"alive".to_vec().into())).await.expect("ping");
    match c.raw().await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"alive"),
        other => panic!("expected only a pong, got {other:?}"),
    }
    // The session client gives up after its setup timeout.
    let mut cfg = live_npc_client::session::SessionConfig::new(
        sim.base_url(),
        live_npc_client::session::Auth::None,
        Setup { model: MODEL.into(), ..Default::default() },
    );
    cfg.setup_timeout = Duration::from_millis(300);
    cfg.max_reconnect_attempts = 0;
    let rt = live_npc_client::session::LiveRuntime::new().expect("runtime");
    let session = rt.spawn(cfg, live_npc_client::session::NullSink);
    let failed = tokio::task::spawn_blocking(move || {
        use live_npc_client::session::SessionEvent;
        let mut error = None;
        while let Some(e) = session.recv_timeout(GUARD) {
            if let SessionEvent::Error { error: e, fatal: true } = e {
                error = Some(e);
                break;
            }
        }
        drop(rt);
        error
    })
    .await
    .expect("join");
    let e = failed.expect("a fatal error");
    assert!(e.reason.contains("setupComplete"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_pongs() {
    let slow = FaultAction::SlowPongs { delay_ms: 1500 };
    let sim = start(base().script(faults(vec![Fault::at_start(slow)]))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    let pinged = Instant::now();
    c.ws.send(Message::Ping(b"p".to_vec().into())).await.expect("ping");
    c.send(&text_turn("Who are you?")).await;
    // The turn is answered while the pong is held back.
    let mut answered_first = false;
    loop {
        match c.raw().await {
            Some(Ok(Message::Pong(_))) => break,
            Some(Ok(Message::Binary(_))) => answered_first = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pinged.elapsed() >= Duration::from_millis(1500));
    assert!(answered_first, "other frames are not delayed");
}

// ---------------------------------------------------------------- metrics, voices

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_messages_and_turns() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    let sent = 1 + turn.0.len() as u64;
    // The counter moves right after each send returns: wait for it (a guard, not a timing check).
    let start = Instant::now();
    while sim.metrics().messages_out < sent && start.elapsed() < GUARD {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = sim.metrics();
    assert_eq!((m.connections_total, m.connections_open, m.sessions_started, m.sessions_active), (1, 1, 1, 1));
    assert_eq!(m.messages_in, 2);
    assert_eq!(m.messages_out, sent);
    assert!(m.bytes_out > m.bytes_in && m.bytes_in > 0);
    assert_eq!((m.turns, m.first_audio.count, m.turn_time.count), (1, 1, 1));
    assert!(m.to_string().contains("sessions 1 active"), "{m}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn espeak_engine_falls_back_when_missing() {
    let engine = VoiceEngine::Espeak { program: "/nonexistent/espeak-ng".into() };
    let sim = start(base().voice_engine(engine)).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    // The built-in voice, exactly: same as a simulator without the option.
    let plain = start(base()).await;
    let mut p = Client::connect(&plain.url("v1beta")).await;
    p.setup(json!({})).await;
    p.send(&text_turn("Who are you?")).await;
    assert_eq!(turn.audio(), p.turn().await.audio());
}

#[test]
fn live_sim_prints_stats_and_takes_fault_flags() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let exe = env!("CARGO_BIN_EXE_live-sim");
    let bad = Command::new(exe).args(["--split-chunks", "1"]).output().expect("run");
    assert_eq!(bad.status.code(), Some(1), "out-of-range fault flags are refused");
    let bad = Command::new(exe).args(["--voice-engine", "nope"]).output().expect("run");
    assert_eq!(bad.status.code(), Some(1));
    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--pace", "0", "--stats-every", "0.1", "--merge-chunks", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let line = BufReader::new(stderr).lines().map_while(Result::ok).find(|l| l.contains("stats:"));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a stats line");
    assert!(line.contains("sessions 0 active") && line.contains("messages in 0"), "{line}");
}
