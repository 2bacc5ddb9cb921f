//! Scenarios: what the simulated model answers to what, which tools it calls, and which faults
//! the server injects. Loaded from JSON (`live-sim --script FILE`) or built in code.
//!
//! ```
//! use live_npc_sim::Scenario;
//! # fn main() -> Result<(), live_npc_sim::ScriptError> {
//! let s = Scenario::from_json_str(r#"{
//!   "rules": [
//!     {"when": "open the gate", "reply": "Opening it now.",
//!      "tool_calls": [{"name": "open_gate", "args": {"gate": "north"}}]},
//!     {"audio_turn": 1, "audio_transcript": "Hello there! Who are you?"}
//!   ],
//!   "faults": [
//!     {"turn": 2, "after_chunks": 3, "action": "drop"},
//!     {"after_messages": 10, "action": {"close": {"code": 1011, "reason": "Internal error occurred."}}}
//!   ]
//! }"#)?;
//! assert_eq!(s.rules.len(), 2);
//! # Ok(()) }
//! ```
//!
//! The full format is documented in `docs/SIMULATOR.md`.

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// A scenario: reply rules and faults. Unknown fields are rejected.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Reply rules, tried in order; the first that matches a user turn decides it.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// What to answer to a user turn.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Matches a turn whose text contains this (case-insensitive substring; no regex).
    pub when: Option<String>,
    /// Matches the N-th audio turn of a connection (1-based).
    pub audio_turn: Option<u32>,
    /// For an audio turn: what the user "said" (it becomes the turn's text and its
    /// `inputTranscription`, and is then matched against the other rules and the brain).
    pub audio_transcript: Option<String>,
    /// The exact reply. Without it the built-in brain answers.
    pub reply: Option<String>,
    /// Calls to make instead of the built-in tool matching (the function need not be declared;
    /// an undeclared function is BLOCKING).
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
}

/// A function call a rule makes.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    /// The function's name.
    pub name: String,
    /// Its arguments (a JSON object).
    #[serde(default)]
    pub args: Map<String, Value>,
}

/// A fault: when it fires and what it does. Exactly one trigger (`after_messages` or `turn`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Fires right after the server has sent this many messages on the connection
    /// (`setupComplete` is message 1; 0 = when the connection opens).
    pub after_messages: Option<u64>,
    /// Fires right after the N-th `toolCall` message of the connection (1-based).
    #[serde(default)]
    pub after_tool_calls: Option<u32>,
    /// Fires in the N-th model turn of the connection (1-based)...
    pub turn: Option<u32>,
    /// ...after this many of its audio (or text) chunks have been sent (0 = at its start).
    #[serde(default)]
    pub after_chunks: u32,
    /// Only on the N-th connection the simulator accepts (1-based); every connection if absent.
    pub connection: Option<u64>,
    /// What happens.
    pub action: FaultAction,
}

