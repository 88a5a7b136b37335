//! Gemini `generateContent` requests on Vertex AI, written from the intermediate form
//! (`research/dialects.md` §D2). The model goes in the path, not the body. What the field
//! learnt the hard way and this writer does: system prompts go in `systemInstruction`; turns of
//! the same role are merged (roles `user` and `model`); a tool result becomes a
//! `functionResponse` part named after the call it answers (Gemini requires the name, OpenAI
//! results carry only the call's id — looked up in the history, refused when it is not
//! there, never filled in) and the results of one turn are put in the order of its calls
//! (Gemini pairs them by position, not id, and refuses an `id` member); a call's
//! `thoughtSignature` rides in its id (`<id>__thought__<signature>`, as the decoder mints it)
//! and is given back; tool schemas are cut to the OpenAPI subset Vertex takes (local `$ref`s
//! inlined, `additionalProperties` and `$schema` left out).

use std::borrow::Cow;

use serde_json::Value;

use crate::dialect::Refusal;
use crate::dialect::ir::{Block, Image, Message, Request, Role, Thinking, ToolChoice};
use crate::dialect::json::{Obj, sep, string};

/// Separates a tool call's id from the `thoughtSignature` Gemini gave it.
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// Writes `req` as a `generateContent` body. Hints Gemini cannot take are added to `dropped`.
pub fn write(
    req: &Request<'_>,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    let turns = turns(&req.messages)?;
    let mut o = Obj::new(out);
    let system: Vec<&str> = req
        .system
        .iter()
        .map(|s| &**s)
        .filter(|s| !s.trim().is_empty())
        .collect();
    if !system.is_empty() {
        let mut si = Obj::new(o.key("systemInstruction"));
        let parts = si.key("parts");
        parts.push(b'[');
        let mut first = true;
        for text in system {
            sep(parts, &mut first);
            let mut p = Obj::new(parts);
            p.str("text", text);
            p.end();
        }
        parts.push(b']');
        si.end();
    }
    let contents = o.key("contents");
    contents.push(b'[');
    let mut first = true;
    for turn in &turns {
        sep(contents, &mut first);
        let mut c = Obj::new(contents);
        c.str(
            "role",
            match turn.role {
                Role::User => "user",
                Role::Assistant => "model",
            },
        );
        let parts = c.key("parts");
        parts.push(b'[');
        let mut pf = true;
        for part in &turn.parts {
            sep(parts, &mut pf);
            write_part(parts, part)?;
        }
        parts.push(b']');
        c.end();
    }
    contents.push(b']');

    let calls_tools = turns.iter().any(|t| {
        t.parts
            .iter()
            .any(|p| matches!(p, Part::Call { .. } | Part::Response { .. }))
    });
    if !req.tools.is_empty() && (req.tool_choice != Some(ToolChoice::None) || calls_tools) {
        let t = o.key("tools");
        t.extend_from_slice(br#"[{"functionDeclarations":["#);
        let mut first = true;
        for tool in &req.tools {
            sep(t, &mut first);
            let mut d = Obj::new(t);
            d.str("name", tool.name);
            if let Some(desc) = tool.description.filter(|d| !d.is_empty()) {
                d.str("description", desc);
            }
            let schema = schema(&tool.schema).map_err(|why| {
                Refusal::untranslatable("tools", format!("tool `{}`: {why}", tool.name))
            })?;
            if let Some(schema) = schema {
                d.raw("parameters", schema.as_bytes());
            }
            d.end();
        }
        t.extend_from_slice(b"]}]");
        let mode = match req.tool_choice {
            Some(ToolChoice::Auto) => Some(("AUTO", None)),
            Some(ToolChoice::Any) => Some(("ANY", None)),
            Some(ToolChoice::None) => Some(("NONE", None)),
            Some(ToolChoice::Tool(name)) => Some(("ANY", Some(name))),
            None => None,
        };
        if let Some((mode, only)) = mode {
            let mut tc = Obj::new(o.key("toolConfig"));
            let mut fc = Obj::new(tc.key("functionCallingConfig"));
            fc.str("mode", mode);
            if let Some(name) = only {
                let names = fc.key("allowedFunctionNames");
                names.push(b'[');
                string(names, name);
                names.push(b']');
            }
            fc.end();
            tc.end();
        }
        if req.parallel_tool_calls == Some(false) {
            dropped.push(Cow::Borrowed("parallel_tool_calls"));
        }
    }

    let mut config = Vec::new();
    {
        let mut g = Obj::new(&mut config);
        if let Some(m) = req.max_tokens {
            g.u64("maxOutputTokens", m.max(1));
        }
        if let Some(t) = req.temperature {
            g.f64("temperature", t.clamp(0.0, 2.0));
        }
        if let Some(p) = req.top_p {
            g.f64("topP", p);
        }
        if let Some(k) = req.top_k {
            g.u64("topK", k);
        }
        let stops: Vec<&str> = req.stop.iter().copied().filter(|s| !s.is_empty()).collect();
        if !stops.is_empty() {
            let s = g.key("stopSequences");
            s.push(b'[');
            let mut first = true;
            for stop in stops.iter().take(5) {
                sep(s, &mut first);
                string(s, stop);
            }
            s.push(b']');
            if stops.len() > 5 {
                return Err(Refusal::untranslatable(
                    "stop",
                    "Gemini takes at most 5 stop sequences",
                ));
            }
        }
        if let Some(schema_text) = &req.output_schema {
            g.str("responseMimeType", "application/json");
            if let Some(schema) = schema(schema_text).map_err(|why| {
                Refusal::untranslatable("response_format", format!("the response schema: {why}"))
            })? {
                g.raw("responseSchema", schema.as_bytes());
            }
        }
        match req.thinking {
            Some(Thinking::Enabled { budget_tokens }) => {
                let mut t = Obj::new(g.key("thinkingConfig"));
                t.u64("thinkingBudget", budget_tokens)
                    .bool("includeThoughts", true);
                t.end();
            }
            Some(Thinking::Adaptive) => {
                g.raw(
                    "thinkingConfig",
                    br#"{"thinkingBudget":-1,"includeThoughts":true}"#,
                );
            }
            Some(Thinking::Disabled) => {
                g.raw("thinkingConfig", br#"{"thinkingBudget":0}"#);
            }
            None => {}
        }
        g.end();
    }
    if config.len() > 2 {
        o.raw("generationConfig", &config);
    }
    if req.user.is_some() {
        dropped.push(Cow::Borrowed("user"));
    }
    o.end();
    Ok(())
}

/// One part of a Gemini turn.
enum Part<'r, 'a> {
    Text(&'r str),
    Image(&'r Image<'a>),
    Call {
        id: &'r str,
        name: &'a str,
        args: &'r str,
        signature: Option<&'r str>,
    },
    Response {
        /// The id of the call it answers.
        id: &'r str,
        name: &'a str,
        content: &'r [Block<'a>],
        is_error: bool,
    },
}

struct Turn<'r, 'a> {
    role: Role,
    parts: Vec<Part<'r, 'a>>,
}

/// The turns as Gemini takes them: same-role turns merged, blank text and thinking left out
/// (Gemini's thoughts are not sent back), tool results named and put in call order.
fn turns<'r, 'a>(messages: &'r [Message<'a>]) -> Result<Vec<Turn<'r, 'a>>, Refusal> {
    // Every call of the history: its id and name.
    let mut calls: Vec<(&'r str, &'a str)> = Vec::new();
    let mut out: Vec<Turn<'r, 'a>> = Vec::new();
    for m in messages {
        let mut parts = Vec::new();
        for b in &m.content {
            match b {
                Block::Text(t) if !t.trim().is_empty() => parts.push(Part::Text(t)),
                Block::Image(i) => parts.push(Part::Image(i)),
                Block::ToolUse { id, name, input } => {
                    let (bare, signature) = split_id(id);
                    calls.push((bare, name));
                    parts.push(Part::Call {
                        id: bare,
                        name,
                        args: input,
                        signature,
                    });
                }
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let (bare, _) = split_id(tool_use_id);
                    let Some(&(_, name)) = calls.iter().rev().find(|(id, _)| *id == bare) else {
                        return Err(Refusal::untranslatable(
                            "messages",
                            format!(
                                "the tool result for call `{tool_use_id}` answers no tool call earlier in the conversation; Gemini needs the called function's name"
                            ),
                        ));
                    };
                    parts.push(Part::Response {
                        id: bare,
                        name,
                        content,
                        is_error: *is_error,
                    });
                }
                _ => {}
            }
        }
        match out.last_mut() {
            Some(last) if last.role == m.role => last.parts.extend(parts),
            _ => out.push(Turn {
                role: m.role,
                parts,
            }),
        }
    }
    out.retain(|t| !t.parts.is_empty());
    // Results in the order of the calls they answer (the model turn before).
    for i in 1..out.len() {
        let order: Vec<&str> = match out.get(i - 1) {
            Some(prev) if prev.role == Role::Assistant => prev
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::Call { id, .. } => Some(*id),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        if let Some(turn) = out.get_mut(i) {
            let rank = |p: &Part<'_, '_>| match p {
                Part::Response { id, .. } => {
                    order.iter().position(|c| c == id).unwrap_or(usize::MAX - 1)
                }
                _ => usize::MAX,
            };
            turn.parts.sort_by_key(rank);
        }
    }
    Ok(out)
}

/// A call id and the thought signature carried in it.
fn split_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(THOUGHT_SEPARATOR) {
        Some((bare, sig)) if !sig.is_empty() => (bare, Some(sig)),
        _ => (id, None),
    }
}

