//! mesos/kafka's small languages: broker expressions (`0`, `0,1`, `0..2`,
//! `0,1..2`, `*`, with an optional attribute filter `*[rack=r1]`), periods
//! (`10s`, `5m`, `1h`), option maps (`k=v,k2=v2`, `\,` escaping a comma in a
//! value), port ranges (`31092`, `31090..31100`) and topic expressions
//! (`t0`, `t0,t1`, `t*`, `*`).

use std::collections::{BTreeMap, BTreeSet};

/// Most brokers one expression may name (`0..100000` is refused, not
/// allocated).
pub const MAX_BROKERS: usize = 1000;
/// Largest broker id.
pub const MAX_BROKER_ID: u32 = 1_000_000;
/// Longest expression or option text accepted.
pub const MAX_TEXT: usize = 16 * 1024;

/// A parsed broker expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerExpr {
    /// `*` (every existing broker), else the ids named.
    pub any: bool,
    /// The ids named (with `any`: none).
    pub ids: BTreeSet<u32>,
    /// `[attr=value,...]`: only brokers whose task has these attributes
    /// (`hostname` included; a value ending in `*` is a prefix; no value:
    /// the attribute is present).
    pub attributes: Vec<(String, Option<String>)>,
}

impl BrokerExpr {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty broker expression (examples: 0, 0,1, 0..2, *)".into());
        }
        if text.len() > MAX_TEXT {
            return Err(format!("longer than {MAX_TEXT} characters"));
        }
        let (ids_text, attributes) = match text.strip_suffix(']') {
            Some(head) => {
                let at = head
                    .rfind('[')
                    .ok_or_else(|| format!("invalid expression {text:?}: ']' without '['"))?;
                let attrs = parse_map(&head[at + 1..])
                    .map_err(|e| format!("invalid attribute filter in {text:?}: {e}"))?
                    .into_iter()
                    .map(|(k, v)| (k, (!v.is_empty()).then_some(v)))
                    .collect();
                (&head[..at], attrs)
            }
            None => (text, Vec::new()),
        };
        let mut any = false;
        let mut ids = BTreeSet::new();
        for part in ids_text.split(',').map(str::trim) {
            let bad = || {
                format!(
                    "invalid broker expression {text:?}: {part:?} is not an id, a range a..b or *"
                )
            };
            if part == "*" {
                any = true;
            } else if let Some((a, b)) = part.split_once("..") {
                let a = parse_id(a.trim()).ok_or_else(bad)?;
                let b = parse_id(b.trim()).ok_or_else(bad)?;
                if b < a {
                    return Err(format!(
                        "invalid broker expression {text:?}: the range {a}..{b} is empty"
                    ));
                }
                if (b - a) as usize >= MAX_BROKERS {
                    return Err(format!(
                        "invalid broker expression {text:?}: more than {MAX_BROKERS} brokers"
                    ));
                }
                ids.extend(a..=b);
            } else {
                ids.insert(parse_id(part).ok_or_else(bad)?);
            }
            if ids.len() > MAX_BROKERS {
                return Err(format!(
                    "invalid broker expression {text:?}: more than {MAX_BROKERS} brokers"
                ));
            }
        }
        if any {
            ids.clear();
        }
        Ok(Self {
            any,
            ids,
            attributes,
        })
    }

    /// The ids this expression selects among `existing` brokers (with
    /// `attrs_of(id)`, their task's attributes and hostname, for the
    /// filter). Named ids that do not exist are kept (the caller decides).
    pub fn select(
        &self,
        existing: &BTreeSet<u32>,
        attrs_of: impl Fn(u32) -> Option<BTreeMap<String, String>>,
    ) -> Vec<u32> {
        let base: Vec<u32> = if self.any {
            existing.iter().copied().collect()
        } else {
            self.ids.iter().copied().collect()
        };
        if self.attributes.is_empty() {
            return base;
        }
        base.into_iter()
            .filter(|id| {
                let Some(attrs) = attrs_of(*id) else {
                    return false;
                };
                self.attributes
                    .iter()
                    .all(|(k, want)| match (attrs.get(k), want) {
                        (Some(have), Some(w)) => match w.strip_suffix('*') {
                            Some(prefix) => have.starts_with(prefix),
                            None => have == w,
                        },
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
            })
            .collect()
    }
}

fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|id| *id <= MAX_BROKER_ID)
}

/// Parses mesos/kafka's map text `k=v,k2=v2` (`\,` is a comma inside a
/// value; a key without `=` has an empty value). Keys must be non-empty.
pub fn parse_map(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.len() > MAX_TEXT {
        return Err(format!("longer than {MAX_TEXT} characters"));
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        if item.trim().is_empty() {
            continue;
        }
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (item.trim(), ""),
        };
        if k.is_empty() {
            return Err(format!("{item:?} has no key (expected key=value)"));
        }
        if out.iter().any(|(have, _)| have == k) {
            return Err(format!("{k} is given twice"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Writes a map as mesos/kafka does (`k=v,k2=v2`, commas in values
/// escaped).
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={}", v.replace(',', "\\,"))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a period (`0`, `250ms`, `10s`, `5m`, `3h`, `1d`) into
/// milliseconds.
pub fn parse_period(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{t:?} has no unit (ms, s, m, h, d), e.g. 10s"))?;
    let (n, unit) = t.split_at(split);
    if n.is_empty() || n.len() > 12 {
        return Err(format!("{t:?} is not a period (examples: 10s, 5m, 1h)"));
    }
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{t:?} is not a period (examples: 10s, 5m, 1h)"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{t:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{t:?} is too long"))
}

/// Writes milliseconds as a period in the largest unit that divides them.
pub fn format_period(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// A port or an inclusive range of ports (`31092`, `31090..31100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    /// First port.
    pub start: u64,
    /// Last port.
    pub end: u64,
}

impl PortRange {
    /// Parses `31092` or `31090..31100`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let port = |s: &str| {
            s.trim()
                .parse::<u64>()
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| format!("{t:?} is not a port (1-65535) or a range a..b"))
        };
        let (start, end) = match t.split_once("..") {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(t)?;
                (p, p)
            }
        };
        if end < start {
            return Err(format!("{t:?}: the range is empty"));
        }
        Ok(Self { start, end })
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u64) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}..{}", self.start, self.end)
        }
    }
}

