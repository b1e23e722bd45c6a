//! The one escaper for markup: HTML text and attribute values, SVG and the service's
//! dashboard. (SpreadsheetML text has Excel's own escapes as well: `xlsx/cells.rs`.)

/// Escape text for HTML/XML content and attribute values (double or single quoted).
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            // Control characters are not allowed in HTML text: show that something was there.
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// [`escape`] into a new string.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(s, &mut out);
    out
}
