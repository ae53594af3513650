//! State transitions without sockets: inputs in, effects out.

use super::*;
use corral_api::resources::parse;

use super::test_support::{at, master};

fn subscribe(m: &mut Master, name: &str, caps: &[FwCap]) -> String {
    let call = scheduler::Call {
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "root".into(),
                name: name.into(),
                failover_timeout: Some(10.0),
                capabilities: caps
                    .iter()
                    .map(|c| v1::framework_info::Capability {
                        r#type: Some(*c as i32),
                    })
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = m
        .subscribe(&call, &format!("stream-{name}"), at(0))
        .unwrap();
    m.take_effects();
    id
}

fn add_agent(m: &mut Master, resources: &str) -> String {
    let reg = internal::RegisterAgent {
        agent_info: v1::AgentInfo {
            hostname: "host1".into(),
            port: Some(5051),
            resources: parse(resources).unwrap(),
            ..Default::default()
        },
        version: "1.11.0".into(),
        endpoint: "127.0.0.1:5051".into(),
        ..Default::default()
    };
    let id = m.register_agent(reg, at(0)).unwrap();
    m.take_effects();
    id
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

fn updates_of(effects: &[Effect]) -> Vec<v1::TaskStatus> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Framework { event, .. } => event.update.clone().map(|u| u.status),
            _ => None,
        })
        .collect()
}

fn run_tasks(effects: &[Effect]) -> Vec<internal::RunTask> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Agent {
                message: ToAgent::RunTask(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn accept(offer: &v1::Offer, tasks: Vec<v1::TaskInfo>) -> scheduler::Call {
    scheduler::Call {
        framework_id: Some(offer.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Accept as i32),
        accept: Some(scheduler::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::offer::Operation {
                r#type: Some(OpType::Launch as i32),
                launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            }],
            filters: None,
        }),
        ..Default::default()
    }
}

fn command_task(id: &str, resources: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        resources: parse(resources).unwrap(),
        command: Some(v1::CommandInfo {
            value: Some("true".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn offered(m: &mut Master, fid: &str) -> v1::Offer {
    m.allocate(at(1), true);
    let effects = m.take_effects();
    offers_of(&effects, fid).remove(0)
}

#[test]
fn subscribe_answers_subscribed_with_a_new_id() {
    let mut m = master();
    let call = scheduler::Call {
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "u".into(),
                name: "fw".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = m.subscribe(&call, "s1", at(0)).unwrap();
    assert!(id.starts_with(&m.info.id));
    let effects = m.take_effects();
    let subscribed = effects
        .iter()
        .find_map(|e| match e {
            Effect::Framework { event, .. } => event.subscribed.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(subscribed.framework_id.value, id);
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
}

#[test]
fn subscribe_refuses_bad_framework_info() {
    let mut m = master();
    let mut call = scheduler::Call {
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "u".into(),
                name: "".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(m.subscribe(&call, "s", at(0)).is_err());
    if let Some(s) = call.subscribe.as_mut() {
        s.framework_info.name = "x".into();
        s.framework_info.role = Some("/bad".into());
    }
    assert!(m.subscribe(&call, "s", at(0)).is_err());
    assert!(m.frameworks.is_empty());
}

#[test]
fn offers_a_registered_agent_and_launches_a_valid_task() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024;ports:[31000-32000]");
    let offer = offered(&mut m, &fid);
    assert_eq!(offer.agent_id.value, aid);
    // Without RESERVATION_REFINEMENT resources carry the pre-refinement role.
    assert!(offer
        .resources
        .iter()
        .all(|r| r.role.as_deref() == Some("*")));
    let call = accept(&offer, vec![command_task("t1", "cpus:1;mem:128")]);
    m.scheduler_call(&fid, call, at(2)).unwrap();
    let effects = m.take_effects();
    let runs = run_tasks(&effects);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].task.as_ref().unwrap().agent_id.value, aid);
    assert_eq!(
        m.frameworks[&fid].tasks["t1"].state,
        TaskState::TaskStaging as i32
    );
    assert_eq!(m.agents[&aid].used_total().scalar("cpus"), 1.0);
}

#[test]
fn accept_of_an_unknown_offer_loses_the_tasks() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    add_agent(&mut m, "cpus:2;mem:1024");
    let mut offer = offered(&mut m, &fid);
    offer.id.value = "no-such-offer".into();
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t1", "cpus:1")]),
        at(2),
    )
    .unwrap();
    let effects = m.take_effects();
    assert!(run_tasks(&effects).is_empty());
    let updates = updates_of(&effects);
    assert_eq!(updates[0].state, TaskState::TaskLost as i32);
    assert_eq!(updates[0].reason, Some(Reason::InvalidOffers as i32));
    assert!(updates[0].uuid.is_none());
    assert!(m.frameworks[&fid].tasks.is_empty());
}

#[test]
fn partition_aware_frameworks_get_dropped_for_invalid_offers() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[FwCap::PartitionAware]);
    add_agent(&mut m, "cpus:2;mem:1024");
    let mut offer = offered(&mut m, &fid);
    offer.id.value = "gone".into();
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t1", "cpus:1")]),
        at(2),
    )
    .unwrap();
    let updates = updates_of(&m.take_effects());
    assert_eq!(updates[0].state, TaskState::TaskDropped as i32);
}

