//! Where a request goes: [`exchange`] (one request on its way to one endpoint, and what
//! answering it produced), [`pool`] (per-core keep-alive connections), [`resolve`] (name
//! resolution off the executors), [`forward`] (the upstream request and its response
//! head), [`relay`] (the response body to the client as it arrives), [`meter`] (token usage
//! read from it), [`mock`] (the in-process `mock` endpoint), [`sigv4`] (AWS request signing,
//! for Bedrock), [`gcp`] (Google service-account assertions, for Vertex), [`token`] (Vertex
//! access tokens), [`blocking`] (a small blocking HTTP client for side threads).

pub mod blocking;
pub mod exchange;
pub mod forward;
pub mod gcp;
pub mod meter;
pub mod mock;
pub mod pool;
pub mod relay;
pub mod resolve;
pub mod sigv4;
pub mod token;
