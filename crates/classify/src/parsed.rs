//! The sqlparser path: decides reads that the token scan could not settle
//! because an identifier that is not a known pure built-in precedes `(`.
//! That is either a call of an unknown (possibly stored, possibly writing)
//! function, or harmless syntax such as a CTE or derived-table column list
//! (`WITH c (a, b) AS (...)`, `(SELECT 1) AS d (x)`). The statement is safe
//! only if it parses as exactly one query whose every function call and table
//! factor is known to be pure.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectNamePart, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::funcs::is_pure;

/// Why the sqlparser path could not vouch for a statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// sqlparser rejected the text.
    #[error("sqlparser: {0}")]
    Syntax(String),
    /// The text held other than exactly one statement.
    #[error("expected one statement, found {0}")]
    StatementCount(usize),
}

/// Visitor that breaks on anything not known to be a pure read.
struct PureRead;

impl Visitor for PureRead {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if matches!(s, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table { args: None, .. }
            | TableFactor::Derived { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let pure = match f.name.0.as_slice() {
                [ObjectNamePart::Identifier(id)] => id.quote_style.is_none() && is_pure(&id.value),
                _ => false,
            };
            if !pure {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether `sql` (one statement) is a read whose function calls are all
/// known pure built-ins. `Ok(false)` when it parses but is not safe.
pub(crate) fn read_is_safe(sql: &str) -> Result<bool, ParseError> {
    let stmts =
        Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| ParseError::Syntax(e.to_string()))?;
    match stmts.as_slice() {
        [one] => Ok(one.visit(&mut PureRead).is_continue()),
        _ => Err(ParseError::StatementCount(stmts.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lists_are_safe() {
        assert_eq!(
            read_is_safe("WITH c (a, b) AS (SELECT 1, 2) SELECT * FROM c"),
            Ok(true)
        );
        assert_eq!(
            read_is_safe("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n<5) SELECT n FROM c"),
            Ok(true)
        );
    }

    #[test]
    fn unknown_functions_are_not() {
        assert_eq!(read_is_safe("SELECT my_func(1)"), Ok(false));
        assert_eq!(read_is_safe("SELECT db.f(1) FROM t"), Ok(false));
        assert_eq!(read_is_safe("SELECT COUNT(*) FROM t"), Ok(true));
        assert!(read_is_safe("SELECT (").is_err());
        assert_eq!(
            read_is_safe("WITH c AS (SELECT 1) DELETE FROM t"),
            Ok(false)
        );
    }
}
