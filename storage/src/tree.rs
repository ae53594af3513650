//! Local directory trees <-> snapshots in a [`Store`].
//!
//! A snapshot directory holds `blobs/<n / 4096 in hex>/<n in hex>`, one per
//! non-empty regular file, and `manifest.json`, written last, which lists
//! every entry with its path, kind, permission bits and size. Content is
//! stored under generated names because HDFS cannot store every name a
//! local file system can (`:` for one). Owners, timestamps and special
//! files (sockets, FIFOs, devices) are not kept.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::Store;
use crate::{StorageError, TransferStats, MAX_MANIFEST_BYTES};

/// Setuid and setgid bits are not restored.
const MODE_MASK: u32 = 0o1777;
/// Top-level entries of a volume with this prefix are restore scratch space
/// (left behind only by a crash) and never uploaded.
pub(crate) const RESTORE_STAGING_PREFIX: &str = ".corral-restore-";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    format: u32,
    root_mode: u32,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        size: u64,
        /// `None` for an empty file.
        blob: Option<u64>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

impl Manifest {
    pub(crate) fn stats(&self) -> TransferStats {
        let mut s = TransferStats::default();
        for e in &self.entries {
            match e {
                Entry::Dir { .. } => s.dirs += 1,
                Entry::File { size, .. } => {
                    s.files += 1;
                    s.bytes += size;
                }
                Entry::Symlink { .. } => s.symlinks += 1,
            }
        }
        s
    }
}

fn blob_path(snapshot: &str, n: u64) -> String {
    format!("{snapshot}/blobs/{:x}/{n:x}", n >> 12)
}

fn manifest_path(snapshot: &str) -> String {
    format!("{snapshot}/manifest.json")
}

fn utf8(path: &Path, what: &str) -> Result<String, StorageError> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        StorageError::Unsupported(format!(
            "{what} {} is not UTF-8; volumes backed by a remote store need UTF-8 names",
            path.display()
        ))
    })
}

/// Uploads `local_dir` into the snapshot directory `snapshot` of `store`,
/// manifest last. Returns what was written.
pub(crate) fn upload(
    store: &dyn Store,
    snapshot: &str,
    local_dir: &Path,
) -> Result<Manifest, StorageError> {
    let root_meta = fs::metadata(local_dir).map_err(|e| StorageError::io(local_dir, e))?;
    if !root_meta.is_dir() {
        return Err(StorageError::io(
            local_dir,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }
    let mut manifest = Manifest {
        format: 1,
        root_mode: root_meta.permissions().mode() & MODE_MASK,
        entries: Vec::new(),
    };
    let mut next_blob = 0u64;
    // Depth first, names sorted, parents before children.
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let abs_dir = local_dir.join(&rel_dir);
        let mut names = Vec::new();
        for entry in fs::read_dir(&abs_dir).map_err(|e| StorageError::io(&abs_dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(&abs_dir, e))?;
            names.push(entry.file_name());
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            if rel_dir.as_os_str().is_empty()
                && name
                    .to_str()
                    .is_some_and(|n| n.starts_with(RESTORE_STAGING_PREFIX))
            {
                continue;
            }
            let rel = rel_dir.join(&name);
            let abs = local_dir.join(&rel);
            let meta = match fs::symlink_metadata(&abs) {
                Ok(m) => m,
                // Removed while we walk (the task may still be running).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(&abs, e)),
            };
            let path = utf8(&rel, "file name")?;
            let ft = meta.file_type();
            if ft.is_dir() {
                manifest.entries.push(Entry::Dir {
                    path,
                    mode: meta.permissions().mode() & MODE_MASK,
                });
                subdirs.push(rel);
            } else if ft.is_file() {
                let mode = meta.permissions().mode() & MODE_MASK;
                let (size, blob) = if meta.len() == 0 {
                    (0, None)
                } else {
                    let n = next_blob;
                    next_blob += 1;
                    let size = store.put_file(&blob_path(snapshot, n), &abs)?;
                    (size, Some(n))
                };
                manifest.entries.push(Entry::File {
                    path,
                    mode,
                    size,
                    blob,
                });
            } else if ft.is_symlink() {
                let target = fs::read_link(&abs).map_err(|e| StorageError::io(&abs, e))?;
                manifest.entries.push(Entry::Symlink {
                    path,
                    target: utf8(&target, "symbolic link target")?,
                });
            }
            // Sockets, FIFOs and devices are not kept.
        }
        // Reverse so that popping visits them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    let bytes = serde_json::to_vec(&manifest).map_err(|e| StorageError::Corrupt {
        path: store.describe(&manifest_path(snapshot)),
        reason: format!("cannot encode manifest: {e}"),
    })?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(StorageError::Unsupported(format!(
            "{} holds too many entries ({}): its manifest would exceed {} bytes",
            local_dir.display(),
            manifest.entries.len(),
            MAX_MANIFEST_BYTES
        )));
    }
    store.put_bytes(&manifest_path(snapshot), &bytes)?;
    Ok(manifest)
}

/// Reads a snapshot's manifest; `None` if it is not there (the snapshot was
/// replaced and removed meanwhile).
pub(crate) fn read_manifest(
    store: &dyn Store,
    snapshot: &str,
) -> Result<Option<Manifest>, StorageError> {
    let path = manifest_path(snapshot);
    let Some(bytes) = store.read_bounded(&path, MAX_MANIFEST_BYTES)? else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
        path: store.describe(&path),
        reason: format!("unparsable manifest: {e}"),
    })?;
    if manifest.format != 1 {
        return Err(StorageError::Corrupt {
            path: store.describe(&path),
            reason: format!("unknown manifest format {}", manifest.format),
        });
    }
    Ok(Some(manifest))
}

