//! The operator CLI end to end: `corral agents|frameworks|tasks|roles|
//! weights|quota|reservations|volumes|offers|maintenance|logs|top` and the
//! write commands (`reserve`, `unreserve`, `create-volume`,
//! `destroy-volume`, `quota set`, `weights set`, `teardown`, `drain`) run as
//! processes against a real master and agent, their tables and `--json`
//! checked against the master's own operator API; `--master` in each form
//! (host:port, http://, a list, zk:// with a standby); completions and man
//! pages; bad input refused with the right exit code and nothing changed.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, corral_bin, free_port, scalar_of, wait_for, Cluster, ClusterOptions, Scheduler,
    TIMEOUT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

/// What a `corral` run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as JSON (panics with the output when it is not).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts exit 0 and returns self.
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        assert!(
            !self.stdout.contains('\x1b'),
            "colour codes on a pipe: {self:?}"
        );
        self
    }

    /// The table's data lines (the header dropped).
    fn rows(&self) -> Vec<&str> {
        self.stdout.lines().skip(1).collect()
    }
}

fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(corral_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NO_COLOR")
        .env_remove("CORRAL_LOG")
        .kill_on_drop(true);
    // The outer environment must not point the CLI anywhere.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MESOS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `corral <args>` to its end (at most 60 s).
async fn corral(args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(args).output())
        .await
        .unwrap_or_else(|_| panic!("corral {args:?} did not end within 60s"))
        .expect("run corral");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `corral <args> --master <the cluster's master>`.
async fn cli(c: &Cluster, args: &[&str]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--master", &c.master]);
    corral(&all).await
}

/// A row of the table whose first column is `first`.
fn row<'a>(run: &'a Run, first: &str) -> Option<Vec<&'a str>> {
    run.rows()
        .into_iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&first))
}

/// The master's GET_<what> answer, straight from the operator API.
async fn operator(c: &Cluster, ty: &str) -> Value {
    let (status, body) = c.operator(json!({"type": ty})).await;
    assert_eq!(status, StatusCode::OK, "{ty}: {body}");
    body
}

