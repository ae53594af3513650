//! The API tier's gRPC API (tonic; `proto/eventing.proto`), served on the
//! same port as the HTTP API: the same operations go through the same
//! authentication, validation and RabbitMQ exchange, only the encoding
//! differs. Errors are gRPC statuses carrying the HTTP API's error code in
//! the `corral-error-code` metadata (and an expired or disposed session's
//! last offset token in `corral-offset-token`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::api::Api;
use super::session::SessionId;
use super::wire::{self, ErrorBody, Reply, Request, Validate};

/// The generated messages, server and client.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("corral.eventing.v1");
}

use pb::eventing_server::{Eventing, EventingServer};

/// The gRPC service of an API node.
pub struct GrpcApi {
    api: Arc<Api>,
}

/// The tonic service for `api`, with its message size bounded like the
/// HTTP bodies.
pub(crate) fn server(api: Arc<Api>) -> EventingServer<GrpcApi> {
    let limit = api.max_body();
    EventingServer::new(GrpcApi { api })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(wire::MAX_ENVELOPE_BYTES)
}

/// The gRPC status for an error body.
pub fn status_of(body: &ErrorBody) -> Status {
    let e = &body.error;
    let code = match e.status {
        400 | 413 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 | 410 => tonic::Code::FailedPrecondition,
        429 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        504 => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    };
    let mut status = Status::new(code, e.message.clone());
    if let Ok(v) = e.code.parse() {
        status.metadata_mut().insert("corral-error-code", v);
    }
    if let Some(t) = &e.offset_token {
        if let Ok(v) = t.parse() {
            status.metadata_mut().insert("corral-offset-token", v);
        }
    }
    status
}

fn invalid(e: &wire::WireError) -> Status {
    status_of(&ErrorBody::new(e))
}

