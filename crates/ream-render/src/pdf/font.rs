//! Text in an embedded TrueType font: widths for layout, glyph codes for content
//! streams, and the subset written at the end from the glyphs that were used.
//!
//! Glyphs are numbered in the order of first use (`subsetter`'s remapper), so a page
//! can be written before the subset exists: the code of a glyph never changes. The
//! font is a CID font with `Identity-H` (two bytes per glyph) and a ToUnicode map, so
//! text can be copied and extracted.

use std::collections::HashMap;
use std::sync::Arc;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Chunk, Filter, Name, Rect, Ref, Str};
use subsetter::GlyphRemapper;

use super::writer::ObjWriter;

#[derive(Clone, Copy, Default)]
struct Glyph {
    gid: u16,
    advance: u16,
    /// The glyph's code in the subset, once used.
    code: Option<u16>,
}

pub(crate) struct Font {
    /// The font file. Its `Face` is parsed again when a character is first seen (the
    /// face borrows the data), which is cheap next to the cache it fills.
    data: Arc<[u8]>,
    /// PostScript name, as in the font.
    name: String,
    units: f32,
    ascender: f32,
    descender: f32,
    cap_height: f32,
    bbox: [f32; 4],
    ascii: [Glyph; 128],
    other: HashMap<char, Glyph>,
    remapper: GlyphRemapper,
    /// By code: the character it came from (for ToUnicode) and its advance.
    used: Vec<(char, u16)>,
    /// The objects the font is written to at the end.
    pub refs: FontRefs,
}

#[derive(Clone, Copy)]
pub(crate) struct FontRefs {
    pub type0: Ref,
    cid: Ref,
    descriptor: Ref,
    file: Ref,
    to_unicode: Ref,
}

/// What is drawn for a character: layout whitespace as a space, other control
/// characters as U+FFFD (so something shows that a value held one).
fn shown(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => ' ',
        c if c.is_control() => '\u{FFFD}',
        c => c,
    }
}

