//! The fetcher: downloads `CommandInfo.uris` into a sandbox before the
//! executor starts — http and https (rustls, the platform's roots) URLs,
//! local files (`file://` or a plain path) and, as Mesos' fetcher does with
//! `hadoop fs -copyToLocal`, every other scheme (`hdfs://`, `viewfs://`, any
//! file system Hadoop's client knows) through the storage crate's Hadoop
//! client (cargo feature `hdfs`; without it such URIs fail naming the
//! feature). Per URI: `executable` (chmod 755), `extract` (tar, tgz,
//! tbz2, txz-less tar forms, zip, gz), `output_file` (the name in the
//! sandbox) and `cache` (a per-agent cache bounded by
//! `--fetcher_cache_size`, least recently used evicted first).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use corral_api::v1::command_info::Uri;

use crate::sync::lock;
use futures::StreamExt;

/// Largest single download.
const MAX_DOWNLOAD_BYTES: u64 = 8 << 30;
/// Connect timeout of downloads.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest number of entries an archive may have.
const MAX_ARCHIVE_ENTRIES: usize = 1_000_000;

/// Why a URI could not be fetched.
#[derive(Debug, thiserror::Error)]
#[error("Failed to fetch '{uri}': {reason}")]
pub struct FetchError {
    /// The URI, as given.
    pub uri: String,
    /// What went wrong.
    pub reason: String,
}

fn err(uri: &str, reason: impl Into<String>) -> FetchError {
    FetchError {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    size: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    used: u64,
    tick: u64,
    next_file: u64,
}

/// Counters for `/metrics/snapshot`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetcherStats {
    /// Fetches of cached URIs served from the cache.
    pub cache_hits: u64,
    /// Fetches of cached URIs that downloaded.
    pub cache_misses: u64,
    /// Bytes in the cache.
    pub cache_used_bytes: u64,
    /// Cache capacity.
    pub cache_size_bytes: u64,
    /// Failed fetches.
    pub failures: u64,
}

/// The agent's fetcher and its cache.
#[derive(Debug)]
pub struct Fetcher {
    http: reqwest::Client,
    cache_dir: PathBuf,
    cache_size: u64,
    cache: Mutex<Cache>,
    stats: Mutex<FetcherStats>,
}

/// The file name a URI lands under in the sandbox.
pub fn basename(uri: &str) -> String {
    let no_query = uri.split(['?', '#']).next().unwrap_or(uri);
    no_query
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("download")
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    TarGz,
    TarBz2,
    Zip,
    Gz,
}

fn archive_kind(name: &str) -> Option<Archive> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
        Some(Archive::TarGz)
    } else if n.ends_with(".tar.bz2") || n.ends_with(".tbz2") || n.ends_with(".tbz") {
        Some(Archive::TarBz2)
    } else if n.ends_with(".tar") {
        Some(Archive::Tar)
    } else if n.ends_with(".zip") {
        Some(Archive::Zip)
    } else if n.ends_with(".gz") {
        Some(Archive::Gz)
    } else {
        None
    }
}

/// A relative path without `..`, safe to create under the sandbox.
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn extract(file: &Path, kind: Archive, into: &Path) -> Result<(), String> {
    let open =
        || std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()));
    match kind {
        Archive::Tar => untar(tar::Archive::new(open()?), into),
        Archive::TarGz => untar(
            tar::Archive::new(flate2::read::GzDecoder::new(open()?)),
            into,
        ),
        Archive::TarBz2 => untar(
            tar::Archive::new(bzip2::read::BzDecoder::new(open()?)),
            into,
        ),
        Archive::Gz => {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n[..n.len() - 3].to_string())
                .filter(|n| !n.is_empty())
                .ok_or("cannot name the gunzipped file")?;
            let mut dec = flate2::read::GzDecoder::new(open()?);
            let out = into.join(name);
            let mut f = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            std::io::copy(&mut dec, &mut f).map_err(|e| format!("gunzip failed: {e}"))?;
            Ok(())
        }
        Archive::Zip => {
            let mut z =
                zip::ZipArchive::new(open()?).map_err(|e| format!("not a zip file: {e}"))?;
            if z.len() > MAX_ARCHIVE_ENTRIES {
                return Err("too many entries in the zip file".into());
            }
            for i in 0..z.len() {
                let mut entry = z.by_index(i).map_err(|e| e.to_string())?;
                let Some(rel) = entry.enclosed_name().and_then(|p| safe_relative(&p)) else {
                    let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
                    return Err(format!("zip entry '{name}' escapes the sandbox"));
                };
                let out = into.join(rel);
                if entry.is_dir() {
                    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
                    continue;
                }
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                let mut f = std::fs::File::create(&out).map_err(|e| e.to_string())?;
                std::io::copy(&mut entry, &mut f).map_err(|e| e.to_string())?;
                if let Some(mode) = entry.unix_mode() {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(
                        &out,
                        std::fs::Permissions::from_mode(mode & 0o777),
                    );
                }
            }
            Ok(())
        }
    }
}

