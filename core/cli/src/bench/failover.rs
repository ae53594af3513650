//! `corral bench failover`: time from the leading master's death to offers
//! flowing again, and to every agent re-registered, with N simulated agents.
//!
//! It starts a real ZooKeeper (scripts/zookeeper.sh) and two `corral
//! master --zk` processes, registers N simulated agents (gRPC sessions
//! from this process, answering pings, re-registering with their AgentID
//! with whichever master ZooKeeper names the leader) and one framework
//! (v1 scheduler API, re-subscribing with its FrameworkID), then `kill -9`s
//! the leader and times: ZooKeeper expiring its session, the standby's
//! election, its registry recovery, the framework's re-subscription and the
//! first OFFERS from the new leader, and all agents re-registered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_api::internal::agent_service_client::AgentServiceClient;
use corral_api::internal::{agent_message, master_message, AgentMessage, Pong, RegisterAgent};
use corral_api::v1;
use tokio::sync::watch;

/// Flags of `corral bench failover`.
#[derive(clap::Args)]
pub struct Args {
    /// Simulated agent counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub agents: Vec<usize>,
    /// ZooKeeper session timeouts to measure (stout durations).
    #[arg(
        long = "session_timeouts",
        value_delimiter = ',',
        default_value = "1secs,10secs"
    )]
    pub session_timeouts: Vec<String>,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
}

struct Run {
    agents: usize,
    session_timeout: String,
    offers_s: f64,
    agents_s: f64,
    registry_recovered: bool,
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    let mut runs = Vec::new();
    for timeout in &args.session_timeouts {
        for &n in &args.agents {
            eprintln!("[bench failover] {n} agents, zk_session_timeout {timeout}");
            let r = one(n, timeout).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "agents": r.agents,
                        "zk_session_timeout": r.session_timeout,
                        "offers_again_s": r.offers_s,
                        "all_agents_reregistered_s": r.agents_s,
                    })
                );
            }
            runs.push(r);
        }
    }
    if !args.json {
        println!(
            "{:>8} {:>20} {:>22} {:>28}",
            "agents", "zk_session_timeout", "offers again (s)", "all agents re-registered (s)"
        );
        for r in &runs {
            println!(
                "{:>8} {:>20} {:>22.2} {:>28.2}{}",
                r.agents,
                r.session_timeout,
                r.offers_s,
                r.agents_s,
                if r.registry_recovered {
                    ""
                } else {
                    " (registry not recovered!)"
                }
            );
        }
    }
    Ok(())
}

