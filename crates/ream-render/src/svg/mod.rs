//! Charts as SVG, written directly: axes, round ticks, readable dates, a legend, and a
//! `<title>` on every bar and slice for a hover tooltip. No font is needed to lay it out
//! (the browser sets the text; labels are anchored, never measured), and the output is
//! small enough to inline in an HTML report.

use chrono::{DateTime, Datelike};
use ream_core::chart::{ChartData, XScale};
use ream_core::spec::{ChartKind, TimeBucket};
use ream_core::template::{Format, Locale};
use ream_core::value::date_from_days;
use ream_core::Value;

use crate::markup::esc;

mod paint;
mod scales;

use scales::Plot;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const BOTTOM: f64 = 48.0;
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8c8c8c"];

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

/// `1.2M`, `250k`, `0.35`: a value's label, with the locale's decimal mark.
pub fn compact(v: f64, locale: &Locale) -> String {
    scaled_label(v, unit_of(v.abs()), decimals_of(v / unit_of(v.abs()).0), locale)
}

/// An axis's tick labels in one style: one unit for all (the largest tick's: `0, 5k,
/// 10k`, not `0, 5,000, 10k`) and as many decimals as the finest tick needs.
pub fn axis_labels(ticks: &[f64], locale: &Locale) -> Vec<String> {
    let unit = unit_of(ticks.iter().fold(0.0f64, |m, t| m.max(t.abs())));
    let decimals = ticks.iter().map(|t| decimals_of(t / unit.0)).max().unwrap_or(0);
    ticks.iter().map(|t| if *t == 0.0 { "0".into() } else { scaled_label(*t, unit, decimals, locale) }).collect()
}

/// The divisor and suffix for values up to `a`.
fn unit_of(a: f64) -> (f64, &'static str) {
    match a {
        a if a >= 1e12 => (1e12, "T"),
        a if a >= 1e9 => (1e9, "B"),
        a if a >= 1e6 => (1e6, "M"),
        a if a >= 1e4 => (1e3, "k"),
        _ => (1.0, ""),
    }
}

/// Decimals that show `scaled` (0, 1 or at most 2).
fn decimals_of(scaled: f64) -> usize {
    if scaled == scaled.trunc() {
        0
    } else if (scaled * 10.0 - (scaled * 10.0).round()).abs() < 1e-9 {
        1
    } else {
        2
    }
}

fn scaled_label(v: f64, (div, suffix): (f64, &str), decimals: usize, locale: &Locale) -> String {
    let text = Format::Number(decimals).apply_in(&Value::Float(v / div), locale);
    format!("{text}{suffix}")
}

/// A point's y, when it can be drawn (NULL, NaN and infinities cannot).
fn y_of(v: &Value) -> Option<f64> {
    v.as_f64().filter(|y| y.is_finite())
}

/// The label of an x value in a band axis or tooltip.
fn x_label(v: &Value, scale: &XScale, locale: &Locale) -> String {
    let stamp = |fmt: &str| match v {
        Value::Date(d) => date_from_days(*d).and_then(|d| locale.strftime(&d.and_time(Default::default()), true, fmt)),
        Value::Timestamp(t) => {
            DateTime::from_timestamp_micros(*t).and_then(|t| locale.strftime(&t.naive_utc(), false, fmt))
        }
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

/// The chart as an `<svg>` element.
pub fn chart_svg(chart: &ChartData, locale: &Locale) -> String {
    let mut s = String::new();
    let title = format!("{}: {} by {}", chart.title, chart.y_axis_title(), chart.x_axis_title());
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

/// Bars, lines, areas and scatter plots: the scales, then the painters.
fn cartesian(chart: &ChartData, locale: &Locale, s: &mut String) {
    let top = legend(chart, s);
    let plot = Plot::new(chart, top, locale);
    paint::y_axis(&plot, locale, s);
    paint::x_axis(&plot, locale, s);
    match chart.kind {
        ChartKind::Bar | ChartKind::Histogram => paint::bars(&plot, locale, s),
        ChartKind::Line | ChartKind::Area | ChartKind::Scatter => paint::lines(&plot, locale, s),
        ChartKind::Pie => {}
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
    use super::scales::*;
    use super::*;
    use chrono::NaiveDate;
    use ream_core::value::days_from_date;

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
        let ticks = time_ticks(day(2024, 1, 15), day(2024, 6, 20), None, &Locale::default());
        let labels: Vec<_> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, vec!["Feb 2024", "Mar 2024", "Apr 2024", "May 2024", "Jun 2024"]);
        // Two month buckets get month ticks, not the days between.
        let labels: Vec<_> = time_ticks(day(2024, 1, 1), day(2024, 3, 1), Some(TimeBucket::Month), &Locale::default())
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(labels, vec!["Jan 2024", "Feb 2024", "Mar 2024"]);
    }

    #[test]
    fn an_axis_labels_every_tick_in_one_unit_and_one_precision() {
        let en = Locale::default();
        let labels = |t: &[f64]| axis_labels(t, &en);
        assert_eq!(labels(&[0.0, 5000.0, 10000.0, 15000.0]), ["0", "5k", "10k", "15k"]);
        assert_eq!(labels(&[0.0, 2000.0, 4000.0, 6000.0, 8000.0]), ["0", "2,000", "4,000", "6,000", "8,000"]);
        assert_eq!(labels(&[0.0, 0.5, 1.0, 1.5]), ["0", "0.5", "1.0", "1.5"]);
        assert_eq!(labels(&[-2.5e6, 0.0, 2.5e6, 5e6]), ["-2.5M", "0", "2.5M", "5.0M"]);
    }
}
