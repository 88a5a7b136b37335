//! The decision table as the router holds it: loaded and validated once, prepared (endpoint
//! URLs parsed, secrets read, TLS configured) off the request executors, and swapped
//! atomically on reload.
//!
//! Architecture invariant: a [`Loaded`] is immutable. Cores read the current one through
//! [`TableCell`] (one atomic load per request to notice a new generation); a request keeps the
//! table it started with until it ends, so a reload never changes a request mid-flight.
//!
//! The table file is read into memory rather than mapped: tables are small (a 10,000-rule
//! table is 5.8 MB), and a mapped file that someone truncates or rewrites in place turns into
//! SIGBUS on the request path, which no amount of validation at load can prevent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchyard_table::{EndpointKind, Table, TableError};

use crate::control::cloud::{
    Publisher, aws_credentials, bedrock_region, vertex_model, vertex_place, vertex_url,
};
use crate::dialect::openai::write::Limit;
use crate::dialect::{Api, Wire};
use crate::http::url::parse_url;

/// The demo policy compiled at build time (see `build.rs`).
pub static DEMO_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.swt"));

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read table `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid decision table: {source}")]
    Invalid { path: String, source: TableError },
    #[error(
        "`{path}` has revision {found} and the serving table {current}: refusing to roll back (a table replaces a file's only at the same or a higher revision, an admin change's only at a higher one)"
    )]
    Older {
        path: String,
        found: u64,
        current: u64,
    },
}

/// Where a table came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Demo,
    File(PathBuf),
    /// Compiled by the admin API and persisted at this path.
    Admin(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Demo => f.write_str("embedded demo policy"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Admin(p) => write!(f, "admin API ({})", p.display()),
        }
    }
}

/// How the router answers for one endpoint of the table.
#[derive(Debug)]
pub enum Plan {
    /// Answer in-process with a canned completion.
    Mock,
    /// Forward over HTTP(S).
    Forward(Box<Upstream>),
    /// Misconfigured (missing secret, unreadable CA file, bad URL): answered with 503 and
    /// this message, which names the endpoint and never contains a secret.
    Broken(String),
}

/// An HTTP(S) upstream, ready to connect to.
pub struct Upstream {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub host: String,
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Request targets.
    pub path: PathPlan,
    /// The dialect it speaks.
    pub wire: Wire,
    /// How a translated request names its token limit (OpenAI-compatible upstreams).
    pub limit: Limit,
    /// The auth header to send: name and value. The value is a secret.
    pub auth: Option<(&'static str, String)>,
    /// AWS SigV4 signing (Bedrock without an API key): every request is signed.
    pub sigv4: Option<Arc<crate::upstream::sigv4::Signer>>,
    /// Google access tokens (Vertex): every request carries one as a bearer token.
    pub google: Option<Arc<crate::upstream::token::Tokens>>,
    /// Pool key: connections are shared by endpoints with the same origin and trust.
    pub pool_key: String,
    /// Connect, time to first byte, idle gap and total (the endpoint's `timeouts`, else the
    /// router's defaults).
    pub timeouts: Timeouts,
}

/// An endpoint's timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and TLS handshake, each.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub ttft: Duration,
    /// The longest gap between two reads of the response body.
    pub idle: Duration,
    /// The whole attempt, response included (`None`: no limit of its own).
    pub total: Option<Duration>,
}

impl Upstream {
    /// The dialect the upstream speaks for `model` (its provider id): on Vertex AI the
    /// model's publisher decides, elsewhere the endpoint's type.
    #[must_use]
    pub fn wire_for<'m>(&self, model: impl FnOnce() -> &'m str) -> Wire {
        match self.path {
            PathPlan::Vertex { .. } => vertex_model(model()).0.wire(),
            _ => self.wire,
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("tls", &self.tls.is_some())
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("auth", &self.auth.as_ref().map(|(name, _)| name))
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// Where an upstream serves each API.
#[derive(Clone, Debug)]
pub enum PathPlan {
    /// An OpenAI-compatible base (`…/v1`): `/chat/completions` and `/embeddings` follow it.
    OpenAi { base: String },
    /// Azure OpenAI: `{prefix}/openai/deployments/{deployment}/{api}?api-version=…`; without a
    /// `deployment`, the model names it.
    Azure {
        prefix: String,
        deployment: Option<String>,
        api_version: String,
    },
    /// Anthropic: `{base}/v1/messages` and `{base}/v1/messages/count_tokens`.
    Anthropic { base: String },
    /// Bedrock: `{base}/model/{model id as one segment}/converse` (or `/converse-stream`);
    /// with `invoke`, `/invoke` (or `/invoke-with-response-stream`).
    Bedrock { base: String, invoke: bool },
    /// Vertex AI: `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/
    /// models/{model}:{method}` — `generateContent` / `streamGenerateContent?alt=sse` for
    /// Google's models, `rawPredict` / `streamRawPredict` for Anthropic's.
    Vertex {
        base: String,
        project: String,
        location: String,
    },
}

