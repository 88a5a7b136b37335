//! End-to-end harness: the real `switchyard` and `mock-upstream` binaries on port 0, policies
//! compiled by the compiler library into temporary tables, and a small independent HTTP/1.1
//! client (written here, not the router's parser) to talk to them over real sockets.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness; each test binary uses a different part of it"
)]

pub mod moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary built next to the test executables (`tools/test-all` builds them all first), or
/// the one `SWITCHYARD_TEST_BIN_<NAME>` names (to run a test against another build, e.g. to
/// see a regression test fail on the code before its fix).
pub fn binary(name: &str) -> PathBuf {
    let var = format!(
        "SWITCHYARD_TEST_BIN_{}",
        name.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace binaries first (`cargo build --workspace --bins`, which tools/test-all does)",
        path.display()
    );
    path
}

/// A running process, killed on drop; its stderr is collected.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
    /// The router's `--data-dir` when the harness made one (audit shards land there).
    pub data: Option<tempfile::TempDir>,
    /// The router's admin listener.
    pub admin: Option<SocketAddr>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal (SIGTERM = 15, SIGHUP = 1).
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn collect(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    tx: std::sync::mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            let mut l = log.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
}

fn wait_for_addr(
    rx: &std::sync::mpsc::Receiver<String>,
    marker: &str,
    what: &str,
    log: &Mutex<String>,
) -> SocketAddr {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
            && let Some(at) = line.find(marker)
        {
            let rest = &line[at + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .unwrap_or(rest.len());
            return rest[..end].parse().unwrap();
        }
    }
    panic!(
        "{what} did not start within 20 s; its output:\n{}",
        log.lock().unwrap()
    );
}

/// The admin key every test router accepts (`SWITCHYARD_ADMIN_KEYS`).
pub const ADMIN_KEY: &str = "test-admin-key-5f0c1d2e3a4b";

