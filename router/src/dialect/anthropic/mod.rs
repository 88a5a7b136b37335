//! Anthropic Messages: [`read`] and [`write`] (requests), [`decode`] (answers as events),
//! [`encode`] (events as answers).

pub mod decode;
pub mod encode;
pub mod read;
pub mod write;
