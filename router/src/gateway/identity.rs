//! Who is calling: the one place a request's client key is checked (the bearer token parsed
//! by [`crate::control::keys::bearer`], looked up in the key set the core holds).

use crate::control::keys::{KeyRecord, KeySet};
use crate::gateway::error::Error;
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
    principal_of(core, req.buf, req.headers, keys)
}

pub fn principal_of<'k>(
    core: &Core,
    buf: &[u8],
    headers: &[HeaderIdx],
    keys: &'k KeySet,
) -> Result<Option<&'k KeyRecord>, Error> {
    if !core.config().auth {
        return Ok(None);
    }
    let token = crate::control::keys::bearer(buf, headers)
        .map_err(crate::control::keys::Refused::error)?
        .ok_or_else(|| crate::control::keys::Refused::Missing.error())?;
    keys.verify(token, crate::clock::now_ms())
        .map(Some)
        .map_err(crate::control::keys::Refused::error)
}
