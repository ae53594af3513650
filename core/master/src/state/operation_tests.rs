//! Offer operations (RESERVE, UNRESERVE, CREATE, DESTROY, GROW_VOLUME,
//! SHRINK_VOLUME) from frameworks and the operator, their feedback, and
//! what agents report when they (re-)register: inputs in, effects out.

use super::*;
use corral_api::resources::parse;
use v1::resource::{disk_info, reservation_info, DiskInfo, ReservationInfo};
use v1::OperationState;

use super::test_support::{at, master};

struct Fw<'a> {
    name: &'a str,
    role: &'a str,
    principal: Option<&'a str>,
    refinement: bool,
}

impl<'a> Fw<'a> {
    fn new(name: &'a str, role: &'a str) -> Self {
        Self {
            name,
            role,
            principal: Some("ops"),
            refinement: true,
        }
    }
}

fn subscribe(m: &mut Master, fw: Fw<'_>) -> String {
    let mut caps = Vec::new();
    if fw.refinement {
        caps.push(v1::framework_info::Capability {
            r#type: Some(FwCap::ReservationRefinement as i32),
        });
    }
    let call = scheduler::Call {
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "root".into(),
                name: fw.name.into(),
                role: Some(fw.role.into()),
                principal: fw.principal.map(str::to_string),
                failover_timeout: Some(10.0),
                capabilities: caps,
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = m
        .subscribe(&call, &format!("stream-{}", fw.name), at(0))
        .unwrap();
    m.take_effects();
    id
}

fn register(m: &mut Master, reg: internal::RegisterAgent) -> String {
    let id = m.register_agent(reg, at(0)).unwrap();
    m.take_effects();
    id
}

fn registration(resources: &str) -> internal::RegisterAgent {
    internal::RegisterAgent {
        agent_info: v1::AgentInfo {
            hostname: "host1".into(),
            port: Some(5051),
            resources: parse(resources).unwrap(),
            ..Default::default()
        },
        version: "1.11.0".into(),
        endpoint: "127.0.0.1:5051".into(),
        ..Default::default()
    }
}

fn add_agent(m: &mut Master, resources: &str) -> String {
    register(m, registration(resources))
}

fn offers_of(effects: &[Effect], fid: &str) -> Vec<v1::Offer> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Framework {
                framework_id,
                event,
            } if framework_id == fid => event.offers.clone(),
            _ => None,
        })
        .flat_map(|o| o.offers)
        .collect()
}

fn offer_for(m: &mut Master, fid: &str, secs: u64) -> v1::Offer {
    m.allocate(at(secs), true);
    let effects = m.take_effects();
    offers_of(&effects, fid)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no offer for {fid}: {effects:?}"))
}

fn op_updates(effects: &[Effect], fid: &str) -> Vec<v1::OperationStatus> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Framework {
                framework_id,
                event,
            } if framework_id == fid => event.update_operation_status.clone().map(|u| u.status),
            _ => None,
        })
        .collect()
}

fn applied(effects: &[Effect]) -> Vec<internal::ApplyOperation> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Agent {
                message: ToAgent::ApplyOperation(a),
                ..
            } => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn dynamic(role: &str, principal: Option<&str>) -> ReservationInfo {
    ReservationInfo {
        r#type: Some(reservation_info::Type::Dynamic as i32),
        role: Some(role.into()),
        principal: principal.map(str::to_string),
        labels: None,
    }
}

/// `name:value` reserved to `roles` (a stack when more than one).
fn reserved(name: &str, value: f64, roles: &[&str]) -> v1::Resource {
    let mut r = resources::scalar(name, value);
    r.reservations = roles.iter().map(|x| dynamic(x, Some("ops"))).collect();
    r
}

fn volume(value: f64, role: &str, id: &str) -> v1::Resource {
    let mut r = reserved("disk", value, &[role]);
    r.disk = Some(Box::new(DiskInfo {
        persistence: Some(disk_info::Persistence {
            id: id.into(),
            principal: Some("ops".into()),
        }),
        volume: Some(v1::Volume {
            mode: v1::volume::Mode::Rw as i32,
            container_path: "data".into(),
            ..Default::default()
        }),
        source: None,
    }));
    r
}

fn operation(ty: OpType, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        r#type: Some(ty as i32),
        id: id.map(|v| v1::OperationId { value: v.into() }),
        ..Default::default()
    }
}

fn reserve(rs: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    let mut o = operation(OpType::Reserve, id);
    o.reserve = Some(v1::offer::operation::Reserve {
        source: vec![],
        resources: rs,
    });
    o
}

fn unreserve(rs: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    let mut o = operation(OpType::Unreserve, id);
    o.unreserve = Some(v1::offer::operation::Unreserve { resources: rs });
    o
}

fn create(vs: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    let mut o = operation(OpType::Create, id);
    o.create = Some(v1::offer::operation::Create { volumes: vs });
    o
}

fn destroy(vs: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    let mut o = operation(OpType::Destroy, id);
    o.destroy = Some(v1::offer::operation::Destroy { volumes: vs });
    o
}

