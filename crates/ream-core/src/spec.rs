//! The report spec: one serde model for YAML, TOML and JSON, documented key by key in
//! `docs/spec.md`. `ream schema` prints the JSON Schema derived from these types.
//!
//! Unknown keys are not rejected by serde here: the loader collects every one of them
//! (with `serde_ignored`) so that `ream validate` can report them all at once, each with
//! its line and column. The JSON Schema still forbids them (`deny_unknown_fields` for
//! schemars only).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A report spec.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Spec {
    /// The report id: letters, digits, `_` and `-`. Used in file names, URLs and metrics.
    pub report: String,
    /// The title band; may use `{parameter}` placeholders.
    #[serde(default)]
    pub title: Option<String>,
    /// A free description, shown in listings.
    #[serde(default)]
    pub description: Option<String>,
    /// Number conventions in banded outputs (separators, currency placement): `en-US`
    /// (default), `en-GB`, `de-DE`, `de-CH`, `fr-FR`, `es-ES`, `it-IT`, `nl-NL`, `pt-BR`,
    /// `sv-SE`, `ja-JP`. Machine formats are not affected.
    #[serde(default)]
    pub locale: Option<String>,
    /// Who may run the report on a server with authentication. When absent, any
    /// authenticated actor may.
    #[serde(default)]
    pub access: Option<AccessConfig>,
    /// Where the rows come from.
    pub source: SourceConfig,
    /// Typed parameters, always bound, never pasted into SQL. Referenced as `:name` in SQL.
    #[serde(default)]
    pub parameters: IndexMap<String, ParameterConfig>,
    /// Group levels, outermost first. The stream is ordered by these fields, then the key.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// Variables (aggregates) computed in the same pass, with a reset scope.
    #[serde(default)]
    pub variables: IndexMap<String, VariableConfig>,
    /// The detail band: which fields are output, in which order, with labels and formats.
    /// When absent, every source field is output.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// `false` makes a summary report: no detail rows, only group footers and totals.
    /// csv and ndjson then write one record per innermost group (its keys and variables),
    /// or one record of the variables when there are no groups.
    #[serde(default = "yes")]
    pub detail: bool,
    /// Page header band (paged outputs); may use `{page}` and `{pages}`.
    #[serde(default)]
    pub page_header: Option<String>,
    /// Page footer band (paged outputs); may use `{page}` and `{pages}`.
    #[serde(default)]
    pub page_footer: Option<String>,
    /// The summary band, after the last row: may use variables and parameters.
    #[serde(default)]
    pub summary: Option<String>,
    /// Shown instead of the detail when no row matches.
    #[serde(default)]
    pub no_data: Option<String>,
    /// Page setup of paged outputs (PDF): size, orientation, margins, font size, zebra
    /// rows and rules.
    #[serde(default)]
    pub page: crate::page::PageConfig,
    /// Charts, aggregated in the same pass over the rows as the report (never a second
    /// read). HTML shows them as inline SVG after the table; JSON carries their series.
    #[serde(default)]
    pub charts: Vec<ChartConfig>,
    /// CSV output options.
    #[serde(default)]
    pub csv: Option<CsvConfig>,
    /// `ream serve`: a download identical to one made within `ttl` (same parameters,
    /// format, encoding and the claims the spec reads) is served from the output store,
    /// with no query.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Bursting: one complete output per value of a field, each with its own file name
    /// and recipient (`ream run --burst-dir`, scheduled mail). See docs/schedules.md.
    #[serde(default)]
    pub burst: Option<BurstConfig>,
}

/// A burst report: one output per value of `by`, in the order of `by` first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BurstConfig {
    /// The field whose values make the bursts (a customer id).
    pub by: String,
    /// Each burst's file name: a template of the burst's fields (from its first row) and
    /// the parameters, `"statement-{customer_id}.pdf"`.
    pub filename: String,
    /// Each burst's recipient, the same kind of template: `"{email}"`.
    #[serde(default)]
    pub to: Option<String>,
    /// Each burst's title, replacing `title` (the same kind of template).
    #[serde(default)]
    pub title: Option<String>,
}

/// The result cache of a report (`ream serve` downloads).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an output stays fresh: `30s`, `10m`, `2h`, `1d`.
    pub ttl: String,
    /// This report's cached outputs in all, at most (default `256MiB`): past it the
    /// oldest go first.
    #[serde(default)]
    pub max_bytes: Option<String>,
}

