//! Templates and display formats: any text parses or is refused; a parsed format shows
//! every value of every type it fits, and a template renders, without a panic.
#![no_main]
use arrow_schema::DataType;
use libfuzzer_sys::fuzz_target;
use ream_core::template::{Format, Template};
use ream_core::value::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let n = data.iter().fold(0i64, |a, &b| a.wrapping_mul(31).wrapping_add(b as i64));
    let values = [
        (Value::Int(n), DataType::Int64),
        (Value::Float(n as f64 / 7.0), DataType::Float64),
        (Value::Float(f64::NAN), DataType::Float64),
        (Value::Decimal { units: n as i128 * 1_000_003, scale: (n % 39) as i8 }, DataType::Decimal128(38, 10)),
        (Value::Date((n % 2_932_896) as i32), DataType::Date32),
        (Value::Timestamp(n), DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None)),
        (Value::Str(text.into()), DataType::Utf8),
        (Value::Null, DataType::Utf8),
        (Value::Bool(n % 2 == 0), DataType::Boolean),
    ];
    if let Ok(format) = Format::parse(text) {
        for (v, dt) in &values {
            if format.fits(dt).is_ok() {
                let _ = format.apply(v);
            }
        }
    }
    if let Ok(template) = Template::parse(text) {
        let _ = template.render(|name| values.get(name.len() % values.len()).map(|(v, _)| v.clone()));
    }
});
