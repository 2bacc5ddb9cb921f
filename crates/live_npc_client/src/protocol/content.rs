//! Types shared by both directions: content, parts, blobs, tools and function calls.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_with::skip_serializing_none;

use super::codec::{Base64Data, MimeType};
use super::enums::{Behavior, CodeLanguage, CodeOutcome, Role, Scheduling};
use super::error::DecodeError;

/// Inline bytes with their media type (`inlineData`, `realtimeInput.audio`, ...).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    /// Media type, e.g. `audio/pcm;rate=24000`.
    #[serde(alias = "mime_type", default)]
    pub mime_type: String,
    /// The bytes, as base64 text borrowed from the frame where possible.
    #[serde(borrow, default)]
    pub data: Base64Data<'a>,
}

impl<'a> Blob<'a> {
    /// 16-bit little-endian mono PCM at `rate` Hz.
    pub fn pcm16(samples: &[i16], rate: u32) -> Blob<'static> {
        Blob { mime_type: MimeType::pcm(rate), data: Base64Data::encode_pcm16(samples) }
    }

    /// Any bytes with a media type.
    pub fn new(mime_type: impl Into<String>, bytes: &[u8]) -> Blob<'static> {
        Blob { mime_type: mime_type.into(), data: Base64Data::encode(bytes) }
    }

    /// The parsed media type.
    pub fn mime(&self) -> Result<MimeType, DecodeError> {
        MimeType::parse(&self.mime_type)
    }

    /// Copies borrowed data so the blob outlives its frame.
    pub fn into_owned(self) -> Blob<'static> {
        Blob { mime_type: self.mime_type, data: self.data.into_owned() }
    }
}

/// A reference to a file by URI.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    /// Media type.
    #[serde(alias = "mime_type")]
    pub mime_type: Option<String>,
    /// The file's URI.
    #[serde(alias = "file_uri")]
    pub file_uri: Option<String>,
}

/// Code the model generated (`executableCode` part).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ExecutableCode {
    /// Programming language.
    pub language: Option<CodeLanguage>,
    /// The code.
    pub code: Option<String>,
}

/// The result of running [`ExecutableCode`] (`codeExecutionResult` part).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct CodeExecutionResult {
    /// How it ended.
    pub outcome: Option<CodeOutcome>,
    /// What it printed.
    pub output: Option<String>,
}

/// One part of a [`Content`]. Exactly one data field is normally set; `thought` marks a
/// thinking summary.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    /// Text.
    pub text: Option<String>,
    /// Inline bytes (model audio).
    #[serde(borrow, alias = "inline_data")]
    pub inline_data: Option<Blob<'a>>,
    /// A file reference.
    #[serde(alias = "file_data")]
    pub file_data: Option<FileData>,
    /// A function call (in history).
    #[serde(alias = "function_call")]
    pub function_call: Option<FunctionCall>,
    /// A function response (in history).
    #[serde(borrow, alias = "function_response")]
    pub function_response: Option<FunctionResponse<'a>>,
    /// Generated code.
    #[serde(alias = "executable_code")]
    pub executable_code: Option<ExecutableCode>,
    /// Generated code's result.
    #[serde(alias = "code_execution_result")]
    pub code_execution_result: Option<CodeExecutionResult>,
    /// Whether this part is a thought summary.
    pub thought: Option<bool>,
    /// Opaque thought signature (base64).
    #[serde(borrow, alias = "thought_signature")]
    pub thought_signature: Option<Base64Data<'a>>,
}

impl<'a> Part<'a> {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Part<'static> {
        Part { text: Some(text.into()), ..Default::default() }
    }

    /// An inline-data part.
    pub fn inline(blob: Blob<'a>) -> Part<'a> {
        Part { inline_data: Some(blob), ..Default::default() }
    }

    /// Whether this is a thought summary.
    pub fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }

    /// Copies borrowed data so the part outlives its frame.
    pub fn into_owned(self) -> Part<'static> {
        Part {
            text: self.text,
            inline_data: self.inline_data.map(Blob::into_owned),
            file_data: self.file_data,
            function_call: self.function_call,
            function_response: self.function_response.map(FunctionResponse::into_owned),
            executable_code: self.executable_code,
            code_execution_result: self.code_execution_result,
            thought: self.thought,
            thought_signature: self.thought_signature.map(Base64Data::into_owned),
        }
    }
}

/// A conversation turn: a role and its parts.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Content<'a> {
    /// `user` or `model` (may be absent on server output).
    pub role: Option<Role>,
    /// The parts, in order.
    #[serde(borrow, default)]
    pub parts: Vec<Part<'a>>,
}

