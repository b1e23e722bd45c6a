//! The XLSX package: a zip written as a stream (each entry deflated as its bytes arrive,
//! sizes in data descriptors), the workbook's fixed parts and its style sheet.

use std::io::Write;

use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::xml_attr;
use crate::pipe::Pipe;
use crate::RenderError;

pub(super) const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
pub(super) const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";

pub(super) fn zip_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Encode { format: super::FORMAT, message: format!("writing the workbook: {e}") }
}

/// The zip container, streamed: no temporary files, nothing seeks back.
pub(super) struct Package {
    zip: Option<ZipWriter<StreamWriter<Pipe>>>,
    pipe: Pipe,
    time: zip::DateTime,
    level: i64,
    /// Entry bytes not yet compressed. The compressor gets them in blocks of exactly
    /// `BLOCK` bytes: deflate's output depends on how its input is split, and the split
    /// must not follow the batches (batch sizes 1, 7 and 1000 gave files a byte apart).
    pending: Vec<u8>,
}

const BLOCK: usize = 64 * 1024;

impl Package {
    pub fn new(created: chrono::NaiveDateTime, level: i64) -> Package {
        use chrono::{Datelike, Timelike};
        let pipe = Pipe::default();
        let time = zip::DateTime::from_date_and_time(
            created.year().clamp(1980, 2107) as u16,
            created.month() as u8,
            created.day() as u8,
            created.hour() as u8,
            created.minute() as u8,
            created.second() as u8,
        )
        .unwrap_or_default();
        Package { zip: Some(ZipWriter::new_stream(pipe.clone())), pipe, time, level, pending: Vec::new() }
    }

    fn zip(&mut self) -> Result<&mut ZipWriter<StreamWriter<Pipe>>, RenderError> {
        self.zip.as_mut().ok_or_else(|| zip_err("the workbook is already finished"))
    }

    /// Start the next entry. `large` adds ZIP64 sizes, needed past 4 GiB uncompressed;
    /// it is only set when an entry may get there, as some readers dislike ZIP64 on
    /// small entries.
    pub fn start(&mut self, name: &str, large: bool) -> Result<(), RenderError> {
        self.flush_pending()?;
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(self.level))
            .last_modified_time(self.time)
            .large_file(large);
        self.zip()?.start_file(name, opts).map_err(zip_err)
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RenderError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= BLOCK {
            let whole = self.pending.len() / BLOCK * BLOCK;
            let zip = self.zip.as_mut().ok_or_else(|| zip_err("the workbook is already finished"))?;
            for block in self.pending[..whole].chunks(BLOCK) {
                zip.write_all(block).map_err(zip_err)?;
            }
            self.pending.drain(..whole);
        }
        Ok(())
    }

    /// Compress what the current entry still holds back.
    fn flush_pending(&mut self) -> Result<(), RenderError> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.zip()?.write_all(&pending).map_err(zip_err)?;
        }
        Ok(())
    }

    /// One whole (small) entry.
    pub fn entry(&mut self, name: &str, bytes: &[u8]) -> Result<(), RenderError> {
        self.start(name, false)?;
        self.write(bytes)
    }

    /// Compress everything given so far and flush the compressor (a sync point), then
    /// move the bytes to `out`.
    pub fn sync(&mut self, out: &mut Vec<u8>) -> Result<(), RenderError> {
        self.flush_pending()?;
        self.zip()?.flush().map_err(zip_err)?;
        self.drain(out);
        Ok(())
    }

    /// Move what the zip has written so far to `out`.
    pub fn drain(&self, out: &mut Vec<u8>) {
        self.pipe.drain_into(out);
    }

    /// The central directory.
    pub fn finish(&mut self) -> Result<(), RenderError> {
        self.flush_pending()?;
        let zip = self.zip.take().ok_or_else(|| zip_err("the workbook is already finished"))?;
        zip.finish().map_err(zip_err)?;
        Ok(())
    }
}

