//! The master's web pages as pure functions: each renders a whole HTML
//! document from a [`Snapshot`] (the same JSON views `/master/state` and
//! `/master/roles` serve, plus the registry's unreachable and gone agents)
//! and the utilisation [`Sample`] history. No I/O; unit-tested below.

use corral_webui::json::{arr, num, s};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use corral_webui::{
    bar, cards, esc, format_age, format_number, kv, line_chart, link, state, table,
    table_with_empty, url_encode, Live, Page, Series,
};
use serde_json::Value;

use super::Sample;

/// What a page is rendered from, taken from the master in one query.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `/master/state`.
    pub state: Value,
    /// `/master/roles`.
    pub roles: Value,
    /// Agents the registry holds as unreachable: id, hostname, since (wall).
    pub unreachable: Vec<(String, String, f64)>,
    /// Agents marked gone.
    pub gone: Vec<String>,
    /// Seconds since the Unix epoch when it was taken.
    pub now: f64,
    /// The allocation when it was taken (the chart's last point).
    pub current: Sample,
    /// Agents whose machine has a maintenance window: its start (seconds
    /// since the epoch) and duration (seconds, if given).
    pub maintenance: BTreeMap<String, (f64, Option<f64>)>,
}

/// An agent's maintenance window in words.
fn maintenance_words(snap: &Snapshot, agent: &str) -> String {
    let Some((start, duration)) = snap.maintenance.get(agent) else {
        return "<span class=\"muted\">none scheduled</span>".into();
    };
    let when = if *start > snap.now {
        format!("starts in {}", format_age(start - snap.now))
    } else {
        format!("started {} ago", format_age(snap.now - start))
    };
    let length = duration.map_or_else(
        || "open-ended".to_string(),
        |d| format!("for {}", format_age(d)),
    );
    state(&format!("SCHEDULED: {when}, {length}"))
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/ui/agents", "Agents"),
    ("/ui/frameworks", "Frameworks"),
    ("/ui/tasks", "Tasks"),
    ("/ui/roles", "Roles"),
];

/// The URL of the event stream live pages follow.
pub const LIVE_URL: &str = "/ui/live";

fn page(active: &str, title: &str, live: bool, body: &str) -> String {
    Page {
        brand: "Corral",
        home: "/",
        nav: NAV,
        active,
        title,
        live: if live {
            Live::Events(LIVE_URL.into())
        } else {
            Live::Static
        },
        body,
    }
    .render()
}

/// A page saying what was not found and where to look instead.
pub fn not_found(what: &str, back: &str, back_label: &str) -> String {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p>{}</p>",
        esc(what),
        link(back, back_label)
    );
    page("", "Not found", false, &body)
}

/// A page for an error the operator can act on.
pub fn error(title: &str, message: &str) -> String {
    let body = format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message));
    page("", title, false, &body)
}

fn mib(v: f64) -> String {
    if v >= 1024.0 {
        format!("{} GiB", format_number(v / 1024.0))
    } else {
        format!("{} MiB", format_number(v))
    }
}

fn agent_href(id: &str) -> String {
    format!("/ui/agents/{}", url_encode(id))
}

fn framework_href(id: &str) -> String {
    format!("/ui/frameworks/{}", url_encode(id))
}

fn task_href(framework: &str, task: &str) -> String {
    format!(
        "/ui/frameworks/{}/tasks/{}",
        url_encode(framework),
        url_encode(task)
    )
}

/// The sandbox directory of an executor as the agent's `/files` names it.
pub fn sandbox_path(framework: &str, executor: &str) -> String {
    format!("/frameworks/{framework}/executors/{executor}/runs/latest")
}

fn sandbox_href(agent: &str, path: &str) -> String {
    format!(
        "/ui/sandbox?agent={}&path={}",
        url_encode(agent),
        url_encode(path)
    )
}

fn file_href(agent: &str, path: &str) -> String {
    format!(
        "/ui/sandbox/file?agent={}&path={}",
        url_encode(agent),
        url_encode(path)
    )
}

/// A task with the framework it belongs to.
struct TaskRef<'a> {
    task: &'a Value,
    framework_name: &'a str,
    completed: bool,
}

fn all_tasks(st: &Value) -> Vec<TaskRef<'_>> {
    let mut out = Vec::new();
    for f in arr(&st["frameworks"])
        .iter()
        .chain(arr(&st["completed_frameworks"]))
    {
        let name = s(&f["name"]);
        for t in arr(&f["tasks"]) {
            out.push(TaskRef {
                task: t,
                framework_name: name,
                completed: false,
            });
        }
        for t in arr(&f["completed_tasks"]) {
            out.push(TaskRef {
                task: t,
                framework_name: name,
                completed: true,
            });
        }
    }
    out
}

fn executor_of(task: &Value) -> String {
    let e = s(&task["executor_id"]);
    if e.is_empty() {
        s(&task["id"]).to_string()
    } else {
        e.to_string()
    }
}

fn last_update(task: &Value) -> f64 {
    arr(&task["statuses"])
        .last()
        .map(|x| num(x, "timestamp"))
        .unwrap_or(0.0)
}

fn health(task: &Value) -> String {
    match arr(&task["statuses"]).last().and_then(|x| x.get("healthy")) {
        Some(Value::Bool(true)) => state("healthy"),
        Some(Value::Bool(false)) => state("unhealthy"),
        _ => "<span class=\"muted\">-</span>".into(),
    }
}

fn agent_state(a: &Value) -> &'static str {
    match a["drain_info"]["state"].as_str() {
        Some("DRAINING") => return "DRAINING",
        Some("DRAINED") => return "DRAINED",
        _ => {}
    }
    if a["active"] != Value::Bool(true) {
        "DISCONNECTED"
    } else if a["deactivated"] == Value::Bool(true) {
        "DEACTIVATED"
    } else {
        "ACTIVE"
    }
}

