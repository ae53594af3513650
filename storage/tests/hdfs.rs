//! The conformance suite for `HdfsBackend`, run through Hadoop's own client
//! (libhdfs + the Hadoop jars on CLASSPATH: `eval "$(scripts/hadoop-env.sh)"`).
//!
//! No NameNode can be downloaded where these tests run, so by default the
//! client works on a local `fs.defaultFS` (`file:///` under a scratch
//! directory). Set `CORRAL_TEST_HDFS_URI=hdfs://namenode:8020/some/dir` to
//! run the same suite against a real cluster (each test uses its own
//! sub-directory there).
#![cfg(feature = "hdfs")]

use std::path::Path;
use std::sync::Arc;

use corral_storage::{Clock, HdfsBackend, HdfsConfig, StorageError, VolumeBackend, VolumeId};

fn root_for(scratch: &Path) -> String {
    let unique = scratch
        .file_name()
        .and_then(|n| n.to_str())
        .expect("scratch dir name");
    match std::env::var("CORRAL_TEST_HDFS_URI") {
        Ok(uri) if !uri.is_empty() => format!("{}/{unique}", uri.trim_end_matches('/')),
        _ => format!("file://{}/hdfs-root", scratch.display()),
    }
}

fn make(scratch: &Path, clock: Arc<dyn Clock>) -> HdfsBackend {
    let config = HdfsConfig::parse(&root_for(scratch)).expect("volume root");
    HdfsBackend::connect_with_clock(config, clock).expect("connect through Hadoop's client")
}

corral_storage::conformance_tests!(make);

#[test]
fn uses_hadoops_local_file_system_with_its_checksums() {
    if std::env::var_os("CORRAL_TEST_HDFS_URI").is_some() {
        return; // only meaningful for the local fs.defaultFS
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(corral_storage::ManualClock::new(1_000));
    let b = make(scratch.path(), clock);
    let id = VolumeId::new("r", "v");
    let lease = b
        .acquire(&id, "agent-a", std::time::Duration::from_secs(5))
        .expect("acquire");
    let src = scratch.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"through the JVM").expect("write");
    b.write_back(&lease, &src).expect("write_back");
    // Hadoop's LocalFileSystem (a ChecksumFileSystem) wrote .crc files next
    // to what it stored: proof that the data went through Hadoop's client,
    // not std::fs.
    let vol = scratch.path().join("hdfs-root/r/v");
    let found = walk(&vol)
        .into_iter()
        .any(|p| p.extension().is_some_and(|e| e == "crc"));
    assert!(found, "no .crc files under {}", vol.display());
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn an_unreachable_name_node_is_a_clear_error() {
    let config = HdfsConfig {
        // Port 1 on loopback: nothing listens, the client fails fast.
        config: vec![
            ("ipc.client.connect.max.retries".into(), "0".into()),
            (
                "ipc.client.connect.max.retries.on.timeouts".into(),
                "0".into(),
            ),
        ],
        ..HdfsConfig::parse("hdfs://127.0.0.1:1/corral/volumes").expect("uri")
    };
    match HdfsBackend::connect(config) {
        Err(e @ StorageError::Hdfs { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("hdfs://127.0.0.1:1/corral/volumes"), "{msg}");
            assert!(msg.contains("Connection refused"), "{msg}");
        }
        Err(e) => panic!("expected an Hdfs error, got {e:?}"),
        Ok(_) => panic!("connected to a port where nothing listens"),
    }
}
