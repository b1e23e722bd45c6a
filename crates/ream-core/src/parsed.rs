//! What loading a spec parses once: its locale, templates, display formats, column
//! widths, page setup and each variable's aggregate. A [`Parsed`] exists only for a spec
//! whose every one of these parsed, so the engine reads them with no `expect` on spec
//! data (finding 2 of issue 14 was a panic in a re-parse the validator had tried
//! differently).
//!
//! ```
//! use ream_core::load::{load_str, SpecFormat};
//! use ream_core::template::Format;
//!
//! let yaml = "report: r\nsource: {table: t}\ncolumns: [{field: d, format: \"date:%d.%m.%Y\"}]\n";
//! let loaded = load_str(yaml, SpecFormat::Yaml).unwrap();
//! assert_eq!(loaded.parsed().column_format(0), Format::parse("date:%d.%m.%Y").unwrap());
//! ```

use crate::error::SpecError;
use crate::page::{ColumnWidth, PageSetup};
use crate::spec::{Aggregate, Spec};
use crate::template::{Format, Locale, Template};

/// The parsed parts of a spec; see the module docs.
#[derive(Debug, Clone)]
pub struct Parsed {
    locale: Locale,
    title: Option<Template>,
    page_header: Option<Template>,
    page_footer: Option<Template>,
    summary: Option<Template>,
    no_data: Option<Template>,
    /// Header and footer of each group, in spec order.
    group_bands: Vec<(Option<Template>, Option<Template>)>,
    formats: Vec<Format>,
    widths: Vec<ColumnWidth>,
    page: PageSetup,
    /// The aggregate and field of each variable, in spec order.
    aggregates: Vec<(Aggregate, String)>,
    /// `source.session`: each setting's name and value template.
    session: Vec<(String, Template)>,
    cache: Option<CachePolicy>,
    burst: Option<BurstPlan>,
}

/// `burst`, parsed: the field, and the templates of each burst's file name, recipient
/// and title.
#[derive(Debug, Clone)]
pub struct BurstPlan {
    pub by: String,
    pub filename: Template,
    pub to: Option<Template>,
    pub title: Option<Template>,
}

/// `cache`, parsed: how long an output stays fresh, and this report's bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl: std::time::Duration,
    pub max_bytes: u64,
}

/// A report's cached outputs in all, at most, unless its `cache.max_bytes` says.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

fn parse_cache(spec: &Spec, errors: &mut Vec<SpecError>) -> Option<CachePolicy> {
    let c = spec.cache.as_ref()?;
    let ttl = crate::units::parse_duration(&c.ttl).map_err(|e| errors.push(SpecError::new("cache.ttl", e)));
    let max_bytes = match c.max_bytes.as_deref().map(crate::units::parse_bytes) {
        None => Ok(DEFAULT_CACHE_BYTES),
        Some(r) => r.map_err(|e| errors.push(SpecError::new("cache.max_bytes", e))),
    };
    Some(CachePolicy { ttl: ttl.ok()?, max_bytes: max_bytes.ok()? })
}

/// One template of the spec: its key (for errors) and its parsed form.
pub(crate) struct BandTemplate<'a> {
    pub key: String,
    pub template: &'a Template,
    pub band: crate::validate::Band,
}