/// What the failed commands must not change: agents' totals, tasks,
/// frameworks, weights and quota.
async fn snapshot(c: &Cluster) -> Value {
    let state = c.state_json().await;
    let totals: Vec<Value> = state["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["total_resources"].clone())
        .collect();
    let frameworks: Vec<Value> = state["get_frameworks"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["framework_info"]["id"].clone())
        .collect();
    let tasks: Vec<Value> = state["get_tasks"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!([t["task_id"], t["state"]]))
        .collect();
    json!({
        "totals": totals,
        "frameworks": frameworks,
        "tasks": tasks,
        "weights": operator(c, "GET_WEIGHTS").await["get_weights"],
        "quota": operator(c, "GET_QUOTA").await["get_quota"],
    })
}

/// A framework with a running `sleep` task named `task`.
async fn running_task(c: &Cluster, name: &str, task: &str) -> Scheduler {
    let mut info = corral_tests::default_framework_info(name);
    info["principal"] = json!("ops");
    let mut s = c.subscribe_with(Encoding::Json, info).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].id.clone();
    s.launch(
        &offer,
        vec![command_task(task, &agent, "sleep 1000", 0.1, 32.0)],
    )
    .await;
    s.follow(task, "TASK_RUNNING").await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_show_a_running_task_as_tables_and_json() {
    let c = Cluster::start(ClusterOptions {
        agent_flags: vec!["--attributes=rack:r1;zone:2".into()],
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].clone();
    let mut s = running_task(&c, "cli-e2e", "sleeper").await;
    let fid = s.framework_id.clone();
    // The resources the task left are offered again and kept outstanding.
    let offer = s.offers().await.remove(0);
    let offer_id = offer["id"]["value"].as_str().expect("offer id").to_string();

    // agents
    let run = cli(&c, &["agents"]).await.ok();
    let cols = row(&run, &agent.id).unwrap_or_else(|| panic!("no row for the agent: {run:?}"));
    assert_eq!(cols[1], agent.endpoint, "{run:?}");
    assert_eq!(cols[2], "active", "{run:?}");
    assert_eq!(cols[3], "0.1/2", "cpus used/total: {run:?}");
    assert!(cols.contains(&"rack:r1;zone:2"), "{run:?}");
    let v = cli(&c, &["agents", "--json"]).await.ok().json();
    assert_eq!(
        v,
        operator(&c, "GET_AGENTS").await["get_agents"]["agents"],
        "--json is GET_AGENTS' agents"
    );
    let v = cli(&c, &["agents", "--json", "--attribute", "rack:r1"])
        .await
        .ok()
        .json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let v = cli(&c, &["agents", "--json", "--attribute", "rack:r2"])
        .await
        .ok()
        .json();
    assert_eq!(v, json!([]), "rack:r2 matches no agent");
    let run = cli(
        &c,
        &["agents", "--attribute", "zone:2", "--attribute", "rack:r9"],
    )
    .await
    .ok();
    assert!(run.rows().is_empty(), "{run:?}");

    // frameworks
    let run = cli(&c, &["frameworks"]).await.ok();
    let cols = row(&run, &fid).unwrap_or_else(|| panic!("no row for {fid}: {run:?}"));
    assert_eq!(
        &cols[1..6],
        ["cli-e2e", "*", "ops", "active", "1"],
        "{run:?}"
    );
    assert_eq!(cols.last(), Some(&"1"), "one outstanding offer: {run:?}");
    let v = cli(&c, &["frameworks", "--json"]).await.ok().json();
    assert_eq!(v[0]["framework_info"]["id"]["value"], fid.as_str(), "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // tasks, with each filter both ways
    let run = cli(&c, &["tasks"]).await.ok();
    let cols = row(&run, "sleeper").unwrap_or_else(|| panic!("no sleeper: {run:?}"));
    assert_eq!(
        &cols[1..5],
        ["sleeper", "TASK_RUNNING", fid.as_str(), agent.id.as_str()],
        "{run:?}"
    );
    let all = cli(&c, &["tasks", "--json"]).await.ok().json();
    assert_eq!(all[0]["task_id"]["value"], "sleeper", "{all}");
    assert_eq!(all[0]["state"], "TASK_RUNNING", "{all}");
    for (filter, matches) in [
        (vec!["--framework", fid.as_str()], true),
        (vec!["--framework", "another"], false),
        (vec!["--state", "TASK_RUNNING"], true),
        (vec!["--state", "running"], true),
        (vec!["--state", "TASK_FINISHED"], false),
        (vec!["--agent", agent.id.as_str()], true),
        (vec!["--agent", "elsewhere"], false),
    ] {
        let mut args = vec!["tasks", "--json"];
        args.extend(filter.iter().copied());
        let v = cli(&c, &args).await.ok().json();
        let expected = if matches { all.clone() } else { json!([]) };
        assert_eq!(v, expected, "tasks {filter:?}");
    }

    // roles, weights, quota: the default role and nothing set
    let run = cli(&c, &["roles"]).await.ok();
    let cols = row(&run, "*").unwrap_or_else(|| panic!("no * role: {run:?}"));
    assert_eq!(cols[1], "1", "weight: {run:?}");
    assert_eq!(cols[2], "1", "one framework: {run:?}");
    let v = cli(&c, &["roles", "--json"]).await.ok().json();
    assert_eq!(v, operator(&c, "GET_ROLES").await["get_roles"]["roles"]);
    assert_eq!(cli(&c, &["quota", "--json"]).await.ok().json(), json!([]));
    assert_eq!(cli(&c, &["weights", "--json"]).await.ok().json(), json!([]));
    assert!(cli(&c, &["quota"]).await.ok().rows().is_empty());

    // reservations and volumes: none yet
    assert_eq!(
        cli(&c, &["reservations", "--json"]).await.ok().json(),
        json!([])
    );
    assert_eq!(cli(&c, &["volumes", "--json"]).await.ok().json(), json!([]));
    let run = cli(&c, &["reservations"]).await.ok();
    assert!(run.stdout.starts_with("AGENT"), "{run:?}");
    assert!(run.rows().is_empty(), "{run:?}");

    // offers
    let run = cli(&c, &["offers"]).await.ok();
    let cols = row(&run, &offer_id).unwrap_or_else(|| panic!("no offer {offer_id}: {run:?}"));
    assert_eq!(&cols[1..3], [fid.as_str(), agent.id.as_str()], "{run:?}");
    let v = cli(&c, &["offers", "--json"]).await.ok().json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["id"]["value"], offer_id.as_str(), "{v}");
    assert_eq!(
        scalar_of(&v[0]["resources"], "cpus"),
        scalar_of(&offer["resources"], "cpus")
    );
    let v = cli(&c, &["offers", "--json", "--framework", "another"])
        .await
        .ok()
        .json();
    assert_eq!(v, json!([]));

    // maintenance: empty, then a schedule posted to Mesos' endpoint.
    let run = cli(&c, &["maintenance"]).await.ok();
    assert!(
        run.stdout.contains("Schedule:") && run.stdout.contains("MACHINES"),
        "{run:?}"
    );
    let schedule = json!({"windows": [{
        "machine_ids": [{"hostname": "maint-host.example", "ip": "10.1.2.3"}],
        "unavailability": {"start": {"nanoseconds": 1_900_000_000_000_000_000_i64},
                           "duration": {"nanoseconds": 3_600_000_000_000_i64}},
    }]});
    let (status, _, body) = c
        .post_raw(
            "/maintenance/schedule",
            &[("Content-Type", "application/json")],
            serde_json::to_vec(&schedule).expect("json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let run = cli(&c, &["maintenance"]).await.ok();
    let scheduled = row(&run, "maint-host.example").unwrap_or_else(|| panic!("{run:?}"));
    assert!(scheduled.contains(&"2030-03-17T17:46:40Z"), "{run:?}");
    assert!(run.stdout.contains("DRAINING"), "{run:?}");
    let v = cli(&c, &["maintenance", "--json"]).await.ok().json();
    assert_eq!(v["schedule"], schedule, "{v}");
    assert_eq!(
        v["status"]["draining_machines"][0]["id"]["hostname"],
        "maint-host.example"
    );
    // A machine twice is refused, and the schedule stays as it was.
    let twice =
        json!({"windows": [schedule["windows"][0].clone(), schedule["windows"][0].clone()]});
    let (status, body) = c
        .operator(json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": twice}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("more than one window"), "{body}");
    let v = cli(&c, &["maintenance", "--json"]).await.ok().json();
    assert_eq!(v["schedule"], schedule, "{v}");
    // Cleared by an empty schedule, through the operator API.
    let (status, body) = c
        .operator(json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": {}}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = cli(&c, &["maintenance", "--json"]).await.ok().json();
    assert_eq!(v["schedule"], json!({}), "{v}");

    // top: the agent and the task's container
    let run = cli(&c, &["top", "--once"]).await.ok();
    assert!(row(&run, &agent.id).is_some(), "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&agent.id) && l.contains(" sleeper ")),
        "the sleeper's container: {run:?}"
    );
    let v = cli(&c, &["top", "--once", "--json", "--interval", "200ms"])
        .await
        .ok()
        .json();
    let container = &v["containers"][0];
    assert_eq!(container["executor_id"], "sleeper", "{v}");
    assert_eq!(container["framework_id"], fid.as_str(), "{v}");
    assert!(container["cpus_used"].is_number(), "two samples: {v}");
    assert_eq!(v["agents"][0]["reachable"], true, "{v}");

    // --master in its other forms, and MESOS_MASTER.
    let dead = format!("127.0.0.1:{}", free_port());
    for master in [
        format!("http://{}", c.master),
        format!("{dead},{}", c.master),
        format!("http://{}/", c.master),
    ] {
        let v = corral(&["agents", "--json", "--master", &master])
            .await
            .ok()
            .json();
        assert_eq!(
            v[0]["agent_info"]["id"]["value"],
            agent.id.as_str(),
            "{master}"
        );
    }
    let out = command(&["tasks", "--json"])
        .env("MESOS_MASTER", &c.master)
        .output()
        .await
        .expect("run corral");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v, all, "MESOS_MASTER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_create_volume_destroy_volume_unreserve() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].id.clone();
    let reserved_to = |state: &Value, role: &str, name: &str| -> f64 {
        let rs: Vec<Value> = state["get_agents"]["agents"][0]["total_resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["reservations"][0]["role"] == role && r["name"] == name)
            .cloned()
            .collect();
        scalar_of(&json!(rs), name)
    };

    // reserve
    let run = cli(
        &c,
        &[
            "reserve",
            "--agent",
            &agent,
            "--resources",
            "cpus(db):1;mem(db):128;disk(db):256",
            "--principal",
            "ops",
        ],
    )
    .await
    .ok();
    assert!(
        run.stdout
            .starts_with("reserved cpus(db):1;mem(db):128;disk(db):256 on agent"),
        "{run:?}"
    );
    let state = operator(&c, "GET_AGENTS").await;
    assert_eq!(reserved_to(&state, "db", "cpus"), 1.0, "{state}");
    assert_eq!(reserved_to(&state, "db", "disk"), 256.0, "{state}");
    let run = cli(&c, &["reservations"]).await.ok();
    let cols = row(&run, &agent).unwrap_or_else(|| panic!("no reservation: {run:?}"));
    assert_eq!(
        &cols[1..],
        [
            "db",
            "DYNAMIC",
            "ops",
            "cpus(db):1;mem(db):128;disk(db):256",
            "-"
        ],
        "{run:?}"
    );
    let v = cli(&c, &["reservations", "--json", "--role", "db"])
        .await
        .ok()
        .json();
    assert_eq!(v[0]["principal"], "ops", "{v}");
    assert_eq!(scalar_of(&v[0]["resources"], "mem"), 128.0, "{v}");
    let v = cli(&c, &["reservations", "--json", "--role", "web"])
        .await
        .ok()
        .json();
    assert_eq!(v, json!([]));

    // create-volume on the reserved disk
    let run = cli(
        &c,
        &[
            "create-volume",
            "--agent",
            &agent,
            "--resources",
            "disk(db):64",
            "--id",
            "pg",
            "--container-path",
            "data",
        ],
    )
    .await
    .ok();
    let cols = row(&run, &agent).unwrap_or_else(|| panic!("no volume row: {run:?}"));
    assert_eq!(
        &cols[1..],
        ["db", "pg", "64", "data", "RW", "ops", "no"],
        "{run:?}"
    );
    let state = operator(&c, "GET_AGENTS").await;
    let volume = state["get_agents"]["agents"][0]["total_resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["disk"]["persistence"]["id"] == "pg")
        .cloned()
        .unwrap_or_else(|| panic!("the master has no volume pg: {state}"));
    assert_eq!(volume["scalar"]["value"], 64.0, "{volume}");
    assert_eq!(volume["disk"]["volume"]["container_path"], "data");
    let run = cli(&c, &["volumes"]).await.ok();
    assert!(
        row(&run, &agent).is_some_and(|cols| cols[2] == "pg"),
        "{run:?}"
    );
    let v = cli(&c, &["volumes", "--json"]).await.ok().json();
    assert_eq!(v[0]["persistence_id"], "pg", "{v}");
    assert_eq!(v[0]["resource"], volume, "{v}");
    // The reservation shows the volume and the disk left beside it.
    let run = cli(&c, &["reservations"]).await.ok();
    let cols = row(&run, &agent).unwrap_or_else(|| panic!("{run:?}"));
    assert_eq!(cols[4], "cpus(db):1;mem(db):128;disk(db):192", "{run:?}");
    assert_eq!(cols[5], "pg", "{run:?}");

    // A second volume with the same id is refused by the master.
    let before = snapshot(&c).await;
    let run = cli(
        &c,
        &[
            "create-volume",
            "--agent",
            &agent,
            "--resources",
            "disk(db):32",
            "--id",
            "pg",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("refused CREATE_VOLUMES"), "{run:?}");
    assert_eq!(
        snapshot(&c).await,
        before,
        "a refused create changed the state"
    );

    // destroy-volume by persistence id
    let run = cli(&c, &["destroy-volume", "--agent", &agent, "--id", "pg"])
        .await
        .ok();
    assert!(
        run.stdout.starts_with("destroyed volume pg on agent"),
        "{run:?}"
    );
    assert_eq!(cli(&c, &["volumes", "--json"]).await.ok().json(), json!([]));
    let state = operator(&c, "GET_AGENTS").await;
    assert_eq!(reserved_to(&state, "db", "disk"), 256.0, "{state}");

    // unreserve: the principal is found on the agent.
    let run = cli(
        &c,
        &[
            "unreserve",
            "--agent",
            &agent,
            "--resources",
            "cpus(db):1;mem(db):128;disk(db):256",
        ],
    )
    .await
    .ok();
    assert!(
        run.stdout.contains("has no reservations left for role db"),
        "{run:?}"
    );
    let state = operator(&c, "GET_AGENTS").await;
    assert_eq!(reserved_to(&state, "db", "cpus"), 0.0, "{state}");
    assert_eq!(reserved_to(&state, "db", "disk"), 0.0, "{state}");
    assert_eq!(
        cli(&c, &["reservations", "--json"]).await.ok().json(),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_set_then_quota_and_weights_set_then_roles() {
    let c = Cluster::start(ClusterOptions::default()).await;

    let run = cli(
        &c,
        &[
            "quota",
            "set",
            "web",
            "--guarantee",
            "cpus:1;mem:256",
            "--limit",
            "cpus:2;mem:512",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.starts_with("quota of role web set"), "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["web", "cpus:1;mem:256", "cpus:2;mem:512", "-"]),
        "{run:?}"
    );
    let master = operator(&c, "GET_QUOTA").await;
    let config = &master["get_quota"]["status"]["configs"][0];
    assert_eq!(config["role"], "web", "{master}");
    assert_eq!(config["guarantees"]["mem"]["value"], 256.0, "{master}");
    assert_eq!(config["limits"]["cpus"]["value"], 2.0, "{master}");
    let run = cli(&c, &["quota"]).await.ok();
    assert_eq!(
        row(&run, "web"),
        Some(vec!["web", "cpus:1;mem:256", "cpus:2;mem:512", "-"]),
        "{run:?}"
    );
    assert_eq!(
        cli(&c, &["quota", "--json"]).await.ok().json(),
        master["get_quota"]["status"]["configs"]
    );

    // A limit below the guarantee is a usage error; nothing changes.
    let before = snapshot(&c).await;
    let run = cli(
        &c,
        &[
            "quota",
            "set",
            "web",
            "--guarantee",
            "cpus:2",
            "--limit",
            "cpus:1",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--limit"), "{run:?}");
    assert_eq!(snapshot(&c).await, before);

    // weights set, read back by `weights` and `roles`.
    let run = cli(&c, &["weights", "set", "web=2", "batch=0.5"])
        .await
        .ok();
    assert!(run.stdout.starts_with("weights set"), "{run:?}");
    assert_eq!(row(&run, "web"), Some(vec!["web", "2"]), "{run:?}");
    assert_eq!(row(&run, "batch"), Some(vec!["batch", "0.5"]), "{run:?}");
    let master = operator(&c, "GET_WEIGHTS").await;
    let mut weights: Vec<(String, f64)> = master["get_weights"]["weight_infos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["role"].as_str().unwrap_or_default().to_string(),
                w["weight"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        weights,
        [("batch".to_string(), 0.5), ("web".to_string(), 2.0)]
    );
    let run = cli(&c, &["roles"]).await.ok();
    let web = row(&run, "web").unwrap_or_else(|| panic!("no web role: {run:?}"));
    assert_eq!(
        web,
        ["web", "2", "0", "-", "cpus:1;mem:256", "cpus:2;mem:512"],
        "{run:?}"
    );
    assert_eq!(row(&run, "batch").map(|r| r[1]), Some("0.5"), "{run:?}");
    let v = cli(&c, &["weights", "--json"]).await.ok().json();
    assert_eq!(v, master["get_weights"]["weight_infos"]);
    let bad = cli(&c, &["weights", "set", "web=-1"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("web=-1"), "{bad:?}");

    // Both empty: the quota is removed.
    let run = cli(
        &c,
        &["quota", "set", "web", "--guarantee", "", "--limit", ""],
    )
    .await
    .ok();
    assert!(run.stdout.contains("quota of role web removed"), "{run:?}");
    let master = operator(&c, "GET_QUOTA").await;
    assert!(
        master["get_quota"]["status"]["configs"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{master}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_removes_a_framework_and_kills_its_tasks() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let s = running_task(&c, "doomed", "victim").await;
    let fid = s.framework_id.clone();

    let run = cli(&c, &["teardown", &fid]).await.ok();
    assert!(
        run.stdout
            .starts_with(&format!("tore down framework {fid} (doomed)")),
        "{run:?}"
    );
    let cols = row(&run, &fid).unwrap_or_else(|| panic!("{run:?}"));
    assert_eq!(cols[4], "completed", "{run:?}");
    let frameworks = operator(&c, "GET_FRAMEWORKS").await;
    assert!(
        frameworks["get_frameworks"]["frameworks"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "still active: {frameworks}"
    );
    // Its task is killed.
    let killed = wait_for(TIMEOUT, || async {
        let v = cli(&c, &["tasks", "--json", "--state", "TASK_KILLED"])
            .await
            .ok()
            .json();
        v.as_array()
            .is_some_and(|a| a.iter().any(|t| t["task_id"]["value"] == "victim"))
    })
    .await;
    assert!(killed, "victim never listed as TASK_KILLED\n{}", c.logs());
    let run = cli(&c, &["frameworks"]).await.ok();
    assert!(row(&run, &fid).is_none(), "{run:?}");
    let run = cli(&c, &["frameworks", "--all"]).await.ok();
    assert_eq!(row(&run, &fid).map(|r| r[4]), Some("completed"), "{run:?}");
    // Again: nothing to tear down.
    let run = cli(&c, &["teardown", &fid]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("already completed"), "{run:?}");
}

/// A child `corral` whose stdout is collected while it runs.
struct Live {
    child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        let mut child = command(args).spawn().expect("start corral");
        let mut pipe = child.stdout.take().expect("stdout");
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stdout);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Live { child, stdout }
    }

    fn output(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_print_a_tasks_output_and_follow_it_to_the_end() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].clone();
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    s.launch(
        &offer,
        vec![
            command_task(
                "talker",
                &agent.id,
                "for i in 1 2 3 4 5; do echo \"line $i\"; done; echo oops >&2",
                0.1,
                32.0,
            ),
            // Writes, then waits for a file the test creates, then writes
            // again and ends.
            command_task(
                "gated",
                &agent.id,
                "echo first; while [ ! -e go ]; do sleep 0.1; done; echo second",
                0.1,
                32.0,
            ),
        ],
    )
    .await;
    s.follow("talker", "TASK_FINISHED").await;

    let run = cli(&c, &["logs", "talker"]).await.ok();
    assert_eq!(
        run.stdout, "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{run:?}"
    );
    let run = cli(&c, &["logs", "talker", "--lines", "2"]).await.ok();
    assert_eq!(run.stdout, "line 4\nline 5\n", "{run:?}");
    let run = cli(&c, &["logs", "talker", "--stderr"]).await.ok();
    assert!(run.stdout.contains("oops\n"), "{run:?}");
    assert!(!run.stdout.contains("line 1"), "{run:?}");
    // -f of a finished task prints it all and ends.
    let run = cli(&c, &["logs", "talker", "-f"]).await.ok();
    assert_eq!(
        run.stdout, "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{run:?}"
    );

    // -f of a running task: its output as it comes, to the end.
    s.follow("gated", "TASK_RUNNING").await;
    let mut live = Live::start(&["logs", "gated", "-f", "--master", &c.master]);
    let printed = wait_for(TIMEOUT, || async { live.output().contains("first\n") }).await;
    assert!(printed, "logs -f printed {:?}", live.output());
    assert!(
        live.child.try_wait().expect("wait").is_none(),
        "logs -f ended while the task runs: {:?}",
        live.output()
    );
    let sandbox = agent.sandbox(&s.framework_id, "gated");
    std::fs::write(sandbox.join("go"), b"").expect("create go");
    let status = tokio::time::timeout(TIMEOUT, live.child.wait())
        .await
        .unwrap_or_else(|_| panic!("logs -f did not end with the task: {:?}", live.output()))
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // The reader task may still be copying the last bytes.
    let complete = wait_for(Duration::from_secs(5), || async {
        live.output() == "first\nsecond\n"
    })
    .await;
    assert!(complete, "logs -f printed {:?}", live.output());
    s.follow("gated", "TASK_FINISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_come_from_the_clap_definitions() {
    for (shell, master_flag) in [
        ("bash", "--master"),
        ("zsh", "--master"),
        ("fish", "-l master"),
    ] {
        let run = corral(&["completions", shell]).await.ok();
        assert!(
            run.stdout.contains("create-volume") && run.stdout.contains(master_flag),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(400)]
        );
    }
    let bad = corral(&["completions", "cmd.exe"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man");
    let run = corral(&["man", "--out", out.to_str().expect("utf-8")])
        .await
        .ok();
    for page in [
        "corral.1",
        "corral-agents.1",
        "corral-quota-set.1",
        "corral-logs.1",
    ] {
        let p = out.join(page);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
        assert!(run.stdout.contains(&p.display().to_string()), "{run:?}");
    }
    let logs = std::fs::read_to_string(out.join("corral-logs.1")).expect("logs page");
    assert!(logs.contains("follow"), "the logs page lists --follow");
    // Hidden commands get no page.
    assert!(!out.join("corral-executor.1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_flag_or_object_and_changes_nothing() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let _s = running_task(&c, "keeper", "kept").await;
    let agent = c.agents[0].id.clone();
    let before = snapshot(&c).await;

    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (vec!["tasks", "--bogus"], 2, vec!["--bogus"]),
        (
            vec!["agents", "--attribute", "rack"],
            2,
            vec!["--attribute", "rack"],
        ),
        (
            vec!["tasks", "--state", "sleeping"],
            2,
            vec!["--state", "sleeping"],
        ),
        (
            vec!["reserve", "--agent", "nope", "--resources", "cpus(db):1"],
            1,
            vec!["no agent 'nope'", "corral agents"],
        ),
        (
            vec!["reserve", "--agent", &agent, "--resources", "cpus:1"],
            2,
            vec!["--resources", "names no role"],
        ),
        (
            vec!["reserve", "--agent", &agent, "--resources", "cpus(db):x"],
            2,
            vec!["--resources 'cpus(db):x'"],
        ),
        (
            vec!["reserve", "--agent", &agent, "--resources", "cpus(db):100"],
            1,
            vec!["refused RESERVE_RESOURCES", "409", "do not contain"],
        ),
        (
            vec!["destroy-volume", "--agent", &agent, "--id", "nothing"],
            1,
            vec!["no volume 'nothing'"],
        ),
        (
            vec!["logs", "ghost"],
            1,
            vec!["no task 'ghost'", "corral tasks"],
        ),
        (
            vec!["teardown", "no-such-framework"],
            1,
            vec!["no framework 'no-such-framework'"],
        ),
        (vec!["drain", "nope"], 1, vec!["no agent 'nope'"]),
        (
            vec!["drain", &agent, "--max_grace_period", "soon"],
            2,
            vec!["--max_grace_period 'soon'"],
        ),
        (
            vec!["quota", "set", "web"],
            2,
            vec!["--guarantee", "--limit"],
        ),
        (
            vec!["quota", "set", "web", "--guarantee", "cpus(web):1"],
            2,
            vec!["--guarantee"],
        ),
    ];
    for (args, code, needles) in cases {
        let run = cli(&c, &args).await;
        assert_eq!(run.code, code, "corral {args:?}: {run:?}");
        for n in needles {
            assert!(
                run.stderr.contains(n),
                "corral {args:?} must say {n:?}: {run:?}"
            );
        }
        assert!(run.stdout.is_empty(), "corral {args:?} printed: {run:?}");
    }

    // No master there: exit 3, naming the address and --master.
    let dead = format!("127.0.0.1:{}", free_port());
    let run = corral(&["agents", "--master", &dead]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(&dead) && run.stderr.contains("--master"),
        "{run:?}"
    );
    let run = corral(&["tasks", "--master", "not-an-address"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--master"), "{run:?}");

    assert_eq!(
        snapshot(&c).await,
        before,
        "a refused command changed the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_and_standby_masters_lead_the_cli_to_the_leader() {
    use corral_master::testing::ZooKeeperServer;
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 1).expect("zookeeper");
    let mut masters = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join(format!("master-{i}.log"))).expect("log");
        let child = tokio::process::Command::new(corral_bin())
            .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--zk", &format!("zk://{}/corral", zk.connect)])
            .args(["--quorum", "1", "--zk_session_timeout", "5secs"])
            .arg("--work_dir")
            .arg(dir.path().join(format!("master-{i}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start master");
        masters.push((child, format!("127.0.0.1:{port}")));
    }
    let zk_url = format!("zk://{}/corral", zk.connect);
    let logs = || {
        (0..2)
            .map(|i| {
                std::fs::read_to_string(dir.path().join(format!("master-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The leader is elected once one master answers GET_MASTER through zk.
    let elected = wait_for(Duration::from_secs(30), || async {
        corral(&["roles", "--master", &zk_url]).await.code == 0
    })
    .await;
    assert!(elected, "no leader through {zk_url}\n{}", logs());
    let through_zk = corral(&["roles", "--json", "--master", &zk_url])
        .await
        .ok()
        .json();
    assert_eq!(through_zk[0]["name"], "*", "{through_zk}");
    // Each master, the standby too (it redirects), and the list of both.
    let both = format!("{},{}", masters[0].1, masters[1].1);
    for master in [&masters[0].1, &masters[1].1, &both] {
        let run = corral(&["weights", "set", "web=3", "--master", master])
            .await
            .ok();
        assert_eq!(
            row(&run, "web"),
            Some(vec!["web", "3"]),
            "{master}: {run:?}"
        );
    }
    let v = corral(&["weights", "--json", "--master", &zk_url])
        .await
        .ok()
        .json();
    assert_eq!(v, json!([{"role": "web", "weight": 3.0}]));
    // No ZooKeeper there: exit 3, naming the URL.
    let dead = format!("zk://127.0.0.1:{}/corral", free_port());
    let run = corral(&["agents", "--master", &dead]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains(&dead), "{run:?}");
    drop(masters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_kills_the_agents_tasks_waits_until_drained_and_marks_it_gone() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut s = running_task(&c, "drained", "victim").await;
    let agent = c.agents[0].id.clone();
    // --wait follows the drain while the framework acknowledges the kill.
    let mut args: Vec<String> = [
        "drain",
        &agent,
        "--max_grace_period",
        "1secs",
        "--mark_gone",
        "--wait",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(["--master".to_string(), c.master.clone()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let drain = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(60),
        command(&argv).output(),
    ));
    let seen = s.follow("victim", "TASK_KILLED").await;
    assert_eq!(
        seen.last().map(|u| u["state"].clone()),
        Some(json!("TASK_KILLED"))
    );
    let out = drain
        .await
        .expect("join")
        .expect("corral drain --wait ended within 60s")
        .expect("run corral");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("task(s) remaining"),
        "progress is shown: {stdout}"
    );
    assert!(
        stdout.contains(&format!("agent {agent} is drained")),
        "{stdout}"
    );
    // Marked gone: no longer among the agents, and it cannot come back.
    let agents = operator(&c, "GET_AGENTS").await;
    assert!(
        !agents.to_string().contains(&agent),
        "a drained agent with --mark_gone is gone: {agents}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_agent_shows_its_state_and_is_reactivated_through_the_operator_api() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].id.clone();
    let run = cli(&c, &["drain", &agent]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("0 task(s) remaining"), "{run:?}");
    let run = cli(&c, &["agents"]).await;
    let cols = row(&run, &agent).unwrap_or_else(|| panic!("no agent row: {run:?}"));
    assert!(cols.contains(&"drained"), "{run:?}");
    let state = c.get_json("/master/state").await;
    assert_eq!(state["slaves"][0]["deactivated"], json!(true));
    assert_eq!(state["slaves"][0]["drain_info"]["state"], json!("DRAINED"));
    // Reactivation ends the drain; a second one is refused with nothing changed.
    let call =
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": agent}}});
    let (status, body) = c.operator(call.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = c.operator(call).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let state = c.get_json("/master/state").await;
    assert_eq!(state["slaves"][0]["deactivated"], json!(false));
    assert_eq!(state["slaves"][0]["drain_info"], Value::Null);
    let run = cli(&c, &["agents"]).await;
    let cols = row(&run, &agent).unwrap_or_else(|| panic!("no agent row: {run:?}"));
    assert!(cols.contains(&"active"), "{run:?}");
    // Bad calls: 400 naming what is wrong.
    let (status, body) = c
        .operator(json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "nope"}}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = c.operator(json!({"type": "DEACTIVATE_AGENT"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_schedule_survives_a_master_restart_and_shows_on_the_agent() {
    // The registry in a file under --work_dir, as a single master keeps it.
    let registry = tempfile::tempdir().expect("registry dir");
    let mut c = Cluster::start(ClusterOptions {
        master_flags: vec![format!("--work_dir={}", registry.path().display())],
        ..Default::default()
    })
    .await;
    let state = c.get_json("/master/state").await;
    let hostname = state["slaves"][0]["hostname"]
        .as_str()
        .expect("agent hostname")
        .to_string();
    let schedule = json!({"windows": [{
        "machine_ids": [{"hostname": hostname}],
        "unavailability": {"start": {"nanoseconds": 1_900_000_000_000_000_000_i64}},
    }]});
    let (status, body) = c
        .operator(json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": schedule}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.restart_master().await;
    let got = c.get_json("/maintenance/schedule").await;
    assert_eq!(got, schedule, "the registry keeps the schedule");
    let status = c.get_json("/master/maintenance/status").await;
    assert_eq!(
        status["draining_machines"][0]["id"]["hostname"],
        json!(hostname)
    );
    // The web UI's agents page shows the window.
    let (code, _, page) = c.get("/ui/agents").await;
    assert_eq!(code, StatusCode::OK);
    assert!(page.contains("SCHEDULED: starts in"), "{page}");
    // Bad input: 400, schedule unchanged.
    let (status, _, body) = c
        .post_raw(
            "/maintenance/schedule",
            &[("Content-Type", "application/json")],
            br#"{"windows": [{"machine_ids": [{}], "unavailability": {"start": {"nanoseconds": 1}}}]}"#.to_vec(),
        )
        .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("neither hostname nor ip"), "{body}");
    assert_eq!(c.get_json("/maintenance/schedule").await, schedule);
}
