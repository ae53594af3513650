//! The legacy (v0) HTTP endpoints: the JSON views `crate::legacy` builds
//! (`/master/state`, `/master/state-summary`, `/slaves`, `/frameworks`,
//! `/tasks`, `/roles`, `/metrics/snapshot`, Prometheus `/metrics`),
//! `/version`, `/master/redirect`, and the form endpoints
//! (`/master/teardown`, `/master/reserve`, `/master/unreserve`,
//! `/master/create-volumes`, `/master/destroy-volumes`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_api::codec::{self};
use corral_api::v1::{self};

use crate::legacy;
use corral_api::resources::{self};
use corral_api::v1::offer::operation::Type as OpType;
use serde_json::Value;

use super::operator::{apply_operator_operation, teardown};
use super::support::*;

pub(crate) async fn state_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, legacy::state).await
}

/// `/slaves?slave_id=` (Mesos: only that agent when given).
pub(crate) async fn slaves_json(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, HttpError> {
    let slave_id = q.get("slave_id").cloned();
    json_of(s, move |m, _| legacy::slaves(m, slave_id.as_deref())).await
}

/// `/frameworks?framework_id=` (Mesos: only that framework when given).
pub(crate) async fn frameworks_json(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, HttpError> {
    let framework_id = q.get("framework_id").cloned();
    json_of(s, move |m, _| {
        legacy::frameworks(m, framework_id.as_deref())
    })
    .await
}

pub(crate) async fn tasks_json(
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

pub(crate) async fn state_summary_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, _| legacy::state_summary(m)).await
}

pub(crate) async fn roles_json(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, _| legacy::roles(m)).await
}

pub(crate) async fn metrics_snapshot(State(s): State<Shared>) -> Result<Response, HttpError> {
    json_of(s, |m, now| {
        let map: serde_json::Map<String, serde_json::Value> = legacy::metrics(m, now)
            .into_iter()
            .map(|(k, v)| (k, serde_json::json!(v)))
            .collect();
        serde_json::Value::Object(map)
    })
    .await
}

pub(crate) async fn prometheus(State(s): State<Shared>) -> Result<Response, HttpError> {
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

pub(crate) async fn version() -> Response {
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

pub(crate) async fn redirect(State(s): State<Shared>) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{}", s.advertised))],
    )
        .into_response()
}

pub(crate) async fn teardown_form(
    State(shared): State<Shared>,
    body: Body,
) -> Result<Response, HttpError> {
    let bytes = read_body(body, shared.max_body).await?;
    let form: BTreeMap<String, String> = url_decode_form(&bytes);
    let Some(fid) = form.get("frameworkId").cloned() else {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            "Missing 'frameworkId' query parameter in the request body".into(),
        ));
    };
    teardown(&shared, fid).await?;
    Ok(StatusCode::OK.into_response())
}

/// Reads the form of a legacy operation endpoint: `slaveId` and a JSON
/// array of resources in `field`.
pub(crate) async fn operation_form(
    shared: &Shared,
    body: Body,
    field: &str,
) -> Result<(String, Vec<v1::Resource>), HttpError> {
    let bad = |m: String| HttpError(StatusCode::BAD_REQUEST, m);
    let bytes = read_body(body, shared.max_body).await?;
    let form = url_decode_form(&bytes);
    let Some(agent_id) = form.get("slaveId").filter(|s| !s.is_empty()).cloned() else {
        return Err(bad(
            "Missing 'slaveId' query parameter in the request body".into()
        ));
    };
    let Some(text) = form.get(field) else {
        return Err(bad(format!(
            "Missing '{field}' query parameter in the request body"
        )));
    };
    let parse_error = |e: String| {
        bad(format!(
            "Error in parsing '{field}' query parameter in the request body: {e}"
        ))
    };
    let values: Vec<Value> = match serde_json::from_str(text) {
        Ok(Value::Array(values)) => values,
        Ok(_) => return Err(parse_error("expecting a JSON array".into())),
        Err(e) => return Err(parse_error(e.to_string())),
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let r: v1::Resource =
            codec::from_json_value_checked(v).map_err(|e| parse_error(e.to_string()))?;
        resources::validate(&r).map_err(parse_error)?;
        out.push(r);
    }
    Ok((agent_id, out))
}

pub(crate) async fn legacy_operation(
    shared: Shared,
    body: Body,
    field: &str,
    ty: OpType,
) -> Result<Response, HttpError> {
    use v1::offer::operation as o;
    let (agent_id, rs) = operation_form(&shared, body, field).await?;
    let mut operation = v1::offer::Operation {
        r#type: Some(ty as i32),
        ..Default::default()
    };
    match ty {
        OpType::Reserve => {
            operation.reserve = Some(o::Reserve {
                source: Vec::new(),
                resources: rs,
            })
        }
        OpType::Unreserve => operation.unreserve = Some(o::Unreserve { resources: rs }),
        OpType::Create => operation.create = Some(o::Create { volumes: rs }),
        _ => operation.destroy = Some(o::Destroy { volumes: rs }),
    }
    apply_operator_operation(&shared, agent_id, operation).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /master/reserve`: form `slaveId`, `resources` (a JSON array of
/// Resource, either reservation format).
pub async fn reserve(State(shared): State<Shared>, body: Body) -> Result<Response, HttpError> {
    legacy_operation(shared, body, "resources", OpType::Reserve).await
}

/// `POST /master/unreserve`: form `slaveId`, `resources`.
pub async fn unreserve(State(shared): State<Shared>, body: Body) -> Result<Response, HttpError> {
    legacy_operation(shared, body, "resources", OpType::Unreserve).await
}

/// `POST /master/create-volumes`: form `slaveId`, `volumes`.
pub async fn create_volumes(
    State(shared): State<Shared>,
    body: Body,
) -> Result<Response, HttpError> {
    legacy_operation(shared, body, "volumes", OpType::Create).await
}

/// `POST /master/destroy-volumes`: form `slaveId`, `volumes`.
pub async fn destroy_volumes(
    State(shared): State<Shared>,
    body: Body,
) -> Result<Response, HttpError> {
    legacy_operation(shared, body, "volumes", OpType::Destroy).await
}
