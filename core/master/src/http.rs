//! The master's HTTP surface: scheduler API, operator API, legacy JSON
//! endpoints and metrics. Handlers decode, validate the transport rules of
//! the Mesos API (content types, stream ids, body limits) and hand the call
//! to the actor; state errors map to HTTP status in one place
//! (`support.rs`). This root holds the routing: the leader's router, the
//! standby's answers, and the split of gRPC from HTTP on the shared port.
//!
//! Modules depend one way: `scheduler`, `operator` and `legacy` (the v0
//! endpoints, over the JSON views of `crate::legacy`) use `support`;
//! `legacy` also uses `operator`'s offer operations and teardown.

mod legacy;
mod operator;
mod scheduler;
mod support;

use legacy::*;
use operator::*;
use scheduler::*;
pub(crate) use support::unavailable;
pub use support::{
    query, read_body, request_encoding, response_encoding, version_info, HttpError, Shared,
};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use corral_api::codec::{self};

/// The master's one HTTP service: the leader's `router` once this master
/// leads (`leading` is set), before that a standby's answers: 307 to the
/// leader (`leader`, when known) for every API and `/master/redirect`, 503
/// while no leader is known; `/health` and `/version` locally.
pub fn dispatch(
    leading: std::sync::Arc<std::sync::OnceLock<Router>>,
    leader: tokio::sync::watch::Receiver<Option<String>>,
) -> Router {
    Router::new().fallback(move |req: axum::extract::Request| {
        let leading = std::sync::Arc::clone(&leading);
        let leader = leader.borrow().clone();
        async move {
            use tower::ServiceExt;
            if let Some(router) = leading.get() {
                return match router.clone().oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            standby(req.uri(), leader)
        }
    })
}

fn standby(uri: &http::Uri, leader: Option<String>) -> Response {
    let path = uri.path();
    match path {
        "/health" | "/master/health" => return StatusCode::OK.into_response(),
        "/version" => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                codec::json_bytes(&serde_json::json!({
                    "version": corral_api::MESOS_VERSION,
                })),
            )
                .into_response()
        }
        _ => {}
    }
    let Some(leader) = leader else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master is elected yet",
        )
            .into_response();
    };
    let location = if matches!(path, "/master/redirect" | "/redirect") {
        format!("//{leader}")
    } else {
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        format!("//{leader}{path}{query}")
    };
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// The leader's service on the shared port: requests with a gRPC
/// content type (`application/grpc...`, the agents' sessions) go to `grpc`;
/// everything else to the HTTP `router`, after dropping a trailing slash
/// from the path as Mesos does (`/master/state/` is `/master/state`). A
/// path neither knows is a 404 with a message, never an empty gRPC 200.
pub fn split_grpc(router: Router, grpc: Router) -> Router {
    Router::new().fallback(move |mut req: axum::extract::Request| {
        let (router, grpc) = (router.clone(), grpc.clone());
        async move {
            use tower::ServiceExt;
            let is_grpc = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            let service = if is_grpc {
                grpc
            } else {
                if let Some(uri) = without_trailing_slash(req.uri()) {
                    *req.uri_mut() = uri;
                }
                router
            };
            match service.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
}

/// `uri` with one trailing `/` removed from a path longer than `/`.
fn without_trailing_slash(uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path();
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty())?;
    let path_and_query = match uri.query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).ok()
}

/// Unknown paths: 404 naming the path.
async fn not_found(uri: http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("No endpoint {} on this master\n", uri.path()),
    )
        .into_response()
}

/// All HTTP routes of the master.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/api/v1/scheduler", post(scheduler_api))
        .route("/api/v1", post(operator_api))
        .route("/api/v1/operator", post(operator_api))
        .route("/master/api/v1", post(operator_api))
        .route("/master/api/v1/scheduler", post(scheduler_api))
        .route("/master/state", get(state_json))
        .route("/master/state.json", get(state_json))
        .route("/state", get(state_json))
        .route("/state.json", get(state_json))
        .route("/master/state-summary", get(state_summary_json))
        .route("/state-summary", get(state_summary_json))
        .route("/master/slaves", get(slaves_json))
        .route("/slaves", get(slaves_json))
        .route("/master/frameworks", get(frameworks_json))
        .route("/frameworks", get(frameworks_json))
        .route("/master/tasks", get(tasks_json))
        .route("/tasks", get(tasks_json))
        .route("/master/roles", get(roles_json))
        .route("/roles", get(roles_json))
        .route("/master/roles.json", get(roles_json))
        .route("/roles.json", get(roles_json))
        .route("/metrics/snapshot", get(metrics_snapshot))
        .route("/metrics", get(prometheus))
        .route("/version", get(version))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/master/health", get(|| async { StatusCode::OK }))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/master/reserve", post(legacy::reserve))
        .route("/reserve", post(legacy::reserve))
        .route("/master/unreserve", post(legacy::unreserve))
        .route("/unreserve", post(legacy::unreserve))
        .route("/master/create-volumes", post(legacy::create_volumes))
        .route("/create-volumes", post(legacy::create_volumes))
        .route("/master/destroy-volumes", post(legacy::destroy_volumes))
        .route("/destroy-volumes", post(legacy::destroy_volumes))
        .route(
            "/master/maintenance/schedule",
            get(maintenance_schedule_json).post(maintenance_schedule_post),
        )
        .route(
            "/maintenance/schedule",
            get(maintenance_schedule_json).post(maintenance_schedule_post),
        )
        .route("/master/maintenance/status", get(maintenance_status_json))
        .route("/maintenance/status", get(maintenance_status_json))
        .route("/master/teardown", post(teardown_form))
        .route("/teardown", post(teardown_form))
        .merge(crate::webui::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::jsonp::wrap))
        .with_state(shared)
}
