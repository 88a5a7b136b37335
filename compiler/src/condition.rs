//! Condition strings (`<400`, `in [a, b]`, `acme-*`, …) parsed by the pest grammar in
//! `grammar/condition.pest` into a small untyped AST with byte offsets, so the checker
//! can point at the exact character that is wrong.
//!
//! No input can make this slow: conditions longer than [`MAX_LEN`] are refused before
//! parsing, the grammar is not recursive, and pest's call limit bounds the work anyway.

use std::num::NonZeroUsize;

use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../grammar/condition.pest"]
struct ConditionParser;

/// Longest condition string accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// pest call limit: far above what a [`MAX_LEN`] input needs with this linear grammar.
const CALL_LIMIT: usize = 200_000;

/// A value token. `text` is unquoted; `start..end` cover the token in the condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lit {
    pub text: String,
    pub kind: LitKind,
    pub start: usize,
    pub end: usize,
}

/// How a value token was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LitKind {
    Number,
    Word,
    Quoted,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// The operator as written.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether the operator orders values (only numbers have an order).
    #[must_use]
    pub fn is_ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// A member of a set or list: a value or a glob (`prefix` in `Lit::text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Value(Lit),
    Glob(Lit),
}

/// A parsed condition, untyped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ast {
    /// A plain value: equality.
    Value(Lit),
    /// `prefix*`.
    Glob(Lit),
    /// `op value`; `op_start..op_end` cover the operator.
    Compare {
        op: Op,
        op_start: usize,
        op_end: usize,
        value: Lit,
    },
    /// `lo..hi`, both ends included.
    Range { lo: Lit, hi: Lit },
    /// `in [..]` or `not in [..]`; `kw_start..kw_end` cover the keywords.
    Set {
        negated: bool,
        items: Vec<Item>,
        kw_start: usize,
        kw_end: usize,
    },
}

/// A syntax error at `start..end` (bytes in the condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub start: usize,
    pub end: usize,
    pub message: String,
    pub help: String,
}

/// Parses one condition string.
pub fn parse(input: &str) -> Result<Ast, SyntaxError> {
    if input.len() > MAX_LEN {
        return Err(SyntaxError {
            start: 0,
            end: input.len(),
            message: format!(
                "condition is {} bytes long; the limit is {MAX_LEN}",
                input.len()
            ),
            help: "split a long set into several rules, or use a glob".into(),
        });
    }
    if input.trim().is_empty() {
        return Err(SyntaxError {
            start: 0,
            end: input.len(),
            message: "empty condition".into(),
            help: "write a value, a comparison such as `<400`, a range `100..400` or a set `in [a, b]`".into(),
        });
    }
    pest::set_call_limit(NonZeroUsize::new(CALL_LIMIT));
    let mut pairs =
        ConditionParser::parse(Rule::condition, input).map_err(|e| syntax_error(input, &e))?;
    let body = pairs
        .next()
        .and_then(|c| c.into_inner().next())
        .ok_or_else(|| SyntaxError {
            start: 0,
            end: input.len(),
            message: "empty condition".into(),
            help: String::new(),
        })?;
    Ok(build(body))
}

fn lit(pair: &Pair<'_, Rule>) -> Lit {
    let span = pair.as_span();
    let raw = pair.as_str();
    let (text, kind) = match pair.as_rule() {
        Rule::number | Rule::bound => (raw.to_owned(), LitKind::Number),
        Rule::quoted => (
            raw.get(1..raw.len().saturating_sub(1))
                .unwrap_or_default()
                .to_owned(),
            LitKind::Quoted,
        ),
        _ => (raw.to_owned(), LitKind::Word),
    };
    Lit {
        text,
        kind,
        start: span.start(),
        end: span.end(),
    }
}

fn glob_lit(pair: &Pair<'_, Rule>) -> Lit {
    let span = pair.as_span();
    let raw = pair.as_str();
    Lit {
        text: raw.strip_suffix('*').unwrap_or(raw).to_owned(),
        kind: LitKind::Word,
        start: span.start(),
        end: span.end(),
    }
}

fn item(pair: &Pair<'_, Rule>) -> Item {
    if pair.as_rule() == Rule::glob {
        Item::Glob(glob_lit(pair))
    } else {
        Item::Value(lit(pair))
    }
}

