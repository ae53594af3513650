//! The behaviour every [`VolumeBackend`] must show, as a suite any backend
//! runs against itself with real files.
//!
//! A backend's test file generates one `#[test]` per case with
//! [`conformance_tests!`](crate::conformance_tests), giving a function that
//! builds a fresh backend rooted under a scratch directory and reading time
//! from the given clock (the suite moves that clock to expire leases; it
//! never sleeps):
//!
//! ```text
//! corral_storage::conformance_tests!(|scratch: &std::path::Path, clock| {
//!     corral_storage::LocalBackend::with_clock(scratch.join("volumes"), clock).unwrap()
//! });
//! ```
//!
//! [`run_all`] runs every case in one call instead:
//!
//! ```
//! use corral_storage::{conformance, LocalBackend};
//!
//! conformance::run_all(&|scratch: &std::path::Path, clock| {
//!     LocalBackend::with_clock(scratch.join("volumes"), clock).unwrap()
//! });
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::{Clock, Lease, ManualClock, StorageError, TransferStats, VolumeBackend, VolumeId};

/// Where a case runs: a fresh backend, its clock and a scratch directory.
pub struct Ctx {
    pub backend: Box<dyn VolumeBackend>,
    pub clock: Arc<ManualClock>,
    scratch: tempfile::TempDir,
}

impl Ctx {
    /// Builds a backend with `make(scratch dir, clock)`.
    pub fn new<B: VolumeBackend + 'static>(make: &dyn Fn(&Path, Arc<dyn Clock>) -> B) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("corral-storage-conformance-")
            .tempdir()
            .expect("create a scratch directory");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let backend = make(scratch.path(), clock.clone());
        Ctx {
            backend: Box::new(backend),
            clock,
            scratch,
        }
    }

    /// A new, empty local directory under the scratch directory.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.scratch.path().join("local").join(name);
        fs::create_dir_all(&p).expect("create a local directory");
        p
    }
}

/// A case of the suite.
pub type Case = fn(&Ctx);

/// The list of cases, given to `$callback` (the one place that lists them).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback!(
            $($args)*;
            round_trip_of_a_tree,
            restore_of_an_unknown_volume,
            new_volume_restores_empty,
            lease_held_by_another_is_refused,
            same_holder_reacquiring_gets_a_new_generation,
            takeover_after_expiry_fences_the_old_holder,
            renew_keeps_others_out,
            release_lets_another_acquire,
            stale_write_back_is_fenced_and_commits_nothing,
            latest_write_back_wins,
            restore_replaces_the_directory_contents,
            destroy_removes_data_and_lease,
            invalid_ids_are_refused,
            unusual_valid_ids_work,
            volumes_are_independent,
            concurrent_acquires_have_one_winner,
            concurrent_changes_are_serialised,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    (; $($case:ident),* $(,)?) => {
        /// Every case, by name.
        pub const CASES: &[(&str, Case)] = &[$((stringify!($case), cases::$case)),*];
    };
}

__conformance_cases!(__conformance_case_list!());

/// Runs one case on a fresh backend.
pub fn run_case<B: VolumeBackend + 'static>(case: Case, make: &dyn Fn(&Path, Arc<dyn Clock>) -> B) {
    case(&Ctx::new(make));
}

/// Runs every case, each on a fresh backend.
pub fn run_all<B: VolumeBackend + 'static>(make: &dyn Fn(&Path, Arc<dyn Clock>) -> B) {
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        run_case(*case, make);
    }
}

/// Generates one `#[test]` per conformance case for the backend that
/// `$make` (`Fn(&Path, Arc<dyn Clock>) -> impl VolumeBackend`) builds.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_cases!(__conformance_tests!($make));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case($crate::conformance::cases::$case, &$make);
            }
        )*
    };
}

/// What a local tree holds: path -> (kind, mode, content or link target).
type Tree = BTreeMap<String, (char, u32, Vec<u8>)>;

