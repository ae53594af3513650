//! The dispatcher's web pages, rendered on the server from the same
//! documents its JSON API serves (`/api/drivers`, `/api/drivers/{id}`),
//! re-rendered every few seconds in the browser:
//!
//! * `/ui` — the drivers: queued, running (with a link to each one's Spark
//!   UI when the dispatcher knows it) and finished;
//! * `/ui/drivers/{id}` — one driver: its application, where it runs, its
//!   standalone cluster's tasks and links to their sandboxes in the
//!   master's UI.
//!
//! `GET /` stays Spark's (the submission protocol answers it), so the
//! pages start at `/ui`.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use corral_sdk::webui::{html, master_sandbox_url, now_ms, when, Site};
use corral_webui::json::{arr, s, text};
use corral_webui::{cards, esc, kv, link, state, table_with_empty, url_encode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::api::{LogTarget, Query};

/// The pages' brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral Spark dispatcher",
    home: "/ui",
    nav: &[("/ui", "Drivers")],
};

fn driver_href(id: &str) -> String {
    format!("/ui/drivers/{}", url_encode(id))
}

/// What the application is: its name, else its main class, else its
/// resource.
fn app_of(d: &Value) -> String {
    let name = d["name"].as_str().filter(|n| !n.is_empty());
    let main = d["mainClass"].as_str().filter(|n| !n.is_empty());
    match (name, main) {
        (Some(n), Some(m)) if n != m => {
            format!("{} <span class=\"muted\">({})</span>", esc(n), esc(m))
        }
        (Some(n), _) => esc(n),
        (None, Some(m)) => esc(m),
        (None, None) => esc(&text(&d["appResource"])),
    }
}

/// The driver's Spark UI: a link when known, else says why not.
fn spark_ui(d: &Value) -> String {
    match d["uiUrl"].as_str().filter(|u| !u.is_empty()) {
        Some(u) => format!(
            "<a href=\"{}\" aria-label=\"Spark UI of {}\">{}</a>",
            esc(u),
            esc(s(&d["submissionId"])),
            esc(u.trim_start_matches("http://"))
        ),
        None if d["state"] == "RUNNING" => {
            "<span class=\"muted\">unknown (no UI port known for this driver)</span>".into()
        }
        None => "<span class=\"muted\">-</span>".into(),
    }
}

/// The drivers page (`/api/drivers`).
pub fn drivers_page(doc: &Value, now: i64) -> String {
    let live = arr(&doc["drivers"]);
    let queued: Vec<&Value> = live.iter().filter(|d| d["taskId"].is_null()).collect();
    let running: Vec<&Value> = live.iter().filter(|d| !d["taskId"].is_null()).collect();
    let finished = arr(&doc["finished"]);
    let id_cell = |d: &Value| link(&driver_href(s(&d["submissionId"])), s(&d["submissionId"]));
    let queued_rows: Vec<Vec<String>> = queued
        .iter()
        .map(|d| {
            vec![
                id_cell(d),
                state(s(&d["state"])),
                app_of(d),
                esc(&format!("{} / {}", text(&d["role"]), text(&d["queue"]))),
                when(d["submittedMs"].as_i64(), now),
                esc(&text(&d["whyPending"])),
            ]
        })
        .collect();
    let running_rows: Vec<Vec<String>> = running
        .iter()
        .map(|d| {
            vec![
                id_cell(d),
                state(s(&d["state"])),
                app_of(d),
                esc(&format!("{} / {}", text(&d["role"]), text(&d["queue"]))),
                when(d["submittedMs"].as_i64(), now),
                when(d["startedMs"].as_i64(), now),
                esc(&text(&d["hostname"])),
                spark_ui(d),
            ]
        })
        .collect();
    let finished_rows: Vec<Vec<String>> = finished
        .iter()
        .map(|d| {
            vec![
                id_cell(d),
                state(s(&d["state"])),
                app_of(d),
                esc(&format!("{} / {}", text(&d["role"]), text(&d["queue"]))),
                when(d["submittedMs"].as_i64(), now),
                when(d["finishedMs"].as_i64(), now),
                esc(&text(&d["message"])),
            ]
        })
        .collect();
    let q = &doc["queue"];
    let body = format!(
        "{}<h2>Queued</h2>{}<h2>Running</h2>{}<h2>Finished</h2>{}",
        cards(&[
            ("Queued", queued.len().to_string()),
            ("Running", running.len().to_string()),
            ("Finished (retained)", finished.len().to_string()),
            ("Queue capacity", text(&q["capacity"])),
        ]),
        table_with_empty(
            &[
                "Submission",
                "State",
                "Application",
                "Role / queue",
                "Submitted",
                "Why waiting"
            ],
            &queued_rows,
            "no driver waits",
        ),
        table_with_empty(
            &[
                "Submission",
                "State",
                "Application",
                "Role / queue",
                "Submitted",
                "Started",
                "Host",
                "Spark UI",
            ],
            &running_rows,
            "no driver runs",
        ),
        table_with_empty(
            &[
                "Submission",
                "State",
                "Application",
                "Role / queue",
                "Submitted",
                "Ended",
                "Last word"
            ],
            &finished_rows,
            "no driver has finished yet",
        ),
    );
    SITE.page("/ui", "Drivers", &body)
}

