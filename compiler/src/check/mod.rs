//! The checker: raw YAML trees (policy and optional catalogue) → checked [`Policy`] IR,
//! with every problem found reported, not just the first.
//!
//! Each section is checked independently so one mistake does not hide others; a rule
//! with an error is left out of the IR and the IR is only returned when there are no
//! errors at all (later stages may assume a fully valid policy). Condition typing lives
//! in `conditions.rs`.

mod conditions;

use sha2::{Digest as _, Sha256};
use switchyard_table::{
    Action, DataClassSpec, EndpointKind, EndpointSpec, Field, Micros, TenantSpec, Transport,
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
    "description",
];
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
const RULE_KEYS: &[&str] = &["name", "description", "match", "route_to", "fallback"];
const DEFAULT_ITEM_KEYS: &[&str] = &["default", "name", "description", "route_to", "fallback"];
const DEFAULT_KEYS: &[&str] = &["route_to", "fallback"];
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
        to: EndpointRef,
        fallback: Vec<EndpointRef>,
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

    // ---- generic value readers -------------------------------------------------------

    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!("{what} must be a mapping, found {}", node.kind_name()),
                    )
                    .label(node.span, "expected `key: value` pairs"),
                );
                None
            }
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str, example: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!("`{what}` must be a list, found {}", node.kind_name()),
                    )
                    .label(node.span, "expected a list")
                    .help(format!("write it as a YAML list, e.g. {example}")),
                );
                None
            }
        }
    }

    fn known_keys(&mut self, entries: &[(Node, Node)], allowed: &[&str], context: &str) {
        for (k, _) in entries {
            let Some(key) = k.as_scalar() else { continue };
            if allowed.contains(&key) {
                continue;
            }
            let mut d = Diagnostic::error(
                Code::UnknownKey,
                format!("unknown key `{key}` in {context}"),
            )
            .label(k.span, "not a known key");
            d = match suggest(key, allowed.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("expected one of {}", backticked(allowed))),
            };
            self.push(d);
        }
    }

    fn scalar<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.value {
            Value::Scalar { text, .. } => Some(text),
            _ => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!(
                            "`{what}` must be a single value, found {}",
                            node.kind_name()
                        ),
                    )
                    .label(node.span, "expected a value here"),
                );
                None
            }
        }
    }

    fn id(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.scalar(node, what)?;
        if text.trim().is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("`{what}` must be a non-empty word without spaces"),
                )
                .label(node.span, "invalid id")
                .help("ids use letters, digits, `-`, `_`, `.`, `:` or `/`"),
            );
            return None;
        }
        Some(text.to_owned())
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        self.scalar(node, what).map(str::to_owned)
    }

    fn uint(&mut self, node: &Node, what: &str, max: u64) -> Option<u64> {
        let text = self.scalar(node, what)?;
        let value = text
            .strip_prefix('+')
            .unwrap_or(text)
            .replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= max);
        if value.is_none() {
            self.push(
                Diagnostic::error(
                    Code::BadNumber,
                    format!("`{what}` must be a whole number from 0 to {max}, found `{text}`"),
                )
                .label(node.span, "not a non-negative integer"),
            );
        }
        value
    }

    fn money(&mut self, node: &Node, what: &str) -> Option<Micros> {
        let text = self.scalar(node, what)?;
        match Micros::parse(text) {
            Ok(m) => Some(m),
            Err(e) => {
                self.push(
                    Diagnostic::error(
                        Code::BadNumber,
                        format!("`{what}` is not a valid USD amount: {e}"),
                    )
                    .label(node.span, format!("`{text}`"))
                    .help("amounts are plain decimals with at most 6 places, e.g. `0.002`"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match self.scalar(node, what)? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!("`{what}` must be `true` or `false`, found `{other}`"),
                    )
                    .label(node.span, "not a boolean"),
                );
                None
            }
        }
    }

    fn word_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        let items = self.seq(node, what, "`[a, b]`")?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.id(item, what) {
                Some(s) => out.push((s, item.span)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn enum_word<E: Copy>(
        &mut self,
        node: &Node,
        what: &str,
        parse: fn(&str) -> Option<E>,
        words: &[&str],
    ) -> Option<E> {
        let text = self.scalar(node, what)?;
        if let Some(v) = parse(text) {
            return Some(v);
        }
        let mut d = Diagnostic::error(Code::InvalidValue, format!("unknown {what} `{text}`"))
            .label(node.span, format!("not a known {what}"));
        d = match suggest(text, words.iter().copied()) {
            Some(s) => d.help(format!(
                "did you mean `{s}`? expected one of {}",
                backticked(words)
            )),
            None => d.help(format!("expected one of {}", backticked(words))),
        };
        self.push(d);
        None
    }

    fn version(&mut self, node: &Node) {
        let Some(text) = self.scalar(node, "version") else {
            return;
        };
        if text != "v1" {
            self.push(
                Diagnostic::error(
                    Code::UnsupportedVersion,
                    format!("unsupported policy version `{text}`"),
                )
                .label(node.span, "this policyc understands `v1` only")
                .help("write `version: v1`"),
            );
        }
    }

    fn duplicate_ids<'a>(&mut self, ids: impl Iterator<Item = (&'a str, Span)>, what: &str) {
        let mut seen: std::collections::HashMap<&str, Span> = std::collections::HashMap::new();
        for (id, span) in ids {
            if let Some(first) = seen.get(id) {
                self.push(
                    Diagnostic::error(
                        Code::DuplicateId,
                        format!("{what} `{id}` is declared twice"),
                    )
                    .label(span, "declared again here")
                    .secondary(*first, "first declared here")
                    .help(format!(
                        "each {what} id must be unique; rename or remove one"
                    )),
                );
            } else {
                seen.insert(id, span);
            }
        }
    }

    // ---- declarations ----------------------------------------------------------------

    fn catalogue(
        &mut self,
        root: &Node,
        endpoints: &mut Vec<Endpoint>,
        tenants: &mut Vec<Tenant>,
        data_classes: &mut Vec<DataClass>,
    ) {
        if let Value::Seq(_) = root.value {
            self.endpoints(root, false, endpoints);
            return;
        }
        let Some(entries) = self.map(root, "an endpoint catalogue") else {
            return;
        };
        self.known_keys(entries, CATALOGUE_KEYS, "an endpoint catalogue");
        if let Some(v) = root.get("version") {
            self.version(v);
        }
        if let Some(n) = root.get("endpoints") {
            self.endpoints(n, false, endpoints);
        }
        if let Some(n) = root.get("tenants") {
            self.tenants(n, tenants);
        }
        if let Some(n) = root.get("data_classes") {
            self.data_classes(n, data_classes);
        }
    }

    fn endpoints(&mut self, node: &Node, in_policy: bool, out: &mut Vec<Endpoint>) {
        let Some(items) = self.seq(node, "endpoints", "`- id: private-gpu`") else {
            return;
        };
        for item in items {
            match self.endpoint(item, in_policy) {
                Some(e) => out.push(e),
                None => {
                    if let Some(id) = item.get("id").and_then(Node::as_scalar) {
                        self.broken_endpoints.push(id.to_owned());
                    }
                }
            }
        }
    }

    fn endpoint(&mut self, node: &Node, in_policy: bool) -> Option<Endpoint> {
        let entries = self.map(node, "an endpoint")?;
        let mut ok = true;
        for (k, v) in entries {
            let Some(key) = k.as_scalar() else { continue };
            if SECRET_KEYS.contains(&key) {
                ok = false;
                self.push(
                    Diagnostic::error(Code::InvalidValue, format!("secret `{key}` written into the policy"))
                        .label(k.span, "secrets must not appear in a policy or a table")
                        .redact(v.span)
                        .help("keep the secret in the environment or a file: `api_key_env: NAME` or `api_key_file: PATH`"),
                );
            }
        }
        let allowed: Vec<&str> = ENDPOINT_KEYS.iter().chain(SECRET_KEYS).copied().collect();
        let before = self.diags.len();
        self.known_keys(entries, &allowed, "an endpoint");
        // Suggestions should not point at the secret keys we only allow to report them.
        for d in self.diags.iter_mut().skip(before) {
            if let Some(h) = &d.help
                && SECRET_KEYS.iter().any(|s| h.contains(&format!("`{s}`")))
            {
                d.help = Some(format!("expected one of {}", backticked(ENDPOINT_KEYS)));
            }
        }
        ok &= self.diags.len() == before;

        let Some(id_node) = node.get("id") else {
            self.push(
                Diagnostic::error(Code::MissingKey, "endpoint has no `id`")
                    .label(node.span, "this endpoint")
                    .help("add `id: <name>`; rules refer to endpoints by id"),
            );
            return None;
        };
        let id = self.id(id_node, "id");
        let kind = match node.get("type") {
            Some(n) => self.enum_word(
                n,
                "endpoint type",
                EndpointKind::parse,
                &words(EndpointKind::ALL, EndpointKind::as_str),
            ),
            None => {
                self.push(
                    Diagnostic::error(Code::MissingKey, "endpoint has no `type`")
                        .label(id_node.span, "this endpoint")
                        .help(format!(
                            "add `type:`, one of {}",
                            backticked(&words(EndpointKind::ALL, EndpointKind::as_str))
                        )),
                );
                None
            }
        };
        let transport = match node.get("transport") {
            Some(n) => self.enum_word(
                n,
                "transport",
                Transport::parse,
                &words(Transport::ALL, Transport::as_str),
            ),
            None => Some(Transport::Public),
        };
        let url = match node.get("url") {
            Some(n) => self.url(n),
            None => {
                let needs_url = kind.is_some_and(|k| {
                    !matches!(
                        k,
                        EndpointKind::Anthropic
                            | EndpointKind::OpenAi
                            | EndpointKind::Bedrock
                            | EndpointKind::Vertex
                            | EndpointKind::Mock
                    )
                });
                if needs_url {
                    self.push(
                        Diagnostic::error(Code::MissingKey, "endpoint has no `url`")
                            .label(id_node.span, "this endpoint")
                            .help("self-hosted and Azure endpoints need `url: https://host/v1`"),
                    );
                    None
                } else {
                    Some(String::new())
                }
            }
        };
        let models = match node.get("models") {
            Some(n) => self
                .word_list(n, "models")
                .map(|v| v.into_iter().map(|(s, _)| s).collect()),
            None => Some(Vec::new()),
        };
        let default_model = match node.get("default_model") {
            Some(n) => {
                let m = self.id(n, "default_model");
                if let (Some(m), Some(models)) = (&m, &models)
                    && !models.is_empty()
                    && !models.contains(m)
                {
                    self.push(
                        Diagnostic::error(
                            Code::InvalidValue,
                            format!("default model `{m}` is not in `models`"),
                        )
                        .label(n.span, "not served by this endpoint")
                        .help("add it to `models` or pick one of them"),
                    );
                    ok = false;
                }
                m
            }
            None => Some(String::new()),
        };
        let opt_u32 = |c: &mut Self, key: &str| match node.get(key) {
            Some(n) => c
                .uint(n, key, u64::from(u32::MAX))
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            None => Some(0),
        };
        let health = opt_u32(self, "health_check_interval_ms");
        let timeout = opt_u32(self, "timeout_ms");
        let (input_per_1k, output_per_1k) = match node.get("pricing") {
            Some(p) => self.pricing(p)?,
            None => (Micros(0), Micros(0)),
        };
        let mut texts = [
            "api_key_env",
            "api_key_file",
            "region",
            "api_version",
            "deployment",
            "project",
            "location",
            "ca_file",
        ]
        .map(|key| match node.get(key) {
            Some(n) => self.id(n, key),
            None => Some(String::new()),
        });
        if let Some(desc) = node.get("description") {
            ok &= self.text(desc, "description").is_some();
        }
        let [
            api_key_env,
            api_key_file,
            region,
            api_version,
            deployment,
            project,
            location,
            ca_file,
        ] = &mut texts;
        let spec = EndpointSpec {
            id: id?,
            kind: kind?,
            url: url?,
            transport: transport?,
            models: models?,
            default_model: default_model?,
            health_check_interval_ms: health?,
            timeout_ms: timeout?,
            input_per_1k,
            output_per_1k,
            api_key_env: api_key_env.take()?,
            api_key_file: api_key_file.take()?,
            region: region.take()?,
            api_version: api_version.take()?,
            deployment: deployment.take()?,
            project: project.take()?,
            location: location.take()?,
            ca_file: ca_file.take()?,
            builtin: false,
        };
        ok.then_some(Endpoint {
            spec,
            span: id_node.span,
            in_policy,
        })
    }

    fn url(&mut self, node: &Node) -> Option<String> {
        let text = self.scalar(node, "url")?;
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
        let valid = host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace))
            && !text.contains(char::is_whitespace);
        if !valid {
            self.push(
                Diagnostic::error(Code::InvalidValue, format!("`{text}` is not an http(s) URL"))
                    .label(node.span, "invalid URL")
                    .help("write the base URL with its scheme, e.g. `https://gpu.internal.example.com/v1`"),
            );
            return None;
        }
        Some(text.to_owned())
    }

    fn pricing(&mut self, node: &Node) -> Option<(Micros, Micros)> {
        let entries = self.map(node, "`pricing`")?;
        self.known_keys(entries, PRICING_KEYS, "`pricing`");
        let input = match node.get("input_per_1k") {
            Some(n) => self.money(n, "input_per_1k"),
            None => Some(Micros(0)),
        };
        let output = match node.get("output_per_1k") {
            Some(n) => self.money(n, "output_per_1k"),
            None => Some(Micros(0)),
        };
        Some((input?, output?))
    }

    /// The common start of a declaration list item: a mapping with known keys and an
    /// `id`. Returns the `id` node and its value (`None` if invalid, already reported).
    fn declaration<'n>(
        &mut self,
        item: &'n Node,
        what: &str,
        keys: &[&str],
        id_help: &str,
    ) -> Option<(&'n Node, Option<String>)> {
        let entries = self.map(item, &format!("a {what}"))?;
        self.known_keys(entries, keys, &format!("a {what}"));
        let Some(id_node) = item.get("id") else {
            self.push(
                Diagnostic::error(Code::MissingKey, format!("{what} has no `id`"))
                    .label(item.span, format!("this {what}"))
                    .help(id_help.to_owned()),
            );
            return None;
        };
        Some((id_node, self.id(id_node, "id")))
    }

    fn tenants(&mut self, node: &Node, out: &mut Vec<Tenant>) {
        let Some(items) = self.seq(node, "tenants", "`- id: enterprise-acme`") else {
            return;
        };
        for item in items {
            let before = self.diags.len();
            let help = "add `id: <tenant>`, the value clients send in `X-Tenant`";
            let Some((id_node, id)) = self.declaration(item, "tenant", TENANT_KEYS, help) else {
                continue;
            };
            let allowlist = match item.get("model_allowlist") {
                Some(n) => self
                    .word_list(n, "model_allowlist")
                    .map(|v| Some(v.into_iter().map(|(s, _)| s).collect())),
                None => Some(None),
            };
            let rpm = match item.get("rate_limit_rpm") {
                Some(n) => self.uint(n, "rate_limit_rpm", u64::from(u32::MAX)),
                None => Some(0),
            };
            let tpm = match item.get("rate_limit_tpm") {
                Some(n) => self.uint(n, "rate_limit_tpm", u64::MAX),
                None => Some(0),
            };
            let tokens = match item.get("daily_token_budget") {
                Some(n) => self.uint(n, "daily_token_budget", u64::MAX),
                None => Some(0),
            };
            // `daily_budget_usd` is the older name of `daily_spend_usd`.
            let budget = match (item.get("daily_spend_usd"), item.get("daily_budget_usd")) {
                (Some(_), Some(old)) => {
                    self.push(
                        Diagnostic::error(
                            Code::InvalidValue,
                            "both `daily_spend_usd` and `daily_budget_usd` are set",
                        )
                        .label(old.span, "the older name of `daily_spend_usd`")
                        .help("keep only `daily_spend_usd`"),
                    );
                    None
                }
                (Some(n), None) => self.money(n, "daily_spend_usd"),
                (None, Some(n)) => self.money(n, "daily_budget_usd"),
                (None, None) => Some(Micros(0)),
            };
            let bucket = match item.get("audit_bucket") {
                Some(n) => self.id(n, "audit_bucket"),
                None => Some(String::new()),
            };
            if let Some(d) = item.get("description") {
                self.text(d, "description");
            }
            if let (
                Some(id),
                Some(allowlist),
                Some(rpm),
                Some(tpm),
                Some(tokens),
                Some(budget),
                Some(bucket),
            ) = (id, allowlist, rpm, tpm, tokens, budget, bucket)
                && self.diags.len() == before
            {
                out.push(Tenant {
                    spec: TenantSpec {
                        id,
                        model_allowlist: allowlist,
                        rate_limit_rpm: u32::try_from(rpm).unwrap_or(u32::MAX),
                        rate_limit_tpm: tpm,
                        daily_token_budget: tokens,
                        daily_budget: budget,
                        audit_bucket: bucket,
                    },
                    span: id_node.span,
                });
            }
        }
    }

    fn data_classes(&mut self, node: &Node, out: &mut Vec<DataClass>) {
        let Some(items) = self.seq(node, "data_classes", "`- id: pii-restricted`") else {
            return;
        };
        for item in items {
            let before = self.diags.len();
            let help = "add `id: <label>`, the value clients send in `X-Data-Class`";
            let Some((id_node, id)) = self.declaration(item, "data class", DATA_CLASS_KEYS, help)
            else {
                continue;
            };
            let stays_private = match item.get("stays_private") {
                Some(n) => self.boolean(n, "stays_private"),
                None => Some(false),
            };
            if let Some(d) = item.get("description") {
                self.text(d, "description");
            }
            if let (Some(id), Some(stays_private)) = (id, stays_private)
                && self.diags.len() == before
            {
                out.push(DataClass {
                    spec: DataClassSpec { id, stays_private },
                    span: id_node.span,
                });
            }
        }
    }

    // ---- rules -----------------------------------------------------------------------

    #[expect(
        clippy::type_complexity,
        reason = "a private pair of the parsed rules and default"
    )]
    fn rules(&mut self, node: &Node) -> Option<(Vec<RawRule>, Option<(Span, RawTarget)>)> {
        let items = self.seq(node, "rules", "`- match: { tenant: acme }`")?;
        let mut rules = Vec::new();
        let mut default: Option<(Span, RawTarget)> = None;
        let mut default_span: Option<Span> = None;
        let mut default_missing_ok = false;
        let mut names: std::collections::HashMap<String, Span> = std::collections::HashMap::new();
        for item in items {
            let Some(entries) = self.map(item, "a rule") else {
                continue;
            };
            if let Some(first) = default_span {
                let what = if item.get("default").is_some() {
                    "a second `default` rule"
                } else {
                    "rule after the `default` rule"
                };
                self.push(
                    Diagnostic::error(Code::RuleAfterDefault, what.to_owned())
                        .label(
                            entries.first().map_or(item.span, |(k, _)| k.span),
                            "never evaluated",
                        )
                        .secondary(first, "the default ends the rule list here")
                        .help("move this rule above the default, or remove it"),
                );
            }
            if let Some(d) = item.get("default") {
                self.known_keys(entries, DEFAULT_ITEM_KEYS, "the default rule");
                let target = self.default_target(item, d);
                if default_span.is_none() {
                    default_span = Some(item.get("default").map_or(item.span, |_| {
                        entries
                            .iter()
                            .find(|(k, _)| k.as_scalar() == Some("default"))
                            .map_or(item.span, |(k, _)| k.span)
                    }));
                    match target {
                        Some(t) => default = Some((item.span, t)),
                        None => default_missing_ok = true,
                    }
                }
                continue;
            }
            self.known_keys(entries, RULE_KEYS, "a rule");
            let rule = self.rule(item, rules.len(), &mut names);
            if default_span.is_none() {
                rules.push(rule);
            }
        }
        if default_span.is_none() && !default_missing_ok {
            let span = items.last().map_or(node.span, |n| n.span);
            self.push(
                Diagnostic::error(Code::MissingDefault, "the policy has no `default` rule")
                    .label(span, "the last rule; requests that match no rule have nowhere to go")
                    .help("end `rules` with `- default: { route_to: <endpoint> }`, or `- default: deny` to refuse them"),
            );
        }
        Some((rules, default))
    }

    fn default_target(&mut self, item: &Node, d: &Node) -> Option<RawTarget> {
        match &d.value {
            Value::Scalar { text, .. } if text == "deny" => {
                for key in ["route_to", "fallback"] {
                    if let Some(n) = item.get(key) {
                        self.push(
                            Diagnostic::error(
                                Code::InvalidValue,
                                format!("`default: deny` cannot have `{key}`"),
                            )
                            .label(n.span, "a denied request goes nowhere")
                            .help(format!(
                                "remove `{key}`, or write `default: {{ route_to: ... }}`"
                            )),
                        );
                    }
                }
                Some(RawTarget::Deny(d.span))
            }
            // `default: <endpoint>` is shorthand for `default: { route_to: <endpoint> }`.
            Value::Scalar { .. } => {
                let id = self.id(d, "default")?;
                Some(RawTarget::Route {
                    to: EndpointRef { id, span: d.span },
                    fallback: self.fallback(item.get("fallback"))?,
                })
            }
            Value::Map(entries) => {
                self.known_keys(entries, DEFAULT_KEYS, "`default`");
                self.route(d, d.span)
            }
            // `- default:` with `route_to` beside it (the form the seed API shows).
            Value::Null => self.route(item, d.span),
            Value::Seq(_) => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        "`default` must be `deny`, an endpoint or a mapping with `route_to`",
                    )
                    .label(d.span, format!("found {}", d.kind_name())),
                );
                None
            }
        }
    }

    fn route(&mut self, node: &Node, owner: Span) -> Option<RawTarget> {
        let Some(to) = node.get("route_to") else {
            self.push(
                Diagnostic::error(Code::MissingKey, "missing `route_to`")
                    .label(owner, "this rule does not say where to send requests")
                    .help("add `route_to: <endpoint>`"),
            );
            return None;
        };
        let id = self.id(to, "route_to");
        let fallback = self.fallback(node.get("fallback"));
        Some(RawTarget::Route {
            to: EndpointRef {
                id: id?,
                span: to.span,
            },
            fallback: fallback?,
        })
    }

    fn fallback(&mut self, node: Option<&Node>) -> Option<Vec<EndpointRef>> {
        let Some(node) = node else {
            return Some(Vec::new());
        };
        if let Value::Scalar { .. } = node.value {
            return Some(vec![EndpointRef {
                id: self.id(node, "fallback")?,
                span: node.span,
            }]);
        }
        Some(
            self.word_list(node, "fallback")?
                .into_iter()
                .map(|(id, span)| EndpointRef { id, span })
                .collect(),
        )
    }

    fn rule(
        &mut self,
        item: &Node,
        index: usize,
        names: &mut std::collections::HashMap<String, Span>,
    ) -> RawRule {
        let before = self.diags.len();
        let name = item.get("name").and_then(|n| {
            let name = self.text(n, "name")?;
            if let Some(first) = names.get(&name) {
                self.push(
                    Diagnostic::error(Code::DuplicateId, format!("rule name `{name}` is used twice"))
                        .label(n.span, "used again here")
                        .secondary(*first, "first used here")
                        .help("rule names identify rules in audit records and `policyc test`: make them unique"),
                );
            } else {
                names.insert(name.clone(), n.span);
            }
            Some((name, n.span))
        });
        if let Some(d) = item.get("description") {
            self.text(d, "description");
        }
        let mut conditions: [Option<Condition>; Field::COUNT] = Default::default();
        match item.get("match") {
            None => self.push(
                Diagnostic::error(Code::MissingKey, format!("rule {index} has no `match`"))
                    .label(item.span, "this rule")
                    .help("add `match:` with the request attributes it applies to (`match: {}` matches everything)"),
            ),
            Some(m) => {
                if let Some(entries) = self.map(m, "`match`") {
                    let keys: Vec<&str> = Field::ALL.iter().map(|f| f.key()).collect();
                    self.known_keys(entries, &keys, "`match`");
                    for (k, v) in entries {
                        let Some(field) = k.as_scalar().and_then(Field::from_key) else {
                            continue;
                        };
                        if let Some(c) = self.condition(field, v)
                            && let Some(slot) = conditions.get_mut(field.index())
                        {
                            *slot = Some(c);
                        }
                    }
                }
            }
        }
        let target = self.route(item, item.span);
        let ok = self.diags[before..]
            .iter()
            .all(|d| d.severity() != Severity::Error);
        RawRule {
            name,
            span: item.span,
            head: head_span(item),
            conditions,
            target,
            ok,
        }
    }

    fn resolve(
        &mut self,
        r: &EndpointRef,
        endpoints: &mut Vec<Endpoint>,
        used: &mut Vec<bool>,
        catalogue_given: bool,
    ) -> Option<usize> {
        if let Some(i) = endpoints.iter().position(|e| e.spec.id == r.id) {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            return Some(i);
        }
        if self.broken_endpoints.contains(&r.id) {
            return None;
        }
        if let Some(spec) = builtin_endpoint(&r.id) {
            if catalogue_given {
                self.push(
                    Diagnostic::warning(
                        Code::UndeclaredEndpoint,
                        format!(
                            "endpoint `{}` is not declared; using the built-in public `{}` API",
                            r.id, r.id
                        ),
                    )
                    .label(r.span, "not in `endpoints` or the catalogue")
                    .help(format!(
                        "declare `{}` under `endpoints:` to set its URL, transport, models and key",
                        r.id
                    )),
                );
            }
            endpoints.push(Endpoint {
                spec,
                span: r.span,
                in_policy: false,
            });
            used.push(true);
            return Some(endpoints.len() - 1);
        }
        let known: Vec<&str> = endpoints
            .iter()
            .map(|e| e.spec.id.as_str())
            .chain(BUILTIN_ENDPOINTS.iter().copied())
            .collect();
        let mut d = Diagnostic::error(
            Code::UnknownEndpoint,
            format!("unknown endpoint `{}`", r.id),
        )
        .label(r.span, "no endpoint has this id");
        d = match suggest(&r.id, known.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if endpoints.iter().any(|e| !e.spec.builtin) => d.help(format!(
                "declared endpoints are {}; declare it under `endpoints:` or pass a catalogue with `--endpoints FILE`",
                backticked(&endpoints.iter().filter(|e| !e.spec.builtin).map(|e| e.spec.id.as_str()).collect::<Vec<_>>())
            )),
            None => d.help("declare it under `endpoints:` or pass a catalogue with `--endpoints FILE`"),
        };
        self.push(d);
        None
    }

    fn resolve_target(
        &mut self,
        t: RawTarget,
        endpoints: &mut Vec<Endpoint>,
        used: &mut Vec<bool>,
        catalogue_given: bool,
    ) -> Option<Target> {
        match t {
            RawTarget::Deny(span) => Some(Target::Deny { span }),
            RawTarget::Route { to, fallback } => {
                let endpoint = self.resolve(&to, endpoints, used, catalogue_given);
                let mut resolved = Vec::with_capacity(fallback.len());
                let mut spans = Vec::with_capacity(fallback.len());
                let mut ok = true;
                for (k, f) in fallback.iter().enumerate() {
                    match self.resolve(f, endpoints, used, catalogue_given) {
                        Some(i) => {
                            let repeat = fallback[..k].iter().any(|g| g.id == f.id);
                            if f.id == to.id || repeat {
                                self.push(
                                    Diagnostic::warning(
                                        Code::RedundantFallback,
                                        format!(
                                            "fallback `{}` is already tried before this point",
                                            f.id
                                        ),
                                    )
                                    .label(f.span, "redundant")
                                    .help("remove it: an endpoint is tried once per request"),
                                );
                            } else {
                                resolved.push(i);
                                spans.push(f.span);
                            }
                        }
                        None => ok = false,
                    }
                }
                let endpoint = endpoint?;
                ok.then_some(Target::Route {
                    endpoint,
                    fallback: resolved,
                    endpoint_span: to.span,
                    fallback_spans: spans,
                })
            }
        }
    }

    fn undeclared_references(&mut self, rules: &[Rule], tenants: &[Tenant], classes: &[DataClass]) {
        let tenant_ids: Vec<&str> = tenants.iter().map(|t| t.spec.id.as_str()).collect();
        let class_ids: Vec<&str> = classes.iter().map(|d| d.spec.id.as_str()).collect();
        for rule in rules {
            for (field, declared, code, what, section) in [
                (
                    Field::Tenant,
                    &tenant_ids,
                    Code::UndeclaredTenant,
                    "tenant",
                    "tenants",
                ),
                (
                    Field::DataClass,
                    &class_ids,
                    Code::UndeclaredDataClass,
                    "data class",
                    "data_classes",
                ),
            ] {
                if declared.is_empty() {
                    continue;
                }
                let Some(c) = rule.condition(field) else {
                    continue;
                };
                let Pred::Str { patterns, .. } = &c.pred else {
                    continue;
                };
                for p in patterns {
                    let StrPattern::Exact(v) = p else { continue };
                    if declared.contains(&v.as_str()) {
                        continue;
                    }
                    let mut d = Diagnostic::warning(
                        code,
                        format!("{what} `{v}` is not declared in `{section}`"),
                    )
                    .label(c.span, "referenced here");
                    d = match suggest(v, declared.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "declare it under `{section}:` or check the spelling"
                        )),
                    };
                    self.push(d);
                }
            }
        }
    }
}