#[test]
fn launch_beyond_the_offer_is_a_task_error_and_resources_return() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("big", "cpus:3")]),
        at(2),
    )
    .unwrap();
    let effects = m.take_effects();
    assert!(run_tasks(&effects).is_empty());
    let updates = updates_of(&effects);
    assert_eq!(updates[0].state, TaskState::TaskError as i32);
    assert!(updates[0].message.as_deref().unwrap().contains("exceeds"));
    assert!(m.agents[&aid].used_total().is_empty());
    assert!(m.offers.is_empty());
}

#[test]
fn duplicate_task_ids_and_missing_commands_are_refused() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    add_agent(&mut m, "cpus:4;mem:1024");
    let offer = offered(&mut m, &fid);
    let mut no_command = command_task("nocmd", "cpus:1");
    no_command.command = None;
    m.scheduler_call(
        &fid,
        accept(
            &offer,
            vec![
                command_task("dup", "cpus:1"),
                command_task("dup", "cpus:1"),
                no_command,
            ],
        ),
        at(2),
    )
    .unwrap();
    let effects = m.take_effects();
    assert_eq!(run_tasks(&effects).len(), 1);
    let errors: Vec<_> = updates_of(&effects)
        .into_iter()
        .filter(|u| u.state == TaskState::TaskError as i32)
        .collect();
    assert_eq!(errors.len(), 2);
}

#[test]
fn status_updates_flow_and_terminal_acks_complete_tasks() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t1", "cpus:1")]),
        at(2),
    )
    .unwrap();
    m.take_effects();
    let uuid = vec![7u8; 16];
    m.agent_message(
        &aid,
        internal::agent_message::Message::StatusUpdate(internal::StatusUpdate {
            framework_id: v1::FrameworkId { value: fid.clone() },
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: "t1".into() },
                state: TaskState::TaskFinished as i32,
                uuid: Some(uuid.clone()),
                ..Default::default()
            },
            executor_id: None,
            latest_state: None,
        }),
        at(3),
    );
    let effects = m.take_effects();
    let updates = updates_of(&effects);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].agent_id.as_ref().unwrap().value, aid);
    // Terminal update frees the resources at once.
    assert_eq!(m.agents[&aid].used_total().scalar("cpus"), 0.0);
    let ack = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::Acknowledge as i32),
        acknowledge: Some(scheduler::call::Acknowledge {
            agent_id: v1::AgentId { value: aid.clone() },
            task_id: v1::TaskId { value: "t1".into() },
            uuid,
        }),
        ..Default::default()
    };
    m.scheduler_call(&fid, ack, at(4)).unwrap();
    let effects = m.take_effects();
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Agent {
            message: ToAgent::Acknowledge(_),
            ..
        }
    )));
    assert!(m.frameworks[&fid].tasks.is_empty());
    assert_eq!(m.frameworks[&fid].completed_tasks.len(), 1);
}

