//! Autoscaling from the ResourceManager's own demand (none of Myriad,
//! Marathon or Mesos had it; Dataproc's autoscaling policy is the model).
//!
//! [`decide`] is pure: the RM's cluster metrics and nodes
//! (`/ws/v1/cluster/metrics`, `/ws/v1/cluster/nodes`, read by the shell),
//! the NodeManagers the bridge runs of the policy's profile, and the time
//! since the last scaling give one [`Decision`] with its reason and the
//! figures behind it, which the shell logs and shows in the API.
//!
//! * Up: while memory is pending, add `ceil(scale_up_factor x pendingMB /
//!   profile memory)` NodeManagers (at least one while containers are
//!   pending), up to `max`, and not before `scale_up_cooldown` since the
//!   last change.
//! * Down: with nothing pending, remove `floor(scale_down_factor x
//!   availableMB / profile memory)` NodeManagers, never more than the nodes
//!   idle (no running container) for at least `idle_before_scale_down`, down
//!   to `min`, and not before `scale_down_cooldown` since the last change.
//! * Below `min` or above `max`: back within them first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The policy for one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// The profile of the NodeManagers it adds and removes.
    pub profile: String,
    /// Fewest NodeManagers of the profile.
    pub min: u32,
    /// Most NodeManagers of the profile.
    pub max: u32,
    /// Share of the pending memory to add capacity for (0..=1).
    pub scale_up_factor: f64,
    /// Share of the available memory to remove (0..=1).
    pub scale_down_factor: f64,
    /// Seconds after a change before scaling up again.
    pub scale_up_cooldown_secs: u64,
    /// Seconds after a change before scaling down.
    pub scale_down_cooldown_secs: u64,
    /// Seconds a node must have run no container to be removed.
    pub idle_before_scale_down_secs: u64,
}

impl Policy {
    /// Refuses figures that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!("min: {} is more than max {}", self.min, self.max));
        }
        for (field, v) in [
            ("scaleUpFactor", self.scale_up_factor),
            ("scaleDownFactor", self.scale_down_factor),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{field}: must be from 0 to 1, not {v}"));
            }
        }
        Ok(())
    }
}

/// `/ws/v1/cluster/metrics`' `clusterMetrics`, the fields used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetrics {
    /// Memory asked for by pending containers, MB.
    #[serde(default, rename = "pendingMB")]
    pub pending_mb: f64,
    /// Virtual cores asked for by pending containers.
    #[serde(default)]
    pub pending_virtual_cores: f64,
    /// Containers waiting.
    #[serde(default)]
    pub containers_pending: f64,
    /// Memory free on the NodeManagers, MB.
    #[serde(default, rename = "availableMB")]
    pub available_mb: f64,
    /// Memory in use, MB.
    #[serde(default, rename = "allocatedMB")]
    pub allocated_mb: f64,
    /// NodeManagers registered and running.
    #[serde(default)]
    pub active_nodes: f64,
}

impl ClusterMetrics {
    /// Reads the RM's answer (`{"clusterMetrics": {...}}`).
    pub fn from_rm(v: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(v.get("clusterMetrics")?.clone()).ok()
    }
}

/// What to do, why, and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Decision {
    /// Add NodeManagers.
    #[serde(rename = "FLEX_UP")]
    FlexUp {
        /// How many.
        instances: u32,
        /// Why.
        reason: String,
    },
    /// Remove NodeManagers (gracefully).
    #[serde(rename = "FLEX_DOWN")]
    FlexDown {
        /// How many.
        instances: u32,
        /// Why.
        reason: String,
    },
    /// Nothing to do.
    #[serde(rename = "HOLD")]
    Hold {
        /// Why.
        reason: String,
    },
}

