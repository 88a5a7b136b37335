//! `policyc dump`: a table as readable text — header, declarations, rules with their
//! conditions, and each field's classifier.

use std::fmt::Write as _;

use switchyard_table::{Action, Field, Table};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Renders the whole table.
#[must_use]
pub fn dump(t: &Table<'_>) -> String {
    let mut o = String::new();
    let (major, minor) = t.format_version();
    let _ = writeln!(o, "switchyard decision table, format {major}.{minor}");
    let _ = writeln!(o, "  revision       {}", t.revision());
    let _ = writeln!(o, "  source sha256  {}", hex(t.source_digest()));
    let _ = writeln!(o, "  size           {} bytes", t.bytes().len());
    let reads: Vec<&str> = Field::ALL
        .into_iter()
        .filter(|f| t.reads(*f))
        .map(Field::key)
        .collect();
    let _ = writeln!(
        o,
        "  rules          {} (+ default), {} word(s) per column",
        t.rule_count(),
        t.words_per_column()
    );
    let _ = writeln!(
        o,
        "  reads          {}",
        if reads.is_empty() {
            "nothing".to_owned()
        } else {
            reads.join(", ")
        }
    );

    let _ = writeln!(o, "\nendpoints ({}):", t.endpoint_count());
    for e in t.endpoints() {
        let models: Vec<String> = e
            .models_with_upstream()
            .map(|(name, id)| {
                if name == id {
                    name.to_owned()
                } else {
                    format!("{name}->{id}")
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "  [{}] {}  type={} transport={} url={}{}",
            e.index(),
            e.id(),
            e.kind(),
            e.transport(),
            or_dash(e.url()),
            if e.is_builtin() { "  (built-in)" } else { "" }
        );
        let _ = writeln!(
            o,
            "      models=[{}] default_model={} price/1k in={} out={} health_check_ms={} timeout_ms={}",
            models.join(", "),
            e.default_model().unwrap_or("-"),
            e.input_per_1k(),
            e.output_per_1k(),
            e.health_check_interval_ms(),
            e.timeout_ms()
        );
        let _ = writeln!(
            o,
            "      timeouts connect={} ttft={} idle={} total={} health_check path={} timeout={} unhealthy={} healthy={} weight={}",
            e.connect_timeout_ms(),
            e.ttft_timeout_ms(),
            e.idle_timeout_ms(),
            e.total_timeout_ms(),
            or_dash(e.health_check_path()),
            e.health_check_timeout_ms(),
            e.unhealthy_threshold(),
            e.healthy_threshold(),
            e.weight()
        );
        let mut extras: Vec<String> = e
            .text_settings()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(api) = e.bedrock_api() {
            extras.push(format!("bedrock_api={api}"));
        }
        if !extras.is_empty() {
            let _ = writeln!(o, "      {}", extras.join(" "));
        }
    }

    let _ = writeln!(o, "\ntenants ({}):", t.tenant_count());
    for tn in t.tenants() {
        let allow = tn.model_allowlist().map_or("any".to_owned(), |l| {
            format!("[{}]", l.collect::<Vec<_>>().join(", "))
        });
        let _ = writeln!(
            o,
            "  {}  models={allow} rpm={} tpm={} daily_token_budget={} daily_spend_usd={} audit_bucket={}",
            tn.id(),
            tn.rate_limit_rpm(),
            tn.rate_limit_tpm(),
            tn.daily_token_budget(),
            tn.daily_budget(),
            or_dash(tn.audit_bucket())
        );
    }

    let _ = writeln!(o, "\ndata classes ({}):", t.data_class_count());
    for d in t.data_classes() {
        let _ = writeln!(
            o,
            "  {}{}",
            d.id(),
            if d.stays_private() {
                "  stays_private"
            } else {
                ""
            }
        );
    }

    let _ = writeln!(o, "\nrules:");
    for r in t.rules() {
        let (line, col) = r.source_position();
        let title = if r.is_default() {
            format!("default (index {})", r.index())
        } else if r.name().is_empty() {
            format!("[{}]", r.index())
        } else {
            format!("[{}] {}", r.index(), r.name())
        };
        let target = match r.action() {
            Action::Deny => "deny".to_owned(),
            Action::Route => {
                let set: Vec<&str> = r.route_set().map(|e| e.id()).collect();
                let mut s = if r.is_balanced() {
                    format!("route_to [{}] (balanced)", set.join(", "))
                } else {
                    format!("route_to {}", set.first().copied().unwrap_or("?"))
                };
                let fb: Vec<&str> = r.fallback().map(|e| e.id()).collect();
                if !fb.is_empty() {
                    let _ = write!(s, " fallback [{}]", fb.join(", "));
                }
                if r.resend_on_reset() {
                    s.push_str(" resend_on_reset");
                }
                s
            }
        };
        let _ = writeln!(o, "  {title}  (line {line}:{col})  → {target}");
        for f in Field::ALL {
            if let Some(c) = r.condition(f) {
                let _ = writeln!(o, "      {}: {c}", f.key());
            }
        }
    }

    let _ = writeln!(o, "\nclassifier:");
    for f in Field::ALL {
        let v = t.field(f);
        if !v.is_used() {
            let _ = writeln!(o, "  {}: not read", f.key());
            continue;
        }
        let _ = writeln!(
            o,
            "  {}: {} classes, {} distinct columns",
            f.key(),
            v.class_count(),
            v.column_count()
        );
        if f.kind().is_string() {
            let mut lits: Vec<_> = v.literals().collect();
            lits.sort_by_key(|l| l.class);
            for l in lits {
                let rules: Vec<String> =
                    v.rules_accepting(l.class).map(|r| r.to_string()).collect();
                let _ = writeln!(o, "      = {:<24} rules [{}]", l.text, rules.join(","));
            }
            let other: Vec<String> = v
                .rules_accepting(switchyard_table::OTHER)
                .map(|r| r.to_string())
                .collect();
            let _ = writeln!(
                o,
                "      {:<26} rules [{}]",
                "(any other value)",
                other.join(",")
            );
            for g in v.globs() {
                let rules: Vec<String> =
                    v.rules_accepting(g.class).map(|r| r.to_string()).collect();
                let _ = writeln!(
                    o,
                    "      {:<26} rules [{}]",
                    format!("{}*", g.prefix),
                    rules.join(",")
                );
            }
        } else {
            let bounds: Vec<u64> = v.bounds().collect();
            let mut lo = 0u64;
            for (k, hi) in bounds.iter().copied().map(Some).chain([None]).enumerate() {
                let class = u32::try_from(k + 1).unwrap_or(u32::MAX);
                let rules: Vec<String> = v.rules_accepting(class).map(|r| r.to_string()).collect();
                let show = |x: u64| {
                    if f == Field::CostCapPer1k {
                        switchyard_table::Micros(x).to_string()
                    } else {
                        x.to_string()
                    }
                };
                let range = match hi {
                    Some(h) => format!("{}..{}", show(lo), show(h - 1)),
                    None => format!("{}..", show(lo)),
                };
                let _ = writeln!(o, "      {range:<26} rules [{}]", rules.join(","));
                lo = hi.unwrap_or(lo);
            }
        }
        let absent: Vec<String> = v.rules_accepting(0).map(|r| r.to_string()).collect();
        let _ = writeln!(o, "      {:<26} rules [{}]", "(absent)", absent.join(","));
    }
    o
}
