//! The master's HTTP surface: scheduler API, operator API, legacy JSON
//! endpoints and metrics. Handlers decode, validate the transport rules of
//! the Mesos API (content types, stream ids, body limits) and hand the call
//! to the actor; state errors map to HTTP status here, in one place.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use corral_api::codec::{self, Encoding};
use corral_api::v1::{self, master as op, scheduler};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::actor::Input;
use crate::legacy;
use crate::registry::Operation;
use crate::state::{CallError, Clock, Master, OperatorError};

/// Shared handle of the HTTP handlers.
#[derive(Clone)]
pub struct Shared {
    /// The actor's input channel.
    pub inputs: mpsc::Sender<Input>,
    /// Request body limit in bytes.
    pub max_body: usize,
    /// `host:port` advertised for redirects.
    pub advertised: String,
    /// The registry (weights, quota, agents).
    pub registry: std::sync::Arc<dyn crate::registry::Registry>,
    /// Serialises registry writes with their application to the state, so
    /// the state always reflects the latest write.
    pub registry_writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// An HTTP error with a plain-text message.
pub struct HttpError(pub StatusCode, pub String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

impl From<CallError> for HttpError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::BadRequest(m) => HttpError(StatusCode::BAD_REQUEST, m),
            CallError::Forbidden(m) => HttpError(StatusCode::FORBIDDEN, m),
        }
    }
}

fn unavailable() -> HttpError {
    HttpError(
        StatusCode::SERVICE_UNAVAILABLE,
        "the master is shutting down".into(),
    )
}

/// Runs a function on the master state and returns its result.
pub async fn query<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut Master, Clock) -> T + Send + 'static,
) -> Result<T, HttpError> {
    let (tx, rx) = oneshot::channel();
    shared
        .inputs
        .send(Input::With(Box::new(move |m, now| {
            let result = f(m, now);
            Box::new(move || {
                let _ = tx.send(result);
            })
        })))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

/// The request's encoding from `Content-Type`: 400 when missing, 415 when
/// unsupported.
pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, HttpError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present".into(),
        ));
    };
    let ct = ct.to_str().unwrap_or("");
    Encoding::from_content_type(ct).ok_or_else(|| {
        HttpError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Expecting 'Content-Type' of application/json or application/x-protobuf, got '{ct}'"
            ),
        )
    })
}

/// The response encoding from `Accept` (406 when nothing fits).
pub fn response_encoding(headers: &HeaderMap, default: Encoding) -> Result<Encoding, HttpError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Encoding::negotiate(accept, default).ok_or_else(|| {
        HttpError(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json or application/x-protobuf".into(),
        )
    })
}

/// Reads a request body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        HttpError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    })
}

fn decode<M: prost::Message + prost::Name + Default>(
    enc: Encoding,
    bytes: &[u8],
) -> Result<M, HttpError> {
    enc.decode_request(bytes).map_err(|e| {
        HttpError(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into Call: {e}"),
        )
    })
}

