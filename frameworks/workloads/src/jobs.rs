//! The pure core of scheduled jobs: which runs start, which are missed,
//! retried, skipped, timed out or triggered by their parents.
//!
//! [`Jobs`] is plain state. The shell feeds it the time and what happened
//! to runs, and carries out the [`Command`]s it returns: launch a run, kill
//! one. Everything it decides is in its state, which the shell writes to
//! the store before acting on the commands, so that a new leader reading
//! the state neither starts a due run twice nor forgets one:
//!
//! * each job keeps `next_due`, the earliest scheduled time not yet
//!   handled. A tick handles every due time up to now in order: within the
//!   lateness allowance it becomes a run (or a recorded skip, by the
//!   concurrency policy); later than that it is recorded as **missed** with
//!   the reason — never dropped silently;
//! * a run is recorded as `Launching` in the same state change that
//!   advances `next_due`, and every run has its own id, so a new leader
//!   finds launches the old one decided and can reconcile them;
//! * a failed run is retried with exponential backoff up to
//!   `numRetriesOnFailure` times; a run longer than the timeout is killed;
//! * a job with `dependsOn` and no schedule runs when every parent's
//!   latest run succeeded after the job's own last run. Cycles are refused.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::model::{ConcurrencyPolicy, Request};
use crate::schedule::Schedule;

/// Runs kept per job.
pub const HISTORY: usize = 100;
/// Default lateness allowance.
pub const DEFAULT_LATENESS_MS: u64 = 60_000;
/// First retry delay; doubles per attempt up to [`MAX_RETRY_DELAY_MS`].
pub const FIRST_RETRY_DELAY_MS: u64 = 5_000;
/// Longest retry delay.
pub const MAX_RETRY_DELAY_MS: u64 = 300_000;

/// How a run ended (or did not start).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    rename_all = "SCREAMING_SNAKE_CASE",
    tag = "outcome",
    content = "reason"
)]
pub enum Outcome {
    /// Decided, not yet known to be running.
    Launching,
    /// Running.
    Running,
    /// Exited 0.
    Succeeded,
    /// Failed (with what the task said).
    Failed(String),
    /// Killed for running longer than the timeout.
    TimedOut,
    /// Killed to make room for a newer run (REPLACE).
    Replaced,
    /// Not started: the previous run was still going (SKIP).
    Skipped(String),
    /// Not started within the lateness allowance.
    Missed(String),
}

impl Outcome {
    /// Whether the run has ended (or never started).
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Launching | Outcome::Running)
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Unique id (also the task id's suffix).
    pub run_id: String,
    /// The scheduled time it is for (for parent-triggered runs and run-now,
    /// when it was asked for).
    pub scheduled_for: Timestamp,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// When it was decided and its launch asked for.
    pub started_at: Option<Timestamp>,
    /// When its task was first reported running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// How it went.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a job's state is stored as: a new leader imports it, so it neither
/// starts a due run twice nor forgets one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// The earliest scheduled time not yet handled.
    pub next_due: Option<Timestamp>,
    /// Paused.
    #[serde(default)]
    pub paused: bool,
    /// The runs, oldest first.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// A retry waiting for its time: (due, attempt, scheduled for).
    #[serde(default)]
    pub retry: Option<(Timestamp, u32, Timestamp)>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Launch a task for this run of this job.
    Launch {
        /// The job (request id).
        job: String,
        /// The run.
        run_id: String,
    },
    /// Kill this run's task.
    Kill {
        /// The job.
        job: String,
        /// The run.
        run_id: String,
    },
}

/// Why a job definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Not a SCHEDULED request, or its schedule is invalid.
    #[error("{0}")]
    Invalid(String),
    /// `dependsOn` names a job that does not exist.
    #[error("dependsOn: no job {0:?}")]
    UnknownParent(String),
    /// `dependsOn` would make a cycle.
    #[error("dependsOn: {0} would form a cycle")]
    Cycle(String),
    /// No such job or run.
    #[error("no job {0:?}")]
    UnknownJob(String),
}

#[derive(Debug, Clone)]
struct Job {
    schedule: Option<Schedule>,
    parents: Vec<String>,
    policy: ConcurrencyPolicy,
    lateness: SignedDuration,
    retries: u32,
    timeout: Option<SignedDuration>,
    paused: bool,
    next_due: Option<Timestamp>,
    /// A retry waiting for its time: (due, attempt, scheduled_for).
    retry: Option<(Timestamp, u32, Timestamp)>,
    runs: Vec<Run>,
}

