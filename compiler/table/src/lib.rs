//! The Switchyard decision table: the only contract between `policyc` and the router.
//!
//! This crate owns the on-disk format ([`layout`]), the writer that turns a fully
//! lowered [`TableSpec`] into deterministic bytes ([`write`]), the validating zero-copy
//! reader ([`Table::from_bytes`]) and the bit-vector evaluator ([`Table::evaluate`]).
//! It knows nothing of YAML, pest or any I/O runtime so that both the compiler and the
//! router can depend on it.
//!
//! Architecture invariant: a [`Table`] is validated once, in [`Table::from_bytes`]. After
//! that, no accessor and no evaluation can fail, panic or allocate.

mod error;
pub mod fx;
pub mod layout;
mod money;
mod partition;
mod read;
mod vocab;
mod write;

pub use error::TableError;
pub use money::{Micros, MoneyError};
pub use partition::{ABSENT, Atom, NumPartition, OTHER, Partition, StrPartition, literal_hash};
pub use read::{
    DataClassView, Decision, EndpointView, FieldView, GlobView, LiteralView, RuleView, Table,
    TenantView,
};
pub use vocab::{Action, BedrockApi, EndpointKind, Field, FieldKind, Transport};
pub use write::{
    DataClassSpec, EndpointResilience, EndpointSpec, FieldSpec, RuleSpec, TableSpec, TenantSpec,
    encode, reseal,
};

/// The request attributes a decision can depend on, borrowed from wherever the caller
/// parsed them (header values, a JSON body). Absent attributes are `None`: they fail
/// every condition on their field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// `X-Tenant`, or the tenant fixed by the client key.
    pub tenant: Option<&'a [u8]>,
    /// `X-Data-Class`.
    pub data_class: Option<&'a [u8]>,
    /// `X-User-Role`.
    pub user_role: Option<&'a [u8]>,
    /// The body's `model` (`auto` included).
    pub model: Option<&'a [u8]>,
    /// `X-Latency-Budget-Ms`.
    pub latency_budget_ms: Option<u64>,
    /// The cost budget spread over the worst-case token count, per 1,000 tokens.
    pub cost_cap_per_1k: Option<Micros>,
}

impl<'a> Request<'a> {
    /// The value of a string field, or `None` for numeric fields and absent values.
    #[must_use]
    pub fn str_value(&self, field: Field) -> Option<&'a [u8]> {
        match field {
            Field::Tenant => self.tenant,
            Field::DataClass => self.data_class,
            Field::UserRole => self.user_role,
            Field::Model => self.model,
            Field::LatencyBudgetMs | Field::CostCapPer1k => None,
        }
    }

    /// The value of a numeric field (money as micro-dollars), or `None`.
    #[must_use]
    pub fn num_value(&self, field: Field) -> Option<u64> {
        match field {
            Field::LatencyBudgetMs => self.latency_budget_ms,
            Field::CostCapPer1k => self.cost_cap_per_1k.map(|m| m.0),
            Field::Tenant | Field::DataClass | Field::UserRole | Field::Model => None,
        }
    }
}
