//! The shell: the SDK's scheduler driver, the state store, a timer, a
//! poller of the ResourceManager and the REST API feed one actor (a
//! bounded channel of [`Input`]s), which runs the pure cores
//! ([`NodeManagers`], [`Fgs`], the autoscaler's [`decide`]) and carries
//! out what they return: launches on offers, kills, store writes, YARN
//! decommissions and capacity updates (those run on their own tasks, so a
//! slow `yarn rmadmin` never holds up offers).
//!
//! Every NodeManager is stored (`nodemanagers/<task id>`) before its task
//! is launched, with the FrameworkID (`framework/id`), so a restarted
//! bridge or a new leader re-subscribes as the same framework, takes its
//! NodeManagers over (reconciled with the master: one the master does not
//! know is launched again under the same id) and never launches a second
//! one. Tasks it does not know at all are killed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::v1;
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerEvent};
use corral_sdk::store::StateStore;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::autoscaler::{decide, ClusterMetrics, Decision, Policy};
use crate::fgs::{placeholder_id, Container, Fgs, FgsCommand};
use crate::myriad::{Flex, FlexRequest};
use crate::nmtask::{nm_task, placeholder_task, NmSetup};
use crate::nodemanagers::{Command, NodeManager, NodeManagers, Phase, StoredNodeManager};
use crate::profiles::Profiles;
use crate::rm::{ResourceManager, RmNode};

/// How often the cores are ticked.
const TICK: Duration = Duration::from_millis(500);
/// Inputs buffered for the actor.
const INPUTS: usize = 1024;
/// ZooKeeper session timeout.
const SESSION: Duration = Duration::from_secs(10);
/// Autoscaler decisions kept for the API.
const DECISIONS: usize = 200;
/// After this long without an offer, a pending NodeManager says so.
const NO_OFFER_MS: i64 = 5_000;

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--master`: `host:port[,...]` or `zk://...`.
    pub master: String,
    /// Where the REST API listens (Myriad's port: 8192).
    pub listen: SocketAddr,
    /// The embedded store's directory (`None`: in memory).
    pub state_dir: Option<std::path::PathBuf>,
    /// `zk://host:port/path`: state in ZooKeeper and leader election.
    pub zk: Option<String>,
    /// The role NodeManagers run as (`yarn`).
    pub role: String,
    /// The principal it registers with.
    pub principal: Option<String>,
    /// The framework's name.
    pub name: String,
    /// The ResourceManager's web address (`http://host:8088`).
    pub rm: String,
    /// How `yarn rmadmin` is run.
    pub admin: crate::rm::Admin,
    /// What NodeManagers are made of.
    pub setup: NmSetup,
    /// The profiles.
    pub profiles: Profiles,
    /// At most one NodeManager per host.
    pub one_per_host: bool,
    /// How long YARN has to drain a node being flexed down.
    pub decommission_timeout_secs: u64,
    /// Autoscaling policies (none: flex by hand only).
    pub autoscale: Vec<Policy>,
    /// How often the ResourceManager is read.
    pub rm_poll: Duration,
    /// How long offers are held for fine-grained scaling before they go
    /// back.
    pub fgs_hold: Duration,
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, the election or the scheduler driver could not start.
    #[error(transparent)]
    Start(#[from] corral_sdk::shell::ShellError),
    /// This instance's ZooKeeper session expired: another may lead now.
    #[error("lost leadership (the ZooKeeper session expired); exiting so that a supervisor restarts this instance")]
    LostLeadership,
}

/// A refusal of the API: status and message.
pub(crate) use corral_sdk::shell::ApiError;

/// An API call answered by the actor.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// What the poller read from YARN.
#[derive(Debug, Clone, Default)]
pub(crate) struct YarnView {
    /// `/ws/v1/cluster/metrics`.
    pub metrics: Option<ClusterMetrics>,
    /// `/ws/v1/cluster/nodes`.
    pub nodes: Vec<RmNode>,
    /// Running containers of the fine-grained NodeManagers, by host.
    pub containers: BTreeMap<String, Vec<Container>>,
    /// What could not be read.
    pub errors: Vec<String>,
}

/// The actor's inputs.
pub(crate) enum Input {
    Event(SchedulerEvent),
    Tick,
    Yarn(YarnView),
    FlexUp(FlexRequest, Reply<Value>),
    FlexDown(FlexRequest, Option<Vec<RmNode>>, Reply<Value>),
    State(Reply<Value>),
    NodeManagers(Reply<Value>),
    Autoscaler(Reply<Value>),
    Shutdown(Reply<Value>),
    /// What the master's `/roles` says about the role's quota while no
    /// offer comes (`None`: not the quota).
    QuotaNote(Option<String>),
}

/// An autoscaler decision with the figures behind it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionRecord {
    at_ms: i64,
    profile: String,
    #[serde(flatten)]
    decision: Decision,
    metrics: ClusterMetrics,
    nodemanagers: u32,
}

