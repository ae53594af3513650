//! Health checks and checks run by Corral's executor against a real task:
//! an HTTP health check reports `healthy: true` while the task's server
//! answers; once it stops answering, the task is killed after its
//! consecutive failures and the framework sees `healthy: false`. A COMMAND
//! check's result is reported in `check_status`.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, Cluster, ClusterOptions};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_http_health_check_kills_the_task_after_consecutive_failures() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let port = 31000 + (std::process::id() % 90) as u16;
    // Serves HTTP until the file `stop` appears, then keeps running without it.
    let mut task = command_task(
        "web",
        &agent.id,
        &format!(
            "python3 -m http.server {port} --bind 127.0.0.1 & server=$!; \
             while [ ! -f stop ]; do sleep 0.1; done; kill $server; \
             while :; do sleep 1; done"
        ),
        0.2,
        64.0,
    );
    task["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!({"name": "ports", "type": "RANGES",
                     "ranges": {"range": [{"begin": port, "end": port}]}}));
    task["health_check"] = json!({
        "type": "HTTP",
        "http": {"port": port, "path": "/"},
        "delay_seconds": 0.0,
        "interval_seconds": 0.3,
        "timeout_seconds": 2.0,
        "consecutive_failures": 3,
        "grace_period_seconds": 30.0,
    });
    task["check"] = json!({
        "type": "COMMAND",
        "command": {"command": {"value": "exit 3"}},
        "delay_seconds": 0.0,
        "interval_seconds": 0.5,
        "timeout_seconds": 5.0,
    });
    task["kill_policy"] = json!({"grace_period": {"nanoseconds": 1_000_000_000u64}});
    s.launch(&offer, vec![task]).await;
    s.follow("web", "TASK_RUNNING").await;

    // Failures while the server starts are within the grace period. Updates
    // of a task are delivered in order, each after the previous one is
    // acknowledged: take them as they come.
    let (mut healthy, mut check) = (None, None);
    while healthy.is_none() || check.is_none() {
        let ev = s
            .events
            .wait(LONG, |e| {
                e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == "web"
            })
            .await
            .unwrap_or_else(|e| panic!("no health or check update: {e}\n{}", c.logs()));
        let status = ev["update"]["status"].clone();
        s.acknowledge(&status).await;
        assert_eq!(status["state"], "TASK_RUNNING", "{status}");
        if !status["healthy"].is_null() {
            healthy = Some(status);
        } else if !status["check_status"].is_null() {
            check = Some(status);
        }
    }
    let (healthy, check) = (healthy.unwrap_or_default(), check.unwrap_or_default());
    assert_eq!(healthy["healthy"], true, "{healthy}");
    assert_eq!(healthy["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
    assert_eq!(check["check_status"]["type"], "COMMAND", "{check}");
    assert_eq!(check["check_status"]["command"]["exit_code"], 3, "{check}");
    assert_eq!(check["reason"], "REASON_TASK_CHECK_STATUS_UPDATED");

    // The server goes away: after 3 consecutive failures the task is killed.
    let fid = s.framework_id.clone();
    std::fs::write(agent.sandbox(&fid, "web").join("stop"), b"").expect("stop file");
    let mut unhealthy = 0;
    let killed = loop {
        let ev = s
            .events
            .wait(LONG, |e| {
                e["type"] == "UPDATE" && e["update"]["status"]["task_id"]["value"] == "web"
            })
            .await
            .unwrap_or_else(|e| panic!("no further update of web: {e}\n{}", c.logs()));
        let status = ev["update"]["status"].clone();
        s.acknowledge(&status).await;
        match status["state"].as_str() {
            Some("TASK_RUNNING") if status["healthy"] == false => unhealthy += 1,
            Some("TASK_RUNNING" | "TASK_KILLING") => {}
            Some("TASK_KILLED") => break status,
            other => panic!("unexpected {other:?}: {status}"),
        }
    };
    assert_eq!(
        unhealthy, 3,
        "one unhealthy update per failure up to the limit"
    );
    assert_eq!(killed["healthy"], false, "{killed}");
    let message = killed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("3 consecutive failed health checks"),
        "{message}"
    );
}
