//! Sizes and durations as people write them in specs and flags: `64MiB`, `10m`.
//!
//! ```
//! use ream_core::units::{parse_bytes, parse_duration};
//! assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
//! assert_eq!(parse_duration("10m"), Ok(std::time::Duration::from_secs(600)));
//! ```

use std::time::Duration;

/// A byte count with an optional unit: `1000`, `64k`/`64KiB` (×1024), `10M`/`10MiB`,
/// `1G`/`1GiB`. Units are binary, as in the rest of ream's sizes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{s}`: expected a byte count such as 1000000 or 64MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use k, M or G)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{s}`: too large"))
}

/// A duration: a whole number with a unit, `30s`, `10m`, `2h` or `1d` (a bare number is
/// seconds). At least one second.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{s}`: expected a duration such as 30s, 10m, 2h or 1d"))?;
    let scale: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use s, m, h or d)")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err(format!("`{s}`: must be at least 1s")),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("`{s}`: too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_refuse_zero_and_unknown_ones() {
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration(" 1d "), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("0m").unwrap_err().contains("at least 1s"));
        assert!(parse_duration("10 weeks").unwrap_err().contains("unknown unit `weeks`"));
        assert!(parse_duration("soon").unwrap_err().contains("expected a duration"));
    }
}
