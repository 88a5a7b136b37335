//! AWS Bedrock's Converse API: requests written from the intermediate form, answers (whole
//! and streamed in event-stream frames) decoded into its events. Bedrock is only ever an
//! upstream, so there is no reader or encoder. (`bedrock_api: invoke` sends Anthropic bodies:
//! `anthropic::write::write_invoke`, and [`decode::invoke_chunk`] unwraps its stream.)

pub mod decode;
pub mod write;

#[cfg(test)]
mod tests;
