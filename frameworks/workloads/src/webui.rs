//! The framework's web pages, rendered on the server from the same
//! documents its JSON API serves (each asked of the actor), re-rendered
//! every few seconds in the browser:
//!
//! * `/ui` — the requests: type, state, instances, schedule, active deploy;
//! * `/ui/requests/{id}` — one request: its deploys (active, in progress,
//!   history), its active tasks, its task history and, for jobs, its runs,
//!   each task with a link to its sandbox in the master's UI;
//! * `/ui/tasks` — every active task with its sandbox link;
//! * `GET /` — a redirect to `/ui`.
//!
//! The render functions are pure (documents in, HTML out); every value is
//! escaped.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use corral_sdk::webui::{master_sandbox_url, now_ms, when, Site};
use corral_webui::json::{arr, s, text};
use corral_webui::{cards, esc, kv, link, state, table_with_empty, url_encode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::server::{ApiError, Input, Reply};

type Inputs = mpsc::Sender<Input>;

/// The pages' brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral workloads",
    home: "/ui",
    nav: &[("/ui", "Requests"), ("/ui/tasks", "Tasks")],
};

/// Where the master is and who the framework is, for sandbox links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The leading master (`host:port`), once subscribed.
    pub master: Option<String>,
    /// The FrameworkID.
    pub framework: Option<String>,
}

impl Links {
    /// From `/api/state`.
    pub fn from_state(st: &Value) -> Self {
        Self {
            master: st["master"].as_str().map(str::to_string),
            framework: st["frameworkId"].as_str().map(str::to_string),
        }
    }

    /// A link to the task's sandbox in the master's UI (its task page when
    /// the agent is not known here); the task id alone when the master is
    /// not known.
    fn logs(&self, task_id: &str, agent_id: Option<&str>) -> String {
        match (
            &self.master,
            &self.framework,
            agent_id.filter(|a| !a.is_empty()),
        ) {
            (Some(m), Some(f), Some(a)) => format!(
                "<a href=\"{}\" aria-label=\"sandbox of {}\">sandbox</a>",
                esc(&master_sandbox_url(m, a, f, task_id)),
                esc(task_id)
            ),
            (Some(m), Some(f), None) => format!(
                "<a href=\"{}\" aria-label=\"task {} on the master\">on the master</a>",
                esc(&format!(
                    "http://{m}/ui/frameworks/{}/tasks/{}",
                    url_encode(f),
                    url_encode(task_id)
                )),
                esc(task_id)
            ),
            _ => "<span class=\"muted\">master unknown</span>".to_string(),
        }
    }
}

fn number(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| text(v), corral_webui::format_number)
}

fn request_href(id: &str) -> String {
    format!("/ui/requests/{}", url_encode(id))
}

fn long_running(kind: &str) -> bool {
    matches!(kind, "SERVICE" | "WORKER")
}

/// A request's schedule as text: the cron or ISO expression and its zone.
fn schedule_of(request: &Value) -> String {
    let sched = request["schedule"]
        .as_str()
        .or_else(|| request["quartzSchedule"].as_str());
    match (sched, request["scheduleTimeZone"].as_str()) {
        (Some(s), Some(tz)) => format!("{} <span class=\"muted\">({})</span>", esc(s), esc(tz)),
        (Some(s), None) => format!("{} <span class=\"muted\">(UTC)</span>", esc(s)),
        _ => "<span class=\"muted\">-</span>".into(),
    }
}

fn deploy_command(d: &Value) -> String {
    let mut out = String::new();
    if let Some(c) = d["command"].as_str() {
        out.push_str(c);
    }
    for a in arr(&d["arguments"]) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s(a));
    }
    out
}

