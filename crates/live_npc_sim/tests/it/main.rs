//! The simulator's integration tests, one binary (no Bevy): the embedded Live API simulator,
//! driven over real sockets by a raw tokio-tungstenite client. The helpers below are shared by
//! the modules `sim` (core behaviour), `depth` (limits, faults, metrics) and `tokens`.
//!
//! Every test starts its own simulator on an ephemeral port. Time limits are only failure
//! guards: nothing here waits for something *not* to happen; an absent turn shows up as the
//! next expected message being a different one.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use live_npc_client::protocol::*;
use live_npc_dev::{fixture, fixture_json, speech as wav};
use live_npc_sim::voice::Voice;
use live_npc_sim::{LiveSim, LiveSimBuilder, Scenario};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

const MODEL: &str = "models/gemini-2.5-flash-native-audio-preview-12-2025";
const PERSONA: &str = "You are Mira, the village blacksmith.";
/// Failure guard for each awaited server event.
const GUARD: Duration = Duration::from_secs(15);
const LONG_REPLY: &str = "Let me tell you the whole story of this village, from the founding of the first \
    forge by the river to the great flood, the rebuilding of the mill, and the long winter when the \
    wolves came down from the hills and everybody gathered by my fire to keep warm.";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

mod depth;
mod sim;
mod tokens;

// ---------------------------------------------------------------- helpers

