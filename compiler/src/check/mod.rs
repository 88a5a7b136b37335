//! The checker: raw YAML trees (policy and optional catalogue) → checked [`Policy`] IR,
//! with every problem found reported, not just the first.
//!
//! Each section is checked independently so one mistake does not hide others; a rule
//! with an error is left out of the IR and the IR is only returned when there are no
//! errors at all (later stages may assume a fully valid policy). The checker's methods are
//! split by what they read: `values.rs` (scalars, lists, maps, ids, money), `catalogue.rs`
//! (endpoints, tenants, data classes, the built-in providers), `rules.rs` (rules, their
//! targets and references), `conditions.rs` (condition typing).

mod catalogue;
mod conditions;
mod rules;
mod values;

pub use self::catalogue::builtin_endpoint;
pub use self::rules::action_of;

use sha2::{Digest as _, Sha256};
use switchyard_table::{
    Action, BedrockApi, DataClassSpec, EndpointKind, EndpointResilience, EndpointSpec, Field,
    Micros, TenantSpec, Transport,
};

use crate::diag::{Code, Diagnostic, Severity, suggest};
use crate::ir::{Condition, DataClass, Endpoint, Policy, Pred, Rule, StrPattern, Target, Tenant};
use crate::source::{FileId, Sources, Span};
use crate::yaml::{self, Node, Value};

const TOP_KEYS: &[&str] = &["version", "endpoints", "tenants", "data_classes", "rules"];
const CATALOGUE_KEYS: &[&str] = &["version", "endpoints", "tenants", "data_classes"];
const ENDPOINT_KEYS: &[&str] = &[
    "id",
    "type",
    "url",
    "transport",
    "models",
    "default_model",
    "health_check_interval_ms",
    "timeout_ms",
    "pricing",
    "api_key_env",
    "api_key_file",
    "region",
    "api_version",
    "deployment",
    "project",
    "location",
    "ca_file",
    "credentials_file",
    "aws_access_key_id_env",
    "aws_secret_access_key_env",
    "aws_session_token_env",
    "bedrock_api",
    "timeouts",
    "health_check",
    "weight",
    "description",
];
const TIMEOUT_KEYS: [&str; 4] = ["connect_ms", "ttft_ms", "idle_ms", "total_ms"];
const HEALTH_CHECK_KEYS: &[&str] = &[
    "path",
    "interval_ms",
    "timeout_ms",
    "unhealthy_threshold",
    "healthy_threshold",
];
const MODEL_KEYS: &[&str] = &["name", "upstream"];
const PRICING_KEYS: &[&str] = &["input_per_1k", "output_per_1k"];
const TENANT_KEYS: &[&str] = &[
    "id",
    "model_allowlist",
    "rate_limit_rpm",
    "rate_limit_tpm",
    "daily_token_budget",
    "daily_spend_usd",
    "daily_budget_usd",
    "audit_bucket",
    "description",
];
const DATA_CLASS_KEYS: &[&str] = &["id", "stays_private", "description"];
const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "match",
    "route_to",
    "fallback",
    "resend_on_reset",
];
const DEFAULT_ITEM_KEYS: &[&str] = &[
    "default",
    "name",
    "description",
    "route_to",
    "fallback",
    "resend_on_reset",
];
const DEFAULT_KEYS: &[&str] = &["route_to", "fallback", "resend_on_reset"];
/// Keys that would put a secret into the policy (and so into the table).
const SECRET_KEYS: &[&str] = &[
    "api_key",
    "apikey",
    "key",
    "token",
    "api_token",
    "bearer_token",
    "secret",
    "password",
    "access_key",
    "secret_access_key",
];
/// Managed providers whose public API an undeclared endpoint id can name.
pub const BUILTIN_ENDPOINTS: &[&str] = &["anthropic", "openai", "bedrock", "vertex"];

/// What checking produced.
#[derive(Debug)]
pub struct Checked {
    /// The IR, when there were no errors.
    pub policy: Option<Policy>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A reference to an endpoint, resolved once all endpoints are known.
struct EndpointRef {
    id: String,
    span: Span,
}

enum RawTarget {
    Route {
        /// One endpoint, or the members of a balanced set.
        to: Vec<EndpointRef>,
        fallback: Vec<EndpointRef>,
        resend_on_reset: bool,
    },
    Deny(Span),
}

struct RawRule {
    name: Option<(String, Span)>,
    span: Span,
    head: Span,
    conditions: [Option<Condition>; Field::COUNT],
    target: Option<RawTarget>,
    ok: bool,
}

struct Checker<'s> {
    sources: &'s Sources,
    diags: Vec<Diagnostic>,
    /// Ids of endpoints declared with errors: references to them are not reported again.
    broken_endpoints: Vec<String>,
}

/// Checks a policy file and an optional endpoint catalogue file.
#[must_use]
pub fn check(sources: &Sources, policy: FileId, catalogue: Option<FileId>) -> Checked {
    let mut c = Checker {
        sources,
        diags: Vec::new(),
        broken_endpoints: Vec::new(),
    };
    let policy_policy = c.run(policy, catalogue);
    let has_errors = c.diags.iter().any(|d| d.severity() == Severity::Error);
    Checked {
        policy: if has_errors { None } else { policy_policy },
        diagnostics: c.diags,
    }
}

