//! The conformance suite every [`Registry`] implementation passes.
//!
//! Instantiate it with [`registry_conformance!`]: it expands to a module
//! with one `#[tokio::test]` per case, each on a fresh registry built by the
//! given expression. The expression is evaluated inside an async test, so
//! it may `.await`; it yields `(guard, registry)` where `guard` is kept
//! alive for the test (a temp dir, a ZooKeeper path, or `()`).

use std::collections::HashMap;

use corral_api::v1;
use corral_api::v1::quota::QuotaConfig;

use super::{Operation, Registry, RegistryError, RegistryState};

/// Expands to a module `$name` running every conformance case against the
/// registry `$make` yields.
macro_rules! registry_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            registry_conformance!(@cases $make;
                empty_recover,
                round_trip,
                batch_is_atomic,
                weights_update,
                quota_update_and_removal,
                agent_transitions,
                schedule_replaced,
                noop_batch,
                concurrent_applies_serialize,
                large_state,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, registry) = $make;
                $crate::registry::conformance::$case(registry).await;
            }
        )*
    };
}
pub(crate) use registry_conformance;

/// An agent with resources and attributes.
pub(crate) fn agent(id: &str) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: format!("{id}.example.com"),
        port: Some(5051),
        resources: corral_api::resources::parse(
            "cpus:4;mem:8192;disk:1024;ports:[31000-32000];cpus(eng):2",
        )
        .expect("resources"),
        attributes: corral_api::resources::parse_attributes("rack:r1;zone:a;level:3")
            .expect("attributes"),
        id: Some(v1::AgentId { value: id.into() }),
        ..Default::default()
    }
}

/// A time.
pub(crate) fn at(nanoseconds: i64) -> v1::TimeInfo {
    v1::TimeInfo { nanoseconds }
}

/// A quota config from `(name, value)` lists.
pub(crate) fn quota(role: &str, guarantees: &[(&str, f64)], limits: &[(&str, f64)]) -> QuotaConfig {
    let map = |items: &[(&str, f64)]| {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), v1::value::Scalar { value: *value }))
            .collect::<HashMap<_, _>>()
    };
    QuotaConfig {
        role: role.into(),
        guarantees: map(guarantees),
        limits: map(limits),
    }
}

fn schedule(host: &str, start: i64) -> v1::maintenance::Schedule {
    v1::maintenance::Schedule {
        windows: vec![v1::maintenance::Window {
            machine_ids: vec![v1::MachineId {
                hostname: Some(host.into()),
                ip: Some("10.0.0.1".into()),
            }],
            unavailability: v1::Unavailability {
                start: at(start),
                duration: Some(v1::DurationInfo {
                    nanoseconds: 3_600_000_000_000,
                }),
            },
        }],
    }
}

fn admit(id: &str) -> Operation {
    Operation::AdmitAgent(agent(id))
}

fn weights(items: &[(&str, f64)]) -> Operation {
    Operation::UpdateWeights(items.iter().map(|(r, w)| ((*r).to_owned(), *w)).collect())
}

async fn apply_ok<R: Registry>(registry: &R, ops: Vec<Operation>) -> RegistryState {
    match registry.apply(ops).await {
        Ok(state) => state,
        Err(e) => panic!("apply failed: {e}"),
    }
}

async fn recover_ok<R: Registry>(registry: &R) -> RegistryState {
    match registry.recover().await {
        Ok(state) => state,
        Err(e) => panic!("recover failed: {e}"),
    }
}

/// Applies `ops`, expects a rejection, and checks nothing changed.
async fn refused<R: Registry>(registry: &R, ops: Vec<Operation>) -> RegistryError {
    let before = recover_ok(registry).await;
    let error = match registry.apply(ops.clone()).await {
        Ok(_) => panic!("{ops:?} was accepted"),
        Err(e) => e,
    };
    assert!(error.is_rejection(), "not a rejection: {error}");
    assert_eq!(
        recover_ok(registry).await,
        before,
        "{ops:?} changed the state"
    );
    error
}

/// A new registry recovers the empty state.
pub(crate) async fn empty_recover<R: Registry>(registry: R) {
    assert_eq!(recover_ok(&registry).await, RegistryState::default());
    assert_eq!(apply_ok(&registry, vec![]).await, RegistryState::default());
    assert_eq!(recover_ok(&registry).await, RegistryState::default());
}

