//! Ephemeral tokens (`POST /v1alpha/auth_tokens`): a game backend mints short-lived tokens so a
//! game client never holds the API key.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_with::skip_serializing_none;

use super::client::Setup;

/// Body of `POST /v1alpha/auth_tokens`.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAuthTokenRequest {
    /// How many sessions the token may open (default 1; 0 = unlimited). Resumption is free.
    pub uses: Option<i32>,
    /// RFC 3339 time after which messages are rejected (default now + 30 min).
    #[serde(alias = "expire_time")]
    pub expire_time: Option<String>,
    /// RFC 3339 time after which no new session may start (default now + 60 s).
    #[serde(alias = "new_session_expire_time")]
    pub new_session_expire_time: Option<String>,
    /// Setup the token locks in (the SDK's `live_connect_constraints`).
    #[serde(alias = "bidi_generate_content_setup", default, deserialize_with = "owned_setup")]
    pub bidi_generate_content_setup: Option<Setup<'static>>,
    /// Which fields of the locked setup override the client's (`model,generationConfig.temperature`).
    #[serde(alias = "field_mask")]
    pub field_mask: Option<String>,
}

/// A minted token. `name` (`auth_tokens/...`) is the secret; `Debug` never shows it.
#[skip_serializing_none]
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthToken {
    /// The token itself.
    pub name: String,
    /// Uses allowed.
    pub uses: Option<i32>,
    /// Expiry (RFC 3339).
    #[serde(alias = "expire_time")]
    pub expire_time: Option<String>,
    /// Deadline for new sessions (RFC 3339).
    #[serde(alias = "new_session_expire_time")]
    pub new_session_expire_time: Option<String>,
    /// The locked setup.
    #[serde(alias = "bidi_generate_content_setup", default, deserialize_with = "owned_setup")]
    pub bidi_generate_content_setup: Option<Setup<'static>>,
    /// Field mask of the lock.
    #[serde(alias = "field_mask")]
    pub field_mask: Option<String>,
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthToken")
            .field("name", &"auth_tokens/REDACTED")
            .field("uses", &self.uses)
            .field("expire_time", &self.expire_time)
            .field("new_session_expire_time", &self.new_session_expire_time)
            .field("bidi_generate_content_setup", &self.bidi_generate_content_setup.is_some())
            .field("field_mask", &self.field_mask)
            .finish()
    }
}

fn owned_setup<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Setup<'static>>, D::Error> {
    Ok(Option::<Setup<'de>>::deserialize(d)?.map(Setup::into_owned))
}
