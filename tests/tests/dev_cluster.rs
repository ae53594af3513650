//! The README's first command: `corral dev` brings up a master and agents,
//! an unmodified pymesos framework runs tasks on it to completion,
//! `/master/state` shows them in Mesos' shape, and SIGTERM stops
//! everything `corral dev` started.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use corral_tests::{corral_bin, wait_for};
use serde_json::Value;

/// A base port with `n` consecutive free ports after it.
fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = l.local_addr().expect("addr").port();
        drop(l);
        if base > u16::MAX - n {
            continue;
        }
        let all_free = (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of {n} free ports found");
}

fn python() -> PathBuf {
    std::env::var_os("CORRAL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python")
        })
}

fn pids_of_children(parent: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the parenthesised command: state, ppid, ...
                    let rest = s.rsplit_once(')')?.1.trim().to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_dev_runs_a_pymesos_framework_and_stops_cleanly() {
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port_block(3);
    let mut dev = tokio::process::Command::new(corral_bin())
        .args(["dev", "--agents", "2", "--port", &port.to_string()])
        .args([
            "--resources",
            "cpus:2;mem:1024;disk:1024;ports:[31000-31100]",
        ])
        .arg("--work_dir")
        .arg(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start corral dev");
    let dev_pid = dev.id().expect("pid");
    let master = format!("127.0.0.1:{port}");
    let metrics = format!("http://{master}/metrics/snapshot");
    assert!(
        wait_for(Duration::from_secs(60), || async {
            let Ok(r) = reqwest::get(&metrics).await else {
                return false;
            };
            let Ok(v) = r.json::<Value>().await else {
                return false;
            };
            v["master/slaves_active"].as_f64() == Some(2.0)
        })
        .await,
        "corral dev did not bring up a master with 2 agents"
    );
    let daemons = pids_of_children(dev_pid);
    assert_eq!(daemons.len(), 3, "master + 2 agents, got {daemons:?}");

    let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pymesos");
    let executor_cmd = format!(
        "{} {} --timeout 90",
        python().display(),
        peers.join("executor.py").display()
    );
    let out = tokio::process::Command::new(python())
        .arg(peers.join("framework.py"))
        .args(["--master", &master, "--tasks", "6", "--timeout", "90"])
        .args(["--executor-cmd", &executor_cmd])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), out)
        .await
        .expect("framework finished in time")
        .expect("run framework");
    assert!(
        out.status.success(),
        "pymesos framework failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let state: Value = reqwest::get(format!("http://{master}/master/state"))
        .await
        .expect("GET /master/state")
        .json()
        .await
        .expect("state JSON");
    assert_eq!(state["slaves"].as_array().map(Vec::len), Some(2));
    assert!(state["slaves"][0]["pid"]
        .as_str()
        .is_some_and(|p| p.starts_with("slave(1)@127.0.0.1:")));
    let fw = &state["completed_frameworks"][0];
    assert_eq!(fw["name"], "corral-pymesos-framework");
    let finished = fw["completed_tasks"]
        .as_array()
        .map(|ts| ts.iter().filter(|t| t["state"] == "TASK_FINISHED").count());
    assert_eq!(finished, Some(6), "state: {state}");

    // The web UI is up at the master's root and shows what ran.
    let ui = reqwest::get(format!("http://{master}/"))
        .await
        .expect("GET /");
    assert_eq!(ui.status(), reqwest::StatusCode::OK);
    assert!(ui.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    let page = ui.text().await.expect("page");
    assert!(page.contains("Cluster overview"), "{page}");
    assert!(page.contains("corral-pymesos-framework"), "{page}");

    // SIGTERM stops corral dev and everything it started.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal corral dev");
    let status = tokio::time::timeout(Duration::from_secs(40), dev.wait())
        .await
        .expect("corral dev stops within 40s")
        .expect("wait");
    assert!(status.success(), "corral dev exited with {status}");
    let mut printed = String::new();
    if let Some(mut out) = dev.stdout.take() {
        use tokio::io::AsyncReadExt;
        out.read_to_string(&mut printed).await.expect("stdout");
    }
    assert!(
        printed.contains(&format!("web UI         http://{master}/")),
        "corral dev does not print the web UI's address:\n{printed}"
    );
    assert!(
        daemons.iter().all(|p| !alive(*p)),
        "daemons still running after corral dev stopped: {daemons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_dev_with_three_masters_elects_a_leader_with_its_own_zookeeper_and_stops_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port_block(4);
    let mut dev = tokio::process::Command::new(corral_bin())
        .args(["dev", "--masters", "3", "--agents", "1"])
        .args(["--port", &port.to_string()])
        .args(["--resources", "cpus:1;mem:512;disk:512;ports:[31000-31010]"])
        .arg("--work_dir")
        .arg(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start corral dev");
    let dev_pid = dev.id().expect("pid");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let leader = || async {
        let r = no_redirects
            .get(format!("http://127.0.0.1:{port}/master/redirect"))
            .send()
            .await
            .ok()?;
        let location = r.headers().get("location")?.to_str().ok()?.to_owned();
        location.rsplit(':').next()?.parse::<u16>().ok()
    };
    // Any master's metrics lead to the leader's (standbys redirect).
    let metrics = format!("http://127.0.0.1:{port}/metrics/snapshot");
    assert!(
        wait_for(Duration::from_secs(60), || async {
            let Ok(r) = reqwest::get(&metrics).await else {
                return false;
            };
            let Ok(v) = r.json::<Value>().await else {
                return false;
            };
            v["master/slaves_active"].as_f64() == Some(1.0)
        })
        .await,
        "corral dev --masters 3 did not come up with its agent"
    );
    let first = leader().await.expect("a leader");
    assert!((port..port + 3).contains(&first));
    let zk_pid: i32 = std::fs::read_to_string(work.path().join("zookeeper/node1/pid"))
        .expect("zookeeper pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(zk_pid));
    // (Besides them, a shell watches corral dev to stop ZooKeeper if it dies.)
    let daemons: Vec<i32> = pids_of_children(dev_pid)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "corral")
        })
        .collect();
    assert_eq!(daemons.len(), 4, "3 masters + 1 agent, got {daemons:?}");

    // SIGTERM stops everything, ZooKeeper included.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal corral dev");
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .expect("corral dev stops within 60s")
        .expect("wait");
    assert!(status.success(), "corral dev exited with {status}");
    assert!(daemons.iter().all(|p| !alive(*p)), "{daemons:?}");
    assert!(
        wait_for(Duration::from_secs(10), || async { !alive(zk_pid) }).await,
        "zookeeper still running"
    );
}
