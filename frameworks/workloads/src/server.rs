//! The shell: the SDK's scheduler driver, the state store, a timer and the
//! REST API feed one actor (a bounded channel of `Input`s), which runs
//! the pure cores ([`Services`], [`Jobs`]) and carries out what they
//! return: launches on offers, kills, store writes.
//!
//! Requests with their deploys (`requests/<id>`), each service's tasks
//! (`task-chunks/<id>/<n>`, written before they are launched), each job's state
//! (`jobs/<id>`) and the FrameworkID (`framework/id`) are kept in the
//! store, so a restarted instance or a new leader re-subscribes as the
//! same framework, takes over the running service tasks (reconciling
//! them with the master), every job's schedule and the job runs in flight
//! (re-attached: reconciled, and launched if the master never had them).
//! Tasks it does not know at all are killed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::v1;
use corral_sdk::offers::{ports_of, take, Need};
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerEvent};
use corral_sdk::store::StateStore;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{ClusterSource, ClusterView};
use crate::jobs::{Command, Jobs, Outcome};
use crate::model::{Deploy, Request};
use crate::services::{Action, RequestState, Services, TaskPhase};
use crate::taskinfo::task_info;

/// How often the cores are ticked.
const TICK: Duration = Duration::from_millis(500);
/// Inputs buffered for the actor.
const INPUTS: usize = 1024;
/// ZooKeeper session timeout.
const SESSION: Duration = Duration::from_secs(10);
/// Instance numbers per stored chunk of a service's tasks.
const TASK_CHUNK: u32 = 250;

/// How the framework runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--master`: `host:port[,...]` or `zk://...`.
    pub master: String,
    /// Where the REST API listens.
    pub listen: SocketAddr,
    /// The embedded store's directory (`None`: in memory).
    pub state_dir: Option<std::path::PathBuf>,
    /// The role its tasks run as.
    pub role: String,
    /// The principal it registers with.
    pub principal: Option<String>,
    /// The framework's name.
    pub name: String,
    /// `zk://host:port/path`: keep the state in ZooKeeper and run as one of
    /// several instances, only the elected leader scheduling.
    pub zk: Option<String>,
    /// How repeated failures of services are handled.
    pub failures: crate::services::FailurePolicy,
    /// Load-balanced SERVICE requests through HAProxy (`None`: no load
    /// balancer; the upstream list is still served as JSON).
    pub load_balancer: Option<LoadBalancer>,
    /// The agents' `--task_log_archive`: finished tasks' logs are read from
    /// it once their agent no longer has them.
    pub task_log_archive: Option<String>,
}

/// The framework's HAProxy.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// How HAProxy is run.
    pub haproxy: crate::lb::LbConfig,
    /// How long an instance is out of rotation before it is killed.
    pub drain: Duration,
}

/// Why the framework could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, the election or the scheduler driver could not start.
    #[error(transparent)]
    Start(#[from] corral_sdk::shell::ShellError),
    /// This instance's ZooKeeper session expired: another may lead now.
    #[error("lost leadership (the ZooKeeper session expired); exiting so that a supervisor restarts this instance")]
    LostLeadership,
    /// The task log archive could not be opened.
    #[error("--task_log_archive: {0}")]
    Archive(String),
    /// HAProxy could not be started.
    #[error("load balancer: {0}")]
    LoadBalancer(#[from] crate::lb::LbError),
}

/// What a request is stored as.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub request: Request,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deploy: Option<Deploy>,
    /// A service's deploy in progress (kept so that a new leader carries
    /// it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_deploy: Option<Deploy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Stateful instances: the agent holding each one's volume.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<u32, String>,
}

/// An API call answered by the actor.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A refusal of the API: status and message.
pub(crate) use corral_sdk::shell::ApiError;

/// The actor's inputs.
pub(crate) enum Input {
    Event(SchedulerEvent),
    Tick,
    SaveRequest(Request, Option<ClusterView>, Reply<serde_json::Value>),
    Deploy(Deploy, Option<ClusterView>, Reply<serde_json::Value>),
    CancelDeploy(String, String, Reply<serde_json::Value>),
    Scale(String, u32, Option<ClusterView>, Reply<serde_json::Value>),
    Pause(String, bool, Reply<serde_json::Value>),
    Run(String, Reply<serde_json::Value>),
    Delete(String, Reply<serde_json::Value>),
    GetRequest(String, Reply<serde_json::Value>),
    ListRequests(Reply<serde_json::Value>),
    ActiveTasks(Reply<serde_json::Value>),
    RunHistory(String, Reply<serde_json::Value>),
    DeployHistory(String, Reply<serde_json::Value>),
    TaskHistory(String, Reply<serde_json::Value>),
    Upstreams(Reply<serde_json::Value>),
    State(Reply<serde_json::Value>),
}

/// Who a task belongs to.
#[derive(Debug, Clone)]
enum Owner {
    Service,
    Job { job: String, run_id: String },
}

/// A job run waiting for an offer.
#[derive(Debug, Clone)]
struct QueuedRun {
    job: String,
    run_id: String,
}

