//! Schedules of SCHEDULED requests: when the next run is due.
//!
//! Two forms, both evaluated in an IANA time zone (`UTC` by default):
//!
//! * **cron** — 5 fields (`minute hour day-of-month month day-of-week`) or 6
//!   with seconds first. Each field takes `*`, `?` (as `*`), numbers,
//!   ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month names
//!   `JAN`-`DEC` and weekday names `SUN`-`SAT` (`0` and `7` are Sunday).
//!   As in Vixie cron, when both day fields are restricted a day matching
//!   either is due. `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`.
//! * **ISO 8601 repeating intervals**, as Chronos takes them:
//!   `R[n]/start/period` (`R5/2026-03-01T02:30:00Z/P1D`; `R/...` repeats
//!   forever). Calendar periods (days, months) are added in the time zone.
//!
//! # Daylight-saving changes
//!
//! Vixie cron's rule: a schedule whose hour field is `*` (it runs at least
//! hourly) is evaluated on real time — a local time skipped by a spring
//! change does not run, one repeated by an autumn change runs at each
//! occurrence. A schedule with fixed hours runs once per due local time:
//! a time skipped by the spring change runs at the change (`02:30` on the
//! day clocks jump from 02:00 to 03:00 runs at 03:00), a repeated time runs
//! at its first occurrence only. So a daily job runs exactly once every
//! local day.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{Span, Timestamp, Unit, Zoned};

/// How far ahead a cron expression is searched (a `29 2 *` job waits up to
/// 8 years; one also restricted to a weekday up to 28).
const SEARCH_YEARS: i16 = 30;

/// Why a schedule was refused. The message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A cron expression is malformed.
    #[error("invalid cron expression {expr:?}: {field}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// The field at fault (`minute`, `day-of-week`, ...).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin or America/New_York")]
    TimeZone(String),
    /// An ISO 8601 repeating interval is malformed.
    #[error("invalid repeating interval {expr:?}: {reason} (expected R[n]/start/period, such as R/2026-01-01T00:00:00Z/PT1H)")]
    Repeating {
        /// The expression.
        expr: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A cron expression.
    Cron(Cron),
    /// An ISO 8601 repeating interval.
    Repeating(Repeating),
}

impl Schedule {
    /// Parses `expr` (cron, or `R...` for a repeating interval) in the IANA
    /// time zone `tz` (`None`: UTC).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Self, ScheduleError> {
        let zone = match tz.map(str::trim).filter(|t| !t.is_empty()) {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?
            }
        };
        let expr = expr.trim();
        if expr.starts_with('R') {
            Repeating::parse(expr, zone).map(Schedule::Repeating)
        } else {
            Cron::parse(expr, zone).map(Schedule::Cron)
        }
    }

    /// The first due time strictly after `after`; `None` when there is no
    /// more (a finished repeating interval).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Repeating(r) => r.next_after(after),
        }
    }
}

/// A cron expression.
#[derive(Debug, Clone)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
    zone: TimeZone,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &WEEKDAYS,
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + if self.min == 1 { 1 } else { 0 });
        }
        let v: u32 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number or name"))?;
        if v < self.min || v > self.max {
            return Err(format!("{v} is outside {}-{}", self.min, self.max));
        }
        Ok(v)
    }

    /// The set of values as a bit mask, and whether it was `*`/`?`.
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut mask = 0u64;
        let star = text == "*" || text == "?";
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("step {s:?} is not a positive number"))?;
                    (r, step)
                }
                None => (part, 1),
            };
            let (lo, hi) = if range == "*" || range == "?" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("range {range:?} runs backwards"));
                }
                (a, b)
            } else {
                let v = self.value(range)?;
                // `5/15` means from 5 to the end, every 15.
                (v, if step > 1 { self.max } else { v })
            };
            if part.is_empty() {
                return Err("an empty list item".into());
            }
            let mut v = lo;
            while v <= hi {
                mask |= 1 << v;
                v += step;
            }
        }
        Ok((mask, star))
    }
}

