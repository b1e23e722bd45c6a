//! ream-schedule: when a schedule fires. A [`Cadence`] is a cron pattern (5 fields, or 6
//! with seconds first) read in an IANA time zone, daylight-saving changes included: a
//! fixed time the clocks jump over fires once just after the jump, and one they pass
//! twice fires once. [`due`] says which fires a scheduler makes after a pause (its
//! [`CatchUp`]), and [`expand`] fills a parameter's date expressions
//! (`{fire_date - 1 month}`) from the fire time. Nothing here touches a clock or a store:
//! the server's scheduler and the control store do.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use ream_schedule::{due, expand, Cadence, CatchUp};
//!
//! let monthly = Cadence::parse("0 6 1 * *", "Europe/Berlin").unwrap();
//! let fire = monthly.next_after(Utc.with_ymd_and_hms(2026, 2, 14, 0, 0, 0).unwrap()).unwrap();
//! // 06:00 in Berlin is 05:00 UTC in winter.
//! assert_eq!(fire, Utc.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).unwrap());
//! assert_eq!(expand("{month_start - 1 month}", &monthly.local(fire)).unwrap(), "2026-02-01");
//! // Down from January to mid-February: only the latest missed fire is made up.
//! let (checked, now) = (Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2026, 2, 14, 0, 0, 0).unwrap());
//! let fires = due(&monthly, checked, now, CatchUp::Latest);
//! assert_eq!(fires, vec![Utc.with_ymd_and_hms(2026, 2, 1, 5, 0, 0).unwrap()]);
//! ```

use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Duration, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// What is wrong with a schedule's cadence or a date expression. Each names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron `{cron}`: {reason}")]
    Cron { cron: String, reason: String },
    #[error("timezone `{0}` is not an IANA time zone (such as Europe/Berlin or UTC)")]
    Timezone(String),
    #[error("`{text}`: {reason}")]
    Expression { text: String, reason: String },
}

/// A fire that is older than this when the scheduler sees it was missed (everything was
/// down): [`CatchUp`] decides whether it is made up. A scheduler looks every second.
pub const ON_TIME: Duration = Duration::seconds(60);

/// The most fires one look makes (`catch_up: all` after a long pause).
pub const MAX_FIRES: usize = 1000;

/// A cron pattern in a time zone.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    tz: Tz,
}

impl Cadence {
    /// `cron` has 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds
    /// first), or is an alias such as `@daily`; `timezone` is an IANA name.
    pub fn parse(cron: &str, timezone: &str) -> Result<Cadence, ScheduleError> {
        let fail = |reason: String| ScheduleError::Cron { cron: cron.to_string(), reason };
        let fields = cron.split_whitespace().count();
        if !cron.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(fail(format!(
                "has {fields} fields; give 5 (minute hour day month weekday) or 6 (seconds first)"
            )));
        }
        let parsed = CronParser::builder().seconds(Seconds::Optional).build().parse(cron.trim());
        let cron = parsed.map_err(|e| fail(e.to_string()))?;
        let tz = Tz::from_str(timezone.trim()).map_err(|_| ScheduleError::Timezone(timezone.to_string()))?;
        Ok(Cadence { cron, tz })
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The last fire before `t`, or at `t` when `inclusive`.
    fn previous(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&local, inclusive).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The fires after `after` up to `until` (both in the past or present), oldest first,
    /// at most `max`.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>, max: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < max {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }

    /// `t` on the schedule's wall clock.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.tz)
    }
}

/// `t` on the wall clock of the IANA zone `timezone` (UTC when it is not one).
pub fn in_zone(t: DateTime<Utc>, timezone: &str) -> DateTime<Tz> {
    t.with_timezone(&Tz::from_str(timezone).unwrap_or(Tz::UTC))
}

/// Which fires missed while every instance was down are made up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// The newest missed fire only (unless one is on time).
    #[default]
    Latest,
    /// Every missed fire, oldest first (at most [`MAX_FIRES`] a look).
    All,
    /// None: only fires on time.
    None,
}

/// The fires to make now: those after `checked` (where the last look ended) up to `now`.
/// One no older than [`ON_TIME`] is on time and always made; older ones were missed, and
/// `catch_up` says which of those are made. Missed fires are found walking back from
/// `now`, so a pause of years costs no more than `catch_up` makes.
pub fn due(cadence: &Cadence, checked: DateTime<Utc>, now: DateTime<Utc>, catch_up: CatchUp) -> Vec<DateTime<Utc>> {
    let (checked, now) = (whole_second(checked), whole_second(now));
    let on_time_from = checked.max(now - ON_TIME);
    let on_time = cadence.between(on_time_from, now, MAX_FIRES);
    let take_missed = match catch_up {
        CatchUp::All => MAX_FIRES,
        CatchUp::Latest if on_time.is_empty() => 1,
        CatchUp::Latest | CatchUp::None => 0,
    };
    let mut missed = Vec::new();
    let mut t = on_time_from;
    while missed.len() < take_missed.min(MAX_FIRES - on_time.len()) {
        match cadence.previous(t, missed.is_empty()) {
            Some(p) if p > checked => {
                missed.push(p);
                t = p;
            }
            _ => break,
        }
    }
    missed.reverse();
    missed.extend(on_time);
    missed
}

