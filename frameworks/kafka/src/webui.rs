//! The scheduler's web pages, rendered on the server from the same
//! broker documents `/api/broker/list` serves (the actor's published
//! snapshot), re-rendered every few seconds in the browser:
//!
//! * `/ui` — the brokers: state, `host:port`, agent, resources, volume;
//! * `/ui/brokers/{id}` — one broker: its settings, task, reservation and
//!   volume, failover and stickiness;
//! * `/ui/topics` — the topics the running brokers report (Kafka's
//!   metadata, as `/api/topic/list`), per broker when each broker is a
//!   cluster of its own (tansu);
//! * `GET /` — a redirect to `/ui`.

use corral_webui::json::{arr, s, text};
use corral_webui::muted;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use corral_sdk::webui::{html, now_ms, when, Site};
use corral_webui::{cards, esc, kv, link, state, table_with_empty, url_encode};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Snapshot;

/// The pages' brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral Kafka",
    home: "/ui",
    nav: &[("/ui", "Brokers"), ("/ui/topics", "Topics")],
};

/// How long the topics page waits for the brokers' metadata.
const TOPICS_WAIT: Duration = Duration::from_secs(5);

fn broker_href(id: &str) -> String {
    format!("/ui/brokers/{}", url_encode(id))
}

/// The brokers as `/api/broker/list` shows them.
pub fn brokers_json(s: &Snapshot, now: i64) -> Vec<Value> {
    s.brokers
        .values()
        .map(|b| {
            let mut j = b.to_json(now);
            if let Some(why) = s.why.get(&b.id) {
                j["whyPending"] = json!(why);
            }
            j
        })
        .collect()
}

/// A broker's state word: mesos/kafka's text, its first word marked.
fn broker_state(b: &Value) -> String {
    let full = s(&b["state"]);
    let word = full.split([' ', ',']).next().unwrap_or(full);
    let rest = &full[word.len()..];
    format!("{}{}", state(word), esc(rest))
}

fn resources(b: &Value) -> String {
    format!(
        "{} cpus, {} MB (heap {} MB)",
        text(&b["cpus"]),
        text(&b["mem"]),
        text(&b["heap"])
    )
}

fn volume(b: &Value) -> String {
    match b["volume"].as_str() {
        Some(v) => esc(&format!("{v} ({} MB)", text(&b["disk"]))),
        None => muted(&format!("none yet ({} MB when placed)", text(&b["disk"]))),
    }
}

/// The brokers page.
pub fn brokers_page(brokers: &[Value], snapshot: &Snapshot) -> String {
    let running = brokers
        .iter()
        .filter(|b| b["task"]["state"] == "running")
        .count();
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|b| {
            let id = s(&b["id"]);
            let agent = b["task"]["slaveId"]
                .as_str()
                .or_else(|| b["reservation"]["agentId"].as_str());
            let host = b["task"]["hostname"]
                .as_str()
                .or_else(|| b["reservation"]["hostname"].as_str());
            vec![
                link(&broker_href(id), id),
                broker_state(b),
                if b["active"] == true { "yes" } else { "no" }.into(),
                b["task"]["endpoint"]
                    .as_str()
                    .map_or_else(|| muted("-"), esc),
                host.map_or_else(|| muted("-"), esc),
                agent.map_or_else(|| muted("-"), esc),
                esc(&resources(b)),
                volume(b),
                esc(&text(&b["whyPending"])),
            ]
        })
        .collect();
    let body = format!(
        "{}<h2>Brokers</h2>{}",
        cards(&[
            ("Brokers", brokers.len().to_string()),
            ("Running", running.to_string()),
            ("Engine", snapshot.engine.to_string()),
            (
                "Subscribed",
                if snapshot.subscribed { "yes" } else { "no" }.to_string(),
            ),
        ]),
        table_with_empty(
            &[
                "Broker",
                "State",
                "Active",
                "Endpoint (host:port)",
                "Host",
                "Agent",
                "Resources",
                "Volume",
                "Why waiting",
            ],
            &rows,
            "no brokers (corral kafka broker add 0)",
        )
    );
    SITE.page("/ui", "Brokers", &body)
}

