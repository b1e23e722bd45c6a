//! "Did you mean …?": the nearest of the names that would have been right.
//!
//! ```
//! use ream_core::suggest::nearest;
//! assert_eq!(nearest("fotter", ["footer", "summary", "page_footer"]), Some("footer"));
//! assert_eq!(nearest("xyz", ["footer", "summary"]), None);
//! ```

use serde_json::Value;

/// The name in `names` closest to `given` (Damerau–Levenshtein, case ignored), if it is
/// close enough to be what was meant: at most a third of the name's letters apart (at
/// least one). Ties go to the first.
pub fn nearest<'a>(given: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_lowercase();
    let limit = (given.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for name in names {
        let d = strsim::damerau_levenshtein(&given, &name.to_lowercase());
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, name));
        }
    }
    best.map(|(_, name)| name)
}

/// `: did you mean `x`?` for the nearest name, or nothing: the end of an error message.
///
/// ```
/// use ream_core::suggest::hint;
/// assert_eq!(hint("regoin", ["region", "total"]), ": did you mean `region`?");
/// assert_eq!(hint("xyz", ["region"]), "");
/// ```
pub fn hint<'a>(given: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    nearest(given, names).map(|n| format!(": did you mean `{n}`?")).unwrap_or_default()
}

/// The keys an object at `parent` (a key path: `columns[0]`, `variables.total`, `` for
/// the top) may hold, read from the JSON Schema `schema`.
pub fn keys_at(schema: &Value, parent: &str) -> Vec<String> {
    let mut nodes = vec![schema];
    for segment in segments(parent) {
        nodes = nodes.into_iter().flat_map(|n| alternatives(schema, n)).filter_map(|n| step(n, &segment)).collect();
    }
    let mut keys: Vec<String> = (nodes.into_iter().flat_map(|n| alternatives(schema, n)))
        .filter_map(|n| n.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.dedup();
    keys
}

enum Segment {
    Key(String),
    Index,
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        out.extend(rest.matches(']').map(|_| Segment::Index));
    }
    out
}

/// One step down: a property (or any key of a map), or an array's items.
fn step<'a>(node: &'a Value, segment: &Segment) -> Option<&'a Value> {
    match segment {
        Segment::Key(k) => node
            .get("properties")
            .and_then(|p| p.get(k))
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
        Segment::Index => node.get("items"),
    }
}

/// `node` with its `$ref` followed and its `anyOf`/`oneOf`/`allOf` opened, recursively.
fn alternatives<'a>(schema: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        if out.len() > 64 {
            break;
        }
        if let Some(name) = n.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            if let Some(def) = schema.get("$defs").and_then(|d| d.get(name)) {
                todo.push(def);
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = n.get(key).and_then(Value::as_array) {
                todo.extend(list);
            }
        }
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_finds_its_neighbour_at_any_depth_and_a_stranger_finds_none() {
        let schema = crate::spec::json_schema();
        let top = keys_at(&schema, "");
        assert_eq!(nearest("colums", top.iter().map(String::as_str)), Some("columns"));
        assert_eq!(nearest("VARIABLES", top.iter().map(String::as_str)), Some("variables"));
        let column = keys_at(&schema, "columns[0]");
        assert_eq!(nearest("formt", column.iter().map(String::as_str)), Some("format"));
        let variable = keys_at(&schema, "variables.total");
        assert_eq!(nearest("summ", variable.iter().map(String::as_str)), Some("sum"));
        assert_eq!(nearest("orientaton", keys_at(&schema, "page").iter().map(String::as_str)), Some("orientation"));
        assert_eq!(nearest("zzzz", top.iter().map(String::as_str)), None);
    }
}
