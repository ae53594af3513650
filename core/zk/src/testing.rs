//! A real ZooKeeper server for tests, benchmarks and `corral dev`, started
//! with the project's `scripts/zookeeper.sh` (Debian's ZooKeeper 3.8).
//!
//! [`ZooKeeperServer::start`] picks free loopback ports, starts one node or
//! an ensemble in a directory, and waits until every node serves. The
//! servers stop when the value is dropped, and a detached watchdog stops
//! them when the process that started them exits, however it exits.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors starting a ZooKeeper server.
#[derive(Debug, thiserror::Error)]
pub enum ZooKeeperServerError {
    /// The script could not be run.
    #[error("cannot run {}: {source}", script.display())]
    Spawn {
        /// The script.
        script: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The script failed.
    #[error("zookeeper did not start: {0}")]
    Failed(String),
    /// No free ports were found.
    #[error("no free loopback ports for zookeeper")]
    NoPorts,
}

/// The `scripts/zookeeper.sh` to use: `$CORRAL_ZK_SCRIPT`, else the one in
/// the source tree this crate was built from.
pub fn script() -> PathBuf {
    std::env::var_os("CORRAL_ZK_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh"))
}

/// A running ZooKeeper node or ensemble.
#[derive(Debug)]
pub struct ZooKeeperServer {
    dir: PathBuf,
    /// `127.0.0.1:p1,127.0.0.1:p2,...`
    pub connect: String,
    /// The client ports, one per node.
    pub ports: Vec<u16>,
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn pick_base(nodes: u16) -> Option<u16> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    for attempt in 0..200u64 {
        let base =
            20000 + ((seed.wrapping_mul(6364136223846793005) + attempt * 7919) % 25000) as u16;
        let ports = (0..nodes).flat_map(|i| [base + i, base + 100 + i, base + 200 + i]);
        if ports.into_iter().all(free) {
            return Some(base);
        }
    }
    None
}

impl ZooKeeperServer {
    /// Starts `nodes` (1, 3 or 5) servers keeping their data under `dir`.
    pub fn start(dir: &Path, nodes: u16) -> Result<Self, ZooKeeperServerError> {
        let script = script();
        let base = pick_base(nodes).ok_or(ZooKeeperServerError::NoPorts)?;
        std::fs::create_dir_all(dir).map_err(|source| ZooKeeperServerError::Spawn {
            script: dir.to_owned(),
            source,
        })?;
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .arg(base.to_string())
            .arg(nodes.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ZooKeeperServerError::Spawn {
                script: script.clone(),
                source,
            })?;
        if !out.status.success() {
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return Err(ZooKeeperServerError::Failed(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let mut server = Self {
            dir: dir.to_owned(),
            connect: String::new(),
            ports: (0..nodes).map(|i| base + i).collect(),
        };
        // A watchdog stops the servers by pid when this process exits,
        // however it exits (even if `dir` is gone by then).
        let pids: Vec<String> = (0..usize::from(nodes))
            .filter_map(|i| server.pid(i))
            .map(|p| p.to_string())
            .collect();
        let watchdog = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             kill -CONT {pids} 2>/dev/null; kill {pids} 2>/dev/null; sleep 5; kill -9 {pids} 2>/dev/null",
            me = std::process::id(),
            pids = pids.join(" ")
        );
        let _ = Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(&watchdog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        server.connect = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(server)
    }

    /// The pid of node `i` (0-based), if it runs.
    pub fn pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("node{}/pid", i + 1)))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Stops every node.
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ZooKeeperServer {
    fn drop(&mut self) {
        self.stop();
    }
}
