//! What a request asks for and what it gets: [`paths`] (which handler answers which path,
//! and the checks made on a head before its body is read), [`chat`] (the request phases of
//! a chat completion), [`identity`] (the client key), [`route`] (routing attributes and the
//! decision), [`body`] (the one-pass body scan and edits), [`reply`] (answering a request),
//! [`respond`] (the response wire format),
//! [`error`] (the one map from failures to statuses and bodies), [`info`] (`/v1/models`,
//! `/metrics`).

pub mod answer;
pub mod body;
pub mod draft;
pub mod error;
pub mod identity;
pub mod info;
pub mod paths;
pub mod phases;
pub mod reply;
pub mod respond;
pub mod route;
