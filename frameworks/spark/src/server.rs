//! The shell: the SDK's scheduler driver, the state store, a timer and the
//! two APIs (Spark's submission protocol and the dispatcher's JSON, which
//! the web pages under `/ui` read too) feed
//! one actor over a bounded channel of [`Input`]s. The actor runs the pure
//! cores — [`Dispatcher`] (the queue), [`plan`] (sizes), [`place`] (a whole
//! application on offers or nothing) — and carries out what they return:
//! launches, kills, store writes.
//!
//! Offers are held while drivers wait (up to `hold`), so an application
//! larger than one offer is placed across several; when nothing waits they
//! are declined and the dispatcher's roles suppressed until the next
//! submission. One application is placed per offer per round: the rest of
//! the offer goes back to the allocator, so its DRF, not the order of
//! submissions, decides which role runs next.
//!
//! Every driver is stored (`drivers/<id>`) before its tasks are launched,
//! with the FrameworkID, so a restarted dispatcher or a new leader
//! re-subscribes as the same framework, takes its drivers over and
//! reconciles their tasks; `--status` keeps answering throughout. A driver
//! whose task the master no longer knows is queued again; tasks nobody
//! knows are killed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::v1;
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerEvent};
use corral_sdk::store::StateStore;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{ApiCall, LogTarget, Query};
use crate::calls::{answer, volume_of, Call, Context, CONSTRAINTS_KEY, DRIVER_CONSTRAINTS_KEY};
use crate::gang::{place, Ask, Room, VolumeUse};
use crate::plan::{parse_constraints, plan, PlanDefaults};
use crate::queue::{ClusterTask, Command, Dispatcher, Driver, Limits};
use crate::tasks::{driver_task, master_task, worker_task, Endpoints, Setup};

/// How often the actor is ticked.
const TICK: Duration = Duration::from_millis(250);
/// Inputs buffered for the actor.
const INPUTS: usize = 1024;
/// ZooKeeper session timeout.
const SESSION: Duration = Duration::from_secs(10);

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--master`: `host:port[,...]` or `zk://...`.
    pub master: String,
    /// Where the submission server and the JSON API listen (Spark's
    /// REST port: 6066).
    pub listen: SocketAddr,
    /// The embedded store's directory (`None`: in memory).
    pub state_dir: Option<std::path::PathBuf>,
    /// `zk://host:port/path`: state in ZooKeeper and leader election.
    pub zk: Option<String>,
    /// The roles submissions may run as (`spark.corral.role`); the first is
    /// the default.
    pub roles: Vec<String>,
    /// The principal it registers with.
    pub principal: Option<String>,
    /// The framework's name.
    pub name: String,
    /// `serverSparkVersion` in answers.
    pub server_version: String,
    /// Queue bounds and priorities.
    pub limits: Limits,
    /// How applications are sized.
    pub sizing: PlanDefaults,
    /// What tasks are made of.
    pub setup: Setup,
    /// The dispatcher's configuration (driver defaults:
    /// `spark.corral.dispatcher.driverDefault.*`).
    pub conf: BTreeMap<String, String>,
    /// How long offers are held for waiting drivers.
    pub hold: Duration,
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, the election or the scheduler driver could not start.
    #[error(transparent)]
    Start(#[from] corral_sdk::shell::ShellError),
    /// This instance's ZooKeeper session expired: another may lead now.
    #[error("lost leadership (the ZooKeeper session expired); exiting so that a supervisor restarts this instance")]
    LostLeadership,
}