/// Every scheduled job's state.
#[derive(Debug, Clone, Default)]
pub struct Jobs {
    jobs: BTreeMap<String, Job>,
    serial: u64,
}

fn ms(v: u64) -> SignedDuration {
    SignedDuration::from_millis(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Jobs {
    /// No jobs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the job of a SCHEDULED, ON_DEMAND or RUN_ONCE
    /// `request` (the last two have no schedule: they run when asked); its
    /// schedule counts from `now` (a replaced job keeps its history).
    pub fn upsert(&mut self, request: &Request, now: Timestamp) -> Result<(), JobError> {
        if request.request_type.long_running() {
            return Err(JobError::Invalid(format!(
                "{} is a long-running request, not a job",
                request.id
            )));
        }
        request
            .validate()
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        let schedule = request
            .parsed_schedule()
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        let parents = request.depends_on.clone().unwrap_or_default();
        for p in &parents {
            if !self.jobs.contains_key(p) {
                return Err(JobError::UnknownParent(p.clone()));
            }
        }
        // A cycle exists if the job is reachable from one of its parents.
        let mut stack: Vec<&str> = parents.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        while let Some(j) = stack.pop() {
            if j == request.id {
                return Err(JobError::Cycle(format!(
                    "{} -> {}",
                    request.id,
                    parents.join(",")
                )));
            }
            if seen.insert(j.to_string()) {
                if let Some(job) = self.jobs.get(j) {
                    stack.extend(job.parents.iter().map(String::as_str));
                }
            }
        }
        let next_due = schedule.as_ref().and_then(|s| s.next_after(now));
        let previous = self.jobs.remove(&request.id);
        let job = Job {
            schedule,
            parents,
            // Every asked-for run of an ON_DEMAND request runs (as in
            // Singularity); a schedule skips a run while one still goes.
            policy: request.concurrency_policy.unwrap_or(
                if request.request_type == crate::model::RequestType::OnDemand {
                    crate::model::ConcurrencyPolicy::Allow
                } else {
                    crate::model::ConcurrencyPolicy::Skip
                },
            ),
            lateness: ms(request
                .lateness_allowance_millis
                .unwrap_or(DEFAULT_LATENESS_MS)),
            retries: request.num_retries_on_failure.unwrap_or(0),
            timeout: request.kill_old_non_long_running_tasks_after_millis.map(ms),
            paused: previous.as_ref().is_some_and(|p| p.paused),
            next_due,
            retry: None,
            runs: previous.map(|p| p.runs).unwrap_or_default(),
        };
        self.jobs.insert(request.id.clone(), job);
        Ok(())
    }

    /// Removes a job (its running runs are killed).
    pub fn remove(&mut self, id: &str) -> Vec<Command> {
        let Some(job) = self.jobs.remove(id) else {
            return Vec::new();
        };
        job.runs
            .iter()
            .filter(|r| !r.outcome.is_final())
            .map(|r| Command::Kill {
                job: id.to_string(),
                run_id: r.run_id.clone(),
            })
            .collect()
    }

    /// Pauses or unpauses a job. Due times passing while paused are
    /// recorded as missed ("paused") when the job is unpaused or ticked.
    pub fn set_paused(&mut self, id: &str, paused: bool) -> Result<(), JobError> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| JobError::UnknownJob(id.to_string()))?;
        job.paused = paused;
        Ok(())
    }

    /// A job's state, to store.
    pub fn export(&self, id: &str) -> Option<JobRecord> {
        let j = self.jobs.get(id)?;
        Some(JobRecord {
            next_due: j.next_due,
            paused: j.paused,
            runs: j.runs.clone(),
            retry: j.retry,
        })
    }

    /// Takes over a job's stored state (after `upsert` of its request).
    /// Runs the previous leader left going are kept as they were and
    /// returned: the shell re-attaches their tasks (reconciling them with
    /// the master; see [`Jobs::run_unknown`]). Due times since are handled
    /// by the next tick — run within the lateness allowance, missed beyond
    /// it.
    pub fn import(
        &mut self,
        id: &str,
        record: JobRecord,
        now: Timestamp,
    ) -> Result<Vec<String>, JobError> {
        let _ = now;
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| JobError::UnknownJob(id.to_string()))?;
        job.paused = record.paused;
        job.retry = record.retry;
        if record.next_due.is_some() || job.schedule.is_none() {
            job.next_due = record.next_due;
        }
        job.runs = record.runs;
        let in_flight = job
            .runs
            .iter()
            .filter(|r| !r.outcome.is_final())
            .map(|r| r.run_id.clone())
            .collect();
        let serial = job
            .runs
            .iter()
            .filter_map(|r| r.run_id.rsplit('-').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.serial = self.serial.max(serial);
        Ok(in_flight)
    }

    /// The master does not know a re-attached run's task: a run that was
    /// decided but never launched (the old leader died first) is launched
    /// now, under the same run id; one that was running has been lost and
    /// fails (and is retried if the job allows).
    pub fn run_unknown(&mut self, id: &str, run_id: &str, now: Timestamp) -> Vec<Command> {
        match self.run_mut(id, run_id).map(|r| r.outcome.clone()) {
            Some(Outcome::Launching) => vec![Command::Launch {
                job: id.to_string(),
                run_id: run_id.to_string(),
            }],
            Some(Outcome::Running) => self.run_finished(
                id,
                run_id,
                Err(
                    "its task is unknown to the master after the framework's leader changed".into(),
                ),
                now,
            ),
            _ => Vec::new(),
        }
    }

    /// The ids of the jobs.
    pub fn ids(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    /// The earliest time any job is due (a scheduled run or a retry): the
    /// shell ticks then, so a run starts on time rather than at the next
    /// periodic tick.
    pub fn earliest_due(&self) -> Option<Timestamp> {
        self.jobs
            .values()
            .flat_map(|j| [j.next_due, j.retry.map(|(at, _, _)| at)])
            .flatten()
            .min()
    }

    /// The next scheduled time of a job.
    pub fn next_due(&self, id: &str) -> Option<Timestamp> {
        self.jobs.get(id).and_then(|j| j.next_due)
    }

    /// A job's runs, oldest first.
    pub fn runs(&self, id: &str) -> &[Run] {
        self.jobs.get(id).map_or(&[], |j| j.runs.as_slice())
    }

    fn new_run(
        &mut self,
        id: &str,
        scheduled_for: Timestamp,
        attempt: u32,
        outcome: Outcome,
        now: Timestamp,
    ) -> Option<String> {
        self.serial += 1;
        let run_id = format!(
            "{}-{}-{}",
            scheduled_for.as_millisecond(),
            attempt,
            self.serial
        );
        let job = self.jobs.get_mut(id)?;
        let launching = outcome == Outcome::Launching;
        job.runs.push(Run {
            run_id: run_id.clone(),
            scheduled_for,
            attempt,
            started_at: launching.then_some(now),
            running_at: None,
            finished_at: (!launching).then_some(now),
            outcome,
        });
        if job.runs.len() > HISTORY {
            // Drop the oldest finished run (never one still going).
            if let Some(i) = job.runs.iter().position(|r| r.outcome.is_final()) {
                job.runs.remove(i);
            }
        }
        launching.then_some(run_id)
    }

    /// Starts (or skips, or replaces into) a run due at `scheduled_for`.
    fn start(
        &mut self,
        id: &str,
        scheduled_for: Timestamp,
        attempt: u32,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let active: Vec<String> = job
            .runs
            .iter()
            .filter(|r| !r.outcome.is_final())
            .map(|r| r.run_id.clone())
            .collect();
        if !active.is_empty() {
            match job.policy {
                ConcurrencyPolicy::Skip => {
                    self.new_run(
                        id,
                        scheduled_for,
                        attempt,
                        Outcome::Skipped(format!("run {} was still going", active[0])),
                        now,
                    );
                    return;
                }
                ConcurrencyPolicy::Replace => {
                    if let Some(job) = self.jobs.get_mut(id) {
                        for r in job.runs.iter_mut().filter(|r| !r.outcome.is_final()) {
                            r.outcome = Outcome::Replaced;
                            r.finished_at = Some(now);
                            out.push(Command::Kill {
                                job: id.to_string(),
                                run_id: r.run_id.clone(),
                            });
                        }
                    }
                }
                ConcurrencyPolicy::Allow => {}
            }
        }
        if let Some(run_id) = self.new_run(id, scheduled_for, attempt, Outcome::Launching, now) {
            out.push(Command::Launch {
                job: id.to_string(),
                run_id,
            });
        }
    }

    /// Handles everything due up to `now`: scheduled times (started, or
    /// recorded as missed/skipped), retries whose time came, and runs past
    /// their timeout.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Command> {
        let mut out = Vec::new();
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            // Scheduled times, in order.
            while let Some(job) = self.jobs.get(&id) {
                let Some(due) = job.next_due.filter(|d| *d <= now) else {
                    break;
                };
                let next = job.schedule.as_ref().and_then(|s| s.next_after(due));
                let late = now.duration_since(due);
                let allowed = job.lateness;
                let paused = job.paused;
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.next_due = next;
                }
                if paused {
                    self.new_run(
                        &id,
                        due,
                        0,
                        Outcome::Missed("the job was paused".into()),
                        now,
                    );
                } else if late > allowed {
                    let reason = format!(
                        "not started within the lateness allowance: {:.1}s late (allowed {:.1}s); \
                         no leader was scheduling then",
                        late.as_secs_f64(),
                        allowed.as_secs_f64()
                    );
                    self.new_run(&id, due, 0, Outcome::Missed(reason), now);
                } else {
                    self.start(&id, due, 0, now, &mut out);
                }
            }
            // A retry whose time came.
            let retry = self
                .jobs
                .get(&id)
                .and_then(|j| j.retry)
                .filter(|(at, _, _)| *at <= now);
            if let Some((_, attempt, scheduled_for)) = retry {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.retry = None;
                }
                self.start(&id, scheduled_for, attempt, now, &mut out);
            }
            // Runs past their timeout.
            if let Some(job) = self.jobs.get_mut(&id) {
                if let Some(timeout) = job.timeout {
                    for r in job
                        .runs
                        .iter_mut()
                        .filter(|r| r.outcome == Outcome::Running)
                    {
                        let over = r
                            .started_at
                            .and_then(|s| s.checked_add(timeout).ok())
                            .is_some_and(|limit| limit <= now);
                        if over {
                            r.outcome = Outcome::TimedOut;
                            r.finished_at = Some(now);
                            out.push(Command::Kill {
                                job: id.clone(),
                                run_id: r.run_id.clone(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Starts a run now (Singularity's run-now), whatever the schedule.
    pub fn run_now(&mut self, id: &str, now: Timestamp) -> Result<Vec<Command>, JobError> {
        if !self.jobs.contains_key(id) {
            return Err(JobError::UnknownJob(id.to_string()));
        }
        let mut out = Vec::new();
        self.start(id, now, 0, now, &mut out);
        Ok(out)
    }

    /// A run's task is running.
    pub fn run_started(&mut self, id: &str, run_id: &str, now: Timestamp) {
        if let Some(r) = self.run_mut(id, run_id) {
            if r.outcome == Outcome::Launching {
                r.outcome = Outcome::Running;
                r.running_at.get_or_insert(now);
            }
        }
    }

    fn run_mut(&mut self, id: &str, run_id: &str) -> Option<&mut Run> {
        self.jobs
            .get_mut(id)?
            .runs
            .iter_mut()
            .find(|r| r.run_id == run_id)
    }

    /// A run's task ended: `Ok(())` succeeded, `Err(message)` failed. A
    /// failure is retried (with backoff) while attempts remain; a success
    /// may trigger dependent jobs.
    pub fn run_finished(
        &mut self,
        id: &str,
        run_id: &str,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(run) = self.run_mut(id, run_id) else {
            return out;
        };
        if run.outcome.is_final() {
            // Already timed out or replaced: the kill's report.
            return out;
        }
        run.finished_at = Some(now);
        let (attempt, scheduled_for) = (run.attempt, run.scheduled_for);
        match result {
            Ok(()) => {
                run.outcome = Outcome::Succeeded;
                self.trigger_children(id, now, &mut out);
            }
            Err(message) => {
                run.outcome = Outcome::Failed(message);
                let job = self.jobs.get_mut(id);
                if let Some(job) = job.filter(|j| attempt < j.retries) {
                    let delay = FIRST_RETRY_DELAY_MS
                        .saturating_mul(1 << attempt.min(20))
                        .min(MAX_RETRY_DELAY_MS);
                    let at = now.checked_add(ms(delay)).unwrap_or(now);
                    job.retry = Some((at, attempt + 1, scheduled_for));
                }
            }
        }
        out
    }

    fn last_success(&self, id: &str) -> Option<Timestamp> {
        self.jobs
            .get(id)?
            .runs
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .filter_map(|r| r.finished_at)
            .max()
    }

    fn trigger_children(&mut self, parent: &str, now: Timestamp, out: &mut Vec<Command>) {
        let children: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.parents.iter().any(|p| p == parent) && !j.paused)
            .map(|(id, _)| id.clone())
            .collect();
        for child in children {
            let Some(job) = self.jobs.get(&child) else {
                continue;
            };
            let last_own = job.runs.iter().filter_map(|r| r.started_at).max();
            let ready = job.parents.iter().all(|p| {
                self.last_success(p)
                    .is_some_and(|s| last_own.is_none_or(|own| s > own))
            });
            if ready {
                self.start(&child, now, 0, now, out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
