//! Task logs: the logrotate container logger (`--container_logger=logrotate`)
//! rotating a task's stdout by size in its sandbox, with lines kept whole
//! and `rotate N` files kept; the logs of finished runs archived under
//! `<framework_id>/<executor_id>/<container_id>/` (`--task_log_archive`);
//! the loggers surviving `kill -9` of the agent (the task's output keeps
//! reaching `stdout` while the agent is down and after its restart); bad
//! flag values refused at start naming the flag. Real master, agent and
//! `corral logger` processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, corral_bin, default_framework_info, wait_for, Cluster, ClusterOptions,
};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);
const MAX: u64 = 64 * 1024;
const LINES: u32 = 30_000;

fn options(archive: &Path) -> ClusterOptions {
    ClusterOptions {
        agent_flags: vec![
            "--container_logger=logrotate".into(),
            "--logrotate_max_stdout_size=64KB".into(),
            "--logrotate_stdout_options=rotate 3".into(),
            format!("--task_log_archive={}", archive.display()),
            // Executors retry every <= 5 s; give them room on a busy machine.
            "--executor_reregistration_timeout=10secs".into(),
        ],
        ..Default::default()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn numbered_line(i: u32) -> String {
    format!("line {i:06} of the numbered output")
}

/// The run directory `runs/latest` points at: its name is the container id.
fn container_id(sandbox: &Path) -> String {
    std::fs::canonicalize(sandbox)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| panic!("no run directory behind {}", sandbox.display()))
}

async fn wait_until_contains(file: PathBuf, needle: String, what: &str, logs: impl Fn() -> String) {
    let ok = wait_for(LONG, || {
        let (f, n) = (file.clone(), needle.clone());
        async move { read(&f).contains(&n) }
    })
    .await;
    assert!(
        ok,
        "{what}: {} never held {needle:?}\n{}",
        file.display(),
        logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_is_rotated_by_size_with_whole_lines_and_archived() {
    let archive = tempfile::tempdir().expect("archive dir");
    let c = Cluster::start(options(archive.path())).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    // About 1 MB of numbered lines (35 bytes each).
    let task = command_task(
        "chatty",
        &agent.id,
        &format!("seq -f 'line %06g of the numbered output' 1 {LINES}; echo to stderr >&2"),
        0.1,
        32.0,
    );
    s.launch(&offer, vec![task]).await;
    s.follow("chatty", "TASK_FINISHED").await;

    let fid = s.framework_id.clone();
    let sandbox = agent.sandbox(&fid, "chatty");
    // The logger writes the last line before it exits.
    wait_until_contains(
        sandbox.join("stdout"),
        numbered_line(LINES),
        "logger",
        || c.logs(),
    )
    .await;

    let names = ["stdout", "stdout.1", "stdout.2", "stdout.3"];
    let mut expected = LINES;
    for name in names {
        let p = sandbox.join(name);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(meta.len() <= MAX, "{name} is {} bytes", meta.len());
        let text = read(&p);
        assert!(text.ends_with('\n'), "{name} ends with a partial line");
        // Newest first: each file holds the lines just before the next
        // newer file's first line, whole and in order.
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty(), "{name} is empty");
        for (k, line) in lines.iter().rev().enumerate() {
            assert_eq!(
                *line,
                numbered_line(expected - k as u32),
                "{name}: line {} from the end",
                k + 1
            );
        }
        expected -= lines.len() as u32;
        // Nothing else fitted: the next line would have overflowed.
        if name != "stdout" {
            assert!(meta.len() + 35 > MAX, "{name} was rotated early");
        }
    }
    assert!(
        !sandbox.join("stdout.4").exists(),
        "rotate 3 keeps three rotated files"
    );
    assert!(expected > 0, "older lines were dropped");
    assert_eq!(
        read(&sandbox.join("stderr")).matches("to stderr").count(),
        1
    );

    // The archive: the run's files under <framework>/<executor>/<container>/.
    let cid = container_id(&sandbox);
    let dir = archive.path().join(&fid).join("chatty").join(&cid);
    let archived = wait_for(LONG, || {
        let dir = dir.clone();
        async move {
            ["stdout", "stdout.1", "stdout.2", "stdout.3", "stderr"]
                .iter()
                .all(|n| dir.join(n).is_file())
        }
    })
    .await;
    assert!(archived, "{} was not archived\n{}", dir.display(), c.logs());
    for name in names.iter().chain(&["stderr"]) {
        assert_eq!(
            std::fs::read(dir.join(name)).ok(),
            std::fs::read(sandbox.join(name)).ok(),
            "archived {name} differs from the sandbox's"
        );
    }
    assert!(!dir.join("stdout.4").exists());
    let log = c.agent_log(0);
    assert!(
        log.contains("archived task logs") && log.contains(&cid),
        "the agent logs the archiving:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logger_survives_kill_9_of_the_agent() {
    let archive = tempfile::tempdir().expect("archive dir");
    let mut c = Cluster::start(options(archive.path())).await;
    let mut info = default_framework_info("checkpointing");
    info["checkpoint"] = json!(true);
    let mut s = c.subscribe_with(Encoding::Json, info).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let task = command_task(
        "ticker",
        &agent.id,
        "i=0; while [ ! -f done ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done; echo finished",
        0.1,
        32.0,
    );
    s.launch(&offer, vec![task]).await;
    s.follow("ticker", "TASK_RUNNING").await;
    let sandbox = agent.sandbox(&s.framework_id, "ticker");
    let stdout = sandbox.join("stdout");
    wait_until_contains(stdout.clone(), "tick 5\n".into(), "before", || c.logs()).await;

    c.kill_agent(0);
    // With the agent gone, the task's lines still reach the file.
    let at_kill = read(&stdout).lines().count();
    let more = wait_for(LONG, || {
        let f = stdout.clone();
        async move { read(&f).lines().count() >= at_kill + 10 }
    })
    .await;
    assert!(more, "nothing was logged while the agent was down");

    c.restart_agent(0, &[]).await;
    let at_restart = read(&stdout).lines().count();
    let more = wait_for(LONG, || {
        let f = stdout.clone();
        async move { read(&f).lines().count() >= at_restart + 10 }
    })
    .await;
    assert!(more, "nothing was logged after the restart\n{}", c.logs());

    std::fs::write(sandbox.join("done"), b"").expect("done file");
    s.follow("ticker", "TASK_FINISHED").await;
    wait_until_contains(stdout.clone(), "finished\n".into(), "end", || c.logs()).await;
    let text = read(&stdout);
    let ticks: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    let gapless = ticks.windows(2).all(|w| w[1] == w[0] + 1);
    assert!(
        gapless && ticks.first() == Some(&0),
        "lines were lost: {ticks:?}"
    );

    // The recovered run is archived too, once its logger has exited.
    let archived = archive
        .path()
        .join(&s.framework_id)
        .join("ticker")
        .join(container_id(&sandbox))
        .join("stdout");
    wait_until_contains(archived, "finished\n".into(), "archive", || c.logs()).await;
}

/// Runs `corral agent` with `flags` (no master is needed: flags are checked
/// first) and expects it to refuse to start; returns its stderr.
async fn refused(flags: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("work dir");
    let out = tokio::time::timeout(
        LONG,
        tokio::process::Command::new(corral_bin())
            .args([
                "agent",
                "--ip=127.0.0.1",
                "--port=0",
                "--master=127.0.0.1:1",
            ])
            .arg(format!("--work_dir={}", dir.path().display()))
            .args(flags)
            .env_remove("MESOS_CONTAINER_LOGGER")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the agent exits")
    .expect("run corral agent");
    assert!(!out.status.success(), "{flags:?} accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_logger_and_archive_flags_refuse_to_start_naming_the_flag() {
    for (flags, name) in [
        (
            &[
                "--container_logger=logrotate",
                "--logrotate_stdout_options=compress",
            ][..],
            "--logrotate_stdout_options",
        ),
        (
            &[
                "--container_logger=logrotate",
                "--logrotate_max_stdout_size=lots",
            ][..],
            "--logrotate_max_stdout_size",
        ),
        (&["--container_logger=journald"][..], "--container_logger"),
        (
            &["--task_log_archive=relative/dir"][..],
            "--task_log_archive",
        ),
    ] {
        let stderr = refused(flags).await;
        assert!(stderr.contains(name), "{flags:?}: {stderr}");
    }
    let stderr = refused(&["--logrotate_stdout_options=rotate 3 compress"]).await;
    assert!(stderr.contains("'compress'"), "{stderr}");
    // Without the cargo feature the HDFS archive is refused naming it (a
    // build with the feature fails on the Hadoop client instead).
    let stderr = refused(&["--task_log_archive=hdfs://127.0.0.1:1/logs"]).await;
    assert!(stderr.contains("--task_log_archive"), "{stderr}");
    assert!(
        stderr.contains("feature `hdfs`") || stderr.contains("HDFS"),
        "{stderr}"
    );
}
