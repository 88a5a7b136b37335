//! `policyc test`: request → expected decision cases, in YAML.
//!
//! ```yaml
//! cases:
//!   - name: pii stays on the private GPU
//!     request: { tenant: enterprise-acme, data_class: pii-restricted, latency_budget_ms: 300 }
//!     expect: { endpoint: private-gpu, rule: pii-to-private-gpu }
//!   - request: { tenant: nobody }
//!     expect: { deny: true }
//! ```
//!
//! `request` keys are the match fields (absent = the request does not carry it);
//! `expect` takes any of `endpoint`, `rule` (name or index), `rule_index`, `rule_name`,
//! `fallback` (list) and `deny`. Each case is decided by the table's evaluator and, when
//! the policy source is at hand, also by the plain interpreter; a disagreement between the
//! two is reported as a failure of its own.

use serde::Serialize;
use switchyard_table::{Field, Micros, Table};

use crate::diag::{Code, Diagnostic, suggest};
use crate::explain::{self, Explanation};
use crate::interp::{self, Attrs};
use crate::ir::Policy;
use crate::source::{FileId, Sources};
use crate::yaml::{self, Node, Value};

const CASE_KEYS: &[&str] = &["name", "request", "expect"];
const EXPECT_KEYS: &[&str] = &[
    "endpoint",
    "rule",
    "rule_index",
    "rule_name",
    "fallback",
    "deny",
];

/// A rule named by index or by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RuleRef {
    Index(u32),
    Name(String),
}

/// What a case expects; unset parts are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Expect {
    pub endpoint: Option<String>,
    pub rule: Option<RuleRef>,
    pub fallback: Option<Vec<String>>,
    pub deny: Option<bool>,
}

/// One case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub line: usize,
    pub attrs: Attrs,
    pub expect: Expect,
}

/// The verdict on one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    pub passed: bool,
    pub failures: Vec<String>,
    #[serde(skip)]
    pub explanation: Explanation,
}

