//! The session client against the in-process simulator: real sockets, fast pacing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use live_npc_client::protocol::*;
use live_npc_client::session::*;
use live_npc_sim::{LiveSim, Scenario};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// What the audio sink saw.
#[derive(Default, Debug)]
struct SinkLog {
    samples: usize,
    flushes: usize,
    ends: usize,
}

#[derive(Clone, Default)]
struct CaptureSink(Arc<Mutex<SinkLog>>);

impl AudioSink for CaptureSink {
    fn push(&mut self, pcm: &[i16]) {
        if let Ok(mut l) = self.0.lock() {
            l.samples += pcm.len();
        }
    }
    fn flush(&mut self) {
        if let Ok(mut l) = self.0.lock() {
            l.flushes += 1;
        }
    }
    fn end_of_turn(&mut self) {
        if let Ok(mut l) = self.0.lock() {
            l.ends += 1;
        }
    }
}

fn sim(builder: live_npc_sim::LiveSimBuilder) -> LiveSim {
    builder.start_in_background().expect("simulator starts")
}

fn fast_sim() -> LiveSim {
    sim(LiveSim::builder().pace(0.0).seed(3))
}

fn gate_tool() -> Tool {
    Tool::functions(vec![FunctionDeclaration {
        name: "open_gate".into(),
        description: Some("Opens a gate.".into()),
        parameters_json_schema: Some(
            json!({"type": "object", "properties": {"gate": {"type": "string"}}, "required": ["gate"]}),
        ),
        ..Default::default()
    }])
}

pub(crate) fn setup(persona: &str) -> Setup<'static> {
    Setup {
        model: "models/gemini-2.5-flash-native-audio-preview-12-2025".into(),
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec![Modality::Audio]),
            speech_config: Some(SpeechConfig::voice("Kore")),
            ..Default::default()
        }),
        system_instruction: Some(Content::user_text(persona)),
        tools: Some(vec![gate_tool()]),
        input_audio_transcription: Some(Default::default()),
        output_audio_transcription: Some(Default::default()),
        ..Default::default()
    }
}

fn config(sim: &LiveSim) -> SessionConfig {
    let mut c = SessionConfig::new(sim.base_url(), Auth::None, setup("You are Mira, the village blacksmith."));
    c.backoff_initial = Duration::from_millis(50);
    c
}

/// Collects events until `done` says stop (inclusive) or the wait runs out.
fn until(session: &SessionHandle, mut done: impl FnMut(&SessionEvent) -> bool) -> Vec<SessionEvent> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < WAIT {
        if let Some(e) = session.recv_timeout(Duration::from_millis(50)) {
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
    }
    let logs = live_npc_dev::capture_logs().lock().map(|l| l.clone()).unwrap_or_default();
    let tail: String = logs.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    panic!("timed out; events so far: {seen:#?}\nlast log lines:\n{tail}");
}

fn ready(session: &SessionHandle) -> bool {
    let events = until(session, |e| matches!(e, SessionEvent::Ready { .. } | SessionEvent::Error { fatal: true, .. }));
    matches!(events.last(), Some(SessionEvent::Ready { .. }))
}

fn turn(session: &SessionHandle) -> Vec<SessionEvent> {
    until(session, |e| matches!(e, SessionEvent::TurnComplete { .. }))
}

