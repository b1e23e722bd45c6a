//! ream-engine: a spec (or an ad-hoc table/SQL) and parameters become a plan, and a plan
//! becomes a run: source, stages and renderer on their own threads, joined by bounded
//! queues, producing the output in chunks.
//!
//! ```no_run
//! use ream_core::CancelToken;
//! use ream_engine::{prepare, start, AdHoc, Job, RunOptions};
//! use ream_render::Format;
//!
//! let mut opts = RunOptions::new(Format::Csv);
//! opts.source = Some("sqlite:demo/demo.sqlite".into());
//! let job = Job::AdHoc(AdHoc { table: Some("invoices".into()), ..Default::default() });
//! let prepared = prepare(job, &opts, CancelToken::new())?; // every user error surfaces here
//! let summary = start(prepared).write_file("invoices.csv".as_ref())?;
//! println!("{} rows", summary.rows);
//! # Ok::<(), ream_engine::EngineError>(())
//! ```

mod burst;
mod encoding;
mod manifest;
mod named;
mod outlet;
pub mod output;
mod parallel;
mod plan;
mod pushdown;
mod reading;
mod run;
mod spec_sql;
pub mod split;

pub use encoding::{Compression, Encoder};
pub use manifest::{Manifest, ManifestFile, PartStore, PendingPart};
pub use named::{NamedSourceConfig, NamedSources};
pub use output::{DirParts, OutputFile};
pub use plan::{
    check_against_source, check_request, describe_table, explain, ping, prepare, spec_source, AdHoc, Checked, Job,
    Prepared, RunOptions, TableShape,
};
pub use reading::{Progress, CHUNK_BYTES};
pub use ream_render::{Format, ParquetCompression, ParquetConfig, RenderOptions};
pub use ream_sources::{BatchLimit, CountMode, Resume, ResumeLog, Snapshot};
pub use run::{start, Run, Summary};
pub use split::{PartId, PartNames, Split};

use ream_core::{ParamErrors, SpecErrors};
use ream_sources::SourceError;

/// Everything a run can fail with, with the report and stage it failed in.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Spec(SpecErrors),
    #[error("{0}")]
    Params(ParamErrors),
    #[error("{0}")]
    Usage(String),
    /// The report uses a claim the actor lacks (HTTP 403; on the CLI, give `--claim`).
    #[error("report `{report}`: {source}")]
    Claim {
        report: String,
        #[source]
        source: ream_core::actor::ClaimError,
    },
    #[error("{}source: {source}", report.as_ref().map(|r| format!("report `{r}`: ")).unwrap_or_default())]
    Source { report: Option<String>, source: SourceError },
    #[error("report `{report}`: stage: {message}")]
    Stage { report: String, message: String },
    #[error("report `{report}`: render: {message}")]
    Render { report: String, message: String },
    #[error("output: {0}")]
    Output(String),
    #[error("cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The message without any SQL text, for callers who may not see a report's SQL (a
    /// server shows it to admins only).
    pub fn without_sql(&self) -> String {
        match self {
            EngineError::Source { report, source } => format!(
                "{}source: {}",
                report.as_ref().map(|r| format!("report `{r}`: ")).unwrap_or_default(),
                source.without_sql()
            ),
            EngineError::Spec(errors) => errors.without_excerpts().to_string(),
            other => other.to_string(),
        }
    }

    /// The user's input is at fault (exit code 2, HTTP 4xx): the spec, a parameter, the
    /// request, or a value that does not fit its column.
    pub fn is_bad_input(&self) -> bool {
        match self {
            EngineError::Spec(_) | EngineError::Params(_) | EngineError::Usage(_) | EngineError::Claim { .. } => true,
            EngineError::Source { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}
