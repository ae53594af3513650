//! Resource arithmetic over Mesos `Resource` messages and parsing of the
//! agent's `--resources` flag.
//!
//! Two resources are "the same kind" when everything but their value
//! (scalar, ranges, set) is equal: name, type, reservations, disk info,
//! allocation info and so on. [`Resources`] keeps one entry per kind.

use std::collections::BTreeMap;
use std::fmt;

use crate::v1::{self, resource, value, Resource};

/// Scalars are kept at Mesos' fixed precision of three decimals.
pub fn round_scalar(v: f64) -> f64 {
    // `+ 0.0` turns a negative zero (e.g. an empty sum) into 0.
    (v * 1000.0).round() / 1000.0 + 0.0
}

/// A bag of resources with one entry per kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources(Vec<Resource>);

/// Whether two resources are of the same kind: equal in everything but
/// their value. Compared field by field (no allocation: this is on the
/// allocator's hot path).
pub fn same_kind(a: &Resource, b: &Resource) -> bool {
    a.name == b.name
        && a.r#type == b.r#type
        && a.reservations == b.reservations
        && a.role == b.role
        && a.reservation == b.reservation
        && a.allocation_info == b.allocation_info
        && a.disk == b.disk
        && a.revocable == b.revocable
        && a.shared == b.shared
        && a.provider_id == b.provider_id
}

