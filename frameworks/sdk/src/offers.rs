//! Matching offers: taking what a task needs out of an offer (scalars,
//! ports from ranges, reserved before unreserved), reservation and volume
//! bookkeeping (RESERVE, CREATE, UNRESERVE, DESTROY operations; finding a
//! framework's reserved resources and volumes in an offer), and placement
//! constraints over hostnames and agent attributes (Marathon's operators:
//! UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER).

use std::collections::BTreeMap;

use corral_api::resources::{self, Resources};
use corral_api::v1;

/// What one task needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MB.
    pub mem: f64,
    /// Disk, MB (0: none).
    pub disk: f64,
    /// Number of ports.
    pub ports: usize,
}

/// The role an offered resource is allocated to (`*` when the offer
/// carries no allocation info).
pub fn allocation_role(r: &v1::Resource) -> &str {
    r.allocation_info
        .as_ref()
        .and_then(|a| a.role.as_deref())
        .unwrap_or("*")
}

/// Takes `need` out of `available` (resources of one offer allocated to
/// one role), preferring reserved resources: the resources to put in a
/// TaskInfo, with the chosen ports as single-port ranges, and what is left.
/// `None` when it does not fit.
pub fn take(available: &Resources, need: &Need) -> Option<(Vec<v1::Resource>, Resources)> {
    let mut left = available.clone();
    let mut taken = Vec::new();
    for (name, amount) in [("cpus", need.cpus), ("mem", need.mem), ("disk", need.disk)] {
        let mut still = resources::round_scalar(amount);
        if still <= 0.0 {
            continue;
        }
        // Reserved first (the framework's own), then unreserved; plain disk
        // only (never a persistent volume).
        let mut candidates: Vec<v1::Resource> = left
            .as_slice()
            .iter()
            .filter(|r| r.name == name && r.scalar.is_some() && r.disk.is_none())
            .cloned()
            .collect();
        candidates.sort_by_key(|r| r.reservations.is_empty());
        for candidate in candidates {
            if still <= 0.0 {
                break;
            }
            let have = candidate.scalar.as_ref().map_or(0.0, |s| s.value);
            let use_now = resources::round_scalar(have.min(still));
            if use_now <= 0.0 {
                continue;
            }
            let mut part = candidate.clone();
            part.scalar = Some(v1::value::Scalar { value: use_now });
            left.subtract(&part);
            taken.push(part);
            still = resources::round_scalar(still - use_now);
        }
        if still > 0.0 {
            return None;
        }
    }
    if need.ports > 0 {
        let mut still = need.ports;
        let candidates: Vec<v1::Resource> = left
            .as_slice()
            .iter()
            .filter(|r| r.name == "ports" && r.ranges.is_some())
            .cloned()
            .collect();
        for candidate in candidates {
            if still == 0 {
                break;
            }
            let ranges = candidate.ranges.clone().unwrap_or_default();
            let chosen = pick_ports(&ranges, still.min(count_ports(&ranges) as usize))?;
            for port in chosen {
                let mut part = candidate.clone();
                part.ranges = Some(v1::value::Ranges {
                    range: vec![v1::value::Range {
                        begin: port,
                        end: port,
                    }],
                });
                left.subtract(&part);
                taken.push(part);
                still -= 1;
            }
        }
        if still > 0 {
            return None;
        }
    }
    Some((taken, left))
}

fn count_ports(ranges: &v1::value::Ranges) -> u64 {
    ranges
        .range
        .iter()
        .map(|r| r.end.saturating_sub(r.begin).saturating_add(1))
        .sum()
}

/// The ports among `resources` (taken for a task), in order.
pub fn ports_of(resources: &[v1::Resource]) -> Vec<u64> {
    resources
        .iter()
        .filter(|r| r.name == "ports")
        .filter_map(|r| r.ranges.as_ref())
        .flat_map(|r| r.range.iter().flat_map(|x| x.begin..=x.end))
        .collect()
}

