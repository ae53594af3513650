//! A Rust client of the eventing service's HTTP API.
//!
//! [`Client`] is one call per operation (spreading requests over several API
//! nodes, moving to the next on a transport error). [`ResumingReader`] and
//! [`ResumingWriter`] add what a long-running client needs: when a session is
//! lost (its backend died or its shard moved: 404, 410) or a request goes
//! unanswered (503, 504, a broken connection), they allocate a new session
//! from the last offset token and go on. A reader then sees the unacked
//! events again (drop copies by [`EventOut::id`]); a writer writes the
//! unacknowledged ids again (readers drop the copies the same way). Nothing
//! acked is lost and nothing is skipped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{
    AckRequest, AckResponse, AllocateRequest, AllocateResponse, DisposeResponse, ErrorBody,
    EventIn, EventOut, ReadRequest, ReadResponse, WireWriteStatus, WriteRequest, WriteResponse,
    WriteResultOut, WriteStatusRequest,
};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The service answered with an error body.
    #[error("{status} {code}: {message}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The message.
        message: String,
        /// For an expired or disposed session, its last offset token.
        offset_token: Option<String>,
    },
    /// No API node could be reached.
    #[error("cannot reach the eventing api: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl CallError {
    /// Whether the session is gone (allocate a new one from the token).
    pub fn session_lost(&self) -> bool {
        matches!(self, CallError::Service { status: 404 | 410, code, .. } if code != "topic_not_found" && code != "partition_not_found" && code != "not_found")
    }

    /// Whether the same request may simply be sent again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CallError::Transport(_)
                | CallError::Service {
                    status: 421 | 429 | 503 | 504,
                    ..
                }
        )
    }
}

/// One call per operation.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    token: Option<String>,
    next: AtomicUsize,
}

impl Client {
    /// A client of the API nodes at `bases` (`http://host:port`), sending
    /// `token` as a bearer token when given.
    pub fn new(bases: Vec<String>, token: Option<String>) -> Client {
        Client::build(bases, token, reqwest::Client::builder())
    }

    /// A client of `https://` API nodes whose certificates are signed by
    /// the PEM certificate(s) `ca_pem` (as well as the system's roots).
    pub fn with_ca(
        bases: Vec<String>,
        token: Option<String>,
        ca_pem: &[u8],
    ) -> Result<Client, CallError> {
        let mut builder = reqwest::Client::builder();
        for cert in reqwest::Certificate::from_pem_bundle(ca_pem)
            .map_err(|e| CallError::Transport(format!("the CA file is not PEM: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
        Ok(Client::build(bases, token, builder))
    }

    fn build(bases: Vec<String>, token: Option<String>, builder: reqwest::ClientBuilder) -> Client {
        Client {
            http: builder
                .timeout(Duration::from_secs(75))
                .build()
                .unwrap_or_default(),
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            token,
            next: AtomicUsize::new(0),
        }
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CallError> {
        if self.bases.is_empty() {
            return Err(CallError::Transport("no api address given".into()));
        }
        let mut last = String::new();
        for _ in 0..self.bases.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{}: {e}", self.bases[i]);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
            if (200..300).contains(&status) {
                return serde_json::from_slice(&bytes).map_err(|e| {
                    CallError::Decode(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
                });
            }
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => CallError::Service {
                    status,
                    code: b.error.code,
                    message: b.error.message,
                    offset_token: b.error.offset_token,
                },
                Err(_) => CallError::Service {
                    status,
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                    offset_token: None,
                },
            });
        }
        Err(CallError::Transport(last))
    }

    /// Allocates a session.
    pub async fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, CallError> {
        self.call(reqwest::Method::POST, "/v1/sessions", Some(req))
            .await
    }

    /// Reads a batch.
    pub async fn read(&self, req: &ReadRequest) -> Result<ReadResponse, CallError> {
        let path = format!("/v1/sessions/{}/read", req.session_id);
        self.call(reqwest::Method::POST, &path, Some(req)).await
    }

    /// Acks up to a delivery offset.
    pub async fn ack(&self, session_id: &str, up_to: u64) -> Result<AckResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/ack");
        let req = AckRequest {
            session_id: session_id.to_owned(),
            up_to,
        };
        self.call(reqwest::Method::POST, &path, Some(&req)).await
    }

    /// Writes a batch.
    pub async fn write(
        &self,
        session_id: &str,
        events: Vec<EventIn>,
    ) -> Result<WriteResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/write");
        let req = WriteRequest {
            session_id: session_id.to_owned(),
            events,
        };
        self.call(reqwest::Method::POST, &path, Some(&req)).await
    }

