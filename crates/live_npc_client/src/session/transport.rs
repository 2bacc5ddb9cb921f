//! Opening the WebSocket: URL, auth headers, TLS (rustls with webpki roots plus extra roots).

use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::config::{Auth, SessionConfig};
use crate::protocol::{CloseCode, LiveError, reasons};
use crate::tls::{TlsConnector, is_tls_error};

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket with auth headers. Keys go in headers, never in the URL. `auth` is
/// `cfg.auth`, except that a token provider has already been replaced by the token it gave.
pub(crate) async fn connect(cfg: &SessionConfig, auth: &Auth, tls: Option<TlsConnector>) -> Result<Ws, LiveError> {
    let url = cfg.url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| LiveError::fatal(CloseCode::Other(0), format!("invalid endpoint URL: {e}")))?;
    let header = |v: String| {
        HeaderValue::from_str(&v)
            .map_err(|_| LiveError::fatal(CloseCode::InvalidArgument, "credential contains invalid characters"))
    };
    match auth {
        Auth::None | Auth::Provider(_) => {}
        Auth::ApiKey(k) => {
            request.headers_mut().insert("x-goog-api-key", header(k.expose().to_owned())?);
        }
        Auth::Token(t) => {
            request.headers_mut().insert("authorization", header(format!("Token {}", t.expose()))?);
        }
    }
    let config = Some(ws_config(cfg));
    #[cfg(feature = "tls")]
    {
        let connector = if url.starts_with("wss://") {
            let c = match tls {
                Some(c) => c,
                None => crate::tls::tls_config(&cfg.extra_root_pem)?,
            };
            Some(tokio_tungstenite::Connector::Rustls(c))
        } else {
            Some(tokio_tungstenite::Connector::Plain)
        };
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, config, true, connector)
            .await
            .map_err(|e| ws_error(&e))?;
        Ok(ws)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = tls;
        if url.starts_with("wss://") {
            return Err(LiveError::fatal(CloseCode::Other(1015), "wss:// needs the `tls` feature"));
        }
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, config, true).await.map_err(|e| ws_error(&e))?;
        Ok(ws)
    }
}

/// A WebSocket-level error as a typed error.
pub(crate) fn ws_error(e: &tungstenite::Error) -> LiveError {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status();
            let code = status.as_u16();
            let text = format!("HTTP {code} during the WebSocket handshake");
            match code {
                401 | 403 => {
                    LiveError::fatal(CloseCode::PolicyViolation, format!("{text}: {}", reasons::UNREGISTERED_CALLER))
                }
                404 => LiveError::fatal(CloseCode::PolicyViolation, format!("{text}: wrong endpoint path")),
                429 => LiveError::fatal(CloseCode::Internal, format!("{text}: {}", reasons::EXHAUSTED)),
                _ if status.is_server_error() => LiveError::dropped(text),
                _ => LiveError::fatal(CloseCode::Other(code), text),
            }
        }
        E::Capacity(c) => LiveError::dropped(format!("frame over the size limit: {c}")),
        E::Url(u) => LiveError::fatal(CloseCode::Other(0), format!("invalid endpoint URL: {u}")),
        E::Tls(t) => LiveError::fatal(CloseCode::Other(1015), format!("TLS error: {t}")),
        // A certificate problem does not go away by retrying.
        E::Io(io) if io.get_ref().is_some_and(is_tls_error) => {
            LiveError::fatal(CloseCode::Other(1015), format!("TLS error: {io}"))
        }
        other => LiveError::dropped(other.to_string()),
    }
}

/// The WebSocket configuration for a session.
pub(crate) fn ws_config(cfg: &SessionConfig) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(cfg.max_frame_bytes)).max_frame_size(Some(cfg.max_frame_bytes))
}
