//! A throwaway self-signed certificate for 127.0.0.1 (openssl CLI), for HTTPS peers.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

pub struct SelfSignedCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: TempDir,
}

impl SelfSignedCert {
    pub fn generate() -> SelfSignedCert {
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-cert-")
            .tempdir()
            .expect("cannot create a temporary directory for the certificate");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("cannot run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl could not make a self-signed certificate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SelfSignedCert {
            cert,
            key,
            _dir: dir,
        }
    }
}
