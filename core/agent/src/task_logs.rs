//! Archiving the logs of finished executor runs (`--task_log_archive`).
//!
//! When an executor's run ends, and once its logger processes have exited
//! (they flush at EOF) or [`LOGGER_EXIT_TIMEOUT`] passed, the sandbox's
//! `stdout*` and `stderr*` files, and those of its task sandboxes under
//! `tasks/<task_id>/` (task groups), are copied into the archive under
//! `<framework_id>/<executor_id>/<container_id>/`, keeping their names (see
//! `corral_storage::archive` for the layout readers rely on). The copy runs
//! on `spawn_blocking`; files larger than [`MAX_ARCHIVED_FILE`] are skipped
//! with a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_storage::archive::LogArchive;

use crate::containerizer::ProcessHandle;

/// Largest file archived; larger ones are skipped with a warning.
pub const MAX_ARCHIVED_FILE: u64 = 1 << 30;
/// How long the archiver waits for a run's loggers to exit (a process that
/// escaped the container may hold the pipe open) before it copies what is
/// there.
pub const LOGGER_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The archive `--task_log_archive` names, opened.
#[derive(Clone)]
pub struct TaskLogArchive {
    /// The flag's value.
    pub uri: String,
    /// The archive.
    pub archive: Arc<dyn LogArchive>,
}

impl std::fmt::Debug for TaskLogArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskLogArchive")
            .field("uri", &self.uri)
            .field("backend", &self.archive.name())
            .finish()
    }
}

impl TaskLogArchive {
    /// Opens the archive a URI names (blocking: HDFS connects here).
    pub fn open(uri: &str) -> Result<Self, corral_storage::StorageError> {
        Ok(Self {
            uri: uri.to_string(),
            archive: Arc::from(corral_storage::archive::open(uri)?),
        })
    }
}

/// One finished run to archive.
#[derive(Debug)]
pub struct ArchiveJob {
    /// Framework id.
    pub framework_id: String,
    /// Executor id.
    pub executor_id: String,
    /// Container id.
    pub container_id: String,
    /// The run's sandbox.
    pub sandbox: PathBuf,
    /// Its logger processes (logrotate container logger).
    pub loggers: Vec<ProcessHandle>,
}

/// What an archiving copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Files stored.
    pub files: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Files skipped (too large).
    pub skipped: u64,
    /// Files that could not be stored.
    pub failed: u64,
}

/// Waits for the run's loggers, then copies its logs (off the runtime).
pub async fn archive_run(archive: TaskLogArchive, job: ArchiveJob) {
    let ArchiveJob {
        framework_id,
        executor_id,
        container_id,
        sandbox,
        loggers,
    } = job;
    for logger in &loggers {
        if tokio::time::timeout(LOGGER_EXIT_TIMEOUT, logger.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                framework_id = %framework_id,
                executor_id = %executor_id,
                container_id = %container_id,
                logger_pid = logger.pid(),
                "a logger is still running (a process holds the executor's output open); archiving what is written so far"
            );
        }
    }
    let prefix = format!("{framework_id}/{executor_id}/{container_id}");
    let started = std::time::Instant::now();
    let key = prefix.clone();
    let store = archive.archive.clone();
    let copied = tokio::task::spawn_blocking(move || copy_logs(&*store, &key, &sandbox)).await;
    match copied {
        Ok(stats) => tracing::info!(
            framework_id = %framework_id,
            executor_id = %executor_id,
            container_id = %container_id,
            archive = %archive.uri,
            files = stats.files,
            bytes = stats.bytes,
            skipped = stats.skipped,
            failed = stats.failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "archived task logs"
        ),
        Err(e) => tracing::error!(
            framework_id = %framework_id,
            executor_id = %executor_id,
            container_id = %container_id,
            error = %e,
            "archiving task logs failed"
        ),
    }
}

