//! Google service-account credentials, for Vertex AI (`research/dialects.md` §D5): the key
//! file read, and the signed JWT (RS256) that is exchanged at the key's `token_uri` for an
//! access token. Errors name the file and what is wrong with it, never any of its secrets.
//! (The token exchange, its cache and the metadata server: [`crate::upstream::token`].)

use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long an assertion is valid (Google's maximum).
pub const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A service account's key, from its JSON key file.
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    key_id: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads a service-account key file (`credentials_file`).
    pub fn from_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        Self::from_json(&text).map_err(|why| format!("`{path}` {why}"))
    }

    /// Reads a service-account key from its JSON; the error says what is missing or wrong.
    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let f: KeyFile = serde_json::from_slice(json)
            .map_err(|e| format!("is not a service-account key file (JSON: {e})"))?;
        if let Some(kind) = f.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(format!(
                "holds credentials of type `{kind}`; a service-account key (`type: service_account`) is needed"
            ));
        }
        let missing = |what: &str| format!("has no `{what}`");
        let pem = f.private_key.ok_or_else(|| missing("private_key"))?;
        let der = pkcs8_der(&pem).ok_or("has a `private_key` that is not a PEM PKCS#8 key")?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("has a `private_key` that is not a usable RSA key ({e})"))?;
        Ok(Self {
            client_email: f.client_email.ok_or_else(|| missing("client_email"))?,
            token_uri: f.token_uri.ok_or_else(|| missing("token_uri"))?,
            key_id: f.private_key_id.unwrap_or_default(),
            key,
        })
    }

    /// The id of the key (`private_key_id`), empty when the file has none.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signed JWT asking for `scope`, issued at `now_secs` (Unix seconds) and valid for
    /// [`ASSERTION_LIFETIME_SECS`]: `header.claims.signature`, each base64url.
    pub fn assertion(&self, scope: &str, now_secs: i64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if !self.key_id.is_empty() {
            header["kid"] = self.key_id.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now_secs,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = crate::codec::base64url(header.to_string().as_bytes());
        jwt.push('.');
        jwt.push_str(&crate::codec::base64url(claims.to_string().as_bytes()));
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "could not sign the token request".to_owned())?;
        jwt.push('.');
        jwt.push_str(&crate::codec::base64url(&signature));
        Ok(jwt)
    }
}

/// The DER bytes of a PEM `PRIVATE KEY` block.
fn pkcs8_der(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)?
        .split("-----END PRIVATE KEY-----")
        .next()?;
    let text: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut der = Vec::new();
    crate::codec::base64_decode(&text, &mut der)?;
    Some(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_key_files_are_named_without_their_secrets() {
        let err = |json: &str| ServiceAccount::from_json(json.as_bytes()).unwrap_err();
        assert!(err("{").contains("not a service-account key file"));
        assert!(err(r#"{"type": "authorized_user"}"#).contains("`authorized_user`"));
        assert!(err(r#"{"type": "service_account"}"#).contains("no `private_key`"));
        let bad = err(
            r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n"}"#,
        );
        assert!(bad.contains("not a usable RSA key"), "{bad}");
        assert!(!bad.contains("c2VjcmV0"), "{bad}");
    }
}
