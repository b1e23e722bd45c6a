//! Band text templates: `"Subtotal {region}: {region_total:currency}"`. `{{` and `}}`
//! are literal braces. A placeholder names a field, variable or parameter, and may carry a
//! format (see [`Format`]).

use std::fmt::Write;

use chrono::DateTime;

use crate::value::{date_from_days, format_decimal, Value};

/// Number conventions for banded outputs: separators, and where a currency symbol goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    pub tag: &'static str,
    group: &'static str,
    decimal: char,
    /// `1.234,56 €` rather than `€1,234.56`.
    symbol_after: bool,
    /// `12,5 %` rather than `12.5%`.
    percent_space: bool,
    /// The currency a `currency` format without a code shows.
    pub currency: &'static str,
    /// Month and day names (`%B`, `%b`, `%A`, `%a`, `%p`) in `date:` formats and on chart
    /// axes; `None` keeps chrono's English (en-US's, byte for byte as before).
    names: Option<chrono::Locale>,
}

impl Default for Locale {
    fn default() -> Self {
        LOCALES[0]
    }
}

/// The locales ream knows (docs/spec.md lists them).
pub const LOCALES: &[Locale] = &[
    Locale {
        tag: "en-US",
        group: ",",
        decimal: '.',
        symbol_after: false,
        percent_space: false,
        currency: "USD",
        names: None,
    },
    Locale {
        tag: "en-GB",
        group: ",",
        decimal: '.',
        symbol_after: false,
        percent_space: false,
        currency: "GBP",
        names: Some(chrono::Locale::en_GB),
    },
    Locale {
        tag: "de-DE",
        group: ".",
        decimal: ',',
        symbol_after: true,
        percent_space: true,
        currency: "EUR",
        names: Some(chrono::Locale::de_DE),
    },
    Locale {
        tag: "de-CH",
        group: "’",
        decimal: '.',
        symbol_after: false,
        percent_space: false,
        currency: "CHF",
        names: Some(chrono::Locale::de_CH),
    },
    Locale {
        tag: "fr-FR",
        group: "\u{202F}",
        decimal: ',',
        symbol_after: true,
        percent_space: true,
        currency: "EUR",
        names: Some(chrono::Locale::fr_FR),
    },
    Locale {
        tag: "es-ES",
        group: ".",
        decimal: ',',
        symbol_after: true,
        percent_space: true,
        currency: "EUR",
        names: Some(chrono::Locale::es_ES),
    },
    Locale {
        tag: "it-IT",
        group: ".",
        decimal: ',',
        symbol_after: true,
        percent_space: false,
        currency: "EUR",
        names: Some(chrono::Locale::it_IT),
    },
    Locale {
        tag: "nl-NL",
        group: ".",
        decimal: ',',
        symbol_after: false,
        percent_space: false,
        currency: "EUR",
        names: Some(chrono::Locale::nl_NL),
    },
    Locale {
        tag: "pt-BR",
        group: ".",
        decimal: ',',
        symbol_after: false,
        percent_space: false,
        currency: "BRL",
        names: Some(chrono::Locale::pt_BR),
    },
    Locale {
        tag: "sv-SE",
        group: "\u{A0}",
        decimal: ',',
        symbol_after: true,
        percent_space: true,
        currency: "SEK",
        names: Some(chrono::Locale::sv_SE),
    },
    Locale {
        tag: "ja-JP",
        group: ",",
        decimal: '.',
        symbol_after: false,
        percent_space: false,
        currency: "JPY",
        names: Some(chrono::Locale::ja_JP),
    },
];

impl Locale {
    pub fn parse(tag: &str) -> Result<Locale, String> {
        LOCALES.iter().copied().find(|l| l.tag.eq_ignore_ascii_case(tag)).ok_or_else(|| {
            let known: Vec<_> = LOCALES.iter().map(|l| l.tag).collect();
            format!("unknown locale `{tag}` (known: {})", known.join(", "))
        })
    }

    /// A date, or a timestamp's UTC date and time, in a chrono `pattern`, with this
    /// locale's month and day names; `None` where the value lacks a field the pattern
    /// shows (a time of a date).
    pub fn strftime(&self, when: &chrono::NaiveDateTime, date_only: bool, pattern: &str) -> Option<String> {
        let mut out = String::new();
        let written = match (self.names, date_only) {
            (None, false) => write!(out, "{}", when.format(pattern)),
            (None, true) => write!(out, "{}", when.date().format(pattern)),
            (Some(l), false) => write!(out, "{}", when.and_utc().format_localized(pattern, l)),
            (Some(l), true) => write!(out, "{}", when.date().format_localized(pattern, l)),
        };
        written.ok().map(|_| out)
    }

