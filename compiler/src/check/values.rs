//! Reading values off the raw tree: maps, sequences, known keys, scalars, ids, numbers,
//! money, booleans, word lists, enumerations, duplicate ids — each with its diagnostic.

use super::*;

impl Checker<'_> {
    pub(super) fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
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

    pub(super) fn seq<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        example: &str,
    ) -> Option<&'n [Node]> {
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

    pub(super) fn known_keys(&mut self, entries: &[(Node, Node)], allowed: &[&str], context: &str) {
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

    pub(super) fn scalar<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
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

    pub(super) fn id(&mut self, node: &Node, what: &str) -> Option<String> {
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

    pub(super) fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        self.scalar(node, what).map(str::to_owned)
    }

    pub(super) fn uint(&mut self, node: &Node, what: &str, max: u64) -> Option<u64> {
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

    pub(super) fn money(&mut self, node: &Node, what: &str) -> Option<Micros> {
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

    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
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

    pub(super) fn word_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Span)>> {
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

    pub(super) fn enum_word<E: Copy>(
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

    pub(super) fn version(&mut self, node: &Node) {
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

    pub(super) fn duplicate_ids<'a>(
        &mut self,
        ids: impl Iterator<Item = (&'a str, Span)>,
        what: &str,
    ) {
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
}

/// The first `key: value` of a mapping when it fits on one line, else its key.
pub(super) fn head_span(item: &Node) -> Span {
    match item.as_map().and_then(<[_]>::first) {
        Some((k, v)) if matches!(v.value, Value::Scalar { .. }) => k.span.to(v.span),
        Some((k, _)) => k.span,
        None => item.span,
    }
}

pub(super) fn backticked(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn words<T: Copy>(all: &[T], word: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| word(*v)).collect()
}
