//! mesos/kafka's placement constraints: `field=op` pairs over `hostname` or
//! an agent attribute, written `hostname=like:master,rack=like:1.*`.
//!
//! * `like:<regex>` — the value matches (whole value);
//! * `unlike:<regex>` — it does not;
//! * `unique` — no two brokers share the value;
//! * `cluster:<value>` — the value equals it; `cluster` — every broker has
//!   the same value (the first placed decides);
//! * `groupBy` / `groupBy:<n>` — brokers spread evenly over the values
//!   (over `n` of them).
//!
//! Each is evaluated with the SDK's Marathon-style [`Constraint`], but for
//! `cluster` without a value.

use std::collections::BTreeMap;

use corral_sdk::offers::{Constraint, Placement};

use crate::expr::{format_map, parse_map};

/// One broker's constraint on one field.
#[derive(Debug, Clone)]
pub struct BrokerConstraint {
    /// `hostname` or an attribute.
    pub field: String,
    /// As given (`like:master`).
    pub text: String,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Sdk(Constraint),
    /// `cluster` without a value.
    Same,
}

impl BrokerConstraint {
    /// Parses `op` (`like:master`) on `field`.
    pub fn parse(field: &str, op: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("constraint {field}={op}: {why}");
        if field.is_empty() {
            return Err(bad("the field is empty"));
        }
        let (name, value) = match op.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (op, None),
        };
        let sdk = |parts: &[&str]| {
            let parts: Vec<String> = std::iter::once(field)
                .chain(parts.iter().copied())
                .map(str::to_string)
                .collect();
            Constraint::parse(&parts)
                .map(Rule::Sdk)
                .map_err(|e| bad(&e.reason))
        };
        let rule = match (name, value) {
            ("like", Some(v)) => sdk(&["LIKE", v])?,
            ("unlike", Some(v)) => sdk(&["UNLIKE", v])?,
            ("unique", None) => sdk(&["UNIQUE"])?,
            ("cluster", None) => Rule::Same,
            ("cluster", Some(v)) if !v.is_empty() => sdk(&["CLUSTER", v])?,
            ("groupBy", None) => sdk(&["GROUP_BY"])?,
            ("groupBy", Some(n)) => sdk(&["GROUP_BY", n])?,
            ("like" | "unlike", None) => return Err(bad("needs a value (like:<regex>)")),
            _ => {
                return Err(bad(
                    "unknown operator (like:<regex>, unlike:<regex>, unique, cluster, cluster:<value>, groupBy, groupBy:<n>)",
                ))
            }
        };
        Ok(Self {
            field: field.to_string(),
            text: op.to_string(),
            rule,
        })
    }

    /// Whether one more broker may go to `candidate`, given where the other
    /// brokers are (`placed`) and the agents known.
    pub fn admits(
        &self,
        candidate: &Placement,
        placed: &[Placement],
        known: &[Placement],
    ) -> Result<(), String> {
        match &self.rule {
            Rule::Sdk(c) => c.admits(candidate, placed, known),
            Rule::Same => {
                let Some(v) = candidate.field(&self.field) else {
                    return Err(format!("the agent has no {}", self.field));
                };
                match placed.iter().find_map(|p| p.field(&self.field)) {
                    Some(first) if first != v => Err(format!(
                        "{}={v}, but the other brokers run where {}={first} (cluster)",
                        self.field, self.field
                    )),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Parses `hostname=like:master,rack=like:1.*`.
pub fn parse_constraints(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (field, op) in parse_map(text)? {
        BrokerConstraint::parse(&field, &op)?;
        out.insert(field, op);
    }
    Ok(out)
}

/// The constraints of a broker, parsed (stored text that no longer parses
/// is skipped with a warning).
pub fn compile(map: &BTreeMap<String, String>) -> Vec<BrokerConstraint> {
    map.iter()
        .filter_map(|(f, op)| match BrokerConstraint::parse(f, op) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "a stored constraint does not parse; ignored");
                None
            }
        })
        .collect()
}

/// Writes constraints as mesos/kafka does.
pub fn format_constraints(map: &BTreeMap<String, String>) -> String {
    format_map(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, rack: &str) -> Placement {
        Placement {
            hostname: host.into(),
            attributes: [("rack".to_string(), rack.to_string())].into(),
        }
    }

    fn c(field: &str, op: &str) -> BrokerConstraint {
        BrokerConstraint::parse(field, op).expect("constraint")
    }

    #[test]
    fn mesos_kafka_operators() {
        let known = [at("a", "r1"), at("b", "r1"), at("c", "r2")];
        assert!(c("hostname", "like:a")
            .admits(&at("a", "r1"), &[], &known)
            .is_ok());
        assert!(c("hostname", "like:a")
            .admits(&at("ab", "r1"), &[], &known)
            .is_err());
        assert!(c("hostname", "like:slave.*")
            .admits(&at("slave3", "r1"), &[], &known)
            .is_ok());
        assert!(c("hostname", "unlike:a")
            .admits(&at("a", "r1"), &[], &known)
            .is_err());
        assert!(c("hostname", "unique")
            .admits(&at("a", "r1"), &[at("a", "r1")], &known)
            .is_err());
        assert!(c("hostname", "unique")
            .admits(&at("b", "r1"), &[at("a", "r1")], &known)
            .is_ok());
        assert!(c("rack", "cluster:r2")
            .admits(&at("a", "r1"), &[], &known)
            .is_err());
        assert!(c("rack", "cluster")
            .admits(&at("a", "r1"), &[], &known)
            .is_ok());
        assert!(c("rack", "cluster")
            .admits(&at("c", "r2"), &[at("a", "r1")], &known)
            .is_err());
        assert!(c("rack", "groupBy")
            .admits(&at("a", "r1"), &[at("b", "r1")], &known)
            .is_err());
        assert!(c("rack", "groupBy")
            .admits(&at("c", "r2"), &[at("b", "r1")], &known)
            .is_ok());
        assert!(c("rack", "groupBy:2")
            .admits(&at("a", "r1"), &[], &known)
            .is_ok());
    }

    #[test]
    fn bad_constraints_name_the_field() {
        for (f, op) in [
            ("hostname", "near:a"),
            ("hostname", "like"),
            ("hostname", "like:("),
            ("rack", "groupBy:x"),
            ("", "unique"),
        ] {
            let e = BrokerConstraint::parse(f, op).expect_err(op);
            assert!(e.contains("constraint"), "{e}");
        }
        let m = parse_constraints("hostname=like:master,rack=like:1.*").expect("parses");
        assert_eq!(format_constraints(&m), "hostname=like:master,rack=like:1.*");
        assert!(parse_constraints("hostname=bogus").is_err());
    }
}