fn transcript(events: &[SessionEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::OutputTranscript { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn position(events: &[SessionEvent], pred: impl Fn(&SessionEvent) -> bool) -> usize {
    events.iter().position(pred).unwrap_or_else(|| panic!("event missing in {events:#?}"))
}

#[test]
fn handshake_and_text_turn_over_ws() {
    let sim = fast_sim();
    let runtime = LiveRuntime::new().unwrap();
    let sink = CaptureSink::default();
    let session = runtime.spawn(config(&sim), sink.clone());
    let first = until(&session, |e| matches!(e, SessionEvent::Ready { .. }));
    assert_eq!(first[0], SessionEvent::State(ConnectionState::Connecting));
    assert!(first.contains(&SessionEvent::State(ConnectionState::Open)));
    assert_eq!(first.last(), Some(&SessionEvent::Ready { resumed: false }));

    session.say("Hello there! Who are you?").unwrap();
    let events = turn(&session);
    let started = position(&events, |e| *e == SessionEvent::ModelTurnStarted);
    let generated = position(&events, |e| *e == SessionEvent::GenerationComplete);
    let done = events.len() - 1;
    assert!(started < generated && generated < done, "{events:#?}");
    let text = transcript(&events);
    assert!(text.contains("Mira"), "the persona speaks: {text}");
    let log = sink.0.lock().unwrap();
    assert!(log.samples > 24_000, "at least a second of voice, got {} samples", log.samples);
    assert_eq!((log.flushes, log.ends), (0, 1));
    drop(log);
    let m = session.metrics();
    assert!(SessionMetrics::get(&m.bytes_received) > 0 && SessionMetrics::get(&m.bytes_sent) > 0);
    assert!(m.last_reply_latency().is_some());
    assert!(SessionMetrics::get(&m.total_tokens) > 0, "usage is summed");
}

#[test]
fn handshake_over_wss_with_the_simulator_ca() {
    let sim = sim(LiveSim::builder().pace(0.0).tls(true));
    assert!(sim.base_url().starts_with("wss://127.0.0.1:"));
    let runtime = LiveRuntime::new().unwrap();
    let mut c = config(&sim);
    c.extra_root_pem = vec![sim.ca_pem().expect("a CA").as_bytes().to_vec()];
    let session = runtime.spawn(c, NullSink);
    assert!(ready(&session));
    session.say("Hello").unwrap();
    assert!(!transcript(&turn(&session)).is_empty());

    // Without the CA the certificate is not trusted: a fatal error, no retries.
    let untrusted = runtime.spawn(config(&sim), NullSink);
    let events = until(&untrusted, |e| matches!(e, SessionEvent::Error { fatal: true, .. }));
    let SessionEvent::Error { error, .. } = events.last().unwrap() else { unreachable!() };
    assert!(error.reason.contains("TLS"), "{error}");
}

#[test]
fn audio_turn_from_the_microphone() {
    let sim = fast_sim();
    let runtime = LiveRuntime::new().unwrap();
    let session = runtime.spawn(config(&sim), NullSink);
    assert!(ready(&session));
    let speech = live_npc_dev::wav("player-hello-16k.wav");
    let mic = session.mic();
    let silence = vec![0i16; 16_000 * 2];
    for chunk in speech.chunks(320).chain(silence.chunks(320)) {
        mic.push(chunk);
        // Keep the queue from overflowing: the capture side produces in real time.
        while mic.queued() > 32 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let events = turn(&session);
    let heard = position(&events, |e| matches!(e, SessionEvent::InputTranscript { .. }));
    let started = position(&events, |e| *e == SessionEvent::ModelTurnStarted);
    assert!(heard < started, "{events:#?}");
    assert_eq!(SessionMetrics::get(&session.metrics().mic_chunks_dropped), 0);
    assert!(SessionMetrics::get(&session.metrics().audio_chunks_sent) >= (speech.len() / 320) as u64);
}

#[test]
fn tool_call_response_and_reply() {
    let sim = fast_sim();
    let runtime = LiveRuntime::new().unwrap();
    let session = runtime.spawn(config(&sim), NullSink);
    assert!(ready(&session));
    session.say("Could you please open the north gate?").unwrap();
    let events = until(&session, |e| matches!(e, SessionEvent::ToolCall(_)));
    let Some(SessionEvent::ToolCall(calls)) = events.last() else { unreachable!() };
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "open_gate");
    assert_eq!(calls[0].args.as_ref().unwrap()["gate"], "north");
    let response = FunctionResponse::output(calls[0].id.clone(), "open_gate", json!("the north gate is open"));
    session.send(SessionCommand::ToolResponse(vec![response])).unwrap();
    let reply = transcript(&turn(&session));
    assert!(!reply.is_empty());
}

#[test]
fn barge_in_flushes_and_reports_in_order() {
    // Slow enough that the model is still speaking when the player cuts in.
    let sim = sim(LiveSim::builder().pace(0.25).seed(3));
    let runtime = LiveRuntime::new().unwrap();
    let sink = CaptureSink::default();
    let session = runtime.spawn(config(&sim), sink.clone());
    assert!(ready(&session));
    session.say("Tell me about your forge and everything you sell here.").unwrap();
    until(&session, |e| matches!(e, SessionEvent::OutputTranscript { .. }));
    session.say("Wait, stop, I have a question.").unwrap();
    let events = turn(&session);
    let interrupted = position(&events, |e| *e == SessionEvent::Interrupted);
    assert_eq!(interrupted, events.len() - 2, "interrupted, then turnComplete: {events:#?}");
    assert!(!events.contains(&SessionEvent::GenerationComplete), "{events:#?}");
    assert_eq!(sink.0.lock().unwrap().flushes, 1);
    // The new turn is answered.
    assert!(!transcript(&turn(&session)).is_empty());
}

/// A session on `sim` in which the player has said their name is Ada.
fn told_my_name(sim: &LiveSim) -> (LiveRuntime, SessionHandle) {
    let runtime = LiveRuntime::new().unwrap();
    let session = runtime.spawn(config(sim), NullSink);
    assert!(ready(&session));
    session.say("Hello, my name is Ada.").unwrap();
    turn(&session);
    (runtime, session)
}

fn remembers_ada(session: &SessionHandle) {
    session.say("What is my name?").unwrap();
    let reply = transcript(&turn(session));
    assert!(reply.contains("Ada"), "the fact survived: {reply}");
}

#[test]
fn go_away_switches_connections_and_keeps_the_conversation() {
    let sim = sim(LiveSim::builder()
        .pace(0.0)
        .connection_lifetime(Duration::from_millis(2500))
        .go_away_notice(Duration::from_millis(2000)));
    let (_runtime, session) = told_my_name(&sim);
    let events = until(&session, |e| matches!(e, SessionEvent::Ready { .. }));
    assert!(events.iter().any(|e| matches!(e, SessionEvent::GoAway { .. })), "{events:#?}");
    assert_eq!(events.last(), Some(&SessionEvent::Ready { resumed: true }));
    assert!(!events.iter().any(|e| matches!(e, SessionEvent::Error { .. } | SessionEvent::ContextLost)), "{events:#?}");
    remembers_ada(&session);
    assert_eq!(SessionMetrics::get(&session.metrics().reconnects), 1);
    assert_eq!(sim.connections(), 2);
}

#[test]
fn drop_mid_turn_resumes() {
    let scenario =
        Scenario::from_json_str(r#"{"faults": [{"connection": 1, "turn": 2, "after_chunks": 2, "action": "drop"}]}"#)
            .unwrap();
    let sim = sim(LiveSim::builder().pace(0.0).script(scenario));
    let (_runtime, session) = told_my_name(&sim);
    session.say("Tell me about the village.").unwrap();
    let events = until(&session, |e| matches!(e, SessionEvent::Ready { .. }));
    let error = events.iter().find_map(|e| match e {
        SessionEvent::Error { error, fatal: false } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error.map(|e| e.code), Some(CloseCode::Abnormal), "{events:#?}");
    assert_eq!(events.last(), Some(&SessionEvent::Ready { resumed: true }));
    remembers_ada(&session);
}

#[test]
fn drop_mid_tool_call_delivers_the_result_after_resuming() {
    let _logs = live_npc_dev::capture_logs();
    // The drop comes right after the tool call of the second turn.
    let scenario = Scenario::from_json_str(
        r#"{"rules": [{"when": "open the gate", "tool_calls": [{"name": "open_gate", "args": {"gate": "north"}}]}],
            "faults": [{"connection": 1, "after_tool_calls": 1, "action": "drop"}]}"#,
    )
    .unwrap();
    let sim = sim(LiveSim::builder().pace(0.0).script(scenario));
    let (_runtime, session) = told_my_name(&sim);
    session.say("Please open the gate.").unwrap();
    let events = until(&session, |e| matches!(e, SessionEvent::ToolCall(_)));
    let Some(SessionEvent::ToolCall(calls)) = events.last() else { unreachable!() };
    let id = calls[0].id.clone();
    // Answer while the connection is down: the response is held and delivered after resuming.
    let events = until(&session, |e| matches!(e, SessionEvent::State(ConnectionState::Reconnecting { .. })));
    assert!(!events.is_empty());
    session
        .send(SessionCommand::ToolResponse(vec![FunctionResponse::output(id, "open_gate", json!("opened"))]))
        .unwrap();
    let events = until(&session, |e| matches!(e, SessionEvent::Ready { .. }));
    assert_eq!(events.last(), Some(&SessionEvent::Ready { resumed: true }));
    let reply = transcript(&turn(&session));
    assert!(!reply.is_empty(), "the model spoke about the delivered result");
    remembers_ada(&session);
}

fn fatal_error(session: &SessionHandle) -> LiveError {
    let events = until(session, |e| matches!(e, SessionEvent::State(ConnectionState::Failed(_))));
    let errors: Vec<_> = events.iter().filter(|e| matches!(e, SessionEvent::Error { .. })).collect();
    assert_eq!(errors.len(), 1, "exactly one error: {events:#?}");
    match errors[0] {
        SessionEvent::Error { error, fatal: true } => error.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_key_and_unknown_model_fail_once_without_retrying() {
    let sim = sim(LiveSim::builder().pace(0.0).api_key(Some("the-right-key".into())));
    let runtime = LiveRuntime::new().unwrap();

    let mut c = config(&sim);
    c.auth = Auth::ApiKey(Secret::new("a-wrong-key"));
    let e = fatal_error(&runtime.spawn(c, NullSink));
    assert_eq!((e.code, e.reason.as_str()), (CloseCode::InvalidArgument, reasons::API_KEY_INVALID));

    let e = fatal_error(&runtime.spawn(config(&sim), NullSink));
    assert_eq!(e.code, CloseCode::PolicyViolation);

    let mut c = config(&sim);
    c.auth = Auth::ApiKey(Secret::new("the-right-key"));
    c.setup.model = "models/gemini-0.1-nonexistent".into();
    let e = fatal_error(&runtime.spawn(c, NullSink));
    assert_eq!(e.code, CloseCode::PolicyViolation);
    assert!(e.reason.contains("is not found"), "{e}");

    // No retry storm: one connection per session, even a while later.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.connections(), 3);
}

#[test]
fn unsupported_options_fail_before_connecting() {
    let sim = fast_sim();
    let runtime = LiveRuntime::new().unwrap();
    let mut c = config(&sim);
    c.setup.model = "models/gemini-3.8-live".into();
    c.setup.generation_config.as_mut().unwrap().enable_affective_dialog = Some(true);
    let e = fatal_error(&runtime.spawn(c, NullSink));
    assert!(e.reason.contains("affective"), "{e}");
    assert_eq!(sim.connections(), 0);
}

#[test]
fn a_stalled_reader_does_not_block_sending_or_lose_events() {
    let sim = fast_sim();
    let runtime = LiveRuntime::new().unwrap();
    let mut c = config(&sim);
    c.event_capacity = 4;
    let session = runtime.spawn(c, NullSink);
    assert!(ready(&session));
    // Nobody reads events now; the task must still send.
    for text in ["Hello!", "What do you sell?", "Goodbye!"] {
        session.say(text).unwrap();
    }
    let m = session.metrics().clone();
    let start = Instant::now();
    while SessionMetrics::get(&m.messages_sent) < 4 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(SessionMetrics::get(&m.messages_sent), 4, "setup and three turns went out");
    while SessionMetrics::get(&m.event_stalls) == 0 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(SessionMetrics::get(&m.event_stalls) > 0);
    // Every turn's events arrive, in order, once the reader catches up. (A turn that arrives
    // while the model still talks interrupts it, as on the real service.)
    let mut completes = 0;
    let events = until(&session, |e| {
        if matches!(e, SessionEvent::TurnComplete { .. }) {
            completes += 1;
        }
        completes == 3
    });
    let heard: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::InputTranscript { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(heard, ["Hello!", "What do you sell?", "Goodbye!"]);
    let last_turn = events.iter().rposition(|e| *e == SessionEvent::ModelTurnStarted).unwrap();
    assert!(events[last_turn..].contains(&SessionEvent::GenerationComplete), "the last reply is whole");
}

#[test]
fn keys_never_reach_logs_or_errors() {
    const KEY: &str = "AIzaSyTOPSECRETkey0123456789";
    let logs = live_npc_dev::capture_logs();
    let sim = sim(LiveSim::builder().pace(0.0).api_key(Some("another-key".into())));
    let runtime = LiveRuntime::new().unwrap();
    let mut c = config(&sim);
    c.auth = Auth::ApiKey(Secret::new(KEY));
    let e = fatal_error(&runtime.spawn(c, NullSink));
    // And a connection that cannot be made at all.
    let mut c = SessionConfig::new("ws://127.0.0.1:1", Auth::ApiKey(Secret::new(KEY)), setup("x"));
    c.max_reconnect_attempts = 1;
    c.backoff_initial = Duration::from_millis(10);
    let refused = runtime.spawn(c.clone(), NullSink);
    let events = until(&refused, |e| matches!(e, SessionEvent::State(ConnectionState::Failed(_))));
    let Some(SessionEvent::State(ConnectionState::Failed(e2))) = events.last() else { unreachable!() };
    assert_eq!(e2.code, CloseCode::Abnormal);
    for text in [format!("{e} {e:?}"), format!("{e2} {e2:?}"), format!("{c:?}")] {
        assert!(!text.contains("TOPSECRET"), "{text}");
    }
    drop(runtime);
    let captured = logs.lock().unwrap().clone();
    assert!(captured.contains("live session"), "logs were captured: {captured}");
    assert!(!captured.contains("TOPSECRET"), "{captured}");
}

#[test]
fn an_expired_token_is_replaced_through_the_provider_and_the_session_resumes() {
    let _logs = live_npc_dev::capture_logs();
    use live_npc_client::token::TokenClient;
    let sim = sim(LiveSim::builder().pace(0.0).api_key(Some("sim-key".into())));
    let rest = sim.rest_url();
    let minted = Arc::new(Mutex::new(0u32));
    let count = minted.clone();
    let provider = TokenProvider::new(move || {
        let rest = rest.clone();
        if let Ok(mut n) = count.lock() {
            *n += 1;
        }
        async move {
            let request = CreateAuthTokenRequest { uses: Some(1), ..Default::default() };
            TokenClient::default().mint(&rest, &Secret::new("sim-key"), &request).await
        }
    });
    let mut c = config(&sim);
    c.auth = Auth::Provider(provider);
    let runtime = LiveRuntime::new().unwrap();
    let session = runtime.spawn(c, NullSink);
    assert!(ready(&session));
    session.say("Hello, my name is Ada.").unwrap();
    turn(&session);
    // The token's 30 minutes pass: the server refuses the next message (1008).
    sim.advance_clock(Duration::from_secs(31 * 60));
    session.say("What is my name?").unwrap();
    let events = until(&session, |e| matches!(e, SessionEvent::Ready { .. } | SessionEvent::Error { fatal: true, .. }));
    assert_eq!(events.last(), Some(&SessionEvent::Ready { resumed: true }), "{events:#?}");
    // The question the server refused goes again on the resumed connection.
    let reply = transcript(&turn(&session));
    assert!(reply.contains("Ada"), "the session and its memory survived the token: {reply}");
    assert_eq!(SessionMetrics::get(&session.metrics().token_refreshes), 1);
    assert_eq!(minted.lock().map(|n| *n).unwrap_or(0), 2, "one token per refusal, no storm");
}
