//! Google's Gemini API as Vertex AI serves it (`generateContent`,
//! `streamGenerateContent?alt=sse`): requests written from the intermediate form, answers
//! (whole and streamed as Server-Sent Events) decoded into its events. Gemini is only ever
//! an upstream, so there is no reader or encoder. (Claude models on Vertex take Anthropic
//! bodies: `anthropic::write::write_vertex`.)

pub mod decode;
pub mod write;

#[cfg(test)]
mod tests;
