//! Limits, timeouts and malformed input against the real router (embedded demo table):
//! every refusal gets its status and an OpenAI-format body, and the server keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::*;

fn small_router() -> Proc {
    router(&[
        "--cores",
        "2",
        "--max-header-bytes",
        "2048",
        "--max-headers",
        "20",
        "--max-uri-bytes",
        "512",
        "--max-body-bytes",
        "4096",
        "--head-timeout-ms",
        "700",
        "--body-timeout-ms",
        "700",
        "--idle-timeout-ms",
        "1500",
        "--max-connections-per-core",
        "8",
    ])
}

/// Sends raw bytes, expects a refusal with `status` and an OpenAI error body, and the
/// connection closed after it.
fn refused(p: &Proc, raw: &[u8], status: u16) {
    let mut c = Conn::open(p.addr);
    c.send(raw);
    let r = c.read_response().unwrap_or_else(|| {
        panic!(
            "no answer to {}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        )
    });
    assert_eq!(
        r.status,
        status,
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(120)])
    );
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(v["error"]["type"].is_string() && v["error"]["code"].is_string());
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.route(), ("none".to_owned(), "none".to_owned()));
    assert!(
        r.header("x-request-id")
            .is_some_and(|id| id.starts_with("swy-"))
    );
    assert!(c.is_closed(Duration::from_secs(3)));
}

