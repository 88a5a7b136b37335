//! The router's error taxonomy: what went wrong, on which side, whether a retry is safe, and
//! the one place each kind maps to an HTTP status and an OpenAI-format error body
//! (`{"error": {"message", "type", "param", "code"}}`).

use std::borrow::Cow;

use crate::dialect::Wire;
use crate::gateway::body::write_json_string;

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The request was bad; retrying it unchanged fails again.
    Client,
    /// The upstream endpoint failed or misbehaved.
    Upstream,
    /// The router itself (its configuration or state).
    Internal,
}

/// A tenant limit (`rate_limit_rpm`, `rate_limit_tpm`, `daily_token_budget`,
/// `daily_budget_usd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Rpm,
    Tpm,
    DailyTokens,
    DailySpend,
}

impl Limit {
    /// The `limit` label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
            Self::DailyTokens => "daily_tokens",
            Self::DailySpend => "daily_spend",
        }
    }
}

/// Every way a request can fail, as the router reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    InvalidBody,
    MissingMessages,
    BadHeader,
    ModelNotServed,
    PolicyDenied,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    HeadersTooLarge,
    NotImplemented,
    VersionNotSupported,
    TooManyConnections,
    ShuttingDown,
    UpstreamUnavailable,
    UpstreamCredentials,
    UpstreamBadResponse,
    /// The upstream answered with an error status the next candidate may mend (429, 5xx, …)
    /// and another candidate followed: the request went on (see `upstream::exchange::falls_back`).
    UpstreamRefused,
    UpstreamTimeout,
    AuditUnavailable,
    MissingApiKey,
    InvalidApiKey,
    KeyDisabled,
    KeyExpired,
    /// A key bound to one tenant used with `X-Tenant` (or `X-User-Role`) naming another.
    TenantMismatch,
    /// `X-User-Role` on a key that has no role and may not assert one.
    RoleNotAssertable,
    /// A client key (or none) on the admin API.
    AdminOnly,
    /// A key whose tenant the serving policy no longer declares.
    TenantUnknown,
    /// No candidate endpoint's worst-case cost fits `X-Cost-Budget-Usd`.
    CostBudgetExceeded,
    /// A tenant's `rate_limit_rpm` or `rate_limit_tpm` is used up for now.
    RateLimited,
    /// A tenant's `daily_token_budget` or `daily_spend_usd` is spent for today (UTC).
    BudgetExhausted,
    /// A policy (or endpoint, or tenant) change posted to the admin API does not compile.
    InvalidPolicy,
    /// The node is at a capacity limit (request bodies being buffered); retry shortly.
    Overloaded,
    /// The fleet's limits store (Redis) is unreachable and the router is told to refuse
    /// limited tenants meanwhile (`--limits-on-store-down closed`).
    LimitsUnavailable,
    /// The shared admin state (`--state`) is unreachable: admin changes are refused, never
    /// made on one host alone.
    StateUnavailable,
    /// An admin change lost every race against other hosts' changes.
    Conflict,
    /// The client closed its connection before the answer (nginx's 499: never seen by the
    /// client, recorded in the audit trail).
    ClientClosed,
    /// A request (or one of its fields) the chosen endpoint's dialect cannot express.
    Untranslatable,
    /// An API the chosen endpoint's dialect does not have (`count_tokens` off Anthropic).
    ApiNotServed,
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest
            | Self::InvalidBody
            | Self::MissingMessages
            | Self::BadHeader
            | Self::ModelNotServed
            | Self::InvalidPolicy
            | Self::CostBudgetExceeded
            | Self::Untranslatable => 400,
            Self::MissingApiKey | Self::InvalidApiKey | Self::KeyDisabled | Self::KeyExpired => 401,
            Self::PolicyDenied
            | Self::TenantMismatch
            | Self::RoleNotAssertable
            | Self::AdminOnly
            | Self::TenantUnknown => 403,
            Self::NotFound | Self::ApiNotServed => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::LengthRequired => 411,
            Self::PayloadTooLarge => 413,
            Self::UriTooLong => 414,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited | Self::BudgetExhausted => 429,
            Self::ClientClosed => 499,
            Self::HeadersTooLarge => 431,
            Self::Internal => 500,
            Self::NotImplemented => 501,
            Self::UpstreamBadResponse | Self::UpstreamRefused => 502,
            Self::TooManyConnections
            | Self::ShuttingDown
            | Self::UpstreamUnavailable
            | Self::UpstreamCredentials
            | Self::AuditUnavailable
            | Self::Overloaded
            | Self::LimitsUnavailable
            | Self::StateUnavailable => 503,
            Self::Conflict => 409,
            Self::UpstreamTimeout => 504,
            Self::VersionNotSupported => 505,
        }
    }

    /// The error body's `type`.
    #[must_use]
    pub fn error_type(self) -> &'static str {
        match self.side() {
            Side::Client
                if matches!(
                    self,
                    Self::PolicyDenied
                        | Self::TenantMismatch
                        | Self::RoleNotAssertable
                        | Self::AdminOnly
                        | Self::TenantUnknown
                ) =>
            {
                "access_denied"
            }
            Side::Client
                if matches!(
                    self,
                    Self::MissingApiKey
                        | Self::InvalidApiKey
                        | Self::KeyDisabled
                        | Self::KeyExpired
                ) =>
            {
                "authentication_error"
            }
            Side::Client if self == Self::NotImplemented => "not_implemented_error",
            Side::Client if matches!(self, Self::RateLimited | Self::BudgetExhausted) => {
                "rate_limit_error"
            }
            Side::Client => "invalid_request_error",
            Side::Upstream => "provider_error",
            Side::Internal => "server_error",
        }
    }

    /// The error body's `code`: stable, machine-readable.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidBody => "invalid_json",
            Self::MissingMessages => "missing_messages",
            Self::BadHeader => "invalid_header",
            Self::ModelNotServed => "model_not_found",
            Self::PolicyDenied => "policy_denied",
            Self::NotFound => "unknown_url",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::LengthRequired => "length_required",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_content_encoding",
            Self::HeadersTooLarge => "headers_too_large",
            Self::NotImplemented => "not_implemented",
            Self::VersionNotSupported => "http_version_not_supported",
            Self::TooManyConnections => "too_many_connections",
            Self::ShuttingDown => "shutting_down",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamCredentials => "upstream_credentials_missing",
            Self::UpstreamBadResponse => "upstream_bad_response",
            Self::UpstreamRefused => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::AuditUnavailable => "audit_unavailable",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::KeyDisabled => "key_disabled",
            Self::KeyExpired => "key_expired",
            Self::TenantMismatch => "tenant_mismatch",
            Self::RoleNotAssertable => "role_not_assertable",
            Self::AdminOnly => "admin_key_required",
            Self::TenantUnknown => "unknown_tenant",
            Self::CostBudgetExceeded => "cost_budget_exceeded",
            Self::RateLimited => "rate_limit_exceeded",
            Self::BudgetExhausted => "daily_budget_exceeded",
            Self::InvalidPolicy => "invalid_policy",
            Self::Overloaded => "server_busy",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::StateUnavailable => "state_unavailable",
            Self::Conflict => "conflict",
            Self::ClientClosed => "client_closed_request",
            Self::Untranslatable => "untranslatable",
            Self::ApiNotServed => "api_not_served",
            Self::Internal => "internal_error",
        }
    }

    /// Who is at fault.
    #[must_use]
    pub fn side(self) -> Side {
        match self {
            Self::UpstreamUnavailable
            | Self::UpstreamBadResponse
            | Self::UpstreamRefused
            | Self::UpstreamTimeout => Side::Upstream,
            Self::TooManyConnections
            | Self::ShuttingDown
            | Self::UpstreamCredentials
            | Self::AuditUnavailable
            | Self::Overloaded
            | Self::LimitsUnavailable
            | Self::StateUnavailable
            | Self::Internal => Side::Internal,
            _ => Side::Client,
        }
    }

    /// Whether the request may be sent to another endpoint (nothing reached the upstream
    /// in a way that could have had an effect).
    #[must_use]
    pub fn retry_safe(self) -> bool {
        matches!(
            self,
            Self::UpstreamUnavailable | Self::UpstreamCredentials | Self::UpstreamRefused
        )
    }

    /// Whether a request refused this way by one candidate endpoint may go to the next:
    /// nothing was sent, or nothing came back in time (a time-to-first-byte timeout: nothing
    /// has reached the client, and DESIGN.md's commit point lets it move on), and another
    /// endpoint (another dialect) may serve it.
    #[must_use]
    pub fn try_next(self) -> bool {
        self.retry_safe()
            || matches!(
                self,
                Self::UpstreamTimeout
                    | Self::NotImplemented
                    | Self::Untranslatable
                    | Self::ApiNotServed
            )
    }
}

