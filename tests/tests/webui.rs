//! The master's web UI in a real browser: Debian's headless Chromium
//! driven through chromedriver (tests/src/browser.rs), against real
//! `corral master` and `corral agent` processes.
//!
//! Every page loads with no console error; a task launched while the tasks
//! page is open appears on it without a reload (the page's JavaScript
//! state survives, so it was not reloaded); the sandbox's log tail shows
//! the task's output as it is written; an agent killed while the agents
//! page is open is shown as disconnected; screenshots of every page at
//! desktop and phone widths land in target/webui-screenshots/. Bad
//! requests to the UI's endpoints answer 4xx with a message and change
//! nothing. (The standby's redirect is checked in tests/tests/ha.rs, where
//! masters run in HA.)

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::browser::{Browser, DESKTOP, PHONE};
use corral_tests::{command_task, wait_for, Cluster, ClusterOptions};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_ui_follows_the_cluster_in_a_real_browser() {
    let mut c = Cluster::start(ClusterOptions {
        agents: 2,
        per_agent_flags: vec![
            vec!["--attributes=rack:r1".into()],
            vec![
                "--attributes=rack:r2".into(),
                "--resources=cpus:1;mem:512;disk:512;ports:[31100-31199]".into(),
            ],
        ],
        ..Default::default()
    })
    .await;
    let base = format!("http://{}", c.master);
    let b = Browser::start().await.expect("browser");

    // Every page of an idle cluster, at both widths.
    for (path, name, expect) in [
        ("/", "overview", "Cluster overview"),
        ("/ui/agents", "agents", "rack:r2"),
        ("/ui/frameworks", "frameworks", "no frameworks subscribed"),
        ("/ui/roles", "roles", "Weight"),
    ] {
        b.open(&format!("{base}{path}")).await.expect("page loads");
        let text = b.main_text().await.expect("text");
        assert!(text.contains(expect), "{path} lacks {expect:?}:\n{text}");
        b.screenshot(&format!("master-{name}"), DESKTOP)
            .await
            .expect("shot");
        b.screenshot(&format!("master-{name}"), PHONE)
            .await
            .expect("shot");
    }

    // Keyboard: Tab walks the skip link, the brand and the navigation in
    // order; Enter on the skip link moves the focus to the content.
    b.open(&format!("{base}/")).await.expect("overview");
    let mut reached = Vec::new();
    for _ in 0..4 {
        let target = match b.client.active_element().await {
            Ok(e) => e,
            Err(_) => b
                .client
                .find(fantoccini::Locator::Css("body"))
                .await
                .expect("body"),
        };
        target.send_keys("\u{E004}").await.expect("tab");
        let text = b
            .eval("return document.activeElement.textContent")
            .await
            .expect("focus");
        reached.push(text.as_str().unwrap_or("").to_string());
    }
    assert_eq!(reached, ["Skip to content", "Corral", "Overview", "Agents"]);
    b.open(&format!("{base}/")).await.expect("overview");
    let body = b
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .expect("body");
    body.send_keys("\u{E004}").await.expect("tab");
    b.client
        .active_element()
        .await
        .expect("focused element")
        .send_keys("\u{E007}")
        .await
        .expect("enter");
    let focused = b
        .eval("return document.activeElement.id")
        .await
        .expect("focus");
    assert_eq!(
        focused,
        Value::from("content"),
        "Enter on the skip link focuses <main>"
    );

    // The tasks page is open when a task is launched: it appears there
    // without a reload.
    b.open(&format!("{base}/ui/tasks"))
        .await
        .expect("tasks page");
    b.mark_page().await.expect("mark");
    let mut s = c.subscribe(Encoding::Json).await;
    let agent = c.agents[0].clone();
    let offer = s
        .offer_where("an offer of agent 0", |o| {
            o["agent_id"]["value"] == agent.id.as_str()
        })
        .await;
    let task = command_task(
        "ui-task",
        &agent.id,
        "echo corral-ui-first-line; i=0; while true; do i=$((i+1)); echo corral-ui-line-$i; sleep 0.2; done",
        0.1,
        32.0,
    );
    s.launch(&offer, vec![task]).await;
    s.follow("ui-task", "TASK_RUNNING").await;
    if let Err(e) = b.wait_for_text("ui-task", LONG).await {
        let status = b
            .eval("return document.getElementById('live-status').textContent + ' rendered=' + document.querySelector('main').getAttribute('data-rendered')")
            .await;
        b.eval("window.__ev=[]; var s = new EventSource('/ui/live'); s.addEventListener('change', e => window.__ev.push(e.data)); return 1").await.unwrap();
        tokio::time::sleep(Duration::from_secs(7)).await;
        let ev = b.eval("return window.__ev").await;
        let url = b.url().await;
        panic!(
            "the task never appeared live ({status:?}, new source got {ev:?}, url {url:?}): {e}"
        );
    }
    b.wait_for_text("TASK_RUNNING", LONG)
        .await
        .expect("in state RUNNING");
    b.assert_not_reloaded().await.expect("updated in place");
    b.assert_no_console_errors("/ui/tasks (live)")
        .await
        .expect("console");
    b.screenshot("master-tasks", DESKTOP).await.expect("shot");
    b.screenshot("master-tasks", PHONE).await.expect("shot");

    // The overview counts it live too.
    b.open(&format!("{base}/")).await.expect("overview");
    b.wait_for_text("TASK_RUNNING", LONG)
        .await
        .expect("overview live");
    b.screenshot("master-overview-busy", DESKTOP)
        .await
        .expect("shot");

    // Task, framework and agent pages.
    let fid = s.fid()["value"].as_str().expect("framework id").to_string();
    b.open(&format!("{base}/ui/frameworks/{fid}/tasks/ui-task"))
        .await
        .expect("task page");
    let text = b.main_text().await.expect("text");
    for want in ["TASK_STARTING", "TASK_RUNNING", &agent.id, "stdout"] {
        assert!(text.contains(want), "task page lacks {want:?}:\n{text}");
    }
    b.screenshot("master-task", DESKTOP).await.expect("shot");
    b.screenshot("master-task", PHONE).await.expect("shot");
    b.open(&format!("{base}/ui/frameworks/{fid}"))
        .await
        .expect("framework page");
    let text = b.main_text().await.expect("text");
    assert!(
        text.contains("ui-task") && text.contains("Dominant share"),
        "{text}"
    );
    b.screenshot("master-framework", DESKTOP)
        .await
        .expect("shot");
    b.open(&format!("{base}/ui/agents/{}", agent.id))
        .await
        .expect("agent page");
    let text = b.main_text().await.expect("text");
    assert!(
        text.contains("ui-task") && text.contains("rack:r1"),
        "{text}"
    );
    b.screenshot("master-agent", DESKTOP).await.expect("shot");

    // The sandbox: the directory lists stdout; the file page tails it.
    let sandbox = format!("/frameworks/{fid}/executors/ui-task/runs/latest");
    b.open(&format!(
        "{base}/ui/sandbox?agent={}&path={}",
        agent.id,
        corral_tests::url_encode(&sandbox)
    ))
    .await
    .expect("sandbox page");
    b.wait_for_text("stdout", LONG)
        .await
        .expect("stdout listed");
    b.screenshot("master-sandbox", DESKTOP).await.expect("shot");
    b.open(&format!(
        "{base}/ui/sandbox/file?agent={}&path={}",
        agent.id,
        corral_tests::url_encode(&format!("{sandbox}/stdout"))
    ))
    .await
    .expect("log page");
    b.wait_for_element_text("#tail", "corral-ui-first-line", LONG)
        .await
        .expect("the tail shows the task's output");
    // It follows: a line written after the page opened shows up.
    let later = {
        let text = b
            .client
            .find(fantoccini::Locator::Css("#tail"))
            .await
            .expect("tail")
            .text()
            .await
            .expect("text");
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("corral-ui-line-"))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("corral-ui-line-{}", last + 10)
    };
    b.wait_for_element_text("#tail", &later, LONG)
        .await
        .expect("the tail follows the file");
    b.assert_no_console_errors("the log tail")
        .await
        .expect("console");
    b.screenshot("master-log", DESKTOP).await.expect("shot");
    b.screenshot("master-log", PHONE).await.expect("shot");

    // An agent killed while the agents page is open is shown as gone.
    b.open(&format!("{base}/ui/agents"))
        .await
        .expect("agents page");
    b.mark_page().await.expect("mark");
    let victim = c.agents[1].id.clone();
    c.kill_agent(1);
    let gone = wait_for(LONG, || async {
        let Ok(rows) = b
            .eval("return Array.from(document.querySelectorAll('main tbody tr')).map(r => r.innerText)")
            .await
        else {
            return false;
        };
        rows.as_array().is_some_and(|rows| {
            rows.iter().filter_map(Value::as_str).any(|r| {
                r.contains(&victim) && (r.contains("DISCONNECTED") || r.contains("UNREACHABLE"))
            })
        })
    })
    .await;
    assert!(
        gone,
        "the killed agent {victim} was never shown as gone:\n{}",
        b.main_text().await.unwrap_or_default()
    );
    b.assert_not_reloaded().await.expect("updated in place");
    b.screenshot("master-agents-one-gone", DESKTOP)
        .await
        .expect("shot");

    b.quit().await.expect("quit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_endpoints_refuse_bad_requests_and_change_nothing() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let before = c.state_json().await;
    for (path, status, says) in [
        ("/ui/agents/no-such-agent", 404, "No agent no-such-agent"),
        ("/ui/frameworks/no-such-fw", 404, "No framework no-such-fw"),
        ("/ui/frameworks/no-such-fw/tasks/t", 404, "No task t"),
        ("/ui/sandbox?path=/x", 400, "Expecting 'agent=<agent id>'"),
        (
            "/ui/sandbox?agent=A",
            400,
            "Expecting 'path=<sandbox path>'",
        ),
        (
            "/ui/files/read?agent=nope&path=/x&offset=0",
            404,
            "No agent nope",
        ),
        (
            "/ui/files/download?agent=nope&path=/x",
            404,
            "No agent nope",
        ),
        ("/ui/no-such-page", 404, "No endpoint /ui/no-such-page"),
    ] {
        let (code, _, body) = c.get(path).await;
        assert_eq!(code.as_u16(), status, "{path}: {body}");
        assert!(body.contains(says), "{path} should say {says:?}: {body}");
    }
    // A path the agent refuses (outside the sandbox) comes back as the
    // agent's own 4xx through the proxy.
    let agent = &c.agents[0].id;
    let (code, _, body) = c
        .get(&format!(
            "/ui/files/read?agent={agent}&path=/etc/passwd&offset=0"
        ))
        .await;
    assert!(code.is_client_error(), "{code}: {body}");
    let (code, _, body) = c
        .get(&format!(
            "/ui/sandbox?agent={agent}&path=/frameworks/nope/executors/x/runs/latest"
        ))
        .await;
    assert_eq!(code.as_u16(), 404, "{body}");
    assert!(body.contains("garbage-collected"), "{body}");

    // The history the overview charts is sampled from the start.
    let sampled = wait_for(LONG, || async {
        let history = c.get_json("/ui/history").await;
        history["samples"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["cpus_total"] == 2.0 && x["agents_active"] == 1.0)
        })
    })
    .await;
    assert!(
        sampled,
        "no sample of the agent's 2 CPUs: {}",
        c.get_json("/ui/history").await
    );

    let after = c.state_json().await;
    assert_eq!(before["get_agents"], after["get_agents"], "agents changed");
    assert_eq!(before["get_tasks"], after["get_tasks"], "tasks changed");
    assert_eq!(
        before["get_frameworks"], after["get_frameworks"],
        "frameworks changed"
    );
}
