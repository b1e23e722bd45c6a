//! PDF, written page by page. Each page's content stream and page object leave with the
//! batch that completes them; what stays in memory is the open page, one offset per
//! object and the glyphs used so far. At the end come what only the end knows: the font
//! subsets, the `{pages}` total (one form XObject that every page header or footer
//! shows), the page tree's root, and the cross-reference table.
//!
//! Layout: the title on the first page; on every page the page header, the column
//! headers and the page footer; group headers kept with the row after them; group
//! footers; the summary, `no_data` and the charts at the end. Column widths are fixed,
//! shares or automatic, measured on the header and the first page's rows (held back
//! until a page is full, so the first page is never laid out twice).

mod chart;
mod font;
mod writer;

use std::sync::Arc;

use pdf_writer::writers::{Catalog, DocumentInfo, Resources};
use pdf_writer::{Chunk, Content, Filter, Finish, Name, Rect, Ref, Str, TextStr};
use ream_core::page::{ColumnWidth, PageSetup};
use ream_core::spec::Align;
use ream_core::template::{Format as ValueFormat, Template};
use ream_core::{Event, ReportMeta, Value};

use self::font::Font;
use self::writer::ObjWriter;
use crate::{RenderError, Renderer};

const FORMAT: &str = "pdf";
/// Pages per node of the page tree: a node is written as soon as it is full.
const PAGES_PER_NODE: usize = 256;

fn err(message: impl Into<String>) -> RenderError {
    RenderError::Encode { format: FORMAT, message: message.into() }
}

/// Level 2: on lineitem pages, a quarter smaller than level 1 for a fifth more time;
/// level 4 is smaller still (40%) but 60% slower, level 6 matches ReportLab's size at 2.4×
/// the time.
pub(crate) fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::new(2));
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// The PDF renderer. See the module docs.
#[derive(Default)]
pub struct PdfRenderer {
    doc: Option<Box<Doc>>,
}

/// Which of the two fonts a band is set in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Weight {
    Regular,
    Bold,
}

/// The page header or the page footer.
#[derive(Clone, Copy)]
enum Edge {
    Header,
    Footer,
}

/// A band before it is placed on a page.
enum Band {
    GroupHeader { level: usize, text: String, page_break: bool },
    Detail(Vec<String>),
    GroupFooter { level: usize, text: String },
}

/// `{page}`/`{pages}` in a page header or footer.
struct PageBand {
    /// The text up to `{pages}` (all of it when there is none).
    before: Template,
    /// `{pages}` and what follows it, drawn from one form XObject written at the end.
    total: Option<PagesTotal>,
}

struct PagesTotal {
    /// The document's total; a group's (`{group_pages}`) has an XObject per group.
    xobject: Ref,
    group: bool,
    name: &'static [u8],
    format: ValueFormat,
    /// What follows `{pages}`: in the XObject when it does not change per page, else
    /// drawn on each page after a slot as wide as six digits.
    after: Template,
    after_varies: bool,
}

struct OpenPage {
    content: Content,
    /// Distance from the top of the page to the free space.
    y: f32,
    /// Whether a band other than the title and column headers is on it.
    has_body: bool,
    /// The font and size set in the content stream.
    font: Option<(Weight, f32)>,
    /// The XObjects its `{group_pages}` show: the open group's, when pages restart.
    group_total: Option<GroupTotals>,
}

struct Geometry {
    page: PageSetup,
    /// Line height and the padding above and below a row's text.
    line: f32,
    pad: f32,
    /// Horizontal padding in a cell.
    px: f32,
    body_top: f32,
    body_bottom: f32,
}

struct Doc {
    meta: Arc<ReportMeta>,
    g: Geometry,
    w: ObjWriter,
    regular: Font,
    bold: Font,
    catalog: Ref,
    root: Ref,
    resources: Ref,
    info: Ref,
    header: Option<PageBand>,
    footer: Option<PageBand>,
    /// Column widths, once measured; until then bands wait in `pending`.
    widths: Option<Arc<[f32]>>,
    /// Per column: how text sits in the cell (as in HTML: numbers right by default).
    align: Vec<Align>,
    pending: Vec<Band>,
    pending_rows: usize,
    /// Group headers waiting for the band after them.
    held: Vec<Band>,
    /// The drawn headers of the groups still open, outermost first (level, text): each
    /// page they continue on starts with them again.
    open_headers: Vec<(usize, String)>,
    open: Option<OpenPage>,
    pages: usize,
    /// The page-tree node the open page goes in, and the pages in it so far.
    node: Ref,
    node_kids: Vec<Ref>,
    /// Written nodes of the page tree: (node, pages in it).
    nodes: Vec<(Ref, usize)>,
    /// Chart XObjects, by resource name.
    charts: Vec<(String, Ref)>,
    zebra: usize,
    keys: Vec<Value>,
    /// After the last row: later pages (summary, charts) have no column headers.
    table_done: bool,
    /// `page.restart_at`: the group level whose groups number their own pages, the page
    /// the open one started on, and its `{group_pages}` XObject (written when it ends).
    restart_level: Option<usize>,
    group_start: usize,
    group_total: Option<GroupTotals>,
}

/// A group's `{group_pages}` XObject for each page band that counts them (header, footer).
type GroupTotals = [Option<Ref>; 2];

impl Renderer for PdfRenderer {
    fn push(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        if let Event::Begin(meta) = event {
            self.doc = Some(Box::new(Doc::new(meta.clone(), out)?));
            return Ok(());
        }
        let doc = self.doc.as_mut().ok_or(RenderError::NotStarted { format: FORMAT })?;
        doc.event(event, out)
    }