    /// Where earlier writes stand.
    pub async fn write_status(
        &self,
        session_id: &str,
        ids: Vec<String>,
    ) -> Result<WriteResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}/write-status");
        let req = WriteStatusRequest {
            session_id: session_id.to_owned(),
            ids,
        };
        self.call(reqwest::Method::POST, &path, Some(&req)).await
    }

    /// Disposes a session.
    pub async fn dispose(&self, session_id: &str) -> Result<DisposeResponse, CallError> {
        let path = format!("/v1/sessions/{session_id}");
        self.call::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }
}

const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A reader that resumes from its offset token when its session is lost.
pub struct ResumingReader<'a> {
    client: &'a Client,
    spec: AllocateRequest,
    session: Option<String>,
    token: Option<String>,
    failures: u32,
    /// How many sessions it allocated (1 plus one per resumption).
    pub sessions_allocated: u32,
}

impl<'a> ResumingReader<'a> {
    /// A reader of `spec` (its `offsetToken` is where it starts).
    pub fn new(client: &'a Client, spec: AllocateRequest) -> Self {
        let token = spec.offset_token.clone();
        ResumingReader {
            client,
            spec,
            session: None,
            token,
            failures: 0,
            sessions_allocated: 0,
        }
    }

    /// The last offset token (everything before it is acked).
    pub fn offset_token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn session(&mut self) -> Result<String, CallError> {
        if let Some(s) = &self.session {
            return Ok(s.clone());
        }
        let mut spec = self.spec.clone();
        spec.offset_token = self.token.clone();
        let a = self.client.allocate(&spec).await?;
        self.sessions_allocated += 1;
        self.token = Some(a.offset_token.clone());
        self.session = Some(a.session_id.clone());
        Ok(a.session_id)
    }

    fn lost(&mut self, e: &CallError) {
        if let CallError::Service {
            offset_token: Some(t),
            ..
        } = e
        {
            self.token = Some(t.clone());
        }
        self.session = None;
    }

