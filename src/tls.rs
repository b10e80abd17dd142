//! TLS toward clients (`proxy.tls_cert`, `proxy.tls_key`): the greeting offers CLIENT_SSL, a
//! client that answers with an SSL request gets a TLS handshake, and its login and every later
//! packet go over TLS (`session::client::ClientIo::into_tls`). rustls through tokio-rustls,
//! with the `ring` provider (no C toolchain beyond what `ring` builds itself).
//!
//! TLS toward the servers (`[backend_tls]`): `BackendTls` holds the connector every backend
//! connection (pool, monitor, `KILL QUERY`) upgrades with after the server's greeting, in the
//! modes of the MySQL client's `--ssl-mode` (`pool::conn::BackendConn::connect`).

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
    #[error("cannot read the CA certificates {}: {msg}", path.display())]
    Ca { path: PathBuf, msg: String },
    #[error("the certificate and key cannot serve TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the PEM certificate chain and private key and builds what accepts clients' TLS.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = read_identity(cert, key)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(chain)
}

fn read_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let chain = certificates(cert).map_err(|msg| TlsError::Cert {
        path: cert.to_path_buf(),
        msg,
    })?;
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
    Ok((chain, key))
}

/// Whether a PEM file holds an encrypted private key (which rustls does not read).
fn encrypted(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || t.contains("Proc-Type: 4,ENCRYPTED")
    })
}

/// How backend connections use TLS: the MySQL client's `--ssl-mode`, by the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTlsMode {
    /// Plain connections (the default: rwsplit usually runs next to its servers).
    Disabled,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Preferred,
    /// TLS or no connection; the certificate is not checked.
    Required,
    /// TLS with a certificate signed by `backend_tls.ca`, for whatever name.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host of the backend's address.
    VerifyIdentity,
}

impl BackendTlsMode {
    pub fn parse(s: &str) -> Option<BackendTlsMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disabled" => BackendTlsMode::Disabled,
            "preferred" => BackendTlsMode::Preferred,
            "required" => BackendTlsMode::Required,
            "verify_ca" => BackendTlsMode::VerifyCa,
            "verify_identity" => BackendTlsMode::VerifyIdentity,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendTlsMode::Disabled => "disabled",
            BackendTlsMode::Preferred => "preferred",
            BackendTlsMode::Required => "required",
            BackendTlsMode::VerifyCa => "verify_ca",
            BackendTlsMode::VerifyIdentity => "verify_identity",
        }
    }

    /// Whether the certificate is checked against `backend_tls.ca`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            BackendTlsMode::VerifyCa | BackendTlsMode::VerifyIdentity
        )
    }
}

/// `[backend_tls]`, with its files read: what every connection to a server is opened with.
/// Built with the config, so a reload re-reads the files; two are equal when their settings
/// and the files' contents are (a reload then keeps the pools).
#[derive(Clone)]
pub struct BackendTls {
    pub mode: BackendTlsMode,
    pub ca: Option<PathBuf>,
    /// A client certificate and key, for servers whose accounts `REQUIRE X509` or more.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// A hash of the files' contents.
    files: u64,
    connector: Option<tokio_rustls::TlsConnector>,
}

impl Default for BackendTls {
    fn default() -> BackendTls {
        BackendTls {
            mode: BackendTlsMode::Disabled,
            ca: None,
            identity: None,
            files: 0,
            connector: None,
        }
    }
}

impl PartialEq for BackendTls {
    fn eq(&self, o: &BackendTls) -> bool {
        (self.mode, &self.ca, &self.identity, self.files) == (o.mode, &o.ca, &o.identity, o.files)
    }
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("mode", &self.mode)
            .field("ca", &self.ca)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// Reads the files and builds the connector. `ca` is required by the verifying modes
    /// (the caller checks); the other modes do not read it.
    pub fn load(
        mode: BackendTlsMode,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<BackendTls, TlsError> {
        if mode == BackendTlsMode::Disabled {
            return Ok(BackendTls::default());
        }
        let mut files = std::hash::DefaultHasher::new();
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let ca = ca.filter(|_| mode.verifies());
        let webpki = match ca {
            Some(path) => {
                let ca_error = |msg: String| TlsError::Ca {
                    path: path.to_path_buf(),
                    msg,
                };
                let mut roots = rustls::RootCertStore::empty();
                for c in certificates(path).map_err(ca_error)? {
                    std::hash::Hash::hash(c.as_ref(), &mut files);
                    roots
                        .add(c)
                        .map_err(|e| ca_error(format!("not a CA certificate: {e}")))?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
                Some(webpki)
            }
            None => None,
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                webpki,
                names: mode == BackendTlsMode::VerifyIdentity,
                algorithms: provider.signature_verification_algorithms,
            }));
        let config = match identity {
            Some((cert, key)) => {
                let (chain, key_der) = read_identity(cert, key)?;
                for c in &chain {
                    std::hash::Hash::hash(c.as_ref(), &mut files);
                }
                std::hash::Hash::hash(key_der.secret_der(), &mut files);
                builder.with_client_auth_cert(chain, key_der)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(BackendTls {
            mode,
            ca: ca.map(Path::to_path_buf),
            identity: identity.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
            files: std::hash::Hasher::finish(&files),
            connector: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
        })
    }

    /// The connector, unless TLS is off.
    pub fn connector(&self) -> Option<&tokio_rustls::TlsConnector> {
        self.connector.as_ref()
    }
}

/// Checks a server's certificate as the mode wants. Without `webpki` (modes `preferred` and
/// `required`) any certificate is taken, as the MySQL client does in those modes; the
/// handshake's signatures are checked in every mode (they prove the server holds the key of
/// the certificate it sent, whatever that is worth).
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// Whether the certificate must name the server (`verify_identity`).
    names: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as E;
        let Some(webpki) = &self.webpki else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // `verify_ca`: signed by the CA is enough, whatever name the certificate bears.
            Err(rustls::Error::InvalidCertificate(
                E::NotValidForName | E::NotValidForNameContext { .. },
            )) if !self.names => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