/// The actor's inputs.
pub(crate) enum Input {
    Event(SchedulerEvent),
    Tick,
    Spark(ApiCall),
    Query(Query),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A volume the dispatcher created: where it is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KnownVolume {
    role: String,
    agent_id: String,
}

struct Actor {
    scheduler: Scheduler,
    store: Arc<dyn StateStore>,
    config: Config,
    dispatcher: Dispatcher,
    /// Offers held for waiting drivers, with when they came.
    held: Vec<(v1::Offer, i64)>,
    /// Why each waiting driver is not launched yet.
    why: BTreeMap<String, String>,
    /// Volumes created for drivers, by persistence id.
    volumes: BTreeMap<String, KnownVolume>,
    /// What the store holds, by driver id.
    written: BTreeMap<String, Vec<u8>>,
    /// Drivers whose last write or delete failed (retried on the next).
    unsaved: BTreeSet<String>,
    /// Tasks taken over from the store, reconciled on SUBSCRIBED.
    adopted: Vec<(String, Option<String>)>,
    /// The roles whose offers are suppressed.
    suppressed: BTreeSet<String>,
}

/// Runs the dispatcher until the process ends or, with `--zk`, until this
/// instance loses its leadership.
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
    let (calls_tx, mut calls_rx) = mpsc::channel::<ApiCall>(INPUTS);
    let (queries_tx, mut queries_rx) = mpsc::channel::<Query>(INPUTS);
    let app = crate::api::router(calls_tx, gate.clone(), &config.server_version)
        .merge(crate::api::json_router(queries_tx.clone(), gate.clone()))
        .merge(crate::webui::router(queries_tx, gate.clone()));
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(c) = calls_rx.recv().await {
            if forward.send(Input::Spark(c)).await.is_err() {
                return;
            }
        }
    });
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(q) = queries_rx.recv().await {
            if forward.send(Input::Query(q)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the api server failed");
        }
    });
    tracing::info!(listen = %config.listen, master = %config.master, roles = ?config.roles, ha = config.zk.is_some(), "spark dispatcher serving");
    let roles: Vec<&str> = config.roles.iter().map(String::as_str).collect();
    let mut info = framework_info(&config.name, &roles, config.principal.as_deref());
    info.webui_url = Some(corral_sdk::webui::advertised_url(
        config.listen,
        None,
        "/ui",
    ));
    let (scheduler, events) =
        corral_sdk::shell::lead_and_start(election.as_ref(), store.as_ref(), &config.master, info)
            .await?;
    let mut actor = Actor {
        scheduler,
        store: Arc::clone(&store),
        dispatcher: Dispatcher::new(config.limits.clone()),
        config,
        held: Vec::new(),
        why: BTreeMap::new(),
        volumes: BTreeMap::new(),
        written: BTreeMap::new(),
        unsaved: BTreeSet::new(),
        adopted: Vec::new(),
        suppressed: BTreeSet::new(),
    };
    actor.load().await;
    gate.set_leading();
    corral_sdk::shell::forward_events(events, tx.clone(), Input::Event);
    corral_sdk::shell::tick_every(tx.clone(), TICK, || Input::Tick);
    drop(tx);
    loop {
        let lost = corral_sdk::shell::leadership_lost(&election);
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => actor.handle(input).await,
                None => return Ok(()),
            },
            () = lost => {
                actor.scheduler.stop();
                return Err(ServerError::LostLeadership);
            }
        }
    }
}

/// A driver as the JSON API shows it.
fn driver_json(d: &Driver, why: Option<&String>) -> Value {
    let app = &d.application;
    json!({
        "submissionId": d.submission_id,
        "name": app.property("spark.app.name"),
        "role": d.role,
        "queue": d.queue,
        "priority": d.priority,
        "state": d.state.as_str(),
        "mainClass": app.main_class,
        "appResource": app.app_resource,
        "appArgs": app.app_args,
        "supervise": app.supervise(),
        "submittedMs": d.submitted_ms,
        "startedMs": d.started_ms,
        "finishedMs": d.finished_ms,
        "attempts": d.attempts,
        "notBeforeMs": d.not_before_ms,
        "taskId": d.task_id,
        "agentId": d.agent_id,
        "hostname": d.hostname,
        "masterUrl": d.master_url,
        "uiUrl": d.ui_url,
        "cluster": d.cluster,
        "message": d.message,
        "whyPending": why,
    })
}

fn terminal(state: v1::TaskState) -> bool {
    !matches!(
        state,
        v1::TaskState::TaskStaging
            | v1::TaskState::TaskStarting
            | v1::TaskState::TaskRunning
            | v1::TaskState::TaskKilling
            | v1::TaskState::TaskUnreachable
    )
}

