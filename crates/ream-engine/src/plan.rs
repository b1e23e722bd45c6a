//! From a spec (or an ad-hoc table/SQL request) and parameters to a prepared run: every
//! check a user can fail happens here, before the first byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use ream_core::load::LoadedSpec;
use ream_core::page::{PageSetup, UserFonts};
use ream_core::params::{bind, BoundParams};
use ream_core::spec::Aggregate;
use ream_core::spec::Strategy;
use ream_core::template::{Format as ValueFormat, Template};
use ream_core::validate::check_fields;

use crate::named::NamedSources;
use ream_core::{CancelToken, GroupMeta, OutputColumn, ReportMeta, SpecError};
use ream_render::{Format, RenderOptions};
use ream_sources::{
    open_url, BatchLimit, Count, CountMode, Counter, ReadPlan, ReadRequest, ResumeLog, Snapshot, Source, SourceError,
    SourceUrl, WithinGroups, DEFAULT_BATCH_SIZE, DEFAULT_RETRIES,
};

use crate::reading::{spawn_source, Progress, SourceMsg, SourceState, Started};
use ream_stages::{StageConfig, VariableSpec};

use crate::{spec_sql, EngineError};

/// What to run.
// One Job is made per run; its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    /// A report spec, already loaded and statically checked.
    Spec(LoadedSpec),
    /// An export with no spec: a table (optionally with its key) or a SELECT.
    AdHoc(AdHoc),
}

/// `ream run --source URL (--table T [--key a,b] | --sql "SELECT …")`.
#[derive(Debug, Clone, Default)]
pub struct AdHoc {
    pub table: Option<String>,
    pub sql: Option<String>,
    pub key: Vec<String>,
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The source URL; overrides the spec's `source.url`.
    pub source: Option<String>,
    /// The source URL where neither `source` nor the spec names one (`REAM_SOURCE`).
    pub default_source: Option<String>,
    /// The config file's named sources: any of the three URLs above may be one's name.
    pub sources: NamedSources,
    /// Read on several connections at once (`--parallel`); overrides the spec's
    /// `source.parallel`. See [`crate::parallel`].
    pub parallel: Option<ream_core::spec::Parallel>,
    /// Aggregate pushdown where a summary report allows it (default true;
    /// `--no-pushdown` turns it off, as the spec's `source.pushdown: false` does).
    pub pushdown: bool,
    pub format: Format,
    /// `name=value` parameters, as given.
    pub params: Vec<(String, ream_core::params::Given)>,
    pub batch_size: Option<usize>,
    /// Bytes of values after which a batch ends (default 8 MiB).
    pub batch_bytes: Option<usize>,
    pub strategy: Option<Strategy>,
    /// How to find the total for progress (a count beside the stream, or an estimate).
    pub count: CountMode,
    /// Overrides the spec's `source.snapshot`.
    pub snapshot: Option<Snapshot>,
    /// Retries of a lost connection (server sources); default 5.
    pub retries: Option<u32>,
    /// Filled by the source when it resumes after a lost connection.
    pub resumes: ResumeLog,
    /// Lowers the rows per batch while the run goes on (a server's memory budget).
    pub batch_limit: BatchLimit,
    /// Renderer options (`--xlsx-flat`, `--xlsx-outline`, Parquet's).
    pub render: RenderOptions,
    /// How the output is compressed as it streams (`--compress`, `Accept-Encoding`).
    pub compress: crate::Compression,
    /// Its level (`--compress-level`); default 1.
    pub compress_level: Option<i32>,
    /// Write the output as several files with a manifest (`--split-rows`,
    /// `--split-bytes`, `--split-by`); see [`crate::split`].
    pub split: Option<crate::Split>,
    /// Write one output per value of the spec's `burst.by`, as the parts of a split
    /// output (`--burst-dir`); see [`crate::burst`].
    pub burst: bool,
    /// Who runs the report: its claims bind `:actor.<claim>` and `{actor.<claim>}` in
    /// `source.session`. None: a report that uses a claim fails before reading.
    pub actor: Option<ream_core::Actor>,
}

impl RunOptions {
    pub fn new(format: Format) -> Self {
        RunOptions {
            source: None,
            default_source: None,
            sources: NamedSources::default(),
            pushdown: true,
            parallel: None,
            format,
            params: vec![],
            batch_size: None,
            batch_bytes: None,
            strategy: None,
            count: CountMode::None,
            snapshot: None,
            retries: None,
            resumes: ResumeLog::default(),
            batch_limit: BatchLimit::default(),
            render: RenderOptions::default(),
            compress: crate::Compression::None,
            compress_level: None,
            split: None,
            burst: false,
            actor: None,
        }
    }
}

/// A run that has passed every check: the source is open on its snapshot, the schema is
/// known, the stages and renderer are chosen. No byte of output exists yet. (Where the
/// database declares no type for some fields, the source has already read its first
/// batch, which settled those types; it waits in the queue.)
pub struct Prepared {
    pub meta: Arc<ReportMeta>,
    pub format: Format,
    pub plan: ReadPlan,
    pub(crate) source: SourceState,
    pub(crate) stages: Vec<StageConfig>,
    pub(crate) counters: Counters,
    pub(crate) cancel: CancelToken,
    pub(crate) progress: Arc<Progress>,
    pub(crate) render: RenderOptions,
    pub(crate) compress: crate::Compression,
    pub(crate) compress_level: i32,
    pub(crate) about: About,
    /// A burst run's plan.
    pub(crate) burst: Option<ream_core::parsed::BurstPlan>,
}

/// A run's count queries, for its progress: its rows, and a burst run's bursts (the
/// distinct values of `burst.by`). None with `--count none`.
#[derive(Default)]
pub(crate) struct Counters {
    pub rows: Option<Counter>,
    pub bursts: Option<Counter>,
}

