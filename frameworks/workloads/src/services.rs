//! The pure core of long-running requests (SERVICE and WORKER): instances
//! placed on offers, deploys that replace instances step by step only once
//! the new ones are healthy (rolled back otherwise), failed instances
//! replaced with backoff, and requests that keep failing put in cooldown
//! and then paused, saying why.
//!
//! [`Services`] is plain state; [`Services::offers`], [`Services::update`]
//! and [`Services::tick`] take the time and return [`Action`]s (launch
//! tasks on an offer, kill a task) for the shell to carry out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{allocation_role, ports_of, take, Constraint, Need, Placement};
use jiff::{SignedDuration, Timestamp};

use crate::model::{Deploy, Request, SlavePlacement};

/// Failures within [`COOLDOWN_WINDOW_SECS`] that put a request in cooldown.
pub const COOLDOWN_AFTER_FAILURES: usize = 3;
/// The window failures are counted in.
pub const COOLDOWN_WINDOW_SECS: i64 = 600;
/// Failures in cooldown after which the request is paused.
pub const PAUSE_AFTER_COOLDOWN_FAILURES: u32 = 3;
/// First replacement delay after a failure (doubles, up to the maximum).
pub const FIRST_BACKOFF_SECS: i64 = 1;
/// Longest replacement delay.
pub const MAX_BACKOFF_SECS: i64 = 60;
/// Default time new instances have to become healthy.
pub const DEFAULT_DEPLOY_HEALTH_TIMEOUT_SECS: u64 = 120;

/// How repeated failures are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures within `window` that put a request in cooldown.
    pub cooldown_after: usize,
    /// The window failures are counted in.
    pub window: SignedDuration,
    /// Wait between replacements in cooldown (and the largest backoff).
    pub cooldown_delay: SignedDuration,
    /// Failures in cooldown after which the request is paused.
    pub pause_after: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            cooldown_after: COOLDOWN_AFTER_FAILURES,
            window: secs(COOLDOWN_WINDOW_SECS),
            cooldown_delay: secs(MAX_BACKOFF_SECS),
            pause_after: PAUSE_AFTER_COOLDOWN_FAILURES,
        }
    }
}

/// A request's state (Singularity's `RequestState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestState {
    /// Running its instances.
    Active,
    /// Failing repeatedly: replacements are delayed.
    SystemCooldown {
        /// Why.
        reason: String,
    },
    /// Not running (by the user, or after failing in cooldown).
    Paused {
        /// Why.
        reason: String,
    },
}

/// The state of a deploy (Singularity's `DeployState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployState {
    /// Replacing instances.
    Waiting,
    /// All new instances healthy; the old ones are gone.
    Succeeded,
    /// New instances failed or were not healthy in time; rolled back.
    Failed(String),
    /// Cancelled; rolled back.
    Canceled,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskPhase {
    /// Launched, not running yet.
    Launched,
    /// Running, not (yet) healthy.
    Running,
    /// Running and healthy (or running long enough without a check).
    Healthy,
    /// Out of the load balancer, waiting for its connections to finish
    /// before it is killed.
    Draining,
    /// Being killed.
    Killing,
}

/// One task of a request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Mesos task id.
    pub task_id: String,
    /// The deploy it runs.
    pub deploy_id: String,
    /// Instance number (1-based).
    pub instance: u32,
    /// The agent.
    pub agent_id: String,
    /// Its hostname and attributes.
    pub placement: Placement,
    /// Allocated ports.
    pub ports: Vec<u64>,
    /// Where it is.
    pub phase: TaskPhase,
    /// When it was launched.
    pub launched_at: Timestamp,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Launch these tasks on this offer (unused offers are the shell's to
    /// decline).
    Launch {
        /// The offer.
        offer_id: v1::OfferId,
        /// The agent.
        agent_id: v1::AgentId,
        /// The tasks.
        tasks: Vec<TaskSpec>,
    },
    /// Run operations on an offer (DESTROY and UNRESERVE of the volumes
    /// of deleted requests).
    Operations {
        /// The offer.
        offer_id: v1::OfferId,
        /// The operations.
        operations: Vec<v1::offer::Operation>,
    },
    /// Kill a task.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent.
        agent_id: String,
    },
}

/// A task to launch: the shell turns it into a TaskInfo.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Mesos task id.
    pub task_id: String,
    /// The request.
    pub request_id: String,
    /// The deploy to run.
    pub deploy: Deploy,
    /// Instance number.
    pub instance: u32,
    /// Resources taken from the offer.
    pub resources: Vec<v1::Resource>,
    /// The ports among them.
    pub ports: Vec<u64>,
    /// Operations to run before the launch, in the same ACCEPT (RESERVE
    /// and CREATE of a stateful instance's first launch).
    pub operations: Vec<v1::offer::Operation>,
}

#[derive(Debug, Clone)]
struct PendingDeploy {
    deploy: Deploy,
    started_at: Timestamp,
    /// New instances healthy so far, counted when the old ones go.
    promoted: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    request: Request,
    state: RequestState,
    active: Option<Deploy>,
    pending: Option<PendingDeploy>,
    tasks: BTreeMap<String, Task>,
    failures: VecDeque<Timestamp>,
    cooldown_failures: u32,
    backoff_until: Option<Timestamp>,
    consecutive_failures: u32,
    /// When an instance last failed on each agent.
    failed_agents: BTreeMap<String, Timestamp>,
    why_pending: Option<String>,
    deploy_history: Vec<(String, DeployState)>,
    serial: u64,
    /// Draining tasks and since when (set at the next tick).
    draining: BTreeMap<String, Option<Timestamp>>,
    /// Finished tasks, newest last (at most [`TASK_HISTORY`]).
    history: VecDeque<TaskEnd>,
    /// Stateful instances: the agent holding each one's volume.
    volumes: BTreeMap<u32, String>,
}

