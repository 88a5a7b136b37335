//! What the router tells its operators about the traffic: labelled metrics kept per core and
//! merged when scraped ([`metrics`], [`record`], [`exposition`]), W3C trace context
//! ([`trace`]) and OTLP span export ([`export`]).

pub mod export;
pub mod exposition;
pub mod metrics;
pub mod record;
pub mod spans;
pub mod trace;