/// Normalised ranges: sorted, merged, non-overlapping.
fn normalize_ranges(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|(b, e)| b <= e);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (b, e) in v {
        match out.last_mut() {
            Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

fn ranges_of(r: &Resource) -> Vec<(u64, u64)> {
    r.ranges
        .as_ref()
        .map(|rs| rs.range.iter().map(|x| (x.begin, x.end)).collect())
        .unwrap_or_default()
}

fn make_ranges(v: &[(u64, u64)]) -> value::Ranges {
    value::Ranges {
        range: v
            .iter()
            .map(|(b, e)| value::Range { begin: *b, end: *e })
            .collect(),
    }
}

fn subtract_ranges(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut start, end) in a {
        let mut alive = true;
        for &(bb, be) in b {
            if !alive {
                break;
            }
            if be < start || bb > end {
                continue;
            }
            if bb > start {
                out.push((start, bb - 1));
            }
            if be >= end {
                alive = false;
            } else {
                start = be + 1;
            }
        }
        if alive {
            out.push((start, end));
        }
    }
    normalize_ranges(out)
}

fn ranges_contain(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    b.iter()
        .all(|&(bb, be)| a.iter().any(|&(ab, ae)| ab <= bb && be <= ae))
}

fn is_empty_value(r: &Resource) -> bool {
    match value::Type::try_from(r.r#type).unwrap_or(value::Type::Scalar) {
        value::Type::Scalar => r.scalar.as_ref().is_none_or(|s| s.value <= 0.0),
        value::Type::Ranges => r.ranges.as_ref().is_none_or(|x| x.range.is_empty()),
        value::Type::Set => r.set.as_ref().is_none_or(|s| s.item.is_empty()),
        value::Type::Text => true,
    }
}

/// Checks a resource is well formed: a name, a value matching its type,
/// non-negative finite scalars, ordered ranges.
pub fn validate(r: &Resource) -> Result<(), String> {
    if r.name.is_empty() {
        return Err("resource has an empty name".into());
    }
    let ty = value::Type::try_from(r.r#type)
        .map_err(|_| format!("resource '{}' has an unknown type", r.name))?;
    match ty {
        value::Type::Scalar => {
            let s = r
                .scalar
                .as_ref()
                .ok_or_else(|| format!("scalar resource '{}' has no scalar value", r.name))?;
            if !s.value.is_finite() || s.value < 0.0 {
                return Err(format!(
                    "scalar resource '{}' has an invalid value {}",
                    r.name, s.value
                ));
            }
        }
        value::Type::Ranges => {
            let rs = r
                .ranges
                .as_ref()
                .ok_or_else(|| format!("ranges resource '{}' has no ranges", r.name))?;
            if rs.range.iter().any(|x| x.begin > x.end) {
                return Err(format!(
                    "ranges resource '{}' has a range with begin > end",
                    r.name
                ));
            }
        }
        value::Type::Set => {
            if r.set.is_none() {
                return Err(format!("set resource '{}' has no set value", r.name));
            }
        }
        value::Type::Text => return Err(format!("resource '{}' cannot be of type TEXT", r.name)),
    }
    if r.scalar.is_some() as u8 + r.ranges.is_some() as u8 + r.set.is_some() as u8 > 1 {
        return Err(format!("resource '{}' has more than one value", r.name));
    }
    Ok(())
}

impl Resources {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a bag from resource messages (merging same kinds). Invalid
    /// resources are rejected with a message.
    pub fn try_from_vec(v: &[Resource]) -> Result<Self, String> {
        let mut out = Self::new();
        for r in v {
            validate(r)?;
            out.add(r);
        }
        Ok(out)
    }

    /// Builds a bag without validation (for trusted, internal resources).
    pub fn from_vec(v: &[Resource]) -> Self {
        let mut out = Self::new();
        for r in v {
            out.add(r);
        }
        out
    }

    /// The resources as messages.
    pub fn as_slice(&self) -> &[Resource] {
        &self.0
    }

    /// The resources as an owned vector.
    pub fn to_vec(&self) -> Vec<Resource> {
        self.0.clone()
    }

    /// Whether the bag is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, r: &Resource) -> Option<usize> {
        self.0.iter().position(|x| same_kind(x, r))
    }

    /// Adds one resource.
    pub fn add(&mut self, r: &Resource) {
        if is_empty_value(r) {
            return;
        }
        let Some(i) = self.position(r) else {
            let mut r = r.clone();
            if let Some(s) = r.scalar.as_mut() {
                s.value = round_scalar(s.value);
            }
            if r.ranges.is_some() {
                r.ranges = Some(make_ranges(&normalize_ranges(ranges_of(&r))));
            }
            self.0.push(r);
            return;
        };
        let mine = &mut self.0[i];
        if let (Some(a), Some(b)) = (mine.scalar.as_mut(), r.scalar.as_ref()) {
            a.value = round_scalar(a.value + b.value);
        }
        if r.ranges.is_some() {
            let mut all = ranges_of(mine);
            all.extend(ranges_of(r));
            mine.ranges = Some(make_ranges(&normalize_ranges(all)));
        }
        if let (Some(a), Some(b)) = (mine.set.as_mut(), r.set.as_ref()) {
            for item in &b.item {
                if !a.item.contains(item) {
                    a.item.push(item.clone());
                }
            }
        }
    }

    /// Adds every resource of another bag.
    pub fn add_all(&mut self, other: &Resources) {
        for r in &other.0 {
            self.add(r);
        }
    }

    /// Subtracts one resource (saturating at zero).
    pub fn subtract(&mut self, r: &Resource) {
        let Some(i) = self.position(r) else { return };
        let mine = &mut self.0[i];
        if let (Some(a), Some(b)) = (mine.scalar.as_mut(), r.scalar.as_ref()) {
            a.value = round_scalar((a.value - b.value).max(0.0));
        }
        if r.ranges.is_some() {
            let left = subtract_ranges(&ranges_of(mine), &ranges_of(r));
            mine.ranges = Some(make_ranges(&left));
        }
        if let (Some(a), Some(b)) = (mine.set.as_mut(), r.set.as_ref()) {
            a.item.retain(|x| !b.item.contains(x));
        }
        if is_empty_value(&self.0[i]) {
            self.0.remove(i);
        }
    }

    /// Subtracts every resource of another bag.
    pub fn subtract_all(&mut self, other: &Resources) {
        for r in &other.0 {
            self.subtract(r);
        }
    }

    /// Whether this bag holds at least `r`.
    pub fn contains_one(&self, r: &Resource) -> bool {
        if is_empty_value(r) {
            return true;
        }
        let Some(i) = self.position(r) else {
            return false;
        };
        let mine = &self.0[i];
        match (&mine.scalar, &r.scalar) {
            (Some(a), Some(b)) if round_scalar(b.value) > round_scalar(a.value) => return false,
            (None, Some(_)) => return false,
            _ => {}
        }
        if r.ranges.is_some() && !ranges_contain(&ranges_of(mine), &normalize_ranges(ranges_of(r)))
        {
            return false;
        }
        if let Some(b) = &r.set {
            let Some(a) = &mine.set else { return false };
            if !b.item.iter().all(|x| a.item.contains(x)) {
                return false;
            }
        }
        true
    }

    /// Whether this bag holds all of `other`.
    pub fn contains(&self, other: &Resources) -> bool {
        other.0.iter().all(|r| self.contains_one(r))
    }

    /// The total scalar quantity of `name` across kinds.
    pub fn scalar(&self, name: &str) -> f64 {
        round_scalar(
            self.0
                .iter()
                .filter(|r| r.name == name)
                .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
                .sum(),
        )
    }

    /// Scalar totals by name (cpus, mem, disk, gpus, ...).
    pub fn scalars(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for r in &self.0 {
            if let Some(s) = &r.scalar {
                *out.entry(r.name.clone()).or_insert(0.0) += s.value;
            }
        }
        for v in out.values_mut() {
            *v = round_scalar(*v);
        }
        out
    }

    /// A copy with `allocation_info` cleared on every resource.
    pub fn unallocated(&self) -> Resources {
        Resources::from_vec(
            &self
                .0
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.allocation_info = None;
                    r
                })
                .collect::<Vec<_>>(),
        )
    }

    /// A copy with every resource allocated to `role`.
    pub fn allocated_to(&self, role: &str) -> Resources {
        Resources(
            self.0
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.allocation_info = Some(resource::AllocationInfo {
                        role: Some(role.to_string()),
                    });
                    r
                })
                .collect(),
        )
    }

    /// The legacy (v0) JSON map: `{"cpus": 4, "mem": 1024, "ports": "[31000-32000]"}`.
    pub fn to_legacy_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for name in ["cpus", "mem", "disk", "gpus"] {
            map.insert(name.into(), serde_json::json!(self.scalar(name)));
        }
        for (name, v) in self.scalars() {
            map.insert(name, serde_json::json!(v));
        }
        let mut ranges: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
        for r in &self.0 {
            if r.ranges.is_some() {
                ranges.entry(&r.name).or_default().extend(ranges_of(r));
            }
        }
        for (name, v) in ranges {
            map.insert(
                name.into(),
                serde_json::json!(format_ranges(&normalize_ranges(v))),
            );
        }
        serde_json::Value::Object(map)
    }
}

