//! The API tier's shell: the HTTP/JSON API clients call, each request
//! authenticated (bearer token), authorized at allocation (read and/or
//! write on the topic), wrapped in an [`Envelope`] and published to RabbitMQ
//! with the session's shard as routing key (mandatory, publisher confirms);
//! the owning backend's [`Reply`] comes back on this node's private reply
//! queue and becomes the HTTP answer.
//!
//! | route | operation |
//! | --- | --- |
//! | `POST /v1/sessions` | allocate |
//! | `POST /v1/sessions/{id}/read` | read (`waitMs`: long poll) |
//! | `POST /v1/sessions/{id}/ack` | ack |
//! | `POST /v1/sessions/{id}/write` | write (answers once Kafka has the events) |
//! | `POST /v1/sessions/{id}/write-status` | write status |
//! | `DELETE /v1/sessions/{id}` | dispose |
//! | `GET /health`, `GET /metrics`, `GET /v1/openapi.yaml` | |
//! | gRPC `corral.eventing.v1.Eventing/*` | the same operations ([`super::grpc`]) |
//!
//! In a session route the body's `sessionId` may be left out; when given it
//! must be the path's. Every failure is an [`ErrorBody`] with a 4xx or 5xx
//! status: 503 `no_backend` / `overloaded` and 504 `backend_timeout` say
//! that the request may be retried as it is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::amqp::Topology;
use super::session::{SessionId, SessionIdGen};
use super::token::{Access, Authenticator};
use super::wire::{
    AckRequest, AllocateRequest, DisposeRequest, Envelope, ErrorBody, ErrorDetail, ReadRequest,
    Reply, Request, Validate, WireError, WireMode, WriteRequest, WriteStatusRequest,
};
use super::ClientError;

/// The OpenAPI document of this API.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// How the API node is set up.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// This node's name (in request ids and logs).
    pub node: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// The service's RabbitMQ names and shard count (the backends' too).
    pub topology: Topology,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Bearer tokens and permissions ([`Authenticator::open`]: none needed).
    pub auth: Arc<Authenticator>,
    /// How long to wait for a backend's answer (plus a read's `waitMs`).
    pub request_timeout: Duration,
    /// The largest request body.
    pub max_body: usize,
    /// Serve HTTPS (and gRPC over TLS) with this certificate and key.
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the server's first.
    pub cert: std::path::PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// Why the API node cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// RabbitMQ refused or went away.
    #[error("rabbitmq: {0}")]
    Amqp(String),
    /// The TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The listening socket.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

#[derive(Default)]
struct Counters {
    requests: [AtomicU64; 6],
    status: [AtomicU64; 4],
    no_backend: AtomicU64,
    timeouts: AtomicU64,
}

const OPS: [&str; 6] = ["allocate", "read", "ack", "write", "writeStatus", "dispose"];

pub(crate) struct Api {
    cfg: ApiConfig,
    ch: Channel,
    conn: Connection,
    reply_queue: String,
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    next: AtomicU64,
    ids: Mutex<SessionIdGen>,
    counters: Counters,
}

/// A running API node.
pub struct RunningApi {
    /// Where it listens.
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    api: Arc<Api>,
}

