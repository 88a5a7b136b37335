//! The process and its cores: [`process`] (start, signals, shutdown), [`core`] (what each
//! executor owns and what all of them share), [`conn`] (one client connection: head, body,
//! keep-alive), [`client`] (the request and client types handlers see), [`net`] (plain or
//! TLS sockets), and the executors' helpers — [`recycle`] (buffer free lists), [`offload`]
//! (worker pools for blocking work), [`logging`] (non-blocking, rate-limited).

pub mod client;
pub mod conn;
pub mod core;
pub mod logging;
pub mod net;
pub mod offload;
pub mod process;
pub mod recycle;
pub mod uring;