impl Checker<'_> {
    /// P1106: a rule that matches named tenants routes (or falls back) to an endpoint that
    /// serves none of the models one of those tenants may use: such requests can only be
    /// refused there.
    fn allowlist_mismatches(&mut self, rules: &[Rule], tenants: &[Tenant], endpoints: &[Endpoint]) {
        for (index, rule) in rules.iter().enumerate() {
            let Some(c) = rule.condition(Field::Tenant) else {
                continue;
            };
            let Pred::Str {
                negated: false,
                patterns,
            } = &c.pred
            else {
                continue;
            };
            let Target::Route {
                endpoint,
                fallback,
                endpoint_span,
                fallback_spans,
            } = &rule.target
            else {
                continue;
            };
            let targets = std::iter::once((*endpoint, *endpoint_span))
                .chain(fallback.iter().copied().zip(fallback_spans.iter().copied()));
            for (e, span) in targets {
                let Some(e) = endpoints.get(e) else { continue };
                for p in patterns {
                    let StrPattern::Exact(id) = p else { continue };
                    let Some(t) = tenants.iter().find(|t| &t.spec.id == id) else {
                        continue;
                    };
                    let Some(allowed) = &t.spec.model_allowlist else {
                        continue;
                    };
                    // An endpoint without a model list serves whatever it is asked for.
                    if e.spec.models.is_empty() || e.spec.models.iter().any(|m| allowed.contains(m))
                    {
                        continue;
                    }
                    self.push(
                        Diagnostic::warning(
                            Code::AllowlistMismatch,
                            format!(
                                "{} routes tenant `{id}` to endpoint `{}`, which serves none of the tenant's allowed models",
                                rule.label(index),
                                e.spec.id
                            ),
                        )
                        .label(span, "no model here is in the tenant's `model_allowlist`")
                        .label(t.span, "tenant declared here")
                        .help(format!(
                            "requests of `{id}` routed here are refused (403); add one of `{}`'s models ({}) to the allowlist, or route elsewhere",
                            e.spec.id,
                            backticked(&e.spec.models.iter().map(String::as_str).collect::<Vec<_>>())
                        )),
                    );
                }
            }
        }
    }
}