impl Font {
    pub fn new(data: Arc<[u8]>, w: &mut ObjWriter) -> Result<Font, String> {
        let face = ttf_parser::Face::parse(&data, 0).map_err(|e| format!("font: {e}"))?;
        let name = face
            .names()
            .into_iter()
            .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
            .and_then(|n| {
                n.to_string().or_else(|| n.name.is_ascii().then(|| String::from_utf8_lossy(n.name).into_owned()))
            })
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "Font".into());
        let b = face.global_bounding_box();
        let notdef = face.glyph_hor_advance(ttf_parser::GlyphId(0)).unwrap_or(0);
        let mut font = Font {
            data: data.clone(),
            units: face.units_per_em() as f32,
            ascender: face.ascender() as f32,
            descender: face.descender() as f32,
            cap_height: face.capital_height().unwrap_or(face.ascender()) as f32,
            bbox: [b.x_min as f32, b.y_min as f32, b.x_max as f32, b.y_max as f32],
            name,
            ascii: [Glyph::default(); 128],
            other: HashMap::new(),
            remapper: GlyphRemapper::new(),
            used: Vec::new(),
            refs: FontRefs {
                type0: w.alloc(),
                cid: w.alloc(),
                descriptor: w.alloc(),
                file: w.alloc(),
                to_unicode: w.alloc(),
            },
        };
        for c in 0..128u8 {
            font.ascii[c as usize] = lookup(&face, shown(c as char));
        }
        // Code 0 is .notdef, always in the subset.
        font.remapper.remap(0);
        font.used.push(('\u{FFFD}', notdef));
        Ok(font)
    }

    fn lookup(&self, c: char) -> Glyph {
        match ttf_parser::Face::parse(&self.data, 0) {
            Ok(face) => lookup(&face, c),
            Err(_) => Glyph::default(),
        }
    }

    fn glyph(&mut self, c: char) -> &mut Glyph {
        if (c as u32) < 128 {
            return &mut self.ascii[c as usize];
        }
        let c = shown(c);
        if !self.other.contains_key(&c) {
            let g = self.lookup(c);
            self.other.insert(c, g);
        }
        self.other.get_mut(&c).expect("inserted")
    }

    /// The width of `text` at `size` points.
    pub fn width(&mut self, text: &str, size: f32) -> f32 {
        let mut units = 0u32;
        for c in text.chars() {
            units += self.glyph(c).advance as u32;
        }
        units as f32 * size / self.units
    }

    /// The width of one character at `size`.
    pub fn char_width(&mut self, c: char, size: f32) -> f32 {
        self.glyph(c).advance as f32 * size / self.units
    }

    /// Append the glyph codes of `text` (two bytes each), adding its glyphs to the subset.
    pub fn encode(&mut self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            let g = *self.glyph(c);
            let code = match g.code {
                Some(code) => code,
                None => {
                    let code = self.remapper.remap(g.gid);
                    if code as usize == self.used.len() {
                        self.used.push((shown(c), g.advance));
                    }
                    self.glyph(c).code = Some(code);
                    code
                }
            };
            out.extend_from_slice(&code.to_be_bytes());
        }
    }

    /// The font's vertical metrics at `size`: ascent and descent (negative).
    pub fn metrics(&self, size: f32) -> (f32, f32) {
        let k = size / self.units;
        (self.ascender * k, self.descender * k)
    }

    /// Write the subset and the objects that describe it.
    pub fn write(&self, w: &mut ObjWriter, out: &mut Vec<u8>) -> Result<(), String> {
        let subset = subsetter::subset(&self.data, 0, &self.remapper).map_err(|e| format!("font subset: {e}"))?;
        // A subset's name carries a tag of six capitals, here derived from its glyphs so
        // the same report gives the same file.
        let mut h: u64 = 0xcbf29ce484222325;
        for g in self.remapper.remapped_gids() {
            h = (h ^ g as u64).wrapping_mul(0x100000001b3);
        }
        let tag: String = (0..6).map(|i| (b'A' + ((h >> (i * 5)) % 26) as u8) as char).collect();
        let base = format!("{tag}+{}", self.name);
        let base = Name(base.as_bytes());
        let k = 1000.0 / self.units;
        let info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };

        let mut c = Chunk::new();
        c.type0_font(self.refs.type0)
            .base_font(base)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(self.refs.cid)
            .to_unicode(self.refs.to_unicode);
        w.put(&c, out);

        let mut c = Chunk::new();
        let mut cid = c.cid_font(self.refs.cid);
        cid.subtype(CidFontType::Type2)
            .base_font(base)
            .system_info(info)
            .font_descriptor(self.refs.descriptor)
            .default_width(0.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        cid.widths().consecutive(0, self.used.iter().map(|(_, adv)| *adv as f32 * k));
        drop(cid);
        w.put(&c, out);

        let [x0, y0, x1, y1] = self.bbox;
        let mut c = Chunk::new();
        c.font_descriptor(self.refs.descriptor)
            .name(base)
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(x0 * k, y0 * k, x1 * k, y1 * k))
            .italic_angle(0.0)
            .ascent(self.ascender * k)
            .descent(self.descender * k)
            .cap_height(self.cap_height * k)
            .stem_v(80.0)
            .font_file2(self.refs.file);
        w.put(&c, out);

        let mut c = Chunk::new();
        let packed = super::deflate(&subset);
        c.stream(self.refs.file, &packed).filter(Filter::FlateDecode).pair(Name(b"Length1"), subset.len() as i32);
        w.put(&c, out);

        let mut cmap = pdf_writer::types::UnicodeCmap::new(Name(b"ream-UTF16"), info);
        for (code, (ch, _)) in self.used.iter().enumerate().skip(1) {
            cmap.pair(code as u16, *ch);
        }
        let mut c = Chunk::new();
        c.cmap(self.refs.to_unicode, &cmap.finish());
        w.put(&c, out);
        Ok(())
    }
}

fn lookup(face: &ttf_parser::Face, c: char) -> Glyph {
    let gid = face.glyph_index(c).map(|g| g.0).unwrap_or(0);
    let advance = face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0);
    Glyph { gid, advance, code: None }
}
