//! An archive of finished tasks' log files, behind one small blocking
//! trait, [`LogArchive`].
//!
//! The agent copies the `stdout*` and `stderr*` files of every finished
//! executor run into the archive given by its `--task_log_archive` flag;
//! readers (the workloads framework, operators' tools) find them again with
//! [`LogArchive::list`] and page through them with [`LogArchive::read`].
//!
//! # Keys
//!
//! A file is stored under a *key*: a relative, `/`-separated path such as
//! `<framework_id>/<executor_id>/<container_id>/stdout.1`. Each component is
//! 1..=255 bytes, not `.` or `..`, without NUL, `\` or other control
//! characters, and does not start with [`TEMP_PREFIX`]; the whole key is at
//! most [`MAX_KEY_BYTES`] bytes. An absolute path, an empty component (`a//b`,
//! a trailing `/`) or anything else the rules refuse is a
//! [`StorageError::InvalidKey`] naming the key and the rule, from every call.
//! A key names a file, and its components before the last name directories:
//! one key cannot be both (`a` and `a/b`).
//!
//! # The agent's layout
//!
//! ```text
//! <framework_id>/<executor_id>/<container_id>/stdout            current file at the end of the run
//! <framework_id>/<executor_id>/<container_id>/stdout.1 .. N     rotated files, .1 the newest
//! <framework_id>/<executor_id>/<container_id>/stderr[.N]        likewise
//! <framework_id>/<executor_id>/<container_id>/tasks/<task_id>/stdout[.N], stderr[.N]
//!                                                               task sandboxes of task groups
//! ```
//!
//! The container id is the run's sandbox directory name (`runs/<container_id>`)
//! and `MESOS_CONTAINER_ID` of the executor; a command task's executor id is
//! its task id. File names are kept as they were in the sandbox.
//!
//! # Backends
//!
//! * [`LocalArchive`]: a directory (`file:///var/log/corral-archive` or
//!   `/var/log/corral-archive`). Files are written to a temporary name,
//!   fsynced and renamed, so a reader never sees half a file.
//! * `HdfsArchive` (cargo feature `hdfs`): a directory in HDFS through
//!   Hadoop's own client. A `:` or `%` in a key is stored as `%3A` / `%25`
//!   (HDFS refuses `:` in names); keys are given and listed unencoded.
//!
//! [`open`] picks the backend from a URI. Every backend passes the suite in
//! [`conformance`].

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::StorageError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Most bytes one [`LogArchive::read`] returns; larger lengths are clamped.
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;
/// Prefix of the temporary names files are written under before they are
/// renamed to their key; a key component may not start with it.
pub const TEMP_PREFIX: &str = ".corral-part-";

/// A place that keeps archived log files by key. Blocking: call it from
/// `tokio::task::spawn_blocking` in async code.
pub trait LogArchive: Send + Sync {
    /// Short name for logs: `"local"`, `"hdfs"`.
    fn name(&self) -> &'static str;

    /// Stores a copy of the local file `local_path` under `key`, replacing
    /// what was stored there; returns the number of bytes stored. Readers
    /// see the old content or the new one, never a partial file (on HDFS
    /// the key is briefly absent while it is replaced).
    fn put(&self, key: &str, local_path: &Path) -> Result<u64, StorageError>;

    /// The keys of every file stored below `prefix`, a key-like directory
    /// path (`<framework_id>/<executor_id>`; a trailing `/` is allowed; `""`
    /// lists the whole archive), recursively, sorted. A prefix under which
    /// nothing is stored gives an empty list.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Up to `length` bytes (at most [`MAX_READ_BYTES`]) of the file under
    /// `key` starting at byte `offset`; fewer at the end of the file and
    /// none at or past its end. [`StorageError::NoSuchKey`] when nothing is
    /// stored under `key`.
    fn read(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError>;

    /// The size in bytes of the file under `key`;
    /// [`StorageError::NoSuchKey`] when nothing is stored there.
    fn size(&self, key: &str) -> Result<u64, StorageError>;
}

impl<A: LogArchive + ?Sized> LogArchive for Box<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn put(&self, key: &str, local_path: &Path) -> Result<u64, StorageError> {
        (**self).put(key, local_path)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        (**self).list(prefix)
    }
    fn read(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        (**self).read(key, offset, length)
    }
    fn size(&self, key: &str) -> Result<u64, StorageError> {
        (**self).size(key)
    }
}

