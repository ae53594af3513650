//! What an application takes from the cluster (pure): its driver task, and
//! its executors — Spark 4 has no Mesos backend, so each application gets
//! its own Spark standalone cluster launched as Corral tasks: one master
//! and one worker per executor, each worker offering exactly one
//! executor's cores and memory, all under the submitting role, released
//! when the application ends.
//!
//! Sizes come from the application's properties as Spark reads them:
//! `spark.driver.cores` (1) and `spark.driver.memory` (1g),
//! `spark.executor.cores` (1 here: a standalone worker would give an
//! executor all its cores) and `spark.executor.memory` (1g), each task's
//! memory plus its overhead (`spark.{driver,executor}.memoryOverhead`, else
//! `memoryOverheadFactor` x memory, 0.10, at least 384 MiB), and the
//! executors from `spark.executor.instances`, else `spark.cores.max` /
//! `spark.executor.cores`, else the dispatcher's default; dynamic
//! allocation's `maxExecutors` caps them.
//!
//! Also: the dispatcher's driver defaults
//! (`spark.corral.dispatcher.driverDefault.<property>`), and placement
//! constraints on agent attributes in Mesos' syntax
//! (`spark.corral.constraints`, `spark.corral.driver.constraints`:
//! `attr:value1,value2;attr2:value`).

use std::collections::BTreeMap;

use crate::protocol::{memory_string_to_mib, parse_java_double};
use crate::queue::Application;

/// The least overhead of a JVM task, MiB (Spark's `MEMORY_OVERHEAD_MIN`).
pub const MIN_OVERHEAD_MIB: f64 = 384.0;
/// The default overhead factor.
pub const OVERHEAD_FACTOR: f64 = 0.10;
/// The prefix of the dispatcher's driver defaults.
pub const DRIVER_DEFAULT_PREFIX: &str = "spark.corral.dispatcher.driverDefault.";

/// One task's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSize {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MiB (the JVM's heap plus its overhead).
    pub mem_mib: f64,
    /// Ports it listens on.
    pub ports: usize,
}

/// What an application takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The driver's task (ports: the driver's RPC, its block manager, its
    /// Spark UI).
    pub driver: TaskSize,
    /// The driver JVM's heap, MiB (`spark.driver.memory`).
    pub driver_heap_mib: u64,
    /// The application's standalone master (ports: RPC, web UI).
    pub master: TaskSize,
    /// Each worker (ports: RPC, web UI), sized to one executor.
    pub worker: TaskSize,
    /// Workers (= executors).
    pub workers: u32,
    /// Cores of each executor (`SPARK_WORKER_CORES`).
    pub executor_cores: u32,
    /// Heap of each executor, MiB (`SPARK_WORKER_MEMORY`).
    pub executor_heap_mib: u64,
}

impl Plan {
    /// Everything the application holds while it runs: cpus, MiB.
    pub fn total(&self) -> (f64, f64) {
        let n = f64::from(self.workers);
        (
            self.driver.cpus + self.master.cpus + n * self.worker.cpus,
            self.driver.mem_mib + self.master.mem_mib + n * self.worker.mem_mib,
        )
    }
}

/// The dispatcher's sizing defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDefaults {
    /// Executors when the application says nothing.
    pub executors: u32,
    /// Most executors one application may have.
    pub max_executors: u32,
    /// The per-application master's task.
    pub master: TaskSize,
    /// Memory of a worker's own JVM, MiB, added to its executor's.
    pub worker_daemon_mib: f64,
}

impl Default for PlanDefaults {
    fn default() -> Self {
        Self {
            executors: 2,
            max_executors: 500,
            master: TaskSize {
                cpus: 0.2,
                mem_mib: 768.0,
                ports: 2,
            },
            worker_daemon_mib: 384.0,
        }
    }
}

fn memory(app: &Application, key: &str, default: &str) -> Result<f64, String> {
    let text = app.property(key).unwrap_or(default);
    memory_string_to_mib(text)
        .map(|m| m as f64)
        .filter(|m| *m > 0.0)
        .ok_or_else(|| format!("{key}: {text:?} is not a memory size (like 512m or 2g)"))
}

fn number(app: &Application, key: &str) -> Result<Option<f64>, String> {
    match app.property(key) {
        None => Ok(None),
        Some(text) => parse_java_double(text)
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(Some)
            .ok_or_else(|| format!("{key}: {text:?} is not a positive number")),
    }
}

