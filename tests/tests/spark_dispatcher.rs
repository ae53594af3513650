//! The Spark dispatcher (`corral spark-dispatcher`) end to end: real Spark
//! 4.3 (the distribution inside pyspark), a real master and agents, the
//! unmodified `spark-submit` and `corral spark`. Each application runs as
//! Corral tasks: its driver (`spark-submit --deploy-mode client`), a Spark
//! standalone master and one worker per executor.
//!
//! The tests take a lock so that one runs at a time: each starts four or
//! more JVMs, and the machine has two cores.

use std::time::Duration;

use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::spark::{
    pi_jar, spark_docker_image, spark_submit_async, spark_tarball, submission_id, wordcount_py,
    Dispatcher,
};
use corral_tests::{corral_bin, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

/// How long a Spark application may take (JVMs on two busy cores).
const LONG: Duration = Duration::from_secs(180);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One agent with room for a few applications, ports below the ephemeral
/// range.
async fn cluster(resources: &str, first_port: u32) -> Cluster {
    Cluster::start(ClusterOptions {
        agents: 1,
        agent_resources: Some(format!(
            "{resources};ports:[{first_port}-{}]",
            first_port + 499
        )),
        ..Default::default()
    })
    .await
}

/// Small applications: 512 MB JVMs, one executor unless said.
fn small(extra: &[(&str, &str)]) -> Vec<String> {
    let mut conf = vec![
        ("spark.driver.memory", "512m"),
        ("spark.executor.memory", "512m"),
        ("spark.executor.instances", "1"),
    ];
    conf.extend_from_slice(extra);
    conf.iter()
        .flat_map(|(k, v)| ["--conf".to_string(), format!("{k}={v}")])
        .collect()
}

/// `spark-submit --deploy-mode cluster` of the Pi jar; the submission id.
async fn submit_pi(d: &Dispatcher, conf: &[(&str, &str)], args: &[&str]) -> String {
    submit_pi_with(d, &[], conf, args).await
}

/// The same with spark-submit's own `flags` (`--supervise`: spark-submit
/// sets `spark.driver.supervise` from it, over any `--conf`).
async fn submit_pi_with(
    d: &Dispatcher,
    flags: &[&str],
    conf: &[(&str, &str)],
    args: &[&str],
) -> String {
    submit_pi_to(d.spark_master(), flags, conf, args).await
}

/// The same to `master` (`spark://a:port,b:port` for several dispatchers).
async fn submit_pi_to(
    master: String,
    flags: &[&str],
    conf: &[(&str, &str)],
    args: &[&str],
) -> String {
    let mut a: Vec<String> = vec![
        "--master".into(),
        master,
        "--deploy-mode".into(),
        "cluster".into(),
        "--conf".into(),
        "spark.master.rest.enabled=true".into(),
        "--class".into(),
        "corral.CorralPi".into(),
    ];
    a.extend(small(conf));
    a.extend(flags.iter().map(|f| f.to_string()));
    a.push(format!("file://{}", pi_jar().display()));
    a.extend(args.iter().map(|s| s.to_string()));
    let (ok, out) = spark_submit_async(a).await;
    assert!(ok, "spark-submit failed:\n{out}");
    assert!(
        out.contains("Submission successfully created as driver-"),
        "{out}"
    );
    submission_id(&out).expect("a submission id")
}

/// `spark-submit --status <id>`: the driverState it printed.
async fn spark_status(d: &Dispatcher, id: &str) -> String {
    let (ok, out) = spark_submit_async(vec![
        "--master".into(),
        d.spark_master(),
        "--conf".into(),
        "spark.master.rest.enabled=true".into(),
        "--status".into(),
        id.into(),
    ])
    .await;
    assert!(ok, "spark-submit --status failed:\n{out}");
    let at = out.find("\"driverState\" : \"").map(|i| i + 17);
    let state: String = at
        .map(|i| out[i..].chars().take_while(|c| *c != '"').collect())
        .unwrap_or_default();
    assert!(
        !state.is_empty(),
        "spark-submit --status printed no state:\n{out}"
    );
    state
}

/// The dispatcher's tasks the master has, by id: state.
async fn tasks(c: &Cluster) -> Vec<(String, String)> {
    let v = c.get_json("/master/tasks?limit=-1").await;
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or("").to_string(),
                t["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The dispatcher framework's resources in use (cpus) per the master.
async fn used_cpus(c: &Cluster) -> f64 {
    let v = c.get_json("/master/frameworks").await;
    v["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "corral-spark-dispatcher")
        .map(|f| f["used_resources"]["cpus"].as_f64().unwrap_or(0.0))
        .sum()
}

/// Waits until the dispatcher holds no resources (every task released).
async fn released(c: &Cluster) {
    assert!(
        wait_for(LONG, || async { used_cpus(c).await == 0.0 }).await,
        "{:?}",
        tasks(c).await
    );
}

/// `kill -9` of a process, reaped.
async fn kill_9(child: &mut tokio::process::Child) {
    let pid = child.id().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let _ = child.wait().await;
}

async fn corral(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(corral_bin())
        .args(args)
        .output()
        .await
        .expect("corral runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_submit_runs_a_jvm_pi_to_finished_with_its_output_in_the_sandbox() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster("cpus:8;mem:16384;disk:1024", 23000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &[]).await;
    // Slices, then seconds to stay up after the estimate (so RUNNING is
    // seen by --status).
    let id = submit_pi(&d, &[], &["4", "25"]).await;
    let running = d.wait_state(&id, "RUNNING", LONG).await;
    assert_eq!(spark_status(&d, &id).await, "RUNNING");
    // Its driver, master and worker run as tasks of the role.
    let ui = running["uiUrl"]
        .as_str()
        .expect("a Spark UI link")
        .to_string();
    assert_eq!(running["cluster"].as_array().map(Vec::len), Some(2));
    let mine: Vec<(String, String)> = tasks(&c)
        .await
        .into_iter()
        .filter(|(t, _)| t.starts_with(&id))
        .collect();
    assert_eq!(mine.len(), 3, "{mine:?}");
    // The driver's Spark UI answers on its offered port.
    let http = reqwest::Client::new();
    assert!(
        wait_for(LONG, || async {
            http.get(&ui)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await,
        "the Spark UI at {ui} did not answer"
    );
    // The dispatcher's own pages in a real browser: the running driver
    // with a link to its Spark UI, and its page; the master links to the
    // pages (webui_url).
    let web = Browser::start().await.expect("browser");
    web.open(&format!("{}/ui", d.url))
        .await
        .expect("drivers page");
    let text = web.main_text().await.expect("text");
    assert!(text.contains(&id) && text.contains("RUNNING"), "{text}");
    let link = web
        .eval("return document.querySelector('a[aria-label^=\"Spark UI of\"]').href")
        .await
        .expect("a Spark UI link");
    assert_eq!(
        link.as_str().map(|l| l.trim_end_matches('/')),
        Some(ui.trim_end_matches('/')),
        "{link}"
    );
    web.screenshot("spark-drivers", DESKTOP)
        .await
        .expect("shot");
    web.screenshot("spark-drivers", PHONE).await.expect("shot");
    web.open(&format!("{}/ui/drivers/{id}", d.url))
        .await
        .expect("driver page");
    let text = web.main_text().await.expect("text");
    assert!(
        text.contains(&format!("Driver {id}"))
            && text.contains("RUNNING")
            && text.contains(".master"),
        "{text}"
    );
    web.screenshot("spark-driver", DESKTOP).await.expect("shot");
    web.screenshot("spark-driver", PHONE).await.expect("shot");
    let webui = format!("{}/ui", d.url);
    assert!(
        c.has_framework_webui(&webui).await,
        "no framework with webui_url {webui}"
    );
    web.mark_page().await.expect("mark the page");
    // The estimate is in the driver's stdout (corral spark logs).
    let dispatcher_flag = format!("--dispatcher={}", d.url);
    assert!(
        wait_for(LONG, || async {
            corral(&["spark", "logs", &dispatcher_flag, &id])
                .await
                .1
                .contains("Pi is roughly 3.1")
        })
        .await,
        "no estimate in the driver's stdout:\n{}",
        corral(&["spark", "logs", "--stderr", &dispatcher_flag, &id])
            .await
            .1
    );
    let done = d.wait_state(&id, "FINISHED", LONG).await;
    assert_eq!(spark_status(&d, &id).await, "FINISHED");
    assert_eq!(done["attempts"], 1);
    // The open page follows it to FINISHED without a reload.
    web.wait_for_text("FINISHED", Duration::from_secs(20))
        .await
        .expect("FINISHED on the open page");
    web.assert_not_reloaded().await.expect("updated in place");
    web.quit().await.expect("quit the browser");
    // Its master and worker are released with it.
    assert!(
        wait_for(LONG, || async {
            tasks(&c)
                .await
                .iter()
                .filter(|(t, _)| t.starts_with(&id))
                .all(|(_, s)| s == "TASK_FINISHED" || s == "TASK_KILLED")
                && used_cpus(&c).await == 0.0
        })
        .await,
        "the application's tasks were not all released: {:?}",
        tasks(&c).await
    );
    // corral spark list shows it with its final state.
    let (ok, out) = corral(&["spark", "list", &dispatcher_flag]).await;
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&id) && l.contains("FINISHED")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_supervise_a_full_queue_and_bad_input() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster("cpus:8;mem:16384;disk:1024", 23500).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &["--max_drivers=1".into()]).await;

    // --kill ends a running job; its resources come back.
    let id = submit_pi(&d, &[], &["2", "600"]).await;
    d.wait_state(&id, "RUNNING", LONG).await;
    assert!(used_cpus(&c).await > 2.0);
    let (ok, out) = spark_submit_async(vec![
        "--master".into(),
        d.spark_master(),
        "--conf".into(),
        "spark.master.rest.enabled=true".into(),
        "--kill".into(),
        id.clone(),
    ])
    .await;
    assert!(ok && out.contains("\"success\" : true"), "{out}");
    d.wait_state(&id, "KILLED", LONG).await;
    released(&c).await;

    // --supervise relaunches a driver that exits non-zero, with backoff.
    let sup = submit_pi_with(&d, &["--supervise"], &[], &["fail"]).await;
    assert!(
        wait_for(LONG, || async {
            d.driver(&sup).await["attempts"].as_u64().unwrap_or(0) >= 2
        })
        .await,
        "the supervised driver was not relaunched: {}\n{}",
        d.driver(&sup).await,
        d.log_text()
    );
    let seen = d.driver(&sup).await;
    assert_ne!(seen["state"], "FAILED", "{seen}");
    let (ok, _) = corral(&["spark", "kill", &format!("--dispatcher={}", d.url), &sup]).await;
    assert!(ok);
    d.wait_state(&sup, "KILLED", LONG).await;

    // A full queue refuses (one waiting driver at most here: this one asks
    // for more executors than the cluster has, so it waits).
    let big = submit_pi(&d, &[("spark.executor.instances", "40")], &["2"]).await;
    assert_eq!(d.driver(&big).await["state"], "SUBMITTED");
    assert!(
        wait_for(LONG, || async {
            d.driver(&big).await["whyPending"]
                .as_str()
                .is_some_and(|w| w.contains("40 worker"))
        })
        .await,
        "{}",
        d.driver(&big).await
    );
    let before = d.get("/api/drivers").await.1;
    let body = json!({
        "action": "CreateSubmissionRequest", "appResource": format!("file://{}", pi_jar().display()),
        "mainClass": "corral.CorralPi", "appArgs": ["2"], "clientSparkVersion": "4.3.0",
        "environmentVariables": {}, "sparkProperties": {"spark.app.name": "refused"}});
    let (status, text) = d
        .post_raw("/v1/submissions/create", body.to_string().into_bytes())
        .await;
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((status, v["success"].clone()), (200, json!(false)), "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue is full")),
        "{v}"
    );

    // Bad input: Spark's answers, and nothing changes.
    for (body, want) in [
        (b"{not json".to_vec(), 400),
        (
            json!({"action": "CreateSubmissionRequest", "mainClass": "X", "clientSparkVersion": "4.3.0",
                   "appArgs": [], "environmentVariables": {}, "sparkProperties": {"spark.app.name": "x"}})
            .to_string()
            .into_bytes(),
            400,
        ),
        (vec![b' '; 2 << 20], 413),
    ] {
        let (status, text) = d.post_raw("/v1/submissions/create", body).await;
        assert_eq!(status, want, "{text}");
        if status == 400 {
            let v: Value = serde_json::from_str(&text).expect("an ErrorResponse");
            assert_eq!(v["action"], "ErrorResponse", "{v}");
        }
    }
    let (status, v) = d
        .get("/v1/submissions/status/driver-20990101000000-0000")
        .await;
    assert_eq!((status, v["success"].clone()), (200, json!(false)), "{v}");
    let after = d.get("/api/drivers").await.1;
    assert_eq!(
        before["drivers"], after["drivers"],
        "bad input changed state"
    );
    assert_eq!(before["finished"], after["finished"]);
    assert_eq!(
        d.post_raw("/v1/submissions/killall", Vec::new()).await.0,
        200
    );
    d.wait_state(&big, "KILLED", LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_spark_submit_runs_a_pyspark_word_count_on_a_persistent_volume() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster("cpus:8;mem:16384;disk:2048", 24000).await;
    let agent = c.agents[0].clone();
    // A volume of role "data", made with the operator API.
    let reserved = |name: &str, amount: f64| {
        json!({"name": name, "type": "SCALAR", "scalar": {"value": amount},
               "reservations": [{"type": "DYNAMIC", "role": "data", "principal": "ops"}]})
    };
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent.id}, "resources": [reserved("disk", 64.0)]}}))
        .await;
    assert!(status.is_success(), "{body}");
    let mut volume = reserved("disk", 64.0);
    volume["disk"] = json!({"persistence": {"id": "words", "principal": "ops"},
                            "volume": {"container_path": "data", "mode": "RW"}});
    let (status, body) = c
        .operator(json!({"type": "CREATE_VOLUMES", "create_volumes": {
            "agent_id": {"value": agent.id}, "volumes": [volume]}}))
        .await;
    assert!(status.is_success(), "{body}");
    let on_disk = agent.work_dir.join("volumes/roles/data/words");
    assert!(
        wait_for(LONG, || async { on_disk.is_dir() }).await,
        "no volume at {}",
        on_disk.display()
    );
    std::fs::create_dir_all(on_disk.join("in")).expect("dir");
    std::fs::write(
        on_disk.join("in/a.txt"),
        "the quick brown fox\nThe lazy dog\n",
    )
    .expect("write");
    std::fs::write(on_disk.join("in/b.txt"), "the fox jumps\n").expect("write");

    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &["--roles=etl,data".into()]).await;
    let wc = wordcount_py();
    let (ok, out) = corral(&[
        "spark",
        "submit",
        &format!("--dispatcher={}", d.url),
        "--role",
        "data",
        "--conf",
        "spark.corral.driver.volume=words",
        "--driver-memory",
        "512m",
        "--executor-memory",
        "512m",
        "--num-executors",
        "1",
        "--env",
        "PYSPARK_PYTHON=python3",
        "--wait",
        wc.to_str().expect("path"),
        "data/in",
        "data/out/counts.tsv",
    ])
    .await;
    assert!(ok, "corral spark submit failed:\n{out}\n{}", d.log_text());
    assert!(
        out.contains("Submission successfully created as driver-"),
        "{out}"
    );
    let counts =
        std::fs::read_to_string(on_disk.join("out/counts.tsv")).expect("counts on the volume");
    assert_eq!(
        counts,
        "brown\t1\ndog\t1\nfox\t2\njumps\t1\nlazy\t1\nquick\t1\nthe\t3\n"
    );
    let id = submission_id(&out).expect("id");
    let driver = d.driver(&id).await;
    assert_eq!(driver["role"], "data");
    assert_eq!(driver["state"], "FINISHED");
    // corral spark status: one row, with the role and the state.
    let (ok, out) = corral(&["spark", "status", &format!("--dispatcher={}", d.url), &id]).await;
    assert!(ok, "{out}");
    let row = out.lines().find(|l| l.contains(&id)).unwrap_or_default();
    assert!(
        out.starts_with("SUBMISSION") && row.contains(" data ") && row.contains("FINISHED"),
        "{out}"
    );
    let (ok, out) = corral(&[
        "spark",
        "status",
        &format!("--dispatcher={}", d.url),
        "driver-00000000000000-9999",
    ])
    .await;
    assert!(!ok && out.contains("driver-00000000000000-9999"), "{out}");
    // What spark-submit refuses (a Python application in cluster mode on
    // a spark:// master) is what corral spark submit is for.
    let (ok, out) = spark_submit_async(vec![
        "--master".into(),
        d.spark_master(),
        "--deploy-mode".into(),
        "cluster".into(),
        "--conf".into(),
        "spark.master.rest.enabled=true".into(),
        wc.to_str().expect("path").into(),
        "x".into(),
        "y".into(),
    ])
    .await;
    assert!(
        !ok,
        "spark-submit took a Python application in cluster mode:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_dispatcher_loses_no_submission() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster("cpus:8;mem:16384;disk:1024", 24500).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Dispatcher::start(&c.master, dir.path(), 0, &[]).await;
    let running = submit_pi(&d, &[], &["2", "600"]).await;
    let queued = submit_pi(&d, &[("spark.executor.instances", "40")], &["2"]).await;
    let before = d.wait_state(&running, "RUNNING", LONG).await;
    kill_9(&mut d.child).await;
    let port = d.port;
    let d = Dispatcher::start(&c.master, dir.path(), port, &[]).await;
    // The same framework, the same running task, the queued one still queued.
    let after = d.wait_state(&running, "RUNNING", LONG).await;
    assert_eq!(after["taskId"], before["taskId"]);
    assert_eq!(after["attempts"], 1);
    assert_eq!(d.driver(&queued).await["state"], "SUBMITTED");
    assert_eq!(spark_status(&d, &running).await, "RUNNING");
    assert_eq!(spark_status(&d, &queued).await, "SUBMITTED");
    let running_tasks: Vec<String> = tasks(&c)
        .await
        .into_iter()
        .filter(|(t, s)| t.starts_with(&running) && s == "TASK_RUNNING")
        .map(|(t, _)| t)
        .collect();
    assert_eq!(running_tasks.len(), 3, "{running_tasks:?}");
    // The adopted driver is still the dispatcher's to kill.
    assert_eq!(
        d.post_raw("/v1/submissions/killall", Vec::new()).await.0,
        200
    );
    d.wait_state(&running, "KILLED", LONG).await;
    d.wait_state(&queued, "KILLED", LONG).await;
    released(&c).await;
}

