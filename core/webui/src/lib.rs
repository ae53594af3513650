//! The pieces every Corral web page is made of, shared by the master's UI
//! and the bundled frameworks' pages: a page shell with the stylesheet and
//! script embedded (no JavaScript build step, nothing fetched from
//! elsewhere), HTML escaping, tables, key/value lists, state words and an
//! SVG line chart. Everything here is a pure function returning HTML text.

use std::fmt::Write as _;

/// The stylesheet every page embeds.
pub const STYLESHEET: &str = include_str!("corral.css");
/// The script every page embeds (live re-rendering and log tails).
pub const SCRIPT: &str = include_str!("corral.js");

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How a page keeps itself current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Rendered once.
    Static,
    /// Re-rendered on every event of a server-sent event stream at this URL.
    Events(String),
    /// Re-rendered every so many seconds.
    Every(u32),
}

/// A whole page.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// The product shown at the top left (`Corral`, `Corral workloads`).
    pub brand: &'a str,
    /// Where the brand links to.
    pub home: &'a str,
    /// The navigation: `(href, label)`.
    pub nav: &'a [(&'a str, &'a str)],
    /// The `href` of the current section (marked `aria-current`).
    pub active: &'a str,
    /// The page title (also its `<h1>`).
    pub title: &'a str,
    /// How it stays current.
    pub live: Live,
    /// The content of `<main>` after the `<h1>` (HTML).
    pub body: &'a str,
}

impl Page<'_> {
    /// The HTML document.
    pub fn render(&self) -> String {
        let mut out =
            String::with_capacity(STYLESHEET.len() + SCRIPT.len() + self.body.len() + 2048);
        let (live_attr, live_text) = match &self.live {
            Live::Static => (String::new(), ""),
            Live::Events(url) => (format!(" data-live=\"{}\"", esc(url)), "connecting\u{2026}"),
            Live::Every(s) => (format!(" data-refresh-seconds=\"{s}\""), ""),
        };
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} \u{b7} {brand}</title><link rel=\"icon\" href=\"data:,\"><style>{css}</style></head>\
             <body{live_attr}><a class=\"skip\" href=\"#content\">Skip to content</a>\
             <header class=\"top\"><a class=\"brand\" href=\"{home}\">{brand}</a>\
             <nav aria-label=\"Sections\"><ul>",
            title = esc(self.title),
            brand = esc(self.brand),
            home = esc(self.home),
            css = STYLESHEET,
        );
        for (href, label) in self.nav {
            let current = if *href == self.active {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<li><a href=\"{}\"{current}>{}</a></li>",
                esc(href),
                esc(label)
            );
        }
        let _ = write!(
            out,
            "</ul></nav><span class=\"live\" id=\"live-status\" role=\"status\">{live_text}</span>\
             </header><main id=\"content\" tabindex=\"-1\"><h1>{}</h1>{}</main>\
             <footer>{} {}</footer><script>{}</script></body></html>",
            esc(self.title),
            self.body,
            esc(self.brand),
            env!("CARGO_PKG_VERSION"),
            SCRIPT
        );
        out
    }
}

/// A table: headers and rows of HTML cells. Headers ending in `#` are
/// numeric columns (right-aligned; the `#` is not shown).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_with_empty(headers, rows, "none")
}

/// [`table`] with the text shown when there are no rows.
pub fn table_with_empty(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = String::from("<div class=\"scroll\"><table><thead><tr>");
    let numeric: Vec<bool> = headers.iter().map(|h| h.ends_with('#')).collect();
    for h in headers {
        match h.strip_suffix('#') {
            Some(h) => {
                let _ = write!(out, "<th scope=\"col\" class=\"num\">{}</th>", esc(h));
            }
            None => {
                let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
            }
        }
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"muted\">{}</td></tr>",
            headers.len().max(1),
            esc(empty)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            if numeric.get(i).copied().unwrap_or(false) {
                let _ = write!(out, "<td class=\"num\">{cell}</td>");
            } else {
                let _ = write!(out, "<td>{cell}</td>");
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A key/value list of `(key, HTML value)`.
pub fn kv(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"kv\">");
    for (k, v) in pairs {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    out.push_str("</dl>");
    out
}

/// Summary cards of `(label, value)`.
pub fn cards(items: &[(&str, String)]) -> String {
    let mut out = String::from("<div class=\"cards\">");
    for (label, value) in items {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
            esc(label),
            esc(value)
        );
    }
    out.push_str("</div>");
    out
}

/// Text shown dimmed (an absent value, a note).
pub fn muted(text: &str) -> String {
    format!("<span class=\"muted\">{}</span>", esc(text))
}

/// Reading the JSON views pages are rendered from.
pub mod json {
    use serde_json::Value;

    /// A string, or `""`.
    pub fn s(v: &Value) -> &str {
        v.as_str().unwrap_or("")
    }

    /// An array's items, or none.
    pub fn arr(v: &Value) -> &[Value] {
        v.as_array().map_or(&[], Vec::as_slice)
    }

    /// The number `v[name]`, or 0.
    pub fn num(v: &Value, name: &str) -> f64 {
        v.get(name).and_then(Value::as_f64).unwrap_or(0.0)
    }

    /// Any value as a person reads it: `-` for null or empty, numbers by
    /// [`super::format_number`], strings as they are.
    pub fn text(v: &Value) -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(s) if s.is_empty() => "-".into(),
            Value::String(s) => s.clone(),
            Value::Number(n) => n
                .as_f64()
                .map_or_else(|| n.to_string(), super::format_number),
            other => other.to_string(),
        }
    }
}

