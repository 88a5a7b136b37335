//! The router's Google service-account assertion (RS256 JWT) verified by an implementation we
//! did not write: Python's `cryptography` makes the key file and checks the signature with
//! the public key (`tools/gcp/jwt_check.py`).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

use std::process::Command;

use switchyard::upstream::gcp::{CLOUD_PLATFORM_SCOPE, ServiceAccount};

fn script(args: &[&str]) -> std::process::Output {
    let path = format!("{}/../tools/gcp/jwt_check.py", env!("CARGO_MANIFEST_DIR"));
    Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn assertions_verify_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.json");
    let key = key.to_str().unwrap();
    let made = script(&["keyfile", key]);
    assert!(
        made.status.success(),
        "could not make a key file (python3 -m pip install -r tools/sdk/requirements.txt installs `cryptography`): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let sa = ServiceAccount::from_file(key).unwrap();
    assert_eq!(sa.client_email, "router@acme-ml.iam.gserviceaccount.com");
    let jwt = sa.assertion(CLOUD_PLATFORM_SCOPE, 1_796_140_000).unwrap();
    let out = script(&["verify", key, &jwt]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["header"],
        serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "kid-123"})
    );
    assert_eq!(v["claims"]["iss"], "router@acme-ml.iam.gserviceaccount.com");
    assert_eq!(v["claims"]["aud"], "http://127.0.0.1:1/token");
    assert_eq!(v["claims"]["scope"], CLOUD_PLATFORM_SCOPE);
    assert_eq!(v["claims"]["iat"], 1_796_140_000);
    assert_eq!(v["claims"]["exp"], 1_796_143_600);
    // A token with one claim changed does not verify.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = switchyard::codec::base64url(br#"{"iss":"someone-else"}"#);
    let out = script(&["verify", key, &parts.join(".")]);
    assert!(!out.status.success());
    // Errors name the file, not its contents.
    let err = ServiceAccount::from_file("/nonexistent/sa.json").unwrap_err();
    assert!(err.contains("/nonexistent/sa.json"), "{err}");
}