/// One broker's page.
pub fn broker_page(b: &Value, now: i64) -> String {
    let id = s(&b["id"]);
    let mut pairs: Vec<(&str, String)> = vec![
        ("State", broker_state(b)),
        (
            "Active",
            if b["active"] == true { "yes" } else { "no" }.into(),
        ),
        ("Resources", esc(&resources(b))),
        ("Volume", volume(b)),
        ("Port", esc(&text(&b["port"]))),
        ("Constraints", esc(&text(&b["constraints"]))),
        ("Options", esc(&text(&b["options"]))),
    ];
    if b["needsRestart"] == true {
        pairs.push(("Note", "modified while running: restart it to apply".into()));
    }
    if let Some(why) = b["whyPending"].as_str() {
        pairs.push(("Why waiting", esc(why)));
    }
    let f = &b["failover"];
    pairs.push((
        "Failover",
        esc(&format!(
            "delay {}, at most {}{}; {} failure(s) in a row",
            text(&f["delay"]),
            text(&f["maxDelay"]),
            f["maxTries"]
                .as_u64()
                .map(|m| format!(", {m} tries"))
                .unwrap_or_default(),
            f["failures"].as_u64().unwrap_or(0)
        )),
    ));
    if let Some(t) = f["failureTime"].as_i64() {
        pairs.push(("Last failure", when(Some(t), now)));
    }
    let st = &b["stickiness"];
    pairs.push((
        "Stickiness",
        esc(&format!(
            "{} on {}",
            text(&st["period"]),
            st["hostname"].as_str().unwrap_or("no host yet")
        )),
    ));
    let mut body = kv(&pairs);
    body.push_str("<h2>Task</h2>");
    let t = &b["task"];
    if t.is_object() {
        let attrs: Vec<String> = t["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{}={}", esc(k), esc(&text(v))))
            .collect();
        body.push_str(&kv(&[
            ("Task", esc(s(&t["id"]))),
            ("State", state(s(&t["state"]))),
            ("Endpoint (host:port)", esc(s(&t["endpoint"]))),
            ("Host", esc(s(&t["hostname"]))),
            ("Agent", esc(s(&t["slaveId"]))),
            ("Agent attributes", attrs.join(", ")),
        ]));
    } else {
        body.push_str(
            "<p class=\"muted\">No task: the broker is stopped or waits for an offer.</p>",
        );
    }
    body.push_str("<h2>Reservation and volume</h2>");
    let r = &b["reservation"];
    if r.is_object() {
        let ports: Vec<String> = arr(&r["ports"]).iter().map(text).collect();
        body.push_str(&kv(&[
            ("Agent", esc(s(&r["agentId"]))),
            ("Host", esc(s(&r["hostname"]))),
            ("Address", esc(s(&r["address"]))),
            ("Volume (persistence id)", esc(s(&r["persistenceId"]))),
            ("Reserved ports", esc(&ports.join(", "))),
        ]));
    } else {
        body.push_str(
            "<p class=\"muted\">Nothing reserved yet: the broker has not been placed.</p>",
        );
    }
    SITE.page("/ui", &format!("Broker {id}"), &body)
}

/// The topics each target reports: `(broker, bootstrap, topics or why
/// not)`, the broker `None` when all running brokers are one cluster.
type TopicsOf = Vec<(Option<String>, String, Result<Vec<Value>, String>)>;