    fn finish(&mut self, sink: &mut (dyn std::io::Write + Send)) -> Result<(), RenderError> {
        let Some(doc) = self.doc.as_mut() else { return Ok(()) };
        doc.write_trailer(sink)
    }
}

fn page_band(t: &Option<Template>, w: &mut ObjWriter, name: &'static [u8]) -> Option<PageBand> {
    let t = t.as_ref()?;
    // Validation lets a band count the document's pages or its group's, not both.
    let (split, group) = match t.split_at_slot("group_pages") {
        Some(split) => (Some(split), true),
        None => (t.split_at_slot("pages"), false),
    };
    Some(match split {
        None => PageBand { before: t.clone(), total: None },
        Some((before, format, after)) => {
            let after_varies = after.names().any(|n| n == "page");
            let total = PagesTotal { xobject: w.alloc(), group, name, format, after, after_varies };
            PageBand { before, total: Some(total) }
        }
    })
}

impl Doc {
    fn new(meta: Arc<ReportMeta>, out: &mut Vec<u8>) -> Result<Doc, RenderError> {
        let mut w = ObjWriter::new();
        w.header(out);
        let catalog = w.alloc();
        let root = w.alloc();
        let resources = w.alloc();
        let info = w.alloc();
        // The spec's own font, else DejaVu Sans Condensed (copied once per run, 0.7 MB
        // each, so both kinds are held the same way).
        let (regular, bold): (Arc<[u8]>, Arc<[u8]>) = match &meta.page.fonts {
            Some(f) => (f.regular.clone(), f.bold.clone()),
            None => (dejavu::sans_condensed::regular().into(), dejavu::sans_condensed::bold().into()),
        };
        let regular = Font::new(regular, &mut w).map_err(err)?;
        let bold = Font::new(bold, &mut w).map_err(err)?;
        let header = page_band(&meta.page_header, &mut w, b"PH");
        let footer = page_band(&meta.page_footer, &mut w, b"PF");
        let page = meta.page.clone();
        let fs = page.font_size;
        let line = fs * 1.25;
        let pad = fs * 0.2;
        let band_h = |b: &Option<PageBand>| if b.is_some() { line + pad * 2.0 + fs * 0.5 } else { 0.0 };
        let g = Geometry {
            body_top: page.top + band_h(&header),
            body_bottom: page.height - page.bottom - band_h(&footer),
            line,
            pad,
            px: fs * 0.4,
            page,
        };
        let align = meta
            .columns
            .iter()
            .map(|c| match c.align {
                Some(a) => a,
                None if meta.schema.field(c.index).data_type().is_numeric() => Align::Right,
                None => Align::Left,
            })
            .collect();
        let node = w.alloc();
        let restart_level = meta.page.restart_at.as_ref().and_then(|r| meta.groups.iter().position(|g| &g.name == r));
        Ok(Doc {
            meta,
            g,
            w,
            regular,
            bold,
            catalog,
            root,
            resources,
            info,
            header,
            footer,
            widths: None,
            align,
            pending: Vec::new(),
            pending_rows: 0,
            held: Vec::new(),
            open_headers: Vec::new(),
            open: None,
            pages: 0,
            node,
            node_kids: Vec::new(),
            nodes: Vec::new(),
            charts: Vec::new(),
            zebra: 0,
            keys: Vec::new(),
            table_done: false,
            restart_level,
            group_start: 1,
            group_total: None,
        })
    }

    fn fs(&self) -> f32 {
        self.g.page.font_size
    }

    fn body_width(&self) -> f32 {
        self.g.page.width - self.g.page.left - self.g.page.right
    }