fn untar<R: Read>(mut archive: tar::Archive<R>, into: &Path) -> Result<(), String> {
    archive.set_preserve_permissions(true);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ARCHIVE_ENTRIES {
            return Err("too many entries in the archive".into());
        }
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        // unpack_in refuses paths that escape `into`.
        let ok = entry
            .unpack_in(into)
            .map_err(|e| format!("cannot extract: {e}"))?;
        if !ok {
            let p = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(format!("archive entry '{p}' escapes the sandbox"));
        }
    }
    Ok(())
}

impl Fetcher {
    /// A fetcher whose cache lives in `cache_dir` (emptied now) and holds at
    /// most `cache_size` bytes.
    pub fn new(cache_dir: PathBuf, cache_size: u64) -> std::io::Result<Self> {
        let _ = std::fs::remove_dir_all(&cache_dir);
        std::fs::create_dir_all(&cache_dir)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| std::io::Error::other(format!("http client: {e}")))?;
        Ok(Self {
            http,
            cache_dir,
            cache_size,
            cache: Mutex::new(Cache::default()),
            stats: Mutex::new(FetcherStats {
                cache_size_bytes: cache_size,
                ..Default::default()
            }),
        })
    }

    /// Current counters.
    pub fn stats(&self) -> FetcherStats {
        let mut s = *lock(&self.stats);
        s.cache_used_bytes = lock(&self.cache).used;
        s
    }

    /// Fetches every URI into `sandbox`, in order; stops at the first
    /// failure.
    pub async fn fetch_all(&self, uris: &[Uri], sandbox: &Path) -> Result<(), FetchError> {
        for uri in uris {
            if let Err(e) = self.fetch(uri, sandbox).await {
                lock(&self.stats).failures += 1;
                tracing::warn!(uri = %uri.value, error = %e.reason, "fetch failed");
                return Err(e);
            }
        }
        Ok(())
    }

    async fn fetch(&self, uri: &Uri, sandbox: &Path) -> Result<(), FetchError> {
        let value = uri.value.trim();
        if value.is_empty() {
            return Err(err(value, "the URI is empty"));
        }
        let name = match uri.output_file.as_deref().filter(|s| !s.is_empty()) {
            Some(o) => {
                let rel = safe_relative(Path::new(o)).ok_or_else(|| {
                    err(
                        value,
                        format!("output_file '{o}' must be a relative path inside the sandbox"),
                    )
                })?;
                rel
            }
            None => PathBuf::from(basename(value)),
        };
        let dest = sandbox.join(&name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(value, e.to_string()))?;
        }
        if uri.cache.unwrap_or(false) {
            self.fetch_cached(value, &dest).await?;
        } else {
            self.download(value, &dest).await?;
        }
        let file_name = name.to_string_lossy().into_owned();
        if uri.executable.unwrap_or(false) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| err(value, format!("cannot make it executable: {e}")))?;
        } else if uri.extract.unwrap_or(true) {
            if let Some(kind) = archive_kind(&file_name) {
                let (d, s) = (dest.clone(), sandbox.to_path_buf());
                tokio::task::spawn_blocking(move || extract(&d, kind, &s))
                    .await
                    .map_err(|e| err(value, format!("extraction panicked: {e}")))?
                    .map_err(|e| err(value, format!("cannot extract: {e}")))?;
            }
        }
        tracing::info!(uri = value, dest = %dest.display(), "fetched");
        Ok(())
    }

    async fn fetch_cached(&self, value: &str, dest: &Path) -> Result<(), FetchError> {
        let hit = {
            let mut c = lock(&self.cache);
            c.tick += 1;
            let tick = c.tick;
            c.entries.get_mut(value).map(|e| {
                e.last_used = tick;
                e.path.clone()
            })
        };
        if let Some(path) = hit {
            if std::fs::copy(&path, dest).is_ok() {
                lock(&self.stats).cache_hits += 1;
                tracing::info!(uri = value, "served from the fetcher cache");
                return Ok(());
            }
            // The cached file is gone: fetch again.
            let mut c = lock(&self.cache);
            if let Some(e) = c.entries.remove(value) {
                c.used = c.used.saturating_sub(e.size);
            }
        }
        lock(&self.stats).cache_misses += 1;
        let file = {
            let mut c = lock(&self.cache);
            c.next_file += 1;
            self.cache_dir
                .join(format!("{}-{}", c.next_file, basename(value)))
        };
        self.download(value, &file).await?;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        std::fs::copy(&file, dest)
            .map_err(|e| err(value, format!("cannot copy from the cache: {e}")))?;
        if size > self.cache_size {
            // Too big to keep.
            let _ = std::fs::remove_file(&file);
            return Ok(());
        }
        let mut c = lock(&self.cache);
        // Evict least recently used entries until it fits.
        while c.used + size > self.cache_size {
            let Some(oldest) = c
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = c.entries.remove(&oldest) {
                c.used = c.used.saturating_sub(e.size);
                let _ = std::fs::remove_file(&e.path);
                tracing::info!(uri = %oldest, bytes = e.size, "evicted from the fetcher cache");
            }
        }
        c.tick += 1;
        let tick = c.tick;
        c.used += size;
        if let Some(old) = c.entries.insert(
            value.to_string(),
            Entry {
                path: file,
                size,
                last_used: tick,
            },
        ) {
            c.used = c.used.saturating_sub(old.size);
            let _ = std::fs::remove_file(&old.path);
        }
        Ok(())
    }

    async fn download(&self, value: &str, dest: &Path) -> Result<(), FetchError> {
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return self.http_get(value, dest).await;
        }
        let path = if let Some(p) = value.strip_prefix("file://") {
            PathBuf::from(p)
        } else if value.contains("://") {
            return self.hadoop_get(value, dest).await;
        } else {
            PathBuf::from(value)
        };
        if !path.is_absolute() {
            return Err(err(value, "a local path must be absolute"));
        }
        let (src, dst) = (path.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || std::fs::copy(&src, &dst))
            .await
            .map_err(|e| err(value, e.to_string()))?
            .map_err(|e| err(value, format!("cannot copy {}: {e}", path.display())))?;
        Ok(())
    }

    /// Any scheme but http, https and file: through Hadoop's client, into
    /// a `.part` file renamed into place once complete.
    #[cfg(feature = "hdfs")]
    async fn hadoop_get(&self, value: &str, dest: &Path) -> Result<(), FetchError> {
        let tmp = part_file(dest);
        let (uri, to) = (value.to_string(), tmp.clone());
        tracing::info!(uri = value, "fetching through hadoop's client");
        let copied = tokio::task::spawn_blocking(move || {
            corral_storage::copy_to_local(&uri, &to, MAX_DOWNLOAD_BYTES, &[])
        })
        .await
        .map_err(|e| err(value, format!("the Hadoop client panicked: {e}")))?;
        match copied {
            Ok(bytes) => {
                std::fs::rename(&tmp, dest).map_err(|e| err(value, e.to_string()))?;
                tracing::info!(uri = value, bytes, "fetched through hadoop's client");
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(err(value, e.to_string()))
            }
        }
    }

    #[cfg(not(feature = "hdfs"))]
    async fn hadoop_get(&self, value: &str, _dest: &Path) -> Result<(), FetchError> {
        let scheme = value.split("://").next().unwrap_or("");
        Err(err(
            value,
            format!(
                "'{scheme}' URIs are fetched through Hadoop's client, and this agent was built \
                 without it: build corral with `--features hdfs` (and run it with \
                 `eval \"$(scripts/hadoop-env.sh)\"`), or serve the file over http(s)"
            ),
        ))
    }

    async fn http_get(&self, value: &str, dest: &Path) -> Result<(), FetchError> {
        let resp = self
            .http
            .get(value)
            .send()
            .await
            .map_err(|e| err(value, format!("request failed: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(value, format!("HTTP {status}")));
        }
        let tmp = part_file(dest);
        let mut file = std::fs::File::create(&tmp).map_err(|e| err(value, e.to_string()))?;
        let mut body = resp.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| err(value, format!("download broke: {}", error_chain(&e))))?;
            total += chunk.len() as u64;
            if total > MAX_DOWNLOAD_BYTES {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(value, "the download is larger than 8 GB"));
            }
            file.write_all(&chunk)
                .map_err(|e| err(value, e.to_string()))?;
        }
        drop(file);
        std::fs::rename(&tmp, dest).map_err(|e| err(value, e.to_string()))?;
        Ok(())
    }
}

