//! Token tests for the condition grammar, from `testdata/grammar/conditions.txt`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use policyc::condition::{self, Ast, Item, Lit, LitKind};

fn lit(l: &Lit) -> String {
    let kind = match l.kind {
        LitKind::Number => "number",
        LitKind::Word => "word",
        LitKind::Quoted => "quoted",
    };
    format!("{kind} {}", l.text)
}

fn canonical(input: &str) -> String {
    match condition::parse(input) {
        Err(e) => format!("error@{}", e.start),
        Ok(Ast::Value(l)) => format!("value({})", lit(&l)),
        Ok(Ast::Glob(l)) => format!("glob({})", l.text),
        Ok(Ast::Compare { op, value, .. }) => format!("cmp({} {})", op.as_str(), lit(&value)),
        Ok(Ast::Range { lo, hi }) => format!("range({}..{})", lo.text, hi.text),
        Ok(Ast::Set { negated, items, .. }) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Item::Value(l) => format!("value({})", lit(l)),
                    Item::Glob(l) => format!("glob({})", l.text),
                })
                .collect();
            format!(
                "{}[{}]",
                if negated { "not in" } else { "in" },
                items.join(", ")
            )
        }
    }
}

#[test]
fn condition_tokens() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/grammar/conditions.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (input, expected) = line
            .split_once("=>")
            .unwrap_or_else(|| panic!("line {}: no `=>`", n + 1));
        let (input, expected) = (input.trim_end(), expected.trim());
        count += 1;
        let got = canonical(input);
        if got != expected {
            failures.push(format!(
                "line {}: `{input}`: expected {expected}, got {got}",
                n + 1
            ));
        }
    }
    assert!(count > 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