#[test]
fn reconciliation_reports_known_and_unknown_tasks_without_uuid() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t1", "cpus:1")]),
        at(2),
    )
    .unwrap();
    m.take_effects();
    let reconcile = |tasks: Vec<&str>| scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::Reconcile as i32),
        reconcile: Some(scheduler::call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|t| scheduler::call::reconcile::Task {
                    task_id: v1::TaskId { value: t.into() },
                    agent_id: None,
                })
                .collect(),
        }),
        ..Default::default()
    };
    m.scheduler_call(&fid, reconcile(vec![]), at(3)).unwrap();
    let implicit = updates_of(&m.take_effects());
    assert_eq!(implicit.len(), 1);
    assert_eq!(implicit[0].reason, Some(Reason::Reconciliation as i32));
    assert!(implicit[0].uuid.is_none());
    m.scheduler_call(&fid, reconcile(vec!["t1", "nope"]), at(3))
        .unwrap();
    let explicit = updates_of(&m.take_effects());
    assert_eq!(explicit.len(), 2);
    assert_eq!(explicit[0].state, TaskState::TaskStaging as i32);
    assert_eq!(explicit[1].state, TaskState::TaskLost as i32);
}

#[test]
fn failover_timeout_removes_a_disconnected_framework() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    m.framework_disconnected(&fid, "stream-fw", at(0));
    assert!(!m.frameworks[&fid].connected);
    m.expire(at(5));
    assert!(m.frameworks.contains_key(&fid), "within failover_timeout");
    m.expire(at(11));
    assert!(!m.frameworks.contains_key(&fid));
    assert_eq!(m.completed_frameworks.len(), 1);
}

#[test]
fn stale_stream_ids_are_refused() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::Revive as i32),
        ..Default::default()
    };
    assert!(m.authorize_call(&call, Some("stream-fw")).is_ok());
    assert!(matches!(
        m.authorize_call(&call, Some("other")),
        Err(CallError::BadRequest(_))
    ));
    assert!(matches!(
        m.authorize_call(&call, None),
        Err(CallError::BadRequest(_))
    ));
    m.framework_disconnected(&fid, "stream-fw", at(0));
    assert!(matches!(
        m.authorize_call(&call, Some("stream-fw")),
        Err(CallError::Forbidden(_))
    ));
}

#[test]
fn lost_agents_lose_tasks_or_make_them_unreachable() {
    let mut m = master();
    let plain = subscribe(&mut m, "plain", &[]);
    let aware = subscribe(&mut m, "aware", &[FwCap::PartitionAware]);
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    m.allocate(at(1), true);
    let effects = m.take_effects();
    // One framework got the agent; give the other one a turn after.
    let (first, second) = if offers_of(&effects, &plain).is_empty() {
        (aware.clone(), plain.clone())
    } else {
        (plain.clone(), aware.clone())
    };
    let offer = offers_of(&effects, &first).remove(0);
    let mut call = accept(&offer, vec![command_task("a", "cpus:1")]);
    if let Some(a) = call.accept.as_mut() {
        a.filters = Some(v1::Filters {
            refuse_seconds: Some(0.0),
        });
    }
    m.scheduler_call(&first, call, at(2)).unwrap();
    m.take_effects();
    m.allocate(at(3), true);
    let offer = offers_of(&m.take_effects(), &second).remove(0);
    m.scheduler_call(
        &second,
        accept(&offer, vec![command_task("b", "cpus:1")]),
        at(3),
    )
    .unwrap();
    m.take_effects();
    m.agent_disconnected(&aid, at(10));
    m.expire(at(10 + 15 * 5 + 1));
    let updates = updates_of(&m.take_effects());
    let state_of = |t: &str| updates.iter().find(|u| u.task_id.value == t).unwrap().state;
    let (plain_task, aware_task) = if first == plain {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert_eq!(state_of(plain_task), TaskState::TaskLost as i32);
    assert_eq!(state_of(aware_task), TaskState::TaskUnreachable as i32);
    assert!(m.agents.is_empty());
}

#[test]
fn acknowledging_running_with_a_terminal_latest_state_keeps_the_task_open() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t1", "cpus:1")]),
        at(2),
    )
    .unwrap();
    m.take_effects();
    let update = |state: TaskState, uuid: u8| {
        internal::agent_message::Message::StatusUpdate(internal::StatusUpdate {
            framework_id: v1::FrameworkId { value: fid.clone() },
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: "t1".into() },
                state: state as i32,
                uuid: Some(vec![uuid; 16]),
                ..Default::default()
            },
            executor_id: None,
            latest_state: Some(TaskState::TaskFinished as i32),
        })
    };
    let ack = |uuid: u8| scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.clone() }),
        r#type: Some(scheduler::call::Type::Acknowledge as i32),
        acknowledge: Some(scheduler::call::Acknowledge {
            agent_id: v1::AgentId { value: aid.clone() },
            task_id: v1::TaskId { value: "t1".into() },
            uuid: vec![uuid; 16],
        }),
        ..Default::default()
    };
    m.agent_message(&aid, update(TaskState::TaskRunning, 1), at(3));
    m.scheduler_call(&fid, ack(1), at(3)).unwrap();
    assert!(
        m.frameworks[&fid].tasks.contains_key("t1"),
        "FINISHED not yet acknowledged"
    );
    m.agent_message(&aid, update(TaskState::TaskFinished, 2), at(4));
    m.scheduler_call(&fid, ack(2), at(4)).unwrap();
    let fw = &m.frameworks[&fid];
    assert!(fw.tasks.is_empty());
    assert_eq!(fw.completed_tasks.len(), 1);
    assert_eq!(fw.completed_tasks[0].statuses.len(), 2);
    // A retried FINISHED after completion does not create a second record.
    m.agent_message(&aid, update(TaskState::TaskFinished, 2), at(5));
    let fw = &m.frameworks[&fid];
    assert!(fw.tasks.is_empty());
    assert_eq!(fw.completed_tasks.len(), 1);
}

