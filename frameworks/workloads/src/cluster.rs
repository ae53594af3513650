//! What the framework knows of the cluster's agents when it checks a
//! request or a deploy: read from the master's `/master/slaves` (its public
//! API) by the API handler, before the call reaches the actor, so the
//! actor never waits on the network. [`ClusterView`] is pure: a request
//! whose constraints no agent can ever satisfy, or a deploy larger than
//! every agent, is refused with the field named.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_sdk::offers::{unsatisfiable, Constraint, Placement};
use corral_sdk::scheduler::Scheduler;

use crate::model::{Deploy, Request, SlavePlacement};

/// The cluster's agents as last read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// Each agent's hostname and attributes.
    pub agents: Vec<Placement>,
    /// The largest cpus, mem, disk and number of ports of any one agent.
    pub largest: [f64; 4],
}

fn ports_in(text: &str) -> f64 {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|range| {
            let (lo, hi) = range.trim().split_once('-')?;
            Some(hi.trim().parse::<f64>().ok()? - lo.trim().parse::<f64>().ok()? + 1.0)
        })
        .sum()
}

impl ClusterView {
    /// Reads `/master/slaves`; `None` when it lists no agent.
    pub fn from_slaves(slaves: &serde_json::Value) -> Option<Self> {
        let list = slaves["slaves"].as_array()?;
        if list.is_empty() {
            return None;
        }
        let mut view = ClusterView::default();
        for a in list {
            let r = &a["resources"];
            let have = [
                r["cpus"].as_f64().unwrap_or(0.0),
                r["mem"].as_f64().unwrap_or(0.0),
                r["disk"].as_f64().unwrap_or(0.0),
                r["ports"].as_str().map(ports_in).unwrap_or(0.0),
            ];
            for (m, h) in view.largest.iter_mut().zip(have) {
                *m = m.max(h);
            }
            let attributes = a["attributes"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), text)
                        })
                        .collect()
                })
                .unwrap_or_default();
            view.agents.push(Placement {
                hostname: a["hostname"].as_str().unwrap_or_default().to_string(),
                attributes,
            });
        }
        Some(view)
    }

    /// Why `deploy` asks for more than any agent has, naming the field.
    pub fn refuse_deploy(&self, deploy: &Deploy) -> Option<String> {
        let resources = deploy.resources.as_ref()?;
        let asked = [
            ("resources.cpus", resources.cpus),
            ("resources.memoryMb", resources.memory_mb),
            ("resources.diskMb", resources.disk_mb),
            ("resources.numPorts", resources.num_ports as f64),
        ];
        asked
            .iter()
            .zip(self.largest)
            .find(|((_, want), have)| *want > *have + 1e-9)
            .map(|((field, want), have)| {
                format!("{field}: {want} is more than any agent of the cluster has (the largest has {have})")
            })
    }

    /// Why `request` can never be placed on this cluster, naming the
    /// field: its constraints, `requiredSlaveAttributes`, or
    /// `slavePlacement: SEPARATE` with more instances than agents.
    pub fn refuse_request(&self, request: &Request) -> Option<String> {
        let instances = request.instances.unwrap_or(1) as usize;
        let mut constraints: Vec<Constraint> = request
            .constraints
            .iter()
            .flatten()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect();
        if let Some(why) = unsatisfiable(&constraints, instances, &self.agents) {
            return Some(format!("constraints: {why}"));
        }
        if let Some(required) = &request.required_slave_attributes {
            for (k, v) in required {
                constraints.push(Constraint::Cluster(k.clone(), v.clone()));
            }
            if let Some(why) = unsatisfiable(&constraints, instances, &self.agents) {
                return Some(format!("requiredSlaveAttributes: {why}"));
            }
        }
        if matches!(
            request.slave_placement,
            Some(SlavePlacement::Separate) | Some(SlavePlacement::SeparateByRequest)
        ) {
            constraints.push(Constraint::Unique("hostname".into()));
            if let Some(why) = unsatisfiable(&constraints, instances, &self.agents) {
                return Some(format!("slavePlacement: {why}"));
            }
        }
        None
    }
}

/// Reads the cluster from the master the scheduler is subscribed to.
#[derive(Clone, Default)]
pub(crate) struct ClusterSource {
    scheduler: Arc<Mutex<Option<Scheduler>>>,
    http: reqwest::Client,
}

impl ClusterSource {
    pub fn set(&self, scheduler: Scheduler) {
        *self.scheduler.lock().unwrap_or_else(|e| e.into_inner()) = Some(scheduler);
    }

    /// The master the scheduler is subscribed to.
    pub fn master(&self) -> Option<String> {
        self.scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .master()
    }

    /// The FrameworkID, once subscribed.
    pub fn framework_id(&self) -> Option<String> {
        self.scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .framework_id()
    }

    /// The cluster now; `None` without a master or an answer (nothing is
    /// then refused for the cluster's sake).
    pub async fn view(&self) -> Option<ClusterView> {
        let master = self.master()?;
        let slaves: serde_json::Value = self
            .http
            .get(format!("http://{master}/master/slaves"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        ClusterView::from_slaves(&slaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ClusterView {
        let slaves = serde_json::json!({"slaves": [
            {"hostname": "a", "attributes": {"rack": "r1"},
             "resources": {"cpus": 2, "mem": 1024, "disk": 100, "ports": "[31000-31099]"}},
            {"hostname": "b", "attributes": {"rack": "r2", "gpu": 1},
             "resources": {"cpus": 8, "mem": 512, "ports": "[1-10, 20-29]"}},
        ]});
        ClusterView::from_slaves(&slaves).expect("agents")
    }

    #[test]
    fn reads_agents_and_the_largest_of_each_resource() {
        let v = view();
        assert_eq!(v.largest, [8.0, 1024.0, 100.0, 100.0]);
        assert_eq!(v.agents[1].field("gpu"), Some("1"));
        assert_eq!(v.agents[0].field("hostname"), Some("a"));
        assert_eq!(
            ClusterView::from_slaves(&serde_json::json!({"slaves": []})),
            None
        );
    }

    fn request(doc: serde_json::Value) -> Request {
        serde_json::from_value(doc).expect("request")
    }

    #[test]
    fn refuses_requests_no_agent_can_take_naming_the_field() {
        let v = view();
        let ok = request(json(
            r#"{"id":"w","requestType":"WORKER","instances":2,
            "constraints":[["hostname","UNIQUE"]]}"#,
        ));
        assert_eq!(v.refuse_request(&ok), None);
        let three = request(json(
            r#"{"id":"w","requestType":"WORKER","instances":3,
            "constraints":[["hostname","UNIQUE"]]}"#,
        ));
        assert!(v
            .refuse_request(&three)
            .is_some_and(|w| w.starts_with("constraints: ")));
        let rack = request(json(
            r#"{"id":"w","requestType":"WORKER",
            "requiredSlaveAttributes":{"rack":"r9"}}"#,
        ));
        assert!(v
            .refuse_request(&rack)
            .is_some_and(|w| w.starts_with("requiredSlaveAttributes: ")));
        let separate = request(json(
            r#"{"id":"w","requestType":"WORKER","instances":3,
            "slavePlacement":"SEPARATE"}"#,
        ));
        assert!(v
            .refuse_request(&separate)
            .is_some_and(|w| w.starts_with("slavePlacement: ")));
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("json")
    }
}
