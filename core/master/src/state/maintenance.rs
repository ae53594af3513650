//! Maintenance schedules (Mesos' maintenance primitives, first part): the
//! operator's schedule of unavailability windows, validated, kept in the
//! registry, and the status of the machines in it.
//!
//! A machine is matched to agents by the fields its MachineID sets: its
//! hostname (case-insensitively) against the agent's hostname and its IP
//! against the agent's address. Machines in the schedule are DRAINING.
//! Not here yet (issue 18): START_MAINTENANCE / STOP_MAINTENANCE (machines
//! DOWN and UP), and inverse offers to frameworks; GET_MAINTENANCE_STATUS
//! therefore lists no down machines and no inverse offer statuses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use corral_api::v1::maintenance::{cluster_status, ClusterStatus, Schedule};

use super::*;

/// A machine's identity as the schedule compares it.
fn machine_key(id: &v1::MachineId) -> (String, String) {
    (
        id.hostname.as_deref().unwrap_or("").to_ascii_lowercase(),
        id.ip.as_deref().unwrap_or("").to_string(),
    )
}

/// Checks a schedule as Mesos does: every window names machines, each by
/// a hostname or an IP address (a valid one), a start, a duration not
/// negative, and no machine in two windows.
pub fn validate_schedule(schedule: &Schedule) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for (i, w) in schedule.windows.iter().enumerate() {
        if w.machine_ids.is_empty() {
            return Err(format!("window {i} lists no machines"));
        }
        if w.unavailability
            .duration
            .as_ref()
            .is_some_and(|d| d.nanoseconds < 0)
        {
            return Err(format!(
                "window {i}'s unavailability has a negative duration"
            ));
        }
        for id in &w.machine_ids {
            let host = id.hostname.as_deref().unwrap_or("");
            let ip = id.ip.as_deref().unwrap_or("");
            if host.is_empty() && ip.is_empty() {
                return Err(format!(
                    "a machine of window {i} has neither hostname nor ip"
                ));
            }
            if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "machine ip {ip:?} of window {i} is not an IP address"
                ));
            }
            if !seen.insert(machine_key(id)) {
                return Err(format!(
                    "machine {} is in more than one window; a machine may appear once",
                    if host.is_empty() { ip } else { host }
                ));
            }
        }
    }
    Ok(())
}

/// Whether `machine` names the agent with this hostname and IP.
pub fn machine_matches(machine: &v1::MachineId, hostname: &str, ip: &str) -> bool {
    let (h, i) = machine_key(machine);
    (h.is_empty() || h == hostname.to_ascii_lowercase())
        && (i.is_empty() || i == ip)
        && !(h.is_empty() && i.is_empty())
}

impl Master {
    /// The schedule in force (the registry's schedules as one).
    pub fn maintenance_schedule(&self) -> Schedule {
        Schedule {
            windows: self
                .schedules
                .iter()
                .flat_map(|s| s.windows.iter().cloned())
                .collect(),
        }
    }

    /// GET_MAINTENANCE_STATUS: every scheduled machine is draining.
    pub fn maintenance_status(&self) -> ClusterStatus {
        ClusterStatus {
            draining_machines: self
                .maintenance_schedule()
                .windows
                .into_iter()
                .flat_map(|w| w.machine_ids)
                .map(|id| cluster_status::DrainingMachine {
                    id,
                    statuses: Vec::new(),
                })
                .collect(),
            down_machines: Vec::new(),
        }
    }

    /// The window scheduled for an agent's machine, if any.
    pub fn agent_unavailability(&self, agent_id: &str) -> Option<v1::Unavailability> {
        let a = self.agents.get(agent_id)?;
        let ip = a.endpoint.rsplit_once(':').map_or("", |(ip, _)| ip);
        self.schedules
            .iter()
            .flat_map(|s| s.windows.iter())
            .find(|w| {
                w.machine_ids
                    .iter()
                    .any(|m| machine_matches(m, &a.info.hostname, ip))
            })
            .map(|w| w.unavailability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::v1::maintenance::Window;

    fn window(machines: &[(&str, &str)], start: i64) -> Window {
        Window {
            machine_ids: machines
                .iter()
                .map(|(h, i)| v1::MachineId {
                    hostname: (!h.is_empty()).then(|| h.to_string()),
                    ip: (!i.is_empty()).then(|| i.to_string()),
                })
                .collect(),
            unavailability: v1::Unavailability {
                start: v1::TimeInfo { nanoseconds: start },
                duration: Some(v1::DurationInfo {
                    nanoseconds: 3_600_000_000_000,
                }),
            },
        }
    }

    #[test]
    fn schedules_are_validated_as_mesos_does() {
        let ok = Schedule {
            windows: vec![window(&[("h1", "10.0.0.1")], 1), window(&[("h2", "")], 2)],
        };
        assert_eq!(validate_schedule(&ok), Ok(()));
        assert_eq!(
            validate_schedule(&Schedule::default()),
            Ok(()),
            "an empty schedule clears it"
        );
        let twice = Schedule {
            windows: vec![window(&[("H1", "")], 1), window(&[("h1", "")], 2)],
        };
        assert!(validate_schedule(&twice)
            .unwrap_err()
            .contains("more than one window"));
        let nameless = Schedule {
            windows: vec![window(&[("", "")], 1)],
        };
        assert!(validate_schedule(&nameless)
            .unwrap_err()
            .contains("neither hostname nor ip"));
        let bad_ip = Schedule {
            windows: vec![window(&[("", "10.0.0")], 1)],
        };
        assert!(validate_schedule(&bad_ip)
            .unwrap_err()
            .contains("not an IP address"));
        let empty = Schedule {
            windows: vec![window(&[], 1)],
        };
        assert!(validate_schedule(&empty)
            .unwrap_err()
            .contains("no machines"));
        let mut negative = window(&[("h", "")], 1);
        negative.unavailability.duration = Some(v1::DurationInfo { nanoseconds: -1 });
        assert!(validate_schedule(&Schedule {
            windows: vec![negative]
        })
        .unwrap_err()
        .contains("negative"));
    }

    #[test]
    fn machines_match_agents_by_the_fields_they_set() {
        let m = |h: &str, i: &str| v1::MachineId {
            hostname: (!h.is_empty()).then(|| h.to_string()),
            ip: (!i.is_empty()).then(|| i.to_string()),
        };
        assert!(machine_matches(&m("Host1", ""), "host1", "10.0.0.1"));
        assert!(machine_matches(&m("", "10.0.0.1"), "host1", "10.0.0.1"));
        assert!(machine_matches(
            &m("host1", "10.0.0.1"),
            "host1",
            "10.0.0.1"
        ));
        assert!(!machine_matches(
            &m("host1", "10.0.0.2"),
            "host1",
            "10.0.0.1"
        ));
        assert!(!machine_matches(&m("host2", ""), "host1", "10.0.0.1"));
    }
}
