//! Page setup for paged outputs (PDF): the `page:` block of a spec and the columns'
//! `width`, resolved to points (1/72 in). Parsing lives here so that `ream validate`
//! reports a bad length with its place in the spec, before any run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A length as written in a spec: a number of points, or text with a unit
/// (`12mm`, `1.5cm`, `0.5in`, `36pt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LengthValue {
    Points(f64),
    Text(String),
}

impl LengthValue {
    pub fn points(&self) -> Result<f32, String> {
        match self {
            LengthValue::Points(p) => positive(*p, &p.to_string()),
            LengthValue::Text(t) => parse_length(t),
        }
    }
}

fn positive(p: f64, written: &str) -> Result<f32, String> {
    if p.is_finite() && (0.0..=14_400.0).contains(&p) {
        Ok(p as f32)
    } else {
        Err(format!("`{written}` is not a length from 0 to 200in"))
    }
}

/// `12mm`, `1.5cm`, `0.5in`, `36pt` or a bare number of points.
pub fn parse_length(s: &str) -> Result<f32, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "pt" => 1.0,
        "mm" => 72.0 / 25.4,
        "cm" => 72.0 / 2.54,
        "in" => 72.0,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use mm, cm, in or pt)")),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a length like `12mm`, `0.5in` or `36pt`"))?;
    positive(n * factor, s)
}

/// Portrait or landscape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    #[default]
    Portrait,
    Landscape,
}

/// Margins: one length for every side, or each side (missing sides take the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MarginConfig {
    All(LengthValue),
    Sides {
        #[serde(default)]
        top: Option<LengthValue>,
        #[serde(default)]
        right: Option<LengthValue>,
        #[serde(default)]
        bottom: Option<LengthValue>,
        #[serde(default)]
        left: Option<LengthValue>,
    },
}

/// The `page:` block: how paged outputs (PDF) lay out their pages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PageConfig {
    /// `A3`, `A4` (default), `A5`, `Letter`, `Legal`, `Tabloid`, or `WIDTH x HEIGHT`
    /// with units (`210mm x 297mm`, `8.5in x 11in`).
    #[serde(default)]
    pub size: Option<String>,
    /// `portrait` (default) or `landscape` (swaps width and height).
    #[serde(default)]
    pub orientation: Option<Orientation>,
    /// One length for every side (default `12mm`), or `{top, right, bottom, left}`.
    #[serde(default)]
    pub margin: Option<MarginConfig>,
    /// The base font size in points (default 8): detail rows and bands; the title is
    /// 1.6 times larger.
    #[serde(default)]
    pub font_size: Option<f64>,
    /// Shade every other detail row.
    #[serde(default)]
    pub zebra: bool,
    /// Thin rules under the column headers, above group footers and above the summary
    /// (default `true`).
    #[serde(default)]
    pub rules: Option<bool>,
    /// A TrueType font file (`.ttf`) for the text instead of the built-in DejaVu Sans
    /// Condensed, e.g. for Chinese, Japanese or Korean; relative to the spec file.
    #[serde(default)]
    pub font: Option<String>,
    /// Its bold face (headers, bands); default: `font` itself.
    #[serde(default)]
    pub font_bold: Option<String>,
    /// A group name: each of its groups starts on a new page and numbers its own pages,
    /// so `{page}` counts from 1 in each group and `{group_pages}` is the group's count
    /// (a customer statement's "page 2 of 3").
    #[serde(default)]
    pub restart_at: Option<String>,
}

/// Font files a spec names (`page.font`, `page.font_bold`), read by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct UserFonts {
    pub regular: std::sync::Arc<[u8]>,
    pub bold: std::sync::Arc<[u8]>,
}

/// A resolved page setup, in points.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSetup {
    pub width: f32,
    pub height: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
    pub left: f32,
    pub font_size: f32,
    pub zebra: bool,
    pub rules: bool,
    /// The spec's own fonts, when it names any (filled in by the engine, which reads files).
    pub fonts: Option<UserFonts>,
    /// The group whose groups number their own pages (`page.restart_at`).
    pub restart_at: Option<String>,
}