/// The first `n` ports of `ranges`, lowest first; `None` if there are
/// fewer.
pub fn pick_ports(ranges: &v1::value::Ranges, n: usize) -> Option<Vec<u64>> {
    let mut sorted: Vec<&v1::value::Range> = ranges.range.iter().collect();
    sorted.sort_by_key(|r| r.begin);
    let mut out = Vec::with_capacity(n);
    for r in sorted {
        let mut p = r.begin;
        while out.len() < n && p <= r.end {
            out.push(p);
            if p == u64::MAX {
                break;
            }
            p += 1;
        }
        if out.len() == n {
            return Some(out);
        }
    }
    (out.len() == n).then_some(out)
}

/// The role `r` is reserved for (its innermost reservation), `None` when
/// unreserved.
pub fn reservation_role(r: &v1::Resource) -> Option<&str> {
    match resources::reservation_role(r) {
        "*" => None,
        role => Some(role),
    }
}

/// RESERVE `resources` (taken out of an offer, unreserved) for `role`
/// dynamically, with `principal` and `labels`; returns the operation and
/// the reserved resources as they will be offered.
pub fn reserve(
    resources: &[v1::Resource],
    role: &str,
    principal: Option<&str>,
    labels: &[(&str, &str)],
) -> (v1::offer::Operation, Vec<v1::Resource>) {
    let reservation = v1::resource::ReservationInfo {
        r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
        role: Some(role.to_string()),
        principal: principal.map(str::to_string),
        labels: (!labels.is_empty()).then(|| v1::Labels {
            labels: labels
                .iter()
                .map(|(k, v)| v1::Label {
                    key: k.to_string(),
                    value: Some(v.to_string()),
                })
                .collect(),
        }),
    };
    let reserved: Vec<v1::Resource> = resources
        .iter()
        .cloned()
        .map(|mut r| {
            r.reservations.push(reservation.clone());
            r
        })
        .collect();
    let op = v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Reserve as i32),
        reserve: Some(v1::offer::operation::Reserve {
            source: Vec::new(),
            resources: reserved.clone(),
        }),
        ..Default::default()
    };
    (op, reserved)
}

/// UNRESERVE `resources` (reserved, as offered).
pub fn unreserve(resources: &[v1::Resource]) -> v1::offer::Operation {
    v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Unreserve as i32),
        unreserve: Some(v1::offer::operation::Unreserve {
            resources: resources.to_vec(),
        }),
        ..Default::default()
    }
}

/// CREATE a persistent volume `persistence_id` out of `disk` (reserved
/// disk, as offered), mounted read-write at `container_path` in the
/// sandbox; returns the operation and the volume as it will be offered.
pub fn create_volume(
    disk: &v1::Resource,
    persistence_id: &str,
    container_path: &str,
    principal: Option<&str>,
) -> (v1::offer::Operation, v1::Resource) {
    let mut volume = disk.clone();
    let mut info = volume.disk.take().map(|d| *d).unwrap_or_default();
    info.persistence = Some(v1::resource::disk_info::Persistence {
        id: persistence_id.to_string(),
        principal: principal.map(str::to_string),
    });
    info.volume = Some(v1::Volume {
        mode: v1::volume::Mode::Rw as i32,
        container_path: container_path.to_string(),
        ..Default::default()
    });
    volume.disk = Some(Box::new(info));
    let op = v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Create as i32),
        create: Some(v1::offer::operation::Create {
            volumes: vec![volume.clone()],
        }),
        ..Default::default()
    };
    (op, volume)
}

/// DESTROY persistent `volumes` (as offered).
pub fn destroy_volumes(volumes: &[v1::Resource]) -> v1::offer::Operation {
    v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Destroy as i32),
        destroy: Some(v1::offer::operation::Destroy {
            volumes: volumes.to_vec(),
        }),
        ..Default::default()
    }
}

/// The persistent volume `persistence_id` among offered resources.
pub fn find_volume<'a>(
    resources: &'a [v1::Resource],
    persistence_id: &str,
) -> Option<&'a v1::Resource> {
    resources.iter().find(|r| {
        r.disk
            .as_ref()
            .and_then(|d| d.persistence.as_ref())
            .is_some_and(|p| p.id == persistence_id)
    })
}

/// The offered resources reserved for `role` (volumes included).
pub fn reserved_for<'a>(resources: &'a [v1::Resource], role: &str) -> Vec<&'a v1::Resource> {
    resources
        .iter()
        .filter(|r| reservation_role(r) == Some(role))
        .collect()
}

