//! The fetcher through Hadoop's client (cargo feature `hdfs` of this crate;
//! the agent must be built with `--features hdfs`: scripts/test.sh builds it
//! and sets CORRAL_BIN).
//!
//! No NameNode can be downloaded here, so the files are served by a file
//! system only Hadoop's client can resolve: `viewfs://`, a client-side mount
//! table (in a `core-site.xml` put first on the agent's CLASSPATH, as
//! HADOOP_CONF_DIR would be) over a local directory. The agent fetches a
//! tarball (extracted), a script (made executable) and a cached file (the
//! second task is served from the agent's cache after the source is gone),
//! and fails a task whose URI does not exist, or whose `hdfs://` NameNode
//! does not answer, with a message naming the URI.
#![cfg(feature = "hdfs")]

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, tar_gz, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

fn with_uris(mut task: Value, uris: Value) -> Value {
    task["command"]["uris"] = uris;
    task
}

/// A Hadoop configuration directory mounting `releases` at
/// `viewfs://corral/releases`, with the IPC client's connection retries
/// off (so an unreachable NameNode fails at once rather than after ten
/// retries).
fn hadoop_conf(dir: &std::path::Path, releases: &std::path::Path) {
    let property = |name: &str, value: &str| {
        format!("  <property><name>{name}</name><value>{value}</value></property>\n")
    };
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<configuration>\n{}{}{}</configuration>\n",
        property(
            "fs.viewfs.mounttable.corral.link./releases",
            &format!("file://{}", releases.display())
        ),
        property("ipc.client.connect.max.retries", "0"),
        property("ipc.client.connect.max.retries.on.timeouts", "0"),
    );
    std::fs::create_dir_all(dir).expect("conf dir");
    std::fs::write(dir.join("core-site.xml"), xml).expect("core-site.xml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_extracts_and_caches_uris_through_hadoops_client() {
    let classpath = std::env::var("CLASSPATH").unwrap_or_default();
    assert!(
        !classpath.is_empty(),
        "CLASSPATH must list the Hadoop client jars: run `eval \"$(scripts/hadoop-env.sh)\"`"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let releases = scratch.path().join("releases");
    std::fs::create_dir_all(&releases).expect("mkdir");
    std::fs::write(
        releases.join("app.tar.gz"),
        tar_gz(
            "app/bin/start.sh",
            b"#!/bin/sh\necho started from a tarball in hadoop\n",
            0o755,
        ),
    )
    .expect("write tarball");
    std::fs::write(
        releases.join("tool.sh"),
        b"#!/bin/sh\necho hello from a fetched script\n",
    )
    .expect("write script");
    std::fs::write(releases.join("data.bin"), vec![7u8; 4096]).expect("write data");
    let conf = scratch.path().join("conf");
    hadoop_conf(&conf, &releases);

    let c = Cluster::start(ClusterOptions {
        agent_flags: vec!["--fetcher_cache_size=1MB".into()],
        agent_env: vec![(
            "CLASSPATH".into(),
            format!("{}:{classpath}", conf.display()),
        )],
        ..Default::default()
    })
    .await;
    let mut s = c.subscribe(Encoding::Json).await;
    let agent = c.agents[0].clone();
    let fid = s.framework_id.clone();

    let fetch = with_uris(
        command_task(
            "fetch",
            &agent.id,
            "./app/bin/start.sh && ./tool.sh && test -x tool.sh && test -s data-1 \
             && test ! -e app.tar.gz.part",
            0.1,
            32.0,
        ),
        json!([
            {"value": "viewfs://corral/releases/app.tar.gz"},
            {"value": "viewfs://corral/releases/tool.sh", "executable": true},
            {"value": "viewfs://corral/releases/data.bin", "cache": true, "output_file": "data-1"},
        ]),
    );
    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![fetch]).await;
    s.follow("fetch", "TASK_FINISHED").await;
    let out =
        std::fs::read_to_string(agent.sandbox(&fid, "fetch").join("stdout")).unwrap_or_default();
    assert!(out.contains("started from a tarball in hadoop"), "{out}");
    assert!(out.contains("hello from a fetched script"), "{out}");

    // The cached URI is served from the agent's cache: its source is gone.
    std::fs::remove_file(releases.join("data.bin")).expect("remove source");
    let cached = with_uris(
        command_task("cached", &agent.id, "test -s data.bin", 0.1, 32.0),
        json!([{"value": "viewfs://corral/releases/data.bin", "cache": true}]),
    );
    let missing_uri = "viewfs://corral/releases/missing.tgz";
    let missing = with_uris(
        command_task("missing", &agent.id, "true", 0.1, 32.0),
        json!([{"value": missing_uri}]),
    );
    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![cached, missing]).await;
    s.follow("cached", "TASK_FINISHED").await;
    let failed = s.follow("missing", "TASK_FAILED").await;
    let failed = failed.last().cloned().unwrap_or_default();
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(missing_uri) && message.contains("no such file"),
        "the message names the URI and the error: {failed}"
    );
    assert_eq!(
        failed["reason"], "REASON_CONTAINER_LAUNCH_FAILED",
        "{failed}"
    );

    // hdfs:// goes to Hadoop's HDFS client: a NameNode that does not answer
    // fails the task naming the URI.
    let unreachable_uri = "hdfs://127.0.0.1:1/dist/app.tgz";
    let unreachable = with_uris(
        command_task("unreachable", &agent.id, "true", 0.1, 32.0),
        json!([{"value": unreachable_uri}]),
    );
    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![unreachable]).await;
    let failed = s.follow("unreachable", "TASK_FAILED").await;
    let failed = failed.last().cloned().unwrap_or_default();
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(unreachable_uri) && message.contains("HDFS error"),
        "the message names the URI and Hadoop's error: {failed}"
    );

    let metrics_ok = wait_for(Duration::from_secs(10), || async {
        let v: Value = match c.http.get(agent.url("/metrics/snapshot")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        v["containerizer/fetcher/cache_hits"].as_f64() == Some(1.0)
            && v["containerizer/fetcher/cache_misses"].as_f64() == Some(1.0)
            && v["containerizer/fetcher/task_fetches_failed"].as_f64() == Some(2.0)
    })
    .await;
    assert!(metrics_ok, "fetcher cache and failure metrics");
}
