//! Who is calling: the one place a request's client key is checked (the bearer token parsed
//! by [`crate::control::keys::bearer`], looked up in the key set the core holds).
//!
//! On the Anthropic dialect's paths the key may also come as `x-api-key`, which older
//! Anthropic SDKs, Claude Code and the API's own examples send (current SDKs send
//! `Authorization: Bearer`). A request that sends both is judged by `Authorization`.

use crate::control::keys::{KeyRecord, KeySet, Refused};
use crate::dialect::Wire;
use crate::gateway::error::{Error, ErrorKind};
use crate::http::HeaderIdx;
use crate::runtime::client::Request;
use crate::runtime::core::Core;

/// Who is calling: the client key's record when authentication is on (`None` when it is
/// off). Missing, unknown, disabled and expired keys are 401 with the matching code.
pub fn principal<'k>(
    core: &Core,
    req: &Request<'_>,
    keys: &'k KeySet,
) -> Result<Option<&'k KeyRecord>, Error> {
    let wire = crate::dialect::of_request(req.head.path(req.buf), req.buf, req.headers);
    principal_of(core, req.buf, req.headers, keys, wire)
}

/// [`principal`] from a request head alone; `wire` is the dialect of its path.
pub fn principal_of<'k>(
    core: &Core,
    buf: &[u8],
    headers: &[HeaderIdx],
    keys: &'k KeySet,
    wire: Wire,
) -> Result<Option<&'k KeyRecord>, Error> {
    if !core.config().auth {
        return Ok(None);
    }
    let token = client_key(buf, headers, wire)?;
    keys.verify(token, crate::clock::now_ms())
        .map(Some)
        .map_err(Refused::error)
}

/// The client key a request presents.
fn client_key<'b>(buf: &'b [u8], headers: &[HeaderIdx], wire: Wire) -> Result<&'b [u8], Error> {
    if let Some(token) = crate::control::keys::bearer(buf, headers).map_err(Refused::error)? {
        return Ok(token);
    }
    if wire != Wire::Anthropic {
        return Err(Refused::Missing.error());
    }
    let mut found = None;
    for h in headers {
        if h.name(buf).eq_ignore_ascii_case(b"x-api-key") {
            if found.is_some() {
                return Err(Refused::Invalid.error());
            }
            found = Some(h.value(buf).trim_ascii());
        }
    }
    match found {
        Some(token) if token.len() <= 512 && token.iter().all(u8::is_ascii_graphic) => {
            if token.is_empty() {
                Err(missing_on_messages())
            } else {
                Ok(token)
            }
        }
        Some(_) => Err(Refused::Invalid.error()),
        None => Err(missing_on_messages()),
    }
}

fn missing_on_messages() -> Error {
    Error::new(
        ErrorKind::MissingApiKey,
        "no API key: send `x-api-key: sk-swy-…` or `Authorization: Bearer sk-swy-…`",
    )
}
