//! The YARN bridge (`corral yarn-bridge`) against a real master and real
//! agents, through Myriad's REST API. YARN itself cannot be downloaded
//! here, so YARN is played by test doubles, named so: a ResourceManager
//! stand-in (`tests/yarn/rm_standin.py`, Hadoop's REST shapes) and a `yarn`
//! command stand-in (`tests/yarn/home/bin/yarn`) that the agents launch as
//! the NodeManager — it checks the configuration the bridge generated,
//! binds the four ports, serves `/ws/v1/node/info` and registers with the
//! RM stand-in — and that the bridge runs as `yarn rmadmin`.

use std::time::Duration;

use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::yarn::{Bridge, RmStandin};
use corral_tests::{corral_bin, files_under, wait_for, Cluster, ClusterOptions, TIMEOUT};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

/// `n` agents named `yarn-node-<i>`, each with its own port range from
/// `first_port` (below the kernel's ephemeral range, 32768 and up, so no
/// port another process of the suite was given can clash with a
/// NodeManager's).
async fn cluster(n: usize, first_port: u32, resources: &str) -> Cluster {
    Cluster::start(ClusterOptions {
        agents: n,
        agent_resources: Some(resources.to_string()),
        per_agent_flags: (0..n)
            .map(|i| {
                let lo = first_port + 100 * i as u32;
                vec![
                    format!("--hostname=yarn-node-{}", i + 1),
                    format!("--resources={resources};ports:[{lo}-{}]", lo + 99),
                ]
            })
            .collect(),
        ..Default::default()
    })
    .await
}

/// The master's running tasks of the bridge whose id starts with `prefix`.
async fn running_tasks(c: &Cluster, prefix: &str) -> Vec<Value> {
    let state = c.get_json("/master/state").await;
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter(|t| t["id"].as_str().is_some_and(|id| id.starts_with(prefix)))
        .collect()
}

