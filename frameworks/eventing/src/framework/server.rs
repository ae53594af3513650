//! The eventing framework's shell (`corral eventing serve`): the SDK's
//! scheduler driver, the state store, a timer and the REST API feed one
//! actor; it runs the pure [`Core`] and carries out its effects.
//!
//! The state (`eventing/state`: the spec and the slots with their task ids)
//! is stored before the launches it describes are sent, so a restarted
//! scheduler or a new leader (`--zk`) adopts the running tasks rather than
//! launching twice.
//!
//! REST API:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /v1/tiers` | both tiers: counts, resources, instances (state, host, port, generation) |
//! | `POST /v1/scale` | `{"api": 3, "backend": 5}` (either may be left out) |
//! | `POST /v1/upgrade` | `{"binary": "/opt/corral-new"}` (optional): a rolling replacement of every task |
//! | `GET /v1/endpoints` | the running API nodes, `{"api": ["host:port", ...]}` |
//! | `GET /health`, `GET /metrics` | |
//! | `GET /ui`, `GET /ui/tiers/{api,backend}` | the web pages ([`super::webui`]); `GET /` redirects to `/ui` |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerEvent};
use corral_sdk::shell::ApiError;
use corral_sdk::store::StateStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::core::{Core, Effect, Slot, Spec, Tier};

const TICK: Duration = Duration::from_millis(500);
const INPUTS: usize = 1024;
const SESSION: Duration = Duration::from_secs(10);
const STATE_KEY: &str = "eventing/state";

/// How the framework runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--master`.
    pub master: String,
    /// Where its REST API listens.
    pub listen: SocketAddr,
    /// `--zk`: state in ZooKeeper and leader election.
    pub zk: Option<String>,
    /// The embedded store's directory (`None`: in memory).
    pub state_dir: Option<PathBuf>,
    /// The framework's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its principal.
    pub principal: Option<String>,
    /// What the tasks run (counts are used only on the first start; later
    /// the stored counts win and a changed binary or flags is an upgrade).
    pub spec: Spec,
}

/// Why the framework stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, the election or the driver could not start.
    #[error(transparent)]
    Start(#[from] corral_sdk::shell::ShellError),
    /// The store failed.
    #[error("state store: {0}")]
    Store(#[from] corral_sdk::store::StoreError),
    /// Another instance leads now.
    #[error("lost leadership (the ZooKeeper session expired); exiting so that a supervisor restarts this instance")]
    LostLeadership,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    spec: Spec,
    slots: Vec<Slot>,
    next_task: u64,
}

/// What the API reads.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    framework_id: Option<String>,
    subscribed: bool,
    generation: u64,
    binary: String,
    tiers: serde_json::Value,
    endpoints: Vec<String>,
    launches: u64,
    kills: u64,
}

enum Call {
    Scale {
        api: Option<u32>,
        backend: Option<u32>,
        reply: oneshot::Sender<Result<(u32, u32), String>>,
    },
    Upgrade {
        binary: Option<String>,
        reply: oneshot::Sender<u64>,
    },
}

