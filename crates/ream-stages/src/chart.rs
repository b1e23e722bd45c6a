use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::i256;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use ream_core::chart::{ChartData, Downsampled, Point, Series, XScale, OTHER};
use ream_core::spec::{ChartAggregate, ChartConfig, ChartKind, TimeBucket};
use ream_core::value::date_from_days;
use ream_core::{Event, Value};
use rustc_hash::FxHashMap;

use crate::downsample::M4;
use crate::{compensated, neumaier, Stage, StageError};

/// Rows buffered before a histogram with `bins: N` picks its first width.
const BIN_SAMPLE: usize = 1024;
/// While aggregating, bins are this many times finer than asked; at the end they merge
/// to the round width that fits (the widening ladder alone jumps ×5 and can leave a
/// fifth of the bins asked for).
const BIN_RESOLUTION: usize = 4;
const DEFAULT_MAX_POINTS: usize = 500;
const DEFAULT_MAX_SERIES: usize = 10;
const DEFAULT_MAX_BUCKETS: usize = 100_000;
const DEFAULT_HISTOGRAM_BINS: usize = 20;
const US_PER_MINUTE: i64 = 60_000_000;
const US_PER_HOUR: i64 = 3_600_000_000;
const US_PER_DAY: i64 = 86_400_000_000;

/// Charts, aggregated as the rows go by: memory is one cell per (bucket, series), or
/// `max_points` per series for raw points, never one per row. The charts' data rides on
/// the `End` event.
///
/// - Time buckets, exact x values and categories are cells in a hash map.
/// - `bins: N` picks a round width from the first rows, and widens it (×2, ×5: 1, 2, 10,
///   20, 100…) as the range grows, merging neighbouring bins, so about N bins cover
///   whatever range the data has, in one pass.
/// - Categories and series are ranked at the end: the largest are kept, the rest summed
///   up as `other` (exact for sum, count, avg, min and max: cells merge).
/// - Raw points go through streaming M4 (see [`M4`]); line and area charts with more
///   buckets than `max_points` are reduced with M4 at the end.
pub struct Chart {
    charts: Vec<ChartAcc>,
}

impl Chart {
    pub fn new(configs: Vec<ChartConfig>, schema: &SchemaRef) -> Result<Chart, StageError> {
        let charts = configs.into_iter().map(|c| ChartAcc::new(c, schema)).collect::<Result<_, _>>()?;
        Ok(Chart { charts })
    }
}

impl Stage for Chart {
    fn push(&mut self, event: Event, out: &mut Vec<Event>) -> Result<(), StageError> {
        match event {
            Event::Rows(batch) => {
                for c in &mut self.charts {
                    c.push(&batch)?;
                }
                out.push(Event::Rows(batch));
            }
            Event::End { variables, rows, .. } => {
                let charts: Vec<ChartData> = self.charts.iter_mut().map(|c| c.finish()).collect::<Result<_, _>>()?;
                out.push(Event::End { variables, rows, charts: Arc::from(charts) });
            }
            other => out.push(other),
        }
        Ok(())
    }
}

/// How raw x values are read and shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RawKind {
    Int,
    Float,
    Date,
    Timestamp,
}

/// The y column, as the cells take it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    /// Integers and decimals: exact sums in i128 units at this scale.
    Exact(i8),
    Float,
    /// Only NULL or not matters (`count: field` of any type).
    Any,
}

#[derive(Debug, Clone, Copy)]
enum YItem {
    Null,
    I(i128),
    F(f64),
}

impl YItem {
    fn as_f64(self, num: Num) -> Option<f64> {
        match (self, num) {
            (YItem::I(v), Num::Exact(s)) => Some(v as f64 / 10f64.powi(s as i32)),
            (YItem::F(v), _) => Some(v),
            _ => None,
        }
    }
}