/// A YARN capacity to push (`updateNodeResource`).
#[derive(Debug, Clone)]
struct CapacityUpdate {
    node_id: String,
    mem_mb: u64,
    vcores: u64,
}

struct Actor {
    scheduler: Scheduler,
    store: Arc<dyn StateStore>,
    config: Config,
    nms: NodeManagers,
    fgs: Fgs,
    /// Each NodeManager as last written to the store.
    nm_cache: BTreeMap<String, Vec<u8>>,
    /// Tasks taken over from the store, to reconcile once subscribed.
    adopted: Vec<(String, Option<String>)>,
    /// Agents' IP addresses (from their offers), to reach NodeManagers.
    agent_ips: BTreeMap<String, String>,
    /// The hosts YARN is asked to decommission.
    excluded: BTreeSet<String>,
    exclude_tx: watch::Sender<BTreeSet<String>>,
    capacity_tx: mpsc::Sender<CapacityUpdate>,
    /// Fine-grained NodeManagers' web apps, for the poller.
    fgs_targets: watch::Sender<BTreeMap<String, String>>,
    yarn: YarnView,
    /// When each host was first seen with no container (ms).
    idle_since: BTreeMap<String, i64>,
    /// Per profile: the last flex (ms), for the cooldowns.
    last_change: BTreeMap<String, i64>,
    decisions: VecDeque<DecisionRecord>,
    /// Last offer received (ms).
    last_offer_ms: i64,
    ticks: u64,
    /// Why no offer comes, from the master's `/roles` (quota).
    quota_note: Option<String>,
    /// When `/roles` was last asked (ms).
    quota_asked_ms: i64,
    /// The actor's own inputs (for answers of helper tasks).
    inputs: mpsc::Sender<Input>,
    subscribed: bool,
    shutdown: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unique() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `role`'s quota limit (in the master's `/roles`) leaves no room
/// for the smallest waiting NodeManager (`need`: cpus, MB).
fn quota_note(roles: &Value, role: &str, need: Option<(f64, f64)>) -> Option<String> {
    let r = roles["roles"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == role)?;
    let limit = r["quota"]["limit"].as_object()?;
    let (cpus, mem) = need?;
    let used = |k: &str| {
        r["allocated"][k].as_f64().unwrap_or(0.0) + r["offered"][k].as_f64().unwrap_or(0.0)
    };
    let short: Vec<String> = [("cpus", cpus), ("mem", mem)]
        .into_iter()
        .filter_map(|(k, n)| {
            let l = limit.get(k)?.as_f64()?;
            (used(k) + n > l + 1e-9)
                .then(|| format!("{k}: {} used of the limit {l}, {n} more needed", used(k)))
        })
        .collect();
    (!short.is_empty()).then(|| format!("the role's quota limit is reached ({})", short.join("; ")))
}

