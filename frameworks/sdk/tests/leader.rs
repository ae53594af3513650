//! Leader election among framework instances and master detection through
//! a real ZooKeeper (Debian's, started by scripts/zookeeper.sh).

use std::time::Duration;

use corral_sdk::detector::{Detector, MasterSource};
use corral_sdk::leader::{Election, Instance};
use corral_zk::testing::ZooKeeperServer;

const SESSION: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_leads_and_the_standby_takes_over_when_it_resigns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zk = ZooKeeperServer::start(dir.path(), 1).expect("start zookeeper");
    let url = format!("zk://{}/corral/frameworks/test", zk.connect);

    let first = Instance::new("10.0.0.1", 7001);
    let second = Instance::new("10.0.0.2", 7002);
    let a = Election::enter(&url, &first, SESSION)
        .await
        .expect("enter a");
    let b = Election::enter(&url, &second, SESSION)
        .await
        .expect("enter b");
    let epoch_a = tokio::time::timeout(Duration::from_secs(10), a.lead())
        .await
        .expect("a leads at once")
        .expect("a leads");

    // b waits, knowing where the leader is.
    let mut b_leader = b.leader();
    let standby = tokio::spawn(async move {
        let epoch = b.lead().await.expect("b leads");
        (b, epoch)
    });
    // (The borrow `wait_for` returns is dropped at once: held, it would
    // block the election's sender.)
    let known = tokio::time::timeout(
        Duration::from_secs(10),
        b_leader.wait_for(|l| l.as_deref() == Some("10.0.0.1:7001")),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(known, "the standby learns the leader's address");
    assert!(!standby.is_finished(), "only one instance leads");

    // The detector reads the same layout.
    let detector = Detector::new(MasterSource::parse(&url).expect("zk url"));
    assert_eq!(detector.leader().await.expect("leader"), "10.0.0.1:7001");

    a.resign().await;
    let (b, epoch_b) = tokio::time::timeout(Duration::from_secs(20), standby)
        .await
        .expect("b takes over")
        .expect("join");
    assert!(epoch_b > epoch_a, "a later leader has a higher epoch");
    assert_eq!(detector.leader().await.expect("leader"), "10.0.0.2:7002");
    b.resign().await;
    let none = Detector::new(MasterSource::parse(&url).expect("zk url"))
        .leader()
        .await
        .expect_err("nobody leads");
    assert!(none.to_string().contains("no master is elected"), "{none}");
}
