//! Round trips (JSON and protobuf) of every scheduler, executor and master
//! Call/Event type with realistic content. The tables are checked against
//! the enums in the descriptor pool, so a new type cannot be forgotten.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;

use common::*;
use corral_api::codec::descriptor_pool;
use corral_api::v1::{self, master, scheduler, *};
use prost::{Message, Name};

/// Round-trips every message and checks that the `type` values seen cover
/// every value of `type_enum` except `UNKNOWN`, and that each message carries
/// its payload under the lower-cased type name whenever such a field exists.
fn check_table<M>(table: &[M], type_enum: &str)
where
    M: Message + Name + Default + PartialEq + Debug,
{
    let desc = descriptor_pool()
        .get_message_by_name(&M::full_name())
        .unwrap();
    let mut seen = BTreeSet::new();
    for m in table {
        let json = roundtrip(m);
        let ty = json["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type in {json}"))
            .to_string();
        let payload = ty.to_ascii_lowercase();
        if desc.get_field_by_name(&payload).is_some() {
            assert!(
                json.get(&payload).is_some(),
                "{ty} lacks its payload `{payload}`: {json}"
            );
        }
        seen.insert(ty);
    }
    let all: BTreeSet<String> = descriptor_pool()
        .get_enum_by_name(type_enum)
        .unwrap_or_else(|| panic!("no enum {type_enum}"))
        .values()
        .map(|v| v.name().to_string())
        .filter(|n| n != "UNKNOWN")
        .collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{type_enum}: no test message for {missing:?}"
    );
}

fn sched_call(t: scheduler::call::Type, f: impl FnOnce(&mut scheduler::Call)) -> scheduler::Call {
    let mut c = scheduler::Call {
        framework_id: Some(fid()),
        r#type: Some(t as i32),
        ..Default::default()
    };
    f(&mut c);
    c
}

