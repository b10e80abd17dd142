//! The full-parse fallback for the statements the lexical pass is unsure of.
//!
//! The lexical pass sends a SELECT to the primary as soon as it sees a DML keyword in it, which
//! is right for `WITH ... UPDATE` and wrong for the string functions `REPLACE(...)` and
//! `INSERT(...)`. When the keyword is used as a function, sqlparser (MySQL dialect) decides. A
//! full parse costs 30-450 us (DESIGN.md), so decisions are cached by digest: the same query
//! shape with other literals is parsed once. A statement sqlparser rejects is not a read.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// Distinct digests remembered; the cache is cleared when full (it refills with what is hot).
const CACHE_CAP: usize = 4096;

static CACHE: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);

/// Whether `sql` is one plain query: no write, no lock, no `INTO`. Cached by `digest`.
pub fn is_plain_query(sql: &[u8], digest: String) -> bool {
    let cached = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(&digest).copied()));
    if let Some(v) = cached {
        return v;
    }
    let v = std::str::from_utf8(sql).is_ok_and(parse_is_plain_query);
    if let Ok(mut c) = CACHE.lock() {
        let m = c.get_or_insert_with(HashMap::new);
        if m.len() >= CACHE_CAP {
            m.clear();
        }
        m.insert(digest, v);
    }
    v
}

/// The uncached decision.
pub fn parse_is_plain_query(sql: &str) -> bool {
    match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(stmts) => matches!(stmts.as_slice(), [Statement::Query(q)] if query_is_plain(q)),
        Err(_) => false,
    }
}

fn query_is_plain(q: &Query) -> bool {
    let ctes_plain = q
        .with
        .as_ref()
        .is_none_or(|w| w.cte_tables.iter().all(|c| query_is_plain(&c.query)));
    ctes_plain && q.locks.is_empty() && set_expr_is_plain(&q.body)
}

fn set_expr_is_plain(e: &SetExpr) -> bool {
    match e {
        SetExpr::Select(s) => s.into.is_none(),
        SetExpr::Query(q) => query_is_plain(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_is_plain(left) && set_expr_is_plain(right)
        }
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        _ => false,
    }
}
