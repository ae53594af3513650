//! Myriad's REST API documents (its port 8192 and paths: `PUT
//! /api/cluster/flexup`, `PUT /api/cluster/flexdown`, `GET /api/state`),
//! so scripts written for Myriad work unchanged. Requests are validated
//! here; a refusal says what is wrong and changes nothing.

use serde::{Deserialize, Serialize};

use crate::profiles::Profiles;

/// `PUT /api/cluster/flexup` (and, with `profile` optional, flexdown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlexRequest {
    /// How many NodeManagers.
    pub instances: i64,
    /// Their profile (required for flex up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `["<hostname|attribute> LIKE <regex>"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
}

/// A constraint as Myriad writes it: `<field> LIKE <regex>` over the
/// agent's hostname or one of its attributes.
#[derive(Debug, Clone)]
pub struct LikeConstraint {
    /// `hostname` or an attribute name.
    pub field: String,
    /// The whole value must match.
    pub pattern: regex::Regex,
}

impl LikeConstraint {
    /// Parses `field LIKE regex`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.trim().splitn(3, char::is_whitespace);
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "constraint {text:?}: expected \"<hostname|attribute> LIKE <regex>\""
            ));
        };
        if op != "LIKE" {
            return Err(format!(
                "constraint {text:?}: the only operator is LIKE, not {op}"
            ));
        }
        let pattern = regex::Regex::new(&format!("^(?:{})$", value.trim()))
            .map_err(|e| format!("constraint {text:?}: invalid regex: {e}"))?;
        Ok(Self {
            field: field.to_string(),
            pattern,
        })
    }

    /// The constraint as written (`field LIKE regex`).
    pub fn text(&self) -> String {
        let p = self.pattern.as_str();
        let inner = p
            .strip_prefix("^(?:")
            .and_then(|p| p.strip_suffix(")$"))
            .unwrap_or(p);
        format!("{} LIKE {inner}", self.field)
    }

    /// As a Marathon-style constraint of the SDK.
    pub fn to_sdk(&self) -> corral_sdk::offers::Constraint {
        corral_sdk::offers::Constraint::Like(self.field.clone(), self.pattern.clone())
    }
}

/// A flex request, checked.
#[derive(Debug, Clone)]
pub struct Flex {
    /// How many.
    pub instances: u32,
    /// The profile (for flex down: only NodeManagers of it).
    pub profile: Option<String>,
    /// Where.
    pub constraints: Vec<LikeConstraint>,
}

/// Largest number of NodeManagers one request may ask for.
pub const MAX_FLEX: i64 = 10_000;

impl FlexRequest {
    /// Checks a flex up (`up`) or flex down request against `profiles`.
    pub fn validate(&self, profiles: &Profiles, up: bool) -> Result<Flex, String> {
        if self.instances <= 0 || self.instances > MAX_FLEX {
            return Err(format!(
                "instances: must be a number from 1 to {MAX_FLEX}, not {}",
                self.instances
            ));
        }
        match (&self.profile, up) {
            (None, true) => {
                return Err(format!(
                    "profile: required; the profiles are {}",
                    profiles.names().join(", ")
                ))
            }
            (Some(p), _) => {
                profiles.get(p).map_err(|e| format!("profile: {e}"))?;
            }
            (None, false) => {}
        }
        let constraints = self
            .constraints
            .iter()
            .flatten()
            .map(|c| LikeConstraint::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Flex {
            instances: self.instances as u32,
            profile: self.profile.clone(),
            constraints,
        })
    }
}

/// `GET /api/state`: task ids by where they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Waiting for an offer.
    pub pending_tasks: Vec<String>,
    /// Launched, not running yet.
    pub staging_tasks: Vec<String>,
    /// Running.
    pub active_tasks: Vec<String>,
    /// Being flexed down (decommissioning, then killed).
    pub killable_tasks: Vec<String>,
}

/// A NodeManager task id, Myriad's shape: `nm.<profile>.<unique>`.
pub fn task_id(profile: &str, unique: &str) -> String {
    format!("nm.{profile}.{unique}")
}

/// The profile in a NodeManager task id.
pub fn profile_of(task_id: &str) -> Option<&str> {
    let rest = task_id.strip_prefix("nm.")?;
    rest.rsplit_once('.').map(|(profile, _)| profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flex(doc: &str) -> FlexRequest {
        serde_json::from_str(doc).expect("json")
    }

    #[test]
    fn myriads_documents_are_read_as_they_are() {
        let p = Profiles::default();
        let f = flex(r#"{"instances": 2, "profile": "medium", "constraints": ["hostname LIKE host[0-9]+.example"]}"#)
            .validate(&p, true)
            .expect("valid");
        assert_eq!(f.instances, 2);
        assert!(f.constraints[0].pattern.is_match("host12.example"));
        assert!(!f.constraints[0].pattern.is_match("xhost12.example"));
        let down = flex(r#"{"instances": 1}"#)
            .validate(&p, false)
            .expect("flexdown");
        assert_eq!(down.profile, None);
        let state = serde_json::to_value(State {
            pending_tasks: vec![task_id("medium", "ea56")],
            ..Default::default()
        })
        .expect("json");
        assert_eq!(
            state,
            serde_json::json!({"pendingTasks": ["nm.medium.ea56"], "stagingTasks": [],
                               "activeTasks": [], "killableTasks": []})
        );
        assert_eq!(profile_of("nm.medium.ea564a5b-3a77"), Some("medium"));
        assert_eq!(profile_of("yarn_container_1"), None);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let p = Profiles::default();
        let e = flex(r#"{"instances": 1, "profile": "huge"}"#)
            .validate(&p, true)
            .expect_err("unknown profile");
        assert!(e.contains("large, medium, small, zero"), "{e}");
        for n in [0, -3] {
            let e = flex(&format!(r#"{{"instances": {n}, "profile": "small"}}"#))
                .validate(&p, true)
                .expect_err("instances");
            assert!(e.starts_with("instances:"), "{e}");
        }
        let e = flex(r#"{"instances": 1}"#)
            .validate(&p, true)
            .expect_err("profile");
        assert!(e.starts_with("profile: required"), "{e}");
        for c in ["hostname", "hostname UNIQUE x", "hostname LIKE ("] {
            let doc = serde_json::json!({"instances": 1, "profile": "small", "constraints": [c]});
            let e = serde_json::from_value::<FlexRequest>(doc)
                .expect("json")
                .validate(&p, true)
                .expect_err("constraint");
            assert!(e.starts_with("constraint"), "{e}");
        }
    }
}
