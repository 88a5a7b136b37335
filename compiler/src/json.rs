//! Policies as JSON objects: what the router's admin API accepts and returns.
//!
//! JSON is YAML (1.2), so a JSON policy object compiles as it is; these functions go the
//! other way. [`yaml_to_json`] turns policy text into the object a client would have sent,
//! and [`table_to_json`] rebuilds the policy a table was compiled from (same endpoints,
//! tenants, data classes and rules; comments, descriptions and built-in endpoints' defaults
//! are not in a table, so they are not in the result).

use serde_json::{Map, Value};
use switchyard_table::{Action, Field, Micros, Table};

use crate::source::Sources;
use crate::yaml::{self, Node, Style};

/// A JSON value for a scalar written as `text`: plain integers, decimals that survive the
/// round trip through a JSON number, booleans and null keep their type; everything else is
/// a string. The checker reads scalars by text, so either form compiles the same.
#[must_use]
pub fn scalar(text: &str, plain: bool) -> Value {
    if !plain {
        return Value::String(text.to_owned());
    }
    match text {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" | "~" | "" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = text.parse::<u64>()
        && n.to_string() == text
    {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<i64>()
        && n.to_string() == text
    {
        return Value::from(n);
    }
    if text.contains('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
        && n.to_string() == text
    {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

/// The JSON form of a YAML node.
#[must_use]
pub fn node_to_json(node: &Node) -> Value {
    match &node.value {
        yaml::Value::Null => Value::Null,
        yaml::Value::Scalar { text, style } => scalar(text, *style == Style::Plain),
        yaml::Value::Seq(items) => Value::Array(items.iter().map(node_to_json).collect()),
        yaml::Value::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_scalar().unwrap_or_default().to_owned(),
                        node_to_json(v),
                    )
                })
                .collect(),
        ),
    }
}

/// Parses policy text into its JSON object. Errors are YAML syntax errors, rendered.
pub fn yaml_to_json(name: &str, text: &str) -> Result<Value, String> {
    let mut sources = Sources::new();
    let id = sources.add(name, text);
    let Some(file) = sources.file(id) else {
        return Err("internal error: source not stored".to_owned());
    };
    let (root, diags) = yaml::parse(id, file);
    if !diags.is_empty() {
        return Err(crate::diag::render_human(&sources, &diags));
    }
    Ok(root.as_ref().map_or(Value::Null, node_to_json))
}

fn money(m: Micros) -> Value {
    scalar(&m.to_string(), true)
}

fn put(obj: &mut Map<String, Value>, key: &str, text: &str) {
    if !text.is_empty() {
        obj.insert(key.to_owned(), Value::String(text.to_owned()));
    }
}

/// A condition's source text as a policy value: a list (`[a, b]`) becomes an array.
fn condition(text: &str) -> Value {
    if text.starts_with('[')
        && let Ok(Value::Array(items)) = yaml_to_json("condition", text)
    {
        return Value::Array(items);
    }
    scalar(text, true)
}

/// Rebuilds a policy object from a table.
#[must_use]
pub fn table_to_json(t: &Table<'_>) -> Value {
    let mut endpoints = Vec::new();
    for e in t.endpoints().filter(|e| !e.is_builtin()) {
        let mut o = Map::new();
        o.insert("id".into(), e.id().into());
        o.insert("type".into(), e.kind().to_string().into());
        put(&mut o, "url", e.url());
        o.insert("transport".into(), e.transport().to_string().into());
        // A model whose provider id differs is `{name, upstream}`, as the policy writes it.
        let models: Vec<Value> = e
            .models_with_upstream()
            .map(|(name, id)| {
                if name == id {
                    Value::from(name)
                } else {
                    serde_json::json!({ "name": name, "upstream": id })
                }
            })
            .collect();
        let first = e.models().next();
        if !models.is_empty() {
            o.insert("models".into(), Value::Array(models));
        }
        if let Some(d) = e.default_model()
            && Some(d) != first
        {
            o.insert("default_model".into(), d.into());
        }
        if e.health_check_interval_ms() != 0 {
            o.insert(
                "health_check_interval_ms".into(),
                e.health_check_interval_ms().into(),
            );
        }
        if e.timeout_ms() != 0 {
            o.insert("timeout_ms".into(), e.timeout_ms().into());
        }
        let mut timeouts = Map::new();
        for (key, v) in [
            ("connect_ms", e.connect_timeout_ms()),
            ("ttft_ms", e.ttft_timeout_ms()),
            ("idle_ms", e.idle_timeout_ms()),
            ("total_ms", e.total_timeout_ms()),
        ] {
            if v != 0 {
                timeouts.insert(key.into(), v.into());
            }
        }
        if !timeouts.is_empty() {
            o.insert("timeouts".into(), Value::Object(timeouts));
        }
        let mut check = Map::new();
        if !e.health_check_path().is_empty() {
            check.insert("path".into(), e.health_check_path().into());
        }
        for (key, v) in [
            ("timeout_ms", e.health_check_timeout_ms()),
            ("unhealthy_threshold", u32::from(e.unhealthy_threshold())),
            ("healthy_threshold", u32::from(e.healthy_threshold())),
        ] {
            if v != 0 {
                check.insert(key.into(), v.into());
            }
        }
        if !check.is_empty() {
            o.insert("health_check".into(), Value::Object(check));
        }
        if e.weight() != 1 {
            o.insert("weight".into(), e.weight().into());
        }
        if e.input_per_1k() != Micros(0) || e.output_per_1k() != Micros(0) {
            let mut p = Map::new();
            p.insert("input_per_1k".into(), money(e.input_per_1k()));
            p.insert("output_per_1k".into(), money(e.output_per_1k()));
            o.insert("pricing".into(), Value::Object(p));
        }
        for (key, text) in e.text_settings() {
            put(&mut o, key, text);
        }
        if let Some(api) = e.bedrock_api() {
            o.insert("bedrock_api".into(), api.to_string().into());
        }
        endpoints.push(Value::Object(o));
    }
    let mut tenants = Vec::new();
    for tn in t.tenants() {
        let mut o = Map::new();
        o.insert("id".into(), tn.id().into());
        if let Some(list) = tn.model_allowlist() {
            o.insert(
                "model_allowlist".into(),
                Value::Array(list.map(Value::from).collect()),
            );
        }
        if tn.rate_limit_rpm() != 0 {
            o.insert("rate_limit_rpm".into(), tn.rate_limit_rpm().into());
        }
        if tn.rate_limit_tpm() != 0 {
            o.insert("rate_limit_tpm".into(), tn.rate_limit_tpm().into());
        }
        if tn.daily_token_budget() != 0 {
            o.insert("daily_token_budget".into(), tn.daily_token_budget().into());
        }
        if tn.daily_budget() != Micros(0) {
            o.insert("daily_spend_usd".into(), money(tn.daily_budget()));
        }
        put(&mut o, "audit_bucket", tn.audit_bucket());
        tenants.push(Value::Object(o));
    }
    let mut classes = Vec::new();
    for d in t.data_classes() {
        let mut o = Map::new();
        o.insert("id".into(), d.id().into());
        if d.stays_private() {
            o.insert("stays_private".into(), true.into());
        }
        classes.push(Value::Object(o));
    }
    let mut rules = Vec::new();
    for r in t
        .rules()
        .filter(|r| !r.is_default())
        .chain(std::iter::once(t.default_rule()))
    {
        let target = |o: &mut Map<String, Value>| {
            if r.is_balanced() {
                let set: Vec<Value> = r.route_set().map(|e| Value::from(e.id())).collect();
                o.insert("route_to".into(), Value::Array(set));
            } else if let Some(e) = r.endpoint() {
                o.insert("route_to".into(), e.id().into());
            }
            let fallback: Vec<Value> = r.fallback().map(|e| Value::from(e.id())).collect();
            if !fallback.is_empty() {
                o.insert("fallback".into(), Value::Array(fallback));
            }
            if r.resend_on_reset() {
                o.insert("resend_on_reset".into(), true.into());
            }
        };
        if r.is_default() {
            let mut o = Map::new();
            if r.action() == Action::Deny {
                o.insert("default".into(), "deny".into());
            } else {
                let mut d = Map::new();
                target(&mut d);
                o.insert("default".into(), Value::Object(d));
            }
            rules.push(Value::Object(o));
            continue;
        }
        let mut o = Map::new();
        if !r.name().is_empty() {
            o.insert("name".into(), r.name().into());
        }
        let mut m = Map::new();
        for field in Field::ALL {
            if let Some(text) = r.condition(field) {
                m.insert(field.key().to_owned(), condition(text));
            }
        }
        o.insert("match".into(), Value::Object(m));
        target(&mut o);
        rules.push(Value::Object(o));
    }
    let mut policy = Map::new();
    policy.insert("version".into(), "v1".into());
    policy.insert("endpoints".into(), Value::Array(endpoints));
    if !tenants.is_empty() {
        policy.insert("tenants".into(), Value::Array(tenants));
    }
    if !classes.is_empty() {
        policy.insert("data_classes".into(), Value::Array(classes));
    }
    policy.insert("rules".into(), Value::Array(rules));
    Value::Object(policy)
}
