//! Client and admin API keys.
//!
//! A client key (`sk-swy-…`, 192 random bits) is bound to one tenant and optionally a role.
//! Only its SHA-256 is kept — in memory and in `<data-dir>/admin/keys.json` — and the key is
//! shown once, when issued. A presented key is hashed and looked up by hash; the stored and
//! computed hashes are then compared in constant time. Keys can expire and be disabled
//! (revoked); every change is a new [`KeySet`] swapped into a [`KeyCell`] that cores check
//! with one atomic load per request, so a revocation applies to the next request.
//!
//! Admin keys come from `SWITCHYARD_ADMIN_KEYS` / `--admin-keys-file`, are held as hashes
//! too, and open only the admin API; client keys never do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec::{hex, unhex};
use crate::gateway::error::{Error, ErrorKind};
use crate::http::HeaderIdx;

/// Prefix of every client key.
pub const KEY_PREFIX: &str = "sk-swy-";

/// SHA-256 of a key.
pub type KeyHash = [u8; 32];

#[must_use]
pub fn hash(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// Equality that takes the same time wherever the inputs differ.
#[must_use]
pub fn ct_eq(a: &KeyHash, b: &KeyHash) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Random bytes from the kernel.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read as _;
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// One client key as stored (never the key itself).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    #[serde(default)]
    pub disabled: bool,
    /// A key without a role normally has none: `X-User-Role` is refused on it. With this set
    /// (an explicit choice when the key is issued, for a trusted front end that tells the
    /// router its users' roles) the header says the request's role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub assert_roles: bool,
}

/// What a new key is bound to besides its tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySpec {
    pub role: Option<String>,
    pub name: Option<String>,
    pub expires_ms: Option<i64>,
    pub assert_roles: bool,
}

/// Why a request's credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
    Disabled,
    Expired,
}

impl Refused {
    #[must_use]
    pub fn error(self) -> Error {
        let (kind, message) = match self {
            Self::Missing => (
                ErrorKind::MissingApiKey,
                "no API key: send `Authorization: Bearer sk-swy-…`",
            ),
            Self::Invalid => (ErrorKind::InvalidApiKey, "invalid API key"),
            Self::Disabled => (ErrorKind::KeyDisabled, "this API key has been disabled"),
            Self::Expired => (ErrorKind::KeyExpired, "this API key has expired"),
        };
        Error::new(kind, message)
    }
}

/// The keys in force at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    by_hash: HashMap<KeyHash, Arc<KeyRecord>>,
}

impl KeySet {
    fn new(records: &[KeyRecord]) -> Self {
        let by_hash = records
            .iter()
            .filter_map(|r| Some((unhex(&r.sha256)?, Arc::new(r.clone()))))
            .collect();
        Self { by_hash }
    }

    /// The key's record if it may be used now.
    pub fn verify(&self, key: &[u8], now_ms: i64) -> Result<&KeyRecord, Refused> {
        let h = hash(key);
        let Some((stored, record)) = self.by_hash.get_key_value(&h) else {
            return Err(Refused::Invalid);
        };
        if !ct_eq(stored, &h) {
            return Err(Refused::Invalid);
        }
        if record.disabled {
            return Err(Refused::Disabled);
        }
        if record.expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(Refused::Expired);
        }
        Ok(record)
    }
}

/// The current [`KeySet`], replaced on every change; cores cache it by generation.
pub type KeyCell = crate::control::published::Published<KeySet>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    revision: u64,
    keys: Vec<KeyRecord>,
}

/// The client keys of this node: persisted, and published to the cores.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    file: Mutex<KeyFile>,
    pub cell: Arc<KeyCell>,
}

impl KeyStore {
    /// Opens `<dir>/keys.json` (absent: no keys yet).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join("keys.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<KeyFile>(&bytes)
                .map_err(|e| format!("`{}` is not a valid key file: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        };
        let cell = Arc::new(KeyCell::new(KeySet::new(&file.keys)));
        Ok(Self {
            path,
            file: Mutex::new(file),
            cell,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyFile> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to a copy, persists it atomically, then publishes it. On a write
    /// failure nothing changes.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut file = self.lock();
        let mut keys = file.keys.clone();
        let out = change(&mut keys)?;
        let next = KeyFile {
            revision: file.revision + 1,
            keys,
        };
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        crate::control::state::write_atomic(&self.path, &bytes).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot persist keys to `{}`: {e}", self.path.display()),
            )
        })?;
        self.cell.replace(KeySet::new(&next.keys));
        *file = next;
        Ok(out)
    }

