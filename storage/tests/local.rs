//! The conformance suite for `LocalBackend`, and checks that look at its
//! files (the layout is described in `src/backend.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_storage::{
    Clock, LocalBackend, ManualClock, StorageError, VolumeBackend, VolumeId, MAX_RECORD_BYTES,
};

fn make(scratch: &Path, clock: Arc<dyn Clock>) -> LocalBackend {
    LocalBackend::with_clock(scratch.join("volumes"), clock).expect("local backend")
}

corral_storage::conformance_tests!(make);

const TTL: Duration = Duration::from_secs(30);

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    backend: LocalBackend,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let backend = make(dir.path(), clock.clone());
        Fixture {
            dir,
            clock,
            backend,
        }
    }

    /// The volume's directory in the backend (role "r", id as given).
    fn volume_dir(&self, pid: &str) -> PathBuf {
        self.dir.path().join("volumes").join("r").join(pid)
    }

    fn local(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let p = self.dir.path().join("local").join(name);
        fs::create_dir_all(&p).expect("mkdir");
        for (rel, content) in files {
            let f = p.join(rel);
            fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            fs::write(f, content).expect("write");
        }
        p
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_crashed_write_back_is_never_exposed_and_is_cleaned_up_by_the_next_generation() {
    let f = Fixture::new();
    let id = VolumeId::new("r", "v");
    let a = f.backend.acquire(&id, "agent-a", TTL).expect("acquire");
    let v1 = f.local("v1", &[("data", b"committed v1")]);
    f.backend.write_back(&a, &v1).expect("write_back");

    // What a write-back that died half-way leaves: a staging directory with
    // some content and no manifest.
    let data = f.volume_dir("v").join("data");
    let crashed = data.join(format!("g{:020}-deadbeef", a.generation));
    fs::create_dir_all(crashed.join("blobs/0")).expect("mkdir");
    fs::write(crashed.join("blobs/0/0"), b"half of v2").expect("write");

    let out = f.local("out", &[]);
    f.backend.restore(&id, &out).expect("restore");
    assert_eq!(fs::read(out.join("data")).expect("read"), b"committed v1");

    // The next holder's commit removes it (its writer can never commit).
    f.clock.advance(TTL);
    let b = f.backend.acquire(&id, "agent-b", TTL).expect("takeover");
    let v3 = f.local("v3", &[("data", b"v3")]);
    f.backend.write_back(&b, &v3).expect("write_back");
    let left = names(&data);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&format!("g{:020}-", b.generation)));
}

#[test]
fn an_oversized_record_is_refused_not_read() {
    let f = Fixture::new();
    let id = VolumeId::new("r", "big");
    f.backend.acquire(&id, "agent-a", TTL).expect("acquire");
    let state = f.volume_dir("big").join("state");
    let huge = vec![b' '; usize::try_from(MAX_RECORD_BYTES).expect("fits") + 1];
    fs::write(state.join(format!("{:020}", 99)), huge).expect("write");
    match f.backend.exists(&id) {
        Err(e @ StorageError::Corrupt { .. }) => {
            assert!(e.to_string().contains("65536"), "{e}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_manifest_that_escapes_the_target_is_refused() {
    let f = Fixture::new();
    let id = VolumeId::new("r", "evil");
    let a = f.backend.acquire(&id, "agent-a", TTL).expect("acquire");
    let src = f.local("src", &[("ok", b"fine")]);
    f.backend.write_back(&a, &src).expect("write_back");
    let data = f.volume_dir("evil").join("data");
    let snapshot = data.join(&names(&data)[0]);
    let manifest = fs::read_to_string(snapshot.join("manifest.json")).expect("read");
    assert!(manifest.contains("\"ok\""), "{manifest}");
    for evil in ["../escaped", "/abs", "a/../../x"] {
        fs::write(
            snapshot.join("manifest.json"),
            manifest.replace("\"ok\"", &format!("{evil:?}")),
        )
        .expect("write");
        let out = f.local("out", &[("mine", b"keep")]);
        match f.backend.restore(&id, &out) {
            Err(StorageError::Corrupt { reason, .. }) => assert!(reason.contains(evil), "{reason}"),
            other => panic!("expected Corrupt for {evil}, got {other:?}"),
        }
        assert_eq!(names(&out), ["mine"], "the target is left as it was");
        assert!(!f.dir.path().join("local/escaped").exists());
    }
}

#[test]
fn destroy_leaves_only_a_tombstone_record() {
    let f = Fixture::new();
    let id = VolumeId::new("r", "gone");
    let a = f.backend.acquire(&id, "agent-a", TTL).expect("acquire");
    let src = f.local("src", &[("x", b"y")]);
    for _ in 0..3 {
        f.backend.write_back(&a, &src).expect("write_back");
    }
    f.backend.destroy(&id).expect("destroy");
    let vol = f.volume_dir("gone");
    assert_eq!(names(&vol), ["state"]);
    let state = names(&vol.join("state"));
    assert_eq!(state.len(), 1, "{state:?}");
    let tomb = fs::read_to_string(vol.join("state").join(&state[0])).expect("read");
    assert!(tomb.contains("\"destroyed\":true"), "{tomb}");
    assert!(tomb.contains("\"lease\":null"), "{tomb}");
}

#[test]
fn old_record_versions_are_pruned() {
    let f = Fixture::new();
    let id = VolumeId::new("r", "busy");
    let mut lease = f.backend.acquire(&id, "agent-a", TTL).expect("acquire");
    for _ in 0..25 {
        f.clock.advance(Duration::from_secs(1));
        lease = f.backend.renew(&lease, TTL).expect("renew");
    }
    let state = names(&f.volume_dir("busy").join("state"));
    assert!(state.len() <= 5, "{state:?}");
    assert_eq!(
        state.last().map(String::as_str),
        Some("00000000000000000026")
    );
}
