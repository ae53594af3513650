//! The bridge's web pages, rendered on the server from the same documents
//! its JSON API serves (`/api/nodemanagers`, `/api/profiles`,
//! `/api/autoscaler`), re-rendered every few seconds in the browser:
//!
//! * `/ui` — the NodeManagers: state, profile, host, agent, YARN's view,
//!   why a pending one waits; the fine-grained nodes; YARN's demand;
//! * `/ui/nodemanagers/{task_id}` — one NodeManager;
//! * `/ui/profiles` — the profiles and what a NodeManager of each takes;
//! * `/ui/autoscaler` — the policies and the decisions, newest first, each
//!   with the demand behind it (pending memory, cores and containers,
//!   available memory);
//! * `GET /` — a redirect to `/ui`.

use corral_webui::json::{arr, s};
use corral_webui::muted;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use corral_sdk::webui::{html, now_ms, when, Site};
use corral_webui::{cards, esc, format_number, kv, link, state, table_with_empty, url_encode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::server::{ApiError, Input, Reply};

type Inputs = mpsc::Sender<Input>;

/// The pages' brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral YARN bridge",
    home: "/ui",
    nav: &[
        ("/ui", "NodeManagers"),
        ("/ui/profiles", "Profiles"),
        ("/ui/autoscaler", "Autoscaler"),
    ],
};

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_number),
        other => other.to_string(),
    }
}

fn nm_href(task_id: &str) -> String {
    format!("/ui/nodemanagers/{}", url_encode(task_id))
}

/// YARN's demand (`clusterMetrics`) as cards.
fn demand_cards(metrics: &Value) -> String {
    if !metrics.is_object() {
        return "<p class=\"notice\">The ResourceManager has not been read yet.</p>".into();
    }
    cards(&[
        ("Pending memory (MB)", text(&metrics["pendingMB"])),
        ("Pending vcores", text(&metrics["pendingVirtualCores"])),
        ("Containers pending", text(&metrics["containersPending"])),
        ("Available memory (MB)", text(&metrics["availableMB"])),
        ("Allocated memory (MB)", text(&metrics["allocatedMB"])),
        ("Active YARN nodes", text(&metrics["activeNodes"])),
    ])
}

/// The NodeManagers page (`/api/nodemanagers`).
pub fn nodemanagers_page(doc: &Value) -> String {
    let nms = arr(&doc["nodemanagers"]);
    let count = |phase: &str| nms.iter().filter(|n| n["phase"] == phase).count();
    let rows: Vec<Vec<String>> = nms
        .iter()
        .map(|n| {
            let id = s(&n["taskId"]);
            vec![
                link(&nm_href(id), id),
                state(s(&n["phase"])),
                esc(s(&n["profile"])),
                n["hostname"]
                    .as_str()
                    .map_or_else(|| muted("not placed"), esc),
                n["agentId"].as_str().map_or_else(|| muted("-"), esc),
                n["yarnState"]
                    .as_str()
                    .map_or_else(|| muted("not registered"), state),
                esc(&text(&n["yarnContainers"])),
                esc(&text(&n["whyPending"])),
            ]
        })
        .collect();
    let mut body = cards(&[
        ("NodeManagers", nms.len().to_string()),
        ("Active", count("ACTIVE").to_string()),
        ("Pending", count("PENDING").to_string()),
        (
            "Subscribed",
            if doc["subscribed"] == true {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
    ]);
    body.push_str("<h2>NodeManagers</h2>");
    body.push_str(&table_with_empty(
        &[
            "Task",
            "State",
            "Profile",
            "Host",
            "Agent",
            "YARN state",
            "Containers#",
            "Why pending",
        ],
        &rows,
        "no NodeManagers (flex up: PUT /api/cluster/flexup)",
    ));
    let fgs = arr(&doc["fineGrained"]);
    if !fgs.is_empty() {
        let rows: Vec<Vec<String>> = fgs
            .iter()
            .map(|n| {
                vec![
                    esc(s(&n["hostname"])),
                    esc(s(&n["agentId"])),
                    esc(&text(&n["heldCpus"])),
                    esc(&text(&n["heldMem"])),
                    arr(&n["placeholders"]).len().to_string(),
                ]
            })
            .collect();
        body.push_str("<h2>Fine-grained nodes</h2>");
        body.push_str(&table_with_empty(
            &[
                "Host",
                "Agent",
                "Held CPUs#",
                "Held memory (MB)#",
                "Containers#",
            ],
            &rows,
            "none",
        ));
    }
    body.push_str("<h2>YARN's demand</h2>");
    body.push_str(&demand_cards(&doc["yarn"]["metrics"]));
    let errors: Vec<String> = arr(&doc["yarn"]["errors"])
        .iter()
        .map(|e| format!("<li>{}</li>", esc(s(e))))
        .collect();
    if !errors.is_empty() {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\">The ResourceManager could not be read:<ul>{}</ul></div>",
            errors.concat()
        ));
    }
    SITE.page("/ui", "NodeManagers", &body)
}