impl Counters {
    fn new(source: &dyn Source, opts: &RunOptions, burst_by: Option<&str>) -> Counters {
        if opts.count == CountMode::None {
            return Counters::default();
        }
        Counters {
            rows: source.counter(&Count::Rows),
            bursts: burst_by.and_then(|by| source.counter(&Count::Distinct(by.to_string()))),
        }
    }
}

/// Where a run's output came from, for a split run's manifest.
#[derive(Debug, Clone)]
pub(crate) struct About {
    pub report: String,
    pub spec: Option<std::path::PathBuf>,
    pub format: Format,
    pub compress: crate::Compression,
    pub parameters: Vec<(String, ream_core::params::ParamValue)>,
    pub snapshot: Snapshot,
    /// When the source was open (its snapshot begun, with `Snapshot::Run`).
    pub opened_at: std::time::SystemTime,
    pub split: Option<crate::Split>,
    /// The field a burst run is burst by.
    pub burst: Option<String>,
}

impl About {
    fn new(meta: &ReportMeta, spec: Option<&LoadedSpec>, opts: &RunOptions, opened_at: std::time::SystemTime) -> About {
        let from_spec = spec.and_then(|s| s.spec().source.snapshot);
        About {
            report: meta.report.clone(),
            spec: spec.and_then(|s| s.path().map(Path::to_path_buf)),
            format: opts.format,
            compress: opts.compress,
            parameters: meta.parameters.clone(),
            snapshot: opts.snapshot.or(from_spec).unwrap_or_default(),
            opened_at,
            split: opts.split.clone(),
            burst: None,
        }
    }
}

/// A burst run's checks before the database is opened: a spec with `burst:`, no split.
fn check_burst(opts: &RunOptions, spec: &ream_core::spec::Spec) -> Result<(), EngineError> {
    if !opts.burst {
        return Ok(());
    }
    if spec.burst.is_none() {
        return Err(EngineError::Usage(format!("report `{}` has no `burst:`, so it cannot be burst", spec.report)));
    }
    if opts.split.is_some() {
        return Err(EngineError::Usage("a burst run writes one file per burst: it cannot be split as well".into()));
    }
    Ok(())
}

/// A split's checks before the database is opened: a format whose parts are files, a
/// report with detail rows.
fn check_split(opts: &RunOptions, detail: bool, report: &str) -> Result<(), EngineError> {
    let Some(split) = &opts.split else { return Ok(()) };
    split.check_format(opts.format).map_err(|e| EngineError::Usage(e.to_string()))?;
    if !detail {
        return Err(EngineError::Usage(format!(
            "report `{report}` has no detail rows (`detail: false`): a split output writes detail rows"
        )));
    }
    Ok(())
}

impl Prepared {
    pub fn strategy(&self) -> &ReadPlan {
        &self.plan
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

/// Open the source; if some types are only known from the rows, start it and take the
/// final schema from its first message. Names are checked by the caller before this.
fn settle_schema(
    source: Box<dyn Source>,
    cancel: &CancelToken,
    progress: &Arc<Progress>,
    report: &str,
) -> Result<(SchemaRef, SourceState), EngineError> {
    if source.types_settled() {
        return Ok((source.schema(), SourceState::Ready(source)));
    }
    let started = first_message(SourceState::Ready(source), cancel, progress, report)?;
    let schema = match &started {
        SourceState::Started(Started { first: Some(SourceMsg::Batch(b)), .. }) => b.schema(),
        SourceState::Started(Started { first: Some(SourceMsg::End(s)), .. }) => s.clone(),
        _ => return Err(EngineError::Internal("the source settled no schema".into())),
    };
    Ok((schema, started))
}

/// Start reading and wait for the source's first message, so that everything the first
/// batch can raise (a parameter value the database rejects, a value that does not fit
/// its column, an error in the SQL that shows only when it runs) is reported before the
/// first byte: exit 2 on the CLI, a 4xx status over HTTP, never a cut-off body.
fn first_message(
    state: SourceState,
    cancel: &CancelToken,
    progress: &Arc<Progress>,
    report: &str,
) -> Result<SourceState, EngineError> {
    let mut started = match state {
        SourceState::Started(started) => return Ok(SourceState::Started(started)),
        SourceState::Ready(source) => spawn_source(source, cancel.clone(), progress.clone(), report.to_string()),
    };
    let first =
        started.rx.recv().map_err(|_| EngineError::Internal("the source stopped before its first batch".into()))?;
    if let SourceMsg::Failed(e) = first {
        let _ = started.thread.join();
        return Err(e);
    }
    started.first = Some(first);
    Ok(SourceState::Started(started))
}

/// The variables of a spec against a schema whose field names have been checked.
fn variable_specs(loaded: &LoadedSpec, schema: &SchemaRef) -> Result<Vec<VariableSpec>, EngineError> {
    let spec = loaded.spec();
    let mut out = Vec::new();
    for (i, (name, v)) in spec.variables.iter().enumerate() {
        let key = || format!("variables.{name}");
        let (aggregate, field) = loaded.parsed().aggregate(i).ok_or_else(|| unknown(loaded, key(), name))?;
        out.push(VariableSpec {
            name: name.clone(),
            aggregate,
            field: (field != "*").then(|| field_index(loaded, schema, key(), field)).transpose()?,
            reset_level: v.reset.as_deref().and_then(|r| spec.groups.iter().position(|g| g.name() == r)),
        });
    }
    Ok(out)
}

/// The index of a field the spec names. The fields were checked against the schema, so
/// a miss cannot happen; were it to, it is the spec error it would be, not a panic.
fn field_index(loaded: &LoadedSpec, schema: &SchemaRef, key: String, field: &str) -> Result<usize, EngineError> {
    schema.index_of(field).map_err(|_| unknown(loaded, key, field))
}

fn unknown(loaded: &LoadedSpec, key: String, name: &str) -> EngineError {
    EngineError::Spec(loaded.locate(vec![SpecError::new(key, format!("`{name}` is not a field of the source"))]))
}

/// Every type problem of a spec against its source's settled schema, at once: column
/// formats, variables and charts. `prepare` and `validate --connect` both ask this, so a
/// spec that passes the check does not fail the run for its types.
fn check_types(loaded: &LoadedSpec, schema: &SchemaRef) -> Result<Vec<SpecError>, EngineError> {
    let spec = loaded.spec();
    let mut errors = check_column_formats(loaded, schema);
    errors.extend(check_variable_types(spec, &variable_specs(loaded, schema)?, schema));
    errors.extend(check_chart_types(spec, schema));
    Ok(errors)
}

/// Each aggregate must apply to its field's type (`sum` of text is a spec error).
fn check_variable_types(spec: &ream_core::Spec, variables: &[VariableSpec], schema: &SchemaRef) -> Vec<SpecError> {
    spec.variables
        .keys()
        .zip(variables)
        .filter_map(|(name, v)| {
            let one = StageConfig::Accumulate { variables: vec![v.clone()] };
            one.build(schema).err().map(|e| SpecError::new(format!("variables.{name}"), e.to_string()))
        })
        .collect()
}

/// Each column's display format must suit its field's type (no time pattern on a date).
fn check_column_formats(loaded: &LoadedSpec, schema: &SchemaRef) -> Vec<SpecError> {
    loaded
        .spec()
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let format = loaded.parsed().column_format(i);
            let field = schema.field_with_name(&c.field).ok()?;
            let e = format.fits(field.data_type()).err()?;
            Some(SpecError::new(format!("columns[{i}].format"), format!("`{}`: {e}", c.field)))
        })
        .collect()
}