enum Input {
    Event(SchedulerEvent),
    Tick,
    Call(Call),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Actor {
    scheduler: Scheduler,
    store: Arc<dyn StateStore>,
    core: Core,
    adopted: Vec<(String, Option<String>)>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    framework_id: Option<String>,
    subscribed: bool,
    launches: u64,
    kills: u64,
}

/// Runs the framework until the process ends or it loses its leadership.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let corral_sdk::shell::Opened {
        listener,
        store,
        election,
        gate,
    } = corral_sdk::shell::open(
        config.listen,
        config.zk.as_deref(),
        config.state_dir.as_deref(),
        SESSION,
    )
    .await?;
    let (tx, mut rx) = mpsc::channel::<Input>(INPUTS);
    let (calls_tx, mut calls_rx) = mpsc::channel::<Call>(INPUTS);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let app = Router::new()
        .route("/v1/tiers", get(tiers))
        .route("/v1/endpoints", get(endpoints))
        .route("/v1/scale", post(scale))
        .route("/v1/upgrade", post(upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ui", get(ui_tiers))
        .route("/ui/tiers/{tier}", get(ui_tier))
        .merge(super::webui::SITE.common_routes(true))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(Api {
            calls: calls_tx,
            snapshot: snap_rx,
        });
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(c) = calls_rx.recv().await {
            if forward.send(Input::Call(c)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the api server failed");
        }
    });
    tracing::info!(listen = %config.listen, master = %config.master, "eventing framework serving");
    let mut info = framework_info(&config.name, &[&config.role], config.principal.as_deref());
    info.webui_url = Some(corral_sdk::webui::advertised_url(
        config.listen,
        None,
        "/ui",
    ));
    let (scheduler, events) =
        corral_sdk::shell::lead_and_start(election.as_ref(), store.as_ref(), &config.master, info)
            .await?;
    let (core, adopted) = match store.get(STATE_KEY).await? {
        Some(v) => match serde_json::from_slice::<Stored>(&v.value) {
            Ok(stored) => {
                let mut spec = stored.spec.clone();
                let mut upgrade = false;
                if spec.binary != config.spec.binary
                    || spec.api_args != config.spec.api_args
                    || spec.backend_args != config.spec.backend_args
                    || spec.spool_root != config.spec.spool_root
                {
                    spec.binary = config.spec.binary.clone();
                    spec.api_args = config.spec.api_args.clone();
                    spec.backend_args = config.spec.backend_args.clone();
                    spec.spool_root = config.spec.spool_root.clone();
                    upgrade = true;
                }
                let mut core = Core::new(spec);
                let adopted = core.import(stored.slots, stored.next_task);
                if upgrade {
                    tracing::info!(
                        "the tasks' command changed since the last run: rolling upgrade"
                    );
                    let _ = core.upgrade(None, now_ms());
                }
                (core, adopted)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the stored state is unreadable; starting afresh");
                (Core::new(config.spec.clone()), Vec::new())
            }
        },
        None => (Core::new(config.spec.clone()), Vec::new()),
    };
    tracing::info!(
        tasks = adopted.len(),
        "eventing tiers taken over from the store"
    );
    let mut actor = Actor {
        scheduler,
        store: Arc::clone(&store),
        core,
        adopted,
        snapshot: snap_tx,
        framework_id: None,
        subscribed: false,
        launches: 0,
        kills: 0,
    };
    actor.persist().await;
    actor.publish();
    gate.set_leading();
    corral_sdk::shell::forward_events(events, tx.clone(), Input::Event);
    corral_sdk::shell::tick_every(tx.clone(), TICK, || Input::Tick);
    drop(tx);
    loop {
        let lost = corral_sdk::shell::leadership_lost(&election);
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    actor.handle(input).await;
                    actor.publish();
                }
                None => return Ok(()),
            },
            () = lost => {
                actor.scheduler.stop();
                return Err(ServerError::LostLeadership);
            }
        }
    }
}

impl Actor {
    fn publish(&self) {
        let mut tiers = serde_json::Map::new();
        for t in Tier::ALL {
            let spec = self.core.spec().tier(t);
            let instances: Vec<&Slot> = self.core.slots().filter(|s| s.tier == t).collect();
            tiers.insert(
                t.name().into(),
                serde_json::json!({
                    "count": spec.count,
                    "cpus": spec.cpus,
                    "mem": spec.mem,
                    "instances": instances,
                }),
            );
        }
        self.snapshot.send_replace(Arc::new(Snapshot {
            framework_id: self.framework_id.clone(),
            subscribed: self.subscribed,
            generation: self.core.spec().generation,
            binary: self.core.spec().binary.clone(),
            tiers: serde_json::Value::Object(tiers),
            endpoints: self.core.api_endpoints(),
            launches: self.launches,
            kills: self.kills,
        }));
    }

    async fn persist(&mut self) {
        if !self.core.take_changed() {
            return;
        }
        let stored = Stored {
            spec: self.core.spec().clone(),
            slots: self.core.slots().cloned().collect(),
            next_task: self.core.next_task(),
        };
        let bytes = serde_json::to_vec(&stored).unwrap_or_default();
        if let Err(e) = self.store.set(STATE_KEY, bytes).await {
            tracing::error!(error = %e, "cannot store the eventing state; retrying on the next change");
        }
    }