struct Actor {
    scheduler: Scheduler,
    store: Arc<dyn StateStore>,
    services: Services,
    jobs: Jobs,
    records: BTreeMap<String, Record>,
    owners: BTreeMap<String, Owner>,
    queued: VecDeque<QueuedRun>,
    /// Deploys by `request/deploy` id, until they become active.
    pending_deploys: BTreeMap<String, Deploy>,
    /// Each job's state as last written to the store.
    job_cache: BTreeMap<String, Vec<u8>>,
    /// Each service's tasks as last written to the store.
    task_cache: BTreeMap<String, Vec<u8>>,
    /// Tasks taken over from the store, to reconcile once subscribed.
    adopted: Vec<(String, Option<String>)>,
    subscribed: bool,
    /// What HAProxy should route (the load balancer task applies it).
    backends: Option<tokio::sync::watch::Sender<Vec<crate::lb::Backend>>>,
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Runs the framework until the process ends (or, with `--zk`, until this
/// instance loses its leadership).
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
    let cluster = ClusterSource::default();
    let archive = match &config.task_log_archive {
        Some(uri) => Some(std::sync::Arc::from(
            corral_storage::archive::open(uri).map_err(|e| ServerError::Archive(e.to_string()))?,
        )),
        None => None,
    };
    let logs = crate::logs::LogSource::new(cluster.clone(), archive);
    let app = crate::api::router(tx.clone(), gate.clone(), cluster.clone(), logs);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the api server failed");
        }
    });
    tracing::info!(listen = %config.listen, master = %config.master, ha = config.zk.is_some(), "workloads framework serving");
    let mut info = framework_info(
        &config.name,
        &[config.role.as_str()],
        config.principal.as_deref(),
    );
    info.webui_url = Some(corral_sdk::webui::advertised_url(
        config.listen,
        None,
        "/ui",
    ));
    let (scheduler, events) =
        corral_sdk::shell::lead_and_start(election.as_ref(), store.as_ref(), &config.master, info)
            .await?;
    cluster.set(scheduler.clone());
    let backends = match &config.load_balancer {
        Some(lb) => Some(start_load_balancer(lb).await?),
        None => None,
    };
    let mut services = Services::with_policy(config.failures)
        .with_reservations(&config.role, config.principal.as_deref());
    if let Some(lb) = &config.load_balancer {
        services = services.with_load_balancer_drain(
            jiff::SignedDuration::try_from(lb.drain).unwrap_or(jiff::SignedDuration::ZERO),
        );
    }
    let mut actor = Actor {
        scheduler,
        store: Arc::clone(&store),
        services,
        jobs: Jobs::new(),
        records: BTreeMap::new(),
        owners: BTreeMap::new(),
        queued: VecDeque::new(),
        pending_deploys: BTreeMap::new(),
        job_cache: BTreeMap::new(),
        task_cache: BTreeMap::new(),
        adopted: Vec::new(),
        subscribed: false,
        backends,
    };
    actor.load().await;
    gate.set_leading();
    corral_sdk::shell::forward_events(events, tx.clone(), Input::Event);
    corral_sdk::shell::tick_every(tx.clone(), TICK, || Input::Tick);
    // Besides the periodic tick, a tick exactly when the next job is due.
    let (due_tx, mut due_rx) = tokio::sync::watch::channel::<Option<Timestamp>>(None);
    let due_tick = tx.clone();
    tokio::spawn(async move {
        let mut fired: Option<Timestamp> = None;
        loop {
            let next = *due_rx.borrow_and_update();
            let wait = match next {
                Some(at) if Some(at) != fired => {
                    let ms = at.as_millisecond() - now().as_millisecond();
                    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
                }
                _ => None,
            };
            match wait {
                Some(wait) => tokio::select! {
                    () = tokio::time::sleep(wait) => {
                        fired = next;
                        if due_tick.send(Input::Tick).await.is_err() {
                            return;
                        }
                    }
                    changed = due_rx.changed() => if changed.is_err() { return },
                },
                None => {
                    if due_rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    drop(tx);
    loop {
        let lost = corral_sdk::shell::leadership_lost(&election);
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    actor.handle(input).await;
                    actor.publish_backends();
                    due_tx.send_if_modified(|d| {
                        let next = actor.jobs.earliest_due();
                        let changed = *d != next;
                        *d = next;
                        changed
                    });
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

/// A service's tasks by the store key of their chunk
/// (`task-chunks/<id>/<n>`, [`TASK_CHUNK`] instance numbers each).
fn task_chunks(
    id: &str,
    tasks: Vec<crate::services::Task>,
) -> BTreeMap<String, Vec<crate::services::Task>> {
    let mut chunks: BTreeMap<String, Vec<crate::services::Task>> = BTreeMap::new();
    for t in tasks {
        let n = t.instance.saturating_sub(1) / TASK_CHUNK;
        chunks
            .entry(format!("task-chunks/{id}/{n}"))
            .or_default()
            .push(t);
    }
    chunks
}

/// Starts (or takes over) HAProxy and a task that applies each new set of
/// backends to it, the latest winning.
async fn start_load_balancer(
    lb: &LoadBalancer,
) -> Result<tokio::sync::watch::Sender<Vec<crate::lb::Backend>>, ServerError> {
    let mut haproxy = crate::lb::Haproxy::start(lb.haproxy.clone()).await?;
    let (tx, mut rx) = tokio::sync::watch::channel(Vec::<crate::lb::Backend>::new());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let backends = rx.borrow_and_update().clone();
            let servers: usize = backends.iter().map(|b| b.upstreams.len()).sum();
            match haproxy.apply(&backends).await {
                Ok(true) => tracing::info!(backends = backends.len(), servers, "haproxy reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "haproxy not updated"),
            }
        }
    });
    Ok(tx)
}

fn json_of<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn state_name(s: Option<&RequestState>) -> (&'static str, Option<String>) {
    match s {
        Some(RequestState::Active) | None => ("ACTIVE", None),
        Some(RequestState::SystemCooldown { reason }) => ("SYSTEM_COOLDOWN", Some(reason.clone())),
        Some(RequestState::Paused { reason }) => ("PAUSED", Some(reason.clone())),
    }
}

impl Actor {
    /// Every load-balanced SERVICE with its healthy instances.
    fn backends(&self) -> Vec<crate::lb::Backend> {
        self.records
            .keys()
            .filter_map(|id| {
                let path = self.services.service_base_path(id)?;
                Some(crate::lb::Backend {
                    request_id: id.clone(),
                    service_base_path: path.to_string(),
                    upstreams: self.services.upstreams(id),
                })
            })
            .collect()
    }

    /// Hands the backends to the load balancer task when they changed.
    fn publish_backends(&self) {
        if let Some(tx) = &self.backends {
            let now = self.backends();
            tx.send_if_modified(|b| {
                if *b == now {
                    false
                } else {
                    *b = now;
                    true
                }
            });
        }
    }

    async fn load(&mut self) {
        let keys = match self.store.list("requests").await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the requests from the store");
                return;
            }
        };
        for key in keys {
            let Ok(Some(v)) = self.store.get(&key).await else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Record>(&v.value) else {
                tracing::warn!(%key, "an unreadable request record is skipped");
                continue;
            };
            let id = record.request.id.clone();
            if let Err(e) = self.apply_request(&record.request) {
                tracing::warn!(request = %id, error = %e.message, "a stored request is refused now; skipped");
                continue;
            }
            let active = record.active_deploy.clone();
            let pending = record.pending_deploy.clone();
            let long_running = record.request.request_type.long_running();
            let paused = record.paused.is_some();
            self.records.insert(id.clone(), record);
            if let (Some(d), true) = (active, long_running) {
                let _ = self.services.restore_active(d);
            }
            if let Some(r) = self.records.get(&id) {
                if !r.volumes.is_empty() {
                    let _ = self.services.restore_volumes(&id, r.volumes.clone());
                }
            }
            if long_running {
                let tasks = self.load_tasks(&id).await;
                if !tasks.is_empty() {
                    for t in &tasks {
                        self.owners.insert(t.task_id.clone(), Owner::Service);
                        self.adopted
                            .push((t.task_id.clone(), Some(t.agent_id.clone())));
                    }
                    let n = tasks.len();
                    if self.services.adopt(&id, tasks).is_ok() {
                        tracing::info!(request = %id, tasks = n, "tasks taken over from the store");
                    }
                }
            }
            if let Some(d) = pending {
                // The deploy in progress starts over on this leader.
                if let Err(e) = self.apply_deploy(&d) {
                    tracing::warn!(request = %id, error = %e.message, "its stored deploy is refused now");
                }
                self.pending_deploys.insert(format!("{id}/{}", d.id), d);
            }
            if paused {
                let _ = self.services.set_paused(&id, true);
                let _ = self.jobs.set_paused(&id, true);
            }
            if !long_running {
                if let Ok(Some(v)) = self.store.get(&format!("jobs/{id}")).await {
                    match serde_json::from_slice::<crate::jobs::JobRecord>(&v.value) {
                        Ok(job) => {
                            match self.jobs.import(&id, job, now()) {
                                Ok(in_flight) => {
                                    // Runs the previous leader left going are
                                    // re-attached and reconciled.
                                    for run_id in in_flight {
                                        let task_id = format!("{id}-{run_id}");
                                        tracing::info!(job = %id, %run_id, "re-attaching a run in flight");
                                        self.owners.insert(
                                            task_id.clone(),
                                            Owner::Job {
                                                job: id.clone(),
                                                run_id,
                                            },
                                        );
                                        self.adopted.push((task_id, None));
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(request = %id, error = %e, "its stored job state is refused")
                                }
                            }
                            self.job_cache.insert(id.clone(), v.value);
                        }
                        Err(e) => {
                            tracing::warn!(request = %id, error = %e, "unreadable job state skipped")
                        }
                    }
                }
            }
        }
        // Task lists stored whole by earlier versions go once their tasks
        // are stored in chunks.
        if self.persist_tasks().await {
            for id in self.records.keys() {
                let _ = self.store.delete(&format!("tasks/{id}"), None).await;
            }
        }
        tracing::info!(
            requests = self.records.len(),
            "requests loaded from the store"
        );
    }

    /// Writes every job's state that changed since it was last written.
    /// Called before the commands a change returns are carried out, so a
    /// new leader never starts a run this one already decided.
    async fn persist_jobs(&mut self) {
        for id in self.jobs.ids() {
            let Some(record) = self.jobs.export(&id) else {
                continue;
            };
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            if self.job_cache.get(&id) == Some(&bytes) {
                continue;
            }
            match self.store.set(&format!("jobs/{id}"), bytes.clone()).await {
                Ok(_) => {
                    self.job_cache.insert(id, bytes);
                }
                Err(e) => tracing::error!(job = %id, error = %e, "cannot store the job's state"),
            }
        }
    }

    /// A service's stored tasks: the chunks under `task-chunks/<id>/`
    /// (and a single `tasks/<id>` list, as earlier versions wrote it).
    async fn load_tasks(&mut self, id: &str) -> Vec<crate::services::Task> {
        let mut keys = self
            .store
            .list(&format!("task-chunks/{id}"))
            .await
            .unwrap_or_default();
        keys.push(format!("tasks/{id}"));
        let mut tasks = Vec::new();
        for key in keys {
            let Ok(Some(v)) = self.store.get(&key).await else {
                continue;
            };
            match serde_json::from_slice::<Vec<crate::services::Task>>(&v.value) {
                Ok(chunk) => {
                    tasks.extend(chunk);
                    if key.starts_with("task-chunks/") {
                        self.task_cache.insert(key, v.value);
                    }
                }
                Err(e) => tracing::warn!(%key, error = %e, "unreadable task list skipped"),
            }
        }
        tasks
    }

    /// Writes every service's tasks that changed since they were last
    /// written (before the launches of that change are sent), so a new
    /// leader adopts the tasks instead of starting them again. They are
    /// kept in chunks of [`TASK_CHUNK`] instance numbers
    /// (`task-chunks/<id>/<n>`), so a chunk stays well under the store's
    /// largest value whatever the number of instances, and a change
    /// rewrites only its chunk.
    async fn persist_tasks(&mut self) -> bool {
        let mut all_stored = true;
        let ids: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.request.request_type.long_running())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let prefix = format!("task-chunks/{id}/");
            let mut chunks: BTreeMap<String, Vec<crate::services::Task>> = self
                .task_cache
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .map(|k| (k.clone(), Vec::new()))
                .collect();
            for (key, tasks) in task_chunks(&id, self.services.live_tasks(&id)) {
                chunks.insert(key, tasks);
            }
            for (key, tasks) in chunks {
                let bytes = serde_json::to_vec(&tasks).unwrap_or_default();
                if self.task_cache.get(&key) == Some(&bytes) {
                    continue;
                }
                let result = if tasks.is_empty() {
                    self.store.delete(&key, None).await.map(|_| ())
                } else {
                    self.store.set(&key, bytes.clone()).await.map(|_| ())
                };
                match result {
                    Ok(()) if tasks.is_empty() => {
                        self.task_cache.remove(&key);
                    }
                    Ok(()) => {
                        self.task_cache.insert(key, bytes);
                    }
                    Err(e) => {
                        all_stored = false;
                        tracing::error!(request = %id, %key, error = %e, "cannot store the tasks")
                    }
                }
            }
        }
        all_stored
    }

    /// Stores where stateful instances' volumes are, with their request,
    /// whenever that changed (before the launches that create them).
    async fn persist_volumes(&mut self) {
        let ids: Vec<String> = self.records.keys().cloned().collect();
        for id in ids {
            let volumes = self.services.volumes(&id);
            let changed = self.records.get(&id).is_some_and(|r| r.volumes != volumes);
            if changed {
                if let Some(r) = self.records.get_mut(&id) {
                    r.volumes = volumes;
                }
                if let Err(e) = self.persist(&id).await {
                    tracing::error!(request = %id, error = %e.message, "cannot store the volumes");
                }
            }
        }
    }

    async fn persist(&self, id: &str) -> Result<(), ApiError> {
        let key = format!("requests/{id}");
        let result = match self.records.get(id) {
            Some(r) => self
                .store
                .set(&key, serde_json::to_vec(r).unwrap_or_default())
                .await
                .map(|_| ()),
            None => self.store.delete(&key, None).await.map(|_| ()),
        };
        result.map_err(|e| ApiError::unavailable(format!("the state store: {e}")))
    }

    fn apply_request(&mut self, request: &Request) -> Result<(), ApiError> {
        request
            .validate()
            .map_err(|e| ApiError::bad(e.to_string()))?;
        if request.request_type.long_running() {
            self.services
                .upsert(request.clone())
                .map_err(|e| ApiError::bad(e.to_string()))
        } else {
            self.jobs
                .upsert(request, now())
                .map_err(|e| ApiError::bad(e.to_string()))
        }
    }

    fn apply_deploy(&mut self, deploy: &Deploy) -> Result<(), ApiError> {
        deploy
            .validate()
            .map_err(|e| ApiError::bad(e.to_string()))?;
        let Some(record) = self.records.get(&deploy.request_id) else {
            return Err(ApiError::not_found(format!(
                "requestId: no request {:?}; create it first",
                deploy.request_id
            )));
        };
        deploy
            .validate_for(&record.request)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        if let Some(path) = deploy.service_base_path.as_deref() {
            let taken = self.records.keys().find(|id| {
                **id != deploy.request_id
                    && self
                        .services
                        .service_base_path(id)
                        .is_some_and(|p| p.trim_end_matches('/') == path.trim_end_matches('/'))
            });
            if let Some(other) = taken {
                return Err(ApiError::bad(format!(
                    "serviceBasePath: {path} is already routed to request {other}"
                )));
            }
        }
        if record.request.request_type.long_running() {
            self.services
                .deploy(deploy.clone(), now())
                .map_err(|e| match e {
                    crate::services::ServiceError::Conflict(m) => ApiError::conflict(m),
                    e => ApiError::bad(e.to_string()),
                })?;
        }
        Ok(())
    }

    fn request_json(&self, id: &str) -> Option<serde_json::Value> {
        let record = self.records.get(id)?;
        let (state, reason) = if record.request.request_type.long_running() {
            state_name(self.services.state(id))
        } else if record.paused.is_some() {
            ("PAUSED", record.paused.clone())
        } else {
            ("ACTIVE", None)
        };
        let mut v = serde_json::json!({
            "request": json_of(&record.request),
            "state": state,
        });
        if let Some(reason) = reason {
            v["stateReason"] = reason.into();
        }
        if let Some(d) = &record.active_deploy {
            v["activeDeploy"] = json_of(d);
        }
        if let Some(p) = self.services.pending_deploy(id) {
            v["pendingDeployState"] =
                serde_json::json!({"deployMarker": {"requestId": id, "deployId": p}});
        }
        if let Some(why) = self.services.why_pending(id) {
            v["pendingReason"] = why.into();
        }
        if let Some(next) = self.jobs.next_due(id) {
            v["nextRunAt"] = next.as_millisecond().into();
        }
        Some(v)
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Event(e) => self.event(e).await,
            Input::Tick => {
                let t = now();
                let actions = self.services.tick(t);
                self.act(actions).await;
                self.persist_tasks().await;
                let cmds = self.jobs.tick(t);
                self.persist_jobs().await;
                self.commands(cmds).await;
                // Deploys that finished: the active one and the one in
                // progress are recorded.
                let ids: Vec<String> = self.records.keys().cloned().collect();
                for id in ids {
                    let active = self.services.active_deploy(&id).map(str::to_string);
                    let pending = self.services.pending_deploy(&id).map(str::to_string);
                    let Some(r) = self.records.get(&id) else {
                        continue;
                    };
                    if !r.request.request_type.long_running() {
                        continue;
                    }
                    let active_changed = match &active {
                        Some(a) => r.active_deploy.as_ref().is_none_or(|d| d.id != *a),
                        None => false,
                    };
                    let pending_changed =
                        r.pending_deploy.as_ref().map(|d| d.id.clone()) != pending;
                    if active_changed || pending_changed {
                        let deploy = match &active {
                            Some(a) if active_changed => self.pending_or_known_deploy(&id, a),
                            _ => None,
                        };
                        if let Some(r) = self.records.get_mut(&id) {
                            if let Some(d) = deploy {
                                r.active_deploy = Some(d);
                            }
                            if pending_changed && pending.is_none() {
                                r.pending_deploy = None;
                            }
                        }
                        let _ = self.persist(&id).await;
                    }
                }
            }
            Input::SaveRequest(request, cluster, reply) => {
                if let Some(why) = cluster.and_then(|c| c.refuse_request(&request)) {
                    let _ = reply.send(Err(ApiError::bad(why)));
                    return;
                }
                let id = request.id.clone();
                let result = match self.apply_request(&request) {
                    Ok(()) => {
                        let record = self.records.entry(id.clone()).or_insert_with(|| Record {
                            request: request.clone(),
                            active_deploy: None,
                            pending_deploy: None,
                            paused: None,
                            volumes: BTreeMap::new(),
                        });
                        record.request = request;
                        match self.persist(&id).await {
                            Ok(()) => Ok(self.request_json(&id).unwrap_or_default()),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Input::Deploy(deploy, cluster, reply) => {
                let id = deploy.request_id.clone();
                if let Some(why) = cluster.and_then(|c| c.refuse_deploy(&deploy)) {
                    let _ = reply.send(Err(ApiError::bad(why)));
                    return;
                }
                let result = self.apply_deploy(&deploy);
                let result = match result {
                    Ok(()) => {
                        let long_running = self
                            .records
                            .get(&id)
                            .is_some_and(|r| r.request.request_type.long_running());
                        self.pending_deploys
                            .insert(format!("{id}/{}", deploy.id), deploy.clone());
                        if long_running {
                            if let Some(r) = self.records.get_mut(&id) {
                                r.pending_deploy = Some(deploy.clone());
                            }
                        } else {
                            // Jobs run the latest deploy from their next run on.
                            if let Some(r) = self.records.get_mut(&id) {
                                r.active_deploy = Some(deploy.clone());
                            }
                            let run_once = self.records.get(&id).is_some_and(|r| {
                                r.request.request_type == crate::model::RequestType::RunOnce
                            });
                            if run_once {
                                if let Ok(cmds) = self.jobs.run_now(&id, now()) {
                                    self.commands(cmds).await;
                                }
                            }
                        }
                        self.persist(&id)
                            .await
                            .map(|()| self.request_json(&id).unwrap_or_default())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Input::CancelDeploy(request_id, deploy_id, reply) => {
                let result =
                    if self.services.pending_deploy(&request_id) != Some(deploy_id.as_str()) {
                        Err(ApiError::not_found(format!(
                            "deploy {deploy_id} of {request_id} is not in progress"
                        )))
                    } else {
                        match self.services.cancel_deploy(&request_id) {
                            Ok(actions) => {
                                self.act(actions).await;
                                Ok(self.request_json(&request_id).unwrap_or_default())
                            }
                            Err(e) => Err(ApiError::conflict(e.to_string())),
                        }
                    };
                let _ = reply.send(result);
            }
            Input::Scale(id, instances, cluster, reply) => {
                let result = match self.records.get(&id).map(|r| r.request.clone()) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(mut request) => {
                        request.instances = Some(instances);
                        let refused = cluster
                            .and_then(|c| c.refuse_request(&request))
                            .map(|why| Err(ApiError::bad(why)));
                        match refused.unwrap_or_else(|| self.apply_request(&request)) {
                            Ok(()) => {
                                if let Some(r) = self.records.get_mut(&id) {
                                    r.request = request;
                                }
                                let actions = self.services.tick(now());
                                self.act(actions).await;
                                self.persist(&id)
                                    .await
                                    .map(|()| self.request_json(&id).unwrap_or_default())
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                let _ = reply.send(result);
            }
            Input::Pause(id, paused, reply) => {
                let result = match self.records.get(&id).map(|r| r.request.request_type) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(t) => {
                        if t.long_running() {
                            if let Ok(actions) = self.services.set_paused(&id, paused) {
                                self.act(actions).await;
                            }
                        } else {
                            let _ = self.jobs.set_paused(&id, paused);
                        }
                        if let Some(r) = self.records.get_mut(&id) {
                            r.paused = paused.then(|| "paused by a user".to_string());
                        }
                        self.persist(&id)
                            .await
                            .map(|()| self.request_json(&id).unwrap_or_default())
                    }
                };
                let _ = reply.send(result);
            }
            Input::Run(id, reply) => {
                let result = match self.records.get(&id) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(r) if r.request.request_type.long_running() => Err(ApiError::bad(format!(
                        "{id} is a long-running request: only SCHEDULED, ON_DEMAND and RUN_ONCE requests run on demand"
                    ))),
                    Some(r) if r.active_deploy.is_none() => Err(ApiError::conflict(format!(
                        "{id} has no deploy yet: POST /api/deploys first"
                    ))),
                    Some(_) => match self.jobs.run_now(&id, now()) {
                        Ok(cmds) => {
                            self.persist_jobs().await;
                            let run_id = cmds.iter().find_map(|c| match c {
                                Command::Launch { run_id, .. } => Some(run_id.clone()),
                                _ => None,
                            });
                            self.commands(cmds).await;
                            Ok(serde_json::json!({"requestId": id, "runId": run_id}))
                        }
                        Err(e) => Err(ApiError::bad(e.to_string())),
                    },
                };
                let _ = reply.send(result);
            }
            Input::Delete(id, reply) => {
                let result = match self.records.remove(&id) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(record) => {
                        if record.request.request_type.long_running() {
                            if let Ok(actions) = self.services.delete(&id) {
                                self.act(actions).await;
                            }
                            let prefix = format!("task-chunks/{id}/");
                            let keys: Vec<String> = self
                                .task_cache
                                .keys()
                                .filter(|k| k.starts_with(&prefix))
                                .cloned()
                                .collect();
                            for key in keys {
                                self.task_cache.remove(&key);
                                let _ = self.store.delete(&key, None).await;
                            }
                            let _ = self.store.delete(&format!("tasks/{id}"), None).await;
                        } else {
                            let cmds = self.jobs.remove(&id);
                            self.commands(cmds).await;
                            self.job_cache.remove(&id);
                            let _ = self.store.delete(&format!("jobs/{id}"), None).await;
                        }
                        self.persist(&id).await.map(|()| {
                            serde_json::json!({"request": json_of(&record.request), "state": "DELETED"})
                        })
                    }
                };
                let _ = reply.send(result);
            }
            Input::GetRequest(id, reply) => {
                let _ = reply.send(
                    self.request_json(&id)
                        .ok_or_else(|| ApiError::not_found(format!("no request {id:?}"))),
                );
            }
            Input::ListRequests(reply) => {
                let all: Vec<serde_json::Value> = self
                    .records
                    .keys()
                    .filter_map(|id| self.request_json(id))
                    .collect();
                let _ = reply.send(Ok(serde_json::Value::Array(all)));
            }
            Input::ActiveTasks(reply) => {
                let mut out = Vec::new();
                for id in self.records.keys() {
                    for t in self.services.tasks(id) {
                        if t.phase == TaskPhase::Killing {
                            continue;
                        }
                        out.push(serde_json::json!({
                            "taskId": {"id": t.task_id, "requestId": id, "deployId": t.deploy_id,
                                       "instanceNo": t.instance, "host": t.placement.hostname,
                                       "startedAt": t.launched_at.as_millisecond()},
                            "agentId": t.agent_id,
                            "ports": t.ports,
                            "healthy": t.phase == TaskPhase::Healthy,
                        }));
                    }
                    for r in self.jobs.runs(id) {
                        if matches!(r.outcome, Outcome::Running | Outcome::Launching) {
                            out.push(serde_json::json!({
                                "taskId": {"id": format!("{id}-{}", r.run_id), "requestId": id,
                                           "startedAt": r.started_at.map(|s| s.as_millisecond())},
                                "runId": r.run_id,
                            }));
                        }
                    }
                }
                let _ = reply.send(Ok(serde_json::Value::Array(out)));
            }
            Input::RunHistory(id, reply) => {
                let result = if self.records.contains_key(&id) {
                    let runs: Vec<serde_json::Value> = self
                        .jobs
                        .runs(&id)
                        .iter()
                        .map(|r| {
                            let (outcome, reason) = match &r.outcome {
                                Outcome::Launching => ("LAUNCHING", None),
                                Outcome::Running => ("RUNNING", None),
                                Outcome::Succeeded => ("SUCCEEDED", None),
                                Outcome::Failed(m) => ("FAILED", Some(m.clone())),
                                Outcome::TimedOut => ("TIMED_OUT", None),
                                Outcome::Replaced => ("REPLACED", None),
                                Outcome::Skipped(m) => ("SKIPPED", Some(m.clone())),
                                Outcome::Missed(m) => ("MISSED", Some(m.clone())),
                            };
                            serde_json::json!({
                                "runId": r.run_id,
                                "scheduledFor": r.scheduled_for.as_millisecond(),
                                "attempt": r.attempt,
                                "startedAt": r.started_at.map(|t| t.as_millisecond()),
                                "runningAt": r.running_at.map(|t| t.as_millisecond()),
                                "finishedAt": r.finished_at.map(|t| t.as_millisecond()),
                                "durationMillis": match (r.started_at, r.finished_at) {
                                    (Some(s), Some(f)) => Some(f.duration_since(s).as_millis() as i64),
                                    _ => None,
                                },
                                "outcome": outcome,
                                "reason": reason,
                            })
                        })
                        .collect();
                    Ok(serde_json::Value::Array(runs))
                } else {
                    Err(ApiError::not_found(format!("no request {id:?}")))
                };
                let _ = reply.send(result);
            }
            Input::DeployHistory(id, reply) => {
                let result = match self.records.get(&id) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(_) => Ok(serde_json::Value::Array(
                        self.services
                            .deploy_history(&id)
                            .iter()
                            .map(|(deploy_id, state)| {
                                let (state, message) = match state {
                                    crate::services::DeployState::Waiting => ("WAITING", None),
                                    crate::services::DeployState::Succeeded => ("SUCCEEDED", None),
                                    crate::services::DeployState::Failed(m) => {
                                        ("FAILED", Some(m.clone()))
                                    }
                                    crate::services::DeployState::Canceled => ("CANCELED", None),
                                };
                                serde_json::json!({
                                    "deployMarker": {"requestId": id, "deployId": deploy_id},
                                    "deployResult": {"deployState": state, "message": message},
                                })
                            })
                            .collect(),
                    )),
                };
                let _ = reply.send(result);
            }
            Input::TaskHistory(id, reply) => {
                let result = match self.records.get(&id) {
                    None => Err(ApiError::not_found(format!("no request {id:?}"))),
                    Some(_) => Ok(json_of(&self.services.task_history(&id))),
                };
                let _ = reply.send(result);
            }
            Input::Upstreams(reply) => {
                let _ = reply.send(Ok(json_of(&self.backends())));
            }
            Input::State(reply) => {
                let active_tasks = self
                    .records
                    .keys()
                    .map(|id| self.services.tasks(id).len())
                    .sum::<usize>();
                let _ = reply.send(Ok(serde_json::json!({
                    "allRequests": self.records.len(),
                    "activeTasks": active_tasks,
                    "subscribed": self.subscribed,
                    "frameworkId": self.scheduler.framework_id(),
                    "master": self.scheduler.master(),
                })));
            }
        }
    }
}

impl Actor {
    fn pending_or_known_deploy(&mut self, request_id: &str, deploy_id: &str) -> Option<Deploy> {
        self.pending_deploys
            .remove(&format!("{request_id}/{deploy_id}"))
            .or_else(|| {
                self.records
                    .get(request_id)
                    .and_then(|r| r.active_deploy.clone())
                    .filter(|d| d.id == deploy_id)
            })
    }

    async fn event(&mut self, event: SchedulerEvent) {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
                self.subscribed = true;
                // Unknown tasks are killed, known ones updated; adopted ones
                // the master does not know are replaced.
                let adopted = std::mem::take(&mut self.adopted);
                corral_sdk::shell::on_subscribed(
                    self.store.as_ref(),
                    &self.scheduler,
                    framework_id,
                    adopted,
                )
                .await;
                if resubscribed {
                    tracing::info!("re-subscribed; reconciling");
                }
            }
            SchedulerEvent::Disconnected { reason } => {
                self.subscribed = false;
                tracing::warn!(%reason, "disconnected from the master");
            }
            SchedulerEvent::Offers(offers) => self.offers(offers).await,
            SchedulerEvent::Update(status) => self.status(status).await,
            SchedulerEvent::Error(message) => {
                tracing::error!(%message, "the master refused the framework");
            }
            _ => {}
        }
    }

    async fn status(&mut self, status: v1::TaskStatus) {
        let task_id = status.task_id.value.clone();
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::TaskUnknown);
        tracing::info!(
            task_id = %task_id,
            state = state.as_str_name(),
            healthy = ?status.healthy,
            message = status.message.as_deref().unwrap_or(""),
            "task status"
        );
        let terminal = !matches!(
            state,
            v1::TaskState::TaskStaging
                | v1::TaskState::TaskStarting
                | v1::TaskState::TaskRunning
                | v1::TaskState::TaskKilling
        );
        match self.owners.get(&task_id).cloned() {
            Some(Owner::Service) => {
                let actions = self.services.update(&task_id, state, status.healthy, now());
                self.act(actions).await;
                self.persist_tasks().await;
            }
            Some(Owner::Job { job, run_id }) if state == v1::TaskState::TaskUnknown => {
                // A re-attached run the master does not know.
                let cmds = self.jobs.run_unknown(&job, &run_id, now());
                self.persist_jobs().await;
                self.commands(cmds).await;
            }
            Some(Owner::Job { job, run_id }) => {
                if state == v1::TaskState::TaskRunning {
                    self.jobs.run_started(&job, &run_id, now());
                } else if terminal {
                    let result = if state == v1::TaskState::TaskFinished {
                        Ok(())
                    } else {
                        Err(format!(
                            "{}{}",
                            state.as_str_name(),
                            status
                                .message
                                .as_deref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ))
                    };
                    let cmds = self.jobs.run_finished(&job, &run_id, result, now());
                    self.persist_jobs().await;
                    self.commands(cmds).await;
                }
            }
            None if !terminal => {
                // Not ours (any more): a task from before a restart.
                tracing::info!(task_id = %task_id, "killing a task this instance does not know");
                let agent = status.agent_id.as_ref().map(|a| a.value.clone());
                let _ = self.scheduler.kill(&task_id, agent.as_deref(), None).await;
            }
            None => {}
        }
        if terminal {
            self.owners.remove(&task_id);
        }
        if let Err(e) = self.scheduler.acknowledge(&status).await {
            tracing::warn!(error = %e, task_id = %task_id, "acknowledgement failed");
        }
    }

    async fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Kill { task_id, agent_id } => {
                    if let Err(e) = self.scheduler.kill(&task_id, Some(&agent_id), None).await {
                        tracing::warn!(error = %e, task_id = %task_id, "kill failed");
                    }
                }
                Action::Launch { .. } | Action::Operations { .. } => {
                    // These come only from `offers`, which sends them.
                }
            }
        }
    }

    async fn commands(&mut self, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Launch { job, run_id } => self.queued.push_back(QueuedRun { job, run_id }),
                Command::Kill { job, run_id } => {
                    let task_id = format!("{job}-{run_id}");
                    if let Some(pos) = self.queued.iter().position(|q| q.run_id == run_id) {
                        self.queued.remove(pos);
                        let cmds = self.jobs.run_finished(
                            &job,
                            &run_id,
                            Err("killed before it was launched".into()),
                            now(),
                        );
                        Box::pin(self.commands(cmds)).await;
                    } else if let Err(e) = self.scheduler.kill(&task_id, None, None).await {
                        tracing::warn!(error = %e, task_id = %task_id, "kill failed");
                    }
                }
            }
        }
        if !self.queued.is_empty() {
            let _ = self.scheduler.revive(vec![]).await;
        }
    }

    async fn offers(&mut self, offers: Vec<v1::Offer>) {
        let t = now();
        let mut launches: BTreeMap<String, Vec<v1::TaskInfo>> = BTreeMap::new();
        // Operations to run before each offer's launches (a stateful
        // instance's RESERVE and CREATE, the cleanup of deleted requests).
        let mut operations: BTreeMap<String, Vec<v1::offer::Operation>> = BTreeMap::new();
        let actions = self.services.offers(&offers, t);
        // What services left of each offer is for job runs.
        let mut left = self.services.left_of_offers();
        for action in actions {
            match action {
                Action::Launch {
                    offer_id,
                    agent_id,
                    tasks,
                } => {
                    for spec in tasks {
                        self.owners.insert(spec.task_id.clone(), Owner::Service);
                        operations
                            .entry(offer_id.value.clone())
                            .or_default()
                            .extend(spec.operations);
                        let env = [
                            ("INSTANCE_NO".to_string(), spec.instance.to_string()),
                            ("TASK_REQUEST_ID".to_string(), spec.request_id.clone()),
                            ("TASK_DEPLOY_ID".to_string(), spec.deploy.id.clone()),
                        ];
                        launches
                            .entry(offer_id.value.clone())
                            .or_default()
                            .push(task_info(
                                &spec.task_id,
                                &spec.request_id,
                                &spec.deploy,
                                &agent_id,
                                spec.resources,
                                &spec.ports,
                                &env,
                            ));
                    }
                }
                Action::Operations {
                    offer_id,
                    operations: ops,
                } => {
                    tracing::info!(offer = %offer_id.value, operations = ops.len(), "releasing the volumes of deleted requests");
                    operations
                        .entry(offer_id.value.clone())
                        .or_default()
                        .extend(ops);
                }
                Action::Kill { .. } => {}
            }
        }
        // Stateful instances' volumes are stored with their request.
        self.persist_volumes().await;
        // The tasks are stored before they are launched.
        self.persist_tasks().await;
        // Job runs on what is left.
        let mut still = VecDeque::new();
        while let Some(q) = self.queued.pop_front() {
            let Some(deploy) = self
                .records
                .get(&q.job)
                .and_then(|r| r.active_deploy.clone())
            else {
                let cmds = self.jobs.run_finished(
                    &q.job,
                    &q.run_id,
                    Err("the request has no deploy".into()),
                    t,
                );
                Box::pin(self.commands(cmds)).await;
                continue;
            };
            let res = deploy.resources.clone();
            let need = Need {
                cpus: res.as_ref().map_or(0.1, |r| r.cpus),
                mem: res.as_ref().map_or(64.0, |r| r.memory_mb),
                disk: res.as_ref().map_or(0.0, |r| r.disk_mb),
                ports: res.as_ref().map_or(0, |r| r.num_ports as usize),
            };
            let placed = offers.iter().find_map(|o| {
                let l = left.get(&o.id.value)?;
                let (taken, rest) = take(l, &need)?;
                Some((o, taken, rest))
            });
            match placed {
                Some((offer, taken, rest)) => {
                    left.insert(offer.id.value.clone(), rest);
                    let task_id = format!("{}-{}", q.job, q.run_id);
                    let ports = ports_of(&taken);
                    self.owners.insert(
                        task_id.clone(),
                        Owner::Job {
                            job: q.job.clone(),
                            run_id: q.run_id.clone(),
                        },
                    );
                    let env = [
                        ("TASK_REQUEST_ID".to_string(), q.job.clone()),
                        ("TASK_RUN_ID".to_string(), q.run_id.clone()),
                    ];
                    launches
                        .entry(offer.id.value.clone())
                        .or_default()
                        .push(task_info(
                            &task_id,
                            &q.job,
                            &deploy,
                            &offer.agent_id,
                            taken,
                            &ports,
                            &env,
                        ));
                }
                None => still.push_back(q),
            }
        }
        self.queued = still;
        for offer in &offers {
            let mut ops = operations.remove(&offer.id.value).unwrap_or_default();
            let tasks = launches.remove(&offer.id.value).unwrap_or_default();
            let n = tasks.len();
            if !tasks.is_empty() {
                ops.push(v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                    ..Default::default()
                });
            }
            if ops.is_empty() {
                let _ = self
                    .scheduler
                    .decline(vec![offer.id.clone()], Some(1.0))
                    .await;
                continue;
            }
            let count = ops.len();
            match self
                .scheduler
                .accept(vec![offer.id.clone()], ops, Some(1.0))
                .await
            {
                Ok(()) => {
                    tracing::info!(tasks = n, operations = count, host = %offer.hostname, "accepted")
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_stored_in_chunks_that_stay_small_at_the_most_instances() {
        let tasks: Vec<crate::services::Task> = (1..=crate::model::MAX_INSTANCES)
            .map(|i| crate::services::Task {
                task_id: format!("a-request-id-of-some-length-deploy-7-1796369714081-{i}-{i}"),
                deploy_id: "deploy-7".into(),
                instance: i,
                agent_id: "db4ac1c4-2465-4b75-ab7d-8172879d84fc-S12".into(),
                placement: corral_sdk::offers::Placement {
                    hostname: "worker-node-0042.example.internal".into(),
                    attributes: [("rack".to_string(), "r17".to_string())].into(),
                },
                ports: vec![31000, 31001, 31002],
                phase: TaskPhase::Healthy,
                launched_at: Timestamp::UNIX_EPOCH,
            })
            .collect();
        let chunks = task_chunks("web", tasks);
        assert_eq!(
            chunks.len(),
            (crate::model::MAX_INSTANCES / TASK_CHUNK) as usize
        );
        assert!(chunks.contains_key("task-chunks/web/0"));
        for (key, tasks) in &chunks {
            let bytes = serde_json::to_vec(tasks).expect("json").len();
            assert!(
                bytes < corral_sdk::store::MAX_VALUE_BYTES / 2,
                "{key}: {bytes} bytes"
            );
            assert_eq!(tasks.len(), TASK_CHUNK as usize);
        }
    }
}
