//! A chart's data as the stages hand it to the renderers: series of (x, y) points, already
//! aggregated (and downsampled) in the report's one pass. HTML draws it as SVG; JSON
//! writes it for D3 or Vega.

use crate::spec::{ChartAggregate, ChartKind, TimeBucket};
use crate::value::Value;

/// One chart, complete.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    pub id: String,
    pub title: String,
    pub kind: ChartKind,
    pub stacked: bool,
    pub x_field: String,
    /// The axes' titles, where the spec sets them (`x.title`, `y.title`).
    pub x_title: Option<String>,
    pub y_title: Option<String>,
    pub x: XScale,
    pub y_aggregate: ChartAggregate,
    /// The aggregated field; `None` counts rows.
    pub y_field: Option<String>,
    /// The field that splits the series, if any.
    pub series_field: Option<String>,
    /// Series in display order; one unnamed series when there is no split.
    pub series: Vec<Series>,
    /// Rows the chart saw, and of those the rows it could not place (NULL x).
    pub rows: u64,
    pub skipped: u64,
    /// Set when points were reduced to fit `max_points`.
    pub downsampled: Option<Downsampled>,
}

/// What the x values are.
#[derive(Debug, Clone, PartialEq)]
pub enum XScale {
    /// Bucket starts (dates for day and coarser buckets, timestamps for minute and hour).
    Time(TimeBucket),
    /// Bin lower edges; a bin is `[x, x + width)`.
    Bins { width: f64 },
    /// Category names (text); the largest `top` by y, then `other` when anything was left.
    Categories { top: usize, other: bool },
    /// Raw values: numbers, dates or timestamps.
    Raw,
}

impl XScale {
    /// Whether x positions are along a continuous axis (rather than bands).
    pub fn continuous(&self) -> bool {
        !matches!(self, XScale::Categories { .. })
    }
}

/// One series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series field's value (`None`: the only series of an unsplit chart).
    pub name: Option<String>,
    /// Ordered by x (time, bins, raw), or by rank (categories).
    pub points: Vec<Point>,
}

/// One point. `y` is NULL for a bucket whose rows all had a NULL y.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: Value,
    pub y: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Downsampled {
    pub method: &'static str,
    /// Points before and after, over all series.
    pub points_in: u64,
    pub points_out: u64,
}

/// The label of the category that gathers everything outside the top N.
pub const OTHER: &str = "other";

impl ChartData {
    /// The x axis's title: the spec's, else the field.
    pub fn x_axis_title(&self) -> &str {
        self.x_title.as_deref().unwrap_or(&self.x_field)
    }

    /// The y axis's title: the spec's, else [`ChartData::y_label`].
    pub fn y_axis_title(&self) -> String {
        self.y_title.clone().unwrap_or_else(|| self.y_label())
    }

    /// `sum(total)`, `count(*)`, `total`.
    pub fn y_label(&self) -> String {
        match (&self.y_aggregate, &self.y_field) {
            (ChartAggregate::Value, Some(f)) => f.clone(),
            (a, Some(f)) => format!("{}({f})", a.name()),
            (a, None) => format!("{}(*)", a.name()),
        }
    }
}
