//! What the bundled frameworks' web pages share beyond the page kit
//! (`corral-webui`): the address a browser reaches them at (the
//! FrameworkInfo's `webui_url`), a framework's [`Site`] (its brand and
//! navigation, every page re-rendered from the server every few seconds),
//! HTML answers and error pages, and times as people read them.
//!
//! The pages themselves are rendered by each framework from its own state,
//! server-side; nothing here knows a framework's objects.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_webui::{esc, Live, Page};

/// How often every framework page re-renders its `<main>` from the server.
pub const REFRESH_SECONDS: u32 = 5;

/// This machine's host name (`/proc/sys/kernel/hostname`, else
/// `/etc/hostname`), when it has one.
pub fn system_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
}

/// The host a browser reaches a server listening on `listen` at:
/// `hostname` when given (a `--hostname` flag), else the listen address's
/// IP, or, when that is unspecified (`0.0.0.0`, `[::]`), this machine's
/// host name (the loopback address if it has none). IPv6 literals come
/// bracketed, ready for a URL.
pub fn advertised_host(listen: SocketAddr, hostname: Option<&str>) -> String {
    let given = hostname.map(str::trim).filter(|h| !h.is_empty());
    let host = match given {
        Some(h) => h.to_string(),
        None if listen.ip().is_unspecified() => {
            system_hostname().unwrap_or_else(|| match listen.ip() {
                IpAddr::V4(_) => "127.0.0.1".to_string(),
                IpAddr::V6(_) => "::1".to_string(),
            })
        }
        None => listen.ip().to_string(),
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    }
}

/// The URL of `path` (`/ui`) on a server listening on `listen`, at the
/// host [`advertised_host`] gives and the listen port: what a framework
/// puts in its FrameworkInfo's `webui_url`.
pub fn advertised_url(listen: SocketAddr, hostname: Option<&str>, path: &str) -> String {
    format!(
        "http://{}:{}{path}",
        advertised_host(listen, hostname),
        listen.port()
    )
}

/// An HTML document as an answer (never cached: the pages re-render).
pub fn html(status: u16, document: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        document,
    )
        .into_response()
}

/// `GET /favicon.ico`: no icon, and no error for the browser to log
/// (`204`).
pub async fn favicon() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "max-age=86400")],
    )
        .into_response()
}

/// A framework's pages: its brand, where the brand links to, and its
/// navigation (`(href, label)`).
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The product at the top left (`Corral workloads`).
    pub brand: &'a str,
    /// Its home page (`/ui`).
    pub home: &'a str,
    /// The sections.
    pub nav: &'a [(&'a str, &'a str)],
}

impl Site<'_> {
    /// A whole page of section `active`, re-rendered every
    /// [`REFRESH_SECONDS`].
    pub fn page(&self, active: &str, title: &str, body: &str) -> String {
        Page {
            brand: self.brand,
            home: self.home,
            nav: self.nav,
            active,
            title,
            live: Live::Every(REFRESH_SECONDS),
            body,
        }
        .render()
    }

    /// A page as a `200` answer.
    pub fn ok(&self, active: &str, title: &str, body: &str) -> Response {
        html(200, self.page(active, title, body))
    }

    /// An error page (`404` for an unknown object, `503` while the
    /// framework cannot answer): the message and a way back. It does not
    /// re-render itself.
    pub fn error_page(&self, title: &str, message: &str) -> String {
        let body = format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">Back to {}</a></p>",
            esc(message),
            esc(self.home),
            esc(self.brand)
        );
        Page {
            brand: self.brand,
            home: self.home,
            nav: self.nav,
            active: "",
            title,
            live: Live::Static,
            body: &body,
        }
        .render()
    }

    /// [`Site::error_page`] as an answer with its status.
    pub fn error(&self, status: u16, title: &str, message: &str) -> Response {
        html(status, self.error_page(title, message))
    }

    /// `404`, saying what was not found.
    pub fn not_found(&self, message: &str) -> Response {
        self.error(404, "Not found", message)
    }
}

