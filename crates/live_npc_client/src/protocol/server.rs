//! Server → client messages (live-protocol.md §4).

use std::fmt;
use std::time::Duration;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_with::skip_serializing_none;

use super::codec::{opt_duration, opt_int64};
use super::content::{Content, FunctionCall};
use super::enums::*;
use super::error::DecodeError;

/// `setupComplete`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupComplete {
    /// Session id, where the service sends one.
    #[serde(alias = "session_id")]
    pub session_id: Option<String>,
}

/// An input or output transcription fragment. Fragments are incremental: concatenate them.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcription {
    /// The fragment's text.
    pub text: Option<String>,
    /// Whether the transcription of this turn is final.
    pub finished: Option<bool>,
    /// Detected language.
    #[serde(alias = "language_code")]
    pub language_code: Option<String>,
}

/// `serverContent`: model output and turn flags.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerContent<'a> {
    /// Audio, text and thought parts.
    #[serde(borrow, alias = "model_turn")]
    pub model_turn: Option<Content<'a>>,
    /// The model has produced everything for this turn.
    #[serde(alias = "generation_complete")]
    pub generation_complete: Option<bool>,
    /// The turn is closed; nothing more until new input.
    #[serde(alias = "turn_complete")]
    pub turn_complete: Option<bool>,
    /// The user barged in: drop queued audio now. `turnComplete` follows.
    pub interrupted: Option<bool>,
    /// Why the turn completed.
    #[serde(alias = "turn_complete_reason")]
    pub turn_complete_reason: Option<TurnCompleteReason>,
    /// The model is idle because it expects more input.
    #[serde(alias = "waiting_for_input")]
    pub waiting_for_input: Option<bool>,
    /// What the server heard.
    #[serde(alias = "input_transcription")]
    pub input_transcription: Option<Transcription>,
    /// What the model said.
    #[serde(alias = "output_transcription")]
    pub output_transcription: Option<Transcription>,
    /// Search grounding, passed through unparsed.
    #[serde(alias = "grounding_metadata")]
    pub grounding_metadata: Option<Value>,
    /// URL-context metadata, passed through unparsed.
    #[serde(alias = "url_context_metadata")]
    pub url_context_metadata: Option<Value>,
}

impl<'a> ServerContent<'a> {
    /// Copies borrowed data so the content outlives its frame.
    pub fn into_owned(self) -> ServerContent<'static> {
        ServerContent {
            model_turn: self.model_turn.map(Content::into_owned),
            generation_complete: self.generation_complete,
            turn_complete: self.turn_complete,
            interrupted: self.interrupted,
            turn_complete_reason: self.turn_complete_reason,
            waiting_for_input: self.waiting_for_input,
            input_transcription: self.input_transcription,
            output_transcription: self.output_transcription,
            grounding_metadata: self.grounding_metadata,
            url_context_metadata: self.url_context_metadata,
        }
    }

    /// Decodes every PCM `inlineData` part of the model turn and appends it to `out`,
    /// returning the number of samples added. Non-PCM parts are skipped.
    pub fn append_audio(&self, out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        let mut added = 0;
        let Some(turn) = &self.model_turn else {
            return Ok(0);
        };
        for part in &turn.parts {
            if let Some(blob) = &part.inline_data
                && (blob.mime_type.starts_with("audio/pcm") || blob.mime()?.is_pcm())
            {
                added += blob.data.append_pcm16(out)?;
            }
        }
        Ok(added)
    }

    /// The sample rate of the first audio part (`rate=`), if any.
    pub fn audio_rate(&self) -> Option<u32> {
        self.model_turn
            .as_ref()?
            .parts
            .iter()
            .filter_map(|p| p.inline_data.as_ref())
            .find_map(|b| b.mime().ok().and_then(|m| m.rate))
    }

    /// Concatenated non-thought text parts (TEXT modality).
    pub fn text(&self) -> String {
        self.model_turn.as_ref().map(Content::joined_text).unwrap_or_default()
    }
}

/// `toolCall`: one or more calls to run.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// The calls.
    #[serde(alias = "function_calls", default)]
    pub function_calls: Vec<FunctionCall>,
}

