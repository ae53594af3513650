//! [`HdfsBackend`]: volumes kept in HDFS, through Hadoop's own client
//! (libhdfs over JNI, via the `hdrs` crate).
//!
//! Needs at run time a JVM (libjvm, found through the rpath the build
//! records or `LD_LIBRARY_PATH`) and the Hadoop client jars on `CLASSPATH`:
//! `eval "$(scripts/hadoop-env.sh)"` prepares both.

use std::ffi::CStr;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Engine;
use crate::clock::{Clock, SystemClock};
use crate::store::Store;
use crate::{Lease, StorageError, TransferStats, VolumeBackend, VolumeId};

const COPY_BUFFER: usize = 1 << 20;
const LIST_ATTEMPTS: u32 = 8;

/// Where an [`HdfsBackend`] keeps its volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HdfsConfig {
    /// `"default"` for the `fs.defaultFS` of the Hadoop configuration on
    /// `CLASSPATH` (`core-site.xml` in `HADOOP_CONF_DIR`; Hadoop's built-in
    /// default is the local file system), or a file system URI such as
    /// `hdfs://namenode:8020` or `file:///`.
    pub name_node: String,
    /// Absolute path of the volumes' root directory in that file system.
    pub root: String,
    /// The user to act as (Hadoop's default: the process' user, or
    /// `HADOOP_USER_NAME`).
    pub user: Option<String>,
    /// Extra Hadoop configuration, `(key, value)`.
    pub config: Vec<(String, String)>,
}

impl HdfsConfig {
    /// Parses a volume root: `hdfs://namenode:8020/corral/volumes`,
    /// `file:///var/lib/corral/volumes`, any other Hadoop file system URI,
    /// or an absolute path (`/corral/volumes`) in `fs.defaultFS`.
    pub fn parse(uri: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::Hdfs {
            path: uri.to_string(),
            message: format!(
                "not a volume root ({why}); expected scheme://authority/path such as \
                 hdfs://namenode:8020/corral/volumes, or an absolute path in fs.defaultFS"
            ),
        };
        let (name_node, path) = if uri.starts_with('/') {
            ("default".to_string(), uri)
        } else if let Some((scheme, rest)) = uri.split_once("://") {
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                return Err(bad("invalid scheme"));
            }
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            let name_node = if authority.is_empty() {
                format!("{scheme}:///")
            } else {
                format!("{scheme}://{authority}")
            };
            (name_node, path)
        } else {
            return Err(bad("no scheme and not an absolute path"));
        };
        if path.contains("/../") || path.ends_with("/..") || path.contains('\0') {
            return Err(bad("'..' or NUL in the path"));
        }
        Ok(Self {
            name_node,
            root: path.trim_end_matches('/').to_string(),
            user: None,
            config: Vec::new(),
        })
    }
}

/// Volumes in HDFS (or any file system Hadoop's client reaches), through
/// Hadoop's own client.
///
/// Records are published the way HDFS allows atomically through libhdfs
/// (which always creates files with overwrite): the record is written into
/// a fresh temporary directory, which is then renamed to the version's name.
/// Renaming a directory onto an existing one moves it inside instead, on
/// HDFS and on Hadoop's local file system alike, so exactly one of
/// concurrent writers ends up owning the name, and each can tell which by
/// looking.
pub struct HdfsBackend {
    engine: Engine<HdfsStore>,
}

impl HdfsBackend {
    /// Connects on the system clock; creates the root directory.
    pub fn connect(config: HdfsConfig) -> Result<Self, StorageError> {
        Self::connect_with_clock(config, Arc::new(SystemClock))
    }

    /// Connects, reading time from `clock`; creates the root directory.
    pub fn connect_with_clock(
        config: HdfsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let describe = format!("{} on {}", config.root, config.name_node);
        let client = connect_client(&config, &describe)?;
        let store = HdfsStore {
            client,
            name_node: config.name_node.clone(),
            root: config.root.clone(),
        };
        store.mkdirs_abs(&store.root_dir())?;
        Ok(Self {
            engine: Engine::new(store, clock),
        })
    }

    /// Parses `uri` ([`HdfsConfig::parse`]) and connects.
    pub fn from_uri(uri: &str) -> Result<Self, StorageError> {
        Self::connect(HdfsConfig::parse(uri)?)
    }
}

