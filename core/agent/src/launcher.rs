//! The launcher: a small process the agent forks for every container
//! (`corral launcher --config <json>`). It puts itself into the container's
//! cgroups, sets rlimits, the working directory and the user, then execs the
//! executor, so the executor keeps the launcher's pid and the agent never
//! runs task code itself.
//!
//! Its stdout/stderr are already the sandbox files when it starts; any
//! setup error is written there (the agent shows the last line of it when
//! the executor dies before subscribing) and it exits with status 127.

use std::ffi::CString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::isolation::CgroupSpec;

/// Exit status of a launcher that could not start the executor.
pub const LAUNCH_FAILED_STATUS: i32 = 127;

/// One resource limit (`RLimitInfo.RLimit`): `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RLimit {
    /// Mesos' name, e.g. `RLMT_NOFILE`.
    pub resource: String,
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

/// Everything the launcher does, serialised by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfig {
    /// Program to exec (looked up on PATH when it has no slash).
    pub program: String,
    /// Full argv, argv\[0\] first.
    pub argv: Vec<String>,
    /// Working directory (the sandbox).
    pub working_dir: PathBuf,
    /// User to run as (`CommandInfo.user`); the sandbox is given to it.
    pub user: Option<String>,
    /// Resource limits.
    pub rlimits: Vec<RLimit>,
    /// cgroups to create and enter.
    pub cgroup: Option<CgroupSpec>,
}

/// Why the launcher could not exec the executor.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The config is not valid JSON of a [`LaunchConfig`].
    #[error("invalid launcher config: {0}")]
    Config(String),
    /// cgroup setup failed.
    #[error("{0}")]
    Isolation(#[from] crate::isolation::IsolationError),
    /// Another setup step failed.
    #[error("{0}")]
    Setup(String),
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLMT_AS" => libc::RLIMIT_AS,
        "RLMT_CORE" => libc::RLIMIT_CORE,
        "RLMT_CPU" => libc::RLIMIT_CPU,
        "RLMT_DATA" => libc::RLIMIT_DATA,
        "RLMT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLMT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLMT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLMT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLMT_NICE" => libc::RLIMIT_NICE,
        "RLMT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLMT_NPROC" => libc::RLIMIT_NPROC,
        "RLMT_RSS" => libc::RLIMIT_RSS,
        "RLMT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLMT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLMT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLMT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Checks the rlimits name known resources and soft <= hard.
pub fn validate_rlimits(rlimits: &[RLimit]) -> Result<(), String> {
    for r in rlimits {
        if rlimit_resource(&r.resource).is_none() {
            return Err(format!("unknown rlimit type '{}'", r.resource));
        }
        if let (Some(s), Some(h)) = (r.soft, r.hard) {
            if s > h {
                return Err(format!(
                    "rlimit {}: soft limit {s} is above the hard limit {h}",
                    r.resource
                ));
            }
        }
        if r.soft.is_none() != r.hard.is_none() {
            return Err(format!(
                "rlimit {}: soft and hard must both be set or both be unlimited",
                r.resource
            ));
        }
    }
    Ok(())
}

fn setup(config: &LaunchConfig) -> Result<(CString, Vec<CString>), LauncherError> {
    if let Some(cg) = &config.cgroup {
        cg.create_and_enter(std::process::id())?;
    }
    validate_rlimits(&config.rlimits).map_err(LauncherError::Setup)?;
    for r in &config.rlimits {
        let Some(resource) = rlimit_resource(&r.resource) else {
            continue;
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft.unwrap_or(libc::RLIM_INFINITY),
            rlim_max: r.hard.unwrap_or(libc::RLIM_INFINITY),
        };
        // SAFETY: setrlimit reads the struct we pass; no other preconditions.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(LauncherError::Setup(format!(
                "cannot set rlimit {}: {}",
                r.resource,
                std::io::Error::last_os_error()
            )));
        }
    }
    if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
        let u = nix::unistd::User::from_name(user)
            .map_err(|e| LauncherError::Setup(format!("cannot look up user '{user}': {e}")))?
            .ok_or_else(|| LauncherError::Setup(format!("user '{user}' does not exist")))?;
        if u.uid != nix::unistd::geteuid() {
            // The sandbox and its output files belong to the task's user.
            for p in [
                config.working_dir.clone(),
                config.working_dir.join("stdout"),
                config.working_dir.join("stderr"),
            ] {
                if p.exists() {
                    nix::unistd::chown(&p, Some(u.uid), Some(u.gid)).map_err(|e| {
                        LauncherError::Setup(format!("cannot chown {} to {user}: {e}", p.display()))
                    })?;
                }
            }
            let cname = CString::new(user)
                .map_err(|_| LauncherError::Setup("user name contains NUL".into()))?;
            nix::unistd::initgroups(&cname, u.gid)
                .map_err(|e| LauncherError::Setup(format!("initgroups({user}): {e}")))?;
            nix::unistd::setgid(u.gid)
                .map_err(|e| LauncherError::Setup(format!("setgid({}): {e}", u.gid)))?;
            nix::unistd::setuid(u.uid)
                .map_err(|e| LauncherError::Setup(format!("setuid({}): {e}", u.uid)))?;
        }
        std::env::set_var("USER", user);
        std::env::set_var("HOME", &u.dir);
    }
    std::env::set_current_dir(&config.working_dir).map_err(|e| {
        LauncherError::Setup(format!(
            "cannot enter the sandbox {}: {e}",
            config.working_dir.display()
        ))
    })?;
    let program = CString::new(config.program.as_str())
        .map_err(|_| LauncherError::Setup("program contains NUL".into()))?;
    let argv = config
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| LauncherError::Setup("an argument contains NUL".into()))?;
    Ok((program, argv))
}

/// Sets up the container from `config_json` and execs the executor. Only
/// returns on failure.
pub fn run(config_json: &str) -> LauncherError {
    let config: LaunchConfig = match serde_json::from_str(config_json) {
        Ok(c) => c,
        Err(e) => return LauncherError::Config(e.to_string()),
    };
    let (program, argv) = match setup(&config) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let err = if config.program.contains('/') {
        nix::unistd::execv(&program, &argv)
    } else {
        nix::unistd::execvp(&program, &argv)
    };
    let e = match err {
        Ok(never) => match never {},
        Err(e) => e,
    };
    LauncherError::Setup(format!("cannot exec '{}': {e}", config.program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_rlimits_validate() {
        let c = LaunchConfig {
            program: "sh".into(),
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            working_dir: "/tmp".into(),
            user: None,
            rlimits: vec![RLimit {
                resource: "RLMT_NOFILE".into(),
                soft: Some(100),
                hard: Some(200),
            }],
            cgroup: None,
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<LaunchConfig>(&j).unwrap(), c);
        assert!(validate_rlimits(&c.rlimits).is_ok());
        let bad = RLimit {
            resource: "RLMT_NOFILE".into(),
            soft: Some(300),
            hard: Some(200),
        };
        assert!(validate_rlimits(&[bad]).is_err());
        let unknown = RLimit {
            resource: "RLMT_FOO".into(),
            soft: None,
            hard: None,
        };
        assert!(validate_rlimits(&[unknown]).is_err());
        assert!(matches!(run("{not json"), LauncherError::Config(_)));
    }
}
