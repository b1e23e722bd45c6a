//! A chart's SVG (the same one HTML shows) as a PDF form XObject, through svg2pdf: paths
//! stay vectors and labels stay text, set in the same DejaVu font as the report.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use pdf_writer::{Chunk, Ref};
use svg2pdf::usvg;

use super::writer::ObjWriter;

/// The SVG's size (user units), and so the chart's aspect.
pub(crate) const WIDTH: f32 = 720.0;
pub(crate) const HEIGHT: f32 = 360.0;

fn options() -> &'static usvg::Options<'static> {
    static OPTIONS: OnceLock<usvg::Options<'static>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans_condensed::regular().to_vec());
        db.load_font_data(dejavu::sans_condensed::bold().to_vec());
        usvg::Options { font_family: "DejaVu Sans".into(), fontdb: Arc::new(db), ..Default::default() }
    })
}

/// The chart's objects, numbered in `w`'s sequence, and the XObject to draw (1 × 1
/// units: scale it to the size wanted).
pub(crate) fn to_xobject(svg: &str, w: &mut ObjWriter) -> Result<(Chunk, Ref), String> {
    let tree = usvg::Tree::from_str(svg, options()).map_err(|e| format!("chart: {e}"))?;
    let (chunk, xobject) =
        svg2pdf::to_chunk(&tree, svg2pdf::ConversionOptions::default()).map_err(|e| format!("chart: {e}"))?;
    let mut map: HashMap<Ref, Ref> = HashMap::new();
    let chunk = chunk.renumber(|r| *map.entry(r).or_insert_with(|| w.alloc()));
    let xobject = map.get(&xobject).copied().ok_or("chart: svg2pdf returned no XObject")?;
    Ok((chunk, xobject))
}
