//! An application's tasks as Mesos TaskInfos (pure): the standalone
//! master (`spark-class org.apache.spark.deploy.master.Master`), its
//! workers (`...deploy.worker.Worker`, each offering one executor's cores
//! and memory), and the driver (`spark-submit --deploy-mode client` against
//! that master, on the ports the offer gave it: RPC, block manager, UI).
//!
//! Spark comes from a `SPARK_HOME` on the agents, a tarball the agents
//! fetch, or a Docker image (the dispatcher's, or the job's own
//! `spark.corral.docker.image`). Commands run under bash; a worker and the
//! driver wait for the master's port before they start, so neither falls
//! into Spark's slow registration retries. Every word that comes from a
//! submission is shell-quoted; its environment variables go into the
//! task's environment, never through the shell.

use corral_api::v1;

use crate::gang::Slot;
use crate::plan::Plan;
use crate::queue::{Application, Driver};

/// Where Spark comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spark {
    /// Installed on every agent at this `SPARK_HOME`.
    Home(String),
    /// A tarball the agent fetches and extracts into the sandbox; `home` is
    /// the directory it holds (`spark-4.0.1-bin-hadoop3`).
    Tarball {
        /// Its URI (http, hdfs, file).
        uri: String,
        /// The directory in it.
        home: String,
    },
    /// A Docker image, with Spark at `home`.
    Docker {
        /// The image.
        image: String,
        /// `SPARK_HOME` in the image.
        home: String,
    },
}

impl Spark {
    fn home(&self) -> String {
        match self {
            Spark::Home(h) | Spark::Docker { home: h, .. } => quote(h),
            Spark::Tarball { home, .. } => format!("\"$MESOS_SANDBOX\"/{}", quote(home)),
        }
    }
}

/// The property naming a job's own Docker image.
pub const DOCKER_IMAGE_KEY: &str = "spark.corral.docker.image";
/// `SPARK_HOME` in a job's image (default `/opt/spark`).
pub const DOCKER_HOME_KEY: &str = "spark.corral.docker.sparkHome";

/// What every task is made from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Where Spark comes from.
    pub spark: Spark,
    /// Environment of every task (`JAVA_HOME`, `PYSPARK_PYTHON`, ...).
    pub env: Vec<(String, String)>,
    /// The heap of the master's and workers' own JVMs, MiB
    /// (`SPARK_DAEMON_MEMORY`).
    pub daemon_memory_mib: u64,
    /// Seconds a worker or driver waits for the master's port.
    pub master_wait_secs: u64,
}

/// Where one application's tasks are, for the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The master's address and RPC port.
    pub master: (String, u64),
    /// The master's web UI port.
    pub master_ui: u64,
}

/// Quotes a word for the shell.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The properties a driver must not be given again: how it was submitted
/// (cluster mode to the dispatcher) and the dispatcher's own.
fn passed_on(key: &str) -> bool {
    !(key == "spark.master"
        || key == "spark.submit.deployMode"
        || key == "spark.driver.supervise"
        || key == "spark.master.rest.enabled"
        || key == "spark.driver.host"
        || key == "spark.driver.port"
        || key == "spark.driver.blockManager.port"
        || key == "spark.ui.port"
        || key.starts_with("spark.corral."))
}

/// The Spark of `app` (its own image, else the dispatcher's).
pub fn spark_of(app: &Application, setup: &Setup) -> Spark {
    match app.property(DOCKER_IMAGE_KEY) {
        Some(image) => Spark::Docker {
            image: image.to_string(),
            home: app
                .property(DOCKER_HOME_KEY)
                .unwrap_or("/opt/spark")
                .to_string(),
        },
        None => setup.spark.clone(),
    }
}

/// Whether `app` is a Python application.
pub fn is_python(app: &Application) -> bool {
    app.main_class == "org.apache.spark.deploy.PythonRunner" || app.app_resource.ends_with(".py")
}