fn launch(task_id: &str, rs: Vec<v1::Resource>) -> v1::offer::Operation {
    let mut o = operation(OpType::Launch, None);
    o.launch = Some(v1::offer::operation::Launch {
        task_infos: vec![v1::TaskInfo {
            name: task_id.into(),
            task_id: v1::TaskId {
                value: task_id.into(),
            },
            resources: rs,
            command: Some(v1::CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
    });
    o
}

fn accept(
    m: &mut Master,
    fid: &str,
    offer: &v1::Offer,
    operations: Vec<v1::offer::Operation>,
) -> Vec<Effect> {
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.into() }),
        r#type: Some(scheduler::call::Type::Accept as i32),
        accept: Some(scheduler::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations,
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..Default::default()
    };
    m.scheduler_call(fid, call, at(2)).unwrap();
    m.take_effects()
}

fn finished(
    m: &mut Master,
    aid: &str,
    apply: &internal::ApplyOperation,
    state: OperationState,
    total: Vec<v1::Resource>,
) -> (Vec<Effect>, Vec<u8>) {
    let status_uuid = corral_api::ids::new_uuid_bytes();
    m.agent_message(
        aid,
        internal::agent_message::Message::OperationUpdate(internal::OperationStatusUpdate {
            framework_id: apply.framework_id.clone(),
            status: v1::OperationStatus {
                operation_id: apply.info.id.clone(),
                state: state as i32,
                uuid: Some(v1::Uuid {
                    value: status_uuid.clone(),
                }),
                ..Default::default()
            },
            operation_uuid: apply.operation_uuid.clone(),
            total_resources: total,
        }),
        at(3),
    );
    (m.take_effects(), status_uuid)
}

fn bag(rs: &[v1::Resource]) -> Resources {
    Resources::from_vec(rs)
}

fn one(r: &v1::Resource) -> Resources {
    Resources::from_vec(std::slice::from_ref(r))
}

#[test]
fn reserve_create_and_launch_in_one_accept() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let r_cpus = reserved("cpus", 1.0, &["db"]);
    let r_mem = reserved("mem", 128.0, &["db"]);
    let r_disk = reserved("disk", 256.0, &["db"]);
    let vol = volume(128.0, "db", "pg");
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![
            reserve(
                vec![r_cpus.clone(), r_mem.clone(), r_disk.clone()],
                Some("r1"),
            ),
            create(vec![vol.clone()], Some("c1")),
            launch("t1", vec![r_cpus.clone(), r_mem.clone(), vol.clone()]),
        ],
    );
    // The agent gets both operations, then the task, in that order.
    let kinds: Vec<&str> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Agent { message, .. } => Some(match message {
                ToAgent::ApplyOperation(_) => "apply",
                ToAgent::RunTask(_) => "run",
                _ => "other",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["apply", "apply", "run"]);
    let apply = applied(&effects);
    assert_eq!(apply[0].framework_id.as_ref().unwrap().value, fid);
    assert_eq!(apply[0].operation_uuid.len(), 16);
    assert_ne!(apply[0].operation_uuid, apply[1].operation_uuid);
    // Speculatively applied: the agent's total carries the reservations
    // and the volume, in the master and in the allocator.
    let total = &m.agents[&aid].total;
    assert!(total.contains_one(&vol));
    assert!(total.contains_one(&reserved("disk", 128.0, &["db"])));
    assert!(total.contains_one(&r_cpus));
    assert_eq!(total.scalar("disk"), 1024.0);
    assert_eq!(&m.allocator.total(&aid), total);
    // GET_AGENTS shows it.
    let view = m.agent_view(&aid).unwrap();
    assert!(bag(&view.total_resources).contains_one(&vol));
    // The task uses the volume.
    assert!(m.agents[&aid].used_total().unallocated().contains_one(&vol));
    // No operation errors, two pending.
    assert!(op_updates(&effects, &fid).is_empty());
    assert_eq!(m.pending_operations(), 2);
}

