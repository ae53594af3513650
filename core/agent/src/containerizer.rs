//! The process containerizer: starts an executor in its own session and
//! process group, with cwd = sandbox and stdout/stderr to sandbox files,
//! reaps it, and signals its whole group.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

/// What to run.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Program (looked up on PATH when relative without a slash).
    pub program: OsString,
    /// `argv[0]` when it should differ from `program`.
    pub arg0: Option<OsString>,
    /// Arguments after `argv[0]`.
    pub args: Vec<OsString>,
    /// Environment set on top of the agent's (less its `MESOS_*` and
    /// `LIBPROCESS_*` variables).
    pub env: Vec<(String, String)>,
    /// Working directory, the sandbox; stdout and stderr go to files there.
    pub sandbox: PathBuf,
}

impl LaunchSpec {
    /// `sh -c <command>`.
    pub fn shell(command: &str, sandbox: &Path) -> Self {
        Self {
            program: "sh".into(),
            arg0: None,
            args: vec!["-c".into(), command.into()],
            env: Vec::new(),
            sandbox: sandbox.to_path_buf(),
        }
    }
}

/// A started executor process. The process is its own process group
/// leader, so its pid is the group id.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    pid: i32,
    exit: watch::Receiver<Option<Option<i32>>>,
}

impl ProcessHandle {
    /// The pid (and process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process has been reaped.
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Waits for the process to be reaped; yields the raw wait status.
    pub async fn wait(&self) -> Option<i32> {
        let mut rx = self.exit.clone();
        let status = match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.flatten(),
            // The reaper is gone: the process was reaped.
            Err(_) => None,
        };
        status
    }

    /// Sends a signal to the whole process group, unless it was reaped.
    pub fn signal(&self, signal: Signal) {
        if self.has_exited() {
            return;
        }
        signal_group(self.pid, signal);
    }

    /// SIGTERM to the group, SIGKILL after `grace` if it still runs, then
    /// waits for it to be reaped.
    pub async fn terminate(&self, grace: Duration) {
        if self.has_exited() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(grace, self.wait()).await.is_err() {
            tracing::info!(
                pid = self.pid,
                "executor did not exit after SIGTERM, sending SIGKILL"
            );
            self.signal(Signal::SIGKILL);
            self.wait().await;
        }
    }
}

fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 {
        return;
    }
    if let Err(e) = killpg(Pid::from_raw(pgid), signal) {
        if e != nix::errno::Errno::ESRCH {
            tracing::warn!(pgid, signal = %signal, error = %e, "failed to signal executor process group");
        }
    }
}

/// Starts a process as `spec` says. `on_exit` runs once it is reaped, with
/// the raw wait status; anything left in its process group is then killed.
pub fn launch(
    spec: &LaunchSpec,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<ProcessHandle> {
    let stdout = std::fs::File::create(spec.sandbox.join("stdout"))?;
    let stderr = std::fs::File::create(spec.sandbox.join("stderr"))?;
    let mut cmd = tokio::process::Command::new(&spec.program);
    if let Some(arg0) = &spec.arg0 {
        cmd.arg0(arg0);
    }
    cmd.args(&spec.args)
        .current_dir(&spec.sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(false);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("MESOS_") || k.starts_with("LIBPROCESS_") {
            cmd.env_remove(&key);
        }
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; it is the only thing done between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| std::io::Error::other("spawned process has no pid"))?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                Some(s.into_raw())
            }
            Err(e) => {
                tracing::warn!(pid, error = %e, "failed to wait for executor process");
                None
            }
        };
        // Whatever the executor left behind in its group goes with it.
        signal_group(pid, Signal::SIGKILL);
        let _ = tx.send(Some(status));
        on_exit(status);
    });
    Ok(ProcessHandle { pid, exit: rx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_in_sandbox_with_own_group_and_output_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = LaunchSpec::shell(
            "echo out; echo err >&2; echo $FOO; pwd; cut -d' ' -f5 /proc/$$/stat; echo $$",
            dir.path(),
        );
        spec.env.push(("FOO".into(), "bar".into()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = launch(&spec, move |status| {
            let _ = tx.send(status);
        })
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, Some(0));
        assert!(handle.has_exited());
        let out = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines[0], "out");
        assert_eq!(lines[1], "bar");
        assert_eq!(
            std::fs::canonicalize(lines[2]).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        // Its own process group: pgid == pid.
        assert_eq!(lines[3], lines[4]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stderr")).unwrap(),
            "err\n"
        );
    }

    #[tokio::test]
    async fn terminate_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LaunchSpec::shell(
            "trap '' TERM; echo ready; while true; do sleep 1; done",
            dir.path(),
        );
        let handle = launch(&spec, |_| {}).unwrap();
        // Wait until the trap is installed.
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if std::fs::read_to_string(dir.path().join("stdout")).unwrap_or_default()
                    == "ready\n"
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            handle.terminate(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        assert!(handle.has_exited());
    }
}
