//! TLS for every client connection (WebSocket sessions and HTTPS token requests): rustls with
//! the webpki roots plus extra PEM roots. Without the `tls` feature, `wss://` and `https://` are
//! typed errors.

#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use crate::protocol::{CloseCode, LiveError};

/// A prebuilt client TLS configuration (nothing without the `tls` feature).
#[cfg(feature = "tls")]
pub type TlsConnector = Arc<rustls::ClientConfig>;
/// A prebuilt client TLS configuration (nothing without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub type TlsConnector = ();

/// Builds the rustls client configuration: webpki roots plus the PEM certificates given.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
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

/// Whether an I/O error is a TLS failure (a certificate problem does not go away by retrying).
#[cfg(feature = "tls")]
pub(crate) fn is_tls_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<rustls::Error>().is_some()
}

#[cfg(not(feature = "tls"))]
pub(crate) fn is_tls_error(_: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    false
}