/// Everything written is recovered exactly.
pub(crate) async fn round_trip<R: Registry>(registry: R) {
    let written = apply_ok(
        &registry,
        vec![
            admit("a1"),
            admit("a2"),
            admit("a3"),
            Operation::MarkUnreachable {
                agent_id: "a2".into(),
                since: at(1_700_000_000_123_456_789),
            },
            Operation::MarkGone {
                agent_id: "a3".into(),
                since: at(1_700_000_001_000_000_000),
            },
            weights(&[("eng", 2.5), ("eng/spark", 0.25), ("*", 1.0)]),
            Operation::UpdateQuota(vec![
                quota("eng", &[("cpus", 4.0), ("mem", 0.0)], &[("cpus", 8.5)]),
                quota("ops", &[], &[("gpus", 1.0)]),
            ]),
            Operation::UpdateSchedule(vec![schedule("a1.example.com", 1_800_000_000_000_000_000)]),
        ],
    )
    .await;

    assert_eq!(written.agents.len(), 1);
    assert_eq!(written.agents["a1"], agent("a1"));
    assert_eq!(written.unreachable["a2"].info, agent("a2"));
    assert_eq!(
        written.unreachable["a2"].since,
        at(1_700_000_000_123_456_789)
    );
    assert_eq!(written.gone["a3"], at(1_700_000_001_000_000_000));
    assert_eq!(written.weights["eng"], 2.5);
    assert_eq!(written.weights["eng/spark"], 0.25);
    assert_eq!(written.weights["*"], 1.0);
    assert_eq!(
        written.quotas["eng"],
        quota("eng", &[("cpus", 4.0), ("mem", 0.0)], &[("cpus", 8.5)])
    );
    assert_eq!(written.quotas["ops"], quota("ops", &[], &[("gpus", 1.0)]));
    assert_eq!(
        written.schedules,
        vec![schedule("a1.example.com", 1_800_000_000_000_000_000)]
    );
    assert_eq!(recover_ok(&registry).await, written);
}

/// One refused operation in a batch leaves everything as it was.
pub(crate) async fn batch_is_atomic<R: Registry>(registry: R) {
    refused(&registry, vec![admit("a1"), weights(&[("eng", -1.0)])]).await;
    let error = refused(
        &registry,
        vec![
            admit("a1"),
            Operation::MarkGone {
                agent_id: "nobody".into(),
                since: at(1),
            },
        ],
    )
    .await;
    assert!(matches!(error, RegistryError::UnknownAgent { ref agent_id } if agent_id == "nobody"));
    assert_eq!(recover_ok(&registry).await, RegistryState::default());

    let before = apply_ok(&registry, vec![admit("a1"), weights(&[("eng", 2.0)])]).await;
    refused(
        &registry,
        vec![
            Operation::RemoveAgent {
                agent_id: "a1".into(),
            },
            weights(&[("eng", 3.0)]),
            Operation::UpdateQuota(vec![quota("eng", &[("cpus", 2.0)], &[("cpus", 1.0)])]),
        ],
    )
    .await;
    assert_eq!(recover_ok(&registry).await, before);

    // Later operations in a batch see the effects of earlier ones.
    let state = apply_ok(
        &registry,
        vec![
            admit("a2"),
            Operation::MarkUnreachable {
                agent_id: "a2".into(),
                since: at(5),
            },
            Operation::MarkGone {
                agent_id: "a2".into(),
                since: at(6),
            },
        ],
    )
    .await;
    assert_eq!(state.gone["a2"], at(6));
    assert!(!state.unreachable.contains_key("a2") && !state.agents.contains_key("a2"));
}

/// Weights are set, updated, and invalid ones refused.
pub(crate) async fn weights_update<R: Registry>(registry: R) {
    apply_ok(&registry, vec![weights(&[("eng", 2.0), ("ops", 0.5)])]).await;
    let state = apply_ok(&registry, vec![weights(&[("eng", 3.0), ("eng/ml", 1.5)])]).await;
    assert_eq!(
        state
            .weights
            .iter()
            .map(|(r, w)| (r.as_str(), *w))
            .collect::<Vec<_>>(),
        vec![("eng", 3.0), ("eng/ml", 1.5), ("ops", 0.5)]
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        refused(&registry, vec![weights(&[("eng", bad)])]).await;
    }
    for role in [
        "",
        "/eng",
        "eng/",
        "eng//ml",
        "eng/../ops",
        ".",
        "-eng",
        "a b",
        "eng/*",
    ] {
        refused(&registry, vec![weights(&[(role, 1.0)])]).await;
    }
    refused(&registry, vec![weights(&[("eng", 1.0), ("eng", 2.0)])]).await;
    assert_eq!(recover_ok(&registry).await, state);
}

