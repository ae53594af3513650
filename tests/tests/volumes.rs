//! Persistent volumes end to end, on real master and agent processes: a
//! framework RESERVEs disk for its role, CREATEs a volume on it and LAUNCHes
//! a task that writes into it; the task ends, its sandbox is garbage
//! collected, and the volume is offered again to the role with its
//! persistence id; a second task reads the data; the same after `kill -9` of
//! the agent and its restart on the same work dir; the same with Docker
//! tasks; a read-only volume refuses writes; DESTROY removes the data; an
//! agent restarted with `--resources` that no longer hold its reservation
//! refuses to start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, default_framework_info, require_docker_image, wait_for, Cluster, ClusterOptions,
    Scheduler, TIMEOUT,
};
use serde_json::{json, Value};

const ROLE: &str = "web";

fn framework() -> Value {
    let mut f = default_framework_info("volumes");
    f["roles"] = json!([ROLE]);
    f["principal"] = json!("ops");
    f["checkpoint"] = json!(true);
    f["capabilities"] = json!([{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]);
    f
}

fn reservation() -> Value {
    json!([{"type": "DYNAMIC", "role": ROLE, "principal": "ops"}])
}

fn reserved_disk(mb: f64) -> Value {
    json!({"name": "disk", "type": "SCALAR", "scalar": {"value": mb},
           "reservations": reservation()})
}

fn volume(id: &str, mb: f64, container_path: &str, mode: &str) -> Value {
    let mut v = reserved_disk(mb);
    v["disk"] = json!({
        "persistence": {"id": id, "principal": "ops"},
        "volume": {"container_path": container_path, "mode": mode},
    });
    v
}

fn op(kind: &str, id: &str, body: Value) -> Value {
    let mut o = json!({"type": kind, "id": {"value": id}});
    let field = kind.to_ascii_lowercase();
    o[field] = body;
    o
}

/// A command task using `volume` (a resource as offered).
fn task_with(id: &str, agent_id: &str, cmd: &str, volume: &Value) -> Value {
    let mut t = command_task(id, agent_id, cmd, 0.1, 32.0);
    t["resources"]
        .as_array_mut()
        .expect("resources")
        .push(volume.clone());
    t
}

/// The next UPDATE_OPERATION_STATUS of operation `id`.
async fn operation_status(s: &mut Scheduler, id: &str) -> Value {
    let ev = s
        .events
        .wait(TIMEOUT, |e| {
            e["type"] == "UPDATE_OPERATION_STATUS"
                && e["update_operation_status"]["status"]["operation_id"]["value"] == id
        })
        .await
        .unwrap_or_else(|e| panic!("no UPDATE_OPERATION_STATUS of {id}: {e}"));
    ev["update_operation_status"]["status"].clone()
}

/// Waits for the operation's final status (skipping OPERATION_PENDING) and
/// acknowledges it.
async fn operation_outcome(s: &mut Scheduler, id: &str) -> Value {
    loop {
        let st = operation_status(s, id).await;
        if st["state"] == "OPERATION_PENDING" {
            continue;
        }
        if st.get("uuid").is_some() {
            s.call_ok(json!({
                "type": "ACKNOWLEDGE_OPERATION_STATUS",
                "acknowledge_operation_status": {
                    "agent_id": st["agent_id"].clone(),
                    "uuid": st["uuid"]["value"].clone(),
                    "operation_id": st["operation_id"].clone(),
                }
            }))
            .await;
        }
        return st;
    }
}

fn volume_in(offer: &Value, persistence_id: &str) -> Option<Value> {
    offer["resources"]
        .as_array()?
        .iter()
        .find(|r| r["disk"]["persistence"]["id"] == persistence_id)
        .cloned()
}

/// Declines offers until one from `agent_id` satisfies `pick`.
async fn offer_where(s: &mut Scheduler, agent_id: &str, pick: impl Fn(&Value) -> bool) -> Value {
    s.offer_where(&format!("a suitable offer from agent {agent_id}"), |o| {
        o["agent_id"]["value"] == agent_id && pick(o)
    })
    .await
}

/// An offer from `agent_id` holding the volume; returns it and the volume.
async fn offer_with_volume(
    s: &mut Scheduler,
    agent_id: &str,
    persistence_id: &str,
) -> (Value, Value) {
    let offer = offer_where(s, agent_id, |o| volume_in(o, persistence_id).is_some()).await;
    let v = volume_in(&offer, persistence_id).expect("volume in offer");
    (offer, v)
}

/// Launches the task `make(volume)` on an offer holding the volume and
/// follows it to TASK_FINISHED. An offer that went stale meanwhile (the
/// agent restarted after it was made: TASK_LOST with REASON_INVALID_OFFERS)
/// is replaced by the next one.
async fn run_on_volume(
    s: &mut Scheduler,
    agent_id: &str,
    persistence_id: &str,
    task_id: &str,
    make: impl Fn(&Value) -> Value,
) {
    loop {
        let (offer, v) = offer_with_volume(s, agent_id, persistence_id).await;
        s.launch(&offer, vec![make(&v)]).await;
        let first = s.next_update(task_id).await;
        if first["state"] == "TASK_LOST" && first["reason"] == "REASON_INVALID_OFFERS" {
            continue;
        }
        assert!(
            first["state"] != "TASK_FAILED" && first["state"] != "TASK_ERROR",
            "{task_id}: {first}"
        );
        s.acknowledge(&first).await;
        if first["state"] != "TASK_FINISHED" {
            s.follow(task_id, "TASK_FINISHED").await;
        }
        return;
    }
}

fn volume_dir(work_dir: &Path, persistence_id: &str) -> PathBuf {
    work_dir
        .join("volumes")
        .join("roles")
        .join(ROLE)
        .join(persistence_id)
}

/// RESERVE 64 MB of disk and CREATE `persistence_id` on it from `offer`,
/// then LAUNCH `task` in the same ACCEPT; both operations must finish.
async fn reserve_create_launch(
    s: &mut Scheduler,
    offer: &Value,
    persistence_id: &str,
    mode: &str,
    task: Value,
) {
    let vol = volume(persistence_id, 64.0, "data", mode);
    s.accept(
        offer,
        json!([
            op("RESERVE", "reserve-1", json!({"resources": [reserved_disk(64.0)]})),
            op("CREATE", "create-1", json!({"volumes": [vol]})),
            {"type": "LAUNCH", "launch": {"task_infos": [task]}},
        ]),
    )
    .await;
    for id in ["reserve-1", "create-1"] {
        let st = operation_outcome(s, id).await;
        assert_eq!(st["state"], "OPERATION_FINISHED", "{id}: {st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_outlives_its_task_its_sandbox_and_an_agent_restart() {
    let mut c = Cluster::start(ClusterOptions {
        agent_flags: vec![
            "--gc_delay=1secs".into(),
            "--executor_reregistration_timeout=5secs".into(),
        ],
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].clone();
    let mut s = c.subscribe_with(Encoding::Json, framework()).await;
    let offer = s.offers().await.remove(0);

    // RESERVE -> CREATE -> LAUNCH a task writing into the volume.
    let writer = volume("vol1", 64.0, "data", "RW");
    let task = task_with(
        "writer",
        &agent.id,
        "echo written-by-the-first-task > data/file && test -f data/file",
        &writer,
    );
    reserve_create_launch(&mut s, &offer, "vol1", "RW", task).await;
    s.follow("writer", "TASK_FINISHED").await;
    let data = volume_dir(&agent.work_dir, "vol1");
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap_or_default(),
        "written-by-the-first-task\n",
        "the data is in the volume's directory\n{}",
        c.agent_log(0)
    );

    // The finished task's sandbox is garbage collected; the volume mounted
    // into it keeps its data.
    let sandbox = std::fs::canonicalize(agent.sandbox(&s.framework_id, "writer")).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || async { !sandbox.exists() }).await,
        "the sandbox was not garbage collected\n{}",
        c.agent_log(0)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap_or_default(),
        "written-by-the-first-task\n"
    );

    // The volume is offered again to the role, with its persistence id, and
    // a second task reads what the first wrote.
    let (offer, v) = offer_with_volume(&mut s, &agent.id, "vol1").await;
    assert_eq!(v["reservations"][0]["role"], ROLE, "{v}");
    assert_eq!(v["disk"]["volume"]["container_path"], "data", "{v}");
    let reader = task_with(
        "reader",
        &agent.id,
        "test \"$(cat data/file)\" = written-by-the-first-task",
        &v,
    );
    s.launch(&offer, vec![reader]).await;
    s.follow("reader", "TASK_FINISHED").await;

    // kill -9 of the agent, restart on the same work dir: the agent reports
    // its volume to the master again, and a third task reads the data.
    c.kill_agent(0);
    c.restart_agent(0, &[]).await;
    run_on_volume(&mut s, &agent.id, "vol1", "reader-after-restart", |v| {
        task_with(
            "reader-after-restart",
            &agent.id,
            "test \"$(cat data/file)\" = written-by-the-first-task && echo more >> data/file",
            v,
        )
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap_or_default(),
        "written-by-the-first-task\nmore\n"
    );
    let state: Value = c
        .http
        .get(agent.url("/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reserved = state["reserved_resources_full"][ROLE]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        reserved
            .iter()
            .any(|r| r["disk"]["persistence"]["id"] == "vol1"),
        "the agent reports its volume: {state}"
    );

    // DESTROY removes the data; the reserved disk is offered without it.
    let (offer, v) = offer_with_volume(&mut s, &agent.id, "vol1").await;
    s.accept(
        &offer,
        json!([op("DESTROY", "destroy-1", json!({"volumes": [v]}))]),
    )
    .await;
    let st = operation_outcome(&mut s, "destroy-1").await;
    assert_eq!(st["state"], "OPERATION_FINISHED", "{st}");
    assert!(!data.exists(), "DESTROY removed the volume's data");
    let offer = offer_where(&mut s, &agent.id, |o| {
        o["resources"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["name"] == "disk" && r["reservations"][0]["role"] == ROLE)
        })
    })
    .await;
    assert!(volume_in(&offer, "vol1").is_none(), "{offer}");

    // The agent's disk reservation is checkpointed: restarted with less
    // disk than is reserved, it refuses to start, naming the flag.
    c.kill_agent(0);
    let (status, log) = c
        .restart_agent_expect_exit(
            0,
            &["--resources=cpus:2;mem:1024;disk:32;ports:[31000-31099]".into()],
            Duration::from_secs(30),
        )
        .await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("incompatible --resources") && log.contains("resources.info"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_volume_refuses_writes_and_a_volume_in_use_is_not_destroyed() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].clone();
    let mut s = c.subscribe_with(Encoding::Json, framework()).await;
    let offer = s.offers().await.remove(0);

    // A read-only volume: the task sees it, and cannot write to it.
    let ro = volume("ro1", 64.0, "data", "RO");
    let task = task_with(
        "ro-writer",
        &agent.id,
        "test -d data && if echo x > data/f; then exit 0; else exit 3; fi",
        &ro,
    );
    reserve_create_launch(&mut s, &offer, "ro1", "RO", task).await;
    let updates = s.follow("ro-writer", "TASK_FAILED").await;
    let failed = updates.last().unwrap();
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or("")
            .contains("status 3"),
        "the write failed inside the task: {failed}"
    );
    assert!(!volume_dir(&agent.work_dir, "ro1").join("f").exists());

    // A long task holds the volume; DESTROY of it is refused.
    let (offer, v) = offer_with_volume(&mut s, &agent.id, "ro1").await;
    s.launch(
        &offer,
        vec![task_with("holder", &agent.id, "exec sleep 300", &v)],
    )
    .await;
    s.follow("holder", "TASK_RUNNING").await;
    let offer = offer_where(&mut s, &agent.id, |_| true).await;
    s.accept(
        &offer,
        json!([op("DESTROY", "destroy-in-use", json!({"volumes": [v]}))]),
    )
    .await;
    let st = operation_outcome(&mut s, "destroy-in-use").await;
    assert_ne!(st["state"], "OPERATION_FINISHED", "{st}");
    assert!(
        st["message"].as_str().unwrap_or("").contains("in use"),
        "{st}"
    );
    assert!(volume_dir(&agent.work_dir, "ro1").is_dir());
    s.call_ok(json!({"type": "KILL", "kill": {"task_id": {"value": "holder"}}}))
        .await;
    s.follow("holder", "TASK_KILLED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_tasks_use_a_volume_and_its_data_outlives_them() {
    let image = require_docker_image();
    let c = Cluster::start(ClusterOptions {
        agent_flags: vec!["--containerizers=docker,mesos".into()],
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].clone();
    let mut s = c.subscribe_with(Encoding::Json, framework()).await;
    let offer = s.offers().await.remove(0);
    let docker = |mut t: Value| {
        t["container"] = json!({
            "type": "DOCKER",
            "docker": {"image": image, "network": "NONE", "force_pull_image": false},
        });
        t
    };

    // The volume's relative container_path is under the sandbox's mount
    // point in the container.
    let vol = volume("dvol", 64.0, "data", "RW");
    let writer = docker(task_with(
        "docker-writer",
        &agent.id,
        "echo from-docker > /mnt/mesos/sandbox/data/file",
        &vol,
    ));
    reserve_create_launch(&mut s, &offer, "dvol", "RW", writer).await;
    s.follow("docker-writer", "TASK_FINISHED").await;
    let data = volume_dir(&agent.work_dir, "dvol");
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap_or_default(),
        "from-docker\n",
        "{}",
        c.agent_log(0)
    );

    // A second Docker task reads it; so does a task without a container.
    let (offer, v) = offer_with_volume(&mut s, &agent.id, "dvol").await;
    let reader = docker(task_with(
        "docker-reader",
        &agent.id,
        "test \"$(cat /mnt/mesos/sandbox/data/file)\" = from-docker",
        &v,
    ));
    s.launch(&offer, vec![reader]).await;
    s.follow("docker-reader", "TASK_FINISHED").await;
    let (offer, v) = offer_with_volume(&mut s, &agent.id, "dvol").await;
    let host_reader = task_with(
        "host-reader",
        &agent.id,
        "test \"$(cat data/file)\" = from-docker",
        &v,
    );
    s.launch(&offer, vec![host_reader]).await;
    s.follow("host-reader", "TASK_FINISHED").await;
}