impl<A: LogArchive + ?Sized> LogArchive for std::sync::Arc<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn put(&self, key: &str, local_path: &Path) -> Result<u64, StorageError> {
        (**self).put(key, local_path)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        (**self).list(prefix)
    }
    fn read(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        (**self).read(key, offset, length)
    }
    fn size(&self, key: &str) -> Result<u64, StorageError> {
        (**self).size(key)
    }
}

/// Checks `key` against the rules in the [module docs](self).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason: &'static str| StorageError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad("longer than 4096 bytes"));
    }
    if key.starts_with('/') {
        return Err(bad(
            "absolute paths are not keys; give a path relative to the archive",
        ));
    }
    for component in key.split('/') {
        validate_component(component).map_err(bad)?;
    }
    Ok(())
}

fn validate_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component ('//' or a trailing '/')");
    }
    if c == "." || c == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if c.len() > 255 {
        return Err("a path component is longer than 255 bytes");
    }
    if c.chars().any(|ch| ch.is_control() || ch == '\\') {
        return Err("NUL, '\\' and control characters are not allowed");
    }
    if c.starts_with(TEMP_PREFIX) {
        return Err("components starting with '.corral-part-' are reserved");
    }
    Ok(())
}

/// Validates a listing prefix and returns it without its trailing `/`
/// (`""` for the whole archive).
fn normalize_prefix(prefix: &str) -> Result<&str, StorageError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok("");
        }
        return Err(StorageError::InvalidKey {
            key: prefix.to_string(),
            reason: "absolute paths are not keys; give a path relative to the archive",
        });
    }
    validate_key(trimmed).map_err(|e| match e {
        StorageError::InvalidKey { reason, .. } => StorageError::InvalidKey {
            key: prefix.to_string(),
            reason,
        },
        other => other,
    })?;
    Ok(trimmed)
}

fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Opens the archive a URI names: `file:///dir` or an absolute path is a
/// [`LocalArchive`] (the directory is created); `hdfs://namenode:8020/dir`
/// is an `HdfsArchive`, which needs the cargo feature `hdfs` (without it,
/// [`StorageError::Unsupported`] says so). Anything else is refused.
/// Blocking (HDFS connects here).
pub fn open(uri: &str) -> Result<Box<dyn LogArchive>, StorageError> {
    let uri = uri.trim();
    if uri.starts_with('/') {
        return Ok(Box::new(LocalArchive::new(uri)?));
    }
    if let Some(rest) = uri.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(StorageError::Unsupported(format!(
                "log archive {uri:?}: a file:// URI needs an absolute path on this host, such \
                 as file:///var/log/corral-archive"
            )));
        }
        return Ok(Box::new(LocalArchive::new(path)?));
    }
    if uri.starts_with("hdfs://") {
        #[cfg(feature = "hdfs")]
        {
            return Ok(Box::new(HdfsArchive::from_uri(uri)?));
        }
        #[cfg(not(feature = "hdfs"))]
        {
            return Err(StorageError::Unsupported(format!(
                "log archive {uri:?}: hdfs:// archives need a build with the cargo feature \
                 `hdfs` (Hadoop's client over JNI); this one was built without it"
            )));
        }
    }
    Err(StorageError::Unsupported(format!(
        "log archive {uri:?}: expected file:///dir, an absolute path, or hdfs://namenode:port/dir"
    )))
}

// ---------------------------------------------------------------------------
// Local directory
// ---------------------------------------------------------------------------