/// Each chart's axes must suit their fields' types (time buckets of a date, bins of a number).
fn check_chart_types(spec: &ream_core::Spec, schema: &SchemaRef) -> Vec<SpecError> {
    spec.charts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let one = StageConfig::Chart { charts: vec![c.clone()] };
            one.build(schema).err().map(|e| SpecError::new(format!("charts[{i}]"), e.to_string()))
        })
        .collect()
}

/// Check a spec against its source as a run would, without writing anything: open it
/// (parameters bound to their defaults, or NULL), check every field name, settle the
/// types (from the first rows where the database declares none, as the run does) and check
/// every column format, variable and chart against them. Returns the plan a run would use.
/// `cancel` interrupts the check's statements (a probe that ran out of time).
pub fn check_against_source(
    loaded: &LoadedSpec,
    source: Option<String>,
    sources: NamedSources,
    cancel: CancelToken,
) -> Result<ReadPlan, EngineError> {
    let spec = loaded.spec();
    let opts = RunOptions { source, sources, ..RunOptions::new(Format::Csv) };
    let params = ream_core::params::defaults(&spec.parameters);
    let (source, _) = open_spec_with(loaded, &opts, &cancel, params)?;
    let plan = source.plan().clone();
    // Types the database does not declare (SQLite expressions) settle from the first
    // rows, as the run settles them; the read stops there.
    let settled = settle_schema(source, &cancel, &Arc::new(Progress::new()), &spec.report)
        .map_err(|e| spec_sql::in_spec(loaded, e));
    let errors = settled.and_then(|(schema, _)| check_types(loaded, &schema));
    cancel.cancel();
    match errors? {
        errors if errors.is_empty() => Ok(plan),
        errors => Err(EngineError::Spec(loaded.locate(errors))),
    }
}

/// The plan a run would use (strategy, why, SQL), after the same checks as `prepare`,
/// without reading a row.
pub fn explain(job: &Job, opts: &RunOptions) -> Result<ReadPlan, EngineError> {
    let cancel = CancelToken::new();
    match job {
        Job::Spec(spec) => {
            let (opened, _) = open_planned(spec, opts, &cancel)?;
            Ok(ReadPlan { pushdown: opened.pushdown, parallel: opened.parallel, ..opened.source.plan().clone() })
        }
        Job::AdHoc(adhoc) => {
            let (source, parallel) = open_adhoc(adhoc, opts, &cancel)?;
            Ok(ReadPlan { parallel, ..source.plan().clone() })
        }
    }
}

/// Validate, bind, connect and resolve the schema.
pub fn prepare(job: Job, opts: &RunOptions, cancel: CancelToken) -> Result<Prepared, EngineError> {
    if !opts.format.available() {
        return Err(EngineError::Usage(format!(
            "this build of ream cannot write {0}: build it with the `{0}` feature",
            opts.format
        )));
    }
    if opts.compress != crate::Compression::None && opts.format.is_compressed() {
        return Err(EngineError::Usage(format!(
            "{} is compressed already: leave out the compression (`--compress`, a `.gz` or `.zst` name)",
            opts.format
        )));
    }
    opts.compress.level(opts.compress_level).map_err(EngineError::Usage)?;
    match job {
        Job::Spec(spec) => prepare_spec(spec, opts, cancel),
        Job::AdHoc(adhoc) => prepare_adhoc(adhoc, opts, cancel),
    }
}

fn source_url(url: &str, base: Option<&Path>) -> Result<SourceUrl, EngineError> {
    SourceUrl::parse(url, base).map_err(|e| EngineError::Source { report: None, source: e })
}

/// Whether the database at `url` answers a trivial query (`SELECT 1`) on a connection of
/// its own: what `/readyz` asks of each source, apart from any report's SQL, so a broken
/// report is not taken for a database that is down. `base` resolves a relative SQLite
/// path (the spec's directory). `cancel` interrupts it.
pub fn ping(url: &str, base: Option<&Path>, cancel: CancelToken) -> Result<(), EngineError> {
    let parsed = source_url(url, base)?;
    open_url(&parsed, url, &ReadRequest::sql("SELECT 1 AS ready"), cancel)
        .map(drop)
        .map_err(|e| EngineError::Source { report: None, source: e })
}

