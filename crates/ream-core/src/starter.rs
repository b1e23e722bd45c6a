//! `ream new report`: a commented starter spec for one table, from its columns, their
//! types and its key, which loads as it is written.
//!
//! ```
//! use ream_core::starter::{starter_spec, StarterColumn};
//! let cols = [StarterColumn { name: "id".into(), type_name: "int".into() }];
//! let text = starter_spec("orders", Some("sqlite:shop.db"), "orders", &cols, &["id".to_string()]);
//! let loaded = ream_core::load::load_str(&text, ream_core::load::SpecFormat::Yaml).unwrap();
//! assert_eq!(loaded.spec().source.key, ["id"]);
//! ```

use std::fmt::Write;

/// A column of the table: its name and ream's name for its type (`int`, `decimal(12,2)`).
pub struct StarterColumn {
    pub name: String,
    pub type_name: String,
}

/// The spec's text (YAML). The URL is written without its password (a spec file is no
/// place for one); `None` leaves the source to `--source` or `REAM_SOURCE`.
pub fn starter_spec(name: &str, url: Option<&str>, table: &str, columns: &[StarterColumn], key: &[String]) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "# {name}: every row of `{table}`. Written by `ream new report`; the format is in docs/spec.md");
    let _ =
        writeln!(s, "# (`ream schema` prints it as JSON Schema). Check it with `ream validate --connect {name}.yaml`.");
    let _ = writeln!(s, "report: {name}");
    let _ = writeln!(s, "title: {}", quote(&title(name)));
    let _ = writeln!(s, "source:");
    match url.map(crate::redact::without_password) {
        Some((url, hidden)) => {
            let note = if hidden {
                "  # the password is not kept here: give the URL with --source or REAM_SOURCE"
            } else {
                ""
            };
            let _ = writeln!(s, "  url: {}{note}", quote(&url));
        }
        None => {
            let _ = writeln!(s, "  # url: \"sqlite:FILE\"  (else --source URL or REAM_SOURCE)");
        }
    }
    let _ = writeln!(s, "  table: {}", quote(table));
    if key.is_empty() {
        let _ =
            writeln!(s, "  # key: [id]  # no primary key was found: name unique columns for keyset paging and resume");
    } else {
        let _ = writeln!(s, "  key: [{}]  # unique, as the database proves: keyset paging and resume", list(key));
    }
    let _ = writeln!(s, "  # where: \"status = :status\"  # bound parameters only, declared below");
    let _ = writeln!(s, "# parameters:\n#   status: {{ type: string, default: paid }}");
    let _ = writeln!(s, "columns:");
    let width = columns.iter().map(|c| quote(&c.name).len()).max().unwrap_or(0);
    for c in columns {
        let field = quote(&c.name);
        let _ = writeln!(s, "  - {{ field: {field:<width$} }}  # {}", c.type_name);
    }
    let first = columns.first().map_or("FIELD", |c| c.name.as_str());
    let _ = writeln!(s, "# groups:\n#   - by: {first}\n#     header: \"{{{first}}}\"\n#     footer: \"{{rows}} rows\"");
    let _ = writeln!(s, "# variables:\n#   rows: {{ count: \"*\", reset: {first} }}");
    s
}

/// `orders_by_region` → `Orders by region`.
fn title(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut c = words.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn list(names: &[String]) -> String {
    names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
}

/// A YAML scalar that reads back as `text`, whatever it holds.
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && !matches!(text, "true" | "false" | "null" | "yes" | "no" | "on" | "off");
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_loads_keeps_odd_names_and_never_the_password() {
        let cols = [
            StarterColumn { name: "id".into(), type_name: "int".into() },
            StarterColumn { name: "Unit Price".into(), type_name: "decimal(12,2)".into() },
            StarterColumn { name: "on".into(), type_name: "bool".into() },
        ];
        let text = starter_spec("sales-2024", Some("postgres://ream:s3cret@db/shop"), "order lines", &cols, &[]);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("url: \"postgres://ream@db/shop\"  # the password is not kept here"), "{text}");
        let loaded = crate::load::load_str(&text, crate::load::SpecFormat::Yaml).unwrap();
        let spec = loaded.spec();
        assert_eq!(spec.title.as_deref(), Some("Sales 2024"));
        assert_eq!(spec.source.table.as_deref(), Some("order lines"));
        let fields: Vec<&str> = spec.columns.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["id", "Unit Price", "on"]);
        assert!(spec.source.key.is_empty());
    }
}
