//! mock-upstream: an OpenAI-compatible and Anthropic-compatible server for Switchyard's
//! end-to-end tests and load benchmarks.
//!
//! By the path asked (any prefix): `…/chat/completions` answers an OpenAI chat completion,
//! or Server-Sent Events when the body says `"stream": true` (like OpenAI, a stream carries a
//! usage chunk — `"choices": []` and `usage`, before `[DONE]` — only when the request sets
//! `stream_options.include_usage`, and then every other chunk has `"usage": null`);
//! `…/embeddings` answers OpenAI embeddings; `…/v1/messages` answers an Anthropic message or
//! its event stream (`message_start`, `ping`, thinking, text and `tool_use` blocks with their
//! deltas, `message_delta` with the stop reason and usage, `message_stop`);
//! `…/v1/messages/count_tokens` answers `{"input_tokens": N}`; `…/model/{id}/converse` and
//! `…/converse-stream` answer as Bedrock does (AWS event-stream frames; signatures are not
//! checked — `tools/aws/bedrock_mock.py` does that for the tests). Defaults come from flags;
//! each request may override them with headers (the router forwards `x-mock-*` headers when
//! started with `--forward-header 'x-mock-*'`, as the tests do):
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-latency-ms: N` | wait N ms before the response head |
//! | `x-mock-status: N` | answer with status N (an OpenAI error body when N ≥ 400; `--status` sets the default, `--status-every K` gives it to every Kth request only) |
//! | `x-mock-error-code: C` | the OpenAI error body's `code` (`--error-code`; `insufficient_quota`: out of credit) |
//! | `x-mock-retry-after: V` | send `Retry-After: V` with an error answer (`--retry-after` sets the default) |
//! | `x-mock-chunks: N` | stream N content chunks |
//! | `x-mock-chunk-bytes: N` | each chunk carries N bytes of content |
//! | `x-mock-chunk-delay-ms: N` | wait N ms between chunks |
//! | `x-mock-fault: reset` | reset the connection (RST) instead of answering (`--fault` sets a default) |
//! | `x-mock-fault: close` | close the connection without answering |
//! | `x-mock-fault: garbage` | send bytes that are not HTTP |
//! | `x-mock-fault: drop-after-N` | stream N chunks, then reset the connection |
//! | `x-mock-fault: stall-after-N` | stream N chunks, then send nothing more (connection open) |
//! | `x-mock-fault: short-body` | promise a longer `Content-Length` than sent, then close |
//! | `x-mock-fault: no-length` | answer with neither length nor chunking: the body ends at close |
//! | `x-mock-fault: no-usage` | never report usage (JSON or stream), as some servers do |
//! | `x-mock-fault: stream-error` | end the stream with an error event (OpenAI `data: {"error"…}`, Anthropic `event: error`) |
//! | `x-mock-fault: truncate` | end the stream cleanly but without its end (no finish, no `[DONE]` / `message_stop`) |
//! | `x-mock-fault: unknown-event` | (Anthropic) add an event of a type no client knows |
//! | `x-mock-tools: N` | answer with N tool calls, their arguments streamed in pieces |
//! | `x-mock-thinking: 1` | (Anthropic) answer with a thinking block first, signed |
//! | `x-mock-finish: R` | finish with `finish_reason` / `stop_reason` R |
//! | `x-mock-cache-read: N`, `x-mock-cache-write: N` | report N cached prompt tokens |
//!
//! A JSON answer's `usage` starts with `prompt_tokens_details` (key order is not part of the
//! format, so readers must not depend on it).
//! | `x-mock-fault: early-hints` | send `103 Early Hints` and the final head in one write |
//!
//! `GET /__mock/requests` returns the requests received so far (method, target, headers and
//! body, base64-free: the body as a UTF-8 string) so tests can check exactly what the router
//! forwarded. `GET /healthz` answers 200. With `--tls` it serves HTTPS with a certificate
//! signed by a CA generated at start, written to `--ca-out` for the client to trust.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use switchyard::http::chunked::{Decoder, decode_into};
use switchyard::http::request::{Framing, Limits, parse_head};

#[derive(Debug, Parser)]
#[command(
    name = "mock-upstream",
    about = "OpenAI-compatible mock upstream for tests and benchmarks"
)]
struct Args {
    /// Address to listen on; port 0 picks one (printed on stdout as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Executors (threads), each with its own SO_REUSEPORT listener.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Default delay before the response head, ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Default number of content chunks in a stream.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Default content bytes per chunk (and in a JSON answer: chunks × bytes).
    #[arg(long, default_value_t = 16)]
    chunk_bytes: usize,
    /// Default delay between stream chunks, ms.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Serve HTTPS with a freshly generated CA.
    #[arg(long)]
    tls: bool,
    /// Where to write the generated CA certificate (PEM) when `--tls` is set.
    #[arg(long, default_value = "mock-upstream-ca.pem")]
    ca_out: PathBuf,
    /// Requests remembered for `GET /__mock/requests` (per core).
    #[arg(long, default_value_t = 256)]
    remember: usize,
    /// Default status of every answer (an error body in the path's dialect when ≥ 400): an
    /// endpoint that is down, rate limited or overloaded for every request.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// `Retry-After` value sent with error answers (`x-mock-retry-after` per request).
    #[arg(long)]
    retry_after: Option<String>,
    /// Give `--status` to every Nth model request only (the others answer 200): 2 is an
    /// endpoint rate limited half the time.
    #[arg(long, default_value_t = 1)]
    status_every: u64,
    /// Default fault of every model request (as `x-mock-fault`).
    #[arg(long)]
    fault: Option<String>,
    /// `code` of the OpenAI error body sent with an error status (as `x-mock-error-code`):
    /// `insufficient_quota` is OpenAI's out-of-credit 429.
    #[arg(long, default_value = "mock_status")]
    error_code: String,
}

/// Model requests answered so far (all cores), for `--status-every`.
static MODEL_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Clone, Debug)]
struct Defaults {
    status: u16,
    status_every: u64,
    fault: Option<String>,
    error_code: String,
    retry_after: Option<String>,
    latency_ms: u64,
    chunks: usize,
    chunk_bytes: usize,
    chunk_delay_ms: u64,
    remember: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = if args.tls {
        Some(tls_config(&args.ca_out)?)
    } else {
        None
    };
    let defaults = Defaults {
        status: args.status,
        status_every: args.status_every.max(1),
        fault: args.fault.clone(),
        error_code: args.error_code.clone(),
        retry_after: args.retry_after.clone(),
        latency_ms: args.latency_ms,
        chunks: args.chunks,
        chunk_bytes: args.chunk_bytes,
        chunk_delay_ms: args.chunk_delay_ms,
        remember: args.remember,
    };
    let mut addr = args.listen;
    let mut handles = Vec::new();
    for core in 0..args.cores.max(1) {
        let (tx, rx) = std::sync::mpsc::channel();
        let defaults = defaults.clone();
        let tls = tls.clone();
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("mock-{core}"))
            .spawn(move || async move {
                let listener = match TcpListener::bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(listener.local_addr().map_err(|e| e.to_string()));
                let log = Rc::new(RefCell::new(Vec::new()));
                loop {
                    let Ok(stream) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let defaults = defaults.clone();
                    let tls = tls.clone();
                    let log = Rc::clone(&log);
                    glommio::spawn_local(async move {
                        match tls {
                            Some(cfg) => {
                                let acceptor = futures_rustls::TlsAcceptor::from(cfg);
                                if let Ok(s) = acceptor.accept(stream).await {
                                    serve(s, None, &defaults, &log).await;
                                }
                            }
                            None => {
                                let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                                serve(stream, Some(fd), &defaults, &log).await;
                            }
                        }
                    })
                    .detach();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start executor: {e}"))?;
        let bound = rx
            .recv()
            .context("executor exited")?
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        addr = bound;
        handles.push(h);
    }
    println!(
        "listening on {}://{addr}",
        if args.tls { "https" } else { "http" }
    );
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn tls_config(ca_out: &PathBuf) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "switchyard mock-upstream test CA",
    );
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    std::fs::write(ca_out, ca_cert.pem())
        .with_context(|| format!("cannot write {}", ca_out.display()))?;

    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

mod anthropic;
mod bedrock;
mod openai;

/// Per-request behaviour, from defaults and `x-mock-*` headers.
#[derive(Debug)]
pub(crate) struct Plan {
    latency_ms: u64,
    pub(crate) status: u16,
    retry_after: Option<String>,
    pub(crate) chunks: usize,
    pub(crate) chunk_bytes: usize,
    chunk_delay_ms: u64,
    pub(crate) fault: Option<String>,
    pub(crate) error_code: String,
    pub(crate) tools: usize,
    pub(crate) thinking: bool,
    pub(crate) finish: Option<String>,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    fd: Option<i32>,
    defaults: &Defaults,
    log: &Rc<RefCell<Vec<serde_like::Recorded>>>,
) {
    let limits = Limits {
        max_head_bytes: 64 * 1024,
        max_headers: 200,
        max_uri_bytes: 8 * 1024,
        max_body_bytes: 64 * 1024 * 1024,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut headers = Vec::new();
    loop {
        let head = loop {
            match parse_head(&buf[..filled], &limits, &mut headers) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => return,
            }
            if filled == buf.len() {
                return;
            }
            match s.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        };
        let (body, consumed) = match head.framing {
            Framing::Empty => (Vec::new(), head.len),
            Framing::Length(n) => {
                let need = head.len + usize::try_from(n).unwrap_or(usize::MAX);
                if need > buf.len() {
                    buf.resize(need, 0);
                }
                while filled < need {
                    match s.read(&mut buf[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => filled += k,
                    }
                }
                (buf[head.len..need].to_vec(), need)
            }
            Framing::Chunked => {
                let mut dec = Decoder::new();
                let mut body = Vec::new();
                let mut at = head.len;
                loop {
                    let Ok((done, used)) = decode_into(&mut dec, &buf[at..filled], &mut body)
                    else {
                        return;
                    };
                    at += used;
                    if done {
                        break (body, at);
                    }
                    if filled == buf.len() {
                        buf.resize(buf.len() * 2, 0);
                    }
                    match s.read(&mut buf[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => filled += k,
                    }
                }
            }
        };
        let raw = &buf[..head.len];
        let header = |name: &[u8]| {
            headers
                .iter()
                .find(|h| h.name(raw).eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value(raw)).into_owned())
        };
        let num = |name: &[u8], default: u64| {
            header(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let model_request = !raw[head.target.clone()].starts_with(b"/__mock")
            && &raw[head.target.clone()] != b"/healthz";
        let default_status = if model_request && defaults.status_every > 1 {
            let n = MODEL_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(defaults.status_every) {
                defaults.status
            } else {
                200
            }
        } else {
            defaults.status
        };
        let plan = Plan {
            latency_ms: num(b"x-mock-latency-ms", defaults.latency_ms),
            status: u16::try_from(num(b"x-mock-status", u64::from(default_status))).unwrap_or(200),
            retry_after: header(b"x-mock-retry-after").or_else(|| defaults.retry_after.clone()),
            chunks: usize::try_from(num(b"x-mock-chunks", defaults.chunks as u64)).unwrap_or(8),
            chunk_bytes: usize::try_from(num(b"x-mock-chunk-bytes", defaults.chunk_bytes as u64))
                .unwrap_or(16),
            chunk_delay_ms: num(b"x-mock-chunk-delay-ms", defaults.chunk_delay_ms),
            fault: header(b"x-mock-fault").or_else(|| defaults.fault.clone()),
            error_code: header(b"x-mock-error-code").unwrap_or_else(|| defaults.error_code.clone()),
            tools: usize::try_from(num(b"x-mock-tools", 0))
                .unwrap_or(0)
                .min(16),
            thinking: num(b"x-mock-thinking", 0) == 1,
            finish: header(b"x-mock-finish"),
            cache_read: num(b"x-mock-cache-read", 0),
            cache_write: num(b"x-mock-cache-write", 0),
        };
        let target = String::from_utf8_lossy(&raw[head.target.clone()]).into_owned();
        let keep_alive = head.keep_alive;
        if target == "/__mock/requests" {
            let body = serde_like::render(&log.borrow());
            let resp = response(200, "application/json", body.as_bytes(), None);
            if s.write_all(&resp).await.is_err() {
                return;
            }
        } else if target == "/healthz" {
            if s.write_all(&response(200, "text/plain", b"ok", None))
                .await
                .is_err()
            {
                return;
            }
        } else {
            {
                let mut l = log.borrow_mut();
                if l.len() >= defaults.remember {
                    l.remove(0);
                }
                l.push(serde_like::Recorded {
                    target: target.clone(),
                    headers: headers
                        .iter()
                        .map(|h| {
                            (
                                String::from_utf8_lossy(h.name(raw)).into_owned(),
                                String::from_utf8_lossy(h.value(raw)).into_owned(),
                            )
                        })
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            if !answer(&mut s, fd, &plan, &target, &body).await {
                return;
            }
        }
        if !keep_alive {
            let _ = s.close().await;
            return;
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
}

/// Answers a request by its path; `false` when the connection must end.
async fn answer<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    target: &str,
    body: &[u8],
) -> bool {
    if plan.latency_ms > 0 {
        glommio::timer::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    match plan.fault.as_deref() {
        Some("reset") => {
            reset(fd);
            return false;
        }
        Some("close") => return false,
        Some("garbage") => {
            let _ = s.write_all(b"this is not HTTP\r\n\r\n").await;
            let _ = s.flush().await;
            return false;
        }
        _ => {}
    }
    let path = target.split('?').next().unwrap_or_default();
    if path.ends_with("/converse") || path.ends_with("/converse-stream") {
        bedrock::converse(s, fd, plan, body, path.ends_with("-stream")).await
    } else if path.ends_with("/messages/count_tokens") {
        anthropic::count_tokens(s, plan, body).await
    } else if path.ends_with("/messages") {
        anthropic::messages(s, fd, plan, body).await
    } else if path.ends_with("/embeddings") {
        openai::embeddings(s, plan, body).await
    } else {
        openai::chat(s, fd, plan, body).await
    }
}

/// The arguments of mock tool call `i`, in the pieces a stream sends them in.
pub(crate) fn tool_arguments(i: usize) -> Vec<String> {
    vec![
        "{\"city\":".to_owned(),
        " \"Paris\",".to_owned(),
        format!(" \"call\": {i}}}"),
    ]
}

/// An error answer with `status` and `body`; `false` when the connection must end.
pub(crate) async fn send_error_status<S: AsyncWrite + Unpin>(
    s: &mut S,
    plan: &Plan,
    body: &[u8],
) -> bool {
    let mut resp = response(plan.status, "application/json", body, None);
    if let Some(after) = &plan.retry_after {
        // Before the blank line that ends the head.
        if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = format!("\r\nretry-after: {after}");
            resp.splice(end..end, line.bytes());
        }
    }
    let _ = s.write_all(&resp).await;
    s.flush().await.is_ok()
}

/// Streams `events` as a chunked event-stream body, one chunk per event (paced by
/// `x-mock-chunk-delay-ms`, cut by `drop-after-N`); `false` when the connection must end.
pub(crate) async fn chunked_events<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    events: &[Vec<u8>],
) -> bool {
    chunked_frames(s, fd, plan, events, "text/event-stream").await
}

/// [`chunked_events`] with another content type (Bedrock's binary event stream).
pub(crate) async fn chunked_frames<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    events: &[Vec<u8>],
    content_type: &str,
) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.flush().await.is_err() {
        return false;
    }
    let drop_after = plan
        .fault
        .as_deref()
        .and_then(|f| f.strip_prefix("drop-after-"))
        .and_then(|n| n.parse::<usize>().ok());
    let stall_after = plan
        .fault
        .as_deref()
        .and_then(|f| f.strip_prefix("stall-after-"))
        .and_then(|n| n.parse::<usize>().ok());
    for (i, e) in events.iter().enumerate() {
        if drop_after.is_some_and(|n| i > n) {
            reset(fd);
            return false;
        }
        if stall_after.is_some_and(|n| i > n) {
            // Silent, connection open, until the client gives up.
            glommio::timer::sleep(Duration::from_secs(600)).await;
            return false;
        }
        if i > 0 && plan.chunk_delay_ms > 0 {
            glommio::timer::sleep(Duration::from_millis(plan.chunk_delay_ms)).await;
        }
        let mut framed = format!("{:x}\r\n", e.len()).into_bytes();
        framed.extend_from_slice(e);
        framed.extend_from_slice(b"\r\n");
        if s.write_all(&framed).await.is_err() || s.flush().await.is_err() {
            return false;
        }
    }
    s.write_all(b"0\r\n\r\n").await.is_ok() && s.flush().await.is_ok()
}

/// Makes the next close send RST (SO_LINGER 0); over TLS the close is plain.
fn reset(fd: Option<i32>) {
    if let Some(fd) = fd {
        #[expect(
            unsafe_code,
            reason = "SO_LINGER on a socket glommio owns; no safe accessor"
        )]
        // SAFETY: `fd` is the raw descriptor of a TcpStream that is alive for this whole
        // call (the caller holds it); the borrow does not outlive it and does not close it.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    }
}

pub(crate) fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    claimed_len: Option<usize>,
) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-mock-upstream: 1\r\n\r\n",
        claimed_len.unwrap_or(body.len())
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

mod serde_like {
    //! The request log, rendered as JSON.
    #[derive(Debug)]
    pub(crate) struct Recorded {
        pub(crate) target: String,
        pub(crate) headers: Vec<(String, String)>,
        pub(crate) body: String,
    }

    pub(crate) fn render(log: &[Recorded]) -> String {
        let items: Vec<serde_json::Value> = log
            .iter()
            .map(|r| {
                serde_json::json!({
                    "target": r.target,
                    "headers": r.headers.iter().map(|(n, v)| serde_json::json!([n, v])).collect::<Vec<_>>(),
                    "body": r.body,
                })
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }
}