#[test]
fn reserved_resources_are_offered_only_to_their_role_and_unreserve_returns_them() {
    let mut m = master();
    let web = subscribe(&mut m, Fw::new("web", "web"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    let offer = offer_for(&mut m, &web, 1);
    let r = vec![
        reserved("cpus", 2.0, &["web"]),
        reserved("mem", 512.0, &["web"]),
    ];
    accept(&mut m, &web, &offer, vec![reserve(r.clone(), None)]);
    // Another role only ever sees the unreserved half.
    let other = subscribe(&mut m, Fw::new("other", "other"));
    m.allocate(at(3), true);
    let effects = m.take_effects();
    let to_other = offers_of(&effects, &other);
    let to_web = offers_of(&effects, &web);
    let mut seen = Resources::new();
    for o in &to_other {
        for res in &o.resources {
            assert_eq!(resources::reservation_role(res), "*", "{res:?}");
            seen.add(res);
        }
    }
    for o in &to_web {
        seen.add_all(&Resources::from_vec(&o.resources).unallocated());
    }
    // web holds its reserved resources in an offer of its own.
    let web_offer = to_web
        .first()
        .expect("web is offered its reservation")
        .clone();
    let web_res = Resources::from_vec(&web_offer.resources).unallocated();
    assert!(web_res.contains(&bag(&r)));
    // UNRESERVE: everyone may get them again.
    let effects = accept(&mut m, &web, &web_offer, vec![unreserve(r.clone(), None)]);
    assert_eq!(applied(&effects).len(), 1);
    assert!(m.agents[&aid]
        .total
        .as_slice()
        .iter()
        .all(|x| resources::reservation_role(x) == "*"));
    m.allocate(at(4), true);
    let effects = m.take_effects();
    let total: f64 = offers_of(&effects, &other)
        .iter()
        .chain(offers_of(&effects, &web).iter())
        .map(|o| Resources::from_vec(&o.resources).scalar("cpus"))
        .sum();
    // Whatever other still held plus what came back: all 4 cpus are
    // unreserved and offered to someone.
    let held_by_other: f64 = m
        .offers
        .values()
        .filter(|o| o.offer.framework_id.value == other)
        .map(|o| o.resources.scalar("cpus"))
        .sum();
    assert!(total > 0.0 && held_by_other >= 2.0, "{effects:?}");
}

#[test]
fn invalid_operations_are_refused_with_a_message_and_change_nothing() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let before = m.agents[&aid].total.clone();
    let mut wrong_principal = reserved("cpus", 1.0, &["db"]);
    wrong_principal.reservations[0].principal = Some("mallory".into());
    let mut no_principal = reserved("cpus", 1.0, &["db"]);
    no_principal.reservations[0].principal = None;
    let mut unreserved_volume = volume(64.0, "db", "v");
    unreserved_volume.reservations.clear();
    let cases: Vec<(v1::offer::Operation, &str)> = vec![
        (
            reserve(vec![reserved("cpus", 8.0, &["db"])], Some("more")),
            "do not contain",
        ),
        (
            unreserve(vec![resources::scalar("cpus", 1.0)], Some("unres")),
            "not reserved",
        ),
        (
            unreserve(vec![reserved("cpus", 1.0, &["db"])], Some("absent")),
            "do not contain",
        ),
        (
            create(vec![unreserved_volume], Some("vol")),
            "reserved disk",
        ),
        (
            reserve(vec![wrong_principal], Some("princ")),
            "does not match",
        ),
        (reserve(vec![no_principal], Some("noprinc")), "no principal"),
        (
            reserve(vec![reserved("cpus", 1.0, &["other"])], Some("role")),
            "allocated to role 'db'",
        ),
        (
            destroy(vec![volume(64.0, "db", "ghost")], Some("ghost")),
            "not found",
        ),
    ];
    for (op, expected) in cases {
        let offer = offer_for(&mut m, &fid, 1);
        let id = op.id.clone().unwrap().value;
        let effects = accept(&mut m, &fid, &offer, vec![op]);
        assert!(applied(&effects).is_empty(), "{id}: {effects:?}");
        let updates = op_updates(&effects, &fid);
        assert_eq!(updates.len(), 1, "{id}: {effects:?}");
        assert_eq!(
            updates[0].state,
            OperationState::OperationError as i32,
            "{id}"
        );
        assert_eq!(updates[0].operation_id.as_ref().unwrap().value, id);
        let message = updates[0].message.clone().unwrap_or_default();
        assert!(message.contains(expected), "{id}: {message}");
        assert!(updates[0].uuid.is_none());
        assert_eq!(m.agents[&aid].total, before, "{id}");
        assert_eq!(m.allocator.total(&aid), before, "{id}");
        assert!(m.operations.is_empty());
    }
    // Without an id: only counted.
    let errors = m.counters.get("master/invalid_operations");
    let offer = offer_for(&mut m, &fid, 1);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![reserved("cpus", 8.0, &["db"])], None)],
    );
    assert!(op_updates(&effects, &fid).is_empty());
    assert_eq!(m.counters.get("master/invalid_operations"), errors + 1);
    assert_eq!(m.agents[&aid].total, before);
}

#[test]
fn a_duplicate_persistence_id_and_a_volume_in_use_are_refused() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let vol = volume(128.0, "db", "pg");
    accept(
        &mut m,
        &fid,
        &offer,
        vec![
            reserve(vec![reserved("disk", 512.0, &["db"])], None),
            create(vec![vol.clone()], None),
            launch("t1", vec![resources::scalar("cpus", 1.0), vol.clone()]),
        ],
    );
    let offer = offer_for(&mut m, &fid, 3);
    // The same id again on the agent.
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![create(vec![volume(64.0, "db", "pg")], Some("dup"))],
    );
    let u = op_updates(&effects, &fid);
    assert!(
        u[0].message.as_deref().unwrap().contains("already in use"),
        "{u:?}"
    );
    // DESTROY of the volume the task uses.
    let offer = offer_for(&mut m, &fid, 4);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![destroy(vec![vol.clone()], Some("busy"))],
    );
    let u = op_updates(&effects, &fid);
    assert!(u[0].message.as_deref().unwrap().contains("in use"), "{u:?}");
    // And through the operator API: 409 with the same reason.
    let err = m
        .operator_operation(&aid, destroy(vec![vol.clone()], None))
        .unwrap_err();
    assert!(
        matches!(&err, OperatorError::Conflict(m) if m.contains("in use")),
        "{err:?}"
    );
    assert!(m.agents[&aid].total.contains_one(&vol));
}