/// One driver's page (`/api/drivers/{id}`); `target` is where its sandbox
/// is read (`None` while the dispatcher is not subscribed or the driver
/// never ran): its tasks then link to the master's sandbox pages.
pub fn driver_page(d: &Value, target: Option<&LogTarget>, now: i64) -> String {
    let id = s(&d["submissionId"]);
    let sandbox = |task: &str, agent: &str| match target {
        Some(t) if !agent.is_empty() => format!(
            "<a href=\"{}\" aria-label=\"sandbox of {}\">sandbox</a>",
            esc(&master_sandbox_url(&t.master, agent, &t.framework, task)),
            esc(task)
        ),
        _ => "<span class=\"muted\">-</span>".into(),
    };
    let args: Vec<String> = arr(&d["appArgs"]).iter().map(|a| esc(&text(a))).collect();
    let mut pairs: Vec<(&str, String)> = vec![
        ("State", state(s(&d["state"]))),
        ("Application", app_of(d)),
        ("Main class", esc(&text(&d["mainClass"]))),
        ("Resource", esc(&text(&d["appResource"]))),
        (
            "Arguments",
            if args.is_empty() {
                "<span class=\"muted\">none</span>".into()
            } else {
                format!("<code>{}</code>", args.join(" "))
            },
        ),
        ("Role", esc(&text(&d["role"]))),
        (
            "Queue",
            esc(&format!(
                "{} (priority {})",
                text(&d["queue"]),
                text(&d["priority"])
            )),
        ),
        (
            "Supervised",
            if d["supervise"] == true { "yes" } else { "no" }.into(),
        ),
        ("Submitted", when(d["submittedMs"].as_i64(), now)),
        ("Started", when(d["startedMs"].as_i64(), now)),
        ("Ended", when(d["finishedMs"].as_i64(), now)),
        ("Attempts", esc(&text(&d["attempts"]))),
    ];
    if let Some(nb) = d["notBeforeMs"].as_i64() {
        pairs.push(("Relaunch not before", when(Some(nb), now)));
    }
    if let Some(why) = d["whyPending"].as_str() {
        pairs.push(("Why waiting", esc(why)));
    }
    if let Some(m) = d["message"].as_str() {
        pairs.push(("Last word", esc(m)));
    }
    pairs.push(("Host", esc(&text(&d["hostname"]))));
    pairs.push(("Standalone master", esc(&text(&d["masterUrl"]))));
    pairs.push(("Spark UI", spark_ui(d)));
    let mut rows: Vec<Vec<String>> = Vec::new();
    if let Some(task) = d["taskId"].as_str() {
        let agent = s(&d["agentId"]);
        rows.push(vec![
            esc(task),
            "driver".into(),
            esc(agent),
            sandbox(task, agent),
        ]);
    }
    for t in arr(&d["cluster"]) {
        let (task, agent) = (s(&t["taskId"]), s(&t["agentId"]));
        rows.push(vec![
            esc(task),
            esc(s(&t["kind"])),
            esc(agent),
            sandbox(task, agent),
        ]);
    }
    let body = format!(
        "{}<h2>Tasks</h2>{}<p><a href=\"/api/drivers/{}/logs\">The driver's stdout</a> \
         (<a href=\"/api/drivers/{}/logs?path=stderr\">stderr</a>) as JSON.</p>",
        kv(&pairs),
        table_with_empty(
            &["Task", "Kind", "Agent", "Logs"],
            &rows,
            "no tasks (not launched, or ended)",
        ),
        url_encode(id),
        url_encode(id)
    );
    SITE.page("/ui", &format!("Driver {id}"), &body)
}

async fn ask<T>(
    queries: &mpsc::Sender<Query>,
    make: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    queries.send(make(tx)).await.ok()?;
    rx.await.ok()
}

fn gone() -> Response {
    SITE.error(503, "Unavailable", "The dispatcher is shutting down.")
}

async fn drivers(State(q): State<mpsc::Sender<Query>>) -> Response {
    match ask(&q, Query::Drivers).await {
        Some(doc) => html(200, drivers_page(&doc, now_ms())),
        None => gone(),
    }
}

async fn driver(State(q): State<mpsc::Sender<Query>>, Path(id): Path<String>) -> Response {
    let Some(found) = ask(&q, |tx| Query::Driver(id.clone(), tx)).await else {
        return gone();
    };
    let Some(d) = found else {
        return SITE.not_found(&format!(
            "No driver {id} (never submitted, or no longer retained)."
        ));
    };
    let target = ask(&q, |tx| Query::LogTarget(id.clone(), tx))
        .await
        .and_then(Result::ok);
    html(200, driver_page(&d, target.as_ref(), now_ms()))
}