fn cluster_totals(st: &Value) -> BTreeMap<&'static str, [f64; 4]> {
    // name -> [total, used, offered, reserved]
    let mut out = BTreeMap::new();
    for name in ["cpus", "mem", "disk", "gpus"] {
        let mut row = [0.0; 4];
        for a in arr(&st["slaves"]) {
            row[0] += num(&a["resources"], name);
            row[1] += num(&a["used_resources"], name);
            row[2] += num(&a["offered_resources"], name);
            if let Some(by_role) = a["reserved_resources"].as_object() {
                row[3] += by_role.values().map(|r| num(r, name)).sum::<f64>();
            }
        }
        out.insert(name, row);
    }
    out
}

fn fmt_amount(name: &str, v: f64) -> String {
    match name {
        "mem" | "disk" => mib(v),
        _ => format_number(v),
    }
}

/// `/`: the cluster at a glance.
pub fn overview(snap: &Snapshot, history: &[Sample]) -> String {
    let st = &snap.state;
    let agents = arr(&st["slaves"]);
    let active = agents
        .iter()
        .filter(|a| a["active"] == Value::Bool(true))
        .count();
    let tasks = all_tasks(st);
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &tasks {
        *by_state.entry(s(&t.task["state"])).or_default() += 1;
    }
    let running = by_state.get("TASK_RUNNING").copied().unwrap_or(0);
    let totals = cluster_totals(st);
    let mut body = String::new();
    body.push_str(&cards(&[
        ("Agents active", format!("{active} of {}", agents.len())),
        ("Unreachable agents", snap.unreachable.len().to_string()),
        ("Frameworks", arr(&st["frameworks"]).len().to_string()),
        ("Tasks running", running.to_string()),
        (
            "CPUs used",
            format!(
                "{} of {}",
                format_number(totals["cpus"][1]),
                format_number(totals["cpus"][0])
            ),
        ),
        (
            "Memory used",
            format!("{} of {}", mib(totals["mem"][1]), mib(totals["mem"][0])),
        ),
    ]));
    body.push_str("<h2>Resources</h2>");
    let rows: Vec<Vec<String>> = totals
        .iter()
        .filter(|(name, v)| **name != "gpus" || v[0] > 0.0)
        .map(|(name, v)| {
            vec![
                esc(name),
                fmt_amount(name, v[0]),
                fmt_amount(name, v[1]),
                fmt_amount(name, v[3]),
                fmt_amount(name, v[2]),
                fmt_amount(name, (v[0] - v[1] - v[2]).max(0.0)),
                bar(v[1], v[0]),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "Resource",
            "Total#",
            "Used#",
            "Reserved#",
            "Offered#",
            "Idle#",
            "Allocated",
        ],
        &rows,
    ));
    body.push_str("<h2>Utilisation over time</h2>");
    body.push_str(&utilisation_charts(history));
    body.push_str("<h2>Tasks by state</h2>");
    let rows: Vec<Vec<String>> = by_state
        .iter()
        .map(|(k, v)| {
            vec![
                format!(
                    "<a href=\"/ui/tasks?state={}\">{}</a>",
                    url_encode(k),
                    state(k)
                ),
                v.to_string(),
            ]
        })
        .collect();
    body.push_str(&table_with_empty(
        &["State", "Tasks#"],
        &rows,
        "no tasks yet",
    ));
    body.push_str("<h2>Latest task updates</h2>");
    let mut recent: Vec<&TaskRef<'_>> = tasks.iter().collect();
    recent.sort_by(|a, b| last_update(b.task).total_cmp(&last_update(a.task)));
    body.push_str(&task_table(snap, recent.into_iter().take(10)));
    body.push_str("<h2>Master</h2>");
    body.push_str(&kv(&[
        ("Leader", esc(s(&st["leader"]))),
        ("Version", esc(s(&st["version"]))),
        ("Build", esc(s(&st["git_sha"]))),
        ("Up for", esc(&format_age(snap.now - num(st, "start_time")))),
        (
            "Cluster",
            esc(st["cluster"].as_str().unwrap_or("(unnamed)")),
        ),
    ]));
    page("/", "Cluster overview", true, &body)
}

fn utilisation_charts(history: &[Sample]) -> String {
    if history.is_empty() {
        return "<p class=\"muted\">No samples yet: the master samples its allocation every few seconds.</p>".into();
    }
    let first = history.first().map(|x| x.wall).unwrap_or(0.0);
    let last = history.last().map(|x| x.wall).unwrap_or(0.0);
    let span = format!("last {}", format_age(last - first));
    let pct = |num: fn(&Sample) -> f64, den: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .map(|x| {
                let d = den(x);
                (
                    x.wall - first,
                    if d > 0.0 { num(x) / d * 100.0 } else { 0.0 },
                )
            })
            .collect()
    };
    let mut out = String::from("<div class=\"cards\" style=\"grid-template-columns:repeat(auto-fit,minmax(300px,1fr))\"><div>");
    out.push_str(&line_chart(
        "Allocated share of the cluster, percent",
        &[
            Series {
                name: "CPUs allocated %",
                colour: "#0b5cad",
                dash: "",
                points: pct(|x| x.cpus_used, |x| x.cpus_total),
            },
            Series {
                name: "memory allocated %",
                colour: "#b45f06",
                dash: "6 3",
                points: pct(|x| x.mem_used, |x| x.mem_total),
            },
            Series {
                name: "CPUs offered %",
                colour: "#6b7785",
                dash: "2 3",
                points: pct(|x| x.cpus_offered, |x| x.cpus_total),
            },
        ],
        Some(100.0),
        "%",
        &span,
    ));
    out.push_str("</div><div>");
    out.push_str(&line_chart(
        "Tasks running and agents active",
        &[
            Series {
                name: "tasks running",
                colour: "#1f7a36",
                dash: "",
                points: history
                    .iter()
                    .map(|x| (x.wall - first, x.tasks_running))
                    .collect(),
            },
            Series {
                name: "agents active",
                colour: "#7a1f6b",
                dash: "6 3",
                points: history
                    .iter()
                    .map(|x| (x.wall - first, x.agents_active))
                    .collect(),
            },
        ],
        None,
        "count",
        &span,
    ));
    out.push_str("</div></div>");
    out
}