#[test]
fn operation_feedback_update_acknowledge_and_reconcile() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let r = reserved("cpus", 1.0, &["db"]);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![r.clone()], Some("r1"))],
    );
    let apply = applied(&effects).remove(0);
    // Pending: reconciliation says so.
    let reconcile = |m: &mut Master, ids: &[(&str, Option<&str>)]| {
        let call = scheduler::Call {
            framework_id: Some(v1::FrameworkId { value: fid.clone() }),
            r#type: Some(scheduler::call::Type::ReconcileOperations as i32),
            reconcile_operations: Some(scheduler::call::ReconcileOperations {
                operations: ids
                    .iter()
                    .map(
                        |(id, agent)| scheduler::call::reconcile_operations::Operation {
                            operation_id: v1::OperationId {
                                value: id.to_string(),
                            },
                            agent_id: agent.map(|a| v1::AgentId {
                                value: a.to_string(),
                            }),
                            resource_provider_id: None,
                        },
                    )
                    .collect(),
            }),
            ..Default::default()
        };
        m.scheduler_call(&fid, call, at(5)).unwrap();
        op_updates(&m.take_effects(), &fid)
    };
    let u = reconcile(&mut m, &[]);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, OperationState::OperationPending as i32);
    // The agent finishes it; the framework hears with the status uuid.
    let total = m.agents[&aid].total.to_vec();
    let (effects, status_uuid) = finished(
        &mut m,
        &aid,
        &apply,
        OperationState::OperationFinished,
        total,
    );
    let u = op_updates(&effects, &fid);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, OperationState::OperationFinished as i32);
    assert_eq!(u[0].operation_id.as_ref().unwrap().value, "r1");
    assert_eq!(u[0].uuid.as_ref().unwrap().value, status_uuid);
    assert_eq!(u[0].agent_id.as_ref().unwrap().value, aid);
    assert_eq!(m.counters.get("master/operations/finished"), 1);
    assert_eq!(m.counters.get("master/operations/reserve/finished"), 1);
    // Reconciliation: the latest state, the unknown one UNKNOWN.
    let u = reconcile(&mut m, &[("r1", None), ("nope", Some(&aid))]);
    assert_eq!(u[0].state, OperationState::OperationFinished as i32);
    assert!(u[0].uuid.is_none());
    assert_eq!(u[1].state, OperationState::OperationUnknown as i32);
    assert_eq!(u[1].operation_id.as_ref().unwrap().value, "nope");
    // A bad acknowledgement is a 400.
    let ack = |uuid: Vec<u8>| scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::AcknowledgeOperationStatus as i32),
        acknowledge_operation_status: Some(scheduler::call::AcknowledgeOperationStatus {
            agent_id: Some(v1::AgentId { value: aid.clone() }),
            resource_provider_id: None,
            uuid,
            operation_id: v1::OperationId { value: "r1".into() },
        }),
        ..Default::default()
    };
    assert!(matches!(
        m.scheduler_call(&fid, ack(vec![1, 2, 3]), at(6)),
        Err(CallError::BadRequest(_))
    ));
    // ACKNOWLEDGE goes to the agent and ends the tracking.
    m.scheduler_call(&fid, ack(status_uuid.clone()), at(6))
        .unwrap();
    let effects = m.take_effects();
    let acks: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Agent {
                agent_id,
                message: ToAgent::AcknowledgeOperation(a),
            } => Some((agent_id.clone(), a.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, aid);
    assert_eq!(acks[0].1.operation_uuid, apply.operation_uuid);
    assert_eq!(acks[0].1.status_uuid, status_uuid);
    assert!(m.operations.is_empty());
    // The agent's retry of that update, crossing the acknowledgement, does
    // not bring the operation back: it is acknowledged again, and the
    // framework hears nothing more.
    m.agent_message(
        &aid,
        internal::agent_message::Message::OperationUpdate(internal::OperationStatusUpdate {
            framework_id: apply.framework_id.clone(),
            status: v1::OperationStatus {
                operation_id: apply.info.id.clone(),
                state: OperationState::OperationFinished as i32,
                uuid: Some(v1::Uuid {
                    value: status_uuid.clone(),
                }),
                ..Default::default()
            },
            operation_uuid: apply.operation_uuid.clone(),
            total_resources: m.agents[&aid].total.to_vec(),
        }),
        at(7),
    );
    let effects = m.take_effects();
    assert!(m.operations.is_empty(), "not tracked again");
    assert!(
        op_updates(&effects, &fid).is_empty(),
        "no update to the framework"
    );
    assert!(effects.iter().any(|e| matches!(e,
        Effect::Agent { message: ToAgent::AcknowledgeOperation(a), .. }
            if a.status_uuid == status_uuid)));
    let u = reconcile(&mut m, &[("r1", Some(&aid))]);
    assert_eq!(u[0].state, OperationState::OperationUnknown as i32);
    // The reservation stays.
    assert!(m.agents[&aid].total.contains_one(&r));
}