impl PathPlan {
    /// The request target for `api` and `model` (`stream`: the answer is streamed).
    pub fn target(&self, api: Api, model: &str, stream: bool, out: &mut Vec<u8>) {
        match self {
            Self::Vertex {
                base,
                project,
                location,
            } => {
                let (publisher, id) = vertex_model(model);
                let mut target = String::with_capacity(160);
                target.push_str(base);
                target.push_str("/v1/projects/");
                crate::codec::percent_encode(project, crate::codec::unreserved, &mut target);
                target.push_str("/locations/");
                crate::codec::percent_encode(location, crate::codec::unreserved, &mut target);
                target.push_str("/publishers/");
                target.push_str(publisher.as_str());
                target.push_str("/models/");
                // Claude's ids carry an `@version`, kept as it is (a valid path character).
                crate::codec::percent_encode(
                    id,
                    |i, b| crate::codec::unreserved(i, b) || b == b'@',
                    &mut target,
                );
                target.push_str(match (publisher, stream) {
                    (Publisher::Google, false) => ":generateContent",
                    (Publisher::Google, true) => ":streamGenerateContent?alt=sse",
                    (Publisher::Anthropic, false) => ":rawPredict",
                    (Publisher::Anthropic, true) => ":streamRawPredict",
                });
                out.extend_from_slice(target.as_bytes());
            }
            Self::Bedrock { base, invoke } => {
                out.extend_from_slice(base.as_bytes());
                out.extend_from_slice(b"/model/");
                // The id is one path segment: `/` and `:` are encoded (and signed as sent).
                let mut segment = String::new();
                crate::codec::percent_encode(model, crate::codec::unreserved, &mut segment);
                out.extend_from_slice(segment.as_bytes());
                out.extend_from_slice(match (invoke, stream) {
                    (false, false) => b"/converse".as_slice(),
                    (false, true) => b"/converse-stream",
                    (true, false) => b"/invoke",
                    (true, true) => b"/invoke-with-response-stream",
                });
            }
            Self::OpenAi { base } => {
                out.extend_from_slice(base.as_bytes());
                out.extend_from_slice(openai_api(api).as_bytes());
            }
            Self::Azure {
                prefix,
                deployment,
                api_version,
            } => {
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(b"/openai/deployments/");
                let mut segment = String::new();
                crate::codec::percent_encode(
                    deployment.as_deref().unwrap_or(model),
                    crate::codec::unreserved,
                    &mut segment,
                );
                out.extend_from_slice(segment.as_bytes());
                out.extend_from_slice(openai_api(api).as_bytes());
                out.extend_from_slice(b"?api-version=");
                out.extend_from_slice(api_version.as_bytes());
            }
            Self::Anthropic { base } => {
                out.extend_from_slice(base.as_bytes());
                out.extend_from_slice(match api {
                    Api::CountTokens => b"/v1/messages/count_tokens",
                    _ => b"/v1/messages",
                });
            }
        }
    }
}

/// The path of an OpenAI API under its base.
fn openai_api(api: Api) -> &'static str {
    match api {
        Api::Embeddings => "/embeddings",
        _ => "/chat/completions",
    }
}

/// Azure OpenAI API version used when the endpoint does not set `api_version`.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";
/// OpenAI's public API, for the built-in `openai` endpoint.
const OPENAI_DEFAULT_URL: &str = "https://api.openai.com/v1";
/// Anthropic's public API.
const ANTHROPIC_DEFAULT_URL: &str = "https://api.anthropic.com";

