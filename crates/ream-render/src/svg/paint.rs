//! The painters of a cartesian chart: its y axis and grid, its x axis, bars, and lines,
//! areas and points. Each asks the [`Plot`] where a value goes and writes SVG.

use ream_core::spec::ChartKind;
use ream_core::template::{Format, Locale};
use ream_core::Value;

use super::scales::{nice_ticks, time_ticks, Plot, XAxis};
use super::{axis_labels, color, n, short, x_label, y_of, H};
use crate::markup::esc;

/// The grid, the y ticks and the y label.
pub(super) fn y_axis(p: &Plot, locale: &Locale, s: &mut String) {
    s.push_str("<g class=\"y-axis\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">");
    for (t, label) in p.yticks.iter().zip(axis_labels(&p.yticks, locale)) {
        let y = p.sy(*t);
        s.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#e5e5e5\"/><text x=\"{}\" y=\"{}\">{}</text>",
            n(p.x0),
            n(p.x1),
            n(y),
            n(y),
            n(p.x0 - 6.0),
            n(y + 4.0),
            esc(&label)
        ));
    }
    s.push_str("</g>");
    let middle = n((p.y_top + p.y_bottom) / 2.0);
    s.push_str(&format!(
        "<text class=\"y-label\" x=\"14\" y=\"{middle}\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\" transform=\"rotate(-90 14 {middle})\">{}</text>",
        esc(&p.chart.y_axis_title())
    ));
}

/// The x axis line, its ticks or band labels, and the x label.
pub(super) fn x_axis(p: &Plot, locale: &Locale, s: &mut String) {
    s.push_str(&format!(
        "<g class=\"x-axis\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\"><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        n(p.x0),
        n(p.x1),
        n(p.y_bottom),
        n(p.y_bottom)
    ));
    match &p.axis {
        XAxis::Linear { lo, hi, time } => linear_ticks(p, (*lo, *hi, *time), locale, s),
        XAxis::Bands { labels, .. } => {
            let band = (p.x1 - p.x0) / labels.len() as f64;
            let every = (labels.len() as f64 / 10.0).ceil().max(1.0) as usize;
            let max_chars = ((band * every as f64) / 7.0).clamp(4.0, 16.0) as usize;
            for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
                let x = p.x0 + band * (i as f64 + 0.5);
                s.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\">{}</text>",
                    n(x),
                    n(p.y_bottom + 17.0),
                    esc(&short(label, max_chars))
                ));
            }
        }
    }
    s.push_str("</g>");
    s.push_str(&format!(
        "<text class=\"x-label\" x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">{}</text>",
        n((p.x0 + p.x1) / 2.0),
        n(H - 10.0),
        esc(p.chart.x_axis_title())
    ));
}

/// Ticks of a continuous x axis: calendar steps in time, round numbers otherwise.
fn linear_ticks(p: &Plot, (lo, hi, time): (f64, f64, bool), locale: &Locale, s: &mut String) {
    let ticks: Vec<(f64, String)> = match (p.single_bucket(), time) {
        // One bucket: its own label, under it (a tick at 00:00 would say nothing).
        (Some(x), _) => vec![(p.center_pos(x), x_label(x, &p.chart.x, locale))],
        (None, true) => time_ticks(lo, hi, p.time_bucket(), locale),
        (None, false) => {
            let (_, _, t) = nice_ticks(lo, hi, 6);
            let t: Vec<f64> = t.into_iter().filter(|t| *t >= lo - 1e-9 && *t <= hi + 1e-9).collect();
            t.iter().copied().zip(axis_labels(&t, locale)).collect()
        }
    };
    for (t, label) in ticks {
        let x = p.sx_lin(t, lo, hi);
        // A label at the right edge ends there rather than running off the chart.
        let anchor = if x > p.x1 - 30.0 { " text-anchor=\"end\"" } else { "" };
        s.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\"{anchor}>{}</text>",
            n(x),
            n(x),
            n(p.y_bottom),
            n(p.y_bottom + 4.0),
            n(x),
            n(p.y_bottom + 17.0),
            esc(&label)
        ));
    }
}

/// A point's tooltip: `x: y`, after its series' name.
fn tip(p: &Plot, x: &Value, y: &Value, series: Option<&str>, locale: &Locale) -> String {
    let y = match y {
        Value::Int(_) => Format::Int.apply_in(y, locale),
        Value::Null => "—".into(),
        v => Format::Number(2).apply_in(v, locale),
    };
    let mut t = format!("{}: {y}", x_label(x, &p.chart.x, locale));
    if let Some(name) = series {
        t = format!("{name} · {t}");
    }
    format!("<title>{}</title>", esc(&t))
}