/// `[Content_Types].xml`. Every `.xml` part defaults to a worksheet, so this can be
/// written first, before the number of sheets is known.
pub(super) fn content_types() -> String {
    let mut s = String::from(XML_DECL);
    s.push_str("<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">");
    s.push_str(
        "<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>",
    );
    s.push_str("<Default Extension=\"xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>");
    for (part, ct) in [
        ("/xl/workbook.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"),
        ("/xl/styles.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"),
        ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
        ("/docProps/app.xml", "application/vnd.openxmlformats-officedocument.extended-properties+xml"),
    ] {
        s.push_str(&format!("<Override PartName=\"{part}\" ContentType=\"{ct}\"/>"));
    }
    s.push_str("</Types>");
    s
}

/// `_rels/.rels`: the workbook and the document properties.
pub(super) fn root_rels() -> String {
    format!(
        "{XML_DECL}<Relationships xmlns=\"{PKG_REL_NS}\">\
         <Relationship Id=\"rId1\" Type=\"{REL_NS}/officeDocument\" Target=\"xl/workbook.xml\"/>\
         <Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>\
         <Relationship Id=\"rId3\" Type=\"{REL_NS}/extended-properties\" Target=\"docProps/app.xml\"/>\
         </Relationships>"
    )
}

/// A finished sheet, as the workbook lists it.
pub(super) struct SheetEntry {
    pub name: String,
    /// The autofilter's range, as `$A$3:$P$1000`.
    pub filter: Option<String>,
}

/// `xl/workbook.xml` (the sheets in order, their autofilter ranges) and its relationships.
pub(super) fn workbook(sheets: &[SheetEntry]) -> (String, String) {
    let mut wb = format!(
        "{XML_DECL}<workbook xmlns=\"{MAIN_NS}\" xmlns:r=\"{REL_NS}\">\
         <workbookPr/><bookViews><workbookView xWindow=\"240\" yWindow=\"15\" windowWidth=\"16095\" windowHeight=\"9660\"/></bookViews><sheets>"
    );
    let mut rels = format!("{XML_DECL}<Relationships xmlns=\"{PKG_REL_NS}\">");
    for (i, s) in sheets.iter().enumerate() {
        let n = i + 1;
        wb.push_str(&format!("<sheet name=\"{}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>", xml_attr(&s.name)));
        rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"{REL_NS}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    wb.push_str("</sheets>");
    if sheets.iter().any(|s| s.filter.is_some()) {
        wb.push_str("<definedNames>");
        for (i, s) in sheets.iter().enumerate() {
            if let Some(range) = &s.filter {
                let name = s.name.replace('\'', "''");
                wb.push_str(&format!(
                    "<definedName name=\"_xlnm._FilterDatabase\" localSheetId=\"{i}\" hidden=\"1\">{}</definedName>",
                    xml_attr(&format!("'{name}'!{range}"))
                ));
            }
        }
        wb.push_str("</definedNames>");
    }
    wb.push_str("<calcPr calcId=\"124519\" fullCalcOnLoad=\"1\"/></workbook>");
    rels.push_str(&format!(
        "<Relationship Id=\"rId{}\" Type=\"{REL_NS}/styles\" Target=\"styles.xml\"/></Relationships>",
        sheets.len() + 1
    ));
    (wb, rels)
}

/// `docProps/core.xml` (title, creation date) and `docProps/app.xml`.
pub(super) fn doc_props(title: &str, created: chrono::NaiveDateTime) -> (String, String) {
    let when = created.format("%Y-%m-%dT%H:%M:%SZ");
    let core = format!(
        "{XML_DECL}<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:dcmitype=\"http://purl.org/dc/dcmitype/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <dc:title>{}</dc:title><dc:creator>ream</dc:creator>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">{when}</dcterms:created>\
         <dcterms:modified xsi:type=\"dcterms:W3CDTF\">{when}</dcterms:modified></cp:coreProperties>",
        xml_attr(title)
    );
    let app = format!(
        "{XML_DECL}<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\">\
         <Application>ream</Application></Properties>"
    );
    (core, app)
}

/// The fonts a cell can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Font {
    Regular = 0,
    Bold = 1,
    Title = 2,
}

/// The workbook's cell formats: each distinct (number format, font) pair is one `xf`,
/// referred to by index from the cells' `s` attribute.
pub(super) struct Styles {
    num_fmts: Vec<String>,
    xfs: Vec<(u32, Font)>,
}

/// The first id Excel leaves to custom number formats.
const FIRST_CUSTOM_FMT: u32 = 164;

impl Styles {
    pub fn new() -> Styles {
        Styles { num_fmts: Vec::new(), xfs: vec![(0, Font::Regular)] }
    }

    /// The style index for a number format (`None`: General) and a font.
    pub fn xf(&mut self, code: Option<&str>, font: Font) -> u32 {
        let fmt = match code {
            None => 0,
            Some(code) => {
                let i = match self.num_fmts.iter().position(|c| c == code) {
                    Some(i) => i,
                    None => {
                        self.num_fmts.push(code.to_string());
                        self.num_fmts.len() - 1
                    }
                };
                FIRST_CUSTOM_FMT + i as u32
            }
        };
        match self.xfs.iter().position(|x| *x == (fmt, font)) {
            Some(i) => i as u32,
            None => {
                self.xfs.push((fmt, font));
                (self.xfs.len() - 1) as u32
            }
        }
    }

    /// `xl/styles.xml`.
    pub fn xml(&self) -> String {
        let mut s = format!("{XML_DECL}<styleSheet xmlns=\"{MAIN_NS}\">");
        if !self.num_fmts.is_empty() {
            s.push_str(&format!("<numFmts count=\"{}\">", self.num_fmts.len()));
            for (i, code) in self.num_fmts.iter().enumerate() {
                s.push_str(&format!(
                    "<numFmt numFmtId=\"{}\" formatCode=\"{}\"/>",
                    FIRST_CUSTOM_FMT + i as u32,
                    xml_attr(code)
                ));
            }
            s.push_str("</numFmts>");
        }
        s.push_str(
            "<fonts count=\"3\">\
             <font><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font>\
             <font><b/><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font>\
             <font><b/><sz val=\"14\"/><name val=\"Calibri\"/><family val=\"2\"/></font></fonts>\
             <fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill><fill><patternFill patternType=\"gray125\"/></fill></fills>\
             <borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
             <cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>",
        );
        s.push_str(&format!("<cellXfs count=\"{}\">", self.xfs.len()));
        for (fmt, font) in &self.xfs {
            let font = *font as u32;
            s.push_str(&format!("<xf numFmtId=\"{fmt}\" fontId=\"{font}\" fillId=\"0\" borderId=\"0\" xfId=\"0\""));
            if *fmt != 0 {
                s.push_str(" applyNumberFormat=\"1\"");
            }
            if font != 0 {
                s.push_str(" applyFont=\"1\"");
            }
            s.push_str("/>");
        }
        s.push_str(
            "</cellXfs><cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/></cellStyles>\
             <dxfs count=\"0\"/><tableStyles count=\"0\" defaultTableStyle=\"TableStyleMedium9\" defaultPivotStyle=\"PivotStyleLight16\"/></styleSheet>",
        );
        s
    }
}
