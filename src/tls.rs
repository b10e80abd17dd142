//! TLS toward clients (`proxy.tls_cert`, `proxy.tls_key`): the greeting offers CLIENT_SSL, a
//! client that answers with an SSL request gets a TLS handshake, and its login and every later
//! packet go over TLS (`session::client::ClientIo::into_tls`). rustls through tokio-rustls,
//! with the `ring` provider (no C toolchain beyond what `ring` builds itself). Backend
//! connections stay plain: rwsplit sits next to the servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {}: {msg}", path.display())]
    Cert { path: PathBuf, msg: String },
    #[error("cannot read the private key {}: {msg}", path.display())]
    Key { path: PathBuf, msg: String },
    #[error("the certificate and key cannot serve TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the PEM certificate chain and private key and builds what accepts clients' TLS.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_error = |msg: String| TlsError::Cert {
        path: cert.to_path_buf(),
        msg,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        msg: match e {
            rustls_pki_types::pem::Error::NoItemsFound if encrypted(key) => {
                "the key is encrypted; rwsplit needs it unencrypted \
                 (openssl pkey -in KEY -out PLAIN.pem)"
                    .into()
            }
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => e.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether a PEM file holds an encrypted private key (which rustls does not read).
fn encrypted(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || t.contains("Proc-Type: 4,ENCRYPTED")
    })
}
