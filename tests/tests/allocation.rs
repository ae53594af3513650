//! The allocator through the real master: the DRF example end to end with
//! two frameworks on a real agent, offer timeouts, and weights and quota
//! that survive a master restart.

use std::process::Stdio;
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, corral_bin, default_framework_info, free_port, wait_for, Cluster, ClusterOptions,
    Scheduler,
};
use serde_json::{json, Value};

fn scalar(resources: &Value, name: &str) -> f64 {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum()
}

/// One framework of the DRF example: launches one task of `need` per offer
/// that fits it and declines (for long) offers that do not.
struct Drf {
    s: Scheduler,
    cpus: f64,
    mem: f64,
    launched: usize,
    declined_since_last_launch: bool,
}

impl Drf {
    async fn step(&mut self, agent: &str) -> bool {
        let Ok(ev) = self
            .s
            .events
            .wait_type("OFFERS", Duration::from_millis(400))
            .await
        else {
            return false;
        };
        for offer in ev["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let res = &offer["resources"];
            if scalar(res, "cpus") >= self.cpus && scalar(res, "mem") >= self.mem {
                let id = format!("{}-{}", self.s.framework_id, self.launched);
                self.s
                    .launch(
                        &offer,
                        vec![command_task(&id, agent, "sleep 300", self.cpus, self.mem)],
                    )
                    .await;
                self.launched += 1;
                self.declined_since_last_launch = false;
            } else {
                self.s.decline(&[offer], 3600.0).await;
                self.declined_since_last_launch = true;
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drf_example_end_to_end_with_two_frameworks() {
    // One agent of 9 CPUs and 18 GB; framework 1 runs <1 CPU, 4 GB> tasks,
    // framework 2 <3 CPUs, 1 GB> tasks.
    let c = Cluster::start(ClusterOptions {
        agents: 1,
        agent_resources: Some("cpus:9;mem:18432;disk:1024;ports:[31000-31099]".into()),
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].id.clone();
    let mut f1 = Drf {
        s: c.subscribe_with(Encoding::Json, default_framework_info("drf-1"))
            .await,
        cpus: 1.0,
        mem: 4096.0,
        launched: 0,
        declined_since_last_launch: false,
    };
    let mut f2 = Drf {
        s: c.subscribe_with(Encoding::Json, default_framework_info("drf-2"))
            .await,
        cpus: 3.0,
        mem: 1024.0,
        launched: 0,
        declined_since_last_launch: false,
    };
    let mut quiet_rounds = 0;
    for _ in 0..200 {
        let a = f1.step(&agent).await;
        let b = f2.step(&agent).await;
        if !a && !b {
            quiet_rounds += 1;
        } else {
            quiet_rounds = 0;
        }
        // Done when neither can use what is left and nothing moves.
        if quiet_rounds >= 3 && (f1.launched + f2.launched) > 0 {
            break;
        }
    }
    assert_eq!((f1.launched, f2.launched), (3, 2), "tasks per framework");

    // Both end at a dominant share of 2/3 of the agent.
    let (_, frameworks) = c.operator(json!({"type": "GET_FRAMEWORKS"})).await;
    let share = |name: &str| -> f64 {
        let fw = frameworks["get_frameworks"]["frameworks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["framework_info"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null);
        let used = &fw["allocated_resources"];
        (scalar(used, "cpus") / 9.0).max(scalar(used, "mem") / 18432.0)
    };
    assert!((share("drf-1") - 2.0 / 3.0).abs() < 1e-6, "{frameworks}");
    assert!((share("drf-2") - 2.0 / 3.0).abs() < 1e-6, "{frameworks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_rescinded_after_the_offer_timeout() {
    let c = Cluster::start(ClusterOptions {
        master_flags: vec!["--offer_timeout=300ms".into()],
        ..Default::default()
    })
    .await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let rescind = s
        .events
        .wait_type("RESCIND", Duration::from_secs(10))
        .await
        .expect("RESCIND after --offer_timeout");
    assert_eq!(rescind["rescind"]["offer_id"], offer["id"]);
    // The resources come back in a new offer.
    let again = s.offers().await.remove(0);
    assert_ne!(again["id"], offer["id"]);
    assert!(c.metric("master/offers_rescinded").await.unwrap_or(0.0) >= 1.0);
}

struct Master(tokio::process::Child);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn start_master(port: u16, work_dir: &std::path::Path) -> Master {
    Master(
        tokio::process::Command::new(corral_bin())
            .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .arg("--work_dir")
            .arg(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start master"),
    )
}

/// Whether the master answers the operator API (not just /health).
async fn serves_operator_api(port: u16) -> bool {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1"))
        .header("Content-Type", "application/json")
        .body(r#"{"type":"GET_HEALTH"}"#)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn operator(port: u16, call: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1"))
        .header("Content-Type", "application/json")
        .body(call.to_string())
        .send()
        .await
        .expect("operator call");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_quota_survive_a_master_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut m = start_master(port, dir.path());
    assert!(
        wait_for(Duration::from_secs(20), || async {
            serves_operator_api(port).await
        })
        .await,
        "the master never served the operator API"
    );
    let (status, body) = operator(
        port,
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "eng", "weight": 2.5}, {"role": "ops", "weight": 0.5}]}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = operator(
        port,
        json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{
            "role": "eng",
            "guarantees": {"cpus": {"value": 1.0}},
            "limits": {"cpus": {"value": 4.0}, "mem": {"value": 2048.0}}}]}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Bad input is refused and changes nothing.
    for bad in [
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": -1.0}]}}),
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "/x", "weight": 1.0}]}}),
        json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "eng",
            "guarantees": {"cpus": {"value": 8.0}}, "limits": {"cpus": {"value": 4.0}}}]}}),
    ] {
        let (status, body) = operator(port, bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
    }

    let check = |port: u16| async move {
        let (_, w) = operator(port, json!({"type": "GET_WEIGHTS"})).await;
        let weights: Vec<(String, f64)> = w["get_weights"]["weight_infos"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["role"].as_str().unwrap_or("").to_string(),
                    i["weight"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        let (_, q) = operator(port, json!({"type": "GET_QUOTA"})).await;
        let config = q["get_quota"]["status"]["configs"][0].clone();
        (weights, config)
    };
    let (weights, config) = check(port).await;
    assert_eq!(weights, vec![("eng".into(), 2.5), ("ops".into(), 0.5)]);
    assert_eq!(config["role"], "eng");
    assert_eq!(config["limits"]["cpus"]["value"], 4.0);

    // kill -9 and start again on the same work dir.
    m.0.kill().await.expect("kill master");
    let _m2 = start_master(port, dir.path());
    // /health answers as soon as the process serves; the APIs answer 503
    // until the registry is recovered, so wait for the operator API.
    assert!(
        wait_for(Duration::from_secs(20), || async {
            serves_operator_api(port).await
        })
        .await,
        "the restarted master never served the operator API"
    );
    let (weights, config) = check(port).await;
    assert_eq!(weights, vec![("eng".into(), 2.5), ("ops".into(), 0.5)]);
    assert_eq!(config["guarantees"]["cpus"]["value"], 1.0);
    assert_eq!(config["limits"]["mem"]["value"], 2048.0);

    // GET_ROLES and /roles report them.
    let (_, roles) = operator(port, json!({"type": "GET_ROLES"})).await;
    let eng = roles["get_roles"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "eng")
        .cloned()
        .expect("eng in GET_ROLES");
    assert_eq!(eng["weight"], 2.5);
    let legacy: Value = reqwest::get(format!("http://127.0.0.1:{port}/roles"))
        .await
        .expect("/roles")
        .json()
        .await
        .expect("json");
    let eng = legacy["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "eng")
        .cloned()
        .expect("eng in /roles");
    assert_eq!(eng["quota"]["limit"]["cpus"], 4.0);
    assert_eq!(eng["quota"]["guarantee"]["cpus"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_outside_the_whitelist_are_refused() {
    let c = Cluster::start(ClusterOptions {
        master_flags: vec!["--roles=eng,ops".into()],
        ..Default::default()
    })
    .await;
    let mut info = default_framework_info("intruder");
    info["role"] = json!("finance");
    let call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
    let (status, _, mut stream) = c.subscribe_raw(Encoding::Json, &call, &[]).await;
    // Mesos answers SUBSCRIBE with an ERROR event for a refused framework.
    assert_eq!(status, 200);
    let err = stream
        .wait_type("ERROR", Duration::from_secs(10))
        .await
        .expect("ERROR event");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("finance")),
        "{err}"
    );
    let (_, fws) = c.operator(json!({"type": "GET_FRAMEWORKS"})).await;
    assert!(fws["get_frameworks"]["frameworks"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
}