struct Reader<'a> {
    sources: &'a Sources,
    diags: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn err(&mut self, code: Code, node: &Node, message: String, help: &str) {
        let d = Diagnostic::error(code, message).label(node.span, "here");
        self.diags
            .push(if help.is_empty() { d } else { d.help(help) });
    }

    fn keys(&mut self, node: &Node, allowed: &[&str], what: &str) -> bool {
        let Some(entries) = node.as_map() else {
            self.err(
                Code::WrongType,
                node,
                format!("{what} must be a mapping, found {}", node.kind_name()),
                "",
            );
            return false;
        };
        let mut ok = true;
        for (k, _) in entries {
            let key = k.as_scalar().unwrap_or_default();
            if !allowed.contains(&key) {
                ok = false;
                let help = match suggest(key, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of {}", allowed.join(", ")),
                };
                self.err(
                    Code::UnknownKey,
                    k,
                    format!("unknown key `{key}` in {what}"),
                    &help,
                );
            }
        }
        ok
    }

    fn scalar<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        let s = node.as_scalar();
        if s.is_none() {
            self.err(
                Code::WrongType,
                node,
                format!(
                    "`{what}` must be a single value, found {}",
                    node.kind_name()
                ),
                "",
            );
        }
        s
    }

    fn request(&mut self, node: &Node) -> Attrs {
        let mut attrs = Attrs::default();
        let keys: Vec<&str> = Field::ALL.iter().map(|f| f.key()).collect();
        if !self.keys(node, &keys, "`request`") {
            return attrs;
        }
        for (k, v) in node.as_map().unwrap_or_default() {
            let Some(field) = k.as_scalar().and_then(Field::from_key) else {
                continue;
            };
            if v.value == Value::Null {
                continue;
            }
            let Some(text) = self.scalar(v, field.key()) else {
                continue;
            };
            match field {
                Field::Tenant => attrs.tenant = Some(text.to_owned()),
                Field::DataClass => attrs.data_class = Some(text.to_owned()),
                Field::UserRole => attrs.user_role = Some(text.to_owned()),
                Field::Model => attrs.model = Some(text.to_owned()),
                Field::LatencyBudgetMs => match text.parse::<u64>() {
                    Ok(n) => attrs.latency_budget_ms = Some(n),
                    Err(_) => self.err(
                        Code::BadNumber,
                        v,
                        format!("`latency_budget_ms` must be a whole number, found `{text}`"),
                        "",
                    ),
                },
                Field::CostCapPer1k => match Micros::parse(text) {
                    Ok(m) => attrs.cost_cap_per_1k = Some(m),
                    Err(e) => self.err(
                        Code::BadNumber,
                        v,
                        format!("`cost_cap_per_1k` `{text}`: {e}"),
                        "",
                    ),
                },
            }
        }
        attrs
    }

    fn expect(&mut self, node: &Node) -> Expect {
        let mut e = Expect::default();
        if !self.keys(node, EXPECT_KEYS, "`expect`") {
            return e;
        }
        if node.as_map().is_some_and(<[_]>::is_empty) {
            self.err(
                Code::MissingKey,
                node,
                "`expect` is empty".into(),
                "expect at least one of endpoint, rule, fallback, deny",
            );
        }
        if let Some(v) = node.get("endpoint") {
            e.endpoint = self.scalar(v, "endpoint").map(str::to_owned);
        }
        for key in ["rule", "rule_index", "rule_name"] {
            let Some(v) = node.get(key) else { continue };
            let Some(text) = self.scalar(v, key) else {
                continue;
            };
            let as_index = text.parse::<u32>().ok();
            e.rule = match (key, as_index) {
                ("rule_name", _) | ("rule", None) => Some(RuleRef::Name(text.to_owned())),
                (_, Some(i)) => Some(RuleRef::Index(i)),
                (_, None) => {
                    self.err(
                        Code::BadNumber,
                        v,
                        format!("`rule_index` must be a number, found `{text}`"),
                        "",
                    );
                    None
                }
            };
        }
        if let Some(v) = node.get("fallback") {
            e.fallback = match &v.value {
                Value::Seq(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| self.scalar(i, "fallback").map(str::to_owned))
                        .collect(),
                ),
                Value::Scalar { text, .. } => Some(vec![text.clone()]),
                _ => Some(Vec::new()),
            };
        }
        if let Some(v) = node.get("deny") {
            match self.scalar(v, "deny") {
                Some("true") => e.deny = Some(true),
                Some("false") => e.deny = Some(false),
                Some(other) => self.err(
                    Code::WrongType,
                    v,
                    format!("`deny` must be true or false, found `{other}`"),
                    "",
                ),
                None => {}
            }
        }
        e
    }
}

/// Parses a cases file; on any error returns every diagnostic found.
pub fn parse(sources: &Sources, file: FileId) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let Some(source) = sources.file(file) else {
        return Err(Vec::new());
    };
    let (root, diags) = yaml::parse(file, source);
    let mut r = Reader { sources, diags };
    let items: &[Node] = match &root {
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => items,
        Some(
            root @ Node {
                value: Value::Map(_),
                ..
            },
        ) => {
            r.keys(root, &["cases"], "a cases file");
            match root.get("cases") {
                Some(Node {
                    value: Value::Seq(items),
                    ..
                }) => items,
                Some(other) => {
                    r.err(Code::WrongType, other, "`cases` must be a list".into(), "");
                    &[]
                }
                None => {
                    r.err(
                        Code::MissingKey,
                        root,
                        "a cases file needs `cases:`".into(),
                        "",
                    );
                    &[]
                }
            }
        }
        Some(other) => {
            r.err(
                Code::WrongType,
                other,
                "a cases file is a list of cases or `cases:`".into(),
                "",
            );
            &[]
        }
        None => &[],
    };
    let mut cases = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !r.keys(item, CASE_KEYS, "a case") {
            continue;
        }
        let line = r
            .sources
            .file(file)
            .map_or(0, |f| f.line_col(item.span.start as usize).0);
        let name = item
            .get("name")
            .and_then(Node::as_scalar)
            .map_or_else(|| format!("case {} (line {line})", i + 1), str::to_owned);
        let attrs = match item.get("request") {
            Some(n) => r.request(n),
            None => Attrs::default(),
        };
        let expect = match item.get("expect") {
            Some(n) => r.expect(n),
            None => {
                r.err(
                    Code::MissingKey,
                    item,
                    "case has no `expect`".into(),
                    "add `expect: { endpoint: ... }`",
                );
                Expect::default()
            }
        };
        cases.push(Case {
            name,
            line,
            attrs,
            expect,
        });
    }
    if r.diags.is_empty() {
        Ok(cases)
    } else {
        Err(r.diags)
    }
}