const DEFAULT_MARGIN: f32 = 12.0 * 72.0 / 25.4;

impl Default for PageSetup {
    fn default() -> Self {
        PageConfig::default().resolve().expect("the defaults are valid")
    }
}

/// Named sizes, portrait, in points.
const SIZES: &[(&str, f32, f32)] = &[
    ("A3", 841.89, 1190.55),
    ("A4", 595.28, 841.89),
    ("A5", 419.53, 595.28),
    ("Letter", 612.0, 792.0),
    ("Legal", 612.0, 1008.0),
    ("Tabloid", 792.0, 1224.0),
];

impl PageConfig {
    /// The setup in points; every problem as (key under `page`, message).
    pub fn resolve(&self) -> Result<PageSetup, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let (mut width, mut height) = match self.size.as_deref().map(str::trim) {
            None => (595.28, 841.89),
            Some(s) => match SIZES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(s)) {
                Some((_, w, h)) => (*w, *h),
                None => match s.split_once(['x', 'X', '×']).map(|(w, h)| (parse_length(w), parse_length(h))) {
                    Some((Ok(w), Ok(h))) if w >= 72.0 && h >= 72.0 => (w, h),
                    _ => {
                        let names: Vec<_> = SIZES.iter().map(|s| s.0).collect();
                        errs.push((
                            "size".into(),
                            format!(
                                "`{s}` is not a page size: use {} or `WIDTH x HEIGHT` (`210mm x 297mm`, at least 1in each){}",
                                names.join(", "),
                                crate::suggest::hint(s, names.iter().copied())
                            ),
                        ));
                        (595.28, 841.89)
                    }
                },
            },
        };
        if self.orientation == Some(Orientation::Landscape) {
            std::mem::swap(&mut width, &mut height);
        }
        let mut side = |key: &str, v: &Option<LengthValue>| match v.as_ref().map(LengthValue::points) {
            None => DEFAULT_MARGIN,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                errs.push((key.to_string(), e));
                DEFAULT_MARGIN
            }
        };
        let [top, right, bottom, left] = match &self.margin {
            None => [DEFAULT_MARGIN; 4],
            Some(MarginConfig::All(l)) => [side("margin", &Some(l.clone())); 4],
            Some(MarginConfig::Sides { top, right, bottom, left }) => [
                side("margin.top", top),
                side("margin.right", right),
                side("margin.bottom", bottom),
                side("margin.left", left),
            ],
        };
        let font_size = match self.font_size {
            None => 8.0,
            Some(f) if f.is_finite() && (4.0..=72.0).contains(&f) => f as f32,
            Some(f) => {
                errs.push(("font_size".into(), format!("{f} is not a font size from 4 to 72 points")));
                8.0
            }
        };
        // The body must hold the bands of one page: page header and footer, column
        // headers and a few rows.
        if errs.is_empty() && (width - left - right < 72.0 || height - top - bottom < font_size * 12.0) {
            errs.push((
                "margin".into(),
                format!(
                    "the margins leave {:.0} x {:.0} pt of a {:.0} x {:.0} pt page: too little for a report",
                    width - left - right,
                    height - top - bottom,
                    width,
                    height
                ),
            ));
        }
        if self.font.is_none() && self.font_bold.is_some() {
            errs.push(("font_bold".into(), "needs `font` (the regular face) too".into()));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(PageSetup {
            width,
            height,
            top,
            right,
            bottom,
            left,
            font_size,
            zebra: self.zebra,
            rules: self.rules.unwrap_or(true),
            fonts: None,
            restart_at: self.restart_at.clone(),
        })
    }
}

