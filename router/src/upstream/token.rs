//! Google OAuth2 access tokens for Vertex AI endpoints (`research/dialects.md` §D5): from a
//! service-account key file (an RS256 assertion exchanged at the key's `token_uri`) or from
//! the metadata server of the machine the router runs on.
//!
//! One [`Tokens`] per credential source in the whole process, shared by every core and every
//! endpoint using that source, and kept across table reloads ([`Tokens::shared`]): a token is
//! fetched once per expiry window however many requests ask for it. The fetch is blocking
//! HTTP on a thread of its own — never on an executor; a request waits for it only when there
//! is no usable token at all. Shortly before expiry ([`refresh_margin`]) the next token is
//! fetched in the background while the current one is still handed out. An upstream 401 on a
//! token drops it ([`Tokens::invalidate`]), so the request is retried once with a new one.
//!
//! Errors name the key file, the account or the server, never a key or a token; tokens are
//! never logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::http::url::{Url, parse_url};
use crate::upstream::gcp::{CLOUD_PLATFORM_SCOPE, ServiceAccount};

/// How long a request waits for a token being fetched.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(15);
/// How long a failed fetch is remembered (requests fail at once instead of each starting one).
const FAILURE_TTL: Duration = Duration::from_secs(2);
/// The metadata server's name on Google Cloud (`GCE_METADATA_HOST` overrides it).
const METADATA_HOST: &str = "metadata.google.internal";

/// Where tokens come from.
enum Source {
    ServiceAccount {
        account: Box<ServiceAccount>,
        /// The key file, to name it in errors.
        file: String,
        token_uri: Url,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    Metadata {
        /// `host[:port]`.
        host: String,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Self::ServiceAccount {
                account,
                file,
                token_uri,
                ..
            } => format!(
                "the token endpoint `{}://{}{}` for service account `{}` (key file `{file}`)",
                if token_uri.tls { "https" } else { "http" },
                token_uri.authority,
                token_uri.path,
                account.client_email
            ),
            Self::Metadata { host } => format!("the metadata server `{host}`"),
        }
    }
}

/// A token and when to replace it.
struct Token {
    value: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

type Waiter = futures_channel::oneshot::Sender<Result<Arc<str>, String>>;

#[derive(Default)]
struct State {
    current: Option<Token>,
    /// A fetch is running: who waits for it.
    fetching: Option<Vec<Waiter>>,
    /// The last fetch failed: why, and until when that answer stands.
    failed: Option<(String, Instant)>,
}

/// The access tokens of one credential source.
pub struct Tokens {
    source: Source,
    state: Mutex<State>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a token.
        f.debug_struct("Tokens")
            .field("source", &self.source.describe())
            .finish_non_exhaustive()
    }
}

/// Every source in use, by what identifies it, so that endpoints and table reloads share one.
static SOURCES: LazyLock<Mutex<HashMap<String, Weak<Tokens>>>> = LazyLock::new(Mutex::default);

