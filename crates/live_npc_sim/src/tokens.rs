//! Ephemeral tokens: `POST /v1alpha/auth_tokens` (minting) and the checks and setup constraints
//! applied on `...BidiGenerateContentConstrained` (live-protocol.md §1).
//!
//! - `uses`: default 1, 0 = unlimited; a new session consumes one use, resumption none.
//! - `expireTime` (default now + 30 min): no message is accepted after it (close 1008).
//! - `newSessionExpireTime` (default now + 60 s): no new session after it; resumption still works.
//! - Both must lie in the future and less than 20 hours ahead.
//! - `bidiGenerateContentSetup` + `fieldMask`: no mask → the token's setup replaces the
//!   client's; a mask → only the masked fields are taken from the token's setup (a masked field
//!   the token's setup lacks is removed from the client's). The client's
//!   `sessionResumption.handle` is always kept.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value};

use live_npc_client::protocol::{AuthToken, CreateAuthTokenRequest, DecodeError, Setup};
use live_npc_client::rfc3339::{format_rfc3339, parse_rfc3339};

/// Close reason (1008) of a token whose `expireTime` has passed. The service's wording is not
/// documented; this is the simulator's.
pub const TOKEN_EXPIRED: &str = "Auth token expired.";
/// Close reason (1008) of a token whose `newSessionExpireTime` has passed, for a new session.
pub const TOKEN_NEW_SESSIONS_EXPIRED: &str = "Auth token can no longer start new sessions.";
/// Close reason (1008) of a token with no uses left, for a new session.
pub const TOKEN_USED_UP: &str = "Auth token has no uses left.";

/// Tokens kept at once; expired ones go first, then the ones expiring soonest.
const MAX_TOKENS: usize = 4096;
/// Default `expireTime`: now + 30 minutes.
const DEFAULT_EXPIRE: Duration = Duration::from_secs(30 * 60);
/// Default `newSessionExpireTime`: now + 60 s.
const DEFAULT_NEW_SESSION: Duration = Duration::from_secs(60);
/// Times must be less than 20 hours ahead.
const MAX_AHEAD: Duration = Duration::from_secs(20 * 3600);

/// Top-level fields of `setup` a field mask may name (camelCase).
const SETUP_FIELDS: &[&str] = &[
    "model",
    "generationConfig",
    "systemInstruction",
    "tools",
    "realtimeInputConfig",
    "inputAudioTranscription",
    "outputAudioTranscription",
    "sessionResumption",
    "contextWindowCompression",
    "proactivity",
    "historyConfig",
    "safetySettings",
    "labels",
];

/// What a token imposes on the sessions it opens.
#[derive(Clone, Debug)]
pub(crate) struct Constraint {
    /// The locked setup as JSON (camelCase), if any.
    setup: Option<Value>,
    /// Masked paths, camelCase segments.
    mask: Option<Vec<Vec<String>>>,
    /// When messages stop being accepted.
    pub expire: SystemTime,
}

struct Token {
    /// `None` = unlimited.
    uses_left: Option<u32>,
    expire: SystemTime,
    new_session_expire: SystemTime,
    constraint: Constraint,
}

/// Why a token cannot open (or resume) a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Never minted here (or forgotten): 1007, like a bad key.
    Unknown,
    /// `expireTime` passed: 1008.
    Expired,
    /// `newSessionExpireTime` passed (new sessions only): 1008.
    NewSessionsExpired,
    /// No uses left (new sessions only): 1008.
    UsedUp,
}

impl Refusal {
    /// The close code and reason.
    pub fn close(self) -> (u16, &'static str) {
        match self {
            Refusal::Unknown => (1007, live_npc_client::protocol::reasons::API_KEY_INVALID),
            Refusal::Expired => (1008, TOKEN_EXPIRED),
            Refusal::NewSessionsExpired => (1008, TOKEN_NEW_SESSIONS_EXPIRED),
            Refusal::UsedUp => (1008, TOKEN_USED_UP),
        }
    }
}

/// A minting request the service would refuse (HTTP 400).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MintError(pub String);

/// The tokens of one simulator.
#[derive(Default)]
pub(crate) struct TokenStore {
    inner: Mutex<HashMap<String, Token>>,
}

