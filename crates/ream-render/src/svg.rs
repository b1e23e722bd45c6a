//! Charts as SVG, written directly: axes, round ticks, readable dates, a legend, and a
//! `<title>` on every bar and slice for a hover tooltip. No font is needed to lay it out
//! (the browser sets the text; labels are anchored, never measured), and the output is
//! small enough to inline in an HTML report.

use chrono::{DateTime, Datelike, NaiveDate};
use ream_core::chart::{ChartData, XScale};
use ream_core::spec::{ChartAggregate, ChartKind, TimeBucket};
use ream_core::template::{Format, Locale};
use ream_core::value::{date_from_days, days_from_date};
use ream_core::Value;

use crate::markup::esc;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const BOTTOM: f64 = 48.0;
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8c8c8c"];
const US_PER_DAY: f64 = 86_400_000_000.0;

fn color(i: usize, name: Option<&str>) -> &'static str {
    if name == Some(ream_core::chart::OTHER) {
        return "#bab0ac";
    }
    PALETTE[i % PALETTE.len()]
}

/// Round numbers for a coordinate (two decimals are finer than a pixel).
fn n(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// `1.2M`, `250k`, `0.35`: tick labels, with the locale's decimal mark.
pub fn compact(v: f64, locale: &Locale) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let decimals = if scaled == scaled.trunc() {
        0
    } else if (scaled * 10.0 - (scaled * 10.0).round()).abs() < 1e-9 {
        1
    } else {
        2
    };
    let text = Format::Number(decimals).apply_in(&Value::Float(scaled), locale);
    format!("{text}{suffix}")
}