/// The requests page: `requests` is `/api/requests`, `tasks`
/// `/api/tasks/active`, `st` `/api/state`.
pub fn requests_page(requests: &Value, tasks: &Value, st: &Value, now: i64) -> String {
    let running = |id: &str| {
        arr(tasks)
            .iter()
            .filter(|t| t["taskId"]["requestId"] == id)
            .count()
    };
    let rows: Vec<Vec<String>> = arr(requests)
        .iter()
        .map(|r| {
            let req = &r["request"];
            let id = s(&req["id"]);
            let kind = s(&req["requestType"]);
            let instances = if long_running(kind) {
                format!(
                    "{} of {}",
                    running(id),
                    req["instances"].as_u64().unwrap_or(1)
                )
            } else {
                format!("{} running", running(id))
            };
            let note = r["stateReason"]
                .as_str()
                .or_else(|| r["pendingReason"].as_str())
                .unwrap_or("");
            let deploy = match (
                r["activeDeploy"]["id"].as_str(),
                r["pendingDeployState"]["deployMarker"]["deployId"].as_str(),
            ) {
                (Some(a), Some(p)) => format!(
                    "{} <span class=\"muted\">(deploying {})</span>",
                    esc(a),
                    esc(p)
                ),
                (Some(a), None) => esc(a),
                (None, Some(p)) => format!("<span class=\"muted\">deploying {}</span>", esc(p)),
                (None, None) => "<span class=\"muted\">none yet</span>".into(),
            };
            vec![
                link(&request_href(id), id),
                esc(kind),
                state(s(&r["state"])),
                esc(&instances),
                schedule_of(req),
                deploy,
                when(r["nextRunAt"].as_i64(), now),
                esc(note),
            ]
        })
        .collect();
    let body = format!(
        "{}<h2>Requests</h2>{}<h2>Framework</h2>{}",
        cards(&[
            ("Requests", arr(requests).len().to_string()),
            ("Active tasks", arr(tasks).len().to_string()),
            (
                "Subscribed",
                if st["subscribed"] == true {
                    "yes"
                } else {
                    "no"
                }
                .to_string()
            ),
        ]),
        table_with_empty(
            &[
                "Request",
                "Type",
                "State",
                "Instances",
                "Schedule",
                "Active deploy",
                "Next run",
                "Note",
            ],
            &rows,
            "no requests yet (POST /api/requests)",
        ),
        kv(&[
            ("Master", esc(&text(&st["master"]))),
            ("FrameworkID", esc(&text(&st["frameworkId"]))),
        ]),
    );
    SITE.page("/ui", "Requests", &body)
}

/// The active tasks page (`/api/tasks/active`).
pub fn tasks_page(tasks: &Value, links: &Links, now: i64) -> String {
    let rows: Vec<Vec<String>> = arr(tasks)
        .iter()
        .map(|t| {
            let id = s(&t["taskId"]["id"]);
            let req = s(&t["taskId"]["requestId"]);
            let health = match t["healthy"].as_bool() {
                Some(true) => state("HEALTHY"),
                Some(false) => state("STARTING"),
                None => state("RUNNING"),
            };
            vec![
                esc(id),
                link(&request_href(req), req),
                esc(&text(&t["taskId"]["deployId"])),
                esc(&text(&t["taskId"]["instanceNo"])),
                esc(&text(&t["taskId"]["host"])),
                health,
                when(t["taskId"]["startedAt"].as_i64(), now),
                links.logs(id, t["agentId"].as_str()),
            ]
        })
        .collect();
    let body = table_with_empty(
        &[
            "Task",
            "Request",
            "Deploy",
            "Instance#",
            "Host",
            "Health",
            "Started",
            "Logs",
        ],
        &rows,
        "no active tasks",
    );
    SITE.page("/ui/tasks", "Active tasks", &body)
}

/// What a request's page shows.
pub struct RequestDocs<'a> {
    /// `/api/requests/request/{id}`.
    pub request: &'a Value,
    /// `/api/tasks/active` (every request's; this one's are picked).
    pub tasks: &'a Value,
    /// `/api/history/request/{id}/deploys`.
    pub deploys: &'a Value,
    /// `/api/history/request/{id}/tasks`.
    pub task_history: &'a Value,
    /// `/api/history/request/{id}/runs`.
    pub runs: &'a Value,
}

