//! Typing conditions: a `match` value (scalar condition string or YAML list) parsed by
//! the grammar and checked against its field's type, into a [`Pred`]. Errors point at the
//! exact character of the condition string where the source allows it.

use switchyard_table::{Field, FieldKind, Micros, MoneyError};

use super::Checker;
use crate::condition::{self, Ast, Item, Lit, LitKind, Op};
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Condition, Pred, StrPattern};
use crate::source::Span;
use crate::yaml::{Node, Value};

impl Checker<'_> {
    pub(super) fn condition(&mut self, field: Field, node: &Node) -> Option<Condition> {
        match &node.value {
            Value::Null => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!("`{}` has no condition", field.key()),
                    )
                    .label(node.span, "expected a value, a list or a condition string")
                    .help(format!(
                        "e.g. `{}: {}`, or remove the key to match any value",
                        field.key(),
                        example(field)
                    )),
                );
                None
            }
            Value::Map(_) => {
                self.push(
                    Diagnostic::error(
                        Code::WrongType,
                        format!("`{}` cannot be a mapping", field.key()),
                    )
                    .label(node.span, "expected a value, a list or a condition string")
                    .help(format!(
                        "e.g. `{}: \"{}\"`",
                        field.key(),
                        example(field)
                    )),
                );
                None
            }
            Value::Scalar { text, .. } => {
                let ast = match condition::parse(text) {
                    Ok(ast) => ast,
                    Err(e) => {
                        let span = self.sub_span(node, e.start, e.end);
                        self.push(
                            Diagnostic::error(Code::ConditionSyntax, e.message)
                                .label(span, "here")
                                .help(e.help),
                        );
                        return None;
                    }
                };
                let pred = self.typed(field, node, &ast)?;
                Some(Condition {
                    text: text.trim().to_owned(),
                    span: node.span,
                    pred,
                })
            }
            Value::Seq(items) => {
                if items.is_empty() {
                    self.push(
                        Diagnostic::error(
                            Code::EmptyCondition,
                            format!("empty list for `{}`: no value can match", field.key()),
                        )
                        .label(node.span, "empty")
                        .help("list at least one value, or remove the key to match any value"),
                    );
                    return None;
                }
                let mut lits: Vec<Item> = Vec::with_capacity(items.len());
                let mut ok = true;
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    let Some(text) = self.scalar(item, field.key()) else {
                        ok = false;
                        continue;
                    };
                    texts.push(text.trim().to_owned());
                    match condition::parse(text) {
                        Ok(Ast::Value(l)) => lits.push(Item::Value(self.relocate(item, l))),
                        Ok(Ast::Glob(l)) => lits.push(Item::Glob(self.relocate(item, l))),
                        Ok(_) => {
                            ok = false;
                            self.push(
                                Diagnostic::error(Code::ComparatorType, "a list holds values, not conditions")
                                    .label(item.span, "a comparison, range or set inside a list")
                                    .help("a list means \"any of these values\"; write other conditions as one string"),
                            );
                        }
                        Err(e) => {
                            ok = false;
                            let span = self.sub_span(item, e.start, e.end);
                            self.push(
                                Diagnostic::error(Code::ConditionSyntax, e.message)
                                    .label(span, "here")
                                    .help(e.help),
                            );
                        }
                    }
                }
                if !ok {
                    return None;
                }
                let ast = Ast::Set {
                    negated: false,
                    items: lits,
                    kw_start: 0,
                    kw_end: 0,
                };
                let pred = self.typed_with(field, node, &ast, true)?;
                Some(Condition {
                    text: format!("[{}]", texts.join(", ")),
                    span: node.span,
                    pred,
                })
            }
        }
    }

    /// Makes a literal parsed from one list item carry absolute file offsets, since each
    /// item is a separate scalar with its own position.
    fn relocate(&self, item: &Node, mut l: Lit) -> Lit {
        let span = self.sub_span(item, l.start, l.end);
        l.start = span.start as usize;
        l.end = span.end as usize;
        l
    }

    fn sub_span(&self, node: &Node, start: usize, end: usize) -> Span {
        match self.sources.file(node.span.file) {
            Some(file) => node.value_span(file, start, end),
            None => node.span,
        }
    }

    /// Span of a literal: relative to the scalar for strings, absolute for list items.
    fn lit_span(&self, node: &Node, l: &Lit, from_list: bool) -> Span {
        if from_list {
            Span::new(node.span.file, l.start, l.end)
        } else {
            self.sub_span(node, l.start, l.end)
        }
    }

    fn typed(&mut self, field: Field, node: &Node, ast: &Ast) -> Option<Pred> {
        self.typed_with(field, node, ast, false)
    }

    fn typed_with(
        &mut self,
        field: Field,
        node: &Node,
        ast: &Ast,
        from_list: bool,
    ) -> Option<Pred> {
        let kind = field.kind();
        let key = field.key();
        let type_name = match kind {
            FieldKind::Id => "an id",
            FieldKind::Label => "a label",
            FieldKind::Integer => "an integer",
            FieldKind::Money => "a USD amount",
        };
        // `in []` matches nothing whatever the field; `not in []` matches any present value.
        if let Ast::Set {
            negated: false,
            items,
            kw_start,
            kw_end,
        } = ast
            && items.is_empty()
        {
            let span = self.sub_span(node, *kw_start, *kw_end);
            self.push(
                Diagnostic::error(
                    Code::EmptyCondition,
                    format!("`in []` is empty: no `{key}` can match"),
                )
                .label(span, "empty set")
                .help("list at least one value, or remove the key to match any value"),
            );
            return None;
        }
        if kind.is_string() {
            let (negated, patterns) = match ast {
                Ast::Value(l) => (false, vec![StrPattern::Exact(l.text.clone())]),
                Ast::Glob(l) => (false, vec![StrPattern::Prefix(l.text.clone())]),
                Ast::Compare {
                    op,
                    op_start,
                    op_end,
                    value,
                } => {
                    if op.is_ordering() {
                        let span = self.sub_span(node, *op_start, *op_end);
                        self.push(
                            Diagnostic::error(
                                Code::ComparatorType,
                                format!("comparator `{}` does not apply to `{key}`, which is {type_name}", op.as_str()),
                            )
                            .label(span, "only numbers can be ordered")
                            .help("compare ids and labels with `==`, `!=`, `in [..]`, `not in [..]` or a glob such as `acme-*`"),
                        );
                        return None;
                    }
                    (*op == Op::Ne, vec![StrPattern::Exact(value.text.clone())])
                }
                Ast::Range { lo, hi } => {
                    let span = self.sub_span(node, lo.start, hi.end);
                    self.push(
                        Diagnostic::error(
                            Code::ComparatorType,
                            format!("a range does not apply to `{key}`, which is {type_name}"),
                        )
                        .label(span, "ranges need numbers")
                        .help(
                            "list the values instead: `in [a, b]`, or use a glob such as `acme-*`",
                        ),
                    );
                    return None;
                }
                Ast::Set { negated, items, .. } => {
                    let patterns = items
                        .iter()
                        .map(|i| match i {
                            Item::Value(l) => StrPattern::Exact(l.text.clone()),
                            Item::Glob(l) => StrPattern::Prefix(l.text.clone()),
                        })
                        .collect();
                    (*negated, patterns)
                }
            };
            return Some(Pred::Str { negated, patterns });
        }

        // Numeric fields.
        let number = |c: &mut Self, l: &Lit| -> Option<u64> {
            let span = c.lit_span(node, l, from_list);
            let numeric = l.kind == LitKind::Number
                || l.text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
            let parsed = if !numeric {
                Err(format!("expected {type_name}, found `{}`", l.text))
            } else if kind == FieldKind::Integer {
                parse_int(&l.text)
            } else {
                Micros::parse(&l.text).map(|m| m.0).map_err(|e| match e {
                    MoneyError::TooPrecise => format!(
                        "`{}` has more than 6 decimal places; `{key}` is exact to the micro-dollar",
                        l.text
                    ),
                    MoneyError::Negative => {
                        format!("`{key}` cannot be negative, found `{}`", l.text)
                    }
                    other => format!("`{}` is not a valid amount: {other}", l.text),
                })
            };
            match parsed {
                Ok(v) => Some(v),
                Err(msg) => {
                    let help = if l.text.contains("..") {
                        "ranges need both ends, `100..400`; for an open range write `>=100` or `<=400`".to_owned()
                    } else if kind == FieldKind::Integer {
                        format!("`{key}` is a whole number of milliseconds, e.g. `<400`")
                    } else {
                        format!(
                            "`{key}` is USD per 1,000 tokens with at most 6 decimals, e.g. `<0.002`"
                        )
                    };
                    c.push(
                        Diagnostic::error(Code::BadNumber, msg)
                            .label(span, "here")
                            .help(help),
                    );
                    None
                }
            }
        };
        let ranges: Vec<(u64, u64)> = match ast {
            Ast::Value(l) => {
                let v = number(self, l)?;
                vec![(v, v)]
            }
            Ast::Glob(l) => {
                let span = self.lit_span(node, l, from_list);
                self.push(
                    Diagnostic::error(
                        Code::ComparatorType,
                        format!("a glob does not apply to `{key}`, which is {type_name}"),
                    )
                    .label(span, "globs match id prefixes")
                    .help("use a comparison such as `<400` or a range such as `100..400`"),
                );
                return None;
            }
            Ast::Compare { op, value, .. } => {
                let v = number(self, value)?;
                match op {
                    Op::Lt if v == 0 => vec![],
                    Op::Lt => vec![(0, v - 1)],
                    Op::Le => vec![(0, v)],
                    Op::Gt if v == u64::MAX => vec![],
                    Op::Gt => vec![(v + 1, u64::MAX)],
                    Op::Ge => vec![(v, u64::MAX)],
                    Op::Eq => vec![(v, v)],
                    Op::Ne => ir::complement_ranges(&[(v, v)]),
                }
            }
            Ast::Range { lo, hi } => {
                let (a, b) = (number(self, lo), number(self, hi));
                let (a, b) = (a?, b?);
                if a > b {
                    let span = self.sub_span(node, lo.start, hi.end);
                    self.push(
                        Diagnostic::error(
                            Code::EmptyCondition,
                            format!(
                                "empty range `{}..{}`: it starts after it ends",
                                lo.text, hi.text
                            ),
                        )
                        .label(span, "no value lies in this range")
                        .help(format!(
                            "write the smaller bound first: `{}..{}`",
                            hi.text, lo.text
                        )),
                    );
                    return None;
                }
                vec![(a, b)]
            }
            Ast::Set { negated, items, .. } => {
                let mut ranges = Vec::with_capacity(items.len());
                let mut ok = true;
                for i in items {
                    match i {
                        Item::Value(l) => match number(self, l) {
                            Some(v) => ranges.push((v, v)),
                            None => ok = false,
                        },
                        Item::Glob(l) => {
                            ok = false;
                            let span = self.lit_span(node, l, from_list);
                            self.push(
                                Diagnostic::error(
                                    Code::ComparatorType,
                                    format!(
                                        "a glob does not apply to `{key}`, which is {type_name}"
                                    ),
                                )
                                .label(span, "globs match id prefixes")
                                .help("list numbers, or use a range such as `100..400`"),
                            );
                        }
                    }
                }
                if !ok {
                    return None;
                }
                let ranges = ir::normalize_ranges(ranges);
                if *negated {
                    ir::complement_ranges(&ranges)
                } else {
                    ranges
                }
            }
        };
        let ranges = ir::normalize_ranges(ranges);
        if ranges.is_empty() {
            self.push(
                Diagnostic::error(
                    Code::EmptyCondition,
                    format!("condition on `{key}` can never hold"),
                )
                .label(node.span, "no value satisfies this")
                .help(format!(
                    "`{key}` is never negative; check the comparator and the bound"
                )),
            );
            return None;
        }
        Some(Pred::Num { ranges })
    }
}

fn parse_int(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err(format!(
            "`latency_budget_ms` cannot be negative, found `{text}`"
        ));
    }
    if text.contains('.') {
        return Err(format!(
            "expected a whole number of milliseconds, found `{text}`"
        ));
    }
    text.parse::<u64>()
        .map_err(|_| format!("`{text}` is too large"))
}

fn example(field: Field) -> &'static str {
    match field {
        Field::Tenant => "enterprise-acme",
        Field::DataClass => "pii-restricted",
        Field::UserRole => "admin",
        Field::Model => "auto",
        Field::LatencyBudgetMs => "<400",
        Field::CostCapPer1k => "<0.002",
    }
}