#[test]
fn a_failed_operation_resyncs_the_agents_total() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let before = m.agents[&aid].total.clone();
    let offer = offer_for(&mut m, &fid, 1);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![
            reserve(vec![reserved("disk", 256.0, &["db"])], Some("r1")),
            create(vec![volume(256.0, "db", "pg")], Some("c1")),
        ],
    );
    let apply = applied(&effects);
    assert_eq!(apply.len(), 2);
    // The agent reserved the disk, then failed to create the volume.
    let mut after_reserve = before.clone();
    after_reserve.subtract(&resources::scalar("disk", 256.0));
    after_reserve.add(&reserved("disk", 256.0, &["db"]));
    let (effects, _) = finished(
        &mut m,
        &aid,
        &apply[0],
        OperationState::OperationFinished,
        after_reserve.to_vec(),
    );
    assert_eq!(
        op_updates(&effects, &fid)[0].state,
        OperationState::OperationFinished as i32
    );
    // An offer is outstanding; it is rescinded by the resync.
    let offer = offer_for(&mut m, &fid, 3);
    assert!(!offer.resources.is_empty());
    let (effects, _) = finished(
        &mut m,
        &aid,
        &apply[1],
        OperationState::OperationFailed,
        after_reserve.to_vec(),
    );
    let u = op_updates(&effects, &fid);
    assert_eq!(u[0].state, OperationState::OperationFailed as i32);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Framework { event, .. } if event.rescind.is_some())));
    assert_eq!(m.agents[&aid].total, after_reserve);
    assert_eq!(m.allocator.total(&aid), after_reserve);
    assert_eq!(m.counters.get("master/operations/failed"), 1);
    // The reserved disk is offered again, without a volume.
    let offer = offer_for(&mut m, &fid, 4);
    let offered = Resources::from_vec(&offer.resources).unallocated();
    assert!(offered.contains_one(&reserved("disk", 256.0, &["db"])));
    assert!(!offered
        .as_slice()
        .iter()
        .any(corral_api::operations::is_persistent_volume));
}

#[test]
fn a_failure_keeps_later_operations_in_flight_applied() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let before = m.agents[&aid].total.clone();
    let offer = offer_for(&mut m, &fid, 1);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![
            reserve(vec![reserved("cpus", 1.0, &["db"])], Some("a")),
            reserve(vec![reserved("mem", 64.0, &["db"])], Some("b")),
        ],
    );
    let apply = applied(&effects);
    // The first fails on the agent (total unchanged); the second is still
    // in flight and stays applied in the master's view.
    finished(
        &mut m,
        &aid,
        &apply[0],
        OperationState::OperationFailed,
        before.to_vec(),
    );
    let total = &m.agents[&aid].total;
    assert!(!total.contains_one(&reserved("cpus", 1.0, &["db"])));
    assert!(total.contains_one(&reserved("mem", 64.0, &["db"])));
    assert_eq!(total.scalar("cpus"), 4.0);
}