/// Quota is set, replaced and removed, and invalid configs refused.
pub(crate) async fn quota_update_and_removal<R: Registry>(registry: R) {
    let eng = quota("eng", &[("cpus", 4.0)], &[("cpus", 8.0), ("mem", 4096.0)]);
    let ops = quota("ops", &[("mem", 512.0)], &[]);
    let state = apply_ok(
        &registry,
        vec![Operation::UpdateQuota(vec![eng.clone(), ops.clone()])],
    )
    .await;
    assert_eq!(state.quotas.len(), 2);
    assert_eq!(state.quotas["eng"], eng);

    let eng2 = quota("eng", &[("cpus", 6.0)], &[("cpus", 6.0)]);
    let state = apply_ok(&registry, vec![Operation::UpdateQuota(vec![eng2.clone()])]).await;
    assert_eq!(state.quotas["eng"], eng2);
    assert_eq!(state.quotas["ops"], ops);

    let state = apply_ok(
        &registry,
        vec![Operation::UpdateQuota(vec![quota("eng", &[], &[])])],
    )
    .await;
    assert!(!state.quotas.contains_key("eng"));
    assert_eq!(state.quotas["ops"], ops);
    // Removing a role without quota is a no-op.
    let state = apply_ok(
        &registry,
        vec![Operation::UpdateQuota(vec![quota("nobody", &[], &[])])],
    )
    .await;
    assert_eq!(state.quotas.len(), 1);
    assert_eq!(recover_ok(&registry).await, state);

    let refusals = [
        quota("eng", &[("cpus", 2.0)], &[("cpus", 1.0)]),
        quota("eng", &[("cpus", -1.0)], &[]),
        quota("eng", &[], &[("mem", f64::NAN)]),
        quota("eng", &[("cpus", f64::INFINITY)], &[]),
        quota("eng", &[("", 1.0)], &[]),
        quota("*", &[("cpus", 1.0)], &[]),
        quota("", &[("cpus", 1.0)], &[]),
        quota("eng/../x", &[("cpus", 1.0)], &[]),
    ];
    for config in refusals {
        refused(&registry, vec![Operation::UpdateQuota(vec![config])]).await;
    }
    refused(
        &registry,
        vec![Operation::UpdateQuota(vec![
            quota("eng", &[("cpus", 1.0)], &[]),
            quota("eng", &[("cpus", 2.0)], &[]),
        ])],
    )
    .await;
    assert_eq!(recover_ok(&registry).await, state);
}

/// Admitted, unreachable, reachable again, gone, removed.
pub(crate) async fn agent_transitions<R: Registry>(registry: R) {
    let state = apply_ok(&registry, vec![admit("a1"), admit("a2")]).await;
    assert_eq!(state.agents.keys().collect::<Vec<_>>(), ["a1", "a2"]);

    // Re-admitting updates the info.
    let mut bigger = agent("a1");
    bigger.resources = corral_api::resources::parse("cpus:16;mem:65536").expect("resources");
    let state = apply_ok(&registry, vec![Operation::AdmitAgent(bigger.clone())]).await;
    assert_eq!(state.agents["a1"], bigger);

    let unreachable = |id: &str, t: i64| Operation::MarkUnreachable {
        agent_id: id.into(),
        since: at(t),
    };
    let gone = |id: &str, t: i64| Operation::MarkGone {
        agent_id: id.into(),
        since: at(t),
    };

    let state = apply_ok(&registry, vec![unreachable("a1", 100)]).await;
    assert!(!state.agents.contains_key("a1"));
    assert_eq!(state.unreachable["a1"].info, bigger);
    assert_eq!(state.unreachable["a1"].since, at(100));
    // Marking again keeps the first time.
    let state = apply_ok(&registry, vec![unreachable("a1", 200)]).await;
    assert_eq!(state.unreachable["a1"].since, at(100));

    // It comes back.
    let state = apply_ok(&registry, vec![admit("a1")]).await;
    assert_eq!(state.agents["a1"], agent("a1"));
    assert!(state.unreachable.is_empty());

    // Unreachable, then gone; gone twice keeps the first time.
    apply_ok(&registry, vec![unreachable("a1", 300)]).await;
    let state = apply_ok(&registry, vec![gone("a1", 400), gone("a2", 500)]).await;
    assert!(state.agents.is_empty() && state.unreachable.is_empty());
    assert_eq!(state.gone["a1"], at(400));
    assert_eq!(state.gone["a2"], at(500));
    let state = apply_ok(&registry, vec![gone("a1", 600)]).await;
    assert_eq!(state.gone["a1"], at(400));

    // Gone agents never come back.
    let error = refused(&registry, vec![admit("a1")]).await;
    assert!(matches!(error, RegistryError::AgentGone { ref agent_id } if agent_id == "a1"));
    refused(&registry, vec![unreachable("a1", 700)]).await;
    // Unknown agents cannot be marked.
    refused(&registry, vec![unreachable("nobody", 1)]).await;
    refused(&registry, vec![gone("nobody", 1)]).await;
    // Invalid infos are refused.
    let mut no_id = agent("a9");
    no_id.id = None;
    refused(&registry, vec![Operation::AdmitAgent(no_id)]).await;
    let mut no_host = agent("a9");
    no_host.hostname.clear();
    refused(&registry, vec![Operation::AdmitAgent(no_host)]).await;

    // Removal forgets an agent wherever it is; unknown ids are a no-op.
    let state = apply_ok(
        &registry,
        vec![
            admit("a3"),
            Operation::RemoveAgent {
                agent_id: "a1".into(),
            },
            Operation::RemoveAgent {
                agent_id: "nobody".into(),
            },
        ],
    )
    .await;
    assert!(!state.gone.contains_key("a1"));
    assert_eq!(state.gone.keys().collect::<Vec<_>>(), ["a2"]);
    let state = apply_ok(&registry, vec![admit("a1")]).await;
    assert!(state.agents.contains_key("a1"));
    assert_eq!(recover_ok(&registry).await, state);
}