/// A failed request: its kind, a message naming the problem, and the parameter it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: Cow<'static, str>,
    pub param: Option<&'static str>,
    /// Seconds to send as `Retry-After` (429s, 503s).
    pub retry_after: Option<u64>,
    /// The methods a path takes, sent as `Allow` with a 405.
    pub allow: Option<&'static str>,
    /// The upstream's status and `Retry-After` (ms), when this is an upstream's refusal
    /// ([`ErrorKind::UpstreamRefused`]): what the endpoint's breaker learns from it.
    pub upstream_status: Option<u16>,
    pub upstream_retry_ms: Option<u32>,
    /// Sent as `x-should-retry: false`: the router already tried what a retry would (the
    /// OpenAI and Anthropic SDKs obey the header before their own retry rules).
    pub no_retry: bool,
    /// A 429 whose body says the account is out of credit (OpenAI's `insufficient_quota`),
    /// not a rate limit: its endpoint cools down for the longest cooldown.
    pub quota_exhausted: bool,
    /// The tenant limit that refused the request, for `switchyard_rate_limited_total`.
    pub limit: Option<Limit>,
    /// More top-level fields for the body beside `error` (the compiler's diagnostics for
    /// [`ErrorKind::InvalidPolicy`]).
    pub details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// What the operator needs and the client must not see (addresses, host names, file
    /// paths, variable names): logged with the request id, never sent or audited.
    pub internal: Option<Box<str>>,
}

