//! HTTP API tests against the router, without a master.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use corral_api::codec::{self, Encoding};
use corral_api::v1::executor::{call, event, Call, Event};
use corral_api::v1::{self, TaskState, TaskStatus};
use corral_api::{ids, recordio};
use futures::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::agent::{lock, Agent, Config, Executor, ExecutorKind, ExecutorPhase, Framework, Queued};

fn config(work_dir: &std::path::Path) -> Config {
    Config {
        work_dir: std::fs::canonicalize(work_dir).unwrap(),
        address: "127.0.0.1:5051".parse().unwrap(),
        hostname: "agent.test".into(),
        resources: corral_api::resources::parse("cpus:2;mem:1024").unwrap(),
        attributes: vec![],
        launcher: "/bin/true".into(),
        container_launcher: None,
        executor_registration_timeout: Duration::from_secs(60),
        executor_shutdown_grace_period: Duration::from_secs(5),
        registration_backoff_factor: Duration::from_secs(1),
        master: "127.0.0.1:5050".into(),
        flags: vec![("work_dir".into(), work_dir.display().to_string())],
        start_time: ids::now_secs(),
        isolation: crate::isolation::Isolation::default(),
        cgroups_root: "corral-test".into(),
        docker_socket: None,
        docker_kill_orphans: true,
        fetcher: Arc::new(crate::fetcher::Fetcher::new(work_dir.join("fetch"), 1 << 20).unwrap()),
        checkpoint: crate::checkpoint::Checkpoint::new(work_dir),
        recovery_timeout: Duration::from_secs(60),
        executor_reregistration_timeout: Duration::from_secs(2),
        disk_watch_interval: Duration::from_secs(15),
        switch_user: true,
        hdfs_volume_root: None,
        hdfs_lease_timeout: Duration::from_secs(120),
        hdfs_writeback_interval: Duration::from_secs(300),
        gc_delay: Duration::from_secs(7 * 24 * 3600),
        container_logger: crate::containerizer::ContainerLogger::Sandbox,
        task_log_archive: None,
    }
}

/// An agent with framework F, executor E (a queued task t1) and its sandbox.
fn fixture() -> (tempfile::TempDir, Arc<Agent>, Router) {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(config(dir.path()));
    let sandbox =
        crate::paths::create_sandbox(&agent.config.work_dir, "S1", "F", "E", "c1").unwrap();
    std::fs::write(sandbox.join("stdout"), "hello world\n").unwrap();
    {
        let mut st = lock(&agent.state);
        st.agent_id = Some(ids::agent_id("S1"));
        let task = v1::TaskInfo {
            name: "t1".into(),
            task_id: ids::task_id("t1"),
            agent_id: ids::agent_id("S1"),
            ..Default::default()
        };
        let mut ex = Executor {
            info: v1::ExecutorInfo {
                executor_id: ids::executor_id("E"),
                framework_id: Some(ids::framework_id("F")),
                ..Default::default()
            },
            kind: ExecutorKind::Custom,
            phase: ExecutorPhase::Registering,
            container_id: "c1".into(),
            directory: sandbox,
            queued: vec![Queued::Task(task.clone())],
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            events: None,
            process: None,
            exit_status: None,
            checkpoint: false,
            limits: Default::default(),
            cgroup: None,
            docker_container: None,
            docker_cgroup: None,
            termination: None,
            recovered: false,
            disk_used: None,
            volume_mounts: Vec::new(),
            loggers: Vec::new(),
        };
        ex.tasks.insert(
            "t1".into(),
            crate::agent::make_task(
                &task,
                "F",
                Some(ids::executor_id("E")),
                &ids::agent_id("S1"),
            ),
        );
        let mut executors = BTreeMap::new();
        executors.insert("E".to_string(), ex);
        st.frameworks.insert(
            "F".into(),
            Framework {
                info: v1::FrameworkInfo {
                    user: "u".into(),
                    name: "fw".into(),
                    id: Some(ids::framework_id("F")),
                    ..Default::default()
                },
                terminating: false,
                executors,
                completed_executors: VecDeque::new(),
            },
        );
    }
    let router = super::router(agent.clone());
    (dir, agent, router)
}