    fn row_height(&self, lines: usize) -> f32 {
        lines as f32 * self.g.line + self.g.pad * 2.0
    }

    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match event {
            Event::Begin(_) => {}
            Event::GroupHeader { level, key, first } => {
                let meta = self.meta.clone();
                self.keys.truncate(*level);
                self.keys.push(key.clone());
                let g = &meta.groups[*level];
                if let Some(text) = meta.group_header_text(*level, &self.keys, first) {
                    self.band(Band::GroupHeader { level: *level, text, page_break: g.page_break }, out)?;
                }
            }
            Event::Rows(batch) => {
                let meta = self.meta.clone();
                if !meta.detail {
                    return Ok(());
                }
                let cols: Vec<_> = meta.columns.iter().map(|c| batch.column(c.index)).collect();
                for row in 0..batch.num_rows() {
                    let cells = meta
                        .columns
                        .iter()
                        .zip(&cols)
                        .map(|(c, a)| c.format.apply_in(&Value::from_array(a.as_ref(), row), &meta.locale))
                        .collect();
                    self.band(Band::Detail(cells), out)?;
                }
            }
            Event::GroupFooter { level, variables, .. } => {
                let meta = self.meta.clone();
                let text = meta.group_footer_text(*level, variables, &self.keys).unwrap_or_default();
                self.keys.truncate(*level);
                // Even without a text: the group ends here, in band order.
                self.band(Band::GroupFooter { level: *level, text }, out)?;
            }
            Event::End { variables, rows, charts } => {
                let meta = self.meta.clone();
                self.measure();
                for b in std::mem::take(&mut self.pending) {
                    self.place(b, out)?;
                }
                self.release_held(out)?;
                if self.open.is_none() {
                    self.new_page();
                }
                self.table_done = true;
                if *rows == 0 {
                    if let Some(nd) = &meta.no_data {
                        let text = nd.render(|n| meta.lookup(n, None, &[]));
                        self.text_block(&text, Weight::Regular, 0.35, out)?;
                    }
                }
                if let Some(sm) = &meta.summary {
                    let text = sm.render(|n| meta.lookup(n, Some(variables), &[]));
                    self.rule_if(0.5);
                    self.text_block(&text, Weight::Bold, 0.0, out)?;
                }
                // With no rows, the no_data text says it all: no empty charts.
                for (i, c) in charts.iter().enumerate().filter(|_| *rows > 0) {
                    self.chart(i, c, out)?;
                }
                self.close_page(out)?;
            }
        }
        Ok(())
    }

    /// A band in stream order: held while the widths are not known yet.
    fn band(&mut self, band: Band, out: &mut Vec<u8>) -> Result<(), RenderError> {
        if self.widths.is_some() {
            return self.place(band, out);
        }
        if matches!(band, Band::Detail(_)) {
            self.pending_rows += 1;
        }
        self.pending.push(band);
        // Enough rows to fill the first page: measure them and lay them out.
        let first_page = ((self.g.body_bottom - self.g.body_top) / self.row_height(1)) as usize;
        if self.pending_rows >= first_page.max(1) || self.pending.len() >= first_page.max(1) * 4 {
            self.measure();
            for b in std::mem::take(&mut self.pending) {
                self.place(b, out)?;
            }
        }
        Ok(())
    }

    /// Column widths from the spec and, for `auto`, the header and the held rows.
    fn measure(&mut self) {
        if self.widths.is_some() {
            return;
        }
        let meta = self.meta.clone();
        let fs = self.fs();
        let px = self.g.px;
        let mut natural: Vec<f32> = meta.columns.iter().map(|c| self.bold.width(&c.label, fs) + 2.0 * px).collect();
        for b in &self.pending {
            if let Band::Detail(cells) = b {
                for (i, text) in cells.iter().enumerate() {
                    let w = self.regular.width(text, fs) + 2.0 * px;
                    if w > natural[i] {
                        natural[i] = w;
                    }
                }
            }
        }
        let specs: Vec<ColumnWidth> = meta.columns.iter().map(|c| c.width).collect();
        self.widths = Some(resolve_widths(&specs, &natural, self.body_width(), fs * 3.0).into());
    }

    /// Place a band on the current page (a new one when it does not fit).
    fn place(&mut self, band: Band, out: &mut Vec<u8>) -> Result<(), RenderError> {
        match band {
            Band::GroupHeader { level, page_break, .. } => {
                let restart = Some(level) == self.restart_level;
                // Headers held above this one (outer groups that just started) move to
                // the new page with it: they are drawn when their first row is.
                if (page_break || restart) && self.open.as_ref().is_some_and(|p| p.has_body) {
                    self.close_page(out)?;
                }
                if restart {
                    self.restart_pages(out);
                }
                // Kept with the band that follows.
                self.held.push(band);
                Ok(())
            }
            Band::Detail(cells) => self.detail(&cells, out),
            Band::GroupFooter { level, text } => {
                self.release_held(out)?;
                if !text.is_empty() {
                    // A footer that moves to a new page comes after its group's header again.
                    let h = self.row_height(1);
                    self.ensure(h, out)?;
                    self.rule_if(0.4);
                    self.band_row(&text, Weight::Bold, 0.0, None);
                }
                self.open_headers.retain(|(l, _)| *l < level);
                Ok(())
            }
        }
    }

    /// A group that numbers its own pages starts: the last one's count is known now.
    fn restart_pages(&mut self, out: &mut Vec<u8>) {
        let next = if self.open.is_some() { self.pages } else { self.pages + 1 };
        self.write_group_totals(next - self.group_start, out);
        self.group_start = next;
        let counts = |b: &Option<PageBand>| b.as_ref().and_then(|b| b.total.as_ref()).is_some_and(|t| t.group);
        let (header, footer) = (counts(&self.header), counts(&self.footer));
        self.group_total = (header || footer).then(|| [header.then(|| self.w.alloc()), footer.then(|| self.w.alloc())]);
    }

    /// The open group's `{group_pages}` XObjects, now that it has `count` pages.
    fn write_group_totals(&mut self, count: usize, out: &mut Vec<u8>) {
        for (edge, xobject) in self.group_total.take().into_iter().flat_map(|[h, f]| [(0, h), (1, f)]) {
            if let Some(xobject) = xobject {
                self.write_total(edge, xobject, count, out);
            }
        }
    }

    fn held_height(&self) -> f32 {
        self.held.len() as f32 * self.row_height(1)
    }

    /// Draw the held group headers (there is room: the caller made sure).
    fn draw_held(&mut self) {
        for b in std::mem::take(&mut self.held) {
            if let Band::GroupHeader { level, text, .. } = b {
                self.header_row(level, &text);
                self.zebra = 0;
                self.open_headers.retain(|(l, _)| *l < level);
                self.open_headers.push((level, text));
            }
        }
    }

    /// A group header's row, shaded by its level.
    fn header_row(&mut self, level: usize, text: &str) {
        let shade = [(0.918, 0.945, 0.984), (0.957, 0.973, 0.992), (0.98, 0.988, 1.0)];
        self.band_row(text, Weight::Bold, level as f32 * self.fs(), Some(shade[level.min(2)]));
    }

    /// On a page the open groups continue on: their headers again, marked as continued.
    fn continued_headers(&mut self) {
        for (level, text) in self.open_headers.clone() {
            self.header_row(level, &format!("{text} (continued)"));
        }
    }

    /// Held headers with nothing after them (a summary report's groups): place alone.
    fn release_held(&mut self, out: &mut Vec<u8>) -> Result<(), RenderError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let h = self.held_height() + self.row_height(1);
        self.ensure(h, out)?;
        self.draw_held();
        Ok(())
    }

    /// Room for `h` more points on the open page, opening one if needed.
    fn ensure(&mut self, h: f32, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let fits = self.open.as_ref().is_some_and(|p| p.y + h <= self.g.body_bottom + 0.01 || !p.has_body);
        if !fits {
            if self.open.is_some() {
                self.close_page(out)?;
            }
            self.new_page();
        }
        Ok(())
    }

    fn detail(&mut self, cells: &[String], out: &mut Vec<u8>) -> Result<(), RenderError> {
        let widths = self.widths.clone().unwrap_or_default();
        let fs = self.fs();
        let px = self.g.px;
        // Lines per cell: one, or the wrapped lines of a wrapping column, at most what
        // fits on an empty page.
        let bands = 2 + self.held.len() + self.open_headers.len();
        let max_lines = (((self.g.body_bottom - self.g.body_top) - self.row_height(1) * bands as f32) / self.g.line)
            .floor()
            .max(1.0) as usize;
        // (column, lines) of the wrapping columns only: most reports have none, and their
        // rows then allocate nothing here.
        let mut wrapped: Vec<(usize, Vec<String>)> = Vec::new();
        let mut lines = 1;
        for (i, text) in cells.iter().enumerate() {
            if self.meta.columns[i].wrap {
                let mut ls = wrap(&mut self.regular, text, widths[i] - 2.0 * px, fs);
                if ls.len() > max_lines {
                    ls.truncate(max_lines);
                    let last = ls.pop().unwrap_or_default();
                    let room = widths[i] - 2.0 * px;
                    ls.push(ellipsize(&mut self.regular, &format!("{last}…"), room, fs));
                }
                lines = lines.max(ls.len());
                wrapped.push((i, ls));
            }
        }
        let h = self.row_height(lines);
        self.ensure(self.held_height() + h, out)?;
        self.draw_held();
        let page = self.open.as_mut().expect("ensure opened a page");
        let top = page.y;
        let (ph, left) = (self.g.page.height, self.g.page.left);
        if self.g.page.zebra && self.zebra % 2 == 1 {
            let bw: f32 = widths.iter().sum();
            page.content.set_fill_gray(0.95).rect(left, ph - top - h, bw, h).fill_nonzero().set_fill_gray(0.0);
        }
        self.zebra += 1;
        let (asc, _) = self.regular.metrics(fs);
        let mut x = left;
        let mut bytes = Vec::with_capacity(64);
        page.content.begin_text();
        if page.font != Some((Weight::Regular, fs)) {
            page.content.set_font(Name(b"F1"), fs);
            page.font = Some((Weight::Regular, fs));
        }
        let (pad, line_h) = (self.g.pad, self.g.line);
        for (i, text) in cells.iter().enumerate() {
            let (w, align) = (widths[i], self.align[i]);
            let mut put = |font: &mut Font, line: &str, li: usize| {
                if line.is_empty() {
                    return;
                }
                let tx = place(align, x, w, px, || font.width(line, fs));
                bytes.clear();
                font.encode(line, &mut bytes);
                let baseline = top + pad + asc + li as f32 * line_h;
                page.content.set_text_matrix(at(tx, ph - baseline)).show(Str(&bytes));
            };
            match wrapped.iter().find(|(c, _)| *c == i) {
                Some((_, ls)) => ls.iter().enumerate().for_each(|(li, line)| put(&mut self.regular, line, li)),
                None => {
                    let shown = fit(&mut self.regular, text, w - 2.0 * px, fs);
                    put(&mut self.regular, &shown, 0);
                }
            }
            x += w;
        }
        page.content.end_text();
        page.y += h;
        page.has_body = true;
        Ok(())
    }

    /// A full-width row of text (group header or footer): bold or regular, indented,
    /// optionally shaded. The caller made room for one line.
    fn band_row(&mut self, text: &str, weight: Weight, indent: f32, fill: Option<(f32, f32, f32)>) {
        let bold = weight == Weight::Bold;
        let fs = self.fs();
        let h = self.row_height(1);
        let width: f32 = self.widths.as_ref().map(|w| w.iter().sum()).unwrap_or_else(|| self.body_width());
        let width = if width > 0.0 { width } else { self.body_width() };
        let (left, ph) = (self.g.page.left, self.g.page.height);
        let (pad, px) = (self.g.pad, self.g.px);
        let font = if bold { &mut self.bold } else { &mut self.regular };
        let shown = fit(font, text, width - 2.0 * px - indent, fs);
        let (asc, _) = font.metrics(fs);
        let mut bytes = Vec::new();
        font.encode(&shown, &mut bytes);
        let page = self.open.as_mut().expect("a page is open");
        if let Some((r, g, b)) = fill {
            page.content.set_fill_rgb(r, g, b).rect(left, ph - page.y - h, width, h).fill_nonzero().set_fill_gray(0.0);
        }
        page.content.begin_text();
        if page.font != Some((weight, fs)) {
            page.content.set_font(Name(if bold { b"F2" } else { b"F1" }), fs);
            page.font = Some((weight, fs));
        }
        page.content.set_text_matrix(at(left + px + indent, ph - (page.y + pad + asc))).show(Str(&bytes)).end_text();
        page.y += h;
        page.has_body = true;
    }

    /// A paragraph after the table (summary, no data): wrapped to the body width.
    fn text_block(&mut self, text: &str, weight: Weight, gray: f32, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let fs = self.fs();
        let room = self.body_width() - 2.0 * self.g.px;
        let font = if weight == Weight::Bold { &mut self.bold } else { &mut self.regular };
        let lines = wrap(font, text, room, fs);
        for line in lines {
            let h = self.row_height(1);
            self.ensure(h, out)?;
            if gray > 0.0 {
                self.open.as_mut().expect("open").content.set_fill_gray(gray);
            }
            self.band_row(&line, weight, 0.0, None);
            if gray > 0.0 {
                self.open.as_mut().expect("open").content.set_fill_gray(0.0);
            }
        }
        Ok(())
    }

    /// A thin rule across the table at the current position.
    fn rule_if(&mut self, gray: f32) {
        if !self.g.page.rules {
            return;
        }
        let width: f32 = self
            .widths
            .as_ref()
            .map(|w| w.iter().sum())
            .filter(|w: &f32| *w > 0.0)
            .unwrap_or_else(|| self.body_width());
        let (left, ph) = (self.g.page.left, self.g.page.height);
        if let Some(p) = self.open.as_mut() {
            let y = ph - p.y;
            p.content.set_stroke_gray(gray).set_line_width(0.5).move_to(left, y).line_to(left + width, y).stroke();
        }
    }

    fn new_page(&mut self) {
        self.pages += 1;
        let mut page = OpenPage {
            content: Content::new(),
            y: self.g.body_top,
            has_body: false,
            font: None,
            group_total: self.group_total,
        };
        let fs = self.fs();
        let (left, ph) = (self.g.page.left, self.g.page.height);
        if self.header.is_some() {
            let y = self.g.page.top;
            self.page_band(&mut page, Edge::Header, y);
        }
        if self.pages == 1 {
            if let Some(title) = self.meta.title.clone() {
                let size = fs * 1.6;
                let room = self.body_width();
                let shown = fit(&mut self.bold, &title, room, size);
                let (asc, desc) = self.bold.metrics(size);
                let mut bytes = Vec::new();
                self.bold.encode(&shown, &mut bytes);
                page.content
                    .begin_text()
                    .set_font(Name(b"F2"), size)
                    .set_text_matrix(at(left, ph - (page.y + asc)))
                    .show(Str(&bytes))
                    .end_text();
                page.font = Some((Weight::Bold, size));
                page.y += asc - desc + fs;
            }
        }
        self.open = Some(page);
        if self.meta.detail && !self.meta.columns.is_empty() && !self.table_done {
            self.measure();
            self.column_headers();
        }
        if !self.table_done {
            self.continued_headers();
        }
    }

    fn column_headers(&mut self) {
        let widths = self.widths.clone().unwrap_or_default();
        let fs = self.fs();
        let (left, ph) = (self.g.page.left, self.g.page.height);
        let (pad, px) = (self.g.pad, self.g.px);
        let h = self.row_height(1);
        let (asc, _) = self.bold.metrics(fs);
        let meta = self.meta.clone();
        let page = self.open.as_mut().expect("open");
        let total: f32 = widths.iter().sum();
        page.content.set_fill_gray(0.9).rect(left, ph - page.y - h, total, h).fill_nonzero().set_fill_gray(0.0);
        page.content.begin_text().set_font(Name(b"F2"), fs);
        page.font = Some((Weight::Bold, fs));
        let mut x = left;
        let mut bytes = Vec::new();
        for (i, c) in meta.columns.iter().enumerate() {
            let shown = fit(&mut self.bold, &c.label, widths[i] - 2.0 * px, fs);
            let tx = place(self.align[i], x, widths[i], px, || self.bold.width(&shown, fs));
            bytes.clear();
            self.bold.encode(&shown, &mut bytes);
            page.content.set_text_matrix(at(tx, ph - (page.y + pad + asc))).show(Str(&bytes));
            x += widths[i];
        }
        page.content.end_text();
        page.y += h;
        if self.g.page.rules {
            let y = ph - page.y;
            page.content.set_stroke_gray(0.35).set_line_width(0.6).move_to(left, y).line_to(left + total, y).stroke();
        }
    }

    /// The page header (at the top margin) or footer (its baseline at the bottom margin).
    fn page_band(&mut self, page: &mut OpenPage, edge: Edge, top: f32) {
        let band = match edge {
            Edge::Header => self.header.as_ref(),
            Edge::Footer => self.footer.as_ref(),
        };
        let Some(band) = band else { return };
        let meta = self.meta.clone();
        let number = if self.restart_level.is_some() { self.pages + 1 - self.group_start } else { self.pages };
        let lookup = |n: &str| match n {
            "page" => Some(Value::Int(number as i64)),
            n => meta.lookup(n, None, &[]),
        };
        let text = band.before.render(lookup);
        let total = band.total.as_ref().map(|t| (t.name, t.after_varies.then(|| t.after.render(lookup))));
        let fs = self.fs() * 0.9;
        let (left, ph) = (self.g.page.left, self.g.page.height);
        let (asc, _) = self.regular.metrics(fs);
        let baseline = ph - (top + asc);
        let mut bytes = Vec::new();
        self.regular.encode(&text, &mut bytes);
        let before_w = self.regular.width(&text, fs);
        page.content
            .set_fill_gray(0.35)
            .begin_text()
            .set_font(Name(b"F1"), fs)
            .set_text_matrix(at(left, baseline))
            .show(Str(&bytes));
        page.font = Some((Weight::Regular, fs));
        if let Some((_, Some(after))) = &total {
            // Text after `{pages}` that changes per page follows a six-digit slot.
            let slot = self.regular.width("000000", fs);
            bytes.clear();
            self.regular.encode(after, &mut bytes);
            page.content.set_text_matrix(at(left + before_w + slot, baseline)).show(Str(&bytes));
        }
        page.content.end_text();
        if let Some((name, _)) = total {
            page.content
                .save_state()
                .transform([1.0, 0.0, 0.0, 1.0, left + before_w, baseline])
                .x_object(Name(name))
                .restore_state();
        }
        page.content.set_fill_gray(0.0);
        if self.g.page.rules {
            let width = self.body_width();
            let y = match edge {
                Edge::Header => baseline - fs * 0.5,
                Edge::Footer => ph - top + fs * 0.1,
            };
            page.content.set_stroke_gray(0.75).set_line_width(0.4).move_to(left, y).line_to(left + width, y).stroke();
        }
    }

    /// Finish the open page: the page footer, then its content stream and page object
    /// leave; a full page-tree node leaves too.
    fn close_page(&mut self, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let Some(mut page) = self.open.take() else { return Ok(()) };
        if self.footer.is_some() {
            let (_, desc) = self.regular.metrics(self.fs() * 0.9);
            let top = self.g.page.height - self.g.page.bottom - self.g.line + desc;
            self.page_band(&mut page, Edge::Footer, top);
        }
        let data = deflate(&page.content.finish());
        let content_ref = self.w.alloc();
        let mut c = Chunk::new();
        c.stream(content_ref, &data).filter(Filter::FlateDecode);
        self.w.put(&c, out);
        let resources = match page.group_total {
            Some(group_total) => self.page_resources(group_total, out),
            None => self.resources,
        };
        let page_ref = self.w.alloc();
        let mut c = Chunk::new();
        c.page(page_ref)
            .parent(self.node)
            .media_box(Rect::new(0.0, 0.0, self.g.page.width, self.g.page.height))
            .contents(content_ref)
            .pair(Name(b"Resources"), resources);
        self.w.put(&c, out);
        self.node_kids.push(page_ref);
        if self.node_kids.len() == PAGES_PER_NODE {
            self.write_node(out);
            self.node = self.w.alloc();
        }
        Ok(())
    }

    fn write_node(&mut self, out: &mut Vec<u8>) {
        let mut c = Chunk::new();
        c.pages(self.node).parent(self.root).kids(self.node_kids.iter().copied()).count(self.node_kids.len() as i32);
        self.w.put(&c, out);
        self.nodes.push((self.node, self.node_kids.len()));
        self.node_kids.clear();
    }

    /// A chart after the summary: its caption, then the SVG drawn as vector graphics
    /// (a form XObject from svg2pdf), scaled to the body width.
    fn chart(&mut self, i: usize, c: &ream_core::ChartData, out: &mut Vec<u8>) -> Result<(), RenderError> {
        let svg = crate::svg::chart_svg(c, &self.meta.locale);
        let (chunk, xobject) = chart::to_xobject(&svg, &mut self.w).map_err(err)?;
        self.w.put(&chunk, out);
        let name = format!("C{i}");
        self.charts.push((name.clone(), xobject));
        let width = self.body_width().min(chart::WIDTH);
        let height = width * chart::HEIGHT / chart::WIDTH;
        let caption = self.row_height(1);
        self.ensure(caption + height + self.fs(), out)?;
        self.open.as_mut().expect("open").y += self.fs();
        self.band_row(&c.title, Weight::Bold, 0.0, None);
        let (left, ph) = (self.g.page.left, self.g.page.height);
        let page = self.open.as_mut().expect("open");
        page.content
            .save_state()
            .transform([width, 0.0, 0.0, height, left, ph - page.y - height])
            .x_object(Name(name.as_bytes()))
            .restore_state();
        page.y += height;
        Ok(())
    }

    /// The form XObject `xobject` of a page band's count (`edge` 0 the header, 1 the
    /// footer): `{pages}` (or `{group_pages}`) as `count`, and what follows it when that is
    /// the same on every page; else the number sits flush right in a six-digit slot.
    fn write_total(&mut self, edge: usize, xobject: Ref, count: usize, out: &mut Vec<u8>) {
        let meta = self.meta.clone();
        let band = if edge == 0 { &self.header } else { &self.footer };
        let Some(t) = band.as_ref().and_then(|b| b.total.as_ref()) else { return };
        let slot_name = if t.group { "group_pages" } else { "pages" };
        let mut text = t.format.apply_in(&Value::Int(count as i64), &meta.locale);
        if !t.after_varies {
            text.push_str(&t.after.render(|n| match n {
                n if n == slot_name => Some(Value::Int(count as i64)),
                n => meta.lookup(n, None, &[]),
            }));
        }
        let slot = t.after_varies;
        let fs = self.fs() * 0.9;
        let mut bytes = Vec::new();
        self.regular.encode(&text, &mut bytes);
        let tw = self.regular.width(&text, fs);
        let x = if slot { (self.regular.width("000000", fs) - tw).max(0.0) } else { 0.0 };
        let mut content = Content::new();
        content
            .set_fill_gray(0.35)
            .begin_text()
            .set_font(Name(b"F1"), fs)
            .set_text_matrix(at(x, 0.0))
            .show(Str(&bytes))
            .end_text();
        let data = content.finish();
        let mut c = Chunk::new();
        let width = self.body_width();
        c.form_xobject(xobject, &data)
            .bbox(Rect::new(0.0, -fs, width, fs * 2.0))
            .pair(Name(b"Resources"), self.resources);
        self.w.put(&c, out);
    }

    /// A page's own resources: the shared ones, with `{group_pages}` as its group's count.
    fn page_resources(&mut self, group_total: GroupTotals, out: &mut Vec<u8>) -> Ref {
        let r = self.w.alloc();
        self.write_resources(r, Some(group_total), out);
        r
    }

    /// The fonts and XObjects a page (or a count's XObject) draws with, as `r`.
    fn write_resources(&mut self, r: Ref, group_total: Option<GroupTotals>, out: &mut Vec<u8>) {
        let mut c = Chunk::new();
        let mut res = c.indirect(r).start::<Resources>();
        let mut fonts = res.fonts();
        fonts.pair(Name(b"F1"), self.regular.refs.type0);
        fonts.pair(Name(b"F2"), self.bold.refs.type0);
        fonts.finish();
        let mut xo = res.x_objects();
        for (edge, band) in [&self.header, &self.footer].into_iter().enumerate() {
            let Some(t) = band.as_ref().and_then(|b| b.total.as_ref()) else { continue };
            match (t.group, group_total.and_then(|g| g[edge])) {
                (true, Some(g)) => xo.pair(Name(t.name), g),
                (true, None) => continue,
                (false, _) => xo.pair(Name(t.name), t.xobject),
            };
        }
        for (name, r) in &self.charts {
            xo.pair(Name(name.as_bytes()), *r);
        }
        xo.finish();
        res.finish();
        self.w.put(&c, out);
    }

    fn write_trailer(&mut self, sink: &mut (dyn std::io::Write + Send)) -> Result<(), RenderError> {
        let io = |e: std::io::Error| err(format!("writing: {e}"));
        let mut out = Vec::with_capacity(256 * 1024);
        // `{pages}`: the total, and what follows it when that is the same on every page.
        let pages = self.pages;
        let meta = self.meta.clone();
        let totals: Vec<(usize, Ref)> = [&self.header, &self.footer]
            .into_iter()
            .enumerate()
            .filter_map(|(edge, b)| b.as_ref()?.total.as_ref().filter(|t| !t.group).map(|t| (edge, t.xobject)))
            .collect();
        for (edge, xobject) in totals {
            self.write_total(edge, xobject, pages, &mut out);
        }
        self.write_group_totals(pages + 1 - self.group_start, &mut out);
        self.regular.write(&mut self.w, &mut out).map_err(err)?;
        self.bold.write(&mut self.w, &mut out).map_err(err)?;
        self.write_resources(self.resources, None, &mut out);

        if !self.node_kids.is_empty() {
            self.write_node(&mut out);
        }
        let mut c = Chunk::new();
        c.pages(self.root).kids(self.nodes.iter().map(|n| n.0)).count(pages as i32);
        self.w.put(&c, &mut out);
        let mut c = Chunk::new();
        c.indirect(self.catalog).start::<Catalog>().pages(self.root);
        self.w.put(&c, &mut out);

        let mut c = Chunk::new();
        let mut info = c.indirect(self.info).start::<DocumentInfo>();
        let title = meta.title.clone().unwrap_or_else(|| meta.report.clone());
        info.title(TextStr(&title));
        info.producer(TextStr(concat!("ream ", env!("CARGO_PKG_VERSION"))));
        info.creator(TextStr("ream"));
        info.creation_date(creation_date());
        info.finish();
        self.w.put(&c, &mut out);
        sink.write_all(&out).map_err(io)?;
        self.w.trailer(self.catalog, self.info, sink).map_err(io)
    }
}

