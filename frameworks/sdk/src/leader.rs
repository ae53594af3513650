//! Leader election among instances of one framework, through ZooKeeper.
//!
//! Every instance enters the election under the framework's znode path
//! (`--zk zk://host:port/corral/frameworks/<name>`) with an ephemeral
//! sequential `json.info_` znode holding its address, exactly as Mesos
//! masters do; the lowest sequence leads. Only the leader subscribes to the
//! master and writes the state store; standbys know the leader's address
//! (to redirect API requests to it) and take over when its session ends.
//! A leader whose ZooKeeper session expires must stop acting at once
//! ([`Election::lost`]): another instance may already lead.

use std::sync::Arc;
use std::time::Duration;

use corral_zk::election::{Contender, ElectionError};
use corral_zk::{Session, SessionState, ZkUrl};
use tokio::sync::watch;

/// Why the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The `--zk` URL is malformed.
    #[error("invalid --zk: {0}")]
    Url(String),
    /// ZooKeeper could not be reached.
    #[error("cannot reach ZooKeeper {servers}: {message}")]
    Unreachable {
        /// The servers.
        servers: String,
        /// What failed.
        message: String,
    },
    /// The election failed (the session expired, or a request failed).
    #[error("leader election: {0}")]
    Election(#[from] ElectionError),
}

/// This instance, as other instances and clients find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// A unique id of the instance (a UUID by default).
    pub id: String,
    /// Where its API listens.
    pub hostname: String,
    /// Its API port.
    pub port: u16,
}

impl Instance {
    /// An instance with a fresh id.
    pub fn new(hostname: impl Into<String>, port: u16) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            hostname: hostname.into(),
            port,
        }
    }

    /// The JSON it publishes: shaped like Mesos' MasterInfo, so the same
    /// readers find the leader's address.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": self.id,
            "hostname": self.hostname,
            "port": self.port,
            "address": {"hostname": self.hostname, "ip": self.hostname, "port": self.port},
        }))
        .unwrap_or_default()
    }
}

/// This instance's candidacy.
pub struct Election {
    session: Arc<Session>,
    contender: Contender,
    leader: watch::Sender<Option<String>>,
}

impl Election {
    /// Connects to ZooKeeper and enters the election under `zk`'s path.
    pub async fn enter(
        zk: &str,
        me: &Instance,
        session_timeout: Duration,
    ) -> Result<Self, LeaderError> {
        let url = ZkUrl::parse(zk).map_err(|e| LeaderError::Url(e.to_string()))?;
        let session = Session::connect(&url.servers, session_timeout, Duration::from_secs(10))
            .await
            .map_err(|e| LeaderError::Unreachable {
                servers: url.servers.clone(),
                message: e.to_string(),
            })?;
        let session = Arc::new(session);
        let contender =
            Contender::enter_with(Arc::clone(&session), &url.path, me.to_json()).await?;
        Ok(Self {
            session,
            contender,
            leader: watch::channel(None).0,
        })
    }

    /// This instance's znode name.
    pub fn name(&self) -> &str {
        &self.contender.name
    }

    /// The current leader's `host:port` while this instance waits.
    pub fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    /// Waits until this instance leads; returns its epoch (grows with every
    /// new leader under the path).
    pub async fn lead(&self) -> Result<u64, LeaderError> {
        let epoch = self.contender.lead(&self.leader, 1).await?;
        self.leader.send_replace(None);
        tracing::info!(znode = %self.contender.name, epoch, "this instance leads");
        Ok(epoch)
    }

    /// Resolves when the session has expired: this instance no longer
    /// leads (or contends) and must stop acting as leader.
    pub async fn lost(&self) {
        let mut state = self.session.state();
        let _ = state.wait_for(|s| *s == SessionState::Expired).await;
    }

    /// Leaves the election (closes the session; the next instance leads).
    pub async fn resign(self) {
        self.session.close().await;
    }
}
