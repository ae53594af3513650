//! The conformance suite against every implementation, and the local
//! store's own tests (restart, corruption, interrupted writes, locking).

use std::path::Path;
use std::sync::Arc;

use super::conformance::{agent, at, quota, registry_conformance};
use super::local::FILE_NAME;
use super::{
    LocalRegistry, MemoryRegistry, Operation, Registry, RegistryError, RegistryState,
    ZooKeeperRegistry,
};

registry_conformance!(memory, ((), MemoryRegistry::new()));

registry_conformance!(local, {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = LocalRegistry::open(dir.path().join("registry")).expect("open");
    (dir, registry)
});

/// One ZooKeeper server for this test process (stopped when it exits).
pub(crate) fn zookeeper() -> &'static str {
    static SERVER: std::sync::OnceLock<(tempfile::TempDir, crate::testing::ZooKeeperServer)> =
        std::sync::OnceLock::new();
    &SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let server =
                crate::testing::ZooKeeperServer::start(dir.path(), 1).expect("start zookeeper");
            (dir, server)
        })
        .1
        .connect
}

/// A ZooKeeper store on a fresh path of the test server.
pub(crate) async fn zk_store() -> (crate::zk::Session, ZooKeeperRegistry) {
    let session = crate::zk::Session::connect(
        zookeeper(),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("zookeeper session");
    let root = format!("/test/{}/registry", uuid::Uuid::new_v4().simple());
    let registry = ZooKeeperRegistry::open(session.zk.clone(), &root)
        .await
        .expect("open");
    (session, registry)
}

registry_conformance!(zookeeper_store, super::zk_store().await);

registry_conformance!(zookeeper_small_chunks, {
    let (session, registry) = super::zk_store().await;
    (session, registry.with_chunk_bytes(4096))
});

registry_conformance!(shared_dyn, {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    ((), registry)
});

fn sample_ops() -> Vec<Operation> {
    vec![
        Operation::AdmitAgent(agent("a1")),
        Operation::AdmitAgent(agent("a2")),
        Operation::MarkUnreachable {
            agent_id: "a2".into(),
            since: at(77),
        },
        Operation::UpdateWeights(vec![("eng".into(), 2.0)]),
        Operation::UpdateQuota(vec![quota("eng", &[("cpus", 4.0)], &[("cpus", 8.0)])]),
    ]
}

fn open(dir: &Path) -> LocalRegistry {
    LocalRegistry::open(dir).expect("open")
}

async fn apply_ok<R: Registry>(registry: &R, ops: Vec<Operation>) -> RegistryState {
    registry.apply(ops).await.expect("apply")
}

fn stored_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(FILE_NAME)).expect("read")).expect("json")
}

#[tokio::test]
async fn local_second_store_recovers_what_the_first_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let first = open(dir.path());
        first.recover().await.expect("recover");
        apply_ok(&first, sample_ops()).await
    };
    let second = open(dir.path());
    assert_eq!(second.recover().await.expect("recover"), written);
    // The restarted store keeps writing on top of what it recovered, without
    // an explicit recover first.
    drop(second);
    let third = open(dir.path());
    let state = apply_ok(
        &third,
        vec![Operation::MarkGone {
            agent_id: "a1".into(),
            since: at(88),
        }],
    )
    .await;
    assert_eq!(state.weights, written.weights);
    assert_eq!(state.gone["a1"], at(88));
    drop(third);
    assert_eq!(open(dir.path()).recover().await.expect("recover"), state);
}

#[tokio::test]
async fn local_store_is_locked_while_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path());
    match LocalRegistry::open(dir.path()) {
        Err(RegistryError::Locked { path }) => assert_eq!(path, dir.path().join("registry.lock")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(dir.path());
}

#[tokio::test]
async fn local_file_carries_format_and_version_in_mesos_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    apply_ok(&registry, sample_ops()).await;
    apply_ok(&registry, vec![Operation::AdmitAgent(agent("a3"))]).await;
    // A batch that changes nothing writes nothing.
    apply_ok(&registry, vec![Operation::AdmitAgent(agent("a3"))]).await;
    let json = stored_json(dir.path());
    assert_eq!(json["format"], 1);
    assert_eq!(json["version"], 2);
    let state = &json["state"];
    assert_eq!(state["agents"][0]["id"]["value"], "a1");
    assert_eq!(state["agents"][0]["hostname"], "a1.example.com");
    assert_eq!(state["agents"][0]["resources"][0]["type"], "SCALAR");
    assert_eq!(state["unreachable"][0]["info"]["id"]["value"], "a2");
    assert_eq!(state["unreachable"][0]["since"]["nanoseconds"], 77);
    assert_eq!(state["weights"]["eng"], 2.0);
    assert_eq!(state["quotas"][0]["role"], "eng");
    assert_eq!(state["quotas"][0]["guarantees"]["cpus"]["value"], 4.0);
    assert_eq!(state["quotas"][0]["limits"]["cpus"]["value"], 8.0);
}

