//! Client → server messages (live-protocol.md §3).

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use serde_with::skip_serializing_none;

use super::codec::opt_int64;
use super::content::{Blob, Content, FunctionResponse, Tool};
use super::enums::*;

/// `generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrebuiltVoiceConfig {
    /// A prebuilt voice name (`Kore`, `Puck`, ...).
    #[serde(alias = "voice_name")]
    pub voice_name: Option<String>,
}

/// `generationConfig.speechConfig.voiceConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceConfig {
    /// A prebuilt voice.
    #[serde(alias = "prebuilt_voice_config")]
    pub prebuilt_voice_config: Option<PrebuiltVoiceConfig>,
}

/// `generationConfig.speechConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeechConfig {
    /// The voice.
    #[serde(alias = "voice_config")]
    pub voice_config: Option<VoiceConfig>,
    /// BCP-47 language code (ignored by native-audio models).
    #[serde(alias = "language_code")]
    pub language_code: Option<String>,
}

impl SpeechConfig {
    /// A speech config naming a prebuilt voice.
    pub fn voice(name: impl Into<String>) -> Self {
        SpeechConfig {
            voice_config: Some(VoiceConfig {
                prebuilt_voice_config: Some(PrebuiltVoiceConfig { voice_name: Some(name.into()) }),
            }),
            language_code: None,
        }
    }

    /// The prebuilt voice name, if any.
    pub fn voice_name(&self) -> Option<&str> {
        self.voice_config.as_ref()?.prebuilt_voice_config.as_ref()?.voice_name.as_deref()
    }
}

/// `generationConfig.thinkingConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    /// Token budget (2.5 models; 0 off, -1 automatic).
    #[serde(alias = "thinking_budget")]
    pub thinking_budget: Option<i32>,
    /// Level (3.x models).
    #[serde(alias = "thinking_level")]
    pub thinking_level: Option<ThinkingLevel>,
    /// Send thought summaries as `thought: true` parts.
    #[serde(alias = "include_thoughts")]
    pub include_thoughts: Option<bool>,
}

/// `setup.generationConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Exactly one output modality.
    #[serde(alias = "response_modalities")]
    pub response_modalities: Option<Vec<Modality>>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(alias = "top_p")]
    pub top_p: Option<f32>,
    /// Top-k sampling.
    #[serde(alias = "top_k")]
    pub top_k: Option<i32>,
    /// Maximum output tokens.
    #[serde(alias = "max_output_tokens")]
    pub max_output_tokens: Option<i32>,
    /// Number of candidates.
    #[serde(alias = "candidate_count")]
    pub candidate_count: Option<i32>,
    /// Presence penalty.
    #[serde(alias = "presence_penalty")]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(alias = "frequency_penalty")]
    pub frequency_penalty: Option<f32>,
    /// Random seed.
    pub seed: Option<i32>,
    /// Video resolution.
    #[serde(alias = "media_resolution")]
    pub media_resolution: Option<MediaResolution>,
    /// Voice and language.
    #[serde(alias = "speech_config")]
    pub speech_config: Option<SpeechConfig>,
    /// Thinking.
    #[serde(alias = "thinking_config")]
    pub thinking_config: Option<ThinkingConfig>,
    /// Affective dialog: the model adapts to the user's tone.
    #[serde(alias = "enable_affective_dialog")]
    pub enable_affective_dialog: Option<bool>,
}

/// `realtimeInputConfig.automaticActivityDetection`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticActivityDetection {
    /// Disable the server's VAD (the client sends `activityStart`/`activityEnd`).
    pub disabled: Option<bool>,
    /// Start-of-speech sensitivity.
    #[serde(alias = "start_of_speech_sensitivity")]
    pub start_of_speech_sensitivity: Option<StartSensitivity>,
    /// End-of-speech sensitivity.
    #[serde(alias = "end_of_speech_sensitivity")]
    pub end_of_speech_sensitivity: Option<EndSensitivity>,
    /// Speech needed before start of speech is committed (ms).
    #[serde(alias = "prefix_padding_ms")]
    pub prefix_padding_ms: Option<i32>,
    /// Silence needed before end of speech is committed (ms).
    #[serde(alias = "silence_duration_ms")]
    pub silence_duration_ms: Option<i32>,
}