    /// Rewrite a number written with `,` groups and a `.` decimal point.
    fn localize(&self, en: &str) -> String {
        if self.group == "," && self.decimal == '.' {
            return en.to_string();
        }
        let mut out = String::with_capacity(en.len() + 4);
        for c in en.chars() {
            match c {
                ',' => out.push_str(self.group),
                '.' => out.push(self.decimal),
                c => out.push(c),
            }
        }
        out
    }
}

/// How a value is displayed in banded outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// As is (ISO dates, exact decimals).
    Raw,
    /// Rounded to a whole number, with thousands separators.
    Int,
    /// `number:N`: N decimals, with thousands separators (default 2).
    Number(usize),
    /// `currency[:CODE]`: two decimals, thousands separators, a symbol for USD/EUR/GBP/JPY,
    /// else the code. Without a code, the locale's currency (USD in en-US, EUR in de-DE).
    Currency(Option<String>),
    /// `percent[:N]`: the value × 100 with N decimals (default 1) and `%`.
    Percent(usize),
    /// `date:PATTERN` (strftime) for dates and timestamps.
    Date(String),
}

impl Format {
    /// Parse a format name as written in a spec.
    pub fn parse(s: &str) -> Result<Format, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let digits = |default: usize| -> Result<usize, String> {
            match arg {
                None => Ok(default),
                Some(a) => a
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 18)
                    .ok_or_else(|| format!("`{s}`: expected a number of decimals from 0 to 18")),
            }
        };
        match name {
            "raw" => Ok(Format::Raw),
            "int" => Ok(Format::Int),
            "number" => Ok(Format::Number(digits(2)?)),
            "currency" => Ok(Format::Currency(arg.map(str::to_string))),
            "percent" => Ok(Format::Percent(digits(1)?)),
            "date" => {
                let pattern = arg.unwrap_or("%Y-%m-%d");
                // chrono reports a bad pattern only while formatting: try it once here.
                let mut probe = String::new();
                let t = DateTime::from_timestamp(0, 0).unwrap().naive_utc();
                if write!(probe, "{}", t.format(pattern)).is_err() {
                    return Err(format!("`{s}`: invalid date pattern"));
                }
                Ok(Format::Date(pattern.to_string()))
            }
            _ => Err(format!(
                "unknown format `{s}` (expected raw, int, number[:N], currency[:CODE], percent[:N] or date:PATTERN){}",
                crate::suggest::hint(name, ["raw", "int", "number", "currency", "percent", "date"])
            )),
        }
    }

    /// Display a value in en-US conventions. NULL is empty; a format that does not apply
    /// to the value's type falls back to the raw rendering.
    pub fn apply(&self, v: &Value) -> String {
        self.apply_in(v, &Locale::default())
    }

    /// Display a value with a locale's separators and currency placement.
    pub fn apply_in(&self, v: &Value, locale: &Locale) -> String {
        if v.is_null() {
            return String::new();
        }
        match self {
            Format::Raw => v.to_string(),
            Format::Int => match v {
                Value::Int(i) => locale.localize(&group_thousands(&i.to_string())),
                _ => locale.localize(&fixed(v, 0)),
            },
            Format::Number(n) => locale.localize(&fixed(v, *n)),
            Format::Currency(code) => {
                let code = code.as_deref().unwrap_or(locale.currency);
                let s = locale.localize(&fixed(v, if code == "JPY" { 0 } else { 2 }));
                let (neg, s) = match s.strip_prefix('-') {
                    Some(r) => ("-", r.to_string()),
                    None => ("", s),
                };
                let symbol = match code {
                    "USD" => "$",
                    "EUR" => "€",
                    "GBP" => "£",
                    "JPY" => "¥",
                    other => return format!("{neg}{s} {other}"),
                };
                if locale.symbol_after {
                    format!("{neg}{s}\u{A0}{symbol}")
                } else {
                    format!("{neg}{symbol}{s}")
                }
            }
            Format::Percent(n) => match v.as_f64() {
                Some(f) => {
                    let num = locale.localize(&fixed(&Value::Float(f * 100.0), *n));
                    if locale.percent_space {
                        format!("{num}\u{A0}%")
                    } else {
                        format!("{num}%")
                    }
                }
                None => v.to_string(),
            },
            Format::Date(p) => match v {
                Value::Date(d) => {
                    date_from_days(*d).and_then(|d| locale.strftime(&d.and_time(Default::default()), true, p))
                }
                Value::Timestamp(us) => {
                    DateTime::from_timestamp_micros(*us).and_then(|t| locale.strftime(&t.naive_utc(), false, p))
                }
                _ => None,
            }
            .unwrap_or_else(|| v.to_string()),
        }
    }

    /// Whether the format can display values of this type: a `date:` pattern with time
    /// fields (`%H`) cannot show a date. Checked once the schema is known, so a spec that
    /// asks for it is a located error rather than a raw value in the output.
    pub fn fits(&self, dt: &arrow_schema::DataType) -> Result<(), String> {
        match (self, dt) {
            (Format::Date(p), arrow_schema::DataType::Date32) => {
                let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap_or_default();
                match strftime(day.format(p)) {
                    Some(_) => Ok(()),
                    None => Err(format!(
                        "`date:{p}` shows a time, but the field is a date: use date fields only (%Y, %m, %d, %b, %A…)"
                    )),
                }
            }
            _ => Ok(()),
        }
    }
}