/// A streaming RecordIO response that reports its own end.
fn stream_response(
    encoding: Encoding,
    rx: mpsc::Receiver<Bytes>,
    extra: Option<(&'static str, String)>,
    on_close: Option<Box<dyn FnOnce() + Send>>,
) -> Response {
    struct Guard(Option<Box<dyn FnOnce() + Send>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let guard = Guard(on_close);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |b| {
        let _keep = &guard;
        Ok::<_, Infallible>(b)
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some((name, value)) = extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

/// `POST /api/v1/scheduler`.
pub async fn scheduler_api(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let enc = request_encoding(&headers)?;
    let bytes = read_body(body, shared.max_body).await?;
    let call: scheduler::Call = decode(enc, &bytes)?;
    let stream_id = headers
        .get(corral_api::STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_subscribe = call.r#type == Some(scheduler::call::Type::Subscribe as i32);
    if is_subscribe {
        if stream_id.is_some() {
            return Err(HttpError(
                StatusCode::BAD_REQUEST,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header".into(),
            ));
        }
        if call.subscribe.is_none() {
            return Err(HttpError(
                StatusCode::BAD_REQUEST,
                "Expecting 'subscribe' to be present".into(),
            ));
        }
        let out = response_encoding(&headers, enc)?;
        let (tx, rx) = oneshot::channel();
        shared
            .inputs
            .send(Input::Subscribe {
                call,
                encoding: out,
                reply: tx,
            })
            .await
            .map_err(|_| unavailable())?;
        let (stream_id, events) = rx.await.map_err(|_| unavailable())?;
        let inputs = shared.inputs.clone();
        let sid = stream_id.clone();
        let on_close: Box<dyn FnOnce() + Send> = Box::new(move || {
            tokio::spawn(async move {
                let _ = inputs.send(Input::StreamClosed { stream_id: sid }).await;
            });
        });
        return Ok(stream_response(
            out,
            events,
            Some((corral_api::STREAM_ID_HEADER, stream_id)),
            Some(on_close),
        ));
    }
    let is_update_framework = call.r#type == Some(scheduler::call::Type::UpdateFramework as i32);
    let (tx, rx) = oneshot::channel();
    shared
        .inputs
        .send(Input::Call {
            call,
            stream_id,
            reply: tx,
        })
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())??;
    Ok(if is_update_framework {
        StatusCode::OK.into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    })
}

fn op_response(ty: op::response::Type) -> op::Response {
    op::Response {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

/// The answer to a synchronous operator query, computed inside the actor;
/// `None` for calls this master does not serve.
fn sync_response(m: &Master, ty: op::call::Type, now: Clock) -> Option<op::Response> {
    use op::call::Type as T;
    use op::response::{self as r, Type as R};
    Some(match ty {
        T::GetHealth => op::Response {
            get_health: Some(r::GetHealth { healthy: true }),
            ..op_response(R::GetHealth)
        },
        T::GetFlags => op::Response {
            get_flags: Some(r::GetFlags {
                flags: m
                    .flags
                    .pairs()
                    .into_iter()
                    .map(|(name, value)| v1::Flag {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            }),
            ..op_response(R::GetFlags)
        },
        T::GetVersion => op::Response {
            get_version: Some(r::GetVersion {
                version_info: version_info(),
            }),
            ..op_response(R::GetVersion)
        },
        T::GetMetrics => op::Response {
            get_metrics: Some(r::GetMetrics {
                metrics: legacy::metrics(m, now)
                    .into_iter()
                    .map(|(name, value)| v1::Metric {
                        name,
                        value: Some(value),
                    })
                    .collect(),
            }),
            ..op_response(R::GetMetrics)
        },
        T::GetState => op::Response {
            get_state: Some(m.get_state()),
            ..op_response(R::GetState)
        },
        T::GetAgents => op::Response {
            get_agents: Some(m.get_agents()),
            ..op_response(R::GetAgents)
        },
        T::GetFrameworks => op::Response {
            get_frameworks: Some(m.get_frameworks()),
            ..op_response(R::GetFrameworks)
        },
        T::GetExecutors => op::Response {
            get_executors: Some(m.get_executors()),
            ..op_response(R::GetExecutors)
        },
        T::GetTasks => op::Response {
            get_tasks: Some(m.get_tasks()),
            ..op_response(R::GetTasks)
        },
        T::GetRoles => op::Response {
            get_roles: Some(m.get_roles()),
            ..op_response(R::GetRoles)
        },
        T::GetWeights => op::Response {
            get_weights: Some(r::GetWeights {
                weight_infos: m
                    .weights
                    .iter()
                    .map(|(role, weight)| v1::WeightInfo {
                        weight: *weight,
                        role: Some(role.clone()),
                    })
                    .collect(),
            }),
            ..op_response(R::GetWeights)
        },
        T::GetQuota => op::Response {
            get_quota: Some(r::GetQuota {
                status: v1::quota::QuotaStatus {
                    configs: m.quotas.values().cloned().collect(),
                    ..Default::default()
                },
            }),
            ..op_response(R::GetQuota)
        },
        T::GetOperations => op::Response {
            get_operations: Some(m.get_operations()),
            ..op_response(R::GetOperations)
        },
        T::GetMaster => op::Response {
            get_master: Some(r::GetMaster {
                master_info: Some(m.info.clone()),
                start_time: Some(m.start_time),
                elected_time: Some(m.start_time),
            }),
            ..op_response(R::GetMaster)
        },
        _ => return None,
    })
}

/// Encodes a synchronous operator response, gzipped when the client asks.
fn encode_response<M: prost::Message + prost::Name>(
    headers: &HeaderMap,
    enc: Encoding,
    msg: &M,
) -> Response {
    let body = enc.encode(msg);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().starts_with("gzip")));
    if gzip {
        use std::io::Write;
        let mut enc_w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc_w.write_all(&body).is_ok() {
            if let Ok(zipped) = enc_w.finish() {
                return (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, enc.content_type()),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    zipped,
                )
                    .into_response();
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response()
}

/// `POST /api/v1` and `/api/v1/operator`.
pub async fn operator_api(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    use op::call::Type as T;
    let enc = request_encoding(&headers)?;
    let bytes = read_body(body, shared.max_body).await?;
    let call: op::Call = decode(enc, &bytes)?;
    let out = response_encoding(&headers, Encoding::Json)?;
    let ty = call
        .r#type
        .and_then(|t| T::try_from(t).ok())
        .unwrap_or(T::Unknown);
    let resp = match ty {
        T::Subscribe => {
            let (tx, rx) = oneshot::channel();
            shared
                .inputs
                .send(Input::OperatorSubscribe {
                    encoding: out,
                    reply: tx,
                })
                .await
                .map_err(|_| unavailable())?;
            let events = rx.await.map_err(|_| unavailable())?;
            return Ok(stream_response(out, events, None, None));
        }
        T::Teardown => {
            let Some(t) = call.teardown else {
                return Err(HttpError(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'teardown' to be present".into(),
                ));
            };
            teardown(&shared, t.framework_id.value).await?;
            return Ok(StatusCode::OK.into_response());
        }
        T::MarkAgentGone => {
            let Some(agent_id) = call.mark_agent_gone.map(|g| g.agent_id.value) else {
                return Err(HttpError(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'mark_agent_gone' to be present".into(),
                ));
            };
            query(&shared, move |m, now| m.mark_agent_gone(&agent_id, now))
                .await?
                .map_err(|message| HttpError(StatusCode::BAD_REQUEST, message))?;
            return Ok(StatusCode::OK.into_response());
        }
        T::UpdateWeights => {
            let Some(u) = call.update_weights else {
                return Err(HttpError(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'update_weights' to be present".into(),
                ));
            };
            let mut weights = Vec::with_capacity(u.weight_infos.len());
            for w in u.weight_infos {
                let Some(role) = w.role else {
                    return Err(HttpError(
                        StatusCode::BAD_REQUEST,
                        "every weight_info needs a 'role'".into(),
                    ));
                };
                weights.push((role, w.weight));
            }
            update_registry(&shared, vec![Operation::UpdateWeights(weights)]).await?;
            return Ok(StatusCode::OK.into_response());
        }
        T::UpdateQuota => {
            let Some(u) = call.update_quota else {
                return Err(HttpError(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'update_quota' to be present".into(),
                ));
            };
            update_registry(&shared, vec![Operation::UpdateQuota(u.quota_configs)]).await?;
            return Ok(StatusCode::OK.into_response());
        }
        T::ReserveResources
        | T::UnreserveResources
        | T::CreateVolumes
        | T::DestroyVolumes
        | T::GrowVolume
        | T::ShrinkVolume => {
            let (agent_id, operation) = offer_operation_of(ty, call)?;
            apply_operator_operation(&shared, agent_id, operation).await?;
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        T::Unknown => {
            return Err(HttpError(
                StatusCode::BAD_REQUEST,
                "Expecting 'type' to be present".into(),
            ))
        }
        other => {
            let unsupported = HttpError(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "operator call {} is not supported by this master yet",
                    other.as_str_name()
                ),
            );
            query(&shared, move |m, now| sync_response(m, other, now))
                .await?
                .ok_or(unsupported)?
        }
    };
    Ok(encode_response(&headers, out, &resp))
}

/// The agent and offer operation of an operator's RESERVE_RESOURCES,
/// UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES, GROW_VOLUME or
/// SHRINK_VOLUME.
fn offer_operation_of(
    ty: op::call::Type,
    call: op::Call,
) -> Result<(String, v1::offer::Operation), HttpError> {
    use op::call::Type as T;
    use v1::offer::operation::{self as o, Type as O};
    let missing = |what: &str| {
        HttpError(
            StatusCode::BAD_REQUEST,
            format!("Expecting '{what}' to be present"),
        )
    };
    let mut operation = v1::offer::Operation::default();
    let agent_id = match ty {
        T::ReserveResources => {
            let r = call
                .reserve_resources
                .ok_or_else(|| missing("reserve_resources"))?;
            operation.r#type = Some(O::Reserve as i32);
            operation.reserve = Some(o::Reserve {
                source: r.source,
                resources: r.resources,
            });
            Some(r.agent_id)
        }
        T::UnreserveResources => {
            let r = call
                .unreserve_resources
                .ok_or_else(|| missing("unreserve_resources"))?;
            operation.r#type = Some(O::Unreserve as i32);
            operation.unreserve = Some(o::Unreserve {
                resources: r.resources,
            });
            Some(r.agent_id)
        }
        T::CreateVolumes => {
            let c = call
                .create_volumes
                .ok_or_else(|| missing("create_volumes"))?;
            operation.r#type = Some(O::Create as i32);
            operation.create = Some(o::Create { volumes: c.volumes });
            Some(c.agent_id)
        }
        T::DestroyVolumes => {
            let d = call
                .destroy_volumes
                .ok_or_else(|| missing("destroy_volumes"))?;
            operation.r#type = Some(O::Destroy as i32);
            operation.destroy = Some(o::Destroy { volumes: d.volumes });
            Some(d.agent_id)
        }
        T::GrowVolume => {
            let g = call.grow_volume.ok_or_else(|| missing("grow_volume"))?;
            operation.r#type = Some(O::GrowVolume as i32);
            operation.grow_volume = Some(o::GrowVolume {
                volume: g.volume,
                addition: g.addition,
            });
            g.agent_id
        }
        T::ShrinkVolume => {
            let s = call.shrink_volume.ok_or_else(|| missing("shrink_volume"))?;
            operation.r#type = Some(O::ShrinkVolume as i32);
            operation.shrink_volume = Some(o::ShrinkVolume {
                volume: s.volume,
                subtract: s.subtract,
            });
            s.agent_id
        }
        _ => None,
    };
    let agent_id = agent_id.ok_or_else(|| missing("agent_id"))?.value;
    Ok((agent_id, operation))
}

/// Applies an operator's offer operation on an agent: 202 once the master
/// has validated and applied it (the agent does the work asynchronously),
/// 400 when it is malformed or names an unknown agent, 409 when the
/// agent's resources do not allow it; nothing changes when it is refused.
pub(crate) async fn apply_operator_operation(
    shared: &Shared,
    agent_id: String,
    operation: v1::offer::Operation,
) -> Result<(), HttpError> {
    query(shared, move |m, _| {
        m.operator_operation(&agent_id, operation)
    })
    .await?
    .map_err(|e| match e {
        OperatorError::BadRequest(m) => HttpError(StatusCode::BAD_REQUEST, m),
        OperatorError::Conflict(m) => HttpError(StatusCode::CONFLICT, m),
    })
}

/// Writes operations to the registry, then applies the written state.
/// Invalid operations are a 400 and change nothing.
async fn update_registry(shared: &Shared, ops: Vec<Operation>) -> Result<(), HttpError> {
    let _serialised = shared.registry_writes.lock().await;
    let state = shared.registry.apply(ops).await.map_err(|e| {
        if e.is_rejection() {
            HttpError(StatusCode::BAD_REQUEST, e.to_string())
        } else {
            tracing::error!(error = %e, "registry write failed");
            HttpError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the registry could not be written: {e}"),
            )
        }
    })?;
    query(shared, move |m, _| m.apply_registry(&state)).await
}

/// Tears a framework down (operator TEARDOWN and `/master/teardown`).
async fn teardown(shared: &Shared, framework_id: String) -> Result<(), HttpError> {
    let found = query(shared, move |m, now| {
        if m.frameworks.contains_key(&framework_id) {
            m.remove_framework(&framework_id, now);
            true
        } else {
            false
        }
    })
    .await?;
    if found {
        Ok(())
    } else {
        Err(HttpError(
            StatusCode::BAD_REQUEST,
            "No framework found with the specified ID".into(),
        ))
    }
}

/// Version facts reported by GET_VERSION and `/version`.
pub fn version_info() -> v1::VersionInfo {
    v1::VersionInfo {
        version: corral_api::MESOS_VERSION.to_string(),
        build_date: Some(String::new()),
        build_time: Some(0.0),
        build_user: Some(String::new()),
        git_sha: Some(format!("corral-{}", corral_api::VERSION)),
        ..Default::default()
    }
}

async fn json_of(
    shared: Shared,
    f: impl FnOnce(&Master, Clock) -> serde_json::Value + Send + 'static,
) -> Result<Response, HttpError> {
    let v = query(&shared, move |m, now| f(m, now)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        codec::json_bytes(&v),
    )
        .into_response())
}

async fn state_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, legacy::state).await
}

/// `/slaves?slave_id=` (Mesos: only that agent when given).
async fn slaves_json(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, HttpError> {
    let slave_id = q.get("slave_id").cloned();
    json_of(s, move |m, _| legacy::slaves(m, slave_id.as_deref())).await
}

/// `/frameworks?framework_id=` (Mesos: only that framework when given).
async fn frameworks_json(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, HttpError> {
    let framework_id = q.get("framework_id").cloned();
    json_of(s, move |m, _| {
        legacy::frameworks(m, framework_id.as_deref())
    })
    .await
}

async fn tasks_json(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, HttpError> {
    // Mesos: `limit=-1` is no limit (its CLI sends exactly that).
    let limit = match q.get("limit").map(|l| (l, l.parse::<i64>())) {
        Some((_, Ok(-1))) => usize::MAX,
        Some((_, Ok(n))) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some((l, _)) => {
            return Err(HttpError(
                StatusCode::BAD_REQUEST,
                format!("'limit' must be a non-negative number or -1, got '{l}'"),
            ))
        }
        None => 100,
    };
    let offset = match q.get("offset") {
        Some(l) => l.parse::<usize>().map_err(|_| {
            HttpError(
                StatusCode::BAD_REQUEST,
                format!("'offset' must be a number, got '{l}'"),
            )
        })?,
        None => 0,
    };
    let order = q.get("order").cloned().unwrap_or_else(|| "des".into());
    if order != "asc" && order != "des" {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            "'order' must be 'asc' or 'des'".into(),
        ));
    }
    let task_id = q.get("task_id").cloned();
    let framework_id = q.get("framework_id").cloned();
    json_of(s, move |m, _| {
        legacy::tasks(
            m,
            limit,
            offset,
            order == "asc",
            task_id.as_deref(),
            framework_id.as_deref(),
        )
    })
    .await
}

async fn state_summary_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, _| legacy::state_summary(m)).await
}

async fn roles_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, _| legacy::roles(m)).await
}

async fn metrics_snapshot(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, now| {
        let map: serde_json::Map<String, serde_json::Value> = legacy::metrics(m, now)
            .into_iter()
            .map(|(k, v)| (k, serde_json::json!(v)))
            .collect();
        serde_json::Value::Object(map)
    })
    .await
}

