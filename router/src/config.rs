//! Command-line flags (each also an environment variable) and the checked configuration the
//! server runs on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::http::request::{Limits, MAX_HEADERS_CEILING};

/// switchyard: routes LLM API requests by a compiled decision table.
///
/// With no `--table` it serves an embedded demo policy whose endpoints answer in-process,
/// so it runs with no upstream and no keys.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about,
    long_about = None,
    after_help = "Audit trail tools: `switchyard audit compact --help`."
)]
pub struct Args {
    /// Decision table compiled by `policyc compile`. Reloaded when the file is replaced
    /// or on SIGHUP. `s3://bucket/key.swt` reads it from object storage (AWS environment
    /// variables, as for `--audit-sink`), polled by ETag every `--reload-interval-ms`; the
    /// last copy read is kept under `--data-dir` and used when the store is down at start.
    #[arg(long, env = "SWITCHYARD_TABLE", value_name = "FILE|S3_URL")]
    pub table: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (logged at start).
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`GET /v1/audit`); port 0 picks one (logged).
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub admin_listen: SocketAddr,
    /// Serve without API keys: requests are trusted to say their tenant in `X-Tenant`.
    /// For demos and benchmarks only; logged loudly at start.
    #[arg(long, env = "SWITCHYARD_NO_AUTH")]
    pub no_auth: bool,
    /// File with admin API keys, one per line (`#` comments). Admin keys also come from
    /// the `SWITCHYARD_ADMIN_KEYS` environment variable (comma-separated). Without any, the
    /// admin API refuses every request.
    #[arg(long, env = "SWITCHYARD_ADMIN_KEYS_FILE", value_name = "FILE")]
    pub admin_keys_file: Option<PathBuf>,
    /// Serve HTTPS on `--listen` with this certificate chain (PEM, leaf first); needs
    /// `--tls-key`.
    #[arg(
        long,
        env = "SWITCHYARD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "SWITCHYARD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Executors (one thread and listener per core). Default: every CPU this process may use.
    #[arg(long, env = "SWITCHYARD_CORES")]
    pub cores: Option<usize>,
    /// Do not pin executors to CPUs (by default executor i runs on the i-th CPU this
    /// process may use, when there are enough of them).
    #[arg(long, env = "SWITCHYARD_NO_PIN")]
    pub no_pin: bool,
    /// Directory for the router's state (audit shards, admin data).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "switchyard-data")]
    pub data_dir: PathBuf,

    /// Where audit shards are written (Hive layout). Default: `<data-dir>/audit`.
    #[arg(long, env = "SWITCHYARD_AUDIT_DIR", value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Write no audit records (benchmarks, demos).
    #[arg(long, env = "SWITCHYARD_NO_AUDIT")]
    pub no_audit: bool,
    /// Seal an audit shard at about this size, in bytes.
    #[arg(long, env = "SWITCHYARD_AUDIT_MAX_SHARD_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub audit_max_shard_bytes: u64,
    /// `buffered`: a crash loses at most one flush interval of records. `strict`: a response
    /// completes only once its record is fsynced (group commit), and requests are refused
    /// with 503 while the audit trail cannot be written.
    #[arg(long, env = "SWITCHYARD_AUDIT_DURABILITY", default_value = "buffered", value_parser = ["buffered", "strict"])]
    pub audit_durability: String,
    /// Ship sealed audit shards to `s3://bucket/prefix` (endpoint and credentials from the
    /// usual AWS environment variables: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). Tenants
    /// with an `audit_bucket` ship there instead.
    #[arg(long, env = "SWITCHYARD_AUDIT_SINK", value_name = "S3_URL")]
    pub audit_sink: Option<String>,
    /// Time allowed for one shard upload before it is retried, ms.
    #[arg(
        long,
        env = "SWITCHYARD_AUDIT_UPLOAD_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub audit_upload_timeout_ms: u64,
    /// How long shipping to a destination waits after a permanent error (no such bucket,
    /// access denied, bad credentials) before it tries again, s. Other destinations keep
    /// shipping meanwhile.
    #[arg(long, env = "SWITCHYARD_AUDIT_SHIP_HOLD_RETRY_S", default_value_t = 60)]
    pub audit_ship_hold_retry_s: u64,
    /// How long a shipped shard stays on local disk (and queryable by GET /v1/audit), s.
    #[arg(
        long,
        env = "SWITCHYARD_AUDIT_LOCAL_RETENTION_S",
        default_value_t = 86_400
    )]
    pub audit_local_retention_s: u64,
    /// How often audit write-ahead logs are fsynced: the most a machine crash can lose, ms.
    #[arg(
        long,
        env = "SWITCHYARD_AUDIT_FLUSH_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub audit_flush_interval_ms: u64,
    /// Seal an audit shard this many seconds after it was opened.
    #[arg(long, env = "SWITCHYARD_AUDIT_MAX_SHARD_AGE_S", default_value_t = 300)]
    pub audit_max_shard_age_s: u64,

    /// Largest request head (request line and headers), in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Most header fields in a request.
    #[arg(long, env = "SWITCHYARD_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    /// Longest request target (path and query), in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_URI_BYTES", default_value_t = 8 * 1024)]
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Most bytes of request bodies buffered at once on this node (beyond each connection's
    /// initial 16 KiB buffer); a body that would go past it is refused with 503 and
    /// `Retry-After`. Bounds what slow or hostile uploads can make the router hold.
    #[arg(
        long,
        env = "SWITCHYARD_MAX_PENDING_BODY_BYTES",
        default_value_t = 512 * 1024 * 1024
    )]
    pub max_pending_body_bytes: u64,
    /// Most open client connections per core; more are answered 503 and closed.
    #[arg(
        long,
        env = "SWITCHYARD_MAX_CONNECTIONS_PER_CORE",
        default_value_t = 10_000
    )]
    pub max_connections_per_core: usize,

    /// Time allowed to receive a request head, from its first byte (slowloris guard), ms.
    #[arg(long, env = "SWITCHYARD_HEAD_TIMEOUT_MS", default_value_t = 10_000)]
    pub head_timeout_ms: u64,
    /// Time allowed to receive a request body, ms.
    #[arg(long, env = "SWITCHYARD_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept open, ms.
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Time allowed to write to a client before it is dropped, ms.
    #[arg(long, env = "SWITCHYARD_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,

    /// Upstream deadline (connect, response head, and each body read) for endpoints without
    /// `timeout_ms`, ms.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub upstream_timeout_ms: u64,
    /// Time from sending a request to the upstream's response head, for endpoints without
    /// `timeouts.ttft_ms` or `timeout_ms`, ms (default: `--upstream-timeout-ms`).
    #[arg(long, env = "SWITCHYARD_UPSTREAM_TTFT_TIMEOUT_MS")]
    pub upstream_ttft_timeout_ms: Option<u64>,
    /// Longest gap between two reads of an upstream's response body (a stream that stalls
    /// longer is cut with an error event), for endpoints without `timeouts.idle_ms` or
    /// `timeout_ms`, ms (default: `--upstream-timeout-ms`).
    #[arg(long, env = "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS")]
    pub upstream_idle_timeout_ms: Option<u64>,
    /// Longest upstream attempt, response included, for endpoints without
    /// `timeouts.total_ms`, ms; 0: no limit.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT_MS",
        default_value_t = 0
    )]
    pub upstream_total_timeout_ms: u64,
    /// Deadline of a whole request, all attempts together, ms: no attempt starts after it,
    /// and an attempt under way is given only what is left; 0: none.
    #[arg(long, env = "SWITCHYARD_REQUEST_TIMEOUT_MS", default_value_t = 0)]
    pub request_timeout_ms: u64,
    /// Export traces over OTLP/HTTP to this collector (`http(s)://host:4318`; spans go to
    /// `/v1/traces` under it): a span per request and per upstream attempt.
    #[arg(long, env = "SWITCHYARD_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[arg(
        long,
        env = "SWITCHYARD_OTLP_SERVICE_NAME",
        default_value = "switchyard"
    )]
    pub otlp_service_name: String,
    /// Most upstream attempts per request (the rule's endpoint and its fallbacks together).
    /// Before anything reaches the client, a candidate that cannot be reached or answers 408,
    /// 429, 5xx or 529 (or 401/403: the next endpoint has other credentials) passes the request
    /// to the next; the last attempt's answer is the client's.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Retry budget: the retries an endpoint's failures may pass to other candidates, as a
    /// percentage of the requests first sent to it (per core; 0 to 100).
    #[arg(long, env = "SWITCHYARD_RETRY_BUDGET_PERCENT", default_value_t = 20)]
    pub retry_budget_percent: u64,
    /// Retry budget: retries per second an endpoint's failures may cause whatever its
    /// traffic (per core).
    #[arg(long, env = "SWITCHYARD_RETRY_BUDGET_PER_SECOND", default_value_t = 10)]
    pub retry_budget_per_second: u64,
    /// Retry budget: most retries saved up for a burst of failures, per endpoint and core (a
    /// tenth of it is there at start).
    #[arg(long, env = "SWITCHYARD_RETRY_BUDGET_BURST", default_value_t = 1000)]
    pub retry_budget_burst: u64,
    /// Make tenant limits (`rate_limit_rpm`, `rate_limit_tpm`, daily budgets) hold across a
    /// fleet of routers sharing this Redis (`redis://host:port[/db]`, `rediss://…`, with
    /// `user:password@` when the server needs them). Without it, limits are per host.
    #[arg(long, env = "SWITCHYARD_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// This router's name in the fleet: its daily totals are kept under it in Redis, so it
    /// must stay the same across restarts and differ between hosts. Default: the host name
    /// and the listen port.
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Share admin state across a fleet through object storage (`s3://bucket/prefix`; the
    /// same AWS environment variables as `--audit-sink`): policy, endpoint and tenant
    /// changes and client keys made on any host reach every host. Without it, admin changes
    /// stay on the host that made them.
    #[arg(long, env = "SWITCHYARD_STATE", value_name = "S3_URL")]
    pub state: Option<String>,
    /// How often the shared state's manifest is polled (conditional GET), ms.
    #[arg(long, env = "SWITCHYARD_STATE_POLL_MS", default_value_t = 2_000)]
    pub state_poll_ms: u64,
    /// Longest one request to the shared state store (or an S3 `--table`) may take, ms.
    #[arg(long, env = "SWITCHYARD_STATE_TIMEOUT_MS", default_value_t = 5_000)]
    pub state_timeout_ms: u64,
    /// Prefix of the fleet's Redis keys (one Redis may serve several fleets).
    #[arg(
        long,
        env = "SWITCHYARD_REDIS_KEY_PREFIX",
        default_value = "switchyard"
    )]
    pub redis_key_prefix: String,
    /// What limited tenants get while Redis is unreachable: `local` (each host enforces the
    /// full limits: the fleet may admit up to hosts × limit), `share` (each host enforces the
    /// limit divided by the hosts last seen), `closed` (503 for tenants with rate limits).
    #[arg(long, env = "SWITCHYARD_LIMITS_ON_STORE_DOWN", default_value = "local")]
    pub limits_on_store_down: String,
    /// Longest a request waits for its tenant's share of a fleet limit when this host's share
    /// is used up (after it, the request is decided as if Redis were down).
    #[arg(
        long,
        env = "SWITCHYARD_LIMITS_ACQUIRE_TIMEOUT_MS",
        default_value_t = 50
    )]
    pub limits_acquire_timeout_ms: u64,
    /// A directory whose files endpoints created or changed through the admin API may name as
    /// `api_key_file` (repeatable). Files the serving policy already names stay usable; any
    /// other path posted through the admin API is refused. Without it, the admin API cannot
    /// introduce a secret file.
    #[arg(
        long = "secrets-dir",
        env = "SWITCHYARD_SECRETS_DIRS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub secrets_dirs: Vec<PathBuf>,
    /// A prefix of the environment variables that endpoints created or changed through the
    /// admin API may name as `api_key_env` (repeatable, e.g. `SWITCHYARD_SECRET_`).
    /// Variables the serving policy already names stay usable. Without it, the admin API
    /// cannot introduce a secret variable.
    #[arg(
        long = "secret-env-prefix",
        env = "SWITCHYARD_SECRET_ENV_PREFIXES",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    pub secret_env_prefixes: Vec<String>,
    /// A client header to pass to upstreams besides the built-in ones (`accept`,
    /// `user-agent`, `traceparent`, `tracestate`, `openai-beta`): a name, or a prefix ending
    /// in `*` (`x-mock-*`). Repeat the flag, or give a comma-separated list. Credentials,
    /// framing and routing headers cannot be forwarded.
    #[arg(
        long = "forward-header",
        env = "SWITCHYARD_FORWARD_HEADERS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub forward_headers: Vec<String>,
    /// Upstream TCP connect timeout, ms.
    #[arg(long, env = "SWITCHYARD_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// Idle upstream connections kept per endpoint and core.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_IDLE_PER_ENDPOINT",
        default_value_t = 64
    )]
    pub upstream_idle_per_endpoint: usize,

    /// How often the table file is checked for a new version, ms.
    #[arg(long, env = "SWITCHYARD_RELOAD_INTERVAL_MS", default_value_t = 1_000)]
    pub reload_interval_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, ms.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT_MS", default_value_t = 30_000)]
    pub shutdown_timeout_ms: u64,

    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
    /// Log filter (`info`, `debug`, `switchyard=debug`, ...); `RUST_LOG` also works.
    #[arg(long, env = "SWITCHYARD_LOG", default_value = "info")]
    pub log: String,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub table: Option<PathBuf>,
    /// `--table s3://…`: the table read from object storage.
    pub table_url: Option<String>,
    /// `--state`: admin state shared by the fleet.
    pub state: Option<crate::control::shared::StateConfig>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// API keys required on the public API (`--no-auth` clears it).
    pub auth: bool,
    pub admin_keys_file: Option<PathBuf>,
    /// TLS on the main listener (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub cores: usize,
    pub pin: bool,
    pub data_dir: PathBuf,
    /// `None` when auditing is off.
    pub audit_dir: Option<PathBuf>,
    pub audit_max_shard_bytes: u64,
    pub audit_max_shard_age: Duration,
    pub audit_flush_interval: Duration,
    pub audit_strict: bool,
    pub audit_sink: Option<crate::audit::ship::Destination>,
    pub audit_local_retention: Duration,
    pub audit_upload_timeout: Duration,
    pub audit_ship_hold_retry: Duration,
    pub limits: Limits,
    pub max_pending_body_bytes: u64,
    pub max_connections_per_core: usize,
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Default time to the response head (`--upstream-ttft-timeout-ms`).
    pub upstream_ttft_timeout: Duration,
    /// Default longest gap between body reads (`--upstream-idle-timeout-ms`).
    pub upstream_idle_timeout: Duration,
    /// Default longest attempt (`--upstream-total-timeout-ms`; `None`: no limit).
    pub upstream_total_timeout: Option<Duration>,
    /// A request's deadline, all attempts together (`--request-timeout-ms`).
    pub request_timeout: Option<Duration>,
    /// OTLP/HTTP collector for traces (`--otlp-endpoint`).
    pub otlp_endpoint: Option<String>,
    pub otlp_service_name: String,
    /// Most upstream attempts per request (`--max-attempts`).
    pub max_attempts: u32,
    /// `--retry-budget-percent`, `--retry-budget-per-second`, `--retry-budget-burst`.
    pub retry_budget: crate::control::balance::RetryPolicy,
    /// Operator-added client headers passed upstream (`--forward-header`).
    pub forward_headers: Vec<String>,
    /// Where admin-posted endpoints may find secrets.
    pub secrets: crate::control::changes::SecretScope,
    pub connect_timeout: Duration,
    pub upstream_idle_per_endpoint: usize,
    pub reload_interval: Duration,
    pub shutdown_timeout: Duration,
    /// `--redis` and its settings: limits held across a fleet.
    pub fleet: Option<crate::control::fleet::FleetConfig>,
}