/// The log files of a sandbox: `(key suffix, path, size)` for its regular
/// files named `stdout*` or `stderr*`, and those of `tasks/<task_id>/`.
pub fn log_files(sandbox: &Path) -> Vec<(String, PathBuf, u64)> {
    let mut out = Vec::new();
    collect(sandbox, "", &mut out);
    if let Ok(tasks) = std::fs::read_dir(sandbox.join("tasks")) {
        for entry in tasks.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // Not through a symlink: a task's directory, nothing else.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&entry.path(), &format!("tasks/{name}/"), &mut out);
            }
        }
    }
    out.sort();
    out
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !(name.starts_with("stdout") || name.starts_with("stderr")) {
            continue;
        }
        // Regular files only (no symlinks out of the sandbox).
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.push((format!("{prefix}{name}"), entry.path(), meta.len()));
        }
    }
}

/// Copies a sandbox's log files into `archive` under `<prefix>/`.
/// Blocking.
pub fn copy_logs(archive: &dyn LogArchive, prefix: &str, sandbox: &Path) -> ArchiveStats {
    let mut stats = ArchiveStats::default();
    for (suffix, path, size) in log_files(sandbox) {
        let key = format!("{prefix}/{suffix}");
        if size > MAX_ARCHIVED_FILE {
            tracing::warn!(
                key = %key,
                path = %path.display(),
                bytes = size,
                limit = MAX_ARCHIVED_FILE,
                "not archiving a log file larger than the limit"
            );
            stats.skipped += 1;
            continue;
        }
        match archive.put(&key, &path) {
            Ok(n) => {
                stats.files += 1;
                stats.bytes += n;
            }
            Err(e) => {
                tracing::warn!(key = %key, path = %path.display(), error = %e, "cannot archive a log file");
                stats.failed += 1;
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_storage::archive::LocalArchive;

    #[test]
    fn copies_stdout_and_stderr_files_of_the_run_and_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(sandbox.join("tasks/t1")).unwrap();
        std::fs::create_dir_all(sandbox.join("tasks/t2")).unwrap();
        std::fs::create_dir_all(sandbox.join("stdout.d")).unwrap();
        for (p, c) in [
            ("stdout", "now\n"),
            ("stdout.1", "before\n"),
            ("stderr", "err\n"),
            ("data.txt", "not a log"),
            ("tasks/t1/stdout", "t1\n"),
            ("tasks/t1/other", "no"),
            ("tasks/t2/stderr.1", "t2\n"),
        ] {
            std::fs::write(sandbox.join(p), c).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", sandbox.join("stdout.link")).unwrap();
        let archive = LocalArchive::new(dir.path().join("archive")).unwrap();
        let stats = copy_logs(&archive, "fw/ex/c1", &sandbox);
        assert_eq!(
            stats,
            ArchiveStats {
                files: 5,
                bytes: 4 + 7 + 4 + 3 + 3,
                skipped: 0,
                failed: 0
            }
        );
        assert_eq!(
            archive.list("fw/ex/c1").unwrap(),
            vec![
                "fw/ex/c1/stderr",
                "fw/ex/c1/stdout",
                "fw/ex/c1/stdout.1",
                "fw/ex/c1/tasks/t1/stdout",
                "fw/ex/c1/tasks/t2/stderr.1",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        );
        assert_eq!(
            archive.read("fw/ex/c1/stdout.1", 0, 100).unwrap(),
            b"before\n"
        );
    }

    #[test]
    fn skips_files_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::write(sandbox.join("stderr"), "small\n").unwrap();
        // Sparse: takes no disk.
        let big = std::fs::File::create(sandbox.join("stdout")).unwrap();
        big.set_len(MAX_ARCHIVED_FILE + 1).unwrap();
        let archive = LocalArchive::new(dir.path().join("archive")).unwrap();
        let stats = copy_logs(&archive, "f/e/c", &sandbox);
        assert_eq!(stats.files, 1);
        assert_eq!(stats.skipped, 1);
        assert_eq!(archive.list("").unwrap(), vec!["f/e/c/stderr".to_string()]);
    }

    #[test]
    fn an_invalid_prefix_fails_each_file_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stdout"), "x").unwrap();
        let archive = LocalArchive::new(dir.path().join("archive")).unwrap();
        let stats = copy_logs(&archive, "../escape", dir.path());
        assert_eq!(stats.failed, 1);
        assert!(!dir.path().join("escape").exists());
    }
}
