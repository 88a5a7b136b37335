//! The router's own listener over TLS (`--tls-cert`, `--tls-key`): a client that verifies the
//! certificate gets answers (keep-alive included), one that does not trust it fails the
//! handshake, plaintext gets no HTTP answer, and bad key files stop the router at start
//! with a message naming the flag.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

struct Certs {
    dir: tempfile::TempDir,
    cert_pem: String,
}

impl Certs {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = made.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self { dir, cert_pem }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A client configuration trusting exactly this certificate.
    fn trusting(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        client(roots)
    }
}

fn client(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(name.to_owned()).unwrap())
            .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Reads one response with a Content-Length body.
fn read_response(s: &mut impl std::io::Read) -> (u16, String, String) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[test]
fn the_listener_serves_tls_to_clients_that_verify_it() {
    let certs = Certs::new();
    let r = router_with_auth(
        &[
            "--tls-cert",
            &certs.path("cert.pem"),
            "--tls-key",
            &certs.path("key.pem"),
            "--cores",
            "2",
        ],
        &[],
    );
    let key = {
        let resp = admin(&r, "POST", "/v1/tenants/acme/keys", b"");
        // The demo policy may not declare `acme`: create it through the admin API first.
        if resp.status == 404 {
            let made = admin(&r, "POST", "/v1/tenants", br#"{"id": "acme"}"#);
            assert_eq!(made.status, 201, "{}", made.text());
            let resp = admin(&r, "POST", "/v1/tenants/acme/keys", b"");
            assert_eq!(resp.status, 201, "{}", resp.text());
            resp.json()["key"].as_str().unwrap().to_owned()
        } else {
            assert_eq!(resp.status, 201, "{}", resp.text());
            resp.json()["key"].as_str().unwrap().to_owned()
        }
    };

    // A verifying client, by name and by IP address, two requests on one connection.
    for name in ["localhost", "127.0.0.1"] {
        let mut s = connect(r.addr, certs.trusting(), name);
        s.write_all(&request("GET", "/healthz", &[], b"")).unwrap();
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 200, "{body}");
        s.write_all(&request(
            "POST",
            "/v1/chat/completions",
            &[("Authorization", &format!("Bearer {key}"))],
            &chat_body("auto", false),
        ))
        .unwrap();
        let (status, head, body) = read_response(&mut s);
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("x-switchyard-route: endpoint="), "{head}");
        assert!(body.contains("chat.completion"), "{body}");
        // Auth holds over TLS too.
        s.write_all(&request(
            "POST",
            "/v1/chat/completions",
            &[],
            &chat_body("auto", false),
        ))
        .unwrap();
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 401, "{body}");
    }

    // A client that does not trust the certificate refuses the handshake.
    let mut untrusting = connect(r.addr, client(rustls::RootCertStore::empty()), "localhost");
    let err = untrusting
        .write_all(&request("GET", "/healthz", &[], b""))
        .and_then(|()| untrusting.flush())
        .and_then(|()| untrusting.read(&mut [0u8; 64]).map(|_| ()))
        .expect_err("a client without the CA must not get through");
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("invalid peer"),
        "{err}"
    );
    // And one checking for another name too.
    let mut wrong = connect(r.addr, certs.trusting(), "gateway.example.com");
    let err = wrong
        .write_all(&request("GET", "/healthz", &[], b""))
        .and_then(|()| wrong.flush())
        .and_then(|()| wrong.read(&mut [0u8; 64]).map(|_| ()))
        .expect_err("a name the certificate does not carry must fail");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // Plaintext HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(r.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(&request("GET", "/healthz", &[], b""))
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "plaintext was served");

    // The router still serves after the failed handshakes.
    let mut s = connect(r.addr, certs.trusting(), "localhost");
    s.write_all(&request("GET", "/healthz", &[], b"")).unwrap();
    assert_eq!(read_response(&mut s).0, 200);
}

#[test]
fn bad_tls_files_stop_the_router_with_a_message_naming_the_flag() {
    let certs = Certs::new();
    let missing = certs.path("nope.pem");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--tls-cert", &missing, "--tls-key", &certs.path("key.pem")],
            "--tls-cert",
        ),
        (
            // A certificate file is not a key.
            &[
                "--tls-cert",
                &certs.path("cert.pem"),
                "--tls-key",
                &certs.path("cert.pem"),
            ],
            "--tls-key",
        ),
        (&["--tls-cert", &certs.path("cert.pem")], "--tls-key"),
    ];
    for (args, flag) in cases {
        let out = std::process::Command::new(binary("switchyard"))
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(certs.dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
