//! Container isolation: the `--isolation` isolators, the cgroups a
//! container gets (created by the launcher through cgroups-rs, v1 or v2),
//! and reading a container's usage back (cgroup accounting, or `/proc` for
//! the posix isolators).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::cpu::CpuController;
use cgroups_rs::memory::MemController;
use cgroups_rs::{Cgroup, CgroupPid};
use serde::{Deserialize, Serialize};

/// Mesos' minimum cpu.shares.
pub const MIN_CPU_SHARES: u64 = 2;
/// cpu.shares per cpu.
pub const CPU_SHARES_PER_CPU: f64 = 1024.0;
/// CFS period Mesos uses.
pub const CFS_PERIOD: Duration = Duration::from_millis(100);
/// Mesos' minimum CFS quota.
pub const MIN_CFS_QUOTA: Duration = Duration::from_millis(1);
/// Mesos' minimum memory limit.
pub const MIN_MEMORY_BYTES: u64 = 32 << 20;
/// cgroup filesystem root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why isolation could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `--isolation` names something unknown or unusable here.
    #[error("{0}")]
    Flag(String),
    /// A cgroup operation failed.
    #[error("cgroup {path}: {message}")]
    Cgroup {
        /// The cgroup path (relative to the hierarchy).
        path: String,
        /// What failed.
        message: String,
    },
}

/// Which cgroup version the machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>`.
    V1,
    /// The unified hierarchy at /sys/fs/cgroup.
    V2,
}

/// The isolators in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// cgroups/cpu: cpu.shares (+ CFS quota when `cfs`).
    pub cgroups_cpu: bool,
    /// cgroups/mem: hard memory limit, OOM detection.
    pub cgroups_mem: bool,
    /// disk/du: periodic sandbox usage.
    pub disk_du: bool,
    /// posix/cpu: cpu usage from /proc.
    pub posix_cpu: bool,
    /// posix/mem: memory usage from /proc.
    pub posix_mem: bool,
    /// --cgroups_enable_cfs.
    pub cfs: bool,
    /// --enforce_container_disk_quota.
    pub enforce_disk: bool,
    /// The cgroup version, when a cgroups isolator is on.
    pub version: Option<CgroupVersion>,
}

impl Isolation {
    /// Parses `--isolation` and checks the machine can do it.
    pub fn from_flags(value: &str, cfs: bool, enforce_disk: bool) -> Result<Self, IsolationError> {
        let mut iso = Isolation {
            cfs,
            enforce_disk,
            ..Default::default()
        };
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "cgroups/cpu" => iso.cgroups_cpu = true,
                "cgroups/mem" => iso.cgroups_mem = true,
                "disk/du" => iso.disk_du = true,
                "posix/cpu" => iso.posix_cpu = true,
                "posix/mem" => iso.posix_mem = true,
                // Mesos' defaults that need no work here.
                "posix/disk" => iso.disk_du = true,
                "filesystem/posix" => {}
                other => {
                    return Err(IsolationError::Flag(format!(
                        "--isolation: unknown isolator '{other}' (supported: cgroups/cpu, \
                         cgroups/mem, disk/du, posix/cpu, posix/mem, filesystem/posix)"
                    )))
                }
            }
        }
        if iso.cgroups_cpu || iso.cgroups_mem {
            let version = detect_version().ok_or_else(|| {
                IsolationError::Flag(format!(
                    "--isolation={value}: cgroups are not mounted at {CGROUP_ROOT}; use \
                     posix/cpu,posix/mem on this machine"
                ))
            })?;
            if version == CgroupVersion::V1 {
                for (on, controller) in [
                    (iso.cgroups_cpu, "cpu"),
                    (iso.cgroups_cpu, "cpuacct"),
                    (iso.cgroups_mem, "memory"),
                ] {
                    if on && v1_mount(controller).is_none() {
                        return Err(IsolationError::Flag(format!(
                            "--isolation={value}: the cgroup v1 '{controller}' hierarchy is not mounted"
                        )));
                    }
                }
            }
            if !nix::unistd::geteuid().is_root() {
                return Err(IsolationError::Flag(format!(
                    "--isolation={value}: creating cgroups needs root"
                )));
            }
            iso.version = Some(version);
        }
        if enforce_disk && !iso.disk_du {
            tracing::warn!(
                "--enforce_container_disk_quota has no effect without the disk/du isolator"
            );
        }
        Ok(iso)
    }

    /// Whether any cgroups isolator is on.
    pub fn uses_cgroups(&self) -> bool {
        self.cgroups_cpu || self.cgroups_mem
    }

    /// The cgroup a container with these limits gets, if any.
    pub fn cgroup_spec(
        &self,
        cgroups_root: &str,
        container_id: &str,
        cpus: f64,
        mem_mb: f64,
    ) -> Option<CgroupSpec> {
        let version = self.version?;
        if !self.uses_cgroups() {
            return None;
        }
        let mut spec = CgroupSpec {
            path: format!("{}/{}", cgroups_root.trim_matches('/'), container_id),
            version,
            cpu_shares: None,
            cfs_quota_us: None,
            cfs_period_us: None,
            mem_limit_bytes: None,
        };
        if self.cgroups_cpu {
            spec.cpu_shares = Some(((cpus * CPU_SHARES_PER_CPU) as u64).max(MIN_CPU_SHARES));
            if self.cfs {
                let period = CFS_PERIOD.as_micros() as u64;
                let quota = ((cpus * period as f64) as i64).max(MIN_CFS_QUOTA.as_micros() as i64);
                spec.cfs_period_us = Some(period);
                spec.cfs_quota_us = Some(quota);
            }
        }
        if self.cgroups_mem {
            let bytes = ((mem_mb * 1024.0 * 1024.0) as u64).max(MIN_MEMORY_BYTES);
            spec.mem_limit_bytes = Some(bytes);
        }
        Some(spec)
    }
}