fn still_serving(p: &Proc) {
    let r = call(p.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn every_refusal_has_its_status() {
    let p = small_router();
    let body = chat_body("auto", false);
    refused(&p, b"BLAH\r\n\r\n", 400);
    refused(&p, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400);
    refused(&p, b"GET /healthz HTTP/1.1\r\n\r\n", 400);
    refused(
        &p,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        400,
    );
    refused(
        &p,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    refused(
        &p,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    );
    refused(
        &p,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n",
        411,
    );
    refused(
        &p,
        &request("POST", "/v1/chat/completions", &[], &vec![b'x'; 5000]),
        413,
    );
    // Chunked bodies are counted as they decode.
    let mut big =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..6 {
        big.extend_from_slice(b"400\r\n");
        big.extend_from_slice(&[b'a'; 1024]);
        big.extend_from_slice(b"\r\n");
    }
    refused(&p, &big, 413);
    refused(
        &p,
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(600)).as_bytes(),
        414,
    );
    refused(
        &p,
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(3000)
        )
        .as_bytes(),
        431,
    );
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    refused(
        &p,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        431,
    );
    refused(
        &p,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
    refused(&p, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    refused(&p, b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", 505);
    still_serving(&p);
    // A body-level refusal keeps the connection: the next request on it is served.
    let mut c = Conn::open(p.addr);
    c.send(&request("POST", "/v1/chat/completions", &[], b"{oops"));
    assert_eq!(c.read_response().unwrap().status, 400);
    c.send(&request("POST", "/v1/chat/completions", &[], &body));
    assert_eq!(c.read_response().unwrap().status, 200);
}

#[test]
fn slow_clients_get_408() {
    let p = small_router();
    // Slowloris: a head trickled byte by byte past the head deadline.
    let mut c = Conn::open(p.addr);
    let started = Instant::now();
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
        if c.stream.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
        if started.elapsed() > Duration::from_millis(1200) {
            break;
        }
    }
    let r = c.read_response().expect("408 expected");
    assert_eq!(r.status, 408);
    assert_eq!(r.error_code(), "request_timeout");
    // A body that never finishes.
    let mut c = Conn::open(p.addr);
    c.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":",
    );
    let r = c.read_response().expect("408 expected");
    assert_eq!(r.status, 408);
    // An idle keep-alive connection is closed quietly after the idle timeout.
    let mut c = Conn::open(p.addr);
    c.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(c.read_response().unwrap().status, 200);
    let idle = Instant::now();
    assert!(c.is_closed(Duration::from_secs(5)));
    assert!(
        idle.elapsed() >= Duration::from_millis(1000),
        "closed after {:?}",
        idle.elapsed()
    );
    still_serving(&p);
}

#[test]
fn keep_alive_pipelining_chunked_bodies_and_100_continue() {
    let p = small_router();
    let body = chat_body("auto", false);
    // Three pipelined requests in one write, answered in order.
    let mut c = Conn::open(p.addr);
    let mut wire = request("GET", "/healthz", &[("X-Request-Id", "one")], b"");
    wire.extend(request(
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "two")],
        &body,
    ));
    wire.extend(request(
        "GET",
        "/v1/models",
        &[("X-Request-Id", "three")],
        b"",
    ));
    c.send(&wire);
    for id in ["one", "two", "three"] {
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-request-id"), Some(id));
    }
    // The same requests split at every byte boundary of the first one.
    let one = request("POST", "/v1/chat/completions", &[], &body);
    for cut in 1..one.len() {
        let mut c = Conn::open(p.addr);
        c.send(&one[..cut]);
        c.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        c.send(&one[cut..]);
        assert_eq!(c.read_response().unwrap().status, 200, "cut at {cut}");
    }
    // Chunked request body.
    let mut c = Conn::open(p.addr);
    let mut wire =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for part in body.chunks(10) {
        wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    c.send(&wire);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Expect: 100-continue: the interim answer comes before the body is sent.
    let mut c = Conn::open(p.addr);
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 100);
    c.send(&body);
    assert_eq!(c.read_response().unwrap().status, 200);
    // A keep-alive connection idle past the time it keeps its buffers (250 ms) serves its
    // next request, whole or sent a byte at a time, and then still goes idle and closes at
    // the idle timeout.
    let mut c = Conn::open(p.addr);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        if round == 1 {
            for b in &one {
                c.send(std::slice::from_ref(b));
            }
        } else {
            c.send(&one);
        }
        assert_eq!(c.read_response().unwrap().status, 200, "round {round}");
    }
    let closed_by_server = |c: &mut Conn| {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(3000)))
            .unwrap();
        let mut b = [0u8; 1];
        match c.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    };
    assert!(closed_by_server(&mut c), "not closed at the idle timeout");
    // A connection that sends nothing is closed at the idle timeout too, having held nothing.
    let mut c = Conn::open(p.addr);
    assert!(closed_by_server(&mut c), "a silent connection not closed");
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Conn::open(p.addr);
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn connections_over_the_per_core_limit_get_503() {
    let p = small_router();
    // 2 cores × 8: hold 40 connections open; some must be refused, none may hang.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(Conn::open(p.addr));
    }
    // Wait until the router has accepted all of them (refused ones are counted at once).
    let counted = |name: &str| -> u64 {
        call(p.addr, "GET", "/metrics", &[], b"")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(5);
    while counted("switchyard_connections_refused_total") < 40 - 16 {
        assert!(Instant::now() < until, "connections not refused within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut refused = 0;
    for c in &mut held {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = c.stream.read(&mut buf)
            && n > 0
        {
            assert!(
                buf.starts_with(b"HTTP/1.1 503"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
            refused += 1;
        }
    }
    assert!(refused >= 40 - 16, "only {refused} refused");
    drop(held);
    // The router sees the closes on its own time: serving resumes once it has.
    let until = Instant::now() + Duration::from_secs(5);
    while call(p.addr, "GET", "/healthz", &[], b"").status != 200 {
        assert!(Instant::now() < until, "not serving again within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn garbage_never_takes_the_router_down() {
    let p = small_router();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "demo")],
        &chat_body("auto", true),
    );
    for _ in 0..300 {
        let mut wire = valid.clone();
        for _ in 0..(next() % 6 + 1) {
            let at = (next() as usize) % wire.len();
            match next() % 3 {
                0 => wire[at] = next() as u8,
                1 => {
                    wire.remove(at);
                }
                _ => wire.insert(at, next() as u8),
            }
        }
        let mut c = Conn::open(p.addr);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let _ = c.stream.write_all(&wire);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.stream.read_to_end(&mut sink);
        if !sink.is_empty() {
            assert!(
                sink.starts_with(b"HTTP/1.1 "),
                "{}",
                String::from_utf8_lossy(&sink)
            );
        }
    }
    still_serving(&p);
    let metrics = call(p.addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("switchyard_panics_total 0"), "{metrics}");
}

#[test]
fn a_panicking_connection_does_not_take_the_core_down() {
    let p = router_env(&["--cores", "1"], &[("SWITCHYARD_FAULT_INJECTION", "1")]);
    // Keep one healthy keep-alive connection open across the panic.
    let mut healthy = Conn::open(p.addr);
    healthy.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(healthy.read_response().unwrap().status, 200);
    for _ in 0..3 {
        let mut c = Conn::open(p.addr);
        c.send(&request("GET", "/__switchyard/panic", &[], b""));
        assert!(
            c.read_response().is_none(),
            "the panicking connection is dropped"
        );
    }
    healthy.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(healthy.read_response().unwrap().status, 200);
    still_serving(&p);
    let metrics = call(p.addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("switchyard_panics_total 3"), "{metrics}");
    // The log is read from the router's stderr by a helper thread: give it a moment.
    let until = Instant::now() + Duration::from_secs(5);
    while !p.log().contains("connection task panicked") {
        assert!(Instant::now() < until, "{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}
