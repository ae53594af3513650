//! Copying one file out of any file system Hadoop's client knows
//! (`hdfs://namenode:8020/...`, `viewfs://cluster/...`, `s3a://...` when its
//! jars are on `CLASSPATH`, or a path in `fs.defaultFS`) to a local file:
//! what the agent's fetcher does for `hdfs://` URIs, through the same client
//! as [`HdfsBackend`](crate::HdfsBackend).

use std::io::{self, Read, Write};
use std::path::Path;

use crate::hdfs::{connect_client, root_cause, HdfsConfig};
use crate::StorageError;

const COPY_BUFFER: usize = 1 << 20;

/// Copies the file at `uri` into `dest` (created or truncated) through
/// Hadoop's client, refusing files larger than `max_bytes`; returns the
/// number of bytes copied. Blocking.
///
/// `config` is extra Hadoop configuration, `(key, value)`, on top of the
/// `core-site.xml`/`hdfs-site.xml` found on `CLASSPATH`. A directory, a
/// missing file or an unreachable file system is an error naming the URI and
/// Hadoop's root cause.
pub fn copy_to_local(
    uri: &str,
    dest: &Path,
    max_bytes: u64,
    config: &[(String, String)],
) -> Result<u64, StorageError> {
    let fail = |message: String| StorageError::Hdfs {
        path: uri.to_string(),
        message,
    };
    let mut parsed = HdfsConfig::parse(uri)
        .ok()
        .filter(|_| uri.contains("://"))
        .ok_or_else(|| {
            fail(
                "not a Hadoop file system URI: expected scheme://authority/path, such as \
                 hdfs://namenode:8020/dist/app.tgz"
                    .into(),
            )
        })?;
    let path = if parsed.root.is_empty() {
        "/".to_string()
    } else {
        parsed.root.clone()
    };
    if path == "/" {
        return Err(fail("the URI names no file".into()));
    }
    parsed.config.extend(config.iter().cloned());
    let client = connect_client(&parsed, uri)?;
    let meta = client.metadata(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            fail("no such file".into())
        } else {
            fail(format!("cannot stat: {e}{}", root_cause()))
        }
    })?;
    if meta.is_dir() {
        return Err(fail(
            "it is a directory; the fetcher copies single files (archives are extracted)".into(),
        ));
    }
    if meta.len() > max_bytes {
        return Err(fail(format!(
            "the file is {} bytes, more than the {max_bytes} allowed",
            meta.len()
        )));
    }
    let file = client
        .open_file()
        .read(true)
        .open(&path)
        .map_err(|e| fail(format!("cannot open: {e}{}", root_cause())))?;
    let mut out = std::fs::File::create(dest).map_err(|e| StorageError::io(dest, e))?;
    let mut reader = file.take(max_bytes + 1);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            fail(format!(
                "read failed after {total} bytes: {e}{}",
                root_cause()
            ))
        })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_bytes {
            drop(out);
            let _ = std::fs::remove_file(dest);
            return Err(fail(format!(
                "the file grew past the {max_bytes} bytes allowed while it was read"
            )));
        }
        out.write_all(&buf[..n])
            .map_err(|e| StorageError::io(dest, e))?;
    }
    out.sync_all().map_err(|e| StorageError::io(dest, e))?;
    Ok(total)
}
