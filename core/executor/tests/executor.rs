//! Behaviour tests of the executor against `TestAgentPeer`, a minimal
//! in-process stand-in for the agent's executor API (the real agent is
//! exercised by the end-to-end tests elsewhere).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_api::recordio;
use corral_api::v1::executor::{call, event, Call, Event};
use corral_api::v1::{
    self, CommandInfo, DurationInfo, KillPolicy, TaskGroupInfo, TaskId, TaskInfo, TaskState,
    TaskStatus,
};
use corral_executor::{run_with_config, Config, ExecutorError};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(15);

// ----- the test peer ---------------------------------------------------------

#[derive(Default)]
struct PeerState {
    subscribes: Vec<call::Subscribe>,
    updates: Vec<TaskStatus>,
    stream: Option<mpsc::UnboundedSender<Event>>,
    manual_ack: bool,
}

/// Serves `POST /api/v1/executor`: answers SUBSCRIBE with a RecordIO stream
/// that starts with SUBSCRIBED, records UPDATE calls and (unless told not
/// to) acknowledges them on the stream.
#[derive(Clone)]
struct TestAgentPeer {
    addr: SocketAddr,
    state: Arc<Mutex<PeerState>>,
    changed: watch::Sender<u64>,
}

impl TestAgentPeer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TestAgentPeer {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: watch::channel(0).0,
        };
        let app = axum::Router::new()
            .route("/api/v1/executor", axum::routing::post(executor_api))
            .with_state(peer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        peer
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn send(&self, event: Event) {
        let state = self.state.lock().unwrap();
        state
            .stream
            .as_ref()
            .expect("executor subscribed")
            .send(event)
            .expect("stream open");
    }

    fn acknowledge(&self, status: &TaskStatus) {
        self.send(Event {
            r#type: Some(event::Type::Acknowledged as i32),
            acknowledged: Some(event::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone().unwrap_or_default(),
            }),
            ..Default::default()
        });
    }

    /// Ends the current event stream, as an agent restart would.
    fn drop_stream(&self) {
        self.state.lock().unwrap().stream = None;
    }

    /// Waits until `cond` holds on the recorded state.
    async fn wait_for(&self, what: &str, cond: impl Fn(&PeerState) -> bool) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            rx.borrow_and_update();
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for {what}; updates: {:?}",
                    self.summary()
                );
            }
        }
    }

    async fn wait_for_state(&self, task: &str, state: TaskState) {
        self.wait_for(&format!("{task} {}", state.as_str_name()), |s| {
            s.updates
                .iter()
                .any(|u| u.task_id.value == task && u.state == state as i32)
        })
        .await;
    }

    fn updates_of(&self, task: &str) -> Vec<TaskStatus> {
        let state = self.state.lock().unwrap();
        state
            .updates
            .iter()
            .filter(|u| u.task_id.value == task)
            .cloned()
            .collect()
    }

    fn states_of(&self, task: &str) -> Vec<TaskState> {
        self.updates_of(task).iter().map(|u| u.state()).collect()
    }

    fn summary(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .updates
            .iter()
            .map(|u| format!("{}:{}", u.task_id.value, u.state().as_str_name()))
            .collect()
    }
}

