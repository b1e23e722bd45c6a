//! Whether a key is provably unique. Keyset paging (`WHERE (key) > (last)`) and resuming
//! after a lost connection both skip, silently, every row that repeats the key of the last
//! row of a page: so neither may run on a key the database does not guarantee unique. The
//! proof is the catalogue's: the key's fields are plain columns of the base table, and
//! they include every column of its primary key or of one of its (non-partial, non-
//! expression) unique indexes. Each driver reads its catalogue; this decides, the same way
//! for every driver.
//!
//! Joins are to-one by the spec's contract (`source.joins` flattens lookups), so a key
//! unique in the base table stays unique in the joined rows.

use ream_core::spec::Strategy;

/// How a dialect's catalogue spells names: SQLite and MySQL compare column names without
/// regard to ASCII case; PostgreSQL folds unquoted names to lower case and keeps quoted
/// ones as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameCase {
    Insensitive,
    FoldUnquoted,
}

impl NameCase {
    fn normalise(self, ident: &str, quoted: bool) -> String {
        match self {
            NameCase::Insensitive => ident.to_ascii_lowercase(),
            NameCase::FoldUnquoted if quoted => ident.to_string(),
            NameCase::FoldUnquoted => ident.to_ascii_lowercase(),
        }
    }

    /// A name as the catalogue returns it, for comparison with [`base_column`]'s result.
    pub(crate) fn catalogue(self, name: &str) -> String {
        match self {
            NameCase::Insensitive => name.to_ascii_lowercase(),
            NameCase::FoldUnquoted => name.to_string(),
        }
    }
}

/// The identifiers of a dotted name (`a`, `"a"."b"`, `` `a`.`b` ``, `[a].[b]`), each with
/// whether it was quoted; `None` when `text` is anything but such a name.
fn identifiers(text: &str) -> Option<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let (ident, quoted) = match chars.peek()? {
            '"' | '`' | '[' => {
                let open = chars.next()?;
                let close = if open == '[' { ']' } else { open };
                let mut ident = String::new();
                loop {
                    let c = chars.next()?;
                    if c == close {
                        // A doubled closing quote is the quote itself.
                        if close != ']' && chars.peek() == Some(&close) {
                            chars.next();
                            ident.push(c);
                            continue;
                        }
                        break;
                    }
                    ident.push(c);
                }
                (ident, true)
            }
            c if c.is_alphabetic() || *c == '_' => {
                let mut ident = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        break;
                    }
                    ident.push(c);
                    chars.next();
                }
                (ident, false)
            }
            _ => return None,
        };
        out.push((ident, quoted));
        match chars.next() {
            None => return Some(out),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// The base-table column a field's expression names, normalised by `case`: `col` (only
/// without joins, where it cannot belong to another table), `table.col`, or the quoted
/// forms. `None` for an expression, another table's column, or a subquery's.
pub(crate) fn base_column(expr: &str, table: &str, joined: bool, case: NameCase) -> Option<String> {
    let parts = identifiers(expr)?;
    let table_parts = identifiers(table)?;
    let (table_name, table_quoted) = table_parts.last()?;
    match parts.as_slice() {
        [(col, quoted)] if !joined => Some(case.normalise(col, *quoted)),
        [.., (qualifier, q_quoted), (col, quoted)]
            if case.normalise(qualifier, *q_quoted) == case.normalise(table_name, *table_quoted) =>
        {
            Some(case.normalise(col, *quoted))
        }
        _ => None,
    }
}

/// The base column each of `key`'s fields names (see [`base_column`]), given each
/// field's index in `exprs`.
pub(crate) fn key_base_columns<E>(
    key: &[String],
    field_index: impl Fn(&str) -> Result<usize, E>,
    exprs: &[String],
    table: &str,
    joined: bool,
    case: NameCase,
) -> Result<Vec<Option<String>>, E> {
    key.iter().map(|k| field_index(k).map(|i| base_column(&exprs[i], table, joined, case))).collect()
}

/// Whether a key whose fields name these base columns (`None`: not a base column) is
/// unique: some unique column set is made of its columns only.
pub(crate) fn proves_unique(key: &[Option<String>], unique_sets: &[Vec<String>]) -> bool {
    let cols: Vec<&str> = key.iter().flatten().map(String::as_str).collect();
    unique_sets.iter().any(|set| !set.is_empty() && set.iter().all(|c| cols.contains(&c.as_str())))
}

/// The message for `offset` without any unique order.
pub(crate) const OFFSET_NEEDS_AN_ORDER: &str =
    "offset paging needs a unique key order (pages of a repeated order can overlap): give `key`, or use --strategy cursor";

/// The message for an explicit `keyset` or `offset` whose key has no proof.
pub(crate) fn unproven_paging(strategy: Strategy, key: &[String]) -> String {
    let risk = match strategy {
        Strategy::Offset => "pages of a repeated key can overlap or miss rows",
        _ => "a repeated key would make pages skip rows",
    };
    format!(
        "{strategy} paging needs a key the database guarantees unique, but `key: [{}]` is not a primary key or \
         unique index of the base table ({risk}): give such a key, or use --strategy cursor",
        key.join(", ")
    )
}

/// Unique column sets from catalogue rows of (index, column), in index order.
pub(crate) fn group_sets(rows: Vec<(String, String)>, case: NameCase) -> Vec<Vec<String>> {
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    for (index, column) in rows {
        match sets.last_mut() {
            Some((i, cols)) if *i == index => cols.push(case.catalogue(&column)),
            _ => sets.push((index, vec![case.catalogue(&column)])),
        }
    }
    sets.into_iter().map(|(_, cols)| cols).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_quoted_column_references_name_base_columns() {
        let ci = NameCase::Insensitive;
        assert_eq!(base_column("id", "t", false, ci).as_deref(), Some("id"));
        assert_eq!(base_column("id", "t", true, ci), None, "unqualified beside joins");
        assert_eq!(base_column("T.Id", "t", true, ci).as_deref(), Some("id"));
        assert_eq!(base_column("\"t\".\"a\"\"b\"", "t", true, ci).as_deref(), Some("a\"b"));
        assert_eq!(base_column("`t`.`id`", "t", true, ci).as_deref(), Some("id"));
        assert_eq!(base_column("main.t.id", "t", true, ci).as_deref(), Some("id"));
        assert_eq!(base_column("c.id", "t", true, ci), None, "another table");
        assert_eq!(base_column("t.id + 1", "t", true, ci), None, "an expression");
        assert_eq!(base_column("q.\"id\"", "t", false, ci), None, "a subquery");
        let pg = NameCase::FoldUnquoted;
        assert_eq!(base_column("public.T.\"Id\"", "public.t", true, pg).as_deref(), Some("Id"));
        assert_eq!(base_column("t.ID", "t", true, pg).as_deref(), Some("id"));
    }

    #[test]
    fn a_key_is_unique_when_it_holds_every_column_of_a_unique_set() {
        let sets = vec![vec!["a".to_string(), "b".to_string()], vec!["id".to_string()]];
        let key = |cols: &[Option<&str>]| cols.iter().map(|c| c.map(str::to_string)).collect::<Vec<_>>();
        assert!(proves_unique(&key(&[Some("id")]), &sets));
        assert!(proves_unique(&key(&[None, Some("id")]), &sets), "a superset of a unique key");
        assert!(proves_unique(&key(&[Some("b"), Some("a")]), &sets));
        assert!(!proves_unique(&key(&[Some("a")]), &sets));
        assert!(!proves_unique(&key(&[None]), &sets));
        assert!(!proves_unique(&key(&[Some("a")]), &[]));
    }
}