impl Fault {
    /// A fault that fires when each connection opens (`after_messages: 0`), on every connection.
    pub fn at_start(action: FaultAction) -> Fault {
        Fault { after_messages: Some(0), after_tool_calls: None, turn: None, after_chunks: 0, connection: None, action }
    }
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Close the TCP connection without a WebSocket close frame (the client sees 1006).
    Drop,
    /// Close the WebSocket with this code and reason (the reason is cut to 123 bytes).
    Close {
        /// The close code (e.g. 1011).
        code: u16,
        /// The reason text.
        #[serde(default)]
        reason: String,
    },
    /// Send `goAway` now and end the connection (1011, deadline expired) after `time_left_ms`
    /// (default: the simulator's go-away notice).
    GoAway {
        /// Time left in milliseconds.
        time_left_ms: Option<u64>,
    },
    /// Send a binary frame that is not valid JSON; the session goes on.
    MalformedFrame,
    /// From now on, every server message is delayed by `ms` plus a uniform random `0..=jitter_ms`
    /// (latency, not throughput: messages keep their order and are not serialized behind each
    /// other's delays).
    Delay {
        /// Fixed delay in milliseconds.
        ms: u64,
        /// Random extra delay, up to this many milliseconds.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// From now on, each audio chunk goes out as `parts` messages (2–16).
    SplitChunks {
        /// Messages per chunk.
        parts: u32,
    },
    /// From now on, `count` consecutive audio chunks (2–32) go out as one message (pending audio
    /// is flushed before any other message).
    MergeChunks {
        /// Chunks per message.
        count: u32,
    },
    /// Send one valid JSON frame of `bytes` bytes (default 16 MiB + 1: one byte over the session
    /// client's default limit; at most 32 MiB): a `modelTurn` text part padded with spaces.
    OversizedFrame {
        /// Frame size in bytes.
        #[serde(default)]
        bytes: Option<usize>,
    },
    /// The server stops reading the socket, for `pause_ms` or (without it) for good: the
    /// client's writes back up, its pings go unanswered; output goes on.
    SlowReader {
        /// How long to stop reading (milliseconds); absent = for good.
        #[serde(default)]
        pause_ms: Option<u64>,
    },
    /// Send this text as one text frame, exactly as written (hostile or malformed server
    /// messages on purpose); the session goes on.
    SendRaw {
        /// The frame's text (at most 32 MiB).
        text: String,
    },
    /// The server never answers `setup` (nor anything after it); pings are still answered.
    /// Only with `after_messages: 0`.
    NoSetupComplete,
    /// From now on, the server answers pings `delay_ms` late (other frames are not delayed).
    SlowPongs {
        /// Pong delay in milliseconds.
        delay_ms: u64,
    },
}

/// Largest `oversized_frame` size.
pub const MAX_OVERSIZED_FRAME: usize = 32 << 20;
/// Default `oversized_frame` size: one byte over the session client's default frame limit.
pub const DEFAULT_OVERSIZED_FRAME: usize = (16 << 20) + 1;

/// A scenario that could not be loaded.
#[derive(Debug, Error)]
pub enum ScriptError {
    /// Not valid JSON or not the scenario format (names the field).
    #[error("invalid scenario: {0}")]
    Format(String),
    /// Valid JSON, but a rule or fault makes no sense.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_json_str(text: &str) -> Result<Scenario, ScriptError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ScriptError::Format(if path == "." { inner.to_string() } else { format!("at {path}: {inner}") })
        })?;
        de.end().map_err(|e| ScriptError::Format(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Scenario, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScriptError::Io { path: path.display().to_string(), source })?;
        Scenario::from_json_str(&text)
    }

    /// Checks that every rule and fault is meaningful.
    pub fn validate(&self) -> Result<(), ScriptError> {
        for (i, rule) in self.rules.iter().enumerate() {
            let bad = |msg: &str| Err(ScriptError::Invalid(format!("rules[{i}]: {msg}")));
            match (&rule.when, rule.audio_turn) {
                (None, None) => return bad("needs `when` or `audio_turn`"),
                (Some(_), Some(_)) => return bad("has both `when` and `audio_turn`"),
                (Some(w), None) if w.trim().is_empty() => return bad("`when` is empty"),
                (Some(_), None) if rule.audio_transcript.is_some() => {
                    return bad("`audio_transcript` needs `audio_turn`");
                }
                (None, Some(0)) => return bad("`audio_turn` counts from 1"),
                _ => {}
            }
            if let Some(c) = rule.tool_calls.iter().find(|c| c.name.is_empty()) {
                return bad(&format!("tool call {:?} has an empty name", c.name));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            let bad = |msg: &str| Err(ScriptError::Invalid(format!("faults[{i}]: {msg}")));
            let triggers = [fault.after_messages.is_some(), fault.turn.is_some(), fault.after_tool_calls.is_some()];
            match triggers.iter().filter(|t| **t).count() {
                0 => return bad("needs `after_messages`, `turn` or `after_tool_calls`"),
                1 => {}
                _ => return bad("has more than one of `after_messages`, `turn`, `after_tool_calls`"),
            }
            if fault.turn.is_none() && fault.after_chunks != 0 {
                return bad("`after_chunks` needs `turn`");
            }
            if fault.turn == Some(0) || fault.after_tool_calls == Some(0) {
                return bad("`turn` and `after_tool_calls` count from 1");
            }
            if let FaultAction::GoAway { time_left_ms: Some(ms) } = fault.action
                && ms > 86_400_000
            {
                return bad("`time_left_ms` must be at most one day");
            }
            if fault.connection == Some(0) {
                return bad("`connection` counts from 1");
            }
            match fault.action {
                FaultAction::NoSetupComplete if fault.after_messages != Some(0) => {
                    return bad("`no_setup_complete` needs `after_messages: 0`");
                }
                FaultAction::Delay { ms, jitter_ms } if ms > 60_000 || jitter_ms > 60_000 => {
                    return bad("`ms` and `jitter_ms` must be at most 60000");
                }
                FaultAction::SplitChunks { parts } if !(2..=16).contains(&parts) => {
                    return bad("`parts` must be 2–16");
                }
                FaultAction::MergeChunks { count } if !(2..=32).contains(&count) => {
                    return bad("`count` must be 2–32");
                }
                FaultAction::OversizedFrame { bytes: Some(b) } if !(64..=MAX_OVERSIZED_FRAME).contains(&b) => {
                    return bad("`bytes` must be 64 to 33554432");
                }
                FaultAction::SlowReader { pause_ms: Some(ms) } if ms > 3_600_000 => {
                    return bad("`pause_ms` must be at most one hour");
                }
                FaultAction::SlowPongs { delay_ms } if delay_ms > 600_000 => {
                    return bad("`delay_ms` must be at most 600000");
                }
                FaultAction::SendRaw { ref text } if text.len() > MAX_OVERSIZED_FRAME => {
                    return bad("`text` must be at most 33554432 bytes");
                }
                _ => {}
            }
            if let FaultAction::Close { code, .. } = fault.action
                && (!(1000..=4999).contains(&code) || matches!(code, 1004..=1006 | 1015))
            {
                return bad(&format!("close code {code} cannot be sent in a close frame"));
            }
        }
        Ok(())
    }

    /// The rule for the `index`-th audio turn (1-based), if any.
    pub fn audio_rule(&self, index: u32) -> Option<&Rule> {
        self.rules.iter().find(|r| r.audio_turn == Some(index))
    }

    /// The first `when` rule whose text occurs in `text` (case-insensitive).
    pub fn text_rule(&self, text: &str) -> Option<&Rule> {
        let lower = text.to_lowercase();
        self.rules.iter().find(|r| r.when.as_ref().is_some_and(|w| lower.contains(&w.to_lowercase())))
    }

    /// The faults that apply to the `connection`-th connection (1-based).
    pub fn faults_for(&self, connection: u64) -> Vec<Fault> {
        self.faults.iter().filter(|f| f.connection.is_none_or(|c| c == connection)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_fields_with_a_path() {
        let e = Scenario::from_json_str(r#"{"rules": [{"when": "hi", "replie": "x"}]}"#).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("rules[0]") && text.contains("replie"), "{text}");
        let e = Scenario::from_json_str(r#"{"faults": [{"turn": 1, "action": "explode"}]}"#).unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
    }

    #[test]
    fn validates() {
        for bad in [
            r#"{"rules": [{"reply": "x"}]}"#,
            r#"{"rules": [{"when": "a", "audio_turn": 1}]}"#,
            r#"{"faults": [{"action": "drop"}]}"#,
            r#"{"faults": [{"after_messages": 1, "after_chunks": 2, "action": "drop"}]}"#,
            r#"{"faults": [{"turn": 1, "action": {"close": {"code": 1006}}}]}"#,
            r#"{"faults": [{"after_messages": 1, "action": "no_setup_complete"}]}"#,
            r#"{"faults": [{"after_messages": 0, "action": {"split_chunks": {"parts": 1}}}]}"#,
            r#"{"faults": [{"after_messages": 0, "action": {"oversized_frame": {"bytes": 1}}}]}"#,
        ] {
            assert!(matches!(Scenario::from_json_str(bad), Err(ScriptError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn actions_parse() -> Result<(), ScriptError> {
        let s = Scenario::from_json_str(
            r#"{"faults": [
                {"after_messages": 1, "action": "malformed_frame"},
                {"turn": 1, "action": {"go_away": {"time_left_ms": 500}}},
                {"turn": 2, "connection": 1, "action": {"go_away": {}}},
                {"after_messages": 0, "action": {"delay": {"ms": 20, "jitter_ms": 5}}},
                {"after_messages": 0, "action": "no_setup_complete"},
                {"after_messages": 3, "action": {"slow_reader": {}}},
                {"after_messages": 3, "action": {"slow_pongs": {"delay_ms": 500}}},
                {"turn": 1, "action": {"merge_chunks": {"count": 4}}},
                {"turn": 1, "action": {"oversized_frame": {}}},
                {"after_messages": 1, "action": {"send_raw": {"text": "{\"goAway\":{}}"}}}
            ]}"#,
        )?;
        assert_eq!(s.faults[9].action, FaultAction::SendRaw { text: r#"{"goAway":{}}"#.into() });
        assert_eq!(s.faults[3].action, FaultAction::Delay { ms: 20, jitter_ms: 5 });
        assert_eq!(s.faults[8].action, FaultAction::OversizedFrame { bytes: None });
        assert_eq!(s.faults[0].action, FaultAction::MalformedFrame);
        assert_eq!(s.faults[1].action, FaultAction::GoAway { time_left_ms: Some(500) });
        assert_eq!(s.faults_for(2).len(), 9);
        assert_eq!(s.faults_for(1).len(), 10);
        Ok(())
    }

    #[test]
    fn rule_lookup() -> Result<(), ScriptError> {
        let s = Scenario::from_json_str(
            r#"{"rules": [{"when": "Gate", "reply": "a"}, {"audio_turn": 2, "audio_transcript": "hi"}]}"#,
        )?;
        assert_eq!(s.text_rule("open the gate").and_then(|r| r.reply.as_deref()), Some("a"));
        assert!(s.text_rule("hello").is_none());
        assert_eq!(s.audio_rule(2).and_then(|r| r.audio_transcript.as_deref()), Some("hi"));
        Ok(())
    }
}
