//! Named placeholders (`:name`) in spec SQL become the driver's positional placeholders,
//! with the bound values in order. Text inside string literals, quoted identifiers and
//! comments is left alone, as each dialect delimits them (PostgreSQL's dollar quotes and
//! `E'…'` escapes, MySQL's backslash escapes and `#` comments), and so are PostgreSQL
//! casts (`::date`).

use crate::params::{BoundParams, ParamValue};
use crate::value::Value;

/// The SQL dialect: how literals and comments are delimited, and how the driver spells a
/// positional placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    /// The dialect of a source URL (`sqlite:`, `postgres://`, `mysql://`…).
    pub fn from_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Dialect::Mysql)
        } else {
            None
        }
    }

    fn placeholder(self) -> Placeholder {
        match self {
            Dialect::Postgres => Placeholder::Dollar,
            Dialect::Sqlite | Dialect::Mysql => Placeholder::Question,
        }
    }
}

/// How the driver spells a positional placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
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
    fn push_value(&mut self, style: Placeholder, v: Value) {
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

/// A piece of spec SQL in parentheses, ready to be wrapped (`SELECT * FROM (<sql>) AS q`,
/// `WHERE (<filter>)`): the closing parenthesis goes on a line of its own, so SQL that
/// ends in a `--` comment cannot comment it out, and trailing semicolons are dropped.
pub fn enclose(sql: &str) -> String {
    format!("({}\n)", sql.trim_end().trim_end_matches(';').trim_end())
}

/// Every `:name` placeholder in `sql`, in order (for validation).
pub fn placeholders(sql: &str, dialect: Dialect) -> Vec<String> {
    let mut names = Vec::new();
    scan(sql, dialect, |piece| {
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
pub fn bind_into(out: &mut BoundSql, sql: &str, params: &BoundParams, dialect: Dialect) {
    let style = dialect.placeholder();
    scan(sql, dialect, |piece| match piece {
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

fn scan<'a>(sql: &'a str, dialect: Dialect, mut emit: impl FnMut(Piece<'a>)) {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        i = match b[i] {
            b'\'' if dialect == Dialect::Postgres && is_escape_prefix(b, i) => quoted(b, i, b'\'', true),
            b'\'' | b'"' if dialect == Dialect::Mysql => quoted(b, i, b[i], true),
            q @ (b'\'' | b'"' | b'`') => quoted(b, i, q, false),
            b'[' if dialect == Dialect::Sqlite => b[i..].iter().position(|&c| c == b']').map_or(b.len(), |p| i + p + 1),
            b'$' if dialect == Dialect::Postgres => dollar_quoted(b, i).unwrap_or(i + 1),
            b'-' if b.get(i + 1) == Some(&b'-') => line_end(b, i),
            b'#' if dialect == Dialect::Mysql => line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => block_comment_end(b, i, dialect == Dialect::Postgres),
            b':' if b.get(i + 1) == Some(&b':') => i + 2,
            b':' if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                let mut j = ident_end(b, i + 1);
                // `:actor.claim` is one name: the actor's claim, bound like a parameter.
                if &sql[i + 1..j] == crate::actor::PREFIX
                    && b.get(j) == Some(&b'.')
                    && b.get(j + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                {
                    j = ident_end(b, j + 1);
                }
                emit(Piece::Text(&sql[start..i]));
                emit(Piece::Param(&sql[i + 1..j]));
                start = j;
                j
            }
            _ => i + 1,
        };
    }
    if start < sql.len() {
        emit(Piece::Text(&sql[start.min(sql.len())..]));
    }
}

/// One past the last letter, digit or `_` from `i`.
fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// Whether the quote at `i` opens a PostgreSQL escape string (`E'…'`).
fn is_escape_prefix(b: &[u8], i: usize) -> bool {
    i >= 1 && matches!(b[i - 1], b'E' | b'e') && (i == 1 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'))
}

/// The end (one past the closing quote) of a literal opened by `q` at `i`: a doubled
/// quote stands for itself, and with `backslashes` so does `\` followed by anything.
fn quoted(b: &[u8], i: usize, q: u8, backslashes: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if backslashes => j += 2,
            c if c == q && b.get(j + 1) == Some(&q) => j += 2,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The end of a PostgreSQL dollar-quoted string at `i` (`$$…$$`, `$tag$…$tag$`), or
/// `None` where the `$` opens none (`$1` is a positional parameter).
fn dollar_quoted(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let close = b[body..].windows(tag.len()).position(|w| w == tag);
    Some(close.map_or(b.len(), |p| body + p + tag.len()))
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p)
}

/// The end of a `/* … */` comment at `i`; PostgreSQL's nest.
fn block_comment_end(b: &[u8], i: usize, nested: bool) -> usize {
    let (mut depth, mut j) = (1, i + 2);
    while j < b.len() {
        if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else if nested && b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
            depth += 1;
            j += 2;
        } else {
            j += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_literals_comments_and_casts() {
        let sql = "a = :x AND b = ':not' AND c::date = :y -- :z\n AND \"q:w\" = /* :v */ :x";
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
            assert_eq!(placeholders(sql, d), vec!["x", "y", "x"], "{d:?}");
        }
    }

    #[test]
    fn each_dialect_skips_its_own_literals_and_comments() {
        use Dialect::*;
        // PostgreSQL: dollar quotes (tagged or not) and E'' escapes; `$1` is no quote.
        let pg = "a = $$ :no $$ AND b = $t$ it's :no $t$ AND c = E'it\\'s :no' AND d = $1 AND e = :yes";
        assert_eq!(placeholders(pg, Postgres), vec!["yes"]);
        // A standard string ends at its quote, backslash or not.
        assert_eq!(placeholders(r"a = 'C:\' AND b = :yes", Postgres), vec!["yes"]);
        assert_eq!(placeholders("/* outer /* inner */ :no */ :yes", Postgres), vec!["yes"]);
        // MySQL: backslash escapes in both quotes, and # comments.
        let my = r#"a = 'it\'s :no' AND b = "say \":no\"" AND c = :yes # :no"#;
        assert_eq!(placeholders(my, Mysql), vec!["yes"]);
        // SQLite: [bracketed] identifiers.
        assert_eq!(placeholders("SELECT [a:b] FROM t WHERE x = :yes", Sqlite), vec!["yes"]);
    }

    #[test]
    fn enclosed_sql_survives_a_trailing_comment_and_semicolon() {
        assert_eq!(enclose("SELECT 1 -- the end"), "(SELECT 1 -- the end\n)");
        assert_eq!(enclose("SELECT 1;\n  "), "(SELECT 1\n)");
    }

    #[test]
    fn lists_expand_and_values_bind_in_order() {
        let mut p = BoundParams::new();
        p.insert("ids".into(), ParamValue::List(vec![Value::Int(1), Value::Int(2)]));
        p.insert("s".into(), ParamValue::One(Value::Str("x".into())));
        let mut out = BoundSql::default();
        bind_into(&mut out, "id IN (:ids) AND s = :s", &p, Dialect::Postgres);
        assert_eq!(out.sql, "id IN ($1, $2) AND s = $3");
        assert_eq!(out.values.len(), 3);
    }

    #[test]
    fn an_actor_claim_is_one_placeholder_and_other_dots_end_a_name() {
        let sql = "t = :actor.tenant AND s = :actor.sub AND x = :actors.tenant AND y = :p.q AND z = ':actor.no'";
        assert_eq!(placeholders(sql, Dialect::Postgres), vec!["actor.tenant", "actor.sub", "actors", "p"]);
    }
}