impl Parsed {
    /// Parse every part, pushing an error (with its key) for each that does not parse.
    /// The result holds a default in each failed place, so it is only handed out when
    /// `errors` stayed empty.
    pub(crate) fn parse(spec: &Spec, errors: &mut Vec<SpecError>) -> Parsed {
        let mut fail = |key: String, e: String| errors.push(SpecError::new(key, e));
        let locale = match spec.locale.as_deref().map(Locale::parse) {
            Some(Err(e)) => {
                fail("locale".into(), e);
                Locale::default()
            }
            l => l.and_then(Result::ok).unwrap_or_default(),
        };
        let mut template = |key: String, text: &Option<String>| match text.as_deref().map(Template::parse)? {
            Ok(t) => Some(t),
            Err(e) => {
                fail(key, e);
                None
            }
        };
        let title = template("title".into(), &spec.title);
        let page_header = template("page_header".into(), &spec.page_header);
        let page_footer = template("page_footer".into(), &spec.page_footer);
        let summary = template("summary".into(), &spec.summary);
        let no_data = template("no_data".into(), &spec.no_data);
        let group_bands = (spec.groups.iter().enumerate())
            .map(|(i, g)| {
                (template(format!("groups[{i}].header"), &g.header), template(format!("groups[{i}].footer"), &g.footer))
            })
            .collect();
        let session = (spec.source.session.iter())
            .filter_map(|(name, text)| {
                Some((name.clone(), template(format!("source.session.{name}"), &Some(text.clone()))?))
            })
            .collect();
        let burst = spec.burst.as_ref().and_then(|b| {
            let filename = template("burst.filename".into(), &Some(b.filename.clone()));
            let to = template("burst.to".into(), &b.to);
            let title = template("burst.title".into(), &b.title);
            Some(BurstPlan { by: b.by.clone(), filename: filename?, to, title })
        });
        let (formats, widths) = parse_columns(spec, errors);
        let page = spec.page.resolve().unwrap_or_else(|problems| {
            errors.extend(problems.into_iter().map(|(key, msg)| SpecError::new(format!("page.{key}"), msg)));
            PageSetup::default()
        });
        let aggregates = spec
            .variables
            .values()
            .map(|v| v.aggregates().first().map_or((Aggregate::Count, "*".into()), |(a, f)| (*a, f.to_string())))
            .collect();
        let cache = parse_cache(spec, errors);
        Parsed {
            locale,
            title,
            page_header,
            page_footer,
            summary,
            no_data,
            group_bands,
            formats,
            widths,
            page,
            aggregates,
            session,
            cache,
            burst,
        }
    }

    /// `burst`: None when the report does not burst.
    pub fn burst(&self) -> Option<&BurstPlan> {
        self.burst.as_ref()
    }

    /// `cache`: None when the report is not cached.
    pub fn cache(&self) -> Option<CachePolicy> {
        self.cache
    }

    /// `source.session`: each PostgreSQL setting's name and value template.
    pub fn session(&self) -> &[(String, Template)] {
        &self.session
    }

    pub fn locale(&self) -> Locale {
        self.locale
    }

    pub fn title(&self) -> Option<&Template> {
        self.title.as_ref()
    }

    pub fn page_header(&self) -> Option<&Template> {
        self.page_header.as_ref()
    }

    pub fn page_footer(&self) -> Option<&Template> {
        self.page_footer.as_ref()
    }

    pub fn summary(&self) -> Option<&Template> {
        self.summary.as_ref()
    }

    pub fn no_data(&self) -> Option<&Template> {
        self.no_data.as_ref()
    }

    /// The header and footer of group `i` (none past the last group).
    pub fn group_bands(&self, i: usize) -> (Option<&Template>, Option<&Template>) {
        self.group_bands.get(i).map_or((None, None), |(h, f)| (h.as_ref(), f.as_ref()))
    }

    /// The display format of column `i` (`Raw` when it gives none).
    pub fn column_format(&self, i: usize) -> Format {
        self.formats.get(i).cloned().unwrap_or(Format::Raw)
    }

    pub fn column_width(&self, i: usize) -> ColumnWidth {
        self.widths.get(i).cloned().unwrap_or_default()
    }

    /// The page setup, fonts not yet read.
    pub fn page(&self) -> &PageSetup {
        &self.page
    }

    /// The aggregate and field (`*` for rows) of variable `i`.
    pub fn aggregate(&self, i: usize) -> Option<(Aggregate, &str)> {
        self.aggregates.get(i).map(|(a, f)| (*a, f.as_str()))
    }