/// Now, or `SOURCE_DATE_EPOCH` (seconds) for a reproducible file.
fn creation_date() -> pdf_writer::Date {
    use chrono::{Datelike, Timelike};
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now);
    pdf_writer::Date::new(now.year().clamp(0, 9999) as u16)
        .month(now.month() as u8)
        .day(now.day() as u8)
        .hour(now.hour() as u8)
        .minute(now.minute() as u8)
        .second(now.second() as u8)
        .utc_offset_hour(0)
}

/// Widths in points: fixed and percentage columns as given, `auto` at its natural width,
/// shares splitting what is left. Extra room goes to `auto` columns (when no column
/// takes shares); a table too wide narrows its `auto` columns, then everything.
fn resolve_widths(specs: &[ColumnWidth], natural: &[f32], total: f32, min: f32) -> Vec<f32> {
    let mut w: Vec<f32> = specs
        .iter()
        .zip(natural)
        .map(|(s, n)| match s {
            ColumnWidth::Fixed(p) => *p,
            ColumnWidth::Percent(p) => total * p / 100.0,
            ColumnWidth::Fraction(_) => 0.0,
            ColumnWidth::Auto => *n,
        })
        .collect();
    let shares: f32 = specs.iter().map(|s| if let ColumnWidth::Fraction(f) = s { *f } else { 0.0 }).sum();
    let is_auto = |i: usize| specs[i] == ColumnWidth::Auto;
    let used: f32 = w.iter().sum();
    let rest = total - used;
    if shares > 0.0 {
        for (i, s) in specs.iter().enumerate() {
            if let ColumnWidth::Fraction(f) = s {
                w[i] = (rest * f / shares).max(min);
            }
        }
    } else if rest > 0.0 {
        let autos: f32 = (0..w.len()).filter(|i| is_auto(*i)).map(|i| w[i]).sum();
        if autos > 0.0 {
            for i in (0..w.len()).filter(|i| is_auto(*i)) {
                w[i] += rest * w[i] / autos;
            }
        }
    }
    let sum: f32 = w.iter().sum();
    if sum > total {
        // Narrow the auto columns (not below `min`), then scale all.
        let autos: f32 = (0..w.len()).filter(|i| is_auto(*i)).map(|i| w[i]).sum();
        let over = sum - total;
        if autos > 0.0 {
            for i in (0..w.len()).filter(|i| is_auto(*i)) {
                w[i] = (w[i] - over * w[i] / autos).max(min);
            }
        }
        let sum: f32 = w.iter().sum();
        if sum > total {
            for x in &mut w {
                *x *= total / sum;
            }
        }
    }
    w
}