/// What the server did next.
#[derive(Debug)]
enum Ev {
    Msg(Box<ServerMessage<'static>>),
    Close(u16, String),
    /// The connection ended without a close frame (the reason shows in failure messages).
    Dropped(#[allow(dead_code)] String),
}

struct Client {
    ws: Ws,
}

fn base() -> LiveSimBuilder {
    LiveSim::builder().pace(0.0).seed(7)
}

async fn start(builder: LiveSimBuilder) -> LiveSim {
    builder.start().await.expect("simulator starts")
}

fn setup_value(extra: Value) -> Value {
    let mut setup = json!({
        "model": MODEL,
        "systemInstruction": {"parts": [{"text": PERSONA}]},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {}
    });
    if let (Some(s), Value::Object(extra)) = (setup.as_object_mut(), extra) {
        s.extend(extra);
    }
    json!({ "setup": setup })
}

fn text_turn(text: &str) -> Value {
    json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": true}})
}

fn audio_json(samples: &[i16], rate: u32) -> String {
    ClientMessage::audio(samples, rate).to_json()
}

impl Client {
    async fn connect(url: &str) -> Client {
        let (ws, _) = timeout(GUARD, connect_async(url)).await.expect("connect guard").expect("connect");
        Client { ws }
    }

    async fn connect_req(req: impl IntoClientRequest + Unpin) -> Client {
        let (ws, _) = timeout(GUARD, connect_async(req)).await.expect("connect guard").expect("connect");
        Client { ws }
    }

    async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.expect("send");
    }

    async fn send(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    async fn send_audio(&mut self, samples: &[i16], rate: u32) {
        // 40 ms chunks, as a microphone would send them (but not paced).
        for chunk in samples.chunks((rate / 25) as usize) {
            self.send_text(audio_json(chunk, rate)).await;
        }
    }

    async fn raw(&mut self) -> Option<Result<Message, WsError>> {
        timeout(GUARD, self.ws.next()).await.expect("timed out waiting for the server")
    }

    async fn next(&mut self) -> Ev {
        loop {
            match self.raw().await {
                Some(Ok(Message::Binary(b))) => {
                    let msg = ServerMessage::from_slice(&b).unwrap_or_else(|e| panic!("server JSON: {e}"));
                    return Ev::Msg(Box::new(msg.into_owned()));
                }
                Some(Ok(Message::Text(t))) => panic!("the server sent JSON in a text frame: {t}"),
                Some(Ok(Message::Close(Some(f)))) => return Ev::Close(f.code.into(), f.reason.to_string()),
                Some(Ok(Message::Close(None))) => return Ev::Close(1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Ev::Dropped(e.to_string()),
                None => return Ev::Dropped("end of stream".to_owned()),
            }
        }
    }

    async fn msg(&mut self) -> ServerMessage<'static> {
        match self.next().await {
            Ev::Msg(m) => *m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn closed(&mut self) -> (u16, String) {
        match self.next().await {
            Ev::Close(code, reason) => (code, reason),
            other => panic!("expected a close, got {other:?}"),
        }
    }

    /// Sends a setup and expects `setupComplete` (and, with resumption, the first handle).
    async fn setup(&mut self, extra: Value) -> Option<String> {
        let resumable = extra.get("sessionResumption").is_some();
        self.send(&setup_value(extra)).await;
        assert_eq!(token(&self.msg().await), "setupComplete");
        if resumable {
            let m = self.msg().await;
            assert_eq!(token(&m), "resumable", "{m:?}");
            return handle_of(&m);
        }
        None
    }

    /// Messages up to and including the next `turnComplete`.
    async fn turn(&mut self) -> Turn {
        let mut msgs = Vec::new();
        loop {
            let m = self.msg().await;
            let done = m.server_content().is_some_and(|c| c.turn_complete == Some(true));
            msgs.push(m);
            if done {
                return Turn(msgs);
            }
        }
    }

    /// Messages until (and including) the first one whose token is `until`.
    async fn until(&mut self, until: &str) -> Turn {
        let mut msgs = Vec::new();
        loop {
            let m = self.msg().await;
            let hit = token(&m) == until;
            msgs.push(m);
            if hit {
                return Turn(msgs);
            }
        }
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Ok(Some(Ok(_))) = timeout(GUARD, self.ws.next()).await {}
    }
}

fn handle_of(m: &ServerMessage<'_>) -> Option<String> {
    match &m.payload {
        ServerPayload::SessionResumptionUpdate(u) => u.resumable_handle().map(str::to_owned),
        _ => None,
    }
}

/// A compact name for a server message.
fn token(m: &ServerMessage<'_>) -> String {
    let t = match &m.payload {
        ServerPayload::SetupComplete(_) => "setupComplete",
        ServerPayload::ToolCall(_) => "toolCall",
        ServerPayload::ToolCallCancellation(_) => "toolCallCancellation",
        ServerPayload::GoAway(_) => "goAway",
        ServerPayload::SessionResumptionUpdate(u) if u.resumable == Some(true) => "resumable",
        ServerPayload::SessionResumptionUpdate(_) => "notResumable",
        ServerPayload::ServerContent(c) => {
            if c.interrupted == Some(true) {
                "interrupted"
            } else if c.generation_complete == Some(true) {
                "generationComplete"
            } else if c.turn_complete == Some(true) {
                if m.usage_metadata.is_some() { "turnComplete+usage" } else { "turnComplete" }
            } else if c.input_transcription.is_some() {
                "in"
            } else if let Some(t) = &c.output_transcription {
                if t.finished == Some(true) { "out.fin" } else { "out" }
            } else if c.model_turn.as_ref().is_some_and(|t| t.parts.iter().all(|p| p.inline_data.is_some())) {
                "audio"
            } else if c.model_turn.is_some() {
                "text"
            } else {
                "content?"
            }
        }
        other => return format!("{other:?}"),
    };
    t.to_owned()
}

/// The messages of a turn.
#[derive(Debug)]
struct Turn(Vec<ServerMessage<'static>>);

impl Turn {
    /// Tokens, with each run of audio and output transcripts collapsed into `speech` and each
    /// run of text parts into `text`.
    fn shape(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.0 {
            let t = token(m);
            let run = match t.as_str() {
                "audio" | "out" | "out.fin" => "speech",
                "text" => "text",
                _ => {
                    out.push(t);
                    continue;
                }
            };
            if out.last().map(String::as_str) != Some(run) {
                out.push(run.to_owned());
            }
        }
        out
    }

    fn contents(&self) -> impl Iterator<Item = &ServerContent<'static>> {
        self.0.iter().filter_map(ServerMessage::server_content)
    }

    fn transcript(&self) -> String {
        self.contents().filter_map(|c| c.output_transcription.as_ref()?.text.clone()).collect()
    }

    fn input(&self) -> Vec<String> {
        self.contents().filter_map(|c| c.input_transcription.as_ref()?.text.clone()).collect()
    }

    fn text(&self) -> String {
        self.contents().map(ServerContent::text).collect()
    }

    fn audio(&self) -> Vec<i16> {
        let mut pcm = Vec::new();
        for c in self.contents() {
            c.append_audio(&mut pcm).expect("audio decodes");
        }
        pcm
    }

    fn chunks(&self) -> Vec<usize> {
        self.contents()
            .filter(|c| c.model_turn.is_some())
            .map(|c| {
                let mut pcm = Vec::new();
                c.append_audio(&mut pcm).expect("audio decodes");
                pcm.len()
            })
            .collect()
    }

    fn tool_calls(&self) -> Vec<FunctionCall> {
        self.0
            .iter()
            .filter_map(|m| match &m.payload {
                ServerPayload::ToolCall(t) => Some(t.function_calls.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn cancelled(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|m| match &m.payload {
                ServerPayload::ToolCallCancellation(t) => Some(t.ids.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn usage(&self) -> &UsageMetadata {
        self.0.iter().rev().find_map(|m| m.usage_metadata.as_ref()).expect("usageMetadata")
    }

    /// Checks a spoken block: 24 kHz PCM in 40 ms chunks (the last may be shorter), the first
    /// transcript fragment before the first chunk, exactly one `finished` on the last fragment.
    fn check_speech(&self) {
        for c in self.contents() {
            for p in c.model_turn.iter().flat_map(|t| &t.parts) {
                if let Some(b) = &p.inline_data {
                    assert_eq!(b.mime_type, "audio/pcm;rate=24000");
                }
            }
        }
        let chunks = self.chunks();
        assert!(!chunks.is_empty(), "no audio");
        let (last, rest) = chunks.split_last().expect("chunks");
        assert!(rest.iter().all(|&n| n == 960), "chunk sizes {chunks:?}");
        assert!((1..=960).contains(last));
        let tokens: Vec<String> = self.0.iter().map(token).collect();
        let first_speech = tokens.iter().position(|t| t == "audio" || t.starts_with("out"));
        assert_eq!(first_speech.map(|i| tokens[i].as_str()), Some("out"), "{tokens:?}");
        let fins: Vec<usize> = tokens.iter().enumerate().filter(|(_, t)| *t == "out.fin").map(|(i, _)| i).collect();
        let last_out = tokens.iter().rposition(|t| t.starts_with("out"));
        assert_eq!(fins.len(), 1, "{tokens:?}");
        assert_eq!(Some(fins[0]), last_out);
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The shape of a complete spoken reply to a user turn (no resumption configured).
fn reply_shape() -> Vec<String> {
    s(&["in", "speech", "generationComplete", "turnComplete+usage"])
}

fn scenario(json: Value) -> Scenario {
    Scenario::from_json_str(&json.to_string()).expect("scenario")
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
