//! Hostile peers: a WebSocket server that answers `setup` and then sends frames a real server
//! never would. The session must report or survive them, never panic.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use live_npc_client::protocol::{GenerationConfig, Modality, Setup};
use live_npc_client::session::{Auth, LiveRuntime, NullSink, SessionConfig, SessionEvent, SessionHandle};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// A server for one connection: waits for `setup`, answers `setupComplete`, sends `frames`,
/// then keeps the connection open (reading) until the client goes.
fn hostile_server(runtime: &tokio::runtime::Runtime, frames: Vec<String>) -> String {
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else { return };
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
        let _setup = ws.next().await;
        if ws.send(Message::text(r#"{"setupComplete":{}}"#)).await.is_err() {
            return;
        }
        for frame in frames {
            if ws.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
        while let Some(Ok(_)) = ws.next().await {}
    });
    format!("ws://{addr}")
}

fn session(base_url: String) -> (LiveRuntime, SessionHandle) {
    let setup = Setup {
        model: "models/gemini-3.8-live".into(),
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec![Modality::Audio]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rt = LiveRuntime::new().expect("runtime");
    let handle = rt.spawn(SessionConfig::new(base_url, Auth::None, setup), NullSink);
    (rt, handle)
}

/// Events until `done` matches (inclusive), or `None` when the wait runs out.
fn until(session: &SessionHandle, mut done: impl FnMut(&SessionEvent) -> bool) -> Option<Vec<SessionEvent>> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < WAIT {
        if let Some(e) = session.recv_timeout(Duration::from_millis(20)) {
            let stop = done(&e);
            seen.push(e);
            if stop {
                return Some(seen);
            }
        }
    }
    None
}

