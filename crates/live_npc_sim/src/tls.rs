//! `wss://` for the simulator: a throw-away certificate authority and a leaf certificate for
//! `127.0.0.1`, `::1` and `localhost`, made with rcgen at start-up and served with rustls.
//! Clients trust the CA through the PEM file the simulator writes ([`super::LiveSim::ca_path`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::error::SimError;

/// Freshly generated TLS material.
pub(crate) struct TlsSetup {
    /// Accepts TLS connections with the leaf certificate.
    pub acceptor: TlsAcceptor,
    /// The CA certificate clients must trust, PEM.
    pub ca_pem: String,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Tls(format!("{what}: {e}"))
}

/// Generates a CA and a leaf for the loopback names, and a rustls acceptor serving the leaf.
pub(crate) fn generate() -> Result<TlsSetup, SimError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA parameters", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "live-sim test CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| tls_err("CA certificate", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names = vec!["127.0.0.1".to_owned(), "::1".to_owned(), "localhost".to_owned()];
    let mut leaf_params = CertificateParams::new(names).map_err(|e| tls_err("leaf parameters", e))?;
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(|e| tls_err("leaf key", e))?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(|e| tls_err("leaf certificate", e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Clients in the same process (tests, the plugin) may build configs from the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("server certificate", e))?;
    Ok(TlsSetup { acceptor: TlsAcceptor::from(Arc::new(config)), ca_pem: ca_cert.pem() })
}

/// The CA certificate written to a file; the file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct CaFile {
    pub path: PathBuf,
    pub pem: String,
}

impl CaFile {
    /// Writes `pem` to `live-sim-ca-<pid>-<port>.pem` in the temporary directory.
    pub fn write(pem: String, port: u16) -> Result<CaFile, SimError> {
        let path = std::env::temp_dir().join(format!("live-sim-ca-{}-{port}.pem", std::process::id()));
        std::fs::write(&path, &pem).map_err(|e| tls_err(&format!("writing {}", path.display()), e))?;
        Ok(CaFile { path, pem })
    }

    /// Where the PEM is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
