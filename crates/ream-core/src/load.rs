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
    let mut value = parse_value(text, format)?;
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
    let Deserialized { spec, mut errors, unknown, stand_ins } = deserialize_past_errors(value);
    let (unknown_keys, misspelt_in) = unknown_key_errors(unknown);
    errors.extend(unknown_keys);
    let parsed = spec.as_ref().and_then(|spec| {
        // What the checks find at a stand-in is ours, not the writer's; and an object
        // whose misspelt key was named (`summ: total`, did you mean `sum`?) need not also
        // be said to lack the key.
        let theirs = |e: &SpecError| {
            !stand_ins.iter().any(|p| e.key == *p || is_under(&e.key, p)) && !misspelt_in.contains(&e.key)
        };
        validate::parse_spec(spec).map_err(|es| errors.extend(es.into_iter().filter(theirs))).ok()
    });
    for e in &mut errors {
        locator.fill(e);
    }
    errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.col.unwrap_or(0)));
    match (spec, parsed, errors.is_empty()) {
        (Some(spec), Some(parsed), true) => Ok(LoadedSpec { spec, parsed, path: None, locator }),
        _ => Err(SpecErrors(errors)),
    }
}

/// An error for each unknown key, with the nearest key its place takes, and the places
/// where such a nearest key was found.
fn unknown_key_errors(unknown: Vec<String>) -> (Vec<SpecError>, Vec<String>) {
    let schema = (!unknown.is_empty()).then(crate::spec::json_schema);
    let mut errors = Vec::new();
    let mut misspelt_in = Vec::new();
    for path in unknown {
        let key = path_to_key(&path);
        let (parent, name) = key.rsplit_once('.').map_or((String::new(), key.clone()), |(p, n)| (p.into(), n.into()));
        let place = if parent.is_empty() { "the spec".to_string() } else { format!("`{parent}`") };
        let known = schema.as_ref().map(|s| crate::suggest::keys_at(s, &parent)).unwrap_or_default();
        let hint = crate::suggest::hint(&name, known.iter().map(String::as_str));
        if !hint.is_empty() {
            misspelt_in.push(parent);
        }
        errors.push(SpecError::new(key, format!("unknown key `{name}` in {place}{hint}")));
    }
    (errors, misspelt_in)
}

/// The most values one pass steps past: far more mistakes than anyone makes at once, and
/// a bound on the rounds a hostile spec can cost.
const MAX_BAD_VALUES: usize = 100;

/// What deserialising found: the spec (with the bad values set aside), every error, every
/// unknown key's path, and the paths given a stand-in (whose later errors are not the
/// writer's).
struct Deserialized {
    spec: Option<Spec>,
    errors: Vec<SpecError>,
    unknown: Vec<String>,
    stand_ins: Vec<String>,
}

/// The values tried, in turn, for a required key that is missing, until one has the type
/// the key takes.
const STAND_INS: [fn() -> serde_json::Value; 5] = [
    || serde_json::Value::String(String::new()),
    || serde_json::json!({}),
    || serde_json::json!([]),
    || serde_json::json!(0),
    || serde_json::json!(false),
];

