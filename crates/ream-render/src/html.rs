use std::sync::Arc;

use arrow_schema::DataType;
use ream_core::spec::Align;
use ream_core::{Event, ReportMeta, Value};

use crate::markup::{esc, escape};
use crate::{RenderError, Renderer};

/// One complete HTML5 document, streamed: the head and the column headers leave with the
/// first rows; every row after that is a `<tr>` appended to one table. Group headers and
/// footers are rows of their own (`tr.group-header`, `tr.group-footer`, with
/// `data-level`, `data-key`, and each variable as `data-var-NAME`), so a group may span
/// any number of batches. All text is escaped; control characters become U+FFFD.
#[derive(Default)]
pub struct HtmlRenderer {
    meta: Option<Arc<ReportMeta>>,
    /// Per detail column: the batch index and the cell's class (alignment).
    cells: Vec<(usize, &'static str)>,
    keys: Vec<Value>,
}

const FORMAT: &str = "html";

/// The one style sheet of an HTML report, inline in its `<style>` (a server can allow it
/// by its hash in a Content-Security-Policy).
pub const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d1d1f}\
h1{font-size:1.5rem;margin:0 0 1rem}\
table.report{border-collapse:collapse;width:100%}\
th,td{padding:.3rem .6rem;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}\
thead th{background:#f3f4f6;position:sticky;top:0;border-bottom:2px solid #c8c8c8}\
.r{text-align:right;font-variant-numeric:tabular-nums}.c{text-align:center}\
tr.group-header th{background:#eaf1fb;font-weight:600;border-top:1px solid #b9c9e4}\
tr.group-header.level-1 th{background:#f4f8fd;padding-left:1.5rem}\
tr.group-header.level-2 th{background:#fafcff;padding-left:2.5rem}\
tr.group-footer td{font-weight:600;border-bottom:2px solid #b9c9e4}\
.summary{margin-top:1rem;font-weight:600}.no-data{color:#666;font-style:italic}\
.page-header,.page-footer{color:#666;font-size:.85rem;margin:.5rem 0}\
.charts{display:flex;flex-wrap:wrap;gap:1.5rem;margin-top:1.5rem}\
figure.chart{margin:0;max-width:100%}figure.chart svg{max-width:100%;height:auto;font-family:inherit}\
figcaption{font-weight:600;margin-bottom:.4rem}.chart-note{color:#666;font-size:.8rem;margin:.3rem 0 0}\
@media print{body{margin:0}thead{display:table-header-group}thead th{position:static}\
tr,figure.chart{break-inside:avoid}tr.group-header{break-after:avoid}tr.page-break{break-before:page}}";

/// `data-var-NAME` needs an XML-compatible attribute name: letters, digits, `-`, `_`.
fn var_attr(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

fn numeric(dt: &DataType) -> bool {
    dt.is_numeric()
}

impl HtmlRenderer {
    fn variables_attrs(meta: &ReportMeta, values: &[Value], s: &mut String) {
        for (name, v) in meta.variables.iter().zip(values) {
            s.push_str(&format!(" data-var-{}=\"{}\"", var_attr(name), esc(&v.to_string())));
        }
    }

    fn colspan(&self) -> usize {
        self.cells.len().max(1)
    }
}

impl Renderer for HtmlRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let mut s = String::new();
        match event {
            Event::Begin(meta) => {
                self.cells = meta
                    .columns
                    .iter()
                    .map(|c| {
                        let class = match c.align {
                            Some(Align::Right) => "r",
                            Some(Align::Center) => "c",
                            Some(Align::Left) => "",
                            None if numeric(meta.schema.field(c.index).data_type()) => "r",
                            None => "",
                        };
                        (c.index, class)
                    })
                    .collect();
                let title = meta.title.clone().unwrap_or_else(|| meta.report.clone());
                s.push_str(&format!(
                    "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n",
                    meta.locale.tag
                ));
                s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
                s.push_str("<meta name=\"generator\" content=\"ream\">\n");
                s.push_str(&format!("<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n", esc(&title)));
                if let Some(t) = &meta.title {
                    s.push_str(&format!("<header class=\"report-title\"><h1>{}</h1></header>\n", esc(t)));
                }
                if let Some(h) = meta.page_header.as_ref().filter(|t| !numbers_pages(t)) {
                    s.push_str(&format!(
                        "<div class=\"page-header\">{}</div>\n",
                        esc(&h.render(|n| meta.lookup(n, None, &[])))
                    ));
                }
                s.push_str(&format!("<table class=\"report\" data-report=\"{}\">\n", esc(&meta.report)));
                // A summary report shows no detail rows, so no column headers either.
                if meta.detail {
                    s.push_str("<thead><tr>");
                    if meta.columns.is_empty() {
                        s.push_str("<th scope=\"col\"></th>");
                    }
                    for (c, (_, class)) in meta.columns.iter().zip(&self.cells) {
                        let cls = if class.is_empty() { String::new() } else { format!(" class=\"{class}\"") };
                        s.push_str(&format!("<th scope=\"col\"{cls}>{}</th>", esc(&c.label)));
                    }
                    s.push_str("</tr></thead>\n");
                }
                s.push_str("<tbody>\n");
                self.meta = Some(meta.clone());
            }
            Event::GroupHeader { level, key, first } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                self.keys.truncate(*level);
                self.keys.push(key.clone());
                let g = &meta.groups[*level];
                let Some(text) = meta.group_header_text(*level, &self.keys, first) else {
                    return Ok(());
                };
                let brk = if g.page_break { " page-break" } else { "" };
                s.push_str(&format!(
                    "<tr class=\"group-header level-{level}{brk}\" data-level=\"{level}\" data-key=\"{}\"><th colspan=\"{}\" scope=\"rowgroup\">{}</th></tr>\n",
                    esc(&key.to_string()),
                    self.colspan(),
                    esc(&text)
                ));
            }
            Event::Rows(batch) => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                if !meta.detail {
                    return Ok(());
                }
                for row in 0..batch.num_rows() {
                    s.push_str("<tr>");
                    for (col, (index, class)) in meta.columns.iter().zip(&self.cells) {
                        let v = Value::from_array(batch.column(*index).as_ref(), row);
                        if class.is_empty() {
                            s.push_str("<td>");
                        } else {
                            s.push_str("<td class=\"");
                            s.push_str(class);
                            s.push_str("\">");
                        }
                        escape(&col.format.apply_in(&v, &meta.locale), &mut s);
                        s.push_str("</td>");
                    }
                    s.push_str("</tr>\n");
                }
            }
            Event::GroupFooter { level, key, variables } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                let Some(text) = meta.group_footer_text(*level, variables, &self.keys) else {
                    self.keys.truncate(*level);
                    return Ok(());
                };
                s.push_str(&format!(
                    "<tr class=\"group-footer level-{level}\" data-level=\"{level}\" data-key=\"{}\"",
                    esc(&key.to_string())
                ));
                Self::variables_attrs(&meta, variables, &mut s);
                s.push_str(&format!("><td colspan=\"{}\">{}</td></tr>\n", self.colspan(), esc(&text)));
                self.keys.truncate(*level);
            }
            Event::End { variables, rows, charts } => {
                let meta = self.meta.clone().ok_or(RenderError::NotStarted { format: FORMAT })?;
                s.push_str("</tbody>\n</table>\n");
                if *rows == 0 {
                    if let Some(nd) = &meta.no_data {
                        s.push_str(&format!(
                            "<p class=\"no-data\">{}</p>\n",
                            esc(&nd.render(|n| meta.lookup(n, None, &[])))
                        ));
                    }
                }
                s.push_str(&format!("<footer class=\"summary\" data-rows=\"{rows}\""));
                Self::variables_attrs(&meta, variables, &mut s);
                s.push('>');
                if let Some(sm) = &meta.summary {
                    escape(&sm.render(|n| meta.lookup(n, Some(variables), &[])), &mut s);
                }
                s.push_str("</footer>\n");
                if !charts.is_empty() {
                    s.push_str("<section class=\"charts\">\n");
                    for c in charts.iter() {
                        chart_figure(c, &meta.locale, &mut s);
                    }
                    s.push_str("</section>\n");
                }
                if let Some(f) = meta.page_footer.as_ref().filter(|t| !numbers_pages(t)) {
                    s.push_str(&format!(
                        "<div class=\"page-footer\">{}</div>\n",
                        esc(&f.render(|n| meta.lookup(n, None, &[])))
                    ));
                }
                s.push_str("</body>\n</html>\n");
            }
        }
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One chart: a figure with its caption, the SVG, and a note when points were reduced.
fn chart_figure(c: &ream_core::ChartData, locale: &ream_core::template::Locale, s: &mut String) {
    s.push_str(&format!(
        "<figure class=\"chart\" id=\"chart-{}\" data-chart=\"{}\" data-kind=\"{}\">\n<figcaption>{}</figcaption>\n",
        esc(&c.id),
        esc(&c.id),
        c.kind.name(),
        esc(&c.title)
    ));
    s.push_str(&crate::svg::chart_svg(c, locale));
    s.push('\n');
    let mut notes = Vec::new();
    if let Some(d) = &c.downsampled {
        notes.push(format!(
            "{} points reduced to {} with {} (each column keeps its first, last, lowest and highest point)",
            ream_core::template::Format::Int.apply_in(&Value::Int(d.points_in as i64), locale),
            ream_core::template::Format::Int.apply_in(&Value::Int(d.points_out as i64), locale),
            d.method.to_uppercase()
        ));
    }
    if c.skipped > 0 {
        notes.push(format!("{} rows without an x value are not shown", c.skipped));
    }
    if !notes.is_empty() {
        s.push_str(&format!("<p class=\"chart-note\">{}.</p>\n", esc(&notes.join("; "))));
    }
    s.push_str("</figure>\n");
}

/// Whether a page header or footer numbers the pages (`{page}`, `{pages}`, `{group_pages}`): an HTML
/// document has none to number, and "page  of " is no footer, so such a band is left out.
fn numbers_pages(t: &ream_core::template::Template) -> bool {
    t.names().any(|n| matches!(n, "page" | "pages" | "group_pages"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        let mut s = String::new();
        escape("<script>alert(\"x\")</script> ' & \u{7}", &mut s);
        assert_eq!(s, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &#39; &amp; \u{FFFD}");
        assert_eq!(var_attr("Region Total"), "region-total");
    }
}
