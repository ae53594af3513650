use super::*;
use proptest::prelude::*;

const RUNNING: i32 = v1::TaskState::TaskRunning as i32;
const STARTING: i32 = v1::TaskState::TaskStarting as i32;
const FINISHED: i32 = v1::TaskState::TaskFinished as i32;
const STAGING: i32 = v1::TaskState::TaskStaging as i32;

fn fw(id: &str, role: &str, active: bool) -> op::response::get_frameworks::Framework {
    op::response::get_frameworks::Framework {
        framework_info: v1::FrameworkInfo {
            id: Some(v1::FrameworkId { value: id.into() }),
            name: "t".into(),
            roles: vec![role.into()],
            ..Default::default()
        },
        active,
        connected: active,
        registered_time: Some(v1::TimeInfo { nanoseconds: 1 }),
        ..Default::default()
    }
}

fn agent(id: &str) -> op::response::get_agents::Agent {
    op::response::get_agents::Agent {
        agent_info: v1::AgentInfo {
            id: Some(v1::AgentId { value: id.into() }),
            hostname: "h".into(),
            ..Default::default()
        },
        active: true,
        registered_time: Some(v1::TimeInfo { nanoseconds: 7 }),
        ..Default::default()
    }
}

fn status(task: &str, state: i32, n: u8) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: v1::TaskId { value: task.into() },
        state,
        uuid: Some(vec![n, 1, 2, 3]),
        timestamp: Some(1_700_000_000.0 + f64::from(n)),
        agent_id: Some(v1::AgentId { value: "a1".into() }),
        ..Default::default()
    }
}

fn task(fid: &str, id: &str, role: &str, statuses: &[v1::TaskStatus]) -> v1::Task {
    v1::Task {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        framework_id: v1::FrameworkId { value: fid.into() },
        agent_id: v1::AgentId { value: "a1".into() },
        state: statuses.last().map(|s| s.state).unwrap_or(STAGING),
        statuses: statuses.to_vec(),
        resources: vec![v1::Resource {
            name: "cpus".into(),
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some(role.into()),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn added(t: &v1::Task) -> op::Event {
    op::Event {
        r#type: Some(op::event::Type::TaskAdded as i32),
        task_added: Some(op::event::TaskAdded { task: t.clone() }),
        ..Default::default()
    }
}

fn updated(fid: &str, s: &v1::TaskStatus) -> op::Event {
    op::Event {
        r#type: Some(op::event::Type::TaskUpdated as i32),
        task_updated: Some(op::event::TaskUpdated {
            framework_id: v1::FrameworkId { value: fid.into() },
            status: s.clone(),
            state: s.state,
        }),
        ..Default::default()
    }
}

fn snapshot(
    fws: Vec<op::response::get_frameworks::Framework>,
    agents: Vec<op::response::get_agents::Agent>,
    tasks: Vec<v1::Task>,
) -> op::response::GetState {
    let (done, live): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|t| is_terminal(t.state));
    op::response::GetState {
        get_frameworks: Some(op::response::GetFrameworks {
            frameworks: fws,
            ..Default::default()
        }),
        get_agents: Some(op::response::GetAgents {
            agents,
            ..Default::default()
        }),
        get_tasks: Some(op::response::GetTasks {
            tasks: live,
            completed_tasks: done,
            ..Default::default()
        }),
        get_executors: None,
    }
}

fn types(events: &[CloudEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}",
                e.ce_type(),
                e.object_id,
                e.state.clone().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn live_events_become_cloud_events_with_routing() {
    let mut core = Core::new("/corral", 10);
    let first = core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "analytics", true)], vec![agent("a1")], vec![]),
        1.0,
    );
    assert_eq!(
        types(&first),
        ["io.corral.framework.added:f1:", "io.corral.agent.added:a1:"]
    );
    let t = task("f1", "t1", "analytics", &[]);
    let out = core.on_event(&added(&t), 2.0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].routing_key(), "analytics.f1.task");
    assert_eq!(out[0].subject, "tasks/f1/t1");
    assert_eq!(out[0].ce_type(), "io.corral.task.added");
    let run = status("t1", RUNNING, 1);
    let out = core.on_event(&updated("f1", &run), 3.0);
    assert_eq!(types(&out), ["io.corral.task.updated:t1:TASK_RUNNING"]);
    assert_eq!(out[0].time, "2023-11-14T22:13:21.000000Z");
    assert_eq!(out[0].data["status"]["state"], "TASK_RUNNING");
    // The same update again (an agent's retry) is a duplicate.
    assert!(core.on_event(&updated("f1", &run), 4.0).is_empty());
    // A TASK_ADDED of a known task is a duplicate.
    assert!(core.on_event(&added(&t), 4.0).is_empty());
    let fin = status("t1", FINISHED, 2);
    assert_eq!(core.on_event(&updated("f1", &fin), 5.0).len(), 1);
    // Behind the published state: dropped, never reordered.
    assert!(core
        .on_event(&updated("f1", &status("t1", RUNNING, 9)), 6.0)
        .is_empty());
    // Nothing after a terminal state.
    assert!(core
        .on_event(&updated("f1", &status("t1", FINISHED, 3)), 6.0)
        .is_empty());
}

