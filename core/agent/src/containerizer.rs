//! The process side of the Mesos containerizer: starts an executor in its
//! own session and process group, with cwd = sandbox and stdout/stderr to
//! sandbox files, or to pipes read by `corral logger` processes under the
//! logrotate container logger (through the launcher when one is given:
//! cgroups, rlimits, user), reaps it, and signals its whole group. A
//! recovered executor (not our child any more) is watched through a pidfd.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::isolation::CgroupSpec;
use crate::launcher::{LaunchConfig, RLimit};
use crate::logrotate::{self, LogrotateSettings};

/// Where an executor's stdout and stderr go.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ContainerLogger {
    /// Straight into `<sandbox>/stdout` and `<sandbox>/stderr`, unbounded.
    #[default]
    Sandbox,
    /// Through pipes to one `<corral> logger` process per stream, which
    /// rotates the sandbox files by size.
    Logrotate {
        /// The corral binary that runs `logger`.
        corral: PathBuf,
        /// Sizes and rotated files kept, per stream.
        settings: LogrotateSettings,
    },
}

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
    /// Run through `<launcher> launcher --config <json>`, which sets up the
    /// container and execs the program.
    pub launcher: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// Resource limits.
    pub rlimits: Vec<RLimit>,
    /// cgroups the launcher creates and enters.
    pub cgroup: Option<CgroupSpec>,
    /// Where stdout and stderr go.
    pub logger: ContainerLogger,
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
            launcher: None,
            user: None,
            rlimits: Vec::new(),
            cgroup: None,
            logger: ContainerLogger::Sandbox,
        }
    }

    fn launch_config(&self) -> LaunchConfig {
        let program = self.program.to_string_lossy().into_owned();
        let mut argv = vec![self
            .arg0
            .as_ref()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.clone())];
        argv.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        LaunchConfig {
            program,
            argv,
            working_dir: self.sandbox.clone(),
            user: self.user.clone(),
            rlimits: self.rlimits.clone(),
            cgroup: self.cgroup.clone(),
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
    launch_logged(spec, on_exit).map(|(process, _)| process)
}

/// [`launch`], also returning the logger processes of the logrotate
/// container logger (none for the sandbox logger). The loggers exit once
/// the last process holding the executor's stdout/stderr is gone.
pub fn launch_logged(
    spec: &LaunchSpec,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<(ProcessHandle, Vec<ProcessHandle>)> {
    let mut loggers = Vec::new();
    let (stdout, stderr): (Stdio, Stdio) = match &spec.logger {
        ContainerLogger::Sandbox => (
            std::fs::File::create(spec.sandbox.join("stdout"))?.into(),
            std::fs::File::create(spec.sandbox.join("stderr"))?.into(),
        ),
        ContainerLogger::Logrotate { corral, settings } => {
            let out =
                logrotate::spawn_logger(corral, &spec.sandbox.join("stdout"), settings.stdout)
                    .map_err(|e| {
                        std::io::Error::other(format!("cannot start the stdout logger: {e}"))
                    })?;
            loggers.push(out.process);
            let err =
                logrotate::spawn_logger(corral, &spec.sandbox.join("stderr"), settings.stderr)
                    .map_err(|e| {
                        std::io::Error::other(format!("cannot start the stderr logger: {e}"))
                    })?;
            loggers.push(err.process);
            (out.pipe.into(), err.pipe.into())
        }
    };
    let mut cmd = match &spec.launcher {
        Some(launcher) => {
            let config = serde_json::to_string(&spec.launch_config())
                .map_err(|e| std::io::Error::other(format!("launcher config: {e}")))?;
            let mut cmd = tokio::process::Command::new(launcher);
            cmd.args(["launcher", "--config"]).arg(config);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(&spec.program);
            if let Some(arg0) = &spec.arg0 {
                cmd.arg0(arg0);
            }
            cmd.args(&spec.args);
            cmd
        }
    };
    cmd.current_dir(&spec.sandbox)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
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
    // SAFETY: `detach_in_child` makes only async-signal-safe system calls
    // and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(detach_in_child);
    }
    let child = cmd.spawn()?;
    // Our copies of the pipes' write ends go with the command, so the
    // loggers see EOF once the executor's processes are gone.
    drop(cmd);
    let process = reap_child(child, true, on_exit)?;
    Ok((process, loggers))
}