/// Maintenance schedules are replaced whole.
pub(crate) async fn schedule_replaced<R: Registry>(registry: R) {
    let first = vec![schedule("h1", 10), schedule("h2", 20)];
    let state = apply_ok(&registry, vec![Operation::UpdateSchedule(first.clone())]).await;
    assert_eq!(state.schedules, first);
    let second = vec![schedule("h3", 30)];
    let state = apply_ok(&registry, vec![Operation::UpdateSchedule(second.clone())]).await;
    assert_eq!(state.schedules, second);
    let state = apply_ok(&registry, vec![Operation::UpdateSchedule(vec![])]).await;
    assert!(state.schedules.is_empty());
    assert_eq!(recover_ok(&registry).await, state);
}

/// A batch that changes nothing returns the current state.
pub(crate) async fn noop_batch<R: Registry>(registry: R) {
    let state = apply_ok(&registry, vec![admit("a1"), weights(&[("eng", 2.0)])]).await;
    let again = apply_ok(
        &registry,
        vec![
            admit("a1"),
            weights(&[("eng", 2.0)]),
            Operation::RemoveAgent {
                agent_id: "nobody".into(),
            },
        ],
    )
    .await;
    assert_eq!(again, state);
    assert_eq!(recover_ok(&registry).await, state);
}

/// Concurrent applies are all applied, one after the other.
pub(crate) async fn concurrent_applies_serialize<R: Registry>(registry: R) {
    let ids: Vec<String> = (0..16).map(|i| format!("c{i:02}")).collect();
    let results = futures::future::join_all(
        ids.iter()
            .map(|id| registry.apply(vec![admit(id), weights(&[(id.as_str(), 1.5)])])),
    )
    .await;
    for result in results {
        if let Err(e) = result {
            panic!("concurrent apply failed: {e}");
        }
    }
    let state = recover_ok(&registry).await;
    assert_eq!(state.agents.keys().cloned().collect::<Vec<_>>(), ids);
    assert_eq!(state.weights.len(), ids.len());
}

/// Thousands of agents and roles, written in batches, recovered exactly.
pub(crate) async fn large_state<R: Registry>(registry: R) {
    const AGENTS: usize = 5_000;
    const ROLES: usize = 1_000;
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("agent-{i:05}")).collect();
    for chunk in ids.chunks(1_000) {
        apply_ok(&registry, chunk.iter().map(|id| admit(id)).collect()).await;
    }
    let roles: Vec<String> = (0..ROLES)
        .map(|i| format!("team{}/svc{i}", i % 10))
        .collect();
    let mut ops = vec![
        Operation::UpdateWeights(
            roles
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), 1.0 + i as f64 / 8.0))
                .collect(),
        ),
        Operation::UpdateQuota(
            roles
                .iter()
                .enumerate()
                .map(|(i, r)| quota(r, &[("cpus", i as f64)], &[("cpus", 2.0 * i as f64 + 1.0)]))
                .collect(),
        ),
    ];
    ops.extend(ids.iter().step_by(10).map(|id| Operation::MarkUnreachable {
        agent_id: id.clone(),
        since: at(42),
    }));
    ops.extend(
        ids.iter()
            .skip(5)
            .step_by(100)
            .map(|id| Operation::MarkGone {
                agent_id: id.clone(),
                since: at(43),
            }),
    );
    let written = apply_ok(&registry, ops).await;
    assert_eq!(written.unreachable.len(), AGENTS / 10);
    assert_eq!(written.gone.len(), AGENTS / 100);
    assert_eq!(written.agents.len(), AGENTS - AGENTS / 10 - AGENTS / 100);
    assert_eq!(written.weights.len(), ROLES);
    assert_eq!(written.quotas.len(), ROLES);
    assert_eq!(recover_ok(&registry).await, written);
}
