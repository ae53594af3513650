//! Helpers for the Spark dispatcher's tests: the real Spark 4.3 inside
//! pyspark (installed by `scripts/spark-env.sh`), its unmodified
//! `spark-submit`, the jobs under `tests/spark` (a Java Pi compiled here
//! against Spark's jars, a PySpark word count), and a running
//! `corral spark-dispatcher`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::{corral_bin, free_port, wait_for, workspace_dir, TIMEOUT};

/// pyspark's directory (its `bin/spark-submit`, `jars/`):
/// `CORRAL_SPARK_HOME`, or found through the test venv's python.
pub fn spark_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CORRAL_SPARK_HOME") {
        return PathBuf::from(home);
    }
    let python = std::env::var_os("CORRAL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/pyenv/bin/python"));
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}); run scripts/spark-env.sh",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "no pyspark in {}: run scripts/spark-env.sh ({})",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A JDK 17: `JAVA_HOME`, or Debian's.
pub fn java_home() -> String {
    std::env::var("JAVA_HOME")
        .ok()
        .or_else(|| {
            [
                "/usr/lib/jvm/java-17-openjdk-amd64",
                "/usr/lib/jvm/java-17-openjdk-arm64",
            ]
            .iter()
            .find(|p| Path::new(p).is_dir())
            .map(|p| p.to_string())
        })
        .expect("no JDK 17: install openjdk-17-jdk-headless or set JAVA_HOME")
}

/// A log4j2 configuration printing the client's INFO lines (where
/// `RestSubmissionClient` reports the server's answers) to stderr. The
/// client's own logger is named: for `--status` and `--kill`, spark-submit
/// lowers the root logger to WARN.
pub fn log_config() -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "corral-spark-log4j2-{}.properties",
        std::process::id()
    ));
    let text = "rootLogger.level = info\n\
                rootLogger.appenderRef.stderr.ref = console\n\
                appender.console.type = Console\n\
                appender.console.name = console\n\
                appender.console.target = SYSTEM_ERR\n\
                appender.console.layout.type = PatternLayout\n\
                appender.console.layout.pattern = %p %c{1}: %m%n\n\
                logger.rest.name = org.apache.spark.deploy.rest.RestSubmissionClient\n\
                logger.rest.level = info\n";
    std::fs::write(&path, text).expect("log4j2 configuration");
    path
}

/// Runs the unmodified `spark-submit` with `args`; returns whether it
/// exited 0 and its output (stdout and stderr).
pub fn spark_submit(args: &[&str]) -> (bool, String) {
    let home = spark_home();
    let out = Command::new(home.join("bin/spark-submit"))
        .args(args)
        .env("SPARK_HOME", &home)
        .env("JAVA_HOME", java_home())
        .env(
            "SPARK_SUBMIT_OPTS",
            format!("-Dlog4j2.configurationFile=file:{}", log_config().display()),
        )
        .output()
        .expect("spark-submit runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `spark-submit` off the test's runtime threads.
pub async fn spark_submit_async(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spark_submit(&args)
    })
    .await
    .expect("join")
}

/// The first `driver-...` id in `output`.
pub fn submission_id(output: &str) -> Option<String> {
    let at = output.find("driver-")?;
    Some(
        output[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}

/// `tests/spark/CorralPi.java` compiled against Spark's jars into a jar,
/// once per test process (under the target directory).
pub fn pi_jar() -> &'static Path {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        let out = workspace_dir()
            .join("target/spark-jobs")
            .join(format!("pi-{}", std::process::id()));
        let classes = out.join("classes");
        std::fs::create_dir_all(&classes).expect("dir");
        let jdk = PathBuf::from(java_home());
        let jars = format!("{}/jars/*", spark_home().display());
        let javac = Command::new(jdk.join("bin/javac"))
            .arg("-d")
            .arg(&classes)
            .args(["-cp", &jars])
            .arg(workspace_dir().join("tests/spark/CorralPi.java"))
            .output()
            .expect("javac runs");
        assert!(
            javac.status.success(),
            "javac: {}",
            String::from_utf8_lossy(&javac.stderr)
        );
        let jar = out.join("corral-pi.jar");
        let packed = Command::new(jdk.join("bin/jar"))
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(&classes)
            .arg(".")
            .output()
            .expect("jar runs");
        assert!(packed.status.success(), "jar failed");
        jar
    })
}

