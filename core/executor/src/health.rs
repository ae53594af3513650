//! Health checks (`TaskInfo.health_check`) and checks (`TaskInfo.check`) of
//! a task, run by the executor as Mesos' checkers run them: HTTP (GET
//! 127.0.0.1:port/path, healthy on 2xx/3xx or the listed statuses), TCP
//! (connect) and COMMAND (exit 0, in the sandbox), after `delay_seconds`,
//! every `interval_seconds`, each bounded by `timeout_seconds`. Health:
//! failures within `grace_period_seconds` before the first success are
//! ignored; every failure is reported with whether
//! `consecutive_failures` is reached (the executor then kills the task);
//! a success is reported when it changes the health. Checks: the result is
//! reported whenever it changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::v1::{
    check_info, health_check, CheckInfo, CheckStatusInfo, CommandInfo, HealthCheck,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::process;

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Probe {
    /// Run a command; 0 is success.
    Command(CommandInfo),
    /// HTTP GET.
    Http {
        scheme: String,
        port: u16,
        path: String,
        statuses: Vec<u32>,
    },
    /// TCP connect.
    Tcp { port: u16 },
}

impl Probe {
    /// For a Docker task on BRIDGE networking the check names the
    /// container's port; it is probed on the host port mapped to it.
    pub(crate) fn map_ports(self, mappings: &[(u32, u32)]) -> Probe {
        let map = |p: u16| {
            mappings
                .iter()
                .find(|(_, container)| *container == u32::from(p))
                .and_then(|(host, _)| u16::try_from(*host).ok())
                .unwrap_or(p)
        };
        match self {
            Probe::Http {
                scheme,
                port,
                path,
                statuses,
            } => Probe::Http {
                scheme,
                port: map(port),
                path,
                statuses,
            },
            Probe::Tcp { port } => Probe::Tcp { port: map(port) },
            other => other,
        }
    }
}

/// Timing and thresholds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub delay: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub consecutive_failures: u32,
    pub grace_period: Duration,
}

fn secs(v: Option<f64>, default: f64) -> Duration {
    let v = v.unwrap_or(default);
    if v.is_finite() && v >= 0.0 {
        Duration::from_secs_f64(v.min(86_400.0))
    } else {
        Duration::from_secs_f64(default)
    }
}

fn port(p: u32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p} is not a valid TCP port"))
}

/// Reads a HealthCheck.
pub(crate) fn from_health_check(hc: &HealthCheck) -> Result<(Probe, Schedule), String> {
    let ty = hc.r#type.and_then(|t| health_check::Type::try_from(t).ok());
    let probe = match ty {
        Some(health_check::Type::Command) | None if hc.command.is_some() => {
            Probe::Command(hc.command.clone().unwrap_or_default())
        }
        Some(health_check::Type::Http) | None if hc.http.is_some() => {
            let h = hc.http.clone().unwrap_or_default();
            Probe::Http {
                scheme: h.scheme.unwrap_or_else(|| "http".into()),
                port: port(h.port)?,
                path: h.path.unwrap_or_else(|| "/".into()),
                statuses: h.statuses,
            }
        }
        Some(health_check::Type::Tcp) if hc.tcp.is_some() => Probe::Tcp {
            port: port(hc.tcp.as_ref().map_or(0, |t| t.port))?,
        },
        _ => {
            return Err("health check has no (or a mismatched) command, http or tcp section".into())
        }
    };
    Ok((
        probe,
        Schedule {
            delay: secs(hc.delay_seconds, 15.0),
            interval: secs(hc.interval_seconds, 10.0),
            timeout: secs(hc.timeout_seconds, 20.0),
            consecutive_failures: hc.consecutive_failures.unwrap_or(3).max(1),
            grace_period: secs(hc.grace_period_seconds, 10.0),
        },
    ))
}