#[tokio::test]
async fn local_corrupt_file_is_reported_with_its_path() {
    let cases: &[(&str, &str)] = &[
        ("empty", ""),
        (
            "half written",
            r#"{"format":1,"version":3,"state":{"agents":[{"hostn"#,
        ),
        ("not json", "\u{0}\u{1}garbage"),
        ("no format", r#"{"version":1,"state":{}}"#),
        ("no state", r#"{"format":1,"version":1}"#),
        (
            "wrong shape",
            r#"{"format":1,"version":1,"state":{"agents":{"a":1}}}"#,
        ),
        (
            "bad agent",
            r#"{"format":1,"version":1,"state":{"agents":[{"hostname":7}]}}"#,
        ),
        (
            "agent without id",
            r#"{"format":1,"version":1,"state":{"agents":[{"hostname":"h"}]}}"#,
        ),
        (
            "admitted and gone",
            r#"{"format":1,"version":1,"state":{"agents":[{"hostname":"h","id":{"value":"a"}}],
               "gone":[{"agent_id":"a","since":{"nanoseconds":1}}]}}"#,
        ),
        (
            "negative weight",
            r#"{"format":1,"version":1,"state":{"weights":{"eng":-2.0}}}"#,
        ),
        (
            "bad quota",
            r#"{"format":1,"version":1,"state":{"quotas":[{"role":"eng",
               "guarantees":{"cpus":{"value":5}},"limits":{"cpus":{"value":1}}}]}}"#,
        ),
    ];
    for (what, contents) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, contents).expect("write");
        let registry = open(dir.path());
        for attempt in ["recover", "apply"] {
            let result = if attempt == "recover" {
                registry.recover().await
            } else {
                registry
                    .apply(vec![Operation::AdmitAgent(agent("x"))])
                    .await
            };
            match result {
                Err(RegistryError::Corrupt { ref path, .. }) => {
                    assert_eq!(path, &file, "{what}: {attempt}");
                    let message = result.expect_err("error").to_string();
                    assert!(
                        message.contains(&file.display().to_string()),
                        "{what}: {message}"
                    );
                }
                other => panic!("{what}: {attempt}: expected Corrupt, got {other:?}"),
            }
        }
        // The corrupt file was not overwritten.
        assert_eq!(std::fs::read_to_string(&file).expect("read"), *contents);
    }
}

#[tokio::test]
async fn local_newer_format_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, r#"{"format":2,"version":9,"state":{"new":"shape"}}"#).expect("write");
    match open(dir.path()).recover().await {
        Err(RegistryError::UnsupportedFormat {
            path,
            format: 2,
            supported: 1,
        }) => assert_eq!(path, file),
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

#[tokio::test]
async fn local_leftover_temp_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let registry = open(dir.path());
        apply_ok(&registry, sample_ops()).await
    };
    // A crash mid-write leaves a half-written temp file behind.
    let temp = dir.path().join("registry.json.tmp");
    std::fs::write(&temp, r#"{"format":1,"version":2,"state":{"agents":[{"hos"#).expect("write");
    let registry = open(dir.path());
    assert_eq!(registry.recover().await.expect("recover"), written);
    assert!(!temp.exists(), "the leftover temp file is removed");
    let state = apply_ok(&registry, vec![Operation::AdmitAgent(agent("a9"))]).await;
    assert!(state.agents.contains_key("a9"));
    assert_eq!(stored_json(dir.path())["version"], 2);
}

#[tokio::test]
async fn local_temp_file_without_registry_file_recovers_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("registry.json.tmp"), "{\"format\":1").expect("write");
    let registry = open(dir.path());
    assert_eq!(
        registry.recover().await.expect("recover"),
        RegistryState::default()
    );
}