/// An agent as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// Its hostname.
    pub hostname: String,
    /// Its attributes, as text (`rack` -> `r1`; scalars as numbers).
    pub attributes: BTreeMap<String, String>,
}

impl Placement {
    /// The placement of an offer's agent.
    pub fn of_offer(offer: &v1::Offer) -> Self {
        Self {
            hostname: offer.hostname.clone(),
            attributes: offer
                .attributes
                .iter()
                .map(|a| (a.name.clone(), attribute_text(a)))
                .collect(),
        }
    }

    /// The value of `field`: `hostname`, or an attribute.
    pub fn field(&self, field: &str) -> Option<&str> {
        if field == "hostname" {
            Some(&self.hostname)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

/// An attribute's value as text.
pub fn attribute_text(a: &v1::Attribute) -> String {
    if let Some(t) = &a.text {
        t.value.clone()
    } else if let Some(s) = &a.scalar {
        let v = s.value;
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    } else if let Some(r) = &a.ranges {
        let parts: Vec<String> = r
            .range
            .iter()
            .map(|x| format!("{}-{}", x.begin, x.end))
            .collect();
        format!("[{}]", parts.join(","))
    } else if let Some(s) = &a.set {
        format!("{{{}}}", s.item.join(","))
    } else {
        String::new()
    }
}

/// A placement constraint, Marathon's operators over `hostname` or an
/// attribute.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// At most one instance per value of the field.
    Unique(String),
    /// Only on agents whose field equals the value.
    Cluster(String, String),
    /// Spread evenly over the field's values (`n` of them, when known).
    GroupBy(String, Option<usize>),
    /// Only where the field matches the regular expression (whole value).
    Like(String, regex::Regex),
    /// Only where the field does not match it.
    Unlike(String, regex::Regex),
    /// At most `n` instances per value of the field.
    MaxPer(String, usize),
}

/// A constraint that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid constraint {given}: {reason}")]
pub struct ConstraintError {
    /// The constraint as given.
    pub given: String,
    /// What is wrong.
    pub reason: String,
}

impl Constraint {
    /// Parses Marathon's `[field, OPERATOR, value?]`.
    pub fn parse(parts: &[String]) -> Result<Self, ConstraintError> {
        let given = format!("{parts:?}");
        let bad = |reason: &str| ConstraintError {
            given: given.clone(),
            reason: reason.to_string(),
        };
        let (field, op, value) = match parts {
            [f, o] => (f, o, None),
            [f, o, v] => (f, o, Some(v.as_str())),
            _ => {
                return Err(bad(
                    "expected [field, OPERATOR] or [field, OPERATOR, value]",
                ))
            }
        };
        if field.is_empty() {
            return Err(bad("the field is empty"));
        }
        let field = field.clone();
        let need = |what: &str| value.ok_or_else(|| bad(&format!("{op} needs {what}")));
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(&format!("{v:?} is not a positive number")))
        };
        let pattern = |v: &str| {
            regex::Regex::new(&format!("^(?:{v})$"))
                .map_err(|e| bad(&format!("not a regular expression: {e}")))
        };
        Ok(match op.to_ascii_uppercase().as_str() {
            "UNIQUE" => Constraint::Unique(field),
            "CLUSTER" => Constraint::Cluster(field, need("a value")?.to_string()),
            "GROUP_BY" => Constraint::GroupBy(field, value.map(number).transpose()?),
            "LIKE" => Constraint::Like(field, pattern(need("a regular expression")?)?),
            "UNLIKE" => Constraint::Unlike(field, pattern(need("a regular expression")?)?),
            "MAX_PER" => Constraint::MaxPer(field, number(need("a number")?)?),
            other => {
                return Err(bad(&format!(
                    "unknown operator {other:?} (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER)"
                )))
            }
        })
    }