/// A table's columns (name, type) and its key as a read of it would use them (the primary
/// key, or unique columns; empty when the database proves none), for `ream new report`.
/// Opens the source and prepares the read; no row is read unless the database declares
/// no types (SQLite expressions), whose first rows settle them.
pub fn describe_table(url: &str, table: &str, cancel: CancelToken) -> Result<TableShape, EngineError> {
    let parsed = source_url(url, None)?;
    let source = open_url(&parsed, url, &ReadRequest::table(table), cancel.clone())
        .map_err(|e| EngineError::Source { report: None, source: e })?;
    let order = source.plan().order.clone();
    let (schema, _) = settle_schema(source, &cancel, &Arc::new(Progress::new()), table)?;
    cancel.cancel();
    let columns: Vec<(String, String)> =
        schema.fields().iter().map(|f| (f.name().clone(), ream_core::types::type_label(f.data_type()))).collect();
    let mut key: Vec<String> = order.into_iter().filter(|k| schema.field_with_name(k).is_ok()).collect();
    if key.is_empty() {
        // Read in a hidden order (SQLite's rowid, an `INTEGER PRIMARY KEY`'s alias): a
        // column that keyset paging accepts as its key is provably unique.
        key = columns
            .iter()
            .take(8)
            .map(|(n, _)| n)
            .find(|n| is_unique_key(&parsed, url, table, n, &CancelToken::new()))
            .into_iter()
            .cloned()
            .collect();
    }
    Ok(TableShape { columns, key })
}

/// Whether keyset paging accepts `column` alone as the key of `table` (it needs proof
/// from the catalogue that the column is unique).
fn is_unique_key(parsed: &SourceUrl, url: &str, table: &str, column: &str, cancel: &CancelToken) -> bool {
    let mut req = ReadRequest::table(table);
    req.key = vec![column.to_string()];
    req.strategy = Strategy::Keyset;
    open_url(parsed, url, &req, cancel.clone()).is_ok()
}

/// What [`describe_table`] found: (name, type) per column, and the key.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub columns: Vec<(String, String)>,
    pub key: Vec<String>,
}

/// Check an ad-hoc request and open its source (names known, strategy picked), on
/// several connections where `--parallel` asks and the read allows.
fn open_adhoc(adhoc: &AdHoc, opts: &RunOptions, cancel: &CancelToken) -> Result<crate::parallel::Planned, EngineError> {
    let given = opts
        .source
        .as_deref()
        .or(opts.default_source.as_deref())
        .ok_or_else(|| EngineError::Usage("an ad-hoc run needs --source URL (or REAM_SOURCE)".into()))?;
    let url = opts.sources.resolve(given)?.to_string();
    if adhoc.table.is_some() == adhoc.sql.is_some() {
        return Err(EngineError::Usage("give exactly one of --table or --sql".into()));
    }
    if !opts.params.is_empty() {
        return Err(EngineError::Usage("parameters (-p) go with a spec; an ad-hoc run takes none".into()));
    }
    let mut req = match (&adhoc.table, &adhoc.sql) {
        (Some(t), _) => ReadRequest::table(t),
        (_, Some(s)) => ReadRequest::sql(s),
        _ => unreachable!("checked above"),
    };
    req.key = adhoc.key.clone();
    apply_options(&mut req, opts, None);
    let parsed = source_url(&url, None)?;
    let open = |req: &ReadRequest| {
        open_url(&parsed, &url, req, cancel.clone())
            .map_err(|e| split_field_missing(opts, &e).unwrap_or(EngineError::Source { report: None, source: e }))
    };
    let source = open(&req)?;
    let ask = crate::parallel::Ask {
        parallel: opts.parallel,
        url: &parsed,
        snapshot: req.snapshot,
        interleave: false,
        why_not: None,
    };
    let part = |range, snapshot| open(&req.partition(range, snapshot));
    crate::parallel::plan(source, ask, &part)
}

/// The field a split is by, missing from the source: the split's error, not the spec's.
fn split_field_missing(opts: &RunOptions, e: &SourceError) -> Option<EngineError> {
    let by = opts.split.as_ref().and_then(|s| s.by())?;
    match e {
        SourceError::UnknownField { field, known } if field == by => Some(EngineError::Usage(format!(
            "split by `{by}`: the source has no field `{by}` (it has: {})",
            known.join(", ")
        ))),
        _ => None,
    }
}

fn prepare_adhoc(adhoc: AdHoc, opts: &RunOptions, cancel: CancelToken) -> Result<Prepared, EngineError> {
    check_split(opts, true, adhoc.table.as_deref().unwrap_or("query"))?;
    if opts.burst {
        return Err(EngineError::Usage("an ad-hoc export cannot be burst: bursting needs a spec with `burst:`".into()));
    }
    let (source, parallel) = open_adhoc(&adhoc, opts, &cancel)?;
    let opened_at = std::time::SystemTime::now();
    let name = adhoc.table.clone().unwrap_or_else(|| "query".into());
    let plan = ReadPlan { parallel, ..source.plan().clone() };
    let counters = Counters::new(source.as_ref(), opts, None);
    let progress = Arc::new(Progress::new());
    let (schema, source) = settle_schema(source, &cancel, &progress, &name)?;
    let meta = ReportMeta {
        report: name,
        title: None,
        parameters: vec![],
        schema: schema.clone(),
        columns: all_columns(&schema),
        detail: true,
        locale: Default::default(),
        groups: vec![],
        variables: vec![],
        variable_specs: vec![],
        summary: None,
        no_data: None,
        page_header: None,
        page_footer: None,
        page: Default::default(),
        strategy: describe(&plan),
    };
    let source = first_message(source, &cancel, &progress, &meta.report)?;
    Ok(Prepared {
        burst: None,
        about: About::new(&meta, None, opts, opened_at),
        meta: Arc::new(meta),
        format: opts.format,
        plan,
        source,
        stages: vec![],
        counters,
        cancel,
        progress,
        render: opts.render.clone(),
        compress: opts.compress,
        compress_level: opts.compress.level(opts.compress_level).map_err(EngineError::Usage)?,
    })
}

