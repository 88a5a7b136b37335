//! `switchyard`, the router: a thread-per-core HTTP/1.1 gateway that routes each LLM API
//! request by a compiled decision table and relays the answer as it arrives.
//!
//! The folders follow a request:
//!
//! - [`runtime`]: the process and its cores — executors, listeners, the client connection
//!   loop, per-core state, worker pools, logging;
//! - [`http`]: the HTTP/1.1 wire format, sans-IO;
//! - [`gateway`]: what a request asks for and what it gets — paths, the request phases,
//!   routing, the body scan, responses and the error map;
//! - [`upstream`]: where it goes — connection pools, name resolution, forwarding, the relay
//!   with its usage meter, and the in-process mock endpoint;
//! - [`control`]: what decides and limits it — the serving table and its watcher, client
//!   and admin keys, tenant limits, endpoint health, the admin API and its changes, state
//!   files;
//! - [`audit`]: the record it leaves — gates, the writer, Parquet shards, queries, shipping;
//! - [`observe`]: what operators see of the traffic — per-core metric series merged at
//!   scrape, trace context.
//!
//! [`config`] turns flags into the checked configuration; [`codec`] and [`clock`] hold the
//! small text codings and the wall-clock helpers everyone shares.

pub mod audit;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
pub mod dialect;
pub mod gateway;
pub mod hash;
pub mod http;
pub mod observe;
pub mod runtime;
pub mod upstream;