impl Actor {
    /// Takes the stored drivers and volumes over.
    async fn load(&mut self) {
        let mut live = Vec::new();
        let mut history = Vec::new();
        match self.store.list("drivers").await {
            Ok(keys) => {
                for key in keys {
                    let Ok(Some(v)) = self.store.get(&key).await else {
                        continue;
                    };
                    match serde_json::from_slice::<Driver>(&v.value) {
                        Ok(d) => {
                            self.written.insert(d.submission_id.clone(), v.value);
                            if d.state.is_final() {
                                history.push(d);
                            } else {
                                live.push(d);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "an unreadable driver record is skipped")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the drivers from the store"),
        }
        history.sort_by_key(|d| (d.finished_ms, d.submitted_ms));
        let (n_live, n_done) = (live.len(), history.len());
        let mut adopted = self.dispatcher.import(live, history);
        for d in self.dispatcher.live() {
            adopted.extend(
                d.cluster
                    .iter()
                    .map(|c| (c.task_id.clone(), Some(c.agent_id.clone()))),
            );
        }
        self.adopted = adopted;
        if let Ok(keys) = self.store.list("volumes").await {
            for key in keys {
                if let Ok(Some(v)) = self.store.get(&key).await {
                    if let Ok(known) = serde_json::from_slice::<KnownVolume>(&v.value) {
                        let id = key.rsplit('/').next().unwrap_or_default().to_string();
                        self.volumes.insert(id, known);
                    }
                }
            }
        }
        tracing::info!(
            live = n_live,
            finished = n_done,
            tasks = self.adopted.len(),
            "drivers taken over from the store"
        );
    }

    /// Writes every driver that changed since it was last written, and
    /// deletes those no longer retained.
    async fn persist(&mut self) {
        let mut changed = self.dispatcher.take_changed();
        changed.append(&mut self.unsaved);
        for id in changed {
            let key = format!("drivers/{id}");
            let Some(d) = self.dispatcher.get(&id) else {
                if self.written.contains_key(&id) {
                    match self.store.delete(&key, None).await {
                        Ok(_) => {
                            self.written.remove(&id);
                        }
                        Err(e) => {
                            tracing::error!(driver = %id, error = %e, "cannot delete the driver");
                            self.unsaved.insert(id);
                        }
                    }
                }
                continue;
            };
            let bytes = serde_json::to_vec(d).unwrap_or_default();
            if self.written.get(&id) == Some(&bytes) {
                continue;
            }
            match self.store.set(&key, bytes.clone()).await {
                Ok(_) => {
                    self.written.insert(id, bytes);
                }
                Err(e) => {
                    tracing::error!(driver = %id, error = %e, "cannot store the driver");
                    self.unsaved.insert(id);
                }
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Event(e) => self.event(e).await,
            Input::Tick => self.tick().await,
            Input::Spark(call) => {
                let cx = Context {
                    server_version: &self.config.server_version,
                    default_role: &self.config.roles[0],
                    roles: &self.config.roles,
                    defaults: &self.config.conf,
                    sizing: &self.config.sizing,
                    now_ms: now_ms(),
                };
                // A status call changes nothing: answered without a store
                // write or a placement round.
                let read_only = matches!(call.call, Call::Status(_));
                let (reply, cmds) = answer(&mut self.dispatcher, call.call, &cx);
                if read_only {
                    let _ = call.reply.send(reply);
                    return;
                }
                self.persist().await;
                let _ = call.reply.send(reply);
                self.commands(cmds).await;
                self.launch().await;
            }
            Input::Query(q) => self.query(q),
        }
    }

    fn query(&self, q: Query) {
        match q {
            Query::Drivers(reply) => {
                let live: Vec<Value> = self
                    .dispatcher
                    .live()
                    .map(|d| driver_json(d, self.why.get(&d.submission_id)))
                    .collect();
                let finished: Vec<Value> = self
                    .dispatcher
                    .history()
                    .map(|d| driver_json(d, None))
                    .collect();
                let limits = self.dispatcher.limits();
                let queued = self
                    .dispatcher
                    .live()
                    .filter(|d| d.task_id.is_none())
                    .count();
                let _ = reply.send(json!({
                    "drivers": live,
                    "finished": finished,
                    "queue": {"queued": queued, "capacity": limits.max_queued, "retained": limits.retained,
                              "priorities": limits.queue_priorities},
                    "roles": self.config.roles,
                    "frameworkId": self.scheduler.framework_id(),
                }));
            }
            Query::Driver(id, reply) => {
                let _ = reply.send(
                    self.dispatcher
                        .get(&id)
                        .map(|d| driver_json(d, self.why.get(&id))),
                );
            }
            Query::LogTarget(id, reply) => {
                let target = match self.dispatcher.get(&id) {
                    None => Err(corral_sdk::shell::ApiError::not_found(format!(
                        "no driver {id} (never submitted, or no longer retained)"
                    ))),
                    Some(d) => {
                        let task = self.dispatcher.latest_task_id(&d.submission_id);
                        match (task, self.scheduler.master(), self.scheduler.framework_id()) {
                            (None, _, _) => Err(corral_sdk::shell::ApiError::not_found(format!(
                                "driver {id} has not been launched yet"
                            ))),
                            (Some(task_id), Some(master), Some(framework)) => Ok(LogTarget {
                                master,
                                framework,
                                task_id,
                            }),
                            _ => Err(corral_sdk::shell::ApiError::unavailable(
                                "the dispatcher is not subscribed yet; retry shortly",
                            )),
                        }
                    }
                };
                let _ = reply.send(target);
            }
        }
    }

    async fn event(&mut self, event: SchedulerEvent) {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
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
                // Offers held before are gone with the old subscription.
                self.held.clear();
                self.suppressed.clear();
                self.suppress_or_revive().await;
            }
            SchedulerEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "disconnected from the master");
                self.held.clear();
            }
            SchedulerEvent::Offers(offers) => {
                let now = now_ms();
                self.held.extend(offers.into_iter().map(|o| (o, now)));
                self.launch().await;
            }
            SchedulerEvent::Rescind(id) => self.held.retain(|(o, _)| o.id != id),
            SchedulerEvent::Update(status) => self.status(status).await,
            SchedulerEvent::Error(message) => {
                tracing::error!(%message, "the master refused the framework");
            }
            _ => {}
        }
    }

    async fn kill(&self, task_id: &str, agent_id: Option<&str>) {
        if let Err(e) = self.scheduler.kill(task_id, agent_id, None).await {
            tracing::warn!(task_id, error = %e, "kill failed");
        }
    }

    /// Kills what the cores ask, and with a driver its standalone cluster.
    async fn commands(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            let Command::Kill { task_id, agent_id } = c;
            tracing::info!(task_id = %task_id, "killing a driver");
            self.kill(&task_id, agent_id.as_deref()).await;
            if let Some(d) = self.dispatcher.by_task(&task_id) {
                for t in d.cluster.clone() {
                    self.kill(&t.task_id, Some(&t.agent_id)).await;
                }
            }
        }
    }

