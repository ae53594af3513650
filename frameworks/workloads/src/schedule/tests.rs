use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use proptest::prelude::*;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn runs(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(expr, Some(tz)).expect("schedule");
    let mut t = ts(from);
    let mut out = Vec::new();
    for _ in 0..n {
        match s.next_after(t) {
            Some(next) => {
                out.push(next.to_string());
                t = next;
            }
            None => break,
        }
    }
    out
}

#[test]
fn parses_and_refuses_naming_the_field() {
    for ok in [
        "* * * * *",
        "0 0 * * *",
        "*/15 9-17 * * MON-FRI",
        "0 12 1,15 JAN-JUN ?",
        "30 0 0 * * 7",
        "5/20 * * * *",
        "@daily",
        "@hourly",
    ] {
        assert!(Schedule::parse(ok, None).is_ok(), "{ok}");
    }
    for (bad, field) in [
        ("* * * *", "fields"),
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("* * * FOO *", "month"),
        ("0 0 30 2 *", "day-of-month"),
        ("@sometimes", "macro"),
        ("1,,2 * * * *", "minute"),
    ] {
        match Schedule::parse(bad, None) {
            Err(ScheduleError::Cron { field: f, .. }) => assert_eq!(f, field, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        Schedule::parse("* * * * *", Some("Mars/Olympus")),
        Err(ScheduleError::TimeZone(_))
    ));
    assert!(Schedule::parse("X/2026-01-01T00:00:00Z/P1D", None).is_err());
    for bad in [
        "R/2026-01-01T00:00:00Z",
        "R/notadate/P1D",
        "R/2026-01-01T00:00:00Z/P",
        "Rx/2026-01-01T00:00:00Z/P1D",
        "R/2026-01-01T00:00:00Z/PT0S",
    ] {
        assert!(
            matches!(
                Schedule::parse(bad, None),
                Err(ScheduleError::Repeating { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn utc_basics() {
    assert_eq!(
        runs("*/15 * * * *", "UTC", "2026-01-01T00:07:00Z", 3),
        [
            "2026-01-01T00:15:00Z",
            "2026-01-01T00:30:00Z",
            "2026-01-01T00:45:00Z"
        ]
    );
    // Seconds, and day-of-month OR day-of-week when both are restricted.
    assert_eq!(
        runs("30 0 12 13 * FRI", "UTC", "2026-02-01T00:00:00Z", 3),
        [
            "2026-02-06T12:00:30Z",
            "2026-02-13T12:00:30Z",
            "2026-02-20T12:00:30Z"
        ]
    );
    assert_eq!(
        runs("0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z", 2),
        ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
    );
}

#[test]
fn a_fixed_time_skipped_by_the_spring_change_runs_at_the_change() {
    // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
    assert_eq!(
        runs("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3),
        [
            "2026-03-08T07:00:00Z", // 03:00 EDT, the moment of the change
            "2026-03-09T06:30:00Z", // 02:30 EDT
            "2026-03-10T06:30:00Z",
        ]
    );
}

#[test]
fn a_fixed_time_repeated_by_the_autumn_change_runs_once() {
    // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST.
    assert_eq!(
        runs("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 3),
        [
            "2026-11-01T05:30:00Z", // 01:30 EDT, the first occurrence only
            "2026-11-02T06:30:00Z", // 01:30 EST
            "2026-11-03T06:30:00Z",
        ]
    );
}

#[test]
fn hourly_schedules_follow_real_time_across_changes() {
    // Spring: 01:30 EST, then 03:30 EDT (02:30 does not exist).
    assert_eq!(
        runs("30 * * * *", "America/New_York", "2026-03-08T06:00:00Z", 2),
        ["2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"]
    );
    // Autumn: 01:30 EDT and 01:30 EST both run.
    assert_eq!(
        runs("30 * * * *", "America/New_York", "2026-11-01T05:00:00Z", 3),
        [
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:30:00Z"
        ]
    );
}

#[test]
fn repeating_intervals() {
    assert_eq!(
        runs(
            "R3/2026-01-01T00:00:00Z/PT1H",
            "UTC",
            "2025-12-31T00:00:00Z",
            5
        ),
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:00:00Z"
        ]
    );
    // A day is a local day: 09:00 in New York on both sides of the change.
    assert_eq!(
        runs(
            "R/2026-03-07T14:00:00Z/P1D",
            "America/New_York",
            "2026-03-07T14:00:00Z",
            2
        ),
        ["2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"]
    );
    let far = Schedule::parse("R/2026-01-01T00:00:00Z/PT10M", None).expect("parse");
    assert_eq!(
        far.next_after(ts("2030-06-01T00:05:00Z")),
        Some(ts("2030-06-01T00:10:00Z"))
    );
}

const ZONES: [&str; 8] = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe", // 30-minute DST shift
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

fn zone() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&ZONES[..])
}

fn instant() -> impl Strategy<Value = Timestamp> {
    // 2020-01-01 .. 2035-01-01, at whole minutes.
    (1_577_836_800i64 / 60..2_051_222_400i64 / 60)
        .prop_map(|m| Timestamp::from_second(m * 60).expect("in range"))
}

fn field(max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0..=max).prop_map(|v| v.to_string()),
        (1..=max.max(1)).prop_map(|s| format!("*/{s}")),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn local_matches(c: &Cron, t: Timestamp) -> bool {
    let dt = t.to_zoned(c.zone.clone()).datetime();
    c.seconds & (1 << dt.second()) != 0
        && c.minutes & (1 << dt.minute()) != 0
        && c.hours & (1 << dt.hour()) != 0
        && c.day_matches(dt.date())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Due times only move forward, and each is after the time asked about.
    #[test]
    fn due_times_strictly_increase(
        minute in field(59), hour in field(23), tz in zone(), from in instant(),
    ) {
        let expr = format!("{minute} {hour} * * *");
        let s = Schedule::parse(&expr, Some(tz)).expect("valid");
        let mut t = from;
        for _ in 0..30 {
            let Some(next) = s.next_after(t) else { break };
            prop_assert!(next > t, "{expr} in {tz}: {next} after {t}");
            t = next;
        }
    }

    /// A schedule running every hour is due exactly at the real instants
    /// whose local time matches (checked minute by minute over a day).
    #[test]
    fn hourly_schedules_match_a_minute_by_minute_scan(
        minute in field(59), tz in zone(), from in instant(),
    ) {
        let expr = format!("{minute} * * * *");
        let Schedule::Cron(c) = Schedule::parse(&expr, Some(tz)).expect("valid") else {
            unreachable!()
        };
        let end = from + Span::new().hours(26);
        let mut expected = Vec::new();
        let mut t = from + Span::new().minutes(1);
        while t <= end {
            if local_matches(&c, t) {
                expected.push(t);
            }
            t += Span::new().minutes(1);
        }
        let mut got = Vec::new();
        let mut t = from;
        while let Some(next) = c.next_after(t) {
            if next > end {
                break;
            }
            got.push(next);
            t = next;
        }
        prop_assert_eq!(got, expected, "{} in {}", expr, tz);
    }

    /// A job at a fixed local time runs exactly once every local day, DST
    /// changes included (40 days from any instant, in zones that change).
    #[test]
    fn a_daily_job_runs_once_every_local_day(
        hour in 0u32..24, minute in 0u32..60, tz in zone(), from in instant(),
    ) {
        let expr = format!("{minute} {hour} * * *");
        let s = Schedule::parse(&expr, Some(tz)).expect("valid");
        let zone = TimeZone::get(tz).expect("zone");
        let first_day = from.to_zoned(zone.clone()).date().tomorrow().expect("date");
        let start = first_day.to_zoned(zone.clone()).expect("midnight").timestamp();
        let mut t = start - Span::new().seconds(1);
        let mut days = Vec::new();
        for _ in 0..40 {
            let next = s.next_after(t).expect("due");
            days.push(next.to_zoned(zone.clone()).date());
            t = next;
        }
        for (i, d) in days.iter().enumerate() {
            let want = first_day.checked_add(Span::new().days(i as i64)).expect("date");
            prop_assert_eq!(*d, want, "{} in {}: run {} on {}", expr, tz, i, d);
        }
    }
}

#[test]
fn the_date_helpers_agree_with_jiff() {
    assert_eq!(date(2026, 3, 8).weekday().to_sunday_zero_offset(), 0);
}