/// The topics page.
pub fn topics_page(found: &TopicsOf) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut problems = String::new();
    for (broker, bootstrap, result) in found {
        match result {
            Ok(topics) => {
                for t in topics {
                    let parts = t["partitions"].as_object();
                    let replicas: Vec<String> = parts
                        .into_iter()
                        .flatten()
                        .map(|(p, r)| format!("{}: {}", esc(p), esc(&text(r))))
                        .collect();
                    rows.push(vec![
                        esc(s(&t["name"])),
                        broker
                            .as_deref()
                            .map_or_else(|| muted("all"), |b| link(&broker_href(b), b)),
                        esc(bootstrap),
                        parts.map_or(0, |p| p.len()).to_string(),
                        replicas.join("; "),
                    ]);
                }
            }
            Err(e) => problems.push_str(&format!(
                "<li>{}: {}</li>",
                esc(&broker.as_deref().map_or_else(
                    || bootstrap.clone(),
                    |b| format!("broker {b} ({bootstrap})")
                )),
                esc(e)
            )),
        }
    }
    let mut body = String::new();
    if found.is_empty() {
        body.push_str(
            "<p class=\"notice\">No broker runs: start brokers to list their topics (corral kafka broker start).</p>",
        );
    }
    if !problems.is_empty() {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\">Some brokers did not answer:<ul>{problems}</ul></div>"
        ));
    }
    body.push_str(&table_with_empty(
        &[
            "Topic",
            "Broker",
            "Bootstrap",
            "Partitions#",
            "Replicas by partition",
        ],
        &rows,
        "no topics",
    ));
    SITE.page("/ui/topics", "Topics", &body)
}

async fn brokers(State(snap): State<watch::Receiver<Arc<Snapshot>>>) -> Response {
    let s = snap.borrow().clone();
    html(200, brokers_page(&brokers_json(&s, now_ms()), &s))
}

async fn broker(
    State(snap): State<watch::Receiver<Arc<Snapshot>>>,
    Path(id): Path<String>,
) -> Response {
    let s = snap.borrow().clone();
    let now = now_ms();
    let found = id
        .parse::<u32>()
        .ok()
        .and_then(|n| s.brokers.get(&n))
        .map(|b| {
            let mut j = b.to_json(now);
            if let Some(why) = s.why.get(&b.id) {
                j["whyPending"] = json!(why);
            }
            j
        });
    match found {
        Some(b) => html(200, broker_page(&b, now)),
        None => SITE.not_found(&format!("There is no broker {id}.")),
    }
}

