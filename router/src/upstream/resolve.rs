//! Upstream name resolution, off the executors: `getaddrinfo` on the DNS worker pool
//! ([`crate::runtime::offload`]), with a deadline for the caller ([`LOOKUP_DEADLINE`]), one lookup in
//! flight per name however many requests on however many cores ask for it, answers kept
//! for [`TTL`] and failures for [`NEGATIVE_TTL`] (so a name that does not resolve is not
//! looked up again for every request). Cores keep their own copy of good answers
//! ([`crate::upstream::pool::Pool`]), so this shared map is consulted only on a core's miss.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::runtime::offload::Offload;

/// How long a good answer is used.
pub const TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long a caller waits for a lookup (the lookup itself may go on and fill the cache).
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// A lookup's answer: addresses, or why there are none.
pub type Answer = Result<Arc<[SocketAddr]>, String>;

type Key = (String, u16);

#[derive(Debug)]
enum Slot {
    Known { answer: Answer, until: Instant },
    InFlight(Vec<futures_channel::oneshot::Sender<Answer>>),
}

/// The node's resolver, shared by the cores.
#[derive(Debug)]
pub struct Resolver {
    pool: Offload,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Resolver {
    pub fn start(threads: usize) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            pool: Offload::start("dns", threads, 256)?,
            slots: Mutex::new(HashMap::new()),
        }))
    }

    /// The addresses of `host:port`.
    pub async fn resolve(self: &Arc<Self>, host: &str, port: u16) -> Answer {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_owned(), port);
        let (tx, rx) = futures_channel::oneshot::channel();
        let lead = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            match slots.get_mut(&key) {
                Some(Slot::Known { answer, until }) if *until > Instant::now() => {
                    return answer.clone();
                }
                Some(Slot::InFlight(waiters)) => {
                    waiters.push(tx);
                    false
                }
                _ => {
                    slots.insert(key.clone(), Slot::InFlight(vec![tx]));
                    true
                }
            }
        };
        if lead {
            let lookup = Lookup {
                resolver: Arc::clone(self),
                key: Some(key),
            };
            if let Err(e) = self.pool.spawn(move || lookup.run()) {
                // Not started (the pool is full): the `Lookup` was dropped with the job and
                // answered every waiter with this failure.
                return Err(e.message.into_owned());
            }
        }
        match glommio::timer::timeout(LOOKUP_DEADLINE, async {
            rx.await
                .map_err(|_| glommio::GlommioError::from(std::io::Error::other("lost")))
        })
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} s", LOOKUP_DEADLINE.as_secs())),
        }
    }

    fn complete(&self, key: Key, answer: &Answer) {
        let ttl = if answer.is_ok() { TTL } else { NEGATIVE_TTL };
        let previous = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                Slot::Known {
                    answer: answer.clone(),
                    until: Instant::now() + ttl,
                },
            );
        if let Some(Slot::InFlight(waiters)) = previous {
            for w in waiters {
                let _ = w.send(answer.clone());
            }
        }
    }

    /// Forgets answers that have expired (called now and then, so names no longer used do
    /// not accumulate).
    pub fn reap(&self) {
        let now = Instant::now();
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, slot| !matches!(slot, Slot::Known { until, .. } if *until <= now));
    }
}

/// One lookup in flight; whatever happens to it (even a panic in the lookup), its waiters
/// are answered when it is dropped.
struct Lookup {
    resolver: Arc<Resolver>,
    key: Option<Key>,
}

impl Lookup {
    fn run(mut self) {
        let Some((host, port)) = self.key.clone() else {
            return;
        };
        // Until it completes, the key stays here: a panic in the lookup answers the waiters
        // from `drop`.
        let answer = match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err("the name resolved to no address".to_owned())
                } else {
                    Ok(Arc::from(addrs))
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if let Some(key) = self.key.take() {
            self.resolver.complete(key, &answer);
        }
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.resolver
                .complete(key, &Err("the lookup did not run".to_owned()));
        }
    }
}
