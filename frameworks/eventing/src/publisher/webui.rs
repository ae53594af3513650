//! The publisher's web page (`/ui`; `GET /` redirects to it), rendered on
//! the server from what `/health` reports plus each sink's cursor, and
//! re-rendered every few seconds in the browser: the master stream, the
//! spool, and each sink with its cursor (the last sequence number it
//! published) and its lag (events spooled and not published yet).

use std::sync::atomic::Ordering;

use corral_sdk::webui::Site;
use corral_webui::{bar, cards, esc, format_number, kv, state, table_with_empty};
use serde_json::{json, Value};

use super::Shared;

/// The page's brand and sections.
pub const SITE: Site<'static> = Site {
    brand: "Corral eventing publisher",
    home: "/ui",
    nav: &[("/ui", "Sinks")],
};

/// `/health`'s document with the counters, the last sequence number and
/// each sink's cursor.
pub fn document(shared: &Shared) -> Value {
    let mut doc = shared.health_json();
    doc["appended"] = json!(shared.appended.load(Ordering::SeqCst));
    doc["received"] = json!(shared.received.load(Ordering::SeqCst));
    doc["emitted"] = json!(shared.emitted.load(Ordering::SeqCst));
    doc["subscriptions"] = json!(shared.subscriptions.load(Ordering::SeqCst));
    for s in &shared.sinks {
        doc["sinks"][s.name]["cursor"] = json!(s.cursor.load(Ordering::SeqCst));
        doc["sinks"][s.name]["errors"] = json!(s.errors.load(Ordering::SeqCst));
    }
    doc
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_number),
        other => other.to_string(),
    }
}

/// The page.
pub fn page(doc: &Value) -> String {
    let status = doc["status"].as_str().unwrap_or("unknown");
    let rows: Vec<Vec<String>> = doc["sinks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            vec![
                esc(name),
                state(if s["up"] == true { "UP" } else { "DOWN" }),
                esc(&text(&s["published"])),
                esc(&text(&s["cursor"])),
                esc(&text(&s["spooled"])),
                esc(&text(&s["errors"])),
                esc(&text(&s["problem"])),
            ]
        })
        .collect();
    let spool_bytes = doc["spool"]["bytes"].as_f64().unwrap_or(0.0);
    let spool_max = doc["spool"]["max_bytes"].as_f64().unwrap_or(0.0);
    let master = &doc["master"];
    let problems: Vec<String> = doc["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("<li>{}</li>", esc(&text(p))))
        .collect();
    let mut body = cards(&[
        ("Status", status.to_string()),
        ("Events received", text(&doc["received"])),
        ("Events spooled", text(&doc["emitted"])),
        ("Last sequence number", text(&doc["appended"])),
    ]);
    if !problems.is_empty() {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\">Problems:<ul>{}</ul></div>",
            problems.concat()
        ));
    }
    body.push_str("<h2>Sinks</h2>");
    body.push_str(&table_with_empty(
        &[
            "Sink",
            "State",
            "Published#",
            "Cursor (last published)#",
            "Lag (events behind)#",
            "Failed attempts#",
            "Problem",
        ],
        &rows,
        "no sinks",
    ));
    body.push_str("<h2>Master and spool</h2>");
    body.push_str(&kv(&[
        ("Status", state(status)),
        (
            "Master stream",
            state(if master["connected"] == true {
                "CONNECTED"
            } else {
                "DISCONNECTED"
            }),
        ),
        ("Leading master", esc(&text(&master["leader"]))),
        ("Master problem", esc(&text(&master["problem"]))),
        ("Subscriptions", esc(&text(&doc["subscriptions"]))),
        (
            "Spool",
            format!(
                "{} {}",
                esc(&format!(
                    "{} of {} bytes",
                    format_number(spool_bytes),
                    format_number(spool_max)
                )),
                bar(spool_bytes, spool_max)
            ),
        ),
        ("Spool problem", esc(&text(&doc["spool"]["problem"]))),
    ]));
    SITE.page("/ui", "Eventing publisher", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_with_their_cursor_and_lag() {
        let doc = json!({
            "status": "unhealthy",
            "problems": ["amqp: connection refused <x>"],
            "master": {"connected": true, "leader": "127.0.0.1:5050", "problem": null},
            "spool": {"bytes": 1024, "max_bytes": 4096, "problem": null},
            "sinks": {
                "kafka": {"up": true, "problem": null, "published": 120, "spooled": 3,
                          "cursor": 120, "errors": 0},
                "amqp": {"up": false, "problem": "connection refused <x>", "published": 0,
                         "spooled": 123, "cursor": 0, "errors": 7}
            },
            "appended": 123, "received": 130, "emitted": 123, "subscriptions": 1
        });
        let html = page(&doc);
        assert!(html.contains("<td>kafka</td>"), "{html}");
        assert!(html.contains("class=\"state good\">UP"));
        assert!(html.contains("class=\"state bad\">DOWN"));
        assert!(html.contains("<td class=\"num\">123</td>"), "{html}");
        assert!(html.contains("connection refused &lt;x&gt;") && !html.contains("<x>"));
        assert!(html.contains("127.0.0.1:5050") && html.contains("1024 of 4096 bytes"));
    }
}