async fn prometheus(State(s): State<Shared>) -> Result<Response, HttpError> {
    let metrics = query(&s, |m, now| legacy::metrics(m, now)).await?;
    let mut out = String::new();
    for (name, value) in metrics {
        let prom: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        out.push_str(&format!("corral_{prom} {value}\n"));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

async fn version() -> Response {
    let v = version_info();
    let body = serde_json::json!({
        "version": v.version,
        "build_date": v.build_date,
        "build_time": v.build_time,
        "build_user": v.build_user,
        "git_sha": v.git_sha,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        codec::json_bytes(&body),
    )
        .into_response()
}

async fn redirect(State(s): State<Shared>) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{}", s.advertised))],
    )
        .into_response()
}

async fn teardown_form(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let bytes = read_body(body, shared.max_body).await?;
    let form: BTreeMap<String, String> = url_decode_form(&bytes);
    let _ = headers;
    let Some(fid) = form.get("frameworkId").cloned() else {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            "Missing 'frameworkId' query parameter in the request body".into(),
        ));
    };
    teardown(&shared, fid).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) fn url_decode_form(bytes: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
        .route("/master/teardown", post(teardown_form))
        .route("/teardown", post(teardown_form))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::jsonp::wrap))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        let f = url_decode_form(b"frameworkId=abc-0001&x=a%20b+c");
        assert_eq!(f["frameworkId"], "abc-0001");
        assert_eq!(f["x"], "a b c");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