/// The first `key: value` of a mapping when it fits on one line, else its key.
fn head_span(item: &Node) -> Span {
    match item.as_map().and_then(<[_]>::first) {
        Some((k, v)) if matches!(v.value, Value::Scalar { .. }) => k.span.to(v.span),
        Some((k, _)) => k.span,
        None => item.span,
    }
}

fn backticked(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn words<T: Copy>(all: &[T], word: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| word(*v)).collect()
}

/// The endpoint an undeclared managed-provider id stands for: the provider's public API
/// with its default URL, the conventional key variable, and no model restriction.
#[must_use]
pub fn builtin_endpoint(id: &str) -> Option<EndpointSpec> {
    let (kind, key_env, default_model) = match id {
        "anthropic" => (
            EndpointKind::Anthropic,
            "ANTHROPIC_API_KEY",
            "claude-3-5-haiku-latest",
        ),
        "openai" => (EndpointKind::OpenAi, "OPENAI_API_KEY", "gpt-4o-mini"),
        "bedrock" => (
            EndpointKind::Bedrock,
            "",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        "vertex" => (EndpointKind::Vertex, "", "gemini-1.5-flash"),
        _ => return None,
    };
    Some(EndpointSpec {
        id: id.to_owned(),
        kind,
        url: String::new(),
        transport: Transport::Public,
        models: Vec::new(),
        default_model: default_model.to_owned(),
        health_check_interval_ms: 0,
        timeout_ms: 0,
        input_per_1k: Micros(0),
        output_per_1k: Micros(0),
        api_key_env: key_env.to_owned(),
        api_key_file: String::new(),
        region: String::new(),
        api_version: String::new(),
        deployment: String::new(),
        project: String::new(),
        location: String::new(),
        ca_file: String::new(),
        builtin: true,
    })
}

/// The action a checked target lowers to.
#[must_use]
pub fn action_of(target: &Target) -> Action {
    match target {
        Target::Route { .. } => Action::Route,
        Target::Deny { .. } => Action::Deny,
    }
}
