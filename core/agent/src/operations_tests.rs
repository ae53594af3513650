//! Operations against a scripted master over real gRPC: RESERVE / CREATE /
//! DESTROY applied and checkpointed, refusals, volumes mounted into a
//! running executor's sandbox, unacknowledged operations resent, the total
//! recovered after a restart, and an incompatible `--resources` refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use corral_api::ids;
use corral_api::internal::agent_service_server::AgentServiceServer;
use corral_api::internal::{self, agent_message, master_message, AgentMessage};
use corral_api::resources::{self, Resources};
use corral_api::v1::{self, offer::operation::Type as OpType, resource, Resource};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Streaming;

use crate::session_tests::{recv, registered, send, MockMaster, Outbound, WAIT};
use crate::{volumes, AgentError, AgentFlags};

type Sessions = mpsc::UnboundedReceiver<(Streaming<AgentMessage>, Outbound)>;

async fn master() -> (SocketAddr, Sessions) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sessions_tx, sessions) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(MockMaster {
                sessions: sessions_tx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, sessions)
}

struct RunningAgent {
    task: JoinHandle<Result<(), AgentError>>,
    stop: oneshot::Sender<()>,
}

impl RunningAgent {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent stops in time")
            .expect("agent task")
            .expect("agent ran without error");
    }
}

fn flags(master: SocketAddr, work_dir: &Path, resources: &str) -> AgentFlags {
    AgentFlags {
        master: master.to_string(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 0,
        hostname: Some("agent.test".into()),
        work_dir: work_dir.to_path_buf(),
        resources: Some(resources.into()),
        executor_registration_timeout: Duration::from_secs(30),
        executor_shutdown_grace_period: Duration::from_millis(300),
        registration_backoff_factor: Duration::from_millis(10),
        launcher: Some("/bin/true".into()),
        ..crate::flags::test_defaults()
    }
}

fn start(flags: AgentFlags) -> RunningAgent {
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::run(flags, async move {
        let _ = stop_rx.await;
    }));
    RunningAgent { task, stop }
}

async fn accept(
    sessions: &mut Sessions,
) -> (Streaming<AgentMessage>, Outbound, internal::RegisterAgent) {
    let (mut inbound, out) = tokio::time::timeout(WAIT, sessions.recv())
        .await
        .expect("a session in time")
        .expect("master up");
    let agent_message::Message::Register(reg) = recv(&mut inbound).await else {
        panic!("first message must be register");
    };
    (inbound, out, reg)
}

/// The next operation update (status updates and executor exits in between
/// are skipped).
async fn next_op_update(inbound: &mut Streaming<AgentMessage>) -> internal::OperationStatusUpdate {
    loop {
        if let agent_message::Message::OperationUpdate(u) = recv(inbound).await {
            return u;
        }
    }
}

fn dynamic(mut r: Resource, role: &str) -> Resource {
    r.reservations.push(resource::ReservationInfo {
        r#type: Some(resource::reservation_info::Type::Dynamic as i32),
        role: Some(role.into()),
        principal: Some("ops".into()),
        labels: None,
    });
    r
}

fn volume(role: &str, id: &str, mb: f64, path: &str, ro: bool) -> Resource {
    let mut r = dynamic(resources::scalar("disk", mb), role);
    r.disk = Some(Box::new(resource::DiskInfo {
        persistence: Some(resource::disk_info::Persistence {
            id: id.into(),
            principal: Some("ops".into()),
        }),
        volume: Some(v1::Volume {
            mode: if ro {
                v1::volume::Mode::Ro
            } else {
                v1::volume::Mode::Rw
            } as i32,
            container_path: path.into(),
            ..Default::default()
        }),
        source: None,
    }));
    r
}

fn operation(id: &str, ty: OpType, rs: Vec<Resource>) -> v1::offer::Operation {
    let mut op = v1::offer::Operation {
        r#type: Some(ty as i32),
        id: Some(v1::OperationId { value: id.into() }),
        ..Default::default()
    };
    match ty {
        OpType::Reserve => {
            op.reserve = Some(v1::offer::operation::Reserve {
                source: vec![],
                resources: rs,
            })
        }
        OpType::Create => op.create = Some(v1::offer::operation::Create { volumes: rs }),
        OpType::Destroy => op.destroy = Some(v1::offer::operation::Destroy { volumes: rs }),
        _ => unreachable!("not used by these tests"),
    }
    op
}

/// Sends an operation of framework F; returns its uuid.
fn apply(out: &Outbound, epoch: u64, op: v1::offer::Operation) -> Vec<u8> {
    let uuid = ids::new_uuid_bytes();
    send(
        out,
        epoch,
        master_message::Message::ApplyOperation(internal::ApplyOperation {
            framework_id: Some(ids::framework_id("F")),
            info: op,
            operation_uuid: uuid.clone(),
        }),
    );
    uuid
}