/// Most task rows one table shows (a page of a large cluster stays small;
/// the filters narrow it down).
pub const MAX_TASK_ROWS: usize = 500;

fn task_table<'a>(snap: &Snapshot, tasks: impl Iterator<Item = &'a TaskRef<'a>>) -> String {
    let mut tasks = tasks.peekable();
    let rows: Vec<Vec<String>> = tasks
        .by_ref()
        .take(MAX_TASK_ROWS)
        .map(|t| {
            let task = t.task;
            let (fid, tid, aid) = (
                s(&task["framework_id"]),
                s(&task["id"]),
                s(&task["slave_id"]),
            );
            let updated = last_update(task);
            vec![
                link(&task_href(fid, tid), tid),
                esc(s(&task["name"])),
                link(&framework_href(fid), t.framework_name),
                link(&agent_href(aid), aid),
                state(s(&task["state"])),
                health(task),
                format_number(num(&task["resources"], "cpus")),
                mib(num(&task["resources"], "mem")),
                if updated > 0.0 {
                    format!("{} ago", format_age(snap.now - updated))
                } else {
                    "-".into()
                },
                if t.completed {
                    "<span class=\"muted\">done</span>".into()
                } else {
                    link(
                        &sandbox_href(aid, &sandbox_path(fid, &executor_of(task))),
                        "sandbox",
                    )
                },
            ]
        })
        .collect();
    let table = table_with_empty(
        &[
            "Task",
            "Name",
            "Framework",
            "Agent",
            "State",
            "Health",
            "CPUs#",
            "Mem#",
            "Updated",
            "Sandbox",
        ],
        &rows,
        "no tasks",
    );
    let more = tasks.count();
    if more > 0 {
        format!(
            "{table}<p class=\"notice\">{more} more not shown (at most {MAX_TASK_ROWS}); \
             <a href=\"/ui/tasks\">filter the tasks</a> by state, framework or id.</p>"
        )
    } else {
        table
    }
}

/// `/ui/agents`.
pub fn agents(snap: &Snapshot) -> String {
    let st = &snap.state;
    let mut tasks_on: BTreeMap<&str, usize> = BTreeMap::new();
    for t in all_tasks(st).iter().filter(|t| !t.completed) {
        *tasks_on.entry(s(&t.task["slave_id"])).or_default() += 1;
    }
    let rows: Vec<Vec<String>> = arr(&st["slaves"])
        .iter()
        .map(|a| {
            let id = s(&a["id"]);
            let attrs = a["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!("{}:{}", k, v.as_str().map_or(v.to_string(), str::to_string))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                link(&agent_href(id), id),
                esc(&format!("{}:{}", s(&a["hostname"]), a["port"])),
                state(agent_state(a)),
                format!(
                    "{} / {}",
                    format_number(num(&a["used_resources"], "cpus")),
                    format_number(num(&a["resources"], "cpus"))
                ),
                format!(
                    "{} / {}",
                    mib(num(&a["used_resources"], "mem")),
                    mib(num(&a["resources"], "mem"))
                ),
                format!(
                    "{} / {}",
                    mib(num(&a["used_resources"], "disk")),
                    mib(num(&a["resources"], "disk"))
                ),
                tasks_on.get(id).copied().unwrap_or(0).to_string(),
                esc(&attrs),
                maintenance_words(snap, id),
                format!("{} ago", format_age(snap.now - num(a, "registered_time"))),
            ]
        })
        .collect();
    let mut body = table_with_empty(
        &[
            "Agent",
            "Address",
            "State",
            "CPUs used / total",
            "Memory",
            "Disk",
            "Tasks#",
            "Attributes",
            "Maintenance",
            "Registered",
        ],
        &rows,
        "no agents registered",
    );
    body.push_str("<h2>Unreachable and gone</h2>");
    let mut rows: Vec<Vec<String>> = snap
        .unreachable
        .iter()
        .map(|(id, host, since)| {
            vec![
                esc(id),
                esc(host),
                state("UNREACHABLE"),
                format!("{} ago", format_age(snap.now - since)),
            ]
        })
        .collect();
    rows.extend(
        snap.gone
            .iter()
            .map(|id| vec![esc(id), String::new(), state("GONE"), String::new()]),
    );
    body.push_str(&table_with_empty(
        &["Agent", "Host", "State", "Since"],
        &rows,
        "none",
    ));
    page("/ui/agents", "Agents", true, &body)
}

