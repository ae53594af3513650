//! Task processes: building the command from a `CommandInfo`, spawning it in
//! its own session / process group, signalling the group, describing exits.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use corral_api::v1::{environment, CommandInfo};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Builds the task's command: `/bin/sh -c value` for shell commands, else
/// `value` exec'ed with `arguments` as its argv (Mesos semantics:
/// `arguments[0]` is argv\[0\]).
pub(crate) fn build_command(info: &CommandInfo, sandbox: &Path) -> Result<Command, String> {
    let value = info
        .value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "CommandInfo has no value".to_string())?;
    let mut cmd = if info.shell() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(value);
        cmd
    } else {
        let mut cmd = Command::new(value);
        if let Some((argv0, rest)) = info.arguments.split_first() {
            cmd.arg0(argv0).args(rest);
        }
        cmd
    };
    // The executor's own environment is inherited; the task's overrides it.
    for var in info.environment.iter().flat_map(|e| &e.variables) {
        match var.r#type() {
            environment::variable::Type::Secret => {
                tracing::warn!(variable = %var.name, "secret environment variables are not supported; skipping");
            }
            _ => {
                cmd.env(&var.name, var.value.as_deref().unwrap_or_default());
            }
        }
    }
    if let Some(user) = info.user.as_deref().filter(|u| !u.is_empty()) {
        // The agent's launcher already switched the executor to the command
        // task's user; a different user per task is not supported.
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        if me.as_deref() != Some(user) {
            tracing::warn!(user = %user, "CommandInfo.user differs from the executor's user; running as the executor's user");
        }
    }
    cmd.current_dir(sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // setsid(2), which is async-signal-safe; it touches no allocator or lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Spawns the command; returns the child and its pid, which is also its
/// process group id.
pub(crate) fn spawn(mut cmd: Command) -> Result<(Child, i32), String> {
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| "spawned process has no pid".to_string())?;
    Ok((child, pid))
}

/// Sends `signal` to the process group `pgid`. A group that no longer exists
/// is not an error.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid, signal = %signal, error = %e, "failed to signal process group")
        }
    }
}

/// `exited with status N` / `terminated with signal NAME`, as Mesos'
/// `WSTRINGIFY` words it (signal names as `strsignal(3)` gives them).
pub(crate) fn describe_exit(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        format!("terminated with signal {}", signal_description(sig))
    } else {
        format!("ended with {status}")
    }
}

fn signal_description(sig: i32) -> String {
    let text = match sig {
        libc::SIGHUP => "Hangup",
        libc::SIGINT => "Interrupt",
        libc::SIGQUIT => "Quit",
        libc::SIGILL => "Illegal instruction",
        libc::SIGTRAP => "Trace/breakpoint trap",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGFPE => "Floating point exception",
        libc::SIGKILL => "Killed",
        libc::SIGUSR1 => "User defined signal 1",
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGUSR2 => "User defined signal 2",
        libc::SIGPIPE => "Broken pipe",
        libc::SIGALRM => "Alarm clock",
        libc::SIGTERM => "Terminated",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "File size limit exceeded",
        _ => return format!("Unknown signal {sig}"),
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits() {
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(libc::SIGKILL)),
            "terminated with signal Killed"
        );
        assert_eq!(
            describe_exit(&ExitStatus::from_raw(libc::SIGTERM)),
            "terminated with signal Terminated"
        );
    }

    #[test]
    fn command_without_value_is_rejected() {
        let info = CommandInfo::default();
        assert!(build_command(&info, Path::new("/")).is_err());
    }

    #[tokio::test]
    async fn exec_form_uses_arguments_as_argv() {
        let dir = std::env::temp_dir();
        let info = CommandInfo {
            shell: Some(false),
            value: Some("/bin/sh".into()),
            arguments: vec![
                "sh".into(),
                "-c".into(),
                "test \"$FOO\" = bar && test \"$(pwd -P)\" = \"$(cd \"$1\" && pwd -P)\"".into(),
                "sh".into(),
                dir.display().to_string(),
            ],
            environment: Some(corral_api::v1::Environment {
                variables: vec![environment::Variable {
                    name: "FOO".into(),
                    value: Some("bar".into()),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        let (mut child, _) = spawn(build_command(&info, &dir).unwrap()).unwrap();
        assert!(child.wait().await.unwrap().success());
    }
}
