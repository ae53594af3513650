//! The submission server against the real `spark-submit` of pyspark 4.3
//! (installed by `scripts/spark-env.sh`, which `scripts/test.sh` runs):
//! an unmodified client in cluster mode on a `spark://` master creates a
//! submission, `--status` reports it, `--kill` kills it, and a full queue
//! refuses. The dispatcher's state answers through its pure
//! [`corral_spark::calls::answer`], as the framework's actor does.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_spark::api::{router, ApiCall};
use corral_spark::calls::{answer, Context};
use corral_spark::queue::{Dispatcher, Limits};
use corral_tests::spark::{spark_submit, submission_id};

/// Serves the protocol on a loopback port, answering from a dispatcher of
/// `max_queued` drivers; returns the port.
async fn serve(max_queued: usize) -> u16 {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ApiCall>(64);
    let gate = corral_sdk::gate::Gate::new(None);
    gate.set_leading();
    let app = router(tx, gate, "4.3.0");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tokio::spawn(async move {
        let mut d = Dispatcher::new(Limits {
            max_queued,
            ..Limits::default()
        });
        let defaults = BTreeMap::new();
        let sizing = corral_spark::plan::PlanDefaults::default();
        while let Some(c) = rx.recv().await {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let cx = Context {
                server_version: "4.3.0",
                default_role: "spark",
                roles: &[],
                defaults: &defaults,
                sizing: &sizing,
                now_ms,
            };
            let (reply, _) = answer(&mut d, c.call, &cx);
            let _ = c.reply.send(reply);
        }
    });
    port
}

/// `spark-submit --status|--kill <id>` against `master`.
async fn request(master: &str, flag: &'static str, id: &str) -> (bool, String) {
    let (master, id) = (master.to_string(), id.to_string());
    tokio::task::spawn_blocking(move || {
        spark_submit(&[
            "--master",
            &master,
            "--conf",
            "spark.master.rest.enabled=true",
            flag,
            &id,
        ])
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmodified_spark_submit_creates_queries_and_kills() {
    let port = serve(1).await;
    let master = format!("spark://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("corral-spark-submit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let jar = dir.join("pi.jar");
    std::fs::write(&jar, b"not run here").expect("jar");
    let jar_uri = format!("file://{}", jar.display());
    let submit = |name: &'static str| {
        let master = master.clone();
        let jar_uri = jar_uri.clone();
        tokio::task::spawn_blocking(move || {
            spark_submit(&[
                "--master",
                &master,
                "--deploy-mode",
                "cluster",
                "--conf",
                "spark.master.rest.enabled=true",
                "--conf",
                "spark.standalone.submit.waitAppCompletion=false",
                "--name",
                name,
                "--class",
                "org.example.Pi",
                &jar_uri,
                "10",
            ])
        })
    };
    let (ok, out) = submit("pi").await.expect("join");
    assert!(ok, "spark-submit failed:\n{out}");
    assert!(
        out.contains("Submission successfully created as driver-"),
        "{out}"
    );
    let id = submission_id(&out).expect("a driver id");
    assert!(
        out.contains("SUBMITTED"),
        "the client polled its state:\n{out}"
    );

    // --status.
    let (ok, out) = request(&master, "--status", &id).await;
    // The client validates the answer and fails (exit 1, an exception) on
    // one it cannot read; it prints a good one (its own logger at INFO).
    assert!(ok && !out.contains("Exception"), "{out}");
    assert!(
        out.contains("\"driverState\" : \"SUBMITTED\""),
        "no state printed:\n{out}"
    );

    // The queue holds one: a second submission is refused — success false
    // with the reason (which spark-submit does not print; read directly).
    let (_, out) = submit("second").await.expect("join");
    assert!(!out.contains("Exception"), "{out}");
    let http = reqwest::Client::new();
    let create = serde_json::json!({
        "action": "CreateSubmissionRequest", "appResource": jar_uri, "appArgs": [],
        "clientSparkVersion": "4.3.0", "environmentVariables": {}, "mainClass": "org.example.Pi",
        "sparkProperties": {"spark.app.name": "third"}});
    let v: serde_json::Value = http
        .post(format!("http://127.0.0.1:{port}/v1/submissions/create"))
        .json(&create)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue is full")),
        "{v}"
    );

    // --kill, then the state is KILLED.
    let (ok, out) = request(&master, "--kill", &id).await;
    assert!(ok && !out.contains("Exception"), "{out}");
    assert!(
        out.contains("KillSubmissionResponse") && out.contains("\"success\" : true"),
        "{out}"
    );
    let v: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{port}/v1/submissions/status/{id}"
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(v["driverState"], "KILLED", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_sparks_error_responses() {
    let port = serve(10).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let post = |p: String, body: Vec<u8>| {
        let http = http.clone();
        async move {
            let r = http.post(p).body(body).send().await.expect("post");
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
            (status, v)
        }
    };
    let (s, v) = post(url("/v1/submissions/create"), b"{not json".to_vec()).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["action"], "ErrorResponse");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Malformed request")),
        "{v}"
    );
    let missing_class = serde_json::json!({
        "action": "CreateSubmissionRequest", "appResource": "file:///x.jar", "appArgs": [],
        "clientSparkVersion": "4.3.0", "environmentVariables": {},
        "sparkProperties": {"spark.app.name": "x"}});
    let (s, v) = post(
        url("/v1/submissions/create"),
        missing_class.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Main class")),
        "{v}"
    );
    let (s, v) = post(url("/v1/submissions/create"), vec![b' '; (1 << 20) + 1]).await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = post(url("/v9/submissions/create"), Vec::new()).await;
    assert_eq!(s, 468, "{v}");
    assert_eq!(v["highestProtocolVersion"], "v1");
    let (s, v) = post(url("/v1/submissions/kill/driver-unknown"), Vec::new()).await;
    assert_eq!((s, v["success"].clone()), (200, false.into()), "{v}");
    let r = http
        .get(url("/v1/submissions/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status().as_u16(), 200);
}