    async fn status(&mut self, status: v1::TaskStatus) {
        let task_id = status.task_id.value.clone();
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::TaskUnknown);
        let message = status.message.clone();
        tracing::info!(task_id = %task_id, state = state.as_str_name(), message = message.as_deref().unwrap_or(""), "task status");
        let now = now_ms();
        if let Some(d) = self.dispatcher.by_task(&task_id) {
            let (id, cluster) = (d.submission_id.clone(), d.cluster.clone());
            self.dispatcher
                .update(&task_id, state.as_str_name(), message.as_deref(), now);
            if terminal(state) {
                // The driver ended: its standalone cluster goes with it.
                for t in cluster {
                    self.kill(&t.task_id, Some(&t.agent_id)).await;
                }
                let after = self.dispatcher.get(&id).map(|d| d.state);
                tracing::info!(driver = %id, state = ?after, "driver ended");
            }
            self.persist().await;
        } else if let Some(d) = self.dispatcher.by_cluster_task(&task_id) {
            if terminal(state) {
                // A master or worker of a running application ended: the
                // attempt cannot go on; the driver is killed (and relaunched
                // when supervised).
                let (id, driver_task, agent) = (
                    d.submission_id.clone(),
                    d.task_id.clone(),
                    d.agent_id.clone(),
                );
                let kind = d
                    .cluster
                    .iter()
                    .find(|c| c.task_id == task_id)
                    .map_or("task", |c| c.kind.as_str())
                    .to_string();
                let why = format!(
                    "its spark {kind} {task_id} ended ({}{})",
                    state.as_str_name(),
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                tracing::warn!(driver = %id, %why, "ending the driver's attempt");
                self.dispatcher.note(&id, &why);
                if let Some(t) = driver_task {
                    self.kill(&t, agent.as_deref()).await;
                }
                self.persist().await;
            }
        } else if self
            .dispatcher
            .history()
            .any(|d| d.cluster.iter().any(|c| c.task_id == task_id))
        {
            // A finished driver's master or worker on its way out; killed
            // again should that kill have been lost.
            if state == v1::TaskState::TaskRunning {
                let agent = status.agent_id.as_ref().map(|a| a.value.clone());
                self.kill(&task_id, agent.as_deref()).await;
            }
        } else if !terminal(state) {
            tracing::info!(task_id = %task_id, "killing a task this dispatcher does not know");
            let agent = status.agent_id.as_ref().map(|a| a.value.clone());
            self.kill(&task_id, agent.as_deref()).await;
        }
        if let Err(e) = self.scheduler.acknowledge(&status).await {
            tracing::warn!(error = %e, task_id = %task_id, "acknowledgement failed");
        }
    }