/// A link.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// How a state word is marked: good, bad, warn or idle (the mark is a
/// shape as well as a colour; the word itself is always shown).
pub fn state_class(state: &str) -> &'static str {
    let s = state.to_ascii_uppercase();
    let has = |w: &str| s.contains(w);
    if has("RUNNING")
        || has("HEALTHY") && !has("UNHEALTHY")
        || s == "ACTIVE"
        || s == "UP"
        || has("FINISHED")
        || s == "CONNECTED"
        || s == "LEADING"
        || s == "OK"
    {
        "good"
    } else if has("FAIL")
        || has("ERROR")
        || has("LOST")
        || has("UNHEALTHY")
        || has("GONE")
        || has("DOWN")
        || has("KILLED")
        || has("DROPPED")
        || has("DISCONNECTED")
    {
        "bad"
    } else if has("STAGING")
        || has("STARTING")
        || has("KILLING")
        || has("PENDING")
        || has("UNREACHABLE")
        || has("DRAIN")
        || has("QUEUED")
        || has("WAITING")
        || has("INACTIVE")
        || has("DEPLOY")
    {
        "warn"
    } else {
        "idle"
    }
}

/// A state word, marked by [`state_class`].
pub fn state(state: &str) -> String {
    format!(
        "<span class=\"state {}\">{}</span>",
        state_class(state),
        esc(state)
    )
}