/// Checks that every entry lands inside the target: relative, plain
/// components, unique, and every parent a directory listed before it (so
/// nothing is ever written through a symbolic link).
fn check_entries(store: &dyn Store, snapshot: &str, m: &Manifest) -> Result<(), StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: store.describe(&manifest_path(snapshot)),
        reason,
    };
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for e in &m.entries {
        let p = e.path();
        let path = Path::new(p);
        if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(corrupt(format!(
                "entry path {p:?} is not a plain relative path"
            )));
        }
        if p.ends_with('/') || p.contains("//") {
            return Err(corrupt(format!("entry path {p:?} is not normalised")));
        }
        if !seen.insert(p) {
            return Err(corrupt(format!("entry path {p:?} listed twice")));
        }
        if let Some((parent, _)) = p.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(corrupt(format!(
                    "entry {p:?} comes before its parent directory"
                )));
            }
        }
        if let Entry::Dir { path, .. } = e {
            dirs.insert(path);
        }
    }
    Ok(())
}

/// Downloads a snapshot into `dst`, an existing empty directory.
pub(crate) fn download(
    store: &dyn Store,
    snapshot: &str,
    m: &Manifest,
    dst: &Path,
) -> Result<(), StorageError> {
    check_entries(store, snapshot, m)?;
    let mut dir_modes = Vec::new();
    for e in &m.entries {
        match e {
            Entry::Dir { path, mode } => {
                let p = dst.join(path);
                fs::create_dir(&p).map_err(|e| StorageError::io(&p, e))?;
                dir_modes.push((p, *mode));
            }
            Entry::File {
                path,
                mode,
                size,
                blob,
            } => {
                let p = dst.join(path);
                match blob {
                    Some(n) => store.get_file(&blob_path(snapshot, *n), &p, *size)?,
                    None if *size == 0 => {
                        fs::File::create(&p).map_err(|e| StorageError::io(&p, e))?;
                    }
                    None => {
                        return Err(StorageError::Corrupt {
                            path: store.describe(&manifest_path(snapshot)),
                            reason: format!("file {path:?} of {size} bytes has no content"),
                        })
                    }
                }
                set_mode(&p, *mode)?;
            }
            Entry::Symlink { .. } => {}
        }
    }
    // Links last: nothing is written below them.
    for e in &m.entries {
        if let Entry::Symlink { path, target } = e {
            let p = dst.join(path);
            symlink(target, &p).map_err(|e| StorageError::io(&p, e))?;
        }
    }
    // Deepest first, so a read-only directory does not stop its children.
    for (p, mode) in dir_modes.into_iter().rev() {
        set_mode(&p, mode)?;
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<(), StorageError> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode & MODE_MASK))
        .map_err(|e| StorageError::io(p, e))
}

/// Makes every directory under `p` writable and searchable by its owner, so
/// that a tree with read-only directories can be removed.
fn make_removable(p: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(p)?;
    if meta.is_dir() {
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in fs::read_dir(p)? {
            make_removable(&entry?.path())?;
        }
    }
    Ok(())
}

/// Removes a file, link or directory tree.
pub(crate) fn remove_path(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(p);
    }
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_removable(p)?;
            fs::remove_dir_all(p)
        }
        Err(e) => Err(e),
    }
}

/// Restores into `local_dir`: downloads into a scratch directory inside it
/// (same file system, so the final moves are renames), then replaces
/// everything else in it. If the download fails `local_dir` is left as it
/// was. `m` is `None` for a volume that was never written back.
pub(crate) fn restore_into(
    store: &dyn Store,
    snapshot: Option<(&str, &Manifest)>,
    local_dir: &Path,
    nonce: &str,
) -> Result<TransferStats, StorageError> {
    fs::create_dir_all(local_dir).map_err(|e| StorageError::io(local_dir, e))?;
    let staging = local_dir.join(format!("{RESTORE_STAGING_PREFIX}{nonce}"));
    fs::create_dir(&staging).map_err(|e| StorageError::io(&staging, e))?;
    if let Some((name, m)) = snapshot {
        if let Err(e) = download(store, name, m, &staging) {
            // Best effort: the error that matters is the download's.
            let _ = remove_path(&staging);
            return Err(e);
        }
    }
    let staging_name = staging.file_name().map(|n| n.to_os_string());
    for entry in fs::read_dir(local_dir).map_err(|e| StorageError::io(local_dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(local_dir, e))?;
        if Some(entry.file_name()) == staging_name {
            continue;
        }
        let p = entry.path();
        remove_path(&p).map_err(|e| StorageError::io(&p, e))?;
    }
    for entry in fs::read_dir(&staging).map_err(|e| StorageError::io(&staging, e))? {
        let entry = entry.map_err(|e| StorageError::io(&staging, e))?;
        let to = local_dir.join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(|e| StorageError::io(&to, e))?;
    }
    fs::remove_dir(&staging).map_err(|e| StorageError::io(&staging, e))?;
    match snapshot {
        Some((_, m)) => {
            set_mode(local_dir, m.root_mode)?;
            Ok(m.stats())
        }
        None => Ok(TransferStats::default()),
    }
}