impl VolumeBackend for HdfsBackend {
    fn name(&self) -> &'static str {
        "hdfs"
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

/// Connects Hadoop's client to `config.name_node` as `config.user`, with
/// `config.config`; `describe` names what the connection is for in errors.
pub(crate) fn connect_client(
    config: &HdfsConfig,
    describe: &str,
) -> Result<hdrs::Client, StorageError> {
    if std::env::var_os("CLASSPATH").is_none_or(|c| c.is_empty()) {
        return Err(StorageError::Hdfs {
            path: describe.to_string(),
            message: "CLASSPATH is not set, so Hadoop's client cannot start: run \
                      `eval \"$(scripts/hadoop-env.sh)\"` (it lists the Hadoop client jars \
                      and sets JAVA_HOME and LD_LIBRARY_PATH)"
                .into(),
        });
    }
    let mut builder = hdrs::ClientBuilder::new(&config.name_node);
    if let Some(user) = &config.user {
        builder = builder.with_user(user);
    }
    for (k, v) in &config.config {
        builder = builder.with_config(k, v);
    }
    builder.connect().map_err(|e| StorageError::Hdfs {
        path: describe.to_string(),
        message: format!("cannot connect: {e}{}", root_cause()),
    })
}

/// The root cause of the last Java exception libhdfs saw on this thread, as
/// `" (Hadoop: ...)"`, or nothing.
pub(crate) fn root_cause() -> String {
    // SAFETY: libhdfs returns null or a NUL-terminated string it owns in
    // thread-local storage, valid until this thread's next libhdfs call; it
    // is copied before any other call.
    let p = unsafe { hdfs_sys::hdfsGetLastExceptionRootCause() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, see above.
    let cause = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    format!(" (Hadoop: {})", cause.trim())
}

pub(crate) struct HdfsStore {
    client: hdrs::Client,
    name_node: String,
    root: String,
}

impl HdfsStore {
    fn root_dir(&self) -> String {
        if self.root.is_empty() {
            "/".to_string()
        } else {
            self.root.clone()
        }
    }

    fn abs(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root)
    }

    fn describe_abs(&self, abs: &str) -> String {
        if self.name_node == "default" {
            format!("{abs} (in fs.defaultFS)")
        } else {
            format!("{}{abs}", self.name_node.trim_end_matches('/'))
        }
    }

    fn err(&self, abs: &str, what: &str, e: io::Error) -> StorageError {
        StorageError::Hdfs {
            path: self.describe_abs(abs),
            message: format!("{what}: {e}{}", root_cause()),
        }
    }

    fn mkdirs_abs(&self, abs: &str) -> Result<(), StorageError> {
        self.client
            .create_dir(abs)
            .map_err(|e| self.err(abs, "cannot create directory", e))
    }

    /// Whether `abs` exists.
    fn exists_abs(&self, abs: &str) -> Result<bool, StorageError> {
        match self.client.metadata(abs) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(abs, "cannot stat", e)),
        }
    }

    fn read_bounded_abs(&self, abs: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let meta = match self.client.metadata(abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(abs, "cannot stat", e)),
        };
        if meta.is_dir() || meta.len() > limit {
            return Err(StorageError::Corrupt {
                path: self.describe_abs(abs),
                reason: format!("not a file of at most {limit} bytes"),
            });
        }
        let file = match self.client.open_file().read(true).open(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(abs, "cannot open", e)),
        };
        let mut buf = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(abs, "cannot read", e))?;
        if buf.len() as u64 > limit {
            return Err(StorageError::Corrupt {
                path: self.describe_abs(abs),
                reason: format!("larger than the {limit} bytes allowed"),
            });
        }
        Ok(Some(buf))
    }

    fn create(&self, abs: &str) -> Result<hdrs::File, StorageError> {
        self.client
            .open_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(abs)
            .map_err(|e| self.err(abs, "cannot create file", e))
    }
}