/// The router started with `args` must refuse to start; returns what it said on stderr.
pub fn refused_at_start(args: &[&str]) -> String {
    let out = std::process::Command::new(binary("switchyard"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts the router with `args` (plus `--listen 127.0.0.1:0` and `--no-auth`).
pub fn router(args: &[&str]) -> Proc {
    router_env(args, &[])
}

/// [`router`] with environment variables.
pub fn router_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    start_router(args, env, false)
}

/// Starts the router with API keys required (no `--no-auth`).
pub fn router_with_auth(args: &[&str], env: &[(&str, &str)]) -> Proc {
    start_router(args, env, true)
}

fn start_router(args: &[&str], env: &[(&str, &str)], auth: bool) -> Proc {
    start_router_under(&[], args, env, auth)
}

/// [`router`] started through `wrapper` (a command and its arguments, e.g. `strace -f`),
/// which must pass stderr through.
pub fn router_under(wrapper: &[&str], args: &[&str]) -> Proc {
    start_router_under(wrapper, args, &[], false)
}

fn start_router_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)], auth: bool) -> Proc {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(binary("switchyard"));
            c
        }
        None => Command::new(binary("switchyard")),
    };
    if !auth {
        cmd.arg("--no-auth");
    }
    cmd.env("SWITCHYARD_ADMIN_KEYS", ADMIN_KEY);
    // Every router gets its own data directory (it is locked per process).
    let data = (!args.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
    if let Some(d) = &data {
        cmd.arg("--data-dir").arg(d.path());
    }
    if !args.contains(&"--admin-listen") {
        cmd.args(["--admin-listen", "127.0.0.1:0"]);
    }
    // The mock upstream takes its per-request instructions from `x-mock-*` headers, which
    // the router forwards only when told to.
    if !args.contains(&"--forward-header") {
        cmd.args(["--forward-header", "x-mock-*"]);
    }
    if !args.contains(&"--log") {
        cmd.args(["--log", "info"]);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    collect(child.stderr.take().unwrap(), Arc::clone(&log), tx);
    let admin = wait_for_addr(
        &rx,
        "admin listening on http://",
        "switchyard's admin listener",
        &log,
    );
    let marker = if args.contains(&"--tls-cert") {
        "switchyard listening on https://"
    } else {
        "switchyard listening on http://"
    };
    let addr = wait_for_addr(&rx, marker, "switchyard", &log);
    Proc {
        child,
        addr,
        log,
        data,
        admin: Some(admin),
    }
}

/// An admin API call with [`ADMIN_KEY`].
pub fn admin(r: &Proc, method: &str, path: &str, body: &[u8]) -> Response {
    call(
        r.admin.unwrap(),
        method,
        path,
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        body,
    )
}

/// Starts the mock upstream with `args`.
pub fn mock(args: &[&str]) -> Proc {
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(binary("mock-upstream"))
        .args(listen)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    collect(child.stdout.take().unwrap(), Arc::clone(&log), tx.clone());
    collect(child.stderr.take().unwrap(), Arc::clone(&log), tx);
    let marker = if args.contains(&"--tls") {
        "listening on https://"
    } else {
        "listening on http://"
    };
    let addr = wait_for_addr(&rx, marker, "mock-upstream", &log);
    Proc {
        child,
        addr,
        log,
        data: None,
        admin: None,
    }
}

/// Starts the Bedrock runtime test server (`tools/aws/bedrock_mock.py`, which checks every
/// signature with botocore) with `args`.
pub fn bedrock_mock(args: &[&str]) -> Proc {
    python_server("aws/bedrock_mock.py", args)
}

/// Starts the Vertex AI test server (`tools/gcp/vertex_mock.py`: a token endpoint verifying
/// every JWT with `cryptography`, Gemini and Claude routes) with `args`.
pub fn vertex_mock(args: &[&str]) -> Proc {
    python_server("gcp/vertex_mock.py", args)
}

/// Starts the OTLP/HTTP test collector (`tools/otlp/collector.py`: checks each export with
/// `opentelemetry-proto`; `GET /__spans` lists what it got).
pub fn otlp_collector() -> Proc {
    python_server("otlp/collector.py", &[])
}

/// Starts a Python test server from `tools/` that prints `listening on http://ADDR`.
fn python_server(script: &str, args: &[&str]) -> Proc {
    let path = format!("{}/../tools/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (tools/test-all installs it and the packages in tools/sdk/requirements.txt)");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    collect(child.stdout.take().unwrap(), Arc::clone(&log), tx.clone());
    collect(child.stderr.take().unwrap(), Arc::clone(&log), tx);
    let addr = wait_for_addr(&rx, "listening on http://", script, &log);
    Proc {
        child,
        addr,
        log,
        data: None,
        admin: None,
    }
}

/// Compiles `yaml` into a table at `path` (atomically) with `revision`.
pub fn compile(yaml: &str, path: &Path, revision: u64) {
    let mut sources = policyc::source::Sources::new();
    let id = sources.add("policy.yaml", yaml);
    let out = policyc::compile_sources(&sources, id, None, revision).unwrap();
    let rendered = policyc::diag::render_human(&sources, &out.diagnostics);
    let failed = out.has_errors();
    let compiled = out
        .compiled
        .filter(|_| !failed)
        .unwrap_or_else(|| panic!("policy does not compile:\n{rendered}"));
    policyc::write_atomic(path, &compiled.table).unwrap();
}

/// A temporary directory holding `yaml` compiled to `t.swt` (revision 1).
pub fn compiled(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(yaml, &table, 1);
    (dir, table)
}

/// Issues a client key for `tenant` through the admin API (`body`: the key's fields);
/// returns its id and the key.
pub fn issue_key(r: &Proc, tenant: &str, body: &str) -> (String, String) {
    let resp = admin(
        r,
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        body.as_bytes(),
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    let v = resp.json();
    let key = v["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-swy-"), "{v}");
    (v["id"].as_str().unwrap().to_owned(), key)
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-switchyard-route` endpoint and rule.
    pub fn route(&self) -> (String, String) {
        let v = self
            .header("x-switchyard-route")
            .unwrap_or_else(|| panic!("no x-switchyard-route header: {:?}", self.headers));
        let field = |k: &str| {
            v.split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(k))
                .unwrap_or_default()
                .to_owned()
        };
        (field("endpoint="), field("rule="))
    }

    /// The OpenAI error code.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Wraps a connection opened (and perhaps written to) by hand.
    pub fn from_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads the response head; `None` if the server closed first.
    pub fn read_head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line `{status_line}`"));
        let mut headers = Vec::new();
        loop {
            let l = self.line().expect("connection closed inside a head");
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        Some((status, headers))
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.line().expect("closed before a chunk");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            while !self.line().unwrap().is_empty() {}
            return None;
        }
        let data = self.take(size);
        assert_eq!(self.take(2), b"\r\n");
        Some(data)
    }

    /// Reads a whole response (100 Continue skipped).
    pub fn read_response(&mut self) -> Option<Response> {
        loop {
            let (status, headers) = self.read_head()?;
            if status == 100 {
                continue;
            }
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let body = if let Some(len) = get("content-length") {
                self.take(len.parse().unwrap())
            } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                let mut body = Vec::new();
                while let Some(c) = self.read_chunk() {
                    body.extend_from_slice(&c);
                }
                body
            } else {
                let mut rest = std::mem::take(&mut self.buf);
                let _ = self.stream.read_to_end(&mut rest);
                rest
            };
            return Some(Response {
                status,
                headers,
                body,
            });
        }
    }

    /// Whether the server has closed the connection (reads EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let closed = matches!(self.stream.read(&mut b), Ok(0) | Err(_));
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        closed
    }
}

/// A request in wire form.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if method == "POST" || !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One request on a fresh connection.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = Conn::open(addr);
    c.send(&request(method, path, headers, body));
    c.read_response().expect("server closed without answering")
}

/// A chat request body.
pub fn chat_body(model: &str, stream: bool) -> Vec<u8> {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Hello from the end-to-end test"}],
        "stream": stream,
        "max_tokens": 64
    })
    .to_string()
    .into_bytes()
}

/// POST /v1/chat/completions with `headers`.
pub fn chat(addr: SocketAddr, model: &str, headers: &[(&str, &str)]) -> Response {
    chat_streamed(addr, model, false, headers)
}

/// [`chat`], streamed or not.
pub fn chat_streamed(
    addr: SocketAddr,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> Response {
    call(
        addr,
        "POST",
        "/v1/chat/completions",
        headers,
        &chat_body(model, stream),
    )
}

/// `127.0.0.1:PORT` with a port free now (for a server that must come back on the same one).
pub fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// The requests the mock upstream received.
pub fn mock_requests(mock: &Proc) -> Vec<serde_json::Value> {
    let r = call(mock.addr, "GET", "/__mock/requests", &[], b"");
    r.json().as_array().unwrap().clone()
}

/// Every file under `dir`, recursively (for greps of what the router wrote).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The `health` object `GET /v1/endpoints` shows for endpoint `id`.
pub fn endpoint_health(r: &Proc, id: &str) -> serde_json::Value {
    let all = admin(r, "GET", "/v1/endpoints", b"").json();
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no endpoint {id}: {all}"))["health"]
        .clone()
}

/// Polls `done` every 50 ms for up to 5 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