/// Fires fall on whole seconds; so do the times compared with them.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Fill the date expressions of `text` from the fire time `fire` (on the schedule's
/// wall clock): each `{BASE}` or `{BASE ± N UNIT}`, where the offset moves the fire time
/// first and BASE then reads it:
///
/// | BASE | gives |
/// |---|---|
/// | `fire_date` | the date, `2026-03-01` |
/// | `fire_time` | the time with its offset, `2026-03-01T06:00:00+01:00` |
/// | `week_start` | that week's Monday |
/// | `month_start`, `month_end` | the first and last day of that month |
/// | `year_start`, `year_end` | January 1st and December 31st |
///
/// UNIT is `minute(s)`, `hour(s)`, `day(s)`, `week(s)`, `month(s)` or `year(s)`; a month
/// from January 31st is the last day of February. `{{` and `}}` are braces.
pub fn expand(text: &str, fire: &DateTime<Tz>) -> Result<String, ScheduleError> {
    let fail = |reason: &str| ScheduleError::Expression { text: text.to_string(), reason: reason.to_string() };
    let (mut out, mut rest) = (String::new(), text);
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(fail("a `}` without its `{` (write `}}` for a brace)"));
        }
        let end = tail.find('}').ok_or_else(|| fail("a `{` without its `}` (write `{{` for a brace)"))?;
        out.push_str(&evaluate(&tail[1..end], fire).map_err(|r| fail(&r))?);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `text` has a date expression to fill.
pub fn has_expression(text: &str) -> bool {
    text.replace("{{", "").contains('{')
}

/// One expression, without its braces.
fn evaluate(expr: &str, fire: &DateTime<Tz>) -> Result<String, String> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let (base, at) = match words.as_slice() {
        [base] => (*base, *fire),
        [base, sign @ ("+" | "-"), n, unit] => {
            let n: u32 = n.parse().map_err(|_| format!("`{n}` is not a whole number"))?;
            (*base, shift(fire, *sign == "-", n, unit)?)
        }
        _ => return Err(format!("`{{{expr}}}` is not BASE or BASE ± N UNIT (as `fire_date - 1 month`)")),
    };
    let date = at.date_naive();
    let day = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string()).ok_or("out of range".to_string());
    match base {
        "fire_date" => day(Some(date)),
        "fire_time" => Ok(at.to_rfc3339()),
        "week_start" => day(date.checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))),
        "month_start" => day(date.with_day(1)),
        "month_end" => {
            day(date.with_day(1).and_then(|d| d.checked_add_months(Months::new(1))).and_then(|d| d.pred_opt()))
        }
        "year_start" => day(NaiveDate::from_ymd_opt(date.year(), 1, 1)),
        "year_end" => day(NaiveDate::from_ymd_opt(date.year(), 12, 31)),
        other => Err(format!(
            "unknown `{other}`: use fire_date, fire_time, week_start, month_start, month_end, year_start or year_end"
        )),
    }
}

