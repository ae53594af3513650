//! What every HTTP handler of the master shares: the handle on the actor
//! ([`Shared`], [`query`]), the one mapping of errors to HTTP status
//! ([`HttpError`]), the Mesos transport rules for encodings and body limits,
//! and form decoding.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corral_api::codec::{self, Encoding};
use corral_api::v1::{self};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::actor::Input;
use crate::state::{CallError, Clock, Master};

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
    /// The web UI's utilisation history.
    pub history: crate::webui::SharedHistory,
    /// The web UI's shared snapshot of the state.
    pub ui_snapshot: crate::webui::SnapshotCache,
    /// HTTP client for the web UI's sandbox proxy to agents.
    pub http: reqwest::Client,
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

pub(crate) fn unavailable() -> HttpError {
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

pub(crate) fn decode<M: prost::Message + prost::Name + Default>(
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

pub(crate) async fn json_of(
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

pub(crate) fn url_decode_form(bytes: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((percent_decode(k), percent_decode(v)))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
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

/// A streaming RecordIO response that reports its own end.
pub(crate) fn stream_response(
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