impl Error {
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            retry_after: None,
            allow: None,
            no_retry: false,
            quota_exhausted: false,
            limit: None,
            upstream_status: None,
            upstream_retry_ms: None,
            details: None,
            internal: None,
        }
    }

    /// Names the tenant limit that refused the request.
    #[must_use]
    pub fn with_limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Adds detail for the log only (see [`Error::internal`]).
    #[must_use]
    pub fn with_internal(mut self, detail: impl Into<Box<str>>) -> Self {
        self.internal = Some(detail.into());
        self
    }

    /// The message and, when there is one, the internal detail: for log lines.
    #[must_use]
    pub fn for_log(&self) -> String {
        match &self.internal {
            Some(detail) => format!("{} ({detail})", self.message),
            None => self.message.to_string(),
        }
    }

    #[must_use]
    pub fn with_allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Adds the fields of `details` (an object) to the body beside `error`.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = details {
            self.details = Some(Box::new(map));
        }
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    #[must_use]
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// Appends the JSON body in `wire`'s dialect to `out`: OpenAI's (below), or Anthropic's
    /// `{"type":"error","error":{"type","message"}}` with the type its status has there.
    pub fn write_body_in(&self, out: &mut Vec<u8>, wire: Wire) {
        match wire {
            // (No client speaks Bedrock.)
            Wire::OpenAi
            | Wire::Bedrock
            | Wire::BedrockInvoke
            | Wire::Gemini
            | Wire::VertexAnthropic => self.write_body(out),
            Wire::Anthropic => crate::dialect::anthropic::encode::write_error_body(
                out,
                crate::dialect::errors::anthropic_type(self.kind.status()),
                &self.message,
            ),
        }
    }

    /// Appends the OpenAI-format JSON body to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"error\":{\"message\":");
        write_json_string(out, &self.message);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(self.kind.error_type().as_bytes());
        out.extend_from_slice(b"\",\"param\":");
        match self.param {
            Some(p) => write_json_string(out, p),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"code\":\"");
        out.extend_from_slice(self.kind.code().as_bytes());
        out.extend_from_slice(b"\"}");
        for (k, v) in self.details.iter().flat_map(|d| d.iter()) {
            if k == "error" {
                continue;
            }
            out.push(b',');
            write_json_string(out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, v);
        }
        out.push(b'}');
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn body_is_openai_format_json() {
        let e =
            Error::new(ErrorKind::ModelNotServed, "model `x\"y` is not served").with_param("model");
        let mut out = Vec::new();
        e.write_body(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["message"], "model `x\"y` is not served");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_found");
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::UpstreamBadResponse.status(), 502);
        assert_eq!(ErrorKind::UpstreamUnavailable.status(), 503);
        assert_eq!(ErrorKind::PolicyDenied.error_type(), "access_denied");
        assert_eq!(
            ErrorKind::UpstreamUnavailable.error_type(),
            "provider_error"
        );
    }
}