impl Site<'static> {
    /// The routes every framework's pages share, to merge with its own:
    /// `/favicon.ico` (204), a 404 page naming any unknown `/ui/...` path,
    /// and, with `redirect_root`, `GET /` to the home page (Spark's
    /// dispatcher keeps `/` for its own protocol).
    pub fn common_routes<S: Clone + Send + Sync + 'static>(
        &'static self,
        redirect_root: bool,
    ) -> axum::Router<S> {
        use axum::routing::get;
        let router = axum::Router::new()
            .route("/favicon.ico", get(favicon))
            .route(
                "/ui/{*rest}",
                get(move |uri: axum::http::Uri| async move {
                    self.not_found(&format!("There is no page {}.", uri.path()))
                }),
            );
        if redirect_root {
            let home = self.home;
            router.route(
                "/",
                get(move || async move { axum::response::Redirect::to(home).into_response() }),
            )
        } else {
            router
        }
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `(year, month, day)` of a count of days since 1970-01-01 (proleptic
/// Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the epoch as `2026-12-05 17:12:43 UTC`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A moment as HTML: its UTC time and how long ago it was (or how long
/// until it); `-` when unknown.
pub fn when(ms: Option<i64>, now_ms: i64) -> String {
    let Some(ms) = ms.filter(|m| *m > 0) else {
        return "<span class=\"muted\">-</span>".to_string();
    };
    let diff = (now_ms - ms) as f64 / 1000.0;
    let relative = if diff >= 0.0 {
        format!("{} ago", corral_webui::format_age(diff))
    } else {
        format!("in {}", corral_webui::format_age(-diff))
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time> <span class=\"muted\">({})</span>",
        esc(&utc_iso(ms)),
        esc(&utc(ms)),
        esc(&utc(ms)),
        esc(&relative)
    )
}

fn utc_iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// The master UI's sandbox page of `executor` (a command task's executor is
/// the task itself) of `framework` on `agent`, at `master` (`host:port`).
pub fn master_sandbox_url(master: &str, agent: &str, framework: &str, executor: &str) -> String {
    let path = format!("/frameworks/{framework}/executors/{executor}/runs/latest");
    format!(
        "http://{master}/ui/sandbox?agent={}&path={}",
        corral_webui::url_encode(agent),
        corral_webui::url_encode(&path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST_SITE: Site<'static> = Site {
        brand: "Corral test",
        home: "/ui",
        nav: &[("/ui", "Home")],
    };

    #[tokio::test]
    async fn common_routes_answer_favicon_unknown_pages_and_the_root() {
        use tower::ServiceExt;
        let get = |router: axum::Router, path: &str| {
            let req = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request");
            async move { router.oneshot(req).await.expect("answer") }
        };
        let with_root: axum::Router = TEST_SITE.common_routes(true);
        assert_eq!(get(with_root.clone(), "/favicon.ico").await.status(), 204);
        let r = get(with_root.clone(), "/ui/nothing/here").await;
        assert_eq!(r.status(), 404);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains("There is no page /ui/nothing/here."));
        let r = get(with_root, "/").await;
        assert_eq!(r.headers()["location"], "/ui");
        let without: axum::Router = TEST_SITE.common_routes(false);
        assert_eq!(get(without, "/").await.status(), 404);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_advertised_url_replaces_an_unspecified_listen_address() {
        // A given hostname wins, whatever the listen address.
        assert_eq!(
            advertised_url(addr("0.0.0.0:8192"), Some("node-1.example"), "/ui"),
            "http://node-1.example:8192/ui"
        );
        assert_eq!(
            advertised_url(addr("[::]:8192"), Some("node-1.example"), "/ui"),
            "http://node-1.example:8192/ui"
        );
        assert_eq!(
            advertised_url(addr("127.0.0.1:8192"), Some("node-1.example"), "/ui"),
            "http://node-1.example:8192/ui"
        );
        // A specific address is reachable as it is.
        assert_eq!(
            advertised_url(addr("127.0.0.1:6066"), None, "/ui"),
            "http://127.0.0.1:6066/ui"
        );
        assert_eq!(
            advertised_url(addr("[::1]:6066"), None, "/ui"),
            "http://[::1]:6066/ui"
        );
        assert_eq!(
            advertised_url(addr("[::1]:6066"), Some("::1"), "/ui"),
            "http://[::1]:6066/ui"
        );
        // Unspecified: this machine's name, never 0.0.0.0 or [::].
        let me = system_hostname().unwrap_or_else(|| "127.0.0.1".into());
        let v4 = advertised_url(addr("0.0.0.0:7000"), None, "/ui");
        assert_eq!(v4, format!("http://{me}:7000/ui"));
        let v6 = advertised_url(addr("[::]:7000"), Some("  "), "/ui");
        assert!(!v6.contains("0.0.0.0") && !v6.contains("[::]"), "{v6}");
        assert!(v6.ends_with(":7000/ui"), "{v6}");
    }

    #[test]
    fn times_read_as_utc_with_their_age() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_490_763_000), "2026-12-05 17:12:43 UTC");
        let w = when(Some(1_796_490_763_000), 1_796_490_763_000 + 90_000);
        assert!(w.contains("2026-12-05T17:12:43Z"), "{w}");
        assert!(w.contains("(1m 30s ago)"), "{w}");
        assert!(when(Some(10_000), 5_000).contains("in 5s"));
        assert!(when(None, 0).contains('-'));
    }

    #[test]
    fn error_pages_escape_and_do_not_refresh() {
        let site = Site {
            brand: "Corral test",
            home: "/ui",
            nav: &[("/ui", "Home")],
        };
        let page = site.error_page("Not found", "no request <script>");
        assert!(page.contains("no request &lt;script&gt;"), "{page}");
        assert!(page.contains("<body><a class=\"skip\""), "a static page");
        assert!(site
            .page("/ui", "Home", "<p>x</p>")
            .contains("<body data-refresh-seconds=\"5\">"));
        let r = site.not_found("gone");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/html; charset=utf-8")
        );
    }

    #[test]
    fn sandbox_links_name_the_agent_and_the_run() {
        assert_eq!(
            master_sandbox_url("m:5050", "a1 x", "fw", "t1"),
            "http://m:5050/ui/sandbox?agent=a1%20x&path=/frameworks/fw/executors/t1/runs/latest"
        );
    }
}
