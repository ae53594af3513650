//! The eventing framework's web pages, rendered on the server from the
//! same document `GET /v1/tiers` serves, re-rendered every few seconds in
//! the browser:
//!
//! * `/ui` — both tiers: instances, running and healthy ones, the upgrade's
//!   progress (slots on the current generation), and every slot (task,
//!   state, health, endpoint, generation);
//! * `/ui/tiers/{api|backend}` — one tier's slots in full (agent, failures,
//!   launches, running since, the last task's last word);
//! * `GET /` — a redirect to `/ui`.

use corral_sdk::webui::{when, Site};
use corral_webui::json::{arr, s, text};
use corral_webui::muted;
use corral_webui::{bar, cards, esc, kv, link, state, table_with_empty};
use serde_json::Value;

/// The pages' brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral eventing",
    home: "/ui",
    nav: &[
        ("/ui", "Tiers"),
        ("/ui/tiers/api", "API tier"),
        ("/ui/tiers/backend", "Backend tier"),
    ],
};

/// The tiers, in the order shown.
pub const TIERS: [&str; 2] = ["api", "backend"];

fn title_of(tier: &str) -> &'static str {
    match tier {
        "api" => "API tier",
        _ => "Backend tier",
    }
}

fn health(slot: &Value) -> String {
    if slot["state"] != "running" {
        muted("-")
    } else if slot["healthy"] == true {
        state("HEALTHY")
    } else {
        state("NOT PASSING")
    }
}

fn endpoint(slot: &Value) -> String {
    match (slot["host"].as_str(), slot["port"].as_u64()) {
        (Some(h), Some(p)) => esc(&format!("{h}:{p}")),
        (Some(h), None) => esc(h),
        _ => muted("-"),
    }
}

/// `(on the current generation and running, slots)` of a tier.
fn progress(doc: &Value, tier: &str) -> (usize, usize) {
    let generation = doc["generation"].as_u64().unwrap_or(0);
    let slots = arr(&doc["tiers"][tier]["instances"]);
    let done = slots
        .iter()
        .filter(|i| i["state"] == "running" && i["generation"].as_u64() >= Some(generation))
        .count();
    (done, slots.len())
}

fn slot_name(slot: &Value) -> String {
    format!("{}-{}", s(&slot["tier"]), text(&slot["index"]))
}

