use super::*;
use corral_api::resources;

fn config(engine: Engine) -> CoreConfig {
    CoreConfig {
        name: "kafka".into(),
        role: "kafka".into(),
        principal: Some("kafka".into()),
        engine,
        volume_path: "data".into(),
        cluster_id: "kafka".into(),
    }
}

fn tansu() -> Core {
    Core::new(config(Engine::Tansu {
        binary: "/bin/tansu".into(),
    }))
}

fn allocated(mut v: Vec<v1::Resource>) -> Vec<v1::Resource> {
    for r in &mut v {
        r.allocation_info = Some(v1::resource::AllocationInfo {
            role: Some("kafka".into()),
        });
    }
    v
}

fn offer(n: u32, agent: &str, resources: Vec<v1::Resource>) -> v1::Offer {
    v1::Offer {
        id: v1::OfferId {
            value: format!("o{n}"),
        },
        framework_id: v1::FrameworkId { value: "f".into() },
        agent_id: v1::AgentId {
            value: agent.into(),
        },
        hostname: format!("host-{agent}"),
        resources,
        attributes: resources::parse_attributes("rack:r1").unwrap_or_default(),
        ..Default::default()
    }
}

fn plain(n: u32, agent: &str) -> v1::Offer {
    offer(
        n,
        agent,
        allocated(resources::parse("cpus:4;mem:4096;disk:2048;ports:[31000-31009]").expect("r")),
    )
}

fn params(pairs: &[(&str, &str)]) -> BrokerParams {
    BrokerParams::parse(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("params")
}

fn small() -> BrokerParams {
    params(&[
        ("cpus", "0.5"),
        ("mem", "256"),
        ("heap", "128"),
        ("disk", "64"),
        ("failoverDelay", "10s"),
        ("failoverMaxDelay", "40s"),
        ("failoverMaxTries", "3"),
        ("stickinessPeriod", "1m"),
    ])
}

fn op_types(ops: &[v1::offer::Operation]) -> Vec<v1::offer::operation::Type> {
    ops.iter()
        .filter_map(|o| o.r#type)
        .filter_map(|t| v1::offer::operation::Type::try_from(t).ok())
        .collect()
}

fn accepted(effects: &[Effect]) -> Vec<(String, Vec<v1::offer::Operation>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Accept {
                offer_id,
                operations,
            } => Some((offer_id.value.clone(), operations.clone())),
            _ => None,
        })
        .collect()
}

fn launched(ops: &[v1::offer::Operation]) -> Vec<v1::TaskInfo> {
    ops.iter()
        .filter_map(|o| o.launch.as_ref())
        .flat_map(|l| l.task_infos.clone())
        .collect()
}

fn update(task_id: &str, state: v1::TaskState) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: v1::TaskId {
            value: task_id.into(),
        },
        state: state as i32,
        agent_id: Some(v1::AgentId { value: "a1".into() }),
        ..Default::default()
    }
}

/// Starts broker 0 on agent a1; returns its task and resources.
fn running(core: &mut Core) -> v1::TaskInfo {
    core.add("0", &small()).expect("add");
    core.start("0").expect("start");
    let effects = core.offers(0, vec![plain(1, "a1")]);
    let acc = accepted(&effects);
    assert_eq!(acc.len(), 1, "{effects:?}");
    let task = launched(&acc[0].1).remove(0);
    core.status(
        100,
        &update(&task.task_id.value, v1::TaskState::TaskRunning),
    );
    task
}

