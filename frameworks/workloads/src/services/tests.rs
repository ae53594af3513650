use corral_api::v1;
use serde_json::json;

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000 + s).expect("time")
}

fn offer(n: usize, rack: &str) -> v1::Offer {
    let mut resources =
        corral_api::resources::parse("cpus:4;mem:4096;disk:1000;ports:[31000-31009]").expect("r");
    for r in &mut resources {
        r.allocation_info = Some(v1::resource::AllocationInfo {
            role: Some("*".into()),
        });
    }
    v1::Offer {
        id: v1::OfferId {
            value: format!("o{n}"),
        },
        framework_id: v1::FrameworkId { value: "f".into() },
        agent_id: v1::AgentId {
            value: format!("a{n}"),
        },
        hostname: format!("host{n}"),
        resources,
        attributes: vec![v1::Attribute {
            name: "rack".into(),
            r#type: v1::value::Type::Text as i32,
            text: Some(v1::value::Text { value: rack.into() }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn request(doc: serde_json::Value) -> Request {
    serde_json::from_value(doc).expect("request")
}

fn deploy(id: &str, extra: serde_json::Value) -> Deploy {
    let mut doc = json!({"requestId": "web", "id": id, "command": "serve",
                         "resources": {"cpus": 1, "memoryMb": 128, "numPorts": 1}});
    for (k, v) in extra.as_object().expect("object") {
        doc[k] = v.clone();
    }
    serde_json::from_value(doc).expect("deploy")
}

fn launched(actions: &[Action]) -> Vec<TaskSpec> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Launch { tasks, .. } => tasks.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn killed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

fn healthy_count(s: &Services) -> usize {
    s.tasks("web")
        .iter()
        .filter(|t| t.phase == TaskPhase::Healthy)
        .count()
}

/// A `web` SERVICE of `n` instances on deploy `d1`, all healthy.
fn running_service(n: u32, extra: serde_json::Value) -> Services {
    let mut s = Services::new();
    let mut doc = json!({"id": "web", "requestType": "SERVICE", "instances": n});
    for (k, v) in extra.as_object().expect("object") {
        doc[k] = v.clone();
    }
    s.upsert(request(doc)).expect("upsert");
    s.deploy(deploy("d1", json!({})), at(0)).expect("deploy");
    let offers: Vec<v1::Offer> = (0..4).map(|i| offer(i, "r1")).collect();
    let tasks = launched(&s.offers(&offers, at(1)));
    assert_eq!(tasks.len(), n as usize);
    for t in &tasks {
        s.update(&t.task_id, v1::TaskState::TaskRunning, None, at(2));
    }
    s.tick(at(3));
    assert_eq!(s.active_deploy("web"), Some("d1"));
    assert_eq!(healthy_count(&s), n as usize);
    s
}

#[test]
fn a_first_deploy_starts_every_instance_and_becomes_active() {
    let s = running_service(3, json!({}));
    let tasks = s.tasks("web");
    assert!(tasks.iter().all(|t| t.ports.len() == 1));
    assert_eq!(
        s.deploy_history("web"),
        [("d1".to_string(), DeployState::Succeeded)]
    );
    assert_eq!(s.upstreams("web").len(), 3);
}

#[test]
fn a_rolling_deploy_replaces_instances_one_step_at_a_time_keeping_capacity() {
    let mut s = running_service(2, json!({}));
    s.deploy(
        deploy("d2", json!({"deployInstanceCountPerStep": 1})),
        at(10),
    )
    .expect("deploy");
    assert_eq!(s.pending_deploy("web"), Some("d2"));
    let offers: Vec<v1::Offer> = (0..4).map(|i| offer(i, "r1")).collect();
    for step in 0..2 {
        let t = 20 + step * 10;
        let new = launched(&s.offers(&offers, at(t)));
        assert_eq!(new.len(), 1, "one new instance per step");
        assert_eq!(new[0].deploy.id, "d2");
        assert!(healthy_count(&s) >= 2, "the old instances serve meanwhile");
        let kills = s.update(&new[0].task_id, v1::TaskState::TaskRunning, None, at(t + 1));
        assert!(kills.is_empty(), "running is not healthy yet");
        let kills = killed(&s.tick(at(t + 2)));
        assert_eq!(
            kills.len(),
            1,
            "one old instance goes once the new one is healthy"
        );
        assert!(kills[0].starts_with("web-d1-"));
        assert!(healthy_count(&s) >= 2);
        s.update(&kills[0], v1::TaskState::TaskKilled, None, at(t + 3));
    }
    assert_eq!(s.active_deploy("web"), Some("d2"));
    assert_eq!(s.pending_deploy("web"), None);
    assert!(s.tasks("web").iter().all(|t| t.deploy_id == "d2"));
}

#[test]
fn a_deploy_whose_instances_never_become_healthy_is_rolled_back() {
    let mut s = running_service(2, json!({}));
    s.deploy(
        deploy(
            "d2",
            json!({"healthcheckUri": "/health", "deployHealthTimeoutSeconds": 30}),
        ),
        at(10),
    )
    .expect("deploy");
    let offers: Vec<v1::Offer> = (0..4).map(|i| offer(i, "r1")).collect();
    let new = launched(&s.offers(&offers, at(11)));
    assert_eq!(new.len(), 2);
    for t in &new {
        s.update(&t.task_id, v1::TaskState::TaskRunning, Some(false), at(12));
    }
    assert!(killed(&s.tick(at(39))).is_empty());
    let kills = killed(&s.tick(at(40)));
    assert_eq!(kills.len(), 2);
    assert!(kills.iter().all(|k| k.starts_with("web-d2-")), "{kills:?}");
    assert_eq!(s.active_deploy("web"), Some("d1"));
    assert!(matches!(
        s.deploy_history("web").last(),
        Some((id, DeployState::Failed(why))) if id == "d2" && why.contains("deployHealthTimeoutSeconds")
    ));
    assert_eq!(healthy_count(&s), 2, "the old instances served throughout");
}

#[test]
fn a_deploy_whose_instance_fails_is_rolled_back_and_cancel_works() {
    let mut s = running_service(1, json!({}));
    s.deploy(deploy("d2", json!({})), at(10)).expect("deploy");
    let offers = [offer(1, "r1")];
    let new = launched(&s.offers(&offers, at(11)));
    s.update(&new[0].task_id, v1::TaskState::TaskFailed, None, at(12));
    assert!(matches!(
        s.deploy_history("web").last(),
        Some((id, DeployState::Failed(_))) if id == "d2"
    ));
    assert_eq!(s.active_deploy("web"), Some("d1"));
    // Reusing the id is refused; a new deploy can be cancelled.
    assert!(matches!(
        s.deploy(deploy("d2", json!({})), at(13)),
        Err(ServiceError::Conflict(_))
    ));
    s.deploy(deploy("d3", json!({})), at(14)).expect("deploy");
    assert!(matches!(
        s.deploy(deploy("d4", json!({})), at(14)),
        Err(ServiceError::Conflict(_))
    ));
    let new = launched(&s.offers(&offers, at(15)));
    let cancel = s.cancel_deploy("web").expect("cancel");
    assert_eq!(killed(&cancel), [new[0].task_id.clone()]);
    assert_eq!(
        s.deploy_history("web").last(),
        Some(&("d3".to_string(), DeployState::Canceled))
    );
}

#[test]
fn a_crashing_service_backs_off_then_cools_down_then_is_paused_saying_why() {
    let mut s = running_service(1, json!({}));
    let offers = [offer(1, "r1"), offer(2, "r1")];
    let mut now = 100;
    let mut states = Vec::new();
    for _ in 0..8 {
        let current = s
            .tasks("web")
            .into_iter()
            .find(|t| t.phase != TaskPhase::Killing)
            .map(|t| (t.task_id.clone(), t.agent_id.clone()));
        let Some((task, failed_on)) = current else {
            break;
        };
        s.update(&task, v1::TaskState::TaskFailed, None, at(now));
        states.push(s.state("web").cloned());
        // Nothing is launched during the backoff.
        assert!(launched(&s.offers(&offers, at(now))).is_empty());
        now += 61;
        let again = launched(&s.offers(&offers, at(now)));
        if matches!(s.state("web"), Some(RequestState::Paused { .. })) {
            assert!(again.is_empty(), "a paused request runs nothing");
            break;
        }
        assert_eq!(again.len(), 1, "replaced after the backoff");
        assert_eq!(again[0].deploy.id, "d1");
        let replaced_on = s
            .tasks("web")
            .into_iter()
            .find(|t| t.task_id == again[0].task_id)
            .map(|t| t.agent_id.clone());
        if failed_on != "a1" && failed_on != "a2" {
            assert!(replaced_on.is_some());
        } else {
            assert_ne!(
                replaced_on.as_deref(),
                Some(failed_on.as_str()),
                "another agent where possible"
            );
        }
        s.update(&again[0].task_id, v1::TaskState::TaskRunning, None, at(now));
        now += 1;
    }
    assert!(
        matches!(states[2], Some(RequestState::SystemCooldown { ref reason }) if reason.contains("3 failures"))
    );
    match s.state("web") {
        Some(RequestState::Paused { reason }) => {
            assert!(
                reason.contains("in cooldown") && reason.contains("unpause web"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    s.set_paused("web", false).expect("unpause");
    assert_eq!(launched(&s.offers(&offers, at(now + 1))).len(), 1);
}

#[test]
fn placement_follows_separate_constraints_and_racks_and_says_why_not() {
    let mut s = Services::new();
    s.upsert(request(
        json!({"id": "web", "requestType": "SERVICE", "instances": 3,
        "slavePlacement": "SEPARATE"}),
    ))
    .expect("upsert");
    s.deploy(deploy("d1", json!({})), at(0)).expect("deploy");
    let two = [offer(1, "r1"), offer(2, "r1")];
    let tasks = launched(&s.offers(&two, at(1)));
    assert_eq!(tasks.len(), 2, "one per agent");
    let why = s.why_pending("web").expect("a reason");
    assert!(why.contains("SEPARATE"), "{why}");

    let mut s = Services::new();
    s.upsert(request(
        json!({"id": "web", "requestType": "WORKER", "instances": 4,
        "rackSensitive": true}),
    ))
    .expect("upsert");
    s.deploy(
        deploy("d1", json!({"resources": {"cpus": 1, "memoryMb": 64}})),
        at(0),
    )
    .expect("deploy");
    let racks = [
        offer(1, "r1"),
        offer(2, "r1"),
        offer(3, "r2"),
        offer(4, "r2"),
    ];
    let tasks = launched(&s.offers(&racks, at(1)));
    assert_eq!(tasks.len(), 4);
    let per_rack = |rack: &str| {
        s.tasks("web")
            .iter()
            .filter(|t| t.placement.attributes.get("rack").map(String::as_str) == Some(rack))
            .count()
    };
    assert_eq!(
        (per_rack("r1"), per_rack("r2")),
        (2, 2),
        "spread evenly over racks"
    );

    let mut s = Services::new();
    s.upsert(request(json!({"id": "web", "requestType": "WORKER",
        "constraints": [["rack", "CLUSTER", "r9"]]})))
        .expect("upsert");
    s.deploy(deploy("d1", json!({})), at(0)).expect("deploy");
    assert!(launched(&s.offers(&racks, at(1))).is_empty());
    let why = s.why_pending("web").expect("a reason");
    assert!(
        why.contains("CLUSTER r9") || why.contains("not r9"),
        "{why}"
    );

    let mut s = Services::new();
    s.upsert(request(json!({"id": "web", "requestType": "WORKER"})))
        .expect("upsert");
    s.deploy(
        deploy("d1", json!({"resources": {"cpus": 64, "memoryMb": 64}})),
        at(0),
    )
    .expect("deploy");
    assert!(launched(&s.offers(&racks, at(1))).is_empty());
    assert!(s
        .why_pending("web")
        .is_some_and(|w| w.contains("not enough resources")));
}

#[test]
fn scaling_down_kills_the_highest_instances_and_pausing_kills_all() {
    let mut s = running_service(3, json!({}));
    s.upsert(request(
        json!({"id": "web", "requestType": "SERVICE", "instances": 1}),
    ))
    .expect("scale");
    let kills = killed(&s.tick(at(10)));
    assert_eq!(kills.len(), 2);
    let left: Vec<u32> = s
        .tasks("web")
        .iter()
        .filter(|t| t.phase != TaskPhase::Killing)
        .map(|t| t.instance)
        .collect();
    assert_eq!(left, [1]);
    let paused = s.set_paused("web", true).expect("pause");
    assert_eq!(killed(&paused).len(), 1);
    assert!(launched(&s.offers(&[offer(1, "r1")], at(11))).is_empty());
    assert!(matches!(
        s.upsert(request(
            json!({"id": "cron", "requestType": "SCHEDULED", "schedule": "@daily"})
        )),
        Err(ServiceError::NotLongRunning(_))
    ));
    assert!(matches!(
        s.delete("nope"),
        Err(ServiceError::UnknownRequest(_))
    ));
    assert_eq!(
        killed(&s.delete("web").expect("delete")).len(),
        0,
        "already killing"
    );
}

#[test]
fn a_load_balanced_instance_leaves_rotation_and_is_killed_only_after_draining() {
    let mut s = Services::new().with_load_balancer_drain(SignedDuration::from_secs(5));
    s.upsert(request(
        json!({"id": "web", "requestType": "SERVICE", "instances": 1,
                             "loadBalanced": true}),
    ))
    .expect("upsert");
    s.deploy(deploy("d1", json!({"serviceBasePath": "/web"})), at(0))
        .expect("deploy");
    let offers: Vec<v1::Offer> = (0..2).map(|i| offer(i, "r1")).collect();
    let first = launched(&s.offers(&offers, at(1)));
    s.update(&first[0].task_id, v1::TaskState::TaskRunning, None, at(2));
    s.tick(at(3));
    assert_eq!(s.upstreams("web").len(), 1);
    assert_eq!(s.service_base_path("web"), Some("/web"));
    s.deploy(deploy("d2", json!({"serviceBasePath": "/web"})), at(10))
        .expect("deploy");
    let new = launched(&s.offers(&offers, at(11)));
    s.update(&new[0].task_id, v1::TaskState::TaskRunning, None, at(12));
    // The new instance is healthy: the old one leaves rotation, alive.
    let kills = killed(&s.tick(at(13)));
    assert!(kills.is_empty(), "not killed before draining: {kills:?}");
    let rotation: Vec<String> = s.upstreams("web").into_iter().map(|u| u.task_id).collect();
    assert_eq!(rotation, vec![new[0].task_id.clone()]);
    assert_eq!(s.active_deploy("web"), Some("d2"));
    // A status of the draining task changes nothing.
    s.update(
        &first[0].task_id,
        v1::TaskState::TaskRunning,
        Some(true),
        at(14),
    );
    assert!(killed(&s.tick(at(17))).is_empty(), "drained 4s of 5");
    assert_eq!(killed(&s.tick(at(19))), vec![first[0].task_id.clone()]);
    s.update(&first[0].task_id, v1::TaskState::TaskKilled, None, at(20));
    let history = s.task_history("web");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].task_id, first[0].task_id);
    assert_eq!(history[0].last_task_state, "TASK_KILLED");
    assert!(history[0].killed_by_framework);
    assert_eq!(
        s.state("web"),
        Some(&RequestState::Active),
        "no failure counted"
    );
}

#[test]
fn a_crashed_instance_is_recorded_in_the_task_history_as_not_killed() {
    let mut s = running_service(1, json!({}));
    let task = s.tasks("web")[0].task_id.clone();
    s.update(&task, v1::TaskState::TaskFailed, None, at(5));
    let history = s.task_history("web");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].last_task_state, "TASK_FAILED");
    assert!(!history[0].killed_by_framework);
}

/// An offer of agent `a<n>` to role `db`: unreserved resources, plus
/// `reserved` as the agent offers them again (reservations, volumes).
fn db_offer(n: usize, reserved: &[v1::Resource]) -> v1::Offer {
    let mut o = offer(n, "r1");
    o.id.value = format!("o{n}-{}", reserved.len());
    o.resources.extend(reserved.iter().cloned());
    for r in &mut o.resources {
        r.allocation_info = Some(v1::resource::AllocationInfo {
            role: Some("db".into()),
        });
    }
    o
}

fn stateful(id: &str) -> Deploy {
    let mut d = deploy(
        id,
        json!({"persistentVolume": {"containerPath": "data", "sizeMb": 100}}),
    );
    d.request_id = "db".into();
    d
}

#[test]
fn a_stateful_instance_reserves_once_and_comes_back_to_its_volume() {
    let mut s = Services::new();
    s.upsert(request(json!({"id": "db", "requestType": "WORKER"})))
        .expect("upsert");
    let refused = s.deploy(stateful("d1"), at(0));
    assert!(
        matches!(&refused, Err(ServiceError::Invalid(m)) if m.starts_with("persistentVolume")),
        "{refused:?}"
    );
    let mut s = Services::new().with_reservations("db", Some("ops"));
    s.upsert(request(json!({"id": "db", "requestType": "WORKER"})))
        .expect("upsert");
    s.deploy(stateful("d1"), at(0)).expect("deploy");

    // First launch: RESERVE + CREATE + LAUNCH on unreserved resources.
    let actions = s.offers(&[db_offer(0, &[])], at(1));
    let first = launched(&actions).remove(0);
    assert_eq!(first.operations.len(), 2);
    assert_eq!(
        first.operations[0].r#type,
        Some(v1::offer::operation::Type::Reserve as i32)
    );
    assert_eq!(
        first.operations[1].r#type,
        Some(v1::offer::operation::Type::Create as i32)
    );
    let volume = corral_sdk::offers::find_volume(&first.resources, "wl-db-1")
        .expect("the task uses its volume")
        .clone();
    let reserved: Vec<v1::Resource> = first
        .resources
        .iter()
        .filter(|r| volume_label(r) == Some("wl-db-1"))
        .cloned()
        .collect();
    assert_eq!(reserved.len(), 3, "cpus, mem and the volume: {reserved:?}");
    assert_eq!(s.volumes("db"), [(1, "a0".to_string())].into());

    // It runs (the deploy succeeds), then fails; the replacement waits
    // for the agent holding the volume.
    s.update(&first.task_id, v1::TaskState::TaskRunning, None, at(2));
    s.tick(at(3));
    assert_eq!(s.active_deploy("db"), Some("d1"));
    s.update(&first.task_id, v1::TaskState::TaskFailed, None, at(4));
    let elsewhere = s.offers(&[db_offer(1, &[])], at(10));
    assert!(launched(&elsewhere).is_empty());
    assert!(
        s.why_pending("db").is_some_and(|w| w.contains("agent a0")),
        "{:?}",
        s.why_pending("db")
    );
    // The reserved resources are never used by another instance or job.
    let back = db_offer(0, &reserved);
    let again = launched(&s.offers(std::slice::from_ref(&back), at(11))).remove(0);
    assert!(again.operations.is_empty(), "nothing reserved twice");
    assert!(again.resources.contains(&volume));
    let left = s.left_of_offers();
    assert!(left[&back.id.value]
        .as_slice()
        .iter()
        .all(|r| volume_label(r).is_none()));

    // A new deploy replaces it in place: the old task goes first.
    s.update(&again.task_id, v1::TaskState::TaskRunning, None, at(12));
    s.tick(at(13));
    s.deploy(stateful("d2"), at(20)).expect("deploy");
    let kills = killed(&s.tick(at(21)));
    assert_eq!(kills, vec![again.task_id.clone()]);
    assert!(launched(&s.offers(std::slice::from_ref(&back), at(22))).is_empty());
    s.update(&again.task_id, v1::TaskState::TaskKilled, None, at(23));
    let new = launched(&s.offers(std::slice::from_ref(&back), at(24))).remove(0);
    assert_eq!(new.deploy.id, "d2");
    assert!(new.resources.contains(&volume), "same volume, same data");

    // Deleted: its volume is destroyed and the reservation released.
    s.delete("db").expect("delete");
    let actions = s.offers(std::slice::from_ref(&back), at(30));
    let ops: Vec<i32> = actions
        .iter()
        .flat_map(|a| match a {
            Action::Operations { operations, .. } => {
                operations.iter().filter_map(|o| o.r#type).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            v1::offer::operation::Type::Destroy as i32,
            v1::offer::operation::Type::Unreserve as i32
        ]
    );
}