fn build(body: Pair<'_, Rule>) -> Ast {
    let span = body.as_span();
    match body.as_rule() {
        Rule::glob => Ast::Glob(glob_lit(&body)),
        Rule::comparison => {
            let mut inner = body.into_inner();
            let op_pair = inner.next();
            let value = inner
                .next()
                .map(|p| lit(&p))
                .unwrap_or_else(|| empty_lit(span.end()));
            let (op, op_start, op_end) =
                op_pair.map_or((Op::Eq, span.start(), span.start()), |p| {
                    let op = match p.as_str() {
                        "<" => Op::Lt,
                        "<=" => Op::Le,
                        ">" => Op::Gt,
                        ">=" => Op::Ge,
                        "!=" => Op::Ne,
                        _ => Op::Eq,
                    };
                    (op, p.as_span().start(), p.as_span().end())
                });
            Ast::Compare {
                op,
                op_start,
                op_end,
                value,
            }
        }
        Rule::range => {
            let inner = body.into_inner();
            let mut bounds = inner.filter(|p| p.as_rule() == Rule::bound);
            let lo = bounds
                .next()
                .map(|p| lit(&p))
                .unwrap_or_else(|| empty_lit(span.start()));
            let hi = bounds
                .next()
                .map(|p| lit(&p))
                .unwrap_or_else(|| empty_lit(span.end()));
            Ast::Range { lo, hi }
        }
        Rule::in_set | Rule::not_in => {
            let negated = body.as_rule() == Rule::not_in;
            let mut kw_end = span.start();
            let mut items = Vec::new();
            for p in body.into_inner() {
                match p.as_rule() {
                    Rule::kw_not | Rule::kw_in => kw_end = p.as_span().end(),
                    Rule::set => items.extend(
                        p.into_inner()
                            .filter(|i| {
                                matches!(
                                    i.as_rule(),
                                    Rule::glob | Rule::number | Rule::quoted | Rule::word
                                )
                            })
                            .map(|i| item(&i)),
                    ),
                    _ => {}
                }
            }
            Ast::Set {
                negated,
                items,
                kw_start: span.start(),
                kw_end,
            }
        }
        _ => Ast::Value(lit(&body)),
    }
}

fn empty_lit(at: usize) -> Lit {
    Lit {
        text: String::new(),
        kind: LitKind::Word,
        start: at,
        end: at,
    }
}

fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::set | Rule::open => "`[`",
        Rule::comma => "`,`",
        Rule::close => "`]`",
        Rule::dots => "`..`",
        Rule::glob => "a glob such as `acme-*`",
        Rule::number | Rule::bound => "a number",
        Rule::quoted | Rule::word => "a value",
        Rule::op => "a comparator (`<`, `<=`, `>`, `>=`, `==`, `!=`)",
        Rule::kw_in => "`in`",
        Rule::EOI => "the end of the condition",
        Rule::range => "a range such as `100..400`",
        _ => "a condition",
    }
}

