//! `GET /volumes`: the agent's persistent volumes (with, for HDFS-backed
//! ones, the lease and the last write-back); `POST /volumes/writeback`:
//! write an HDFS-backed volume back now.
//!
//! ```text
//! curl -X POST localhost:5051/volumes/writeback \
//!      -H 'Content-Type: application/json' \
//!      -d '{"role": "db", "persistence_id": "pg-data"}'
//! ```
//!
//! answers 200 with the write-back (`generation`, `at_unix_ms`, `stats`),
//! 400 for a malformed body, 404 for a volume the agent does not have as an
//! HDFS-backed one, 409 when the agent holds no lease on it (the answer says
//! why) or has no `--hdfs_volume_root`, 502 when the store failed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::agent::{lock, Agent};
use crate::hdfs_volumes::WriteBackError;
use crate::volumes;

/// `GET /volumes`.
pub async fn list(State(agent): State<Arc<Agent>>) -> Response {
    let local: Vec<serde_json::Value> = {
        let st = lock(&agent.state);
        volumes::volumes_of(st.total.as_slice())
            .into_iter()
            .map(|v| {
                json!({
                    "role": v.role,
                    "persistence_id": v.persistence_id,
                    "backend": if v.hdfs { "hdfs" } else { "local" },
                    "path": volumes::volume_dir(&agent.config.work_dir, &v.role, &v.persistence_id),
                })
            })
            .collect()
    };
    Json(json!({ "volumes": local, "hdfs": agent.hdfs.status() })).into_response()
}

#[derive(Debug, Deserialize)]
struct WriteBackRequest {
    role: String,
    persistence_id: String,
}

/// `POST /volumes/writeback` with `{"role": ..., "persistence_id": ...}`.
pub async fn write_back(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    let req: WriteBackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!(
                "expecting a JSON body {{\"role\": ..., \"persistence_id\": ...}}: {e}"
            ))
            .into_response()
        }
    };
    match agent.hdfs.write_back(&req.role, &req.persistence_id).await {
        Ok(wb) => Json(json!({
            "role": req.role,
            "persistence_id": req.persistence_id,
            "generation": wb.generation,
            "at_unix_ms": wb.at_unix_ms,
            "stats": wb.stats,
        }))
        .into_response(),
        Err(e) => {
            let status = match &e {
                WriteBackError::Unknown { .. } => StatusCode::NOT_FOUND,
                WriteBackError::NotConfigured | WriteBackError::NotLeased { .. } => {
                    StatusCode::CONFLICT
                }
                WriteBackError::Failed { .. } => StatusCode::BAD_GATEWAY,
            };
            ApiError::new(status, e.to_string()).into_response()
        }
    }
}
