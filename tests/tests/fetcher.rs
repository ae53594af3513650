//! The fetcher against a local HTTP server: a plain file, an executable
//! script, an extracted archive, a cached URI (the second task is served
//! from the agent's cache: the server sees one request), and a 404 that
//! fails the task with a message naming the URI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, tar_gz, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 file server on loopback that counts requests per path.
struct FileServer {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl FileServer {
    async fn start(files: HashMap<String, Vec<u8>>) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind file server");
        let port = listener.local_addr().expect("addr").port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let files = Arc::new(files);
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (files, hits) = (files.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    *hits
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(path.clone())
                        .or_default() += 1;
                    let response = match files.get(&path) {
                        Some(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FileServer { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn with_uris(mut task: Value, uris: Value) -> Value {
    task["command"]["uris"] = uris;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_plain_executable_extracted_and_cached_uris_and_fails_on_404() {
    let mut files = HashMap::new();
    files.insert("/plain.txt".to_string(), b"plain content\n".to_vec());
    files.insert(
        "/hello.sh".to_string(),
        b"#!/bin/sh\necho hello from a fetched script\n".to_vec(),
    );
    files.insert(
        "/bundle.tar.gz".to_string(),
        tar_gz("bundle/inside.txt", b"extracted content\n", 0o644),
    );
    files.insert("/cached.bin".to_string(), vec![7u8; 4096]);
    let server = FileServer::start(files).await;

    let c = Cluster::start(ClusterOptions {
        agent_flags: vec!["--fetcher_cache_size=1MB".into()],
        ..Default::default()
    })
    .await;
    let mut s = c.subscribe(Encoding::Json).await;
    let agent = c.agents[0].clone();

    let fetch = with_uris(
        command_task(
            "fetch",
            &agent.id,
            "cat plain.txt && ./hello.sh && cat bundle/inside.txt && test ! -x plain.txt && \
             cmp -s bin/data cached-copy || echo mismatch",
            0.1,
            32.0,
        ),
        json!([
            {"value": server.url("/plain.txt"), "extract": false},
            {"value": server.url("/hello.sh"), "executable": true},
            {"value": server.url("/bundle.tar.gz")},
            {"value": server.url("/cached.bin"), "cache": true, "output_file": "bin/data"},
            {"value": server.url("/cached.bin"), "cache": true, "output_file": "cached-copy"},
        ]),
    );
    let cached_again = with_uris(
        command_task("cached-again", &agent.id, "test -s cached.bin", 0.1, 32.0),
        json!([{"value": server.url("/cached.bin"), "cache": true}]),
    );
    let missing_uri = server.url("/missing.tgz");
    let missing = with_uris(
        command_task("missing", &agent.id, "true", 0.1, 32.0),
        json!([{"value": missing_uri}]),
    );
    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![fetch]).await;
    s.follow("fetch", "TASK_FINISHED").await;
    let fid = s.framework_id.clone();
    let out =
        std::fs::read_to_string(agent.sandbox(&fid, "fetch").join("stdout")).unwrap_or_default();
    assert!(out.contains("plain content"), "{out}");
    assert!(out.contains("hello from a fetched script"), "{out}");
    assert!(out.contains("extracted content"), "{out}");
    assert!(!out.contains("mismatch"), "{out}");

    let offer = s.offers().await.remove(0);
    s.launch(&offer, vec![cached_again, missing]).await;
    s.follow("cached-again", "TASK_FINISHED").await;
    // Three fetches of the cached URI, one download.
    assert_eq!(server.hits("/cached.bin"), 1, "served from the cache");
    assert_eq!(server.hits("/plain.txt"), 1);

    let failed = s.follow("missing", "TASK_FAILED").await;
    let failed = failed.last().cloned().unwrap_or_default();
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&missing_uri) && message.contains("404"),
        "the message names the URI and the error: {failed}"
    );
    assert_eq!(
        failed["reason"], "REASON_CONTAINER_LAUNCH_FAILED",
        "{failed}"
    );

    // A task group's URIs are fetched into its default executor's sandbox.
    let offer = loop {
        let offers = s.offers().await;
        if let Some(o) = offers.iter().find(|o| {
            corral_tests::scalar_of(&o["resources"], "cpus") >= 0.2
                && corral_tests::scalar_of(&o["resources"], "mem") >= 64.0
        }) {
            break o.clone();
        }
        s.decline(&offers, 0.0).await;
    };
    let grouped = with_uris(
        command_task("grouped", &agent.id, "cat plain.txt", 0.1, 32.0),
        json!([{"value": server.url("/plain.txt")}]),
    );
    s.accept(
        &offer,
        json!([{
            "type": "LAUNCH_GROUP",
            "launch_group": {
                "executor": {
                    "type": "DEFAULT",
                    "executor_id": {"value": "group-exec"},
                    "framework_id": {"value": fid},
                    "resources": corral_tests::scalars(0.1, 32.0),
                },
                "task_group": {"tasks": [grouped]},
            }
        }]),
    )
    .await;
    s.follow("grouped", "TASK_FINISHED").await;
    assert_eq!(server.hits("/plain.txt"), 2);

    let metrics_ok = wait_for(Duration::from_secs(10), || async {
        let v: Value = match c.http.get(agent.url("/metrics/snapshot")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        v["containerizer/fetcher/cache_hits"].as_f64() == Some(2.0)
            && v["containerizer/fetcher/cache_misses"].as_f64() == Some(1.0)
    })
    .await;
    assert!(metrics_ok, "fetcher cache metrics");
}
