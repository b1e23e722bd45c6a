//! Where values go on a chart: the plot's frame, the x axis (one band per distinct x, or
//! a continuous line of numbers or time), the y range with its round ticks, and the
//! mapping of a value to its place. The painters (`paint.rs`) only ask a [`Plot`].

use chrono::{DateTime, Datelike, NaiveDate};
use ream_core::chart::{ChartData, XScale};
use ream_core::spec::{ChartAggregate, ChartKind, TimeBucket};
use ream_core::template::Locale;
use ream_core::value::{date_from_days, days_from_date};
use ream_core::Value;

use super::{x_label, y_of, BOTTOM, H, LEFT, RIGHT, W};

pub(super) const US_PER_DAY: f64 = 86_400_000_000.0;

/// A cartesian chart's scales.
pub(super) struct Plot<'a> {
    pub chart: &'a ChartData,
    pub x0: f64,
    pub x1: f64,
    pub y_top: f64,
    pub y_bottom: f64,
    pub axis: XAxis,
    pub histogram: bool,
    /// Stacked bars or areas: the y range covers the stacks.
    pub stacked: bool,
    /// Bars that span an interval on a continuous axis: a bin, or a time bucket (so gaps
    /// in time show, and the axis has calendar ticks however many buckets there are).
    pub interval_bars: bool,
    bin_width: Option<f64>,
    time_bucket: Option<TimeBucket>,
    pub ylo: f64,
    pub yhi: f64,
    pub yticks: Vec<f64>,
}

impl<'a> Plot<'a> {
    /// The scales of `chart`, whose plot starts at `top` (below its legend).
    pub fn new(chart: &'a ChartData, top: f64, locale: &Locale) -> Plot<'a> {
        let bars = matches!(chart.kind, ChartKind::Bar);
        let histogram = chart.kind == ChartKind::Histogram;
        let bin_width = match chart.x {
            XScale::Bins { width } => Some(width),
            _ => None,
        };
        let time_bucket = match chart.x {
            XScale::Time(b) => Some(b),
            _ => None,
        };
        let interval_bars = (bars || histogram) && (bin_width.is_some() || time_bucket.is_some());
        let stacked = chart.stacked && matches!(chart.kind, ChartKind::Bar | ChartKind::Area);
        let (ylo, yhi, yticks) = y_range(chart, stacked);
        let mut plot = Plot {
            chart,
            x0: LEFT,
            x1: W - RIGHT,
            y_top: top,
            y_bottom: H - BOTTOM,
            axis: XAxis::Linear { lo: 0.0, hi: 0.0, time: false },
            histogram,
            stacked,
            interval_bars,
            bin_width,
            time_bucket,
            ylo,
            yhi,
            yticks,
        };
        plot.axis = plot.x_axis(bars, locale);
        plot
    }

    /// Bands for bar charts and categories; a line otherwise.
    fn x_axis(&self, bars: bool, locale: &Locale) -> XAxis {
        let chart = self.chart;
        let points = || chart.series.iter().flat_map(|s| &s.points);
        let first_x = points().map(|p| &p.x).next().cloned().unwrap_or(Value::Null);
        if (bars && !self.interval_bars) || !chart.x.continuous() || pos(&first_x).is_none() {
            let mut keys: Vec<(Option<f64>, String, String)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for p in points() {
                let key = p.x.to_string();
                if seen.insert(key.clone()) {
                    keys.push((pos(&p.x), key, x_label(&p.x, &chart.x, locale)));
                }
            }
            if chart.x.continuous() {
                keys.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            }
            return XAxis::Bands {
                index: keys.iter().enumerate().map(|(i, k)| (k.1.clone(), i)).collect(),
                labels: keys.into_iter().map(|k| k.2).collect(),
            };
        }
        let xs = points().filter_map(|p| match self.interval_bars {
            true => self.span(&p.x),
            false => pos(&p.x).map(|x| (x, x)),
        });
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, e)| (a.min(x), b.max(e)));
        XAxis::Linear { lo, hi, time: is_time(&first_x) }
    }

    /// The interval a bar at `v` spans on a continuous axis.
    pub fn span(&self, v: &Value) -> Option<(f64, f64)> {
        let x = pos(v)?;
        match (self.bin_width, self.time_bucket) {
            (Some(w), _) => Some((x, x + w)),
            (_, Some(b)) => bucket_end(v, b).map(|end| (x, end)),
            _ => None,
        }
    }

    /// The only x value, when the axis holds one (a bucket, a bin or a point).
    pub fn single_bucket(&self) -> Option<&'a Value> {
        let mut xs = self.chart.series.iter().flat_map(|s| &s.points).map(|p| &p.x);
        let first = xs.next()?;
        xs.all(|x| x == first).then_some(first)
    }

    /// The middle of `v`'s interval (or `v` itself), in axis units.
    pub fn center_pos(&self, v: &Value) -> f64 {
        match self.span(v) {
            Some((a, b)) => (a + b) / 2.0,
            None => pos(v).unwrap_or(0.0),
        }
    }

    /// The chart's time bucket, if it has one.
    pub fn time_bucket(&self) -> Option<TimeBucket> {
        self.time_bucket
    }

    pub fn sy(&self, y: f64) -> f64 {
        self.y_bottom - (y - self.ylo) / (self.yhi - self.ylo) * (self.y_bottom - self.y_top)
    }

    /// Where `x` goes on a line from `lo` to `hi`.
    pub fn sx_lin(&self, x: f64, lo: f64, hi: f64) -> f64 {
        if hi > lo {
            self.x0 + (x - lo) / (hi - lo) * (self.x1 - self.x0)
        } else {
            (self.x0 + self.x1) / 2.0
        }
    }

    /// The start and width of `v`'s band (none on a line).
    pub fn band_of(&self, v: &Value) -> Option<(f64, f64)> {
        match &self.axis {
            XAxis::Bands { index, .. } => {
                let i = *index.get(&v.to_string())?;
                let band = (self.x1 - self.x0) / index.len() as f64;
                Some((self.x0 + band * i as f64, band))
            }
            XAxis::Linear { .. } => None,
        }
    }

    /// Where an x value goes: its band's centre, or its place on the line.
    pub fn sx(&self, v: &Value) -> Option<f64> {
        match &self.axis {
            XAxis::Linear { lo, hi, .. } => pos(v).map(|x| self.sx_lin(x, *lo, *hi)),
            XAxis::Bands { .. } => self.band_of(v).map(|(start, band)| start + band / 2.0),
        }
    }
}

