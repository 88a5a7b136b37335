//! The catalogue sections: endpoints (type, URL, transport, models, pricing, secrets by
//! reference), tenants, data classes; and the built-in managed-provider endpoints.

use super::values::{backticked, words};
use super::*;

impl Checker<'_> {
    pub(super) fn catalogue(
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

    pub(super) fn endpoints(&mut self, node: &Node, in_policy: bool, out: &mut Vec<Endpoint>) {
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

    pub(super) fn endpoint(&mut self, node: &Node, in_policy: bool) -> Option<Endpoint> {
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
        let (models, upstream_models) = match node.get("models") {
            Some(n) => match self.models(n) {
                Some(list) => {
                    let (names, ids): (Vec<String>, Vec<String>) = list.into_iter().unzip();
                    (Some(names), Some(ids))
                }
                None => (None, None),
            },
            None => (Some(Vec::new()), Some(Vec::new())),
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
        let mut health = opt_u32(self, "health_check_interval_ms");
        let timeout = opt_u32(self, "timeout_ms");
        let resilience = self.resilience(node, &mut health);
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
            "credentials_file",
            "aws_access_key_id_env",
            "aws_secret_access_key_env",
            "aws_session_token_env",
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
            credentials_file,
            aws_access_key_id_env,
            aws_secret_access_key_env,
            aws_session_token_env,
        ] = &mut texts;
        ok &= self.cloud_settings(node, id_node, kind);
        let bedrock_api = match (kind, node.get("bedrock_api")) {
            (Some(EndpointKind::Bedrock), Some(n)) => self.enum_word(
                n,
                "Bedrock API",
                BedrockApi::parse,
                &words(BedrockApi::ALL, BedrockApi::as_str),
            ),
            (Some(EndpointKind::Bedrock), None) => Some(BedrockApi::Converse),
            _ => Some(BedrockApi::Converse),
        };
        let bedrock_api =
            bedrock_api.map(|api| (kind == Some(EndpointKind::Bedrock)).then_some(api));
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
            credentials_file: credentials_file.take()?,
            aws_access_key_id_env: aws_access_key_id_env.take()?,
            aws_secret_access_key_env: aws_secret_access_key_env.take()?,
            aws_session_token_env: aws_session_token_env.take()?,
            bedrock_api: bedrock_api?,
            upstream_models: upstream_models?,
            builtin: false,
            resilience: resilience?,
        };
        ok.then_some(Endpoint {
            spec,
            span: id_node.span,
            in_policy,
        })
    }

    /// `models`: a list of names, each a scalar or `{ name: NAME, upstream: PROVIDER_ID }`;
    /// returns (name, provider id or empty) pairs.
    fn models(&mut self, node: &Node) -> Option<Vec<(String, String)>> {
        let items = self.seq(
            node,
            "models",
            "`[a, b]` or `[{ name: a, upstream: provider-id }]`",
        )?;
        let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let (name, upstream) = if let Value::Map(entries) = &item.value {
                self.known_keys(entries, MODEL_KEYS, "a model");
                let Some(name_node) = item.get("name") else {
                    self.push(
                        Diagnostic::error(Code::MissingKey, "model has no `name`")
                            .label(item.span, "this model")
                            .help("write `{ name: NAME, upstream: PROVIDER_ID }`: policies and clients use the name, the provider gets its id"),
                    );
                    ok = false;
                    continue;
                };
                let upstream = match item.get("upstream") {
                    Some(n) => self.id(n, "upstream"),
                    None => Some(String::new()),
                };
                (self.id(name_node, "models"), upstream)
            } else {
                (self.id(item, "models"), Some(String::new()))
            };
            match (name, upstream) {
                (Some(name), Some(upstream)) => {
                    if out.iter().any(|(n, _)| *n == name) {
                        self.push(
                            Diagnostic::error(
                                Code::InvalidValue,
                                format!("model `{name}` is listed twice"),
                            )
                            .label(item.span, "listed again here")
                            .help("list each model once"),
                        );
                        ok = false;
                    }
                    out.push((name, upstream));
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The settings only some endpoint types take: required ones present, others' absent.
    fn cloud_settings(&mut self, node: &Node, id_node: &Node, kind: Option<EndpointKind>) -> bool {
        let Some(kind) = kind else { return true };
        let mut ok = true;
        let required: &[(&str, &str)] = match kind {
            EndpointKind::Bedrock => &[(
                "region",
                "the AWS region of the Bedrock runtime, e.g. `region: us-east-1`",
            )],
            EndpointKind::Vertex => &[
                (
                    "project",
                    "the Google Cloud project id, e.g. `project: my-project`",
                ),
                (
                    "location",
                    "the Vertex AI location, e.g. `location: us-central1` (or `global`)",
                ),
            ],
            _ => &[],
        };
        for (key, help) in required {
            if node.get(key).is_none() {
                self.push(
                    Diagnostic::error(Code::MissingKey, format!("{kind} endpoint has no `{key}`"))
                        .label(id_node.span, "this endpoint")
                        .help(format!("add {help}")),
                );
                ok = false;
            }
        }
        let only: &[(&str, EndpointKind)] = &[
            ("credentials_file", EndpointKind::Vertex),
            ("aws_access_key_id_env", EndpointKind::Bedrock),
            ("aws_secret_access_key_env", EndpointKind::Bedrock),
            ("aws_session_token_env", EndpointKind::Bedrock),
            ("bedrock_api", EndpointKind::Bedrock),
        ];
        for (key, owner) in only {
            if kind != *owner
                && let Some((k, _)) = node
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_scalar() == Some(*key)))
            {
                self.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!("`{key}` applies only to `type: {owner}` endpoints"),
                    )
                    .label(k.span, format!("this endpoint is `type: {kind}`"))
                    .help(format!("remove `{key}`, or change the endpoint's type")),
                );
                ok = false;
            }
        }
        let access = node.get("aws_access_key_id_env").is_some();
        let secret = node.get("aws_secret_access_key_env").is_some();
        if kind == EndpointKind::Bedrock && access != secret {
            let missing = if access {
                "aws_secret_access_key_env"
            } else {
                "aws_access_key_id_env"
            };
            self.push(
                Diagnostic::error(Code::MissingKey, format!("bedrock endpoint has no `{missing}`"))
                    .label(id_node.span, "this endpoint")
                    .help("give both `aws_access_key_id_env` and `aws_secret_access_key_env` (names of environment variables), or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            );
            ok = false;
        }
        ok
    }

    pub(super) fn url(&mut self, node: &Node) -> Option<String> {
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

    /// `timeouts`, `health_check` (whose `interval_ms` sets `interval`, the older
    /// `health_check_interval_ms`: giving both is an error) and `weight`.
    fn resilience(
        &mut self,
        node: &Node,
        interval: &mut Option<u32>,
    ) -> Option<EndpointResilience> {
        let mut r = EndpointResilience::default();
        let mut ok = true;
        let ms = |c: &mut Self, block: &Node, key: &str, max: u64| match block.get(key) {
            Some(n) => c
                .uint(n, key, max)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            None => Some(0),
        };
        if let Some(t) = node.get("timeouts") {
            if let Some(entries) = self.map(t, "`timeouts`") {
                self.known_keys(entries, &TIMEOUT_KEYS, "`timeouts`");
                let day = 86_400_000;
                let [connect, ttft, idle, total] = TIMEOUT_KEYS.map(|key| ms(self, t, key, day));
                match (connect, ttft, idle, total) {
                    (Some(c), Some(f), Some(i), Some(all)) => {
                        (r.connect_ms, r.ttft_ms, r.idle_ms, r.total_ms) = (c, f, i, all);
                    }
                    _ => ok = false,
                }
            } else {
                ok = false;
            }
        }
        if let Some(h) = node.get("health_check") {
            if let Some(entries) = self.map(h, "`health_check`") {
                self.known_keys(entries, HEALTH_CHECK_KEYS, "`health_check`");
                if let Some(p) = h.get("path") {
                    match self.text(p, "path") {
                        Some(path)
                            if path.starts_with('/') && !path.contains(char::is_whitespace) =>
                        {
                            r.health_path = path;
                        }
                        Some(path) => {
                            self.push(
                                Diagnostic::error(
                                    Code::InvalidValue,
                                    format!("health check path `{path}` is not an absolute path"),
                                )
                                .label(p.span, "the path probed on the endpoint's host")
                                .help("write it from the host's root, e.g. `path: /health` or `path: /v1/models`"),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                if let Some(n) = h.get("interval_ms") {
                    if node.get("health_check_interval_ms").is_some() {
                        self.push(
                            Diagnostic::error(
                                Code::InvalidValue,
                                "the health check interval is given twice",
                            )
                            .label(n.span, "`health_check.interval_ms`")
                            .help("drop `health_check_interval_ms` and keep `health_check: { interval_ms: ... }`"),
                        );
                        ok = false;
                    }
                    *interval = ms(self, h, "interval_ms", 86_400_000);
                }
                r.health_timeout_ms = ms(self, h, "timeout_ms", 600_000).unwrap_or_else(|| {
                    ok = false;
                    0
                });
                for (key, slot) in [
                    ("unhealthy_threshold", &mut r.unhealthy_threshold),
                    ("healthy_threshold", &mut r.healthy_threshold),
                ] {
                    if let Some(n) = h.get(key) {
                        match self.uint(n, key, 100) {
                            Some(0) => {
                                self.push(
                                    Diagnostic::error(
                                        Code::BadNumber,
                                        format!("`{key}` must be from 1 to 100"),
                                    )
                                    .label(n.span, "checks in a row"),
                                );
                                ok = false;
                            }
                            None => ok = false,
                            Some(v) => *slot = u8::try_from(v).unwrap_or(100),
                        }
                    }
                }
            } else {
                ok = false;
            }
        }
        if let Some(w) = node.get("weight") {
            match self.uint(w, "weight", 1_000_000) {
                Some(0) => {
                    self.push(
                        Diagnostic::error(Code::BadNumber, "`weight` must be at least 1")
                            .label(w.span, "an endpoint's share of its balanced `route_to` set")
                            .help("leave the endpoint out of the set to send it nothing"),
                    );
                    ok = false;
                }
                Some(v) => r.weight = u32::try_from(v).unwrap_or(1),
                None => ok = false,
            }
        }
        ok.then_some(r)
    }

    pub(super) fn pricing(&mut self, node: &Node) -> Option<(Micros, Micros)> {
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
    pub(super) fn declaration<'n>(
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

    pub(super) fn tenants(&mut self, node: &Node, out: &mut Vec<Tenant>) {
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

    pub(super) fn data_classes(&mut self, node: &Node, out: &mut Vec<DataClass>) {
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
        credentials_file: String::new(),
        aws_access_key_id_env: String::new(),
        aws_secret_access_key_env: String::new(),
        aws_session_token_env: String::new(),
        bedrock_api: (kind == EndpointKind::Bedrock).then_some(BedrockApi::Converse),
        upstream_models: Vec::new(),
        builtin: true,
        resilience: EndpointResilience::default(),
    })
}
