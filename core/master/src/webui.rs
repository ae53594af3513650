//! The master's web UI: server-rendered pages at `/` and `/ui/...` (no
//! JavaScript build step; the page kit is `corral-webui`), kept live by
//! `/ui/live` (server-sent events fed by the operator event stream), the
//! utilisation history the overview charts, and the sandbox browser's
//! proxy to the agents' `/files` endpoints.
//!
//! Routes (leader only; a standby answers every one of them with a 307 to
//! the leader, see `http::dispatch`):
//! `/` overview, `/ui/agents[/<id>]`, `/ui/frameworks[/<id>]`,
//! `/ui/frameworks/<fw>/tasks/<task>`, `/ui/tasks?state=&framework=&q=`,
//! `/ui/roles`, `/ui/sandbox?agent=&path=` (a directory),
//! `/ui/sandbox/file?agent=&path=` (a file's live tail),
//! `/ui/files/{read,browse,download}?agent=&path=...` (the agent's `/files`
//! through the master, so the browser needs to reach only the master),
//! `/ui/live` (events), `/ui/history` (the samples as JSON).

pub mod pages;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::actor::Input;
use crate::http::{query, HttpError, Shared};
use crate::legacy;
use crate::state::Master;
use corral_api::codec::Encoding;

pub use pages::Snapshot;

/// How often the master samples its allocation for the overview's charts.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept (one hour at the interval above).
pub const SAMPLES_KEPT: usize = 720;
/// How often a live page re-renders even without events (ages, the chart,
/// agents that went quiet without an event).
pub const LIVE_TICK: Duration = Duration::from_secs(5);
/// Largest answer taken from an agent's `/files` for one request (a
/// `/files/read` is at most 64 KiB; a browse of a huge directory is cut
/// off here with an error rather than buffered).
pub const MAX_PROXIED_BYTES: usize = 8 * 1024 * 1024;

/// One sample of the cluster's allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub wall: f64,
    /// CPUs of all agents.
    pub cpus_total: f64,
    /// CPUs allocated to frameworks.
    pub cpus_used: f64,
    /// CPUs in outstanding offers.
    pub cpus_offered: f64,
    /// Memory of all agents (MiB).
    pub mem_total: f64,
    /// Memory allocated (MiB).
    pub mem_used: f64,
    /// Disk of all agents (MiB).
    pub disk_total: f64,
    /// Disk allocated (MiB).
    pub disk_used: f64,
    /// Tasks in TASK_RUNNING.
    pub tasks_running: f64,
    /// Connected agents.
    pub agents_active: f64,
}

impl Sample {
    /// The master's allocation now.
    pub fn of(m: &Master, wall: f64) -> Self {
        let mut s = Sample {
            wall,
            ..Default::default()
        };
        for a in m.agents.values() {
            let used = a.used_total();
            s.cpus_total += a.total.scalar("cpus");
            s.cpus_used += used.scalar("cpus");
            s.cpus_offered += a.offered.scalar("cpus");
            s.mem_total += a.total.scalar("mem");
            s.mem_used += used.scalar("mem");
            s.disk_total += a.total.scalar("disk");
            s.disk_used += used.scalar("disk");
            if a.connected {
                s.agents_active += 1.0;
            }
        }
        s.tasks_running = m
            .frameworks
            .values()
            .flat_map(|f| f.tasks.values())
            .filter(|t| t.state == corral_api::v1::TaskState::TaskRunning as i32)
            .count() as f64;
        s
    }
}

/// The bounded history of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`SAMPLES_KEPT`].
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The samples, oldest first.
    pub fn to_vec(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// The shared history handle.
pub type SharedHistory = Arc<Mutex<History>>;

fn history_of(shared: &Shared) -> Vec<Sample> {
    shared
        .history
        .lock()
        .map(|h| h.to_vec())
        .unwrap_or_default()
}

/// Samples the master into `history` every [`SAMPLE_INTERVAL`] until the
/// actor is gone.
pub async fn sample_forever(shared: Shared) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(sample) = query(&shared, |m, now| Sample::of(m, now.wall)).await else {
            return;
        };
        if let Ok(mut h) = shared.history.lock() {
            h.push(sample);
        }
    }
}