/// Reads a CheckInfo.
pub(crate) fn from_check(c: &CheckInfo) -> Result<(Probe, Schedule), String> {
    let probe = match c.r#type.and_then(|t| check_info::Type::try_from(t).ok()) {
        Some(check_info::Type::Command) => Probe::Command(
            c.command
                .as_ref()
                .map(|c| c.command.clone())
                .ok_or("COMMAND check without a command")?,
        ),
        Some(check_info::Type::Http) => {
            let h = c.http.clone().ok_or("HTTP check without http")?;
            Probe::Http {
                scheme: "http".into(),
                port: port(h.port)?,
                path: h.path.unwrap_or_else(|| "/".into()),
                statuses: Vec::new(),
            }
        }
        Some(check_info::Type::Tcp) => Probe::Tcp {
            port: port(c.tcp.as_ref().map_or(0, |t| t.port))?,
        },
        _ => return Err("check has no known type".into()),
    };
    Ok((
        probe,
        Schedule {
            delay: secs(c.delay_seconds, 15.0),
            interval: secs(c.interval_seconds, 10.0),
            timeout: secs(c.timeout_seconds, 20.0),
            consecutive_failures: 1,
            grace_period: Duration::ZERO,
        },
    ))
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub ok: bool,
    pub message: String,
    pub status: CheckStatusInfo,
}

async fn run_probe(
    probe: &Probe,
    timeout: Duration,
    sandbox: &Path,
    http: &reqwest::Client,
) -> Outcome {
    let timeout = timeout.max(Duration::from_millis(1));
    match probe {
        Probe::Command(cmd) => {
            let status_of = |code: Option<i32>| CheckStatusInfo {
                r#type: Some(check_info::Type::Command as i32),
                command: Some(corral_api::v1::check_status_info::Command { exit_code: code }),
                ..Default::default()
            };
            let spawned = process::build_command(cmd, sandbox).and_then(process::spawn);
            let (mut child, pgid) = match spawned {
                Ok(c) => c,
                Err(e) => {
                    return Outcome {
                        ok: false,
                        message: format!("cannot run the check command: {e}"),
                        status: status_of(None),
                    }
                }
            };
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(st)) => Outcome {
                    ok: st.success(),
                    message: format!("command {}", process::describe_exit(&st)),
                    status: status_of(st.code()),
                },
                Ok(Err(e)) => Outcome {
                    ok: false,
                    message: format!("cannot wait for the check command: {e}"),
                    status: status_of(None),
                },
                Err(_) => {
                    process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait().await;
                    Outcome {
                        ok: false,
                        message: format!("command timed out after {timeout:?}"),
                        status: status_of(None),
                    }
                }
            }
        }
        Probe::Http {
            scheme,
            port,
            path,
            statuses,
        } => {
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            let url = format!("{scheme}://127.0.0.1:{port}{path}");
            let status_of = |code: Option<u32>| CheckStatusInfo {
                r#type: Some(check_info::Type::Http as i32),
                http: Some(corral_api::v1::check_status_info::Http { status_code: code }),
                ..Default::default()
            };
            match http.get(&url).timeout(timeout).send().await {
                Ok(r) => {
                    let code = u32::from(r.status().as_u16());
                    let ok = if statuses.is_empty() {
                        (200..400).contains(&code)
                    } else {
                        statuses.contains(&code)
                    };
                    Outcome {
                        ok,
                        message: format!("GET {url} answered {code}"),
                        status: status_of(Some(code)),
                    }
                }
                Err(e) => Outcome {
                    ok: false,
                    message: format!("GET {url} failed: {e}"),
                    status: status_of(None),
                },
            }
        }
        Probe::Tcp { port } => {
            let ok = matches!(
                tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect(("127.0.0.1", *port))
                )
                .await,
                Ok(Ok(_))
            );
            Outcome {
                ok,
                message: format!(
                    "TCP connection to 127.0.0.1:{port} {}",
                    if ok { "succeeded" } else { "failed" }
                ),
                status: CheckStatusInfo {
                    r#type: Some(check_info::Type::Tcp as i32),
                    tcp: Some(corral_api::v1::check_status_info::Tcp {
                        succeeded: Some(ok),
                    }),
                    ..Default::default()
                },
            }
        }
    }
}

/// A health transition to report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthEvent {
    pub healthy: bool,
    pub kill: bool,
    pub consecutive_failures: u32,
    pub message: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Runs a health check until aborted, reporting through `report`.
