//! The HTTP side: calls to the agent's executor API and the SUBSCRIBE event
//! stream (RecordIO-framed protobuf, read by a bounded decoder).

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_api::recordio;
use corral_api::v1::executor::{call, Call, Event};
use corral_api::{ids, APPLICATION_PROTOBUF};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ExecutorError;

/// Largest event record the executor accepts (a LAUNCH_GROUP with many big
/// TaskInfos stays well below this).
const MAX_EVENT_BYTES: usize = recordio::DEFAULT_MAX_RECORD_BYTES;
/// Bound on establishing a TCP connection to the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a non-streaming call, and on the SUBSCRIBE response headers.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the stream reader reports to the executor loop.
#[derive(Debug)]
pub(crate) enum StreamMsg {
    /// One decoded event.
    Event(Box<Event>),
    /// The stream ended or broke; no more messages follow.
    Closed(String),
}

/// A live subscription: the reader task and the channel it feeds.
pub(crate) struct Subscription {
    pub events: mpsc::Receiver<StreamMsg>,
    reader: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Why a SUBSCRIBE attempt failed.
#[derive(Debug)]
pub(crate) enum SubscribeError {
    /// Worth retrying (connection refused, agent recovering, 5xx).
    Retryable(String),
    /// The agent refuses us; retrying will not help.
    Fatal(ExecutorError),
}

/// Client of `POST http://<agent>/api/v1/executor`.
pub(crate) struct AgentClient {
    http: reqwest::Client,
    url: String,
    framework_id: String,
    executor_id: String,
}

impl AgentClient {
    pub fn new(
        endpoint: &str,
        framework_id: &str,
        executor_id: &str,
    ) -> Result<Self, ExecutorError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| ExecutorError::HttpClient(e.to_string()))?;
        Ok(AgentClient {
            http,
            url: format!("http://{endpoint}/api/v1/executor"),
            framework_id: framework_id.to_string(),
            executor_id: executor_id.to_string(),
        })
    }

    fn call(&self, r#type: call::Type) -> Call {
        Call {
            executor_id: ids::executor_id(&self.executor_id),
            framework_id: ids::framework_id(&self.framework_id),
            r#type: Some(r#type as i32),
            ..Default::default()
        }
    }

    fn post(&self, call: &Call) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, APPLICATION_PROTOBUF)
            .header(reqwest::header::ACCEPT, APPLICATION_PROTOBUF)
            .body(Encoding::Protobuf.encode(call))
    }

    /// Sends SUBSCRIBE and, on `200 OK`, starts a reader task that decodes
    /// the event stream into the returned subscription's channel.
    pub async fn subscribe(
        &self,
        subscribe: call::Subscribe,
    ) -> Result<Subscription, SubscribeError> {
        let mut call = self.call(call::Type::Subscribe);
        call.subscribe = Some(subscribe);
        let response = match tokio::time::timeout(CALL_TIMEOUT, self.post(&call).send()).await {
            Err(_) => {
                return Err(SubscribeError::Retryable(
                    "timed out waiting for the agent".into(),
                ))
            }
            Ok(Err(e)) => return Err(SubscribeError::Retryable(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = tokio::time::timeout(CALL_TIMEOUT, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let body: String = body.chars().take(512).collect();
            return if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Err(SubscribeError::Retryable(format!("HTTP {status}: {body}")))
            } else {
                Err(SubscribeError::Fatal(ExecutorError::SubscribeRejected {
                    status: status.as_u16(),
                    body,
                }))
            };
        }
        let encoding = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Encoding::from_content_type)
            .unwrap_or(Encoding::Protobuf);
        let (tx, events) = mpsc::channel(64);
        let reader = tokio::spawn(read_events(response, encoding, tx));
        Ok(Subscription { events, reader })
    }

    /// Sends an UPDATE; `Err` describes why the agent did not accept it.
    pub async fn update(&self, update: call::Update) -> Result<(), String> {
        let mut call = self.call(call::Type::Update);
        call.update = Some(update);
        let response = self
            .post(&call)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED || status == reqwest::StatusCode::OK {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!(
            "HTTP {status}: {}",
            body.chars().take(512).collect::<String>()
        ))
    }
}

/// Decodes the SUBSCRIBE response body until it ends or breaks.
async fn read_events(response: reqwest::Response, encoding: Encoding, tx: mpsc::Sender<StreamMsg>) {
    let mut body = response.bytes_stream();
    let mut decoder = recordio::Decoder::new(MAX_EVENT_BYTES);
    let reason = 'read: loop {
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => match encoding.decode::<Event>(&record) {
                    Ok(event) => {
                        if tx.send(StreamMsg::Event(Box::new(event))).await.is_err() {
                            // The executor dropped the subscription.
                            return;
                        }
                    }
                    Err(e) => break 'read format!("undecodable event: {e}"),
                },
                Ok(None) => break,
                Err(e) => break 'read e.to_string(),
            }
        }
        match body.next().await {
            Some(Ok(chunk)) => decoder.feed(&chunk),
            Some(Err(e)) => break format!("stream error: {}", error_chain(&e)),
            None => {
                break match decoder.finish() {
                    Ok(()) => "the agent closed the event stream".to_string(),
                    Err(e) => e.to_string(),
                }
            }
        }
    };
    let _ = tx.send(StreamMsg::Closed(reason)).await;
}

/// `reqwest` errors hide the useful part (connection refused, ...) in their
/// source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
