//! Resource detection: cpus, mem, disk and ports as Mesos computes them,
//! each overridable by `--resources`.

use std::path::Path;

use corral_api::resources as res;
use corral_api::v1::{Attribute, Resource};

const MB: f64 = 1024.0 * 1024.0;
const GB_IN_MB: f64 = 1024.0;

/// The default port range Mesos offers.
pub const DEFAULT_PORTS: (u64, u64) = (31000, 32000);

/// Logical CPUs online.
pub fn detect_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads system state.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as f64
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0)
    }
}

/// Total memory in MB, from `/proc/meminfo`.
pub fn detect_total_mem_mb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total_mb(&text)
}

fn parse_meminfo_total_mb(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0).floor())
}

/// Total size in MB of the filesystem holding `path`.
pub fn detect_total_disk_mb(path: &Path) -> Option<f64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let bytes = st.blocks() as f64 * st.fragment_size() as f64;
    Some((bytes / MB).floor())
}

/// Mesos' default for memory: leave 1 GB to the system when there are at
/// least 2 GB, else offer half.
pub fn default_mem_mb(total_mb: f64) -> f64 {
    if total_mb >= 2.0 * GB_IN_MB {
        total_mb - GB_IN_MB
    } else {
        (total_mb / 2.0).floor()
    }
}

/// Mesos' default for disk: leave 5 GB when there are at least 10 GB,
/// else offer half.
pub fn default_disk_mb(total_mb: f64) -> f64 {
    if total_mb >= 10.0 * GB_IN_MB {
        total_mb - 5.0 * GB_IN_MB
    } else {
        (total_mb / 2.0).floor()
    }
}

/// The agent's total resources: `--resources` (either Mesos form) with
/// cpus, mem, disk and ports detected when it does not name them.
pub fn agent_resources(spec: Option<&str>, work_dir: &Path) -> Result<Vec<Resource>, String> {
    let given = match spec {
        Some(s) if !s.trim().is_empty() => {
            res::parse(s).map_err(|e| format!("--resources: {e}"))?
        }
        _ => Vec::new(),
    };
    for r in &given {
        check_static(r).map_err(|e| format!("--resources: {e}"))?;
    }
    Ok(merge_detected(given, |name| match name {
        "cpus" => Some(res::scalar("cpus", detect_cpus())),
        "mem" => detect_total_mem_mb().map(|t| res::scalar("mem", default_mem_mb(t))),
        "disk" => detect_total_disk_mb(work_dir).map(|t| res::scalar("disk", default_disk_mb(t))),
        "ports" => Some(res::ranges("ports", &[DEFAULT_PORTS])),
        _ => None,
    }))
}

/// `--resources` holds static reservations only: dynamic reservations and
/// persistent volumes are made by operations (and checkpointed), never
/// given on the command line.
fn check_static(r: &Resource) -> Result<(), String> {
    use corral_api::v1::resource::reservation_info::Type;
    for x in &r.reservations {
        if x.r#type != Some(Type::Static as i32) {
            return Err(format!(
                "resource '{}' has a {} reservation for role '{}'; only static reservations \
                 (type STATIC, or `name(role):value`) can be given here, dynamic ones are made \
                 with RESERVE",
                r.name,
                x.r#type
                    .and_then(|t| Type::try_from(t).ok())
                    .map_or("untyped", |t| t.as_str_name()),
                x.role.as_deref().unwrap_or("")
            ));
        }
        if x.role
            .as_deref()
            .is_none_or(|role| role.is_empty() || role == "*")
        {
            return Err(format!(
                "resource '{}' has a reservation without a role",
                r.name
            ));
        }
    }
    if r.disk.as_ref().is_some_and(|d| d.persistence.is_some()) {
        return Err(format!(
            "resource '{}' is a persistent volume; volumes are made with CREATE, not given here",
            r.name
        ));
    }
    Ok(())
}

/// Adds a detected resource for each of cpus, mem, disk and ports that
/// `given` does not name (under any role), in that order after `given`.
pub(crate) fn merge_detected(
    mut given: Vec<Resource>,
    detect: impl Fn(&str) -> Option<Resource>,
) -> Vec<Resource> {
    for name in ["cpus", "mem", "disk", "ports"] {
        if !given.iter().any(|r| r.name == name) {
            if let Some(r) = detect(name) {
                given.push(r);
            }
        }
    }
    given
}

/// Parses `--attributes`.
pub fn agent_attributes(spec: Option<&str>) -> Result<Vec<Attribute>, String> {
    match spec {
        Some(s) => res::parse_attributes(s).map_err(|e| format!("--attributes: {e}")),
        None => Ok(Vec::new()),
    }
}