/// Archived files in a directory of a local (or network-mounted POSIX) file
/// system, each key a path below the root.
#[derive(Debug, Clone)]
pub struct LocalArchive {
    root: PathBuf,
}

impl LocalArchive {
    /// An archive rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StorageError::io(&root, e))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn open_file(&self, key: &str) -> Result<(fs::File, u64), StorageError> {
        let path = self.path_of(key)?;
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NoSuchKey(key.to_string()))
            }
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let meta = file.metadata().map_err(|e| StorageError::io(&path, e))?;
        if !meta.is_file() {
            return Err(StorageError::NoSuchKey(key.to_string()));
        }
        Ok((file, meta.len()))
    }
}

impl LogArchive for LocalArchive {
    fn name(&self) -> &'static str {
        "local"
    }

    fn put(&self, key: &str, local_path: &Path) -> Result<u64, StorageError> {
        let dst = self.path_of(key)?;
        let mut from = fs::File::open(local_path).map_err(|e| StorageError::io(local_path, e))?;
        let dir = dst.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let tmp = dir.join(temp_name());
        let result = (|| {
            let mut to = fs::File::create_new(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
            let n = io::copy(&mut from, &mut to).map_err(|e| StorageError::io(&tmp, e))?;
            to.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
            fs::rename(&tmp, &dst).map_err(|e| StorageError::io(&dst, e))?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp); // best effort
        }
        result
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = normalize_prefix(prefix)?;
        let mut out = Vec::new();
        let mut pending = vec![prefix.to_string()];
        while let Some(rel) = pending.pop() {
            let dir = if rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&rel)
            };
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                // Nothing stored there, or a file (not a directory).
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    continue
                }
                Err(e) => return Err(StorageError::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue; // never written by put (keys are UTF-8)
                };
                if validate_component(&name).is_err() {
                    continue; // temporary files, or nothing put wrote
                }
                let ty = match entry.file_type() {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(entry.path(), e)),
                };
                let key = join_key(&rel, &name);
                if ty.is_dir() {
                    pending.push(key);
                } else if ty.is_file() {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        let (mut file, len) = self.open_file(key)?;
        if offset >= len || length == 0 {
            return Ok(Vec::new());
        }
        let path = self.root.join(key);
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| StorageError::io(&path, e))?;
        let want = length.min(MAX_READ_BYTES).min(len - offset);
        let mut buf = Vec::with_capacity(want as usize);
        file.take(want)
            .read_to_end(&mut buf)
            .map_err(|e| StorageError::io(&path, e))?;
        Ok(buf)
    }

    fn size(&self, key: &str) -> Result<u64, StorageError> {
        self.open_file(key).map(|(_, len)| len)
    }
}

// ---------------------------------------------------------------------------
// HDFS
// ---------------------------------------------------------------------------

#[cfg(feature = "hdfs")]
pub use self::hdfs_archive::HdfsArchive;

#[cfg(feature = "hdfs")]
mod hdfs_archive {
    use super::*;
    use crate::hdfs::{connect_client, root_cause, HdfsConfig};
    use std::io::Write;

    const COPY_BUFFER: usize = 1 << 20;

    /// Archived files in a directory of HDFS (or any file system Hadoop's
    /// client reaches), through Hadoop's own client. Needs the Hadoop client
    /// jars on `CLASSPATH` at run time (`eval "$(scripts/hadoop-env.sh)"`).
    pub struct HdfsArchive {
        client: hdrs::Client,
        name_node: String,
        root: String,
    }

    impl HdfsArchive {
        /// Connects to `config.name_node` and creates `config.root`.
        pub fn connect(config: HdfsConfig) -> Result<Self, StorageError> {
            let describe = format!("log archive {} on {}", config.root, config.name_node);
            let client = connect_client(&config, &describe)?;
            let archive = Self {
                client,
                name_node: config.name_node,
                root: config.root,
            };
            let root = archive.abs("");
            archive
                .client
                .create_dir(&root)
                .map_err(|e| archive.err(&root, "cannot create directory", e))?;
            Ok(archive)
        }