async fn executor_api(State(peer): State<TestAgentPeer>, body: Bytes) -> Response {
    let Ok(call) = Call::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    assert_eq!(call.framework_id.value, "fw-test");
    assert_eq!(call.executor_id.value, "ex-test");
    let response = match call.r#type() {
        call::Type::Subscribe => {
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(Event {
                r#type: Some(event::Type::Subscribed as i32),
                subscribed: Some(event::Subscribed {
                    executor_info: v1::ExecutorInfo {
                        executor_id: corral_api::ids::executor_id("ex-test"),
                        ..Default::default()
                    },
                    framework_info: v1::FrameworkInfo {
                        name: "test".into(),
                        id: Some(corral_api::ids::framework_id("fw-test")),
                        ..Default::default()
                    },
                    agent_info: v1::AgentInfo {
                        hostname: "localhost".into(),
                        ..Default::default()
                    },
                    container_id: None,
                }),
                ..Default::default()
            });
            let mut state = peer.state.lock().unwrap();
            state.subscribes.push(call.subscribe.unwrap_or_default());
            state.stream = Some(tx);
            let body = UnboundedReceiverStream::new(rx)
                .map(|e| Ok::<_, Infallible>(Bytes::from(recordio::encode(&e.encode_to_vec()))));
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", corral_api::APPLICATION_PROTOBUF)
                .body(Body::from_stream(body))
                .unwrap()
        }
        call::Type::Update => {
            let status = call.update.expect("update payload").status;
            let mut state = peer.state.lock().unwrap();
            if !state.manual_ack {
                if let Some(stream) = &state.stream {
                    let _ = stream.send(Event {
                        r#type: Some(event::Type::Acknowledged as i32),
                        acknowledged: Some(event::Acknowledged {
                            task_id: status.task_id.clone(),
                            uuid: status.uuid.clone().unwrap_or_default(),
                        }),
                        ..Default::default()
                    });
                }
            }
            state.updates.push(status);
            StatusCode::ACCEPTED.into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    };
    peer.bump();
    response
}

// ----- helpers ---------------------------------------------------------------

fn config(peer: &TestAgentPeer, sandbox: &Path, checkpoint: bool) -> Config {
    Config {
        framework_id: "fw-test".into(),
        executor_id: "ex-test".into(),
        agent_endpoint: peer.addr.to_string(),
        sandbox: sandbox.to_path_buf(),
        checkpoint,
        shutdown_grace_period: Duration::from_secs(1),
        recovery_timeout: Duration::from_secs(10),
        subscription_backoff_max: Duration::from_millis(200),
        default_kill_grace_period: Duration::from_secs(3),
        ack_wait: Duration::from_secs(2),
        docker_socket: None,
        container_name: None,
        agent_id: None,
        container_id: None,
    }
}

fn shell_task(id: &str, command: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId { value: id.into() },
        command: Some(CommandInfo {
            value: Some(command.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn launch(task: TaskInfo) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch { task }),
        ..Default::default()
    }
}

fn launch_group(tasks: Vec<TaskInfo>) -> Event {
    Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo { tasks },
        }),
        ..Default::default()
    }
}

fn kill(id: &str, grace: Option<Duration>) -> Event {
    Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: TaskId { value: id.into() },
            kill_policy: grace.map(|g| KillPolicy {
                grace_period: Some(DurationInfo {
                    nanoseconds: g.as_nanos() as i64,
                }),
            }),
        }),
        ..Default::default()
    }
}

fn shutdown() -> Event {
    Event {
        r#type: Some(event::Type::Shutdown as i32),
        ..Default::default()
    }
}

/// Starts the executor and waits for it to subscribe.
async fn start(
    peer: &TestAgentPeer,
    sandbox: &Path,
    checkpoint: bool,
) -> JoinHandle<Result<(), ExecutorError>> {
    let handle = tokio::spawn(run_with_config(config(peer, sandbox, checkpoint)));
    peer.wait_for("SUBSCRIBE", |s| !s.subscribes.is_empty())
        .await;
    handle
}

async fn finish(handle: JoinHandle<Result<(), ExecutorError>>) -> Result<(), ExecutorError> {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("executor exits in time")
        .expect("executor task does not panic")
}

/// Reads the pid a task wrote to `file` in the sandbox.
async fn read_pid(sandbox: &Path, file: &str) -> i32 {
    let path = sandbox.join(file);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "task never wrote {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live (non-zombie) processes in process group `pgid`.
fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut members = vec![];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            members.push(pid);
        }
    }
    members
}

