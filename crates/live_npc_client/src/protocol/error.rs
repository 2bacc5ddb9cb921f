//! Errors: decoding failures and the Live API's close codes as a typed error.

use std::fmt;

use thiserror::Error;

/// A message that could not be decoded. Never fatal on the client: the frame is counted and
/// skipped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("invalid JSON ({category}) at line {line} column {column}: {message}")]
    Json {
        /// `syntax`, `data` (wrong shape or type), `eof` (truncated) or `io`.
        category: &'static str,
        /// `serde_json`'s description.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A `bytes` field is not valid base64 in either alphabet.
    #[error("invalid base64 ({len} characters)")]
    Base64 {
        /// Length of the text.
        len: usize,
    },
    /// 16-bit PCM with an odd number of bytes.
    #[error("PCM data has an odd number of bytes ({bytes})")]
    OddPcmLength {
        /// Decoded byte count.
        bytes: usize,
    },
    /// A malformed media type or `rate=` parameter.
    #[error("invalid media type {text:?}")]
    MimeType {
        /// The text (first 64 characters).
        text: String,
    },
    /// Strict mode: a field the protocol does not have.
    #[error("{message}")]
    UnknownField {
        /// The unknown name as sent.
        name: String,
        /// Where it was, as a proto path (`setup.generation_config`).
        path: String,
        /// The server's wording.
        message: String,
    },
    /// Strict mode: an enum value the protocol does not have.
    #[error("{message}")]
    InvalidValue {
        /// The server's wording.
        message: String,
    },
    /// A frame larger than the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Frame size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// Wraps a `serde_json` error.
    pub fn from_json(e: serde_json::Error, _len: usize) -> Self {
        use serde_json::error::Category;
        let category = match e.classify() {
            Category::Io => "io",
            Category::Syntax => "syntax",
            Category::Data => "data",
            Category::Eof => "eof",
        };
        let mut message = e.to_string();
        // serde_json appends the position; it is kept in its own fields.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        DecodeError::Json { category, message, line: e.line(), column: e.column() }
    }

    /// The close reason the real server would give for this error (≤ 123 bytes).
    pub fn server_reason(&self) -> String {
        let text = match self {
            DecodeError::UnknownField { message, .. } | DecodeError::InvalidValue { message } => message.clone(),
            DecodeError::Json { message, .. } => format!("Invalid JSON payload received. {message}"),
            _ => "Request contains an invalid argument.".to_owned(),
        };
        truncate_reason(&text)
    }
}

/// WebSocket close codes the Live API uses (live-protocol.md §6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
pub enum CloseCode {
    /// 1000: normal close.
    Normal,
    /// 1001: going away.
    GoingAway,
    /// 1006: no close frame (network or proxy).
    Abnormal,
    /// 1007: `INVALID_ARGUMENT` (bad key, unknown field, bad value).
    InvalidArgument,
    /// 1008: `NOT_FOUND` / `PERMISSION_DENIED` / UNIMPLEMENTED / unauthenticated.
    PolicyViolation,
    /// 1009: message too big.
    TooBig,
    /// 1011: INTERNAL / UNAVAILABLE / `DEADLINE_EXCEEDED` / `RESOURCE_EXHAUSTED`.
    Internal,
    /// Any other code.
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Abnormal => 1006,
            CloseCode::InvalidArgument => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::Other(c) => c,
        }
    }
}