/// A validated table with its endpoints prepared.
pub struct Loaded {
    /// Borrows `owner` (or static data). Declared first so it is dropped first.
    table: Table<'static>,
    /// Keeps the bytes `table` borrows alive (and hands them out: [`Loaded::bytes`]).
    owner: Option<Arc<[u8]>>,
    pub plans: Vec<Plan>,
    pub origin: Origin,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("origin", &self.origin)
            .field("revision", &self.table.revision())
            .field("rules", &self.table.rule_count())
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// The embedded demo table.
    pub fn demo(settings: &PlanSettings) -> Result<Self, LoadError> {
        let table = Table::from_bytes(DEMO_TABLE).map_err(|source| LoadError::Invalid {
            path: "embedded demo policy".into(),
            source,
        })?;
        Ok(Self::prepare(table, None, Origin::Demo, settings))
    }

    /// Reads and validates the table at `path`.
    pub fn from_file(path: &Path, settings: &PlanSettings) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(bytes, Origin::File(path.to_owned()), settings)
    }

    /// Validates table bytes that came from `origin`.
    pub fn from_bytes(
        bytes: Vec<u8>,
        origin: Origin,
        settings: &PlanSettings,
    ) -> Result<Self, LoadError> {
        let owner: Arc<[u8]> = Arc::from(bytes);
        #[expect(unsafe_code, reason = "a table borrowing the bytes stored beside it")]
        // SAFETY: `owner` is a shared heap allocation that is never mutated and lives as long
        // as `Self` (it is stored in `self.owner`, and moving an `Arc` does not move its
        // data). `table` is the only borrower; it is dropped before `owner` (field order)
        // and is only handed out as `&Table<'_>` tied to `&self`, so the 'static lifetime
        // never escapes.
        let bytes: &'static [u8] = unsafe { &*std::ptr::from_ref::<[u8]>(&*owner) };
        let table = Table::from_bytes(bytes).map_err(|source| LoadError::Invalid {
            path: origin.to_string(),
            source,
        })?;
        Ok(Self::prepare(table, Some(owner), origin, settings))
    }

    fn prepare(
        table: Table<'static>,
        owner: Option<Arc<[u8]>>,
        origin: Origin,
        settings: &PlanSettings,
    ) -> Self {
        let plans = table.endpoints().map(|e| plan(&e, settings)).collect();
        Self {
            table,
            owner,
            plans,
            origin,
        }
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &Table<'_> {
        &self.table
    }

    /// The table's bytes as loaded (the demo's embedded bytes for the demo).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.owner.as_deref().unwrap_or(DEMO_TABLE)
    }
}

/// Settings that shape endpoint plans.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    /// Timeouts for endpoints that do not set their own.
    pub default_timeouts: Timeouts,
}

fn plan(e: &switchyard_table::EndpointView<'_>, settings: &PlanSettings) -> Plan {
    if e.kind() == EndpointKind::Mock {
        return Plan::Mock;
    }
    match forward_plan(e, settings) {
        Ok(up) => Plan::Forward(Box::new(up)),
        Err(why) => Plan::Broken(format!("endpoint `{}` is misconfigured: {why}", e.id())),
    }
}