fn resources_table(rows: &[(&str, &Value)]) -> String {
    let mut names: Vec<String> = Vec::new();
    for (_, r) in rows {
        if let Some(m) = r.as_object() {
            for (k, v) in m {
                let keep = v
                    .as_f64()
                    .is_none_or(|x| x > 0.0 || ["cpus", "mem", "disk"].contains(&k.as_str()));
                if keep && !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    let headers: Vec<String> = std::iter::once("".to_string())
        .chain(names.iter().cloned())
        .collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(label, r)| {
            std::iter::once(esc(label))
                .chain(names.iter().map(|n| match &r[n] {
                    Value::Number(x) => fmt_amount(n, x.as_f64().unwrap_or(0.0)),
                    Value::String(t) => esc(t),
                    _ => "-".into(),
                }))
                .collect()
        })
        .collect();
    table(&header_refs, &body)
}

/// Persistent volumes among an agent's reserved resources:
/// (role, persistence id, size MiB, container path).
fn volumes_of(agent: &Value) -> Vec<(String, String, f64, String)> {
    let mut out = Vec::new();
    if let Some(by_role) = agent["reserved_resources_full"].as_object() {
        for (role, list) in by_role {
            for r in arr(list) {
                let id = s(&r["disk"]["persistence"]["id"]);
                if !id.is_empty() {
                    out.push((
                        role.clone(),
                        id.to_string(),
                        r["scalar"]["value"].as_f64().unwrap_or(0.0),
                        s(&r["disk"]["volume"]["container_path"]).to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// `/ui/agents/<id>`.
pub fn agent(snap: &Snapshot, id: &str) -> Option<String> {
    let st = &snap.state;
    let a = arr(&st["slaves"]).iter().find(|a| s(&a["id"]) == id)?;
    let mut body = kv(&[
        ("ID", esc(id)),
        (
            "Address",
            esc(&format!("{}:{}", s(&a["hostname"]), a["port"])),
        ),
        ("State", state(agent_state(a))),
        ("Maintenance", maintenance_words(snap, id)),
        ("Version", esc(s(&a["version"]))),
        (
            "Registered",
            format!("{} ago", format_age(snap.now - num(a, "registered_time"))),
        ),
        (
            "Attributes",
            esc(&a["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!("{}:{}", k, v.as_str().map_or(v.to_string(), str::to_string))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()),
        ),
    ]);
    body.push_str("<h2>Resources</h2>");
    let mut rows: Vec<(&str, &Value)> = vec![
        ("total", &a["resources"]),
        ("used", &a["used_resources"]),
        ("offered", &a["offered_resources"]),
        ("unreserved", &a["unreserved_resources"]),
    ];
    let reserved: Vec<(String, &Value)> = a["reserved_resources"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (format!("reserved for {k}"), v))
                .collect()
        })
        .unwrap_or_default();
    for (label, v) in &reserved {
        rows.push((label.as_str(), v));
    }
    body.push_str(&resources_table(&rows));
    body.push_str("<h2>Persistent volumes</h2>");
    let vols: Vec<Vec<String>> = volumes_of(a)
        .into_iter()
        .map(|(role, pid, size, path)| vec![esc(&pid), esc(&role), mib(size), esc(&path)])
        .collect();
    body.push_str(&table_with_empty(
        &["Volume", "Role", "Size#", "Container path"],
        &vols,
        "no persistent volumes",
    ));
    body.push_str("<h2>Tasks</h2>");
    let tasks = all_tasks(st);
    body.push_str(&task_table(
        snap,
        tasks
            .iter()
            .filter(|t| s(&t.task["slave_id"]) == id && !t.completed),
    ));
    body.push_str("<h2>Completed tasks</h2>");
    body.push_str(&task_table(
        snap,
        tasks
            .iter()
            .filter(|t| s(&t.task["slave_id"]) == id && t.completed),
    ));
    Some(page("/ui/agents", &format!("Agent {id}"), true, &body))
}

/// Dominant share of `used` against the cluster's totals.
fn dominant_share(used: &Value, totals: &BTreeMap<&'static str, [f64; 4]>) -> f64 {
    totals
        .iter()
        .filter(|(_, v)| v[0] > 0.0)
        .map(|(name, v)| num(used, name) / v[0])
        .fold(0.0, f64::max)
}

/// `/ui/frameworks`.
pub fn frameworks(snap: &Snapshot) -> String {
    let st = &snap.state;
    let totals = cluster_totals(st);
    let row = |f: &Value| -> Vec<String> {
        let id = s(&f["id"]);
        let web = s(&f["webui_url"]);
        let roles: Vec<&str> = arr(&f["roles"]).iter().map(s).collect();
        let status = if f["active"] == Value::Bool(true) {
            "ACTIVE"
        } else if f["connected"] == Value::Bool(true) {
            "INACTIVE"
        } else {
            "DISCONNECTED"
        };
        vec![
            link(&framework_href(id), id),
            esc(s(&f["name"])),
            esc(&roles.join(", ")),
            esc(f["principal"].as_str().unwrap_or("-")),
            state(status),
            format!(
                "{:.1}%",
                dominant_share(&f["used_resources"], &totals) * 100.0
            ),
            arr(&f["offers"]).len().to_string(),
            arr(&f["tasks"]).len().to_string(),
            format_number(num(&f["used_resources"], "cpus")),
            mib(num(&f["used_resources"], "mem")),
            if web.is_empty() {
                "-".into()
            } else {
                format!("<a href=\"{}\">web UI</a>", esc(web))
            },
        ]
    };
    let headers = [
        "Framework",
        "Name",
        "Roles",
        "Principal",
        "State",
        "Dominant share#",
        "Offers#",
        "Tasks#",
        "CPUs#",
        "Mem#",
        "Web UI",
    ];
    let active: Vec<Vec<String>> = arr(&st["frameworks"]).iter().map(row).collect();
    let done: Vec<Vec<String>> = arr(&st["completed_frameworks"]).iter().map(row).collect();
    let mut body = table_with_empty(&headers, &active, "no frameworks subscribed");
    body.push_str("<h2>Completed frameworks</h2>");
    body.push_str(&table_with_empty(&headers, &done, "none"));
    page("/ui/frameworks", "Frameworks", true, &body)
}

/// `/ui/frameworks/<id>`.
pub fn framework(snap: &Snapshot, id: &str) -> Option<String> {
    let st = &snap.state;
    let f = arr(&st["frameworks"])
        .iter()
        .chain(arr(&st["completed_frameworks"]))
        .find(|f| s(&f["id"]) == id)?;
    let totals = cluster_totals(st);
    let web = s(&f["webui_url"]);
    let roles: Vec<&str> = arr(&f["roles"]).iter().map(s).collect();
    let caps: Vec<&str> = arr(&f["capabilities"]).iter().map(s).collect();
    let mut body = kv(&[
        ("ID", esc(id)),
        ("Name", esc(s(&f["name"]))),
        ("User", esc(s(&f["user"]))),
        ("Roles", esc(&roles.join(", "))),
        ("Principal", esc(f["principal"].as_str().unwrap_or("-"))),
        (
            "State",
            state(if f["active"] == Value::Bool(true) {
                "ACTIVE"
            } else {
                "INACTIVE"
            }),
        ),
        (
            "Dominant share",
            format!(
                "{:.1}%",
                dominant_share(&f["used_resources"], &totals) * 100.0
            ),
        ),
        ("Checkpointing", esc(&f["checkpoint"].to_string())),
        (
            "Failover timeout",
            format!("{} s", format_number(num(f, "failover_timeout"))),
        ),
        ("Capabilities", esc(&caps.join(", "))),
        (
            "Web UI",
            if web.is_empty() {
                "-".into()
            } else {
                format!("<a href=\"{}\">{}</a>", esc(web), esc(web))
            },
        ),
    ]);
    body.push_str("<h2>Resources</h2>");
    body.push_str(&resources_table(&[
        ("used", &f["used_resources"]),
        ("offered", &f["offered_resources"]),
    ]));
    body.push_str("<h2>Outstanding offers</h2>");
    let offers: Vec<Vec<String>> = arr(&f["offers"])
        .iter()
        .map(|o| {
            let aid = s(&o["slave_id"]);
            vec![
                esc(s(&o["id"])),
                link(&agent_href(aid), aid),
                format_number(num(&o["resources"], "cpus")),
                mib(num(&o["resources"], "mem")),
                mib(num(&o["resources"], "disk")),
            ]
        })
        .collect();
    body.push_str(&table_with_empty(
        &["Offer", "Agent", "CPUs#", "Mem#", "Disk#"],
        &offers,
        "none outstanding",
    ));
    let tasks = all_tasks(st);
    body.push_str("<h2>Active tasks</h2>");
    body.push_str(&task_table(
        snap,
        tasks
            .iter()
            .filter(|t| s(&t.task["framework_id"]) == id && !t.completed),
    ));
    body.push_str("<h2>Completed tasks</h2>");
    body.push_str(&task_table(
        snap,
        tasks
            .iter()
            .filter(|t| s(&t.task["framework_id"]) == id && t.completed),
    ));
    body.push_str("<h2>Executors</h2>");
    let execs: Vec<Vec<String>> = arr(&f["executors"])
        .iter()
        .map(|e| {
            let aid = s(&e["slave_id"]);
            let eid = s(&e["executor_id"]);
            vec![
                esc(eid),
                esc(s(&e["name"])),
                link(&agent_href(aid), aid),
                link(&sandbox_href(aid, &sandbox_path(id, eid)), "sandbox"),
            ]
        })
        .collect();
    body.push_str(&table_with_empty(
        &["Executor", "Name", "Agent", "Sandbox"],
        &execs,
        "no custom executors",
    ));
    Some(page(
        "/ui/frameworks",
        &format!("Framework {}", s(&f["name"])),
        true,
        &body,
    ))
}

/// Filters of `/ui/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks in this state (`TASK_RUNNING`).
    pub state: Option<String>,
    /// Only this framework's.
    pub framework: Option<String>,
    /// Only those whose id or name contains this.
    pub search: Option<String>,
}

/// `/ui/tasks`.
pub fn tasks(snap: &Snapshot, filter: &TaskFilter) -> String {
    let st = &snap.state;
    let tasks = all_tasks(st);
    let mut states: Vec<&str> = tasks.iter().map(|t| s(&t.task["state"])).collect();
    states.sort_unstable();
    states.dedup();
    let keep = |t: &&TaskRef<'_>| {
        filter
            .state
            .as_deref()
            .is_none_or(|x| x.is_empty() || s(&t.task["state"]) == x)
            && filter
                .framework
                .as_deref()
                .is_none_or(|x| x.is_empty() || s(&t.task["framework_id"]) == x)
            && filter.search.as_deref().is_none_or(|x| {
                x.is_empty() || s(&t.task["id"]).contains(x) || s(&t.task["name"]).contains(x)
            })
    };
    let mut shown: Vec<&TaskRef<'_>> = tasks.iter().filter(keep).collect();
    shown.sort_by(|a, b| {
        a.completed
            .cmp(&b.completed)
            .then(last_update(b.task).total_cmp(&last_update(a.task)))
    });
    let mut body = String::from("<form class=\"filter\" method=\"get\" action=\"/ui/tasks\">");
    let _ = write!(
        body,
        "<label for=\"f-search\">Task id or name<input id=\"f-search\" name=\"q\" value=\"{}\"></label>",
        esc(filter.search.as_deref().unwrap_or(""))
    );
    body.push_str("<label for=\"f-state\">State<select id=\"f-state\" name=\"state\"><option value=\"\">any</option>");
    for x in &states {
        let selected = if filter.state.as_deref() == Some(*x) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{}</option>", esc(x));
    }
    body.push_str("</select></label><label for=\"f-fw\">Framework<select id=\"f-fw\" name=\"framework\"><option value=\"\">any</option>");
    for f in arr(&st["frameworks"])
        .iter()
        .chain(arr(&st["completed_frameworks"]))
    {
        let id = s(&f["id"]);
        let selected = if filter.framework.as_deref() == Some(id) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{selected}>{} ({})</option>",
            esc(id),
            esc(s(&f["name"])),
            esc(id)
        );
    }
    body.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    let _ = write!(
        body,
        "<p class=\"muted\">{} of {} tasks</p>",
        shown.len(),
        tasks.len()
    );
    body.push_str(&task_table(snap, shown.into_iter()));
    page("/ui/tasks", "Tasks", true, &body)
}

/// `/ui/frameworks/<framework>/tasks/<task>`.
pub fn task(snap: &Snapshot, framework: &str, id: &str) -> Option<String> {
    let st = &snap.state;
    let tasks = all_tasks(st);
    let t = tasks
        .iter()
        .find(|t| s(&t.task["framework_id"]) == framework && s(&t.task["id"]) == id)?;
    let task = t.task;
    let aid = s(&task["slave_id"]);
    let sandbox = sandbox_path(framework, &executor_of(task));
    let container = task["container"]["type"].as_str().unwrap_or("MESOS");
    let image = task["container"]["docker"]["image"]
        .as_str()
        .map(|i| format!(" ({i})"))
        .unwrap_or_default();
    let mut body = kv(&[
        ("Task", esc(id)),
        ("Name", esc(s(&task["name"]))),
        (
            "Framework",
            link(&framework_href(framework), t.framework_name),
        ),
        ("Agent", link(&agent_href(aid), aid)),
        ("State", state(s(&task["state"]))),
        ("Health", health(task)),
        ("Executor", esc(&executor_of(task))),
        ("Container", esc(&format!("{container}{image}"))),
        (
            "Resources",
            esc(&format!(
                "cpus {} · mem {} · disk {}",
                format_number(num(&task["resources"], "cpus")),
                mib(num(&task["resources"], "mem")),
                mib(num(&task["resources"], "disk"))
            )),
        ),
        (
            "Sandbox",
            if t.completed {
                format!(
                    "{} <span class=\"muted\">(kept until the agent's garbage collection)</span>",
                    link(&sandbox_href(aid, &sandbox), "browse")
                )
            } else {
                format!(
                    "{} · {} · {}",
                    link(&sandbox_href(aid, &sandbox), "browse"),
                    link(&file_href(aid, &format!("{sandbox}/stdout")), "stdout"),
                    link(&file_href(aid, &format!("{sandbox}/stderr")), "stderr")
                )
            },
        ),
    ]);
    body.push_str("<h2>State history</h2>");
    let rows: Vec<Vec<String>> = arr(&task["statuses"])
        .iter()
        .map(|x| {
            vec![
                state(s(&x["state"])),
                format!("{} ago", format_age(snap.now - num(x, "timestamp"))),
                match x.get("healthy") {
                    Some(Value::Bool(h)) => state(if *h { "healthy" } else { "unhealthy" }),
                    _ => "-".into(),
                },
                esc(x["reason"].as_str().unwrap_or("")),
                esc(x["message"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    body.push_str(&table_with_empty(
        &["State", "When", "Health", "Reason", "Message"],
        &rows,
        "no status updates yet",
    ));
    Some(page("/ui/tasks", &format!("Task {id}"), true, &body))
}

/// `/ui/roles`.
pub fn roles(snap: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = arr(&snap.roles["roles"])
        .iter()
        .map(|r| {
            let q = &r["quota"];
            let amounts = |v: &Value| -> String {
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, x)| {
                                format!("{} {}", k, fmt_amount(k, x.as_f64().unwrap_or(0.0)))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "-".into())
            };
            vec![
                esc(s(&r["name"])),
                format_number(num(r, "weight")),
                arr(&r["frameworks"]).len().to_string(),
                esc(&amounts(&q["guarantee"])),
                esc(&amounts(&q["limit"])),
                format_number(num(&r["allocated"], "cpus")),
                mib(num(&r["allocated"], "mem")),
                format_number(num(&r["reserved"], "cpus")),
                mib(num(&r["reserved"], "mem")),
                format_number(num(&r["offered"], "cpus")),
            ]
        })
        .collect();
    let body = table_with_empty(
        &[
            "Role",
            "Weight#",
            "Frameworks#",
            "Quota guarantee",
            "Quota limit",
            "CPUs allocated#",
            "Mem allocated#",
            "CPUs reserved#",
            "Mem reserved#",
            "CPUs offered#",
        ],
        &rows,
        "no roles",
    );
    page("/ui/roles", "Roles", true, &body)
}

fn breadcrumbs(agent: &str, path: &str) -> String {
    let mut out = format!(
        "<nav aria-label=\"Path\"><p>{} ",
        link(&agent_href(agent), &format!("agent {agent}"))
    );
    let mut acc = String::new();
    // The agent lists a sandbox (`/frameworks/<fw>/executors/<ex>/runs/<run>`,
    // six parts) and what is inside it, not the levels above.
    for (depth, part) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
        acc.push('/');
        acc.push_str(part);
        if depth >= 5 {
            let _ = write!(out, "/ {} ", link(&sandbox_href(agent, &acc), part));
        } else {
            let _ = write!(out, "/ {} ", esc(part));
        }
    }
    out.push_str("</p></nav>");
    out
}

/// `/ui/sandbox?agent=&path=`: a sandbox directory, from the agent's
/// `/files/browse` answer.
pub fn sandbox_dir(agent: &str, path: &str, entries: &Value) -> String {
    let mut list: Vec<&Value> = arr(entries).iter().collect();
    list.sort_by(|a, b| s(&a["path"]).cmp(s(&b["path"])));
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let p = s(&e["path"]);
            let name = p.rsplit('/').next().unwrap_or(p);
            let is_dir = s(&e["mode"]).starts_with('d');
            vec![
                if is_dir {
                    link(&sandbox_href(agent, p), &format!("{name}/"))
                } else {
                    link(&file_href(agent, p), name)
                },
                esc(s(&e["mode"])),
                if is_dir {
                    "-".into()
                } else {
                    format_number(num(e, "size"))
                },
                if is_dir {
                    String::new()
                } else {
                    format!(
                        "<a href=\"/ui/files/download?agent={}&amp;path={}\">download</a>",
                        url_encode(agent),
                        url_encode(p)
                    )
                },
            ]
        })
        .collect();
    let mut body = breadcrumbs(agent, path);
    body.push_str(&table_with_empty(
        &["Name", "Mode", "Bytes#", ""],
        &rows,
        "empty directory",
    ));
    page("/ui/tasks", "Sandbox", false, &body)
}

/// `/ui/sandbox/file?agent=&path=`: a file's live tail through the
/// master's `/ui/files/read` (the agent's `/files/read`).
pub fn sandbox_file(agent: &str, path: &str) -> String {
    let parent = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
    let mut body = breadcrumbs(agent, parent);
    let _ = write!(
        body,
        "<p><strong>{}</strong> · <a href=\"/ui/files/download?agent={a}&amp;path={p}\">download</a> · \
         <span id=\"tail-status\" role=\"status\">loading\u{2026}</span></p>\
         <pre class=\"log\" id=\"tail\" tabindex=\"0\" aria-label=\"file contents, following\" \
         data-tail=\"/ui/files/read?agent={a}&amp;path={p}\"></pre>",
        esc(path.rsplit('/').next().unwrap_or(path)),
        a = esc(&url_encode(agent)),
        p = esc(&url_encode(path)),
    );
    // The tail keeps its own state: the page is not re-rendered.
    let html = page("/ui/tasks", "Log", false, &body);
    html.replacen(
        "<main id=\"content\"",
        "<main data-static id=\"content\"",
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Snapshot {
        let task = json!({
            "id": "web-1", "name": "<script>alert(1)</script>", "framework_id": "F1",
            "executor_id": "", "slave_id": "A1", "state": "TASK_RUNNING",
            "resources": {"cpus": 0.5, "mem": 64.0, "disk": 0.0},
            "statuses": [
                {"state": "TASK_STARTING", "timestamp": 90.0},
                {"state": "TASK_RUNNING", "timestamp": 95.0, "healthy": true}
            ]
        });
        let done = json!({
            "id": "job-1", "name": "job", "framework_id": "F1", "executor_id": "",
            "slave_id": "A1", "state": "TASK_FAILED", "resources": {"cpus": 0.1, "mem": 32.0},
            "statuses": [{"state": "TASK_FAILED", "timestamp": 80.0, "message": "exit 1"}]
        });
        Snapshot {
            state: json!({
                "leader": "master@127.0.0.1:5050", "version": "1.11.0", "start_time": 0.0,
                "slaves": [{
                    "id": "A1", "hostname": "h1", "port": 5051, "active": true,
                    "registered_time": 10.0, "version": "x",
                    "resources": {"cpus": 2.0, "mem": 1024.0, "disk": 100.0},
                    "used_resources": {"cpus": 0.5, "mem": 64.0, "disk": 0.0},
                    "offered_resources": {"cpus": 1.0, "mem": 512.0, "disk": 0.0},
                    "unreserved_resources": {"cpus": 2.0},
                    "reserved_resources": {"eng": {"disk": 50.0}},
                    "reserved_resources_full": {"eng": [{
                        "name": "disk", "type": "SCALAR", "scalar": {"value": 50.0},
                        "disk": {"persistence": {"id": "vol-1"}, "volume": {"container_path": "data", "mode": "RW"}}
                    }]},
                    "attributes": {"rack": "r1"}
                }],
                "frameworks": [{
                    "id": "F1", "name": "fw", "roles": ["eng"], "active": true, "connected": true,
                    "user": "root", "webui_url": "http://h1:8080/ui",
                    "used_resources": {"cpus": 0.5, "mem": 64.0},
                    "offered_resources": {"cpus": 1.0},
                    "offers": [{"id": "O1", "slave_id": "A1", "resources": {"cpus": 1.0, "mem": 512.0}}],
                    "tasks": [task], "completed_tasks": [done], "executors": []
                }],
                "completed_frameworks": []
            }),
            roles: json!({"roles": [{"name": "eng", "weight": 2.0, "frameworks": ["F1"],
                "allocated": {"cpus": 0.5, "mem": 64.0}, "reserved": {"disk": 50.0}, "offered": {"cpus": 1.0},
                "quota": {"guarantee": {"cpus": 1.0}, "limit": {"cpus": 4.0}}}]}),
            unreachable: vec![("A9".into(), "h9".into(), 50.0)],
            gone: vec!["A8".into()],
            now: 100.0,
            current: Sample::default(),
            maintenance: [("A1".to_string(), (160.0, Some(3600.0)))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn overview_counts_and_charts_the_cluster() {
        let history = vec![
            Sample {
                wall: 40.0,
                cpus_total: 2.0,
                cpus_used: 0.0,
                mem_total: 1024.0,
                ..Default::default()
            },
            Sample {
                wall: 100.0,
                cpus_total: 2.0,
                cpus_used: 0.5,
                mem_total: 1024.0,
                mem_used: 64.0,
                tasks_running: 1.0,
                agents_active: 1.0,
                ..Default::default()
            },
        ];
        let html = overview(&fixture(), &history);
        assert!(html.contains("1 of 1"), "active agents");
        assert!(html.contains("0.5 of 2"), "cpus used of total");
        assert!(html.contains("<svg viewBox"), "a chart");
        assert!(html.contains("CPUs allocated % (now 25)"));
        assert!(html.contains("TASK_FAILED"));
        assert!(!html.contains("<script>alert"), "task names are escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("data-live=\"/ui/live\""));
    }

    #[test]
    fn agents_page_shows_state_resources_and_the_unreachable() {
        let html = agents(&fixture());
        assert!(html.contains("/ui/agents/A1"));
        assert!(html.contains("ACTIVE"));
        assert!(html.contains("rack:r1"));
        assert!(html.contains("A9") && html.contains("UNREACHABLE"));
        assert!(html.contains("A8") && html.contains("GONE"));
        assert!(
            html.contains("SCHEDULED: starts in 1m 0s, for 1h 0m"),
            "{html}"
        );
        let one = agent(&fixture(), "A1").expect("known agent");
        assert!(one.contains("vol-1") && one.contains("reserved for eng"));
        assert!(one.contains("web-1"));
        assert!(agent(&fixture(), "nope").is_none());
    }

    #[test]
    fn agents_show_deactivation_and_draining() {
        let mut snap = fixture();
        snap.state["slaves"][0]["deactivated"] = serde_json::json!(true);
        assert!(agents(&snap).contains("DEACTIVATED"));
        snap.state["slaves"][0]["drain_info"] =
            serde_json::json!({"state": "DRAINING", "config": {"mark_gone": true}});
        let html = agents(&snap);
        assert!(html.contains("class=\"state warn\">DRAINING"), "{html}");
        snap.state["slaves"][0]["drain_info"]["state"] = serde_json::json!("DRAINED");
        assert!(agent(&snap, "A1").is_some_and(|p| p.contains("DRAINED")));
    }

    #[test]
    fn framework_pages_show_share_offers_and_web_ui() {
        let html = frameworks(&fixture());
        // 0.5 of 2 cpus = 25%, 64 of 1024 mem = 6.25%: the dominant is CPU.
        assert!(html.contains("25.0%"), "{html}");
        assert!(html.contains("href=\"http://h1:8080/ui\""));
        let one = framework(&fixture(), "F1").expect("known framework");
        assert!(one.contains("O1"), "outstanding offer");
        assert!(one.contains("job-1"), "completed task");
        assert!(framework(&fixture(), "F2").is_none());
    }

    #[test]
    fn tasks_filter_and_task_history() {
        let all = tasks(&fixture(), &TaskFilter::default());
        assert!(all.contains("web-1") && all.contains("job-1"));
        let failed = tasks(
            &fixture(),
            &TaskFilter {
                state: Some("TASK_FAILED".into()),
                ..Default::default()
            },
        );
        assert!(failed.contains("job-1") && !failed.contains("/tasks/web-1"));
        assert!(failed.contains("1 of 2 tasks"));
        let one = task(&fixture(), "F1", "web-1").expect("known task");
        assert!(one.contains("TASK_STARTING") && one.contains("healthy"));
        assert!(one.contains(
            "/ui/sandbox/file?agent=A1&amp;path=/frameworks/F1/executors/web-1/runs/latest/stdout"
        ));
        let failed_one = task(&fixture(), "F1", "job-1").expect("completed task");
        assert!(failed_one.contains("exit 1"));
        assert!(task(&fixture(), "F9", "web-1").is_none());
    }

    #[test]
    fn long_task_lists_are_cut_with_a_note() {
        let mut snap = fixture();
        let one = snap.state["frameworks"][0]["tasks"][0].clone();
        let many: Vec<serde_json::Value> = (0..MAX_TASK_ROWS + 7)
            .map(|i| {
                let mut t = one.clone();
                t["id"] = serde_json::json!(format!("bulk-{i}"));
                t
            })
            .collect();
        snap.state["frameworks"][0]["tasks"] = serde_json::Value::Array(many);
        let html = tasks(&snap, &TaskFilter::default());
        assert!(
            html.contains("8 more not shown"),
            "the 7 extra and the completed one"
        );
        assert!(html.contains(&format!(
            "{} of {} tasks",
            MAX_TASK_ROWS + 8,
            MAX_TASK_ROWS + 8
        )));
        assert_eq!(html.matches("/tasks/bulk-").count(), MAX_TASK_ROWS);
    }

    #[test]
    fn roles_show_weight_and_quota() {
        let html = roles(&fixture());
        assert!(html.contains("cpus 1") && html.contains("cpus 4"));
        assert!(html.contains("<td class=\"num\">2</td>"), "weight");
    }

    #[test]
    fn sandbox_pages_link_directories_and_tail_files() {
        let entries = json!([
            {"path": "/frameworks/F/executors/E/runs/latest/stdout", "mode": "-rw-r--r--", "size": 12},
            {"path": "/frameworks/F/executors/E/runs/latest/tasks", "mode": "drwxr-xr-x", "size": 4096}
        ]);
        let html = sandbox_dir("A1", "/frameworks/F/executors/E/runs/latest", &entries);
        assert!(html.contains(
            "/ui/sandbox/file?agent=A1&amp;path=/frameworks/F/executors/E/runs/latest/stdout"
        ));
        assert!(html.contains(">tasks/<"));
        let file = sandbox_file("A1", "/frameworks/F/executors/E/runs/latest/stdout");
        assert!(file.contains("data-tail=\"/ui/files/read?agent=A1&amp;path=/frameworks/F/executors/E/runs/latest/stdout\""));
        assert!(file.contains("<main data-static"));
    }
}