impl<'a> Content<'a> {
    /// A user turn with one text part.
    pub fn user_text(text: impl Into<String>) -> Content<'static> {
        Content { role: Some(Role::User), parts: vec![Part::text(text)] }
    }

    /// A model turn with one text part.
    pub fn model_text(text: impl Into<String>) -> Content<'static> {
        Content { role: Some(Role::Model), parts: vec![Part::text(text)] }
    }

    /// The concatenated text of all non-thought text parts.
    pub fn joined_text(&self) -> String {
        self.parts.iter().filter(|p| !p.is_thought()).filter_map(|p| p.text.as_deref()).collect()
    }

    /// Copies borrowed data so the content outlives its frame.
    pub fn into_owned(self) -> Content<'static> {
        Content { role: self.role, parts: self.parts.into_iter().map(Part::into_owned).collect() }
    }
}

/// A function the model may call.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    /// Name (≤ 128 chars of letters, digits, `_ . : -`).
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// BLOCKING or `NON_BLOCKING`.
    pub behavior: Option<Behavior>,
    /// Parameters as an OpenAPI-subset schema (`type: OBJECT`, ...).
    pub parameters: Option<Value>,
    /// Parameters as plain JSON Schema.
    #[serde(alias = "parameters_json_schema")]
    pub parameters_json_schema: Option<Value>,
    /// Response as an OpenAPI-subset schema.
    pub response: Option<Value>,
    /// Response as plain JSON Schema.
    #[serde(alias = "response_json_schema")]
    pub response_json_schema: Option<Value>,
}

impl FunctionDeclaration {
    /// The parameter schema, whichever form it was given in.
    pub fn parameter_schema(&self) -> Option<&Value> {
        self.parameters_json_schema.as_ref().or(self.parameters.as_ref())
    }
}

/// An empty configuration object (`googleSearch: {}` and friends).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// One tool entry: exactly one kind per object.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// Functions the game implements.
    #[serde(alias = "function_declarations")]
    pub function_declarations: Option<Vec<FunctionDeclaration>>,
    /// Google Search grounding.
    #[serde(alias = "google_search")]
    pub google_search: Option<Empty>,
    /// Server-side code execution.
    #[serde(alias = "code_execution")]
    pub code_execution: Option<Empty>,
    /// URL context.
    #[serde(alias = "url_context")]
    pub url_context: Option<Empty>,
    /// Google Maps grounding.
    #[serde(alias = "google_maps")]
    pub google_maps: Option<Empty>,
}

impl Tool {
    /// A tool entry holding function declarations.
    pub fn functions(decls: Vec<FunctionDeclaration>) -> Tool {
        Tool { function_declarations: Some(decls), ..Default::default() }
    }
}

/// A call the model asks the client to run (`toolCall.functionCalls[]`).
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Call id, echoed in the response.
    pub id: Option<String>,
    /// Function name.
    pub name: String,
    /// Arguments (a JSON object).
    pub args: Option<Map<String, Value>>,
}

/// One part of a function response carrying media.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponsePart<'a> {
    /// Inline bytes.
    #[serde(borrow, alias = "inline_data")]
    pub inline_data: Option<Blob<'a>>,
    /// A file reference.
    #[serde(alias = "file_data")]
    pub file_data: Option<FileData>,
}

/// The client's answer to one [`FunctionCall`].
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse<'a> {
    /// The call's id.
    pub id: Option<String>,
    /// The function's name.
    pub name: String,
    /// The result object; by convention `{"output": ...}` or `{"error": "..."}`.
    pub response: Option<Map<String, Value>>,
    /// When a `NON_BLOCKING` result is spoken about (a sibling of `response`).
    pub scheduling: Option<Scheduling>,
    /// More responses for the same call will follow.
    #[serde(alias = "will_continue")]
    pub will_continue: Option<bool>,
    /// Media parts of the result.
    #[serde(borrow)]
    pub parts: Option<Vec<FunctionResponsePart<'a>>>,
}

impl FunctionResponse<'static> {
    /// A successful result: `{"output": value}`.
    pub fn output(id: Option<String>, name: impl Into<String>, value: Value) -> Self {
        let mut response = Map::new();
        response.insert("output".into(), value);
        FunctionResponse { id, name: name.into(), response: Some(response), ..Default::default() }
    }

    /// A failed call: `{"error": message}`.
    pub fn error(id: Option<String>, name: impl Into<String>, message: impl Into<String>) -> Self {
        let mut response = Map::new();
        response.insert("error".into(), Value::String(message.into()));
        FunctionResponse { id, name: name.into(), response: Some(response), ..Default::default() }
    }
}

impl<'a> FunctionResponse<'a> {
    /// Sets the scheduling of a `NON_BLOCKING` result.
    pub fn with_scheduling(mut self, scheduling: Scheduling) -> Self {
        self.scheduling = Some(scheduling);
        self
    }

    /// Copies borrowed data so the response outlives its frame.
    pub fn into_owned(self) -> FunctionResponse<'static> {
        FunctionResponse {
            id: self.id,
            name: self.name,
            response: self.response,
            scheduling: self.scheduling,
            will_continue: self.will_continue,
            parts: self.parts.map(|ps| {
                ps.into_iter()
                    .map(|p| FunctionResponsePart {
                        inline_data: p.inline_data.map(Blob::into_owned),
                        file_data: p.file_data,
                    })
                    .collect()
            }),
        }
    }
}