fn forward_plan(
    e: &switchyard_table::EndpointView<'_>,
    settings: &PlanSettings,
) -> Result<Upstream, String> {
    let region = bedrock_region(e)?;
    let cloud_url;
    let url = match (e.url(), e.kind()) {
        ("", EndpointKind::OpenAi) => OPENAI_DEFAULT_URL,
        ("", EndpointKind::Anthropic) => ANTHROPIC_DEFAULT_URL,
        ("", EndpointKind::Bedrock) => {
            cloud_url = format!("https://bedrock-runtime.{region}.amazonaws.com");
            &cloud_url
        }
        ("", EndpointKind::Vertex) => {
            cloud_url = vertex_url(&vertex_place(e)?.1);
            &cloud_url
        }
        ("", _) => return Err("it has no `url`".into()),
        (u, _) => u,
    };
    let parsed = parse_url(url).ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let base = parsed.path.trim_end_matches('/');
    let path = match e.kind() {
        EndpointKind::AzureOpenAi => PathPlan::Azure {
            prefix: base.to_owned(),
            deployment: Some(e.deployment())
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            api_version: match e.api_version() {
                "" => AZURE_DEFAULT_API_VERSION,
                v => v,
            }
            .to_owned(),
        },
        EndpointKind::Bedrock => PathPlan::Bedrock {
            base: base.to_owned(),
            invoke: invoke(e),
        },
        EndpointKind::Vertex => {
            let (project, location) = vertex_place(e)?;
            PathPlan::Vertex {
                // `…/v1` given as the base is the same base.
                base: base.strip_suffix("/v1").unwrap_or(base).to_owned(),
                project,
                location,
            }
        }
        // The API's base, also when given as `…/v1` or down to `…/v1/messages`.
        EndpointKind::Anthropic => PathPlan::Anthropic {
            base: base
                .strip_suffix("/v1/messages")
                .or_else(|| base.strip_suffix("/v1"))
                .unwrap_or(base)
                .to_owned(),
        },
        _ => PathPlan::OpenAi {
            base: base
                .strip_suffix("/chat/completions")
                .unwrap_or(base)
                .to_owned(),
        },
    };
    let wire = match e.kind() {
        EndpointKind::Anthropic => Wire::Anthropic,
        EndpointKind::Bedrock if invoke(e) => Wire::BedrockInvoke,
        EndpointKind::Bedrock => Wire::Bedrock,
        // Per model (`Upstream::wire_for`); Gemini when a model names no publisher.
        EndpointKind::Vertex => Wire::Gemini,
        _ => Wire::OpenAi,
    };
    let limit = match e.kind() {
        EndpointKind::OpenAi | EndpointKind::AzureOpenAi => Limit::MaxCompletionTokens,
        _ => Limit::MaxTokens,
    };
    let secret = read_secret(e)?;
    // Bedrock: an API key (`api_key_env` / `api_key_file`) goes as a bearer token; without
    // one, requests are signed with the AWS credentials.
    let sigv4 = match e.kind() {
        EndpointKind::Bedrock if secret.is_none() => Some(Arc::new(
            crate::upstream::sigv4::Signer::new(aws_credentials(e)?, &region, "bedrock"),
        )),
        _ => None,
    };
    let tls = if parsed.tls {
        Some(client_tls(e.ca_file())?)
    } else {
        None
    };
    // Vertex: an access token from the key file or the metadata server, unless an API key
    // is given.
    let google = match e.kind() {
        EndpointKind::Vertex if secret.is_none() => Some(crate::upstream::token::Tokens::shared(
            e.credentials_file(),
            || client_tls(e.ca_file()),
        )?),
        _ => None,
    };
    let auth = secret.map(|s| match e.kind() {
        EndpointKind::AzureOpenAi => ("api-key", s),
        EndpointKind::Anthropic => ("x-api-key", s),
        EndpointKind::Vertex => ("x-goog-api-key", s),
        _ => ("authorization", format!("Bearer {s}")),
    });
    // Each: the endpoint's `timeouts` entry, else its `timeout_ms` (time to first byte and
    // idle gap), else the router's default.
    let ms = |v: u32| (v != 0).then(|| Duration::from_millis(u64::from(v)));
    let d = settings.default_timeouts;
    let timeouts = Timeouts {
        connect: ms(e.connect_timeout_ms()).unwrap_or(d.connect),
        ttft: ms(e.ttft_timeout_ms())
            .or(ms(e.timeout_ms()))
            .unwrap_or(d.ttft),
        idle: ms(e.idle_timeout_ms())
            .or(ms(e.timeout_ms()))
            .unwrap_or(d.idle),
        total: ms(e.total_timeout_ms()).or(d.total),
    };
    Ok(Upstream {
        tls,
        pool_key: format!(
            "{}://{}:{}#{}",
            if parsed.tls { "https" } else { "http" },
            parsed.host,
            parsed.port,
            e.ca_file()
        ),
        authority: parsed.authority,
        host: parsed.host,
        port: parsed.port,
        path,
        wire,
        limit,
        auth,
        sigv4,
        google,
        timeouts,
    })
}

