//! Checkpointing and recovery across `kill -9` of the agent: a
//! checkpointing framework's task keeps running with the same pid, the
//! agent keeps its AgentID and re-registers, the executor reconnects, and
//! the task's final TASK_FINISHED reaches the framework exactly once. A
//! non-checkpointing framework's task is killed and reported. A corrupt
//! checkpoint: `--strict` refuses to start naming the file; otherwise the
//! agent recovers what it can and reports the rest lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, default_framework_info, require_cgroups, wait_for, Cluster, ClusterOptions,
    Scheduler,
};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn options() -> ClusterOptions {
    ClusterOptions {
        agent_flags: vec![
            "--isolation=cgroups/cpu,cgroups/mem".into(),
            format!("--cgroups_root={}", corral_tests::unique_cgroups_root()),
            // Executors retry every <= 5 s; give them room on a busy machine.
            "--executor_reregistration_timeout=10secs".into(),
        ],
        ..Default::default()
    }
}

async fn checkpointing(c: &Cluster, name: &str) -> Scheduler {
    let mut info = default_framework_info(name);
    info["checkpoint"] = json!(true);
    c.subscribe_with(Encoding::Json, info).await
}

/// A task that writes its pid and runs until the file `done` appears.
fn waiting_task(id: &str, agent_id: &str) -> Value {
    command_task(
        id,
        agent_id,
        "echo $$ > pid; while [ ! -f done ]; do sleep 0.1; done; echo finished",
        0.1,
        32.0,
    )
}

