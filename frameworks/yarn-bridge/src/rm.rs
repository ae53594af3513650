//! The bridge's view of YARN: the ResourceManager's REST API
//! (`/ws/v1/cluster/metrics`, `/ws/v1/cluster/nodes`, `updateNodeResource`),
//! a NodeManager's (`/ws/v1/node/containers`), and YARN's admin command for
//! what has no REST endpoint: graceful decommission (the exclude file,
//! then `yarn rmadmin -refreshNodes -g <secs> -server`: the RM tracks
//! the timeout, and the command does not block) and, on
//! ResourceManagers older than 3.3, `yarn rmadmin -updateNodeResource`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::autoscaler::ClusterMetrics;
use crate::fgs::Container;

/// How long one REST call may take.
const CALL: Duration = Duration::from_secs(5);
/// How long one `yarn rmadmin` may take.
const ADMIN: Duration = Duration::from_secs(60);
/// Largest answer read from YARN.
const MAX_ANSWER: usize = 16 << 20;

/// Why YARN could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RmError {
    /// The call failed.
    #[error("{url}: {reason}")]
    Call {
        /// What was called.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// `yarn rmadmin` failed.
    #[error("{command}: {reason}")]
    Admin {
        /// The command line.
        command: String,
        /// Its exit and output.
        reason: String,
    },
    /// The exclude file could not be written.
    #[error("exclude file {path}: {reason}")]
    Exclude {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One node of `/ws/v1/cluster/nodes`.
#[derive(Debug, Clone, PartialEq)]
pub struct RmNode {
    /// `host:port`.
    pub id: String,
    /// The host.
    pub host: String,
    /// RUNNING, DECOMMISSIONING, DECOMMISSIONED, LOST, ...
    pub state: String,
    /// Running containers.
    pub num_containers: u64,
    /// Memory in use, MB.
    pub used_mb: f64,
    /// Total memory, MB.
    pub total_mb: f64,
    /// Total virtual cores.
    pub total_vcores: f64,
}

impl RmNode {
    fn from_json(v: &Value) -> Option<Self> {
        let num = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let total = v.get("totalResource");
        let total_of = |k: &str| total.and_then(|t| t.get(k)).and_then(Value::as_f64);
        Some(Self {
            id: v.get("id")?.as_str()?.to_string(),
            host: v.get("nodeHostName")?.as_str()?.to_string(),
            state: v
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            num_containers: num("numContainers") as u64,
            used_mb: num("usedMemoryMB"),
            total_mb: total_of("memory").unwrap_or(num("usedMemoryMB") + num("availMemoryMB")),
            total_vcores: total_of("vCores")
                .unwrap_or(num("usedVirtualCores") + num("availableVirtualCores")),
        })
    }
}

/// Reads `{"nodes": {"node": [...]}}` (or `{"nodes": null}`).
pub fn parse_nodes(v: &Value) -> Vec<RmNode> {
    v.get("nodes")
        .and_then(|n| n.get("node"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(RmNode::from_json).collect())
        .unwrap_or_default()
}

/// Reads a NodeManager's `{"containers": {"container": [...]}}`: the
/// running ones.
pub fn parse_containers(v: &Value) -> Vec<Container> {
    v.get("containers")
        .and_then(|c| c.get("container"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| {
                    c.get("state")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == "RUNNING" || s == "NEW" || s == "LOCALIZING")
                })
                .filter_map(|c| {
                    Some(Container {
                        id: c.get("id")?.as_str()?.to_string(),
                        vcores: c
                            .get("totalVCoresNeeded")
                            .and_then(Value::as_f64)
                            .unwrap_or(0.0),
                        mem_mb: c
                            .get("totalMemoryNeededMB")
                            .and_then(Value::as_f64)
                            .unwrap_or(0.0),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A ResourceManager seen through its REST API and admin command.
#[derive(Debug, Clone)]
pub struct ResourceManager {
    http: reqwest::Client,
    /// `http://host:port` of its web app.
    base: String,
    admin: Admin,
}

/// How YARN's admin command is run.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The `yarn` command (`$YARN_HOME/bin/yarn`).
    pub yarn: PathBuf,
    /// `HADOOP_CONF_DIR` for it (its `yarn-site.xml` names the RM).
    pub conf_dir: PathBuf,
    /// The ResourceManager's exclude file
    /// (`yarn.resourcemanager.nodes.exclude-path`).
    pub exclude_file: PathBuf,
}

impl ResourceManager {
    /// The RM at `base` (`http://host:port`).
    pub fn new(base: &str, admin: Admin) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(CALL)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            admin,
        }
    }

    /// Its web address.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, url: &str) -> Result<Value, RmError> {
        let err = |reason: String| RmError::Call {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = read_bounded(resp).await.map_err(err)?;
        if !status.is_success() {
            return Err(err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )));
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("not JSON: {e}")))
    }

    /// `/ws/v1/cluster/metrics`.
    pub async fn metrics(&self) -> Result<ClusterMetrics, RmError> {
        let url = format!("{}/ws/v1/cluster/metrics", self.base);
        let v = self.get(&url).await?;
        ClusterMetrics::from_rm(&v).ok_or_else(|| RmError::Call {
            url,
            reason: "no clusterMetrics in the answer".into(),
        })
    }

    /// `/ws/v1/cluster/nodes`.
    pub async fn nodes(&self) -> Result<Vec<RmNode>, RmError> {
        let v = self
            .get(&format!("{}/ws/v1/cluster/nodes", self.base))
            .await?;
        Ok(parse_nodes(&v))
    }

    /// The running containers of the NodeManager whose web app is
    /// `address` (`host:port`).
    pub async fn containers(&self, address: &str) -> Result<Vec<Container>, RmError> {
        let v = self
            .get(&format!("http://{address}/ws/v1/node/containers"))
            .await?;
        Ok(parse_containers(&v))
    }

    /// Sets a node's capacity: the RM's `updateNodeResource` REST endpoint
    /// (Hadoop 3.3 and later), else `yarn rmadmin -updateNodeResource`.
    pub async fn update_node_resource(
        &self,
        node_id: &str,
        mem_mb: u64,
        vcores: u64,
    ) -> Result<&'static str, RmError> {
        let url = format!("{}/ws/v1/cluster/nodes/{node_id}/resource", self.base);
        let body = serde_json::json!({
            "resource": {"memory": mem_mb, "vCores": vcores},
            "overCommitTimeout": -1,
        });
        let sent = self.http.post(&url).json(&body).send().await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok("rest"),
            Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 405 => {}
            Ok(r) => {
                let status = r.status();
                let body = read_bounded(r).await.unwrap_or_default();
                return Err(RmError::Call {
                    url,
                    reason: format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ),
                });
            }
            Err(e) => {
                return Err(RmError::Call {
                    url,
                    reason: e.to_string(),
                })
            }
        }
        self.rmadmin(&[
            "-updateNodeResource",
            node_id,
            &mem_mb.to_string(),
            &vcores.to_string(),
        ])
        .await?;
        Ok("rmadmin")
    }

    /// Writes `hosts` as the exclude file and has the RM decommission them
    /// gracefully within `timeout_secs` (hosts no longer listed are
    /// recommissioned).
    pub async fn decommission(
        &self,
        hosts: &BTreeSet<String>,
        timeout_secs: u64,
    ) -> Result<(), RmError> {
        write_exclude_file(&self.admin.exclude_file, hosts)?;
        self.rmadmin(&["-refreshNodes", "-g", &timeout_secs.to_string(), "-server"])
            .await
    }

    async fn rmadmin(&self, args: &[&str]) -> Result<(), RmError> {
        let command = format!("{} rmadmin {}", self.admin.yarn.display(), args.join(" "));
        let run = tokio::process::Command::new(&self.admin.yarn)
            .arg("rmadmin")
            .args(args)
            .env("HADOOP_CONF_DIR", &self.admin.conf_dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(ADMIN, run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(RmError::Admin {
                    command,
                    reason: format!("cannot run it: {e}"),
                })
            }
            Err(_) => {
                return Err(RmError::Admin {
                    command,
                    reason: format!("no answer within {ADMIN:?}"),
                })
            }
        };
        if out.status.success() {
            tracing::info!(%command, "yarn rmadmin done");
            Ok(())
        } else {
            let tail = |b: &[u8]| {
                let s = String::from_utf8_lossy(b);
                s.chars()
                    .rev()
                    .take(500)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            };
            Err(RmError::Admin {
                command,
                reason: format!(
                    "{}; stderr: {}; stdout: {}",
                    out.status,
                    tail(&out.stderr).trim(),
                    tail(&out.stdout).trim()
                ),
            })
        }
    }
}