/// The overhead of a JVM of `heap` MiB for `role` (`driver`/`executor`).
fn overhead(app: &Application, role: &str, heap: f64) -> Result<f64, String> {
    let explicit = format!("spark.{role}.memoryOverhead");
    if app.property(&explicit).is_some() {
        return memory(app, &explicit, "0");
    }
    let factor =
        number(app, &format!("spark.{role}.memoryOverheadFactor"))?.unwrap_or(OVERHEAD_FACTOR);
    Ok((heap * factor).max(MIN_OVERHEAD_MIB))
}

/// Sizes `app`'s driver and executors; refuses what cannot be read,
/// naming the property.
pub fn plan(app: &Application, defaults: &PlanDefaults) -> Result<Plan, String> {
    let driver_cores = number(app, "spark.driver.cores")?.unwrap_or(1.0);
    let driver_heap = memory(app, "spark.driver.memory", "1g")?;
    let executor_cores = number(app, "spark.executor.cores")?.unwrap_or(1.0);
    if executor_cores.fract() != 0.0 {
        return Err(format!(
            "spark.executor.cores: {executor_cores} is not a whole number of cores"
        ));
    }
    let executor_heap = memory(app, "spark.executor.memory", "1g")?;
    let wanted = match (
        number(app, "spark.executor.instances")?,
        number(app, "spark.cores.max")?,
    ) {
        (Some(n), _) => n.floor(),
        (None, Some(max)) => (max / executor_cores).floor().max(1.0),
        (None, None) => f64::from(defaults.executors),
    };
    let dynamic = app
        .property("spark.dynamicAllocation.enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let cap = if dynamic {
        number(app, "spark.dynamicAllocation.maxExecutors")?
            .map(f64::floor)
            .unwrap_or(f64::from(defaults.max_executors))
    } else {
        f64::from(defaults.max_executors)
    };
    let workers = wanted.min(cap).min(f64::from(defaults.max_executors));
    if workers < 1.0 {
        return Err("spark.executor.instances: at least one executor is needed".to_string());
    }
    Ok(Plan {
        driver: TaskSize {
            cpus: driver_cores,
            mem_mib: driver_heap + overhead(app, "driver", driver_heap)?,
            ports: 3,
        },
        driver_heap_mib: driver_heap as u64,
        master: defaults.master,
        worker: TaskSize {
            cpus: executor_cores,
            mem_mib: executor_heap
                + overhead(app, "executor", executor_heap)?
                + defaults.worker_daemon_mib,
            ports: 2,
        },
        workers: workers as u32,
        executor_cores: executor_cores as u32,
        executor_heap_mib: executor_heap as u64,
    })
}

/// Applies the dispatcher's driver defaults
/// (`spark.corral.dispatcher.driverDefault.<property>` = value) to the
/// properties the submission does not set.
pub fn apply_driver_defaults(app: &mut Application, dispatcher: &BTreeMap<String, String>) {
    for (key, value) in dispatcher {
        if let Some(property) = key.strip_prefix(DRIVER_DEFAULT_PREFIX) {
            if !property.is_empty() {
                app.spark_properties
                    .entry(property.to_string())
                    .or_insert_with(|| value.clone());
            }
        }
    }
}

/// Placement constraints: each attribute with the values it may have.
pub type Constraints = Vec<(String, Vec<String>)>;

/// Parses Mesos' constraint syntax: `attr:v1,v2;attr2:v3` (an attribute
/// without values only has to exist).
pub fn parse_constraints(text: &str) -> Result<Constraints, String> {
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (attr, values) = match part.split_once(':') {
            Some((a, v)) => (a.trim(), v),
            None => (part, ""),
        };
        if attr.is_empty() {
            return Err(format!(
                "constraint {part:?}: expected attribute:value[,value...]"
            ));
        }
        let values: Vec<String> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        out.push((attr.to_string(), values));
    }
    Ok(out)
}

