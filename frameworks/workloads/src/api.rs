//! The REST API, shaped like Singularity's (`/api/requests`,
//! `/api/deploys`, `/api/tasks/active`, `/api/history/...`, `/api/state`),
//! the load balancer's upstreams as JSON (`/api/loadbalancer/upstreams`),
//! plus `/health`, and the web pages under `/ui` ([`crate::webui`]).
//! Every call is answered by the actor; refusals are 4xx with a message
//! naming the field, and change nothing. Bodies are bounded.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};

use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::ClusterSource;
use crate::logs::LogSource;
use crate::model::{DeployRequest, Request};
use crate::server::{ApiError, Input, Reply};

/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;

type Inputs = mpsc::Sender<Input>;

async fn ask(inputs: &Inputs, make: impl FnOnce(Reply<serde_json::Value>) -> Input) -> Response {
    let (tx, rx) = oneshot::channel();
    if inputs.send(make(tx)).await.is_err() {
        return ApiError::unavailable("the framework is shutting down").into_response();
    }
    match rx.await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::unavailable("the framework is shutting down").into_response(),
    }
}

use corral_sdk::shell::parse_json as parse;

async fn save_request(
    State(inputs): State<Inputs>,
    Extension(cluster): Extension<ClusterSource>,
    body: Bytes,
) -> Response {
    match parse::<Request>(&body) {
        Ok(request) => {
            let view = cluster.view().await;
            ask(&inputs, |r| Input::SaveRequest(request, view, r)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn list_requests(State(inputs): State<Inputs>) -> Response {
    ask(&inputs, Input::ListRequests).await
}

async fn get_request(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::GetRequest(id, r)).await
}

async fn delete_request(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::Delete(id, r)).await
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scale {
    instances: Option<u32>,
}

async fn scale(
    State(inputs): State<Inputs>,
    Extension(cluster): Extension<ClusterSource>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse::<Scale>(&body) {
        Ok(Scale { instances: Some(n) }) if n > 0 && n <= crate::model::MAX_INSTANCES => {
            let view = cluster.view().await;
            ask(&inputs, |r| Input::Scale(id, n, view, r)).await
        }
        Ok(_) => ApiError::bad(format!(
            "instances: must be a number from 1 to {}",
            crate::model::MAX_INSTANCES
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::Pause(id, true, r)).await
}

async fn unpause(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::Pause(id, false, r)).await
}

async fn run_now(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::Run(id, r)).await
}

async fn deploy(
    State(inputs): State<Inputs>,
    Extension(cluster): Extension<ClusterSource>,
    body: Bytes,
) -> Response {
    match parse::<DeployRequest>(&body) {
        Ok(d) => {
            let view = cluster.view().await;
            ask(&inputs, |r| Input::Deploy(d.deploy, view, r)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn cancel_deploy(
    State(inputs): State<Inputs>,
    Path((deploy_id, request_id)): Path<(String, String)>,
) -> Response {
    ask(&inputs, |r| Input::CancelDeploy(request_id, deploy_id, r)).await
}

async fn active_tasks(State(inputs): State<Inputs>) -> Response {
    ask(&inputs, Input::ActiveTasks).await
}

async fn run_history(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::RunHistory(id, r)).await
}

async fn deploy_history(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::DeployHistory(id, r)).await
}

async fn task_history(State(inputs): State<Inputs>, Path(id): Path<String>) -> Response {
    ask(&inputs, |r| Input::TaskHistory(id, r)).await
}

async fn upstreams(State(inputs): State<Inputs>) -> Response {
    ask(&inputs, Input::Upstreams).await
}

#[derive(serde::Deserialize)]
struct ReadQuery {
    path: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
}

async fn read_log(
    Extension(logs): Extension<LogSource>,
    Path(task_id): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::bad(format!(
                "offset and length must be non-negative numbers: {e}"
            ))
            .into_response()
        }
    };
    let path = q.path.unwrap_or_else(|| "stdout".into());
    match logs
        .read(
            &task_id,
            &path,
            q.offset.unwrap_or(0),
            q.length.unwrap_or(crate::logs::MAX_CHUNK),
        )
        .await
    {
        Ok(chunk) => axum::Json(chunk).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn state(State(inputs): State<Inputs>) -> Response {
    ask(&inputs, Input::State).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("no endpoint {}", uri.path())).into_response()
}

/// The API's routes.
pub(crate) fn router(
    inputs: Inputs,
    gate: corral_sdk::gate::Gate,
    cluster: ClusterSource,
    logs: LogSource,
) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/api/state", get(state))
        .route("/api/requests", post(save_request).get(list_requests))
        .route(
            "/api/requests/request/{id}",
            get(get_request).delete(delete_request),
        )
        .route("/api/requests/request/{id}/scale", put(scale))
        .route("/api/requests/request/{id}/pause", post(pause))
        .route("/api/requests/request/{id}/unpause", post(unpause))
        .route("/api/requests/request/{id}/run", post(run_now))
        .route("/api/deploys", post(deploy))
        .route(
            "/api/deploys/deploy/{deploy_id}/request/{request_id}",
            delete(cancel_deploy),
        )
        .route("/api/tasks/active", get(active_tasks))
        .route("/api/history/request/{id}/runs", get(run_history))
        .route("/api/history/request/{id}/deploys", get(deploy_history))
        .route("/api/history/request/{id}/tasks", get(task_history))
        .route("/api/loadbalancer/upstreams", get(upstreams))
        .route("/api/sandbox/{task_id}/read", get(read_log))
        .merge(crate::webui::routes())
        .fallback(not_found)
        .layer(Extension(cluster))
        .layer(Extension(logs))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(inputs)
}