/// A summary report without `first`/`last` does not care about row order inside groups.
fn within_groups(spec: &ream_core::Spec) -> WithinGroups {
    if spec.source.order == Some(ream_core::spec::RowOrder::Any) {
        return WithinGroups::AnyOrder;
    }
    let order_sensitive = spec
        .variables
        .values()
        .flat_map(|v| v.aggregates())
        .any(|(a, _)| matches!(a, Aggregate::First | Aggregate::Last));
    if spec.detail || order_sensitive {
        WithinGroups::KeyOrder
    } else {
        WithinGroups::AnyOrder
    }
}

/// The detail band when a spec names no columns: every field, raw, labelled by its name.
fn all_columns(schema: &SchemaRef) -> Vec<OutputColumn> {
    schema.fields().iter().enumerate().map(|(i, f)| raw_column(f.name(), i)).collect()
}

/// A field shown as it is, under its own name.
fn raw_column(field: &str, index: usize) -> OutputColumn {
    OutputColumn {
        field: field.to_string(),
        label: field.to_string(),
        index,
        format: ValueFormat::Raw,
        align: None,
        width: Default::default(),
        wrap: false,
        totals: vec![],
    }
}

fn describe(plan: &ream_sources::ReadPlan) -> String {
    format!("{}: {}", plan.strategy, plan.reason)
}

fn apply_options(req: &mut ReadRequest, opts: &RunOptions, spec: Option<&ream_core::spec::SourceConfig>) {
    req.strategy = opts.strategy.or(spec.and_then(|s| s.strategy)).unwrap_or(Strategy::Auto);
    req.batch_size = opts.batch_size.or(spec.and_then(|s| s.batch_size)).unwrap_or(DEFAULT_BATCH_SIZE);
    req.batch_bytes = opts.batch_bytes.unwrap_or(ream_sources::DEFAULT_BATCH_BYTES);
    req.snapshot = opts.snapshot.or(spec.and_then(|s| s.snapshot)).unwrap_or_default();
    req.retries = opts.retries.unwrap_or(DEFAULT_RETRIES);
    req.count = opts.count;
    req.resumes = opts.resumes.clone();
    req.batch_limit = opts.batch_limit.clone();
    // A split by a field reads in its order first, so one part file is open at a time.
    if let Some(by) = opts.split.as_ref().and_then(|s| s.by()) {
        req.order_prefix.retain(|f| f != by);
        req.order_prefix.insert(0, by.to_string());
    }
}

/// Bind the parameters, open the spec's source and check every field name against it.
fn open_spec(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
) -> Result<(Box<dyn Source>, BoundParams), EngineError> {
    let params: BoundParams = bind(&loaded.spec().parameters, &opts.params).map_err(EngineError::Params)?;
    open_spec_with(loaded, opts, cancel, params)
}

fn open_spec_with(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
    params: BoundParams,
) -> Result<(Box<dyn Source>, BoundParams), EngineError> {
    let source = open_read(loaded, opts, cancel, &params, None)?;
    // Names are final once the source is open: check them before anything runs.
    let names: Vec<String> = source.schema().fields().iter().map(|f| f.name().clone()).collect();
    let errors = check_fields(loaded.spec(), &names);
    if !errors.is_empty() {
        return Err(EngineError::Spec(loaded.locate(errors)));
    }
    Ok((source, params))
}

/// The spec's read, opened: its rows, or with `aggregate` one row per group of them.
fn open_read(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
    params: &BoundParams,
    aggregate: Option<ream_sources::Aggregation>,
) -> Result<Box<dyn Source>, EngineError> {
    let (parsed, url, req) = read_request(loaded, opts, params, aggregate)?;
    open_request(loaded, opts, cancel, (&parsed, &url), &req)
}

/// The spec's read as a request: the parsed URL, the URL, and what to read.
fn read_request(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    params: &BoundParams,
    aggregate: Option<ream_sources::Aggregation>,
) -> Result<(SourceUrl, String, ReadRequest), EngineError> {
    let spec = loaded.spec();
    let (url, base) = spec_source(loaded, opts)?;
    let parsed = source_url(&url, base.as_deref())?;

    let src = &spec.source;
    let (read_params, session) = actor_bindings(loaded, &url, params, opts.actor.as_ref())?;
    let mut req = ReadRequest {
        table: src.table.clone(),
        sql: src.sql.clone(),
        joins: src.joins.clone(),
        columns: src.columns.clone(),
        filter: src.filter.clone(),
        params: read_params,
        session,
        key: src.key.clone(),
        order_prefix: spec.groups.iter().map(|g| g.by.clone()).collect(),
        within_groups: within_groups(spec),
        aggregate,
        ..Default::default()
    };
    apply_options(&mut req, opts, Some(src));
    // Rows in any order: one statement with no ORDER BY (pages would need one).
    if src.order == Some(ream_core::spec::RowOrder::Any) && req.strategy == Strategy::Auto {
        req.strategy = Strategy::Cursor;
    }
    // A burst run reads in the order of its field first: one burst is open at a time.
    if let Some(b) = spec.burst.as_ref().filter(|_| opts.burst) {
        req.order_prefix.retain(|f| f != &b.by);
        req.order_prefix.insert(0, b.by.clone());
    }
    Ok((parsed, url, req))
}

/// Open a spec's read, its errors said where the spec can be fixed.
fn open_request(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
    (parsed, url): (&SourceUrl, &str),
    req: &ReadRequest,
) -> Result<Box<dyn Source>, EngineError> {
    let spec = loaded.spec();
    let report = Some(spec.report.clone());
    match open_url(parsed, url, req, cancel.clone()) {
        Ok(s) => Ok(s),
        Err(e) if split_field_missing(opts, &e).is_some() => {
            Err(split_field_missing(opts, &e).unwrap_or(EngineError::Source { report, source: e }))
        }
        // A group or key field the source lacks: report every unknown field, located.
        Err(SourceError::UnknownField { known, .. }) => {
            Err(EngineError::Spec(loaded.locate(check_fields(spec, &known))))
        }
        // The database refused the spec's own SQL: said at the spec key it came from.
        Err(e) => Err(spec_sql::in_spec(loaded, EngineError::Source { report, source: e })),
    }
}

