//! The frameworks SDK's scheduler client against real `corral master` and
//! `corral agent` processes: subscribe (protobuf and JSON), take resources
//! from an offer, launch, acknowledge, reconcile, kill, decline with a
//! filter, suppress and revive; a master that stops answering is noticed by
//! missed heartbeats and the driver re-subscribes with the same FrameworkID;
//! so it does after the master is killed and restarted.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{allocation_role, take, Need};
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerConfig, SchedulerEvent};
use corral_tests::{Cluster, ClusterOptions, TIMEOUT};
use tokio::sync::mpsc;

/// The next event matching `pick`, skipping others; panics on timeout.
async fn next_where(
    rx: &mut mpsc::Receiver<SchedulerEvent>,
    what: &str,
    pick: impl Fn(&SchedulerEvent) -> bool,
) -> SchedulerEvent {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pick(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the driver stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {TIMEOUT:?}"),
        }
    }
}

async fn offers(rx: &mut mpsc::Receiver<SchedulerEvent>) -> Vec<v1::Offer> {
    match next_where(
        rx,
        "offers",
        |e| matches!(e, SchedulerEvent::Offers(o) if !o.is_empty()),
    )
    .await
    {
        SchedulerEvent::Offers(o) => o,
        _ => unreachable!(),
    }
}

/// Waits for `task` to reach `state`, acknowledging every update on the
/// way (the agent sends the next only once the last is acknowledged).
async fn update(
    rx: &mut mpsc::Receiver<SchedulerEvent>,
    s: &Scheduler,
    task: &str,
    state: v1::TaskState,
) -> v1::TaskStatus {
    let what = format!("{task} {}", state.as_str_name());
    loop {
        let status = match next_where(
            rx,
            &what,
            |e| matches!(e, SchedulerEvent::Update(st) if st.task_id.value == task),
        )
        .await
        {
            SchedulerEvent::Update(st) => st,
            _ => unreachable!(),
        };
        if status.state == state as i32 {
            return status;
        }
        s.acknowledge(&status).await.expect("acknowledge");
    }
}

