//! The Fx hasher for per-core maps keyed by table-made values: the table crate's, shared
//! with the compiler.

pub use switchyard_table::fx::{Fx, FxMap};