/// A proportion bar with its percentage as text (`used` of `total`).
pub fn bar(used: f64, total: f64) -> String {
    let pct = if total > 0.0 {
        (used / total * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!(
        "<span class=\"bar\" role=\"img\" aria-label=\"{pct:.0}%\"><span style=\"width:{pct:.1}%\"></span></span> {pct:.0}%"
    )
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Its name in the legend.
    pub name: &'a str,
    /// Its colour (CSS).
    pub colour: &'a str,
    /// The SVG dash pattern, so lines differ without colour (`""` solid).
    pub dash: &'a str,
    /// `(x, y)` points, x increasing.
    pub points: Vec<(f64, f64)>,
}

/// An SVG line chart of series sharing the x axis, y from 0 to `y_max`
/// (or the data's maximum), with a legend and the y axis labelled in
/// `unit`. `x_label` describes the x span (for example "last 30 min").
pub fn line_chart(
    title: &str,
    series: &[Series<'_>],
    y_max: Option<f64>,
    unit: &str,
    x_label: &str,
) -> String {
    const W: f64 = 600.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 20.0;
    const TOP: f64 = 8.0;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let data_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    // Counts get a whole-number top of at least 1; a given top (100 %) is
    // kept unless the data exceed it.
    let top = y_max.unwrap_or(data_max.ceil()).max(data_max).max(1.0);
    let mut out = format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    for i in 0..=4 {
        let y = TOP + (H - BOTTOM - TOP) * f64::from(i) / 4.0;
        let value = top * (1.0 - f64::from(i) / 4.0);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{W}\" y2=\"{y:.1}\" stroke=\"#8884\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\">{}</text>",
            LEFT - 4.0,
            y + 3.5,
            esc(&format_number(value))
        );
    }
    let _ = write!(
        out,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"10\" fill=\"currentColor\">{}</text>\
         <text x=\"{W}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\">{}</text>",
        H - 4.0,
        esc(x_label),
        H - 4.0,
        esc(unit)
    );
    if x_min.is_finite() {
        let span = (x_max - x_min).max(1e-9);
        for s in series {
            let mut path = String::new();
            for (i, (x, y)) in s.points.iter().enumerate() {
                let px = LEFT + (x - x_min) / span * (W - LEFT);
                let py = TOP + (H - BOTTOM - TOP) * (1.0 - (y / top).clamp(0.0, 1.0));
                let _ = write!(path, "{}{px:.1},{py:.1} ", if i == 0 { "M" } else { "L" });
            }
            let _ = write!(
                out,
                "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{}\"><title>{}</title></path>",
                path.trim_end(),
                esc(s.colour),
                esc(s.dash),
                esc(s.name)
            );
        }
    }
    out.push_str("</svg><figcaption class=\"legend\">");
    for s in series {
        let last = s
            .points
            .last()
            .map(|p| format_number(p.1))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            out,
            "<span><svg width=\"28\" height=\"8\" aria-hidden=\"true\"><line x1=\"0\" y1=\"4\" x2=\"28\" y2=\"4\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{}\"/></svg> {} (now {})</span>",
            esc(s.colour),
            esc(s.dash),
            esc(s.name),
            esc(&last)
        );
    }
    out.push_str("</figcaption></figure>");
    out
}

/// A number as a person reads it: integers plainly, others with up to two
/// decimals.
pub fn format_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Seconds as `3d 4h`, `2h 5m`, `4m 10s` or `12s`.
pub fn format_age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_encode("a b&c/d"), "a%20b%26c/d");
    }

    #[test]
    fn page_marks_the_current_section_and_embeds_its_assets() {
        let html = Page {
            brand: "Corral",
            home: "/",
            nav: &[("/", "Overview"), ("/ui/agents", "Agents")],
            active: "/ui/agents",
            title: "Agents <2>",
            live: Live::Events("/ui/live".into()),
            body: "<p>x</p>",
        }
        .render();
        assert!(html.contains("<a href=\"/ui/agents\" aria-current=\"page\">Agents</a>"));
        assert!(html.contains("<a href=\"/\">Overview</a>"));
        assert!(html.contains("<h1>Agents &lt;2&gt;</h1>"));
        assert!(html.contains("data-live=\"/ui/live\""));
        assert!(html.contains("EventSource"));
        assert!(html.contains("--accent"));
    }

    #[test]
    fn tables_align_numbers_and_say_when_empty() {
        let t = table(&["Name", "CPUs#"], &[vec!["a".into(), "2".into()]]);
        assert!(t.contains("<th scope=\"col\" class=\"num\">CPUs</th>"));
        assert!(t.contains("<td class=\"num\">2</td>"));
        let empty = table_with_empty(&["Name"], &[], "no agents");
        assert!(empty.contains("no agents"));
    }

    #[test]
    fn states_are_marked_by_kind() {
        assert_eq!(state_class("TASK_RUNNING"), "good");
        assert_eq!(state_class("TASK_FAILED"), "bad");
        assert_eq!(state_class("unhealthy"), "bad");
        assert_eq!(state_class("TASK_STAGING"), "warn");
        assert_eq!(state_class("whatever"), "idle");
    }

    #[test]
    fn chart_scales_points_into_the_frame() {
        let svg = line_chart(
            "cpus",
            &[Series {
                name: "used",
                colour: "#00f",
                dash: "",
                points: vec![(0.0, 0.0), (10.0, 2.0)],
            }],
            Some(4.0),
            "cpus",
            "last 10 s",
        );
        assert!(svg.contains("M44.0,180.0 L600.0,94.0"), "{svg}");
        assert!(svg.contains("used (now 2)"));
        let no_data = line_chart("x", &[], None, "", "");
        assert!(no_data.starts_with("<figure"));
    }

    #[test]
    fn json_values_read_as_text() {
        use serde_json::json;
        assert_eq!(json::text(&json!(null)), "-");
        assert_eq!(json::text(&json!("")), "-");
        assert_eq!(json::text(&json!(2.0)), "2");
        assert_eq!(json::text(&json!(true)), "true");
        assert_eq!(json::num(&json!({"a": 1.5}), "a"), 1.5);
        assert!(json::arr(&json!({})).is_empty());
        assert_eq!(muted("<x>"), "<span class=\"muted\">&lt;x&gt;</span>");
    }

    #[test]
    fn numbers_and_ages_read_well() {
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(0.126), "0.13");
        assert_eq!(format_number(1.5), "1.5");
        assert_eq!(format_age(59.0), "59s");
        assert_eq!(format_age(3700.0), "1h 1m");
        assert_eq!(format_age(90_000.0), "1d 1h");
    }
}
