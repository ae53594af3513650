//! Leader election in ZooKeeper, as Mesos does it.
//!
//! Every master creates an ephemeral sequential znode `json.info_<10-digit
//! seq>` under the `--zk` path holding its MasterInfo as JSON; the lowest
//! sequence leads. Clients (agents with `--master zk://`, pymesos, ...)
//! read the lowest znode to find the leader. The leader's epoch is its
//! sequence number plus one: sequences only grow under a path, so a newer
//! leader always has a higher epoch than any before it.

use std::sync::Arc;

use corral_api::v1;
use tokio::sync::{watch, Notify};
use zookeeper_async::{Acl, CreateMode, ZkError};

use crate::session::{Session, SessionState};

/// The prefix of the contenders' znodes.
pub const PREFIX: &str = "json.info_";

/// Errors of the election.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// A ZooKeeper request failed.
    #[error("zookeeper {what}: {error:?}")]
    ZooKeeper {
        /// The request.
        what: &'static str,
        /// The error.
        error: ZkError,
    },
    /// The session expired: this master is no longer a contender.
    #[error("zookeeper session expired")]
    SessionExpired,
}

/// The sequence number of a contender's znode name, if it is one.
pub fn sequence(name: &str) -> Option<u64> {
    let seq = name.strip_prefix(PREFIX)?;
    if seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()) {
        seq.parse().ok()
    } else {
        None
    }
}

/// The leader's znode among `children`: the lowest sequence.
pub fn leader_of(children: &[String]) -> Option<(&str, u64)> {
    children
        .iter()
        .filter_map(|c| sequence(c).map(|s| (c.as_str(), s)))
        .min_by_key(|(_, s)| *s)
}

/// `host:port` from a MasterInfo published as JSON.
pub fn address_of(json: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let address = value.get("address")?;
    let port = address.get("port")?.as_u64()?;
    let host = address
        .get("hostname")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .or_else(|| address.get("ip").and_then(|i| i.as_str()))
        .or_else(|| value.get("hostname").and_then(|h| h.as_str()))?;
    Some(format!("{host}:{port}"))
}