/// A text matrix that moves to (x, y), rounded to 1/100 pt: finer than any printer, and
/// about a third of the page's content bytes shorter than full floats.
fn at(x: f32, y: f32) -> [f32; 6] {
    let r = |v: f32| (v * 100.0).round() / 100.0;
    [1.0, 0.0, 0.0, 1.0, r(x), r(y)]
}

/// Where text of width `tw` starts in a cell at `x`, `w` wide, padded by `px`.
fn place(align: Align, x: f32, w: f32, px: f32, mut tw: impl FnMut() -> f32) -> f32 {
    match align {
        Align::Left => x + px,
        Align::Right => x + w - px - tw(),
        Align::Center => x + (w - tw()) / 2.0,
    }
}

/// `text` if it fits in `room`, else as much as fits followed by an ellipsis.
fn fit<'a>(font: &mut Font, text: &'a str, room: f32, size: f32) -> std::borrow::Cow<'a, str> {
    if font.width(text, size) <= room {
        return text.into();
    }
    ellipsize(font, text, room, size).into()
}

fn ellipsize(font: &mut Font, text: &str, room: f32, size: f32) -> String {
    let budget = room - font.char_width('…', size);
    let mut used = 0.0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let w = font.char_width(c, size);
        if used + w > budget {
            break;
        }
        used += w;
        end = i + c.len_utf8();
    }
    let mut s = text[..end].trim_end().to_string();
    s.push('…');
    s
}