#[test]
fn operator_operations_on_unallocated_resources() {
    let mut m = master();
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    // Unknown agent: 400.
    assert!(matches!(
        m.operator_operation("nope", reserve(vec![reserved("cpus", 1.0, &["db"])], None)),
        Err(OperatorError::BadRequest(_))
    ));
    // More than the agent has: 409, nothing changes.
    let before = m.agents[&aid].total.clone();
    let err = m
        .operator_operation(&aid, reserve(vec![reserved("cpus", 5.0, &["db"])], None))
        .unwrap_err();
    assert!(
        matches!(&err, OperatorError::Conflict(msg) if msg.contains("do not contain")),
        "{err:?}"
    );
    // Unreserving what is not reserved: 400 (the request is wrong in itself).
    let err = m
        .operator_operation(&aid, unreserve(vec![resources::scalar("cpus", 1.0)], None))
        .unwrap_err();
    assert!(
        matches!(&err, OperatorError::BadRequest(msg) if msg.contains("not reserved")),
        "{err:?}"
    );
    // Unreserving a reservation that is not there: 409.
    let err = m
        .operator_operation(&aid, unreserve(vec![reserved("cpus", 1.0, &["db"])], None))
        .unwrap_err();
    assert!(matches!(err, OperatorError::Conflict(_)), "{err:?}");
    // A volume on unreserved disk: 400.
    let mut bare = volume(64.0, "db", "v");
    bare.reservations.clear();
    let err = m
        .operator_operation(&aid, create(vec![bare], None))
        .unwrap_err();
    assert!(
        matches!(&err, OperatorError::BadRequest(msg) if msg.contains("reserved disk")),
        "{err:?}"
    );
    // allocation_info is the frameworks' business.
    let mut allocated = reserved("cpus", 1.0, &["db"]);
    allocated.allocation_info = Some(v1::resource::AllocationInfo {
        role: Some("db".into()),
    });
    assert!(matches!(
        m.operator_operation(&aid, reserve(vec![allocated], None)),
        Err(OperatorError::BadRequest(_))
    ));
    assert_eq!(m.agents[&aid].total, before);
    assert!(m.take_effects().is_empty());
    // A framework holds an offer of everything: reserving rescinds it.
    let fid = subscribe(&mut m, Fw::new("web", "web"));
    let offer = offer_for(&mut m, &fid, 1);
    let r = reserved("cpus", 2.0, &["db"]);
    m.operator_operation(&aid, reserve(vec![r.clone()], None))
        .unwrap();
    let effects = m.take_effects();
    let rescinded: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Framework { event, .. } => event.rescind.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded[0].offer_id, offer.id);
    let apply = applied(&effects);
    assert_eq!(apply.len(), 1);
    assert!(apply[0].framework_id.is_none());
    assert!(m.agents[&aid].total.contains_one(&r));
    // The operator's operations need no feedback: forgotten when done.
    let total = m.agents[&aid].total.to_vec();
    finished(
        &mut m,
        &aid,
        &apply[0],
        OperationState::OperationFinished,
        total,
    );
    assert!(m.operations.is_empty());
    // web (another role) is offered the rest only.
    let offer = offer_for(&mut m, &fid, 2);
    assert_eq!(Resources::from_vec(&offer.resources).scalar("cpus"), 2.0);
    // Create and destroy a volume on the reservation... after reserving disk.
    let disk = reserved("disk", 128.0, &["db"]);
    m.decline(&fid, std::slice::from_ref(&offer.id), None, at(2));
    m.operator_operation(&aid, reserve(vec![disk.clone()], None))
        .unwrap();
    let vol = volume(128.0, "db", "data");
    m.operator_operation(&aid, create(vec![vol.clone()], None))
        .unwrap();
    assert!(m.agents[&aid].total.contains_one(&vol));
    m.operator_operation(&aid, destroy(vec![vol.clone()], None))
        .unwrap();
    assert!(m.agents[&aid].total.contains_one(&disk));
    m.operator_operation(&aid, unreserve(vec![disk, r], None))
        .unwrap();
    assert_eq!(m.agents[&aid].total, before);
    assert_eq!(m.allocator.total(&aid), before);
}

#[test]
fn frameworks_without_refinement_use_the_old_format_and_never_see_refined_reservations() {
    let mut m = master();
    let old = subscribe(
        &mut m,
        Fw {
            refinement: false,
            ..Fw::new("old", "a/b")
        },
    );
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let offer = offer_for(&mut m, &old, 1);
    assert!(offer
        .resources
        .iter()
        .all(|r| r.role.as_deref() == Some("*")));
    // RESERVE in the pre-refinement format.
    let mut r = resources::scalar("cpus", 1.0);
    r.role = Some("a/b".into());
    r.reservation = Some(ReservationInfo {
        principal: Some("ops".into()),
        ..Default::default()
    });
    let effects = accept(
        &mut m,
        &old,
        &offer,
        vec![reserve(vec![r], Some("old-format"))],
    );
    assert_eq!(applied(&effects).len(), 1, "{effects:?}");
    assert!(m.agents[&aid]
        .total
        .contains_one(&reserved("cpus", 1.0, &["a/b"])));
    // A refined reservation (a, then a/b) made by the operator.
    m.operator_operation(&aid, reserve(vec![reserved("mem", 256.0, &["a"])], None))
        .unwrap();
    m.operator_operation(
        &aid,
        reserve(vec![reserved("mem", 256.0, &["a", "a/b"])], None),
    )
    .unwrap();
    // Offers to the old framework: pre-refinement format, no refined mem.
    m.allocate(at(3), true);
    let offers = offers_of(&m.take_effects(), &old);
    let all: Vec<&v1::Resource> = offers.iter().flat_map(|o| o.resources.iter()).collect();
    assert!(!all.is_empty());
    for r in &all {
        assert!(r.reservations.is_empty(), "{r:?}");
        assert!(r.role.is_some(), "{r:?}");
    }
    assert!(all
        .iter()
        .any(|r| r.name == "cpus" && r.role.as_deref() == Some("a/b")));
    assert!(!all
        .iter()
        .any(|r| r.name == "mem" && r.role.as_deref() == Some("a/b")));
    // Refined reservations in its operations are refused.
    let offer = offers[0].clone();
    let effects = accept(
        &mut m,
        &old,
        &offer,
        vec![reserve(
            vec![reserved("cpus", 1.0, &["a", "a/b"])],
            Some("refined"),
        )],
    );
    let u = op_updates(&effects, &old);
    assert!(
        u[0].message
            .as_deref()
            .unwrap()
            .contains("RESERVATION_REFINEMENT"),
        "{u:?}"
    );
    // A capable framework in a/b gets the refined reservation.
    let new = subscribe(&mut m, Fw::new("new", "a/b"));
    m.allocate(at(4), true);
    let offers = offers_of(&m.take_effects(), &new);
    let got = Resources::from_vec(
        &offers
            .iter()
            .flat_map(|o| o.resources.iter().cloned())
            .collect::<Vec<_>>(),
    )
    .unallocated();
    assert!(
        got.contains_one(&reserved("mem", 256.0, &["a", "a/b"])),
        "{got:?}"
    );
}

