//! The work directory layout, as Mesos lays it out:
//! `<work_dir>/slaves/<agent_id>/frameworks/<fw>/executors/<ex>/runs/<container_id>`,
//! with a `latest` symlink beside the runs.

use std::path::{Path, PathBuf};

/// Checks an id is safe as one path component: non-empty, not `.`/`..`, no
/// `/`, NUL or control characters (Mesos rejects the same).
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{kind} id is empty"));
    }
    if id == "." || id == ".." {
        return Err(format!("{kind} id '{id}' is not allowed"));
    }
    if id.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(format!(
            "{kind} id '{}' contains '/', '\\' or control characters",
            id.escape_default()
        ));
    }
    Ok(())
}

/// `<work_dir>/slaves/<agent_id>`.
pub fn agent_dir(work_dir: &Path, agent_id: &str) -> PathBuf {
    work_dir.join("slaves").join(agent_id)
}

/// `<agent_dir>/frameworks/<fw>/executors/<ex>/runs`.
pub fn runs_dir(work_dir: &Path, agent_id: &str, framework_id: &str, executor_id: &str) -> PathBuf {
    agent_dir(work_dir, agent_id)
        .join("frameworks")
        .join(framework_id)
        .join("executors")
        .join(executor_id)
        .join("runs")
}

/// The sandbox of one executor run.
pub fn sandbox_dir(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    container_id: &str,
) -> PathBuf {
    runs_dir(work_dir, agent_id, framework_id, executor_id).join(container_id)
}

/// Creates the sandbox and points `runs/latest` at it.
pub fn create_sandbox(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    container_id: &str,
) -> std::io::Result<PathBuf> {
    let dir = sandbox_dir(work_dir, agent_id, framework_id, executor_id, container_id);
    std::fs::create_dir_all(&dir)?;
    let latest = runs_dir(work_dir, agent_id, framework_id, executor_id).join("latest");
    // Replace the link atomically: create beside it, then rename over it.
    let tmp = latest.with_file_name(format!(".latest.{container_id}"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(container_id, &tmp)?;
    std::fs::rename(&tmp, &latest)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_layout() {
        let p = sandbox_dir(Path::new("/w"), "A-S0", "F-1", "e1", "c0ffee");
        assert_eq!(
            p,
            PathBuf::from("/w/slaves/A-S0/frameworks/F-1/executors/e1/runs/c0ffee")
        );
    }

    #[test]
    fn creates_sandbox_and_latest_link() {
        let dir = tempfile::tempdir().unwrap();
        let a = create_sandbox(dir.path(), "S0", "F", "E", "run1").unwrap();
        assert!(a.is_dir());
        let b = create_sandbox(dir.path(), "S0", "F", "E", "run2").unwrap();
        let latest = runs_dir(dir.path(), "S0", "F", "E").join("latest");
        assert_eq!(
            std::fs::canonicalize(latest).unwrap(),
            std::fs::canonicalize(b).unwrap()
        );
    }

    #[test]
    fn rejects_unsafe_ids() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", "a\nb"] {
            assert!(validate_id("task", bad).is_err(), "{bad:?}");
        }
        for good in ["task-1", "my.task", "a b", "ünï"] {
            assert!(validate_id("task", good).is_ok(), "{good:?}");
        }
    }
}
