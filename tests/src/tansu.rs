//! A real tansu broker (the durable build from scripts/tansu.sh, `sqlite://` storage) started, stopped and restarted by a test.
//!
//! The broker keeps its data in `<dir>/tansu.db` (tansu reads a
//! `sqlite://` path relative to its working directory, so it runs in
//! `dir`), listens on a fixed port across restarts, and is killed when the
//! [`Tansu`] is dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The durable tansu binary: `CORRAL_TANSU`, or where `scripts/tansu.sh`
/// caches it.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CORRAL_TANSU") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CORRAL_TANSU={} does not exist", p.display());
        return p;
    }
    let cache = std::env::var_os("CORRAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/corral")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache/corral"));
    let bin = cache.join("tansu-0.6.0-libsql/bin/tansu");
    assert!(
        bin.is_file(),
        "no durable tansu at {}: run scripts/tansu.sh (or set CORRAL_TANSU)",
        bin.display()
    );
    bin
}

/// A tansu broker.
pub struct Tansu {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its directory (data and logs).
    pub dir: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Tansu {
    /// Starts a broker in `dir` on a free port and waits until it accepts
    /// connections.
    pub fn start(dir: &Path) -> Tansu {
        Self::start_on(dir, free_port())
    }

    /// Starts a broker in `dir` on `port`.
    pub fn start_on(dir: &Path, port: u16) -> Tansu {
        std::fs::create_dir_all(dir).expect("tansu dir");
        let mut t = Tansu {
            port,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        };
        t.spawn();
        t
    }

    /// `127.0.0.1:<port>`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log (all runs).
    pub fn log(&self) -> String {
        (0..self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("tansu-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self) {
        let log = self.dir.join(format!("tansu-{}.log", self.starts));
        self.starts += 1;
        let out = std::fs::File::create(&log).expect("tansu log");
        let err = out.try_clone().expect("tansu log");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(bin());
        cmd.arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: only async-signal-safe calls between fork and exec; the
        // broker dies with the test process.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("tansu exited ({status}) during start; log:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 30s; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Stops it (SIGKILL: an outage, not a shutdown) and waits until the
    /// port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