    /// Issues a key; returns its record and the key (shown once).
    pub fn issue(
        &self,
        tenant: &str,
        spec: KeySpec,
        now_ms: i64,
    ) -> Result<(KeyRecord, String), Error> {
        let (record, key) = mint(tenant, spec, now_ms)?;
        let stored = record.clone();
        self.update(move |keys| {
            keys.push(stored);
            Ok(())
        })?;
        Ok((record, key))
    }

    /// Every key record (for a change computed elsewhere: the shared state).
    #[must_use]
    pub fn records(&self) -> Vec<KeyRecord> {
        self.lock().keys.clone()
    }

    /// Makes `keys` this node's key set, as revision `revision` of the shared state:
    /// persisted (the last good copy a restart starts from), then published.
    pub fn install(&self, keys: Vec<KeyRecord>, revision: u64) -> Result<(), String> {
        let mut file = self.lock();
        let next = KeyFile { revision, keys };
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
        crate::control::state::write_atomic(&self.path, &bytes)
            .map_err(|e| format!("cannot persist keys to `{}`: {e}", self.path.display()))?;
        self.cell.replace(KeySet::new(&next.keys));
        *file = next;
        Ok(())
    }

    /// The tenant's keys (records only).
    #[must_use]
    pub fn list(&self, tenant: &str) -> Vec<KeyRecord> {
        self.lock()
            .keys
            .iter()
            .filter(|k| k.tenant == tenant)
            .cloned()
            .collect()
    }

    /// Disables a key (kept, so its id stays in the records); false if the tenant has no
    /// such key.
    pub fn revoke(&self, tenant: &str, id: &str) -> Result<bool, Error> {
        self.update(|keys| Ok(disable(keys, tenant, id)))
    }
}

/// A new key for `tenant` and its record (the key is in no set yet).
pub fn mint(tenant: &str, spec: KeySpec, now_ms: i64) -> Result<(KeyRecord, String), Error> {
    let secret: [u8; 24] = random().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let id: [u8; 8] = random().map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let key = format!("{KEY_PREFIX}{}", hex(&secret));
    let record = KeyRecord {
        id: format!("key_{}", hex(&id)),
        tenant: tenant.to_owned(),
        role: spec.role,
        name: spec.name,
        sha256: hex(&hash(key.as_bytes())),
        created_ms: now_ms,
        expires_ms: spec.expires_ms,
        disabled: false,
        assert_roles: spec.assert_roles,
    };
    Ok((record, key))
}

/// Disables the tenant's key `id` in `keys`; false if there is no such key.
pub fn disable(keys: &mut [KeyRecord], tenant: &str, id: &str) -> bool {
    let Some(k) = keys.iter_mut().find(|k| k.tenant == tenant && k.id == id) else {
        return false;
    };
    k.disabled = true;
    true
}

/// A key set as stored in the shared state (`keys/<sha256>.json`): the same shape as
/// `keys.json`.
pub fn key_set_bytes(keys: &[KeyRecord]) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({ "revision": 0, "keys": keys }))
        .unwrap_or_default()
}

/// The records of a key set from the shared state.
pub fn parse_key_set(bytes: &[u8]) -> Result<Vec<KeyRecord>, String> {
    serde_json::from_slice::<KeyFile>(bytes)
        .map(|f| f.keys)
        .map_err(|e| format!("not a key set: {e}"))
}