/// Runs cases against a table, and against the policy's interpreter when given.
#[must_use]
pub fn run(table: &Table<'_>, policy: Option<&Policy>, cases: &[Case]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|case| {
            let e = explain::explain(table, &case.attrs);
            let mut failures = Vec::new();
            if let Some(policy) = policy {
                let reference = interp::first_match(policy, &case.attrs);
                if reference as u64 != u64::from(e.rule_index) {
                    failures.push(format!(
                        "internal disagreement: the table chose rule {} but the interpreter chose rule {reference}",
                        e.rule_index
                    ));
                }
            }
            let x = &case.expect;
            if let Some(deny) = x.deny
                && deny != e.denied
            {
                failures.push(if deny {
                    format!("expected deny, got route to `{}`", e.endpoint.as_deref().unwrap_or("?"))
                } else {
                    "expected a route, got deny".to_owned()
                });
            }
            if let Some(want) = &x.endpoint
                && e.endpoint.as_deref() != Some(want.as_str())
            {
                failures.push(format!(
                    "expected endpoint `{want}`, got {}",
                    e.endpoint.as_deref().map_or("deny".to_owned(), |g| format!("`{g}`"))
                ));
            }
            match &x.rule {
                Some(RuleRef::Index(i)) if *i != e.rule_index => {
                    failures.push(format!("expected rule {i}, got rule {}", e.rule_index));
                }
                Some(RuleRef::Name(n)) if e.rule_name.as_deref() != Some(n.as_str()) => failures.push(format!(
                    "expected rule `{n}`, got {}",
                    e.rule_name.as_ref().map_or(format!("rule {} (unnamed)", e.rule_index), |g| format!("`{g}`"))
                )),
                _ => {}
            }
            if let Some(want) = &x.fallback
                && *want != e.fallback
            {
                failures.push(format!("expected fallback {want:?}, got {:?}", e.fallback));
            }
            CaseResult {
                name: case.name.clone(),
                line: case.line,
                passed: failures.is_empty(),
                failures,
                explanation: e,
            }
        })
        .collect()
}

/// The rule id failing cases carry in CI findings.
#[must_use]
pub fn finding_rule() -> crate::ci::RuleInfo {
    crate::ci::RuleInfo {
        id: "test/failed".to_owned(),
        name: "case-failed".to_owned(),
        summary: "a request → expected decision case does not hold".to_owned(),
        level: crate::ci::Level::Error,
    }
}

/// A failed case as a CI finding on its line of the cases file: what failed, then the
/// explanation of the decision.
#[must_use]
pub fn finding(r: &CaseResult, cases_file: &str) -> crate::ci::Finding {
    let mut message = format!("case `{}` failed: {}", r.name, r.failures.join("; "));
    for line in explain::render_human(&r.explanation).lines() {
        message.push_str("\n| ");
        message.push_str(line);
    }
    crate::ci::Finding {
        level: crate::ci::Level::Error,
        rule: "test/failed".to_owned(),
        title: format!("policyc test: {}", r.name),
        message,
        location: Some(crate::ci::Location::line(cases_file, r.line)),
        related: Vec::new(),
        properties: serde_json::Map::new(),
    }
}