fn call(ty: call::Type) -> Call {
    Call {
        executor_id: ids::executor_id("E"),
        framework_id: ids::framework_id("F"),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

fn post(uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder().method(Method::POST).uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(Body::from(body)).unwrap()
}

fn json_call(c: &Call) -> Request<Body> {
    post(
        "/api/v1/executor",
        Some("application/json"),
        codec::to_json(c),
    )
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
    send(
        router,
        Request::builder().uri(uri).body(Body::empty()).unwrap(),
    )
    .await
}

fn update(task: &str, state: TaskState) -> Call {
    let mut c = call(call::Type::Update);
    c.update = Some(call::Update {
        status: TaskStatus {
            task_id: ids::task_id(task),
            state: state as i32,
            uuid: Some(ids::new_uuid_bytes()),
            ..Default::default()
        },
    });
    c
}

#[tokio::test]
async fn executor_api_rejects_bad_requests() {
    let (_dir, _agent, router) = fixture();
    let get_req = Request::builder()
        .uri("/api/v1/executor")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&router, get_req).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let body = codec::to_json(&call(call::Type::Subscribe));
    assert_eq!(
        send(&router, post("/api/v1/executor", None, body.clone()))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(
            &router,
            post("/api/v1/executor", Some("text/plain"), body.clone())
        )
        .await
        .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        send(
            &router,
            post(
                "/api/v1/executor",
                Some("application/json"),
                b"{not json".to_vec()
            )
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(
            &router,
            post(
                "/api/v1/executor",
                Some("application/x-protobuf"),
                vec![0xff, 0xff, 0xff]
            )
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let huge = vec![b' '; super::MAX_BODY_BYTES + 1];
    assert_eq!(
        send(
            &router,
            post("/api/v1/executor", Some("application/json"), huge)
        )
        .await
        .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // No type.
    let mut untyped = call(call::Type::Subscribe);
    untyped.r#type = None;
    assert_eq!(
        send(&router, json_call(&untyped)).await.0,
        StatusCode::BAD_REQUEST
    );

    // Accept that fits nothing.
    let mut req = json_call(&call(call::Type::Subscribe));
    req.headers_mut()
        .insert(header::ACCEPT, "text/html".parse().unwrap());
    assert_eq!(send(&router, req).await.0, StatusCode::NOT_ACCEPTABLE);

    // Unknown framework / executor.
    let mut c = call(call::Type::Subscribe);
    c.framework_id = ids::framework_id("nope");
    let (status, msg) = send(&router, json_call(&c)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("nope"), "{msg}");
    let mut c = call(call::Type::Message);
    c.executor_id = ids::executor_id("other");
    c.message = Some(call::Message {
        data: b"x".to_vec(),
    });
    assert_eq!(
        send(&router, json_call(&c)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn executor_update_validation() {
    let (_dir, agent, router) = fixture();
    // Unknown task.
    let (status, msg) = send(&router, json_call(&update("zz", TaskState::TaskRunning))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("zz"), "{msg}");
    // uuid missing / wrong length.
    let mut c = update("t1", TaskState::TaskRunning);
    if let Some(u) = c.update.as_mut() {
        u.status.uuid = None;
    }
    assert_eq!(
        send(&router, json_call(&c)).await.0,
        StatusCode::BAD_REQUEST
    );
    if let Some(u) = c.update.as_mut() {
        u.status.uuid = Some(vec![1, 2, 3]);
    }
    assert_eq!(
        send(&router, json_call(&c)).await.0,
        StatusCode::BAD_REQUEST
    );
    // Wrong source.
    let mut c = update("t1", TaskState::TaskRunning);
    if let Some(u) = c.update.as_mut() {
        u.status.source = Some(v1::task_status::Source::Master as i32);
    }
    assert_eq!(
        send(&router, json_call(&c)).await.0,
        StatusCode::BAD_REQUEST
    );
    // No update at all.
    assert_eq!(
        send(&router, json_call(&call(call::Type::Update))).await.0,
        StatusCode::BAD_REQUEST
    );
    // Valid: recorded and queued for the master.
    let (status, body) = send(&router, json_call(&update("t1", TaskState::TaskRunning))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.is_empty());
    let st = lock(&agent.state);
    let task = &st.frameworks["F"].executors["E"].tasks["t1"];
    assert_eq!(task.state, TaskState::TaskRunning as i32);
    assert_eq!(lock(&agent.sum).pending_count("F", "t1"), 1);
    assert_eq!(st.counters.valid_status_updates, 1);
    assert!(st.counters.invalid_status_updates >= 5);
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    decoder: &mut recordio::Decoder,
    enc: Encoding,
) -> Event {
    loop {
        if let Some(record) = decoder.next_record().unwrap() {
            return enc.decode(&record).unwrap();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        decoder.feed(&chunk);
    }
}

#[tokio::test]
async fn subscribe_streams_events_and_acknowledges_updates() {
    for enc in [Encoding::Json, Encoding::Protobuf] {
        let (_dir, agent, router) = fixture();
        let req = post(
            "/api/v1/executor",
            Some(enc.content_type()),
            enc.encode(&call(call::Type::Subscribe)),
        );
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], enc.content_type());
        let mut stream = resp.into_body().into_data_stream();
        let mut dec = recordio::Decoder::default();

        let ev = next_event(&mut stream, &mut dec, enc).await;
        assert_eq!(ev.r#type, Some(event::Type::Subscribed as i32));
        let sub = ev.subscribed.unwrap();
        assert_eq!(sub.framework_info.id, Some(ids::framework_id("F")));
        assert_eq!(sub.agent_info.id, Some(ids::agent_id("S1")));
        assert_eq!(sub.container_id.unwrap().value, "c1");

        let ev = next_event(&mut stream, &mut dec, enc).await;
        assert_eq!(ev.r#type, Some(event::Type::Launch as i32));
        assert_eq!(ev.launch.unwrap().task.task_id.value, "t1");

        let up = update("t1", TaskState::TaskRunning);
        let uuid = up.update.as_ref().unwrap().status.uuid.clone().unwrap();
        assert_eq!(send(&router, json_call(&up)).await.0, StatusCode::ACCEPTED);
        let ev = next_event(&mut stream, &mut dec, enc).await;
        assert_eq!(ev.r#type, Some(event::Type::Acknowledged as i32));
        let ack = ev.acknowledged.unwrap();
        assert_eq!(ack.uuid, uuid);
        assert_eq!(ack.task_id.value, "t1");
        assert_eq!(
            lock(&agent.state).frameworks["F"].executors["E"].phase,
            ExecutorPhase::Running
        );
    }
}

#[tokio::test]
async fn files_are_confined_to_the_work_dir() {
    let (_dir, agent, router) = fixture();
    let sandbox = agent
        .config
        .work_dir
        .join("slaves/S1/frameworks/F/executors/E/runs/c1");
    std::os::unix::fs::symlink("/etc", sandbox.join("escape")).unwrap();

    let (status, body) = get(
        &router,
        "/files/browse?path=/frameworks/F/executors/E/runs/latest",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/frameworks/F/executors/E/runs/latest/stdout"),
        "{paths:?}"
    );
    assert!(list[0]["mode"].as_str().unwrap().len() == 10);

    let real = format!("{}/stdout", sandbox.display());
    let (status, body) = get(&router, &format!("/files/read?path={real}&offset=-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"data": "", "offset": 12})
    );
    let (_, body) = get(
        &router,
        "/files/read?path=/frameworks/F/executors/E/runs/c1/stdout&offset=6&length=3",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"data": "wor", "offset": 6})
    );
    let (_, body) = get(
        &router,
        "/files/read?path=/frameworks/F/executors/E/runs/c1/stdout&offset=100",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"],
        ""
    );
    let (status, body) = get(
        &router,
        "/files/download?path=/frameworks/F/executors/E/runs/latest/stdout",
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello world\n"));

    for (uri, want) in [
        ("/files/read?path=/etc/passwd&offset=0", StatusCode::NOT_FOUND),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1/../../../../../../../../etc/passwd&offset=0", StatusCode::BAD_REQUEST),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1/escape/passwd&offset=0", StatusCode::NOT_FOUND),
        ("/files/browse?path=/frameworks/F/executors/E/runs/c1/escape", StatusCode::NOT_FOUND),
        ("/files/read?path=/frameworks/../executors/E/runs/c1/stdout", StatusCode::BAD_REQUEST),
        ("/files/read?path=relative/path", StatusCode::BAD_REQUEST),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1/missing&offset=0", StatusCode::NOT_FOUND),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1&offset=0", StatusCode::BAD_REQUEST),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1/stdout&offset=-5", StatusCode::BAD_REQUEST),
        ("/files/read?path=/frameworks/F/executors/E/runs/c1/stdout&offset=abc", StatusCode::BAD_REQUEST),
        ("/files/read", StatusCode::BAD_REQUEST),
        ("/files/download?path=/frameworks/F/executors/E/runs/c1", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(get(&router, uri).await.0, want, "{uri}");
    }
    let outside = format!(
        "/files/read?path={}/../outside-corral-test&offset=0",
        agent.config.work_dir.display()
    );
    assert_ne!(get(&router, &outside).await.0, StatusCode::OK);
}

#[tokio::test]
async fn operator_and_legacy_endpoints() {
    let (_dir, _agent, router) = fixture();
    let op = |ty: corral_api::v1::agent::call::Type| {
        let c = corral_api::v1::agent::Call {
            r#type: Some(ty as i32),
            ..Default::default()
        };
        post("/api/v1", Some("application/json"), codec::to_json(&c))
    };
    use corral_api::v1::agent::call::Type as T;
    let (status, body) = send(&router, op(T::GetVersion)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "GET_VERSION");
    assert_eq!(
        v["get_version"]["version_info"]["version"],
        corral_api::MESOS_VERSION
    );

    let (_, body) = send(&router, op(T::GetTasks)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["get_tasks"]["queued_tasks"][0]["task_id"]["value"], "t1");

    for t in [
        T::GetHealth,
        T::GetFlags,
        T::GetMetrics,
        T::GetState,
        T::GetContainers,
        T::GetFrameworks,
        T::GetExecutors,
    ] {
        assert_eq!(send(&router, op(t)).await.0, StatusCode::OK, "{t:?}");
    }
    let (status, body) = send(&router, op(T::LaunchContainer)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("LAUNCH_CONTAINER is not supported"), "{body}");

    for path in ["/state", "/state.json", "/slave(1)/state"] {
        let (status, body) = get(&router, path).await;
        assert_eq!(status, StatusCode::OK);
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(s["id"], "S1");
        assert_eq!(s["pid"], "slave(1)@127.0.0.1:5051");
        assert_eq!(s["resources"]["cpus"], 2.0);
        let ex = &s["frameworks"][0]["executors"][0];
        assert_eq!(ex["id"], "E");
        assert_eq!(ex["queued_tasks"][0]["id"], "t1");
    }
    let (_, body) = get(&router, "/metrics/snapshot").await;
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["slave/registered"], 0.0);
    assert_eq!(m["slave/tasks_staging"], 1.0);
    assert_eq!(m["slave/executors_registering"], 1.0);
    assert_eq!(get(&router, "/health").await.0, StatusCode::OK);
    let (_, body) = get(&router, "/version").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["version"],
        "1.11.0"
    );
}

#[tokio::test]
async fn operator_responses_are_gzipped_when_asked() {
    let (_dir, _agent, router) = fixture();
    let c = corral_api::v1::agent::Call {
        r#type: Some(corral_api::v1::agent::call::Type::GetState as i32),
        ..Default::default()
    };
    let mut req = post("/api/v1", Some("application/json"), codec::to_json(&c));
    req.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    // Executor streams are not compressed.
    let mut req = json_call(&call(call::Type::Subscribe));
    req.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn reservations_volumes_and_write_back_are_reported() {
    use corral_api::v1::resource;
    let (dir, agent, router) = fixture();
    // Static cpus(web), a dynamic disk(web) and an HDFS-backed volume on it.
    let mut total = corral_api::resources::Resources::from_vec(
        &corral_api::resources::parse("cpus:1;cpus(web):1;mem:1024").unwrap(),
    );
    let dynamic = resource::ReservationInfo {
        r#type: Some(resource::reservation_info::Type::Dynamic as i32),
        role: Some("web".into()),
        principal: Some("ops".into()),
        labels: Some(corral_api::v1::Labels {
            labels: vec![corral_api::v1::Label {
                key: crate::volumes::BACKEND_LABEL.into(),
                value: Some(crate::volumes::BACKEND_HDFS.into()),
            }],
        }),
    };
    let mut vol = corral_api::resources::scalar("disk", 64.0);
    vol.reservations.push(dynamic);
    vol.disk = Some(Box::new(resource::DiskInfo {
        persistence: Some(resource::disk_info::Persistence {
            id: "v1".into(),
            principal: None,
        }),
        volume: Some(corral_api::v1::Volume {
            mode: corral_api::v1::volume::Mode::Rw as i32,
            container_path: "data".into(),
            ..Default::default()
        }),
        source: None,
    }));
    total.add(&vol);
    lock(&agent.state).total = total;

    let (_, body) = get(&router, "/state").await;
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["reserved_resources"]["web"]["cpus"], 1.0);
    assert_eq!(s["reserved_resources"]["web"]["disk"], 64.0);
    let full = s["reserved_resources_full"]["web"].as_array().unwrap();
    let types: Vec<&str> = full
        .iter()
        .map(|r| r["reservations"][0]["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"STATIC") && types.contains(&"DYNAMIC"),
        "{full:?}"
    );
    assert!(full.iter().any(|r| r["disk"]["persistence"]["id"] == "v1"));
    assert_eq!(s["unreserved_resources"]["cpus"], 1.0);

    let c = corral_api::v1::agent::Call {
        r#type: Some(corral_api::v1::agent::call::Type::GetAgent as i32),
        ..Default::default()
    };
    let (_, body) = send(
        &router,
        post("/api/v1", Some("application/json"), codec::to_json(&c)),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rs = v["get_agent"]["agent_info"]["resources"]
        .as_array()
        .unwrap();
    assert!(
        rs.iter().any(|r| r["disk"]["persistence"]["id"] == "v1"),
        "{rs:?}"
    );

    // Write-back: without a store 409, then with one (a local store behind
    // the same trait) 404 for an unknown volume and 200 for the open one.
    let wb = |body: &str| {
        post(
            "/volumes/writeback",
            Some("application/json"),
            body.as_bytes().to_vec(),
        )
    };
    let (status, body) = send(&router, wb(r#"{"role":"web","persistence_id":"v1"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("--hdfs_volume_root"), "{body}");
    let store = dir.path().join("store");
    agent
        .hdfs
        .set_backend(Arc::new(corral_storage::LocalBackend::new(&store).unwrap()));
    let v = crate::volumes::volumes_of(std::slice::from_ref(&vol)).remove(0);
    let local = crate::volumes::volume_dir(&agent.config.work_dir, "web", "v1");
    std::fs::create_dir_all(&local).unwrap();
    agent.hdfs.open(&v, &local, "S1").await.unwrap();
    std::fs::write(local.join("x"), b"abc").unwrap();
    assert_eq!(send(&router, wb("{")).await.0, StatusCode::BAD_REQUEST);
    let (status, _) = send(&router, wb(r#"{"role":"web","persistence_id":"nope"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(&router, wb(r#"{"role":"web","persistence_id":"v1"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stats"]["bytes"], 3);
    let (_, body) = get(&router, "/volumes").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["volumes"][0]["backend"], "hdfs");
    assert_eq!(v["hdfs"][0]["lease"]["holder"], "S1");
    assert_eq!(v["hdfs"][0]["writebacks"], 1);
}