#[test]
fn a_first_start_reserves_creates_the_volume_and_launches_in_one_accept() {
    let mut core = tansu();
    core.add("0", &small()).expect("add");
    let (_, effects) = core.start("0").expect("start");
    assert_eq!(effects, vec![Effect::Revive]);
    let effects = core.offers(0, vec![plain(1, "a1")]);
    let acc = accepted(&effects);
    assert_eq!(acc.len(), 1);
    use v1::offer::operation::Type;
    assert_eq!(
        op_types(&acc[0].1),
        [Type::Reserve, Type::Create, Type::Launch]
    );
    let reserve = acc[0].1[0].reserve.as_ref().expect("reserve");
    for r in &reserve.resources {
        let res = r.reservations.last().expect("reserved");
        assert_eq!(res.role.as_deref(), Some("kafka"));
        assert_eq!(res.principal.as_deref(), Some("kafka"));
        let labels = &res.labels.as_ref().expect("labels").labels;
        assert!(labels
            .iter()
            .any(|l| l.key == LABEL_BROKER && l.value.as_deref() == Some("0")));
    }
    for op in &acc[0].1 {
        assert!(
            corral_api::operations::conversion(op).is_ok() || op.launch.is_some(),
            "{op:?}"
        );
    }
    let task = launched(&acc[0].1).remove(0);
    assert!(task.task_id.value.starts_with("kafka-0-"));
    let vol = offers::find_volume(&task.resources, "kafka-broker-0").expect("the volume");
    assert_eq!(
        vol.disk
            .as_ref()
            .and_then(|d| d.volume.as_ref())
            .map(|v| v.container_path.as_str()),
        Some("data")
    );
    let b = &core.brokers()[&0];
    assert_eq!(b.task.as_ref().map(|t| t.state.as_str()), Some("starting"));
    assert_eq!(
        b.reservation.as_ref().map(|r| r.ports.clone()),
        Some(vec![31000])
    );
    core.status(5, &update(&task.task_id.value, v1::TaskState::TaskRunning));
    let b = &core.brokers()[&0];
    assert_eq!(b.state(5), "running");
    assert_eq!(b.endpoint(), Some("host-a1:31000"));
    assert_eq!(b.stickiness.hostname.as_deref(), Some("host-a1"));
    assert!(core.take_changed().contains(&0));
}

#[test]
fn a_restarted_broker_goes_back_to_its_volume_and_reuses_it() {
    let mut core = tansu();
    let first = running(&mut core);
    let (_, effects) = core.restart("0", 1000).expect("restart");
    assert!(effects.contains(&Effect::Kill {
        task_id: first.task_id.value.clone(),
        agent_id: Some("a1".into())
    }));
    assert_eq!(core.brokers()[&0].state(1000), "stopping");
    let effects = core.status(
        1100,
        &update(&first.task_id.value, v1::TaskState::TaskKilled),
    );
    assert_eq!(effects, vec![Effect::Revive]);
    assert_eq!(
        core.brokers()[&0].failover.failures,
        0,
        "a kill is no failure"
    );
    // Another agent offers first: the broker is sticky to a1.
    let effects = core.offers(1200, vec![plain(2, "a2")]);
    assert!(accepted(&effects).is_empty(), "{effects:?}");
    assert!(
        core.why(0).expect("why").contains("sticky"),
        "{:?}",
        core.why(0)
    );
    // a1 offers its reserved resources and the volume back.
    let mut back = first.resources.clone();
    back.extend(allocated(
        resources::parse("cpus:3;mem:1024;disk:1000;ports:[31001-31009]").expect("r"),
    ));
    let effects = core.offers(1300, vec![offer(3, "a1", back)]);
    let acc = accepted(&effects);
    use v1::offer::operation::Type;
    assert_eq!(
        op_types(&acc[0].1),
        [Type::Launch],
        "nothing reserved or created again"
    );
    let second = launched(&acc[0].1).remove(0);
    assert_ne!(second.task_id, first.task_id);
    assert_eq!(
        offers::find_volume(&second.resources, "kafka-broker-0"),
        offers::find_volume(&first.resources, "kafka-broker-0"),
        "the same volume"
    );
    assert_eq!(
        offers::ports_of(&second.resources),
        [31000],
        "the same port"
    );
}

#[test]
fn failures_back_off_exponentially_and_deactivate_after_max_tries() {
    let mut core = tansu();
    let mut task = running(&mut core);
    let mut now = 1_000;
    for (n, delay) in [(1u32, 10_000i64), (2, 20_000), (3, 40_000)] {
        let effects = core.status(now, &update(&task.task_id.value, v1::TaskState::TaskFailed));
        let b = &core.brokers()[&0];
        assert_eq!(b.failover.failures, n);
        if n == 3 {
            assert!(!b.active && b.failed, "deactivated after 3 tries");
            assert_eq!(b.state(now), "failed 3/3");
            assert!(effects.is_empty());
            let effects = core.offers(now + 1_000_000, vec![plain(9, "a1")]);
            assert!(accepted(&effects).is_empty());
            break;
        }
        assert_eq!(effects, vec![Effect::Revive]);
        assert_eq!(b.failover.delay_expires(), now + delay);
        // Offers during the delay are declined.
        let effects = core.offers(now + delay - 1, vec![plain(10 + n, "a1")]);
        assert!(accepted(&effects).is_empty(), "waiting out the delay");
        core.tick(now + delay - 1);
        assert_eq!(core.tick(now + delay), vec![Effect::Revive], "due again");
        let mut back = task.resources.clone();
        back.extend(allocated(
            resources::parse("cpus:3;mem:1024;disk:1000").expect("r"),
        ));
        let effects = core.offers(now + delay, vec![offer(20 + n, "a1", back)]);
        task = launched(&accepted(&effects)[0].1).remove(0);
        now += delay + 10;
        core.status(
            now,
            &update(&task.task_id.value, v1::TaskState::TaskRunning),
        );
        now += 10;
    }
}

