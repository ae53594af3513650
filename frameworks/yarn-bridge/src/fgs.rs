//! Fine-grained scaling (pure): a zero-profile NodeManager's capacity
//! follows the resources the bridge holds on its host.
//!
//! Offers from a host with a zero-profile NodeManager are held (not
//! declined) and their cpus and memory pushed to the ResourceManager as the
//! node's capacity. Each YARN container that starts there is mirrored by a
//! placeholder task `yarn_<containerId>` of the container's size, launched
//! on a held offer, so the master's accounting matches what YARN uses (the
//! rest of that offer goes back to the master). A placeholder is killed
//! when its container finishes, and held offers unused for the hold time
//! are declined; the capacity follows both. The capacity is the
//! placeholders' resources plus the held ones: it is never negative, and a
//! container that cannot be covered is reported rather than guessed at.

use std::collections::{BTreeMap, BTreeSet};

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{take, Need};

/// A running YARN container on a node, from the NodeManager or the RM.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// YARN's container id (`container_<cluster>_<app>_<attempt>_<n>`).
    pub id: String,
    /// Its virtual cores.
    pub vcores: f64,
    /// Its memory, MB.
    pub mem_mb: f64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum FgsCommand {
    /// Push the node's capacity to the RM (`updateNodeResource`).
    Capacity {
        /// The node.
        hostname: String,
        /// Virtual cores.
        vcores: u64,
        /// Memory, MB.
        mem_mb: u64,
    },
    /// Launch placeholders on a held offer (the rest of it goes back).
    Launch {
        /// The offer.
        offer_id: v1::OfferId,
        /// Its agent.
        agent_id: v1::AgentId,
        /// Task id (`yarn_<containerId>`) and resources of each.
        tasks: Vec<(String, Vec<v1::Resource>)>,
    },
    /// Kill a placeholder whose container finished.
    Kill {
        /// The placeholder task.
        task_id: String,
        /// Its agent.
        agent_id: String,
    },
    /// Give held offers back.
    Decline {
        /// The offers.
        offer_ids: Vec<v1::OfferId>,
    },
    /// A container runs that no held resources cover (reported, not
    /// hidden).
    Uncovered {
        /// The node.
        hostname: String,
        /// The container.
        container_id: String,
    },
}

#[derive(Debug, Clone)]
struct Held {
    offer: v1::Offer,
    since_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct Node {
    agent_id: String,
    held: Vec<Held>,
    /// Placeholders by container id: (cpus, mem).
    placeholders: BTreeMap<String, (f64, f64)>,
    pushed: Option<(u64, u64)>,
}

/// A host under fine-grained scaling, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FgsNode {
    /// The host.
    pub hostname: String,
    /// Its agent.
    pub agent_id: String,
    /// Placeholders by container id: (cpus, mem).
    pub placeholders: BTreeMap<String, (f64, f64)>,
    /// CPUs held.
    pub held_cpus: f64,
    /// Memory held, MB.
    pub held_mem: f64,
}

/// The placeholder task id of a container.
pub fn placeholder_id(container_id: &str) -> String {
    format!("yarn_{container_id}")
}