fn resubscribe(m: &mut Master, id: &str, principal: Option<&str>) -> Result<String, String> {
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: id.into() }),
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                id: Some(v1::FrameworkId { value: id.into() }),
                user: "root".into(),
                name: "again".into(),
                principal: principal.map(str::to_owned),
                failover_timeout: Some(10.0),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    m.subscribe(&call, "stream-again", at(1))
}

fn registry_ops(effects: &[Effect]) -> Vec<crate::registry::Operation> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Registry(ops) => Some(ops.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn unknown_expired_or_foreign_framework_ids_are_refused_without_change() {
    let mut m = master();
    let before = m.frameworks.len();
    assert!(resubscribe(&mut m, "nobody", None)
        .unwrap_err()
        .contains("not known"));
    assert_eq!(m.frameworks.len(), before);
    // Expired (removed after its failover timeout).
    let fid = subscribe(&mut m, "fw", &[]);
    m.framework_disconnected(&fid, "stream-fw", at(0));
    m.expire(at(11));
    assert!(resubscribe(&mut m, &fid, None)
        .unwrap_err()
        .contains("removed"));
    // Another principal's framework.
    let call = scheduler::Call {
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "root".into(),
                name: "owned".into(),
                principal: Some("alice".into()),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let owned = m.subscribe(&call, "stream-owned", at(0)).unwrap();
    m.take_effects();
    assert!(resubscribe(&mut m, &owned, Some("mallory"))
        .unwrap_err()
        .contains("principal"));
    assert_eq!(
        m.frameworks[&owned].stream_id.as_deref(),
        Some("stream-owned")
    );
    assert!(m.take_effects().is_empty());
    // The owner itself fails over fine.
    assert_eq!(resubscribe(&mut m, &owned, Some("alice")).unwrap(), owned);
}

#[test]
fn after_failover_unknown_framework_ids_are_accepted_while_agents_may_return() {
    let mut m = master();
    let mut state = crate::registry::RegistryState::default();
    let info = v1::AgentInfo {
        id: Some(v1::AgentId { value: "a1".into() }),
        hostname: "h".into(),
        ..Default::default()
    };
    state.agents.insert("a1".into(), info);
    m.recover_agents(&state, at(0));
    assert_eq!(
        resubscribe(&mut m, "fw-from-before", None).unwrap(),
        "fw-from-before"
    );
}

#[test]
fn recovered_agents_that_do_not_return_become_unreachable_within_the_limit() {
    let agent = |id: &str| v1::AgentInfo {
        id: Some(v1::AgentId { value: id.into() }),
        hostname: id.into(),
        ..Default::default()
    };
    let mut state = crate::registry::RegistryState::default();
    for id in ["a1", "a2", "a3", "a4"] {
        state.agents.insert(id.into(), agent(id));
    }
    // Limit 50%: 3 of 4 missing is too many, nothing is marked.
    let mut m = master();
    m.flags.recovery_agent_removal_limit = "50%".into();
    m.recover_agents(&state, at(0));
    m.register_agent(
        internal::RegisterAgent {
            agent_info: agent("a1"),
            version: "1.11.0".into(),
            endpoint: "127.0.0.1:5051".into(),
            ..Default::default()
        },
        at(1),
    )
    .unwrap();
    let ops = registry_ops(&m.take_effects());
    assert!(
        ops.is_empty(),
        "a known agent's return writes nothing: {ops:?}"
    );
    m.expire(at(599));
    assert!(registry_ops(&m.take_effects()).is_empty());
    m.expire(at(601));
    assert!(registry_ops(&m.take_effects()).is_empty());
    assert_eq!(m.counters.get("master/recovery_slave_removals_refused"), 1);
    // Default 100%: the three become unreachable.
    let mut m = master();
    m.recover_agents(&state, at(0));
    m.expire(at(601));
    let ops = registry_ops(&m.take_effects());
    assert_eq!(ops.len(), 4);
    assert!(ops
        .iter()
        .all(|op| matches!(op, crate::registry::Operation::MarkUnreachable { .. })));
    assert_eq!(m.unreachable.len(), 4);
}

#[test]
fn gone_agents_are_refused_and_their_tasks_gone_by_operator() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    m.allocate(at(1), true);
    let offer = offers_of(&m.take_effects(), &fid).remove(0);
    m.scheduler_call(
        &fid,
        accept(&offer, vec![command_task("t", "cpus:1")]),
        at(2),
    )
    .unwrap();
    m.take_effects();
    m.mark_agent_gone(&aid, at(3)).unwrap();
    let effects = m.take_effects();
    let updates = updates_of(&effects);
    assert_eq!(updates[0].state, TaskState::TaskGoneByOperator as i32);
    assert!(matches!(
        registry_ops(&effects)[..],
        [crate::registry::Operation::MarkGone { .. }]
    ));
    assert!(m.mark_agent_gone("nobody", at(3)).is_err());
    let reg = internal::RegisterAgent {
        agent_info: v1::AgentInfo {
            id: Some(v1::AgentId { value: aid.clone() }),
            hostname: "host1".into(),
            ..Default::default()
        },
        version: "1.11.0".into(),
        endpoint: "127.0.0.1:5051".into(),
        ..Default::default()
    };
    assert!(m.register_agent(reg, at(4)).unwrap_err().contains("gone"));
}

fn reconcile_call(fid: &str, tasks: &[(&str, Option<&str>)]) -> scheduler::Call {
    scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.into() }),
        r#type: Some(scheduler::call::Type::Reconcile as i32),
        reconcile: Some(scheduler::call::Reconcile {
            tasks: tasks
                .iter()
                .map(|(t, a)| scheduler::call::reconcile::Task {
                    task_id: v1::TaskId { value: (*t).into() },
                    agent_id: a.map(|a| v1::AgentId { value: a.into() }),
                })
                .collect(),
        }),
        ..Default::default()
    }
}

