//! Durations in stout's textual form (`5secs`, `100ms`, `2mins`), as Mesos
//! flags and executor environment variables carry them.

use std::time::Duration;

/// Formats a duration the way Mesos' stout does (largest exact unit).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    const UNITS: &[(u128, &str)] = &[
        (7 * 24 * 3_600_000_000_000, "weeks"),
        (24 * 3_600_000_000_000, "days"),
        (3_600_000_000_000, "hrs"),
        (60_000_000_000, "mins"),
        (1_000_000_000, "secs"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (unit, name) in UNITS {
        if ns >= *unit && ns.is_multiple_of(*unit) {
            return format!("{}{}", ns / unit, name);
        }
    }
    if ns >= 1_000_000_000 {
        return format!("{}secs", d.as_secs_f64());
    }
    format!("{ns}ns")
}

/// Parses a stout duration (`10secs`, `1.5mins`, `250ms`, `3days`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("duration '{s}' has no unit (use ns, us, ms, secs, mins, hrs, days, weeks)")
        })?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration '{s}' does not start with a number"))?;
    let secs_per_unit = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" | "sec" | "s" => 1.0,
        "mins" | "min" => 60.0,
        "hrs" | "hr" => 3600.0,
        "days" | "day" => 86_400.0,
        "weeks" | "week" => 604_800.0,
        other => return Err(format!("unknown duration unit '{other}' in '{s}'")),
    };
    let secs = value * secs_per_unit;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("duration '{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for d in [
            Duration::from_secs(5),
            Duration::from_millis(250),
            Duration::from_secs(120),
            Duration::from_secs(3 * 86_400),
            Duration::from_nanos(7),
        ] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(5)), "5secs");
        assert_eq!(format_duration(Duration::from_secs(900)), "15mins");
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5parsecs").is_err());
    }
}
