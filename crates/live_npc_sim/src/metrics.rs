//! Counters of a running simulator: connections, sessions, messages, bytes, turns and their
//! timing, tokens. Lock-free (relaxed atomics); read with [`LiveSim::metrics`](super::LiveSim::metrics).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters, shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub connections_open: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub sessions_active: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub turns: AtomicU64,
    pub turns_interrupted: AtomicU64,
    pub turns_silent: AtomicU64,
    pub tokens_minted: AtomicU64,
    pub token_refusals: AtomicU64,
    pub session_limits: AtomicU64,
    pub first_audio: Timing,
    pub turn_time: Timing,
}

/// A duration distribution: count, sum, max (microseconds).
#[derive(Debug, Default)]
pub(crate) struct Timing {
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Timing {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TimingStats {
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed);
        TimingStats {
            count,
            mean: Duration::from_micros(sum.checked_div(count).unwrap_or(0)),
            max: Duration::from_micros(self.max_us.load(Ordering::Relaxed)),
        }
    }
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge (never below zero).
pub(crate) fn dec(c: &AtomicU64) {
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
}

impl Metrics {
    pub fn snapshot(&self, connections_total: u64) -> SimMetrics {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimMetrics {
            connections_total,
            connections_open: l(&self.connections_open),
            sessions_started: l(&self.sessions_started),
            sessions_resumed: l(&self.sessions_resumed),
            sessions_active: l(&self.sessions_active),
            messages_in: l(&self.messages_in),
            messages_out: l(&self.messages_out),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            turns: l(&self.turns),
            turns_interrupted: l(&self.turns_interrupted),
            turns_silent: l(&self.turns_silent),
            tokens_minted: l(&self.tokens_minted),
            token_refusals: l(&self.token_refusals),
            session_limits: l(&self.session_limits),
            first_audio: self.first_audio.snapshot(),
            turn_time: self.turn_time.snapshot(),
        }
    }
}

/// Count, mean and maximum of a duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimingStats {
    /// How many were recorded.
    pub count: u64,
    /// Their mean.
    pub mean: Duration,
    /// The longest.
    pub max: Duration,
}

/// A snapshot of a simulator's counters (totals since it started, and gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimMetrics {
    /// WebSocket connections accepted.
    pub connections_total: u64,
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// New sessions set up (`setupComplete` sent without a resumption handle).
    pub sessions_started: u64,
    /// Sessions resumed with a handle.
    pub sessions_resumed: u64,
    /// Set-up sessions whose connection is open now.
    pub sessions_active: u64,
    /// WebSocket data frames received.
    pub messages_in: u64,
    /// WebSocket data frames sent.
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Model turns completed (`turnComplete` after `generationComplete`).
    pub turns: u64,
    /// Model turns interrupted (barge-in, `INTERRUPT` results).
    pub turns_interrupted: u64,
    /// User turns the model stayed silent for (proactive audio).
    pub turns_silent: u64,
    /// Ephemeral tokens minted.
    pub tokens_minted: u64,
    /// Sessions refused because of their token (unknown, expired, used up).
    pub token_refusals: u64,
    /// Sessions ended by the session-length limit.
    pub session_limits: u64,
    /// From the end of the user's turn to the model's first audio (or text) chunk.
    pub first_audio: TimingStats,
    /// From the end of the user's turn to `turnComplete`.
    pub turn_time: TimingStats,
}

impl fmt::Display for SimMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "connections {} open/{} total; sessions {} active, {} started, {} resumed, {} hit the length limit; \
             messages in {} out {}; bytes in {} out {}; turns {} done, {} interrupted, {} silent; \
             first audio {:.1} ms mean {:.1} ms max; turn {:.0} ms mean; tokens {} minted, {} refused",
            self.connections_open,
            self.connections_total,
            self.sessions_active,
            self.sessions_started,
            self.sessions_resumed,
            self.session_limits,
            self.messages_in,
            self.messages_out,
            self.bytes_in,
            self.bytes_out,
            self.turns,
            self.turns_interrupted,
            self.turns_silent,
            ms(self.first_audio.mean),
            ms(self.first_audio.max),
            ms(self.turn_time.mean),
            self.tokens_minted,
            self.token_refusals,
        )
    }
}
