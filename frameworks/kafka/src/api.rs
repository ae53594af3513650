//! mesos/kafka's REST API: `/api/broker/<cmd>?broker=<expr>&...` (add,
//! update, start, stop, restart, remove, list) and
//! `/api/topic/<cmd>?topic=<expr>&...` (add, list, update), parameters in
//! the query string or a form body (GET or POST), JSON answers with
//! mesos/kafka's field names, a `400` naming the parameter for bad input
//! (nothing changes then); plus `/health`, Prometheus `/metrics` and the
//! web pages under `/ui` ([`crate::webui`]). Only the leader answers
//! `/api/...` and `/ui...` (a standby redirects to it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use corral_sdk::shell::ApiError;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::broker::{Broker, BrokerParams};
use crate::expr::{expand_topics, parse_map, parse_period, validate_topic, BrokerExpr};
use crate::topics::{self, NewTopicSpec};

/// Largest form body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest wait a `timeout` may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the actor publishes after every input: what the API reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The brokers.
    pub brokers: BTreeMap<u32, Broker>,
    /// Why each waiting broker is not placed yet.
    pub why: BTreeMap<u32, String>,
    /// The FrameworkID, once subscribed.
    pub framework_id: Option<String>,
    /// Whether the scheduler is subscribed now.
    pub subscribed: bool,
    /// Whether every broker is a cluster of its own (tansu).
    pub independent: bool,
    /// `tansu` or `kafka`.
    pub engine: &'static str,
    /// Counters for `/metrics`.
    pub counters: BTreeMap<&'static str, u64>,
}

/// A broker command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerCmd {
    /// `add`.
    Add,
    /// `update`.
    Update,
    /// `start`.
    Start,
    /// `stop`.
    Stop,
    /// `restart`.
    Restart,
    /// `remove`.
    Remove,
}

/// A broker command for the actor.
#[derive(Debug)]
pub struct BrokerCall {
    /// Which.
    pub cmd: BrokerCmd,
    /// The broker expression.
    pub expr: String,
    /// add/update settings.
    pub params: BrokerParams,
    /// The ids selected, or the refusal.
    pub reply: oneshot::Sender<Result<Vec<u32>, ApiError>>,
}

