//! The submission server: Spark's REST submission protocol over HTTP
//! (`/v1/submissions/...`, [`crate::protocol`]), so an unmodified
//! `spark-submit --master spark://<dispatcher>:<port> --deploy-mode cluster`
//! submits, and `--status` and `--kill` work. Routing, body limits and
//! parsing happen here; each call then goes to the dispatcher's actor as
//! an [`ApiCall`], answered with the [`Reply`] Spark's server would give.
//! `readyz` says whether this instance leads; a standby answers the other
//! calls with Spark's "Current state is not alive" (a client given several
//! masters moves on to the next).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::calls::Call;
use crate::protocol::{
    parse_create_with_unknown_fields, readyz_reply, route, ProtocolError, Reply, Route,
    CONTENT_TYPE, MAX_REQUEST_BODY_BYTES,
};

/// A call for the actor, with where to send the answer.
#[derive(Debug)]
pub struct ApiCall {
    /// The call.
    pub call: Call,
    /// The answer.
    pub reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
struct Api {
    calls: mpsc::Sender<ApiCall>,
    gate: corral_sdk::gate::Gate,
    version: String,
}

fn render(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, reply.body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(allow) = reply.allow {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

fn refusal(status: u16, message: String, version: &str) -> Response {
    render(Reply::from_error(
        &ProtocolError {
            status,
            message,
            highest_protocol_version: None,
            allow: None,
        },
        version,
    ))
}

async fn handle(State(api): State<Api>, request: Request) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let route = match route(&method, &path) {
        Ok(r) => r,
        Err(e) => return render(Reply::from_error(&e, &api.version)),
    };
    if route == Route::Readyz {
        return render(readyz_reply(api.gate.is_leading(), &api.version));
    }
    if !api.gate.is_leading() {
        return refusal(
            503,
            "Current state is not alive: this dispatcher is a standby; submit to the leader"
                .to_string(),
            &api.version,
        );
    }
    let call = match route {
        Route::Create => {
            let body = match axum::body::to_bytes(request.into_body(), MAX_REQUEST_BODY_BYTES).await
            {
                Ok(b) => b,
                Err(_) => {
                    return refusal(
                        413,
                        format!(
                        "Malformed request: the body is larger than {MAX_REQUEST_BODY_BYTES} bytes"
                    ),
                        &api.version,
                    )
                }
            };
            match parse_create_with_unknown_fields(&body) {
                Ok((req, unknown)) => Call::Create(req, unknown),
                Err(e) => return render(Reply::from_error(&e, &api.version)),
            }
        }
        Route::Status { submission_id } => Call::Status(submission_id),
        Route::Kill { submission_id } => Call::Kill(submission_id),
        Route::KillAll => Call::KillAll,
        Route::Clear => Call::Clear,
        Route::Readyz => return render(readyz_reply(true, &api.version)),
    };
    let (tx, rx) = oneshot::channel();
    if api.calls.send(ApiCall { call, reply: tx }).await.is_err() {
        return refusal(503, "the dispatcher is shutting down".into(), &api.version);
    }
    match rx.await {
        Ok(reply) => render(reply),
        Err(_) => refusal(503, "the dispatcher is shutting down".into(), &api.version),
    }
}

/// The submission server's routes: every path goes through Spark's
/// routing ([`route`]), so unknown paths, versions and methods are answered
/// as Spark answers them. `version` is the `serverSparkVersion` sent.
pub fn router(calls: mpsc::Sender<ApiCall>, gate: corral_sdk::gate::Gate, version: &str) -> Router {
    Router::new().fallback(handle).with_state(Api {
        calls,
        gate,
        version: version.to_string(),
    })
}

/// A question for the actor from the dispatcher's JSON API.
#[derive(Debug)]
pub enum Query {
    /// Every driver, live and finished, and the queue.
    Drivers(oneshot::Sender<serde_json::Value>),
    /// One driver.
    Driver(String, oneshot::Sender<Option<serde_json::Value>>),
    /// Where a driver's log is.
    LogTarget(String, oneshot::Sender<Result<LogTarget, ApiError>>),
}

/// Where a driver's sandbox is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The leading master (`host:port`).
    pub master: String,
    /// The dispatcher's FrameworkID.
    pub framework: String,
    /// The driver's (latest) task.
    pub task_id: String,
}

use axum::extract::{Path, Query as UrlQuery};
use axum::routing::get;
use axum::Json;
use corral_sdk::shell::ApiError;

async fn ask<T>(
    queries: &mpsc::Sender<Query>,
    make: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    queries
        .send(make(tx))
        .await
        .map_err(|_| ApiError::unavailable("the dispatcher is shutting down"))?;
    rx.await
        .map_err(|_| ApiError::unavailable("the dispatcher is shutting down"))
}

async fn drivers(
    State(q): State<mpsc::Sender<Query>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ask(&q, Query::Drivers).await.map(Json)
}

async fn driver(
    State(q): State<mpsc::Sender<Query>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    ask(&q, |tx| Query::Driver(id.clone(), tx))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no driver {id} (never submitted, or no longer retained)"
            ))
        })
}

#[derive(serde::Deserialize)]
struct LogQuery {
    path: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
}

async fn logs(
    State(q): State<mpsc::Sender<Query>>,
    Path(id): Path<String>,
    UrlQuery(lq): UrlQuery<LogQuery>,
) -> Result<Json<corral_sdk::sandbox::Chunk>, ApiError> {
    use corral_sdk::sandbox::{read_live, valid_file, MAX_CHUNK};
    let file = lq.path.unwrap_or_else(|| "stdout".into());
    if !valid_file(&file) {
        return Err(ApiError::bad(format!(
            "path: {file:?} is not a log file; use stdout, stderr or a rotated one (stdout.1)"
        )));
    }
    let target = ask(&q, |tx| Query::LogTarget(id.clone(), tx)).await??;
    let http = reqwest::Client::new();
    let read = read_live(
        &http,
        &target.master,
        &target.framework,
        &target.task_id,
        &file,
        lq.offset.unwrap_or(0),
        lq.length.unwrap_or(MAX_CHUNK),
    )
    .await;
    read.chunk
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {file} of driver {id} (task {}): neither the master nor its agent has it{}",
                target.task_id,
                read.task_state
                    .map(|s| format!("; its task is {s}"))
                    .unwrap_or_default()
            ))
        })
        .map(Json)
}

/// The dispatcher's own JSON API (`corral spark list|logs`, the web UI):
/// `GET /api/drivers`, `/api/drivers/{id}`, `/api/drivers/{id}/logs`;
/// answered by the leader only (a standby redirects to it).
pub fn json_router(queries: mpsc::Sender<Query>, gate: corral_sdk::gate::Gate) -> Router {
    Router::new()
        .route("/api/drivers", get(drivers))
        .route("/api/drivers/{id}", get(driver))
        .route("/api/drivers/{id}/logs", get(logs))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(queries)
}