/// The topics a topic expression names among `existing` (`*` all, `t*`
/// a prefix, else the names given, existing or not).
pub fn expand_topics(text: &str, existing: &[String]) -> Result<Vec<String>, String> {
    if text.len() > MAX_TEXT {
        return Err(format!("longer than {MAX_TEXT} characters"));
    }
    let mut out: Vec<String> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.strip_suffix('*') {
            Some(prefix) => {
                for t in existing.iter().filter(|t| t.starts_with(prefix)) {
                    if !out.contains(t) {
                        out.push(t.clone());
                    }
                }
            }
            None => {
                validate_topic(part)?;
                if !out.iter().any(|t| t == part) {
                    out.push(part.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Kafka's rules for a topic name: 1 to 249 of `[A-Za-z0-9._-]`, not `.`
/// or `..`.
pub fn validate_topic(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a topic name (1 to 249 characters, not . or ..)"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "{name:?} is not a topic name (only A-Z, a-z, 0-9, '.', '_' and '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str, existing: &[u32]) -> Vec<u32> {
        let existing: BTreeSet<u32> = existing.iter().copied().collect();
        BrokerExpr::parse(text)
            .expect("parses")
            .select(&existing, |_| None)
    }

    #[test]
    fn broker_expressions_as_mesos_kafka_reads_them() {
        assert_eq!(ids("0", &[]), [0]);
        assert_eq!(ids("0,1", &[]), [0, 1]);
        assert_eq!(ids("0..2", &[]), [0, 1, 2]);
        assert_eq!(ids("0,1..2", &[]), [0, 1, 2]);
        assert_eq!(ids(" 2 , 0 ", &[]), [0, 2]);
        assert_eq!(ids("*", &[3, 1]), [1, 3]);
        assert!(ids("*", &[]).is_empty());
        for bad in [
            "",
            "a",
            "-1",
            "1..",
            "..2",
            "2..1",
            "1,,x",
            "0..5000",
            "1.5",
            "4294967296",
            "0[rack",
        ] {
            assert!(BrokerExpr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attribute_filters_select_by_task_attributes() {
        let e = BrokerExpr::parse("*[rack=r1,hostname=slave*]").expect("parses");
        let existing: BTreeSet<u32> = [0, 1, 2].into();
        let attrs = |id: u32| {
            let mut m = BTreeMap::new();
            m.insert(
                "rack".to_string(),
                if id == 1 { "r2" } else { "r1" }.to_string(),
            );
            m.insert("hostname".to_string(), format!("slave{id}"));
            (id != 2).then_some(m)
        };
        assert_eq!(e.select(&existing, attrs), [0]);
        let present = BrokerExpr::parse("0..2[rack]").expect("parses");
        assert_eq!(present.select(&existing, attrs), [0, 1]);
    }

    #[test]
    fn maps_with_escaped_commas() {
        let m = parse_map("log.dirs=/a\\,/b,num.io.threads=16").expect("map");
        assert_eq!(
            m,
            [
                ("log.dirs".to_string(), "/a,/b".to_string()),
                ("num.io.threads".to_string(), "16".to_string())
            ]
        );
        let round: BTreeMap<String, String> = m.into_iter().collect();
        assert_eq!(format_map(&round), "log.dirs=/a\\,/b,num.io.threads=16");
        assert!(parse_map("").expect("empty").is_empty());
        assert!(parse_map("=x").is_err());
        assert!(parse_map("a=1,a=2").is_err());
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("10s"), Ok(10_000));
        assert_eq!(parse_period("5m"), Ok(300_000));
        assert_eq!(parse_period("1h"), Ok(3_600_000));
        assert_eq!(parse_period("250ms"), Ok(250));
        assert_eq!(parse_period("0"), Ok(0));
        for bad in ["", "10", "s", "10x", "-1s", "1.5s", "99999999999999999d"] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_period(600_000), "10m");
        assert_eq!(format_period(90_000), "90s");
        assert_eq!(format_period(1500), "1500ms");
        assert_eq!(format_period(0), "0");
    }

    #[test]
    fn ports_and_topics() {
        assert_eq!(
            PortRange::parse("31090..31100"),
            Ok(PortRange {
                start: 31090,
                end: 31100
            })
        );
        assert_eq!(
            PortRange::parse("9092").map(|p| p.to_string()),
            Ok("9092".into())
        );
        for bad in ["0", "70000", "b", "10..5", ""] {
            assert!(PortRange::parse(bad).is_err(), "{bad:?}");
        }
        let existing = vec!["t0".to_string(), "t1".to_string(), "x".to_string()];
        assert_eq!(
            expand_topics("t*", &existing),
            Ok(vec!["t0".into(), "t1".into()])
        );
        assert_eq!(expand_topics("*", &existing).map(|v| v.len()), Ok(3));
        assert_eq!(
            expand_topics("new,x", &existing),
            Ok(vec!["new".into(), "x".into()])
        );
        assert!(expand_topics("a b", &existing).is_err());
        assert!(validate_topic("..").is_err());
    }
}
