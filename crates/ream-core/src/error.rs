//! Spec and parameter errors. Each names where the problem is: the file, the line and
//! column when known, and the key path (`groups[0].by`).

use std::fmt;
use std::path::PathBuf;

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: Option<PathBuf>,
    /// 1-based line and column, when the position is known.
    pub line: Option<usize>,
    pub col: Option<usize>,
    /// The key path, e.g. `source.columns.total` or `groups[1].by`; empty for the root.
    pub key: String,
    pub message: String,
    /// The spec's own text at fault, shown once under the message with a caret line: the
    /// SQL fragment a database refused (`totl > :min` / `^^^^`). It may be SQL, which
    /// only admins see over HTTP ([`SpecErrors::without_excerpts`]).
    pub excerpt: Option<String>,
}

impl SpecError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError { file: None, line: None, col: None, key: key.into(), message: message.into(), excerpt: None }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let (Some(l), Some(c)) = (self.line, self.col) {
                write!(f, ":{l}:{c}")?;
            }
            f.write_str(": ")?;
        } else if let (Some(l), Some(c)) = (self.line, self.col) {
            write!(f, "{l}:{c}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        for line in self.excerpt.iter().flat_map(|e| e.lines()) {
            write!(f, "\n  | {line}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// The errors without their excerpts, for callers who may not see a report's SQL.
    pub fn without_excerpts(&self) -> SpecErrors {
        SpecErrors(self.0.iter().map(|e| SpecError { excerpt: None, ..e.clone() }).collect())
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A parameter that is unknown, missing, or whose value does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{name}`: {message}")]
pub struct ParamError {
    pub name: String,
    pub message: String,
}

/// Every parameter problem found (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParamErrors(pub Vec<ParamError>);

impl fmt::Display for ParamErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
