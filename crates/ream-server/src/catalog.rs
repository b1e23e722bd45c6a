//! The reports a server offers: every spec in `--reports DIR`, checked at load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ream_core::load::{load_file, LoadedSpec};
use ream_engine::Format;
use serde_json::json;

/// Reports by id (the spec's `report`).
#[derive(Default)]
pub struct Catalog {
    reports: BTreeMap<String, LoadedSpec>,
}

impl Catalog {
    /// Load every `.yaml`, `.yml`, `.toml` and `.json` spec in `dir`. Any invalid spec, or
    /// two specs with one id, fails the load with every problem listed.
    pub fn load_dir(dir: &Path) -> Result<Catalog, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| is_spec(p)).collect();
        paths.sort();
        let mut catalog = Catalog::default();
        let mut problems = Vec::new();
        for path in paths {
            match load_file(&path) {
                Ok(spec) => {
                    let id = spec.spec().report.clone();
                    if let Some(other) = catalog.reports.get(&id) {
                        problems.push(format!(
                            "{}: report `{id}` is also defined in {}",
                            path.display(),
                            other.path().unwrap_or(Path::new("?")).display()
                        ));
                    } else {
                        catalog.reports.insert(id, spec);
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn get(&self, id: &str) -> Option<&LoadedSpec> {
        self.reports.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &LoadedSpec)> {
        self.reports.iter()
    }

    pub fn len(&self) -> usize {
        self.reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }
}

fn is_spec(p: &Path) -> bool {
    p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "toml" | "json"))
}

/// What identifies the directory's specs now: each file's path, modification time and
/// size, sorted. A change in it means a reload.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_spec(p))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p, m.modified().ok()?, m.len()))
        })
        .collect();
    v.sort();
    v
}

/// A report as `GET /reports` lists it.
pub fn describe(id: &str, spec: &LoadedSpec) -> serde_json::Value {
    let s = spec.spec();
    let formats: Vec<&str> = Format::ALL.iter().filter(|f| f.available()).map(|f| f.name()).collect();
    json!({
        "id": id,
        "title": s.title,
        "description": s.description,
        "parameters": s.parameters,
        "formats": formats,
        "links": {
            "self": format!("/reports/{id}"),
            "outputs": formats.iter().map(|f| (f.to_string(), json!(format!("/reports/{id}.{f}")))).collect::<serde_json::Map<_, _>>(),
        },
    })
}
