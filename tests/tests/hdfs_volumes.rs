//! HDFS-backed persistent volumes end to end (cargo feature `hdfs` of this
//! crate; the agents must be built with `--features hdfs`: scripts/test.sh
//! builds them and sets CORRAL_BIN).
//!
//! No NameNode can be downloaded here: the agents run Hadoop's own client
//! (libhdfs over JNI, jars from pyspark) against a `file:///` volume root,
//! the same client and FileSystem calls without a NameNode.
//!
//! A task writes into an HDFS-backed volume on agent A; while A lives,
//! agent B cannot open the volume (its CREATE fails naming A); A is killed
//! for good and its work dir deleted; once A's lease expires the framework
//! creates the same volume on B and a task there reads the same bytes;
//! DESTROY on B destroys the stored data. The workloads framework's
//! stateful service and a Spark job (the dispatcher's PySpark word count)
//! keep their data on such a volume.
#![cfg(feature = "hdfs")]

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::spark::{wordcount_py, Dispatcher};
use corral_tests::{
    command_task, corral_bin, default_framework_info, wait_for, Cluster, ClusterOptions, Scheduler,
    TIMEOUT,
};
use serde_json::{json, Value};

const ROLE: &str = "db";
const LEASE: &str = "4secs";

/// Agents with HDFS-backed volumes in `store` (Hadoop's client on
/// `file:///`), a short lease, and write-backs only when a task ends.
fn hdfs_agent_flags(store: &std::path::Path) -> Vec<String> {
    vec![
        format!("--hdfs_volume_root=file://{}/volumes", store.display()),
        format!("--hdfs_lease_timeout={LEASE}"),
        "--hdfs_writeback_interval=10mins".into(),
    ]
}