fn read_tree(root: &Path) -> Tree {
    fn walk(root: &Path, rel: &Path, out: &mut Tree) {
        let mut entries: Vec<_> = fs::read_dir(root.join(rel))
            .expect("read_dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        entries.sort();
        for name in entries {
            let rel = rel.join(&name);
            let abs = root.join(&rel);
            let meta = fs::symlink_metadata(&abs).expect("stat");
            let key = rel.to_str().expect("utf-8 test names").to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&abs).expect("readlink");
                let target = target.to_str().expect("utf-8").as_bytes().to_vec();
                out.insert(key, ('l', 0, target));
            } else if meta.is_dir() {
                out.insert(key, ('d', mode, Vec::new()));
                walk(root, &rel, out);
            } else {
                out.insert(key, ('f', mode, fs::read(&abs).expect("read")));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn write_file(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(&p, content).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn vol(pid: &str) -> VolumeId {
    VolumeId::new("data-team", pid)
}

const TTL: Duration = Duration::from_secs(30);

fn assert_fenced(r: Result<impl std::fmt::Debug, StorageError>, stale: &Lease, current: u64) {
    match r {
        Err(StorageError::Fenced {
            generation,
            current: c,
            ..
        }) => {
            assert_eq!(generation, stale.generation);
            assert_eq!(c, current);
        }
        other => panic!(
            "expected Fenced for generation {}, got {other:?}",
            stale.generation
        ),
    }
}

pub mod cases {
    //! The cases; see [`super::CASES`].

    use super::*;

    /// A tree with nested and empty directories, empty, binary and
    /// multi-megabyte files, permission bits and a symbolic link comes back
    /// exactly.
    pub fn round_trip_of_a_tree(ctx: &Ctx) {
        let b = &ctx.backend;
        let src = ctx.dir("src");
        write_file(&src, "a/b/c/deep.txt", b"deep\n", 0o644);
        write_file(&src, "empty", b"", 0o600);
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        write_file(&src, "bin/all-bytes", &binary, 0o640);
        write_file(&src, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
        let big = noise(3 * 1024 * 1024 + 17, 7);
        write_file(&src, "big.dat", &big, 0o644);
        fs::create_dir_all(src.join("empty-dir")).expect("mkdir");
        fs::create_dir_all(src.join("private")).expect("mkdir");
        write_file(&src, "private/key", b"secret", 0o400);
        fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).expect("chmod");
        symlink("a/b/c/deep.txt", src.join("link")).expect("symlink");
        write_file(&src, "name with spaces:and colons", b"odd name", 0o644);

        let id = vol("round-trip");
        let lease = b.acquire(&id, "agent-a", TTL).expect("acquire");
        let up = b.write_back(&lease, &src).expect("write_back");
        let total = 5 + 4096 + 18 + big.len() as u64 + 6 + 8;
        assert_eq!(
            up,
            TransferStats {
                files: 7,
                dirs: 6,
                symlinks: 1,
                bytes: total
            }
        );

        let dst = ctx.dir("dst");
        let down = b.restore(&id, &dst).expect("restore");
        assert_eq!(down, up);
        assert_eq!(read_tree(&dst), read_tree(&src));
        assert!(b.exists(&id).expect("exists"));
    }

    pub fn restore_of_an_unknown_volume(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("never-created");
        assert!(!b.exists(&id).expect("exists"));
        let dst = ctx.dir("dst");
        write_file(&dst, "keep", b"untouched", 0o644);
        match b.restore(&id, &dst) {
            Err(StorageError::NotFound(v)) => assert_eq!(v, id),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(fs::read(dst.join("keep")).expect("read"), b"untouched");
    }

    pub fn new_volume_restores_empty(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("fresh");
        let lease = b.acquire(&id, "agent-a", TTL).expect("acquire");
        assert_eq!(lease.generation, 1);
        assert!(b.exists(&id).expect("exists"));
        let dst = ctx.dir("dst");
        write_file(&dst, "stale/file", b"old", 0o644);
        let stats = b.restore(&id, &dst).expect("restore");
        assert_eq!(stats, TransferStats::default());
        assert!(read_tree(&dst).is_empty());
    }

    pub fn lease_held_by_another_is_refused(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("held");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        ctx.clock.advance(TTL - Duration::from_millis(1));
        let err = b
            .acquire(&id, "agent-b", TTL)
            .expect_err("a live lease must refuse another holder");
        let msg = err.to_string();
        match err {
            StorageError::LeaseHeld {
                holder,
                generation,
                expires_at_unix_ms,
                volume,
            } => {
                assert_eq!(holder, "agent-a");
                assert_eq!(generation, a.generation);
                assert_eq!(expires_at_unix_ms, a.expires_at_unix_ms);
                assert_eq!(volume, id);
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        assert!(msg.contains("agent-a"), "message names the holder: {msg}");
        // The refusal changed nothing: A still holds it.
        b.renew(&a, TTL).expect("the holder renews");
    }

    pub fn same_holder_reacquiring_gets_a_new_generation(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("reacquire");
        let first = b.acquire(&id, "agent-a", TTL).expect("acquire");
        let second = b.acquire(&id, "agent-a", TTL).expect("acquire again");
        assert!(second.generation > first.generation);
        assert_fenced(b.renew(&first, TTL), &first, second.generation);
        b.renew(&second, TTL).expect("the new lease renews");
    }

    pub fn takeover_after_expiry_fences_the_old_holder(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("takeover");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        ctx.clock.advance(TTL);
        let bl = b
            .acquire(&id, "agent-b", TTL)
            .expect("an expired lease is taken over");
        assert_eq!(bl.holder, "agent-b");
        assert!(bl.generation > a.generation);
        let err = b.renew(&a, TTL).expect_err("the old holder is fenced");
        assert!(err.to_string().contains("agent-b"), "{err}");
        assert_fenced(Err::<(), _>(err), &a, bl.generation);
        assert_fenced(b.release(&a), &a, bl.generation);
        b.renew(&bl, TTL).expect("the new holder renews");
    }

    pub fn renew_keeps_others_out(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("renew");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        ctx.clock.advance(Duration::from_secs(20));
        let renewed = b.renew(&a, TTL).expect("renew");
        assert_eq!(renewed.generation, a.generation);
        assert!(renewed.expires_at_unix_ms > a.expires_at_unix_ms);
        ctx.clock.advance(Duration::from_secs(20)); // past the first expiry
        match b.acquire(&id, "agent-b", TTL) {
            Err(StorageError::LeaseHeld { holder, .. }) => assert_eq!(holder, "agent-a"),
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        // An expired lease nobody took over is still current.
        ctx.clock.advance(TTL);
        b.renew(&renewed, TTL).expect("renew after expiry");
    }

    pub fn release_lets_another_acquire(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("release");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        b.release(&a).expect("release");
        b.release(&a).expect("releasing twice is fine");
        let bl = b
            .acquire(&id, "agent-b", TTL)
            .expect("a released volume is free at once");
        assert_fenced(b.renew(&a, TTL), &a, bl.generation);
        assert_fenced(b.release(&a), &a, bl.generation);
    }

    pub fn stale_write_back_is_fenced_and_commits_nothing(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("fencing");
        let src = ctx.dir("src");
        write_file(&src, "data", b"v1 from a", 0o644);
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        b.write_back(&a, &src).expect("write_back v1");

        ctx.clock.advance(TTL + Duration::from_secs(1));
        let bl = b.acquire(&id, "agent-b", TTL).expect("takeover");

        write_file(&src, "data", b"v2 from the stale a", 0o644);
        write_file(&src, "more", b"extra", 0o644);
        assert_fenced(b.write_back(&a, &src), &a, bl.generation);

        let dst = ctx.dir("dst");
        b.restore(&id, &dst).expect("restore");
        let tree = read_tree(&dst);
        assert_eq!(tree.len(), 1, "{tree:?}");
        assert_eq!(fs::read(dst.join("data")).expect("read"), b"v1 from a");

        let src_b = ctx.dir("src-b");
        write_file(&src_b, "data", b"v3 from b", 0o644);
        b.write_back(&bl, &src_b).expect("the holder writes");
        b.restore(&id, &dst).expect("restore");
        assert_eq!(read_tree(&dst), read_tree(&src_b));
    }

    pub fn latest_write_back_wins(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("latest");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        let src = ctx.dir("src");
        write_file(&src, "one", b"1", 0o644);
        write_file(&src, "dir/two", b"2", 0o644);
        b.write_back(&a, &src).expect("first");
        fs::remove_file(src.join("one")).expect("rm");
        fs::remove_dir_all(src.join("dir")).expect("rm");
        write_file(&src, "three", b"3", 0o600);
        let stats = b.write_back(&a, &src).expect("second");
        assert_eq!(stats.files, 1);
        let dst = ctx.dir("dst");
        b.restore(&id, &dst).expect("restore");
        assert_eq!(read_tree(&dst), read_tree(&src));
    }

    pub fn restore_replaces_the_directory_contents(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("replace");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        let src = ctx.dir("src");
        write_file(&src, "kept/file", b"from the snapshot", 0o644);
        b.write_back(&a, &src).expect("write_back");

        let dst = ctx.dir("dst");
        write_file(&dst, "kept/file", b"local edit", 0o644);
        write_file(&dst, "kept/extra", b"local only", 0o644);
        write_file(&dst, "locked/inner/f", b"x", 0o444);
        fs::set_permissions(dst.join("locked/inner"), fs::Permissions::from_mode(0o555))
            .expect("chmod");
        symlink("/nonexistent", dst.join("dangling")).expect("symlink");
        b.restore(&id, &dst).expect("restore");
        assert_eq!(read_tree(&dst), read_tree(&src));
    }

    pub fn destroy_removes_data_and_lease(ctx: &Ctx) {
        let b = &ctx.backend;
        let id = vol("destroy");
        let a = b.acquire(&id, "agent-a", TTL).expect("acquire");
        let src = ctx.dir("src");
        write_file(&src, "data", b"to be destroyed", 0o644);
        b.write_back(&a, &src).expect("write_back");
        b.destroy(&id).expect("destroy");
        b.destroy(&id).expect("destroying twice is fine");
        assert!(!b.exists(&id).expect("exists"));
        assert!(matches!(
            b.restore(&id, &ctx.dir("dst")),
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(b.renew(&a, TTL), Err(StorageError::NotFound(_))));
        assert!(matches!(
            b.write_back(&a, &src),
            Err(StorageError::NotFound(_))
        ));

        // The lease went with it: another holder creates the volume anew,
        // empty, and the old lease stays fenced.
        let bl = b
            .acquire(&id, "agent-b", TTL)
            .expect("acquire after destroy");
        assert!(bl.generation > a.generation);
        let dst = ctx.dir("dst2");
        assert_eq!(
            b.restore(&id, &dst).expect("restore"),
            TransferStats::default()
        );
        assert!(read_tree(&dst).is_empty());
        assert_fenced(b.write_back(&a, &src), &a, bl.generation);

        b.destroy(&vol("never-existed"))
            .expect("destroying nothing is fine");
    }

    pub fn invalid_ids_are_refused(ctx: &Ctx) {
        let b = &ctx.backend;
        let dir = ctx.dir("d");
        let bad_ids = [
            VolumeId::new("data-team", ""),
            VolumeId::new("data-team", "."),
            VolumeId::new("data-team", ".."),
            VolumeId::new("data-team", "a/b"),
            VolumeId::new("data-team", "../escape"),
            VolumeId::new("data-team", "nul\0byte"),
            VolumeId::new("", "v"),
            VolumeId::new("..", "v"),
            VolumeId::new("/abs", "v"),
            VolumeId::new("a//b", "v"),
            VolumeId::new("a\0b", "v"),
        ];
        for id in &bad_ids {
            let invalid = |r: Result<(), StorageError>, call: &str| match r {
                Err(StorageError::InvalidId { .. }) => {}
                other => panic!("{call}({id:?}): expected InvalidId, got {other:?}"),
            };
            invalid(b.acquire(id, "agent-a", TTL).map(drop), "acquire");
            invalid(b.restore(id, &dir).map(drop), "restore");
            invalid(b.exists(id).map(drop), "exists");
            invalid(b.destroy(id), "destroy");
            let lease = Lease {
                volume: id.clone(),
                holder: "agent-a".into(),
                generation: 1,
                expires_at_unix_ms: u64::MAX,
            };
            invalid(b.renew(&lease, TTL).map(drop), "renew");
            invalid(b.release(&lease), "release");
            invalid(b.write_back(&lease, &dir).map(drop), "write_back");
        }
        for holder in ["", "nul\0"] {
            assert!(matches!(
                b.acquire(&vol("ok"), holder, TTL),
                Err(StorageError::InvalidId { .. })
            ));
        }
        assert!(!b.exists(&vol("ok")).expect("exists"));
    }

    pub fn unusual_valid_ids_work(ctx: &Ctx) {
        let b = &ctx.backend;
        let ids = [
            VolumeId::new("eng/spark", "v"),
            VolumeId::new("eng", "spark/v".replace('/', ":")),
            VolumeId::new("*", "kafka broker 0"),
            VolumeId::new("données", "%2F..%00"),
        ];
        for (i, id) in ids.iter().enumerate() {
            let lease = b.acquire(id, "agent-a", TTL).expect("acquire");
            let src = ctx.dir(&format!("src{i}"));
            write_file(&src, "who", format!("{id}").as_bytes(), 0o644);
            b.write_back(&lease, &src).expect("write_back");
        }
        for (i, id) in ids.iter().enumerate() {
            let dst = ctx.dir(&format!("dst{i}"));
            b.restore(id, &dst).expect("restore");
            assert_eq!(
                fs::read(dst.join("who")).expect("read"),
                format!("{id}").as_bytes()
            );
        }
    }

    pub fn volumes_are_independent(ctx: &Ctx) {
        let b = &ctx.backend;
        let x = VolumeId::new("r1", "same-id");
        let y = VolumeId::new("r2", "same-id");
        let z = VolumeId::new("r1", "other-id");
        let lx = b.acquire(&x, "agent-a", TTL).expect("acquire x");
        let ly = b
            .acquire(&y, "agent-b", TTL)
            .expect("acquire y (other role)");
        b.acquire(&z, "agent-c", TTL).expect("acquire z (other id)");
        let src = ctx.dir("src");
        write_file(&src, "f", b"x", 0o644);
        b.write_back(&lx, &src).expect("write x");
        b.destroy(&z).expect("destroy z");
        assert!(b.exists(&x).expect("exists") && b.exists(&y).expect("exists"));
        let dst = ctx.dir("dst");
        assert_eq!(b.restore(&y, &dst).expect("restore y").files, 0);
        assert_eq!(b.restore(&x, &dst).expect("restore x").files, 1);
        b.release(&ly).expect("release y");
    }

    /// Holders racing to acquire one volume: exactly one gets it, the others
    /// are refused naming the winner, and the record is consistent after.
    pub fn concurrent_acquires_have_one_winner(ctx: &Ctx) {
        const RACERS: usize = 6;
        let id = vol("race");
        let barrier = Barrier::new(RACERS);
        let results: Vec<Result<Lease, StorageError>> = thread::scope(|s| {
            let handles: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (id, barrier, b) = (&id, &barrier, &ctx.backend);
                    s.spawn(move || {
                        barrier.wait();
                        b.acquire(id, &format!("agent-{i}"), TTL)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("racer panicked"))
                .collect()
        });
        let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = winners[0];
        for r in &results {
            match r {
                Ok(_) => {}
                Err(StorageError::LeaseHeld { holder, .. }) => assert_eq!(holder, &winner.holder),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        ctx.backend
            .renew(winner, TTL)
            .expect("the winner's lease is the current one");
    }

    /// Writers racing to change one record all the time (the same holder
    /// re-acquiring from several threads): every change wins a distinct
    /// generation, none is lost, and the last one is current.
    pub fn concurrent_changes_are_serialised(ctx: &Ctx) {
        const THREADS: usize = 4;
        const EACH: usize = 5;
        let id = vol("serialised");
        let barrier = Barrier::new(THREADS);
        let mut generations: Vec<u64> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (id, barrier, b) = (&id, &barrier, &ctx.backend);
                    s.spawn(move || {
                        barrier.wait();
                        (0..EACH)
                            .map(|_| b.acquire(id, "agent-a", TTL).expect("acquire").generation)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("writer panicked"))
                .collect()
        });
        generations.sort_unstable();
        let expected: Vec<u64> = (1..=(THREADS * EACH) as u64).collect();
        assert_eq!(generations, expected);
        let last = Lease {
            volume: id.clone(),
            holder: "agent-a".into(),
            generation: (THREADS * EACH) as u64,
            expires_at_unix_ms: 0,
        };
        ctx.backend
            .renew(&last, TTL)
            .expect("the last generation is current");
    }
}
