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

// --- copy_to_local: what the agent's fetcher uses for hdfs:// URIs ---------

/// A scratch directory with `dist/app.tar.gz` in it (bytes that are not
/// valid UTF-8, so a lossy copy would show).
fn dist() -> (tempfile::TempDir, Vec<u8>) {
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(scratch.path().join("dist/sub")).expect("mkdir");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ 0x80).collect();
    std::fs::write(scratch.path().join("dist/app.tar.gz"), &data).expect("write");
    (scratch, data)
}

#[test]
fn copies_a_file_through_hadoops_client() {
    let (scratch, data) = dist();
    let uri = format!("file://{}/dist/app.tar.gz", scratch.path().display());
    let dest = scratch.path().join("out");
    let n = corral_storage::copy_to_local(&uri, &dest, 1 << 20, &[]).expect("copy");
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("read"), data);
}

/// viewfs:// is a Hadoop-only scheme (a client-side mount table): nothing
/// but Hadoop's client can resolve it, so this proves the copy went through
/// it with the configuration given.
#[test]
fn copies_through_a_scheme_only_hadoop_knows() {
    let (scratch, data) = dist();
    let config = vec![(
        "fs.viewfs.mounttable.corralcopy.link./releases".to_string(),
        format!("file://{}/dist", scratch.path().display()),
    )];
    let dest = scratch.path().join("out");
    let n = corral_storage::copy_to_local(
        "viewfs://corralcopy/releases/app.tar.gz",
        &dest,
        1 << 20,
        &config,
    )
    .expect("copy through viewfs");
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("read"), data);
}

#[test]
fn refuses_missing_files_directories_oversized_files_and_non_uris() {
    let (scratch, _) = dist();
    let base = format!("file://{}/dist", scratch.path().display());
    let dest = scratch.path().join("out");
    let message = |uri: &str, max: u64| match corral_storage::copy_to_local(uri, &dest, max, &[]) {
        Err(e @ StorageError::Hdfs { .. }) => e.to_string(),
        other => panic!("{uri}: expected an HDFS error, got {other:?}"),
    };
    let missing = format!("{base}/missing.tgz");
    let m = message(&missing, 1 << 20);
    assert!(m.contains(&missing) && m.contains("no such file"), "{m}");
    let m = message(&format!("{base}/sub"), 1 << 20);
    assert!(m.contains("is a directory"), "{m}");
    let m = message(&format!("{base}/app.tar.gz"), 1000);
    assert!(m.contains("more than the 1000 allowed"), "{m}");
    assert!(!dest.exists(), "nothing is written for a refused file");
    let m = message("relative/path.tgz", 1 << 20);
    assert!(m.contains("not a Hadoop file system URI"), "{m}");
    let m = message("hdfs://namenode:8020/", 1 << 20);
    assert!(m.contains("names no file"), "{m}");
}