/// Finished tasks kept per request.
pub const TASK_HISTORY: usize = 100;

/// How a task of a request ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEnd {
    /// The task.
    pub task_id: String,
    /// Its deploy.
    pub deploy_id: String,
    /// Its instance number.
    pub instance: u32,
    /// Its agent's hostname.
    pub host: String,
    /// Its agent (where its sandbox is).
    pub agent_id: String,
    /// The final state (`TASK_FINISHED`, `TASK_FAILED`, ...).
    pub last_task_state: String,
    /// When it was launched (ms since the epoch).
    pub launched_at: i64,
    /// When it ended (ms since the epoch).
    pub updated_at: i64,
    /// Whether it was killed by the framework (a deploy, a scale-down, a
    /// pause) rather than ending on its own.
    pub killed_by_framework: bool,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// No such request.
    #[error("no request {0:?}")]
    UnknownRequest(String),
    /// The request is not long-running.
    #[error("{0} is not a SERVICE or WORKER request")]
    NotLongRunning(String),
    /// The deploy is for another request, or a deploy is in progress.
    #[error("{0}")]
    Conflict(String),
    /// The document is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Every long-running request's state.
#[derive(Debug, Clone, Default)]
pub struct Services {
    entries: BTreeMap<String, Entry>,
    policy: FailurePolicy,
    /// How long a load-balanced instance stays out of rotation before it
    /// is killed (`None`: no load balancer, killed at once).
    lb_drain: Option<SignedDuration>,
    /// The role and principal stateful instances reserve with.
    reservation: Option<Reservation>,
    /// What the last offers left (see [`Services::left_of_offers`]).
    left: BTreeMap<String, Resources>,
}