    async fn carry_out(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Accept {
                    offer_id,
                    operations,
                } => {
                    self.launches += operations
                        .iter()
                        .filter_map(|o| o.launch.as_ref())
                        .map(|l| l.task_infos.len() as u64)
                        .sum::<u64>();
                    if let Err(e) = self
                        .scheduler
                        .accept(vec![offer_id], operations, Some(1.0))
                        .await
                    {
                        tracing::warn!(error = %e, "accept failed");
                    }
                }
                Effect::Decline {
                    offer_ids,
                    refuse_seconds,
                } => {
                    let _ = self
                        .scheduler
                        .decline(offer_ids, Some(refuse_seconds))
                        .await;
                }
                Effect::Kill {
                    task_id,
                    agent_id,
                    grace_seconds,
                } => {
                    self.kills += 1;
                    tracing::info!(%task_id, "killing an eventing task");
                    let policy = corral_api::v1::KillPolicy {
                        grace_period: Some(corral_api::v1::DurationInfo {
                            nanoseconds: (grace_seconds * 1e9) as i64,
                        }),
                    };
                    if let Err(e) = self
                        .scheduler
                        .kill(&task_id, agent_id.as_deref(), Some(policy))
                        .await
                    {
                        tracing::warn!(%task_id, error = %e, "kill failed");
                    }
                }
                Effect::Revive => {
                    let _ = self.scheduler.revive(vec![]).await;
                }
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::Tick => {
                let effects = self.core.tick(now);
                self.persist().await;
                self.carry_out(effects).await;
            }
            Input::Call(Call::Scale {
                api,
                backend,
                reply,
            }) => match self.core.scale(api, backend) {
                Ok(effects) => {
                    tracing::info!(?api, ?backend, "scaled the eventing tiers");
                    self.persist().await;
                    let spec = self.core.spec();
                    let _ = reply.send(Ok((spec.api.count, spec.backend.count)));
                    self.carry_out(effects).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Input::Call(Call::Upgrade { binary, reply }) => {
                let effects = self.core.upgrade(binary, now);
                self.persist().await;
                let _ = reply.send(self.core.spec().generation);
                tracing::info!(
                    generation = self.core.spec().generation,
                    "rolling upgrade started"
                );
                self.carry_out(effects).await;
            }
            Input::Event(e) => self.event(e, now).await,
        }
    }

    async fn event(&mut self, event: SchedulerEvent, now: i64) {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
                self.framework_id = Some(framework_id.clone());
                self.subscribed = true;
                let adopted = std::mem::take(&mut self.adopted);
                corral_sdk::shell::on_subscribed(
                    self.store.as_ref(),
                    &self.scheduler,
                    framework_id,
                    adopted,
                )
                .await;
                if resubscribed {
                    let tasks: Vec<(String, Option<String>)> = self
                        .core
                        .slots()
                        .filter_map(|s| s.task_id.clone().map(|t| (t, s.agent_id.clone())))
                        .collect();
                    if !tasks.is_empty() {
                        let _ = self.scheduler.reconcile(tasks).await;
                    }
                }
                let _ = self.scheduler.revive(vec![]).await;
            }
            SchedulerEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "disconnected from the master");
                self.subscribed = false;
            }
            SchedulerEvent::Offers(offers) => {
                let effects = self.core.offers(now, offers);
                self.persist().await;
                self.carry_out(effects).await;
            }
            SchedulerEvent::Update(status) => {
                let effects = self.core.status(now, &status);
                self.persist().await;
                self.carry_out(effects).await;
                let _ = self.scheduler.acknowledge(&status).await;
            }
            SchedulerEvent::Error(message) => {
                tracing::error!(%message, "the master refused the framework");
                self.subscribed = false;
            }
            _ => {}
        }
    }
}

#[derive(Clone)]
struct Api {
    calls: mpsc::Sender<Call>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

fn refuse(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(serde_json::json!({"message": e.message})),
    )
        .into_response()
}

async fn tiers(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    axum::Json(s.as_ref().clone()).into_response()
}