/// Attributes in the legacy JSON form: `{"rack": "a", "zone": 2}`.
pub fn attributes_json(attrs: &[Attribute]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for a in attrs {
        let v = if let Some(s) = &a.scalar {
            serde_json::json!(s.value)
        } else if let Some(t) = &a.text {
            serde_json::json!(t.value)
        } else if let Some(r) = &a.ranges {
            let parts: Vec<String> = r
                .range
                .iter()
                .map(|x| format!("{}-{}", x.begin, x.end))
                .collect();
            serde_json::json!(format!("[{}]", parts.join(", ")))
        } else if let Some(s) = &a.set {
            serde_json::json!(format!("{{{}}}", s.item.join(",")))
        } else {
            serde_json::Value::Null
        };
        map.insert(a.name.clone(), v);
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::resources::Resources;

    #[test]
    fn mesos_defaults() {
        assert_eq!(default_mem_mb(16384.0), 15360.0);
        assert_eq!(default_mem_mb(2048.0), 1024.0);
        assert_eq!(default_mem_mb(1500.0), 750.0);
        assert_eq!(default_disk_mb(100.0 * 1024.0), 95.0 * 1024.0);
        assert_eq!(default_disk_mb(8000.0), 4000.0);
        assert_eq!(
            parse_meminfo_total_mb("MemTotal:       16384000 kB\nMemFree: 1 kB\n"),
            Some(16000.0)
        );
        assert_eq!(parse_meminfo_total_mb("garbage"), None);
    }

    #[test]
    fn detects_everything_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let rs = Resources::from_vec(&agent_resources(None, dir.path()).unwrap());
        assert!(rs.scalar("cpus") >= 1.0);
        assert!(rs.scalar("mem") > 0.0);
        assert!(rs.scalar("disk") > 0.0);
        assert_eq!(rs.to_legacy_json()["ports"], "[31000-32000]");
    }

    #[test]
    fn overrides_in_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let rs =
            agent_resources(Some("cpus:4;mem:8192;ports:[1000-2000];gpus:1"), dir.path()).unwrap();
        let bag = Resources::from_vec(&rs);
        assert_eq!(bag.scalar("cpus"), 4.0);
        assert_eq!(bag.scalar("mem"), 8192.0);
        assert_eq!(bag.scalar("gpus"), 1.0);
        assert!(bag.scalar("disk") > 0.0, "disk still detected");
        assert_eq!(bag.to_legacy_json()["ports"], "[1000-2000]");

        let json = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":3}},
                       {"name":"disk","type":"SCALAR","scalar":{"value":100}}]"#;
        let bag = Resources::from_vec(&agent_resources(Some(json), dir.path()).unwrap());
        assert_eq!(bag.scalar("cpus"), 3.0);
        assert_eq!(bag.scalar("disk"), 100.0);
        assert!(bag.scalar("mem") > 0.0);

        // A reserved override replaces detection of that name entirely.
        let rs = merge_detected(res::parse("cpus(eng):2").unwrap(), |n| {
            Some(res::scalar(n, 99.0))
        });
        assert_eq!(rs.iter().filter(|r| r.name == "cpus").count(), 1);
        assert!(agent_resources(Some("cpus:x"), dir.path()).is_err());
    }

    #[test]
    fn static_reservations_in_both_forms() {
        use corral_api::v1::resource::reservation_info::Type;
        let dir = tempfile::tempdir().unwrap();
        let statically = |rs: &[Resource], name: &str, role: &str| {
            rs.iter().any(|r| {
                r.name == name
                    && r.reservations.len() == 1
                    && r.reservations[0].r#type == Some(Type::Static as i32)
                    && r.reservations[0].role.as_deref() == Some(role)
                    && r.role.is_none()
            })
        };
        let rs = agent_resources(Some("cpus(web):2;disk(web):1024;cpus:1"), dir.path()).unwrap();
        assert!(statically(&rs, "cpus", "web") && statically(&rs, "disk", "web"));
        assert_eq!(Resources::from_vec(&rs).scalar("cpus"), 3.0);

        // JSON, post-refinement (`reservations`) and pre-refinement (`role`).
        let json = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2},
                        "reservations":[{"type":"STATIC","role":"eng"}]},
                       {"name":"disk","type":"SCALAR","scalar":{"value":512},"role":"db"}]"#;
        let rs = agent_resources(Some(json), dir.path()).unwrap();
        assert!(statically(&rs, "cpus", "eng") && statically(&rs, "disk", "db"));

        // Dynamic reservations and volumes are refused, saying why.
        let json = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2},
                        "reservations":[{"type":"DYNAMIC","role":"eng"}]}]"#;
        let err = agent_resources(Some(json), dir.path()).unwrap_err();
        assert!(err.contains("DYNAMIC") && err.contains("RESERVE"), "{err}");
        let json = r#"[{"name":"disk","type":"SCALAR","scalar":{"value":2},"role":"db",
                        "disk":{"persistence":{"id":"x"},"volume":{"mode":"RW","container_path":"d"}}}]"#;
        let err = agent_resources(Some(json), dir.path()).unwrap_err();
        assert!(err.contains("CREATE"), "{err}");
    }

    #[test]
    fn attributes() {
        let attrs = agent_attributes(Some("rack:a;zone:2")).unwrap();
        assert_eq!(
            attributes_json(&attrs),
            serde_json::json!({"rack": "a", "zone": 2.0})
        );
        assert!(agent_attributes(Some("novalue")).is_err());
    }
}