fn deploy_kv(d: &Value) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("Deploy", esc(&text(&d["id"])))];
    let command = deploy_command(d);
    if !command.is_empty() {
        pairs.push(("Command", format!("<code>{}</code>", esc(&command))));
    }
    if let Some(image) = d["containerInfo"]["docker"]["image"].as_str() {
        pairs.push(("Docker image", esc(image)));
    }
    if d["resources"].is_object() {
        pairs.push((
            "Resources",
            esc(&format!(
                "{} cpus, {} MB memory{}",
                number(&d["resources"]["cpus"]),
                number(&d["resources"]["memoryMb"]),
                d["resources"]["numPorts"]
                    .as_u64()
                    .map(|n| format!(", {n} ports"))
                    .unwrap_or_default()
            )),
        ));
    }
    if let Some(v) = d["version"].as_str() {
        pairs.push(("Version", esc(v)));
    }
    if let Some(h) = d["healthcheckUri"].as_str() {
        pairs.push(("Health check", esc(h)));
    }
    if let Some(labels) = d["labels"].as_object() {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(&text(v))))
            .collect();
        pairs.push(("Labels", l.join(", ")));
    }
    kv(&pairs)
}

/// One request's page.
pub fn request_page(docs: &RequestDocs<'_>, links: &Links, now: i64) -> String {
    let r = docs.request;
    let req = &r["request"];
    let id = s(&req["id"]);
    let kind = s(&req["requestType"]);
    let mine: Vec<&Value> = arr(docs.tasks)
        .iter()
        .filter(|t| t["taskId"]["requestId"] == id)
        .collect();
    let mut summary: Vec<(&str, String)> =
        vec![("Type", esc(kind)), ("State", state(s(&r["state"])))];
    if let Some(why) = r["stateReason"].as_str() {
        summary.push(("Why", esc(why)));
    }
    if long_running(kind) {
        summary.push((
            "Instances",
            esc(&format!(
                "{} running of {}",
                mine.len(),
                req["instances"].as_u64().unwrap_or(1)
            )),
        ));
    } else {
        summary.push(("Schedule", schedule_of(req)));
        summary.push(("Next run", when(r["nextRunAt"].as_i64(), now)));
    }
    if let Some(why) = r["pendingReason"].as_str() {
        summary.push(("Waiting because", esc(why)));
    }
    let owners: Vec<String> = arr(&req["owners"]).iter().map(|o| esc(s(o))).collect();
    if !owners.is_empty() {
        summary.push(("Owners", owners.join(", ")));
    }
    let deps: Vec<String> = arr(&req["dependsOn"])
        .iter()
        .map(|d| link(&request_href(s(d)), s(d)))
        .collect();
    if !deps.is_empty() {
        summary.push(("Runs after", deps.join(", ")));
    }
    let mut body = kv(&summary);

    body.push_str("<h2>Active deploy</h2>");
    match r["activeDeploy"].is_object() {
        true => body.push_str(&deploy_kv(&r["activeDeploy"])),
        false => body.push_str("<p class=\"muted\">No active deploy yet.</p>"),
    }
    if let Some(p) = r["pendingDeployState"]["deployMarker"]["deployId"].as_str() {
        body.push_str(&format!(
            "<p class=\"notice\">Deploy {} is in progress (pending).</p>",
            esc(p)
        ));
    }
    let deploy_rows: Vec<Vec<String>> = arr(docs.deploys)
        .iter()
        .rev()
        .map(|d| {
            vec![
                esc(s(&d["deployMarker"]["deployId"])),
                state(s(&d["deployResult"]["deployState"])),
                esc(&text(&d["deployResult"]["message"])),
            ]
        })
        .collect();
    body.push_str("<h2>Deploy history</h2>");
    body.push_str(&table_with_empty(
        &["Deploy", "Result", "Message"],
        &deploy_rows,
        "no deploys finished yet",
    ));

    let task_rows: Vec<Vec<String>> = mine
        .iter()
        .map(|t| {
            let tid = s(&t["taskId"]["id"]);
            let health = match t["healthy"].as_bool() {
                Some(true) => state("HEALTHY"),
                Some(false) => state("STARTING"),
                None => state("RUNNING"),
            };
            let ports: Vec<String> = arr(&t["ports"]).iter().map(text).collect();
            vec![
                esc(tid),
                esc(&text(&t["taskId"]["instanceNo"])),
                esc(&text(&t["taskId"]["deployId"])),
                esc(&text(&t["taskId"]["host"])),
                esc(&ports.join(", ")),
                health,
                when(t["taskId"]["startedAt"].as_i64(), now),
                links.logs(tid, t["agentId"].as_str()),
            ]
        })
        .collect();
    body.push_str("<h2>Active tasks</h2>");
    body.push_str(&table_with_empty(
        &[
            "Task",
            "Instance#",
            "Deploy",
            "Host",
            "Ports",
            "Health",
            "Started",
            "Logs",
        ],
        &task_rows,
        "no active tasks",
    ));

    if long_running(kind) {
        let rows: Vec<Vec<String>> = arr(docs.task_history)
            .iter()
            .rev()
            .map(|t| {
                let tid = s(&t["taskId"]);
                vec![
                    esc(tid),
                    esc(&text(&t["deployId"])),
                    esc(&text(&t["instance"])),
                    esc(&text(&t["host"])),
                    state(s(&t["lastTaskState"])),
                    when(t["launchedAt"].as_i64(), now),
                    when(t["updatedAt"].as_i64(), now),
                    if t["killedByFramework"] == true {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    links.logs(tid, t["agentId"].as_str()),
                ]
            })
            .collect();
        body.push_str("<h2>Task history</h2>");
        body.push_str(&table_with_empty(
            &[
                "Task",
                "Deploy",
                "Instance#",
                "Host",
                "Last state",
                "Launched",
                "Ended",
                "Killed by the framework",
                "Logs",
            ],
            &rows,
            "no task has ended yet",
        ));
    } else {
        let rows: Vec<Vec<String>> = arr(docs.runs)
            .iter()
            .rev()
            .map(|run| {
                let run_id = s(&run["runId"]);
                let tid = format!("{id}-{run_id}");
                let duration = run["durationMillis"]
                    .as_f64()
                    .map(|ms| corral_webui::format_age(ms / 1000.0))
                    .unwrap_or_else(|| "-".into());
                vec![
                    esc(run_id),
                    when(run["scheduledFor"].as_i64(), now),
                    esc(&text(&run["attempt"])),
                    when(run["startedAt"].as_i64(), now),
                    when(run["finishedAt"].as_i64(), now),
                    esc(&duration),
                    state(s(&run["outcome"])),
                    esc(&text(&run["reason"])),
                    links.logs(&tid, None),
                ]
            })
            .collect();
        body.push_str("<h2>Runs</h2>");
        body.push_str(&table_with_empty(
            &[
                "Run",
                "Scheduled for",
                "Attempt#",
                "Started",
                "Finished",
                "Took",
                "Outcome",
                "Reason",
                "Logs",
            ],
            &rows,
            "no runs yet",
        ));
    }
    SITE.page("/ui", &format!("Request {id}"), &body)
}

async fn ask(inputs: &Inputs, make: impl FnOnce(Reply<Value>) -> Input) -> Result<Value, ApiError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::unavailable("the framework is shutting down");
    inputs.send(make(tx)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

fn failed(e: ApiError) -> Response {
    if e.status == 404 {
        SITE.not_found(&e.message)
    } else {
        SITE.error(e.status, "Unavailable", &e.message)
    }
}

async fn requests(State(inputs): State<Inputs>) -> Response {
    let docs = async {
        Ok::<_, ApiError>((
            ask(&inputs, Input::ListRequests).await?,
            ask(&inputs, Input::ActiveTasks).await?,
            ask(&inputs, Input::State).await?,
        ))
    };
    match docs.await {
        Ok((r, t, st)) => corral_sdk::webui::html(200, requests_page(&r, &t, &st, now_ms())),
        Err(e) => failed(e),
    }
}

async fn tasks(State(inputs): State<Inputs>) -> Response {
    let docs = async {
        Ok::<_, ApiError>((
            ask(&inputs, Input::ActiveTasks).await?,
            ask(&inputs, Input::State).await?,
        ))
    };
    match docs.await {
        Ok((t, st)) => {
            corral_sdk::webui::html(200, tasks_page(&t, &Links::from_state(&st), now_ms()))
        }
        Err(e) => failed(e),
    }
}

async fn request(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    let docs = async {
        let request = ask(&inputs, |r| Input::GetRequest(id.clone(), r)).await?;
        Ok::<_, ApiError>((
            request,
            ask(&inputs, Input::ActiveTasks).await?,
            ask(&inputs, |r| Input::DeployHistory(id.clone(), r)).await?,
            ask(&inputs, |r| Input::TaskHistory(id.clone(), r)).await?,
            ask(&inputs, |r| Input::RunHistory(id.clone(), r)).await?,
            ask(&inputs, Input::State).await?,
        ))
    };
    match docs.await {
        Ok((request, tasks, deploys, task_history, runs, st)) => {
            let page = request_page(
                &RequestDocs {
                    request: &request,
                    tasks: &tasks,
                    deploys: &deploys,
                    task_history: &task_history,
                    runs: &runs,
                },
                &Links::from_state(&st),
                now_ms(),
            );
            corral_sdk::webui::html(200, page)
        }
        Err(e) => failed(e),
    }
}

/// The pages' routes (the API's state: the actor's inputs).
pub(crate) fn routes() -> Router<Inputs> {
    Router::new()
        .route("/ui", get(requests))
        .route("/ui/tasks", get(tasks))
        .route("/ui/requests/{id}", get(request))
        .merge(SITE.common_routes(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_490_763_000;

    fn links() -> Links {
        Links {
            master: Some("10.0.0.1:5050".into()),
            framework: Some("fw-1".into()),
        }
    }

    fn fixture() -> (Value, Value, Value) {
        let requests = json!([
            {"request": {"id": "worker", "requestType": "WORKER", "instances": 2,
                         "owners": ["<script>alert(1)</script>"]},
             "state": "ACTIVE",
             "activeDeploy": {"requestId": "worker", "id": "1", "command": "sleep 300 <b>",
                              "resources": {"cpus": 0.1, "memoryMb": 32},
                              "labels": {"team": "<img src=x>"}}},
            {"request": {"id": "<script>x</script>", "requestType": "SCHEDULED",
                         "schedule": "*/2 * * * * *", "scheduleTimeZone": "Europe/Berlin"},
             "state": "PAUSED", "stateReason": "paused by a user", "nextRunAt": NOW + 2000}
        ]);
        let tasks = json!([
            {"taskId": {"id": "worker-1-1-abc", "requestId": "worker", "deployId": "1",
                        "instanceNo": 1, "host": "host1", "startedAt": NOW - 60_000},
             "agentId": "agent-1", "ports": [31000], "healthy": true},
            {"taskId": {"id": "worker-1-2-def", "requestId": "worker", "deployId": "1",
                        "instanceNo": 2, "host": "host2", "startedAt": NOW - 5_000},
             "agentId": "agent-2", "ports": [], "healthy": false}
        ]);
        let st = json!({"allRequests": 2, "activeTasks": 2, "subscribed": true,
                        "frameworkId": "fw-1", "master": "10.0.0.1:5050"});
        (requests, tasks, st)
    }

    #[test]
    fn the_requests_page_lists_every_request_escaped() {
        let (requests, tasks, st) = fixture();
        let html = requests_page(&requests, &tasks, &st, NOW);
        assert!(
            html.contains("<a href=\"/ui/requests/worker\">worker</a>"),
            "{html}"
        );
        assert!(html.contains("WORKER") && html.contains("2 of 2"), "{html}");
        assert!(html.contains("*/2 * * * * *") && html.contains("Europe/Berlin"));
        assert!(html.contains("PAUSED") && html.contains("paused by a user"));
        // The malicious id is text, its link percent-encoded.
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(
            html.contains("/ui/requests/%3Cscript%3Ex%3C/script%3E"),
            "{html}"
        );
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("<body data-refresh-seconds=\"5\">"));
    }

    #[test]
    fn a_request_page_shows_deploys_tasks_history_and_sandbox_links() {
        let (requests, tasks, _) = fixture();
        let deploys = json!([{"deployMarker": {"requestId": "worker", "deployId": "0"},
                              "deployResult": {"deployState": "SUCCEEDED", "message": null}}]);
        let history = json!([{"taskId": "worker-0-1-x", "deployId": "0", "instance": 1,
                              "host": "host1", "agentId": "agent-1",
                              "lastTaskState": "TASK_KILLED", "launchedAt": NOW - 600_000,
                              "updatedAt": NOW - 300_000, "killedByFramework": true}]);
        let html = request_page(
            &RequestDocs {
                request: &requests[0],
                tasks: &tasks,
                deploys: &deploys,
                task_history: &history,
                runs: &json!([]),
            },
            &links(),
            NOW,
        );
        assert!(html.contains("<h1>Request worker</h1>"), "{html}");
        assert!(html.contains("2 running of 2"));
        assert!(html.contains("sleep 300 &lt;b&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("worker-1-2-def") && html.contains("TASK_KILLED"));
        assert!(html.contains("SUCCEEDED"));
        assert!(
            html.contains(
                "http://10.0.0.1:5050/ui/sandbox?agent=agent-1&amp;path=/frameworks/fw-1/executors/worker-0-1-x/runs/latest"
            ),
            "{html}"
        );
    }

    #[test]
    fn a_job_page_lists_its_runs_linked_to_the_master() {
        let (requests, tasks, _) = fixture();
        let runs = json!([{"runId": "r1", "scheduledFor": NOW - 2000, "attempt": 0,
                           "startedAt": NOW - 1900, "finishedAt": NOW - 1000,
                           "durationMillis": 900, "outcome": "FAILED", "reason": "exit <1>"}]);
        let html = request_page(
            &RequestDocs {
                request: &requests[1],
                tasks: &tasks,
                deploys: &json!([]),
                task_history: &json!([]),
                runs: &runs,
            },
            &links(),
            NOW,
        );
        assert!(
            html.contains("FAILED") && html.contains("exit &lt;1&gt;"),
            "{html}"
        );
        assert!(
            html.contains(
                "http://10.0.0.1:5050/ui/frameworks/fw-1/tasks/%3Cscript%3Ex%3C/script%3E-r1"
            ),
            "{html}"
        );
        // Without a master, no link.
        let html = tasks_page(&tasks, &Links::default(), NOW);
        assert!(html.contains("master unknown") && !html.contains("/ui/sandbox"));
    }

    #[tokio::test]
    async fn an_unknown_request_is_a_404_page() {
        // An actor that knows no request.
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                match input {
                    Input::GetRequest(id, r) => {
                        let _ = r.send(Err(ApiError::not_found(format!("no request {id:?}"))));
                    }
                    Input::ListRequests(r) | Input::ActiveTasks(r) => {
                        let _ = r.send(Ok(json!([])));
                    }
                    Input::State(r) => {
                        let _ = r.send(Ok(json!({"subscribed": false})));
                    }
                    _ => {}
                }
            }
        });
        let r = request(State(tx.clone()), Path("<script>".into())).await;
        assert_eq!(r.status(), 404);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("no request &quot;&lt;script&gt;&quot;"),
            "{body}"
        );
        let r = requests(State(tx)).await;
        assert_eq!(r.status(), 200);
    }
}
