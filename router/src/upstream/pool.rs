//! One core's upstream connections: keep-alive pools keyed by origin and trust, connecting
//! (through the node's resolver, TLS through rustls), reading with a deadline while watching
//! the client, and reaping what went stale.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt as _;
use glommio::net::TcpStream;

use crate::config::Config;
use crate::control::table::Upstream;
use crate::gateway::error::{Error, ErrorKind};
use crate::http::HeaderIdx;
use crate::runtime::client::Client;
use crate::runtime::recycle::FreeList;

/// Idle pooled connections older than this are closed rather than reused.
const POOL_IDLE_TTL: Duration = Duration::from_secs(30);
/// A connection to an upstream, plain or TLS.
pub type UpConn = crate::runtime::net::UpstreamSocket;

/// How long a read from an upstream runs before the client's socket is watched too. Most
/// reads complete well within it (the upstream is fast, or a stream is flowing), and they
/// pay nothing for the watch; a read that waits longer — a model thinking — is raced with
/// [`Client::closed`], so a client that leaves is noticed this long after it left at most.
const WATCH_AFTER: Duration = Duration::from_millis(25);

/// Reads from the upstream within `limit` of `started` (the caller's clock reading, taken
/// just before); `None` when the client closed its connection first (watched once the read
/// has waited [`WATCH_AFTER`]).
pub(crate) async fn read_watching(
    conn: &mut UpConn,
    buf: &mut [u8],
    limit: Duration,
    started: Instant,
    client: &Client<'_>,
) -> Option<std::io::Result<usize>> {
    if limit > WATCH_AFTER {
        match read_within(conn, buf, WATCH_AFTER).await {
            Err(e) if e.kind() == IoKind::TimedOut => {}
            done => return Some(done),
        }
    }
    let rest = limit.saturating_sub(started.elapsed());
    async { Some(read_within(conn, buf, rest).await) }
        .or(async {
            client.closed().await;
            None
        })
        .await
}

/// Reads with a deadline for this read.
pub(crate) async fn read_within(
    conn: &mut UpConn,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<usize> {
    conn.set_read_timeout(Some(timeout));
    conn.read(buf).await
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

/// Resolved addresses by (host, port), with when they were resolved.
type DnsCache = HashMap<(String, u16), (Arc<[SocketAddr]>, Instant)>;

/// One core's upstream connections and DNS answers.
pub struct Pool {
    idle: RefCell<HashMap<String, Vec<Idle>>>,
    dns: RefCell<DnsCache>,
    /// Scratch byte buffers (request wire form, response reads, body rewrites).
    pub bytes: FreeList<Vec<u8>>,
    /// Response read buffers (kept at their full length, so never re-zeroed).
    pub read_buffers: FreeList<Vec<u8>>,
    /// Scratch header lists for response heads.
    pub header_lists: FreeList<Vec<HeaderIdx>>,
    /// JSON parsers for translated requests and answers.
    pub parsers: FreeList<crate::dialect::de::Parser>,
    max_idle: usize,
    resolver: Arc<crate::upstream::resolve::Resolver>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origins", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    #[must_use]
    pub fn new(config: &Config, resolver: Arc<crate::upstream::resolve::Resolver>) -> Self {
        Self {
            resolver,
            idle: RefCell::new(HashMap::new()),
            dns: RefCell::new(HashMap::new()),
            bytes: FreeList::default(),
            read_buffers: FreeList::default(),
            header_lists: FreeList::default(),
            parsers: FreeList::default(),
            max_idle: config.upstream_idle_per_endpoint,
        }
    }

    pub(crate) fn checkout(&self, key: &str) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < POOL_IDLE_TTL {
                return Some(c.conn);
            }
        }
        None
    }

    pub(crate) fn checkin(&self, key: &str, conn: UpConn) {
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(key) {
            if list.len() < self.max_idle {
                list.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
            return;
        }
        if self.max_idle > 0 {
            idle.insert(
                key.to_owned(),
                vec![Idle {
                    conn,
                    since: Instant::now(),
                }],
            );
        }
    }

    /// `host:port`'s addresses: this core's copy of a recent answer, else the node's
    /// resolver (off the executor, single-flight, with a deadline).
    async fn resolve(&self, host: &str, port: u16) -> crate::upstream::resolve::Answer {
        if let Some((addrs, at)) = self.dns.borrow().get(&(host.to_owned(), port))
            && at.elapsed() < crate::upstream::resolve::TTL
        {
            return Ok(Arc::clone(addrs));
        }
        let addrs = self.resolver.resolve(host, port).await?;
        self.dns.borrow_mut().insert(
            (host.to_owned(), port),
            (Arc::clone(&addrs), Instant::now()),
        );
        Ok(addrs)
    }

    /// Closes idle connections past their time and forgets old DNS answers (called every
    /// few seconds by the core, so neither grows with upstreams no longer used).
    pub fn reap(&self) {
        self.idle.borrow_mut().retain(|_, list| {
            list.retain(|c| c.since.elapsed() < POOL_IDLE_TTL);
            !list.is_empty()
        });
        self.dns
            .borrow_mut()
            .retain(|_, (_, at)| at.elapsed() < crate::upstream::resolve::TTL);
    }

    pub(crate) async fn connect(&self, up: &Upstream, endpoint: &str) -> Result<UpConn, Error> {
        // The client learns which step failed; addresses, host names and OS errors go to
        // the log only (they describe the operator's network).
        let unavailable = |step: &str, detail: String| {
            Error::new(
                ErrorKind::UpstreamUnavailable,
                format!("endpoint `{endpoint}` is unavailable: {step}"),
            )
            .with_internal(detail)
        };
        let addrs = self.resolve(&up.host, up.port).await.map_err(|e| {
            unavailable(
                "its address could not be resolved",
                format!("cannot resolve `{}`: {e}", up.host),
            )
        })?;
        let mut last = None;
        let mut tcp = None;
        for &addr in addrs.iter() {
            match TcpStream::connect_timeout(addr, up.timeouts.connect).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| unavailable("could not connect", last.unwrap_or_default()))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(up.timeouts.idle));
        let Some(tls) = &up.tls else {
            return Ok(UpConn::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| {
            unavailable(
                "its TLS server name is invalid",
                format!("`{}` is not a TLS server name: {e}", up.host),
            )
        })?;
        let connector = futures_rustls::TlsConnector::from(Arc::clone(tls));
        let handshake = async {
            connector
                .connect(name, tcp)
                .await
                .map_err(glommio::GlommioError::from)
        };
        match glommio::timer::timeout(up.timeouts.connect, handshake).await {
            Ok(s) => Ok(UpConn::Tls(Box::new(s))),
            Err(e) => Err(unavailable(
                "the TLS handshake failed",
                format!("TLS handshake with `{}` failed: {e}", up.host),
            )),
        }
    }
}