impl Store for HdfsStore {
    fn describe(&self, rel: &str) -> String {
        self.describe_abs(&self.abs(rel))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let abs = self.abs(dir);
        // Hadoop's local file system stats every entry while listing (and
        // fails if one is removed meanwhile); HDFS lists atomically. Retry
        // such transient failures.
        let mut attempt = 0;
        let entries = loop {
            match self.client.read_dir(&abs) {
                Ok(entries) => break entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    attempt += 1;
                    if attempt >= LIST_ATTEMPTS {
                        return Err(self.err(&abs, "cannot list directory", e));
                    }
                }
            }
        };
        Ok(entries
            .into_inner()
            .filter_map(|m| {
                m.path()
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .map(str::to_string)
            })
            .collect())
    }

    fn mkdirs(&self, dir: &str) -> Result<(), StorageError> {
        self.mkdirs_abs(&self.abs(dir))
    }

    fn read_bounded(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let abs = self.abs(path);
        match self.read_bounded_abs(&abs, limit) {
            // Removed while it was read (an old record being pruned): on
            // Hadoop's local file system that surfaces as some other error.
            Err(StorageError::Hdfs { .. }) if !self.exists_abs(&abs)? => Ok(None),
            other => other,
        }
    }

    fn put_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let abs = self.abs(path);
        let mut f = self.create(&abs)?;
        f.write_all(bytes)
            .map_err(|e| self.err(&abs, "cannot write", e))?;
        f.try_close()
            .map_err(|e| self.err(&abs, "cannot close (the data may not be stored)", e))
    }

    fn put_file(&self, path: &str, src: &Path) -> Result<u64, StorageError> {
        let abs = self.abs(path);
        let mut from = fs::File::open(src).map_err(|e| StorageError::io(src, e))?;
        let mut to = self.create(&abs)?;
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut total = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::io(src, e)),
            };
            to.write_all(&buf[..n])
                .map_err(|e| self.err(&abs, "cannot write", e))?;
            total += n as u64;
        }
        to.try_close()
            .map_err(|e| self.err(&abs, "cannot close (the data may not be stored)", e))?;
        Ok(total)
    }

    fn get_file(&self, path: &str, dst: &Path, expected: u64) -> Result<(), StorageError> {
        let abs = self.abs(path);
        let from = self
            .client
            .open_file()
            .read(true)
            .open(&abs)
            .map_err(|e| self.err(&abs, "cannot open", e))?;
        let mut to = fs::File::create_new(dst).map_err(|e| StorageError::io(dst, e))?;
        let mut from = from.take(expected + 1);
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut total = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(&abs, "cannot read", e)),
            };
            to.write_all(&buf[..n])
                .map_err(|e| StorageError::io(dst, e))?;
            total += n as u64;
        }
        if total != expected {
            return Err(StorageError::Corrupt {
                path: self.describe_abs(&abs),
                reason: format!("holds {total} bytes where the manifest says {expected}"),
            });
        }
        Ok(())
    }

    fn remove_all(&self, path: &str) -> Result<(), StorageError> {
        let abs = self.abs(path);
        if !self.exists_abs(&abs)? {
            return Ok(());
        }
        match self.client.remove_dir_all(&abs) {
            Ok(()) => Ok(()),
            // FileSystem#delete answers false when someone else removed it.
            Err(_) if !self.exists_abs(&abs)? => Ok(()),
            Err(e) => Err(self.err(&abs, "cannot delete", e)),
        }
    }

    fn publish_record(
        &self,
        path: &str,
        tmp_dir: &str,
        bytes: &[u8],
    ) -> Result<bool, StorageError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.abs(&format!("{tmp_dir}/{nonce}"));
        let dst = self.abs(path);
        let written = self.put_bytes(&format!("{tmp_dir}/{nonce}/record"), bytes);
        if let Err(e) = written {
            let _ = self.client.remove_dir_all(&tmp); // best effort
            return Err(e);
        }
        if let Err(e) = self.client.rename_file(&tmp, &dst) {
            let _ = self.client.remove_dir_all(&tmp); // best effort
            return Err(StorageError::Hdfs {
                path: self.describe_abs(&dst),
                message: format!(
                    "cannot rename {tmp} to it (FileSystem#rename answered false or failed: {e})"
                ),
            });
        }
        // Lost: the directory went inside the winner's.
        let inside = format!("{dst}/{nonce}");
        if self.exists_abs(&inside)? {
            let _ = self.client.remove_dir_all(&inside); // best effort
            return Ok(false);
        }
        let ours = self.read_bounded(&format!("{path}/record"), bytes.len() as u64)?;
        Ok(ours.as_deref() == Some(bytes))
    }

    fn read_record(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_bounded(&format!("{path}/record"), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_volume_roots() {
        let c = HdfsConfig::parse("hdfs://nn.example:8020/corral/volumes/").unwrap();
        assert_eq!(c.name_node, "hdfs://nn.example:8020");
        assert_eq!(c.root, "/corral/volumes");
        let c = HdfsConfig::parse("file:///tmp/v").unwrap();
        assert_eq!(c.name_node, "file:///");
        assert_eq!(c.root, "/tmp/v");
        let c = HdfsConfig::parse("/corral").unwrap();
        assert_eq!(c.name_node, "default");
        assert_eq!(c.root, "/corral");
        let c = HdfsConfig::parse("viewfs://cluster").unwrap();
        assert_eq!(c.name_node, "viewfs://cluster");
        assert_eq!(c.root, "");
        for bad in [
            "corral/volumes",
            "://x/y",
            "hdfs://nn/a/../b",
            "hd fs://x/y",
        ] {
            assert!(HdfsConfig::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