#[test]
fn a_registering_agents_total_and_operations_are_the_truth() {
    // A fresh master (a new leader) learns reservations, volumes and the
    // operations with unacknowledged statuses from the agent.
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let vol = volume(128.0, "db", "pg");
    let r_cpus = reserved("cpus", 1.0, &["db"]);
    let mut reg = registration("cpus:4;mem:1024;disk:1024");
    reg.agent_info.id = Some(v1::AgentId {
        value: "agent-1".into(),
    });
    let mut total = Resources::from_vec(&parse("cpus:3;mem:1024;disk:896").unwrap());
    total.add(&r_cpus);
    total.add(&vol);
    reg.total_resources = total.to_vec();
    let op_uuid = vec![9u8; 16];
    let status_uuid = vec![8u8; 16];
    let finished_status = v1::OperationStatus {
        operation_id: Some(v1::OperationId { value: "c1".into() }),
        state: OperationState::OperationFinished as i32,
        uuid: Some(v1::Uuid {
            value: status_uuid.clone(),
        }),
        ..Default::default()
    };
    reg.operations = vec![v1::Operation {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        agent_id: None,
        info: create(vec![vol.clone()], Some("c1")),
        latest_status: finished_status.clone(),
        statuses: vec![finished_status],
        uuid: v1::Uuid {
            value: op_uuid.clone(),
        },
    }];
    let aid = register(&mut m, reg);
    assert_eq!(m.agents[&aid].total, total);
    assert_eq!(m.allocator.total(&aid), total);
    // The volume and the reservation are offered to the role.
    let offer = offer_for(&mut m, &fid, 1);
    let offered = Resources::from_vec(&offer.resources).unallocated();
    assert!(offered.contains_one(&vol), "{offered:?}");
    assert!(offered.contains_one(&r_cpus));
    // The operation is known: reconciliation reports it.
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::ReconcileOperations as i32),
        reconcile_operations: Some(scheduler::call::ReconcileOperations { operations: vec![] }),
        ..Default::default()
    };
    m.scheduler_call(&fid, call, at(2)).unwrap();
    let u = op_updates(&m.take_effects(), &fid);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, OperationState::OperationFinished as i32);
    assert_eq!(u[0].agent_id.as_ref().unwrap().value, aid);
    // The agent resends the update: forwarded with its uuid, and the
    // acknowledgement reaches the agent with the operation's uuid.
    m.agent_message(
        &aid,
        internal::agent_message::Message::OperationUpdate(internal::OperationStatusUpdate {
            framework_id: Some(v1::FrameworkId { value: fid.clone() }),
            status: v1::OperationStatus {
                operation_id: Some(v1::OperationId { value: "c1".into() }),
                state: OperationState::OperationFinished as i32,
                uuid: Some(v1::Uuid {
                    value: status_uuid.clone(),
                }),
                ..Default::default()
            },
            operation_uuid: op_uuid.clone(),
            total_resources: total.to_vec(),
        }),
        at(3),
    );
    let u = op_updates(&m.take_effects(), &fid);
    assert_eq!(u[0].uuid.as_ref().unwrap().value, status_uuid);
    m.scheduler_call(
        &fid,
        scheduler::Call {
            framework_id: Some(v1::FrameworkId { value: fid.clone() }),
            r#type: Some(scheduler::call::Type::AcknowledgeOperationStatus as i32),
            acknowledge_operation_status: Some(scheduler::call::AcknowledgeOperationStatus {
                agent_id: Some(v1::AgentId { value: aid.clone() }),
                resource_provider_id: None,
                uuid: status_uuid.clone(),
                operation_id: v1::OperationId { value: "c1".into() },
            }),
            ..Default::default()
        },
        at(4),
    )
    .unwrap();
    let effects = m.take_effects();
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Agent { message: ToAgent::AcknowledgeOperation(a), .. }
            if a.operation_uuid == op_uuid && a.status_uuid == status_uuid
    )));
    assert!(m.operations.is_empty());
}