/// Spark as a tarball for `--spark_tarball`: `<dir>/spark.tar.gz`, which
/// extracts to `spark/` with pyspark's `bin`, `sbin` and `conf`, and a
/// `jars` that links to pyspark's jars (460 MB, not copied into every
/// sandbox of the tests).
pub fn spark_tarball(dir: &Path) -> PathBuf {
    let home = spark_home();
    let root = dir.join("tarball-root");
    let spark = root.join("spark");
    std::fs::create_dir_all(&spark).expect("tarball root");
    for sub in ["bin", "sbin", "conf"] {
        if home.join(sub).is_dir() {
            let copied = Command::new("cp")
                .arg("-r")
                .arg(home.join(sub))
                .arg(spark.join(sub))
                .status()
                .expect("cp runs");
            assert!(copied.success(), "copying {sub}");
        }
    }
    std::os::unix::fs::symlink(home.join("jars"), spark.join("jars")).expect("jars link");
    let tarball = dir.join("spark.tar.gz");
    let packed = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-czf")
        .arg(&tarball)
        .arg("spark")
        .status()
        .expect("tar runs");
    assert!(packed.success(), "tar failed");
    tarball
}

/// The local Spark image (`scripts/spark-docker-image.sh`: JDK 17 and
/// pyspark's Spark at `/opt/spark`, imported with `docker import`, no
/// registry); built once, its name.
pub fn spark_docker_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| crate::build_docker_image("spark-docker-image.sh"))
        .clone()
}

/// `tests/spark/wordcount.py`.
pub fn wordcount_py() -> PathBuf {
    workspace_dir().join("tests/spark/wordcount.py")
}

/// A running `corral spark-dispatcher`.
pub struct Dispatcher {
    /// The process.
    pub child: tokio::process::Child,
    /// Its port (Spark's protocol and the JSON API).
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its log.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Dispatcher {
    /// Starts a dispatcher for `master` with Spark from pyspark, its state
    /// under `dir`, on `port` (0: a free one), plus `extra` flags.
    pub fn spawn(master: &str, dir: &Path, port: u16, extra: &[String]) -> Dispatcher {
        let port = if port == 0 { free_port() } else { port };
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("spark-dispatcher-{n}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = tokio::process::Command::new(corral_bin())
            .args(["spark-dispatcher", "--master", master])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg(format!("--spark_home={}", spark_home().display()))
            .arg(format!("--task_env=JAVA_HOME={}", java_home()))
            .arg(format!("--state_dir={}", dir.join("state").display()))
            .arg("--offer_hold=1secs")
            .args(extra)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the spark dispatcher");
        Dispatcher {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Starts it and waits until it has subscribed.
    pub async fn start(master: &str, dir: &Path, port: u16, extra: &[String]) -> Dispatcher {
        let d = Self::spawn(master, dir, port, extra);
        assert!(
            wait_for(TIMEOUT * 2, || async {
                d.get("/api/drivers").await.1["frameworkId"].is_string()
            })
            .await,
            "the dispatcher did not subscribe:\n{}",
            d.log_text()
        );
        d
    }

    /// `spark://127.0.0.1:<port>`, for spark-submit.
    pub fn spark_master(&self) -> String {
        format!("spark://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET: status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self.http.get(format!("{}{path}", self.url)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// POST a raw body: status and text. On a connection of its own
    /// (`Connection: close`): a server refusing an oversized body with 413
    /// closes the connection, and a later request must not be sent on it
    /// from the client's pool (it failed so under load in CI).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json;charset=utf-8")
            .header("connection", "close")
            .body(body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// One driver from `/api/drivers/<id>`.
    pub async fn driver(&self, id: &str) -> Value {
        self.get(&format!("/api/drivers/{id}")).await.1
    }

    /// Waits until driver `id` is in `state`; returns it.
    pub async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let seen = wait_for(timeout, || async {
            self.driver(id).await["state"] == state
        })
        .await;
        let d = self.driver(id).await;
        assert!(
            seen,
            "driver {id} never {state}: {d}\n--- dispatcher log ---\n{}",
            self.log_text()
        );
        d
    }

    /// The drivers of `/api/drivers` (live ones).
    pub async fn live(&self) -> Vec<Value> {
        self.get("/api/drivers").await.1["drivers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