fn write_part(out: &mut Vec<u8>, part: &Part<'_, '_>) -> Result<(), Refusal> {
    let mut p = Obj::new(out);
    match part {
        Part::Text(t) => {
            p.str("text", t);
        }
        Part::Image(image) => write_image(&mut p, image)?,
        Part::Call {
            name,
            args,
            signature,
            ..
        } => {
            let mut c = Obj::new(p.key("functionCall"));
            c.str("name", name);
            c.raw(
                "args",
                if args.trim().is_empty() {
                    b"{}"
                } else {
                    args.as_bytes()
                },
            );
            c.end();
            if let Some(sig) = signature {
                p.str("thoughtSignature", sig);
            }
        }
        Part::Response {
            name,
            content,
            is_error,
            ..
        } => {
            let mut text = String::new();
            for b in *content {
                match b {
                    Block::Text(t) => text.push_str(t),
                    _ => {
                        return Err(Refusal::untranslatable(
                            "messages",
                            "a tool result for Gemini may hold text only",
                        ));
                    }
                }
            }
            let mut r = Obj::new(p.key("functionResponse"));
            r.str("name", name);
            let mut v = Obj::new(r.key("response"));
            // A result that is itself a JSON object goes as it is.
            match (is_error, crate::dialect::json::is_object(&text)) {
                (false, true) => {
                    v.raw("output", text.as_bytes());
                }
                (false, false) => {
                    v.str("output", &text);
                }
                (true, _) => {
                    v.str("error", &text);
                }
            }
            v.end();
            r.end();
        }
    }
    p.end();
    Ok(())
}

