//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), as Bedrock requests are signed: the
//! canonical request built from exactly the bytes that are sent, the string to sign, the
//! derived signing key (cached per day: the signer belongs to one key, region and service),
//! and the `Authorization` header. Written here rather than taken from `aws-sigv4` (72 crates
//! with tokio's types) — the algorithm is small; the tests check it against botocore's signer
//! and the AWS vectors (`research/dialects.md` §C7, §C10).
//!
//! The canonical URI is the path as sent, normalised (dot segments removed, empty segments
//! collapsed) and percent-encoded once more, as AWS does for every service but S3: a model id
//! sent as `…v1%3A0` is signed as `…v1%253A0`. The query is signed as sent, pairs sorted. Every
//! header given is signed, names lower-cased and values trimmed with inner runs of spaces
//! collapsed; the caller gives exactly the headers it sends (at least `host` and `x-amz-date`,
//! and `x-amz-security-token` with session credentials).

use std::fmt::Write as _;
use std::sync::Mutex;

use ring::hmac;
use sha2::{Digest, Sha256};

/// AWS credentials: an access key, its secret and (temporary credentials) a session token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Signs requests for one key, region and service.
pub struct Signer {
    credentials: Credentials,
    region: String,
    service: String,
    /// The signing key of the last day signed for (`YYYYMMDD`), shared by the cores (held
    /// for a copy of the key, never across signing).
    key: Mutex<Option<([u8; 8], hmac::Key)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("credentials", &self.credentials)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// A request to sign: the method, the path and query exactly as they go on the request line,
/// the headers that are sent (all of them signed), and the body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// `YYYYMMDDTHHMMSSZ` for a time in milliseconds since the Unix epoch (`x-amz-date`).
#[must_use]
pub fn amz_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) =
        crate::clock::civil_from_days(u64::try_from(secs.div_euclid(86_400)).unwrap_or(0));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Signer {
    #[must_use]
    pub fn new(credentials: Credentials, region: &str, service: &str) -> Self {
        Self {
            credentials,
            region: region.to_owned(),
            service: service.to_owned(),
            key: Mutex::new(None),
        }
    }

    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The `Authorization` header value for `req`, signed at `amz_date` (which must be the
    /// request's `x-amz-date` header, `YYYYMMDDTHHMMSSZ`).
    #[must_use]
    pub fn authorization(&self, req: &Request<'_>, amz_date: &str) -> String {
        let (canonical, signed_headers) = canonical_request(req);
        let day = amz_date.get(..8).unwrap_or_default();
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex_sha256(canonical.as_bytes())
        );
        let signature = self.with_key(day, |key| hmac::sign(key, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={}",
            self.credentials.access_key_id,
            crate::codec::hex(signature.as_ref())
        )
    }

    fn with_key<T>(&self, day: &str, f: impl FnOnce(&hmac::Key) -> T) -> T {
        let mut day_bytes = [0u8; 8];
        let n = day.len().min(8);
        day_bytes[..n].copy_from_slice(&day.as_bytes()[..n]);
        let cached = self.key.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(d, _)| *d == day_bytes)
                .map(|(_, k)| k.clone())
        });
        if let Some(key) = cached {
            return f(&key);
        }
        let key = signing_key(
            &self.credentials.secret_access_key,
            day,
            &self.region,
            &self.service,
        );
        let out = f(&key);
        if let Ok(mut c) = self.key.lock() {
            *c = Some((day_bytes, key));
        }
        out
    }
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request")`.
fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes()),
        day.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        k = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()),
            part.as_bytes(),
        );
    }
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

fn hex_sha256(bytes: &[u8]) -> String {
    crate::codec::hex(&Sha256::digest(bytes))
}

/// The canonical request and its signed-headers list.
#[must_use]
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut out = String::with_capacity(256 + req.path.len());
    out.push_str(&req.method.to_ascii_uppercase());
    out.push('\n');
    canonical_uri(req.path, &mut out);
    out.push('\n');
    canonical_query(req.query, &mut out);
    out.push('\n');
    // Lower-cased names, sorted (stable, so repeated headers keep their order), values of a
    // repeated name joined with commas.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), trim_all(v)))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut signed = String::new();
    let mut i = 0;
    while let Some((name, value)) = headers.get(i) {
        let _ = write!(out, "{name}:{value}");
        i += 1;
        while let Some((_, more)) = headers.get(i).filter(|(n, _)| n == name) {
            let _ = write!(out, ",{more}");
            i += 1;
        }
        out.push('\n');
        if !signed.is_empty() {
            signed.push(';');
        }
        signed.push_str(name);
    }
    out.push('\n');
    out.push_str(&signed);
    out.push('\n');
    out.push_str(&hex_sha256(req.body));
    (out, signed)
}