/// Whether a Bedrock endpoint is called through InvokeModel (`bedrock_api: invoke`).
fn invoke(e: &switchyard_table::EndpointView<'_>) -> bool {
    e.bedrock_api() == Some(switchyard_table::BedrockApi::Invoke)
}

/// The endpoint's secret, from `api_key_env` or `api_key_file`; `None` if it has neither.
/// Surrounding whitespace (a file's final newline) is dropped; a control character inside
/// is refused, since the value becomes a header line and a newline in it would add lines.
fn read_secret(e: &switchyard_table::EndpointView<'_>) -> Result<Option<String>, String> {
    let (value, source) = if !e.api_key_env().is_empty() {
        let name = e.api_key_env();
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => (v, format!("environment variable `{name}`")),
            _ => {
                return Err(format!(
                    "environment variable `{name}` (its `api_key_env`) is not set"
                ));
            }
        }
    } else if !e.api_key_file().is_empty() {
        let path = e.api_key_file();
        match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => (v, format!("its `api_key_file` `{path}`")),
            Ok(_) => return Err(format!("its `api_key_file` `{path}` is empty")),
            Err(err) => return Err(format!("cannot read its `api_key_file` `{path}`: {err}")),
        }
    } else {
        return Ok(None);
    };
    let value = value.trim();
    if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!(
            "the secret in {source} holds a control character (a line break inside the key?); it must be one line"
        ));
    }
    Ok(Some(value.to_owned()))
}

fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!(error = %err, "could not load some system CA certificates");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        roots
    })
}

/// A TLS client configuration trusting the system roots plus the certificates in `ca_file`.
/// A TLS client configuration trusting the system's roots (for the side threads' own
/// connections, such as the OTLP exporter's).
pub fn default_client_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    client_tls("")
}

fn client_tls(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = system_roots().clone();
    if !ca_file.is_empty() {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("cannot read its `ca_file` `{ca_file}`: {e}"))?;
        if certs.is_empty() {
            return Err(format!("its `ca_file` `{ca_file}` holds no certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("its `ca_file` `{ca_file}` has a bad certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current table, shared by all cores.
pub type TableCell = crate::control::published::Published<Loaded>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://gpu.internal:8443/v1").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("gpu.internal", 8443, "/v1")
        );
        assert_eq!(u.authority, "gpu.internal:8443");
        let u = parse_url("http://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, ""));
        let u = parse_url("http://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        for bad in [
            "ftp://x",
            "http://",
            "http://u@h/",
            "http://h:99999/",
            "https://h/#f",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn demo_table_loads_with_mock_plans() {
        let settings = PlanSettings {
            default_timeouts: Timeouts {
                connect: Duration::from_secs(1),
                ttft: Duration::from_secs(1),
                idle: Duration::from_secs(1),
                total: None,
            },
        };
        let demo = Loaded::demo(&settings).unwrap();
        assert!(demo.plans.iter().all(|p| matches!(p, Plan::Mock)));
        assert!(demo.table().rule_count() >= 3);
    }

    #[test]
    fn paths_per_api() {
        let target = |plan: &PathPlan, api, model| {
            let mut out = Vec::new();
            plan.target(api, model, false, &mut out);
            String::from_utf8(out).unwrap()
        };
        let azure = PathPlan::Azure {
            prefix: String::new(),
            deployment: None,
            api_version: "2024-10-21".into(),
        };
        assert_eq!(
            target(&azure, Api::Chat, "gpt 4o"),
            "/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            target(&azure, Api::Embeddings, "e3"),
            "/openai/deployments/e3/embeddings?api-version=2024-10-21"
        );
        let openai = PathPlan::OpenAi { base: "/v1".into() };
        assert_eq!(target(&openai, Api::Messages, "m"), "/v1/chat/completions");
        assert_eq!(target(&openai, Api::Embeddings, "m"), "/v1/embeddings");
        let anthropic = PathPlan::Anthropic {
            base: String::new(),
        };
        assert_eq!(target(&anthropic, Api::Chat, "m"), "/v1/messages");
        assert_eq!(
            target(&anthropic, Api::CountTokens, "m"),
            "/v1/messages/count_tokens"
        );
    }
}