fn registered_agent(id: &str) -> v1::AgentInfo {
    v1::AgentInfo {
        id: Some(v1::AgentId { value: id.into() }),
        hostname: id.into(),
        resources: parse("cpus:4;mem:1024").unwrap(),
        ..Default::default()
    }
}

/// Issue 11.1: right after a failover the framework re-subscribes before
/// its agent re-registers and reconciles at once. The task is not lost:
/// the master has no answer until the agent is back, then the truth.
#[test]
fn reconciliation_waits_for_agents_recovered_from_the_registry() {
    for partition_aware in [false, true] {
        let mut m = master();
        let mut state = crate::registry::RegistryState::default();
        state.agents.insert("a1".into(), registered_agent("a1"));
        m.recover_agents(&state, at(0));
        resubscribe(&mut m, "fw-1", None).unwrap();
        if partition_aware {
            m.frameworks
                .get_mut("fw-1")
                .unwrap()
                .info
                .capabilities
                .push(v1::framework_info::Capability {
                    r#type: Some(FwCap::PartitionAware as i32),
                });
        }
        m.take_effects();
        // Explicit, with and without the agent id; and implicit.
        for call in [
            reconcile_call("fw-1", &[("t1", Some("a1"))]),
            reconcile_call("fw-1", &[("t1", None)]),
            reconcile_call("fw-1", &[]),
        ] {
            m.scheduler_call("fw-1", call, at(1)).unwrap();
            let updates = updates_of(&m.take_effects());
            assert!(
                updates.is_empty(),
                "no answer while a1 has not re-registered: {updates:?}"
            );
        }
        // The agent re-registers with the task running.
        let task = v1::Task {
            name: "t1".into(),
            task_id: v1::TaskId { value: "t1".into() },
            framework_id: v1::FrameworkId {
                value: "fw-1".into(),
            },
            agent_id: v1::AgentId { value: "a1".into() },
            state: TaskState::TaskRunning as i32,
            resources: parse("cpus:1;mem:128").unwrap(),
            ..Default::default()
        };
        m.register_agent(
            internal::RegisterAgent {
                agent_info: registered_agent("a1"),
                version: "1.11.0".into(),
                endpoint: "127.0.0.1:5051".into(),
                tasks: vec![task],
                ..Default::default()
            },
            at(2),
        )
        .unwrap();
        assert!(m.agents["a1"].reregistered_time.is_some());
        assert_eq!(m.counters.get("master/slave_reregistrations"), 1);
        assert_eq!(m.counters.get("master/slave_registrations"), 0);
        m.take_effects();
        m.scheduler_call("fw-1", reconcile_call("fw-1", &[("t1", Some("a1"))]), at(3))
            .unwrap();
        let updates = updates_of(&m.take_effects());
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, TaskState::TaskRunning as i32);
        assert_eq!(updates[0].reason, Some(Reason::Reconciliation as i32));
        // Now that no agent is transitioning, an unknown task is answered.
        m.scheduler_call("fw-1", reconcile_call("fw-1", &[("t9", None)]), at(3))
            .unwrap();
        let updates = updates_of(&m.take_effects());
        let expected = if partition_aware {
            TaskState::TaskUnknown
        } else {
            TaskState::TaskLost
        };
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, expected as i32);
    }
}

