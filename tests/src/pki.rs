//! A certificate authority for the TLS suites: a CA, a server certificate for 127.0.0.1 that Mosquitto
//! serves, and client certificates, as PEM files in a directory of the test's (keys mode 0600).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its key, PEM, mode 0600.
    pub key: PathBuf,
}

/// A CA and what it signed.
#[derive(Debug)]
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca: PathBuf,
    /// The broker's certificate, for 127.0.0.1 and localhost.
    pub server: Identity,
}

impl Pki {
    /// A new CA named `name`, with a server certificate.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(params, key);
        let server = sign(dir.path(), &issuer, "broker", &["127.0.0.1", "localhost"]);
        Pki { dir, issuer, ca, server }
    }

    /// A client certificate for `name`.
    pub fn client(&self, name: &str) -> Identity {
        sign(self.dir.path(), &self.issuer, name, &[])
    }
}

fn sign(dir: &Path, issuer: &Issuer<'static, KeyPair>, name: &str, names: &[&str]) -> Identity {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    let id = Identity { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    std::fs::write(&id.cert, cert.pem()).expect("write certificate");
    std::fs::write(&id.key, key.serialize_pem()).expect("write key");
    std::fs::set_permissions(&id.key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    id
}