async fn topics(State(snap): State<watch::Receiver<Arc<Snapshot>>>) -> Response {
    let s = snap.borrow().clone();
    let running: Vec<(u32, String)> = s
        .brokers
        .values()
        .filter_map(|b| b.endpoint().map(|e| (b.id, e.to_string())))
        .collect();
    let targets: Vec<(Option<String>, String)> =
        crate::api::bootstrap_targets(s.independent, running)
            .into_iter()
            .map(|(id, e)| (id.map(|i| i.to_string()), e))
            .collect();
    let mut found: TopicsOf = Vec::new();
    for (broker, bootstrap) in targets {
        let md = tokio::time::timeout(TOPICS_WAIT, crate::topics::metadata(&bootstrap)).await;
        let result = match md {
            Ok(Ok(md)) => Ok(md
                .iter()
                .map(|(name, parts)| crate::topics::topic_json(name, parts, &BTreeMap::new()))
                .collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", TOPICS_WAIT.as_secs())),
        };
        found.push((broker, bootstrap, result));
    }
    html(200, topics_page(&found))
}

/// The pages' routes, answered by the leader only (a standby redirects to
/// it).
pub fn router(snapshot: watch::Receiver<Arc<Snapshot>>, gate: corral_sdk::gate::Gate) -> Router {
    Router::new()
        .route("/ui", get(brokers))
        .route("/ui/brokers/{id}", get(broker))
        .route("/ui/topics", get(topics))
        .merge(SITE.common_routes(true))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Broker, Reservation, Task};

    const NOW: i64 = 1_796_490_763_000;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            engine: "tansu",
            subscribed: true,
            independent: true,
            ..Default::default()
        };
        let mut b0 = Broker::new(0);
        b0.active = true;
        b0.cpus = 0.2;
        b0.mem = 128;
        b0.options
            .insert("x".into(), "<script>alert(1)</script>".into());
        b0.task = Some(Task {
            id: "kafka-0-abc".into(),
            slave_id: "agent-1".into(),
            executor_id: "kafka-0-abc".into(),
            hostname: "node-1".into(),
            endpoint: "127.0.0.1:24100".into(),
            state: "running".into(),
            attributes: [("node".to_string(), "<b>n1</b>".to_string())].into(),
            running_since: Some(NOW - 1000),
            kill_sent: None,
        });
        b0.reservation = Some(Reservation {
            agent_id: "agent-1".into(),
            hostname: "node-1".into(),
            address: "127.0.0.1".into(),
            persistence_id: "kafka-broker-0".into(),
            ports: vec![24100],
            agent_port: None,
        });
        s.brokers.insert(0, b0);
        let mut b1 = Broker::new(1);
        b1.active = true;
        s.brokers.insert(1, b1);
        s.why.insert(1, "no offer has <2048 MB>".into());
        s
    }

    #[test]
    fn the_brokers_page_shows_state_endpoint_agent_resources_and_volume() {
        let s = snapshot();
        let html = brokers_page(&brokers_json(&s, NOW), &s);
        assert!(html.contains("<a href=\"/ui/brokers/0\">0</a>"), "{html}");
        assert!(html.contains("class=\"state good\">running"), "{html}");
        assert!(html.contains("127.0.0.1:24100") && html.contains("agent-1"));
        assert!(html.contains("0.2 cpus, 128 MB"));
        assert!(html.contains("kafka-broker-0 (1024 MB)"), "{html}");
        assert!(html.contains("no offer has &lt;2048 MB&gt;"));
        assert!(html.contains("tansu"));
    }

    #[test]
    fn a_broker_page_escapes_what_users_set() {
        let s = snapshot();
        let b = s.brokers[&0].to_json(NOW);
        let html = broker_page(&b, NOW);
        assert!(html.contains("<h1>Broker 0</h1>"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("node=&lt;b&gt;n1&lt;/b&gt;"), "{html}");
        assert!(html.contains("kafka-0-abc"));
    }

    #[test]
    fn topics_per_broker_and_brokers_that_did_not_answer() {
        let parts: BTreeMap<i32, Vec<i32>> = [(0, vec![111, 111]), (1, vec![111])].into();
        let found: TopicsOf = vec![
            (
                Some("0".into()),
                "127.0.0.1:24100".into(),
                Ok(vec![crate::topics::topic_json(
                    "events<1>",
                    &parts,
                    &BTreeMap::new(),
                )]),
            ),
            (
                Some("1".into()),
                "127.0.0.1:24200".into(),
                Err("timed out <x>".into()),
            ),
        ];
        let html = topics_page(&found);
        assert!(html.contains("events&lt;1&gt;") && !html.contains("events<1>"));
        assert!(html.contains("0: 111, 111; 1: 111"), "{html}");
        assert!(
            html.contains("broker 1 (127.0.0.1:24200): timed out &lt;x&gt;"),
            "{html}"
        );
        assert!(topics_page(&Vec::new()).contains("No broker runs"));
    }

    #[tokio::test]
    async fn an_unknown_broker_is_a_404_page() {
        let (_tx, rx) = watch::channel(Arc::new(snapshot()));
        let r = broker(State(rx.clone()), Path("7".into())).await;
        assert_eq!(r.status(), 404);
        let r = broker(State(rx.clone()), Path("<script>".into())).await;
        assert_eq!(r.status(), 404);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("no broker &lt;script&gt;"));
        assert_eq!(broker(State(rx), Path("0".into())).await.status(), 200);
    }
}