    /// Every template with the band it belongs to, for the checks of the names it uses.
    pub(crate) fn band_templates(&self) -> Vec<BandTemplate<'_>> {
        use crate::validate::Band;
        let mut all: Vec<(String, Option<&Template>, Band)> = vec![
            ("title".into(), self.title(), Band::Title),
            ("page_header".into(), self.page_header(), Band::PageHeaderFooter),
            ("page_footer".into(), self.page_footer(), Band::PageHeaderFooter),
            ("summary".into(), self.summary(), Band::Summary),
            ("no_data".into(), self.no_data(), Band::NoData),
        ];
        for (i, (h, f)) in self.group_bands.iter().enumerate() {
            all.push((format!("groups[{i}].header"), h.as_ref(), Band::GroupHeader(i)));
            all.push((format!("groups[{i}].footer"), f.as_ref(), Band::GroupFooter(i)));
        }
        all.into_iter().filter_map(|(key, t, band)| Some(BandTemplate { key, template: t?, band })).collect()
    }
}

/// Each column's display format and width.
fn parse_columns(spec: &Spec, errors: &mut Vec<SpecError>) -> (Vec<Format>, Vec<ColumnWidth>) {
    let mut formats = Vec::new();
    let mut widths = Vec::new();
    for (i, c) in spec.columns.iter().enumerate() {
        formats.push(match c.format.as_deref().map(Format::parse) {
            Some(Err(e)) => {
                errors.push(SpecError::new(format!("columns[{i}].format"), e));
                Format::Raw
            }
            f => f.and_then(Result::ok).unwrap_or(Format::Raw),
        });
        widths.push(match c.width.as_ref().map(ColumnWidth::parse) {
            Some(Err(e)) => {
                errors.push(SpecError::new(format!("columns[{i}].width"), e));
                ColumnWidth::default()
            }
            w => w.and_then(Result::ok).unwrap_or_default(),
        });
    }
    (formats, widths)
}

#[cfg(test)]
mod tests {
    use crate::load::{load_str, SpecFormat};
    use crate::page::ColumnWidth;
    use crate::spec::Aggregate;
    use crate::template::Format;

    #[test]
    fn a_loaded_spec_holds_its_parts_parsed() {
        let yaml = "report: r\nsource: {table: t}\nlocale: de-DE\ntitle: \"Orders {min}\"\n\
                    parameters: {min: {type: int, default: 1}}\n\
                    groups: [{by: region, footer: \"{n} orders\"}]\n\
                    variables: {n: {count: \"*\", reset: region}, total: {sum: amount}}\n\
                    columns: [{field: amount, format: \"number:2\", width: 30mm}]\n\
                    page: {size: A5}\n";
        let loaded = load_str(yaml, SpecFormat::Yaml).unwrap();
        let parsed = loaded.parsed();
        assert_eq!(parsed.title().map(|t| t.names().collect::<Vec<_>>()), Some(vec!["min"]));
        assert!(parsed.group_bands(0).0.is_none() && parsed.group_bands(0).1.is_some());
        assert_eq!(parsed.column_format(0), Format::parse("number:2").unwrap());
        assert_eq!(parsed.column_width(0), ColumnWidth::parse(&crate::page::LengthValue::Text("30mm".into())).unwrap());
        assert_eq!(parsed.page().width, 419.53);
        assert_eq!(parsed.aggregate(0), Some((Aggregate::Count, "*")));
        assert_eq!(parsed.aggregate(1), Some((Aggregate::Sum, "amount")));
        assert_eq!(parsed.locale(), crate::template::Locale::parse("de-DE").unwrap());
    }

    #[test]
    fn every_part_that_does_not_parse_is_an_error_at_its_key() {
        let yaml = "report: r\nsource: {table: t}\nlocale: xx-!!\ntitle: \"{unclosed\"\n\
                    columns: [{field: a, format: \"date:%Q\"}, {field: b, width: wide}]\n\
                    page: {size: huge}\n";
        let errors = load_str(yaml, SpecFormat::Yaml).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in ["locale", "title", "columns[0].format", "columns[1].width", "page.size"] {
            assert!(keys.contains(&key), "no error at {key}: {keys:?}");
        }
        assert!(errors.iter().all(|e| e.line.is_some()), "every error has its line: {errors:?}");
    }
}