#[derive(Clone)]
struct Api {
    calls: mpsc::Sender<BrokerCall>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    gate: corral_sdk::gate::Gate,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The query string and a form body as one map; a parameter given twice
/// is refused.
fn params(query: Option<&str>, body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        pairs.extend(
            form_decode(q.as_bytes())
                .map_err(|e| ApiError::bad(format!("invalid query string: {e}")))?,
        );
    }
    if !body.is_empty() {
        pairs.extend(
            form_decode(body).map_err(|e| ApiError::bad(format!("invalid form body: {e}")))?,
        );
    }
    for (k, v) in pairs {
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad(format!("{k}: given more than once")));
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` pairs (`+` a space, `%XX` a byte).
fn form_decode(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn decode(part: &[u8]) -> Result<String, String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| "a '%' not followed by two hex digits".to_string())?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
    }
    let mut pairs = Vec::new();
    for item in text.split(|b| *b == b'&').filter(|i| !i.is_empty()) {
        let (k, v) = match item.iter().position(|b| *b == b'=') {
            Some(at) => (&item[..at], &item[at + 1..]),
            None => (item, &item[..0]),
        };
        pairs.push((decode(k)?, decode(v)?));
    }
    Ok(pairs)
}

async fn read_params(
    request: axum::extract::Request,
) -> Result<BTreeMap<String, String>, ApiError> {
    let query = request.uri().query().map(str::to_string);
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::with_status(413, format!("the body is larger than {MAX_BODY} bytes"))
        })?;
    params(query.as_deref(), &body)
}

trait WithStatus {
    fn with_status(status: u16, message: String) -> Self;
}

impl WithStatus for ApiError {
    fn with_status(status: u16, message: String) -> Self {
        ApiError { status, message }
    }
}

fn only(query: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(format!(
            "{k}: unknown parameter (known: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn timeout_of(query: &BTreeMap<String, String>, default: Duration) -> Result<Duration, ApiError> {
    match query.get("timeout") {
        None => Ok(default),
        Some(t) => {
            let ms = parse_period(t).map_err(|e| ApiError::bad(format!("timeout: {e}")))?;
            let d = Duration::from_millis(ms);
            if d > MAX_TIMEOUT {
                return Err(ApiError::bad("timeout: at most 30m"));
            }
            Ok(d)
        }
    }
}

fn brokers_json(s: &Snapshot, ids: &[u32]) -> Vec<Value> {
    let now = now_ms();
    ids.iter()
        .filter_map(|id| s.brokers.get(id))
        .map(|b| {
            let mut j = b.to_json(now);
            if let Some(why) = s.why.get(&b.id) {
                j["whyPending"] = json!(why);
            }
            j
        })
        .collect()
}

async fn broker(
    State(api): State<Api>,
    Path(cmd): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let query = read_params(request).await?;
    if cmd == "list" {
        only(&query, &["broker"])?;
        let s = api.snapshot.borrow().clone();
        let expr = query.get("broker").map_or("*", String::as_str);
        let e = BrokerExpr::parse(expr).map_err(|m| ApiError::bad(format!("broker: {m}")))?;
        let existing: BTreeSet<u32> = s.brokers.keys().copied().collect();
        let ids: Vec<u32> = e
            .select(&existing, |id| {
                let t = s.brokers.get(&id)?.task.as_ref()?;
                let mut a = t.attributes.clone();
                a.insert("hostname".into(), t.hostname.clone());
                Some(a)
            })
            .into_iter()
            .filter(|id| s.brokers.contains_key(id))
            .collect();
        return Ok(Json(
            json!({"brokers": brokers_json(&s, &ids), "frameworkId": s.framework_id}),
        ));
    }
    let cmd = match cmd.as_str() {
        "add" => BrokerCmd::Add,
        "update" => BrokerCmd::Update,
        "start" => BrokerCmd::Start,
        "stop" => BrokerCmd::Stop,
        "restart" => BrokerCmd::Restart,
        "remove" => BrokerCmd::Remove,
        other => {
            return Err(ApiError::not_found(format!(
                "no broker command {other:?} (add, update, start, stop, restart, remove, list)"
            )))
        }
    };
    let expr = query
        .get("broker")
        .cloned()
        .ok_or_else(|| ApiError::bad("broker: required (examples: 0, 0,1, 0..2, *)"))?;
    let params = match cmd {
        BrokerCmd::Add | BrokerCmd::Update => BrokerParams::parse(&query).map_err(ApiError::bad)?,
        BrokerCmd::Start | BrokerCmd::Restart => {
            only(&query, &["broker", "timeout"])?;
            BrokerParams::default()
        }
        BrokerCmd::Stop => {
            only(&query, &["broker", "timeout", "force"])?;
            BrokerParams::default()
        }
        BrokerCmd::Remove => {
            only(&query, &["broker"])?;
            BrokerParams::default()
        }
    };
    let wait = match cmd {
        BrokerCmd::Start | BrokerCmd::Stop => Some(timeout_of(&query, Duration::from_secs(60))?),
        BrokerCmd::Restart => Some(timeout_of(&query, Duration::from_secs(120))?),
        _ => None,
    };
    let before = api.snapshot.borrow().clone();
    let (tx, rx) = oneshot::channel();
    api.calls
        .send(BrokerCall {
            cmd,
            expr,
            params,
            reply: tx,
        })
        .await
        .map_err(|_| ApiError::unavailable("the scheduler is shutting down"))?;
    let ids = rx
        .await
        .map_err(|_| ApiError::unavailable("the scheduler is shutting down"))??;
    let old_tasks: BTreeMap<u32, Option<String>> = ids
        .iter()
        .map(|id| {
            (
                *id,
                before
                    .brokers
                    .get(id)
                    .and_then(|b| b.task.as_ref().map(|t| t.id.clone())),
            )
        })
        .collect();
    let Some(wait) = wait else {
        let s = api.snapshot.borrow().clone();
        return Ok(Json(match cmd {
            BrokerCmd::Remove => json!({"ids": ids.iter().map(u32::to_string).collect::<Vec<_>>()}),
            _ => json!({"brokers": brokers_json(&s, &ids)}),
        }));
    };
    let done = |s: &Snapshot| {
        ids.iter().all(|id| {
            let task = s.brokers.get(id).and_then(|b| b.task.as_ref());
            match cmd {
                BrokerCmd::Stop => task.is_none(),
                BrokerCmd::Restart => task.is_some_and(|t| {
                    t.state == "running"
                        && Some(&t.id) != old_tasks.get(id).and_then(Option::as_ref)
                }),
                _ => task.is_some_and(|t| t.state == "running"),
            }
        })
    };
    let (word, stage) = match cmd {
        BrokerCmd::Stop => ("stopped", "stop"),
        BrokerCmd::Restart => ("restarted", "start"),
        _ => ("started", "start"),
    };
    if wait.is_zero() {
        let s = api.snapshot.borrow().clone();
        return Ok(Json(
            json!({"status": "scheduled", "brokers": brokers_json(&s, &ids)}),
        ));
    }
    let mut rx = api.snapshot.clone();
    let waited = tokio::time::timeout(wait, async {
        loop {
            if done(&rx.borrow_and_update()) {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);
    let s = api.snapshot.borrow().clone();
    if waited {
        Ok(Json(
            json!({"status": word, "brokers": brokers_json(&s, &ids)}),
        ))
    } else {
        let late: Vec<String> = ids
            .iter()
            .filter(|id| {
                let one = [**id];
                !one.iter().all(|i| {
                    let t = s.brokers.get(i).and_then(|b| b.task.as_ref());
                    match cmd {
                        BrokerCmd::Stop => t.is_none(),
                        _ => t.is_some_and(|t| t.state == "running"),
                    }
                })
            })
            .map(u32::to_string)
            .collect();
        Ok(Json(json!({
            "status": "timeout",
            "message": format!("broker {} timeout on {stage}", late.join(",")),
            "brokers": brokers_json(&s, &ids),
        })))
    }
}

/// The brokers topic calls go to: `(label, bootstrap servers)` — each
/// running broker selected when every broker is a cluster of its own
/// (tansu), else one entry with every running broker.
fn targets(
    s: &Snapshot,
    query: &BTreeMap<String, String>,
) -> Result<Vec<(Option<u32>, String)>, ApiError> {
    let expr = query.get("broker").map_or("*", String::as_str);
    let e = BrokerExpr::parse(expr).map_err(|m| ApiError::bad(format!("broker: {m}")))?;
    let existing: BTreeSet<u32> = s.brokers.keys().copied().collect();
    let ids = e.select(&existing, |id| {
        let t = s.brokers.get(&id)?.task.as_ref()?;
        let mut a = t.attributes.clone();
        a.insert("hostname".into(), t.hostname.clone());
        Some(a)
    });
    if let Some(missing) = ids.iter().find(|id| !s.brokers.contains_key(id)) {
        return Err(ApiError::bad(format!("broker: broker {missing} not found")));
    }
    let running: Vec<(u32, String)> = ids
        .iter()
        .filter_map(|id| s.brokers.get(id))
        .filter_map(|b| b.endpoint().map(|e| (b.id, e.to_string())))
        .collect();
    if running.is_empty() {
        return Err(ApiError::unavailable(
            "no selected broker is running; start brokers first (corral kafka broker start)",
        ));
    }
    Ok(bootstrap_targets(s.independent, running))
}

/// Where to reach the running brokers `(id, host:port)` for metadata and
/// admin calls: each broker on its own when they are independent clusters
/// (tansu), else one bootstrap list for the cluster.
pub(crate) fn bootstrap_targets(
    independent: bool,
    running: Vec<(u32, String)>,
) -> Vec<(Option<u32>, String)> {
    if independent {
        running.into_iter().map(|(id, e)| (Some(id), e)).collect()
    } else if running.is_empty() {
        Vec::new()
    } else {
        vec![(
            None,
            running
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>()
                .join(","),
        )]
    }
}

fn with_broker(mut v: Value, broker: Option<u32>) -> Value {
    if let Some(b) = broker {
        v["broker"] = json!(b.to_string());
    }
    v
}

fn number(
    query: &BTreeMap<String, String>,
    key: &str,
    default: i32,
    max: i32,
) -> Result<i32, ApiError> {
    match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad(format!("{key}: {v:?} is not a number from 1 to {max}"))),
    }
}

async fn list_on(bootstrap: &str, expr: &str, broker: Option<u32>) -> Result<Vec<Value>, ApiError> {
    let md = topics::metadata(bootstrap)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let names: Vec<String> = md.keys().cloned().collect();
    let selected = expand_topics(expr, &names).map_err(|e| ApiError::bad(format!("topic: {e}")))?;
    let selected: Vec<String> = selected
        .into_iter()
        .filter(|t| md.contains_key(t))
        .collect();
    let configs = topics::configs(bootstrap, &selected).await;
    Ok(selected
        .iter()
        .map(|t| {
            with_broker(
                topics::topic_json(t, &md[t], configs.get(t).unwrap_or(&BTreeMap::new())),
                broker,
            )
        })
        .collect())
}

async fn topic(
    State(api): State<Api>,
    Path(cmd): Path<String>,
    request: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let query = read_params(request).await?;
    let s = api.snapshot.borrow().clone();
    match cmd.as_str() {
        "list" => {
            only(&query, &["topic", "broker"])?;
            let expr = query.get("topic").map_or("*", String::as_str);
            expand_topics(expr, &[]).map_err(|e| ApiError::bad(format!("topic: {e}")))?;
            let mut out = Vec::new();
            for (broker, bootstrap) in targets(&s, &query)? {
                out.extend(list_on(&bootstrap, expr, broker).await?);
            }
            Ok(Json(json!({"topics": out})))
        }
        "add" => {
            only(
                &query,
                &["topic", "broker", "partitions", "replicas", "options"],
            )?;
            let expr = query
                .get("topic")
                .ok_or_else(|| ApiError::bad("topic: required (examples: t0, t0,t1)"))?;
            let names =
                expand_topics(expr, &[]).map_err(|e| ApiError::bad(format!("topic: {e}")))?;
            if names.is_empty() {
                return Err(ApiError::bad(
                    "topic: no topic named (wildcards select existing topics only)",
                ));
            }
            let partitions = number(&query, "partitions", 1, 10_000)?;
            let replicas = number(&query, "replicas", 1, 100)?;
            let options: BTreeMap<String, String> =
                parse_map(query.get("options").map_or("", String::as_str))
                    .map_err(|e| ApiError::bad(format!("options: {e}")))?
                    .into_iter()
                    .collect();
            let specs: Vec<NewTopicSpec> = names
                .iter()
                .map(|n| NewTopicSpec {
                    name: n.clone(),
                    partitions,
                    replicas,
                    options: options.clone(),
                })
                .collect();
            let mut out = Vec::new();
            for (broker, bootstrap) in targets(&s, &query)? {
                let results = topics::create(&bootstrap, &specs)
                    .await
                    .map_err(|e| ApiError::unavailable(e.to_string()))?;
                for r in results {
                    if let Err(e) = r {
                        let on = broker
                            .map(|b| format!(" on broker {b}"))
                            .unwrap_or_default();
                        return Err(ApiError::bad(format!("topic: {e}{on}")));
                    }
                }
                for n in &names {
                    out.extend(list_on(&bootstrap, n, broker).await?);
                }
            }
            Ok(Json(json!({"topics": out})))
        }
        "update" => {
            only(&query, &["topic", "broker", "options"])?;
            let expr = query
                .get("topic")
                .ok_or_else(|| ApiError::bad("topic: required (examples: t0, t0,t1, t*)"))?;
            let options: BTreeMap<String, String> = parse_map(
                query
                    .get("options")
                    .ok_or_else(|| ApiError::bad("options: required (flush.ms=60000,...)"))?,
            )
            .map_err(|e| ApiError::bad(format!("options: {e}")))?
            .into_iter()
            .collect();
            let mut out = Vec::new();
            for (broker, bootstrap) in targets(&s, &query)? {
                let md = topics::metadata(&bootstrap)
                    .await
                    .map_err(|e| ApiError::unavailable(e.to_string()))?;
                let names: Vec<String> = md.keys().cloned().collect();
                let selected = expand_topics(expr, &names)
                    .map_err(|e| ApiError::bad(format!("topic: {e}")))?;
                for t in &selected {
                    validate_topic(t).map_err(|e| ApiError::bad(format!("topic: {e}")))?;
                    if !md.contains_key(t) {
                        return Err(ApiError::bad(format!("topic: topic {t} not found")));
                    }
                    // The broker, not the request, failed: 502.
                    topics::alter(&bootstrap, t, &options)
                        .await
                        .map_err(|e| ApiError::with_status(502, e.to_string()))?;
                    out.extend(list_on(&bootstrap, t, broker).await?);
                }
            }
            Ok(Json(json!({"topics": out})))
        }
        other => Err(ApiError::not_found(format!(
            "no topic command {other:?} (add, list, update)"
        ))),
    }
}

async fn health(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    let leading = api.gate.is_leading();
    let body = json!({
        "leader": leading,
        "subscribed": s.subscribed,
        "frameworkId": s.framework_id,
        "engine": s.engine,
        "brokers": s.brokers.len(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// The counters `/metrics` exports (`corral_kafka_<name>_total`).
pub const COUNTERS: [&str; 6] = [
    "offers",
    "accepts",
    "declines",
    "launches",
    "kills",
    "status_updates",
];

/// Prometheus text of a snapshot.
pub fn metrics_text(s: &Snapshot, leading: bool) -> String {
    let now = now_ms();
    let mut out = String::new();
    out.push_str("# HELP corral_kafka_leader Whether this scheduler instance leads.\n# TYPE corral_kafka_leader gauge\n");
    out.push_str(&format!("corral_kafka_leader {}\n", u8::from(leading)));
    out.push_str("# HELP corral_kafka_subscribed Whether the scheduler is subscribed to a master.\n# TYPE corral_kafka_subscribed gauge\n");
    out.push_str(&format!(
        "corral_kafka_subscribed {}\n",
        u8::from(s.subscribed)
    ));
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for b in s.brokers.values() {
        let st = b.state(now);
        let word = st.split([' ', ',']).next().unwrap_or("unknown").to_string();
        *states.entry(word).or_insert(0) += 1;
    }
    out.push_str(
        "# HELP corral_kafka_brokers Brokers by state.\n# TYPE corral_kafka_brokers gauge\n",
    );
    for st in ["running", "starting", "stopping", "stopped", "failed"] {
        out.push_str(&format!(
            "corral_kafka_brokers{{state=\"{st}\"}} {}\n",
            states.get(st).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP corral_kafka_broker_failures Consecutive failures of a broker.\n# TYPE corral_kafka_broker_failures gauge\n");
    for b in s.brokers.values() {
        out.push_str(&format!(
            "corral_kafka_broker_failures{{broker=\"{}\"}} {}\n",
            b.id, b.failover.failures
        ));
    }
    // Every counter from the start (at 0 until it counts), so that a
    // series exists for rate() and absent() before the first event.
    let names: BTreeSet<&str> = COUNTERS
        .iter()
        .copied()
        .chain(s.counters.keys().copied())
        .collect();
    for name in names {
        let v = s.counters.get(name).copied().unwrap_or(0);
        out.push_str(&format!(
            "# TYPE corral_kafka_{name}_total counter\ncorral_kafka_{name}_total {v}\n"
        ));
    }
    out
}

async fn metrics(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_text(&s, api.gate.is_leading()),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!(
        "no endpoint {} (/api/broker/<cmd>, /api/topic/<cmd>, /health, /metrics, /ui)",
        uri.path()
    ))
    .into_response()
}

/// The API's routes.
pub fn router(
    calls: mpsc::Sender<BrokerCall>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    gate: corral_sdk::gate::Gate,
) -> Router {
    let pages = crate::webui::router(snapshot.clone(), gate.clone());
    let api = Api {
        calls,
        snapshot,
        gate: gate.clone(),
    };
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/broker/{cmd}", any(broker))
        .route("/api/topic/{cmd}", any(topic))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(api)
        .merge(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_from_the_query_and_the_body() {
        let p = params(Some("broker=0..2&cpus=0.5"), b"mem=256").expect("params");
        assert_eq!(p["broker"], "0..2");
        assert_eq!(p["mem"], "256");
        let e = params(Some("broker=0&broker=1"), b"").expect_err("twice");
        assert!(e.message.starts_with("broker"), "{}", e.message);
        let opts = params(
            Some("options=log.retention.hours%3D1%2Cnum.io.threads%3D4"),
            b"",
        )
        .expect("encoded");
        assert_eq!(opts["options"], "log.retention.hours=1,num.io.threads=4");
    }

    #[test]
    fn metrics_count_brokers_by_state() {
        let mut s = Snapshot::default();
        let mut b = Broker::new(0);
        b.failover.failures = 2;
        s.brokers.insert(0, b);
        s.counters.insert("offers", 3);
        let text = metrics_text(&s, true);
        assert!(text.contains("corral_kafka_leader 1"));
        assert!(text.contains("corral_kafka_brokers{state=\"stopped\"} 1"));
        assert!(text.contains("corral_kafka_broker_failures{broker=\"0\"} 2"));
        assert!(text.contains("corral_kafka_offers_total 3"));
        // Counters that have not counted yet are there, at 0.
        assert!(text.contains("corral_kafka_launches_total 0"));
        assert!(text.contains("corral_kafka_kills_total 0"));
    }
}
