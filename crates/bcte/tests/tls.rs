//! The HTTP API over TLS: a dev node given a certificate serves every route over HTTPS only,
//! and the OpenADR VTN names an `https` token URL; a bad certificate file stops the node at
//! once with one line naming it.

mod common;

use common::{BIN, start_node};
use serde_json::Value;
use std::{ffi::OsStr, process::Command};

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn a_dev_node_given_a_certificate_serves_the_api_over_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let data = dir.path().join("chain");
    let log = dir.path().join("node.log");
    let (mut child, url, _) = start_node(
        [
            OsStr::new("--dev"),
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--http"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--tls-cert"),
            cert_file.as_os_str(),
            OsStr::new("--tls-key"),
            key_file.as_os_str(),
        ],
        &log,
    );
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let roots =
        ureq::tls::RootCerts::new_with_certs(&[
            ureq::tls::Certificate::from_pem(cert.as_bytes()).unwrap()
        ]);
    let agent = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .build()
        .new_agent();
    let health: Value = agent
        .get(&format!("{url}/health"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    // The VTN's discovery names a token URL of the scheme it was reached by.
    let server: Value = agent
        .get(&format!("{url}/openadr3/3.1.0/auth/server"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(
        server["tokenURL"],
        format!("{url}/openadr3/3.1.0/auth/token").as_str()
    );
    // Plain HTTP on the same port gets no answer.
    let plain = url.replacen("https://", "http://", 1);
    assert!(ureq::get(&format!("{plain}/health")).call().is_err());
    // A client that does not trust the certificate is refused in the handshake.
    assert!(ureq::get(&format!("{url}/health")).call().is_err());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_certificate_file_stops_the_node_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = self_signed();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, "not a certificate\n").unwrap();
    std::fs::write(&key_file, key).unwrap();
    let out = Command::new(BIN)
        .args(["node", "--dev", "--data-dir"])
        .arg(dir.path().join("chain"))
        .args(["--http", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cert.pem"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