/// `setup.realtimeInputConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeInputConfig {
    /// The server's VAD.
    #[serde(alias = "automatic_activity_detection")]
    pub automatic_activity_detection: Option<AutomaticActivityDetection>,
    /// Barge-in behaviour.
    #[serde(alias = "activity_handling")]
    pub activity_handling: Option<ActivityHandling>,
    /// Which input makes up a turn.
    #[serde(alias = "turn_coverage")]
    pub turn_coverage: Option<TurnCoverage>,
}

/// `inputAudioTranscription` / `outputAudioTranscription`; `{}` enables.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioTranscriptionConfig {
    /// Expected languages.
    #[serde(alias = "language_codes")]
    pub language_codes: Option<Vec<String>>,
}

/// `setup.sessionResumption`: `{}` for a new resumable session, a handle to resume.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionResumptionConfig {
    /// Handle of the session to resume.
    pub handle: Option<String>,
    /// Vertex only: transparent resumption.
    pub transparent: Option<bool>,
}

/// `contextWindowCompression.slidingWindow`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlidingWindow {
    /// Tokens to keep after compression (int64).
    #[serde(alias = "target_tokens", default, with = "opt_int64")]
    pub target_tokens: Option<i64>,
}

/// `setup.contextWindowCompression`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextWindowCompressionConfig {
    /// Context size that triggers compression (int64).
    #[serde(alias = "trigger_tokens", default, with = "opt_int64")]
    pub trigger_tokens: Option<i64>,
    /// Sliding-window compression.
    #[serde(alias = "sliding_window")]
    pub sliding_window: Option<SlidingWindow>,
}

/// `setup.proactivity`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProactivityConfig {
    /// The model may stay silent for input not addressed to it.
    #[serde(alias = "proactive_audio")]
    pub proactive_audio: Option<bool>,
    /// Proactive video (needs audio).
    #[serde(alias = "proactive_video")]
    pub proactive_video: Option<bool>,
}

/// `setup.historyConfig`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryConfig {
    /// Take initial history from `clientContent` up to `turnComplete: true`.
    #[serde(alias = "initial_history_in_client_content")]
    pub initial_history_in_client_content: Option<bool>,
}

/// One `setup.safetySettings[]` entry.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct SafetySetting {
    /// Category.
    pub category: Option<HarmCategory>,
    /// Threshold.
    pub threshold: Option<HarmBlockThreshold>,
}

/// The first client message: the session's whole configuration.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup<'a> {
    /// `models/{id}`.
    pub model: String,
    /// Generation parameters, modality, voice.
    #[serde(alias = "generation_config")]
    pub generation_config: Option<GenerationConfig>,
    /// Persona (text parts).
    #[serde(borrow, alias = "system_instruction")]
    pub system_instruction: Option<Content<'a>>,
    /// Tools.
    pub tools: Option<Vec<Tool>>,
    /// VAD and barge-in.
    #[serde(alias = "realtime_input_config")]
    pub realtime_input_config: Option<RealtimeInputConfig>,
    /// Transcribe the user's audio.
    #[serde(alias = "input_audio_transcription")]
    pub input_audio_transcription: Option<AudioTranscriptionConfig>,
    /// Transcribe the model's audio.
    #[serde(alias = "output_audio_transcription")]
    pub output_audio_transcription: Option<AudioTranscriptionConfig>,
    /// Resumption.
    #[serde(alias = "session_resumption")]
    pub session_resumption: Option<SessionResumptionConfig>,
    /// Context compression (removes the session length cap).
    #[serde(alias = "context_window_compression")]
    pub context_window_compression: Option<ContextWindowCompressionConfig>,
    /// Proactive audio.
    pub proactivity: Option<ProactivityConfig>,
    /// History handling.
    #[serde(alias = "history_config")]
    pub history_config: Option<HistoryConfig>,
    /// Safety settings.
    #[serde(alias = "safety_settings")]
    pub safety_settings: Option<Vec<SafetySetting>>,
    /// Free-form labels (billing).
    pub labels: Option<Map<String, Value>>,
}