/// One NodeManager's page, or `None` when the bridge has no such task.
pub fn nodemanager_page(doc: &Value, task_id: &str) -> Option<String> {
    let n = arr(&doc["nodemanagers"])
        .iter()
        .find(|n| n["taskId"] == task_id)?;
    let host = n["hostname"].as_str();
    let ports = &n["ports"];
    let mut pairs: Vec<(&str, String)> = vec![
        ("State", state(s(&n["phase"]))),
        (
            "Profile",
            link(
                &format!("/ui/profiles#profile-{}", url_encode(s(&n["profile"]))),
                s(&n["profile"]),
            ),
        ),
        ("Host", host.map_or_else(|| muted("not placed yet"), esc)),
        (
            "Agent",
            n["agentId"].as_str().map_or_else(|| muted("-"), esc),
        ),
        (
            "YARN state",
            n["yarnState"]
                .as_str()
                .map_or_else(|| muted("not registered with YARN"), state),
        ),
        ("YARN containers", esc(&text(&n["yarnContainers"]))),
    ];
    if let Some(why) = n["whyPending"].as_str() {
        pairs.push(("Why pending", esc(why)));
    }
    let constraints: Vec<String> = arr(&n["constraints"]).iter().map(|c| esc(s(c))).collect();
    pairs.push((
        "Constraints",
        if constraints.is_empty() {
            muted("none")
        } else {
            constraints.join("; ")
        },
    ));
    if ports.is_object() {
        pairs.push((
            "Ports",
            esc(&format!(
                "rpc {}, localizer {}, web {}, shuffle {}",
                text(&ports["rpc"]),
                text(&ports["localizer"]),
                text(&ports["webapp"]),
                text(&ports["shuffle"])
            )),
        ));
        if let (Some(h), Some(p)) = (host, ports["webapp"].as_u64()) {
            pairs.push((
                "NodeManager web UI",
                link(&format!("http://{h}:{p}/"), &format!("http://{h}:{p}/")),
            ));
        }
    }
    Some(SITE.page("/ui", &format!("NodeManager {task_id}"), &kv(&pairs)))
}

/// The profiles page (`/api/profiles`), with how many NodeManagers of each
/// the bridge has (`/api/nodemanagers`).
pub fn profiles_page(profiles: &Value, nms: &Value) -> String {
    let overhead = &profiles["nodemanager"];
    let cpus = overhead["cpus"].as_f64().unwrap_or(0.0);
    let jvm = overhead["jvmMaxMemoryMB"].as_f64().unwrap_or(0.0);
    let rows: Vec<Vec<String>> = profiles["profiles"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, p)| {
            let count = arr(&nms["nodemanagers"])
                .iter()
                .filter(|n| n["profile"] == name.as_str())
                .count();
            let cpu = p["cpu"].as_f64().unwrap_or(0.0);
            let mem = p["mem"].as_f64().unwrap_or(0.0);
            vec![
                format!("<span id=\"profile-{0}\">{0}</span>", esc(name)),
                esc(&format_number(cpu)),
                esc(&format_number(mem)),
                esc(&format_number(cpu + cpus)),
                esc(&format_number(mem + jvm)),
                count.to_string(),
            ]
        })
        .collect();
    let mut body = table_with_empty(
        &[
            "Profile",
            "YARN vcores#",
            "YARN memory (MB)#",
            "Task CPUs#",
            "Task memory (MB)#",
            "NodeManagers#",
        ],
        &rows,
        "no profiles",
    );
    body.push_str(&format!(
        "<p class=\"muted\">A NodeManager's task takes its profile plus the NodeManager's own {} CPUs and {} MB (its JVM){}.</p>",
        esc(&format_number(cpus)),
        esc(&format_number(jvm)),
        if overhead["onePerHost"] == true {
            "; at most one NodeManager runs per host"
        } else {
            ""
        }
    ));
    SITE.page("/ui/profiles", "Profiles", &body)
}