/// The tiers page (`/v1/tiers`).
pub fn tiers_page(doc: &Value) -> String {
    let generation = doc["generation"].as_u64().unwrap_or(0);
    let summary: Vec<Vec<String>> = TIERS
        .iter()
        .map(|t| {
            let tier = &doc["tiers"][*t];
            let slots = arr(&tier["instances"]);
            let running = slots.iter().filter(|i| i["state"] == "running").count();
            let healthy = slots
                .iter()
                .filter(|i| i["state"] == "running" && i["healthy"] == true)
                .count();
            let (done, all) = progress(doc, t);
            vec![
                link(&format!("/ui/tiers/{t}"), title_of(t)),
                esc(&text(&tier["count"])),
                running.to_string(),
                healthy.to_string(),
                format!(
                    "{} {}",
                    esc(&format!("{done} of {all}")),
                    bar(done as f64, all.max(1) as f64)
                ),
                esc(&format!(
                    "{} cpus, {} MB",
                    text(&tier["cpus"]),
                    text(&tier["mem"])
                )),
            ]
        })
        .collect();
    let upgrading = TIERS.iter().any(|t| {
        let (done, all) = progress(doc, t);
        done < all
    });
    let mut body = cards(&[
        ("Generation", generation.to_string()),
        (
            "Subscribed",
            if doc["subscribed"] == true {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
        ("Launches", text(&doc["launches"])),
        ("Kills", text(&doc["kills"])),
    ]);
    body.push_str("<h2>Version</h2>");
    body.push_str(&kv(&[
        ("Binary", format!("<code>{}</code>", esc(s(&doc["binary"])))),
        (
            "Upgrade",
            if upgrading {
                esc(&format!(
                    "in progress: slots move to generation {generation} one per tier at a time"
                ))
            } else {
                esc(&format!("every slot runs generation {generation}"))
            },
        ),
        (
            "API endpoints",
            match arr(&doc["endpoints"]) {
                [] => muted("none healthy yet"),
                e => e.iter().map(|e| esc(s(e))).collect::<Vec<_>>().join(", "),
            },
        ),
    ]));
    body.push_str("<h2>Tiers</h2>");
    body.push_str(&table_with_empty(
        &[
            "Tier",
            "Instances#",
            "Running#",
            "Healthy#",
            "On the current generation",
            "Each",
        ],
        &summary,
        "none",
    ));
    for t in TIERS {
        body.push_str(&format!("<h2>{}</h2>", esc(title_of(t))));
        let rows: Vec<Vec<String>> = arr(&doc["tiers"][t]["instances"])
            .iter()
            .map(|slot| {
                vec![
                    esc(&slot_name(slot)),
                    slot["taskId"].as_str().map_or_else(|| muted("-"), esc),
                    state(s(&slot["state"])),
                    health(slot),
                    endpoint(slot),
                    esc(&format!("generation {}", text(&slot["generation"]))),
                ]
            })
            .collect();
        body.push_str(&table_with_empty(
            &["Slot", "Task", "State", "Health", "Endpoint", "Version"],
            &rows,
            "no instances",
        ));
    }
    SITE.page("/ui", "Eventing tiers", &body)
}

/// One tier's page, or `None` for a tier that does not exist.
pub fn tier_page(doc: &Value, tier: &str, now: i64) -> Option<String> {
    if !TIERS.contains(&tier) {
        return None;
    }
    let t = &doc["tiers"][tier];
    let (done, all) = progress(doc, tier);
    let rows: Vec<Vec<String>> = arr(&t["instances"])
        .iter()
        .map(|slot| {
            let waiting = slot["state"] == "waiting";
            vec![
                esc(&slot_name(slot)),
                slot["taskId"].as_str().map_or_else(|| muted("-"), esc),
                state(s(&slot["state"])),
                health(slot),
                endpoint(slot),
                slot["agentId"].as_str().map_or_else(|| muted("-"), esc),
                esc(&text(&slot["generation"])),
                esc(&text(&slot["failures"])),
                esc(&text(&slot["launches"])),
                if waiting {
                    format!("next launch {}", when(slot["nextLaunchMs"].as_i64(), now))
                } else {
                    when(slot["runningSinceMs"].as_i64(), now)
                },
                esc(&text(&slot["lastMessage"])),
            ]
        })
        .collect();
    let body = format!(
        "{}<h2>Slots</h2>{}",
        kv(&[
            ("Instances", esc(&text(&t["count"]))),
            (
                "Each",
                esc(&format!(
                    "{} cpus, {} MB",
                    text(&t["cpus"]),
                    text(&t["mem"])
                )),
            ),
            ("Current generation", esc(&text(&doc["generation"])),),
            (
                "Upgrade progress",
                format!(
                    "{} {}",
                    esc(&format!("{done} of {all} slots run it")),
                    bar(done as f64, all.max(1) as f64)
                ),
            ),
        ]),
        table_with_empty(
            &[
                "Slot",
                "Task",
                "State",
                "Health",
                "Endpoint",
                "Agent",
                "Generation#",
                "Failures in a row#",
                "Launches#",
                "Running since",
                "Last word",
            ],
            &rows,
            "no instances",
        )
    );
    Some(SITE.page(&format!("/ui/tiers/{tier}"), title_of(tier), &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_490_763_000;

    fn doc() -> Value {
        json!({
            "frameworkId": "fw", "subscribed": true, "generation": 2,
            "binary": "/opt/corral <new>", "endpoints": ["127.0.0.1:27500"],
            "launches": 5, "kills": 1,
            "tiers": {
                "api": {"count": 1, "cpus": 0.2, "mem": 256.0, "instances": [
                    {"tier": "api", "index": 0, "state": "running", "taskId": "eventing-api-0-3",
                     "agentId": "a1", "host": "127.0.0.1", "port": 27500, "generation": 2,
                     "failures": 0, "nextLaunchMs": 0, "runningSinceMs": NOW - 10_000,
                     "healthy": true, "launches": 2}
                ]},
                "backend": {"count": 2, "cpus": 0.2, "mem": 512.0, "instances": [
                    {"tier": "backend", "index": 0, "state": "running", "taskId": "eventing-backend-0-1",
                     "agentId": "a1", "host": "127.0.0.1", "port": 27501, "generation": 1,
                     "failures": 0, "nextLaunchMs": 0, "runningSinceMs": NOW - 60_000,
                     "healthy": false, "launches": 1},
                    {"tier": "backend", "index": 1, "state": "waiting", "generation": 2,
                     "failures": 3, "nextLaunchMs": NOW + 4_000, "healthy": false, "launches": 3,
                     "lastMessage": "exited <1>"}
                ]}
            }
        })
    }

    #[test]
    fn both_tiers_with_their_slots_and_the_upgrades_progress() {
        let html = tiers_page(&doc());
        assert!(
            html.contains("<a href=\"/ui/tiers/api\">API tier</a>"),
            "{html}"
        );
        assert!(html.contains("eventing-api-0-3") && html.contains("127.0.0.1:27500"));
        assert!(html.contains("eventing-backend-0-1") && html.contains("backend-1"));
        assert!(html.contains("class=\"state good\">HEALTHY"));
        assert!(html.contains("class=\"state idle\">NOT PASSING"), "{html}");
        assert!(html.contains("1 of 1") && html.contains("0 of 2"), "{html}");
        assert!(html.contains("in progress"));
        assert!(html.contains("/opt/corral &lt;new&gt;") && !html.contains("<new>"));
    }

    #[test]
    fn one_tier_in_full_or_none() {
        let html = tier_page(&doc(), "backend", NOW).expect("a tier");
        assert!(html.contains("<h1>Backend tier</h1>"));
        assert!(html.contains("exited &lt;1&gt;") && !html.contains("exited <1>"));
        assert!(
            html.contains("next launch") && html.contains("in 4s"),
            "{html}"
        );
        assert!(tier_page(&doc(), "<script>", NOW).is_none());
    }
}
