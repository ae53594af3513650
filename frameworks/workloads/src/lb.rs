//! Load balancing of SERVICE requests through a real HAProxy.
//!
//! [`render`] is pure: the healthy upstreams of every load-balanced
//! request become one HTTP frontend routing by `serviceBasePath` (longest
//! path first) to one backend per request. [`Haproxy`] owns the process:
//! it runs HAProxy in master-worker mode (`-W`), and on every change writes
//! the configuration, checks it with `haproxy -c`, and reloads with
//! `SIGUSR2`. A reload hands the listening sockets to the new worker
//! (`expose-fd listeners`) while the old one finishes the connections it
//! has, so no connection is refused or cut. Each apply waits until the
//! running HAProxy reports exactly the wanted servers on its stats socket,
//! so an instance is known to be in (or out of) rotation before the
//! framework goes on (the shell drains instances before killing them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One healthy instance in rotation (Singularity's `UpstreamInfo`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// `host:port`.
    pub upstream: String,
    /// The request.
    pub request_id: String,
    /// The task behind it.
    pub task_id: String,
    /// The agent's `rack` attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack_id: Option<String>,
}

/// A load-balanced request: its path and healthy instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// The request.
    pub request_id: String,
    /// The path prefix routed to it (`serviceBasePath`).
    pub service_base_path: String,
    /// Its healthy instances.
    pub upstreams: Vec<Upstream>,
}

/// How HAProxy is run.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// The `haproxy` binary.
    pub bin: PathBuf,
    /// Where the configuration, pid file and sockets go.
    pub dir: PathBuf,
    /// `host:port` the HTTP frontend binds.
    pub bind: String,
}

/// Why HAProxy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// HAProxy refused the configuration.
    #[error("haproxy refused the configuration: {0}")]
    Config(String),
    /// The running HAProxy did not take the configuration in time.
    #[error("haproxy did not take the new configuration within {0:?}")]
    Timeout(Duration),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LbError {
    let what = what.into();
    move |source| LbError::Io { what, source }
}

/// A name HAProxy accepts for a backend or server.
fn name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The backend name of a request.
fn backend_name(request_id: &str) -> String {
    format!("req_{}", name(request_id))
}

/// HAProxy's configuration for `backends`.
pub fn render(dir: &Path, bind: &str, backends: &[Backend]) -> String {
    let mut out = String::new();
    let dir = dir.display();
    out.push_str(&format!(
        "# written by corral workloads: changes are overwritten\n\
         global\n\
         \x20   pidfile {dir}/haproxy.pid\n\
         \x20   stats socket {dir}/haproxy.sock mode 600 level admin expose-fd listeners\n\
         \x20   hard-stop-after 5m\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   option httplog\n\
         \x20   option redispatch\n\
         \x20   retries 3\n\
         \x20   retry-on conn-failure empty-response response-timeout\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout http-request 10s\n\
         \n\
         frontend corral_services\n\
         \x20   bind {bind}\n"
    ));
    let mut sorted: Vec<&Backend> = backends.iter().collect();
    // Longest prefix first, so /a/b wins over /a.
    sorted.sort_by(|a, b| {
        b.service_base_path
            .len()
            .cmp(&a.service_base_path.len())
            .then_with(|| a.request_id.cmp(&b.request_id))
    });
    for b in &sorted {
        let backend = backend_name(&b.request_id);
        let path = b.service_base_path.trim_end_matches('/');
        if path.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "    acl {backend} path {path} or path_beg {path}/\n    use_backend {backend} if {backend}\n"
        ));
    }
    // The root path, if some request asked for it, goes last.
    if let Some(root) = sorted
        .iter()
        .find(|b| b.service_base_path.trim_end_matches('/').is_empty())
    {
        out.push_str(&format!(
            "    default_backend {}\n",
            backend_name(&root.request_id)
        ));
    }
    for b in &sorted {
        out.push_str(&format!(
            "\nbackend {}\n    balance roundrobin\n",
            backend_name(&b.request_id)
        ));
        let mut upstreams = b.upstreams.clone();
        upstreams.sort();
        for u in &upstreams {
            out.push_str(&format!(
                "    server {} {} check inter 1s fall 2 rise 1\n",
                name(&u.task_id),
                u.upstream
            ));
        }
    }
    out
}

/// The `(backend, server)` pairs `backends` should show on the stats
/// socket.
fn wanted_servers(backends: &[Backend]) -> BTreeSet<(String, String)> {
    backends
        .iter()
        .flat_map(|b| {
            b.upstreams
                .iter()
                .map(|u| (backend_name(&b.request_id), name(&u.task_id)))
        })
        .collect()
}

/// A running HAProxy the framework configures.
#[derive(Debug)]
pub struct Haproxy {
    config: LbConfig,
    master_pid: i32,
    last: Option<String>,
}

