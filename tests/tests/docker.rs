//! The Docker containerizer against the real engine and the image the
//! project builds locally (scripts/docker-test-image.sh): a task runs from
//! it with BRIDGE networking and a port mapping from its offered ports, a
//! volume and a parameter; its output appears in the sandbox (mounted at
//! /mnt/mesos/sandbox); kill stops the container within its grace period
//! and the container is removed. A checkpointing Docker task survives a
//! `kill -9` of the agent.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, default_framework_info, require_docker_image, wait_for, Cluster, ClusterOptions,
};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

fn docker_options() -> ClusterOptions {
    ClusterOptions {
        agent_flags: vec![
            "--containerizers=docker,mesos".into(),
            "--executor_reregistration_timeout=10secs".into(),
        ],
        ..Default::default()
    }
}

fn docker_task(
    id: &str,
    agent_id: &str,
    image: &str,
    cmd: &str,
    host_port: u16,
    label: &str,
) -> Value {
    let mut t = command_task(id, agent_id, cmd, 0.2, 64.0);
    t["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!({"name": "ports", "type": "RANGES",
                     "ranges": {"range": [{"begin": host_port, "end": host_port}]}}));
    t["container"] = json!({
        "type": "DOCKER",
        "docker": {
            "image": image,
            "network": "BRIDGE",
            "port_mappings": [{"host_port": host_port, "container_port": 8080, "protocol": "tcp"}],
            "parameters": [{"key": "label", "value": format!("corral.test={label}")}],
            "force_pull_image": false,
        },
        "volumes": [{"container_path": "/data", "host_path": "data", "mode": "RW"}],
    });
    t
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_task_runs_from_the_local_image_writes_the_sandbox_and_is_killed() {
    let image = require_docker_image();
    let c = Cluster::start(docker_options()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let port = 31050 + (std::process::id() % 40) as u16;
    let task = docker_task(
        "web",
        &agent.id,
        &image,
        "echo hello from docker; echo sandbox=$MESOS_SANDBOX; echo in-volume > /data/file; \
         echo oops >&2; exec httpd -f -p 8080 -h /var/www",
        port,
        "web",
    );
    // A health check of the container's port 8080 (probed on its host port).
    let mut task = task;
    task["health_check"] = json!({
        "type": "HTTP",
        "http": {"port": 8080, "path": "/index.html"},
        "delay_seconds": 0.0,
        "interval_seconds": 0.2,
        "grace_period_seconds": 60.0,
    });
    s.launch(&offer, vec![task]).await;
    s.follow("web", "TASK_RUNNING").await;
    let healthy = s
        .events
        .wait(LONG, |e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == "web"
                && e["update"]["status"]["healthy"] == true
        })
        .await
        .unwrap_or_else(|e| panic!("the BRIDGE task becomes healthy: {e}\n{}", c.logs()));
    s.acknowledge(&healthy["update"]["status"]).await;
    let sandbox = agent.sandbox(&s.framework_id, "web");

    // Output reaches the sandbox files; the volume is the sandbox's `data`.
    let stdout = sandbox.join("stdout");
    let ok = wait_for(LONG, || {
        let p = stdout.clone();
        async move {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("sandbox=/mnt/mesos/sandbox")
        }
    })
    .await;
    assert!(ok, "container output in the sandbox\n{}", c.logs());
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    assert!(out.contains("hello from docker"), "{out}");
    assert!(std::fs::read_to_string(sandbox.join("stderr"))
        .unwrap_or_default()
        .contains("oops"));
    let vol = sandbox.join("data").join("file");
    let ok = wait_for(LONG, || {
        let p = vol.clone();
        async move { std::fs::read_to_string(p).unwrap_or_default() == "in-volume\n" }
    })
    .await;
    assert!(ok, "the volume is mounted");

    // The port mapping: the host port reaches httpd in the container.
    let url = format!("http://127.0.0.1:{port}/index.html");
    let served = wait_for(LONG, || {
        let (http, url) = (c.http.clone(), url.clone());
        async move {
            match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("corral test image"),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(served, "httpd answers on the mapped host port {port}");
    let names = docker(&[
        "ps",
        "--filter",
        "label=corral.test=web",
        "--format",
        "{{.Names}}",
    ]);
    let name = names.lines().next().unwrap_or_default().to_string();
    assert!(
        name.starts_with("mesos-"),
        "container named as Mesos names it: {names:?}"
    );
    assert!(
        docker(&[
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}",
            &name
        ])
        .trim()
            == format!("{} 204", 64 * 1024 * 1024),
        "the task's mem and cpus limit the container"
    );

    // GET_CONTAINERS reports the Docker container's own usage and limits.
    let stats_url = format!("http://{}/api/v1", agent.endpoint);
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let reported = wait_for(LONG, || {
        let (http, url, last) = (c.http.clone(), stats_url.clone(), last.clone());
        async move {
            let v: Value = match http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(r#"{"type":"GET_CONTAINERS"}"#)
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => return false,
            };
            let st = v["get_containers"]["containers"][0]["resource_statistics"].clone();
            *last.lock().unwrap_or_else(|e| e.into_inner()) = st.clone();
            st["mem_limit_bytes"] == 64 * 1024 * 1024
                && st["mem_rss_bytes"].as_u64() > Some(0)
                && st["cpus_limit"]
                    .as_f64()
                    .is_some_and(|c| (c - 0.2).abs() < 0.01)
        }
    })
    .await;
    let last = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(reported, "the container's usage in GET_CONTAINERS: {last}");

    // Kill: httpd goes down with SIGTERM; the container is removed.
    s.call_ok(json!({"type": "KILL", "kill": {"task_id": {"value": "web"}}}))
        .await;
    let killed = s.follow("web", "TASK_KILLED").await;
    assert_eq!(
        killed.last().map(|k| k["state"].clone()),
        Some(json!("TASK_KILLED"))
    );
    let removed = wait_for(LONG, || {
        let n = name.clone();
        async move {
            docker(&["ps", "-a", "--filter", &format!("name={n}"), "-q"])
                .trim()
                .is_empty()
        }
    })
    .await;
    assert!(removed, "container {name} is removed after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointing_docker_task_survives_an_agent_restart() {
    let image = require_docker_image();
    let mut c = Cluster::start(docker_options()).await;
    let mut info = default_framework_info("docker-checkpoint");
    info["checkpoint"] = json!(true);
    let mut s = c.subscribe_with(Encoding::Json, info).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let port = 31010 + (std::process::id() % 40) as u16;
    let task = docker_task(
        "box",
        &agent.id,
        &image,
        "while [ ! -f /mnt/mesos/sandbox/done ]; do sleep 0.1; done; echo box-done",
        port,
        "box",
    );
    s.launch(&offer, vec![task]).await;
    s.follow("box", "TASK_RUNNING").await;
    let before = docker(&[
        "ps",
        "--filter",
        "label=corral.test=box",
        "--format",
        "{{.ID}}",
    ]);
    assert!(!before.trim().is_empty(), "the container runs");

    c.kill_agent(0);
    c.restart_agent(0, &[]).await;
    let ok = wait_for(LONG, || async {
        let v: Value = match c.http.get(agent.url("/metrics/snapshot")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        v["slave/executors_running"].as_f64() == Some(1.0)
    })
    .await;
    assert!(ok, "the docker task's executor re-subscribed\n{}", c.logs());
    let after = docker(&[
        "ps",
        "--filter",
        "label=corral.test=box",
        "--format",
        "{{.ID}}",
    ]);
    assert_eq!(before, after, "the same container still runs");

    std::fs::write(agent.sandbox(&s.framework_id, "box").join("done"), b"").expect("done");
    s.follow("box", "TASK_FINISHED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_task_over_its_memory_is_failed_with_container_limitation_memory() {
    let image = require_docker_image();
    let c = Cluster::start(docker_options()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let mut t = command_task("hog", &agent.id, "tail /dev/zero", 0.1, 16.0);
    t["container"] = json!({"type": "DOCKER", "docker": {"image": image, "network": "NONE"}});
    s.launch(&offer, vec![t]).await;
    let seen = s.follow("hog", "TASK_FAILED").await;
    let failed = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        failed["reason"], "REASON_CONTAINER_LIMITATION_MEMORY",
        "{failed}"
    );
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Memory limit exceeded: Requested: 16MB"),
        "{failed}"
    );
    assert_eq!(
        failed["limitation"]["resources"][0]["name"], "mem",
        "{failed}"
    );
}