/// A batch's y column, typed.
enum YCol<'a> {
    /// `count: "*"`.
    Rows,
    Int(&'a arrow_array::Int64Array),
    Decimal(&'a arrow_array::Decimal128Array),
    Float(&'a arrow_array::Float64Array),
    /// `count: field` of a non-numeric field: only NULL or not matters.
    Any(&'a dyn Array),
}

impl YCol<'_> {
    #[inline]
    fn at(&self, row: usize) -> YItem {
        match self {
            YCol::Rows => YItem::Null,
            YCol::Int(a) if a.is_valid(row) => YItem::I(a.value(row) as i128),
            YCol::Decimal(a) if a.is_valid(row) => YItem::I(a.value(row)),
            YCol::Float(a) if a.is_valid(row) => YItem::F(a.value(row)),
            YCol::Any(a) if a.is_valid(row) => YItem::F(0.0),
            _ => YItem::Null,
        }
    }
}

/// One (bucket, series) aggregate. Mergeable, so bins can widen and the tail of a
/// ranking can become `other` exactly.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    rows: u64,
    n: u64,
    /// i256: a 38-digit decimal column would pass i128 after two rows.
    sum_i: i256,
    min_i: i128,
    max_i: i128,
    sum_f: f64,
    comp: f64,
    min_f: f64,
    max_f: f64,
}

/// An exact sum in units of `10^-scale`, as the nearest float.
fn wide_f64(units: i256, scale: i8) -> f64 {
    units.to_string().parse::<f64>().unwrap_or(f64::NAN) / 10f64.powi(scale as i32)
}

impl Cell {
    #[inline]
    fn add(&mut self, y: YItem) {
        self.rows += 1;
        match y {
            YItem::Null => {}
            YItem::I(v) => {
                if self.n == 0 {
                    self.min_i = v;
                    self.max_i = v;
                } else {
                    self.min_i = self.min_i.min(v);
                    self.max_i = self.max_i.max(v);
                }
                self.n += 1;
                self.sum_i = self.sum_i.wrapping_add(i256::from_i128(v));
            }
            YItem::F(v) => {
                if self.n == 0 {
                    self.min_f = v;
                    self.max_f = v;
                } else {
                    self.min_f = self.min_f.min(v);
                    self.max_f = self.max_f.max(v);
                }
                self.n += 1;
                neumaier(&mut self.sum_f, &mut self.comp, v);
            }
        }
    }

    fn merge(&mut self, o: &Cell) {
        self.rows += o.rows;
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            (self.min_i, self.max_i, self.min_f, self.max_f) = (o.min_i, o.max_i, o.min_f, o.max_f);
        } else {
            self.min_i = self.min_i.min(o.min_i);
            self.max_i = self.max_i.max(o.max_i);
            self.min_f = self.min_f.min(o.min_f);
            self.max_f = self.max_f.max(o.max_f);
        }
        self.n += o.n;
        self.sum_i = self.sum_i.wrapping_add(o.sum_i);
        neumaier(&mut self.sum_f, &mut self.comp, o.sum_f);
        self.comp += o.comp;
    }

    fn value(&self, agg: ChartAggregate, num: Num, counts_rows: bool) -> Value {
        let exact = |units: i128, scale: i8| {
            if scale == 0 {
                i64::try_from(units).map(Value::Int).unwrap_or(Value::Decimal { units, scale })
            } else {
                Value::Decimal { units, scale }
            }
        };
        if agg == ChartAggregate::Count {
            return Value::Int(if counts_rows { self.rows } else { self.n } as i64);
        }
        if self.n == 0 {
            return Value::Null;
        }
        match (agg, num) {
            // A sum beyond 38 digits has no exact value type: a chart draws it as a float.
            (ChartAggregate::Sum, Num::Exact(s)) => match self.sum_i.to_i128() {
                Some(units) => exact(units, s),
                None => Value::Float(wide_f64(self.sum_i, s)),
            },
            (ChartAggregate::Sum, _) => Value::Float(compensated(self.sum_f, self.comp)),
            (ChartAggregate::Avg, Num::Exact(s)) => Value::Float(wide_f64(self.sum_i, s) / self.n as f64),
            (ChartAggregate::Avg, _) => Value::Float(compensated(self.sum_f, self.comp) / self.n as f64),
            (ChartAggregate::Min, Num::Exact(s)) => exact(self.min_i, s),
            (ChartAggregate::Max, Num::Exact(s)) => exact(self.max_i, s),
            (ChartAggregate::Min, _) => Value::Float(self.min_f),
            (ChartAggregate::Max, _) => Value::Float(self.max_f),
            _ => Value::Null,
        }
    }
}

/// Cells by (key, series). The hash map holds only 16-byte entries pointing into a dense
/// vector, and a float chart's cells are 48 bytes (no exact i128 parts): a chart over
/// random dates probes a table small enough to stay in cache, then touches one small
/// cell. (A map of whole 112-byte cells missed the cache twice per row; `perf` showed it.)
struct CellMap {
    index: FxHashMap<(i64, u32), u32>,
    keys: Vec<(i64, u32)>,
    store: Store,
}

enum Store {
    /// Float and count charts.
    Float(Vec<FloatCell>),
    /// Charts of integers and decimals, summed exactly.
    Exact(Vec<Cell>),
}

/// A [`Cell`] without the exact parts.
#[derive(Debug, Clone, Copy, Default)]
struct FloatCell {
    rows: u64,
    n: u64,
    sum: f64,
    comp: f64,
    min: f64,
    max: f64,
}

impl FloatCell {
    #[inline]
    fn add(&mut self, y: YItem) {
        self.rows += 1;
        if let YItem::F(v) = y {
            if self.n == 0 {
                self.min = v;
                self.max = v;
            } else {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
            }
            self.n += 1;
            neumaier(&mut self.sum, &mut self.comp, v);
        }
    }

    fn full(self) -> Cell {
        Cell {
            rows: self.rows,
            n: self.n,
            sum_f: self.sum,
            comp: self.comp,
            min_f: self.min,
            max_f: self.max,
            ..Cell::default()
        }
    }

    fn from_full(c: &Cell) -> FloatCell {
        FloatCell { rows: c.rows, n: c.n, sum: c.sum_f, comp: c.comp, min: c.min_f, max: c.max_f }
    }
}

impl CellMap {
    fn new(exact: bool) -> CellMap {
        let store = if exact { Store::Exact(Vec::new()) } else { Store::Float(Vec::new()) };
        CellMap { index: FxHashMap::default(), keys: Vec::new(), store }
    }

    /// Add to the cell at `key`; `false` when there is no such cell yet.
    #[inline]
    fn add(&mut self, key: &(i64, u32), y: YItem) -> bool {
        let Some(&i) = self.index.get(key) else { return false };
        match &mut self.store {
            Store::Float(v) => v[i as usize].add(y),
            Store::Exact(v) => v[i as usize].add(y),
        }
        true
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn insert(&mut self, key: (i64, u32), c: Cell) {
        self.index.insert(key, self.keys.len() as u32);
        self.keys.push(key);
        match &mut self.store {
            Store::Float(v) => v.push(FloatCell::from_full(&c)),
            Store::Exact(v) => v.push(c),
        }
    }

    fn merge_into(&mut self, key: (i64, u32), c: &Cell) {
        match self.index.get(&key) {
            Some(&i) => match &mut self.store {
                Store::Float(v) => {
                    let mut full = v[i as usize].full();
                    full.merge(c);
                    v[i as usize] = FloatCell::from_full(&full);
                }
                Store::Exact(v) => v[i as usize].merge(c),
            },
            None => self.insert(key, *c),
        }
    }

    /// Re-key every cell, merging those that land on the same key.
    fn rekey(&mut self, f: impl Fn((i64, u32)) -> (i64, u32)) {
        let exact = matches!(self.store, Store::Exact(_));
        let old = std::mem::replace(self, CellMap::new(exact)).into_vec();
        for (k, c) in old {
            self.merge_into(f(k), &c);
        }
    }

    fn into_vec(self) -> Vec<((i64, u32), Cell)> {
        match self.store {
            Store::Float(v) => self.keys.into_iter().zip(v.into_iter().map(FloatCell::full)).collect(),
            Store::Exact(v) => self.keys.into_iter().zip(v).collect(),
        }
    }
}

/// Distinct text values (series names, categories) to small ids.
#[derive(Default)]
struct Names {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Option<Box<str>>>,
    null: Option<u32>,
    last: Option<u32>,
}

impl Names {
    #[inline]
    fn id(&mut self, s: Option<&str>) -> u32 {
        match s {
            None => *self.null.get_or_insert_with(|| {
                self.names.push(None);
                (self.names.len() - 1) as u32
            }),
            Some(s) => {
                // Runs of one value (sorted or clustered data) skip the hash.
                if let Some(last) = self.last {
                    if self.names[last as usize].as_deref() == Some(s) {
                        return last;
                    }
                }
                if let Some(id) = self.ids.get(s) {
                    self.last = Some(*id);
                    return *id;
                }
                let id = self.names.len() as u32;
                self.names.push(Some(s.into()));
                self.ids.insert(s.into(), id);
                id
            }
        }
    }

