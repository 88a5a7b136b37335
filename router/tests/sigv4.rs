//! Our SigV4 signer against botocore's (`tools/aws/sigv4_check.py`), an implementation we did
//! not write: for every case both must produce the same canonical request and the same
//! `Authorization` header — Bedrock paths with model ids holding `:` and `/` (sent encoded and
//! not), inference-profile ARNs, session tokens, GET and POST, queries, untidy header values,
//! dot segments, non-ASCII paths, and a day boundary.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::io::Write as _;
use std::process::{Command, Stdio};

use switchyard::upstream::sigv4::{Credentials, Request, Signer, canonical_request};

struct Case {
    method: &'static str,
    host: &'static str,
    path: String,
    query: &'static str,
    extra: Vec<(&'static str, &'static str)>,
    body: &'static str,
    token: Option<&'static str>,
    region: &'static str,
    service: &'static str,
    date: &'static str,
}

fn case(path: &str) -> Case {
    Case {
        method: "POST",
        host: "bedrock-runtime.us-east-1.amazonaws.com",
        path: path.to_owned(),
        query: "",
        extra: vec![("content-type", "application/json")],
        body: r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
        token: None,
        region: "us-east-1",
        service: "bedrock",
        date: "20261201T153000Z",
    }
}

/// A model id as one path segment, the way we send it (`/` and `:` percent-encoded).
fn segment(id: &str) -> String {
    let mut out = String::new();
    switchyard::codec::percent_encode(id, switchyard::codec::unreserved, &mut out);
    out
}

fn cases() -> Vec<Case> {
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    let mut all = vec![
        case("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"),
        case(&format!(
            "/model/{}/converse",
            segment("anthropic.claude-3-5-sonnet-20240620-v1:0")
        )),
        case(&format!(
            "/model/{}/converse-stream",
            segment("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        )),
        case(&format!("/model/{}/invoke", segment(arn))),
        case(&format!(
            "/model/{}/invoke-with-response-stream",
            segment(arn)
        )),
        case("/model/meta.llama3-70b-instruct-v1:0/converse"),
        case("/a/./b/../c//d/"),
        case("/caf\u{e9}/\u{65e5}\u{672c}"),
        case("/"),
    ];
    let mut token = case(&format!("/model/{}/converse", segment(arn)));
    token.token = Some("IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD=");
    all.push(token);
    let mut get = case("/");
    get.method = "GET";
    get.host = "example.amazonaws.com";
    get.query = "Param2=value2&Param1=value1&a=&b=%20c";
    get.body = "";
    get.extra = vec![];
    get.service = "service";
    all.push(get);
    let mut untidy = case("/model/x/converse");
    untidy.extra = vec![
        ("content-type", "  application/json  "),
        ("x-amz-meta-note", "a   b \t c"),
        ("X-Custom", "Upper"),
    ];
    all.push(untidy);
    let mut local = case("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    local.host = "127.0.0.1:43123";
    local.region = "eu-west-3";
    local.date = "20261231T235959Z";
    all.push(local);
    all
}

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn headers(c: &Case) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&str, String)> = vec![
        ("host", c.host.to_owned()),
        ("x-amz-date", c.date.to_owned()),
    ];
    h.extend(c.extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
    if let Some(t) = c.token {
        h.push(("x-amz-security-token", t.to_owned()));
    }
    h
}

#[test]
fn our_signatures_match_botocores() {
    let cases = cases();
    let mut input = Vec::new();
    let mut ours = Vec::new();
    for c in &cases {
        let h = headers(c);
        let borrowed: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = Request {
            method: c.method,
            path: &c.path,
            query: c.query,
            headers: &borrowed,
            body: c.body.as_bytes(),
        };
        let signer = Signer::new(
            Credentials {
                access_key_id: KEY.into(),
                secret_access_key: SECRET.into(),
                session_token: c.token.map(str::to_owned),
            },
            c.region,
            c.service,
        );
        ours.push((
            canonical_request(&req).0,
            signer.authorization(&req, c.date),
        ));
        let query = if c.query.is_empty() {
            String::new()
        } else {
            format!("?{}", c.query)
        };
        input.push(serde_json::json!({
            "method": c.method,
            "url": format!("https://{}{}{query}", c.host, c.path),
            "headers": h,
            "body": c.body,
            "access_key": KEY,
            "secret_key": SECRET,
            "token": c.token,
            "region": c.region,
            "service": c.service,
        }));
    }
    let script = format!("{}/../tools/aws/sigv4_check.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore could not sign (python3 -m pip install botocore; tools/test-all does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), cases.len());
    for ((c, (canonical, auth)), t) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(
            canonical,
            t["canonical_request"].as_str().unwrap(),
            "canonical request of {} {}",
            c.method,
            c.path
        );
        assert_eq!(
            auth,
            t["authorization"].as_str().unwrap(),
            "{} {}",
            c.method,
            c.path
        );
    }
}

/// One case of the AWS SigV4 test suite (`testdata/aws4_testsuite`, as botocore ships it).
struct SuiteCase {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads a suite `.req` file: the request line, header lines (a line starting with
/// whitespace continues the previous value), a blank line and the body.
fn suite_request(name: String, raw: &str) -> SuiteCase {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let line = lines.next().unwrap();
    let (method, rest) = line.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(l.trim());
        } else {
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    SuiteCase {
        name,
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn suite_cases(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, SuiteCase)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            suite_cases(&p, out);
        } else if p.extension().is_some_and(|e| e == "req") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let raw = std::fs::read_to_string(&p).unwrap();
            out.push((p.with_extension(""), suite_request(name, &raw)));
        }
    }
}

/// Every case of the AWS SigV4 test suite: our canonical request and `Authorization` header
/// equal the suite's, byte for byte.
#[test]
fn the_aws_sigv4_test_suite_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/aws4_testsuite");
    let mut cases = Vec::new();
    suite_cases(&root, &mut cases);
    assert!(
        cases.len() >= 30,
        "only {} cases under {}",
        cases.len(),
        root.display()
    );
    let mut failures = Vec::new();
    for (stem, c) in &cases {
        let expected_creq = std::fs::read_to_string(stem.with_extension("creq")).unwrap();
        let expected_authz = std::fs::read_to_string(stem.with_extension("authz")).unwrap();
        // A session token is the signer's to add (as the router does): the suite's request
        // leaves it out and its signed request shows it.
        let mut c_headers = c.headers.clone();
        if c.name.contains("session-token") {
            let sreq = std::fs::read_to_string(stem.with_extension("sreq")).unwrap();
            let token = sreq
                .lines()
                .find_map(|l| l.strip_prefix("X-Amz-Security-Token:"))
                .unwrap();
            c_headers.push(("X-Amz-Security-Token".into(), token.into()));
        }
        let headers: Vec<(&str, &str)> = c_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Request {
            method: &c.method,
            path: &c.path,
            query: &c.query,
            headers: &headers,
            body: &c.body,
        };
        let signer = Signer::new(
            Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            },
            "us-east-1",
            "service",
        );
        let (creq, _) = canonical_request(&req);
        let authz = signer.authorization(&req, "20150830T123600Z");
        if creq != expected_creq.replace("\r\n", "\n") {
            failures.push(format!(
                "{}: canonical request\n--- ours\n{creq}\n--- suite\n{expected_creq}",
                c.name
            ));
        } else if authz != expected_authz.trim() {
            failures.push(format!(
                "{}: authorization\n{authz}\n{expected_authz}",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