/// Deserialise into [`Spec`], going on past each bad value so that one pass reports them
/// all: serde stops at the first, and a newcomer's 14 mistakes took 4 rounds of
/// `ream validate`. An unknown enum value is replaced by the nearest known one (which the
/// error suggests), so the checks after it see what was most likely meant; any other bad
/// value is removed, which leaves an optional key at its default. A required key that is
/// missing (or was removed) gets a stand-in of the type it takes, and nothing found at a
/// stand-in is reported. A bad array element, or the top, ends the pass.
fn deserialize_past_errors(mut value: serde_json::Value) -> Deserialized {
    let mut errors = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut stand_ins: Vec<(String, usize)> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_BAD_VALUES {
        let mut on_unknown = |path: serde_ignored::Path<'_>| {
            let path = path.to_string();
            if !unknown.contains(&path) {
                unknown.push(path);
            }
        };
        let de = serde_ignored::Deserializer::new(&value, &mut on_unknown);
        let e = match serde_path_to_error::deserialize::<_, Spec>(de) {
            Ok(spec) => return Deserialized { spec: Some(spec), errors, unknown, stand_ins: paths(stand_ins) },
            Err(e) => e,
        };
        let key = path_to_key(&e.path().to_string());
        let message = e.inner().to_string();
        // Inside a stand-in: a step to take, but not the writer's mistake.
        let ours = stand_ins.iter().any(|(p, _)| is_under(&key, p));
        let mut report = |e: SpecError| {
            if !ours {
                errors.push(e)
            }
        };
        let stepped = if let Some(tried) = stand_ins.iter_mut().find(|(p, _)| *p == key) {
            // Our own stand-in did not fit: the next type, or the first known variant.
            tried.1 += 1;
            let next = match unknown_variant(&message) {
                Some((_, known)) => known.first().map(|k| serde_json::Value::String(k.to_string())),
                None => STAND_INS.get(tried.1).map(|make| make()),
            };
            next.and_then(|v| value_at(&mut value, &key).map(|slot| *slot = v)).is_some()
        } else if let Some(field) = missing_field(&message) {
            let at = join(&key, field);
            if !removed.contains(&at) {
                report(SpecError::new(key.clone(), humanize(&message)));
            }
            let object = if key.is_empty() { Some(&mut value) } else { value_at(&mut value, &key) };
            let placed =
                object.and_then(serde_json::Value::as_object_mut).map(|m| m.insert(field.into(), STAND_INS[0]()));
            stand_ins.push((at, 0));
            placed.is_some()
        } else if let Some((given, known)) = unknown_variant(&message) {
            let meant = crate::suggest::nearest(given, known.iter().copied());
            let hint = crate::suggest::hint(given, known.iter().copied());
            report(SpecError::new(key.clone(), format!("{}{hint}", humanize(&message))));
            let stand_in = meant.or(known.first().copied()).unwrap_or_default().to_string();
            value_at(&mut value, &key).map(|v| *v = serde_json::Value::String(stand_in)).is_some()
        } else {
            report(SpecError::new(key.clone(), humanize(&message)));
            removed.push(key.clone());
            remove_at(&mut value, &key)
        };
        if !stepped {
            break;
        }
    }
    Deserialized { spec: None, errors, unknown, stand_ins: paths(stand_ins) }
}

fn paths(stand_ins: Vec<(String, usize)>) -> Vec<String> {
    stand_ins.into_iter().map(|(p, _)| p).collect()
}