        /// Parses `uri` ([`HdfsConfig::parse`]: `hdfs://nn:8020/dir`,
        /// `file:///dir` through Hadoop's local file system, or a path in
        /// `fs.defaultFS`) and connects.
        pub fn from_uri(uri: &str) -> Result<Self, StorageError> {
            Self::connect(HdfsConfig::parse(uri)?)
        }

        /// Absolute path of an (encoded) relative path; `""` is the root.
        fn abs(&self, rel: &str) -> String {
            match (self.root.is_empty(), rel.is_empty()) {
                (true, true) => "/".to_string(),
                (false, true) => self.root.clone(),
                _ => format!("{}/{rel}", self.root),
            }
        }

        fn describe(&self, abs: &str) -> String {
            if self.name_node == "default" {
                format!("{abs} (in fs.defaultFS)")
            } else {
                format!("{}{abs}", self.name_node.trim_end_matches('/'))
            }
        }

        fn err(&self, abs: &str, what: &str, e: io::Error) -> StorageError {
            StorageError::Hdfs {
                path: self.describe(abs),
                message: format!("{what}: {e}{}", root_cause()),
            }
        }

        fn key_path(&self, key: &str) -> Result<String, StorageError> {
            validate_key(key)?;
            Ok(self.abs(&encode(key)))
        }

        fn stat_file(&self, key: &str) -> Result<(String, u64), StorageError> {
            let abs = self.key_path(key)?;
            match self.client.metadata(&abs) {
                Ok(m) if m.is_file() => Ok((abs, m.len())),
                Ok(_) => Err(StorageError::NoSuchKey(key.to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(StorageError::NoSuchKey(key.to_string()))
                }
                Err(e) => Err(self.err(&abs, "cannot stat", e)),
            }
        }

        fn exists(&self, abs: &str) -> Result<bool, StorageError> {
            match self.client.metadata(abs) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(self.err(abs, "cannot stat", e)),
            }
        }
    }

    /// `:` and `%` of a key as stored (HDFS refuses `:` in names).
    fn encode(key: &str) -> String {
        key.replace('%', "%25").replace(':', "%3A")
    }

    fn decode(name: &str) -> String {
        name.replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%25", "%")
    }

    impl LogArchive for HdfsArchive {
        fn name(&self) -> &'static str {
            "hdfs"
        }