/// `toolCallCancellation`: calls the user's interruption cancelled.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCallCancellation {
    /// Ids of the cancelled calls.
    #[serde(default)]
    pub ids: Vec<String>,
}

/// `goAway`: the connection ends after `timeLeft`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoAway {
    /// Time until the server closes the connection.
    #[serde(alias = "time_left", default, with = "opt_duration")]
    pub time_left: Option<Duration>,
}

/// `sessionResumptionUpdate`: a new handle to resume with.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResumptionUpdate {
    /// The handle (empty when not resumable).
    #[serde(alias = "new_handle")]
    pub new_handle: Option<String>,
    /// Whether the session can be resumed at this point.
    pub resumable: Option<bool>,
    /// Vertex transparent mode: last client message the server consumed (int64).
    #[serde(alias = "last_consumed_client_message_index", default, with = "opt_int64")]
    pub last_consumed_client_message_index: Option<i64>,
}

impl SessionResumptionUpdate {
    /// The handle, if this update makes the session resumable.
    pub fn resumable_handle(&self) -> Option<&str> {
        match (self.resumable, self.new_handle.as_deref()) {
            (Some(true), Some(h)) if !h.is_empty() => Some(h),
            _ => None,
        }
    }
}

/// Tokens per modality.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModalityTokenCount {
    /// The modality.
    pub modality: Option<Modality>,
    /// Its tokens.
    #[serde(alias = "token_count")]
    pub token_count: Option<i32>,
}

/// `usageMetadata` (Gemini API names; Vertex `candidates*` names are accepted).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens.
    #[serde(alias = "prompt_token_count")]
    pub prompt_token_count: Option<i32>,
    /// Cached prompt tokens.
    #[serde(alias = "cached_content_token_count")]
    pub cached_content_token_count: Option<i32>,
    /// Response tokens.
    #[serde(alias = "response_token_count", alias = "candidatesTokenCount", alias = "candidates_token_count")]
    pub response_token_count: Option<i32>,
    /// Tool-use prompt tokens.
    #[serde(alias = "tool_use_prompt_token_count")]
    pub tool_use_prompt_token_count: Option<i32>,
    /// Thinking tokens.
    #[serde(alias = "thoughts_token_count")]
    pub thoughts_token_count: Option<i32>,
    /// Total tokens.
    #[serde(alias = "total_token_count")]
    pub total_token_count: Option<i32>,
    /// Prompt tokens per modality.
    #[serde(alias = "prompt_tokens_details")]
    pub prompt_tokens_details: Option<Vec<ModalityTokenCount>>,
    /// Cached tokens per modality.
    #[serde(alias = "cache_tokens_details")]
    pub cache_tokens_details: Option<Vec<ModalityTokenCount>>,
    /// Response tokens per modality.
    #[serde(alias = "response_tokens_details", alias = "candidatesTokensDetails", alias = "candidates_tokens_details")]
    pub response_tokens_details: Option<Vec<ModalityTokenCount>>,
    /// Tool-use tokens per modality.
    #[serde(alias = "tool_use_prompt_tokens_details")]
    pub tool_use_prompt_tokens_details: Option<Vec<ModalityTokenCount>>,
    /// Vertex service tier.
    #[serde(alias = "service_tier")]
    pub service_tier: Option<String>,
}

/// `voiceActivity`: the server's VAD saw speech start or end.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceActivity {
    /// Start or end.
    #[serde(rename = "type", alias = "voice_activity_type", alias = "voiceActivityType")]
    pub activity_type: Option<VoiceActivityType>,
    /// Offset in the input audio.
    #[serde(alias = "audio_offset", default, with = "opt_duration")]
    pub audio_offset: Option<Duration>,
}

/// `voiceActivityDetectionSignal` (allow-listed projects only).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceActivityDetectionSignal {
    /// Start or end of speech.
    #[serde(alias = "vad_signal_type")]
    pub vad_signal_type: Option<VadSignalType>,
}

