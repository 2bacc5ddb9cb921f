//! Why a simulator could not start.

use std::net::SocketAddr;

use thiserror::Error;

/// Why the simulator could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Generating or serving the TLS certificate failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The background runtime or thread could not be started.
    #[error("cannot start the simulator runtime: {0}")]
    Runtime(std::io::Error),
    /// A builder setting is out of range.
    #[error("invalid simulator setting: {0}")]
    Config(String),
}