impl Cron {
    /// Parses a 5- or 6-field expression (or a macro) in `zone`.
    pub fn parse(expr: &str, zone: TimeZone) -> Result<Self, ScheduleError> {
        let fail = |field: &'static str, reason: String| ScheduleError::Cron {
            expr: expr.to_string(),
            field,
            reason,
        };
        let expanded = match expr.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(fail("macro", format!("unknown macro {other:?}")))
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(fail(
                    "fields",
                    format!("{n} fields; expected 5 (minute hour day month weekday) or 6 (with seconds first)"),
                ))
            }
        };
        let parse = |f: &Field, text: &str| f.parse(text).map_err(|r| fail(f.name, r));
        let (seconds, _) = parse(&SECOND, seconds)?;
        let (minutes, _) = parse(&MINUTE, rest[0])?;
        let (hours, _) = parse(&HOUR, rest[1])?;
        let (days, days_star) = parse(&DAY, rest[2])?;
        let (months, _) = parse(&MONTH, rest[3])?;
        let (mut weekdays, weekdays_star) = parse(&WEEKDAY, rest[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Self {
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
            zone,
        };
        // A day that never comes (`30 2 *`): refuse rather than never run.
        let possible = (1..=12).any(|m| {
            cron.months & (1 << m) != 0
                && (!cron.weekdays_star
                    || (1..=days_in_month(m)).any(|d| cron.days & (1 << d) != 0))
        });
        if !possible {
            return Err(fail(
                "day-of-month",
                "no month in the expression has such a day".into(),
            ));
        }
        Ok(cron)
    }

    /// Whether the hour field allows every hour (the schedule runs at least
    /// hourly and is evaluated on real time across DST changes).
    fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The earliest matching time of day at or after `from` (`None`: none
    /// left that day).
    fn time_at_or_after(&self, from: Time) -> Option<Time> {
        let (h0, m0, s0) = (
            from.hour() as u32,
            from.minute() as u32,
            from.second() as u32,
        );
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m_start = if h == h0 { m0 } else { 0 };
            for m in m_start..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s_start = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = (s_start..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Time::new(h as i8, m as i8, s as i8, 0).ok();
                }
            }
        }
        None
    }

    /// The first matching civil time at or after `from`.
    fn civil_at_or_after(&self, from: DateTime) -> Option<DateTime> {
        let mut date = from.date();
        let limit = date.year().saturating_add(SEARCH_YEARS);
        let mut first = true;
        while date.year() <= limit {
            if self.day_matches(date) {
                let start = if first { from.time() } else { Time::midnight() };
                if let Some(t) = self.time_at_or_after(start) {
                    return Some(date.to_datetime(t));
                }
            }
            first = false;
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The instants at which civil time `dt` is due (none, one or two).
    fn instants(&self, dt: DateTime) -> Vec<Timestamp> {
        let ambiguous = self.zone.to_ambiguous_timestamp(dt);
        let at = |o: Offset| o.to_timestamp(dt).ok();
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => at(offset).into_iter().collect(),
            AmbiguousOffset::Gap { before, after } => {
                if self.every_hour() {
                    Vec::new()
                } else {
                    self.transition_in(at(after), at(before))
                        .into_iter()
                        .collect()
                }
            }
            AmbiguousOffset::Fold { before, after } => {
                let mut v: Vec<Timestamp> = at(before).into_iter().collect();
                if self.every_hour() {
                    v.extend(at(after));
                }
                v
            }
        }
    }

    /// The first instant in `[lo, hi]` whose offset is the one after the
    /// gap: the moment the clocks jumped.
    fn transition_in(&self, lo: Option<Timestamp>, hi: Option<Timestamp>) -> Option<Timestamp> {
        let (lo, hi) = (lo?, hi?);
        let target = self.zone.to_offset(hi);
        let (mut lo_s, mut hi_s) = (lo.as_second(), hi.as_second());
        while lo_s < hi_s {
            let mid = lo_s + (hi_s - lo_s) / 2;
            let t = Timestamp::from_second(mid).ok()?;
            if self.zone.to_offset(t) == target {
                hi_s = mid;
            } else {
                lo_s = mid + 1;
            }
        }
        Timestamp::from_second(hi_s).ok()
    }

    /// The first due instant strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let local = after.to_zoned(self.zone.clone()).datetime();
        // Start a few hours back in civil time: the second occurrence of a
        // repeated local time can come after `after` although its civil
        // time is earlier than `after`'s.
        let mut civil = local
            .checked_sub(Span::new().hours(3))
            .ok()?
            .round(Unit::Second)
            .ok()?;
        let mut best: Option<Timestamp> = None;
        loop {
            let candidate = self.civil_at_or_after(civil)?;
            let instants = self.instants(candidate);
            if let (Some(b), Some(first)) = (best, instants.first()) {
                // Later civil times only come later (their first instant).
                if *first > b {
                    return best;
                }
            }
            for t in instants {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
            civil = candidate.checked_add(Span::new().seconds(1)).ok()?;
        }
    }
}

fn days_in_month(m: u32) -> u32 {
    match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An ISO 8601 repeating interval (`R[n]/start/period`), as Chronos takes
/// it.
#[derive(Debug, Clone)]
pub struct Repeating {
    /// How many runs (`None`: forever).
    pub count: Option<u64>,
    /// The first run.
    pub start: Zoned,
    /// Between runs.
    pub period: Span,
    approx_seconds: f64,
}

impl Repeating {
    /// Parses `R[n]/start/period`; calendar units of the period are added
    /// in `zone`.
    pub fn parse(expr: &str, zone: TimeZone) -> Result<Self, ScheduleError> {
        let fail = |reason: String| ScheduleError::Repeating {
            expr: expr.to_string(),
            reason,
        };
        let parts: Vec<&str> = expr.split('/').collect();
        let [repeat, start, period] = parts[..] else {
            return Err(fail("not three parts separated by '/'".into()));
        };
        let count = match repeat.strip_prefix('R') {
            Some("") => None,
            Some(n) => Some(
                n.parse::<u64>()
                    .map_err(|_| fail(format!("{repeat:?} is not R or R<count>")))?,
            ),
            None => return Err(fail("it must start with R".into())),
        };
        let start: Timestamp = start
            .parse()
            .map_err(|e| fail(format!("start {start:?}: {e}")))?;
        let period: Span = period
            .parse()
            .map_err(|e| fail(format!("period {period:?}: {e}")))?;
        let start = start.to_zoned(zone);
        let approx_seconds = period
            .total((Unit::Second, &start))
            .map_err(|e| fail(format!("period {period}: {e}")))?;
        if approx_seconds < 1.0 {
            return Err(fail("the period must be at least one second".into()));
        }
        Ok(Self {
            count,
            start,
            period,
            approx_seconds,
        })
    }

    fn nth(&self, k: i64) -> Option<Timestamp> {
        if k < 0 || self.count.is_some_and(|c| k as u64 >= c) {
            return None;
        }
        let span = self.period.checked_mul(k).ok()?;
        self.start.checked_add(span).ok().map(|z| z.timestamp())
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = self.start.timestamp();
        if after < start {
            return self.nth(0);
        }
        let elapsed = (after.as_second() - start.as_second()) as f64;
        let mut k = ((elapsed / self.approx_seconds) as i64 - 2).max(0);
        loop {
            let t = self.nth(k)?;
            if t > after {
                return Some(t);
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests;