#[test]
fn operations_lost_with_a_session_are_dropped_on_reregistration() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let mut reg = registration("cpus:4;mem:1024");
    reg.agent_info.id = Some(v1::AgentId {
        value: "agent-1".into(),
    });
    let aid = register(&mut m, reg.clone());
    let offer = offer_for(&mut m, &fid, 1);
    accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.0, &["db"])], Some("lost"))],
    );
    // The agent comes back without having seen it: its total wins.
    m.agent_disconnected(&aid, at(3));
    m.register_agent(reg, at(4)).unwrap();
    let effects = m.take_effects();
    let u = op_updates(&effects, &fid);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, OperationState::OperationDropped as i32);
    assert_eq!(
        m.agents[&aid].total,
        bag(&parse("cpus:4;mem:1024").unwrap())
    );
    assert!(m.operations.is_empty());
}

#[test]
fn reconciliation_reports_operations_on_unreachable_agents() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    let offer = offer_for(&mut m, &fid, 1);
    accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.0, &["db"])], Some("r1"))],
    );
    m.agent_disconnected(&aid, at(3));
    m.remove_agent(&aid, at(100));
    m.take_effects();
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::ReconcileOperations as i32),
        reconcile_operations: Some(scheduler::call::ReconcileOperations {
            operations: vec![
                scheduler::call::reconcile_operations::Operation {
                    operation_id: v1::OperationId { value: "r1".into() },
                    agent_id: None,
                    resource_provider_id: None,
                },
                scheduler::call::reconcile_operations::Operation {
                    operation_id: v1::OperationId {
                        value: "other".into(),
                    },
                    agent_id: Some(v1::AgentId { value: aid.clone() }),
                    resource_provider_id: None,
                },
            ],
        }),
        ..Default::default()
    };
    m.scheduler_call(&fid, call, at(101)).unwrap();
    let u = op_updates(&m.take_effects(), &fid);
    assert_eq!(u[0].state, OperationState::OperationUnreachable as i32);
    assert_eq!(u[1].state, OperationState::OperationUnreachable as i32);
}

#[test]
fn grow_and_shrink_a_volume() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024;disk:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let vol = volume(128.0, "db", "pg");
    let mut grow = operation(OpType::GrowVolume, Some("g"));
    grow.grow_volume = Some(v1::offer::operation::GrowVolume {
        volume: vol.clone(),
        addition: reserved("disk", 64.0, &["db"]),
    });
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![
            reserve(vec![reserved("disk", 256.0, &["db"])], None),
            create(vec![vol.clone()], None),
            grow,
        ],
    );
    assert_eq!(applied(&effects).len(), 3, "{effects:?}");
    let mut grown = vol.clone();
    grown.scalar = Some(v1::value::Scalar { value: 192.0 });
    assert!(m.agents[&aid].total.contains_one(&grown));
    let mut shrink = operation(OpType::ShrinkVolume, Some("s"));
    shrink.shrink_volume = Some(v1::offer::operation::ShrinkVolume {
        volume: grown.clone(),
        subtract: v1::value::Scalar { value: 92.0 },
    });
    m.operator_operation(&aid, shrink).unwrap();
    let mut shrunk = vol;
    shrunk.scalar = Some(v1::value::Scalar { value: 100.0 });
    let total = &m.agents[&aid].total;
    assert!(total.contains_one(&shrunk));
    assert!(total.contains(&one(&reserved("disk", 156.0, &["db"]))));
    assert_eq!(total.scalar("disk"), 1024.0);
}

#[test]
fn updates_a_disconnected_framework_missed_are_sent_when_it_resubscribes() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.0, &["db"])], Some("r1"))],
    );
    let apply = applied(&effects).remove(0);
    m.framework_disconnected(&fid, "stream-db", at(2));
    let total = m.agents[&aid].total.to_vec();
    let (_, status_uuid) = finished(
        &mut m,
        &aid,
        &apply,
        OperationState::OperationFinished,
        total,
    );
    // Re-subscription with the same FrameworkID: the status comes again,
    // with its uuid, so the framework can acknowledge it.
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                id: Some(v1::FrameworkId { value: fid.clone() }),
                user: "root".into(),
                name: "db".into(),
                role: Some("db".into()),
                principal: Some("ops".into()),
                failover_timeout: Some(10.0),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    m.subscribe(&call, "stream-db-2", at(4)).unwrap();
    let u = op_updates(&m.take_effects(), &fid);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, OperationState::OperationFinished as i32);
    assert_eq!(u[0].uuid.as_ref().unwrap().value, status_uuid);
}

#[test]
fn updates_for_a_removed_framework_are_acknowledged_for_it() {
    let mut m = master();
    let fid = subscribe(&mut m, Fw::new("db", "db"));
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    let offer = offer_for(&mut m, &fid, 1);
    let effects = accept(
        &mut m,
        &fid,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.0, &["db"])], Some("r1"))],
    );
    let apply = applied(&effects).remove(0);
    m.remove_framework(&fid, at(2));
    m.take_effects();
    let total = m.agents[&aid].total.to_vec();
    let (effects, status_uuid) = finished(
        &mut m,
        &aid,
        &apply,
        OperationState::OperationFinished,
        total,
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Agent { message: ToAgent::AcknowledgeOperation(a), .. }
            if a.status_uuid == status_uuid && a.operation_uuid == apply.operation_uuid
    )));
    assert!(m.operations.is_empty());
}