/// Run between fork and exec of every process the agent starts (executors,
/// loggers): a session of its own, and no descriptor of the agent's but
/// stdin, stdout and stderr. A descriptor another thread of the agent had
/// open without close-on-exec at the moment of the fork would otherwise
/// live as long as the executor: the JVM of Hadoop's client (HDFS-backed
/// volumes) creates its child-process pipes that way, and waits for EOF on
/// one of them, so an executor started at that moment held a volume's
/// write-back for as long as its task ran.
pub(crate) fn detach_in_child() -> std::io::Result<()> {
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    // SAFETY: plain system calls on descriptor numbers; nothing is read or
    // written in the parent's memory.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked != 0 {
        // Kernels before 5.11: mark what a process usually has open.
        for fd in 3..4096 {
            // SAFETY: as above; a descriptor that is not open fails alone.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Reaps a child in the background:/// Reaps a child in the background: `on_exit` runs with its raw wait
/// status; with `kill_group`, whatever is left in its process group is
/// killed first.
pub(crate) fn reap_child(
    mut child: tokio::process::Child,
    kill_group: bool,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<ProcessHandle> {
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
                tracing::warn!(pid, error = %e, "failed to wait for a child process");
                None
            }
        };
        if kill_group {
            // Whatever the executor left behind in its group goes with it.
            signal_group(pid, Signal::SIGKILL);
        }
        let _ = tx.send(Some(status));
        on_exit(status);
    });
    Ok(ProcessHandle { pid, exit: rx })
}

/// Watches a live process that is not our child (an executor started by a
/// previous run of the agent) through a pidfd. `on_exit` runs once it is
/// gone (with no wait status: only its parent could reap it).
pub fn adopt(
    pid: i32,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<ProcessHandle> {
    watch_pid(pid, true, on_exit)
}

/// Watches a live process that is not our child (a logger started by a
/// previous run of the agent) until it is gone; nothing else is signalled.
pub fn watch(pid: i32) -> std::io::Result<ProcessHandle> {
    watch_pid(pid, false, |_| {})
}

fn watch_pid(
    pid: i32,
    kill_group: bool,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<ProcessHandle> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if pid <= 1 {
        return Err(std::io::Error::other(format!(
            "refusing to adopt pid {pid}"
        )));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let afd = tokio::io::unix::AsyncFd::with_interest(owned, tokio::io::Interest::READABLE)?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        // A pidfd becomes readable when the process exits.
        let _ = afd.readable().await;
        if kill_group {
            signal_group(pid, Signal::SIGKILL);
        }
        let _ = tx.send(Some(None));
        on_exit(None);
    });
    Ok(ProcessHandle { pid, exit: rx })
}

/// Whether a process exists (and is not a zombie).
pub fn is_alive(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Start time of a process (clock ticks since boot), to tell a recovered
/// pid from a reused one.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_process_inherits_no_descriptor_of_the_agent_but_stdio() {
        // A pipe another thread could hold open without close-on-exec
        // (the JVM's child-process pipes) at the moment of the fork.
        let (read, write) = nix::unistd::pipe().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&write);
        let check = format!("test -e /proc/self/fd/{fd} && echo open || echo closed");
        let run = |detach: bool| {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", &check]);
            if detach {
                // SAFETY: as in launch.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut cmd, detach_in_child);
                }
            }
            String::from_utf8(cmd.output().unwrap().stdout).unwrap()
        };
        assert_eq!(
            run(false),
            "open\n",
            "the check sees an inherited descriptor"
        );
        assert_eq!(run(true), "closed\n");
        drop((read, write));
    }

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

    #[tokio::test]
    async fn adopts_a_process_that_is_not_a_child() {
        // A grandchild: `sh` starts `sleep` in a session of its own and
        // exits once the grandchild has written its pid (from inside the
        // new session, so it is past `setsid` and out of the shell's
        // process group before the shell exits).
        let dir = tempfile::tempdir().unwrap();
        let spec = LaunchSpec::shell(
            "setsid sh -c 'echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 30' >/dev/null 2>&1 & \
             while [ ! -s pid ]; do :; done",
            dir.path(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        launch(&spec, move |s| {
            let _ = tx.send(s);
        })
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(is_alive(pid));
        assert!(start_time(pid).is_some());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let h = adopt(pid, move |s| {
            let _ = tx.send(s);
        })
        .unwrap();
        assert!(!h.has_exited());
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, None);
        assert!(h.has_exited());
    }
}