/// The pages' routes, answered by the leader only (a standby redirects to
/// it). No fallback: other paths stay Spark's.
pub fn router(queries: mpsc::Sender<Query>, gate: corral_sdk::gate::Gate) -> Router {
    Router::new()
        .route("/ui", get(drivers))
        .route("/ui/drivers/{id}", get(driver))
        .merge(SITE.common_routes(false))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(queries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_490_763_000;

    fn doc() -> Value {
        json!({
            "drivers": [
                {"submissionId": "driver-20261205171243-0001", "name": "Pi <script>x</script>",
                 "mainClass": "org.example.Pi", "role": "spark", "queue": "default",
                 "state": "RUNNING", "submittedMs": NOW - 60_000, "startedMs": NOW - 50_000,
                 "taskId": "driver-20261205171243-0001-1", "agentId": "agent-1",
                 "hostname": "node-1", "uiUrl": "http://node-1:23005",
                 "masterUrl": "spark://node-1:23003", "appArgs": ["4", "<25>"],
                 "cluster": [{"taskId": "driver-20261205171243-0001-1.master",
                              "agentId": "agent-1", "kind": "master"}]},
                {"submissionId": "driver-20261205171243-0002", "name": null,
                 "mainClass": "org.example.Wait", "role": "spark", "queue": "default",
                 "state": "RUNNING", "submittedMs": NOW - 5_000, "taskId": "t2",
                 "uiUrl": null},
                {"submissionId": "driver-20261205171243-0003", "name": "queued one",
                 "mainClass": "org.example.Q", "role": "spark", "queue": "default",
                 "state": "SUBMITTED", "submittedMs": NOW - 1_000, "taskId": null,
                 "whyPending": "no offer fits <8 cpus>"}
            ],
            "finished": [
                {"submissionId": "driver-20261205171243-0000", "name": "done",
                 "mainClass": "org.example.Done", "role": "spark", "queue": "default",
                 "state": "FINISHED", "submittedMs": NOW - 600_000,
                 "finishedMs": NOW - 300_000, "taskId": null}
            ],
            "queue": {"queued": 1, "capacity": 200},
            "frameworkId": "fw"
        })
    }

    #[test]
    fn queued_running_and_finished_drivers_with_spark_ui_links() {
        let html = drivers_page(&doc(), NOW);
        assert!(html.contains(
            "<a href=\"/ui/drivers/driver-20261205171243-0001\">driver-20261205171243-0001</a>"
        ));
        assert!(html.contains("href=\"http://node-1:23005\""), "{html}");
        assert!(html.contains("unknown (no UI port known"), "{html}");
        assert!(html.contains("no offer fits &lt;8 cpus&gt;"));
        assert!(html.contains("Pi &lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>x"));
        assert!(html.contains("FINISHED") && html.contains("org.example.Wait"));
        let queued = html.find("<h2>Queued</h2>").expect("queued");
        let running = html.find("<h2>Running</h2>").expect("running");
        let q3 = html.find("driver-20261205171243-0003").expect("queued one");
        assert!(
            queued < q3 && q3 < running,
            "the queued driver under Queued"
        );
    }

    #[test]
    fn a_driver_page_links_its_tasks_sandboxes() {
        let d = &doc()["drivers"][0];
        let target = LogTarget {
            master: "m:5050".into(),
            framework: "fw".into(),
            task_id: "driver-20261205171243-0001-1".into(),
        };
        let html = driver_page(d, Some(&target), NOW);
        assert!(html.contains("<h1>Driver driver-20261205171243-0001</h1>"));
        assert!(html.contains("4 &lt;25&gt;"), "{html}");
        assert!(html.contains(
            "http://m:5050/ui/sandbox?agent=agent-1&amp;path=/frameworks/fw/executors/driver-20261205171243-0001-1.master/runs/latest"
        ), "{html}");
        let html = driver_page(d, None, NOW);
        assert!(!html.contains("/ui/sandbox"));
    }

    #[tokio::test]
    async fn an_unknown_driver_is_a_404_page() {
        let (tx, mut rx) = mpsc::channel::<Query>(4);
        tokio::spawn(async move {
            while let Some(q) = rx.recv().await {
                match q {
                    Query::Driver(_, r) => {
                        let _ = r.send(None);
                    }
                    Query::Drivers(r) => {
                        let _ = r.send(doc());
                    }
                    Query::LogTarget(id, r) => {
                        let _ = r.send(Err(corral_sdk::shell::ApiError::not_found(id)));
                    }
                }
            }
        });
        let r = driver(State(tx.clone()), Path("driver-<x>".into())).await;
        assert_eq!(r.status(), 404);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("No driver driver-&lt;x&gt;"));
        assert_eq!(drivers(State(tx)).await.status(), 200);
    }
}
