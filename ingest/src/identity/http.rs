//! HTTPS for the identity endpoints and Key Vault: one reqwest client (rustls over ring,
//! the system's roots plus `--ca-file`) shared by every credential and the secret reader.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// rustls needs one process-wide crypto provider; ring is the one object_store's client
/// already links, so kvlake carries no second crypto library.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Extra trusted roots from `--ca-file` (PEM): a private CA, or a TLS-inspecting proxy
/// on a locked-down network. The system's roots stay trusted.
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    /// The PEM text as read, for clients that take PEM (object_store, reqwest).
    pub pem: Option<Arc<Vec<u8>>>,
}

impl ExtraRoots {
    /// Reads the file, or nothing when no file is set.
    pub fn load(path: Option<&Path>) -> Result<ExtraRoots> {
        let Some(path) = path else {
            return Ok(ExtraRoots::default());
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("--ca-file {}: cannot read it", path.display()))?;
        reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| {
                format!(
                    "--ca-file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )
            })?;
        Ok(ExtraRoots {
            pem: Some(Arc::new(pem)),
        })
    }

    /// The roots as rustls certificates, for the TLS probes of `kvlake check`.
    pub fn der(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        self.pem
            .as_ref()
            .map(|pem| {
                rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                    .filter_map(|c| c.ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The HTTP client of the identity chain and the Key Vault reader.
pub fn client(roots: &ExtraRoots) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(pem) = &roots.pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).context("--ca-file")?;
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .context("cannot build the HTTPS client for identity and Key Vault")
}