/// The autoscaler page (`/api/autoscaler`: policies, decisions newest
/// first).
pub fn autoscaler_page(doc: &Value, now: i64) -> String {
    let policies: Vec<Vec<String>> = arr(&doc["policies"])
        .iter()
        .map(|p| {
            vec![
                link(
                    &format!("/ui/profiles#profile-{}", url_encode(s(&p["profile"]))),
                    s(&p["profile"]),
                ),
                esc(&text(&p["min"])),
                esc(&text(&p["max"])),
                esc(&text(&p["scaleUpFactor"])),
                esc(&text(&p["scaleDownFactor"])),
                esc(&format!(
                    "{}s / {}s",
                    text(&p["scaleUpCooldownSecs"]),
                    text(&p["scaleDownCooldownSecs"])
                )),
                esc(&format!("{}s", text(&p["idleBeforeScaleDownSecs"]))),
            ]
        })
        .collect();
    let decisions: Vec<Vec<String>> = arr(&doc["decisions"])
        .iter()
        .map(|d| {
            let m = &d["metrics"];
            let instances = match d["instances"].as_u64() {
                Some(n) => n.to_string(),
                None => "-".into(),
            };
            vec![
                when(d["atMs"].as_i64(), now),
                esc(s(&d["profile"])),
                state(s(&d["action"])),
                esc(&instances),
                esc(&text(&d["nodemanagers"])),
                esc(&text(&m["pendingMB"])),
                esc(&text(&m["pendingVirtualCores"])),
                esc(&text(&m["containersPending"])),
                esc(&text(&m["availableMB"])),
                esc(&text(&m["allocatedMB"])),
                esc(s(&d["reason"])),
            ]
        })
        .collect();
    let body = format!(
        "<h2>Policies</h2>{}<h2>Decisions</h2><p class=\"muted\">Newest first; the demand is YARN's as the \
         autoscaler read it (clusterMetrics). A decision repeating the previous HOLD is not \
         listed again.</p>{}",
        table_with_empty(
            &[
                "Profile",
                "Min#",
                "Max#",
                "Scale-up factor#",
                "Scale-down factor#",
                "Cooldowns (up / down)",
                "Idle before scale-down",
            ],
            &policies,
            "no autoscaling policies (--autoscale): flex by hand only",
        ),
        table_with_empty(
            &[
                "When",
                "Profile",
                "Decision",
                "Instances#",
                "NodeManagers#",
                "Pending MB#",
                "Pending vcores#",
                "Containers pending#",
                "Available MB#",
                "Allocated MB#",
                "Reason",
            ],
            &decisions,
            "no decisions yet",
        )
    );
    SITE.page("/ui/autoscaler", "Autoscaler", &body)
}