/// `t` moved by `n` units, back when `back`. Calendar units move the wall-clock date
/// (a day is a calendar day across a daylight-saving change).
fn shift(t: &DateTime<Tz>, back: bool, n: u32, unit: &str) -> Result<DateTime<Tz>, String> {
    let exact = |d: Duration| if back { t.checked_sub_signed(d) } else { t.checked_add_signed(d) };
    let calendar = |months: u32, days: u64| {
        let naive = t.naive_local();
        let moved = match back {
            true => naive.checked_sub_months(Months::new(months)).and_then(|d| d.checked_sub_days(Days::new(days))),
            false => naive.checked_add_months(Months::new(months)).and_then(|d| d.checked_add_days(Days::new(days))),
        };
        // A wall-clock time the clocks skip is read as the one just after.
        moved.and_then(|m| {
            t.timezone()
                .from_local_datetime(&m)
                .earliest()
                .or_else(|| t.timezone().from_local_datetime(&(m + Duration::hours(1))).earliest())
        })
    };
    let moved = match unit.trim_end_matches('s') {
        "minute" => exact(Duration::minutes(i64::from(n))),
        "hour" => exact(Duration::hours(i64::from(n))),
        "day" => calendar(0, u64::from(n)),
        "week" => calendar(0, u64::from(n) * 7),
        "month" => calendar(n, 0),
        "year" => n.checked_mul(12).and_then(|m| calendar(m, 0)),
        _ => return Err(format!("unknown unit `{unit}`: use minutes, hours, days, weeks, months or years")),
    };
    moved.ok_or_else(|| "out of range".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn a_daily_0230_berlin_schedule_fires_once_on_each_day_of_a_clock_change() {
        let daily = Cadence::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // 2026-03-29: clocks jump from 02:00 to 03:00, so 02:30 never happens that day.
        let march = daily.between(utc(2026, 3, 27, 12, 0, 0), utc(2026, 3, 31, 12, 0, 0), 100);
        let days: Vec<_> = march.iter().map(|f| daily.local(*f).date_naive().to_string()).collect();
        assert_eq!(days, ["2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"], "{march:?}");
        // The day of the change fires once, just after the jump (03:00 CEST = 01:00 UTC).
        assert_eq!(march[1], utc(2026, 3, 29, 1, 0, 0));
        assert_eq!(march[0], utc(2026, 3, 28, 1, 30, 0));
        assert_eq!(march[2], utc(2026, 3, 30, 0, 30, 0));
        // 2026-10-25: clocks fall back from 03:00 to 02:00, so 02:30 happens twice.
        let october = daily.between(utc(2026, 10, 24, 12, 0, 0), utc(2026, 10, 26, 12, 0, 0), 100);
        assert_eq!(october, vec![utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)]);
    }

    #[test]
    fn five_and_six_fields_parse_and_others_are_refused_naming_the_count() {
        let every5s = Cadence::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(every5s.between(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 30), 100).len(), 6);
        assert!(Cadence::parse("0 6 1 * *", "UTC").is_ok());
        let e = Cadence::parse("0 6 1 *", "UTC").unwrap_err().to_string();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = Cadence::parse("0 0 6 1 * * 2026", "UTC").unwrap_err().to_string();
        assert!(e.contains("has 7 fields"), "{e}");
        let e = Cadence::parse("61 * * * *", "UTC").unwrap_err().to_string();
        assert!(e.starts_with("cron `61 * * * *`"), "{e}");
        let e = Cadence::parse("0 6 * * *", "Europe/Atlantis").unwrap_err().to_string();
        assert!(e.contains("Europe/Atlantis") && e.contains("IANA"), "{e}");
    }

    #[test]
    fn catch_up_makes_the_latest_every_or_no_missed_fire_and_always_the_on_time_ones() {
        let hourly = Cadence::parse("0 * * * *", "UTC").unwrap();
        let (checked, now) = (utc(2026, 1, 1, 0, 30, 0), utc(2026, 1, 1, 5, 0, 20));
        // Missed: 01:00 .. 04:00; on time: 05:00 (20 s ago).
        assert_eq!(due(&hourly, checked, now, CatchUp::All).len(), 5);
        assert_eq!(due(&hourly, checked, now, CatchUp::Latest), vec![utc(2026, 1, 1, 5, 0, 0)]);
        assert_eq!(due(&hourly, checked, now, CatchUp::None), vec![utc(2026, 1, 1, 5, 0, 0)]);
        let later = utc(2026, 1, 1, 5, 30, 0);
        assert_eq!(due(&hourly, checked, later, CatchUp::Latest), vec![utc(2026, 1, 1, 5, 0, 0)]);
        assert!(due(&hourly, checked, later, CatchUp::None).is_empty());
        // Years down with `all`: bounded.
        let every_s = Cadence::parse("* * * * * *", "UTC").unwrap();
        let fires = due(&every_s, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 2, 0, 0, 0), CatchUp::All);
        assert_eq!(fires.len(), MAX_FIRES);
    }

    #[test]
    fn date_expressions_move_the_fire_time_then_read_it() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let fire = tz.with_ymd_and_hms(2026, 3, 31, 6, 0, 0).unwrap();
        let cases = [
            ("{fire_date}", "2026-03-31"),
            ("{fire_date - 1 month}", "2026-02-28"),
            ("{month_start - 1 month}", "2026-02-01"),
            ("{month_end - 1 month}", "2026-02-28"),
            ("{fire_date + 2 days}", "2026-04-02"),
            ("{week_start}", "2026-03-30"),
            ("{year_start - 1 year}", "2025-01-01"),
            ("{fire_time}", "2026-03-31T06:00:00+02:00"),
            ("{fire_time - 7 hours}", "2026-03-30T23:00:00+02:00"),
            ("from {month_start} to {month_end}, {{literal}}", "from 2026-03-01 to 2026-03-31, {literal}"),
        ];
        for (text, want) in cases {
            assert_eq!(expand(text, &fire).unwrap(), want, "{text}");
        }
        for (bad, says) in [
            ("{yesterday}", "unknown `yesterday`"),
            ("{fire_date - one month}", "`one` is not a whole number"),
            ("{fire_date - 1 fortnight}", "unknown unit `fortnight`"),
            ("{fire_date", "without its `}`"),
            ("{fire_date * 2 days}", "is not BASE"),
        ] {
            let e = expand(bad, &fire).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }
}
