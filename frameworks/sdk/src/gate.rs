//! The REST API and web pages of a framework run as several instances:
//! only the elected leader answers `/api/...` and `/ui...`; a standby
//! redirects the caller to it (`307` with the leader's address), or answers
//! `503` while no leader is known. Other paths (`/health`) are always
//! answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// Whether this instance leads, and who does if not.
#[derive(Clone)]
pub struct Gate {
    leading: Arc<AtomicBool>,
    leader: Option<watch::Receiver<Option<String>>>,
}

impl Gate {
    /// `leader`: the elected leader's address while this instance waits
    /// (`None`: a single instance, which leads once it starts).
    pub fn new(leader: Option<watch::Receiver<Option<String>>>) -> Self {
        Self {
            leading: Arc::new(AtomicBool::new(false)),
            leader,
        }
    }

    /// This instance leads from now on.
    pub fn set_leading(&self) {
        self.leading.store(true, Ordering::SeqCst);
    }

    /// Whether this instance leads.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}

/// Middleware (`axum::middleware::from_fn_with_state(gate, only_the_leader)`):
/// a standby answers API calls and page requests with a redirect to the
/// leader (503 while none is known).
pub async fn only_the_leader(
    State(gate): State<Gate>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let gated = path.starts_with("/api/") || path == "/ui" || path.starts_with("/ui/");
    if gate.is_leading() || !gated {
        return next.run(request).await;
    }
    let leader = gate.leader.as_ref().and_then(|l| l.borrow().clone());
    match leader {
        Some(leader) => {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("http://{leader}{path}"))],
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this instance does not lead and no leader is elected yet; retry shortly\n",
        )
            .into_response(),
    }
}
