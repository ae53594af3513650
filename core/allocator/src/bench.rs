//! The allocator benchmark scenarios, shared by the criterion benches and
//! `corral bench allocator`: the Mesos benchmark grid on simulated agents
//! of 64 CPUs and 488 GB.
//!
//! Each scenario builds an allocator, then times allocation cycles. A
//! "full" cycle starts with every agent free; between measured cycles all
//! offers are recovered (untimed) so every sample allocates the whole
//! cluster again.

use std::time::{Duration, Instant};

use corral_api::resources::{self, Resources};

use crate::{Allocation, Allocator, Quota};

/// Resources of one simulated agent (Mesos' benchmark agent).
pub fn agent_resources() -> Resources {
    Resources::from_vec(&[
        resources::scalar("cpus", 64.0),
        resources::scalar("mem", 488.0 * 1024.0),
        resources::scalar("disk", 1024.0 * 1024.0),
        resources::ranges("ports", &[(31000, 32000)]),
    ])
}

/// What a scenario exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every agent free; each framework in a role of its own.
    Full,
    /// Every agent free; every framework in one role.
    FullOneRole,
    /// Every framework has declined every agent with a long filter.
    AllFiltered,
    /// Quota guarantees across many roles (one framework each).
    Quota,
    /// Nothing free: the cost of a cycle with nothing to do.
    Idle,
}

impl Kind {
    /// The scenario's name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::FullOneRole => "full-one-role",
            Kind::AllFiltered => "all-filtered",
            Kind::Quota => "quota",
            Kind::Idle => "idle",
        }
    }
}

/// One grid cell.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// What is measured.
    pub kind: Kind,
    /// Simulated agents.
    pub agents: usize,
    /// Frameworks.
    pub frameworks: usize,
}

impl Scenario {
    /// Roles used by the scenario.
    pub fn roles(&self) -> usize {
        match self.kind {
            Kind::FullOneRole => 1,
            _ => self.frameworks,
        }
    }
}

/// The grid of `corral bench allocator`.
pub fn grid() -> Vec<Scenario> {
    let mut v = Vec::new();
    for agents in [1_000, 10_000, 50_000] {
        for frameworks in [1, 100, 1_000] {
            for kind in [Kind::Full, Kind::FullOneRole] {
                v.push(Scenario {
                    kind,
                    agents,
                    frameworks,
                });
            }
        }
    }
    v.push(Scenario {
        kind: Kind::AllFiltered,
        agents: 10_000,
        frameworks: 1_000,
    });
    v.push(Scenario {
        kind: Kind::Quota,
        agents: 10_000,
        frameworks: 3_000,
    });
    v.push(Scenario {
        kind: Kind::Idle,
        agents: 10_000,
        frameworks: 1_000,
    });
    v
}

/// A built scenario, ready to time.
pub struct Prepared {
    /// The scenario.
    pub scenario: Scenario,
    /// The allocator in its starting state.
    pub allocator: Allocator,
    now: Duration,
}

/// Builds the allocator of a scenario.
pub fn prepare(scenario: Scenario) -> Prepared {
    let mut a = Allocator::default();
    let res = agent_resources();
    for i in 0..scenario.agents {
        a.add_agent(&format!("agent-{i:06}"), res.clone(), &[]);
    }
    for i in 0..scenario.frameworks {
        let role = match scenario.kind {
            Kind::FullOneRole => "bench".to_string(),
            _ => format!("role-{i:05}"),
        };
        a.add_framework(&format!("framework-{i:05}"), vec![role], true);
    }
    let now = Duration::from_secs(1);
    match scenario.kind {
        Kind::AllFiltered => {
            let until = now + Duration::from_secs(365 * 24 * 3600);
            for f in 0..scenario.frameworks {
                let fw = format!("framework-{f:05}");
                for i in 0..scenario.agents {
                    a.add_filter(&fw, &format!("agent-{i:06}"), until);
                }
            }
        }
        Kind::Quota => {
            // Each role is guaranteed one agent's CPUs.
            let quota = Quota {
                guarantees: [("cpus".to_string(), 64.0)].into(),
                limits: Default::default(),
            };
            for i in 0..scenario.frameworks {
                a.update_quota(&format!("role-{i:05}"), Some(&quota));
            }
        }
        Kind::Idle => {
            // Everything offered; the measured cycles find nothing free.
            let _ = a.allocate(now);
        }
        Kind::Full | Kind::FullOneRole => {}
    }
    Prepared {
        scenario,
        allocator: a,
        now,
    }
}

impl Prepared {
    /// Times one cycle and returns its duration and the number of offers;
    /// afterwards the allocator is back in its starting state.
    pub fn cycle(&mut self) -> (Duration, usize) {
        self.now += Duration::from_millis(1);
        let started = Instant::now();
        let out = self.allocator.allocate(self.now);
        let took = started.elapsed();
        let offers = out.len();
        self.reset(out);
        (took, offers)
    }

    fn reset(&mut self, out: Vec<Allocation>) {
        for o in out {
            self.allocator
                .recover(&o.framework, &o.agent, &o.resources, None);
        }
    }
}

/// Median and 99th percentile of samples.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_scenarios_allocate_and_reset() {
        for kind in [Kind::Full, Kind::FullOneRole, Kind::Quota] {
            let mut p = prepare(Scenario {
                kind,
                agents: 50,
                frameworks: 10,
            });
            let (_, first) = p.cycle();
            let (_, second) = p.cycle();
            assert_eq!(first, 50, "{kind:?}: every agent offered");
            assert_eq!(first, second, "{kind:?}: reset restores the state");
        }
        let mut filtered = prepare(Scenario {
            kind: Kind::AllFiltered,
            agents: 50,
            frameworks: 10,
        });
        assert_eq!(filtered.cycle().1, 0);
        let mut idle = prepare(Scenario {
            kind: Kind::Idle,
            agents: 50,
            frameworks: 10,
        });
        assert_eq!(idle.cycle().1, 0);
    }
}
