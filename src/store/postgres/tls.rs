//! TLS for connections to PostgreSQL, with rustls (feature `tls`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Builds a rustls client configuration that trusts the certificates of the PEM file at
/// `root_certificates`, such as a database's own certificate authority or the system bundle
/// (`/etc/ssl/certs/ca-certificates.crt` on Debian).
///
/// It uses the process's default rustls crypto provider when the application installed one
/// (`CryptoProvider::install_default`), and otherwise rustls's `ring` provider, the one this
/// crate's `tls` feature builds. NOTE: rustls 0.23.48 deprecates `ring` because it offers no
/// post-quantum key exchange; install the `aws-lc-rs` provider as the default to get one.
///
/// # Errors
///
/// When the file cannot be read, contains no certificate, or contains one that rustls rejects
/// as a root. The message names the file.
pub fn root_certificates_config(root_certificates: &Path) -> Result<rustls::ClientConfig, String> {
    let file = root_certificates.display();
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(root_certificates)
            .and_then(Iterator::collect)
            .map_err(|error| {
                format!("cannot read root certificates from {file}: {error}; pass a PEM file")
            })?;
    if certificates.is_empty() {
        return Err(format!(
            "no certificate in {file}: pass a PEM file with `-----BEGIN CERTIFICATE-----` blocks"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| format!("invalid root certificate in {file}: {error}"))?;
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| {
            #[allow(deprecated)]
            let ring = rustls::crypto::ring::default_provider();
            Arc::new(ring)
        });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
