//! What the router tells its operators about the traffic: labelled metrics kept per core and
//! merged when scraped ([`metrics`], [`record`], [`exposition`]), and W3C trace context
//! ([`trace`]).

pub mod exposition;
pub mod metrics;
pub mod record;
pub mod trace;