#[test]
fn a_broker_running_for_its_failover_delay_ends_the_run_of_failures() {
    let mut core = tansu();
    let task = running(&mut core);
    core.status(
        1000,
        &update(&task.task_id.value, v1::TaskState::TaskFailed),
    );
    let mut back = task.resources.clone();
    back.extend(allocated(resources::parse("cpus:3;mem:1024").expect("r")));
    let effects = core.offers(11_000, vec![offer(5, "a1", back)]);
    let t2 = launched(&accepted(&effects)[0].1).remove(0);
    core.status(
        11_100,
        &update(&t2.task_id.value, v1::TaskState::TaskRunning),
    );
    core.tick(20_000);
    assert_eq!(core.brokers()[&0].failover.failures, 1);
    core.tick(21_100);
    assert_eq!(core.brokers()[&0].failover.failures, 0);
}

#[test]
fn removing_a_stopped_broker_destroys_its_volume_and_unreserves() {
    let mut core = tansu();
    let task = running(&mut core);
    let e = core.remove("0").expect_err("active");
    assert!(e.contains("active"), "{e}");
    core.stop("0", 10).expect("stop");
    assert!(core.remove("0").expect_err("stopping").contains("stopping"));
    core.status(20, &update(&task.task_id.value, v1::TaskState::TaskKilled));
    let (ids, effects) = core.remove("0").expect("removed");
    assert_eq!(ids, [0]);
    assert_eq!(effects, vec![Effect::Revive]);
    assert!(core.brokers().is_empty());
    let effects = core.offers(30, vec![offer(4, "a1", task.resources.clone())]);
    let acc = accepted(&effects);
    use v1::offer::operation::Type;
    assert_eq!(op_types(&acc[0].1), [Type::Destroy, Type::Unreserve]);
    let destroyed = &acc[0].1[0].destroy.as_ref().expect("destroy").volumes;
    assert_eq!(destroyed.len(), 1);
    let unreserved = &acc[0].1[1].unreserve.as_ref().expect("unreserve").resources;
    assert!(unreserved.iter().all(|r| !is_volume(r)));
    assert!(unreserved.iter().any(|r| r.name == "disk"));
    for op in &acc[0].1 {
        let conv = corral_api::operations::conversion(op);
        assert!(conv.is_ok(), "{conv:?}");
    }
}

/// `o` as agent `host` at `10.0.0.1:<port>` offers it.
fn at(mut o: v1::Offer, host: &str, port: i32) -> v1::Offer {
    o.hostname = host.into();
    o.url = Some(v1::Url {
        scheme: "http".into(),
        address: v1::Address {
            hostname: Some(host.into()),
            ip: Some("10.0.0.1".into()),
            port,
        },
        path: Some("/slave(1)".into()),
        ..Default::default()
    });
    o
}

/// Broker 0 running on agent a1 (`host-1`, its API on port 5051); its
/// task.
fn running_at_a1(core: &mut Core) -> v1::TaskInfo {
    core.add("0", &small()).expect("add");
    core.start("0").expect("start");
    let effects = core.offers(0, vec![at(plain(1, "a1"), "host-1", 5051)]);
    let task = launched(&accepted(&effects)[0].1).remove(0);
    core.status(
        100,
        &update(&task.task_id.value, v1::TaskState::TaskRunning),
    );
    let r = core.brokers()[&0].reservation.clone().expect("reserved");
    assert_eq!(r.agent_port, Some(5051));
    assert_eq!(r.address, "10.0.0.1");
    task
}

/// The reserved resources and volume of `task` plus some unreserved ones.
fn holding(task: &v1::TaskInfo) -> Vec<v1::Resource> {
    let mut r = task.resources.clone();
    r.extend(allocated(
        resources::parse("cpus:3;mem:1024;disk:1000;ports:[31001-31009]").expect("r"),
    ));
    r
}

