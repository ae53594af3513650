//! [`LocalBackend`]: volumes kept in a directory of a local (or
//! network-mounted POSIX) file system.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Engine;
use crate::clock::{Clock, SystemClock};
use crate::store::Store;
use crate::tree::remove_path;
use crate::{Lease, StorageError, TransferStats, VolumeBackend, VolumeId};

/// Volumes under a root directory on a local file system.
///
/// Records are published by writing a temporary file, `fsync`ing it and
/// hard-linking it to the version's name, which fails if the name exists:
/// an atomic create-exclusive of a complete file. Snapshot files are
/// `fsync`ed before the record that commits them.
pub struct LocalBackend {
    engine: Engine<LocalStore>,
}

impl LocalBackend {
    /// A backend rooted at `root` (created if missing), on the system clock.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::with_clock(root, Arc::new(SystemClock))
    }

    /// A backend rooted at `root` reading time from `clock`.
    pub fn with_clock(
        root: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StorageError::io(&root, e))?;
        Ok(Self {
            engine: Engine::new(LocalStore::new(root), clock),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.engine_store().root
    }

    fn engine_store(&self) -> &LocalStore {
        self.engine.store()
    }
}

impl VolumeBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }
    fn acquire(&self, id: &VolumeId, holder: &str, ttl: Duration) -> Result<Lease, StorageError> {
        self.engine.acquire(id, holder, ttl)
    }
    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StorageError> {
        self.engine.renew(lease, ttl)
    }
    fn release(&self, lease: &Lease) -> Result<(), StorageError> {
        self.engine.release(lease)
    }
    fn restore(&self, id: &VolumeId, local_dir: &Path) -> Result<TransferStats, StorageError> {
        self.engine.restore(id, local_dir)
    }
    fn write_back(&self, lease: &Lease, local_dir: &Path) -> Result<TransferStats, StorageError> {
        self.engine.write_back(lease, local_dir)
    }
    fn exists(&self, id: &VolumeId) -> Result<bool, StorageError> {
        self.engine.exists(id)
    }
    fn destroy(&self, id: &VolumeId) -> Result<(), StorageError> {
        self.engine.destroy(id)
    }
}

pub(crate) struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn create_parent(&self, p: &Path) -> Result<(), StorageError> {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        Ok(())
    }
}

fn sync_dir(p: &Path) -> Result<(), StorageError> {
    fs::File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(p, e))
}

impl Store for LocalStore {
    fn describe(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let p = self.path(dir);
        let entries = match fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(&p, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&p, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn mkdirs(&self, dir: &str) -> Result<(), StorageError> {
        let p = self.path(dir);
        fs::create_dir_all(&p).map_err(|e| StorageError::io(&p, e))
    }

    fn read_bounded(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let p = self.path(path);
        let f = match fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&p, e)),
        };
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StorageError::io(&p, e))?;
        if buf.len() as u64 > limit {
            return Err(StorageError::Corrupt {
                path: p.display().to_string(),
                reason: format!("larger than the {limit} bytes allowed"),
            });
        }
        Ok(Some(buf))
    }

    fn put_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let p = self.path(path);
        self.create_parent(&p)?;
        let mut f = fs::File::create(&p).map_err(|e| StorageError::io(&p, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::io(&p, e))
    }

    fn put_file(&self, path: &str, src: &Path) -> Result<u64, StorageError> {
        let p = self.path(path);
        self.create_parent(&p)?;
        let mut from = fs::File::open(src).map_err(|e| StorageError::io(src, e))?;
        let mut to = fs::File::create(&p).map_err(|e| StorageError::io(&p, e))?;
        let n = io::copy(&mut from, &mut to).map_err(|e| StorageError::io(&p, e))?;
        to.sync_all().map_err(|e| StorageError::io(&p, e))?;
        Ok(n)
    }

    fn get_file(&self, path: &str, dst: &Path, expected: u64) -> Result<(), StorageError> {
        let p = self.path(path);
        let from = fs::File::open(&p).map_err(|e| StorageError::io(&p, e))?;
        let mut to = fs::File::create_new(dst).map_err(|e| StorageError::io(dst, e))?;
        let n = io::copy(&mut from.take(expected + 1), &mut to)
            .map_err(|e| StorageError::io(dst, e))?;
        if n != expected {
            return Err(StorageError::Corrupt {
                path: p.display().to_string(),
                reason: format!("holds {n} bytes where the manifest says {expected}"),
            });
        }
        Ok(())
    }

    fn remove_all(&self, path: &str) -> Result<(), StorageError> {
        let p = self.path(path);
        remove_path(&p).map_err(|e| StorageError::io(&p, e))
    }

    fn publish_record(
        &self,
        path: &str,
        tmp_dir: &str,
        bytes: &[u8],
    ) -> Result<bool, StorageError> {
        let tmp = self.path(&format!("{tmp_dir}/{}", uuid::Uuid::new_v4().simple()));
        let dst = self.path(path);
        self.create_parent(&tmp)?;
        self.create_parent(&dst)?;
        let written = fs::File::create_new(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp); // best effort
            return Err(StorageError::io(&tmp, e));
        }
        let linked = fs::hard_link(&tmp, &dst);
        let _ = fs::remove_file(&tmp); // best effort: scratch space
        match linked {
            Ok(()) => {
                if let Some(parent) = dst.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StorageError::io(&dst, e)),
        }
    }

    fn read_record(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_bounded(path, limit)
    }
}