    /// Whether one more instance may go to `candidate`, given where the
    /// others run (`placed`) and the agents known (`known`, for GROUP_BY
    /// without a count). `Err` says why not.
    pub fn admits(
        &self,
        candidate: &Placement,
        placed: &[Placement],
        known: &[Placement],
    ) -> Result<(), String> {
        let count_with = |field: &str, value: &str| {
            placed
                .iter()
                .filter(|p| p.field(field) == Some(value))
                .count()
        };
        match self {
            Constraint::Unique(f) => match candidate.field(f) {
                None => Err(format!("the agent has no {f}")),
                Some(v) if count_with(f, v) > 0 => {
                    Err(format!("an instance already runs where {f}={v} (UNIQUE)"))
                }
                Some(_) => Ok(()),
            },
            Constraint::Cluster(f, want) => match candidate.field(f) {
                Some(v) if v == want => Ok(()),
                Some(v) => Err(format!("{f}={v}, not {want} (CLUSTER)")),
                None => Err(format!("the agent has no {f} (CLUSTER {want})")),
            },
            Constraint::Like(f, re) => match candidate.field(f) {
                Some(v) if re.is_match(v) => Ok(()),
                Some(v) => Err(format!("{f}={v} does not match {} (LIKE)", re.as_str())),
                None => Err(format!("the agent has no {f} (LIKE)")),
            },
            Constraint::Unlike(f, re) => match candidate.field(f) {
                Some(v) if re.is_match(v) => {
                    Err(format!("{f}={v} matches {} (UNLIKE)", re.as_str()))
                }
                _ => Ok(()),
            },
            Constraint::MaxPer(f, n) => match candidate.field(f) {
                None => Err(format!("the agent has no {f}")),
                Some(v) if count_with(f, v) >= *n => Err(format!(
                    "{n} instance(s) already run where {f}={v} (MAX_PER {n})"
                )),
                Some(_) => Ok(()),
            },
            Constraint::GroupBy(f, groups) => {
                let Some(v) = candidate.field(f) else {
                    return Err(format!("the agent has no {f}"));
                };
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for p in known {
                    if let Some(k) = p.field(f) {
                        counts.entry(k).or_insert(0);
                    }
                }
                counts.entry(v).or_insert(0);
                for p in placed {
                    if let Some(k) = p.field(f) {
                        *counts.entry(k).or_insert(0) += 1;
                    }
                }
                // With a declared number of groups, groups not seen yet
                // count as empty.
                let min = if groups.is_some_and(|g| counts.len() < g) {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                let here = counts.get(v).copied().unwrap_or(0);
                if here > min {
                    Err(format!(
                        "{f}={v} already has {here} instance(s), more than the emptiest group's {min} (GROUP_BY)"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Why `instances` instances under `constraints` can never be placed on
/// `agents` (the whole cluster), if they cannot: no agent passes the
/// value constraints (CLUSTER, LIKE, UNLIKE, and a field UNIQUE, MAX_PER or
/// GROUP_BY needs), or too few distinct values remain for UNIQUE or
/// MAX_PER. Resources are not considered.
pub fn unsatisfiable(
    constraints: &[Constraint],
    instances: usize,
    agents: &[Placement],
) -> Option<String> {
    if agents.is_empty() {
        return None;
    }
    // Whether an agent could ever take an instance under `c`.
    let passes = |c: &Constraint, a: &Placement| match c {
        Constraint::Cluster(..) | Constraint::Like(..) | Constraint::Unlike(..) => {
            c.admits(a, &[], &[]).is_ok()
        }
        Constraint::Unique(f) | Constraint::MaxPer(f, _) | Constraint::GroupBy(f, _) => {
            a.field(f).is_some()
        }
    };
    let fits: Vec<&Placement> = agents
        .iter()
        .filter(|a| constraints.iter().all(|c| passes(c, a)))
        .collect();
    if fits.is_empty() {
        let why: Vec<String> = constraints
            .iter()
            .filter(|c| agents.iter().all(|a| !passes(c, a)))
            .map(ToString::to_string)
            .collect();
        let why = if why.is_empty() {
            "the constraints together".to_string()
        } else {
            why.join(", ")
        };
        return Some(format!(
            "no agent of the cluster ({} known) satisfies {why}",
            agents.len()
        ));
    }
    for c in constraints {
        let (f, per) = match c {
            Constraint::Unique(f) => (f, 1),
            Constraint::MaxPer(f, n) => (f, *n),
            _ => continue,
        };
        let values: std::collections::BTreeSet<&str> =
            fits.iter().filter_map(|a| a.field(f)).collect();
        if values.len().saturating_mul(per) < instances {
            return Some(format!(
                "{instances} instances under {c} need {} distinct values of {f}, the agents that fit have {}",
                instances.div_ceil(per),
                values.len()
            ));
        }
    }
    None
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Constraint::Unique(k) => write!(f, "[{k}, UNIQUE]"),
            Constraint::Cluster(k, v) => write!(f, "[{k}, CLUSTER, {v}]"),
            Constraint::GroupBy(k, None) => write!(f, "[{k}, GROUP_BY]"),
            Constraint::GroupBy(k, Some(n)) => write!(f, "[{k}, GROUP_BY, {n}]"),
            Constraint::Like(k, re) => write!(f, "[{k}, LIKE, {}]", re.as_str()),
            Constraint::Unlike(k, re) => write!(f, "[{k}, UNLIKE, {}]", re.as_str()),
            Constraint::MaxPer(k, n) => write!(f, "[{k}, MAX_PER, {n}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(text: &str, role: &str) -> Resources {
        let mut v = resources::parse(text).expect("resources");
        for r in &mut v {
            r.allocation_info = Some(v1::resource::AllocationInfo {
                role: Some(role.to_string()),
            });
        }
        Resources::from_vec(&v)
    }

    #[test]
    fn takes_scalars_and_ports_and_leaves_the_rest() {
        let have = offered(
            "cpus:2;mem:1024;disk:100;ports:[31000-31001,31005-31005]",
            "*",
        );
        let need = Need {
            cpus: 0.5,
            mem: 256.0,
            disk: 0.0,
            ports: 3,
        };
        let (taken, left) = take(&have, &need).expect("fits");
        assert_eq!(ports_of(&taken), [31000, 31001, 31005]);
        let taken = Resources::from_vec(&taken);
        assert_eq!(taken.scalar("cpus"), 0.5);
        assert_eq!(taken.scalar("mem"), 256.0);
        assert_eq!(left.scalar("cpus"), 1.5);
        assert!(take(
            &have,
            &Need {
                cpus: 3.0,
                ..need.clone()
            }
        )
        .is_none());
        assert!(take(&have, &Need { ports: 4, ..need }).is_none());
    }

    #[test]
    fn picks_the_lowest_ports() {
        let r = v1::value::Ranges {
            range: vec![
                v1::value::Range { begin: 10, end: 11 },
                v1::value::Range { begin: 1, end: 1 },
            ],
        };
        assert_eq!(pick_ports(&r, 2), Some(vec![1, 10]));
        assert_eq!(pick_ports(&r, 3), Some(vec![1, 10, 11]));
        assert_eq!(pick_ports(&r, 4), None);
        assert_eq!(pick_ports(&r, 0), Some(vec![]));
    }

    #[test]
    fn reservation_and_volume_bookkeeping() {
        let offered = offered("cpus:1;disk:100", "db");
        let disk: Vec<v1::Resource> = offered
            .as_slice()
            .iter()
            .filter(|r| r.name == "disk")
            .cloned()
            .collect();
        let (op, reserved) = reserve(&disk, "db", Some("ops"), &[("owner", "kafka")]);
        assert_eq!(op.r#type, Some(v1::offer::operation::Type::Reserve as i32));
        assert_eq!(reservation_role(&reserved[0]), Some("db"));
        assert_eq!(reserved_for(&reserved, "db").len(), 1);
        assert!(reserved_for(offered.as_slice(), "db").is_empty());
        let (create, volume) = create_volume(&reserved[0], "kafka-0", "data", Some("ops"));
        assert!(create.create.is_some());
        let all = vec![reserved[0].clone(), volume.clone()];
        assert_eq!(find_volume(&all, "kafka-0"), Some(&volume));
        assert_eq!(find_volume(&all, "other"), None);
        assert_eq!(
            destroy_volumes(&[volume]).r#type,
            Some(v1::offer::operation::Type::Destroy as i32)
        );
        assert!(unreserve(&reserved).unreserve.is_some());
        // Both conversions are ones the master and agent accept.
        let reserve_conv = corral_api::operations::conversion(&op);
        assert!(reserve_conv.is_ok(), "{reserve_conv:?}");
        let create_conv = corral_api::operations::conversion(&create);
        assert!(create_conv.is_ok(), "{create_conv:?}");
    }

    fn at(host: &str, rack: &str) -> Placement {
        Placement {
            hostname: host.into(),
            attributes: [("rack".to_string(), rack.to_string())].into(),
        }
    }

    fn c(parts: &[&str]) -> Constraint {
        Constraint::parse(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("constraint")
    }

    #[test]
    fn constraints_no_agent_can_ever_satisfy_are_found() {
        let agents = [at("a", "r1"), at("b", "r1"), at("c", "r2")];
        assert_eq!(
            unsatisfiable(&[c(&["rack", "CLUSTER", "r2"])], 1, &agents),
            None
        );
        let why = unsatisfiable(&[c(&["rack", "CLUSTER", "r9"])], 1, &agents).expect("none");
        assert!(why.contains("[rack, CLUSTER, r9]"), "{why}");
        let why = unsatisfiable(&[c(&["zone", "UNIQUE"])], 1, &agents).expect("no zone");
        assert!(why.contains("[zone, UNIQUE]"), "{why}");
        assert_eq!(
            unsatisfiable(&[c(&["hostname", "UNIQUE"])], 3, &agents),
            None
        );
        let why = unsatisfiable(&[c(&["hostname", "UNIQUE"])], 4, &agents).expect("4 > 3");
        assert!(why.contains("need 4 distinct values of hostname"), "{why}");
        // Only the agents that pass CLUSTER count for UNIQUE.
        let both = [c(&["rack", "CLUSTER", "r1"]), c(&["hostname", "UNIQUE"])];
        assert!(unsatisfiable(&both, 3, &agents).is_some());
        assert_eq!(
            unsatisfiable(&[c(&["rack", "MAX_PER", "2"])], 4, &agents),
            None
        );
        assert!(unsatisfiable(&[c(&["rack", "MAX_PER", "2"])], 5, &agents).is_some());
        assert!(unsatisfiable(&[c(&["hostname", "LIKE", "z.*"])], 1, &agents).is_some());
        // Nothing is known of the cluster: nothing is refused.
        assert_eq!(
            unsatisfiable(&[c(&["rack", "CLUSTER", "r9"])], 1, &[]),
            None
        );
    }

    #[test]
    fn constraints_admit_as_marathon_does() {
        let placed = [at("a", "r1"), at("b", "r1")];
        let known = [at("a", "r1"), at("b", "r1"), at("c", "r2"), at("d", "r2")];
        assert!(c(&["hostname", "UNIQUE"])
            .admits(&at("a", "r1"), &placed, &known)
            .is_err());
        assert!(c(&["hostname", "UNIQUE"])
            .admits(&at("c", "r2"), &placed, &known)
            .is_ok());
        assert!(c(&["rack", "CLUSTER", "r2"])
            .admits(&at("a", "r1"), &placed, &known)
            .is_err());
        assert!(c(&["rack", "GROUP_BY"])
            .admits(&at("a", "r1"), &placed, &known)
            .is_err());
        assert!(c(&["rack", "GROUP_BY"])
            .admits(&at("c", "r2"), &placed, &known)
            .is_ok());
        assert!(c(&["rack", "GROUP_BY", "3"])
            .admits(&at("c", "r2"), &[at("c", "r2")], &known)
            .is_err());
        assert!(c(&["rack", "MAX_PER", "2"])
            .admits(&at("a", "r1"), &placed, &known)
            .is_err());
        assert!(c(&["hostname", "LIKE", "[ab]"])
            .admits(&at("a", "r1"), &[], &known)
            .is_ok());
        assert!(c(&["hostname", "LIKE", "[ab]"])
            .admits(&at("abc", "r1"), &[], &known)
            .is_err());
        assert!(c(&["hostname", "UNLIKE", "c.*"])
            .admits(&at("cat", "r1"), &[], &known)
            .is_err());
        for bad in [
            vec!["hostname"],
            vec!["hostname", "NEAR"],
            vec!["rack", "CLUSTER"],
            vec!["rack", "MAX_PER", "0"],
            vec!["rack", "LIKE", "("],
            vec!["", "UNIQUE"],
        ] {
            let parts: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(Constraint::parse(&parts).is_err(), "{bad:?}");
        }
    }
}
