//! The dispatcher's submissions (pure): a bounded queue of drivers waiting
//! for resources, ordered by their queue's priority and then by arrival,
//! the drivers running, supervision (a supervised driver that fails is
//! queued again after a backoff of 1 s doubling to 60 s), and the history of
//! finished drivers, bounded.
//!
//! [`Dispatcher`] is plain state; its methods take the time (ms since the
//! epoch) and return [`Command`]s for the shell (kill a driver's task). The
//! shell asks [`Dispatcher::candidates`] which drivers of a role to place on
//! that role's offers, and reports launches and task states back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::protocol::DriverState;

/// Drivers queued at most, by default (MesosClusterDispatcher's
/// `spark.mesos.maxDrivers`).
pub const DEFAULT_MAX_QUEUED: usize = 200;
/// Finished drivers retained, by default (its `spark.mesos.retainedDrivers`).
pub const DEFAULT_RETAINED: usize = 200;
/// The first relaunch delay of a supervised driver.
pub const BACKOFF_START_MS: i64 = 1_000;
/// The longest relaunch delay.
pub const BACKOFF_MAX_MS: i64 = 60_000;

/// What a submission asks to run (from the create request, with the
/// dispatcher's driver defaults applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// The jar or Python file (`appResource`).
    pub app_resource: String,
    /// The main class (`mainClass`; `org.apache.spark.deploy.PythonRunner`
    /// style runners for Python).
    pub main_class: String,
    /// The application's arguments.
    #[serde(default)]
    pub app_args: Vec<String>,
    /// `sparkProperties`.
    #[serde(default)]
    pub spark_properties: BTreeMap<String, String>,
    /// `environmentVariables`.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
}

impl Application {
    /// A Spark property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.spark_properties.get(name).map(String::as_str)
    }

    /// `spark.driver.supervise`.
    pub fn supervise(&self) -> bool {
        self.property("spark.driver.supervise")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// One driver: its application, where it is, and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Driver {
    /// `driver-<yyyyMMddHHmmss>-<nnnn>`.
    pub submission_id: String,
    /// The role its driver and executors run as.
    pub role: String,
    /// Its queue (`spark.corral.dispatcher.queue`), for its priority.
    pub queue: String,
    /// The queue's priority (higher first).
    pub priority: i64,
    /// What it runs.
    pub application: Application,
    /// Where it is, in Spark's words.
    pub state: DriverState,
    /// When it was submitted (ms).
    pub submitted_ms: i64,
    /// When its current attempt started running (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// When it ended (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// Launches so far.
    #[serde(default)]
    pub attempts: u32,
    /// A supervised driver waiting to be launched again: not before (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// The task of its current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Its agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The last word on it (a failure, a kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A kill was asked for.
    #[serde(default)]
    pub kill_requested: bool,
    /// The current attempt's Spark standalone cluster (its master and
    /// workers), released when the driver ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<ClusterTask>,
    /// The current attempt's standalone master (`spark://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_url: Option<String>,
    /// The driver's Spark UI (`http://host:port`), on an offered port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
}

impl Driver {
    /// A driver just submitted: SUBMITTED, never launched.
    pub fn queued(
        id: &str,
        role: &str,
        queue: String,
        priority: i64,
        application: Application,
        submitted_ms: i64,
    ) -> Self {
        Driver {
            submission_id: id.to_string(),
            role: role.to_string(),
            queue,
            priority,
            application,
            state: DriverState::Submitted,
            submitted_ms,
            started_ms: None,
            finished_ms: None,
            attempts: 0,
            not_before_ms: None,
            task_id: None,
            agent_id: None,
            hostname: None,
            message: None,
            kill_requested: false,
            cluster: Vec::new(),
            master_url: None,
            ui_url: None,
        }
    }
}