impl RunningApi {
    /// Stops serving.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.api.conn.close(200, "stop".into()).await;
    }

    /// Serves until the RabbitMQ connection is lost or the server fails.
    pub async fn wait(self) -> Result<(), ApiError> {
        loop {
            if self.server.is_finished() {
                return Err(ApiError::Amqp("the http server stopped".into()));
            }
            if !self.api.conn.status().connected() {
                return Err(ApiError::Amqp(
                    "lost the connection; the framework relaunches the api node".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Starts an API node.
pub async fn start(cfg: ApiConfig) -> Result<RunningApi, ApiError> {
    let amqp = |e: lapin::Error| ApiError::Amqp(e.to_string());
    let conn = Connection::connect(&cfg.amqp_url, ConnectionProperties::default())
        .await
        .map_err(|e| {
            ApiError::Amqp(format!(
                "{}: {e}",
                crate::publisher::amqp::redact(&cfg.amqp_url)
            ))
        })?;
    let ch = conn.create_channel().await.map_err(amqp)?;
    cfg.topology.declare(&ch).await.map_err(amqp)?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp)?;
    let reply_ch = conn.create_channel().await.map_err(amqp)?;
    let (reply_queue, mut replies) = Topology::private_consumer(&reply_ch, None, "replies")
        .await
        .map_err(amqp)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ApiError::Listen {
            addr: cfg.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ApiError::Listen {
        addr: cfg.listen,
        message: e.to_string(),
    })?;
    let seed = {
        let mut b = [0u8; 8];
        getrandom(&mut b);
        u64::from_le_bytes(b)
    };
    let api = Arc::new(Api {
        reply_queue: reply_queue.as_str().to_owned(),
        cfg,
        ch,
        conn,
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
        ids: Mutex::new(SessionIdGen::from_seed(seed)),
        counters: Counters::default(),
    });
    {
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            while let Some(Ok(d)) = replies.next().await {
                match Reply::from_bytes(&d.data) {
                    Ok(reply) => {
                        let waiter = api
                            .pending
                            .lock()
                            .ok()
                            .and_then(|mut p| p.remove(&reply.request_id));
                        if let Some(w) = waiter {
                            let _ = w.send(reply);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "dropped a malformed reply"),
                }
            }
        });
    }
    let app = Router::new()
        .route("/v1/sessions", post(allocate))
        .route("/v1/sessions/{id}/read", post(read))
        .route("/v1/sessions/{id}/ack", post(ack))
        .route("/v1/sessions/{id}/write", post(write))
        .route("/v1/sessions/{id}/write-status", post(write_status))
        .route("/v1/sessions/{id}", delete(dispose))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.yaml", get(openapi))
        .with_state(Arc::clone(&api))
        // The gRPC API on the same port (HTTP/2, content-type
        // application/grpc).
        .merge(
            tonic::service::Routes::new(super::grpc::server(Arc::clone(&api))).into_axum_router(),
        )
        .fallback(not_found);
    let acceptor = match &api.cfg.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let server = match acceptor {
        Some(acceptor) => tokio::spawn(serve_tls(listener, acceptor, app)),
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the api's http server failed");
            }
        }),
    };
    tracing::info!(%addr, node = %api.cfg.node, "eventing api started");
    Ok(RunningApi { addr, server, api })
}

/// The TLS acceptor for `files`: rustls (aws-lc-rs), TLS 1.2 and 1.3, ALPN
/// `h2` (gRPC) and `http/1.1`.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ApiError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| ApiError::Tls(format!("--tls_cert {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ApiError::Tls(format!(
            "--tls_cert {}: no certificate in the file",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ApiError::Tls(format!("--tls_key {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ApiError::Tls(format!(
                "--tls_cert {} and --tls_key {} do not make a certificate: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS: HTTP/1.1 and HTTP/2 (gRPC) by ALPN.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

/// Runs an API node until its RabbitMQ connection is lost.
pub async fn run(cfg: ApiConfig) -> Result<(), ApiError> {
    start(cfg).await?.wait().await
}

fn getrandom(buf: &mut [u8]) {
    use aes_gcm::aead::rand_core::RngCore;
    aes_gcm::aead::OsRng.fill_bytes(buf);
}

fn error_response(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

fn client_error(e: &dyn ClientError) -> Response {
    error_response(ErrorBody::new(e))
}

fn other_body(status: u16, code: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            status,
            code: code.to_owned(),
            message: message.into(),
            offset_token: None,
        },
    }
}

fn other_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    error_response(other_body(status, code, message))
}

async fn body_bytes(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        client_error(&WireError::BodyTooLarge {
            size: limit + 1,
            limit,
        })
    })
}

/// Parses a session route's body, filling in (or checking) `sessionId`.
fn parse_session_body<T: DeserializeOwned + Validate>(
    bytes: &[u8],
    path_id: &str,
) -> Result<T, WireError> {
    let mut v: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?
    };
    let Some(obj) = v.as_object_mut() else {
        return Err(WireError::Malformed(
            "the body must be a JSON object".into(),
        ));
    };
    match obj.get("sessionId") {
        None => {
            obj.insert("sessionId".into(), serde_json::Value::from(path_id));
        }
        Some(given) if given.as_str() == Some(path_id) => {}
        Some(_) => {
            return Err(WireError::InvalidField {
                field: "sessionId".into(),
                message: "differs from the session id in the path".into(),
            })
        }
    }
    let t: T = serde_json::from_value(v).map_err(|e| WireError::Malformed(e.to_string()))?;
    t.validate()?;
    Ok(t)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