fn framework() -> Value {
    let mut f = default_framework_info("hdfs-volumes");
    f["roles"] = json!([ROLE]);
    f["principal"] = json!("ops");
    f["checkpoint"] = json!(true);
    f["capabilities"] = json!([{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]);
    f
}

/// Disk reserved for the role with the label that asks for HDFS.
fn hdfs_disk(mb: f64) -> Value {
    json!({"name": "disk", "type": "SCALAR", "scalar": {"value": mb},
           "reservations": [{"type": "DYNAMIC", "role": ROLE, "principal": "ops",
                             "labels": {"labels": [{"key": "corral.storage/backend", "value": "hdfs"}]}}]})
}

fn hdfs_volume(id: &str, mb: f64) -> Value {
    let mut v = hdfs_disk(mb);
    v["disk"] = json!({
        "persistence": {"id": id, "principal": "ops"},
        "volume": {"container_path": "data", "mode": "RW"},
    });
    v
}

fn op(kind: &str, id: &str, body: Value) -> Value {
    let mut o = json!({"type": kind, "id": {"value": id}});
    o[kind.to_ascii_lowercase()] = body;
    o
}

fn task_with(id: &str, agent_id: &str, cmd: &str, volume: &Value) -> Value {
    let mut t = command_task(id, agent_id, cmd, 0.1, 32.0);
    t["resources"]
        .as_array_mut()
        .expect("resources")
        .push(volume.clone());
    t
}

/// The final status of operation `id` (acknowledged when it has a uuid).
async fn operation_outcome(s: &mut Scheduler, id: &str) -> Value {
    loop {
        let ev = s
            .events
            .wait(TIMEOUT, |e| {
                e["type"] == "UPDATE_OPERATION_STATUS"
                    && e["update_operation_status"]["status"]["operation_id"]["value"] == id
            })
            .await
            .unwrap_or_else(|e| panic!("no UPDATE_OPERATION_STATUS of {id}: {e}"));
        let st = ev["update_operation_status"]["status"].clone();
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

/// Declines offers until one from `agent_id` satisfies `pick`.
async fn offer_where(s: &mut Scheduler, agent_id: &str, pick: impl Fn(&Value) -> bool) -> Value {
    s.offer_where(&format!("a suitable offer from agent {agent_id}"), |o| {
        o["agent_id"]["value"] == agent_id && pick(o)
    })
    .await
}

fn find(offer: &Value, pick: impl Fn(&Value) -> bool) -> Option<&Value> {
    offer["resources"].as_array()?.iter().find(|r| pick(r))
}

fn is_volume(r: &Value, id: &str) -> bool {
    r["disk"]["persistence"]["id"] == id
}

fn is_hdfs_reserved_disk(r: &Value) -> bool {
    r["name"] == "disk"
        && r["disk"]["persistence"].is_null()
        && r["reservations"][0]["labels"]["labels"][0]["value"] == "hdfs"
}

/// Runs `make(volume)` on an offer of `agent_id` holding the volume and
/// follows it to TASK_FINISHED.
async fn run_on_volume(
    s: &mut Scheduler,
    agent_id: &str,
    id: &str,
    task_id: &str,
    make: impl Fn(&Value) -> Value,
) {
    let offer = offer_where(s, agent_id, |o| find(o, |r| is_volume(r, id)).is_some()).await;
    let v = find(&offer, |r| is_volume(r, id)).expect("volume").clone();
    s.launch(&offer, vec![make(&v)]).await;
    s.follow(task_id, "TASK_FINISHED").await;
}

async fn agent_volumes(c: &Cluster, endpoint_url: &str) -> Value {
    c.http
        .get(endpoint_url)
        .send()
        .await
        .expect("agent /volumes")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hdfs_backed_volume_comes_back_on_another_agent() {
    assert!(
        std::env::var_os("CORRAL_BIN").is_some(),
        "the HDFS end-to-end tests need a corral binary built with HDFS support: run \
         scripts/test.sh, or `cargo build -p corral-cli --features hdfs` and set CORRAL_BIN to it \
         (with the environment of `eval \"$(scripts/hadoop-env.sh)\"`)"
    );
    let store = tempfile::Builder::new()
        .prefix("corral-hdfs-store-")
        .tempdir()
        .expect("store dir");
    let mut c = Cluster::start(ClusterOptions {
        agents: 2,
        agent_flags: hdfs_agent_flags(store.path()),
        ..Default::default()
    })
    .await;
    let (a, b) = (c.agents[0].clone(), c.agents[1].clone());
    let mut s = c.subscribe_with(Encoding::Json, framework()).await;

    // On A: RESERVE (labelled for HDFS), CREATE, and a task that writes
    // random bytes and their checksum.
    let offer = offer_where(&mut s, &a.id, |_| true).await;
    let writer = task_with(
        "writer",
        &a.id,
        "head -c 200000 /dev/urandom > data/blob && cd data && sha256sum blob > blob.sha256 \
         && mkdir -p dir && echo nested > dir/file",
        &hdfs_volume("hv", 64.0),
    );
    s.accept(
        &offer,
        json!([
            op("RESERVE", "reserve-a", json!({"resources": [hdfs_disk(64.0)]})),
            op("CREATE", "create-a", json!({"volumes": [hdfs_volume("hv", 64.0)]})),
            {"type": "LAUNCH", "launch": {"task_infos": [writer]}},
        ]),
    )
    .await;
    for id in ["reserve-a", "create-a"] {
        let st = operation_outcome(&mut s, id).await;
        assert_eq!(
            st["state"],
            "OPERATION_FINISHED",
            "{id}: {st}\n{}",
            c.agent_log(0)
        );
    }
    s.follow("writer", "TASK_FINISHED").await;
    let checksum = std::fs::read_to_string(
        a.work_dir
            .join("volumes/roles")
            .join(ROLE)
            .join("hv/blob.sha256"),
    )
    .expect("the writer's checksum in A's volume");

    // The task's end wrote the volume back (A's /volumes says so).
    let url = a.url("/volumes");
    let written = wait_for(Duration::from_secs(30), || async {
        agent_volumes(&c, &url).await["hdfs"][0]["writebacks"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    assert!(
        written,
        "no write-back after the task ended\n{}",
        c.agent_log(0)
    );
    let v = agent_volumes(&c, &url).await;
    assert_eq!(v["hdfs"][0]["lease"]["holder"], a.id.as_str(), "{v}");
    assert!(
        v["hdfs"][0]["last_writeback"]["stats"]["bytes"].as_u64() >= Some(200_000),
        "{v}"
    );

    // While A lives, B cannot open the volume: its CREATE fails naming A.
    let offer = offer_where(&mut s, &b.id, |_| true).await;
    s.accept(
        &offer,
        json!([
            op(
                "RESERVE",
                "reserve-b",
                json!({"resources": [hdfs_disk(64.0)]})
            ),
            op(
                "CREATE",
                "create-b-while-a-lives",
                json!({"volumes": [hdfs_volume("hv", 64.0)]})
            ),
        ]),
    )
    .await;
    let st = operation_outcome(&mut s, "reserve-b").await;
    assert_eq!(st["state"], "OPERATION_FINISHED", "{st}");
    let st = operation_outcome(&mut s, "create-b-while-a-lives").await;
    assert_eq!(st["state"], "OPERATION_FAILED", "{st}");
    let message = st["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&a.id),
        "the refusal names the holder: {st}"
    );

    // A is lost for good: killed, its work dir deleted.
    c.kill_agent(0);
    std::fs::remove_dir_all(&a.work_dir).expect("remove A's work dir");

    // Once A's lease expires B opens the volume (the framework retries its
    // CREATE), restoring what A wrote back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut attempt = 0;
    loop {
        attempt += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never opened the volume\n{}",
            c.agent_log(1)
        );
        let offer = offer_where(&mut s, &b.id, |o| find(o, is_hdfs_reserved_disk).is_some()).await;
        let id = format!("create-b-{attempt}");
        s.accept(
            &offer,
            json!([op(
                "CREATE",
                &id,
                json!({"volumes": [hdfs_volume("hv", 64.0)]})
            )]),
        )
        .await;
        let st = operation_outcome(&mut s, &id).await;
        if st["state"] == "OPERATION_FINISHED" {
            break;
        }
        let message = st["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("leased"),
            "only A's live lease may refuse it: {st}"
        );
    }

    // The task on B reads the same bytes.
    let expected = checksum.clone();
    run_on_volume(&mut s, &b.id, "hv", "reader", |v| {
        task_with(
            "reader",
            &b.id,
            &format!(
                "cd data && sha256sum -c blob.sha256 && test \"$(cat blob.sha256)\" = '{}' \
                 && test \"$(cat dir/file)\" = nested",
                expected.trim()
            ),
            v,
        )
    })
    .await;

    // DESTROY on B destroys the stored data: the same volume created again
    // is empty.
    let offer = offer_where(&mut s, &b.id, |o| find(o, |r| is_volume(r, "hv")).is_some()).await;
    let v = find(&offer, |r| is_volume(r, "hv"))
        .expect("volume")
        .clone();
    s.accept(
        &offer,
        json!([op("DESTROY", "destroy-b", json!({"volumes": [v]}))]),
    )
    .await;
    let st = operation_outcome(&mut s, "destroy-b").await;
    assert_eq!(st["state"], "OPERATION_FINISHED", "{st}");
    let offer = offer_where(&mut s, &b.id, |o| find(o, is_hdfs_reserved_disk).is_some()).await;
    s.accept(
        &offer,
        json!([op(
            "CREATE",
            "create-again",
            json!({"volumes": [hdfs_volume("hv", 64.0)]})
        )]),
    )
    .await;
    let st = operation_outcome(&mut s, "create-again").await;
    assert_eq!(st["state"], "OPERATION_FINISHED", "{st}");
    run_on_volume(&mut s, &b.id, "hv", "empty-reader", |v| {
        task_with("empty-reader", &b.id, "test -z \"$(ls -A data)\"", v)
    })
    .await;
}

/// The workloads framework's stateful services on an HDFS-backed volume
/// (`persistentVolume.backend: hdfs`): the reservation carries the HDFS
/// label, the instance's data reaches the HDFS store when its task ends,
/// and the next deploy's task finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_workloads_service_keeps_its_data_in_hdfs() {
    let store = tempfile::Builder::new()
        .prefix("corral-hdfs-store-")
        .tempdir()
        .expect("store dir");
    let c = Cluster::start(ClusterOptions {
        agent_flags: hdfs_agent_flags(store.path()),
        ..Default::default()
    })
    .await;
    let log = c.dir().join("workloads.log");
    let f = corral_tests::workloads::Framework::spawn(
        &c.master,
        &[format!("--role={ROLE}"), "--principal=ops".to_string()],
        &log,
    );
    assert!(f.subscribed().await);
    let (status, body) = f
        .post(
            "/api/requests",
            json!({"id": "kv", "requestType": "WORKER"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deploy = |id: &str| {
        json!({"deploy": {"requestId": "kv", "id": id,
            "command": "echo $TASK_DEPLOY_ID >> data/history && exec sleep 300",
            "resources": {"cpus": 0.1, "memoryMb": 32},
            "persistentVolume": {"containerPath": "data", "sizeMb": 32, "backend": "hdfs"}}})
    };
    let running = |deploy: &'static str| {
        let f = &f;
        async move {
            let t = f.tasks_of("kv").await;
            t.len() == 1 && t[0]["taskId"]["deployId"] == deploy && t[0]["healthy"] == true
        }
    };
    let (status, body) = f.post("/api/deploys", deploy("d1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(TIMEOUT * 2, || running("d1")).await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The reservation asks for HDFS.
    let slaves = c.get_json("/master/slaves").await;
    assert!(
        slaves.to_string().contains("corral.storage/backend"),
        "{slaves}"
    );
    // d2 replaces the instance in place: d1's task ends (its volume is
    // written back to the store), d2's finds d1's line. The write-back on
    // a task's end runs in the background, so d2 may already have added
    // its own line when the store copies the volume: d1's line must be
    // there, first.
    let (status, body) = f.post("/api/deploys", deploy("d2")).await;
    assert_eq!(status, 200, "{body}");
    assert!(wait_for(TIMEOUT * 2, || running("d2")).await);
    let stored = || corral_tests::files_under(store.path());
    assert!(
        wait_for(TIMEOUT, || async {
            stored().iter().any(|p| {
                p.to_string_lossy().contains("wl-kv-1")
                    && std::fs::read_to_string(p).is_ok_and(|t| t == "d1\n" || t == "d1\nd2\n")
            })
        })
        .await,
        "the store holds d1's data: {:?}",
        stored()
            .iter()
            .map(|p| (
                p.clone(),
                std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned())
            ))
            .collect::<Vec<_>>()
    );
    let history = c.agents[0]
        .work_dir
        .join("volumes/roles")
        .join(ROLE)
        .join("wl-kv-1/history");
    assert!(
        wait_for(TIMEOUT, || async {
            std::fs::read_to_string(&history).is_ok_and(|h| h == "d1\nd2\n")
        })
        .await,
        "{:?}",
        std::fs::read_to_string(&history)
    );
}

/// A Spark job (the dispatcher's PySpark word count, real Spark 4.3) on an
/// HDFS-backed volume: the operator reserves disk labelled for HDFS and
/// creates the volume, the job's driver reads its input there and writes
/// its counts back, and when the driver's task ends the counts reach the
/// HDFS store through Hadoop's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spark_job_reads_and_writes_an_hdfs_backed_volume() {
    let store = tempfile::Builder::new()
        .prefix("corral-hdfs-store-")
        .tempdir()
        .expect("store dir");
    let c = Cluster::start(ClusterOptions {
        agents: 1,
        agent_resources: Some("cpus:8;mem:16384;disk:2048;ports:[26500-26999]".into()),
        agent_flags: hdfs_agent_flags(store.path()),
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].clone();
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent.id}, "resources": [hdfs_disk(64.0)]}}))
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = c
        .operator(json!({"type": "CREATE_VOLUMES", "create_volumes": {
            "agent_id": {"value": agent.id}, "volumes": [hdfs_volume("words", 64.0)]}}))
        .await;
    assert!(status.is_success(), "{body}\n{}", c.agent_log(0));
    // Written into once the agent has opened it (restored from the store).
    let on_disk = agent
        .work_dir
        .join("volumes/roles")
        .join(ROLE)
        .join("words");
    let volumes = agent_volumes(&c, &agent.url("/volumes")).await;
    assert!(
        wait_for(TIMEOUT, || async {
            agent_volumes(&c, &agent.url("/volumes")).await["hdfs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|e| e.to_string().contains("\"words\"")))
        })
        .await
            && on_disk.is_dir(),
        "the agent never opened the volume: {volumes}\n{}",
        c.agent_log(0)
    );
    std::fs::create_dir_all(on_disk.join("in")).expect("dir");
    std::fs::write(
        on_disk.join("in/a.txt"),
        "hdfs volumes keep\nspark output\n",
    )
    .expect("write");

    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &[format!("--roles={ROLE}")]).await;
    let out = tokio::process::Command::new(corral_bin())
        .args(["spark", "submit", &format!("--dispatcher={}", d.url)])
        .args(["--role", ROLE, "--conf", "spark.corral.driver.volume=words"])
        .args(["--driver-memory", "512m", "--executor-memory", "512m"])
        .args([
            "--num-executors",
            "1",
            "--env",
            "PYSPARK_PYTHON=python3",
            "--wait",
        ])
        .arg(wordcount_py())
        .args(["data/in", "data/out/counts.tsv"])
        .output()
        .await
        .expect("corral spark submit runs");
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    let expected = "hdfs\t1\nkeep\t1\noutput\t1\nspark\t1\nvolumes\t1\n";
    assert_eq!(
        std::fs::read_to_string(on_disk.join("out/counts.tsv")).expect("counts on the volume"),
        expected
    );
    // The driver's task ended: the volume was written back to the store.
    assert!(
        wait_for(TIMEOUT, || async {
            corral_tests::files_under(store.path())
                .iter()
                .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t == expected))
        })
        .await,
        "the counts never reached the HDFS store: {:?}",
        corral_tests::files_under(store.path())
    );
}