#[test]
fn an_agent_back_under_a_new_id_keeps_the_brokers_volume() {
    let mut core = tansu();
    let first = running_at_a1(&mut core);
    // The agent is back at host-1:5051 as a2 (after --recover=cleanup),
    // with its checkpointed reservation and volume: they stay the
    // broker's, and its task on a1 is gone with a1 (a failure).
    let effects = core.offers(
        1_000,
        vec![at(offer(2, "a2", holding(&first)), "host-1", 5051)],
    );
    assert!(
        accepted(&effects).is_empty(),
        "nothing destroyed: {effects:?}"
    );
    assert!(effects.contains(&Effect::Revive), "{effects:?}");
    let b = &core.brokers()[&0];
    assert!(b.task.is_none());
    assert_eq!(b.failover.failures, 1);
    assert_eq!(
        b.reservation.as_ref().map(|r| r.agent_id.as_str()),
        Some("a2")
    );
    assert!(core.take_changed().contains(&0));
    // After its failover delay it starts there again, on the same volume.
    let effects = core.offers(
        11_000,
        vec![at(offer(3, "a2", holding(&first)), "host-1", 5051)],
    );
    let acc = accepted(&effects);
    use v1::offer::operation::Type;
    assert_eq!(op_types(&acc[0].1), [Type::Launch], "{effects:?}");
    let second = launched(&acc[0].1).remove(0);
    assert_eq!(second.agent_id.value, "a2");
    assert_eq!(
        offers::find_volume(&second.resources, "kafka-broker-0"),
        offers::find_volume(&first.resources, "kafka-broker-0"),
        "the same volume"
    );
}

#[test]
fn a_volume_left_on_an_agent_elsewhere_is_released() {
    let mut core = tansu();
    let first = running_at_a1(&mut core);
    // The same volume offered by an agent at another place (another
    // port, another host): not the broker's agent; released.
    for (n, host, port) in [(2, "host-1", 5052), (3, "host-2", 5051)] {
        let effects = core.offers(1_000, vec![at(offer(n, "a9", holding(&first)), host, port)]);
        let acc = accepted(&effects);
        use v1::offer::operation::Type;
        assert_eq!(
            op_types(&acc[0].1),
            [Type::Destroy, Type::Unreserve],
            "{effects:?}"
        );
        let b = &core.brokers()[&0];
        assert_eq!(
            b.reservation.as_ref().map(|r| r.agent_id.as_str()),
            Some("a1")
        );
        assert_eq!(
            b.task.as_ref().map(|t| t.id.as_str()),
            Some(first.task_id.value.as_str())
        );
    }
}

#[test]
fn bad_commands_change_nothing() {
    let mut core = tansu();
    core.add("0..1", &small()).expect("add");
    core.take_changed();
    let before = core.brokers().clone();
    assert!(core
        .add("1..2", &small())
        .expect_err("exists")
        .contains("broker 1 already exists"));
    assert!(core
        .update("7", &small())
        .expect_err("unknown")
        .contains("broker 7 not found"));
    assert!(core
        .start("0,9")
        .expect_err("unknown")
        .contains("broker 9 not found"));
    assert!(core.stop("x", 0).expect_err("bad").starts_with("broker:"));
    assert!(core.add("*", &small()).is_err());
    let heap = params(&[("heap", "100000")]);
    assert!(core
        .update("*", &heap)
        .expect_err("heap")
        .starts_with("heap"));
    assert_eq!(core.brokers(), &before);
    assert!(core.take_changed().is_empty());
}

#[test]
fn unique_hostnames_spread_brokers_over_agents() {
    let mut core = tansu();
    let mut p = small();
    p.constraints = Some([("hostname".to_string(), "unique".to_string())].into());
    core.add("0..2", &p).expect("add");
    core.start("*").expect("start");
    let effects = core.offers(0, vec![plain(1, "a1"), plain(2, "a2")]);
    assert_eq!(accepted(&effects).len(), 2, "one broker per agent");
    let waiting: Vec<u32> = core
        .brokers()
        .values()
        .filter(|b| b.task.is_none())
        .map(|b| b.id)
        .collect();
    assert_eq!(waiting, [2]);
    assert!(
        core.why(2).expect("why").contains("UNIQUE"),
        "{:?}",
        core.why(2)
    );
    let effects = core.offers(1, vec![plain(3, "a3")]);
    assert_eq!(accepted(&effects).len(), 1);
    let hosts: BTreeSet<String> = core
        .brokers()
        .values()
        .filter_map(|b| b.task.as_ref().map(|t| t.hostname.clone()))
        .collect();
    assert_eq!(hosts.len(), 3);
}

