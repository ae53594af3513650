//! The master <-> agent session across failures, with real processes:
//! an agent keeps its AgentID and re-registers after the master restarts,
//! and the master notices a dead agent and removes it after the ping
//! timeout.

use std::process::Stdio;
use std::time::Duration;

use corral_tests::{corral_bin, free_port, wait_for};
use serde_json::Value;
use tokio::process::{Child, Command};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn master(port: u16) -> Proc {
    Proc(
        Command::new(corral_bin())
            .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--agent_ping_timeout",
                "500ms",
                "--max_agent_ping_timeouts",
                "4",
            ])
            .args(["--allocation_interval", "100ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start master"),
    )
}

fn agent(master_port: u16, work_dir: &std::path::Path) -> Proc {
    Proc(
        Command::new(corral_bin())
            .args(["agent", "--master", &format!("127.0.0.1:{master_port}")])
            .args(["--ip", "127.0.0.1", "--port", &free_port().to_string()])
            .args(["--resources", "cpus:1;mem:256;ports:[31000-31010]"])
            .args(["--registration_backoff_factor", "100ms"])
            .arg("--work_dir")
            .arg(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start agent"),
    )
}

async fn slaves(port: u16) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{port}/master/slaves");
    let Ok(resp) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let Ok(v) = resp.json::<Value>().await else {
        return Vec::new();
    };
    v["slaves"].as_array().cloned().unwrap_or_default()
}

async fn metric(port: u16, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{port}/metrics/snapshot");
    match reqwest::get(&url).await {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v[name].as_f64())
            .unwrap_or(-1.0),
        Err(_) => -1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_its_id_and_reregisters_after_a_master_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut m = master(port);
    let _a = agent(port, dir.path());
    assert!(
        wait_for(Duration::from_secs(20), || async {
            slaves(port).await.len() == 1
        })
        .await,
        "agent never registered"
    );
    let first = slaves(port).await[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!first.is_empty());

    // kill -9 the master, then start a fresh one on the same port.
    m.0.kill().await.expect("kill master");
    let _m2 = master(port);
    assert!(
        wait_for(Duration::from_secs(30), || async {
            slaves(port).await.first().and_then(|s| s["id"].as_str()) == Some(first.as_str())
        })
        .await,
        "agent did not re-register with its AgentID {first}"
    );
    assert_eq!(metric(port, "master/slaves_active").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_removes_an_agent_that_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _m = master(port);
    let mut a = agent(port, dir.path());
    assert!(
        wait_for(Duration::from_secs(20), || async {
            slaves(port).await.len() == 1
        })
        .await,
        "agent never registered"
    );
    a.0.kill().await.expect("kill agent");
    // The broken session is noticed at once ...
    assert!(
        wait_for(Duration::from_secs(10), || async {
            metric(port, "master/slaves_disconnected").await == 1.0
        })
        .await,
        "master did not notice the agent's session ending"
    );
    // ... and the agent is removed after ping timeout x max timeouts.
    assert!(
        wait_for(Duration::from_secs(20), || async {
            slaves(port).await.is_empty()
        })
        .await,
        "master did not remove the dead agent"
    );
    assert_eq!(metric(port, "master/slave_removals").await, 1.0);
}