const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Haproxy {
    fn cfg(&self) -> PathBuf {
        self.config.dir.join("haproxy.cfg")
    }

    /// Starts HAProxy with no backends, or takes over the one a previous
    /// instance of the framework started in the same directory.
    pub async fn start(config: LbConfig) -> Result<Self, LbError> {
        std::fs::create_dir_all(&config.dir).map_err(io(format!(
            "cannot create --haproxy_dir {}",
            config.dir.display()
        )))?;
        let mut me = Self {
            config,
            master_pid: 0,
            last: None,
        };
        let text = render(&me.config.dir, &me.config.bind, &[]);
        if let Some(pid) = me.running_master() {
            tracing::info!(pid, "taking over the running haproxy");
            me.master_pid = pid;
            return Ok(me);
        }
        me.write_checked(&text).await?;
        let child = std::process::Command::new(&me.config.bin)
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(me.cfg())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(me.config.dir.join("haproxy.log"))
                    .map(std::process::Stdio::from)
                    .unwrap_or_else(|_| std::process::Stdio::null()),
            )
            .spawn()
            .map_err(io(format!(
                "cannot start {} (install it: scripts/haproxy.sh install)",
                me.config.bin.display()
            )))?;
        me.master_pid = i32::try_from(child.id()).unwrap_or(0);
        // Reap it when it ends so it does not linger as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        me.last = Some(text);
        me.await_servers(&BTreeSet::new()).await?;
        tracing::info!(pid = me.master_pid, bind = %me.config.bind, "haproxy started");
        Ok(me)
    }

    /// The master of a HAProxy running on this directory's configuration.
    fn running_master(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.config.dir.join("haproxy.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let cfg = self.cfg();
        (cmdline.contains("haproxy") && cmdline.contains(&*cfg.to_string_lossy())).then_some(pid)
    }

    /// The HAProxy master's process id.
    pub fn pid(&self) -> i32 {
        self.master_pid
    }

    async fn write_checked(&self, text: &str) -> Result<(), LbError> {
        let next = self.config.dir.join("haproxy.cfg.next");
        tokio::fs::write(&next, text)
            .await
            .map_err(io(format!("cannot write {}", next.display())))?;
        let check = tokio::process::Command::new(&self.config.bin)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&next)
            .output()
            .await
            .map_err(io(format!(
                "cannot run {} (install it: scripts/haproxy.sh install)",
                self.config.bin.display()
            )))?;
        if !check.status.success() {
            return Err(LbError::Config(
                String::from_utf8_lossy(&check.stderr).trim().to_string(),
            ));
        }
        tokio::fs::rename(&next, self.cfg())
            .await
            .map_err(io("cannot replace haproxy.cfg"))
    }

    /// Puts `backends` in rotation: writes, checks and reloads when they
    /// changed, then waits until HAProxy serves exactly their servers.
    /// Returns whether anything changed.
    pub async fn apply(&mut self, backends: &[Backend]) -> Result<bool, LbError> {
        let text = render(&self.config.dir, &self.config.bind, backends);
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        self.write_checked(&text).await?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.master_pid),
            nix::sys::signal::Signal::SIGUSR2,
        )
        .map_err(|e| LbError::Io {
            what: format!("cannot signal the haproxy master {}", self.master_pid),
            source: std::io::Error::from(e),
        })?;
        self.last = Some(text);
        self.await_servers(&wanted_servers(backends)).await?;
        Ok(true)
    }

    /// Waits until the stats socket lists exactly `wanted`.
    async fn await_servers(&self, wanted: &BTreeSet<(String, String)>) -> Result<(), LbError> {
        let socket = self.config.dir.join("haproxy.sock");
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        loop {
            if let Ok(have) = servers(&socket).await {
                if have == *wanted {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LbError::Timeout(APPLY_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `(backend, server)` pairs the HAProxy behind `socket` serves.
async fn servers(socket: &Path) -> std::io::Result<BTreeSet<(String, String)>> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(b"show stat\n").await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut text))
        .await
        .map_err(|_| std::io::Error::other("stats socket timed out"))??;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(',');
            let (px, sv) = (f.next()?, f.next()?);
            (px.starts_with("req_") && sv != "FRONTEND" && sv != "BACKEND")
                .then(|| (px.to_string(), sv.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(host: &str, task: &str) -> Upstream {
        Upstream {
            upstream: host.into(),
            request_id: "r".into(),
            task_id: task.into(),
            rack_id: None,
        }
    }

    #[test]
    fn routes_by_longest_base_path_with_one_backend_per_request() {
        let backends = vec![
            Backend {
                request_id: "web".into(),
                service_base_path: "/web".into(),
                upstreams: vec![up("h1:31000", "web-1"), up("h2:31001", "web-2")],
            },
            Backend {
                request_id: "web-api".into(),
                service_base_path: "/web/api/".into(),
                upstreams: vec![up("h3:31002", "api 1")],
            },
        ];
        let text = render(Path::new("/lb"), "127.0.0.1:8080", &backends);
        assert!(text.contains("bind 127.0.0.1:8080"));
        assert!(
            text.contains("stats socket /lb/haproxy.sock mode 600 level admin expose-fd listeners")
        );
        let api = text
            .find("acl req_web-api path /web/api or path_beg /web/api/")
            .unwrap();
        let web = text
            .find("acl req_web path /web or path_beg /web/")
            .unwrap();
        assert!(api < web, "the longer path must be matched first:\n{text}");
        assert!(text.contains("server web-1 h1:31000 check"));
        assert!(text.contains("server api_1 h3:31002 check"), "{text}");
        assert_eq!(
            wanted_servers(&backends),
            [
                ("req_web".to_string(), "web-1".to_string()),
                ("req_web".to_string(), "web-2".to_string()),
                ("req_web-api".to_string(), "api_1".to_string()),
            ]
            .into_iter()
            .collect()
        );
    }

    #[test]
    fn rendering_is_stable_whatever_the_order_of_upstreams() {
        let a = Backend {
            request_id: "web".into(),
            service_base_path: "/".into(),
            upstreams: vec![up("h1:1", "a"), up("h2:2", "b")],
        };
        let mut b = a.clone();
        b.upstreams.reverse();
        assert_eq!(
            render(Path::new("/d"), ":80", &[a]),
            render(Path::new("/d"), ":80", &[b])
        );
        let text = render(Path::new("/d"), ":80", &[]);
        assert!(!text.contains("backend"), "{text}");
    }
}