/// Explicit reconciliation of unknown tasks follows Mesos' cases by the
/// state of the agent named, for partition-aware frameworks (the others
/// get TASK_LOST in every case).
#[test]
fn reconciliation_of_unknown_tasks_by_agent_state() {
    let mut m = master();
    let aware = subscribe(&mut m, "aware", &[FwCap::PartitionAware]);
    let plain = subscribe(&mut m, "plain", &[]);
    let registered = add_agent(&mut m, "cpus:4;mem:1024");
    let unreachable = add_agent(&mut m, "cpus:4;mem:1024");
    let gone = add_agent(&mut m, "cpus:4;mem:1024");
    m.remove_agent(&unreachable, at(5));
    m.mark_agent_gone(&gone, at(6)).unwrap();
    m.take_effects();
    let cases = [
        (Some(registered.as_str()), TaskState::TaskGone),
        (Some(unreachable.as_str()), TaskState::TaskUnreachable),
        (Some(gone.as_str()), TaskState::TaskGoneByOperator),
        (Some("no-such-agent"), TaskState::TaskUnknown),
        (None, TaskState::TaskUnknown),
    ];
    for (agent, expected) in cases {
        m.scheduler_call(&aware, reconcile_call(&aware, &[("x", agent)]), at(7))
            .unwrap();
        let updates = updates_of(&m.take_effects());
        assert_eq!(updates.len(), 1, "{agent:?}");
        assert_eq!(updates[0].state, expected as i32, "{agent:?}");
        assert_eq!(updates[0].reason, Some(Reason::Reconciliation as i32));
        assert_eq!(updates[0].source, Some(Source::Master as i32));
        if expected == TaskState::TaskUnreachable {
            assert_eq!(
                updates[0].unreachable_time.as_ref().map(|t| t.nanoseconds),
                Some((at(5).wall * 1e9) as i64)
            );
        }
        m.scheduler_call(&plain, reconcile_call(&plain, &[("x", agent)]), at(7))
            .unwrap();
        let updates = updates_of(&m.take_effects());
        assert_eq!(updates.len(), 1, "{agent:?}");
        assert_eq!(updates[0].state, TaskState::TaskLost as i32, "{agent:?}");
    }
}