impl Api {
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, Response> {
        self.principal(authorization(headers))
            .map_err(error_response)
    }

    /// The principal of an `Authorization` header value (401 otherwise).
    pub(crate) fn principal(&self, header: Option<&str>) -> Result<String, ErrorBody> {
        self.cfg
            .auth
            .authenticate(header)
            .map(|p| p.name.clone())
            .map_err(|e| ErrorBody::new(&e))
    }

    /// Checks that the header's principal may allocate `req` (read and/or
    /// write on its topic): its name, or 401/403.
    pub(crate) fn authorize_allocation(
        &self,
        header: Option<&str>,
        req: &AllocateRequest,
    ) -> Result<String, ErrorBody> {
        let needs: &[Access] = match req.mode {
            WireMode::Read => &[Access::Read],
            WireMode::Write => &[Access::Write],
            WireMode::ReadWrite => &[Access::Read, Access::Write],
        };
        let mut name = self.principal(header)?;
        for a in needs {
            name = self
                .cfg
                .auth
                .authorize(header, &req.topic, *a)
                .map(|p| p.name.clone())
                .map_err(|e| ErrorBody::new(&e))?;
        }
        Ok(name)
    }

    /// A fresh session id.
    pub(crate) fn new_session_id(&self) -> SessionId {
        match self.ids.lock() {
            Ok(mut g) => g.next_id(),
            Err(_) => SessionId::random(),
        }
    }

    /// The request limits (the largest body).
    pub(crate) fn max_body(&self) -> usize {
        self.cfg.max_body
    }