async fn ask(inputs: &Inputs, make: fn(Reply<Value>) -> Input) -> Result<Value, ApiError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::unavailable("the bridge is shutting down");
    inputs.send(make(tx)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

fn failed(e: ApiError) -> Response {
    SITE.error(e.status, "Unavailable", &e.message)
}

async fn nodemanagers(State(inputs): State<Inputs>) -> Response {
    match ask(&inputs, Input::NodeManagers).await {
        Ok(doc) => html(200, nodemanagers_page(&doc)),
        Err(e) => failed(e),
    }
}

async fn nodemanager(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    match ask(&inputs, Input::NodeManagers).await {
        Ok(doc) => match nodemanager_page(&doc, &id) {
            Some(page) => html(200, page),
            None => SITE.not_found(&format!(
                "The bridge has no NodeManager {id:?} (it may have been flexed down)."
            )),
        },
        Err(e) => failed(e),
    }
}

async fn profiles(
    State(inputs): State<Inputs>,
    Extension(config): Extension<Arc<Value>>,
) -> Response {
    let profiles = serde_json::json!({
        "profiles": config.get("profiles").cloned().unwrap_or(Value::Null),
        "nodemanager": config.get("nodemanager").cloned().unwrap_or(Value::Null),
    });
    match ask(&inputs, Input::NodeManagers).await {
        Ok(nms) => html(200, profiles_page(&profiles, &nms)),
        Err(e) => failed(e),
    }
}

async fn autoscaler(State(inputs): State<Inputs>) -> Response {
    match ask(&inputs, Input::Autoscaler).await {
        Ok(doc) => html(200, autoscaler_page(&doc, now_ms())),
        Err(e) => failed(e),
    }
}

/// The pages' routes (state: the actor's inputs; the configuration's JSON
/// as an `Extension<Arc<Value>>`).
pub(crate) fn routes() -> Router<Inputs> {
    Router::new()
        .route("/ui", get(nodemanagers))
        .route("/ui/nodemanagers/{id}", get(nodemanager))
        .route("/ui/profiles", get(profiles))
        .route("/ui/autoscaler", get(autoscaler))
        .merge(SITE.common_routes(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_490_763_000;

    fn nms() -> Value {
        json!({
            "subscribed": true,
            "frameworkId": "fw",
            "nodemanagers": [
                {"taskId": "nm.small.1", "profile": "small", "phase": "ACTIVE",
                 "hostname": "yarn-node-1", "agentId": "agent-1", "constraints": [],
                 "ports": {"rpc": 31000, "localizer": 31001, "webapp": 31002, "shuffle": 31003},
                 "yarnState": "RUNNING", "yarnContainers": 1, "whyPending": null},
                {"taskId": "nm.<script>.2", "profile": "<script>alert(1)</script>",
                 "phase": "PENDING", "hostname": null, "agentId": null,
                 "constraints": ["hostname LIKE <b>"], "ports": null, "yarnState": null,
                 "yarnContainers": null, "whyPending": "no offer <fits>"}
            ],
            "fineGrained": [],
            "yarn": {"metrics": {"pendingMB": 4096.0, "pendingVirtualCores": 2.0,
                                 "containersPending": 2.0, "availableMB": 0.0,
                                 "allocatedMB": 1024.0, "activeNodes": 1.0},
                     "errors": ["cannot read <nodes>"]}
        })
    }

    #[test]
    fn the_nodemanagers_page_shows_each_with_its_state_and_escapes() {
        let html = nodemanagers_page(&nms());
        assert!(
            html.contains("<a href=\"/ui/nodemanagers/nm.small.1\">nm.small.1</a>"),
            "{html}"
        );
        assert!(html.contains("yarn-node-1") && html.contains("agent-1"));
        assert!(html.contains("class=\"state good\">ACTIVE"), "{html}");
        assert!(html.contains("PENDING") && html.contains("no offer &lt;fits&gt;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("/ui/nodemanagers/nm.%3Cscript%3E.2"),
            "{html}"
        );
        assert!(html.contains("cannot read &lt;nodes&gt;"));
        assert!(html.contains("4096"));
    }

    #[test]
    fn one_nodemanager_or_none() {
        let html = nodemanager_page(&nms(), "nm.small.1").expect("known");
        assert!(html.contains("<h1>NodeManager nm.small.1</h1>"));
        assert!(html.contains("http://yarn-node-1:31002/"));
        let pending = nodemanager_page(&nms(), "nm.<script>.2").expect("known");
        assert!(pending.contains("hostname LIKE &lt;b&gt;"), "{pending}");
        assert!(nodemanager_page(&nms(), "nm.nobody").is_none());
    }

    #[test]
    fn profiles_and_decisions_with_their_demand() {
        let profiles = json!({"profiles": {"small": {"cpu": 2.0, "mem": 2048.0},
                                           "<x>": {"cpu": 1.0, "mem": 1.0}},
                              "nodemanager": {"cpus": 0.2, "jvmMaxMemoryMB": 1024.0,
                                              "onePerHost": true}});
        let html = profiles_page(&profiles, &nms());
        assert!(html.contains("2.2") && html.contains("3072"), "{html}");
        assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
        let doc = json!({
            "policies": [{"profile": "small", "min": 0, "max": 2, "scaleUpFactor": 1.0,
                          "scaleDownFactor": 1.0, "scaleUpCooldownSecs": 1,
                          "scaleDownCooldownSecs": 2, "idleBeforeScaleDownSecs": 2}],
            "decisions": [{"atMs": NOW - 3000, "profile": "small", "action": "FLEX_UP",
                           "instances": 2, "reason": "pendingMB 4096 <now>",
                           "metrics": {"pendingMB": 4096.0, "pendingVirtualCores": 2.0,
                                       "containersPending": 3.0, "availableMB": 0.0,
                                       "allocatedMB": 0.0, "activeNodes": 0.0},
                           "nodemanagers": 0}]
        });
        let html = autoscaler_page(&doc, NOW);
        assert!(html.contains("FLEX_UP") && html.contains("pendingMB 4096 &lt;now&gt;"));
        assert!(html.contains("<td class=\"num\">4096</td>"), "{html}");
        assert!(html.contains("<td class=\"num\">3</td>"), "{html}");
        assert!(html.contains("(3s ago)"));
    }

    #[tokio::test]
    async fn an_unknown_nodemanager_is_a_404_page() {
        let (tx, mut rx) = mpsc::channel::<Input>(4);
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if let Input::NodeManagers(r) = input {
                    let _ = r.send(Ok(nms()));
                }
            }
        });
        let r = nodemanager(State(tx.clone()), Path("nm.<nobody>".into())).await;
        assert_eq!(r.status(), 404);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("nm.&lt;nobody&gt;"));
        let r = nodemanager(State(tx), Path("nm.small.1".into())).await;
        assert_eq!(r.status(), 200);
    }
}