        fn put(&self, key: &str, local_path: &Path) -> Result<u64, StorageError> {
            let dst = self.key_path(key)?;
            let mut from =
                fs::File::open(local_path).map_err(|e| StorageError::io(local_path, e))?;
            let dir = match dst.rfind('/') {
                Some(0) | None => "/".to_string(),
                Some(i) => dst[..i].to_string(),
            };
            self.client
                .create_dir(&dir)
                .map_err(|e| self.err(&dir, "cannot create directory", e))?;
            let tmp = format!("{}/{}", dir.trim_end_matches('/'), temp_name());
            let upload = (|| {
                let mut to = self
                    .client
                    .open_file()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .map_err(|e| self.err(&tmp, "cannot create file", e))?;
                let mut buf = vec![0u8; COPY_BUFFER];
                let mut total = 0u64;
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(StorageError::io(local_path, e)),
                    };
                    to.write_all(&buf[..n])
                        .map_err(|e| self.err(&tmp, "cannot write", e))?;
                    total += n as u64;
                }
                to.try_close()
                    .map_err(|e| self.err(&tmp, "cannot close (the data may not be stored)", e))?;
                // HDFS does not rename onto an existing file.
                if self.exists(&dst)? {
                    self.client
                        .remove_file(&dst)
                        .map_err(|e| self.err(&dst, "cannot replace", e))?;
                }
                self.client
                    .rename_file(&tmp, &dst)
                    .map_err(|e| self.err(&dst, &format!("cannot rename {tmp} to it"), e))?;
                Ok(total)
            })();
            if upload.is_err() {
                let _ = self.client.remove_file(&tmp); // best effort
            }
            upload
        }

        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            let prefix = normalize_prefix(prefix)?;
            // Hadoop lists a file as itself: a prefix naming a file (or
            // nothing) has nothing below it.
            let top = self.abs(&encode(prefix));
            match self.client.metadata(&top) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Vec::new()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.err(&top, "cannot stat", e)),
            }
            let mut out = Vec::new();
            let mut pending = vec![prefix.to_string()];
            while let Some(rel) = pending.pop() {
                let abs = self.abs(&encode(&rel));
                let entries = match self.client.read_dir(&abs) {
                    Ok(entries) => entries,
                    // Removed meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.err(&abs, "cannot list directory", e)),
                };
                for meta in entries.into_inner() {
                    let Some(stored) = meta.path().trim_end_matches('/').rsplit('/').next() else {
                        continue;
                    };
                    let name = decode(stored);
                    if validate_component(&name).is_err() {
                        continue;
                    }
                    let key = join_key(&rel, &name);
                    if meta.is_dir() {
                        pending.push(key);
                    } else if meta.is_file() {
                        out.push(key);
                    }
                }
            }
            out.sort();
            Ok(out)
        }

        fn read(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
            let (abs, len) = self.stat_file(key)?;
            if offset >= len || length == 0 {
                return Ok(Vec::new());
            }
            let want = length.min(MAX_READ_BYTES).min(len - offset) as usize;
            let file = self
                .client
                .open_file()
                .read(true)
                .open(&abs)
                .map_err(|e| self.err(&abs, "cannot open", e))?;
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.err(&abs, "cannot read", e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        }

        fn size(&self, key: &str) -> Result<u64, StorageError> {
            self.stat_file(key).map(|(_, len)| len)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn encodes_colons_and_percents_reversibly() {
            for key in ["a:b/c%3Ad", "plain/stdout", "%25:%"] {
                assert_eq!(decode(&encode(key)), key);
                assert!(!encode(key).contains(':'));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

pub mod conformance {
    //! The behaviour every [`LogArchive`] must show, as a suite a backend
    //! runs against itself with real files. A backend's test file generates
    //! one `#[test]` per case:
    //!
    //! ```text
    //! corral_storage::log_archive_conformance_tests!(|scratch: &std::path::Path| {
    //!     corral_storage::archive::LocalArchive::new(scratch.join("archive")).unwrap()
    //! });
    //! ```
    //!
    //! [`run_all`] runs every case in one call:
    //!
    //! ```
    //! use corral_storage::archive::{conformance, LocalArchive};
    //!
    //! conformance::run_all(&|scratch: &std::path::Path| {
    //!     LocalArchive::new(scratch.join("archive")).unwrap()
    //! });
    //! ```

    use std::fs;
    use std::path::{Path, PathBuf};

    use super::{LogArchive, MAX_READ_BYTES};
    use crate::StorageError;

    /// Where a case runs: a fresh archive and a scratch directory.
    pub struct Ctx {
        pub archive: Box<dyn LogArchive>,
        scratch: tempfile::TempDir,
    }

    impl Ctx {
        /// Builds an archive with `make(scratch dir)`.
        pub fn new<A: LogArchive + 'static>(make: &dyn Fn(&Path) -> A) -> Self {
            let scratch = tempfile::Builder::new()
                .prefix("corral-archive-conformance-")
                .tempdir()
                .expect("create a scratch directory");
            let archive = make(scratch.path());
            Ctx {
                archive: Box::new(archive),
                scratch,
            }
        }

        /// A local file with `content`, under the scratch directory.
        pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
            let dir = self.scratch.path().join("local");
            fs::create_dir_all(&dir).expect("create a local directory");
            let p = dir.join(name);
            fs::write(&p, content).expect("write a local file");
            p
        }
    }

    /// A case of the suite.
    pub type Case = fn(&Ctx);

    #[doc(hidden)]
    #[macro_export]
    macro_rules! __log_archive_cases {
        ($callback:ident ! ($($args:tt)*)) => {
            $crate::$callback!(
                $($args)*;
                put_then_read_back,
                empty_and_large_files,
                read_ranges,
                put_replaces,
                missing_keys,
                list_is_recursive_sorted_and_scoped,
                invalid_keys_are_refused,
                unusual_valid_keys_work,
                put_of_a_missing_local_file_stores_nothing,
            );
        };
    }

    #[doc(hidden)]
    #[macro_export]
    macro_rules! __log_archive_case_list {
        (; $($case:ident),* $(,)?) => {
            /// Every case, by name.
            pub const CASES: &[(&str, Case)] = &[$((stringify!($case), cases::$case)),*];
        };
    }

    __log_archive_cases!(__log_archive_case_list!());

    /// Runs one case on a fresh archive.
    pub fn run_case<A: LogArchive + 'static>(case: Case, make: &dyn Fn(&Path) -> A) {
        case(&Ctx::new(make));
    }

    /// Runs every case, each on a fresh archive.
    pub fn run_all<A: LogArchive + 'static>(make: &dyn Fn(&Path) -> A) {
        for (name, case) in CASES {
            eprintln!("log archive conformance: {name}");
            run_case(*case, make);
        }
    }

    /// Generates one `#[test]` per conformance case for the archive that
    /// `$make` (`Fn(&Path) -> impl LogArchive`) builds.
    #[macro_export]
    macro_rules! log_archive_conformance_tests {
        ($make:expr) => {
            $crate::__log_archive_cases!(__log_archive_conformance_tests!($make));
        };
    }

    #[doc(hidden)]
    #[macro_export]
    macro_rules! __log_archive_conformance_tests {
        ($make:expr; $($case:ident),* $(,)?) => {
            $(
                #[test]
                fn $case() {
                    $crate::archive::conformance::run_case(
                        $crate::archive::conformance::cases::$case,
                        &$make,
                    );
                }
            )*
        };
    }

    fn read_all(a: &dyn LogArchive, key: &str) -> Vec<u8> {
        let size = a.size(key).expect("size");
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let chunk = a.read(key, out.len() as u64, MAX_READ_BYTES).expect("read");
            assert!(!chunk.is_empty(), "read made no progress on {key}");
            out.extend(chunk);
        }
        out
    }

    fn expect_no_such_key<T: std::fmt::Debug>(r: Result<T, StorageError>, key: &str) {
        match r {
            Err(StorageError::NoSuchKey(k)) => assert_eq!(k, key),
            other => panic!("expected NoSuchKey({key:?}), got {other:?}"),
        }
    }

    /// The cases.
    pub mod cases {
        use super::*;

        pub fn put_then_read_back(ctx: &Ctx) {
            let a = &*ctx.archive;
            let src = ctx.file("stdout", b"line 1\nline 2\n");
            let key = "fw-1/ex-1/c-1/stdout";
            assert_eq!(a.put(key, &src).expect("put"), 14);
            assert_eq!(a.size(key).expect("size"), 14);
            assert_eq!(a.read(key, 0, 100).expect("read"), b"line 1\nline 2\n");
            assert_eq!(
                a.list("fw-1/ex-1/c-1").expect("list"),
                vec![key.to_string()]
            );
            // The local file is untouched.
            assert_eq!(fs::read(&src).expect("local file"), b"line 1\nline 2\n");
        }

        pub fn empty_and_large_files(ctx: &Ctx) {
            let a = &*ctx.archive;
            let empty = ctx.file("empty", b"");
            assert_eq!(a.put("f/e/c/stderr", &empty).expect("put empty"), 0);
            assert_eq!(a.size("f/e/c/stderr").expect("size"), 0);
            assert!(a.read("f/e/c/stderr", 0, 10).expect("read").is_empty());
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8 ^ 0x80).collect();
            let big = ctx.file("big", &data);
            assert_eq!(a.put("f/e/c/stdout.1", &big).expect("put big"), 3_000_000);
            assert_eq!(a.size("f/e/c/stdout.1").expect("size"), 3_000_000);
            assert_eq!(read_all(a, "f/e/c/stdout.1"), data);
        }

        pub fn read_ranges(ctx: &Ctx) {
            let a = &*ctx.archive;
            let src = ctx.file("digits", b"0123456789");
            a.put("k/digits", &src).expect("put");
            assert_eq!(a.read("k/digits", 0, 4).expect("read"), b"0123");
            assert_eq!(a.read("k/digits", 3, 4).expect("read"), b"3456");
            assert_eq!(a.read("k/digits", 8, 100).expect("read"), b"89");
            assert!(a.read("k/digits", 10, 5).expect("read at end").is_empty());
            assert!(a
                .read("k/digits", 1000, 5)
                .expect("read past end")
                .is_empty());
            assert!(a.read("k/digits", 2, 0).expect("read nothing").is_empty());
            // A huge length is clamped, not allocated.
            assert_eq!(
                a.read("k/digits", 0, u64::MAX).expect("read"),
                b"0123456789"
            );
        }

        pub fn put_replaces(ctx: &Ctx) {
            let a = &*ctx.archive;
            a.put(
                "r/stdout",
                &ctx.file("one", b"a much longer first version\n"),
            )
            .expect("put 1");
            a.put("r/stdout", &ctx.file("two", b"second\n"))
                .expect("put 2");
            assert_eq!(a.size("r/stdout").expect("size"), 7);
            assert_eq!(a.read("r/stdout", 0, 100).expect("read"), b"second\n");
            assert_eq!(a.list("r").expect("list"), vec!["r/stdout".to_string()]);
        }

        pub fn missing_keys(ctx: &Ctx) {
            let a = &*ctx.archive;
            expect_no_such_key(a.size("no/such/key"), "no/such/key");
            expect_no_such_key(a.read("no/such/key", 0, 10), "no/such/key");
            a.put("dir/file", &ctx.file("f", b"x")).expect("put");
            // A directory is not a key.
            expect_no_such_key(a.size("dir"), "dir");
            expect_no_such_key(a.read("dir", 0, 1), "dir");
            assert!(a.list("no/such").expect("list").is_empty());
            // Listing a file's key as a prefix lists nothing below it.
            assert!(a.list("dir/file").expect("list").is_empty());
        }

        pub fn list_is_recursive_sorted_and_scoped(ctx: &Ctx) {
            let a = &*ctx.archive;
            let src = ctx.file("x", b"x");
            let keys = [
                "fw/ex/c1/stdout",
                "fw/ex/c1/stdout.1",
                "fw/ex/c1/stderr",
                "fw/ex/c1/tasks/t1/stdout",
                "fw/ex/c2/stdout",
                "fw/ex2/c3/stdout",
                "other/ex/c/stdout",
            ];
            for k in keys {
                a.put(k, &src).expect("put");
            }
            let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            all.sort();
            assert_eq!(a.list("").expect("list all"), all);
            let c1 = vec![
                "fw/ex/c1/stderr".to_string(),
                "fw/ex/c1/stdout".to_string(),
                "fw/ex/c1/stdout.1".to_string(),
                "fw/ex/c1/tasks/t1/stdout".to_string(),
            ];
            assert_eq!(a.list("fw/ex/c1").expect("list c1"), c1);
            assert_eq!(a.list("fw/ex/c1/").expect("list c1/"), c1);
            // A prefix is a directory, not a string prefix: "fw/ex" does not
            // list "fw/ex2".
            let ex = a.list("fw/ex").expect("list ex");
            assert_eq!(ex.len(), 5, "{ex:?}");
            assert!(ex.iter().all(|k| k.starts_with("fw/ex/")), "{ex:?}");
        }

        pub fn invalid_keys_are_refused(ctx: &Ctx) {
            let a = &*ctx.archive;
            let src = ctx.file("x", b"x");
            for key in [
                "",
                "/etc/passwd",
                "..",
                "../escape",
                "a/../../escape",
                "a/./b",
                "a//b",
                "a/b/",
                "a\0b",
                "a\\b",
                "line\nbreak",
                ".corral-part-123",
            ] {
                let check = |what: &str, r: Result<(), StorageError>| match r {
                    Err(e @ StorageError::InvalidKey { .. }) => {
                        let msg = e.to_string();
                        assert!(msg.contains("invalid archive key"), "{what} {key:?}: {msg}");
                    }
                    other => panic!("{what} {key:?}: expected InvalidKey, got {other:?}"),
                };
                check("put", a.put(key, &src).map(|_| ()));
                check("read", a.read(key, 0, 1).map(|_| ()));
                check("size", a.size(key).map(|_| ()));
                if !key.is_empty() && key != "a/b/" {
                    check("list", a.list(key).map(|_| ()));
                }
            }
            // Nothing was written anywhere by the refused calls.
            assert!(a.list("").expect("list").is_empty());
        }

        pub fn unusual_valid_keys_work(ctx: &Ctx) {
            let a = &*ctx.archive;
            let src = ctx.file("x", b"odd");
            let keys = [
                "fw:1/ex with spaces/c%41/stdout",
                "fw/exécuteur/c/stdout.2",
                ".hidden/-dash/_/stdout",
            ];
            for k in keys {
                a.put(k, &src).expect("put");
                assert_eq!(a.size(k).expect("size"), 3, "{k}");
                assert_eq!(a.read(k, 0, 3).expect("read"), b"odd", "{k}");
            }
            let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            want.sort();
            assert_eq!(a.list("").expect("list"), want);
            assert_eq!(
                a.list("fw:1").expect("list"),
                vec!["fw:1/ex with spaces/c%41/stdout".to_string()]
            );
        }

        pub fn put_of_a_missing_local_file_stores_nothing(ctx: &Ctx) {
            let a = &*ctx.archive;
            let missing = ctx.file("x", b"x").with_file_name("missing");
            match a.put("f/e/c/stdout", &missing) {
                Err(StorageError::Io { path, .. }) => assert_eq!(path, missing),
                other => panic!("expected an Io error naming the file, got {other:?}"),
            }
            expect_no_such_key(a.size("f/e/c/stdout"), "f/e/c/stdout");
            assert!(a.list("").expect("list").is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for ok in ["a", "a/b/c", "fw/ex/c/stdout.1", "x:y/%/ü", ".hidden"] {
            validate_key(ok).unwrap_or_else(|e| panic!("{ok:?} refused: {e}"));
        }
        for bad in ["", "/a", "a/", "a//b", "..", "a/../b", "./a", "a\tb"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key(&"a".repeat(256)).is_err());
        assert!(validate_key(&["a"; 3000].join("/")).is_err());
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("a/b/").unwrap(), "a/b");
        assert!(normalize_prefix("/").is_err());
        assert!(normalize_prefix("a//").is_err());
    }

    #[test]
    fn open_picks_the_backend_from_the_uri() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let a = open(plain.to_str().unwrap()).unwrap();
        assert_eq!(a.name(), "local");
        assert!(plain.is_dir());
        let url = dir.path().join("url");
        let a = open(&format!("file://{}", url.display())).unwrap();
        assert_eq!(a.name(), "local");
        assert!(url.is_dir());
        for bad in ["relative/dir", "file://relative", "s3://bucket/x", ""] {
            let err = open(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.to_string().contains("log archive"), "{bad}: {err}");
        }
        #[cfg(not(feature = "hdfs"))]
        {
            let err = open("hdfs://nn:8020/logs")
                .err()
                .expect("refused without the feature");
            assert!(err.to_string().contains("feature `hdfs`"), "{err}");
        }
    }
}
