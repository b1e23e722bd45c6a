//! Loading a spec file: YAML, TOML or JSON by extension, into one serde model.
//!
//! The text is first parsed into a generic value (each format's own parser reports syntax
//! errors with line and column), then deserialised into [`Spec`] while collecting every
//! unknown key. Errors carry a key path; [`Locator`] turns a path into a line and column
//! by walking the document's parse events (YAML, and JSON, which YAML's parser reads too).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

use crate::error::{SpecError, SpecErrors};
use crate::parsed::Parsed;
use crate::spec::Spec;
use crate::validate;

/// The text formats a spec may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Yaml,
    Toml,
    Json,
}

impl SpecFormat {
    /// The format named by a file's extension (`.yaml`/`.yml`, `.toml`, `.json`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(SpecFormat::Yaml),
            "toml" => Some(SpecFormat::Toml),
            "json" => Some(SpecFormat::Json),
            _ => None,
        }
    }
}

/// A spec that parsed and passed every static check, with its parsed parts and where it
/// came from. Only loading makes one, so holding one is the proof of those checks.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    spec: Spec,
    parsed: Parsed,
    path: Option<PathBuf>,
    locator: Locator,
}

impl LoadedSpec {
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Its templates, formats, widths, page setup and aggregates, parsed.
    pub fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    /// The file it was loaded from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Attach file, line and column to errors found later (e.g. against the source schema).
    pub fn locate(&self, mut errors: Vec<SpecError>) -> SpecErrors {
        for e in &mut errors {
            self.locator.fill(e);
            e.file.clone_from(&self.path);
        }
        SpecErrors(errors)
    }

    /// The directory relative paths in the spec are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Read and check a spec file. Every problem found is returned at once.
pub fn load_file(path: &Path) -> Result<LoadedSpec, SpecErrors> {
    let one = |msg: String| SpecErrors(vec![SpecError { file: Some(path.to_path_buf()), ..SpecError::new("", msg) }]);
    let format = SpecFormat::from_path(path)
        .ok_or_else(|| one("unknown spec format: the file name must end in .yaml, .yml, .toml or .json".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| one(format!("cannot read: {e}")))?;
    let mut loaded = load_str(&text, format).map_err(|SpecErrors(mut es)| {
        for e in &mut es {
            e.file = Some(path.to_path_buf());
        }
        SpecErrors(es)
    })?;
    loaded.path = Some(path.to_path_buf());
    Ok(loaded)
}

/// Parse and check a spec given as text.
pub fn load_str(text: &str, format: SpecFormat) -> Result<LoadedSpec, SpecErrors> {
    let mut value = parse_value(text, format).map_err(|e| SpecErrors(vec![e]))?;
    let (locator, literals) = match format {
        SpecFormat::Yaml | SpecFormat::Json => Locator::from_yaml(text),
        SpecFormat::Toml => (Locator::from_toml(text), vec![]),
    };
    // Plain scalars whose number would not read back as written stay text.
    for (path, text) in literals {
        if let Some(v) = value_at(&mut value, &path) {
            *v = serde_json::Value::String(text);
        }
    }
    if format == SpecFormat::Toml {
        untag_toml_datetimes(&mut value);
    }
    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(&value, &mut on_unknown);
    let spec: Option<Spec> = match serde_path_to_error::deserialize(de) {
        Ok(spec) => Some(spec),
        Err(e) => {
            let key = path_to_key(&e.path().to_string());
            errors.push(SpecError::new(key, humanize(&e.inner().to_string())));
            None
        }
    };
    let schema = (!unknown.is_empty()).then(crate::spec::json_schema);
    for path in unknown {
        let key = path_to_key(&path);
        let (parent, name) = match key.rsplit_once('.') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), key.clone()),
        };
        let place = if parent.is_empty() { "the spec".to_string() } else { format!("`{parent}`") };
        let known = schema.as_ref().map(|s| crate::suggest::keys_at(s, &parent)).unwrap_or_default();
        let hint = crate::suggest::nearest(&name, known.iter().map(String::as_str))
            .map(|k| format!(": did you mean `{k}`?"))
            .unwrap_or_default();
        errors.push(SpecError::new(key, format!("unknown key `{name}` in {place}{hint}")));
    }
    let parsed = spec.as_ref().and_then(|spec| validate::parse_spec(spec).map_err(|es| errors.extend(es)).ok());
    for e in &mut errors {
        locator.fill(e);
    }
    errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.col.unwrap_or(0)));
    match (spec, parsed, errors.is_empty()) {
        (Some(spec), Some(parsed), true) => Ok(LoadedSpec { spec, parsed, path: None, locator }),
        _ => Err(SpecErrors(errors)),
    }
}