/// Issue 11.2: an executor whose exit status the agent does not know (it
/// recovered it after a restart) still gets a FAILURE with a status, -1,
/// as Mesos sends; pymesos reads it unconditionally.
#[test]
fn executor_failure_events_always_carry_a_status() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:4;mem:1024");
    for (status, expected) in [(None, -1), (Some(9), 9)] {
        m.agent_message(
            &aid,
            internal::agent_message::Message::ExecutorExited(internal::ExecutorExited {
                framework_id: v1::FrameworkId { value: fid.clone() },
                executor_id: v1::ExecutorId { value: "e".into() },
                status,
            }),
            at(1),
        );
        let failure = m
            .take_effects()
            .into_iter()
            .find_map(|e| match e {
                Effect::Framework { event, .. } => event.failure,
                _ => None,
            })
            .expect("a FAILURE event");
        assert_eq!(failure.status, Some(expected));
        assert_eq!(failure.executor_id.unwrap().value, "e");
    }
}

fn finish(m: &mut Master, aid: &str, fid: &str, task: &str, state: TaskState, uuid: u8) -> Vec<u8> {
    let uuid = vec![uuid; 16];
    m.agent_message(
        aid,
        internal::agent_message::Message::StatusUpdate(internal::StatusUpdate {
            framework_id: v1::FrameworkId { value: fid.into() },
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: task.into() },
                state: state as i32,
                uuid: Some(uuid.clone()),
                ..Default::default()
            },
            executor_id: None,
            latest_state: None,
        }),
        at(5),
    );
    uuid
}

fn ack(m: &mut Master, aid: &str, fid: &str, task: &str, uuid: Vec<u8>) {
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: fid.into() }),
        r#type: Some(scheduler::call::Type::Acknowledge as i32),
        acknowledge: Some(scheduler::call::Acknowledge {
            agent_id: v1::AgentId { value: aid.into() },
            task_id: v1::TaskId { value: task.into() },
            uuid,
        }),
        ..Default::default()
    };
    m.scheduler_call(fid, call, at(6)).unwrap();
}

fn drain_state(m: &Master, aid: &str) -> Option<v1::DrainState> {
    m.agents[aid]
        .drain
        .as_ref()
        .and_then(|d| v1::DrainState::try_from(d.state).ok())
}

#[test]
fn deactivated_agents_are_not_offered_until_reactivated() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    m.deactivate_agent(&aid).unwrap();
    // The outstanding offer is rescinded and no new one comes.
    let effects = m.take_effects();
    assert!(effects.iter().any(|e| matches!(e, Effect::Framework { event, .. } if event.rescind.as_ref().is_some_and(|r| r.offer_id == offer.id))));
    m.allocate(at(30), true);
    assert!(offers_of(&m.take_effects(), &fid).is_empty());
    assert!(m.get_agents().agents[0].deactivated == Some(true));
    // A re-registration does not undo the operator's deactivation.
    let reg = internal::RegisterAgent {
        agent_info: v1::AgentInfo {
            id: Some(v1::AgentId { value: aid.clone() }),
            hostname: "host1".into(),
            port: Some(5051),
            resources: parse("cpus:2;mem:1024").unwrap(),
            ..Default::default()
        },
        version: "1.11.0".into(),
        endpoint: "127.0.0.1:5051".into(),
        ..Default::default()
    };
    m.agent_disconnected(&aid, at(35));
    assert_eq!(m.register_agent(reg, at(36)).unwrap(), aid);
    m.take_effects();
    assert!(m.agents[&aid].deactivated);
    m.allocate(at(40), true);
    assert!(offers_of(&m.take_effects(), &fid).is_empty());
    m.reactivate_agent(&aid).unwrap();
    m.allocate(at(50), true);
    assert_eq!(offers_of(&m.take_effects(), &fid).len(), 1);
    assert_eq!(
        m.reactivate_agent(&aid),
        Err(AgentCallError::Conflict(format!(
            "Agent {aid} is not deactivated"
        )))
    );
    assert_eq!(
        m.deactivate_agent("nope"),
        Err(AgentCallError::UnknownAgent("nope".into()))
    );
}