    async fn tick(&mut self) {
        self.launch().await;
    }

    /// Suppresses offers for the roles with nothing waiting, and revives
    /// those with drivers to launch (now, or after a relaunch backoff), so
    /// that each role's offers go to a role that can use them.
    async fn suppress_or_revive(&mut self) {
        let wanted: BTreeSet<String> = self
            .dispatcher
            .live()
            .filter(|d| d.task_id.is_none())
            .map(|d| d.role.clone())
            .collect();
        let revive: Vec<String> = self
            .suppressed
            .iter()
            .filter(|r| wanted.contains(*r))
            .cloned()
            .collect();
        let suppress: Vec<String> = self
            .config
            .roles
            .iter()
            .filter(|r| !wanted.contains(*r) && !self.suppressed.contains(*r))
            .cloned()
            .collect();
        if !revive.is_empty() {
            tracing::debug!(roles = ?revive, "reviving offers");
            let _ = self.scheduler.revive(revive.clone()).await;
            for r in revive {
                self.suppressed.remove(&r);
            }
        }
        if !suppress.is_empty() {
            tracing::debug!(roles = ?suppress, "suppressing offers");
            let _ = self.scheduler.suppress(suppress.clone()).await;
            self.suppressed.extend(suppress);
        }
    }

    /// Places waiting drivers on the held offers; declines the offers
    /// nobody can use.
    async fn launch(&mut self) {
        let now = now_ms();
        let waiting = self.dispatcher.waiting_roles(now);
        let mut rooms: Vec<Room> = self.held.iter().map(|(o, _)| Room::of_offer(o)).collect();
        let mut batch = Batch::default();
        for role in &waiting {
            let ids: Vec<String> = self
                .dispatcher
                .candidates(role, now)
                .iter()
                .map(|d| d.submission_id.clone())
                .collect();
            for id in ids {
                self.place_one(&id, &mut rooms, &mut batch).await;
            }
        }
        let used: BTreeSet<usize> = batch.tasks.keys().copied().collect();
        if !used.is_empty() {
            // Stored before launched: a new leader adopts, never launches
            // twice.
            self.persist().await;
            for (i, infos) in std::mem::take(&mut batch.tasks) {
                let mut ops = batch.before.remove(&i).unwrap_or_default();
                ops.push(v1::offer::Operation {
                    r#type: Some(v1::offer::operation::Type::Launch as i32),
                    launch: Some(v1::offer::operation::Launch { task_infos: infos }),
                    ..Default::default()
                });
                if let Err(e) = self
                    .scheduler
                    .accept(vec![rooms[i].offer_id.clone()], ops, Some(0.5))
                    .await
                {
                    tracing::warn!(error = %e, "accept failed");
                }
            }
            // Used offers are gone; the rest of what they held goes back.
            let mut keep = Vec::new();
            for (i, held) in std::mem::take(&mut self.held).into_iter().enumerate() {
                if !used.contains(&i) {
                    keep.push(held);
                }
            }
            self.held = keep;
        }
        // Offers held too long, or with nothing waiting, go back.
        let hold = self.config.hold.as_millis() as i64;
        let waiting = self.dispatcher.waiting_roles(now);
        let nothing_waits = waiting.is_empty();
        let (expired, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(o, at)| {
                let role = o
                    .resources
                    .first()
                    .map_or("*", corral_sdk::offers::allocation_role);
                !waiting.iter().any(|w| w == role) || now - at >= hold
            });
        self.held = keep;
        if !expired.is_empty() {
            let ids: Vec<v1::OfferId> = expired.into_iter().map(|(o, _)| o.id).collect();
            let _ = self
                .scheduler
                .decline(ids, Some(if nothing_waits { 5.0 } else { 0.5 }))
                .await;
        }
        self.suppress_or_revive().await;
    }