impl TokenStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Token>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parses (strictly) and mints. `now` is the simulator's wall clock.
    pub fn mint_json(&self, body: &[u8], now: SystemTime, strict: bool) -> Result<AuthToken, MintError> {
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
        let parsed: Result<CreateAuthTokenRequest, DecodeError> = if strict {
            live_npc_client::protocol::strict::from_slice_strict(body)
        } else {
            serde_json::from_slice(body).map_err(|e| DecodeError::from_json(e, body.len()))
        };
        let request = parsed.map_err(|e| MintError(e.server_reason()))?;
        self.mint(request, now)
    }

    /// Mints a token for `request`.
    pub fn mint(&self, request: CreateAuthTokenRequest, now: SystemTime) -> Result<AuthToken, MintError> {
        let uses = request.uses.unwrap_or(1);
        if uses < 0 {
            return Err(MintError(format!("Invalid value at 'uses': {uses} (must be 0 or more).")));
        }
        let time = |field: &str, text: Option<&str>, default: Duration| -> Result<SystemTime, MintError> {
            let t = match text {
                None => now + default,
                Some(text) => parse_rfc3339(text).ok_or_else(|| {
                    MintError(format!(
                        "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Timestamp), \"{}\"",
                        live_npc_client::protocol::strict::truncate_value(text)
                    ))
                })?,
            };
            if t <= now {
                return Err(MintError(format!("{field} must be in the future.")));
            }
            if t >= now + MAX_AHEAD {
                return Err(MintError(format!("{field} must be less than 20 hours in the future.")));
            }
            Ok(t)
        };
        let expire = time("expire_time", request.expire_time.as_deref(), DEFAULT_EXPIRE)?;
        let new_session_expire =
            time("new_session_expire_time", request.new_session_expire_time.as_deref(), DEFAULT_NEW_SESSION)?
                .min(expire);
        let mask = match request.field_mask.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(parse_mask(m)?),
        };
        let setup = match &request.bidi_generate_content_setup {
            None => None,
            Some(s) => Some(serde_json::to_value(s).map_err(|e| MintError(e.to_string()))?),
        };
        let mut raw = [0u8; 24];
        for chunk in raw.chunks_mut(8) {
            chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
        }
        let name = format!("auth_tokens/{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        let token = Token {
            uses_left: (uses > 0).then_some(uses as u32),
            expire,
            new_session_expire,
            constraint: Constraint { setup, mask, expire },
        };
        let mut tokens = self.lock();
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, t| t.expire > now);
        }
        while tokens.len() >= MAX_TOKENS {
            let Some(soonest) = tokens.iter().min_by_key(|(_, t)| t.expire).map(|(k, _)| k.clone()) else {
                break;
            };
            tokens.remove(&soonest);
        }
        tokens.insert(name.clone(), token);
        Ok(AuthToken {
            name,
            uses: Some(uses),
            expire_time: Some(format_rfc3339(expire)),
            new_session_expire_time: Some(format_rfc3339(new_session_expire)),
            bidi_generate_content_setup: request.bidi_generate_content_setup,
            field_mask: request.field_mask,
        })
    }

    /// Checks `name` for a session starting at `now`; a new session consumes a use.
    pub fn begin(&self, name: &str, now: SystemTime, new_session: bool) -> Result<Constraint, Refusal> {
        let mut tokens = self.lock();
        let token = tokens.get_mut(name).ok_or(Refusal::Unknown)?;
        if now >= token.expire {
            return Err(Refusal::Expired);
        }
        if new_session {
            if now >= token.new_session_expire {
                return Err(Refusal::NewSessionsExpired);
            }
            match &mut token.uses_left {
                Some(0) => return Err(Refusal::UsedUp),
                Some(n) => *n -= 1,
                None => {}
            }
        }
        Ok(token.constraint.clone())
    }

    /// Whether `name` was minted here (and not forgotten).
    pub fn knows(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

/// `model,generationConfig.temperature` → camelCase segments; unknown top-level fields refused.
fn parse_mask(mask: &str) -> Result<Vec<Vec<String>>, MintError> {
    let mut out = Vec::new();
    for path in mask.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let segs: Vec<String> = path.split('.').map(camel).collect();
        let valid = segs.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()));
        if !valid || !SETUP_FIELDS.contains(&segs[0].as_str()) {
            return Err(MintError(format!(
                "Invalid field mask path \"{}\": no such field in bidi_generate_content_setup.",
                live_npc_client::protocol::strict::truncate_value(path)
            )));
        }
        out.push(segs);
    }
    Ok(out)
}

/// `generation_config` → `generationConfig` (camelCase input is kept).
fn camel(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut upper = false;
    for c in segment.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Applies a token's constraint to the client's setup. `None` when the result is not a valid
/// setup (cannot happen for setups that were valid on both sides).
pub(crate) fn constrain(client: &Setup<'_>, constraint: &Constraint) -> Option<Setup<'static>> {
    let Some(locked) = &constraint.setup else {
        return Some(client.clone().into_owned());
    };
    let client_value = serde_json::to_value(client).ok()?;
    let handle = client.session_resumption.as_ref().and_then(|r| r.handle.clone());
    let mut merged = match &constraint.mask {
        None => locked.clone(),
        Some(paths) => {
            let mut merged = client_value;
            for path in paths {
                match get_path(locked, path) {
                    Some(v) => set_path(&mut merged, path, v.clone()),
                    None => remove_path(&mut merged, path),
                }
            }
            merged
        }
    };
    // The resumption handle belongs to the connection, not to the configuration.
    if let Some(h) = handle
        && let Some(obj) = merged.as_object_mut()
    {
        let entry = obj.entry("sessionResumption").or_insert_with(|| Value::Object(Map::new()));
        if let Some(r) = entry.as_object_mut() {
            r.insert("handle".to_owned(), Value::String(h));
        }
    }
    let setup = Setup::deserialize_from(&merged)?;
    Some(setup)
}

fn get_path<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, seg| v.as_object()?.get(seg))
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let Some(obj) = cur.as_object_mut() else { return };
        let next = obj.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.insert(last.clone(), value);
    }
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        match cur.as_object_mut().and_then(|o| o.get_mut(seg)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.remove(last);
    }
}

