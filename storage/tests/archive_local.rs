//! The log archive conformance suite for `LocalArchive`, plus checks that
//! look at its files.

use std::path::Path;

use corral_storage::archive::{LocalArchive, LogArchive};

fn make(scratch: &Path) -> LocalArchive {
    LocalArchive::new(scratch.join("archive")).expect("local archive")
}

corral_storage::log_archive_conformance_tests!(make);

#[test]
fn keys_are_plain_paths_below_the_root_and_no_temporary_file_remains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = make(dir.path());
    let src = dir.path().join("stdout");
    std::fs::write(&src, b"hello\n").expect("write");
    archive.put("fw/ex/c/stdout", &src).expect("put");
    let stored = dir.path().join("archive/fw/ex/c/stdout");
    assert_eq!(std::fs::read(&stored).expect("stored file"), b"hello\n");
    let names: Vec<String> = std::fs::read_dir(stored.parent().expect("parent"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["stdout".to_string()]);
    // A temporary file left by a crash is never listed.
    std::fs::write(
        dir.path().join("archive/fw/ex/c/.corral-part-deadbeef"),
        b"half",
    )
    .expect("write");
    assert_eq!(
        archive.list("fw").expect("list"),
        vec!["fw/ex/c/stdout".to_string()]
    );
}