/// A read after [`push_down`]: the source, the base read's schema (what the report's
/// fields are), the stages that roll an aggregated read up (`None`: the usual ones), and
/// what the plan says of pushdown.
struct Opened {
    source: Box<dyn Source>,
    base_schema: SchemaRef,
    stages: Option<Vec<StageConfig>>,
    pushdown: Option<Result<(), String>>,
    parallel: Option<Result<usize, String>>,
}

/// A spec's read as a run makes it: opened and checked, aggregated in the database
/// where it can be, then on several connections where asked.
fn open_planned(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
) -> Result<(Opened, BoundParams), EngineError> {
    let (source, params) = open_spec(loaded, opts, cancel)?;
    let opened = push_down(loaded, opts, cancel, source, &params)?;
    Ok((parallelize(loaded, opts, cancel, &params, opened)?, params))
}

/// The read on several connections where `--parallel` (or `source.parallel`) asks and
/// [`crate::parallel::plan`] allows; otherwise as it is, with the reason.
fn parallelize(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
    params: &BoundParams,
    opened: Opened,
) -> Result<Opened, EngineError> {
    let spec = loaded.spec();
    let asked = opts.parallel.or(spec.source.parallel);
    if asked.is_none() {
        return Ok(opened);
    }
    let (parsed, url, req) = read_request(loaded, opts, params, None)?;
    let ask = crate::parallel::Ask {
        parallel: asked,
        url: &parsed,
        snapshot: req.snapshot,
        interleave: spec.source.order == Some(ream_core::spec::RowOrder::Any),
        why_not: opened.stages.is_some().then(|| "the database aggregates the report (pushdown)".to_string()),
    };
    let open = |range, snapshot| open_request(loaded, opts, cancel, (&parsed, &url), &req.partition(range, snapshot));
    let (source, parallel) = crate::parallel::plan(opened.source, ask, &open)?;
    Ok(Opened { source, parallel, ..opened })
}

/// A summary report's read aggregated in the database where [`pushdown::plan`] allows
/// it; otherwise `base` as it is, with the reason.
fn push_down(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    cancel: &CancelToken,
    base: Box<dyn Source>,
    params: &BoundParams,
) -> Result<Opened, EngineError> {
    let base_schema = base.schema();
    let dialect = spec_source(loaded, opts)
        .ok()
        .and_then(|(url, _)| ream_core::sql::Dialect::from_url(&url))
        .unwrap_or(ream_core::sql::Dialect::Sqlite);
    let kept = |base, pushdown| Opened {
        source: base,
        base_schema: base_schema.clone(),
        stages: None,
        pushdown,
        parallel: None,
    };
    match crate::pushdown::plan(loaded, &base_schema, base.types_settled(), dialect, opts) {
        None => Ok(kept(base, None)),
        Some(Err(why)) => Ok(kept(base, Some(Err(why)))),
        Some(Ok(pushed)) => match open_read(loaded, opts, cancel, params, Some(pushed.aggregation)) {
            Ok(source) => {
                drop(base);
                Ok(Opened { source, base_schema, stages: Some(pushed.stages), pushdown: Some(Ok(())), parallel: None })
            }
            // Our statement, refused: read the rows instead, and say why.
            Err(e) => Ok(kept(base, Some(Err(format!("the database refused the aggregated statement: {e}"))))),
        },
    }
}

/// The source a spec run reads: `--source` wins over the spec's url, which is relative
/// to the spec file (returned as the base), then the default source. Any of them may be
/// the name of a source in the config file ([`NamedSources`]), whose URL needs no base.
pub fn spec_source(loaded: &LoadedSpec, opts: &RunOptions) -> Result<(String, Option<PathBuf>), EngineError> {
    let spec = loaded.spec();
    let (given, base) = match (&opts.source, &spec.source.url) {
        (Some(u), _) => (u, None),
        (None, Some(u)) => (u, Some(loaded.base_dir())),
        (None, None) => match &opts.default_source {
            Some(u) => (u, None),
            None => {
                return Err(EngineError::Usage(format!(
                    "report `{}` names no source: give --source URL, set `source.url` in the spec, or set REAM_SOURCE",
                    spec.report
                )))
            }
        },
    };
    let base = base.filter(|_| !NamedSources::is_name(given));
    Ok((opts.sources.resolve(given)?.to_string(), base))
}

/// A spec run's request, checked without its database ([`check_request`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The source's URL with any password removed (what per-source limits count by).
    pub source: String,
    /// Identical runs have the same key (hex SHA-256): the same spec, format, split and
    /// compression, the same parameters once bound (defaults filled in, lists in their
    /// order), and the same actor context as far as the spec uses it (the claims its SQL
    /// names, its session settings). Two actors whose claims the spec does not read get
    /// the same key: their outputs are the same bytes.
    pub flight: String,
}

/// What [`prepare`] checks of a spec run before it opens the database: the format, the
/// parameters, the split, the source URL and the actor's claims the SQL uses. A run
/// that passes may still fail on the database, never on its request.
pub fn check_request(loaded: &LoadedSpec, opts: &RunOptions) -> Result<Checked, EngineError> {
    let spec = loaded.spec();
    if !opts.format.available() {
        return Err(EngineError::Usage(format!("this build of ream cannot write {}", opts.format)));
    }
    if !spec.detail && opts.format.detail_only() {
        return Err(EngineError::Usage(format!(
            "report `{}` has no detail rows (`detail: false`), and {} writes detail rows only",
            spec.report, opts.format
        )));
    }
    check_split(opts, spec.detail, &spec.report)?;
    check_burst(opts, spec)?;
    let params: BoundParams = bind(&spec.parameters, &opts.params).map_err(EngineError::Params)?;
    let (url, base) = spec_source(loaded, opts)?;
    source_url(&url, base.as_deref())?;
    let (bound, session) = actor_bindings(loaded, &url, &params, opts.actor.as_ref())?;
    Ok(Checked { source: ream_core::redact(&url), flight: flight_key(loaded, opts, &url, &bound, &session) })
}