/// The payload of a server message.
// `serverContent` is both the largest and by far the most frequent payload: boxing it would
// add an allocation per audio chunk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ServerPayload<'a> {
    /// `setupComplete`.
    SetupComplete(SetupComplete),
    /// `serverContent`.
    ServerContent(ServerContent<'a>),
    /// `toolCall`.
    ToolCall(ToolCall),
    /// `toolCallCancellation`.
    ToolCallCancellation(ToolCallCancellation),
    /// `goAway`.
    GoAway(GoAway),
    /// `sessionResumptionUpdate`.
    SessionResumptionUpdate(SessionResumptionUpdate),
    /// `voiceActivity`.
    VoiceActivity(VoiceActivity),
    /// `voiceActivityDetectionSignal`.
    VoiceActivityDetectionSignal(VoiceActivityDetectionSignal),
    /// No payload key: a bare `usageMetadata` message.
    UsageOnly,
    /// A payload key this crate does not know (its name).
    Unknown(String),
}

/// A server → client message: one payload, plus `usageMetadata` when the server attaches it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerMessage<'a> {
    /// The payload.
    pub payload: ServerPayload<'a>,
    /// Token usage sent alongside.
    pub usage_metadata: Option<UsageMetadata>,
}

impl<'a> From<ServerPayload<'a>> for ServerMessage<'a> {
    fn from(payload: ServerPayload<'a>) -> Self {
        ServerMessage { payload, usage_metadata: None }
    }
}

impl<'a> ServerMessage<'a> {
    /// Parses a frame (text or binary) leniently: unknown fields and enum values are tolerated,
    /// an unknown payload becomes [`ServerPayload::Unknown`]. Audio stays borrowed as base64.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::from_json(e, bytes.len()))
    }

    /// Serializes to canonical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Serializes to canonical JSON bytes (the server sends these in binary frames).
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The wire name of the payload key.
    pub fn kind(&self) -> &str {
        match &self.payload {
            ServerPayload::SetupComplete(_) => "setupComplete",
            ServerPayload::ServerContent(_) => "serverContent",
            ServerPayload::ToolCall(_) => "toolCall",
            ServerPayload::ToolCallCancellation(_) => "toolCallCancellation",
            ServerPayload::GoAway(_) => "goAway",
            ServerPayload::SessionResumptionUpdate(_) => "sessionResumptionUpdate",
            ServerPayload::VoiceActivity(_) => "voiceActivity",
            ServerPayload::VoiceActivityDetectionSignal(_) => "voiceActivityDetectionSignal",
            ServerPayload::UsageOnly => "usageMetadata",
            ServerPayload::Unknown(name) => name,
        }
    }

    /// The server content, if this is a `serverContent` message.
    pub fn server_content(&self) -> Option<&ServerContent<'a>> {
        match &self.payload {
            ServerPayload::ServerContent(c) => Some(c),
            _ => None,
        }
    }

    /// Copies borrowed data so the message outlives its frame.
    pub fn into_owned(self) -> ServerMessage<'static> {
        let payload = match self.payload {
            ServerPayload::SetupComplete(v) => ServerPayload::SetupComplete(v),
            ServerPayload::ServerContent(v) => ServerPayload::ServerContent(v.into_owned()),
            ServerPayload::ToolCall(v) => ServerPayload::ToolCall(v),
            ServerPayload::ToolCallCancellation(v) => ServerPayload::ToolCallCancellation(v),
            ServerPayload::GoAway(v) => ServerPayload::GoAway(v),
            ServerPayload::SessionResumptionUpdate(v) => ServerPayload::SessionResumptionUpdate(v),
            ServerPayload::VoiceActivity(v) => ServerPayload::VoiceActivity(v),
            ServerPayload::VoiceActivityDetectionSignal(v) => ServerPayload::VoiceActivityDetectionSignal(v),
            ServerPayload::UsageOnly => ServerPayload::UsageOnly,
            ServerPayload::Unknown(n) => ServerPayload::Unknown(n),
        };
        ServerMessage { payload, usage_metadata: self.usage_metadata }
    }
}