fn launch(offer: &v1::Offer, task_id: &str, cmd: &str) -> v1::offer::Operation {
    let role_resources: Vec<v1::Resource> = offer
        .resources
        .iter()
        .filter(|r| allocation_role(r) == "*")
        .cloned()
        .collect();
    let (resources, _) = take(
        &Resources::from_vec(&role_resources),
        &Need {
            cpus: 0.1,
            mem: 32.0,
            disk: 0.0,
            ports: 1,
        },
    )
    .expect("the offer fits the task");
    v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Launch as i32),
        launch: Some(v1::offer::operation::Launch {
            task_infos: vec![v1::TaskInfo {
                name: task_id.to_string(),
                task_id: v1::TaskId {
                    value: task_id.to_string(),
                },
                agent_id: offer.agent_id.clone(),
                resources,
                command: Some(v1::CommandInfo {
                    shell: Some(true),
                    value: Some(cmd.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

async fn subscribed(rx: &mut mpsc::Receiver<SchedulerEvent>) -> (String, bool) {
    match next_where(rx, "SUBSCRIBED", |e| {
        matches!(e, SchedulerEvent::Subscribed { .. })
    })
    .await
    {
        SchedulerEvent::Subscribed {
            framework_id,
            resubscribed,
            ..
        } => (framework_id, resubscribed),
        _ => unreachable!(),
    }
}

async fn launch_ack_reconcile_kill(encoding: Encoding) {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut config = SchedulerConfig::new(c.master.clone(), framework_info("sdk", &["*"], None));
    config.encoding = encoding;
    let (s, mut rx) = Scheduler::start(config).expect("start the driver");
    let (fid, resubscribed) = subscribed(&mut rx).await;
    assert!(!resubscribed);
    assert_eq!(s.framework_id().as_deref(), Some(fid.as_str()));

    let offer = offers(&mut rx).await.remove(0);
    s.accept(
        vec![offer.id.clone()],
        vec![launch(&offer, "t1", "sleep 60")],
        Some(0.0),
    )
    .await
    .expect("accept");
    let running = update(&mut rx, &s, "t1", v1::TaskState::TaskRunning).await;
    assert!(
        s.acknowledge(&running).await.expect("acknowledge"),
        "an agent's update carries a uuid"
    );

    // Explicit reconciliation: the master answers from its own knowledge,
    // without a uuid (nothing to acknowledge).
    s.reconcile(vec![("t1".into(), Some(offer.agent_id.value.clone()))])
        .await
        .expect("reconcile");
    let answer = match next_where(&mut rx, "the reconciliation answer", |e| {
        matches!(e, SchedulerEvent::Update(st) if st.task_id.value == "t1"
            && st.reason == Some(v1::task_status::Reason::Reconciliation as i32))
    })
    .await
    {
        SchedulerEvent::Update(st) => st,
        _ => unreachable!(),
    };
    assert_eq!(answer.state, v1::TaskState::TaskRunning as i32);
    assert!(!s.acknowledge(&answer).await.expect("no-op"));

    s.kill("t1", Some(&offer.agent_id.value), None)
        .await
        .expect("kill");
    let killed = update(&mut rx, &s, "t1", v1::TaskState::TaskKilled).await;
    s.acknowledge(&killed).await.expect("acknowledge");

    // Decline for a long time, suppress; revive brings offers back.
    let again = offers(&mut rx).await;
    s.decline(again.iter().map(|o| o.id.clone()).collect(), Some(3600.0))
        .await
        .expect("decline");
    s.suppress(vec![]).await.expect("suppress");
    s.revive(vec![]).await.expect("revive");
    let revived = offers(&mut rx).await;
    assert_eq!(revived[0].agent_id, offer.agent_id);

    // A call the master refuses says why.
    let mut bad = killed.clone();
    bad.uuid = Some(b"not-16-bytes".to_vec());
    let e = s
        .acknowledge(&bad)
        .await
        .expect_err("a malformed uuid is refused");
    assert!(
        e.to_string().contains("refused") && e.to_string().contains("uuid"),
        "{e}"
    );

    s.teardown().await.expect("teardown");
    let gone = c.get_json("/master/frameworks").await;
    assert_eq!(
        gone["frameworks"].as_array().map(Vec::len),
        Some(0),
        "{gone}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_acknowledges_reconciles_and_kills_over_protobuf() {
    launch_ack_reconcile_kill(Encoding::Protobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_acknowledges_reconciles_and_kills_over_json() {
    launch_ack_reconcile_kill(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_heartbeats_and_a_master_restart_lead_to_resubscription_with_the_same_id() {
    let registry = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(ClusterOptions {
        master_flags: vec![
            "--heartbeat_interval=1secs".into(),
            format!("--work_dir={}", registry.path().display()),
        ],
        ..Default::default()
    })
    .await;
    let mut config = SchedulerConfig::new(c.master.clone(), framework_info("sdk-hb", &["*"], None));
    config.missed_heartbeats = 2;
    config.backoff = (Duration::from_millis(100), Duration::from_secs(1));
    let (s, mut rx) = Scheduler::start(config).expect("start the driver");
    let (fid, _) = subscribed(&mut rx).await;

    // A master that stops answering (SIGSTOP) is noticed within two
    // heartbeat intervals, not when TCP gives up.
    let pid = nix::unistd::Pid::from_raw(c.master_pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop the master");
    let started = tokio::time::Instant::now();
    let reason = match next_where(&mut rx, "Disconnected", |e| {
        matches!(e, SchedulerEvent::Disconnected { .. })
    })
    .await
    {
        SchedulerEvent::Disconnected { reason } => reason,
        _ => unreachable!(),
    };
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continue the master");
    assert!(reason.contains("missed heartbeats"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "noticed after {:?}",
        started.elapsed()
    );
    let (again, resubscribed) = subscribed(&mut rx).await;
    assert!(resubscribed);
    assert_eq!(again, fid, "the same FrameworkID");

    // kill -9 and restart of the master: the stream breaks, the driver
    // subscribes again to the restarted master with the same id.
    c.restart_master().await;
    let (after_restart, resubscribed) = subscribed(&mut rx).await;
    assert!(resubscribed);
    assert_eq!(after_restart, fid);
    assert!(
        !offers(&mut rx).await.is_empty(),
        "offers after the restart"
    );
    s.stop();
}

/// The SDK's example framework (`frameworks/sdk/examples/sleepers.rs`, built
/// with the workspace's other targets next to the corral binary) runs its
/// tasks to completion and tears down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_framework_runs_its_tasks_and_tears_down() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let example = corral_tests::corral_bin()
        .parent()
        .expect("the binary's directory")
        .join("examples/sleepers");
    assert!(
        example.is_file(),
        "{} is missing: cargo build --workspace --all-targets builds it",
        example.display()
    );
    let out = tokio::time::timeout(
        TIMEOUT * 3,
        tokio::process::Command::new(&example)
            .args([
                "--master",
                &c.master,
                "--tasks",
                "3",
                "--command",
                "echo hi",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the example finishes")
    .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 3 task(s) finished"), "{stdout}");
    for i in 0..3 {
        assert!(
            stdout.contains(&format!("sleeper-{i} TASK_FINISHED")),
            "{stdout}"
        );
    }
    let frameworks = c.get_json("/master/frameworks").await;
    assert_eq!(frameworks["frameworks"].as_array().map(Vec::len), Some(0));
}