fn format_ranges(v: &[(u64, u64)]) -> String {
    let parts: Vec<String> = v.iter().map(|(b, e)| format!("{b}-{e}")).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for r in &self.0 {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            f.write_str(&r.name)?;
            if let Some(role) = r.reservations.last().and_then(|x| x.role.as_deref()) {
                write!(f, "({role})")?;
            }
            f.write_str(":")?;
            if let Some(s) = &r.scalar {
                write!(f, "{}", s.value)?;
            } else if r.ranges.is_some() {
                f.write_str(&format_ranges(&ranges_of(r)))?;
            } else if let Some(s) = &r.set {
                write!(f, "{{{}}}", s.item.join(","))?;
            }
        }
        Ok(())
    }
}

/// A scalar resource.
pub fn scalar(name: &str, v: f64) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar {
            value: round_scalar(v),
        }),
        ..Default::default()
    }
}

/// A ranges resource.
pub fn ranges(name: &str, v: &[(u64, u64)]) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Ranges as i32,
        ranges: Some(make_ranges(&normalize_ranges(v.to_vec()))),
        ..Default::default()
    }
}

/// A set resource.
pub fn set(name: &str, items: &[&str]) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Set as i32,
        set: Some(value::Set {
            item: items.iter().map(|s| s.to_string()).collect(),
        }),
        ..Default::default()
    }
}