impl Serialize for ServerMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match &self.payload {
            ServerPayload::SetupComplete(v) => map.serialize_entry("setupComplete", v)?,
            ServerPayload::ServerContent(v) => map.serialize_entry("serverContent", v)?,
            ServerPayload::ToolCall(v) => map.serialize_entry("toolCall", v)?,
            ServerPayload::ToolCallCancellation(v) => map.serialize_entry("toolCallCancellation", v)?,
            ServerPayload::GoAway(v) => map.serialize_entry("goAway", v)?,
            ServerPayload::SessionResumptionUpdate(v) => map.serialize_entry("sessionResumptionUpdate", v)?,
            ServerPayload::VoiceActivity(v) => map.serialize_entry("voiceActivity", v)?,
            ServerPayload::VoiceActivityDetectionSignal(v) => map.serialize_entry("voiceActivityDetectionSignal", v)?,
            ServerPayload::UsageOnly => {}
            ServerPayload::Unknown(name) => map.serialize_entry(name, &Value::Object(Default::default()))?,
        }
        if let Some(u) = &self.usage_metadata {
            map.serialize_entry("usageMetadata", u)?;
        }
        map.end()
    }
}

/// Top-level keys, matched without allocating.
enum Key {
    SetupComplete,
    ServerContent,
    ToolCall,
    ToolCallCancellation,
    GoAway,
    SessionResumptionUpdate,
    VoiceActivity,
    VoiceActivityDetectionSignal,
    UsageMetadata,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KV;
        impl<'de> Visitor<'de> for KV {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "setupComplete" | "setup_complete" => Key::SetupComplete,
                    "serverContent" | "server_content" => Key::ServerContent,
                    "toolCall" | "tool_call" => Key::ToolCall,
                    "toolCallCancellation" | "tool_call_cancellation" => Key::ToolCallCancellation,
                    "goAway" | "go_away" => Key::GoAway,
                    "sessionResumptionUpdate" | "session_resumption_update" => Key::SessionResumptionUpdate,
                    "voiceActivity" | "voice_activity" => Key::VoiceActivity,
                    "voiceActivityDetectionSignal" | "voice_activity_detection_signal" => {
                        Key::VoiceActivityDetectionSignal
                    }
                    "usageMetadata" | "usage_metadata" => Key::UsageMetadata,
                    other => Key::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(KV)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ServerMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ServerMessage<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Live API server message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut payload: Option<ServerPayload<'a>> = None;
                let mut unknown: Option<String> = None;
                let mut usage = None;
                while let Some(key) = map.next_key::<Key>()? {
                    let p = match key {
                        Key::SetupComplete => ServerPayload::SetupComplete(map.next_value()?),
                        Key::ServerContent => ServerPayload::ServerContent(map.next_value()?),
                        Key::ToolCall => ServerPayload::ToolCall(map.next_value()?),
                        Key::ToolCallCancellation => ServerPayload::ToolCallCancellation(map.next_value()?),
                        Key::GoAway => ServerPayload::GoAway(map.next_value()?),
                        Key::SessionResumptionUpdate => ServerPayload::SessionResumptionUpdate(map.next_value()?),
                        Key::VoiceActivity => ServerPayload::VoiceActivity(map.next_value()?),
                        Key::VoiceActivityDetectionSignal => {
                            ServerPayload::VoiceActivityDetectionSignal(map.next_value()?)
                        }
                        Key::UsageMetadata => {
                            usage = Some(map.next_value()?);
                            continue;
                        }
                        Key::Other(name) => {
                            map.next_value::<IgnoredAny>()?;
                            unknown.get_or_insert(name);
                            continue;
                        }
                    };
                    if payload.is_some() {
                        return Err(de::Error::custom("server message has more than one payload"));
                    }
                    payload = Some(p);
                }
                let payload = match (payload, unknown) {
                    (Some(p), _) => p,
                    (None, Some(name)) => ServerPayload::Unknown(name),
                    (None, None) if usage.is_some() => ServerPayload::UsageOnly,
                    (None, None) => return Err(de::Error::custom("message has no payload")),
                };
                Ok(ServerMessage { payload, usage_metadata: usage })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}
