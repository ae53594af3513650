//! The log archive conformance suite for `HdfsArchive`, through Hadoop's own
//! client (libhdfs + the Hadoop jars on CLASSPATH:
//! `eval "$(scripts/hadoop-env.sh)"`), on a local `fs.defaultFS` unless
//! `CORRAL_TEST_HDFS_URI=hdfs://namenode:8020/some/dir` names a real cluster.
#![cfg(feature = "hdfs")]

use std::path::Path;

use corral_storage::archive::{HdfsArchive, LogArchive};

fn root_for(scratch: &Path) -> String {
    let unique = scratch
        .file_name()
        .and_then(|n| n.to_str())
        .expect("scratch dir name");
    match std::env::var("CORRAL_TEST_HDFS_URI") {
        Ok(uri) if !uri.is_empty() => format!("{}/archive-{unique}", uri.trim_end_matches('/')),
        _ => format!("file://{}/hdfs-archive", scratch.display()),
    }
}

fn make(scratch: &Path) -> HdfsArchive {
    HdfsArchive::from_uri(&root_for(scratch)).expect("connect through Hadoop's client")
}

corral_storage::log_archive_conformance_tests!(make);

#[test]
fn colons_are_stored_encoded_and_listed_as_given() {
    if std::env::var_os("CORRAL_TEST_HDFS_URI").is_some() {
        return; // looks at the local files
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let archive = make(scratch.path());
    let src = scratch.path().join("stdout");
    std::fs::write(&src, b"x").expect("write");
    archive.put("fw:1/ex/c/stdout", &src).expect("put");
    assert!(scratch
        .path()
        .join("hdfs-archive/fw%3A1/ex/c/stdout")
        .is_file());
    assert_eq!(
        archive.list("").expect("list"),
        vec!["fw:1/ex/c/stdout".to_string()]
    );
}