/// How wide a column is on the page.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum ColumnWidth {
    /// From the header and the first page's values.
    #[default]
    Auto,
    /// A fixed length, in points.
    Fixed(f32),
    /// A share of the table's width (0–100).
    Percent(f32),
    /// Shares (`2fr`) of what the other columns leave.
    Fraction(f32),
}

impl ColumnWidth {
    /// `auto`, a length (`30mm`, `1in`, `72pt`, or a number of points), a percentage of
    /// the table (`25%`) or shares of the rest (`1fr`, `2fr`).
    pub fn parse(v: &LengthValue) -> Result<ColumnWidth, String> {
        let LengthValue::Text(t) = v else { return v.points().map(ColumnWidth::Fixed) };
        let t = t.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(ColumnWidth::Auto);
        }
        let share = |s: &str, max: f32| -> Result<f32, String> {
            s.trim().parse::<f32>().ok().filter(|n| n.is_finite() && *n > 0.0 && *n <= max).ok_or_else(|| {
                format!("`{t}` is not a width: use auto, a length (`30mm`), a percentage (`25%`) or shares (`2fr`)")
            })
        };
        if let Some(p) = t.strip_suffix('%') {
            return share(p, 100.0).map(ColumnWidth::Percent);
        }
        if let Some(f) = t.strip_suffix("fr") {
            return share(f, 1000.0).map(ColumnWidth::Fraction);
        }
        parse_length(t).map(ColumnWidth::Fixed).map_err(|_| {
            format!("`{t}` is not a width: use auto, a length (`30mm`), a percentage (`25%`) or shares (`2fr`)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_take_units() {
        assert!((parse_length("25.4mm").unwrap() - 72.0).abs() < 1e-3);
        assert!((parse_length("1in").unwrap() - 72.0).abs() < 1e-3);
        assert_eq!(parse_length("36pt").unwrap(), 36.0);
        assert_eq!(parse_length(" 10 ").unwrap(), 10.0);
        assert!(parse_length("3 furlongs").unwrap_err().contains("unknown unit"));
        assert!(parse_length("-3mm").is_err());
    }

    #[test]
    fn sizes_orientation_and_margins_resolve() {
        let cfg = PageConfig {
            size: Some("letter".into()),
            orientation: Some(Orientation::Landscape),
            margin: Some(MarginConfig::Sides {
                top: Some(LengthValue::Points(10.0)),
                right: None,
                bottom: None,
                left: None,
            }),
            ..Default::default()
        };
        let p = cfg.resolve().unwrap();
        assert_eq!((p.width, p.height, p.top), (792.0, 612.0, 10.0));
        assert!((p.left - DEFAULT_MARGIN).abs() < 1e-4);
        let custom = PageConfig { size: Some("100mm x 150mm".into()), ..Default::default() }.resolve().unwrap();
        assert!((custom.width - 283.46).abs() < 0.01);
        let bad = PageConfig { size: Some("B12".into()), font_size: Some(1.0), ..Default::default() };
        let errs = bad.resolve().unwrap_err();
        assert_eq!(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["size", "font_size"]);
        let tight =
            PageConfig { margin: Some(MarginConfig::All(LengthValue::Text("100mm".into()))), ..Default::default() };
        assert!(tight.resolve().unwrap_err()[0].1.contains("too little"));
    }

    #[test]
    fn widths_parse() {
        let w = |s: &str| ColumnWidth::parse(&LengthValue::Text(s.into()));
        assert_eq!(w("auto").unwrap(), ColumnWidth::Auto);
        assert_eq!(w("25%").unwrap(), ColumnWidth::Percent(25.0));
        assert_eq!(w("2fr").unwrap(), ColumnWidth::Fraction(2.0));
        assert_eq!(w("72pt").unwrap(), ColumnWidth::Fixed(72.0));
        assert_eq!(ColumnWidth::parse(&LengthValue::Points(50.0)).unwrap(), ColumnWidth::Fixed(50.0));
        assert!(w("120%").is_err());
        assert!(w("wide").is_err());
    }
}