impl Tokens {
    /// The token source of a Vertex endpoint: the key file `credentials_file`, else the one
    /// `GOOGLE_APPLICATION_CREDENTIALS` names, else the metadata server (`GCE_METADATA_HOST`
    /// or `metadata.google.internal`). `tls` is used for an `https` `token_uri`. Shared with
    /// every other user of the same source.
    pub fn shared(
        credentials_file: &str,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
    ) -> Result<Arc<Self>, String> {
        let env_file = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
            .ok()
            .filter(|p| !p.trim().is_empty());
        let file = Some(credentials_file)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .or(env_file);
        let source = match file {
            Some(file) => {
                let account = Box::new(ServiceAccount::from_file(&file)?);
                let token_uri = parse_url(&account.token_uri).ok_or_else(|| {
                    format!(
                        "the key file `{file}` has a `token_uri` that is not an http(s) URL: `{}`",
                        account.token_uri
                    )
                })?;
                let tls = if token_uri.tls { Some(tls()?) } else { None };
                Source::ServiceAccount {
                    account,
                    file,
                    token_uri,
                    tls,
                }
            }
            None => Source::Metadata {
                host: std::env::var("GCE_METADATA_HOST")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| METADATA_HOST.to_owned()),
            },
        };
        let key = match &source {
            Source::ServiceAccount { account, file, .. } => format!(
                "sa|{file}|{}|{}|{}",
                account.client_email,
                account.key_id(),
                account.token_uri
            ),
            Source::Metadata { host } => format!("metadata|{host}"),
        };
        let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|_, w| w.strong_count() > 0);
        if let Some(known) = sources.get(&key).and_then(Weak::upgrade) {
            return Ok(known);
        }
        let tokens = Arc::new(Self {
            source,
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
        });
        sources.insert(key, Arc::downgrade(&tokens));
        Ok(tokens)
    }

    /// Where the tokens come from, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// How many fetches were started (for tests and metrics).
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A usable access token: the current one, or (when there is none) the one being fetched.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<str>, String> {
        let (tx, rx) = futures_channel::oneshot::channel();
        {
            let now = Instant::now();
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = s.current.as_ref().filter(|t| t.expires_at > now) {
                let value = Arc::clone(&t.value);
                if t.refresh_at <= now && s.fetching.is_none() {
                    // Renewed in the background; this one still serves meanwhile.
                    s.fetching = Some(Vec::new());
                    drop(s);
                    self.start_fetch();
                }
                return Ok(value);
            }
            if let Some((why, until)) = &s.failed
                && *until > now
            {
                return Err(why.clone());
            }
            match &mut s.fetching {
                Some(waiters) => waiters.push(tx),
                None => {
                    s.fetching = Some(vec![tx]);
                    drop(s);
                    self.start_fetch();
                }
            }
        }
        match glommio::timer::timeout(FETCH_DEADLINE, async {
            rx.await
                .map_err(|_| glommio::GlommioError::from(std::io::Error::other("lost")))
        })
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "no access token from {} within {} s",
                self.describe(),
                FETCH_DEADLINE.as_secs()
            )),
        }
    }

    /// An upstream refused `used` (401): it is not handed out again.
    pub fn invalidate(&self, used: &str) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.current.as_ref().is_some_and(|t| &*t.value == used) {
            s.current = None;
        }
    }

    fn start_fetch(self: &Arc<Self>) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let job = Fetch(Some(Arc::clone(self)));
        let started = std::thread::Builder::new()
            .name("google-token".into())
            .spawn(move || job.run());
        if let Err(e) = started {
            self.complete(Err(format!("could not start the token fetch: {e}")));
        }
    }

    fn complete(&self, result: Result<(Arc<str>, Duration), String>) {
        let waiters = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            match &result {
                Ok((value, lifetime)) => {
                    s.current = Some(Token {
                        value: Arc::clone(value),
                        refresh_at: now + lifetime.saturating_sub(refresh_margin(*lifetime)),
                        expires_at: now + *lifetime,
                    });
                    s.failed = None;
                }
                Err(why) => {
                    tracing::warn!(
                        source = self.describe(),
                        error = why.as_str(),
                        "no access token"
                    );
                    s.failed = Some((why.clone(), now + FAILURE_TTL));
                }
            }
            s.fetching.take().unwrap_or_default()
        };
        let answer = result.map(|(value, _)| value);
        for w in waiters {
            let _ = w.send(answer.clone());
        }
    }

    /// Fetches a token (blocking): the value and how long it lives.
    fn fetch(&self) -> Result<(Arc<str>, Duration), String> {
        let (status, body) = match &self.source {
            Source::ServiceAccount {
                account,
                token_uri,
                tls,
                ..
            } => {
                let now = crate::clock::now_ms() / 1000;
                let assertion = account.assertion(CLOUD_PLATFORM_SCOPE, now)?;
                let mut form = String::from(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
                );
                crate::codec::percent_encode(&assertion, crate::codec::unreserved, &mut form);
                crate::upstream::blocking::call(
                    token_uri,
                    tls.clone(),
                    "POST",
                    "content-type: application/x-www-form-urlencoded\r\n",
                    form.as_bytes(),
                )?
            }
            Source::Metadata { host } => {
                let url = parse_url(&format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .ok_or_else(|| format!("`{host}` is not a host name"))?;
                crate::upstream::blocking::call(
                    &url,
                    None,
                    "GET",
                    "metadata-flavor: Google\r\n",
                    b"",
                )?
            }
        };
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<serde_json::Value>,
            error_description: Option<String>,
        }
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        if status != 200 {
            let why = answer
                .and_then(|a| {
                    a.error_description.or_else(|| {
                        a.error.map(|e| match e {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                    })
                })
                .unwrap_or_else(|| "no reason given".to_owned());
            return Err(format!("{} answered {status}: {why}", self.describe()));
        }
        let answer = answer.ok_or_else(|| format!("{} answered with no JSON", self.describe()))?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                format!(
                    "{} answered without a usable `access_token`",
                    self.describe()
                )
            })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600).max(1));
        Ok((Arc::from(token), lifetime))
    }
}

/// How long before expiry the next token is fetched: five minutes, or a quarter of a short
/// lifetime.
#[must_use]
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(300))
}

/// A fetch on its thread; its waiters are answered whatever happens (a panic included).
struct Fetch(Option<Arc<Tokens>>);

impl Fetch {
    fn run(mut self) {
        if let Some(tokens) = self.0.take() {
            let result = tokens.fetch();
            tokens.complete(result);
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        if let Some(tokens) = self.0.take() {
            tokens.complete(Err(format!(
                "fetching a token from {} failed unexpectedly",
                tokens.describe()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3599)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
    }
}
