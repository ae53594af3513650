//! The conformance suite every [`StateStore`] passes.
//!
//! `corral_sdk::store_conformance_tests!(make)` generates one
//! `#[tokio::test]` per case; `make` is an async function returning a fresh
//! store and a guard kept alive for the test (a temporary directory, a
//! ZooKeeper server): `async fn make() -> (Arc<dyn StateStore>, Guard)`.

use std::sync::Arc;

use super::{StateStore, StoreError, MAX_VALUE_BYTES};

/// Generates the suite's tests for a store made by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            get_of_a_missing_key,
            create_and_conflicting_create,
            compare_and_set,
            set_ignores_versions,
            delete_with_and_without_version,
            list_by_prefix,
            invalid_keys_change_nothing,
            oversized_values_are_refused,
            binary_and_empty_values,
            racing_writers_have_one_winner,
            a_thousand_keys,
            a_key_and_keys_under_it);
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
}

fn conflict(r: Result<u64, StoreError>) -> (Option<u64>, Option<u64>) {
    match r {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => (expected, actual),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A key never written reads as missing.
pub async fn get_of_a_missing_key(s: Arc<dyn StateStore>) {
    assert_eq!(s.get("nothing/here").await.expect("get"), None);
    assert!(!s.delete("nothing/here", None).await.expect("delete"));
}

/// Creating (expected `None`) makes version 1; creating again conflicts
/// and keeps the first value.
pub async fn create_and_conflicting_create(s: Arc<dyn StateStore>) {
    assert_eq!(
        s.put("requests/web", b"one".to_vec(), None)
            .await
            .expect("create"),
        1
    );
    assert_eq!(
        conflict(s.put("requests/web", b"two".to_vec(), None).await),
        (None, Some(1))
    );
    let v = s.get("requests/web").await.expect("get").expect("exists");
    assert_eq!((v.value.as_slice(), v.version), (&b"one"[..], 1));
}

/// A write at the right version succeeds and bumps it; at a wrong one it
/// conflicts and changes nothing.
pub async fn compare_and_set(s: Arc<dyn StateStore>) {
    s.put("k", b"1".to_vec(), None).await.expect("create");
    assert_eq!(s.put("k", b"2".to_vec(), Some(1)).await.expect("cas"), 2);
    assert_eq!(
        conflict(s.put("k", b"x".to_vec(), Some(1)).await),
        (Some(1), Some(2))
    );
    assert_eq!(
        conflict(s.put("k", b"x".to_vec(), Some(7)).await),
        (Some(7), Some(2))
    );
    assert_eq!(
        conflict(s.put("missing", b"x".to_vec(), Some(1)).await),
        (Some(1), None)
    );
    let v = s.get("k").await.expect("get").expect("exists");
    assert_eq!((v.value, v.version), (b"2".to_vec(), 2));
    assert_eq!(s.get("missing").await.expect("get"), None);
}

/// `set` creates or replaces whatever the version.
pub async fn set_ignores_versions(s: Arc<dyn StateStore>) {
    assert_eq!(s.set("a/b", b"1".to_vec()).await.expect("set"), 1);
    assert_eq!(s.set("a/b", b"2".to_vec()).await.expect("set"), 2);
    assert_eq!(
        s.get("a/b").await.expect("get").expect("exists").value,
        b"2"
    );
}

/// `delete` with the right version or none removes; with a wrong one it
/// conflicts; a removed key can be created again from version 1.
pub async fn delete_with_and_without_version(s: Arc<dyn StateStore>) {
    s.put("d", b"1".to_vec(), None).await.expect("create");
    assert!(matches!(
        s.delete("d", Some(5)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(s.get("d").await.expect("get").is_some(), "still there");
    assert!(s.delete("d", Some(1)).await.expect("delete"));
    assert_eq!(s.get("d").await.expect("get"), None);
    assert!(!s.delete("d", None).await.expect("delete again"));
    s.put("e", b"1".to_vec(), None).await.expect("create");
    assert!(s.delete("e", None).await.expect("delete"));
    assert_eq!(s.put("e", b"x".to_vec(), None).await.expect("recreate"), 1);
}

/// `list` returns the keys under a prefix at any depth, sorted, and not
/// those of a sibling sharing its first letters.
pub async fn list_by_prefix(s: Arc<dyn StateStore>) {
    for k in ["req/b", "req/a", "req/a/x", "requests/z", "other"] {
        s.set(k, b"v".to_vec()).await.expect("set");
    }
    assert_eq!(
        s.list("req").await.expect("list"),
        ["req/a", "req/a/x", "req/b"]
    );
    assert_eq!(s.list("req/a").await.expect("list"), ["req/a", "req/a/x"]);
    assert_eq!(
        s.list("").await.expect("list"),
        ["other", "req/a", "req/a/x", "req/b", "requests/z"]
    );
    assert!(s.list("none").await.expect("list").is_empty());
}

/// Every call refuses an invalid key, and nothing is written.
pub async fn invalid_keys_change_nothing(s: Arc<dyn StateStore>) {
    let long = "x".repeat(129);
    for bad in [
        "",
        "/a",
        "a/",
        "a//b",
        "..",
        "a/./b",
        "sp ace",
        "a:b",
        long.as_str(),
    ] {
        let invalid = |r: Result<(), StoreError>| {
            assert!(
                matches!(r, Err(StoreError::InvalidKey { .. })),
                "{bad:?}: {r:?}"
            )
        };
        invalid(s.get(bad).await.map(|_| ()));
        invalid(s.put(bad, b"v".to_vec(), None).await.map(|_| ()));
        invalid(s.set(bad, b"v".to_vec()).await.map(|_| ()));
        invalid(s.delete(bad, None).await.map(|_| ()));
        if !bad.is_empty() {
            invalid(s.list(bad).await.map(|_| ()));
        }
    }
    assert!(
        s.list("").await.expect("list").is_empty(),
        "nothing written"
    );
}

/// A value over the limit is refused; one at the limit is kept.
pub async fn oversized_values_are_refused(s: Arc<dyn StateStore>) {
    let r = s.set("big", vec![1u8; MAX_VALUE_BYTES + 1]).await;
    assert!(matches!(r, Err(StoreError::TooLarge { .. })), "{r:?}");
    let r = s.put("big", vec![1u8; MAX_VALUE_BYTES + 1], None).await;
    assert!(matches!(r, Err(StoreError::TooLarge { .. })), "{r:?}");
    assert_eq!(s.get("big").await.expect("get"), None);
    s.set("big", vec![2u8; MAX_VALUE_BYTES])
        .await
        .expect("at the limit");
    assert_eq!(
        s.get("big")
            .await
            .expect("get")
            .expect("exists")
            .value
            .len(),
        MAX_VALUE_BYTES
    );
}

/// Any bytes round-trip, and an empty value is a value.
pub async fn binary_and_empty_values(s: Arc<dyn StateStore>) {
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    s.set("bin", bytes.clone()).await.expect("set");
    assert_eq!(
        s.get("bin").await.expect("get").expect("exists").value,
        bytes
    );
    s.put("empty", Vec::new(), None)
        .await
        .expect("create empty");
    let v = s
        .get("empty")
        .await
        .expect("get")
        .expect("an empty value exists");
    assert!(v.value.is_empty());
    assert_eq!(s.list("empty").await.expect("list"), ["empty"]);
}

/// Writers racing from the same version: exactly one wins each round.
pub async fn racing_writers_have_one_winner(s: Arc<dyn StateStore>) {
    s.put("race", b"0".to_vec(), None).await.expect("create");
    for round in 1..=5u64 {
        let mut tasks = Vec::new();
        for w in 0..4u8 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                s.put("race", vec![w], Some(round)).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(v) => {
                    assert_eq!(v, round + 1);
                    wins += 1;
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    assert_eq!(
        s.get("race").await.expect("get").expect("exists").version,
        6
    );
}

/// A thousand keys are all listed.
pub async fn a_thousand_keys(s: Arc<dyn StateStore>) {
    for i in 0..1000 {
        s.set(&format!("history/job/{i:05}"), i.to_string().into_bytes())
            .await
            .expect("set");
    }
    let keys = s.list("history").await.expect("list");
    assert_eq!(keys.len(), 1000);
    assert_eq!(keys[0], "history/job/00000");
    assert_eq!(keys[999], "history/job/00999");
}

/// A key can hold a value and have keys under it; deleting one leaves the
/// others.
pub async fn a_key_and_keys_under_it(s: Arc<dyn StateStore>) {
    s.set("jobs/a/runs/1", b"run".to_vec())
        .await
        .expect("deep first");
    assert_eq!(
        s.get("jobs/a").await.expect("get"),
        None,
        "a parent is not a key"
    );
    s.put("jobs/a", b"job".to_vec(), None)
        .await
        .expect("then the parent");
    assert_eq!(
        s.list("jobs").await.expect("list"),
        ["jobs/a", "jobs/a/runs/1"]
    );
    assert!(s
        .delete("jobs/a", Some(1))
        .await
        .expect("delete the parent"));
    assert_eq!(s.list("jobs").await.expect("list"), ["jobs/a/runs/1"]);
    assert!(s
        .delete("jobs/a/runs/1", None)
        .await
        .expect("delete the child"));
    assert!(s.list("jobs").await.expect("list").is_empty());
}