async fn assert_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live_group_members(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "process group {pgid} still has live members: {:?}",
            live_group_members(pgid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----- tests -----------------------------------------------------------------

#[tokio::test]
async fn exit_zero_reports_starting_running_finished() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch(shell_task("t1", "exit 0")));
    finish(handle).await.unwrap();

    assert_eq!(
        peer.states_of("t1"),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    let updates = peer.updates_of("t1");
    let uuids: HashSet<_> = updates.iter().map(|u| u.uuid.clone().unwrap()).collect();
    assert_eq!(uuids.len(), 3, "a fresh uuid per update");
    for u in &updates {
        assert_eq!(u.uuid.as_ref().unwrap().len(), 16);
        assert_eq!(u.source(), v1::task_status::Source::Executor);
        assert_eq!(u.executor_id.as_ref().unwrap().value, "ex-test");
        assert!(u.timestamp.unwrap() > 0.0);
    }
}

#[tokio::test]
async fn task_runs_in_the_sandbox_with_its_environment() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    let mut task = shell_task("t1", "echo \"$GREETING\" > out.txt");
    task.command.as_mut().unwrap().environment = Some(v1::Environment {
        variables: vec![v1::environment::Variable {
            name: "GREETING".into(),
            value: Some("hello".into()),
            ..Default::default()
        }],
    });
    peer.send(launch(task));
    finish(handle).await.unwrap();

    assert_eq!(peer.states_of("t1").last(), Some(&TaskState::TaskFinished));
    let out = std::fs::read_to_string(sandbox.path().join("out.txt")).unwrap();
    assert_eq!(out.trim(), "hello");
}

#[tokio::test]
async fn exit_three_reports_failed_with_status() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch(shell_task("t1", "exit 3")));
    finish(handle).await.unwrap();

    assert_eq!(
        peer.states_of("t1"),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed
        ]
    );
    let last = peer.updates_of("t1").pop().unwrap();
    assert_eq!(
        last.message.as_deref(),
        Some("Command exited with status 3")
    );
}

#[tokio::test]
async fn killed_task_is_killed_within_grace_and_its_group_is_gone() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch(shell_task("t1", "echo $$ > task.pid; sleep 100")));
    peer.wait_for_state("t1", TaskState::TaskRunning).await;
    let pgid = read_pid(sandbox.path(), "task.pid").await;

    let killed_at = Instant::now();
    peer.send(kill("t1", Some(Duration::from_secs(2))));
    peer.wait_for_state("t1", TaskState::TaskKilled).await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "SIGTERM suffices"
    );
    finish(handle).await.unwrap();

    assert_eq!(
        peer.states_of("t1"),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskKilled
        ]
    );
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn kill_escalates_to_sigkill_after_the_grace_period() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    // SIG_IGN survives exec, so both the shell and sleep ignore SIGTERM.
    peer.send(launch(shell_task(
        "t1",
        "trap '' TERM; echo $$ > task.pid; sleep 100",
    )));
    peer.wait_for_state("t1", TaskState::TaskRunning).await;
    let pgid = read_pid(sandbox.path(), "task.pid").await;

    let grace = Duration::from_millis(500);
    let killed_at = Instant::now();
    peer.send(kill("t1", Some(grace)));
    peer.wait_for_state("t1", TaskState::TaskKilled).await;
    let elapsed = killed_at.elapsed();
    assert!(
        elapsed >= grace,
        "killed after {elapsed:?}, before the grace period"
    );
    assert!(
        elapsed < grace + Duration::from_secs(3),
        "killed after {elapsed:?}"
    );
    let last = peer.updates_of("t1").pop().unwrap();
    assert_eq!(
        last.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    finish(handle).await.unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn failing_group_member_kills_the_rest() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch_group(vec![
        shell_task("long", "echo $$ > long.pid; sleep 100"),
        shell_task(
            "bad",
            "while [ ! -s long.pid ]; do sleep 0.05; done; exit 1",
        ),
    ]));
    finish(handle).await.unwrap();

    assert_eq!(
        peer.states_of("bad"),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed
        ]
    );
    assert_eq!(
        peer.states_of("long"),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskKilled
        ]
    );
    let pgid = read_pid(sandbox.path(), "long.pid").await;
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn killing_one_group_member_kills_the_group() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch_group(vec![
        shell_task("a", "sleep 100"),
        shell_task("b", "sleep 100"),
    ]));
    peer.wait_for_state("b", TaskState::TaskRunning).await;
    peer.send(kill("a", None));
    finish(handle).await.unwrap();

    assert_eq!(peer.states_of("a").last(), Some(&TaskState::TaskKilled));
    assert_eq!(peer.states_of("b").last(), Some(&TaskState::TaskKilled));
}