fn scalar(resources: &[v1::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .sum()
}

/// The hosts under fine-grained scaling and what is held and mirrored on
/// each.
#[derive(Debug, Clone)]
pub struct Fgs {
    hold_ms: i64,
    nodes: BTreeMap<String, Node>,
}

impl Fgs {
    /// Offers are held at most `hold_ms`.
    pub fn new(hold_ms: i64) -> Self {
        Self {
            hold_ms,
            nodes: BTreeMap::new(),
        }
    }

    /// A zero-profile NodeManager runs on `hostname` (agent `agent_id`).
    pub fn add_node(&mut self, hostname: &str, agent_id: &str) {
        self.nodes
            .entry(hostname.to_string())
            .or_insert_with(|| Node {
                agent_id: agent_id.to_string(),
                ..Default::default()
            });
    }

    /// Its NodeManager is gone: held offers go back, placeholders go.
    pub fn remove_node(&mut self, hostname: &str) -> Vec<FgsCommand> {
        let Some(node) = self.nodes.remove(hostname) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !node.held.is_empty() {
            out.push(FgsCommand::Decline {
                offer_ids: node.held.iter().map(|h| h.offer.id.clone()).collect(),
            });
        }
        for cid in node.placeholders.keys() {
            out.push(FgsCommand::Kill {
                task_id: placeholder_id(cid),
                agent_id: node.agent_id.clone(),
            });
        }
        out
    }

    /// Whether `hostname` is under fine-grained scaling.
    pub fn covers(&self, hostname: &str) -> bool {
        self.nodes.contains_key(hostname)
    }

    /// An offer from a host under fine-grained scaling is held and the
    /// node's capacity raised; `None` for other hosts (the caller uses or
    /// declines the offer).
    pub fn offer(&mut self, offer: v1::Offer, now_ms: i64) -> Option<Vec<FgsCommand>> {
        let host = offer.hostname.clone();
        let node = self.nodes.get_mut(&host)?;
        node.held.push(Held {
            offer,
            since_ms: now_ms,
        });
        Some(self.capacity(&host).into_iter().collect())
    }

    /// The containers YARN runs on `hostname` now: new ones get a
    /// placeholder from the held offers, finished ones lose theirs.
    pub fn containers(&mut self, hostname: &str, running: &[Container]) -> Vec<FgsCommand> {
        let mut out = Vec::new();
        let Some(node) = self.nodes.get_mut(hostname) else {
            return out;
        };
        let now: BTreeSet<&str> = running.iter().map(|c| c.id.as_str()).collect();
        let gone: Vec<String> = node
            .placeholders
            .keys()
            .filter(|cid| !now.contains(cid.as_str()))
            .cloned()
            .collect();
        for cid in gone {
            node.placeholders.remove(&cid);
            out.push(FgsCommand::Kill {
                task_id: placeholder_id(&cid),
                agent_id: node.agent_id.clone(),
            });
        }
        // New containers, covered from the held offers in order; each
        // offer used is launched on once and leaves the held list.
        let mut left: Vec<Resources> = node
            .held
            .iter()
            .map(|h| Resources::from_vec(&h.offer.resources))
            .collect();
        let mut launches: BTreeMap<usize, Vec<(String, Vec<v1::Resource>)>> = BTreeMap::new();
        let new: Vec<&Container> = running
            .iter()
            .filter(|c| !node.placeholders.contains_key(&c.id))
            .collect();
        for c in new {
            let need = Need {
                cpus: c.vcores,
                mem: c.mem_mb,
                disk: 0.0,
                ports: 0,
            };
            let covered = left.iter_mut().enumerate().find_map(|(i, l)| {
                let (taken, rest) = take(l, &need)?;
                *l = rest;
                Some((i, taken))
            });
            match covered {
                Some((i, taken)) => {
                    node.placeholders.insert(
                        c.id.clone(),
                        (scalar(&taken, "cpus"), scalar(&taken, "mem")),
                    );
                    launches
                        .entry(i)
                        .or_default()
                        .push((placeholder_id(&c.id), taken));
                }
                None => out.push(FgsCommand::Uncovered {
                    hostname: hostname.to_string(),
                    container_id: c.id.clone(),
                }),
            }
        }
        let used: BTreeSet<usize> = launches.keys().copied().collect();
        for (i, tasks) in launches {
            let offer = &node.held[i].offer;
            out.push(FgsCommand::Launch {
                offer_id: offer.id.clone(),
                agent_id: offer.agent_id.clone(),
                tasks,
            });
        }
        let mut i = 0;
        node.held.retain(|_| {
            let keep = !used.contains(&i);
            i += 1;
            keep
        });
        out.extend(self.capacity(hostname));
        out
    }

    /// Whether `task_id` is one of the placeholders.
    pub fn has_placeholder(&self, task_id: &str) -> bool {
        task_id.strip_prefix("yarn_").is_some_and(|cid| {
            self.nodes
                .values()
                .any(|n| n.placeholders.contains_key(cid))
        })
    }

    /// The capacity last pushed for `hostname` (vcores, MB).
    pub fn pushed(&self, hostname: &str) -> Option<(u64, u64)> {
        self.nodes.get(hostname)?.pushed
    }

    /// The master took an offer back: it is no longer held, and the node's
    /// capacity follows.
    pub fn rescind(&mut self, offer_id: &v1::OfferId) -> Vec<FgsCommand> {
        let host = self.nodes.iter_mut().find_map(|(host, node)| {
            let before = node.held.len();
            node.held.retain(|h| h.offer.id != *offer_id);
            (node.held.len() != before).then(|| host.clone())
        });
        host.and_then(|h| self.capacity(&h)).into_iter().collect()
    }

    /// The hosts under fine-grained scaling, for the API.
    pub fn nodes(&self) -> Vec<FgsNode> {
        self.nodes
            .iter()
            .map(|(host, n)| FgsNode {
                hostname: host.clone(),
                agent_id: n.agent_id.clone(),
                placeholders: n.placeholders.clone(),
                held_cpus: n
                    .held
                    .iter()
                    .map(|h| scalar(&h.offer.resources, "cpus"))
                    .sum(),
                held_mem: n
                    .held
                    .iter()
                    .map(|h| scalar(&h.offer.resources, "mem"))
                    .sum(),
            })
            .collect()
    }

    /// Held offers past the hold time go back; capacities follow.
    pub fn tick(&mut self, now_ms: i64) -> Vec<FgsCommand> {
        let mut out = Vec::new();
        let hosts: Vec<String> = self.nodes.keys().cloned().collect();
        for host in hosts {
            let Some(node) = self.nodes.get_mut(&host) else {
                continue;
            };
            let (old, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut node.held)
                .into_iter()
                .partition(|h| now_ms - h.since_ms >= self.hold_ms);
            node.held = keep;
            if !old.is_empty() {
                out.push(FgsCommand::Decline {
                    offer_ids: old.into_iter().map(|h| h.offer.id).collect(),
                });
            }
            out.extend(self.capacity(&host));
        }
        out
    }

    /// The node's capacity (placeholders + held), when it changed.
    fn capacity(&mut self, hostname: &str) -> Option<FgsCommand> {
        let node = self.nodes.get_mut(hostname)?;
        let (mut cpus, mut mem) = node
            .placeholders
            .values()
            .fold((0.0, 0.0), |(c, m), (pc, pm)| (c + pc, m + pm));
        for h in &node.held {
            cpus += scalar(&h.offer.resources, "cpus");
            mem += scalar(&h.offer.resources, "mem");
        }
        let now = (cpus.max(0.0).floor() as u64, mem.max(0.0).floor() as u64);
        if node.pushed == Some(now) {
            return None;
        }
        node.pushed = Some(now);
        Some(FgsCommand::Capacity {
            hostname: hostname.to_string(),
            vcores: now.0,
            mem_mb: now.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, host: &str, text: &str) -> v1::Offer {
        v1::Offer {
            id: v1::OfferId { value: id.into() },
            agent_id: v1::AgentId { value: "a1".into() },
            hostname: host.into(),
            resources: corral_api::resources::parse(text).expect("resources"),
            ..Default::default()
        }
    }

    fn container(id: &str, vcores: f64, mem_mb: f64) -> Container {
        Container {
            id: id.into(),
            vcores,
            mem_mb,
        }
    }

    fn capacity(cmds: &[FgsCommand]) -> Option<(u64, u64)> {
        cmds.iter().rev().find_map(|c| match c {
            FgsCommand::Capacity { vcores, mem_mb, .. } => Some((*vcores, *mem_mb)),
            _ => None,
        })
    }

    #[test]
    fn capacity_follows_held_offers_and_containers_get_placeholders() {
        let mut fgs = Fgs::new(30_000);
        assert!(fgs.offer(offer("o0", "other", "cpus:1;mem:1"), 0).is_none());
        fgs.add_node("h1", "a1");
        let cmds = fgs
            .offer(offer("o1", "h1", "cpus:4;mem:8192"), 0)
            .expect("held");
        assert_eq!(capacity(&cmds), Some((4, 8192)));
        // YARN starts two containers there: placeholders on the held offer.
        let cmds = fgs.containers(
            "h1",
            &[container("c1", 1.0, 1024.0), container("c2", 2.0, 2048.0)],
        );
        let launch = cmds
            .iter()
            .find_map(|c| match c {
                FgsCommand::Launch {
                    offer_id, tasks, ..
                } => Some((offer_id.value.clone(), tasks.clone())),
                _ => None,
            })
            .expect("a launch");
        assert_eq!(launch.0, "o1");
        assert_eq!(
            launch
                .1
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>(),
            ["yarn_c1", "yarn_c2"]
        );
        // The rest of the offer went back: capacity is what the containers use.
        assert_eq!(capacity(&cmds), Some((3, 3072)));
        // c1 finishes: its placeholder is killed, capacity drops; never negative.
        let cmds = fgs.containers("h1", &[container("c2", 2.0, 2048.0)]);
        assert!(cmds.contains(&FgsCommand::Kill {
            task_id: "yarn_c1".into(),
            agent_id: "a1".into()
        }));
        assert_eq!(capacity(&cmds), Some((2, 2048)));
        let cmds = fgs.containers("h1", &[]);
        assert_eq!(capacity(&cmds), Some((0, 0)));
    }

    #[test]
    fn unused_offers_go_back_after_the_hold_and_uncovered_containers_are_reported() {
        let mut fgs = Fgs::new(10_000);
        fgs.add_node("h1", "a1");
        fgs.offer(offer("o1", "h1", "cpus:1;mem:512"), 0)
            .expect("held");
        let cmds = fgs.containers("h1", &[container("big", 4.0, 4096.0)]);
        assert!(cmds.contains(&FgsCommand::Uncovered {
            hostname: "h1".into(),
            container_id: "big".into()
        }));
        assert!(fgs.tick(9_000).is_empty());
        let cmds = fgs.tick(10_000);
        assert!(
            matches!(&cmds[0], FgsCommand::Decline { offer_ids } if offer_ids[0].value == "o1")
        );
        assert_eq!(capacity(&cmds), Some((0, 0)));
        // The NodeManager goes: its placeholders are killed.
        fgs.offer(offer("o2", "h1", "cpus:2;mem:2048"), 20_000);
        fgs.containers("h1", &[container("c9", 1.0, 512.0)]);
        let cmds = fgs.remove_node("h1");
        assert!(cmds.contains(&FgsCommand::Kill {
            task_id: "yarn_c9".into(),
            agent_id: "a1".into()
        }));
        assert!(!fgs.covers("h1"));
    }
}
