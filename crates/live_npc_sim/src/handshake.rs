//! The HTTP side of a connection: which paths exist, and where the credentials are.

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// What the upgrade request said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectInfo {
    /// API version from the path (`v1beta`).
    pub version: String,
    /// `...BidiGenerateContentConstrained` (ephemeral tokens).
    pub constrained: bool,
    /// Every credential the request carried (query `key`, `x-goog-api-key`, query
    /// `access_token`, `Authorization: Token ...`).
    pub credentials: Vec<String>,
    /// The first credential that is an ephemeral token (`auth_tokens/...`).
    pub token: Option<String>,
}

/// The result of checking credentials against the configured key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Accepted.
    Ok,
    /// No credential at all (1008, unregistered caller).
    Missing,
    /// A credential, but not the key (1007, API key not valid).
    Invalid,
}

impl ConnectInfo {
    /// Checks the credentials; any credential is fine when no key is configured.
    pub fn auth(&self, key: Option<&str>) -> Auth {
        match key {
            None => Auth::Ok,
            Some(_) if self.credentials.is_empty() => Auth::Missing,
            Some(k) if self.credentials.iter().any(|c| c == k) => Auth::Ok,
            Some(_) => Auth::Invalid,
        }
    }
}

const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];

/// Parses `/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent`
/// (or `...Constrained`), tolerating a doubled leading slash. Returns (version, constrained).
pub(crate) fn parse_path(path: &str) -> Option<(String, bool)> {
    let path = path.strip_prefix("//").or_else(|| path.strip_prefix('/'))?;
    let rest = path.strip_prefix("ws/google.ai.generativelanguage.")?;
    let (version, method) = rest.split_once(".GenerativeService.")?;
    if !VERSIONS.contains(&version) {
        return None;
    }
    let constrained = match method {
        "BidiGenerateContent" => false,
        "BidiGenerateContentConstrained" => true,
        _ => return None,
    };
    Some((version.to_owned(), constrained))
}

fn query_params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (live_npc_client::http::percent_decode(k), live_npc_client::http::percent_decode(v))
    })
}

/// Every credential in the request, in a fixed order.
fn credentials(req: &Request) -> Vec<String> {
    let mut out = Vec::new();
    let query = req.uri().query().unwrap_or("");
    for (k, v) in query_params(query) {
        if (k == "key" || k == "access_token") && !v.is_empty() {
            out.push(v);
        }
    }
    for v in req.headers().get_all("x-goog-api-key") {
        if let Ok(v) = v.to_str() {
            out.push(v.trim().to_owned());
        }
    }
    for v in req.headers().get_all("authorization") {
        let Ok(v) = v.to_str() else { continue };
        let v = v.trim();
        let token = v.strip_prefix("Token ").or_else(|| v.strip_prefix("Bearer "));
        if let Some(t) = token {
            out.push(t.trim().to_owned());
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// Checks an upgrade request: a known path gives the connection info, anything else `None`
/// (answered with [`not_found`]).
pub(crate) fn check(req: &Request) -> Option<ConnectInfo> {
    let (version, constrained) = parse_path(req.uri().path())?;
    let credentials = credentials(req);
    let token = credentials.iter().find(|c| c.starts_with("auth_tokens/")).cloned();
    Some(ConnectInfo { version, constrained, credentials, token })
}

/// The HTTP 404 answer to an unknown path.
pub(crate) fn not_found() -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some("Not Found".to_owned()));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
        assert_eq!(parse_path(p), Some(("v1beta".into(), false)));
        assert_eq!(parse_path(&format!("/{p}")), Some(("v1beta".into(), false)));
        let c = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained";
        assert_eq!(parse_path(c), Some(("v1alpha".into(), true)));
        assert_eq!(parse_path("/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent"), None);
        assert_eq!(parse_path("/"), None);
        assert_eq!(parse_path("///ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"), None);
    }

    #[test]
    fn credentials_everywhere() {
        let req = Request::builder()
            .uri("/ws/x?key=a%2Bb&access_token=tok&other=1")
            .header("x-goog-api-key", "h")
            .header("Authorization", "Token auth_tokens/t")
            .body(())
            .unwrap_or_default();
        assert_eq!(credentials(&req), ["a+b", "tok", "h", "auth_tokens/t"]);
        let info = ConnectInfo { version: "v1".into(), constrained: false, credentials: vec![], token: None };
        assert_eq!(info.auth(Some("k")), Auth::Missing);
        assert_eq!(info.auth(None), Auth::Ok);
        let info = ConnectInfo { credentials: vec!["x".into(), "k".into()], ..info };
        assert_eq!(info.auth(Some("k")), Auth::Ok);
        assert_eq!(info.auth(Some("z")), Auth::Invalid);
    }
}