/// The UI's routes (merged into the leader's router).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(overview))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/agents", get(agents))
        .route("/ui/agents/{id}", get(agent))
        .route("/ui/frameworks", get(frameworks))
        .route("/ui/frameworks/{id}", get(framework))
        .route("/ui/frameworks/{fw}/tasks/{task}", get(task))
        .route("/ui/tasks", get(tasks))
        .route("/ui/roles", get(roles))
        .route("/ui/sandbox", get(sandbox))
        .route("/ui/sandbox/file", get(sandbox_file))
        .route("/ui/files/read", get(files_read))
        .route("/ui/files/browse", get(files_browse))
        .route("/ui/files/download", get(files_download))
        .route("/ui/live", get(live))
        .route("/ui/history", get(history))
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(body),
    )
        .into_response()
}

impl Snapshot {
    /// What the pages are rendered from, taken from the master.
    pub fn of(m: &Master, now: crate::state::Clock) -> Self {
        Snapshot {
            state: legacy::state(m, now),
            roles: legacy::roles(m),
            unreachable: m
                .unreachable
                .iter()
                .map(|(id, (info, since))| (id.clone(), info.hostname.clone(), *since))
                .collect(),
            gone: m.gone.iter().cloned().collect(),
            now: now.wall,
            current: Sample::of(m, now.wall),
            maintenance: m
                .agents
                .keys()
                .filter_map(|id| {
                    let u = m.agent_unavailability(id)?;
                    Some((
                        id.clone(),
                        (
                            u.start.nanoseconds as f64 / 1e9,
                            u.duration.map(|d| d.nanoseconds as f64 / 1e9),
                        ),
                    ))
                })
                .collect(),
        }
    }
}

/// A snapshot shared by the pages rendered within [`SNAPSHOT_TTL`]: a
/// snapshot is the whole state as JSON, built inside the actor, so any
/// number of open pages costs the actor at most one a second. An operator
/// event seen by `/ui/live` drops it, so a page re-rendered for an event
/// shows that event.
pub type SnapshotCache = Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Snapshot>)>>>;

/// How long a snapshot serves pages.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

async fn snapshot(shared: &Shared) -> Result<Arc<Snapshot>, HttpError> {
    // Held across the query: concurrent pages wait for one snapshot.
    let mut cached = shared.ui_snapshot.lock().await;
    if let Some((at, snap)) = cached.as_ref() {
        if at.elapsed() < SNAPSHOT_TTL {
            return Ok(Arc::clone(snap));
        }
    }
    let snap = Arc::new(query(shared, |m, now| Snapshot::of(m, now)).await?);
    *cached = Some((tokio::time::Instant::now(), Arc::clone(&snap)));
    Ok(snap)
}

async fn overview(State(shared): State<Shared>) -> Result<Response, HttpError> {
    let snap = snapshot(&shared).await?;
    // The chart ends with the cluster as it is now, between samples too.
    let mut history = history_of(&shared);
    history.push(snap.current);
    Ok(html(StatusCode::OK, pages::overview(&snap, &history)))
}

async fn agents(State(shared): State<Shared>) -> Result<Response, HttpError> {
    Ok(html(
        StatusCode::OK,
        pages::agents(&*snapshot(&shared).await?),
    ))
}

async fn agent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let snap = snapshot(&shared).await?;
    Ok(match pages::agent(&snap, &id) {
        Some(page) => html(StatusCode::OK, page),
        None => html(
            StatusCode::NOT_FOUND,
            pages::not_found(
                &format!(
                    "No agent {id} is registered with this master (it may be unreachable or gone)."
                ),
                "/ui/agents",
                "All agents",
            ),
        ),
    })
}

async fn frameworks(State(shared): State<Shared>) -> Result<Response, HttpError> {
    Ok(html(
        StatusCode::OK,
        pages::frameworks(&*snapshot(&shared).await?),
    ))
}

async fn framework(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let snap = snapshot(&shared).await?;
    Ok(match pages::framework(&snap, &id) {
        Some(page) => html(StatusCode::OK, page),
        None => html(
            StatusCode::NOT_FOUND,
            pages::not_found(
                &format!("No framework {id} is known to this master."),
                "/ui/frameworks",
                "All frameworks",
            ),
        ),
    })
}