    fn name(&self, id: u32) -> Option<String> {
        self.names.get(id as usize).and_then(|n| n.as_deref().map(str::to_string))
    }
}

/// The largest bin key: keys stay exact in f64 and their spans far from overflow.
const MAX_BIN_KEY: f64 = (1u64 << 52) as f64;

/// Bin widths: `mant × 10^exp` (mant 1, 2 or 5), or a fixed width from the spec. The
/// bin of x is `floor(x × mul / div)`, with the two factors worked out once per width.
#[derive(Debug, Clone, Copy)]
struct Width {
    nice: Option<(i64, i32)>,
    mul: f64,
    div: f64,
}

impl Width {
    fn nice(mant: i64, exp: i32) -> Width {
        // Divide by the power of ten last: 0.6 / 0.2 in floats is 2.9999…, 6 / 2 is 3.
        if exp < 0 {
            Width { nice: Some((mant, exp)), mul: 10f64.powi(-exp), div: mant as f64 }
        } else {
            Width { nice: Some((mant, exp)), mul: 1.0, div: mant as f64 * 10f64.powi(exp) }
        }
    }

    fn fixed(w: f64) -> Width {
        Width { nice: None, mul: 1.0, div: w }
    }

    fn value(self) -> f64 {
        self.div / self.mul
    }

    #[inline]
    fn bin(self, x: f64) -> i64 {
        (x * self.mul / self.div).floor() as i64
    }

    /// The lower edge of bin `k`, written the short way (0.6, not 0.6000000000000001).
    fn edge(self, k: i64) -> f64 {
        k as f64 * self.div / self.mul
    }

    /// `factor` bins of this width as one, written with the smallest mantissa.
    fn times(self, factor: i64) -> Width {
        match self.nice {
            Some((mant, mut exp)) => {
                let mut m = mant * factor;
                while m % 10 == 0 {
                    m /= 10;
                    exp += 1;
                }
                Width::nice(m, exp)
            }
            None => Width::fixed(self.div * factor as f64),
        }
    }

    /// The next round width and how many current bins each new bin holds.
    fn wider(self) -> (Width, i64) {
        match self.nice {
            Some((1, exp)) => (Width::nice(2, exp), 2),
            Some((_, exp)) => (Width::nice(1, exp + 1), 5),
            None => (self, 1),
        }
    }

    /// The narrowest round width that spans `lo..=hi` in at most `target` bins.
    fn fitting(lo: f64, hi: f64, target: usize) -> Width {
        let range = hi - lo;
        // Capped so the width stays finite when lo..hi spans most of the f64 range.
        let exp = if range > 0.0 { ((range / target as f64).log10().floor() as i32).min(300) } else { 0 };
        let mut w = Width::nice(1, exp);
        while (w.bin(hi) - w.bin(lo) + 1) as usize > target {
            w = w.wider().0;
        }
        w
    }
}

/// How a chart turns a row's x into a cell key.
enum XRead {
    Time {
        index: usize,
        bucket: TimeBucket,
        memo: (i64, i64),
    },
    /// Unbucketed x with an aggregated y: one cell per distinct value.
    Exact {
        index: usize,
        kind: RawKind,
    },
    Bins {
        index: usize,
        target: usize,
        width: Option<Width>,
        pending: Vec<(f64, u32, YItem)>,
    },
    Categories {
        index: usize,
        top: usize,
        names: Names,
    },
    /// Raw points (y: field): x as a number, into M4.
    Raw {
        index: usize,
        kind: RawKind,
    },
}

struct ChartAcc {
    cfg: ChartConfig,
    x: XRead,
    agg: ChartAggregate,
    y_index: Option<usize>,
    num: Num,
    series: Option<(usize, Names)>,
    max_series: usize,
    max_buckets: usize,
    max_points: usize,
    cells: CellMap,
    /// The smallest and largest bin key, for widening bins.
    bin_span: Option<(i64, i64)>,
    /// Raw points: one M4 per series id (the first `max_series`), then one for the rest.
    m4: Vec<M4>,
    m4_other: Option<M4>,
    rows: u64,
    skipped: u64,
}

fn raw_kind(dt: &DataType) -> Option<RawKind> {
    Some(match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => RawKind::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => RawKind::Float,
        DataType::Date32 | DataType::Date64 => RawKind::Date,
        DataType::Timestamp(_, _) => RawKind::Timestamp,
        _ => return None,
    })
}

fn config_err(cfg: &ChartConfig, msg: String) -> StageError {
    StageError::Config(format!("chart `{}`: {msg}", cfg.id))
}