impl Setup<'_> {
    /// Copies borrowed data so the setup outlives its frame.
    pub fn into_owned(self) -> Setup<'static> {
        Setup {
            model: self.model,
            generation_config: self.generation_config,
            system_instruction: self.system_instruction.map(Content::into_owned),
            tools: self.tools,
            realtime_input_config: self.realtime_input_config,
            input_audio_transcription: self.input_audio_transcription,
            output_audio_transcription: self.output_audio_transcription,
            session_resumption: self.session_resumption,
            context_window_compression: self.context_window_compression,
            proactivity: self.proactivity,
            history_config: self.history_config,
            safety_settings: self.safety_settings,
            labels: self.labels,
        }
    }

    /// The system instruction's text.
    pub fn system_text(&self) -> String {
        self.system_instruction.as_ref().map(Content::joined_text).unwrap_or_default()
    }

    /// All function declarations across the tool entries.
    pub fn function_declarations(&self) -> impl Iterator<Item = &super::content::FunctionDeclaration> {
        self.tools.iter().flatten().filter_map(|t| t.function_declarations.as_ref()).flatten()
    }
}

/// `clientContent`: ordered turns appended to the conversation.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientContent<'a> {
    /// Turns to append.
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Content<'a>>,
    /// `true` starts generation.
    #[serde(alias = "turn_complete")]
    pub turn_complete: Option<bool>,
}

/// `realtimeInput.activityStart` / `activityEnd` (empty objects).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActivityMarker {}

/// `realtimeInput`: one stream item per message.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeInput<'a> {
    /// Microphone audio (`audio/pcm;rate=16000`).
    #[serde(borrow)]
    pub audio: Option<Blob<'a>>,
    /// A video frame (JPEG/PNG).
    #[serde(borrow)]
    pub video: Option<Blob<'a>>,
    /// Text input.
    pub text: Option<String>,
    /// Manual VAD: the user started.
    #[serde(alias = "activity_start")]
    pub activity_start: Option<ActivityMarker>,
    /// Manual VAD: the user stopped.
    #[serde(alias = "activity_end")]
    pub activity_end: Option<ActivityMarker>,
    /// The microphone paused (automatic VAD).
    #[serde(alias = "audio_stream_end")]
    pub audio_stream_end: Option<bool>,
    /// Deprecated: media chunks; only the first is used.
    #[serde(borrow, alias = "media_chunks")]
    pub media_chunks: Option<Vec<Blob<'a>>>,
}

impl RealtimeInput<'_> {
    /// Audio of this message, from `audio` or the legacy `mediaChunks[0]`.
    pub fn audio_blob(&self) -> Option<&Blob<'_>> {
        self.audio.as_ref().or_else(|| {
            self.media_chunks.as_ref().and_then(|c| c.first()).filter(|b| b.mime_type.starts_with("audio/"))
        })
    }
}

/// `toolResponse`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResponse<'a> {
    /// One response per call.
    #[serde(borrow, alias = "function_responses", default)]
    pub function_responses: Vec<FunctionResponse<'a>>,
}

/// `contextUpdate.tools`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolsUpdate {
    /// The new tool list (empty clears it).
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// `contextUpdate`: replace the system instruction and/or tools mid-session.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextUpdate<'a> {
    /// New persona.
    #[serde(borrow, alias = "system_instruction")]
    pub system_instruction: Option<Content<'a>>,
    /// New tools.
    pub tools: Option<ToolsUpdate>,
}