#[test]
fn several_brokers_share_one_offer_on_distinct_ports() {
    let mut core = tansu();
    core.add("0..2", &small()).expect("add");
    core.start("0..2").expect("start");
    let effects = core.offers(0, vec![plain(1, "a1")]);
    let acc = accepted(&effects);
    assert_eq!(acc.len(), 1);
    let tasks = launched(&acc[0].1);
    assert_eq!(tasks.len(), 3);
    let ports: BTreeSet<u64> = tasks
        .iter()
        .flat_map(|t| offers::ports_of(&t.resources))
        .collect();
    assert_eq!(ports.len(), 3);
}

#[test]
fn a_port_range_is_honoured() {
    let mut core = tansu();
    let mut p = small();
    p.port = Some(Some(crate::expr::PortRange::parse("31005").expect("port")));
    core.add("0", &p).expect("add");
    core.start("0").expect("start");
    let effects = core.offers(0, vec![plain(1, "a1")]);
    let task = launched(&accepted(&effects)[0].1).remove(0);
    assert_eq!(offers::ports_of(&task.resources), [31005]);
    let mut q = small();
    q.port = Some(Some(crate::expr::PortRange::parse("40000").expect("port")));
    core.add("1", &q).expect("add");
    core.start("1").expect("start");
    core.offers(1, vec![plain(2, "a2")]);
    assert!(core.why(1).expect("why").contains("no free port in 40000"));
}

#[test]
fn unknown_tasks_are_killed() {
    let mut core = tansu();
    let effects = core.status(0, &update("stray", v1::TaskState::TaskRunning));
    assert_eq!(
        effects,
        vec![Effect::Kill {
            task_id: "stray".into(),
            agent_id: Some("a1".into())
        }]
    );
    assert!(core
        .status(0, &update("stray", v1::TaskState::TaskLost))
        .is_empty());
}

#[test]
fn adopted_brokers_are_reconciled_and_keep_their_tasks() {
    let mut core = tansu();
    let task = running(&mut core);
    let stored: Vec<Broker> = core.brokers().values().cloned().collect();
    let mut again = tansu();
    let tasks = again.import(stored);
    assert_eq!(
        tasks,
        vec![(task.task_id.value.clone(), Some("a1".to_string()))]
    );
    let effects = again.status(5, &update(&task.task_id.value, v1::TaskState::TaskRunning));
    assert!(effects.is_empty());
    assert_eq!(again.brokers()[&0].state(5), "running");
    assert!(!again.waiting(5));
}

#[test]
fn kafka_brokers_launch_once_the_controller_quorum_is_placed() {
    let mut core = Core::new(config(Engine::KafkaTarball {
        uri: "http://x/kafka.tgz".into(),
        home: "kafka".into(),
    }));
    let mut p = small();
    p.constraints = Some([("hostname".to_string(), "unique".to_string())].into());
    core.add("0..1", &p).expect("add");
    core.start("0..1").expect("start");
    let effects = core.offers(0, vec![plain(1, "a1")]);
    let acc = accepted(&effects);
    use v1::offer::operation::Type;
    assert_eq!(
        op_types(&acc[0].1),
        [Type::Reserve, Type::Create],
        "reserved, not launched"
    );
    assert!(core.why(0).expect("why").contains("quorum"));
    let reserved: Vec<v1::Resource> = acc[0].1[0]
        .reserve
        .as_ref()
        .map(|r| r.resources.clone())
        .unwrap_or_default();
    assert_eq!(
        offers::ports_of(&reserved).len(),
        2,
        "client and controller ports"
    );
    // a2 comes: broker 1 is placed; both launch with the whole quorum.
    let mut back: Vec<v1::Resource> = reserved
        .iter()
        .filter(|r| r.name != "disk")
        .cloned()
        .collect();
    let create = acc[0].1[1].create.as_ref().expect("create");
    back.extend(create.volumes.clone());
    let effects = core.offers(1, vec![offer(2, "a1", back), plain(3, "a2")]);
    let acc = accepted(&effects);
    let tasks: Vec<v1::TaskInfo> = acc.iter().flat_map(|(_, ops)| launched(ops)).collect();
    assert_eq!(tasks.len(), 2);
    for t in tasks {
        let s = t.command.and_then(|c| c.value).unwrap_or_default();
        assert!(
            s.contains("controller.quorum.voters=0@host-a1:31001,1@host-a2:31001"),
            "{s}"
        );
    }
}