struct Master {
    child: tokio::process::Child,
    port: u16,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Follows the leader published in ZooKeeper into `tx`, polling one
/// session every 10 ms (a bench driver; the agents' own detector reads
/// ZooKeeper before every session).
fn follow_leader(zk: String, tx: watch::Sender<Option<String>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(session) = corral_master::zk::Session::connect(
            &zk,
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await
        else {
            return;
        };
        while !tx.is_closed() {
            let found = corral_master::election::leader_address(&session, "/corral")
                .await
                .ok()
                .flatten();
            if let Some(l) = found {
                tx.send_if_modified(|cur| {
                    if cur.as_deref() == Some(l.as_str()) {
                        false
                    } else {
                        *cur = Some(l);
                        true
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        session.close().await;
    })
}

/// One simulated agent: registers with the leader, answers pings, and
/// re-registers with its AgentID when the session ends.
async fn agent(
    i: usize,
    pool_size: usize,
    mut leader: watch::Receiver<Option<String>>,
    channels: Arc<
        tokio::sync::Mutex<std::collections::HashMap<String, Vec<tonic::transport::Channel>>>,
    >,
    registered: Arc<AtomicUsize>,
    generation: Arc<AtomicUsize>,
) {
    let mut id: Option<String> = None;
    loop {
        let Some(addr) = leader.borrow_and_update().clone() else {
            let _ = leader.changed().await;
            continue;
        };
        let channel = {
            let mut map = channels.lock().await;
            let pool = map.entry(addr.clone()).or_default();
            if pool.is_empty() {
                // The server takes at most 200 concurrent streams per
                // connection: 150 agents a connection.
                for _ in 0..pool_size {
                    match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .map(|e| e.connect_lazy())
                    {
                        Ok(c) => pool.push(c),
                        Err(_) => break,
                    }
                }
            }
            pool.get(i % pool.len().max(1)).cloned()
        };
        let Some(channel) = channel else {
            let _ = leader.changed().await;
            continue;
        };
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<AgentMessage>();
        let info = v1::AgentInfo {
            hostname: format!("sim-{i}"),
            port: Some(5051),
            id: id.clone().map(|value| v1::AgentId { value }),
            resources: corral_api::resources::parse("cpus:64;mem:499712;disk:1000000")
                .unwrap_or_default(),
            ..Default::default()
        };
        let _ = tx.send(AgentMessage {
            message: Some(agent_message::Message::Register(RegisterAgent {
                agent_info: info,
                version: corral_api::MESOS_VERSION.to_string(),
                endpoint: format!("127.0.0.1:{}", 20000 + i),
                ..Default::default()
            })),
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let Ok(resp) = client.session(stream).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut inbound = resp.into_inner();
        let my_gen = generation.load(Ordering::SeqCst);
        while let Ok(Some(msg)) = inbound.message().await {
            match msg.message {
                Some(master_message::Message::Registered(r)) => {
                    id = Some(r.agent_id.value);
                    if generation.load(Ordering::SeqCst) == my_gen {
                        registered.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some(master_message::Message::Ping(p)) => {
                    let _ = tx.send(AgentMessage {
                        message: Some(agent_message::Message::Pong(Pong { seq: p.seq })),
                    });
                }
                _ => {}
            }
        }
        // The session ended: wait for a new leader before re-registering.
        let _ = tokio::time::timeout(Duration::from_secs(1), leader.changed()).await;
    }
}

async fn subscribe(
    http: &reqwest::Client,
    addr: &str,
    framework_id: Option<&str>,
) -> Result<(String, reqwest::Response)> {
    let mut info =
        serde_json::json!({"user": "bench", "name": "failover-bench", "failover_timeout": 3600.0});
    let mut call = serde_json::json!({"type": "SUBSCRIBE"});
    if let Some(id) = framework_id {
        info["id"] = serde_json::json!({"value": id});
        call["framework_id"] = serde_json::json!({"value": id});
    }
    call["subscribe"] = serde_json::json!({"framework_info": info});
    super::subscribe_scheduler(http, addr, &call).await
}

/// Reads RecordIO records until one contains `needle`; returns the
/// FrameworkID seen in SUBSCRIBED (if any).
async fn wait_event(resp: &mut reqwest::Response, needle: &str) -> Result<Option<String>> {
    let mut buf = String::new();
    let mut framework_id = None;
    while let Some(chunk) = resp.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if framework_id.is_none() {
            if let Some(at) = buf.find("\"framework_id\":{\"value\":\"") {
                let rest = &buf[at + 26..];
                if let Some(end) = rest.find('"') {
                    framework_id = Some(rest[..end].to_owned());
                }
            }
        }
        if buf.contains(needle) {
            return Ok(framework_id);
        }
        if buf.len() > 1 << 20 {
            buf.drain(..buf.len() / 2);
        }
    }
    bail!("the subscription ended before {needle}")
}

async fn one(n: usize, session_timeout: &str) -> Result<Run> {
    let dir = std::env::temp_dir().join(format!("corral-bench-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let zk_dir = dir.join("zk");
    let server = tokio::task::spawn_blocking(move || {
        corral_master::testing::ZooKeeperServer::start(&zk_dir, 1)
    })
    .await?
    .context("cannot start ZooKeeper")?;
    let exe = std::env::current_exe()?;
    let mut masters = Vec::new();
    for _ in 0..2 {
        let port = free_port()?;
        let child = tokio::process::Command::new(&exe)
            .args(["master", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--zk",
                &format!("zk://{}/corral", server.connect),
                "--quorum",
                "1",
            ])
            .args(["--zk_session_timeout", session_timeout])
            .args(["--allocation_interval", "100ms"])
            .env("CORRAL_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a master")?;
        masters.push(Master { child, port });
    }
    let (leader_tx, leader_rx) = watch::channel(None);
    let follower = follow_leader(server.connect.clone(), leader_tx);
    let mut rx = leader_rx.clone();
    let first = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|l| l.is_some()))
        .await
        .context("no leader elected")??
        .clone()
        .unwrap_or_default();

    let registered = Arc::new(AtomicUsize::new(0));
    let generation = Arc::new(AtomicUsize::new(0));
    let channels = Arc::new(tokio::sync::Mutex::new(std::collections::HashMap::new()));
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(agent(
            i,
            n / 150 + 1,
            leader_rx.clone(),
            Arc::clone(&channels),
            Arc::clone(&registered),
            Arc::clone(&generation),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while registered.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} agents registered",
                registered.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until the registry holds every agent, so the new leader has
    // them to recover.
    let http = reqwest::Client::builder().build()?;
    let (_, mut sub) = subscribe(&http, &first, None).await?;
    let framework_id = wait_event(&mut sub, "\"OFFERS\"")
        .await?
        .unwrap_or_default();
    let metrics = format!("http://{first}/metrics/snapshot");
    let _ = http.get(&metrics).send().await;
    settle_registry(&server.connect, n).await;

    // Kill -9 the leader.
    generation.fetch_add(1, Ordering::SeqCst);
    registered.store(0, Ordering::SeqCst);
    let index = masters
        .iter()
        .position(|m| first.ends_with(&format!(":{}", m.port)))
        .context("leader not among the masters")?;
    let killed_at = Instant::now();
    masters[index].child.start_kill()?;
    drop(sub);
    let mut rx = leader_rx.clone();
    let next = tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|l| l.as_deref().is_some_and(|l| l != first)),
    )
    .await
    .context("no new leader")??
    .clone()
    .unwrap_or_default();
    let offers_s = loop {
        match subscribe(&http, &next, Some(&framework_id)).await {
            Ok((_, mut resp)) => {
                wait_event(&mut resp, "\"OFFERS\"").await?;
                break killed_at.elapsed().as_secs_f64();
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        if killed_at.elapsed() > Duration::from_secs(300) {
            bail!("no offers from the new leader");
        }
    };
    while registered.load(Ordering::SeqCst) < n {
        if killed_at.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {n} agents re-registered",
                registered.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let agents_s = killed_at.elapsed().as_secs_f64();
    let recovered = leader_registry_agents(&server.connect).await >= n;
    follower.abort();
    for t in tasks {
        t.abort();
    }
    for mut m in masters {
        let _ = m.child.kill().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run {
        agents: n,
        session_timeout: session_timeout.to_owned(),
        offers_s,
        agents_s,
        registry_recovered: recovered,
    })
}

async fn leader_registry_agents(zk: &str) -> usize {
    use corral_master::registry::Registry;
    let Ok(session) =
        corral_master::zk::Session::connect(zk, Duration::from_secs(10), Duration::from_secs(10))
            .await
    else {
        return 0;
    };
    let count = match corral_master::registry::ZooKeeperRegistry::open(
        session.zk.clone(),
        "/corral/registry",
    )
    .await
    {
        Ok(store) => store.recover().await.map(|s| s.agents.len()).unwrap_or(0),
        Err(_) => 0,
    };
    let _ = session.zk.close().await;
    count
}

async fn settle_registry(zk: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if leader_registry_agents(zk).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