/// The y range and its ticks: stacks add up; bars and areas start at zero, and so do sums
/// and counts (a line of money or of rows that starts at 500k exaggerates its swings).
fn y_range(chart: &ChartData, stacked: bool) -> (f64, f64, Vec<f64>) {
    let mut ylo = f64::INFINITY;
    let mut yhi = f64::NEG_INFINITY;
    if stacked {
        let mut pos_sum: std::collections::HashMap<String, (f64, f64)> = Default::default();
        for p in chart.series.iter().flat_map(|s| &s.points) {
            if let Some(y) = y_of(&p.y) {
                let e = pos_sum.entry(p.x.to_string()).or_default();
                if y >= 0.0 {
                    e.0 += y
                } else {
                    e.1 += y
                }
            }
        }
        for (p, m) in pos_sum.values() {
            yhi = yhi.max(*p);
            ylo = ylo.min(*m);
        }
    } else {
        for y in chart.series.iter().flat_map(|s| &s.points).filter_map(|p| y_of(&p.y)) {
            ylo = ylo.min(y);
            yhi = yhi.max(y);
        }
    }
    if !ylo.is_finite() {
        (ylo, yhi) = (0.0, 1.0);
    }
    let from_zero = matches!(chart.y_aggregate, ChartAggregate::Sum | ChartAggregate::Count);
    if from_zero || matches!(chart.kind, ChartKind::Bar | ChartKind::Area | ChartKind::Histogram) {
        ylo = ylo.min(0.0);
        yhi = yhi.max(0.0);
    }
    nice_ticks(ylo, yhi, 5)
}

/// About `count` round ticks covering `lo..hi` (steps of 1, 2 or 5 × 10^k).
pub(super) fn nice_ticks(lo: f64, hi: f64, count: usize) -> (f64, f64, Vec<f64>) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0, vec![0.0, 1.0]);
    }
    if hi <= lo {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return nice_ticks(lo - pad, hi + pad, count);
    }
    let raw = (hi - lo) / count as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    // Ticks by index, not by adding up steps: near 1e18 a step can be below the floats'
    // resolution, and `t += step` would never reach the end.
    let n = ((end - start) / step).round().clamp(1.0, 50.0) as usize;
    let ticks = (0..=n)
        .map(|i| {
            let t = start + i as f64 * step;
            if t.abs() < step * 1e-9 {
                0.0
            } else {
                t
            }
        })
        .collect();
    (start, end, ticks)
}

/// Where x values sit: a continuous axis, or one band per distinct x.
pub(super) enum XAxis {
    Linear {
        lo: f64,
        hi: f64,
        time: bool,
    },
    /// Each x key's band, by the key's text (a bar chart may have 100k bars: a linear
    /// search per point, with a `to_string` per comparison, took minutes).
    Bands {
        labels: Vec<String>,
        index: std::collections::HashMap<String, usize>,
    },
}

/// A value's position on a continuous x axis: numbers as they are; dates and timestamps
/// in microseconds, so both share one time axis.
pub(super) fn pos(v: &Value) -> Option<f64> {
    match v {
        Value::Date(d) => Some(*d as f64 * US_PER_DAY),
        Value::Timestamp(t) => Some(*t as f64),
        v => v.as_f64().filter(|f| f.is_finite()),
    }
}