/// Where a download is written until it is complete.
fn part_file(dest: &Path) -> PathBuf {
    dest.with_file_name(format!(
        ".{}.part",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(v: &str) -> Uri {
        Uri {
            value: v.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(basename("http://h/a/b.tgz?x=1"), "b.tgz");
        assert_eq!(basename("/x/y"), "y");
        assert_eq!(archive_kind("a.tar.gz"), Some(Archive::TarGz));
        assert_eq!(archive_kind("a.tbz2"), Some(Archive::TarBz2));
        assert_eq!(archive_kind("a.gz"), Some(Archive::Gz));
        assert_eq!(archive_kind("a.zip"), Some(Archive::Zip));
        assert_eq!(archive_kind("a.sh"), None);
        assert!(safe_relative(Path::new("../x")).is_none());
        assert!(safe_relative(Path::new("/x")).is_none());
        assert_eq!(
            safe_relative(Path::new("a/./b")),
            Some(PathBuf::from("a/b"))
        );
    }

    #[tokio::test]
    async fn local_files_archives_and_errors() {
        let src = tempfile::tempdir().unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let f = Fetcher::new(cache.path().join("c"), 1 << 20).unwrap();

        // A tar.gz with one file, and a zip with one file.
        let tgz = src.path().join("pkg.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tgz).unwrap(),
                flate2::Compression::default(),
            );
            let mut b = tar::Builder::new(gz);
            let data = b"from tar\n";
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "dir/inside.txt", &data[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let zipf = src.path().join("z.zip");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&zipf).unwrap());
            z.start_file("zipped.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b"from zip\n").unwrap();
            z.finish().unwrap();
        }
        let script = src.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();

        let mut exe = uri(&script.display().to_string());
        exe.executable = Some(true);
        let mut renamed = uri(&format!("file://{}", script.display()));
        renamed.output_file = Some("bin/renamed.sh".into());
        f.fetch_all(
            &[
                uri(&tgz.display().to_string()),
                uri(&zipf.display().to_string()),
                exe,
                renamed,
            ],
            sandbox.path(),
        )
        .await
        .unwrap();
        let s = sandbox.path();
        assert_eq!(
            std::fs::read_to_string(s.join("dir/inside.txt")).unwrap(),
            "from tar\n"
        );
        assert_eq!(
            std::fs::read_to_string(s.join("zipped.txt")).unwrap(),
            "from zip\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(s.join("bin/renamed.sh").is_file());

        // https is compiled in: a closed port is a connection error.
        let e = f
            .fetch_all(&[uri("https://127.0.0.1:1/x.tgz")], s)
            .await
            .unwrap_err();
        assert!(e.reason.contains("request failed"), "{e}");
        // Other schemes go to Hadoop's client: without it, the error names
        // the feature; with it, Hadoop's own refusal of a scheme it does not
        // know (no network involved).
        #[cfg(not(feature = "hdfs"))]
        {
            let e = f.fetch_all(&[uri("hdfs://nn/x")], s).await.unwrap_err();
            assert!(
                e.to_string().contains("hdfs://nn/x") && e.reason.contains("--features hdfs"),
                "{e}"
            );
        }
        #[cfg(feature = "hdfs")]
        {
            let e = f.fetch_all(&[uri("nosuchfs://nn/x")], s).await.unwrap_err();
            assert!(
                e.to_string().contains("nosuchfs://nn/x") && e.reason.contains("nosuchfs"),
                "{e}"
            );
            assert!(!s.join(".x.part").exists(), "no partial file is left");
        }
        let e = f.fetch_all(&[uri("/does/not/exist")], s).await.unwrap_err();
        assert!(e.to_string().contains("/does/not/exist"), "{e}");
        let mut bad = uri("/x");
        bad.output_file = Some("../escape".into());
        assert!(f.fetch_all(&[bad], s).await.is_err());
        assert_eq!(f.stats().failures, 4);
    }

    #[tokio::test]
    async fn cache_hits_and_lru_eviction() {
        let src = tempfile::tempdir().unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        // Room for two 400-byte files, not three.
        let f = Fetcher::new(cache.path().join("c"), 1000).unwrap();
        let mut uris = Vec::new();
        for n in ["a", "b", "c"] {
            let p = src.path().join(n);
            std::fs::write(&p, vec![b'x'; 400]).unwrap();
            let mut u = uri(&p.display().to_string());
            u.cache = Some(true);
            uris.push(u);
        }
        f.fetch_all(&uris[0..1], sandbox.path()).await.unwrap();
        f.fetch_all(&uris[0..1], sandbox.path()).await.unwrap();
        assert_eq!(f.stats().cache_hits, 1);
        f.fetch_all(&uris[1..2], sandbox.path()).await.unwrap();
        // a was used more recently than b? No: b is newer; touching a makes b the oldest.
        f.fetch_all(&uris[0..1], sandbox.path()).await.unwrap();
        f.fetch_all(&uris[2..3], sandbox.path()).await.unwrap();
        let s = f.stats();
        assert_eq!(s.cache_hits, 2);
        assert_eq!(s.cache_misses, 3);
        assert!(s.cache_used_bytes <= 1000);
        // b was evicted, a stays.
        f.fetch_all(&uris[0..1], sandbox.path()).await.unwrap();
        assert_eq!(f.stats().cache_hits, 3);
        f.fetch_all(&uris[1..2], sandbox.path()).await.unwrap();
        assert_eq!(f.stats().cache_misses, 4);
    }
}