    fn count(&self, op: &str) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            self.counters.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn call(
        &self,
        principal: String,
        session_id: SessionId,
        request: Request,
        wait: Duration,
    ) -> Response {
        let resp = match self.exchange(principal, session_id, request, wait).await {
            Ok(reply) => {
                let status =
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, axum::Json(reply.body)).into_response()
            }
            Err(body) => error_response(body),
        };
        let class = (resp.status().as_u16() / 100).clamp(2, 5) as usize - 2;
        self.counters.status[class].fetch_add(1, Ordering::Relaxed);
        resp
    }

    /// Sends a request to the session's backend and waits for its reply
    /// (whatever its status); `Err` when none came (503, 504) or the
    /// request cannot be sent.
    pub(crate) async fn exchange(
        &self,
        principal: String,
        session_id: SessionId,
        request: Request,
        wait: Duration,
    ) -> Result<Reply, ErrorBody> {
        self.count(request.operation());
        let shards = self.cfg.topology.shards;
        let shard = session_id.shard(shards);
        let request_id = format!(
            "{}-{}",
            self.cfg.node,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let env = Envelope {
            request_id: request_id.clone(),
            session_id,
            shard: shard.0,
            principal,
            reply_to: self.reply_queue.clone(),
            request,
        };
        let bytes = env.to_bytes().map_err(|e| ErrorBody::new(&e))?;
        let timeout = self.cfg.request_timeout + wait;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(request_id.clone(), tx);
        }
        let answer = self
            .publish_and_wait(&bytes, &shard.routing_key(), timeout, rx)
            .await;
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&request_id);
        }
        answer
    }

    async fn publish_and_wait(
        &self,
        bytes: &[u8],
        routing_key: &str,
        timeout: Duration,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<Reply, ErrorBody> {
        let props = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_expiration(ShortString::from(timeout.as_millis().to_string()));
        let confirm = self
            .ch
            .basic_publish(
                ShortString::from(self.cfg.topology.requests_exchange()),
                ShortString::from(routing_key),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                bytes,
                props,
            )
            .await
            .map_err(|e| {
                other_body(
                    503,
                    "rabbitmq_unavailable",
                    format!("cannot publish the request: {e}; retry"),
                )
            })?;
        match confirm.await {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {}
            Ok(Confirmation::Ack(Some(_))) => {
                self.counters.no_backend.fetch_add(1, Ordering::Relaxed);
                return Err(other_body(
                    503,
                    "no_backend",
                    format!("no queue for {routing_key}: the backends have not declared the topology yet; retry"),
                ));
            }
            Ok(Confirmation::Nack(_)) => {
                return Err(other_body(
                    503,
                    "overloaded",
                    format!("the queue of {routing_key} is full; retry later"),
                ))
            }
            Err(e) => {
                return Err(other_body(
                    503,
                    "rabbitmq_unavailable",
                    format!("no confirm for the request: {e}; retry"),
                ))
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(other_body(
                    504,
                    "backend_timeout",
                    format!(
                        "no backend answered within {} ms (the shard's backend may be moving or down); the request is safe to retry",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    fn session_id(&self, path_id: &str) -> Result<SessionId, Response> {
        SessionId::parse(path_id).map_err(|e| client_error(&e))
    }
}

async fn allocate(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Response {
    let principal = match api.authenticate(&headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let bytes = match body_bytes(body, api.cfg.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req: AllocateRequest = match super::wire::parse_json(&bytes, api.cfg.max_body) {
        Ok(r) => r,
        Err(e) => return client_error(&e),
    };
    if let Err(e) = api.authorize_allocation(authorization(&headers), &req) {
        return error_response(e);
    }
    let id = api.new_session_id();
    api.call(principal, id, Request::Allocate(req), Duration::ZERO)
        .await
}

macro_rules! session_route {
    ($name:ident, $ty:ty, $variant:ident, $wait:expr) => {
        async fn $name(
            State(api): State<Arc<Api>>,
            Path(path_id): Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            let principal = match api.authenticate(&headers) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let id = match api.session_id(&path_id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            let bytes = match body_bytes(body, api.cfg.max_body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let req: $ty = match parse_session_body(&bytes, &id.to_string()) {
                Ok(r) => r,
                Err(e) => return client_error(&e),
            };
            #[allow(clippy::redundant_closure_call)]
            let wait: Duration = ($wait)(&req);
            api.call(principal, id, Request::$variant(req), wait).await
        }
    };
}

session_route!(read, ReadRequest, Read, |r: &ReadRequest| {
    Duration::from_millis(u64::from(r.wait_ms.unwrap_or(0)))
});
session_route!(ack, AckRequest, Ack, |_: &AckRequest| Duration::ZERO);
session_route!(write, WriteRequest, Write, |_: &WriteRequest| {
    Duration::from_secs(10)
});
session_route!(
    write_status,
    WriteStatusRequest,
    WriteStatus,
    |_: &WriteStatusRequest| { Duration::ZERO }
);

async fn dispose(
    State(api): State<Arc<Api>>,
    Path(path_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let principal = match api.authenticate(&headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match api.session_id(&path_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let req = DisposeRequest {
        session_id: id.to_string(),
    };
    api.call(principal, id, Request::Dispose(req), Duration::ZERO)
        .await
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    let connected = api.conn.status().connected();
    let body = serde_json::json!({
        "status": if connected { "ok" } else { "rabbitmq connection lost" },
        "node": api.cfg.node,
        "shards": api.cfg.topology.shards,
    });
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let c = &api.counters;
    let mut text = String::new();
    for (i, op) in OPS.iter().enumerate() {
        text.push_str(&format!(
            "corral_eventing_api_requests_total{{operation=\"{op}\"}} {}\n",
            c.requests[i].load(Ordering::Relaxed)
        ));
    }
    for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        text.push_str(&format!(
            "corral_eventing_api_responses_total{{class=\"{class}\"}} {}\n",
            c.status[i].load(Ordering::Relaxed)
        ));
    }
    text.push_str(&format!(
        "corral_eventing_api_no_backend_total {}\ncorral_eventing_api_backend_timeouts_total {}\n",
        c.no_backend.load(Ordering::Relaxed),
        c.timeouts.load(Ordering::Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

async fn not_found() -> Response {
    other_error(
        404,
        "not_found",
        "no such route; see GET /v1/openapi.yaml for the API",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_bodies_take_the_path_id() {
        let id = "0123456789abcdef0123456789abcdef";
        let r: AckRequest = parse_session_body(br#"{"upTo": 3}"#, id).unwrap();
        assert_eq!(r.session_id, id);
        assert_eq!(r.up_to, 3);
        let e = parse_session_body::<AckRequest>(
            br#"{"sessionId": "ffffffffffffffffffffffffffffffff", "upTo": 3}"#,
            id,
        )
        .unwrap_err();
        assert!(e.to_string().contains("sessionId"), "{e}");
        let e = parse_session_body::<AckRequest>(b"[1]", id).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = parse_session_body::<AckRequest>(b"{", id).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        let r: ReadRequest = parse_session_body(b"", id).unwrap();
        assert_eq!(r.session_id, id);
        let e = parse_session_body::<ReadRequest>(br#"{"bogus": 1}"#, id).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