/// About `count` round ticks covering `lo..hi` (steps of 1, 2 or 5 × 10^k).
fn nice_ticks(lo: f64, hi: f64, count: usize) -> (f64, f64, Vec<f64>) {
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
enum XAxis {
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

/// A point's y, when it can be drawn (NULL, NaN and infinities cannot).
fn y_of(v: &Value) -> Option<f64> {
    v.as_f64().filter(|y| y.is_finite())
}

/// A value's position on a continuous x axis: numbers as they are; dates and timestamps
/// in microseconds, so both share one time axis.
fn pos(v: &Value) -> Option<f64> {
    match v {
        Value::Date(d) => Some(*d as f64 * US_PER_DAY),
        Value::Timestamp(t) => Some(*t as f64),
        v => v.as_f64().filter(|f| f.is_finite()),
    }
}

fn is_time(v: &Value) -> bool {
    matches!(v, Value::Date(_) | Value::Timestamp(_))
}

/// The label of an x value in a band axis or tooltip.
fn x_label(v: &Value, scale: &XScale, locale: &Locale) -> String {
    let stamp = |fmt: &str| match v {
        Value::Date(d) => date_from_days(*d).map(|d| d.format(fmt).to_string()),
        Value::Timestamp(t) => DateTime::from_timestamp_micros(*t).map(|t| t.naive_utc().format(fmt).to_string()),
        _ => None,
    };
    let text = match scale {
        XScale::Time(TimeBucket::Year) => stamp("%Y"),
        XScale::Time(TimeBucket::Quarter) => match v {
            Value::Date(d) => date_from_days(*d).map(|d| format!("{} Q{}", d.year(), d.month0() / 3 + 1)),
            _ => None,
        },
        XScale::Time(TimeBucket::Month) => stamp("%b %Y"),
        XScale::Time(TimeBucket::Week) => stamp("%Y-%m-%d"),
        XScale::Time(TimeBucket::Day) => stamp("%Y-%m-%d"),
        XScale::Time(_) => stamp("%Y-%m-%d %H:%M"),
        _ => match v {
            Value::Date(_) => stamp("%Y-%m-%d"),
            Value::Timestamp(_) => stamp("%Y-%m-%d %H:%M:%S"),
            Value::Null => Some("(null)".into()),
            Value::Str(s) => Some(s.to_string()),
            Value::Float(f) => Some(compact(*f, locale)),
            other => Some(other.to_string()),
        },
    };
    text.unwrap_or_else(|| v.to_string())
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Ticks for a time axis given in microseconds: round steps (minutes to centuries),
/// aligned on the calendar, labelled as people read dates.
fn time_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
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
    let fits = |(step, months, _): &(i64, bool, &str)| {
        let approx = if *months { *step as f64 * 30.44 * US_PER_DAY } else { *step as f64 };
        range / approx <= 8.0
    };
    let (step, months, fmt) = steps.iter().copied().find(|s| fits(s)).unwrap_or(steps[steps.len() - 1]);
    let label = |us: i64| DateTime::from_timestamp_micros(us).map(|t| t.naive_utc().format(fmt).to_string());
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

/// The chart as an `<svg>` element.
pub fn chart_svg(chart: &ChartData, locale: &Locale) -> String {
    let mut s = String::new();
    let title = format!("{}: {} by {}", chart.title, chart.y_label(), chart.x_field);
    s.push_str(&format!(
        "<svg class=\"chart-svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(&title)
    ));
    s.push_str("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>");
    let points = chart.series.iter().map(|s| s.points.len()).sum::<usize>();
    if points == 0 {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\" font-size=\"14\">No data</text></svg>",
            W / 2.0,
            H / 2.0
        ));
        return s;
    }
    if chart.kind == ChartKind::Pie {
        pie(chart, locale, &mut s);
    } else {
        cartesian(chart, locale, &mut s);
    }
    s.push_str("</svg>");
    s
}

fn legend(chart: &ChartData, s: &mut String) -> f64 {
    if chart.series_field.is_none() {
        return 20.0;
    }
    let mut x = LEFT;
    let mut y = 14.0;
    for (i, se) in chart.series.iter().enumerate() {
        let name = short(se.name.as_deref().unwrap_or("(null)"), 18);
        let width = 24.0 + name.chars().count() as f64 * 7.0;
        if x + width > W - RIGHT {
            x = LEFT;
            y += 16.0;
        }
        s.push_str(&format!(
            "<g class=\"legend\"><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#333\">{}</text></g>",
            n(x),
            n(y - 9.0),
            color(i, se.name.as_deref()),
            n(x + 14.0),
            n(y),
            esc(&name)
        ));
        x += width;
    }
    y + 14.0
}

fn cartesian(chart: &ChartData, locale: &Locale, s: &mut String) {
    let top = legend(chart, s);
    let (x0, x1, y_top, y_bottom) = (LEFT, W - RIGHT, top, H - BOTTOM);
    let bars = matches!(chart.kind, ChartKind::Bar);
    let histogram = chart.kind == ChartKind::Histogram;
    let bin_width = match chart.x {
        XScale::Bins { width } => Some(width),
        _ => None,
    };

    // The x axis: bands for bar charts and categories; linear otherwise.
    let first_x = chart.series.iter().flat_map(|s| &s.points).map(|p| &p.x).next().cloned().unwrap_or(Value::Null);
    let time_bucket = match chart.x {
        XScale::Time(b) => Some(b),
        _ => None,
    };
    // Bars span an interval on a continuous axis: a bin, or a time bucket (so gaps in time
    // show, and the axis has calendar ticks however many buckets there are).
    let span = |v: &Value| -> Option<(f64, f64)> {
        let x = pos(v)?;
        match (bin_width, time_bucket) {
            (Some(w), _) => Some((x, x + w)),
            (_, Some(b)) => bucket_end(v, b).map(|end| (x, end)),
            _ => None,
        }
    };
    let interval_bars = (bars || histogram) && (bin_width.is_some() || time_bucket.is_some());
    let axis = if (bars && !interval_bars) || !chart.x.continuous() || pos(&first_x).is_none() {
        let mut keys: Vec<(Option<f64>, String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in chart.series.iter().flat_map(|s| &s.points) {
            let key = p.x.to_string();
            if seen.insert(key.clone()) {
                keys.push((pos(&p.x), key, x_label(&p.x, &chart.x, locale)));
            }
        }
        if chart.x.continuous() {
            keys.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        }
        XAxis::Bands {
            index: keys.iter().enumerate().map(|(i, k)| (k.1.clone(), i)).collect(),
            labels: keys.into_iter().map(|k| k.2).collect(),
        }
    } else {
        let xs = chart.series.iter().flat_map(|s| &s.points).filter_map(|p| {
            if interval_bars {
                span(&p.x)
            } else {
                pos(&p.x).map(|x| (x, x))
            }
        });
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, e)| (a.min(x), b.max(e)));
        XAxis::Linear { lo, hi, time: is_time(&first_x) }
    };

    // y range: stacks add up; bars and areas start at zero.
    let stacked = chart.stacked && matches!(chart.kind, ChartKind::Bar | ChartKind::Area);
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
    // Bars and areas start at zero, and so do sums and counts (a line of money or of rows
    // that starts at 500k exaggerates its swings).
    let from_zero = matches!(chart.y_aggregate, ChartAggregate::Sum | ChartAggregate::Count);
    if from_zero || matches!(chart.kind, ChartKind::Bar | ChartKind::Area | ChartKind::Histogram) {
        ylo = ylo.min(0.0);
        yhi = yhi.max(0.0);
    }
    let (ylo, yhi, yticks) = nice_ticks(ylo, yhi, 5);
    let sy = |y: f64| y_bottom - (y - ylo) / (yhi - ylo) * (y_bottom - y_top);

    // Grid and y axis.
    s.push_str("<g class=\"y-axis\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">");
    for t in &yticks {
        let y = sy(*t);
        s.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#e5e5e5\"/><text x=\"{}\" y=\"{}\">{}</text>",
            n(x0),
            n(x1),
            n(y),
            n(y),
            n(x0 - 6.0),
            n(y + 4.0),
            esc(&compact(*t, locale))
        ));
    }
    s.push_str("</g>");
    s.push_str(&format!(
        "<text class=\"y-label\" x=\"14\" y=\"{}\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        n((y_top + y_bottom) / 2.0),
        n((y_top + y_bottom) / 2.0),
        esc(&chart.y_label())
    ));

    // x axis: ticks and labels.
    let sx_lin =
        |x: f64, lo: f64, hi: f64| if hi > lo { x0 + (x - lo) / (hi - lo) * (x1 - x0) } else { (x0 + x1) / 2.0 };
    s.push_str(&format!(
        "<g class=\"x-axis\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\"><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        n(x0),
        n(x1),
        n(y_bottom),
        n(y_bottom)
    ));
    match &axis {
        XAxis::Linear { lo, hi, time } => {
            let ticks: Vec<(f64, String)> = if *time {
                time_ticks(*lo, *hi)
            } else {
                let (_, _, t) = nice_ticks(*lo, *hi, 6);
                t.into_iter()
                    .filter(|t| *t >= *lo - 1e-9 && *t <= *hi + 1e-9)
                    .map(|t| (t, compact(t, locale)))
                    .collect()
            };
            for (t, label) in ticks {
                let x = sx_lin(t, *lo, *hi);
                // A label at the right edge ends there rather than running off the chart.
                let anchor = if x > x1 - 30.0 { " text-anchor=\"end\"" } else { "" };
                s.push_str(&format!(
                    "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\"{anchor}>{}</text>",
                    n(x),
                    n(x),
                    n(y_bottom),
                    n(y_bottom + 4.0),
                    n(x),
                    n(y_bottom + 17.0),
                    esc(&label)
                ));
            }
        }
        XAxis::Bands { labels, .. } => {
            let band = (x1 - x0) / labels.len() as f64;
            let every = (labels.len() as f64 / 10.0).ceil().max(1.0) as usize;
            let max_chars = ((band * every as f64) / 7.0).clamp(4.0, 16.0) as usize;
            for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
                let x = x0 + band * (i as f64 + 0.5);
                s.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\">{}</text>",
                    n(x),
                    n(y_bottom + 17.0),
                    esc(&short(label, max_chars))
                ));
            }
        }
    }
    s.push_str("</g>");
    s.push_str(&format!(
        "<text class=\"x-label\" x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">{}</text>",
        n((x0 + x1) / 2.0),
        n(H - 10.0),
        esc(&chart.x_field)
    ));

    // Where an x value goes: its band's centre, or its place on the line.
    let band_of = |v: &Value| -> Option<(f64, f64)> {
        match &axis {
            XAxis::Bands { index, .. } => {
                let i = *index.get(&v.to_string())?;
                let band = (x1 - x0) / index.len() as f64;
                Some((x0 + band * i as f64, band))
            }
            XAxis::Linear { .. } => None,
        }
    };
    let sx = |v: &Value| -> Option<f64> {
        match &axis {
            XAxis::Linear { lo, hi, .. } => pos(v).map(|x| sx_lin(x, *lo, *hi)),
            XAxis::Bands { .. } => band_of(v).map(|(start, band)| start + band / 2.0),
        }
    };
    let fmt_y = |v: &Value| match v {
        Value::Int(_) => Format::Int.apply_in(v, locale),
        Value::Null => "—".into(),
        v => Format::Number(2).apply_in(v, locale),
    };
    let tip = |x: &Value, y: &Value, series: Option<&str>| {
        let mut t = format!("{}: {}", x_label(x, &chart.x, locale), fmt_y(y));
        if let Some(name) = series {
            t = format!("{name} · {t}");
        }
        format!("<title>{}</title>", esc(&t))
    };

    let nseries = chart.series.len();
    match chart.kind {
        ChartKind::Bar | ChartKind::Histogram => {
            let mut stack: std::collections::HashMap<String, (f64, f64)> = Default::default();
            for (si, se) in chart.series.iter().enumerate() {
                let c = color(si, se.name.as_deref());
                s.push_str(&format!(
                    "<g class=\"series\" data-series=\"{}\" fill=\"{c}\">",
                    esc(se.name.as_deref().unwrap_or(""))
                ));
                for p in &se.points {
                    let Some(y) = y_of(&p.y) else { continue };
                    let (bx, bw) = if interval_bars {
                        let XAxis::Linear { lo, hi, .. } = &axis else { continue };
                        let Some((x, end)) = span(&p.x) else { continue };
                        let a = sx_lin(x, *lo, *hi);
                        let b = sx_lin(end, *lo, *hi);
                        // Adjacent bins touch (a histogram); time buckets keep a gap.
                        let gap = if histogram { 1.0 } else { ((b - a) * 0.15).min(4.0) };
                        if stacked || nseries == 1 {
                            (a + gap / 2.0, (b - a - gap).max(0.5))
                        } else {
                            let inner = (b - a) / nseries as f64;
                            (a + inner * si as f64, inner.max(0.5))
                        }
                    } else {
                        let Some((start, band)) = band_of(&p.x) else { continue };
                        let pad = band * 0.1;
                        if stacked || nseries == 1 {
                            (start + pad, band - 2.0 * pad)
                        } else {
                            let inner = (band - 2.0 * pad) / nseries as f64;
                            (start + pad + inner * si as f64, inner)
                        }
                    };
                    let (base, end) = if stacked {
                        let e = stack.entry(p.x.to_string()).or_default();
                        if y >= 0.0 {
                            let b = e.0;
                            e.0 += y;
                            (b, e.0)
                        } else {
                            let b = e.1;
                            e.1 += y;
                            (b, e.1)
                        }
                    } else {
                        (0.0, y)
                    };
                    let (ya, yb) = (sy(base), sy(end));
                    s.push_str(&format!(
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">{}</rect>",
                        n(bx),
                        n(ya.min(yb)),
                        n(bw.max(0.5)),
                        n((ya - yb).abs().max(0.5)),
                        tip(&p.x, &p.y, se.name.as_deref())
                    ));
                }
                s.push_str("</g>");
            }
        }
        ChartKind::Line | ChartKind::Area | ChartKind::Scatter => {
            let mut below: std::collections::HashMap<String, f64> = Default::default();
            for (si, se) in chart.series.iter().enumerate() {
                let c = color(si, se.name.as_deref());
                let pts: Vec<(f64, f64, &Value, &Value)> = se
                    .points
                    .iter()
                    .filter_map(|p| {
                        let x = sx(&p.x)?;
                        let mut y = y_of(&p.y)?;
                        if stacked {
                            let e = below.entry(p.x.to_string()).or_default();
                            *e += y;
                            y = *e;
                        }
                        Some((x, y, &p.x, &p.y))
                    })
                    .collect();
                s.push_str(&format!("<g class=\"series\" data-series=\"{}\">", esc(se.name.as_deref().unwrap_or(""))));
                if chart.kind == ChartKind::Scatter {
                    for (x, y, xv, yv) in &pts {
                        s.push_str(&format!(
                            "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{c}\" fill-opacity=\"0.75\">{}</circle>",
                            n(*x),
                            n(sy(*y)),
                            tip(xv, yv, se.name.as_deref())
                        ));
                    }
                } else {
                    let line: Vec<String> = pts.iter().map(|(x, y, _, _)| format!("{},{}", n(*x), n(sy(*y)))).collect();
                    if chart.kind == ChartKind::Area && !pts.is_empty() {
                        let base = sy(0.0f64.clamp(ylo, yhi));
                        s.push_str(&format!(
                            "<path d=\"M{},{} L{} L{},{} Z\" fill=\"{c}\" fill-opacity=\"0.3\" stroke=\"none\"/>",
                            n(pts[0].0),
                            n(base),
                            line.join(" L"),
                            n(pts[pts.len() - 1].0),
                            n(base)
                        ));
                    }
                    s.push_str(&format!(
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\" stroke-linejoin=\"round\"/>",
                        line.join(" ")
                    ));
                    if pts.len() <= 60 {
                        for (x, y, xv, yv) in &pts {
                            s.push_str(&format!(
                                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{c}\">{}</circle>",
                                n(*x),
                                n(sy(*y)),
                                tip(xv, yv, se.name.as_deref())
                            ));
                        }
                    }
                }
                s.push_str("</g>");
            }
        }
        ChartKind::Pie => unreachable!("drawn by pie()"),
    }
}