fn header<T>(r: &GrpcRequest<T>) -> Option<String> {
    r.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

fn decode<T: DeserializeOwned>(reply: Reply) -> Result<T, Status> {
    if reply.status != 200 {
        let body: ErrorBody = serde_json::from_value(reply.body)
            .map_err(|e| Status::internal(format!("a malformed error reply: {e}")))?;
        return Err(status_of(&body));
    }
    serde_json::from_value(reply.body)
        .map_err(|e| Status::internal(format!("a malformed reply: {e}")))
}

fn session(id: &str) -> Result<SessionId, Status> {
    SessionId::parse(id).map_err(|e| status_of(&ErrorBody::from_session_error(&e)))
}

impl GrpcApi {
    async fn exchange(
        &self,
        auth: Option<String>,
        id: SessionId,
        request: Request,
        wait: Duration,
    ) -> Result<Reply, Status> {
        let principal = self
            .api
            .principal(auth.as_deref())
            .map_err(|e| status_of(&e))?;
        self.api
            .exchange(principal, id, request, wait)
            .await
            .map_err(|e| status_of(&e))
    }
}

fn mode_of(m: i32) -> wire::WireMode {
    match pb::Mode::try_from(m).unwrap_or(pb::Mode::Read) {
        pb::Mode::Read => wire::WireMode::Read,
        pb::Mode::Write => wire::WireMode::Write,
        pb::Mode::ReadWrite => wire::WireMode::ReadWrite,
    }
}

fn mode_to(m: wire::WireMode) -> i32 {
    match m {
        wire::WireMode::Read => pb::Mode::Read as i32,
        wire::WireMode::Write => pb::Mode::Write as i32,
        wire::WireMode::ReadWrite => pb::Mode::ReadWrite as i32,
    }
}

fn write_response(r: wire::WriteResponse) -> pb::WriteResponse {
    pb::WriteResponse {
        session_id: r.session_id,
        results: r
            .results
            .into_iter()
            .map(|x| pb::WriteResult {
                id: x.id,
                status: match x.status {
                    wire::WireWriteStatus::Pending => pb::WriteStatus::Pending,
                    wire::WireWriteStatus::Acked => pb::WriteStatus::Acked,
                    wire::WireWriteStatus::Failed => pb::WriteStatus::Failed,
                    wire::WireWriteStatus::Unknown => pb::WriteStatus::Unknown,
                } as i32,
                duplicate: x.duplicate,
                partition: x.partition,
                offset: x.offset,
                error: x.error,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Eventing for GrpcApi {
    async fn allocate(
        &self,
        request: GrpcRequest<pb::AllocateRequest>,
    ) -> Result<GrpcResponse<pb::AllocateResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let req = wire::AllocateRequest {
            topic: r.topic,
            partition: r.partition,
            group: r.group,
            mode: mode_of(r.mode),
            start: Some(
                match pb::Start::try_from(r.start).unwrap_or(pb::Start::Earliest) {
                    pb::Start::Earliest => wire::WireStart::Earliest,
                    pb::Start::Latest => wire::WireStart::Latest,
                },
            ),
            offset_token: r.offset_token,
        };
        req.validate().map_err(|e| invalid(&e))?;
        self.api
            .authorize_allocation(auth.as_deref(), &req)
            .map_err(|e| status_of(&e))?;
        let id = self.api.new_session_id();
        let reply = self
            .exchange(auth, id, Request::Allocate(req), Duration::ZERO)
            .await?;
        let a: wire::AllocateResponse = decode(reply)?;
        Ok(GrpcResponse::new(pb::AllocateResponse {
            session_id: a.session_id,
            topic: a.topic,
            partition: a.partition,
            group: a.group,
            mode: mode_to(a.mode),
            offset_token: a.offset_token,
            idle_timeout_ms: a.idle_timeout_ms,
        }))
    }

    async fn read(
        &self,
        request: GrpcRequest<pb::ReadRequest>,
    ) -> Result<GrpcResponse<pb::ReadResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let id = session(&r.session_id)?;
        let req = wire::ReadRequest {
            session_id: r.session_id,
            after: r.after,
            max_events: r.max_events,
            max_bytes: r.max_bytes,
            wait_ms: r.wait_ms,
        };
        req.validate().map_err(|e| invalid(&e))?;
        let wait = Duration::from_millis(u64::from(req.wait_ms.unwrap_or(0)));
        let reply = self.exchange(auth, id, Request::Read(req), wait).await?;
        let b: wire::ReadResponse = decode(reply)?;
        Ok(GrpcResponse::new(pb::ReadResponse {
            session_id: b.session_id,
            events: b
                .events
                .into_iter()
                .map(|e| {
                    let key = match (&e.key, &e.key_base64) {
                        (Some(k), _) => Some(k.as_bytes().to_vec()),
                        (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
                        (None, None) => None,
                    };
                    pb::Event {
                        value: e.value_bytes().unwrap_or_default(),
                        offset: e.offset,
                        id: e.id,
                        partition: e.partition,
                        kafka_offset: e.kafka_offset,
                        timestamp_ms: e.timestamp_ms,
                        key,
                    }
                })
                .collect(),
            acked: b.acked,
            last_delivered: b.last_delivered,
            more: b.more,
        }))
    }

    async fn ack(
        &self,
        request: GrpcRequest<pb::AckRequest>,
    ) -> Result<GrpcResponse<pb::AckResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let id = session(&r.session_id)?;
        let req = wire::AckRequest {
            session_id: r.session_id,
            up_to: r.up_to,
        };
        let reply = self
            .exchange(auth, id, Request::Ack(req), Duration::ZERO)
            .await?;
        let a: wire::AckResponse = decode(reply)?;
        Ok(GrpcResponse::new(pb::AckResponse {
            session_id: a.session_id,
            acked: a.acked,
            offset_token: a.offset_token,
        }))
    }

    async fn write(
        &self,
        request: GrpcRequest<pb::WriteRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let id = session(&r.session_id)?;
        let events = r
            .events
            .into_iter()
            .map(|e| {
                let (key, key_base64) = match &e.key {
                    Some(k) => text_or_base64(k),
                    None => (None, None),
                };
                let (value, value_base64) = text_or_base64(&e.value);
                wire::EventIn {
                    id: e.id,
                    partition: e.partition,
                    key,
                    key_base64,
                    value,
                    value_base64,
                }
            })
            .collect();
        let req = wire::WriteRequest {
            session_id: r.session_id,
            events,
        };
        req.validate().map_err(|e| invalid(&e))?;
        let reply = self
            .exchange(auth, id, Request::Write(req), Duration::from_secs(10))
            .await?;
        Ok(GrpcResponse::new(write_response(decode(reply)?)))
    }

    async fn write_status(
        &self,
        request: GrpcRequest<pb::WriteStatusRequest>,
    ) -> Result<GrpcResponse<pb::WriteResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let id = session(&r.session_id)?;
        let req = wire::WriteStatusRequest {
            session_id: r.session_id,
            ids: r.ids,
        };
        req.validate().map_err(|e| invalid(&e))?;
        let reply = self
            .exchange(auth, id, Request::WriteStatus(req), Duration::ZERO)
            .await?;
        Ok(GrpcResponse::new(write_response(decode(reply)?)))
    }

    async fn dispose(
        &self,
        request: GrpcRequest<pb::DisposeRequest>,
    ) -> Result<GrpcResponse<pb::DisposeResponse>, Status> {
        let auth = header(&request);
        let r = request.into_inner();
        let id = session(&r.session_id)?;
        let req = wire::DisposeRequest {
            session_id: r.session_id,
        };
        let reply = self
            .exchange(auth, id, Request::Dispose(req), Duration::ZERO)
            .await?;
        let d: wire::DisposeResponse = decode(reply)?;
        Ok(GrpcResponse::new(pb::DisposeResponse {
            session_id: d.session_id,
            offset_token: d.offset_token,
            pending_writes: d.pending_writes as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_grpc_codes_with_their_code_and_token() {
        let body = ErrorBody {
            error: wire::ErrorDetail {
                status: 410,
                code: "session_expired".into(),
                message: "session x expired".into(),
                offset_token: Some("tok123".into()),
            },
        };
        let s = status_of(&body);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "session x expired");
        assert_eq!(
            s.metadata().get("corral-error-code").unwrap(),
            "session_expired"
        );
        assert_eq!(s.metadata().get("corral-offset-token").unwrap(), "tok123");
        for (status, code) in [
            (400, tonic::Code::InvalidArgument),
            (401, tonic::Code::Unauthenticated),
            (403, tonic::Code::PermissionDenied),
            (404, tonic::Code::NotFound),
            (429, tonic::Code::ResourceExhausted),
            (503, tonic::Code::Unavailable),
            (504, tonic::Code::DeadlineExceeded),
        ] {
            let mut b = body.clone();
            b.error.status = status;
            assert_eq!(status_of(&b).code(), code, "{status}");
        }
    }

    #[test]
    fn bytes_travel_as_text_or_base64() {
        assert_eq!(text_or_base64(b"hi"), (Some("hi".into()), None));
        assert_eq!(text_or_base64(&[0xff]), (None, Some("/w==".into())));
    }
}