/// A client → server message. Parses both casings of every name.
// `setup` is sent once per connection; boxing it would cost every caller for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage<'a> {
    /// `setup`.
    Setup(Setup<'a>),
    /// `clientContent`.
    ClientContent(ClientContent<'a>),
    /// `realtimeInput`.
    RealtimeInput(RealtimeInput<'a>),
    /// `toolResponse`.
    ToolResponse(ToolResponse<'a>),
    /// `contextUpdate`.
    ContextUpdate(ContextUpdate<'a>),
}

impl<'a> ClientMessage<'a> {
    /// The wire name of this message's payload key.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Setup(_) => "setup",
            ClientMessage::ClientContent(_) => "clientContent",
            ClientMessage::RealtimeInput(_) => "realtimeInput",
            ClientMessage::ToolResponse(_) => "toolResponse",
            ClientMessage::ContextUpdate(_) => "contextUpdate",
        }
    }

    /// A `realtimeInput.audio` message with 16-bit PCM at `rate` Hz.
    pub fn audio(samples: &[i16], rate: u32) -> ClientMessage<'static> {
        ClientMessage::RealtimeInput(RealtimeInput { audio: Some(Blob::pcm16(samples, rate)), ..Default::default() })
    }

    /// A `realtimeInput.text` message.
    pub fn realtime_text(text: impl Into<String>) -> ClientMessage<'static> {
        ClientMessage::RealtimeInput(RealtimeInput { text: Some(text.into()), ..Default::default() })
    }

    /// A complete user turn of text (`clientContent` with `turnComplete: true`).
    pub fn user_turn(text: impl Into<String>) -> ClientMessage<'static> {
        ClientMessage::ClientContent(ClientContent { turns: vec![Content::user_text(text)], turn_complete: Some(true) })
    }

    /// `realtimeInput.activityStart`.
    pub fn activity_start() -> ClientMessage<'static> {
        ClientMessage::RealtimeInput(RealtimeInput { activity_start: Some(ActivityMarker {}), ..Default::default() })
    }

    /// `realtimeInput.activityEnd`.
    pub fn activity_end() -> ClientMessage<'static> {
        ClientMessage::RealtimeInput(RealtimeInput { activity_end: Some(ActivityMarker {}), ..Default::default() })
    }

    /// `realtimeInput.audioStreamEnd`.
    pub fn audio_stream_end() -> ClientMessage<'static> {
        ClientMessage::RealtimeInput(RealtimeInput { audio_stream_end: Some(true), ..Default::default() })
    }

    /// Serializes to canonical JSON (camelCase, standard base64).
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: all maps have string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses leniently (client-side tolerance: unknown fields and enum values kept or ignored).
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, super::error::DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| super::error::DecodeError::from_json(e, bytes.len()))
    }

    /// Parses as the real server does: unknown fields and enum values are errors.
    #[cfg(feature = "strict")]
    #[cfg_attr(docsrs, doc(cfg(feature = "strict")))]
    pub fn from_slice_strict(bytes: &'a [u8]) -> Result<Self, super::error::DecodeError> {
        super::strict::from_slice_strict(bytes)
    }

    /// Copies borrowed data so the message outlives its frame.
    pub fn into_owned(self) -> ClientMessage<'static> {
        match self {
            ClientMessage::Setup(s) => ClientMessage::Setup(s.into_owned()),
            ClientMessage::ClientContent(c) => ClientMessage::ClientContent(ClientContent {
                turns: c.turns.into_iter().map(Content::into_owned).collect(),
                turn_complete: c.turn_complete,
            }),
            ClientMessage::RealtimeInput(r) => ClientMessage::RealtimeInput(RealtimeInput {
                audio: r.audio.map(Blob::into_owned),
                video: r.video.map(Blob::into_owned),
                text: r.text,
                activity_start: r.activity_start,
                activity_end: r.activity_end,
                audio_stream_end: r.audio_stream_end,
                media_chunks: r.media_chunks.map(|c| c.into_iter().map(Blob::into_owned).collect()),
            }),
            ClientMessage::ToolResponse(t) => ClientMessage::ToolResponse(ToolResponse {
                function_responses: t.function_responses.into_iter().map(FunctionResponse::into_owned).collect(),
            }),
            ClientMessage::ContextUpdate(c) => ClientMessage::ContextUpdate(ContextUpdate {
                system_instruction: c.system_instruction.map(Content::into_owned),
                tools: c.tools,
            }),
        }
    }
}

impl Serialize for ClientMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            ClientMessage::Setup(v) => map.serialize_entry("setup", v)?,
            ClientMessage::ClientContent(v) => map.serialize_entry("clientContent", v)?,
            ClientMessage::RealtimeInput(v) => map.serialize_entry("realtimeInput", v)?,
            ClientMessage::ToolResponse(v) => map.serialize_entry("toolResponse", v)?,
            ClientMessage::ContextUpdate(v) => map.serialize_entry("contextUpdate", v)?,
        }
        map.end()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ClientMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ClientMessage<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Live API client message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found: Option<ClientMessage<'a>> = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let msg = match key.as_ref() {
                        "setup" => ClientMessage::Setup(map.next_value()?),
                        "clientContent" | "client_content" => ClientMessage::ClientContent(map.next_value()?),
                        "realtimeInput" | "realtime_input" => ClientMessage::RealtimeInput(map.next_value()?),
                        "toolResponse" | "tool_response" => ClientMessage::ToolResponse(map.next_value()?),
                        "contextUpdate" | "context_update" => ClientMessage::ContextUpdate(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if let Some(prev) = &found {
                        return Err(de::Error::custom(format_args!(
                            "oneof field 'message_type' is already set. Cannot set '{}'",
                            prev.kind()
                        )));
                    }
                    found = Some(msg);
                }
                found.ok_or_else(|| de::Error::custom("message has no payload"))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}
