//! Master detection through ZooKeeper (`--master zk://host:port/path`).
//!
//! The leading master publishes its MasterInfo as JSON in the ephemeral
//! sequential znode `json.info_<10-digit seq>` with the lowest sequence
//! under the path (Mesos' layout). Each detection opens a short session,
//! reads that znode and closes the session.

use std::time::Duration;

use zookeeper_async::{WatchedEvent, Watcher, ZooKeeper};

const PREFIX: &str = "json.info_";
const TIMEOUT: Duration = Duration::from_secs(10);

struct NoWatch;

impl Watcher for NoWatch {
    fn handle(&self, _event: WatchedEvent) {}
}

/// Splits `zk://servers/path` into its servers and path.
pub fn split(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("zk://")?;
    let slash = rest.find('/')?;
    let (servers, path) = (&rest[..slash], rest[slash..].trim_end_matches('/'));
    (!servers.is_empty() && !path.is_empty() && !servers.contains('@')).then_some((servers, path))
}

/// The leader's `host:port` from its published MasterInfo JSON.
pub fn address_of(json: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let address = value.get("address")?;
    let port = address.get("port")?.as_u64()?;
    let host = address
        .get("ip")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .or_else(|| address.get("hostname").and_then(|h| h.as_str()))?;
    Some(format!("{host}:{port}"))
}

/// Finds the leading master's `host:port`.
pub async fn detect(url: &str) -> Result<String, String> {
    let (servers, path) = split(url).ok_or_else(|| format!("invalid ZooKeeper URL {url}"))?;
    let zk = ZooKeeper::connect(servers, TIMEOUT, NoWatch)
        .await
        .map_err(|e| format!("cannot connect to {servers}: {e:?}"))?;
    let lookup = async {
        let children = zk
            .get_children(path, false)
            .await
            .map_err(|e| format!("cannot list {path}: {e:?}"))?;
        let leader = children
            .iter()
            .filter_map(|c| {
                let seq = c.strip_prefix(PREFIX)?;
                (seq.len() == 10)
                    .then(|| seq.parse::<u64>().ok())
                    .flatten()
                    .map(|s| (s, c))
            })
            .min()
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("no leading master under {path}"))?;
        let (data, _) = zk
            .get_data(&format!("{path}/{leader}"), false)
            .await
            .map_err(|e| format!("cannot read {path}/{leader}: {e:?}"))?;
        address_of(&data).ok_or_else(|| format!("{path}/{leader} holds no master address"))
    };
    let result = tokio::time::timeout(TIMEOUT, lookup)
        .await
        .unwrap_or_else(|_| Err(format!("ZooKeeper at {servers} did not answer in time")));
    // Always close: a dropped client keeps reconnecting in the background.
    let _ = zk.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_master_info() {
        assert_eq!(split("zk://a:1,b:2/corral/"), Some(("a:1,b:2", "/corral")));
        assert_eq!(split("zk://a:1"), None);
        assert_eq!(split("http://a:1/x"), None);
        let json = br#"{"address":{"hostname":"m1","ip":"10.0.0.1","port":5050},"id":"x"}"#;
        assert_eq!(address_of(json).as_deref(), Some("10.0.0.1:5050"));
        assert_eq!(address_of(b"{}"), None);
    }
}