/// CSV output options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CsvConfig {
    /// Text that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
    /// a tab or a carriage return) is written with a leading `'`, so opening the file
    /// runs nothing (CSV injection). `ream run --csv-neutralize-formulas` does the same.
    #[serde(default)]
    pub neutralize_formulas: bool,
}

/// Who may run a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AccessConfig {
    /// The actor needs one of these roles (the token's roles claim, or an API token's
    /// `roles`). The server's admin role may run every report.
    #[serde(default)]
    pub roles: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The source of a report: a table (with joins and computed columns) or a whole SELECT.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SourceConfig {
    /// The database, as a URL: `sqlite:PATH`. A relative SQLite path is relative to the
    /// spec file. `ream run --source` overrides it.
    #[serde(default)]
    pub url: Option<String>,
    /// The base table (or view). Exclusive with `sql`.
    #[serde(default)]
    pub table: Option<String>,
    /// A whole SELECT; keyset paging wraps it. Exclusive with `table`, `joins`, `columns`.
    #[serde(default)]
    pub sql: Option<String>,
    /// The unique key (field names). Enables keyset paging and resume. On a SQLite rowid
    /// table with no key, the rowid is used.
    #[serde(default)]
    pub key: Vec<String>,
    /// JOIN clauses appended after the table, verbatim (no user input: parameters go in `where`).
    #[serde(default)]
    pub joins: Vec<String>,
    /// Field name -> SQL expression (pushed down to the database). When absent, every
    /// column of the table is a field.
    #[serde(default)]
    pub columns: IndexMap<String, ColumnSource>,
    /// A filter, with `:parameter` placeholders that are bound, never pasted.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// How to page: `auto` (default), `keyset`, `cursor` or `offset`.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Rows per batch (default 4096).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Which snapshot the run reads on a database server: `run` (default, one consistent
    /// snapshot for the whole run) or `statement` (each page sees the latest data, and no
    /// long transaction is held). SQLite always reads one snapshot.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
    /// PostgreSQL settings for row-level security, name -> template:
    /// `{ "app.tenant": "{actor.tenant}" }`. Each is applied with
    /// `set_config(name, value, true)` inside the run's transaction, on every connection
    /// of the run (a resume after a lost connection applies them again). Templates may
    /// use `{actor.<claim>}`, `{actor.sub}` and `{parameter}`.
    #[serde(default)]
    pub session: IndexMap<String, String>,
    /// A summary report (`detail: false`) whose variables have SQL equivalents is
    /// aggregated in the database, one `GROUP BY` at its finest group level (default);
    /// `false` reads its rows and aggregates them in ream.
    #[serde(default)]
    pub pushdown: Option<bool>,
    /// Read on several connections at once, each a range of the first order column (an
    /// integer), on one snapshot: a number of partitions, or `auto` (from the read's size
    /// and the cores). `ream run --parallel` overrides it. Default: one connection.
    #[serde(default)]
    pub parallel: Option<Parallel>,
    /// `key` (default): rows in the order of the group fields, then the key. `any`: in
    /// whatever order the database finds them (no ORDER BY, no sort), for an export of
    /// rows nothing downstream needs in order; a parallel read then interleaves its
    /// partitions' batches as they come.
    #[serde(default)]
    pub order: Option<RowOrder>,
}

/// In which order a read's rows come ([`SourceConfig::order`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowOrder {
    #[default]
    Key,
    Any,
}

/// How many connections a read uses ([`SourceConfig::parallel`], `--parallel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Parallel {
    /// This many partitions, each on its own connection (1: a serial read).
    Partitions(u16),
    /// As many as the cores allow, where the read is large enough to gain from it.
    Auto(AutoWord),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

impl Parallel {
    /// The most partitions a read may have.
    pub const MAX: u16 = 64;
}

impl std::str::FromStr for Parallel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Parallel::Auto(AutoWord::Auto));
        }
        s.parse::<i64>().ok().and_then(Parallel::partitions).ok_or_else(|| Parallel::refusal(s))
    }
}

impl Parallel {
    fn partitions(n: i64) -> Option<Parallel> {
        u16::try_from(n).ok().filter(|n| (1..=Parallel::MAX).contains(n)).map(Parallel::Partitions)
    }

    fn refusal(given: &str) -> String {
        format!("`{given}`: give a number of partitions from 1 to {}, or `auto`", Parallel::MAX)
    }
}