    /// The next batch (possibly empty after `wait_ms`), with its events'
    /// delivery offsets; [`ResumingReader::ack`] them once handled. Gives up
    /// only on an error retrying cannot fix, or after `deadline`.
    pub async fn read(
        &mut self,
        max_events: u32,
        wait_ms: u32,
        deadline: Duration,
    ) -> Result<Vec<EventOut>, CallError> {
        let until = Instant::now() + deadline;
        loop {
            let r = match self.session().await {
                Ok(id) => {
                    self.client
                        .read(&ReadRequest {
                            session_id: id,
                            after: None,
                            max_events: Some(max_events),
                            max_bytes: None,
                            wait_ms: Some(wait_ms),
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(resp) => {
                    self.failures = 0;
                    return Ok(resp.events);
                }
                Err(e) if e.session_lost() => self.lost(&e),
                Err(e) if e.retryable() && Instant::now() < until => {
                    self.failures += 1;
                    if self.failures >= 3 {
                        // The backend may be gone with the session.
                        self.session = None;
                        self.failures = 0;
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Acks up to `up_to` (a delivery offset of the current session). When
    /// the session is lost meanwhile, nothing is acked: the events come
    /// again from the new session.
    pub async fn ack(&mut self, up_to: u64) -> Result<(), CallError> {
        let Some(id) = self.session.clone() else {
            return Ok(());
        };
        match self.client.ack(&id, up_to).await {
            Ok(a) => {
                self.token = Some(a.offset_token);
                Ok(())
            }
            Err(e) if e.session_lost() || e.retryable() => {
                self.lost(&e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Disposes the current session (if any).
    pub async fn close(&mut self) {
        if let Some(id) = self.session.take() {
            if let Ok(d) = self.client.dispose(&id).await {
                self.token = Some(d.offset_token);
            }
        }
    }
}

/// A writer that writes unacknowledged ids again in a new session when its
/// session is lost.
pub struct ResumingWriter<'a> {
    client: &'a Client,
    spec: AllocateRequest,
    session: Option<String>,
    /// How many sessions it allocated.
    pub sessions_allocated: u32,
}

impl<'a> ResumingWriter<'a> {
    /// A writer of `spec` (mode `write` or `readWrite`).
    pub fn new(client: &'a Client, spec: AllocateRequest) -> Self {
        ResumingWriter {
            client,
            spec,
            session: None,
            sessions_allocated: 0,
        }
    }

    async fn session(&mut self) -> Result<String, CallError> {
        if let Some(s) = &self.session {
            return Ok(s.clone());
        }
        let a = self.client.allocate(&self.spec).await?;
        self.sessions_allocated += 1;
        self.session = Some(a.session_id.clone());
        Ok(a.session_id)
    }

    /// Writes `events` and returns once Kafka has every one (each result
    /// `acked`), writing again what a lost session or a refusal left out.
    /// Gives up on an error retrying cannot fix, or after `deadline`.
    pub async fn write_all(
        &mut self,
        events: Vec<EventIn>,
        deadline: Duration,
    ) -> Result<Vec<WriteResultOut>, CallError> {
        let until = Instant::now() + deadline;
        let mut done: Vec<Option<WriteResultOut>> = vec![None; events.len()];
        let mut last_err = None;
        while done.iter().any(Option::is_none) {
            if Instant::now() >= until {
                return Err(last_err.unwrap_or_else(|| {
                    CallError::Transport("the writes were not acknowledged in time".into())
                }));
            }
            let todo: Vec<usize> = (0..events.len()).filter(|i| done[*i].is_none()).collect();
            let batch: Vec<EventIn> = todo.iter().map(|i| events[*i].clone()).collect();
            let id = match self.session().await {
                Ok(id) => id,
                Err(e) if e.retryable() => {
                    last_err = Some(e);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut results = match self.client.write(&id, batch).await {
                Ok(r) => r.results,
                Err(e) if e.session_lost() => {
                    self.session = None;
                    continue;
                }
                Err(e) if e.retryable() => {
                    // The session may have gone with its backend: a new one
                    // writes the same ids again.
                    self.session = None;
                    last_err = Some(e);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Poll what is still pending.
            loop {
                let pending: Vec<String> = results
                    .iter()
                    .filter(|r| r.status == WireWriteStatus::Pending)
                    .map(|r| r.id.clone())
                    .collect();
                if pending.is_empty() || Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                match self.client.write_status(&id, pending).await {
                    Ok(st) => {
                        for s in st.results {
                            if let Some(r) = results.iter_mut().find(|r| r.id == s.id) {
                                *r = s;
                            }
                        }
                    }
                    Err(_) => {
                        self.session = None;
                        break;
                    }
                }
            }
            for (slot, r) in todo.iter().zip(results) {
                if r.status == WireWriteStatus::Acked {
                    done[*slot] = Some(r);
                }
            }
        }
        Ok(done.into_iter().flatten().collect())
    }

    /// Disposes the current session (if any).
    pub async fn close(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.client.dispose(&id).await;
        }
    }
}
