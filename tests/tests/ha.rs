//! Masters in HA with a real ZooKeeper (Debian's 3.8, started by
//! `scripts/zookeeper.sh` through `corral_master::testing`): leader election
//! through `json.info_<seq>` znodes, standbys redirecting to the leader,
//! agents finding the leader through `--master zk://`, failover after
//! `kill -9`, and fencing when the leader's session expires.

use std::process::Stdio;
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_master::registry::{Registry, ZooKeeperRegistry};
use corral_master::testing::ZooKeeperServer;
use corral_tests::{
    command_task, corral_bin, default_framework_info, free_port, wait_for, Scheduler,
};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

struct Proc {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // A stopped process must be resumed to die of SIGKILL cleanly.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        let _ = self.child.start_kill();
    }
}

impl Proc {
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn master(dir: &std::path::Path, zk: &str, session_timeout: &str) -> Proc {
    master_with(dir, zk, session_timeout, &[])
}

/// A master of an HA group. Pairs run with `--quorum 1` (a pair that must
/// survive the loss of one master cannot require two); `extra` may set
/// another `--quorum`.
fn master_with(dir: &std::path::Path, zk: &str, session_timeout: &str, extra: &[&str]) -> Proc {
    let quorum: &[&str] = if extra.contains(&"--quorum") {
        &[]
    } else {
        &["--quorum", "1"]
    };
    let port = free_port();
    let log = dir.join(format!("master-{port}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(corral_bin())
        .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--zk", &format!("zk://{zk}/corral")])
        .args(quorum)
        .args(["--zk_session_timeout", session_timeout])
        .args([
            "--agent_ping_timeout",
            "500ms",
            "--max_agent_ping_timeouts",
            "4",
        ])
        .args(["--allocation_interval", "100ms"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start master");
    Proc { child, port, log }
}

fn agent(dir: &std::path::Path, zk: &str) -> Proc {
    let port = free_port();
    let log = dir.join(format!("agent-{port}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(corral_bin())
        .args(["agent", "--master", &format!("zk://{zk}/corral")])
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--resources", "cpus:1;mem:256;ports:[31000-31010]"])
        .args(["--registration_backoff_factor", "100ms"])
        .arg("--work_dir")
        .arg(dir.join(format!("agent-{port}")))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start agent");
    Proc { child, port, log }
}

/// One ZooKeeper server, an HA group of masters and an agent registered
/// with the elected leader. Bind the fields in this order (`zk` first) so
/// that ZooKeeper outlives the processes using it.
struct Group {
    zk: ZooKeeperServer,
    masters: Vec<Proc>,
    agent: Proc,
    /// Index of the leader in `masters`.
    leader: usize,
}

/// `n` masters (`--zk_session_timeout 1secs`, plus `extra`) and one agent
/// on a fresh single-node ZooKeeper; returns once the agent has registered
/// with the leader.
async fn group(dir: &std::path::Path, n: usize, extra: &[&str]) -> Group {
    let zk = ZooKeeperServer::start(&dir.join("zk"), 1).expect("zookeeper");
    let masters: Vec<Proc> = (0..n)
        .map(|_| master_with(dir, &zk.connect, "1secs", extra))
        .collect();
    let leader = leader_index(&masters).await;
    let agent = agent(dir, &zk.connect);
    let port = masters[leader].port;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(port).await.len() == 1
        })
        .await,
        "agent never registered; log:\n{}",
        agent.log()
    );
    Group {
        zk,
        masters,
        agent,
        leader,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// `Location` of `/master/redirect` on `port`, if it redirects.
async fn redirect(port: u16) -> Option<String> {
    let resp = client()
        .get(format!("http://127.0.0.1:{port}/master/redirect"))
        .send()
        .await
        .ok()?;
    if resp.status() != reqwest::StatusCode::TEMPORARY_REDIRECT {
        return None;
    }
    resp.headers()
        .get("location")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// The port of the master every live master names as the leader.
async fn agreed_leader(ports: &[u16]) -> Option<u16> {
    let mut seen = None;
    for &port in ports {
        let location = redirect(port).await?;
        let leader: u16 = location.rsplit(':').next()?.parse().ok()?;
        if seen.is_some_and(|s| s != leader) {
            return None;
        }
        seen = Some(leader);
    }
    seen
}

async fn slaves(port: u16) -> Vec<Value> {
    let Ok(resp) = client()
        .get(format!("http://127.0.0.1:{port}/master/slaves"))
        .send()
        .await
    else {
        return Vec::new();
    };
    if !resp.status().is_success() {
        return Vec::new();
    }
    resp.json::<Value>()
        .await
        .ok()
        .and_then(|v| v["slaves"].as_array().cloned())
        .unwrap_or_default()
}

async fn contenders(zk: &str) -> Vec<(String, Value)> {
    let session =
        corral_master::zk::Session::connect(zk, Duration::from_secs(5), Duration::from_secs(10))
            .await
            .expect("zookeeper");
    let mut out = Vec::new();
    for child in session
        .zk
        .get_children("/corral", false)
        .await
        .unwrap_or_default()
    {
        if child.starts_with("json.info_") {
            let (data, _) = session
                .zk
                .get_data(&format!("/corral/{child}"), false)
                .await
                .expect("data");
            out.push((
                child,
                serde_json::from_slice(&data).expect("MasterInfo JSON"),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let _ = session.zk.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_redirect_to_the_leader_and_a_standby_takes_over_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 3).expect("zookeeper ensemble");
    let mut masters: Vec<Proc> = (0..3)
        .map(|_| master_with(dir.path(), &zk.connect, "2secs", &["--quorum", "2"]))
        .collect();
    let ports: Vec<u16> = masters.iter().map(|m| m.port).collect();
    assert!(
        wait_for(Duration::from_secs(30), || async {
            agreed_leader(&ports).await.is_some()
        })
        .await,
        "masters did not agree on a leader; logs:\n{}",
        masters.iter().map(Proc::log).collect::<Vec<_>>().join("\n")
    );
    let leader = agreed_leader(&ports).await.expect("leader");
    assert_eq!(
        redirect(leader).await,
        Some(format!("//127.0.0.1:{leader}"))
    );

    // The contenders' znodes, as Mesos names and fills them.
    let published = contenders(&zk.connect).await;
    assert_eq!(published.len(), 3, "{published:?}");
    for (name, _) in &published {
        let seq = name.strip_prefix("json.info_").expect("prefix");
        assert!(
            seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
    }
    let lowest = &published[0].1;
    assert_eq!(lowest["address"]["port"], leader);
    assert_eq!(lowest["address"]["ip"], "127.0.0.1");
    assert!(lowest["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(lowest["version"].as_str().is_some());

    // A standby answers API calls with 307 to the leader.
    let standby = *ports.iter().find(|p| **p != leader).expect("standby");
    let resp = client()
        .post(format!("http://127.0.0.1:{standby}/api/v1/scheduler"))
        .header("content-type", "application/json")
        .body(r#"{"type":"SUBSCRIBE"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        resp.headers()["location"].to_str().expect("ascii"),
        format!("//127.0.0.1:{leader}/api/v1/scheduler")
    );
    let resp = client()
        .get(format!("http://127.0.0.1:{standby}/master/state"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);

    // A standby's web UI sends the browser to the leader's (a real
    // headless Chromium, tests/src/browser.rs).
    let browser = corral_tests::browser::Browser::start()
        .await
        .expect("browser");
    browser
        .open(&format!("http://127.0.0.1:{standby}/ui/agents"))
        .await
        .expect("the standby's UI page loads (at the leader)");
    let at = browser.url().await.expect("url");
    assert_eq!(at, format!("http://127.0.0.1:{leader}/ui/agents"));
    let text = browser.main_text().await.expect("text");
    assert!(text.contains("Agents"), "{text}");
    browser.quit().await.expect("quit");

    // An agent finds the leader through ZooKeeper.
    let a = agent(dir.path(), &zk.connect);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(leader).await.len() == 1
        })
        .await,
        "agent never registered with the leader; agent log:\n{}",
        a.log()
    );
    let agent_id = slaves(leader).await[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    // kill -9 the leader: a standby leads, the agent re-registers with it
    // under the same AgentID, and the registry (in ZooKeeper) knew it.
    let index = masters
        .iter()
        .position(|m| m.port == leader)
        .expect("leader proc");
    let mut old = masters.remove(index);
    old.child.kill().await.expect("kill -9 leader");
    let rest: Vec<u16> = masters.iter().map(|m| m.port).collect();
    assert!(
        wait_for(Duration::from_secs(30), || async {
            // The dead leader's znode lives until its session expires.
            agreed_leader(&rest)
                .await
                .is_some_and(|l| rest.contains(&l))
        })
        .await,
        "no new leader; logs:\n{}",
        masters.iter().map(Proc::log).collect::<Vec<_>>().join("\n")
    );
    let new_leader = agreed_leader(&rest).await.expect("new leader");
    assert_ne!(new_leader, leader);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(new_leader)
                .await
                .first()
                .and_then(|s| s["id"].as_str())
                == Some(agent_id.as_str())
        })
        .await,
        "agent did not re-register with the new leader; agent log:\n{}",
        a.log()
    );
    assert!(contenders(&zk.connect).await.len() == 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_expires_stops_leading_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 1).expect("zookeeper");
    let mut first = master(dir.path(), &zk.connect, "1secs");
    let first_port = first.port;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            redirect(first_port).await == Some(format!("//127.0.0.1:{first_port}"))
        })
        .await,
        "the first master did not lead; log:\n{}",
        first.log()
    );
    let second = master(dir.path(), &zk.connect, "1secs");
    let a = agent(dir.path(), &zk.connect);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(first_port).await.len() == 1
        })
        .await,
        "agent never registered; log:\n{}",
        a.log()
    );
    let agent_id = slaves(first_port).await[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let mut info = default_framework_info("fenced");
    info["failover_timeout"] = json!(300.0);
    let mut s = Scheduler::subscribe_to(
        &format!("http://127.0.0.1:{first_port}"),
        Encoding::Json,
        info,
    )
    .await
    .expect("subscribe");
    let offers = s.offers().await;
    s.launch(
        &offers[0],
        vec![command_task("keeper", &agent_id, "sleep 300", 0.1, 32.0)],
    )
    .await;
    until_state(&mut s, "keeper", "TASK_RUNNING").await;

    // Freeze the leader past its session timeout: ZooKeeper expires the
    // session, the standby leads with a higher epoch, and the agent follows.
    nix::sys::signal::kill(first.pid(), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    // A KILL for the task reaches the frozen leader (the kernel queues the
    // request); the old leader handles it, if at all, under its old epoch
    // after the agent has moved on, so the task must survive it.
    let kill = {
        let url = format!("http://127.0.0.1:{first_port}/api/v1/scheduler");
        let body = json!({"type": "KILL", "framework_id": s.fid(),
            "kill": {"task_id": {"value": "keeper"}, "agent_id": {"value": agent_id}}})
        .to_string();
        let stream_id = s.stream_id.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("mesos-stream-id", stream_id)
                .body(body)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let second_port = second.port;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            redirect(second_port).await == Some(format!("//127.0.0.1:{second_port}"))
        })
        .await,
        "the standby did not take over; log:\n{}",
        second.log()
    );
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(second_port).await.len() == 1
        })
        .await,
        "agent did not move to the new leader; log:\n{}",
        a.log()
    );
    // Thawed, the old leader learns its session is gone and exits non-zero.
    nix::sys::signal::kill(first.pid(), nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let status = tokio::time::timeout(Duration::from_secs(30), first.child.wait())
        .await
        .expect("the old leader did not exit")
        .expect("wait");
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        first.log().contains("no longer the leader"),
        "log:\n{}",
        first.log()
    );
    let _ = kill.await;
    // The agent stays with the new leader, and the old leader's KILL (old
    // epoch) did not reach the task: the agent still runs it and the new
    // leader, which learned it from the agent, reports it running.
    assert_eq!(slaves(second_port).await.len(), 1);
    let (status, tasks) = agent_tasks(a.port).await;
    assert_eq!(status, 200, "{tasks}");
    let keeper = tasks["get_tasks"]["launched_tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["task_id"]["value"] == "keeper")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        keeper["state"],
        "TASK_RUNNING",
        "agent tasks: {tasks}\nagent log:\n{}",
        a.log()
    );
    let state: Value = client()
        .get(format!("http://127.0.0.1:{second_port}/master/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let running: Vec<&Value> = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
        .filter(|t| t["id"] == "keeper")
        .collect();
    assert!(
        running.iter().any(|t| t["state"] == "TASK_RUNNING"),
        "new leader's state: {state}"
    );
}

/// GET_TASKS on an agent's operator API.
async fn agent_tasks(port: u16) -> (u16, Value) {
    let resp = client()
        .post(format!("http://127.0.0.1:{port}/api/v1"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(r#"{"type":"GET_TASKS"}"#)
        .send()
        .await
        .expect("agent GET_TASKS");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_master_waits_for_a_quorum_of_masters_before_leading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = ZooKeeperServer::start(&dir.path().join("zk"), 1).expect("zookeeper");
    let first = master_with(dir.path(), &zk.connect, "2secs", &["--quorum", "2"]);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            first.log().contains("waiting for a quorum of masters")
        })
        .await,
        "log:\n{}",
        first.log()
    );
    // Elected but short of a quorum: no leader is announced and the APIs
    // are unavailable.
    assert_eq!(redirect(first.port).await, None);
    let resp = client()
        .post(format!("http://127.0.0.1:{}/api/v1", first.port))
        .header("content-type", "application/json")
        .body(r#"{"type":"GET_HEALTH"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    // A second master makes the quorum: the first (lowest sequence) leads.
    let second = master_with(dir.path(), &zk.connect, "2secs", &["--quorum", "2"]);
    let ports = [first.port, second.port];
    assert!(
        wait_for(Duration::from_secs(30), || async {
            agreed_leader(&ports).await == Some(first.port)
        })
        .await,
        "logs:\n{}\n{}",
        first.log(),
        second.log()
    );
}

/// Waits until one of `masters` leads (as all of them say) and returns its
/// index.
async fn leader_index(masters: &[Proc]) -> usize {
    let ports: Vec<u16> = masters.iter().map(|m| m.port).collect();
    assert!(
        wait_for(Duration::from_secs(30), || async {
            agreed_leader(&ports)
                .await
                .is_some_and(|l| ports.contains(&l))
        })
        .await,
        "no leader among {ports:?}; logs:\n{}",
        masters.iter().map(Proc::log).collect::<Vec<_>>().join("\n")
    );
    let leader = agreed_leader(&ports).await.expect("leader");
    ports.iter().position(|p| *p == leader).expect("index")
}

/// Acknowledges `task_id`'s updates until one has `state`.
async fn until_state(s: &mut Scheduler, task_id: &str, state: &str) -> Value {
    loop {
        let status = s.next_update(task_id).await;
        s.acknowledge(&status).await;
        if status["state"] == state {
            return status;
        }
    }
}

async fn registry_at(zk: &str) -> corral_master::registry::RegistryState {
    let session =
        corral_master::zk::Session::connect(zk, Duration::from_secs(5), Duration::from_secs(10))
            .await
            .expect("zookeeper");
    let store = ZooKeeperRegistry::open(session.zk.clone(), "/corral/registry")
        .await
        .expect("registry");
    let state = store.recover().await.expect("recover");
    let _ = session.zk.close().await;
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_while_launching_the_framework_resubscribes_and_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Group {
        zk,
        mut masters,
        agent: a,
        leader: first,
    } = group(dir.path(), 2, &[]).await;
    let leader_port = masters[first].port;
    let agent_id = slaves(leader_port).await[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    // Admitted into the registry in ZooKeeper.
    assert!(
        wait_for(Duration::from_secs(10), || async {
            registry_at(&zk.connect)
                .await
                .agents
                .contains_key(&agent_id)
        })
        .await
    );

    let mut info = default_framework_info("failover");
    info["failover_timeout"] = json!(300.0);
    let mut s = Scheduler::subscribe_to(
        &format!("http://127.0.0.1:{leader_port}"),
        Encoding::Json,
        info.clone(),
    )
    .await
    .expect("subscribe");
    let fid = s.framework_id.clone();
    let offers = s.offers().await;
    s.launch(
        &offers[0],
        vec![command_task("before", &agent_id, "sleep 300", 0.1, 32.0)],
    )
    .await;
    until_state(&mut s, "before", "TASK_RUNNING").await;
    // Launch another and kill -9 the leader at once.
    let offers = s.offers().await;
    s.launch(
        &offers[0],
        vec![command_task("during", &agent_id, "sleep 300", 0.1, 32.0)],
    )
    .await;
    let mut old = masters.remove(first);
    old.child.kill().await.expect("kill -9");
    drop(s);

    let next = leader_index(&masters).await;
    let new_port = masters[next].port;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(new_port)
                .await
                .first()
                .and_then(|a| a["id"].as_str())
                == Some(agent_id.as_str())
        })
        .await,
        "agent did not re-register; log:\n{}",
        a.log()
    );
    // The framework re-subscribes with its FrameworkID and learns, by
    // reconciliation, that its tasks still run.
    info["id"] = json!({"value": fid});
    let mut s = Scheduler::subscribe_to(
        &format!("http://127.0.0.1:{new_port}"),
        Encoding::Json,
        info,
    )
    .await
    .expect("re-subscribe");
    assert_eq!(s.framework_id, fid);
    s.call_ok(json!({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "before"}}, {"task_id": {"value": "during"}}
    ]}}))
    .await;
    let mut states = std::collections::BTreeMap::new();
    while states.len() < 2 {
        let ev = s
            .events
            .wait(Duration::from_secs(30), |e| e["type"] == "UPDATE")
            .await
            .expect("reconciliation updates");
        let status = &ev["update"]["status"];
        if status["uuid"].is_string() {
            s.acknowledge(status).await;
        }
        if status["reason"] == "REASON_RECONCILIATION" {
            states.insert(
                status["task_id"]["value"].as_str().unwrap_or("").to_owned(),
                status["state"].as_str().unwrap_or("").to_owned(),
            );
        }
    }
    assert_eq!(states["before"], "TASK_RUNNING", "{states:?}");
    assert!(
        matches!(
            states["during"].as_str(),
            "TASK_RUNNING" | "TASK_STARTING" | "TASK_STAGING" | "TASK_LOST" | "TASK_UNKNOWN"
        ),
        "{states:?}"
    );
    // No task was launched twice: one executor run each on the agent.
    let runs = |task: &str| {
        let dir = dir
            .path()
            .join(format!("agent-{}", a.port))
            .join("slaves")
            .join(&agent_id)
            .join("frameworks")
            .join(&fid)
            .join("executors")
            .join(task)
            .join("runs");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name() != "latest")
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(runs("before"), 1);
    assert!(runs("during") <= 1);
    // Offers flow again from the new leader, with new ids.
    let offers = s.offers().await;
    assert!(!offers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_while_an_agent_is_partitioned_marks_it_unreachable_after_the_reregister_timeout()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = ["--agent_reregister_timeout", "2secs"];
    let Group {
        zk,
        mut masters,
        agent: a,
        leader: first,
    } = group(dir.path(), 2, &extra).await;
    let leader_port = masters[first].port;
    let agent_id = slaves(leader_port).await[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            registry_at(&zk.connect)
                .await
                .agents
                .contains_key(&agent_id)
        })
        .await
    );
    nix::sys::signal::kill(a.pid(), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let mut old = masters.remove(first);
    old.child.kill().await.expect("kill -9");
    let next = leader_index(&masters).await;
    // Not erased: unreachable, in the registry every master reads.
    assert!(
        wait_for(Duration::from_secs(30), || async {
            registry_at(&zk.connect)
                .await
                .unreachable
                .contains_key(&agent_id)
        })
        .await,
        "agent not marked unreachable; log:\n{}",
        masters[next].log()
    );
    let state = registry_at(&zk.connect).await;
    assert!(!state.agents.contains_key(&agent_id));
    assert!(!state.gone.contains_key(&agent_id));
    assert!(masters[next]
        .log()
        .contains("did not re-register after failover"));
    // Thawed, it comes back and is admitted again.
    nix::sys::signal::kill(a.pid(), nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let port = masters[next].port;
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(port).await.len() == 1
        })
        .await,
        "agent did not come back; log:\n{}",
        a.log()
    );
    assert!(
        wait_for(Duration::from_secs(10), || async {
            registry_at(&zk.connect)
                .await
                .agents
                .contains_key(&agent_id)
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_with_a_zk_url_finds_the_leader_and_the_next_one_after_failover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Group {
        zk,
        mut masters,
        agent: _agent,
        leader: first,
    } = group(dir.path(), 2, &[]).await;
    let leader_port = masters[first].port;
    let mut peer = corral_tests::PymesosPeer::start(
        dir.path(),
        "failover.py",
        &format!("zk://{}/corral", zk.connect),
        90,
        &[],
    );
    let running = peer.event("running", Duration::from_secs(60)).await;
    assert_eq!(running["master"], format!("127.0.0.1:{leader_port}"));
    let mut old = masters.remove(first);
    old.child.kill().await.expect("kill -9");
    let new_port = masters[leader_index(&masters).await].port;
    let (summary, output) = peer.finish(Duration::from_secs(120)).await;
    assert_eq!(
        summary["masters"],
        json!([
            format!("127.0.0.1:{leader_port}"),
            format!("127.0.0.1:{new_port}")
        ]),
        "{output}"
    );
    assert_eq!(summary["reconciled"], "TASK_RUNNING", "{output}");
}

/// Issue 11.1: three masters, one agent, an unmodified pymesos framework
/// (checkpointing, failover_timeout 600) with a `sleep 300` task found
/// through `zk://`. In each of three rounds the agent is stopped (SIGSTOP:
/// its re-registration is delayed as long as the test wants), the leader is
/// killed with SIGKILL, and the framework re-subscribes with the new leader
/// and reconciles its task at once (pymesos' `reconcileTasks` sends only
/// the task id). The new leader has recovered the agent from the registry
/// but not heard from it: it must not answer (Mesos' rule while agents are
/// transitioning), so the task is never reported lost. Once the agent is resumed it re-registers (logged as a
/// re-registration) and the framework's retried reconciliation is answered
/// TASK_RUNNING; the same task keeps running throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_reconciling_at_once_after_failover_is_not_told_its_task_is_lost() {
    /// The checkpointed executor outlives a SIGKILLed agent by design: if
    /// the test fails before the framework kills its task, end it here.
    struct Leftovers(std::path::PathBuf);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            for pid in corral_tests::processes_in(&self.0) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let _leftovers = Leftovers(dir.path().to_path_buf());
    let Group {
        zk,
        mut masters,
        agent: a,
        leader: _,
    } = group(dir.path(), 3, &[]).await;
    let mut peer = corral_tests::PymesosPeer::start(
        dir.path(),
        "reconcile_failover.py",
        &format!("zk://{}/corral", zk.connect),
        240,
        &["--rounds", "3"],
    );
    let running = peer.event("running", Duration::from_secs(60)).await;
    let agent_id = running["agent_id"].as_str().expect("agent id").to_string();
    for round in 1..=3 {
        let leader = leader_index(&masters).await;
        nix::sys::signal::kill(a.pid(), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        let mut old = masters.remove(leader);
        old.child.kill().await.expect("kill -9 the leader");
        drop(old);
        let reconciling = peer.event("reconciling", Duration::from_secs(60)).await;
        assert_eq!(reconciling["round"], round);
        let new_leader = leader_index(&masters).await;
        // The new leader saw the reconciliation and held its answer.
        let held = wait_for(Duration::from_secs(30), || async {
            corral_tests::strip_ansi(&masters[new_leader].log())
                .contains("no answer to reconciliation")
        })
        .await;
        assert!(
            held,
            "round {round}: the new leader did not hold the answer; log:\n{}\n{}",
            masters[new_leader].log(),
            peer.output()
        );
        nix::sys::signal::kill(a.pid(), nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        let reconciled = peer.event("reconciled", Duration::from_secs(60)).await;
        assert_eq!(
            reconciled["state"],
            "TASK_RUNNING",
            "round {round}: {reconciled}\n{}",
            peer.output()
        );
        let log = corral_tests::strip_ansi(&masters[new_leader].log());
        assert!(
            log.lines().any(|l| l.contains("agent registered")
                && l.contains(&agent_id)
                && l.contains("reregistered=true")),
            "round {round}: the agent's return after the failover is a re-registration:\n{log}"
        );
        // Keep three masters for the next round.
        masters.push(master(dir.path(), &zk.connect, "1secs"));
    }
    let (summary, output) = peer.finish(Duration::from_secs(120)).await;
    let states: Vec<String> = summary["states"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    assert!(
        !states.iter().any(|s| s == "TASK_LOST"
            || s == "TASK_UNKNOWN"
            || s == "TASK_GONE"
            || s == "TASK_FAILED"),
        "the task was reported lost: {states:?}\n{output}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("TASK_KILLED"),
        "{output}"
    );
    assert_eq!(
        summary["answers"],
        json!({"1": "TASK_RUNNING", "2": "TASK_RUNNING", "3": "TASK_RUNNING"}),
        "{output}"
    );
}

/// The frameworks SDK's driver through `zk://` (and through a list of
/// masters, following the standby's redirect): `kill -9` of the leading
/// master, and the driver re-subscribes to the new leader with the same
/// FrameworkID and gets offers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_driver_follows_a_master_failover_through_zookeeper() {
    use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerConfig, SchedulerEvent};
    let dir = tempfile::tempdir().expect("tempdir");
    let Group {
        zk,
        mut masters,
        agent: _agent,
        leader: first,
    } = group(dir.path(), 2, &[]).await;
    let standby_port = masters[1 - first].port;

    async fn next(
        rx: &mut tokio::sync::mpsc::Receiver<SchedulerEvent>,
        what: &str,
        pick: impl Fn(&SchedulerEvent) -> bool,
    ) -> SchedulerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) if pick(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the driver stopped waiting for {what}"),
                Err(_) => panic!("no {what}"),
            }
        }
    }
    let subscribed = |e: &SchedulerEvent| matches!(e, SchedulerEvent::Subscribed { .. });
    let offers = |e: &SchedulerEvent| matches!(e, SchedulerEvent::Offers(o) if !o.is_empty());

    // Through a list that names the standby first: it redirects to the leader.
    let list = format!("127.0.0.1:{standby_port},127.0.0.1:{}", masters[first].port);
    let (by_list, mut list_rx) = Scheduler::start(SchedulerConfig::new(
        list,
        framework_info("sdk-list", &["*"], None),
    ))
    .expect("start");
    let SchedulerEvent::Subscribed { master, .. } =
        next(&mut list_rx, "subscription by list", subscribed).await
    else {
        unreachable!()
    };
    assert_eq!(master, format!("127.0.0.1:{}", masters[first].port));
    by_list.stop();

    let mut config = SchedulerConfig::new(
        format!("zk://{}/corral", zk.connect),
        framework_info("sdk-ha", &["*"], None),
    );
    config.backoff = (Duration::from_millis(100), Duration::from_secs(1));
    let (s, mut rx) = Scheduler::start(config).expect("start");
    let SchedulerEvent::Subscribed { framework_id, .. } =
        next(&mut rx, "subscription", subscribed).await
    else {
        unreachable!()
    };
    next(&mut rx, "offers", offers).await;

    let mut old = masters.remove(first);
    old.child.kill().await.expect("kill -9");
    let SchedulerEvent::Subscribed {
        framework_id: again,
        master,
        resubscribed,
        ..
    } = next(&mut rx, "re-subscription", subscribed).await
    else {
        unreachable!()
    };
    assert!(resubscribed);
    assert_eq!(again, framework_id, "the same FrameworkID");
    assert_eq!(master, format!("127.0.0.1:{}", masters[0].port));
    next(&mut rx, "offers from the new leader", offers).await;
    assert_eq!(s.framework_id().as_deref(), Some(framework_id.as_str()));
    s.stop();
}
