//! Named placeholders (`:name`) in spec SQL become the driver's positional placeholders,
//! with the bound values in order. Text inside string literals, quoted identifiers and
//! comments is left alone, and so are PostgreSQL casts (`::date`).

use crate::params::{BoundParams, ParamValue};
use crate::value::Value;

/// How the driver spells a positional placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `?` (SQLite, MySQL).
    Question,
    /// `$1`, `$2`, … (PostgreSQL).
    Dollar,
}

/// SQL text with positional placeholders and the values to bind to them, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundSql {
    pub sql: String,
    pub values: Vec<Value>,
}

impl BoundSql {
    pub fn push_value(&mut self, style: Placeholder, v: Value) {
        self.values.push(v);
        match style {
            Placeholder::Question => self.sql.push('?'),
            Placeholder::Dollar => {
                self.sql.push('$');
                self.sql.push_str(&self.values.len().to_string());
            }
        }
    }
}

/// Every `:name` placeholder in `sql`, in order (for validation).
pub fn placeholders(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    scan(sql, |piece| {
        if let Piece::Param(n) = piece {
            names.push(n.to_string());
        }
    });
    names
}

/// Append `sql` to `out`, replacing each `:name` by placeholders bound to the parameter's
/// value. A list parameter expands to `?, ?, ?` (write `IN (:ids)`); an empty list to
/// `NULL`, so `IN (NULL)` matches nothing. Unknown names are reported by validation
/// before this runs; here they bind NULL.
pub fn bind_into(out: &mut BoundSql, sql: &str, params: &BoundParams, style: Placeholder) {
    scan(sql, |piece| match piece {
        Piece::Text(t) => out.sql.push_str(t),
        Piece::Param(name) => match params.get(name) {
            Some(ParamValue::One(v)) => out.push_value(style, v.clone()),
            Some(ParamValue::List(vs)) if !vs.is_empty() => {
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        out.sql.push_str(", ");
                    }
                    out.push_value(style, v.clone());
                }
            }
            Some(ParamValue::List(_)) => out.sql.push_str("NULL"),
            None => out.push_value(style, Value::Null),
        },
    });
}

enum Piece<'a> {
    Text(&'a str),
    Param(&'a str),
}

fn scan<'a>(sql: &'a str, mut emit: impl FnMut(Piece<'a>)) {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        // A doubled quote is an escaped quote inside the literal.
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                emit(Piece::Text(&sql[start..i]));
                emit(Piece::Param(&sql[i + 1..j]));
                i = j;
                start = j;
            }
            _ => i += 1,
        }
    }
    if start < sql.len() {
        emit(Piece::Text(&sql[start.min(sql.len())..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_literals_comments_and_casts() {
        let sql = "a = :x AND b = ':not' AND c::date = :y -- :z\n AND \"q:w\" = /* :v */ :x";
        assert_eq!(placeholders(sql), vec!["x", "y", "x"]);
    }

    #[test]
    fn lists_expand_and_values_bind_in_order() {
        let mut p = BoundParams::new();
        p.insert("ids".into(), ParamValue::List(vec![Value::Int(1), Value::Int(2)]));
        p.insert("s".into(), ParamValue::One(Value::Str("x".into())));
        let mut out = BoundSql::default();
        bind_into(&mut out, "id IN (:ids) AND s = :s", &p, Placeholder::Dollar);
        assert_eq!(out.sql, "id IN ($1, $2) AND s = $3");
        assert_eq!(out.values.len(), 3);
    }
}