/// Break `text` into lines of at most `room`: at spaces, or inside a word longer than a
/// line; explicit line breaks are kept.
fn wrap(font: &mut Font, text: &str, room: f32, size: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut line_w = 0.0;
        for word in para.split(' ') {
            let ww = font.width(word, size);
            let space = if line.is_empty() { 0.0 } else { font.char_width(' ', size) };
            if line_w + space + ww <= room {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
                line_w += space + ww;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
            }
            // A word longer than a line is split where it reaches the edge.
            for c in word.chars() {
                let cw = font.char_width(c, size);
                if line_w + cw > room && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line_w = 0.0;
                }
                line.push(c);
                line_w += cw;
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use ream_core::OutputColumn;

    fn meta() -> Arc<ReportMeta> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let column = |field: &str, index| OutputColumn {
            field: field.into(),
            label: field.into(),
            index,
            format: ValueFormat::Raw,
            align: None,
            width: ColumnWidth::Auto,
            wrap: false,
            totals: vec![],
        };
        Arc::new(ReportMeta {
            report: "r".into(),
            title: Some("T".into()),
            parameters: vec![],
            schema,
            columns: vec![column("n", 0), column("s", 1)],
            detail: true,
            locale: Default::default(),
            groups: vec![],
            variables: vec![],
            variable_specs: vec![],
            summary: None,
            no_data: None,
            page_header: None,
            page_footer: Some(Template::parse("Page {page} of {pages}").unwrap()),
            page: PageSetup::default(),
            strategy: "cursor".into(),
        })
    }

    fn batch(meta: &ReportMeta, from: i64, n: i64) -> RecordBatch {
        let ns: Vec<i64> = (from..from + n).collect();
        let ss: Vec<String> = ns.iter().map(|i| format!("row {i}")).collect();
        RecordBatch::try_new(meta.schema.clone(), vec![Arc::new(Int64Array::from(ns)), Arc::new(StringArray::from(ss))])
            .unwrap()
    }

    #[test]
    fn pages_leave_with_the_batch_that_fills_them() {
        let meta = meta();
        let mut r = PdfRenderer::default();
        let mut out = Vec::new();
        r.push(&Event::Begin(meta.clone()), &mut out).unwrap();
        let pages = |b: &[u8]| b.windows(12).filter(|w| w == b"/Type /Page\n").count();
        let mut total = 0;
        for i in 0..20 {
            let mut chunk = Vec::new();
            r.push(&Event::Rows(batch(&meta, i * 1000, 1000)), &mut chunk).unwrap();
            // A batch of 1,000 rows completes about 16 pages, and they are in its output.
            let n = pages(&chunk);
            assert!((14..=18).contains(&n), "batch {i}: {n} pages");
            total += n;
            out.extend_from_slice(&chunk);
        }
        let mut end = Vec::new();
        r.push(&Event::End { variables: Arc::from(vec![]), rows: 20_000, charts: Arc::from(vec![]) }, &mut end)
            .unwrap();
        Renderer::finish(&mut r, &mut end).unwrap();
        assert!(pages(&end) <= 1, "only the last page waits for the end");
        total += pages(&end);
        out.extend_from_slice(&end);
        assert!(out.starts_with(b"%PDF-1.7") && out.ends_with(b"%%EOF\n"));
        let count = format!("/Count {total}");
        assert!(out.windows(count.len()).any(|w| w == count.as_bytes()), "the root counts {total} pages");
    }

    #[test]
    fn widths_share_the_table() {
        let auto = ColumnWidth::Auto;
        // Autos widen in proportion to fill the table.
        let w = resolve_widths(&[auto, auto], &[100.0, 50.0], 300.0, 10.0);
        assert_eq!(w, vec![200.0, 100.0]);
        // Fixed and percentage as given; shares split the rest.
        let w = resolve_widths(
            &[
                ColumnWidth::Fixed(100.0),
                ColumnWidth::Percent(20.0),
                ColumnWidth::Fraction(1.0),
                ColumnWidth::Fraction(3.0),
            ],
            &[0.0; 4],
            500.0,
            10.0,
        );
        assert_eq!(w, vec![100.0, 100.0, 75.0, 225.0]);
        // Too wide: the autos give way first.
        let w = resolve_widths(&[ColumnWidth::Fixed(100.0), auto], &[0.0, 400.0], 300.0, 10.0);
        assert_eq!(w, vec![100.0, 200.0]);
    }
}