#[test]
fn an_update_of_an_unknown_task_is_announced_first() {
    let mut core = Core::new("/corral", 10);
    core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "ops", true)], vec![], vec![]),
        1.0,
    );
    let out = core.on_event(&updated("f1", &status("tx", RUNNING, 1)), 2.0);
    assert_eq!(
        types(&out),
        [
            "io.corral.task.added:tx:TASK_STAGING",
            "io.corral.task.updated:tx:TASK_RUNNING"
        ]
    );
    // The framework's role routes the task.
    assert_eq!(out[1].routing_key(), "ops.f1.task");
}

#[test]
fn the_diff_emits_missed_transitions_in_order_with_the_live_ids() {
    let statuses = [
        status("t1", STARTING, 1),
        status("t1", RUNNING, 2),
        status("t1", FINISHED, 3),
    ];
    // A core that saw everything live.
    let mut live = Core::new("/corral", 10);
    live.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", true)], vec![], vec![]),
        0.0,
    );
    let mut live_ids = Vec::new();
    for e in live.on_event(&added(&task("f1", "t1", "r", &[])), 1.0) {
        live_ids.push(e.id);
    }
    for s in &statuses {
        for e in live.on_event(&updated("f1", s), 2.0) {
            live_ids.push(e.id);
        }
    }
    // A core that saw the task added and STARTING, then lost the stream.
    let mut core = Core::new("/corral", 10);
    core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", true)], vec![], vec![]),
        0.0,
    );
    let mut ids: Vec<String> = core
        .on_event(&added(&task("f1", "t1", "r", &[])), 1.0)
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.extend(
        core.on_event(&updated("f1", &statuses[0]), 2.0)
            .into_iter()
            .map(|e| e.id),
    );
    let snap = snapshot(
        vec![fw("f1", "r", true)],
        vec![],
        vec![task("f1", "t1", "r", &statuses)],
    );
    let missed = core.on_subscribed(Some("m1"), &snap, 9.0);
    assert_eq!(
        types(&missed),
        [
            "io.corral.task.updated:t1:TASK_RUNNING",
            "io.corral.task.updated:t1:TASK_FINISHED"
        ]
    );
    ids.extend(missed.into_iter().map(|e| e.id));
    assert_eq!(ids, live_ids);
    // The same snapshot again: nothing new.
    assert!(core.on_subscribed(Some("m1"), &snap, 10.0).is_empty());
}

