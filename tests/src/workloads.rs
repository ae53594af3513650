//! A client of the workloads framework for the end-to-end tests: starts
//! `corral workloads serve` and calls its REST API.

use serde_json::Value;

use crate::{corral_bin, free_port, wait_for, TIMEOUT};

/// A running `corral workloads serve`.
pub struct Framework {
    /// The process.
    pub child: tokio::process::Child,
    /// Its API's base URL.
    pub url: String,
    http: reqwest::Client,
}

impl Framework {
    pub fn spawn(master: &str, extra: &[String], log: &std::path::Path) -> Framework {
        let port = free_port();
        let out = std::fs::File::create(log).expect("log");
        let child = tokio::process::Command::new(corral_bin())
            .args(["workloads", "serve", "--master", master])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the framework");
        Framework {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn subscribed(&self) -> bool {
        wait_for(TIMEOUT * 2, || async {
            self.get("/api/state").await.1["subscribed"] == true
        })
        .await
    }

    pub async fn start(
        master: &str,
        state_dir: &std::path::Path,
        log: &std::path::Path,
    ) -> Framework {
        let f = Self::spawn(
            master,
            &[format!("--state_dir={}", state_dir.display())],
            log,
        );
        assert!(
            f.subscribed().await,
            "the framework did not subscribe:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        f
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self.http.get(format!("{}{path}", self.url)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, String) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, String) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn tasks_of(&self, request: &str) -> Vec<Value> {
        let (_, v) = self.get("/api/tasks/active").await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["taskId"]["requestId"] == request)
            .cloned()
            .collect()
    }

    pub async fn runs(&self, request: &str, outcome: &str) -> usize {
        let (_, v) = self
            .get(&format!("/api/history/request/{request}/runs"))
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["outcome"] == outcome)
            .count()
    }
}