fn parse_value(text: &str, format: SpecFormat) -> Result<serde_json::Value, SpecError> {
    match format {
        // YAML 1.2 booleans: only true and false (`NO`, `off`, `y` stay text); `1_000` is
        // text too, as in YAML 1.2.
        SpecFormat::Yaml => serde_saphyr::from_str_with_options::<serde_json::Value>(
            text,
            serde_saphyr::options! { strict_booleans: true, underscored_numbers_as_strings: true },
        )
        .map_err(|e| {
            let msg = e.to_string();
            let (line, col) = first_line_col(&msg);
            SpecError { line, col, ..SpecError::new("", format!("malformed YAML: {}", first_line(&msg))) }
        }),
        SpecFormat::Json => serde_json::from_str(text).map_err(|e| SpecError {
            line: Some(e.line()),
            col: Some(e.column()),
            ..SpecError::new("", format!("malformed JSON: {e}"))
        }),
        SpecFormat::Toml => toml::from_str::<serde_json::Value>(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| offset_to_line_col(text, s.start))
                .map(|(l, c)| (Some(l), Some(c)))
                .unwrap_or((None, None));
            SpecError { line, col, ..SpecError::new("", format!("malformed TOML: {}", e.message())) }
        }),
    }
}

/// Whether a plain scalar reads as a number that would not write back as it was
/// written: a leading zero (`01234`, a code, became 1234.0) or a leading `+`.
fn is_lossy_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit();
    let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    numeric && (leading_zero || text.starts_with('+'))
}

