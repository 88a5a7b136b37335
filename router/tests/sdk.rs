//! The official `openai` Python SDK against the real router (embedded demo table).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

mod common;

use std::process::Command;

#[test]
fn openai_python_sdk_completes_a_chat_and_a_stream() {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the `openai` Python package is missing: run `python3 -m pip install -r tools/sdk/requirements.txt` (tools/test-all does)"
        ),
    }
    let router = common::router(&["--cores", "2"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sdk/openai_chat.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", router.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK check failed:\n{}\n{}\nrouter log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        router.log()
    );
}
