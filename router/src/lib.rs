//! `switchyard`, the router: a thread-per-core HTTP/1.1 gateway that routes each LLM API
//! request by a compiled decision table and relays the answer as it arrives.
//!
//! Code map (request order): [`server`] (executors, listeners, lifecycle) → [`conn`]
//! (connection loop, limits, timeouts) → [`http`] (sans-IO parsing) → [`api`] (paths) →
//! [`proxy`] (request phases) → [`route`] (decision) → [`mock`] or [`upstream`] (pools,
//! forwarding, relay) with [`usage`] capture. [`table`] holds and reloads the decision table;
//! [`error`] is the one map from failures to statuses and OpenAI-format bodies; [`auth`]
//! holds client and admin keys, [`limits`] per-tenant rates and budgets, [`admin`] serves
//! the admin API, [`manage`] applies its policy/endpoint/tenant changes, [`health`] keeps
//! observed endpoint health, [`state`] writes files.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod codec;
pub mod config;
pub mod conn;
pub mod error;
pub mod health;
pub mod http;
pub mod json;
pub mod limits;
pub mod logging;
pub mod manage;
pub mod mock;
pub mod net;
pub mod offload;
pub mod proxy;
pub mod published;
pub mod recycle;
pub mod resolve;
pub mod respond;
pub mod route;
pub mod server;
pub mod state;
pub mod table;
pub mod upstream;
pub mod usage;