#[tokio::test]
async fn local_failed_write_keeps_the_previous_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    let good = apply_ok(&registry, sample_ops()).await;
    // Make the next write fail: the temp path is a directory.
    let temp = dir.path().join("registry.json.tmp");
    std::fs::create_dir(&temp).expect("mkdir");
    let error = registry
        .apply(vec![Operation::AdmitAgent(agent("a9"))])
        .await
        .expect_err("the write fails");
    assert!(
        matches!(error, RegistryError::Io { ref path, .. } if path == &temp),
        "{error}"
    );
    assert!(!error.is_rejection());
    assert_eq!(registry.recover().await.expect("recover"), good);
    std::fs::remove_dir(&temp).expect("rmdir");
    let state = apply_ok(&registry, vec![Operation::AdmitAgent(agent("a9"))]).await;
    assert!(state.agents.contains_key("a9"));
    assert_eq!(stored_json(dir.path())["version"], 2);
    drop(registry);
    assert_eq!(open(dir.path()).recover().await.expect("recover"), state);
}

#[tokio::test]
async fn registry_futures_are_send_for_spawned_tasks() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let task = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.apply(sample_ops()).await })
    };
    let state = task.await.expect("join").expect("apply");
    assert_eq!(registry.recover().await.expect("recover"), state);
}

#[test]
fn pure_apply_refuses_without_changing_anything() {
    let mut state = RegistryState::default();
    state.apply_all(&sample_ops()).expect("apply");
    let before = state.clone();
    let bad = [
        Operation::UpdateWeights(vec![("eng".into(), f64::NAN)]),
        Operation::UpdateQuota(vec![quota("eng", &[("cpus", 9.0)], &[("cpus", 1.0)])]),
        Operation::MarkGone {
            agent_id: "nobody".into(),
            since: at(1),
        },
    ];
    for op in &bad {
        let error = state.apply(op).expect_err("refused");
        assert!(error.is_rejection(), "{error}");
        assert_eq!(state, before);
    }
    assert!(state.validate().is_ok());
}

#[tokio::test]
async fn zookeeper_second_master_recovers_and_a_stale_writer_is_fenced() {
    let (session, first) = zk_store().await;
    first.recover().await.expect("recover");
    let written = apply_ok(&first, sample_ops()).await;
    // Another master's store on the same path, with the default chunk size.
    let root = first_root(&first);
    let second = ZooKeeperRegistry::open(session.zk.clone(), &root)
        .await
        .expect("open");
    assert_eq!(second.recover().await.expect("recover"), written);
    apply_ok(&second, vec![Operation::AdmitAgent(agent("a9"))]).await;
    // The first store's view is stale now: its write is refused and nothing
    // changes.
    match first.apply(vec![Operation::AdmitAgent(agent("a8"))]).await {
        Err(e @ RegistryError::Conflict { .. }) => assert!(e.is_fatal_for_leader()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let state = second.recover().await.expect("recover");
    assert!(state.agents.contains_key("a9"));
    assert!(!state.agents.contains_key("a8"));
    // Rejections are not conflicts and leave the store usable.
    match second
        .apply(vec![Operation::UpdateWeights(vec![("eng".into(), -1.0)])])
        .await
    {
        Err(e) => assert!(e.is_rejection(), "{e}"),
        Ok(_) => panic!("a negative weight was accepted"),
    }
    // Only the current snapshot is left behind.
    let snapshots = session
        .zk
        .get_children(&format!("{root}/snapshots"), false)
        .await
        .expect("children");
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
}

#[tokio::test]
async fn zookeeper_state_of_10k_agents_spans_several_znodes() {
    let (session, registry) = zk_store().await;
    let ids: Vec<String> = (0..10_000).map(|i| format!("agent-{i:05}")).collect();
    for chunk in ids.chunks(2_500) {
        apply_ok(
            &registry,
            chunk
                .iter()
                .map(|id| Operation::AdmitAgent(agent(id)))
                .collect(),
        )
        .await;
    }
    let root = first_root(&registry);
    let json =
        super::codec::encode(1, &registry.recover().await.expect("recover")).expect("encode");
    assert!(json.len() > 1024 * 1024, "the JSON is {} bytes", json.len());
    let small = ZooKeeperRegistry::open(session.zk.clone(), &root)
        .await
        .expect("open")
        .with_chunk_bytes(64 * 1024);
    small.recover().await.expect("recover");
    let state = apply_ok(&small, vec![Operation::AdmitAgent(agent("extra"))]).await;
    let snapshots = session
        .zk
        .get_children(&format!("{root}/snapshots"), false)
        .await
        .expect("children");
    let chunks = session
        .zk
        .get_children(&format!("{root}/snapshots/{}", snapshots[0]), false)
        .await
        .expect("chunks");
    assert!(chunks.len() > 1, "one chunk only: {chunks:?}");
    assert_eq!(registry.recover().await.expect("recover"), state);
    assert_eq!(state.agents.len(), 10_001);
}

fn first_root(registry: &ZooKeeperRegistry) -> String {
    registry.root().to_owned()
}
