//! Issue 11.3 and 11.6: the master's shared port routes only gRPC requests
//! (`content-type: application/grpc`, the agents' sessions) to gRPC; every
//! other unknown path is a 404 with a message. Legacy endpoints take what
//! Mesos' own tools send: trailing slashes and `limit=-1`, with the
//! `framework_id`/`task_id`/`offset`/`order` filters on `/tasks`,
//! `framework_id` on `/frameworks` and `slave_id` on `/slaves`;
//! `/master/state-summary`; `?jsonp=` on the JSON endpoints. The agent's
//! `/files` refuses paths that leave the sandbox. Real processes.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, Cluster, ClusterOptions};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_legacy_endpoints_take_what_mesos_tools_send() {
    // The agent registered over gRPC on the same port, so gRPC still works.
    let c = Cluster::start(ClusterOptions::default()).await;
    // The root is the web UI (tests/tests/webui.rs), not a 404.
    let (status, headers, body) = c.get("/").await;
    assert_eq!(status, StatusCode::OK, "/: {body}");
    assert!(headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html")));
    assert!(body.contains("Cluster overview"), "{body}");
    for path in [
        "/nonexistent",
        "/files/read?path=/master/log&offset=0",
        "/files/browse?path=/",
        "/master/nonexistent/",
    ] {
        let (status, headers, body) = c.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(!ct.starts_with("application/grpc"), "{path}: {ct}");
        assert!(body.contains("No endpoint"), "{path}: {body:?}");
    }

    // A framework with two tasks, to list.
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = &c.agents[0].id;
    s.launch(
        &offer,
        vec![
            command_task("t1", agent, "sleep 100", 0.1, 32.0),
            command_task("t2", agent, "sleep 100", 0.1, 32.0),
        ],
    )
    .await;
    s.follow("t1", "TASK_RUNNING").await;
    s.follow("t2", "TASK_RUNNING").await;
    let fid = s.fid()["value"].as_str().expect("framework id").to_string();

    for path in [
        "/master/state/",
        "/master/frameworks/",
        "/master/slaves/",
        "/master/tasks/",
        "/state/",
        "/frameworks/",
        "/slaves/",
        "/tasks/",
    ] {
        let (status, _, body) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    }
    let tasks = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).expect("json");
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect()
    };
    // What Mesos' CLI sends to list tasks.
    let (status, _, body) = c.get("/master/tasks/?order=asc&limit=-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut all = tasks(&body);
    all.sort();
    assert_eq!(all, ["t1", "t2"]);
    let (_, _, body) = c.get("/tasks?limit=1").await;
    assert_eq!(tasks(&body).len(), 1);
    let (_, _, body) = c.get("/tasks?limit=1&offset=1&order=asc").await;
    assert_eq!(tasks(&body).len(), 1);
    let (_, _, body) = c.get("/tasks?task_id=t2").await;
    assert_eq!(tasks(&body), ["t2"]);
    let (_, _, body) = c.get(&format!("/tasks?framework_id={fid}")).await;
    assert_eq!(tasks(&body).len(), 2);
    let (_, _, body) = c.get("/tasks?framework_id=nope").await;
    assert!(tasks(&body).is_empty(), "{body}");
    for bad in [
        "/tasks?limit=-2",
        "/tasks?limit=x",
        "/tasks?offset=-1",
        "/tasks?order=up",
    ] {
        let (status, _, body) = c.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(!body.is_empty(), "{bad}: a 400 explains itself");
    }

    // `/frameworks?framework_id=` and `/slaves?slave_id=` (Mesos' endpoint
    // docs): only that one, or none when unknown.
    let count = |body: &str, key: &str| {
        let v: Value = serde_json::from_str(body).expect("json");
        v[key].as_array().map_or(0, Vec::len)
    };
    let (_, _, body) = c
        .get(&format!("/master/frameworks?framework_id={fid}"))
        .await;
    assert_eq!(count(&body, "frameworks"), 1, "{body}");
    let (_, _, body) = c.get("/master/frameworks?framework_id=nope").await;
    assert_eq!(count(&body, "frameworks"), 0, "{body}");
    let (_, _, body) = c.get(&format!("/master/slaves?slave_id={agent}")).await;
    assert_eq!(count(&body, "slaves"), 1, "{body}");
    let (_, _, body) = c.get("/master/slaves?slave_id=nope").await;
    assert_eq!(count(&body, "slaves"), 0, "{body}");

    // `/master/state-summary` (Mesos' dashboards poll it): agents and
    // frameworks without task lists, with task counts by state and the ids
    // of the other side.
    for path in ["/master/state-summary", "/state-summary/"] {
        let (status, _, body) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["slaves"][0]["id"], agent.as_str(), "{body}");
        assert_eq!(v["slaves"][0]["TASK_RUNNING"], 2, "{body}");
        assert_eq!(v["slaves"][0]["TASK_FINISHED"], 0, "{body}");
        assert_eq!(v["slaves"][0]["framework_ids"], serde_json::json!([fid]));
        let f = &v["frameworks"][0];
        assert_eq!(f["id"], fid.as_str(), "{body}");
        assert_eq!(f["TASK_RUNNING"], 2, "{body}");
        assert_eq!(f["slave_ids"], serde_json::json!([agent]), "{body}");
        assert!(
            f.get("tasks").is_none(),
            "no task lists in a summary: {body}"
        );
        assert!(v["hostname"].is_string(), "{body}");
    }

    // `?jsonp=`: the JSON wrapped in the callback, as JavaScript.
    for path in [
        "/master/state?jsonp=angular.callbacks._0",
        "/master/state-summary?jsonp=angular.callbacks._0",
        "/tasks?jsonp=angular.callbacks._0&limit=-1",
        "/metrics/snapshot?jsonp=angular.callbacks._0",
    ] {
        let (status, headers, body) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "text/javascript", "{path}");
        let inner = body
            .strip_prefix("angular.callbacks._0(")
            .and_then(|b| b.strip_suffix(");"))
            .unwrap_or_else(|| panic!("{path}: not wrapped: {body:.200}"));
        serde_json::from_str::<Value>(inner).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for bad in ["alert(1)", "x%3Bdocument.write(1)", "1abc", ""] {
        let (status, _, body) = c.get(&format!("/master/state?jsonp={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("'jsonp'"), "{bad}: {body}");
    }

    // The agent's /files: paths out of the sandbox are refused.
    let sandbox = format!("/frameworks/{fid}/executors/t1/runs/latest");
    let agent_get = |path: String| {
        let url = c.agents[0].url(&path);
        let http = c.http.clone();
        async move {
            let r = http
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("agent /files");
            (r.status(), r.text().await.unwrap_or_default())
        }
    };
    let (status, body) = agent_get(format!("/files/browse?path={sandbox}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for path in [
        format!("{sandbox}/../../../../../../../../etc/passwd"),
        format!("{sandbox}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        "/../../../../etc/passwd".to_string(),
        "/etc/passwd".to_string(),
    ] {
        let (status, body) = agent_get(format!("/files/read?path={path}&offset=0")).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
        assert!(!body.contains("root:"), "{path}: leaked {body}");
    }
}
