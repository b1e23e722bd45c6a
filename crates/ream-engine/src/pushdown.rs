//! Aggregate pushdown: a summary report (no detail band) whose groups and variables all
//! have SQL equivalents runs as one `GROUP BY` at its finest group level in the database,
//! and ream rolls the outer levels and the grand total up from those rows
//! (`ream_stages::rollup`). The database then sends one row per group instead of every
//! row: TPC-H Q1 on PostgreSQL sends 4 rows, not 5.9 million.
//!
//! [`plan`] decides from the spec, the base read's settled schema and the dialect, and
//! says why not when it cannot; the values equal the streaming path's (exactly for
//! integers, decimals and counts), which `tests/pushdown.rs` checks on every database.

use arrow_schema::{DataType, Field, SchemaRef};
use ream_core::load::LoadedSpec;
use ream_core::spec::{Aggregate, Strategy};
use ream_core::sql::Dialect;
use ream_sources::{Aggregation, Partial, PartialOf};
use ream_stages::rollup::{Merge, RollupVariable, SumOf};
use ream_stages::StageConfig;

use crate::RunOptions;

/// The aggregated read and the stages that roll it up.
pub(crate) struct Pushdown {
    pub aggregation: Aggregation,
    pub stages: Vec<StageConfig>,
}

/// The pushdown of `loaded` over its base read's `schema` (settled) on `dialect`, or why
/// it reads row by row. `None` for a report with detail rows (pushdown does not apply).
pub(crate) fn plan(
    loaded: &LoadedSpec,
    schema: &SchemaRef,
    settled: bool,
    dialect: Dialect,
    opts: &RunOptions,
) -> Option<Result<Pushdown, String>> {
    let spec = loaded.spec();
    if spec.detail {
        return None;
    }
    Some(applies(loaded, settled, opts).and_then(|()| build(loaded, schema, dialect)))
}

/// The report-wide conditions: asked for, no charts, headers that show group fields only.
fn applies(loaded: &LoadedSpec, settled: bool, opts: &RunOptions) -> Result<(), String> {
    let spec = loaded.spec();
    if !opts.pushdown {
        return Err("turned off (--no-pushdown)".into());
    }
    if spec.source.pushdown == Some(false) {
        return Err("turned off (source.pushdown: false)".into());
    }
    if !spec.charts.is_empty() && opts.format.shows_charts() {
        return Err("the report's charts are drawn from its rows".into());
    }
    if let Some(s @ (Strategy::Keyset | Strategy::Offset)) = opts.strategy.or(spec.source.strategy) {
        return Err(format!("the strategy {s} is asked for"));
    }
    if opts.burst {
        return Err("a burst run reads its rows".into());
    }
    if !settled {
        return Err("SQLite declares no type for some fields (give them a `type`)".into());
    }
    let group_fields: Vec<&str> = spec.groups.iter().map(|g| g.by.as_str()).collect();
    let parsed = loaded.parsed();
    for i in 0..spec.groups.len() {
        let Some(header) = parsed.group_bands(i).0 else { continue };
        let known =
            |n: &str| group_fields.contains(&n) || spec.parameters.contains_key(n) || spec.variables.contains_key(n);
        if let Some(n) = header.names().find(|n| !known(n)) {
            return Err(format!(
                "the header of group `{}` shows `{n}` of the group's first row",
                spec.groups[i].name()
            ));
        }
    }
    Ok(())
}