#[test]
fn a_go_away_with_an_enormous_time_left_is_clamped_not_a_panic() {
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let url = hostile_server(&server_rt, vec![r#"{"goAway":{"timeLeft":"18446744073709551615s"}}"#.to_owned()]);
    let (_rt, handle) = session(url);
    let events = until(&handle, |e| matches!(e, SessionEvent::GoAway { .. })).expect("the goAway is reported");
    let Some(SessionEvent::GoAway { time_left }) = events.last() else { unreachable!() };
    assert!(*time_left <= Duration::from_secs(15 * 60), "clamped: {time_left:?}");
    // The task is alive (a panic would have ended it): it still takes commands.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!handle.is_finished(), "the session task survived");
    assert!(handle.say("still there?").is_ok());
}

// ---- The hostile scenarios of `tests/fixtures/hostile/`, each played by the simulator's
// `send_raw` fault (or another fault) against the session client.

mod scenarios {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use live_npc_client::protocol::{FunctionDeclaration, FunctionResponse, Setup, Tool};
    use live_npc_client::session::{
        AudioSink, Auth, ConnectionState, LiveRuntime, SessionCommand, SessionConfig, SessionEvent, SessionHandle,
        SessionMetrics,
    };
    use live_npc_sim::{LiveSim, Scenario};
    use serde_json::json;

    use super::until;

    /// Samples pushed per model turn.
    #[derive(Clone, Default)]
    struct TurnSink(Arc<Mutex<Vec<usize>>>);

    impl AudioSink for TurnSink {
        fn push(&mut self, pcm: &[i16]) {
            if let Ok(mut turns) = self.0.lock() {
                if turns.is_empty() {
                    turns.push(0);
                }
                if let Some(last) = turns.last_mut() {
                    *last += pcm.len();
                }
            }
        }
        fn flush(&mut self) {}
        fn end_of_turn(&mut self) {
            if let Ok(mut turns) = self.0.lock() {
                turns.push(0);
            }
        }
    }

    fn setup() -> Setup<'static> {
        let tool = |name: &str| FunctionDeclaration {
            name: name.into(),
            description: Some(format!("{name}.")),
            parameters_json_schema: Some(json!({"type": "object", "properties": {}})),
            ..Default::default()
        };
        // The session tests' setup, with the tools the hostile scenarios call.
        let mut setup = crate::session::setup("You are Mira, the village blacksmith.");
        setup.tools = Some(vec![Tool::functions(vec![tool("open_gate"), tool("give_item"), tool("check_inventory")])]);
        setup
    }

    fn scenario(name: &str) -> Scenario {
        let path = live_npc_dev::fixtures_dir().join("hostile").join(name);
        Scenario::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn start(
        scenario: Scenario,
        tune: impl FnOnce(&mut SessionConfig),
    ) -> (LiveSim, LiveRuntime, SessionHandle, TurnSink) {
        let sim = LiveSim::builder().pace(0.0).seed(5).script(scenario).start_in_background().expect("simulator");
        let mut cfg = SessionConfig::new(sim.base_url(), Auth::None, setup());
        cfg.backoff_initial = Duration::from_millis(20);
        tune(&mut cfg);
        let sink = TurnSink::default();
        let runtime = LiveRuntime::new().expect("runtime");
        let handle = runtime.spawn(cfg, sink.clone());
        (sim, runtime, handle, sink)
    }

    /// The conversation goes on after the hostile frames: a turn completes with speech.
    fn talks(handle: &SessionHandle) -> Vec<SessionEvent> {
        let mut events = until(handle, |e| matches!(e, SessionEvent::Ready { .. })).expect("ready");
        // Let the hostile frames (sent right after setup) arrive first.
        std::thread::sleep(Duration::from_millis(150));
        handle.say("Hello, my name is Ada.").expect("say");
        events.extend(until(handle, |e| matches!(e, SessionEvent::TurnComplete { .. })).unwrap_or_else(|| {
            panic!("no turn completed after the hostile frames; task finished: {}", handle.is_finished())
        }));
        assert!(!handle.is_finished(), "the session task survived");
        events
    }

    fn decode_errors(handle: &SessionHandle) -> u64 {
        SessionMetrics::get(&handle.metrics().decode_errors)
    }

    type Check = fn(&SessionHandle, &[SessionEvent], &TurnSink);

    /// Every hostile fixture, with what the session client must do with it.
    const CHECKS: &[(&str, Check)] = &[
        ("go_away_time_left_overflow.json", |_, events, _| {
            let left: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    SessionEvent::GoAway { time_left } => Some(*time_left),
                    _ => None,
                })
                .collect();
            assert_eq!(left, [Duration::from_secs(15 * 60)], "clamped to the longest notice");
        }),
        ("go_away_time_left_garbage.json", |handle, events, _| {
            for e in events {
                if let SessionEvent::GoAway { time_left } = e {
                    assert!(*time_left <= Duration::from_secs(15 * 60), "{time_left:?}");
                }
            }
            // `1e400s` and `abc` come first, before any goAway can move the session.
            assert!(decode_errors(handle) >= 2, "garbage durations are decode errors");
        }),
        ("repeated_call_id.json", |_, events, _| {
            // The session delivers both; the plugin answers the second from its cache.
            let ids: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    SessionEvent::ToolCall(calls) => Some(calls[0].id.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(ids, [Some("hostile-dup-1".to_owned()), Some("hostile-dup-1".to_owned())]);
        }),
        ("tool_call_flood.json", |_, events, _| {
            let counts: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    SessionEvent::ToolCall(calls) => Some(calls.len()),
                    _ => None,
                })
                .collect();
            assert_eq!(counts, [100], "delivered whole; the plugin caps what it runs");
        }),
        ("go_away_storm.json", |handle, _, _| {
            assert_eq!(SessionMetrics::get(&handle.metrics().reconnects), 3, "one connection per goAway");
        }),
        ("audio_at_16khz.json", |_, _, sink| {
            let turns = sink.0.lock().map(|t| t.clone()).unwrap_or_default();
            assert_eq!(turns.first(), Some(&2400), "100 ms declared at 16 kHz plays as 100 ms at 24 kHz: {turns:?}");
        }),
        ("audio_rate_invalid.json", |handle, _, sink| {
            let turns = sink.0.lock().map(|t| t.clone()).unwrap_or_default();
            assert_eq!(turns.first(), Some(&0), "no audio at an impossible rate: {turns:?}");
            assert!(decode_errors(handle) >= 4, "each is a counted decode error");
        }),
        ("malformed_frames.json", |handle, _, _| {
            assert!(decode_errors(handle) >= 6, "counted: {}", decode_errors(handle));
        }),
    ];

    #[test]
    fn every_hostile_fixture_has_a_check() {
        let mut files: Vec<String> = std::fs::read_dir(live_npc_dev::fixtures_dir().join("hostile"))
            .expect("tests/fixtures/hostile")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        files.sort();
        let mut checked: Vec<String> = CHECKS.iter().map(|(n, _)| (*n).to_owned()).collect();
        checked.sort();
        assert_eq!(files, checked);
    }

    #[test]
    fn the_session_client_survives_every_hostile_fixture() {
        for (name, check) in CHECKS {
            let (_sim, _rt, handle, sink) = start(scenario(name), |_| {});
            let events = talks(&handle);
            check(&handle, &events, &sink);
            handle.close();
        }
    }

    #[test]
    fn a_go_away_storm_meets_the_backoff_and_the_attempt_limit() {
        let (sim, _rt, handle, _) = start(scenario("go_away_storm.json"), |c| c.max_reconnect_attempts = 2);
        let events = until(&handle, |e| matches!(e, SessionEvent::State(ConnectionState::Failed(_)))).expect("fails");
        let Some(SessionEvent::State(ConnectionState::Failed(e))) = events.last() else { unreachable!() };
        assert!(e.reason.contains("goAway") && e.reason.contains("2 reconnect attempts"), "{e}");
        // Not a tight loop: the first connection plus two attempts.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sim.connections(), 3);
    }

    #[test]
    fn a_tool_response_the_server_never_read_is_sent_again_after_the_drop() {
        let _logs = live_npc_dev::capture_logs();
        // The server stops reading right after its tool call: the answer sits unread, no pong
        // comes, the keepalive ends the connection.
        let s = Scenario::from_json_str(
            r#"{"rules": [{"when": "open the gate", "tool_calls": [{"name": "open_gate", "args": {}}]}],
                "faults": [{"connection": 1, "after_tool_calls": 1, "action": {"slow_reader": {"pause_ms": 1500}}}]}"#,
        )
        .expect("scenario");
        let (_sim, _rt, handle, _) = start(s, |c| {
            c.keepalive_interval = Duration::from_millis(100);
            c.keepalive_timeout = Duration::from_millis(800);
        });
        until(&handle, |e| matches!(e, SessionEvent::Ready { .. })).expect("ready");
        handle.say("Hello, my name is Ada.").expect("say");
        until(&handle, |e| matches!(e, SessionEvent::TurnComplete { .. })).expect("first turn");
        handle.say("Please open the gate.").expect("say");
        let events = until(&handle, |e| matches!(e, SessionEvent::ToolCall(_))).expect("tool call");
        let Some(SessionEvent::ToolCall(calls)) = events.last() else { unreachable!() };
        let response = FunctionResponse::output(calls[0].id.clone(), "open_gate", json!("opened"));
        handle.send(SessionCommand::ToolResponse(vec![response])).expect("respond");
        let events = until(&handle, |e| matches!(e, SessionEvent::Ready { resumed: true })).expect("resumed");
        assert!(events.iter().any(|e| matches!(e, SessionEvent::Error { fatal: false, .. })), "a drop: {events:#?}");
        assert!(SessionMetrics::get(&handle.metrics().replayed) >= 1);
        let events = until(&handle, |e| matches!(e, SessionEvent::TurnComplete { .. })).expect("the model speaks");
        let spoken: String = events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::OutputTranscript { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(!spoken.is_empty(), "the model spoke about the result it received again: {events:#?}");
    }

    #[test]
    fn a_server_that_stops_reading_ends_the_connection_at_the_write_timeout() {
        let s = Scenario::from_json_str(
            r#"{"faults": [{"connection": 1, "after_messages": 2, "action": {"slow_reader": {}}}]}"#,
        )
        .expect("scenario");
        let (_sim, _rt, handle, _) = start(s, |c| {
            c.write_timeout = Duration::from_millis(300);
            // Only the write timeout may end it.
            c.keepalive_timeout = Duration::from_secs(600);
            c.max_reconnect_attempts = 0;
        });
        until(&handle, |e| matches!(e, SessionEvent::Ready { .. })).expect("ready");
        std::thread::sleep(Duration::from_millis(100));
        // Typed turns of 256 KiB until the socket buffers are full.
        let page = "x".repeat(256 * 1024);
        let mut failed = None;
        for _ in 0..400 {
            let _ = handle.say(page.clone());
            if let Some(events) = until_quick(&handle) {
                failed = Some(events);
                break;
            }
        }
        let e = failed.expect("the stalled writer ended the session");
        assert!(e.reason.contains("write stalled"), "{e}");
        assert_eq!(SessionMetrics::get(&handle.metrics().write_stalls), 1);
    }

    /// A fatal error, if one came within a short wait.
    fn until_quick(handle: &SessionHandle) -> Option<live_npc_client::protocol::LiveError> {
        while let Some(e) = handle.recv_timeout(Duration::from_millis(10)) {
            if let SessionEvent::State(ConnectionState::Failed(e)) = e {
                return Some(e);
            }
        }
        None
    }
}