/// The cgroup version of this machine, if cgroups are mounted.
pub fn detect_version() -> Option<CgroupVersion> {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").is_file() {
        return Some(CgroupVersion::V2);
    }
    if v1_mount("memory").is_some() || v1_mount("cpu").is_some() {
        return Some(CgroupVersion::V1);
    }
    None
}

/// The mount point of a cgroup v1 controller, from /proc/self/mountinfo.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    v1_mount_in(&text, controller)
}

fn v1_mount_in(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or("");
        if super_opts.split(',').any(|o| o == controller) {
            return pre.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

/// What the launcher sets up for a container (serialised into its config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// Path under each hierarchy: `<cgroups_root>/<container_id>`.
    pub path: String,
    /// Which hierarchy layout.
    pub version: CgroupVersion,
    /// cpu.shares (cpu.weight on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds.
    pub cfs_quota_us: Option<i64>,
    /// CFS period in microseconds.
    pub cfs_period_us: Option<u64>,
    /// Hard memory limit.
    pub mem_limit_bytes: Option<u64>,
}

impl CgroupSpec {
    fn controllers(&self) -> Vec<String> {
        let mut c = Vec::new();
        if self.cpu_shares.is_some() {
            c.push("cpu".to_string());
            if self.version == CgroupVersion::V1 {
                c.push("cpuacct".to_string());
            }
        }
        if self.mem_limit_bytes.is_some() {
            c.push("memory".to_string());
        }
        c
    }

    fn cg_err(&self, message: impl std::fmt::Display) -> IsolationError {
        IsolationError::Cgroup {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Creates the cgroup with its limits and moves process `pid` into it.
    /// Run by the launcher for itself, before it execs the executor.
    pub fn create_and_enter(&self, pid: u32) -> Result<(), IsolationError> {
        self.create_and_enter_pid(Some(pid))
    }

    /// Creates the cgroup with its limits and, when given, moves `pid` in.
    pub fn create_and_enter_pid(&self, pid: Option<u32>) -> Result<(), IsolationError> {
        validate_cgroup_path(&self.path).map_err(|e| self.cg_err(e))?;
        let hier = cgroups_rs::hierarchies::auto();
        let cg = Cgroup::new_with_specified_controllers(hier, &self.path, Some(self.controllers()))
            .map_err(|e| self.cg_err(format!("cannot create: {e}")))?;
        self.write_limits(&cg)?;
        if let Some(pid) = pid {
            cg.add_task_by_tgid(CgroupPid::from(u64::from(pid)))
                .map_err(|e| self.cg_err(format!("cannot move pid {pid} in: {e}")))?;
        }
        Ok(())
    }

    /// Writes new limits into the existing cgroup (more tasks joined the
    /// container, or they left).
    pub fn update_limits(&self) -> Result<(), IsolationError> {
        validate_cgroup_path(&self.path).map_err(|e| self.cg_err(e))?;
        let hier = cgroups_rs::hierarchies::auto();
        let cg = Cgroup::load_with_specified_controllers(hier, &self.path, self.controllers());
        if !self.exists() {
            return Err(self.cg_err("does not exist"));
        }
        self.write_limits(&cg)
    }

    fn write_limits(&self, cg: &Cgroup) -> Result<(), IsolationError> {
        if let Some(shares) = self.cpu_shares {
            let cpu: &CpuController = cg
                .controller_of()
                .ok_or_else(|| self.cg_err("no cpu controller"))?;
            // v2 has cpu.weight (1..10000) instead of cpu.shares (2..262144).
            let value = match self.version {
                CgroupVersion::V1 => shares,
                CgroupVersion::V2 => shares_to_weight(shares),
            };
            cpu.set_shares(value)
                .map_err(|e| self.cg_err(format!("cannot set cpu shares: {e}")))?;
            if let (Some(quota), Some(period)) = (self.cfs_quota_us, self.cfs_period_us) {
                cpu.set_cfs_quota_and_period(Some(quota), Some(period))
                    .map_err(|e| self.cg_err(format!("cannot set the CFS quota: {e}")))?;
            }
        }
        if let Some(limit) = self.mem_limit_bytes {
            let mem: &MemController = cg
                .controller_of()
                .ok_or_else(|| self.cg_err("no memory controller"))?;
            mem.set_limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .map_err(|e| self.cg_err(format!("cannot set the memory limit: {e}")))?;
        }
        Ok(())
    }

    /// The directories of this cgroup, one per hierarchy it lives in.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![Path::new(CGROUP_ROOT).join(&self.path)],
            CgroupVersion::V1 => self
                .controllers()
                .iter()
                .filter_map(|c| v1_mount(c).map(|m| m.join(&self.path)))
                .collect(),
        }
    }

    fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        match self.version {
            CgroupVersion::V2 => Some(Path::new(CGROUP_ROOT).join(&self.path)),
            CgroupVersion::V1 => {
                if !self.controllers().iter().any(|c| c == controller) {
                    return None;
                }
                v1_mount(controller).map(|m| m.join(&self.path))
            }
        }
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.dir_of("memory") else {
            return 0;
        };
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        keyed(&text).get("oom_kill").copied().unwrap_or(0)
    }

    /// Every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = BTreeSet::new();
        for dir in self.dirs() {
            let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        out.into_iter().collect()
    }

    /// SIGKILLs every process in the cgroup until it is empty (bounded).
    pub fn kill_all(&self) {
        if self.version == CgroupVersion::V2 {
            let kill = Path::new(CGROUP_ROOT).join(&self.path).join("cgroup.kill");
            if kill.is_file() && std::fs::write(&kill, "1").is_ok() {
                return;
            }
        }
        let emptied = retry_until(Duration::from_millis(500), || {
            let pids = self.pids();
            for pid in pids.iter().copied().filter(|p| *p > 1) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            pids.is_empty()
        });
        if !emptied {
            tracing::warn!(cgroup = %self.path, "processes left in the cgroup after SIGKILL");
        }
    }

    /// Kills what is left and removes the cgroup directories. Errors are
    /// logged: a cgroup that cannot be removed now is left behind.
    pub fn destroy(&self) {
        self.kill_all();
        for dir in self.dirs() {
            if !dir.is_dir() {
                continue;
            }
            // The kernel frees a cgroup once its last task is reaped.
            let removed = retry_until(Duration::from_millis(500), || {
                std::fs::remove_dir(&dir).is_ok() || !dir.exists()
            });
            if !removed {
                tracing::warn!(cgroup = %dir.display(), "cannot remove cgroup");
            }
        }
    }

    /// Usage and limits from cgroup accounting.
    pub fn usage(&self) -> Usage {
        let mut u = Usage {
            cpus_limit: None,
            mem_limit_bytes: self.mem_limit_bytes,
            ..Default::default()
        };
        let ticks = clock_ticks();
        if let Some(dir) = self.dir_of("cpu") {
            let stat = keyed(&std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default());
            u.cpus_nr_periods = stat.get("nr_periods").copied();
            u.cpus_nr_throttled = stat.get("nr_throttled").copied();
            match self.version {
                CgroupVersion::V1 => {
                    u.cpus_throttled_time_secs =
                        stat.get("throttled_time").map(|n| *n as f64 / 1e9);
                    if let Some(acct) = self.dir_of("cpuacct") {
                        let s = keyed(
                            &std::fs::read_to_string(acct.join("cpuacct.stat")).unwrap_or_default(),
                        );
                        u.cpus_user_time_secs = s.get("user").map(|t| *t as f64 / ticks);
                        u.cpus_system_time_secs = s.get("system").map(|t| *t as f64 / ticks);
                        u.cpu_usage_secs =
                            read_u64(&acct.join("cpuacct.usage")).map(|n| n as f64 / 1e9);
                    }
                }
                CgroupVersion::V2 => {
                    u.cpus_throttled_time_secs =
                        stat.get("throttled_usec").map(|n| *n as f64 / 1e6);
                    u.cpus_user_time_secs = stat.get("user_usec").map(|n| *n as f64 / 1e6);
                    u.cpus_system_time_secs = stat.get("system_usec").map(|n| *n as f64 / 1e6);
                    u.cpu_usage_secs = stat.get("usage_usec").map(|n| *n as f64 / 1e6);
                }
            }
            if let (Some(q), Some(p)) = (self.cfs_quota_us, self.cfs_period_us) {
                u.cpus_limit = Some(q as f64 / p as f64);
            } else if let Some(s) = self.cpu_shares {
                u.cpus_limit = Some(s as f64 / CPU_SHARES_PER_CPU);
            }
        }
        if let Some(dir) = self.dir_of("memory") {
            let stat = keyed(&std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default());
            match self.version {
                CgroupVersion::V1 => {
                    u.mem_rss_bytes = stat.get("total_rss").or(stat.get("rss")).copied();
                    u.mem_cache_bytes = stat.get("total_cache").or(stat.get("cache")).copied();
                    u.mem_total_bytes = read_u64(&dir.join("memory.usage_in_bytes"));
                    u.mem_max_bytes = read_u64(&dir.join("memory.max_usage_in_bytes"));
                }
                CgroupVersion::V2 => {
                    u.mem_rss_bytes = stat.get("anon").copied();
                    u.mem_cache_bytes = stat.get("file").copied();
                    u.mem_total_bytes = read_u64(&dir.join("memory.current"));
                    u.mem_max_bytes = read_u64(&dir.join("memory.peak"));
                }
            }
        }
        u.processes = Some(self.pids().len() as u64);
        u
    }
}