/// The value at a located key path (`parameters.code.default`, `columns[1].format`).
fn value_at<'v>(value: &'v mut serde_json::Value, path: &str) -> Option<&'v mut serde_json::Value> {
    let mut v = value;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            v = v.get_mut(key)?;
        }
        for index in indices.split(']').filter(|s| !s.is_empty()) {
            v = v.get_mut(index.trim_start_matches('[').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

/// TOML's native dates and times arrive as `{"$__toml_private_datetime": "…"}`; a spec
/// takes them as the text they are (`default = 2024-01-01` is a date parameter's value).
fn untag_toml_datetimes(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if let (1, Some(serde_json::Value::String(s))) = (m.len(), m.get("$__toml_private_datetime")) {
                *v = serde_json::Value::String(s.clone());
                return;
            }
            m.values_mut().for_each(untag_toml_datetimes);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(untag_toml_datetimes),
        _ => {}
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// serde-saphyr's messages say "line N column M"; pick those out.
fn first_line_col(msg: &str) -> (Option<usize>, Option<usize>) {
    let find = |word: &str| {
        msg.find(word).and_then(|i| {
            msg[i + word.len()..].trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok())
        })
    };
    (find("line"), find("column"))
}

fn offset_to_line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// serde's messages list every expected field; keep them, but say it in our words.
fn humanize(msg: &str) -> String {
    msg.replace("invalid type: ", "wrong type: ")
        .replace("expected usize", "expected a whole number")
        .replace("expected u64", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
        .replace(
            "data did not match any variant of untagged enum ColumnSource",
            "expected an SQL expression, or {expr, type}",
        )
}

/// `source.columns.total` from serde_ignored's and serde_path_to_error's renderings
/// (`source.columns.total`, `groups[0].by`, `?` for options).
fn path_to_key(p: &str) -> String {
    let p = p.replace(".?", "").replace('?', "");
    let p = p.trim_start_matches('.');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Maps key paths (`groups[0].by`) to 1-based line and column.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    places: HashMap<String, (usize, usize)>,
}

impl Locator {
    fn fill(&self, e: &mut SpecError) {
        if e.line.is_some() {
            return;
        }
        // The nearest located ancestor: a missing key is reported at its parent.
        let mut key = e.key.as_str();
        loop {
            if let Some(&(l, c)) = self.places.get(key) {
                e.line = Some(l);
                e.col = Some(c);
                return;
            }
            match key.rfind(['.', '[']) {
                Some(i) => key = &key[..i],
                None if !key.is_empty() => key = "",
                None => return,
            }
        }
    }

    /// The places of every key, and the plain scalars to keep as text (path, text).
    fn from_yaml(text: &str) -> (Self, Vec<(String, String)>) {
        let mut walker = YamlWalker::default();
        let mut parser = Parser::new_from_str(text);
        // A document that does not parse has already been reported; positions are best effort.
        let _ = parser.load(&mut walker, false);
        (Locator { places: walker.places }, walker.literals)
    }

    /// TOML: find each `key =` line and `[table]` header. Keys are matched by their last
    /// segment under the current table, which is exact for the spec's shapes.
    fn from_toml(text: &str) -> Self {
        let mut places = HashMap::new();
        let mut table = String::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            let col = line.len() - t.len() + 1;
            if let Some(rest) = t.strip_prefix("[[") {
                let name = rest.split("]]").next().unwrap_or("").trim().to_string();
                let n = counts.entry(name.clone()).or_insert(0);
                table = format!("{name}[{n}]");
                *n += 1;
                places.insert(table.clone(), (i + 1, col));
            } else if let Some(rest) = t.strip_prefix('[') {
                table = rest.split(']').next().unwrap_or("").trim().to_string();
                places.insert(table.clone(), (i + 1, col));
            } else if let Some((k, _)) = t.split_once('=') {
                let k = k.trim().trim_matches('"');
                if !k.is_empty() && !k.starts_with('#') {
                    let key = if table.is_empty() { k.to_string() } else { format!("{table}.{k}") };
                    places.entry(key).or_insert((i + 1, col));
                }
            }
        }
        Locator { places }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct YamlWalker {
    stack: Vec<Frame>,
    places: HashMap<String, (usize, usize)>,
    literals: Vec<(String, String)>,
}

impl YamlWalker {
    /// The path of the node that starts now, advancing the parent's position.
    fn next_node_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }

    fn is_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'i> SpannedEventReceiver<'i> for YamlWalker {
    fn on_event(&mut self, ev: Event<'i>, span: Span) {
        let here = (span.start.line(), span.start.col() + 1);
        match ev {
            Event::Scalar(value, style, ..) => {
                if self.is_key_position() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &value);
                        self.places.insert(full, here);
                        *key = Some(value.into_owned());
                    }
                } else if let Some(p) = self.next_node_path() {
                    if style == saphyr_parser::ScalarStyle::Plain && is_lossy_number(&value) {
                        self.literals.push((p.clone(), value.into_owned()));
                    }
                    self.places.entry(p).or_insert(here);
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_node_path().unwrap_or_default();
                self.places.entry(path.clone()).or_insert(here);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.next_node_path().unwrap_or_default();
                self.places.entry(path.clone()).or_insert(here);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.next_node_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "report: r\nsource:\n  table: t\n  columns:\n    id: t.id\n    total: t.total\ngroups:\n  - by: id\n";

    #[test]
    fn yaml_reads_as_1_2_and_never_changes_what_was_written() {
        let text = "report: r\ntitle: NO\nsource:\n  table: t\nparameters:\n  code: { type: string, default: 01234 }\n  \
                    flag: { type: string, default: off }\n  n: { type: int, default: 7 }\n  signed: { type: string, default: +5 }\n";
        let spec = load_str(text, SpecFormat::Yaml).unwrap().spec;
        assert_eq!(spec.title.as_deref(), Some("NO"));
        let default = |p: &str| spec.parameters[p].default.clone().unwrap();
        assert_eq!(default("code"), serde_json::json!("01234"));
        assert_eq!(default("flag"), serde_json::json!("off"));
        assert_eq!(default("n"), serde_json::json!(7));
        assert_eq!(default("signed"), serde_json::json!("+5"));
    }

    #[test]
    fn toml_native_dates_are_dates() {
        let text =
            "report = \"r\"\n[source]\ntable = \"t\"\n[parameters.since]\ntype = \"date\"\ndefault = 2024-01-31\n";
        let spec = load_str(text, SpecFormat::Toml).unwrap().spec;
        assert_eq!(spec.parameters["since"].default, Some(serde_json::json!("2024-01-31")));
        let bound = crate::params::bind(&spec.parameters, &[]).unwrap();
        assert_eq!(bound["since"], crate::params::ParamValue::One(crate::Value::Date(19753)));
    }

    #[test]
    fn a_good_yaml_spec_loads() {
        let s = load_str(GOOD, SpecFormat::Yaml).unwrap();
        assert_eq!(s.spec.report, "r");
        assert_eq!(s.spec.groups[0].by, "id");
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line_and_column() {
        let text = "report: r\nsource:\n  table: t\n  colums: {}\ngroops: []\n";
        let errs = load_str(text, SpecFormat::Yaml).unwrap_err().0;
        let keys: Vec<_> = errs.iter().map(|e| (e.key.as_str(), e.line, e.col)).collect();
        assert_eq!(keys, vec![("source.colums", Some(4), Some(3)), ("groops", Some(5), Some(1))]);
        // Each with the nearest key of its own place.
        assert!(errs[0].message.ends_with("unknown key `colums` in `source`: did you mean `columns`?"), "{}", errs[0]);
        assert!(errs[1].message.ends_with("unknown key `groops` in the spec: did you mean `groups`?"), "{}", errs[1]);
    }

    #[test]
    fn a_wrong_type_names_the_key_and_its_place() {
        let text = "report: r\nsource:\n  table: t\n  batch_size: lots\n";
        let errs = load_str(text, SpecFormat::Yaml).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].key, "source.batch_size");
        assert_eq!((errs[0].line, errs[0].col), (Some(4), Some(3)));
        assert!(errs[0].message.contains("wrong type"), "{}", errs[0]);
    }

    #[test]
    fn malformed_yaml_gives_a_position() {
        let errs = load_str("report: [unclosed\nsource: {", SpecFormat::Yaml).unwrap_err().0;
        assert!(errs[0].message.starts_with("malformed YAML"), "{}", errs[0]);
        assert!(errs[0].line.is_some(), "{:?}", errs[0]);
    }

    #[test]
    fn json_and_toml_specs_load_the_same_model() {
        let json =
            r#"{"report":"r","source":{"table":"t","columns":{"id":"t.id","total":"t.total"}},"groups":[{"by":"id"}]}"#;
        let toml = "report = \"r\"\n[source]\ntable = \"t\"\n[source.columns]\nid = \"t.id\"\ntotal = \"t.total\"\n[[groups]]\nby = \"id\"\n";
        for (text, f) in [(json, SpecFormat::Json), (toml, SpecFormat::Toml)] {
            let s = load_str(text, f).unwrap();
            assert_eq!(s.spec.groups[0].by, "id");
            assert_eq!(s.spec.source.columns.len(), 2);
        }
    }

    #[test]
    fn a_cache_parses_its_ttl_and_bytes_and_a_bad_one_is_located() {
        let ok = load_str("report: r\nsource: {table: t}\ncache: {ttl: 10m, max_bytes: 64MiB}\n", SpecFormat::Yaml);
        let policy = ok.unwrap().parsed().cache().unwrap();
        assert_eq!((policy.ttl.as_secs(), policy.max_bytes), (600, 64 << 20));
        let errs = load_str("report: r\nsource: {table: t}\ncache:\n  ttl: soon\n", SpecFormat::Yaml).unwrap_err().0;
        assert_eq!((errs[0].key.as_str(), errs[0].line), ("cache.ttl", Some(4)), "{}", errs[0]);
        assert!(errs[0].message.contains("expected a duration"), "{}", errs[0]);
    }

    #[test]
    fn json_errors_are_located_too() {
        let json = "{\n  \"report\": \"r\",\n  \"source\": {\"table\": \"t\"},\n  \"colour\": 1\n}";
        let errs = load_str(json, SpecFormat::Json).unwrap_err().0;
        assert_eq!(errs[0].key, "colour");
        assert_eq!(errs[0].line, Some(4));
    }
}
