//! The status update manager: per task a FIFO of updates; only the head is
//! forwarded to the master, and it is resent (10 s, doubling to 10 min)
//! until the master acknowledges its uuid, then the next goes.
//!
//! [`StatusUpdateManager`] is a pure state machine with time passed in;
//! [`drive_retries`] is the timer loop around it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::internal::StatusUpdate;
use corral_api::v1::{ExecutorId, FrameworkId, TaskState, TaskStatus};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// First retry interval of an unacknowledged update.
pub const INITIAL_RETRY: Duration = Duration::from_secs(10);
/// Retry interval cap.
pub const MAX_RETRY: Duration = Duration::from_secs(600);

/// Whether a task state is terminal.
pub fn is_terminal(state: i32) -> bool {
    matches!(
        TaskState::try_from(state),
        Ok(TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator)
    )
}

/// Identifies one task's stream of updates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Framework id value.
    pub framework_id: String,
    /// Task id value.
    pub task_id: String,
}

impl StreamKey {
    /// Builds a key.
    pub fn new(framework_id: &str, task_id: &str) -> Self {
        Self {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
        }
    }
}

#[derive(Debug)]
struct Stream {
    framework_id: FrameworkId,
    executor_id: Option<ExecutorId>,
    pending: VecDeque<TaskStatus>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Stream {
    fn head_message(&self) -> Option<StatusUpdate> {
        let head = self.pending.front()?;
        Some(StatusUpdate {
            framework_id: self.framework_id.clone(),
            status: head.clone(),
            executor_id: self.executor_id.clone(),
            latest_state: self.pending.back().map(|s| s.state),
        })
    }
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// The update carries no 16-byte uuid.
    #[error("status update for task {0} has no valid uuid")]
    MissingUuid(String),
}

/// The outcome of a master acknowledgement.
#[derive(Debug, PartialEq)]
pub enum Acked {
    /// No stream for that task, or the uuid is not its head.
    Ignored,
    /// The head was acknowledged.
    Done {
        /// The state of the acknowledged update.
        state: i32,
        /// The next update to forward, if any.
        next: Option<StatusUpdate>,
        /// Whether the stream is now empty (and removed).
        empty: bool,
    },
}

/// Per-task FIFOs of unacknowledged status updates.
#[derive(Debug, Default)]
pub struct StatusUpdateManager {
    streams: HashMap<StreamKey, Stream>,
}

impl StatusUpdateManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues an update. Returns the message to forward now when it became
    /// the head of its stream; a duplicate (same uuid already queued) is
    /// ignored.
    pub fn update(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: Option<ExecutorId>,
        status: TaskStatus,
        now: Instant,
    ) -> Result<Option<StatusUpdate>, UpdateError> {
        if status.uuid.as_ref().is_none_or(|u| u.len() != 16) {
            return Err(UpdateError::MissingUuid(status.task_id.value.clone()));
        }
        let key = StreamKey::new(&framework_id.value, &status.task_id.value);
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            framework_id: framework_id.clone(),
            executor_id: None,
            pending: VecDeque::new(),
            retry_at: None,
            backoff: INITIAL_RETRY,
        });
        if executor_id.is_some() {
            stream.executor_id = executor_id;
        }
        if stream.pending.iter().any(|s| s.uuid == status.uuid) {
            return Ok(None);
        }
        stream.pending.push_back(status);
        if stream.pending.len() == 1 {
            stream.backoff = INITIAL_RETRY;
            stream.retry_at = Some(now + INITIAL_RETRY);
            Ok(stream.head_message())
        } else {
            Ok(None)
        }
    }

    /// Applies the master's acknowledgement of `uuid` for a task.
    pub fn acknowledge(
        &mut self,
        framework_id: &str,
        task_id: &str,
        uuid: &[u8],
        now: Instant,
    ) -> Acked {
        let key = StreamKey::new(framework_id, task_id);
        let Some(stream) = self.streams.get_mut(&key) else {
            return Acked::Ignored;
        };
        if stream.pending.front().and_then(|s| s.uuid.as_deref()) != Some(uuid) {
            return Acked::Ignored;
        }
        let Some(acked) = stream.pending.pop_front() else {
            return Acked::Ignored;
        };
        if stream.pending.is_empty() {
            self.streams.remove(&key);
            return Acked::Done {
                state: acked.state,
                next: None,
                empty: true,
            };
        }
        stream.backoff = INITIAL_RETRY;
        stream.retry_at = Some(now + INITIAL_RETRY);
        Acked::Done {
            state: acked.state,
            next: stream.head_message(),
            empty: false,
        }
    }

    /// Heads whose retry time has come; each is rescheduled with a doubled
    /// interval (capped at [`MAX_RETRY`]).
    pub fn due(&mut self, now: Instant) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        let mut keys: Vec<&StreamKey> = self
            .streams
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let keys: Vec<StreamKey> = keys.into_iter().cloned().collect();
        for key in keys {
            if let Some(stream) = self.streams.get_mut(&key) {
                stream.backoff = (stream.backoff * 2).min(MAX_RETRY);
                stream.retry_at = Some(now + stream.backoff);
                out.extend(stream.head_message());
            }
        }
        out
    }

    /// Every head, to resend after (re-)registering; retry intervals restart.
    pub fn resend_all(&mut self, now: Instant) -> Vec<StatusUpdate> {
        let mut keys: Vec<StreamKey> = self.streams.keys().cloned().collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            if let Some(stream) = self.streams.get_mut(&key) {
                stream.backoff = INITIAL_RETRY;
                stream.retry_at = Some(now + INITIAL_RETRY);
                out.extend(stream.head_message());
            }
        }
        out
    }

    /// When the earliest retry is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams.values().filter_map(|s| s.retry_at).min()
    }

    /// Whether a task has unacknowledged updates.
    pub fn has_pending(&self, framework_id: &str, task_id: &str) -> bool {
        self.streams
            .contains_key(&StreamKey::new(framework_id, task_id))
    }

    /// Number of unacknowledged updates of a task.
    pub fn pending_count(&self, framework_id: &str, task_id: &str) -> usize {
        self.streams
            .get(&StreamKey::new(framework_id, task_id))
            .map_or(0, |s| s.pending.len())
    }

    /// The uuid and state of the oldest unacknowledged update of a task.
    pub fn head(&self, framework_id: &str, task_id: &str) -> Option<&TaskStatus> {
        self.streams
            .get(&StreamKey::new(framework_id, task_id))
            .and_then(|s| s.pending.front())
    }

    /// A task's unacknowledged updates, oldest first (what is checkpointed).
    pub fn pending_updates(&self, framework_id: &str, task_id: &str) -> Vec<StatusUpdate> {
        let Some(s) = self.streams.get(&StreamKey::new(framework_id, task_id)) else {
            return Vec::new();
        };
        s.pending
            .iter()
            .map(|status| StatusUpdate {
                framework_id: s.framework_id.clone(),
                status: status.clone(),
                executor_id: s.executor_id.clone(),
                latest_state: s.pending.back().map(|l| l.state),
            })
            .collect()
    }

    /// Drops every stream of a framework (it was shut down).
    pub fn remove_framework(&mut self, framework_id: &str) {
        self.streams.retain(|k, _| k.framework_id != framework_id);
    }

    /// Total queued updates.
    pub fn len(&self) -> usize {
        self.streams.values().map(|s| s.pending.len()).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// Resends due heads until `stop` turns true. `wake` is notified whenever
/// the earliest deadline may have moved; `forward` sends to the master.
pub async fn drive_retries(
    sum: Arc<Mutex<StatusUpdateManager>>,
    wake: Arc<Notify>,
    forward: impl Fn(StatusUpdate) + Send,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let deadline = match sum.lock() {
            Ok(s) => s.next_deadline(),
            Err(_) => return,
        };
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => continue,
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let due = match sum.lock() {
            Ok(mut s) => s.due(Instant::now()),
            Err(_) => return,
        };
        for update in due {
            tracing::debug!(
                framework_id = %update.framework_id.value,
                task_id = %update.status.task_id.value,
                "resending unacknowledged status update"
            );
            forward(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::ids;

    fn status(task: &str, state: TaskState) -> TaskStatus {
        TaskStatus {
            task_id: ids::task_id(task),
            state: state as i32,
            uuid: Some(ids::new_uuid_bytes()),
            ..Default::default()
        }
    }

    #[test]
    fn only_head_is_forwarded_in_order() {
        let now = Instant::now();
        let fw = ids::framework_id("F");
        let mut m = StatusUpdateManager::new();
        let s1 = status("t", TaskState::TaskRunning);
        let s2 = status("t", TaskState::TaskFinished);
        let first = m
            .update(&fw, Some(ids::executor_id("e")), s1.clone(), now)
            .unwrap()
            .unwrap();
        assert_eq!(first.status.uuid, s1.uuid);
        assert_eq!(first.latest_state, Some(TaskState::TaskRunning as i32));
        assert_eq!(first.executor_id, Some(ids::executor_id("e")));
        assert!(m.update(&fw, None, s2.clone(), now).unwrap().is_none());
        // Duplicates are ignored.
        assert!(m.update(&fw, None, s2.clone(), now).unwrap().is_none());
        assert_eq!(m.pending_count("F", "t"), 2);
        // The head now reports the newest state as latest.
        let again = m.resend_all(now);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].latest_state, Some(TaskState::TaskFinished as i32));

        // A wrong uuid does nothing.
        assert_eq!(
            m.acknowledge("F", "t", s2.uuid.as_ref().unwrap(), now),
            Acked::Ignored
        );
        match m.acknowledge("F", "t", s1.uuid.as_ref().unwrap(), now) {
            Acked::Done {
                next: Some(next),
                empty: false,
                ..
            } => assert_eq!(next.status.uuid, s2.uuid),
            other => panic!("{other:?}"),
        }
        match m.acknowledge("F", "t", s2.uuid.as_ref().unwrap(), now) {
            Acked::Done {
                next: None,
                empty: true,
                state,
            } => {
                assert_eq!(state, TaskState::TaskFinished as i32)
            }
            other => panic!("{other:?}"),
        }
        assert!(m.is_empty());
        assert!(!m.has_pending("F", "t"));
    }

    #[test]
    fn rejects_missing_uuid() {
        let mut m = StatusUpdateManager::new();
        let mut s = status("t", TaskState::TaskRunning);
        s.uuid = Some(vec![1, 2, 3]);
        assert!(m
            .update(&ids::framework_id("F"), None, s.clone(), Instant::now())
            .is_err());
        s.uuid = None;
        assert!(m
            .update(&ids::framework_id("F"), None, s, Instant::now())
            .is_err());
    }

    #[test]
    fn streams_are_independent() {
        let now = Instant::now();
        let fw = ids::framework_id("F");
        let mut m = StatusUpdateManager::new();
        assert!(m
            .update(&fw, None, status("a", TaskState::TaskRunning), now)
            .unwrap()
            .is_some());
        assert!(m
            .update(&fw, None, status("b", TaskState::TaskRunning), now)
            .unwrap()
            .is_some());
        m.remove_framework("F");
        assert!(m.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_backoff_until_acknowledged() {
        let sum = Arc::new(Mutex::new(StatusUpdateManager::new()));
        let wake = Arc::new(Notify::new());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = tokio::spawn(drive_retries(
            sum.clone(),
            wake.clone(),
            move |u| {
                let _ = tx.send((Instant::now(), u));
            },
            stop_rx,
        ));
        let start = Instant::now();
        let s = status("t", TaskState::TaskRunning);
        let fw = ids::framework_id("F");
        let first = sum
            .lock()
            .unwrap()
            .update(&fw, None, s.clone(), start)
            .unwrap();
        assert!(first.is_some());
        wake.notify_one();

        // Resent at +10 s, +30 s (10+20), +70 s (30+40).
        let mut times = Vec::new();
        for _ in 0..3 {
            let (at, u) = tokio::time::timeout(Duration::from_secs(3600), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(u.status.uuid, s.uuid);
            times.push((at - start).as_secs());
        }
        assert_eq!(times, vec![10, 30, 70]);

        // Acknowledged: nothing more is sent.
        let acked =
            sum.lock()
                .unwrap()
                .acknowledge("F", "t", s.uuid.as_ref().unwrap(), Instant::now());
        assert!(matches!(acked, Acked::Done { empty: true, .. }));
        wake.notify_one();
        assert!(tokio::time::timeout(Duration::from_secs(7200), rx.recv())
            .await
            .is_err());

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), driver)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn backoff_caps_at_ten_minutes() {
        let mut now = Instant::now();
        let mut m = StatusUpdateManager::new();
        m.update(
            &ids::framework_id("F"),
            None,
            status("t", TaskState::TaskRunning),
            now,
        )
        .unwrap();
        let mut last_gap = Duration::ZERO;
        for _ in 0..12 {
            let next = m.next_deadline().unwrap();
            last_gap = next - now;
            now = next;
            assert_eq!(m.due(now).len(), 1);
        }
        assert_eq!(m.next_deadline().unwrap() - now, MAX_RETRY);
        assert!(last_gap <= MAX_RETRY);
    }
}