/// Removes the `--cgroups_root` directories when no container is left in
/// them (a non-empty one stays).
/// Retries `attempt` every 10 ms until it reports success or `timeout`
/// passes; returns whether it succeeded. For kernel state that settles
/// asynchronously (a cgroup emptied by SIGKILL, removable once its tasks
/// are reaped) — a condition with a deadline, not a fixed sleep.
pub fn retry_until(timeout: Duration, mut attempt: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if attempt() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn remove_root_if_empty(version: Option<CgroupVersion>, root: &str) {
    if validate_cgroup_path(root).is_err() {
        return;
    }
    let dirs: Vec<PathBuf> = match version {
        None => return,
        Some(CgroupVersion::V2) => vec![Path::new(CGROUP_ROOT).join(root)],
        Some(CgroupVersion::V1) => ["cpu", "cpuacct", "memory"]
            .iter()
            .filter_map(|c| v1_mount(c).map(|m| m.join(root)))
            .collect(),
    };
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Removes container cgroups under `--cgroups_root` that no process uses,
/// that are not in `keep` and that are older than `min_age` (so a cgroup
/// another agent's launcher has just created is never touched). Returns
/// how many were removed.
pub fn remove_stale_cgroups(
    version: Option<CgroupVersion>,
    root: &str,
    keep: &BTreeSet<String>,
    min_age: Duration,
) -> usize {
    if validate_cgroup_path(root).is_err() {
        return 0;
    }
    let bases: Vec<PathBuf> = match version {
        None => return 0,
        Some(CgroupVersion::V2) => vec![Path::new(CGROUP_ROOT).join(root)],
        Some(CgroupVersion::V1) => ["cpu", "cpuacct", "memory"]
            .iter()
            .filter_map(|c| v1_mount(c).map(|m| m.join(root)))
            .collect(),
    };
    let mut removed = 0;
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if keep.contains(&name) || uuid::Uuid::parse_str(&name).is_err() || !path.is_dir() {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            let idle = std::fs::read_to_string(path.join("cgroup.procs"))
                .map(|p| p.trim().is_empty())
                .unwrap_or(false);
            if old && idle && std::fs::remove_dir(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// cpu.shares to cgroup v2 cpu.weight, as runc and systemd convert it.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Cgroup paths are relative and made of plain components.
fn validate_cgroup_path(path: &str) -> Result<(), String> {
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.chars().any(char::is_control))
    {
        return Err(format!("invalid cgroup path '{path}'"));
    }
    Ok(())
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A container's usage (what ResourceStatistics reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Processes in the container.
    pub processes: Option<u64>,
    /// User CPU time.
    pub cpus_user_time_secs: Option<f64>,
    /// System CPU time.
    pub cpus_system_time_secs: Option<f64>,
    /// Total CPU time (cpuacct.usage / usage_usec).
    pub cpu_usage_secs: Option<f64>,
    /// CPU limit (quota / period, else shares / 1024).
    pub cpus_limit: Option<f64>,
    /// CFS periods elapsed.
    pub cpus_nr_periods: Option<u64>,
    /// CFS periods throttled.
    pub cpus_nr_throttled: Option<u64>,
    /// Time throttled.
    pub cpus_throttled_time_secs: Option<f64>,
    /// Resident anonymous memory.
    pub mem_rss_bytes: Option<u64>,
    /// Page cache.
    pub mem_cache_bytes: Option<u64>,
    /// Total memory charged.
    pub mem_total_bytes: Option<u64>,
    /// Peak memory charged.
    pub mem_max_bytes: Option<u64>,
    /// Memory limit.
    pub mem_limit_bytes: Option<u64>,
    /// Disk limit (disk/du).
    pub disk_limit_bytes: Option<u64>,
    /// Sandbox usage (disk/du).
    pub disk_used_bytes: Option<u64>,
}

/// One scan of /proc: parent -> children and per-process (utime, stime,
/// rss pages).
#[derive(Debug, Default)]
pub struct ProcSnapshot {
    children: BTreeMap<i32, Vec<i32>>,
    stats: BTreeMap<i32, (u64, u64, u64)>,
}

impl ProcSnapshot {
    /// Scans /proc.
    pub fn take() -> Self {
        let mut snap = ProcSnapshot::default();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return snap;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            // f[0]=state f[1]=ppid ... f[11]=utime f[12]=stime ... f[21]=rss
            let ppid = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            let utime = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            let stime = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            let rss = f.get(21).and_then(|v| v.parse().ok()).unwrap_or(0);
            snap.children.entry(ppid).or_default().push(pid);
            snap.stats.insert(pid, (utime, stime, rss));
        }
        snap
    }

    /// Usage of `root` and every descendant (the posix isolators).
    pub fn tree_usage(&self, root: i32) -> Usage {
        let ticks = clock_ticks();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let mut u = Usage::default();
        if !self.stats.contains_key(&root) {
            return u;
        }
        let (mut ut, mut st, mut rss, mut n) = (0u64, 0u64, 0u64, 0u64);
        let mut stack = vec![root];
        let mut seen = BTreeSet::new();
        while let Some(p) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            if let Some((a, b, c)) = self.stats.get(&p) {
                ut += a;
                st += b;
                rss += c;
                n += 1;
            }
            if let Some(c) = self.children.get(&p) {
                stack.extend(c);
            }
        }
        u.processes = Some(n);
        u.cpus_user_time_secs = Some(ut as f64 / ticks);
        u.cpus_system_time_secs = Some(st as f64 / ticks);
        u.mem_rss_bytes = Some(rss * page);
        u
    }
}

/// Bytes used under `dir` (files' allocated blocks, not following symlinks),
/// like `du -s`, leaving out the directories in `exclude` (persistent
/// volumes mounted into a sandbox). Stops counting past a million entries
/// to stay bounded.
pub fn disk_usage(dir: &Path, exclude: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    const MAX_ENTRIES: usize = 1_000_000;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    let mut inodes = BTreeSet::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return total;
            }
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.nlink() > 1 && !inodes.insert((meta.dev(), meta.ino())) {
                continue;
            }
            if meta.is_dir() && exclude.iter().any(|x| *x == e.path()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_isolators() {
        let iso = Isolation::from_flags("posix/cpu,posix/mem", false, false).unwrap();
        assert!(iso.posix_cpu && iso.posix_mem && !iso.uses_cgroups());
        let iso = Isolation::from_flags("disk/du", false, true).unwrap();
        assert!(iso.disk_du && iso.enforce_disk);
        let err = Isolation::from_flags("cgroups/gpu", false, false).unwrap_err();
        assert!(err.to_string().contains("cgroups/gpu"), "{err}");
        assert!(iso.cgroup_spec("corral", "c1", 1.0, 64.0).is_none());
    }

    #[test]
    fn cgroup_limits_follow_mesos() {
        let iso = Isolation {
            cgroups_cpu: true,
            cgroups_mem: true,
            cfs: true,
            version: Some(CgroupVersion::V1),
            ..Default::default()
        };
        let spec = iso.cgroup_spec("corral", "abc", 0.5, 64.0).unwrap();
        assert_eq!(spec.path, "corral/abc");
        assert_eq!(spec.cpu_shares, Some(512));
        assert_eq!(spec.cfs_period_us, Some(100_000));
        assert_eq!(spec.cfs_quota_us, Some(50_000));
        assert_eq!(spec.mem_limit_bytes, Some(64 << 20));
        let tiny = iso.cgroup_spec("corral", "abc", 0.0001, 1.0).unwrap();
        assert_eq!(tiny.cpu_shares, Some(MIN_CPU_SHARES));
        assert_eq!(tiny.cfs_quota_us, Some(1000));
        assert_eq!(tiny.mem_limit_bytes, Some(MIN_MEMORY_BYTES));
        assert!(validate_cgroup_path("../x").is_err());
        assert!(validate_cgroup_path("/x").is_err());
        assert!(validate_cgroup_path("corral/abc").is_ok());
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    #[test]
    fn finds_v1_mounts_exactly() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            v1_mount_in(mi, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            v1_mount_in(mi, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(v1_mount_in(mi, "pids"), None);
    }

    #[test]
    fn stale_cgroups_are_removed_live_and_kept_ones_stay() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root to create cgroups (run the suite as root, as CI does)"
        );
        let version = detect_version().expect("this test needs cgroups mounted at /sys/fs/cgroup");
        let root = format!("corral-unit-{}", std::process::id());
        let iso = Isolation {
            cgroups_mem: true,
            version: Some(version),
            ..Default::default()
        };
        let stale = uuid::Uuid::new_v4().to_string();
        let kept = uuid::Uuid::new_v4().to_string();
        let live = uuid::Uuid::new_v4().to_string();
        let spec = |id: &str| iso.cgroup_spec(&root, id, 1.0, 64.0).unwrap();
        spec(&stale).create_and_enter_pid(None).unwrap();
        spec(&kept).create_and_enter_pid(None).unwrap();
        // A live one: a sleeping child inside it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        spec(&live).create_and_enter_pid(Some(child.id())).unwrap();
        let keep: BTreeSet<String> = [kept.clone()].into_iter().collect();
        let removed = remove_stale_cgroups(Some(version), &root, &keep, Duration::ZERO);
        assert_eq!(removed, 1);
        assert!(!spec(&stale).exists());
        assert!(spec(&kept).exists());
        assert!(spec(&live).exists());
        assert_eq!(spec(&live).pids(), vec![child.id() as i32]);
        spec(&live).destroy();
        let _ = child.wait();
        spec(&kept).destroy();
        assert!(!spec(&live).exists() && !spec(&kept).exists());
        remove_root_if_empty(Some(version), &root);
    }

    #[test]
    fn process_tree_usage_counts_self() {
        let u = ProcSnapshot::take().tree_usage(std::process::id() as i32);
        assert!(u.processes.unwrap_or(0) >= 1);
        assert!(u.mem_rss_bytes.unwrap_or(0) > 0);
    }

    #[test]
    fn du_counts_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), vec![1u8; 50_000]).unwrap();
        assert!(disk_usage(dir.path(), &[]) >= 150_000);
        // An excluded directory (a mounted volume) is not counted.
        let d = disk_usage(dir.path(), &[dir.path().join("d")]);
        assert!((100_000..150_000).contains(&d), "{d}");
    }
}