impl From<u16> for CloseCode {
    fn from(c: u16) -> Self {
        match c {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1006 => CloseCode::Abnormal,
            1007 => CloseCode::InvalidArgument,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::TooBig,
            1011 => CloseCode::Internal,
            c => CloseCode::Other(c),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// What a client should do after a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
pub enum Retry {
    /// Retrying cannot help (bad key, bad request, quota, normal close).
    Never,
    /// A drop: reconnect and resume with the last handle.
    Resume,
    /// The resumption handle is gone: open a fresh session (the context is lost).
    Fresh,
}

/// Close reasons the real service sends, word for word.
pub mod reasons {
    /// 1007, wrong API key.
    pub const API_KEY_INVALID: &str = "API key not valid. Please pass a valid API key.";
    /// 1007, generic.
    pub const INVALID_ARGUMENT: &str = "Request contains an invalid argument.";
    /// 1008, no key at all.
    pub const UNREGISTERED_CALLER: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API c";
    /// 1008, operation not supported (e.g. audio while a BLOCKING call is pending).
    pub const NOT_IMPLEMENTED: &str = "Operation is not implemented, or supported, or enabled.";
    /// 1008, stale resumption handle.
    pub const SESSION_NOT_FOUND: &str = "BidiGenerateContent session not found";
    /// 1008, aborted.
    pub const ABORTED: &str = "The operation was aborted.";
    /// 1011, internal.
    pub const INTERNAL: &str = "Internal error occurred.";
    /// 1011, unavailable.
    pub const UNAVAILABLE: &str = "The service is currently unavailable.";
    /// 1011, the connection's lifetime ended (after `goAway`).
    pub const DEADLINE_EXPIRED: &str = "Deadline expired before operation could complete.";
    /// 1011, quota.
    pub const QUOTA: &str = "You exceeded your current quota, please check your plan and billing details.";
    /// 1011, resource exhausted.
    pub const EXHAUSTED: &str = "Resource has been exhausted (e.g. check quota).";

    /// 1008, unknown model, for API `version` (`v1beta`).
    pub fn model_not_found(model: &str, version: &str) -> String {
        super::truncate_reason(&format!(
            "{model} is not found for API version {version}, or is not supported for bidiGenerateContent. Call ListModels to see the list of available models and their supported methods."
        ))
    }
}

/// Truncates a close reason to the 123-byte WebSocket limit on a character boundary.
pub fn truncate_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// An error from the Live API or the connection to it: the close code, the server's reason,
/// and whether retrying can help. Carries no secrets: reasons are scrubbed of key material.
#[derive(Clone, PartialEq, Eq, Error)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
#[error("{code} {reason}")]
pub struct LiveError {
    /// The WebSocket close code (1006 when the connection dropped without one).
    pub code: CloseCode,
    /// The server's reason text (or a description of the local failure).
    pub reason: String,
    /// What a client should do.
    pub retry: Retry,
}

impl fmt::Debug for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveError")
            .field("code", &self.code.code())
            .field("reason", &self.reason)
            .field("retry", &self.retry)
            .finish()
    }
}

impl LiveError {
    /// Classifies a close frame as live-protocol.md §6.6 and the session issue describe.
    pub fn from_close(code: u16, reason: &str) -> LiveError {
        let code = CloseCode::from(code);
        let reason = scrub_secrets(reason);
        let lower = reason.to_ascii_lowercase();
        let retry = match code {
            CloseCode::Normal => Retry::Never,
            CloseCode::InvalidArgument => Retry::Never,
            CloseCode::PolicyViolation if lower.contains("session not found") => Retry::Fresh,
            CloseCode::PolicyViolation => Retry::Never,
            CloseCode::Internal if lower.contains("quota") || lower.contains("exhausted") => Retry::Never,
            CloseCode::Internal => Retry::Resume,
            _ => Retry::Resume,
        };
        LiveError { code, reason, retry }
    }

    /// A connection that dropped without a close frame (1006), e.g. a read error.
    pub fn dropped(description: impl Into<String>) -> LiveError {
        LiveError { code: CloseCode::Abnormal, reason: scrub_secrets(&description.into()), retry: Retry::Resume }
    }

    /// A local error retrying cannot fix (configuration, an option the model rejects).
    pub fn fatal(code: CloseCode, description: impl Into<String>) -> LiveError {
        LiveError { code, reason: scrub_secrets(&description.into()), retry: Retry::Never }
    }

    /// Whether reconnecting (resume or fresh) can help.
    pub fn is_retryable(&self) -> bool {
        self.retry != Retry::Never
    }
}

/// Removes key material from text that may quote a URL or header (`key=...`,
/// `access_token=...`, `auth_tokens/...`).
pub fn scrub_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    const MARKERS: [&str; 4] = ["key=", "access_token=", "auth_tokens/", "AIza"];
    loop {
        let next = MARKERS.iter().filter_map(|m| rest.find(m).map(|i| (i, *m))).min_by_key(|(i, _)| *i);
        let Some((i, marker)) = next else {
            out.push_str(rest);
            break;
        };
        let keep_marker = if marker == "AIza" { "" } else { marker };
        out.push_str(&rest[..i]);
        out.push_str(keep_marker);
        out.push_str("REDACTED");
        let after = &rest[i + marker.len()..];
        let end = after.find(['&', ' ', '"', '\'', ',', ')']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(LiveError::from_close(1007, reasons::API_KEY_INVALID).retry, Retry::Never);
        assert_eq!(LiveError::from_close(1008, reasons::SESSION_NOT_FOUND).retry, Retry::Fresh);
        assert_eq!(LiveError::from_close(1008, reasons::NOT_IMPLEMENTED).retry, Retry::Never);
        assert_eq!(LiveError::from_close(1011, reasons::QUOTA).retry, Retry::Never);
        assert_eq!(LiveError::from_close(1011, reasons::EXHAUSTED).retry, Retry::Never);
        assert_eq!(LiveError::from_close(1011, reasons::DEADLINE_EXPIRED).retry, Retry::Resume);
        assert_eq!(LiveError::from_close(1006, "").retry, Retry::Resume);
    }

    #[test]
    fn secrets_are_scrubbed() {
        let e = LiveError::dropped("GET /ws?key=AIzaSECRET123&x=1 failed, access_token=auth_tokens/abc");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("SECRET123"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
    }
}
