//! The state store conformance suite for `LocalStore` (a directory), plus
//! what only it has: durability across reopening, and one process at a time.

use std::sync::Arc;

use corral_sdk::store::{LocalStore, StateStore, StoreError};

async fn make() -> (Arc<dyn StateStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("state")).expect("open");
    (Arc::new(store), dir)
}

corral_sdk::store_conformance_tests!(make);

#[tokio::test]
async fn survives_reopening_and_cleans_up_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    {
        let s = LocalStore::open(&path).expect("open");
        s.put("requests/web", b"v1".to_vec(), None)
            .await
            .expect("put");
        s.put("requests/web", b"v2".to_vec(), Some(1))
            .await
            .expect("put");
    }
    // A temporary file left by a crash in the middle of a write.
    std::fs::write(path.join("requests/web~~tmp-dead"), b"half").expect("write");
    let s = LocalStore::open(&path).expect("reopen");
    let v = s.get("requests/web").await.expect("get").expect("kept");
    assert_eq!((v.value.as_slice(), v.version), (&b"v2"[..], 2));
    assert_eq!(s.list("").await.expect("list"), ["requests/web"]);
    assert!(!path.join("requests/web~~tmp-dead").exists());
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_first_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    let first = LocalStore::open(&path).expect("open");
    // flock is per open file description: a second open in this process
    // conflicts exactly as another process would.
    match LocalStore::open(&path) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("in use"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(first);
    LocalStore::open(&path).expect("free again once the first is gone");
}

#[tokio::test]
async fn a_corrupt_file_is_reported_not_misread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    let s = LocalStore::open(&path).expect("open");
    std::fs::write(path.join("torn~"), b"abc").expect("write");
    assert!(matches!(
        s.get("torn").await,
        Err(StoreError::Corrupt { .. })
    ));
}