/// A flag value out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid `--{flag}`: {why}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub why: String,
}

impl Args {
    /// `--node-id`, or the host name and listen port.
    fn node(&self) -> Result<String, ConfigError> {
        let node = match &self.node_id {
            Some(n) => n.trim().to_owned(),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_default();
                let host = if host.is_empty() { "host" } else { &host };
                match self.listen.port() {
                    // (A free port picked at start is no name to keep: the process id is.)
                    0 => format!("{host}:pid{}", std::process::id()),
                    port => format!("{host}:{port}"),
                }
            }
        };
        if node.is_empty() || node.len() > 200 || node.chars().any(char::is_whitespace) {
            return Err(ConfigError {
                flag: "node-id",
                why: format!("must be 1 to 200 characters without spaces, found `{node}`"),
            });
        }
        Ok(node)
    }

    fn state(&self) -> Result<Option<crate::control::shared::StateConfig>, ConfigError> {
        let Some(url) = &self.state else {
            return Ok(None);
        };
        policyc::store::Location::parse(url).map_err(|why| ConfigError { flag: "state", why })?;
        if !(100..=3_600_000).contains(&self.state_poll_ms) {
            return Err(ConfigError {
                flag: "state-poll-ms",
                why: format!("must be from 100 to 3600000, found {}", self.state_poll_ms),
            });
        }
        if !(100..=120_000).contains(&self.state_timeout_ms) {
            return Err(ConfigError {
                flag: "state-timeout-ms",
                why: format!(
                    "must be from 100 to 120000, found {}",
                    self.state_timeout_ms
                ),
            });
        }
        Ok(Some(crate::control::shared::StateConfig {
            url: url.clone(),
            node: self.node()?,
            poll: Duration::from_millis(self.state_poll_ms),
            timeout: Duration::from_millis(self.state_timeout_ms),
        }))
    }

    fn fleet(&self) -> Result<Option<crate::control::fleet::FleetConfig>, ConfigError> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        let redis = crate::control::redis::RedisUrl::parse(url)
            .map_err(|why| ConfigError { flag: "redis", why })?;
        let on_down =
            crate::control::fleet::DownMode::parse(&self.limits_on_store_down).map_err(|why| {
                ConfigError {
                    flag: "limits-on-store-down",
                    why,
                }
            })?;
        if !(1..=10_000).contains(&self.limits_acquire_timeout_ms) {
            return Err(ConfigError {
                flag: "limits-acquire-timeout-ms",
                why: format!(
                    "must be from 1 to 10000, found {}",
                    self.limits_acquire_timeout_ms
                ),
            });
        }
        let node = self.node()?;
        let prefix = self.redis_key_prefix.trim().to_owned();
        if prefix.is_empty()
            || prefix
                .chars()
                .any(|c| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(ConfigError {
                flag: "redis-key-prefix",
                why: format!("must be non-empty, without spaces or braces, found `{prefix}`"),
            });
        }
        Ok(Some(crate::control::fleet::FleetConfig {
            redis,
            node,
            prefix,
            on_down,
            acquire_timeout: Duration::from_millis(self.limits_acquire_timeout_ms),
        }))
    }

    /// Checks ranges and fills defaults.
    pub fn check(&self) -> Result<Config, ConfigError> {
        let available = std::thread::available_parallelism().map_or(1, usize::from);
        let cores = self.cores.unwrap_or(available);
        if cores == 0 || cores > 1024 {
            return Err(ConfigError {
                flag: "cores",
                why: format!("must be from 1 to 1024, found {cores}"),
            });
        }
        if !(1..=16).contains(&self.max_attempts) {
            return Err(ConfigError {
                flag: "max-attempts",
                why: format!("must be from 1 to 16, found {}", self.max_attempts),
            });
        }
        if self.retry_budget_percent > 100 {
            return Err(ConfigError {
                flag: "retry-budget-percent",
                why: format!("must be from 0 to 100, found {}", self.retry_budget_percent),
            });
        }
        if self.retry_budget_per_second > 1_000_000 || self.retry_budget_burst > 1_000_000 {
            return Err(ConfigError {
                flag: if self.retry_budget_burst > 1_000_000 {
                    "retry-budget-burst"
                } else {
                    "retry-budget-per-second"
                },
                why: "must be at most 1000000".into(),
            });
        }
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_CEILING {
            return Err(ConfigError {
                flag: "max-headers",
                why: format!("must be from 1 to {MAX_HEADERS_CEILING}"),
            });
        }
        if self.max_header_bytes < 256 {
            return Err(ConfigError {
                flag: "max-header-bytes",
                why: "must be at least 256".into(),
            });
        }
        if self.max_uri_bytes < 16 || self.max_uri_bytes > self.max_header_bytes {
            return Err(ConfigError {
                flag: "max-uri-bytes",
                why: "must be at least 16 and at most --max-header-bytes".into(),
            });
        }
        if self.max_connections_per_core == 0 {
            return Err(ConfigError {
                flag: "max-connections-per-core",
                why: "must be at least 1".into(),
            });
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(server_tls(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(ConfigError {
                    flag: "tls-cert",
                    why: "`--tls-cert` and `--tls-key` go together".into(),
                });
            }
        };
        let ms = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError {
                    flag,
                    why: "must be at least 1 ms".into(),
                })
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        let table_url = self
            .table
            .as_ref()
            .and_then(|t| t.to_str())
            .filter(|t| t.starts_with("s3://"))
            .map(str::to_owned);
        if let Some(url) = &table_url {
            let location = policyc::store::Location::parse(url)
                .map_err(|why| ConfigError { flag: "table", why })?;
            if location.prefix.is_empty() {
                return Err(ConfigError {
                    flag: "table",
                    why: format!("`{url}` names a bucket but no object (s3://bucket/key.swt)"),
                });
            }
        }
        Ok(Config {
            table: self.table.clone().filter(|_| table_url.is_none()),
            table_url,
            state: self.state()?,
            listen: self.listen,
            admin_listen: self.admin_listen,
            auth: !self.no_auth,
            tls,
            admin_keys_file: self.admin_keys_file.clone(),
            cores,
            pin: !self.no_pin,
            data_dir: self.data_dir.clone(),
            audit_dir: (!self.no_audit).then(|| {
                self.audit_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("audit"))
            }),
            audit_max_shard_bytes: self.audit_max_shard_bytes,
            audit_max_shard_age: Duration::from_secs(self.audit_max_shard_age_s.max(1)),
            audit_flush_interval: ms("audit-flush-interval-ms", self.audit_flush_interval_ms)?,
            audit_strict: self.audit_durability == "strict",
            audit_sink: match &self.audit_sink {
                Some(url) => Some(crate::audit::ship::Destination::parse(url).map_err(|why| {
                    ConfigError {
                        flag: "audit-sink",
                        why,
                    }
                })?),
                None => None,
            },
            audit_local_retention: Duration::from_secs(self.audit_local_retention_s),
            audit_ship_hold_retry: Duration::from_secs(self.audit_ship_hold_retry_s.max(1)),
            audit_upload_timeout: ms("audit-upload-timeout-ms", self.audit_upload_timeout_ms)?,
            limits: Limits {
                max_head_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                max_uri_bytes: self.max_uri_bytes,
                max_body_bytes: self.max_body_bytes,
            },
            max_pending_body_bytes: self.max_pending_body_bytes,
            max_connections_per_core: self.max_connections_per_core,
            head_timeout: ms("head-timeout-ms", self.head_timeout_ms)?,
            body_timeout: ms("body-timeout-ms", self.body_timeout_ms)?,
            idle_timeout: ms("idle-timeout-ms", self.idle_timeout_ms)?,
            write_timeout: ms("write-timeout-ms", self.write_timeout_ms)?,
            upstream_timeout: ms("upstream-timeout-ms", self.upstream_timeout_ms)?,
            upstream_ttft_timeout: ms(
                "upstream-ttft-timeout-ms",
                self.upstream_ttft_timeout_ms
                    .unwrap_or(self.upstream_timeout_ms),
            )?,
            upstream_idle_timeout: ms(
                "upstream-idle-timeout-ms",
                self.upstream_idle_timeout_ms
                    .unwrap_or(self.upstream_timeout_ms),
            )?,
            upstream_total_timeout: (self.upstream_total_timeout_ms > 0)
                .then(|| Duration::from_millis(self.upstream_total_timeout_ms)),
            request_timeout: (self.request_timeout_ms > 0)
                .then(|| Duration::from_millis(self.request_timeout_ms)),
            otlp_endpoint: self.otlp_endpoint.clone(),
            otlp_service_name: self.otlp_service_name.clone(),
            max_attempts: self.max_attempts,
            retry_budget: crate::control::balance::RetryPolicy {
                percent: self.retry_budget_percent,
                per_second: self.retry_budget_per_second,
                burst: self.retry_budget_burst,
            },
            forward_headers: forward_headers(&self.forward_headers)?,
            secrets: crate::control::changes::SecretScope {
                dirs: self.secrets_dirs.clone(),
                env_prefixes: self
                    .secret_env_prefixes
                    .iter()
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect(),
            },
            connect_timeout: ms("connect-timeout-ms", self.connect_timeout_ms)?,
            upstream_idle_per_endpoint: self.upstream_idle_per_endpoint,
            reload_interval: ms("reload-interval-ms", self.reload_interval_ms)?,
            shutdown_timeout: ms("shutdown-timeout-ms", self.shutdown_timeout_ms)?,
            fleet: self.fleet()?,
        })
    }
}