/// A task of a driver's standalone cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTask {
    /// The task (`<driver task>.master`, `<driver task>.worker-<n>`).
    pub task_id: String,
    /// Its agent.
    pub agent_id: String,
    /// `master` or `worker`.
    pub kind: String,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Kill a driver's task.
    Kill {
        /// The task.
        task_id: String,
        /// Its agent.
        agent_id: Option<String>,
    },
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue is full.
    #[error("the dispatcher's queue is full ({capacity} drivers waiting); retry later")]
    Full {
        /// Its capacity.
        capacity: usize,
    },
    /// No such submission (never, or no longer retained).
    #[error("no driver {0} (never submitted, or no longer retained)")]
    Unknown(String),
    /// It already ended.
    #[error("driver {id} has already finished ({state:?})")]
    Finished {
        /// The driver.
        id: String,
        /// How it ended.
        state: DriverState,
    },
}

/// How the dispatcher is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Drivers queued at most.
    pub max_queued: usize,
    /// Finished drivers retained.
    pub retained: usize,
    /// Queue priorities by name (`spark.corral.dispatcher.queue.<name>`);
    /// other queues have priority 0.
    pub queue_priorities: BTreeMap<String, i64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queued: DEFAULT_MAX_QUEUED,
            retained: DEFAULT_RETAINED,
            queue_priorities: BTreeMap::new(),
        }
    }
}

/// Every driver of the dispatcher.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    limits: Limits,
    /// Queued, running and relaunching drivers, by id.
    live: BTreeMap<String, Driver>,
    /// Finished drivers, oldest first.
    history: VecDeque<Driver>,
    /// Drivers submitted in the current second, for ids.
    seq: (i64, u32),
    /// Drivers changed, added or forgotten since [`Dispatcher::take_changed`].
    changed: BTreeSet<String>,
}

fn is_queued(d: &Driver) -> bool {
    matches!(d.state, DriverState::Submitted | DriverState::Relaunching) && d.task_id.is_none()
}

/// `yyyyMMddHHmmss` (UTC) of `ms` since the epoch.
fn stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