/// Converts a resource in the pre-refinement form (`role` + `reservation`)
/// to the post-refinement form (`reservations`). Idempotent.
pub fn upgrade(r: &mut Resource) {
    let role = r.role.take();
    let reservation = r.reservation.take();
    if !r.reservations.is_empty() {
        return;
    }
    match role.as_deref() {
        None | Some("*") => {}
        Some(role) => {
            let dynamic = reservation.is_some();
            let mut info = reservation.unwrap_or_default();
            info.r#type = Some(if dynamic {
                resource::reservation_info::Type::Dynamic as i32
            } else {
                resource::reservation_info::Type::Static as i32
            });
            info.role = Some(role.to_string());
            r.reservations.push(info);
        }
    }
}

/// Converts a resource to the pre-refinement form for frameworks without the
/// RESERVATION_REFINEMENT capability. Returns false when it cannot be
/// expressed (a refined reservation).
pub fn downgrade(r: &mut Resource) -> bool {
    if r.reservations.len() > 1 {
        return false;
    }
    match r.reservations.pop() {
        None => r.role = Some("*".into()),
        Some(mut info) => {
            r.role = info.role.take();
            let dynamic = info.r#type == Some(resource::reservation_info::Type::Dynamic as i32);
            if dynamic {
                info.r#type = None;
                r.reservation = Some(info);
            }
        }
    }
    true
}

/// The role a resource is reserved to, `*` when unreserved.
pub fn reservation_role(r: &Resource) -> &str {
    r.reservations
        .last()
        .and_then(|x| x.role.as_deref())
        .or(r.role.as_deref())
        .unwrap_or("*")
}