/// Checks `--forward-header` patterns: header-name characters with an optional trailing
/// `*`, and none that could match a credential, framing or routing header.
fn forward_headers(patterns: &[String]) -> Result<Vec<String>, ConfigError> {
    const NEVER: [&str; 20] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "expect",
        "x-request-id",
        "x-tenant",
        "x-data-class",
        "x-user-role",
        "x-latency-budget-ms",
        "x-cost-budget-usd",
    ];
    let mut out = Vec::new();
    for raw in patterns {
        let p = raw.trim().to_ascii_lowercase();
        if p.is_empty() {
            continue;
        }
        let name = p.strip_suffix('*').unwrap_or(&p);
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'+-.^_`|~".contains(c);
        if !name.chars().all(token) || (name.is_empty() && p != "*") {
            return Err(ConfigError {
                flag: "forward-header",
                why: format!("`{raw}` is not a header name (or a prefix ending in `*`)"),
            });
        }
        let blocked = NEVER
            .iter()
            .chain(&["x-switchyard-route"])
            .find(|n| crate::http::header_matches(&p, n.as_bytes()));
        if let Some(n) = blocked {
            return Err(ConfigError {
                flag: "forward-header",
                why: format!("`{raw}` would forward `{n}`, which the router never passes on"),
            });
        }
        out.push(p);
    }
    Ok(out)
}

/// The TLS server configuration of `--tls-cert` and `--tls-key` (HTTP/1.1 by ALPN).
fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| ConfigError {
            flag: "tls-cert",
            why: format!("cannot read certificates from `{}`: {e}", cert.display()),
        })?;
    if chain.is_empty() {
        return Err(ConfigError {
            flag: "tls-cert",
            why: format!("`{}` holds no PEM certificate", cert.display()),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| ConfigError {
        flag: "tls-key",
        why: format!("cannot read a private key from `{}`: {e}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| ConfigError {
            flag: "tls-key",
            why: format!(
                "`{}` and `{}` do not make a usable certificate: {e}",
                cert.display(),
                key.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
