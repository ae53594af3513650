//! The state store conformance suite for `ZkStore`, against a real
//! ZooKeeper (Debian's, through scripts/zookeeper.sh), each test under its
//! own root znode of one server shared by the test process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use corral_sdk::store::{StateStore, StoreError, ZkStore};
use corral_zk::testing::ZooKeeperServer;
use corral_zk::Session;

fn zookeeper() -> &'static str {
    static SERVER: OnceLock<(tempfile::TempDir, ZooKeeperServer)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = ZooKeeperServer::start(dir.path(), 1).expect("start zookeeper");
            (dir, server)
        })
        .1
        .connect
}

async fn store_at(root: &str) -> (Arc<Session>, ZkStore) {
    let session = Arc::new(
        Session::connect(
            zookeeper(),
            Duration::from_secs(10),
            Duration::from_secs(20),
        )
        .await
        .expect("zookeeper session"),
    );
    let store = ZkStore::open(Arc::clone(&session), root)
        .await
        .expect("open");
    (session, store)
}

async fn make() -> (Arc<dyn StateStore>, Arc<Session>) {
    let root = format!("/corral/test/{}", uuid_like());
    let (session, store) = store_at(&root).await;
    (Arc::new(store), session)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

corral_sdk::store_conformance_tests!(make);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_session_reads_what_was_committed_and_a_closed_one_cannot_write() {
    let root = format!("/corral/test/{}", uuid_like());
    let (first_session, first) = store_at(&root).await;
    first
        .put("deploys/web/1", b"{\"state\":\"SUCCEEDED\"}".to_vec(), None)
        .await
        .expect("put");
    // A standby taking over reads it through its own session.
    let (_second_session, second) = store_at(&root).await;
    let v = second
        .get("deploys/web/1")
        .await
        .expect("get")
        .expect("committed");
    assert_eq!(v.version, 1);
    first_session.close().await;
    let r = first.set("deploys/web/2", b"late".to_vec()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert_eq!(second.get("deploys/web/2").await.expect("get"), None);
}