/// Whether an agent with `attributes` (name, value as text) and `hostname`
/// (matched as the attribute `hostname`) satisfies every constraint.
pub fn admits(constraints: &Constraints, attributes: &[(String, String)], hostname: &str) -> bool {
    constraints.iter().all(|(attr, values)| {
        let have: Vec<&str> = if attr == "hostname" {
            vec![hostname]
        } else {
            attributes
                .iter()
                .filter(|(n, _)| n == attr)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        !have.is_empty()
            && (values.is_empty() || have.iter().any(|h| values.iter().any(|v| v == h)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(props: &[(&str, &str)]) -> Application {
        Application {
            app_resource: "file:///jobs/pi.jar".into(),
            main_class: "Pi".into(),
            app_args: Vec::new(),
            spark_properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            environment_variables: BTreeMap::new(),
        }
    }

    #[test]
    fn sparks_defaults_with_the_minimum_overhead() {
        let p = plan(&app(&[]), &PlanDefaults::default()).expect("plan");
        assert_eq!(p.driver.cpus, 1.0);
        assert_eq!(p.driver.mem_mib, 1024.0 + 384.0);
        assert_eq!(p.driver_heap_mib, 1024);
        assert_eq!(p.worker.cpus, 1.0);
        assert_eq!(p.worker.mem_mib, 1024.0 + 384.0 + 384.0);
        assert_eq!(p.workers, 2);
        assert_eq!(p.executor_cores, 1);
        let (cpus, mem) = p.total();
        assert!((cpus - 3.2).abs() < 1e-9);
        assert_eq!(mem, 1408.0 + 2.0 * 1792.0 + 768.0);
    }

    #[test]
    fn executors_come_from_instances_or_cores_max() {
        let d = PlanDefaults::default();
        let p = plan(
            &app(&[
                ("spark.executor.cores", "2"),
                ("spark.executor.memory", "8g"),
                ("spark.executor.instances", "3"),
                ("spark.driver.cores", "2"),
                ("spark.driver.memory", "512m"),
            ]),
            &d,
        )
        .expect("plan");
        assert_eq!(p.workers, 3);
        assert_eq!(p.worker.cpus, 2.0);
        assert_eq!(p.worker.mem_mib, 8192.0 + 819.2 + 384.0);
        assert_eq!(p.executor_heap_mib, 8192);
        assert_eq!(p.driver.mem_mib, 512.0 + 384.0);
        let p = plan(
            &app(&[("spark.executor.cores", "2"), ("spark.cores.max", "7")]),
            &d,
        )
        .expect("plan");
        assert_eq!(p.workers, 3, "floor(7 / 2)");
        let p = plan(
            &app(&[
                ("spark.dynamicAllocation.enabled", "true"),
                ("spark.dynamicAllocation.maxExecutors", "4"),
                ("spark.executor.instances", "10"),
                ("spark.executor.memoryOverhead", "1g"),
            ]),
            &d,
        )
        .expect("plan");
        assert_eq!(p.workers, 4);
        assert_eq!(p.worker.mem_mib, 2048.0 + 384.0);
    }

    #[test]
    fn what_cannot_be_read_is_refused_naming_the_property() {
        let d = PlanDefaults::default();
        for (props, says) in [
            (
                vec![("spark.executor.memory", "lots")],
                "spark.executor.memory",
            ),
            (
                vec![("spark.executor.cores", "1.5")],
                "spark.executor.cores",
            ),
            (vec![("spark.driver.cores", "-1")], "spark.driver.cores"),
            (
                vec![("spark.executor.instances", "0")],
                "spark.executor.instances",
            ),
        ] {
            let err = plan(&app(&props), &d).expect_err("refused");
            assert!(err.contains(says), "{props:?} -> {err}");
        }
    }

    #[test]
    fn driver_defaults_fill_what_the_submission_leaves_out() {
        let mut a = app(&[("spark.driver.memory", "2g")]);
        let dispatcher: BTreeMap<String, String> = [
            (
                "spark.corral.dispatcher.driverDefault.spark.driver.memory",
                "4g",
            ),
            (
                "spark.corral.dispatcher.driverDefault.spark.executor.memory",
                "3g",
            ),
            ("spark.corral.dispatcher.other", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        apply_driver_defaults(&mut a, &dispatcher);
        assert_eq!(a.property("spark.driver.memory"), Some("2g"));
        assert_eq!(a.property("spark.executor.memory"), Some("3g"));
        assert_eq!(a.property("other"), None);
    }

    #[test]
    fn constraints_in_mesos_syntax() {
        let c = parse_constraints("zone: us-east-1a, us-east-1b; gpu ;hostname:node-2").expect("c");
        assert_eq!(
            c,
            vec![
                (
                    "zone".to_string(),
                    vec!["us-east-1a".to_string(), "us-east-1b".to_string()]
                ),
                ("gpu".to_string(), vec![]),
                ("hostname".to_string(), vec!["node-2".to_string()]),
            ]
        );
        let attrs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(admits(
            &c,
            &attrs(&[("zone", "us-east-1b"), ("gpu", "1")]),
            "node-2"
        ));
        assert!(!admits(
            &c,
            &attrs(&[("zone", "us-east-1c"), ("gpu", "1")]),
            "node-2"
        ));
        assert!(
            !admits(&c, &attrs(&[("zone", "us-east-1a")]), "node-2"),
            "no gpu"
        );
        assert!(!admits(
            &c,
            &attrs(&[("zone", "us-east-1a"), ("gpu", "1")]),
            "node-1"
        ));
        assert!(parse_constraints(":x").is_err());
        assert_eq!(parse_constraints("").expect("empty"), vec![]);
    }
}