/// [`Checked::flight`]: a hash of everything that decides the output's bytes.
fn flight_key(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    url: &str,
    bound: &BoundParams,
    session: &[(String, String)],
) -> String {
    use sha2::{Digest, Sha256};
    let mut params: Vec<(&String, String)> = bound.iter().map(|(k, v)| (k, v.to_json())).collect();
    params.sort();
    let material = serde_json::json!({
        "spec": loaded.spec(),
        "source": url,
        "format": opts.format.name(),
        "compress": format!("{:?}", opts.compress),
        "split": opts.split.as_ref().map(|s| format!("{s:?}")),
        "burst": opts.burst,
        "params": params,
        "session": session,
    });
    let hash = Sha256::digest(material.to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parameters the read binds (the spec's, and each `:actor.<claim>` its SQL and
/// `source.session` use) and the session settings, resolved. A claim the actor lacks
/// fails here, before the database is opened.
fn actor_bindings(
    loaded: &LoadedSpec,
    url: &str,
    params: &BoundParams,
    actor: Option<&ream_core::Actor>,
) -> Result<(BoundParams, Vec<(String, String)>), EngineError> {
    let spec = loaded.spec();
    let dialect = ream_core::sql::Dialect::from_url(url).unwrap_or(ream_core::sql::Dialect::Sqlite);
    let sqls = [&spec.source.filter, &spec.source.sql].into_iter().flatten();
    let mut names: Vec<String> = sqls.flat_map(|s| ream_core::sql::placeholders(s, dialect)).collect();
    let session = loaded.parsed().session();
    names.extend(session.iter().flat_map(|(_, t)| t.names().map(str::to_string)));
    let mut bound = params.clone();
    ream_core::actor::bind_claims(&mut bound, actor, &names)
        .map_err(|source| EngineError::Claim { report: spec.report.clone(), source })?;
    let settings = session
        .iter()
        .map(|(name, t)| {
            let value = t.render(|n| match bound.get(n) {
                Some(ream_core::params::ParamValue::One(v)) => Some(v.clone()),
                Some(ream_core::params::ParamValue::List(vs)) => {
                    Some(ream_core::Value::Str(vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",").into()))
                }
                None => None,
            });
            (name.clone(), value)
        })
        .collect();
    Ok((bound, settings))
}

/// The font files a spec's `page` names, relative to the spec file. Checked here, before
/// the database is opened: a file that cannot be read, or is not a TrueType font, is a spec
/// error naming the key.
fn user_fonts(loaded: &LoadedSpec) -> Result<Option<UserFonts>, EngineError> {
    let page = &loaded.spec().page;
    let Some(regular) = &page.font else { return Ok(None) };
    let dir = loaded.path().and_then(Path::parent).unwrap_or(Path::new("."));
    let read = |key: &str, file: &str| -> Result<Arc<[u8]>, EngineError> {
        let path = dir.join(file);
        let fail = |msg: String| EngineError::Spec(loaded.locate(vec![SpecError::new(key, msg)]));
        let data = read_font(&path).map_err(|e| fail(format!("cannot read font `{}`: {e}", path.display())))?;
        match data.get(..4) {
            Some([0, 1, 0, 0]) | Some(b"true") => Ok(data.into()),
            Some(b"OTTO") => Err(fail(format!(
                "`{}` has CFF (PostScript) outlines: ream embeds TrueType fonts (.ttf)",
                path.display()
            ))),
            Some(b"ttcf") => Err(fail(format!("`{}` is a font collection (.ttc): give one .ttf", path.display()))),
            _ => Err(fail(format!("`{}` is not a TrueType font (.ttf)", path.display()))),
        }
    };
    let regular = read("page.font", regular)?;
    let bold = match &page.font_bold {
        Some(b) => read("page.font_bold", b)?,
        None => regular.clone(),
    };
    Ok(Some(UserFonts { regular, bold }))
}

/// The largest font file ream reads (Noto Sans CJK as one .ttf is about 17 MB).
const MAX_FONT_BYTES: u64 = 64 << 20;

/// A font file's bytes: a regular file (a FIFO would hang, `/dev/zero` never ends) of at
/// most `MAX_FONT_BYTES`.
fn read_font(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_FONT_BYTES {
        return Err(std::io::Error::other(format!(
            "{} MB, over the {} MB a font may have",
            meta.len() >> 20,
            MAX_FONT_BYTES >> 20
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?.take(MAX_FONT_BYTES + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_FONT_BYTES {
        return Err(std::io::Error::other("it grew past the size a font may have while it was read"));
    }
    Ok(data)
}

/// The columns a report shows: the spec's, with their parsed formats and widths, or every
/// field of the source. A flat output (no bands to
/// show a group in) starts with the group fields the spec's columns leave out, so a
/// customer statement as CSV still says whose each row is.
fn output_columns(loaded: &LoadedSpec, schema: &SchemaRef, flat: bool) -> Result<Vec<OutputColumn>, EngineError> {
    let spec = loaded.spec();
    if spec.columns.is_empty() {
        return Ok(all_columns(schema));
    }
    let parsed = loaded.parsed();
    let listed = |field: &str| spec.columns.iter().any(|c| c.field == field);
    let mut out = Vec::new();
    for (i, g) in spec.groups.iter().enumerate().filter(|(_, g)| flat && !listed(&g.by)) {
        if out.iter().all(|c: &OutputColumn| c.field != g.by) {
            out.push(raw_column(&g.by, field_index(loaded, schema, format!("groups[{i}].by"), &g.by)?));
        }
    }
    let column = |(i, c): (usize, &ream_core::spec::ColumnConfig)| {
        Ok(OutputColumn {
            field: c.field.clone(),
            label: c.label().to_string(),
            index: field_index(loaded, schema, format!("columns[{i}].field"), &c.field)?,
            format: parsed.column_format(i),
            align: c.align,
            width: parsed.column_width(i),
            wrap: c.wrap,
            // Validated: each names a declared variable (in the spec's order, as the run's).
            totals: c.totals.iter().filter_map(|t| spec.variables.get_index_of(t)).collect(),
        })
    };
    for c in spec.columns.iter().enumerate() {
        out.push(column(c)?);
    }
    Ok(out)
}

/// The stages of a read of rows: group breaks, variables, charts.
fn streaming_stages(
    spec: &ream_core::spec::Spec,
    opts: &RunOptions,
    groups: &[GroupMeta],
    variables: &[VariableSpec],
) -> Vec<StageConfig> {
    let mut stages = Vec::new();
    if !groups.is_empty() {
        stages.push(StageConfig::Group { fields: groups.iter().map(|g| g.index).collect() });
    }
    if !variables.is_empty() {
        stages.push(StageConfig::Accumulate { variables: variables.to_vec() });
    }
    if !spec.charts.is_empty() {
        // A format that shows no chart does not compute them: a chart's limits (its
        // max_buckets) cannot fail a CSV export.
        if opts.format.shows_charts() {
            stages.push(StageConfig::Chart { charts: spec.charts.clone() });
        }
    }
    stages
}

fn prepare_spec(loaded: LoadedSpec, opts: &RunOptions, cancel: CancelToken) -> Result<Prepared, EngineError> {
    let spec = loaded.spec();
    if !spec.detail && opts.format.detail_only() {
        return Err(EngineError::Usage(format!(
            "report `{}` has no detail rows (`detail: false`), and {} writes detail rows only: \
             write its summary as csv, ndjson, json, html, xlsx or pdf",
            spec.report, opts.format
        )));
    }
    check_split(opts, spec.detail, &spec.report)?;
    check_burst(opts, spec)?;
    let fonts = user_fonts(&loaded)?;
    let (opened, params) = open_planned(&loaded, opts, &cancel)?;
    let source = opened.source;
    let opened_at = std::time::SystemTime::now();
    let mut plan = source.plan().clone();
    plan.pushdown = opened.pushdown;
    plan.parallel = opened.parallel;
    let burst_by = spec.burst.as_ref().filter(|_| opts.burst).map(|b| b.by.as_str());
    let counters = Counters::new(source.as_ref(), opts, burst_by);
    let progress = Arc::new(Progress::new());
    let (settled, source) =
        settle_schema(source, &cancel, &progress, &spec.report).map_err(|e| spec_sql::in_spec(&loaded, e))?;
    // An aggregated read's rows are its groups: the report's fields are the base read's.
    let schema = if opened.stages.is_some() { opened.base_schema } else { settled };
    let errors = check_types(&loaded, &schema)?;
    if !errors.is_empty() {
        cancel.cancel();
        return Err(EngineError::Spec(loaded.locate(errors)));
    }
    let parsed = loaded.parsed();
    let locale = parsed.locale();
    let tpl = |t: Option<&Template>| t.map(|t| t.clone().localized(locale));
    let columns = output_columns(&loaded, &schema, opts.format.is_flat(&opts.render))?;
    let mut groups = Vec::new();
    for (i, g) in spec.groups.iter().enumerate() {
        let (header, footer) = parsed.group_bands(i);
        groups.push(GroupMeta {
            name: g.name().to_string(),
            field: g.by.clone(),
            index: field_index(&loaded, &schema, format!("groups[{i}].by"), &g.by)?,
            header: tpl(header),
            footer: tpl(footer),
            page_break: g.page_break,
        });
    }
    let variables = variable_specs(&loaded, &schema)?;
    let stages = match opened.stages {
        Some(rollup) => rollup,
        None => streaming_stages(spec, opts, &groups, &variables),
    };
    let meta = ReportMeta {
        report: spec.report.clone(),
        title: parsed.title().map(|t| {
            t.render(|n| {
                params.get(n).map(|v| match v {
                    ream_core::params::ParamValue::One(v) => v.clone(),
                    ream_core::params::ParamValue::List(vs) => {
                        ream_core::Value::Str(vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ").into())
                    }
                })
            })
        }),
        parameters: params.into_iter().collect(),
        schema: schema.clone(),
        columns,
        detail: spec.detail,
        locale,
        groups,
        variables: spec.variables.keys().cloned().collect(),
        variable_specs: variables,
        summary: tpl(parsed.summary()),
        no_data: tpl(parsed.no_data()),
        page_header: tpl(parsed.page_header()),
        page_footer: tpl(parsed.page_footer()),
        page: PageSetup { fonts, ..parsed.page().clone() },
        strategy: describe(&plan),
    };
    let source = first_message(source, &cancel, &progress, &meta.report).map_err(|e| spec_sql::in_spec(&loaded, e))?;
    let burst = parsed.burst().filter(|_| opts.burst).cloned();
    let mut about = About::new(&meta, Some(&loaded), opts, opened_at);
    about.burst = burst.as_ref().map(|b| b.by.clone());
    Ok(Prepared {
        about,
        burst,
        meta: Arc::new(meta),
        format: opts.format,
        plan,
        source,
        stages,
        counters,
        cancel,
        progress,
        render: RenderOptions {
            csv_neutralize_formulas: opts.render.csv_neutralize_formulas
                || loaded.spec().csv.as_ref().is_some_and(|c| c.neutralize_formulas),
            ..opts.render.clone()
        },
        compress: opts.compress,
        compress_level: opts.compress.level(opts.compress_level).map_err(EngineError::Usage)?,
    })
}
