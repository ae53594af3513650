//! `corral bench`: benchmarks that print tables (and JSON lines with
//! `--json`). Figures and how to reproduce them are in docs/BENCHMARKS.md.

use anyhow::Result;

pub mod allocator;
pub mod containers;
pub mod eventing_service;
pub mod events;
pub mod failover;
pub mod spark;
pub mod workloads;
pub mod yarn;

/// Which benchmark to run.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The allocator on the Mesos benchmark grid (simulated agents).
    Allocator(allocator::Args),
    /// Container launch and destroy throughput on one real agent
    /// (command tasks, then Docker tasks).
    Containers(containers::Args),
    /// The eventing publisher end to end: sustained events/s from the
    /// master to Kafka (tansu) and the latency from a task's state change
    /// to a consumer (simulated agents, real master, publisher and broker).
    Events(events::Args),
    /// The eventing service end to end (2 API and 2 backend nodes, real
    /// RabbitMQ and tansu): events/s, write-ack, read and end-to-end
    /// latency, beside the same load written straight to Kafka.
    EventingService(eventing_service::Args),
    /// Master failover time (leader killed) at N simulated agents, with a
    /// real ZooKeeper and two real masters.
    Failover(failover::Args),
    /// The workloads framework end to end: time to deploy N healthy
    /// instances, and the lateness of N jobs scheduled every minute.
    Workloads(workloads::Args),
    /// The YARN bridge end to end: time from a flex up of N NodeManagers
    /// to all RUNNING, and the autoscaler's reaction to pending demand
    /// (YARN played by the tests' stand-ins).
    Yarn(yarn::Args),
    /// The Spark dispatcher end to end with real Spark: submission to
    /// driver RUNNING and to first executor (p50/p99), and the queue's
    /// throughput, beside Spark's own standalone master.
    Spark(spark::Args),
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Allocator(args) => allocator::run(args),
        BenchCommand::Containers(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(containers::run(args)),
        BenchCommand::Events(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(events::run(args)),
        BenchCommand::EventingService(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(eventing_service::run(args)),
        BenchCommand::Failover(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(failover::run(args)),
        BenchCommand::Workloads(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(workloads::run(args)),
        BenchCommand::Yarn(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(yarn::run(args)),
        BenchCommand::Spark(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(spark::run(args)),
    }
}

/// Polls `done` every 50 ms until it holds (returning how long that took)
/// or `timeout` passes (an error naming `what`).
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    timeout: std::time::Duration,
    mut done: F,
) -> Result<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if done().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{what}: not done within {timeout:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Peak resident set size of this process in bytes (VmHWM).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resets the peak RSS so the next reading covers only what follows
/// (Linux: writing 5 to /proc/self/clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// POSTs a JSON `SUBSCRIBE` call to the master at `addr` (host:port) and
/// returns the stream's `Mesos-Stream-Id` and the open (RecordIO) response.
pub(crate) async fn subscribe_scheduler(
    http: &reqwest::Client,
    addr: &str,
    call: &serde_json::Value,
) -> Result<(String, reqwest::Response)> {
    let resp = http
        .post(format!("http://{addr}/api/v1/scheduler"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(call.to_string())
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("SUBSCRIBE answered {}", resp.status());
    }
    let stream_id = resp
        .headers()
        .get("mesos-stream-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((stream_id, resp))
}