impl Dispatcher {
    /// None yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            live: BTreeMap::new(),
            history: VecDeque::new(),
            seq: (0, 0),
            changed: BTreeSet::new(),
        }
    }

    /// The ids of the drivers changed, added or forgotten since the last
    /// call (for the store: write those still known, delete the others).
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Keeps at most `retained` finished drivers; the forgotten ones count
    /// as changed.
    fn trim_history(&mut self) {
        while self.history.len() > self.limits.retained {
            if let Some(d) = self.history.pop_front() {
                self.changed.insert(d.submission_id);
            }
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Queues `application` under `role` (its queue from
    /// `spark.corral.dispatcher.queue`); returns the submission id, or
    /// refuses when the queue is full.
    pub fn submit(
        &mut self,
        application: Application,
        role: &str,
        now_ms: i64,
    ) -> Result<String, QueueError> {
        let queued = self.live.values().filter(|d| is_queued(d)).count();
        if queued >= self.limits.max_queued {
            return Err(QueueError::Full {
                capacity: self.limits.max_queued,
            });
        }
        let second = now_ms.div_euclid(1000);
        self.seq = if self.seq.0 == second {
            (second, self.seq.1 + 1)
        } else {
            (second, 0)
        };
        let mut id = format!("driver-{}-{:04}", stamp(now_ms), self.seq.1);
        while self.get(&id).is_some() {
            self.seq.1 += 1;
            id = format!("driver-{}-{:04}", stamp(now_ms), self.seq.1);
        }
        let queue = application
            .property("spark.corral.dispatcher.queue")
            .unwrap_or("default")
            .to_string();
        let priority = self
            .limits
            .queue_priorities
            .get(&queue)
            .copied()
            .unwrap_or(0);
        self.live.insert(
            id.clone(),
            Driver::queued(&id, role, queue, priority, application, now_ms),
        );
        self.changed.insert(id.clone());
        Ok(id)
    }

    /// A driver, live or retained.
    pub fn get(&self, id: &str) -> Option<&Driver> {
        self.live
            .get(id)
            .or_else(|| self.history.iter().find(|d| d.submission_id == id))
    }

    /// The live drivers (queued, running, relaunching).
    pub fn live(&self) -> impl Iterator<Item = &Driver> {
        self.live.values()
    }

    /// The finished drivers retained, newest first.
    pub fn history(&self) -> impl Iterator<Item = &Driver> {
        self.history.iter().rev()
    }

    /// The roles with drivers waiting to be launched now.
    pub fn waiting_roles(&self, now_ms: i64) -> Vec<String> {
        let mut roles: Vec<String> = self
            .live
            .values()
            .filter(|d| is_queued(d) && d.not_before_ms.is_none_or(|t| t <= now_ms))
            .map(|d| d.role.clone())
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// The drivers of `role` to launch now, in order: higher queue priority
    /// first, then earlier submission (a relaunch keeps its place).
    pub fn candidates(&self, role: &str, now_ms: i64) -> Vec<&Driver> {
        let mut c: Vec<&Driver> = self
            .live
            .values()
            .filter(|d| d.role == role && is_queued(d))
            .filter(|d| d.not_before_ms.is_none_or(|t| t <= now_ms))
            .collect();
        c.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.submitted_ms.cmp(&b.submitted_ms))
                .then(a.submission_id.cmp(&b.submission_id))
        });
        c
    }

    /// The task id of a driver's next attempt (`<id>` first, then
    /// `<id>-retry-<n>`, so a relaunch never reuses a task id).
    pub fn next_task_id(&self, id: &str) -> Option<String> {
        let d = self.live.get(id)?;
        Some(if d.attempts == 0 {
            id.to_string()
        } else {
            format!("{id}-retry-{}", d.attempts)
        })
    }

    /// The task of a driver's latest attempt (the running one, or the one
    /// that ended last); `None` before its first launch.
    pub fn latest_task_id(&self, id: &str) -> Option<String> {
        let d = self.get(id)?;
        d.task_id.clone().or_else(|| match d.attempts {
            0 => None,
            1 => Some(id.to_string()),
            n => Some(format!("{id}-retry-{}", n - 1)),
        })
    }

    /// The driver's task was launched on `agent_id` (`hostname`).
    pub fn launched(&mut self, id: &str, task_id: &str, agent_id: &str, hostname: &str) {
        if let Some(d) = self.live.get_mut(id) {
            self.changed.insert(id.to_string());
            d.attempts += 1;
            d.task_id = Some(task_id.to_string());
            d.agent_id = Some(agent_id.to_string());
            d.hostname = Some(hostname.to_string());
            d.not_before_ms = None;
            d.message = None;
        }
    }

    /// The current attempt's standalone cluster, and where its driver's
    /// UI and master are (recorded with the launch).
    pub fn cluster_launched(
        &mut self,
        id: &str,
        cluster: Vec<ClusterTask>,
        master_url: String,
        ui_url: String,
    ) {
        if let Some(d) = self.live.get_mut(id) {
            self.changed.insert(id.to_string());
            d.cluster = cluster;
            d.master_url = Some(master_url);
            d.ui_url = Some(ui_url);
        }
    }

    /// The driver whose current task is `task_id`.
    pub fn by_task(&self, task_id: &str) -> Option<&Driver> {
        self.live
            .values()
            .find(|d| d.task_id.as_deref() == Some(task_id))
    }

    /// The live driver whose current standalone cluster has `task_id`.
    pub fn by_cluster_task(&self, task_id: &str) -> Option<&Driver> {
        self.live
            .values()
            .find(|d| d.cluster.iter().any(|c| c.task_id == task_id))
    }

    /// Records why a driver's attempt is being ended (its master or a
    /// worker failed); the driver's own task state decides what follows.
    pub fn note(&mut self, id: &str, message: &str) {
        if let Some(d) = self.live.get_mut(id) {
            self.changed.insert(id.to_string());
            d.message = Some(message.to_string());
        }
    }

    /// A driver task's state (Mesos' name, e.g. `TASK_RUNNING`) with its
    /// message: running drivers become RUNNING; a finished one FINISHED; a
    /// killed one KILLED; a failed one FAILED — or, when supervised and not
    /// killed, RELAUNCHING, queued again after its backoff.
    pub fn update(&mut self, task_id: &str, state: &str, message: Option<&str>, now_ms: i64) {
        let Some(id) = self.by_task(task_id).map(|d| d.submission_id.clone()) else {
            return;
        };
        let Some(d) = self.live.get_mut(&id) else {
            return;
        };
        self.changed.insert(id.clone());
        match state {
            "TASK_STAGING" | "TASK_STARTING" | "TASK_KILLING" => {}
            "TASK_RUNNING" => {
                if d.state != DriverState::Running {
                    d.state = DriverState::Running;
                    d.started_ms = Some(now_ms);
                }
            }
            "TASK_FINISHED" => self.finish(&id, DriverState::Finished, message, now_ms),
            "TASK_KILLED" if d.kill_requested => {
                self.finish(&id, DriverState::Killed, message, now_ms)
            }
            "TASK_UNREACHABLE" => {
                d.message = Some(format!(
                    "its agent is unreachable{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
            }
            _ => {
                // A note made when the attempt was ended for a reason of
                // the dispatcher's (its cluster failed) says more than the
                // driver's TASK_KILLED.
                let noted = d.message.clone().filter(|_| state == "TASK_KILLED");
                let why = noted.unwrap_or_else(|| {
                    format!(
                        "{state}{}",
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )
                });
                if d.kill_requested {
                    self.finish(&id, DriverState::Killed, Some(&why), now_ms);
                } else if d.application.supervise() {
                    let backoff = (BACKOFF_START_MS << d.attempts.saturating_sub(1).min(16))
                        .min(BACKOFF_MAX_MS);
                    d.state = DriverState::Relaunching;
                    d.task_id = None;
                    d.agent_id = None;
                    d.hostname = None;
                    d.started_ms = None;
                    d.cluster.clear();
                    d.master_url = None;
                    d.ui_url = None;
                    d.not_before_ms = Some(now_ms + backoff);
                    d.message = Some(format!("{why}; relaunched in {} s", backoff / 1000));
                } else {
                    let end = if state == "TASK_ERROR" {
                        DriverState::Error
                    } else {
                        DriverState::Failed
                    };
                    self.finish(&id, end, Some(&why), now_ms);
                }
            }
        }
    }

    fn finish(&mut self, id: &str, state: DriverState, message: Option<&str>, now_ms: i64) {
        let Some(mut d) = self.live.remove(id) else {
            return;
        };
        d.state = state;
        d.finished_ms = Some(now_ms);
        if let Some(m) = message {
            d.message = Some(m.to_string());
        }
        self.changed.insert(d.submission_id.clone());
        self.history.push_back(d);
        self.trim_history();
    }

    /// Kills a driver: a queued one ends KILLED at once; a running one's
    /// task is killed (KILLED when the task ends).
    pub fn kill(&mut self, id: &str, now_ms: i64) -> Result<Vec<Command>, QueueError> {
        if let Some(d) = self.history.iter().find(|d| d.submission_id == id) {
            return Err(QueueError::Finished {
                id: id.to_string(),
                state: d.state,
            });
        }
        let Some(d) = self.live.get_mut(id) else {
            return Err(QueueError::Unknown(id.to_string()));
        };
        d.kill_requested = true;
        self.changed.insert(id.to_string());
        match d.task_id.clone() {
            Some(task_id) => Ok(vec![Command::Kill {
                task_id,
                agent_id: d.agent_id.clone(),
            }]),
            None => {
                self.finish(
                    id,
                    DriverState::Killed,
                    Some("killed before it was launched"),
                    now_ms,
                );
                Ok(Vec::new())
            }
        }
    }

    /// Kills every live driver (Spark 4's `killall`); returns the ids and
    /// the commands.
    pub fn kill_all(&mut self, now_ms: i64) -> (Vec<String>, Vec<Command>) {
        let ids: Vec<String> = self.live.keys().cloned().collect();
        let mut cmds = Vec::new();
        for id in &ids {
            if let Ok(c) = self.kill(id, now_ms) {
                cmds.extend(c);
            }
        }
        (ids, cmds)
    }

    /// Forgets the finished drivers (Spark 4's `clear`); returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.history.len();
        self.changed
            .extend(self.history.drain(..).map(|d| d.submission_id));
        n
    }

    /// Everything, for the store.
    pub fn export(&self) -> (Vec<Driver>, Vec<Driver>) {
        (
            self.live.values().cloned().collect(),
            self.history.iter().cloned().collect(),
        )
    }

    /// Takes over stored drivers (a restart or a new leader); returns the
    /// tasks to reconcile (task id, agent id).
    pub fn import(
        &mut self,
        live: Vec<Driver>,
        history: Vec<Driver>,
    ) -> Vec<(String, Option<String>)> {
        let mut adopted = Vec::new();
        for d in live {
            if let Some(t) = &d.task_id {
                adopted.push((t.clone(), d.agent_id.clone()));
            }
            self.live.insert(d.submission_id.clone(), d);
        }
        self.history = history.into();
        self.trim_history();
        adopted
    }

    /// A driver task the master does not know (reconciled after a
    /// restart): it is queued again (its next attempt gets a new task id).
    pub fn lost_in_failover(&mut self, task_id: &str) {
        let Some(id) = self.by_task(task_id).map(|d| d.submission_id.clone()) else {
            return;
        };
        if let Some(d) = self.live.get_mut(&id) {
            self.changed.insert(id.clone());
            d.task_id = None;
            d.agent_id = None;
            d.hostname = None;
            d.cluster.clear();
            d.master_url = None;
            d.ui_url = None;
            d.state = if d.attempts > 0 {
                DriverState::Relaunching
            } else {
                DriverState::Submitted
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(props: &[(&str, &str)]) -> Application {
        Application {
            app_resource: "file:///jobs/pi.jar".into(),
            main_class: "Pi".into(),
            app_args: vec!["10".into()],
            spark_properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            environment_variables: BTreeMap::new(),
        }
    }

    const T0: i64 = 1_796_380_000_000; // 2026-12-04T10:26:40Z

    #[test]
    fn changes_are_tracked_for_the_store_and_reads_change_nothing() {
        let mut d = Dispatcher::new(Limits {
            retained: 1,
            ..Limits::default()
        });
        let a = d.submit(app(&[]), "eng", T0).expect("a");
        let b = d.submit(app(&[]), "eng", T0).expect("b");
        assert_eq!(d.take_changed(), BTreeSet::from([a.clone(), b.clone()]));
        // Reads (status, lists, placement candidates) change nothing.
        let _ = (d.get(&a), d.candidates("eng", T0), d.live().count());
        assert!(d.take_changed().is_empty());
        d.launched(&a, "t-a", "agent", "host");
        d.update("t-a", "TASK_RUNNING", None, T0);
        assert_eq!(d.take_changed(), BTreeSet::from([a.clone()]));
        // Finished drivers beyond --retained_drivers are forgotten: changed.
        d.update("t-a", "TASK_FINISHED", None, T0);
        d.kill(&b, T0).expect("kill b");
        assert_eq!(d.take_changed(), BTreeSet::from([a.clone(), b.clone()]));
        assert!(d.get(&a).is_none() && d.get(&b).is_some());
        assert_eq!(d.clear(), 1);
        assert_eq!(d.take_changed(), BTreeSet::from([b]));
    }

    #[test]
    fn ids_are_sparks_driver_ids_and_unique_within_a_second() {
        let mut d = Dispatcher::new(Limits::default());
        let a = d.submit(app(&[]), "eng", T0).expect("a");
        let b = d.submit(app(&[]), "eng", T0 + 10).expect("b");
        assert_eq!(a, "driver-20261204102640-0000");
        assert_eq!(b, "driver-20261204102640-0001");
        let c = d.submit(app(&[]), "eng", T0 + 1000).expect("c");
        assert_eq!(c, "driver-20261204102641-0000");
        assert_eq!(stamp(0), "19700101000000");
        assert_eq!(stamp(951_782_400_000), "20000229000000");
    }

    #[test]
    fn a_full_queue_refuses_and_changes_nothing() {
        let mut d = Dispatcher::new(Limits {
            max_queued: 2,
            ..Limits::default()
        });
        d.submit(app(&[]), "eng", T0).expect("1");
        d.submit(app(&[]), "eng", T0).expect("2");
        assert_eq!(
            d.submit(app(&[]), "eng", T0),
            Err(QueueError::Full { capacity: 2 })
        );
        assert_eq!(d.live().count(), 2);
        // A launched driver no longer counts against the queue.
        let first = d.candidates("eng", T0)[0].submission_id.clone();
        d.launched(&first, &first, "a1", "h1");
        assert!(d.submit(app(&[]), "eng", T0).is_ok());
    }

    #[test]
    fn higher_priority_queues_go_first_then_arrival_order() {
        let mut d = Dispatcher::new(Limits {
            queue_priorities: [("urgent".to_string(), 10)].into(),
            ..Limits::default()
        });
        let a = d.submit(app(&[]), "eng", T0).expect("a");
        let b = d
            .submit(
                app(&[("spark.corral.dispatcher.queue", "urgent")]),
                "eng",
                T0 + 1,
            )
            .expect("b");
        let c = d.submit(app(&[]), "eng", T0 + 2).expect("c");
        let other = d.submit(app(&[]), "ops", T0 + 3).expect("other");
        let order: Vec<&str> = d
            .candidates("eng", T0)
            .iter()
            .map(|x| x.submission_id.as_str())
            .collect();
        assert_eq!(order, [b.as_str(), a.as_str(), c.as_str()]);
        assert_eq!(d.candidates("ops", T0)[0].submission_id, other);
        assert_eq!(d.waiting_roles(T0), ["eng", "ops"]);
    }

    #[test]
    fn a_driver_runs_and_finishes_into_the_history() {
        let mut d = Dispatcher::new(Limits::default());
        let id = d.submit(app(&[]), "eng", T0).expect("id");
        let task = d.next_task_id(&id).expect("task");
        assert_eq!(task, id);
        d.launched(&id, &task, "a1", "h1");
        assert!(d.candidates("eng", T0).is_empty());
        d.update(&task, "TASK_RUNNING", None, T0 + 5);
        assert_eq!(d.get(&id).map(|x| x.state), Some(DriverState::Running));
        d.update(&task, "TASK_FINISHED", None, T0 + 9);
        let done = d.get(&id).expect("retained");
        assert_eq!(done.state, DriverState::Finished);
        assert_eq!(done.finished_ms, Some(T0 + 9));
        assert_eq!(d.live().count(), 0);
        assert_eq!(
            d.kill(&id, T0 + 10),
            Err(QueueError::Finished {
                id: id.clone(),
                state: DriverState::Finished
            })
        );
        assert_eq!(d.clear(), 1);
        assert!(d.get(&id).is_none());
    }

    #[test]
    fn a_supervised_driver_is_relaunched_with_a_doubling_backoff() {
        let mut d = Dispatcher::new(Limits::default());
        let id = d
            .submit(app(&[("spark.driver.supervise", "true")]), "eng", T0)
            .expect("id");
        let mut now = T0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let c = d.candidates("eng", now);
            assert_eq!(c.len(), 1, "queued again");
            let task = d.next_task_id(&id).expect("task");
            d.launched(&id, &task, "a1", "h1");
            d.update(&task, "TASK_RUNNING", None, now);
            d.update(&task, "TASK_FAILED", Some("exit 1"), now);
            let x = d.get(&id).expect("live");
            assert_eq!(x.state, DriverState::Relaunching);
            assert_eq!(
                d.latest_task_id(&id),
                Some(task.clone()),
                "its log is the last attempt's"
            );
            let at = x.not_before_ms.expect("backoff");
            assert!(
                d.candidates("eng", at - 1).is_empty(),
                "not before its backoff"
            );
            delays.push(at - now);
            now = at;
        }
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(
            d.next_task_id(&id).as_deref(),
            Some(format!("{id}-retry-8").as_str())
        );
        // An unsupervised one fails for good.
        let other = d.submit(app(&[]), "eng", now).expect("other");
        d.launched(&other, &other, "a1", "h1");
        d.update(&other, "TASK_FAILED", Some("exit 1"), now);
        let x = d.get(&other).expect("retained");
        assert_eq!(x.state, DriverState::Failed);
        assert_eq!(x.message.as_deref(), Some("TASK_FAILED: exit 1"));
    }

    #[test]
    fn kills_end_queued_drivers_at_once_and_running_ones_through_their_task() {
        let mut d = Dispatcher::new(Limits::default());
        let queued = d.submit(app(&[]), "eng", T0).expect("q");
        let running = d
            .submit(app(&[("spark.driver.supervise", "true")]), "eng", T0)
            .expect("r");
        d.launched(&running, &running, "a1", "h1");
        d.update(&running, "TASK_RUNNING", None, T0);
        assert_eq!(d.kill(&queued, T0), Ok(Vec::new()));
        assert_eq!(d.get(&queued).map(|x| x.state), Some(DriverState::Killed));
        assert_eq!(
            d.kill(&running, T0),
            Ok(vec![Command::Kill {
                task_id: running.clone(),
                agent_id: Some("a1".into())
            }])
        );
        // Killed, not relaunched although supervised.
        d.update(&running, "TASK_KILLED", None, T0 + 1);
        assert_eq!(d.get(&running).map(|x| x.state), Some(DriverState::Killed));
        assert_eq!(
            d.kill("driver-nope", T0),
            Err(QueueError::Unknown("driver-nope".into()))
        );
        let (ids, cmds) = d.kill_all(T0);
        assert!(ids.is_empty() && cmds.is_empty());
    }

    #[test]
    fn the_history_is_bounded_and_state_survives_export_and_import() {
        let mut d = Dispatcher::new(Limits {
            retained: 2,
            ..Limits::default()
        });
        for i in 0..3 {
            let id = d.submit(app(&[]), "eng", T0 + i).expect("id");
            d.kill(&id, T0 + i).expect("kill");
        }
        assert_eq!(d.history().count(), 2);
        let running = d.submit(app(&[]), "eng", T0 + 5).expect("r");
        d.launched(&running, &running, "a1", "h1");
        let queued = d.submit(app(&[]), "ops", T0 + 6).expect("q");
        let (live, history) = d.export();
        let mut again = Dispatcher::new(Limits {
            retained: 2,
            ..Limits::default()
        });
        let adopted = again.import(live, history);
        assert_eq!(adopted, vec![(running.clone(), Some("a1".to_string()))]);
        assert_eq!(again.history().count(), 2);
        assert_eq!(again.candidates("ops", T0 + 7)[0].submission_id, queued);
        // The master never had the running one: it is queued again.
        again.lost_in_failover(&running);
        assert_eq!(again.candidates("eng", T0 + 7)[0].submission_id, running);
        assert_eq!(
            again.next_task_id(&running).as_deref(),
            Some(format!("{running}-retry-1").as_str())
        );
    }
}
