//! The few operations a backend's storage must offer; the lease and
//! snapshot protocol ([`crate::backend`]) is written once on top of them.
//!
//! Paths are relative to the store's root, with `/` separators, and made
//! only of names this crate generates (encoded ids, numbers, nonces).

use std::path::Path;

use crate::StorageError;

pub(crate) trait Store: Send + Sync {
    /// A full, human-readable location for `rel`, for error messages.
    fn describe(&self, rel: &str) -> String;

    /// The names in directory `dir`; empty if it does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;

    /// Creates `dir` and its parents.
    fn mkdirs(&self, dir: &str) -> Result<(), StorageError>;

    /// A whole file of at most `limit` bytes; `None` if it does not exist,
    /// [`StorageError::Corrupt`] if it is larger.
    fn read_bounded(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// Writes (or overwrites) a file, creating its parents; durable when this
    /// returns.
    fn put_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// Copies the local file `src` to `path`, creating its parents; durable
    /// when this returns. Returns the bytes copied.
    fn put_file(&self, path: &str, src: &Path) -> Result<u64, StorageError>;

    /// Copies `path` into the new local file `dst`, which must end up exactly
    /// `expected` bytes long ([`StorageError::Corrupt`] otherwise).
    fn get_file(&self, path: &str, dst: &Path, expected: u64) -> Result<(), StorageError>;

    /// Removes a file or a directory tree; nothing to remove is fine.
    fn remove_all(&self, path: &str) -> Result<(), StorageError>;

    /// Creates the record `path` with `bytes` if, and only if, it does not
    /// exist yet, atomically: of concurrent calls for one path exactly one
    /// returns `true`. `tmp_dir` is scratch space on the same store.
    fn publish_record(&self, path: &str, tmp_dir: &str, bytes: &[u8])
        -> Result<bool, StorageError>;

    /// Reads a record written by [`Store::publish_record`].
    fn read_record(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// Removes a record written by [`Store::publish_record`].
    fn remove_record(&self, path: &str) -> Result<(), StorageError> {
        self.remove_all(path)
    }
}
