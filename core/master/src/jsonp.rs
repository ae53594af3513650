//! `?jsonp=<callback>` on the master's JSON endpoints, as Mesos answers it
//! (the web UIs of its era load `/master/state` that way): a successful JSON
//! answer to a GET becomes `<callback>(<json>);` with `Content-Type:
//! text/javascript`. The callback must be a JavaScript name or dotted path,
//! so nothing a client sends is echoed as script.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest callback name accepted.
const MAX_CALLBACK: usize = 256;

fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CALLBACK
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && !name.ends_with('.')
        && !name.contains("..")
}

/// Middleware: wraps JSON answers to GETs that carry `jsonp`.
pub async fn wrap(request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let callback = Query::<BTreeMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(mut q)| q.remove("jsonp"));
    let Some(callback) = callback else {
        return next.run(request).await;
    };
    if !valid_callback(&callback) {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "'jsonp' must be a JavaScript function name or dotted path (letters, digits, \
                 '_', '$' and '.', at most {MAX_CALLBACK} characters)\n"
            ),
        )
            .into_response();
    }
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !response.status().is_success() || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let json = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the answer: {e}\n"),
            )
                .into_response()
        }
    };
    let mut out = Vec::with_capacity(callback.len() + json.len() + 3);
    out.extend_from_slice(callback.as_bytes());
    out.push(b'(');
    out.extend_from_slice(&json);
    out.extend_from_slice(b");");
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/javascript"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::valid_callback;

    #[test]
    fn callbacks_are_javascript_names_or_dotted_paths() {
        for ok in ["cb", "jQuery123_456", "$", "angular.callbacks._0", "a1.b2"] {
            assert!(valid_callback(ok), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in [
            "",
            "1cb",
            ".cb",
            "cb.",
            "a..b",
            "alert(1)",
            "cb;x",
            "c b",
            "</script>",
            &long,
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }
}