fn pie(chart: &ChartData, locale: &Locale, s: &mut String) {
    let Some(series) = chart.series.first() else { return };
    let slices: Vec<(&Value, f64)> =
        series.points.iter().filter_map(|p| y_of(&p.y).filter(|y| *y > 0.0).map(|y| (&p.x, y))).collect();
    let total: f64 = slices.iter().map(|s| s.1).sum();
    let (cx, cy, r) = (H / 2.0, H / 2.0, H / 2.0 - 24.0);
    if total <= 0.0 {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\" font-size=\"14\">No positive values</text>",
            W / 2.0,
            H / 2.0
        ));
        return;
    }
    let mut angle = -std::f64::consts::FRAC_PI_2;
    for (i, (x, y)) in slices.iter().enumerate() {
        let label = x_label(x, &chart.x, locale);
        let c = if matches!(x, Value::Str(s) if &**s == ream_core::chart::OTHER) {
            "#bab0ac"
        } else {
            PALETTE[i % PALETTE.len()]
        };
        let share = y / total;
        let tip = format!(
            "<title>{}: {} ({})</title>",
            esc(&label),
            esc(&Format::Number(2).apply_in(&Value::Float(*y), locale)),
            esc(&Format::Percent(1).apply_in(&Value::Float(share), locale))
        );
        if slices.len() == 1 {
            s.push_str(&format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{c}\">{tip}</circle>",
                n(cx),
                n(cy),
                n(r)
            ));
        } else {
            let end = angle + share * std::f64::consts::TAU;
            let (xa, ya) = (cx + r * angle.cos(), cy + r * angle.sin());
            let (xb, yb) = (cx + r * end.cos(), cy + r * end.sin());
            let large = if share > 0.5 { 1 } else { 0 };
            s.push_str(&format!(
                "<path d=\"M{},{} L{},{} A{},{} 0 {large} 1 {},{} Z\" fill=\"{c}\" stroke=\"#fff\" stroke-width=\"1\">{tip}</path>",
                n(cx),
                n(cy),
                n(xa),
                n(ya),
                n(r),
                n(r),
                n(xb),
                n(yb)
            ));
            angle = end;
        }
        // The legend, beside the pie.
        if i < 16 {
            let ly = 30.0 + i as f64 * 18.0;
            s.push_str(&format!(
                "<g class=\"legend\"><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#333\">{} — {}</text></g>",
                n(H + 10.0),
                n(ly - 9.0),
                n(H + 26.0),
                n(ly),
                esc(&short(&label, 28)),
                esc(&Format::Percent(1).apply_in(&Value::Float(share), locale))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let (lo, hi, t) = nice_ticks(3.0, 97.0, 5);
        assert_eq!((lo, hi), (0.0, 100.0));
        assert_eq!(t, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(compact(1_250_000.0, &Locale::default()), "1.25M");
        assert_eq!(compact(2500.0, &Locale::default()), "2,500");
        assert_eq!(compact(0.5, &Locale::parse("de-DE").unwrap()), "0,5");
    }

    #[test]
    fn ticks_end_where_a_step_is_below_the_floats_resolution() {
        // Around 9e18 one ulp is 2048: adding a step of 20 would never move.
        let (_, _, t) = nice_ticks(9.0e18, 9.0e18 + 100.0, 6);
        assert!(!t.is_empty() && t.len() <= 51, "{}", t.len());
        assert_eq!(nice_ticks(f64::NAN, 1.0, 5).2, vec![0.0, 1.0]);
    }

    #[test]
    fn month_ticks_fall_on_month_starts() {
        let day = |y, m, d| days_from_date(NaiveDate::from_ymd_opt(y, m, d).unwrap()) as f64 * US_PER_DAY;
        let ticks = time_ticks(day(2024, 1, 15), day(2024, 6, 20));
        let labels: Vec<_> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, vec!["Feb 2024", "Mar 2024", "Apr 2024", "May 2024", "Jun 2024"]);
    }
}
