//! What a split asks for: where the parts of one output end. The engine cuts them
//! (`ream_engine::split`); the CLI's flags and a request's `split` both give this.

use ream_render::Format;

/// Where parts end: after `rows` rows, near `bytes` bytes (with both, whichever comes
/// first), and where the `by` field's value changes. At least one is set ([`Split::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    rows: Option<u64>,
    bytes: Option<u64>,
    by: Option<String>,
}

/// The formats a split can write: each part of them is a file of its own.
pub const SPLIT_FORMATS: [Format; 4] = [Format::Csv, Format::Ndjson, Format::Parquet, Format::Xlsx];

/// A format whose parts would not be files of their own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be split: split outputs are csv, ndjson, parquet, xlsx")]
pub struct Unsplittable(pub Format);

impl Split {
    /// A split from the CLI's or a request's options; `None` when none is given.
    pub fn new(rows: Option<u64>, bytes: Option<u64>, by: Option<String>) -> Result<Option<Split>, String> {
        if rows == Some(0) {
            return Err("a part's row limit must be at least 1".into());
        }
        if bytes == Some(0) {
            return Err("a part's byte limit must be at least 1".into());
        }
        if by.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err("the split field is empty".into());
        }
        let any = rows.is_some() || bytes.is_some() || by.is_some();
        Ok(any.then_some(Split { rows, bytes, by }))
    }

    /// The most rows in a part.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }

    /// About the most bytes in a part.
    pub fn bytes(&self) -> Option<u64> {
        self.bytes
    }

    /// The field whose values make the hive partitions.
    pub fn by(&self) -> Option<&str> {
        self.by.as_deref()
    }

    /// Refuse a format whose parts would not be files of their own.
    pub fn check_format(&self, format: Format) -> Result<(), Unsplittable> {
        match SPLIT_FORMATS.contains(&format) {
            true => Ok(()),
            false => Err(Unsplittable(format)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_refuses_zero_limits_an_empty_field_and_a_format_without_parts() {
        assert_eq!(Split::new(None, None, None), Ok(None));
        assert!(Split::new(Some(0), None, None).unwrap_err().contains("at least 1"));
        assert!(Split::new(None, Some(0), None).unwrap_err().contains("at least 1"));
        assert!(Split::new(None, None, Some(" ".into())).unwrap_err().contains("empty"));
        let s = Split::new(Some(7), Some(5), Some("region".into())).unwrap().unwrap();
        assert_eq!((s.rows(), s.bytes(), s.by()), (Some(7), Some(5), Some("region")));
        assert_eq!(
            s.check_format(Format::Pdf).unwrap_err().to_string(),
            "pdf cannot be split: split outputs are csv, ndjson, parquet, xlsx"
        );
        // The message names every format a split writes, and only those.
        let names: Vec<&str> = SPLIT_FORMATS.iter().map(|f| f.name()).collect();
        assert!(Unsplittable(Format::Html).to_string().ends_with(&names.join(", ")));
        assert!(Format::ALL.iter().all(|&f| s.check_format(f).is_ok() == SPLIT_FORMATS.contains(&f)));
    }
}