/// Where a bar goes across: its start and width, in its interval or its band, side by
/// side with the other series' bars unless stacked.
fn bar_across(p: &Plot, x: &Value, si: usize, nseries: usize) -> Option<(f64, f64)> {
    let single = p.stacked || nseries == 1;
    if p.interval_bars {
        let XAxis::Linear { lo, hi, .. } = &p.axis else { return None };
        let (x, end) = p.span(x)?;
        let (a, b) = (p.sx_lin(x, *lo, *hi), p.sx_lin(end, *lo, *hi));
        // Adjacent bins touch (a histogram); time buckets keep a gap.
        let gap = if p.histogram { 1.0 } else { ((b - a) * 0.15).min(4.0) };
        if single {
            return Some((a + gap / 2.0, (b - a - gap).max(0.5)));
        }
        let inner = (b - a) / nseries as f64;
        return Some((a + inner * si as f64, inner.max(0.5)));
    }
    let (start, band) = p.band_of(x)?;
    let pad = band * 0.1;
    if single {
        return Some((start + pad, band - 2.0 * pad));
    }
    let inner = (band - 2.0 * pad) / nseries as f64;
    Some((start + pad + inner * si as f64, inner))
}

/// Bars and histograms, each series in its colour; stacks grow up from zero for positive
/// values and down for negative ones.
pub(super) fn bars(p: &Plot, locale: &Locale, s: &mut String) {
    let nseries = p.chart.series.len();
    let mut stack: std::collections::HashMap<String, (f64, f64)> = Default::default();
    for (si, se) in p.chart.series.iter().enumerate() {
        let c = color(si, se.name.as_deref());
        s.push_str(&format!(
            "<g class=\"series\" data-series=\"{}\" fill=\"{c}\">",
            esc(se.name.as_deref().unwrap_or(""))
        ));
        for point in &se.points {
            let Some(y) = y_of(&point.y) else { continue };
            let Some((bx, bw)) = bar_across(p, &point.x, si, nseries) else { continue };
            let (base, end) = if p.stacked {
                let e = stack.entry(point.x.to_string()).or_default();
                let part = if y >= 0.0 { &mut e.0 } else { &mut e.1 };
                let base = *part;
                *part += y;
                (base, *part)
            } else {
                (0.0, y)
            };
            let (ya, yb) = (p.sy(base), p.sy(end));
            s.push_str(&format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">{}</rect>",
                n(bx),
                n(ya.min(yb)),
                n(bw.max(0.5)),
                n((ya - yb).abs().max(0.5)),
                tip(p, &point.x, &point.y, se.name.as_deref(), locale)
            ));
        }
        s.push_str("</g>");
    }
}

/// Lines, areas and scatter points; stacked areas add up series by series.
pub(super) fn lines(p: &Plot, locale: &Locale, s: &mut String) {
    let mut below: std::collections::HashMap<String, f64> = Default::default();
    for (si, se) in p.chart.series.iter().enumerate() {
        let c = color(si, se.name.as_deref());
        let pts: Vec<(f64, f64, &Value, &Value)> = se
            .points
            .iter()
            .filter_map(|point| {
                let x = p.sx(&point.x)?;
                let mut y = y_of(&point.y)?;
                if p.stacked {
                    let e = below.entry(point.x.to_string()).or_default();
                    *e += y;
                    y = *e;
                }
                Some((x, y, &point.x, &point.y))
            })
            .collect();
        s.push_str(&format!("<g class=\"series\" data-series=\"{}\">", esc(se.name.as_deref().unwrap_or(""))));
        let dot = |r: &str, opacity: &str, (x, y, xv, yv): &(f64, f64, &Value, &Value)| {
            format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"{r}\" fill=\"{c}\"{opacity}>{}</circle>",
                n(*x),
                n(p.sy(*y)),
                tip(p, xv, yv, se.name.as_deref(), locale)
            )
        };
        if p.chart.kind == ChartKind::Scatter {
            pts.iter().for_each(|pt| s.push_str(&dot("2.5", " fill-opacity=\"0.75\"", pt)));
        } else {
            polyline(p, &pts, c, s);
            if pts.len() <= 60 {
                pts.iter().for_each(|pt| s.push_str(&dot("3", "", pt)));
            }
        }
        s.push_str("</g>");
    }
}

/// A series' line, and under it the area down to zero for an area chart.
fn polyline(p: &Plot, pts: &[(f64, f64, &Value, &Value)], c: &str, s: &mut String) {
    let line: Vec<String> = pts.iter().map(|(x, y, _, _)| format!("{},{}", n(*x), n(p.sy(*y)))).collect();
    if let (ChartKind::Area, Some(first), Some(last)) = (p.chart.kind, pts.first(), pts.last()) {
        let base = p.sy(0.0f64.clamp(p.ylo, p.yhi));
        s.push_str(&format!(
            "<path d=\"M{},{} L{} L{},{} Z\" fill=\"{c}\" fill-opacity=\"0.3\" stroke=\"none\"/>",
            n(first.0),
            n(base),
            line.join(" L"),
            n(last.0),
            n(base)
        ));
    }
    s.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\" stroke-linejoin=\"round\"/>",
        line.join(" ")
    ));
}
