//! `POST /api/v1/executor`: SUBSCRIBE (a RecordIO event stream), UPDATE and
//! MESSAGE, as Mesos serves them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_api::recordio;
use corral_api::v1::executor::{call, Call};
use futures::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{request_encoding, response_encoding, ApiError};
use crate::agent::Agent;

/// Handles one executor call.
pub async fn handle(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle_inner(&agent, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(status = %e.status, message = %e.message, "executor call refused");
            e.into_response()
        }
    }
}

fn handle_inner(
    agent: &Arc<Agent>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let encoding = request_encoding(headers)?;
    let call: Call = encoding
        .decode_request(body)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse body into Call: {e}")))?;
    match call.r#type.and_then(|t| call::Type::try_from(t).ok()) {
        Some(call::Type::Subscribe) => {
            let accept = response_encoding(headers, encoding)?;
            let rx = agent.executor_subscribe(call)?;
            let stream = UnboundedReceiverStream::new(rx).map(move |event| {
                Ok::<_, Infallible>(Bytes::from(recordio::encode(&accept.encode(&event))))
            });
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, accept.content_type())],
                Body::from_stream(stream),
            )
                .into_response())
        }
        Some(call::Type::Update) => {
            agent.executor_update(call)?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Some(call::Type::Message) => {
            agent.executor_message(call)?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Some(call::Type::Unknown) | None => Err(ApiError::bad_request(
            "Expecting 'type' to be present and known",
        )),
    }
}
