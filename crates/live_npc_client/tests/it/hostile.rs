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
