//! The YARN bridge's end-to-end harness: the ResourceManager stand-in (a
//! test double: no YARN distribution can be downloaded here; see
//! `tests/yarn/README.md`), the `yarn` command stand-in the agents launch
//! as the NodeManager, and `corral yarn-bridge` with its REST API.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{corral_bin, free_port, wait_for, workspace_dir, TIMEOUT};

/// `tests/yarn/home`: the YARN_HOME whose `bin/yarn` is the NodeManager
/// and rmadmin stand-in.
pub fn standin_yarn_home() -> PathBuf {
    workspace_dir().join("tests/yarn/home")
}

/// A running ResourceManager stand-in (test double).
pub struct RmStandin {
    child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The exclude file it reads on `refreshNodes`.
    pub exclude_file: PathBuf,
    http: reqwest::Client,
}

impl RmStandin {
    /// Starts it with its exclude file and log in `dir`.
    pub async fn start(dir: &Path, extra: &[&str]) -> RmStandin {
        let port = free_port();
        let exclude_file = dir.join("yarn.exclude");
        let log = std::fs::File::create(dir.join("rm-standin.log")).expect("log");
        let child = tokio::process::Command::new("python3")
            .arg(workspace_dir().join("tests/yarn/rm_standin.py"))
            .args(["--port", &port.to_string()])
            .arg("--exclude-file")
            .arg(&exclude_file)
            // Nodes are LOST after 10 s without a heartbeat (not 3 s): the
            // suite runs on two loaded cores.
            .args(["--expiry-ms", "10000"])
            .args(extra)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the ResourceManager stand-in");
        let rm = RmStandin {
            child,
            url: format!("http://127.0.0.1:{port}"),
            exclude_file,
            http: reqwest::Client::new(),
        };
        assert!(
            wait_for(TIMEOUT, || async {
                rm.get("/ws/v1/cluster/info").await["clusterInfo"]["state"] == "STARTED"
            })
            .await,
            "the ResourceManager stand-in did not start:\n{}",
            std::fs::read_to_string(dir.join("rm-standin.log")).unwrap_or_default()
        );
        rm
    }

    /// GET, as JSON (`Null` on failure).
    pub async fn get(&self, path: &str) -> Value {
        match self.http.get(format!("{}{path}", self.url)).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The nodes of `/ws/v1/cluster/nodes`.
    pub async fn nodes(&self) -> Vec<Value> {
        self.get("/ws/v1/cluster/nodes").await["nodes"]["node"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The nodes in `state`, by host.
    pub async fn hosts_in(&self, state: &str) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .nodes()
            .await
            .iter()
            .filter(|n| n["state"] == state)
            .filter_map(|n| n["nodeHostName"].as_str().map(str::to_string))
            .collect();
        hosts.sort();
        hosts
    }

    /// The node on `host`.
    pub async fn node(&self, host: &str) -> Option<Value> {
        self.nodes()
            .await
            .into_iter()
            .find(|n| n["nodeHostName"] == host && n["state"] != "SHUTDOWN")
    }

    /// `/ws/v1/cluster/metrics`' `clusterMetrics`.
    pub async fn metrics(&self) -> Value {
        self.get("/ws/v1/cluster/metrics").await["clusterMetrics"].clone()
    }

    /// Submits an app of `containers` containers of `mb` MB and `vcores`;
    /// returns its id.
    pub async fn submit(&self, containers: u32, mb: u32, vcores: u32) -> String {
        let r = self
            .http
            .post(format!("{}/standin/apps", self.url))
            .json(
                &json!({"name": "e2e", "containers": containers, "memoryMB": mb, "vcores": vcores}),
            )
            .send()
            .await
            .expect("submit");
        assert!(r.status().is_success(), "submit: {}", r.status());
        let v: Value = r.json().await.expect("json");
        v["id"].as_str().expect("app id").to_string()
    }

    /// Finishes an app: its containers stop.
    pub async fn finish(&self, app: &str) {
        let r = self
            .http
            .delete(format!("{}/standin/apps/{app}", self.url))
            .send()
            .await
            .expect("finish");
        assert!(r.status().is_success(), "finish {app}: {}", r.status());
    }
}

impl Drop for RmStandin {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A running `corral yarn-bridge`.
pub struct Bridge {
    /// The process.
    pub child: tokio::process::Child,
    /// Its API's base URL.
    pub url: String,
    /// Its log.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Bridge {
    /// Starts the bridge for `master` and `rm` with the stand-in as
    /// Hadoop, its state and files under `dir`, plus `extra` flags.
    pub fn spawn(master: &str, rm: &RmStandin, dir: &Path, extra: &[String]) -> Bridge {
        let port = free_port();
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("yarn-bridge-{n}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = tokio::process::Command::new(corral_bin())
            .args(["yarn-bridge", "--master", master])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--resourcemanager", &rm.url])
            .arg(format!("--yarn_home={}", standin_yarn_home().display()))
            .arg(format!("--exclude_file={}", rm.exclude_file.display()))
            .arg(format!("--work_dir={}", dir.join("work").display()))
            .arg(format!("--state_dir={}", dir.join("state").display()))
            .arg("--rm_poll_interval=300ms")
            .args(extra)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the yarn bridge");
        Bridge {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Starts it and waits until it has subscribed.
    pub async fn start(master: &str, rm: &RmStandin, dir: &Path, extra: &[String]) -> Bridge {
        let b = Self::spawn(master, rm, dir, extra);
        assert!(
            wait_for(TIMEOUT * 2, || async {
                b.get("/api/nodemanagers").await.1["subscribed"] == true
            })
            .await,
            "the bridge did not subscribe:\n{}",
            b.log_text()
        );
        b
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET: status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self.http.get(format!("{}{path}", self.url)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// PUT a raw body: status and text.
    pub async fn put_raw(&self, path: &str, body: &str) -> (u16, String) {
        let r = self
            .http
            .put(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Myriad's flexup.
    pub async fn flexup(&self, body: Value) -> (u16, String) {
        self.put_raw("/api/cluster/flexup", &body.to_string()).await
    }

    /// Myriad's flexdown.
    pub async fn flexdown(&self, body: Value) -> (u16, String) {
        self.put_raw("/api/cluster/flexdown", &body.to_string())
            .await
    }

    /// Myriad's `/api/state`.
    pub async fn state(&self) -> Value {
        self.get("/api/state").await.1
    }

    /// The task ids in one list of `/api/state` (`activeTasks`, ...).
    pub async fn tasks(&self, list: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.state().await[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// `/api/nodemanagers`' list.
    pub async fn nodemanagers(&self) -> Vec<Value> {
        self.get("/api/nodemanagers").await.1["nodemanagers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
