//! `/api/v1/scheduler`: SUBSCRIBE streams (chunked RecordIO) and calls.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_api::v1::scheduler;
use tokio::sync::oneshot;

use crate::actor::Input;

use super::support::*;

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