async fn read_pid(sandbox: &Path) -> i32 {
    let file = sandbox.join("pid");
    let ok = wait_for(LONG, || {
        let f = file.clone();
        async move {
            std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .is_some()
        }
    })
    .await;
    assert!(ok, "the task wrote {}", file.display());
    std::fs::read_to_string(&file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

async fn executor_pid(c: &Cluster, endpoint: &str) -> Option<u64> {
    let v: Value = c
        .http
        .post(format!("http://{endpoint}/api/v1"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(r#"{"type":"GET_CONTAINERS"}"#)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["get_containers"]["containers"][0]["container_status"]["executor_pid"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_keeps_the_task_running_and_finished_arrives_once() {
    require_cgroups();
    let mut c = Cluster::start(options()).await;
    let mut s = checkpointing(&c, "checkpointing").await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(&offer, vec![waiting_task("keep", &agent.id)])
        .await;
    s.follow("keep", "TASK_RUNNING").await;
    let fid = s.framework_id.clone();
    let sandbox = agent.sandbox(&fid, "keep");
    let pid = read_pid(&sandbox).await;
    let exec_pid = executor_pid(&c, &agent.endpoint)
        .await
        .expect("executor pid");

    c.kill_agent(0);
    assert!(alive(pid), "the task outlives the agent");
    c.restart_agent(0, &[]).await;

    // Same AgentID: the master still has exactly this agent, registered again.
    let state = c.state_json().await;
    let agents = state["get_agents"]["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(agents.len(), 1, "{state}");
    assert_eq!(agents[0]["agent_info"]["id"]["value"], agent.id.as_str());
    // The executor reconnected to the new agent process.
    let ok = wait_for(LONG, || async {
        let v: Value = match c.http.get(agent.url("/metrics/snapshot")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        v["slave/executors_running"].as_f64() == Some(1.0)
    })
    .await;
    assert!(ok, "the executor re-subscribed\n{}", c.logs());
    assert!(alive(pid), "the task still runs after the restart");
    assert_eq!(
        read_pid(&sandbox).await,
        pid,
        "the task was not started again"
    );
    assert_eq!(executor_pid(&c, &agent.endpoint).await, Some(exec_pid));
    let tasks = c.state_json().await["get_tasks"]["tasks"].clone();
    assert_eq!(tasks[0]["state"], "TASK_RUNNING", "{tasks}");

    // Let it finish: TASK_FINISHED reaches the framework, and only once.
    std::fs::write(sandbox.join("done"), b"").expect("done file");
    let finished = s.follow("keep", "TASK_FINISHED").await;
    assert_eq!(
        finished.last().map(|f| f["state"].clone()),
        Some(json!("TASK_FINISHED"))
    );
    let later = s.events.drain(Duration::from_secs(2)).await;
    let again: Vec<&Value> = later
        .iter()
        .filter(|e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == "keep"
                && e["update"]["status"]["state"] == "TASK_FINISHED"
        })
        .collect();
    assert!(
        again.is_empty(),
        "TASK_FINISHED was delivered again: {again:?}"
    );
    assert!(
        std::fs::read_to_string(sandbox.join("stdout"))
            .unwrap_or_default()
            .contains("finished"),
        "the same task process finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_updates_are_resent_and_other_frameworks_tasks_are_killed() {
    require_cgroups();
    let mut c = Cluster::start(options()).await;
    let agent = c.agents[0].clone();

    // A non-checkpointing framework's task.
    let mut plain = c.subscribe(Encoding::Json).await;
    let offer = plain.offers().await.remove(0);
    plain
        .launch(&offer, vec![waiting_task("plain", &agent.id)])
        .await;
    plain.follow("plain", "TASK_RUNNING").await;
    // The rest of the agent goes to the other framework.
    let rest = plain.offers().await;
    plain.decline(&rest, 3600.0).await;
    let plain_pid = read_pid(&agent.sandbox(&plain.framework_id, "plain")).await;

    // A checkpointing framework's task whose last update is not acknowledged.
    let mut s = checkpointing(&c, "checkpointing").await;
    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![waiting_task("quick", &agent.id)])
        .await;
    let sandbox = agent.sandbox(&s.framework_id, "quick");
    s.follow("quick", "TASK_RUNNING").await;
    std::fs::write(sandbox.join("done"), b"").expect("done file");
    let first = s.update("quick", "TASK_FINISHED").await;
    // Not acknowledged: the agent keeps it (checkpointed) and must resend it.
    c.kill_agent(0);
    c.restart_agent(0, &[]).await;

    let again = s.update("quick", "TASK_FINISHED").await;
    assert_eq!(again["uuid"], first["uuid"], "the same update is resent");
    s.acknowledge(&again).await;

    // The other framework's task was killed and is reported.
    let ok = wait_for(LONG, || async move { !alive(plain_pid) }).await;
    assert!(ok, "the non-checkpointing task was killed\n{}", c.logs());
    let last = plain
        .events
        .wait(LONG, |e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == "plain"
                && matches!(
                    e["update"]["status"]["state"].as_str(),
                    Some("TASK_LOST" | "TASK_FAILED" | "TASK_KILLED" | "TASK_GONE")
                )
        })
        .await
        .unwrap_or_else(|e| panic!("the killed task is reported: {e}\n{}", c.logs()));
    assert!(last["update"]["status"]["state"].is_string());
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().and_then(|n| n.to_str()) == Some(name) {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_strict_refuses_lenient_reports_the_task_lost() {
    require_cgroups();
    let mut c = Cluster::start(options()).await;
    let mut s = checkpointing(&c, "checkpointing").await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(&offer, vec![waiting_task("doomed", &agent.id)])
        .await;
    s.follow("doomed", "TASK_RUNNING").await;
    let pid = read_pid(&agent.sandbox(&s.framework_id, "doomed")).await;

    c.kill_agent(0);
    // Half of the task's checkpoint, as a crash mid-write would leave it
    // without the atomic rename.
    let meta = agent.work_dir.join("meta");
    let file = find_file(&meta, "task.info").expect("a task checkpoint");
    let whole = std::fs::read(&file).expect("read checkpoint");
    std::fs::write(&file, &whole[..whole.len() / 2]).expect("truncate checkpoint");

    let (status, log) = c
        .restart_agent_expect_exit(0, &["--strict=true".into()], LONG)
        .await;
    assert!(!status.success(), "a strict agent refuses to start");
    assert!(
        log.contains(&file.display().to_string()),
        "the error names the file {}:\n{log}",
        file.display()
    );

    c.restart_agent(0, &["--strict=false".into()]).await;
    let lost = s
        .events
        .wait(LONG, |e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == "doomed"
                && e["update"]["status"]["state"] == "TASK_LOST"
        })
        .await
        .unwrap_or_else(|e| panic!("the unrecoverable task is reported lost: {e}\n{}", c.logs()));
    let message = lost["update"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("could not recover"), "{message}");
    // Its container is destroyed rather than left running unaccounted.
    let ok = wait_for(LONG, || async move { !alive(pid) }).await;
    assert!(ok, "the unrecoverable task's container is destroyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_that_does_not_reconnect_is_killed_after_the_reregistration_timeout() {
    require_cgroups();
    let mut c = Cluster::start(options()).await;
    let mut s = checkpointing(&c, "checkpointing").await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(&offer, vec![waiting_task("stuck", &agent.id)])
        .await;
    s.follow("stuck", "TASK_RUNNING").await;
    let pid = read_pid(&agent.sandbox(&s.framework_id, "stuck")).await;
    let exec_pid = executor_pid(&c, &agent.endpoint)
        .await
        .expect("executor pid") as i32;

    c.kill_agent(0);
    // A frozen executor cannot re-subscribe.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec_pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP the executor");
    c.restart_agent(0, &["--executor_reregistration_timeout=1secs".into()])
        .await;
    let failed = s.follow("stuck", "TASK_FAILED").await;
    let failed = failed.last().cloned().unwrap_or_default();
    assert_eq!(
        failed["reason"], "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        "{failed}"
    );
    // The whole container went: the executor and its task.
    let ok = wait_for(LONG, || async move { !alive(pid) && !alive(exec_pid) }).await;
    assert!(ok, "the executor and its task were killed\n{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_cleanup_kills_the_previous_run_and_exits() {
    require_cgroups();
    let mut c = Cluster::start(options()).await;
    let mut s = checkpointing(&c, "checkpointing").await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(&offer, vec![waiting_task("old", &agent.id)]).await;
    s.follow("old", "TASK_RUNNING").await;
    let pid = read_pid(&agent.sandbox(&s.framework_id, "old")).await;

    c.kill_agent(0);
    assert!(alive(pid));
    let (status, log) = c
        .restart_agent_expect_exit(0, &["--recover=cleanup".into()], LONG)
        .await;
    assert!(status.success(), "cleanup exits cleanly:\n{log}");
    let ok = wait_for(LONG, || async move { !alive(pid) }).await;
    assert!(ok, "the previous run's task was killed");
    assert!(
        !agent.work_dir.join("meta/slaves/latest").exists(),
        "the checkpoint is removed: the next start is a new agent"
    );
}