fn syntax_error(input: &str, e: &pest::error::Error<Rule>) -> SyntaxError {
    let start = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    }
    .min(input.len());
    let found = input.get(start..).and_then(|s| s.chars().next());
    let end = found.map_or(start, |c| start + c.len_utf8());
    let mut expected: Vec<&str> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().map(|r| describe(*r)).collect()
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.dedup();
    expected.sort_unstable();
    expected.dedup();
    let expected = match expected.as_slice() {
        [] => String::new(),
        [one] => format!(", expected {one}"),
        [init @ .., last] => format!(", expected {} or {last}", init.join(", ")),
    };
    let found_text = match found {
        Some(c) => format!("unexpected `{c}`"),
        None => "unexpected end of condition".to_owned(),
    };
    let help = match found {
        None if expected.contains("`]`") => "close the set with `]`: `in [a, b]`",
        Some('=') => "use `==` for equality, or write the value alone",
        Some('*') => "a glob is a literal prefix followed by one trailing `*`, e.g. `acme-*`",
        Some('.') => "ranges are written `100..400` (both ends included)",
        Some('[' | ']' | ',') => "sets are written `in [a, b]` or `not in [a, b]`",
        Some(_) if input[..start].contains('*') => {
            "a glob is a literal prefix followed by one trailing `*`, e.g. `acme-*`"
        }
        Some(c) if c.is_whitespace() || input[..start].trim_end().len() < start => {
            "a value cannot contain spaces unless quoted inside a set: `in [\"a b\"]`"
        }
        _ => {
            "conditions are a value, `<400`, `>= 0.002`, `!= x`, `100..400`, `in [a, b]`, `not in [a]` or `prefix-*`"
        }
    };
    SyntaxError {
        start,
        end,
        message: format!("invalid condition: {found_text}{expected}"),
        help: help.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, kind: LitKind, start: usize) -> Lit {
        Lit {
            text: text.into(),
            kind,
            start,
            end: start + text.len() + if kind == LitKind::Quoted { 2 } else { 0 },
        }
    }

    #[test]
    fn comparisons() {
        assert_eq!(
            parse("<400"),
            Ok(Ast::Compare {
                op: Op::Lt,
                op_start: 0,
                op_end: 1,
                value: value("400", LitKind::Number, 1)
            })
        );
        assert_eq!(
            parse(">= 0.002"),
            Ok(Ast::Compare {
                op: Op::Ge,
                op_start: 0,
                op_end: 2,
                value: value("0.002", LitKind::Number, 3)
            })
        );
        assert_eq!(
            parse("!= general"),
            Ok(Ast::Compare {
                op: Op::Ne,
                op_start: 0,
                op_end: 2,
                value: value("general", LitKind::Word, 3)
            })
        );
    }

    #[test]
    fn ranges_sets_globs_values() {
        assert_eq!(
            parse("100..400"),
            Ok(Ast::Range {
                lo: value("100", LitKind::Number, 0),
                hi: value("400", LitKind::Number, 5)
            })
        );
        assert_eq!(
            parse("in [a, b-*]"),
            Ok(Ast::Set {
                negated: false,
                items: vec![
                    Item::Value(value("a", LitKind::Word, 4)),
                    Item::Glob(Lit {
                        text: "b-".into(),
                        kind: LitKind::Word,
                        start: 7,
                        end: 10
                    })
                ],
                kw_start: 0,
                kw_end: 2
            })
        );
        assert!(matches!(
            parse("not in [x, \"y z\"]"),
            Ok(Ast::Set { negated: true, .. })
        ));
        assert!(matches!(parse("in []"), Ok(Ast::Set { ref items, .. }) if items.is_empty()));
        assert!(matches!(parse("acme-*"), Ok(Ast::Glob(ref g)) if g.text == "acme-"));
        assert!(matches!(parse("*"), Ok(Ast::Glob(ref g)) if g.text.is_empty()));
        assert_eq!(
            parse("enterprise-acme"),
            Ok(Ast::Value(value("enterprise-acme", LitKind::Word, 0)))
        );
        assert_eq!(
            parse("100abc"),
            Ok(Ast::Value(value("100abc", LitKind::Word, 0)))
        );
        assert_eq!(
            parse("internal"),
            Ok(Ast::Value(value("internal", LitKind::Word, 0)))
        );
        assert_eq!(
            parse("meta.llama3-70b-instruct-v1:0"),
            Ok(Ast::Value(value(
                "meta.llama3-70b-instruct-v1:0",
                LitKind::Word,
                0
            )))
        );
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = parse("a*b").unwrap_err();
        assert_eq!((e.start, e.end), (2, 3));
        assert!(e.help.contains("trailing `*`"), "{e:?}");
        let e = parse("in [a, b").unwrap_err();
        assert_eq!(e.start, 8);
        assert!(e.message.contains("unexpected end"), "{e:?}");
        let e = parse("=400").unwrap_err();
        assert_eq!(e.start, 0);
        assert!(e.help.contains("=="), "{e:?}");
        // An open range is a word to the grammar; the checker's number check explains it.
        assert!(matches!(
            parse("100.."),
            Ok(Ast::Value(Lit {
                kind: LitKind::Word,
                ..
            }))
        ));
        assert!(parse("").is_err());
        assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn long_inputs_stay_linear() {
        let big = format!("in [{}]", vec!["x"; 1500].join(","));
        assert!(parse(&big).is_ok());
        let nasty = "[".repeat(MAX_LEN);
        assert!(parse(&nasty).is_err());
    }
}