fn resources_of(task: &Value, name: &str) -> f64 {
    task["resources"][name].as_f64().unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flex_up_on_three_agents_with_constraints_and_a_graceful_flex_down() {
    let c = cluster(3, 21000, "cpus:8;mem:16384;disk:1024").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rm = RmStandin::start(dir.path(), &[]).await;
    let b = Bridge::start(
        &c.master,
        &rm,
        dir.path(),
        &["--decommission_timeout=2mins".to_string()],
    )
    .await;

    // Bad input: 400 with a message, and nothing changes.
    for (body, says) in [
        (
            json!({"instances": 1, "profile": "huge"}),
            "large, medium, small, zero",
        ),
        (json!({"instances": 0, "profile": "small"}), "instances"),
        (json!({"instances": -2, "profile": "small"}), "instances"),
        (json!({"instances": 1}), "profile: required"),
        (
            json!({"instances": 1, "profile": "small", "constraints": ["hostname yarn-node-1"]}),
            "LIKE",
        ),
        (
            json!({"instances": 1, "profile": "small", "constraints": ["hostname LIKE (unclosed"]}),
            "invalid regex",
        ),
        (json!({"instances": "two", "profile": "small"}), "instances"),
    ] {
        let (status, text) = b.flexup(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {text}");
        assert!(text.contains(says), "{body} -> {text}");
    }
    let (status, text) = b.put_raw("/api/cluster/flexup", "{not json").await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = b.flexdown(json!({"instances": 1})).await;
    assert_eq!(status, 400, "flex down of more than run: {text}");
    assert!(text.contains("only 0"), "{text}");
    let empty =
        json!({"pendingTasks": [], "stagingTasks": [], "activeTasks": [], "killableTasks": []});
    assert_eq!(b.state().await, empty, "bad input changed nothing");

    // Two small NodeManagers on yarn-node-1 and -2 only.
    let (status, text) = b
        .flexup(json!({"instances": 2, "profile": "small",
                       "constraints": ["hostname LIKE yarn-node-[12]"]}))
        .await;
    assert_eq!(status, 202, "{text}");
    assert!(
        wait_for(LONG, || async { b.tasks("activeTasks").await.len() == 2 }).await,
        "two NodeManagers active: {}\n{}",
        b.state().await,
        b.log_text()
    );
    let active = b.tasks("activeTasks").await;
    assert!(
        active.iter().all(|t| t.starts_with("nm.small.")),
        "{active:?}"
    );
    // Registered with the RM (the stand-in exits if its configuration is
    // wrong), on the two hosts, with the profile's capacity.
    assert!(
        wait_for(LONG, || async {
            rm.hosts_in("RUNNING").await == ["yarn-node-1", "yarn-node-2"]
        })
        .await,
        "nodes: {:?}",
        rm.nodes().await
    );
    for host in ["yarn-node-1", "yarn-node-2"] {
        let node = rm.node(host).await.expect("node");
        assert_eq!(node["totalResource"]["memory"], 2048, "{node}");
        assert_eq!(node["totalResource"]["vCores"], 2, "{node}");
    }
    // The tasks take the profile plus the NodeManager's overhead and four
    // ports.
    let tasks = running_tasks(&c, "nm.small.").await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for t in &tasks {
        assert!((resources_of(t, "cpus") - 2.2).abs() < 1e-9, "{t}");
        assert_eq!(resources_of(t, "mem"), 3072.0, "{t}");
        let ports = t["resources"]["ports"].as_str().unwrap_or("");
        assert!(!ports.is_empty(), "{t}");
    }

    // The bridge's own pages in a real browser: the NodeManagers, one
    // NodeManager, the profiles and the autoscaler; the master links to
    // them (webui_url).
    let web = Browser::start().await.expect("browser");
    for (path, name, expect) in [
        (
            format!("/ui/nodemanagers/{}", active[0]),
            "nodemanager",
            active[0].clone(),
        ),
        ("/ui/profiles".to_string(), "profiles", "small".to_string()),
        (
            "/ui/autoscaler".to_string(),
            "autoscaler",
            "no autoscaling policies".to_string(),
        ),
        ("/ui".to_string(), "nodemanagers", "yarn-node-2".to_string()),
    ] {
        web.open(&format!("{}{path}", b.url))
            .await
            .expect("page loads");
        web.wait_for_text(&expect, TIMEOUT)
            .await
            .expect("the page shows it");
        web.screenshot(&format!("yarn-bridge-{name}"), DESKTOP)
            .await
            .expect("shot");
        web.screenshot(&format!("yarn-bridge-{name}"), PHONE)
            .await
            .expect("shot");
    }
    let text = web.main_text().await.expect("text");
    assert!(
        active.iter().all(|id| text.contains(id.as_str()))
            && text.contains("yarn-node-1")
            && text.contains("ACTIVE"),
        "{text}"
    );
    let state = c.get_json("/master/state").await;
    let fw = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "corral-yarn-bridge")
        .cloned()
        .expect("the bridge in /master/state");
    assert_eq!(fw["webui_url"], format!("{}/ui", b.url), "{fw}");
    web.mark_page().await.expect("mark the page");

    // A third one cannot go there (one per host), nor a large one anywhere
    // (8 cpus): they wait, saying why.
    let (status, _) = b
        .flexup(json!({"instances": 1, "profile": "small",
                       "constraints": ["hostname LIKE yarn-node-[12]"]}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = b.flexup(json!({"instances": 1, "profile": "large"})).await;
    assert_eq!(status, 202);
    let why = |nms: &[Value], profile: &str| {
        nms.iter()
            .find(|n| n["profile"] == profile && n["phase"] == "PENDING")
            .and_then(|n| n["whyPending"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        wait_for(LONG, || async {
            let nms = b.nodemanagers().await;
            why(&nms, "small").contains("a NodeManager runs there already")
                && why(&nms, "small").contains("does not match")
                && why(&nms, "large").contains("not enough for profile large")
        })
        .await,
        "{:?}",
        b.nodemanagers().await
    );
    assert_eq!(b.tasks("pendingTasks").await.len(), 2);
    // The open NodeManagers page shows the new, pending ones without a
    // reload.
    web.wait_for_text("nm.large.", TIMEOUT)
        .await
        .expect("the large NodeManager on the open page");
    web.wait_for_text("PENDING", TIMEOUT)
        .await
        .expect("pending on the open page");
    web.assert_not_reloaded().await.expect("updated in place");
    web.quit().await.expect("quit the browser");
    // Flex down takes pending ones first.
    let (status, text) = b
        .flexdown(json!({"instances": 1, "profile": "large"}))
        .await;
    assert_eq!(status, 202, "{text}");
    let (status, text) = b
        .flexdown(json!({"instances": 1, "profile": "small"}))
        .await;
    assert_eq!(status, 202, "{text}");
    assert!(b.tasks("pendingTasks").await.is_empty());
    assert_eq!(
        b.tasks("activeTasks").await,
        active,
        "running ones untouched"
    );

    // A YARN app runs one container; flex down picks the idle node.
    let app = rm.submit(1, 1024, 1).await;
    assert!(
        wait_for(LONG, || async {
            rm.metrics().await["containersAllocated"] == 1
        })
        .await,
        "{}",
        rm.get("/standin/state").await
    );
    let nodes = rm.nodes().await;
    let busy = nodes
        .iter()
        .find(|n| n["numContainers"] == 1)
        .and_then(|n| n["nodeHostName"].as_str())
        .expect("a node runs the container")
        .to_string();
    let idle = if busy == "yarn-node-1" {
        "yarn-node-2"
    } else {
        "yarn-node-1"
    };
    let (status, text) = b.flexdown(json!({"instances": 1})).await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains(idle),
        "the idle node is decommissioned: {text}"
    );
    // YARN decommissions it (nothing to drain), its NodeManager goes.
    assert!(
        wait_for(LONG, || async { b.tasks("activeTasks").await.len() == 1 }).await,
        "{}",
        b.state().await
    );
    assert!(
        wait_for(LONG, || async {
            b.tasks("killableTasks").await.is_empty() && running_tasks(&c, "nm.").await.len() == 1
        })
        .await,
        "{}",
        b.state().await
    );
    let excluded = std::fs::read_to_string(&rm.exclude_file).unwrap_or_default();
    assert!(
        !excluded.lines().any(|l| l == idle),
        "a node whose NodeManager is gone leaves the exclude file: {excluded}"
    );
    assert_eq!(
        rm.node(idle).await.map(|n| n["state"].clone()),
        Some(json!("DECOMMISSIONED"))
    );

    // The busy node: decommissioning waits for its container.
    let (status, text) = b.flexdown(json!({"instances": 1})).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains(&busy), "{text}");
    assert!(
        wait_for(LONG, || async {
            rm.node(&busy)
                .await
                .is_some_and(|n| n["state"] == "DECOMMISSIONING")
        })
        .await,
        "{:?}",
        rm.nodes().await
    );
    assert!(std::fs::read_to_string(&rm.exclude_file)
        .unwrap_or_default()
        .lines()
        .any(|l| l == busy));
    // While YARN drains it, its NodeManager keeps running (killable in
    // Myriad's terms) — checked over several polls of the bridge.
    for _ in 0..5 {
        let beat = |n: Option<Value>| n.and_then(|n| n["lastHealthUpdate"].as_i64()).unwrap_or(0);
        let before = beat(rm.node(&busy).await);
        assert!(
            wait_for(TIMEOUT, || async {
                beat(rm.node(&busy).await) > before + 250
            })
            .await,
            "the node heartbeats"
        );
        assert_eq!(b.tasks("killableTasks").await.len(), 1);
        assert_eq!(
            running_tasks(&c, "nm.").await.len(),
            1,
            "not killed while draining"
        );
        assert_eq!(
            rm.node(&busy).await.map(|n| n["numContainers"].clone()),
            Some(json!(1))
        );
    }
    // The app finishes: YARN decommissions the node, the task goes.
    rm.finish(&app).await;
    assert!(
        wait_for(LONG, || async {
            b.state().await == empty && running_tasks(&c, "nm.").await.is_empty()
        })
        .await,
        "{}\n{}",
        b.state().await,
        b.log_text()
    );
    assert_eq!(
        rm.node(&busy).await.map(|n| n["state"].clone()),
        Some(json!("DECOMMISSIONED"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_the_resourcemanagers_demand() {
    let c = cluster(2, 22000, "cpus:4;mem:8192;disk:1024").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rm = RmStandin::start(dir.path(), &[]).await;
    // Hadoop as a tarball the agents fetch (the stand-in `yarn` packed as
    // hadoop-standin/).
    let tarball = dir.path().join("hadoop-standin.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tarball).expect("tarball"),
            flate2::Compression::fast(),
        );
        let mut t = tar::Builder::new(gz);
        t.append_dir_all("hadoop-standin", corral_tests::yarn::standin_yarn_home())
            .expect("pack");
        t.into_inner().expect("tar").finish().expect("gzip");
    }
    let policy = json!([{"profile": "small", "min": 0, "max": 2, "scaleUpFactor": 1.0,
        "scaleDownFactor": 1.0, "scaleUpCooldownSecs": 1, "scaleDownCooldownSecs": 2,
        "idleBeforeScaleDownSecs": 2}]);
    let b = Bridge::start(
        &c.master,
        &rm,
        dir.path(),
        &[
            format!("--autoscale={policy}"),
            "--decommission_timeout=30secs".to_string(),
            format!("--yarn_tarball=file://{}", tarball.display()),
            "--yarn_tarball_home=hadoop-standin".to_string(),
        ],
    )
    .await;
    // No demand: nothing.
    let decisions = || async {
        b.get("/api/autoscaler").await.1["decisions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        wait_for(TIMEOUT, || async {
            decisions().await.iter().any(|d| d["action"] == "HOLD")
        })
        .await
    );
    assert!(b.tasks("activeTasks").await.is_empty());

    // With the role's quota limit at 1 cpu, a small NodeManager (2.2 cpus)
    // gets no offer, and says so.
    let quota = |cpus: f64| {
        json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{
            "role": "yarn", "limits": {"cpus": {"value": cpus}}}]}})
    };
    let (status, body) = c.operator(quota(1.0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = b.flexup(json!({"instances": 1, "profile": "small"})).await;
    assert_eq!(status, 202);
    assert!(
        wait_for(LONG, || async {
            b.nodemanagers().await.iter().any(|n| {
                n["whyPending"]
                    .as_str()
                    .is_some_and(|w| w.contains("quota limit is reached") && w.contains("cpus"))
            })
        })
        .await,
        "{:?}\n{}",
        b.nodemanagers().await,
        b.log_text()
    );
    let (status, _) = b.flexdown(json!({"instances": 1})).await;
    assert_eq!(status, 202);
    assert!(b.tasks("pendingTasks").await.is_empty());
    let (status, body) = c.operator(quota(1000.0)).await;
    assert_eq!(status, 200, "{body}");

    // Three pending containers of 1 GB: two small NodeManagers (2 GB each).
    let app = rm.submit(3, 1024, 1).await;
    assert!(
        wait_for(LONG, || async {
            rm.hosts_in("RUNNING").await.len() == 2
                && rm.metrics().await["containersAllocated"] == 3
        })
        .await,
        "{}\n{}",
        rm.get("/standin/state").await,
        b.log_text()
    );
    assert_eq!(rm.metrics().await["pendingMB"], 0);
    let up = decisions()
        .await
        .into_iter()
        .find(|d| d["action"] == "FLEX_UP")
        .expect("a FLEX_UP decision");
    assert_eq!(up["profile"], "small");
    assert!(up["instances"].as_u64().unwrap_or(0) >= 1, "{up}");
    assert!(
        up["reason"].as_str().unwrap_or("").contains("pendingMB"),
        "{up}"
    );
    assert!(
        up["metrics"]["pendingMB"].as_f64().unwrap_or(0.0) > 0.0,
        "{up}"
    );
    assert_eq!(b.tasks("activeTasks").await.len(), 2, "max 2");
    // They ran from the fetched tarball.
    for a in &c.agents {
        let yarn: Vec<_> = files_under(&a.work_dir)
            .into_iter()
            .filter(|p| p.ends_with("hadoop-standin/bin/yarn"))
            .filter(|p| !p.to_string_lossy().contains("/runs/latest/"))
            .collect();
        assert_eq!(yarn.len(), 1, "{:?}", files_under(&a.work_dir));
    }

    // Demand gone: idle nodes are flexed down after the cooldown.
    rm.finish(&app).await;
    assert!(
        wait_for(LONG, || async {
            b.tasks("activeTasks").await.is_empty()
                && b.tasks("killableTasks").await.is_empty()
                && running_tasks(&c, "nm.").await.is_empty()
        })
        .await,
        "{}\n{}",
        b.state().await,
        b.log_text()
    );
    let down = decisions()
        .await
        .into_iter()
        .find(|d| d["action"] == "FLEX_DOWN")
        .expect("a FLEX_DOWN decision");
    assert!(
        down["reason"].as_str().unwrap_or("").contains("idle"),
        "{down}"
    );
    assert!(rm.hosts_in("RUNNING").await.is_empty());

    // Myriad's framework shutdown: torn down, and the bridge exits.
    let mut b = b;
    let r = reqwest::Client::new()
        .post(format!("{}/api/framework/shutdown/framework", b.url))
        .send()
        .await
        .expect("shutdown");
    assert_eq!(r.status().as_u16(), 200);
    let exited = tokio::time::timeout(TIMEOUT, b.child.wait()).await;
    assert!(exited.is_ok(), "the bridge exits after a shutdown");
    assert!(
        wait_for(TIMEOUT, || async {
            c.get_json("/master/state").await["frameworks"]
                .as_array()
                .is_some_and(|f| !f.iter().any(|f| f["name"] == "corral-yarn-bridge"))
        })
        .await,
        "the framework is torn down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_grained_capacity_follows_offers_with_container_placeholders() {
    // Hadoop 3.3 and later: capacity through the RM's REST endpoint.
    fine_grained(23000, &[], "rest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_grained_capacity_through_rmadmin_on_an_older_resourcemanager() {
    // An RM before Hadoop 3.3: capacity goes through `yarn rmadmin`.
    fine_grained(25000, &["--no-node-resource-rest"], "rmadmin").await;
}

async fn fine_grained(first_port: u32, rm_flags: &[&str], via: &str) {
    let c = cluster(1, first_port, "cpus:4;mem:8192;disk:1024").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rm = RmStandin::start(dir.path(), rm_flags).await;
    let b = Bridge::start(
        &c.master,
        &rm,
        dir.path(),
        &["--fgs_hold=10mins".to_string()],
    )
    .await;
    let (status, text) = b.flexup(json!({"instances": 1, "profile": "zero"})).await;
    assert_eq!(status, 202, "{text}");
    // The zero-profile NodeManager registers with no capacity; then the
    // rest of the agent (4 - 0.2 cpus, 8192 - 1024 MB), held, becomes its
    // capacity.
    assert!(
        wait_for(LONG, || async {
            rm.node("yarn-node-1").await.is_some_and(|n| {
                n["state"] == "RUNNING"
                    && n["totalResource"]["memory"] == 7168
                    && n["totalResource"]["vCores"] == 3
            })
        })
        .await,
        "{:?}\n{}",
        rm.nodes().await,
        b.log_text()
    );
    // YARN runs two containers: each gets a placeholder task of its size.
    let app = rm.submit(2, 1024, 1).await;
    assert!(
        wait_for(LONG, || async {
            running_tasks(&c, "yarn_container_").await.len() == 2
        })
        .await,
        "{}\n{}",
        c.get_json("/master/state").await,
        b.log_text()
    );
    for t in running_tasks(&c, "yarn_container_").await {
        assert_eq!(resources_of(&t, "mem"), 1024.0, "{t}");
        assert_eq!(resources_of(&t, "cpus"), 1.0, "{t}");
    }
    let (_, v) = b.get("/api/nodemanagers").await;
    let fgs = &v["fineGrained"][0];
    assert_eq!(fgs["hostname"], "yarn-node-1", "{v}");
    assert_eq!(fgs["placeholders"].as_array().map(Vec::len), Some(2), "{v}");
    // The offers the placeholders were launched on went back with their
    // rest; once offered again and held, the capacity is the held
    // resources plus what the placeholders hold: the whole agent again.
    assert!(
        wait_for(LONG, || async {
            rm.node("yarn-node-1")
                .await
                .is_some_and(|n| n["totalResource"]["memory"] == 7168 && n["numContainers"] == 2)
        })
        .await,
        "{:?}",
        rm.nodes().await
    );
    let node = rm.node("yarn-node-1").await.expect("node");
    assert_eq!(node["usedMemoryMB"], 2048, "{node}");
    assert!(node["availMemoryMB"].as_i64().unwrap_or(-1) >= 0, "{node}");
    // The containers finish: the placeholders go, resources come back.
    rm.finish(&app).await;
    assert!(
        wait_for(LONG, || async {
            running_tasks(&c, "yarn_container_").await.is_empty()
        })
        .await,
        "{}",
        b.log_text()
    );
    assert!(
        wait_for(LONG, || async {
            rm.node("yarn-node-1")
                .await
                .is_some_and(|n| n["totalResource"]["memory"] == 7168 && n["numContainers"] == 0)
        })
        .await,
        "{:?}",
        rm.nodes().await
    );
    let log = b.log_text();
    assert!(
        log.contains(&format!("via=\"{via}\"")) || log.contains(&format!("via={via}")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_with_sigkill_comes_back_without_a_duplicate() {
    let c = cluster(3, 24000, "cpus:4;mem:8192;disk:1024").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rm = RmStandin::start(dir.path(), &[]).await;
    let mut b = Bridge::start(&c.master, &rm, dir.path(), &[]).await;
    let (status, _) = b.flexup(json!({"instances": 2, "profile": "small"})).await;
    assert_eq!(status, 202);
    assert!(
        wait_for(LONG, || async { b.tasks("activeTasks").await.len() == 2 }).await,
        "{}",
        b.log_text()
    );
    let before = b.tasks("activeTasks").await;
    let (_, v) = b.get("/api/nodemanagers").await;
    let framework_id = v["frameworkId"].clone();
    // kill -9.
    b.child.start_kill().expect("kill");
    let _ = b.child.wait().await;
    // The NodeManagers keep running meanwhile.
    assert_eq!(running_tasks(&c, "nm.").await.len(), 2);

    let b = Bridge::start(&c.master, &rm, dir.path(), &[]).await;
    let (_, v) = b.get("/api/nodemanagers").await;
    assert_eq!(v["frameworkId"], framework_id, "the same framework");
    assert!(
        wait_for(LONG, || async { b.tasks("activeTasks").await == before }).await,
        "{}\n{}",
        b.state().await,
        b.log_text()
    );
    // The CLI: tables, and errors naming the flag.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(corral_bin())
            .arg("yarn")
            .args(args)
            .args(["--api", &b.url])
            .output()
            .expect("corral yarn");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["status"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("TASK"), "{out}");
    for id in &before {
        assert!(out.contains(id.as_str()), "{out}");
    }
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("nm.small.") && l.contains(" ACTIVE "))
            .count(),
        2,
        "{out}"
    );
    let (ok, out, err) = cli(&["profiles"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["small", "2", "2048", "2.2", "3072"]),
        "{out}"
    );
    let (ok, _, err) = cli(&["flexup", "-n", "0", "-p", "small"]);
    assert!(!ok && err.contains("--instances"), "{err}");
    let (ok, _, err) = cli(&["flexup", "-n", "1"]);
    assert!(!ok && err.contains("--profile"), "{err}");
    let (ok, _, err) = cli(&["flexup", "-n", "1", "-p", "nope"]);
    assert!(
        !ok && err.contains("400") && err.contains("large, medium, small, zero"),
        "{err}"
    );
    assert_eq!(
        b.tasks("activeTasks").await,
        before,
        "refusals changed nothing"
    );

    // One more: it goes to the third agent; the first two are not doubled.
    let (ok, out, err) = cli(&["flexup", "-n", "1", "-p", "small"]);
    assert!(ok, "{err}");
    assert!(out.contains("flex up accepted"), "{out}");
    assert!(
        wait_for(LONG, || async {
            b.tasks("activeTasks").await.len() == 3 && rm.hosts_in("RUNNING").await.len() == 3
        })
        .await,
        "{}\n{:?}",
        b.state().await,
        rm.nodes().await
    );
    let tasks = running_tasks(&c, "nm.").await;
    assert_eq!(tasks.len(), 3, "no duplicate NodeManager: {tasks:?}");
    let mut agents: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["slave_id"].as_str().map(str::to_string))
        .collect();
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), 3, "one per agent: {tasks:?}");
    for id in &before {
        assert!(b.tasks("activeTasks").await.contains(id));
    }
    assert!(rm.hosts_in("LOST").await.is_empty());
}

/// Two bridges with `--zk`: one leads, the other redirects API calls to it;
/// `kill -9` of the leader and the standby takes the NodeManagers over from
/// ZooKeeper, without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_elect_a_leader_and_the_standby_takes_over() {
    let c = cluster(3, 26000, "cpus:4;mem:8192;disk:1024").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = corral_master::testing::ZooKeeperServer::start(dir.path(), 1).expect("zookeeper");
    let rm = RmStandin::start(dir.path(), &[]).await;
    let flag = format!("--zk=zk://{}/corral/yarn", zk.connect);
    let mut a = Bridge::start(&c.master, &rm, dir.path(), std::slice::from_ref(&flag)).await;
    let b = Bridge::spawn(&c.master, &rm, dir.path(), std::slice::from_ref(&flag));
    let (standby, leader) = (
        format!("{}/api/state", b.url),
        format!("{}/api/state", a.url),
    );
    assert!(
        wait_for(TIMEOUT, || corral_tests::redirects_to(&standby, &leader)).await,
        "the standby redirects to the leader\n{}",
        b.log_text()
    );
    let (status, _) = a.flexup(json!({"instances": 2, "profile": "small"})).await;
    assert_eq!(status, 202);
    assert!(
        wait_for(LONG, || async { a.tasks("activeTasks").await.len() == 2 }).await,
        "{}",
        a.log_text()
    );
    let before = a.tasks("activeTasks").await;

    a.child.start_kill().expect("kill -9 the leader");
    let _ = a.child.wait().await;
    assert!(
        wait_for(LONG, || async {
            b.get("/api/nodemanagers").await.1["subscribed"] == true
        })
        .await,
        "the standby takes over\n{}",
        b.log_text()
    );
    assert!(
        wait_for(LONG, || async { b.tasks("activeTasks").await == before }).await,
        "{}\n{}",
        b.state().await,
        b.log_text()
    );
    let (status, _) = b.flexup(json!({"instances": 1, "profile": "small"})).await;
    assert_eq!(status, 202);
    assert!(
        wait_for(LONG, || async {
            b.tasks("activeTasks").await.len() == 3 && rm.hosts_in("RUNNING").await.len() == 3
        })
        .await,
        "{}",
        b.log_text()
    );
    assert_eq!(running_tasks(&c, "nm.").await.len(), 3, "no duplicate");
}
