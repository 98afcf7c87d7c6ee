//! The search language shared by runs, experiments and logged models.
//!
//! [`parse_filter`] turns MLflow's filter strings into a typed [`Filter`] tree and
//! [`parse_order_by`] turns `order_by` clauses into [`OrderBy`] keys. Both validate
//! identifiers and operators for the entity being searched ([`SearchKind`]), so stores
//! only compile already-valid trees to SQL.

mod ast;
mod parser;

pub use ast::*;
pub use parser::{parse_filter, parse_order_by};
