//! Finding the leading master, as Mesos' scheduler drivers do.
//!
//! A master is given as `zk://host:port[,host:port...]/path` (the leading
//! master is the lowest `json.info_` znode under the path; its MasterInfo
//! JSON holds the address), or as one or more `host:port` / `http://host:port`
//! separated by commas. With a list, each candidate is asked for
//! `/master/redirect`, which every master (leader or standby) answers with a
//! `307` to the leader; a lone address is taken as it is.

use std::sync::Arc;
use std::time::Duration;

use corral_zk::{election, Session, ZkUrl};
use tokio::sync::Mutex;

/// Why the leading master could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The master flag is malformed.
    #[error(
        "invalid master {given:?}: {reason}; expected zk://host:port/path or \
         host:port[,host:port...]"
    )]
    Invalid {
        /// As given.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// No leader could be found now; retry later.
    #[error("no leading master found: {0}")]
    NoLeader(String),
}

/// Where masters are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSource {
    /// Mesos' ZooKeeper layout.
    ZooKeeper(ZkUrl),
    /// Candidates' `host:port`.
    List(Vec<String>),
}

impl MasterSource {
    /// Parses a `--master` value.
    pub fn parse(given: &str) -> Result<Self, DetectorError> {
        let invalid = |reason: &str| DetectorError::Invalid {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let given_trimmed = given.trim();
        if given_trimmed.starts_with("zk://") {
            let url = ZkUrl::parse(given_trimmed).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self::ZooKeeper(url));
        }
        let mut list = Vec::new();
        for part in given_trimmed.split(',') {
            let part = part.trim();
            let host_port = part
                .strip_prefix("http://")
                .unwrap_or(part)
                .trim_end_matches('/');
            if host_port.is_empty() {
                return Err(invalid("an empty address"));
            }
            if host_port.contains('/') || host_port.contains("://") {
                return Err(invalid(&format!("{part:?} is not host:port")));
            }
            let valid_port = host_port
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid_port {
                return Err(invalid(&format!("{part:?} has no valid port")));
            }
            list.push(host_port.to_string());
        }
        Ok(Self::List(list))
    }
}

/// Finds the leading master of a [`MasterSource`].
pub struct Detector {
    source: MasterSource,
    http: reqwest::Client,
    session: Mutex<Option<Arc<Session>>>,
}

impl Detector {
    /// A detector for `source`.
    pub fn new(source: MasterSource) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            source,
            http,
            session: Mutex::new(None),
        }
    }

    /// The source.
    pub fn source(&self) -> &MasterSource {
        &self.source
    }

    /// The leading master's `host:port`, now.
    pub async fn leader(&self) -> Result<String, DetectorError> {
        match &self.source {
            MasterSource::ZooKeeper(url) => self.ask_zookeeper(url).await,
            MasterSource::List(list) if list.len() == 1 => Ok(list[0].clone()),
            MasterSource::List(list) => self.ask_candidates(list).await,
        }
    }

    async fn ask_zookeeper(&self, url: &ZkUrl) -> Result<String, DetectorError> {
        let mut guard = self.session.lock().await;
        let session = match guard.as_ref() {
            Some(s) if *s.state().borrow() != corral_zk::SessionState::Expired => Arc::clone(s),
            _ => {
                let session = Session::connect(
                    &url.servers,
                    Duration::from_secs(10),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|e| {
                    DetectorError::NoLeader(format!("cannot reach ZooKeeper {}: {e}", url.servers))
                })?;
                let session = Arc::new(session);
                *guard = Some(Arc::clone(&session));
                session
            }
        };
        drop(guard);
        match election::leader_address(&session, &url.path).await {
            Ok(Some(address)) => Ok(address),
            Ok(None) => Err(DetectorError::NoLeader(format!(
                "no master is elected under {} on {}",
                url.path, url.servers
            ))),
            Err(e) => {
                *self.session.lock().await = None;
                Err(DetectorError::NoLeader(format!(
                    "reading {} on {}: {e:?}",
                    url.path, url.servers
                )))
            }
        }
    }

    async fn ask_candidates(&self, list: &[String]) -> Result<String, DetectorError> {
        let mut errors = Vec::new();
        for candidate in list {
            let url = format!("http://{candidate}/master/redirect");
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_redirection() => {
                    let location = r
                        .headers()
                        .get(http::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .and_then(host_port_of_location);
                    match location {
                        Some(leader) => return Ok(leader),
                        None => errors.push(format!("{candidate}: a redirect without a location")),
                    }
                }
                Ok(r) => errors.push(format!("{candidate}: {}", r.status())),
                Err(e) => errors.push(format!("{candidate}: {e}")),
            }
        }
        Err(DetectorError::NoLeader(errors.join("; ")))
    }
}

/// `host:port` of a redirect's `Location` (`//host:port/...` as Mesos
/// writes it, or `http://host:port/...`).
pub fn host_port_of_location(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
        .or_else(|| location.strip_prefix("//"))?;
    let host_port = rest.split('/').next()?;
    (!host_port.is_empty()).then(|| host_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_mesos_drivers_take() {
        assert_eq!(
            MasterSource::parse("127.0.0.1:5050").unwrap(),
            MasterSource::List(vec!["127.0.0.1:5050".into()])
        );
        assert_eq!(
            MasterSource::parse("http://m1:5050/, m2:5050").unwrap(),
            MasterSource::List(vec!["m1:5050".into(), "m2:5050".into()])
        );
        match MasterSource::parse("zk://z1:2181,z2:2181/mesos").unwrap() {
            MasterSource::ZooKeeper(url) => {
                assert_eq!(url.servers, "z1:2181,z2:2181");
                assert_eq!(url.path, "/mesos");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "m1",
            "m1:0",
            "m1:99999",
            ":5050",
            "m1:5050,",
            "zk://",
            "ftp://m1:21",
        ] {
            let e = MasterSource::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected zk://"), "{bad}: {e}");
        }
    }

    #[test]
    fn reads_redirect_locations() {
        assert_eq!(
            host_port_of_location("//10.0.0.2:5050/master/redirect").as_deref(),
            Some("10.0.0.2:5050")
        );
        assert_eq!(
            host_port_of_location("http://m2:5050").as_deref(),
            Some("m2:5050")
        );
        assert_eq!(host_port_of_location("/relative"), None);
        assert_eq!(host_port_of_location("//"), None);
    }
}
