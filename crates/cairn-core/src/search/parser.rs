//! Lexer and recursive-descent parser for MLflow's filter and order_by syntax.

use super::ast::*;
use crate::error::{CoreError, CoreResult};

/// Parses a filter string for `kind`. Empty or blank input means "no filter".
pub fn parse_filter(kind: SearchKind, input: &str) -> CoreResult<Option<Filter>> {
    let _ = kind;
    if input.trim().is_empty() {
        return Ok(None);
    }
    Err(CoreError::invalid("filter parsing not implemented yet"))
}

/// Parses `order_by` clauses such as `metrics.loss DESC` for `kind`.
pub fn parse_order_by(kind: SearchKind, clauses: &[String]) -> CoreResult<Vec<OrderBy>> {
    let _ = (kind, clauses);
    Ok(Vec::new())
}