/// Decides, for `policy`'s profile of `profile_mem` MB: `running` is how
/// many NodeManagers of the profile the bridge has (pending ones
/// included), `idle_secs` how long each node has run no container (by
/// host), `since_change_secs` the time since the last flex.
pub fn decide(
    policy: &Policy,
    profile_mem: f64,
    metrics: &ClusterMetrics,
    running: u32,
    idle_secs: &BTreeMap<String, u64>,
    since_change_secs: u64,
) -> Decision {
    if running < policy.min {
        return Decision::FlexUp {
            instances: policy.min - running,
            reason: format!(
                "{running} NodeManager(s) of {}, below min {}",
                policy.profile, policy.min
            ),
        };
    }
    if running > policy.max {
        return Decision::FlexDown {
            instances: running - policy.max,
            reason: format!(
                "{running} NodeManager(s) of {}, above max {}",
                policy.profile, policy.max
            ),
        };
    }
    let mem = profile_mem.max(1.0);
    let demand = metrics.pending_mb > 0.0 || metrics.containers_pending > 0.0;
    if demand {
        if since_change_secs < policy.scale_up_cooldown_secs {
            return Decision::Hold {
                reason: format!(
                    "pendingMB {} but the last change was {since_change_secs}s ago (scale-up cooldown {}s)",
                    metrics.pending_mb, policy.scale_up_cooldown_secs
                ),
            };
        }
        let wanted = (policy.scale_up_factor * metrics.pending_mb / mem).ceil() as u32;
        let wanted = if policy.scale_up_factor > 0.0 {
            wanted.max(1)
        } else {
            0
        };
        let room = policy.max - running;
        let n = wanted.min(room);
        return if n == 0 {
            Decision::Hold {
                reason: format!(
                    "pendingMB {}, containersPending {}, but {} is at max {}",
                    metrics.pending_mb, metrics.containers_pending, policy.profile, policy.max
                ),
            }
        } else {
            Decision::FlexUp {
                instances: n,
                reason: format!(
                    "pendingMB {}, containersPending {}: {} x {} / {} MB per NodeManager = {wanted} wanted, {room} below max",
                    metrics.pending_mb,
                    metrics.containers_pending,
                    policy.scale_up_factor,
                    metrics.pending_mb,
                    mem
                ),
            }
        };
    }
    if since_change_secs < policy.scale_down_cooldown_secs {
        return Decision::Hold {
            reason: format!(
                "no pending demand; the last change was {since_change_secs}s ago (scale-down cooldown {}s)",
                policy.scale_down_cooldown_secs
            ),
        };
    }
    let idle = idle_secs
        .values()
        .filter(|s| **s >= policy.idle_before_scale_down_secs)
        .count() as u32;
    let spare = (policy.scale_down_factor * metrics.available_mb / mem).floor() as u32;
    let n = spare.min(idle).min(running - policy.min);
    if n == 0 {
        Decision::Hold {
            reason: format!(
                "no pending demand; availableMB {} ({spare} NodeManager(s) spare by the scale-down factor), {idle} idle for {}s, min {}",
                metrics.available_mb, policy.idle_before_scale_down_secs, policy.min
            ),
        }
    } else {
        Decision::FlexDown {
            instances: n,
            reason: format!(
                "no pending demand; availableMB {}: {} x {} / {} MB = {spare} spare, {idle} idle for {}s or more",
                metrics.available_mb,
                policy.scale_down_factor,
                metrics.available_mb,
                mem,
                policy.idle_before_scale_down_secs
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            profile: "medium".into(),
            min: 1,
            max: 10,
            scale_up_factor: 1.0,
            scale_down_factor: 1.0,
            scale_up_cooldown_secs: 30,
            scale_down_cooldown_secs: 120,
            idle_before_scale_down_secs: 300,
        }
    }

    fn metrics(pending_mb: f64, containers_pending: f64, available_mb: f64) -> ClusterMetrics {
        ClusterMetrics {
            pending_mb,
            containers_pending,
            available_mb,
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_rms_cluster_metrics() {
        let v = serde_json::json!({"clusterMetrics": {"appsSubmitted": 3, "pendingMB": 8192,
            "pendingVirtualCores": 4, "containersPending": 2, "availableMB": 1024,
            "allocatedMB": 4096, "activeNodes": 1}});
        let m = ClusterMetrics::from_rm(&v).expect("metrics");
        assert_eq!(m.pending_mb, 8192.0);
        assert_eq!(m.containers_pending, 2.0);
        assert_eq!(m.active_nodes, 1.0);
        assert_eq!(ClusterMetrics::from_rm(&serde_json::json!({})), None);
    }

    #[test]
    fn pending_memory_adds_nodemanagers_up_to_max() {
        let d = decide(
            &policy(),
            4096.0,
            &metrics(10000.0, 3.0, 0.0),
            2,
            &BTreeMap::new(),
            60,
        );
        assert!(matches!(d, Decision::FlexUp { instances: 3, .. }), "{d:?}");
        let d = decide(
            &policy(),
            4096.0,
            &metrics(1e9, 3.0, 0.0),
            8,
            &BTreeMap::new(),
            60,
        );
        assert!(
            matches!(d, Decision::FlexUp { instances: 2, .. }),
            "capped at max: {d:?}"
        );
        let d = decide(
            &policy(),
            4096.0,
            &metrics(1e9, 3.0, 0.0),
            10,
            &BTreeMap::new(),
            60,
        );
        assert!(
            matches!(&d, Decision::Hold { reason } if reason.contains("at max")),
            "{d:?}"
        );
        // Within the cooldown: hold, saying so.
        let d = decide(
            &policy(),
            4096.0,
            &metrics(10000.0, 3.0, 0.0),
            2,
            &BTreeMap::new(),
            10,
        );
        assert!(
            matches!(&d, Decision::Hold { reason } if reason.contains("cooldown")),
            "{d:?}"
        );
        // Containers pending with no memory figure still get one.
        let d = decide(
            &policy(),
            4096.0,
            &metrics(0.0, 1.0, 0.0),
            2,
            &BTreeMap::new(),
            60,
        );
        assert!(matches!(d, Decision::FlexUp { instances: 1, .. }), "{d:?}");
    }

    #[test]
    fn idle_capacity_is_removed_after_the_cooldown_down_to_min() {
        let idle: BTreeMap<String, u64> = [
            ("h1".to_string(), 600),
            ("h2".to_string(), 400),
            ("h3".to_string(), 10),
        ]
        .into();
        let d = decide(
            &policy(),
            4096.0,
            &metrics(0.0, 0.0, 12288.0),
            3,
            &idle,
            600,
        );
        assert!(
            matches!(d, Decision::FlexDown { instances: 2, .. }),
            "{d:?}"
        );
        // Never below min.
        let p = Policy { min: 2, ..policy() };
        let d = decide(&p, 4096.0, &metrics(0.0, 0.0, 12288.0), 3, &idle, 600);
        assert!(
            matches!(d, Decision::FlexDown { instances: 1, .. }),
            "{d:?}"
        );
        // Not right after a change.
        let d = decide(&policy(), 4096.0, &metrics(0.0, 0.0, 12288.0), 3, &idle, 60);
        assert!(matches!(d, Decision::Hold { .. }), "{d:?}");
        // Nothing idle long enough: hold.
        let none: BTreeMap<String, u64> = [("h1".to_string(), 10)].into();
        let d = decide(
            &policy(),
            4096.0,
            &metrics(0.0, 0.0, 12288.0),
            3,
            &none,
            600,
        );
        assert!(matches!(d, Decision::Hold { .. }), "{d:?}");
    }

    #[test]
    fn bounds_come_first_and_bad_policies_are_refused() {
        let d = decide(
            &policy(),
            4096.0,
            &ClusterMetrics::default(),
            0,
            &BTreeMap::new(),
            0,
        );
        assert!(matches!(d, Decision::FlexUp { instances: 1, .. }), "{d:?}");
        let p = Policy { max: 2, ..policy() };
        let d = decide(
            &p,
            4096.0,
            &ClusterMetrics::default(),
            5,
            &BTreeMap::new(),
            0,
        );
        assert!(
            matches!(d, Decision::FlexDown { instances: 3, .. }),
            "{d:?}"
        );
        assert!(Policy {
            min: 5,
            max: 2,
            ..policy()
        }
        .validate()
        .is_err());
        assert!(Policy {
            scale_up_factor: 1.5,
            ..policy()
        }
        .validate()
        .is_err_and(|e| e.starts_with("scaleUpFactor")));
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["action"], "FLEX_DOWN");
    }
}
