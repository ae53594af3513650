//! `/api/v1` (the operator API): synchronous views, registry-backed calls
//! (weights, quota, maintenance, agents gone), offer operations on agents,
//! and TEARDOWN.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_api::codec::Encoding;
use corral_api::v1::{self, master as op};
use tokio::sync::oneshot;

use crate::actor::Input;
use crate::legacy;
use crate::registry::Operation;
use crate::state::{Clock, Master, OperatorError};

use super::support::*;

pub(crate) fn op_response(ty: op::response::Type) -> op::Response {
    op::Response {
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

/// The answer to a synchronous operator query, computed inside the actor;
/// `None` for calls this master does not serve.
pub(crate) fn sync_response(m: &Master, ty: op::call::Type, now: Clock) -> Option<op::Response> {
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
        T::GetMaintenanceSchedule => op::Response {
            get_maintenance_schedule: Some(r::GetMaintenanceSchedule {
                schedule: m.maintenance_schedule(),
            }),
            ..op_response(R::GetMaintenanceSchedule)
        },
        T::GetMaintenanceStatus => op::Response {
            get_maintenance_status: Some(r::GetMaintenanceStatus {
                status: m.maintenance_status(),
            }),
            ..op_response(R::GetMaintenanceStatus)
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
pub(crate) fn encode_response<M: prost::Message + prost::Name>(
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
                    initial_state: true,
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
        T::UpdateMaintenanceSchedule => {
            let Some(u) = call.update_maintenance_schedule else {
                return Err(HttpError(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'update_maintenance_schedule' to be present".into(),
                ));
            };
            update_schedule(&shared, u.schedule).await?;
            return Ok(StatusCode::OK.into_response());
        }
        T::DrainAgent | T::DeactivateAgent | T::ReactivateAgent => {
            agent_call(&shared, ty, call).await?;
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
pub(crate) fn offer_operation_of(
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
pub(crate) async fn update_registry(shared: &Shared, ops: Vec<Operation>) -> Result<(), HttpError> {
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
pub(crate) async fn teardown(shared: &Shared, framework_id: String) -> Result<(), HttpError> {
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

/// DRAIN_AGENT, DEACTIVATE_AGENT and REACTIVATE_AGENT: 200 once applied,
/// 400 for a malformed call or an unknown agent, 409 when the agent's
/// state does not allow it; nothing changes unless it is applied.
async fn agent_call(shared: &Shared, ty: op::call::Type, call: op::Call) -> Result<(), HttpError> {
    use op::call::Type as T;
    let missing = |what: &str| {
        HttpError(
            StatusCode::BAD_REQUEST,
            format!("Expecting '{what}' to be present"),
        )
    };
    let result = match ty {
        T::DrainAgent => {
            let d = call.drain_agent.ok_or_else(|| missing("drain_agent"))?;
            let grace = match d.max_grace_period {
                None => None,
                Some(g) if g.seconds < 0 || g.nanos < 0 => {
                    return Err(HttpError(
                        StatusCode::BAD_REQUEST,
                        "drain_agent.max_grace_period must not be negative".into(),
                    ))
                }
                Some(g) => Some(
                    std::time::Duration::from_secs(g.seconds as u64)
                        + std::time::Duration::from_nanos(g.nanos as u64),
                ),
            };
            let mark_gone = d.mark_gone.unwrap_or(false);
            let agent_id = d.agent_id.value;
            query(shared, move |m, now| {
                m.drain_agent(&agent_id, grace, mark_gone, now)
            })
            .await?
        }
        T::DeactivateAgent => {
            let agent_id = call
                .deactivate_agent
                .ok_or_else(|| missing("deactivate_agent"))?
                .agent_id
                .value;
            query(shared, move |m, _| m.deactivate_agent(&agent_id)).await?
        }
        _ => {
            let agent_id = call
                .reactivate_agent
                .ok_or_else(|| missing("reactivate_agent"))?
                .agent_id
                .value;
            query(shared, move |m, _| m.reactivate_agent(&agent_id)).await?
        }
    };
    result.map_err(|e| match e {
        crate::state::AgentCallError::UnknownAgent(_) => {
            HttpError(StatusCode::BAD_REQUEST, e.to_string())
        }
        crate::state::AgentCallError::Conflict(_) => HttpError(StatusCode::CONFLICT, e.to_string()),
    })
}

/// Validates a maintenance schedule (400 with the reason, nothing changed)
/// and makes it the one in force: written to the registry first.
pub(crate) async fn update_schedule(
    shared: &Shared,
    schedule: v1::maintenance::Schedule,
) -> Result<(), HttpError> {
    crate::state::maintenance::validate_schedule(&schedule)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("invalid schedule: {e}")))?;
    let schedules = if schedule.windows.is_empty() {
        Vec::new()
    } else {
        vec![schedule]
    };
    update_registry(shared, vec![Operation::UpdateSchedule(schedules)]).await
}

/// `GET /maintenance/schedule`: the schedule as JSON.
pub async fn maintenance_schedule_json(
    State(shared): State<Shared>,
) -> Result<Response, HttpError> {
    let schedule = query(&shared, |m, _| m.maintenance_schedule()).await?;
    Ok(json_answer(corral_api::codec::to_json_value(&schedule)))
}

/// `POST /maintenance/schedule`: replaces the schedule (a Schedule in
/// JSON, as Mesos' endpoint takes it).
pub async fn maintenance_schedule_post(
    State(shared): State<Shared>,
    body: Body,
) -> Result<Response, HttpError> {
    let bytes = read_body(body, shared.max_body).await?;
    let schedule: v1::maintenance::Schedule = decode(Encoding::Json, &bytes)?;
    update_schedule(&shared, schedule).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /maintenance/status`: the machines' status as JSON.
pub async fn maintenance_status_json(State(shared): State<Shared>) -> Result<Response, HttpError> {
    let status = query(&shared, |m, _| m.maintenance_status()).await?;
    Ok(json_answer(corral_api::codec::to_json_value(&status)))
}

fn json_answer(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        corral_api::codec::json_bytes(&v),
    )
        .into_response()
}
