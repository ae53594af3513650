//! The lease and snapshot protocol, written once over a [`Store`].
//!
//! Layout of a volume below the store's root (ids encoded, see `id.rs`):
//!
//! ```text
//! <role>/<persistence id>/
//!   state/<version, 20 digits>   the volume record, one per version
//!   data/g<generation>-<nonce>/  snapshots: committed, or staging
//!   tmp/                         scratch space for publishing records
//! ```
//!
//! The record (lease, highest generation issued, committed snapshot) is
//! never modified in place: a change is published as version `n + 1` with
//! [`Store::publish_record`], which succeeds for exactly one of concurrent
//! writers. That is a compare-and-set on the version: whoever read version
//! `n`, decided, and then won `n + 1` changed the volume; everyone else
//! re-reads and decides again. Lease checks (held by another holder?
//! generation still current?) are made against the version that is being
//! replaced, so they hold at the moment of the change, including the commit
//! of a snapshot. Each record names its predecessor's nonce, which tells a
//! winner of an old, already cleaned-up version number (a writer that
//! stalled for many versions) that its win does not count. Old versions are
//! removed, keeping the last few.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::id::{validate_holder, volume_dir};
use crate::store::Store;
use crate::tree::{self, Manifest};
use crate::{Lease, StorageError, TransferStats, VolumeId, MAX_RECORD_BYTES};

/// Attempts at one change before giving up with `Contended`.
const MAX_ATTEMPTS: u32 = 32;
/// Record versions kept below the current one.
const KEEP_VERSIONS: u64 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    generation: u64,
    expires_at_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotRecord {
    /// Directory name under `data/`.
    name: String,
    generation: u64,
    stats: TransferStats,
    committed_at_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    format: u32,
    /// Random, unique to this version.
    nonce: String,
    /// The nonce of the version this one replaced.
    prev: Option<String>,
    role: String,
    persistence_id: String,
    /// The highest generation ever issued for this volume (kept across
    /// destroy, so that old leases stay fenced).
    generation: u64,
    lease: Option<LeaseRecord>,
    committed: Option<SnapshotRecord>,
    destroyed: bool,
}

impl Record {
    fn fresh(id: &VolumeId, generation: u64) -> Self {
        Record {
            format: 1,
            nonce: String::new(),
            prev: None,
            role: id.role.clone(),
            persistence_id: id.persistence_id.clone(),
            generation,
            lease: None,
            committed: None,
            destroyed: false,
        }
    }

    fn live(&self) -> Option<&Record> {
        (!self.destroyed).then_some(self)
    }

    /// Whether `lease` is this record's current lease.
    fn is_current(&self, lease: &Lease) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.generation == lease.generation && l.holder == lease.holder)
    }

    fn fenced(&self, lease: &Lease) -> StorageError {
        StorageError::Fenced {
            volume: lease.volume.clone(),
            generation: lease.generation,
            current: self.generation,
            current_holder: self.lease.as_ref().map(|l| l.holder.clone()),
        }
    }
}

/// What a change decided after reading the current record.
enum Step<T> {
    /// Nothing to write; this is the answer.
    Done(T),
    /// Publish this record; the answer if it wins.
    Write(Record, T),
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

fn version_name(v: u64) -> String {
    format!("{v:020}")
}

pub(crate) struct Engine<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: Store> Engine<S> {
    pub(crate) fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    fn state_dir(vol: &str) -> String {
        format!("{vol}/state")
    }