fn digest(sources: &Sources, files: &[FileId]) -> [u8; 32] {
    let mut h = Sha256::new();
    for id in files {
        let text = sources.file(*id).map_or("", |f| f.text.as_str());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().into()
}

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn parse_file(&mut self, file: FileId) -> Option<Option<Node>> {
        let source = self.sources.file(file)?;
        let (root, diags) = yaml::parse(file, source);
        // A syntax error, or an error that stopped the reader (too deep), leaves no tree.
        let fatal = diags.iter().any(|d| d.code == Code::YamlSyntax)
            || (root.is_none() && !diags.is_empty());
        self.diags.extend(diags);
        if fatal { None } else { Some(root) }
    }

    fn run(&mut self, policy_file: FileId, catalogue_file: Option<FileId>) -> Option<Policy> {
        let root = self.parse_file(policy_file)?;
        let catalogue_root = match catalogue_file {
            Some(f) => Some(self.parse_file(f)?),
            None => None,
        };
        let whole_file = Span::new(policy_file, 0, 0);
        let Some(root) = root else {
            self.push(
                Diagnostic::error(Code::MissingKey, "the policy file is empty")
                    .label(whole_file, "expected `version: v1` and `rules:`")
                    .help("a policy needs at least `rules:` ending with a `default` rule"),
            );
            return None;
        };
        let top = self.map(&root, "the policy")?;
        self.known_keys(top, TOP_KEYS, "top level of a policy");
        if let Some(v) = root.get("version") {
            self.version(v);
        }

        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut tenants: Vec<Tenant> = Vec::new();
        let mut data_classes: Vec<DataClass> = Vec::new();
        let mut catalogue_given = false;
        if let Some(node) = root.get("endpoints") {
            catalogue_given = true;
            self.endpoints(node, true, &mut endpoints);
        }
        if let Some(node) = root.get("tenants") {
            self.tenants(node, &mut tenants);
        }
        if let Some(node) = root.get("data_classes") {
            self.data_classes(node, &mut data_classes);
        }
        if let Some(cat) = catalogue_root.flatten() {
            catalogue_given = true;
            self.catalogue(&cat, &mut endpoints, &mut tenants, &mut data_classes);
        }
        self.duplicate_ids(
            endpoints.iter().map(|e| (e.spec.id.as_str(), e.span)),
            "endpoint",
        );
        self.duplicate_ids(
            tenants.iter().map(|t| (t.spec.id.as_str(), t.span)),
            "tenant",
        );
        self.duplicate_ids(
            data_classes.iter().map(|d| (d.spec.id.as_str(), d.span)),
            "data class",
        );

        let Some(rules_node) = root.get("rules") else {
            let span = top.first().map_or(whole_file, |(k, _)| k.span);
            self.push(
                Diagnostic::error(Code::MissingKey, "the policy has no `rules`")
                    .label(span, "policy starts here")
                    .help("add `rules:` with at least `- default: deny` or `- default: { route_to: <endpoint> }`"),
            );
            return None;
        };
        let (raw_rules, raw_default) = self.rules(rules_node)?;

        // Resolve endpoint references now that every declaration is known.
        let mut used = vec![false; endpoints.len()];
        let mut rules = Vec::with_capacity(raw_rules.len());
        let mut all_ok = true;
        for raw in raw_rules {
            let target = raw
                .target
                .and_then(|t| self.resolve_target(t, &mut endpoints, &mut used, catalogue_given));
            match (raw.ok, target) {
                (true, Some(target)) => rules.push(Rule {
                    name: raw.name.map(|(n, _)| n),
                    span: raw.span,
                    head: raw.head,
                    conditions: raw.conditions,
                    target,
                }),
                _ => all_ok = false,
            }
        }
        let default = raw_default.and_then(|(span, t)| {
            let target = self.resolve_target(t, &mut endpoints, &mut used, catalogue_given)?;
            Some(Rule {
                name: Some("default".to_owned()),
                span,
                head: span,
                conditions: Default::default(),
                target,
            })
        });

        for (e, used) in endpoints.iter().zip(&used) {
            if !used && e.in_policy {
                self.push(
                    Diagnostic::warning(
                        Code::UnusedEndpoint,
                        format!("endpoint `{}` is never used", e.spec.id),
                    )
                    .label(e.span, "declared here")
                    .help("route to it from a rule, a fallback or the default, or remove it"),
                );
            }
        }
        self.undeclared_references(&rules, &tenants, &data_classes);
        self.allowlist_mismatches(&rules, &tenants, &endpoints);

        let default = default?;
        if !all_ok {
            return None;
        }
        let mut files = vec![policy_file];
        files.extend(catalogue_file);
        Some(Policy {
            endpoints,
            tenants,
            data_classes,
            rules,
            default,
            digest: digest(self.sources, &files),
        })
    }
}