/// A count or `auto`, each refusal saying what it takes (an untagged enum's error would
/// only say that no variant matched).
impl<'de> Deserialize<'de> for Parallel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl serde::de::Visitor<'_> for Count {
            type Value = Parallel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a number of partitions from 1 to {}, or `auto`", Parallel::MAX)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Parallel, E> {
                Parallel::partitions(n).ok_or_else(|| E::custom(Parallel::refusal(&n.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Parallel, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Parallel, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Count)
    }
}

/// Which snapshot a run reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Snapshot {
    /// One transaction for the whole run: every batch sees the data as it was when the
    /// run started (PostgreSQL `REPEATABLE READ, READ ONLY`).
    #[default]
    Run,
    /// Each statement (each keyset page) sees the latest committed data, and no long
    /// transaction holds back the server's cleanup. Rows changed during the run may show
    /// their old or new version; a row whose key changes may be missed or read twice.
    Statement,
}

/// A source column: an SQL expression, optionally with its type declared.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ColumnSource {
    /// Just the expression; the type comes from the database.
    Expr(String),
    /// The expression and a declared type, for expressions whose type the database does
    /// not declare (SQLite computed columns).
    Typed(TypedColumn),
}

/// An expression with a declared type.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TypedColumn {
    /// The SQL expression.
    pub expr: String,
    /// `int`, `float`, `decimal(P,S)`, `string`, `bool`, `date`, `timestamp`, `binary`.
    #[serde(rename = "type")]
    pub ty: String,
}

impl ColumnSource {
    pub fn expr(&self) -> &str {
        match self {
            ColumnSource::Expr(e) => e,
            ColumnSource::Typed(t) => &t.expr,
        }
    }
    pub fn declared_type(&self) -> Option<&str> {
        match self {
            ColumnSource::Expr(_) => None,
            ColumnSource::Typed(t) => Some(&t.ty),
        }
    }
}

/// How a source pages through its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    /// Keyset when a unique key is known and an index serves the order; else cursor.
    Auto,
    /// `WHERE (k1,k2) > (?,?) ORDER BY k1,k2 LIMIT n`: resumable, constant cost per page.
    Keyset,
    /// One statement, stepped row by row.
    Cursor,
    /// `LIMIT n OFFSET m`: last resort, O(n²) on large tables.
    Offset,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Auto => "auto",
            Strategy::Keyset => "keyset",
            Strategy::Cursor => "cursor",
            Strategy::Offset => "offset",
        })
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "keyset" => Ok(Strategy::Keyset),
            "cursor" => Ok(Strategy::Cursor),
            "offset" => Ok(Strategy::Offset),
            _ => Err(format!("unknown strategy `{s}` (expected auto, keyset, cursor or offset)")),
        }
    }
}

/// A typed parameter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ParameterConfig {
    /// The type of the value(s).
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// A required parameter without a value is an error.
    #[serde(default)]
    pub required: bool,
    /// The value used when none is given (written as the CLI would take it).
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// A list parameter takes several values (`-p ids=1,2,3`); write `IN (:ids)` in SQL.
    #[serde(default)]
    pub list: bool,
    /// Allowed values.
    #[serde(default)]
    pub one_of: Vec<serde_json::Value>,
    /// Smallest allowed value (numbers, dates).
    #[serde(default)]
    pub min: Option<serde_json::Value>,
    /// Largest allowed value (numbers, dates).
    #[serde(default)]
    pub max: Option<serde_json::Value>,
    /// Shown in forms and listings.
    #[serde(default)]
    pub label: Option<String>,
    /// Shown in forms and listings.
    #[serde(default)]
    pub description: Option<String>,
}

/// Parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Decimal,
    Float,
    Bool,
    Date,
    Timestamp,
}

/// A group level.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GroupConfig {
    /// The field whose value changes start a new group.
    pub by: String,
    /// The group's name, used by variables' `reset` (default: the `by` field).
    #[serde(default)]
    pub name: Option<String>,
    /// The group header band, e.g. `"Region: {region}"`.
    #[serde(default)]
    pub header: Option<String>,
    /// The group footer band, e.g. `"Subtotal: {region_total:currency}"`.
    #[serde(default)]
    pub footer: Option<String>,
    /// Paged outputs start each group on a new page.
    #[serde(default)]
    pub page_break: bool,
}

impl GroupConfig {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.by)
    }
}