/// The aggregation and its rollup, variable by variable.
fn build(loaded: &LoadedSpec, schema: &SchemaRef, dialect: Dialect) -> Result<Pushdown, String> {
    let spec = loaded.spec();
    let by: Vec<String> = spec.groups.iter().map(|g| g.by.clone()).collect();
    let finest = by.len().checked_sub(1);
    let mut partials: Vec<Partial> = Vec::new();
    // A column per distinct partial, after the group fields.
    let mut column = |of: PartialOf| -> usize {
        let at = partials.iter().position(|p| p.of == of).unwrap_or_else(|| {
            partials.push(Partial { name: format!("__ream_p{}", partials.len()), of });
            partials.len() - 1
        });
        by.len() + at
    };
    let rows = column(PartialOf::Rows);
    let mut variables = Vec::new();
    for (i, (name, v)) in spec.variables.iter().enumerate() {
        let (aggregate, field) = loaded.parsed().aggregate(i).ok_or_else(|| format!("`{name}` has no aggregate"))?;
        let reset_level = v.reset.as_deref().and_then(|r| spec.groups.iter().position(|g| g.name() == r));
        let base = (field != "*")
            .then(|| schema.field_with_name(field).cloned().map_err(|_| format!("no field `{field}`")))
            .transpose()?;
        let merge = merge_of(aggregate, base.as_ref(), dialect, reset_level == finest && finest.is_some(), &mut column)
            .map_err(|why| format!("`{name}`: {why}"))?
            .unwrap_or(Merge::Count(rows));
        let field_index = base.as_ref().and_then(|f| schema.index_of(f.name()).ok());
        let spec = ream_core::VariableSpec { name: name.clone(), aggregate, field: field_index, reset_level };
        variables.push(RollupVariable { spec, base, merge });
    }
    let mut stages = Vec::new();
    if !by.is_empty() {
        stages.push(StageConfig::Group { fields: (0..by.len()).collect() });
    }
    stages.push(StageConfig::Rollup { variables, rows });
    Ok(Pushdown { aggregation: Aggregation { by, partials }, stages })
}

/// How one variable merges, adding the partials it needs with `column`; `Ok(None)` for
/// `count: "*"` (the rows column). `finest`: whether it resets with the finest group.
fn merge_of(
    aggregate: Aggregate,
    base: Option<&Field>,
    dialect: Dialect,
    finest: bool,
    column: &mut impl FnMut(PartialOf) -> usize,
) -> Result<Option<Merge>, String> {
    let Some(f) = base else { return Ok(None) };
    let name = f.name().clone();
    let decimal = matches!(f.data_type(), DataType::Decimal128(..)) || ream_core::types::is_decimal_text(f);
    let text = matches!(f.data_type(), DataType::Utf8) && !decimal;
    let sqlite = dialect == Dialect::Sqlite;
    let sum = |column: &mut dyn FnMut(PartialOf) -> usize| -> Result<SumOf, String> {
        match (f.data_type(), sqlite) {
            (DataType::Int64, true) => Ok(SumOf::Halves {
                high: column(PartialOf::SumHigh(name.clone())),
                low: column(PartialOf::SumLow(name.clone())),
            }),
            (_, true) if decimal => Err("SQLite sums decimals as floats, and ream sums them exactly".into()),
            _ => Ok(SumOf::Column(column(PartialOf::Sum(name.clone())))),
        }
    };
    Ok(Some(match aggregate {
        Aggregate::Count => Merge::Count(column(PartialOf::Count(name.clone()))),
        Aggregate::CountDistinct if !finest => {
            return Err("a distinct count of an outer group or the report cannot be added up from its groups'".into())
        }
        Aggregate::CountDistinct if text && dialect == Dialect::Mysql => {
            return Err("MySQL compares text by its collation, ream by its characters".into())
        }
        Aggregate::CountDistinct => Merge::Count(column(PartialOf::CountDistinct(name.clone()))),
        Aggregate::Sum => Merge::Sum(sum(column)?),
        Aggregate::Avg => Merge::Avg { sum: sum(column)?, count: column(PartialOf::Count(name.clone())) },
        Aggregate::Min | Aggregate::Max => {
            let orderable = matches!(
                f.data_type(),
                DataType::Int64
                    | DataType::Float64
                    | DataType::Decimal128(..)
                    | DataType::Date32
                    | DataType::Timestamp(..)
            ) || decimal;
            if !(orderable || (text && sqlite)) {
                return Err(match text {
                    true => "the database orders text by its collation, ream by its characters".into(),
                    false => {
                        format!("{} of {} stays in ream", aggregate.name(), ream_core::types::type_label(f.data_type()))
                    }
                });
            }
            let of =
                if aggregate == Aggregate::Min { PartialOf::Min(name.clone()) } else { PartialOf::Max(name.clone()) };
            Merge::MinMax(column(of))
        }
        Aggregate::Stddev | Aggregate::Variance if sqlite => return Err("SQLite has no sample variance".into()),
        Aggregate::Stddev | Aggregate::Variance => Merge::Moments {
            count: column(PartialOf::Count(name.clone())),
            mean: column(PartialOf::FloatAvg(name.clone())),
            variance: column(PartialOf::VarSamp(name.clone())),
        },
        Aggregate::First | Aggregate::Last => {
            return Err(format!("`{}` needs the rows in their order", aggregate.name()))
        }
    }))
}
