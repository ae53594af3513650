//! Topics through Kafka's admin protocol (rdkafka's AdminClient over the
//! librdkafka built from rdkafka-sys' bundled sources): create, list (with
//! each partition's replicas and the topic's non-default configuration),
//! and update a topic's configuration. Each call names the bootstrap
//! servers it talks to: every running broker of one Apache Kafka cluster,
//! or one tansu broker (each is a cluster of its own).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde_json::{json, Value};

/// How long one admin call may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Most topics one list returns.
pub const MAX_TOPICS: usize = 10_000;

/// Why a topic call failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The client could not be built or the brokers did not answer.
    #[error("kafka admin client ({bootstrap}): {message}")]
    Client {
        /// The bootstrap servers.
        bootstrap: String,
        /// What failed.
        message: String,
    },
    /// The brokers refused the operation on a topic.
    #[error("topic {topic}: {message}")]
    Refused {
        /// The topic.
        topic: String,
        /// What the broker said.
        message: String,
    },
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replicas: i32,
    /// Topic configuration.
    pub options: BTreeMap<String, String>,
}

fn client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3")
        .create()
        .map_err(|e| TopicError::Client {
            bootstrap: bootstrap.to_string(),
            message: e.to_string(),
        })
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT))
}

/// Creates `topics`; each one's result (its name, or why not).
pub async fn create(
    bootstrap: &str,
    topics: &[NewTopicSpec],
) -> Result<Vec<Result<String, TopicError>>, TopicError> {
    let admin = client(bootstrap)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replicas));
            for (k, v) in &t.options {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let results = admin
        .create_topics(new.iter(), &options())
        .await
        .map_err(|e| TopicError::Client {
            bootstrap: bootstrap.to_string(),
            message: e.to_string(),
        })?;
    Ok(results
        .into_iter()
        .map(|r| {
            r.map_err(|(topic, code)| TopicError::Refused {
                topic,
                message: code.to_string(),
            })
        })
        .collect())
}

/// Every topic the brokers know: name -> partition -> replicas.
pub async fn metadata(
    bootstrap: &str,
) -> Result<BTreeMap<String, BTreeMap<i32, Vec<i32>>>, TopicError> {
    let admin = client(bootstrap)?;
    let bootstrap_text = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| TopicError::Client {
                bootstrap: bootstrap_text.clone(),
                message: e.to_string(),
            })?;
        let mut out = BTreeMap::new();
        for t in md.topics().iter().take(MAX_TOPICS) {
            let parts: BTreeMap<i32, Vec<i32>> = t
                .partitions()
                .iter()
                .map(|p| (p.id(), p.replicas().to_vec()))
                .collect();
            out.insert(t.name().to_string(), parts);
        }
        Ok(out)
    })
    .await
    .map_err(|e| TopicError::Client {
        bootstrap: bootstrap.to_string(),
        message: e.to_string(),
    })?
}

/// The non-default configuration of `topics` (empty where the broker
/// does not describe it).
pub async fn configs(
    bootstrap: &str,
    topics: &[String],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Ok(admin) = client(bootstrap) else {
        return out;
    };
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    if let Ok(results) = admin.describe_configs(specs.iter(), &options()).await {
        for (name, r) in topics.iter().zip(results) {
            let Ok(resource) = r else { continue };
            let map: BTreeMap<String, String> = resource
                .entries
                .iter()
                .filter(|e| !e.is_default && !e.is_sensitive)
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect();
            out.insert(name.clone(), map);
        }
    }
    out
}

/// Sets the configuration of `topic` (Kafka's AlterConfigs: the options
/// given replace the topic's dynamic configuration).
pub async fn alter(
    bootstrap: &str,
    topic: &str,
    opts: &BTreeMap<String, String>,
) -> Result<(), TopicError> {
    let admin = client(bootstrap)?;
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in opts {
        change = change.set(k, v);
    }
    let results = admin
        .alter_configs(std::iter::once(&change), &options())
        .await
        .map_err(|e| TopicError::Client {
            bootstrap: bootstrap.to_string(),
            message: format!(
                "AlterConfigs of topic {topic}: {e} (tansu 0.6 implements only IncrementalAlterConfigs, which rdkafka's admin client does not send)"
            ),
        })?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(TopicError::Refused {
                topic: topic.to_string(),
                message: format!("the broker refused AlterConfigs: {code}"),
            });
        }
    }
    Ok(())
}

/// A topic as mesos/kafka shows it: `partitions` maps each partition to
/// its replicas (`"0": "1, 2"`).
pub fn topic_json(
    name: &str,
    partitions: &BTreeMap<i32, Vec<i32>>,
    options: &BTreeMap<String, String>,
) -> Value {
    let parts: BTreeMap<String, String> = partitions
        .iter()
        .map(|(p, r)| {
            (
                p.to_string(),
                r.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
            )
        })
        .collect();
    json!({"name": name, "partitions": parts, "options": options})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_in_mesos_kafkas_shape() {
        let parts: BTreeMap<i32, Vec<i32>> = [(0, vec![0, 1]), (1, vec![1, 2])].into();
        let opts: BTreeMap<String, String> = [("flush.ms".to_string(), "1000".to_string())].into();
        let j = topic_json("t", &parts, &opts);
        assert_eq!(
            j,
            json!({"name": "t", "partitions": {"0": "0, 1", "1": "1, 2"}, "options": {"flush.ms": "1000"}})
        );
    }
}