/// Whether `key` is inside the value at `path` (`charts[0].x` is inside `charts[0]`).
fn is_under(key: &str, path: &str) -> bool {
    key.strip_prefix(path).is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// Remove the value at a key path from its object; false for the top or an array element.
fn remove_at(value: &mut serde_json::Value, key: &str) -> bool {
    let (parent, name) = key.rsplit_once('.').unwrap_or(("", key));
    if name.is_empty() || name.ends_with(']') {
        return false;
    }
    let parent = if parent.is_empty() { Some(value) } else { value_at(value, parent) };
    parent.and_then(serde_json::Value::as_object_mut).and_then(|m| m.remove(name)).is_some()
}

/// The field serde's "missing field `f`" names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The value and the known variants of serde's "unknown variant `x`, expected one of `a`,
/// `b`" (also "expected `a`" and "expected `a` or `b`").
fn unknown_variant(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (given, expected) = rest.split_once("`, expected ")?;
    let known = expected.split('`').skip(1).step_by(2).collect();
    Some((given, known))
}

fn parse_value(text: &str, format: SpecFormat) -> Result<serde_json::Value, SpecErrors> {
    let one = |e: SpecError| SpecErrors(vec![e]);
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
            one(SpecError { line, col, ..SpecError::new("", format!("malformed YAML: {}", first_line(&msg))) })
        }),
        SpecFormat::Json => serde_json::from_str(text).map_err(|e| {
            one(SpecError {
                line: Some(e.line()),
                col: Some(e.column()),
                ..SpecError::new("", format!("malformed JSON: {e}"))
            })
        }),
        SpecFormat::Toml => toml::from_str::<serde_json::Value>(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| offset_to_line_col(text, s.start))
                .map(|(l, c)| (Some(l), Some(c)))
                .unwrap_or((None, None));
            one(SpecError { line, col, ..SpecError::new("", format!("malformed TOML: {}", e.message())) })
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
        .replace("unknown variant `", "unknown value `")
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
        return String::new();
    }
    // serde_ignored writes an index as a segment (`charts.0.type`): `charts[0].type`.
    let mut key = String::with_capacity(p.len());
    for segment in p.split('.') {
        if !key.is_empty() && !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
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

    /// A newcomer's spec: each mistake once, in one pass, the misspelt names with their
    /// nearest right name.
    const MISTAKES: &str = r#"report: statement
titel: "Statements for {region}"
source:
  table: invoices
  snapshot: rn
  columns:
    id: invoices.id
    region: invoices.region
    customer: invoices.customer
    status: { expr: invoices.status, type: string }
    total: { expr: invoices.total, type: "decimal(12,2)" }
parameters:
  region: { type: strng, required: true }
groups:
  - by: regoin
  - by: customer
    footer: "{billed:curency} billed, {n} invoices"
variables:
  billed: { summ: total, reset: customer }
  n: { count: id, reset: custmer }
  avg_status: { avg: status }
columns:
  - { field: id, align: middle }
  - { field: total, format: curency }
page:
  orientation: landscap
  size: A44
charts:
  - type: barr
    x: { field: region, bucket: mnth }
    y: { sum: total }
"#;

    #[test]
    fn every_mistake_of_a_spec_is_reported_in_one_pass_with_the_name_meant() {
        let errs = load_str(MISTAKES, SpecFormat::Yaml).unwrap_err().0;
        let found: Vec<(&str, Option<usize>)> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            found,
            vec![
                ("titel", Some(2)),
                ("source.snapshot", Some(5)),
                ("parameters.region.type", Some(13)),
                ("groups[0].by", Some(15)),
                ("groups[1].footer", Some(17)),
                ("variables.billed.summ", Some(19)),
                ("variables.n.reset", Some(20)),
                ("variables.avg_status.avg", Some(21)),
                ("columns[0].align", Some(23)),
                ("columns[1].format", Some(24)),
                ("page.orientation", Some(26)),
                ("page.size", Some(27)),
                ("charts[0]", Some(29)),
                ("charts[0]", Some(29)),
                ("charts[0].type", Some(29)),
                ("charts[0].x.bucket", Some(30)),
            ],
            "{errs:#?}"
        );
        let meant: Vec<String> =
            errs.iter().filter_map(|e| e.message.split("did you mean ").nth(1)).map(String::from).collect();
        let expected = ["`title`?", "`run`?", "`string`?", "`region`?", "`currency`?", "`sum`?", "`customer`?"];
        let expected = expected.iter().chain(&["`currency`?", "`landscape`?", "`A4`?", "`month`?"]);
        assert_eq!(meant, expected.map(|s| s.to_string()).collect::<Vec<_>>());
        let message = |key: &str| errs.iter().find(|e| e.key == key).map(|e| e.message.clone()).unwrap_or_default();
        assert_eq!(message("variables.avg_status.avg"), "avg needs a numeric field, but `status` is string");
        assert!(message("columns[0].align").starts_with("unknown value `middle`, expected one of `left`"));
        let missing: Vec<_> = errs.iter().filter(|e| e.key == "charts[0]").map(|e| e.message.as_str()).collect();
        assert_eq!(missing, ["missing field `id`", "missing field `kind`"]);
    }

    #[test]
    fn a_required_value_of_the_wrong_type_is_one_error_and_the_checks_go_on() {
        let text = "report: r\nsource: {table: t, columns: {id: t.id}}\ngroups:\n  - by: [id]\n\
                    columns:\n  - { label: Total }\n  - { field: totl }\n";
        let errs = load_str(text, SpecFormat::Yaml).unwrap_err().0;
        let found: Vec<_> = errs.iter().map(|e| (e.key.as_str(), e.message.as_str())).collect();
        // The wrong `by` is not then also missing, and the stand-ins (an empty group field,
        // an empty column field) are not reported as unknown fields; `totl` is.
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(found[0].0, "groups[0].by");
        assert!(found[0].1.starts_with("wrong type: sequence"), "{}", found[0].1);
        assert_eq!(found[1], ("columns[0]", "missing field `field`"));
        assert_eq!(found[2].0, "columns[1].field");
        assert!(found[2].1.starts_with("unknown field `totl`"), "{}", found[2].1);
    }

    #[test]
    fn a_hostile_spec_of_countless_bad_values_ends_its_pass() {
        let columns: String = (0..500).map(|i| format!("  - {{ field: f{i}, align: x{i} }}\n")).collect();
        let text = format!("report: r\nsource: {{table: t}}\ncolumns:\n{columns}");
        let errs = load_str(&text, SpecFormat::Yaml).unwrap_err().0;
        assert_eq!(errs.len(), MAX_BAD_VALUES);
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