/// Two dispatchers with `--zk` running Spark from a fetched tarball: the
/// standby refuses Spark's protocol (so `spark-submit` with both addresses
/// goes on to the leader) and redirects the JSON API; after `kill -9` of
/// the leader it takes the running driver over from ZooKeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_dispatcher_takes_over_after_kill_9_of_the_leader() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = cluster("cpus:8;mem:16384;disk:1024", 25000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = corral_master::testing::ZooKeeperServer::start(dir.path(), 1).expect("zookeeper");
    let tarball = spark_tarball(dir.path());
    let flags = [
        format!("--zk=zk://{}/corral/spark", zk.connect),
        format!("--spark_tarball=file://{}", tarball.display()),
        "--spark_tarball_home=spark".to_string(),
    ];
    let mut a = Dispatcher::start(&c.master, dir.path(), 0, &flags).await;
    let b = Dispatcher::spawn(&c.master, dir.path(), 0, &flags);
    let (standby, leader) = (
        format!("{}/api/drivers", b.url),
        format!("{}/api/drivers", a.url),
    );
    assert!(
        wait_for(LONG, || corral_tests::redirects_to(&standby, &leader)).await,
        "the standby redirects to the leader\n{}",
        b.log_text()
    );
    let (status, ready) = b.get("/v1/submissions/readyz").await;
    assert_eq!(status, 503, "{ready}");
    // The standby first: spark-submit goes on to the next address.
    let both = format!("spark://127.0.0.1:{},127.0.0.1:{}", b.port, a.port);
    let id = submit_pi_to(both, &[], &[], &["2", "600"]).await;
    let before = a.wait_state(&id, "RUNNING", LONG).await;
    let fetched = c.agents[0].work_dir.join("slaves");
    assert!(
        corral_tests::files_under(&fetched)
            .iter()
            .any(|p| p.ends_with("spark/bin/spark-class")),
        "Spark came from the tarball, extracted in the sandboxes"
    );

    kill_9(&mut a.child).await;
    let after = b.wait_state(&id, "RUNNING", LONG).await;
    assert_eq!(after["taskId"], before["taskId"], "the same driver task");
    assert_eq!(after["attempts"], 1);
    assert_eq!(b.get("/v1/submissions/readyz").await.0, 200);
    assert_eq!(spark_status(&b, &id).await, "RUNNING");
    let (ok, out) = corral(&["spark", "kill", &format!("--dispatcher={}", b.url), &id]).await;
    assert!(ok, "{out}");
    b.wait_state(&id, "KILLED", LONG).await;
    released(&c).await;
}