/// Deserialization of a setup from a JSON value (owned result).
trait FromValue: Sized {
    fn deserialize_from(v: &Value) -> Option<Self>;
}

impl FromValue for Setup<'static> {
    fn deserialize_from(v: &Value) -> Option<Self> {
        use serde::Deserialize as _;
        Setup::deserialize(v).ok().map(Setup::into_owned)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn setup(v: Value) -> Setup<'static> {
        Setup::deserialize_from(&v).unwrap_or_default()
    }

    fn request(v: Value) -> CreateAuthTokenRequest {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn uses_expiry_and_resumption() {
        let store = TokenStore::default();
        let now = SystemTime::now();
        let t = store.mint(request(json!({"uses": 2})), now).map(|t| t.name).unwrap_or_default();
        assert!(store.begin(&t, now, true).is_ok());
        assert!(store.begin(&t, now, false).is_ok(), "resumption is free");
        assert!(store.begin(&t, now, true).is_ok());
        assert_eq!(store.begin(&t, now, true).err(), Some(Refusal::UsedUp));
        assert!(store.begin(&t, now, false).is_ok());
        let later = now + Duration::from_secs(61);
        assert!(store.begin(&t, later, false).is_ok());
        let u = store.mint(request(json!({"uses": 0})), now).map(|t| t.name).unwrap_or_default();
        for _ in 0..10 {
            assert!(store.begin(&u, now, true).is_ok());
        }
        assert_eq!(store.begin(&u, later, true).err(), Some(Refusal::NewSessionsExpired));
        let end = now + Duration::from_secs(31 * 60);
        assert_eq!(store.begin(&u, end, false).err(), Some(Refusal::Expired));
        assert_eq!(store.begin("auth_tokens/x", now, true).err(), Some(Refusal::Unknown));
    }

    #[test]
    fn bad_requests() {
        let store = TokenStore::default();
        let now = SystemTime::now();
        let bad = |v: Value| store.mint(request(v), now).is_err();
        assert!(bad(json!({"uses": -1})));
        assert!(bad(json!({"expireTime": "tomorrow"})));
        assert!(bad(json!({"expireTime": format_rfc3339(now + Duration::from_secs(21 * 3600))})));
        assert!(bad(json!({"expireTime": format_rfc3339(now - Duration::from_secs(1))})));
        assert!(bad(json!({"fieldMask": "nonsense"})));
        assert!(store.mint_json(br#"{"liveConnectConstraints": {}}"#, now, true).is_err());
        assert!(store.mint_json(b"", now, true).is_ok());
    }

    #[test]
    fn field_masks() {
        let client = setup(json!({
            "model": "models/a",
            "generationConfig": {"temperature": 0.1, "topK": 3},
            "systemInstruction": {"parts": [{"text": "client"}]},
            "sessionResumption": {"handle": "h"}
        }));
        let locked = json!({"model": "models/b", "generationConfig": {"temperature": 0.9}});
        let c = |mask: Option<&str>| Constraint {
            setup: Some(locked.clone()),
            mask: mask.map(|m| parse_mask(m).unwrap_or_default()),
            expire: SystemTime::now(),
        };
        // No mask: the token's setup replaces the client's (the handle stays).
        let s = constrain(&client, &c(None)).unwrap_or_default();
        assert_eq!(s.model, "models/b");
        assert!(s.system_instruction.is_none());
        assert_eq!(s.session_resumption.and_then(|r| r.handle).as_deref(), Some("h"));
        // A mask: only those fields.
        let s = constrain(&client, &c(Some("model, generation_config.temperature"))).unwrap_or_default();
        assert_eq!(s.model, "models/b");
        let g = s.generation_config.unwrap_or_default();
        assert_eq!((g.temperature, g.top_k), (Some(0.9), Some(3)));
        assert_eq!(s.system_instruction.map(|c| c.joined_text()).as_deref(), Some("client"));
        // A masked field the token's setup lacks is cleared.
        let s = constrain(&client, &c(Some("systemInstruction"))).unwrap_or_default();
        assert!(s.system_instruction.is_none());
        assert_eq!(s.model, "models/a");
        // No setup on the token: the client's setup is used.
        let none = Constraint { setup: None, mask: None, expire: SystemTime::now() };
        assert_eq!(constrain(&client, &none).map(|s| s.model).as_deref(), Some("models/a"));
    }
}