fn state(u: &internal::OperationStatusUpdate) -> v1::OperationState {
    v1::OperationState::try_from(u.status.state).unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_task_with(out: &Outbound, epoch: u64, task_id: &str, ex_id: &str, rs: Vec<Resource>) {
    send(
        out,
        epoch,
        master_message::Message::RunTask(internal::RunTask {
            framework_info: v1::FrameworkInfo {
                user: "u".into(),
                name: "fw".into(),
                id: Some(ids::framework_id("F")),
                checkpoint: Some(true),
                ..Default::default()
            },
            executor_info: Some(v1::ExecutorInfo {
                executor_id: ids::executor_id(ex_id),
                command: Some(v1::CommandInfo {
                    value: Some("exec sleep 60".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            task: Some(v1::TaskInfo {
                name: task_id.into(),
                task_id: ids::task_id(task_id),
                agent_id: ids::agent_id("S1"),
                resources: rs,
                ..Default::default()
            }),
            task_group: None,
        }),
    );
}

const RESOURCES: &str = "cpus:4;mem:1024;disk:1024;ports:[31000-31010]";

#[tokio::test]
async fn operations_are_applied_checkpointed_and_recovered() {
    let (addr, mut sessions) = master().await;
    let dir = tempfile::tempdir().unwrap();
    let work = std::fs::canonicalize(dir.path()).unwrap();
    let agent = start(flags(addr, &work, RESOURCES));
    let (mut inbound, out, reg) = accept(&mut sessions).await;
    let static_total = Resources::from_vec(&reg.total_resources);
    assert_eq!(static_total.scalar("disk"), 1024.0);
    assert!(reg.operations.is_empty());
    registered(1, &out);

    // RESERVE, then CREATE two volumes on the reservation.
    let disk = dynamic(resources::scalar("disk", 256.0), "web");
    let r1 = apply(
        &out,
        1,
        operation("r1", OpType::Reserve, vec![disk.clone()]),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(u.operation_uuid, r1);
    assert_eq!(state(&u), v1::OperationState::OperationFinished, "{u:?}");
    assert_eq!(u.status.operation_id.as_ref().unwrap().value, "r1");
    assert_eq!(u.status.agent_id, Some(ids::agent_id("S1")));
    assert_eq!(u.status.uuid.as_ref().map(|x| x.value.len()), Some(16));
    let r1_status = u.status.uuid.clone().unwrap().value;
    assert_eq!(u.status.converted_resources, vec![disk.clone()]);
    let total = Resources::from_vec(&u.total_resources);
    assert!(total.contains_one(&disk));
    assert_eq!(total.scalar("disk"), 1024.0);

    let data = volume("web", "v1", 64.0, "data", false);
    let logs = volume("web", "v2", 32.0, "logs", true);
    let c1 = apply(
        &out,
        1,
        operation("c1", OpType::Create, vec![data.clone(), logs.clone()]),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(
        (u.operation_uuid.as_slice(), state(&u)),
        (c1.as_slice(), v1::OperationState::OperationFinished)
    );
    let v1_dir = volumes::volume_dir(&work, "web", "v1");
    assert!(v1_dir.is_dir(), "the volume's directory exists");
    assert!(volumes::volume_dir(&work, "web", "v2").is_dir());

    // Refused, with a message and no change of state.
    let before = u.total_resources.clone();
    apply(
        &out,
        1,
        operation(
            "c2",
            OpType::Create,
            vec![volume("web", "v1", 8.0, "x", false)],
        ),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(state(&u), v1::OperationState::OperationFailed);
    assert!(
        u.status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("already in use"),
        "{u:?}"
    );
    assert_eq!(u.total_resources, before);
    apply(
        &out,
        1,
        operation(
            "r2",
            OpType::Reserve,
            vec![dynamic(resources::scalar("cpus", 5.0), "web")],
        ),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(state(&u), v1::OperationState::OperationFailed);
    assert!(
        u.status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("do not contain"),
        "{u:?}"
    );
    assert_eq!(u.total_resources, before);

    // A repeated ApplyOperation is answered again, not applied twice.
    send(
        &out,
        1,
        master_message::Message::ApplyOperation(internal::ApplyOperation {
            framework_id: Some(ids::framework_id("F")),
            info: operation("r1", OpType::Reserve, vec![disk.clone()]),
            operation_uuid: r1.clone(),
        }),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(
        (u.operation_uuid.as_slice(), state(&u)),
        (r1.as_slice(), v1::OperationState::OperationFinished)
    );
    assert_eq!(u.total_resources, before);

    // A task using both volumes, launched right behind a CREATE of a third
    // (the launch waits for the operation): each is mounted in the sandbox,
    // v2 read-only.
    let cache = volume("web", "v3", 16.0, "cache/v3", false);
    apply(
        &out,
        1,
        operation("c3", OpType::Create, vec![cache.clone()]),
    );
    run_task_with(
        &out,
        1,
        "t1",
        "E1",
        vec![data.clone(), logs.clone(), cache.clone()],
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(state(&u), v1::OperationState::OperationFinished, "{u:?}");
    let sandbox = work.join("slaves/S1/frameworks/F/executors/E1/runs/latest");
    wait_until("the volumes mounted", || {
        volumes::mounts_under(&work.join("slaves")).len() == 3
    })
    .await;
    let sandbox = std::fs::canonicalize(&sandbox).unwrap();
    std::fs::write(sandbox.join("data/hello"), b"kept").unwrap();
    assert_eq!(std::fs::read(v1_dir.join("hello")).unwrap(), b"kept");
    let err = std::fs::write(sandbox.join("logs/x"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(sandbox.join("cache/v3").is_dir());

    // DESTROY of a volume in use is refused.
    apply(
        &out,
        1,
        operation("d1", OpType::Destroy, vec![data.clone()]),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(state(&u), v1::OperationState::OperationFailed);
    let msg = u.status.message.clone().unwrap_or_default();
    assert!(msg.contains("in use by task 't1'"), "{msg}");
    assert!(v1_dir.join("hello").exists());

    // The executor goes: the mounts go, the data stays.
    send(
        &out,
        1,
        master_message::Message::ShutdownExecutor(internal::ShutdownExecutor {
            framework_id: ids::framework_id("F"),
            executor_id: ids::executor_id("E1"),
        }),
    );
    loop {
        if let agent_message::Message::ExecutorExited(e) = recv(&mut inbound).await {
            assert_eq!(e.executor_id.value, "E1");
            break;
        }
    }
    assert!(volumes::mounts_under(&work.join("slaves")).is_empty());
    assert_eq!(std::fs::read(v1_dir.join("hello")).unwrap(), b"kept");
    assert!(
        !sandbox.join("data/hello").exists(),
        "unmounted from the sandbox"
    );

    // Acknowledge r1: the others stay pending.
    send(
        &out,
        1,
        master_message::Message::AcknowledgeOperation(internal::AcknowledgeOperationStatus {
            framework_id: Some(ids::framework_id("F")),
            operation_uuid: r1.clone(),
            status_uuid: r1_status,
        }),
    );

    // The master goes away: the agent re-registers with its total and the
    // unacknowledged operations, and resends their updates.
    drop(out);
    drop(inbound);
    let (mut inbound, out, reg) = accept(&mut sessions).await;
    let total = Resources::from_vec(&reg.total_resources);
    assert!(total.contains_one(&data) && total.contains_one(&logs) && total.contains_one(&cache));
    let ids_of = |ops: &[v1::Operation]| {
        let mut v: Vec<String> = ops
            .iter()
            .map(|o| o.info.id.as_ref().unwrap().value.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids_of(&reg.operations), vec!["c1", "c2", "c3", "d1", "r2"]);
    registered(2, &out);
    let mut resent = Vec::new();
    for _ in 0..5 {
        resent.push(next_op_update(&mut inbound).await);
    }
    assert!(resent
        .iter()
        .all(|u| u.total_resources == reg.total_resources));

    // DESTROY now that nothing uses it: the data goes.
    apply(
        &out,
        2,
        operation("d2", OpType::Destroy, vec![data.clone()]),
    );
    let u = next_op_update(&mut inbound).await;
    assert_eq!(state(&u), v1::OperationState::OperationFinished, "{u:?}");
    assert!(!v1_dir.exists(), "DESTROY removes the data");
    assert!(
        volumes::volume_dir(&work, "web", "v2").is_dir(),
        "other volumes stay"
    );
    let after_destroy = Resources::from_vec(&u.total_resources);
    assert!(!after_destroy.contains_one(&data));

    // A volume mounted into a running executor is unmounted when the agent
    // stops (and kills its executors).
    run_task_with(&out, 2, "t2", "E2", vec![logs.clone()]);
    wait_until("the volume mounted", || {
        volumes::mounts_under(&work.join("slaves")).len() == 1
    })
    .await;

    // A restart recovers the total and the pending operations.
    agent.stop().await;
    assert!(volumes::mounts_under(&work.join("slaves")).is_empty());
    drop((inbound, out));
    let agent = start(flags(addr, &work, RESOURCES));
    let (_inbound, _out, reg) = accept(&mut sessions).await;
    assert_eq!(reg.agent_info.id, Some(ids::agent_id("S1")));
    assert_eq!(Resources::from_vec(&reg.total_resources), after_destroy);
    assert_eq!(
        ids_of(&reg.operations),
        vec!["c1", "c2", "c3", "d1", "d2", "r2"]
    );
    agent.stop().await;

    // --resources without the reserved disk: refused at start, naming the
    // flag and what to do.
    let err = crate::run(flags(addr, &work, "cpus:4;mem:1024;disk:100"), async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resources"), "{err}");
    assert!(err.contains("resources.info"), "{err}");
    assert!(err.contains("disk(web)"), "{err}");
}