/// Parses the agent's `--resources` in either Mesos form: a JSON array of
/// Resource objects, or `name(role):value;...` where value is a scalar,
/// `[a-b,c-d]` ranges or `{x,y}` a set.
pub fn parse(text: &str) -> Result<Vec<Resource>, String> {
    let text = text.trim();
    if text.starts_with('[') && text.contains('{') && text.contains("\"name\"") {
        let values: Vec<serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("--resources is not a valid JSON array: {e}"))?;
        let mut out = Vec::new();
        for v in values {
            let mut r: Resource = crate::codec::from_json_value(v).map_err(|e| e.to_string())?;
            upgrade(&mut r);
            validate(&r)?;
            out.push(r);
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part
            .split_once(':')
            .ok_or_else(|| format!("resource '{part}' is not of the form name:value"))?;
        let (name, role) = match key.split_once('(') {
            Some((n, rest)) => {
                let role = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("resource '{part}' has an unclosed role"))?;
                (n.trim(), Some(role.trim()))
            }
            None => (key.trim(), None),
        };
        if name.is_empty() {
            return Err(format!("resource '{part}' has an empty name"));
        }
        let val = val.trim();
        let mut r = if let Some(inner) = val.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            let mut rs = Vec::new();
            for piece in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (b, e) = piece.split_once('-').unwrap_or((piece, piece));
                let b: u64 = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad range '{piece}' in resource '{name}'"))?;
                let e: u64 = e
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad range '{piece}' in resource '{name}'"))?;
                if b > e {
                    return Err(format!(
                        "range '{piece}' of resource '{name}' has begin > end"
                    ));
                }
                rs.push((b, e));
            }
            ranges(name, &rs)
        } else if let Some(inner) = val.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            let items: Vec<&str> = inner
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            set(name, &items)
        } else {
            let v: f64 = val
                .parse()
                .map_err(|_| format!("resource '{name}' has a non-numeric value '{val}'"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("resource '{name}' has an invalid value '{val}'"));
            }
            scalar(name, v)
        };
        if let Some(role) = role {
            if role != "*" {
                r.reservations.push(resource::ReservationInfo {
                    r#type: Some(resource::reservation_info::Type::Static as i32),
                    role: Some(role.to_string()),
                    ..Default::default()
                });
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// An `Attribute` list parsed from `--attributes` (`rack:a;zone:1`).
pub fn parse_attributes(text: &str) -> Result<Vec<v1::Attribute>, String> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, val) = part
            .split_once(':')
            .ok_or_else(|| format!("attribute '{part}' is not of the form name:value"))?;
        let name = name.trim().to_string();
        let val = val.trim();
        let mut a = v1::Attribute {
            name,
            ..Default::default()
        };
        if let Ok(f) = val.parse::<f64>() {
            a.r#type = value::Type::Scalar as i32;
            a.scalar = Some(value::Scalar { value: f });
        } else if val.starts_with('[') {
            let r = parse(&format!("x:{val}"))?.remove(0);
            a.r#type = value::Type::Ranges as i32;
            a.ranges = r.ranges;
        } else {
            a.r#type = value::Type::Text as i32;
            a.text = Some(value::Text {
                value: val.to_string(),
            });
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_form() {
        let rs = parse("cpus:4;mem:8192;ports:[31000-32000];disk(eng):100").unwrap();
        let bag = Resources::from_vec(&rs);
        assert_eq!(bag.scalar("cpus"), 4.0);
        assert_eq!(bag.scalar("mem"), 8192.0);
        assert_eq!(bag.to_legacy_json()["ports"], "[31000-32000]");
        assert_eq!(reservation_role(&rs[3]), "eng");
        assert!(parse("cpus:x").is_err());
        assert!(parse("cpus").is_err());
        assert!(parse("ports:[5-1]").is_err());
    }

    #[test]
    fn parses_json_form() {
        let rs = parse(
            r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},
                {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":10}]}}]"#,
        )
        .unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(Resources::from_vec(&rs).scalar("cpus"), 2.0);
    }

    #[test]
    fn arithmetic() {
        let mut a = Resources::from_vec(&[scalar("cpus", 4.0), ranges("ports", &[(1, 100)])]);
        let b = Resources::from_vec(&[scalar("cpus", 1.5), ranges("ports", &[(10, 20)])]);
        assert!(a.contains(&b));
        a.subtract_all(&b);
        assert_eq!(a.scalar("cpus"), 2.5);
        assert!(!a.contains(&Resources::from_vec(&[ranges("ports", &[(15, 15)])])));
        assert!(a.contains(&Resources::from_vec(&[ranges("ports", &[(21, 30)])])));
        a.add_all(&b);
        assert_eq!(
            a,
            Resources::from_vec(&[scalar("cpus", 4.0), ranges("ports", &[(1, 100)])])
        );
        // A reserved resource is a different kind from an unreserved one.
        let reserved = parse("cpus(eng):1").unwrap();
        assert!(!a.contains(&Resources::from_vec(&reserved)));
    }

    #[test]
    fn refinement_forms() {
        let mut r = parse("cpus(eng):1").unwrap().remove(0);
        assert!(downgrade(&mut r));
        assert_eq!(r.role.as_deref(), Some("eng"));
        upgrade(&mut r);
        assert_eq!(reservation_role(&r), "eng");
        assert!(r.role.is_none());
    }

    proptest::proptest! {
        #[test]
        fn add_then_subtract_is_identity(a in 0u32..10_000, b in 0u32..10_000, lo in 0u64..1000, len in 0u64..1000) {
            let base = Resources::from_vec(&[scalar("cpus", a as f64 / 100.0), ranges("ports", &[(lo, lo + len)])]);
            let delta = Resources::from_vec(&[scalar("cpus", b as f64 / 100.0), ranges("ports", &[(lo + len + 5, lo + len + 10)])]);
            let mut sum = base.clone();
            sum.add_all(&delta);
            proptest::prop_assert!(sum.contains(&base));
            proptest::prop_assert!(sum.contains(&delta));
            sum.subtract_all(&delta);
            proptest::prop_assert_eq!(sum, base);
        }
    }
}
