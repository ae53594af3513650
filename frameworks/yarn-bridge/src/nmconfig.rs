//! A NodeManager's configuration. The bridge sets what only it knows —
//! the ResourceManager's host, the capacity from the profile, and the four
//! addresses on ports taken from the offer (so several NodeManagers on one
//! host never clash) — and leaves the rest to the user's own site files.
//! The same properties go out two ways, as Myriad did and as Hadoop
//! reads them: `-D` options in `YARN_NODEMANAGER_OPTS`, and a
//! `yarn-site.xml` in the sandbox's `HADOOP_CONF_DIR`, merged over the
//! user's `yarn-site.xml`.

use std::collections::BTreeMap;

use quick_xml::events::Event;

use crate::profiles::Profile;

/// The four ports a NodeManager listens on, taken from an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmPorts {
    /// Container manager RPC (`yarn.nodemanager.address`).
    pub rpc: u64,
    /// Localizer (`yarn.nodemanager.localizer.address`).
    pub localizer: u64,
    /// Web UI and REST API (`yarn.nodemanager.webapp.address`).
    pub webapp: u64,
    /// MapReduce shuffle (`mapreduce.shuffle.port`).
    pub shuffle: u64,
}

impl NmPorts {
    /// From four offered ports, in that order.
    pub fn from_slice(ports: &[u64]) -> Option<Self> {
        match ports {
            [rpc, localizer, webapp, shuffle, ..] => Some(Self {
                rpc: *rpc,
                localizer: *localizer,
                webapp: *webapp,
                shuffle: *shuffle,
            }),
            _ => None,
        }
    }
}