/// The resource as the driver's command names it, and the URI the agent
/// fetches for it into the sandbox (`file:` and remote schemes, so that a
/// driver in a Docker image finds it too); plain paths and Spark's
/// `local:` are read where the driver runs (on the agent, or in its image).
fn resource(app_resource: &str) -> (String, Option<String>) {
    let remote = [
        "file://", "http://", "https://", "hdfs://", "ftp://", "s3a://",
    ]
    .iter()
    .any(|s| app_resource.starts_with(s));
    if remote {
        let name = app_resource
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("app");
        (
            format!("$MESOS_SANDBOX/{name}"),
            Some(app_resource.to_string()),
        )
    } else {
        (app_resource.to_string(), None)
    }
}

fn variable(name: &str, value: &str) -> v1::environment::Variable {
    v1::environment::Variable {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// The bash prelude: `SPARK_HOME`, and `corral_wait host port` that waits
/// for a port to accept connections.
fn prelude(spark: &Spark, wait_secs: u64) -> String {
    format!(
        "export SPARK_HOME={home} SPARK_LOCAL_DIRS=\"$MESOS_SANDBOX/local\" SPARK_NO_DAEMONIZE=1\n\
         mkdir -p \"$SPARK_LOCAL_DIRS\"\n\
         corral_wait() {{\n  \
           local until=$((SECONDS + {wait_secs}))\n  \
           until (exec 3<>\"/dev/tcp/$1/$2\") 2>/dev/null; do\n    \
             if [ $SECONDS -ge $until ]; then echo \"spark master $1:$2 not reachable after {wait_secs} s\" >&2; exit 1; fi\n    \
             sleep 0.2\n  \
           done\n\
         }}\n",
        home = spark.home()
    )
}

fn task(
    name: String,
    task_id: &str,
    agent_id: &v1::AgentId,
    resources: Vec<v1::Resource>,
    spark: &Spark,
    script: String,
    env: Vec<v1::environment::Variable>,
    mut uris: Vec<v1::command_info::Uri>,
) -> v1::TaskInfo {
    if let Spark::Tarball { uri, .. } = spark {
        uris.push(v1::command_info::Uri {
            value: uri.clone(),
            extract: Some(true),
            cache: Some(true),
            ..Default::default()
        });
    }
    let mut variables = env;
    variables.push(variable("CORRAL_SPARK_SCRIPT", &script));
    let container = match spark {
        Spark::Docker { image, .. } => Some(v1::ContainerInfo {
            r#type: v1::container_info::Type::Docker as i32,
            docker: Some(v1::container_info::DockerInfo {
                image: image.clone(),
                network: Some(v1::container_info::docker_info::Network::Host as i32),
                ..Default::default()
            }),
            ..Default::default()
        }),
        _ => None,
    };
    v1::TaskInfo {
        name,
        task_id: v1::TaskId {
            value: task_id.to_string(),
        },
        agent_id: agent_id.clone(),
        resources,
        command: Some(v1::CommandInfo {
            shell: Some(true),
            value: Some("exec bash -c \"$CORRAL_SPARK_SCRIPT\"".to_string()),
            environment: Some(v1::Environment { variables }),
            uris,
            ..Default::default()
        }),
        container,
        ..Default::default()
    }
}

/// Every task's environment: the dispatcher's `--task_env`, the daemons'
/// heap, `SPARK_LOCAL_IP` (so every service binds the agent's address,
/// not the wildcard), and no port retries: a Spark service whose offered
/// port is taken fails instead of moving onto a neighbour's port.
fn base_env(setup: &Setup, address: &str) -> Vec<v1::environment::Variable> {
    setup
        .env
        .iter()
        .map(|(k, v)| variable(k, v))
        .chain([
            variable(
                "SPARK_DAEMON_MEMORY",
                &format!("{}m", setup.daemon_memory_mib),
            ),
            variable("SPARK_LOCAL_IP", address),
            // The standalone master's REST server (6066 by default) is
            // off: it is not on an offered port, and jobs are submitted to
            // the dispatcher.
            variable(
                "SPARK_MASTER_OPTS",
                "-Dspark.master.rest.enabled=false -Dspark.port.maxRetries=0",
            ),
            variable("SPARK_WORKER_OPTS", "-Dspark.port.maxRetries=0"),
        ])
        .collect()
}

/// The application's standalone master.
pub fn master_task(
    driver: &Driver,
    task_id: &str,
    agent_id: &v1::AgentId,
    slot: &Slot,
    at: &Endpoints,
    setup: &Setup,
) -> v1::TaskInfo {
    let spark = spark_of(&driver.application, setup);
    let script = format!(
        "{}exec \"$SPARK_HOME/bin/spark-class\" org.apache.spark.deploy.master.Master \
         --host {} --port {} --webui-port {}\n",
        prelude(&spark, setup.master_wait_secs),
        quote(&at.master.0),
        at.master.1,
        at.master_ui
    );
    task(
        format!("spark master of {}", driver.submission_id),
        task_id,
        agent_id,
        slot.resources.clone(),
        &spark,
        script,
        base_env(setup, &at.master.0),
        Vec::new(),
    )
}

/// Worker `task_id` of the application, at `address` (its agent), with one
/// executor's cores and memory.
#[allow(clippy::too_many_arguments)]
pub fn worker_task(
    driver: &Driver,
    task_id: &str,
    agent_id: &v1::AgentId,
    address: &str,
    slot: &Slot,
    at: &Endpoints,
    plan: &Plan,
    setup: &Setup,
) -> v1::TaskInfo {
    let spark = spark_of(&driver.application, setup);
    let (rpc, ui) = (slot.ports[0], slot.ports[1]);
    let script = format!(
        "{}corral_wait {mh} {mp}\n\
         exec \"$SPARK_HOME/bin/spark-class\" org.apache.spark.deploy.worker.Worker \
         --host {host} --port {rpc} --webui-port {ui} --cores {cores} --memory {mem}M \
         --work-dir \"$MESOS_SANDBOX/work\" spark://{mh}:{mp}\n",
        prelude(&spark, setup.master_wait_secs),
        mh = quote(&at.master.0),
        mp = at.master.1,
        host = quote(address),
        cores = plan.executor_cores,
        mem = plan.executor_heap_mib,
    );
    let mut env = base_env(setup, address);
    env.extend(
        driver
            .application
            .environment_variables
            .iter()
            .map(|(k, v)| variable(k, v)),
    );
    task(
        format!("spark worker of {}", driver.submission_id),
        task_id,
        agent_id,
        slot.resources.clone(),
        &spark,
        script,
        env,
        Vec::new(),
    )
}

/// The driver: `spark-submit --deploy-mode client` against the
/// application's master, on its offered ports; also its UI's address.
pub fn driver_task(
    driver: &Driver,
    task_id: &str,
    agent_id: &v1::AgentId,
    address: &str,
    slot: &Slot,
    at: &Endpoints,
    plan: &Plan,
    setup: &Setup,
) -> (v1::TaskInfo, String) {
    let app = &driver.application;
    let spark = spark_of(app, setup);
    let (rpc, block, ui) = (slot.ports[0], slot.ports[1], slot.ports[2]);
    let (resource, fetch) = resource(&app.app_resource);
    let mut words: Vec<String> = vec![
        "--master".into(),
        quote(&format!("spark://{}:{}", at.master.0, at.master.1)),
        "--deploy-mode".into(),
        "client".into(),
    ];
    if !is_python(app) {
        words.push("--class".into());
        words.push(quote(&app.main_class));
    }
    words.push("--driver-memory".into());
    words.push(format!("{}m", plan.driver_heap_mib));
    let fixed = [
        ("spark.driver.host", address.to_string()),
        ("spark.driver.bindAddress", address.to_string()),
        ("spark.driver.port", rpc.to_string()),
        ("spark.driver.blockManager.port", block.to_string()),
        ("spark.ui.port", ui.to_string()),
        ("spark.port.maxRetries", "0".to_string()),
        ("spark.executor.cores", plan.executor_cores.to_string()),
        (
            "spark.executor.memory",
            format!("{}m", plan.executor_heap_mib),
        ),
        (
            "spark.cores.max",
            (plan.executor_cores * plan.workers).to_string(),
        ),
    ];
    for (k, v) in app
        .spark_properties
        .iter()
        .filter(|(k, _)| passed_on(k) && !fixed.iter().any(|(f, _)| f == k))
    {
        // spark-submit lists the primary resource in spark.jars; the
        // driver's spark-submit adds the fetched copy itself.
        let v = if k == "spark.jars" && fetch.is_some() {
            let rest: Vec<&str> = v
                .split(',')
                .filter(|j| !j.is_empty() && *j != app.app_resource)
                .collect();
            if rest.is_empty() {
                continue;
            }
            rest.join(",")
        } else {
            v.clone()
        };
        words.push("--conf".into());
        words.push(quote(&format!("{k}={v}")));
    }
    for (k, v) in fixed {
        words.push("--conf".into());
        words.push(quote(&format!("{k}={v}")));
    }
    // A fetched resource is named through the sandbox variable.
    words.push(if fetch.is_some() {
        format!("\"{resource}\"")
    } else {
        quote(&resource)
    });
    words.extend(app.app_args.iter().map(|a| quote(a)));
    let script = format!(
        "{}corral_wait {} {}\nexec \"$SPARK_HOME/bin/spark-submit\" {}\n",
        prelude(&spark, setup.master_wait_secs),
        quote(&at.master.0),
        at.master.1,
        words.join(" ")
    );
    let mut env = base_env(setup, address);
    env.extend(
        app.environment_variables
            .iter()
            .map(|(k, v)| variable(k, v)),
    );
    let uris = fetch
        .map(|value| {
            vec![v1::command_info::Uri {
                value,
                extract: Some(false),
                ..Default::default()
            }]
        })
        .unwrap_or_default();
    let name = app
        .property("spark.app.name")
        .map(|n| format!("spark driver {n} ({})", driver.submission_id))
        .unwrap_or_else(|| format!("spark driver {}", driver.submission_id));
    let info = task(
        name,
        task_id,
        agent_id,
        slot.resources.clone(),
        &spark,
        script,
        env,
        uris,
    );
    (info, format!("http://{address}:{ui}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, PlanDefaults};

    fn driver(props: &[(&str, &str)], resource: &str, class: &str) -> Driver {
        Driver::queued(
            "driver-20261204120000-0000",
            "eng",
            "default".into(),
            0,
            Application {
                app_resource: resource.into(),
                main_class: class.into(),
                app_args: vec!["10".into(), "it's".into()],
                spark_properties: props
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                environment_variables: [("PYSPARK_PYTHON".to_string(), "/venv/bin/python".into())]
                    .into(),
            },
            0,
        )
    }

    fn setup() -> Setup {
        Setup {
            spark: Spark::Home("/opt/spark".into()),
            env: vec![("JAVA_HOME".into(), "/usr/lib/jvm/java-17".into())],
            daemon_memory_mib: 256,
            master_wait_secs: 120,
        }
    }

    fn script(t: &v1::TaskInfo) -> String {
        let vars = &t
            .command
            .as_ref()
            .expect("command")
            .environment
            .as_ref()
            .expect("env")
            .variables;
        vars.iter()
            .find(|v| v.name == "CORRAL_SPARK_SCRIPT")
            .and_then(|v| v.value.clone())
            .expect("script")
    }

    #[test]
    fn the_driver_runs_spark_submit_in_client_mode_on_its_offered_ports() {
        let d = driver(
            &[
                ("spark.master", "spark://dispatcher:6066"),
                ("spark.submit.deployMode", "cluster"),
                ("spark.app.name", "pi"),
                ("spark.corral.role", "eng"),
                ("spark.executor.instances", "2"),
                ("spark.eventLog.enabled", "false"),
                ("spark.jars", "file:///jobs/pi.jar,file:///jobs/dep.jar"),
            ],
            "file:///jobs/pi.jar",
            "corral.CorralPi",
        );
        let p = plan(&d.application, &PlanDefaults::default()).expect("plan");
        let slot = Slot {
            room: 0,
            resources: Vec::new(),
            ports: vec![31000, 31001, 31002],
        };
        let at = Endpoints {
            master: ("10.0.0.7".into(), 31010),
            master_ui: 31011,
        };
        let agent = v1::AgentId { value: "a1".into() };
        let (t, ui) = driver_task(&d, "driver-x", &agent, "10.0.0.5", &slot, &at, &p, &setup());
        assert_eq!(ui, "http://10.0.0.5:31002");
        let s = script(&t);
        assert!(s.contains("corral_wait 10.0.0.7 31010\n"), "{s}");
        assert!(s.contains("--master spark://10.0.0.7:31010 --deploy-mode client --class corral.CorralPi --driver-memory 1024m"), "{s}");
        assert!(s.contains("--conf spark.driver.port=31000"), "{s}");
        assert!(
            s.contains("--conf spark.driver.blockManager.port=31001"),
            "{s}"
        );
        assert!(s.contains("--conf spark.ui.port=31002"), "{s}");
        assert!(s.contains("--conf spark.cores.max=2"), "{s}");
        assert!(s.contains("--conf spark.port.maxRetries=0"), "{s}");
        assert!(s.contains("--conf spark.eventLog.enabled=false"), "{s}");
        assert!(
            !s.contains("deployMode=cluster") && !s.contains("spark.corral.role"),
            "{s}"
        );
        // The file: jar is fetched into the sandbox and dropped from
        // spark.jars (the driver's spark-submit adds its copy).
        assert!(
            s.contains("\"$MESOS_SANDBOX/pi.jar\" 10 'it'\\''s'\n"),
            "{s}"
        );
        assert!(s.contains("spark.jars=file:///jobs/dep.jar --conf"), "{s}");
        let uris = &t.command.as_ref().expect("cmd").uris;
        assert_eq!(uris.len(), 1);
        assert_eq!(uris[0].value, "file:///jobs/pi.jar");
        let env = &t
            .command
            .as_ref()
            .expect("cmd")
            .environment
            .as_ref()
            .expect("env")
            .variables;
        assert!(env.iter().any(|v| v.name == "PYSPARK_PYTHON"));
        assert!(env.iter().any(|v| v.name == "JAVA_HOME"));
        let local_ip = env.iter().find(|v| v.name == "SPARK_LOCAL_IP");
        assert_eq!(local_ip.and_then(|v| v.value.as_deref()), Some("10.0.0.5"));
        assert!(t.container.is_none());
    }

    #[test]
    fn python_applications_remote_resources_and_job_images() {
        let d = driver(
            &[("spark.corral.docker.image", "example/spark:4")],
            "http://files/wordcount.py",
            "org.apache.spark.deploy.PythonRunner",
        );
        let p = plan(&d.application, &PlanDefaults::default()).expect("plan");
        let slot = Slot {
            room: 0,
            resources: Vec::new(),
            ports: vec![1, 2, 3],
        };
        let at = Endpoints {
            master: ("h".into(), 4),
            master_ui: 5,
        };
        let agent = v1::AgentId { value: "a1".into() };
        let (t, _) = driver_task(&d, "d", &agent, "h", &slot, &at, &p, &setup());
        let s = script(&t);
        assert!(!s.contains("--class"), "{s}");
        assert!(s.contains("\"$MESOS_SANDBOX/wordcount.py\" 10"), "{s}");
        assert!(s.contains("export SPARK_HOME=/opt/spark"), "{s}");
        let cmd = t.command.as_ref().expect("cmd");
        assert_eq!(cmd.uris[0].value, "http://files/wordcount.py");
        let docker = t
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .expect("docker");
        assert_eq!(docker.image, "example/spark:4");
        // Master and worker.
        let m = master_task(
            &d,
            "d.master",
            &agent,
            &Slot {
                room: 0,
                resources: Vec::new(),
                ports: vec![4, 5],
            },
            &at,
            &setup(),
        );
        assert!(script(&m).contains("deploy.master.Master --host h --port 4 --webui-port 5"));
        let opts = m
            .command
            .as_ref()
            .and_then(|c| c.environment.as_ref())
            .map(|e| {
                e.variables.iter().any(|v| {
                    v.name == "SPARK_MASTER_OPTS"
                        && v.value
                            .as_deref()
                            .is_some_and(|o| o.contains("spark.master.rest.enabled=false"))
                })
            });
        assert_eq!(opts, Some(true), "no REST server on an unoffered port");
        let w = worker_task(
            &d,
            "d.worker-0",
            &agent,
            "h",
            &Slot {
                room: 0,
                resources: Vec::new(),
                ports: vec![6, 7],
            },
            &at,
            &p,
            &setup(),
        );
        let ws = script(&w);
        assert!(ws.contains("--cores 1 --memory 1024M"), "{ws}");
        assert!(ws.contains("spark://h:4"), "{ws}");
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(quote("plain-word_1.jar"), "plain-word_1.jar");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }
}
