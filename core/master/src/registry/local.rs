//! The embedded registry of a single master: one JSON file in a directory,
//! replaced atomically on every write.
//!
//! A write goes to `registry.json.tmp`, which is fsynced, renamed over
//! `registry.json`, and then the directory is fsynced; only then does
//! [`Registry::apply`] return. A crash at any point leaves either the
//! previous file or the new one, never a mix; a leftover temp file is
//! ignored (and removed) on recovery. The directory is locked
//! (`registry.lock`, `flock`) for the life of the store so two masters never
//! share it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::future::BoxFuture;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::Mutex;

use super::codec;
use super::{Operation, Registry, RegistryError, RegistryState};

/// The registry file's name inside the store's directory.
pub const FILE_NAME: &str = "registry.json";
/// The temp file a write goes through.
const TEMP_NAME: &str = "registry.json.tmp";
/// The lock file's name.
const LOCK_NAME: &str = "registry.lock";

/// The embedded on-disk registry of a single master.
pub struct LocalRegistry {
    dir: PathBuf,
    file: PathBuf,
    temp: PathBuf,
    /// The last state read or written, with its version; `None` when it
    /// must be read again (before the first recovery, and after a write
    /// whose outcome is unknown).
    cache: Mutex<Option<Cached>>,
    _lock: Flock<File>,
}

struct Cached {
    version: u64,
    state: RegistryState,
}

impl fmt::Debug for LocalRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRegistry")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LocalRegistry {
    /// Opens (creating it if needed) the store in `dir` and locks it.
    /// Nothing is read until [`Registry::recover`] or [`Registry::apply`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Err(RegistryError::Locked { path: lock_path }),
            Err((_, errno)) => {
                return Err(RegistryError::Io {
                    path: lock_path,
                    source: errno.into(),
                })
            }
        };
        Ok(Self {
            file: dir.join(FILE_NAME),
            temp: dir.join(TEMP_NAME),
            dir,
            cache: Mutex::new(None),
            _lock: lock,
        })
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    async fn load(&self) -> Result<Cached, RegistryError> {
        let file = self.file.clone();
        let temp = self.temp.clone();
        let started = Instant::now();
        let (version, state) = tokio::task::spawn_blocking(move || read_file(&file, &temp))
            .await
            .map_err(|e| RegistryError::Io {
                path: self.file.clone(),
                source: io::Error::other(e.to_string()),
            })??;
        tracing::info!(
            path = %self.file.display(),
            version,
            agents = state.agents.len(),
            unreachable = state.unreachable.len(),
            gone = state.gone.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "registry recovered"
        );
        Ok(Cached { version, state })
    }
}

/// Reads the registry file; a missing file is an empty registry at version
/// 0. A leftover temp file is from a write that never completed (and was
/// never acknowledged): it is removed.
fn read_file(file: &Path, temp: &Path) -> Result<(u64, RegistryState), RegistryError> {
    if temp.exists() {
        tracing::warn!(
            path = %temp.display(),
            "ignoring a temp file left by an interrupted registry write"
        );
        if let Err(error) = fs::remove_file(temp) {
            tracing::warn!(path = %temp.display(), %error, "cannot remove the leftover temp file");
        }
    }
    match fs::read(file) {
        Ok(bytes) => codec::decode(file, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, RegistryState::default())),
        Err(source) => Err(RegistryError::Io {
            path: file.to_owned(),
            source,
        }),
    }
}

/// Writes `bytes` to `file` durably and atomically through `temp`.
fn write_file(dir: &Path, file: &Path, temp: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(io_error(temp))?;
    out.write_all(bytes).map_err(io_error(temp))?;
    out.sync_all().map_err(io_error(temp))?;
    drop(out);
    fs::rename(temp, file).map_err(io_error(file))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

impl Registry for LocalRegistry {
    fn recover(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            *cache = None;
            let loaded = self.load().await?;
            let state = loaded.state.clone();
            *cache = Some(loaded);
            Ok(state)
        })
    }

    fn apply(&self, ops: Vec<Operation>) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let current = match cache.take() {
                Some(current) => current,
                None => self.load().await?,
            };
            let mut next = current.state.clone();
            if let Err(error) = next.apply_all(&ops) {
                *cache = Some(current);
                return Err(error);
            }
            if next == current.state {
                *cache = Some(current);
                return Ok(next);
            }
            let version = current.version + 1;
            drop(current);
            // The cache stays empty until the write is known to be durable:
            // after a failed (or cancelled) write the next call reads the
            // file again, whichever state it holds.
            let (dir, file, temp) = (self.dir.clone(), self.file.clone(), self.temp.clone());
            let started = Instant::now();
            let written = tokio::task::spawn_blocking(move || {
                let bytes = codec::encode(version, &next)?;
                write_file(&dir, &file, &temp, &bytes)?;
                Ok::<_, RegistryError>((next, bytes.len()))
            })
            .await
            .map_err(|e| RegistryError::Io {
                path: self.file.clone(),
                source: io::Error::other(e.to_string()),
            })
            .and_then(|r| r);
            match written {
                Ok((state, bytes)) => {
                    tracing::debug!(
                        path = %self.file.display(),
                        version,
                        ops = ops.len(),
                        bytes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "registry written"
                    );
                    let result = state.clone();
                    *cache = Some(Cached { version, state });
                    Ok(result)
                }
                Err(error) => {
                    tracing::warn!(
                        path = %self.file.display(),
                        version,
                        %error,
                        "registry write failed"
                    );
                    Err(error)
                }
            }
        })
    }
}
