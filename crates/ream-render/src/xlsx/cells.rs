//! Cells as SpreadsheetML: `<c r="B7" s="3"><v>12.5</v></c>`, text inline
//! (`t="inlineStr"`), so no shared-string table has to be held until the end.

/// Bytes of a text that need more than a copy: XML's specials, `_` (Excel's `_xHHHH_`
/// escapes), control characters and the lead byte of U+FFFE/U+FFFF.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = i != 0x09 && i != 0x0A;
        i += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'_' as usize] = true;
    t[0xEF] = true;
    t
};

/// Append `s` as SpreadsheetML text content: XML-escaped, and with the control
/// characters XML cannot carry written the way Excel does (`_x0007_`); a literal
/// `_x0041_` in the data keeps its meaning by escaping its underscore (`_x005F_x0041_`).
/// Excel and LibreOffice decode these escapes; calamine and openpyxl show them as written.
pub(super) fn escape_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|b| SPECIAL[*b as usize]) {
        out.extend_from_slice(bytes);
        return;
    }
    for (i, c) in s.char_indices() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '_' if looks_escaped(&bytes[i..]) => out.extend_from_slice(b"_x005F_"),
            '\t' | '\n' => out.push(c as u8),
            // A character reference, as XML parsers turn a raw CR (and CR LF) into LF.
            '\r' => out.extend_from_slice(b"&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.extend_from_slice(format!("_x{:04X}_", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Whether `b` starts with `_xHHHH_`.
fn looks_escaped(b: &[u8]) -> bool {
    b.len() >= 7 && b[1] == b'x' && b[2..6].iter().all(u8::is_ascii_hexdigit) && b[6] == b'_'
}

/// A text cell. `pre` is the cell's opening up to its reference (`<c r="B`), `row` the
/// row number's digits, `style` the ` s="N"` attribute or empty.
pub(super) fn text_cell(out: &mut Vec<u8>, pre: &[u8], row: &[u8], style: &[u8], s: &str) {
    out.extend_from_slice(pre);
    out.extend_from_slice(row);
    out.push(b'"');
    out.extend_from_slice(style);
    let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t' | b'\n' | b'\r'));
    if edge_space(s.as_bytes().first()) || edge_space(s.as_bytes().last()) {
        out.extend_from_slice(b" t=\"inlineStr\"><is><t xml:space=\"preserve\">");
    } else {
        out.extend_from_slice(b" t=\"inlineStr\"><is><t>");
    }
    escape_text(out, s);
    out.extend_from_slice(b"</t></is></c>");
}

/// A number cell whose value is already written as digits by `value`.
#[inline]
pub(super) fn number_cell(out: &mut Vec<u8>, pre: &[u8], row: &[u8], style: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(pre);
    out.extend_from_slice(row);
    out.push(b'"');
    out.extend_from_slice(style);
    out.extend_from_slice(b"><v>");
    value(out);
    out.extend_from_slice(b"</v></c>");
}

pub(super) fn bool_cell(out: &mut Vec<u8>, pre: &[u8], row: &[u8], style: &[u8], b: bool) {
    out.extend_from_slice(pre);
    out.extend_from_slice(row);
    out.push(b'"');
    out.extend_from_slice(style);
    out.extend_from_slice(if b { b" t=\"b\"><v>1</v></c>" } else { b" t=\"b\"><v>0</v></c>" });
}

/// An integer, exactly.
#[inline]
pub(super) fn int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A finite float, shortest round-trip form; whole numbers without a fraction.
#[inline]
pub(super) fn float(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        int(out, v as i64);
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

pub(super) use crate::csv_rows::decimal;

/// `A`, `B`, … `Z`, `AA`, … for a 0-based column.
pub(super) fn column_letters(mut col: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        escape_text(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_escaped_the_way_excel_reads_it() {
        assert_eq!(esc("plain text, ünïcødé"), "plain text, ünïcødé");
        assert_eq!(esc("a<b & c>d"), "a&lt;b &amp; c&gt;d");
        assert_eq!(esc("bell\u{7} tab\t nl\n cr\r"), "bell_x0007_ tab\t nl\n cr&#13;");
        assert_eq!(esc("_x0041_ stays literal"), "_x005F_x0041_ stays literal");
        assert_eq!(esc("snake_case_x"), "snake_case_x");
        assert_eq!(esc("\u{FFFF}\u{FFFE}"), "_xFFFF__xFFFE_");
    }

    #[test]
    fn decimals_are_written_as_the_core_formats_them() {
        for (units, scale) in [(12345, 2), (-5, 2), (-12345, 2), (0, 3), (7, 0), (42, -2), (-1, 1), (i128::MIN + 1, 10)]
        {
            let mut out = Vec::new();
            decimal(&mut out, units, scale);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                ream_core::value::format_decimal(units, scale),
                "{units}e-{scale}"
            );
        }
    }

    #[test]
    fn columns_are_lettered_like_excel() {
        let names: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702, 16383].into_iter().map(column_letters).collect();
        assert_eq!(names, ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA", "XFD"]);
    }

    #[test]
    fn numbers_are_written_exactly_and_short() {
        let f = |v: f64| {
            let mut out = Vec::new();
            float(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(f(3.0), "3");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1e20).parse::<f64>().unwrap(), 1e20);
        assert_eq!(f(45292.5), "45292.5");
    }
}