    /// Tries to place driver `id` on `rooms`; when it fits, its operations
    /// join `batch` and it is recorded as launched.
    async fn place_one(&mut self, id: &str, rooms: &mut [Room], batch: &mut Batch) -> bool {
        let Some(d) = self.dispatcher.get(id).cloned() else {
            return false;
        };
        let app = &d.application;
        let sizes = match plan(app, &self.config.sizing) {
            Ok(p) => p,
            Err(e) => {
                self.why.insert(id.to_string(), e);
                return false;
            }
        };
        let parse = |key: &str| {
            app.property(key)
                .map(|t| parse_constraints(t).unwrap_or_default())
                .unwrap_or_default()
        };
        let (driver_constraints, constraints) =
            (parse(DRIVER_CONSTRAINTS_KEY), parse(CONSTRAINTS_KEY));
        let mut volume = volume_of(app).ok().flatten();
        if let Some(v) = volume.as_mut() {
            v.agent_id = self
                .volumes
                .get(&v.persistence_id)
                .filter(|k| k.role == d.role)
                .map(|k| k.agent_id.clone());
        }
        let ask = Ask {
            role: &d.role,
            plan: &sizes,
            driver_constraints: &driver_constraints,
            constraints: &constraints,
            volume: volume.as_ref(),
        };
        let placed = match place(rooms, &ask) {
            Ok(p) => p,
            Err(why) => {
                self.why.insert(id.to_string(), why);
                return false;
            }
        };
        self.why.remove(id);
        // One application per offer per round: what is left of the offer
        // goes back to the allocator, whose DRF decides which role (or
        // framework) gets it next, instead of this role taking the whole
        // agent in one round.
        let taken: BTreeSet<usize> = std::iter::once(placed.driver.room)
            .chain(std::iter::once(placed.master.room))
            .chain(placed.workers.iter().map(|w| w.room))
            .collect();
        for i in taken {
            rooms[i].left = corral_api::resources::Resources::new();
            rooms[i].volumes.clear();
        }
        let Some(task_id) = self.dispatcher.next_task_id(id) else {
            return false;
        };
        let room = |i: usize| rooms[i].clone();
        let master_room = room(placed.master.room);
        let at = Endpoints {
            master: (master_room.address.clone(), placed.master.ports[0]),
            master_ui: placed.master.ports[1],
        };
        let setup = &self.config.setup;
        let mut per_offer: BTreeMap<usize, Vec<v1::offer::Operation>> = BTreeMap::new();
        let mut tasks: BTreeMap<usize, Vec<v1::TaskInfo>> = BTreeMap::new();
        let mut cluster = Vec::new();
        let master_id = format!("{task_id}.master");
        tasks
            .entry(placed.master.room)
            .or_default()
            .push(master_task(
                &d,
                &master_id,
                &master_room.agent_id,
                &placed.master,
                &at,
                setup,
            ));
        cluster.push(ClusterTask {
            task_id: master_id,
            agent_id: master_room.agent_id.value.clone(),
            kind: "master".into(),
        });
        for (n, w) in placed.workers.iter().enumerate() {
            let r = room(w.room);
            let wid = format!("{task_id}.worker-{n}");
            tasks.entry(w.room).or_default().push(worker_task(
                &d,
                &wid,
                &r.agent_id,
                &r.address,
                w,
                &at,
                &sizes,
                setup,
            ));
            cluster.push(ClusterTask {
                task_id: wid,
                agent_id: r.agent_id.value.clone(),
                kind: "worker".into(),
            });
        }
        let dr = room(placed.driver.room);
        let mut driver_slot = placed.driver.clone();
        match &placed.volume {
            Some(VolumeUse::Existing(v)) => driver_slot.resources.push(v.clone()),
            Some(VolumeUse::Create(disk)) => {
                let Some(ask) = volume.as_ref() else {
                    return false;
                };
                let mut disk = disk.clone();
                if corral_sdk::offers::reservation_role(&disk) != Some(d.role.as_str()) {
                    let (op, reserved) = corral_sdk::offers::reserve(
                        std::slice::from_ref(&disk),
                        &d.role,
                        self.config.principal.as_deref(),
                        &[],
                    );
                    per_offer.entry(placed.driver.room).or_default().push(op);
                    disk = reserved[0].clone();
                }
                let (op, vol) = corral_sdk::offers::create_volume(
                    &disk,
                    &ask.persistence_id,
                    &ask.container_path,
                    self.config.principal.as_deref(),
                );
                per_offer.entry(placed.driver.room).or_default().push(op);
                driver_slot.resources.push(vol);
                let known = KnownVolume {
                    role: d.role.clone(),
                    agent_id: dr.agent_id.value.clone(),
                };
                let key = format!("volumes/{}", ask.persistence_id);
                if let Err(e) = self
                    .store
                    .set(&key, serde_json::to_vec(&known).unwrap_or_default())
                    .await
                {
                    tracing::error!(error = %e, "cannot store the volume; not launching");
                    return false;
                }
                tracing::info!(volume = %ask.persistence_id, agent = %dr.agent_id.value, "creating the driver's persistent volume");
                self.volumes.insert(ask.persistence_id.clone(), known);
            }
            None => {}
        }
        let (driver_info, ui_url) = driver_task(
            &d,
            &task_id,
            &dr.agent_id,
            &dr.address,
            &driver_slot,
            &at,
            &sizes,
            setup,
        );
        tasks
            .entry(placed.driver.room)
            .or_default()
            .push(driver_info);
        self.dispatcher
            .launched(id, &task_id, &dr.agent_id.value, &dr.hostname);
        self.dispatcher.cluster_launched(
            id,
            cluster,
            format!("spark://{}:{}", at.master.0, at.master.1),
            ui_url.clone(),
        );
        tracing::info!(driver = %id, task_id = %task_id, role = %d.role, workers = sizes.workers, master = %format!("{}:{}", at.master.0, at.master.1), ui = %ui_url, "launching an application");
        for (i, ops) in per_offer {
            batch.before.entry(i).or_default().extend(ops);
        }
        for (i, infos) in tasks {
            batch.tasks.entry(i).or_default().extend(infos);
        }
        true
    }
}

/// The operations of one round of placement, by offer (index into the
/// rooms): reservations and volumes first, then one LAUNCH of every task.
#[derive(Default)]
struct Batch {
    before: BTreeMap<usize, Vec<v1::offer::Operation>>,
    tasks: BTreeMap<usize, Vec<v1::TaskInfo>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_states_are_not_terminal() {
        assert!(!terminal(v1::TaskState::TaskRunning));
        assert!(!terminal(v1::TaskState::TaskUnreachable));
        assert!(terminal(v1::TaskState::TaskFinished));
        assert!(terminal(v1::TaskState::TaskGone));
        assert!(!crate::protocol::DriverState::Submitted.is_final());
    }
}