fn write_image(p: &mut Obj<'_>, image: &Image<'_>) -> Result<(), Refusal> {
    match image {
        Image::Base64 { media_type, data } => {
            let mut i = Obj::new(p.key("inlineData"));
            i.str("mimeType", media_type).str("data", data);
            i.end();
        }
        Image::Url(url) if url.starts_with("gs://") || url.starts_with("https://") => {
            let lower = url.to_ascii_lowercase();
            let mime = [
                (".png", "image/png"),
                (".gif", "image/gif"),
                (".webp", "image/webp"),
                (".jpg", "image/jpeg"),
                (".jpeg", "image/jpeg"),
            ]
            .iter()
            .find(|(ext, _)| lower.split(['?', '#']).next().unwrap_or("").ends_with(ext))
            .map_or("image/jpeg", |(_, m)| m);
            let mut f = Obj::new(p.key("fileData"));
            f.str("mimeType", mime).str("fileUri", url);
            f.end();
        }
        Image::Url(_) => {
            return Err(Refusal::untranslatable(
                "messages",
                "Gemini takes images inline (base64) or by `gs://` or `https://` URI",
            ));
        }
    }
    Ok(())
}

/// Schema keys Vertex's OpenAPI subset takes.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "default",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "properties",
    "propertyOrdering",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "minimum",
    "maximum",
];

/// A JSON schema cut to Vertex's subset, as JSON text; `None` for a schema of no
/// parameters (`{}` or an object without properties).
fn schema(text: &str) -> Result<Option<String>, String> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| format!("the schema is not JSON ({e})"))?;
    let defs = root
        .get("$defs")
        .or_else(|| root.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    let cut = clean(&root, &defs, 0)?;
    let empty = cut.as_object().is_none_or(|o| {
        o.get("properties")
            .and_then(Value::as_object)
            .is_none_or(serde_json::Map::is_empty)
            && o.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "object")
    });
    Ok((!empty).then(|| cut.to_string()))
}

fn clean(v: &Value, defs: &Value, depth: usize) -> Result<Value, String> {
    if depth > 32 {
        return Err("the schema nests more than 32 levels (a recursive `$ref`?)".into());
    }
    let Some(o) = v.as_object() else {
        return Ok(v.clone());
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .ok_or_else(|| format!("`$ref: {r}` is not a local definition"))?;
        let target = defs
            .get(name)
            .ok_or_else(|| format!("`$ref: {r}` names no definition"))?;
        return clean(target, defs, depth + 1);
    }
    let mut out = serde_json::Map::new();
    for (k, val) in o {
        if !SCHEMA_KEYS.contains(&k.as_str()) {
            continue;
        }
        let val = match k.as_str() {
            "properties" => Value::Object(
                val.as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, s)| Ok((name.clone(), clean(s, defs, depth + 1)?)))
                            .collect::<Result<serde_json::Map<_, _>, String>>()
                    })
                    .transpose()?
                    .unwrap_or_default(),
            ),
            "items" => clean(val, defs, depth + 1)?,
            "anyOf" => Value::Array(
                val.as_array()
                    .map(|list| {
                        list.iter()
                            .map(|s| clean(s, defs, depth + 1))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?
                    .unwrap_or_default(),
            ),
            // `["string", "null"]`: the type, and nullable.
            "type" if val.is_array() => {
                let types: Vec<&str> = val
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if types.contains(&"null") {
                    out.insert("nullable".into(), Value::Bool(true));
                }
                match types.iter().find(|t| **t != "null") {
                    Some(t) => Value::String((*t).to_owned()),
                    None => continue,
                }
            }
            _ => val.clone(),
        };
        out.insert(k.clone(), val);
    }
    Ok(Value::Object(out))
}