pub(super) fn is_time(v: &Value) -> bool {
    matches!(v, Value::Date(_) | Value::Timestamp(_))
}

/// Ticks for a time axis given in microseconds: round steps (minutes to centuries), no
/// finer than the chart's `bucket` (month buckets get no day ticks), aligned on the
/// calendar, labelled as people read dates.
pub(super) fn time_ticks(lo: f64, hi: f64, bucket: Option<TimeBucket>, locale: &Locale) -> Vec<(f64, String)> {
    const MIN: i64 = 60_000_000;
    let range = hi - lo;
    // (step in microseconds or months, is months, label)
    let steps: [(i64, bool, &str); 22] = [
        (MIN, false, "%H:%M"),
        (5 * MIN, false, "%H:%M"),
        (15 * MIN, false, "%H:%M"),
        (30 * MIN, false, "%H:%M"),
        (60 * MIN, false, "%H:%M"),
        (3 * 60 * MIN, false, "%b %-d %H:%M"),
        (6 * 60 * MIN, false, "%b %-d %H:%M"),
        (12 * 60 * MIN, false, "%b %-d %H:%M"),
        (1440 * MIN, false, "%b %-d"),
        (2 * 1440 * MIN, false, "%b %-d"),
        (7 * 1440 * MIN, false, "%b %-d"),
        (14 * 1440 * MIN, false, "%b %-d"),
        (1, true, "%b %Y"),
        (2, true, "%b %Y"),
        (3, true, "%b %Y"),
        (6, true, "%b %Y"),
        (12, true, "%Y"),
        (24, true, "%Y"),
        (60, true, "%Y"),
        (120, true, "%Y"),
        (600, true, "%Y"),
        (1200, true, "%Y"),
    ];
    let approx = |step: i64, months: bool| if months { step as f64 * 30.44 * US_PER_DAY } else { step as f64 };
    let finest = match bucket {
        None | Some(TimeBucket::Minute) => 0.0,
        Some(TimeBucket::Hour) => approx(60 * MIN, false),
        Some(TimeBucket::Day) => approx(1440 * MIN, false),
        Some(TimeBucket::Week) => approx(7 * 1440 * MIN, false),
        Some(TimeBucket::Month) => approx(1, true),
        Some(TimeBucket::Quarter) => approx(3, true),
        Some(TimeBucket::Year) => approx(12, true),
    };
    let fits = |(step, months, _): &(i64, bool, &str)| {
        let size = approx(*step, *months);
        size >= finest && range / size <= 8.0
    };
    let (step, months, fmt) = steps.iter().copied().find(|s| fits(s)).unwrap_or(steps[steps.len() - 1]);
    let label = |us: i64| DateTime::from_timestamp_micros(us).and_then(|t| locale.strftime(&t.naive_utc(), false, fmt));
    let mut out = Vec::new();
    if months {
        let Some(start) = DateTime::from_timestamp_micros(lo as i64) else { return out };
        let d = start.date_naive();
        let mut m = (d.year() as i64 * 12 + d.month0() as i64).div_euclid(step) * step;
        while let Some(date) = NaiveDate::from_ymd_opt(m.div_euclid(12) as i32, m.rem_euclid(12) as u32 + 1, 1) {
            let us = days_from_date(date) as f64 * US_PER_DAY;
            if us > hi {
                break;
            }
            if us >= lo {
                out.push((us, label(us as i64).unwrap_or_default()));
            }
            m += step;
        }
    } else {
        // Weeks start on Monday (1970-01-05 was one).
        let origin = if step >= 7 * 1440 * MIN { 4 * 1440 * MIN } else { 0 };
        let mut t = ((lo as i64 - origin).div_euclid(step)) * step + origin;
        while (t as f64) <= hi {
            if t as f64 >= lo {
                out.push((t as f64, label(t).unwrap_or_default()));
            }
            t += step;
        }
    }
    out
}

/// Where a time bucket that starts at `v` ends, on the axis (microseconds).
fn bucket_end(v: &Value, bucket: TimeBucket) -> Option<f64> {
    let months = |n: u32| -> Option<f64> {
        let Value::Date(d) = v else { return None };
        let next = date_from_days(*d)?.checked_add_months(chrono::Months::new(n))?;
        Some(days_from_date(next) as f64 * US_PER_DAY)
    };
    let start = pos(v)?;
    match bucket {
        TimeBucket::Minute => Some(start + 60_000_000.0),
        TimeBucket::Hour => Some(start + 3_600_000_000.0),
        TimeBucket::Day => Some(start + US_PER_DAY),
        TimeBucket::Week => Some(start + 7.0 * US_PER_DAY),
        TimeBucket::Month => months(1),
        TimeBucket::Quarter => months(3),
        TimeBucket::Year => months(12),
    }
}
