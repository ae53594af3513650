//! The master reader: finds the leading master (ZooKeeper or a list of
//! candidates), SUBSCRIBEs to its operator stream (protobuf RecordIO),
//! hands SUBSCRIBED and each later event to the writer through a bounded
//! channel (so a full spool stops the reading), and on any end of the
//! stream (EOF, error, silence past three heartbeats, a failover) finds the
//! leader again and re-subscribes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use corral_api::recordio;
use corral_api::v1::master as op;
use corral_api::{APPLICATION_JSON, APPLICATION_PROTOBUF};
use corral_sdk::detector::{host_port_of_location, Detector};
use prost::Message as _;
use tokio::sync::mpsc;

use super::{Input, Shared};

/// Largest record accepted from the master.
const MAX_RECORD: usize = 256 * 1024 * 1024;

fn set_problem(shared: &Shared, problem: Option<String>) {
    if let Ok(mut p) = shared.master_problem.lock() {
        if *p != problem {
            match &problem {
                Some(reason) => tracing::warn!(reason = %reason, "master stream down"),
                None => tracing::info!("master stream up"),
            }
            *p = problem;
        }
    }
}

/// Reads the master forever.
pub async fn run(detector: Detector, tx: mpsc::Sender<Input>, shared: Arc<Shared>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let mut backoff = Duration::from_millis(50);
    loop {
        let leader = match detector.leader().await {
            Ok(l) => l,
            Err(e) => {
                set_problem(&shared, Some(e.to_string()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        match subscribe(&http, &leader, &tx, &shared).await {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                set_problem(
                    &shared,
                    Some(format!("the stream from {leader} ended; re-subscribing")),
                );
            }
            Err(Stop::Closed) => return,
            Err(Stop::Failed(reason)) => {
                set_problem(&shared, Some(format!("{leader}: {reason}")));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        shared.master_connected.store(false, Ordering::SeqCst);
    }
}

enum Stop {
    /// The writer is gone (shutting down).
    Closed,
    /// This attempt failed.
    Failed(String),
}

async fn master_id(http: &reqwest::Client, leader: &str) -> Option<String> {
    let resp = http
        .post(format!("http://{leader}/api/v1"))
        .header(reqwest::header::CONTENT_TYPE, APPLICATION_JSON)
        .header(reqwest::header::ACCEPT, APPLICATION_JSON)
        .body(r#"{"type":"GET_MASTER"}"#)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = resp.json().await.ok()?;
    v["get_master"]["master_info"]["id"]
        .as_str()
        .map(str::to_string)
}

async fn subscribe(
    http: &reqwest::Client,
    leader: &str,
    tx: &mpsc::Sender<Input>,
    shared: &Shared,
) -> Result<(), Stop> {
    let mut address = leader.to_string();
    let mut resp = None;
    // A standby answers with a redirect to the leader: follow it once.
    for _ in 0..2 {
        let r = http
            .post(format!("http://{address}/api/v1"))
            .header(reqwest::header::CONTENT_TYPE, APPLICATION_JSON)
            .header(reqwest::header::ACCEPT, APPLICATION_PROTOBUF)
            .body(r#"{"type":"SUBSCRIBE"}"#)
            .send()
            .await
            .map_err(|e| Stop::Failed(format!("cannot subscribe: {e}")))?;
        if r.status().is_redirection() {
            let next = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(host_port_of_location);
            match next {
                Some(n) => {
                    address = n;
                    continue;
                }
                None => return Err(Stop::Failed("a redirect without a location".into())),
            }
        }
        resp = Some(r);
        break;
    }
    let Some(mut resp) = resp else {
        return Err(Stop::Failed("redirected more than once".into()));
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(Stop::Failed(format!(
            "SUBSCRIBE answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    let mut decoder = recordio::Decoder::new(MAX_RECORD);
    let mut subscribed = false;
    // Until SUBSCRIBED tells the heartbeat interval.
    let mut silence = Duration::from_secs(30);
    loop {
        // Every complete record first.
        loop {
            let record = match decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(Stop::Failed(format!("bad stream: {e}"))),
            };
            let event = op::Event::decode(record.as_slice())
                .map_err(|e| Stop::Failed(format!("undecodable event: {e}")))?;
            let ty = event
                .r#type
                .and_then(|t| op::event::Type::try_from(t).ok())
                .unwrap_or(op::event::Type::Unknown);
            match ty {
                op::event::Type::Subscribed => {
                    let Some(s) = event.subscribed else {
                        return Err(Stop::Failed("SUBSCRIBED without its state".into()));
                    };
                    if let Some(hb) = s.heartbeat_interval_seconds {
                        if hb.is_finite() && hb > 0.0 {
                            silence = Duration::from_secs_f64((hb * 3.0).clamp(3.0, 300.0));
                        }
                    }
                    let id = master_id(http, &address).await;
                    subscribed = true;
                    shared.subscriptions.fetch_add(1, Ordering::SeqCst);
                    shared.master_connected.store(true, Ordering::SeqCst);
                    if let Ok(mut l) = shared.leader.lock() {
                        *l = Some(address.clone());
                    }
                    set_problem(shared, None);
                    tracing::info!(
                        master = %address,
                        master_id = id.as_deref().unwrap_or("unknown"),
                        "subscribed to the master's operator events"
                    );
                    let state = Box::new(s.get_state.unwrap_or_default());
                    tx.send(Input::Subscribed {
                        master_id: id,
                        state,
                    })
                    .await
                    .map_err(|_| Stop::Closed)?;
                }
                op::event::Type::Heartbeat => {
                    // Housekeeping for the writer (never waits).
                    let _ = tx.try_send(Input::Tick);
                }
                _ if !subscribed => {
                    return Err(Stop::Failed("an event before SUBSCRIBED".into()));
                }
                _ => {
                    shared.received.fetch_add(1, Ordering::SeqCst);
                    tx.send(Input::Event(Box::new(event)))
                        .await
                        .map_err(|_| Stop::Closed)?;
                }
            }
        }
        match tokio::time::timeout(silence, resp.chunk()).await {
            Ok(Ok(Some(bytes))) => decoder.feed(&bytes),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(Stop::Failed(format!("stream broken: {e}"))),
            Err(_) => {
                return Err(Stop::Failed(format!(
                    "no heartbeat for {}s",
                    silence.as_secs()
                )))
            }
        }
    }
}
