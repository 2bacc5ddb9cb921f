//! Opening the WebSocket: URL, auth headers, TLS (rustls with webpki roots plus extra roots).
//!
//! The client handshake is written here rather than left to tungstenite, whose handshake logs
//! the whole request (credential headers included) at `trace` level.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::config::{Auth, SessionConfig};
use crate::protocol::{CloseCode, LiveError, reasons};
use crate::tls::{TlsConnector, is_tls_error};

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the WebSocket with auth headers. Keys go in headers, never in the URL. `auth` is
/// `cfg.auth`, except that a token provider has already been replaced by the token it gave.
pub(crate) async fn connect(cfg: &SessionConfig, auth: &Auth, tls: Option<TlsConnector>) -> Result<Ws, LiveError> {
    let url = cfg.url();
    let bad_url = |e: String| LiveError::fatal(CloseCode::Other(0), format!("invalid endpoint URL: {e}"));
    let target = crate::http::Url::parse(&url).map_err(|e| match e {
        crate::http::HttpError::Url(why) => bad_url(why),
        other => bad_url(format!("{other:?}")),
    })?;
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(bad_url("the scheme must be ws or wss".to_owned()));
    }
    let credential = match auth {
        Auth::None | Auth::Provider(_) => None,
        Auth::ApiKey(k) => Some(("x-goog-api-key", k.expose().to_owned())),
        Auth::Token(t) => Some(("authorization", format!("Token {}", t.expose()))),
    };
    if credential.as_ref().is_some_and(|(_, v)| v.bytes().any(|b| b.is_ascii_control())) {
        return Err(LiveError::fatal(CloseCode::InvalidArgument, "credential contains invalid characters"));
    }
    let key = tungstenite::handshake::client::generate_key();
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nUser-Agent: live_npc_client/{}\r\n",
        target.target,
        target.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some((name, value)) = &credential {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| LiveError::dropped(format!("connecting to {}:{}: {e}", target.host, target.port)))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = secure(tcp, &target, cfg, tls).await?;
    let io = |e: std::io::Error| LiveError::dropped(format!("WebSocket handshake: {e}"));
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(1024);
    let end = crate::http::read_head(&mut stream, &mut buf).await.map_err(io)?.ok_or_else(|| {
        LiveError::dropped("the server closed (or sent an oversized head) during the WebSocket handshake")
    })?;
    check_upgrade(&buf[..end], &key)?;
    let rest = buf.split_off(end);
    Ok(Ws::from_partially_read(stream, rest, Role::Client, Some(ws_config(cfg))).await)
}

#[cfg(feature = "tls")]
async fn secure(
    tcp: TcpStream,
    url: &crate::http::Url,
    cfg: &SessionConfig,
    tls: Option<TlsConnector>,
) -> Result<MaybeTlsStream<TcpStream>, LiveError> {
    use rustls::pki_types::ServerName;
    if !url.tls {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    let config = match tls {
        Some(c) => c,
        None => crate::tls::tls_config(&cfg.extra_root_pem)?,
    };
    let tls_error = |e: String| LiveError::fatal(CloseCode::Other(1015), format!("TLS error: {e}"));
    let name = ServerName::try_from(url.host.clone()).map_err(|e| tls_error(format!("server name: {e}")))?;
    match tokio_rustls::TlsConnector::from(config).connect(name, tcp).await {
        Ok(s) => Ok(MaybeTlsStream::Rustls(s)),
        // A certificate problem does not go away by retrying.
        Err(e) if e.get_ref().is_some_and(is_tls_error) => Err(tls_error(e.to_string())),
        Err(e) => Err(LiveError::dropped(format!("TLS handshake: {e}"))),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure(
    tcp: TcpStream,
    url: &crate::http::Url,
    _cfg: &SessionConfig,
    _tls: Option<TlsConnector>,
) -> Result<MaybeTlsStream<TcpStream>, LiveError> {
    if url.tls {
        return Err(LiveError::fatal(CloseCode::Other(1015), "wss:// needs the `tls` feature"));
    }
    Ok(MaybeTlsStream::Plain(tcp))
}

/// Checks the server's answer to the upgrade request: `101`, `Upgrade: websocket` and the
/// accept key that proves it read our request.
fn check_upgrade(head: &[u8], key: &str) -> Result<(), LiveError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(LiveError::dropped("the server's answer to the WebSocket handshake is not HTTP")),
    }
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(handshake_status(status));
    }
    let header = |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let accept = header("sec-websocket-accept").is_some_and(|v| v == derive_accept_key(key.as_bytes()).as_bytes());
    if !upgrade || !accept {
        return Err(LiveError::dropped(
            "the server's WebSocket handshake answer is invalid (Upgrade or Sec-WebSocket-Accept)",
        ));
    }
    Ok(())
}

/// An HTTP status other than 101 during the handshake, as a typed error.
fn handshake_status(code: u16) -> LiveError {
    let text = format!("HTTP {code} during the WebSocket handshake");
    match code {
        401 | 403 => LiveError::fatal(CloseCode::PolicyViolation, format!("{text}: {}", reasons::UNREGISTERED_CALLER)),
        404 => LiveError::fatal(CloseCode::PolicyViolation, format!("{text}: wrong endpoint path")),
        429 => LiveError::fatal(CloseCode::Internal, format!("{text}: {}", reasons::EXHAUSTED)),
        500..=599 => LiveError::dropped(text),
        _ => LiveError::fatal(CloseCode::Other(code), text),
    }
}

/// A WebSocket-level error as a typed error.
pub(crate) fn ws_error(e: &tungstenite::Error) -> LiveError {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => handshake_status(resp.status().as_u16()),
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
