//! ZooKeeper plumbing shared by leader election and the ZooKeeper registry:
//! `zk://` URLs, sessions and their state.
//!
//! A session is watched through [`Session::state`]: once ZooKeeper expires
//! it (or the client has been cut off for longer than the session timeout,
//! after which ZooKeeper may have expired it without us knowing), it is
//! [`SessionState::Expired`] for good and the master must stop leading.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zookeeper_async::{Acl, CreateMode, WatchedEvent, Watcher, ZkError, ZkState, ZooKeeper};

/// Errors of ZooKeeper URLs and sessions.
#[derive(Debug, thiserror::Error)]
pub enum ZkUrlError {
    /// The URL is not `zk://host:port[,host:port...]/path`.
    #[error("invalid ZooKeeper URL {url:?}: {reason}")]
    Invalid {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed `zk://host:port[,host:port...]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkUrl {
    /// `host:port,host:port`, as the client takes it.
    pub servers: String,
    /// The znode path (starts with `/`, no trailing `/`).
    pub path: String,
}

impl ZkUrl {
    /// Parses a `zk://` URL (Mesos' form; credentials are not supported).
    pub fn parse(url: &str) -> Result<Self, ZkUrlError> {
        let invalid = |reason: &str| ZkUrlError::Invalid {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("zk://")
            .ok_or_else(|| invalid("it must start with zk://"))?;
        let (servers, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(invalid("it has no path (zk://host:port/path)")),
        };
        if servers.contains('@') {
            return Err(invalid("credentials in ZooKeeper URLs are not supported"));
        }
        if servers.is_empty() {
            return Err(invalid("it names no server"));
        }
        for server in servers.split(',') {
            let (host, port) = server
                .rsplit_once(':')
                .ok_or_else(|| invalid("every server must be host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(invalid("every server must be host:port"));
            }
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() || path.contains("//") {
            return Err(invalid("the path must be non-empty, like /mesos"));
        }
        Ok(Self {
            servers: servers.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// The state of a ZooKeeper session as the master sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected to a server; the session is live.
    Connected,
    /// Reconnecting; the session may still be live.
    Disconnected,
    /// The session is gone (expired, closed, or cut off for longer than its
    /// timeout). Final.
    Expired,
}

struct NoWatch;

impl Watcher for NoWatch {
    fn handle(&self, _event: WatchedEvent) {}
}

/// A ZooKeeper session.
pub struct Session {
    /// The client.
    pub zk: Arc<ZooKeeper>,
    state: watch::Receiver<SessionState>,
    /// The session timeout asked for.
    pub timeout: Duration,
}

impl Session {
    /// Opens a session to `servers` and waits (up to `connect_timeout`) for
    /// it to be established.
    pub async fn connect(
        servers: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, ZkError> {
        let zk = ZooKeeper::connect(servers, timeout, NoWatch).await?;
        let (tx, rx) = watch::channel(SessionState::Disconnected);
        let tx = Arc::new(tx);
        let listener_tx = Arc::clone(&tx);
        zk.add_listener(move |state: ZkState| {
            let next = match state {
                ZkState::Connected | ZkState::ConnectedReadOnly => SessionState::Connected,
                ZkState::Connecting => SessionState::Disconnected,
                // NotConnected is what the client reports when the server
                // answers a reconnect with "session expired".
                _ => SessionState::Expired,
            };
            listener_tx.send_if_modified(|current| {
                if *current == SessionState::Expired || *current == next {
                    false
                } else {
                    *current = next;
                    true
                }
            });
        });
        let zk = Arc::new(zk);
        // The first request is queued until the session is established.
        let first = match tokio::time::timeout(connect_timeout, zk.exists("/", false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ZkError::ConnectionLoss),
        };
        if let Err(e) = first {
            // Closing stops the client's reconnect loop.
            let _ = zk.close().await;
            return Err(e);
        }
        tx.send_if_modified(|current| {
            if *current == SessionState::Disconnected {
                *current = SessionState::Connected;
                true
            } else {
                false
            }
        });
        // A watchdog: disconnected for longer than the session timeout means
        // the session may have expired on the server (and another master may
        // lead), so it counts as expired here.
        let mut watched = rx.clone();
        tokio::spawn(async move {
            let mut since: Option<Instant> = None;
            loop {
                let state = *watched.borrow_and_update();
                match state {
                    SessionState::Expired => return,
                    SessionState::Connected => since = None,
                    SessionState::Disconnected => {
                        since.get_or_insert_with(Instant::now);
                    }
                }
                let wait = match since {
                    Some(at) => timeout.saturating_sub(at.elapsed()),
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    changed = watched.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(wait) => {
                        if since.is_some_and(|at| at.elapsed() >= timeout) {
                            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "zookeeper disconnected for longer than the session timeout");
                            tx.send_replace(SessionState::Expired);
                            return;
                        }
                    }
                }
            }
        });
        Ok(Self {
            zk,
            state: rx,
            timeout,
        })
    }

    /// Ends the session (its ephemeral znodes go at once).
    pub async fn close(&self) {
        let _ = self.zk.close().await;
    }

    /// The session's state, updated as it changes.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.clone()
    }

    /// Creates `path` and its parents as persistent znodes if missing.
    pub async fn ensure_path(&self, path: &str) -> Result<(), ZkError> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            match self
                .zk
                .create(
                    &at,
                    Vec::new(),
                    Acl::open_unsafe().clone(),
                    CreateMode::Persistent,
                )
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mesos_urls() {
        let url = ZkUrl::parse("zk://h1:2181,h2:2182/corral/").expect("valid");
        assert_eq!(url.servers, "h1:2181,h2:2182");
        assert_eq!(url.path, "/corral");
        assert_eq!(
            ZkUrl::parse("zk://127.0.0.1:2181/a/b").expect("valid").path,
            "/a/b"
        );
        for bad in [
            "http://h:1/a",
            "zk://h:1",
            "zk://h:1/",
            "zk:///a",
            "zk://h/a",
            "zk://h:x/a",
            "zk://u:p@h:1/a",
        ] {
            assert!(ZkUrl::parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
