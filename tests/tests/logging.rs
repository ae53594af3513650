//! Issue 11.5: logs written to a file or a pipe carry no ANSI colour codes,
//! and `--log_format json` (or `MESOS_LOG_FORMAT=json`) writes one JSON
//! object per line for log shippers. Real `corral master` processes.

use std::process::Stdio;
use std::time::Duration;

use corral_tests::{corral_bin, free_port, wait_for};

/// Starts a master with its stderr (and stdout) in `log`, waits until it
/// has logged that it is starting, and stops it; returns the log.
async fn master_log(
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let log = dir.join(name);
    let file = std::fs::File::create(&log).expect("log file");
    let port = free_port();
    let mut child = tokio::process::Command::new(corral_bin())
        .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .env_remove("MESOS_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start master");
    let started = wait_for(Duration::from_secs(30), || {
        let log = log.clone();
        async move { std::fs::read_to_string(&log).is_ok_and(|s| s.contains("master starting")) }
    })
    .await;
    let _ = child.kill().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(started, "the master never logged its start:\n{text}");
    text
}

#[tokio::test]
async fn logs_to_a_file_have_no_colour_codes_and_json_lines_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = master_log(dir.path(), "text.log", &[], &[]).await;
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{text:?}"
    );
    assert!(text.contains("INFO"), "{text}");

    for (name, extra, env) in [
        ("json-flag.log", &["--log_format", "json"][..], &[][..]),
        ("json-env.log", &[][..], &[("MESOS_LOG_FORMAT", "json")][..]),
    ] {
        let text = master_log(dir.path(), name, extra, env).await;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{name}: empty log");
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line:?}"));
            assert!(v["level"].is_string(), "{name}: no level: {line}");
            assert!(
                v["fields"]["message"].is_string(),
                "{name}: no message: {line}"
            );
        }
        assert!(
            lines.iter().any(|l| l.contains("master starting")),
            "{name}: {text}"
        );
    }

    // A bad value is refused naming the flag.
    let out = tokio::process::Command::new(corral_bin())
        .args(["master", "--log_format", "xml"])
        .output()
        .await
        .expect("run corral");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log_format"), "{stderr}");
}