/// Admin keys (hashes), with a short id per key for the admin change log.
#[derive(Debug, Default)]
pub struct AdminKeys {
    keys: Vec<(KeyHash, String)>,
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block (64 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().take(64).enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// The node's secret for naming admin keys (`<admin dir>/admin-id.key`, 32 random bytes,
/// made on first start, mode 0600). An id that is a plain hash prefix of the key would let
/// anyone who reads the change log test guesses offline; one keyed with this secret does not.
pub fn admin_id_secret(dir: &Path) -> Result<[u8; 32], String> {
    use std::io::Read as _;
    let path = dir.join("admin-id.key");
    let mut existing = Vec::new();
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut existing)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            return existing.try_into().map_err(|_| {
                format!(
                    "`{}` is not 32 bytes: delete it to make a new one (admin key ids change)",
                    path.display()
                )
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    }
    let secret: [u8; 32] = random().map_err(|e| e.to_string())?;
    let written = crate::control::state::write_atomic_mode(&path, &secret, Some(0o600));
    written.map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(secret)
}

impl AdminKeys {
    /// From a comma-separated list and/or a file with one key per line (`#` comments); ids
    /// are keyed with `id_secret` ([`admin_id_secret`]).
    pub fn load(
        list: Option<&str>,
        file: Option<&Path>,
        id_secret: &[u8; 32],
    ) -> Result<Self, String> {
        let mut raw: Vec<String> = list
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read admin keys file `{}`: {e}", path.display()))?;
            raw.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if let Some(short) = raw.iter().find(|k| k.len() < 16) {
            return Err(format!(
                "an admin key is {} characters long; use at least 16 random characters",
                short.len()
            ));
        }
        let keys = raw
            .iter()
            .map(|k| {
                let id = hmac_sha256(id_secret, k.as_bytes());
                (
                    hash(k.as_bytes()),
                    format!("admin-{}", hex(id.get(..4).unwrap_or_default())),
                )
            })
            .collect();
        Ok(Self { keys })
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The admin key's id, if `key` is one. Compares every stored hash in constant time.
    #[must_use]
    pub fn verify(&self, key: &[u8]) -> Option<&str> {
        let h = hash(key);
        let mut found = None;
        for (stored, id) in &self.keys {
            if ct_eq(stored, &h) {
                found = Some(id.as_str());
            }
        }
        found
    }
}

/// The bearer token of a request: `Ok(None)` when there is no `Authorization` header.
/// Two `Authorization` headers, another scheme, or an empty or malformed token are refused
/// (401 `invalid_api_key`), never guessed at.
pub fn bearer<'b>(buf: &'b [u8], headers: &[HeaderIdx]) -> Result<Option<&'b [u8]>, Refused> {
    let mut found = None;
    for h in headers {
        if !h.name(buf).eq_ignore_ascii_case(b"authorization") {
            continue;
        }
        if found.is_some() {
            return Err(Refused::Invalid);
        }
        found = Some(h.value(buf));
    }
    let Some(value) = found else {
        return Ok(None);
    };
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refused::Invalid);
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return Err(Refused::Missing);
    }
    if token.len() > 512 || !token.iter().all(u8::is_ascii_graphic) {
        return Err(Refused::Invalid);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn issue_verify_revoke_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let (rec, key) = store.issue("acme", KeySpec::default(), 1000).unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 48);
        let (_, set) = store.cell.load();
        assert_eq!(set.verify(key.as_bytes(), 2000).unwrap().tenant, "acme");
        assert_eq!(
            set.verify(b"sk-swy-nope", 2000).unwrap_err(),
            Refused::Invalid
        );
        let persisted = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!persisted.contains(&key) && persisted.contains(&rec.id));
        assert!(store.revoke("acme", &rec.id).unwrap());
        assert!(!store.revoke("globex", &rec.id).unwrap());
        let (_, set) = store.cell.load();
        assert_eq!(
            set.verify(key.as_bytes(), 2000).unwrap_err(),
            Refused::Disabled
        );
        // A restart reads the same state.
        let again = KeyStore::open(dir.path()).unwrap();
        let (_, set) = again.cell.load();
        assert_eq!(
            set.verify(key.as_bytes(), 2000).unwrap_err(),
            Refused::Disabled
        );
        let spec = KeySpec {
            expires_ms: Some(1500),
            ..KeySpec::default()
        };
        let (_, key2) = again.issue("acme", spec, 1000).unwrap();
        let (_, set) = again.cell.load();
        assert_eq!(set.verify(key2.as_bytes(), 1499).unwrap().tenant, "acme");
        assert_eq!(
            set.verify(key2.as_bytes(), 1500).unwrap_err(),
            Refused::Expired
        );
    }

    #[test]
    fn bearer_parsing() {
        let parse = |raw: &[u8]| {
            let mut hs = Vec::new();
            crate::http::request::parse_head(raw, &Default::default(), &mut hs)
                .unwrap()
                .unwrap();
            bearer(raw, &hs).map(|t| t.map(<[u8]>::to_vec))
        };
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nauthorization: bearer  abc \r\n\r\n"),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(None));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer a\r\n\r\n"),
            Err(Refused::Invalid)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\n\r\n"),
            Err(Refused::Invalid)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n\r\n"),
            Err(Refused::Missing)
        );
    }

    #[test]
    fn admin_keys() {
        let secret = [7u8; 32];
        let keys =
            AdminKeys::load(Some("0123456789abcdef, fedcba9876543210"), None, &secret).unwrap();
        assert!(keys.verify(b"0123456789abcdef").is_some());
        assert!(keys.verify(b"0123456789abcdeX").is_none());
        assert!(AdminKeys::load(Some("short"), None, &secret).is_err());
        // The id is keyed: not the key's hash, and another node's secret gives another id.
        let id = keys.verify(b"0123456789abcdef").unwrap().to_owned();
        assert!(!id.ends_with(&hex(&hash(b"0123456789abcdef")[..4])));
        let other = AdminKeys::load(Some("0123456789abcdef"), None, &[8u8; 32]).unwrap();
        assert_ne!(other.verify(b"0123456789abcdef").unwrap(), id);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2: key "Jefe".
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_id_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = admin_id_secret(dir.path()).unwrap();
        assert_eq!(admin_id_secret(dir.path()).unwrap(), a);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("admin-id.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
