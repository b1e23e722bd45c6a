//! Sources named in a config file, so that `--source shop`, `REAM_SOURCE=shop` and a
//! spec's `source: { url: shop }` all mean the URL the file gives once:
//!
//! ```toml
//! [sources.shop]
//! url = "postgres://report@db.internal/shop"
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::EngineError;

/// One `[sources.NAME]` table of a config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSourceConfig {
    /// The source's URL: `sqlite:PATH` (relative to the config file),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` or `mysql://…`.
    pub url: String,
}

/// The named sources of a config file (none by default). A source given without a scheme
/// (no `:`) is a name, looked up here; any other is a URL, as given.
#[derive(Debug, Clone, Default)]
pub struct NamedSources(Arc<BTreeMap<String, String>>);

impl NamedSources {
    /// The sources of a config file at `base` (its directory): a relative SQLite path is
    /// taken relative to it, as a spec's is relative to the spec. A name must be a report id
    /// (letters, digits, `_`, `-`) and its URL must parse.
    pub fn new(sources: BTreeMap<String, NamedSourceConfig>, base: &Path) -> Result<NamedSources, String> {
        let mut urls = BTreeMap::new();
        for (name, config) in sources {
            if !ream_core::validate::is_report_id(&name) {
                return Err(format!("[sources.{name}]: a source's name is letters, digits, `_` and `-`"));
            }
            let parsed = ream_sources::SourceUrl::parse(&config.url, Some(base))
                .map_err(|e| format!("[sources.{name}] url: {}", ream_core::redact(&e.to_string())))?;
            let url = match parsed {
                ream_sources::SourceUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
                _ => config.url,
            };
            urls.insert(name, url);
        }
        Ok(NamedSources(Arc::new(urls)))
    }

    /// The URL `given` stands for: the named source's, or `given` itself when it has a
    /// scheme. A name the config does not hold is a usage error naming the nearest one.
    pub fn resolve<'a>(&'a self, given: &'a str) -> Result<&'a str, EngineError> {
        if given.contains(':') {
            return Ok(given);
        }
        self.0.get(given).map(String::as_str).ok_or_else(|| {
            let known = match self.0.is_empty() {
                true => "no config file names any ([sources.NAME] url = …, with --config or REAM_CONFIG)".to_string(),
                false => format!("the config names {}", self.names().join(", ")),
            };
            let hint = ream_core::suggest::hint(given, self.0.keys().map(String::as_str));
            EngineError::Usage(format!(
                "source `{given}` is neither a URL (sqlite:PATH, postgres://…, mysql://…) nor a named source: {known}{hint}"
            ))
        })
    }

    /// Whether `given` is a name rather than a URL.
    pub fn is_name(given: &str) -> bool {
        !given.contains(':')
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> NamedSources {
        let mut m = BTreeMap::new();
        m.insert("shop".to_string(), NamedSourceConfig { url: "postgres://u@h/shop".into() });
        m.insert("local".to_string(), NamedSourceConfig { url: "sqlite:data/x.sqlite".into() });
        NamedSources::new(m, Path::new("/etc/ream")).unwrap()
    }

    #[test]
    fn a_name_stands_for_its_url_and_a_url_for_itself() {
        let s = shop();
        assert_eq!(s.resolve("shop").unwrap(), "postgres://u@h/shop");
        assert_eq!(s.resolve("local").unwrap(), "sqlite:/etc/ream/data/x.sqlite");
        assert_eq!(s.resolve("sqlite:y.db").unwrap(), "sqlite:y.db");
    }

    #[test]
    fn an_unknown_name_is_a_usage_error_with_the_name_meant() {
        let e = shop().resolve("shpo").unwrap_err().to_string();
        assert!(e.contains("source `shpo`") && e.contains("did you mean `shop`?"), "{e}");
        let e = NamedSources::default().resolve("shop").unwrap_err().to_string();
        assert!(e.contains("no config file names any"), "{e}");
    }

    #[test]
    fn a_bad_url_in_the_config_names_its_table_and_hides_the_password() {
        let mut m = BTreeMap::new();
        m.insert("x".to_string(), NamedSourceConfig { url: "oracle://u:secret@h/db".into() });
        let e = NamedSources::new(m, Path::new(".")).unwrap_err();
        assert!(e.starts_with("[sources.x] url:") && !e.contains("secret"), "{e}");
    }
}