/// A chrono pattern applied, or `None` where the value lacks a field the pattern shows
/// (chrono's `to_string` would panic there).
fn strftime(shown: impl std::fmt::Display) -> Option<String> {
    let mut out = String::new();
    write!(out, "{shown}").ok()?;
    Some(out)
}

/// Round to `n` decimals (half away from zero; exact for integers and decimals) and group
/// thousands with commas.
fn fixed(v: &Value, n: usize) -> String {
    let text = match v {
        Value::Int(i) => {
            if n == 0 {
                i.to_string()
            } else {
                format!("{i}.{}", "0".repeat(n))
            }
        }
        Value::Decimal { units, scale } => {
            let (units, scale) = rescale(*units, *scale, n as i8);
            format_decimal(units, scale)
        }
        other => match other.as_f64() {
            Some(f) => format!("{f:.n$}"),
            None => return other.to_string(),
        },
    };
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut out = String::new();
    if neg && (int.bytes().any(|b| b != b'0') || frac.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    out.push_str(&group_thousands(int));
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Exact decimal rounding (half away from zero) to a new scale.
fn rescale(units: i128, scale: i8, to: i8) -> (i128, i8) {
    if to >= scale {
        match 10i128.checked_pow((to - scale) as u32).and_then(|m| units.checked_mul(m)) {
            Some(u) => (u, to),
            None => (units, scale),
        }
    } else {
        let d = 10i128.pow((scale - to) as u32);
        let q = units / d;
        let r = units % d;
        let q = if r.abs() * 2 >= d { q + units.signum() } else { q };
        (q, to)
    }
}

fn group_thousands(int: &str) -> String {
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    locale: Locale,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Slot { name: String, format: Format },
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inner.push(c),
                            None => return Err(format!("unclosed `{{` in \"{s}\"")),
                        }
                    }
                    let (name, fmt) = match inner.split_once(':') {
                        Some((n, f)) => (n.trim(), Format::parse(f.trim())?),
                        None => (inner.trim(), Format::Raw),
                    };
                    if name.is_empty() {
                        return Err(format!("empty placeholder `{{}}` in \"{s}\""));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Slot { name: name.to_string(), format: fmt });
                }
                '}' => return Err(format!("unmatched `}}` in \"{s}\" (write `}}}}` for a brace)")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts, locale: Locale::default() })
    }

    /// The same template, formatting numbers for `locale`.
    pub fn localized(mut self, locale: Locale) -> Template {
        self.locale = locale;
        self
    }

    /// Split at the first `{name}`: the text before it, the placeholder's format, and
    /// the text after it. Paged outputs use it for `{pages}`, which is drawn from an
    /// object written at the end.
    pub fn split_at_slot(&self, name: &str) -> Option<(Template, Format, Template)> {
        let i = self.parts.iter().position(|p| matches!(p, Part::Slot { name: n, .. } if n == name))?;
        let Part::Slot { format, .. } = &self.parts[i] else { unreachable!("found a slot") };
        let part = |parts: &[Part]| Template { parts: parts.to_vec(), locale: self.locale };
        Some((part(&self.parts[..i]), format.clone(), part(&self.parts[i + 1..])))
    }

    /// The names the template refers to.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Slot { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fill the template; `lookup` gives each name's value (validation has made sure
    /// every name resolves, so a miss renders empty).
    pub fn render(&self, lookup: impl Fn(&str) -> Option<Value>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Slot { name, format } => {
                    if let Some(v) = lookup(name) {
                        out.push_str(&format.apply_in(&v, &self.locale));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_with_formats() {
        let t = Template::parse("Subtotal {region}: {total:currency} ({share:percent}) {{x}}").unwrap();
        let s = t.render(|n| match n {
            "region" => Some(Value::Str("North".into())),
            "total" => Some(Value::Decimal { units: 123456789, scale: 2 }),
            "share" => Some(Value::Float(0.125)),
            _ => None,
        });
        assert_eq!(s, "Subtotal North: $1,234,567.89 (12.5%) {x}");
    }

    #[test]
    fn decimal_rounding_is_exact_half_away_from_zero() {
        assert_eq!(Format::Number(1).apply(&Value::Decimal { units: -125, scale: 2 }), "-1.3");
        assert_eq!(Format::Int.apply(&Value::Int(-1234567)), "-1,234,567");
        assert_eq!(Format::Date("%d/%m/%Y".into()).apply(&Value::Date(0)), "01/01/1970");
    }

    #[test]
    fn a_time_pattern_does_not_fit_a_date_and_never_panics_on_one() {
        let f = Format::parse("date:%H:%M").unwrap();
        let err = f.fits(&arrow_schema::DataType::Date32).unwrap_err();
        assert!(err.contains("`date:%H:%M` shows a time, but the field is a date"), "{err}");
        assert!(f.fits(&arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None)).is_ok());
        assert!(Format::parse("date:%d.%m.%Y").unwrap().fits(&arrow_schema::DataType::Date32).is_ok());
        // Where it is applied anyway (a template over a value of unknown type): raw.
        assert_eq!(f.apply(&Value::Date(0)), "1970-01-01");
    }

    #[test]
    fn month_and_day_names_follow_the_locale() {
        // 2024-03-04 was a Monday (19786 days after 1970-01-01).
        let day = Value::Date(19786);
        let f = Format::parse("date:%A %-d %B %Y").unwrap();
        let name = |tag: &str| f.apply_in(&day, &Locale::parse(tag).unwrap());
        assert_eq!(name("en-US"), "Monday 4 March 2024");
        assert_eq!(name("de-DE"), "Montag 4 März 2024");
        assert_eq!(name("fr-FR"), "lundi 4 mars 2024");
        assert_eq!(name("es-ES"), "lunes 4 marzo 2024");
        let at = Value::Timestamp(19786 * 86_400_000_000 + 13 * 3_600_000_000);
        assert_eq!(Format::parse("date:%a %H:%M").unwrap().apply_in(&at, &Locale::parse("de-DE").unwrap()), "Mo 13:00");
        // A time of a date is still no panic, in any locale.
        assert_eq!(Format::parse("date:%H").unwrap().apply_in(&day, &Locale::parse("de-DE").unwrap()), "2024-03-04");
    }

    #[test]
    fn locales_change_separators_and_currency_placement() {
        let v = Value::Decimal { units: -123456789, scale: 2 };
        let de = Locale::parse("de-DE").unwrap();
        assert_eq!(Format::Currency(Some("EUR".into())).apply_in(&v, &de), "-1.234.567,89\u{A0}€");
        // No code: the locale's own currency.
        let plain = Format::parse("currency").unwrap();
        assert_eq!(plain.apply_in(&v, &de), "-1.234.567,89\u{A0}€");
        assert_eq!(plain.apply_in(&v, &Locale::parse("en-GB").unwrap()), "-£1,234,567.89");
        assert_eq!(plain.apply_in(&v, &Locale::default()), "-$1,234,567.89");
        assert_eq!(Format::parse("currency:USD").unwrap().apply_in(&v, &de), "-1.234.567,89\u{A0}$");
        assert_eq!(Format::Number(1).apply_in(&v, &Locale::parse("fr-FR").unwrap()), "-1\u{202F}234\u{202F}567,9");
        assert_eq!(
            Format::Currency(Some("USD".into())).apply_in(&v, &Locale::parse("en-us").unwrap()),
            "-$1,234,567.89"
        );
        assert_eq!(Format::Percent(1).apply_in(&Value::Float(0.125), &de), "12,5\u{A0}%");
        let t = Template::parse("{x:number:2}").unwrap().localized(Locale::parse("de-CH").unwrap());
        assert_eq!(t.render(|_| Some(Value::Int(1234567))), "1’234’567.00");
        assert!(Locale::parse("xx-XX").unwrap_err().contains("known: en-US"));
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::parse("{x").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{x:money}").unwrap_err().contains("unknown format"));
    }
}