/// A variable: exactly one of the aggregate keys names the field it aggregates.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct VariableConfig {
    #[serde(default)]
    pub sum: Option<String>,
    #[serde(default)]
    pub count: Option<String>,
    #[serde(default)]
    pub count_distinct: Option<String>,
    #[serde(default)]
    pub avg: Option<String>,
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
    #[serde(default)]
    pub first: Option<String>,
    #[serde(default)]
    pub last: Option<String>,
    #[serde(default)]
    pub stddev: Option<String>,
    #[serde(default)]
    pub variance: Option<String>,
    /// `report` (default: never reset) or a group name (reset after that group's footer).
    #[serde(default)]
    pub reset: Option<String>,
}

/// Aggregate kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Sum,
    Count,
    CountDistinct,
    Avg,
    Min,
    Max,
    First,
    Last,
    Stddev,
    Variance,
}

impl Aggregate {
    /// Whether it takes numbers only: `sum`, `avg`, `stddev` and `variance`.
    pub fn needs_number(self) -> bool {
        matches!(self, Aggregate::Sum | Aggregate::Avg | Aggregate::Stddev | Aggregate::Variance)
    }

    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
            Aggregate::CountDistinct => "count_distinct",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::First => "first",
            Aggregate::Last => "last",
            Aggregate::Stddev => "stddev",
            Aggregate::Variance => "variance",
        }
    }
}

impl VariableConfig {
    /// Every (aggregate, field) pair that is set; a valid variable has exactly one.
    pub fn aggregates(&self) -> Vec<(Aggregate, &str)> {
        let all = [
            (Aggregate::Sum, &self.sum),
            (Aggregate::Count, &self.count),
            (Aggregate::CountDistinct, &self.count_distinct),
            (Aggregate::Avg, &self.avg),
            (Aggregate::Min, &self.min),
            (Aggregate::Max, &self.max),
            (Aggregate::First, &self.first),
            (Aggregate::Last, &self.last),
            (Aggregate::Stddev, &self.stddev),
            (Aggregate::Variance, &self.variance),
        ];
        all.into_iter().filter_map(|(a, f)| f.as_deref().map(|f| (a, f))).collect()
    }
}

/// A detail column.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The source field shown in this column.
    pub field: String,
    /// The header label (default: the field name).
    #[serde(default)]
    pub label: Option<String>,
    /// How banded outputs display the value: `int`, `number:2`, `currency:USD`,
    /// `percent`, `date:%Y-%m-%d`. Machine formats (csv, ndjson, json) keep raw values.
    #[serde(default)]
    pub format: Option<String>,
    /// `left`, `right` or `center` in banded outputs.
    #[serde(default)]
    pub align: Option<Align>,
    /// Paged outputs (PDF): `auto` (default: from the header and the first page's
    /// values), a length (`30mm`), a percentage of the table (`25%`) or shares of what the
    /// other columns leave (`2fr`).
    #[serde(default)]
    pub width: Option<crate::page::LengthValue>,
    /// Paged outputs (PDF): wrap text that does not fit onto more lines (default: clip it
    /// with an ellipsis).
    #[serde(default)]
    pub wrap: bool,
    /// XLSX band rows: the variables shown as numbers under this column, by name, at most
    /// one per scope (a group's footer, the summary). Each must aggregate this column's
    /// field. Default: in each scope, the first variable that sums, averages or takes the
    /// min, max, first, last, stddev or variance of the field (counts stay in the text).
    #[serde(default)]
    pub totals: Vec<String>,
}

impl ColumnConfig {
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.field)
    }
}

/// Horizontal alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Left,
    Right,
    Center,
}

/// A chart: what to plot, and how the rows are reduced to points in one pass.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChartConfig {
    /// The chart's id: letters, digits, `_` and `-`; unique in the spec.
    pub id: String,
    /// The caption (default: the id).
    #[serde(default)]
    pub title: Option<String>,
    /// `line`, `bar`, `area`, `scatter`, `pie` or `histogram`.
    pub kind: ChartKind,
    /// The horizontal axis: a field, bucketed by time, binned, or taken as categories.
    pub x: ChartX,
    /// The value plotted: one of `sum`, `count`, `avg`, `min`, `max` naming a field
    /// (`count: "*"` counts rows), or `field` for raw points (line, area, scatter with an
    /// unbucketed x). Default: `count: "*"`.
    #[serde(default)]
    pub y: ChartY,
    /// Split into one series per value of this field. The `max_series` largest are kept;
    /// the rest are summed up as `other`.
    #[serde(default)]
    pub series: Option<String>,
    /// Bar and area charts: stack the series rather than group (bar) or overlay (area) them.
    #[serde(default)]
    pub stacked: bool,
    /// Raw points (and line/area buckets) beyond this many per series are downsampled
    /// with M4, which keeps each column's first, last, smallest and largest point.
    /// Default 500.
    #[serde(default)]
    pub max_points: Option<usize>,
    /// Most series drawn; the rest become `other` (default 10).
    #[serde(default)]
    pub max_series: Option<usize>,
    /// Most buckets a chart may hold while it aggregates (default 100000). A run whose
    /// chart would need more fails with an error naming the chart: choose a coarser bucket.
    #[serde(default)]
    pub max_buckets: Option<usize>,
}