/// A job that names its own Docker image (`spark.corral.docker.image`):
/// its driver, standalone master and worker run as Docker containers of
/// the local Spark image (through the agent's Docker containerizer and the
/// real engine), and it finishes with its output in the driver's sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_in_its_own_docker_image() {
    let _one = ONE_AT_A_TIME.lock().await;
    let image = spark_docker_image();
    let c = Cluster::start(ClusterOptions {
        agents: 1,
        agent_resources: Some("cpus:8;mem:16384;disk:1024;ports:[25500-25999]".into()),
        agent_flags: vec!["--containerizers=docker,mesos".into()],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &[]).await;
    let id = submit_pi(
        &d,
        &[
            ("spark.corral.docker.image", image.as_str()),
            ("spark.corral.docker.sparkHome", "/opt/spark"),
        ],
        &["4"],
    )
    .await;
    d.wait_state(&id, "FINISHED", LONG).await;
    let (_, logs) = d.get(&format!("/api/drivers/{id}/logs?path=stdout")).await;
    assert!(
        logs["data"]
            .as_str()
            .is_some_and(|o| o.contains("Pi is roughly 3.1")),
        "{logs}"
    );
    let v = c.get_json("/master/tasks?limit=-1").await;
    let mine: Vec<&Value> = v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["id"].as_str().is_some_and(|t| t.starts_with(&id)))
        .collect();
    assert!(mine.len() >= 3, "driver, master and worker: {v}");
    for t in &mine {
        assert_eq!(t["container"]["type"], "DOCKER", "{t}");
        assert_eq!(t["container"]["docker"]["image"], image.as_str(), "{t}");
    }
    released(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_jobs_share_the_cluster_by_drf() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Room for two applications of 2.2 cpus, not three.
    let c = cluster("cpus:5;mem:16384;disk:1024", 25000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dispatcher::start(&c.master, dir.path(), 0, &["--roles=eng,ops".into()]).await;
    // All four at once (spark-submit's own request, sent straight to the
    // submission server: four JVM clients would take seconds apart).
    let create = |role: &'static str| {
        let body = json!({
            "action": "CreateSubmissionRequest",
            "appResource": format!("file://{}", pi_jar().display()),
            "mainClass": "corral.CorralPi", "appArgs": ["2", "600"], "clientSparkVersion": "4.3.0",
            "environmentVariables": {},
            "sparkProperties": {"spark.app.name": format!("pi-{role}"), "spark.corral.role": role,
                                "spark.driver.memory": "512m", "spark.executor.memory": "512m",
                                "spark.executor.instances": "1"}});
        let d = &d;
        async move {
            let (status, text) = d
                .post_raw("/v1/submissions/create", body.to_string().into_bytes())
                .await;
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!((status, v["success"].clone()), (200, json!(true)), "{v}");
            v["submissionId"].as_str().expect("id").to_string()
        }
    };
    let (e1, e2, o1, o2) = tokio::join!(create("eng"), create("eng"), create("ops"), create("ops"));
    let (eng, ops) = (vec![e1, e2], vec![o1, o2]);
    // Both teams get one application running; neither gets both slots.
    let running = |ids: Vec<String>| {
        let d = &d;
        async move {
            let mut n = 0;
            for id in &ids {
                if d.driver(id).await["state"] == "RUNNING" {
                    n += 1;
                }
            }
            n
        }
    };
    assert!(
        wait_for(LONG, || async {
            running(eng.clone()).await == 1 && running(ops.clone()).await == 1
        })
        .await,
        "not one of each: {:?}\n{}",
        d.live()
            .await
            .iter()
            .map(|x| (x["role"].clone(), x["state"].clone()))
            .collect::<Vec<_>>(),
        d.log_text()
    );
    let roles = c.get_json("/roles").await;
    let allocated = |role: &str| {
        roles["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == role)
            .map_or(0.0, |r| r["resources"]["cpus"].as_f64().unwrap_or(0.0))
    };
    assert!(
        allocated("eng") >= 2.0 && allocated("ops") >= 2.0,
        "{roles}"
    );
    assert_eq!(
        d.post_raw("/v1/submissions/killall", Vec::new()).await.0,
        200
    );
    for id in eng.iter().chain(&ops) {
        d.wait_state(id, "KILLED", LONG).await;
    }
}
