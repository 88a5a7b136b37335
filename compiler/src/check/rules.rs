//! The rules: their matches, targets and fallbacks, the default, resolution of endpoint
//! references, and the cross-section checks (undeclared references, allowlist mismatches).

use super::values::{backticked, head_span};
use super::*;

impl Checker<'_> {
    #[expect(
        clippy::type_complexity,
        reason = "a private pair of the parsed rules and default"
    )]
    pub(super) fn rules(
        &mut self,
        node: &Node,
    ) -> Option<(Vec<RawRule>, Option<(Span, RawTarget)>)> {
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

    pub(super) fn default_target(&mut self, item: &Node, d: &Node) -> Option<RawTarget> {
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
                    to: vec![EndpointRef { id, span: d.span }],
                    fallback: self.fallback(item.get("fallback"))?,
                    resend_on_reset: self.resend_on_reset(item)?,
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

    pub(super) fn route(&mut self, node: &Node, owner: Span) -> Option<RawTarget> {
        let Some(to) = node.get("route_to") else {
            self.push(
                Diagnostic::error(Code::MissingKey, "missing `route_to`")
                    .label(owner, "this rule does not say where to send requests")
                    .help("add `route_to: <endpoint>`"),
            );
            return None;
        };
        // One endpoint, or a balanced set of equivalent ones.
        let set = if let Value::Seq(items) = &to.value {
            if items.is_empty() {
                self.push(
                    Diagnostic::error(Code::InvalidValue, "`route_to` lists no endpoint")
                        .label(to.span, "empty")
                        .help("name one endpoint, or several equivalent ones to balance among: `route_to: [gpu-a, gpu-b]`"),
                );
                None
            } else {
                self.word_list(to, "route_to").map(|list| {
                    list.into_iter()
                        .map(|(id, span)| EndpointRef { id, span })
                        .collect::<Vec<_>>()
                })
            }
        } else {
            self.id(to, "route_to")
                .map(|id| vec![EndpointRef { id, span: to.span }])
        };
        let fallback = self.fallback(node.get("fallback"));
        let resend_on_reset = self.resend_on_reset(node);
        Some(RawTarget::Route {
            to: set?,
            fallback: fallback?,
            resend_on_reset: resend_on_reset?,
        })
    }

    /// `resend_on_reset` (default false).
    fn resend_on_reset(&mut self, node: &Node) -> Option<bool> {
        match node.get("resend_on_reset") {
            Some(n) => self.boolean(n, "resend_on_reset"),
            None => Some(false),
        }
    }

    pub(super) fn fallback(&mut self, node: Option<&Node>) -> Option<Vec<EndpointRef>> {
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

    pub(super) fn rule(
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

    pub(super) fn resolve(
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

    pub(super) fn resolve_target(
        &mut self,
        t: RawTarget,
        endpoints: &mut Vec<Endpoint>,
        used: &mut Vec<bool>,
        catalogue_given: bool,
    ) -> Option<Target> {
        match t {
            RawTarget::Deny(span) => Some(Target::Deny { span }),
            RawTarget::Route {
                to,
                fallback,
                resend_on_reset,
            } => {
                let mut ok = true;
                let mut members: Vec<(usize, Span)> = Vec::with_capacity(to.len());
                for (k, m) in to.iter().enumerate() {
                    if to[..k].iter().any(|g| g.id == m.id) {
                        self.push(
                            Diagnostic::error(
                                Code::InvalidValue,
                                format!("`{}` is listed twice in `route_to`", m.id),
                            )
                            .label(m.span, "again")
                            .help("list each endpoint of a balanced set once (give it a `weight` for a larger share)"),
                        );
                        ok = false;
                        continue;
                    }
                    match self.resolve(m, endpoints, used, catalogue_given) {
                        Some(i) => members.push((i, m.span)),
                        None => ok = false,
                    }
                }
                let mut resolved = Vec::with_capacity(fallback.len());
                let mut spans = Vec::with_capacity(fallback.len());
                for (k, f) in fallback.iter().enumerate() {
                    match self.resolve(f, endpoints, used, catalogue_given) {
                        Some(i) => {
                            let repeat = fallback[..k].iter().any(|g| g.id == f.id);
                            if to.iter().any(|m| m.id == f.id) || repeat {
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
                let (&(endpoint, endpoint_span), rest) = members.split_first()?;
                ok.then(|| Target::Route {
                    endpoint,
                    balanced: rest.iter().map(|m| m.0).collect(),
                    fallback: resolved,
                    endpoint_span,
                    balanced_spans: rest.iter().map(|m| m.1).collect(),
                    fallback_spans: spans,
                    resend_on_reset,
                })
            }
        }
    }

    pub(super) fn undeclared_references(
        &mut self,
        rules: &[Rule],
        tenants: &[Tenant],
        classes: &[DataClass],
    ) {
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
    pub(super) fn allowlist_mismatches(
        &mut self,
        rules: &[Rule],
        tenants: &[Tenant],
        endpoints: &[Endpoint],
    ) {
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
            let targets = rule.target.mentions();
            if targets.is_empty() {
                continue;
            }
            for (e, span, _) in targets {
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

/// The action a checked target lowers to.
#[must_use]
pub fn action_of(target: &Target) -> Action {
    match target {
        Target::Route { .. } => Action::Route,
        Target::Deny { .. } => Action::Deny,
    }
}