pub(crate) fn spawn_health(
    probe: Probe,
    schedule: Schedule,
    sandbox: PathBuf,
    report: impl Fn(HealthEvent) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let http = client();
        tokio::time::sleep(schedule.delay).await;
        let mut initializing = true;
        let mut consecutive = 0u32;
        loop {
            let out = run_probe(&probe, schedule.timeout, &sandbox, &http).await;
            if out.ok {
                if initializing || consecutive > 0 {
                    report(HealthEvent {
                        healthy: true,
                        kill: false,
                        consecutive_failures: 0,
                        message: out.message,
                    });
                }
                initializing = false;
                consecutive = 0;
            } else if initializing && started.elapsed() < schedule.grace_period {
                tracing::info!(message = %out.message, "health check failed within the grace period; ignored");
            } else {
                consecutive += 1;
                let kill = consecutive >= schedule.consecutive_failures;
                tracing::warn!(consecutive, kill, message = %out.message, "health check failed");
                report(HealthEvent {
                    healthy: false,
                    kill,
                    consecutive_failures: consecutive,
                    message: out.message,
                });
            }
            tokio::time::sleep(schedule.interval).await;
        }
    })
}

/// Runs a check until aborted, reporting each changed result.
pub(crate) fn spawn_check(
    probe: Probe,
    schedule: Schedule,
    sandbox: PathBuf,
    report: impl Fn(CheckStatusInfo) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = client();
        tokio::time::sleep(schedule.delay).await;
        let mut last: Option<CheckStatusInfo> = None;
        loop {
            let out = run_probe(&probe, schedule.timeout, &sandbox, &http).await;
            if last.as_ref() != Some(&out.status) {
                report(out.status);
                last = Some(out.status);
            }
            tokio::time::sleep(schedule.interval).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::v1::health_check::HttpCheckInfo;

    #[test]
    fn reads_health_checks_with_mesos_defaults() {
        let hc = HealthCheck {
            r#type: Some(health_check::Type::Http as i32),
            http: Some(HttpCheckInfo {
                port: 8080,
                path: Some("/health".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (p, s) = from_health_check(&hc).unwrap();
        assert!(matches!(p, Probe::Http { port: 8080, .. }));
        assert_eq!(s.delay, Duration::from_secs(15));
        assert_eq!(s.interval, Duration::from_secs(10));
        assert_eq!(s.consecutive_failures, 3);
        assert_eq!(s.grace_period, Duration::from_secs(10));
        let bad = HealthCheck {
            r#type: Some(health_check::Type::Tcp as i32),
            ..Default::default()
        };
        assert!(from_health_check(&bad).is_err());
    }

    #[test]
    fn docker_ports_map_to_host_ports() {
        let p = Probe::Tcp { port: 8080 }.map_ports(&[(31000, 8080)]);
        assert_eq!(p, Probe::Tcp { port: 31000 });
        let p = Probe::Tcp { port: 9000 }.map_ports(&[(31000, 8080)]);
        assert_eq!(p, Probe::Tcp { port: 9000 });
    }

    #[tokio::test]
    async fn probes_against_real_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let http = client();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let t = Duration::from_secs(5);
        let ok = run_probe(
            &Probe::Http {
                scheme: "http".into(),
                port,
                path: "/ok".into(),
                statuses: vec![],
            },
            t,
            dir.path(),
            &http,
        )
        .await;
        assert!(ok.ok, "{ok:?}");
        let missing = run_probe(
            &Probe::Http {
                scheme: "http".into(),
                port,
                path: "/nope".into(),
                statuses: vec![],
            },
            t,
            dir.path(),
            &http,
        )
        .await;
        assert!(!missing.ok);
        assert_eq!(missing.status.http.unwrap().status_code, Some(404));
        assert!(
            run_probe(&Probe::Tcp { port }, t, dir.path(), &http)
                .await
                .ok
        );
        let cmd = |v: &str| {
            Probe::Command(CommandInfo {
                value: Some(v.into()),
                ..Default::default()
            })
        };
        assert!(run_probe(&cmd("true"), t, dir.path(), &http).await.ok);
        let f = run_probe(&cmd("exit 3"), t, dir.path(), &http).await;
        assert_eq!(f.status.command.unwrap().exit_code, Some(3));
        let slow = run_probe(
            &cmd("sleep 10"),
            Duration::from_millis(100),
            dir.path(),
            &http,
        )
        .await;
        assert!(!slow.ok && slow.message.contains("timed out"), "{slow:?}");
    }
}
