//! The whole agent against a scripted in-process master (gRPC) with the
//! test acting as the executor over HTTP.

use std::path::Path;
use std::time::Duration;

use corral_api::codec::{self, Encoding};
use corral_api::internal::agent_service_server::{AgentService, AgentServiceServer};
use corral_api::internal::{self, agent_message, master_message, AgentMessage, MasterMessage};
use corral_api::v1::executor::{call, event, Call, Event};
use corral_api::v1::{self, TaskState, TaskStatus};
use corral_api::{ids, recordio};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::AgentFlags;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) type Outbound = mpsc::UnboundedSender<Result<MasterMessage, Status>>;

pub(crate) struct MockMaster {
    pub(crate) sessions: mpsc::UnboundedSender<(Streaming<AgentMessage>, Outbound)>,
}

#[tonic::async_trait]
impl AgentService for MockMaster {
    type SessionStream = UnboundedReceiverStream<Result<MasterMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sessions
            .send((request.into_inner(), tx))
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

pub(crate) async fn recv(inbound: &mut Streaming<AgentMessage>) -> agent_message::Message {
    tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("agent message in time")
        .expect("stream ok")
        .expect("stream open")
        .message
        .expect("message set")
}

pub(crate) fn send(out: &Outbound, epoch: u64, m: master_message::Message) {
    out.send(Ok(MasterMessage {
        epoch: Some(epoch),
        message: Some(m),
    }))
    .expect("session open");
}

pub(crate) fn registered(epoch: u64, out: &Outbound) {
    send(
        out,
        epoch,
        master_message::Message::Registered(internal::Registered {
            agent_id: ids::agent_id("S1"),
            master_info: v1::MasterInfo {
                id: "m1".into(),
                hostname: Some("master.test".into()),
                port: 5050,
                ..Default::default()
            },
            ping_interval_seconds: 60.0,
        }),
    );
}

async fn next_event(
    stream: &mut (impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    dec: &mut recordio::Decoder,
) -> Option<Event> {
    loop {
        if let Some(r) = dec.next_record().expect("valid recordio") {
            return Some(Encoding::Json.decode(&r).expect("valid event"));
        }
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event in time")
        {
            Some(chunk) => dec.feed(&chunk.expect("chunk")),
            None => return None,
        }
    }
}

fn exec_call(ty: call::Type) -> Call {
    Call {
        executor_id: ids::executor_id("E"),
        framework_id: ids::framework_id("F"),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

async fn post(client: &reqwest::Client, endpoint: &str, c: &Call) -> reqwest::Response {
    client
        .post(format!("http://{endpoint}/api/v1/executor"))
        .header("content-type", "application/json")
        .body(codec::to_json(c))
        .send()
        .await
        .expect("agent reachable")
}

async fn update(client: &reqwest::Client, endpoint: &str, state: TaskState) -> Vec<u8> {
    let uuid = ids::new_uuid_bytes();
    let mut c = exec_call(call::Type::Update);
    c.update = Some(call::Update {
        status: TaskStatus {
            task_id: ids::task_id("t1"),
            state: state as i32,
            uuid: Some(uuid.clone()),
            ..Default::default()
        },
    });
    let resp = post(client, endpoint, &c).await;
    assert_eq!(resp.status(), 202);
    uuid
}

pub(crate) async fn wait_for_file(path: &Path, needle: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("file content in time")
}

#[tokio::test]
async fn task_lifecycle_against_a_scripted_master() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master_addr = listener.local_addr().unwrap();
    let (sessions_tx, mut sessions) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(MockMaster {
                sessions: sessions_tx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let flags = AgentFlags {
        master: master_addr.to_string(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 0,
        hostname: Some("agent.test".into()),
        work_dir: dir.path().to_path_buf(),
        resources: Some("cpus:2;mem:512;disk:100".into()),
        attributes: Some("rack:a".into()),
        executor_registration_timeout: Duration::from_secs(30),
        executor_shutdown_grace_period: Duration::from_millis(300),
        registration_backoff_factor: Duration::from_millis(10),
        launcher: Some("/bin/true".into()),
        ..crate::flags::test_defaults()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::run(flags, async move {
        let _ = stop_rx.await;
    }));

    // Registration.
    let (mut inbound, out) = tokio::time::timeout(WAIT, sessions.recv())
        .await
        .unwrap()
        .unwrap();
    let agent_message::Message::Register(reg) = recv(&mut inbound).await else {
        panic!("first message must be register");
    };
    assert!(reg.agent_info.id.is_none());
    assert_eq!(reg.agent_info.hostname, "agent.test");
    assert_eq!(reg.agent_info.attributes.len(), 1);
    let endpoint = reg.endpoint.clone();
    assert_eq!(
        reg.agent_info.port,
        Some(endpoint.rsplit(':').next().unwrap().parse().unwrap())
    );
    registered(1, &out);
    send(
        &out,
        1,
        master_message::Message::Ping(internal::Ping { seq: 7 }),
    );
    assert_eq!(
        recv(&mut inbound).await,
        agent_message::Message::Pong(internal::Pong { seq: 7 })
    );

    // Launch with a custom executor; the test plays the executor.
    let task = v1::TaskInfo {
        name: "t1".into(),
        task_id: ids::task_id("t1"),
        agent_id: ids::agent_id("S1"),
        resources: corral_api::resources::parse("cpus:1;mem:32").unwrap(),
        ..Default::default()
    };
    send(
        &out,
        1,
        master_message::Message::RunTask(internal::RunTask {
            framework_info: v1::FrameworkInfo {
                user: "u".into(),
                name: "fw".into(),
                id: Some(ids::framework_id("F")),
                checkpoint: Some(true),
                ..Default::default()
            },
            executor_info: Some(v1::ExecutorInfo {
                executor_id: ids::executor_id("E"),
                command: Some(v1::CommandInfo {
                    value: Some("env > env.txt; exec sleep 60".into()),
                    environment: Some(v1::Environment {
                        variables: vec![v1::environment::Variable {
                            name: "CUSTOM".into(),
                            value: Some("yes".into()),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            task: Some(task),
            task_group: None,
        }),
    );
    let latest = dir
        .path()
        .join("slaves/S1/frameworks/F/executors/E/runs/latest");
    let env = wait_for_file(&latest.join("env.txt"), "CUSTOM=yes").await;
    for line in [
        "MESOS_FRAMEWORK_ID=F",
        "MESOS_EXECUTOR_ID=E",
        "MESOS_SLAVE_ID=S1",
        "MESOS_CHECKPOINT=1",
        "MESOS_HTTP_COMMAND_EXECUTOR=0",
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=300ms",
        "MESOS_RECOVERY_TIMEOUT=15mins",
        "MESOS_SUBSCRIPTION_BACKOFF_MAX=1secs",
        &format!("MESOS_AGENT_ENDPOINT={endpoint}"),
    ] {
        assert!(env.lines().any(|l| l == line), "missing {line} in\n{env}");
    }
    assert!(
        env.contains("MESOS_SANDBOX=/") && env.contains("/runs/"),
        "{env}"
    );

    let client = reqwest::Client::new();
    let resp = post(&client, &endpoint, &exec_call(call::Type::Subscribe)).await;
    assert_eq!(resp.status(), 200);
    let mut events = resp.bytes_stream();
    let mut dec = recordio::Decoder::default();
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.r#type, Some(event::Type::Subscribed as i32));
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.launch.unwrap().task.task_id.value, "t1");

    // TASK_RUNNING reaches the master; the executor gets ACKNOWLEDGED.
    let running = update(&client, &endpoint, TaskState::TaskRunning).await;
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.acknowledged.unwrap().uuid, running);
    let agent_message::Message::StatusUpdate(su) = recv(&mut inbound).await else {
        panic!("expected a status update");
    };
    assert_eq!(su.status.uuid.as_ref(), Some(&running));
    assert_eq!(su.executor_id, Some(ids::executor_id("E")));
    assert_eq!(su.latest_state, Some(TaskState::TaskRunning as i32));
    assert_eq!(su.status.agent_id, Some(ids::agent_id("S1")));

    // The master goes away before acknowledging: the agent re-registers
    // with its id and its tasks, and resends the update.
    drop(out);
    drop(inbound);
    let (mut inbound, out) = tokio::time::timeout(WAIT, sessions.recv())
        .await
        .unwrap()
        .unwrap();
    let agent_message::Message::Register(reg) = recv(&mut inbound).await else {
        panic!("first message must be register");
    };
    assert_eq!(reg.agent_info.id, Some(ids::agent_id("S1")));
    assert_eq!(reg.frameworks.len(), 1);
    assert_eq!(reg.executors.len(), 1);
    assert_eq!(reg.tasks.len(), 1);
    assert_eq!(reg.tasks[0].state, TaskState::TaskRunning as i32);
    assert_eq!(reg.tasks[0].status_update_uuid.as_ref(), Some(&running));
    registered(2, &out);
    let agent_message::Message::StatusUpdate(su) = recv(&mut inbound).await else {
        panic!("expected the resent status update");
    };
    assert_eq!(su.status.uuid.as_ref(), Some(&running));
    send(
        &out,
        2,
        master_message::Message::Acknowledge(internal::AcknowledgeUpdate {
            framework_id: ids::framework_id("F"),
            task_id: ids::task_id("t1"),
            uuid: running,
        }),
    );

    // Messages from an older epoch are dropped.
    send(
        &out,
        1,
        master_message::Message::Ping(internal::Ping { seq: 1 }),
    );
    send(
        &out,
        2,
        master_message::Message::Ping(internal::Ping { seq: 2 }),
    );
    assert_eq!(
        recv(&mut inbound).await,
        agent_message::Message::Pong(internal::Pong { seq: 2 })
    );

    // Framework message -> MESSAGE event; executor message -> master.
    send(
        &out,
        2,
        master_message::Message::FrameworkToExecutor(internal::FrameworkToExecutor {
            framework_id: ids::framework_id("F"),
            executor_id: ids::executor_id("E"),
            data: b"hi".to_vec(),
        }),
    );
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.message.unwrap().data, b"hi");
    let mut m = exec_call(call::Type::Message);
    m.message = Some(call::Message {
        data: b"yo".to_vec(),
    });
    assert_eq!(post(&client, &endpoint, &m).await.status(), 202);
    let agent_message::Message::ExecutorToFramework(e2f) = recv(&mut inbound).await else {
        panic!("expected executor to framework");
    };
    assert_eq!(e2f.data, b"yo");

    // Kill -> KILL event; TASK_KILLED goes up and is acknowledged.
    send(
        &out,
        2,
        master_message::Message::KillTask(internal::KillTask {
            framework_id: ids::framework_id("F"),
            task_id: ids::task_id("t1"),
            kill_policy: None,
        }),
    );
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.kill.unwrap().task_id.value, "t1");
    let killed = update(&client, &endpoint, TaskState::TaskKilled).await;
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.acknowledged.unwrap().uuid, killed);
    let agent_message::Message::StatusUpdate(su) = recv(&mut inbound).await else {
        panic!("expected a status update");
    };
    assert_eq!(su.status.state, TaskState::TaskKilled as i32);
    send(
        &out,
        2,
        master_message::Message::Acknowledge(internal::AcknowledgeUpdate {
            framework_id: ids::framework_id("F"),
            task_id: ids::task_id("t1"),
            uuid: killed,
        }),
    );

    // Shutdown: SHUTDOWN event, then signals; the exit is reported.
    send(
        &out,
        2,
        master_message::Message::ShutdownExecutor(internal::ShutdownExecutor {
            framework_id: ids::framework_id("F"),
            executor_id: ids::executor_id("E"),
        }),
    );
    let ev = next_event(&mut events, &mut dec).await.unwrap();
    assert_eq!(ev.r#type, Some(event::Type::Shutdown as i32));
    let agent_message::Message::ExecutorExited(exited) = recv(&mut inbound).await else {
        panic!("expected executor exited");
    };
    assert_eq!(exited.executor_id.value, "E");
    assert!(
        next_event(&mut events, &mut dec).await.is_none(),
        "stream ends with the executor"
    );

    // The task is completed in the operator view.
    let state: serde_json::Value = client
        .get(format!("http://{endpoint}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fw = &state["completed_frameworks"][0];
    assert_eq!(
        fw["completed_executors"][0]["completed_tasks"][0]["state"],
        "TASK_KILLED"
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn run_task(out: &Outbound, task_id: &str, executor: Option<(&str, &str)>) {
    send(
        out,
        1,
        master_message::Message::RunTask(internal::RunTask {
            framework_info: v1::FrameworkInfo {
                user: "u".into(),
                name: "fw".into(),
                id: Some(ids::framework_id("F")),
                ..Default::default()
            },
            executor_info: executor.map(|(id, cmd)| v1::ExecutorInfo {
                executor_id: ids::executor_id(id),
                command: Some(v1::CommandInfo {
                    value: Some(cmd.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            task: Some(v1::TaskInfo {
                name: task_id.into(),
                task_id: ids::task_id(task_id),
                agent_id: ids::agent_id("S1"),
                command: Some(v1::CommandInfo {
                    value: Some("echo hi".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            task_group: None,
        }),
    );
}

async fn expect_failure(
    inbound: &mut Streaming<AgentMessage>,
    out: &Outbound,
    task: &str,
) -> TaskStatus {
    let agent_message::Message::StatusUpdate(su) = recv(inbound).await else {
        panic!("expected a status update for {task}");
    };
    assert_eq!(su.status.task_id.value, task);
    assert_eq!(
        su.status.source,
        Some(v1::task_status::Source::Agent as i32)
    );
    assert_eq!(su.status.uuid.as_ref().map(Vec::len), Some(16));
    send(
        out,
        1,
        master_message::Message::Acknowledge(internal::AcknowledgeUpdate {
            framework_id: ids::framework_id("F"),
            task_id: su.status.task_id.clone(),
            uuid: su.status.uuid.clone().unwrap_or_default(),
        }),
    );
    su.status
}

#[tokio::test]
async fn executor_failures_are_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master_addr = listener.local_addr().unwrap();
    let (sessions_tx, mut sessions) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(MockMaster {
                sessions: sessions_tx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let dir = tempfile::tempdir().unwrap();
    let flags = AgentFlags {
        master: master_addr.to_string(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 0,
        hostname: None,
        work_dir: dir.path().to_path_buf(),
        resources: None,
        attributes: None,
        executor_registration_timeout: Duration::from_millis(500),
        executor_shutdown_grace_period: Duration::from_millis(200),
        registration_backoff_factor: Duration::from_millis(10),
        launcher: Some("/bin/true".into()),
        ..crate::flags::test_defaults()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::run(flags, async move {
        let _ = stop_rx.await;
    }));
    let (mut inbound, out) = tokio::time::timeout(WAIT, sessions.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        recv(&mut inbound).await,
        agent_message::Message::Register(_)
    ));
    registered(1, &out);

    // A command task whose executor (`/bin/true executor`) exits at once.
    run_task(&out, "t1", None);
    let st = expect_failure(&mut inbound, &out, "t1").await;
    assert_eq!(st.state, TaskState::TaskFailed as i32);
    assert_eq!(
        st.reason,
        Some(v1::task_status::Reason::ExecutorTerminated as i32)
    );
    assert_eq!(st.executor_id, Some(ids::executor_id("t1")));
    let agent_message::Message::ExecutorExited(e) = recv(&mut inbound).await else {
        panic!("expected executor exited");
    };
    assert_eq!((e.executor_id.value.as_str(), e.status), ("t1", Some(0)));
    assert!(dir
        .path()
        .join("slaves/S1/frameworks/F/executors/t1/runs/latest/stdout")
        .exists());

    // An executor that never subscribes.
    run_task(&out, "t2", Some(("E2", "exec sleep 60")));
    let st = expect_failure(&mut inbound, &out, "t2").await;
    assert_eq!(st.state, TaskState::TaskFailed as i32);
    assert_eq!(
        st.reason,
        Some(v1::task_status::Reason::ExecutorRegistrationTimeout as i32)
    );
    let agent_message::Message::ExecutorExited(e) = recv(&mut inbound).await else {
        panic!("expected executor exited");
    };
    assert_eq!(e.executor_id.value, "E2");

    // A task killed while queued.
    run_task(&out, "t3", Some(("E3", "exec sleep 60")));
    send(
        &out,
        1,
        master_message::Message::KillTask(internal::KillTask {
            framework_id: ids::framework_id("F"),
            task_id: ids::task_id("t3"),
            kill_policy: None,
        }),
    );
    let st = expect_failure(&mut inbound, &out, "t3").await;
    assert_eq!(st.state, TaskState::TaskKilled as i32);
    assert_eq!(
        st.reason,
        Some(v1::task_status::Reason::TaskKilledDuringLaunch as i32)
    );
    let agent_message::Message::ExecutorExited(e) = recv(&mut inbound).await else {
        panic!("expected executor exited");
    };
    assert_eq!(e.executor_id.value, "E3");

    // Every executor is killed when the agent stops.
    run_task(
        &out,
        "t4",
        Some(("E4", "echo $$ > pid.tmp && mv pid.tmp pid; exec sleep 60")),
    );
    let pid_file = dir
        .path()
        .join("slaves/S1/frameworks/F/executors/E4/runs/latest/pid");
    let pid = wait_for_file(&pid_file, "\n").await;
    let proc_dir = Path::new("/proc").join(pid.trim());
    assert!(proc_dir.exists());
    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!proc_dir.exists(), "executor killed on agent shutdown");
}
