//! ream-stages: synchronous steps between a source and a renderer. Each stage takes
//! events with `push` and appends what it produces to `out`; the runner alone owns
//! threads and queues. The `End` event is pushed through last, and is each stage's cue to
//! flush (the `finish` of a batch-oriented stage).
//!
//! - [`Group`] finds group breaks, across batch boundaries, in rows that arrive ordered
//!   by the group fields, and emits `GroupHeader` / `Rows` / `GroupFooter`.
//! - [`Accumulate`] computes variables (sum, count, count_distinct, avg, min, max, first,
//!   last, stddev, variance) and fills them into footers and `End`, resetting each
//!   variable after its group's footer.
//! - [`Chart`] aggregates the spec's charts as the rows go by (time buckets, bins,
//!   categories, series; M4 downsampling of raw points) and hands their data to `End`.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int64Array, RecordBatch, StringArray};
//! use arrow_schema::{DataType, Field, Schema};
//! use ream_core::{Event, Value};
//! use ream_core::spec::Aggregate;
//! use ream_stages::{StageConfig, VariableSpec};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("region", DataType::Utf8, true),
//!     Field::new("total", DataType::Int64, true),
//! ]));
//! let mut stages: Vec<_> = [
//!     StageConfig::Group { fields: vec![0] },
//!     StageConfig::Accumulate { variables: vec![VariableSpec {
//!         name: "total".into(), aggregate: Aggregate::Sum, field: Some(1), reset_level: Some(0) }] },
//! ].iter().map(|c| c.build(&schema).unwrap()).collect();
//! let batch = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(StringArray::from(vec!["East", "East", "West"])),
//!     Arc::new(Int64Array::from(vec![1, 2, 10])),
//! ]).unwrap();
//! let events = ream_stages::run_chain(&mut stages, vec![
//!     Event::Rows(batch), Event::End { variables: Arc::from(vec![]), rows: 0, charts: Arc::from(vec![]) }]).unwrap();
//! let footers: Vec<_> = events.iter().filter_map(|e| match e {
//!     Event::GroupFooter { key, variables, .. } => Some((key.clone(), variables[0].clone())),
//!     _ => None,
//! }).collect();
//! assert_eq!(footers, vec![(Value::Str("East".into()), Value::Int(3)),
//!                          (Value::Str("West".into()), Value::Int(10))]);
//! ```

mod accumulate;
mod chart;
pub mod downsample;
mod exact;
mod group;
pub mod rollup;

use arrow_schema::SchemaRef;
use ream_core::spec::ChartConfig;
use ream_core::Event;

pub use accumulate::Accumulate;
pub use chart::{position_of, Chart};
pub use group::Group;

/// A stage: takes events, appends the events it produces.
pub trait Stage: Send {
    fn push(&mut self, event: Event, out: &mut Vec<Event>) -> Result<(), StageError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage cannot apply to the schema (e.g. `sum` of a text field).
    #[error("{0}")]
    Config(String),
    #[error("{stage}: {message}")]
    Compute { stage: &'static str, message: String },
}

/// Neumaier's compensated sum step: `comp` keeps the low-order bits a plain sum drops.
#[inline]
pub(crate) fn neumaier(sum: &mut f64, comp: &mut f64, v: f64) {
    let t = *sum + v;
    if sum.abs() >= v.abs() {
        *comp += (*sum - t) + v;
    } else {
        *comp += (v - t) + *sum;
    }
    *sum = t;
}

/// A compensated sum's value. An infinite (or NaN) sum stands as it is, as SQL's `sum`
/// gives Infinity: its compensation is NaN (∞ − ∞), which made the sum NaN.
pub(crate) fn compensated(sum: f64, comp: f64) -> f64 {
    if sum.is_finite() {
        sum + comp
    } else {
        sum
    }
}

/// One variable for [`Accumulate`] (defined in ream-core: renderers read it too).
pub use ream_core::VariableSpec;

/// The closed set of stages, each built from its config against the batch schema.
#[derive(Debug, Clone)]
pub enum StageConfig {
    /// Group breaks on these field indices, outermost first.
    Group { fields: Vec<usize> },
    /// Variables, in the order of the values they produce.
    Accumulate { variables: Vec<VariableSpec> },
    /// Charts, as the spec declares them (fields are resolved against the schema).
    Chart { charts: Vec<ChartConfig> },
    /// Variables merged from an aggregated read's partials (aggregate pushdown); `rows`
    /// is the column of each group's row count.
    Rollup { variables: Vec<rollup::RollupVariable>, rows: usize },
}

impl StageConfig {
    pub fn build(&self, schema: &SchemaRef) -> Result<Box<dyn Stage>, StageError> {
        Ok(match self {
            StageConfig::Group { fields } => Box::new(Group::new(fields.clone())),
            StageConfig::Accumulate { variables } => Box::new(Accumulate::new(variables.clone(), schema)?),
            StageConfig::Chart { charts } => Box::new(Chart::new(charts.clone(), schema)?),
            StageConfig::Rollup { variables, rows } => Box::new(Accumulate::rollup(variables.clone(), *rows)?),
        })
    }
}

/// Push events through a chain of stages (for tests and simple callers; the engine
/// does the same one event at a time).
pub fn run_chain(stages: &mut [Box<dyn Stage>], events: Vec<Event>) -> Result<Vec<Event>, StageError> {
    let mut current = events;
    for stage in stages.iter_mut() {
        let mut next = Vec::new();
        for e in current {
            stage.push(e, &mut next)?;
        }
        current = next;
    }
    Ok(current)
}