impl ChartAcc {
    fn new(cfg: ChartConfig, schema: &SchemaRef) -> Result<ChartAcc, StageError> {
        let field = |name: &str| -> Result<(usize, DataType), StageError> {
            let i = schema.index_of(name).map_err(|_| config_err(&cfg, format!("unknown field `{name}`")))?;
            Ok((i, schema.field(i).data_type().clone()))
        };
        let label = |dt: &DataType| ream_core::types::type_label(dt);
        let (xi, xt) = field(&cfg.x.field)?;
        let (agg, yname) = cfg.y.aggregate();
        let x = if let Some(bucket) = cfg.x.bucket {
            match (&xt, bucket) {
                (DataType::Date32 | DataType::Date64, TimeBucket::Minute | TimeBucket::Hour) => {
                    return Err(config_err(
                        &cfg,
                        format!("`{}` is a date: it has no {}s; use day or coarser", cfg.x.field, bucket.name()),
                    ))
                }
                (DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _), _) => {}
                _ => {
                    return Err(config_err(
                        &cfg,
                        format!("time buckets need a date or timestamp, but `{}` is {}", cfg.x.field, label(&xt)),
                    ))
                }
            }
            XRead::Time { index: xi, bucket, memo: (i64::MIN, 0) }
        } else if cfg.x.bins.is_some() || cfg.x.bin_width.is_some() || cfg.kind == ChartKind::Histogram {
            if !matches!(raw_kind(&xt), Some(RawKind::Int | RawKind::Float)) {
                return Err(config_err(&cfg, format!("bins need a number, but `{}` is {}", cfg.x.field, label(&xt))));
            }
            XRead::Bins {
                index: xi,
                target: cfg.x.bins.unwrap_or(DEFAULT_HISTOGRAM_BINS) * BIN_RESOLUTION,
                width: cfg.x.bin_width.map(Width::fixed),
                pending: Vec::new(),
            }
        } else if let Some(kind) = raw_kind(&xt).filter(|_| cfg.x.top.is_none()) {
            match agg {
                ChartAggregate::Value => XRead::Raw { index: xi, kind },
                _ => XRead::Exact { index: xi, kind },
            }
        } else {
            let default_top = if cfg.kind == ChartKind::Pie { 10 } else { 20 };
            XRead::Categories { index: xi, top: cfg.x.top.unwrap_or(default_top), names: Names::default() }
        };
        if matches!(x, XRead::Categories { .. }) && agg == ChartAggregate::Value {
            return Err(config_err(
                &cfg,
                format!("`{}` is {}: raw points need a number, date or timestamp x", cfg.x.field, label(&xt)),
            ));
        }
        let (y_index, num) = if agg == ChartAggregate::Count && yname == "*" {
            (None, Num::Any)
        } else {
            let (yi, yt) = field(yname)?;
            let num = match yt {
                DataType::Decimal128(_, s) => Num::Exact(s),
                ref t if matches!(raw_kind(t), Some(RawKind::Int)) && !matches!(t, DataType::UInt64) => Num::Exact(0),
                ref t if t.is_numeric() => Num::Float,
                _ if agg == ChartAggregate::Count => Num::Any,
                ref t => {
                    return Err(config_err(
                        &cfg,
                        format!("{} needs a number, but `{yname}` is {}", agg.name(), label(t)),
                    ))
                }
            };
            (Some(yi), num)
        };
        let series = match &cfg.series {
            Some(s) => Some((field(s)?.0, Names::default())),
            None => None,
        };
        Ok(ChartAcc {
            max_series: cfg.max_series.unwrap_or(DEFAULT_MAX_SERIES),
            max_buckets: cfg.max_buckets.unwrap_or(DEFAULT_MAX_BUCKETS),
            max_points: cfg.max_points.unwrap_or(DEFAULT_MAX_POINTS),
            cfg,
            x,
            agg,
            y_index,
            num,
            series,
            cells: CellMap::new(matches!(num, Num::Exact(_))),
            bin_span: None,
            m4: Vec::new(),
            m4_other: None,
            rows: 0,
            skipped: 0,
        })
    }

    fn compute_err(&self, message: String) -> StageError {
        StageError::Compute { stage: "chart", message: format!("chart `{}`: {message}", self.cfg.id) }
    }

    fn cast(&self, a: &ArrayRef, to: &DataType) -> Result<ArrayRef, StageError> {
        if a.data_type() == to {
            return Ok(a.clone());
        }
        arrow_cast::cast(a, to).map_err(|e| self.compute_err(e.to_string()))
    }

    /// x as f64 per row (days for dates, microseconds for timestamps).
    fn x_as_f64(&self, a: &ArrayRef) -> Result<ArrayRef, StageError> {
        match a.data_type() {
            DataType::Date32 | DataType::Date64 => {
                let d = self.cast(a, &DataType::Date32)?;
                self.cast(&self.cast(&d, &DataType::Int32)?, &DataType::Float64)
            }
            DataType::Timestamp(_, tz) => {
                let t = self.cast(a, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
                self.cast(&self.cast(&t, &DataType::Int64)?, &DataType::Float64)
            }
            _ => self.cast(a, &DataType::Float64),
        }
    }

    /// The y column, as the cells take it.
    fn y_column(&self, batch: &RecordBatch) -> Result<Option<ArrayRef>, StageError> {
        let Some(i) = self.y_index else { return Ok(None) };
        let a = batch.column(i);
        Ok(Some(match self.num {
            Num::Exact(0) if !matches!(a.data_type(), DataType::Decimal128(_, _)) => self.cast(a, &DataType::Int64)?,
            Num::Exact(_) | Num::Any => a.clone(),
            Num::Float => self.cast(a, &DataType::Float64)?,
        }))
    }

    fn push(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.rows += n as u64;
        let y = self.y_column(batch)?;
        // Typed once per batch, so the per-row read is a plain index.
        let ycol = match &y {
            None => YCol::Rows,
            Some(a) => match a.data_type() {
                DataType::Int64 => YCol::Int(a.as_primitive::<Int64Type>()),
                DataType::Decimal128(_, _) => YCol::Decimal(a.as_primitive::<Decimal128Type>()),
                DataType::Float64 => YCol::Float(a.as_primitive::<Float64Type>()),
                _ => YCol::Any(a.as_ref()),
            },
        };
        let y_at = |row: usize| -> YItem { ycol.at(row) };
        let series: Option<Vec<u32>> = match &mut self.series {
            None => None,
            Some((i, names)) => {
                let col = batch.column(*i);
                let text = if col.data_type() == &DataType::Utf8 {
                    col.clone()
                } else {
                    arrow_cast::cast(col, &DataType::Utf8).map_err(|e| StageError::Compute {
                        stage: "chart",
                        message: format!("chart `{}`: series: {e}", self.cfg.id),
                    })?
                };
                let text = text.as_string::<i32>();
                let ids: Vec<u32> = (0..n).map(|r| names.id(text.is_valid(r).then(|| text.value(r)))).collect();
                // Raw points keep max_series M4s, but every distinct name is remembered:
                // bound the names too.
                if names.names.len() > self.max_buckets {
                    return Err(StageError::Compute {
                        stage: "chart",
                        message: format!(
                            "chart `{}`: more than {} series values of `{}`: split by a coarser field, or raise max_buckets",
                            self.cfg.id,
                            self.max_buckets,
                            self.cfg.series.as_deref().unwrap_or_default()
                        ),
                    });
                }
                Some(ids)
            }
        };
        let s_at = |row: usize| series.as_ref().map_or(0, |s| s[row]);

        match &self.x {
            XRead::Raw { index, .. } => {
                let xs = self.x_as_f64(batch.column(*index))?;
                let xs = xs.as_primitive::<Float64Type>();
                for row in 0..n {
                    let yv = y_at(row).as_f64(self.num);
                    match (xs.is_valid(row).then(|| xs.value(row)), yv) {
                        (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                            self.push_point(s_at(row), x, y);
                        }
                        _ => self.skipped += 1,
                    }
                }
            }
            XRead::Time { index, bucket, .. } => {
                let bucket = *bucket;
                let col = batch.column(*index);
                let (days, micros) = match col.data_type() {
                    DataType::Date32 | DataType::Date64 => (Some(self.cast(col, &DataType::Date32)?), None),
                    DataType::Timestamp(_, tz) => {
                        (None, Some(self.cast(col, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?))
                    }
                    _ => unreachable!("checked when built"),
                };
                // Keys first, in a tight loop over the typed array; then the cells.
                let mut keys: Vec<Option<i64>> = Vec::with_capacity(n);
                let XRead::Time { memo, .. } = &mut self.x else { unreachable!() };
                if let Some(d) = &days {
                    let d = d.as_primitive::<Date32Type>();
                    keys.extend((0..n).map(|r| d.is_valid(r).then(|| time_key(bucket, d.value(r) as i64, None, memo))));
                } else if let Some(t) = &micros {
                    let t = t.as_primitive::<TimestampMicrosecondType>();
                    keys.extend((0..n).map(|r| {
                        t.is_valid(r).then(|| {
                            let us = t.value(r);
                            time_key(bucket, us.div_euclid(US_PER_DAY), Some(us), memo)
                        })
                    }));
                }
                for (row, key) in keys.into_iter().enumerate() {
                    match key {
                        Some(k) => self.add(k, s_at(row), y_at(row))?,
                        None => self.skipped += 1,
                    }
                }
            }
            XRead::Exact { index, kind } => {
                let kind = *kind;
                let col = batch.column(*index);
                // Floats key by their ordered bits; everything else is an i64 already.
                if kind == RawKind::Float {
                    let xs = self.cast(col, &DataType::Float64)?;
                    let xs = xs.as_primitive::<Float64Type>();
                    for row in 0..n {
                        match xs.is_valid(row).then(|| xs.value(row)).filter(|f| !f.is_nan()) {
                            Some(f) => self.add(float_key(f), s_at(row), y_at(row))?,
                            None => self.skipped += 1,
                        }
                    }
                    return Ok(());
                }
                let keys: ArrayRef = match kind {
                    RawKind::Date => self.cast(&self.cast(col, &DataType::Date32)?, &DataType::Int32)?,
                    RawKind::Timestamp => {
                        let DataType::Timestamp(_, tz) = col.data_type() else { unreachable!() };
                        self.cast(col, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?
                    }
                    _ => col.clone(),
                };
                let keys = self.cast(&keys, &DataType::Int64)?;
                let keys = keys.as_primitive::<Int64Type>();
                for row in 0..n {
                    if keys.is_valid(row) {
                        self.add(keys.value(row), s_at(row), y_at(row))?;
                    } else {
                        self.skipped += 1;
                    }
                }
            }
            XRead::Bins { index, .. } => {
                let xs = self.x_as_f64(batch.column(*index))?;
                let xs = xs.as_primitive::<Float64Type>();
                for row in 0..n {
                    match xs.is_valid(row).then(|| xs.value(row)).filter(|x| x.is_finite()) {
                        Some(x) => self.add_binned(x, s_at(row), y_at(row))?,
                        None => self.skipped += 1,
                    }
                }
            }
            XRead::Categories { index, .. } => {
                let col = batch.column(*index);
                let text = self.cast(col, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                for row in 0..n {
                    let XRead::Categories { names, .. } = &mut self.x else { unreachable!() };
                    let id = names.id(text.is_valid(row).then(|| text.value(row)));
                    self.add(id as i64, s_at(row), y_at(row))?;
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn add(&mut self, key: i64, s: u32, y: YItem) -> Result<(), StageError> {
        if self.cells.add(&(key, s), y) {
            return Ok(());
        }
        self.add_cell(key, s, y)
    }

    // Once per cell, not per row: kept out of the row loop.
    #[cold]
    #[inline(never)]
    fn add_cell(&mut self, key: i64, s: u32, y: YItem) -> Result<(), StageError> {
        if self.cells.len() >= self.max_buckets {
            return Err(self.too_many());
        }
        let mut c = Cell::default();
        c.add(y);
        self.cells.insert((key, s), c);
        Ok(())
    }

    fn too_many(&self) -> StageError {
        let what = match &self.x {
            XRead::Time { bucket, .. } => format!("{} buckets of `{}`", bucket.name(), self.cfg.x.field),
            XRead::Categories { .. } => format!("categories of `{}`", self.cfg.x.field),
            XRead::Bins { .. } => format!("bins of `{}`", self.cfg.x.field),
            _ => format!("distinct values of `{}`", self.cfg.x.field),
        };
        self.compute_err(format!(
            "more than {} cells ({what}{}): choose a coarser bucket, bins or top, or raise max_buckets",
            self.max_buckets,
            if self.series.is_some() { " × series" } else { "" }
        ))
    }

    fn add_binned(&mut self, x: f64, s: u32, y: YItem) -> Result<(), StageError> {
        let XRead::Bins { target, width, pending, .. } = &mut self.x else { unreachable!() };
        let w = match width {
            Some(w) => *w,
            None => {
                pending.push((x, s, y));
                if pending.len() >= BIN_SAMPLE {
                    self.start_bins()?;
                }
                return Ok(());
            }
        };
        let target = *target;
        let w = self.fit_outlier(w, x)?;
        let k = w.bin(x);
        self.add(k, s, y)?;
        let (lo, hi) = self.bin_span.map_or((k, k), |(lo, hi)| (lo.min(k), hi.max(k)));
        self.bin_span = Some((lo, hi));
        if w.nice.is_some() && (hi - lo + 1) as usize > target {
            self.widen_bins(target);
        }
        Ok(())
    }

    /// Pick the first width from the sampled rows, then bin them.
    fn start_bins(&mut self) -> Result<(), StageError> {
        let XRead::Bins { target, width, pending, .. } = &mut self.x else { return Ok(()) };
        if width.is_some() {
            return Ok(());
        }
        let lo = pending.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = pending.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        *width = Some(if lo.is_finite() { Width::fitting(lo, hi, *target) } else { Width::nice(1, 0) });
        for (x, s, y) in std::mem::take(pending) {
            self.add_binned(x, s, y)?;
        }
        Ok(())
    }

    fn widen_bins(&mut self, target: usize) {
        while let Some((lo, hi)) = self.bin_span {
            if ((hi - lo + 1) as usize) <= target || !self.widen_once() {
                break;
            }
        }
    }

    /// The next round width, the cells and the span rekeyed to it; false for a fixed width.
    fn widen_once(&mut self) -> bool {
        let XRead::Bins { width: Some(w), .. } = &mut self.x else { return false };
        let (wider, factor) = w.wider();
        if factor == 1 {
            return false;
        }
        *w = wider;
        self.cells.rekey(|(k, s)| (k.div_euclid(factor), s));
        self.bin_span = self.bin_span.map(|(lo, hi)| (lo.div_euclid(factor), hi.div_euclid(factor)));
        true
    }

    /// A width at which `x` has a bin key well inside i64 (an outlier such as 1e300 in
    /// unit bins would saturate it, and the spans of keys would overflow): round widths
    /// widen until it fits; a fixed `bin_width` that cannot is an error naming the chart.
    fn fit_outlier(&mut self, mut w: Width, x: f64) -> Result<Width, StageError> {
        while (x * w.mul / w.div).abs() >= MAX_BIN_KEY {
            if !self.widen_once() {
                return Err(self.compute_err(format!(
                    "x = {x} is more than 2^52 bins of width {} from 0: give a wider bin_width, or bins",
                    w.value()
                )));
            }
            let XRead::Bins { width: Some(wider), .. } = &self.x else { break };
            w = *wider;
        }
        Ok(w)
    }

    fn push_point(&mut self, s: u32, x: f64, y: f64) {
        let s = s as usize;
        if s < self.max_series {
            while self.m4.len() <= s {
                self.m4.push(M4::new(self.max_points));
            }
            self.m4[s].push(x, y);
        } else {
            self.m4_other.get_or_insert_with(|| M4::new(self.max_points)).push(x, y);
        }
    }

    fn series_name(&self, s: u32) -> Option<String> {
        if s == OTHER_ID {
            return Some(OTHER.to_string());
        }
        let (_, names) = self.series.as_ref()?;
        Some(names.name(s).unwrap_or_else(|| "(null)".into()))
    }

    /// Merge the fine bins into the round width that fits the bins asked for: widths of
    /// 1, 2 and 5 × 10^k (those that are multiples of the current width).
    fn final_bins(&mut self) {
        let XRead::Bins { target, width: Some(w), .. } = &mut self.x else { return };
        let Some((mant, _)) = w.nice else { return };
        let Some((lo, hi)) = self.bin_span else { return };
        let asked = (*target / BIN_RESOLUTION).max(1) as i64;
        let steps: &[i64] = if mant == 1 { &[1, 2, 5] } else { &[1, 5] };
        let mut scale = 1i64;
        let factor = 'found: loop {
            for f in steps.iter().map(|f| f * scale) {
                if hi.div_euclid(f) - lo.div_euclid(f) < asked {
                    break 'found f;
                }
            }
            scale *= 10;
        };
        if factor == 1 {
            return;
        }
        *w = w.times(factor);
        self.cells.rekey(|(k, s)| (k.div_euclid(factor), s));
        self.bin_span = Some((lo.div_euclid(factor), hi.div_euclid(factor)));
    }

    fn finish(&mut self) -> Result<ChartData, StageError> {
        self.start_bins()?;
        self.final_bins();
        let counts_rows = self.y_index.is_none();
        let (agg, num) = (self.agg, self.num);
        let mut downsampled = None;
        let (scale, series) = match &self.x {
            XRead::Raw { kind, .. } => {
                let kind = *kind;
                let mut m4s: Vec<(u32, M4)> =
                    std::mem::take(&mut self.m4).into_iter().enumerate().map(|(i, m)| (i as u32, m)).collect();
                if let Some(m) = self.m4_other.take() {
                    m4s.push((OTHER_ID, m));
                }
                let (mut points_in, mut points_out, mut reduced) = (0, 0, false);
                let mut series = Vec::new();
                for (s, m) in m4s {
                    if m.seen() == 0 {
                        continue;
                    }
                    points_in += m.seen();
                    reduced |= m.reduced();
                    let pts = m.finish();
                    points_out += pts.len() as u64;
                    let points =
                        pts.into_iter().map(|p| Point { x: raw_value(kind, p.x), y: y_value(num, p.y) }).collect();
                    series.push((self.series_name(s), points));
                }
                if reduced {
                    downsampled = Some(Downsampled { method: "m4", points_in, points_out });
                }
                (XScale::Raw, series)
            }
            _ => self.finish_cells(agg, num, counts_rows, &mut downsampled),
        };
        let mut series: Vec<Series> = series.into_iter().map(|(name, points)| Series { name, points }).collect();
        // Series by name, `other` last; an unsplit chart has its one series.
        series.sort_by(|a, b| {
            let key = |s: &Series| (s.name.as_deref() == Some(OTHER) && self.series.is_some(), s.name.clone());
            key(a).cmp(&key(b))
        });
        Ok(ChartData {
            id: self.cfg.id.clone(),
            title: self.cfg.title.clone().unwrap_or_else(|| self.cfg.id.clone()),
            kind: self.cfg.kind,
            stacked: self.cfg.stacked,
            x_field: self.cfg.x.field.clone(),
            x_title: self.cfg.x.title.clone(),
            y_title: self.cfg.y.title.clone(),
            x: scale,
            y_aggregate: agg,
            y_field: self.y_index.map(|_| self.cfg.y.aggregate().1.to_string()),
            series_field: self.cfg.series.clone(),
            series,
            rows: self.rows,
            skipped: self.skipped,
            downsampled,
        })
    }

    /// Rank, fold the tails into `other`, order, and turn cells into points.
    #[allow(clippy::type_complexity)]
    fn finish_cells(
        &mut self,
        agg: ChartAggregate,
        num: Num,
        counts_rows: bool,
        downsampled: &mut Option<Downsampled>,
    ) -> (XScale, Vec<(Option<String>, Vec<Point>)>) {
        let exact = matches!(self.num, Num::Exact(_));
        let mut cells: Vec<((i64, u32), Cell)> = std::mem::replace(&mut self.cells, CellMap::new(exact)).into_vec();
        let rank_value = |c: &Cell| c.value(agg, num, counts_rows).as_f64().unwrap_or(f64::NEG_INFINITY);

        // Series beyond max_series become `other`.
        if let Some((_, names)) = &self.series {
            let mut totals: FxHashMap<u32, Cell> = FxHashMap::default();
            for ((_, s), c) in &cells {
                totals.entry(*s).or_default().merge(c);
            }
            if totals.len() > self.max_series {
                let keep = top_ids(&totals, self.max_series, rank_value, |s| names.name(*s));
                cells = merge_keys(cells, |(k, s)| (k, if keep.contains(&s) { s } else { OTHER_ID }));
            }
        }
        let scale = match &self.x {
            XRead::Time { bucket, .. } => XScale::Time(*bucket),
            XRead::Bins { width, .. } => XScale::Bins { width: width.map_or(1.0, Width::value) },
            XRead::Categories { top, .. } => XScale::Categories { top: *top, other: false },
            _ => XScale::Raw,
        };
        // Categories: the top N (ranked over all series), then `other`.
        let mut order: Vec<i64> = Vec::new();
        let scale = match (&self.x, scale) {
            (XRead::Categories { names, top, .. }, XScale::Categories { .. }) => {
                let mut totals: FxHashMap<i64, Cell> = FxHashMap::default();
                for ((k, _), c) in &cells {
                    totals.entry(*k).or_default().merge(c);
                }
                let ranked = rank(&totals, rank_value, |k| names.name(*k as u32));
                let past_top = ranked.len() > *top;
                let other = past_top && self.cfg.x.other;
                let keep: Vec<i64> = ranked.into_iter().take(*top).collect();
                if other {
                    cells = merge_keys(cells, |(k, s)| (if keep.contains(&k) { k } else { OTHER_KEY }, s));
                } else if past_top {
                    // `other: false`: the tail is left out.
                    let kept: rustc_hash::FxHashSet<i64> = keep.iter().copied().collect();
                    cells.retain(|((k, _), _)| kept.contains(k));
                }
                order = keep;
                if other {
                    order.push(OTHER_KEY);
                }
                XScale::Categories { top: *top, other }
            }
            (_, scale) => scale,
        };
        if order.is_empty() {
            let mut keys: Vec<i64> = cells.iter().map(|((k, _), _)| *k).collect();
            keys.sort_unstable();
            keys.dedup();
            order = keys;
        }
        let position: FxHashMap<i64, usize> = order.iter().enumerate().map(|(i, k)| (*k, i)).collect();

        let mut by_series: std::collections::BTreeMap<u32, Vec<(usize, Point)>> = Default::default();
        for ((k, s), c) in &cells {
            let x = self.key_value(*k);
            by_series.entry(*s).or_default().push((position[k], Point { x, y: c.value(agg, num, counts_rows) }));
        }
        let reduce = matches!(self.cfg.kind, ChartKind::Line | ChartKind::Area) && scale.continuous();
        let (mut points_in, mut points_out) = (0u64, 0u64);
        let mut series = Vec::new();
        for (s, mut pts) in by_series {
            pts.sort_by_key(|(i, _)| *i);
            let mut points: Vec<Point> = pts.into_iter().map(|(_, p)| p).collect();
            if reduce && points.len() > self.max_points {
                points_in += points.len() as u64;
                let mut m4 = M4::new(self.max_points);
                let mut kept = Vec::new();
                for p in &points {
                    if let (Some(x), Some(y)) = (position_of(&p.x), p.y.as_f64()) {
                        m4.push(x, y);
                        kept.push(p.clone());
                    }
                }
                points = m4.finish().into_iter().map(|p| kept[p.seq as usize].clone()).collect();
                points_out += points.len() as u64;
            }
            series.push((if self.series.is_some() { self.series_name(s) } else { None }, points));
        }
        if points_in > 0 {
            *downsampled = Some(Downsampled { method: "m4", points_in, points_out });
        }
        (scale, series)
    }

    /// A cell key back to the x value it stands for.
    fn key_value(&self, k: i64) -> Value {
        match &self.x {
            XRead::Time { bucket, .. } => match bucket {
                TimeBucket::Minute => Value::Timestamp(k * US_PER_MINUTE),
                TimeBucket::Hour => Value::Timestamp(k * US_PER_HOUR),
                TimeBucket::Day | TimeBucket::Week => Value::Date(k as i32),
                TimeBucket::Month | TimeBucket::Quarter | TimeBucket::Year => {
                    let (y, m0) = match bucket {
                        TimeBucket::Month => (k.div_euclid(12), k.rem_euclid(12)),
                        TimeBucket::Quarter => (k.div_euclid(4), k.rem_euclid(4) * 3),
                        _ => (k, 0),
                    };
                    chrono::NaiveDate::from_ymd_opt(y as i32, m0 as u32 + 1, 1)
                        .map(|d| Value::Date(ream_core::value::days_from_date(d)))
                        .unwrap_or(Value::Null)
                }
            },
            XRead::Exact { kind, .. } => match kind {
                RawKind::Int => Value::Int(k),
                RawKind::Float => Value::Float(float_from_key(k)),
                RawKind::Date => Value::Date(k as i32),
                RawKind::Timestamp => Value::Timestamp(k),
            },
            XRead::Bins { width, .. } => Value::Float(width.map_or(k as f64, |w| w.edge(k))),
            XRead::Categories { .. } if k == OTHER_KEY => Value::Str(OTHER.into()),
            XRead::Categories { names, .. } => {
                names.name(k as u32).map(|n| Value::Str(n.into())).unwrap_or(Value::Null)
            }
            XRead::Raw { .. } => Value::Float(k as f64),
        }
    }
}

/// The bucket key of a day (and, for timestamps, the exact microsecond). `memo` holds
/// the last day's key: rows often share their day, and the calendar math is the cost.
#[inline]
fn time_key(bucket: TimeBucket, day: i64, us: Option<i64>, memo: &mut (i64, i64)) -> i64 {
    match bucket {
        TimeBucket::Minute => return us.unwrap_or(day * US_PER_DAY).div_euclid(US_PER_MINUTE),
        TimeBucket::Hour => return us.unwrap_or(day * US_PER_DAY).div_euclid(US_PER_HOUR),
        TimeBucket::Day => return day,
        // 1970-01-01 was a Thursday: Monday-based weeks start 3 days before it.
        TimeBucket::Week => return day - (day + 3).rem_euclid(7),
        _ => {}
    }
    if memo.0 == day {
        return memo.1;
    }
    use chrono::Datelike;
    let d = date_from_days(day as i32).unwrap_or_default();
    let (y, m) = (d.year() as i64, d.month0() as i64);
    let key = match bucket {
        TimeBucket::Month => y * 12 + m,
        TimeBucket::Quarter => y * 4 + m / 3,
        _ => y,
    };
    *memo = (day, key);
    key
}

const OTHER_ID: u32 = u32::MAX;
const OTHER_KEY: i64 = i64::MAX;

/// Ids ordered by their cell's value, largest first; ties by name, then id.
fn rank<K: Copy + Ord + std::hash::Hash>(
    totals: &FxHashMap<K, Cell>,
    value: impl Fn(&Cell) -> f64,
    name: impl Fn(&K) -> Option<String>,
) -> Vec<K> {
    let mut v: Vec<(K, f64, Option<String>)> = totals.iter().map(|(k, c)| (*k, value(c), name(k))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.2.cmp(&b.2)).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, _, _)| k).collect()
}

fn top_ids<K: Copy + Ord + std::hash::Hash>(
    totals: &FxHashMap<K, Cell>,
    n: usize,
    value: impl Fn(&Cell) -> f64,
    name: impl Fn(&K) -> Option<String>,
) -> Vec<K> {
    rank(totals, value, name).into_iter().take(n).collect()
}

/// Re-key cells, merging those that land on the same key.
fn merge_keys(cells: Vec<((i64, u32), Cell)>, f: impl Fn((i64, u32)) -> (i64, u32)) -> Vec<((i64, u32), Cell)> {
    let mut m: FxHashMap<(i64, u32), Cell> = FxHashMap::default();
    for (k, c) in cells {
        m.entry(f(k)).or_default().merge(&c);
    }
    m.into_iter().collect()
}

/// Floats as i64 keys in the same order (and back).
fn float_key(f: f64) -> i64 {
    let f = if f == 0.0 { 0.0 } else { f };
    let b = f.to_bits() as i64;
    b ^ (((b >> 63) as u64) >> 1) as i64
}

fn float_from_key(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

fn raw_value(kind: RawKind, x: f64) -> Value {
    match kind {
        RawKind::Int => Value::Int(x as i64),
        RawKind::Float => Value::Float(x),
        RawKind::Date => Value::Date(x as i32),
        RawKind::Timestamp => Value::Timestamp(x as i64),
    }
}

fn y_value(num: Num, y: f64) -> Value {
    match num {
        Num::Exact(0) if y.fract() == 0.0 && y.abs() < 9.0e15 => Value::Int(y as i64),
        _ => Value::Float(y),
    }
}

/// Where a value sits on a continuous axis: numbers as they are, dates in days,
/// timestamps in microseconds.
pub fn position_of(v: &Value) -> Option<f64> {
    match v {
        Value::Date(d) => Some(*d as f64),
        Value::Timestamp(t) => Some(*t as f64),
        v => v.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keys_keep_order_and_round_trip() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-300, 3.25, 1e300];
        let keys: Vec<i64> = xs.iter().map(|x| float_key(*x)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        for x in xs {
            assert_eq!(float_from_key(float_key(x)), if x == 0.0 { 0.0 } else { x });
        }
    }

    #[test]
    fn round_widths_bin_decimals_on_their_edges() {
        let w = Width::nice(2, -1);
        assert_eq!(w.bin(0.6), 3);
        assert_eq!(w.edge(3), 0.6);
        assert_eq!(Width::fitting(0.0, 99.0, 20).value(), 10.0);
        assert_eq!(Width::fitting(3.0, 7.0, 20).value(), 1.0);
        let (w2, f) = Width::nice(2, 0).wider();
        assert_eq!((w2.value(), f), (10.0, 5));
        assert_eq!(Width::nice(1, 3).times(5).value(), 5000.0);
        assert_eq!(Width::nice(2, -1).times(5).value(), 1.0);
    }
}
