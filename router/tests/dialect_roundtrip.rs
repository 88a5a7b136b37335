//! Property: any OpenAI chat conversation translated to Anthropic Messages and back keeps its
//! roles, its text, and its tool calls' ids, names and arguments — and the Anthropic form in
//! between is one Anthropic accepts (roles alternate after merging, tool results lead their
//! turn, no empty text block).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard::dialect::openai::write::Limit;
use switchyard::dialect::{anthropic, openai};

/// Text with at least one visible character (Anthropic refuses blank text blocks, so the
/// translation leaves those out on purpose).
fn text() -> impl Strategy<Value = String> {
    (
        "[ -~àéü中文😀\n\t\"\\\\]{0,12}",
        "[a-zA-Z0-9é中😀]",
        "[ -~\n\"\\\\]{0,12}",
    )
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn tool_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,24}"
}

fn arguments() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        "[a-z_]{1,8}",
        prop_oneof![
            text().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// One exchange: the user speaks; the assistant answers, perhaps calling tools (whose
/// results follow), perhaps with the user adding text beside the results.
fn exchange() -> impl Strategy<Value = Vec<Value>> {
    (
        text(),
        proptest::option::of(text()),
        proptest::collection::vec((tool_id(), "[a-z_]{1,12}", arguments(), text()), 0..4),
        proptest::option::of(text()),
    )
        .prop_map(|(ask, said, calls, after)| {
            let mut out = vec![json!({"role": "user", "content": ask})];
            let mut seen = std::collections::BTreeSet::new();
            let calls: Vec<_> = calls
                .into_iter()
                .filter(|(id, ..)| seen.insert(id.clone()))
                .collect();
            if said.is_none() && calls.is_empty() {
                out.push(json!({"role": "assistant", "content": "ok"}));
                return out;
            }
            let mut assistant = json!({"role": "assistant", "content": said});
            if !calls.is_empty() {
                assistant["tool_calls"] = calls
                    .iter()
                    .map(|(id, name, args, _)| {
                        json!({"id": id, "type": "function",
                               "function": {"name": name, "arguments": args.to_string()}})
                    })
                    .collect();
            }
            out.push(assistant);
            for (id, _, _, result) in &calls {
                out.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
            }
            if let (Some(after), false) = (after, calls.is_empty()) {
                out.push(json!({"role": "user", "content": after}));
                out.push(json!({"role": "assistant", "content": "noted"}));
            }
            out
        })
}

fn conversation() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(text()),
        proptest::collection::vec(exchange(), 1..5),
        text(),
    )
        .prop_map(|(system, exchanges, last)| {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({"role": "system", "content": s}));
            }
            for e in exchanges {
                messages.extend(e);
            }
            messages.push(json!({"role": "user", "content": last}));
            let names: std::collections::BTreeSet<String> = messages
                .iter()
                .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
                .map(|c| c["function"]["name"].as_str().unwrap().to_owned())
                .collect();
            let mut req = json!({"model": "gpt-4o", "messages": messages});
            if !names.is_empty() {
                req["tools"] = names
                    .iter()
                    .map(|n| json!({"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}))
                    .collect();
            }
            req
        })
}

/// What must survive: each message's role, text, and tool calls (id, name, parsed arguments)
/// or result (id, text).
fn essence(req: &Value) -> Vec<Value> {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let calls: Vec<Value> = m["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let args: Value =
                        serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                    json!([c["id"], c["function"]["name"], args])
                })
                .collect();
            json!({"role": m["role"], "content": m["content"], "calls": calls, "result_of": m["tool_call_id"]})
        })
        .collect()
}

fn translate(req: &Value) -> (Value, Value) {
    let mut body = req.to_string().into_bytes();
    let mut parser = switchyard::dialect::de::Parser::default();
    let ir = openai::read::read(&mut body, &mut parser).unwrap();
    let mut anthropic_body = Vec::new();
    let mut dropped = Vec::new();
    anthropic::write::write(&ir, "claude", &mut anthropic_body, &mut dropped).unwrap();
    let middle: Value = serde_json::from_slice(&anthropic_body).unwrap();
    let ir = anthropic::read::read(&mut anthropic_body, &mut parser).unwrap();
    let mut back = Vec::new();
    openai::write::write(&ir, "gpt-4o", Limit::MaxTokens, &mut back, &mut dropped).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    (middle, serde_json::from_slice(&back).unwrap())
}

/// The Messages API's own rules, checked on the translation.
fn valid_anthropic(m: &Value) {
    let turns = m["messages"].as_array().unwrap();
    assert_eq!(turns.first().unwrap()["role"], "user");
    for pair in turns.windows(2) {
        if pair[0]["role"] == pair[1]["role"] {
            // Consecutive user turns are merged by Anthropic; only plain ones may follow each
            // other here (a tool result must open the turn after the assistant's call).
            assert_eq!(pair[0]["role"], "user");
            assert_ne!(pair[1]["content"][0]["type"], "tool_result", "{m}");
        }
    }
    for (i, t) in turns.iter().enumerate() {
        for b in t["content"].as_array().unwrap() {
            if b["type"] == "text" {
                assert!(!b["text"].as_str().unwrap().trim().is_empty(), "{m}");
            }
        }
        let uses: Vec<&Value> = t["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .collect();
        if !uses.is_empty() {
            let next = &turns[i + 1]["content"];
            let results: Vec<&Value> = next
                .as_array()
                .unwrap()
                .iter()
                .take_while(|b| b["type"] == "tool_result")
                .map(|b| &b["tool_use_id"])
                .collect();
            let ids: Vec<&Value> = uses.iter().map(|u| &u["id"]).collect();
            assert_eq!(
                ids, results,
                "each call answered at the start of the next turn: {m}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn openai_to_anthropic_and_back_keeps_roles_text_and_tool_calls(req in conversation()) {
        let (middle, back) = translate(&req);
        valid_anthropic(&middle);
        prop_assert_eq!(essence(&back), essence(&req));
    }
}
