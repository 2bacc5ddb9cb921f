//! Shutting down the session runtime with 100 open sessions (goal: well under one second).
//!
//! Each sample opens 100 sessions against the in-process simulator, waits until every one has
//! its `setupComplete`, then times `LiveRuntime::shutdown` alone: close frames where the peer
//! answers in time, then the runtime stops.

use std::time::{Duration, Instant};

use bevy_live_npc::protocol::Setup;
use bevy_live_npc::session::{Auth, LiveRuntime, NullSink, SessionConfig, SessionEvent};
use bevy_live_npc::sim::LiveSim;
use criterion::{Criterion, criterion_group, criterion_main};

const SESSIONS: usize = 100;

fn open_sessions(sim: &LiveSim) -> (LiveRuntime, Vec<bevy_live_npc::session::SessionHandle>) {
    let runtime = LiveRuntime::new().expect("runtime");
    let setup = Setup { model: "models/gemini-3.8-live".into(), ..Default::default() };
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|_| runtime.spawn(SessionConfig::new(sim.base_url(), Auth::None, setup.clone()), NullSink))
        .collect();
    for s in &sessions {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match s.recv_timeout(Duration::from_millis(100)) {
                Some(SessionEvent::Ready { .. }) => break,
                _ if Instant::now() > deadline => panic!("session did not open"),
                _ => {}
            }
        }
    }
    (runtime, sessions)
}

fn bench(c: &mut Criterion) {
    let sim = LiveSim::builder().pace(0.0).start_in_background().expect("simulator");
    let mut group = c.benchmark_group("session_runtime");
    group.sample_size(10);
    group.bench_function("shutdown_100_open_sessions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (runtime, sessions) = open_sessions(&sim);
                let start = Instant::now();
                runtime.shutdown(Duration::from_secs(1));
                total += start.elapsed();
                drop(sessions);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