#[test]
fn draining_kills_tasks_with_capped_grace_then_drains_and_marks_gone() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    let offer = offered(&mut m, &fid);
    let mut long = command_task("long", "cpus:0.5");
    long.kill_policy = Some(v1::KillPolicy {
        grace_period: Some(v1::DurationInfo {
            nanoseconds: 60_000_000_000,
        }),
    });
    let short = command_task("short", "cpus:0.5");
    m.scheduler_call(&fid, accept(&offer, vec![long, short]), at(2))
        .unwrap();
    m.take_effects();
    m.drain_agent(&aid, Some(Duration::from_secs(5)), true, at(3))
        .unwrap();
    let effects = m.take_effects();
    let mut kills: Vec<(String, i64)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Agent {
                message: ToAgent::KillTask(k),
                ..
            } => Some((
                k.task_id.value.clone(),
                k.kill_policy
                    .as_ref()
                    .and_then(|p| p.grace_period.as_ref())
                    .map_or(-1, |g| g.nanoseconds),
            )),
            _ => None,
        })
        .collect();
    kills.sort();
    // Each task's grace is its own, cut down to the drain's 5 s.
    assert_eq!(
        kills,
        vec![
            ("long".into(), 5_000_000_000),
            ("short".into(), 5_000_000_000)
        ]
    );
    assert_eq!(drain_state(&m, &aid), Some(v1::DrainState::Draining));
    assert!(
        m.reactivate_agent(&aid).is_err(),
        "no reactivation while draining"
    );
    // Terminal updates alone do not drain it: they must be acknowledged.
    let u1 = finish(&mut m, &aid, &fid, "long", TaskState::TaskKilled, 1);
    let u2 = finish(&mut m, &aid, &fid, "short", TaskState::TaskKilled, 2);
    m.drain_progress(at(5));
    assert_eq!(drain_state(&m, &aid), Some(v1::DrainState::Draining));
    ack(&mut m, &aid, &fid, "long", u1);
    m.drain_progress(at(6));
    assert_eq!(drain_state(&m, &aid), Some(v1::DrainState::Draining));
    ack(&mut m, &aid, &fid, "short", u2);
    m.drain_progress(at(6));
    // Drained, and marked gone as asked.
    assert!(
        m.gone.contains(&aid),
        "mark_gone marks the drained agent gone"
    );
}

#[test]
fn an_idle_agent_drains_at_once_and_can_be_reactivated() {
    let mut m = master();
    let fid = subscribe(&mut m, "fw", &[]);
    let aid = add_agent(&mut m, "cpus:2;mem:1024");
    m.drain_agent(&aid, None, false, at(3)).unwrap();
    assert_eq!(drain_state(&m, &aid), Some(v1::DrainState::Drained));
    let view = &m.get_agents().agents[0];
    assert_eq!(view.deactivated, Some(true));
    assert_eq!(
        view.drain_info.as_ref().map(|d| d.state),
        Some(v1::DrainState::Drained as i32)
    );
    m.take_effects();
    m.allocate(at(30), true);
    assert!(offers_of(&m.take_effects(), &fid).is_empty());
    m.reactivate_agent(&aid).unwrap();
    assert_eq!(drain_state(&m, &aid), None);
    m.allocate(at(40), true);
    assert_eq!(offers_of(&m.take_effects(), &fid).len(), 1);
    assert!(!m.gone.contains(&aid));
}

#[test]
fn kill_policies_are_capped_only_when_a_cap_is_given() {
    let own = Some(v1::KillPolicy {
        grace_period: Some(v1::DurationInfo { nanoseconds: 1_000 }),
    });
    assert_eq!(drain::capped_kill_policy(own, None), own);
    assert_eq!(
        drain::capped_kill_policy(own, Some(Duration::from_secs(1))),
        own,
        "a shorter grace of its own is kept"
    );
    assert_eq!(
        drain::capped_kill_policy(None, Some(Duration::from_secs(2)))
            .and_then(|p| p.grace_period)
            .map(|g| g.nanoseconds),
        Some(2_000_000_000)
    );
}