/// The current leader's `host:port` under `path`, read once: `None` when no
/// contender is there (or its data holds no address).
pub async fn leader_address(session: &Session, path: &str) -> Result<Option<String>, ZkError> {
    let children = match session.zk.get_children(path, false).await {
        Ok(c) => c,
        Err(ZkError::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((name, _)) = leader_of(&children) else {
        return Ok(None);
    };
    match session.zk.get_data(&format!("{path}/{name}"), false).await {
        Ok((data, _)) => Ok(address_of(&data)),
        // The leader's session ended between the two reads.
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many masters contend in an election group's children.
pub fn contender_count(children: &[String]) -> usize {
    children.iter().filter(|c| sequence(c).is_some()).count()
}

/// A master's candidacy.
pub struct Contender {
    session: Arc<Session>,
    path: String,
    /// This master's znode name.
    pub name: String,
    /// Its sequence number.
    pub sequence: u64,
}

impl Contender {
    /// Publishes `info` under `path` and becomes a contender.
    pub async fn enter(
        session: Arc<Session>,
        path: &str,
        info: &v1::MasterInfo,
    ) -> Result<Self, ElectionError> {
        Self::enter_with(session, path, corral_api::codec::to_json(info)).await
    }

    /// Publishes `data` under `path` and becomes a contender. Other
    /// contenders and clients read the leader's address from it
    /// ([`address_of`]), so it should be JSON shaped like MasterInfo's
    /// (`{"address": {"hostname", "ip", "port"}}`).
    pub async fn enter_with(
        session: Arc<Session>,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Self, ElectionError> {
        session
            .ensure_path(path)
            .await
            .map_err(|error| ElectionError::ZooKeeper {
                what: "create path",
                error,
            })?;
        let created = session
            .zk
            .create(
                &format!("{path}/{PREFIX}"),
                data,
                Acl::open_unsafe().clone(),
                CreateMode::EphemeralSequential,
            )
            .await
            .map_err(|error| ElectionError::ZooKeeper {
                what: "create contender",
                error,
            })?;
        let name = created.rsplit('/').next().unwrap_or_default().to_owned();
        let sequence = sequence(&name).ok_or(ElectionError::ZooKeeper {
            what: "create contender (unexpected name)",
            error: ZkError::MarshallingError,
        })?;
        tracing::info!(path, znode = %name, "entered the leader election");
        Ok(Self {
            session,
            path: path.to_owned(),
            name,
            sequence,
        })
    }

    /// Waits until this contender leads and returns its epoch. Meanwhile
    /// `leader` holds the current leader's `host:port` (for redirects).
    ///
    /// With `quorum` > 1 the elected master also waits until at least that
    /// many masters (itself included) contend, as a Mesos master waits for a
    /// quorum of its replicated log before it recovers: a lone master of an
    /// HA cluster does not start leading on its own.
    pub async fn lead(
        &self,
        leader: &watch::Sender<Option<String>>,
        quorum: usize,
    ) -> Result<u64, ElectionError> {
        let mut state = self.session.state();
        loop {
            let changed = Arc::new(Notify::new());
            let notify = Arc::clone(&changed);
            let children = self
                .session
                .zk
                .get_children_w(&self.path, move |_| notify.notify_one())
                .await
                .map_err(|error| match error {
                    ZkError::SessionExpired => ElectionError::SessionExpired,
                    error => ElectionError::ZooKeeper {
                        what: "list contenders",
                        error,
                    },
                })?;
            match leader_of(&children) {
                Some((name, _)) if name == self.name => {
                    let contenders = contender_count(&children);
                    if contenders >= quorum {
                        return Ok(self.sequence + 1);
                    }
                    leader.send_replace(None);
                    tracing::warn!(
                        contenders,
                        quorum,
                        "elected, but waiting for a quorum of masters before leading                          (start more masters with the same --zk, or lower --quorum)"
                    );
                }
                Some((name, seq)) => {
                    let address = match self
                        .session
                        .zk
                        .get_data(&format!("{}/{name}", self.path), false)
                        .await
                    {
                        Ok((data, _)) => address_of(&data),
                        Err(_) => None,
                    };
                    tracing::info!(leader = %name, sequence = seq, address = address.as_deref().unwrap_or(""), "waiting as a standby");
                    leader.send_replace(address);
                }
                None => {
                    // Our own znode vanished: the session expired.
                    return Err(ElectionError::SessionExpired);
                }
            }
            tokio::select! {
                _ = changed.notified() => {}
                result = state.wait_for(|s| *s == SessionState::Expired) => {
                    let _ = result;
                    return Err(ElectionError::SessionExpired);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_contender_znodes_count_toward_the_quorum() {
        let children = vec![
            "json.info_0000000003".to_string(),
            "registry".to_string(),
            "json.info_0000000001".to_string(),
        ];
        assert_eq!(contender_count(&children), 2);
    }

    #[test]
    fn lowest_sequence_leads() {
        let children: Vec<String> = [
            "json.info_0000000012",
            "info_0000000003",
            "json.info_0000000010",
            "json.info_12",
            "log_replicas",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(leader_of(&children), Some(("json.info_0000000010", 10)));
        assert_eq!(leader_of(&[]), None);
    }

    #[test]
    fn reads_the_address_mesos_publishes() {
        let json = br#"{"address":{"hostname":"m1","ip":"10.0.0.1","port":5050},"hostname":"m1","id":"x","ip":16777226,"port":5050,"version":"1.11.0"}"#;
        assert_eq!(address_of(json).as_deref(), Some("m1:5050"));
        let json = br#"{"address":{"ip":"10.0.0.1","port":5050}}"#;
        assert_eq!(address_of(json).as_deref(), Some("10.0.0.1:5050"));
        assert_eq!(address_of(b"not json"), None);
    }
}
