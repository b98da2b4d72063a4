//! TLS to a broker (`mqtts://`): the CA certificate that signs the broker's certificate and, for a
//! broker that asks for one (a fleet broker usually does), the client certificate and its key.
//!
//! The files are read and checked once, before anything connects, so a wrong path, a file that holds no
//! certificate or a key that others can read is a config error naming the key and the file, not a
//! handshake failure at every reconnect. The key is never logged and never appears in an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use if_protocol::{ErrorCode, IfError};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `[mqtt.tls]`, `[uplink.tls]`: PEM files, relative to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate(s) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// This client's certificate chain, for a broker that requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The key of `cert` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// A checked TLS client configuration, ready for every (re)connect.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

fn invalid(at: &str, path: &Path, what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, format_args!("{at} ({}): {what}", path.display()))
}

impl TlsFiles {
    /// Makes relative paths relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        for p in [Some(&mut self.ca), self.cert.as_mut(), self.key.as_mut()].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The rules that need no file, as (key, problem); `at` is the table, e.g. `mqtt.tls`.
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        match (&self.cert, &self.key) {
            (Some(_), None) => vec![(format!("{at}.key"), "a client certificate needs its key".into())],
            (None, Some(_)) => vec![(format!("{at}.cert"), "a client key needs its certificate".into())],
            _ => Vec::new(),
        }
    }

    /// Reads and checks the files; errors name `at.ca`, `at.cert` or `at.key` and the file.
    pub fn load(&self, at: &str) -> Result<Tls, IfError> {
        let ca_at = format!("{at}.ca");
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(&ca_at, &self.ca)? {
            roots.add(cert).map_err(|e| invalid(&ca_at, &self.ca, format_args!("not a usable CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("{at}: TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(&format!("{at}.cert"), cert)?;
                let key_at = format!("{at}.key");
                crate::keyfile::check_private(key)
                    .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("{key_at}: {}", e.detail())))?;
                let pem =
                    crate::files::read_limited(key, crate::files::KEY_MAX).map_err(|e| invalid(&key_at, key, e))?;
                let secret = PrivateKeyDer::from_pem_slice(&pem)
                    .map_err(|_| invalid(&key_at, key, "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
                builder
                    .with_client_auth_cert(chain, secret)
                    .map_err(|_| invalid(&key_at, key, "does not match the client certificate, or is not usable"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                let (key, what) = self.problems(at).into_iter().next().unwrap_or_default();
                return Err(IfError::format(ErrorCode::ConfigInvalid, format_args!("{key}: {what}")));
            }
        };
        Ok(Tls(Arc::new(config)))
    }
}

/// Every certificate in a PEM file; at least one.
fn certificates(at: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, IfError> {
    let pem = crate::files::read_limited(path, crate::files::DOC_MAX).map_err(|e| invalid(at, path, e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(CertificateDer::into_owned))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(at, path, format_args!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(at, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

impl Tls {
    /// The transport for rumqttc.
    pub fn transport(&self) -> Transport {
        Transport::tls_with_config(TlsConfiguration::Rustls(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cert_without_its_key_and_missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let files = TlsFiles { ca: ca.clone(), cert: Some(dir.path().join("c.pem")), key: None };
        assert_eq!(files.problems("uplink.tls")[0].0, "uplink.tls.key");
        let e = TlsFiles { ca: ca.clone(), cert: None, key: None }.load("mqtt.tls").expect_err("missing");
        assert!(e.to_string().starts_with("IF_ERR_503 CONFIG_INVALID: mqtt.tls.ca ("), "{e}");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let e = TlsFiles { ca, cert: None, key: None }.load("mqtt.tls").expect_err("empty");
        assert!(e.detail().contains("holds no PEM certificate"), "{e}");
    }
}