/// The request a volume's persistence id (`wl-<request>-<instance>`) is
/// for.
fn request_of_volume(pid: &str) -> Option<&str> {
    let rest = pid.strip_prefix("wl-")?;
    let (request, instance) = rest.rsplit_once('-')?;
    instance.parse::<u32>().ok().map(|_| request)
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

impl Entry {
    fn target(&self) -> u32 {
        self.request.instances.unwrap_or(1)
    }

    fn live(&self, deploy_id: &str) -> impl Iterator<Item = &Task> {
        let deploy_id = deploy_id.to_string();
        self.tasks
            .values()
            .filter(move |t| t.deploy_id == deploy_id && t.phase.live())
    }

    /// Kills a task; a healthy instance of a load-balanced request is
    /// drained first (`drain`): out of rotation now, killed later.
    fn kill(&mut self, task_id: &str, drain: bool, out: &mut Vec<Action>) {
        let lb = self.request.load_balanced == Some(true);
        if let Some(t) = self.tasks.get_mut(task_id) {
            if drain && lb && t.phase == TaskPhase::Healthy {
                t.phase = TaskPhase::Draining;
                self.draining.insert(task_id.to_string(), None);
                return;
            }
            if t.phase != TaskPhase::Killing {
                self.draining.remove(task_id);
                t.phase = TaskPhase::Killing;
                out.push(Action::Kill {
                    task_id: t.task_id.clone(),
                    agent_id: t.agent_id.clone(),
                });
            }
        }
    }

    /// How many instances of each deploy should run now.
    fn wanted(&self) -> Vec<(Deploy, u32)> {
        if matches!(self.state, RequestState::Paused { .. }) {
            return Vec::new();
        }
        let target = self.target();
        match (&self.active, &self.pending) {
            (active, Some(p)) => {
                // The first deploy starts every instance at once.
                let step = match active {
                    Some(_) => p
                        .deploy
                        .deploy_instance_count_per_step
                        .unwrap_or(target)
                        .max(1),
                    None => target,
                };
                let new_wanted = (p.promoted + step).min(target);
                let mut v = vec![(p.deploy.clone(), new_wanted)];
                if let Some(a) = active {
                    // A stateful instance is replaced in place: the old
                    // task frees its volume before the new one starts.
                    let old = if p.deploy.persistent_volume.is_some() {
                        target - new_wanted
                    } else {
                        target - p.promoted.min(target)
                    };
                    v.push((a.clone(), old));
                }
                v
            }
            (Some(a), None) => vec![(a.clone(), target)],
            (None, None) => Vec::new(),
        }
    }
}

impl TaskPhase {
    /// Counted as a running instance (not leaving).
    pub fn live(self) -> bool {
        !matches!(self, TaskPhase::Draining | TaskPhase::Killing)
    }
}

impl Services {
    /// Nothing yet, with the default failure policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing yet, with `policy` for repeated failures.
    pub fn with_policy(policy: FailurePolicy) -> Self {
        Self {
            entries: BTreeMap::new(),
            policy,
            lb_drain: None,
            reservation: None,
            left: BTreeMap::new(),
        }
    }

    /// Stateful instances reserve their resources for `role` (which must
    /// not be `*`) with `principal`.
    pub fn with_reservations(mut self, role: &str, principal: Option<&str>) -> Self {
        self.reservation = (role != "*").then(|| Reservation {
            role: role.to_string(),
            principal: principal.map(str::to_string),
        });
        self
    }

    /// Where each stateful instance's volume is (instance -> agent id).
    pub fn volumes(&self, id: &str) -> BTreeMap<u32, String> {
        self.entries
            .get(id)
            .map(|e| e.volumes.clone())
            .unwrap_or_default()
    }

    /// Restores where stateful instances' volumes are (from the store).
    pub fn restore_volumes(
        &mut self,
        id: &str,
        volumes: BTreeMap<u32, String>,
    ) -> Result<(), ServiceError> {
        self.entry(id)?.volumes = volumes;
        Ok(())
    }

    /// Load-balanced instances leave rotation `drain` before they are
    /// killed (the shell takes them out of the load balancer meanwhile).
    pub fn with_load_balancer_drain(mut self, drain: SignedDuration) -> Self {
        self.lb_drain = Some(drain);
        self
    }

    /// Adds or updates a SERVICE or WORKER request (scaling follows).
    pub fn upsert(&mut self, request: Request) -> Result<(), ServiceError> {
        if !request.request_type.long_running() {
            return Err(ServiceError::NotLongRunning(request.id.clone()));
        }
        request
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        match self.entries.get_mut(&request.id) {
            Some(e) => e.request = request,
            None => {
                self.entries.insert(
                    request.id.clone(),
                    Entry {
                        request,
                        state: RequestState::Active,
                        active: None,
                        pending: None,
                        tasks: BTreeMap::new(),
                        failures: VecDeque::new(),
                        cooldown_failures: 0,
                        backoff_until: None,
                        consecutive_failures: 0,
                        failed_agents: BTreeMap::new(),
                        why_pending: None,
                        deploy_history: Vec::new(),
                        serial: 0,
                        draining: BTreeMap::new(),
                        history: VecDeque::new(),
                        volumes: BTreeMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    fn entry(&mut self, id: &str) -> Result<&mut Entry, ServiceError> {
        self.entries
            .get_mut(id)
            .ok_or_else(|| ServiceError::UnknownRequest(id.to_string()))
    }

    /// Starts a deploy: the first becomes active at once; a later one
    /// replaces the active instances step by step.
    pub fn deploy(&mut self, deploy: Deploy, now: Timestamp) -> Result<(), ServiceError> {
        deploy
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if deploy.persistent_volume.is_some() && self.reservation.is_none() {
            return Err(ServiceError::Invalid(
                "persistentVolume: a stateful deploy needs the framework to run in a role of its own (--role), not *".into(),
            ));
        }
        let e = self.entry(&deploy.request_id)?;
        if e.pending.is_some() {
            return Err(ServiceError::Conflict(format!(
                "a deploy of {} is in progress: cancel it first",
                deploy.request_id
            )));
        }
        if e.active.as_ref().is_some_and(|a| a.id == deploy.id)
            || e.deploy_history.iter().any(|(id, _)| *id == deploy.id)
        {
            return Err(ServiceError::Conflict(format!(
                "deploy id {} was used before: give the deploy a new id",
                deploy.id
            )));
        }
        e.pending = Some(PendingDeploy {
            deploy,
            started_at: now,
            promoted: 0,
        });
        Ok(())
    }

    /// Makes `deploy` the active one at once (restoring stored state: its
    /// instances are started again as offers come).
    pub fn restore_active(&mut self, deploy: Deploy) -> Result<(), ServiceError> {
        let e = self.entry(&deploy.request_id)?;
        e.active = Some(deploy);
        Ok(())
    }

    /// Cancels the pending deploy: its instances are killed, the active
    /// deploy keeps (or gets back) its instances.
    pub fn cancel_deploy(&mut self, request_id: &str) -> Result<Vec<Action>, ServiceError> {
        let drain = self.lb_drain.is_some();
        let e = self.entry(request_id)?;
        let Some(p) = e.pending.take() else {
            return Err(ServiceError::Conflict(format!(
                "{request_id} has no deploy in progress"
            )));
        };
        let mut out = Vec::new();
        roll_back(e, p, DeployState::Canceled, drain, &mut out);
        Ok(out)
    }

    /// Pauses (killing the tasks) or unpauses a request.
    pub fn set_paused(&mut self, id: &str, paused: bool) -> Result<Vec<Action>, ServiceError> {
        let drain = self.lb_drain.is_some();
        let e = self.entry(id)?;
        let mut out = Vec::new();
        if paused {
            e.state = RequestState::Paused {
                reason: "paused by a user".into(),
            };
            let ids: Vec<String> = e.tasks.keys().cloned().collect();
            for t in ids {
                e.kill(&t, drain, &mut out);
            }
        } else {
            e.state = RequestState::Active;
            e.failures.clear();
            e.cooldown_failures = 0;
            e.consecutive_failures = 0;
            e.backoff_until = None;
        }
        Ok(out)
    }

    /// Deletes a request, killing its tasks.
    pub fn delete(&mut self, id: &str) -> Result<Vec<Action>, ServiceError> {
        let mut e = self
            .entries
            .remove(id)
            .ok_or_else(|| ServiceError::UnknownRequest(id.to_string()))?;
        let mut out = Vec::new();
        let ids: Vec<String> = e.tasks.keys().cloned().collect();
        for t in ids {
            e.kill(&t, false, &mut out);
        }
        Ok(out)
    }

    /// The request's state.
    pub fn state(&self, id: &str) -> Option<&RequestState> {
        self.entries.get(id).map(|e| &e.state)
    }

    /// The active deploy's id.
    pub fn active_deploy(&self, id: &str) -> Option<&str> {
        self.entries.get(id)?.active.as_ref().map(|d| d.id.as_str())
    }

    /// The pending deploy's id.
    pub fn pending_deploy(&self, id: &str) -> Option<&str> {
        self.entries
            .get(id)?
            .pending
            .as_ref()
            .map(|p| p.deploy.id.as_str())
    }

    /// Finished deploys, oldest first.
    pub fn deploy_history(&self, id: &str) -> &[(String, DeployState)] {
        self.entries
            .get(id)
            .map_or(&[], |e| e.deploy_history.as_slice())
    }

    /// Why instances are waiting to be placed, if they are.
    pub fn why_pending(&self, id: &str) -> Option<&str> {
        self.entries.get(id)?.why_pending.as_deref()
    }

    /// The request's tasks (killing ones included).
    pub fn tasks(&self, id: &str) -> Vec<&Task> {
        self.entries
            .get(id)
            .map(|e| e.tasks.values().collect())
            .unwrap_or_default()
    }

    /// The request's finished tasks, newest last.
    pub fn task_history(&self, id: &str) -> Vec<&TaskEnd> {
        self.entries
            .get(id)
            .map(|e| e.history.iter().collect())
            .unwrap_or_default()
    }

    /// The request's tasks not being killed (what a new leader adopts).
    pub fn live_tasks(&self, id: &str) -> Vec<Task> {
        self.entries
            .get(id)
            .map(|e| {
                e.tasks
                    .values()
                    .filter(|t| t.phase.live())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes over tasks a previous leader launched: they count as they
    /// were stored until their status says otherwise (the shell reconciles
    /// them with the master).
    pub fn adopt(&mut self, id: &str, tasks: Vec<Task>) -> Result<(), ServiceError> {
        let e = self.entry(id)?;
        for mut t in tasks {
            if t.phase == TaskPhase::Launched {
                t.phase = TaskPhase::Running;
            }
            e.tasks.insert(t.task_id.clone(), t);
        }
        Ok(())
    }

    /// Healthy instances of a load-balanced SERVICE, in rotation: `host:port`
    /// (its first port, or the deploy's `loadBalancerPortIndex`), task id
    /// and the agent's `rack` attribute. Draining instances are not.
    pub fn upstreams(&self, id: &str) -> Vec<crate::lb::Upstream> {
        let Some(e) = self.entries.get(id) else {
            return Vec::new();
        };
        e.tasks
            .values()
            .filter(|t| t.phase == TaskPhase::Healthy)
            .filter_map(|t| {
                let deploy = deploy_of(e, &t.task_id)?;
                let index = deploy.load_balancer_port_index.unwrap_or(0) as usize;
                t.ports.get(index).map(|p| crate::lb::Upstream {
                    upstream: format!("{}:{p}", t.placement.hostname),
                    request_id: id.to_string(),
                    task_id: t.task_id.clone(),
                    rack_id: t.placement.attributes.get("rack").cloned(),
                })
            })
            .collect()
    }

    /// The `serviceBasePath` a load-balanced SERVICE is routed by (its
    /// active deploy's, else the pending one's).
    pub fn service_base_path(&self, id: &str) -> Option<&str> {
        let e = self.entries.get(id)?;
        if e.request.load_balanced != Some(true) {
            return None;
        }
        [e.active.as_ref(), e.pending.as_ref().map(|p| &p.deploy)]
            .into_iter()
            .flatten()
            .find_map(|d| d.service_base_path.as_deref())
    }

    /// Places what is missing on `offers`. Each offer is used at most once
    /// per call; instances that fit nowhere leave a reason
    /// ([`Services::why_pending`]).
    pub fn offers(&mut self, offers: &[v1::Offer], now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        // A task's resources come from one role: the offer's first.
        let mut available: Vec<(usize, Resources, Vec<TaskSpec>)> = offers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let role = o.resources.first().map(allocation_role).unwrap_or("*");
                // Resources reserved for an instance's volume (and the
                // volumes) are only for that instance.
                let r: Vec<v1::Resource> = o
                    .resources
                    .iter()
                    .filter(|r| allocation_role(r) == role)
                    .filter(|r| volume_label(r).is_none() && r.disk.is_none())
                    .cloned()
                    .collect();
                (i, Resources::from_vec(&r), Vec::new())
            })
            .collect();
        let known: Vec<Placement> = offers.iter().map(Placement::of_offer).collect();
        let reservation = self.reservation.clone();
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        for id in ids {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.backoff_until.is_some_and(|b| b > now) {
                continue;
            }
            e.why_pending = None;
            for (deploy, wanted) in e.wanted() {
                let mut running = e.live(&deploy.id).count() as u32;
                while running < wanted {
                    match place(
                        e,
                        &deploy,
                        offers,
                        &mut available,
                        &known,
                        reservation.as_ref(),
                        now,
                    ) {
                        Ok(()) => running += 1,
                        Err(why) => {
                            e.why_pending = Some(why);
                            break;
                        }
                    }
                }
            }
        }
        for (i, left, tasks) in available {
            self.left.insert(offers[i].id.value.clone(), left);
            if !tasks.is_empty() {
                out.push(Action::Launch {
                    offer_id: offers[i].id.clone(),
                    agent_id: offers[i].agent_id.clone(),
                    tasks,
                });
            }
        }
        // The volumes of deleted requests are destroyed and their
        // reservations released.
        for offer in offers {
            let orphans: Vec<&v1::Resource> = offer
                .resources
                .iter()
                .filter(|r| {
                    volume_label(r)
                        .and_then(request_of_volume)
                        .is_some_and(|request| !self.entries.contains_key(request))
                })
                .collect();
            if orphans.is_empty() {
                continue;
            }
            let (volumes, rest): (Vec<v1::Resource>, Vec<v1::Resource>) = orphans
                .into_iter()
                .cloned()
                .partition(|r| r.disk.as_ref().is_some_and(|d| d.persistence.is_some()));
            let mut operations = Vec::new();
            let mut released = rest;
            if !volumes.is_empty() {
                operations.push(corral_sdk::offers::destroy_volumes(&volumes));
                // A destroyed volume is reserved disk again.
                released.extend(volumes.into_iter().map(|mut v| {
                    if let Some(d) = v.disk.as_mut() {
                        d.persistence = None;
                        d.volume = None;
                    }
                    if v.disk.as_ref().is_some_and(|d| d.source.is_none()) {
                        v.disk = None;
                    }
                    v
                }));
            }
            operations.push(corral_sdk::offers::unreserve(&released));
            out.push(Action::Operations {
                offer_id: offer.id.clone(),
                operations,
            });
        }
        out
    }

    /// What is left of each offer (by offer id) after the last
    /// [`Services::offers`]: unreserved resources and those reserved for
    /// the role without a volume label, for other tasks (job runs).
    pub fn left_of_offers(&mut self) -> BTreeMap<String, Resources> {
        std::mem::take(&mut self.left)
    }

    /// A task's status: `state` and, for RUNNING, whether it is `healthy`
    /// (`None`: no health check).
    pub fn update(
        &mut self,
        task_id: &str,
        state: v1::TaskState,
        healthy: Option<bool>,
        now: Timestamp,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let drain = self.lb_drain.is_some();
        let Some((id, e)) = self
            .entries
            .iter_mut()
            .find(|(_, e)| e.tasks.contains_key(task_id))
        else {
            return out;
        };
        let id = id.clone();
        use v1::TaskState as S;
        match state {
            S::TaskRunning => {
                let has_check = deploy_of(e, task_id).is_some_and(|d| d.healthcheck_uri.is_some());
                if let Some(t) = e.tasks.get_mut(task_id) {
                    if !t.phase.live() {
                        return out;
                    }
                    t.phase = match (has_check, healthy) {
                        (true, Some(true)) => TaskPhase::Healthy,
                        (true, _) => TaskPhase::Running,
                        (false, _) => TaskPhase::Running,
                    };
                }
                if healthy == Some(true) {
                    e.consecutive_failures = 0;
                }
            }
            S::TaskStaging | S::TaskStarting | S::TaskKilling => {}
            _ => {
                // Terminal.
                let Some(task) = e.tasks.remove(task_id) else {
                    return out;
                };
                e.draining.remove(task_id);
                e.history.push_back(TaskEnd {
                    task_id: task.task_id.clone(),
                    deploy_id: task.deploy_id.clone(),
                    instance: task.instance,
                    host: task.placement.hostname.clone(),
                    agent_id: task.agent_id.clone(),
                    last_task_state: state.as_str_name().to_string(),
                    launched_at: task.launched_at.as_millisecond(),
                    updated_at: now.as_millisecond(),
                    killed_by_framework: !task.phase.live(),
                });
                while e.history.len() > TASK_HISTORY {
                    e.history.pop_front();
                }
                if !task.phase.live() {
                    return out;
                }
                let failed = !matches!(state, S::TaskFinished);
                let why = format!(
                    "task {} on {} ended {}",
                    task.task_id,
                    task.placement.hostname,
                    state.as_str_name()
                );
                // A new deploy's instance failing fails the deploy.
                if e.pending
                    .as_ref()
                    .is_some_and(|p| p.deploy.id == task.deploy_id)
                {
                    if let Some(p) = e.pending.take() {
                        roll_back(e, p, DeployState::Failed(why), drain, &mut out);
                    }
                    return out;
                }
                if failed {
                    e.failed_agents.insert(task.agent_id.clone(), now);
                }
                record_failure(e, &id, now, why, &self.policy);
            }
        }
        self.advance(&id, &mut out);
        out
    }

    /// Deploy progress, health timeouts, and health without checks.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        let drain = self.lb_drain.is_some();
        let drain_for = self.lb_drain.unwrap_or_default();
        let ids: Vec<String> = self.entries.keys().cloned().collect();
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                // Drained instances are killed once out of rotation long
                // enough.
                let mut done = Vec::new();
                for (task, since) in &e.draining {
                    if since.is_some_and(|s| s.checked_add(drain_for).is_ok_and(|at| at <= now)) {
                        done.push(task.clone());
                    }
                }
                for task in done {
                    e.kill(&task, false, &mut out);
                }
                // Tasks without a health check count as healthy after
                // running `considerHealthyAfterRunningForSeconds` (0).
                let promote: Vec<String> = e
                    .tasks
                    .values()
                    .filter(|t| t.phase == TaskPhase::Running)
                    .filter(|t| {
                        deploy_of(e, &t.task_id).is_some_and(|d| {
                            d.healthcheck_uri.is_none()
                                && t.launched_at
                                    .checked_add(secs(
                                        d.consider_healthy_after_running_for_seconds.unwrap_or(0)
                                            as i64,
                                    ))
                                    .is_ok_and(|at| at <= now)
                        })
                    })
                    .map(|t| t.task_id.clone())
                    .collect();
                for t in promote {
                    if let Some(t) = e.tasks.get_mut(&t) {
                        t.phase = TaskPhase::Healthy;
                    }
                }
                // A deploy not healthy in time fails.
                if let Some(p) = &e.pending {
                    let timeout = p
                        .deploy
                        .deploy_health_timeout_seconds
                        .unwrap_or(DEFAULT_DEPLOY_HEALTH_TIMEOUT_SECS);
                    let overdue = p
                        .started_at
                        .checked_add(secs(timeout as i64))
                        .is_ok_and(|at| at <= now);
                    if overdue {
                        if let Some(p) = e.pending.take() {
                            let why = format!(
                                "new instances were not healthy within {timeout}s (deployHealthTimeoutSeconds)"
                            );
                            roll_back(e, p, DeployState::Failed(why), drain, &mut out);
                        }
                    }
                }
            }
            self.advance(&id, &mut out);
            // Drains that started since the last tick start counting now.
            if let Some(e) = self.entries.get_mut(&id) {
                for since in e.draining.values_mut() {
                    since.get_or_insert(now);
                }
            }
        }
        out
    }

    /// Moves a deploy on: once the step's new instances are healthy, the
    /// same number of old ones are killed; once all are, the deploy
    /// succeeds. Instances beyond what is wanted (scaling down) go too.
    fn advance(&mut self, id: &str, out: &mut Vec<Action>) {
        let drain = self.lb_drain.is_some();
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let target = e.target();
        if let Some(p) = e.pending.as_mut() {
            let healthy_new = e
                .tasks
                .values()
                .filter(|t| t.deploy_id == p.deploy.id && t.phase == TaskPhase::Healthy)
                .count() as u32;
            p.promoted = p.promoted.max(healthy_new.min(target));
        }
        for (deploy, n) in e.wanted() {
            let mut live: Vec<(u32, String)> = e
                .live(&deploy.id)
                .map(|t| (t.instance, t.task_id.clone()))
                .collect();
            live.sort();
            while live.len() as u32 > n {
                if let Some((_, t)) = live.pop() {
                    e.kill(&t, drain, out);
                }
            }
        }
        if e.pending.as_ref().is_some_and(|p| p.promoted >= target) {
            if let Some(p) = e.pending.take() {
                e.deploy_history
                    .push((p.deploy.id.clone(), DeployState::Succeeded));
                e.active = Some(p.deploy);
            }
        }
    }
}

fn deploy_of<'a>(e: &'a Entry, task_id: &str) -> Option<&'a Deploy> {
    let deploy_id = &e.tasks.get(task_id)?.deploy_id;
    [e.active.as_ref(), e.pending.as_ref().map(|p| &p.deploy)]
        .into_iter()
        .flatten()
        .find(|d| d.id == *deploy_id)
}

fn roll_back(
    e: &mut Entry,
    p: PendingDeploy,
    state: DeployState,
    drain: bool,
    out: &mut Vec<Action>,
) {
    let new_tasks: Vec<String> = e
        .tasks
        .values()
        .filter(|t| t.deploy_id == p.deploy.id)
        .map(|t| t.task_id.clone())
        .collect();
    for t in new_tasks {
        e.kill(&t, drain, out);
    }
    e.deploy_history.push((p.deploy.id.clone(), state));
    // The active deploy is wanted at full strength again: the next offers
    // replace whatever it gave up.
}

fn record_failure(e: &mut Entry, id: &str, now: Timestamp, why: String, policy: &FailurePolicy) {
    e.failures.push_back(now);
    while e
        .failures
        .front()
        .is_some_and(|f| now.duration_since(*f) > policy.window)
    {
        e.failures.pop_front();
    }
    e.consecutive_failures += 1;
    let delay =
        secs(FIRST_BACKOFF_SECS << (e.consecutive_failures - 1).min(10)).min(policy.cooldown_delay);
    e.backoff_until = now.checked_add(delay).ok();
    match &e.state {
        RequestState::Active if e.failures.len() >= policy.cooldown_after => {
            e.state = RequestState::SystemCooldown {
                reason: format!(
                    "{} failures within {}s; last: {why}",
                    e.failures.len(),
                    policy.window.as_secs()
                ),
            };
            e.backoff_until = now.checked_add(policy.cooldown_delay).ok();
        }
        RequestState::SystemCooldown { .. } => {
            e.cooldown_failures += 1;
            e.backoff_until = now.checked_add(policy.cooldown_delay).ok();
            if e.cooldown_failures >= policy.pause_after {
                e.state = RequestState::Paused {
                    reason: format!(
                        "paused after failing {} more times in cooldown; last: {why}; \
                         fix the deploy and unpause {id}",
                        e.cooldown_failures
                    ),
                };
            }
        }
        _ => {}
    }
}

/// What the agent behind each offer is: `Ok` when `e` may place an
/// instance there, the reason otherwise (attributes, SEPARATE, constraints,
/// rack spreading).
fn admissions(
    e: &Entry,
    offers: &[v1::Offer],
    available: &[(usize, Resources, Vec<TaskSpec>)],
    known: &[Placement],
) -> Vec<Result<(), String>> {
    let constraints: Vec<Constraint> = e
        .request
        .constraints
        .iter()
        .flatten()
        .filter_map(|c| Constraint::parse(c).ok())
        .collect();
    let rack = e
        .request
        .rack_sensitive
        .unwrap_or(false)
        .then(|| Constraint::GroupBy("rack".into(), None));
    let separate = matches!(
        e.request.slave_placement,
        Some(SlavePlacement::Separate) | Some(SlavePlacement::SeparateByRequest)
    );
    let placed: Vec<Placement> = e
        .tasks
        .values()
        .filter(|t| t.phase.live())
        .map(|t| t.placement.clone())
        .chain(available.iter().flat_map(|(i, _, specs)| {
            specs
                .iter()
                .filter(|s| s.request_id == e.request.id)
                .map(|_| Placement::of_offer(&offers[*i]))
        }))
        .collect();
    available
        .iter()
        .map(|(i, _, _)| {
            let offer = &offers[*i];
            let here = Placement::of_offer(offer);
            if let Some(required) = &e.request.required_slave_attributes {
                if let Some((attr, want)) = required
                    .iter()
                    .find(|(a, v)| here.attributes.get(*a) != Some(*v))
                {
                    return Err(format!("{}: {attr} is not {want}", offer.hostname));
                }
            }
            if separate && placed.iter().any(|p| p.hostname == here.hostname) {
                return Err(format!(
                    "{}: an instance already runs there (SEPARATE)",
                    offer.hostname
                ));
            }
            if let Some(why) = constraints
                .iter()
                .chain(rack.iter())
                .find_map(|c| c.admits(&here, &placed, known).err())
            {
                return Err(format!("{}: {why}", offer.hostname));
            }
            Ok(())
        })
        .collect()
}

/// What a launch takes: the task's resources, its ports, and the
/// operations (RESERVE, CREATE) that must run before it.
struct Taken {
    resources: Vec<v1::Resource>,
    ports: Vec<u64>,
    operations: Vec<v1::offer::Operation>,
}

/// Records a task placed on `offer` and adds it to the offer's launches.
fn record_launch(
    e: &mut Entry,
    deploy: &Deploy,
    instance: u32,
    offer: &v1::Offer,
    taken: Taken,
    specs: &mut Vec<TaskSpec>,
    now: Timestamp,
) {
    e.serial += 1;
    let task_id = format!(
        "{}-{}-{}-{}-{}",
        e.request.id,
        deploy.id,
        now.as_millisecond(),
        instance,
        e.serial
    );
    e.tasks.insert(
        task_id.clone(),
        Task {
            task_id: task_id.clone(),
            deploy_id: deploy.id.clone(),
            instance,
            agent_id: offer.agent_id.value.clone(),
            placement: Placement::of_offer(offer),
            ports: taken.ports.clone(),
            phase: TaskPhase::Launched,
            launched_at: now,
        },
    );
    specs.push(TaskSpec {
        task_id,
        request_id: e.request.id.clone(),
        deploy: deploy.clone(),
        instance,
        resources: taken.resources,
        ports: taken.ports,
        operations: taken.operations,
    });
}

fn need_of(deploy: &Deploy) -> Need {
    let res = deploy.resources.clone().unwrap_or(crate::model::Resources {
        cpus: 0.1,
        memory_mb: 64.0,
        num_ports: 0,
        disk_mb: 0.0,
    });
    Need {
        cpus: res.cpus,
        mem: res.memory_mb,
        disk: res.disk_mb,
        ports: res.num_ports as usize,
    }
}

/// Places one instance of `deploy` on the first offer that takes it.
fn place(
    e: &mut Entry,
    deploy: &Deploy,
    offers: &[v1::Offer],
    available: &mut [(usize, Resources, Vec<TaskSpec>)],
    known: &[Placement],
    reservation: Option<&Reservation>,
    now: Timestamp,
) -> Result<(), String> {
    if let (Some(volume), Some(reservation)) = (&deploy.persistent_volume, reservation) {
        return place_stateful(
            e,
            deploy,
            volume,
            offers,
            available,
            known,
            reservation,
            now,
        );
    }
    let need = need_of(deploy);
    let verdicts = admissions(e, offers, available, known);
    let mut reasons: Vec<String> = Vec::new();
    // Agents where this request never failed first, then those where it
    // failed longest ago.
    let mut order: Vec<usize> = (0..available.len()).collect();
    order.sort_by_key(|k| {
        e.failed_agents
            .get(&offers[available[*k].0].agent_id.value)
            .copied()
    });
    for k in order {
        if let Err(why) = &verdicts[k] {
            reasons.push(why.clone());
            continue;
        }
        let (i, resources, specs) = &mut available[k];
        let offer = &offers[*i];
        let Some((taken, left)) = take(resources, &need) else {
            reasons.push(format!(
                "{}: not enough resources for cpus {} mem {} disk {} ports {}",
                offer.hostname, need.cpus, need.mem, need.disk, need.ports
            ));
            continue;
        };
        *resources = left;
        let used: BTreeSet<u32> = e
            .live(&deploy.id)
            .map(|t| t.instance)
            .chain(
                specs
                    .iter()
                    .filter(|s| s.deploy.id == deploy.id)
                    .map(|s| s.instance),
            )
            .collect();
        let instance = (1..).find(|n| !used.contains(n)).unwrap_or(1);
        let ports = ports_of(&taken);
        let taken = Taken {
            resources: taken,
            ports,
            operations: Vec::new(),
        };
        record_launch(e, deploy, instance, offer, taken, specs, now);
        return Ok(());
    }
    unplaced(&reasons)
}

/// Why no offer took an instance.
fn unplaced(reasons: &[String]) -> Result<(), String> {
    if reasons.is_empty() {
        Err("waiting for offers".into())
    } else {
        Err(format!("cannot place an instance: {}", reasons.join("; ")))
    }
}

/// The role and principal stateful instances reserve with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The framework's role (not `*`).
    pub role: String,
    /// Its principal.
    pub principal: Option<String>,
}

/// Reservation label naming the instance volume reserved resources are for.
pub const VOLUME_LABEL: &str = "corral.workloads/volume";

/// The instance volume an offered resource is reserved for, if any.
pub fn volume_label(r: &v1::Resource) -> Option<&str> {
    r.reservations
        .last()?
        .labels
        .as_ref()?
        .labels
        .iter()
        .find(|l| l.key == VOLUME_LABEL)?
        .value
        .as_deref()
}

/// Places one instance of a stateful deploy: back on the agent that holds
/// its volume, on the resources reserved for it; or, the first time, on
/// unreserved resources it reserves (labelled with the volume) and a
/// volume it creates, in the same ACCEPT as the launch.
fn place_stateful(
    e: &mut Entry,
    deploy: &Deploy,
    volume: &crate::model::PersistentVolume,
    offers: &[v1::Offer],
    available: &mut [(usize, Resources, Vec<TaskSpec>)],
    known: &[Placement],
    reservation: &Reservation,
    now: Timestamp,
) -> Result<(), String> {
    use corral_sdk::offers::{create_volume, find_volume, reserve};
    let target = e.target().max(1);
    // An instance's volume is used by one task at a time: a number is free
    // once no task (of any deploy) holds it.
    let busy: BTreeSet<u32> = e
        .tasks
        .values()
        .map(|t| t.instance)
        .chain(available.iter().flat_map(|(_, _, specs)| {
            specs
                .iter()
                .filter(|s| s.request_id == e.request.id)
                .map(|s| s.instance)
        }))
        .collect();
    let Some(instance) = (1..=target).find(|n| !busy.contains(n)) else {
        return Err("waiting for instances to release their volumes".into());
    };
    let pid = crate::model::PersistentVolume::persistence_id(&e.request.id, instance);
    let need = need_of(deploy);
    let ports_only = Need {
        cpus: 0.0,
        mem: 0.0,
        disk: 0.0,
        ports: need.ports,
    };
    if let Some(agent) = e.volumes.get(&instance).cloned() {
        let Some(k) = available
            .iter()
            .position(|(i, _, _)| offers[*i].agent_id.value == agent)
        else {
            return Err(format!(
                "instance {instance} waits for an offer from agent {agent}, which holds its volume {pid}"
            ));
        };
        let (i, resources, specs) = &mut available[k];
        let offer = &offers[*i];
        let Some(vol) = find_volume(&offer.resources, &pid).cloned() else {
            // Offered without it: it was never created (the operation
            // failed) or was destroyed. It is created again.
            e.volumes.remove(&instance);
            return Err(format!(
                "volume {pid} is not on {} any more; it is created again",
                offer.hostname
            ));
        };
        let Some((ports, left)) = take(resources, &ports_only) else {
            return Err(format!(
                "{}: not enough free ports for instance {instance}",
                offer.hostname
            ));
        };
        *resources = left;
        let mut task_resources: Vec<v1::Resource> = offer
            .resources
            .iter()
            .filter(|r| r.disk.is_none() && volume_label(r) == Some(pid.as_str()))
            .cloned()
            .collect();
        task_resources.push(vol);
        let port_numbers = ports_of(&ports);
        task_resources.extend(ports);
        let taken = Taken {
            resources: task_resources,
            ports: port_numbers,
            operations: Vec::new(),
        };
        record_launch(e, deploy, instance, offer, taken, specs, now);
        return Ok(());
    }
    let verdicts = admissions(e, offers, available, known);
    let mut reasons = Vec::new();
    let with_disk = Need {
        disk: volume.size_mb,
        ..need
    };
    for (k, verdict) in verdicts.into_iter().enumerate() {
        if let Err(why) = verdict {
            reasons.push(why);
            continue;
        }
        let (i, resources, specs) = &mut available[k];
        let offer = &offers[*i];
        let unreserved: Vec<v1::Resource> = resources
            .as_slice()
            .iter()
            .filter(|r| r.reservations.is_empty())
            .cloned()
            .collect();
        let Some((taken, _)) = take(&Resources::from_vec(&unreserved), &with_disk) else {
            reasons.push(format!(
                "{}: not enough unreserved resources for cpus {} mem {} disk {} ports {} to reserve",
                offer.hostname, need.cpus, need.mem, volume.size_mb, need.ports
            ));
            continue;
        };
        resources.subtract_all(&Resources::from_vec(&taken));
        let (scalars, ports): (Vec<v1::Resource>, Vec<v1::Resource>) =
            taken.into_iter().partition(|r| r.name != "ports");
        let mut labels = vec![(VOLUME_LABEL, pid.as_str())];
        if volume.hdfs() {
            labels.push(("corral.storage/backend", "hdfs"));
        }
        let (reserve_op, reserved) = reserve(
            &scalars,
            &reservation.role,
            reservation.principal.as_deref(),
            &labels,
        );
        let Some(disk) = reserved.iter().find(|r| r.name == "disk") else {
            continue;
        };
        let (create_op, vol) = create_volume(
            disk,
            &pid,
            &volume.container_path,
            reservation.principal.as_deref(),
        );
        let mut task_resources: Vec<v1::Resource> = reserved
            .iter()
            .filter(|r| r.name != "disk")
            .cloned()
            .collect();
        task_resources.push(vol);
        let port_numbers = ports_of(&ports);
        task_resources.extend(ports);
        e.volumes.insert(instance, offer.agent_id.value.clone());
        let taken = Taken {
            resources: task_resources,
            ports: port_numbers,
            operations: vec![reserve_op, create_op],
        };
        record_launch(e, deploy, instance, offer, taken, specs, now);
        return Ok(());
    }
    unplaced(&reasons)
}

#[cfg(test)]
mod tests;