async fn endpoints(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    axum::Json(serde_json::json!({"api": s.endpoints})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    api: Option<u32>,
    backend: Option<u32>,
}

async fn scale(State(api): State<Api>, body: Bytes) -> Response {
    if body.len() > 4096 {
        return refuse(ApiError::bad("the body is larger than 4096 bytes"));
    }
    let b: ScaleBody = match corral_sdk::shell::parse_json(&body) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    if b.api.is_none() && b.backend.is_none() {
        return refuse(ApiError::bad(
            "give \"api\" and/or \"backend\", the number of instances of each tier",
        ));
    }
    let (tx, rx) = oneshot::channel();
    if api
        .calls
        .send(Call::Scale {
            api: b.api,
            backend: b.backend,
            reply: tx,
        })
        .await
        .is_err()
    {
        return refuse(ApiError::unavailable("the scheduler is stopping"));
    }
    match rx.await {
        Ok(Ok((a, k))) => axum::Json(serde_json::json!({"api": a, "backend": k})).into_response(),
        Ok(Err(m)) => refuse(ApiError::bad(m)),
        Err(_) => refuse(ApiError::unavailable("the scheduler is stopping")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    binary: Option<String>,
}

async fn upgrade(State(api): State<Api>, body: Bytes) -> Response {
    if body.len() > 4096 {
        return refuse(ApiError::bad("the body is larger than 4096 bytes"));
    }
    let b: UpgradeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeBody::default()
    } else {
        match corral_sdk::shell::parse_json(&body) {
            Ok(b) => b,
            Err(e) => return refuse(e),
        }
    };
    if let Some(bin) = &b.binary {
        if bin.is_empty() || !bin.starts_with('/') {
            return refuse(ApiError::bad(format!(
                "binary: {bin:?} is not an absolute path"
            )));
        }
    }
    let (tx, rx) = oneshot::channel();
    if api
        .calls
        .send(Call::Upgrade {
            binary: b.binary,
            reply: tx,
        })
        .await
        .is_err()
    {
        return refuse(ApiError::unavailable("the scheduler is stopping"));
    }
    match rx.await {
        Ok(generation) => axum::Json(serde_json::json!({"generation": generation})).into_response(),
        Err(_) => refuse(ApiError::unavailable("the scheduler is stopping")),
    }
}

async fn health(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    let code = if s.subscribed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({"subscribed": s.subscribed, "frameworkId": s.framework_id})),
    )
        .into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    let s = api.snapshot.borrow().clone();
    let running = |t: &str| {
        s.tiers[t]["instances"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["state"] == "running").count())
    };
    let text = format!(
        "corral_eventing_framework_running{{tier=\"api\"}} {}\ncorral_eventing_framework_running{{tier=\"backend\"}} {}\ncorral_eventing_framework_launches_total {}\ncorral_eventing_framework_kills_total {}\ncorral_eventing_framework_generation {}\n",
        running("api"),
        running("backend"),
        s.launches,
        s.kills,
        s.generation
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn tiers_doc(api: &Api) -> serde_json::Value {
    let s = api.snapshot.borrow().clone();
    serde_json::to_value(s.as_ref()).unwrap_or_default()
}

async fn ui_tiers(State(api): State<Api>) -> Response {
    corral_sdk::webui::html(200, super::webui::tiers_page(&tiers_doc(&api)))
}

async fn ui_tier(State(api): State<Api>, Path(tier): Path<String>) -> Response {
    let now = now_ms();
    match super::webui::tier_page(&tiers_doc(&api), &tier, now) {
        Some(page) => corral_sdk::webui::html(200, page),
        None => super::webui::SITE.not_found(&format!(
            "There is no tier {tier:?}: the tiers are api and backend."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pages_render_the_tiers_and_404_an_unknown_tier() {
        let (calls, _rx) = mpsc::channel(1);
        let (_tx, snapshot) = watch::channel(Arc::new(Snapshot {
            generation: 1,
            binary: "/bin/<corral>".into(),
            ..Snapshot::default()
        }));
        let api = Api { calls, snapshot };
        let r = ui_tiers(State(api.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("/bin/&lt;corral&gt;"));
        let r = ui_tier(State(api.clone()), Path("backend".into())).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = ui_tier(State(api), Path("<script>".into())).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("&quot;&lt;script&gt;&quot;"));
    }
}