async fn task(
    State(shared): State<Shared>,
    Path((fw, id)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let snap = snapshot(&shared).await?;
    Ok(match pages::task(&snap, &fw, &id) {
        Some(page) => html(StatusCode::OK, page),
        None => html(
            StatusCode::NOT_FOUND,
            pages::not_found(
                &format!("No task {id} of framework {fw} is known to this master."),
                "/ui/tasks",
                "All tasks",
            ),
        ),
    })
}

async fn tasks(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let filter = pages::TaskFilter {
        state: q.get("state").cloned(),
        framework: q.get("framework").cloned(),
        search: q.get("q").cloned(),
    };
    Ok(html(
        StatusCode::OK,
        pages::tasks(&*snapshot(&shared).await?, &filter),
    ))
}

async fn roles(State(shared): State<Shared>) -> Result<Response, HttpError> {
    Ok(html(
        StatusCode::OK,
        pages::roles(&*snapshot(&shared).await?),
    ))
}

async fn history(State(shared): State<Shared>) -> Response {
    axum::Json(serde_json::json!({ "samples": history_of(&shared) })).into_response()
}

/// `agent` and `path` of a sandbox request, or the 400 naming what is
/// missing.
fn agent_and_path(q: &HashMap<String, String>) -> Result<(String, String), HttpError> {
    let agent = q.get("agent").filter(|a| !a.is_empty()).ok_or_else(|| {
        HttpError(
            StatusCode::BAD_REQUEST,
            "Expecting 'agent=<agent id>' in the query".into(),
        )
    })?;
    let path = q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| {
        HttpError(
            StatusCode::BAD_REQUEST,
            "Expecting 'path=<sandbox path>' in the query".into(),
        )
    })?;
    Ok((agent.clone(), path.clone()))
}

/// The agent's HTTP endpoint (`host:port`).
async fn agent_endpoint(shared: &Shared, agent: &str) -> Result<String, HttpError> {
    let id = agent.to_string();
    query(shared, move |m, _| {
        m.agents.get(&id).map(|a| a.endpoint.clone())
    })
    .await?
    .ok_or_else(|| {
        HttpError(
            StatusCode::NOT_FOUND,
            format!("No agent {agent} is registered with this master"),
        )
    })
}

/// One GET of the agent's `/files/<what>` with the query `params`, its
/// status and body (bounded by [`MAX_PROXIED_BYTES`]).
async fn agent_files(
    shared: &Shared,
    agent: &str,
    what: &str,
    params: &[(&str, &str)],
) -> Result<(StatusCode, bytes::Bytes, Option<String>), HttpError> {
    let endpoint = agent_endpoint(shared, agent).await?;
    let url = format!("http://{endpoint}/files/{what}");
    let unreachable = |e: reqwest::Error| {
        HttpError(
            StatusCode::BAD_GATEWAY,
            format!("agent {agent} at {endpoint} did not answer: {e}"),
        )
    };
    let mut resp = shared
        .http
        .get(&url)
        .query(params)
        .send()
        .await
        .map_err(unreachable)?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_PROXIED_BYTES {
            return Err(HttpError(
                StatusCode::BAD_GATEWAY,
                format!(
                    "agent {agent}'s answer is larger than {MAX_PROXIED_BYTES} bytes; \
                     read it from the agent directly"
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body.into(), content_type))
}

async fn sandbox(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let (agent, path) = agent_and_path(&q)?;
    let (status, body, _) = agent_files(&shared, &agent, "browse", &[("path", &path)]).await?;
    if !status.is_success() {
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Ok(html(
            status,
            pages::not_found(
                &format!("Agent {agent} cannot list {path}: {message}. The sandbox may have been garbage-collected."),
                &format!("/ui/agents/{}", corral_webui::url_encode(&agent)),
                "The agent",
            ),
        ));
    }
    let entries: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        HttpError(
            StatusCode::BAD_GATEWAY,
            format!("agent {agent} answered /files/browse with invalid JSON: {e}"),
        )
    })?;
    Ok(html(
        StatusCode::OK,
        pages::sandbox_dir(&agent, &path, &entries),
    ))
}

async fn sandbox_file(Query(q): Query<HashMap<String, String>>) -> Result<Response, HttpError> {
    let (agent, path) = agent_and_path(&q)?;
    Ok(html(StatusCode::OK, pages::sandbox_file(&agent, &path)))
}