/// Chart kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    Line,
    Bar,
    Area,
    Scatter,
    Pie,
    Histogram,
}

impl ChartKind {
    pub fn name(self) -> &'static str {
        match self {
            ChartKind::Line => "line",
            ChartKind::Bar => "bar",
            ChartKind::Area => "area",
            ChartKind::Scatter => "scatter",
            ChartKind::Pie => "pie",
            ChartKind::Histogram => "histogram",
        }
    }
}

/// The x axis of a chart. At most one of `bucket`, `bins`/`bin_width` and `top`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChartX {
    /// The field on the axis.
    pub field: String,
    /// Time buckets of a date or timestamp field.
    #[serde(default)]
    pub bucket: Option<TimeBucket>,
    /// Numeric bins: at most this many, of a round width (1, 2 or 5 × 10^k) that widens
    /// as the values' range grows. A histogram defaults to 20.
    #[serde(default)]
    pub bins: Option<usize>,
    /// Numeric bins of exactly this width, starting at multiples of it.
    #[serde(default)]
    pub bin_width: Option<f64>,
    /// Categories: the `top` largest by y, the rest summed up as `other`. A text or bool
    /// field is always categories (default top 20).
    #[serde(default)]
    pub top: Option<usize>,
    /// Categories: whether those past `top` are drawn, summed up, as `other` (default
    /// true); `false` leaves them out.
    #[serde(default = "yes")]
    pub other: bool,
    /// The axis title (default: the field).
    #[serde(default)]
    pub title: Option<String>,
}

/// Time buckets. Weeks start on Monday; timestamps are taken as UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeBucket {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl TimeBucket {
    pub fn name(self) -> &'static str {
        match self {
            TimeBucket::Minute => "minute",
            TimeBucket::Hour => "hour",
            TimeBucket::Day => "day",
            TimeBucket::Week => "week",
            TimeBucket::Month => "month",
            TimeBucket::Quarter => "quarter",
            TimeBucket::Year => "year",
        }
    }
}

/// The y of a chart: exactly one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChartY {
    #[serde(default)]
    pub sum: Option<String>,
    #[serde(default)]
    pub count: Option<String>,
    #[serde(default)]
    pub avg: Option<String>,
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
    /// Raw points: the field's value, no aggregation.
    #[serde(default)]
    pub field: Option<String>,
    /// The axis title (default: the aggregate and its field, `sum(total)`).
    #[serde(default)]
    pub title: Option<String>,
}

/// How a chart reduces y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartAggregate {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    /// Raw points.
    Value,
}

impl ChartAggregate {
    pub fn name(self) -> &'static str {
        match self {
            ChartAggregate::Sum => "sum",
            ChartAggregate::Count => "count",
            ChartAggregate::Avg => "avg",
            ChartAggregate::Min => "min",
            ChartAggregate::Max => "max",
            ChartAggregate::Value => "field",
        }
    }
}

impl ChartY {
    /// Every (aggregate, field) pair that is set; a valid y has at most one (none: count rows).
    pub fn aggregates(&self) -> Vec<(ChartAggregate, &str)> {
        let all = [
            (ChartAggregate::Sum, &self.sum),
            (ChartAggregate::Count, &self.count),
            (ChartAggregate::Avg, &self.avg),
            (ChartAggregate::Min, &self.min),
            (ChartAggregate::Max, &self.max),
            (ChartAggregate::Value, &self.field),
        ];
        all.into_iter().filter_map(|(a, f)| f.as_deref().map(|f| (a, f))).collect()
    }

    /// The one aggregate (count of rows when none is set).
    pub fn aggregate(&self) -> (ChartAggregate, &str) {
        self.aggregates().first().copied().unwrap_or((ChartAggregate::Count, "*"))
    }
}

/// The JSON Schema of the spec format, as `ream schema` prints it.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Spec)).expect("a schema always serialises")
}
