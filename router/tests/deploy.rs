//! `tools/deploy/`: the systemd unit passes `systemd-analyze verify` without a warning (with
//! the built binary in place of the installed path) and keeps its hardening; the environment
//! template names only variables the router reads.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::path::Path;
use std::process::Command;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = deploy("switchyard.service");
    for directive in [
        "User=switchyard",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=switchyard",
        "LimitNOFILE=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "CapabilityBoundingSet=\n",
        "EnvironmentFile=/etc/switchyard/switchyard.env",
    ] {
        assert!(unit.contains(directive), "the unit lacks `{directive}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("switchyard.service");
    let binary = common::binary("switchyard");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/switchyard", binary.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): tools/test-all installs systemd")
        });
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze warns: {said}");
}

#[test]
fn the_environment_template_names_only_variables_the_router_reads() {
    let help = Command::new(common::binary("switchyard"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let env = deploy("switchyard.env");
    let mut named = 0;
    for line in env.lines() {
        let line = line.trim_start_matches('#');
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if !name.starts_with("SWITCHYARD_") {
            continue;
        }
        named += 1;
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} is not a variable `switchyard --help` lists"
        );
    }
    assert!(named >= 8, "{named}");
    let containerfile = deploy("Containerfile");
    assert!(containerfile.contains("--bin switchyard --bin policyc"));
    assert!(containerfile.contains("USER switchyard"));
}