/// A header value with leading and trailing whitespace removed and inner runs collapsed to
/// one space.
fn trim_all(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The path, dot segments removed and empty segments collapsed, percent-encoded again
/// (everything but unreserved characters and `/`).
fn canonical_uri(path: &str, out: &mut String) {
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    out.push('/');
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        crate::codec::percent_encode(s, crate::codec::unreserved, out);
    }
    if path.len() > 1 && path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
}

/// The query's `name=value` pairs, each side percent-encoded the one canonical way (decoded
/// first, so that what was sent encoded is not encoded twice), sorted.
fn canonical_query(query: &str, out: &mut String) {
    if query.is_empty() {
        return;
    }
    let encode = |part: &str| {
        let mut s = String::with_capacity(part.len());
        match crate::codec::percent_decode(part, false) {
            Some(decoded) => {
                crate::codec::percent_encode(&decoded, crate::codec::unreserved, &mut s);
            }
            // Not decodable (a stray `%`, not UTF-8): encoded as it stands.
            None => crate::codec::percent_encode(part, crate::codec::unreserved, &mut s),
        }
        s
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            },
            "us-east-1",
            "bedrock",
        )
    }

    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;

    fn signature(auth: &str) -> &str {
        auth.rsplit("Signature=").next().unwrap_or_default()
    }

    /// The three golden vectors of `research/dialects.md` §C7 (botocore 1.43.11; the first two
    /// also reproduced by `aws-sigv4`).
    #[test]
    fn bedrock_golden_vectors() {
        let signer = example();
        let date = "20150830T123600Z";
        let headers = [
            ("content-type", "application/json"),
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("x-amz-date", date),
        ];
        for (path, canonical_path, expected) in [
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse",
                "1c91d22c6dfb49efad9e8de45bc4dde894ea14c06a0f4b54d7682ee99e1cd6d6",
            ),
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse",
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
                "6118daf6151a241c625e7f6ad4a2f2f4149d45acadc0fdd806e6df333e0e86b7",
            ),
        ] {
            let req = Request {
                method: "POST",
                path,
                query: "",
                headers: &headers,
                body: BODY,
            };
            let (canonical, signed) = canonical_request(&req);
            assert_eq!(canonical.lines().nth(1), Some(canonical_path));
            assert_eq!(signed, "content-type;host;x-amz-date");
            let auth = signer.authorization(&req, date);
            assert_eq!(signature(&auth), expected, "{path}");
            assert!(auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ));
        }
        let with_token = [
            ("content-type", "application/json"),
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("x-amz-date", date),
            ("x-amz-security-token", "FQoGZXIvYXdzEXAMPLETOKEN"),
        ];
        let req = Request {
            method: "POST",
            path: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            query: "",
            headers: &with_token,
            body: BODY,
        };
        assert_eq!(
            signature(&signer.authorization(&req, date)),
            "5cddbfe08ef339e9dcb5c8cf0e8c80fc920005489227b7c598c1772a7139e12b"
        );
    }

    /// `post-vanilla` of the AWS SigV4 test suite (service `service`).
    #[test]
    fn aws_suite_post_vanilla() {
        let signer = Signer::new(example().credentials().clone(), "us-east-1", "service");
        let date = "20150830T123600Z";
        let headers = [("host", "example.amazonaws.com"), ("x-amz-date", date)];
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let (canonical, _) = canonical_request(&req);
        assert_eq!(
            canonical,
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signature(&signer.authorization(&req, date)),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    #[test]
    fn the_signing_key_is_derived_again_on_a_new_day() {
        let signer = example();
        let headers = [("host", "h"), ("x-amz-date", "20150830T123600Z")];
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let a = signer.authorization(&req, "20150830T123600Z");
        let b = signer.authorization(&req, "20150831T123600Z");
        assert!(b.contains("/20150831/"), "{b}");
        // Back to the first day: the same signature as before, whatever was cached between.
        assert_eq!(signer.authorization(&req, "20150830T123600Z"), a);
        assert_ne!(signature(&a), signature(&b));
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(1_440_938_160_000), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let mut c = example().credentials().clone();
        c.session_token = Some("TOKEN-VALUE".into());
        let shown = format!("{:?}", Signer::new(c, "r", "s"));
        assert!(
            !shown.contains("wJalr") && !shown.contains("TOKEN-VALUE"),
            "{shown}"
        );
    }
}
