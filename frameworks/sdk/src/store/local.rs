//! [`LocalStore`]: the embedded, durable state store — a directory.
//!
//! Key `a/b/c` is the file `a/b/c~` under the directory (`~` is not a key
//! character, so a key's file never collides with the directory of the
//! keys under it). A file holds the version (8 bytes, little endian) and
//! the value; it is replaced atomically: written to a temporary file,
//! fsynced, renamed over the old one, and the directory fsynced. Calls run
//! on the blocking pool one at a time; a `flock` on `LOCK` keeps a second
//! process out of the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    under, validate_key, validate_prefix, validate_value, StateStore, StoreError, StoreFuture,
    Versioned, MAX_LIST, MAX_VALUE_BYTES,
};

const SUFFIX: char = '~';
const TEMP_MARK: &str = "~tmp-";

struct Inner {
    dir: PathBuf,
    serial: Mutex<()>,
    _lock: nix::fcntl::Flock<fs::File>,
}

/// A state store in a local directory, durable across restarts.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LocalStore {
    /// Opens (creating) the store in `dir`; refused while another process
    /// has it open. Leftover temporary files of a crash are removed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                StoreError::Unavailable(format!(
                    "{} is in use by another process ({errno}); stop it or give this instance \
                     another state directory",
                    dir.display()
                ))
            })?;
        remove_temporaries(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                serial: Mutex::new(()),
                _lock: lock,
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _serial = inner.serial.lock().unwrap_or_else(|e| e.into_inner());
            f(&inner)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a store task failed: {e}")))?
    }
}

fn remove_temporaries(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            remove_temporaries(&path)?;
        } else if name.contains(TEMP_MARK) {
            fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

impl Inner {
    fn file(&self, key: &str) -> PathBuf {
        let mut p = self.dir.clone();
        p.push(format!("{key}{SUFFIX}"));
        p
    }

    fn read(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let path = self.file(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        if bytes.len() < 8 || bytes.len() > 8 + MAX_VALUE_BYTES {
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason: format!("{} bytes is not a version and a value", bytes.len()),
            });
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&bytes[..8]);
        Ok(Some(Versioned {
            version: u64::from_le_bytes(v),
            value: bytes[8..].to_vec(),
        }))
    }

    fn write(&self, key: &str, value: &[u8], version: u64) -> Result<(), StoreError> {
        let path = self.file(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!("{name}{TEMP_MARK}{}", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(&version.to_le_bytes())
                .and_then(|()| f.write_all(value))
                .and_then(|()| f.sync_all())
                .map_err(|e| io(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            sync_dir(&parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        let path = self.file(key);
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
        sync_dir(path.parent().unwrap_or(&self.dir))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        // The prefix itself, then everything in its directory.
        if !prefix.is_empty() && self.file(prefix).is_file() {
            keys.push(prefix.to_string());
        }
        let start = if prefix.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(prefix)
        };
        let base = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        walk(&start, &base, &mut keys, prefix)?;
        keys.retain(|k| under(k, prefix));
        keys.sort();
        Ok(keys)
    }
}

fn walk(dir: &Path, base: &str, out: &mut Vec<String>, prefix: &str) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            walk(&path, &format!("{base}{name}/"), out, prefix)?;
        } else if let Some(key) = name.strip_suffix(SUFFIX) {
            if !name.contains(TEMP_MARK) && validate_key(key).is_ok() {
                out.push(format!("{base}{key}"));
                if out.len() > MAX_LIST {
                    return Err(StoreError::TooMany {
                        prefix: prefix.to_string(),
                        max: MAX_LIST,
                    });
                }
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl StateStore for LocalStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            validate_key(key)?;
            let key = key.to_string();
            self.run(move |i| i.read(&key)).await
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(key)?;
            validate_value(key, &value)?;
            let key = key.to_string();
            self.run(move |i| {
                let actual = i.read(&key)?.map(|v| v.version);
                if actual != expected {
                    return Err(StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    });
                }
                let version = actual.unwrap_or(0) + 1;
                i.write(&key, &value, version)?;
                Ok(version)
            })
            .await
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(key)?;
            validate_value(key, &value)?;
            let key = key.to_string();
            self.run(move |i| {
                let version = i.read(&key)?.map_or(0, |v| v.version) + 1;
                i.write(&key, &value, version)?;
                Ok(version)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str, expected: Option<u64>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_key(key)?;
            let key = key.to_string();
            self.run(move |i| {
                let actual = i.read(&key)?.map(|v| v.version);
                match (actual, expected) {
                    (None, _) => Ok(false),
                    (Some(a), Some(x)) if a != x => Err(StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    }),
                    _ => i.remove(&key).map(|()| true),
                }
            })
            .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let prefix = prefix.to_string();
            self.run(move |i| i.list(&prefix)).await
        })
    }
}