#[tokio::test]
async fn shutdown_kills_all_tasks_and_exits() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch_group(vec![
        shell_task("a", "sleep 100"),
        shell_task("b", "trap '' TERM; echo $$ > b.pid; sleep 100"),
    ]));
    peer.wait_for_state("a", TaskState::TaskRunning).await;
    let b = read_pid(sandbox.path(), "b.pid").await;
    let shutdown_at = Instant::now();
    peer.send(shutdown());
    finish(handle).await.unwrap();

    // `a` dies of SIGTERM; `b` ignores it and gets SIGKILL after the
    // executor shutdown grace period (1 s in `config`).
    let a = peer.updates_of("a").pop().unwrap();
    assert_eq!(a.state(), TaskState::TaskKilled);
    assert_eq!(
        a.message.as_deref(),
        Some("Command terminated with signal Terminated")
    );
    let last_b = peer.updates_of("b").pop().unwrap();
    assert_eq!(last_b.state(), TaskState::TaskKilled);
    assert_eq!(
        last_b.message.as_deref(),
        Some("Command terminated with signal Killed")
    );
    assert!(shutdown_at.elapsed() >= Duration::from_secs(1));
    assert_group_gone(b).await;
}

#[tokio::test]
async fn task_without_command_is_an_error() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    let mut task = shell_task("t1", "");
    task.command = None;
    peer.send(launch(task));
    finish(handle).await.unwrap();

    let updates = peer.updates_of("t1");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state(), TaskState::TaskError);
    assert!(updates[0]
        .message
        .as_deref()
        .unwrap()
        .contains("no command"));
}

#[tokio::test]
async fn checkpointed_executor_resubscribes_with_unacknowledged_updates() {
    let peer = TestAgentPeer::start().await;
    peer.state.lock().unwrap().manual_ack = true;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), true).await;

    peer.send(launch(shell_task("t1", "sleep 100")));
    peer.wait_for_state("t1", TaskState::TaskRunning).await;
    let starting = peer.updates_of("t1")[0].clone();
    peer.acknowledge(&starting);
    // The stream delivers what was sent before it ends: the executor sees
    // the acknowledgement, then the disconnection.
    peer.drop_stream();
    peer.wait_for("re-SUBSCRIBE", |s| s.subscribes.len() >= 2)
        .await;
    let resubscribe = peer.state.lock().unwrap().subscribes[1].clone();
    let resent: Vec<TaskState> = resubscribe
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.state())
        .collect();
    assert_eq!(resent, [TaskState::TaskRunning]);
    assert_eq!(
        resubscribe.unacknowledged_updates[0].status.uuid,
        peer.updates_of("t1")[1].uuid,
        "the update is re-sent unchanged"
    );
    assert!(
        resubscribe.unacknowledged_tasks.is_empty(),
        "t1 had an update acknowledged"
    );

    // The task survived the disconnection; acknowledge everything and kill it.
    for u in &resubscribe.unacknowledged_updates {
        peer.acknowledge(&u.status);
    }
    peer.state.lock().unwrap().manual_ack = false;
    peer.send(kill("t1", None));
    finish(handle).await.unwrap();
    assert_eq!(peer.states_of("t1").last(), Some(&TaskState::TaskKilled));
}

#[tokio::test]
async fn without_checkpointing_a_disconnection_kills_the_tasks() {
    let peer = TestAgentPeer::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let handle = start(&peer, sandbox.path(), false).await;

    peer.send(launch(shell_task("t1", "echo $$ > task.pid; sleep 100")));
    peer.wait_for_state("t1", TaskState::TaskRunning).await;
    let pgid = read_pid(sandbox.path(), "task.pid").await;
    peer.drop_stream();

    let err = finish(handle).await.unwrap_err();
    assert!(matches!(err, ExecutorError::Disconnected(_)), "{err}");
    assert_group_gone(pgid).await;
}
