//! A property test of the auth and tenant path over real sockets: requests with hostile
//! headers — duplicate `Authorization`, mixed case, stray whitespace, very long values,
//! non-UTF-8 bytes, `\r\n` injection, other schemes, conflicting `X-Tenant` — against a router
//! with keys on. Whatever the mix, none may reach another tenant's models or endpoint, or the
//! admin API without the admin key, and the router keeps serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const POLICY: &str = "version: v1
endpoints:
  - id: small
    type: mock
    models: [small-model]
  - id: big
    type: mock
    models: [big-model]
tenants:
  - id: acme
    model_allowlist: [small-model]
  - id: globex
rules:
  - name: acme-small
    match:
      tenant: acme
    route_to: small
    fallback: [big]
  - default:
      route_to: big
";

/// What the generated request asks for.
#[derive(Clone, Copy, Debug)]
enum Target {
    ChatAuto,
    ChatBig,
    ChatSmall,
    Models,
    AdminGet(&'static str),
    AdminCreateTenant,
    AdminIssueGlobexKey,
}

/// A token as the generator sees it, turned into bytes once the real keys are known.
#[derive(Clone, Debug)]
enum Token {
    Acme,
    Admin,
    Garbage,
    AcmeUpper,
    AcmeTruncated,
    Long(usize),
    NonUtf8,
    AcmeThenInjected(&'static str),
}

#[derive(Clone, Debug)]
struct Hostile {
    target: Target,
    /// (header name spelling, scheme spelling, token, padding before, padding after)
    auth: Vec<(
        &'static str,
        &'static str,
        Token,
        &'static str,
        &'static str,
    )>,
    tenants: Vec<(&'static str, Vec<u8>)>,
    role: Option<Vec<u8>>,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let target = prop_oneof![
        Just(Target::ChatAuto),
        Just(Target::ChatBig),
        Just(Target::ChatSmall),
        Just(Target::Models),
        Just(Target::AdminGet("/v1/tenants")),
        Just(Target::AdminGet("/v1/policies")),
        Just(Target::AdminGet("/v1/audit")),
        Just(Target::AdminGet("/v1/tenants/globex/keys")),
        Just(Target::AdminCreateTenant),
        Just(Target::AdminIssueGlobexKey),
    ];
    let name = prop_oneof![
        6 => Just("Authorization"),
        1 => Just("authorization"),
        1 => Just("AUTHORIZATION"),
        1 => Just("AuThOrIzAtIoN"),
        1 => Just("Authorization "),
        1 => Just("X-Authorization"),
        1 => Just("Proxy-Authorization"),
    ];
    let scheme = prop_oneof![
        6 => Just("Bearer "),
        1 => Just("bearer "),
        1 => Just("BEARER "),
        1 => Just("Bearer  "),
        1 => Just("Bearer\t"),
        1 => Just("Basic "),
        1 => Just("Token "),
        1 => Just(""),
    ];
    let token = prop_oneof![
        8 => Just(Token::Acme),
        4 => Just(Token::Admin),
        1 => Just(Token::Garbage),
        1 => Just(Token::AcmeUpper),
        1 => Just(Token::AcmeTruncated),
        1 => (1usize..40_000).prop_map(Token::Long),
        1 => Just(Token::NonUtf8),
        1 => Just(Token::AcmeThenInjected("\r\nX-Tenant: globex")),
        1 => Just(Token::AcmeThenInjected("\r\nAuthorization: Bearer ADMIN")),
        1 => Just(Token::AcmeThenInjected("\nX-Tenant: globex")),
        1 => Just(Token::AcmeThenInjected("\rX-Tenant: globex")),
        1 => Just(Token::AcmeThenInjected(", Bearer ADMIN")),
        1 => Just(Token::AcmeThenInjected("\0")),
    ];
    let pad = prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")];
    let auth = prop::collection::vec((name, scheme, token, pad.clone(), pad), 0..3);
    let tenant_name = prop_oneof![Just("X-Tenant"), Just("x-tenant"), Just("X-TENANT")];
    let tenant_value = prop_oneof![
        Just(b"acme".to_vec()),
        Just(b"globex".to_vec()),
        Just(b"GLOBEX".to_vec()),
        Just(b" globex ".to_vec()),
        Just(b"acme,globex".to_vec()),
        Just(b"globex\xff".to_vec()),
        Just(b"\xc3\x28".to_vec()),
        Just(b"acme\r\nX-Tenant: globex".to_vec()),
        Just(vec![b'g'; 20_000]),
        Just(Vec::new()),
    ];
    let tenants = prop::collection::vec((tenant_name, tenant_value), 0..3);
    let role = prop::option::of(prop_oneof![
        Just(b"admin".to_vec()),
        Just(b"root\r\nX-Tenant: globex".to_vec()),
        Just(b"\xff\xfe".to_vec()),
    ]);
    (target, auth, tenants, role).prop_map(|(target, auth, tenants, role)| Hostile {
        target,
        auth,
        tenants,
        role,
    })
}

struct Keys {
    acme: String,
}

impl Hostile {
    fn wire(&self, keys: &Keys) -> Vec<u8> {
        let (method, path, body) = match self.target {
            Target::ChatAuto => ("POST", "/v1/chat/completions", chat_body("auto", false)),
            Target::ChatBig => (
                "POST",
                "/v1/chat/completions",
                chat_body("big-model", false),
            ),
            Target::ChatSmall => (
                "POST",
                "/v1/chat/completions",
                chat_body("small-model", false),
            ),
            Target::Models => ("GET", "/v1/models", Vec::new()),
            Target::AdminGet(p) => ("GET", p, Vec::new()),
            Target::AdminCreateTenant => ("POST", "/v1/tenants", br#"{"id": "evil"}"#.to_vec()),
            Target::AdminIssueGlobexKey => ("POST", "/v1/tenants/globex/keys", Vec::new()),
        };
        let mut out =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n").into_bytes();
        for (name, scheme, token, before, after) in &self.auth {
            out.extend_from_slice(format!("{name}:{before}{scheme}").as_bytes());
            out.extend_from_slice(&token.bytes(keys));
            out.extend_from_slice(format!("{after}\r\n").as_bytes());
        }
        for (name, value) in &self.tenants {
            out.extend_from_slice(format!("{name}: ").as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(role) = &self.role {
            out.extend_from_slice(b"X-User-Role: ");
            out.extend_from_slice(role);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out
    }
}

impl Token {
    fn bytes(&self, keys: &Keys) -> Vec<u8> {
        match self {
            Self::Acme => keys.acme.clone().into_bytes(),
            Self::Admin => ADMIN_KEY.as_bytes().to_vec(),
            Self::Garbage => b"sk-swy-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
            Self::AcmeUpper => keys.acme.to_uppercase().into_bytes(),
            Self::AcmeTruncated => keys.acme.as_bytes()[..keys.acme.len() - 1].to_vec(),
            Self::Long(n) => vec![b'k'; *n],
            Self::NonUtf8 => {
                let mut k = keys.acme.clone().into_bytes();
                k.extend_from_slice(b"\xff\xfe");
                k
            }
            Self::AcmeThenInjected(tail) => {
                let mut k = keys.acme.clone().into_bytes();
                k.extend_from_slice(tail.replace("ADMIN", ADMIN_KEY).as_bytes());
                k
            }
        }
    }
}

/// Status, lower-cased head, body; `None` when the server closed without an answer.
fn exchange(addr: SocketAddr, wire: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before reading all of a refused request.
    let _ = s.write_all(wire);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

#[test]
fn hostile_headers_never_reach_another_tenant_or_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(POLICY, &table, 1);
    let r = router_with_auth(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--cores",
            "2",
        ],
        &[],
    );
    let issued = admin(&r, "POST", "/v1/tenants/acme/keys", b"");
    assert_eq!(issued.status, 201, "{}", issued.text());
    let keys = Keys {
        acme: issued.json()["key"].as_str().unwrap().to_owned(),
    };
    let keys_before = admin(&r, "GET", "/v1/tenants/globex/keys", b"").json();

    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    // Admin changes the generated requests made (each needs the admin key to succeed).
    let (made_tenant, made_globex_key, mutations) = (
        std::cell::Cell::new(false),
        std::cell::Cell::new(false),
        std::cell::Cell::new(0usize),
    );
    runner
        .run(&hostile(), |h| {
            let wire = h.wire(&keys);
            // Every request is HTTP (however hostile its headers): each gets an answer.
            let (status, head, body) = exchange(r.addr, &wire)
                .ok_or_else(|| TestCaseError::fail(format!("no answer to {h:?}")))?;
            *statuses.borrow_mut().entry(status).or_default() += 1;
            if (200..300).contains(&status) {
                match h.target {
                    Target::AdminCreateTenant => made_tenant.set(true),
                    Target::AdminIssueGlobexKey => made_globex_key.set(true),
                    _ => {}
                }
                if matches!(
                    h.target,
                    Target::AdminCreateTenant | Target::AdminIssueGlobexKey
                ) {
                    mutations.set(mutations.get() + 1);
                }
            }
            let has_admin_key = wire
                .windows(ADMIN_KEY.len())
                .any(|w| w == ADMIN_KEY.as_bytes());
            match h.target {
                Target::ChatAuto | Target::ChatBig | Target::ChatSmall => {
                    prop_assert!(
                        status != 200 || head.contains("x-switchyard-route: endpoint=small;"),
                        "a request reached another tenant's endpoint: {h:?}\n{head}"
                    );
                    prop_assert!(
                        status != 200 || body.contains("small-model"),
                        "served a model outside acme's allowlist: {h:?}\n{body}"
                    );
                }
                Target::Models => {
                    prop_assert!(
                        status != 200 || !body.contains("big-model"),
                        "listed a model outside acme's allowlist: {h:?}\n{body}"
                    );
                }
                Target::AdminGet(_) | Target::AdminCreateTenant | Target::AdminIssueGlobexKey => {
                    prop_assert!(
                        !(200..300).contains(&status) || has_admin_key,
                        "the admin API answered {status} without the admin key: {h:?}\n{body}"
                    );
                }
            }
            // Whatever the refusal, the answer is the documented JSON error shape.
            if status >= 400 {
                let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                    TestCaseError::fail(format!("{status} body not JSON ({e}): {body}"))
                })?;
                prop_assert!(v["error"]["code"].is_string(), "{body}");
            }
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner();
    eprintln!("statuses over the run: {statuses:?}");
    // The run must have exercised both sides: refusals and requests that got through.
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(statuses.get(&401).copied().unwrap_or(0) > 0, "{statuses:?}");

    // Every change in the log is one the test made or an admin-keyed request that succeeded;
    // no tenant or key appeared otherwise. The router serves on.
    let tenants = admin(&r, "GET", "/v1/tenants", b"").json();
    let keys_after = admin(&r, "GET", "/v1/tenants/globex/keys", b"").json();
    let changes = admin(&r, "GET", "/v1/changes?limit=1000", b"").json();
    let logged = changes["data"].as_array().unwrap().len();
    assert_eq!(logged, 1 + mutations.get(), "{changes}");
    if !made_globex_key.get() {
        assert_eq!(keys_after, keys_before);
    }
    assert_eq!(
        tenants.to_string().contains("evil"),
        made_tenant.get(),
        "{tenants}"
    );
    assert_eq!(call(r.addr, "GET", "/healthz", &[], b"").status, 200);
    assert!(
        !r.log().contains("panicked"),
        "a connection panicked:\n{}",
        r.log()
    );
}