    fn versions(&self, vol: &str) -> Result<Vec<u64>, StorageError> {
        let mut v: Vec<u64> = self
            .store
            .list(&Self::state_dir(vol))?
            .iter()
            .filter(|n| n.len() == 20)
            .filter_map(|n| n.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    fn read_version(&self, vol: &str, v: u64) -> Result<Option<Record>, StorageError> {
        let path = format!("{}/{}", Self::state_dir(vol), version_name(v));
        let Some(bytes) = self.store.read_record(&path, MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        let rec: Record = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path: self.store.describe(&path),
            reason: format!("unparsable volume record: {e}"),
        })?;
        if rec.format != 1 {
            return Err(StorageError::Corrupt {
                path: self.store.describe(&path),
                reason: format!("unknown record format {}", rec.format),
            });
        }
        Ok(Some(rec))
    }

    /// The current version and record, if the volume has any.
    fn current(&self, id: &VolumeId, vol: &str) -> Result<Option<(u64, Record)>, StorageError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(&v) = self.versions(vol)?.last() else {
                return Ok(None);
            };
            // Gone between the listing and the read: a newer version exists.
            if let Some(rec) = self.read_version(vol, v)? {
                return Ok(Some((v, rec)));
            }
        }
        Err(StorageError::Contended {
            volume: id.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Publishes `rec` as version `v`; whether it took effect.
    fn publish(&self, vol: &str, v: u64, rec: &Record) -> Result<bool, StorageError> {
        let state = Self::state_dir(vol);
        let path = format!("{state}/{}", version_name(v));
        let bytes = serde_json::to_vec(rec).map_err(|e| StorageError::Corrupt {
            path: self.store.describe(&path),
            reason: format!("cannot encode volume record: {e}"),
        })?;
        self.store.mkdirs(&state)?;
        if !self
            .store
            .publish_record(&path, &format!("{vol}/tmp"), &bytes)?
        {
            return Ok(false);
        }
        // Won the name; it counts if it is the newest version or the next
        // version was built on it. Otherwise the name had been cleaned up
        // and this writer was far behind.
        let versions = self.versions(vol)?;
        if versions.last().is_some_and(|&max| max > v) {
            let next = self.read_version(vol, v + 1)?;
            if next.and_then(|n| n.prev).as_deref() != Some(rec.nonce.as_str()) {
                // Best effort: the stray record is below the newest version
                // and ignored by readers anyway.
                let _ = self.store.remove_record(&path);
                return Ok(false);
            }
        }
        for old in versions.into_iter().filter(|&o| o + KEEP_VERSIONS < v) {
            // Best effort: left-overs are removed by a later change.
            let _ = self
                .store
                .remove_record(&format!("{state}/{}", version_name(old)));
        }
        Ok(true)
    }

    /// Reads the record, lets `decide` choose, publishes its choice, and
    /// starts again if another writer got there first.
    fn change<T>(
        &self,
        id: &VolumeId,
        mut decide: impl FnMut(Option<&Record>) -> Result<Step<T>, StorageError>,
    ) -> Result<T, StorageError> {
        let vol = volume_dir(id);
        // A write that won but could not tell (see `publish`) is recognised
        // by its nonce on the next read.
        let mut pending: Option<(String, T)> = None;
        for _ in 0..MAX_ATTEMPTS {
            let current = self.current(id, &vol)?;
            if let (Some((nonce, _)), Some((_, rec))) = (&pending, &current) {
                if &rec.nonce == nonce || rec.prev.as_ref() == Some(nonce) {
                    if let Some((_, answer)) = pending.take() {
                        return Ok(answer);
                    }
                }
            }
            match decide(current.as_ref().map(|(_, r)| r))? {
                Step::Done(answer) => return Ok(answer),
                Step::Write(mut rec, answer) => {
                    rec.nonce = nonce();
                    rec.prev = current.as_ref().map(|(_, r)| r.nonce.clone());
                    let v = current.as_ref().map_or(1, |(v, _)| v + 1);
                    if self.publish(&vol, v, &rec)? {
                        return Ok(answer);
                    }
                    pending = Some((rec.nonce, answer));
                }
            }
        }
        Err(StorageError::Contended {
            volume: id.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    pub(crate) fn acquire(
        &self,
        id: &VolumeId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        id.validate()?;
        validate_holder(holder)?;
        let now = self.clock.now_unix_ms();
        let expires = now.saturating_add(ttl_ms(ttl));
        self.change(id, |current| {
            let mut rec = match current {
                None => Record::fresh(id, 0),
                // Created again after a destroy: empty, generations go on.
                Some(r) if r.destroyed => Record::fresh(id, r.generation),
                Some(r) => {
                    if let Some(l) = &r.lease {
                        if l.holder != holder && now < l.expires_at_unix_ms {
                            return Err(StorageError::LeaseHeld {
                                volume: id.clone(),
                                holder: l.holder.clone(),
                                generation: l.generation,
                                expires_at_unix_ms: l.expires_at_unix_ms,
                            });
                        }
                    }
                    r.clone()
                }
            };
            rec.generation += 1;
            rec.lease = Some(LeaseRecord {
                holder: holder.to_string(),
                generation: rec.generation,
                expires_at_unix_ms: expires,
            });
            let lease = Lease {
                volume: id.clone(),
                holder: holder.to_string(),
                generation: rec.generation,
                expires_at_unix_ms: expires,
            };
            Ok(Step::Write(rec, lease))
        })
    }

    pub(crate) fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StorageError> {
        let id = &lease.volume;
        id.validate()?;
        let expires = self.clock.now_unix_ms().saturating_add(ttl_ms(ttl));
        self.change(id, |current| {
            let Some(r) = current.and_then(Record::live) else {
                return Err(StorageError::NotFound(id.clone()));
            };
            if !r.is_current(lease) {
                return Err(r.fenced(lease));
            }
            let mut rec = r.clone();
            if let Some(l) = rec.lease.as_mut() {
                l.expires_at_unix_ms = expires;
            }
            let renewed = Lease {
                expires_at_unix_ms: expires,
                ..lease.clone()
            };
            Ok(Step::Write(rec, renewed))
        })
    }

    pub(crate) fn release(&self, lease: &Lease) -> Result<(), StorageError> {
        let id = &lease.volume;
        id.validate()?;
        self.change(id, |current| {
            let Some(r) = current.and_then(Record::live) else {
                // Destroyed or never there: there is no lease to give up.
                return Ok(Step::Done(()));
            };
            if r.is_current(lease) {
                let mut rec = r.clone();
                rec.lease = None;
                return Ok(Step::Write(rec, ()));
            }
            if r.lease.is_none() && r.generation == lease.generation {
                return Ok(Step::Done(())); // released already
            }
            Err(r.fenced(lease))
        })
    }

    pub(crate) fn exists(&self, id: &VolumeId) -> Result<bool, StorageError> {
        id.validate()?;
        let vol = volume_dir(id);
        Ok(self.current(id, &vol)?.is_some_and(|(_, r)| !r.destroyed))
    }

    pub(crate) fn restore(
        &self,
        id: &VolumeId,
        local_dir: &Path,
    ) -> Result<TransferStats, StorageError> {
        id.validate()?;
        let vol = volume_dir(id);
        let mut last_err = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some((_, rec)) = self.current(id, &vol)? else {
                return Err(StorageError::NotFound(id.clone()));
            };
            if rec.destroyed {
                return Err(StorageError::NotFound(id.clone()));
            }
            let Some(snap) = &rec.committed else {
                return tree::restore_into(&self.store, None, local_dir, &nonce());
            };
            let snapshot = format!("{vol}/data/{}", snap.name);
            let result = match tree::read_manifest(&self.store, &snapshot)? {
                Some(m) => {
                    tree::restore_into(&self.store, Some((&snapshot, &m)), local_dir, &nonce())
                }
                None => Err(StorageError::Corrupt {
                    path: self.store.describe(&snapshot),
                    reason: "the committed snapshot has no manifest".into(),
                }),
            };
            match result {
                Ok(stats) => return Ok(stats),
                Err(e) => {
                    // A newer commit may have replaced (and removed) the
                    // snapshot while it was read: read the record again.
                    let now = self.current(id, &vol)?;
                    let same = now
                        .as_ref()
                        .and_then(|(_, r)| r.committed.as_ref())
                        .is_some_and(|s| s.name == snap.name);
                    if same {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(StorageError::Contended {
            volume: id.clone(),
            attempts: MAX_ATTEMPTS,
        }))
    }

    pub(crate) fn write_back(
        &self,
        lease: &Lease,
        local_dir: &Path,
    ) -> Result<TransferStats, StorageError> {
        let id = &lease.volume;
        id.validate()?;
        let vol = volume_dir(id);
        // Fail early rather than upload for nothing; the commit checks again.
        match self.current(id, &vol)? {
            Some((_, r)) if !r.destroyed => {
                if !r.is_current(lease) {
                    return Err(r.fenced(lease));
                }
            }
            _ => return Err(StorageError::NotFound(id.clone())),
        }
        let name = format!("g{:020}-{}", lease.generation, nonce());
        let snapshot = format!("{vol}/data/{name}");
        let manifest: Manifest = match tree::upload(&self.store, &snapshot, local_dir) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.store.remove_all(&snapshot); // best effort
                return Err(e);
            }
        };
        let stats = manifest.stats();
        let now = self.clock.now_unix_ms();
        let mut replaced: Option<String> = None;
        let committed = self.change(id, |current| {
            let Some(r) = current.and_then(Record::live) else {
                return Err(StorageError::NotFound(id.clone()));
            };
            if !r.is_current(lease) {
                return Err(r.fenced(lease));
            }
            let mut rec = r.clone();
            replaced = r.committed.as_ref().map(|s| s.name.clone());
            rec.committed = Some(SnapshotRecord {
                name: name.clone(),
                generation: lease.generation,
                stats,
                committed_at_unix_ms: now,
            });
            Ok(Step::Write(rec, stats))
        });
        match committed {
            Ok(stats) => {
                self.remove_old_snapshots(&vol, lease.generation, &name, replaced.as_deref());
                Ok(stats)
            }
            Err(e) => {
                // Never remove what the record points at: a commit that took
                // effect but could not be told apart from a lost one (see
                // `publish`) may have been built on by others meanwhile.
                let committed_now = self
                    .current(id, &vol)
                    .ok()
                    .flatten()
                    .and_then(|(_, r)| r.committed)
                    .is_some_and(|s| s.name == name);
                if committed_now {
                    return Ok(stats);
                }
                let _ = self.store.remove_all(&snapshot); // best effort
                Err(e)
            }
        }
    }

    /// Best effort: the snapshot just replaced, and what writers of older
    /// generations left behind (they can never commit it).
    fn remove_old_snapshots(&self, vol: &str, generation: u64, keep: &str, replaced: Option<&str>) {
        let data = format!("{vol}/data");
        let Ok(names) = self.store.list(&data) else {
            return;
        };
        for n in names {
            if n == keep {
                continue;
            }
            let older = n
                .strip_prefix('g')
                .and_then(|r| r.split('-').next())
                .and_then(|g| g.parse::<u64>().ok())
                .is_some_and(|g| g < generation);
            if older || Some(n.as_str()) == replaced {
                let _ = self.store.remove_all(&format!("{data}/{n}"));
            }
        }
    }

    pub(crate) fn destroy(&self, id: &VolumeId) -> Result<(), StorageError> {
        id.validate()?;
        let vol = volume_dir(id);
        let tombstone = self.change(id, |current| match current {
            None => Ok(Step::Done(None)),
            Some(r) => {
                let mut rec = Record::fresh(id, r.generation);
                rec.destroyed = true;
                // Even when destroyed already: a crash may have left data.
                Ok(Step::Write(rec, Some(())))
            }
        })?;
        if tombstone.is_none() {
            return Ok(());
        }
        self.store.remove_all(&format!("{vol}/data"))?;
        self.store.remove_all(&format!("{vol}/tmp"))?;
        let versions = self.versions(&vol)?;
        if let Some((&newest, older)) = versions.split_last() {
            for &v in older.iter().filter(|&&v| v < newest) {
                self.store.remove_record(&format!(
                    "{}/{}",
                    Self::state_dir(&vol),
                    version_name(v)
                ))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::local::LocalStore;

    fn engine(dir: &Path) -> Engine<LocalStore> {
        Engine::new(
            LocalStore::new(dir.to_path_buf()),
            Arc::new(ManualClock::new(1_000_000)),
        )
    }

    /// A writer that stalled while many versions went by and then wins the
    /// (cleaned-up) name it was aiming at must learn that its write does
    /// not count, and leave nothing behind.
    #[test]
    fn a_win_of_a_pruned_version_name_does_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine(dir.path());
        let id = VolumeId::new("r", "v");
        let mut lease = e
            .acquire(&id, "a", Duration::from_secs(10))
            .expect("acquire");
        // Read by the stalled writer: version 1.
        let vol = volume_dir(&id);
        let (v1, stale_view) = e.current(&id, &vol).expect("read").expect("exists");
        assert_eq!(v1, 1);
        for _ in 0..10 {
            lease = e.renew(&lease, Duration::from_secs(10)).expect("renew");
        }
        let versions = e.versions(&vol).expect("versions");
        assert!(!versions.contains(&2), "version 2 was pruned: {versions:?}");

        let mut rec = stale_view.clone();
        rec.lease = None;
        rec.nonce = nonce();
        rec.prev = Some(stale_view.nonce.clone());
        assert!(!e.publish(&vol, 2, &rec).expect("publish"));
        assert!(!e.versions(&vol).expect("versions").contains(&2));
        // The volume is as the live writer left it.
        let (_, now) = e.current(&id, &vol).expect("read").expect("exists");
        assert!(now.is_current(&lease));
    }
}