#[test]
fn vanished_objects_are_removed_only_by_the_same_master() {
    let mut core = Core::new("/corral", 10);
    let full = snapshot(
        vec![fw("f1", "r", true), fw("f2", "s", true)],
        vec![agent("a1"), agent("a2")],
        vec![task("f1", "t1", "r", &[status("t1", RUNNING, 1)])],
    );
    core.on_subscribed(Some("m1"), &full, 0.0);
    let partial = snapshot(vec![fw("f1", "r", true)], vec![agent("a1")], vec![]);
    // A new master (failover): agents and frameworks may re-register yet.
    let out = core.on_subscribed(Some("m2"), &partial, 1.0);
    assert!(out.is_empty(), "{:?}", types(&out));
    assert!(
        core.state().tasks.contains_key("f1/t1"),
        "a running task is kept across a failover"
    );
    // The same master again: they are gone.
    let out = core.on_subscribed(Some("m2"), &partial, 2.0);
    assert_eq!(
        types(&out),
        [
            "io.corral.agent.removed:a2:",
            "io.corral.framework.removed:f2:"
        ]
    );
    assert_eq!(out[1].routing_key(), "s.f2.framework");
    assert!(!core.state().tasks.contains_key("f1/t1"));
}

#[test]
fn framework_changes_and_completion_show_in_the_diff() {
    let mut core = Core::new("/corral", 10);
    core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", true)], vec![], vec![]),
        0.0,
    );
    let out = core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", false)], vec![], vec![]),
        1.0,
    );
    assert_eq!(types(&out), ["io.corral.framework.updated:f1:"]);
    let mut snap = snapshot(vec![], vec![], vec![]);
    if let Some(f) = snap.get_frameworks.as_mut() {
        f.completed_frameworks.push(fw("f1", "r", false));
    }
    let out = core.on_subscribed(Some("m2"), &snap, 2.0);
    assert_eq!(types(&out), ["io.corral.framework.removed:f1:"]);
}

#[test]
fn terminal_tasks_are_bounded() {
    let mut core = Core::new("/corral", 3);
    core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", true)], vec![], vec![]),
        0.0,
    );
    for i in 0..10 {
        let id = format!("t{i}");
        core.on_event(&added(&task("f1", &id, "r", &[])), 1.0);
        core.on_event(&updated("f1", &status(&id, FINISHED, i)), 1.0);
    }
    assert_eq!(core.state().tasks.len(), 3);
    assert!(core.state().tasks.contains_key("f1/t9"));
}