fn offer_operations() -> Vec<offer::Operation> {
    use offer::operation::{self as op, Type};
    let mut vol = scalar("disk", 2048.0);
    vol.reservations = offered_resources()[1].reservations.clone();
    vol.disk = offered_resources()[2].disk.clone();
    let mut raw = scalar("disk", 100_000.0);
    raw.provider_id = Some(ResourceProviderId {
        value: "rp-1".into(),
    });
    raw.disk = Some(Box::new(resource::DiskInfo {
        source: Some(resource::disk_info::Source {
            r#type: resource::disk_info::source::Type::Raw as i32,
            vendor: Some("org.example".into()),
            id: Some("csi-vol-1".into()),
            profile: Some("fast".into()),
            metadata: Some(labels(&[("m", "1")])),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let mk = |t: Type, id: &str, f: &dyn Fn(&mut offer::Operation)| {
        let mut o = offer::Operation {
            r#type: Some(t as i32),
            id: Some(opid(id)),
            ..Default::default()
        };
        f(&mut o);
        o
    };
    vec![
        mk(Type::Launch, "launch-1", &|o| {
            o.id = None;
            o.launch = Some(op::Launch {
                task_infos: vec![task_info("web"), task_info("worker")],
            })
        }),
        mk(Type::LaunchGroup, "lg-1", &|o| {
            o.launch_group = Some(op::LaunchGroup {
                executor: executor_info(),
                task_group: TaskGroupInfo {
                    tasks: vec![task_info("a"), task_info("b")],
                },
            })
        }),
        mk(Type::Reserve, "reserve-1", &|o| {
            o.reserve = Some(op::Reserve {
                source: task_resources(),
                resources: offered_resources(),
            })
        }),
        mk(Type::Unreserve, "unreserve-1", &|o| {
            o.unreserve = Some(op::Unreserve {
                resources: offered_resources(),
            })
        }),
        mk(Type::Create, "create-1", &|o| {
            o.create = Some(op::Create {
                volumes: vec![vol.clone()],
            })
        }),
        mk(Type::Destroy, "destroy-1", &|o| {
            o.destroy = Some(op::Destroy {
                volumes: vec![vol.clone()],
            })
        }),
        mk(Type::GrowVolume, "grow-1", &|o| {
            o.grow_volume = Some(op::GrowVolume {
                volume: vol.clone(),
                addition: scalar("disk", 512.0),
            })
        }),
        mk(Type::ShrinkVolume, "shrink-1", &|o| {
            o.shrink_volume = Some(op::ShrinkVolume {
                volume: vol.clone(),
                subtract: value::Scalar { value: 256.0 },
            })
        }),
        mk(Type::CreateDisk, "cdisk-1", &|o| {
            o.create_disk = Some(op::CreateDisk {
                source: raw.clone(),
                target_type: resource::disk_info::source::Type::Mount as i32,
                target_profile: Some("fast".into()),
            })
        }),
        mk(Type::DestroyDisk, "ddisk-1", &|o| {
            o.destroy_disk = Some(op::DestroyDisk {
                source: raw.clone(),
            })
        }),
    ]
}

fn offer_constraints() -> scheduler::OfferConstraints {
    use scheduler::attribute_constraint::{predicate, selector, Predicate, Selector};
    let c = |sel, pred| scheduler::AttributeConstraint {
        selector: Selector {
            selector: Some(sel),
        },
        predicate: Predicate {
            predicate: Some(pred),
        },
    };
    scheduler::OfferConstraints {
        role_constraints: HashMap::from([(
            "analytics".to_string(),
            scheduler::offer_constraints::RoleConstraints {
                groups: vec![scheduler::offer_constraints::role_constraints::Group {
                    attribute_constraints: vec![
                        c(
                            selector::Selector::AttributeName("rack".into()),
                            predicate::Predicate::TextMatches(predicate::TextMatches {
                                regex: "r1[0-9]".into(),
                            }),
                        ),
                        c(
                            selector::Selector::PseudoattributeType(
                                selector::PseudoattributeType::Zone as i32,
                            ),
                            predicate::Predicate::Exists(predicate::Exists {}),
                        ),
                    ],
                }],
            },
        )]),
    }
}

#[test]
fn offer_operation_types_all_covered() {
    let ops = offer_operations();
    for o in &ops {
        roundtrip(o);
    }
    check_table(&ops, "mesos.v1.Offer.Operation.Type");
}

#[test]
fn scheduler_calls_round_trip() {
    use scheduler::call::{self, Type};
    let table = vec![
        scheduler::Call {
            framework_id: None,
            r#type: Some(Type::Subscribe as i32),
            subscribe: Some(call::Subscribe {
                framework_info: framework_info(),
                suppressed_roles: vec!["analytics/batch".into()],
                offer_constraints: Some(offer_constraints()),
            }),
            ..Default::default()
        },
        sched_call(Type::Teardown, |_| {}),
        sched_call(Type::Accept, |c| {
            c.accept = Some(call::Accept {
                offer_ids: vec![oid("O1"), oid("O2")],
                operations: offer_operations(),
                filters: Some(filters(3600.0)),
            })
        }),
        sched_call(Type::Decline, |c| {
            c.decline = Some(call::Decline {
                offer_ids: vec![oid("O3")],
                filters: Some(filters(0.5)),
            })
        }),
        sched_call(Type::AcceptInverseOffers, |c| {
            c.accept_inverse_offers = Some(call::AcceptInverseOffers {
                inverse_offer_ids: vec![oid("inverse-O7")],
                filters: Some(filters(10.0)),
            })
        }),
        sched_call(Type::DeclineInverseOffers, |c| {
            c.decline_inverse_offers = Some(call::DeclineInverseOffers {
                inverse_offer_ids: vec![oid("inverse-O8")],
                filters: Some(filters(1e-3)),
            })
        }),
        sched_call(Type::Revive, |c| {
            c.revive = Some(call::Revive {
                roles: vec!["analytics".into()],
            })
        }),
        sched_call(Type::Kill, |c| {
            c.kill = Some(call::Kill {
                task_id: tid("web.a1b2c3"),
                agent_id: Some(aid()),
                kill_policy: Some(KillPolicy {
                    grace_period: Some(DurationInfo {
                        nanoseconds: 1_500_000_000,
                    }),
                }),
            })
        }),
        sched_call(Type::Shutdown, |c| {
            c.shutdown = Some(call::Shutdown {
                executor_id: eid("default-executor-7"),
                agent_id: aid(),
            })
        }),
        sched_call(Type::Acknowledge, |c| {
            c.acknowledge = Some(call::Acknowledge {
                agent_id: aid(),
                task_id: tid("web.a1b2c3"),
                uuid: UUID.to_vec(),
            })
        }),
        sched_call(Type::AcknowledgeOperationStatus, |c| {
            c.acknowledge_operation_status = Some(call::AcknowledgeOperationStatus {
                agent_id: Some(aid()),
                resource_provider_id: Some(ResourceProviderId {
                    value: "rp-1".into(),
                }),
                uuid: UUID.to_vec(),
                operation_id: opid("reserve-1"),
            })
        }),
        sched_call(Type::Reconcile, |c| {
            c.reconcile = Some(call::Reconcile {
                tasks: vec![
                    call::reconcile::Task {
                        task_id: tid("t1"),
                        agent_id: Some(aid()),
                    },
                    call::reconcile::Task {
                        task_id: tid("t2"),
                        agent_id: None,
                    },
                ],
            })
        }),
        sched_call(Type::ReconcileOperations, |c| {
            c.reconcile_operations = Some(call::ReconcileOperations {
                operations: vec![call::reconcile_operations::Operation {
                    operation_id: opid("reserve-1"),
                    agent_id: Some(aid()),
                    resource_provider_id: Some(ResourceProviderId {
                        value: "rp-1".into(),
                    }),
                }],
            })
        }),
        sched_call(Type::Message, |c| {
            c.message = Some(call::Message {
                agent_id: aid(),
                executor_id: eid("default-executor-7"),
                data: (0u8..=255).collect(),
            })
        }),
        sched_call(Type::Request, |c| {
            c.request = Some(call::Request {
                requests: vec![v1::Request {
                    agent_id: Some(aid()),
                    resources: task_resources(),
                }],
            })
        }),
        sched_call(Type::Suppress, |c| {
            c.suppress = Some(call::Suppress {
                roles: vec!["analytics".into(), "analytics/batch".into()],
            })
        }),
        sched_call(Type::UpdateFramework, |c| {
            let mut fi = framework_info();
            fi.roles.push("new-role".into());
            c.update_framework = Some(call::UpdateFramework {
                framework_info: fi,
                suppressed_roles: vec!["new-role".into()],
                offer_constraints: Some(offer_constraints()),
            })
        }),
    ];
    check_table(&table, "mesos.v1.scheduler.Call.Type");
}

#[test]
fn scheduler_events_round_trip() {
    use scheduler::event::{self, Type};
    let ev = |t: Type, f: &dyn Fn(&mut scheduler::Event)| {
        let mut e = scheduler::Event {
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut e);
        e
    };
    let table = vec![
        ev(Type::Subscribed, &|e| {
            e.subscribed = Some(event::Subscribed {
                framework_id: fid(),
                heartbeat_interval_seconds: Some(15.0),
                master_info: Some(master_info()),
            })
        }),
        ev(Type::Offers, &|e| {
            e.offers = Some(event::Offers {
                offers: vec![offer(1), offer(2)],
            })
        }),
        ev(Type::InverseOffers, &|e| {
            e.inverse_offers = Some(event::InverseOffers {
                inverse_offers: vec![inverse_offer()],
            })
        }),
        ev(Type::Rescind, &|e| {
            e.rescind = Some(event::Rescind {
                offer_id: oid("O1"),
            })
        }),
        ev(Type::RescindInverseOffer, &|e| {
            e.rescind_inverse_offer = Some(event::RescindInverseOffer {
                inverse_offer_id: oid("inverse-O7"),
            })
        }),
        ev(Type::Update, &|e| {
            e.update = Some(event::Update {
                status: task_status(TaskState::TaskFailed),
            })
        }),
        ev(Type::UpdateOperationStatus, &|e| {
            e.update_operation_status = Some(event::UpdateOperationStatus {
                status: operation_status(),
            })
        }),
        ev(Type::Message, &|e| {
            e.message = Some(event::Message {
                agent_id: aid(),
                executor_id: eid("default-executor-7"),
                data: b"\x00\xffhello".to_vec(),
            })
        }),
        ev(Type::Failure, &|e| {
            e.failure = Some(event::Failure {
                agent_id: Some(aid()),
                executor_id: Some(eid("default-executor-7")),
                status: Some(-9),
            })
        }),
        ev(Type::Error, &|e| {
            e.error = Some(event::Error {
                message: "Framework has been removed \u{1F480}".into(),
            })
        }),
        ev(Type::Heartbeat, &|_| {}),
    ];
    check_table(&table, "mesos.v1.scheduler.Event.Type");
}

#[test]
fn every_task_state_round_trips() {
    let states: Vec<_> = descriptor_pool()
        .get_enum_by_name("mesos.v1.TaskState")
        .unwrap()
        .values()
        .map(|v| TaskState::try_from(v.number()).unwrap())
        .collect();
    assert_eq!(states.len(), 14);
    for s in states {
        let json = roundtrip(&task_status(s));
        assert_eq!(json["state"], s.as_str_name());
    }
}

#[test]
fn executor_calls_round_trip() {
    use v1::executor::call::{self, Type};
    let call = |t: Type, f: &dyn Fn(&mut v1::executor::Call)| {
        let mut c = v1::executor::Call {
            executor_id: eid("default-executor-7"),
            framework_id: fid(),
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let table = vec![
        call(Type::Subscribe, &|c| {
            c.subscribe = Some(call::Subscribe {
                unacknowledged_tasks: vec![task_info("web")],
                unacknowledged_updates: vec![call::Update {
                    status: task_status(TaskState::TaskRunning),
                }],
            })
        }),
        call(Type::Update, &|c| {
            c.update = Some(call::Update {
                status: task_status(TaskState::TaskFinished),
            })
        }),
        call(Type::Message, &|c| {
            c.message = Some(call::Message {
                data: b"ping \x01\x02".to_vec(),
            })
        }),
    ];
    check_table(&table, "mesos.v1.executor.Call.Type");
}

#[test]
fn executor_events_round_trip() {
    use v1::executor::event::{self, Type};
    let ev = |t: Type, f: &dyn Fn(&mut v1::executor::Event)| {
        let mut e = v1::executor::Event {
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut e);
        e
    };
    let mut with_executor = task_info("web");
    with_executor.executor = Some(executor_info());
    let table = vec![
        ev(Type::Subscribed, &|e| {
            e.subscribed = Some(event::Subscribed {
                executor_info: executor_info(),
                framework_info: framework_info(),
                agent_info: agent_info(),
                container_id: Some(ContainerId {
                    value: "5f1c".into(),
                    parent: None,
                }),
            })
        }),
        ev(Type::Launch, &|e| {
            e.launch = Some(event::Launch {
                task: with_executor.clone(),
            })
        }),
        ev(Type::LaunchGroup, &|e| {
            e.launch_group = Some(event::LaunchGroup {
                task_group: TaskGroupInfo {
                    tasks: vec![task_info("a"), task_info("b")],
                },
            })
        }),
        ev(Type::Kill, &|e| {
            e.kill = Some(event::Kill {
                task_id: tid("web.a1b2c3"),
                kill_policy: Some(KillPolicy {
                    grace_period: Some(secs(3)),
                }),
            })
        }),
        ev(Type::Acknowledged, &|e| {
            e.acknowledged = Some(event::Acknowledged {
                task_id: tid("web.a1b2c3"),
                uuid: UUID.to_vec(),
            })
        }),
        ev(Type::Message, &|e| {
            e.message = Some(event::Message {
                data: b"sample data".to_vec(),
            })
        }),
        ev(Type::Error, &|e| {
            e.error = Some(event::Error {
                message: "Unrecoverable error".into(),
            })
        }),
        ev(Type::Shutdown, &|_| {}),
    ];
    check_table(&table, "mesos.v1.executor.Event.Type");
}

fn agent_entry() -> master::response::get_agents::Agent {
    master::response::get_agents::Agent {
        agent_info: agent_info(),
        active: true,
        deactivated: Some(false),
        version: "1.11.0".into(),
        pid: Some("slave(1)@10.0.0.3:5051".into()),
        registered_time: Some(TimeInfo {
            nanoseconds: 1_735_689_600_000_000_000,
        }),
        reregistered_time: None,
        total_resources: agent_info().resources,
        allocated_resources: task_resources(),
        offered_resources: offered_resources(),
        capabilities: vec![agent_info::Capability {
            r#type: Some(agent_info::capability::Type::MultiRole as i32),
        }],
        resource_providers: vec![],
        drain_info: Some(DrainInfo {
            state: DrainState::Draining as i32,
            config: DrainConfig {
                max_grace_period: Some(secs(60)),
                mark_gone: Some(true),
            },
        }),
        estimated_drain_start_time: Some(TimeInfo {
            nanoseconds: 1_735_690_000_000_000_000,
        }),
    }
}

fn framework_entry() -> master::response::get_frameworks::Framework {
    master::response::get_frameworks::Framework {
        framework_info: framework_info(),
        active: true,
        connected: true,
        recovered: false,
        registered_time: Some(TimeInfo {
            nanoseconds: 1_735_689_000_000_000_000,
        }),
        reregistered_time: None,
        unregistered_time: None,
        offers: vec![offer(9)],
        inverse_offers: vec![inverse_offer()],
        allocated_resources: task_resources(),
        offered_resources: offered_resources(),
        offer_constraints: Some(offer_constraints()),
    }
}

fn get_state() -> master::response::GetState {
    use master::response::*;
    GetState {
        get_tasks: Some(GetTasks {
            tasks: vec![task(TaskState::TaskRunning)],
            completed_tasks: vec![task(TaskState::TaskKilled)],
            unreachable_tasks: vec![task(TaskState::TaskUnreachable)],
            ..Default::default()
        }),
        get_executors: Some(GetExecutors {
            executors: vec![get_executors::Executor {
                executor_info: executor_info(),
                agent_id: aid(),
            }],
            orphan_executors: vec![],
        }),
        get_frameworks: Some(GetFrameworks {
            frameworks: vec![framework_entry()],
            completed_frameworks: vec![],
            recovered_frameworks: vec![],
        }),
        get_agents: Some(GetAgents {
            agents: vec![agent_entry()],
            recovered_agents: vec![agent_info()],
        }),
    }
}

#[test]
fn master_calls_round_trip() {
    use master::call::{self, Type};
    let c = |t: Type, f: &dyn Fn(&mut master::Call)| {
        let mut c = master::Call {
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let mut volume = scalar("disk", 1024.0);
    volume.disk = offered_resources()[2].disk.clone();
    volume.reservations = offered_resources()[1].reservations.clone();
    let schedule = v1::maintenance::Schedule {
        windows: vec![v1::maintenance::Window {
            machine_ids: vec![MachineId {
                hostname: Some("agent-3.example.com".into()),
                ip: Some("10.0.0.3".into()),
            }],
            unavailability: unavailability(),
        }],
    };
    let machines = vec![MachineId {
        hostname: Some("agent-3.example.com".into()),
        ip: None,
    }];
    let table = vec![
        c(Type::GetHealth, &|_| {}),
        c(Type::GetFlags, &|_| {}),
        c(Type::GetVersion, &|_| {}),
        c(Type::GetMetrics, &|c| {
            c.get_metrics = Some(call::GetMetrics {
                timeout: Some(secs(5)),
            })
        }),
        c(Type::GetLoggingLevel, &|_| {}),
        c(Type::SetLoggingLevel, &|c| {
            c.set_logging_level = Some(call::SetLoggingLevel {
                level: 2,
                duration: secs(60),
            })
        }),
        c(Type::ListFiles, &|c| {
            c.list_files = Some(call::ListFiles {
                path: "/master/log".into(),
            })
        }),
        c(Type::ReadFile, &|c| {
            c.read_file = Some(call::ReadFile {
                path: "/master/log".into(),
                offset: 5_000_000_000,
                length: Some(4096),
            })
        }),
        c(Type::GetState, &|_| {}),
        c(Type::GetAgents, &|_| {}),
        c(Type::GetFrameworks, &|_| {}),
        c(Type::GetExecutors, &|_| {}),
        c(Type::GetOperations, &|_| {}),
        c(Type::GetTasks, &|_| {}),
        c(Type::GetRoles, &|_| {}),
        c(Type::GetWeights, &|_| {}),
        c(Type::UpdateWeights, &|c| {
            c.update_weights = Some(call::UpdateWeights {
                weight_infos: vec![WeightInfo {
                    weight: 2.5,
                    role: Some("analytics".into()),
                }],
            })
        }),
        c(Type::GetMaster, &|_| {}),
        c(Type::Subscribe, &|_| {}),
        c(Type::ReserveResources, &|c| {
            c.reserve_resources = Some(call::ReserveResources {
                agent_id: aid(),
                source: task_resources(),
                resources: offered_resources(),
            })
        }),
        c(Type::UnreserveResources, &|c| {
            c.unreserve_resources = Some(call::UnreserveResources {
                agent_id: aid(),
                resources: offered_resources(),
            })
        }),
        c(Type::CreateVolumes, &|c| {
            c.create_volumes = Some(call::CreateVolumes {
                agent_id: aid(),
                volumes: vec![volume.clone()],
            })
        }),
        c(Type::DestroyVolumes, &|c| {
            c.destroy_volumes = Some(call::DestroyVolumes {
                agent_id: aid(),
                volumes: vec![volume.clone()],
            })
        }),
        c(Type::GrowVolume, &|c| {
            c.grow_volume = Some(call::GrowVolume {
                agent_id: Some(aid()),
                volume: volume.clone(),
                addition: scalar("disk", 1.0),
            })
        }),
        c(Type::ShrinkVolume, &|c| {
            c.shrink_volume = Some(call::ShrinkVolume {
                agent_id: Some(aid()),
                volume: volume.clone(),
                subtract: value::Scalar { value: 0.5 },
            })
        }),
        c(Type::GetMaintenanceStatus, &|_| {}),
        c(Type::GetMaintenanceSchedule, &|_| {}),
        c(Type::UpdateMaintenanceSchedule, &|c| {
            c.update_maintenance_schedule = Some(call::UpdateMaintenanceSchedule {
                schedule: schedule.clone(),
            })
        }),
        c(Type::StartMaintenance, &|c| {
            c.start_maintenance = Some(call::StartMaintenance {
                machines: machines.clone(),
            })
        }),
        c(Type::StopMaintenance, &|c| {
            c.stop_maintenance = Some(call::StopMaintenance {
                machines: machines.clone(),
            })
        }),
        c(Type::DrainAgent, &|c| {
            c.drain_agent = Some(call::DrainAgent {
                agent_id: aid(),
                max_grace_period: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 250_000_000,
                }),
                mark_gone: Some(true),
            })
        }),
        c(Type::DeactivateAgent, &|c| {
            c.deactivate_agent = Some(call::DeactivateAgent { agent_id: aid() })
        }),
        c(Type::ReactivateAgent, &|c| {
            c.reactivate_agent = Some(call::ReactivateAgent { agent_id: aid() })
        }),
        c(Type::GetQuota, &|_| {}),
        c(Type::UpdateQuota, &|c| {
            c.update_quota = Some(call::UpdateQuota {
                force: Some(true),
                quota_configs: vec![v1::quota::QuotaConfig {
                    role: "analytics".into(),
                    guarantees: HashMap::from([("cpus".to_string(), value::Scalar { value: 4.0 })]),
                    limits: HashMap::from([
                        ("cpus".to_string(), value::Scalar { value: 8.0 }),
                        ("mem".to_string(), value::Scalar { value: 65536.0 }),
                    ]),
                }],
            })
        }),
        c(Type::SetQuota, &|c| {
            c.set_quota = Some(call::SetQuota {
                quota_request: v1::quota::QuotaRequest {
                    force: Some(false),
                    role: Some("analytics".into()),
                    guarantee: task_resources(),
                },
            })
        }),
        c(Type::RemoveQuota, &|c| {
            c.remove_quota = Some(call::RemoveQuota {
                role: "analytics".into(),
            })
        }),
        c(Type::Teardown, &|c| {
            c.teardown = Some(call::Teardown {
                framework_id: fid(),
            })
        }),
        c(Type::MarkAgentGone, &|c| {
            c.mark_agent_gone = Some(call::MarkAgentGone { agent_id: aid() })
        }),
    ];
    check_table(&table, "mesos.v1.master.Call.Type");
}

#[test]
fn master_events_round_trip() {
    use master::event::{self, Type};
    let ev = |t: Type, f: &dyn Fn(&mut master::Event)| {
        let mut e = master::Event {
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut e);
        e
    };
    let table = vec![
        ev(Type::Subscribed, &|e| {
            e.subscribed = Some(event::Subscribed {
                get_state: Some(get_state()),
                heartbeat_interval_seconds: Some(15.0),
            })
        }),
        ev(Type::TaskAdded, &|e| {
            e.task_added = Some(event::TaskAdded {
                task: task(TaskState::TaskStaging),
            })
        }),
        ev(Type::TaskUpdated, &|e| {
            e.task_updated = Some(event::TaskUpdated {
                framework_id: fid(),
                status: task_status(TaskState::TaskRunning),
                state: TaskState::TaskRunning as i32,
            })
        }),
        ev(Type::AgentAdded, &|e| {
            e.agent_added = Some(event::AgentAdded {
                agent: agent_entry(),
            })
        }),
        ev(Type::AgentRemoved, &|e| {
            e.agent_removed = Some(event::AgentRemoved { agent_id: aid() })
        }),
        ev(Type::FrameworkAdded, &|e| {
            e.framework_added = Some(event::FrameworkAdded {
                framework: framework_entry(),
            })
        }),
        ev(Type::FrameworkUpdated, &|e| {
            e.framework_updated = Some(event::FrameworkUpdated {
                framework: framework_entry(),
            })
        }),
        ev(Type::FrameworkRemoved, &|e| {
            e.framework_removed = Some(event::FrameworkRemoved {
                framework_info: framework_info(),
            })
        }),
        ev(Type::Heartbeat, &|_| {}),
    ];
    check_table(&table, "mesos.v1.master.Event.Type");
}

#[test]
fn master_responses_round_trip() {
    use master::response::{self as r, Type};
    let resp = |t: Type, f: &dyn Fn(&mut master::Response)| {
        let mut m = master::Response {
            r#type: Some(t as i32),
            ..Default::default()
        };
        f(&mut m);
        m
    };
    let st = get_state();
    let table = vec![
        resp(Type::GetHealth, &|m| {
            m.get_health = Some(r::GetHealth { healthy: true })
        }),
        resp(Type::GetFlags, &|m| {
            m.get_flags = Some(r::GetFlags {
                flags: vec![Flag {
                    name: "work_dir".into(),
                    value: Some("/var/lib/corral".into()),
                }],
            })
        }),
        resp(Type::GetVersion, &|m| {
            m.get_version = Some(r::GetVersion {
                version_info: VersionInfo {
                    version: "1.11.0".into(),
                    build_time: Some(1_700_000_000.0),
                    git_sha: Some("deadbeef".into()),
                    ..Default::default()
                },
            })
        }),
        resp(Type::GetMetrics, &|m| {
            m.get_metrics = Some(r::GetMetrics {
                metrics: vec![Metric {
                    name: "master/uptime_secs".into(),
                    value: Some(12.75),
                }],
            })
        }),
        resp(Type::GetLoggingLevel, &|m| {
            m.get_logging_level = Some(r::GetLoggingLevel { level: 1 })
        }),
        resp(Type::ListFiles, &|m| {
            m.list_files = Some(r::ListFiles {
                file_infos: vec![FileInfo {
                    path: "/master/log".into(),
                    nlink: Some(1),
                    size: Some(9_000_000_000),
                    mtime: Some(TimeInfo {
                        nanoseconds: 1_735_689_600_000_000_000,
                    }),
                    mode: Some(0o100644),
                    uid: Some("root".into()),
                    gid: Some("root".into()),
                }],
            })
        }),
        resp(Type::ReadFile, &|m| {
            m.read_file = Some(r::ReadFile {
                size: 12,
                data: b"log line\n\xff\x00\x01".to_vec(),
            })
        }),
        resp(Type::GetState, &|m| m.get_state = Some(st.clone())),
        resp(Type::GetAgents, &|m| m.get_agents = st.get_agents.clone()),
        resp(Type::GetFrameworks, &|m| {
            m.get_frameworks = st.get_frameworks.clone()
        }),
        resp(Type::GetExecutors, &|m| {
            m.get_executors = st.get_executors.clone()
        }),
        resp(Type::GetOperations, &|m| {
            m.get_operations = Some(r::GetOperations {
                operations: vec![Operation {
                    framework_id: Some(fid()),
                    agent_id: Some(aid()),
                    info: offer_operations()[2].clone(),
                    latest_status: operation_status(),
                    statuses: vec![operation_status()],
                    uuid: v1::Uuid {
                        value: UUID.to_vec(),
                    },
                }],
            })
        }),
        resp(Type::GetTasks, &|m| m.get_tasks = st.get_tasks.clone()),
        resp(Type::GetRoles, &|m| {
            m.get_roles = Some(r::GetRoles {
                roles: vec![Role {
                    name: "analytics".into(),
                    weight: 2.5,
                    frameworks: vec![fid()],
                    resources: task_resources(),
                }],
            })
        }),
        resp(Type::GetWeights, &|m| {
            m.get_weights = Some(r::GetWeights {
                weight_infos: vec![WeightInfo {
                    weight: 1.0,
                    role: Some("*".into()),
                }],
            })
        }),
        resp(Type::GetMaster, &|m| {
            m.get_master = Some(r::GetMaster {
                master_info: Some(master_info()),
                start_time: Some(1_735_689_600.25),
                elected_time: Some(1_735_689_601.5),
            })
        }),
        resp(Type::GetMaintenanceStatus, &|m| {
            m.get_maintenance_status = Some(r::GetMaintenanceStatus {
                status: v1::maintenance::ClusterStatus {
                    draining_machines: vec![],
                    down_machines: vec![MachineId {
                        hostname: Some("agent-9".into()),
                        ip: None,
                    }],
                },
            })
        }),
        resp(Type::GetMaintenanceSchedule, &|m| {
            m.get_maintenance_schedule = Some(r::GetMaintenanceSchedule {
                schedule: Default::default(),
            })
        }),
        resp(Type::GetQuota, &|m| {
            m.get_quota = Some(r::GetQuota {
                status: v1::quota::QuotaStatus {
                    infos: vec![],
                    configs: vec![v1::quota::QuotaConfig {
                        role: "analytics".into(),
                        guarantees: HashMap::new(),
                        limits: HashMap::from([("cpus".to_string(), value::Scalar { value: 8.0 })]),
                    }],
                },
            })
        }),
    ];
    check_table(&table, "mesos.v1.master.Response.Type");
}
