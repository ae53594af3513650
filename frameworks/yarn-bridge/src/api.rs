//! The REST API, Myriad's on its port 8192 with its paths and JSON, so
//! scripts written for Myriad work unchanged:
//!
//! * `PUT /api/cluster/flexup` and `PUT /api/cluster/flexdown`
//!   (`{"instances", "profile", "constraints": ["hostname LIKE <regex>"]}`),
//!   answering `202 Accepted`;
//! * `GET /api/state` (`pendingTasks`, `stagingTasks`, `activeTasks`,
//!   `killableTasks`);
//! * `GET /api/config`;
//! * `POST /api/framework/shutdown/framework`;
//!
//! and Corral's own: `GET /api/nodemanagers` (each NodeManager with its
//! host, ports, YARN state and, while pending, why), `GET /api/autoscaler`
//! (the policies and every decision with its reason and figures),
//! `GET /api/profiles`, `/health`; and the web pages under `/ui`
//! ([`crate::webui`]). Refusals are `400` with a message; bodies are
//! bounded.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::myriad::FlexRequest;
use crate::rm::ResourceManager;
use crate::server::{ApiError, Config, Input, Reply};

/// Largest request body.
pub const MAX_BODY: usize = 64 << 10;

type Inputs = mpsc::Sender<Input>;

async fn ask(inputs: &Inputs, make: impl FnOnce(Reply<Value>) -> Input) -> Result<Value, ApiError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::unavailable("the bridge is shutting down");
    inputs.send(make(tx)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

fn parse_flex(body: &[u8]) -> Result<FlexRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "the body must be JSON: {\"instances\": n, \"profile\": \"...\", \"constraints\": [\"hostname LIKE <regex>\"]}",
        ));
    }
    corral_sdk::shell::parse_json(body)
}

async fn flex(inputs: &Inputs, rm: &ResourceManager, body: &[u8], up: bool) -> Response {
    let req = match parse_flex(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let result = if up {
        ask(inputs, |r| Input::FlexUp(req, r)).await
    } else {
        // The running containers as YARN reports them now (the last poll's
        // view if the RM cannot be read).
        let nodes = match rm.nodes().await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "flex down with the last view of yarn's nodes");
                None
            }
        };
        ask(inputs, |r| Input::FlexDown(req, nodes, r)).await
    };
    match result {
        Ok(v) => (StatusCode::ACCEPTED, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn flex_up(
    State(inputs): State<Inputs>,
    Extension(rm): Extension<ResourceManager>,
    body: Bytes,
) -> Response {
    flex(&inputs, &rm, &body, true).await
}

async fn flex_down(
    State(inputs): State<Inputs>,
    Extension(rm): Extension<ResourceManager>,
    body: Bytes,
) -> Response {
    flex(&inputs, &rm, &body, false).await
}

async fn answer(inputs: &Inputs, make: impl FnOnce(Reply<Value>) -> Input) -> Response {
    match ask(inputs, make).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn state(State(inputs): State<Inputs>) -> Response {
    answer(&inputs, Input::State).await
}

async fn nodemanagers(State(inputs): State<Inputs>) -> Response {
    answer(&inputs, Input::NodeManagers).await
}

async fn autoscaler(State(inputs): State<Inputs>) -> Response {
    answer(&inputs, Input::Autoscaler).await
}

async fn shutdown(State(inputs): State<Inputs>) -> Response {
    answer(&inputs, Input::Shutdown).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError {
        status: 404,
        message: format!("no endpoint {}", uri.path()),
    }
    .into_response()
}

/// `GET /api/config`: the bridge's configuration in Myriad's terms.
pub(crate) fn config_json(c: &Config) -> Value {
    let overhead = c.profiles.overhead();
    let hadoop = match &c.setup.hadoop {
        crate::nmtask::Hadoop::Home(home) => json!({"yarnHome": home}),
        crate::nmtask::Hadoop::Tarball { uri, home } => {
            json!({"tarballUri": uri, "yarnHome": home})
        }
        crate::nmtask::Hadoop::Docker { image, home } => {
            json!({"dockerImage": image, "yarnHome": home})
        }
    };
    json!({
        "mesosMaster": c.master,
        "frameworkName": c.name,
        "frameworkRole": c.role,
        "frameworkPrincipal": c.principal,
        "restApiPort": c.listen.port(),
        "haEnabled": c.zk.is_some(),
        "zkServers": c.zk,
        "resourceManager": c.rm,
        "profiles": c.profiles.all(),
        "nodemanager": {
            "jvmMaxMemoryMB": overhead.jvm_max_memory_mb,
            "cpus": overhead.cpus,
            "onePerHost": c.one_per_host,
        },
        "hadoop": hadoop,
        "decommissionTimeoutSecs": c.decommission_timeout_secs,
        "excludeFile": c.admin.exclude_file,
        "autoscale": c.autoscale,
        "rmPollMs": c.rm_poll.as_millis() as u64,
        "fineGrainedHoldMs": c.fgs_hold.as_millis() as u64,
    })
}

/// The API's routes.
pub(crate) fn router(
    inputs: Inputs,
    gate: corral_sdk::gate::Gate,
    config: Value,
    rm: ResourceManager,
) -> Router {
    let profiles = json!({
        "profiles": config.get("profiles").cloned().unwrap_or(Value::Null),
        "nodemanager": config.get("nodemanager").cloned().unwrap_or(Value::Null),
    });
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/api/cluster/flexup", put(flex_up))
        .route("/api/cluster/flexdown", put(flex_down))
        .route("/api/state", get(state))
        .route(
            "/api/config",
            get(|Extension(c): Extension<std::sync::Arc<Value>>| async move {
                axum::Json((*c).clone())
            }),
        )
        .route(
            "/api/profiles",
            get(move || {
                let p = profiles.clone();
                async move { axum::Json(p) }
            }),
        )
        .route("/api/nodemanagers", get(nodemanagers))
        .route("/api/autoscaler", get(autoscaler))
        .route("/api/framework/shutdown/framework", post(shutdown))
        .merge(crate::webui::routes())
        .fallback(not_found)
        .layer(Extension(std::sync::Arc::new(config)))
        .layer(Extension(rm))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            corral_sdk::gate::only_the_leader,
        ))
        .with_state(inputs)
}