#[test]
fn replaying_the_published_events_rebuilds_the_state() {
    let mut core = Core::new("/corral", 100);
    let mut all = core.on_subscribed(
        Some("m1"),
        &snapshot(vec![fw("f1", "r", true)], vec![agent("a1")], vec![]),
        0.0,
    );
    all.extend(core.on_event(&added(&task("f1", "t1", "r", &[])), 1.0));
    all.extend(core.on_event(&updated("f1", &status("t1", RUNNING, 1)), 1.0));
    let mut replayed = Core::new("/corral", 100);
    for e in &all {
        replayed.apply(e);
    }
    let mut expected = core.state().clone();
    expected.master_id = None;
    assert_eq!(replayed.state(), &expected);
    // Spooled events survive a JSON round trip.
    for e in &all {
        let back: CloudEvent = serde_json::from_slice(&serde_json::to_vec(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }
}

fn lifecycle() -> impl Strategy<Value = Vec<i32>> {
    // Each task: STARTING? RUNNING (health updates: more RUNNINGs) then a
    // terminal state, or still running.
    (
        any::<bool>(),
        1usize..4,
        prop::option::of(prop::sample::select(vec![
            FINISHED,
            v1::TaskState::TaskFailed as i32,
            v1::TaskState::TaskKilled as i32,
            v1::TaskState::TaskLost as i32,
        ])),
    )
        .prop_map(|(starting, runs, end)| {
            let mut v = Vec::new();
            if starting {
                v.push(STARTING);
            }
            v.extend(std::iter::repeat_n(RUNNING, runs));
            v.extend(end);
            v
        })
}

proptest! {
    /// Whatever prefix of the live stream the publisher saw before it lost
    /// the connection (and whether it restarted from its spool), the live
    /// events it saw plus the snapshot diff plus the live events after
    /// the resubscription publish every task's transitions exactly once,
    /// in order, with the ids a publisher that saw everything would use.
    #[test]
    fn every_transition_once_in_order(
        lifecycles in prop::collection::vec(lifecycle(), 1..8),
        cut in 0usize..60,
        resume_after in 0usize..60,
        restart in any::<bool>(),
        same_master in any::<bool>(),
    ) {
        // The master's stream, task by task interleaved round robin.
        let mut stream = Vec::new();
        let mut uuid = 0u8;
        let mut per_task: Vec<Vec<v1::TaskStatus>> = Vec::new();
        for (i, l) in lifecycles.iter().enumerate() {
            let id = format!("t{i}");
            stream.push((i, added(&task("f1", &id, "r", &[]))));
            let mut sts = Vec::new();
            for &st in l {
                uuid = uuid.wrapping_add(1);
                sts.push(status(&id, st, uuid));
            }
            per_task.push(sts);
        }
        let mut pos = vec![0usize; per_task.len()];
        loop {
            let mut progressed = false;
            for (i, sts) in per_task.iter().enumerate() {
                if pos[i] < sts.len() {
                    stream.push((i, updated("f1", &sts[pos[i]])));
                    pos[i] += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        let cut = cut.min(stream.len());
        let resume = (cut + resume_after).min(stream.len());

        // Reference: everything live.
        let mut reference = Core::new("/corral", 1000);
        let fws = vec![fw("f1", "r", true)];
        let mut expected = reference.on_subscribed(Some("m1"), &snapshot(fws.clone(), vec![], vec![]), 0.0);
        for (_, e) in &stream {
            expected.extend(reference.on_event(e, 1.0));
        }

        let mut core = Core::new("/corral", 1000);
        let mut got = core.on_subscribed(Some("m1"), &snapshot(fws.clone(), vec![], vec![]), 0.0);
        for (_, e) in &stream[..cut] {
            got.extend(core.on_event(e, 1.0));
        }
        if restart {
            let mut rebuilt = Core::new("/corral", 1000);
            for e in &got {
                rebuilt.apply(e);
            }
            core = rebuilt;
        }
        // The snapshot as of `resume`: each task's history up to there.
        let mut seen: Vec<Vec<v1::TaskStatus>> = vec![Vec::new(); per_task.len()];
        let mut exists = vec![false; per_task.len()];
        for (i, e) in &stream[..resume] {
            exists[*i] = true;
            if let Some(u) = &e.task_updated {
                seen[*i].push(u.status.clone());
            }
        }
        let tasks: Vec<v1::Task> = (0..per_task.len())
            .filter(|i| exists[*i])
            .map(|i| task("f1", &format!("t{i}"), "r", &seen[i]))
            .collect();
        let master = if same_master { "m1" } else { "m2" };
        got.extend(core.on_subscribed(Some(master), &snapshot(fws, vec![], tasks), 2.0));
        for (_, e) in &stream[resume..] {
            got.extend(core.on_event(e, 3.0));
        }

        let task_ids = |v: &[CloudEvent]| -> Vec<(String, String)> {
            v.iter().filter(|e| e.kind == Kind::Task).map(|e| (e.object_id.clone(), e.id.clone())).collect()
        };
        // Per task, the same ids in the same order.
        for i in 0..per_task.len() {
            let id = format!("t{i}");
            let want: Vec<String> = task_ids(&expected).into_iter().filter(|(t, _)| *t == id).map(|(_, e)| e).collect();
            let have: Vec<String> = task_ids(&got).into_iter().filter(|(t, _)| *t == id).map(|(_, e)| e).collect();
            prop_assert_eq!(have, want, "task {}", id);
        }
    }

    /// Routing words never contain the separator or the wildcards.
    #[test]
    fn routing_words_are_single_words(value in ".{0,40}") {
        let w = crate::event::routing_word(&value);
        prop_assert!(!w.contains('.') && !w.contains('*') && !w.contains('#'));
        prop_assert!(!w.is_empty());
    }
}