/// Writes the exclude file (one host a line) through a temporary file, so
/// the RM never reads half of it.
pub fn write_exclude_file(path: &std::path::Path, hosts: &BTreeSet<String>) -> Result<(), RmError> {
    let err = |e: std::io::Error| RmError::Exclude {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut text =
        String::from("# written by corral yarn-bridge: NodeManagers being decommissioned\n");
    for h in hosts {
        text.push_str(h);
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

async fn read_bounded(resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_read_in_hadoops_shape_and_none_is_empty() {
        let v = serde_json::json!({"nodes": {"node": [
            {"id": "h1:31000", "nodeHostName": "h1", "state": "RUNNING", "numContainers": 2,
             "usedMemoryMB": 2048, "availMemoryMB": 2048,
             "totalResource": {"memory": 4096, "vCores": 4}},
            {"id": "h2:31000", "nodeHostName": "h2", "state": "DECOMMISSIONED",
             "usedMemoryMB": 0, "availMemoryMB": 1024, "usedVirtualCores": 0, "availableVirtualCores": 2},
            {"nodeHostName": "no-id"}
        ]}});
        let nodes = parse_nodes(&v);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].num_containers, 2);
        assert_eq!(nodes[0].total_mb, 4096.0);
        assert_eq!(nodes[1].total_mb, 1024.0);
        assert_eq!(nodes[1].total_vcores, 2.0);
        assert!(parse_nodes(&serde_json::json!({"nodes": null})).is_empty());
    }

    #[test]
    fn only_running_containers_are_read() {
        let v = serde_json::json!({"containers": {"container": [
            {"id": "c1", "state": "RUNNING", "totalMemoryNeededMB": 1024, "totalVCoresNeeded": 1},
            {"id": "c2", "state": "DONE", "totalMemoryNeededMB": 1024, "totalVCoresNeeded": 1}
        ]}});
        let c = parse_containers(&v);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].mem_mb, 1024.0);
        assert!(parse_containers(&serde_json::json!({"containers": null})).is_empty());
    }

    #[test]
    fn the_exclude_file_lists_one_host_a_line() {
        let dir = std::env::temp_dir().join(format!("corral-exclude-{}", std::process::id()));
        let path = dir.join("yarn.exclude");
        let hosts: BTreeSet<String> = ["b".to_string(), "a".to_string()].into();
        write_exclude_file(&path, &hosts).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["a", "b"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
