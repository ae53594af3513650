//! The services-and-jobs framework (`corral workloads serve`) against a
//! real master and two agents, through its Singularity-shaped REST API: a
//! WORKER with two instances (then scaled to one), a SCHEDULED job every two
//! seconds, an ON_DEMAND run, refusals naming the field, and a restart that
//! keeps the requests and the FrameworkID.

use std::time::Duration;

use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::workloads::Framework;
use corral_tests::{corral_bin, free_port, wait_for, Cluster, ClusterOptions, TIMEOUT};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_jobs_through_the_singularity_api() {
    let c = Cluster::start(ClusterOptions {
        agents: 2,
        ..Default::default()
    })
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let log = c.dir().join("workloads.log");
    let f = Framework::start(&c.master, state.path(), &log).await;

    // A WORKER with two instances.
    let (status, body) = f
        .post(
            "/api/requests",
            json!({"id": "worker", "requestType": "WORKER", "instances": 2,
                   "owners": ["data@example.com"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f
        .post(
            "/api/deploys",
            json!({"deploy": {"requestId": "worker", "id": "1", "command": "sleep 300",
                              "resources": {"cpus": 0.1, "memoryMb": 32}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let two_healthy = wait_for(TIMEOUT, || async {
        let tasks = f.tasks_of("worker").await;
        tasks.len() == 2 && tasks.iter().all(|t| t["healthy"] == true)
    })
    .await;
    assert!(two_healthy, "{:?}", f.tasks_of("worker").await);
    let running_on_master = wait_for(TIMEOUT, || async {
        let v = c.get_json("/master/tasks").await;
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count()
            == 2
    })
    .await;
    assert!(running_on_master);
    let (_, parent) = f.get("/api/requests/request/worker").await;
    assert_eq!(parent["state"], "ACTIVE");
    assert_eq!(parent["activeDeploy"]["id"], "1", "{parent}");

    // The framework's own pages in a real browser: the requests, the
    // worker's page with its deploy and tasks linked to their sandboxes in
    // the master's UI; the master links to the pages (webui_url).
    let b = Browser::start().await.expect("browser");
    b.open(&format!("{}/ui", f.url))
        .await
        .expect("requests page");
    let text = b.main_text().await.expect("text");
    assert!(
        text.contains("worker") && text.contains("WORKER") && text.contains("2 of 2"),
        "{text}"
    );
    b.screenshot("workloads-requests", DESKTOP)
        .await
        .expect("shot");
    b.screenshot("workloads-requests", PHONE)
        .await
        .expect("shot");
    b.open(&format!("{}/ui/requests/worker", f.url))
        .await
        .expect("request page");
    let text = b.main_text().await.expect("text");
    assert!(
        text.contains("Request worker")
            && text.contains("sleep 300")
            && text.contains("2 running of 2"),
        "{text}"
    );
    let sandbox = b
        .eval("return document.querySelector('a[aria-label^=\"sandbox of\"]').href")
        .await
        .expect("a sandbox link");
    assert!(
        sandbox
            .as_str()
            .is_some_and(|h| h.starts_with(&format!("http://{}/ui/sandbox?agent=", c.master))),
        "{sandbox}"
    );
    b.screenshot("workloads-request", DESKTOP)
        .await
        .expect("shot");
    b.screenshot("workloads-request", PHONE)
        .await
        .expect("shot");
    let framework_id = f.get("/api/state").await.1["frameworkId"].clone();
    let fw = c.get_json("/master/state").await["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|fw| fw["id"] == framework_id)
        .cloned()
        .expect("the framework in /master/state");
    assert_eq!(fw["webui_url"], format!("{}/ui", f.url), "{fw}");
    b.mark_page().await.expect("mark the page");

    // Scale to one.
    let (status, body) = f
        .send(
            reqwest::Method::PUT,
            "/api/requests/request/worker/scale",
            json!({"instances": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(TIMEOUT, || async { f.tasks_of("worker").await.len() == 1 }).await,
        "scaled down"
    );
    // The open page follows without a reload: one instance left, the
    // other one in the task history.
    b.wait_for_text("1 running of 1", TIMEOUT)
        .await
        .expect("the scale on the open page");
    b.wait_for_text("TASK_KILLED", TIMEOUT)
        .await
        .expect("the killed task in the history");
    b.assert_not_reloaded().await.expect("updated in place");
    b.quit().await.expect("quit the browser");

    // A job every two seconds, and an on-demand one.
    let (status, body) = f
        .post(
            "/api/requests",
            json!({"id": "tick", "requestType": "SCHEDULED", "schedule": "*/2 * * * * *",
                   "scheduleTimeZone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    f.post(
        "/api/deploys",
        json!({"deploy": {"requestId": "tick", "id": "1", "command": "true",
                          "resources": {"cpus": 0.1, "memoryMb": 32}}}),
    )
    .await;
    f.post(
        "/api/requests",
        json!({"id": "adhoc", "requestType": "ON_DEMAND"}),
    )
    .await;
    let (status, body) = f.post("/api/requests/request/adhoc/run", json!({})).await;
    assert_eq!(status, 409, "no deploy yet: {body}");
    f.post(
        "/api/deploys",
        json!({"deploy": {"requestId": "adhoc", "id": "1", "command": "echo on demand",
                          "resources": {"cpus": 0.1, "memoryMb": 32}}}),
    )
    .await;
    let (status, body) = f.post("/api/requests/request/adhoc/run", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(Duration::from_secs(40), || async {
            f.runs("tick", "SUCCEEDED").await >= 2 && f.runs("adhoc", "SUCCEEDED").await == 1
        })
        .await,
        "tick: {:?}\nlog:\n{}",
        f.get("/api/history/request/tick/runs").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The CLI: tables, YAML files, --json, errors naming the flag.
    let cli = |args: Vec<String>| {
        let api = f.url.clone();
        async move {
            let out = tokio::process::Command::new(corral_bin())
                .arg("workloads")
                .args(&args)
                .args(["--api", &api])
                .output()
                .await
                .expect("run the cli");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, table, err) = cli(vec!["list".into()]).await;
    assert!(ok, "{err}");
    assert!(table.starts_with("ID"), "{table}");
    for want in [
        "worker",
        "WORKER",
        "tick",
        "SCHEDULED",
        "adhoc",
        "ON_DEMAND",
    ] {
        assert!(table.contains(want), "{want} in\n{table}");
    }
    let yaml = c.dir().join("nightly.yaml");
    std::fs::write(
        &yaml,
        "id: nightly\nrequestType: SCHEDULED\nschedule: \"30 2 * * *\"\nscheduleTimeZone: America/New_York\n",
    )
    .expect("write yaml");
    let (ok, table, err) = cli(vec![
        "create".into(),
        "-f".into(),
        yaml.display().to_string(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        table.contains("nightly") && table.contains("SCHEDULED"),
        "{table}"
    );
    let (ok, history, err) = cli(vec!["history".into(), "tick".into()]).await;
    assert!(ok, "{err}");
    assert!(history.contains("SUCCEEDED"), "{history}");
    let (ok, json_out, _) = cli(vec!["tasks".into(), "--json".into()]).await;
    assert!(ok);
    assert!(
        serde_json::from_str::<Value>(&json_out).is_ok_and(|v| v.is_array()),
        "{json_out}"
    );
    let (ok, _, err) = cli(vec![
        "create".into(),
        "-f".into(),
        "/nonexistent.json".into(),
    ])
    .await;
    assert!(!ok && err.contains("--file"), "{err}");
    let (ok, _, err) = cli(vec!["scale".into(), "nobody".into(), "2".into()]).await;
    assert!(!ok && err.contains("404"), "{err}");
    f.send(
        reqwest::Method::DELETE,
        "/api/requests/request/nightly",
        json!({}),
    )
    .await;

    // Bad input: 4xx naming the field, nothing created.
    for (doc, field) in [
        (
            json!({"id": "bad", "requestType": "SCHEDULED", "schedule": "61 * * * *"}),
            "schedule",
        ),
        (
            json!({"id": "bad", "requestType": "SCHEDULED", "schedule": "0 * * * *", "scheduleTimeZone": "Mars/Base"}),
            "scheduleTimeZone",
        ),
        (json!({"id": "bad", "requestType": "DAEMON"}), "requestType"),
        (json!({"id": "bad id", "requestType": "WORKER"}), "id"),
        (
            json!({"id": "bad", "requestType": "WORKER", "constraints": [["rack", "NEAR"]]}),
            "constraints[0]",
        ),
    ] {
        let (status, body) = f.post("/api/requests", doc.clone()).await;
        assert_eq!(status, 400, "{doc}: {body}");
        assert!(body.contains(field), "{doc}: {body}");
    }
    let (status, _) = f.get("/api/requests/request/bad").await;
    assert_eq!(status, 404);
    let (status, body) = f
        .post(
            "/api/deploys",
            json!({"deploy": {"requestId": "adhoc", "id": "2", "command": "true",
                              "resources": {"cpus": 64, "memoryMb": 32}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("resources.cpus") && body.contains("more than any agent"),
        "{body}"
    );
    let (_, adhoc) = f.get("/api/requests/request/adhoc").await;
    assert_eq!(adhoc["activeDeploy"]["id"], "1", "nothing changed: {adhoc}");
    // Constraints no agent of the cluster can satisfy are refused when
    // the request is submitted (or scaled), not left pending.
    for (doc, field) in [
        (
            json!({"id": "nowhere", "requestType": "WORKER",
                   "constraints": [["hostname", "CLUSTER", "no-such-host"]]}),
            "constraints: no agent of the cluster",
        ),
        (
            json!({"id": "nowhere", "requestType": "WORKER", "instances": 3,
                   "constraints": [["hostname", "UNIQUE"]]}),
            "constraints: 3 instances under [hostname, UNIQUE]",
        ),
        (
            json!({"id": "nowhere", "requestType": "WORKER",
                   "requiredSlaveAttributes": {"rack": "r9"}}),
            "requiredSlaveAttributes: ",
        ),
    ] {
        let (status, body) = f.post("/api/requests", doc).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.starts_with(field), "{body}");
    }
    let (status, _) = f.get("/api/requests/request/nowhere").await;
    assert_eq!(status, 404, "a refused request is not stored");
    let (status, body) = f
        .post(
            "/api/deploys",
            json!({"deploy": {"requestId": "nobody", "id": "1", "command": "true"}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, before) = f.get("/api/state").await;
    let big = "x".repeat(2 << 20);
    let (status, _) = f
        .post(
            "/api/requests",
            json!({"id": "big", "requestType": "WORKER", "owners": [big]}),
        )
        .await;
    assert_eq!(status, 413);

    // A restart keeps the requests and the FrameworkID.
    let mut f = f;
    f.child.kill().await.expect("kill");
    let f = Framework::start(&c.master, state.path(), &c.dir().join("workloads-2.log")).await;
    let (_, after) = f.get("/api/state").await;
    assert_eq!(
        before["frameworkId"], after["frameworkId"],
        "{before} {after}"
    );
    let (_, list) = f.get("/api/requests").await;
    let ids: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["request"]["id"].as_str())
        .collect();
    assert_eq!(ids, ["adhoc", "tick", "worker"]);
    assert!(
        wait_for(TIMEOUT, || async { f.tasks_of("worker").await.len() == 1 }).await,
        "the worker runs again after the restart"
    );
}

/// Two instances with `--zk`: one leads, the other redirects API calls to
/// it; `kill -9` of the leader and the standby takes over with the requests
/// kept in ZooKeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_elect_a_leader_and_the_standby_takes_over() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let zk_dir = tempfile::tempdir().expect("tempdir");
    let zk = corral_master::testing::ZooKeeperServer::start(zk_dir.path(), 1).expect("zookeeper");
    let flag = format!("--zk=zk://{}/corral/workloads", zk.connect);
    let a = Framework::spawn(
        &c.master,
        std::slice::from_ref(&flag),
        &c.dir().join("wl-a.log"),
    );
    assert!(a.subscribed().await, "the first instance leads");
    let b = Framework::spawn(
        &c.master,
        std::slice::from_ref(&flag),
        &c.dir().join("wl-b.log"),
    );
    // The standby redirects to the leader.
    let standby = format!("{}/api/requests", b.url);
    let redirected = wait_for(TIMEOUT, || corral_tests::redirects_to(&standby, &a.url)).await;
    assert!(redirected, "the standby redirects to the leader");
    // A request made through the standby lands on the leader.
    let (status, body) = b
        .post(
            "/api/requests",
            json!({"id": "ha", "requestType": "WORKER"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    a.post(
        "/api/deploys",
        json!({"deploy": {"requestId": "ha", "id": "1", "command": "sleep 300",
                          "resources": {"cpus": 0.1, "memoryMb": 32}}}),
    )
    .await;
    assert!(
        wait_for(TIMEOUT, || async {
            a.tasks_of("ha")
                .await
                .first()
                .is_some_and(|t| t["healthy"] == true)
        })
        .await
    );
    let ha_task = a.tasks_of("ha").await[0]["taskId"]["id"].clone();
    // A job every two seconds, running on both sides of the failover.
    a.post(
        "/api/requests",
        json!({"id": "beat", "requestType": "SCHEDULED", "schedule": "*/2 * * * * *",
               "latenessAllowanceMillis": 60000}),
    )
    .await;
    a.post(
        "/api/deploys",
        json!({"deploy": {"requestId": "beat", "id": "1", "command": "true",
                          "resources": {"cpus": 0.1, "memoryMb": 32}}}),
    )
    .await;
    // And one whose runs take three seconds, so that one is running when
    // the leader dies: the new leader re-attaches it.
    a.post(
        "/api/requests",
        json!({"id": "slow", "requestType": "SCHEDULED", "schedule": "*/5 * * * * *",
               "latenessAllowanceMillis": 60000}),
    )
    .await;
    a.post(
        "/api/deploys",
        json!({"deploy": {"requestId": "slow", "id": "1", "command": "sleep 3",
                          "resources": {"cpus": 0.1, "memoryMb": 32}}}),
    )
    .await;
    assert!(wait_for(TIMEOUT, || async { a.runs("beat", "SUCCEEDED").await >= 2 }).await);
    let before = a.runs("beat", "SUCCEEDED").await;
    let in_flight = || async {
        let (_, runs) = a.get("/api/history/request/slow/runs").await;
        runs.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["outcome"] == "RUNNING")
            .map(|r| r["runId"].clone())
    };
    assert!(wait_for(TIMEOUT, || async { in_flight().await.is_some() }).await);
    let slow_run = in_flight().await.expect("a slow run is going");

    let mut a = a;
    a.child.kill().await.expect("kill -9 the leader");
    assert!(b.subscribed().await, "the standby takes over");
    // The deploy, stored in ZooKeeper, is carried on by the new leader.
    let deployed = wait_for(TIMEOUT * 2, || async {
        b.get("/api/requests/request/ha").await.1["activeDeploy"]["id"] == "1"
    })
    .await;
    assert!(deployed, "{:?}", b.get("/api/requests/request/ha").await);
    assert!(
        wait_for(TIMEOUT * 2, || async { b.tasks_of("ha").await.len() == 1 }).await,
        "the new leader runs the worker"
    );
    // The running task was taken over, not killed and started again.
    assert_eq!(b.tasks_of("ha").await[0]["taskId"]["id"], ha_task);
    let still_running = c.get_json("/master/tasks").await;
    let running: Vec<&Value> = still_running["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING" && t["id"] == ha_task)
        .collect();
    assert_eq!(running.len(), 1, "{still_running}");
    // The job's history came over, and every due time since the job was
    // created is accounted for exactly once (run, skipped, or missed with
    // the reason), across the failover.
    assert!(
        wait_for(TIMEOUT, || async {
            b.runs("beat", "SUCCEEDED").await >= before + 2
        })
        .await,
        "{:?}",
        b.get("/api/history/request/beat/runs").await
    );
    // The slow run going at the failover was re-attached and finished as
    // its task did, not failed nor run again.
    let slow_done = wait_for(TIMEOUT, || async {
        let (_, runs) = b.get("/api/history/request/slow/runs").await;
        runs.as_array()
            .into_iter()
            .flatten()
            .any(|r| r["runId"] == slow_run && r["outcome"] == "SUCCEEDED")
    })
    .await;
    assert!(
        slow_done,
        "{:?}",
        b.get("/api/history/request/slow/runs").await
    );
    for job in ["beat", "slow"] {
        let (_, runs) = b.get(&format!("/api/history/request/{job}/runs")).await;
        let failed: Vec<&Value> = runs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["outcome"] == "FAILED")
            .collect();
        assert!(failed.is_empty(), "{job}: {failed:?}");
    }
    let (_, runs) = b.get("/api/history/request/beat/runs").await;
    let mut due: Vec<i64> = runs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["attempt"] == 0)
        .filter_map(|r| r["scheduledFor"].as_i64())
        .collect();
    due.sort();
    let n = due.len();
    due.dedup();
    assert_eq!(due.len(), n, "no due time handled twice: {runs}");
    assert!(
        due.windows(2).all(|w| w[1] - w[0] == 2000),
        "no due time forgotten: {runs}"
    );
}

/// HAProxy run by the framework (`--haproxy`), stopped at the end of the
/// test through its pid file.
struct Haproxy {
    dir: std::path::PathBuf,
    bind: String,
}

impl Haproxy {
    fn new(dir: std::path::PathBuf) -> Haproxy {
        Haproxy {
            dir,
            bind: format!("127.0.0.1:{}", free_port()),
        }
    }

    fn flags(&self) -> Vec<String> {
        let bin = std::env::var("CORRAL_HAPROXY").unwrap_or_else(|_| "haproxy".into());
        vec![
            format!("--haproxy={bin}"),
            format!("--haproxy_dir={}", self.dir.display()),
            format!("--haproxy_bind={}", self.bind),
            "--load_balancer_drain=1secs".into(),
        ]
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.dir.join("haproxy.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// `curl` in a loop through HAProxy, one connection per request, each
/// answer's status and body on a line of `out`.
fn curl_traffic(url: &str, out: &std::path::Path) -> tokio::process::Child {
    let script = format!(
        "while :; do curl -s -m 5 -o body -w '%{{http_code}} ' '{url}'; cat body 2>/dev/null || echo; done"
    );
    let dir = out.parent().expect("dir").to_path_buf();
    tokio::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .stdout(std::fs::File::create(out).expect("traffic log"))
        .kill_on_drop(true)
        .spawn()
        .expect("curl loop")
}

/// A load-balanced SERVICE with HTTP health checks (a real HTTP server in
/// each task) behind the framework's HAProxy, requested by a `curl` loop
/// throughout: a rolling deploy one instance at a time never drops below
/// the requested healthy capacity, and a deploy whose instances never pass
/// their health check is rolled back while the old instances keep serving;
/// no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploys_under_haproxy_traffic_gate_on_health_and_roll_back() {
    // One agent: agents of the test cluster share 127.0.0.1 and the same
    // port range, so servers on two of them could collide on a port.
    let c = Cluster::start(ClusterOptions::default()).await;
    let state = tempfile::tempdir().expect("tempdir");
    let log = c.dir().join("workloads.log");
    let lb = Haproxy::new(c.dir().join("haproxy"));
    let mut flags = lb.flags();
    flags.push(format!("--state_dir={}", state.path().display()));
    let f = Framework::spawn(&c.master, &flags, &log);
    assert!(
        f.subscribed().await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (status, body) = f
        .post(
            "/api/requests",
            json!({"id": "web", "requestType": "SERVICE", "instances": 2, "loadBalanced": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A load-balanced deploy must say which path it is routed by.
    let (status, body) = f
        .post(
            "/api/deploys",
            json!({"deploy": {"requestId": "web", "id": "v0", "command": "true",
                              "resources": {"cpus": 0.1, "memoryMb": 32, "numPorts": 1}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("serviceBasePath"), "{body}");
    let server = |version: &str, healthy: bool| {
        let file = if healthy { "echo ok > health && " } else { "" };
        json!({"deploy": {
            "requestId": "web", "id": version,
            "command": format!("mkdir -p web && echo $VERSION > web/index.html && {file}exec python3 -m http.server $PORT0 --bind 127.0.0.1"),
            "env": {"VERSION": version},
            "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1},
            "healthcheckUri": "/health", "healthcheckIntervalSeconds": 1,
            "serviceBasePath": "/web",
            // Generous for deploys that should succeed on a loaded machine;
            // short for the one that must fail.
            "deployHealthTimeoutSeconds": if healthy { 60 } else { 10 },
            "deployInstanceCountPerStep": 1,
        }})
    };
    let healthy_of = |version: &'static str| {
        let f = &f;
        async move {
            f.tasks_of("web")
                .await
                .into_iter()
                .filter(|t| t["taskId"]["deployId"] == version && t["healthy"] == true)
                .collect::<Vec<Value>>()
        }
    };
    let (status, body) = f.post("/api/deploys", server("v1", true)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(TIMEOUT * 2, || async { healthy_of("v1").await.len() == 2 }).await,
        "{:?}\n{}",
        f.tasks_of("web").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Each instance really answers on its port.
    for t in healthy_of("v1").await {
        let port = t["ports"][0].as_u64().expect("port");
        let r = reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .expect("the instance answers");
        assert!(r.status().is_success());
    }
    // Both are in HAProxy's rotation; curl traffic runs from here on.
    let url = format!("http://{}/web/", lb.bind);
    assert!(
        wait_for(TIMEOUT, || async {
            let (_, v) = f.get("/api/loadbalancer/upstreams").await;
            v[0]["upstreams"].as_array().is_some_and(|u| u.len() == 2)
                && reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await,
        "{:?}\n{}",
        f.get("/api/loadbalancer/upstreams").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let traffic_log = c.dir().join("traffic.log");
    let mut traffic = curl_traffic(&url, &traffic_log);

    // Rolling to v2: capacity never drops below two healthy instances.
    let (status, body) = f.post("/api/deploys", server("v2", true)).await;
    assert_eq!(status, 200, "{body}");
    // Poll until v2 is active everywhere, keeping the lowest number of
    // healthy instances seen on the way.
    let mut lowest = usize::MAX;
    let deadline = tokio::time::Instant::now() + TIMEOUT * 3;
    let rolled = loop {
        let tasks = f.tasks_of("web").await;
        let healthy = tasks.iter().filter(|t| t["healthy"] == true).count();
        lowest = lowest.min(healthy);
        let (_, parent) = f.get("/api/requests/request/web").await;
        if parent["activeDeploy"]["id"] == "v2"
            && tasks.len() == 2
            && tasks.iter().all(|t| t["taskId"]["deployId"] == "v2")
        {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        rolled,
        "{:?}\n{:?}\n{}",
        f.tasks_of("web").await,
        f.get("/api/requests/request/web").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(lowest >= 2, "healthy capacity dropped to {lowest}");
    let (_, deploys) = f.get("/api/history/request/web/deploys").await;
    assert_eq!(
        deploys[1]["deployResult"]["deployState"], "SUCCEEDED",
        "{deploys}"
    );

    // v3 never passes its health check: rolled back, v2 serves throughout.
    let (status, body) = f.post("/api/deploys", server("v3", false)).await;
    assert_eq!(status, 200, "{body}");
    let failed = wait_for(TIMEOUT * 2, || async {
        let (_, d) = f.get("/api/history/request/web/deploys").await;
        d.as_array()
            .and_then(|a| a.last())
            .is_some_and(|l| l["deployResult"]["deployState"] == "FAILED")
    })
    .await;
    assert!(
        failed,
        "{:?}",
        f.get("/api/history/request/web/deploys").await
    );
    let (_, deploys) = f.get("/api/history/request/web/deploys").await;
    let last = deploys
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["deployMarker"]["deployId"], "v3");
    assert!(
        last["deployResult"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deployHealthTimeoutSeconds")),
        "{last}"
    );
    assert_eq!(
        healthy_of("v2").await.len(),
        2,
        "the old instances kept serving"
    );
    assert!(
        wait_for(TIMEOUT, || async {
            f.tasks_of("web")
                .await
                .iter()
                .all(|t| t["taskId"]["deployId"] == "v2")
        })
        .await
    );
    let (_, parent) = f.get("/api/requests/request/web").await;
    assert_eq!(parent["activeDeploy"]["id"], "v2");
    // HAProxy routes to v2 only now.
    assert!(
        wait_for(TIMEOUT, || async {
            let text = std::fs::read_to_string(&traffic_log).unwrap_or_default();
            text.lines().rev().nth(1).is_some_and(|l| l == "200 v2")
        })
        .await
    );
    let _ = traffic.kill().await;
    let text = std::fs::read_to_string(&traffic_log).unwrap_or_default();
    let answers: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    // The last line may be cut by the kill.
    let complete = &answers[..answers.len().saturating_sub(1)];
    let failed: Vec<&&str> = complete
        .iter()
        .filter(|l| !(**l == "200 v1" || **l == "200 v2"))
        .collect();
    assert!(
        complete.len() >= 20,
        "too little traffic: {} requests",
        complete.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed through HAProxy during the deploys: {:?}",
        failed.len(),
        complete.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(complete.contains(&"200 v1") && complete.contains(&"200 v2"));
    eprintln!(
        "{} requests through haproxy during the deploys, none failed",
        complete.len()
    );
    let (_, v) = f.get("/api/loadbalancer/upstreams").await;
    let upstreams = v[0]["upstreams"].as_array().cloned().unwrap_or_default();
    assert_eq!(upstreams.len(), 2, "{v}");
    assert!(upstreams.iter().all(|u| u["taskId"]
        .as_str()
        .is_some_and(|t| t.starts_with("web-v2-"))));
    // The replaced instances are in the request's task history.
    let (_, history) = f.get("/api/history/request/web/tasks").await;
    let ended: Vec<&Value> = history.as_array().into_iter().flatten().collect();
    assert!(
        ended.iter().filter(|t| t["deployId"] == "v1").count() == 2
            && ended.iter().all(|t| t["killedByFramework"] == true),
        "{history}"
    );
}

/// A service that keeps crashing is replaced with backoff, goes into
/// cooldown, and is then paused with the reason in its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_cools_down_then_is_paused_saying_why() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let log = c.dir().join("workloads.log");
    let f = Framework::spawn(&c.master, &["--cooldown_delay=1secs".to_string()], &log);
    assert!(f.subscribed().await);
    f.post(
        "/api/requests",
        json!({"id": "crash", "requestType": "WORKER"}),
    )
    .await;
    let (status, body) = f
        .post(
            "/api/deploys",
            // Healthy once running (no health check), then it crashes.
            json!({"deploy": {"requestId": "crash", "id": "1", "command": "sleep 2; exit 1",
                              "resources": {"cpus": 0.1, "memoryMb": 32}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let paused = wait_for(Duration::from_secs(90), || {
        let f = &f;
        async move {
            let (_, r) = f.get("/api/requests/request/crash").await;
            r["state"] == "PAUSED"
        }
    })
    .await;
    let (_, r) = f.get("/api/requests/request/crash").await;
    assert!(
        paused,
        "{r}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let reason = r["stateReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("in cooldown")
            && reason.contains("unpause crash")
            && reason.contains("TASK_FAILED"),
        "{r}"
    );
    assert!(
        f.tasks_of("crash").await.is_empty(),
        "a paused request runs nothing"
    );
    let failures = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("state=\"TASK_FAILED\"")
        .count();
    assert!(failures >= 6, "3 to cool down, 3 more to pause: {failures}");
    // Unpausing starts it again.
    let (status, _) = f
        .post("/api/requests/request/crash/unpause", json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, r) = f.get("/api/requests/request/crash").await;
    assert_eq!(r["state"], "ACTIVE", "{r}");
}

/// Jobs A -> B -> C: B runs once A has succeeded, C once B has; a cycle is
/// refused naming the field and changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_jobs_run_in_order() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let log = c.dir().join("workloads.log");
    let f = Framework::spawn(&c.master, &[], &log);
    assert!(f.subscribed().await);
    for (id, parents) in [("a", json!(null)), ("b", json!(["a"])), ("c", json!(["b"]))] {
        let mut request = json!({"id": id, "requestType": "SCHEDULED"});
        if parents.is_null() {
            request["schedule"] = json!("@yearly");
        } else {
            request["dependsOn"] = parents;
        }
        let (status, body) = f.post("/api/requests", request).await;
        assert_eq!(status, 200, "{id}: {body}");
        let (status, body) = f
            .post(
                "/api/deploys",
                json!({"deploy": {"requestId": id, "id": "1", "command": "sleep 1",
                                  "resources": {"cpus": 0.1, "memoryMb": 32}}}),
            )
            .await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    let (status, body) = f
        .post(
            "/api/requests",
            json!({"id": "a", "requestType": "SCHEDULED", "schedule": "@yearly", "dependsOn": ["c"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("dependsOn") && body.contains("cycle"),
        "{body}"
    );
    let (_, a) = f.get("/api/requests/request/a").await;
    assert!(
        a["request"].get("dependsOn").is_none(),
        "the refused change changed nothing: {a}"
    );

    let (status, body) = f.post("/api/requests/request/a/run", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let all_ran = wait_for(Duration::from_secs(60), || async {
        f.runs("a", "SUCCEEDED").await == 1
            && f.runs("b", "SUCCEEDED").await == 1
            && f.runs("c", "SUCCEEDED").await == 1
    })
    .await;
    assert!(
        all_ran,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let started = |id: &'static str| {
        let f = &f;
        async move {
            let (_, runs) = f.get(&format!("/api/history/request/{id}/runs")).await;
            (
                runs[0]["startedAt"].as_i64().unwrap_or(0),
                runs[0]["finishedAt"].as_i64().unwrap_or(0),
            )
        }
    };
    let (a_start, a_end) = started("a").await;
    let (b_start, b_end) = started("b").await;
    let (c_start, _) = started("c").await;
    assert!(
        a_start < a_end && a_end <= b_start,
        "b after a: {a_end} {b_start}"
    );
    assert!(b_end <= c_start, "c after b: {b_end} {c_start}");
}

/// A stateful WORKER (`persistentVolume`, the framework in role `db`): its
/// first launch reserves resources and creates a volume in the same ACCEPT;
/// a new deploy replaces the instance in place and finds the data the old
/// one wrote; deleting the request destroys the volume and releases the
/// reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_service_comes_back_to_its_data_across_deploys() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let log = c.dir().join("workloads.log");
    let f = Framework::spawn(&c.master, &["--role=db".to_string()], &log);
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
            "persistentVolume": {"containerPath": "data", "sizeMb": 32}}})
    };
    let history = c.agents[0]
        .work_dir
        .join("volumes/roles/db/wl-kv-1/history");
    let (status, body) = f.post("/api/deploys", deploy("d1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(TIMEOUT * 2, || async {
            std::fs::read_to_string(&history).is_ok_and(|h| h == "d1\n")
        })
        .await,
        "{:?}\n{}",
        f.get("/api/requests/request/kv").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let reserved = || async {
        let slaves = c.get_json("/master/slaves").await;
        slaves["slaves"][0]["reserved_resources"]["db"]["disk"]
            .as_f64()
            .unwrap_or(0.0)
    };
    assert_eq!(reserved().await, 32.0);
    assert!(
        wait_for(TIMEOUT, || async {
            f.get("/api/requests/request/kv").await.1["activeDeploy"]["id"] == "d1"
        })
        .await
    );

    // d2 replaces the instance in place, on the same volume.
    let (status, body) = f.post("/api/deploys", deploy("d2")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(TIMEOUT * 2, || async {
            std::fs::read_to_string(&history).is_ok_and(|h| h == "d1\nd2\n")
        })
        .await,
        "{:?}\n{}",
        std::fs::read_to_string(&history),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        wait_for(TIMEOUT, || async {
            let tasks = f.tasks_of("kv").await;
            tasks.len() == 1 && tasks[0]["taskId"]["deployId"] == "d2"
        })
        .await
    );
    assert_eq!(reserved().await, 32.0, "reserved once, not twice");

    // Deleted: the volume is destroyed and the reservation released.
    let (status, _) = f
        .send(
            reqwest::Method::DELETE,
            "/api/requests/request/kv",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        wait_for(TIMEOUT * 2, || async {
            reserved().await == 0.0 && !history.exists()
        })
        .await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Three agents (each with its own port range and `rack`), shared by two
/// load-balanced SERVICEs spread over racks (rackSensitive; UNIQUE rack), a
/// WORKER, a cron job every three seconds and on-demand runs, with HAProxy
/// in front of the services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_a_worker_cron_and_on_demand_jobs_share_three_agents() {
    let per_agent_flags: Vec<Vec<String>> = (0..3)
        .map(|i| {
            vec![
                // Ports of their own: the rolling deploy test, which may
                // run at the same time, serves on 31000-31099.
                format!(
                    "--resources=cpus:2;mem:1024;disk:1024;ports:[{}-{}]",
                    30000 + i * 100,
                    30099 + i * 100
                ),
                format!("--attributes=rack:r{}", i + 1),
            ]
        })
        .collect();
    let c = Cluster::start(ClusterOptions {
        agents: 3,
        per_agent_flags,
        ..Default::default()
    })
    .await;
    let rack_of = |agent: &str| {
        c.agents
            .iter()
            .position(|a| a.id == agent)
            .map(|i| format!("r{}", i + 1))
    };
    let log = c.dir().join("workloads.log");
    let lb = Haproxy::new(c.dir().join("haproxy"));
    let f = Framework::spawn(&c.master, &lb.flags(), &log);
    assert!(f.subscribed().await);
    let server = |request: &str| {
        json!({"deploy": {"requestId": request, "id": "1",
            "command": format!("mkdir -p {request} && echo $TASK_REQUEST_ID > {request}/index.html && echo ok > health && exec python3 -m http.server $PORT0 --bind 127.0.0.1"),
            "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1},
            "healthcheckUri": "/health", "healthcheckIntervalSeconds": 1,
            "serviceBasePath": format!("/{request}")}})
    };
    let requests = [
        json!({"id": "web", "requestType": "SERVICE", "instances": 2,
               "loadBalanced": true, "rackSensitive": true}),
        json!({"id": "api", "requestType": "SERVICE", "instances": 2,
               "loadBalanced": true, "constraints": [["rack", "UNIQUE"]]}),
        json!({"id": "worker", "requestType": "WORKER"}),
        json!({"id": "tick", "requestType": "SCHEDULED", "schedule": "*/3 * * * * *"}),
        json!({"id": "adhoc", "requestType": "ON_DEMAND"}),
    ];
    for r in requests {
        let (status, body) = f.post("/api/requests", r).await;
        assert_eq!(status, 200, "{body}");
    }
    let job = |request: &str, command: &str| {
        json!({"deploy": {"requestId": request, "id": "1", "command": command,
                          "resources": {"cpus": 0.1, "memoryMb": 32}}})
    };
    for d in [
        server("web"),
        server("api"),
        job("worker", "exec sleep 300"),
        job("tick", "true"),
        job("adhoc", "echo on demand"),
    ] {
        let (status, body) = f.post("/api/deploys", d).await;
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..2 {
        let (status, body) = f.post("/api/requests/request/adhoc/run", json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    // Every long-running instance is up and healthy.
    let healthy = |request: &'static str, n: usize| {
        let f = &f;
        async move {
            let tasks = f.tasks_of(request).await;
            tasks.len() == n && tasks.iter().all(|t| t["healthy"] == true)
        }
    };
    let up = wait_for(TIMEOUT * 3, || async {
        healthy("web", 2).await && healthy("api", 2).await && healthy("worker", 1).await
    })
    .await;
    assert!(
        up,
        "{:?}\n{}",
        f.get("/api/tasks/active").await,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Spread: each service's two instances on two racks.
    for request in ["web", "api"] {
        let racks: std::collections::BTreeSet<String> = f
            .tasks_of(request)
            .await
            .iter()
            .filter_map(|t| t["agentId"].as_str().and_then(rack_of))
            .collect();
        assert_eq!(racks.len(), 2, "{request} on racks {racks:?}");
    }
    let (_, all) = f.get("/api/tasks/active").await;
    let agents: std::collections::BTreeSet<&str> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["agentId"].as_str())
        .collect();
    assert!(agents.len() >= 2, "the agents share the work: {all}");
    // Both services answer through HAProxy, by path.
    for request in ["web", "api"] {
        let url = format!("http://{}/{request}/", lb.bind);
        let answered = wait_for(TIMEOUT, || async {
            match reqwest::get(&url).await {
                Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|t| t.trim() == request),
                _ => false,
            }
        })
        .await;
        assert!(
            answered,
            "{url}: {:?}",
            f.get("/api/loadbalancer/upstreams").await
        );
    }
    // The cron job keeps running, the on-demand runs ran.
    assert!(
        wait_for(TIMEOUT * 2, || async {
            f.runs("tick", "SUCCEEDED").await >= 2 && f.runs("adhoc", "SUCCEEDED").await == 2
        })
        .await,
        "{:?}\n{:?}",
        f.get("/api/history/request/tick/runs").await,
        f.get("/api/history/request/adhoc/runs").await
    );
    for job in ["tick", "adhoc"] {
        assert_eq!(
            f.runs(job, "FAILED").await,
            0,
            "{job}: {:?}",
            f.get(&format!("/api/history/request/{job}/runs")).await
        );
    }
}

/// A task's log through the framework: `corral workloads logs -f` follows a
/// job run's stdout live from its agent (rotated by the agent's logrotate
/// container logger) until the run ends; once the sandbox is gone (as after
/// garbage collection) the same log is read from the task log archive the
/// agent copied it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_logs_are_followed_live_and_read_back_from_the_archive() {
    let archive = tempfile::tempdir().expect("archive");
    let c = Cluster::start(ClusterOptions {
        agent_flags: vec![
            "--container_logger=logrotate".into(),
            "--logrotate_max_stdout_size=64KB".into(),
            format!("--task_log_archive={}", archive.path().display()),
        ],
        ..Default::default()
    })
    .await;
    let log = c.dir().join("workloads.log");
    let f = Framework::spawn(
        &c.master,
        &[format!("--task_log_archive={}", archive.path().display())],
        &log,
    );
    assert!(f.subscribed().await);
    f.post(
        "/api/requests",
        json!({"id": "chatty", "requestType": "ON_DEMAND"}),
    )
    .await;
    let (status, body) = f
        .post(
            "/api/deploys",
            json!({"deploy": {"requestId": "chatty", "id": "1",
                "command": "for i in $(seq 1 30); do echo line-$i; sleep 0.1; done",
                "resources": {"cpus": 0.1, "memoryMb": 32}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = f.post("/api/requests/request/chatty/run", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let run: Value = serde_json::from_str(&body).expect("run");
    let task_id = format!("chatty-{}", run["runId"].as_str().expect("runId"));
    // Follow it from the start, as soon as it runs.
    assert!(
        wait_for(TIMEOUT, || async {
            f.get(&format!("/api/sandbox/{task_id}/read")).await.0 == 200
        })
        .await,
        "{:?}",
        f.get(&format!("/api/sandbox/{task_id}/read")).await
    );
    let follow = tokio::time::timeout(
        TIMEOUT * 2,
        tokio::process::Command::new(corral_bin())
            .args(["workloads", "logs", "--api", &f.url, &task_id, "-f"])
            .output(),
    )
    .await
    .expect("logs -f ends once the run has ended")
    .expect("corral workloads logs");
    let text = String::from_utf8_lossy(&follow.stdout);
    assert!(
        follow.status.success(),
        "{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    let expected: String = (1..=30).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text, expected);
    let (_, live) = f.get(&format!("/api/sandbox/{task_id}/read")).await;
    assert_eq!(live["source"], "agent", "{live}");

    // The agent archives the run's logs; then the sandbox goes.
    let archived = wait_for(TIMEOUT, || async {
        corral_tests::files_under(archive.path())
            .iter()
            .any(|p| p.ends_with("stdout") && p.to_string_lossy().contains(&task_id))
    })
    .await;
    assert!(archived, "{:?}", corral_tests::files_under(archive.path()));
    let runs = c.agents[0]
        .work_dir
        .join("slaves")
        .join(&c.agents[0].id)
        .join("frameworks");
    for fw in std::fs::read_dir(&runs).expect("frameworks").flatten() {
        let dir = fw.path().join("executors").join(&task_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the sandbox");
        }
    }
    let (status, from_archive) = f.get(&format!("/api/sandbox/{task_id}/read")).await;
    assert_eq!(status, 200, "{from_archive}");
    assert_eq!(from_archive["source"], "archive");
    assert_eq!(from_archive["data"], expected.as_str());
    let cat = tokio::process::Command::new(corral_bin())
        .args(["workloads", "logs", "--api", &f.url, &task_id])
        .output()
        .await
        .expect("corral workloads logs");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), expected);
    // A path that is not a log file is refused.
    let (status, _) = f
        .get(&format!(
            "/api/sandbox/{task_id}/read?path=../../etc/passwd"
        ))
        .await;
    assert_eq!(status, 400);
}