fn passthrough(status: StatusCode, body: bytes::Bytes, content_type: Option<String>) -> Response {
    let mut resp = (status, body).into_response();
    if let Some(ct) = content_type.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

async fn files_read(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let (agent, path) = agent_and_path(&q)?;
    let mut params = vec![("path", path.as_str())];
    for key in ["offset", "length"] {
        if let Some(v) = q.get(key) {
            params.push((key, v.as_str()));
        }
    }
    let (status, body, ct) = agent_files(&shared, &agent, "read", &params).await?;
    Ok(passthrough(status, body, ct))
}

async fn files_browse(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let (agent, path) = agent_and_path(&q)?;
    let (status, body, ct) = agent_files(&shared, &agent, "browse", &[("path", &path)]).await?;
    Ok(passthrough(status, body, ct))
}

async fn files_download(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let (agent, path) = agent_and_path(&q)?;
    let endpoint = agent_endpoint(&shared, &agent).await?;
    let resp = shared
        .http
        .get(format!("http://{endpoint}/files/download"))
        .query(&[("path", &path)])
        .send()
        .await
        .map_err(|e| {
            HttpError(
                StatusCode::BAD_GATEWAY,
                format!("agent {agent} at {endpoint} did not answer: {e}"),
            )
        })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = Response::builder().status(status);
    for name in [
        reqwest::header::CONTENT_TYPE,
        reqwest::header::CONTENT_DISPOSITION,
        reqwest::header::CONTENT_LENGTH,
    ] {
        if let Some(v) = resp.headers().get(&name) {
            out = out.header(name.as_str(), v.as_bytes());
        }
    }
    // Streamed: a download is as large as the file, never buffered here.
    out.body(Body::from_stream(resp.bytes_stream()))
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The `type` of one operator event frame (RecordIO `<len>\n<json>`).
fn event_type(frame: &[u8]) -> Option<String> {
    let start = frame.iter().position(|b| *b == b'\n')? + 1;
    let event: serde_json::Value = serde_json::from_slice(frame.get(start..)?).ok()?;
    event["type"].as_str().map(str::to_string)
}

/// `/ui/live`: server-sent events for live pages. Every operator event but
/// heartbeats (the subscription has no SUBSCRIBED) becomes an event named `change`
/// whose data is the operator event's type; a `change` named `TICK` comes
/// every [`LIVE_TICK`] as well, while the operator stream lasts.
async fn live(State(shared): State<Shared>) -> Result<Response, HttpError> {
    let (tx, rx) = oneshot::channel();
    shared
        .inputs
        .send(Input::OperatorSubscribe {
            encoding: Encoding::Json,
            initial_state: false,
            reply: tx,
        })
        .await
        .map_err(|_| crate::http::unavailable())?;
    let events = rx.await.map_err(|_| crate::http::unavailable())?;
    // The operator stream ends when the actor stops (shutdown, lost
    // leadership) or drops a subscriber that cannot keep up: then this
    // stream ends too (the `None` after it), so it never holds up a
    // graceful shutdown, and the browser reconnects.
    let cache = shared.ui_snapshot.clone();
    let changes = tokio_stream::wrappers::ReceiverStream::new(events)
        .filter_map(|frame| async move { event_type(&frame).filter(|t| t != "HEARTBEAT") })
        .then(move |t| {
            let cache = cache.clone();
            async move {
                *cache.lock().await = None;
                t
            }
        })
        .map(Some)
        .chain(futures::stream::once(async { None }));
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + LIVE_TICK,
        LIVE_TICK,
    ))
    .map(|_| Some("TICK".to_string()));
    let merged: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        futures::stream::select(changes, ticks)
            .take_while(|t| futures::future::ready(t.is_some()))
            .filter_map(futures::future::ready)
            .map(|t| Ok(Event::default().event("change").data(t))),
    );
    Ok(Sse::new(merged)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..(SAMPLES_KEPT + 10) {
            h.push(Sample {
                wall: i as f64,
                ..Default::default()
            });
        }
        let v = h.to_vec();
        assert_eq!(v.len(), SAMPLES_KEPT);
        assert_eq!(v[0].wall, 10.0);
    }

    #[test]
    fn event_types_are_read_from_frames() {
        assert_eq!(
            event_type(b"28\n{\"type\":\"TASK_ADDED\",\"x\":1}").as_deref(),
            Some("TASK_ADDED")
        );
        assert_eq!(event_type(b"garbage"), None);
    }
}
