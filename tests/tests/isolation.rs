//! The Mesos containerizer with real cgroups: a memory hog is killed for
//! its container's memory limit and reported with
//! REASON_CONTAINER_LIMITATION_MEMORY; a CPU-bound task under a CFS quota
//! gets about its share, read from cgroup accounting (not wall time); and
//! the agent reports per-container usage in GET_CONTAINERS and
//! `/monitor/statistics`.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{cgroup_dir, command_task, require_cgroups, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn cgroup_options() -> ClusterOptions {
    ClusterOptions {
        agent_flags: vec![
            "--isolation=cgroups/cpu,cgroups/mem".into(),
            "--cgroups_enable_cfs".into(),
            format!("--cgroups_root={}", corral_tests::unique_cgroups_root()),
        ],
        ..Default::default()
    }
}

fn read_u64(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn keyed(path: &std::path::Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_killed_with_container_limitation_memory() {
    require_cgroups();
    let c = Cluster::start(cgroup_options()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    // `tail` keeps everything it reads from a stream without newlines.
    s.launch(
        &offer,
        vec![command_task("hog", &agent.id, "tail /dev/zero", 0.2, 64.0)],
    )
    .await;
    let seen = s.follow("hog", "TASK_FAILED").await;
    let failed = seen.last().expect("a terminal update");
    assert_eq!(
        failed["reason"],
        "REASON_CONTAINER_LIMITATION_MEMORY",
        "{failed}\n{}",
        c.logs()
    );
    // The container's limit: the task's 64 MB plus Mesos' 32 MB allowance
    // for the command executor.
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Memory limit exceeded") && message.contains("96MB"),
        "message names the limit: {message}"
    );
    let limited = &failed["limitation"]["resources"][0];
    assert_eq!(limited["name"], "mem", "{failed}");
    assert_eq!(limited["scalar"]["value"], 96.0, "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_task_under_cfs_quota_gets_about_its_share() {
    require_cgroups();
    let opts = cgroup_options();
    let root = opts.agent_flags[2]
        .trim_start_matches("--cgroups_root=")
        .to_string();
    let c = Cluster::start(opts).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    // Two busy loops want 2 cpus; the container may use 0.4 + 0.1.
    s.launch(
        &offer,
        vec![command_task(
            "spin",
            &agent.id,
            "while :; do :; done & while :; do :; done",
            0.4,
            64.0,
        )],
    )
    .await;
    s.follow("spin", "TASK_RUNNING").await;

    let containers = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_CONTAINERS"}))
        .await
        .1;
    let container = &containers["get_containers"]["containers"][0];
    let cid = container["container_id"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("a container: {containers}"))
        .to_string();
    let path = format!("{root}/{cid}");
    let cpu = cgroup_dir("cpu", &path);
    let acct = cgroup_dir("cpuacct", &path);
    let v2 = cpu.join("cpu.max").is_file();
    // CPU time used so far, in ns, from the cgroup's accounting.
    let usage_ns = |acct: &std::path::Path, cpu: &std::path::Path| {
        if v2 {
            keyed(&cpu.join("cpu.stat"), "usage_usec") * 1000
        } else {
            read_u64(&acct.join("cpuacct.usage"))
        }
    };
    if v2 {
        let max = std::fs::read_to_string(cpu.join("cpu.max")).unwrap_or_default();
        assert_eq!(max.trim(), "50000 100000");
    } else {
        assert_eq!(read_u64(&cpu.join("cpu.cfs_period_us")), 100_000);
        assert_eq!(read_u64(&cpu.join("cpu.cfs_quota_us")), 50_000);
        assert_eq!(read_u64(&cpu.join("cpu.shares")), 512);
    }

    // Measure over at least 30 CFS periods, by the cgroup's own clock.
    let periods0 = keyed(&cpu.join("cpu.stat"), "nr_periods");
    let usage0 = usage_ns(&acct, &cpu);
    let ok = wait_for(LONG, || {
        let cpu = cpu.clone();
        async move { keyed(&cpu.join("cpu.stat"), "nr_periods") >= periods0 + 30 }
    })
    .await;
    assert!(ok, "the cgroup saw no CFS periods\n{}", c.logs());
    let periods = keyed(&cpu.join("cpu.stat"), "nr_periods") - periods0;
    let usage = usage_ns(&acct, &cpu) - usage0;
    let throttled = keyed(&cpu.join("cpu.stat"), "nr_throttled");
    let share = usage as f64 / (periods as f64 * 100_000_000.0);
    // The quota binds (unless the shared machine could not even give the
    // container its quota).
    assert!(
        throttled > 0 || share < 0.45,
        "the quota throttled the task"
    );
    assert!(
        (0.15..=0.56).contains(&share),
        "cpu used per CFS period {share:.3} is about the quota of 0.5 ({usage} ns over {periods} periods)"
    );

    // The same accounting through the agent's APIs.
    let containers = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_CONTAINERS"}))
        .await
        .1;
    let stats = &containers["get_containers"]["containers"][0]["resource_statistics"];
    assert_eq!(stats["cpus_limit"], 0.5, "{stats}");
    assert_eq!(stats["mem_limit_bytes"], 96 * 1024 * 1024, "{stats}");
    assert!(stats["cpus_nr_periods"].as_u64() > Some(0), "{stats}");
    assert!(stats["cpus_user_time_secs"].as_f64() > Some(0.0), "{stats}");
    assert!(stats["mem_rss_bytes"].as_u64() > Some(0), "{stats}");
    let monitor: Value = c
        .http
        .get(agent.url("/monitor/statistics"))
        .send()
        .await
        .expect("/monitor/statistics")
        .json()
        .await
        .expect("json");
    let entry = &monitor[0];
    assert_eq!(entry["executor_id"], "spin", "{monitor}");
    assert_eq!(entry["statistics"]["cpus_limit"], 0.5, "{monitor}");
    assert!(entry["statistics"]["timestamp"].as_f64() > Some(0.0));

    s.call_ok(json!({"type": "KILL", "kill": {"task_id": {"value": "spin"}}}))
        .await;
    s.follow("spin", "TASK_KILLED").await;
    // The container's cgroups are removed with it.
    let gone = wait_for(LONG, || {
        let cpu = cpu.clone();
        async move { !cpu.exists() }
    })
    .await;
    assert!(gone, "cgroup {} is removed after the task", cpu.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_over_its_disk_quota_is_killed_with_container_limitation_disk() {
    let c = Cluster::start(ClusterOptions {
        agent_flags: vec![
            "--isolation=posix/cpu,posix/mem,disk/du".into(),
            "--enforce_container_disk_quota".into(),
            "--container_disk_watch_interval=200ms".into(),
        ],
        ..Default::default()
    })
    .await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let mut task = command_task(
        "filler",
        &agent.id,
        "dd if=/dev/zero of=big bs=1M count=8 2>/dev/null; sync; while :; do sleep 1; done",
        0.1,
        32.0,
    );
    task["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 2.0}}));
    s.launch(&offer, vec![task]).await;
    let seen = s.follow("filler", "TASK_FAILED").await;
    let failed = seen.last().expect("a terminal update");
    assert_eq!(
        failed["reason"], "REASON_CONTAINER_LIMITATION_DISK",
        "{failed}"
    );
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeds quota (2MB)"), "{message}");
    assert_eq!(
        failed["limitation"]["resources"][0]["name"], "disk",
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_user_runs_the_container_as_that_user() {
    require_cgroups();
    let c = Cluster::start(cgroup_options()).await;
    // The work dir must be reachable by the task's user, as with Mesos.
    use std::os::unix::fs::PermissionsExt;
    for d in [c.dir().to_path_buf(), c.agents[0].work_dir.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let mut task = command_task("as-nobody", &agent.id, "id -un; touch mine", 0.1, 32.0);
    task["command"]["user"] = json!("nobody");
    s.launch(&offer, vec![task]).await;
    s.follow("as-nobody", "TASK_FINISHED").await;
    let sandbox = agent.sandbox(&s.framework_id, "as-nobody");
    let out = std::fs::read_to_string(sandbox.join("stdout")).unwrap_or_default();
    assert_eq!(out.lines().next(), Some("nobody"), "{out}");
    use std::os::unix::fs::MetadataExt;
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody");
    let owner = std::fs::metadata(sandbox.join("mine")).expect("file").uid();
    assert_eq!(owner, nobody.uid.as_raw(), "the task wrote as nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_rlimits_are_set_by_the_launcher() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let mut task = command_task("limited", &agent.id, "ulimit -n; ulimit -c", 0.1, 32.0);
    task["container"] = json!({
        "type": "MESOS",
        "rlimit_info": {"rlimits": [
            {"type": "RLMT_NOFILE", "soft": 123, "hard": 456},
            {"type": "RLMT_CORE"},
        ]},
    });
    s.launch(&offer, vec![task]).await;
    s.follow("limited", "TASK_FINISHED").await;
    let out = std::fs::read_to_string(agent.sandbox(&s.framework_id, "limited").join("stdout"))
        .unwrap_or_default();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["123", "unlimited"], "{out}");

    // Invalid rlimits fail the launch with a message.
    let offer = s.offers().await.remove(0);
    let mut bad = command_task("bad-limits", &agent.id, "true", 0.1, 32.0);
    bad["container"] = json!({
        "type": "MESOS",
        "rlimit_info": {"rlimits": [{"type": "RLMT_NOFILE", "soft": 10, "hard": 5}]},
    });
    s.launch(&offer, vec![bad]).await;
    let failed = s.follow("bad-limits", "TASK_FAILED").await;
    let message = failed
        .last()
        .map(|f| f["message"].to_string())
        .unwrap_or_default();
    assert!(message.contains("RLMT_NOFILE"), "{message}");
}