/// The properties the bridge sets for one NodeManager, by name.
pub fn properties(
    resourcemanager_host: &str,
    profile: Profile,
    ports: NmPorts,
) -> BTreeMap<String, String> {
    let vcores = profile.cpu.round().max(0.0) as u64;
    let mem = profile.mem.round().max(0.0) as u64;
    [
        (
            "yarn.resourcemanager.hostname",
            resourcemanager_host.to_string(),
        ),
        ("yarn.nodemanager.resource.cpu-vcores", vcores.to_string()),
        ("yarn.nodemanager.resource.memory-mb", mem.to_string()),
        ("yarn.nodemanager.address", format!("0.0.0.0:{}", ports.rpc)),
        (
            "yarn.nodemanager.localizer.address",
            format!("0.0.0.0:{}", ports.localizer),
        ),
        (
            "yarn.nodemanager.webapp.address",
            format!("0.0.0.0:{}", ports.webapp),
        ),
        ("mapreduce.shuffle.port", ports.shuffle.to_string()),
        (
            "yarn.nodemanager.aux-services",
            "mapreduce_shuffle".to_string(),
        ),
        (
            "yarn.nodemanager.aux-services.mapreduce_shuffle.class",
            "org.apache.hadoop.mapred.ShuffleHandler".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `YARN_NODEMANAGER_OPTS`: one `-Dname=value` per property, in name order.
/// Values never hold spaces (hosts, numbers, addresses, class names).
pub fn java_options(props: &BTreeMap<String, String>) -> String {
    props
        .iter()
        .map(|(k, v)| format!("-D{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One property of a Hadoop configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Marked `<final>true</final>`.
    pub is_final: bool,
}

/// Why a site file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the site file is not a Hadoop configuration: {0}")]
pub struct SiteError(pub String);

/// Reads the properties of a Hadoop configuration file
/// (`<configuration><property><name/><value/><final/></property>...`), in
/// order.
pub fn parse_site(xml: &str) -> Result<Vec<Property>, SiteError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut current: Option<Property> = None;
    let mut field: Option<String> = None;
    let mut saw_configuration = false;
    loop {
        match reader.read_event() {
            Err(e) => return Err(SiteError(e.to_string())),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                match tag.as_str() {
                    "configuration" => saw_configuration = true,
                    "property" => {
                        current = Some(Property {
                            name: String::new(),
                            value: String::new(),
                            is_final: false,
                        })
                    }
                    _ => field = Some(tag),
                }
            }
            Ok(Event::Empty(e)) if e.name().as_ref() == b"configuration" => {
                saw_configuration = true;
            }
            Ok(Event::Text(t)) => {
                let text = t
                    .unescape()
                    .map_err(|e| SiteError(e.to_string()))?
                    .into_owned();
                if let (Some(p), Some(f)) = (current.as_mut(), field.as_deref()) {
                    match f {
                        "name" => p.name = text,
                        "value" => p.value = text,
                        "final" => p.is_final = text.trim() == "true",
                        _ => {}
                    }
                }
            }
            Ok(Event::End(e)) => {
                if e.name().as_ref() == b"property" {
                    if let Some(p) = current.take() {
                        if p.name.is_empty() {
                            return Err(SiteError("a property without a name".into()));
                        }
                        out.push(p);
                    }
                }
                field = None;
            }
            Ok(_) => {}
        }
    }
    if !saw_configuration {
        return Err(SiteError("no <configuration> element".into()));
    }
    Ok(out)
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The sandbox's `yarn-site.xml`: the user's properties, with the
/// bridge's set over them (a user's property of the same name is replaced,
/// even if marked final: the bridge's values are what the task was given).
/// Returns the file and the names of the user's properties it replaced.
pub fn merged_site(user: &[Property], bridge: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut replaced = Vec::new();
    let mut out = String::from(
        "<?xml version=\"1.0\"?>\n<!-- written by corral yarn-bridge over the user's yarn-site.xml -->\n<configuration>\n",
    );
    for p in user {
        if bridge.contains_key(&p.name) {
            if p.value != bridge[&p.name] {
                replaced.push(p.name.clone());
            }
            continue;
        }
        out.push_str(&format!(
            "  <property><name>{}</name><value>{}</value>{}</property>\n",
            escape(&p.name),
            escape(&p.value),
            if p.is_final {
                "<final>true</final>"
            } else {
                ""
            }
        ));
    }
    for (k, v) in bridge {
        out.push_str(&format!(
            "  <property><name>{}</name><value>{}</value></property>\n",
            escape(k),
            escape(v)
        ));
    }
    out.push_str("</configuration>\n");
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> NmPorts {
        NmPorts::from_slice(&[31000, 31001, 31002, 31003, 31004]).expect("four ports")
    }

    #[test]
    fn the_bridge_sets_capacity_addresses_and_the_shuffle_service() {
        let props = properties(
            "rm.example",
            Profile {
                cpu: 4.0,
                mem: 4096.0,
            },
            ports(),
        );
        assert_eq!(props["yarn.resourcemanager.hostname"], "rm.example");
        assert_eq!(props["yarn.nodemanager.resource.cpu-vcores"], "4");
        assert_eq!(props["yarn.nodemanager.resource.memory-mb"], "4096");
        assert_eq!(props["yarn.nodemanager.address"], "0.0.0.0:31000");
        assert_eq!(props["yarn.nodemanager.localizer.address"], "0.0.0.0:31001");
        assert_eq!(props["yarn.nodemanager.webapp.address"], "0.0.0.0:31002");
        assert_eq!(props["mapreduce.shuffle.port"], "31003");
        assert_eq!(props["yarn.nodemanager.aux-services"], "mapreduce_shuffle");
        let opts = java_options(&props);
        assert!(opts.contains("-Dyarn.nodemanager.resource.memory-mb=4096"));
        assert!(opts.contains("-Dmapreduce.shuffle.port=31003"));
        assert!(!opts.contains("  "));
        assert_eq!(NmPorts::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn the_users_site_file_is_kept_under_the_bridges_properties() {
        let user = r#"<?xml version="1.0"?>
<configuration>
  <property>
    <name>yarn.nodemanager.local-dirs</name>
    <value>/data/yarn &amp; more</value>
    <final>true</final>
  </property>
  <property><name>yarn.nodemanager.resource.memory-mb</name><value>999</value></property>
  <property><name>yarn.resourcemanager.hostname</name><value>rm.example</value></property>
</configuration>"#;
        let parsed = parse_site(user).expect("site");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].value, "/data/yarn & more");
        assert!(parsed[0].is_final);
        let props = properties(
            "rm.example",
            Profile {
                cpu: 2.0,
                mem: 2048.0,
            },
            ports(),
        );
        let (xml, replaced) = merged_site(&parsed, &props);
        assert_eq!(
            replaced,
            vec!["yarn.nodemanager.resource.memory-mb".to_string()]
        );
        let again = parse_site(&xml).expect("the merged file reads back");
        let get = |n: &str| again.iter().find(|p| p.name == n).map(|p| p.value.clone());
        assert_eq!(
            get("yarn.nodemanager.local-dirs").as_deref(),
            Some("/data/yarn & more")
        );
        assert_eq!(
            get("yarn.nodemanager.resource.memory-mb").as_deref(),
            Some("2048")
        );
        assert_eq!(
            again
                .iter()
                .filter(|p| p.name == "yarn.nodemanager.resource.memory-mb")
                .count(),
            1,
            "no property twice"
        );
        assert_eq!(again.len(), 1 + props.len());
    }

    #[test]
    fn what_is_not_a_hadoop_configuration_is_refused() {
        assert!(parse_site("<html></html>").is_err());
        assert!(
            parse_site("<configuration><property><value>1</value></property></configuration>")
                .is_err()
        );
        assert_eq!(parse_site("<configuration/>").map(|p| p.len()), Ok(0));
    }
}