/// Runs the bridge until the process ends or the framework is shut down
/// through the API (`Ok`), or, with `--zk`, until this instance loses its
/// leadership.
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
    let rm = ResourceManager::new(&config.rm, config.admin.clone());
    let app = crate::api::router(
        tx.clone(),
        gate.clone(),
        crate::api::config_json(&config),
        rm.clone(),
    );
    // Stopped gracefully after a framework shutdown, so that its answer
    // reaches the caller.
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api_server = tokio::spawn(async move {
        let stopped = async {
            let _ = api_stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the api server failed");
        }
    });
    tracing::info!(listen = %config.listen, master = %config.master, rm = %config.rm, role = %config.role, ha = config.zk.is_some(), "yarn bridge serving");
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
    let (exclude_tx, exclude_rx) = watch::channel(BTreeSet::new());
    let (capacity_tx, capacity_rx) = mpsc::channel(INPUTS);
    let (fgs_targets, fgs_rx) = watch::channel(BTreeMap::new());
    spawn_decommissioner(rm.clone(), exclude_rx, config.decommission_timeout_secs);
    spawn_capacity_pusher(rm.clone(), capacity_rx);
    spawn_poller(rm, fgs_rx, config.rm_poll, tx.clone());
    let mut actor = Actor {
        scheduler,
        store: Arc::clone(&store),
        nms: NodeManagers::new(
            config.profiles.clone(),
            config.one_per_host,
            config.decommission_timeout_secs,
        ),
        fgs: Fgs::new(config.fgs_hold.as_millis() as i64),
        config,
        nm_cache: BTreeMap::new(),
        adopted: Vec::new(),
        agent_ips: BTreeMap::new(),
        excluded: BTreeSet::new(),
        exclude_tx,
        capacity_tx,
        fgs_targets,
        yarn: YarnView::default(),
        idle_since: BTreeMap::new(),
        last_change: BTreeMap::new(),
        decisions: VecDeque::new(),
        last_offer_ms: now_ms(),
        ticks: 0,
        quota_note: None,
        quota_asked_ms: 0,
        inputs: tx.clone(),
        subscribed: false,
        shutdown: false,
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
                Some(input) => {
                    actor.handle(input).await;
                    if actor.shutdown {
                        actor.scheduler.stop();
                        let _ = stop_api.send(());
                        let _ = tokio::time::timeout(Duration::from_secs(5), api_server).await;
                        tracing::warn!("the framework was shut down (POST /api/framework/shutdown/framework); exiting");
                        return Ok(());
                    }
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

/// Applies each new set of hosts to decommission: the exclude file, then
/// `yarn rmadmin -refreshNodes -g`; retried until it works.
fn spawn_decommissioner(
    rm: ResourceManager,
    mut hosts: watch::Receiver<BTreeSet<String>>,
    timeout_secs: u64,
) {
    tokio::spawn(async move {
        let mut applied: Option<BTreeSet<String>> = None;
        loop {
            let want = hosts.borrow_and_update().clone();
            if applied.as_ref() != Some(&want) {
                match rm.decommission(&want, timeout_secs).await {
                    Ok(()) => {
                        tracing::info!(hosts = ?want, timeout_secs, "yarn asked to decommission (exclude file refreshed)");
                        applied = Some(want);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "yarn decommission failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            r = hosts.changed() => if r.is_err() { return },
                        }
                        continue;
                    }
                }
            }
            if hosts.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Pushes fine-grained capacities to the ResourceManager in order.
fn spawn_capacity_pusher(rm: ResourceManager, mut updates: mpsc::Receiver<CapacityUpdate>) {
    tokio::spawn(async move {
        while let Some(u) = updates.recv().await {
            match rm
                .update_node_resource(&u.node_id, u.mem_mb, u.vcores)
                .await
            {
                Ok(how) => {
                    tracing::info!(node = %u.node_id, mem_mb = u.mem_mb, vcores = u.vcores, via = how, "node capacity updated in yarn")
                }
                Err(e) => {
                    tracing::error!(node = %u.node_id, error = %e, "node capacity not updated in yarn")
                }
            }
        }
    });
}

/// Reads the RM (and fine-grained NodeManagers' containers) every
/// `every`, handing what it read to the actor.
fn spawn_poller(
    rm: ResourceManager,
    targets: watch::Receiver<BTreeMap<String, String>>,
    every: Duration,
    tx: mpsc::Sender<Input>,
) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let mut view = YarnView::default();
            match rm.metrics().await {
                Ok(m) => view.metrics = Some(m),
                Err(e) => view.errors.push(e.to_string()),
            }
            match rm.nodes().await {
                Ok(n) => view.nodes = n,
                Err(e) => view.errors.push(e.to_string()),
            }
            let targets = targets.borrow().clone();
            for (host, address) in targets {
                match rm.containers(&address).await {
                    Ok(c) => {
                        view.containers.insert(host, c);
                    }
                    Err(e) => view.errors.push(e.to_string()),
                }
            }
            if tx.send(Input::Yarn(view)).await.is_err() {
                return;
            }
        }
    });
}

impl Actor {
    async fn load(&mut self) {
        let keys = match self.store.list("nodemanagers").await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the nodemanagers from the store");
                return;
            }
        };
        for key in keys {
            let Ok(Some(v)) = self.store.get(&key).await else {
                continue;
            };
            let stored = match serde_json::from_slice::<StoredNodeManager>(&v.value) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "an unreadable nodemanager record is skipped");
                    continue;
                }
            };
            match NodeManager::import(&stored) {
                Ok(nm) => {
                    if nm.phase != Phase::Pending {
                        self.adopted.push((nm.task_id.clone(), nm.agent_id.clone()));
                    }
                    if let (Phase::Decommissioning { .. }, Some(h)) = (nm.phase, &nm.hostname) {
                        self.excluded.insert(h.clone());
                    }
                    self.nms.adopt(nm);
                    self.nm_cache.insert(stored.task_id.clone(), v.value);
                }
                Err(e) => tracing::warn!(%key, error = %e, "a stored nodemanager is refused"),
            }
        }
        self.publish_exclusions();
        tracing::info!(
            nodemanagers = self.nm_cache.len(),
            "nodemanagers taken over from the store"
        );
    }

    /// Writes every NodeManager that changed since it was last written, and
    /// deletes the ones that are gone. Called before launches are sent.
    async fn persist(&mut self) {
        let now: BTreeMap<String, Vec<u8>> = self
            .nms
            .all()
            .map(|nm| {
                (
                    nm.task_id.clone(),
                    serde_json::to_vec(&nm.export()).unwrap_or_default(),
                )
            })
            .collect();
        let gone: Vec<String> = self
            .nm_cache
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for id in gone {
            match self.store.delete(&format!("nodemanagers/{id}"), None).await {
                Ok(_) => {
                    self.nm_cache.remove(&id);
                }
                Err(e) => {
                    tracing::error!(task_id = %id, error = %e, "cannot delete the nodemanager")
                }
            }
        }
        for (id, bytes) in now {
            if self.nm_cache.get(&id) == Some(&bytes) {
                continue;
            }
            match self
                .store
                .set(&format!("nodemanagers/{id}"), bytes.clone())
                .await
            {
                Ok(_) => {
                    self.nm_cache.insert(id, bytes);
                }
                Err(e) => {
                    tracing::error!(task_id = %id, error = %e, "cannot store the nodemanager")
                }
            }
        }
    }

    fn publish_exclusions(&self) {
        let want = self.excluded.clone();
        self.exclude_tx.send_if_modified(|h| {
            if *h == want {
                false
            } else {
                *h = want;
                true
            }
        });
    }

    /// Fine-grained hosts: every active zero-profile NodeManager.
    fn sync_fgs(&mut self) -> Vec<FgsCommand> {
        let zero: BTreeMap<String, (String, String)> = self
            .nms
            .all()
            .filter(|nm| nm.phase == Phase::Active && self.is_fgs_profile(&nm.profile))
            .filter_map(|nm| {
                let host = nm.hostname.clone()?;
                let agent = nm.agent_id.clone()?;
                let ip = self
                    .agent_ips
                    .get(&agent)
                    .cloned()
                    .unwrap_or_else(|| host.clone());
                let web = nm.ports.map(|p| format!("{ip}:{}", p.webapp))?;
                Some((host, (agent, web)))
            })
            .collect();
        let mut out = Vec::new();
        let known: Vec<String> = self.fgs.nodes().into_iter().map(|n| n.hostname).collect();
        for host in known {
            if !zero.contains_key(&host) {
                out.extend(self.fgs.remove_node(&host));
            }
        }
        for (host, (agent, _)) in &zero {
            self.fgs.add_node(host, agent);
        }
        let targets: BTreeMap<String, String> =
            zero.into_iter().map(|(h, (_, web))| (h, web)).collect();
        self.fgs_targets.send_if_modified(|t| {
            if *t == targets {
                false
            } else {
                *t = targets;
                true
            }
        });
        out
    }

    fn is_fgs_profile(&self, profile: &str) -> bool {
        self.config
            .profiles
            .get(profile)
            .is_ok_and(|p| p.cpu == 0.0 && p.mem == 0.0)
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Event(e) => self.event(e).await,
            Input::Tick => self.tick().await,
            Input::Yarn(view) => self.yarn(view).await,
            Input::FlexUp(req, reply) => {
                let r = self.flex_up(&req, "api").await;
                let _ = reply.send(r.map(|ids| json!({"taskIds": ids})));
            }
            Input::FlexDown(req, nodes, reply) => {
                if let Some(nodes) = nodes {
                    self.yarn.nodes = nodes;
                }
                let r = self.flex_down(&req, "api").await;
                let _ = reply.send(r);
            }
            Input::State(reply) => {
                let _ = reply.send(Ok(
                    serde_json::to_value(self.nms.state()).unwrap_or_default()
                ));
            }
            Input::NodeManagers(reply) => {
                let _ = reply.send(Ok(self.nodemanagers_json()));
            }
            Input::Autoscaler(reply) => {
                let _ = reply.send(Ok(json!({
                    "policies": self.config.autoscale,
                    "decisions": self.decisions.iter().rev().collect::<Vec<_>>(),
                })));
            }
            Input::QuotaNote(note) => self.quota_note = note,
            Input::Shutdown(reply) => {
                tracing::warn!("shutting the framework down: every nodemanager is killed");
                let _ = self.scheduler.teardown().await;
                let _ = self.store.delete("framework/id", None).await;
                for id in self.nm_cache.keys().cloned().collect::<Vec<_>>() {
                    let _ = self.store.delete(&format!("nodemanagers/{id}"), None).await;
                }
                self.shutdown = true;
                let _ = reply.send(Ok(json!({"shutdown": true})));
            }
        }
    }

    async fn flex_up(&mut self, req: &FlexRequest, by: &str) -> Result<Vec<String>, ApiError> {
        let flex: Flex = req
            .validate(self.nms.profiles(), true)
            .map_err(ApiError::bad)?;
        let ids = self.nms.flex_up(&flex, &mut unique);
        if let Some(p) = &flex.profile {
            self.last_change.insert(p.clone(), now_ms());
        }
        tracing::info!(instances = flex.instances, profile = ?flex.profile, constraints = ?req.constraints, by, "flex up");
        self.persist().await;
        // Offers declined while nothing was pending come again at once.
        let _ = self.scheduler.revive(vec![self.config.role.clone()]).await;
        Ok(ids)
    }

    async fn flex_down(&mut self, req: &FlexRequest, by: &str) -> Result<Value, ApiError> {
        let flex: Flex = req
            .validate(self.nms.profiles(), false)
            .map_err(ApiError::bad)?;
        let containers: BTreeMap<String, u64> = self
            .yarn
            .nodes
            .iter()
            .filter(|n| n.state == "RUNNING" || n.state == "DECOMMISSIONING")
            .map(|n| (n.host.clone(), n.num_containers))
            .collect();
        let commands = self
            .nms
            .flex_down(&flex, &containers, now_ms())
            .map_err(ApiError::bad)?;
        if let Some(p) = &flex.profile {
            self.last_change.insert(p.clone(), now_ms());
        }
        tracing::info!(instances = flex.instances, profile = ?flex.profile, by, "flex down");
        let hosts: Vec<Value> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Decommission { hostname, .. } => Some(json!(hostname)),
                _ => None,
            })
            .collect();
        self.persist().await;
        self.commands(commands, &[]).await;
        Ok(json!({"decommissioning": hosts}))
    }

    fn nodemanagers_json(&self) -> Value {
        let nodes: BTreeMap<&str, &RmNode> = self
            .yarn
            .nodes
            .iter()
            .map(|n| (n.host.as_str(), n))
            .collect();
        let list: Vec<Value> = self
            .nms
            .all()
            .map(|nm| {
                let rm = nm.hostname.as_deref().and_then(|h| nodes.get(h));
                let why = (nm.phase == Phase::Pending).then(|| self.why_pending(&nm.task_id));
                json!({
                    "taskId": nm.task_id,
                    "profile": nm.profile,
                    "phase": nm.phase.name(),
                    "hostname": nm.hostname,
                    "agentId": nm.agent_id,
                    "constraints": nm.constraints.iter().map(|c| c.text()).collect::<Vec<_>>(),
                    "ports": nm.ports.map(|p| json!({"rpc": p.rpc, "localizer": p.localizer, "webapp": p.webapp, "shuffle": p.shuffle})),
                    "yarnState": rm.map(|n| n.state.clone()),
                    "yarnContainers": rm.map(|n| n.num_containers),
                    "whyPending": why,
                })
            })
            .collect();
        let fgs: Vec<Value> = self
            .fgs
            .nodes()
            .into_iter()
            .map(|n| {
                json!({
                    "hostname": n.hostname,
                    "agentId": n.agent_id,
                    "heldCpus": n.held_cpus,
                    "heldMem": n.held_mem,
                    "placeholders": n.placeholders.iter().map(|(cid, (c, m))| json!({
                        "containerId": cid, "taskId": placeholder_id(cid), "cpus": c, "mem": m})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "subscribed": self.subscribed,
            "frameworkId": self.scheduler.framework_id(),
            "nodemanagers": list,
            "fineGrained": fgs,
            "yarn": {
                "metrics": self.yarn.metrics,
                "errors": self.yarn.errors,
            },
        })
    }

    /// Why a pending NodeManager waits: what the offers lacked, or that no
    /// offer came.
    fn why_pending(&self, task_id: &str) -> String {
        let quiet = now_ms() - self.last_offer_ms;
        let why = if quiet >= NO_OFFER_MS {
            format!(
                "no offer for role {} in {}s",
                self.config.role,
                quiet / 1000
            )
        } else {
            self.nms
                .why_pending(task_id)
                .unwrap_or("waiting for an offer")
                .to_string()
        };
        match &self.quota_note {
            Some(note) => format!("{why}; {note}"),
            None if quiet >= NO_OFFER_MS => {
                format!("{why}: every agent's resources are in use by other roles")
            }
            None => why,
        }
    }

    /// While NodeManagers wait, asks the master's `/roles` (every few
    /// seconds) whether the role's quota limit is what stops them.
    fn check_quota(&mut self, now: i64) {
        let waiting: Vec<String> = self
            .nms
            .all()
            .filter(|nm| nm.phase == Phase::Pending)
            .map(|nm| nm.profile.clone())
            .collect();
        if waiting.is_empty() {
            self.quota_note = None;
            return;
        }
        if now - self.quota_asked_ms < NO_OFFER_MS / 2 {
            return;
        }
        self.quota_asked_ms = now;
        let Some(master) = self.scheduler.master() else {
            return;
        };
        let role = self.config.role.clone();
        let need: Option<(f64, f64)> = waiting
            .iter()
            .filter_map(|p| self.config.profiles.task_resources(p).ok())
            .reduce(|a, b| if a.0 <= b.0 && a.1 <= b.1 { a } else { b });
        let tx = self.inputs.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default();
            let roles: Value = match http.get(format!("http://{master}/roles")).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => return,
            };
            let note = quota_note(&roles, &role, need);
            let _ = tx.send(Input::QuotaNote(note)).await;
        });
    }

    async fn event(&mut self, event: SchedulerEvent) {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
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
                    tracing::info!("re-subscribed; reconciling");
                }
            }
            SchedulerEvent::Disconnected { reason } => {
                self.subscribed = false;
                tracing::warn!(%reason, "disconnected from the master");
            }
            SchedulerEvent::Offers(offers) => self.offers(offers).await,
            SchedulerEvent::Rescind(id) => {
                let cmds = self.fgs.rescind(&id);
                self.fgs_commands(cmds).await;
            }
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
            message = status.message.as_deref().unwrap_or(""),
            "task status"
        );
        let terminal = !matches!(
            state,
            v1::TaskState::TaskStaging
                | v1::TaskState::TaskStarting
                | v1::TaskState::TaskRunning
                | v1::TaskState::TaskKilling
                | v1::TaskState::TaskUnreachable
        );
        if let Some(nm) = self.nms.get(&task_id).cloned() {
            if state == v1::TaskState::TaskUnreachable {
                // It may come back: not launched again until the master
                // says it is gone.
                tracing::warn!(task_id = %task_id, "nodemanager unreachable; waiting");
            } else {
                self.nms.update(&task_id, state, now_ms());
                if terminal {
                    tracing::info!(task_id = %task_id, phase = nm.phase.name(), "nodemanager ended");
                    if let Some(h) = &nm.hostname {
                        if self.excluded.remove(h) {
                            self.publish_exclusions();
                        }
                    }
                }
                self.persist().await;
                let cmds = self.sync_fgs();
                self.fgs_commands(cmds).await;
            }
        } else if task_id.starts_with("yarn_") {
            let known = self.fgs.has_placeholder(&task_id);
            if !known && !terminal {
                let agent = status.agent_id.as_ref().map(|a| a.value.clone());
                let _ = self.scheduler.kill(&task_id, agent.as_deref(), None).await;
            }
        } else if !terminal {
            tracing::info!(task_id = %task_id, "killing a task this bridge does not know");
            let agent = status.agent_id.as_ref().map(|a| a.value.clone());
            let _ = self.scheduler.kill(&task_id, agent.as_deref(), None).await;
        }
        if let Err(e) = self.scheduler.acknowledge(&status).await {
            tracing::warn!(error = %e, task_id = %task_id, "acknowledgement failed");
        }
    }

    async fn tick(&mut self) {
        self.ticks += 1;
        let now = now_ms();
        let cmds = self.nms.tick(now);
        if !cmds.is_empty() {
            self.persist().await;
            self.commands(cmds, &[]).await;
        }
        let cmds = self.fgs.tick(now);
        self.fgs_commands(cmds).await;
        self.check_quota(now);
        // Kills that got lost are asked again.
        if self.ticks.is_multiple_of(20) {
            let killing: Vec<(String, Option<String>)> = self
                .nms
                .all()
                .filter(|nm| nm.phase == Phase::Killing)
                .map(|nm| (nm.task_id.clone(), nm.agent_id.clone()))
                .collect();
            for (id, agent) in killing {
                let _ = self.scheduler.kill(&id, agent.as_deref(), None).await;
            }
        }
    }

    async fn yarn(&mut self, view: YarnView) {
        for e in &view.errors {
            tracing::warn!(error = %e, "yarn not read");
        }
        let now = now_ms();
        // Nodes YARN has decommissioned: their NodeManagers are killed.
        let mut cmds = Vec::new();
        for n in &view.nodes {
            cmds.extend(self.nms.node_state(&n.host, &n.state));
            if n.num_containers == 0 && n.state == "RUNNING" {
                self.idle_since.entry(n.host.clone()).or_insert(now);
            } else {
                self.idle_since.remove(&n.host);
            }
        }
        let seen: BTreeSet<&str> = view.nodes.iter().map(|n| n.host.as_str()).collect();
        self.idle_since.retain(|h, _| seen.contains(h.as_str()));
        self.yarn = view;
        if !cmds.is_empty() {
            self.persist().await;
            self.commands(cmds, &[]).await;
        }
        // Fine-grained: placeholders follow the containers.
        let mut fgs_cmds = self.sync_fgs();
        let containers = self.yarn.containers.clone();
        for (host, running) in &containers {
            fgs_cmds.extend(self.fgs.containers(host, running));
        }
        // A capacity YARN does not show (pushed before the node
        // registered, or lost) is pushed again.
        for host in self.fgs.nodes().into_iter().map(|n| n.hostname) {
            let (Some((vcores, mem_mb)), Some(node)) = (
                self.fgs.pushed(&host),
                self.yarn
                    .nodes
                    .iter()
                    .find(|n| n.host == host && n.state == "RUNNING"),
            ) else {
                continue;
            };
            if node.total_vcores as u64 != vcores || node.total_mb as u64 != mem_mb {
                let _ = self
                    .capacity_tx
                    .send(CapacityUpdate {
                        node_id: node.id.clone(),
                        mem_mb,
                        vcores,
                    })
                    .await;
            }
        }
        self.fgs_commands(fgs_cmds).await;
        self.autoscale().await;
    }

    async fn autoscale(&mut self) {
        let Some(metrics) = self.yarn.metrics else {
            return;
        };
        let now = now_ms();
        let policies = self.config.autoscale.clone();
        let registered: BTreeSet<String> = self
            .yarn
            .nodes
            .iter()
            .filter(|n| n.state == "RUNNING")
            .map(|n| n.host.clone())
            .collect();
        for policy in policies {
            let Ok(profile) = self.config.profiles.get(&policy.profile) else {
                continue;
            };
            let mine: Vec<&NodeManager> = self
                .nms
                .all()
                .filter(|nm| nm.profile == policy.profile)
                .filter(|nm| !matches!(nm.phase, Phase::Decommissioning { .. } | Phase::Killing))
                .collect();
            let running = mine.len() as u32;
            // Capacity already on its way (NodeManagers not registered
            // with YARN yet) is not asked for twice.
            let coming = mine
                .iter()
                .filter(|nm| {
                    nm.hostname
                        .as_deref()
                        .is_none_or(|h| !registered.contains(h))
                })
                .count() as f64;
            let mut seen = metrics;
            seen.pending_mb = (seen.pending_mb - coming * profile.mem).max(0.0);
            if seen.pending_mb == 0.0 && coming > 0.0 {
                seen.containers_pending = 0.0;
            }
            let idle: BTreeMap<String, u64> = mine
                .iter()
                .filter_map(|nm| {
                    let h = nm.hostname.as_ref()?;
                    let since = self.idle_since.get(h)?;
                    Some((h.clone(), ((now - since).max(0) / 1000) as u64))
                })
                .collect();
            let since_change = self
                .last_change
                .get(&policy.profile)
                .map(|t| ((now - t).max(0) / 1000) as u64)
                .unwrap_or(u64::MAX);
            let mut decision = decide(&policy, profile.mem, &seen, running, &idle, since_change);
            if coming > 0.0 {
                let note = format!(
                    " ({coming} NodeManager(s) of {} not registered with YARN yet: {} MB on its way)",
                    policy.profile,
                    coming * profile.mem
                );
                match &mut decision {
                    Decision::FlexUp { reason, .. }
                    | Decision::FlexDown { reason, .. }
                    | Decision::Hold { reason } => reason.push_str(&note),
                }
            }
            let changed = !matches!(decision, Decision::Hold { .. });
            let repeat = self
                .decisions
                .back()
                .is_some_and(|d| d.profile == policy.profile && d.decision == decision && !changed);
            if !repeat {
                match &decision {
                    Decision::Hold { reason } => {
                        tracing::debug!(profile = %policy.profile, %reason, "autoscaler holds")
                    }
                    Decision::FlexUp { instances, reason } => {
                        tracing::info!(profile = %policy.profile, instances, %reason, pending_mb = metrics.pending_mb, available_mb = metrics.available_mb, "autoscaler flexes up")
                    }
                    Decision::FlexDown { instances, reason } => {
                        tracing::info!(profile = %policy.profile, instances, %reason, pending_mb = metrics.pending_mb, available_mb = metrics.available_mb, "autoscaler flexes down")
                    }
                }
                self.decisions.push_back(DecisionRecord {
                    at_ms: now,
                    profile: policy.profile.clone(),
                    decision: decision.clone(),
                    metrics,
                    nodemanagers: running,
                });
                while self.decisions.len() > DECISIONS {
                    self.decisions.pop_front();
                }
            }
            let req = |instances: u32| FlexRequest {
                instances: i64::from(instances),
                profile: Some(policy.profile.clone()),
                constraints: None,
            };
            let result = match decision {
                Decision::FlexUp { instances, .. } => self
                    .flex_up(&req(instances), "autoscaler")
                    .await
                    .map(|_| ()),
                Decision::FlexDown { instances, .. } => self
                    .flex_down(&req(instances), "autoscaler")
                    .await
                    .map(|_| ()),
                Decision::Hold { .. } => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(profile = %policy.profile, error = %e.message, "autoscaler decision not carried out");
            }
        }
    }

    /// Carries out the core's commands; `offers` are the ones launches
    /// refer to.
    async fn commands(&mut self, commands: Vec<Command>, offers: &[v1::Offer]) {
        let mut launches: BTreeMap<String, (v1::OfferId, Vec<v1::TaskInfo>)> = BTreeMap::new();
        for c in commands {
            match c {
                Command::Launch {
                    offer_id,
                    agent_id,
                    task_id,
                    profile,
                    resources,
                    ports,
                } => {
                    let Ok(p) = self.config.profiles.get(&profile) else {
                        continue;
                    };
                    let hostname = offers
                        .iter()
                        .find(|o| o.id == offer_id)
                        .map(|o| o.hostname.clone())
                        .unwrap_or_default();
                    let task = nm_task(
                        &self.config.setup,
                        &task_id,
                        &agent_id,
                        &hostname,
                        &profile,
                        p,
                        ports,
                        resources,
                    );
                    tracing::info!(task_id = %task_id, %hostname, profile = %profile, rpc = ports.rpc, webapp = ports.webapp, "launching a nodemanager");
                    launches
                        .entry(offer_id.value.clone())
                        .or_insert_with(|| (offer_id.clone(), Vec::new()))
                        .1
                        .push(task);
                }
                Command::Decommission { hostname, .. } => {
                    self.excluded.insert(hostname);
                    self.publish_exclusions();
                }
                Command::Kill { task_id, agent_id } => {
                    tracing::info!(task_id = %task_id, "killing a nodemanager");
                    let _ = self
                        .scheduler
                        .kill(&task_id, agent_id.as_deref(), None)
                        .await;
                }
            }
        }
        for (_, (offer_id, tasks)) in launches {
            let n = tasks.len();
            let op = v1::offer::Operation {
                r#type: Some(v1::offer::operation::Type::Launch as i32),
                launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            };
            if let Err(e) = self
                .scheduler
                .accept(vec![offer_id], vec![op], Some(1.0))
                .await
            {
                tracing::warn!(error = %e, tasks = n, "accept failed");
            }
        }
    }

    async fn fgs_commands(&mut self, commands: Vec<FgsCommand>) {
        for c in commands {
            match c {
                FgsCommand::Capacity {
                    hostname,
                    vcores,
                    mem_mb,
                } => {
                    let node_id = self
                        .yarn
                        .nodes
                        .iter()
                        .find(|n| n.host == hostname && n.state != "DECOMMISSIONED")
                        .map(|n| n.id.clone())
                        .or_else(|| {
                            self.nms
                                .all()
                                .find(|nm| nm.hostname.as_deref() == Some(&hostname))
                                .and_then(|nm| nm.ports)
                                .map(|p| format!("{hostname}:{}", p.rpc))
                        });
                    if let Some(node_id) = node_id {
                        let _ = self
                            .capacity_tx
                            .send(CapacityUpdate {
                                node_id,
                                mem_mb,
                                vcores,
                            })
                            .await;
                    }
                }
                FgsCommand::Launch {
                    offer_id,
                    agent_id,
                    tasks,
                } => {
                    let infos: Vec<v1::TaskInfo> = tasks
                        .into_iter()
                        .map(|(id, r)| placeholder_task(&id, &agent_id, r))
                        .collect();
                    tracing::info!(placeholders = infos.len(), agent = %agent_id.value, "launching yarn container placeholders");
                    let op = v1::offer::Operation {
                        r#type: Some(v1::offer::operation::Type::Launch as i32),
                        launch: Some(v1::offer::operation::Launch { task_infos: infos }),
                        ..Default::default()
                    };
                    if let Err(e) = self
                        .scheduler
                        .accept(vec![offer_id], vec![op], Some(1.0))
                        .await
                    {
                        tracing::warn!(error = %e, "placeholder accept failed");
                    }
                }
                FgsCommand::Kill { task_id, agent_id } => {
                    tracing::info!(task_id = %task_id, "yarn container finished; its placeholder is killed");
                    let _ = self.scheduler.kill(&task_id, Some(&agent_id), None).await;
                }
                FgsCommand::Decline { offer_ids } => {
                    let _ = self.scheduler.decline(offer_ids, Some(1.0)).await;
                }
                FgsCommand::Uncovered {
                    hostname,
                    container_id,
                } => {
                    tracing::warn!(%hostname, container = %container_id, "a yarn container runs that no held resources cover");
                }
            }
        }
    }

    async fn offers(&mut self, offers: Vec<v1::Offer>) {
        let now = now_ms();
        self.last_offer_ms = now;
        let mut rest = Vec::new();
        let mut fgs_cmds = Vec::new();
        for offer in offers {
            if let Some(ip) = offer
                .url
                .as_ref()
                .and_then(|u| u.address.ip.clone().or(u.address.hostname.clone()))
            {
                self.agent_ips.insert(offer.agent_id.value.clone(), ip);
            }
            if self.fgs.covers(&offer.hostname) {
                if let Some(c) = self.fgs.offer(offer.clone(), now) {
                    fgs_cmds.extend(c);
                    continue;
                }
            }
            rest.push(offer);
        }
        self.fgs_commands(fgs_cmds).await;
        let cmds = self.nms.offers(&rest, now);
        let used: BTreeSet<String> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Launch { offer_id, .. } => Some(offer_id.value.clone()),
                _ => None,
            })
            .collect();
        if !cmds.is_empty() {
            // Stored before launched: a new leader adopts, never relaunches.
            self.persist().await;
        }
        self.commands(cmds, &rest).await;
        let unused: Vec<v1::OfferId> = rest
            .iter()
            .filter(|o| !used.contains(&o.id.value))
            .map(|o| o.id.clone())
            .collect();
        if !unused.is_empty() {
            let pending = self.nms.all().any(|nm| nm.phase == Phase::Pending);
            let _ = self
                .scheduler
                .decline(unused, Some(if pending { 1.0 } else { 5.0 }))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_limit_that_leaves_no_room_is_named() {
        let roles = json!({"roles": [
            {"name": "yarn", "allocated": {"cpus": 2.2, "mem": 3072.0}, "offered": {},
             "quota": {"limit": {"cpus": 4.0}}},
            {"name": "other", "allocated": {}, "offered": {}}
        ]});
        let note = quota_note(&roles, "yarn", Some((2.2, 3072.0))).expect("reached");
        assert!(note.contains("cpus: 2.2 used of the limit 4"), "{note}");
        assert_eq!(quota_note(&roles, "yarn", Some((1.0, 512.0))), None);
        assert_eq!(quota_note(&roles, "other", Some((2.2, 3072.0))), None);
        assert_eq!(quota_note(&json!({}), "yarn", Some((2.2, 3072.0))), None);
    }
}
