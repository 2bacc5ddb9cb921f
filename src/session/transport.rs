//! Opening the WebSocket: URL, auth headers, TLS (rustls with webpki roots plus extra roots).

#[cfg(feature = "tls")]
use std::sync::Arc;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::config::{Auth, SessionConfig};
use super::task::{TlsConnector, ws_config, ws_error};
use crate::protocol::{CloseCode, LiveError};

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Builds the rustls client configuration: webpki roots plus the PEM certificates given.
#[cfg(feature = "tls")]
pub fn tls_config(extra_root_pem: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, LiveError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_root_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| LiveError::fatal(CloseCode::Other(1015), format!("bad root certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| LiveError::fatal(CloseCode::Other(1015), format!("bad root certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LiveError::fatal(CloseCode::Other(1015), format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

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
                None => tls_config(&cfg.extra_root_pem)?,
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
