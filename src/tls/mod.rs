//! TLS for the gateway: the inbound rustls server config with a hot-swappable certificate, and the rustls
//! client config used towards an `https://` upstream.
//!
//! The server config reads the certificate on every handshake through a [`ResolvesServerCert`] it is given:
//! the proxy's resolver reads the certificate of the serving generation (`proxy::live`), which the reloader
//! swaps together with the config, so a certificate is rotated without restarting listeners; a certificate
//! that fails to load ([`load_certified_key`]) rejects the reload and the one serving stays. Every config is
//! built with the `ring` provider explicitly: never a process-wide default. Nothing here ever prints key
//! material.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

/// ALPN protocols offered inbound, most preferred first.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN name of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS material could not be loaded. Messages name files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate found", file.display())]
    NoCertificate { file: PathBuf },
    #[error("{}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)", file.display())]
    NoPrivateKey { file: PathBuf },
    #[error("{}: the private key is unusable or does not match the certificate: {source}", file.display())]
    BadKey {
        file: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: CA certificate rejected: {source}", file.display())]
    BadCa {
        file: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider every permgate TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and a PEM private key, and checks that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert_file)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: cert_file.to_path_buf(),
        });
    }
    let key = read_private_key(key_file)?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(
        |source| TlsError::BadKey {
            file: key_file.to_path_buf(),
            source,
        },
    )
}

/// The inbound server config: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, certificate from `resolver` on
/// every handshake.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The upstream client config: the system's roots plus, when set, the CAs in `ca_file`.
///
/// System roots that fail to load are skipped (a container may have none); `ca_file` errors are fatal,
/// since the operator asked for it explicitly.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping a system CA certificate");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(file) = ca_file {
        let certs = read_certificates(file)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                file: file.to_path_buf(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                file: file.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn open(file: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(file)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            file: file.to_path_buf(),
            source,
        })
}

fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut open(file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            file: file.to_path_buf(),
            source,
        })
}

fn read_private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(file)?)
        .map_err(|source| TlsError::Read {
            file: file.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            file: file.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gateway::TlsSettings;

    fn write_pair(dir: &Path, name: &str) -> TlsSettings {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        TlsSettings {
            cert_file,
            key_file,
        }
    }

    fn load(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
        load_certified_key(&settings.cert_file, &settings.key_file)
    }

    /// A resolver that always gives one certificate.
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _client_hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    #[test]
    fn loads_pairs_and_refuses_a_key_of_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "one.test");
        let second = write_pair(dir.path(), "two.test");
        let one = load(&first).unwrap();
        let two = load(&second).unwrap();
        assert_ne!(one.cert[0], two.cert[0]);

        // A key that belongs to another certificate is refused.
        let mismatched = TlsSettings {
            cert_file: first.cert_file.clone(),
            key_file: second.key_file.clone(),
        };
        assert!(matches!(load(&mismatched), Err(TlsError::BadKey { .. })));
        assert!(server_config(Arc::new(Fixed(Arc::new(one)))).is_ok());
    }

    #[test]
    fn missing_or_empty_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = TlsSettings {
            cert_file: dir.path().join("nope.crt"),
            key_file: empty.clone(),
        };
        let error = load(&missing).unwrap_err();
        assert!(error.to_string().contains("nope.crt"));
        let pair = write_pair(dir.path(), "three.test");
        let no_key = TlsSettings {
            cert_file: pair.cert_file,
            key_file: empty.clone(),
        };
        assert!(matches!(load(&no_key), Err(TlsError::NoPrivateKey { .. })));
        assert!(matches!(
            client_config(Some(&empty)),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
