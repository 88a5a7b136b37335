//! The raw YAML tree: what the file says, with a span on every node, before any meaning
//! is given to it.
//!
//! Built from `saphyr-parser` events (see ARCHITECTURE.md for why that reader). Scalars
//! keep their source text and style and are not typed here: the checker decides what a
//! scalar means from the field it sits in, so `0.002` is never a float and `400` in a
//! tenant position stays the string `400`. Aliases, tags and multiple documents are
//! refused: a reviewed policy should say everything explicitly.

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, SourceFile, Span};

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Block,
}

/// A YAML node with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A node's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing at all.
    Null,
    Scalar {
        text: String,
        style: Style,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What kind of node this is, for "expected X, found Y" messages.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The scalar's text, if this is a scalar.
    #[must_use]
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The mapping's entries, if this is a mapping.
    #[must_use]
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// Maps a byte offset inside the scalar's *value* to a span in the file, when the
    /// value appears verbatim in the source (plain or quoted without escapes or line
    /// folding). Otherwise the whole node is the best location there is.
    #[must_use]
    pub fn value_span(&self, file: &SourceFile, start: usize, end: usize) -> Span {
        let Value::Scalar { text, style } = &self.value else {
            return self.span;
        };
        let skip = match style {
            Style::Plain => 0,
            Style::SingleQuoted | Style::DoubleQuoted => 1,
            Style::Block => return self.span,
        };
        let base = self.span.start as usize + skip;
        let verbatim = file.text.get(base..base + text.len()) == Some(text.as_str());
        if verbatim && end <= text.len() {
            Span::new(self.span.file, base + start, base + end.max(start))
        } else {
            self.span
        }
    }
}

enum Frame {
    Seq(Vec<Node>, Span),
    Map(Vec<(Node, Node)>, Option<Node>, Span),
}

/// Deepest nesting of sequences and mappings accepted. A policy needs about seven levels;
/// the cap keeps every later stage (which walks the tree recursively, as does dropping it)
/// far from the stack limit, whatever a file or an admin request holds.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document. Returns the root (`None` for an empty file) and every
/// diagnostic found; a syntax error stops parsing and yields no root.
pub fn parse(file_id: FileId, file: &SourceFile) -> (Option<Node>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let ascii = file.text.is_ascii();
    let to_byte = |m: &saphyr_parser::Marker| -> usize {
        if ascii {
            m.index()
        } else {
            file.offset_of(m.line(), m.col())
        }
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut parser = Parser::new_from_str(&file.text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(pair)) => pair,
            Some(Err(e)) => {
                diags.push(scan_error(file_id, file, &e, to_byte(e.marker())));
                return (None, diags);
            }
        };
        let span = Span::new(file_id, to_byte(&span.start), to_byte(&span.end));
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                continue;
            }
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    diags.push(
                        Diagnostic::error(
                            Code::UnsupportedYaml,
                            "a policy file holds exactly one YAML document",
                        )
                        .label(span, "second document starts here")
                        .help("remove the `---` separator or split the file"),
                    );
                    return (root, diags);
                }
                continue;
            }
            Event::Alias(_) => {
                diags.push(
                    Diagnostic::error(Code::UnsupportedYaml, "YAML aliases are not supported")
                        .label(span, "alias used here")
                        .help("write the value out in full: policies are reviewed as written"),
                );
                Node {
                    value: Value::Null,
                    span,
                }
            }
            Event::Scalar(text, style, _, tag) => {
                if let Some(tag) = tag {
                    diags.push(
                        Diagnostic::error(
                            Code::UnsupportedYaml,
                            format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix),
                        )
                        .label(span, "tagged here")
                        .help("remove the tag; policyc types every value from where it is used"),
                    );
                }
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let is_null = style == Style::Plain
                    && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                let value = if is_null {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        style,
                    }
                };
                Node { value, span }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                diags.push(
                    Diagnostic::error(
                        Code::UnsupportedYaml,
                        format!("the document nests deeper than {MAX_DEPTH} levels"),
                    )
                    .label(span, "too deep here")
                    .help("a policy needs only a few levels; flatten this value"),
                );
                return (None, diags);
            }
            Event::SequenceStart(_, tag) | Event::MappingStart(_, tag) if tag.is_some() => {
                diags.push(
                    Diagnostic::error(Code::UnsupportedYaml, "YAML tags are not supported")
                        .label(span, "tagged here"),
                );
                stack.push(Frame::Seq(Vec::new(), span));
                continue;
            }
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq(Vec::new(), span));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(Vec::new(), None, span));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(items, start)) => {
                    // An empty collection ends where its closing token does.
                    let span = items.last().map_or(start.to(span), |n| start.to(n.span));
                    Node {
                        value: Value::Seq(items),
                        span,
                    }
                }
                Some(Frame::Map(entries, _, start)) => {
                    let span = entries
                        .last()
                        .map_or(start.to(span), |(k, v)| start.to(k.span).to(v.span));
                    Node {
                        value: Value::Map(entries),
                        span,
                    }
                }
                None => continue,
            },
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                None => {
                    if !matches!(node.value, Value::Scalar { .. }) {
                        diags.push(
                            Diagnostic::error(
                                Code::WrongType,
                                format!(
                                    "mapping keys must be plain words, found {}",
                                    node.kind_name()
                                ),
                            )
                            .label(node.span, "this key"),
                        );
                    }
                    *pending = Some(node);
                }
                Some(key) => {
                    let dup = entries
                        .iter()
                        .find(|(k, _)| k.as_scalar().is_some() && k.as_scalar() == key.as_scalar());
                    if let Some((first, _)) = dup {
                        diags.push(
                            Diagnostic::error(
                                Code::DuplicateKey,
                                format!("duplicate key `{}`", key.as_scalar().unwrap_or_default()),
                            )
                            .label(key.span, "repeated here")
                            .secondary(first.span, "first defined here")
                            .help("a key may appear once per mapping; the first one is used"),
                        );
                    } else {
                        // A `key:` with no value: point "null" diagnostics at the key.
                        let node = if node.value == Value::Null && node.span.start == node.span.end
                        {
                            Node {
                                value: Value::Null,
                                span: key.span,
                            }
                        } else {
                            node
                        };
                        entries.push((key, node));
                    }
                }
            },
        }
    }
    (root, diags)
}

fn scan_error(file_id: FileId, file: &SourceFile, e: &ScanError, offset: usize) -> Diagnostic {
    let end = file
        .text
        .get(offset..)
        .and_then(|s| s.chars().next())
        .map_or(offset, |c| offset + c.len_utf8());
    let info = e.info();
    let mut d = Diagnostic::error(Code::YamlSyntax, format!("invalid YAML: {info}"))
        .label(Span::new(file_id, offset, end), "here");
    if info.contains("mapping values are not allowed") {
        d = d.help("a condition with `: ` inside must be quoted, e.g. `model: \"a: b\"`");
    } else if info.contains("tab") {
        d = d.help("YAML indents with spaces, not tabs");
    } else {
        d = d.help("check the indentation, quoting and brackets up to this point");
    }
    d
}
